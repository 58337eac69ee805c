//! Spans to v1 events (DESIGN.md §9.1). One span is one event, `event_id` =
//! `otel-<trace_id>-<span_id>` (an exporter's retry is a replay); its kind comes from
//! `gen_ai.operation.name`, else `openinference.span.kind`; what agentrail does not map is kept
//! in `attributes`, so nothing is dropped.
//!
//! Message content goes to `prompt` and `output` of a model decision, `input` and `output` of a
//! tool invocation and `rationale` of a review (fields the ingest operation tokenizes and
//! seals), and what has no such field to `payload.content`, which is not sealed yet: this
//! mapping is not served until it is (issue 15). The content keys it knows never land in
//! `attributes`.

use crate::value::attributes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

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
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.definitions",
    "input.value",
    "output.value",
    "agentrail.review.rationale",
];
const CONTENT_PREFIXES: &[&str] = &[
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
];

fn is_content(key: &str) -> bool {
    CONTENT_KEYS.contains(&key) || CONTENT_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// A span's attributes, each read at most once: what is left over goes to `attributes`.
struct Attrs(Map<String, Value>);

impl Attrs {
    /// The first of `keys` holding a non-empty string (taken).
    fn string(&mut self, keys: &[&str]) -> Option<String> {
        for k in keys {
            if let Some(Value::String(s)) = self.0.get(*k)
                && !s.is_empty()
            {
                let s = s.clone();
                self.0.remove(*k);
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
    fn structured(&mut self, key: &str) -> Option<Value> {
        let v = self.0.remove(key)?;
        Some(match v {
            Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            other => other,
        })
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

    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The content-bearing attributes left (taken).
    fn content(&mut self) -> Map<String, Value> {
        let keys: Vec<String> = self.0.keys().filter(|k| is_content(k)).cloned().collect();
        keys.into_iter()
            .filter_map(|k| self.0.remove(&k).map(|v| (k, v)))
            .collect()
    }
}

/// Maps every span of a request, in request order.
pub fn map_traces(req: &ExportTraceServiceRequest) -> Vec<MappedSpan> {
    let mut out = Vec::new();
    // Tool call id → the model decision whose output carried it, across the request.
    let mut calls: HashMap<String, String> = HashMap::new();
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for span in &ss.spans {
                let (event_id, event) = match ids(span) {
                    Ok((trace, id, parent)) => {
                        let event_id = format!("otel-{trace}-{id}");
                        let ev = span_event(&resource, scope, span, &event_id, &trace, &id, parent);
                        if let Ok(ev) = &ev {
                            for call in tool_call_ids(ev) {
                                calls.insert(call, event_id.clone());
                            }
                        }
                        (Some(event_id), ev)
                    }
                    Err(reason) => (None, Err(reason)),
                };
                out.push(MappedSpan { event_id, event });
            }
        }
    }
    // A tool invocation, and a review proposing a tool call, link to the decision that made
    // the call when it is in the same request.
    for m in &mut out {
        let Ok(Value::Object(ev)) = &mut m.event else {
            continue;
        };
        let call = ev
            .get_mut("attributes")
            .and_then(Value::as_object_mut)
            .and_then(|a| {
                a.get("gen_ai.tool.call.id")
                    .or(a.get("agentrail.review.proposed.tool_call_id"))
            })
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(decision) = call.and_then(|c| calls.get(&c)) else {
            continue;
        };
        if m.event_id.as_deref() == Some(decision.as_str()) {
            continue;
        }
        if ev.get("event_type").and_then(Value::as_str) == Some("human.review")
            && let Some(Value::Object(p)) = ev.get_mut("payload")
        {
            let pa = p
                .entry("proposed_action")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(pa) = pa {
                pa.entry("event_id").or_insert_with(|| json!(decision));
            }
        }
        let causes = ev
            .entry("caused_by")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(c) = causes
            && !c.iter().any(|x| x.as_str() == Some(decision))
        {
            c.push(json!(decision));
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
fn timestamp(ns: u64) -> Option<String> {
    let t = jiff::Timestamp::from_nanosecond(i128::from(ns)).ok()?;
    Some(format!("{t:.9}"))
}

fn kind(a: &Attrs, span: &Span) -> Kind {
    if a.has("agentrail.review.decision") {
        return Kind::Review;
    }
    let op = a.0.get("gen_ai.operation.name").and_then(Value::as_str);
    match op {
        Some("chat" | "generate_content" | "text_completion" | "completion") => {
            return Kind::Model;
        }
        Some("execute_tool") => return Kind::Tool,
        Some("invoke_agent" | "create_agent") => return Kind::Agent,
        Some("embeddings" | "retrieval") => return Kind::Retrieval,
        _ => {}
    }
    match a.0.get("openinference.span.kind").and_then(Value::as_str) {
        Some("LLM") => return Kind::Model,
        Some("TOOL") => return Kind::Tool,
        Some("AGENT") => return Kind::Agent,
        Some("RETRIEVER" | "EMBEDDING" | "RERANKER") => return Kind::Retrieval,
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

#[allow(clippy::too_many_arguments)]
fn span_event(
    resource: &Map<String, Value>,
    scope: &str,
    span: &Span,
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
    let occurred_at = timestamp(start).ok_or("start_time_unix_nano is missing or out of range")?;
    let duration_ms = (span.end_time_unix_nano >= start && span.start_time_unix_nano > 0)
        .then(|| (span.end_time_unix_nano - start) as f64 / 1e6);

    let mut a = Attrs(attributes(&span.attributes));
    let kind = kind(&a, span);
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
        .string(&["gen_ai.conversation.id", "session.id"])
        .unwrap_or_else(|| format!("otel-trace-{trace_id}"));
    ev.insert("session_id".into(), json!(session));
    let service = resource.get("service.name").and_then(Value::as_str);
    if let Some(agent) = a
        .string(&["gen_ai.agent.id", "gen_ai.agent.name", "agent.name"])
        .or_else(|| service.map(str::to_owned))
    {
        ev.insert("agent_id".into(), json!(agent));
    }
    if let Some(subject) = a.string(&["enduser.id", "user.id"]) {
        ev.insert("subject_id".into(), json!(subject));
    }
    let mut source = Map::new();
    for (field, key) in [
        ("system", "service.name"),
        ("version", "service.version"),
        ("host", "host.name"),
    ] {
        if let Some(Value::String(s)) = resource.get(key) {
            source.insert(field.into(), json!(s));
        }
    }
    if !scope.is_empty() {
        source.insert("component".into(), json!(scope));
    }
    if !source.is_empty() {
        ev.insert("source".into(), Value::Object(source));
    }

    let failed = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
        || a.has("error.type");
    let payload = match kind {
        Kind::Model => model_payload(&mut a, duration_ms),
        Kind::Tool => tool_payload(&mut a, span, failed, duration_ms),
        Kind::Review => review_payload(&mut a, &occurred_at, span)?,
        Kind::Agent => {
            let mut p = Map::new();
            // The agent the span invokes is the one its `gen_ai.agent.*` names.
            let named = ["gen_ai.agent.id", "gen_ai.agent.name", "agent.name"]
                .iter()
                .any(|k| span.attributes.iter().any(|kv| kv.key == *k));
            let child = ev
                .get("agent_id")
                .and_then(Value::as_str)
                .filter(|_| named)
                .map_or_else(|| span.name.clone(), str::to_owned);
            p.insert("child_agent_id".into(), json!(child));
            p.insert("child_session_id".into(), json!(ev["session_id"].clone()));
            p
        }
        Kind::Retrieval => {
            let mut p = Map::new();
            let resource = a
                .string(&[
                    "gen_ai.data_source.id",
                    "gen_ai.request.model",
                    "llm.model_name",
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
    let mut payload = payload;
    // Content this kind has no field for is kept where the ingest operation seals it.
    let content = a.content();
    if !content.is_empty() {
        payload.insert("content".into(), Value::Object(content));
    }
    ev.insert("payload".into(), Value::Object(payload));

    // Everything else, so nothing is dropped.
    let mut rest = a.0;
    rest.insert("otel.span.name".into(), json!(span.name));
    let span_kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    rest.insert("otel.span.kind".into(), json!(span_kind.as_str_name()));
    if let Some(s) = &span.status
        && s.code != StatusCode::Unset as i32
    {
        rest.insert(
            "otel.status.code".into(),
            json!(StatusCode::try_from(s.code).map_or("UNKNOWN", |c| c.as_str_name())),
        );
        if !s.message.is_empty() {
            rest.insert("otel.status.message".into(), json!(s.message));
        }
    }
    if !span.events.is_empty() {
        let events: Vec<Value> = span
            .events
            .iter()
            .map(|e| {
                json!({"name": e.name, "time": timestamp(e.time_unix_nano),
                    "attributes": attributes(&e.attributes)})
            })
            .collect();
        rest.insert("otel.events".into(), Value::Array(events));
    }
    if !span.links.is_empty() {
        let links: Vec<Value> = span
            .links
            .iter()
            .map(|l| json!({"trace_id": hex::encode(&l.trace_id), "span_id": hex::encode(&l.span_id)}))
            .collect();
        rest.insert("otel.links".into(), Value::Array(links));
    }
    if !resource.is_empty() {
        rest.insert("otel.resource".into(), Value::Object(resource.clone()));
    }
    ev.insert("attributes".into(), Value::Object(rest));
    Ok(Value::Object(ev))
}

fn model_payload(a: &mut Attrs, duration_ms: Option<f64>) -> Map<String, Value> {
    let mut p = Map::new();
    let request = a.string(&["gen_ai.request.model", "llm.request.model_name"]);
    let response = a.string(&["gen_ai.response.model", "llm.response.model_name"]);
    let other = a.string(&["llm.model_name"]);
    let name = request
        .clone()
        .or_else(|| response.clone())
        .or(other)
        .unwrap_or_else(|| "unknown".into());
    let mut model = Map::new();
    if let Some(provider) = a.string(&[
        "gen_ai.provider.name",
        "gen_ai.system",
        "llm.provider",
        "llm.system",
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
    let messages = match a.structured("gen_ai.input.messages") {
        Some(Value::Array(m)) => m,
        Some(other) => vec![other],
        None => {
            let legacy = a.indexed("gen_ai.prompt.", "");
            if legacy.is_empty() {
                a.indexed("llm.input_messages.", "message.")
            } else {
                legacy
            }
        }
    };
    if !messages.is_empty() {
        prompt.insert("messages".into(), Value::Array(messages));
    }
    if !prompt.is_empty() {
        p.insert("prompt".into(), Value::Object(prompt));
    }

    let mut output = Map::new();
    let raw = match a.structured("gen_ai.output.messages") {
        Some(v) => Some(v),
        None => {
            let legacy = a.indexed("gen_ai.completion.", "");
            let legacy = if legacy.is_empty() {
                a.indexed("llm.output_messages.", "message.")
            } else {
                legacy
            };
            (!legacy.is_empty()).then_some(Value::Array(legacy))
        }
    };
    let finish = match a.take("gen_ai.response.finish_reasons") {
        Some(Value::Array(r)) => r.first().and_then(Value::as_str).map(str::to_owned),
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let calls = raw.as_ref().map(tool_calls_in).unwrap_or_default();
    if let Some(raw) = raw {
        output.insert("raw".into(), raw);
    }
    if let Some(f) = finish {
        output.insert("finish_reason".into(), json!(f));
    }
    if !output.is_empty() {
        p.insert("output".into(), Value::Object(output));
        let decision = match calls.first() {
            Some((_, name)) => json!({"kind": "tool_call", "tool_name": name}),
            None => json!({"kind": "response"}),
        };
        p.insert("decision".into(), decision);
    }

    let mut usage = Map::new();
    if let Some(n) = a.count(&[
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
    ]) {
        usage.insert("input_tokens".into(), json!(n));
    }
    if let Some(n) = a.count(&[
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
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

/// The `(id, name)` of every tool call in a model's output messages: GenAI parts
/// `{type: "tool_call", id, name}`, OpenAI-style `tool_calls[{id, function{name}}]` and
/// OpenInference's `tool_calls[{tool_call: {id, function: {name}}}]`.
fn tool_calls_in(output: &Value) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let messages: Vec<&Value> = match output {
        Value::Array(m) => m.iter().collect(),
        other => vec![other],
    };
    for m in messages {
        if let Some(Value::Array(parts)) = m.get("parts") {
            for p in parts {
                if p.get("type").and_then(Value::as_str) == Some("tool_call")
                    && let Some(name) = str_of(p.get("name"))
                {
                    out.push((str_of(p.get("id")), name));
                }
            }
        }
        if let Some(Value::Array(calls)) = m.get("tool_calls") {
            for c in calls {
                let c = c.get("tool_call").unwrap_or(c);
                let name = str_of(c.get("function").and_then(|f| f.get("name")))
                    .or_else(|| str_of(c.get("function.name")))
                    .or_else(|| str_of(c.get("name")));
                if let Some(name) = name {
                    out.push((str_of(c.get("id")), name));
                }
            }
        }
    }
    out
}

/// The tool call ids a mapped model decision's output carries.
fn tool_call_ids(ev: &Value) -> Vec<String> {
    if ev.get("event_type").and_then(Value::as_str) != Some("model.decision") {
        return Vec::new();
    }
    ev.get("payload")
        .and_then(|p| p.get("output"))
        .and_then(|o| o.get("raw"))
        .map(tool_calls_in)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, _)| id)
        .collect()
}

/// The tool's arguments or result: structure when it arrives as a JSON string.
fn content_value(a: &mut Attrs, keys: &[&str]) -> Option<Value> {
    keys.iter().find_map(|k| a.structured(k))
}

fn tool_payload(
    a: &mut Attrs,
    span: &Span,
    failed: bool,
    duration_ms: Option<f64>,
) -> Map<String, Value> {
    let mut p = Map::new();
    let name = a
        .string(&["gen_ai.tool.name", "tool.name"])
        .or_else(|| span.name.strip_prefix("execute_tool ").map(str::to_owned))
        .unwrap_or_else(|| span.name.clone());
    p.insert("tool".into(), json!({"name": name}));
    if let Some(input) = content_value(a, &["gen_ai.tool.call.arguments", "input.value"]) {
        p.insert("input".into(), input);
    }
    if let Some(output) = content_value(a, &["gen_ai.tool.call.result", "output.value"]) {
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

/// `agentrail.review.*` (agentrail's own attributes; OpenTelemetry has no review convention).
fn review_payload(
    a: &mut Attrs,
    occurred_at: &str,
    span: &Span,
) -> Result<Map<String, Value>, String> {
    let mut p = Map::new();
    let decision = a
        .string(&["agentrail.review.decision"])
        .ok_or("agentrail.review.decision must be a string")?;
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
    let presented = a
        .string(&["agentrail.review.presented_at"])
        .unwrap_or_else(|| occurred_at.to_owned());
    let decided = a
        .string(&["agentrail.review.decided_at"])
        .or_else(|| timestamp(span.end_time_unix_nano))
        .unwrap_or_else(|| occurred_at.to_owned());
    p.insert("presented_at".into(), json!(presented));
    p.insert("decided_at".into(), json!(decided));
    if let Some(rationale) = a.structured("agentrail.review.rationale") {
        p.insert("rationale".into(), rationale);
    }
    if let Some(id) = a.string(&["agentrail.review.proposed.event_id"]) {
        p.insert("proposed_action".into(), json!({"event_id": id}));
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
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        assert_eq!(
            timestamp(1_700_000_000_123_456_789).as_deref(),
            Some("2023-11-14T22:13:20.123456789Z")
        );
    }
}
