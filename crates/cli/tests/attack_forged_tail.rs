//! Threat: after a clean shutdown (every event covered by a final signed checkpoint), someone
//! who can write the data directory appends a forged record with a valid chain: hashes, CRCs
//! and tree all consistent, just never signed. Before, `agentrail verify --key` said ok and the
//! server served it and signed it into its next checkpoint.
//!
//! Defence: with `--key` (trust from outside the box), events no checkpoint signed by that key
//! covers fail the tenant, with how many; `--allow-unsigned-tail` accepts them (what a crash
//! leaves until the server's next start signs them). With `--trust-dir`, a tenant whose records
//! do not hold its pinned checkpoint fails, as the server refuses to open it.

mod common;

use common::{run as agentrail, stdout};

#[test]
fn a_forged_tail_after_a_clean_shutdown_fails_verify_with_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let ingest = agentrail(&[
        "ingest",
        "--data-dir",
        d,
        "--tenant",
        "acme",
        "examples/events.ndjson",
    ]);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let key = std::fs::read_to_string(data.join("system/log.vkey")).unwrap();
    let key = key.trim();
    let ok = agentrail(&["verify", "--data-dir", d, "--key", key]);
    assert!(
        ok.status.success(),
        "a clean shutdown signs everything: {}",
        stdout(&ok)
    );

    // The forgery: one more record, chained like any other, and no signature over it (the
    // ledger is left without the clean close that would sign it).
    let ledger = {
        let mut cfg = agentrail_ledger::Config::new(&data);
        cfg.checkpoint_interval = None;
        agentrail_ledger::Ledger::open(cfg).unwrap()
    };
    let forged = agentrail_event::validate_bytes(
        br#"{"schema_version":"1","event_id":"evt-forged","event_type":"human.review","session_id":"sess-42",
        "payload":{"reviewer":{"id":"mallory"},"decision":"approve","presented_at":"2026-11-25T09:00:05Z","decided_at":"2026-11-25T09:00:06Z"}}"#,
    )
    .unwrap();
    let tenant = agentrail_event::TenantId::parse("acme").unwrap();
    ledger.append(&tenant, vec![forged]).unwrap();
    std::mem::forget(ledger);

    // The chain alone cannot tell: without the key, verify still says ok.
    let plain = agentrail(&["verify", "--data-dir", d, "--tenant", "acme"]);
    assert!(plain.status.success(), "{}", stdout(&plain));
    let v = agentrail(&["verify", "--data-dir", d, "--tenant", "acme", "--key", key]);
    assert_eq!(v.status.code(), Some(1), "{}", stdout(&v));
    assert!(
        stdout(&v).contains("acme: FAILED") && stdout(&v).contains("1 of 15 events (from seq 14)"),
        "{}",
        stdout(&v)
    );
    let allowed = agentrail(&[
        "verify",
        "--data-dir",
        d,
        "--tenant",
        "acme",
        "--key",
        key,
        "--allow-unsigned-tail",
    ]);
    assert!(allowed.status.success(), "{}", stdout(&allowed));
}

#[test]
fn verify_with_a_trust_dir_checks_every_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, trust) = (tmp.path().join("data"), tmp.path().join("trust"));
    let d = data.to_str().unwrap();
    {
        let mut cfg = agentrail_ledger::Config::new(&data);
        cfg.checkpoint_interval = None;
        cfg.trust_dir = Some(trust.clone());
        let l = agentrail_ledger::Ledger::open(cfg).unwrap();
        let t = agentrail_event::TenantId::parse("acme").unwrap();
        let events = std::fs::read_to_string("../../examples/events.ndjson").unwrap();
        let events: Vec<_> = events
            .lines()
            .map(|l| agentrail_event::validate_bytes(l.as_bytes()).unwrap())
            .collect();
        l.append(&t, events).unwrap();
        l.close().unwrap();
    }
    let t = trust.to_str().unwrap();
    let ok = agentrail(&["verify", "--data-dir", d, "--trust-dir", t]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    // The log cut back to its first event, its checkpoints gone: only the pin remembers.
    let dir = data.join("tenants/acme");
    std::fs::write(
        dir.join("checkpoints/log"),
        &std::fs::read(dir.join("checkpoints/log")).unwrap()[..32],
    )
    .unwrap();
    let seg = std::fs::read_dir(dir.join("ledger"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    // The segment: a 32-byte header then records; keep the header and nothing else.
    std::fs::write(&seg, &bytes[..32]).unwrap();
    let plain = agentrail(&["verify", "--data-dir", d]);
    let pinned = agentrail(&["verify", "--data-dir", d, "--trust-dir", t]);
    assert_eq!(pinned.status.code(), Some(1), "{}", stdout(&pinned));
    assert!(
        stdout(&pinned).contains("acme.checkpoint") && stdout(&pinned).contains("was cut"),
        "{}\n(without the trust dir: {})",
        stdout(&pinned),
        stdout(&plain)
    );
}
