//! [`Service`]: the application. It owns the ledger, the key store, the vault and privacy layer,
//! the indexer, the access log and the background jobs, and offers every use case as one
//! synchronous operation. Intake paths (HTTP today; OTLP, Kafka and cluster nodes later) call
//! [`Service::ingest`]; readers call the read operations, each of which records its
//! `audit.access` entry durably before it returns.

use crate::access::{Access, AccessLogs};
use crate::budget::FileBudget;
use crate::config::ServiceConfig;
use crate::error::ServiceError;
use crate::exports::{ExportStatus, Exports, JobRequest};
use crate::indexer::Indexer;
use crate::integrity::Integrity;
use crate::keys::{KeyRecord, KeyStore, Principal, Scope};
use crate::metrics::Metrics;
use crate::privacy::{Policy, Privacy, VaultIndexSource};
use crate::retention::Retention;
use crate::storage::StorageGuard;
use agentrail_event::TenantId;
use agentrail_event::batch::{BatchFormat, Position, count_items, parse_batch};
use agentrail_event::validate::ValidEvent;
use agentrail_index::{EventRow, IndexError, TenantIndex};
use agentrail_ledger::anchors::Anchored;
use agentrail_ledger::clock::format_timestamp;
use agentrail_ledger::files::write_atomic;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::proofs::{self, ConsistencyProof, InclusionProof};
use agentrail_ledger::sync::lock;
use agentrail_ledger::{Clock, Held, Ledger, Receipt, SignedCheckpoint, SystemClock};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The application.
pub struct Service {
    cfg: ServiceConfig,
    layout: DataDir,
    ledger: Arc<Ledger>,
    keys: KeyStore,
    indexer: Arc<Indexer>,
    access: AccessLogs,
    exports: Exports,
    integrity: Arc<Integrity>,
    witnesses: Arc<crate::witnesses::Witnesses>,
    archiver: Option<Arc<crate::archiver::Archiver>>,
    privacy: Arc<Privacy>,
    retention: Arc<Retention>,
    metrics: Metrics,
    storage: StorageGuard,
    budget: FileBudget,
    clock: Arc<dyn Clock>,
    /// Serializes tenant creation.
    admin: Mutex<()>,
    /// Per tenant: the size of its latest checkpoint and since when events beyond it were seen.
    unsigned_since: Mutex<HashMap<TenantId, (u64, Instant)>>,
    /// Intake running beside the service (Kafka sources): stopped first at shutdown.
    intakes: Mutex<Vec<Box<dyn Intake>>>,
}

/// Something that feeds the service from outside on its own thread (a Kafka source). Its
/// `stop` returns once it takes no more input and what it took is durable or handed back.
pub trait Intake: Send {
    fn stop(&mut self);
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Service({})", self.layout.root().display())
    }
}

/// What [`Service::ingest_each`] stored: the receipts of the accepted items (in their order)
/// and each refused item's position with the reason.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    pub receipts: Vec<Receipt>,
    pub rejected: Vec<(usize, String)>,
}

/// What opening the service did.
#[derive(Debug)]
pub struct Opened {
    pub service: Arc<Service>,
    /// The root key, when this start created it (shown once).
    pub new_root_key: Option<String>,
    pub root_key_file: PathBuf,
}

impl Opened {
    /// The root principal, when this start created the root key.
    pub fn root(&self) -> Option<Principal> {
        self.new_root_key
            .as_deref()
            .and_then(|k| self.service.authenticate(k))
    }
}

/// How long a read may wait for the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Wait (up to `query_wait_ms`) until the index holds every event acknowledged before.
    #[default]
    Latest,
    /// Answer at once from what the index holds.
    Indexed,
}

/// A read of audit data, as its access-log record will name it.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub caller: Principal,
    pub tenant: TenantId,
    /// `GET /v1/tenants/{tenant}/sessions/{session_id}`: the method and route template.
    pub endpoint: String,
    /// What was asked: path and query parameters.
    pub params: Value,
}

/// Serves stored events as the reader asked: exactly what was hashed (`decrypt: false`), or with
/// the sealed sensitive fields opened; both with their `hash`. The body always comes from the
/// ledger (its CRC and hash checked), never from the index's copy: the index only says which
/// events answer. A row whose hash differs from the ledger's at its seq (an edited or damaged
/// index) is refused, logged and counted, never served.
#[derive(Debug, Clone)]
pub struct Presenter {
    privacy: Arc<Privacy>,
    ledger: Arc<Ledger>,
    mismatches: prometheus_client::metrics::counter::Counter,
    tenant: TenantId,
    decrypt: bool,
}

impl Presenter {
    pub fn one(&self, row: &EventRow) -> Result<Value, IndexError> {
        let mut all = self.all(std::slice::from_ref(row))?;
        Ok(all.pop().unwrap_or(Value::Null))
    }

    pub fn all(&self, rows: &[EventRow]) -> Result<Vec<Value>, IndexError> {
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        let stored = self.ledger.read_seqs(&self.tenant, &seqs)?;
        rows.iter()
            .zip(stored)
            .map(|(row, stored)| {
                let hash = agentrail_event::hash::to_hex(&stored.hash);
                if hash != row.hash {
                    self.mismatches.inc();
                    tracing::error!(tenant = %self.tenant, seq = row.seq, index = %row.hash, ledger = %hash,
                        "the index does not match the ledger: refusing to serve it (reindex the tenant)");
                    return Err(IndexError::Diverged {
                        tenant: self.tenant.to_string(),
                        seq: row.seq,
                    });
                }
                // The ledger checked these bytes against their hash: they are an event's JSON.
                let mut v: Value = serde_json::from_slice(&stored.bytes).unwrap_or(Value::Null);
                self.open(&mut v);
                if let Value::Object(m) = &mut v {
                    m.insert("hash".into(), Value::String(hash));
                }
                Ok(v)
            })
            .collect()
    }

    /// Opens, in place, the sealed fields of a stored event (when decrypting).
    pub fn open(&self, v: &mut Value) {
        if self.decrypt {
            self.privacy.open_event(&self.tenant, v);
        }
    }
}

/// Where a receipt's event sits in the checkpoint its answer carries.
#[derive(Debug, Clone)]
pub struct ReceiptProof {
    /// RFC 6962 leaf hash: SHA-256(0x00 ‖ the stored bytes).
    pub leaf_hash: String,
    /// Inclusion path, leaf to root (hex).
    pub inclusion: Vec<String>,
}

/// A new tenant.
#[derive(Debug, Clone)]
pub struct TenantInfo {
    pub tenant_id: TenantId,
    /// The checkpoint origin of the tenant's log.
    pub origin: String,
    /// The C2SP verifier key checkpoints and exports verify with.
    pub verifier_key: String,
}

/// A recorded erasure.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub erased_at: String,
    /// Whether the subject had a key (had sealed content).
    pub had_key: bool,
    /// The `custom.agentrail.subject.erased` / `custom.agentrail.tenant.erased` event in the
    /// tenant's ledger (a reserved type: no emitter can send one).
    pub receipt: Receipt,
}

/// Which event an inclusion proof is for.
#[derive(Debug, Clone)]
pub enum EventRef {
    Seq(u64),
    EventId(String),
}

impl Service {
    /// Opens (creating on first start) the data directory: ledger, keys, root key, vault,
    /// indexer, and starts the background jobs.
    pub fn open(cfg: ServiceConfig) -> Result<Opened, ServiceError> {
        Service::open_with_clock(cfg, Arc::new(SystemClock))
    }

    /// [`Service::open`] with another clock for `received_at`, event ids, key and retention
    /// times (tests move a `ManualClock` to check what happens months later).
    pub fn open_with_clock(
        cfg: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Opened, ServiceError> {
        let layout = DataDir::new(&cfg.data_dir);
        let fail = |what: String| {
            move |e: &dyn std::fmt::Display| ServiceError::internal(format!("{what}: {e}"))
        };
        std::fs::create_dir_all(layout.system().dir())
            .map_err(|e| fail(format!("creating {}", cfg.data_dir.display()))(&e))?;
        let mut lc = agentrail_ledger::Config::new(&cfg.data_dir);
        lc.origin_prefix = cfg.origin_prefix.clone();
        if let Some(trust) = &cfg.trust_dir {
            std::fs::create_dir_all(trust).map_err(|e| {
                fail(format!("creating the trust directory {}", trust.display()))(&e)
            })?;
            let (t, d) = (trust.canonicalize(), cfg.data_dir.canonicalize());
            if let (Ok(t), Ok(d)) = (t, d)
                && (t.starts_with(&d) || d.starts_with(&t))
            {
                return Err(ServiceError::internal(format!(
                    "trust_dir {} must be outside the data directory {} (pins inside it protect nothing)",
                    t.display(),
                    d.display()
                )));
            }
        }
        lc.trust_dir = cfg.trust_dir.clone();
        lc.signer = cfg.signer.clone();
        let budget = FileBudget::new(
            cfg.max_open_files,
            cfg.max_open_tenants,
            cfg.max_open_indexes,
        );
        tracing::info!(
            budget = budget.total,
            ledger_tenants = budget.ledger_tenants,
            indexes = budget.indexes,
            logs_per_kind = budget.logs_per_kind,
            "open-file budget"
        );
        lc.max_open_tenants = budget.ledger_tenants;
        lc.checkpoint_interval = Some(Duration::from_millis(cfg.checkpoint_interval_ms.max(10)));
        lc.clock_skew_bound_ms = cfg.clock_skew_bound_ms;
        lc.clock_jump_bound_ms = cfg.clock_jump_bound_ms;
        lc.clock = clock.clone();
        lc.heal_after = Duration::from_millis(cfg.heal_after_ms);
        let ledger = Arc::new(Ledger::open(lc).map_err(|e| fail("opening the ledger".into())(&e))?);
        let keys = KeyStore::open(&layout).map_err(|e| fail("opening the key store".into())(&e))?;
        let root_key_file = layout.system().root_key();
        let mut new_root_key = None;
        if !keys.has_root() {
            let now = format_timestamp(clock.now());
            let (_, key) = keys
                .create(None, "root", &[], &now)
                .map_err(|e| fail("creating the root key".into())(&e))?;
            write_atomic(&root_key_file, format!("{key}\n").as_bytes(), 0o600)
                .map_err(|e| fail(format!("writing {}", root_key_file.display()))(&e))?;
            new_root_key = Some(key);
        }
        let vault = Arc::new(crate::privacy::open_vault(&layout)?);
        vault.limit_open(budget.logs_per_kind);
        let in_ledger: crate::privacy::InLedger = {
            let ledger = Arc::downgrade(&ledger);
            Arc::new(move |t: &TenantId, id: &str| {
                ledger.upgrade()?.find(t, id).ok().map(|s| s.is_some())
            })
        };
        let privacy = Arc::new(Privacy::new(
            vault.clone(),
            &layout,
            clock.clone(),
            Some(in_ledger),
        ));
        privacy.limit_open(budget.logs_per_kind);
        let run_logs = Arc::new(crate::retention::run_logs(&layout));
        run_logs.limit_open(budget.logs_per_kind);
        let source = VaultIndexSource::new(vault, run_logs.clone(), cfg.seal_sensitive_fields);
        let run_logs_for_archive = run_logs.clone();
        let index_store: Arc<dyn agentrail_index::Store> = match (&cfg.index, &cfg.index_store) {
            (_, Some(store)) => store.clone(),
            (None, None) => Arc::new(agentrail_index::SqliteStore::new(ledger.data_dir())),
            (Some(url), None) => {
                return Err(ServiceError::internal(format!(
                    "index {url}: the agentrail binary opens postgres:// query stores"
                )));
            }
        };
        let indexer = Arc::new(Indexer::start(
            ledger.clone(),
            index_store,
            budget.indexes,
            Some(Arc::new(source)),
        ));
        let archive_store: Option<Arc<dyn agentrail_archive::ArchiveStore>> = match (
            &cfg.archive,
            &cfg.archive_store,
        ) {
            (_, Some(store)) => Some(store.clone()),
            (Some(url), None) if url.starts_with("file://") => Some(Arc::new(
                agentrail_archive::FileArchive::from_url(url)
                    .map_err(|e| ServiceError::internal(e.to_string()))?,
            )),
            (Some(url), None) => {
                return Err(ServiceError::internal(format!(
                    "archive {url}: the agentrail binary opens s3:// archives (or use file:///path)"
                )));
            }
            (None, None) => None,
        };
        let integrity = Arc::new(Integrity::open(
            ledger.clone(),
            clock.clone(),
            cfg.webhook_url.clone(),
            indexer.clone(),
            archive_store.clone(),
        )?);
        if cfg.verify_interval_ms > 0 {
            integrity.start_schedule(Duration::from_millis(cfg.verify_interval_ms));
        }
        let retention = Arc::new(Retention::new(
            ledger.clone(),
            privacy.clone(),
            indexer.clone(),
            clock.clone(),
            run_logs,
        ));
        if cfg.retention_interval_ms > 0 {
            retention.start_schedule(Duration::from_millis(cfg.retention_interval_ms));
        }
        let mut list = Vec::new();
        for w in &cfg.witnesses {
            let key = w.key.parse().map_err(|e| {
                ServiceError::internal(format!("the key of witness {}: {e}", w.url))
            })?;
            list.push(crate::witnesses::Witness {
                url: w.url.clone(),
                key,
            });
        }
        let witnesses = Arc::new(crate::witnesses::Witnesses::new(
            ledger.clone(),
            layout.clone(),
            list,
        ));
        witnesses.start_schedule(Duration::from_millis(cfg.witness_interval_ms.max(10)));
        let access = AccessLogs::new(&layout);
        access.logs().limit_open(budget.logs_per_kind);
        let archiver = match archive_store {
            Some(store) => {
                let a = Arc::new(crate::archiver::Archiver::new(
                    ledger.clone(),
                    privacy.clone(),
                    store,
                    vec![
                        (Anchored::Access, access.logs().clone()),
                        (Anchored::Retention, run_logs_for_archive.clone()),
                    ],
                    clock.clone(),
                    Duration::from_millis(cfg.archive_interval_ms.max(1)),
                    Duration::from_millis(cfg.archive_lag_alert_ms),
                    cfg.webhook_url.clone(),
                )?);
                a.start_schedule();
                Some(a)
            }
            None => None,
        };
        let exports = Exports::new(ledger.clone(), privacy.vault().clone());
        exports.resume_interrupted();
        let storage = StorageGuard::open(&layout, cfg.reserve_bytes);
        let service = Service {
            storage,
            budget,
            access,
            exports,
            retention,
            integrity,
            witnesses,
            archiver,
            privacy,
            metrics: Metrics::default(),
            layout,
            cfg,
            ledger,
            keys,
            indexer,
            clock,
            admin: Mutex::new(()),
            unsigned_since: Mutex::new(HashMap::new()),
            intakes: Mutex::new(Vec::new()),
        };
        Ok(Opened {
            service: Arc::new(service),
            new_root_key,
            root_key_file,
        })
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The tenants' vaults, policies and token vaults: what protects sensitive fields.
    pub fn privacy(&self) -> &Arc<Privacy> {
        &self.privacy
    }

    pub fn layout(&self) -> &DataDir {
        &self.layout
    }

    /// The injected clock's time, RFC 3339 with nine fraction digits.
    pub fn now(&self) -> String {
        format_timestamp(self.clock.now())
    }

    /// Whether the service can do its work, and if not what is wrong: each problem is
    /// `{"check": …, "reason": …}` (with `tenant` where one is concerned).
    pub fn readiness(&self) -> Vec<Value> {
        let mut problems = Vec::new();
        if !self.layout.system().dir().is_dir() {
            problems.push(json!({"check": "data_dir", "reason": "the data directory is gone"}));
        }
        if let Some(drift) = self.ledger.clock_watch().drift_ms() {
            problems.push(json!({
                "check": "clock",
                "reason": format!("the wall clock is {drift} ms away from the monotonic clock; retention is paused"),
            }));
        }
        if let Some(why) = self.storage.status().full {
            problems.push(json!({"check": "storage", "reason": why}));
        }
        for (tenant, reason) in self.ledger.poisoned_tenants() {
            problems.push(json!({
                "check": "tenant_writer",
                "tenant": tenant.as_str(),
                "reason": format!("refusing appends until it heals: {reason}"),
            }));
        }
        for (tenant, applied, of) in self.indexer.rebuilding() {
            problems.push(json!({
                "check": "index_rebuilding",
                "tenant": tenant.as_str(),
                "reason": format!("rebuilding a damaged index: {applied} of {of} events"),
            }));
        }
        let (_, max_lag) = self.indexer.lag();
        if max_lag > self.cfg.max_index_lag {
            problems.push(json!({
                "check": "index_lag",
                "reason": format!(
                    "an index is {max_lag} events behind (bound {})",
                    self.cfg.max_index_lag
                ),
            }));
        }
        problems
    }

    // ---- keys and authorization ---------------------------------------------------------------

    /// The principal of a key string, if it is a live key.
    pub fn authenticate(&self, key: &str) -> Option<Principal> {
        self.keys.authenticate(key)
    }

    /// Checks that `caller` may act on the tenant named `raw` with one of `scopes`, and returns
    /// the tenant. A key of another tenant gets the same answer whether or not the tenant exists;
    /// the root key may administer every tenant (keys, policy, access log) but holds no data
    /// scopes.
    pub fn authorize(
        &self,
        caller: &Principal,
        raw: &str,
        scopes: &[Scope],
    ) -> Result<TenantId, ServiceError> {
        if let Some(own) = &caller.tenant
            && own.as_str() != raw
        {
            return Err(ServiceError::forbidden(
                "this key is not allowed to access this tenant",
            ));
        }
        let tenant = TenantId::parse(raw).map_err(ServiceError::bad_request)?;
        match &caller.tenant {
            None if scopes.contains(&Scope::TenantAdmin) => {
                if !self.ledger.exists(&tenant) {
                    return Err(ServiceError::not_found(format!(
                        "tenant {tenant} does not exist"
                    )));
                }
            }
            None => {
                return Err(ServiceError::forbidden(
                    "the root key administers tenants; use a tenant key to read or write audit data",
                ));
            }
            Some(_) if !scopes.iter().any(|s| caller.scopes.contains(s)) => {
                let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                return Err(ServiceError::forbidden(format!(
                    "this key lacks the scope {} for this endpoint",
                    names.join(" or ")
                )));
            }
            Some(_) => {}
        }
        Ok(tenant)
    }

    /// Refuses every caller but the root key.
    pub fn require_root(&self, caller: &Principal, what: &str) -> Result<(), ServiceError> {
        if caller.is_root() {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!("only the root key {what}")))
        }
    }

    /// Creates a tenant (root only).
    pub fn create_tenant(&self, caller: &Principal, raw: &str) -> Result<TenantInfo, ServiceError> {
        self.require_root(caller, "creates tenants")?;
        let tenant = TenantId::parse(raw).map_err(|e| ServiceError::bad_field(e, "tenant_id"))?;
        if !self.create_tenant_offline(&tenant)? {
            return Err(ServiceError::Conflict {
                message: format!("tenant {tenant} already exists"),
                details: Vec::new(),
            });
        }
        tracing::info!(%tenant, by = %caller.key_id, "tenant created");
        Ok(TenantInfo {
            origin: self.ledger.origin(&tenant),
            verifier_key: self.ledger.verifier().to_string(),
            tenant_id: tenant,
        })
    }

    /// Creates `tenant` unless it exists (`false` then), for the offline commands: whoever runs
    /// them holds the data directory, which is more than the root key.
    pub fn create_tenant_offline(&self, tenant: &TenantId) -> Result<bool, ServiceError> {
        let _g = lock(&self.admin);
        Ok(self.ledger.create_tenant(tenant)?)
    }

    /// Creates a key of `tenant`; returns its record and the key string (shown only now).
    pub fn create_key(
        &self,
        caller: &Principal,
        tenant: &TenantId,
        name: Option<String>,
        scopes: &[Scope],
    ) -> Result<(KeyRecord, String), ServiceError> {
        if scopes.is_empty() {
            return Err(ServiceError::bad_field(
                "a key needs at least one scope",
                "scopes",
            ));
        }
        let name = name.unwrap_or_default();
        if name.len() > 200 {
            return Err(ServiceError::bad_request("name is longer than 200 bytes"));
        }
        let (rec, key) = self
            .keys
            .create(Some(tenant), &name, scopes, &self.now())
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        tracing::info!(%tenant, key_id = %rec.key_id, by = %caller.key_id, "key created");
        self.anchor_key_change(tenant);
        Ok((rec, key))
    }

    /// A tenant's key change is committed by a checkpoint signed now, not by the next one the
    /// checkpointer signs: a key added or widened in the file meanwhile would look like it.
    /// If that signature fails, the change stands (durable) and the next checkpoint commits it.
    fn anchor_key_change(&self, tenant: &TenantId) {
        if let Err(e) = self.ledger.anchor_now(tenant) {
            tracing::warn!(%tenant, error = %e, "the key change is left for the next checkpoint to commit");
        }
    }

    pub fn list_keys(&self, tenant: &TenantId) -> Vec<KeyRecord> {
        self.keys.list(tenant)
    }

    /// Revokes a key of `tenant`; it stops working for the next request.
    pub fn revoke_key(
        &self,
        caller: &Principal,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<(), ServiceError> {
        if self
            .keys
            .revoke(Some(tenant), key_id, &self.now())
            .map_err(|e| ServiceError::internal(e.to_string()))?
        {
            tracing::info!(%tenant, %key_id, by = %caller.key_id, "key revoked");
            self.anchor_key_change(tenant);
            Ok(())
        } else {
            Err(ServiceError::not_found(format!(
                "tenant {tenant} has no key {key_id:?}"
            )))
        }
    }

    // ---- ingest -------------------------------------------------------------------------------

    /// Ingests a body (one event, a JSON array or NDJSON): its items are counted (refused
    /// beyond `max_batch_events` before anything is parsed), parsed and validated, then
    /// [`Service::ingest_events`] stores them. A rejected batch appends nothing.
    pub fn ingest(
        &self,
        tenant: &TenantId,
        body: &[u8],
        format: BatchFormat,
    ) -> Result<Vec<Receipt>, ServiceError> {
        // First: while the disk is (nearly) full or the index far behind, nothing is parsed,
        // opened or written (a refused request the client retries costs a lookup, not a parse).
        self.admit_events(tenant)?;
        // Counted before anything is parsed: a million-line body is refused at the cost of a
        // byte scan, not of a million validated events.
        self.check_batch_size(count_items(body, format))?;
        let items = parse_batch(body, format);
        let mut details = Vec::new();
        let mut events = Vec::with_capacity(items.len());
        for item in items {
            match item.result {
                Ok(ev) => events.push(ev),
                Err(bad) => {
                    for p in bad.problems {
                        let mut d = position(item.position);
                        d.insert("path".into(), json!(p.path));
                        d.insert("reason".into(), json!(p.reason));
                        details.push(Value::Object(d));
                    }
                }
            }
        }
        if !details.is_empty() {
            self.metrics.reject("invalid");
            return Err(ServiceError::InvalidEvents {
                message: format!(
                    "{} problem(s) in the batch; nothing was stored",
                    details.len()
                ),
                details,
            });
        }
        let receipts = self.ingest_events(tenant, events)?;
        self.metrics.ingest_bytes.inc_by(body.len() as u64);
        Ok(receipts)
    }

    fn admit_ingest(&self) -> Result<(), ServiceError> {
        self.storage
            .admit()
            .inspect_err(|_| self.metrics.reject("storage_full"))
    }

    fn check_batch_size(&self, count: usize) -> Result<(), ServiceError> {
        if count <= self.cfg.max_batch_events {
            return Ok(());
        }
        self.metrics.reject("batch_too_large");
        Err(ServiceError::TooLarge {
            code: "batch_too_large",
            message: format!(
                "the batch holds {count} events, above the limit of {}",
                self.cfg.max_batch_events
            ),
            details: Vec::new(),
        })
    }

    /// An intake that does not answer a tenant's key (Kafka, offline) may name any tenant: one
    /// that does not exist is the caller's mistake, and nothing of it is created.
    fn check_tenant(&self, tenant: &TenantId) -> Result<(), ServiceError> {
        if self.ledger.exists(tenant) {
            return Ok(());
        }
        Err(ServiceError::not_found(format!(
            "tenant {tenant} does not exist"
        )))
    }

    /// Whether `tenant` takes events now: it exists, the disk has room, and its query index is
    /// not too far behind. Every intake checks it before it parses or maps anything, and
    /// [`Service::ingest_events`] again.
    fn admit_events(&self, tenant: &TenantId) -> Result<(), ServiceError> {
        self.check_tenant(tenant)?;
        self.admit_ingest()?;
        let handle = self.indexer.handle(tenant)?;
        // A rebuild after damage runs flat out and is reported by queries and /readyz; ingest
        // goes on meanwhile (the ledger is the truth).
        if handle.lag() > self.cfg.max_index_lag && handle.rebuilding().is_none() {
            self.metrics.reject("index_behind");
            self.indexer.appended(tenant, 0)?;
            return Err(ServiceError::unavailable(
                "index_behind",
                format!(
                    "the query index of tenant {tenant} is {} events behind; retry shortly",
                    handle.lag()
                ),
                2,
            ));
        }
        Ok(())
    }

    /// Stores a batch of validated events — the one ingest operation every intake path (HTTP,
    /// the offline `agentrail ingest`, and every later one) ends in: admission (disk space,
    /// index lag, batch size), then, under the tenant's erasure gate, tokenize and seal the
    /// sensitive fields and append all-or-nothing; the receipts come back only once every
    /// event is durable. A rejected batch appends nothing and keeps no token value.
    pub fn ingest_events(
        &self,
        tenant: &TenantId,
        mut events: Vec<ValidEvent>,
    ) -> Result<Vec<Receipt>, ServiceError> {
        self.admit_events(tenant)?;
        self.check_batch_size(events.len())?;
        let started = Instant::now();
        let receipts = self
            .privacy
            .sealing(tenant, |sealing| {
                // Idempotency compares a keyed digest of what was sent, not the sealed bytes
                // (which change with a rotated or erased key). Replays already in the ledger
                // are answered before sealing: their values are never sealed or kept again (an
                // erased subject's re-sent event stays erased).
                let digests = sealing.content_digests(&events)?;
                let probes: Vec<(usize, &str, &str)> = events
                    .iter()
                    .zip(&digests)
                    .enumerate()
                    .filter_map(|(i, (ev, d))| {
                        let id = ev.value.get("event_id").and_then(Value::as_str)?;
                        Some((i, id, d.as_deref()?))
                    })
                    .collect();
                let pairs: Vec<(&str, &str)> = probes.iter().map(|p| (p.1, p.2)).collect();
                let known = self
                    .ledger
                    .replays(tenant, &pairs)
                    .map_err(|e| e.reindexed(|k| probes[k].0))?;
                let mut answered: Vec<Option<Receipt>> = vec![None; events.len()];
                for (p, held) in probes.iter().zip(known) {
                    answered[p.0] = match held {
                        Held::Absent => None,
                        Held::Replay(r) => Some(r),
                        // Stored before digests were kept: the same if what was sent, recovered
                        // from the stored form, has the same digest (else the append compares
                        // the stored bytes, and a rotated key makes that a conflict).
                        Held::Undigested { receipt, stored } => {
                            (sealing.stored_digest(&stored)?.as_deref() == Some(p.2))
                                .then_some(receipt)
                        }
                    };
                }
                let mut fresh = Vec::with_capacity(events.len());
                let mut fresh_digests = Vec::with_capacity(events.len());
                let mut at = Vec::with_capacity(events.len());
                for (i, (ev, d)) in events.drain(..).zip(digests).enumerate() {
                    if answered[i].is_none() {
                        fresh.push(ev);
                        fresh_digests.push(d);
                        at.push(i);
                    }
                }
                let written = if self.cfg.seal_sensitive_fields && !fresh.is_empty() {
                    Some(sealing.protect_batch(&mut fresh)?)
                } else {
                    None
                };
                let appended = self
                    .ledger
                    .append_digested(tenant, fresh.into_iter().zip(fresh_digests).collect())
                    .map_err(|e| e.reindexed(|k| at[k]))?;
                // Only now do the batch's token values count as kept (a refused batch's are
                // dropped when the vault is next opened).
                if let Some(w) = written {
                    sealing.commit(w);
                }
                for (i, r) in at.into_iter().zip(appended) {
                    answered[i] = Some(r);
                }
                Ok::<_, ServiceError>(answered.into_iter().flatten().collect::<Vec<_>>())
            })
            .inspect_err(|e| {
                if e.is_storage_failure() {
                    self.storage.write_failed();
                }
            })?;
        self.metrics
            .ingest_append_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(last) = receipts.iter().map(|r| r.seq).max() {
            self.indexer.appended(tenant, last + 1)?;
        }
        self.metrics.ingest_events.inc_by(receipts.len() as u64);
        self.metrics
            .ingest_replayed
            .inc_by(receipts.iter().filter(|r| r.replayed).count() as u64);
        Ok(receipts)
    }

    /// The signed checkpoint an acknowledged batch's answer carries: it covers every receipt
    /// (`None` when `signed_receipts` is off or there are none), with, if `proofs`, each
    /// receipt's leaf hash and RFC 6962 inclusion proof in it (hex, in receipt order).
    pub fn sign_receipts(
        &self,
        tenant: &TenantId,
        receipts: &[Receipt],
        proofs: bool,
    ) -> Result<Option<(String, Vec<ReceiptProof>)>, ServiceError> {
        let Some(end) = receipts.iter().map(|r| r.seq + 1).max() else {
            return Ok(None);
        };
        if !self.cfg.signed_receipts {
            return Ok(None);
        }
        let started = Instant::now();
        let cp = self
            .ledger
            .receipt_checkpoint(tenant, end)
            .map_err(|e| ServiceError::internal(format!("signing the receipts: {e}")))?;
        let mut paths = Vec::new();
        if proofs {
            for r in receipts {
                let stored = self.ledger.read(tenant, r.seq)?;
                let p = self.ledger.inclusion_proof(tenant, r.seq, cp.size)?;
                paths.push(ReceiptProof {
                    leaf_hash: agentrail_event::hash::to_hex(&agentrail_merkle::leaf_hash(
                        &stored.bytes,
                    )),
                    inclusion: p.iter().map(agentrail_event::hash::to_hex).collect(),
                });
            }
        }
        self.metrics
            .receipt_sign_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Some((cp.text, paths)))
    }

    /// Stores what it can of a request whose items stand alone (OTLP spans, a topic's
    /// records): each item is an event (or why its intake could not make one); the invalid ones,
    /// and those the ledger refuses one by one (an event id used for other content, an event
    /// too large), are reported by position with the reason, and the others go through
    /// [`Service::ingest_events`] together. Anything that is not about one item (disk full,
    /// back-pressure, shutting down) refuses the whole request, as for any batch.
    ///
    /// `make` makes the items; it is called once admission passed (a request refused as a
    /// whole costs no mapping), and once more per item the ledger refuses alone, since the
    /// refused round consumed the others (they were sealed on the way): each time the same
    /// items in the same order. Refusals are rare; keeping a copy of every event for them
    /// would not be.
    pub fn ingest_each(
        &self,
        tenant: &TenantId,
        mut make: impl FnMut() -> Vec<Result<Value, String>>,
    ) -> Result<Accepted, ServiceError> {
        self.admit_events(tenant)?;
        let mut round = make();
        let total = round.len();
        self.check_batch_size(total)?;
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut refused = vec![false; total];
        loop {
            if round.len() != total {
                return Err(ServiceError::internal(format!(
                    "a request of {total} items was made again with {}",
                    round.len()
                )));
            }
            let mut events = Vec::with_capacity(total);
            let mut at = Vec::with_capacity(total);
            for (i, item) in round.into_iter().enumerate() {
                if refused[i] {
                    continue;
                }
                match item.and_then(|v| {
                    agentrail_event::validate_value(v).map_err(|e| {
                        e.problems
                            .iter()
                            .map(|p| format!("{}: {}", p.path, p.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                }) {
                    Ok(ev) => {
                        events.push(ev);
                        at.push(i);
                    }
                    Err(reason) => {
                        refused[i] = true;
                        rejected.push((i, reason));
                    }
                }
            }
            if events.is_empty() {
                break;
            }
            match self.ingest_events(tenant, events) {
                Ok(receipts) => {
                    rejected.sort_by_key(|r| r.0);
                    if !rejected.is_empty() {
                        self.metrics.reject("invalid");
                    }
                    return Ok(Accepted { receipts, rejected });
                }
                Err(
                    ServiceError::Conflict { message, details }
                    | ServiceError::InvalidEvents { message, details }
                    | ServiceError::TooLarge {
                        code: "event_too_large",
                        message,
                        details,
                    },
                ) if details.len() == 1 && details[0]["index"].as_u64().is_some() => {
                    let k = details[0]["index"].as_u64().unwrap_or_default() as usize;
                    let Some(&i) = at.get(k) else {
                        return Err(ServiceError::internal(format!(
                            "the ledger refused item {k} of {}: {message}",
                            at.len()
                        )));
                    };
                    let reason = message
                        .strip_prefix(&format!("event {k}: "))
                        .unwrap_or(&message)
                        .to_owned();
                    refused[i] = true;
                    rejected.push((i, reason));
                    round = make();
                }
                Err(e) => return Err(e),
            }
        }
        rejected.sort_by_key(|r| r.0);
        self.metrics.reject("invalid");
        Ok(Accepted {
            receipts: Vec::new(),
            rejected,
        })
    }

    // ---- reads --------------------------------------------------------------------------------

    /// How events of `tenant` are served: decrypted (sealed fields opened) or as stored.
    pub fn presenter(&self, tenant: &TenantId, decrypt: bool) -> Presenter {
        Presenter {
            privacy: self.privacy.clone(),
            ledger: self.ledger.clone(),
            mismatches: self.metrics.index_mismatches.clone(),
            tenant: tenant.clone(),
            decrypt,
        }
    }

    fn wait(&self, c: Consistency) -> Option<Duration> {
        match c {
            Consistency::Latest => Some(Duration::from_millis(self.cfg.query_wait_ms)),
            Consistency::Indexed => None,
        }
    }

    /// Runs a query of the index (`f` returns the answer and how many results it holds), then
    /// records the read in the tenant's access log; returns the answer and how many of the
    /// tenant's events it covers (`[0, n)`).
    pub fn read<T>(
        &self,
        req: ReadRequest,
        consistency: Consistency,
        f: impl FnOnce(&TenantIndex) -> Result<(T, u64), IndexError>,
    ) -> Result<(T, u64), ServiceError> {
        let ((out, count), indexed) = self.indexer.query(&req.tenant, self.wait(consistency), f)?;
        self.record(&req, count)?;
        Ok((out, indexed))
    }

    /// One event, with its inclusion proof at `tree_size` (default: the latest checkpoint's)
    /// when `proof` is set.
    pub fn event(
        &self,
        req: ReadRequest,
        consistency: Consistency,
        event_id: &str,
        proof: Option<Option<u64>>,
    ) -> Result<(EventRow, Option<InclusionProof>, u64), ServiceError> {
        let id = event_id.to_owned();
        let (row, indexed) =
            self.indexer
                .query(&req.tenant, self.wait(consistency), move |ix| ix.event(&id))?;
        let proof = match proof {
            Some(tree_size) => {
                let cp = self.checkpoint(&req.tenant)?;
                Some(proofs::inclusion(
                    &self.ledger,
                    &req.tenant,
                    &cp,
                    row.seq,
                    tree_size,
                )?)
            }
            None => None,
        };
        self.record(&req, 1)?;
        Ok((row, proof, indexed))
    }

    /// An inclusion proof of one event at `tree_size` (default: the latest checkpoint's), with
    /// the checkpoint it is checked against.
    pub fn inclusion(
        &self,
        req: ReadRequest,
        event: EventRef,
        tree_size: Option<u64>,
    ) -> Result<(InclusionProof, SignedCheckpoint), ServiceError> {
        let seq = match event {
            EventRef::Seq(seq) => seq,
            EventRef::EventId(id) => self.ledger.find(&req.tenant, &id)?.ok_or_else(|| {
                ServiceError::not_found(format!("no event with event_id {id:?} in this tenant"))
            })?,
        };
        let cp = self.checkpoint(&req.tenant)?;
        let p = proofs::inclusion(&self.ledger, &req.tenant, &cp, seq, tree_size)?;
        self.record(&req, 1)?;
        Ok((p, cp))
    }

    /// A consistency proof from size `from` to `to` (default: the latest checkpoint's).
    pub fn consistency(
        &self,
        req: ReadRequest,
        from: u64,
        to: Option<u64>,
    ) -> Result<ConsistencyProof, ServiceError> {
        let cp = self.checkpoint(&req.tenant)?;
        let p = proofs::consistency(&self.ledger, &req.tenant, &cp, from, to)?;
        self.record(&req, 1)?;
        Ok(p)
    }

    /// A signed checkpoint covering every durable event: the latest logged one when it does,
    /// else one signed now.
    pub fn checkpoint(&self, tenant: &TenantId) -> Result<SignedCheckpoint, ServiceError> {
        let size = self.ledger.size(tenant)?;
        let signed = match self.ledger.latest_checkpoint(tenant)? {
            Some(cp) if cp.size >= size => return Ok(cp),
            // Behind what is durable (the checkpointer signs at most once a second): one
            // signed over the durable tree, as a receipt's is (at most once per size).
            Some(_) => self.ledger.receipt_checkpoint(tenant, size),
            None => self.ledger.checkpoint(tenant),
        };
        signed.map_err(|e| match e {
            agentrail_ledger::CheckpointError::Open(o) => o.into(),
            agentrail_ledger::CheckpointError::Read(r) => r.into(),
            e => ServiceError::internal(e.to_string()),
        })
    }

    /// The newest checkpoint with the witnesses' cosignatures gathered for it (`None` before
    /// any witness cosigned one, or without witnesses).
    pub fn cosigned_checkpoint(&self, tenant: &TenantId) -> Result<Option<String>, ServiceError> {
        self.ledger.size(tenant)?;
        self.witnesses.cosigned(tenant)
    }

    /// Archives the tenant now: seals its active segment (whatever its age) and puts what is
    /// sealed and not archived yet, and what its logs gained.
    pub fn archive_now(
        &self,
        tenant: &TenantId,
    ) -> Result<crate::archiver::ArchiveRound, ServiceError> {
        let a = self.archiver.as_ref().ok_or_else(|| {
            ServiceError::bad_request(
                "no archive is configured (archive = \"s3://…\" or \"file:///…\")",
            )
        })?;
        a.run(tenant, true)
    }

    /// Submits the tenant's newest checkpoint to the witnesses now (what the schedule does).
    pub fn witness_now(&self, tenant: &TenantId) -> Result<(), ServiceError> {
        self.witnesses.run(tenant)
    }

    /// The C2SP verifier key of every checkpoint and signed statement.
    pub fn verifier_key(&self) -> String {
        self.ledger.verifier().to_string()
    }

    /// A page of the tenant's access log (itself a read that is logged).
    pub fn access_log(
        &self,
        req: ReadRequest,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ServiceError> {
        let page = self.access.logs.page(&req.tenant, cursor, limit)?;
        self.record(&req, page.0.len() as u64)?;
        Ok(page)
    }

    /// Appends the `audit.access` record of a read; returns once it is durable.
    fn record(&self, req: &ReadRequest, count: u64) -> Result<(), ServiceError> {
        self.access.record(
            &req.tenant,
            &self.now(),
            Access {
                principal: &req.caller,
                endpoint: &req.endpoint,
                params: req.params.clone(),
                result_count: count,
            },
        )?;
        self.metrics.access_records.inc();
        Ok(())
    }

    // ---- privacy ------------------------------------------------------------------------------

    /// The values behind tokens (the reveal is recorded in the access log).
    pub fn reveal(
        &self,
        req: ReadRequest,
        tokens: &[String],
    ) -> Result<Vec<(String, Option<Value>)>, ServiceError> {
        if tokens.len() > 1000 {
            return Err(ServiceError::bad_request("at most 1000 tokens per request"));
        }
        let values = self.privacy.reveal(&req.tenant, tokens)?;
        let found = values.iter().filter(|(_, v)| v.is_some()).count() as u64;
        self.record(&req, found)?;
        Ok(values)
    }

    /// Crypto-shreds a data subject: its keys are destroyed (its content reads `$erased`
    /// everywhere), its content leaves the index, its token values become tombstones, and the
    /// erasure is recorded as a `custom.agentrail.subject.erased` event. Under the erasure gate, so every
    /// event of the subject before that event reads `$erased`.
    pub fn erase_subject(
        &self,
        caller: &Principal,
        tenant: &TenantId,
        subject: &str,
    ) -> Result<Erasure, ServiceError> {
        if subject.is_empty() || subject.len() > 256 || subject.chars().any(char::is_control) {
            return Err(ServiceError::bad_request(
                "subject_id must be 1-256 characters without control characters",
            ));
        }
        let e = self.erase(
            caller,
            tenant,
            Some(subject),
            "custom.agentrail.subject.erased",
            |now| json!({"subject_id": subject, "erased_at": now, "method": "crypto-shredding"}),
        )?;
        tracing::info!(%tenant, %subject, by = %caller.key_id, "subject erased");
        Ok(e)
    }

    /// Crypto-shreds every key of a tenant (root only): all its sealed content reads `$erased`;
    /// the ledger, proofs and checkpoints stay and verify.
    pub fn erase_tenant(&self, caller: &Principal, raw: &str) -> Result<Erasure, ServiceError> {
        self.require_root(caller, "erases a whole tenant")?;
        let tenant = TenantId::parse(raw).map_err(ServiceError::bad_request)?;
        if !self.ledger.exists(&tenant) {
            return Err(ServiceError::not_found(format!(
                "tenant {tenant} does not exist"
            )));
        }
        let e = self.erase(
            caller,
            &tenant,
            None,
            "custom.agentrail.tenant.erased",
            |now| json!({"erased_at": now, "method": "crypto-shredding"}),
        )?;
        tracing::warn!(%tenant, by = %caller.key_id, "all content of the tenant erased");
        Ok(e)
    }

    /// The erasure protocol: gate (exclusive) → shred → index → token vault → content exports →
    /// ledger event.
    fn erase(
        &self,
        caller: &Principal,
        tenant: &TenantId,
        subject: Option<&str>,
        event_type: &str,
        payload: impl FnOnce(&str) -> Value,
    ) -> Result<Erasure, ServiceError> {
        self.privacy.erasing(tenant, |erasing| {
            let at = self.clock.now();
            let now = format_timestamp(at);
            let had_key = erasing.shred(subject, at)?;
            self.indexer.erase_content(tenant, subject)?;
            erasing.erase_tokens(subject, at)?;
            self.exports.content_erased(tenant, &now)?;
            let ev = json!({
                "schema_version": "1",
                "event_type": event_type,
                "occurred_at": self.now(),
                "actor": {"id": caller.key_id, "type": "service"},
                "payload": payload(&now),
            });
            let valid = agentrail_event::validate_system_value(ev).map_err(|e| {
                ServiceError::internal(format!(
                    "the erasure event does not validate: {:?}",
                    e.problems
                ))
            })?;
            let receipts = self.ledger.append(tenant, vec![valid])?;
            if let Some(r) = receipts.last() {
                self.indexer.appended(tenant, r.seq + 1)?;
            }
            let receipt = receipts
                .into_iter()
                .next()
                .ok_or_else(|| ServiceError::internal("no receipt for the erasure event"))?;
            Ok(Erasure {
                erased_at: now,
                had_key,
                receipt,
            })
        })
    }

    /// The tenant's policy (the defaults until one is set).
    pub fn policy(&self, tenant: &TenantId) -> Result<Policy, ServiceError> {
        self.privacy.policy(tenant)
    }

    /// Checks and stores a policy durably; it applies to events ingested from now on.
    pub fn set_policy(
        &self,
        caller: &Principal,
        tenant: &TenantId,
        policy: Policy,
    ) -> Result<Policy, ServiceError> {
        let problems = policy.problems();
        if !problems.is_empty() {
            return Err(ServiceError::BadRequest {
                code: "invalid_policy",
                message: format!("{} problem(s) in the policy", problems.len()),
                details: problems,
            });
        }
        self.privacy.set_policy(tenant, policy.clone())?;
        tracing::info!(%tenant, by = %caller.key_id, "policy set");
        Ok(policy)
    }

    /// A new version of the tenant's data key seals new content without a subject from now on;
    /// returns its id and when.
    pub fn rotate_data_key(
        &self,
        caller: &Principal,
        tenant: &TenantId,
    ) -> Result<(String, String), ServiceError> {
        let at = self.clock.now();
        let kid = self.privacy.vault().rotate(tenant, at)?;
        let now = format_timestamp(at);
        tracing::info!(%tenant, %kid, by = %caller.key_id, "tenant data key rotated");
        Ok((kid, now))
    }

    /// Applies the tenant's retention policy to its index now; the run's record.
    pub fn run_retention(&self, tenant: &TenantId) -> Result<Value, ServiceError> {
        self.retention
            .run(tenant, crate::retention::Trigger::OnDemand)
    }

    /// A page of the tenant's retention runs.
    pub fn retention_runs(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ServiceError> {
        self.retention.runs(tenant, cursor, limit)
    }

    // ---- integrity ----------------------------------------------------------------------------

    /// Verifies the tenant now; the signed report's record.
    pub fn verify_now(&self, tenant: &TenantId) -> Result<Value, ServiceError> {
        self.integrity
            .run(tenant, crate::integrity::Trigger::OnDemand)
    }

    /// The tenant's integrity reports after the report seq `after`, oldest first.
    pub fn integrity_reports(
        &self,
        tenant: &TenantId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ServiceError> {
        self.integrity.reports(tenant, after, limit)
    }

    // ---- exports ------------------------------------------------------------------------------

    /// Starts an export job (recorded in the access log); its status.
    pub fn start_export(
        &self,
        req: ReadRequest,
        job: JobRequest,
    ) -> Result<ExportStatus, ServiceError> {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).map_err(|e| ServiceError::internal(e.to_string()))?;
        let new_id = format!(
            "exp-{}-{}",
            self.clock.now().as_millisecond(),
            hex::encode(b)
        );
        let mut job = job;
        if job.cosigned && job.checkpoint.is_none() {
            job.checkpoint = Some(self.witnesses.cosigned(&req.tenant)?.ok_or_else(|| {
                ServiceError::NotReady(
                    "no checkpoint of this tenant is cosigned yet (are witnesses configured and reachable?)".into(),
                )
            })?);
        }
        let id = self.exports.start(&req.tenant, job, new_id)?;
        let mut req = req;
        if let Value::Object(m) = &mut req.params {
            m.insert("export_id".into(), json!(id));
        }
        self.record(&req, 0)?;
        self.exports.status(&req.tenant, &id)
    }

    pub fn export_status(&self, tenant: &TenantId, id: &str) -> Result<ExportStatus, ServiceError> {
        self.exports.status(tenant, id)
    }

    /// The path of a file of a finished export (the download is recorded with the file's event
    /// count).
    pub fn export_file(
        &self,
        req: ReadRequest,
        id: &str,
        name: &str,
    ) -> Result<PathBuf, ServiceError> {
        let path = self.exports.file(&req.tenant, id, name)?;
        let n = self
            .exports
            .status(&req.tenant, id)?
            .manifest
            .and_then(|m| {
                m["manifest"]["files"]
                    .as_array()?
                    .iter()
                    .find(|f| f["name"] == name)
                    .and_then(|f| f["count"].as_u64())
            })
            .unwrap_or(0);
        self.record(&req, n)?;
        Ok(path)
    }

    // ---- operations ---------------------------------------------------------------------------

    /// Total and largest index lag over the tenants with open indexes.
    pub fn index_lag(&self) -> (u64, u64) {
        self.indexer.lag()
    }

    /// The metrics as OpenMetrics text, gauges refreshed.
    pub fn metrics_text(&self) -> String {
        self.refresh_gauges();
        self.metrics.encode()
    }

    fn refresh_gauges(&self) {
        let (sum, max) = self.indexer.lag();
        self.metrics.index_lag_total.set(sum as i64);
        self.metrics.index_lag_max.set(max as i64);
        self.metrics
            .open_tenants
            .set(self.ledger.open_tenants() as i64);
        let storage = self.storage.status();
        self.metrics
            .storage_full
            .set(i64::from(storage.full.is_some()));
        self.metrics
            .storage_available_bytes
            .set(storage.available_bytes.map_or(-1, |b| b as i64));
        self.metrics
            .storage_full_episodes
            .set(storage.episodes as i64);
        self.metrics.recovery_actions.set(
            (self.ledger.recoveries()
                + self.indexer.rebuilds()
                + agentrail_ledger::chain_log_recoveries()
                + self.privacy.dropped_tokens()) as i64,
        );
        self.metrics
            .poisoned_tenants
            .set(self.ledger.poisoned_tenants().len() as i64);
        self.metrics
            .open_files
            .set(crate::budget::open_files().map_or(-1, |n| n as i64));
        self.metrics.open_files_budget.set(self.budget.total as i64);
        let watch = self.ledger.clock_watch();
        watch.check(self.clock.now());
        self.metrics.clock_jumps.set(watch.jumps() as i64);
        self.metrics
            .clock_drift_ms
            .set(watch.drift_ms().unwrap_or(0));
        let now = Instant::now();
        let mut seen = lock(&self.unsigned_since);
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
        let (failures, failing) = self.integrity.failures();
        self.metrics.integrity_failures.set(failures as i64);
        self.metrics.integrity_failing_tenants.set(failing as i64);
        self.metrics.witness_failures.set(
            self.witnesses
                .failures
                .load(std::sync::atomic::Ordering::Relaxed) as i64,
        );
        if let Some(a) = &self.archiver {
            let (events, secs) = a.lag();
            self.metrics.archive_lag_events.set(events as i64);
            self.metrics.archive_lag_seconds.set(secs);
            self.metrics
                .archive_upload_errors
                .set(a.upload_errors.load(std::sync::atomic::Ordering::Relaxed) as i64);
        }
    }

    /// Clean shutdown: stop the jobs and the indexer, sign final checkpoints.
    /// Runs `intake` beside the service until [`Service::shutdown`], which stops it before
    /// anything else.
    pub fn attach(&self, intake: Box<dyn Intake>) {
        lock(&self.intakes).push(intake);
    }

    pub fn shutdown(&self) {
        let intakes = std::mem::take(&mut *lock(&self.intakes));
        for mut intake in intakes {
            intake.stop();
        }
        self.integrity.stop();
        self.witnesses.stop();
        if let Some(a) = &self.archiver {
            a.stop();
        }
        self.retention.stop();
        self.exports.stop();
        self.indexer.stop();
        if let Err(e) = self.ledger.close() {
            tracing::error!(error = %e, "closing the ledger");
        }
    }
}

fn position(p: Position) -> Map<String, Value> {
    let mut m = Map::new();
    match p {
        Position::Single => {}
        Position::Index(i) => {
            m.insert("index".into(), json!(i));
        }
        Position::Line(l) => {
            m.insert("line".into(), json!(l));
        }
    }
    m
}

/// Rebuilds a tenant's index from its ledger, offline (`agentrail reindex`): with the vault, so
/// the hot content is searchable by token again, and with the cutoffs of the tenant's latest
/// retention run, so purged content stays purged. The master key comes from
/// `AGENTRAIL_MASTER_KEY` or `system/master.key`; without either, no content is indexed.
pub fn reindex(
    ledger: &Ledger,
    store: &dyn agentrail_index::Store,
    tenant: &TenantId,
    recompute_retention: Option<jiff::Timestamp>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TenantIndex, ServiceError> {
    let layout = DataDir::new(ledger.data_dir());
    let has_master =
        std::env::var_os("AGENTRAIL_MASTER_KEY").is_some() || layout.system().master_key().exists();
    let run_logs = Arc::new(crate::retention::run_logs(&layout));
    if let Some(now) = recompute_retention {
        crate::retention::recompute_cutoffs(&run_logs, &layout, tenant, now)?;
    }
    let source: Arc<dyn agentrail_index::IndexSource> = if has_master {
        let vault = Arc::new(crate::privacy::open_vault(&layout)?);
        Arc::new(VaultIndexSource::new(vault, run_logs, true))
    } else {
        Arc::new(VaultIndexSource::without_vault(run_logs))
    };
    Ok(agentrail_index::reindex(
        ledger,
        store,
        tenant,
        Some(source),
        recompute_retention.is_none(),
        progress,
    )?)
}
