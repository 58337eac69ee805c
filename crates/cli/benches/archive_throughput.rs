//! The WORM archive's throughput (DESIGN.md §8.1): the archiver's round to files and to a local
//! S3 API server (moto, with Object Lock; skipped without `moto_server`), `verify-archive` from
//! each, and `restore` of the whole tenant (fetch, verify, rebuild, index). One tenant of
//! `AGENTRAIL_BENCH_EVENTS` (default 1,000,000) agent events of ~1.2 KiB, ingested first; the S3
//! rows use one of `AGENTRAIL_BENCH_S3_EVENTS` (default 200,000: moto copies the whole bucket on
//! every ListObjectVersions). Prints a table; run with
//! `cargo bench -p agentrail --bench archive_throughput`.

use agentrail_archive::{ArchiveStore, FileArchive};
use agentrail_event::batch::BatchFormat;
use agentrail_service::archive_read::{RestoreOptions, restore, verify_archive};
use agentrail_service::{Service, ServiceConfig};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn batch(from: u64, n: u64) -> Vec<u8> {
    (from..from + n)
        .map(|i| {
            json!({"schema_version": "1", "event_id": format!("e-{i}"), "event_type": "tool.invocation",
                "session_id": format!("s{}", i % 5000), "agent_id": format!("agent-{}", i % 40),
                "payload": {"tool": {"name": "crm.lookup", "arguments": {"query": "x".repeat(900)}},
                "status": {"outcome": "ok"}, "duration_ms": i % 997}})
            .to_string()
                + "\n"
        })
        .collect::<String>()
        .into_bytes()
}

/// Ingests a batch, waiting as a client would when the index lag bound pushes back.
fn ingest(s: &Service, t: &agentrail_event::TenantId, body: &[u8]) {
    loop {
        match s.ingest(t, body, BatchFormat::Ndjson) {
            Ok(_) => return,
            Err(agentrail_service::ServiceError::Unavailable { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn config(data: &Path, store: Option<Arc<dyn ArchiveStore>>) -> ServiceConfig {
    ServiceConfig {
        archive: store.as_ref().map(|s| s.url()),
        archive_store: store,
        archive_interval_ms: 1,
        ..ServiceConfig::unscheduled(data.to_path_buf())
    }
}

/// A data directory with one tenant of `n` events; its tenant, verifier key and log key.
fn load(data: &Path, n: u64) -> (agentrail_event::TenantId, agentrail_note::Verifier, String) {
    let opened = Service::open(config(data, None)).unwrap();
    let root = opened.root().unwrap();
    let s = opened.service;
    let t = s.create_tenant(&root, "bench").unwrap().tenant_id;
    let mut at = 0;
    while at < n {
        let k = 1000.min(n - at);
        ingest(&s, &t, &batch(at, k));
        at += k;
    }
    let v: agentrail_note::Verifier = s.verifier_key().parse().unwrap();
    s.shutdown();
    let key =
        std::fs::read_to_string(agentrail_ledger::DataDir::new(data).system().log_key()).unwrap();
    (t, v, key)
}

fn row(what: &str, mb: f64, secs: f64, events: u64) {
    println!(
        "| {what} | {mb:.0} | {secs:.2} | {:.1} | {:.0} |",
        mb / secs,
        events as f64 / secs
    );
}

fn main() {
    let n: u64 = std::env::var("AGENTRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // moto's ListObjectVersions copies every object of the bucket on each call (real S3 does
    // not), and the S3 store reads each key's first version through it: the S3 rows use a
    // smaller tenant.
    let n_s3: u64 = std::env::var("AGENTRAIL_BENCH_S3_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
        .min(n);
    let tmp = agentrail_testkit::bench::scratch_dir();
    let data = tmp.path().join("data");
    let started = Instant::now();
    let (t, vkey, log_key) = load(&data, n);
    eprintln!(
        "ingested {n} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut stores: Vec<(String, Arc<dyn ArchiveStore>, std::path::PathBuf, u64)> = vec![(
        "files".into(),
        Arc::new(FileArchive::new(tmp.path().join("archive"))),
        data.clone(),
        n,
    )];
    let moto = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("moto_server").is_file()));
    let _s3 = if moto {
        let server = agentrail_testkit::s3::Server::start();
        server.create_bucket("worm", true);
        let store = agentrail_s3::S3Archive::open(&agentrail_s3::S3Config {
            url: "s3://worm/bench".into(),
            endpoint: Some(server.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            session_token: None,
        })
        .unwrap();
        let data_s3 = tmp.path().join("data-s3");
        let (t_s3, _, _) = load(&data_s3, n_s3);
        assert_eq!(t_s3, t);
        stores.push((
            format!("S3 (moto, Object Lock; {n_s3} events)"),
            Arc::new(store),
            data_s3,
            n_s3,
        ));
        Some(server)
    } else {
        eprintln!("no moto_server on PATH: the S3 rows are skipped");
        None
    };

    println!("| what | MB | seconds | MB/s | events/s |");
    println!("|---|---|---|---|---|");
    for (name, store, dir, n) in &stores {
        // The archiver's round: seals the active segment, puts every segment, a checkpoint and
        // the signed manifest.
        let s = Service::open(config(dir, Some(store.clone())))
            .unwrap()
            .service;
        let vkey: agentrail_note::Verifier = s.verifier_key().parse().unwrap();
        let start = Instant::now();
        let r = s.archive_now(&t).unwrap();
        let secs = start.elapsed().as_secs_f64();
        s.shutdown();
        assert_eq!(r.archived, *n);
        row(
            &format!("archive to {name}"),
            r.bytes as f64 / 1e6,
            secs,
            *n,
        );

        let start = Instant::now();
        let v = verify_archive(&**store, &t, &vkey, tmp.path(), &mut |_, _, _| {}).unwrap();
        let secs = start.elapsed().as_secs_f64();
        row(
            &format!("verify-archive from {name}"),
            v.fetched.bytes as f64 / 1e6,
            secs,
            *n,
        );
    }
    let store = &stores[0].1;
    let target = tmp.path().join("restored");
    let restored = restore_row(&**store, &target, &vkey, &log_key, n);
    drop(restored);

    // Ingest at full speed with the archiver scheduled (files, archive_interval 2 s): the
    // largest archive lag seen, sampled every 50 ms.
    let interval_ms = 2000;
    let data2 = tmp.path().join("data2");
    let cfg = ServiceConfig {
        archive: Some(format!("file://{}", tmp.path().join("archive2").display())),
        archive_interval_ms: interval_ms,
        ..ServiceConfig::unscheduled(data2)
    };
    let opened = Service::open(cfg).unwrap();
    let root = opened.root().unwrap();
    let s = Arc::new(opened.service);
    let t2 = s.create_tenant(&root, "bench").unwrap().tenant_id;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut worst = 0f64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = s.metrics_text();
                if let Some(v) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("agentrail_archive_lag_seconds "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                {
                    worst = worst.max(v);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            worst
        })
    };
    let m = n / 2;
    let start = Instant::now();
    let mut at = 0;
    while at < m {
        let k = 1000.min(m - at);
        ingest(&s, &t2, &batch(at, k));
        at += k;
    }
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(interval_ms + 1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = sampler.join().unwrap();
    println!();
    println!(
        "| ingest with the archiver on (files, archive_interval 2 s) | events/s | largest archive lag seen (s) |"
    );
    println!("|---|---|---|");
    println!("| {m} events | {:.0} | {worst:.2} |", m as f64 / secs);
    s.shutdown();
}

fn restore_row(
    store: &dyn ArchiveStore,
    target: &Path,
    vkey: &agentrail_note::Verifier,
    log_key: &str,
    n: u64,
) -> Vec<agentrail_service::archive_read::Restored> {
    let start = Instant::now();
    let r = restore(
        store,
        &RestoreOptions {
            data_dir: target.to_path_buf(),
            tenants: None,
            verifier: vkey.clone(),
            log_key: log_key.to_owned(),
        },
        &mut |_, _, _, _| {},
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(r[0].events, n);
    row(
        "restore from files (fetch, verify, index)",
        r[0].bytes as f64 / 1e6,
        secs,
        n,
    );
    r
}
