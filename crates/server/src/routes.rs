//! The HTTP API (DESIGN.md §6). Every handler authenticates first (401), then checks the tenant
//! and the scope (403, the same answer whether or not another tenant exists), then parses its
//! parameters (400). Each `#[utoipa::path]` names the scopes the handler enforces, so the OpenAPI
//! document is also the route table the isolation tests are generated from.

use crate::access::Access;
use crate::error::{ApiError, ErrorBody};
use crate::keys::{KeyRecord, Principal, Scope};
use crate::state::AppState;
use agentrail_event::TenantId;
use agentrail_event::batch::{BatchFormat, Position, parse_batch};
use agentrail_index::{
    AnomalyKind, Direction, EventFilter, EventRow, IndexError, ModelQuery, PageReq, ReviewQuery,
    TenantIndex, TimeField, TimeRange,
};
use agentrail_ledger::proofs;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, extract::Query};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::{IntoParams, ToSchema};

pub type S = State<Arc<AppState>>;

// ---- authentication ---------------------------------------------------------------------------

/// The authenticated caller: `Authorization: Bearer <key>`.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        let Some(v) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing API key: send the header `Authorization: Bearer <key>`",
            ));
        };
        let key = v
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <key>`")
            })?;
        state
            .keys
            .authenticate(key)
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))
    }
}

/// Authorizes `caller` for the tenant named in the path, then parses the id.
fn tenant_for(
    s: &AppState,
    caller: &Principal,
    raw: &str,
    scopes: &[Scope],
) -> Result<TenantId, ApiError> {
    match &caller.tenant {
        // A tenant key: anything but its own tenant is the same 403.
        Some(own) if own.as_str() != raw => Err(ApiError::forbidden(
            "this key is not allowed to access this tenant",
        )),
        _ => {
            let tenant = TenantId::parse(raw).map_err(ApiError::bad_request)?;
            s.authorize(caller, &tenant, scopes)?;
            Ok(tenant)
        }
    }
}

/// Query parameters, parsed after authorization so that a caller without access learns nothing
/// from parameter errors. Unknown parameters are refused: a typo must not widen a query.
fn params<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("query parameters: {}", e.body_text())))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

// ---- shapes -----------------------------------------------------------------------------------

/// How events are served: `view=stored` is exactly the JSON whose RFC 8785 bytes were hashed
/// (plus `hash`); `view=decrypted` (the default) opens the sealed sensitive fields.
#[derive(Clone)]
struct Presenter {
    state: Arc<AppState>,
    tenant: String,
    decrypt: bool,
}

impl Presenter {
    fn new(s: &Arc<AppState>, tenant: &TenantId, view: Option<View>) -> Presenter {
        Presenter {
            state: s.clone(),
            tenant: tenant.to_string(),
            decrypt: matches!(view.unwrap_or_default(), View::Decrypted),
        }
    }

    fn one(&self, row: &EventRow) -> Value {
        let mut v = row.value();
        if self.decrypt {
            self.state.privacy.open_event(&self.tenant, &mut v);
        }
        if let Value::Object(m) = &mut v {
            m.insert("hash".into(), Value::String(row.hash.clone()));
        }
        v
    }

    fn all(&self, rows: &[EventRow]) -> Vec<Value> {
        rows.iter().map(|r| self.one(r)).collect()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptsBody {
    pub receipts: Vec<ReceiptJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptJson {
    pub event_id: String,
    pub seq: u64,
    /// Hex SHA-256 of the stored form.
    pub hash: String,
    pub received_at: String,
    /// Present and true when the event was already stored (an idempotent replay).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// Stored events with their `hash`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub session_id: String,
    pub total: u64,
    /// `{unbroken, breaks[]}`: whether session_seq runs without gaps and each
    /// session_prev_hash is the previous event's hash.
    #[schema(value_type = Object)]
    pub chain: Value,
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CausalBody {
    pub root: String,
    /// `causes` or `effects`.
    pub direction: String,
    pub depth: u32,
    #[schema(value_type = Vec<Object>)]
    pub nodes: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub edges: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub dangling: Vec<Value>,
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewsPage {
    /// `{decision, reviewer, latency_ms, proposed_event_id, event}`.
    #[schema(value_type = Vec<Object>)]
    pub reviews: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnomaliesPage {
    /// `{kind, seq, hash, event_id, detail}`.
    #[schema(value_type = Vec<Object>)]
    pub anomalies: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelBody {
    #[schema(value_type = Vec<Object>)]
    pub counts_by_version: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub caused: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventBody {
    #[schema(value_type = Object)]
    pub event: Value,
    /// With `?proof=true`: the inclusion proof (JSON form).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Value>,
}

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

/// `stored` (exactly what was hashed) or `decrypted` (sensitive fields in clear; the default).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum View {
    Stored,
    #[default]
    Decrypted,
}

// ---- operational endpoints --------------------------------------------------------------------

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "the process is up", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "ready to take requests", body = String, content_type = "text/plain"),
        (status = 503, description = "shutting down", body = ErrorBody)))]
pub async fn readyz(State(s): S) -> Response {
    if s.ledger.data_dir().join("system").is_dir() {
        "ready\n".into_response()
    } else {
        ApiError::unavailable("not_ready", "the data directory is gone", 5).into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus/OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(s): S) -> Response {
    let st = s.clone();
    let text = tokio::task::spawn_blocking(move || {
        st.refresh_gauges();
        st.metrics.encode()
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

// ---- tenants and keys -------------------------------------------------------------------------

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
    if !caller.is_root() {
        return Err(ApiError::forbidden("only the root key creates tenants"));
    }
    let req: CreateTenant = json_body(&body)?;
    let tenant = TenantId::parse(&req.tenant_id)
        .map_err(|e| ApiError::bad_request(e).with_details(vec![json!({"path": "tenant_id"})]))?;
    blocking(move || {
        let _g = s.admin.lock().unwrap_or_else(|e| e.into_inner());
        if !s.ledger.create_tenant(&tenant)? {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("tenant {tenant} already exists"),
            ));
        }
        tracing::info!(%tenant, "tenant created");
        Ok((
            StatusCode::CREATED,
            Json(TenantBody {
                origin: s.ledger.origin(&tenant),
                verifier_key: s.ledger.verifier().to_string(),
                tenant_id: tenant.to_string(),
            }),
        ))
    })
    .await
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let req: CreateKey = json_body(&body)?;
    if req.scopes.is_empty() {
        return Err(ApiError::bad_request("a key needs at least one scope")
            .with_details(vec![json!({"path": "scopes"})]));
    }
    let name = req.name.unwrap_or_default();
    if name.len() > 200 {
        return Err(ApiError::bad_request("name is longer than 200 bytes"));
    }
    blocking(move || {
        let now = s.now();
        let (rec, key) = s
            .keys
            .create(Some(&tenant), &name, &req.scopes, &now)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        tracing::info!(%tenant, key_id = %rec.key_id, by = %caller.key_id, "key created");
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    Ok(Json(KeyList {
        keys: s
            .keys
            .list(&tenant)
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || {
        let now = s.now();
        if s.keys
            .revoke(Some(&tenant), &key_id, &now)
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            tracing::info!(%tenant, %key_id, by = %caller.key_id, "key revoked");
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found(format!(
                "tenant {tenant} has no key {key_id:?}"
            )))
        }
    })
    .await
}

// ---- ingest -----------------------------------------------------------------------------------

fn body_format(headers: &HeaderMap) -> Result<BatchFormat, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(BatchFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ok(BatchFormat::Ndjson)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {other:?} is not accepted: send application/json or application/x-ndjson"
            ),
        )),
    }
}

fn too_large(what: &str, max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("{what} is larger than the limit of {max} bytes"),
    )
}

/// The body, gzip-decoded if so encoded, at most `max` bytes either way.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large("the request body", max));
    }
    let limited = http_body_util::Limited::new(body, max);
    let raw = match http_body_util::BodyExt::collect(limited).await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(too_large("the request body", max));
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok(raw.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            let mut dec = flate2::read::MultiGzDecoder::new(&raw[..]).take(max as u64 + 1);
            dec.read_to_end(&mut out).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_gzip",
                    format!("the body is not valid gzip: {e}"),
                )
            })?;
            if out.len() > max {
                return Err(too_large("the decompressed request body", max));
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("content encoding {other:?} is not accepted: send gzip or none"),
        )),
    }
}

fn position(p: Position) -> Map<String, Value> {
    let mut m = Map::new();
    match p {
        Position::Single => {}
        Position::Index(i) => {
            m.insert("index".into(), json!(i));
        }
        Position::Line(l) => {
            m.insert("line".into(), json!(l));
        }
    }
    m
}

/// Decrements the in-flight gauge when a request ends, however it ends.
struct Inflight<'a>(&'a AppState);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.metrics.ingest_inflight.dec();
    }
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/events", tag = "events",
    params(("tenant" = String, Path)),
    request_body(description = "One event object, a JSON array of events, or NDJSON (`application/x-ndjson`); optionally `Content-Encoding: gzip`. All-or-nothing.",
        content((Object = "application/json"), (String = "application/x-ndjson"))),
    security(("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "every event is durable", body = ReceiptsBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "an event_id was used for different content", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "invalid events: every problem with its line or index and field path", body = ErrorBody),
        (status = 503, description = "saturated; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn ingest(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReceiptsBody>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsWrite])?;
    let format = body_format(&headers)?;
    let max_inflight = s.cfg.max_inflight_appends.max(1) as i64;
    s.metrics.ingest_inflight.inc();
    let _inflight = Inflight(&s);
    // Bounded queue: beyond twice the append slots, refuse at once rather than hold bodies.
    if s.metrics.ingest_inflight.get() > 2 * max_inflight {
        s.metrics.reject("busy");
        return Err(ApiError::unavailable(
            "busy",
            "the sequencer is saturated; retry shortly",
            1,
        ));
    }
    let bytes = read_body(&headers, body, s.cfg.max_body_bytes).await?;
    let permit = tokio::time::timeout(
        Duration::from_millis(s.cfg.append_wait_ms),
        s.append_slots.clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(permit)) = permit else {
        s.metrics.reject("busy");
        return Err(ApiError::unavailable(
            "busy",
            "the sequencer is saturated; retry shortly",
            1,
        ));
    };
    let st = s.clone();
    let receipts = blocking(move || {
        let _permit = permit;
        let handle = st.indexer.handle(&tenant)?;
        if handle.lag() > st.cfg.max_index_lag {
            st.metrics.reject("index_behind");
            st.indexer.appended(&tenant, 0)?;
            return Err(ApiError::unavailable(
                "index_behind",
                format!(
                    "the query index of tenant {tenant} is {} events behind; retry shortly",
                    handle.lag()
                ),
                2,
            ));
        }
        let items = parse_batch(&bytes, format);
        if items.len() > st.cfg.max_batch_events {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!(
                    "the batch holds {} events, above the limit of {}",
                    items.len(),
                    st.cfg.max_batch_events
                ),
            ));
        }
        let mut details = Vec::new();
        let mut events = Vec::with_capacity(items.len());
        for item in items {
            match item.result {
                Ok(ev) => events.push(ev),
                Err(bad) => {
                    for p in bad.problems {
                        let mut d = position(item.position);
                        d.insert("path".into(), json!(p.path));
                        d.insert("reason".into(), json!(p.reason));
                        details.push(Value::Object(d));
                    }
                }
            }
        }
        if !details.is_empty() {
            st.metrics.reject("invalid");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_event",
                format!(
                    "{} problem(s) in the batch; nothing was stored",
                    details.len()
                ),
            )
            .with_details(details));
        }
        let gate = st.privacy.erasure_gate(&tenant);
        let sealing = gate.read().unwrap_or_else(|e| e.into_inner());
        if st.cfg.seal_sensitive_fields {
            let now = st.now();
            st.privacy.protect_batch(&tenant, &mut events, &now)?;
        }
        let started = Instant::now();
        let receipts = st.ledger.append(&tenant, events).map_err(ApiError::from)?;
        drop(sealing);
        st.metrics
            .ingest_append_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(last) = receipts.iter().map(|r| r.seq).max() {
            st.indexer.appended(&tenant, last + 1)?;
        }
        st.metrics.ingest_events.inc_by(receipts.len() as u64);
        st.metrics.ingest_bytes.inc_by(bytes.len() as u64);
        st.metrics
            .ingest_replayed
            .inc_by(receipts.iter().filter(|r| r.replayed).count() as u64);
        Ok(receipts)
    })
    .await?;
    Ok(Json(ReceiptsBody {
        receipts: receipts
            .into_iter()
            .map(|r| ReceiptJson {
                event_id: r.event_id,
                seq: r.seq,
                hash: r.hash,
                received_at: r.received_at,
                replayed: r.replayed,
            })
            .collect(),
    }))
}

// ---- queries ----------------------------------------------------------------------------------

/// Runs a query on a caught-up read connection, records the access, and answers.
#[allow(clippy::too_many_arguments)]
async fn read_query<T: Serialize + Send + 'static>(
    s: Arc<AppState>,
    caller: Principal,
    tenant: TenantId,
    headers: &HeaderMap,
    endpoint: &'static str,
    params: Value,
    f: impl FnOnce(&TenantIndex) -> Result<(T, u64), IndexError> + Send + 'static,
) -> Result<Indexed<T>, ApiError> {
    let wait = read_wait(&s, headers)?;
    blocking(move || {
        let ((out, count), indexed) = s.indexer.query(&tenant, wait, f)?;
        record(&s, &caller, &tenant, endpoint, params, count)?;
        Ok(([(INDEXED_SIZE, indexed.to_string())], Json(out)))
    })
    .await
}

/// A query answer with the `X-Indexed-Size` header: the answer covers the tenant's events
/// `[0, X-Indexed-Size)`.
pub type Indexed<T> = ([(&'static str, String); 1], Json<T>);

/// Response header: how many of the tenant's events the answer covers.
pub const INDEXED_SIZE: &str = "x-indexed-size";
/// Request header: `latest` (default: wait until the index holds every event acknowledged
/// before the query) or `indexed` (answer at once from what the index holds).
pub const READ_CONSISTENCY: &str = "x-read-consistency";

/// How long a query may wait for the index.
fn read_wait(s: &AppState, headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    match headers
        .get(READ_CONSISTENCY)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("latest") => Ok(Some(Duration::from_millis(s.cfg.query_wait_ms))),
        Some("indexed") => Ok(None),
        Some(other) => Err(ApiError::bad_request(format!(
            "{READ_CONSISTENCY} {other:?}: use latest or indexed"
        ))),
    }
}

fn record(
    s: &AppState,
    caller: &Principal,
    tenant: &TenantId,
    endpoint: &str,
    params: Value,
    count: u64,
) -> Result<(), ApiError> {
    s.access.record(
        tenant,
        &s.now(),
        Access {
            principal: caller,
            endpoint,
            params,
            result_count: count,
        },
    )?;
    s.metrics.access_records.inc();
    Ok(())
}

fn page(cursor: Option<String>, limit: Option<usize>) -> Result<PageReq, ApiError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > agentrail_index::query::MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            agentrail_index::query::MAX_PAGE
        )));
    }
    Ok(PageReq { cursor, limit })
}

fn range(
    field: Option<TimeField>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<TimeRange, ApiError> {
    Ok(TimeRange::parse(field.unwrap_or_default(), from, to)?)
}

/// The query string as a JSON object, for the access log.
fn query_json(uri: &Uri) -> Value {
    let pairs: Map<String, Value> = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| {
            q.0.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(pairs)
}

fn with(mut v: Value, k: &str, x: impl Into<Value>) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert(k.into(), x.into());
    }
    v
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub event_type: Option<String>,
    pub actor_id: Option<String>,
    /// Model decisions of this model name.
    pub model: Option<String>,
    /// Tool invocations of this tool.
    pub tool: Option<String>,
    /// Tool outcome: ok, error or timeout.
    pub outcome: Option<String>,
    /// Human reviews with this decision.
    pub decision: Option<String>,
    pub classification: Option<String>,
    /// `key=value`: events whose `attributes.key` equals value.
    pub attribute: Option<String>,
    /// A PII token (`tok_<type>_<id>`): events whose sensitive content held that value, while
    /// the content is in the hot index (the tenant's `hot_content_days`).
    pub token: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    /// Which clock `from`/`to` apply to: `occurred` (default) or `received`.
    #[param(value_type = Option<String>)]
    pub time_field: Option<TimeField>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    #[param(value_type = Option<String>)]
    pub view: Option<View>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/events", tag = "queries",
    params(("tenant" = String, Path), EventsQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, body = EventsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_events(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<EventsPage>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: EventsQuery = params(&uri)?;
    let attributes = match &q.attribute {
        None => Vec::new(),
        Some(a) => {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| ApiError::bad_request("attribute must be key=value"))?;
            vec![(k.to_owned(), v.to_owned())]
        }
    };
    let filter = EventFilter {
        range: range(q.time_field, q.from.as_deref(), q.to.as_deref())?,
        event_type: q.event_type,
        session_id: q.session_id,
        agent_id: q.agent_id,
        actor_id: q.actor_id,
        tool_name: q.tool,
        outcome: q.outcome,
        classification: q.classification,
        model_name: q.model,
        review_decision: q.decision,
        attributes,
        token: q.token,
    };
    let req = page(q.cursor, q.limit)?;
    let pv = Presenter::new(&s, &tenant, q.view);
    read_query(
        s,
        caller,
        tenant,
        &headers,
        "GET /v1/tenants/{tenant}/events",
        query_json(&uri),
        move |ix| {
            let p = ix.events(&filter, &req)?;
            let n = p.items.len() as u64;
            Ok((
                EventsPage {
                    events: pv.all(&p.items),
                    next_cursor: p.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Include an inclusion proof of the event.
    pub proof: Option<bool>,
    /// The tree size of the proof (default: the latest checkpoint's).
    pub tree_size: Option<u64>,
    #[param(value_type = Option<String>)]
    pub view: Option<View>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event_id}", tag = "queries",
    params(("tenant" = String, Path), ("event_id" = String, Path), EventQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, body = EventBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_event(
    State(s): S,
    Caller(caller): Caller,
    Path((t, event_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<EventBody>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: EventQuery = params(&uri)?;
    let params = with(query_json(&uri), "event_id", event_id.clone());
    let wait = read_wait(&s, &headers)?;
    let pv = Presenter::new(&s, &tenant, q.view);
    blocking(move || {
        let id = event_id.clone();
        let (row, indexed) = s.indexer.query(&tenant, wait, move |ix| ix.event(&id))?;
        let proof = if q.proof.unwrap_or(false) {
            let cp = checkpoint_now(&s, &tenant)?;
            Some(proofs::inclusion(&s.ledger, &tenant, &cp, row.seq, q.tree_size)?.to_json())
        } else {
            None
        };
        record(
            &s,
            &caller,
            &tenant,
            "GET /v1/tenants/{tenant}/events/{event_id}",
            params,
            1,
        )?;
        Ok((
            [(INDEXED_SIZE, indexed.to_string())],
            Json(EventBody {
                event: pv.one(&row),
                proof,
            }),
        ))
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CausalQuery {
    /// Links to follow (default 10, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub depth: Option<u32>,
    /// Events to return at most (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub max_nodes: Option<usize>,
    #[param(value_type = Option<String>)]
    pub view: Option<View>,
}

async fn causal(
    s: Arc<AppState>,
    caller: Principal,
    t: String,
    event_id: String,
    uri: Uri,
    headers: HeaderMap,
    direction: Direction,
) -> Result<Indexed<CausalBody>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: CausalQuery = params(&uri)?;
    let depth = q.depth.unwrap_or(10);
    let max_nodes = q.max_nodes.unwrap_or(1000);
    if !(1..=100).contains(&depth) || !(1..=10_000).contains(&max_nodes) {
        return Err(ApiError::bad_request(
            "depth must be 1..=100 and max_nodes 1..=10000",
        ));
    }
    let endpoint = match direction {
        Direction::Causes => "GET /v1/tenants/{tenant}/events/{event_id}/causes",
        Direction::Effects => "GET /v1/tenants/{tenant}/events/{event_id}/effects",
    };
    let params = with(query_json(&uri), "event_id", event_id.clone());
    let pv = Presenter::new(&s, &tenant, q.view);
    read_query(s, caller, tenant, &headers, endpoint, params, move |ix| {
        let g = ix.causal(&event_id, direction, depth, max_nodes)?;
        let n = g.nodes.len() as u64;
        let v = |x: &dyn erased::Ser| x.json();
        Ok((
            CausalBody {
                root: g.root,
                direction: match g.direction {
                    Direction::Causes => "causes".into(),
                    Direction::Effects => "effects".into(),
                },
                depth: g.depth,
                nodes: pv.all(&g.nodes),
                edges: g.edges.iter().map(|e| v(e)).collect(),
                dangling: g.dangling.iter().map(|d| v(d)).collect(),
                truncated: g.truncated,
            },
            n,
        ))
    })
    .await
}

mod erased {
    /// Serializes any row type to a JSON value.
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}
use erased::Ser as _;

#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event_id}/causes", tag = "queries",
    params(("tenant" = String, Path), ("event_id" = String, Path), CausalQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "what led to the event", body = CausalBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn causes(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<CausalBody>, ApiError> {
    causal(s, caller, t, id, uri, headers, Direction::Causes).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event_id}/effects", tag = "queries",
    params(("tenant" = String, Path), ("event_id" = String, Path), CausalQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "what the event led to", body = CausalBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn effects(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<CausalBody>, ApiError> {
    causal(s, caller, t, id, uri, headers, Direction::Effects).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    #[param(value_type = Option<String>)]
    pub view: Option<View>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/sessions/{session_id}", tag = "queries",
    params(("tenant" = String, Path), ("session_id" = String, Path), PageQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "the session's events in order, with the check of its whole chain", body = SessionBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn session(
    State(s): S,
    Caller(caller): Caller,
    Path((t, session_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<SessionBody>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: PageQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    let params = with(query_json(&uri), "session_id", session_id.clone());
    let pv = Presenter::new(&s, &tenant, q.view);
    read_query(
        s,
        caller,
        tenant,
        &headers,
        "GET /v1/tenants/{tenant}/sessions/{session_id}",
        params,
        move |ix| {
            let r = ix.session(&session_id, &req)?;
            let n = r.events.len() as u64;
            Ok((
                SessionBody {
                    session_id: r.session_id,
                    total: r.total,
                    chain: r.chain.json(),
                    events: r.events.iter().map(|e| pv.one(&e.row)).collect(),
                    next_cursor: r.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewsQuery {
    /// approve, reject, modify or escalate.
    pub decision: Option<String>,
    pub reviewer: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[param(value_type = Option<String>)]
    pub time_field: Option<TimeField>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    #[param(value_type = Option<String>)]
    pub view: Option<View>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/reviews", tag = "queries",
    params(("tenant" = String, Path), ReviewsQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "human override history", body = ReviewsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reviews(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<ReviewsPage>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: ReviewsQuery = params(&uri)?;
    let rq = ReviewQuery {
        decision: q.decision,
        reviewer: q.reviewer,
        range: range(q.time_field, q.from.as_deref(), q.to.as_deref())?,
    };
    let req = page(q.cursor, q.limit)?;
    let pv = Presenter::new(&s, &tenant, q.view);
    read_query(
        s,
        caller,
        tenant,
        &headers,
        "GET /v1/tenants/{tenant}/reviews",
        query_json(&uri),
        move |ix| {
            let p = ix.reviews(&rq, &req)?;
            let n = p.items.len() as u64;
            Ok((
                ReviewsPage {
                    reviews: p
                        .items
                        .iter()
                        .map(|r| {
                            json!({
                                "decision": r.decision,
                                "reviewer": r.reviewer,
                                "latency_ms": r.latency_ms,
                                "proposed_event_id": r.proposed_event_id,
                                "event": pv.one(&r.row),
                            })
                        })
                        .collect(),
                    next_cursor: p.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnomaliesQuery {
    /// fast_approval, executed_after_rejection, dangling_cause, clock_skew or tool_error_burst.
    pub kind: String,
    /// fast_approval: approvals decided faster than this (default 5000).
    pub max_latency_ms: Option<i64>,
    /// clock_skew: |occurred_at − received_at| above this (default 60000).
    pub bound_ms: Option<i64>,
    /// tool_error_burst: window length (default 60000).
    pub window_ms: Option<i64>,
    /// tool_error_burst: error rate at least this (default 0.5).
    pub min_error_rate: Option<f64>,
    /// tool_error_burst: calls in the window at least this (default 5).
    pub min_calls: Option<u64>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[param(value_type = Option<String>)]
    pub time_field: Option<TimeField>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

fn anomaly_kind(q: &AnomaliesQuery) -> Result<AnomalyKind, ApiError> {
    let positive = |name: &str, v: Option<i64>, default: i64| -> Result<i64, ApiError> {
        let v = v.unwrap_or(default);
        if v <= 0 {
            return Err(ApiError::bad_request(format!("{name} must be positive")));
        }
        Ok(v)
    };
    Ok(match q.kind.as_str() {
        "fast_approval" => AnomalyKind::FastApproval {
            max_latency_ms: positive("max_latency_ms", q.max_latency_ms, 5000)?,
        },
        "executed_after_rejection" => AnomalyKind::ExecutedAfterRejection,
        "dangling_cause" => AnomalyKind::DanglingCause,
        "clock_skew" => AnomalyKind::ClockSkew {
            bound_ms: positive("bound_ms", q.bound_ms, 60_000)?,
        },
        "tool_error_burst" => {
            let rate = q.min_error_rate.unwrap_or(0.5);
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(ApiError::bad_request("min_error_rate must be in (0, 1]"));
            }
            AnomalyKind::ToolErrorBurst {
                window_ms: positive("window_ms", q.window_ms, 60_000)?,
                min_error_rate: rate,
                min_calls: q.min_calls.unwrap_or(5).max(1),
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown anomaly kind {other:?}: use fast_approval, executed_after_rejection, dangling_cause, clock_skew or tool_error_burst"
            )));
        }
    })
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/anomalies", tag = "queries",
    params(("tenant" = String, Path), AnomaliesQuery, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, body = AnomaliesPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn anomalies(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<AnomaliesPage>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: AnomaliesQuery = params(&uri)?;
    let kind = anomaly_kind(&q)?;
    let r = range(q.time_field, q.from.as_deref(), q.to.as_deref())?;
    let req = page(q.cursor, q.limit)?;
    read_query(
        s,
        caller,
        tenant,
        &headers,
        "GET /v1/tenants/{tenant}/anomalies",
        query_json(&uri),
        move |ix| {
            let p = ix.anomalies(&kind, &r, &req)?;
            let n = p.items.len() as u64;
            Ok((
                AnomaliesPage {
                    anomalies: p.items.iter().map(|a| a.json()).collect(),
                    next_cursor: p.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModelParams {
    pub version: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[param(value_type = Option<String>)]
    pub time_field: Option<TimeField>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    #[param(value_type = Option<String>)]
    pub view: Option<View>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/models/{model}", tag = "queries",
    params(("tenant" = String, Path), ("model" = String, Path, description = "the model name"), ModelParams, ("x-read-consistency" = Option<String>, Header, description = "`latest` (default): wait until the index holds every event acknowledged before the query; `indexed`: answer at once from what the index holds (see the `x-indexed-size` response header)")),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "the model's decisions by version, and what they caused", body = ModelBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model(
    State(s): S,
    Caller(caller): Caller,
    Path((t, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<ModelBody>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: ModelParams = params(&uri)?;
    let mq = ModelQuery {
        name: name.clone(),
        version: q.version,
        range: range(q.time_field, q.from.as_deref(), q.to.as_deref())?,
    };
    let req = page(q.cursor, q.limit)?;
    let params = with(query_json(&uri), "model", name);
    let pv = Presenter::new(&s, &tenant, q.view);
    read_query(
        s,
        caller,
        tenant,
        &headers,
        "GET /v1/tenants/{tenant}/models/{model}",
        params,
        move |ix| {
            let m = ix.model_attribution(&mq, &req)?;
            let n = (m.decisions.len() + m.caused.len()) as u64;
            Ok((
                ModelBody {
                    counts_by_version: m.counts_by_version.iter().map(|c| c.json()).collect(),
                    decisions: pv.all(&m.decisions),
                    caused: pv.all(&m.caused),
                    next_cursor: m.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}

// ---- checkpoints and proofs -------------------------------------------------------------------

/// The latest signed checkpoint (signed at most a second ago by the background signer), or a
/// new one if the tenant has none yet.
fn checkpoint_now(
    s: &AppState,
    tenant: &TenantId,
) -> Result<agentrail_ledger::SignedCheckpoint, ApiError> {
    if let Some(cp) = s.ledger.latest_checkpoint(tenant)? {
        return Ok(cp);
    }
    s.ledger.checkpoint(tenant).map_err(|e| match e {
        agentrail_ledger::CheckpointError::Open(o) => o.into(),
        agentrail_ledger::CheckpointError::Read(r) => r.into(),
        e => ApiError::internal(e.to_string()),
    })
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/checkpoint", tag = "proofs",
    params(("tenant" = String, Path)),
    security(("bearer" = ["events:read"]), ("bearer" = ["verify"])),
    responses(
        (status = 200, description = "C2SP signed checkpoint", body = String, content_type = "text/plain"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn checkpoint(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    blocking(move || Ok(text(checkpoint_now(&s, &tenant)?.text))).await
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
    tenant_for(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    Ok(text(format!("{}\n", s.ledger.verifier())))
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
    uri: Uri,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    let q: InclusionQuery = params(&uri)?;
    let params = query_json(&uri);
    blocking(move || {
        let seq = match (q.seq, &q.event_id) {
            (Some(seq), None) => seq,
            (None, Some(id)) => s.ledger.find(&tenant, id)?.ok_or_else(|| {
                ApiError::not_found(format!("no event with event_id {id:?} in this tenant"))
            })?,
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of seq and event_id",
                ));
            }
        };
        let cp = checkpoint_now(&s, &tenant)?;
        let p = proofs::inclusion(&s.ledger, &tenant, &cp, seq, q.tree_size)?;
        let resp = match q.format.unwrap_or_default() {
            ProofFormat::Json => Json(p.to_json()).into_response(),
            ProofFormat::Tlog => text(p.to_tlog_text(&cp)?),
        };
        record(
            &s,
            &caller,
            &tenant,
            "GET /v1/tenants/{tenant}/proofs/inclusion",
            params,
            1,
        )?;
        Ok(resp)
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
    uri: Uri,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::EventsRead, Scope::Verify])?;
    let q: ConsistencyQuery = params(&uri)?;
    let params = query_json(&uri);
    blocking(move || {
        let cp = checkpoint_now(&s, &tenant)?;
        let p = proofs::consistency(&s.ledger, &tenant, &cp, q.from, q.to)?;
        let resp = match q.format.unwrap_or_default() {
            ProofFormat::Json => Json(p.to_json()).into_response(),
            ProofFormat::Tlog => text(p.to_text()),
        };
        record(
            &s,
            &caller,
            &tenant,
            "GET /v1/tenants/{tenant}/proofs/consistency",
            params,
            1,
        )?;
        Ok(resp)
    })
    .await
}

// ---- access log -------------------------------------------------------------------------------

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
    uri: Uri,
) -> Result<Json<AccessLogPage>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let q: AccessLogQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    let params = query_json(&uri);
    blocking(move || {
        let (records, next_cursor) =
            s.access
                .logs
                .page(&tenant, req.cursor.as_deref(), req.limit)?;
        record(
            &s,
            &caller,
            &tenant,
            "GET /v1/tenants/{tenant}/access-log",
            params,
            records.len() as u64,
        )?;
        Ok(Json(AccessLogPage {
            records,
            next_cursor,
        }))
    })
    .await
}

// ---- exports ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExport {
    /// `ndjson` (default) or `parquet`.
    #[serde(default)]
    pub format: Option<String>,
    pub from_seq: Option<u64>,
    /// Exclusive.
    pub to_seq: Option<u64>,
    /// RFC 3339 on `received_at`, inclusive.
    pub from: Option<String>,
    /// RFC 3339 on `received_at`, exclusive.
    pub to: Option<String>,
    /// A named destination: exports only what it has not received (the range is ignored).
    pub destination: Option<String>,
    /// Data files are closed at this size (default 256 MiB).
    pub max_file_bytes: Option<u64>,
}

fn new_export_id() -> Result<String, ApiError> {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(e.to_string()))?;
    let ms = jiff::Timestamp::now().as_millisecond();
    Ok(format!("exp-{ms}-{}", hex::encode(b)))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/exports", tag = "exports",
    params(("tenant" = String, Path)),
    request_body = CreateExport,
    security(("bearer" = ["export"])),
    responses(
        (status = 202, description = "the export runs in the background", body = crate::exports::ExportStatus),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_export(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<crate::exports::ExportStatus>), ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::Export])?;
    let req: CreateExport = if body.is_empty() {
        json_body(b"{}")?
    } else {
        json_body(&body)?
    };
    let format = match req.format.as_deref() {
        None => agentrail_export::FileFormat::Ndjson,
        Some(f) => agentrail_export::FileFormat::parse(f)
            .ok_or_else(|| ApiError::bad_request(format!("format {f:?}: use ndjson or parquet")))?,
    };
    for (name, v) in [("from", &req.from), ("to", &req.to)] {
        if let Some(v) = v
            && v.parse::<jiff::Timestamp>().is_err()
        {
            return Err(ApiError::bad_request(format!(
                "{name} {v:?} is not an RFC 3339 timestamp"
            )));
        }
    }
    for (name, v) in [("from_seq", req.from_seq), ("to_seq", req.to_seq)] {
        if v.is_some_and(|v| v > (1 << 53) - 1) {
            return Err(ApiError::bad_request(format!("{name} is beyond any seq")));
        }
    }
    if let Some(d) = &req.destination
        && !crate::exports::valid_name(d)
    {
        return Err(ApiError::bad_request(
            "destination must be 1-64 of [a-z0-9_-]",
        ));
    }
    let job = crate::exports::JobRequest {
        format,
        selection: agentrail_export::Selection {
            from_seq: req.from_seq,
            to_seq: req.to_seq,
            from: req.from,
            to: req.to,
        },
        max_file_bytes: req
            .max_file_bytes
            .unwrap_or(agentrail_export::DEFAULT_MAX_FILE_BYTES)
            .max(4096),
        destination: req.destination,
    };
    let params = serde_json::to_value(&job).unwrap_or(Value::Null);
    let id = new_export_id()?;
    blocking(move || {
        let id = s.exports.start(s.ledger.clone(), &tenant, job, id)?;
        record(
            &s,
            &caller,
            &tenant,
            "POST /v1/tenants/{tenant}/exports",
            with(params, "export_id", id.clone()),
            0,
        )?;
        Ok((StatusCode::ACCEPTED, Json(s.exports.status(&tenant, &id)?)))
    })
    .await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{export_id}", tag = "exports",
    params(("tenant" = String, Path), ("export_id" = String, Path)),
    security(("bearer" = ["export"])),
    responses(
        (status = 200, description = "progress, and the files and manifest once done", body = crate::exports::ExportStatus),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_export(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Json<crate::exports::ExportStatus>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::Export])?;
    blocking(move || Ok(Json(s.exports.status(&tenant, &id)?))).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{export_id}/files/{name}", tag = "exports",
    params(("tenant" = String, Path), ("export_id" = String, Path), ("name" = String, Path)),
    security(("bearer" = ["export"])),
    responses(
        (status = 200, description = "the file's bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn export_file(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::Export])?;
    let st = s.clone();
    let path = {
        let (tenant, id, name) = (tenant.clone(), id.clone(), name.clone());
        blocking(move || {
            let path = st.exports.file(&tenant, &id, &name)?;
            let n = st
                .exports
                .status(&tenant, &id)?
                .manifest
                .and_then(|m| {
                    m["manifest"]["files"]
                        .as_array()?
                        .iter()
                        .find(|f| f["name"] == name.as_str())
                        .and_then(|f| f["count"].as_u64())
                })
                .unwrap_or(0);
            record(
                &st,
                &caller,
                &tenant,
                "GET /v1/tenants/{tenant}/exports/{export_id}/files/{name}",
                json!({"export_id": id, "name": name}),
                n,
            )?;
            Ok(path)
        })
        .await?
    };
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

// ---- integrity --------------------------------------------------------------------------------

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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::Verify])?;
    blocking(move || {
        let now = s.now();
        let v = s.integrity.run(
            &s.ledger,
            &tenant,
            crate::integrity::Trigger::OnDemand,
            &now,
        )?;
        Ok(Json(integrity_record(v)))
    })
    .await
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::Verify])?;
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
        let (reports, next) = s.integrity.reports(&tenant, after, req.limit)?;
        Ok(Json(IntegrityPage {
            reports: reports.into_iter().map(integrity_record).collect(),
            next_cursor: next,
        }))
    })
    .await
}

// ---- privacy ----------------------------------------------------------------------------------

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
    body: axum::body::Bytes,
) -> Result<Json<RevealBody>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::PiiReveal])?;
    let req: RevealRequest = json_body(&body)?;
    if req.tokens.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 tokens per request"));
    }
    blocking(move || {
        let values = s.privacy.reveal(&tenant, &req.tokens)?;
        let found = values.iter().filter(|(_, v)| v.is_some()).count() as u64;
        record(
            &s,
            &caller,
            &tenant,
            "POST /v1/tenants/{tenant}/tokens/reveal",
            json!({"tokens": req.tokens}),
            found,
        )?;
        Ok(Json(RevealBody {
            values: values
                .into_iter()
                .map(|(token, value)| RevealedToken { token, value })
                .collect(),
        }))
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureBody {
    pub subject_id: String,
    pub erased_at: String,
    /// Whether the subject had a key (had sealed content).
    pub had_key: bool,
    /// The receipt of the `custom.subject.erased` event recorded in the tenant's ledger.
    pub receipt: ReceiptJson,
}

/// Appends an erasure event (`custom.subject.erased` / `custom.tenant.erased`) to the tenant's
/// ledger and returns its receipt: the erasure itself is part of the audit trail.
/// After the keys are shredded: drops the erased content from the index (`subject` `None`: all
/// of it), then records the erasure as an event in the tenant's ledger.
fn record_erasure(
    s: &AppState,
    tenant: &TenantId,
    caller: &Principal,
    subject: Option<&str>,
    event_type: &str,
    payload: Value,
) -> Result<ReceiptJson, ApiError> {
    s.indexer.erase_content(tenant, subject)?;
    s.privacy.erase_tokens(tenant, subject, &s.now())?;
    let ev = json!({
        "schema_version": "1",
        "event_type": event_type,
        "occurred_at": s.now(),
        "actor": {"id": caller.key_id, "type": "service"},
        "payload": payload,
    });
    let valid = agentrail_event::validate_value(ev).map_err(|e| {
        ApiError::internal(format!(
            "the erasure event does not validate: {:?}",
            e.problems
        ))
    })?;
    let receipts = s.ledger.append(tenant, vec![valid])?;
    if let Some(r) = receipts.last() {
        s.indexer.appended(tenant, r.seq + 1)?;
    }
    let r = receipts
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("no receipt for the erasure event"))?;
    Ok(ReceiptJson {
        event_id: r.event_id,
        seq: r.seq,
        hash: r.hash,
        received_at: r.received_at,
        replayed: r.replayed,
    })
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    if subject.is_empty() || subject.len() > 256 || subject.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "subject_id must be 1-256 characters without control characters",
        ));
    }
    blocking(move || {
        let gate = s.privacy.erasure_gate(&tenant);
        let _erasing = gate.write().unwrap_or_else(|e| e.into_inner());
        let now = s.now();
        let had_key = s
            .privacy
            .vault
            .shred_subject(tenant.as_str(), &subject, &now)
            .map_err(|e| ApiError::internal(format!("vault: {e}")))?;
        let receipt = record_erasure(
            &s,
            &tenant,
            &caller,
            Some(&subject),
            "custom.subject.erased",
            json!({"subject_id": subject, "erased_at": now, "method": "crypto-shredding"}),
        )?;
        tracing::info!(%tenant, %subject, by = %caller.key_id, "subject erased");
        Ok(Json(ErasureBody {
            subject_id: subject,
            erased_at: now,
            had_key,
            receipt,
        }))
    })
    .await
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/policy", tag = "privacy",
    params(("tenant" = String, Path)),
    request_body = crate::privacy::Policy,
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the policy now in force for events ingested from now on", body = crate::privacy::Policy),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_policy(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<crate::privacy::Policy>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let policy: crate::privacy::Policy = json_body(&body)?;
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_policy",
            format!("{} problem(s) in the policy", problems.len()),
        )
        .with_details(problems));
    }
    blocking(move || {
        s.privacy.set_policy(&tenant, policy.clone())?;
        tracing::info!(%tenant, by = %caller.key_id, "policy set");
        Ok(Json(policy))
    })
    .await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/policy", tag = "privacy",
    params(("tenant" = String, Path)),
    security(("bearer" = ["tenant:admin"])),
    responses(
        (status = 200, description = "the tenant's policy (defaults until one is set)", body = crate::privacy::Policy),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
) -> Result<Json<crate::privacy::Policy>, ApiError> {
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || Ok(Json(s.privacy.policy(&tenant)?))).await
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || {
        let now = s.now();
        let kid = s
            .privacy
            .vault
            .rotate(tenant.as_str(), &now)
            .map_err(|e| ApiError::internal(format!("vault: {e}")))?;
        tracing::info!(%tenant, %kid, by = %caller.key_id, "tenant data key rotated");
        Ok(Json(RotatedKey {
            kid,
            rotated_at: now,
        }))
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    blocking(move || {
        let v = s
            .retention
            .run(&s, &tenant, crate::retention::Trigger::OnDemand)?;
        Ok(Json(v))
    })
    .await
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
    let tenant = tenant_for(&s, &caller, &t, &[Scope::TenantAdmin])?;
    let q: AccessLogQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    blocking(move || {
        let (runs, next_cursor) =
            s.retention
                .logs
                .page(&tenant, req.cursor.as_deref(), req.limit)?;
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
    if !caller.is_root() {
        return Err(ApiError::forbidden(
            "only the root key erases a whole tenant",
        ));
    }
    let tenant = TenantId::parse(&t).map_err(ApiError::bad_request)?;
    blocking(move || {
        if !s.ledger.exists(&tenant) {
            return Err(ApiError::not_found(format!(
                "tenant {tenant} does not exist"
            )));
        }
        let gate = s.privacy.erasure_gate(&tenant);
        let _erasing = gate.write().unwrap_or_else(|e| e.into_inner());
        let now = s.now();
        s.privacy
            .vault
            .shred_tenant(tenant.as_str(), &now)
            .map_err(|e| ApiError::internal(format!("vault: {e}")))?;
        let receipt = record_erasure(
            &s,
            &tenant,
            &caller,
            None,
            "custom.tenant.erased",
            json!({"erased_at": now, "method": "crypto-shredding"}),
        )?;
        tracing::warn!(%tenant, by = %caller.key_id, "all content of the tenant erased");
        Ok(Json(ErasureBody {
            subject_id: "*".into(),
            erased_at: now,
            had_key: true,
            receipt,
        }))
    })
    .await
}
