//! Offline verification of an export directory with nothing but the tenant's verifier key: the
//! manifest's signature, every file's SHA-256, every event's hash recomputed from its stored
//! bytes (RFC 8785 + SHA-256), the hash chain across the range, and that the events are exactly
//! the leaves `[first_seq, end_seq)` of the tree the signed checkpoint commits to (the frontier
//! `[0, first_seq)` plus the exported leaves give the root at `end_seq`; the consistency proof
//! ties that root to the checkpoint's).

use crate::manifest::{FORMAT, FileFormat, MANIFEST_FILE, Manifest, SignedManifest};
use crate::write::file_sha256;
use agentrail_event::hash::{from_hex, sha256, to_hex};
use agentrail_merkle::{Frontier, Hash, leaf_hash};
use agentrail_note::Verifier;
use arrow_array::{Array, StringArray, UInt64Array};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub tenant: String,
    pub first_seq: u64,
    pub end_seq: u64,
    pub events: u64,
    pub files: usize,
    pub bytes: u64,
    pub checkpoint_size: u64,
    pub root: Hash,
}

/// Exactly what failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyExportError {
    #[error("{MANIFEST_FILE}: {0}")]
    Manifest(String),
    #[error("{MANIFEST_FILE}: the signature does not verify with the given key: {0}")]
    Signature(String),
    #[error("{MANIFEST_FILE}: the checkpoint does not verify: {0}")]
    Checkpoint(String),
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("{file} line {line} (seq {seq}): {reason}")]
    Event {
        file: String,
        line: u64,
        seq: u64,
        reason: String,
    },
    #[error("the events are not the leaves {first}..{end} of the signed tree: {reason}")]
    Tree {
        first: u64,
        end: u64,
        reason: String,
    },
}

fn hashes(v: &[String], what: &str) -> Result<Vec<Hash>, VerifyExportError> {
    v.iter()
        .map(|h| {
            from_hex(h).ok_or_else(|| {
                VerifyExportError::Manifest(format!("{what}: {h:?} is not a hex SHA-256"))
            })
        })
        .collect()
}

/// Checks the stored events of one file in order, feeding the chain and the frontier.
struct Walk {
    seq: u64,
    prev: Option<String>,
    frontier: Frontier,
    tenant: String,
}

impl Walk {
    fn event(&mut self, file: &str, line: u64, bytes: &[u8]) -> Result<(), VerifyExportError> {
        let bad = |reason: String| VerifyExportError::Event {
            file: file.to_owned(),
            line,
            seq: self.seq,
            reason,
        };
        agentrail_event::json::check_canonical(bytes)
            .map_err(|e| bad(format!("not the canonical (RFC 8785) stored form: {e}")))?;
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if v.get("seq").and_then(Value::as_u64) != Some(self.seq) {
            return Err(bad(format!(
                "expected seq {}, found {}",
                self.seq,
                v.get("seq").map_or("none".into(), Value::to_string)
            )));
        }
        if v.get("tenant_id").and_then(Value::as_str) != Some(self.tenant.as_str()) {
            return Err(bad(format!("tenant_id is not {:?}", self.tenant)));
        }
        let prev = v
            .get("prev_hash")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if prev != self.prev {
            return Err(bad(format!(
                "prev_hash {prev:?} is not the previous event's hash {:?}: the chain is broken",
                self.prev
            )));
        }
        let hash = to_hex(&sha256(bytes));
        self.frontier.push(leaf_hash(bytes), |_, _, _| {});
        self.prev = Some(hash);
        self.seq += 1;
        Ok(())
    }
}

/// Verifies the export in `dir` with the tenant's verifier key.
pub fn verify_export(dir: &Path, key: &Verifier) -> Result<ExportReport, VerifyExportError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path)
        .map_err(|e| VerifyExportError::Manifest(format!("cannot read: {e}")))?;
    let signed: SignedManifest = serde_json::from_slice(&bytes)
        .map_err(|e| VerifyExportError::Manifest(format!("not a manifest: {e}")))?;
    let m: &Manifest = &signed.manifest;
    if m.format != FORMAT {
        return Err(VerifyExportError::Manifest(format!(
            "unknown format {:?}",
            m.format
        )));
    }
    // 1. The signature commits to every field of the manifest.
    let (note, _) = agentrail_note::open(signed.signature.as_bytes(), &[key])
        .map_err(|e| VerifyExportError::Signature(e.to_string()))?;
    let want = format!(
        "{}/export\n{}\n",
        m.origin,
        m.statement().map_err(VerifyExportError::Manifest)?
    );
    if note.text != want {
        return Err(VerifyExportError::Signature(
            "the signed statement does not match this manifest (it was edited)".into(),
        ));
    }
    // 2. The checkpoint is the log's, for this origin.
    let (cp, _) = agentrail_note::open_checkpoint(m.checkpoint.as_bytes(), key, &[])
        .map_err(|e| VerifyExportError::Checkpoint(e.to_string()))?;
    if cp.origin != m.origin {
        return Err(VerifyExportError::Checkpoint(format!(
            "origin {:?} is not the manifest's {:?}",
            cp.origin, m.origin
        )));
    }
    if m.end_seq < m.first_seq || m.end_seq > cp.size || m.count != m.end_seq - m.first_seq {
        return Err(VerifyExportError::Manifest(format!(
            "range {}..{} with count {} does not fit a tree of size {}",
            m.first_seq, m.end_seq, m.count, cp.size
        )));
    }
    let frontier = hashes(&m.frontier, "frontier")?;
    let frontier = Frontier::from_hashes(m.first_seq, &frontier).ok_or_else(|| {
        VerifyExportError::Manifest(format!(
            "frontier does not have one hash per perfect subtree of {}",
            m.first_seq
        ))
    })?;
    let mut walk = Walk {
        seq: m.first_seq,
        prev: m.prev_hash.clone(),
        frontier,
        tenant: m.tenant.clone(),
    };
    // 3. Every file: its hash, then every event in it.
    let mut total = 0u64;
    for f in &m.files {
        let fp = dir.join(&f.name);
        if f.name.contains('/') || f.name.contains("..") {
            return Err(VerifyExportError::File {
                file: f.name.clone(),
                reason: "not a plain file name".into(),
            });
        }
        let ferr = |reason: String| VerifyExportError::File {
            file: f.name.clone(),
            reason,
        };
        let (sha, len) = file_sha256(&fp).map_err(|e| ferr(e.to_string()))?;
        if sha != f.sha256 || len != f.bytes {
            return Err(ferr(format!(
                "SHA-256 {sha} ({len} bytes) is not the manifest's {} ({} bytes): the file was changed",
                f.sha256, f.bytes
            )));
        }
        if walk.seq != f.first_seq {
            return Err(ferr(format!(
                "starts at seq {} but the previous file ended at {}",
                f.first_seq, walk.seq
            )));
        }
        let before = walk.seq;
        match m.file_format {
            FileFormat::Ndjson => {
                let file = std::fs::File::open(&fp).map_err(|e| ferr(e.to_string()))?;
                let reader = std::io::BufReader::with_capacity(1 << 20, file);
                for (i, line) in reader.split(b'\n').enumerate() {
                    let line = line.map_err(|e| ferr(e.to_string()))?;
                    walk.event(&f.name, i as u64 + 1, &line)?;
                }
            }
            FileFormat::Parquet => {
                let file = std::fs::File::open(&fp).map_err(|e| ferr(e.to_string()))?;
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|b| b.with_batch_size(8192).build())
                        .map_err(|e| ferr(format!("not a readable Parquet file: {e}")))?;
                let mut row = 0u64;
                for batch in reader {
                    let batch = batch.map_err(|e| ferr(format!("Parquet: {e}")))?;
                    let stored = batch
                        .column_by_name("stored")
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                        .ok_or_else(|| ferr("no string column `stored`".into()))?;
                    let seqs = batch
                        .column_by_name("seq")
                        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
                        .ok_or_else(|| ferr("no u64 column `seq`".into()))?;
                    for i in 0..batch.num_rows() {
                        row += 1;
                        if stored.is_null(i) || seqs.value(i) != walk.seq {
                            return Err(VerifyExportError::Event {
                                file: f.name.clone(),
                                line: row,
                                seq: walk.seq,
                                reason: "the seq column does not match the expected seq".into(),
                            });
                        }
                        walk.event(&f.name, row, stored.value(i).as_bytes())?;
                    }
                }
            }
        }
        if walk.seq - before != f.count {
            return Err(ferr(format!(
                "holds {} events, the manifest says {}",
                walk.seq - before,
                f.count
            )));
        }
        total += len;
    }
    if walk.seq != m.end_seq {
        return Err(VerifyExportError::Tree {
            first: m.first_seq,
            end: m.end_seq,
            reason: format!("the files end at seq {}, not {}", walk.seq, m.end_seq),
        });
    }
    // 4. The leaves are those of the signed tree.
    let root = walk.frontier.root();
    let tree = |reason: String| VerifyExportError::Tree {
        first: m.first_seq,
        end: m.end_seq,
        reason,
    };
    if m.end_seq == cp.size {
        if root != cp.root {
            return Err(tree(
                "the recomputed root is not the checkpoint's root".into(),
            ));
        }
    } else if m.end_seq > 0 {
        let proof = hashes(&m.consistency, "consistency")?;
        agentrail_merkle::verify_consistency(m.end_seq, cp.size, &root, &cp.root, &proof).map_err(
            |e| {
                tree(format!(
                    "the consistency proof to the checkpoint fails: {e}"
                ))
            },
        )?;
    }
    Ok(ExportReport {
        tenant: m.tenant.clone(),
        first_seq: m.first_seq,
        end_seq: m.end_seq,
        events: m.count,
        files: m.files.len(),
        bytes: total,
        checkpoint_size: cp.size,
        root: cp.root,
    })
}
