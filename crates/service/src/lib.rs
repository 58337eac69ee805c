//! agentrail's application layer: every use case as one synchronous operation of [`Service`] —
//! ingest (admission by index lag, validation, tokenize and seal under the erasure gate, durable
//! all-or-nothing append, indexer notified), reads of audit data with their access-log record,
//! proofs and checkpoints, erasure of a subject or a tenant, keys and authorization, policies,
//! retention, integrity runs, exports, and the background indexer and jobs.
//!
//! What it is not: no HTTP, no async runtime (std threads and blocking I/O), no wire formats.
//! The server (HTTP), and later OTLP, Kafka and cluster intake, call it; every intake path calls
//! [`Service::ingest`].
//!
//! ```no_run
//! use agentrail_service::{Service, ServiceConfig};
//! use agentrail_event::{TenantId, batch::BatchFormat};
//! # fn main() -> Result<(), agentrail_service::ServiceError> {
//! let opened = Service::open(ServiceConfig::default())?;
//! let tenant = TenantId::parse("acme").map_err(agentrail_service::ServiceError::bad_request)?;
//! let body = br#"{"schema_version":"1","event_type":"custom.hello"}"#;
//! let receipts = opened.service.ingest(&tenant, body, BatchFormat::Json)?;
//! println!("seq {}", receipts[0].seq);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod archive_read;
pub mod archiver;
pub mod budget;
mod config;
mod error;
pub mod exports;
pub mod indexer;
pub mod integrity;
pub mod keys;
pub mod metrics;
pub mod privacy;
pub mod retention;
mod schedule;
mod service;
pub mod storage;
mod webhook;
pub mod witnesses;

pub use config::{KafkaSource, ServiceConfig, Sources, WitnessConfig};
pub use error::ServiceError;
pub use keys::{KeyRecord, KeyStore, Principal, Scope};
pub use privacy::Policy;
pub use service::{
    Accepted, Consistency, Erasure, EventRef, Intake, Opened, Presenter, ReadRequest, ReceiptProof,
    Service, TenantInfo, reindex,
};
