//! Signed exports an auditor verifies offline (DESIGN.md §7): a tenant's events for a seq or time
//! range as NDJSON or Parquet files of bounded size in `data/`, and `manifest.json` beside it
//! (range, count, each file's SHA-256, the signed checkpoint, the material tying the range to its
//! root, and the log key's signature over all of it). [`verify_export`] needs only the directory and the tenant's
//! verifier key.
//!
//! What it is not: no HTTP (the server runs export jobs and serves the files), no scheduling.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use agentrail_export::{ExportRequest, FileFormat, Selection, export, verify_export};
//! let ledger = agentrail_ledger::Ledger::open(agentrail_ledger::Config::new("./agentrail-data"))?;
//! let req = ExportRequest {
//!     tenant: agentrail_event::TenantId::parse("acme")?,
//!     selection: Selection::default(),
//!     format: FileFormat::Ndjson,
//!     max_file_bytes: agentrail_export::DEFAULT_MAX_FILE_BYTES,
//!     content: None,
//!     checkpoint: None,
//! };
//! export(&ledger, &req, "./export-acme".as_ref(), |_, _| true)?;
//! verify_export("./export-acme".as_ref(), ledger.verifier())?;
//! # Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod manifest;
pub mod verify;
pub mod write;

pub use manifest::{
    DATA_DIR, FileEntry, FileFormat, MANIFEST_FILE, Manifest, Selection, SignedManifest,
    valid_file_path,
};
pub use verify::{ExportReport, VerifyExportError, verify_export, verify_export_with_progress};
pub use write::{
    ContentOpener, DEFAULT_MAX_FILE_BYTES, ExportError, ExportRequest, export, file_sha256,
};
