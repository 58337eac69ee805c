//! Health, readiness and Prometheus metrics.

use crate::extract::S;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "the process is up", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "ready to take requests", body = Readiness),
        (status = 503, description = "not ready: each problem says which check failed and why (storage full, a tenant's writer healing, an index rebuilding or far behind, ingest saturated, the data directory gone)", body = Readiness)))]
pub async fn readyz(State(s): S) -> Response {
    let service = s.service.clone();
    let mut problems = tokio::task::spawn_blocking(move || service.readiness())
        .await
        .unwrap_or_else(|e| {
            vec![serde_json::json!({"check": "internal", "reason": e.to_string()})]
        });
    if s.admission.saturated() {
        problems.push(serde_json::json!({
            "check": "ingest_queue",
            "reason": "every ingest slot is taken and the wait list is full",
        }));
    }
    let ready = problems.is_empty();
    let body = Json(Readiness { ready, problems });
    if ready {
        body.into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            body,
        )
            .into_response()
    }
}

/// What `/readyz` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `{check, reason, tenant?}` per problem; empty when ready.
    pub problems: Vec<serde_json::Value>,
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
