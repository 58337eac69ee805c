//! Errors, one small enum per operation. Every message names the tenant and, for damage, the
//! file, byte offset and seq, so an operator can go straight to the bytes.

use crate::stored::PrepareError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where a tenant's stored data does not verify. `file` is relative to the tenant directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub tenant: String,
    pub file: String,
    pub offset: Option<u64>,
    pub seq: Option<u64>,
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant {}: {}", self.tenant, self.file)?;
        if let Some(o) = self.offset {
            write!(f, " at offset {o}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for Damage {}

/// Why a tenant could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("tenant {0} does not exist")]
    NotFound(String),
    #[error("refusing tenant: {0}")]
    Damaged(Damage),
    #[error("tenant {tenant}: cannot {op} {path}: {source}")]
    Io {
        tenant: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Why the ledger itself could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LedgerOpenError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("data directory {0} is in use by another agentrail process")]
    Locked(PathBuf),
    #[error("{path}: {reason}")]
    BadSystemFile { path: PathBuf, reason: String },
    #[error(
        "origin prefix {given:?} differs from {stored:?}, the one this data directory was created with"
    )]
    OriginMismatch { given: String, stored: String },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Why an append was refused. Nothing of a refused batch is written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("event {index}: {reason}")]
    Invalid { index: usize, reason: PrepareError },
    #[error(
        "event {index}: event_id {event_id:?} was already used (seq {seq}) for different content"
    )]
    Conflict {
        index: usize,
        event_id: String,
        seq: u64,
    },
    #[error("event {index}: stored form is {len} bytes, above the limit of {max}")]
    TooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("tenant {tenant}: writer is poisoned until the ledger is reopened: {reason}")]
    Poisoned { tenant: String, reason: String },
    #[error("tenant {tenant}: cannot {op}: {source}")]
    Io {
        tenant: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("tenant {tenant}: {reason}")]
    Damaged { tenant: String, reason: String },
    #[error("the ledger is closed")]
    Closed,
}

impl AppendError {
    /// The same refusal with its event index mapped through `f`: for a caller that appended a
    /// part of its batch and reports positions in the whole.
    pub fn reindexed(self, f: impl Fn(usize) -> usize) -> AppendError {
        match self {
            AppendError::Invalid { index, reason } => AppendError::Invalid {
                index: f(index),
                reason,
            },
            AppendError::Conflict {
                index,
                event_id,
                seq,
            } => AppendError::Conflict {
                index: f(index),
                event_id,
                seq,
            },
            AppendError::TooLarge { index, len, max } => AppendError::TooLarge {
                index: f(index),
                len,
                max,
            },
            other => other,
        }
    }
}

/// Why a read or a proof failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("tenant {tenant}: seq {seq} is not below the tree size {size}")]
    OutOfRange { tenant: String, seq: u64, size: u64 },
    #[error("tenant {tenant}: no event with event_id {event_id:?}")]
    UnknownEvent { tenant: String, event_id: String },
    #[error("tenant {tenant}: cannot prove from size {from} to size {to} (tree size {size})")]
    BadSizes {
        tenant: String,
        from: u64,
        to: u64,
        size: u64,
    },
    #[error("tenant {tenant}: cannot read {path}: {source}")]
    Io {
        tenant: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Damaged(Damage),
    #[error("the ledger is closed")]
    Closed,
}

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("tenant {tenant}: cannot {op}: {source}")]
    Io {
        tenant: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("tenant {tenant}: writer is poisoned: {reason}")]
    Poisoned { tenant: String, reason: String },
    /// The tree does not hold the pinned checkpoint: signing would re-sign history.
    #[error("tenant {tenant}: refusing to sign a checkpoint: {reason}")]
    Inconsistent { tenant: String, reason: String },
    /// The signer did not sign: unreachable, or it refused (a tree inconsistent with one it
    /// signed). Nothing was written.
    #[error("tenant {tenant}: no signature: {reason}")]
    Signer { tenant: String, reason: String },
}
