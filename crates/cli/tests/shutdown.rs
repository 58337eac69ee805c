//! Graceful shutdown: `agentrail serve` gets SIGTERM while clients ingest over keep-alive
//! connections. Every request that reached the server is answered — 2xx when durable, 503
//! `shutting_down` otherwise — and none ends in a reset or cut connection; a client that comes
//! back after the 503's Retry-After finds the listener closed (refused). Every 2xx batch is in
//! the ledger afterwards.

mod common;

use agentrail_event::TenantId;
use agentrail_ledger::{Config, Ledger};
use common::{agent, call};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct Tally {
    ok: Vec<String>,
    unavailable: usize,
    refused: usize,
    broken: Vec<String>,
}

#[test]
fn sigterm_answers_every_request_in_flight() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (mut child, url, _) = common::spawn_server(&data, 0);
        let key = common::tenant_key(&url, &data, "acme", &["events:write"]);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut clients = Vec::new();
        for c in 0..8u64 {
            let (url, key, tally) = (url.clone(), key.clone(), tally.clone());
            clients.push(std::thread::spawn(move || {
                let a = agent();
                for n in 0u64.. {
                    let id = format!("r{round}-c{c}-{n}");
                    let body: Vec<u8> = (0..50)
                        .flat_map(|i| {
                            format!(
                                r#"{{"schema_version":"1","event_id":"{id}-{i}","event_type":"tool.invocation","session_id":"s{c}","payload":{{"tool":{{"name":"t"}},"status":{{"outcome":"ok"}}}}}}"#
                            )
                            .into_bytes()
                            .into_iter()
                            .chain([b'\n'])
                        })
                        .collect();
                    let r = call(
                        &a,
                        "POST",
                        &format!("{url}/v1/tenants/acme/events"),
                        &key,
                        Some(("application/x-ndjson", body)),
                    );
                    let mut t = tally.lock().unwrap();
                    match r {
                        Ok((200, _)) => t.ok.push(id),
                        Ok((503, v)) if v["error"]["code"] == "shutting_down" => {
                            // As a client should: come back after Retry-After (1 s); by then
                            // the listener is closed and the retry is refused.
                            t.unavailable += 1;
                            drop(t);
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Ok((503, _)) => {}
                        Ok((st, v)) => t.broken.push(format!("{st}: {v}")),
                        Err(e) if e.contains("onnection refused") => {
                            t.refused += 1;
                            return;
                        }
                        Err(e) => t.broken.push(e),
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        let term = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "the server exits cleanly: {status}");
        for c in clients {
            c.join().unwrap();
        }
        let t = tally.lock().unwrap();
        eprintln!(
            "round {round}: {} acknowledged, {} answered shutting_down, {} refused after close",
            t.ok.len(),
            t.unavailable,
            t.refused
        );
        assert!(
            t.broken.is_empty(),
            "requests without an answer: {:?}",
            t.broken
        );
        assert!(!t.ok.is_empty());
        let ledger = Ledger::open(Config::new(&data)).unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        for id in &t.ok {
            assert!(
                ledger.find(&tenant, &format!("{id}-49")).unwrap().is_some(),
                "{id} was acknowledged but is not in the ledger"
            );
        }
    }
}
