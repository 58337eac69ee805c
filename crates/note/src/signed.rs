//! The signed-note byte format: text, a blank line, signature lines `— <name> <base64>`.

use crate::keys::{Verifier, valid_name};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// At most this many signature lines are read from one note (signed-note: accept at least 16,
/// apply a limit).
pub const MAX_SIGNATURES: usize = 100;

/// "— " : U+2014 EM DASH then a space, which starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// One signature line: key name, key id, and the signature bytes after the key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// `— <name> <base64(key id ‖ sig)>\n`
    pub fn to_line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(bytes))
    }
}

/// A parsed note: its text (ending in '\n') and its signature lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// Why a note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("note contains control character U+{code:04X} at byte {offset}")]
    ControlCharacter { code: u32, offset: usize },
    #[error("note text is empty or does not end in a newline")]
    MalformedText,
    #[error("note has no signatures (no blank line followed by signature lines)")]
    Unsigned,
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignature { line: usize, reason: String },
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("signature by {name} (key {key_id:08x}) is invalid: {reason}")]
    BadSignature {
        name: String,
        key_id: u32,
        reason: String,
    },
    #[error("note has no valid signature from a trusted key")]
    NoTrustedSignature,
}

impl Note {
    /// A note with no signatures yet; the text must be non-empty, end in '\n' and have no control
    /// characters other than '\n'.
    pub fn new(text: &str) -> Result<Note, NoteError> {
        check_text(text)?;
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parses the bytes of a signed note without checking any signature.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        for (offset, c) in s.char_indices() {
            if c != '\n' && (c.is_control()) {
                return Err(NoteError::ControlCharacter {
                    code: u32::from(c),
                    offset,
                });
            }
        }
        // The text ends at the LAST blank line; everything after it is signature lines.
        let split = s.rfind("\n\n").ok_or(NoteError::Unsigned)?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        check_text(text)?;
        if sigs.is_empty() {
            return Err(NoteError::Unsigned);
        }
        if !sigs.ends_with('\n') {
            return Err(NoteError::MalformedSignature {
                line: text.lines().count() + 2,
                reason: "the last signature line does not end in a newline".into(),
            });
        }
        let first_sig_line = text.lines().count() + 2;
        let mut signatures = Vec::new();
        for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            let malformed = |reason: &str| NoteError::MalformedSignature {
                line: first_sig_line + i,
                reason: reason.to_owned(),
            };
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| malformed("it does not start with \"— \" (U+2014, space)"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| malformed("expected \"— <name> <base64>\""))?;
            if !valid_name(name) {
                return Err(malformed("invalid key name"));
            }
            let bytes = STANDARD
                .decode(b64)
                .map_err(|e| malformed(&format!("base64: {e}")))?;
            if bytes.len() < 5 {
                return Err(malformed("signature is shorter than a key id and one byte"));
            }
            let key_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id,
                sig: bytes[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed-note bytes: text, blank line, one line per signature.
    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.to_line());
        }
        s
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::MalformedText);
    }
    if let Some((offset, c)) = text
        .char_indices()
        .find(|(_, c)| *c != '\n' && c.is_control())
    {
        return Err(NoteError::ControlCharacter {
            code: u32::from(c),
            offset,
        });
    }
    Ok(())
}

/// What [`open`] found: the note and, per verified signature, the key's name and (for witness
/// cosignatures) the timestamp.
pub type Verified = Vec<(String, Option<u64>)>;

/// Parses a note and checks its signatures against `known` keys (signed-note §Verifying):
/// unknown keys are ignored, a known key's signature must verify (else the whole note is
/// rejected), and at least one known signature must be present.
pub fn open(bytes: &[u8], known: &[&Verifier]) -> Result<(Note, Verified), NoteError> {
    let note = Note::parse(bytes)?;
    let mut verified = Vec::new();
    for sig in &note.signatures {
        let Some(key) = known.iter().find(|k| k.matches(sig)) else {
            continue;
        };
        match key.verify(&note.text, sig) {
            Ok(ts) => verified.push((sig.name.clone(), ts)),
            Err(reason) => {
                return Err(NoteError::BadSignature {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                    reason,
                });
            }
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok((note, verified))
}
