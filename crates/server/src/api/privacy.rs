//! Privacy: token reveal, crypto-shredding of a subject or a tenant, the tenant's policy, data-key
//! rotation and retention runs.

use crate::api::admin::AccessLogQuery;
use crate::api::ingest::ReceiptJson;
use crate::api::page;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Route, S, blocking, json_body, logged_read, params, tenant};
use agentrail_service::{Erasure, Policy, Scope};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    /// Tokens (`tok_<type>_<id>`) to reveal; at most 1000.
    pub tokens: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevealedToken {
    pub token: String,
    /// The original value; `{"$erased": …}` once its subject was erased; null if unknown.
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevealBody {
    pub values: Vec<RevealedToken>,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens/reveal", tag = "privacy",
    params(("tenant" = String, Path)),
    request_body = RevealRequest,
    security(("bearer" = ["pii:reveal"])),
    responses(
        (status = 200, description = "the values behind the tokens (the reveal is written to the access log)", body = RevealBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reveal_tokens(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    body: axum::body::Bytes,
) -> Result<Json<RevealBody>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::PiiReveal])?;
    let req: RevealRequest = json_body(&body)?;
    logged_read(
        caller,
        tenant,
        route,
        json!({"tokens": &req.tokens}),
        move |read| {
            let values = s.service.reveal(read, &req.tokens)?;
            Ok(Json(RevealBody {
                values: values
                    .into_iter()
                    .map(|(token, value)| RevealedToken { token, value })
                    .collect(),
            }))
        },
    )
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureBody {
    pub subject_id: String,
    pub erased_at: String,
    /// Whether the subject had a key (had sealed content).
    pub had_key: bool,
    /// The receipt of the `custom.agentrail.subject.erased` event recorded in the tenant's ledger.
    pub receipt: ReceiptJson,
}

fn erasure_body(subject_id: String, e: Erasure) -> ErasureBody {
    ErasureBody {
        subject_id,
        erased_at: e.erased_at,
        had_key: e.had_key,
        receipt: e.receipt.into(),
    }
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/subjects/{subject_id}", tag = "privacy",
    params(("tenant" = String, Path), ("subject_id" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the subject's keys are destroyed: its content reads as $erased everywhere; proofs and checkpoints still verify", body = ErasureBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn erase_subject(
    State(s): S,
    Caller(caller): Caller,
    Path((t, subject)): Path<(String, String)>,
) -> Result<Json<ErasureBody>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || {
        let e = s.service.erase_subject(&caller, &tenant, &subject)?;
        Ok(Json(erasure_body(subject, e)))
    })
    .await
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/policy", tag = "privacy",
    params(("tenant" = String, Path)),
    request_body = Policy,
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the policy now in force for events ingested from now on", body = Policy),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_policy(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Policy>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let policy: Policy = json_body(&body)?;
    blocking(move || Ok(Json(s.service.set_policy(&caller, &tenant, policy)?))).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/policy", tag = "privacy",
    params(("tenant" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the tenant's policy (defaults until one is set)", body = Policy),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<Policy>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || Ok(Json(s.service.policy(&tenant)?))).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// The id of the tenant data key new content is sealed with from now on (`t:<tenant>:v<n>`).
    pub kid: String,
    pub rotated_at: String,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/data-keys/rotate", tag = "privacy",
    params(("tenant" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "a new version of the tenant's data key (wrapped by the master key, durable) seals new content without a subject from now on; content sealed under earlier versions stays readable", body = RotatedKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_data_key(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<RotatedKey>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || {
        let (kid, rotated_at) = s.service.rotate_data_key(&caller, &tenant)?;
        Ok(Json(RotatedKey { kid, rotated_at }))
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRunsPage {
    /// `retention.run` records, oldest first, each chained to the one before (`seq`,
    /// `prev_hash`, `hash`).
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/retention-runs", tag = "privacy",
    params(("tenant" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the tenant's retention policy was applied to its index now (or skipped under legal hold); the run's record", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run_retention(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || Ok(Json(s.service.run_retention(&tenant)?))).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/retention-runs", tag = "privacy",
    params(("tenant" = String, Path), AccessLogQuery),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the tenant's retention runs, oldest first", body = RetentionRunsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retention_runs(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: Uri,
) -> Result<Json<RetentionRunsPage>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let q: AccessLogQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    blocking(move || {
        let (runs, next_cursor) =
            s.service
                .retention_runs(&tenant, req.cursor.as_deref(), req.limit)?;
        Ok(Json(RetentionRunsPage { runs, next_cursor }))
    })
    .await
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/content", tag = "privacy",
    params(("tenant" = String, Path)),
    security(("bearer" = ["root"])),
    responses(
        (status = 200, description = "every key of the tenant is destroyed: all its sealed content reads as $erased; the ledger, proofs and checkpoints stay and verify", body = ErasureBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn erase_tenant_content(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<ErasureBody>, ApiError> {
    s.service.require_root(&caller, "erases a whole tenant")?;
    blocking(move || {
        let e = s.service.erase_tenant(&caller, &t)?;
        Ok(Json(erasure_body("*".into(), e)))
    })
    .await
}
