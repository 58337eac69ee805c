//! Sealing a sensitive field: its JSON value is replaced by
//! `{"$enc": {"alg", "kid", "nonce", "ct"}}` (base64), encrypted under the subject's key (the
//! tenant's when the event has no subject) with associated data = tenant, event id and field path.
//! What the ledger hashes is this sealed form. After crypto-shredding, opening yields
//! `{"$erased": {"reason", "at"}}` instead of the content.

use crate::keys::{ALG, KeyRef, Vault, VaultError, open_raw, seal_raw_with_nonce};
use agentrail_event::TenantId;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// What a sealed field is bound to besides its tenant: the event and the field's path in it
/// (`payload.prompt`). A ciphertext moved to another event, field or tenant does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    pub event_id: &'a str,
    pub path: &'a str,
}

impl<'a> Aad<'a> {
    pub fn new(event_id: &'a str, path: &'a str) -> Aad<'a> {
        Aad { event_id, path }
    }

    fn bytes(&self, tenant: &TenantId) -> Vec<u8> {
        format!(
            "agentrail-field/v1\0{tenant}\0{}\0{}",
            self.event_id, self.path
        )
        .into_bytes()
    }
}

/// The nonce of a sealed field: HMAC-SHA256(key, aad ‖ plaintext), first 24 bytes (the SIV
/// construction). The same content of the same field of the same event seals to the same bytes,
/// so an idempotent replay is recognized as one; different content never shares a nonce.
fn siv_nonce(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> [u8; 24] {
    let mut n = [0u8; 24];
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) {
        mac.update(&(aad.len() as u64).to_le_bytes());
        mac.update(aad);
        mac.update(plain);
        n.copy_from_slice(&mac.finalize().into_bytes()[..24]);
    }
    n
}

/// Seals one field value.
pub fn seal_field(
    vault: &Vault,
    tenant: &TenantId,
    subject: Option<&str>,
    aad: Aad<'_>,
    value: &Value,
    now: jiff::Timestamp,
) -> Result<Value, VaultError> {
    let who = subject.map_or(KeyRef::Tenant, |s| KeyRef::Subject(s.to_owned()));
    let (kid, key) = vault.current_key(tenant, &who, now)?;
    let plain = serde_json::to_vec(value).map_err(|_| VaultError::Decrypt)?;
    let aad = aad.bytes(tenant);
    let nonce = siv_nonce(&key, &aad, &plain);
    let ct = seal_raw_with_nonce(&key, &nonce, &plain, &aad)?;
    Ok(json!({"$enc": {"alg": ALG, "kid": kid, "nonce": B64.encode(nonce), "ct": B64.encode(ct)}}))
}

/// Whether a value is a sealed field.
pub fn is_sealed(v: &Value) -> bool {
    v.get("$enc").is_some() && v.as_object().is_some_and(|m| m.len() == 1)
}

/// Opens a sealed field: the plaintext value, or `$erased` if its key was shredded. A tampered
/// or moved ciphertext is an error.
pub fn open_field(
    vault: &Vault,
    tenant: &TenantId,
    aad: Aad<'_>,
    sealed: &Value,
) -> Result<Value, VaultError> {
    let e = &sealed["$enc"];
    let (Some(kid), Some(nonce), Some(ct)) =
        (e["kid"].as_str(), e["nonce"].as_str(), e["ct"].as_str())
    else {
        return Err(VaultError::Decrypt);
    };
    let key = match vault.key(tenant, kid) {
        Ok(k) => k,
        Err(VaultError::Shredded(_)) => {
            let subject = crate::keys::subject_of(tenant, kid);
            let at = match subject {
                Some(s) => vault.shredded_at(tenant, s)?,
                None => vault.tenant_shredded_at(tenant)?,
            };
            return Ok(json!({"$erased": {"reason": "crypto-shredded", "at": at}}));
        }
        Err(e) => return Err(e),
    };
    let nonce = B64.decode(nonce).map_err(|_| VaultError::Decrypt)?;
    let ct = B64.decode(ct).map_err(|_| VaultError::Decrypt)?;
    let plain = open_raw(&key, &nonce, &ct, &aad.bytes(tenant))?;
    serde_json::from_slice(&plain).map_err(|_| VaultError::Decrypt)
}

/// Opens, in place, every sealed value inside `v` (found at `path`, e.g. `payload`): the plaintext,
/// `$erased` after crypto-shredding, or `{"$unreadable": reason}` for a damaged ciphertext.
/// Returns how many values were opened to content (not erased, not unreadable).
pub fn open_sealed(
    vault: &Vault,
    tenant: &TenantId,
    event_id: &str,
    path: &str,
    v: &mut Value,
) -> usize {
    if is_sealed(v) {
        let mut opened = 0;
        *v = match open_field(vault, tenant, Aad::new(event_id, path), v) {
            Ok(plain) => {
                if plain.get("$erased").is_none() {
                    opened = 1;
                }
                plain
            }
            Err(e) => json!({"$unreadable": e.to_string()}),
        };
        return opened;
    }
    match v {
        Value::Object(m) => m
            .iter_mut()
            .map(|(k, child)| open_sealed(vault, tenant, event_id, &format!("{path}.{k}"), child))
            .sum(),
        _ => 0,
    }
}

/// The sealed content of a stored event, opened: `{field path: tokenized value}` for every sealed
/// field inside `payload` whose key still exists (`None` when there is none). This is what the
/// query index may hold for search: tokenized, so no detected PII is in it, and nothing of
/// a shredded subject.
pub fn sealed_content(vault: &Vault, tenant: &TenantId, stored: &Value) -> Option<Value> {
    let event_id = stored.get("event_id").and_then(Value::as_str)?;
    let mut out = serde_json::Map::new();
    collect(
        vault,
        tenant,
        event_id,
        "payload",
        stored.get("payload")?,
        &mut out,
    );
    (!out.is_empty()).then_some(Value::Object(out))
}

fn collect(
    vault: &Vault,
    tenant: &TenantId,
    event_id: &str,
    path: &str,
    v: &Value,
    out: &mut serde_json::Map<String, Value>,
) {
    if is_sealed(v) {
        if let Ok(plain) = open_field(vault, tenant, Aad::new(event_id, path), v)
            && plain.get("$erased").is_none()
        {
            out.insert(path.to_owned(), plain);
        }
        return;
    }
    if let Value::Object(m) = v {
        for (k, child) in m {
            collect(vault, tenant, event_id, &format!("{path}.{k}"), child, out);
        }
    }
}

/// Protects one sensitive field: the values the detectors find in its strings become tokens
/// (each `(token, value)` pushed to `found`, for the token vault), then the tokenized value is
/// sealed. What the caller stores is the sealed form; it never sees a key.
#[allow(clippy::too_many_arguments)]
pub fn protect_field(
    vault: &Vault,
    tenant: &TenantId,
    token_key: &crate::keys::TokenKey,
    detectors: &crate::Detectors,
    subject: Option<&str>,
    aad: Aad<'_>,
    value: &mut Value,
    now: jiff::Timestamp,
    found: &mut Vec<crate::Tokenized>,
) -> Result<(), VaultError> {
    crate::tokenize_value(token_key, detectors, value, found);
    *value = seal_field(vault, tenant, subject, aad, value, now)?;
    Ok(())
}
