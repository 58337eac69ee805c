//! The agentrail event model v1, its validation, RFC 8785 canonical JSON and event hashing
//! (SHA-256 of the canonical bytes).
//!
//! Pure: no I/O, no async, no clock. It does not sequence events (the ledger does), does not know
//! tenants' keys (the vault does) and does not compute Merkle hashes (the merkle crate does).
//!
//! ```
//! use agentrail_event::{validate_bytes, json, hash};
//! let ev = validate_bytes(br#"{"schema_version":"1","event_type":"custom.deploy"}"#).unwrap();
//! let bytes = json::to_canonical_vec(&serde_json::Value::Object(ev.value)).unwrap();
//! assert_eq!(bytes, br#"{"event_type":"custom.deploy","schema_version":"1"}"#);
//! let _h: hash::Hash = hash::event_hash(&bytes);
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod hash;
pub mod json;
pub mod model;
pub mod schema;
pub mod validate;

pub use model::{Event, EventId, EventType, Payload, TenantId, Timestamp};
pub use schema::event_schema;
pub use validate::{
    InvalidEvent, Problem, ValidEvent, validate_bytes, validate_system_value, validate_value,
};
