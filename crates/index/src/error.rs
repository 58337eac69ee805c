//! Errors of the query store.

use crate::db::FailureKind;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot {op}: {source}")]
    Sql {
        op: &'static str,
        source: crate::db::DbError,
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
    /// A shared store holds rows of this tenant id fed from another ledger (another
    /// deployment uses the same database): nothing is mixed, nothing deleted.
    #[error(
        "{store} holds rows of tenant {tenant} from another ledger (another agentrail deployment uses this database with the same tenant id): refusing to mix them; give each deployment its own database"
    )]
    OtherLedger { tenant: String, store: String },
    #[error("no event {0} in this tenant")]
    NotFound(String),
}

impl IndexError {
    pub(crate) fn sql(op: &'static str, source: crate::db::DbError) -> IndexError {
        IndexError::Sql { op, source }
    }

    fn kind(&self) -> Option<FailureKind> {
        match self {
            IndexError::Sql { source, .. } => Some(source.kind),
            _ => None,
        }
    }

    /// Whether the index itself is bad (not a database, damaged pages, a truncated file,
    /// holding more than the ledger): what rebuilding it from the ledger fixes.
    pub fn is_damage(&self) -> bool {
        matches!(self, IndexError::Ahead { .. }) || self.kind() == Some(FailureKind::Damage)
    }

    /// Whether the storage under the index failed (a full disk, an I/O error, a file that
    /// cannot be opened): the operation may work once the cause is gone.
    pub fn is_storage(&self) -> bool {
        matches!(self, IndexError::Io { .. }) || self.kind() == Some(FailureKind::Storage)
    }

    /// Whether the database could not be reached (a server restarting, a lost connection):
    /// the same operation is retried later, from what the store holds.
    pub fn is_unavailable(&self) -> bool {
        self.kind() == Some(FailureKind::Unavailable)
    }
}
