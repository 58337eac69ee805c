//! The JSON Schema of v1 events, generated from the types in `model.rs`.
//!
//! schemars derives one schema per struct; this module adds what a derive cannot say: which
//! payload struct goes with which `event_type`, that agent events need a `session_id`, and that
//! optional fields are absent rather than `null`.

use crate::model::{
    AGENT_EVENT_TYPES, AgentSpawned, DataAccess, Event, HumanReview, ModelDecision, PolicyDecision,
    SessionLifecycle, ToolInvocation,
};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

/// Event types whose payload struct has required fields, so the payload itself is required.
const PAYLOAD_REQUIRED: &[&str] = &[
    "model.decision",
    "tool.invocation",
    "human.review",
    "agent.spawned",
    "data.access",
    "policy.decision",
];

/// The JSON Schema (draft 2020-12) of an event as emitters send it.
pub fn event_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let payloads = [
        ("model.decision", generator.subschema_for::<ModelDecision>()),
        (
            "tool.invocation",
            generator.subschema_for::<ToolInvocation>(),
        ),
        ("human.review", generator.subschema_for::<HumanReview>()),
        (
            "agent.session.started",
            generator.subschema_for::<SessionLifecycle>(),
        ),
        (
            "agent.session.ended",
            generator.subschema_for::<SessionLifecycle>(),
        ),
        ("agent.spawned", generator.subschema_for::<AgentSpawned>()),
        ("data.access", generator.subschema_for::<DataAccess>()),
        (
            "policy.decision",
            generator.subschema_for::<PolicyDecision>(),
        ),
    ];
    let mut root = generator.into_root_schema_for::<Event>().to_value();

    let mut all_of = Vec::new();
    for (event_type, payload) in payloads {
        let mut then = json!({ "properties": { "payload": payload.to_value() } });
        if PAYLOAD_REQUIRED.contains(&event_type) {
            then["required"] = json!(["payload"]);
        }
        all_of.push(json!({
            "if": { "properties": { "event_type": { "const": event_type } }, "required": ["event_type"] },
            "then": then,
        }));
    }
    all_of.push(json!({
        "if": { "properties": { "event_type": { "enum": AGENT_EVENT_TYPES } }, "required": ["event_type"] },
        "then": { "required": ["session_id"] },
    }));
    root["allOf"] = Value::Array(all_of);
    root["properties"]["caused_by"]["uniqueItems"] = json!(true);
    root["$id"] = json!("agentrail/event-v1.schema.json");
    strip_null(&mut root);
    root
}

/// Optional fields are omitted, never `null`: removes the `null` alternatives schemars adds for
/// `Option<T>`.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alts)) = map.get_mut("anyOf") {
                alts.retain(|a| a != &json!({ "type": "null" }));
                if alts.len() == 1 {
                    let only = alts.remove(0);
                    map.remove("anyOf");
                    if let Value::Object(inner) = only {
                        map.extend(inner);
                    }
                }
            }
            if let Some(Value::Array(alts)) = map.get_mut("enum") {
                alts.retain(|a| !a.is_null());
            }
            for child in map.values_mut() {
                strip_null(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}
