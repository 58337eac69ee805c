//! Errors of the query store.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot {op}: {source}")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] agentrail_ledger::ReadError),
    #[error("cannot index seq {seq}: {reason}")]
    Apply { seq: u64, reason: String },
    #[error(
        "the index of tenant {tenant} holds {applied} events but the ledger only {ledger}: rebuild it with `agentrail reindex`"
    )]
    Ahead {
        tenant: String,
        applied: u64,
        ledger: u64,
    },
    #[error("invalid query: {0}")]
    BadQuery(String),
    /// A row names an event the ledger does not hold at its seq: the store was edited or
    /// damaged. Nothing from it is served.
    #[error(
        "the query store of tenant {tenant} does not match the ledger at seq {seq} (damaged or edited): nothing from it is served until `agentrail reindex --tenant {tenant}`"
    )]
    Diverged { tenant: String, seq: u64 },
    #[error("no event {0} in this tenant")]
    NotFound(String),
}

impl IndexError {
    pub(crate) fn sql(op: &'static str, source: rusqlite::Error) -> IndexError {
        IndexError::Sql { op, source }
    }

    /// Whether the index file itself is bad (not a database, damaged pages, a truncated file,
    /// holding more than the ledger): what rebuilding it from the ledger fixes.
    pub fn is_damage(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match self {
            IndexError::Sql {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(e.code, DatabaseCorrupt | NotADatabase),
            IndexError::Ahead { .. } => true,
            _ => false,
        }
    }

    /// Whether the storage under the index failed (a full disk, an I/O error, a file that
    /// cannot be opened): the operation may work once the cause is gone.
    pub fn is_storage(&self) -> bool {
        use rusqlite::ErrorCode::{CannotOpen, DiskFull, SystemIoFailure};
        match self {
            IndexError::Io { .. } => true,
            IndexError::Sql {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(e.code, DiskFull | SystemIoFailure | CannotOpen),
            _ => false,
        }
    }
}
