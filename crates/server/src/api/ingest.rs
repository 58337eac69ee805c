//! `POST /v1/tenants/{tenant}/events`: the HTTP intake. The body is read here (size limit, gzip)
//! and admitted (append slots, 503 + Retry-After beyond them); everything else is
//! [`agentrail_service::Service::ingest`].

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, S, blocking, tenant};
use crate::state::AppState;
use agentrail_event::batch::BatchFormat;
use agentrail_ledger::Receipt;
use agentrail_service::Scope;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use std::io::Read;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptsBody {
    pub receipts: Vec<ReceiptJson>,
    /// A C2SP checkpoint signed by the log key whose tree holds every receipt's event: kept
    /// with the receipts, it proves later that an acknowledged event was dropped or altered
    /// (`agentrail verify --receipts`). Absent when the server runs without signed receipts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// `POST …/events?proofs=true`: each receipt also carries its inclusion proof in the checkpoint.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IngestQuery {
    #[serde(default)]
    pub proofs: bool,
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
    /// With `proofs=true`: the event's RFC 6962 leaf hash, SHA-256(0x00 ‖ its stored bytes)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// ... and its inclusion proof in the answer's checkpoint (hex hashes, leaf to root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inclusion: Option<Vec<String>>,
}

impl From<Receipt> for ReceiptJson {
    fn from(r: Receipt) -> ReceiptJson {
        ReceiptJson {
            event_id: r.event_id,
            seq: r.seq,
            hash: r.hash,
            received_at: r.received_at,
            replayed: r.replayed,
            leaf_hash: None,
            inclusion: None,
        }
    }
}

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

/// A request body read into memory, counted against `max_body_memory_bytes` until dropped.
pub(crate) struct HeldBody {
    pub(crate) bytes: Vec<u8>,
    _memory: tokio::sync::OwnedSemaphorePermit,
}

fn memory_full() -> ApiError {
    ApiError::unavailable(
        "busy",
        "too many request bodies are being received at once; retry shortly",
        1,
    )
}

/// Counts `n` more bytes of bodies in memory, at once or not at all.
fn hold(
    s: &AppState,
    held: &mut tokio::sync::OwnedSemaphorePermit,
    n: usize,
) -> Result<(), ApiError> {
    let n = u32::try_from(n).map_err(|_| memory_full())?;
    let more = s
        .body_memory
        .clone()
        .try_acquire_many_owned(n)
        .map_err(|_| memory_full())?;
    held.merge(more);
    Ok(())
}

fn body_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    if let Some(slow) = crate::conn::BodyTooSlow::within(e) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_too_slow",
            slow.to_string(),
        );
    }
    ApiError::bad_request(format!("cannot read the request body: {e}"))
}

/// The body, gzip-decoded if so encoded, at most `max_body_bytes` either way. It is read frame
/// by frame, each counted against the memory for bodies as it arrives.
pub(crate) async fn read_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<HeldBody, ApiError> {
    use http_body_util::BodyExt;
    let max = s.cfg.max_body_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large("the request body", max));
    }
    let mut memory = s
        .body_memory
        .clone()
        .try_acquire_many_owned(0)
        .map_err(|_| memory_full())?;
    let mut raw: Vec<u8> = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&e))?;
        if let Ok(data) = frame.into_data() {
            if raw.len() + data.len() > max {
                return Err(too_large("the request body", max));
            }
            hold(s, &mut memory, data.len())?;
            raw.extend_from_slice(&data);
        }
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    let bytes = match encoding.as_deref() {
        None | Some("identity") => raw,
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
            hold(s, &mut memory, out.len())?;
            out
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("content encoding {other:?} is not accepted: send gzip or none"),
            ));
        }
    };
    Ok(HeldBody {
        bytes,
        _memory: memory,
    })
}

fn busy() -> ApiError {
    ApiError::unavailable("busy", "the sequencer is saturated; retry shortly", 1)
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/events", tag = "events",
    params(("tenant" = String, Path), IngestQuery),
    request_body(description = "One event object, a JSON array of events, or NDJSON (`application/x-ndjson`); optionally `Content-Encoding: gzip`. All-or-nothing.",
        content((Object = "application/json"), (String = "application/x-ndjson"))),
    security(("bearer" = ["events:write"])),
    responses(
        (status = 200, description = "every event is durable", body = ReceiptsBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 408, description = "`body_too_slow`: the body stalled or arrived below the minimum rate; the connection is closed", body = ErrorBody),
        (status = 409, description = "an event_id was used for different content", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "invalid events: every problem with its line or index and field path", body = ErrorBody),
        (status = 503, description = "saturated; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn ingest(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReceiptsBody>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::EventsWrite])?;
    let q: IngestQuery = crate::extract::params(&uri)?;
    let format = body_format(&headers)?;
    // The body first (its own limits: size, pace, memory), so a client that stalls holds no
    // append slot; then the bounded queue: beyond twice the append slots, refuse at once.
    let held = read_body(&s, &headers, body).await?;
    let service = s.service.clone();
    let (receipts, signed) = with_append_slot(&s, move || {
        let receipts = service.ingest(&tenant, &held.bytes, format)?;
        let signed = service.sign_receipts(&tenant, &receipts, q.proofs)?;
        Ok((receipts, signed))
    })
    .await?;
    let mut body = ReceiptsBody {
        receipts: receipts.into_iter().map(ReceiptJson::from).collect(),
        checkpoint: None,
    };
    if let Some((checkpoint, proofs)) = signed {
        for (r, p) in body.receipts.iter_mut().zip(proofs) {
            r.leaf_hash = Some(p.leaf_hash);
            r.inclusion = Some(p.inclusion);
        }
        body.checkpoint = Some(checkpoint);
    }
    Ok(Json(body))
}

/// Runs an ingest `f` on a blocking thread once it holds an append slot: counted in the bounded
/// queue (beyond twice the slots, refused at once), waiting at most `append_wait_ms` for a
/// slot, 503 + Retry-After otherwise. Every HTTP intake path goes through here.
pub(crate) async fn with_append_slot<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let metrics = s.service.metrics();
    let Some(_admitted) = s.admission.admit(&s.service) else {
        metrics.reject("busy");
        return Err(busy());
    };
    let permit = tokio::time::timeout(
        Duration::from_millis(s.cfg.append_wait_ms),
        s.admission.slots.clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(permit)) = permit else {
        metrics.reject("busy");
        return Err(busy());
    };
    blocking(move || {
        let _permit = permit;
        f()
    })
    .await
}
