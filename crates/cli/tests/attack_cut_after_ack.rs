//! Threat: acknowledged events cut or changed after the fact, before any scheduled checkpoint
//! signed them: the data directory put back to an older copy (a rollback), or the tail
//! replaced by other events. The records left are internally consistent and `verify` says ok.
//!
//! Defence: every acknowledged answer carries a checkpoint signed over the durable tree that
//! holds its events. A client that kept its receipts runs `agentrail verify --receipts FILE`:
//! a dropped event, an altered one, and a tree that does not hold a signed root are each
//! named, with the receipt's line.

mod common;

use agentrail_testkit::copy_dir;
use common::{run as agentrail, stdout};
use std::path::Path;
use std::process::Output;

fn events(prefix: &str, n: usize, outcome: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"schema_version":"1","event_id":"{prefix}-{i}","event_type":"tool.invocation","session_id":"s-{prefix}","payload":{{"tool":{{"name":"refund"}},"status":{{"outcome":"{outcome}"}}}}}}"#
            ) + "\n"
        })
        .collect()
}

/// Ingests `file` offline; the receipt lines it printed.
fn ingest(data: &Path, file: &Path) -> String {
    let o = agentrail(&[
        "ingest",
        "--data-dir",
        data.to_str().unwrap(),
        "--tenant",
        "acme",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

fn verify_receipts(data: &Path, receipts: &Path) -> Output {
    agentrail(&[
        "verify",
        "--data-dir",
        data.to_str().unwrap(),
        "--receipts",
        receipts.to_str().unwrap(),
    ])
}

#[test]
fn kept_receipts_name_a_rollback_and_a_replaced_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, older) = (tmp.path().join("data"), tmp.path().join("older"));
    let first = ingest(&data, Path::new("examples/events.ndjson"));
    copy_dir(&data, &older);
    let batch = tmp.path().join("refunds.ndjson");
    std::fs::write(&batch, events("refund", 5, "ok")).unwrap();
    let kept = tmp.path().join("receipts.ndjson");
    std::fs::write(&kept, format!("{first}{}", ingest(&data, &batch))).unwrap();
    // Every line carries the checkpoint signed over the events it acknowledges.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&kept)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 19);
    assert!(lines.iter().all(|l| {
        l["checkpoint"]
            .as_str()
            .unwrap()
            .starts_with("agentrail.local/tenants/acme\n")
    }));
    let ok = verify_receipts(&data, &kept);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("19 kept receipts"), "{}", stdout(&ok));

    // A rollback to the older copy: consistent, and plain verify says so; the receipts do not.
    let rolled = tmp.path().join("rolled");
    copy_dir(&older, &rolled);
    let plain = agentrail(&["verify", "--data-dir", rolled.to_str().unwrap()]);
    assert!(plain.status.success(), "{}", stdout(&plain));
    let v = verify_receipts(&rolled, &kept);
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    assert!(
        stdout(&v).contains("acme: FAILED") && stdout(&v).contains("receipts.ndjson line 15"),
        "{}",
        stdout(&v)
    );

    // The tail replaced by other events under the same ids: named as altered or rewritten.
    let forked = tmp.path().join("forked");
    copy_dir(&older, &forked);
    let other = tmp.path().join("other.ndjson");
    std::fs::write(&other, events("refund", 5, "error")).unwrap();
    ingest(&forked, &other);
    let plain = agentrail(&["verify", "--data-dir", forked.to_str().unwrap()]);
    assert!(plain.status.success(), "{}", stdout(&plain));
    let v = verify_receipts(&forked, &kept);
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    let out = stdout(&v);
    assert!(
        out.contains("altered") || out.contains("rewritten"),
        "{out}"
    );

    // A receipt whose checkpoint another key signed proves nothing and is refused as such.
    let mut forged = lines[0].clone();
    forged["checkpoint"] = serde_json::json!(
        "agentrail.local/tenants/acme\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— agentrail.local AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    );
    let bad = tmp.path().join("forged.ndjson");
    std::fs::write(&bad, format!("{forged}\n")).unwrap();
    let v = verify_receipts(&data, &bad);
    assert!(!v.status.success());
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}
