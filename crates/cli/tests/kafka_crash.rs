//! Crash test of the Kafka intake: `agentrail serve` with a `[[source.kafka]]` consumes a topic
//! of 4 partitions (a real Kafka-protocol broker, see `agentrail_testkit::kafka`) and is
//! SIGKILLed mid-consumption, twice; after the last restart every valid event is in the ledger
//! exactly once — those with their own ids and those whose ids are derived from their record —
//! and every invalid record is in the dead-letter topic.

mod common;

use agentrail_event::TenantId;
use agentrail_kafka::records::Record;
use agentrail_ledger::{Config, Ledger};
use agentrail_testkit::Generator;
use agentrail_testkit::kafka::Broker;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const TENANT: &str = "kcrash";
const DEAD: &str = "events.dead-letter";
const KILLS: usize = 2;

/// `agentrail_kafka_*` samples of the server's /metrics, by name and labels.
fn kafka_metrics(a: &ureq::Agent, url: &str) -> BTreeMap<String, i64> {
    let Ok(mut r) = a.get(format!("{url}/metrics")).call() else {
        return BTreeMap::new();
    };
    let text = r.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("agentrail_kafka_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// A header value as text.
fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap()
}

fn ingested(m: &BTreeMap<String, i64>) -> i64 {
    m.get(r#"agentrail_kafka_records_total{source="crash",outcome="ingested"}"#)
        .copied()
        .unwrap_or(0)
}

#[test]
fn kafka_consumption_survives_server_sigkill() {
    let broker = Broker::start();
    broker.create_topic("events", 4);
    broker.create_topic(DEAD, 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("agentrail.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[source.kafka]]
               name = "crash"
               brokers = "{}"
               topics = ["events"]
               group_id = "agentrail-crash"
               dead_letter_topic = "{DEAD}"
               max_batch_records = 50
               linger_ms = 5
               # A killed member's partitions are reassigned after this long.
               properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}
            "#,
            broker.bootstrap()
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let serve = || common::spawn_server_with(&data, Some(&config), Some(&log), 0);
    let (mut child, mut url, _) = serve();
    common::tenant_key(&url, &data, TENANT, &["events:read"]);

    // 3000 events: every 5th without an id (derived from its record), 300 sent twice, and 12
    // records that cannot be events.
    let events: Vec<Value> = Generator::new(21, TENANT, 8).take(3000).collect();
    let mut with_id = BTreeSet::new();
    let mut without_id = 0;
    let mut invalid = BTreeSet::new();
    let p = broker.producer();
    let h = [("agentrail-tenant", TENANT)];
    for (i, ev) in events.iter().enumerate() {
        let mut ev = ev.clone();
        if i % 5 == 0 {
            ev.as_object_mut().unwrap().remove("event_id");
            without_id += 1;
        } else {
            with_id.insert(ev["event_id"].as_str().unwrap().to_owned());
        }
        let key = format!("k{i}");
        Broker::send(&p, "events", Some(&key), &h, ev.to_string().as_bytes());
        if i % 250 == 0 {
            let bad = format!("invalid record {i}");
            Broker::send(&p, "events", Some(&bad), &h, bad.as_bytes());
            invalid.insert(bad);
        }
    }
    // Re-sent with their ids: replays.
    let again: Vec<&Value> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, e)| e)
        .take(300)
        .collect();
    for ev in again {
        let id = ev["event_id"].as_str().unwrap();
        Broker::send(&p, "events", Some(id), &h, ev.to_string().as_bytes());
    }
    Broker::flush(&p);
    let records = events.len() + 300 + invalid.len();

    let a = common::agent();
    for kill in 0..KILLS {
        // Killed once this run has stored a few rounds, with records still waiting.
        let started = Instant::now();
        loop {
            let m = kafka_metrics(&a, &url);
            if ingested(&m) >= 400 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "kill {kill}: consumption did not start: {m:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        (child, url, _) = serve();
    }

    // The last run finishes: every partition's committed offset at its end.
    let started = Instant::now();
    let last_run = loop {
        let m = kafka_metrics(&a, &url);
        let lags: Vec<i64> = m
            .iter()
            .filter(|(k, _)| k.starts_with("agentrail_kafka_consumer_lag{"))
            .map(|(_, v)| *v)
            .collect();
        if lags.len() == 4 && lags.iter().all(|l| *l == 0) {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the last run did not finish: {m:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // It resumed mid-topic: the kills left records to consume, and it did not start over.
    let resumed = ingested(&last_run);
    assert!(
        resumed > 0 && (resumed as usize) < records - 800,
        "{last_run:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let ledger = Ledger::open(Config::new(&data)).unwrap();
    let t = TenantId::parse(TENANT).unwrap();
    let stored: Vec<String> = ledger
        .read_range(&t, 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.event_id().unwrap())
        .collect();
    if stored.len() != with_id.len() + without_id {
        let dead = broker.read(DEAD, 10_000, Duration::from_secs(10), |m| {
            Record::from_message(m)
        });
        let mut why: BTreeMap<String, usize> = BTreeMap::new();
        for d in &dead {
            let e = d
                .header("agentrail-error")
                .map(text)
                .unwrap_or("")
                .chars()
                .take(120)
                .collect();
            *why.entry(e).or_default() += 1;
        }
        panic!(
            "{} stored, {} expected; dead letters: {why:#?}\n{}",
            stored.len(),
            with_id.len() + without_id,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let (derived, own): (Vec<&String>, Vec<&String>) = stored
        .iter()
        .partition(|id| id.starts_with("kafka-events-"));
    assert_eq!(own.into_iter().cloned().collect::<BTreeSet<_>>(), with_id);
    assert_eq!(derived.iter().collect::<BTreeSet<_>>().len(), without_id);

    // Each invalid record is dead-lettered (a kill between its send and the commit sends it
    // again: the dead-letter topic is at least once).
    let mut want = invalid.len();
    let (dead, keys) = loop {
        let dead = broker.read(DEAD, want, Duration::from_secs(60), |m| {
            Record::from_message(m)
        });
        let keys: BTreeSet<String> = dead
            .iter()
            .map(|d| String::from_utf8(d.key.clone().unwrap()).unwrap())
            .collect();
        if keys.len() == invalid.len() || dead.len() < want {
            break (dead, keys);
        }
        want = dead.len() + invalid.len() - keys.len();
    };
    assert_eq!(keys, invalid);
    assert!(
        dead.iter()
            .all(|d| d.header("agentrail-error").map(text).is_some())
    );
}
