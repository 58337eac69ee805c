//! Event hashing: `hash = SHA-256(canonical bytes of the stored event without its `hash` field)`,
//! canonical bytes being RFC 8785. The Merkle leaf hash of the same bytes (RFC 6962 §2.1,
//! `SHA-256(0x00 ‖ bytes)`) is `merkle::leaf_hash`.

use crate::json::{CanonicalError, to_canonical_vec};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The canonical bytes of a stored event: RFC 8785 of the object without its `hash` field.
pub fn canonical_bytes(stored: &Map<String, Value>) -> Result<Vec<u8>, CanonicalError> {
    if stored.contains_key("hash") {
        let mut without = stored.clone();
        without.remove("hash");
        to_canonical_vec(&Value::Object(without))
    } else {
        to_canonical_vec(&Value::Object(stored.clone()))
    }
}

/// The event hash of canonical bytes.
pub fn event_hash(canonical: &[u8]) -> Hash {
    sha256(canonical)
}

/// Lowercase hex of a hash, the form used in JSON (`prev_hash`, `hash`, `caused_by[].hash`).
pub fn to_hex(hash: &Hash) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in hash {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xF) as usize] as char);
    }
    s
}

/// Parses 64 lowercase hex digits.
pub fn from_hex(s: &str) -> Option<Hash> {
    /// Nibble value of each byte; 0xFF for anything but 0-9 a-f.
    const NIBBLE: [u8; 256] = {
        let mut t = [0xFFu8; 256];
        let mut c = 0;
        while c < 10 {
            t[b'0' as usize + c] = c as u8;
            c += 1;
        }
        let mut c = 0;
        while c < 6 {
            t[b'a' as usize + c] = 10 + c as u8;
            c += 1;
        }
        t
    };
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (h, l) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= h | l;
        *o = (h << 4) | (l & 0xF);
    }
    // Any invalid byte set the high bits of `bad`.
    (bad & 0xF0 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_excludes_the_hash_field_and_matches_the_reference() {
        // Reference: the rfc8785 Python package (https://github.com/trailofbits/rfc8785.py),
        // rfc8785.dumps({"tenant":"a","event":"login","n":1.0,"ts":...}), and SHA-256(0x00 ‖ it).
        let v: Value = serde_json::from_str(
            r#"{"tenant":"a","event":"login","n":1.0,"ts":"2024-01-01T00:00:00Z","hash":"x"}"#,
        )
        .unwrap();
        let bytes = canonical_bytes(v.as_object().unwrap()).unwrap();
        assert_eq!(
            bytes,
            br#"{"event":"login","n":1,"tenant":"a","ts":"2024-01-01T00:00:00Z"}"#
        );
        let mut leaf = vec![0u8];
        leaf.extend_from_slice(&bytes);
        assert_eq!(
            to_hex(&sha256(&leaf)),
            "652776d855adf3e4132cf385b7aabccce6c43cae492efad6df3ae0b57add5c15"
        );
        let h = event_hash(&bytes);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("ABCD"), None);
        assert_eq!(from_hex(&"G".repeat(64)), None);
    }
}
