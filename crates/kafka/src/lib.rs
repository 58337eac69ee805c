//! agentrail's Kafka intake (DESIGN.md §9.2): each `[[source.kafka]]` is a consumer in a
//! consumer group, on a thread of its own, feeding [`Service::ingest_each`] — the ingest
//! operation every intake path ends in. Only this crate knows Kafka (rdkafka, the bindings of
//! librdkafka, Kafka's reference client).
//!
//! A round: poll up to `max_batch_records` records; find each record's tenant and events
//! ([`records`]); ingest each tenant's events together; send every refused record (or NDJSON
//! line) to the dead-letter topic with its error and wait until the broker has it; only then
//! commit the round's offsets. A crash anywhere before the commit redelivers the round, and
//! the events' ids (the producer's, or ones naming the record) make that a replay: what is
//! acknowledged to Kafka is durable, and nothing is stored twice. A failure that is not about
//! the records (disk full, back-pressure, a damaged tenant, the broker down) retries the round
//! and never skips it.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! use agentrail_service::{Service, ServiceConfig};
//! let mut cfg = ServiceConfig::default();
//! cfg.source.kafka = toml::from_str::<agentrail_service::Sources>(
//!     r#"[[kafka]]
//!        brokers = "localhost:9092"
//!        topics = ["agent-events"]
//!        group_id = "agentrail"
//!        dead_letter_topic = "agent-events.dead-letter""#,
//! ).map_err(|e| e.to_string())?.kafka;
//! let opened = Service::open(cfg.clone()).map_err(|e| e.to_string())?;
//! agentrail_kafka::start_all(&opened.service)?; // stopped by `Service::shutdown`
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod records;

use agentrail_event::TenantId;
use agentrail_service::metrics::{KafkaOutcome, KafkaPartition};
use agentrail_service::{Intake, KafkaSource, Service, ServiceError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use records::{Record, Unit};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Headers a dead-lettered record carries besides its own: why it was refused and where it was.
pub const ERROR_HEADER: &str = "agentrail-error";
pub const SOURCE_TOPIC_HEADER: &str = "agentrail-source-topic";
pub const SOURCE_PARTITION_HEADER: &str = "agentrail-source-partition";
pub const SOURCE_OFFSET_HEADER: &str = "agentrail-source-offset";
pub const SOURCE_LINE_HEADER: &str = "agentrail-source-line";

/// How often librdkafka reports its statistics, consumer lag among them (from what the
/// brokers' fetch answers say; no extra request).
const STATS_EVERY_MS: &str = "2000";
/// Waits between attempts of a round that failed for a reason not about its records.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A dead-letter send not confirmed by the broker in this long counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts every `[[source.kafka]]` of the service's config; each runs until
/// [`Service::shutdown`]. A source that cannot start (a bad setting, a property librdkafka
/// refuses) is an error naming it, and none is left running.
pub fn start_all(service: &Arc<Service>) -> Result<(), String> {
    let mut started = Vec::new();
    for source in &service.config().source.kafka {
        match KafkaIntake::start(service.clone(), source.clone()) {
            Ok(i) => started.push(i),
            Err(e) => {
                for mut i in started {
                    i.stop();
                }
                return Err(format!("source.kafka {:?}: {e}", source.name()));
            }
        }
    }
    for i in started {
        service.attach(Box::new(i));
    }
    Ok(())
}

/// One running source.
pub struct KafkaIntake {
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaIntake({})", self.name)
    }
}

impl Intake for KafkaIntake {
    /// Finishes the round in progress (its events durable, its offsets committed, unless it was
    /// waiting to retry: then it is left to be redelivered) and leaves the group.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(source = %self.name, "the Kafka source's thread panicked");
        }
    }
}

impl Drop for KafkaIntake {
    fn drop(&mut self) {
        self.stop();
    }
}

impl KafkaIntake {
    pub fn start(service: Arc<Service>, source: KafkaSource) -> Result<KafkaIntake, String> {
        check(&source)?;
        let consumer = consumer(&service, &source)?;
        let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
        let producer = dead_letter_producer(&source)?;
        let name = source.name().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            service,
            source,
            consumer,
            producer,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("kafka-{name}"))
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        tracing::info!(source = %name, "Kafka source started");
        Ok(KafkaIntake {
            name,
            stop,
            thread: Some(thread),
        })
    }
}

/// The settings that cannot work, named before anything connects.
fn check(s: &KafkaSource) -> Result<(), String> {
    if s.brokers.trim().is_empty() {
        return Err("brokers is empty".into());
    }
    if s.topics.is_empty() || s.topics.iter().any(|t| t.trim().is_empty()) {
        return Err("topics must name at least one topic, none empty".into());
    }
    if s.group_id.trim().is_empty() {
        return Err("group_id is empty".into());
    }
    if s.dead_letter_topic.trim().is_empty() {
        return Err("dead_letter_topic is empty".into());
    }
    if s.topics.contains(&s.dead_letter_topic) {
        return Err(format!(
            "dead_letter_topic {:?} is also one of the topics read",
            s.dead_letter_topic
        ));
    }
    if s.max_batch_records == 0 {
        return Err("max_batch_records must be at least 1".into());
    }
    for (topic, tenant) in &s.topic_tenants {
        TenantId::parse(tenant).map_err(|e| format!("topic_tenants.{topic}: {e}"))?;
    }
    if let Some(t) = &s.tenant {
        TenantId::parse(t).map_err(|e| format!("tenant: {e}"))?;
    }
    for k in s.properties.keys() {
        if k.starts_with("enable.auto.") {
            return Err(format!(
                "properties.{k}: offsets are committed by agentrail, once events are durable"
            ));
        }
    }
    Ok(())
}

fn client_config(s: &KafkaSource) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers);
    for (k, v) in &s.properties {
        c.set(k, v);
    }
    c
}

fn consumer(service: &Arc<Service>, s: &KafkaSource) -> Result<BaseConsumer<Events>, String> {
    let mut c = client_config(s);
    c.set("group.id", &s.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    // An audit trail reads what is already in a topic the first time, unless told otherwise.
    if !s.properties.contains_key("auto.offset.reset") {
        c.set("auto.offset.reset", "earliest");
    }
    if !s.properties.contains_key("statistics.interval.ms") {
        c.set("statistics.interval.ms", STATS_EVERY_MS);
    }
    c.create_with_context(Events {
        source: s.name().to_owned(),
        service: service.clone(),
        lagging: Mutex::new(HashSet::new()),
    })
    .map_err(|e| format!("cannot make a consumer: {e}"))
}

fn dead_letter_producer(s: &KafkaSource) -> Result<BaseProducer<Deliveries>, String> {
    let mut c = client_config(s);
    // Consumer-only settings would only be warned about by a producer (and its statistics
    // would be logged).
    for k in [
        "auto.offset.reset",
        "group.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "statistics.interval.ms",
    ] {
        c.remove(k);
    }
    c.set("enable.idempotence", "true").set("acks", "all");
    c.create_with_context(Deliveries::default())
        .map_err(|e| format!("cannot make the dead-letter producer: {e}"))
}

/// The consumer's events: the group's assignments as they change (logged), and librdkafka's
/// statistics, from which `agentrail_kafka_consumer_lag` is set.
struct Events {
    source: String,
    service: Arc<Service>,
    /// Partitions with a lag gauge, so those no longer assigned lose theirs.
    lagging: Mutex<HashSet<(String, i32)>>,
}

impl ClientContext for Events {
    /// For each assigned partition: its end offset (the last stable one, as the brokers' fetch
    /// answers report it) minus the group's committed offset — or minus the partition's start
    /// when nothing is committed yet. A partition not fetched from yet has no gauge.
    fn stats(&self, stats: Statistics) {
        let gauges = &self.service.metrics().kafka_consumer_lag;
        let mut seen = HashSet::new();
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                if p.partition < 0 || !p.desired {
                    continue;
                }
                let Some(lag) = lag(p) else { continue };
                gauges
                    .get_or_create(&KafkaPartition {
                        source: self.source.clone(),
                        topic: topic.clone(),
                        partition: p.partition,
                    })
                    .set(lag);
                seen.insert((topic.clone(), p.partition));
            }
        }
        let Ok(mut lagging) = self.lagging.lock() else {
            return;
        };
        for (topic, partition) in lagging.difference(&seen) {
            gauges.remove(&KafkaPartition {
                source: self.source.clone(),
                topic: topic.clone(),
                partition: *partition,
            });
        }
        *lagging = seen;
    }
}

/// A partition's lag from librdkafka's statistics of it; `None` while its end is unknown.
fn lag(p: &rdkafka::statistics::Partition) -> Option<i64> {
    if p.consumer_lag >= 0 {
        return Some(p.consumer_lag);
    }
    let end = if p.ls_offset >= 0 {
        p.ls_offset
    } else {
        p.hi_offset
    };
    (end >= 0 && p.committed_offset < 0).then(|| (end - p.lo_offset.max(0)).max(0))
}

impl ConsumerContext for Events {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                tracing::info!(source = %self.source, partitions = %names(tpl), "assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(source = %self.source, partitions = %names(tpl), "revoked")
            }
            Rebalance::Error(e) => tracing::warn!(source = %self.source, error = %e, "rebalance"),
        }
    }
}

fn names(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The dead-letter producer's delivery reports: how many sends failed, and the last reason.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::AcqRel);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

/// A record refused, with why, on its way to the dead-letter topic.
struct Dead<'a> {
    record: &'a Record,
    line: Option<usize>,
    bytes: &'a [u8],
    reason: String,
}

/// Why a round did not finish: `Retry` after a failure not about its records; `Stopped` when
/// the source was stopped while waiting to retry.
enum Stall {
    Retry { reason: String, after: Duration },
    Stopped,
}

struct Worker {
    service: Arc<Service>,
    source: KafkaSource,
    consumer: BaseConsumer<Events>,
    producer: BaseProducer<Deliveries>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(&mut self) {
        while !self.stopped() {
            let records = self.poll_round();
            if !records.is_empty() {
                self.finish(&records);
            }
        }
        tracing::info!(source = %self.source.name(), "Kafka source stopped");
    }

    /// Records until `max_batch_records`, or until `linger_ms` passed since the first.
    fn poll_round(&mut self) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        let mut first: Option<Instant> = None;
        let linger = Duration::from_millis(self.source.linger_ms);
        while out.len() < self.source.max_batch_records && !self.stopped() {
            let wait = match first {
                None => Duration::from_millis(100),
                Some(t) => match linger.checked_sub(t.elapsed()) {
                    Some(w) if !w.is_zero() => w,
                    _ => break,
                },
            };
            match self.consumer.poll(wait) {
                Some(Ok(m)) => {
                    first.get_or_insert_with(Instant::now);
                    out.push(Record::from_message(&m));
                }
                Some(Err(e)) => {
                    tracing::warn!(source = %self.source.name(), error = %e, "Kafka poll");
                    if first.is_some() {
                        break;
                    }
                }
                None => {
                    if first.is_some() {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Ingests a round and commits it, retrying with backoff until it is done or the source
    /// is stopped (then the round is left uncommitted, to be redelivered).
    fn finish(&mut self, records: &[Record]) {
        let mut wait = BACKOFF_MIN;
        loop {
            match self.round(records) {
                Ok(()) => return,
                Err(Stall::Stopped) => return,
                Err(Stall::Retry { reason, after }) => {
                    let after = after.max(wait);
                    tracing::warn!(
                        source = %self.source.name(),
                        records = records.len(),
                        retry_in_ms = after.as_millis() as u64,
                        %reason,
                        "a round of Kafka records is not stored yet; retrying"
                    );
                    if !self.sleep(after) {
                        return;
                    }
                    wait = (wait * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sleeps unless stopped meanwhile; false if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        !self.stopped()
    }

    fn round(&mut self, records: &[Record]) -> Result<(), Stall> {
        let units: Vec<Vec<Unit>> = records.iter().map(Record::units).collect();
        let mut dead: Vec<Dead<'_>> = Vec::new();
        // Each tenant's events, in record order: (record, unit) positions.
        let mut by_tenant: BTreeMap<TenantId, Vec<(usize, usize)>> = BTreeMap::new();
        for (r, record) in records.iter().enumerate() {
            match record.tenant(&self.source) {
                Ok(t) => {
                    let at = by_tenant.entry(t).or_default();
                    at.extend((0..units[r].len()).map(|u| (r, u)));
                }
                Err(reason) => dead.push(Dead {
                    record,
                    line: None,
                    bytes: record.value.as_deref().unwrap_or_default(),
                    reason,
                }),
            }
        }
        let max = self.service.config().max_batch_events.max(1);
        let mut ingested = 0u64;
        for (tenant, at) in &by_tenant {
            for chunk in at.chunks(max) {
                // The units stay for a stalled round's retry: the ingest takes copies.
                let items = || -> Vec<Result<Value, String>> {
                    chunk
                        .iter()
                        .map(|&(r, u)| units[r][u].event.clone())
                        .collect()
                };
                let refused = match self.service.ingest_each(tenant, items) {
                    Ok(a) => {
                        ingested += a.receipts.len() as u64;
                        a.rejected
                    }
                    Err(e) if transient(&e) => {
                        return Err(Stall::Retry {
                            after: retry_after(&e),
                            reason: format!("tenant {tenant}: {e}"),
                        });
                    }
                    Err(e) => (0..chunk.len())
                        .map(|i| (i, format!("tenant {tenant}: {e}")))
                        .collect(),
                };
                for (i, reason) in refused {
                    let (r, u) = chunk[i];
                    let unit = &units[r][u];
                    dead.push(Dead {
                        record: &records[r],
                        line: unit.line,
                        bytes: &unit.bytes,
                        reason: match unit.line {
                            Some(n) if !reason.starts_with("line ") => {
                                format!("line {n}: {reason}")
                            }
                            _ => reason,
                        },
                    });
                }
            }
        }
        if !dead.is_empty() {
            self.dead_letter(&dead)?;
        }
        self.commit(records);
        let name = self.source.name().to_owned();
        let count = |outcome: &str, n: u64| {
            self.service
                .metrics()
                .kafka_records
                .get_or_create(&KafkaOutcome {
                    source: name.clone(),
                    outcome: outcome.into(),
                })
                .inc_by(n);
        };
        count("ingested", ingested);
        count("dead_lettered", dead.len() as u64);
        Ok(())
    }

    /// Sends the refused records to the dead-letter topic and waits until the broker has
    /// every one (else the round is retried: it must not be committed with a refusal lost).
    fn dead_letter(&self, dead: &[Dead<'_>]) -> Result<(), Stall> {
        let failed_before = self.producer.context().failed.load(Ordering::Acquire);
        for d in dead {
            let rec = d.record;
            tracing::info!(
                source = %self.source.name(),
                topic = %rec.topic, partition = rec.partition, offset = rec.offset,
                line = d.line, reason = %d.reason, "record refused: sent to the dead-letter topic"
            );
            let partition = d.record.partition.to_string();
            let offset = d.record.offset.to_string();
            let line = d.line.map(|n| n.to_string());
            let mut headers = OwnedHeaders::new();
            for (k, v) in &d.record.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            let mut ours: Vec<(&str, &str)> = vec![
                (ERROR_HEADER, &d.reason),
                (SOURCE_TOPIC_HEADER, &d.record.topic),
                (SOURCE_PARTITION_HEADER, &partition),
                (SOURCE_OFFSET_HEADER, &offset),
            ];
            if let Some(l) = &line {
                ours.push((SOURCE_LINE_HEADER, l));
            }
            for (k, v) in ours {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.source.dead_letter_topic)
                .payload(d.bytes)
                .headers(headers);
            if let Some(k) = &d.record.key {
                record = record.key(k.as_slice());
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        self.producer.poll(Duration::from_millis(100));
                        record = r;
                    }
                    Err((e, _)) => {
                        return Err(Stall::Retry {
                            reason: format!("cannot send to the dead-letter topic: {e}"),
                            after: BACKOFF_MIN,
                        });
                    }
                }
                if self.stopped() {
                    return Err(Stall::Stopped);
                }
            }
        }
        let flushed = self.producer.flush(DELIVERY_TIMEOUT);
        let failed = self.producer.context().failed.load(Ordering::Acquire) - failed_before;
        match (flushed, failed) {
            (Ok(()), 0) => Ok(()),
            (Err(e), _) => Err(Stall::Retry {
                reason: format!("the dead-letter topic did not confirm: {e}"),
                after: BACKOFF_MIN,
            }),
            (Ok(()), n) => Err(Stall::Retry {
                reason: format!(
                    "{n} dead-letter sends failed: {}",
                    self.producer
                        .context()
                        .last_error
                        .lock()
                        .ok()
                        .and_then(|l| l.clone())
                        .unwrap_or_default()
                ),
                after: BACKOFF_MIN,
            }),
        }
    }

    /// Commits past the round's last record of each partition. A failed commit (the group
    /// rebalanced meanwhile) only means a redelivery, which is a replay.
    fn commit(&self, records: &[Record]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in records {
            let e = next.entry((&r.topic, r.partition)).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
                tracing::error!(%e, "cannot list an offset to commit");
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(
                source = %self.source.name(), error = %e,
                "offsets not committed: the round's records will be redelivered (and replayed)"
            );
        }
    }
}

/// Failures that are not about the records: retried, never dead-lettered.
fn transient(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Unavailable { .. } | ServiceError::Internal(_) | ServiceError::Damaged(_)
    )
}

fn retry_after(e: &ServiceError) -> Duration {
    match e {
        ServiceError::Unavailable { retry_after, .. } => {
            Duration::from_secs(*retry_after).min(BACKOFF_MAX)
        }
        _ => BACKOFF_MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(extra: &str) -> KafkaSource {
        toml::from_str(&format!(
            "brokers = \"b:9092\"\ntopics = [\"events\"]\ngroup_id = \"g\"\n\
             dead_letter_topic = \"dlq\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        assert!(check(&source("")).is_ok());
        for (extra, says) in [
            (
                "topic_tenants = { events = \"Bad Tenant\" }",
                "topic_tenants.events: ",
            ),
            ("tenant = \"-x\"", "tenant: "),
            ("max_batch_records = 0", "max_batch_records"),
            (
                "[properties]\n\"enable.auto.commit\" = \"true\"",
                "properties.enable.auto.commit",
            ),
        ] {
            let e = check(&source(extra)).unwrap_err();
            assert!(e.starts_with(says), "{extra}: {e}");
        }
        let mut s = source("");
        s.dead_letter_topic = "events".into();
        assert!(check(&s).unwrap_err().contains("also one of the topics"));
    }
}
