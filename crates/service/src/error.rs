//! The service's one error type: what the caller did wrong (bad input, no access, a conflict) or
//! what failed (storage, a damaged file, a bug). The HTTP server maps each variant to one status
//! in one place; the CLI prints the message.

use agentrail_index::IndexError;
use agentrail_ledger::proofs::ProofError;
use agentrail_ledger::{AppendError, ChainLogError, OpenError, ReadError};
use serde_json::{Value, json};

/// Why an operation of the service did not happen. Every variant with `details` lists the
/// problems one per item, e.g. `{"line": 3, "path": "payload.decision", "reason": "..."}`;
/// `code` is a stable machine-readable name (`batch_too_large`, `index_behind`, …).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A parameter, cursor, policy or other input is wrong.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<Value>,
    },
    /// The key is missing, unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key may not do this (the same answer whether or not another tenant exists).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what is stored: an event id used for other content, a tenant
    /// that exists.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Vec<Value>,
    },
    /// What was asked for is not finished yet (an export still running).
    #[error("{0}")]
    NotReady(String),
    /// Events that do not validate; nothing was stored.
    #[error("{message}")]
    InvalidEvents {
        message: String,
        details: Vec<Value>,
    },
    /// A batch or an event beyond a limit.
    #[error("{message}")]
    TooLarge {
        code: &'static str,
        message: String,
        details: Vec<Value>,
    },
    /// Not now: saturated, an index catching up, shutting down, storage failing. Retry after
    /// `retry_after` seconds.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// A stored file does not verify.
    #[error("{0}")]
    Damaged(String),
    /// Anything else: a bug or an I/O failure the caller cannot fix.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn bad_request(message: impl Into<String>) -> ServiceError {
        ServiceError::BadRequest {
            code: "bad_request",
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A bad request naming the field at fault.
    pub fn bad_field(message: impl Into<String>, path: &str) -> ServiceError {
        ServiceError::BadRequest {
            code: "bad_request",
            message: message.into(),
            details: vec![json!({ "path": path })],
        }
    }

    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError::NotFound(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> ServiceError {
        ServiceError::Forbidden(message.into())
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry: u64) -> ServiceError {
        ServiceError::Unavailable {
            code,
            message: message.into(),
            retry_after: retry,
        }
    }

    /// An internal error, logged where it happens.
    pub fn internal(message: impl Into<String>) -> ServiceError {
        let message = message.into();
        tracing::error!(%message, "internal error");
        ServiceError::Internal(message)
    }

    /// A write that failed for want of working storage (the guard then checks free space).
    pub fn is_storage_failure(&self) -> bool {
        matches!(
            self,
            ServiceError::Unavailable {
                code: "storage_unavailable",
                ..
            }
        )
    }

    fn storage_unavailable(message: String) -> ServiceError {
        tracing::error!(%message, "storage unavailable");
        ServiceError::unavailable("storage_unavailable", message, 30)
    }
}

impl From<OpenError> for ServiceError {
    fn from(e: OpenError) -> ServiceError {
        match e {
            OpenError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            OpenError::Damaged(_) => ServiceError::Damaged(e.to_string()),
            OpenError::Io { .. } => ServiceError::internal(e.to_string()),
        }
    }
}

impl From<ReadError> for ServiceError {
    fn from(e: ReadError) -> ServiceError {
        match e {
            ReadError::Open(o) => o.into(),
            ReadError::OutOfRange { .. } | ReadError::UnknownEvent { .. } => {
                ServiceError::NotFound(e.to_string())
            }
            ReadError::BadSizes { .. } => ServiceError::bad_request(e.to_string()),
            ReadError::Closed => ServiceError::unavailable("shutting_down", e.to_string(), 5),
            ReadError::Damaged(_) => ServiceError::Damaged(e.to_string()),
            ReadError::Io { .. } => ServiceError::internal(e.to_string()),
        }
    }
}

impl From<ProofError> for ServiceError {
    fn from(e: ProofError) -> ServiceError {
        match e {
            ProofError::Read(r) => r.into(),
            ProofError::NotAtCheckpoint { .. } => ServiceError::bad_request(e.to_string()),
            ProofError::DoesNotVerify(_) => ServiceError::Damaged(e.to_string()),
        }
    }
}

impl From<IndexError> for ServiceError {
    fn from(e: IndexError) -> ServiceError {
        match e {
            IndexError::BadQuery(m) => ServiceError::bad_request(m),
            IndexError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            IndexError::Ledger(r) => r.into(),
            _ if e.is_storage() => ServiceError::storage_unavailable(e.to_string()),
            // A shared query store that cannot be reached (restarting, a lost connection): 503
            // and retry; the ledger keeps taking writes and the indexer catches up.
            _ if e.is_unavailable() => ServiceError::unavailable(
                "index_unavailable",
                format!("the query store cannot be reached: {e}; retry shortly"),
                2,
            ),
            _ => ServiceError::internal(e.to_string()),
        }
    }
}

impl From<ChainLogError> for ServiceError {
    fn from(e: ChainLogError) -> ServiceError {
        match e {
            // Reads of audit data are refused when they cannot be logged: fail closed, and say
            // it is storage (503, retry), not a bug.
            ChainLogError::Io { .. } | ChainLogError::Poisoned { .. } => {
                ServiceError::storage_unavailable(e.to_string())
            }
            ChainLogError::Damaged { .. } => ServiceError::Damaged(e.to_string()),
            ChainLogError::BadRecord(_) => ServiceError::internal(e.to_string()),
        }
    }
}

impl From<agentrail_vault::VaultError> for ServiceError {
    fn from(e: agentrail_vault::VaultError) -> ServiceError {
        ServiceError::internal(format!("vault: {e}"))
    }
}

impl From<AppendError> for ServiceError {
    fn from(e: AppendError) -> ServiceError {
        match e {
            AppendError::Open(o) => o.into(),
            AppendError::Invalid { index, ref reason } => ServiceError::InvalidEvents {
                message: e.to_string(),
                details: vec![json!({"index": index, "path": "", "reason": reason.to_string()})],
            },
            // Which event id conflicts, not where the stored one is: a write-only key must not
            // learn the seq of an event it cannot read.
            AppendError::Conflict {
                index,
                ref event_id,
                ..
            } => ServiceError::Conflict {
                message: format!(
                    "event {index}: event_id {event_id:?} was already used for different content"
                ),
                details: vec![json!({"index": index, "event_id": event_id})],
            },
            AppendError::TooLarge { index, len, max } => ServiceError::TooLarge {
                code: "event_too_large",
                message: e.to_string(),
                details: vec![json!({"index": index, "len": len, "max": max})],
            },
            AppendError::Closed => ServiceError::unavailable("shutting_down", e.to_string(), 5),
            AppendError::Poisoned { .. } | AppendError::Io { .. } | AppendError::Damaged { .. } => {
                ServiceError::storage_unavailable(e.to_string())
            }
        }
    }
}
