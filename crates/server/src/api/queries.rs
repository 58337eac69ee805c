//! The auditor's questions over HTTP: events with filters, one event (with its inclusion proof),
//! causes and effects, and sessions with their chain check (reviews, anomalies and model
//! attribution are in `oversight`). Each is one [`agentrail_service::Service::read`], which records the read in the
//! tenant's access log before the answer goes out.

use crate::api::{View, page, range};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    Caller, Indexed, ReadConsistencyHeader, Route, S, consistency, indexed, logged_read, params,
    query_json, tenant, with,
};
use crate::state::AppState;
use agentrail_event::TenantId;
use agentrail_index::{Direction, EventFilter, IndexError, TenantIndex, TimeField};
use agentrail_service::{Presenter, Principal, Scope};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Runs `f` on the index with the event presenter the
/// view asks for, and logs the read under `route` with `params`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn query<T: Serialize + Send + 'static>(
    s: Arc<AppState>,
    caller: Principal,
    tenant: TenantId,
    route: Route,
    headers: &HeaderMap,
    view: Option<View>,
    params: Value,
    f: impl FnOnce(&TenantIndex, &Presenter) -> Result<(T, u64), IndexError> + Send + 'static,
) -> Result<Indexed<T>, ApiError> {
    let c = consistency(headers)?;
    let pv = s
        .service
        .presenter(&tenant, view.unwrap_or_default().decrypts());
    logged_read(caller, tenant, route, params, move |req| {
        let (out, size) = s.service.read(req, c, |ix| f(ix, &pv))?;
        Ok(indexed(out, size))
    })
    .await
}

/// Serializes any row type to a JSON value.
pub(crate) fn to_json<T: Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
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
pub struct EventBody {
    #[schema(value_type = Object)]
    pub event: Value,
    /// With `?proof=true`: the inclusion proof (JSON form).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<Value>,
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
    params(("tenant" = String, Path), EventsQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, body = EventsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_events(
    State(s): S,
    Caller(caller): Caller,
    Path(t): Path<String>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<EventsPage>, ApiError> {
    let tn = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
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
    query(
        s,
        caller,
        tn,
        route,
        &headers,
        q.view,
        query_json(&uri),
        move |ix, pv| {
            let p = ix.events(&filter, &req)?;
            let n = p.items.len() as u64;
            let events = pv.all(&p.items)?;
            Ok((
                EventsPage {
                    events,
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
    params(("tenant" = String, Path), ("event_id" = String, Path), EventQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, body = EventBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_event(
    State(s): S,
    Caller(caller): Caller,
    Path((t, event_id)): Path<(String, String)>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<EventBody>, ApiError> {
    let tenant = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: EventQuery = params(&uri)?;
    let params = with(query_json(&uri), "event_id", event_id.clone());
    let c = consistency(&headers)?;
    let pv = s
        .service
        .presenter(&tenant, q.view.unwrap_or_default().decrypts());
    logged_read(caller, tenant, route, params, move |req| {
        let proof = q.proof.unwrap_or(false).then_some(q.tree_size);
        let (row, proof, size) = s.service.event(req, c, &event_id, proof)?;
        let body = EventBody {
            event: pv
                .one(&row)
                .map_err(agentrail_service::ServiceError::from)?,
            proof: proof.map(|p| p.to_json()),
        };
        Ok(indexed(body, size))
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

#[allow(clippy::too_many_arguments)]
async fn causal(
    s: Arc<AppState>,
    caller: Principal,
    t: String,
    event_id: String,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
    direction: Direction,
) -> Result<Indexed<CausalBody>, ApiError> {
    let tn = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: CausalQuery = params(&uri)?;
    let depth = q.depth.unwrap_or(10);
    let max_nodes = q.max_nodes.unwrap_or(1000);
    if !(1..=100).contains(&depth) || !(1..=10_000).contains(&max_nodes) {
        return Err(ApiError::bad_request(
            "depth must be 1..=100 and max_nodes 1..=10000",
        ));
    }
    let params = with(query_json(&uri), "event_id", event_id.clone());
    query(
        s,
        caller,
        tn,
        route,
        &headers,
        q.view,
        params,
        move |ix, pv| {
            let g = ix.causal(&event_id, direction, depth, max_nodes)?;
            let n = g.nodes.len() as u64;
            Ok((
                CausalBody {
                    root: g.root,
                    direction: match g.direction {
                        Direction::Causes => "causes".into(),
                        Direction::Effects => "effects".into(),
                    },
                    depth: g.depth,
                    nodes: pv.all(&g.nodes)?,
                    edges: g.edges.iter().map(to_json).collect(),
                    dangling: g.dangling.iter().map(to_json).collect(),
                    truncated: g.truncated,
                },
                n,
            ))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event_id}/causes", tag = "queries",
    params(("tenant" = String, Path), ("event_id" = String, Path), CausalQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "what led to the event", body = CausalBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn causes(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id)): Path<(String, String)>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<CausalBody>, ApiError> {
    causal(s, caller, t, id, route, uri, headers, Direction::Causes).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/events/{event_id}/effects", tag = "queries",
    params(("tenant" = String, Path), ("event_id" = String, Path), CausalQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "what the event led to", body = CausalBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn effects(
    State(s): S,
    Caller(caller): Caller,
    Path((t, id)): Path<(String, String)>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<CausalBody>, ApiError> {
    causal(s, caller, t, id, route, uri, headers, Direction::Effects).await
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
    params(("tenant" = String, Path), ("session_id" = String, Path), PageQuery, ReadConsistencyHeader),
    security(("bearer" = ["events:read"])),
    responses(
        (status = 200, description = "the session's events in order, with the check of its whole chain", body = SessionBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn session(
    State(s): S,
    Caller(caller): Caller,
    Path((t, session_id)): Path<(String, String)>,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Indexed<SessionBody>, ApiError> {
    let tn = tenant(&s, &caller, &t, &[Scope::EventsRead])?;
    let q: PageQuery = params(&uri)?;
    let req = page(q.cursor, q.limit)?;
    let params = with(query_json(&uri), "session_id", session_id.clone());
    query(
        s,
        caller,
        tn,
        route,
        &headers,
        q.view,
        params,
        move |ix, pv| {
            let r = ix.session(&session_id, &req)?;
            let n = r.events.len() as u64;
            Ok((
                SessionBody {
                    session_id: r.session_id,
                    total: r.total,
                    chain: to_json(&r.chain),
                    events: r
                        .events
                        .iter()
                        .map(|e| pv.one(&e.row))
                        .collect::<Result<_, _>>()?,
                    next_cursor: r.next_cursor,
                },
                n,
            ))
        },
    )
    .await
}
