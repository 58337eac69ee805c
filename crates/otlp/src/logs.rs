//! Log records to v1 events (DESIGN.md §9.1). GenAI instrumentations put message content in
//! log events (`gen_ai.client.inference.operation.details`, the deprecated
//! `gen_ai.user.message` / `gen_ai.assistant.message` / `gen_ai.choice` …), named by
//! `event_name` (or an `event.name` attribute) and carrying the trace and span of the call. A
//! record becomes one `custom.otel.log` event caused by the span it names (so it attaches to
//! that span's event, which the causal query finds, whichever arrives first), with its body and
//! content attributes in the sealed `payload.content`; a record with `agentrail.review.*` is a
//! `human.review`. The event id is the digest of the record as sent, so an exporter's retry is
//! a replay.

use crate::trace::{
    Attrs, MappedSpan, put_reserved, put_resource, review_payload, source_of, timestamp,
};
use crate::value::{any_value, attributes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{Map, Value, json};
use sha2::Digest;

/// Maps every log record of a request, in request order; each on its own. The request is
/// consumed: its strings move into the events.
pub fn map_logs(req: ExportLogsServiceRequest) -> Vec<MappedSpan> {
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let resource = rl
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        for sl in rl.scope_logs {
            let scope = sl.scope.map(|s| s.name).unwrap_or_default();
            for rec in sl.log_records {
                let event_id = record_id(&resource, &scope, &rec);
                let event = record_event(&resource, &scope, rec, &event_id);
                out.push(MappedSpan {
                    event_id: Some(event_id),
                    event,
                });
            }
        }
    }
    out
}

/// `otel-log-<hex>`: SHA-256 (first 16 bytes) of the record's protobuf encoding with its
/// resource attributes and scope name (prost encodes a message deterministically).
fn record_id(resource: &Map<String, Value>, scope: &str, rec: &LogRecord) -> String {
    let mut h = sha2::Sha256::new();
    h.update(rec.encode_to_vec());
    h.update(serde_json::to_vec(resource).unwrap_or_default());
    h.update(scope.as_bytes());
    format!("otel-log-{}", hex::encode(&h.finalize()[..16]))
}

fn record_event(
    resource: &Map<String, Value>,
    scope: &str,
    mut rec: LogRecord,
    event_id: &str,
) -> Result<Value, String> {
    let valid = |b: &[u8], len: usize| b.len() == len && b.iter().any(|&x| x != 0);
    let trace = match rec.trace_id.len() {
        0 => None,
        _ if valid(&rec.trace_id, 16) => Some(hex::encode(&rec.trace_id)),
        _ => return Err("trace_id must be empty or 16 bytes, not all zero".into()),
    };
    let span = match rec.span_id.len() {
        0 => None,
        _ if valid(&rec.span_id, 8) && trace.is_some() => Some(hex::encode(&rec.span_id)),
        _ => return Err("span_id must be empty or 8 bytes, not all zero, with a trace_id".into()),
    };
    let ns = if rec.time_unix_nano > 0 {
        rec.time_unix_nano
    } else {
        rec.observed_time_unix_nano
    };
    if ns == 0 {
        return Err("time_unix_nano and observed_time_unix_nano are both missing".into());
    }
    let occurred_at = timestamp(ns).ok_or("time_unix_nano is out of range")?;

    let mut a = Attrs(attributes(std::mem::take(&mut rec.attributes)));
    let name = if rec.event_name.is_empty() {
        a.string(&["event.name"])
    } else {
        Some(std::mem::take(&mut rec.event_name))
    };
    let review = a.has("agentrail.review.decision");
    let mut ev = Map::new();
    ev.insert("schema_version".into(), json!("1"));
    ev.insert("event_id".into(), json!(event_id));
    ev.insert(
        "event_type".into(),
        json!(if review {
            "human.review"
        } else {
            "custom.otel.log"
        }),
    );
    ev.insert("occurred_at".into(), json!(occurred_at));
    if let Some(t) = &trace {
        let mut tr = Map::new();
        tr.insert("trace_id".into(), json!(t));
        if let Some(s) = &span {
            tr.insert("span_id".into(), json!(s));
            ev.insert("caused_by".into(), json!([format!("otel-{t}-{s}")]));
        }
        ev.insert("trace".into(), Value::Object(tr));
    }
    let session = a
        .string(&["gen_ai.conversation.id", "session.id"])
        .or_else(|| trace.as_ref().map(|t| format!("otel-trace-{t}")));
    if let Some(s) = &session {
        ev.insert("session_id".into(), json!(s));
    } else if review {
        return Err("a review needs gen_ai.conversation.id, session.id or a trace_id".into());
    }
    let service = resource
        .get("service.name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(agent) = a
        .string(&["gen_ai.agent.id", "gen_ai.agent.name", "agent.name"])
        .or_else(|| service.map(str::to_owned))
    {
        ev.insert("agent_id".into(), json!(agent));
    }
    if let Some(subject) = a.string(&["enduser.id", "user.id"]) {
        ev.insert("subject_id".into(), json!(subject));
    }
    if let Some(source) = source_of(resource, scope) {
        ev.insert("source".into(), source);
    }
    let mut payload = if review {
        review_payload(&mut a, &occurred_at, 0)?
    } else {
        let mut p = Map::new();
        if let Some(n) = &name {
            p.insert("event_name".into(), json!(n));
        }
        if !rec.severity_text.is_empty() {
            p.insert("severity_text".into(), json!(rec.severity_text));
        }
        if rec.severity_number != 0 {
            p.insert("severity_number".into(), json!(rec.severity_number));
        }
        p
    };
    // The body and the content attributes: sealed.
    let mut content = a.content();
    if let Some(body) = rec.body.take().map(any_value).filter(|b| !b.is_null()) {
        content.insert("body".into(), body);
    }
    if !content.is_empty() {
        payload.insert("content".into(), Value::Object(content));
    }
    ev.insert("payload".into(), Value::Object(payload));

    let mut rest = a.0;
    if let (true, Some(n)) = (review, &name) {
        put_reserved(&mut rest, "otel.event_name", json!(n));
    }
    if rec.flags != 0 {
        put_reserved(&mut rest, "otel.log.flags", json!(rec.flags));
    }
    if rec.dropped_attributes_count > 0 {
        put_reserved(
            &mut rest,
            "otel.dropped_attributes_count",
            json!(rec.dropped_attributes_count),
        );
    }
    if rec.observed_time_unix_nano > 0 && rec.time_unix_nano > 0 {
        put_reserved(
            &mut rest,
            "otel.log.observed_at",
            json!(timestamp(rec.observed_time_unix_nano)),
        );
    }
    put_resource(&mut rest, resource);
    ev.insert("attributes".into(), Value::Object(rest));
    Ok(Value::Object(ev))
}
