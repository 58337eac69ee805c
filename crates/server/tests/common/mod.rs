//! The HTTP test harness the api, privacy and integrity tests share: a server in process on a
//! fresh data directory, and one way to send it a request (tower `oneshot`, no sockets).

#![allow(dead_code)]

use agentrail_ledger::Clock;
use agentrail_server::{AppState, ServerConfig, router};
use agentrail_service::Service;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use std::sync::Arc;
use tower::ServiceExt;

/// A server in process: its state, its router and the root key of its first start.
pub struct TestServer {
    pub state: Arc<AppState>,
    pub app: Router,
    pub root: String,
    pub dir: tempfile::TempDir,
}

/// Opens a server on a fresh data directory (`tune` adjusts the config; `clock` replaces the
/// system clock).
pub fn open(tune: impl FnOnce(&mut ServerConfig), clock: Option<Arc<dyn Clock>>) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::on(dir.path());
    tune(&mut cfg);
    let opened = match clock {
        Some(c) => Service::open_with_clock(cfg.service.clone(), c),
        None => Service::open(cfg.service.clone()),
    }
    .unwrap();
    let root = opened.new_root_key.clone().unwrap();
    let state = AppState::new(cfg, opened.service.clone());
    TestServer {
        app: router(state.clone()),
        state,
        root,
        dir,
    }
}

/// An answer: status, headers, body bytes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// Asserts the status, showing the body when it is another.
    pub fn expect(&self, status: StatusCode) -> &Answer {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

/// Sends one request; `key` goes in `Authorization: Bearer`.
pub async fn send(
    app: &Router,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (h, v) in headers {
        req = req.header(*h, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// Creates a tenant with the root key; the answer (201, or 409 when it exists).
pub async fn create_tenant(app: &Router, root: &str, tenant: &str) -> Answer {
    let body = serde_json::json!({"tenant_id": tenant})
        .to_string()
        .into_bytes();
    send(
        app,
        "POST",
        "/v1/tenants",
        Some(root),
        &[("content-type", "application/json")],
        body,
    )
    .await
}

/// Creates a key of `tenant` with `scopes` (root key); the key.
pub async fn create_key(app: &Router, root: &str, tenant: &str, scopes: &[&str]) -> String {
    let body = serde_json::json!({"scopes": scopes, "name": "test"})
        .to_string()
        .into_bytes();
    let a = send(
        app,
        "POST",
        &format!("/v1/tenants/{tenant}/keys"),
        Some(root),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    a.expect(StatusCode::CREATED);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    v["key"].as_str().unwrap().to_owned()
}
