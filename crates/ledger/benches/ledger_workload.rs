//! Ledger workload benchmark: durable appends of ~1 KiB events from 1, 8 and 64 concurrent
//! appenders into 1 or 1,000 tenants, then offline `verify` throughput. Prints a table.
//!
//! cargo bench -p agentrail-ledger --bench ledger_workload [-- --events N --dir PATH]
//!     [--only APPENDERS,TENANTS,BATCH,OPEN] [--many] [--keep] [--verify DATA_DIR]
//!
//! Events are validated before timing starts: the table measures the ledger (sequencing,
//! hashing, framing, writing, fsync), not JSON Schema validation.

use agentrail_event::{TenantId, ValidEvent, validate_bytes};
use agentrail_ledger::{Config, Ledger, read_origin_prefix, read_verifier, verify_tenant};
use agentrail_testkit::bench::percentile_ms;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn event(worker: usize, n: usize) -> ValidEvent {
    let json = format!(
        r#"{{"schema_version":"1","event_id":"w{worker}-{n}","event_type":"model.decision","session_id":"s{worker}-{}","agent_id":"agent-{worker}","occurred_at":"2026-11-25T12:00:00Z","payload":{{"model":{{"provider":"acme","name":"m","version":"2026-01"}},"output":{{"raw":"{}"}},"usage":{{"input_tokens":812,"output_tokens":97}}}}}}"#,
        n % 50,
        "lorem ipsum dolor sit amet ".repeat(30)
    );
    validate_bytes(json.as_bytes()).unwrap()
}

struct Row {
    appenders: usize,
    tenants: usize,
    batch: usize,
    open: usize,
    events: u64,
    bytes: u64,
    secs: f64,
    fsyncs: u64,
    lat: Vec<Duration>,
}

fn run(
    base: &std::path::Path,
    appenders: usize,
    tenants: usize,
    batch: usize,
    open: usize,
    total: usize,
) -> Row {
    let dir = base.join(format!("a{appenders}-t{tenants}-b{batch}-o{open}"));
    let _ = std::fs::remove_dir_all(&dir);
    let fsyncs = Arc::new(AtomicU64::new(0));
    let mut cfg = Config::new(&dir);
    cfg.max_open_tenants = open;
    let f = fsyncs.clone();
    cfg.fsync_hook = Some(Arc::new(move |_p: &std::path::Path| {
        f.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }));
    let ledger = Arc::new(Ledger::open(cfg).unwrap());
    let tenant_ids: Arc<Vec<TenantId>> = Arc::new(
        (0..tenants)
            .map(|i| TenantId::parse(&format!("t{i}")).unwrap())
            .collect(),
    );
    // Create the tenants up front so directory creation is not timed.
    for t in tenant_ids.iter() {
        ledger.append(t, vec![event(usize::MAX, 0)]).unwrap();
    }
    let per_worker = total / appenders;
    let work: Vec<Vec<Vec<ValidEvent>>> = (0..appenders)
        .map(|w| {
            (0..per_worker)
                .map(|n| event(w, n))
                .collect::<Vec<_>>()
                .chunks(batch)
                .map(|c| c.to_vec())
                .collect()
        })
        .collect();
    let before = segment_bytes(&dir);
    fsyncs.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let handles: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(w, batches)| {
            let ledger = ledger.clone();
            let tenant_ids = tenant_ids.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(batches.len());
                for (i, b) in batches.into_iter().enumerate() {
                    let t = &tenant_ids[(w + i * appenders) % tenant_ids.len()];
                    let began = Instant::now();
                    ledger.append(t, b).unwrap();
                    lat.push(began.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let row = Row {
        appenders,
        tenants,
        batch,
        open,
        events: (per_worker * appenders) as u64,
        bytes: segment_bytes(&dir) - before,
        secs,
        fsyncs: fsyncs.load(Ordering::Relaxed),
        lat,
    };
    ledger.close().unwrap();
    row
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn rss_mb() -> f64 {
    agentrail_testkit::bench::proc_status_mib("VmRSS")
}

/// `n` tenants in one data directory, 8 appenders, two events per tenant (the second after every
/// tenant was touched once, so every tenant is reopened), with the default LRU of 256 open
/// tenants: open files and memory must stay bounded.
fn many_tenants(base: &std::path::Path, n: usize) {
    let dir = base.join("many-tenants");
    let _ = std::fs::remove_dir_all(&dir);
    let ledger = Arc::new(Ledger::open(Config::new(&dir)).unwrap());
    let fds_before = open_fds();
    let max_fds = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    for round in 0..2 {
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let ledger = ledger.clone();
                let max_fds = max_fds.clone();
                std::thread::spawn(move || {
                    for i in (w..n).step_by(8) {
                        let t = TenantId::parse(&format!("tenant-{i}")).unwrap();
                        ledger.append(&t, vec![event(round, i)]).unwrap();
                        if i % 500 == w {
                            max_fds.fetch_max(open_fds() as u64, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "\n{n} tenants x 2 events, 8 appenders, LRU 256: {:.1} s ({:.0} events/s), open tenants {}, open files {} (before {fds_before}, max seen {}), RSS {:.0} MB",
        secs,
        (2 * n) as f64 / secs,
        ledger.open_tenants(),
        open_fds(),
        max_fds.load(Ordering::Relaxed),
        rss_mb()
    );
    ledger.close().unwrap();
}

/// Bytes in all segment files under `dir`.
fn segment_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let Ok(tenants) = std::fs::read_dir(dir.join("tenants")) else {
        return 0;
    };
    for t in tenants.flatten() {
        for f in std::fs::read_dir(t.path().join("ledger"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|x| x == "seg") {
                total += f.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| agentrail_testkit::bench::arg(&args, name);
    let total: usize = arg("--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64_000);
    let scratch;
    let base = match arg("--dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            scratch = agentrail_testkit::bench::scratch_dir();
            scratch.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&base).unwrap();
    let only: Option<Vec<usize>> =
        arg("--only").map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect());
    let scenarios: &[(usize, usize, usize, usize)] = &[
        // (appenders, tenants, events per append, max open tenants)
        (1, 1, 1, 256),
        (8, 1, 1, 256),
        (64, 1, 1, 256),
        (1, 1, 16, 256),
        (8, 1, 16, 256),
        (64, 1, 16, 256),
        (1, 1000, 1, 2048),
        (8, 1000, 1, 2048),
        (64, 1000, 1, 2048),
        (64, 1000, 16, 2048),
        (64, 1000, 1, 256),
    ];
    println!(
        "| appenders | tenants | events/append | open tenants | events | events/s | MB/s | fsyncs/s | events/fsync | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &(a, t, b, o) in scenarios {
        if only.as_ref().is_some_and(|v| v[..] != [a, t, b, o]) {
            continue;
        }
        let n = if t > 1 && b == 1 { total / 2 } else { total };
        let r = run(&base, a, t, b, o, n);
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2} | {:.2} |",
            r.appenders,
            r.tenants,
            r.batch,
            r.open,
            r.events,
            r.events as f64 / r.secs,
            r.bytes as f64 / 1e6 / r.secs,
            r.fsyncs as f64 / r.secs,
            r.events as f64 / r.fsyncs.max(1) as f64,
            percentile_ms(&r.lat, 0.5),
            percentile_ms(&r.lat, 0.99),
        );
    }
    if only.is_none() || args.iter().any(|a| a == "--many") {
        many_tenants(&base, 10_000);
    }
    // Verify throughput on the largest single-tenant data set.
    let dir = arg("--verify").map_or_else(|| base.join("a64-t1-b16-o256"), Into::into);
    if !dir.exists() {
        return;
    }
    let t = TenantId::parse("t0").unwrap();
    let v = read_verifier(&dir).unwrap();
    let prefix = read_origin_prefix(&dir).unwrap();
    let start = Instant::now();
    let r = verify_tenant(&dir, &t, &v, &prefix);
    let secs = start.elapsed().as_secs_f64();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    println!(
        "\nverify: {} events, {:.1} MB in {:.3} s = {:.0} MB/s",
        r.events,
        r.bytes as f64 / 1e6,
        secs,
        r.bytes as f64 / 1e6 / secs
    );
    if !args.iter().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&base);
    }
}
