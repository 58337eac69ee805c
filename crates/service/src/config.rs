//! The service's settings. The server reads them from the same TOML file as its own (unknown
//! keys are refused there).

use serde::Deserialize;
use std::path::PathBuf;

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
    /// Every tenant is re-verified this often (0: never; on demand only).
    pub verify_interval_ms: u64,
    /// Integrity failures are POSTed (JSON) here.
    pub webhook_url: Option<String>,
    /// Every tenant's retention policy is applied this often (0: never; on demand only).
    pub retention_interval_ms: u64,
    /// Tokenize and seal sensitive fields before they are stored. Turning it off stores them in
    /// clear; only for measuring what privacy costs.
    pub seal_sensitive_fields: bool,
    /// Disk space held back in `system/reserve` and released when the disk fills, so reads
    /// (and their access records) keep working while ingest is paused (0: no reserve).
    pub reserve_bytes: u64,
    /// A tenant whose write or fsync failed heals (files cut back to the last durable batch,
    /// reopened) on the first request after this long.
    pub heal_after_ms: u64,
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
            verify_interval_ms: 600_000,
            webhook_url: None,
            retention_interval_ms: 3_600_000,
            seal_sensitive_fields: true,
            reserve_bytes: 64 << 20,
            heal_after_ms: 1_000,
        }
    }
}
