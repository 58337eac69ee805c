//! Threat: whoever can write the data directory (a rogue operator, a compromised host) but not
//! the trust directory rewrites a tenant's history: a human review turned from "reject" into
//! "approve" with every later hash and CRC re-chained, the checkpoint log truncated so no
//! signature contradicts the forgery, or the log cut short. The records are then internally
//! consistent; only something kept outside the box can tell.
//!
//! Defence: the checkpoint pinned in `trust_dir` (`agentrail_ledger::pins`). A tenant whose
//! records do not hold it is refused at open, no checkpoint is signed over it, and the offline
//! verifier names it. Without a pin (the first case) the forgery goes through: that is the
//! baseline the pin exists for.

mod common;

use agentrail_event::{TenantId, ValidEvent, validate_bytes};
use agentrail_ledger::frame::HEADER_LEN;
use agentrail_ledger::layout::CHECKPOINT_LOG;
use agentrail_ledger::{Ledger, OpenError, read_origin_prefix, read_verifier};
use agentrail_testkit::copy_dir;
use common::*;
use std::fs;
use std::path::Path;

fn review(n: u64, decision: &str) -> ValidEvent {
    let json = format!(
        r#"{{"schema_version":"1","event_id":"r{n}","event_type":"human.review","session_id":"s1",
        "payload":{{"reviewer":{{"id":"alice"}},"decision":"{decision}","presented_at":"2026-11-25T12:00:00Z","decided_at":"2026-11-25T12:00:09Z"}}}}"#
    );
    validate_bytes(json.as_bytes()).unwrap()
}

/// Twenty events, the review at seq 5 as given.
fn history(decision: &str, len: u64) -> Vec<ValidEvent> {
    (0..len)
        .map(|n| {
            if n == 5 {
                review(n, decision)
            } else {
                event(n, 1)
            }
        })
        .collect()
}

fn open_with_pins(dir: &Path, trust: &Path) -> Ledger {
    let mut cfg = config(dir, clock());
    cfg.trust_dir = Some(trust.to_path_buf());
    Ledger::open(cfg).unwrap()
}

/// The attacker's rewrite of tenant `acme` in `data`: a history built elsewhere (with the same
/// origin; its chain and CRCs are as valid as the real ones), its checkpoint log emptied, moved
/// in place of the real one.
fn rewrite(data: &Path, forged: Vec<ValidEvent>) {
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&data.join("system"), &scratch.path().join("system"));
    let l = open(scratch.path());
    l.append(&tenant("acme"), forged).unwrap();
    l.close().unwrap();
    drop(l);
    let forged_dir = scratch.path().join("tenants/acme");
    let log = forged_dir.join(CHECKPOINT_LOG);
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(HEADER_LEN as u64)
        .unwrap();
    let real = data.join("tenants/acme");
    fs::remove_dir_all(&real).unwrap();
    copy_dir(&forged_dir, &real);
}

/// A data directory with acme's true history, checkpointed and closed; pins in `trust`.
fn genuine(data: &Path, trust: &Path) -> String {
    let l = open_with_pins(data, trust);
    l.append(&tenant("acme"), history("reject", 20)).unwrap();
    let cp = l.checkpoint(&tenant("acme")).unwrap();
    l.close().unwrap();
    cp.text
}

fn verify_pinned(data: &Path, t: &TenantId, trust: Option<&Path>) -> Option<String> {
    let v = read_verifier(data).unwrap();
    let prefix = read_origin_prefix(data).unwrap();
    let anchors = agentrail_ledger::Anchors {
        trust_dir: trust,
        ..Default::default()
    };
    agentrail_ledger::verify_tenant_with_progress(data, t, &v, &prefix, &anchors, &mut |_, _| {})
        .failure
        .map(|d| d.to_string())
}

#[test]
fn without_a_pin_a_rewritten_history_is_opened_and_signed_again() {
    let (data, trust) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let signed = genuine(data.path(), trust.path());
    rewrite(data.path(), history("approve", 20));
    // The baseline the pin exists for: no pin, and the forgery verifies and gets the real key's
    // signature over a tree of the same size with another root.
    assert_eq!(verify_pinned(data.path(), &tenant("acme"), None), None);
    let l = open(data.path());
    let resigned = l.checkpoint(&tenant("acme")).unwrap();
    assert_eq!(resigned.size, 20);
    assert_ne!(resigned.text, signed);
}

#[test]
fn a_rewritten_history_is_refused_at_open_unsigned_and_named_by_verify() {
    let (data, trust) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    genuine(data.path(), trust.path());
    let pin = trust.path().join("tenants/acme.checkpoint");
    assert!(
        pin.exists(),
        "the checkpoint is pinned outside the data directory"
    );
    rewrite(data.path(), history("approve", 20));

    let e = verify_pinned(data.path(), &tenant("acme"), Some(trust.path())).unwrap();
    assert!(
        e.contains("acme.checkpoint") && e.contains("rewritten"),
        "{e}"
    );
    let l = open_with_pins(data.path(), trust.path());
    match l.size(&tenant("acme")) {
        Err(agentrail_ledger::ReadError::Open(OpenError::Damaged(d))) => {
            assert!(d.reason.contains("rewritten"), "{d}");
            assert!(d.file.ends_with("acme.checkpoint"), "{d}");
        }
        other => panic!("the forged tenant opened: {other:?}"),
    }
    assert!(l.checkpoint(&tenant("acme")).is_err());
    drop(l);
    // Nothing was signed over the forgery: the checkpoint log is still empty.
    let log = fs::metadata(data.path().join("tenants/acme").join(CHECKPOINT_LOG)).unwrap();
    assert_eq!(log.len(), HEADER_LEN as u64);
    // Other tenants are unaffected.
    let l = open_with_pins(data.path(), trust.path());
    l.append(&tenant("globex"), vec![event(0, 1)]).unwrap();
    l.checkpoint(&tenant("globex")).unwrap();
}

#[test]
fn a_history_cut_short_is_refused_and_the_pin_never_moves_back() {
    let (data, trust) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    genuine(data.path(), trust.path());
    let pinned = fs::read(trust.path().join("tenants/acme.checkpoint")).unwrap();
    // The true first ten events, the rest (and every checkpoint) gone.
    rewrite(data.path(), history("reject", 10));
    let e = verify_pinned(data.path(), &tenant("acme"), Some(trust.path())).unwrap();
    assert!(
        e.contains("holds 10 events") && e.contains("covers 20"),
        "{e}"
    );
    let l = open_with_pins(data.path(), trust.path());
    let e = l.size(&tenant("acme")).unwrap_err().to_string();
    assert!(e.contains("was cut"), "{e}");
    drop(l);
    assert_eq!(
        fs::read(trust.path().join("tenants/acme.checkpoint")).unwrap(),
        pinned
    );
}

#[test]
fn an_honest_log_moves_its_pin_forward_and_a_foreign_pin_is_refused() {
    let (data, trust) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    genuine(data.path(), trust.path());
    let l = open_with_pins(data.path(), trust.path());
    l.append(&tenant("acme"), vec![event(20, 1)]).unwrap();
    let cp = l.checkpoint(&tenant("acme")).unwrap();
    assert_eq!(cp.size, 21);
    drop(l);
    assert_eq!(
        fs::read_to_string(trust.path().join("tenants/acme.checkpoint")).unwrap(),
        cp.text
    );
    assert_eq!(
        verify_pinned(data.path(), &tenant("acme"), Some(trust.path())),
        None
    );
    // A pin signed by another log's key (a trust directory mixed up, or forged) is named.
    let other = tempfile::tempdir().unwrap();
    let other_trust = tempfile::tempdir().unwrap();
    genuine(other.path(), other_trust.path());
    fs::copy(
        other_trust.path().join("tenants/acme.checkpoint"),
        trust.path().join("tenants/acme.checkpoint"),
    )
    .unwrap();
    let e = verify_pinned(data.path(), &tenant("acme"), Some(trust.path())).unwrap();
    assert!(e.contains("does not verify"), "{e}");
}
