//! agentrail's HTTP API (DESIGN.md §5–6): ingest with durable acknowledgements, every query of
//! the index, checkpoints and proofs, tenants and scoped keys, the per-tenant access log,
//! health, readiness and Prometheus metrics, and the OpenAPI document generated from the
//! handlers. The only crate that knows HTTP.
//!
//! What it is not: it does not store events itself (the ledger does), does not index them (the
//! index crate does; `indexer` only schedules catch-ups), and keeps no tenant data in memory
//! beyond open handles.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! let cfg = agentrail_server::ServerConfig::default();
//! agentrail_server::serve(cfg, |addr, opened| {
//!     println!("listening on {addr}");
//!     if let Some(key) = &opened.new_root_key { println!("root key: {key}"); }
//! }).await
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod app;
pub mod error;
pub mod exports;
pub mod indexer;
pub mod integrity;
pub mod keys;
pub mod metrics;
pub mod privacy;
pub mod retention;
pub mod routes;
pub mod schedule;
pub mod serve;
pub mod state;

pub use app::{openapi_document, router};
pub use keys::{KeyStore, Principal, Scope};
pub use serve::serve;
pub use state::{AppState, Opened, ServerConfig};
