//! Tenants, API keys and the access log.

use crate::api::page;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    Caller, Route, S, blocking, json_body, logged_read, params, query_json, tenant,
};
use agentrail_service::{KeyRecord, Scope};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLogPage {
    /// `audit.access` records with `seq`, `prev_hash` and `hash`.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub tenant_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBody {
    pub tenant_id: String,
    /// The checkpoint origin of the tenant's log.
    pub origin: String,
    /// The C2SP verifier key checkpoints and exports verify with.
    pub verifier_key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    pub key_id: String,
    /// The API key; shown only in this response.
    pub key: String,
    pub scopes: Vec<Scope>,
    pub name: String,
    pub tenant_id: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

impl From<KeyRecord> for KeyInfo {
    fn from(k: KeyRecord) -> KeyInfo {
        KeyInfo {
            key_id: k.key_id,
            name: k.name,
            scopes: k.scopes,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[utoipa::path(post, path = "/v1/tenants", tag = "admin",
    request_body = CreateTenant,
    security(("bearer" = ["root"])),
    responses(
        (status = 201, body = TenantBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "the tenant exists", body = ErrorBody)))]
pub async fn create_tenant(
    State(s): S,
    Caller(caller): Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TenantBody>), ApiError> {
    s.service.require_root(&caller, "creates tenants")?;
    let req: CreateTenant = json_body(&body)?;
    blocking(move || {
        let t = s.service.create_tenant(&caller, &req.tenant_id)?;
        Ok((
            StatusCode::CREATED,
            Json(TenantBody {
                tenant_id: t.tenant_id.to_string(),
                origin: t.origin,
                verifier_key: t.verifier_key,
            }),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "admin",
    params(("tenant" = String, Path)),
    request_body = CreateKey,
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 201, body = KeyCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_key(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let req: CreateKey = json_body(&body)?;
    blocking(move || {
        let (rec, key) = s
            .service
            .create_key(&caller, &tenant, req.name, &req.scopes)?;
        Ok((
            StatusCode::CREATED,
            Json(KeyCreated {
                key_id: rec.key_id,
                key,
                scopes: rec.scopes,
                name: rec.name,
                tenant_id: tenant.to_string(),
                created_at: rec.created_at,
            }),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys", tag = "admin",
    params(("tenant" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, body = KeyList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    Ok(Json(KeyList {
        keys: s
            .service
            .list_keys(&tenant)
            .into_iter()
            .map(KeyInfo::from)
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/keys/{key_id}", tag = "admin",
    params(("tenant" = String, Path), ("key_id" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 204, description = "revoked; the key stops working at once"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(s): S,
    Caller(caller): Caller,
    Path((t, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || {
        s.service.revoke_key(&caller, &tenant, &key_id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessLogQuery {
    /// The seq after which to start (from the previous page's next_cursor).
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/access-log", tag = "admin",
    params(("tenant" = String, Path), AccessLogQuery),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "who read what, oldest first; each record chained to the one before", body = AccessLogPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn access_log(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    uri: Uri,
) -> Result<Json<AccessLogPage>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let q: AccessLogQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    let params = query_json(&uri);
    logged_read(caller, tenant, route, params, move |read| {
        let (records, next_cursor) =
            s.service
                .access_log(read, req.cursor.as_deref(), req.limit)?;
        Ok(Json(AccessLogPage {
            records,
            next_cursor,
        }))
    })
    .await
}
