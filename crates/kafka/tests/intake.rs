//! The Kafka intake against a real Kafka-protocol broker (tansu, see `agentrail_testkit::kafka`):
//! records with duplicates, NDJSON, derived event ids and every kind of bad input go through a
//! consumer group into the ledger; each valid event is stored exactly once, each refusal is in
//! the dead-letter topic with its error, the offsets are committed, and a restarted source
//! consumes nothing twice.

use agentrail_event::TenantId;
use agentrail_kafka::records::Record;
use agentrail_kafka::{
    ERROR_HEADER, KafkaIntake, SOURCE_LINE_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
};
use agentrail_service::{Intake, KafkaSource, Service, ServiceConfig};
use agentrail_testkit::Generator;
use agentrail_testkit::kafka::Broker;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEAD: &str = "events.dead-letter";

fn source(broker: &Broker) -> KafkaSource {
    toml::from_str(&format!(
        r#"name = "agents"
           brokers = "{}"
           topics = ["events", "acme-events"]
           group_id = "agentrail-test"
           dead_letter_topic = "{DEAD}"
           topic_tenants = {{ "acme-events" = "acme" }}
           max_batch_records = 64"#,
        broker.bootstrap()
    ))
    .unwrap()
}

fn ids(service: &Service, tenant: &str) -> Vec<String> {
    let t = TenantId::parse(tenant).unwrap();
    service
        .ledger()
        .read_range(&t, 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.event_id().unwrap())
        .collect()
}

/// `agentrail_kafka_*` samples of the metrics text, by their label set.
fn kafka_metrics(service: &Service) -> BTreeMap<String, i64> {
    service
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("agentrail_kafka_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// A record that must be refused: topic, key, headers, value, and what its error says.
type Refusal<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String, &'a str);

/// A header value as text.
fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn each_valid_record_is_stored_once_and_each_refusal_is_dead_lettered() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
    let broker = Broker::start();
    broker.create_topic("events", 4);
    broker.create_topic("acme-events", 2);
    broker.create_topic(DEAD, 1);
    let dir = tempfile::tempdir().unwrap();
    let opened = Service::open(ServiceConfig::unscheduled(dir.path())).unwrap();
    let service: Arc<Service> = opened.service;
    for t in ["acme", "globex"] {
        service
            .create_tenant_offline(&TenantId::parse(t).unwrap())
            .unwrap();
    }

    let p = broker.producer();
    let send = |topic: &str, key: &str, headers: &[(&str, &str)], v: &[u8]| {
        Broker::send(&p, topic, Some(key), headers, v)
    };
    let globex = [("agentrail-tenant", "globex")];
    let events: Vec<Value> = Generator::new(7, "globex", 4).take(103).collect();
    for ev in &events[..100] {
        let id = ev["event_id"].as_str().unwrap();
        send("events", id, &globex, ev.to_string().as_bytes());
    }
    // Exporter-style retries: the same records again (same key, so after the originals).
    for ev in &events[..20] {
        let id = ev["event_id"].as_str().unwrap();
        send("events", id, &globex, ev.to_string().as_bytes());
    }
    // NDJSON: three events and a broken line between them.
    let ndjson = format!(
        "{}\n{{not json\n{}\n{}\n",
        events[100], events[101], events[102]
    );
    send("events", "ndjson", &globex, ndjson.as_bytes());
    // acme's topic: no event ids (derived from the record), a header agreeing with the map.
    let acme: Vec<Value> = Generator::new(8, "acme", 2)
        .take(40)
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("event_id");
            e
        })
        .collect();
    for (i, ev) in acme.iter().enumerate() {
        let h: &[(&str, &str)] = if i < 10 {
            &[("agentrail-tenant", "acme")]
        } else {
            &[]
        };
        send(
            "acme-events",
            &format!("a{i}"),
            h,
            ev.to_string().as_bytes(),
        );
    }
    // What must be refused, each with its reason.
    let mut untyped = events[50].clone();
    untyped["event_id"] = "globex-untyped".into();
    untyped.as_object_mut().unwrap().remove("event_type");
    let mut conflicting = events[3].clone();
    conflicting["occurred_at"] = "2026-01-01T00:00:00Z".into();
    let conflict_id = events[3]["event_id"].as_str().unwrap();
    let bad: Vec<Refusal<'_>> = vec![
        (
            "events",
            "bad-json",
            globex.to_vec(),
            "not json at all".into(),
            "not JSON",
        ),
        (
            "events",
            "untyped",
            globex.to_vec(),
            untyped.to_string(),
            "event_type",
        ),
        (
            "events",
            conflict_id,
            globex.to_vec(),
            conflicting.to_string(),
            conflict_id,
        ),
        (
            "acme-events",
            "wrong-tenant",
            globex.to_vec(),
            acme[0].to_string(),
            "belongs to tenant \"acme\"",
        ),
        (
            "events",
            "no-tenant",
            vec![],
            events[0].to_string(),
            "no tenant",
        ),
        (
            "events",
            "unknown-tenant",
            vec![("agentrail-tenant", "nosuch")],
            events[0].to_string(),
            "tenant nosuch does not exist",
        ),
    ];
    for (topic, key, h, v, _) in &bad {
        send(topic, key, h, v.as_bytes());
    }
    Broker::flush(&p);

    let mut intake = KafkaIntake::start(service.clone(), source(&broker)).unwrap();
    wait_for("every valid event", Duration::from_secs(90), || {
        ids(&service, "globex").len() >= 103 && ids(&service, "acme").len() >= 40
    });
    let dead = broker.read(DEAD, bad.len() + 1, Duration::from_secs(60), |m| {
        Record::from_message(m)
    });
    assert_eq!(dead.len(), bad.len() + 1, "dead letters: {dead:#?}");
    wait_for("the offsets committed", Duration::from_secs(30), || {
        let m = kafka_metrics(&service);
        let lags: Vec<i64> = m
            .iter()
            .filter(|(k, _)| k.starts_with("agentrail_kafka_consumer_lag{"))
            .map(|(_, v)| *v)
            .collect();
        lags.len() == 6 && lags.iter().all(|l| *l == 0)
    });
    intake.stop();

    // Exactly once: every event, no more.
    let g = ids(&service, "globex");
    let want: BTreeSet<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(g.len(), 103, "duplicates stored");
    assert_eq!(g.iter().cloned().collect::<BTreeSet<_>>(), want);
    let a = ids(&service, "acme");
    assert_eq!(a.len(), 40);
    assert!(
        a.iter().all(|id| id.starts_with("kafka-acme-events-")),
        "{a:?}"
    );
    assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 40);
    // The stored conflicting id kept its first content.
    let t = TenantId::parse("globex").unwrap();
    let seq = service.ledger().find(&t, conflict_id).unwrap().unwrap();
    let stored: Value =
        serde_json::from_slice(&service.ledger().read(&t, seq).unwrap().bytes).unwrap();
    assert_eq!(stored["occurred_at"], events[3]["occurred_at"]);

    // Each refusal: its bytes, its headers kept, the error and where it came from.
    for (topic, key, _, value, says) in &bad {
        let d = dead
            .iter()
            .find(|d| {
                d.key.as_deref() == Some(key.as_bytes())
                    && d.value.as_deref() == Some(value.as_bytes())
            })
            .unwrap_or_else(|| panic!("{key} not dead-lettered: {dead:#?}"));
        let err = d.header(ERROR_HEADER).map(text).unwrap();
        assert!(err.contains(says), "{key}: {err}");
        assert_eq!(d.header(SOURCE_TOPIC_HEADER).map(text), Some(*topic));
        assert!(d.header(SOURCE_PARTITION_HEADER).map(text).is_some());
        assert!(
            d.header(SOURCE_OFFSET_HEADER)
                .map(text)
                .unwrap()
                .parse::<i64>()
                .is_ok()
        );
    }
    let line = dead
        .iter()
        .find(|d| d.key.as_deref() == Some(b"ndjson".as_slice()))
        .unwrap();
    assert_eq!(line.value.as_deref(), Some(b"{not json".as_slice()));
    assert_eq!(line.header(SOURCE_LINE_HEADER).map(text), Some("2"));
    assert_eq!(line.header("agentrail-tenant").map(text), Some("globex"));
    assert!(
        line.header(ERROR_HEADER)
            .map(text)
            .unwrap()
            .starts_with("line 2: not JSON")
    );

    let m = kafka_metrics(&service);
    let ingested = r#"agentrail_kafka_records_total{source="agents",outcome="ingested"}"#;
    let dead_lettered = r#"agentrail_kafka_records_total{source="agents",outcome="dead_lettered"}"#;
    assert_eq!(m[dead_lettered], bad.len() as i64 + 1, "{m:#?}");
    // 120 + 3 + 40 receipts (replays answered too).
    assert_eq!(m[ingested], 163, "{m:#?}");

    // A restart of the source resumes after what was committed: one new record is read, and
    // nothing before it again.
    let mut again = KafkaIntake::start(service.clone(), source(&broker)).unwrap();
    let late = Generator::new(9, "globex", 1).nth(500).unwrap(); // id globex-500
    send("events", "late", &globex, late.to_string().as_bytes());
    Broker::flush(&p);
    wait_for("the late record", Duration::from_secs(60), || {
        ids(&service, "globex").len() > 103
    });
    again.stop();
    assert_eq!(kafka_metrics(&service)[ingested], 164);
    assert_eq!(ids(&service, "globex").len(), 104);
    service.shutdown();
}
