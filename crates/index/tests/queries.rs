//! The query store against the ledger, on both engines — the embedded SQLite files and
//! PostgreSQL (a server of each test's own) — with identical answers: every query's answer
//! equals a naive scan of the ledger (property test over generated workloads), chain breaks and
//! dangling links are found in constructed broken cases, tenants never see each other, and a
//! rebuilt index answers the same.

use agentrail_event::hash::to_hex;
use agentrail_event::{TenantId, validate_value};
use agentrail_index::*;
use agentrail_ledger::{Config, Ledger, ManualClock, StoredEvent};
use agentrail_testkit::Generator;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

/// One engine a test runs on. PostgreSQL's server lives as long as the engine.
struct Engine {
    name: &'static str,
    store: Box<dyn Store>,
    pg: Option<agentrail_testkit::postgres::Server>,
}

impl Engine {
    fn sqlite(dir: &Path) -> Engine {
        Engine {
            name: "sqlite",
            store: Box::new(SqliteStore::new(dir)),
            pg: None,
        }
    }

    fn postgres() -> Engine {
        let server = agentrail_testkit::postgres::Server::start();
        let url = server.create_db("agentrail");
        Engine {
            name: "postgres",
            store: Box::new(agentrail_pgindex::PgStore::connect(&url).unwrap()),
            pg: Some(server),
        }
    }

    /// Both engines, SQLite's files in `dir`.
    fn both(dir: &Path) -> [Engine; 2] {
        [Engine::sqlite(dir), Engine::postgres()]
    }

    /// A fresh index of the tenant (nothing left of an earlier case).
    fn fresh(&self, t: &TenantId) -> TenantIndex {
        self.store.discard(t, false).unwrap();
        self.store.open(t).unwrap()
    }

    fn open(&self, t: &TenantId) -> TenantIndex {
        self.store.open(t).unwrap()
    }

    /// Whether the engine's storage holds `needle` anywhere: SQLite's database and log files,
    /// every row of every table in PostgreSQL (read as the superuser, past the policies).
    fn holds(&self, dir: &Path, t: &TenantId, needle: &str) -> bool {
        match &self.pg {
            None => {
                let p = index_path(dir, t);
                let mut all = Vec::new();
                for s in ["", "-wal"] {
                    if let Ok(b) = std::fs::read(format!("{}{s}", p.display())) {
                        all.extend(b);
                    }
                }
                contains(&all, needle)
            }
            Some(pg) => {
                let rows: Vec<String> = TABLES
                    .iter()
                    .map(|t| format!("SELECT x::text FROM agentrail.{t} x"))
                    .collect();
                let found = pg.psql(
                    "agentrail",
                    &format!(
                        "SELECT count(*) FROM ({}) all_rows(r) WHERE position('{needle}' in r) > 0",
                        rows.join(" UNION ALL ")
                    ),
                );
                found.trim() != "0"
            }
        }
    }
}

fn open_ledger(dir: &Path) -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at("2026-08-01T00:00:00Z"));
    let mut cfg = Config::new(dir);
    cfg.clock = clock.clone();
    cfg.checkpoint_interval = None;
    (Ledger::open(cfg).unwrap(), clock)
}

/// Appends generated events (50 per durable batch), moving the ledger clock along with the
/// emitter's.
fn ingest(
    ledger: &Ledger,
    clock: &ManualClock,
    t: &TenantId,
    events: impl IntoIterator<Item = Value>,
) {
    let mut batch = Vec::new();
    for mut ev in events {
        ev.as_object_mut().unwrap().remove("tenant_id");
        if let Some(ts) = ev["occurred_at"].as_str() {
            let t: jiff::Timestamp = ts.parse().unwrap();
            clock.set(
                t.checked_add(jiff::SignedDuration::from_millis(40))
                    .unwrap(),
            );
        }
        batch.push(validate_value(ev).unwrap());
        if batch.len() == 50 {
            ledger.append(t, std::mem::take(&mut batch)).unwrap();
        }
    }
    if !batch.is_empty() {
        ledger.append(t, batch).unwrap();
    }
}

/// Every stored event of a tenant, parsed: the naive side.
fn scan(ledger: &Ledger, t: &TenantId) -> Vec<(StoredEvent, Value)> {
    ledger
        .read_range(t, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| {
            let v = serde_json::from_slice(&e.bytes).unwrap();
            (e, v)
        })
        .collect()
}

fn ns(v: &Value, field: &str) -> Option<i64> {
    let t: jiff::Timestamp = v.get(field)?.as_str()?.parse().ok()?;
    i64::try_from(t.as_nanosecond()).ok()
}

/// All pages of a paginated query, with a small page size to exercise cursors.
fn all_pages<T>(mut f: impl FnMut(&PageReq) -> Page<T>) -> Vec<T> {
    let mut req = PageReq::first(7);
    let mut out = Vec::new();
    loop {
        let page = f(&req);
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => return out,
        }
    }
}

fn seqs(rows: &[EventRow]) -> Vec<u64> {
    rows.iter().map(|r| r.seq).collect()
}

fn naive_causal(
    all: &[(StoredEvent, Value)],
    root: &str,
    dir: Direction,
    depth: u32,
) -> (BTreeSet<u64>, BTreeSet<(u64, String)>) {
    let by_id: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (v["event_id"].as_str().unwrap(), i))
        .collect();
    let causes = |i: usize| -> Vec<String> {
        all[i].1["caused_by"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["event_id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut nodes = BTreeSet::new();
    let mut dangling = BTreeSet::new();
    let start = by_id[root];
    nodes.insert(all[start].0.seq);
    let mut queue = VecDeque::from([(start, 0u32)]);
    while let Some((i, d)) = queue.pop_front() {
        if d >= depth {
            continue;
        }
        let next: Vec<usize> = match dir {
            Direction::Causes => {
                let mut out = Vec::new();
                for c in causes(i) {
                    match by_id.get(c.as_str()) {
                        Some(&j) => out.push(j),
                        None => {
                            dangling.insert((all[i].0.seq, c));
                        }
                    }
                }
                out
            }
            Direction::Effects => {
                let id = all[i].1["event_id"].as_str().unwrap();
                (0..all.len())
                    .filter(|&j| causes(j).iter().any(|c| c == id))
                    .collect()
            }
        };
        for j in next {
            if nodes.insert(all[j].0.seq) {
                queue.push_back((j, d + 1));
            }
        }
    }
    (nodes, dangling)
}

fn check_all_queries(index: &TenantIndex, all: &[(StoredEvent, Value)], pick: u64) {
    let ty = |v: &Value| v["event_type"].as_str().unwrap_or_default().to_owned();
    let p = |v: &Value, path: &[&str]| -> Option<String> {
        let mut cur = &v["payload"];
        for k in path {
            cur = cur.get(k)?;
        }
        cur.as_str().map(str::to_owned)
    };

    // Sessions: each one in session order, chain unbroken.
    let mut sessions: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (e, v) in all {
        if let Some(s) = v["session_id"].as_str() {
            sessions
                .entry(s.to_owned())
                .or_default()
                .push((v["session_seq"].as_u64().unwrap(), e.seq));
        }
    }
    for (sid, mut members) in sessions.into_iter().take(8) {
        members.sort();
        let mut got = Vec::new();
        let mut req = PageReq::first(3);
        loop {
            let r = index.session(&sid, &req).unwrap();
            assert!(r.chain.unbroken, "{sid}: {:?}", r.chain.breaks);
            assert_eq!(r.total as usize, members.len());
            got.extend(r.events.iter().map(|e| (e.session_seq, e.row.seq)));
            match r.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got, members, "session {sid}");
    }

    // Causal chains both ways, at a few depths, from a few events.
    for (k, (_, v)) in all
        .iter()
        .enumerate()
        .filter(|(k, _)| (*k as u64).wrapping_add(pick).is_multiple_of(23))
    {
        let id = v["event_id"].as_str().unwrap();
        for (dir, depth) in [
            (Direction::Causes, 10),
            (Direction::Effects, 3),
            (Direction::Causes, 1),
        ] {
            let g = index.causal(id, dir, depth, 100_000).unwrap();
            let (nodes, dangling) = naive_causal(all, id, dir, depth);
            assert_eq!(
                seqs(&g.nodes).into_iter().collect::<BTreeSet<_>>(),
                nodes,
                "#{k} {id} {dir:?}"
            );
            let got: BTreeSet<(u64, String)> = g
                .dangling
                .iter()
                .map(|d| (d.seq, d.missing_cause.clone()))
                .collect();
            assert_eq!(got, dangling, "#{k} {id} {dir:?}");
            assert!(g.edges.iter().all(|e| e.hash_matches != Some(false)));
        }
    }

    // Reviews by decision and reviewer.
    for decision in [None, Some("approve"), Some("reject")] {
        let q = ReviewQuery {
            decision: decision.map(str::to_owned),
            reviewer: pick.is_multiple_of(2).then(|| "alice@ops".to_owned()),
            range: TimeRange::default(),
        };
        let got: Vec<u64> = all_pages(|r| index.reviews(&q, r).unwrap())
            .iter()
            .map(|r| r.row.seq)
            .collect();
        let want: Vec<u64> = all
            .iter()
            .filter(|(_, v)| ty(v) == "human.review")
            .filter(|(_, v)| q.decision.is_none() || p(v, &["decision"]) == q.decision)
            .filter(|(_, v)| q.reviewer.is_none() || p(v, &["reviewer", "id"]) == q.reviewer)
            .map(|(e, _)| e.seq)
            .collect();
        assert_eq!(got, want, "reviews {decision:?}");
    }

    // Model attribution over a time window (occurred_at), counts by version.
    let times: Vec<i64> = all
        .iter()
        .filter_map(|(_, v)| ns(v, "occurred_at"))
        .collect();
    let (lo, hi) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    let mid = lo + (hi - lo) / 3;
    let range = TimeRange {
        field: TimeField::Occurred,
        from: Some(jiff::Timestamp::from_nanosecond(i128::from(mid)).unwrap()),
        to: None,
    };
    let q = ModelQuery {
        name: "gpt-4o".into(),
        version: None,
        range: range.clone(),
    };
    let first = index.model_attribution(&q, &PageReq::first(MAX)).unwrap();
    let want: Vec<&(StoredEvent, Value)> = all
        .iter()
        .filter(|(_, v)| {
            ty(v) == "model.decision" && p(v, &["model", "name"]).as_deref() == Some("gpt-4o")
        })
        .filter(|(_, v)| ns(v, "occurred_at").is_some_and(|t| t >= mid))
        .collect();
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for (_, v) in &want {
        *counts.entry(p(v, &["model", "version"])).or_default() += 1;
    }
    let got_counts: BTreeMap<Option<String>, u64> = first
        .counts_by_version
        .iter()
        .map(|c| (c.version.clone(), c.count))
        .collect();
    assert_eq!(got_counts, counts);
    assert_eq!(
        seqs(&first.decisions),
        want.iter().map(|(e, _)| e.seq).collect::<Vec<_>>()
    );
    let mut caused = BTreeSet::new();
    for (_, v) in &want {
        let (n, _) = naive_causal(all, v["event_id"].as_str().unwrap(), Direction::Effects, 10);
        caused.extend(n);
    }
    for (e, _) in &want {
        caused.remove(&e.seq);
    }
    assert_eq!(
        seqs(&first.caused).into_iter().collect::<BTreeSet<_>>(),
        caused
    );

    // Filters.
    let filters = [
        EventFilter {
            event_type: Some("tool.invocation".into()),
            outcome: Some("error".into()),
            ..Default::default()
        },
        EventFilter {
            tool_name: Some("issue_refund".into()),
            ..Default::default()
        },
        EventFilter {
            agent_id: Some(format!("agent-{}", pick % 20)),
            ..Default::default()
        },
        EventFilter {
            classification: Some("restricted".into()),
            attributes: vec![("channel".into(), "email".into())],
            ..Default::default()
        },
        EventFilter {
            range: range.clone(),
            event_type: Some("human.review".into()),
            ..Default::default()
        },
    ];
    for f in &filters {
        let got = seqs(&all_pages(|r| index.events(f, r).unwrap()));
        let want: Vec<u64> = all
            .iter()
            .filter(|(_, v)| f.event_type.as_ref().is_none_or(|t| ty(v) == *t))
            .filter(|(_, v)| {
                f.outcome.as_ref().is_none_or(|o| {
                    ty(v) == "tool.invocation" && p(v, &["status", "outcome"]).as_ref() == Some(o)
                })
            })
            .filter(|(_, v)| {
                f.tool_name.as_ref().is_none_or(|o| {
                    ty(v) == "tool.invocation" && p(v, &["tool", "name"]).as_ref() == Some(o)
                })
            })
            .filter(|(_, v)| {
                f.agent_id
                    .as_ref()
                    .is_none_or(|a| v["agent_id"].as_str() == Some(a))
            })
            .filter(|(_, v)| {
                f.classification
                    .as_ref()
                    .is_none_or(|c| v["data_classification"].as_str() == Some(c))
            })
            .filter(|(_, v)| {
                f.attributes
                    .iter()
                    .all(|(k, val)| v["attributes"][k].as_str() == Some(val))
            })
            .filter(|(_, v)| {
                f.range.from.is_none() || ns(v, "occurred_at").is_some_and(|t| t >= mid)
            })
            .map(|(e, _)| e.seq)
            .collect();
        assert_eq!(got, want, "{f:?}");
    }

    // Anomalies.
    let ids: BTreeSet<&str> = all
        .iter()
        .map(|(_, v)| v["event_id"].as_str().unwrap())
        .collect();
    let anomaly_seqs = |kind: &AnomalyKind| -> Vec<u64> {
        all_pages(|r| index.anomalies(kind, &TimeRange::default(), r).unwrap())
            .iter()
            .map(|a| a.seq)
            .collect()
    };
    let fast: Vec<u64> = all
        .iter()
        .filter(|(_, v)| {
            ty(v) == "human.review" && p(v, &["decision"]).as_deref() == Some("approve")
        })
        .filter(|(_, v)| query::review_latency_ms(v).is_some_and(|l| l < 1000))
        .map(|(e, _)| e.seq)
        .collect();
    assert_eq!(
        anomaly_seqs(&AnomalyKind::FastApproval {
            max_latency_ms: 1000
        }),
        fast
    );
    let rejected: BTreeSet<String> = all
        .iter()
        .filter(|(_, v)| {
            ty(v) == "human.review" && p(v, &["decision"]).as_deref() == Some("reject")
        })
        .filter_map(|(_, v)| p(v, &["proposed_action", "event_id"]))
        .collect();
    let executed: Vec<u64> = all
        .iter()
        .filter(|(_, v)| ty(v) == "tool.invocation")
        .filter(|(_, v)| {
            v["caused_by"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|c| rejected.contains(c["event_id"].as_str().unwrap()))
            })
        })
        .map(|(e, _)| e.seq)
        .collect();
    assert_eq!(anomaly_seqs(&AnomalyKind::ExecutedAfterRejection), executed);
    let dangling: Vec<u64> = all
        .iter()
        .filter(|(_, v)| {
            v["caused_by"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|c| !ids.contains(c["event_id"].as_str().unwrap()))
            })
        })
        .map(|(e, _)| e.seq)
        .collect();
    assert_eq!(anomaly_seqs(&AnomalyKind::DanglingCause), dangling);
    let skewed: Vec<u64> = all
        .iter()
        .filter(
            |(_, v)| match (ns(v, "received_at"), ns(v, "occurred_at")) {
                (Some(r), Some(o)) => (r - o).abs() > 60_000_000_000,
                _ => false,
            },
        )
        .map(|(e, _)| e.seq)
        .collect();
    assert_eq!(
        anomaly_seqs(&AnomalyKind::ClockSkew { bound_ms: 60_000 }),
        skewed
    );
    let window_ns = 60_000i64 * 1_000_000;
    // Bursts come window by window (then by tool), each reported at its first call.
    let mut windows: BTreeMap<(i64, String), (u64, u64, u64)> = BTreeMap::new();
    for (e, v) in all.iter().filter(|(_, v)| ty(v) == "tool.invocation") {
        let key = (
            ns(v, "occurred_at").unwrap().div_euclid(window_ns),
            p(v, &["tool", "name"]).unwrap(),
        );
        let w = windows.entry(key).or_insert((e.seq, 0, 0));
        w.0 = w.0.min(e.seq);
        w.1 += 1;
        if p(v, &["status", "outcome"]).as_deref() != Some("ok") {
            w.2 += 1;
        }
    }
    let bursts: Vec<u64> = windows
        .values()
        .filter(|(_, calls, errors)| *calls >= 3 && *errors as f64 / *calls as f64 >= 0.5)
        .map(|(first, _, _)| *first)
        .collect();
    let kind = AnomalyKind::ToolErrorBurst {
        window_ms: 60_000,
        min_error_rate: 0.5,
        min_calls: 3,
    };
    assert_eq!(anomaly_seqs(&kind), bursts);
}

const MAX: usize = query::MAX_PAGE;

#[test]
fn every_query_equals_a_naive_scan_of_the_ledger_on_both_engines() {
    // One PostgreSQL server for every case; each case starts its tenant afresh.
    let pg = Engine::postgres();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 6,
        ..ProptestConfig::default()
    });
    runner
        .run(&(any::<u64>(), 200usize..700), |(seed, n)| {
            let dir = tempfile::tempdir().unwrap();
            let (ledger, clock) = open_ledger(dir.path());
            let t = tenant("acme");
            ingest(&ledger, &clock, &t, Generator::new(seed, "acme", 5).take(n));
            let sqlite = Engine::sqlite(dir.path());
            let mut answers = Vec::new();
            for engine in [&sqlite, &pg] {
                let mut index = engine.fresh(&t);
                // Catch up in two steps: the index continues where it stopped.
                index.catch_up(&ledger).unwrap();
                if engine.name == "sqlite" {
                    ingest(
                        &ledger,
                        &clock,
                        &t,
                        Generator::new(seed ^ 1, "acme2", 3).take(n / 3),
                    );
                    prop_assert_eq!(index.catch_up(&ledger).unwrap(), (n / 3) as u64);
                }
                let all = scan(&ledger, &t);
                prop_assert_eq!(index.applied(), all.len() as u64);
                check_all_queries(&index, &all, seed);
                answers.push(sample_answers(&index, &all));
            }
            prop_assert_eq!(&answers[0], &answers[1], "the engines answer differently");
            Ok(())
        })
        .unwrap();
}

/// One anomaly query of every kind (bursts of at least `min_calls` calls).
fn every_kind(min_calls: u64) -> [AnomalyKind; 5] {
    [
        AnomalyKind::FastApproval {
            max_latency_ms: 1000,
        },
        AnomalyKind::ExecutedAfterRejection,
        AnomalyKind::DanglingCause,
        AnomalyKind::ClockSkew { bound_ms: 60_000 },
        AnomalyKind::ToolErrorBurst {
            window_ms: 60_000,
            min_error_rate: 0.5,
            min_calls,
        },
    ]
}

/// Answers to one query of every kind, picked from the workload, as JSON: what two engines
/// must agree on byte for byte.
fn sample_answers(index: &TenantIndex, all: &[(StoredEvent, Value)]) -> Value {
    let session = all
        .iter()
        .find_map(|(_, v)| v["session_id"].as_str())
        .unwrap_or("none");
    let id = |i: usize| {
        all.get(i % all.len().max(1))
            .and_then(|(_, v)| v["event_id"].as_str())
            .unwrap_or("none")
            .to_owned()
    };
    let model = all
        .iter()
        .find_map(|(_, v)| v["payload"]["model"]["name"].as_str())
        .unwrap_or("none");
    let kinds = every_kind(2);
    let anomalies: Vec<Value> = kinds
        .iter()
        .map(|k| {
            let p = index
                .anomalies(k, &TimeRange::default(), &PageReq::first(MAX))
                .unwrap();
            json!(
                p.items
                    .iter()
                    .map(|a| json!([a.kind, a.seq, a.hash, a.event_id, a.detail]))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    json!({
        "session": index.session(session, &PageReq::first(MAX)).ok(),
        "causes": index.causal(&id(all.len() / 2), Direction::Causes, 10, 1000).ok(),
        "effects": index.causal(&id(3), Direction::Effects, 10, 1000).ok(),
        "reviews": index.reviews(&ReviewQuery::default(), &PageReq::first(MAX)).unwrap(),
        "model": index.model_attribution(
            &ModelQuery { name: model.into(), ..Default::default() },
            &PageReq::first(MAX),
        ).unwrap(),
        "events": index.events(&EventFilter::default(), &PageReq::first(MAX)).unwrap(),
        "anomalies": anomalies,
    })
}

#[test]
fn a_rebuilt_index_answers_every_query_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open_ledger(dir.path());
    let t = tenant("acme");
    ingest(&ledger, &clock, &t, Generator::new(42, "acme", 6).take(800));
    let answers = |index: &TenantIndex| -> Value {
        let s = index.session("sess-3", &PageReq::first(MAX)).unwrap();
        let c = index
            .causal("acme-100", Direction::Causes, 10, 1000)
            .unwrap();
        let e = index
            .causal("acme-10", Direction::Effects, 10, 1000)
            .unwrap();
        let r = index
            .reviews(&ReviewQuery::default(), &PageReq::first(MAX))
            .unwrap();
        let m = index
            .model_attribution(
                &ModelQuery {
                    name: "claude-sonnet".into(),
                    ..Default::default()
                },
                &PageReq::first(MAX),
            )
            .unwrap();
        let f = index
            .events(
                &EventFilter {
                    outcome: Some("error".into()),
                    ..Default::default()
                },
                &PageReq::first(MAX),
            )
            .unwrap();
        let a = index
            .anomalies(
                &AnomalyKind::FastApproval {
                    max_latency_ms: 1000,
                },
                &TimeRange::default(),
                &PageReq::first(MAX),
            )
            .unwrap();
        json!([s, c, e, r, m, f, a])
    };
    let mut first: Option<Value> = None;
    for (i, engine) in Engine::both(dir.path()).iter().enumerate() {
        let mut index = engine.open(&t);
        index.catch_up(&ledger).unwrap();
        let before = answers(&index);
        // Both engines give the same answers.
        assert_eq!(
            first.get_or_insert_with(|| before.clone()),
            &before,
            "{}",
            engine.name
        );
        drop(index);
        let rebuilt = reindex(&ledger, &*engine.store, &t, None, true, &mut |_, _| {}).unwrap();
        assert_eq!(rebuilt.applied(), 800 + 10 * i as u64);
        assert_eq!(answers(&rebuilt), before);
        // Reopening the same index needs no work; opening it caught up sees new events.
        drop(rebuilt);
        let mut again = engine.open(&t);
        assert_eq!(again.catch_up(&ledger).unwrap(), 0);
        assert_eq!(answers(&again), before);
        drop(again);
        if i == 0 {
            ingest(&ledger, &clock, &t, Generator::new(43, "more", 2).take(10));
            let mut index = engine.open(&t);
            index.catch_up(&ledger).unwrap();
            assert_eq!(index.applied(), 810);
            // The other engine is compared on the grown ledger.
            first = None;
        }
    }
}

/// A stored event as the ledger would write it, for constructing broken histories.
fn stored(seq: u64, fields: Value) -> StoredEvent {
    let mut v = json!({"schema_version": "1", "event_type": "custom.step", "tenant_id": "acme",
                       "received_at": "2026-08-01T00:00:00.000000000Z", "seq": seq});
    for (k, val) in fields.as_object().unwrap() {
        v[k] = val.clone();
    }
    let bytes = agentrail_event::json::to_canonical_vec(&v).unwrap();
    StoredEvent {
        seq,
        hash: agentrail_event::hash::sha256(&bytes),
        bytes,
    }
}

#[test]
fn session_gaps_duplicates_and_wrong_links_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for engine in Engine::both(dir.path()) {
        session_breaks(engine.open(&tenant("acme")));
    }
}

fn session_breaks(mut index: TenantIndex) {
    let e0 = stored(
        0,
        json!({"event_id": "a", "session_id": "s", "session_seq": 0, "session_prev_hash": null}),
    );
    let e1 = stored(
        1,
        json!({"event_id": "b", "session_id": "s", "session_seq": 1, "session_prev_hash": to_hex(&e0.hash)}),
    );
    // session_seq 2 and 3 never arrive; 4 links to an unknown hash.
    let e2 = stored(
        2,
        json!({"event_id": "c", "session_id": "s", "session_seq": 4, "session_prev_hash": to_hex(&[7; 32])}),
    );
    // 5 claims the wrong predecessor, 5 again is a duplicate.
    let e3 = stored(
        3,
        json!({"event_id": "d", "session_id": "s", "session_seq": 5, "session_prev_hash": to_hex(&e0.hash)}),
    );
    let e4 = stored(
        4,
        json!({"event_id": "e", "session_id": "s", "session_seq": 5, "session_prev_hash": to_hex(&e2.hash)}),
    );
    let ok = stored(
        5,
        json!({"event_id": "f", "session_id": "t", "session_seq": 0, "session_prev_hash": null}),
    );
    index
        .apply(&[e0.clone(), e1, e2.clone(), e3, e4, ok])
        .unwrap();
    let r = index.session("s", &PageReq::first(100)).unwrap();
    assert!(!r.chain.unbroken);
    assert_eq!(
        r.chain.breaks,
        vec![
            ChainBreak::Missing {
                from_session_seq: 2,
                to_session_seq: 3
            },
            ChainBreak::WrongPrevHash {
                session_seq: 5,
                seq: 3,
                expected: Some(to_hex(&e2.hash)),
                found: Some(to_hex(&e0.hash)),
            },
            ChainBreak::Duplicate {
                session_seq: 5,
                seq: 4
            },
        ]
    );
    assert_eq!(r.total, 5);
    assert!(
        index
            .session("t", &PageReq::first(10))
            .unwrap()
            .chain
            .unbroken
    );
    // Events must continue exactly where the index stopped.
    let err = index
        .apply(&[stored(9, json!({"event_id": "z"}))])
        .unwrap_err();
    assert!(err.to_string().contains("expected seq 6"), "{err}");
}

#[test]
fn dangling_links_are_found_and_resolve_when_the_cause_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _clock) = open_ledger(dir.path());
    let t = tenant("acme");
    let ev = |id: &str, causes: &[&str]| {
        validate_value(
            json!({"schema_version": "1", "event_id": id, "event_type": "custom.step",
                              "caused_by": causes}),
        )
        .unwrap()
    };
    ledger
        .append(
            &t,
            vec![ev("a", &[]), ev("b", &["a", "ghost"]), ev("c", &["b"])],
        )
        .unwrap();
    for engine in Engine::both(dir.path()) {
        dangling(&ledger, engine.open(&t), ev("ghost", &[]));
    }
}

fn dangling(ledger: &Ledger, mut index: TenantIndex, ghost: agentrail_event::ValidEvent) {
    let t = index.tenant().clone();
    // The first three events: the ghost may be in the ledger already (the other engine's run).
    index.apply(&ledger.read_range(&t, 0, 3).unwrap()).unwrap();
    let g = index.causal("c", Direction::Causes, 10, 100).unwrap();
    assert_eq!(seqs(&g.nodes), vec![0, 1, 2]);
    assert_eq!(
        g.dangling,
        vec![DanglingLink {
            seq: 1,
            event_id: "b".into(),
            missing_cause: "ghost".into()
        }]
    );
    assert!(g.edges.iter().all(|e| e.hash_matches == Some(true)));
    let found = index
        .anomalies(
            &AnomalyKind::DanglingCause,
            &TimeRange::default(),
            &PageReq::first(10),
        )
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].detail, json!({"missing_causes": ["ghost"]}));
    // The cause arrives late: no longer dangling; the link's recorded hash stays null.
    // (Appended once: the second engine finds it in the ledger already.)
    if ledger.size(&t).unwrap() == 3 {
        ledger.append(&t, vec![ghost]).unwrap();
    }
    index.catch_up(ledger).unwrap();
    let g = index.causal("b", Direction::Causes, 1, 100).unwrap();
    assert!(g.dangling.is_empty());
    let late = g.edges.iter().find(|e| e.cause == "ghost").unwrap();
    assert_eq!(late.hash_matches, None);
    assert!(
        index
            .anomalies(
                &AnomalyKind::DanglingCause,
                &TimeRange::default(),
                &PageReq::first(10)
            )
            .unwrap()
            .items
            .is_empty()
    );
    // Cycle-safe: effects of a reach c once.
    let g = index.causal("a", Direction::Effects, 50, 100).unwrap();
    assert_eq!(seqs(&g.nodes), vec![0, 1, 2]);
}

#[test]
fn tenants_with_identical_ids_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open_ledger(dir.path());
    let (a, b) = (tenant("acme"), tenant("globex"));
    // Same event ids and session ids ("shared-N", "sess-N"), different content.
    ingest(
        &ledger,
        &clock,
        &a,
        Generator::new(1, "shared", 4).take(300),
    );
    ingest(
        &ledger,
        &clock,
        &b,
        Generator::new(2, "shared", 4).take(200),
    );
    for engine in Engine::both(dir.path()) {
        let mut ia = engine.open(&a);
        let mut ib = engine.open(&b);
        ia.catch_up(&ledger).unwrap();
        ib.catch_up(&ledger).unwrap();
        assert_ne!(ia.describe(), ib.describe());
        isolated(&ledger, &ia, &ib);
    }
}

fn isolated(ledger: &Ledger, ia: &TenantIndex, ib: &TenantIndex) {
    for (index, t, n) in [(ia, "acme", 300), (ib, "globex", 200)] {
        // Every row is an event of this tenant's ledger: its hash there, at its seq.
        let mine = |e: &EventRow| {
            let stored = ledger.read(&tenant(t), e.seq).unwrap();
            to_hex(&stored.hash) == e.hash
                && serde_json::from_slice::<serde_json::Value>(&stored.bytes).unwrap()["tenant_id"]
                    == t
        };
        let all = all_pages(|r| index.events(&EventFilter::default(), r).unwrap());
        assert_eq!(all.len(), n);
        assert!(all.iter().all(mine));
        let s = index.session("sess-0", &PageReq::first(MAX)).unwrap();
        assert!(s.events.iter().all(|e| mine(&e.row)));
        let g = index
            .causal("shared-5", Direction::Effects, 10, 1000)
            .unwrap();
        assert!(g.nodes.iter().all(mine));
        // Hashes are those of this tenant's ledger.
        let first = index.event("shared-0").unwrap();
        assert_eq!(
            first.hash,
            to_hex(&ledger.read(&tenant(t), first.seq).unwrap().hash)
        );
    }
}

#[test]
fn bad_cursors_and_windows_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for engine in Engine::both(dir.path()) {
        refused(&engine.open(&tenant("acme")));
    }
}

fn refused(index: &TenantIndex) {
    let err = index
        .events(
            &EventFilter::default(),
            &PageReq {
                cursor: Some("x".into()),
                limit: 10,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("cursor \"x\""), "{err}");
    let err = index
        .anomalies(
            &AnomalyKind::ToolErrorBurst {
                window_ms: 0,
                min_error_rate: 0.5,
                min_calls: 1,
            },
            &TimeRange::default(),
            &PageReq::first(10),
        )
        .unwrap_err();
    assert!(err.to_string().contains("window_ms"), "{err}");
    assert!(TimeRange::parse(TimeField::Occurred, Some("yesterday"), None).is_err());
    assert!(matches!(index.event("nope"), Err(IndexError::NotFound(_))));
}

#[test]
fn a_larger_workload_exercises_every_anomaly_and_still_matches_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open_ledger(dir.path());
    let t = tenant("acme");
    ingest(
        &ledger,
        &clock,
        &t,
        Generator::new(42, "acme", 8).take(4000),
    );
    let all = scan(&ledger, &t);
    let mut answers = Vec::new();
    for engine in Engine::both(dir.path()) {
        let mut index = engine.open(&t);
        index.catch_up(&ledger).unwrap();
        every_anomaly(&index, &all);
        answers.push(sample_answers(&index, &all));
    }
    assert_eq!(answers[0], answers[1], "the engines answer differently");
}

fn every_anomaly(index: &TenantIndex, all: &[(StoredEvent, Value)]) {
    // None of the comparisons below is vacuous: every kind has findings here.
    for kind in every_kind(3) {
        let found = index
            .anomalies(&kind, &TimeRange::default(), &PageReq::first(MAX))
            .unwrap();
        assert!(
            !found.items.is_empty(),
            "no {} in the workload",
            kind.name()
        );
    }
    check_all_queries(index, all, 42);
}

/// A content source for tests: what it "opens" is `hot-<event id>-content` (the stored prompt is
/// in clear here, the service's source opens sealed fields), with the words of the prompt that
/// start with `tok_` as its tokens; `open: false` opens nothing and only gives the cutoffs.
#[derive(Debug)]
struct PromptSource {
    erased: Vec<String>,
    cutoffs: Cutoffs,
    open: bool,
}

impl IndexSource for PromptSource {
    fn content(&self, _t: &TenantId, v: &Value) -> Option<Content> {
        if !self.open {
            return None;
        }
        let prompt = v["payload"].get("prompt")?.clone();
        let tokens = prompt
            .to_string()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("tok_"))
            .map(str::to_owned)
            .collect();
        let opened = format!("hot-{}-content", v["event_id"].as_str()?);
        Some(Content {
            fields: json!({ "payload.prompt": opened }).to_string(),
            tokens,
        })
    }
    fn erased_subjects(&self, _t: &TenantId) -> Vec<String> {
        self.erased.clone()
    }
    fn cutoffs(&self, _t: &TenantId) -> Cutoffs {
        self.cutoffs
    }
}

fn prompt_source(erased: &[&str]) -> Arc<dyn IndexSource> {
    Arc::new(PromptSource {
        erased: erased.iter().map(|s| s.to_string()).collect(),
        cutoffs: Cutoffs::default(),
        open: true,
    })
}

fn search(index: &TenantIndex, token: &str) -> Vec<u64> {
    index
        .events(
            &EventFilter {
                token: Some(token.into()),
                ..Default::default()
            },
            &PageReq::first(MAX),
        )
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn hot_content_is_searchable_by_token_purged_by_age_and_erased_by_subject() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, clock) = open_ledger(dir.path());
    let t = tenant("acme");
    // One event a day for 10 days; subjects alternate; every prompt holds a token and a marker.
    let events = (0..10).map(|i| {
        json!({"schema_version": "1", "event_id": format!("e{i}"), "event_type": "model.decision",
            "session_id": "s", "subject_id": if i % 2 == 0 { "alice" } else { "bob" },
            "occurred_at": format!("2026-08-{:02}T00:00:00Z", i + 1),
            "payload": {"model": {"name": "m"},
                "prompt": {"messages": [format!("mail tok_email_{i} and tok_email_all")]}}})
    });
    for ev in events {
        // One append per event, so received_at follows the days.
        ingest(&ledger, &clock, &t, [ev]);
    }
    for engine in Engine::both(dir.path()) {
        hot_content(&engine, dir.path(), &ledger);
    }
}

fn hot_content(engine: &Engine, dir: &Path, ledger: &Ledger) {
    let t = tenant("acme");
    let holds = |needle: &str| engine.holds(dir, &t, needle);
    let mut index = engine.open(&t);
    index.set_source(Some(prompt_source(&[]))).unwrap();
    index.catch_up(ledger).unwrap();
    assert_eq!(search(&index, "tok_email_3"), vec![3]);
    assert_eq!(search(&index, "tok_email_all").len(), 10);
    assert!(search(&index, "tok_email_none").is_empty());
    assert!(holds("hot-e3-content"));

    // Content of events received before Aug 5 leaves; their rows stay.
    let aug5 = "2026-08-05T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_nanosecond() as i64;
    assert_eq!(index.purge_content(aug5).unwrap(), 4);
    assert_eq!(search(&index, "tok_email_all"), vec![4, 5, 6, 7, 8, 9]);
    assert!(search(&index, "tok_email_3").is_empty());
    assert_eq!(
        index
            .events(&EventFilter::default(), &PageReq::first(MAX))
            .unwrap()
            .items
            .len(),
        10
    );
    assert!(
        !holds("hot-e3-content"),
        "purged content left in the {} store",
        engine.name
    );
    assert!(holds("hot-e4-content"));

    // Erasing bob drops his content only.
    assert_eq!(index.erase_content(Some("bob")).unwrap(), 3);
    assert_eq!(search(&index, "tok_email_all"), vec![4, 6, 8]);
    // The erased subject's content and tokens are in no row (and no file) any more.
    assert!(!holds("hot-e5-content"));
    assert!(!holds("tok_email_5"));
    assert!(holds("hot-e6-content"));

    // Retention of the rows themselves: events received before Aug 3 leave the index.
    let aug3 = aug5 - 2 * 86_400_000_000_000;
    let purged = index
        .purge(Cutoffs {
            content_ns: 0,
            events_ns: aug3,
        })
        .unwrap();
    assert_eq!(
        purged,
        Purged {
            content: 0,
            events: 2
        }
    );
    let seqs: Vec<u64> = index
        .events(&EventFilter::default(), &PageReq::first(MAX))
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (2..10).collect::<Vec<_>>());
    // Cutoffs never move back, and a rebuild keeps them (the erased subject's content would come
    // back only if the source still opened it; the server's does not after shredding).
    index.purge(Cutoffs::default()).unwrap();
    assert_eq!(
        index.cutoffs(),
        Cutoffs {
            content_ns: aug5,
            events_ns: aug3
        }
    );
    drop(index);
    let rebuilt = reindex(
        ledger,
        &*engine.store,
        &t,
        Some(prompt_source(&[])),
        true,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(rebuilt.applied(), 10);
    assert_eq!(search(&rebuilt, "tok_email_all"), vec![4, 5, 6, 7, 8, 9]);
    // A source that knows bob was erased drops his content when it is set (an erasure that was
    // interrupted after shredding his keys is completed here).
    let mut rebuilt = rebuilt;
    rebuilt.set_source(Some(prompt_source(&["bob"]))).unwrap();
    assert_eq!(search(&rebuilt, "tok_email_all"), vec![4, 6, 8]);
    drop(rebuilt);
    // A damaged index is rebuilt, with the cutoffs the caller knows (PostgreSQL: rows that
    // are lost).
    if engine.pg.is_none() {
        std::fs::write(index_path(dir, &t), b"not a database").unwrap();
        let _ = std::fs::remove_file(format!("{}-wal", index_path(dir, &t).display()));
    } else {
        engine.store.discard(&t, false).unwrap();
    }
    let knows_cutoffs: Arc<dyn IndexSource> = Arc::new(PromptSource {
        erased: Vec::new(),
        cutoffs: Cutoffs {
            content_ns: aug5,
            events_ns: aug3,
        },
        open: false,
    });
    let rebuilt = reindex(
        ledger,
        &*engine.store,
        &t,
        Some(knows_cutoffs),
        true,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        rebuilt.cutoffs(),
        Cutoffs {
            content_ns: aug5,
            events_ns: aug3
        }
    );
    assert_eq!(
        rebuilt
            .events(&EventFilter::default(), &PageReq::first(MAX))
            .unwrap()
            .items
            .len(),
        8
    );
}

#[test]
fn tool_call_ids_link_decisions_invocations_and_reviews_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _clock) = open_ledger(dir.path());
    let t = tenant("acme");
    let trace = |n: u8| json!({"trace_id": format!("{n:032x}"), "span_id": "00000000000000aa"});
    let decision = |id: &str, tr: u8, calls: &[&str]| {
        validate_value(json!({"schema_version": "1", "event_id": id,
            "event_type": "model.decision", "trace": trace(tr), "session_id": "s",
            "payload": {"model": {"name": "m"},
                        "decision": {"kind": "tool_call", "tool_call_ids": calls}}}))
        .unwrap()
    };
    let tool = |id: &str, tr: u8, call: &str| {
        validate_value(json!({"schema_version": "1", "event_id": id,
            "event_type": "tool.invocation", "trace": trace(tr), "session_id": "s",
            "payload": {"tool": {"name": "refund"}, "call_id": call,
                        "status": {"outcome": "ok"}}}))
        .unwrap()
    };
    let review = json!({"schema_version": "1", "event_id": "r2",
        "event_type": "human.review", "trace": trace(2), "session_id": "s",
        "payload": {"reviewer": {"id": "ann"}, "decision": "reject",
                    "proposed_action": {"tool_call_id": "k"},
                    "presented_at": "2026-08-01T00:00:00Z", "decided_at": "2026-08-01T00:00:01Z"}});
    // Trace 1: the decision first. Trace 2: the invocation and the rejecting review first.
    // Trace 3 reuses the call id "k" and must not link to trace 2's decision.
    ledger
        .append(
            &t,
            vec![
                decision("d1", 1, &["c1", "c2"]),
                tool("t1", 1, "c1"),
                tool("t2", 2, "k"),
                validate_value(review).unwrap(),
                tool("t3", 3, "k"),
            ],
        )
        .unwrap();
    let first = ledger.read_range(&t, 0, 5).unwrap();
    let (d2, more) = (
        decision("d2", 2, &["k"]),
        vec![decision("d3", 1, &["c1"]), tool("t4", 1, "c2")],
    );
    let mut d2 = Some(d2);
    let mut more = Some(more);
    for engine in Engine::both(dir.path()) {
        let index = engine.open(&t);
        tool_links(&engine, &ledger, index, &first, d2.take(), more.take());
    }
}

fn tool_links(
    engine: &Engine,
    ledger: &Ledger,
    mut index: TenantIndex,
    first: &[StoredEvent],
    d2: Option<agentrail_event::ValidEvent>,
    more: Option<Vec<agentrail_event::ValidEvent>>,
) {
    let t = index.tenant().clone();
    index.apply(first).unwrap();
    let causes = |index: &TenantIndex, id: &str| {
        let g = index.causal(id, Direction::Causes, 5, 100).unwrap();
        g.edges
            .iter()
            .map(|e| (e.cause.clone(), e.via.clone(), e.hash_matches))
            .collect::<Vec<_>>()
    };
    let via = Some("tool_call_id".to_owned());
    assert_eq!(causes(&index, "t1"), vec![("d1".into(), via.clone(), None)]);
    assert!(causes(&index, "t2").is_empty());
    let rejected = |index: &TenantIndex| {
        index
            .anomalies(
                &AnomalyKind::ExecutedAfterRejection,
                &TimeRange::default(),
                &PageReq::first(10),
            )
            .unwrap()
            .items
            .into_iter()
            .map(|a| a.event_id)
            .collect::<Vec<_>>()
    };
    assert!(rejected(&index).is_empty());
    // The decision arrives: the earlier invocation and review now name it.
    if let Some(d2) = d2 {
        ledger.append(&t, vec![d2]).unwrap();
    }
    index.apply(&ledger.read_range(&t, 5, 1).unwrap()).unwrap();
    assert_eq!(causes(&index, "t2"), vec![("d2".into(), via.clone(), None)]);
    assert!(causes(&index, "t3").is_empty());
    let reviews = index
        .reviews(&ReviewQuery::default(), &PageReq::first(10))
        .unwrap();
    assert_eq!(reviews.items[0].proposed_event_id.as_deref(), Some("d2"));
    assert_eq!(rejected(&index), vec!["t2"]);
    let effects = index.causal("d2", Direction::Effects, 5, 100).unwrap();
    assert_eq!(seqs(&effects.nodes), vec![2, 5]);
    // A second decision claiming the same call does not take the link; a rebuild answers the
    // same.
    if let Some(more) = more {
        ledger.append(&t, more).unwrap();
    }
    index.catch_up(ledger).unwrap();
    assert_eq!(causes(&index, "t4"), vec![("d1".into(), via.clone(), None)]);
    assert_eq!(causes(&index, "t1"), vec![("d1".into(), via.clone(), None)]);
    drop(index);
    engine.store.discard(&t, false).unwrap();
    let mut index = engine.open(&t);
    index.catch_up(ledger).unwrap();
    assert_eq!(causes(&index, "t2"), vec![("d2".into(), via, None)]);
    assert_eq!(rejected(&index), vec!["t2"]);
}
