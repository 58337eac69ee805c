//! What every handler takes from a request: the authenticated caller, the route it matched (the
//! name its reads are logged under), parameters and JSON bodies (parsed after authorization, so
//! a caller without access learns nothing from their errors), and the hop to a blocking thread
//! for the service's synchronous operations.

use crate::error::ApiError;
use crate::state::AppState;
use agentrail_event::TenantId;
use agentrail_service::{Consistency, Principal, ReadRequest, Scope};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;

pub type S = axum::extract::State<Arc<AppState>>;

/// The authenticated caller: `Authorization: Bearer <key>`.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let now = std::time::Instant::now();
        if let Some(ip) = source
            && let Err(wait) = state.auth_throttle.check(ip, now)
        {
            state.service.metrics().auth_throttled.inc();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_auth_failures",
                format!("too many failed authentications from this address; retry in {wait} s"),
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
        let presented = parts.headers.get(header::AUTHORIZATION);
        let key = presented
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(p) = key.and_then(|k| state.service.authenticate(k)) {
            return Ok(Caller(p));
        }
        // Logged with the key id when the key is well-formed, never with the secret.
        let key_id = key.and_then(agentrail_service::keys::key_id_of);
        let (reason, message) = match (presented, key) {
            (None, _) => (
                "missing",
                "missing API key: send the header `Authorization: Bearer <key>`",
            ),
            (Some(_), None) => (
                "malformed",
                "the Authorization header must be `Bearer <key>`",
            ),
            (Some(_), Some(_)) => ("unknown_or_revoked", "unknown or revoked API key"),
        };
        state.service.metrics().auth_failures.inc();
        let failures = source.map(|ip| state.auth_throttle.failed(ip, now));
        tracing::warn!(
            source = %source.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            key_id = key_id.unwrap_or("-"),
            reason,
            failures_this_minute = failures.unwrap_or(0),
            path = %parts.uri.path(),
            "authentication failed"
        );
        Err(ApiError::unauthorized(message))
    }
}

/// The route a request matched, as the access log names it: `GET /v1/tenants/{tenant}/events`.
#[derive(Debug, Clone)]
pub struct Route(pub String);

impl<St: Send + Sync> FromRequestParts<St> for Route {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Route, ApiError> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |m| m.as_str().to_owned());
        Ok(Route(format!("{} {path}", parts.method)))
    }
}

/// Authorizes `caller` for the tenant named in the path with one of `scopes`.
pub fn tenant(
    s: &AppState,
    caller: &Principal,
    raw: &str,
    scopes: &[Scope],
) -> Result<TenantId, ApiError> {
    Ok(s.service.authorize(caller, raw, scopes)?)
}

/// Runs a read of audit data on a blocking thread: `f` gets the request its access-log record
/// will name (who, which tenant, the route, what was asked) and calls the service with it.
pub async fn logged_read<T: Send + 'static>(
    caller: Principal,
    tenant: TenantId,
    route: Route,
    params: Value,
    f: impl FnOnce(ReadRequest) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let req = ReadRequest {
        caller,
        tenant,
        endpoint: route.0,
        params,
    };
    blocking(move || f(req)).await
}

/// Query parameters. Unknown parameters are refused: a typo must not widen a query.
pub fn params<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("query parameters: {}", e.body_text())))
}

/// The query string as a JSON object, for the access log.
pub fn query_json(uri: &Uri) -> Value {
    let pairs: Map<String, Value> = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| {
            q.0.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(pairs)
}

/// `v` with one more member.
pub fn with(mut v: Value, k: &str, x: impl Into<Value>) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert(k.into(), x.into());
    }
    v
}

pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("request body: {e}"),
        )
    })
}

/// The read-consistency request header, as every query documents it.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ReadConsistencyHeader {
    /// `latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)
    #[serde(rename = "x-read-consistency")]
    pub read_consistency: Option<String>,
}

/// Request header: `latest` (default: wait until the index holds every event acknowledged
/// before the query) or `indexed` (answer at once from what the index holds).
pub const READ_CONSISTENCY: &str = "x-read-consistency";
/// Response header: how many of the tenant's events the answer covers.
pub const INDEXED_SIZE: &str = "x-indexed-size";

/// A query answer with the `X-Indexed-Size` header: the answer covers the tenant's events
/// `[0, X-Indexed-Size)`.
pub type Indexed<T> = ([(&'static str, String); 1], axum::Json<T>);

pub fn indexed<T>(body: T, size: u64) -> Indexed<T> {
    ([(INDEXED_SIZE, size.to_string())], axum::Json(body))
}

pub fn consistency(headers: &HeaderMap) -> Result<Consistency, ApiError> {
    match headers
        .get(READ_CONSISTENCY)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("latest") => Ok(Consistency::Latest),
        Some("indexed") => Ok(Consistency::Indexed),
        Some(other) => Err(ApiError::bad_request(format!(
            "{READ_CONSISTENCY} {other:?}: use latest or indexed"
        ))),
    }
}

/// Runs a synchronous service operation on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}
