//! Validation of incoming events: every problem, each with its field path and reason.

use crate::json::{self, Seg, render_path};
use crate::model::{Event, EventId, Payload, SHAPES, TIMESTAMP};
use crate::schema::event_schema;
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// One thing wrong with an event: where (`payload.decision`, `""` for the whole event) and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// All the problems of one event, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidEvent {
    pub problems: Vec<Problem>,
}

/// An event that passed validation: the emitter's JSON object, unchanged (unknown fields inside
/// `payload` and `attributes` included), and its typed reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub value: Map<String, Value>,
    pub event: Event,
    pub payload: Payload,
}

const NOT_A_DATE: &str = " (not a real date and time)";

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&event_schema())
        // The schema is generated from our own types; the tests build it, so this cannot fail
        // at run time without failing the test suite first.
        .unwrap_or_else(|e| panic!("the generated event schema does not compile: {e}"))
});

/// Parses (strict JSON, see [`json::parse`]) and validates one event.
pub fn validate_bytes(bytes: &[u8]) -> Result<ValidEvent, InvalidEvent> {
    match json::parse(bytes) {
        Ok(v) => validate_value(v),
        Err(e) => Err(InvalidEvent {
            problems: vec![Problem {
                path: e.path.clone(),
                reason: format!("{} at line {} column {}", e.kind, e.line, e.column),
            }],
        }),
    }
}

/// Validates an already-parsed event. `value` must come from [`json::parse`] (or be built in
/// code) so that its numbers obey the canonical-JSON rules. Types of agentrail's own records
/// ([`crate::model::is_system_event_type`]) are refused: this is what every intake calls.
pub fn validate_value(value: Value) -> Result<ValidEvent, InvalidEvent> {
    validate(value, false)
}

/// [`validate_value`] for a record agentrail writes itself (an erasure record): its type may be
/// one of the system's. Never for what an emitter sent.
pub fn validate_system_value(value: Value) -> Result<ValidEvent, InvalidEvent> {
    validate(value, true)
}

fn validate(value: Value, system: bool) -> Result<ValidEvent, InvalidEvent> {
    let Value::Object(map) = value else {
        return Err(InvalidEvent {
            problems: vec![Problem {
                path: String::new(),
                reason: format!("an event must be a JSON object, not {}", kind_name(&value)),
            }],
        });
    };
    let value = Value::Object(map);
    let mut problems: Vec<Problem> = Vec::new();
    for error in VALIDATOR.iter_errors(&value) {
        let base: Vec<Seg> = error
            .instance_path()
            .segments()
            .map(|s| match s {
                LocationSegment::Property(p) => Seg::Key(p.into_owned()),
                LocationSegment::Index(i) => Seg::Index(i),
            })
            .collect();
        let at = |extra: Option<&str>| {
            let mut segs = base.clone();
            if let Some(k) = extra {
                segs.push(Seg::Key(k.to_owned()));
            }
            render_path(&segs)
        };
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let reason = if base.is_empty() {
                        "unknown field (not part of event schema v1)"
                    } else {
                        "unknown field"
                    };
                    problems.push(Problem {
                        path: at(Some(key)),
                        reason: reason.into(),
                    });
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let event_type = value
                    .get("event_type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let reason = match (base.is_empty(), name) {
                    (true, "session_id") => format!("required for {event_type} events"),
                    (true, "payload") => format!("required for {event_type} events"),
                    _ => "required".to_owned(),
                };
                problems.push(Problem {
                    path: at(Some(name)),
                    reason,
                });
            }
            ValidationErrorKind::Pattern { pattern } => {
                let reason = match SHAPES.iter().find(|s| s.pattern == pattern) {
                    Some(shape) => shape.explanation.to_owned(),
                    None => without_value(&error),
                };
                problems.push(Problem {
                    path: at(None),
                    reason,
                });
            }
            ValidationErrorKind::Format { format } if format == "date-time" => {
                problems.push(Problem {
                    path: at(None),
                    reason: format!("{}{NOT_A_DATE}", TIMESTAMP.explanation),
                });
            }
            _ => problems.push(Problem {
                path: at(None),
                reason: without_value(&error),
            }),
        }
    }
    // agentrail's own markers of sealed and erased fields are never content: a client-supplied
    // `{"$enc": …}` would be stored as if sealed (its text in clear in every file) and opened
    // for readers. Refused wherever it appears.
    if has_reserved_marker(&value) {
        reserved_markers(&value, &mut Vec::new(), &mut problems);
    }
    if let Some(t) = value.get("event_type").and_then(Value::as_str)
        && crate::model::is_system_event_type(t)
        && !system
    {
        problems.push(Problem {
            path: "event_type".into(),
            reason: format!(
                "{t:?} is a type of agentrail's own records ({}*, {}): an emitter cannot send it",
                crate::model::SYSTEM_EVENT_PREFIX,
                crate::model::LEGACY_SYSTEM_EVENT_TYPES.join(", ")
            ),
        });
    }
    if problems.is_empty() {
        // Checks the schema cannot express.
        if let (Some(id), Some(Value::Array(parents))) = (
            value.get("event_id").and_then(Value::as_str),
            value.get("caused_by"),
        ) {
            for (i, p) in parents.iter().enumerate() {
                if p.as_str() == Some(id) {
                    problems.push(Problem {
                        path: format!("caused_by[{i}]"),
                        reason: "an event cannot be its own cause".into(),
                    });
                }
            }
        }
    }
    // A malformed timestamp fails both its pattern and the date-time format: keep one report.
    let pattern_paths: Vec<String> = problems
        .iter()
        .filter(|p| p.reason == TIMESTAMP.explanation)
        .map(|p| p.path.clone())
        .collect();
    problems.retain(|p| !(p.reason.ends_with(NOT_A_DATE) && pattern_paths.contains(&p.path)));
    if !problems.is_empty() {
        problems.sort();
        problems.dedup();
        return Err(InvalidEvent { problems });
    }
    // Read from the checked value in place: the typed form copies only what it holds.
    let typed = Event::deserialize(&value).and_then(|event| {
        let payload = Payload::from_event(&event)?;
        Ok((event, payload))
    });
    match (typed, value) {
        (Ok((event, payload)), Value::Object(value)) => Ok(ValidEvent {
            value,
            event,
            payload,
        }),
        // The schema accepted what the types reject: report it rather than lose the event silently.
        (Err(e), _) => Err(InvalidEvent {
            problems: vec![Problem {
                path: String::new(),
                reason: quotes_redacted(&e.to_string()),
            }],
        }),
        (Ok(_), _) => Err(InvalidEvent {
            problems: vec![Problem {
                path: String::new(),
                reason: "not an object".into(),
            }],
        }),
    }
}

impl ValidEvent {
    /// The event id, if the emitter gave one.
    pub fn event_id(&self) -> Option<&EventId> {
        self.event.event_id.as_ref()
    }
}

/// The validator's message without the rejected value, which it begins with
/// (`"jane@example.com" is not of type "object"`): error bodies end up in the logs of proxies
/// and clients, and the value may be exactly what should not be there. What is left names the
/// rule; the value is described by its type and size.
fn without_value(error: &jsonschema::ValidationError<'_>) -> String {
    let message = error.to_string();
    let instance = error.instance();
    let shown = match instance.as_ref() {
        Value::String(s) => match s.chars().count() {
            1 => "a string of 1 character".to_owned(),
            n => format!("a string of {n} characters"),
        },
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(m) => format!("an object of {} members", m.len()),
        other => kind_name(other).to_owned(),
    };
    let text = instance.to_string();
    let replaced = if let Some(rest) = message.strip_prefix(&text) {
        format!("{shown}{rest}")
    } else if text.len() > 4 {
        message.replace(&text, &shown)
    } else {
        message
    };
    quotes_redacted(&replaced)
}

/// `message` with every quoted or backticked text longer than a few characters shortened to
/// its first two characters: serde's messages quote the value they reject
/// (``unknown variant `…`, expected one of …``).
fn quotes_redacted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['`', '"']) {
        let q = rest[i..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        match after.find(q) {
            Some(j) => {
                let inner = &after[..j];
                if inner.chars().count() > 24 {
                    let head: String = inner.chars().take(2).collect();
                    out.push_str(&format!("{head}…"));
                } else {
                    out.push_str(inner);
                }
                out.push(q);
                rest = &after[j + 1..];
            }
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Keys agentrail writes into stored events and no emitter may send.
pub const RESERVED_MARKERS: [&str; 2] = ["$enc", "$erased"];

/// Whether any object in `v` has a key of [`RESERVED_MARKERS`]: the walk every event takes,
/// with no path built ([`reserved_markers`] then names where).
fn has_reserved_marker(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, child)| RESERVED_MARKERS.contains(&k.as_str()) || has_reserved_marker(child)),
        Value::Array(items) => items.iter().any(has_reserved_marker),
        _ => false,
    }
}

fn reserved_markers(v: &Value, segs: &mut Vec<Seg>, problems: &mut Vec<Problem>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                segs.push(Seg::Key(k.clone()));
                if RESERVED_MARKERS.contains(&k.as_str()) {
                    problems.push(Problem {
                        path: render_path(segs),
                        reason: format!(
                            "{k:?} is agentrail's marker of a sealed or erased field and cannot be sent: send the plain value (sensitive fields are sealed on arrival)"
                        ),
                    });
                } else {
                    reserved_markers(child, segs, problems);
                }
                segs.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                segs.push(Seg::Index(i));
                reserved_markers(child, segs, problems);
                segs.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `input`; returns "ok" or one line per problem.
    fn check(input: &str) -> String {
        match validate_bytes(input.as_bytes()) {
            Ok(_) => "ok".into(),
            Err(e) => e.problems.iter().map(|p| format!("{p}\n")).collect(),
        }
    }

    const DECISION: &str = r#"{"schema_version":"1","event_id":"ev-1","event_type":"model.decision",
        "session_id":"s1","occurred_at":"2026-01-31T12:00:00.123456789Z",
        "payload":{"model":{"provider":"acme","name":"gpt-x","version":"2026-01"},
                   "decision":{"kind":"tool_call","tool_name":"refund"},"vendor_extra":{"a":1}},
        "attributes":{"team":"payments"}}"#;

    #[test]
    fn a_full_decision_is_valid_and_keeps_unknown_payload_fields() {
        assert_eq!(check(DECISION), "ok");
        let v = validate_bytes(DECISION.as_bytes()).unwrap();
        assert_eq!(v.value["payload"]["vendor_extra"]["a"], 1);
        assert!(matches!(v.payload, Payload::ModelDecision(ref d) if d.model.name == "gpt-x"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let input = r#"{"schema_version":"2","event_type":"tool.invocation","sesion_id":"s",
            "occurred_at":"2026-02-30T00:00:00Z","trace":{"trace_id":"XYZ"},
            "caused_by":["a","a"],"actor":{"id":"u1","type":"robot","extra":1},
            "payload":{"tool":{"name":"search"},"status":{"outcome":"maybe"},"duration_ms":-1}}"#;
        let got = check(input);
        let expected = "\
actor.extra: unknown field
actor.type: a string of 5 characters is not one of \"user\", \"agent\" or \"service\"
caused_by: an array of 2 items has non-unique elements
occurred_at: must be an RFC 3339 UTC timestamp with at most 9 fractional digits, like 2026-01-31T12:00:00.123456789Z (not a real date and time)
payload.duration_ms: a number is less than the minimum of 0
payload.status.outcome: a string of 5 characters is not one of \"ok\", \"error\" or \"timeout\"
schema_version: a string of 1 character is not one of \"1\"
sesion_id: unknown field (not part of event schema v1)
session_id: required for tool.invocation events
trace.trace_id: must be 32 lowercase hex digits (W3C trace context)
";
        assert_eq!(got, expected);
    }

    #[test]
    fn system_event_types_are_refused_from_emitters() {
        for t in [
            "custom.agentrail.subject.erased",
            "custom.agentrail.anything",
            "custom.subject.erased",
            "custom.tenant.erased",
        ] {
            let ev = format!(r#"{{"schema_version":"1","event_type":"{t}"}}"#);
            let e = validate_bytes(ev.as_bytes()).unwrap_err();
            assert_eq!(e.problems.len(), 1, "{t}: {e:?}");
            assert_eq!(e.problems[0].path, "event_type");
            assert!(e.problems[0].reason.contains(t), "{}", e.problems[0].reason);
            let v = crate::json::parse(ev.as_bytes()).unwrap();
            assert!(validate_system_value(v).is_ok(), "{t}");
        }
        // Near misses are anyone's.
        for t in [
            "custom.agentrailx",
            "custom.subject.erased2",
            "custom.my.agentrail.x",
        ] {
            let ev = format!(r#"{{"schema_version":"1","event_type":"{t}"}}"#);
            assert!(validate_bytes(ev.as_bytes()).is_ok(), "{t}");
        }
    }

    #[test]
    fn event_types_and_required_payloads() {
        let base = r#""schema_version":"1","session_id":"s""#;
        assert_eq!(
            check(&format!(
                r#"{{{base},"event_type":"custom.billing_run","payload":{{"any":[1]}}}}"#
            )),
            "ok"
        );
        assert_eq!(
            check(&format!(r#"{{{base},"event_type":"Custom.X"}}"#)),
            format!("event_type: {}\n", crate::model::EVENT_TYPE.explanation)
        );
        assert_eq!(
            check(&format!(r#"{{{base},"event_type":"human.review"}}"#)),
            "payload: required for human.review events\n"
        );
        assert_eq!(
            check(&format!(
                r#"{{{base},"event_type":"human.review","payload":{{"reviewer":{{"id":"r"}},"decision":"approve","presented_at":"2026-01-01T00:00:00Z"}}}}"#
            )),
            "payload.decided_at: required\n"
        );
        // Not agent events: no session needed.
        assert_eq!(
            check(
                r#"{"schema_version":"1","event_type":"policy.decision","payload":{"policy_id":"p","effect":"deny"}}"#
            ),
            "ok"
        );
        assert_eq!(
            check(r#"{"schema_version":"1","event_type":"agent.session.started"}"#),
            "session_id: required for agent.session.started events\n"
        );
    }

    #[test]
    fn reasons_name_the_rule_never_the_value() {
        let review = r#"{"schema_version":"1","event_type":"human.review","session_id":"s",
            "occurred_at":"2026-01-31T12:00:00Z","payload":{"reviewer":{"id":"r"},
            "decision":"jane.doe@example.com 4111 1111 1111 1111","target_event_id":"x"}}"#;
        let got = check(review);
        assert!(got.contains("payload.decision"), "{got}");
        assert!(!got.contains("jane") && !got.contains("4111"), "{got}");
        let number = r#"{"schema_version":"1","event_type":"data.access","payload":{"resource":"db",
            "operation":"read","n":41111111111111111111}}"#;
        let got = check(number);
        assert!(
            got.contains("payload.n") && got.contains("20 characters"),
            "{got}"
        );
        assert!(!got.contains("4111111"), "{got}");
    }

    #[test]
    fn nulls_non_objects_and_bad_json() {
        assert_eq!(
            check(
                r#"{"schema_version":"1","event_type":"data.access","project_id":null,"payload":{"resource":"db","operation":"read"}}"#
            ),
            "project_id: null is not of type \"string\"\n"
        );
        assert_eq!(
            check("[1]"),
            "an event must be a JSON object, not an array\n"
        );
        assert_eq!(
            check(r#"{"schema_version":"1","schema_version":"1"}"#),
            "schema_version: duplicate key \"schema_version\" at line 1 column 23\n"
        );
        assert_eq!(
            check(
                r#"{"schema_version":"1","event_id":"e","event_type":"data.access","caused_by":["e"],"payload":{"resource":"db","operation":"read"}}"#
            ),
            "caused_by[0]: an event cannot be its own cause\n"
        );
        assert_eq!(
            check(
                r#"{"schema_version":"1","event_id":"a/b","event_type":"data.access","payload":{"resource":"db","operation":"read"}}"#
            ),
            format!("event_id: {}\n", crate::model::EVENT_ID.explanation)
        );
    }
}
