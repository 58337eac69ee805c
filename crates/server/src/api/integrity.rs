//! The integrity verifier: a signed verification report now, and the reports so far.

use crate::api::admin::AccessLogQuery;
use crate::api::page;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, S, blocking, params, tenant};
use agentrail_service::Scope;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrityRecord {
    /// `{tenant, origin, trigger, from_size, to_size, root, result, failure, checkpoint, …}`.
    #[schema(value_type = Object)]
    pub report: Value,
    /// C2SP signed note over the report's RFC 8785 SHA-256.
    pub signature: String,
    pub seq: u64,
    pub prev_hash: Option<String>,
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrityPage {
    pub reports: Vec<IntegrityRecord>,
    pub next_cursor: Option<String>,
}

fn integrity_record(v: Value) -> IntegrityRecord {
    IntegrityRecord {
        signature: v["signature"].as_str().unwrap_or_default().to_owned(),
        seq: v["seq"].as_u64().unwrap_or(0),
        prev_hash: v["prev_hash"].as_str().map(str::to_owned),
        hash: v["hash"].as_str().unwrap_or_default().to_owned(),
        report: v["report"].clone(),
    }
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/verify", tag = "integrity",
    params(("tenant" = String, Path)),
    security(("bearer" = ["verify"])),
    responses(
        (status = 200, description = "the signed report of a verification run now (result ok or failed)", body = IntegrityRecord),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn verify_now(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<IntegrityRecord>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::Verify])?;
    blocking(move || Ok(Json(integrity_record(s.service.verify_now(&tenant)?)))).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/integrity-reports", tag = "integrity",
    params(("tenant" = String, Path), AccessLogQuery),
    security(("bearer" = ["verify"])),
    responses(
        (status = 200, description = "signed integrity reports, oldest first", body = IntegrityPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn integrity_reports(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: Uri,
) -> Result<Json<IntegrityPage>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::Verify])?;
    let q: AccessLogQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    let after = req
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("cursor {c:?} is not one of ours")))
        })
        .transpose()?;
    blocking(move || {
        let (reports, next) = s.service.integrity_reports(&tenant, after, req.limit)?;
        Ok(Json(IntegrityPage {
            reports: reports.into_iter().map(integrity_record).collect(),
            next_cursor: next,
        }))
    })
    .await
}
