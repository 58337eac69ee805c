//! Keys and privacy (DESIGN.md §4): a master key wrapping per-tenant (versioned) and per-subject
//! data keys, field sealing with XChaCha20-Poly1305 bound to tenant, event id and field path,
//! PII/secret detectors, stable per-tenant tokens (HMAC-SHA256), and crypto-shredding.
//!
//! The server wires it into ingest (tokenize, then seal), reads (`view=decrypted`), the index
//! (`sealed_content`: the tokenized content it may hold for search) and erasure.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agentrail_vault::{Aad, Vault, seal_field, open_field};
//! let dir = tempfile::tempdir()?;
//! let vault = Vault::open(&agentrail_ledger::DataDir::new(dir.path()), None)?;
//! let acme = agentrail_event::TenantId::parse("acme")?;
//! let v = serde_json::json!({"messages": ["my card is 4111 1111 1111 1111"]});
//! let at = Aad::new("evt-1", "payload.prompt");
//! let now = jiff::Timestamp::now();
//! let sealed = seal_field(&vault, &acme, Some("cust-9"), at, &v, now)?;
//! assert_eq!(open_field(&vault, &acme, at, &sealed)?, v);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod detect;
pub mod keys;
pub mod seal;
pub mod token;

pub use detect::{Detectors, Kind, Match, detect};
pub use keys::{KeyRef, TokenKey, Vault, VaultError};
pub use seal::{
    Aad, is_sealed, open_field, open_sealed, protect_field, seal_field, sealed_content,
};
pub use token::{
    ContentDigester, Tokenized, content_digest, detokenize_str, find_tokens, token_for,
    tokenize_str, tokenize_value,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn vault() -> (tempfile::TempDir, Vault) {
        let d = tempfile::tempdir().unwrap();
        let v = Vault::open(&layout(d.path()), None).unwrap();
        (d, v)
    }

    fn layout(p: &std::path::Path) -> agentrail_ledger::DataDir {
        agentrail_ledger::DataDir::new(p)
    }

    /// A time `s` seconds after a fixed instant.
    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_764_115_200 + s).unwrap()
    }

    /// How the vault records a time.
    fn recorded(s: i64) -> String {
        agentrail_ledger::clock::format_timestamp(at(s))
    }

    fn tid(s: &str) -> agentrail_event::TenantId {
        agentrail_event::TenantId::parse(s).unwrap()
    }

    /// Seals `value` as field `path` of event `event` of tenant acme.
    fn seal(v: &Vault, subject: Option<&str>, event: &str, path: &str, value: &Value) -> Value {
        seal_field(
            v,
            &tid("acme"),
            subject,
            Aad::new(event, path),
            value,
            at(0),
        )
        .unwrap()
    }

    /// Opens field `path` of event `event` of tenant acme.
    fn open(v: &Vault, event: &str, path: &str, sealed: &Value) -> Result<Value, VaultError> {
        open_field(v, &tid("acme"), Aad::new(event, path), sealed)
    }

    #[test]
    fn master_key_file_is_private_and_reused() {
        let (d, v) = vault();
        use std::os::unix::fs::PermissionsExt;
        let p = d.path().join("system/master.key");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = seal(&v, None, "e1", "payload.output", &json!("x"));
        drop(v);
        let v = Vault::open(&layout(d.path()), None).unwrap();
        assert_eq!(
            open(&v, "e1", "payload.output", &sealed).unwrap(),
            json!("x")
        );
        // Another master key cannot unwrap the data keys.
        let other = Vault::open(&layout(d.path()), Some(&hex::encode([7u8; 32]))).unwrap();
        assert!(open(&other, "e1", "payload.output", &sealed).is_err());
    }

    #[test]
    fn tampered_or_moved_ciphertexts_do_not_open() {
        let (_d, v) = vault();
        let val = json!({"system": "be nice", "messages": ["hi"]});
        let sealed = seal(&v, Some("u1"), "e1", "payload.prompt", &val);
        assert!(is_sealed(&sealed));
        assert!(!sealed.to_string().contains("be nice"));
        // Moved to another event, another field, another tenant.
        for (t, e, p) in [
            ("acme", "e2", "payload.prompt"),
            ("acme", "e1", "payload.output"),
            ("beta", "e1", "payload.prompt"),
        ] {
            assert!(
                open_field(&v, &tid(t), Aad::new(e, p), &sealed).is_err(),
                "{t} {e} {p}"
            );
        }
        // A flipped ciphertext byte.
        let mut bad = sealed.clone();
        let ct = bad["$enc"]["ct"].as_str().unwrap().to_owned();
        let mut raw =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &ct).unwrap();
        raw[3] ^= 1;
        bad["$enc"]["ct"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            raw
        ));
        assert!(matches!(
            open(&v, "e1", "payload.prompt", &bad),
            Err(VaultError::Decrypt)
        ));
    }

    #[test]
    fn rotation_keeps_old_data_readable_and_shredding_erases_one_subject() {
        let (_d, v) = vault();
        let old = seal(&v, None, "e1", "payload.output", &json!("old"));
        let kid = v.rotate(&tid("acme"), at(2)).unwrap();
        assert_eq!(kid, "t:acme:v2");
        let new = seal(&v, None, "e2", "payload.output", &json!("new"));
        assert_eq!(new["$enc"]["kid"], json!("t:acme:v2"));
        assert_eq!(
            open(&v, "e1", "payload.output", &old).unwrap(),
            json!("old")
        );
        let a = seal(&v, Some("alice"), "e3", "payload.prompt", &json!("alice's"));
        let b = seal(&v, Some("bob"), "e4", "payload.prompt", &json!("bob's"));
        assert!(v.shred_subject(&tid("acme"), "alice", at(1)).unwrap());
        assert_eq!(
            open(&v, "e3", "payload.prompt", &a).unwrap(),
            json!({"$erased": {"reason": "crypto-shredded", "at": recorded(1)}})
        );
        assert_eq!(
            open(&v, "e4", "payload.prompt", &b).unwrap(),
            json!("bob's")
        );
        // New data for alice gets a new key; the old stays erased.
        seal(&v, Some("alice"), "e5", "payload.prompt", &json!("again"));
        assert!(
            open(&v, "e3", "payload.prompt", &a)
                .unwrap()
                .get("$erased")
                .is_some()
        );
        // Content under the tenant key, then the whole tenant shredded.
        let t1 = seal(&v, None, "e7", "payload.output", &json!("t"));
        v.shred_tenant(&tid("acme"), at(9)).unwrap();
        assert!(
            open(&v, "e4", "payload.prompt", &b)
                .unwrap()
                .get("$erased")
                .is_some()
        );
        assert_eq!(
            open(&v, "e7", "payload.output", &t1).unwrap(),
            json!({"$erased": {"reason": "crypto-shredded", "at": recorded(9)}})
        );
        // New content gets new key ids: the old content stays erased (not unreadable), also
        // after the vault is reopened.
        let t2 = seal(&v, None, "e6", "payload.output", &json!("new"));
        assert_ne!(t2["$enc"]["kid"], t1["$enc"]["kid"]);
        drop(v);
        let v = Vault::open(&layout(_d.path()), None).unwrap();
        assert_eq!(open(&v, "e6", "payload.output", &t2).unwrap(), json!("new"));
        assert_eq!(
            open(&v, "e7", "payload.output", &t1).unwrap()["$erased"]["at"],
            json!(recorded(9))
        );
        assert!(
            v.shredded_subjects(&tid("acme"))
                .unwrap()
                .contains(&"bob".to_owned())
        );
    }

    #[test]
    fn sealing_is_deterministic_per_event_field_and_content() {
        let (_d, v) = vault();
        let a = seal(&v, None, "e1", "payload.output", &json!("x"));
        let b = seal(&v, None, "e1", "payload.output", &json!("x"));
        let c = seal(&v, None, "e1", "payload.output", &json!("y"));
        let d = seal(&v, None, "e2", "payload.output", &json!("x"));
        assert_eq!(a, b, "a replay seals to the same bytes");
        assert_ne!(a["$enc"]["nonce"], c["$enc"]["nonce"]);
        assert_ne!(a["$enc"]["nonce"], d["$enc"]["nonce"]);
    }

    #[test]
    fn tokens_are_stable_per_tenant_and_differ_across_tenants() {
        let (_d, v) = vault();
        let ka = v.token_key(&tid("acme"), at(0)).unwrap();
        let kb = v.token_key(&tid("beta"), at(0)).unwrap();
        assert_eq!(ka, v.token_key(&tid("acme"), at(0)).unwrap());
        let d = Detectors::default();
        let mut out = Vec::new();
        let mut val = json!({"messages": ["mail jane@example.com, card 4111 1111 1111 1111", "again jane@example.com"]});
        tokenize_value(&ka, &d, &mut val, &mut out);
        let text = val.to_string();
        assert!(
            !text.contains("jane@example.com") && !text.contains("4111"),
            "{text}"
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].token, out[2].token, "same value, same token");
        assert!(out[0].token.starts_with("tok_email_") && out[1].token.starts_with("tok_card_"));
        assert_ne!(
            token_for(&ka, "email", "jane@example.com"),
            token_for(&kb, "email", "jane@example.com")
        );
    }

    #[test]
    fn sealed_content_holds_what_still_opens_and_tokens_are_found() {
        let (_d, v) = vault();
        let k = v.token_key(&tid("acme"), at(0)).unwrap();
        let mut found = Vec::new();
        let mut prompt = json!({"messages": ["write to jane@example.com about order 42"]});
        tokenize_value(&k, &Detectors::default(), &mut prompt, &mut found);
        let tok = found[0].token.clone();
        let ev = |id: &str, subject: Option<&str>| {
            json!({"event_id": id, "payload": {
                "prompt": seal(&v, subject, id, "payload.prompt", &prompt),
                "model": {"name": "m"},
            }})
        };
        let a = ev("e1", Some("alice"));
        let b = ev("e2", None);
        let content = sealed_content(&v, &tid("acme"), &a).unwrap();
        assert_eq!(content, json!({"payload.prompt": prompt}));
        assert_eq!(find_tokens(&content.to_string()), vec![tok.clone()]);
        assert!(!content.to_string().contains("jane@"));
        v.shred_subject(&tid("acme"), "alice", at(2)).unwrap();
        assert_eq!(sealed_content(&v, &tid("acme"), &a), None);
        assert!(sealed_content(&v, &tid("acme"), &b).is_some());
        // Opening in place shows the erasure.
        let mut shown = a.clone();
        assert_eq!(
            open_sealed(&v, &tid("acme"), "e1", "payload", &mut shown["payload"]),
            0
        );
        assert_eq!(
            shown["payload"]["prompt"]["$erased"]["at"],
            json!(recorded(2))
        );
        assert_eq!(shown["payload"]["model"]["name"], "m");
    }

    #[test]
    fn find_tokens_takes_whole_tokens_once() {
        let t = format!("tok_email_{}", "ab".repeat(16));
        let c = format!("tok_custom_id_{}", "0".repeat(32));
        let text = format!(
            "{t} and {c}, again {t}; not tok_email_{}x nor tok_email_12",
            "ab".repeat(16)
        );
        assert_eq!(find_tokens(&text), vec![t, c]);
    }

    #[test]
    fn generated_personal_data_is_what_the_detectors_find() {
        let profile = agentrail_testkit::Profile {
            pii_rate: 1.0,
            ..Default::default()
        };
        let g = agentrail_testkit::Generator::with_profile(7, "acme", 8, profile);
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        let mut prompts = 0;
        for ev in g.take(2000) {
            let Some(text) = ev["payload"]["prompt"]["messages"][0]["content"].as_str() else {
                continue;
            };
            prompts += 1;
            let found = detect(text, &Detectors::default());
            for m in &found {
                *kinds.entry(m.label.clone()).or_default() += 1;
            }
            let has_card = text.contains("my card is");
            assert_eq!(
                found.iter().filter(|m| m.label == "card").count(),
                usize::from(has_card),
                "{text}"
            );
        }
        assert_eq!(kinds["email"], prompts, "{kinds:?}");
        assert!(
            kinds["card"] > prompts / 8 && kinds["phone"] == kinds["card"],
            "{kinds:?}"
        );
    }
}
