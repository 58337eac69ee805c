//! The newest tree vouched for, per origin, kept durably: what the `agentrail signer` signed
//! and what an `agentrail witness` cosigned. One JSON line per advance
//! (`{"origin","size","root"}`), fsync'd before the signature it stands for leaves; the last
//! line of an origin is its state. A torn last line (a crash mid-write, before its signature
//! was handed out) is cut on open; anything else unreadable refuses to open.

use agentrail_event::hash::{from_hex, to_hex};
use agentrail_merkle::Hash;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    origin: String,
    size: u64,
    root: String,
}

#[derive(Debug)]
struct Inner {
    file: File,
    latest: HashMap<String, (u64, Hash)>,
}

#[derive(Debug)]
pub struct TreeRecord {
    inner: Mutex<Inner>,
}

/// Why [`TreeRecord::advance`] did not record.
#[derive(Debug)]
pub enum Refused<E> {
    /// The check refused.
    Check(E),
    /// The record could not be written: nothing may be vouched for.
    Io(String),
}

/// Whether the tree of `(to, to_root)` extends (or equals) the tree of `(from, from_root)`,
/// `from ≤ to`, by an RFC 6962 consistency proof. From the empty tree, the proof must be empty
/// and the root the empty tree's (C2SP tlog-witness rules).
pub fn consistent(
    from: u64,
    from_root: &Hash,
    to: u64,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), String> {
    if from > to {
        return Err(format!("size {from} is larger than {to}"));
    }
    if from == 0 {
        if from_root != &agentrail_merkle::EMPTY_ROOT {
            return Err("a tree of size 0 must have the empty tree's root".into());
        }
        if !proof.is_empty() {
            return Err("a proof from the empty tree must be empty".into());
        }
        if to == 0 && to_root != from_root {
            return Err("two different roots for size 0".into());
        }
        return Ok(());
    }
    agentrail_merkle::verify_consistency(from, to, from_root, to_root, proof)
        .map_err(|e| e.to_string())
}

impl TreeRecord {
    pub fn open(path: &Path) -> Result<TreeRecord, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let mut latest = HashMap::new();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut good = 0usize;
        for (i, line) in lines.iter().enumerate() {
            let parsed = serde_json::from_str::<Line>(line.trim_end())
                .ok()
                .and_then(|l| from_hex(&l.root).map(|r| (l, r)));
            match parsed {
                Some((l, root)) if line.ends_with('\n') => {
                    latest.insert(l.origin, (l.size, root));
                    good += line.len();
                }
                _ if i + 1 == lines.len() => break,
                _ => {
                    return Err(format!(
                        "{} line {}: not a tree record",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        file.set_len(good as u64)
            .map_err(|e| format!("cutting the torn tail of {}: {e}", path.display()))?;
        Ok(TreeRecord {
            inner: Mutex::new(Inner { file, latest }),
        })
    }

    /// The newest tree recorded for `origin`.
    pub fn latest(&self, origin: &str) -> Option<(u64, Hash)> {
        self.lock().latest.get(origin).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Atomically: `check` the tree of `(size, root)` against the newest recorded for `origin`;
    /// if it passes and is larger, record it durably. Returns only once it is on disk.
    pub fn advance<E>(
        &self,
        origin: &str,
        size: u64,
        root: Hash,
        check: impl FnOnce(Option<(u64, Hash)>) -> Result<(), E>,
    ) -> Result<(), Refused<E>> {
        let mut g = self.lock();
        let current = g.latest.get(origin).copied();
        check(current).map_err(Refused::Check)?;
        if current.is_some_and(|(s, _)| s >= size) {
            return Ok(());
        }
        let line = serde_json::to_string(&Line {
            origin: origin.to_owned(),
            size,
            root: to_hex(&root),
        })
        .map_err(|e| Refused::Io(e.to_string()))?;
        let Inner { file, latest } = &mut *g;
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Refused::Io(format!("recording the tree: {e}")))?;
        latest.insert(origin.to_owned(), (size, root));
        Ok(())
    }
}
