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

/// The keyed digest of an event's submitted content (the canonical bytes of what its emitter
/// sent, before sealing or tokenization), which idempotency compares: 32 hex digits, the first
/// 16 bytes of HMAC-SHA256(k, tenant ‖ 0 ‖ content) under k = HMAC-SHA256(token key, 0 ‖
/// "agentrail-content-digest/v1"). The token key is the tenant's one key that neither a data-key
/// rotation nor a subject's erasure changes, so an identical re-send still matches; the derived
/// key (its input starts with a 0 byte, which no token label does) keeps digests and tokens
/// apart. Like a token, a digest lets only a holder of the key confirm a guessed content.
pub fn content_digest(key: &TokenKey, tenant: &str, content: &[u8]) -> String {
    ContentDigester::new(key, tenant).digest(content)
}

/// [`content_digest`] for many events of one tenant: the key derivation and the MAC's key and
/// tenant prefix are done once (they were a third of the digest's cost per event).
#[derive(Clone)]
pub struct ContentDigester {
    /// HMAC-SHA256 under the derived key, fed `tenant ‖ 0`.
    prefixed: Hmac<Sha256>,
}

impl std::fmt::Debug for ContentDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentDigester(..)")
    }
}

impl ContentDigester {
    pub fn new(key: &TokenKey, tenant: &str) -> ContentDigester {
        let mut derive = hmac_256(&key.0);
        derive.update(b"\0agentrail-content-digest/v1");
        let derived: [u8; 32] = derive.finalize().into_bytes().into();
        let mut prefixed = hmac_256(&derived);
        prefixed.update(tenant.as_bytes());
        prefixed.update(&[0]);
        ContentDigester { prefixed }
    }

    /// The digest of `content` (canonical bytes).
    pub fn digest(&self, content: &[u8]) -> String {
        let mut mac = self.prefixed.clone();
        mac.update(content);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// HMAC-SHA256 under a 32-byte key, infallibly: the key zero-padded to the 64-byte block is
/// the same key to HMAC (RFC 2104 §2).
fn hmac_256(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as KeyInit>::new(&block.into())
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

/// Where tokens (`tok_<type>_<32 hex>`) occur in a text, in order.
fn token_spans(text: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE
        .get_or_init(|| regex::Regex::new(r"tok_[a-z0-9_]{1,32}_[0-9a-f]{32}").ok())
        .as_ref();
    re.into_iter()
        .flat_map(move |re| re.find_iter(text))
        .filter(move |m| {
            // A token never continues into more word characters.
            let next = text[m.end()..].chars().next();
            !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|m| m.range())
}

/// The tokens (`tok_<type>_<32 hex>`) that occur in a text, each once, in order of first
/// occurrence.
pub fn find_tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in token_spans(text) {
        let t = &text[r];
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    out
}

/// The text with every token replaced by its value (`value_of`): the inverse of
/// [`tokenize_str`]. `None` if some token has no value.
pub fn detokenize_str<'v>(
    text: &str,
    value_of: impl Fn(&str) -> Option<&'v str>,
) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in token_spans(text) {
        out.push_str(&text[at..r.start]);
        out.push_str(value_of(&text[r.clone()])?);
        at = r.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn content_digest_is_keyed_per_tenant_and_apart_from_tokens() {
        let k = TokenKey([7; 32]);
        let d = content_digest(&k, "acme", b"{\"a\":1}");
        assert_eq!(d.len(), 32);
        assert!(
            d.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(d, content_digest(&k, "acme", b"{\"a\":1}"));
        assert_ne!(d, content_digest(&k, "acme", b"{\"a\":2}"));
        assert_ne!(d, content_digest(&k, "globex", b"{\"a\":1}"));
        assert_ne!(d, content_digest(&TokenKey([8; 32]), "acme", b"{\"a\":1}"));
        // The padded-key HMAC is HMAC under the key itself.
        let mut a = hmac_256(&[7; 32]);
        a.update(b"x");
        let mut b = Hmac::<Sha256>::new_from_slice(&[7; 32]).unwrap();
        b.update(b"x");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }

    #[test]
    fn detokenizing_gives_back_what_was_tokenized() {
        let k = TokenKey([7; 32]);
        let d = Detectors::default();
        let text = "mail jane@example.com, again jane@example.com; card 4111 1111 1111 1111.";
        let mut found = Vec::new();
        let t = tokenize_str(&k, &d, text, &mut found);
        assert_eq!(found.len(), 3, "{t}");
        let value = |tok: &str| {
            found
                .iter()
                .find(|f| f.token == tok)
                .map(|f| f.value.as_str())
        };
        assert_eq!(detokenize_str(&t, value).as_deref(), Some(text));
        // A token without a value cannot be given back; text without tokens is itself.
        assert_eq!(detokenize_str(&t, |_| None), None);
        assert_eq!(detokenize_str("tok_x", |_| None).as_deref(), Some("tok_x"));
    }
}
