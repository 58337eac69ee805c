//! Threat: whoever can write the data directory edits the query store (`index.sqlite`): a
//! review's indexed decision turned from "reject" into "approve" (the index once held the
//! event's body too). The index is derived and unsigned; `verify` checks the ledger, so nothing
//! there notices.
//!
//! Defence: the index holds no copy of the bodies; reads serve them from the ledger (CRC and
//! hash checked). An edited row never changes what is served; a row whose hash no longer matches the ledger at its
//! seq is refused (named, counted in `agentrail_index_mismatches`) until the tenant is
//! reindexed, and the integrity verifier, sampling index rows against the ledger, fails the
//! tenant. The index can still hide or misfile rows; it cannot change what is served.

mod common;

use agentrail_event::batch::BatchFormat;
use agentrail_index::{EventFilter, IndexError};
use agentrail_service::{Scope, Service, ServiceConfig};
use serde_json::Value;

fn reviews() -> String {
    (0..6)
        .map(|i| {
            format!(
                r#"{{"schema_version":"1","event_id":"rv-{i}","event_type":"human.review","session_id":"s-refunds","payload":{{"reviewer":{{"id":"alice"}},"decision":"reject","presented_at":"2026-11-25T12:00:00Z","decided_at":"2026-11-25T12:00:09Z"}}}}"#
            ) + "\n"
        })
        .collect()
}

/// Every review as served (stored view), or the error.
fn served(service: &Service, caller: &agentrail_service::Principal) -> Result<Vec<Value>, String> {
    let t = agentrail_event::TenantId::parse("acme").unwrap();
    let req = common::request(caller.clone(), &t);
    let rows =
        common::all_events(service, &req, &EventFilter::default()).map_err(|e| e.to_string())?;
    service
        .presenter(&t, false)
        .all(&rows)
        .map_err(|e: IndexError| e.to_string())
}

#[test]
fn an_edited_query_store_never_changes_what_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServiceConfig::unscheduled(dir.path().to_path_buf());
    let index = dir.path().join("tenants/acme/index/index.sqlite");
    let caller = {
        let opened = Service::open(cfg.clone()).unwrap();
        let root = opened.root().unwrap();
        let s = opened.service;
        let info = s.create_tenant(&root, "acme").unwrap();
        s.ingest(&info.tenant_id, reviews().as_bytes(), BatchFormat::Ndjson)
            .unwrap();
        let (_, key) = s
            .create_key(&root, &info.tenant_id, None, &Scope::ALL)
            .unwrap();
        let caller = s.authenticate(&key).unwrap();
        // Read once: the index holds every event.
        assert_eq!(served(&s, &caller).unwrap().len(), 6);
        s.shutdown();
        (key, caller)
    };
    let (key, _) = caller;

    // The indexed decision edited: the ledger's body is what is served.
    let db = rusqlite::Connection::open(&index).unwrap();
    let n = db
        .execute(
            "UPDATE events SET review_decision = 'approve' WHERE event_id = 'rv-3'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let s = Service::open(cfg.clone()).unwrap().service;
    let caller = s.authenticate(&key).unwrap();
    let events = served(&s, &caller).unwrap();
    let rv3 = events.iter().find(|e| e["event_id"] == "rv-3").unwrap();
    assert_eq!(rv3["payload"]["decision"], "reject", "{rv3}");
    assert!(events.iter().all(|e| e["payload"]["decision"] == "reject"));
    s.shutdown();
    drop(s);

    // The row's hash edited to match a forged body: refused, named, counted.
    let db = rusqlite::Connection::open(&index).unwrap();
    db.execute(
        "UPDATE events SET hash = zeroblob(32) WHERE event_id = 'rv-3'",
        [],
    )
    .unwrap();
    drop(db);
    let s = Service::open(cfg).unwrap().service;
    let caller = s.authenticate(&key).unwrap();
    let e = served(&s, &caller).unwrap_err();
    assert!(
        e.contains("does not match the ledger at seq 3") && e.contains("reindex"),
        "{e}"
    );
    // The integrity verifier samples index rows against the ledger: it fails the tenant.
    let t = agentrail_event::TenantId::parse("acme").unwrap();
    let report = s.verify_now(&t).unwrap();
    assert_eq!(report["report"]["result"], "failed", "{report}");
    assert!(
        report["report"]["failure"]
            .as_str()
            .unwrap()
            .contains("query store"),
        "{report}"
    );
    let metrics = s.metrics_text();
    assert!(
        metrics.contains("agentrail_index_mismatches_total 1"),
        "{metrics}"
    );
}
