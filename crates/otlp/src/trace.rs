//! Spans to v1 events (DESIGN.md §9.1). One span is one event, `event_id` =
//! `otel-<trace_id>-<span_id>` (an exporter's retry is a replay); its kind comes from
//! `gen_ai.operation.name`, else `openinference.span.kind`, OpenLLMetry's `llm.request.type` /
//! `traceloop.span.kind`, or the Vercel AI SDK's span names; what agentrail does not map is kept
//! in `attributes`, so nothing is dropped.
//!
//! Message content goes to `prompt` and `output` of a model decision, `input` and `output` of a
//! tool invocation and `rationale` of a review, and what has no such field (with the span's
//! events) to `payload.content`: all fields the ingest operation tokenizes and seals. The
//! content keys it knows never land in `attributes`.
//!
//! Each span maps on its own. The tool call ids a decision asked for
//! (`decision.tool_call_ids`), an invocation's `call_id` and a review's proposed
//! `tool_call_id` are kept in clear, and the index links them, whichever span arrives first.

use crate::value::attributes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One span of a request, in request order: its event, or why it cannot be one (the span is
/// rejected; the others go on).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedSpan {
    /// `otel-<trace_id>-<span_id>`, when the span has valid ids.
    pub event_id: Option<String>,
    pub event: Result<Value, String>,
}

/// What kind of event a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Model,
    Tool,
    Agent,
    Retrieval,
    Review,
    Other,
}

impl Kind {
    fn event_type(self) -> &'static str {
        match self {
            Kind::Model => "model.decision",
            Kind::Tool => "tool.invocation",
            Kind::Agent => "agent.spawned",
            Kind::Retrieval => "data.access",
            Kind::Review => "human.review",
            Kind::Other => "custom.otel.span",
        }
    }
}

/// Attribute keys (exact) and key prefixes that carry message or tool content.
const CONTENT_KEYS: &[&str] = &[
    // GenAI conventions, current and deprecated.
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.definitions",
    "gen_ai.prompt",
    "gen_ai.completion",
    // OpenInference.
    "input.value",
    "output.value",
    "llm.prompts",
    "llm.prompt_template.template",
    "llm.prompt_template.variables",
    "tool_call.function.arguments",
    "reranker.query",
    // OpenLLMetry (Traceloop).
    "traceloop.entity.input",
    "traceloop.entity.output",
    // Vercel AI SDK.
    "ai.prompt",
    "ai.prompt.messages",
    "ai.prompt.tools",
    "ai.response.text",
    "ai.response.toolCalls",
    "ai.response.object",
    "ai.response.reasoning",
    "ai.toolCall.args",
    "ai.toolCall.result",
    "ai.value",
    "ai.values",
    // Pydantic AI / Logfire.
    "all_messages_events",
    "final_result",
    "agentrail.review.rationale",
];
const CONTENT_PREFIXES: &[&str] = &[
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.tools.",
    "retrieval.documents.",
    "embedding.embeddings.",
    "reranker.input_documents.",
    "reranker.output_documents.",
];

fn is_content(key: &str) -> bool {
    CONTENT_KEYS.contains(&key) || CONTENT_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// A JSON object or array sent as a string, as its structure; anything else as it came (a
/// plain string that happens to parse, `"42"` or `"true"`, stays a string).
fn structure(v: Value) -> Value {
    match v {
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        other => other,
    }
}

/// A span's attributes, each read at most once: what is left over goes to `attributes`.
pub(crate) struct Attrs(pub(crate) Map<String, Value>);

impl Attrs {
    /// The first of `keys` holding a non-empty string (taken).
    pub(crate) fn string(&mut self, keys: &[&str]) -> Option<String> {
        for k in keys {
            if matches!(self.0.get(*k), Some(Value::String(s)) if !s.is_empty())
                && let Some(Value::String(s)) = self.0.remove(*k)
            {
                return Some(s);
            }
        }
        None
    }

    /// The first of `keys` holding a non-negative integer (or its decimal string), taken.
    fn count(&mut self, keys: &[&str]) -> Option<u64> {
        for k in keys {
            let n = match self.0.get(*k) {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            };
            if n.is_some() {
                self.0.remove(*k);
                return n;
            }
        }
        None
    }

    /// A value that may arrive structured or as a JSON string (GenAI message attributes on
    /// spans do both): the structure, taken.
    pub(crate) fn structured(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).map(structure)
    }

    /// Flattened, zero-indexed attributes `<prefix><N>.<rest>` (legacy `gen_ai.prompt.0.role`,
    /// OpenInference `llm.input_messages.0.message.role`) as one object per index, in index
    /// order, with `strip` removed from the front of each rest; taken.
    fn indexed(&mut self, prefix: &str, strip: &str) -> Vec<Value> {
        let keys: Vec<String> = self
            .0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut by_index: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
        for k in keys {
            let rest = &k[prefix.len()..];
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            let field = field.strip_prefix(strip).unwrap_or(field).to_owned();
            if let Some(v) = self.0.remove(&k) {
                by_index.entry(n).or_default().insert(field, v);
            }
        }
        by_index.into_values().map(Value::Object).collect()
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The content-bearing attributes left (taken).
    pub(crate) fn content(&mut self) -> Map<String, Value> {
        let keys: Vec<String> = self.0.keys().filter(|k| is_content(k)).cloned().collect();
        keys.into_iter()
            .filter_map(|k| self.0.remove(&k).map(|v| (k, v)))
            .collect()
    }
}

/// Maps every span of a request, in request order. Each span maps on its own: its event does
/// not depend on which other spans share the request, so an exporter's re-send, batched
/// differently, is the same event (a replay). Links through tool call ids are the index's.
/// The request is consumed: its strings move into the events.
pub fn map_traces(req: ExportTraceServiceRequest) -> Vec<MappedSpan> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                out.push(match ids(&span) {
                    Ok((trace, id, parent)) => {
                        let event_id = format!("otel-{trace}-{id}");
                        let event =
                            span_event(&resource, &scope, span, &event_id, &trace, &id, parent);
                        MappedSpan {
                            event_id: Some(event_id),
                            event,
                        }
                    }
                    Err(reason) => MappedSpan {
                        event_id: None,
                        event: Err(reason),
                    },
                });
            }
        }
    }
    out
}

/// The span's trace id, span id and parent span id (hex), or why they are unusable.
fn ids(span: &Span) -> Result<(String, String, Option<String>), String> {
    let valid = |b: &[u8], len: usize| b.len() == len && b.iter().any(|&x| x != 0);
    if !valid(&span.trace_id, 16) {
        return Err("trace_id must be 16 bytes, not all zero".into());
    }
    if !valid(&span.span_id, 8) {
        return Err("span_id must be 8 bytes, not all zero".into());
    }
    let parent = if span.parent_span_id.is_empty() {
        None
    } else if span.parent_span_id == span.span_id {
        return Err("parent_span_id is the span's own id".into());
    } else if valid(&span.parent_span_id, 8) {
        Some(hex::encode(&span.parent_span_id))
    } else {
        return Err("parent_span_id must be empty or 8 bytes, not all zero".into());
    };
    Ok((
        hex::encode(&span.trace_id),
        hex::encode(&span.span_id),
        parent,
    ))
}

/// RFC 3339 (UTC, nanoseconds) of a time in Unix nanoseconds.
pub(crate) fn timestamp(ns: u64) -> Option<String> {
    let t = jiff::Timestamp::from_nanosecond(i128::from(ns)).ok()?;
    Some(format!("{t:.9}"))
}

fn kind(a: &Attrs, span: &Span) -> Kind {
    if a.has("agentrail.review.decision") {
        return Kind::Review;
    }
    let attr = |k: &str| a.0.get(k).and_then(Value::as_str);
    match attr("gen_ai.operation.name") {
        Some("chat" | "generate_content" | "text_completion" | "completion") => {
            return Kind::Model;
        }
        Some("execute_tool") => return Kind::Tool,
        Some("invoke_agent" | "create_agent") => return Kind::Agent,
        Some("embeddings" | "retrieval") => return Kind::Retrieval,
        _ => {}
    }
    match attr("openinference.span.kind") {
        Some("LLM") => return Kind::Model,
        Some("TOOL") => return Kind::Tool,
        Some("AGENT") => return Kind::Agent,
        Some("RETRIEVER" | "EMBEDDING" | "RERANKER") => return Kind::Retrieval,
        _ => {}
    }
    // OpenLLMetry: model calls carry `llm.request.type`, framework spans `traceloop.span.kind`.
    match attr("llm.request.type") {
        Some("chat" | "completion") => return Kind::Model,
        Some("embedding" | "rerank") => return Kind::Retrieval,
        _ => {}
    }
    match attr("traceloop.span.kind") {
        Some("tool") => return Kind::Tool,
        Some("agent") => return Kind::Agent,
        _ => {}
    }
    // The Vercel AI SDK names its spans: the provider call inside `ai.generateText` is
    // `ai.generateText.doGenerate`; tool executions are `ai.toolCall`.
    match span.name.as_str() {
        "ai.generateText.doGenerate"
        | "ai.streamText.doStream"
        | "ai.generateObject.doGenerate"
        | "ai.streamObject.doStream" => return Kind::Model,
        "ai.toolCall" => return Kind::Tool,
        "ai.embed.doEmbed" | "ai.embedMany.doEmbed" => return Kind::Retrieval,
        _ => {}
    }
    // A span named by the conventions' pattern (`chat gpt-4o`, `execute_tool get_weather`)
    // whose operation attribute is missing.
    match span.name.split_whitespace().next() {
        Some("chat" | "text_completion" | "generate_content") if a.has("gen_ai.request.model") => {
            Kind::Model
        }
        Some("execute_tool") => Kind::Tool,
        _ => Kind::Other,
    }
}

/// `source` fields from resource attributes (a resource attribute mapped here is not repeated
/// in `attributes["otel.resource"]`).
const SOURCE_KEYS: [(&str, &str); 3] = [
    ("system", "service.name"),
    ("version", "service.version"),
    ("host", "host.name"),
];

/// An event's `source` from its resource (`service.*`, `host.name`) and instrumentation scope.
pub(crate) fn source_of(resource: &Map<String, Value>, scope: &str) -> Option<Value> {
    let mut source = Map::new();
    for (field, key) in SOURCE_KEYS {
        if let Some(Value::String(s)) = resource.get(key)
            && !s.is_empty()
        {
            source.insert(field.into(), json!(s));
        }
    }
    if !scope.is_empty() {
        source.insert("component".into(), json!(scope));
    }
    (!source.is_empty()).then_some(Value::Object(source))
}

/// The resource's attributes `source` does not already hold, as `otel.resource`.
pub(crate) fn put_resource(rest: &mut Map<String, Value>, resource: &Map<String, Value>) {
    let unmapped: Map<String, Value> = resource
        .iter()
        .filter(|(k, v)| {
            !(SOURCE_KEYS.iter().any(|(_, key)| key == k)
                && v.as_str().is_some_and(|s| !s.is_empty()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !unmapped.is_empty() {
        put_reserved(rest, "otel.resource", Value::Object(unmapped));
    }
}

/// Puts what agentrail synthesizes (`otel.*`) into `attributes`; a span attribute of the same
/// name is kept beside it as `<key>#attribute`, so neither is lost.
pub(crate) fn put_reserved(rest: &mut Map<String, Value>, key: &str, v: Value) {
    if let Some(theirs) = rest.insert(key.to_owned(), v) {
        rest.insert(format!("{key}#attribute"), theirs);
    }
}

#[allow(clippy::too_many_arguments)]
fn span_event(
    resource: &Map<String, Value>,
    scope: &str,
    mut span: Span,
    event_id: &str,
    trace_id: &str,
    span_id: &str,
    parent: Option<String>,
) -> Result<Value, String> {
    let start = if span.start_time_unix_nano > 0 {
        span.start_time_unix_nano
    } else {
        span.end_time_unix_nano
    };
    if start == 0 {
        return Err("start_time_unix_nano and end_time_unix_nano are both missing".into());
    }
    let occurred_at = timestamp(start).ok_or("start_time_unix_nano is out of range")?;
    let duration_ms = (span.end_time_unix_nano >= start && span.start_time_unix_nano > 0)
        .then(|| (span.end_time_unix_nano - start) as f64 / 1e6);

    let mut a = Attrs(attributes(std::mem::take(&mut span.attributes)));
    let kind = kind(&a, &span);
    let mut ev = Map::new();
    ev.insert("schema_version".into(), json!("1"));
    ev.insert("event_id".into(), json!(event_id));
    ev.insert("event_type".into(), json!(kind.event_type()));
    ev.insert("occurred_at".into(), json!(occurred_at));
    let mut trace = Map::new();
    trace.insert("trace_id".into(), json!(trace_id));
    trace.insert("span_id".into(), json!(span_id));
    if let Some(p) = &parent {
        trace.insert("parent_span_id".into(), json!(p));
        ev.insert("caused_by".into(), json!([format!("otel-{trace_id}-{p}")]));
    }
    ev.insert("trace".into(), Value::Object(trace));
    // A session is the conversation; without one, the trace.
    let session = a
        .string(&[
            "gen_ai.conversation.id",
            "session.id",
            "ai.telemetry.metadata.sessionId",
        ])
        .unwrap_or_else(|| format!("otel-trace-{trace_id}"));
    ev.insert("session_id".into(), json!(session));
    let service = resource
        .get("service.name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let named = a.string(&["gen_ai.agent.id", "gen_ai.agent.name", "agent.name"]);
    // An agent span names the agent it invokes; the event's agent is the one that invoked it.
    let (agent, child) = match kind {
        Kind::Agent => (service.map(str::to_owned), named),
        _ => (named.or_else(|| service.map(str::to_owned)), None),
    };
    if let Some(agent) = agent {
        ev.insert("agent_id".into(), json!(agent));
    }
    if let Some(subject) = a.string(&["enduser.id", "user.id"]) {
        ev.insert("subject_id".into(), json!(subject));
    }
    if let Some(source) = source_of(resource, scope) {
        ev.insert("source".into(), source);
    }

    let failed = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
        || a.has("error.type");
    let mut payload = match kind {
        Kind::Model => model_payload(&mut a, duration_ms),
        Kind::Tool => tool_payload(&mut a, &span, failed, duration_ms),
        Kind::Review => review_payload(&mut a, &occurred_at, span.end_time_unix_nano)?,
        Kind::Agent => {
            let mut p = Map::new();
            p.insert(
                "child_agent_id".into(),
                json!(child.unwrap_or_else(|| span.name.clone())),
            );
            p.insert("child_session_id".into(), json!(session));
            p
        }
        Kind::Retrieval => {
            let mut p = Map::new();
            let resource = a
                .string(&[
                    "gen_ai.data_source.id",
                    "gen_ai.request.model",
                    "llm.model_name",
                    "embedding.model_name",
                    "ai.model.id",
                ])
                .unwrap_or_else(|| span.name.clone());
            p.insert("resource".into(), json!(resource));
            p.insert("operation".into(), json!("read"));
            p
        }
        Kind::Other => {
            let mut p = Map::new();
            p.insert("name".into(), json!(span.name));
            p
        }
    };
    // Content this kind has no field for, and the span's events (GenAI content events,
    // exception messages and stack traces), go where the ingest operation seals them.
    let mut content = a.content();
    if !span.events.is_empty() {
        let events: Vec<Value> = std::mem::take(&mut span.events)
            .into_iter()
            .map(|e| {
                let mut o = Map::new();
                o.insert("name".into(), json!(e.name));
                o.insert("time".into(), json!(timestamp(e.time_unix_nano)));
                o.insert("attributes".into(), Value::Object(attributes(e.attributes)));
                if e.dropped_attributes_count > 0 {
                    o.insert(
                        "dropped_attributes_count".into(),
                        json!(e.dropped_attributes_count),
                    );
                }
                Value::Object(o)
            })
            .collect();
        content.insert("otel.events".into(), Value::Array(events));
    }
    if !content.is_empty() {
        payload.insert("content".into(), Value::Object(content));
    }
    ev.insert("payload".into(), Value::Object(payload));

    // Everything else, so nothing is dropped.
    let mut rest = a.0;
    put_reserved(&mut rest, "otel.span.name", json!(span.name));
    let span_kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    put_reserved(&mut rest, "otel.span.kind", json!(span_kind.as_str_name()));
    if let Some(s) = &span.status
        && s.code != StatusCode::Unset as i32
    {
        let code = StatusCode::try_from(s.code).map_or("UNKNOWN", |c| c.as_str_name());
        put_reserved(&mut rest, "otel.status.code", json!(code));
        if !s.message.is_empty() {
            put_reserved(&mut rest, "otel.status.message", json!(s.message));
        }
    }
    if !span.trace_state.is_empty() {
        put_reserved(&mut rest, "otel.trace_state", json!(span.trace_state));
    }
    if !span.links.is_empty() {
        let links: Vec<Value> = std::mem::take(&mut span.links)
            .into_iter()
            .map(|l| {
                let mut o = Map::new();
                o.insert("trace_id".into(), json!(hex::encode(&l.trace_id)));
                o.insert("span_id".into(), json!(hex::encode(&l.span_id)));
                if !l.trace_state.is_empty() {
                    o.insert("trace_state".into(), json!(l.trace_state));
                }
                if !l.attributes.is_empty() {
                    o.insert("attributes".into(), Value::Object(attributes(l.attributes)));
                }
                Value::Object(o)
            })
            .collect();
        put_reserved(&mut rest, "otel.links", Value::Array(links));
    }
    for (key, n) in [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ] {
        if n > 0 {
            put_reserved(&mut rest, key, json!(n));
        }
    }
    put_resource(&mut rest, resource);
    ev.insert("attributes".into(), Value::Object(rest));
    Ok(Value::Object(ev))
}

/// Messages from the first of these sources that has any: a JSON (string) attribute, else
/// flattened indexed attributes `<prefix>N.<field>` with `strip` taken off each field.
fn messages(a: &mut Attrs, json_keys: &[&str], indexed: &[(&str, &str)]) -> Option<Value> {
    for k in json_keys {
        if let Some(v) = a.structured(k) {
            return Some(v);
        }
    }
    for (prefix, strip) in indexed {
        let m = a.indexed(prefix, strip);
        if !m.is_empty() {
            return Some(Value::Array(m));
        }
    }
    None
}

fn model_payload(a: &mut Attrs, duration_ms: Option<f64>) -> Map<String, Value> {
    let mut p = Map::new();
    // OpenInference names the model that answered (`llm.model_name`); the one asked for is in
    // the invocation parameters (a JSON string, left in `attributes` as it came).
    let invoked =
        a.0.get("llm.invocation_parameters")
            .and_then(Value::as_str)
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .and_then(|p| p.get("model").and_then(Value::as_str).map(str::to_owned))
            .filter(|m| !m.is_empty());
    let request = a
        .string(&[
            "gen_ai.request.model",
            "llm.request.model_name",
            "ai.model.id",
        ])
        .or(invoked);
    let response = a.string(&[
        "gen_ai.response.model",
        "llm.response.model_name",
        "ai.response.model",
        "llm.model_name",
    ]);
    let name = request
        .clone()
        .or_else(|| response.clone())
        .unwrap_or_else(|| "unknown".into());
    let mut model = Map::new();
    if let Some(provider) = a.string(&[
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
        "ai.model.provider",
    ]) {
        model.insert("provider".into(), json!(provider));
    }
    model.insert("name".into(), json!(name));
    // The response model is the version when it differs (`gpt-4o` answered by
    // `gpt-4o-2024-08-06`).
    if let Some(r) = response.filter(|r| *r != name) {
        model.insert("version".into(), json!(r));
    }
    p.insert("model".into(), Value::Object(model));

    let mut prompt = Map::new();
    if let Some(system) = a.structured("gen_ai.system_instructions") {
        prompt.insert("system".into(), system);
    }
    let input = messages(
        a,
        &["gen_ai.input.messages", "ai.prompt.messages"],
        &[("gen_ai.prompt.", ""), ("llm.input_messages.", "message.")],
    );
    if let Some(m) = input {
        let m = match m {
            Value::Array(m) => m,
            other => vec![other],
        };
        prompt.insert("messages".into(), Value::Array(m));
    }
    if !prompt.is_empty() {
        p.insert("prompt".into(), Value::Object(prompt));
    }

    let mut output = Map::new();
    let raw = messages(
        a,
        &[
            "gen_ai.output.messages",
            "ai.response.toolCalls",
            "ai.response.text",
        ],
        &[
            ("gen_ai.completion.", ""),
            ("llm.output_messages.", "message."),
        ],
    );
    // The first finish reason is the output's; several stay in `attributes` as they came.
    let finish = match a.0.get("gen_ai.response.finish_reasons") {
        Some(Value::Array(r)) if r.len() <= 1 => {
            let f = r.first().and_then(Value::as_str).map(str::to_owned);
            a.take("gen_ai.response.finish_reasons");
            f
        }
        Some(Value::Array(r)) => r.first().and_then(Value::as_str).map(str::to_owned),
        _ => a.string(&[
            "gen_ai.response.finish_reasons",
            "ai.response.finishReason",
            "llm.finish_reason",
        ]),
    };
    let calls = raw.as_ref().map(tool_calls_in).unwrap_or_default();
    if let Some(raw) = raw {
        output.insert("raw".into(), raw);
    }
    if let Some(f) = &finish {
        output.insert("finish_reason".into(), json!(f));
    }
    if !output.is_empty() {
        p.insert("output".into(), Value::Object(output));
        let asked_for_tools = matches!(
            finish.as_deref(),
            Some("tool_calls" | "tool_call" | "tool-calls" | "function_call" | "tool_use")
        );
        let mut decision = Map::new();
        if calls.is_empty() && !asked_for_tools {
            decision.insert("kind".into(), json!("response"));
        } else {
            decision.insert("kind".into(), json!("tool_call"));
            if let Some(name) = calls.iter().find_map(|(_, n)| n.clone()) {
                decision.insert("tool_name".into(), json!(name));
            }
            let ids: Vec<&String> = calls.iter().filter_map(|(id, _)| id.as_ref()).collect();
            if !ids.is_empty() {
                decision.insert("tool_call_ids".into(), json!(ids));
            }
        }
        p.insert("decision".into(), Value::Object(decision));
    }

    let mut usage = Map::new();
    if let Some(n) = a.count(&[
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
        "ai.usage.promptTokens",
    ]) {
        usage.insert("input_tokens".into(), json!(n));
    }
    if let Some(n) = a.count(&[
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
        "ai.usage.completionTokens",
    ]) {
        usage.insert("output_tokens".into(), json!(n));
    }
    if !usage.is_empty() {
        p.insert("usage".into(), Value::Object(usage));
    }
    if let Some(ms) = duration_ms {
        p.insert("latency_ms".into(), json!(ms));
    }
    p
}

/// The `(id, name)` of every tool call in a model's output, in order: GenAI parts
/// `{type: "tool_call", id, name}`, OpenAI-style `tool_calls[{id, function{name}}]`,
/// OpenInference's `tool_calls[{tool_call: {id, function: {name}}}]`, the same flattened
/// (`tool_calls.0.tool_call.id`, legacy `tool_calls.0.name`), and the Vercel AI SDK's
/// `[{toolCallId, toolName}]`. Ids are kept only when non-empty.
fn tool_calls_in(output: &Value) -> Vec<(Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let str_of = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_owned)
    };
    let messages: Vec<&Value> = match output {
        Value::Array(m) => m.iter().collect(),
        other => vec![other],
    };
    for m in messages {
        if m.get("toolCallId").is_some() || m.get("toolName").is_some() {
            out.push((str_of(m.get("toolCallId")), str_of(m.get("toolName"))));
        }
        if let Some(Value::Array(parts)) = m.get("parts") {
            for p in parts {
                if p.get("type").and_then(Value::as_str) == Some("tool_call") {
                    out.push((str_of(p.get("id")), str_of(p.get("name"))));
                }
            }
        }
        if let Some(Value::Array(calls)) = m.get("tool_calls") {
            for c in calls {
                let c = c.get("tool_call").unwrap_or(c);
                let name = str_of(c.get("function").and_then(|f| f.get("name")))
                    .or_else(|| str_of(c.get("function.name")))
                    .or_else(|| str_of(c.get("name")));
                out.push((str_of(c.get("id")), name));
            }
        }
        if let Some(m) = m.as_object() {
            let mut flat: BTreeMap<u64, (Option<String>, Option<String>)> = BTreeMap::new();
            for (k, v) in m {
                let Some((n, field)) = k
                    .strip_prefix("tool_calls.")
                    .and_then(|r| r.split_once('.'))
                else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                let field = field.strip_prefix("tool_call.").unwrap_or(field);
                let entry = flat.entry(n).or_default();
                match field {
                    "id" => entry.0 = str_of(Some(v)),
                    "function.name" | "name" => entry.1 = str_of(Some(v)),
                    _ => {}
                }
            }
            out.extend(flat.into_values());
        }
    }
    out.retain(|(id, name)| id.is_some() || name.is_some());
    out
}

fn tool_payload(
    a: &mut Attrs,
    span: &Span,
    failed: bool,
    duration_ms: Option<f64>,
) -> Map<String, Value> {
    let mut p = Map::new();
    let name = a
        .string(&[
            "gen_ai.tool.name",
            "tool.name",
            "tool_call.function.name",
            "ai.toolCall.name",
            "traceloop.entity.name",
        ])
        .or_else(|| span.name.strip_prefix("execute_tool ").map(str::to_owned))
        .unwrap_or_else(|| span.name.clone());
    let name: String = name.chars().take(256).collect();
    p.insert("tool".into(), json!({"name": name}));
    if let Some(id) = a.string(&["gen_ai.tool.call.id", "tool_call.id", "ai.toolCall.id"]) {
        if id.len() <= 256 {
            p.insert("call_id".into(), json!(id));
        } else {
            // Too long to be an id the index links by: kept, as it came.
            a.0.insert("gen_ai.tool.call.id".into(), json!(id));
        }
    }
    let input = [
        "gen_ai.tool.call.arguments",
        "input.value",
        "tool_call.function.arguments",
        "ai.toolCall.args",
        "traceloop.entity.input",
    ]
    .iter()
    .find_map(|k| a.structured(k));
    if let Some(input) = input {
        p.insert("input".into(), input);
    }
    let output = [
        "gen_ai.tool.call.result",
        "output.value",
        "ai.toolCall.result",
        "traceloop.entity.output",
    ]
    .iter()
    .find_map(|k| a.structured(k));
    if let Some(output) = output {
        p.insert("output".into(), output);
    }
    let mut status = Map::new();
    status.insert("outcome".into(), json!(if failed { "error" } else { "ok" }));
    let message = span
        .status
        .as_ref()
        .map(|s| s.message.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| {
            a.0.get("error.type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    if let Some(m) = message {
        status.insert("message".into(), json!(m));
    }
    p.insert("status".into(), Value::Object(status));
    if let Some(ms) = duration_ms {
        p.insert("duration_ms".into(), json!(ms));
    }
    p
}

/// A review time: RFC 3339 as sent (the ingest operation checks it), or Unix nanoseconds (an
/// integer, which beyond 2^53 arrives as its decimal string).
fn review_time(a: &mut Attrs, key: &str) -> Option<String> {
    let ns = match a.0.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    match ns.and_then(timestamp) {
        Some(t) => {
            a.take(key);
            Some(t)
        }
        None => a.string(&[key]),
    }
}

/// `agentrail.review.*` (agentrail's own attributes; OpenTelemetry has no review convention).
pub(crate) fn review_payload(
    a: &mut Attrs,
    occurred_at: &str,
    end_ns: u64,
) -> Result<Map<String, Value>, String> {
    let mut p = Map::new();
    let decision = a
        .string(&["agentrail.review.decision"])
        .ok_or("agentrail.review.decision must be a string")?;
    let decision = match decision.trim().to_ascii_lowercase().as_str() {
        "approve" | "approved" => "approve",
        "reject" | "rejected" => "reject",
        "modify" | "modified" => "modify",
        "escalate" | "escalated" => "escalate",
        _ => {
            return Err(format!(
                "agentrail.review.decision must be approve, reject, modify or escalate, not {decision:?}"
            ));
        }
    };
    p.insert("decision".into(), json!(decision));
    let reviewer = a
        .string(&["agentrail.review.reviewer.id"])
        .ok_or("agentrail.review.reviewer.id is required on a review")?;
    let mut r = Map::new();
    r.insert("id".into(), json!(reviewer));
    if let Some(role) = a.string(&["agentrail.review.reviewer.role"]) {
        r.insert("role".into(), json!(role));
    }
    p.insert("reviewer".into(), Value::Object(r));
    let presented =
        review_time(a, "agentrail.review.presented_at").unwrap_or_else(|| occurred_at.to_owned());
    let decided = review_time(a, "agentrail.review.decided_at")
        .or_else(|| timestamp(end_ns).filter(|_| end_ns > 0))
        .unwrap_or_else(|| occurred_at.to_owned());
    p.insert("presented_at".into(), json!(presented));
    p.insert("decided_at".into(), json!(decided));
    if let Some(rationale) = a.structured("agentrail.review.rationale") {
        p.insert("rationale".into(), rationale);
    }
    let mut proposed = Map::new();
    if let Some(id) = a.string(&["agentrail.review.proposed.event_id"]) {
        proposed.insert("event_id".into(), json!(id));
    }
    if let Some(id) = a.string(&["agentrail.review.proposed.tool_call_id"]) {
        proposed.insert("tool_call_id".into(), json!(id));
    }
    if let Some(summary) = a.string(&["agentrail.review.proposed.summary"]) {
        proposed.insert("summary".into(), json!(summary));
    }
    if !proposed.is_empty() {
        p.insert("proposed_action".into(), Value::Object(proposed));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ids_are_named() {
        let mut s = Span {
            trace_id: vec![0; 16],
            span_id: vec![1; 8],
            ..Default::default()
        };
        assert_eq!(
            ids(&s).unwrap_err(),
            "trace_id must be 16 bytes, not all zero"
        );
        s.trace_id = vec![1; 16];
        s.span_id = vec![1; 4];
        assert_eq!(
            ids(&s).unwrap_err(),
            "span_id must be 8 bytes, not all zero"
        );
        s.span_id = vec![1; 8];
        s.parent_span_id = vec![0; 8];
        assert!(ids(&s).unwrap_err().starts_with("parent_span_id"));
        s.parent_span_id = vec![1; 8];
        assert_eq!(ids(&s).unwrap_err(), "parent_span_id is the span's own id");
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        assert_eq!(
            timestamp(1_700_000_000_123_456_789).as_deref(),
            Some("2023-11-14T22:13:20.123456789Z")
        );
    }

    #[test]
    fn only_json_objects_and_arrays_are_parsed_from_strings() {
        assert_eq!(structure(json!("42")), json!("42"));
        assert_eq!(structure(json!("true")), json!("true"));
        assert_eq!(structure(json!(" [1]")), json!([1]));
        assert_eq!(structure(json!("{not json")), json!("{not json"));
    }

    #[test]
    fn tool_calls_are_found_in_every_shape() {
        let shapes = [
            json!([{"parts": [{"type": "tool_call", "id": "a", "name": "f"}]}]),
            json!([{"tool_calls": [{"id": "a", "function": {"name": "f"}}]}]),
            json!([{"tool_calls": [{"tool_call": {"id": "a", "function": {"name": "f"}}}]}]),
            json!([{"tool_calls.0.tool_call.id": "a", "tool_calls.0.tool_call.function.name": "f"}]),
            json!([{"tool_calls.0.id": "a", "tool_calls.0.name": "f"}]),
            json!([{"toolCallType": "function", "toolCallId": "a", "toolName": "f"}]),
        ];
        for s in shapes {
            assert_eq!(
                tool_calls_in(&s),
                vec![(Some("a".into()), Some("f".into()))],
                "{s}"
            );
        }
        assert!(tool_calls_in(&json!([{"content": "hi"}])).is_empty());
    }
}
