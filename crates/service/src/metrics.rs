//! Prometheus metrics (`GET /metrics`). No tenant labels: their number is unbounded. Route
//! labels are route templates (`/v1/tenants/{tenant}/events`), a fixed set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

/// One partition of a Kafka source's topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KafkaPartition {
    pub source: String,
    pub topic: String,
    pub partition: i32,
}

/// What became of a Kafka source's records: `ingested` (their events durable),
/// `dead_lettered` (in the dead-letter topic with their error), `redelivered` is not counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KafkaOutcome {
    pub source: String,
    pub outcome: String,
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RouteLabels, Counter>,
    pub http_duration: Family<RouteOnly, Histogram>,
    pub ingest_events: Counter,
    pub ingest_bytes: Counter,
    pub ingest_replayed: Counter,
    pub ingest_rejected: Family<Reason, Counter>,
    pub ingest_append_seconds: Histogram,
    /// Signing an answer's receipts (a cached checkpoint costs nothing), proofs included.
    pub receipt_sign_seconds: Histogram,
    /// Ingest requests holding or waiting for an append slot.
    pub ingest_inflight: Gauge,
    pub index_lag_total: Gauge,
    pub index_lag_max: Gauge,
    pub checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    pub open_tenants: Gauge,
    pub access_records: Counter,
    pub integrity_failures: Gauge,
    pub witness_failures: Gauge,
    pub archive_lag_events: Gauge,
    pub archive_lag_seconds: Gauge<f64, AtomicU64>,
    pub archive_upload_errors: Gauge,
    pub index_mismatches: Counter,
    pub integrity_failing_tenants: Gauge,
    /// 1 while ingest is paused for want of disk space.
    pub storage_full: Gauge,
    pub storage_available_bytes: Gauge,
    pub storage_full_episodes: Gauge,
    /// Recovery actions taken (a torn tail or unfinished batch cut, a write failure healed,
    /// a damaged index rebuilt), since start.
    pub recovery_actions: Gauge,
    /// Tenants refusing appends until they heal.
    pub poisoned_tenants: Gauge,
    pub open_files: Gauge,
    pub open_files_budget: Gauge,
    pub clock_jumps: Gauge,
    pub clock_drift_ms: Gauge,
    /// TCP connections open now.
    pub http_connections: Gauge,
    /// Connections closed at once on accept, by reason (`max_connections`, `max_per_address`).
    pub http_connections_refused: Family<Reason, Counter>,
    /// Requests cut because their body stalled or arrived below the minimum rate.
    pub http_slow_bodies: Counter,
    /// Requests with a missing, malformed, unknown or revoked key.
    pub auth_failures: Counter,
    /// Requests answered 429 because their source failed authentication too often.
    pub auth_throttled: Counter,
    /// Per partition of a Kafka source: the high watermark minus the committed offset.
    pub kafka_consumer_lag: Family<KafkaPartition, Gauge>,
    pub kafka_records: Family<KafkaOutcome, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("agentrail");
        let http_requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            http_duration.clone(),
        );
        let ingest_events = Counter::default();
        registry.register(
            "ingest_events",
            "Events acknowledged durable",
            ingest_events.clone(),
        );
        let ingest_bytes = Counter::default();
        registry.register(
            "ingest_bytes",
            "Request body bytes of acknowledged ingest requests (after gzip)",
            ingest_bytes.clone(),
        );
        let ingest_replayed = Counter::default();
        registry.register(
            "ingest_replayed_events",
            "Events that were idempotent replays of stored ones",
            ingest_replayed.clone(),
        );
        let ingest_rejected = Family::<Reason, Counter>::default();
        registry.register(
            "ingest_rejected_requests",
            "Ingest requests refused, by reason",
            ingest_rejected.clone(),
        );
        let ingest_append_seconds = Histogram::new(latency_buckets());
        registry.register(
            "ingest_append_duration_seconds",
            "Time from validated batch to durable receipts",
            ingest_append_seconds.clone(),
        );
        let receipt_sign_seconds = Histogram::new(latency_buckets());
        registry.register(
            "ingest_receipt_sign_duration_seconds",
            "Time to sign an acknowledged batch's receipts (and build its proofs when asked)",
            receipt_sign_seconds.clone(),
        );
        let ingest_inflight = Gauge::default();
        registry.register(
            "ingest_queue_depth",
            "Ingest requests appending or waiting for an append slot",
            ingest_inflight.clone(),
        );
        let storage_full = Gauge::default();
        registry.register(
            "storage_full",
            "1 while ingest is paused because the data disk is (nearly) full",
            storage_full.clone(),
        );
        let storage_available_bytes = Gauge::default();
        registry.register(
            "storage_available_bytes",
            "Free bytes on the data disk",
            storage_available_bytes.clone(),
        );
        let storage_full_episodes = Gauge::default();
        registry.register(
            "storage_full_episodes",
            "Times ingest was paused for disk space since start",
            storage_full_episodes.clone(),
        );
        let recovery_actions = Gauge::default();
        registry.register(
            "recovery_actions",
            "Recovery actions since start: torn tails or unfinished batches cut, write failures healed, damaged indexes rebuilt",
            recovery_actions.clone(),
        );
        let poisoned_tenants = Gauge::default();
        registry.register(
            "poisoned_tenants",
            "Tenants refusing appends after a failed write, until they heal",
            poisoned_tenants.clone(),
        );
        let open_files = Gauge::default();
        registry.register(
            "open_files",
            "Files (and sockets) this process has open",
            open_files.clone(),
        );
        let open_files_budget = Gauge::default();
        registry.register(
            "open_files_budget",
            "The open-file budget shared by every per-tenant handle (max_open_files)",
            open_files_budget.clone(),
        );
        let clock_jumps = Gauge::default();
        registry.register(
            "clock_jumps",
            "Times the wall clock jumped away from the monotonic clock since start",
            clock_jumps.clone(),
        );
        let clock_drift_ms = Gauge::default();
        registry.register(
            "clock_drift_ms",
            "How far the wall clock is from the monotonic clock, when beyond clock_jump_bound_ms (0 otherwise)",
            clock_drift_ms.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "http_connections",
            "TCP connections open now",
            http_connections.clone(),
        );
        let http_connections_refused = Family::<Reason, Counter>::default();
        registry.register(
            "http_connections_refused",
            "Connections closed on accept because a connection cap was reached, by cap",
            http_connections_refused.clone(),
        );
        let http_slow_bodies = Counter::default();
        registry.register(
            "http_slow_bodies",
            "Requests cut because their body stalled or arrived below the minimum rate",
            http_slow_bodies.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Requests with a missing, malformed, unknown or revoked API key",
            auth_failures.clone(),
        );
        let auth_throttled = Counter::default();
        registry.register(
            "auth_throttled",
            "Requests refused with 429 because their source failed authentication too often",
            auth_throttled.clone(),
        );
        let index_lag_total = Gauge::default();
        registry.register(
            "index_lag_events",
            "Acknowledged events not yet in the query index, summed over open tenants",
            index_lag_total.clone(),
        );
        let index_lag_max = Gauge::default();
        registry.register(
            "index_lag_max_events",
            "The largest index lag of one tenant",
            index_lag_max.clone(),
        );
        let checkpoint_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "checkpoint_age_seconds",
            "Longest time an open tenant has had durable events not covered by a signed checkpoint",
            checkpoint_age_seconds.clone(),
        );
        let open_tenants = Gauge::default();
        registry.register(
            "open_tenants",
            "Tenants open in the ledger",
            open_tenants.clone(),
        );
        let access_records = Counter::default();
        registry.register(
            "access_log_records",
            "audit.access records written",
            access_records.clone(),
        );
        let integrity_failures = Gauge::default();
        registry.register(
            "integrity_failed_runs",
            "Integrity verifications that failed since the start",
            integrity_failures.clone(),
        );
        let index_mismatches = Counter::default();
        registry.register(
            "index_mismatches",
            "Index rows refused because the ledger holds another event at their seq (an edited or damaged query store)",
            index_mismatches.clone(),
        );
        let witness_failures = Gauge::default();
        registry.register(
            "witness_failed_submissions",
            "Checkpoint submissions to witnesses that got no cosignature since the start (down, or refused)",
            witness_failures.clone(),
        );
        let archive_lag_events = Gauge::default();
        registry.register(
            "archive_lag_events",
            "Events not in the archive yet, in the tenant furthest behind",
            archive_lag_events.clone(),
        );
        let archive_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "archive_lag_seconds",
            "Age of the oldest event not in the archive yet, over tenants",
            archive_lag_seconds.clone(),
        );
        let archive_upload_errors = Gauge::default();
        registry.register(
            "archive_upload_errors",
            "Archive rounds that failed since the start (retried with backoff)",
            archive_upload_errors.clone(),
        );
        let integrity_failing_tenants = Gauge::default();
        registry.register(
            "integrity_failing_tenants",
            "Tenants whose latest integrity verification failed",
            integrity_failing_tenants.clone(),
        );
        let kafka_consumer_lag = Family::<KafkaPartition, Gauge>::default();
        registry.register(
            "kafka_consumer_lag",
            "Records of a Kafka source's partition not yet committed (high watermark minus committed offset)",
            kafka_consumer_lag.clone(),
        );
        let kafka_records = Family::<KafkaOutcome, Counter>::default();
        registry.register(
            "kafka_records",
            "Records of a Kafka source, by outcome (ingested, dead_lettered)",
            kafka_records.clone(),
        );
        Metrics {
            registry,
            kafka_consumer_lag,
            kafka_records,
            integrity_failures,
            witness_failures,
            archive_lag_events,
            archive_lag_seconds,
            archive_upload_errors,
            index_mismatches,
            integrity_failing_tenants,
            storage_full,
            storage_available_bytes,
            storage_full_episodes,
            recovery_actions,
            poisoned_tenants,
            open_files,
            open_files_budget,
            clock_jumps,
            clock_drift_ms,
            http_connections,
            http_connections_refused,
            http_slow_bodies,
            auth_failures,
            auth_throttled,
            http_requests,
            http_duration,
            ingest_events,
            ingest_bytes,
            ingest_replayed,
            ingest_rejected,
            ingest_append_seconds,
            receipt_sign_seconds,
            ingest_inflight,
            index_lag_total,
            index_lag_max,
            checkpoint_age_seconds,
            open_tenants,
            access_records,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn reject(&self, reason: &str) {
        self.ingest_rejected
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }
}
