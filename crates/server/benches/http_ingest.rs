//! HTTP ingest workload: a server in this process (real sockets, durable acknowledgements, the
//! background indexer running) and N client threads, each with one keep-alive connection,
//! posting NDJSON batches of 1,000 ~1 KiB events. Prints events/s, MB/s, request latency, the
//! index lag when the clients stop and how long the index takes to catch up; then the latency
//! of session queries while ingest runs at full speed.
//!
//! `cargo bench -p agentrail-server --bench http_ingest [-- --batches 60 --connections 1,4,16
//!  --no-privacy --pii-rate 0.3 --url http://host:port --key ROOT_KEY]` (with `--url`, drives
//!  that server instead; its index lag is then read from /metrics; `--no-privacy` stores
//!  sensitive fields in clear, to measure what tokenizing and sealing cost; `--pii-rate`: the
//!  share of prompts quoting personal data — the subject's email, in a quarter of them also a
//!  phone and a card number seen once — default 0.3).

use agentrail_server::{AppState, ServerConfig, router};
use agentrail_testkit::bench::{arg, percentile_ms};
use agentrail_testkit::{Generator, Profile};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The allocator the `agentrail` binary uses, so this measures what it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1000;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn post(a: &ureq::Agent, url: &str, key: &str, ct: &str, body: &[u8]) -> (u16, Value) {
    let mut r = a
        .post(url)
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", ct)
        .send(body)
        .expect("request");
    let st = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(a: &ureq::Agent, url: &str, key: &str, consistency: &str) -> (u16, String) {
    let mut r = a
        .get(url)
        .header("Authorization", &format!("Bearer {key}"))
        .header("x-read-consistency", consistency)
        .call()
        .expect("request");
    let st = r.status().as_u16();
    (
        st,
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap_or_default(),
    )
}

struct Target {
    url: String,
    root: String,
    state: Option<Arc<AppState>>,
}

impl Target {
    fn tenant(&self, t: &str) -> (String, String) {
        let a = agent();
        let (st, v) = post(
            &a,
            &format!("{}/v1/tenants", self.url),
            &self.root,
            "application/json",
            json!({"tenant_id": t}).to_string().as_bytes(),
        );
        assert!(st == 201 || st == 409, "create tenant: {st} {v}");
        let mut keys = Vec::new();
        for scope in ["events:write", "events:read"] {
            let (st, v) = post(
                &a,
                &format!("{}/v1/tenants/{t}/keys", self.url),
                &self.root,
                "application/json",
                json!({"scopes": [scope]}).to_string().as_bytes(),
            );
            assert_eq!(st, 201, "{v}");
            keys.push(v["key"].as_str().unwrap().to_owned());
        }
        (keys[0].clone(), keys[1].clone())
    }

    /// (total, max) index lag.
    fn lag(&self) -> (u64, u64) {
        if let Some(s) = &self.state {
            return s.service.index_lag();
        }
        let (_, text) = get(&agent(), &format!("{}/metrics", self.url), "", "latest");
        let metric = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        (
            metric("agentrail_index_lag_events"),
            metric("agentrail_index_lag_max_events"),
        )
    }
}

/// NDJSON bodies of `BATCH` events each, and their total bytes.
fn bodies(tenant: &str, batches: usize, pii_rate: f64) -> (Vec<Vec<u8>>, usize) {
    let profile = Profile {
        text_bytes: 700,
        pii_rate,
        ..Profile::default()
    };
    let mut g = Generator::with_profile(42, tenant, 64, profile);
    let mut out = Vec::with_capacity(batches);
    let mut total = 0;
    for _ in 0..batches {
        let mut b = Vec::with_capacity(BATCH * 1100);
        for e in g.by_ref().take(BATCH) {
            b.extend_from_slice(e.to_string().as_bytes());
            b.push(b'\n');
        }
        total += b.len();
        out.push(b);
    }
    (out, total)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batches: usize = arg(&args, "--batches")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let conns: Vec<usize> = arg(&args, "--connections")
        .unwrap_or_else(|| "1,4,16".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let pii_rate: f64 = arg(&args, "--pii-rate")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3);
    let _dir;
    let _rt;
    let target = if let Some(url) = arg(&args, "--url") {
        Target {
            url,
            root: arg(&args, "--key").expect("--key ROOT_KEY with --url"),
            state: None,
        }
    } else {
        let dir = tempfile::tempdir_in(".").expect("temp dir");
        let mut cfg = ServerConfig::on(dir.path());
        cfg.listen = "127.0.0.1:0".into();
        cfg.service.seal_sensitive_fields = !args.iter().any(|a| a == "--no-privacy");
        let (state, opened) = AppState::open(cfg).expect("open");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state.clone());
        // The accept loop `agentrail serve` runs (connection caps, header and body timeouts).
        let st = state.clone();
        rt.spawn(agentrail_server::conn::accept_loop(
            listener,
            app,
            st,
            std::future::pending(),
            Duration::from_secs(1),
        ));
        _dir = dir;
        _rt = rt;
        Target {
            url: format!("http://{addr}"),
            root: opened.new_root_key.clone().unwrap(),
            state: Some(state),
        }
    };

    println!(
        "HTTP ingest: batches of {BATCH} events, NDJSON, durable acknowledgements, index running, {:.0}% of prompts with personal data, privacy {}",
        pii_rate * 100.0,
        if args.iter().any(|a| a == "--no-privacy") {
            "off"
        } else {
            "on (tokenize + seal sensitive fields)"
        }
    );
    println!(
        "| connections | events | avg event B | events/s | MB/s | p50 ms | p99 ms | index lag at end | index caught up after s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &conns {
        let tenant = format!("bench-{n}-{}", std::process::id());
        let (writer, _) = target.tenant(&tenant);
        let (bodies, bytes) = bodies(&tenant, batches, pii_rate);
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut threads = Vec::new();
        for _ in 0..n {
            let (bodies, next, writer) = (bodies.clone(), next.clone(), writer.clone());
            let url = format!("{}/v1/tenants/{tenant}/events", target.url);
            threads.push(std::thread::spawn(move || {
                let a = agent();
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    loop {
                        let t = Instant::now();
                        let (st, v) = post(&a, &url, &writer, "application/x-ndjson", body);
                        if st == 200 {
                            lat.push(t.elapsed());
                            break;
                        }
                        assert!(st == 503 || st == 429, "{st}: {v}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                lat
            }));
        }
        let mut lat: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let secs = started.elapsed().as_secs_f64();
        lat.sort();
        let (lag_total, _) = target.lag();
        let catch = Instant::now();
        while target.lag().0 > 0 && catch.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let events = batches * BATCH;
        println!(
            "| {n} | {events} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {lag_total} | {:.2} |",
            bytes / events,
            events as f64 / secs,
            bytes as f64 / secs / 1e6,
            percentile_ms(&lat, 0.5),
            percentile_ms(&lat, 0.99),
            catch.elapsed().as_secs_f64()
        );
    }

    // Session queries while 4 connections ingest at full speed.
    let tenant = format!("bench-q-{}", std::process::id());
    let (writer, reader) = target.tenant(&tenant);
    let (bodies, _) = bodies(&tenant, batches, pii_rate);
    let sessions: Vec<String> = {
        let first = String::from_utf8_lossy(&bodies[0]).into_owned();
        let mut s: Vec<String> = first
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["session_id"].as_str().map(str::to_owned))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let a = agent();
    let (st, v) = post(
        &a,
        &format!("{}/v1/tenants/{tenant}/events", target.url),
        &writer,
        "application/x-ndjson",
        &bodies[0],
    );
    assert_eq!(st, 200, "{v}");
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (bodies, next, writer) = (bodies.clone(), next.clone(), writer.clone());
        let url = format!("{}/v1/tenants/{tenant}/events", target.url);
        threads.push(std::thread::spawn(move || {
            let a = agent();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                loop {
                    let (st, _) = post(&a, &url, &writer, "application/x-ndjson", body);
                    if st == 200 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }));
    }
    let started = Instant::now();
    let (mut latest, mut indexed) = (Vec::new(), Vec::new());
    let mut i = 0;
    while next.load(Ordering::Relaxed) < bodies.len() {
        let sid = &sessions[i % sessions.len()];
        i += 1;
        let (mode, lat) = if i % 2 == 0 {
            ("latest", &mut latest)
        } else {
            ("indexed", &mut indexed)
        };
        let t = Instant::now();
        let (st, body) = get(
            &a,
            &format!(
                "{}/v1/tenants/{tenant}/sessions/{sid}?limit=1000",
                target.url
            ),
            &reader,
            mode,
        );
        assert!(st == 200 || st == 503, "{st} {body}");
        lat.push(t.elapsed());
    }
    for t in threads {
        t.join().unwrap();
    }
    println!();
    println!(
        "session queries while 4 connections ingest ({:.1}s):",
        started.elapsed().as_secs_f64()
    );
    for (mode, mut lat) in [
        (
            "latest (waits for the index to hold every acknowledged event)",
            latest,
        ),
        ("indexed (answers from what the index holds)", indexed),
    ] {
        lat.sort();
        println!(
            "  {mode}: {} queries, p50 {:.1} ms, p99 {:.1} ms",
            lat.len(),
            percentile_ms(&lat, 0.5),
            percentile_ms(&lat, 0.99)
        );
    }
}
