//! The one place where errors become HTTP statuses. Every error body is
//! `{"error": {"code", "message", "details"}}` (DESIGN.md §6).

use agentrail_index::IndexError;
use agentrail_ledger::proofs::ProofError;
use agentrail_ledger::{AppendError, ChainLogError, OpenError, ReadError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

/// The error body, for the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code, e.g. `invalid_event`, `forbidden`, `conflict`.
    pub code: String,
    pub message: String,
    /// Per-item problems, e.g. `{"line": 3, "path": "payload.decision", "reason": "..."}`.
    pub details: Vec<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Vec<Value>) -> ApiError {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// The same answer whether or not the tenant exists.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(retry);
        e
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        tracing::error!(%message, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> ApiError {
        match e {
            OpenError::NotFound(_) => ApiError::not_found(e.to_string()),
            OpenError::Damaged(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "damaged", e.to_string())
            }
            OpenError::Io { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::Open(o) => o.into(),
            ReadError::OutOfRange { .. } | ReadError::UnknownEvent { .. } => {
                ApiError::not_found(e.to_string())
            }
            ReadError::BadSizes { .. } => ApiError::bad_request(e.to_string()),
            ReadError::Closed => ApiError::unavailable("shutting_down", e.to_string(), 5),
            ReadError::Damaged(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "damaged", e.to_string())
            }
            ReadError::Io { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> ApiError {
        match e {
            ProofError::Read(r) => r.into(),
            ProofError::NotAtCheckpoint { .. } => ApiError::bad_request(e.to_string()),
            ProofError::DoesNotVerify(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "damaged", e.to_string())
            }
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> ApiError {
        match e {
            IndexError::BadQuery(m) => ApiError::bad_request(m),
            IndexError::NotFound(_) => ApiError::not_found(e.to_string()),
            IndexError::Ledger(r) => r.into(),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ChainLogError> for ApiError {
    fn from(e: ChainLogError) -> ApiError {
        // Reads of audit data are refused when they cannot be logged.
        ApiError::internal(format!("access log: {e}"))
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        match e {
            AppendError::Open(o) => o.into(),
            AppendError::Invalid { index, ref reason } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
                e.to_string(),
            )
            .with_details(vec![
                json!({"index": index, "path": "", "reason": reason.to_string()}),
            ]),
            AppendError::Conflict {
                index,
                ref event_id,
                seq,
            } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()).with_details(vec![
                json!({"index": index, "event_id": event_id, "seq": seq}),
            ]),
            AppendError::TooLarge { index, len, max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                e.to_string(),
            )
            .with_details(vec![json!({"index": index, "len": len, "max": max})]),
            AppendError::Closed => ApiError::unavailable("shutting_down", e.to_string(), 5),
            AppendError::Poisoned { .. } | AppendError::Io { .. } | AppendError::Damaged { .. } => {
                let mut err = ApiError::internal(e.to_string());
                err.status = StatusCode::SERVICE_UNAVAILABLE;
                err.code = "storage_unavailable";
                err.retry_after = Some(30);
                err
            }
        }
    }
}

/// Panics in blocking tasks become 500s.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("a worker task failed: {e}"))
    }
}
