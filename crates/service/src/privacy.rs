//! Privacy on the ingest and read paths (DESIGN.md §4), using the vault crate: before an event is
//! sequenced, the strings of its sensitive fields (the default set of its event type) are
//! PII-tokenized and each field is then sealed under the subject's key (the tenant's when the event
//! has no `subject_id`). The ledger, and so the hash, the Merkle tree and exports, only ever hold
//! the sealed form; the index holds the tokenized form while it is hot (`content_source`), for
//! search by token. Reads with `view=decrypted` open the fields again (or show
//! `$erased` after crypto-shredding). Each token's value is kept in the tenant's token vault
//! (`tenants/<id>/tokens/log`, a chain log of values sealed under the same subject/tenant key), so
//! shredding a subject also makes its token values unreadable.

use crate::access::TenantLogs;
use crate::error::ServiceError;
use agentrail_event::model::{DEFAULT_SENSITIVE_FIELDS, SENSITIVE_IN_EVERY_TYPE};
use agentrail_event::{TenantId, ValidEvent};
use agentrail_index::{Content, Cutoffs, IndexSource};
use agentrail_ledger::files::write_atomic;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::stored;
use agentrail_ledger::sync::{HandleCache, lock};
use agentrail_ledger::{AppendError, ChainLog, Clock};
use agentrail_vault::{
    Aad, ContentDigester, Detectors, TokenKey, Tokenized, Vault, is_sealed, open_field,
    protect_field, seal_field,
};
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// A tenant's token vault: for each token, its records — one value record per data subject
/// that mentioned the value (sealed under that subject's key, the tenant's without one), and
/// tombstones where a subject's copy was erased.
///
/// A batch's new values are made durable before the batch is appended (an event in the ledger
/// never names a value the vault lacks), each record naming the event that brought it. They
/// count as kept only once the batch is in the ledger (`committed`): until then no other batch
/// reuses them and no reveal answers with them; a batch refused by the ledger leaves them
/// uncommitted, and when the vault is next opened, records whose event is not in the ledger
/// (refused, or cut off by a crash) are dropped. So a batch's token records are kept wholly or
/// not at all, like the batch.
struct Tokens {
    log: ChainLog,
    known: HashMap<String, Vec<TokenCopy>>,
}

#[derive(Debug, Clone)]
struct TokenCopy {
    subject: Option<String>,
    seq: u64,
    /// A value record (not a tombstone) whose subject was not erased.
    live: bool,
    /// Its batch is in the ledger.
    committed: bool,
}

/// Whether an event id is in a tenant's ledger (`None`: cannot tell; the record is kept).
/// A value found in an event: its subject, the token and value, the event's id.
type Found = (Option<String>, Tokenized, String);

pub type InLedger = Arc<dyn Fn(&TenantId, &str) -> Option<bool> + Send + Sync>;

/// The token records a batch wrote, held (so the vault stays open) until the batch is in the
/// ledger; see [`Sealing::commit`].
pub struct TokenWrites {
    store: Option<Arc<Mutex<Tokens>>>,
    written: Vec<(String, u64)>,
}

impl std::fmt::Debug for TokenWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenWrites({})", self.written.len())
    }
}

impl Tokens {
    /// Opens a vault, dropping the records whose event is not in the ledger (their batch never
    /// got there); returns how many were dropped.
    fn load(
        log: ChainLog,
        tenant: &TenantId,
        in_ledger: Option<&InLedger>,
    ) -> Result<(Tokens, u64), ServiceError> {
        let mut dropped = 0u64;
        if let Some(in_ledger) = in_ledger {
            let orphan = |r: &agentrail_ledger::ChainRecord| {
                r.value()
                    .get("event_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| in_ledger(tenant, id) == Some(false))
            };
            // Found first, destroyed after: the ledger is not asked while the log is locked.
            let mut orphans = HashSet::new();
            log.for_each(|r| {
                if orphan(r) {
                    orphans.insert(r.seq);
                }
                Ok::<(), ServiceError>(())
            })?;
            dropped = orphans.len() as u64;
            if dropped > 0 {
                log.redact(|r| orphans.contains(&r.seq).then(Map::new), vec![])?;
                tracing::warn!(
                    %tenant,
                    file = %log.path().display(),
                    dropped,
                    "token vault recovery: dropped the values of batches that never reached the ledger"
                );
            }
        }
        let known = Tokens::index(&log)?;
        Ok((Tokens { log, known }, dropped))
    }

    fn index(log: &ChainLog) -> Result<HashMap<String, Vec<TokenCopy>>, ServiceError> {
        let mut known: HashMap<String, Vec<TokenCopy>> = HashMap::new();
        let mut from = 0;
        loop {
            let recs = log.read(from, 4096)?;
            let Some(last) = recs.last() else { break };
            from = last.seq + 1;
            for r in &recs {
                let v = r.value();
                if let Some(t) = v["token"].as_str() {
                    known.entry(t.to_owned()).or_default().push(TokenCopy {
                        subject: v["subject_id"].as_str().map(str::to_owned),
                        seq: r.seq,
                        live: v.get("value").is_some(),
                        committed: true,
                    });
                }
            }
        }
        Ok(known)
    }

    /// Whether `subject`'s copy of the token's value is kept (by a batch in the ledger).
    fn has_live(&self, token: &str, subject: Option<&str>) -> bool {
        self.known.get(token).is_some_and(|c| {
            c.iter()
                .any(|c| c.live && c.committed && c.subject.as_deref() == subject)
        })
    }
}

/// A tenant's privacy and retention policy (`PUT /v1/tenants/{t}/policy`), stored at
/// `tenants/<id>/policy.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Extra sensitive field paths per event type (`payload.…`), added to the default set.
    #[serde(default)]
    pub sensitive_fields: std::collections::BTreeMap<String, Vec<String>>,
    /// Detectors switched on (true) or off (false); unnamed ones stay on. Names: email, phone,
    /// card, iban, ssn, ip, secret.
    #[serde(default)]
    pub detectors: std::collections::BTreeMap<String, bool>,
    /// Extra detectors: every match of `regex` becomes a `tok_<name>_…` token.
    #[serde(default)]
    pub custom_detectors: Vec<CustomDetector>,
    /// Days after which sensitive content leaves the hot index (default 90).
    #[serde(default = "default_hot")]
    pub hot_content_days: u32,
    /// Days structural metadata is kept (default 2555, seven years).
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Suspends every purge while true.
    #[serde(default)]
    pub legal_hold: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    /// `[a-z0-9_]{1,32}`: the token type.
    pub name: String,
    pub regex: String,
}

fn default_hot() -> u32 {
    90
}

fn default_retention() -> u32 {
    2555
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            sensitive_fields: Default::default(),
            detectors: Default::default(),
            custom_detectors: Vec::new(),
            hot_content_days: default_hot(),
            retention_days: default_retention(),
            legal_hold: false,
        }
    }
}

impl Policy {
    /// The stored policy of a tenant (the defaults until one is set).
    pub fn load(layout: &DataDir, tenant: &TenantId) -> Result<Policy, ServiceError> {
        match std::fs::read(layout.tenant(tenant).policy()) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ServiceError::internal(format!("policy of {tenant}: {e}"))),
            Err(_) => Ok(Policy::default()),
        }
    }
    /// Every problem with a policy, as `{path, reason}`.
    pub fn problems(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut bad =
            |path: String, reason: String| out.push(json!({"path": path, "reason": reason}));
        for (t, paths) in &self.sensitive_fields {
            for (i, p) in paths.iter().enumerate() {
                let ok = p.starts_with("payload.")
                    && p.len() <= 200
                    && p.split('.').all(|seg| {
                        !seg.is_empty()
                            && seg
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    });
                if !ok {
                    bad(
                        format!("sensitive_fields.{t}[{i}]"),
                        "must be a dotted path inside payload, e.g. payload.notes".into(),
                    );
                }
            }
        }
        for name in self.detectors.keys() {
            if agentrail_vault::Kind::parse(name).is_none() {
                bad(
                    format!("detectors.{name}"),
                    "unknown detector: use email, phone, card, iban, ssn, ip or secret".into(),
                );
            }
        }
        for (i, c) in self.custom_detectors.iter().enumerate() {
            if c.name.is_empty()
                || c.name.len() > 32
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                bad(
                    format!("custom_detectors[{i}].name"),
                    "must be [a-z0-9_]{1,32}".into(),
                );
            }
            match regex::Regex::new(&c.regex) {
                Ok(r) if r.is_match("") => bad(
                    format!("custom_detectors[{i}].regex"),
                    "matches the empty string".into(),
                ),
                Ok(_) => {}
                Err(e) => bad(format!("custom_detectors[{i}].regex"), e.to_string()),
            }
        }
        if self.hot_content_days == 0 || self.retention_days == 0 {
            bad("hot_content_days".into(), "days must be positive".into());
        }
        if self.hot_content_days > self.retention_days {
            bad(
                "hot_content_days".into(),
                "cannot exceed retention_days".into(),
            );
        }
        out
    }

    fn detectors(&self) -> Detectors {
        let enabled = agentrail_vault::Kind::ALL
            .into_iter()
            .filter(|k| self.detectors.get(k.name()).copied().unwrap_or(true))
            .collect();
        let custom = self
            .custom_detectors
            .iter()
            .filter_map(|c| {
                regex::Regex::new(&c.regex)
                    .ok()
                    .map(|r| (c.name.clone(), r))
            })
            .collect();
        Detectors { enabled, custom }
    }
}

/// A policy with its compiled detectors.
struct Compiled {
    policy: Policy,
    detectors: Detectors,
}

/// The privacy layer of the service.
pub struct Privacy {
    vault: Arc<Vault>,
    in_ledger: Option<InLedger>,
    /// Token records dropped on open because their batch never reached the ledger.
    dropped_tokens: std::sync::atomic::AtomicU64,
    layout: DataDir,
    clock: Arc<dyn Clock>,
    tokens: HandleCache<TenantId, Mutex<Tokens>>,
    policies: HandleCache<TenantId, Compiled>,
    gates: HandleCache<TenantId, RwLock<()>>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Privacy")
    }
}

/// What every tenant index asks the service for: the tokenized content of sealed fields (opened
/// with the vault; nothing of a shredded subject), the erased subjects, and the cutoffs of the
/// tenant's latest retention run. The service's indexer and the offline `reindex` use it.
#[derive(Debug)]
pub struct VaultIndexSource {
    vault: Option<Arc<Vault>>,
    retention: Arc<TenantLogs>,
    /// Whether sealed content is opened for the index (off when sealing is off: nothing sealed).
    open_content: bool,
}

impl VaultIndexSource {
    /// `retention`: the run logs the retention job appends to (the same handles, so the latest
    /// run is always seen).
    pub fn new(
        vault: Arc<Vault>,
        retention: Arc<TenantLogs>,
        open_content: bool,
    ) -> VaultIndexSource {
        VaultIndexSource {
            vault: Some(vault),
            retention,
            open_content,
        }
    }

    /// A source without a vault (no master key yet): no content, only the cutoffs.
    pub fn without_vault(retention: Arc<TenantLogs>) -> VaultIndexSource {
        VaultIndexSource {
            vault: None,
            retention,
            open_content: false,
        }
    }
}

impl IndexSource for VaultIndexSource {
    fn content(&self, tenant: &TenantId, stored: &Value) -> Option<Content> {
        let vault = self.vault.as_ref().filter(|_| self.open_content)?;
        let fields = agentrail_vault::sealed_content(vault, tenant, stored)?;
        let fields = fields.to_string();
        let tokens = agentrail_vault::find_tokens(&fields);
        Some(Content { fields, tokens })
    }

    fn erased_subjects(&self, tenant: &TenantId) -> Vec<String> {
        let Some(vault) = &self.vault else {
            return Vec::new();
        };
        vault.shredded_subjects(tenant).unwrap_or_else(|e| {
            tracing::error!(%tenant, error = %e, "cannot list the erased subjects");
            Vec::new()
        })
    }

    fn cutoffs(&self, tenant: &TenantId) -> Cutoffs {
        crate::retention::latest_cutoffs(&self.retention, tenant).unwrap_or_else(|e| {
            tracing::error!(%tenant, error = %e, "cannot read the retention cutoffs");
            Cutoffs::default()
        })
    }
}

/// A tenant's ingest while it holds the erasure gate shared: events are sealed and appended
/// through it, so no erasure of the tenant runs in between.
#[derive(Debug)]
pub struct Sealing<'a> {
    privacy: &'a Privacy,
    tenant: &'a TenantId,
}

/// A tenant's erasure while it holds the erasure gate exclusively: no ingest of the tenant seals
/// anything until the erasure's event is in the ledger.
#[derive(Debug)]
pub struct Erasing<'a> {
    privacy: &'a Privacy,
    tenant: &'a TenantId,
}

impl Sealing<'_> {
    /// See [`Privacy::protect_batch`].
    pub fn protect_batch(&self, events: &mut [ValidEvent]) -> Result<TokenWrites, ServiceError> {
        self.privacy.protect_batch(self.tenant, events)
    }

    /// See [`Privacy::content_digests`].
    pub fn content_digests(
        &self,
        events: &[ValidEvent],
    ) -> Result<Vec<Option<String>>, ServiceError> {
        self.privacy.content_digests(self.tenant, events)
    }

    /// See [`Privacy::stored_digest`].
    pub fn stored_digest(&self, stored: &[u8]) -> Result<Option<String>, ServiceError> {
        self.privacy.stored_digest(self.tenant, stored)
    }

    /// The batch whose values `w` holds is in the ledger: they count as kept from now on.
    pub fn commit(&self, w: TokenWrites) {
        if let Some(store) = w.store {
            let mut t = lock(&store);
            for (tok, seq) in w.written {
                if let Some(c) = t
                    .known
                    .get_mut(&tok)
                    .and_then(|cs| cs.iter_mut().find(|c| c.seq == seq))
                {
                    c.committed = true;
                }
            }
        }
    }
}

impl Erasing<'_> {
    /// Destroys the subject's keys (`None`: every key of the tenant); whether it had a key.
    pub fn shred(&self, subject: Option<&str>, now: Timestamp) -> Result<bool, ServiceError> {
        let v = &self.privacy.vault;
        match subject {
            Some(s) => Ok(v.shred_subject(self.tenant, s, now)?),
            None => {
                v.shred_tenant(self.tenant, now)?;
                Ok(true)
            }
        }
    }

    /// See [`Privacy::erase_tokens`].
    pub fn erase_tokens(&self, subject: Option<&str>, at: Timestamp) -> Result<u64, ServiceError> {
        self.privacy.erase_tokens(self.tenant, subject, at)
    }
}

/// The default sensitive field paths of an event type: its type's and those of every type.
pub fn sensitive_paths(event_type: &str) -> impl Iterator<Item = &'static str> {
    DEFAULT_SENSITIVE_FIELDS
        .iter()
        .find(|(t, _)| *t == event_type)
        .map_or(&[][..], |(_, p)| p)
        .iter()
        .chain(SENSITIVE_IN_EVERY_TYPE)
        .copied()
}

fn get<'a>(m: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = m.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn get_mut<'a>(m: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let mut parts = path.split('.');
    let mut cur = m.get_mut(parts.next()?)?;
    for p in parts {
        cur = cur.as_object_mut()?.get_mut(p)?;
    }
    Some(cur)
}

/// Opens the vault of a data directory with the master key from `AGENTRAIL_MASTER_KEY`, else
/// `system/master.key` (made on first use).
pub fn open_vault(layout: &DataDir) -> Result<Vault, ServiceError> {
    let master = std::env::var("AGENTRAIL_MASTER_KEY").ok();
    Vault::open(layout, master.as_deref())
        .map_err(|e| ServiceError::internal(format!("opening the vault: {e}")))
}

impl Privacy {
    /// `in_ledger` tells whether an event is in the ledger (the service's ledger): a token vault
    /// drops, when opened, the records of batches that never got there.
    pub fn new(
        vault: Arc<Vault>,
        layout: &DataDir,
        clock: Arc<dyn Clock>,
        in_ledger: Option<InLedger>,
    ) -> Privacy {
        Privacy {
            vault,
            in_ledger,
            dropped_tokens: std::sync::atomic::AtomicU64::new(0),
            layout: layout.clone(),
            clock,
            tokens: HandleCache::new(256),
            policies: HandleCache::new(1024),
            gates: HandleCache::new(1024),
        }
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Keeps at most about `n` token vaults open (each holds one file).
    pub fn limit_open(&self, n: usize) {
        self.tokens.set_capacity(n);
    }

    /// Token vaults open now.
    pub fn open_count(&self) -> usize {
        self.tokens.len()
    }

    /// Token records dropped because their batch never reached the ledger, since start.
    pub fn dropped_tokens(&self) -> u64 {
        self.dropped_tokens
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs an ingest step of `tenant` under its erasure gate, held shared: every event sealed
    /// and appended inside `f` is sealed under keys no erasure of the tenant can destroy
    /// meanwhile, and no token value is kept again behind an erasure.
    pub fn sealing<T>(&self, tenant: &TenantId, f: impl FnOnce(&Sealing<'_>) -> T) -> T {
        let gate = self.gate(tenant);
        let _shared = gate.read().unwrap_or_else(|e| e.into_inner());
        f(&Sealing {
            privacy: self,
            tenant,
        })
    }

    /// Runs an erasure of `tenant` under its erasure gate, held exclusively from shredding until
    /// its event is recorded (inside `f`): every event of the erased subject before the erasure
    /// event reads `$erased`.
    pub fn erasing<T>(&self, tenant: &TenantId, f: impl FnOnce(&Erasing<'_>) -> T) -> T {
        let gate = self.gate(tenant);
        let _exclusive = gate.write().unwrap_or_else(|e| e.into_inner());
        f(&Erasing {
            privacy: self,
            tenant,
        })
    }

    fn gate(&self, tenant: &TenantId) -> Arc<RwLock<()>> {
        self.gates
            .get_or_try_insert(tenant, || Ok::<_, ServiceError>(RwLock::new(())))
            .unwrap_or_else(|_| Arc::new(RwLock::new(())))
    }

    fn compiled(&self, tenant: &TenantId) -> Result<Arc<Compiled>, ServiceError> {
        self.policies.get_or_try_insert(tenant, || {
            let policy = Policy::load(&self.layout, tenant)?;
            Ok(Compiled {
                detectors: policy.detectors(),
                policy,
            })
        })
    }

    /// The tenant's policy (the defaults until one is set).
    pub fn policy(&self, tenant: &TenantId) -> Result<Policy, ServiceError> {
        Ok(self.compiled(tenant)?.policy.clone())
    }

    /// Stores a checked policy durably; it applies to events ingested from now on.
    pub fn set_policy(&self, tenant: &TenantId, policy: Policy) -> Result<(), ServiceError> {
        let b = serde_json::to_vec_pretty(&policy)
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        let path = self.layout.tenant(tenant).policy();
        write_atomic(&path, &b, 0o644)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", path.display())))?;
        self.policies.insert(
            tenant.clone(),
            Compiled {
                detectors: policy.detectors(),
                policy,
            },
        );
        Ok(())
    }

    fn tokens(&self, tenant: &TenantId) -> Result<Arc<Mutex<Tokens>>, ServiceError> {
        self.tokens.get_or_try_insert(tenant, || {
            let log = ChainLog::open_redactable(&self.layout.tenant(tenant).tokens_log())?;
            let (t, dropped) = Tokens::load(log, tenant, self.in_ledger.as_ref())?;
            self.dropped_tokens
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
            Ok(Mutex::new(t))
        })
    }

    /// The keyed digest of what each event's emitter sent ([`agentrail_vault::content_digest`]
    /// of [`stored::submitted_bytes`]), for the events that carry an `event_id` (the others
    /// get a fresh one: nothing to be idempotent about).
    fn content_digests(
        &self,
        tenant: &TenantId,
        events: &[ValidEvent],
    ) -> Result<Vec<Option<String>>, ServiceError> {
        if !events.iter().any(|ev| ev.value.contains_key("event_id")) {
            return Ok(vec![None; events.len()]);
        }
        let key = self.vault.token_key(tenant, self.clock.now())?;
        let digester = ContentDigester::new(&key, tenant.as_str());
        events
            .iter()
            .enumerate()
            .map(|(index, ev)| {
                if !ev.value.contains_key("event_id") {
                    return Ok(None);
                }
                // What the ledger would refuse the event for, as it would.
                let bytes = stored::submitted_bytes(ev, tenant)
                    .map_err(|reason| AppendError::Invalid { index, reason })?;
                Ok(Some(digester.digest(&bytes)))
            })
            .collect()
    }

    /// The content digest ([`Privacy::content_digests`]) of what the emitter of a stored event
    /// sent, recovered for an event stored before the ledger kept digests: its sealed fields
    /// opened under the keys that sealed them (a rotation keeps the old ones) and their tokens
    /// replaced by the values the token vault keeps. `None` when that is no longer possible:
    /// a key or a token value was erased, or a field does not open.
    fn stored_digest(
        &self,
        tenant: &TenantId,
        stored: &[u8],
    ) -> Result<Option<String>, ServiceError> {
        let Ok(Value::Object(mut v)) = agentrail_event::json::parse(stored) else {
            return Ok(None);
        };
        let event_id = v
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for (k, field) in v.iter_mut() {
            if !self.recover(tenant, &event_id, k, field)? {
                return Ok(None);
            }
        }
        let Ok(stored) = agentrail_event::json::to_canonical_vec(&Value::Object(v)) else {
            return Ok(None);
        };
        let Ok(submitted) = stored::submitted_content_of_stored(&stored) else {
            return Ok(None);
        };
        let key = self.vault.token_key(tenant, self.clock.now())?;
        Ok(Some(
            ContentDigester::new(&key, tenant.as_str()).digest(&submitted),
        ))
    }

    /// Puts back, in place, what was sent in the sealed values inside `v` (at `path`): opened
    /// and detokenized. `false` if one no longer can be.
    fn recover(
        &self,
        tenant: &TenantId,
        event_id: &str,
        path: &str,
        v: &mut Value,
    ) -> Result<bool, ServiceError> {
        if !is_sealed(v) {
            if let Value::Object(m) = v {
                for (k, child) in m.iter_mut() {
                    if !self.recover(tenant, event_id, &format!("{path}.{k}"), child)? {
                        return Ok(false);
                    }
                }
            }
            return Ok(true);
        }
        let Ok(mut plain) = open_field(&self.vault, tenant, Aad::new(event_id, path), v) else {
            return Ok(false);
        };
        if plain.get("$erased").is_some() {
            return Ok(false);
        }
        let mut tokens = Vec::new();
        for_each_string(&mut plain, &mut |s| {
            tokens.extend(agentrail_vault::find_tokens(s));
            true
        });
        tokens.sort_unstable();
        tokens.dedup();
        let mut values = HashMap::new();
        for (tok, value) in self.reveal(tenant, &tokens)? {
            let Some(Value::String(value)) = value else {
                // Unknown, or erased with its subject.
                return Ok(false);
            };
            values.insert(tok, value);
        }
        let whole = for_each_string(&mut plain, &mut |s| match agentrail_vault::detokenize_str(
            s,
            |t| values.get(t).map(String::as_str),
        ) {
            Some(d) => {
                *s = d;
                true
            }
            None => false,
        });
        *v = plain;
        Ok(whole)
    }

    /// Tokenizes and seals the sensitive fields of a batch of events in place (assigning event
    /// ids first: the id is part of every field's associated data). New subject keys and new
    /// token values of the whole batch are each made durable with one append.
    fn protect_batch(
        &self,
        tenant: &TenantId,
        events: &mut [ValidEvent],
    ) -> Result<TokenWrites, ServiceError> {
        let now = self.clock.now();
        let subjects: Vec<&str> = events
            .iter()
            .filter_map(|ev| ev.value.get("subject_id").and_then(Value::as_str))
            .collect();
        self.vault.ensure_subject_keys(tenant, &subjects, now)?;
        let compiled = self.compiled(tenant)?;
        let token_key = self.vault.token_key(tenant, now)?;
        let mut found: Vec<Found> = Vec::new();
        for ev in events.iter_mut() {
            self.protect(tenant, &compiled, &token_key, ev, now, &mut found)?;
        }
        if found.is_empty() {
            return Ok(TokenWrites {
                store: None,
                written: Vec::new(),
            });
        }
        self.keep_tokens(tenant, found, now)
    }

    fn protect(
        &self,
        tenant: &TenantId,
        compiled: &Compiled,
        token_key: &TokenKey,
        ev: &mut ValidEvent,
        now: Timestamp,
        found: &mut Vec<Found>,
    ) -> Result<(), ServiceError> {
        let event_type = ev
            .value
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut paths: Vec<&str> = sensitive_paths(&event_type).collect();
        if let Some(extra) = compiled.policy.sensitive_fields.get(&event_type) {
            paths.extend(extra.iter().map(String::as_str));
        }
        // Only the paths this event has: one without sensitive content costs nothing here.
        paths.retain(|p| get(&ev.value, p).is_some());
        if paths.is_empty() {
            return Ok(());
        }
        let event_id = match ev.value.get("event_id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = agentrail_ledger::stored::new_event_id(&*self.clock);
                ev.value
                    .insert("event_id".into(), Value::String(id.clone()));
                id
            }
        };
        let subject = ev
            .value
            .get("subject_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut here: Vec<Tokenized> = Vec::new();
        for path in paths {
            let Some(v) = get_mut(&mut ev.value, path) else {
                continue;
            };
            if is_sealed(v) {
                continue;
            }
            protect_field(
                &self.vault,
                tenant,
                token_key,
                &compiled.detectors,
                subject.as_deref(),
                Aad::new(&event_id, path),
                v,
                now,
                &mut here,
            )?;
        }
        found.extend(
            here.into_iter()
                .map(|t| (subject.clone(), t, event_id.clone())),
        );
        Ok(())
    }

    /// Keeps the values of tokens not seen before in the tenant's token vault, each sealed under
    /// its subject's key (the tenant's without one), with one durable append.
    fn keep_tokens(
        &self,
        tenant: &TenantId,
        found: Vec<Found>,
        now: Timestamp,
    ) -> Result<TokenWrites, ServiceError> {
        let tokens = self.tokens(tenant)?;
        let mut t = lock(&tokens);
        let mut seen = HashSet::new();
        let mut records = Vec::new();
        let mut kept = Vec::new();
        for (subject, f, event_id) in found {
            // Each subject's copy is kept under its own key, so erasing one subject leaves the
            // value revealable for the others' content, and a value erased with its subject is
            // kept again when it comes back with new content.
            if t.has_live(&f.token, subject.as_deref())
                || !seen.insert((f.token.clone(), subject.clone()))
            {
                continue;
            }
            let sealed = seal_field(
                &self.vault,
                tenant,
                subject.as_deref(),
                Aad::new("token", &f.token),
                &Value::String(f.value),
                now,
            )?;
            let mut m = Map::new();
            m.insert("token".into(), json!(&f.token));
            m.insert("type".into(), json!(f.label));
            m.insert("subject_id".into(), json!(subject));
            m.insert("value".into(), sealed);
            m.insert("event_id".into(), json!(event_id));
            records.push(m);
            kept.push((f.token, subject));
        }
        let mut written = Vec::with_capacity(kept.len());
        for (rec, (tok, subject)) in t.log.append_all(records)?.into_iter().zip(kept) {
            written.push((tok.clone(), rec.seq));
            t.known.entry(tok).or_default().push(TokenCopy {
                subject,
                seq: rec.seq,
                live: true,
                committed: false,
            });
        }
        drop(t);
        Ok(TokenWrites {
            store: Some(tokens),
            written,
        })
    }

    /// Opens the sealed sensitive fields of a served event (in place): every `$enc` value inside
    /// `payload` (the paths sealed at ingest, whatever the policy was then).
    pub fn open_event(&self, tenant: &TenantId, v: &mut Value) {
        let event_id = v
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(p) = v.get_mut("payload") {
            agentrail_vault::open_sealed(&self.vault, tenant, &event_id, "payload", p);
        }
    }

    /// Destroys the token values of a subject (`None`: of every subject) after its keys were
    /// shredded: each becomes a tombstone `{token, erased_at}` in the token vault (one atomic
    /// rewrite, `ChainLog::redact`: the chain keeps its hashes), so neither the value nor the
    /// token's link to the subject remains.
    fn erase_tokens(
        &self,
        tenant: &TenantId,
        subject: Option<&str>,
        at: Timestamp,
    ) -> Result<u64, ServiceError> {
        let store = self.tokens(tenant)?;
        let mut t = lock(&store);
        // No batch is in flight during an erasure (it holds the gate exclusively): records not
        // committed by now belong to refused batches and go with the rewrite.
        let refused: HashSet<u64> = t
            .known
            .values()
            .flatten()
            .filter(|c| !c.committed)
            .map(|c| c.seq)
            .collect();
        let hit = |r: &agentrail_ledger::ChainRecord| {
            let v = r.value();
            !refused.contains(&r.seq)
                && v.get("value").is_some()
                && subject.is_none_or(|s| v["subject_id"].as_str() == Some(s))
        };
        let mut erased = 0u64;
        t.log.for_each(|r| {
            erased += u64::from(hit(r));
            Ok::<(), ServiceError>(())
        })?;
        if erased > 0 {
            // In memory first: no reveal answers with an erased value, whatever happens below.
            for copies in t.known.values_mut() {
                for c in copies {
                    if subject.is_none_or(|s| c.subject.as_deref() == Some(s)) {
                        c.live = false;
                    }
                }
            }
            let erased_at = json!(agentrail_ledger::clock::format_timestamp(at));
            t.log.redact(
                |r| {
                    if refused.contains(&r.seq) {
                        return Some(Map::new());
                    }
                    hit(r).then(|| {
                        let mut tomb = Map::new();
                        tomb.insert("token".into(), r.value()["token"].clone());
                        tomb.insert("erased_at".into(), erased_at.clone());
                        tomb
                    })
                },
                vec![],
            )?;
            t.known = Tokens::index(&t.log)?;
        }
        Ok(erased)
    }

    /// The values of tokens: from any subject's copy that still opens; `$erased` once every
    /// copy was erased; `None` if unknown.
    pub fn reveal(
        &self,
        tenant: &TenantId,
        tokens: &[String],
    ) -> Result<Vec<(String, Option<Value>)>, ServiceError> {
        let store = self.tokens(tenant)?;
        let t = lock(&store);
        let mut out = Vec::new();
        for tok in tokens {
            let copies = t.known.get(tok).map(Vec::as_slice).unwrap_or_default();
            let mut value = None;
            // The first live copy that still opens; else the erasure.
            for c in copies.iter().filter(|c| c.live && c.committed) {
                let rec = t.log.read(c.seq, 1)?;
                if let Some(sealed) = rec.first().map(|r| r.value()["value"].clone()) {
                    let v = open_field(&self.vault, tenant, Aad::new("token", tok), &sealed)?;
                    let erased = v.get("$erased").is_some();
                    value = Some(v);
                    if !erased {
                        break;
                    }
                }
            }
            // (Copies of a batch not in the ledger are not known yet.)
            if value.is_none() && copies.iter().any(|c| c.committed) {
                let at = match copies.iter().rev().find(|c| !c.live && c.committed) {
                    Some(c) => t
                        .log
                        .read(c.seq, 1)?
                        .first()
                        .map_or(Value::Null, |r| r.value()["erased_at"].clone()),
                    None => Value::Null,
                };
                value = Some(json!({"$erased": {"reason": "crypto-shredded", "at": at}}));
            }
            out.push((tok.clone(), value));
        }
        Ok(out)
    }
}

/// Calls `f` on every string inside `v` (not object keys, which tokenizing leaves alone) until
/// it returns `false`; whether it never did.
fn for_each_string(v: &mut Value, f: &mut impl FnMut(&mut String) -> bool) -> bool {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().all(|x| for_each_string(x, f)),
        Value::Object(m) => m.values_mut().all(|x| for_each_string(x, f)),
        _ => true,
    }
}
