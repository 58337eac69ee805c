//! Export jobs: start one, follow it, download its files (each download is logged).

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Route, S, blocking, json_body, logged_read, tenant};
use agentrail_service::Scope;
use agentrail_service::exports::{ExportStatus, JobRequest};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

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
    /// Parquet: `decrypted` opens the sealed content into the content columns (`prompt`,
    /// `output`, …), tokenized; needs `events:read`, and is the default for a key that has it.
    /// `stored`: sealed fields read as null (they stay sealed in `stored` either way). An NDJSON
    /// export is always the stored events.
    pub view: Option<super::View>,
    /// Export against the newest checkpoint the configured witnesses cosigned (its size bounds
    /// the range; the manifest carries the cosignatures, for `verify-export --witness KEY
    /// --min-witnesses N`) instead of the latest. 409 `not_ready` while none is cosigned.
    #[serde(default)]
    pub cosigned: bool,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/exports", tag = "exports",
    params(("tenant" = String, Path)),
    request_body = CreateExport,
    security(("bearer" = ["export"])),
    responses(
        (status = 202, description = "the export runs in the background", body = ExportStatus),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`cosigned`: no checkpoint is cosigned yet", body = ErrorBody)))]
pub async fn create_export(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ExportStatus>), ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::Export])?;
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
        && !agentrail_service::exports::valid_name(d)
    {
        return Err(ApiError::bad_request(
            "destination must be 1-64 of [a-z0-9_-]",
        ));
    }
    let may_read = caller.scopes.contains(&Scope::EventsRead);
    let content = match (req.view, format) {
        (Some(super::View::Decrypted), agentrail_export::FileFormat::Ndjson) => {
            return Err(ApiError::bad_request(
                "view decrypted: an NDJSON export holds the stored events exactly; content columns are Parquet's (format parquet)",
            ));
        }
        (Some(super::View::Decrypted), _) if !may_read => {
            return Err(ApiError::forbidden(
                "view decrypted opens sealed content: the key needs events:read (or ask view stored)",
            ));
        }
        (Some(super::View::Stored), _) | (_, agentrail_export::FileFormat::Ndjson) => false,
        (Some(super::View::Decrypted), _) => true,
        (None, _) => may_read,
    };
    let job = JobRequest {
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
        content,
        cosigned: req.cosigned,
        checkpoint: None,
    };
    let params = serde_json::to_value(&job).unwrap_or(Value::Null);
    logged_read(caller, tenant, route, params, move |read| {
        Ok((
            StatusCode::ACCEPTED,
            Json(s.service.start_export(read, job)?),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{export_id}", tag = "exports",
    params(("tenant" = String, Path), ("export_id" = String, Path)),
    security(("bearer" = ["export"])),
    responses(
        (status = 200, description = "progress, and the files and manifest once done", body = ExportStatus),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_export(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id)): Path<(String, String)>,
) -> Result<Json<ExportStatus>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::Export])?;
    blocking(move || Ok(Json(s.service.export_status(&tenant, &id)?))).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{export_id}/files/{name}", tag = "exports",
    params(("tenant" = String, Path), ("export_id" = String, Path),
        ("name" = String, Path, description = "`manifest.json`, or a data file's listed name with its `/` encoded")),
    security(("bearer" = ["export"])),
    responses(
        (status = 200, description = "the file's bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn export_file(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id, name)): Path<(String, String, String)>,
    route: Route,
) -> Result<Response, ApiError> {
    send_export_file(s, caller, route, t, id, name).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/exports/{export_id}/files/data/{name}", tag = "exports",
    params(("tenant" = String, Path), ("export_id" = String, Path),
        ("name" = String, Path, description = "a data file in the export's `data/` folder, as listed without `data/`")),
    security(("bearer" = ["export"])),
    responses(
        (status = 200, description = "the file's bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn export_data_file(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id, name)): Path<(String, String, String)>,
    route: Route,
) -> Result<Response, ApiError> {
    let name = format!("{}/{name}", agentrail_export::DATA_DIR);
    send_export_file(s, caller, route, t, id, name).await
}

/// Streams a file the export lists by `name` (its path relative to the manifest); the download
/// is logged.
async fn send_export_file(
    s: std::sync::Arc<crate::state::AppState>,
    caller: agentrail_service::Principal,
    route: Route,
    t: String,
    id: String,
    name: String,
) -> Result<Response, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::Export])?;
    let params = json!({"export_id": &id, "name": &name});
    let path = logged_read(caller, tenant, route, params, move |read| {
        Ok(s.service.export_file(read, &id, &name)?)
    })
    .await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}
