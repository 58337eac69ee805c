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
    #[error("no event {0} in this tenant")]
    NotFound(String),
}

impl IndexError {
    pub(crate) fn sql(op: &'static str, source: rusqlite::Error) -> IndexError {
        IndexError::Sql { op, source }
    }
}
