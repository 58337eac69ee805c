//! tlog-checkpoint v1.0.0: origin, tree size, root hash, optional extension lines.

use crate::keys::{SIG_TYPE_ED25519, Signer, Verifier};
use crate::signed::{Note, NoteError, open};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The root of the empty tree (SHA-256 of ""), which a size-0 checkpoint must carry.
pub const EMPTY_ROOT: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// A checkpoint's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
    /// Extension lines after the root (opaque, non-empty).
    pub extensions: Vec<String>,
}

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("checkpoint needs at least 3 lines (origin, size, root), found {0}")]
    TooFewLines(usize),
    #[error("checkpoint line {line} is empty")]
    EmptyLine { line: usize },
    #[error("checkpoint tree size {0:?} is not a decimal number without leading zeros")]
    BadSize(String),
    #[error("checkpoint root {0:?} is not the base64 of 32 bytes")]
    BadRoot(String),
    #[error("checkpoint of size 0 must have the empty-tree root")]
    BadEmptyRoot,
    #[error("checkpoint is not signed by the log key {0}")]
    NotSignedByLog(String),
    #[error("the log key {0} is not an Ed25519 (type 0x01) key")]
    LogKeyType(String),
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n[extensions\n]`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint text (the note text, without signatures).
    pub fn parse_text(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines(lines.len()));
        }
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyLine { line: i + 1 });
        }
        // Origins SHOULD be schema-less URLs without spaces, but real logs (sum.golang.org's
        // "go.sum database tree") have spaces: only non-emptiness is required.
        let origin = lines[0];
        let size_s = lines[1];
        let canonical_size = size_s.bytes().all(|b| b.is_ascii_digit())
            && !(size_s.len() > 1 && size_s.starts_with('0'));
        let size: u64 = match size_s.parse() {
            Ok(n) if canonical_size => n,
            _ => return Err(CheckpointError::BadSize(size_s.to_owned())),
        };
        let root_s = lines[2];
        let root: [u8; 32] = STANDARD
            .decode(root_s)
            .ok()
            .and_then(|b| b.try_into().ok())
            .filter(|_| root_s.len() == 44)
            .ok_or_else(|| CheckpointError::BadRoot(root_s.to_owned()))?;
        if size == 0 && root != EMPTY_ROOT {
            return Err(CheckpointError::BadEmptyRoot);
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: lines[3..].iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Signs the checkpoint as a note with the log's key.
    pub fn sign(&self, signer: &Signer) -> String {
        let text = self.to_text();
        let sig = signer.sign(&text);
        Note {
            text,
            signatures: vec![sig],
        }
        .to_text()
    }
}

/// The witness cosignatures [`open_checkpoint`] verified: witness name and timestamp.
pub type Cosignatures = Vec<(String, u64)>;

/// Parses a signed checkpoint, requires a valid signature by `log`, and checks every signature by
/// a known `witnesses` key (a known signature that fails rejects the whole note; unknown
/// signatures are ignored).
pub fn open_checkpoint(
    bytes: &[u8],
    log: &Verifier,
    witnesses: &[Verifier],
) -> Result<(Checkpoint, Cosignatures), CheckpointError> {
    if log.sig_type() != SIG_TYPE_ED25519 {
        return Err(CheckpointError::LogKeyType(log.to_string()));
    }
    let mut known: Vec<&Verifier> = vec![log];
    known.extend(witnesses.iter());
    let (note, verified) = match open(bytes, &known) {
        Ok(ok) => ok,
        Err(NoteError::NoTrustedSignature) => {
            return Err(CheckpointError::NotSignedByLog(log.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    if !note.signatures.iter().any(|s| log.matches(s)) {
        return Err(CheckpointError::NotSignedByLog(log.to_string()));
    }
    let checkpoint = Checkpoint::parse_text(&note.text)?;
    let cosignatures = verified
        .into_iter()
        .filter_map(|(name, ts)| ts.map(|t| (name, t)))
        .collect();
    Ok((checkpoint, cosignatures))
}
