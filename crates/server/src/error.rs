//! The one place where errors become HTTP statuses: the service's errors (one `From`) and the
//! HTTP layer's own (body, media type, admission). Every error body is
//! `{"error": {"code", "message", "details"}}` (DESIGN.md §6).

use agentrail_service::ServiceError;
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
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is not worth waiting for: this connection is done.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The one mapping of the service's errors to statuses.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let message = e.to_string();
        match e {
            ServiceError::BadRequest { code, details, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message).with_details(details)
            }
            ServiceError::Unauthenticated(_) => ApiError::unauthorized(message),
            ServiceError::Forbidden(_) => ApiError::forbidden(message),
            ServiceError::NotFound(_) => ApiError::not_found(message),
            ServiceError::Conflict { details, .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message).with_details(details)
            }
            ServiceError::NotReady(_) => ApiError::new(StatusCode::CONFLICT, "not_ready", message),
            ServiceError::InvalidEvents { details, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", message)
                    .with_details(details)
            }
            ServiceError::TooLarge { code, details, .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message).with_details(details)
            }
            ServiceError::Unavailable {
                code, retry_after, ..
            } => ApiError::unavailable(code, message, retry_after),
            ServiceError::Damaged(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "damaged", message)
            }
            ServiceError::Internal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
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
