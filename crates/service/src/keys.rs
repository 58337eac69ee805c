//! API keys (DESIGN.md §5): tenant-bound and scoped, or the platform's root key. Only a SHA-256
//! of each key is stored, in a chain log of changes (`<data-dir>/system/keys.log`: `create`
//! with the key's record, `revoke` with its id and time; 0600) whose head every tenant's
//! checkpoint commits (`agentrail_ledger::anchors`), so a key added, widened or un-revoked by
//! whoever can write the data directory is found at the next open and by `agentrail verify`.
//! The key itself is shown once, when it is created. Revocation takes effect for the next
//! request. A `keys.json` of an older version is imported on the first start and removed.

use agentrail_event::TenantId;
use agentrail_event::hash::{sha256, to_hex};
use agentrail_ledger::ChainLog;
use agentrail_ledger::layout::DataDir;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};

/// What a tenant key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// Ingest events (and nothing else: a writer cannot read).
    #[serde(rename = "events:write")]
    EventsWrite,
    /// Query events, proofs and checkpoints.
    #[serde(rename = "events:read")]
    EventsRead,
    #[serde(rename = "export")]
    Export,
    /// Checkpoints, proofs and integrity verification.
    #[serde(rename = "verify")]
    Verify,
    #[serde(rename = "pii:reveal")]
    PiiReveal,
    /// Keys, policy, erasure and the access log of the tenant.
    #[serde(rename = "tenant:admin")]
    TenantAdmin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::EventsWrite,
        Scope::EventsRead,
        Scope::Export,
        Scope::Verify,
        Scope::PiiReveal,
        Scope::TenantAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
            Scope::Export => "export",
            Scope::Verify => "verify",
            Scope::PiiReveal => "pii:reveal",
            Scope::TenantAdmin => "tenant:admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A stored key: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    /// `None` for the root key.
    pub tenant_id: Option<String>,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the whole key string.
    pub key_sha256: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl KeyRecord {
    pub fn is_root(&self) -> bool {
        self.tenant_id.is_none()
    }
}

/// Who is calling: the key that authenticated the request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    /// `None` for the root key.
    pub tenant: Option<TenantId>,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn is_root(&self) -> bool {
        self.tenant.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a key file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    #[error("API key log: {0}")]
    Log(#[from] agentrail_ledger::ChainLogError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: BTreeMap<String, KeyRecord>,
}

/// The key store of a data directory.
#[derive(Debug)]
pub struct KeyStore {
    log: ChainLog,
    keys: RwLock<BTreeMap<String, KeyRecord>>,
    /// Serializes changes, which rewrite the file.
    write: Mutex<()>,
}

const KEY_PREFIX: &str = "ar_";

fn random(n: usize) -> Result<Vec<u8>, KeyStoreError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| KeyStoreError::Random(e.to_string()))?;
    Ok(b)
}

/// Constant-time comparison of two equal-length byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key id inside a key string `ar_<key_id>_<secret>`.
pub fn key_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The log records that make a key as it is: created, then revoked if it is.
fn changes(k: &KeyRecord) -> Result<Vec<Map<String, Value>>, KeyStoreError> {
    let mut created = k.clone();
    let revoked = created.revoked_at.take();
    let key = serde_json::to_value(&created).map_err(|e| KeyStoreError::Corrupt {
        path: PathBuf::from("keys.log"),
        reason: e.to_string(),
    })?;
    let mut out = vec![obj(json!({"op": "create", "key": key}))];
    if let Some(at) = revoked {
        out.push(obj(
            json!({"op": "revoke", "key_id": k.key_id, "revoked_at": at}),
        ));
    }
    Ok(out)
}

/// Applies one record of the key log.
fn apply(keys: &mut BTreeMap<String, KeyRecord>, r: &Value) -> Result<(), String> {
    match r["op"].as_str() {
        Some("create") => {
            let k: KeyRecord = serde_json::from_value(r["key"].clone())
                .map_err(|e| format!("a created key: {e}"))?;
            if keys.contains_key(&k.key_id) {
                return Err(format!("key {} is created twice", k.key_id));
            }
            keys.insert(k.key_id.clone(), k);
        }
        Some("revoke") => {
            let id = r["key_id"].as_str().unwrap_or_default();
            let k = keys
                .get_mut(id)
                .ok_or_else(|| format!("revokes key {id:?}, which was never created"))?;
            k.revoked_at = r["revoked_at"].as_str().map(str::to_owned);
        }
        other => return Err(format!("unknown op {other:?}")),
    }
    Ok(())
}

impl KeyStore {
    /// Opens `<data_dir>/system/keys.log` (an empty store if it does not exist yet), importing
    /// the `keys.json` of an older version.
    pub fn open(layout: &DataDir) -> Result<KeyStore, KeyStoreError> {
        let path = layout.system().api_keys_log();
        let log = ChainLog::open(&path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|source| {
                KeyStoreError::Io {
                    op: "restrict",
                    path: path.clone(),
                    source,
                }
            })?;
        }
        let mut keys = BTreeMap::new();
        log.for_each(|r| {
            apply(&mut keys, &r.value()).map_err(|reason| KeyStoreError::Corrupt {
                path: path.clone(),
                reason: format!("record {}: {reason}", r.seq),
            })
        })?;
        let store = KeyStore {
            log,
            keys: RwLock::new(keys),
            write: Mutex::new(()),
        };
        let old = layout.system().keys();
        match fs::read(&old) {
            Ok(b) if store.read().is_empty() => {
                let f: KeyFile =
                    serde_json::from_slice(&b).map_err(|e| KeyStoreError::Corrupt {
                        path: old.clone(),
                        reason: e.to_string(),
                    })?;
                let mut recs = Vec::new();
                for k in f.keys.into_values() {
                    recs.extend(changes(&k)?);
                }
                store.change(recs)?;
                fs::remove_file(&old).map_err(|source| KeyStoreError::Io {
                    op: "remove",
                    path: old.clone(),
                    source,
                })?;
                tracing::info!(file = %old.display(), "imported the API keys of an older version into the key log");
            }
            Ok(_) => {
                return Err(KeyStoreError::Corrupt {
                    path: old,
                    reason: "an API key file beside a key log that holds keys: which one is right is not for agentrail to guess".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyStoreError::Io {
                    op: "read",
                    path: old,
                    source,
                });
            }
        }
        Ok(store)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, KeyRecord>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends changes durably (one fsync), then publishes them: a change is visible only once
    /// it is durable.
    fn change(&self, records: Vec<Map<String, Value>>) -> Result<(), KeyStoreError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut copy = self.read().clone();
        for r in &records {
            apply(&mut copy, &Value::Object(r.clone())).map_err(|reason| {
                KeyStoreError::Corrupt {
                    path: self.log.path().to_path_buf(),
                    reason,
                }
            })?;
        }
        self.log.append_all(records)?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = copy;
        Ok(())
    }

    /// The log's head (records, hash of the last), which checkpoints commit.
    pub fn head(&self) -> (u64, Option<agentrail_event::hash::Hash>) {
        self.log.head()
    }

    /// Creates a key; returns its record and the key string (shown only now).
    pub fn create(
        &self,
        tenant: Option<&TenantId>,
        name: &str,
        scopes: &[Scope],
        now: &str,
    ) -> Result<(KeyRecord, String), KeyStoreError> {
        let key_id = hex::encode(random(8)?);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(32)?);
        let key = format!("{KEY_PREFIX}{key_id}_{secret}");
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let rec = KeyRecord {
            key_id: key_id.clone(),
            tenant_id: tenant.map(|t| t.to_string()),
            name: name.to_owned(),
            scopes,
            key_sha256: to_hex(&sha256(key.as_bytes())),
            created_at: now.to_owned(),
            revoked_at: None,
        };
        self.change(changes(&rec)?)?;
        Ok((rec, key))
    }

    /// Revokes a key of `tenant` (`None`: a root key). `Ok(false)` if there is no such key.
    pub fn revoke(
        &self,
        tenant: Option<&TenantId>,
        key_id: &str,
        now: &str,
    ) -> Result<bool, KeyStoreError> {
        let want = tenant.map(|t| t.to_string());
        {
            let keys = self.read();
            match keys.get(key_id) {
                Some(k) if k.tenant_id == want => {
                    if k.revoked_at.is_some() {
                        return Ok(true);
                    }
                }
                _ => return Ok(false),
            }
        }
        self.change(vec![obj(
            json!({"op": "revoke", "key_id": key_id, "revoked_at": now}),
        )])?;
        Ok(true)
    }

    /// Keys of a tenant (revoked ones included, marked), by key id.
    pub fn list(&self, tenant: &TenantId) -> Vec<KeyRecord> {
        self.read()
            .values()
            .filter(|k| k.tenant_id.as_deref() == Some(tenant.as_str()))
            .cloned()
            .collect()
    }

    /// Whether a live root key exists.
    pub fn has_root(&self) -> bool {
        self.read()
            .values()
            .any(|k| k.is_root() && k.revoked_at.is_none())
    }

    /// The principal of a key string, if it is a live key.
    pub fn authenticate(&self, key: &str) -> Option<Principal> {
        let id = key_id_of(key)?;
        let keys = self.read();
        let rec = keys.get(id)?;
        let digest = to_hex(&sha256(key.as_bytes()));
        if !same(digest.as_bytes(), rec.key_sha256.as_bytes()) || rec.revoked_at.is_some() {
            return None;
        }
        Some(Principal {
            key_id: rec.key_id.clone(),
            name: rec.name.clone(),
            tenant: rec
                .tenant_id
                .as_deref()
                .and_then(|t| TenantId::parse(t).ok()),
            scopes: rec.scopes.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_authenticate_revoke_persist() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataDir::new(dir.path());
        std::fs::create_dir_all(layout.system().dir()).unwrap();
        let store = KeyStore::open(&layout).unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let (rec, key) = store
            .create(Some(&acme), "reader", &[Scope::EventsRead], "t0")
            .unwrap();
        assert_eq!(key_id_of(&key), Some(rec.key_id.as_str()));
        let p = store.authenticate(&key).unwrap();
        assert_eq!(p.tenant, Some(acme.clone()));
        assert_eq!(p.scopes, vec![Scope::EventsRead]);
        // A wrong secret with a right id, and garbage, do not authenticate.
        let mut wrong = key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == 'A' { 'B' } else { 'A' });
        assert!(store.authenticate(&wrong).is_none());
        assert!(store.authenticate("Bearer x").is_none());
        // The file holds no key, only its hash, and is private.
        let file = String::from_utf8_lossy(&std::fs::read(layout.system().api_keys_log()).unwrap())
            .into_owned();
        assert!(file.contains(&rec.key_sha256));
        assert!(!file.contains(&key[20..]));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(layout.system().api_keys_log())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another tenant cannot revoke it; its own tenant can; it stops working at once.
        let other = TenantId::parse("other").unwrap();
        assert!(!store.revoke(Some(&other), &rec.key_id, "t1").unwrap());
        assert!(store.authenticate(&key).is_some());
        assert!(store.revoke(Some(&acme), &rec.key_id, "t1").unwrap());
        assert!(store.authenticate(&key).is_none());
        // Reopened: still revoked.
        let store = KeyStore::open(&layout).unwrap();
        assert!(store.authenticate(&key).is_none());
        assert_eq!(store.list(&acme)[0].revoked_at.as_deref(), Some("t1"));
    }

    #[test]
    fn an_older_key_file_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataDir::new(dir.path());
        std::fs::create_dir_all(layout.system().dir()).unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let (live, revoked, live_key) = {
            let store = KeyStore::open(&layout).unwrap();
            let (live, k) = store
                .create(Some(&acme), "w", &[Scope::EventsWrite], "t0")
                .unwrap();
            let (revoked, _) = store
                .create(Some(&acme), "r", &[Scope::EventsRead], "t0")
                .unwrap();
            store.revoke(Some(&acme), &revoked.key_id, "t1").unwrap();
            (
                live,
                store
                    .list(&acme)
                    .into_iter()
                    .find(|k| k.key_id == revoked.key_id)
                    .unwrap(),
                k,
            )
        };
        // What an older version kept: one JSON file, no log.
        std::fs::remove_file(layout.system().api_keys_log()).unwrap();
        let file = KeyFile {
            version: 1,
            keys: [
                (live.key_id.clone(), live.clone()),
                (revoked.key_id.clone(), revoked.clone()),
            ]
            .into_iter()
            .collect(),
        };
        std::fs::write(layout.system().keys(), serde_json::to_vec(&file).unwrap()).unwrap();
        let store = KeyStore::open(&layout).unwrap();
        assert!(!layout.system().keys().exists());
        assert!(store.authenticate(&live_key).is_some());
        let mut want = vec![live.clone(), revoked.clone()];
        want.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        assert_eq!(store.list(&acme), want);
        assert_eq!(store.head().0, 3, "create, create, revoke");
        drop(store);
        // A key file beside a log that holds keys is refused, not guessed at.
        std::fs::write(layout.system().keys(), serde_json::to_vec(&file).unwrap()).unwrap();
        let e = KeyStore::open(&layout).unwrap_err().to_string();
        assert!(e.contains("not for agentrail to guess"), "{e}");
    }
}
