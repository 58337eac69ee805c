//! Reading the archive back: `verify-archive` passes an archive the archiver wrote and names
//! the object (and seq) of every kind of tampering; `restore` rebuilds a data directory whose
//! events are the archived ones byte for byte, whose proofs verify against the archived
//! checkpoints, and whose log goes on consistently.

mod common;

use agentrail_archive::{ArchiveStore, FileArchive};
use agentrail_event::TenantId;
use agentrail_event::batch::BatchFormat;
use agentrail_event::hash::{sha256, to_hex};
use agentrail_ledger::{Config, DataDir, Ledger};
use agentrail_note::{Signer, Verifier};
use agentrail_service::Service;
use agentrail_service::archive_read::{RestoreOptions, restore, verify_archive};
use agentrail_service::archiver::{manifest_end, parse_manifest};
use agentrail_testkit::copy_dir;
use common::archive::{Acme, acme, config, events, keys, read_access_log, rewrite};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A service archiving tenant acme in rounds of `rounds` events each, then `unarchived` more,
/// shut down: the temporary directory, the data directory, the archive, the tenant, the log
/// key and the verifier key.
fn archived(
    rounds: &[u64],
    unarchived: u64,
) -> (
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    TenantId,
    String,
    Verifier,
) {
    let Acme {
        dir,
        data,
        archive,
        service: s,
        root,
        tenant: t,
    } = acme();
    let mut at = 0;
    for &n in rounds {
        s.ingest(&t, &events(at, n), BatchFormat::Ndjson).unwrap();
        at += n;
        // Reads (in the access log) and a retention run (in the retention log): archived too.
        read_access_log(&s, &root, &t, json!({"round": at}));
        s.run_retention(&t).unwrap();
        assert_eq!(s.archive_now(&t).unwrap().archived, at);
    }
    if unarchived > 0 {
        s.ingest(&t, &events(at, unarchived), BatchFormat::Ndjson)
            .unwrap();
    }
    let vkey: Verifier = s.verifier_key().parse().unwrap();
    s.shutdown();
    let key = std::fs::read_to_string(DataDir::new(&data).system().log_key()).unwrap();
    (dir, data, archive, t, key, vkey)
}

#[test]
fn verify_archive_passes_the_archive_and_names_every_tampered_object() {
    let (dir, _data, pristine, t, log_key, vkey) = archived(&[50, 30, 20], 0);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let verify = |archive: &Path| {
        verify_archive(
            &FileArchive::new(archive),
            &t,
            &vkey,
            &scratch,
            &mut |_, _, _| {},
        )
    };
    let r = verify(&pristine).unwrap();
    assert_eq!(
        (
            r.fetched.events,
            r.fetched.manifests,
            r.fetched.segments.len()
        ),
        (100, 3, 3)
    );
    assert!(!r.fetched.checkpoints.is_empty());
    // The scratch directory is gone after.
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    // Another key: every manifest signature fails.
    let other = Signer::from_seed("agentrail.local", [7; 32])
        .unwrap()
        .verifier();
    let e = verify_archive(
        &FileArchive::new(&pristine),
        &t,
        &other,
        &scratch,
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(
        e.object.contains("manifest-") && e.reason.contains("signature"),
        "{e}"
    );

    let store = FileArchive::new(&pristine);
    let segs = keys(&store, "/segment-");
    let mans = keys(&store, "/manifest-");
    let cps = keys(&store, "/checkpoint-");
    let case = |name: &str, edit: &dyn Fn(&Path)| {
        let a = dir.path().join(name);
        copy_dir(&pristine, &a);
        edit(&a);
        verify(&a).unwrap_err()
    };

    // A byte of the second segment changed: its digest.
    let e = case("flip", &|a| rewrite(a, &segs[1], |b| b[100] ^= 1));
    assert_eq!(e.object, segs[1]);
    assert_eq!(e.seq, Some(50));
    assert!(
        e.reason.contains("SHA-256") && e.reason.contains("altered"),
        "{e}"
    );
    // Cut short: its size.
    let e = case("cut", &|a| {
        rewrite(a, &segs[0], |b| b.truncate(b.len() - 10))
    });
    assert_eq!(e.object, segs[0]);
    assert!(e.reason.contains("bytes"), "{e}");
    // Gone.
    let e = case("gone", &|a| std::fs::remove_file(a.join(&segs[2])).unwrap());
    assert_eq!(e.object, segs[2]);
    assert!(e.reason.contains("not in the archive"), "{e}");
    // The manifest edited to match an altered segment: its signature.
    let e = case("manifest", &|a| {
        rewrite(a, &mans[1], |b| {
            let s = String::from_utf8(b.clone()).unwrap();
            let m = parse_manifest(b).unwrap();
            *b = s
                .replace(&m.manifest.segments[0].sha256, &"0".repeat(64))
                .into_bytes();
        })
    });
    assert_eq!(e.object, mans[1]);
    assert!(e.reason.contains("edited"), "{e}");
    // A manifest removed from the middle: the chain.
    let e = case("unchained", &|a| {
        std::fs::remove_file(a.join(&mans[1])).unwrap()
    });
    assert_eq!(e.object, mans[2]);
    assert!(e.reason.contains("previous manifest"), "{e}");
    // A piece of the access log altered: its digest.
    let access = keys(&store, "/access-");
    assert_eq!(access.len(), 3, "{access:?}");
    let e = case("access", &|a| rewrite(a, &access[1], |b| b[20] ^= 1));
    assert_eq!(e.object, access[1]);
    assert!(e.reason.contains("altered"), "{e}");
    // A piece of the access log removed: the chain of pieces.
    let e = case("access-gone", &|a| {
        std::fs::remove_file(a.join(&access[2])).unwrap()
    });
    assert_eq!(e.object, access[2]);
    // A checkpoint object replaced: its digest.
    let e = case("checkpoint", &|a| rewrite(a, &cps[0], |b| b.push(b'\n')));
    assert_eq!(e.object, cps[0]);
    assert!(e.reason.contains("SHA-256"), "{e}");

    // Whoever holds the log key signs a manifest over an altered segment: digests and
    // signature pass, the records do not (named by object and seq).
    let e = case("resigned", &|a| {
        let last = &mans[2];
        let mut signed = parse_manifest(&std::fs::read(a.join(last)).unwrap()).unwrap();
        let seg = signed.manifest.segments[0].clone();
        let mut bytes = std::fs::read(a.join(&seg.key)).unwrap();
        // Inside the first record's payload (after the 32-byte header and its frame header).
        bytes[32 + 16 + 20] ^= 0x20;
        rewrite(a, &seg.key, |b| *b = bytes.clone());
        signed.manifest.segments[0].sha256 = to_hex(&sha256(&bytes));
        let text = format!(
            "{}/archive-manifest\nsha256 {}\n",
            signed.manifest.origin,
            signed.manifest.digest().unwrap()
        );
        let signer = Signer::from_private_key_string(log_key.trim()).unwrap();
        signed.signature = agentrail_note::Note {
            text: text.clone(),
            signatures: vec![signer.sign(&text)],
        }
        .to_text();
        rewrite(a, last, |b| *b = serde_json::to_vec(&signed).unwrap());
    });
    assert_eq!(e.object, keys(&store, "/segment-")[2]);
    assert_eq!(e.seq, Some(80), "{e}");
}

#[test]
fn restore_rebuilds_the_archived_ledger_and_the_log_goes_on() {
    // 60 events archived, 15 more never archived (what the RPO loses).
    let (dir, data, archive, t, log_key, vkey) = archived(&[40, 20], 15);
    let store = FileArchive::new(&archive);
    let last = keys(&store, "/manifest-").pop().unwrap();
    assert_eq!(manifest_end(&last), Some(60));
    let m = parse_manifest(&store.get(&last).unwrap().unwrap()).unwrap();
    let archived_cp =
        String::from_utf8(store.get(&m.manifest.checkpoint.key).unwrap().unwrap()).unwrap();
    let (old_cp, _) = agentrail_note::open_checkpoint(archived_cp.as_bytes(), &vkey, &[]).unwrap();
    let original: Vec<Vec<u8>> = {
        let mut cfg = Config::new(&data);
        cfg.checkpoint_interval = None;
        let l = Ledger::open(cfg).unwrap();
        (0..60).map(|s| l.read(&t, s).unwrap().bytes).collect()
    };
    let logs_before: Vec<Vec<agentrail_ledger::ChainRecord>> = [
        DataDir::new(&data).tenant(&t).access_log(),
        DataDir::new(&data).tenant(&t).retention_log(),
    ]
    .iter()
    .map(|p| {
        agentrail_ledger::ChainLog::open(p)
            .unwrap()
            .read(0, 1000)
            .unwrap()
    })
    .collect();
    assert!(logs_before.iter().all(|l| l.len() >= 2), "{logs_before:?}");
    // The disk is lost.
    std::fs::remove_dir_all(&data).unwrap();

    let opts = RestoreOptions {
        data_dir: data.clone(),
        tenants: None,
        verifier: vkey.clone(),
        log_key: log_key.clone(),
    };
    let restored = restore(&store, &opts, &mut |_, _, _, _| {}).unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].events, 60);
    assert_eq!(restored[0].indexed, 60);
    // A second restore into it is refused: it is not empty.
    let e = restore(&store, &opts, &mut |_, _, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    // The wrong log key is refused, and leaves nothing behind.
    let other = dir.path().join("other");
    let e = restore(
        &store,
        &RestoreOptions {
            data_dir: other.clone(),
            log_key: Signer::from_seed("agentrail.local", [9; 32])
                .unwrap()
                .to_private_key_string(),
            ..opts.clone()
        },
        &mut |_, _, _, _| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("log key"), "{e}");
    assert!(
        !other.exists(),
        "restore created {} and left it",
        other.display()
    );

    // Who read what, and the retention runs, come back as they were archived (the last round
    // archived them as they stood: every record).
    for (p, before) in [
        DataDir::new(&data).tenant(&t).access_log(),
        DataDir::new(&data).tenant(&t).retention_log(),
    ]
    .iter()
    .zip(&logs_before)
    {
        let after = agentrail_ledger::ChainLog::open(p)
            .unwrap()
            .read(0, 1000)
            .unwrap();
        assert_eq!(&after, before, "{}", p.display());
    }
    // The restore statement excuses only the logs the archive does not carry.
    let stmt = std::fs::read_to_string(DataDir::new(&data).tenant(&t).restored()).unwrap();
    assert!(
        stmt.contains("absent tokens keys integrity api-keys"),
        "{stmt}"
    );
    // The restored directory verifies offline, like any other.
    let report = agentrail_ledger::verify_tenant(&data, &t, &vkey, "agentrail.local");
    assert_eq!(report.failure, None, "{report:?}");
    assert_eq!(report.events, 60);

    // Without the signed restore statement, the archived checkpoint's commitments of the logs
    // the archive does not carry would refuse it.
    let bare = dir.path().join("bare");
    copy_dir(&data, &bare);
    std::fs::remove_file(DataDir::new(&bare).tenant(&t).restored()).unwrap();
    // (Only the checkpoint the restore started from is excused; restore signed one after it.)
    let ck = DataDir::new(&bare).tenant(&t).checkpoint_log();
    let texts = {
        let mut cfg = Config::new(&data);
        cfg.checkpoint_interval = None;
        cfg.without_signer = true;
        Ledger::open(cfg).unwrap().checkpoints(&t).unwrap()
    };
    assert!(texts.len() >= 2, "{texts:?}");
    assert!(
        texts.contains(&archived_cp)
            || texts
                .iter()
                .any(|c| c.contains(&format!("\n{}\n", old_cp.size)))
    );
    let mut log =
        agentrail_ledger::frame::encode_header(agentrail_ledger::frame::FileKind::Checkpoints, 0)
            .to_vec();
    for c in &texts[..texts.len() - 1] {
        agentrail_ledger::frame::encode_note(c.as_bytes(), &mut log);
    }
    std::fs::write(&ck, &log).unwrap();
    let report = agentrail_ledger::verify_tenant(&bare, &t, &vkey, "agentrail.local");
    let f = report
        .failure
        .expect("refused without the restore statement");
    assert!(f.reason.contains("commits a log"), "{f}");
    // A statement (even one signed with the log key) cannot excuse a log the archive holds:
    // with the access log gone, naming it absent changes nothing.
    let latest = texts[texts.len() - 2].clone();
    let mut lines = agentrail_ledger::anchors::restore_statement(
        &latest,
        60,
        ("m", "x"),
        &agentrail_ledger::anchors::NOT_IN_ARCHIVE,
    );
    *lines.last_mut().unwrap() = "absent access retention tokens keys integrity api-keys".into();
    let origin = format!("agentrail.local/tenants/{t}");
    let body = format!("{origin}/restore\n{}\n", lines.join("\n"));
    let signer = Signer::from_private_key_string(log_key.trim()).unwrap();
    let note = agentrail_note::Note {
        signatures: vec![signer.sign(&body)],
        text: body,
    };
    std::fs::write(DataDir::new(&bare).tenant(&t).restored(), note.to_text()).unwrap();
    let report = agentrail_ledger::verify_tenant(&bare, &t, &vkey, "agentrail.local");
    assert_eq!(
        report.failure, None,
        "the statement excuses the logs not archived: {report:?}"
    );
    std::fs::remove_file(DataDir::new(&bare).tenant(&t).access_log()).unwrap();
    let report = agentrail_ledger::verify_tenant(&bare, &t, &vkey, "agentrail.local");
    let f = report.failure.expect("the access log is not excusable");
    assert!(f.reason.contains("access log"), "{f}");

    // The service opens it: the archived events byte for byte, proofs against the archived
    // checkpoint, a next checkpoint consistent with it, and ingest goes on.
    let s = Service::open(config(&data, &dir.path().join("archive2")))
        .unwrap()
        .service;
    let l = s.ledger();
    for (seq, want) in original.iter().enumerate() {
        let e = l.read(&t, seq as u64).unwrap();
        assert_eq!(&e.bytes, want, "seq {seq}");
        if (seq as u64) < old_cp.size {
            let proof = l.inclusion_proof(&t, seq as u64, old_cp.size).unwrap();
            agentrail_merkle::verify_inclusion(
                seq as u64,
                old_cp.size,
                &agentrail_merkle::leaf_hash(want),
                &proof,
                &old_cp.root,
            )
            .unwrap();
        }
    }
    s.ingest(&t, &events(1000, 10), BatchFormat::Ndjson)
        .unwrap();
    let new_cp = l.checkpoint(&t).unwrap();
    assert_eq!(new_cp.size, 70);
    let proof = l.consistency_proof(&t, old_cp.size, new_cp.size).unwrap();
    agentrail_merkle::verify_consistency(
        old_cp.size,
        new_cp.size,
        &old_cp.root,
        &new_cp.root,
        &proof,
    )
    .unwrap();
    s.shutdown();
    drop(s);
    // After new checkpoints the restore statement no longer excuses anything: a log cut now is
    // found as ever.
    let report = agentrail_ledger::verify_tenant(&data, &t, &vkey, "agentrail.local");
    assert_eq!(report.failure, None, "{report:?}");
    let keys_log = DataDir::new(&data).system().api_keys_log();
    std::fs::write(&keys_log, b"").unwrap();
    let report = agentrail_ledger::verify_tenant(&data, &t, &vkey, "agentrail.local");
    let f = report
        .failure
        .expect("a cut log is found after a restore too");
    assert!(f.reason.contains("API key log"), "{f}");
}

#[test]
fn integrity_reports_check_that_the_archive_holds_what_the_ledger_sealed() {
    let Acme {
        dir: _dir,
        archive,
        service: s,
        root,
        tenant: t,
        ..
    } = acme();
    // Before anything is archived: nothing to compare, and that is fine.
    let rec = s.verify_now(&t).unwrap();
    assert_eq!(rec["report"]["result"], "ok", "{rec}");
    assert_eq!(rec["report"]["archive"]["segments"], 0, "{rec}");
    s.ingest(&t, &events(0, 30), BatchFormat::Ndjson).unwrap();
    s.archive_now(&t).unwrap();
    s.ingest(&t, &events(30, 30), BatchFormat::Ndjson).unwrap();
    read_access_log(&s, &root, &t, json!({}));
    s.archive_now(&t).unwrap();
    let rec = s.verify_now(&t).unwrap();
    let a = &rec["report"]["archive"];
    assert_eq!(rec["report"]["result"], "ok", "{rec}");
    assert_eq!(
        (
            a["segments"].as_u64(),
            a["events"].as_u64(),
            a["log_pieces"].as_u64()
        ),
        (Some(2), Some(60), Some(1)),
        "{a}"
    );
    // The signed report carries it (the signature covers the whole report).
    let vkey: Verifier = s.verifier_key().parse().unwrap();
    let report = agentrail_service::integrity::verify_report(&rec, &vkey).unwrap();
    assert_eq!(report["archive"], *a);

    // An archived object altered: the next report fails, naming it. A piece of the access
    // log first (then put back), then a segment.
    let store = FileArchive::new(&archive);
    let piece = keys(&store, "/access-").pop().unwrap();
    let kept = store.get(&piece).unwrap().unwrap();
    rewrite(&archive, &piece, |b| b[20] ^= 1);
    let rec = s.verify_now(&t).unwrap();
    assert_eq!(rec["report"]["result"], "failed", "{rec}");
    let f = rec["report"]["failure"].as_str().unwrap();
    assert!(f.contains(&piece) && f.contains("altered"), "{f}");
    rewrite(&archive, &piece, |b| *b = kept.clone());
    assert_eq!(s.verify_now(&t).unwrap()["report"]["result"], "ok");
    let seg = keys(&store, "/segment-").pop().unwrap();
    rewrite(&archive, &seg, |b| b[200] ^= 1);
    let rec = s.verify_now(&t).unwrap();
    assert_eq!(rec["report"]["result"], "failed", "{rec}");
    let f = rec["report"]["failure"].as_str().unwrap();
    assert!(f.contains(&seg) && f.contains("altered"), "{f}");
    s.shutdown();
}

#[test]
fn reads_alone_reach_the_archive() {
    let Acme {
        dir,
        archive,
        service: s,
        root,
        tenant: t,
        ..
    } = acme();
    let read = |n: u64| read_access_log(&s, &root, &t, json!({"n": n}));
    s.ingest(&t, &events(0, 20), BatchFormat::Ndjson).unwrap();
    read(0);
    assert_eq!(s.archive_now(&t).unwrap().segments, 1);
    let store = FileArchive::new(&archive);
    // No new events, only reads; the tenant's next checkpoint (of the same size) commits them.
    read(1);
    read(2);
    s.ledger().anchor_now(&t).unwrap();
    let r = s.archive_now(&t).unwrap();
    assert_eq!((r.segments, r.archived), (0, 20), "{r:?}");
    let mans = keys(&store, "/manifest-");
    assert_eq!(mans.len(), 2, "{mans:?}");
    let m = parse_manifest(&store.get(&mans[1]).unwrap().unwrap()).unwrap();
    assert!(m.manifest.segments.is_empty());
    assert_eq!((m.manifest.first_seq, m.manifest.end_seq), (20, 20));
    assert_eq!(m.manifest.logs.len(), 1);
    assert_eq!(m.manifest.log_ends["access"], 3);
    // Checkpoints of 20 events, differing in the access log's head: one object each.
    let cps = keys(&store, "/checkpoint-");
    assert_eq!(cps.len(), 2, "{cps:?}");
    // Nothing new: nothing written.
    assert_eq!(s.archive_now(&t).unwrap().segments, 0);
    assert_eq!(keys(&store, "/manifest-").len(), mans.len());
    let vkey: Verifier = s.verifier_key().parse().unwrap();
    s.shutdown();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let v = verify_archive(&store, &t, &vkey, &scratch, &mut |_, _, _| {}).unwrap();
    assert_eq!(v.fetched.events, 20);
    assert_eq!(
        v.fetched.logs,
        vec![(agentrail_ledger::anchors::Anchored::Access, 3)]
    );
}
