//! Ed25519 note keys: signers, verifier-key strings (`name+hex8+base64`) and the Go private-key
//! string (`PRIVATE+KEY+name+hex8+base64`), plus cosignature/v1 witness keys.

use crate::signed::NoteSignature;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// Signature type byte of a plain Ed25519 note signature (signed-note §"Signature types").
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of an Ed25519 timestamped witness cosignature (tlog-cosignature v1).
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// A malformed key string or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key name {0:?} is invalid: it must be non-empty with no spaces and no '+'")]
    BadName(String),
    #[error("verifier key {0:?} is not of the form <name>+<8 hex digits>+<base64 key>")]
    BadVerifierKeyFormat(String),
    #[error("verifier key {key:?}: {reason}")]
    BadVerifierKey { key: String, reason: String },
    #[error("private key is not of the form PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>")]
    BadPrivateKeyFormat,
    #[error("private key: {0}")]
    BadPrivateKey(String),
}

/// signed-note: the key name is non-empty and has no Unicode spaces and no '+'.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Key ID = first 4 bytes (big-endian u32) of SHA-256(name ‖ 0x0A ‖ type ‖ public key).
pub(crate) fn key_id(name: &str, sig_type: u8, public: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public);
    let d: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A log's signing key: signs note texts with plain Ed25519 (type 0x01).
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Signer({}+{:08x})", self.name, self.key_id)
    }
}

impl Signer {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::BadName(name.to_owned()));
        }
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, SIG_TYPE_ED25519, key.verifying_key().as_bytes());
        Ok(Signer {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Parses Go's `PRIVATE+KEY+<name>+<hex8>+<base64(0x01 ‖ seed)>` and checks the key id.
    pub fn from_private_key_string(s: &str) -> Result<Signer, KeyError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::BadPrivateKeyFormat)?;
        let (name, id, b64) = split_key(rest).ok_or(KeyError::BadPrivateKeyFormat)?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| KeyError::BadPrivateKey(format!("base64: {e}")))?;
        let [SIG_TYPE_ED25519, seed @ ..] = bytes.as_slice() else {
            return Err(KeyError::BadPrivateKey(
                "not an Ed25519 (type 0x01) key".into(),
            ));
        };
        let seed: [u8; 32] = seed.try_into().map_err(|_| {
            KeyError::BadPrivateKey(format!("seed has {} bytes, not 32", seed.len()))
        })?;
        let signer = Signer::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(KeyError::BadPrivateKey(format!(
                "key id {id:08x} does not match the key ({:08x})",
                signer.key_id
            )));
        }
        Ok(signer)
    }

    /// Go's private-key string. It holds the secret: write it only to protected files.
    pub fn to_private_key_string(&self) -> String {
        let mut bytes = vec![SIG_TYPE_ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            sig_type: SIG_TYPE_ED25519,
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note text (which must end in '\n'; [`crate::Note::new`] checks that).
    pub fn sign(&self, text: &str) -> NoteSignature {
        let sig = self.key.sign(text.as_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            sig: sig.to_bytes().to_vec(),
        }
    }

    /// Signs arbitrary bytes with the same key (for records that are not notes, such as export
    /// manifests); verify with [`Verifier::verify_bytes`].
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// A witness's key: makes timestamped cosignature/v1 lines over checkpoints.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({}+{:08x})", self.name, self.key_id)
    }
}

/// tlog-cosignature v1: the signed message for a checkpoint text at a timestamp.
pub(crate) fn cosignature_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

impl Cosigner {
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Cosigner, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::BadName(name.to_owned()));
        }
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(
            name,
            SIG_TYPE_COSIGNATURE_V1,
            key.verifying_key().as_bytes(),
        );
        Ok(Cosigner {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            sig_type: SIG_TYPE_COSIGNATURE_V1,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns a checkpoint text at `timestamp` (seconds since the Unix epoch).
    pub fn cosign(&self, text: &str, timestamp: u64) -> NoteSignature {
        let sig = self.key.sign(&cosignature_message(timestamp, text));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            sig: bytes,
        }
    }
}

/// A public key that checks note signatures: Ed25519 (0x01) or cosignature/v1 (0x04).
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    sig_type: u8,
    key: VerifyingKey,
}

impl Verifier {
    /// The Ed25519 (type 0x01) verifier of a raw 32-byte public key named `name` (a key held
    /// elsewhere, such as in a PKCS#11 token).
    pub fn ed25519(name: &str, public: [u8; 32]) -> Result<Verifier, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::BadName(name.to_owned()));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|e| KeyError::BadVerifierKey {
            key: name.to_owned(),
            reason: format!("not an Ed25519 public key: {e}"),
        })?;
        Ok(Verifier {
            name: name.to_owned(),
            key_id: key_id(name, SIG_TYPE_ED25519, &public),
            sig_type: SIG_TYPE_ED25519,
            key,
        })
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({self})")
    }
}

/// Splits `name+hex8+base64` on the first two '+' (base64 may itself contain '+').
fn split_key(s: &str) -> Option<(&str, u32, &str)> {
    let (name, rest) = s.split_once('+')?;
    let (hex, b64) = rest.split_once('+')?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((name, u32::from_str_radix(hex, 16).ok()?, b64))
}

impl std::str::FromStr for Verifier {
    type Err = KeyError;

    /// Parses `<name>+<hex8 key id>+<base64(type ‖ 32-byte key)>` and checks the key id.
    fn from_str(s: &str) -> Result<Verifier, KeyError> {
        let s = s.trim();
        let bad = |reason: String| KeyError::BadVerifierKey {
            key: s.to_owned(),
            reason,
        };
        let (name, id, b64) =
            split_key(s).ok_or_else(|| KeyError::BadVerifierKeyFormat(s.to_owned()))?;
        if !valid_name(name) {
            return Err(KeyError::BadName(name.to_owned()));
        }
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("base64: {e}")))?;
        let Some((&sig_type, public)) = bytes.split_first() else {
            return Err(bad("empty key".into()));
        };
        if sig_type != SIG_TYPE_ED25519 && sig_type != SIG_TYPE_COSIGNATURE_V1 {
            return Err(bad(format!("unsupported signature type 0x{sig_type:02x}")));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad(format!("Ed25519 key has {} bytes, not 32", public.len())))?;
        let key =
            VerifyingKey::from_bytes(&public).map_err(|e| bad(format!("Ed25519 key: {e}")))?;
        let computed = key_id(name, sig_type, &public);
        if computed != id {
            return Err(bad(format!(
                "key id {id:08x} does not match the key ({computed:08x})"
            )));
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: id,
            sig_type,
            key,
        })
    }
}

impl fmt::Display for Verifier {
    /// The verifier-key string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![self.sig_type];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }
}

impl Verifier {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn sig_type(&self) -> u8 {
        self.sig_type
    }

    /// Whether this key is the one a signature line names.
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        self.name == sig.name && self.key_id == sig.key_id
    }

    /// Checks a signature over a note text. For cosignatures, returns the timestamp.
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> Result<Option<u64>, String> {
        match self.sig_type {
            SIG_TYPE_ED25519 => {
                let bytes: [u8; 64] = sig.sig.as_slice().try_into().map_err(|_| {
                    format!("Ed25519 signature has {} bytes, not 64", sig.sig.len())
                })?;
                self.key
                    .verify_strict(text.as_bytes(), &Signature::from_bytes(&bytes))
                    .map(|()| None)
                    .map_err(|_| "Ed25519 signature does not verify".to_owned())
            }
            _ => {
                let bytes: [u8; 72] =
                    sig.sig.as_slice().try_into().map_err(|_| {
                        format!("cosignature has {} bytes, not 8 + 64", sig.sig.len())
                    })?;
                let (ts, s) = bytes.split_at(8);
                let mut ts_bytes = [0u8; 8];
                ts_bytes.copy_from_slice(ts);
                let timestamp = u64::from_be_bytes(ts_bytes);
                let mut sig_bytes = [0u8; 64];
                sig_bytes.copy_from_slice(s);
                self.key
                    .verify_strict(
                        &cosignature_message(timestamp, text),
                        &Signature::from_bytes(&sig_bytes),
                    )
                    .map(|()| Some(timestamp))
                    .map_err(|_| "cosignature does not verify".to_owned())
            }
        }
    }

    /// Checks an Ed25519 signature made by [`Signer::sign_bytes`].
    pub fn verify_bytes(&self, message: &[u8], sig: &[u8; 64]) -> bool {
        self.sig_type == SIG_TYPE_ED25519
            && self
                .key
                .verify_strict(message, &Signature::from_bytes(sig))
                .is_ok()
    }
}
