//! Configuration and the state every handler shares.

use crate::access::AccessLogs;
use crate::error::ApiError;
use crate::indexer::Indexer;
use crate::keys::{KeyStore, Principal, Scope};
use crate::metrics::Metrics;
use agentrail_event::TenantId;
use agentrail_ledger::clock::format_timestamp;
use agentrail_ledger::{Clock, Ledger, SystemClock};
use anyhow_free::Context as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Server settings: defaults, overridden by a TOML file (`--config`), then by flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Largest request body, after gzip decoding (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one ingest request (413 beyond).
    pub max_batch_events: usize,
    /// Ingest requests appending at once; others wait up to `append_wait_ms`, then get 503.
    pub max_inflight_appends: usize,
    pub append_wait_ms: u64,
    /// A tenant whose index is this many events behind its ledger gets 503 on ingest until the
    /// index catches up: the lag stays bounded.
    pub max_index_lag: u64,
    /// How long a query waits for the index to hold the events acknowledged before it.
    pub query_wait_ms: u64,
    pub max_open_tenants: usize,
    pub max_open_indexes: usize,
    pub checkpoint_interval_ms: u64,
    pub clock_skew_bound_ms: i64,
    /// Origins of checkpoints are `<origin_prefix>/tenants/<id>`; fixed at the first start.
    pub origin_prefix: Option<String>,
    /// Every tenant is re-verified this often (0: never; on demand only).
    pub verify_interval_ms: u64,
    /// Integrity failures are POSTed (JSON) here.
    pub webhook_url: Option<String>,
    /// Every tenant's retention policy is applied this often (0: never; on demand only).
    pub retention_interval_ms: u64,
    /// Tokenize and seal sensitive fields before they are stored (DESIGN.md §4). Turning it off
    /// stores them in clear; only for measuring what privacy costs.
    pub seal_sensitive_fields: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            data_dir: PathBuf::from("./agentrail-data"),
            listen: "127.0.0.1:7700".into(),
            max_body_bytes: 32 << 20,
            max_batch_events: 10_000,
            max_inflight_appends: 64,
            append_wait_ms: 5_000,
            max_index_lag: 100_000,
            query_wait_ms: 10_000,
            max_open_tenants: 256,
            max_open_indexes: 128,
            checkpoint_interval_ms: 1_000,
            clock_skew_bound_ms: 60_000,
            origin_prefix: None,
            verify_interval_ms: 600_000,
            webhook_url: None,
            retention_interval_ms: 3_600_000,
            seal_sensitive_fields: true,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML config file; unknown settings are an error.
    pub fn from_toml_file(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }
}

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub cfg: ServerConfig,
    pub ledger: Arc<Ledger>,
    pub keys: KeyStore,
    pub indexer: Indexer,
    pub access: AccessLogs,
    pub exports: crate::exports::Exports,
    pub integrity: Arc<crate::integrity::Integrity>,
    pub privacy: crate::privacy::Privacy,
    pub retention: Arc<crate::retention::Retention>,
    pub metrics: Metrics,
    pub append_slots: Arc<Semaphore>,
    pub clock: Arc<dyn Clock>,
    /// Serializes tenant creation.
    pub admin: Mutex<()>,
    /// Per tenant: the size of its latest checkpoint and since when events beyond it were seen.
    unsigned_since: Mutex<HashMap<TenantId, (u64, Instant)>>,
}

/// What opening the state did.
#[derive(Debug)]
pub struct Opened {
    pub state: Arc<AppState>,
    /// The root key, when this start created it (shown once).
    pub new_root_key: Option<String>,
    pub root_key_file: PathBuf,
}

mod anyhow_free {
    /// A tiny `.context()` for `Result<T, E: Display>` → `Result<T, String>`.
    pub trait Context<T> {
        fn context(self, what: &str) -> Result<T, String>;
    }
    impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
        fn context(self, what: &str) -> Result<T, String> {
            self.map_err(|e| format!("{what}: {e}"))
        }
    }
}

impl AppState {
    /// Opens (creating on first start) the data directory: ledger, keys, root key.
    pub fn open(cfg: ServerConfig) -> Result<Opened, String> {
        AppState::open_with_clock(cfg, Arc::new(SystemClock))
    }

    /// [`AppState::open`] with another clock for `received_at`, key and retention times (tests
    /// move a `ManualClock` to check what happens months later).
    pub fn open_with_clock(cfg: ServerConfig, clock: Arc<dyn Clock>) -> Result<Opened, String> {
        std::fs::create_dir_all(cfg.data_dir.join("system"))
            .context(&format!("creating {}", cfg.data_dir.display()))?;
        let mut lc = agentrail_ledger::Config::new(&cfg.data_dir);
        lc.origin_prefix = cfg.origin_prefix.clone();
        lc.max_open_tenants = cfg.max_open_tenants;
        lc.checkpoint_interval = Some(Duration::from_millis(cfg.checkpoint_interval_ms.max(10)));
        lc.clock_skew_bound_ms = cfg.clock_skew_bound_ms;
        lc.clock = clock.clone();
        let ledger = Arc::new(Ledger::open(lc).context("opening the ledger")?);
        for note in ledger.take_recovery_notes() {
            tracing::warn!(%note, "recovery");
        }
        let keys = KeyStore::open(&cfg.data_dir).context("opening the key store")?;
        let root_key_file = cfg.data_dir.join("system").join("root.key");
        let mut new_root_key = None;
        if !keys.has_root() {
            let now = format_timestamp(clock.now());
            let (_, key) = keys
                .create(None, "root", &[], &now)
                .context("creating the root key")?;
            crate::keys::write_atomic(&root_key_file, format!("{key}\n").as_bytes(), 0o600)
                .context(&format!("writing {}", root_key_file.display()))?;
            new_root_key = Some(key);
        }
        let master = std::env::var("AGENTRAIL_MASTER_KEY").ok();
        let privacy = crate::privacy::Privacy::open(&cfg.data_dir, master.as_deref())?;
        let content = cfg.seal_sensitive_fields.then(|| privacy.content_source());
        let retention = Arc::new(crate::retention::Retention::new(&cfg.data_dir));
        let r = retention.clone();
        let cutoffs: Arc<crate::indexer::CutoffsFn> = Arc::new(move |t: &TenantId| {
            r.cutoffs(t).unwrap_or_else(|e| {
                tracing::error!(tenant = %t, error = %e.message, "cannot read the retention cutoffs");
                Default::default()
            })
        });
        let indexer = Indexer::start(ledger.clone(), cfg.max_open_indexes, content, Some(cutoffs));
        let integrity = Arc::new(crate::integrity::Integrity::open(
            &cfg.data_dir,
            cfg.webhook_url.clone(),
        )?);
        if cfg.verify_interval_ms > 0 {
            integrity.start_schedule(
                ledger.clone(),
                Duration::from_millis(cfg.verify_interval_ms),
            );
        }
        let state = AppState {
            access: AccessLogs::new(&cfg.data_dir),
            exports: crate::exports::Exports::new(&cfg.data_dir),
            retention,
            integrity,
            privacy,
            append_slots: Arc::new(Semaphore::new(cfg.max_inflight_appends.max(1))),
            metrics: Metrics::default(),
            cfg,
            ledger,
            keys,
            indexer,
            clock,
            admin: Mutex::new(()),
            unsigned_since: Mutex::new(HashMap::new()),
        };
        let state = Arc::new(state);
        state.exports.resume_interrupted(state.ledger.clone());
        if state.cfg.retention_interval_ms > 0 {
            state.retention.start_schedule(
                Arc::downgrade(&state),
                Duration::from_millis(state.cfg.retention_interval_ms),
            );
        }
        Ok(Opened {
            state,
            new_root_key,
            root_key_file,
        })
    }

    pub fn now(&self) -> String {
        format_timestamp(self.clock.now())
    }

    /// Checks that `p` may act on `tenant` with `scope` (any of `scopes`). A key of another
    /// tenant gets the same 403 whether or not the tenant exists. The root key may administer
    /// every tenant (keys, policy, access log) but holds no data scopes.
    pub fn authorize(
        &self,
        p: &Principal,
        tenant: &TenantId,
        scopes: &[Scope],
    ) -> Result<(), ApiError> {
        match &p.tenant {
            None => {
                if scopes.contains(&Scope::TenantAdmin) {
                    if !self.ledger.exists(tenant) {
                        return Err(ApiError::not_found(format!(
                            "tenant {tenant} does not exist"
                        )));
                    }
                    Ok(())
                } else {
                    Err(ApiError::forbidden(
                        "the root key administers tenants; use a tenant key to read or write audit data",
                    ))
                }
            }
            Some(t) if t != tenant => Err(ApiError::forbidden(
                "this key is not allowed to access this tenant",
            )),
            Some(_) => {
                if scopes.iter().any(|s| p.scopes.contains(s)) {
                    Ok(())
                } else {
                    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                    Err(ApiError::forbidden(format!(
                        "this key lacks the scope {} for this endpoint",
                        names.join(" or ")
                    )))
                }
            }
        }
    }

    /// Refreshes the gauges computed at scrape time.
    pub fn refresh_gauges(&self) {
        let (sum, max) = self.indexer.lag();
        self.metrics.index_lag_total.set(sum as i64);
        self.metrics.index_lag_max.set(max as i64);
        self.metrics
            .open_tenants
            .set(self.ledger.open_tenants() as i64);
        let now = Instant::now();
        let mut seen = self
            .unsigned_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut oldest = 0.0f64;
        for t in self.indexer.open_tenants() {
            let (Ok(size), Ok(cp)) = (self.ledger.size(&t), self.ledger.latest_checkpoint(&t))
            else {
                continue;
            };
            let signed = cp.map_or(0, |c| c.size);
            if size <= signed {
                seen.remove(&t);
                continue;
            }
            let entry = seen.entry(t).or_insert((signed, now));
            if entry.0 != signed {
                *entry = (signed, now);
            }
            oldest = oldest.max(now.duration_since(entry.1).as_secs_f64());
        }
        self.metrics.checkpoint_age_seconds.set(oldest);
        self.metrics.integrity_failures.set(
            self.integrity
                .failures
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        );
        self.metrics
            .integrity_failing_tenants
            .set(self.integrity.failing.lock().map(|f| f.len()).unwrap_or(0) as i64);
    }

    /// Clean shutdown: stop indexing, sign final checkpoints.
    pub fn shutdown(&self) {
        self.integrity.stop();
        self.retention.stop();
        self.exports.stop();
        self.indexer.stop();
        if let Err(e) = self.ledger.close() {
            tracing::error!(error = %e, "closing the ledger");
        }
    }
}
