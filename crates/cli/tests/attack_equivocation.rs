//! Threat: whoever takes the data directory (and the server's user) rewrites a tenant's history
//! — a rejected refund turned into an approval, every hash re-chained, the checkpoint log
//! emptied — and has the server sign the forgery: two valid checkpoints of one origin with
//! different trees (equivocation). With the key in `system/log.key` the server signs anything.
//!
//! Defence: the log key held by a separate `agentrail signer` process (here a real second
//! process on a Unix socket). It keeps its own durable record of the newest tree it signed per
//! origin and signs only with a consistency proof to it: the forgery gets no signature, before
//! or after the signer restarts, and neither does a raw request over its socket.

mod common;

use agentrail_ledger::frame::HEADER_LEN;
use agentrail_ledger::layout::CHECKPOINT_LOG;
use agentrail_testkit::copy_dir;
use common::{Killed, bin, run, text};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn start_signer(dir: &Path) -> (Killed, PathBuf) {
    let socket = dir.join("signer.sock");
    let child = bin()
        .args(["signer", "--key"])
        .arg(dir.join("log.key"))
        .arg("--state")
        .arg(dir.join("signed.jsonl"))
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the signer never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Killed(child), socket)
}

fn reviews(decision: &str, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"schema_version":"1","event_id":"rv-{i}","event_type":"human.review","session_id":"s-refunds","payload":{{"reviewer":{{"id":"alice"}},"decision":"{decision}","presented_at":"2026-11-25T12:00:00Z","decided_at":"2026-11-25T12:00:09Z"}}}}"#
            ) + "\n"
        })
        .collect()
}

fn ingest(data: &Path, signer: Option<&Path>, file: &Path) -> Output {
    let mut args = vec![
        "ingest".to_owned(),
        "--data-dir".into(),
        data.display().to_string(),
        "--tenant".into(),
        "acme".into(),
    ];
    if let Some(s) = signer {
        args.extend(["--signer".into(), s.display().to_string()]);
    }
    args.push(file.display().to_string());
    bin().args(&args).output().unwrap()
}

/// One request over the signer's socket, as anyone who can reach it may send.
fn raw(socket: &Path, req: serde_json::Value) -> serde_json::Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn a_rewritten_history_gets_no_signature_from_the_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let signer_dir = tmp.path().join("signer");
    std::fs::create_dir_all(&signer_dir).unwrap();
    let (signer, socket) = start_signer(&signer_dir);
    let data = tmp.path().join("data");

    // The real history: ten rejections, signed by the signer; no key in the data directory.
    let real = tmp.path().join("real.ndjson");
    std::fs::write(&real, reviews("reject", 0, 10)).unwrap();
    let o = ingest(&data, Some(&socket), &real);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!data.join("system/log.key").exists());
    let vkey = std::fs::read_to_string(data.join("system/log.vkey")).unwrap();
    let receipts = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(receipts.contains("\"checkpoint\""), "{receipts}");

    // Without its signer the directory is not opened for writing (no new key is made).
    let more = tmp.path().join("more.ndjson");
    std::fs::write(&more, reviews("reject", 10, 2)).unwrap();
    let o = ingest(&data, None, &more);
    assert!(!o.status.success());
    assert!(text(&o).contains("held elsewhere"), "{}", text(&o));

    // The forgery: the same ids, approvals instead, built with a key of the attacker's own
    // under the same origin; moved in place of the real tenant, checkpoint log emptied.
    let scratch = tmp.path().join("scratch");
    let forged = tmp.path().join("forged.ndjson");
    std::fs::write(&forged, reviews("approve", 0, 10)).unwrap();
    let o = ingest(&scratch, None, &forged);
    assert!(o.status.success(), "{}", text(&o));
    let victim = data.join("tenants/acme");
    std::fs::remove_dir_all(&victim).unwrap();
    copy_dir(&scratch.join("tenants/acme"), &victim);
    std::fs::OpenOptions::new()
        .write(true)
        .open(victim.join(CHECKPOINT_LOG))
        .unwrap()
        .set_len(HEADER_LEN as u64)
        .unwrap();
    std::fs::remove_dir_all(victim.join("index")).ok();

    // Appending to it asks the signer for a checkpoint: refused, the reason named.
    let o = ingest(&data, Some(&socket), &more);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("not consistent with the tree of size 10"),
        "{}",
        text(&o)
    );

    // A restarted signer remembers what it signed.
    drop(signer);
    let (_signer, socket) = start_signer(&signer_dir);
    let o = ingest(&data, Some(&socket), &more);
    assert!(!o.status.success());
    assert!(text(&o).contains("not consistent"), "{}", text(&o));

    // A raw request for the forged tree of size 10, and a statement shaped as a checkpoint.
    let forged_cp = run(&[
        "checkpoint",
        "--data-dir",
        scratch.to_str().unwrap(),
        "--tenant",
        "acme",
    ]);
    let body = String::from_utf8_lossy(&forged_cp.stdout);
    let body = body.split("\n\n").next().unwrap().to_owned() + "\n";
    assert!(
        body.starts_with("agentrail.local/tenants/acme\n10\n"),
        "{body}"
    );
    let a = raw(
        &socket,
        serde_json::json!({"op": "checkpoint", "text": body, "proof_from": 10, "proof": []}),
    );
    assert!(
        a["error"].as_str().unwrap().contains("not consistent"),
        "{a}"
    );
    let a = raw(
        &socket,
        serde_json::json!({"op": "statement", "text": body}),
    );
    assert!(
        a["error"].as_str().unwrap().contains("not a statement"),
        "{a}"
    );

    // The real history still verifies against the verifier key, with the kept receipts; the
    // forged one fails them.
    let kept = tmp.path().join("kept.ndjson");
    std::fs::write(&kept, &receipts).unwrap();
    let v = run(&[
        "verify",
        "--data-dir",
        data.to_str().unwrap(),
        "--key",
        vkey.trim(),
        "--receipts",
        kept.to_str().unwrap(),
    ]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("acme: FAILED"), "{}", text(&v));
}
