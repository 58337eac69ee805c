//! The stored form of an event (DESIGN.md §2, §3): the emitter's event plus the fields the
//! sequencer adds, serialized as RFC 8785 canonical JSON. Those bytes are what the ledger keeps,
//! what the event hash and the Merkle leaf cover, and what exports carry.
//!
//! Building the stored form is split in two so the costly part runs outside the tenant's lock:
//! [`prepare`] canonicalizes every member of the emitter's object once; [`finish`] (under the
//! lock) only merges the server's few members in key order. Top-level keys are ASCII (unknown
//! top-level fields are rejected by validation), so byte order is RFC 8785's UTF-16 order.

use crate::clock::{Clock, format_timestamp};
use agentrail_event::hash::to_hex;
use agentrail_event::json::{self, write_canonical};
use agentrail_event::{TenantId, ValidEvent};
use serde::Deserialize;
use serde_json::Value;

/// Fields only the sequencer writes; an emitter cannot send them (validation rejects unknown
/// top-level fields) and they are stripped to recover what the emitter sent.
pub const SERVER_FIELDS: &[&str] = &[
    "seq",
    "received_at",
    "prev_hash",
    "session_seq",
    "session_prev_hash",
    "clock_skew_ms",
    "content_digest",
    "hash",
];

/// Why an event cannot be sequenced for this tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    #[error("tenant_id {found:?} does not match the tenant {expected:?} it is sent to")]
    TenantMismatch { expected: String, found: String },
    #[error("occurred_at {0:?} is not a valid timestamp")]
    BadOccurredAt(String),
    #[error("event cannot be serialized canonically: {0}")]
    Canonical(String),
}

/// An event ready for sequencing.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub event_id: String,
    /// Whether the event id was assigned here (then there is nothing to be idempotent about).
    pub assigned_id: bool,
    pub session_id: Option<String>,
    pub caused_by: Option<Vec<String>>,
    pub occurred_at: Option<jiff::Timestamp>,
    /// Canonical `"key":value` members of the emitter's object (with `event_id` and `tenant_id`
    /// filled in, without `caused_by`), sorted by key.
    members: Vec<(String, Vec<u8>)>,
    /// The caller's keyed digest of what the emitter sent before any field was sealed or
    /// tokenized ([`submitted_bytes`]); stored as `content_digest`, it is what idempotency
    /// compares when both sides have one.
    pub content_digest: Option<String>,
}

impl Prepared {
    /// An upper bound of the stored form's length: the members plus the most the sequencer adds
    /// (fixed fields, and per causal parent its id and a hash).
    pub fn max_stored_len(&self) -> usize {
        let members: usize = self.members.iter().map(|m| m.1.len() + 1).sum::<usize>()
            + self.content_digest.as_ref().map_or(0, |d| d.len() + 20);
        let causes: usize = self
            .caused_by
            .iter()
            .flatten()
            .map(|id| id.len() + 100)
            .sum();
        members + causes + 512
    }
}

/// What the sequencer adds.
#[derive(Debug, Clone)]
pub struct ServerFields {
    pub seq: u64,
    pub received_at: jiff::Timestamp,
    pub prev_hash: Option<[u8; 32]>,
    /// `(session_seq, session_prev_hash)` when the event has a session.
    pub session: Option<(u64, Option<[u8; 32]>)>,
    /// `caused_by` resolved to `(event_id, hash)`; `None` hash for an unknown parent.
    pub caused_by: Option<Vec<(String, Option<[u8; 32]>)>>,
    pub clock_skew_ms: Option<i64>,
}

fn member(key: &str, value: &Value, out: &mut Vec<u8>) -> Result<(), PrepareError> {
    json::write_string(key, out);
    out.push(b':');
    write_canonical(value, out).map_err(|e| PrepareError::Canonical(format!("{key}: {e}")))
}

/// Checks the event against its tenant, assigns an event id if it has none (a UUIDv7 from the
/// clock) and canonicalizes its members.
pub fn prepare(
    event: ValidEvent,
    tenant: &TenantId,
    clock: &dyn Clock,
) -> Result<Prepared, PrepareError> {
    let mut map = event.value;
    match map.get("tenant_id") {
        Some(Value::String(t)) if t != tenant.as_str() => {
            return Err(PrepareError::TenantMismatch {
                expected: tenant.to_string(),
                found: t.clone(),
            });
        }
        _ => {}
    }
    map.insert("tenant_id".into(), Value::String(tenant.to_string()));
    let (event_id, assigned_id) = match map.get("event_id") {
        Some(Value::String(id)) => (id.clone(), false),
        _ => {
            let id = new_event_id(clock);
            map.insert("event_id".into(), Value::String(id.clone()));
            (id, true)
        }
    };
    let caused_by = match map.remove("caused_by") {
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    };
    let occurred_at = match map.get("occurred_at") {
        Some(Value::String(s)) => Some(
            s.parse::<jiff::Timestamp>()
                .map_err(|_| PrepareError::BadOccurredAt(s.clone()))?,
        ),
        _ => None,
    };
    let session_id = match map.get("session_id") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut members = Vec::with_capacity(map.len() + 8);
    for (k, v) in &map {
        let mut out = Vec::with_capacity(64);
        member(k, v, &mut out)?;
        members.push((k.clone(), out));
    }
    members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Prepared {
        event_id,
        assigned_id,
        session_id,
        caused_by,
        occurred_at,
        members,
        content_digest: None,
    })
}

/// The canonical bytes of what the emitter sent, with `tenant_id` filled in: for an event with
/// an `event_id`, equal to [`submitted_content`] of its [`prepare`]d form, but taken from the
/// event as submitted (before sealing and tokenization), so a caller can key a digest of it
/// that no data-key rotation or erasure changes.
pub fn submitted_bytes(event: &ValidEvent, tenant: &TenantId) -> Result<Vec<u8>, PrepareError> {
    let tenant_id = Value::String(tenant.to_string());
    let mut members: Vec<(&str, &Value)> = event
        .value
        .iter()
        .filter(|(k, _)| k.as_str() != "tenant_id")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    members.push(("tenant_id", &tenant_id));
    // Top-level keys are ASCII: byte order is RFC 8785's order.
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        member(k, v, &mut out)?;
    }
    out.push(b'}');
    Ok(out)
}

/// A UUIDv7 from the injected clock and fresh randomness: every event id agentrail assigns comes
/// from here (the ledger for events without one, the service before sealing, whose associated
/// data names the event).
pub fn new_event_id(clock: &dyn Clock) -> String {
    let now = clock.now();
    let secs = u64::try_from(now.as_second()).unwrap_or(0);
    let nanos = u32::try_from(now.subsec_nanosecond()).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos);
    uuid::Uuid::new_v7(ts).hyphenated().to_string()
}

fn hash_value(h: &Option<[u8; 32]>) -> Value {
    match h {
        Some(h) => Value::String(to_hex(h)),
        None => Value::Null,
    }
}

/// `{` members in key order, comma-separated `}`.
fn join(mut members: Vec<(&str, &[u8])>) -> Vec<u8> {
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let len = members.iter().map(|m| m.1.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'{');
    for (i, (_, bytes)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(bytes);
    }
    out.push(b'}');
    out
}

fn refs(members: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    let mut out = Vec::with_capacity(members.len() + 8);
    out.extend(members.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    out
}

/// The canonical bytes of the stored event.
pub fn finish(p: &Prepared, s: &ServerFields) -> Vec<u8> {
    let mut extra: Vec<(String, Value)> = vec![
        ("seq".into(), Value::from(s.seq)),
        (
            "received_at".into(),
            Value::String(format_timestamp(s.received_at)),
        ),
        ("prev_hash".into(), hash_value(&s.prev_hash)),
    ];
    if let Some((session_seq, prev)) = &s.session {
        extra.push(("session_seq".into(), Value::from(*session_seq)));
        extra.push(("session_prev_hash".into(), hash_value(prev)));
    }
    if let Some(causes) = &s.caused_by {
        let items = causes
            .iter()
            .map(|(id, h)| {
                let mut m = serde_json::Map::new();
                m.insert("event_id".into(), Value::String(id.clone()));
                m.insert("hash".into(), hash_value(h));
                Value::Object(m)
            })
            .collect();
        extra.push(("caused_by".into(), Value::Array(items)));
    }
    if let Some(skew) = s.clock_skew_ms {
        extra.push(("clock_skew_ms".into(), Value::from(skew)));
    }
    if let Some(d) = &p.content_digest {
        extra.push(("content_digest".into(), Value::String(d.clone())));
    }
    let extra: Vec<(String, Vec<u8>)> = extra
        .into_iter()
        .map(|(k, v)| {
            let mut out = Vec::with_capacity(80);
            // Integers here are far below 2^53 and strings are plain: this cannot fail.
            let _ = member(&k, &v, &mut out);
            (k, out)
        })
        .collect();
    let mut members = refs(&p.members);
    members.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    join(members)
}

/// The canonical bytes of what the emitter sent (with `event_id` and `tenant_id` filled in):
/// the content idempotency compares.
pub fn submitted_content(p: &Prepared) -> Vec<u8> {
    let mut causes = Vec::new();
    if let Some(ids) = &p.caused_by {
        let v = Value::Array(ids.iter().cloned().map(Value::String).collect());
        let _ = member("caused_by", &v, &mut causes);
    }
    let mut members = refs(&p.members);
    if p.caused_by.is_some() {
        members.push(("caused_by", &causes));
    }
    join(members)
}

/// The same content recovered from a stored form: server fields stripped, `caused_by` back to
/// plain ids.
pub fn submitted_content_of_stored(stored: &[u8]) -> Result<Vec<u8>, String> {
    let Value::Object(mut map) = json::parse(stored).map_err(|e| e.to_string())? else {
        return Err("stored event is not a JSON object".into());
    };
    for f in SERVER_FIELDS {
        map.remove(*f);
    }
    if let Some(Value::Array(items)) = map.get_mut("caused_by") {
        for item in items.iter_mut() {
            let id = item.get("event_id").cloned().unwrap_or(Value::Null);
            *item = id;
        }
    }
    json::to_canonical_vec(&Value::Object(map)).map_err(|e| e.to_string())
}

/// The fields of a stored event the ledger itself reads back (recovery, verification, receipts).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredHeader {
    pub seq: u64,
    pub event_id: String,
    pub tenant_id: String,
    pub received_at: String,
    pub prev_hash: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub session_seq: Option<u64>,
    #[serde(default)]
    pub session_prev_hash: Option<String>,
    #[serde(default)]
    pub caused_by: Option<Vec<CauseRef>>,
    #[serde(default)]
    pub content_digest: Option<String>,
}

/// One resolved causal link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CauseRef {
    pub event_id: String,
    pub hash: Option<String>,
}

impl StoredHeader {
    pub fn parse(stored: &[u8]) -> Result<StoredHeader, String> {
        serde_json::from_slice(stored).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use agentrail_event::validate_bytes;

    fn check(event: &str, server: ServerFields, expected: &str) {
        let clock = ManualClock::at("2026-01-01T00:00:00Z");
        let tenant = TenantId::parse("acme").unwrap();
        let p = prepare(validate_bytes(event.as_bytes()).unwrap(), &tenant, &clock).unwrap();
        let stored = finish(&p, &server);
        assert_eq!(String::from_utf8(stored.clone()).unwrap(), expected);
        // The stored form is canonical: re-canonicalizing changes nothing.
        assert_eq!(json::canonicalize(&stored).unwrap(), stored);
        // And the emitter's content comes back out of it.
        assert_eq!(
            submitted_content_of_stored(&stored).unwrap(),
            submitted_content(&p)
        );
    }

    #[test]
    fn stored_form_merges_server_fields_in_canonical_order() {
        let event = r#"{"schema_version":"1","event_id":"e2","event_type":"tool.invocation",
            "session_id":"s1","caused_by":["e1","zz"],
            "payload":{"tool":{"name":"refund"},"status":{"outcome":"ok"}}}"#;
        let ts: jiff::Timestamp = "2026-01-01T00:00:01.5Z".parse().unwrap();
        check(
            event,
            ServerFields {
                seq: 1,
                received_at: ts,
                prev_hash: Some([0xab; 32]),
                session: Some((1, Some([0xcd; 32]))),
                caused_by: Some(vec![("e1".into(), Some([0xab; 32])), ("zz".into(), None)]),
                clock_skew_ms: Some(-1500),
            },
            &format!(
                concat!(
                    r#"{{"caused_by":[{{"event_id":"e1","hash":"{ab}"}},{{"event_id":"zz","hash":null}}],"#,
                    r#""clock_skew_ms":-1500,"event_id":"e2","event_type":"tool.invocation","#,
                    r#""payload":{{"status":{{"outcome":"ok"}},"tool":{{"name":"refund"}}}},"#,
                    r#""prev_hash":"{ab}","received_at":"2026-01-01T00:00:01.500000000Z","#,
                    r#""schema_version":"1","seq":1,"session_id":"s1","session_prev_hash":"{cd}","#,
                    r#""session_seq":1,"tenant_id":"acme"}}"#
                ),
                ab = "ab".repeat(32),
                cd = "cd".repeat(32)
            ),
        );
    }

    #[test]
    fn first_event_has_null_prev_hash_and_an_assigned_id() {
        let clock = ManualClock::at("2026-01-01T00:00:00Z");
        let tenant = TenantId::parse("acme").unwrap();
        let ev = validate_bytes(br#"{"schema_version":"1","event_type":"custom.x"}"#).unwrap();
        let p = prepare(ev, &tenant, &clock).unwrap();
        assert!(p.assigned_id);
        assert_eq!(
            uuid::Uuid::parse_str(&p.event_id)
                .unwrap()
                .get_version_num(),
            7
        );
        let stored = finish(
            &p,
            &ServerFields {
                seq: 0,
                received_at: clock.now(),
                prev_hash: None,
                session: None,
                caused_by: None,
                clock_skew_ms: None,
            },
        );
        let h = StoredHeader::parse(&stored).unwrap();
        assert_eq!(h.prev_hash, None);
        assert_eq!(h.event_id, p.event_id);
        assert_eq!(h.tenant_id, "acme");
    }

    #[test]
    fn a_foreign_tenant_id_is_refused() {
        let clock = ManualClock::at("2026-01-01T00:00:00Z");
        let tenant = TenantId::parse("acme").unwrap();
        let ev = validate_bytes(
            br#"{"schema_version":"1","event_type":"custom.x","tenant_id":"globex"}"#,
        )
        .unwrap();
        assert_eq!(
            prepare(ev, &tenant, &clock).unwrap_err(),
            PrepareError::TenantMismatch {
                expected: "acme".into(),
                found: "globex".into()
            }
        );
    }
}
