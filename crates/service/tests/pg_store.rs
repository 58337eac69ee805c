//! The service with its query store in PostgreSQL: ingest goes on while the database restarts
//! (the ledger is the truth), the indexer reconnects and catches up, queries answer again with
//! every event once; privacy holds there (only tokenized content, never a detected value; an
//! erasure leaves the subject's words in no row of any table).

mod common;

use agentrail_index::EventFilter;
use agentrail_service::ServiceError;
use agentrail_testkit::postgres::Server;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The common service environment with its query store in a PostgreSQL server of its own.
struct Env {
    env: common::Env,
    pg: Server,
}

impl std::ops::Deref for Env {
    type Target = common::Env;
    fn deref(&self) -> &common::Env {
        &self.env
    }
}

fn env() -> Env {
    let pg = Server::start();
    let url = pg.create_db("agentrail");
    let store =
        agentrail_pgindex::PgStore::connect_with(&url, 4, Duration::from_millis(500)).unwrap();
    let env = common::env_with(|cfg| {
        cfg.index_store = Some(Arc::new(store));
        cfg.query_wait_ms = 2_000;
    });
    Env { env, pg }
}

fn event(b: u64, i: u64, subject: &str, text: &str) -> Value {
    json!({"schema_version": "1", "event_id": format!("b{b}-{i}"), "event_type": "model.decision",
        "session_id": format!("s{}", b % 5), "agent_id": "bot", "subject_id": subject,
        "occurred_at": "2026-11-26T01:00:00Z",
        "payload": {"model": {"provider": "p", "name": "m1", "version": "1"},
            "prompt": {"messages": [text]}, "output": {"raw": "ok"}}})
}

impl Env {
    fn events(&self) -> Result<Vec<agentrail_index::EventRow>, ServiceError> {
        let req = common::request(self.admin.clone(), &self.tenant);
        common::all_events(&self.service, &req, &EventFilter::default())
    }

    /// Rows of every query-store table, as text, read as the superuser (past the policies).
    fn all_rows(&self) -> String {
        let selects: Vec<String> = agentrail_index::TABLES
            .iter()
            .map(|t| format!("SELECT x::text FROM agentrail.{t} x"))
            .collect();
        self.pg.psql(
            "agentrail",
            &format!(
                "SELECT string_agg(r, E'\\n') FROM ({}) a(r)",
                selects.join(" UNION ALL ")
            ),
        )
    }
}

#[test]
fn ingest_goes_on_while_postgresql_restarts_and_the_index_catches_up() {
    let mut e = env();
    let mut acked = 0u64;
    let mut b = 0;
    let mut ingest = |e: &Env, n: u64| {
        for _ in 0..n {
            let batch: Vec<Value> = (0..50).map(|i| event(b, i, "s", "hello")).collect();
            let receipts = e
                .ingest(&batch)
                .expect("ingest does not wait for the index");
            acked += receipts.len() as u64;
            b += 1;
        }
    };
    ingest(&e, 10);
    assert_eq!(e.events().unwrap().len(), 500);

    e.pg.stop();
    // Acknowledged while the database is down: the ledger holds them.
    ingest(&e, 10);
    let down = e.events().unwrap_err();
    assert!(down.to_string().contains("retry"), "{down}");
    e.pg.resume();
    ingest(&e, 10);

    // The indexer reconnects (with the next append or query) and catches up.
    let started = Instant::now();
    let rows = loop {
        match e.events() {
            Ok(rows) if rows.len() as u64 == acked => break rows,
            Ok(_) | Err(_) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("the index did not catch up: {other:?}"),
        }
    };
    assert_eq!(acked, 1500);
    let seqs: BTreeSet<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (0..1500).collect::<BTreeSet<u64>>(),
        "lost or repeated"
    );
    let counted = e.pg.psql(
        "agentrail",
        "SELECT count(*), count(DISTINCT seq) FROM agentrail.events WHERE tenant_id = 'acme'",
    );
    assert_eq!(counted.trim(), "1500|1500");
}

#[test]
fn the_shared_store_holds_tokens_never_values_and_erasure_leaves_no_word_behind() {
    let e = env();
    e.ingest(&[
        event(
            1,
            0,
            "alice",
            "alice.liddell@example.com asked about wonderland refunds",
        ),
        event(
            1,
            1,
            "bob",
            "bob.builder@example.org asked about scaffolding",
        ),
    ])
    .unwrap();
    assert_eq!(e.events().unwrap().len(), 2);
    let rows = e.all_rows();
    // Detected values never reach the store; the words around them do (tokenized content).
    assert!(!rows.contains("alice.liddell@example.com"), "{rows}");
    assert!(!rows.contains("bob.builder@example.org"), "{rows}");
    assert!(
        rows.contains("wonderland") && rows.contains("scaffolding"),
        "{rows}"
    );
    assert!(rows.contains("tok_email_"), "{rows}");

    e.service
        .erase_subject(&e.admin, &e.tenant, "alice")
        .unwrap();
    let rows = e.all_rows();
    assert!(
        !rows.contains("wonderland"),
        "alice's words are left: {rows}"
    );
    assert!(rows.contains("scaffolding"), "bob's content went too");
}
