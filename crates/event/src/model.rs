//! The event model v1 as Rust types: the envelope an emitter sends, the payloads of the built-in
//! event types and the default sensitive fields.
//!
//! These types are the single source of the event schema: `schema.rs` generates the JSON Schema
//! from them and validation runs that schema, so the types, the committed schema and what ingest
//! accepts cannot drift apart. Emitter-side objects of the envelope reject unknown fields; objects
//! inside `payload` keep them (the stored form is the emitter's JSON, not a re-serialization of
//! these types, so nothing unknown is dropped).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// A string-typed value whose shape is a regular expression, with a sentence that explains the
/// shape to a person (used in validation errors instead of the raw pattern).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    pub pattern: &'static str,
    pub explanation: &'static str,
}

/// Event ids are used in URL paths, so they are limited to URL-safe characters.
pub const EVENT_ID: Shape = Shape {
    name: "EventId",
    pattern: r"^[A-Za-z0-9._:@+=~-]{1,128}$",
    explanation: "must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ + = ~ -",
};

pub const EVENT_TYPE: Shape = Shape {
    name: "EventType",
    pattern: r"^(model\.decision|tool\.invocation|human\.review|agent\.session\.started|agent\.session\.ended|agent\.spawned|data\.access|policy\.decision|custom\.[a-z0-9_][a-z0-9_.-]{0,120})$",
    explanation: "must be one of model.decision, tool.invocation, human.review, \
        agent.session.started, agent.session.ended, agent.spawned, data.access, policy.decision, \
        or custom.<name> (name: lowercase letters, digits, _ . -)",
};

/// RFC 3339 in UTC with up to nanosecond precision.
pub const TIMESTAMP: Shape = Shape {
    name: "Timestamp",
    pattern: r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$",
    explanation: "must be an RFC 3339 UTC timestamp with at most 9 fractional digits, \
        like 2026-01-31T12:00:00.123456789Z",
};

pub const TENANT_ID: Shape = Shape {
    name: "TenantId",
    pattern: r"^[a-z0-9][a-z0-9_-]{0,62}$",
    explanation: "must be 1 to 63 characters of a-z 0-9 _ -, starting with a letter or digit",
};

pub const TRACE_ID: Shape = Shape {
    name: "TraceId",
    pattern: r"^[0-9a-f]{32}$",
    explanation: "must be 32 lowercase hex digits (W3C trace context)",
};

pub const SPAN_ID: Shape = Shape {
    name: "SpanId",
    pattern: r"^[0-9a-f]{16}$",
    explanation: "must be 16 lowercase hex digits (W3C trace context)",
};

/// Every shape, for looking up an explanation by pattern.
pub const SHAPES: &[Shape] = &[
    EVENT_ID, EVENT_TYPE, TIMESTAMP, TENANT_ID, TRACE_ID, SPAN_ID,
];

macro_rules! shaped_string {
    ($(#[$doc:meta])* $ty:ident, $shape:expr, $extra:tt) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $ty(pub String);

        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $shape.name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let mut s = json_schema!({
                    "type": "string",
                    "pattern": $shape.pattern,
                    "description": $shape.explanation,
                });
                let extra: Value = serde_json::json!($extra);
                if let (Some(obj), Value::Object(more)) = (s.as_object_mut(), extra) {
                    obj.extend(more);
                }
                s
            }
        }
    };
}

shaped_string!(
    /// An event id: the idempotency key within a tenant.
    EventId, EVENT_ID, {}
);
shaped_string!(
    /// `model.decision`, `tool.invocation`, …, or `custom.<name>`.
    EventType, EVENT_TYPE, {}
);
shaped_string!(
    /// An RFC 3339 UTC timestamp, e.g. `2026-01-31T12:00:00.123456789Z`.
    Timestamp, TIMESTAMP, {"format": "date-time"}
);
shaped_string!(
    /// A tenant id; also a directory name on disk, hence the narrow alphabet.
    TenantId, TENANT_ID, {}
);
shaped_string!(
    /// A W3C trace id.
    TraceId, TRACE_ID, {}
);
shaped_string!(
    /// A W3C span id.
    SpanId, SPAN_ID, {}
);

/// The event types an agent emits about its own run; they need a `session_id`.
pub const AGENT_EVENT_TYPES: &[&str] = &[
    "model.decision",
    "tool.invocation",
    "human.review",
    "agent.session.started",
    "agent.session.ended",
    "agent.spawned",
];

/// The event type of each typed payload (the rest — `custom.*` — take any object).
pub const KNOWN_EVENT_TYPES: &[&str] = &[
    "model.decision",
    "tool.invocation",
    "human.review",
    "agent.session.started",
    "agent.session.ended",
    "agent.spawned",
    "data.access",
    "policy.decision",
];

/// The default sensitive fields, by event type, as paths inside the event. They
/// are PII-tokenized and encrypted before sequencing; everything else is structural metadata.
pub const DEFAULT_SENSITIVE_FIELDS: &[(&str, &[&str])] = &[
    (
        "model.decision",
        &["payload.prompt", "payload.output", "payload.reasoning"],
    ),
    ("tool.invocation", &["payload.input", "payload.output"]),
    (
        "human.review",
        &[
            "payload.proposed_action.content",
            "payload.modification",
            "payload.rationale",
        ],
    ),
];

/// Sensitive in every event type, besides the defaults of its type: `payload.content`, where
/// intake paths (OTLP spans) put message content a type has no field for.
pub const SENSITIVE_IN_EVERY_TYPE: &[&str] = &["payload.content"];

/// The namespace of the events agentrail itself writes into a tenant's ledger (erasure records):
/// no emitter may send a type in it, so a record that looks like the server's is the server's.
pub const SYSTEM_EVENT_PREFIX: &str = "custom.agentrail.";

/// Types agentrail wrote its erasure records as before [`SYSTEM_EVENT_PREFIX`]: reserved too, so
/// nobody can add one that looks like an old record.
pub const LEGACY_SYSTEM_EVENT_TYPES: &[&str] = &["custom.subject.erased", "custom.tenant.erased"];

/// Whether an event type is agentrail's own (refused from emitters).
pub fn is_system_event_type(t: &str) -> bool {
    t.starts_with(SYSTEM_EVENT_PREFIX) || LEGACY_SYSTEM_EVENT_TYPES.contains(&t)
}

impl EventType {
    pub fn is_custom(&self) -> bool {
        self.0.starts_with("custom.")
    }

    pub fn is_agent_event(&self) -> bool {
        AGENT_EVENT_TYPES.contains(&self.0.as_str())
    }
}

impl TenantId {
    /// Checks a tenant id against [`TENANT_ID`], e.g. one taken from a URL path or a CLI flag.
    pub fn parse(s: &str) -> Result<TenantId, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-'))
            });
        if ok {
            Ok(TenantId(s.to_owned()))
        } else {
            Err(format!("tenant id {s:?} {}", TENANT_ID.explanation))
        }
    }
}

/// The schema version; only `"1"` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SchemaVersion {
    #[serde(rename = "1")]
    V1,
}

/// An event as an emitter sends it (DESIGN.md §2). Server-assigned fields are not accepted here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "agentrail event v1")]
pub struct Event {
    pub schema_version: SchemaVersion,
    /// The idempotency key; the server assigns a UUIDv7 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    pub event_type: EventType,
    /// Must equal the tenant of the credential and the path when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub project_id: Option<String>,
    /// Required for agent events (model.decision, tool.invocation, human.review, agent.*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The emitter's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    /// Causal parents, by event id (e.g. a tool invocation's model decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub caused_by: Option<Vec<EventId>>,
    /// The data subject whose data the event carries; the unit of erasure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub subject_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_classification: Option<Classification>,
    /// Per `event_type`; unknown fields are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Map<String, Value>>,
    /// Free-form, indexed as strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    User,
    Agent,
    Service,
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    #[schemars(length(min = 1, max = 256))]
    pub id: String,
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Free-form authentication context (method, scopes, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_context: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// Which system emitted the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// W3C trace context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    pub trace_id: TraceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<SpanId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
}

// ---- payloads of the three planes -------------------------------------------------------------

/// Payload of `model.decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelDecision {
    pub model: ModelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ModelOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
}

/// Which model decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What the model was shown. Message shapes differ between providers, so they are kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Prompt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieved_context: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    ToolCall,
    Branch,
    Response,
    Handoff,
    Escalation,
}

/// What the model decided to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub kind: DecisionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The ids of the tool calls the model asked for; a tool invocation (or a review) naming
    /// one in the same trace (else session) is linked to this decision by the index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 256)))]
    pub tool_call_ids: Option<Vec<String>>,
}

/// Payload of `tool.invocation`. Its `caused_by` names the model decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolInvocation {
    pub tool: ToolRef,
    /// The id the model decision gave this call (`decision.tool_call_ids`): the index links
    /// the invocation to that decision, whichever arrives first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub status: ToolStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_refs: Option<Vec<ExternalRef>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolRef {
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Error,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolStatus {
    pub outcome: Outcome,
    /// A provider's error code: a string or an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<StatusCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusCode {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalRef {
    pub system: String,
    pub id: String,
}

/// Payload of `human.review`. The index derives `review_latency_ms = decided_at − presented_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HumanReview {
    pub reviewer: Reviewer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_action: Option<ProposedAction>,
    pub decision: ReviewDecision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modification: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<Value>,
    pub presented_at: Timestamp,
    pub decided_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resulting_state: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reviewer {
    #[schemars(length(min = 1, max = 256))]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProposedAction {
    /// The event (usually a model decision) whose action was proposed to the reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// The tool call proposed (a decision's `tool_call_ids`), when `event_id` is not known to
    /// the emitter: the index resolves it to the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewDecision {
    Approve,
    Reject,
    Modify,
    Escalate,
}

// ---- payloads of the other event types --------------------------------------------------------

/// Payload of `agent.session.started` and `agent.session.ended`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionLifecycle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The user goal or task the session serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Payload of `agent.spawned`: a sub-agent was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSpawned {
    #[schemars(length(min = 1, max = 256))]
    pub child_agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessOperation {
    Read,
    Write,
    Delete,
    Export,
}

/// Payload of `data.access`: an agent read or changed a data store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataAccess {
    #[schemars(length(min = 1, max = 1024))]
    pub resource: String,
    pub operation: AccessOperation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub record_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyEffect {
    Allow,
    Deny,
    Escalate,
}

/// Payload of `policy.decision`: a guardrail or policy engine ruled on an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyDecision {
    #[schemars(length(min = 1, max = 256))]
    pub policy_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    pub effect: PolicyEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A payload read through its event type's struct.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    ModelDecision(ModelDecision),
    ToolInvocation(ToolInvocation),
    HumanReview(HumanReview),
    SessionStarted(SessionLifecycle),
    SessionEnded(SessionLifecycle),
    AgentSpawned(AgentSpawned),
    DataAccess(DataAccess),
    PolicyDecision(PolicyDecision),
    /// `custom.<name>` (or no payload): any object.
    Custom(Map<String, Value>),
}

impl Payload {
    /// Reads `payload` as the struct of `event_type`. Validation has already checked the shape,
    /// so this fails only for values that were not validated.
    pub fn from_event(event: &Event) -> Result<Payload, serde_json::Error> {
        // Read in place (a `&Map` deserializes): only a custom payload is copied whole.
        let empty = Map::new();
        let map = event.payload.as_ref().unwrap_or(&empty);
        Ok(match event.event_type.as_str() {
            "model.decision" => Payload::ModelDecision(Deserialize::deserialize(map)?),
            "tool.invocation" => Payload::ToolInvocation(Deserialize::deserialize(map)?),
            "human.review" => Payload::HumanReview(Deserialize::deserialize(map)?),
            "agent.session.started" => Payload::SessionStarted(Deserialize::deserialize(map)?),
            "agent.session.ended" => Payload::SessionEnded(Deserialize::deserialize(map)?),
            "agent.spawned" => Payload::AgentSpawned(Deserialize::deserialize(map)?),
            "data.access" => Payload::DataAccess(Deserialize::deserialize(map)?),
            "policy.decision" => Payload::PolicyDecision(Deserialize::deserialize(map)?),
            _ => Payload::Custom(map.clone()),
        })
    }
}
