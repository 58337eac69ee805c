//! Checkpoints, the verifier key, and RFC 6962 inclusion and consistency proofs (JSON, or the
//! c2sp.org/tlog-proof text).

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Route, S, blocking, logged_read, params, query_json, tenant};
use agentrail_service::{EventRef, Scope};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `cosigned=true`: the newest checkpoint the configured witnesses cosigned, with their
/// cosignature lines (409 `not_ready` until one has).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointQuery {
    #[serde(default)]
    pub cosigned: bool,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/checkpoint", tag = "proofs",
    params(("tenant" = String, Path), CheckpointQuery),
    security(("bearer" = ["events:read"]), ("bearer" = ["verify"])),
    responses(
        (status = 200, description = "C2SP signed checkpoint", body = String, content_type = "text/plain"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn checkpoint(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    let q: CheckpointQuery = params(&uri)?;
    blocking(move || {
        if q.cosigned {
            return match s.service.cosigned_checkpoint(&tenant)? {
                Some(text) => Ok(self::text(text)),
                None => Err(agentrail_service::ServiceError::NotReady(format!(
                    "no witness has cosigned a checkpoint of tenant {tenant} yet (none configured, or none reached)"
                ))
                .into()),
            };
        }
        Ok(text(s.service.checkpoint(&tenant)?.text))
    })
    .await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/verifier-key", tag = "proofs",
    params(("tenant" = String, Path)),
    security(("bearer" = ["events:read"]), ("bearer" = ["verify"])),
    responses(
        (status = 200, description = "the C2SP verifier key of the tenant's checkpoints", body = String, content_type = "text/plain"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn verifier_key(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Response, ApiError> {
    tenant(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    Ok(text(format!("{}\n", s.service.verifier_key())))
}

/// `json` (hex hashes, sizes, roots, checkpoint) or `tlog` (c2sp.org/tlog-proof@v1 text; for
/// consistency proofs, base64 hashes one per line).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProofFormat {
    #[default]
    Json,
    Tlog,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    pub seq: Option<u64>,
    pub event_id: Option<String>,
    /// Default: the latest checkpoint's size.
    pub tree_size: Option<u64>,
    #[param(value_type = Option<String>)]
    pub format: Option<ProofFormat>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/proofs/inclusion", tag = "proofs",
    params(("tenant" = String, Path), InclusionQuery),
    security(("bearer" = ["events:read"]), ("bearer" = ["verify"])),
    responses(
        (status = 200, description = "RFC 6962 inclusion proof (JSON, or tlog-proof text with format=tlog)", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn inclusion(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    uri: Uri,
) -> Result<Response, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    let q: InclusionQuery = params(&uri)?;
    let event = match (q.seq, q.event_id) {
        (Some(seq), None) => EventRef::Seq(seq),
        (None, Some(id)) => EventRef::EventId(id),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of seq and event_id",
            ));
        }
    };
    let params = query_json(&uri);
    logged_read(caller, tenant, route, params, move |req| {
        let (p, cp) = s.service.inclusion(req, event, q.tree_size)?;
        Ok(match q.format.unwrap_or_default() {
            ProofFormat::Json => Json(p.to_json()).into_response(),
            ProofFormat::Tlog => text(
                p.to_tlog_text(&cp)
                    .map_err(agentrail_service::ServiceError::from)?,
            ),
        })
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub from: u64,
    /// Default: the latest checkpoint's size.
    pub to: Option<u64>,
    #[param(value_type = Option<String>)]
    pub format: Option<ProofFormat>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/proofs/consistency", tag = "proofs",
    params(("tenant" = String, Path), ConsistencyQuery),
    security(("bearer" = ["events:read"]), ("bearer" = ["verify"])),
    responses(
        (status = 200, description = "RFC 6962 consistency proof (JSON, or base64 lines with format=tlog)", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn consistency(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    uri: Uri,
) -> Result<Response, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    let q: ConsistencyQuery = params(&uri)?;
    let params = query_json(&uri);
    logged_read(caller, tenant, route, params, move |req| {
        let p = s.service.consistency(req, q.from, q.to)?;
        Ok(match q.format.unwrap_or_default() {
            ProofFormat::Json => Json(p.to_json()).into_response(),
            ProofFormat::Tlog => text(p.to_text()),
        })
    })
    .await
}
