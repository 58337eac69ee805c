//! The HTTP API (the contract is `openapi.json`), one module per domain. Every handler
//! authenticates first (401), then checks the tenant and the scope (403, the same answer whether
//! or not another tenant exists), then parses its parameters (400), then calls one operation of
//! the service. Each `#[utoipa::path]` names the scopes the handler enforces, so the OpenAPI
//! document is also the route table the isolation tests are generated from.

pub mod admin;
pub mod exports;
pub mod ingest;
pub mod integrity;
pub mod ops;
pub mod otlp;
pub mod oversight;
pub mod privacy;
pub mod proofs;
pub mod queries;

use crate::error::ApiError;
use agentrail_index::{PageReq, TimeField, TimeRange};
use serde::Deserialize;
use utoipa::ToSchema;

/// `stored` (exactly what was hashed) or `decrypted` (sensitive fields in clear; the default).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum View {
    Stored,
    #[default]
    Decrypted,
}

impl View {
    pub fn decrypts(self) -> bool {
        matches!(self, View::Decrypted)
    }
}

/// A page request: `limit` 1..=1000 (default 100) after `cursor`.
pub fn page(cursor: Option<String>, limit: Option<usize>) -> Result<PageReq, ApiError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > agentrail_index::query::MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            agentrail_index::query::MAX_PAGE
        )));
    }
    Ok(PageReq { cursor, limit })
}

pub fn range(
    field: Option<TimeField>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<TimeRange, ApiError> {
    TimeRange::parse(field.unwrap_or_default(), from, to)
        .map_err(|e| ApiError::from(agentrail_service::ServiceError::from(e)))
}
