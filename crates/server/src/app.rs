//! The router: every route of `api`, collected with its OpenAPI description (so the document
//! served at `/openapi.json` cannot miss a route), request metrics and logs, and JSON answers for
//! unknown routes and methods.

use crate::api::{
    admin::*, exports::*, ingest::*, integrity::*, ops, otlp, oversight::*, privacy::*, proofs::*,
    queries::*,
};
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "agentrail",
        description = "A per-tenant, tamper-evident, queryable audit trail for AI agents. Authenticate with `Authorization: Bearer <key>`; the scopes each operation needs are listed in its security requirement (any one of them suffices).",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "events", description = "ingest"),
        (name = "otlp", description = "OpenTelemetry intake (OTLP/HTTP): GenAI spans become events of the key's tenant"),
        (name = "queries", description = "the auditor's questions"),
        (name = "proofs", description = "checkpoints and Merkle proofs"),
        (name = "admin", description = "tenants, keys, access log"),
        (name = "exports", description = "signed exports an auditor verifies offline"),
        (name = "integrity", description = "the integrity verifier and its signed reports"),
        (name = "privacy", description = "token reveal and crypto-shredding"),
        (name = "ops", description = "health and metrics")
    )
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(create_tenant))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(ingest, list_events))
        .routes(routes!(otlp::traces))
        .routes(routes!(otlp::traces_under_otlp))
        .routes(routes!(otlp::logs))
        .routes(routes!(otlp::logs_under_otlp))
        .routes(routes!(get_event))
        .routes(routes!(causes))
        .routes(routes!(effects))
        .routes(routes!(session))
        .routes(routes!(reviews))
        .routes(routes!(anomalies))
        .routes(routes!(model))
        .routes(routes!(checkpoint))
        .routes(routes!(verifier_key))
        .routes(routes!(inclusion))
        .routes(routes!(consistency))
        .routes(routes!(access_log))
        .routes(routes!(create_export))
        .routes(routes!(get_export))
        .routes(routes!(export_file))
        .routes(routes!(export_data_file))
        .routes(routes!(verify_now))
        .routes(routes!(integrity_reports))
        .routes(routes!(reveal_tokens))
        .routes(routes!(erase_subject))
        .routes(routes!(erase_tenant_content))
        .routes(routes!(put_policy, get_policy))
        .routes(routes!(run_retention, retention_runs))
        .routes(routes!(rotate_data_key))
}

fn with_security(mut api: OpenApi) -> OpenApi {
    if let Some(c) = api.components.as_mut() {
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an agentrail API key: `ar_<key_id>_<secret>`"))
                    .build(),
            ),
        );
    }
    // Any authenticated request can meet the per-address throttle on failed authentication
    // (`throttle.rs`), so every operation with a security requirement documents its 429 here,
    // in one place, rather than in each route's annotation.
    for item in api.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                op.responses
                    .responses
                    .entry("429".to_string())
                    .or_insert_with(auth_throttled_response);
            }
        }
    }
    api
}

fn auth_throttled_response() -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(
            "`too_many_auth_failures`: too many failed authentications from this address; \
             retry after `Retry-After` seconds",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// The OpenAPI document of the API (committed as `openapi.json`; served at `/openapi.json`).
pub fn openapi_document() -> OpenApi {
    with_security(api_router().split_for_parts().1)
}

/// The routes with their state, and the OpenAPI document describing exactly them.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, api) = api_router().split_for_parts();
    let doc = with_security(api);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .fallback(|| async {
            ApiError::not_found("no such endpoint; the API is described at /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take this method; see /openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts and times every request by route template, and logs it.
async fn observe(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if s.drain.draining() {
        // Shutting down: answer at once, and tell keep-alive clients not to come back here.
        let mut resp =
            crate::error::ApiError::unavailable("shutting_down", "the server is shutting down", 1)
                .into_response();
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return resp;
    }
    let _active = s.drain.enter();
    let started = Instant::now();
    let service = s.service.clone();
    let req = req.map(|b| {
        axum::body::Body::new(crate::conn::Paced::new(
            b,
            std::time::Duration::from_millis(s.cfg.body_stall_timeout_ms),
            s.cfg.min_body_bytes_per_sec,
            move || {
                service.metrics().http_slow_bodies.inc();
            },
        ))
    });
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    let metrics = s.service.metrics();
    metrics
        .http_requests
        .get_or_create(&agentrail_service::metrics::RouteLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&agentrail_service::metrics::RouteOnly {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(secs);
    if status >= 500 {
        tracing::warn!(%method, %route, status, ms = secs * 1000.0, "request failed");
    } else {
        tracing::debug!(%method, %route, status, ms = secs * 1000.0, "request");
    }
    let mut resp = resp.into_response();
    if s.drain.draining() {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}
