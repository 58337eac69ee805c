//! agentrail's HTTP API: the only crate that knows HTTP. It authenticates requests, reads bodies
//! (size limits, gzip), admits ingest requests (bounded append slots, 503 + Retry-After),
//! shapes answers (DTOs, the OpenAPI document generated from the handlers) and maps errors to
//! statuses in one place. Every use case is one call of [`agentrail_service::Service`].
//!
//! What it is not: it holds no domain logic — no ingest protocol, no erasure protocol, no
//! authorization rules of its own — and keeps no tenant data in memory.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! let cfg = agentrail_server::ServerConfig::default();
//! agentrail_server::serve(cfg, |addr, opened| {
//!     println!("listening on {addr}");
//!     if let Some(key) = &opened.new_root_key { println!("root key: {key}"); }
//!     Ok(())
//! }).await
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod app;
pub mod conn;
pub mod error;
pub mod extract;
pub mod serve;
pub mod state;
pub mod throttle;
pub mod witness;

pub use app::{openapi_document, router};
pub use serve::serve;
pub use state::{AppState, ServerConfig};
