//! Oversight questions over HTTP: human reviews (override history), anomalies and model
//! attribution. Like every query, each is one logged read of the service.

use crate::api::queries::{query, to_json};
use crate::api::{View, page, range};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    Caller, Indexed, ReadConsistencyHeader, Route, S, params, query_json, tenant, with,
};
use agentrail_index::{AnomalyKind, IndexError, ModelQuery, ReviewQuery, TimeField};
use agentrail_service::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

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
    params(("tenant" = String, Path), ReviewsQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "human override history", body = ReviewsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn reviews(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<ReviewsPage>, ApiError> {
    let tn = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: ReviewsQuery = params(&uri)?;
    let rq = ReviewQuery {
        decision: q.decision,
        reviewer: q.reviewer,
        range: range(q.time_field, q.from.as_deref(), q.to.as_deref())?,
    };
    let req = page(q.cursor, q.limit)?;
    query(
        s,
        caller,
        tn,
        route,
        &headers,
        q.view,
        query_json(&uri),
        move |ix, pv| {
            let p = ix.reviews(&rq, &req)?;
            let n = p.items.len() as u64;
            let reviews = p
                .items
                .iter()
                .map(|r| {
                    Ok(json!({
                        "decision": r.decision,
                        "reviewer": r.reviewer,
                        "latency_ms": r.latency_ms,
                        "proposed_event_id": r.proposed_event_id,
                        "event": pv.one(&r.row)?,
                    }))
                })
                .collect::<Result<_, IndexError>>()?;
            Ok((
                ReviewsPage {
                    reviews,
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
    params(("tenant" = String, Path), AnomaliesQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, body = AnomaliesPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn anomalies(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<AnomaliesPage>, ApiError> {
    let tn = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: AnomaliesQuery = params(&uri)?;
    let kind = anomaly_kind(&q)?;
    let r = range(q.time_field, q.from.as_deref(), q.to.as_deref())?;
    let req = page(q.cursor, q.limit)?;
    query(
        s,
        caller,
        tn,
        route,
        &headers,
        None,
        query_json(&uri),
        move |ix, _| {
            let p = ix.anomalies(&kind, &r, &req)?;
            let n = p.items.len() as u64;
            Ok((
                AnomaliesPage {
                    anomalies: p.items.iter().map(to_json).collect(),
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
    params(("tenant" = String, Path), ("model" = String, Path, description = "the model name"), ModelParams, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "the model's decisions by version, and what they caused", body = ModelBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model(
    State(s): S,
    Caller(caller): Caller,
    Path((t, name)): Path<(String, String)>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<ModelBody>, ApiError> {
    let tn = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: ModelParams = params(&uri)?;
    let mq = ModelQuery {
        name: name.clone(),
        version: q.version,
        range: range(q.time_field, q.from.as_deref(), q.to.as_deref())?,
    };
    let req = page(q.cursor, q.limit)?;
    let params = with(query_json(&uri), "model", name);
    query(
        s,
        caller,
        tn,
        route,
        &headers,
        q.view,
        params,
        move |ix, pv| {
            let m = ix.model_attribution(&mq, &req)?;
            let n = (m.decisions.len() + m.caused.len()) as u64;
            Ok((
                ModelBody {
                    counts_by_version: m.counts_by_version.iter().map(to_json).collect(),
                    decisions: pv.all(&m.decisions)?,
                    caused: pv.all(&m.caused)?,
                    next_cursor: m.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}
