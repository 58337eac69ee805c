//! What a topic's record holds, before any broker or ledger is involved: its tenant (topic map,
//! header, default) and its events (one JSON value, or NDJSON lines), each with an event id
//! that makes a redelivery of the same record a replay.

use agentrail_event::TenantId;
use agentrail_service::KafkaSource;
use rdkafka::message::{Headers, Message};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest event id ([`agentrail_event::model::EVENT_ID`]).
const MAX_EVENT_ID: usize = 128;

/// A record as it was read, owned (a round holds many while it ingests them).
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub value: Option<Vec<u8>>,
}

/// One event a record carries (or why it is not one): `line` is its 1-based NDJSON line, none
/// for a record that is one JSON value; `bytes` what the dead-letter topic gets if it is refused.
#[derive(Debug, Clone)]
pub struct Unit {
    pub line: Option<usize>,
    pub bytes: Vec<u8>,
    pub event: Result<Value, String>,
}

impl Record {
    /// An owned copy of a polled message (the intake's rounds, and tests reading a topic back).
    pub fn from_message(m: &impl Message) -> Record {
        Record {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
            value: m.payload().map(<[u8]>::to_vec),
        }
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The record's tenant: its topic's in `topic_tenants` (a header naming another is refused:
    /// whoever may write to a tenant's topic may not write to other tenants), else the
    /// `tenant_header` header, else the source's `tenant`.
    pub fn tenant(&self, source: &KafkaSource) -> Result<TenantId, String> {
        let h = &source.tenant_header;
        let named = match self.header(h) {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v)
                    .map_err(|_| format!("header {h} is not UTF-8"))?
                    .trim(),
            ),
        };
        if let Some(owner) = source.topic_tenants.get(&self.topic) {
            if let Some(n) = named
                && n != owner
            {
                return Err(format!(
                    "header {h} names tenant {n:?}, but topic {} belongs to tenant {owner:?}",
                    self.topic
                ));
            }
            return TenantId::parse(owner);
        }
        match (named, &source.tenant) {
            (Some(n), _) => TenantId::parse(n).map_err(|e| format!("header {h}: {e}")),
            (None, Some(t)) => TenantId::parse(t),
            (None, None) => Err(format!(
                "no tenant: the record has no {h} header and topic {} is not in topic_tenants",
                self.topic
            )),
        }
    }

    /// The events of the record. A value that is one JSON document (possibly over several
    /// lines) is one event; otherwise each non-blank line is one (NDJSON). When no line of a
    /// multi-line value parses, it is one refused unit with the whole-value error, not a refusal
    /// per fragment. An event without `event_id` gets one naming this record (and line), so a
    /// redelivery is a replay.
    pub fn units(&self) -> Vec<Unit> {
        let Some(value) = &self.value else {
            return vec![self.refused(None, Vec::new(), "the record has no value".into())];
        };
        let Ok(text) = std::str::from_utf8(value) else {
            return vec![self.refused(None, value.clone(), "the record is not UTF-8".into())];
        };
        if text.trim().is_empty() {
            return vec![self.refused(None, value.clone(), "the record is empty".into())];
        }
        let whole = serde_json::from_str::<Value>(text);
        let lines: Vec<(usize, &str)> = text
            .split('\n')
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
            .collect();
        if lines.len() == 1 || whole.is_ok() {
            let event = whole
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| self.identified(v, None));
            return vec![Unit {
                line: None,
                bytes: value.clone(),
                event,
            }];
        }
        let units: Vec<Unit> = lines
            .into_iter()
            .map(|(n, l)| Unit {
                line: Some(n),
                bytes: l.as_bytes().to_vec(),
                event: serde_json::from_str::<Value>(l)
                    .map_err(|e| format!("line {n}: not JSON: {e}"))
                    .and_then(|v| self.identified(v, Some(n))),
            })
            .collect();
        if units.iter().all(|u| u.event.is_err()) {
            let reason = match whole {
                Err(e) => format!("not JSON, nor NDJSON: {e}"),
                Ok(_) => "not JSON".into(),
            };
            return vec![self.refused(None, value.clone(), reason)];
        }
        units
    }

    fn refused(&self, line: Option<usize>, bytes: Vec<u8>, reason: String) -> Unit {
        Unit {
            line,
            bytes,
            event: Err(reason),
        }
    }

    fn identified(&self, mut v: Value, line: Option<usize>) -> Result<Value, String> {
        let Some(obj) = v.as_object_mut() else {
            let at = line.map(|n| format!("line {n}: ")).unwrap_or_default();
            return Err(format!("{at}an event is a JSON object"));
        };
        if !obj.contains_key("event_id") {
            obj.insert("event_id".into(), Value::String(self.event_id(line)));
        }
        Ok(v)
    }

    /// `kafka-<topic>-<partition>-<offset>[-<line>]`; a topic name that would make it longer
    /// than an event id may be is replaced by the first 16 bytes of its SHA-256, in hex.
    pub fn event_id(&self, line: Option<usize>) -> String {
        let tail = match line {
            Some(n) => format!("{}-{}-{n}", self.partition, self.offset),
            None => format!("{}-{}", self.partition, self.offset),
        };
        let id = format!("kafka-{}-{tail}", self.topic);
        if id.len() <= MAX_EVENT_ID {
            id
        } else {
            let d = Sha256::digest(self.topic.as_bytes());
            format!("kafka-{}-{tail}", hex::encode(&d[..16]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> KafkaSource {
        toml_source(
            r#"brokers = "b:9092"
               topics = ["events", "acme-events"]
               group_id = "g"
               dead_letter_topic = "dlq"
               topic_tenants = { "acme-events" = "acme" }"#,
        )
    }

    fn toml_source(text: &str) -> KafkaSource {
        toml::from_str(text).unwrap()
    }

    fn record(topic: &str, headers: &[(&str, &str)], value: &str) -> Record {
        Record {
            topic: topic.into(),
            partition: 2,
            offset: 41,
            key: None,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), Some(v.as_bytes().to_vec())))
                .collect(),
            value: Some(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn the_topic_map_decides_and_a_header_cannot_contradict_it() {
        let s = source();
        let r = record("acme-events", &[], "{}");
        assert_eq!(r.tenant(&s).unwrap().as_str(), "acme");
        let r = record("acme-events", &[("agentrail-tenant", "acme")], "{}");
        assert_eq!(r.tenant(&s).unwrap().as_str(), "acme");
        let r = record("acme-events", &[("agentrail-tenant", "globex")], "{}");
        let e = r.tenant(&s).unwrap_err();
        assert!(
            e.contains("\"globex\"") && e.contains("belongs to tenant \"acme\""),
            "{e}"
        );
    }

    #[test]
    fn an_unmapped_topic_takes_the_header_else_the_default_else_refuses() {
        let mut s = source();
        let r = record("events", &[("agentrail-tenant", "globex")], "{}");
        assert_eq!(r.tenant(&s).unwrap().as_str(), "globex");
        let r = record("events", &[("agentrail-tenant", "Not A Tenant")], "{}");
        assert!(
            r.tenant(&s)
                .unwrap_err()
                .starts_with("header agentrail-tenant: ")
        );
        let r = record("events", &[], "{}");
        let e = r.tenant(&s).unwrap_err();
        assert!(e.contains("no agentrail-tenant header"), "{e}");
        s.tenant = Some("initech".into());
        assert_eq!(r.tenant(&s).unwrap().as_str(), "initech");
    }

    #[test]
    fn a_record_is_one_json_value_or_ndjson_lines() {
        let one = record("events", &[], "{\n  \"event_type\": \"custom.a\"\n}\n");
        let u = one.units();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].line, None);
        assert_eq!(
            u[0].event.as_ref().unwrap()["event_id"],
            "kafka-events-2-41"
        );

        let lines = record(
            "events",
            &[],
            "{\"event_type\":\"custom.a\"}\r\n\n{\"event_id\":\"mine\"}\nnot json\n[1]\n",
        );
        let u = lines.units();
        assert_eq!(u.len(), 4);
        assert_eq!(
            u[0].event.as_ref().unwrap()["event_id"],
            "kafka-events-2-41-1"
        );
        assert_eq!(u[1].line, Some(3));
        assert_eq!(u[1].event.as_ref().unwrap()["event_id"], "mine");
        assert_eq!(u[2].bytes, b"not json");
        assert!(
            u[2].event
                .as_ref()
                .unwrap_err()
                .starts_with("line 4: not JSON")
        );
        assert_eq!(
            u[3].event.as_ref().unwrap_err(),
            "line 5: an event is a JSON object"
        );
    }

    #[test]
    fn a_value_with_no_event_in_it_is_one_refusal() {
        for (value, reason) in [
            ("", "the record is empty"),
            (" \n ", "the record is empty"),
            ("{\"a\":\n1,\n", "not JSON, nor NDJSON: "),
            ("{oops", "not JSON: "),
        ] {
            let u = record("events", &[], value).units();
            assert_eq!(u.len(), 1, "{value:?}");
            assert!(
                u[0].event.as_ref().unwrap_err().starts_with(reason),
                "{value:?}: {:?}",
                u[0].event
            );
            assert_eq!(u[0].bytes, value.as_bytes());
        }
        let mut r = record("events", &[], "");
        r.value = None;
        assert_eq!(
            r.units()[0].event.as_ref().unwrap_err(),
            "the record has no value"
        );
        r.value = Some(vec![0xff, b'{']);
        assert_eq!(
            r.units()[0].event.as_ref().unwrap_err(),
            "the record is not UTF-8"
        );
    }

    #[test]
    fn a_long_topic_name_is_hashed_into_the_event_id() {
        let topic = "t".repeat(200);
        let id = record(&topic, &[], "{}").event_id(Some(7));
        assert!(id.len() <= MAX_EVENT_ID);
        assert!(id.starts_with("kafka-") && id.ends_with("-2-41-7"), "{id}");
        assert_eq!(id, record(&topic, &[], "{}").event_id(Some(7)));
    }
}
