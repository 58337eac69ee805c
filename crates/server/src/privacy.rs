//! Privacy on the ingest and read paths (DESIGN.md §4), using the vault crate: before an event is
//! sequenced, the strings of its sensitive fields (the default set of its event type) are
//! PII-tokenized and each field is then sealed under the subject's key (the tenant's when the event
//! has no `subject_id`). The ledger, and so the hash, the Merkle tree, the index and exports, only
//! ever hold the sealed form. Reads with `view=decrypted` open the fields again (or show
//! `$erased` after crypto-shredding). Each token's value is kept in the tenant's token vault
//! (`tenants/<id>/tokens/log`, a chain log of values sealed under the same subject/tenant key), so
//! shredding a subject also makes its token values unreadable.

use crate::error::ApiError;
use agentrail_event::model::DEFAULT_SENSITIVE_FIELDS;
use agentrail_event::{TenantId, ValidEvent};
use agentrail_ledger::ChainLog;
use agentrail_vault::{
    Detectors, Tokenized, Vault, is_sealed, open_field, seal_field, tokenize_value,
};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn vault_err(e: agentrail_vault::VaultError) -> ApiError {
    ApiError::internal(format!("vault: {e}"))
}

/// A tenant's token vault: token → seq of its record.
struct Tokens {
    log: ChainLog,
    known: HashMap<String, u64>,
}

/// The privacy layer of a server.
pub struct Privacy {
    pub vault: Vault,
    detectors: Detectors,
    data_dir: PathBuf,
    tokens: Mutex<HashMap<TenantId, Arc<Mutex<Tokens>>>>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Privacy")
    }
}

/// The sensitive field paths of an event type.
pub fn sensitive_paths(event_type: &str) -> &'static [&'static str] {
    DEFAULT_SENSITIVE_FIELDS
        .iter()
        .find(|(t, _)| *t == event_type)
        .map_or(&[], |(_, p)| p)
}

fn get_mut<'a>(m: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let mut parts = path.split('.');
    let mut cur = m.get_mut(parts.next()?)?;
    for p in parts {
        cur = cur.as_object_mut()?.get_mut(p)?;
    }
    Some(cur)
}

impl Privacy {
    pub fn open(data_dir: &Path, master_key: Option<&str>) -> Result<Privacy, String> {
        let vault =
            Vault::open(data_dir, master_key).map_err(|e| format!("opening the vault: {e}"))?;
        Ok(Privacy {
            vault,
            detectors: Detectors::default(),
            data_dir: data_dir.to_path_buf(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn tokens(&self, tenant: &TenantId) -> Result<Arc<Mutex<Tokens>>, ApiError> {
        let mut all = lock(&self.tokens);
        if let Some(t) = all.get(tenant) {
            return Ok(t.clone());
        }
        let path = self
            .data_dir
            .join("tenants")
            .join(tenant.as_str())
            .join("tokens")
            .join("log");
        let log = ChainLog::open(&path)?;
        let mut known = HashMap::new();
        let mut from = 0;
        loop {
            let recs = log.read(from, 4096)?;
            let Some(last) = recs.last() else { break };
            from = last.seq + 1;
            for r in &recs {
                if let Some(t) = r.value()["token"].as_str() {
                    known.insert(t.to_owned(), r.seq);
                }
            }
        }
        let t = Arc::new(Mutex::new(Tokens { log, known }));
        if all.len() >= 256 {
            all.retain(|_, v| Arc::strong_count(v) > 1);
        }
        all.insert(tenant.clone(), t.clone());
        Ok(t)
    }

    /// Tokenizes and seals the sensitive fields of an event in place (assigning its event id
    /// first: the id is part of every field's associated data).
    pub fn protect(
        &self,
        tenant: &TenantId,
        ev: &mut ValidEvent,
        now: &str,
    ) -> Result<(), ApiError> {
        let event_type = ev
            .value
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let paths = sensitive_paths(&event_type);
        if paths.is_empty() {
            return Ok(());
        }
        let event_id = match ev.value.get("event_id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = uuid::Uuid::now_v7().to_string();
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
        let token_key = self
            .vault
            .token_key(tenant.as_str(), now)
            .map_err(vault_err)?;
        let mut found: Vec<Tokenized> = Vec::new();
        for path in paths {
            let Some(v) = get_mut(&mut ev.value, path) else {
                continue;
            };
            if is_sealed(v) {
                continue;
            }
            tokenize_value(&token_key, &self.detectors, v, &mut found);
            let sealed = seal_field(
                &self.vault,
                tenant.as_str(),
                subject.as_deref(),
                &event_id,
                path,
                v,
                now,
            )
            .map_err(vault_err)?;
            *v = sealed;
        }
        if !found.is_empty() {
            self.keep_tokens(tenant, subject.as_deref(), found, now)?;
        }
        Ok(())
    }

    fn keep_tokens(
        &self,
        tenant: &TenantId,
        subject: Option<&str>,
        found: Vec<Tokenized>,
        now: &str,
    ) -> Result<(), ApiError> {
        let tokens = self.tokens(tenant)?;
        let mut t = lock(&tokens);
        let mut seen = HashSet::new();
        for f in found {
            if t.known.contains_key(&f.token) || !seen.insert(f.token.clone()) {
                continue;
            }
            let sealed = seal_field(
                &self.vault,
                tenant.as_str(),
                subject,
                "token",
                &f.token,
                &Value::String(f.value),
                now,
            )
            .map_err(vault_err)?;
            let mut m = Map::new();
            m.insert("token".into(), json!(f.token));
            m.insert("type".into(), json!(f.label));
            m.insert("subject_id".into(), json!(subject));
            m.insert("value".into(), sealed);
            let rec = t.log.append(m)?;
            t.known.insert(f.token, rec.seq);
        }
        Ok(())
    }

    /// Opens the sealed sensitive fields of a served event (in place).
    pub fn open_event(&self, tenant: &str, v: &mut Value) {
        let Some(m) = v.as_object_mut() else { return };
        let event_type = m
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let event_id = m
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for path in sensitive_paths(&event_type) {
            let Some(field) = get_mut(m, path) else {
                continue;
            };
            if !is_sealed(field) {
                continue;
            }
            *field = match open_field(&self.vault, tenant, &event_id, path, field) {
                Ok(plain) => plain,
                Err(e) => json!({"$unreadable": e.to_string()}),
            };
        }
    }

    /// The values of tokens (`$erased` once the subject's key is gone; `None` if unknown).
    pub fn reveal(
        &self,
        tenant: &TenantId,
        tokens: &[String],
    ) -> Result<Vec<(String, Option<Value>)>, ApiError> {
        let store = self.tokens(tenant)?;
        let t = lock(&store);
        let mut out = Vec::new();
        for tok in tokens {
            let value = match t.known.get(tok) {
                None => None,
                Some(seq) => {
                    let recs = t.log.read(*seq, 1)?;
                    match recs.first() {
                        None => None,
                        Some(r) => {
                            let v = r.value();
                            Some(
                                open_field(&self.vault, tenant.as_str(), "token", tok, &v["value"])
                                    .map_err(vault_err)?,
                            )
                        }
                    }
                }
            };
            out.push((tok.clone(), value));
        }
        Ok(out)
    }
}
