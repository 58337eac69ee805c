//! Export a workload, verify it offline; then tamper in every way an auditor must catch.

use agentrail_event::TenantId;
use agentrail_export::{
    ExportRequest, FileFormat, Selection, SignedManifest, VerifyExportError, export, verify_export,
};
use agentrail_ledger::{Config, Ledger};
use agentrail_testkit::copy_dir;
use std::path::{Path, PathBuf};

fn ledger_with(dir: &Path, tenants: &[(&str, usize)]) -> Ledger {
    let ledger = Ledger::open(Config::new(dir)).unwrap();
    for (t, n) in tenants {
        let tenant = TenantId::parse(t).unwrap();
        let events: Vec<_> = agentrail_testkit::Generator::new(5, t, 6)
            .take(*n)
            .map(|v| agentrail_event::validate_value(v).unwrap())
            .collect();
        for chunk in events.chunks(500) {
            ledger.append(&tenant, chunk.to_vec()).unwrap();
        }
    }
    ledger
}

fn req(t: &str, format: FileFormat, selection: Selection) -> ExportRequest {
    ExportRequest {
        tenant: TenantId::parse(t).unwrap(),
        selection,
        format,
        max_file_bytes: 300_000,
        content: None,
        checkpoint: None,
    }
}

fn check(dir: &Path, ledger: &Ledger) -> Result<agentrail_export::ExportReport, String> {
    verify_export(dir, ledger.verifier()).map_err(|e| e.to_string())
}

/// Every file under `dir`, as paths relative to it, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = PathBuf::from(e.file_name());
        if e.file_type().unwrap().is_dir() {
            v.extend(tree(&e.path()).into_iter().map(|p| name.join(p)));
        } else {
            v.push(name);
        }
    }
    v.sort();
    v
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("events-")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ndjson_and_parquet_round_trip_and_every_tamper_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with(&tmp.path().join("data"), &[("acme", 3000), ("other", 800)]);
    let sel = Selection {
        from_seq: Some(700),
        to_seq: Some(2900),
        ..Selection::default()
    };
    let nd = tmp.path().join("nd");
    let m = export(
        &ledger,
        &req("acme", FileFormat::Ndjson, sel.clone()),
        &nd,
        |_, _| true,
    )
    .unwrap();
    assert_eq!(
        (m.manifest.first_seq, m.manifest.end_seq, m.manifest.count),
        (700, 2900, 2200)
    );
    assert!(
        m.manifest.files.len() > 3,
        "files are split at the size bound"
    );
    let r = check(&nd, &ledger).unwrap();
    assert_eq!(r.events, 2200);
    let pq = tmp.path().join("pq");
    export(
        &ledger,
        &req("acme", FileFormat::Parquet, sel.clone()),
        &pq,
        |_, _| true,
    )
    .unwrap();
    check(&pq, &ledger).unwrap();
    // The whole tenant, from 0 to the head (the checkpoint's size itself).
    let all = tmp.path().join("all");
    export(
        &ledger,
        &req("acme", FileFormat::Ndjson, Selection::default()),
        &all,
        |_, _| true,
    )
    .unwrap();
    assert_eq!(check(&all, &ledger).unwrap().events, 3000);
    let other = tmp.path().join("other");
    export(
        &ledger,
        &req(
            "other",
            FileFormat::Ndjson,
            Selection {
                from_seq: Some(700),
                ..Selection::default()
            },
        ),
        &other,
        |_, _| true,
    )
    .unwrap();

    let tamper = |name: &str, src: &Path, f: &dyn Fn(&Path), expect: &str| {
        let d = tmp.path().join(format!("t-{name}"));
        copy_dir(src, &d);
        f(&d);
        let e = check(&d, &ledger).expect_err(name);
        assert!(e.contains(expect), "{name}: {e}");
    };
    let first = |d: &Path| data_files(d)[1].clone();
    tamper(
        "flip",
        &nd,
        &|d| {
            let p = first(d);
            let mut b = std::fs::read(&p).unwrap();
            b[100] ^= 1;
            std::fs::write(&p, b).unwrap();
        },
        "the file was changed",
    );
    tamper(
        "drop-line",
        &nd,
        &|d| {
            let p = first(d);
            let t = std::fs::read_to_string(&p).unwrap();
            let kept: String = t.lines().skip(1).map(|l| format!("{l}\n")).collect();
            std::fs::write(&p, kept).unwrap();
        },
        "the file was changed",
    );
    tamper(
        "reorder",
        &nd,
        &|d| {
            let p = first(d);
            let t = std::fs::read_to_string(&p).unwrap();
            let mut lines: Vec<&str> = t.lines().collect();
            lines.swap(3, 4);
            std::fs::write(
                &p,
                lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
            )
            .unwrap();
        },
        "the file was changed",
    );
    tamper(
        "edit-manifest",
        &nd,
        &|d| {
            let p = d.join("manifest.json");
            let t = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, t.replacen("\"count\": 2200", "\"count\": 2199", 1)).unwrap();
        },
        "signed statement does not match",
    );
    tamper(
        "other-tenant-file",
        &nd,
        &|d| {
            let theirs = data_files(&other)[0].clone();
            std::fs::copy(&theirs, d.join("data").join(theirs.file_name().unwrap())).unwrap();
        },
        "the file was changed",
    );
    tamper(
        "truncate-parquet",
        &pq,
        &|d| {
            let p = first(d);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
        },
        "the file was changed",
    );
    tamper(
        "missing-file",
        &nd,
        &|d| std::fs::remove_file(first(d)).unwrap(),
        "events-",
    );
    // A wrong key: nothing verifies.
    let wrong = agentrail_note::Signer::from_seed(ledger.verifier().name(), [9; 32])
        .unwrap()
        .verifier();
    let e = verify_export(&nd, &wrong).unwrap_err();
    assert!(matches!(e, VerifyExportError::Signature(_)), "{e}");

    // Deeper than the file hashes: a manifest re-signed by the log key (a buggy or compromised
    // exporter) over edited, reordered or foreign events still fails on the chain and the tree.
    let resign = |d: &Path, edit: &dyn Fn(&mut Vec<String>)| -> String {
        let p = data_files(d)[0].clone();
        let t = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
        edit(&mut lines);
        std::fs::write(
            &p,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let mpath = d.join("manifest.json");
        let mut m: SignedManifest =
            serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        let (sha, len) = agentrail_export::file_sha256(&p).unwrap();
        m.manifest.files[0].sha256 = sha;
        m.manifest.files[0].bytes = len;
        let tenant = TenantId::parse(&m.manifest.tenant).unwrap();
        m.signature = ledger
            .sign_statement(&tenant, "export", &[m.manifest.statement().unwrap()])
            .unwrap();
        std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        check(d, &ledger).unwrap_err()
    };
    let d = tmp.path().join("deep-edit");
    copy_dir(&nd, &d);
    let e = resign(&d, &|l| {
        l[5] = l[5].replacen("\"agent_id\":\"", "\"agent_id\":\"x", 1)
    });
    assert!(e.contains("chain is broken") || e.contains("root"), "{e}");
    let d = tmp.path().join("deep-swap");
    copy_dir(&nd, &d);
    let e = resign(&d, &|l| l.swap(1, 2));
    assert!(e.contains("expected seq"), "{e}");
    // The same event written non-canonically (a space after a comma): its hash changes.
    let d = tmp.path().join("deep-noncanonical");
    copy_dir(&nd, &d);
    let e = resign(&d, &|l| l[3] = l[3].replacen(",", ", ", 1));
    assert!(e.contains("chain is broken"), "{e}");
    let d = tmp.path().join("deep-last");
    copy_dir(&nd, &d);
    // Edit the last event of the file: no later prev_hash catches it; only the tree can.
    let e = resign(&d, &|l| {
        let n = l.len() - 1;
        l[n] = l[n].replacen("\"agent_id\":\"", "\"agent_id\":\"x", 1);
    });
    assert!(
        e.contains("chain is broken") || e.contains("consistency proof") || e.contains("root"),
        "{e}"
    );
}

#[test]
fn data_files_sit_in_data_and_a_manifest_cannot_name_a_file_outside_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with(&tmp.path().join("ledger"), &[("acme", 2000)]);
    let out = tmp.path().join("out");
    let m = export(
        &ledger,
        &req("acme", FileFormat::Parquet, Selection::default()),
        &out,
        |_, _| true,
    )
    .unwrap();
    // Only the manifest beside data/, and only data files in it: a reader given data/ sees
    // nothing else.
    let mut want: Vec<PathBuf> = m
        .manifest
        .files
        .iter()
        .map(|f| f.name.clone().into())
        .collect();
    want.push("manifest.json".into());
    want.sort();
    assert_eq!(tree(&out), want);
    assert!(
        m.manifest
            .files
            .iter()
            .all(|f| f.name.starts_with("data/events-"))
    );

    // Re-sign the manifest with its file names rewritten (a buggy or hostile exporter holding the
    // log key), moving the files to match.
    let rename = |name: &str, to: &dyn Fn(&str) -> String| -> Result<(), String> {
        let d = tmp.path().join(name);
        copy_dir(&out, &d);
        let mpath = d.join("manifest.json");
        let mut sm: SignedManifest =
            serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        for f in &mut sm.manifest.files {
            let new = to(&f.name);
            let dest = d.join(&new);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::rename(d.join(&f.name), dest).unwrap();
            f.name = new;
        }
        let tenant = TenantId::parse(&sm.manifest.tenant).unwrap();
        sm.signature = ledger
            .sign_statement(&tenant, "export", &[sm.manifest.statement().unwrap()])
            .unwrap();
        std::fs::write(&mpath, serde_json::to_vec_pretty(&sm).unwrap()).unwrap();
        check(&d, &ledger).map(|_| ())
    };
    // Exports made before data/ existed (files beside the manifest) still verify.
    rename("old-layout", &|n| n.trim_start_matches("data/").to_owned()).unwrap();
    for (case, to) in [
        ("dot-dot", "data/../x.parquet"),
        ("nested", "data/more/x.parquet"),
        ("other-dir", "elsewhere/x.parquet"),
    ] {
        let e = rename(case, &|n| to.replace("x", n.trim_start_matches("data/"))).unwrap_err();
        assert!(e.contains("not a file of the export"), "{case}: {e}");
    }
}

#[test]
fn a_rerun_after_a_crash_writes_the_same_files_and_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with(&tmp.path().join("data"), &[("acme", 6000)]);
    let r = req("acme", FileFormat::Parquet, Selection::default());
    let crashed = tmp.path().join("crashed");
    let mut calls = 0;
    let e = export(&ledger, &r, &crashed, |_, _| {
        calls += 1;
        calls < 2
    })
    .unwrap_err();
    assert!(matches!(e, agentrail_export::ExportError::Cancelled));
    assert!(!crashed.join("manifest.json").exists());
    // Meanwhile the reference export with the same plan, then the log grows.
    let reference = tmp.path().join("reference");
    export(&ledger, &r, &reference, |_, _| true).unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let more: Vec<_> = agentrail_testkit::Generator::new(77, "acme-late", 3)
        .take(100)
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("tenant_id");
            agentrail_event::validate_value(v).unwrap()
        })
        .collect();
    ledger.append(&tenant, more).unwrap();
    ledger.checkpoint(&tenant).unwrap();
    // The re-run follows its recorded plan: byte-identical to the reference.
    export(&ledger, &r, &crashed, |_, _| true).unwrap();
    assert_eq!(tree(&crashed), tree(&reference));
    for n in tree(&reference) {
        assert_eq!(
            std::fs::read(crashed.join(&n)).unwrap(),
            std::fs::read(reference.join(&n)).unwrap(),
            "{}",
            n.display()
        );
    }
    check(&crashed, &ledger).unwrap();
}

#[test]
fn parquet_columns_are_typed_for_analysts_and_agree_with_the_stored_form() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType, UInt64Type};
    use arrow_schema::{DataType, TimeUnit};
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with(&tmp.path().join("ledger"), &[("acme", 2000)]);
    let out = tmp.path().join("out");
    export(
        &ledger,
        &req("acme", FileFormat::Parquet, Selection::default()),
        &out,
        |_, _| true,
    )
    .unwrap();
    let (mut decisions, mut reviews, mut tools) = (0, 0, 0);
    for f in data_files(&out) {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&f).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            assert_eq!(
                b.schema()
                    .field_with_name("occurred_at")
                    .unwrap()
                    .data_type(),
                &utc
            );
            assert_eq!(
                b.schema()
                    .field_with_name("received_at")
                    .unwrap()
                    .data_type(),
                &utc
            );
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let seq = col("seq");
            let stored = col("stored");
            let occurred = col("occurred_at");
            let model = col("model_name");
            let input = col("input_tokens");
            let cost = col("cost");
            let review = col("review_decision");
            let tool = col("tool_name");
            let latency = col("latency_ms");
            for i in 0..b.num_rows() {
                let ev: serde_json::Value =
                    serde_json::from_str(stored.as_string::<i32>().value(i)).unwrap();
                assert_eq!(ev["seq"], seq.as_primitive::<UInt64Type>().value(i));
                let at: jiff::Timestamp = ev["occurred_at"].as_str().unwrap().parse().unwrap();
                assert_eq!(
                    occurred.as_primitive::<TimestampMicrosecondType>().value(i),
                    at.as_microsecond()
                );
                let p = &ev["payload"];
                let text = |a: &arrow_array::ArrayRef| {
                    (!a.is_null(i)).then(|| a.as_string::<i32>().value(i).to_owned())
                };
                let float = |a: &arrow_array::ArrayRef| {
                    (!a.is_null(i)).then(|| a.as_primitive::<Float64Type>().value(i))
                };
                let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
                match ev["event_type"].as_str().unwrap() {
                    "model.decision" => {
                        decisions += 1;
                        assert_eq!(text(&model), s(&p["model"]["name"]));
                        assert!(text(&model).is_some());
                        assert_eq!(
                            (!input.is_null(i)).then(|| input.as_primitive::<Int64Type>().value(i)),
                            p["usage"]["input_tokens"].as_i64()
                        );
                        assert_eq!(float(&cost), p["usage"]["cost"].as_f64());
                    }
                    "human.review" => {
                        reviews += 1;
                        assert_eq!(text(&review), s(&p["decision"]));
                        assert!(text(&review).is_some() && model.is_null(i));
                    }
                    "tool.invocation" => {
                        tools += 1;
                        assert_eq!(text(&tool), s(&p["tool"]["name"]));
                        assert_eq!(float(&latency), p["duration_ms"].as_f64());
                        assert!(float(&latency).is_some());
                    }
                    _ => assert!(input.is_null(i) && review.is_null(i)),
                }
            }
        }
    }
    assert!(
        decisions > 100 && reviews > 10 && tools > 100,
        "{decisions} {reviews} {tools}"
    );
    check(&out, &ledger).unwrap();
}
