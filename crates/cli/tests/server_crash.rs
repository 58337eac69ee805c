//! Crash test of the server: `agentrail serve` is SIGKILLed while clients ingest over HTTP.
//! After every kill the server restarts on the same data directory; in the end every event whose
//! 2xx answer a client received is in the ledger, byte-identical (same seq and hash), every batch
//! sent — acknowledged or cut off by the kill — is wholly in the ledger with contiguous seqs or
//! wholly absent, the server answers queries about the last acknowledged events (its index
//! caught up), and `verify` passes.
//!
//! AGENTRAIL_SERVER_CRASH_ITERATIONS sets the number of kills (default 5).

mod common;

use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_ledger::{Config, Ledger};
use common::{agent, call};
use serde_json::{Value, json};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANTS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];

/// Starts the server on a free port; returns it and its base URL once it listens.
fn serve(data: &std::path::Path) -> (Child, String) {
    let (child, url, _) = common::spawn_server(data, 0);
    (child, url)
}

/// A batch a client sent: its tenant and event ids.
type SentBatch = (usize, Vec<String>);

#[derive(Debug, Clone)]
struct Ack {
    tenant: usize,
    event_id: String,
    seq: u64,
    hash: String,
}

#[test]
fn acknowledged_events_survive_server_sigkill() {
    let iterations: u64 = std::env::var("AGENTRAIL_SERVER_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = serve(&data);
    let root = std::fs::read_to_string(data.join("system/root.key"))
        .unwrap()
        .trim()
        .to_owned();
    let a = agent();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for t in TENANTS {
        let (st, _) = call(
            &a,
            "POST",
            &format!("{url}/v1/tenants"),
            &root,
            Some((
                "application/json",
                json!({"tenant_id": t}).to_string().into_bytes(),
            )),
        )
        .unwrap();
        assert_eq!(st, 201);
        for (scope, out) in [
            ("events:write", &mut writers),
            ("events:read", &mut readers),
        ] {
            let (st, v) = call(
                &a,
                "POST",
                &format!("{url}/v1/tenants/{t}/keys"),
                &root,
                Some((
                    "application/json",
                    json!({"scopes": [scope]}).to_string().into_bytes(),
                )),
            )
            .unwrap();
            assert_eq!(st, 201);
            out.push(v["key"].as_str().unwrap().to_owned());
        }
    }
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::new(Mutex::new(Vec::new()));
    // Every batch sent: (tenant, its event ids).
    let sent: Arc<Mutex<Vec<SentBatch>>> = Arc::new(Mutex::new(Vec::new()));
    let mut url = url;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for iteration in 0..iterations {
        // Clients ingest until the server dies under them.
        let mut clients = Vec::new();
        for (ti, t) in TENANTS.iter().enumerate() {
            let (url, key, acks) = (url.clone(), writers[ti].clone(), acks.clone());
            let sent = sent.clone();
            let t = t.to_string();
            clients.push(std::thread::spawn(move || {
                let a = agent();
                // The same seed every iteration: earlier events come back as replays.
                let mut generator = agentrail_testkit::Generator::new(ti as u64, &t, 4);
                for k in 0u64.. {
                    // 1 to 1,000 events, the same sizes every iteration.
                    let n = 1 + (k.wrapping_mul(2_654_435_761) % 997) % 1000;
                    let batch: Vec<Value> = generator.by_ref().take(n as usize).collect();
                    sent.lock().unwrap().push((
                        ti,
                        batch
                            .iter()
                            .map(|e| e["event_id"].as_str().unwrap().to_owned())
                            .collect(),
                    ));
                    let body: Vec<u8> = batch
                        .iter()
                        .flat_map(|e| format!("{e}\n").into_bytes())
                        .collect();
                    match call(
                        &a,
                        "POST",
                        &format!("{url}/v1/tenants/{t}/events"),
                        &key,
                        Some(("application/x-ndjson", body)),
                    ) {
                        Ok((200, v)) => {
                            let mut acks = acks.lock().unwrap();
                            for r in v["receipts"].as_array().unwrap() {
                                acks.push(Ack {
                                    tenant: ti,
                                    event_id: r["event_id"].as_str().unwrap().to_owned(),
                                    seq: r["seq"].as_u64().unwrap(),
                                    hash: r["hash"].as_str().unwrap().to_owned(),
                                });
                            }
                        }
                        Ok((503, _)) => std::thread::sleep(Duration::from_millis(50)),
                        Ok((st, v)) => panic!("unexpected answer {st}: {v}"),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 900));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for c in clients {
            c.join().unwrap();
        }
        eprintln!(
            "iteration {iteration}: {} acknowledged so far",
            acks.lock().unwrap().len()
        );
        let (c, u) = serve(&data);
        child = c;
        url = u;
    }
    // The restarted server answers about the last acknowledged event of each tenant.
    let acks = acks.lock().unwrap().clone();
    assert!(!acks.is_empty(), "no event was acknowledged");
    let deadline = Instant::now() + Duration::from_secs(60);
    for (ti, t) in TENANTS.iter().enumerate() {
        let Some(last) = acks.iter().filter(|k| k.tenant == ti).max_by_key(|k| k.seq) else {
            continue;
        };
        loop {
            let (st, v) = call(
                &a,
                "GET",
                &format!("{url}/v1/tenants/{t}/events/{}", last.event_id),
                &readers[ti],
                None,
            )
            .unwrap();
            if st == 200 {
                assert_eq!(v["event"]["hash"], json!(last.hash));
                break;
            }
            assert!(st == 503 && Instant::now() < deadline, "{st}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Offline: every acknowledged event is there, byte-identical, and everything verifies.
    let ledger = Ledger::open(Config::new(&data)).unwrap();
    for k in &acks {
        let t = TenantId::parse(TENANTS[k.tenant]).unwrap();
        let got = ledger.read(&t, k.seq).unwrap();
        assert_eq!(to_hex(&got.hash), k.hash, "{} seq {}", k.event_id, k.seq);
        let v: Value = serde_json::from_slice(&got.bytes).unwrap();
        assert_eq!(v["event_id"], json!(k.event_id));
    }
    // Every batch sent is whole or absent, and a whole one has contiguous seqs.
    let mut seqs: Vec<std::collections::HashMap<String, u64>> = Vec::new();
    for t in TENANTS {
        let t = TenantId::parse(t).unwrap();
        let mut m = std::collections::HashMap::new();
        for ev in ledger.read_range(&t, 0, usize::MAX).unwrap() {
            let v: Value = serde_json::from_slice(&ev.bytes).unwrap();
            m.insert(v["event_id"].as_str().unwrap().to_owned(), ev.seq);
        }
        seqs.push(m);
    }
    let sent = sent.lock().unwrap();
    let (mut whole, mut absent) = (0, 0);
    for (ti, ids) in sent.iter() {
        let found: Vec<u64> = ids
            .iter()
            .filter_map(|id| seqs[*ti].get(id).copied())
            .collect();
        if found.is_empty() {
            absent += 1;
            continue;
        }
        assert_eq!(
            found.len(),
            ids.len(),
            "a batch of {} events of {} is partly durable: {} of them",
            ids.len(),
            TENANTS[*ti],
            found.len()
        );
        assert!(
            found.windows(2).all(|w| w[1] == w[0] + 1),
            "a batch's seqs are not contiguous: {found:?}"
        );
        whole += 1;
    }
    eprintln!(
        "{} batches sent: {whole} whole, {absent} absent",
        sent.len()
    );
    drop(ledger);
    let out = Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
