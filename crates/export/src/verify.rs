//! Offline verification of an export directory with nothing but the tenant's verifier key: the
//! manifest's signature, every file's SHA-256, every event's hash recomputed from its stored
//! bytes (RFC 8785 + SHA-256), the hash chain across the range, and that the events are exactly
//! the leaves `[first_seq, end_seq)` of the tree the signed checkpoint commits to (the frontier
//! `[0, first_seq)` plus the exported leaves give the root at `end_seq`; the consistency proof
//! ties that root to the checkpoint's).

use crate::manifest::{
    DATA_DIR, FORMAT, FileFormat, MANIFEST_FILE, Manifest, SignedManifest, valid_file_path,
};
use crate::write::file_sha256;
use agentrail_event::hash::{from_hex, sha256, to_hex};
use agentrail_merkle::{Frontier, Hash, leaf_hash};
use agentrail_note::Verifier;
use arrow_array::{Array, StringArray, UInt64Array};
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
    /// The given witnesses whose cosignature on the checkpoint verifies (name, time).
    pub cosigned_by: Vec<(String, u64)>,
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

/// The fields of a stored event the verifier reads (serde skips the rest without building it).
#[derive(serde::Deserialize)]
struct Head<'a> {
    seq: Option<u64>,
    #[serde(borrow)]
    tenant_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    prev_hash: Option<std::borrow::Cow<'a, str>>,
}

/// What checking one event on its own (in parallel) yields; the chain is checked in order after.
struct Checked {
    line: u64,
    seq: Option<u64>,
    tenant_ok: bool,
    prev: Option<String>,
    hash: Hash,
    leaf: Hash,
    error: Option<String>,
}

fn check_one(line: u64, bytes: &[u8], tenant: &str) -> Checked {
    let mut c = Checked {
        line,
        seq: None,
        tenant_ok: false,
        prev: None,
        hash: [0; 32],
        leaf: [0; 32],
        error: None,
    };
    // No separate canonical-form check: the bytes hashed here must be the leaves of the signed
    // tree, and the ledger only ever hashed RFC 8785 bytes, so a line that is not canonical fails
    // the chain (the next event's prev_hash) or the tree; checking it first would cost a quarter
    // of the time.
    match serde_json::from_slice::<Head>(bytes) {
        Ok(h) => {
            c.seq = h.seq;
            c.tenant_ok = h.tenant_id.as_deref() == Some(tenant);
            c.prev = h.prev_hash.map(|p| p.into_owned());
        }
        Err(e) => {
            c.error = Some(format!("not a stored event: {e}"));
            return c;
        }
    }
    c.hash = sha256(bytes);
    c.leaf = leaf_hash(bytes);
    c
}

/// Checks the stored events of one file in order, feeding the chain and the frontier.
struct Walk {
    seq: u64,
    prev: Option<String>,
    frontier: Frontier,
    tenant: String,
}

impl Walk {
    /// Checks a batch of events (`(line, bytes)`) on both cores, then chains them in order.
    fn batch(&mut self, file: &str, items: &[(u64, Vec<u8>)]) -> Result<(), VerifyExportError> {
        let tenant = self.tenant.as_str();
        let half = items.len() / 2;
        let (a, b) = items.split_at(half);
        let checked: Vec<Checked> = if items.len() < 64 {
            items
                .iter()
                .map(|(l, x)| check_one(*l, x, tenant))
                .collect()
        } else {
            std::thread::scope(|s| {
                let h = s.spawn(|| {
                    a.iter()
                        .map(|(l, x)| check_one(*l, x, tenant))
                        .collect::<Vec<_>>()
                });
                let mut rb: Vec<Checked> =
                    b.iter().map(|(l, x)| check_one(*l, x, tenant)).collect();
                let mut ra = h.join().unwrap_or_default();
                ra.append(&mut rb);
                ra
            })
        };
        for c in checked {
            let bad = |reason: String| VerifyExportError::Event {
                file: file.to_owned(),
                line: c.line,
                seq: self.seq,
                reason,
            };
            if let Some(e) = c.error {
                return Err(bad(e));
            }
            if c.seq != Some(self.seq) {
                return Err(bad(format!(
                    "expected seq {}, found {}",
                    self.seq,
                    c.seq.map_or("none".into(), |s| s.to_string())
                )));
            }
            if !c.tenant_ok {
                return Err(bad(format!("tenant_id is not {:?}", self.tenant)));
            }
            if c.prev != self.prev {
                return Err(bad(format!(
                    "prev_hash {:?} is not the previous event's hash {:?}: the chain is broken",
                    c.prev, self.prev
                )));
            }
            self.frontier.push(c.leaf, |_, _, _| {});
            self.prev = Some(to_hex(&c.hash));
            self.seq += 1;
        }
        Ok(())
    }
}

const BATCH: usize = 8192;

/// Verifies the export in `dir` with the tenant's verifier key.
pub fn verify_export(dir: &Path, key: &Verifier) -> Result<ExportReport, VerifyExportError> {
    verify_export_with_progress(dir, key, &[], &mut |_, _| {})
}

/// [`verify_export`], also checking the cosignatures of `witnesses` on the manifest's
/// checkpoint (the report names those that verify), calling `progress(events verified, events
/// in the export)` as it goes.
pub fn verify_export_with_progress(
    dir: &Path,
    key: &Verifier,
    witnesses: &[Verifier],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport, VerifyExportError> {
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
    let (cp, cosigned_by) =
        agentrail_note::open_checkpoint(m.checkpoint.as_bytes(), key, witnesses)
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
        if !valid_file_path(&f.name) {
            return Err(VerifyExportError::File {
                file: f.name.clone(),
                reason: format!("not a file of the export (a plain name in {DATA_DIR}/)"),
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
                let mut items = Vec::with_capacity(BATCH);
                for (i, line) in reader.split(b'\n').enumerate() {
                    let line = line.map_err(|e| ferr(e.to_string()))?;
                    items.push((i as u64 + 1, line));
                    if items.len() == BATCH {
                        walk.batch(&f.name, &items)?;
                        progress(walk.seq - m.first_seq, m.count);
                        items.clear();
                    }
                }
                walk.batch(&f.name, &items)?;
                progress(walk.seq - m.first_seq, m.count);
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
                    let mut items = Vec::with_capacity(batch.num_rows());
                    for i in 0..batch.num_rows() {
                        row += 1;
                        let want = walk.seq + items.len() as u64;
                        if stored.is_null(i) || seqs.value(i) != want {
                            return Err(VerifyExportError::Event {
                                file: f.name.clone(),
                                line: row,
                                seq: want,
                                reason: "the seq column does not match the expected seq".into(),
                            });
                        }
                        items.push((row, stored.value(i).as_bytes().to_vec()));
                    }
                    walk.batch(&f.name, &items)?;
                    progress(walk.seq - m.first_seq, m.count);
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
        cosigned_by,
    })
}
