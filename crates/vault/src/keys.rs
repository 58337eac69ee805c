//! The key hierarchy (DESIGN.md §4): a master key (a 0600 file created on first start, or
//! `AGENTRAIL_MASTER_KEY`) wraps one data key per tenant (versioned: rotation adds a version, new
//! writes use it, old data stays readable), one per data subject, and the tenant's token key (the
//! HMAC key of its PII tokens). Wrapped keys live in an append-only key log per tenant,
//! `<data-dir>/system/vault/<tenant>.keys` (a new key is durable before it is used). Crypto-shredding deletes a subject's key (or the whole file for a tenant):
//! what it encrypted can never be read again.
//!
//! AEAD: XChaCha20-Poly1305 (RustCrypto), random 192-bit nonces; the associated data binds a
//! ciphertext to its tenant, event id and field path, so it cannot be moved.

use agentrail_event::TenantId;
use agentrail_ledger::ChainLog;
use agentrail_ledger::clock::format_timestamp;
use agentrail_ledger::layout::DataDir;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const ALG: &str = "XChaCha20-Poly1305";
const WRAP_AAD: &str = "agentrail-vault/v1 wrap ";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    #[error("key {0} was destroyed (crypto-shredded)")]
    Shredded(String),
    #[error("no key {0}")]
    UnknownKey(String),
    #[error(
        "decryption failed: the ciphertext was altered or belongs to another event, field or key"
    )]
    Decrypt,
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| VaultError::Random(e.to_string()))?;
    Ok(b)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VaultError {
    let path = path.to_path_buf();
    move |source| VaultError::Io { op, path, source }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    agentrail_ledger::files::write_atomic(path, bytes, 0o600).map_err(|e| VaultError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

/// Encrypts with a 32-byte key; returns (nonce, ciphertext).
pub fn seal_raw(
    key: &[u8; 32],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<([u8; 24], Vec<u8>), VaultError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| VaultError::Decrypt)?;
    let nonce = random::<24>()?;
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Decrypt)?;
    Ok((nonce, ct))
}

/// Encrypts with a given nonce (which must never repeat for different plaintexts under a key).
pub fn seal_raw_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; 24],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| VaultError::Decrypt)?;
    cipher
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Decrypt)
}

pub fn open_raw(
    key: &[u8; 32],
    nonce: &[u8],
    ct: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| VaultError::Decrypt)?;
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| VaultError::Decrypt)?;
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .map_err(|_| VaultError::Decrypt)
}

/// A data key wrapped by the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrapped {
    pub nonce: String,
    pub ct: String,
    pub created_at: String,
}

/// The keys of one tenant, as replayed from its key log.
#[derive(Debug, Default, Clone)]
struct TenantKeys {
    /// `kid` → wrapped key; kids are `t:<tenant>:v<n>`.
    tenant_keys: BTreeMap<String, Wrapped>,
    current: Option<String>,
    token_key: Option<Wrapped>,
    /// subject id → its current key (`s:<tenant>:<subject>:<random id>`: a subject that was
    /// shredded and comes back gets a new kid, so old ciphertexts never meet the new key).
    subjects: BTreeMap<String, SubjectKey>,
    /// subject id → when it was shredded.
    shredded: BTreeMap<String, String>,
    /// Tenant key versions ever created (new versions continue after a whole-tenant shred, so
    /// no new key ever takes the kid of a destroyed one).
    versions: u64,
    /// When every key of the tenant was last destroyed.
    tenant_shredded_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SubjectKey {
    kid: String,
    key: Wrapped,
}

/// One record of a tenant's key log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum KeyRecord {
    TenantKey {
        kid: String,
        key: Wrapped,
    },
    TokenKey {
        key: Wrapped,
    },
    SubjectKey {
        subject: String,
        kid: String,
        key: Wrapped,
    },
    Shred {
        subject: String,
        at: String,
    },
    /// Every key of the tenant destroyed (its subjects count as shredded); tenant key versions
    /// continue after `versions`.
    TenantShred {
        at: String,
        versions: u64,
    },
}

/// The version of a tenant kid `t:<tenant>:v<n>`.
fn version_of(kid: &str) -> u64 {
    kid.rsplit_once(":v")
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .unwrap_or(0)
}

impl TenantKeys {
    fn apply(&mut self, r: KeyRecord) {
        match r {
            KeyRecord::TenantKey { kid, key } => {
                self.versions = self.versions.max(version_of(&kid));
                self.tenant_keys.insert(kid.clone(), key);
                self.current = Some(kid);
            }
            KeyRecord::TokenKey { key } => self.token_key = Some(key),
            KeyRecord::SubjectKey { subject, kid, key } => {
                self.subjects.insert(subject, SubjectKey { kid, key });
            }
            KeyRecord::Shred { subject, at } => {
                self.subjects.remove(&subject);
                self.shredded.insert(subject, at);
            }
            KeyRecord::TenantShred { at, versions } => {
                let subjects = std::mem::take(&mut self.subjects);
                for subject in subjects.into_keys() {
                    self.shredded.insert(subject, at.clone());
                }
                self.tenant_keys.clear();
                self.current = None;
                self.token_key = None;
                self.versions = self.versions.max(versions);
                self.tenant_shredded_at = Some(at);
            }
        }
    }
}

/// An open tenant: its key log, the replayed keys, and the keys already unwrapped.
struct TenantState {
    log: ChainLog,
    keys: TenantKeys,
    plain: HashMap<String, [u8; 32]>,
}

/// The subject a subject kid belongs to.
pub fn subject_of<'a>(tenant: &TenantId, kid: &'a str) -> Option<&'a str> {
    let rest = kid
        .strip_prefix("s:")?
        .strip_prefix(tenant.as_str())?
        .strip_prefix(':')?;
    rest.rsplit_once(':').map(|(s, _)| s)
}

/// The vault of a data directory. Each tenant's wrapped keys are in an append-only key log
/// `system/vault/<tenant>.keys` (fsync'd before a new key is used); shredding turns the
/// destroyed key's record into a tombstone that keeps its hash (`ChainLog::redact`).
pub struct Vault {
    master: [u8; 32],
    layout: DataDir,
    dir: PathBuf,
    tenants: HandleCache<TenantId, Mutex<TenantState>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.dir.display())
    }
}

/// A tenant's token key (the HMAC key of its PII tokens), opaque outside this crate.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Where a key comes from, for a data key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Tenant,
    Subject(String),
}

use agentrail_ledger::sync::{HandleCache, lock};

fn log_err(e: agentrail_ledger::ChainLogError) -> VaultError {
    VaultError::Corrupt {
        path: PathBuf::from("key log"),
        reason: e.to_string(),
    }
}

fn parse_master(s: &str) -> Result<[u8; 32], VaultError> {
    let s = s.trim();
    let bytes = hex::decode(s)
        .ok()
        .or_else(|| B64.decode(s).ok())
        .ok_or_else(|| VaultError::MasterKey("not hex or base64".into()))?;
    bytes
        .try_into()
        .map_err(|_| VaultError::MasterKey("must be 32 bytes".into()))
}

impl Vault {
    /// Opens the vault of a data directory: the master key from `AGENTRAIL_MASTER_KEY` (hex or
    /// base64 of 32 bytes) if `env_key` is given, else `system/master.key`, created 0600 on first
    /// use.
    pub fn open(layout: &DataDir, env_key: Option<&str>) -> Result<Vault, VaultError> {
        let dir = layout.system().vault_dir();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let master = match env_key {
            Some(k) => parse_master(k)?,
            None => {
                let path = layout.system().master_key();
                match fs::read_to_string(&path) {
                    Ok(s) => parse_master(&s)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let k = random::<32>()?;
                        write_atomic(&path, format!("{}\n", hex::encode(k)).as_bytes())?;
                        k
                    }
                    Err(e) => return Err(io("read", &path)(e)),
                }
            }
        };
        Ok(Vault {
            master,
            layout: layout.clone(),
            dir,
            tenants: HandleCache::new(1024),
        })
    }

    fn path(&self, tenant: &TenantId) -> PathBuf {
        self.layout.tenant(tenant).vault_keys()
    }

    /// Keeps at most about `n` tenants' key logs open (each holds one file).
    pub fn limit_open(&self, n: usize) {
        self.tenants.set_capacity(n);
    }

    /// Tenants' key logs open now.
    pub fn open_count(&self) -> usize {
        self.tenants.len()
    }

    fn state(&self, tenant: &TenantId) -> Result<Arc<Mutex<TenantState>>, VaultError> {
        self.tenants.get_or_try_insert(tenant, || self.load(tenant))
    }

    fn load(&self, tenant: &TenantId) -> Result<Mutex<TenantState>, VaultError> {
        let log = ChainLog::open_redactable(&self.path(tenant)).map_err(log_err)?;
        let mut keys = TenantKeys::default();
        let mut from = 0;
        loop {
            let recs = log.read(from, 4096).map_err(log_err)?;
            let Some(last) = recs.last() else { break };
            from = last.seq + 1;
            for r in recs.iter().filter(|r| !r.is_tombstone()) {
                let mut v = r.value();
                if let Some(m) = v.as_object_mut() {
                    for k in ["seq", "prev_hash", "hash"] {
                        m.remove(k);
                    }
                }
                let rec: KeyRecord =
                    serde_json::from_value(v).map_err(|e| VaultError::Corrupt {
                        path: self.path(tenant),
                        reason: format!("record {}: {e}", r.seq),
                    })?;
                keys.apply(rec);
            }
        }
        Ok(Mutex::new(TenantState {
            log,
            keys,
            plain: HashMap::new(),
        }))
    }

    /// Key records as the JSON objects the key log holds.
    fn to_maps(
        &self,
        records: &[KeyRecord],
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, VaultError> {
        records
            .iter()
            .map(|r| match serde_json::to_value(r) {
                Ok(serde_json::Value::Object(m)) => Ok(m),
                Ok(_) => Err(VaultError::Corrupt {
                    path: self.dir.clone(),
                    reason: "a key record is not an object".into(),
                }),
                Err(e) => Err(VaultError::Corrupt {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                }),
            })
            .collect()
    }

    /// Appends records durably (one write and fsync), then applies them.
    fn record(&self, st: &mut TenantState, records: Vec<KeyRecord>) -> Result<(), VaultError> {
        st.log
            .append_all(self.to_maps(&records)?)
            .map_err(log_err)?;
        for r in records {
            st.keys.apply(r);
        }
        Ok(())
    }

    fn wrap(&self, kid: &str, key: &[u8; 32], now: Timestamp) -> Result<Wrapped, VaultError> {
        let (nonce, ct) = seal_raw(&self.master, key, format!("{WRAP_AAD}{kid}").as_bytes())?;
        Ok(Wrapped {
            nonce: B64.encode(nonce),
            ct: B64.encode(ct),
            created_at: format_timestamp(now),
        })
    }

    fn unwrap_key(
        &self,
        st: &mut TenantState,
        kid: &str,
        w: &Wrapped,
    ) -> Result<[u8; 32], VaultError> {
        if let Some(k) = st.plain.get(kid) {
            return Ok(*k);
        }
        let nonce = B64.decode(&w.nonce).map_err(|_| VaultError::Decrypt)?;
        let ct = B64.decode(&w.ct).map_err(|_| VaultError::Decrypt)?;
        let k = open_raw(
            &self.master,
            &nonce,
            &ct,
            format!("{WRAP_AAD}{kid}").as_bytes(),
        )?;
        let k: [u8; 32] = k.try_into().map_err(|_| VaultError::Decrypt)?;
        st.plain.insert(kid.to_owned(), k);
        Ok(k)
    }

    /// Creates a key under `kid`: random, wrapped by the master key, recorded durably (by the
    /// record `make` builds from the wrapped key), and kept unwrapped.
    fn create_key(
        &self,
        st: &mut TenantState,
        kid: &str,
        now: Timestamp,
        make: impl FnOnce(Wrapped) -> KeyRecord,
    ) -> Result<[u8; 32], VaultError> {
        let key = random::<32>()?;
        let w = self.wrap(kid, &key, now)?;
        self.record(st, vec![make(w)])?;
        st.plain.insert(kid.to_owned(), key);
        Ok(key)
    }

    /// The key new data of `who` is encrypted with: `(kid, key)`, created (durably) on first use.
    pub fn current_key(
        &self,
        tenant: &TenantId,
        who: &KeyRef,
        now: Timestamp,
    ) -> Result<(String, [u8; 32]), VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        match who {
            KeyRef::Tenant => {
                if let Some(kid) = st.keys.current.clone()
                    && let Some(w) = st.keys.tenant_keys.get(&kid).cloned()
                {
                    let k = self.unwrap_key(&mut st, &kid, &w)?;
                    return Ok((kid, k));
                }
                let kid = format!("t:{tenant}:v{}", st.keys.versions + 1);
                let key = self.create_key(&mut st, &kid, now, |w| KeyRecord::TenantKey {
                    kid: kid.clone(),
                    key: w,
                })?;
                Ok((kid, key))
            }
            KeyRef::Subject(s) => {
                if let Some(sk) = st.keys.subjects.get(s)
                    && let Some(k) = st.plain.get(&sk.kid)
                {
                    return Ok((sk.kid.clone(), *k));
                }
                if let Some(sk) = st.keys.subjects.get(s).cloned() {
                    let k = self.unwrap_key(&mut st, &sk.kid, &sk.key)?;
                    return Ok((sk.kid, k));
                }
                // A shredded subject's later data gets a fresh key id: nothing old becomes
                // readable (and the old data keeps its erasure date).
                let kid = format!("s:{tenant}:{s}:{}", hex::encode(random::<6>()?));
                let key = self.create_key(&mut st, &kid, now, |w| KeyRecord::SubjectKey {
                    subject: s.clone(),
                    kid: kid.clone(),
                    key: w,
                })?;
                Ok((kid, key))
            }
        }
    }

    /// Creates the keys of the subjects that have none yet with one durable append (an ingest
    /// batch meeting many new subjects pays one fsync, not one each).
    pub fn ensure_subject_keys(
        &self,
        tenant: &TenantId,
        subjects: &[&str],
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        let mut records = Vec::new();
        let mut plain = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in subjects {
            if st.keys.subjects.contains_key(*s) || !seen.insert(*s) {
                continue;
            }
            let kid = format!("s:{tenant}:{s}:{}", hex::encode(random::<6>()?));
            let key = random::<32>()?;
            let r = KeyRecord::SubjectKey {
                subject: (*s).to_owned(),
                kid: kid.clone(),
                key: self.wrap(&kid, &key, now)?,
            };
            records.push(r);
            plain.push((kid, key));
        }
        if records.is_empty() {
            return Ok(());
        }
        self.record(&mut st, records)?;
        st.plain.extend(plain);
        Ok(())
    }

    /// The key of an existing kid (to decrypt).
    pub fn key(&self, tenant: &TenantId, kid: &str) -> Result<[u8; 32], VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        // Unwrapped keys are only kept while they exist (shredding removes them).
        if let Some(k) = st.plain.get(kid) {
            return Ok(*k);
        }
        if let Some(w) = st.keys.tenant_keys.get(kid).cloned() {
            return self.unwrap_key(&mut st, kid, &w);
        }
        if let Some(s) = subject_of(tenant, kid) {
            if let Some(sk) = st.keys.subjects.get(s).cloned()
                && sk.kid == kid
            {
                return self.unwrap_key(&mut st, kid, &sk.key);
            }
            return Err(VaultError::Shredded(kid.to_owned()));
        }
        if kid.starts_with(&format!("t:{tenant}:")) {
            return Err(VaultError::Shredded(kid.to_owned()));
        }
        Err(VaultError::UnknownKey(kid.to_owned()))
    }

    /// Adds a new version of the tenant key; new data uses it, old data stays readable.
    pub fn rotate(&self, tenant: &TenantId, now: Timestamp) -> Result<String, VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        let kid = format!("t:{tenant}:v{}", st.keys.versions + 1);
        self.create_key(&mut st, &kid, now, |w| KeyRecord::TenantKey {
            kid: kid.clone(),
            key: w,
        })?;
        Ok(kid)
    }

    /// The tenant's token (HMAC) key, created on first use. Its bytes never leave the vault
    /// crate: [`crate::tokenize_value`] and [`crate::token_for`] take the key as it is.
    pub fn token_key(&self, tenant: &TenantId, now: Timestamp) -> Result<TokenKey, VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        let kid = format!("k:{tenant}:tokens");
        if let Some(w) = st.keys.token_key.clone() {
            return self.unwrap_key(&mut st, &kid, &w).map(TokenKey);
        }
        self.create_key(&mut st, &kid, now, |w| KeyRecord::TokenKey { key: w })
            .map(TokenKey)
    }

    /// Destroys a subject's key: its records in the key log become tombstones and a record of
    /// the shredding follows, in one atomic, durable rewrite; returns whether it existed.
    pub fn shred_subject(
        &self,
        tenant: &TenantId,
        subject: &str,
        now: Timestamp,
    ) -> Result<bool, VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        let existed = st.keys.subjects.get(subject).cloned();
        // A retry after a failed rewrite records the same time.
        let at = st
            .keys
            .shredded
            .get(subject)
            .cloned()
            .unwrap_or_else(|| format_timestamp(now));
        let shred = KeyRecord::Shred {
            subject: subject.to_owned(),
            at,
        };
        let append = self.to_maps(std::slice::from_ref(&shred))?;
        // In memory first: whatever happens to the file below, this process never uses the
        // key again (an error tells the caller to retry, which rewrites the file).
        st.keys.apply(shred);
        if let Some(sk) = &existed {
            st.plain.remove(&sk.kid);
        }
        st.log
            .redact(
                |r| {
                    let v = r.value();
                    (v["op"] == "subject_key" && v["subject"] == subject).then(Default::default)
                },
                append,
            )
            .map_err(log_err)?;
        Ok(existed.is_some())
    }

    /// When a subject was shredded, if it was.
    pub fn shredded_at(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> Result<Option<String>, VaultError> {
        let st = self.state(tenant)?;
        let st = lock(&st);
        Ok(st.keys.shredded.get(subject).cloned())
    }

    /// The subjects whose keys were shredded.
    pub fn shredded_subjects(&self, tenant: &TenantId) -> Result<Vec<String>, VaultError> {
        let st = self.state(tenant)?;
        let st = lock(&st);
        Ok(st.keys.shredded.keys().cloned().collect())
    }

    /// Destroys every key of a tenant: each key record of its key log becomes a tombstone and
    /// one record says when (and how many tenant key versions existed, so a new key never
    /// takes a destroyed key's id), in one atomic rewrite (with any copy an interrupted rewrite
    /// left beside it removed); its subjects count as shredded.
    pub fn shred_tenant(&self, tenant: &TenantId, now: Timestamp) -> Result<(), VaultError> {
        let st = self.state(tenant)?;
        let mut st = lock(&st);
        let at = format_timestamp(now);
        // Each subject's shredding recorded on its own: its key record becomes a tombstone, so
        // a replay of the log would not know the subject from the tenant record alone.
        let mut records: Vec<KeyRecord> = st
            .keys
            .subjects
            .keys()
            .map(|subject| KeyRecord::Shred {
                subject: subject.clone(),
                at: at.clone(),
            })
            .collect();
        records.push(KeyRecord::TenantShred {
            at,
            versions: st.keys.versions,
        });
        let append = self.to_maps(&records)?;
        for r in records {
            st.keys.apply(r);
        }
        st.plain.clear();
        st.log
            .redact(
                |r| {
                    let v = r.value();
                    matches!(
                        v["op"].as_str(),
                        Some("tenant_key" | "token_key" | "subject_key")
                    )
                    .then(Default::default)
                },
                append,
            )
            .map_err(log_err)?;
        let p = self.path(tenant);
        for p in [
            p.with_extension("keys.rewrite"),
            p.with_extension("keys.tmp"),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &p)(e)),
            }
        }
        Ok(())
    }

    /// When every key of the tenant was last destroyed, if ever.
    pub fn tenant_shredded_at(&self, tenant: &TenantId) -> Result<Option<String>, VaultError> {
        let st = self.state(tenant)?;
        let st = lock(&st);
        Ok(st.keys.tenant_shredded_at.clone())
    }
}
