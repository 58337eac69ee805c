//! PII tokenization: every detected value in the strings of a JSON value is replaced by a stable
//! per-tenant token `tok_<type>_<id>`, where `id` is the first 16 bytes (hex) of
//! HMAC-SHA256(tenant token key, type ‖ 0 ‖ value): the same value gives the same token within a
//! tenant (so searching by token works) and unrelated tokens across tenants. The caller keeps
//! the returned `(token, value)` pairs in the tenant's encrypted token vault for reveals.

use crate::detect::{Detectors, detect};
use crate::keys::TokenKey;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// A value taken out of the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    pub token: String,
    pub label: String,
    pub value: String,
}

/// The token of `value` of type `label` for a tenant's token key.
pub fn token_for(key: &TokenKey, label: &str, value: &str) -> String {
    // HMAC takes keys of any length; 32 bytes never fails.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key.0) {
        Ok(m) => m,
        Err(_) => return format!("tok_{label}_invalid"),
    };
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("tok_{label}_{}", hex::encode(&tag[..16]))
}

/// Replaces detected values in one string.
pub fn tokenize_str(key: &TokenKey, d: &Detectors, s: &str, out: &mut Vec<Tokenized>) -> String {
    let matches = detect(s, d);
    if matches.is_empty() {
        return s.to_owned();
    }
    let mut r = String::with_capacity(s.len());
    let mut at = 0;
    for m in matches {
        r.push_str(&s[at..m.start]);
        let value = &s[m.start..m.end];
        let token = token_for(key, &m.label, value);
        r.push_str(&token);
        out.push(Tokenized {
            token,
            label: m.label,
            value: value.to_owned(),
        });
        at = m.end;
    }
    r.push_str(&s[at..]);
    r
}

/// Tokenizes every string inside a JSON value (object keys are left alone).
pub fn tokenize_value(key: &TokenKey, d: &Detectors, v: &mut Value, out: &mut Vec<Tokenized>) {
    match v {
        Value::String(s) => {
            let t = tokenize_str(key, d, s, out);
            if t != *s {
                *s = t;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| tokenize_value(key, d, x, out)),
        Value::Object(m) => m.values_mut().for_each(|x| tokenize_value(key, d, x, out)),
        _ => {}
    }
}

/// The tokens (`tok_<type>_<32 hex>`) that occur in a text, each once, in order of first
/// occurrence.
pub fn find_tokens(text: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| regex::Regex::new(r"tok_[a-z0-9_]{1,32}_[0-9a-f]{32}").ok())
        .as_ref()
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for m in re.find_iter(text) {
        // A token never continues into more word characters.
        let next = text[m.end()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if !out.iter().any(|t| t == m.as_str()) {
            out.push(m.as_str().to_owned());
        }
    }
    out
}
