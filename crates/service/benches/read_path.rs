//! What serving a page of events costs, split: the index query alone (which events answer: it
//! holds no copy of the bodies), and with every body read from the ledger and checked (CRC,
//! SHA-256) as the presenter serves it, stored view and decrypted. Generated ~1 KiB events in one tenant,
//! pages of 100 and 1,000; alternated rounds (A B A B).
//!
//! `cargo bench -p agentrail-service --bench read_path [-- --events 50000 --rounds 4]`

use agentrail_event::batch::BatchFormat;
use agentrail_index::{EventFilter, PageReq};
use agentrail_service::{Consistency, ReadRequest, Scope, Service, ServiceConfig};
use agentrail_testkit::Generator;
use agentrail_testkit::bench::arg;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let rounds: usize = arg(&args, "--rounds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = agentrail_testkit::bench::scratch_dir();
    let opened = Service::open(ServiceConfig::unscheduled(dir.path().to_path_buf())).unwrap();
    let root = opened.root().unwrap();
    let s = opened.service;
    let info = s.create_tenant(&root, "bench").unwrap();
    let t = info.tenant_id;
    let events: Vec<_> = Generator::new(7, "bench", 40).take(n).collect();
    for chunk in events.chunks(1000) {
        let body: Vec<u8> = chunk
            .iter()
            .flat_map(|e| format!("{e}\n").into_bytes())
            .collect();
        s.ingest(&t, &body, BatchFormat::Ndjson).unwrap();
    }
    let (_, key) = s.create_key(&root, &t, None, &Scope::ALL).unwrap();
    let caller = s.authenticate(&key).unwrap();
    let req = ReadRequest {
        caller,
        tenant: t.clone(),
        endpoint: "bench".into(),
        params: serde_json::json!({}),
    };
    let page = |limit: usize| {
        s.read(req.clone(), Consistency::Latest, |ix| {
            let p = ix.events(&EventFilter::default(), &PageReq::first(limit))?;
            let n = p.items.len() as u64;
            Ok((p.items, n))
        })
        .unwrap()
        .0
    };
    page(10);
    println!("read path: {n} events in one tenant; µs per served row (mean over the round)");
    println!("| page | index query only | + bodies from the ledger (stored) | + decrypted |");
    println!("|---|---|---|---|");
    for round in 0..rounds {
        for limit in [100usize, 1000] {
            let reps = 20_000 / limit;
            let time = |f: &dyn Fn()| {
                let t0 = Instant::now();
                for _ in 0..reps {
                    f();
                }
                t0.elapsed().as_secs_f64() * 1e6 / (reps * limit) as f64
            };
            let stored = s.presenter(&t, false);
            let opened = s.presenter(&t, true);
            // A B, then B A: neither always runs warmer.
            let (q, st, de) = if round % 2 == 0 {
                let q = time(&|| drop(page(limit)));
                let st = time(&|| drop(stored.all(&page(limit)).unwrap()));
                let de = time(&|| drop(opened.all(&page(limit)).unwrap()));
                (q, st, de)
            } else {
                let de = time(&|| drop(opened.all(&page(limit)).unwrap()));
                let st = time(&|| drop(stored.all(&page(limit)).unwrap()));
                let q = time(&|| drop(page(limit)));
                (q, st, de)
            };
            println!("| {limit} | {q:.1} | {st:.1} | {de:.1} |");
        }
    }
}
