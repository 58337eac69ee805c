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

/// The two exposition formats `/metrics` speaks.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "the metrics, in the format the `Accept` header prefers: OpenMetrics 1.0 (`application/openmetrics-text`, what Prometheus asks for first) or the Prometheus text format 0.0.4 (`text/plain`, also without an `Accept` header)",
        content((String = "application/openmetrics-text"), (String = "text/plain")))))]
pub async fn metrics(State(s): S, headers: axum::http::HeaderMap) -> Response {
    let service = s.service.clone();
    let text = tokio::task::spawn_blocking(move || service.metrics_text())
        .await
        .unwrap_or_default();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if prefers_openmetrics(accept) {
        ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            prometheus_text(&text),
        )
            .into_response()
    }
}

/// Whether an `Accept` header ranks OpenMetrics at least as high as plain text (RFC 9110
/// quality values; `*/*` and `text/*` count for text). No header: plain text.
fn prefers_openmetrics(accept: &str) -> bool {
    let (mut open, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => open = open.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    open > 0.0 && open >= text
}

/// OpenMetrics text (what the metrics library writes) as the Prometheus text format 0.0.4:
/// a counter's `HELP` and `TYPE` name its `_total` sample, `UNIT` lines and the `# EOF`
/// terminator go. Samples are the same lines. (Hand-written: the library encodes only
/// OpenMetrics, and this is a line rewrite.)
fn prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_picks_the_format() {
        // What Prometheus 2.x/3.x sends.
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!prefers_openmetrics(""));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics("text/plain; version=0.0.4"));
        assert!(!prefers_openmetrics(
            "text/plain;q=0.9, application/openmetrics-text;q=0.5"
        ));
        assert!(!prefers_openmetrics("application/openmetrics-text;q=0"));
        assert!(prefers_openmetrics("Application/OpenMetrics-Text"));
    }

    #[test]
    fn counters_are_named_by_their_samples_in_the_text_format() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\n# UNIT a_requests requests\na_requests_total{x=\"1\"} 3\n# HELP a_lag Lag.\n# TYPE a_lag gauge\na_lag 7\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n# HELP a_lag Lag.\n# TYPE a_lag gauge\na_lag 7\n"
        );
    }
}
