//! The service's settings. The server reads them from the same TOML file as its own (unknown
//! keys are refused there).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A witness the checkpoints go to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its submission prefix: `POST <url>/add-checkpoint`.
    pub url: String,
    /// Its cosignature/v1 verifier key (`<name>+<id>+<base64>`).
    pub key: String,
}

/// What the application needs to know: where its data is, its limits and its schedules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub data_dir: PathBuf,
    /// Most events in one ingest batch.
    pub max_batch_events: usize,
    /// A tenant whose index is this many events behind its ledger gets `index_behind` on ingest
    /// until the index catches up: the lag stays bounded.
    pub max_index_lag: u64,
    /// How long a read waits for the index to hold the events acknowledged before it.
    pub query_wait_ms: u64,
    pub max_open_tenants: usize,
    pub max_open_indexes: usize,
    /// One budget of open files shared by every per-tenant handle (ledgers, indexes, logs);
    /// 0: three quarters of the process's soft `RLIMIT_NOFILE`. `max_open_tenants` and
    /// `max_open_indexes` still apply when lower than their share.
    pub max_open_files: u64,
    pub checkpoint_interval_ms: u64,
    pub clock_skew_bound_ms: i64,
    /// The wall clock has jumped when it moves this far from the monotonic clock: logged at
    /// error level, counted (`agentrail_clock_jumps`), and retention purges nothing meanwhile.
    pub clock_jump_bound_ms: i64,
    /// Origins of checkpoints are `<origin_prefix>/tenants/<id>`; fixed at the first start.
    pub origin_prefix: Option<String>,
    /// Each tenant's newest checkpoint is pinned here, outside the data directory (another
    /// volume, ideally not writable by whoever administers the data directory): a tenant whose
    /// ledger does not hold its pin is refused, and nothing inconsistent with it is signed.
    pub trust_dir: Option<PathBuf>,
    /// Where the log key is held instead of the data directory: the Unix socket of an
    /// `agentrail signer`, or a `pkcs11:` URI of a key in a token; `None`: `system/log.key`.
    pub signer: Option<PathBuf>,
    /// C2SP tlog-witnesses each new checkpoint is submitted to (`[[witnesses]]` with `url` and
    /// `key`, the witness's verifier key); their cosignatures are kept and served.
    pub witnesses: Vec<WitnessConfig>,
    /// How often checkpoints are submitted to the witnesses.
    pub witness_interval_ms: u64,
    /// Every tenant is re-verified this often (0: never; on demand only).
    pub verify_interval_ms: u64,
    /// Integrity failures are POSTed (JSON) here.
    pub webhook_url: Option<String>,
    /// Every tenant's retention policy is applied this often (0: never; on demand only).
    pub retention_interval_ms: u64,
    /// Tokenize and seal sensitive fields before they are stored. Turning it off stores them in
    /// clear; only for measuring what privacy costs.
    pub seal_sensitive_fields: bool,
    /// Every acknowledged batch's answer carries a signed checkpoint covering it (one signature
    /// per durable group commit at most), so a client that keeps its receipts can prove later
    /// that an acknowledged event was dropped or altered. Off: only for measuring what it costs.
    pub signed_receipts: bool,
    /// Disk space held back in `system/reserve` and released when the disk fills, so reads
    /// (and their access records) keep working while ingest is paused (0: no reserve).
    pub reserve_bytes: u64,
    /// A tenant whose write or fsync failed heals (files cut back to the last durable batch,
    /// reopened) on the first request after this long.
    pub heal_after_ms: u64,
    /// Intake the service pulls from outside (`[[source.kafka]]`).
    pub source: Sources,
    /// The WORM archive (DESIGN.md §8.1): `s3://bucket[/prefix]` (a bucket with Object Lock;
    /// credentials from the `AWS_*` variables) or `file:///path`. None: no archive.
    pub archive: Option<String>,
    /// An S3-compatible endpoint and region for an `s3://` archive (else `AWS_ENDPOINT_URL` /
    /// `AWS_REGION`, then AWS's own).
    pub archive_endpoint: Option<String>,
    pub archive_region: Option<String>,
    /// A tenant's active segment is sealed and archived once its first event is this old: the
    /// archive is at most this far behind (the RPO).
    pub archive_interval_ms: u64,
    /// Archive lag beyond this is logged at error and POSTed to `webhook_url`.
    pub archive_lag_alert_ms: u64,
    /// The store of `archive`, opened by whoever can (the `agentrail` binary opens `s3://`
    /// ones; the service opens `file://` ones itself).
    #[serde(skip)]
    pub archive_store: Option<std::sync::Arc<dyn agentrail_archive::ArchiveStore>>,
    /// The query store (DESIGN.md §8.2): `postgres://user[:password]@host[:port]/db` for one
    /// PostgreSQL database shared by every tenant under row-level security. None: the embedded
    /// SQLite file per tenant in the data directory.
    pub index: Option<String>,
    /// The store of `index`, opened by whoever can (the `agentrail` binary opens PostgreSQL).
    #[serde(skip)]
    pub index_store: Option<std::sync::Arc<dyn agentrail_index::Store>>,
}

/// Where events are pulled from, besides the requests the server answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    pub kafka: Vec<KafkaSource>,
}

/// One `[[source.kafka]]`: a consumer group reading topics whose records are events (one JSON
/// value, or NDJSON lines, per record). The tenant of a record is its topic's in
/// `topic_tenants`, else the value of its `tenant_header` header, else `tenant`; a record whose
/// header names another tenant than its topic's is refused. Offsets are committed only once the
/// record's events are durable, or the record is in `dead_letter_topic` with its error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Names the source in logs and metrics (default: the group id).
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port[,host:port…]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    pub dead_letter_topic: String,
    #[serde(default)]
    pub topic_tenants: BTreeMap<String, String>,
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// The tenant of records that name none (no map entry, no header).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Most records taken in one round (the events of one tenant in a round are ingested
    /// together, in batches of at most `max_batch_events`).
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// How long a round waits for more records once it has one.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Passed to librdkafka as they are (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `auto.offset.reset`, …); offset commits stay agentrail's.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSource {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.group_id)
    }
}

fn default_tenant_header() -> String {
    "agentrail-tenant".into()
}

fn default_max_batch_records() -> usize {
    1_000
}

fn default_linger_ms() -> u64 {
    20
}

impl ServiceConfig {
    /// The defaults on `data_dir`, with no scheduled verification or retention runs: for a
    /// short-lived process (the offline `agentrail ingest`), tests, benchmarks and fuzzing,
    /// where a background pass would only compete with the work at hand.
    pub fn unscheduled(data_dir: impl Into<PathBuf>) -> ServiceConfig {
        ServiceConfig {
            data_dir: data_dir.into(),
            verify_interval_ms: 0,
            retention_interval_ms: 0,
            ..ServiceConfig::default()
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            data_dir: PathBuf::from("./agentrail-data"),
            max_batch_events: 10_000,
            max_index_lag: 100_000,
            query_wait_ms: 10_000,
            max_open_tenants: 256,
            max_open_indexes: 128,
            max_open_files: 0,
            checkpoint_interval_ms: 1_000,
            clock_skew_bound_ms: 60_000,
            clock_jump_bound_ms: 300_000,
            origin_prefix: None,
            trust_dir: None,
            signer: None,
            witnesses: Vec::new(),
            witness_interval_ms: 1000,
            archive: None,
            archive_endpoint: None,
            archive_region: None,
            archive_interval_ms: 3_600_000,
            archive_lag_alert_ms: 7_200_000,
            archive_store: None,
            index: None,
            index_store: None,
            verify_interval_ms: 600_000,
            webhook_url: None,
            retention_interval_ms: 3_600_000,
            seal_sensitive_fields: true,
            signed_receipts: true,
            reserve_bytes: 64 << 20,
            heal_after_ms: 1_000,
            source: Sources::default(),
        }
    }
}
