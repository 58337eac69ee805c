//! OTLP/HTTP intake in process: GenAI spans in protobuf and OTLP JSON (gzip too) land as events
//! of the key's tenant, linked and tokenized; retries and re-batching are replays; children
//! before parents resolve; each bad span is rejected by name (partial success) and a bad request
//! is refused whole with an OTLP status, nothing half-written.

use agentrail_server::ServerConfig;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};
use std::io::Write;

mod common;
use common::{Answer, TestServer};

const PROTO: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

fn s(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn i(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 3,
        start_time_unix_nano: 1_780_000_000_000_000_000 + u64::from(id) * 1_000_000,
        end_time_unix_nano: 1_780_000_000_300_000_000 + u64::from(id) * 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", "support-bot")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn event_id(trace: u8, id: u8) -> String {
    format!("otel-{}-{}", hex::encode([trace; 16]), hex::encode([id; 8]))
}

/// An agent turn: invoke_agent (1) → chat (2) asking for tool call `call_9`, the tool (3), a
/// human rejecting the call (4). The prompt mentions an email address.
fn turn(trace: u8) -> Vec<Span> {
    let input = json!([{"role": "user", "parts": [{"type": "text",
        "content": "refund order 7 to jane.roe@example.com"}]}]);
    let output = json!([{"role": "assistant", "parts": [
        {"type": "tool_call", "id": "call_9", "name": "issue_refund", "arguments": {"order": 7}}]}]);
    vec![
        span(
            trace,
            1,
            None,
            "invoke_agent support",
            vec![
                s("gen_ai.operation.name", "invoke_agent"),
                s("gen_ai.agent.name", "support"),
            ],
        ),
        span(
            trace,
            2,
            Some(1),
            "chat gpt-4o",
            vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.provider.name", "openai"),
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.response.model", "gpt-4o-2024-08-06"),
                i("gen_ai.usage.input_tokens", 50),
                s("gen_ai.input.messages", &input.to_string()),
                s("gen_ai.output.messages", &output.to_string()),
            ],
        ),
        span(
            trace,
            3,
            Some(1),
            "execute_tool issue_refund",
            vec![
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.tool.call.id", "call_9"),
                s("gen_ai.tool.call.arguments", r#"{"order":7}"#),
            ],
        ),
        span(
            trace,
            4,
            Some(1),
            "review",
            vec![
                s("agentrail.review.decision", "reject"),
                s("agentrail.review.reviewer.id", "lead-1"),
                s("agentrail.review.proposed.tool_call_id", "call_9"),
            ],
        ),
    ]
}

struct Env {
    t: TestServer,
}

impl Env {
    fn new() -> Env {
        Env {
            t: common::open(|_: &mut ServerConfig| {}, None),
        }
    }

    async fn tenant_key(&self, tenant: &str, scopes: &[&str]) -> String {
        let a = common::create_tenant(&self.t.app, &self.t.root, tenant).await;
        assert!(
            a.status == StatusCode::CREATED || a.status == StatusCode::CONFLICT,
            "{}",
            a.status
        );
        common::create_key(&self.t.app, &self.t.root, tenant, scopes).await
    }

    async fn export(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        common::send(&self.t.app, "POST", path, Some(key), headers, body).await
    }

    async fn traces(
        &self,
        key: &str,
        req: &ExportTraceServiceRequest,
    ) -> ExportTraceServiceResponse {
        let a = self
            .export("/v1/traces", key, &[PROTO], req.encode_to_vec())
            .await;
        a.expect(StatusCode::OK);
        assert_eq!(a.headers["content-type"], "application/x-protobuf");
        ExportTraceServiceResponse::decode(&a.body[..]).unwrap()
    }

    async fn get(&self, key: &str, path: &str) -> Value {
        let a = common::send(&self.t.app, "GET", path, Some(key), &[], Vec::new()).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        serde_json::from_slice(&a.body).unwrap()
    }

    fn size(&self, tenant: &str) -> u64 {
        self.t
            .state
            .service
            .ledger()
            .size(&agentrail_event::TenantId::parse(tenant).unwrap())
            .unwrap()
    }
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_contain(&p, needle));
        } else if let Ok(b) = std::fs::read(&p)
            && b.windows(needle.len()).any(|w| w == needle)
        {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_spans_become_linked_tokenized_events_of_the_keys_tenant() {
    let env = Env::new();
    let writer = env.tenant_key("acme", &["events:write"]).await;
    let reader = env.tenant_key("acme", &["events:read"]).await;
    let other = env.tenant_key("globex", &["events:write"]).await;
    let r = env.traces(&writer, &request(turn(7))).await;
    assert_eq!(r, ExportTraceServiceResponse::default());
    assert_eq!(env.size("acme"), 4);
    assert_eq!(env.size("globex"), 0);

    // The tool call's causes reach the model decision (by its call id) and the agent span.
    let tool = event_id(7, 3);
    let g = env
        .get(&reader, &format!("/v1/tenants/acme/events/{tool}/causes"))
        .await;
    let causes: Vec<(&str, Option<&str>)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["cause"].as_str().unwrap(), e["via"].as_str()))
        .collect();
    assert!(
        causes.contains(&(event_id(7, 2).as_str(), Some("tool_call_id"))),
        "{g:#}"
    );
    assert!(causes.contains(&(event_id(7, 1).as_str(), None)), "{g:#}");
    // The rejected call was executed anyway: the anomaly finds it.
    let found = env
        .get(
            &reader,
            "/v1/tenants/acme/anomalies?kind=executed_after_rejection",
        )
        .await;
    assert_eq!(found["anomalies"][0]["event_id"], tool, "{found:#}");
    // Model attribution counts by the response model.
    let m = env.get(&reader, "/v1/tenants/acme/models/gpt-4o").await;
    assert_eq!(
        m["counts_by_version"][0]["version"], "gpt-4o-2024-08-06",
        "{m:#}"
    );
    // The prompt was tokenized: no file of the data directory holds the address.
    let chat = env
        .get(
            &reader,
            &format!("/v1/tenants/acme/events/{}", event_id(7, 2)),
        )
        .await;
    let text = chat.to_string();
    assert!(
        text.contains("tok_email_") && !text.contains("jane.roe@"),
        "{text}"
    );
    assert!(files_contain(env.t.dir.path(), b"jane.roe@").is_empty());

    // The same spans from another tenant's key stay in that tenant.
    env.traces(&other, &request(turn(7))).await;
    assert_eq!((env.size("acme"), env.size("globex")), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_rebatching_are_replays_and_late_parents_resolve() {
    let env = Env::new();
    let writer = env.tenant_key("acme", &["events:write"]).await;
    let reader = env.tenant_key("acme", &["events:read"]).await;
    let spans = turn(8);
    // Children first, each in its own request; the parent comes last.
    for sp in spans[1..].iter().rev() {
        env.traces(&writer, &request(vec![sp.clone()])).await;
    }
    let tool = event_id(8, 3);
    let g = env
        .get(&reader, &format!("/v1/tenants/acme/events/{tool}/causes"))
        .await;
    assert_eq!(g["dangling"][0]["missing_cause"], event_id(8, 1), "{g:#}");
    // The whole turn, as the exporter's retry batches it: the three are replays.
    let r = env.traces(&writer, &request(spans.clone())).await;
    assert_eq!(r, ExportTraceServiceResponse::default());
    assert_eq!(env.size("acme"), 4);
    let g = env
        .get(&reader, &format!("/v1/tenants/acme/events/{tool}/causes"))
        .await;
    assert!(g["dangling"].as_array().unwrap().is_empty(), "{g:#}");
    // And once more in OTLP JSON, gzipped, under /otlp.
    let body = serde_json::to_vec(&request(spans)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let a = env
        .export(
            "/otlp/v1/traces",
            &writer,
            &[JSON, ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b"{}");
    assert_eq!(env.size("acme"), 4);
    let session = env
        .get(
            &reader,
            &format!(
                "/v1/tenants/acme/sessions/otel-trace-{}",
                hex::encode([8u8; 16])
            ),
        )
        .await;
    assert_eq!(session["total"], 4, "{session:#}");
    assert_eq!(session["chain"]["unbroken"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spans_are_rejected_by_name_and_bad_requests_whole() {
    let env = Env::new();
    let writer = env.tenant_key("acme", &["events:write"]).await;
    let reader = env.tenant_key("acme", &["events:read"]).await;
    let mut no_id = span(9, 5, None, "chat", vec![]);
    no_id.span_id = Vec::new();
    let good = span(9, 6, None, "step", vec![s("k", "v")]);
    let mut other_content = good.clone();
    other_content.attributes = vec![s("k", "changed")];
    let huge = span(9, 7, None, "blob", vec![s("blob", &"x".repeat(17 << 20))]);
    let r = env
        .traces(&writer, &request(vec![no_id, good.clone(), huge]))
        .await;
    let p = r.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 2, "{}", p.error_message);
    assert!(
        p.error_message
            .starts_with("2 of 3 rejected: span 0: span_id must be 8 bytes"),
        "{}",
        p.error_message
    );
    assert!(
        p.error_message
            .contains(&format!("span 2 ({})", event_id(9, 7))),
        "{}",
        p.error_message
    );
    assert_eq!(env.size("acme"), 1);
    // The same span id with other content: that span is refused, the rest of its request kept.
    let r = env
        .traces(
            &writer,
            &request(vec![other_content, span(9, 8, None, "next", vec![])]),
        )
        .await;
    let p = r.partial_success.unwrap();
    assert_eq!(p.rejected_spans, 1);
    assert!(
        p.error_message
            .contains("already used for different content"),
        "{}",
        p.error_message
    );
    assert_eq!(env.size("acme"), 2);

    // Whole requests refused, in the request's encoding, nothing stored.
    let status = |a: &Answer| -> (i64, String) {
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        (
            v["code"].as_i64().unwrap(),
            v["message"].as_str().unwrap().to_owned(),
        )
    };
    let a = env
        .export(
            "/v1/traces",
            &writer,
            &[JSON],
            b"{\"resourceSpans\": 7}".to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        status(&a).1.starts_with("malformed OTLP JSON"),
        "{:?}",
        status(&a)
    );
    let a = env
        .export("/v1/traces", &writer, &[PROTO], vec![0x0a, 0xff, 0xff])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.headers["content-type"], "application/x-protobuf");
    let a = env
        .export(
            "/v1/traces",
            &writer,
            &[("content-type", "text/plain")],
            b"hi".to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(status(&a).0, 3);
    // A gzip bomb: 40 MiB of zeros in a few kB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 40 << 20]).unwrap();
    let a = env
        .export(
            "/v1/traces",
            &writer,
            &[PROTO, ("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Keys: none, the reader's, the root's.
    let body = request(turn(9)).encode_to_vec();
    let a = common::send(
        &env.t.app,
        "POST",
        "/v1/traces",
        None,
        &[PROTO],
        body.clone(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    for key in [&reader, &env.t.root] {
        let a = env.export("/v1/traces", key, &[PROTO], body.clone()).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(env.size("acme"), 2);
}

/// Every kind of attribute value a span can carry lands as JSON the ledger holds exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_attribute_value_is_kept() {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    let env = Env::new();
    let writer = env.tenant_key("acme", &["events:write"]).await;
    let reader = env.tenant_key("acme", &["events:read"]).await;
    let any = |v| AnyValue { value: Some(v) };
    let kvs = vec![
        s("str", "x"),
        i("int", i64::MIN),
        KeyValue {
            key: "double".into(),
            value: Some(any(any_value::Value::DoubleValue(f64::NAN))),
            ..Default::default()
        },
        KeyValue {
            key: "bytes".into(),
            value: Some(any(any_value::Value::BytesValue(vec![0, 1]))),
            ..Default::default()
        },
        KeyValue {
            key: "array".into(),
            value: Some(any(any_value::Value::ArrayValue(ArrayValue {
                values: vec![any(any_value::Value::BoolValue(true)), AnyValue::default()],
            }))),
            ..Default::default()
        },
        KeyValue {
            key: "kvlist".into(),
            value: Some(any(any_value::Value::KvlistValue(KeyValueList {
                values: vec![i("n", 1)],
            }))),
            ..Default::default()
        },
        KeyValue {
            key: "empty".into(),
            value: None,
            ..Default::default()
        },
    ];
    env.traces(&writer, &request(vec![span(10, 1, None, "values", kvs)]))
        .await;
    let ev = env
        .get(
            &reader,
            &format!("/v1/tenants/acme/events/{}", event_id(10, 1)),
        )
        .await;
    let a = &ev["event"]["attributes"];
    assert_eq!(a["int"], "-9223372036854775808");
    assert_eq!(a["double"], "NaN");
    assert_eq!(a["bytes"], "AAE=");
    assert_eq!(a["array"], json!([true, null]));
    assert_eq!(a["kvlist"], json!({"n": 1}));
    assert_eq!(a["empty"], Value::Null);
}

/// GenAI log events (content the instrumentation sends apart from its spans) attach to the span
/// they name, with their body sealed; a retry is a replay; a bad record is rejected alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genai_log_events_attach_to_their_span() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::KeyValueList;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let env = Env::new();
    let writer = env.tenant_key("acme", &["events:write"]).await;
    let reader = env.tenant_key("acme", &["events:read"]).await;
    let choice = LogRecord {
        time_unix_nano: 1_780_000_000_400_000_000,
        event_name: "gen_ai.choice".into(),
        trace_id: vec![11; 16],
        span_id: vec![2; 8],
        attributes: vec![s("gen_ai.system", "openai")],
        body: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![s("message", "I will write to log.probe@example.com")],
            })),
        }),
        ..Default::default()
    };
    let timeless = LogRecord {
        body: choice.body.clone(),
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![choice, timeless],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let send = || env.export("/v1/logs", &writer, &[PROTO], req.encode_to_vec());
    let a = send().await;
    assert_eq!(a.status, StatusCode::OK);
    let r = ExportLogsServiceResponse::decode(&a.body[..]).unwrap();
    let p = r.partial_success.unwrap();
    assert_eq!(p.rejected_log_records, 1);
    assert!(
        p.error_message
            .contains("log record 1: time_unix_nano and observed_time_unix_nano"),
        "{}",
        p.error_message
    );
    assert_eq!(env.size("acme"), 1);
    // The retry: a replay.
    send().await;
    assert_eq!(env.size("acme"), 1);
    // The span arrives after its log event: the log is among its effects.
    env.traces(&writer, &request(vec![turn(11).remove(1)]))
        .await;
    let g = env
        .get(
            &reader,
            &format!("/v1/tenants/acme/events/{}/effects", event_id(11, 2)),
        )
        .await;
    let log = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event_type"] == "custom.otel.log")
        .unwrap_or_else(|| panic!("{g:#}"));
    assert_eq!(log["payload"]["event_name"], "gen_ai.choice");
    let text = log.to_string();
    assert!(
        text.contains("tok_email_") && !text.contains("log.probe@"),
        "{text}"
    );
    assert!(files_contain(env.t.dir.path(), b"log.probe@").is_empty());
}
