//! Kafka intake throughput: events/s from a topic of 4 partitions into the ledger (durable,
//! offsets committed), through a real Kafka-protocol broker (tansu, see
//! `agentrail_testkit::kafka`). The topic is filled first; the clock runs from the source's
//! start until the last event is durable (then the test waits, untimed, for every partition's
//! committed offset to reach its end).
//!
//! Shapes, run alternated (A B A B, this machine is noisy): one event per record, and NDJSON
//! records of 100 events. Each run uses a fresh data directory and consumer group.
//!
//! ```sh
//! cargo bench -p agentrail-kafka --bench kafka_intake -- --events 100000 --runs 2
//! ```

use agentrail_event::TenantId;
use agentrail_kafka::KafkaIntake;
use agentrail_service::{Intake, KafkaSource, Service, ServiceConfig};
use agentrail_testkit::Generator;
use agentrail_testkit::bench::arg;
use agentrail_testkit::kafka::Broker;
use std::time::{Duration, Instant};

const TENANT: &str = "bench";

struct Shape {
    name: &'static str,
    topic: &'static str,
    per_record: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "1 event/record",
        topic: "single",
        per_record: 1,
    },
    Shape {
        name: "NDJSON 100/record",
        topic: "ndjson",
        per_record: 100,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = arg(&args, "--events").map_or(100_000, |v| v.parse().unwrap());
    let runs: usize = arg(&args, "--runs").map_or(2, |v| v.parse().unwrap());
    let broker = Broker::start();
    let all: Vec<String> = Generator::new(3, TENANT, 16)
        .take(events)
        .map(|e| e.to_string())
        .collect();
    let p = broker.producer();
    let header = [("agentrail-tenant", TENANT)];
    for s in &SHAPES {
        broker.create_topic(s.topic, 4);
        let t = Instant::now();
        for (i, chunk) in all.chunks(s.per_record).enumerate() {
            let value = chunk.join("\n");
            let key = format!("r{i}");
            Broker::send(&p, s.topic, Some(&key), &header, value.as_bytes());
        }
        Broker::flush(&p);
        eprintln!(
            "{}: {} records produced in {:.1} s",
            s.name,
            events.div_ceil(s.per_record),
            t.elapsed().as_secs_f64()
        );
    }
    broker.create_topic("dead-letter", 1);

    println!("| run | shape | events | s | events/s durable |");
    println!("|---|---|---:|---:|---:|");
    for run in 0..runs {
        for s in &SHAPES {
            let secs = consume(&broker, s, events, run);
            println!(
                "| {run} | {} | {events} | {secs:.2} | {:.0} |",
                s.name,
                events as f64 / secs
            );
        }
    }
}

/// Seconds from the source's start until it has consumed and committed every record.
fn consume(broker: &Broker, s: &Shape, events: usize, run: usize) -> f64 {
    let dir = agentrail_testkit::bench::scratch_dir();
    let service = Service::open(ServiceConfig::unscheduled(dir.path()))
        .unwrap()
        .service;
    let t = TenantId::parse(TENANT).unwrap();
    service.create_tenant_offline(&t).unwrap();
    let source: KafkaSource = toml::from_str(&format!(
        r#"brokers = "{}"
           topics = ["{}"]
           group_id = "bench-{}-{run}"
           dead_letter_topic = "dead-letter""#,
        broker.bootstrap(),
        s.topic,
        s.topic
    ))
    .unwrap();
    let started = Instant::now();
    let mut intake = KafkaIntake::start(service.clone(), source).unwrap();
    loop {
        let stored = service.ledger().size(&t).unwrap_or(0) as usize;
        if stored >= events {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{}: {stored} of {events} stored after 10 minutes",
            s.name
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    // Not timed: the offsets follow (lag is measured every 2 s).
    while !committed(&service) {
        assert!(
            started.elapsed() < Duration::from_secs(660),
            "{}: not committed",
            s.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    intake.stop();
    service.shutdown();
    secs
}

/// Whether every partition's lag gauge reads 0 (all 4 measured).
fn committed(service: &Service) -> bool {
    let text = service.metrics_text();
    let lags: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("agentrail_kafka_consumer_lag{"))
        .collect();
    lags.len() == 4 && lags.iter().all(|l| l.ends_with(" 0"))
}
