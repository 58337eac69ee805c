//! The store interface and what every implementation shares: object keys and their rules.

use std::fmt::Debug;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// What a write-once put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object is new.
    Written,
    /// It was there with exactly these bytes (a re-upload after a crash): nothing changed.
    AlreadyThere,
}

/// Why a store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive object key {key:?}: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error(
        "archive object {key} exists with other bytes (SHA-256 {existing}, the new ones {new}): objects are written once"
    )]
    Conflict {
        key: String,
        existing: String,
        new: String,
    },
    #[error("archive {url} cannot keep write-once objects: {reason}")]
    NotWorm { url: String, reason: String },
    #[error("archive: cannot {op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
}

/// A write-once object store. Keys are `/`-separated segments of `[A-Za-z0-9._-]`
/// ([`valid_key`]).
pub trait ArchiveStore: Send + Sync + Debug {
    /// Where it is, as configured (`file:///…`, `s3://…`).
    fn url(&self) -> String;

    /// Whether objects written here stay as written (checked before the first write; a store
    /// that cannot promise it is refused with [`ArchiveError::NotWorm`]).
    fn check(&self) -> Result<(), ArchiveError>;

    /// Writes `bytes` at `key` unless an object is there: the same bytes are
    /// [`Put::AlreadyThere`], other bytes are [`ArchiveError::Conflict`] (the stored object is
    /// left as it is). Returns once the object is durable. `retain_until` (RFC 3339): the store
    /// keeps the object at least until then, if it enforces retention.
    fn put_once(
        &self,
        key: &str,
        bytes: &[u8],
        retain_until: Option<&str>,
    ) -> Result<Put, ArchiveError>;

    /// The object at `key`, if there is one.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError>;

    /// The size and SHA-256 of the object at `key`, if there is one: by default read and
    /// hashed; a store that keeps a checksum of what it received (S3) answers from it, without
    /// moving the bytes.
    fn digest(&self, key: &str) -> Result<Option<(u64, [u8; 32])>, ArchiveError> {
        Ok(self
            .get(key)?
            .map(|b| (b.len() as u64, agentrail_event::hash::sha256(&b))))
    }

    /// Objects whose keys start with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArchiveError>;

    /// The retention the store enforces on an object (RFC 3339, until when it cannot be
    /// deleted or overwritten), or `None` if it enforces none.
    fn retention(&self, key: &str) -> Result<Option<String>, ArchiveError>;
}

/// What a write-once put of `new` at `key` is when `stored` is already there: the same bytes are
/// [`Put::AlreadyThere`] (a re-upload), others a [`ArchiveError::Conflict`] naming both digests.
pub fn same_or_conflict(key: &str, stored: &[u8], new: &[u8]) -> Result<Put, ArchiveError> {
    use agentrail_event::hash::{sha256, to_hex};
    if stored == new {
        Ok(Put::AlreadyThere)
    } else {
        Err(ArchiveError::Conflict {
            key: key.to_owned(),
            existing: to_hex(&sha256(stored)),
            new: to_hex(&sha256(new)),
        })
    }
}

/// The longest key (S3's limit).
pub const MAX_KEY: usize = 1024;

/// Checks an object key: 1..=1024 bytes of `/`-separated segments, each of `[A-Za-z0-9._-]`,
/// none empty, `.` or `..`, and none starting with `.` (a store's own temporary names do).
pub fn valid_key(key: &str) -> Result<(), ArchiveError> {
    let bad = |reason| {
        Err(ArchiveError::BadKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() || key.len() > MAX_KEY {
        return bad("must be 1 to 1024 bytes");
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return bad("has an empty segment (a leading, trailing or double /)");
        }
        if seg.starts_with('.') {
            return bad("has a segment starting with '.'");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return bad("has a character outside [A-Za-z0-9._-/]");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in ["a", "acme/2026/12/07/seg-00000000000000000000", "t_1/x.y-z"] {
            valid_key(ok).unwrap();
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "../a",
            "a/./b",
            "a/.tmp",
            "a b",
            "ü",
            &"x".repeat(1025),
        ] {
            assert!(valid_key(bad).is_err(), "{bad:?}");
        }
    }
}
