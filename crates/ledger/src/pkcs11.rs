//! The log key in a PKCS#11 token (an HSM; SoftHSM2 in the tests): an Ed25519 private key
//! (`CKK_EC_EDWARDS`) that never leaves the token, used through the `cryptoki` crate with
//! `CKM_EDDSA`. Named by an RFC 7512 URI:
//! `pkcs11:token=<label>;object=<key label>?module-path=<.so>&pin-source=file:<path>` (or
//! `pin-value=<pin>`; else the `AGENTRAIL_PKCS11_PIN` environment variable).
//!
//! The token keeps no record of what it signed, so it protects the key from being copied, not
//! from being used by whoever runs the server: `agentrail signer --key pkcs11:…` puts the
//! token behind the signer's consistency checks too.

use crate::signer::{LogSigner, Prove};
use agentrail_note::{NoteSignature, Verifier};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The parts of a `pkcs11:` URI this signer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: String,
    pub object: String,
    pub module: String,
    pin: Option<String>,
}

/// RFC 7512 percent-decoding of one attribute value.
fn unescape(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v.get(i + 1..i + 3).ok_or("a '%' without two hex digits")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape %{hex}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once unescaped".into())
}

impl Pkcs11Uri {
    /// Parses the URI (hand-written: RFC 7512's grammar is a few `k=v` lists; no crate in the
    /// ecosystem is maintained for it).
    pub fn parse(uri: &str) -> Result<Pkcs11Uri, String> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or("a PKCS#11 URI starts with \"pkcs11:\"")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut attrs = HashMap::new();
        for part in path
            .split(';')
            .chain(query.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not <attribute>=<value>"))?;
            attrs.insert(k.to_owned(), unescape(v)?);
        }
        let need = |k: &str| {
            attrs
                .get(k)
                .cloned()
                .ok_or_else(|| format!("the PKCS#11 URI needs {k}=…"))
        };
        let pin = match (attrs.get("pin-value"), attrs.get("pin-source")) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(src)) => {
                let path = src.strip_prefix("file:").unwrap_or(src);
                let pin = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading the PIN from {path}: {e}"))?;
                Some(pin.trim_end_matches(['\n', '\r']).to_owned())
            }
            (None, None) => std::env::var("AGENTRAIL_PKCS11_PIN").ok(),
        };
        Ok(Pkcs11Uri {
            token: need("token")?,
            object: need("object")?,
            module: need("module-path")?,
            pin,
        })
    }
}

/// One initialised context per module for the life of the process: PKCS#11 allows one
/// `C_Initialize` per process, and finalizing on one signer's drop would end every other
/// signer's sessions on that module.
fn module_context(module: &str) -> Result<Pkcs11, cryptoki::error::Error> {
    static MODULES: OnceLock<Mutex<HashMap<String, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => {}
        Err(e) => return Err(e),
    }
    modules.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

/// Signs with a token's key.
pub struct Pkcs11Signer {
    session: Mutex<Session>,
    key: ObjectHandle,
    verifier: Verifier,
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Signer({})", self.verifier)
    }
}

impl Pkcs11Signer {
    /// Opens the token's key pair `object` in token `token`, logged in with the PIN; the
    /// signatures are named `name` (the data directory's origin prefix).
    pub fn open(uri: &str, name: &str) -> Result<Pkcs11Signer, String> {
        let u = Pkcs11Uri::parse(uri)?;
        let module = u.module.clone();
        let e = |what: &str| {
            let (what, module) = (what.to_owned(), module.clone());
            move |e: cryptoki::error::Error| format!("PKCS#11 ({module}): {what}: {e}")
        };
        let ctx = module_context(&u.module).map_err(e("loading the module"))?;
        let mut slot = None;
        for s in ctx.get_slots_with_token().map_err(e("listing slots"))? {
            // A slot whose token cannot be read (removed meanwhile) is not the one.
            let Ok(info) = ctx.get_token_info(s) else {
                continue;
            };
            if info.label().trim_end() == u.token {
                slot = Some(s);
            }
        }
        let slot =
            slot.ok_or_else(|| format!("no PKCS#11 token labelled {:?} in {}", u.token, u.module))?;
        let session = ctx.open_ro_session(slot).map_err(e("opening a session"))?;
        let pin = u
            .pin
            .clone()
            .ok_or("no PIN: give pin-source= or pin-value= in the URI, or AGENTRAIL_PKCS11_PIN")?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.into())))
            .map_err(e("logging in"))?;
        let find = |class: ObjectClass| {
            session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                    Attribute::Label(u.object.as_bytes().to_vec()),
                ])
                .map_err(e("finding the key"))
        };
        let key = *find(ObjectClass::PRIVATE_KEY)?.first().ok_or_else(|| {
            format!(
                "no Ed25519 private key labelled {:?} in token {:?}",
                u.object, u.token
            )
        })?;
        let public = *find(ObjectClass::PUBLIC_KEY)?.first().ok_or_else(|| {
            format!(
                "no Ed25519 public key labelled {:?} in token {:?}",
                u.object, u.token
            )
        })?;
        let attrs = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(e("reading the public key"))?;
        let point = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or("the public key has no CKA_EC_POINT")?;
        // CKA_EC_POINT of an Edwards key: the 32 bytes, DER-wrapped as an OCTET STRING by most
        // tokens (SoftHSM2 among them), raw by some.
        let raw: [u8; 32] = match point.as_slice() {
            [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
            p if p.len() == 32 => p.try_into().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "CKA_EC_POINT of {} bytes is not an Ed25519 key",
                point.len()
            )
        })?;
        let verifier = Verifier::ed25519(name, raw).map_err(|e| e.to_string())?;
        let signer = Pkcs11Signer {
            session: Mutex::new(session),
            key,
            verifier,
            _ctx: ctx,
        };
        // A key that cannot sign, or signs with another key, is refused now, not at the first
        // checkpoint.
        let probe = "agentrail/pkcs11-probe\n";
        let sig = signer.raw_sign(probe)?;
        signer.verifier.verify(probe, &sig).map_err(|e| {
            format!("the token's signature does not verify with its public key: {e}")
        })?;
        Ok(signer)
    }

    fn raw_sign(&self, text: &str) -> Result<NoteSignature, String> {
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let sig = session
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.key,
                text.as_bytes(),
            )
            .map_err(|e| format!("PKCS#11 signing: {e}"))?;
        Ok(NoteSignature {
            name: self.verifier.name().to_owned(),
            key_id: self.verifier.key_id(),
            sig,
        })
    }
}

impl LogSigner for Pkcs11Signer {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    fn sign_checkpoint(&self, text: &str, _: Prove<'_>) -> Result<NoteSignature, String> {
        self.raw_sign(text)
    }
    fn sign_statement(&self, text: &str) -> Result<NoteSignature, String> {
        self.raw_sign(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_token_object_module_and_pin() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=agent%20rail;object=log-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=5678",
        )
        .unwrap();
        assert_eq!(u.token, "agent rail");
        assert_eq!(u.object, "log-key");
        assert_eq!(u.module, "/usr/lib/softhsm/libsofthsm2.so");
        assert_eq!(u.pin.as_deref(), Some("5678"));
        let e = Pkcs11Uri::parse("pkcs11:object=k?module-path=/m.so").unwrap_err();
        assert!(e.contains("token="), "{e}");
        assert!(Pkcs11Uri::parse("pkcs12:token=a").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=%zz;object=k?module-path=m").is_err());
    }
}
