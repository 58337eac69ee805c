//! The query store: a per-tenant SQLite database derived from the ledger, and the queries an
//! auditor asks of it — session reconstruction with a chain check, causal chains, human override
//! history, model attribution, filtered event lists, and named anomalies.
//!
//! One database file per tenant (`<data-dir>/tenants/<id>/index/index.sqlite`): a query holds one
//! tenant's connection and cannot reach another tenant's file. The store records how far it has
//! applied the ledger in the same transaction as the rows, catches up on open, and can be deleted
//! and rebuilt at any time ([`reindex`]); the ledger stays the only source of truth.
//!
//! What it is not: no HTTP, no writes to the ledger, no decryption: the vault sits above and
//! hands in an [`IndexSource`] that opens the tokenized content the index may hold for search.
//!
//! ```no_run
//! use agentrail_index::{PageReq, TenantIndex};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ledger = agentrail_ledger::Ledger::open(agentrail_ledger::Config::new("./agentrail-data"))?;
//! let tenant = agentrail_event::TenantId::parse("acme")?;
//! let mut index = TenantIndex::open(std::path::Path::new("./agentrail-data"), &tenant)?;
//! index.catch_up(&ledger)?;
//! let session = index.session("sess-1", &PageReq::first(100))?;
//! println!("{} events, chain unbroken: {}", session.total, session.chain.unbroken);
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod db;
mod error;
pub mod query;
mod store;

pub use error::IndexError;
pub use query::{
    Anomaly, AnomalyKind, CausalEdge, CausalGraph, ChainBreak, ChainCheck, DanglingLink, Direction,
    EventFilter, EventRow, ModelAttribution, ModelQuery, Page, PageReq, ReviewQuery, ReviewRow,
    SessionEvent, SessionResult, TimeField, TimeRange, VersionCount,
};
pub use store::{
    CONTENT_TABLES, Content, Cutoffs, IndexSource, Purged, SqliteStore, Store, TABLES, TenantIndex,
    index_path, ledger_mark, move_aside, reindex,
};
