//! C2SP signed notes (signed-note v1.0.0), tlog checkpoints (tlog-checkpoint v1.0.0) and Ed25519
//! witness cosignatures (tlog-cosignature v1.0.1), with Ed25519 keys.
//!
//! Pure: no I/O and no randomness — keys are made from 32-byte seeds the caller supplies
//! (the ledger draws them from the OS). It does not fetch keys, talk to witnesses or store
//! anything; it parses, signs and verifies bytes. Formats: <https://c2sp.org/signed-note>,
//! <https://c2sp.org/tlog-checkpoint>, <https://c2sp.org/tlog-cosignature>.
//!
//! ```
//! use agentrail_note::{Checkpoint, Signer, open_checkpoint};
//! let signer = Signer::from_seed("example.com/log", [7u8; 32]).unwrap();
//! let cp = Checkpoint { origin: "example.com/log".into(), size: 0,
//!                       root: agentrail_note::EMPTY_ROOT, extensions: vec![] };
//! let signed = cp.sign(&signer);
//! let (opened, _) = open_checkpoint(signed.as_bytes(), &signer.verifier(), &[]).unwrap();
//! assert_eq!(opened, cp);
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod checkpoint;
mod keys;
mod proof;
mod signed;

pub use checkpoint::{Checkpoint, CheckpointError, EMPTY_ROOT, open_checkpoint};
pub use keys::{Cosigner, KeyError, SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519, Signer, Verifier};
pub use proof::{TlogProof, TlogProofError};
pub use signed::{MAX_SIGNATURES, Note, NoteError, NoteSignature, open};
