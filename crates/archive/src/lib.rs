//! The WORM archive (DESIGN.md §8.1): the store where a tenant's sealed segments, checkpoints
//! and signed archive manifests are kept off the box, each object written once.
//!
//! [`ArchiveStore`] is what the archiver, `verify-archive` and `restore` need of a store:
//! write an object once (the same bytes again is a no-op, other bytes are refused, never an
//! overwrite), read it, list a prefix, and say what retention the store itself enforces.
//! [`FileArchive`] keeps objects as read-only files (the embedded default and tests); an S3
//! Object Lock store follows with the archiver.
//!
//! What it is not: no schedule, no layout of tenants and dates (the archiver's), no HTTP.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod file;
pub mod store;

pub use file::FileArchive;
pub use store::{ArchiveError, ArchiveStore, ObjectInfo, Put, same_or_conflict, valid_key};
