//! The key hierarchy (DESIGN.md §4): a master key (a 0600 file created on first start, or
//! `AGENTRAIL_MASTER_KEY`) wraps one data key per tenant (versioned: rotation adds a version, new
//! writes use it, old data stays readable), one per data subject, and the tenant's token key (the
//! HMAC key of its PII tokens). Wrapped keys live in `<data-dir>/system/vault/<tenant>.json`,
//! rewritten atomically. Crypto-shredding deletes a subject's key (or the whole file for a tenant):
//! what it encrypted can never be read again.
//!
//! AEAD: XChaCha20-Poly1305 (RustCrypto), random 192-bit nonces; the associated data binds a
//! ciphertext to its tenant, event id and field path, so it cannot be moved.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))?;
    }
    Ok(())
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

/// What `<tenant>.json` holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SubjectKey {
    kid: String,
    key: Wrapped,
}

/// The subject a subject kid belongs to.
pub fn subject_of<'a>(tenant: &str, kid: &'a str) -> Option<&'a str> {
    let rest = kid
        .strip_prefix("s:")?
        .strip_prefix(tenant)?
        .strip_prefix(':')?;
    rest.rsplit_once(':').map(|(s, _)| s)
}

/// The vault of a data directory.
#[derive(Debug)]
pub struct Vault {
    master: [u8; 32],
    dir: PathBuf,
    /// Serializes changes per process (files are rewritten whole).
    write: Mutex<()>,
}

/// Where a key comes from, for a data key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Tenant,
    Subject(String),
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
    pub fn open(data_dir: &Path, env_key: Option<&str>) -> Result<Vault, VaultError> {
        let dir = data_dir.join("system").join("vault");
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let master = match env_key {
            Some(k) => parse_master(k)?,
            None => {
                let path = data_dir.join("system").join("master.key");
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
            dir,
            write: Mutex::new(()),
        })
    }

    fn path(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.json"))
    }

    fn load(&self, tenant: &str) -> Result<TenantKeys, VaultError> {
        let p = self.path(tenant);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| VaultError::Corrupt {
                path: p,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TenantKeys::default()),
            Err(e) => Err(io("read", &p)(e)),
        }
    }

    fn store(&self, tenant: &str, k: &TenantKeys) -> Result<(), VaultError> {
        let b = serde_json::to_vec_pretty(k).map_err(|e| VaultError::Corrupt {
            path: self.path(tenant),
            reason: e.to_string(),
        })?;
        write_atomic(&self.path(tenant), &b)
    }

    fn wrap(&self, kid: &str, key: &[u8; 32], now: &str) -> Result<Wrapped, VaultError> {
        let (nonce, ct) = seal_raw(&self.master, key, format!("{WRAP_AAD}{kid}").as_bytes())?;
        Ok(Wrapped {
            nonce: B64.encode(nonce),
            ct: B64.encode(ct),
            created_at: now.to_owned(),
        })
    }

    fn unwrap_key(&self, kid: &str, w: &Wrapped) -> Result<[u8; 32], VaultError> {
        let nonce = B64.decode(&w.nonce).map_err(|_| VaultError::Decrypt)?;
        let ct = B64.decode(&w.ct).map_err(|_| VaultError::Decrypt)?;
        let k = open_raw(
            &self.master,
            &nonce,
            &ct,
            format!("{WRAP_AAD}{kid}").as_bytes(),
        )?;
        k.try_into().map_err(|_| VaultError::Decrypt)
    }

    /// The key new data of `who` is encrypted with: `(kid, key)`, created on first use.
    pub fn current_key(
        &self,
        tenant: &str,
        who: &KeyRef,
        now: &str,
    ) -> Result<(String, [u8; 32]), VaultError> {
        let _g = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut k = self.load(tenant)?;
        match who {
            KeyRef::Tenant => {
                if let Some(kid) = &k.current
                    && let Some(w) = k.tenant_keys.get(kid)
                {
                    return Ok((kid.clone(), self.unwrap_key(kid, w)?));
                }
                let kid = format!("t:{tenant}:v1");
                let key = random::<32>()?;
                k.tenant_keys
                    .insert(kid.clone(), self.wrap(&kid, &key, now)?);
                k.current = Some(kid.clone());
                self.store(tenant, &k)?;
                Ok((kid, key))
            }
            KeyRef::Subject(s) => {
                if let Some(sk) = k.subjects.get(s) {
                    return Ok((sk.kid.clone(), self.unwrap_key(&sk.kid, &sk.key)?));
                }
                // A shredded subject's later data gets a fresh key id: nothing old becomes
                // readable (and the old data keeps its erasure date).
                let kid = format!("s:{tenant}:{s}:{}", hex::encode(random::<6>()?));
                let key = random::<32>()?;
                let wrapped = self.wrap(&kid, &key, now)?;
                k.subjects.insert(
                    s.clone(),
                    SubjectKey {
                        kid: kid.clone(),
                        key: wrapped,
                    },
                );
                self.store(tenant, &k)?;
                Ok((kid, key))
            }
        }
    }

    /// The key of an existing kid (to decrypt).
    pub fn key(&self, tenant: &str, kid: &str) -> Result<[u8; 32], VaultError> {
        let k = self.load(tenant)?;
        if let Some(w) = k.tenant_keys.get(kid) {
            return self.unwrap_key(kid, w);
        }
        if let Some(s) = subject_of(tenant, kid) {
            if let Some(sk) = k.subjects.get(s)
                && sk.kid == kid
            {
                return self.unwrap_key(kid, &sk.key);
            }
            return Err(VaultError::Shredded(kid.to_owned()));
        }
        if kid.starts_with(&format!("t:{tenant}:")) {
            return Err(VaultError::Shredded(kid.to_owned()));
        }
        Err(VaultError::UnknownKey(kid.to_owned()))
    }

    /// Adds a new version of the tenant key; new data uses it, old data stays readable.
    pub fn rotate(&self, tenant: &str, now: &str) -> Result<String, VaultError> {
        let _g = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut k = self.load(tenant)?;
        let next = k.tenant_keys.len() + 1;
        let kid = format!("t:{tenant}:v{next}");
        let key = random::<32>()?;
        k.tenant_keys
            .insert(kid.clone(), self.wrap(&kid, &key, now)?);
        k.current = Some(kid.clone());
        self.store(tenant, &k)?;
        Ok(kid)
    }

    /// The tenant's token (HMAC) key, created on first use.
    pub fn token_key(&self, tenant: &str, now: &str) -> Result<[u8; 32], VaultError> {
        let _g = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut k = self.load(tenant)?;
        let kid = format!("k:{tenant}:tokens");
        if let Some(w) = &k.token_key {
            return self.unwrap_key(&kid, w);
        }
        let key = random::<32>()?;
        k.token_key = Some(self.wrap(&kid, &key, now)?);
        self.store(tenant, &k)?;
        Ok(key)
    }

    /// Destroys a subject's key; returns whether it existed.
    pub fn shred_subject(
        &self,
        tenant: &str,
        subject: &str,
        now: &str,
    ) -> Result<bool, VaultError> {
        let _g = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut k = self.load(tenant)?;
        let existed = k.subjects.remove(subject).is_some();
        k.shredded.insert(subject.to_owned(), now.to_owned());
        self.store(tenant, &k)?;
        Ok(existed)
    }

    /// When a subject was shredded, if it was.
    pub fn shredded_at(&self, tenant: &str, subject: &str) -> Result<Option<String>, VaultError> {
        Ok(self.load(tenant)?.shredded.get(subject).cloned())
    }

    /// Destroys every key of a tenant.
    pub fn shred_tenant(&self, tenant: &str) -> Result<(), VaultError> {
        let _g = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let p = self.path(tenant);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &p)(e)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))
    }
}
