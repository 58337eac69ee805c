//! Shared helpers for the ledger's crate tests: a ledger in a temp dir with a manual clock, and
//! deterministic events.
#![allow(dead_code)]

use agentrail_event::{TenantId, ValidEvent, validate_bytes};
use agentrail_ledger::{Config, Ledger, ManualClock, TenantReport, read_verifier, verify_tenant};
use std::path::Path;
use std::sync::Arc;

pub fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

pub fn config(dir: &Path, clock: Arc<ManualClock>) -> Config {
    let mut cfg = Config::new(dir);
    cfg.clock = clock;
    cfg.checkpoint_interval = None;
    cfg
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at("2026-11-25T12:00:00Z"))
}

pub fn open(dir: &Path) -> Ledger {
    Ledger::open(config(dir, clock())).unwrap()
}

/// A tool invocation in session `s<session>` with event id `e<n>`, caused by `e<n-1>`.
pub fn event(n: u64, session: u64) -> ValidEvent {
    let caused = if n > 0 {
        format!(r#","caused_by":["e{}"]"#, n - 1)
    } else {
        String::new()
    };
    let json = format!(
        r#"{{"schema_version":"1","event_id":"e{n}","event_type":"tool.invocation",
        "session_id":"s{session}","agent_id":"agent-1","occurred_at":"2026-11-25T12:00:00Z"{caused},
        "payload":{{"tool":{{"name":"lookup"}},"status":{{"outcome":"ok"}},"input":{{"n":{n}}}}}}}"#
    );
    validate_bytes(json.as_bytes()).unwrap()
}

/// An event of about `size` bytes with id `<prefix><n>`.
pub fn sized_event(prefix: &str, n: u64, size: usize) -> ValidEvent {
    let filler = "x".repeat(size.saturating_sub(300));
    let json = format!(
        r#"{{"schema_version":"1","event_id":"{prefix}{n}","event_type":"model.decision",
        "session_id":"s{}","payload":{{"model":{{"name":"m","version":"1"}},"reasoning":"{filler}"}}}}"#,
        n % 7
    );
    validate_bytes(json.as_bytes()).unwrap()
}

pub fn verify(dir: &Path, t: &TenantId) -> TenantReport {
    let v = read_verifier(dir).unwrap();
    let prefix = agentrail_ledger::read_origin_prefix(dir).unwrap();
    verify_tenant(dir, t, &v, &prefix)
}

pub fn assert_verifies(dir: &Path, t: &TenantId) -> TenantReport {
    let r = verify(dir, t);
    assert!(r.failure.is_none(), "verify failed: {}", r.failure.unwrap());
    r
}
