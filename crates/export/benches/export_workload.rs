//! Export workload: a tenant of N generated events (~1.2 KiB stored), exported as NDJSON and as
//! Parquet, each then verified offline. Prints events/s, MB/s (of stored event bytes), the peak
//! resident memory of each step, and verify-export throughput.
//!
//! `cargo bench -p agentrail-export --bench export_workload [-- --events 1000000 --dir DIR
//!  --keep]` (with `--dir`, an existing ledger with the tenant is reused).

use agentrail_event::TenantId;
use agentrail_export::{ExportRequest, FileFormat, Selection, export, verify_export};
use agentrail_ledger::{Config, Ledger};
use agentrail_testkit::bench::arg;
use std::time::Instant;

/// Peak resident set since the last reset, in MB (Linux).
fn peak_mb() -> f64 {
    agentrail_testkit::bench::proc_status_mib("VmHWM")
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn dir_bytes(d: &std::path::Path) -> u64 {
    std::fs::read_dir(d)
        .map(|es| {
            es.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = arg(&args, "--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let keep = args.iter().any(|a| a == "--keep");
    let tmp;
    let dir = match arg(&args, "--dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = agentrail_testkit::bench::scratch_dir();
            tmp.path().to_path_buf()
        }
    };
    let data = dir.join("data");
    let tenant = TenantId::parse("bench").expect("tenant");
    let mut cfg = Config::new(&data);
    cfg.checkpoint_interval = None;
    let ledger = Ledger::open(cfg).expect("ledger");
    let have = if ledger.exists(&tenant) {
        ledger.size(&tenant).expect("size")
    } else {
        0
    };
    if have < events {
        let started = Instant::now();
        let generator = agentrail_testkit::Generator::with_profile(
            1,
            "bench",
            64,
            agentrail_testkit::Profile {
                text_bytes: 700,
                ..agentrail_testkit::Profile::default()
            },
        );
        let mut it = generator.skip(have as usize);
        let mut n = have;
        while n < events {
            let want = (events - n).min(20_000) as usize;
            let raw: Vec<serde_json::Value> = it.by_ref().take(want).collect();
            // Validate on both cores.
            let (a, b) = raw.split_at(raw.len() / 2);
            let (va, vb) = std::thread::scope(|s| {
                let ha = s.spawn(|| {
                    a.iter()
                        .map(|v| agentrail_event::validate_value(v.clone()).expect("valid"))
                        .collect::<Vec<_>>()
                });
                let vb: Vec<_> = b
                    .iter()
                    .map(|v| agentrail_event::validate_value(v.clone()).expect("valid"))
                    .collect();
                (ha.join().expect("thread"), vb)
            });
            for chunk in va.chunks(1000).chain(vb.chunks(1000)) {
                ledger.append(&tenant, chunk.to_vec()).expect("append");
            }
            n += want as u64;
            if n % 1_000_000 < 20_000 {
                eprintln!(
                    "built {n} events ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        eprintln!(
            "built the ledger: {events} events in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    ledger.checkpoint(&tenant).expect("checkpoint");
    let size = ledger.size(&tenant).expect("size");
    println!("export of a {size}-event tenant ({})", data.display());
    println!(
        "| format | events | stored MB | files | events/s | MB/s (stored) | peak RSS MB | verify-export MB/s (file bytes) | verify events/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // Stored event bytes (what the NDJSON files hold, one line per event): the MB/s of both
    // formats are of these, so they compare.
    let mut stored = 0u64;
    for format in [FileFormat::Ndjson, FileFormat::Parquet] {
        let out = dir.join(format!("export-{}", format.extension()));
        let _ = std::fs::remove_dir_all(&out);
        let req = ExportRequest {
            tenant: tenant.clone(),
            selection: Selection::default(),
            format,
            max_file_bytes: agentrail_export::DEFAULT_MAX_FILE_BYTES,
            content: None,
            checkpoint: None,
        };
        reset_peak();
        let started = Instant::now();
        let m = export(&ledger, &req, &out, |_, _| true).expect("export");
        let secs = started.elapsed().as_secs_f64();
        let peak = peak_mb();
        if format == FileFormat::Ndjson {
            stored = m.manifest.files.iter().map(|f| f.bytes).sum();
        }
        let file_bytes = dir_bytes(&out);
        let started = Instant::now();
        let r = verify_export(&out, ledger.verifier()).expect("verify");
        let vsecs = started.elapsed().as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {} ({:.0} MB on disk) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            format.extension(),
            m.manifest.count,
            stored as f64 / 1e6,
            m.manifest.files.len(),
            file_bytes as f64 / 1e6,
            m.manifest.count as f64 / secs,
            stored as f64 / 1e6 / secs,
            peak,
            r.bytes as f64 / 1e6 / vsecs,
            r.events as f64 / vsecs,
        );
        if !keep {
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}
