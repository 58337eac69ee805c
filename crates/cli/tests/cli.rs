//! The `agentrail` binary, run as a user would.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn agentrail(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Every file under `dir` holding one of `needles`.
fn files_containing(dir: &std::path::Path, needles: &[&[u8]]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if needles
                    .iter()
                    .any(|n| bytes.windows(n.len()).any(|w| w == *n))
                {
                    found.push(path);
                }
            }
        }
    }
    found
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let o = agentrail(&["--help"], None);
    assert!(o.status.success());
    for cmd in [
        "validate",
        "canonicalize",
        "hash",
        "schema",
        "verify-note",
        "ingest",
        "verify",
        "checkpoint",
        "prove",
        "reindex",
    ] {
        assert!(stdout(&o).contains(cmd), "--help does not list {cmd}");
    }
}

#[test]
fn validate_accepts_the_examples_and_reports_every_problem() {
    let ok = agentrail(&["validate", "examples/events.ndjson"], None);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let bad = agentrail(&["validate", "examples/invalid.ndjson"], None);
    assert_eq!(bad.status.code(), Some(1));
    let out = stdout(&bad);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.contains("line 2: sesion_id: unknown field"), "{out}");
    assert!(
        out.contains("line 2: session_id: required for human.review events"),
        "{out}"
    );
    assert!(
        out.contains("line 2: payload.decided_at: must be an RFC 3339 UTC timestamp"),
        "{out}"
    );
    assert!(
        out.contains("line 3: payload.usage.input_tokens: integer 12… (20 characters) is outside"),
        "{out}"
    );
    // Standard input, as JSON.
    let o = agentrail(
        &["validate", "--format", "json", "-"],
        Some(br#"[{"schema_version":"1"}]"#),
    );
    assert_eq!(stdout(&o), "-: item 0: event_type: required\n");
}

#[test]
fn canonicalize_and_hash() {
    let o = agentrail(
        &["canonicalize", "-"],
        Some(br#"{"b":1.50,"a":[1e16,"\u00e9"]}"#),
    );
    assert_eq!(stdout(&o), "{\"a\":[10000000000000000,\"é\"],\"b\":1.5}\n");
    let o = agentrail(&["canonicalize", "-"], Some(br#"{"a":1,"a":2}"#));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("duplicate key \"a\""));

    // SPECS.md §3 reference: leaf hash of {"event":"login","n":1,"tenant":"a","ts":...}.
    let ev = br#"{"tenant":"a","event":"login","n":1.0,"ts":"2024-01-01T00:00:00Z"}"#;
    let o = agentrail(&["hash", "-"], Some(ev));
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("652776d855adf3e4132cf385b7aabccce6c43cae492efad6df3ae0b57add5c15")
    );
    let hash = stdout(&o)
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .to_owned();
    // A stored event whose `hash` field matches passes; a tampered one fails.
    let stored = format!(
        r#"{{"tenant":"a","event":"login","n":1,"ts":"2024-01-01T00:00:00Z","hash":"{hash}"}}"#
    );
    let o = agentrail(&["hash", "-"], Some(stored.as_bytes()));
    assert!(o.status.success());
    assert!(stdout(&o).ends_with("\tok\n"));
    let tampered = stored.replace("login", "logout");
    let o = agentrail(&["hash", "-"], Some(tampered.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).ends_with("\tMISMATCH\n"));
}

#[test]
fn verify_note_checks_the_example_checkpoint() {
    let cp = "testdata/c2sp/checkpoint_example.txt";
    let key = "example.com/audit/tenant-a+2988e6e5+AStcbgrIX65wnp7N5SoNvTo0cbeo9bobyvjOu56hpykZ";
    let witness = "witness.example/w1+d5301043+BL6zpXgcA8HJQZ8lFlCI/alSYe8D/e+Ugz3I+2ian1TF";
    let o = agentrail(
        &["verify-note", "--key", key, "--witness", witness, cp],
        None,
    );
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("cosignature by witness.example/w1 at 1700000000: ok"));
    assert!(stdout(&o).contains("tree size: 8"));
    let other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let o = agentrail(&["verify-note", "--key", other, cp], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("FAILED"));
    let o = agentrail(&["verify-note", "--key", "garbage", cp], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let o = agentrail(&["schema"], None);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/event-v1.schema.json"
    ))
    .unwrap();
    assert_eq!(stdout(&o), committed);
}

#[test]
fn ingest_verify_checkpoint_and_prove_against_a_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    // Invalid events: nothing is appended, exit 1.
    let bad = agentrail(
        &[
            "ingest",
            "--data-dir",
            data,
            "--tenant",
            "acme",
            "examples/invalid.ndjson",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nothing was appended"));
    // The example session: one receipt per event, then the same receipts marked replayed.
    let args = [
        "ingest",
        "--data-dir",
        data,
        "--tenant",
        "acme",
        "examples/events.ndjson",
    ];
    let first = agentrail(&args, None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let receipts: Vec<serde_json::Value> = stdout(&first)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(receipts.len(), 14);
    assert_eq!(receipts[13]["seq"], 13);
    // The offline path protects like the HTTP one: the email is tokenized (in no file of the
    // data directory: segments, index, logs) and the prompt sealed (in no file but the query
    // index's hot content, which holds sealed fields tokenized).
    let data_dir = tmp.path().join("data");
    let leaks = files_containing(&data_dir, &[b"jane@example.com".as_slice()]);
    assert!(leaks.is_empty(), "the email in {leaks:?}");
    let sealed = files_containing(&data_dir, &[b"You are a refunds agent".as_slice()]);
    assert!(
        sealed.iter().all(|p| p.ends_with("index/index.sqlite")),
        "the prompt in {sealed:?}"
    );
    let again = agentrail(&args, None);
    assert!(
        stdout(&again)
            .lines()
            .all(|l| l.contains(r#""replayed":true"#))
    );

    let ok = agentrail(&["verify", "--data-dir", data], None);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(
        stdout(&ok).starts_with("acme: ok: 14 events"),
        "{}",
        stdout(&ok)
    );

    // The checkpoint verifies with the data directory's key; the proof text is a tlog-proof.
    let vkey = std::fs::read_to_string(tmp.path().join("data/system/log.vkey")).unwrap();
    let cp = agentrail(
        &["checkpoint", "--data-dir", data, "--tenant", "acme"],
        None,
    );
    assert!(stdout(&cp).starts_with("agentrail.local/tenants/acme\n14\n"));
    let checked = agentrail(
        &["verify-note", "--key", vkey.trim(), "-"],
        Some(&cp.stdout),
    );
    assert!(checked.status.success(), "{}", stdout(&checked));
    let proof = agentrail(
        &[
            "prove",
            "--data-dir",
            data,
            "--tenant",
            "acme",
            "--event-id",
            "evt-0003",
        ],
        None,
    );
    assert!(proof.status.success());
    let parsed = agentrail_note::TlogProof::parse(&proof.stdout).unwrap();
    assert_eq!(parsed.index, 2);
    assert_eq!(parsed.checkpoint, stdout(&cp));
    let unknown = agentrail(
        &[
            "prove",
            "--data-dir",
            data,
            "--tenant",
            "acme",
            "--event-id",
            "nope",
        ],
        None,
    );
    assert_eq!(unknown.status.code(), Some(2));

    // The query store rebuilds from the ledger.
    let re = agentrail(&["reindex", "--data-dir", data], None);
    assert!(
        re.status.success(),
        "{}",
        String::from_utf8_lossy(&re.stderr)
    );
    assert!(
        stdout(&re).starts_with("acme: 14 events indexed"),
        "{}",
        stdout(&re)
    );
    assert!(
        tmp.path()
            .join("data/tenants/acme/index/index.sqlite")
            .exists()
    );

    // Damage: verify exits 1 and says where.
    let seg = tmp
        .path()
        .join("data/tenants/acme/ledger/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    let mut perms = std::fs::metadata(&seg).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&seg, perms).unwrap();
    std::fs::write(&seg, &bytes).unwrap();
    let damaged = agentrail(&["verify", "--data-dir", data, "--tenant", "acme"], None);
    assert_eq!(damaged.status.code(), Some(1));
    let out = stdout(&damaged);
    assert!(
        out.contains("acme: FAILED") && out.contains("00000000000000000000.seg at offset"),
        "{out}"
    );
}

#[test]
fn verify_checks_the_token_vault_and_key_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let cfg = agentrail_service::ServiceConfig {
            reserve_bytes: 0,
            ..agentrail_service::ServiceConfig::unscheduled(data.clone())
        };
        let opened = agentrail_service::Service::open(cfg).unwrap();
        let s = opened.service;
        let root = s
            .authenticate(opened.new_root_key.as_deref().unwrap())
            .unwrap();
        let t = s.create_tenant(&root, "acme").unwrap().tenant_id;
        let ev = serde_json::json!({"schema_version": "1", "event_id": "d1", "event_type": "model.decision",
            "session_id": "s1", "subject_id": "alice",
            "payload": {"model": {"provider": "p", "name": "m", "version": "1"},
                "prompt": {"messages": ["mail alice@example.com please"]}, "output": {"raw": "ok"}}});
        s.ingest(
            &t,
            &serde_json::to_vec(&ev).unwrap(),
            agentrail_event::batch::BatchFormat::Json,
        )
        .unwrap();
        s.shutdown();
    }
    let data_s = data.to_str().unwrap();
    let ok = agentrail(&["verify", "--data-dir", data_s], None);
    assert!(ok.status.success(), "{}", stdout(&ok));
    for what in ["token vault ok: 1 records", "key log ok"] {
        assert!(stdout(&ok).contains(what), "{what}: {}", stdout(&ok));
    }
    for (what, rel) in [
        ("token vault", "tenants/acme/tokens/log"),
        ("key log", "system/vault/acme.keys"),
    ] {
        let path = data.join(rel);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 10;
        bad[at] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let out = agentrail(&["verify", "--data-dir", data_s], None);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(&format!("acme: {what} FAILED")),
            "{}",
            stdout(&out)
        );
        std::fs::write(&path, &good).unwrap();
    }
}
