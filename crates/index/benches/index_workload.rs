//! Query-store benchmark on both engines in one run: a large tenant (plus 99 small ones) from
//! the workload generator goes through the ledger; the embedded SQLite index and the PostgreSQL
//! store each apply it, then each query kind runs many times on each; prints the apply rates and
//! p50/p99 latency per kind side by side (and SQLite's index size per event).
//!
//! cargo bench -p agentrail-index --bench index_workload [-- --events N --dir PATH --keep
//!     --iterations N --reuse-index --pg-url URL --only sqlite|postgres]
//! (default 1,000,000 events for the large tenant; without --pg-url a PostgreSQL server of the
//! bench's own is started, with fsync on: the store's sessions use synchronous_commit=off)

use agentrail_event::{TenantId, validate_value};
use agentrail_index::*;
use agentrail_ledger::{Config, Ledger};
use agentrail_testkit::bench::percentile_ms;
use agentrail_testkit::{Generator, Profile, Rng};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn ingest(ledger: &Ledger, t: &TenantId, events: impl Iterator<Item = serde_json::Value> + Send) {
    // Validation on a second thread, appends (durable, 2,000 per batch) on this one.
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(4);
        s.spawn(move || {
            let mut batch = Vec::with_capacity(2000);
            for mut ev in events {
                ev.as_object_mut().map(|m| m.remove("tenant_id"));
                batch.push(validate_value(ev).expect("generated events are valid"));
                if batch.len() == 2000 {
                    let _ = tx.send(std::mem::take(&mut batch));
                }
            }
            let _ = tx.send(batch);
        });
        for batch in rx {
            if !batch.is_empty() {
                ledger.append(t, batch).unwrap();
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| agentrail_testkit::bench::arg(&args, name);
    let n: usize = arg("--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // Kept between runs (building a million events takes minutes), outside the source tree.
    let dir = arg("--dir").map_or_else(
        || std::env::temp_dir().join("agentrail-index-bench"),
        std::path::PathBuf::from,
    );
    eprintln!(
        "bench data in {} (removed at the end unless --keep; a kept one is reused)",
        dir.display()
    );
    let keep = args.iter().any(|a| a == "--keep");
    let big = TenantId::parse("big").unwrap();
    let ledger = Ledger::open(Config::new(&dir)).unwrap();

    let existing = ledger.size(&big).unwrap_or(0);
    if existing == 0 {
        let start = Instant::now();
        // One long session of ~1,000 events first, then the regular traffic.
        let long = Profile {
            steps: (500, 500),
            review_rate: 0.0,
            spawn_rate: 0.0,
            ..Profile::default()
        };
        ingest(
            &ledger,
            &big,
            Generator::with_profile(7, "long", 1, long).take(1000),
        );
        ingest(&ledger, &big, Generator::new(1, "big", 64).take(n));
        for i in 0..99 {
            let t = TenantId::parse(&format!("small-{i}")).unwrap();
            ingest(&ledger, &t, Generator::new(100 + i, "small", 8).take(1000));
        }
        eprintln!(
            "generated and appended {} events in {:.0} s",
            n + 1000 + 99_000,
            start.elapsed().as_secs_f64()
        );
    }
    let total = ledger.size(&big).unwrap();

    let iterations: usize = arg("--iterations")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let only = arg("--only");
    let mut server = None;
    let mut engines: Vec<(&str, Box<dyn Store>)> = Vec::new();
    if only.as_deref() != Some("postgres") {
        engines.push(("sqlite", Box::new(SqliteStore::new(&dir))));
    }
    if only.as_deref() != Some("sqlite") {
        let url = arg("--pg-url").unwrap_or_else(|| {
            let pg = agentrail_testkit::postgres::Server::start_with(&["fsync=on"]);
            let url = pg.create_db("agentrail");
            server = Some(pg);
            url
        });
        engines.push((
            "postgres",
            Box::new(agentrail_pgindex::PgStore::connect(&url).unwrap()),
        ));
    }
    let mut results = Vec::new();
    for (name, store) in &engines {
        // Apply from the ledger into a fresh index (unless --reuse-index).
        if !args.iter().any(|a| a == "--reuse-index") {
            store.discard(&big, false).unwrap();
        }
        let mut index = store.open(&big).unwrap();
        let start = Instant::now();
        index.catch_up(&ledger).unwrap();
        let apply_secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{name}: applied {total} events in {apply_secs:.1} s = {:.0} events/s",
            total as f64 / apply_secs
        );
        let rows = queries(&index, n, iterations);
        results.push((*name, apply_secs, index.size_on_disk(), rows));
    }
    let mut header = "| query | rows |".to_owned();
    let mut rule = "|---|---|".to_owned();
    for (name, ..) in &results {
        header.push_str(&format!(" {name} p50 ms | {name} p99 ms |"));
        rule.push_str("---|---|");
    }
    println!("{header}\n{rule}");
    for (i, (query, _, items)) in results[0].3.iter().enumerate() {
        let mut line = format!("| {query} | {items} |");
        for (.., rows) in &results {
            let mut lat = rows[i].1.clone();
            lat.sort_unstable();
            line.push_str(&format!(
                " {:.2} | {:.2} |",
                percentile_ms(&lat, 0.5),
                percentile_ms(&lat, 0.99)
            ));
        }
        println!("{line}");
    }
    println!();
    for (name, apply_secs, size, _) in &results {
        let size = size.map_or(String::new(), |s| {
            format!(
                "; index size {:.0} MB = {:.0} bytes/event",
                s as f64 / 1e6,
                s as f64 / total as f64
            )
        });
        println!(
            "{name} apply: {total} events in {apply_secs:.1} s = {:.0} events/s{size}",
            total as f64 / apply_secs
        );
    }
    drop(engines);
    drop(server);
    ledger.close().unwrap();
    drop(ledger);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Each query kind `iterations` times on one index: (name, latencies, rows per query).
fn queries(
    index: &TenantIndex,
    n: usize,
    iterations: usize,
) -> Vec<(String, Vec<Duration>, usize)> {
    let mut rng = Rng::new(99);
    let mut rows: Vec<(String, Vec<Duration>, usize)> = Vec::new();
    let mut run = |name: &str, f: &mut dyn FnMut(&mut Rng) -> usize| {
        let mut lat = Vec::with_capacity(iterations);
        let mut items = 0;
        for _ in 0..iterations {
            let began = Instant::now();
            items += f(&mut rng);
            lat.push(began.elapsed());
        }
        eprintln!(
            "{name}: {:?} per query",
            lat.iter().sum::<Duration>() / iterations as u32
        );
        rows.push((name.to_owned(), lat, items / iterations));
    };
    let day = jiff::SignedDuration::from_hours(24);
    let t0: jiff::Timestamp = "2026-08-01T00:00:00Z".parse().unwrap();
    let sessions = (n / 12).max(1) as u64;
    run("session, ~1,000 events (all in one page)", &mut |_| {
        let s = index.session("sess-0", &PageReq::first(1000)).unwrap();
        assert!(s.chain.unbroken);
        s.events.len()
    });
    run("session, typical (~12 events)", &mut |r| {
        let sid = format!("sess-{}", 1 + r.below(sessions));
        index
            .session(&sid, &PageReq::first(100))
            .unwrap()
            .events
            .len()
    });
    run("causal chain, causes, depth 10", &mut |r| {
        let id = format!("big-{}", r.below(n as u64));
        index
            .causal(&id, Direction::Causes, 10, 10_000)
            .unwrap()
            .nodes
            .len()
    });
    run("causal chain, effects, depth 10", &mut |r| {
        let id = format!("big-{}", r.below(n as u64));
        index
            .causal(&id, Direction::Effects, 10, 10_000)
            .unwrap()
            .nodes
            .len()
    });
    run("override history, rejects, 90 days, 100 rows", &mut |_| {
        let q = ReviewQuery {
            decision: Some("reject".into()),
            reviewer: None,
            range: TimeRange {
                field: TimeField::Occurred,
                from: Some(t0),
                to: Some(t0.checked_add(day * 90).unwrap()),
            },
        };
        index.reviews(&q, &PageReq::first(100)).unwrap().items.len()
    });
    run("override history, one reviewer, 100 rows", &mut |r| {
        let q = ReviewQuery {
            reviewer: Some((*r.pick(agentrail_testkit::REVIEWERS)).to_owned()),
            ..Default::default()
        };
        index.reviews(&q, &PageReq::first(100)).unwrap().items.len()
    });
    run(
        "model attribution, one day, 100 decisions + effects",
        &mut |r| {
            let from = t0.checked_add(day * r.below(3) as i32).unwrap();
            let q = ModelQuery {
                name: "claude-sonnet".into(),
                version: Some("4.6".into()),
                range: TimeRange {
                    field: TimeField::Occurred,
                    from: Some(from),
                    to: Some(from.checked_add(day).unwrap()),
                },
            };
            let m = index.model_attribution(&q, &PageReq::first(100)).unwrap();
            m.decisions.len() + m.caused.len()
        },
    );
    run("filter: tool + outcome, 100 rows", &mut |r| {
        let f = EventFilter {
            tool_name: Some((*r.pick(agentrail_testkit::TOOLS)).to_owned()),
            outcome: Some("error".into()),
            ..Default::default()
        };
        index.events(&f, &PageReq::first(100)).unwrap().items.len()
    });
    run("filter: agent + type + attribute, 100 rows", &mut |r| {
        let f = EventFilter {
            agent_id: Some(format!("agent-{}", r.below(20))),
            event_type: Some("model.decision".into()),
            attributes: vec![("channel".into(), "email".into())],
            ..Default::default()
        };
        index.events(&f, &PageReq::first(100)).unwrap().items.len()
    });
    run("filter: one day of received events, 100 rows", &mut |_| {
        let f = EventFilter {
            range: TimeRange {
                field: TimeField::Received,
                from: Some(t0),
                to: None,
            },
            ..Default::default()
        };
        index.events(&f, &PageReq::first(100)).unwrap().items.len()
    });
    let kinds = [
        AnomalyKind::FastApproval {
            max_latency_ms: 1000,
        },
        AnomalyKind::ExecutedAfterRejection,
        AnomalyKind::DanglingCause,
        AnomalyKind::ClockSkew { bound_ms: 60_000 },
        AnomalyKind::ToolErrorBurst {
            window_ms: 60_000,
            min_error_rate: 0.5,
            min_calls: 5,
        },
    ];
    for kind in &kinds {
        let name = format!("anomaly {}, 100 rows", kind.name());
        run(&name, &mut |_| {
            index
                .anomalies(kind, &TimeRange::default(), &PageReq::first(100))
                .unwrap()
                .items
                .len()
        });
    }
    rows
}
