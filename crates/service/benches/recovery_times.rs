//! How long recovery takes, with the service doing its normal work meanwhile. Prints a table.
//!
//! - **index rebuild**: a tenant holds `--events` (default 1,000,000) generated ~1 KiB events;
//!   its index file is damaged while the service is down; on the next start it is moved aside
//!   and rebuilt from the ledger while one writer keeps ingesting batches of 1,000 into the same
//!   tenant. Measured: time until a query is answered again, and the events ingested meanwhile.
//!
//! `cargo bench -p agentrail-service --bench recovery_times [-- --events N --dir PATH]`

use agentrail_event::batch::BatchFormat;
use agentrail_index::{EventFilter, PageReq};
use agentrail_service::{Consistency, ReadRequest, Scope, Service, ServiceConfig, ServiceError};
use agentrail_testkit::Generator;
use agentrail_testkit::bench::arg;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ndjson(generator: &mut Generator, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for mut e in generator.by_ref().take(n) {
        e.as_object_mut().map(|m| m.remove("tenant_id"));
        out.extend_from_slice(e.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = arg(&args, "--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let scratch;
    let base = match arg(&args, "--dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            scratch = agentrail_testkit::bench::scratch_dir();
            scratch.path().join("data")
        }
    };
    let _ = std::fs::remove_dir_all(&base);
    let cfg = ServiceConfig {
        max_index_lag: u64::MAX,
        query_wait_ms: 0,
        ..ServiceConfig::unscheduled(base.clone())
    };
    let opened = Service::open(cfg.clone()).unwrap();
    let root = opened.root().unwrap();
    let service = opened.service;
    let t = service.create_tenant(&root, "bench").unwrap().tenant_id;
    let (_, key) = service
        .create_key(&root, &t, None, &[Scope::EventsRead])
        .unwrap();
    let mut generator = Generator::new(7, "bench", 64);
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let b = ndjson(&mut generator, 1000.min(total - n));
        service.ingest(&t, &b, BatchFormat::Ndjson).unwrap();
        n += 1000;
    }
    let load_secs = started.elapsed().as_secs_f64();
    // Let the index catch up, then stop.
    let query = |service: &Service| {
        let req = ReadRequest {
            caller: service.authenticate(&key).unwrap(),
            tenant: t.clone(),
            endpoint: "bench".into(),
            params: json!({}),
        };
        service.read(req, Consistency::Indexed, |ix| {
            let p = ix.events(
                &EventFilter::default(),
                &PageReq {
                    cursor: None,
                    limit: 10,
                },
            )?;
            Ok((p.items.len(), 10))
        })
    };
    while service.index_lag().1 > 0 {
        std::thread::sleep(Duration::from_millis(100));
    }
    service.shutdown();
    drop(service);
    let index = base.join("tenants/bench/index/index.sqlite");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[0] ^= 0xff; // not a database any more
    std::fs::write(&index, bytes).unwrap();

    let reopened = Instant::now();
    let service = Service::open(cfg).unwrap().service;
    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let writer = {
        let (service, t, stop, ingested) =
            (service.clone(), t.clone(), stop.clone(), ingested.clone());
        std::thread::spawn(move || {
            let mut generator = Generator::new(8, "bench2", 64);
            while !stop.load(Ordering::Relaxed) {
                let b = ndjson(&mut generator, 1000);
                match service.ingest(&t, &b, BatchFormat::Ndjson) {
                    Ok(r) => {
                        ingested.fetch_add(r.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => panic!("ingest during the rebuild: {e}"),
                }
            }
        })
    };
    let mut refused = 0u64;
    loop {
        match query(&service) {
            Ok(_) => break,
            Err(ServiceError::Unavailable { .. }) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
    let rebuild_secs = reopened.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let during = ingested.load(Ordering::Relaxed);
    println!("| step | events | seconds | events/s |");
    println!("|---|---|---|---|");
    println!(
        "| load (ingest, privacy on) | {total} | {load_secs:.1} | {:.0} |",
        total as f64 / load_secs
    );
    println!(
        "| index rebuild after damage, until queries answer (503 index_rebuilding {refused}×) | {total} | {rebuild_secs:.1} | {:.0} |",
        total as f64 / rebuild_secs
    );
    println!(
        "| ingested meanwhile into the same tenant | {during} | {rebuild_secs:.1} | {:.0} |",
        during as f64 / rebuild_secs
    );
    service.shutdown();
}
