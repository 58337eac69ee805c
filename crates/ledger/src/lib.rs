//! The ledger: agentrail's authoritative, append-only store (DESIGN.md §3).
//!
//! Per tenant it keeps framed, checksummed segments of stored events (RFC 8785 bytes, hashed and
//! chained), the RFC 6962 tree over them (perfect-subtree hashes on disk, so roots and proofs at
//! any size take O(log n) reads), and signed C2SP checkpoints. An append returns only after its
//! records are fsync'd; concurrent appenders to a tenant share fsyncs. On open, a torn tail is
//! truncated and anything else that does not verify refuses the tenant, naming the file, offset
//! and seq. [`verify::verify_tenant`] re-derives everything offline.
//!
//! What it is not: no HTTP, no async (sync `std::io` and threads), no query index, no encryption
//! (the vault transforms events before they get here), and it never reads the wall clock itself
//! (a [`Clock`] is injected).
//!
//! ```no_run
//! use agentrail_ledger::{Config, Ledger};
//! use agentrail_event::{TenantId, validate_bytes};
//! let ledger = Ledger::open(Config::new("./agentrail-data")).unwrap();
//! let tenant = TenantId::parse("acme").unwrap();
//! let ev = validate_bytes(br#"{"schema_version":"1","event_type":"custom.hello"}"#).unwrap();
//! let receipts = ledger.append(&tenant, vec![ev]).unwrap();
//! let proof = ledger.inclusion_proof(&tenant, receipts[0].seq, ledger.size(&tenant).unwrap());
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod anchors;
pub mod chainlog;
pub mod clock;
pub mod error;
pub mod files;
pub mod frame;
pub mod layout;
mod ledger;
pub mod pins;
pub mod pkcs11;
pub mod proofs;
pub mod signer;
pub mod stored;
pub mod sync;
mod tenant;
pub mod treerecord;
pub mod verify;

pub use chainlog::{ChainLog, ChainLogError, ChainRecord, chain_log_recoveries, scan_chain_log};
pub use clock::{Clock, ClockWatch, ManualClock, SystemClock};
pub use error::{AppendError, CheckpointError, Damage, LedgerOpenError, OpenError, ReadError};
pub use layout::DataDir;
pub use ledger::{
    Config, DEFAULT_ORIGIN_PREFIX, DEFAULT_SEGMENT_SIZE, Ledger, STATEMENT_KINDS, list_tenants,
    read_verifier,
};
pub use tenant::{Held, Receipt, SignedCheckpoint, StoredEvent, rebuild_derived};
pub use verify::{Anchors, TenantReport, verify_tenant, verify_tenant_with_progress};

/// The origin prefix stored in a data directory (`system/origin`).
pub fn read_origin_prefix(data_dir: &std::path::Path) -> std::io::Result<String> {
    Ok(
        std::fs::read_to_string(layout::DataDir::new(data_dir).system().origin())?
            .trim_end_matches('\n')
            .to_owned(),
    )
}
