//! HTTP ingest workload: a server in this process (real sockets, durable acknowledgements, the
//! background indexer running) and N client threads, each with one keep-alive connection,
//! posting NDJSON batches of 1,000 ~1 KiB events (with `--otlp`: batches of 512, and for each
//! connection count the same events as OTLP/HTTP protobuf GenAI spans to `/v1/traces`, 512
//! per request as the SDK's BatchSpanProcessor sends them, native and OTLP alternated). Prints events/s, MB/s, request latency, the
//! index lag when the clients stop and how long the index takes to catch up; then the latency
//! of session queries while ingest runs at full speed.
//!
//! `cargo bench -p agentrail-server --bench http_ingest [-- --batches 60 --connections 1,4,16
//!  --no-privacy --no-receipts --external-signer --pii-rate 0.3 --otlp [--formats otlp] --url http://host:port --key ROOT_KEY]` (with `--url`, drives
//!  that server instead; its index lag is then read from /metrics; `--no-privacy` stores
//!  sensitive fields in clear, to measure what tokenizing and sealing cost; `--no-receipts`
//!  answers without a signed checkpoint, to measure what signing receipts costs;
//!  `--external-signer` signs through the signer protocol on a Unix socket, `--signer SPEC`
//!  with the log key at SPEC (a `pkcs11:` URI, or a running signer's socket); `--pii-rate`: the
//!  share of prompts quoting personal data — the subject's email, in a quarter of them also a
//!  phone and a card number seen once — default 0.3).

use agentrail_server::{AppState, ServerConfig, router};
use agentrail_testkit::bench::{arg, percentile_ms, process_cpu_seconds};
use agentrail_testkit::{Generator, Profile};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The allocator the `agentrail` binary uses, so this measures what it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per native request (OTLP runs use the SDK's 512 for both).
const BATCH: usize = 1000;
const OTLP_BATCH: usize = 512;

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

    /// Bytes of a tenant's files (everything but the index; the index) in a server of this
    /// process, `(0, 0)` for a server elsewhere.
    fn bytes_on_disk(&self, tenant: &str) -> (u64, u64) {
        fn du(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    let m = e
                        .metadata()
                        .map(|m| if m.is_dir() { du(&e.path()) } else { m.len() });
                    m.unwrap_or(0)
                })
                .sum()
        }
        let Some(s) = &self.state else { return (0, 0) };
        let dir = s.cfg.service.data_dir.join("tenants").join(tenant);
        let index = du(&dir.join("index"));
        (du(&dir) - index, index)
    }

    /// A value of the server's /metrics (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = get(&agent(), &format!("{}/metrics", self.url), "", "latest");
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// (total, max) index lag.
    fn lag(&self) -> (u64, u64) {
        if let Some(s) = &self.state {
            return s.service.index_lag();
        }
        (
            self.metric("agentrail_index_lag_events") as u64,
            self.metric("agentrail_index_lag_max_events") as u64,
        )
    }

    /// (seconds spent, checkpoints signed) for ingest answers' receipts.
    fn receipt_signing(&self) -> (f64, f64) {
        let m = "agentrail_ingest_receipt_sign_duration_seconds";
        (
            self.metric(&format!("{m}_sum")),
            self.metric(&format!("{m}_count")),
        )
    }
}

/// Batches of `per` generated events (the same for every tenant name).
fn generated(tenant: &str, batches: usize, per: usize, pii_rate: f64) -> Vec<Vec<Value>> {
    let profile = Profile {
        text_bytes: 700,
        pii_rate,
        ..Profile::default()
    };
    let mut g = Generator::with_profile(42, tenant, 64, profile);
    (0..batches)
        .map(|_| {
            g.by_ref()
                .take(per)
                .map(|mut e| {
                    // The key decides the tenant; the body names none.
                    e.as_object_mut().map(|o| o.remove("tenant_id"));
                    e
                })
                .collect()
        })
        .collect()
}

/// NDJSON bodies, and their total bytes.
fn ndjson(batches: &[Vec<Value>]) -> (Vec<Vec<u8>>, usize) {
    let out: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| {
            let mut body = Vec::with_capacity(b.len() * 1100);
            for e in b {
                body.extend_from_slice(e.to_string().as_bytes());
                body.push(b'\n');
            }
            body
        })
        .collect();
    let total = out.iter().map(Vec::len).sum();
    (out, total)
}

/// The first `n` bytes of SHA-256 of `s`: stable trace and span ids from event and session ids.
fn id_bytes(s: &str, n: usize) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())[..n].to_vec()
}

/// A generated event as the GenAI span an instrumentation would send for it: a chat span with
/// its messages as JSON-string attributes, an execute_tool span, a review span with
/// `agentrail.review.*`, other events as spans carrying their payload as an attribute.
fn span_of(ev: &Value) -> opentelemetry_proto::tonic::trace::v1::Span {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    let mut attrs: Vec<KeyValue> = Vec::new();
    let mut put = |k: &str, v: any_value::Value| {
        attrs.push(KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        })
    };
    let text = |v: &Value| {
        any_value::Value::StringValue(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let p = &ev["payload"];
    let session = ev["session_id"].as_str().unwrap_or("none");
    put("gen_ai.conversation.id", text(&ev["session_id"]));
    if let Some(a) = ev["agent_id"].as_str() {
        put("gen_ai.agent.id", any_value::Value::StringValue(a.into()));
    }
    if let Some(sub) = ev["subject_id"].as_str() {
        put("enduser.id", any_value::Value::StringValue(sub.into()));
    }
    let name = match ev["event_type"].as_str().unwrap_or_default() {
        "model.decision" => {
            put(
                "gen_ai.operation.name",
                any_value::Value::StringValue("chat".into()),
            );
            put("gen_ai.provider.name", text(&p["model"]["provider"]));
            put("gen_ai.request.model", text(&p["model"]["name"]));
            put("gen_ai.response.model", text(&p["model"]["version"]));
            for (k, f) in [
                ("gen_ai.usage.input_tokens", "input_tokens"),
                ("gen_ai.usage.output_tokens", "output_tokens"),
            ] {
                if let Some(n) = p["usage"][f].as_i64() {
                    put(k, any_value::Value::IntValue(n));
                }
            }
            if !p["prompt"].is_null() {
                put("gen_ai.input.messages", text(&p["prompt"]["messages"]));
                put(
                    "gen_ai.output.messages",
                    text(&json!([{"role": "assistant",
                    "parts": [{"type": "text", "content": p["output"]["raw"]}]}])),
                );
            }
            format!("chat {}", p["model"]["name"].as_str().unwrap_or_default())
        }
        "tool.invocation" => {
            put(
                "gen_ai.operation.name",
                any_value::Value::StringValue("execute_tool".into()),
            );
            put("gen_ai.tool.name", text(&p["tool"]["name"]));
            put("gen_ai.tool.call.arguments", text(&p["input"]));
            format!(
                "execute_tool {}",
                p["tool"]["name"].as_str().unwrap_or_default()
            )
        }
        "human.review" => {
            put("agentrail.review.decision", text(&p["decision"]));
            put("agentrail.review.reviewer.id", text(&p["reviewer"]["id"]));
            put("agentrail.review.presented_at", text(&p["presented_at"]));
            put("agentrail.review.decided_at", text(&p["decided_at"]));
            put(
                "agentrail.review.proposed.event_id",
                text(&p["proposed_action"]["event_id"]),
            );
            "review".into()
        }
        other => {
            put("app.payload", text(p));
            other.to_owned()
        }
    };
    let start: jiff::Timestamp = ev["occurred_at"]
        .as_str()
        .unwrap_or("2026-08-01T00:00:00Z")
        .parse()
        .unwrap();
    let start = start.as_nanosecond() as u64;
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: id_bytes(session, 16),
        span_id: id_bytes(ev["event_id"].as_str().unwrap_or_default(), 8),
        parent_span_id: ev["caused_by"][0]
            .as_str()
            .map(|c| id_bytes(c, 8))
            .unwrap_or_default(),
        name,
        kind: 3,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 250_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

/// OTLP protobuf `ExportTraceServiceRequest` bodies of the same events, and their total bytes.
fn otlp(batches: &[Vec<Value>]) -> (Vec<Vec<u8>>, usize) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    use prost::Message;
    let out: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("bench-agent".into())),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: b.iter().map(span_of).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        })
        .collect();
    let total = out.iter().map(Vec::len).sum();
    (out, total)
}

/// Posts every body over `n` keep-alive connections (retrying 503/429 after 200 ms); the wall
/// time, each request's latency, and how many answers were 503/429.
fn drive(
    url: &str,
    key: &str,
    ct: &'static str,
    bodies: Vec<Vec<u8>>,
    n: usize,
) -> (f64, Vec<Duration>, usize) {
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let retried = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..n {
        let (bodies, next, key, url, retried) = (
            bodies.clone(),
            next.clone(),
            key.to_owned(),
            url.to_owned(),
            retried.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let a = agent();
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                loop {
                    let t = Instant::now();
                    let (st, v) = post(&a, &url, &key, ct, body);
                    if st == 200 {
                        // An OTLP answer with a partial success would be a protobuf body;
                        // a full success is empty.
                        lat.push(t.elapsed());
                        break;
                    }
                    assert!(st == 503 || st == 429, "{st}: {v}");
                    retried.fetch_add(1, Ordering::Relaxed);
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
    lat.sort();
    (
        started.elapsed().as_secs_f64(),
        lat,
        retried.load(Ordering::Relaxed),
    )
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
        let dir = agentrail_testkit::bench::scratch_dir();
        let mut cfg = ServerConfig::on(dir.path());
        cfg.listen = "127.0.0.1:0".into();
        cfg.service.seal_sensitive_fields = !args.iter().any(|a| a == "--no-privacy");
        cfg.service.signed_receipts = !args.iter().any(|a| a == "--no-receipts");
        if let Some(spec) = arg(&args, "--signer") {
            cfg.service.signer = Some(spec.into());
        }
        if args.iter().any(|a| a == "--external-signer") {
            // The signer's protocol over a real Unix socket, its record fsync'd per advance:
            // what `agentrail signer` does, served from a thread of this process.
            let key = agentrail_note::Signer::from_seed("agentrail.local", [9; 32]).unwrap();
            let socket = dir.path().join("signer.sock");
            let service = std::sync::Arc::new(
                agentrail_ledger::signer::SignerService::open(
                    Box::new(agentrail_ledger::signer::KeyFile::new(key)),
                    &dir.path().join("signed.jsonl"),
                )
                .unwrap(),
            );
            let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
            std::thread::spawn(move || service.serve(listener));
            cfg.service.signer = Some(socket);
        }
        if let Some(lag) = arg(&args, "--max-index-lag").and_then(|s| s.parse().ok()) {
            cfg.service.max_index_lag = lag;
        }
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

    let with_otlp = args.iter().any(|a| a == "--otlp");
    let per = if with_otlp { OTLP_BATCH } else { BATCH };
    println!(
        "HTTP ingest: batches of {per} events, durable acknowledgements, index running, signed receipts {} ({}), {:.0}% of prompts with personal data, privacy {}",
        if args.iter().any(|a| a == "--no-receipts") {
            "off"
        } else {
            "on"
        },
        if args.iter().any(|a| a == "--external-signer") {
            "signer on a Unix socket"
        } else if arg(&args, "--signer").is_some() {
            "the key at --signer"
        } else {
            "key file"
        },
        pii_rate * 100.0,
        if args.iter().any(|a| a == "--no-privacy") {
            "off"
        } else {
            "on (tokenize + seal sensitive fields)"
        }
    );
    if with_otlp {
        // What each intake costs per event before the one ingest operation: NDJSON parse and
        // validation, against OTLP decode, mapping and validation (one thread, same events).
        let sample = generated("bench", 4, per, pii_rate);
        let (nd, _) = ndjson(&sample);
        let (ot, _) = otlp(&sample);
        let n = (4 * per) as f64;
        let time = |f: &dyn Fn()| {
            let t = Instant::now();
            for _ in 0..5 {
                f();
            }
            t.elapsed().as_secs_f64() / 5.0 / n * 1e6
        };
        let native = time(&|| {
            for b in &nd {
                let items = agentrail_event::batch::parse_batch(
                    b,
                    agentrail_event::batch::BatchFormat::Ndjson,
                );
                assert!(items.iter().all(|i| i.result.is_ok()));
            }
        });
        let decode = time(&|| {
            for b in &ot {
                agentrail_otlp::decode_traces(b, agentrail_otlp::Encoding::Protobuf).unwrap();
            }
        });
        let mapping = time(&|| {
            for b in &ot {
                let req =
                    agentrail_otlp::decode_traces(b, agentrail_otlp::Encoding::Protobuf).unwrap();
                std::hint::black_box(agentrail_otlp::map_traces(req));
            }
        });
        let mapped = time(&|| {
            for b in &ot {
                let req =
                    agentrail_otlp::decode_traces(b, agentrail_otlp::Encoding::Protobuf).unwrap();
                for m in agentrail_otlp::map_traces(req) {
                    agentrail_event::validate_value(m.event.unwrap()).unwrap();
                }
            }
        });
        println!(
            "intake per event, one thread: NDJSON parse + validate {native:.1} µs; OTLP decode {decode:.1} µs, decode + map {mapping:.1} µs, decode + map + validate {mapped:.1} µs"
        );
    }
    println!(
        "| connections | format | events | avg request B | stored B/event | index B/event | events/s | MB/s | p50 ms | p99 ms | 503/429 | index lag at end | index caught up after s | CPU µs/event |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let formats: Vec<String> = match arg(&args, "--formats") {
        Some(f) => f.split(',').map(str::to_owned).collect(),
        None if with_otlp => vec!["ndjson".into(), "otlp".into()],
        None => vec!["ndjson".into()],
    };
    if let Ok(s) = std::env::var("BENCH_SLEEP") {
        std::thread::sleep(Duration::from_secs(s.parse().unwrap()));
    }
    for (row, &n) in conns.iter().enumerate() {
        // A B, then B A: neither format always runs on the warmer process.
        let mut order: Vec<&str> = formats.iter().map(String::as_str).collect();
        if row % 2 == 1 {
            order.reverse();
        }
        for format in order {
            let tenant = format!("bench-{row}-{n}-{format}-{}", std::process::id());
            let (writer, _) = target.tenant(&tenant);
            // The same events whatever the tenant: both formats carry the same content.
            let events_in = generated("bench", batches, per, pii_rate);
            let ((bodies, bytes), url, ct) = match format {
                "otlp" => (
                    otlp(&events_in),
                    format!("{}/v1/traces", target.url),
                    "application/x-protobuf",
                ),
                _ => (
                    ndjson(&events_in),
                    format!("{}/v1/tenants/{tenant}/events", target.url),
                    "application/x-ndjson",
                ),
            };
            let requests = bodies.len();
            let cpu = process_cpu_seconds();
            let (secs, lat, retried) = drive(&url, &writer, ct, bodies, n);
            let (lag_total, _) = target.lag();
            let catch = Instant::now();
            while target.lag().0 > 0 && catch.elapsed() < Duration::from_secs(600) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let events = batches * per;
            // Every row stores new events: a row that replayed another's would measure the
            // replay path, not ingest.
            if let Some(s) = &target.state {
                let t = agentrail_event::TenantId::parse(&tenant).unwrap();
                assert_eq!(
                    s.service.ledger().size(&t).unwrap_or(0),
                    events as u64,
                    "tenant {tenant} does not hold exactly the row's events"
                );
            }
            // Client and server together (they share the process), until the index caught up.
            let cpu = (process_cpu_seconds() - cpu) / events as f64 * 1e6;
            let (stored, indexed) = target.bytes_on_disk(&tenant);
            println!(
                "| {n} | {format} | {events} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {retried} | {lag_total} | {:.2} | {cpu:.1} |",
                bytes / requests,
                stored / events as u64,
                indexed / events as u64,
                events as f64 / secs,
                bytes as f64 / secs / 1e6,
                percentile_ms(&lat, 0.5),
                percentile_ms(&lat, 0.99),
                catch.elapsed().as_secs_f64()
            );
        }
    }
    let (sum, count) = target.receipt_signing();
    if count > 0.0 {
        println!(
            "signed receipts: {count:.0} checkpoints signed for the answers, {:.0} µs each on average (root + signature)",
            sum / count * 1e6
        );
    }

    // Session queries while 4 connections ingest at full speed.
    let tenant = format!("bench-q-{}", std::process::id());
    let (writer, reader) = target.tenant(&tenant);
    let (bodies, _) = ndjson(&generated(&tenant, batches, BATCH, pii_rate));
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
