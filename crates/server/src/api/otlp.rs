//! OTLP/HTTP intake (DESIGN.md §9.1): `POST /v1/traces` and `POST /v1/logs`, also under
//! `/otlp/`. The key decides
//! the tenant, never an attribute. The body is read like any ingest body (size limit after
//! gzip, pace, memory) and admitted through the same append slots; `agentrail_otlp` decodes
//! and maps it, and [`agentrail_service::Service::ingest_each`] stores every span that makes a
//! valid event. Answers follow the OTLP/HTTP spec, in the request's encoding: an
//! `ExportTraceServiceResponse` (with `partial_success` naming what was rejected) or, for a
//! refused request, a `google.rpc.Status` with 400 / 401 / 403 / 413 / 415 / 429 / 503.

use crate::api::ingest::{read_body, with_append_slot};
use crate::error::ApiError;
use crate::extract::{Caller, S};
use crate::state::AppState;
use agentrail_otlp::{Encoding, Signal};
use agentrail_service::Scope;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// At most this many rejected items are named in a partial-success message.
const NAMED_REJECTIONS: usize = 10;

fn content_type(enc: Encoding) -> HeaderValue {
    HeaderValue::from_static(match enc {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    })
}

fn answer(enc: Encoding, status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type(enc));
    resp
}

/// A refused request as OTLP/HTTP says: the status, a `google.rpc.Status` body, and
/// `Retry-After` where the client should come back.
fn refusal(enc: Encoding, e: ApiError) -> Response {
    let body = agentrail_otlp::status_body(enc, e.status.as_u16(), &e.message);
    let mut resp = answer(enc, e.status, body);
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The tenant of the key: OTLP requests carry no tenant of their own.
fn tenant_of(
    s: &AppState,
    caller: &agentrail_service::Principal,
) -> Result<agentrail_event::TenantId, ApiError> {
    let Some(own) = &caller.tenant else {
        return Err(ApiError::forbidden(
            "the root key administers tenants; export spans with a tenant key holding events:write",
        ));
    };
    Ok(s.service
        .authorize(caller, own.as_str(), &[Scope::EventsWrite])?)
}

/// What the ingest takes of mapped spans or log records: each one's event, or why there is none.
fn events(mapped: Vec<agentrail_otlp::MappedSpan>) -> Vec<Result<serde_json::Value, String>> {
    mapped.into_iter().map(|m| m.event).collect()
}

/// Decodes a request (a malformed one is a 400), then stores its mapped items through
/// [`agentrail_service::Service::ingest_each`]: mapped only once the tenant takes events, and
/// decoded and mapped again from the body should the ledger refuse one item. Also each item's
/// label for the rejection message.
fn ingest_mapped<R>(
    service: &agentrail_service::Service,
    tenant: &agentrail_event::TenantId,
    decode: impl Fn() -> Result<R, agentrail_otlp::OtlpError>,
    map: impl Fn(R) -> Vec<agentrail_otlp::MappedSpan>,
    label: impl Fn(usize, &agentrail_otlp::MappedSpan) -> String,
) -> Result<(Vec<String>, agentrail_service::Accepted), ApiError> {
    let mut first = Some(decode().map_err(|e| ApiError::bad_request(e.to_string()))?);
    let mut labels = Vec::new();
    let accepted = service.ingest_each(tenant, || {
        let mapped = first
            .take()
            .or_else(|| decode().ok())
            .map(&map)
            .unwrap_or_default();
        labels = mapped
            .iter()
            .enumerate()
            .map(|(i, m)| label(i, m))
            .collect();
        events(mapped)
    })?;
    Ok((labels, accepted))
}

/// Why the items at these positions were rejected, as one message.
fn rejection_message(total: usize, labels: &[String], rejected: &[(usize, String)]) -> String {
    let mut msg = format!("{} of {total} rejected: ", rejected.len());
    let named: Vec<String> = rejected
        .iter()
        .take(NAMED_REJECTIONS)
        .map(|(i, why)| format!("{}: {why}", labels[*i]))
        .collect();
    msg.push_str(&named.join("; "));
    if rejected.len() > NAMED_REJECTIONS {
        msg.push_str(&format!("; and {} more", rejected.len() - NAMED_REJECTIONS));
    }
    msg
}

async fn export(
    s: Arc<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(enc) = Encoding::from_content_type(ct) else {
        return refusal(
            Encoding::Json,
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "content type {ct:?} is not OTLP: send application/x-protobuf or application/json"
                ),
            ),
        );
    };
    match export_in(&s, caller, &headers, body, signal, enc).await {
        Ok(body) => answer(enc, StatusCode::OK, body),
        Err(e) => refusal(enc, e),
    }
}

async fn export_in(
    s: &AppState,
    caller: Result<Caller, ApiError>,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
    enc: Encoding,
) -> Result<Vec<u8>, ApiError> {
    let Caller(caller) = caller?;
    let tenant = tenant_of(s, &caller)?;
    let held = read_body(s, headers, body).await?;
    let service = s.service.clone();
    with_append_slot(s, move || {
        // A malformed body is refused first. The spans (or log records) are mapped only once
        // the tenant takes events; the body stays until the ingest is done, so that should the
        // ledger refuse one item the others are decoded and mapped again from it.
        let (labels, accepted) = match signal {
            Signal::Traces => ingest_mapped(
                &service,
                &tenant,
                || agentrail_otlp::decode_traces(&held.bytes, enc),
                agentrail_otlp::map_traces,
                |i, m| match &m.event_id {
                    Some(id) => format!("span {i} ({id})"),
                    None => format!("span {i}"),
                },
            )?,
            Signal::Logs => ingest_mapped(
                &service,
                &tenant,
                || agentrail_otlp::decode_logs(&held.bytes, enc),
                agentrail_otlp::map_logs,
                |i, _| format!("log record {i}"),
            )?,
        };
        let total = labels.len();
        let message = if accepted.rejected.is_empty() {
            String::new()
        } else {
            rejection_message(total, &labels, &accepted.rejected)
        };
        Ok(agentrail_otlp::export_response(
            signal,
            enc,
            accepted.rejected.len() as u64,
            &message,
        ))
    })
    .await
}

/// One OTLP/HTTP export route: the handler and its OpenAPI description (the `/otlp/` twins of
/// the standard paths share everything but the path).
macro_rules! export_route {
    ($name:ident, $signal:expr, $path:literal, $request:literal, $ok:literal) => {
        #[utoipa::path(post, path = $path, tag = "otlp",
            request_body(description = $request,
                content((String = "application/x-protobuf"), (Object = "application/json"))),
            security(("bearer" = ["events:write"])),
            responses(
                (status = 200, description = $ok),
                (status = 400, description = "a malformed request (a `google.rpc.Status`; nothing was stored)"),
                (status = 401, description = "no valid key"),
                (status = 403, description = "the key lacks events:write, or is the root key"),
                (status = 408, description = "the body stalled"),
                (status = 413, description = "the body, after decompression, is above the limit"),
                (status = 415, description = "not an OTLP content type or encoding"),
                (status = 503, description = "saturated; retry after `Retry-After` seconds")))]
        pub async fn $name(
            State(s): S,
            caller: Result<Caller, ApiError>,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            export(s, caller, headers, body, $signal).await
        }
    };
}

export_route!(
    traces,
    Signal::Traces,
    "/v1/traces",
    "An OTLP `ExportTraceServiceRequest`: protobuf (`application/x-protobuf`) or OTLP JSON (`application/json`), optionally `Content-Encoding: gzip`. Each span becomes one event (`otel-<trace_id>-<span_id>`) of the key's tenant.",
    "an `ExportTraceServiceResponse` in the request's encoding: every span durable, or `partialSuccess` with `rejectedSpans` and a message naming each rejected span and why"
);
export_route!(
    traces_under_otlp,
    Signal::Traces,
    "/otlp/v1/traces",
    "The same as `POST /v1/traces`, for exporters configured with an `/otlp` base path.",
    "as `POST /v1/traces`"
);
export_route!(
    logs,
    Signal::Logs,
    "/v1/logs",
    "An OTLP `ExportLogsServiceRequest`: protobuf or OTLP JSON, optionally gzip. GenAI log events (`gen_ai.client.inference.operation.details`, `gen_ai.*.message`, `gen_ai.choice`) and any other record become `custom.otel.log` events caused by the span they name, body sealed; `agentrail.review.*` records become reviews.",
    "an `ExportLogsServiceResponse`: every record durable, or `partialSuccess` with `rejectedLogRecords` and a message naming each rejected record and why"
);
export_route!(
    logs_under_otlp,
    Signal::Logs,
    "/otlp/v1/logs",
    "The same as `POST /v1/logs`, for exporters configured with an `/otlp` base path.",
    "as `POST /v1/logs`"
);
