//! Health, readiness and Prometheus metrics.

use crate::error::{ApiError, ErrorBody};
use crate::extract::S;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

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
    if s.service.ready() {
        "ready\n".into_response()
    } else {
        ApiError::unavailable("not_ready", "the data directory is gone", 5).into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus/OpenMetrics text", body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(s): S) -> Response {
    let service = s.service.clone();
    let text = tokio::task::spawn_blocking(move || service.metrics_text())
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
