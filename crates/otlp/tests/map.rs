//! GenAI spans, as the conventions and the instrumentations put them on the wire, mapped to
//! events the one ingest operation accepts (each is checked by the v1 validator).

use agentrail_otlp::{Encoding, ExportTraceServiceRequest, decode_traces, map_traces};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;
use serde_json::{Value, json};

const TRACE: [u8; 16] = [0x5b; 16];

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn span(id: u8, parent: Option<u8>, name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 3,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id) * 1_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000 + u64::from(id) * 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "support-bot"),
                    s("service.version", "1.4"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.openai_v2".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn id(n: u8) -> String {
    format!("otel-{}-{}", hex::encode(TRACE), hex::encode([n; 8]))
}

/// Maps and checks each event with the v1 validator; returns them.
fn events(req: &ExportTraceServiceRequest) -> Vec<Value> {
    map_traces(req.clone())
        .into_iter()
        .map(|m| {
            let ev = m.event.unwrap();
            agentrail_event::validate_value(ev.clone()).unwrap_or_else(|e| panic!("{e:?}: {ev:#}"));
            ev
        })
        .collect()
}

fn conversation() -> ExportTraceServiceRequest {
    let input = json!([{"role": "user", "parts": [{"type": "text",
        "content": "refund order 7, mail jane@example.com"}]}]);
    let output = json!([{"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "tool_call", "id": "call_1", "name": "issue_refund",
         "arguments": {"order": 7}}]}]);
    request(vec![
        // Children are often exported before their parents.
        span(
            3,
            Some(1),
            "execute_tool issue_refund",
            vec![
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.tool.name", "issue_refund"),
                s("gen_ai.tool.call.id", "call_1"),
                s("gen_ai.tool.call.arguments", r#"{"order":7}"#),
                s("gen_ai.tool.call.result", "refunded"),
                s("gen_ai.conversation.id", "conv-9"),
            ],
        ),
        span(
            2,
            Some(1),
            "chat gpt-4o",
            vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.provider.name", "openai"),
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.response.model", "gpt-4o-2024-08-06"),
                i("gen_ai.usage.input_tokens", 120),
                i("gen_ai.usage.output_tokens", 30),
                s("gen_ai.input.messages", &input.to_string()),
                kv(
                    "gen_ai.output.messages",
                    any_value::Value::StringValue(output.to_string()),
                ),
                kv(
                    "gen_ai.response.finish_reasons",
                    any_value::Value::ArrayValue(
                        opentelemetry_proto::tonic::common::v1::ArrayValue {
                            values: vec![AnyValue {
                                value: Some(any_value::Value::StringValue("tool_calls".into())),
                            }],
                        },
                    ),
                ),
                s("gen_ai.conversation.id", "conv-9"),
                s("enduser.id", "jane"),
                s("server.address", "api.openai.com"),
            ],
        ),
        span(
            1,
            None,
            "invoke_agent support",
            vec![
                s("gen_ai.operation.name", "invoke_agent"),
                s("gen_ai.agent.name", "support"),
                s("gen_ai.conversation.id", "conv-9"),
            ],
        ),
        span(
            4,
            Some(1),
            "review refund",
            vec![
                s("agentrail.review.decision", "approve"),
                s("agentrail.review.reviewer.id", "lead-3"),
                s("agentrail.review.reviewer.role", "support-lead"),
                s("agentrail.review.proposed.tool_call_id", "call_1"),
                s("agentrail.review.rationale", "within policy"),
                s("gen_ai.conversation.id", "conv-9"),
            ],
        ),
    ])
}

#[test]
fn a_conversation_becomes_linked_events() {
    let ev = events(&conversation());
    let types: Vec<&str> = ev
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "tool.invocation",
            "model.decision",
            "agent.spawned",
            "human.review"
        ]
    );
    for e in &ev {
        assert_eq!(e["session_id"], "conv-9");
        assert_eq!(e["source"]["system"], "support-bot");
        assert_eq!(e["trace"]["trace_id"], hex::encode(TRACE));
    }
    let (tool, chat, agent, review) = (&ev[0], &ev[1], &ev[2], &ev[3]);
    assert_eq!(chat["event_id"], id(2));
    // The parent span; the decision that made the call is linked by its id in the index.
    assert_eq!(tool["caused_by"], json!([id(1)]));
    assert_eq!(tool["payload"]["call_id"], "call_1");
    assert_eq!(chat["caused_by"], json!([id(1)]));
    assert!(agent.get("caused_by").is_none());
    assert_eq!(
        chat["payload"]["model"],
        json!({"provider": "openai", "name": "gpt-4o", "version": "gpt-4o-2024-08-06"})
    );
    assert_eq!(
        chat["payload"]["usage"],
        json!({"input_tokens": 120, "output_tokens": 30})
    );
    assert_eq!(chat["payload"]["latency_ms"], json!(250.0));
    assert_eq!(
        chat["payload"]["decision"],
        json!({"kind": "tool_call", "tool_name": "issue_refund", "tool_call_ids": ["call_1"]})
    );
    assert_eq!(chat["payload"]["output"]["finish_reason"], "tool_calls");
    assert_eq!(
        chat["payload"]["prompt"]["messages"][0]["parts"][0]["content"],
        "refund order 7, mail jane@example.com"
    );
    assert_eq!(chat["subject_id"], "jane");
    // Unmapped attributes are kept; content never is among them.
    let attrs = chat["attributes"].as_object().unwrap();
    assert_eq!(attrs["server.address"], "api.openai.com");
    assert_eq!(attrs["otel.span.kind"], "SPAN_KIND_CLIENT");
    assert!(!serde_json::to_string(attrs).unwrap().contains("jane@"));
    assert_eq!(tool["payload"]["tool"]["name"], "issue_refund");
    assert_eq!(tool["payload"]["input"], json!({"order": 7}));
    assert_eq!(tool["payload"]["output"], "refunded");
    assert_eq!(tool["payload"]["status"]["outcome"], "ok");
    assert_eq!(agent["payload"]["child_agent_id"], "support");
    assert_eq!(review["payload"]["decision"], "approve");
    assert_eq!(review["payload"]["reviewer"]["role"], "support-lead");
    assert_eq!(
        review["payload"]["proposed_action"],
        json!({"tool_call_id": "call_1"})
    );
    assert_eq!(review["payload"]["rationale"], "within policy");
    assert_eq!(
        review["payload"]["presented_at"],
        "2023-11-14T22:13:20.004000000Z"
    );
    assert_eq!(
        review["payload"]["decided_at"],
        "2023-11-14T22:13:20.254000000Z"
    );
}

#[test]
fn protobuf_and_json_give_the_same_events() {
    let req = conversation();
    let from_proto = decode_traces(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
    let json_body = serde_json::to_vec(&req).unwrap();
    let from_json = decode_traces(&json_body, Encoding::Json).unwrap();
    assert_eq!(from_proto, req);
    assert_eq!(from_json, req);
    assert_eq!(events(&from_json), events(&req));
}

#[test]
fn deprecated_and_openinference_names_are_read() {
    let legacy = span(
        5,
        None,
        "chat gpt-3.5-turbo",
        vec![
            s("gen_ai.system", "openai"),
            s("gen_ai.request.model", "gpt-3.5-turbo"),
            i("gen_ai.usage.prompt_tokens", 11),
            i("gen_ai.usage.completion_tokens", 5),
            s("gen_ai.prompt.0.role", "user"),
            s("gen_ai.prompt.0.content", "hello"),
            s("gen_ai.prompt.1.role", "assistant"),
            s("gen_ai.prompt.1.content", "hi"),
            s("gen_ai.completion.0.content", "how can I help?"),
        ],
    );
    let oi = span(
        6,
        None,
        "ChatCompletion",
        vec![
            s("openinference.span.kind", "LLM"),
            s("llm.model_name", "claude-sonnet"),
            s("llm.provider", "anthropic"),
            i("llm.token_count.prompt", 7),
            s("llm.input_messages.0.message.role", "user"),
            s("llm.input_messages.0.message.content", "ping"),
            s("llm.output_messages.0.message.role", "assistant"),
            s("llm.output_messages.0.message.content", "pong"),
            s("session.id", "s-42"),
            s("input.value", "ping"),
        ],
    );
    let ev = events(&request(vec![legacy, oi]));
    assert_eq!(ev[0]["event_type"], "model.decision");
    assert_eq!(ev[0]["payload"]["model"]["provider"], "openai");
    assert_eq!(
        ev[0]["payload"]["usage"],
        json!({"input_tokens": 11, "output_tokens": 5})
    );
    assert_eq!(
        ev[0]["payload"]["prompt"]["messages"],
        json!([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}])
    );
    assert_eq!(
        ev[0]["payload"]["output"]["raw"],
        json!([{"content": "how can I help?"}])
    );
    // No conversation id: the trace is the session.
    assert_eq!(
        ev[0]["session_id"],
        format!("otel-trace-{}", hex::encode(TRACE))
    );
    assert_eq!(ev[1]["event_type"], "model.decision");
    assert_eq!(ev[1]["session_id"], "s-42");
    assert_eq!(
        ev[1]["payload"]["model"],
        json!({"provider": "anthropic", "name": "claude-sonnet"})
    );
    assert_eq!(
        ev[1]["payload"]["prompt"]["messages"],
        json!([{"role": "user", "content": "ping"}])
    );
    // input.value has no field of its own on a decision: it is content, kept with the payload.
    assert_eq!(ev[1]["payload"]["content"], json!({"input.value": "ping"}));
    assert!(ev[1]["attributes"].get("input.value").is_none());
}

#[test]
fn other_spans_are_kept_and_bad_spans_are_named() {
    let mut http = span(
        7,
        None,
        "GET /orders",
        vec![s("http.request.method", "GET")],
    );
    http.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "502".into(),
    });
    let mut no_ids = span(8, None, "chat", vec![]);
    no_ids.span_id = vec![0; 8];
    let review = span(
        9,
        None,
        "review",
        vec![s("agentrail.review.decision", "reject")],
    );
    let mapped = map_traces(request(vec![http, no_ids, review]));
    let ev = mapped[0].event.as_ref().unwrap();
    assert_eq!(ev["event_type"], "custom.otel.span");
    assert_eq!(ev["payload"]["name"], "GET /orders");
    assert_eq!(ev["attributes"]["http.request.method"], "GET");
    assert_eq!(ev["attributes"]["otel.status.code"], "STATUS_CODE_ERROR");
    assert_eq!(ev["attributes"]["otel.status.message"], "502");
    // Resource attributes `source` holds are not repeated; the others are kept.
    assert_eq!(ev["source"]["version"], "1.4");
    assert!(ev["attributes"].get("otel.resource").is_none());
    agentrail_event::validate_value(ev.clone()).unwrap();
    assert_eq!(mapped[1].event_id, None);
    assert_eq!(
        mapped[1].event,
        Err("span_id must be 8 bytes, not all zero".into())
    );
    assert_eq!(
        mapped[2].event,
        Err("agentrail.review.reviewer.id is required on a review".into())
    );
}

/// A span's event does not depend on the request it came in: a re-send batched differently is
/// the same event, which the ledger answers as a replay.
#[test]
fn each_span_maps_the_same_alone_or_in_a_batch() {
    let req = conversation();
    let together = events(&req);
    let spans = req.resource_spans[0].scope_spans[0].spans.clone();
    let alone: Vec<Value> = spans
        .into_iter()
        .flat_map(|sp| events(&request(vec![sp])))
        .collect();
    assert_eq!(alone, together);
}

#[test]
fn openllmetry_and_vercel_spans_are_read() {
    let traceloop_chat = span(
        10,
        None,
        "openai.chat",
        vec![
            s("llm.request.type", "chat"),
            s("gen_ai.system", "OpenAI"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            s("gen_ai.prompt.0.role", "user"),
            s("gen_ai.prompt.0.content", "weather in Paris?"),
            s("gen_ai.completion.0.finish_reason", "tool_calls"),
            s("gen_ai.completion.0.tool_calls.0.id", "call_w"),
            s("gen_ai.completion.0.tool_calls.0.name", "get_weather"),
            s(
                "gen_ai.completion.0.tool_calls.0.arguments",
                r#"{"city":"Paris"}"#,
            ),
        ],
    );
    let traceloop_tool = span(
        11,
        Some(10),
        "get_weather.tool",
        vec![
            s("traceloop.span.kind", "tool"),
            s("traceloop.entity.name", "get_weather"),
            s("traceloop.entity.input", r#"{"args":["Paris"]}"#),
            s("traceloop.entity.output", "sunny"),
        ],
    );
    let vercel_model = span(
        12,
        None,
        "ai.generateText.doGenerate",
        vec![
            s("ai.model.id", "claude-3-5-haiku"),
            s("ai.model.provider", "anthropic.messages"),
            i("ai.usage.promptTokens", 40),
            i("ai.usage.completionTokens", 9),
            s(
                "ai.prompt.messages",
                r#"[{"role":"user","content":"look up order 7"}]"#,
            ),
            s(
                "ai.response.toolCalls",
                r#"[{"toolCallType":"function","toolCallId":"tc_1","toolName":"lookup","args":"{}"}]"#,
            ),
            s("ai.response.finishReason", "tool-calls"),
        ],
    );
    let vercel_tool = span(
        13,
        Some(12),
        "ai.toolCall",
        vec![
            s("ai.toolCall.name", "lookup"),
            s("ai.toolCall.id", "tc_1"),
            s("ai.toolCall.args", r#"{"order":7}"#),
            s("ai.toolCall.result", r#"{"status":"shipped"}"#),
        ],
    );
    let ev = events(&request(vec![
        traceloop_chat,
        traceloop_tool,
        vercel_model,
        vercel_tool,
    ]));
    assert_eq!(ev[0]["event_type"], "model.decision");
    assert_eq!(
        ev[0]["payload"]["decision"],
        json!({"kind": "tool_call", "tool_name": "get_weather", "tool_call_ids": ["call_w"]})
    );
    assert_eq!(ev[1]["event_type"], "tool.invocation");
    assert_eq!(ev[1]["payload"]["tool"]["name"], "get_weather");
    assert_eq!(ev[1]["payload"]["input"], json!({"args": ["Paris"]}));
    assert_eq!(ev[1]["payload"]["output"], "sunny");
    assert_eq!(ev[2]["event_type"], "model.decision");
    assert_eq!(
        ev[2]["payload"]["model"],
        json!({"provider": "anthropic.messages", "name": "claude-3-5-haiku"})
    );
    assert_eq!(
        ev[2]["payload"]["usage"],
        json!({"input_tokens": 40, "output_tokens": 9})
    );
    assert_eq!(
        ev[2]["payload"]["decision"],
        json!({"kind": "tool_call", "tool_name": "lookup", "tool_call_ids": ["tc_1"]})
    );
    assert_eq!(
        ev[2]["payload"]["prompt"]["messages"][0]["content"],
        "look up order 7"
    );
    assert_eq!(ev[3]["event_type"], "tool.invocation");
    assert_eq!(ev[3]["payload"]["call_id"], "tc_1");
    assert_eq!(ev[3]["payload"]["output"], json!({"status": "shipped"}));
    for e in &ev {
        let attrs = serde_json::to_string(&e["attributes"]).unwrap();
        for secret in ["Paris", "order 7", "shipped", "sunny"] {
            assert!(!attrs.contains(secret), "{secret} in attributes: {attrs}");
        }
    }
}

/// What no field holds is still kept: span events (content events, exceptions) sealed with
/// the payload's content, everything else in `attributes`, agentrail's own `otel.*` keys beside
/// a span's attribute of the same name; values the ledger could not hold exactly become strings.
#[test]
fn nothing_of_a_span_is_dropped() {
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    let mut sp = span(
        20,
        None,
        "chain",
        vec![
            s("otel.span.name", "user-set"),
            i("big", i64::MAX),
            kv("raw", any_value::Value::BytesValue(vec![1, 2, 3])),
            s("input.value", "my card 4111 1111 1111 1111"),
        ],
    );
    sp.events = vec![Event {
        time_unix_nano: 1_700_000_000_100_000_000,
        name: "exception".into(),
        attributes: vec![s("exception.message", "no user jane@example.com")],
        dropped_attributes_count: 0,
    }];
    sp.links = vec![Link {
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        trace_state: "k=v".into(),
        attributes: vec![s("why", "retry")],
        ..Default::default()
    }];
    sp.trace_state = "vendor=1".into();
    sp.dropped_attributes_count = 3;
    let ev = events(&request(vec![sp])).remove(0);
    let attrs = &ev["attributes"];
    assert_eq!(attrs["otel.span.name"], "chain");
    assert_eq!(attrs["otel.span.name#attribute"], "user-set");
    assert_eq!(attrs["big"], "9223372036854775807");
    assert_eq!(attrs["raw"], "AQID");
    assert_eq!(attrs["otel.trace_state"], "vendor=1");
    assert_eq!(attrs["otel.dropped_attributes_count"], 3);
    assert_eq!(attrs["otel.links"][0]["attributes"]["why"], "retry");
    assert_eq!(attrs["otel.links"][0]["trace_state"], "k=v");
    let content = &ev["payload"]["content"];
    assert_eq!(content["input.value"], "my card 4111 1111 1111 1111");
    assert_eq!(
        content["otel.events"][0]["attributes"]["exception.message"],
        "no user jane@example.com"
    );
    let text = serde_json::to_string(attrs).unwrap();
    assert!(!text.contains("jane@") && !text.contains("4111"), "{text}");
}

#[test]
fn reviews_are_normalized_or_refused_by_name() {
    let review = |decision: &str| {
        span(
            30,
            None,
            "review",
            vec![
                s("agentrail.review.decision", decision),
                s("agentrail.review.reviewer.id", "ann"),
                i("agentrail.review.presented_at", 1_700_000_000_000_000_000),
            ],
        )
    };
    let ev = events(&request(vec![review("Approved")])).remove(0);
    assert_eq!(ev["payload"]["decision"], "approve");
    assert_eq!(
        ev["payload"]["presented_at"],
        "2023-11-14T22:13:20.000000000Z"
    );
    let bad = map_traces(request(vec![review("maybe")])).remove(0);
    assert_eq!(
        bad.event,
        Err(
            "agentrail.review.decision must be approve, reject, modify or escalate, not \"maybe\""
                .into()
        )
    );
    let mut timeless = span(31, None, "x", vec![]);
    timeless.start_time_unix_nano = 0;
    timeless.end_time_unix_nano = 0;
    assert_eq!(
        map_traces(request(vec![timeless])).remove(0).event,
        Err("start_time_unix_nano and end_time_unix_nano are both missing".into())
    );
}
