//! The HTTP API in process (tower `oneshot`, no sockets): the isolation matrix generated from the
//! OpenAPI route table, bad input, idempotency, key revocation, the access log, saturation.

use agentrail_server::{AppState, ServerConfig, openapi_document};
use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

mod common;
use common::{Answer, TestServer};

struct Server {
    app: Router,
    state: Arc<AppState>,
    root: String,
    _dir: tempfile::TempDir,
}

fn start_with(f: impl FnOnce(&mut ServerConfig)) -> Server {
    let TestServer {
        state,
        app,
        root,
        dir,
    } = common::open(f, None);
    Server {
        app,
        state,
        root,
        _dir: dir,
    }
}

fn start() -> Server {
    start_with(|_| {})
}

trait AnswerExt {
    fn json(&self) -> Value;
    fn code(&self) -> String;
}

impl AnswerExt for Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        common::send(&self.app, method, path, key, headers, body).await
    }

    async fn get(&self, path: &str, key: &str) -> Answer {
        self.call("GET", path, Some(key), &[], Vec::new()).await
    }

    async fn post_json(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(
            "POST",
            path,
            Some(key),
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn tenant(&self, t: &str) {
        let a = common::create_tenant(&self.app, &self.root, t).await;
        a.expect(StatusCode::CREATED);
    }

    async fn key(&self, t: &str, scopes: &[&str]) -> String {
        common::create_key(&self.app, &self.root, t, scopes).await
    }

    async fn ingest_ndjson(&self, t: &str, key: &str, events: &[Value]) -> Answer {
        let mut body = Vec::new();
        for e in events {
            body.extend_from_slice(e.to_string().as_bytes());
            body.push(b'\n');
        }
        self.call(
            "POST",
            &format!("/v1/tenants/{t}/events"),
            Some(key),
            &[("content-type", "application/x-ndjson")],
            body,
        )
        .await
    }

    /// The tenant's checkpoint verifier key, as the API serves it.
    async fn verifier(&self, t: &str, key: &str) -> agentrail_note::Verifier {
        let a = self
            .get(&format!("/v1/tenants/{t}/verifier-key"), key)
            .await;
        String::from_utf8(a.body).unwrap().trim().parse().unwrap()
    }

    fn size(&self, t: &str) -> u64 {
        self.state
            .service
            .ledger()
            .size(&agentrail_event::TenantId::parse(t).unwrap())
            .unwrap()
    }
}

fn events(tenant: &str, n: usize) -> Vec<Value> {
    agentrail_testkit::Generator::new(3, tenant, 4)
        .take(n)
        .collect()
}

/// The scopes an operation accepts, from its security requirements in the OpenAPI document.
fn required_scopes(op: &Value) -> Option<BTreeSet<String>> {
    let sec = op.get("security")?.as_array()?;
    let mut out = BTreeSet::new();
    for req in sec {
        for scopes in req.as_object()?.values() {
            for s in scopes.as_array()? {
                out.insert(s.as_str()?.to_owned());
            }
        }
    }
    Some(out)
}

const SCOPES: [&str; 6] = [
    "events:write",
    "events:read",
    "export",
    "verify",
    "pii:reveal",
    "tenant:admin",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_matrix_over_every_route() {
    isolation_matrix(start()).await;
}

/// The same matrix with the query store in PostgreSQL (row-level security under the API's
/// own tenant checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_matrix_over_every_route_with_the_postgresql_store() {
    let pg = agentrail_testkit::postgres::Server::start();
    let url = pg.create_db("agentrail");
    let store = agentrail_pgindex::PgStore::connect(&url).unwrap();
    let s = start_with(|c| c.service.index_store = Some(Arc::new(store)));
    isolation_matrix(s).await;
    drop(pg);
}

async fn isolation_matrix(s: Server) {
    s.tenant("alpha").await;
    s.tenant("bravo").await;
    let writer_b = s.key("bravo", &["events:write"]).await;
    let evs = events("bravo", 40);
    let a = s.ingest_ndjson("bravo", &writer_b, &evs).await;
    assert_eq!(a.status, StatusCode::OK);
    let event_id = evs
        .iter()
        .find(|e| e["event_type"] == "tool.invocation")
        .unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session_id = evs[0]["session_id"].as_str().unwrap().to_owned();
    let model = evs
        .iter()
        .find_map(|e| e["payload"]["model"]["name"].as_str())
        .unwrap()
        .to_owned();
    // One key per scope in each tenant.
    let mut keys_a = Vec::new();
    let mut keys_b = Vec::new();
    for sc in SCOPES {
        keys_a.push((sc, s.key("alpha", &[sc]).await));
        keys_b.push((sc, s.key("bravo", &[sc]).await));
    }

    let doc = serde_json::to_value(openapi_document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut exercised = 0;
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let Some(scopes) = required_scopes(op) else {
                // Public operational endpoints: answer without a key.
                let a = s.call(&method, template, None, &[], Vec::new()).await;
                assert_eq!(a.status, StatusCode::OK, "{method} {template}");
                continue;
            };
            assert!(!scopes.is_empty(), "{method} {template} names no scope");
            if !template.contains("{tenant}") && template != "/v1/tenants" {
                // OTLP intake: the key decides the tenant. Each tenant's writer lands in its
                // own tenant only; every other key (and root) is refused; nothing crosses.
                assert_eq!(
                    scopes,
                    BTreeSet::from(["events:write".to_owned()]),
                    "{template}"
                );
                let h = [("content-type", "application/json")];
                let logs = template.ends_with("/logs");
                let span = |n: u64| {
                    if logs {
                        json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
                            "timeUnixNano": format!("{}", 1_780_000_000_000_000_000u64 + n),
                            "body": {"stringValue": "step"}}]}]}]})
                    } else {
                        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
                            "traceId": format!("{:032x}", 0xabc0 + n),
                            "spanId": format!("{:016x}", 0xdef0 + n),
                            "name": "step", "startTimeUnixNano": "1780000000000000000"}]}]}]})
                    }
                    .to_string()
                    .into_bytes()
                };
                for k in [None, Some("nonsense"), Some("ar_0123456789abcdef_unknown")] {
                    let a = s.call(&method, template, k, &h, span(0)).await;
                    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{template} with {k:?}");
                }
                let (a0, b0) = (s.size("alpha"), s.size("bravo"));
                let mut n = exercised as u64 * 100;
                for (sc, k) in keys_a.iter().chain(&keys_b) {
                    n += 1;
                    let a = s.call(&method, template, Some(k), &h, span(n)).await;
                    if *sc == "events:write" {
                        assert_eq!(a.status, StatusCode::OK, "{template} with {sc}");
                    } else {
                        assert_eq!(a.status, StatusCode::FORBIDDEN, "{template} with {sc}");
                    }
                }
                let a = s.call(&method, template, Some(&s.root), &h, span(0)).await;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{template} as root");
                assert_eq!((s.size("alpha"), s.size("bravo")), (a0 + 1, b0 + 1));
                let read_a = s.key("alpha", &["events:read"]).await;
                let listed = s
                    .get("/v1/tenants/alpha/events?limit=1000", &read_a)
                    .await
                    .json();
                let text = listed.to_string();
                assert!(!text.contains(&session_id) && !text.contains(&event_id));
                exercised += 1;
                continue;
            }
            let fill = |tenant: &str| {
                let mut p = template
                    .replace("{tenant}", tenant)
                    .replace("{event_id}", &event_id)
                    .replace("{session_id}", &session_id)
                    .replace("{model}", &model)
                    .replace("{key_id}", "0000000000000000");
                if template.ends_with("/anomalies") {
                    p.push_str("?kind=fast_approval");
                } else if template.ends_with("/consistency") {
                    p.push_str("?from=1");
                } else if template.ends_with("/inclusion") {
                    p.push_str("?seq=0");
                }
                p
            };
            let body = |tenant: &str| -> (Vec<(&str, &str)>, Vec<u8>) {
                if method != "POST" && method != "PUT" {
                    return (Vec::new(), Vec::new());
                }
                let b = if template.ends_with("/events") {
                    let mut e = events(tenant, 1).remove(0);
                    e["event_id"] = json!(format!("matrix-{}", rand_id()));
                    e
                } else if template.ends_with("/keys") {
                    json!({"scopes": ["events:read"]})
                } else if template == "/v1/tenants" {
                    json!({"tenant_id": format!("t{}", rand_id())})
                } else {
                    json!({})
                };
                (
                    vec![("content-type", "application/json")],
                    b.to_string().into_bytes(),
                )
            };
            exercised += 1;
            let what = format!("{method} {template}");
            let (h, b) = body("bravo");
            // No key, a malformed key, an unknown key: 401.
            for k in [None, Some("nonsense"), Some("ar_0123456789abcdef_unknown")] {
                let a = s.call(&method, &fill("bravo"), k, &h, b.clone()).await;
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what} with key {k:?}");
                assert_eq!(a.code(), "unauthorized");
            }
            if scopes.contains("root") {
                let a = s
                    .call(&method, &fill("bravo"), Some(&s.root), &h, b.clone())
                    .await;
                assert!(a.status.is_success(), "{what} as root: {}", a.status);
                for (sc, k) in keys_b.iter().chain(&keys_a) {
                    let a = s
                        .call(&method, &fill("bravo"), Some(k), &h, b.clone())
                        .await;
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{what} with {sc}");
                }
                continue;
            }
            for (sc, k) in &keys_a {
                // Tenant A's keys, whatever their scope, on tenant B and on a tenant that does
                // not exist: the same 403, no data.
                let on_b = s
                    .call(&method, &fill("bravo"), Some(k), &h, b.clone())
                    .await;
                let on_ghost = s
                    .call(&method, &fill("ghost"), Some(k), &h, b.clone())
                    .await;
                assert_eq!(
                    on_b.status,
                    StatusCode::FORBIDDEN,
                    "{what}: alpha's {sc} key on bravo"
                );
                assert_eq!(
                    on_b.body, on_ghost.body,
                    "{what}: 403 must not reveal existence"
                );
                assert_eq!(on_b.code(), "forbidden");
                let text = String::from_utf8_lossy(&on_b.body);
                assert!(!text.contains(&session_id) && !text.contains(&event_id));
            }
            for (sc, k) in &keys_b {
                let (h, b) = body("bravo");
                let a = s.call(&method, &fill("bravo"), Some(k), &h, b).await;
                if scopes.contains(*sc) {
                    assert!(
                        a.status != StatusCode::FORBIDDEN && a.status != StatusCode::UNAUTHORIZED,
                        "{what}: bravo's {sc} key is refused: {} {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                    assert!(a.status.as_u16() < 500, "{what} with {sc}: {}", a.status);
                } else {
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: bravo's {sc} key");
                }
            }
            // The root key administers tenants but holds no data scope.
            let (h, b) = body("bravo");
            let a = s.call(&method, &fill("bravo"), Some(&s.root), &h, b).await;
            if scopes.contains("tenant:admin") {
                assert!(
                    a.status.as_u16() < 400 || a.status == StatusCode::NOT_FOUND,
                    "{what} as root: {}",
                    a.status
                );
            } else {
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{what} as root");
            }
        }
    }
    assert!(
        exercised >= 18,
        "only {exercised} operations in the route table"
    );
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_whole_and_named() {
    let s = start_with(|c| {
        c.max_body_bytes = 64 << 10;
        c.service.max_batch_events = 50;
    });
    s.tenant("acme").await;
    let w = s.key("acme", &["events:write"]).await;
    let path = "/v1/tenants/acme/events";
    let good = events("acme", 3);
    let nd = |evs: &[Value]| -> Vec<u8> {
        evs.iter()
            .flat_map(|e| format!("{e}\n").into_bytes())
            .collect()
    };
    let post = |ct: &'static str, body: Vec<u8>, extra: Option<(&'static str, &'static str)>| {
        let w = w.clone();
        let s = &s;
        async move {
            let mut h = vec![("content-type", ct)];
            if let Some(x) = extra {
                h.push(x);
            }
            s.call("POST", path, Some(&w), &h, body).await
        }
    };
    // Malformed JSON.
    let a = post(
        "application/json",
        b"{\"schema_version\": \"1\",".to_vec(),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.code(), "invalid_event");
    // Wrong type and unknown field: named by path.
    let mut e = good[0].clone();
    e["occurred_at"] = json!(12);
    e["sesion_id"] = json!("typo");
    let a = post("application/json", e.to_string().into_bytes(), None).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let details = a.json()["error"]["details"].to_string();
    assert!(details.contains("occurred_at"), "{details}");
    assert!(details.contains("sesion_id"), "{details}");
    // The server's own record types (erasure records) cannot come from an emitter.
    let mut forged = good[1].clone();
    forged["event_type"] = json!("custom.agentrail.subject.erased");
    forged["payload"] = json!({"subject_id": "alice", "method": "crypto-shredding"});
    let a = post("application/json", forged.to_string().into_bytes(), None).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = &a.json()["error"]["details"][0];
    assert_eq!(d["path"], "event_type", "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("custom.agentrail.subject.erased"),
        "{d}"
    );
    // NDJSON with one bad line: the line is named, nothing is stored.
    let mut lines = nd(&good);
    lines.extend_from_slice(b"{\"schema_version\":\"1\",\"event_type\":\"model.decision\"}\n");
    let a = post("application/x-ndjson", lines, None).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.json()["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["line"] == 4),
        "{}",
        a.json()
    );
    // Invalid UTF-8.
    let mut bad = good[0].to_string().into_bytes();
    let i = bad.iter().position(|&b| b == b'"').unwrap() + 1;
    bad.insert(i, 0xff);
    let a = post("application/json", bad, None).await;
    a.expect(StatusCode::UNPROCESSABLE_ENTITY);
    // Oversized body, oversized after gzip, too many events.
    let a = post("application/x-ndjson", vec![b' '; 65 << 10], None).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let a = post(
        "application/x-ndjson",
        gzip(&vec![b'\n'; 1 << 20]),
        Some(("content-encoding", "gzip")),
    )
    .await;
    a.expect(StatusCode::PAYLOAD_TOO_LARGE);
    let a = post("application/x-ndjson", nd(&events("acme", 51)), None).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.code(), "batch_too_large");
    // Bad gzip, unknown encoding, unknown content type.
    let a = post(
        "application/x-ndjson",
        b"not gzip at all".to_vec(),
        Some(("content-encoding", "gzip")),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "bad_gzip");
    let a = post(
        "application/x-ndjson",
        nd(&good),
        Some(("content-encoding", "br")),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let a = post("text/csv", nd(&good), None).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A tenant_id of another tenant inside the event.
    let mut e = good[0].clone();
    e["tenant_id"] = json!("bravo");
    let a = post("application/json", e.to_string().into_bytes(), None).await;
    a.expect(StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing of all that was stored.
    assert_eq!(s.size("acme"), 0);
    // Unknown query parameters and bad values are named.
    let r = s.key("acme", &["events:read"]).await;
    let a = s.get("/v1/tenants/acme/events?sesion_id=x", &r).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sesion_id")
    );
    let a = s.get("/v1/tenants/acme/events?from=yesterday", &r).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s.get("/v1/tenants/acme/events?limit=0", &r).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s.get("/v1/tenants/acme/anomalies?kind=nope", &r).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Bad admin bodies.
    let a = s
        .post_json("/v1/tenants", &s.root, json!({"tenant": "x"}))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s
        .post_json("/v1/tenants", &s.root, json!({"tenant_id": "Not Valid"}))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s
        .post_json(
            "/v1/tenants/acme/keys",
            &s.root,
            json!({"scopes": ["events:everything"]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Unknown route and method: JSON errors.
    let a = s.get("/v1/nothing", &r).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.code(), "not_found");
    let a = s
        .call("PUT", "/v1/tenants/acme/events", Some(&r), &[], Vec::new())
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    // Gzip'd NDJSON that is fine is accepted.
    let a = post(
        "application/x-ndjson",
        gzip(&nd(&good)),
        Some(("content-encoding", "gzip")),
    )
    .await;
    a.expect(StatusCode::OK);
    assert_eq!(s.size("acme"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_query_prove_replay_revoke_and_access_log() {
    let s = start();
    s.tenant("acme").await;
    let w = s.key("acme", &["events:write"]).await;
    let r = s.key("acme", &["events:read"]).await;
    let evs = events("acme", 200);
    let a = s.ingest_ndjson("acme", &w, &evs).await;
    assert_eq!(a.status, StatusCode::OK);
    let receipts = a.json()["receipts"].as_array().unwrap().clone();
    assert_eq!(receipts.len(), 200);
    // Read your writes: the session is complete right after the acknowledgement.
    let sid = evs[0]["session_id"].as_str().unwrap();
    let in_session = evs.iter().filter(|e| e["session_id"] == sid).count();
    let a = s
        .get(&format!("/v1/tenants/acme/sessions/{sid}?limit=1000"), &r)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["total"], json!(in_session));
    assert_eq!(v["chain"]["unbroken"], json!(true));
    // A served stored event hashes to its hash.
    let first = &v["events"][0];
    let mut stored = first.clone();
    let hash = stored.as_object_mut().unwrap().remove("hash").unwrap();
    let bytes = agentrail_event::json::to_canonical_vec(&stored).unwrap();
    assert_eq!(
        json!(agentrail_event::hash::to_hex(
            &agentrail_event::hash::sha256(&bytes)
        )),
        hash
    );
    // A writer cannot read, a reader cannot write.
    assert_eq!(
        s.get("/v1/tenants/acme/events", &w).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.ingest_ndjson("acme", &r, &evs[..1]).await.status,
        StatusCode::FORBIDDEN
    );
    // Replays return the original receipts; different content under a used id is a conflict.
    let a = s.ingest_ndjson("acme", &w, &evs[..10]).await;
    assert_eq!(a.status, StatusCode::OK);
    for (got, want) in a.json()["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&receipts)
    {
        assert_eq!(got["seq"], want["seq"]);
        assert_eq!(got["hash"], want["hash"]);
        assert_eq!(got["replayed"], json!(true));
    }
    let mut changed = evs[5].clone();
    changed["attributes"] = json!({"edited": "yes"});
    let a = s
        .ingest_ndjson("acme", &w, &[evs[0].clone(), changed])
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(s.size("acme"), 200);
    // Proofs: JSON verifies against the signed checkpoint; tlog text parses.
    let cp = s.get("/v1/tenants/acme/checkpoint", &r).await;
    assert_eq!(cp.status, StatusCode::OK);
    let verifier = s.verifier("acme", &r).await;
    let (checkpoint, _) = agentrail_note::open_checkpoint(&cp.body, &verifier, &[]).unwrap();
    let p = s
        .get(
            &format!(
                "/v1/tenants/acme/proofs/inclusion?seq=7&tree_size={}",
                checkpoint.size
            ),
            &r,
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let pv = p.json();
    let proof: Vec<[u8; 32]> = pv["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| agentrail_event::hash::from_hex(h.as_str().unwrap()).unwrap())
        .collect();
    let leaf = agentrail_event::hash::from_hex(pv["leaf_hash"].as_str().unwrap()).unwrap();
    agentrail_merkle::verify_inclusion(7, checkpoint.size, &leaf, &proof, &checkpoint.root)
        .unwrap();
    let t = s
        .get(
            &format!(
                "/v1/tenants/acme/proofs/inclusion?event_id={}&format=tlog",
                evs[7]["event_id"].as_str().unwrap()
            ),
            &r,
        )
        .await;
    assert_eq!(t.status, StatusCode::OK);
    agentrail_note::TlogProof::parse(&t.body).unwrap();
    let c = s
        .get("/v1/tenants/acme/proofs/consistency?from=10", &r)
        .await;
    assert_eq!(
        c.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&c.body)
    );
    let a = s
        .get("/v1/tenants/acme/proofs/inclusion?seq=100000", &r)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Revocation works at once.
    let admin = s.key("acme", &["tenant:admin"]).await;
    let list = s.get("/v1/tenants/acme/keys", &admin).await.json();
    let reader_id = agentrail_service::keys::key_id_of(&r).unwrap();
    assert!(list.to_string().contains(reader_id));
    assert!(
        !list.to_string().contains(&r),
        "a listing never shows a key"
    );
    let a = s
        .call(
            "DELETE",
            &format!("/v1/tenants/acme/keys/{reader_id}"),
            Some(&admin),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/v1/tenants/acme/events", &r).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The access log holds every read, chained, with who and how many.
    let log = s
        .get("/v1/tenants/acme/access-log?limit=1000", &admin)
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let recs = log.json()["records"].as_array().unwrap().clone();
    let session_read = recs
        .iter()
        .find(|x| x["endpoint"] == "GET /v1/tenants/{tenant}/sessions/{session_id}")
        .expect("the session read is logged");
    assert_eq!(session_read["result_count"], json!(in_session));
    assert_eq!(session_read["who"]["key_id"], json!(reader_id));
    assert_eq!(session_read["params"]["session_id"], json!(sid));
    assert!(
        recs.iter()
            .any(|x| x["endpoint"] == "GET /v1/tenants/{tenant}/proofs/inclusion")
    );
    for pair in recs.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    // Metrics count what happened.
    let m = s.call("GET", "/metrics", None, &[], Vec::new()).await;
    let text = String::from_utf8(m.body.clone()).unwrap();
    // 200 new events and 10 replays acknowledged.
    assert!(text.contains("agentrail_ingest_events_total 210"), "{text}");
    assert!(
        text.contains("agentrail_ingest_replayed_events_total 10"),
        "{text}"
    );
    assert!(text.contains("agentrail_index_lag_events"));
    // Without an Accept header: the Prometheus text format; asked for: OpenMetrics.
    let ct = |a: &Answer| a.headers["content-type"].to_str().unwrap().to_owned();
    assert!(
        ct(&m).starts_with("text/plain; version=0.0.4"),
        "{}",
        ct(&m)
    );
    assert!(
        text.contains("# TYPE agentrail_ingest_events_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    let om = s
        .call(
            "GET",
            "/metrics",
            None,
            &[(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )],
            Vec::new(),
        )
        .await;
    assert!(
        ct(&om).starts_with("application/openmetrics-text"),
        "{}",
        ct(&om)
    );
    let om = String::from_utf8(om.body).unwrap();
    assert!(
        om.contains("# TYPE agentrail_ingest_events counter"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_sequencer_answers_503_with_retry_after() {
    let s = start_with(|c| {
        c.max_inflight_appends = 1;
        c.append_wait_ms = 0;
    });
    s.tenant("acme").await;
    let w = s.key("acme", &["events:write"]).await;
    let mut generator = agentrail_testkit::Generator::new(9, "acme", 8);
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let batch: Vec<Value> = generator.by_ref().take(200).collect();
        let (s, w) = (s.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            s.ingest_ndjson("acme", &w, &batch).await
        }));
    }
    let (mut ok, mut busy) = (0u64, 0u64);
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert!(a.headers.get("retry-after").is_some());
                assert_eq!(a.code(), "busy");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy > 0,
        "24 concurrent appends through 1 slot never saturated"
    );
    assert_eq!(
        s.size("acme"),
        ok * 200,
        "exactly the acknowledged batches are stored"
    );
}

#[test]
fn committed_openapi_document_is_current() {
    let want = serde_json::to_string_pretty(&openapi_document()).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have != want {
        if std::env::var_os("AGENTRAIL_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        } else {
            panic!(
                "openapi.json is stale: run `AGENTRAIL_BLESS=1 cargo test -p agentrail-server --test api committed_openapi_document_is_current`"
            );
        }
    }
}

/// An acknowledged answer carries a checkpoint signed over a tree that holds its events, and
/// with `proofs=true` each receipt's leaf hash and inclusion path in it: a client can check
/// its receipts offline, against the tenant's verifier key, without asking the server again.
#[tokio::test]
async fn acknowledged_batches_carry_a_signed_checkpoint_and_proofs() {
    let s = start();
    s.tenant("acme").await;
    let w = s.key("acme", &["events:write"]).await;
    let r = s.key("acme", &["events:read"]).await;
    let verifier = s.verifier("acme", &r).await;
    let evs = events("acme", 30);
    assert_eq!(
        s.ingest_ndjson("acme", &w, &evs[..10]).await.status,
        StatusCode::OK
    );
    let a = s
        .call(
            "POST",
            "/v1/tenants/acme/events?proofs=true",
            Some(&w),
            &[("content-type", "application/json")],
            serde_json::to_vec(&evs[10..]).unwrap(),
        )
        .await;
    a.expect(StatusCode::OK);
    let v = a.json();
    let text = v["checkpoint"].as_str().expect("a signed checkpoint");
    let (cp, _) = agentrail_note::open_checkpoint(text.as_bytes(), &verifier, &[]).unwrap();
    assert!(
        cp.size >= 30,
        "the checkpoint covers the batch: {}",
        cp.size
    );
    for receipt in v["receipts"].as_array().unwrap() {
        let seq = receipt["seq"].as_u64().unwrap();
        let leaf = agentrail_event::hash::from_hex(receipt["leaf_hash"].as_str().unwrap()).unwrap();
        let proof: Vec<[u8; 32]> = receipt["inclusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| agentrail_event::hash::from_hex(h.as_str().unwrap()).unwrap())
            .collect();
        agentrail_merkle::verify_inclusion(seq, cp.size, &leaf, &proof, &cp.root).unwrap();
        // The leaf is the stored event the server serves, not some other bytes.
        let id = receipt["event_id"].as_str().unwrap();
        let got = s
            .get(&format!("/v1/tenants/acme/events/{id}?view=stored"), &r)
            .await
            .json();
        let mut stored = got["event"].clone();
        stored.as_object_mut().unwrap().remove("hash");
        let bytes = agentrail_event::json::to_canonical_vec(&stored).unwrap();
        assert_eq!(agentrail_merkle::leaf_hash(&bytes), leaf, "event {id}");
        // A proof checked against another position fails: the path is this event's.
        if seq > 10 {
            assert!(
                agentrail_merkle::verify_inclusion(seq - 1, cp.size, &leaf, &proof, &cp.root)
                    .is_err()
            );
        }
    }
    // Without `proofs`, the checkpoint alone; a replay is covered too.
    let a = s.ingest_ndjson("acme", &w, &evs[..3]).await.json();
    assert!(a["checkpoint"].is_string());
    assert!(a["receipts"][0].get("inclusion").is_none());
    // An unknown parameter is named, not ignored.
    let a = s
        .call(
            "POST",
            "/v1/tenants/acme/events?proof=1",
            Some(&w),
            &[("content-type", "application/x-ndjson")],
            Vec::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&a.body).contains("proof"));
    // Turned off, answers carry no checkpoint.
    let off = start_with(|c| c.service.signed_receipts = false);
    off.tenant("acme").await;
    let w = off.key("acme", &["events:write"]).await;
    let a = off.ingest_ndjson("acme", &w, &evs[..2]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json().get("checkpoint").is_none());
}
