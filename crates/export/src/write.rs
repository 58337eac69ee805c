//! Writing an export: stream a seq range out of the ledger into bounded-size files in `data/`,
//! then the signed manifest beside it. Memory stays bounded (events are read in chunks; a Parquet row group at a
//! time). Idempotent: the first run records its plan (range and checkpoint) in `job.json`, a
//! re-run after a crash follows the same plan and writes byte-identical files and manifest;
//! `manifest.json` is written last, atomically, and is the commit point.

use crate::manifest::{
    DATA_DIR, FORMAT, FileEntry, FileFormat, MANIFEST_FILE, Manifest, Selection, SignedManifest,
};
use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_event::model::{DEFAULT_SENSITIVE_FIELDS, SENSITIVE_IN_EVERY_TYPE};
use agentrail_ledger::{Ledger, StoredEvent};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default size at which a data file is closed and the next one started.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;
const CHUNK: usize = 4096;
const ROW_GROUP: usize = 16_384;
const JOB_FILE: &str = "job.json";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] agentrail_ledger::ReadError),
    #[error("{0}")]
    Bad(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("the export was cancelled; running it again finishes it")]
    Cancelled,
    #[error("{dir} holds an export of a different request ({reason}); use another directory")]
    Mismatch { dir: PathBuf, reason: String },
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub tenant: TenantId,
    pub selection: Selection,
    pub format: FileFormat,
    pub max_file_bytes: u64,
    /// Parquet only: opens the sealed content of each event into the content columns (the
    /// caller decides whether whoever asked may read it). `None`: sealed fields read as null.
    pub content: Option<ContentOpener>,
    /// The signed checkpoint to export against (a cosigned one, with its witnesses'
    /// cosignatures) instead of the latest: its size bounds the range; it must be this
    /// tenant's, signed by the log, over the ledger's tree.
    pub checkpoint: Option<String>,
}

/// Opens a stored event's sealed fields: `{field path: tokenized value}` for those whose key
/// still exists, `None` when there are none (the service's is
/// `agentrail_vault::sealed_content` with the tenant's vault).
#[derive(Clone)]
pub struct ContentOpener(pub Arc<OpenFn>);

/// What a [`ContentOpener`] calls: the stored event in, its opened fields out.
pub type OpenFn = dyn Fn(&serde_json::Value) -> Option<serde_json::Value> + Send + Sync;

impl std::fmt::Debug for ContentOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentOpener")
    }
}

/// The plan of an export, fixed by the first run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    tenant: String,
    format: FileFormat,
    selection: Selection,
    first_seq: u64,
    end_seq: u64,
    checkpoint_size: u64,
    checkpoint: String,
    max_file_bytes: u64,
    /// Whether the content columns were opened (older plans: no).
    #[serde(default)]
    content: bool,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Io { op, path, source }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    agentrail_ledger::files::write_atomic(path, bytes, 0o644).map_err(|e| ExportError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

fn received_at(ev: &StoredEvent) -> Option<jiff::Timestamp> {
    let v: serde_json::Value = serde_json::from_slice(&ev.bytes).ok()?;
    v.get("received_at")?.as_str()?.parse().ok()
}

/// The first seq in `[0, size)` whose `received_at` is ≥ `t` (received_at never decreases).
fn seq_at(
    ledger: &Ledger,
    tenant: &TenantId,
    size: u64,
    t: jiff::Timestamp,
) -> Result<u64, ExportError> {
    let (mut lo, mut hi) = (0u64, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let ev = ledger.read(tenant, mid)?;
        let at = received_at(&ev)
            .ok_or_else(|| ExportError::Bad(format!("seq {mid} has no received_at")))?;
        if at < t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn plan(ledger: &Ledger, req: &ExportRequest) -> Result<Job, ExportError> {
    let t = &req.tenant;
    let (size, text) = match &req.checkpoint {
        Some(text) => {
            let bad =
                |why: String| ExportError::Bad(format!("the checkpoint to export against {why}"));
            let (cp, _) = agentrail_note::open_checkpoint(text.as_bytes(), ledger.verifier(), &[])
                .map_err(|e| bad(format!("does not verify: {e}")))?;
            if cp.origin != ledger.origin(t) {
                return Err(bad(format!("is for {:?}", cp.origin)));
            }
            if cp.size > ledger.size(t)? || ledger.root_at(t, cp.size)? != cp.root {
                return Err(bad(format!(
                    "(size {}) is not of this ledger's tree",
                    cp.size
                )));
            }
            (cp.size, text.clone())
        }
        None => {
            let cp = match ledger.latest_checkpoint(t)? {
                Some(cp) if cp.size == ledger.size(t)? => cp,
                _ => ledger
                    .checkpoint(t)
                    .map_err(|e| ExportError::Bad(format!("signing a checkpoint: {e}")))?,
            };
            (cp.size, cp.text)
        }
    };
    let parse = |name: &str, s: &Option<String>| -> Result<Option<jiff::Timestamp>, ExportError> {
        s.as_deref()
            .map(|s| {
                s.parse().map_err(|_| {
                    ExportError::Bad(format!("{name} {s:?} is not an RFC 3339 timestamp"))
                })
            })
            .transpose()
    };
    let mut first = req.selection.from_seq.unwrap_or(0).min(size);
    let mut end = req.selection.to_seq.unwrap_or(size).min(size);
    if let Some(from) = parse("from", &req.selection.from)? {
        first = first.max(seq_at(ledger, t, size, from)?);
    }
    if let Some(to) = parse("to", &req.selection.to)? {
        end = end.min(seq_at(ledger, t, size, to)?);
    }
    let end = end.max(first);
    Ok(Job {
        tenant: t.to_string(),
        format: req.format,
        selection: req.selection.clone(),
        first_seq: first,
        end_seq: end,
        checkpoint_size: size,
        checkpoint: text,
        max_file_bytes: req.max_file_bytes.max(1),
        content: req.content.is_some(),
    })
}

/// One open data file.
enum Sink {
    Ndjson(BufWriter<File>),
    Parquet(
        Box<parquet::arrow::ArrowWriter<File>>,
        Vec<StoredEvent>,
        Option<ContentOpener>,
    ),
}

struct OpenFile {
    name: String,
    tmp: PathBuf,
    first_seq: u64,
    count: u64,
    bytes: u64,
    sink: Sink,
}

/// The content columns: one per sensitive field of the event model (the defaults of every type,
/// `payload.` dropped, dots as underscores: `prompt`, `output`, …, `proposed_action_content`),
/// then `more_content`, every other opened field as a JSON object `{path: value}`.
fn content_columns() -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = Vec::new();
    let paths = DEFAULT_SENSITIVE_FIELDS
        .iter()
        .flat_map(|(_, p)| p.iter())
        .chain(SENSITIVE_IN_EVERY_TYPE);
    for &path in paths {
        if !v.iter().any(|(_, p)| *p == path) {
            let name = path
                .strip_prefix("payload.")
                .unwrap_or(path)
                .replace('.', "_");
            v.push((name, path));
        }
    }
    v
}
const MORE_CONTENT: &str = "more_content";

/// The Parquet columns: the structural fields an analyst filters and aggregates on, typed
/// (timestamps as UTC timestamps in microseconds, what warehouses and DuckDB's `TIMESTAMPTZ`
/// hold; the exact text stays in `stored`, counts as integers, money and milliseconds as doubles), each
/// null where the event has none; then the content columns (text: a string as it is, anything
/// else as JSON), readable where the export was asked with `view=decrypted` by a key that may read
/// content, else null where sealed; then `hash` and `stored`, the stored form (ciphertext and all)
/// verification recomputes the hash from. A structural path a tenant's policy seals holds an
/// object, not a string or number, and reads as null.
fn parquet_schema() -> Arc<Schema> {
    let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let content = content_columns()
        .into_iter()
        .map(|(name, _)| name)
        .chain([MORE_CONTENT.to_owned()])
        .map(|name| Field::new(name, DataType::Utf8, true));
    Arc::new(Schema::new(
        [
            Field::new("seq", DataType::UInt64, false),
            Field::new("event_id", DataType::Utf8, false),
            Field::new("event_type", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, true),
            Field::new("agent_id", DataType::Utf8, true),
            Field::new("subject_id", DataType::Utf8, true),
            Field::new("occurred_at", utc(), true),
            Field::new("received_at", utc(), false),
            Field::new("model_provider", DataType::Utf8, true),
            Field::new("model_name", DataType::Utf8, true),
            Field::new("model_version", DataType::Utf8, true),
            Field::new("decision_kind", DataType::Utf8, true),
            Field::new("tool_name", DataType::Utf8, true),
            Field::new("tool_outcome", DataType::Utf8, true),
            Field::new("review_decision", DataType::Utf8, true),
            Field::new("latency_ms", DataType::Float64, true),
            Field::new("input_tokens", DataType::Int64, true),
            Field::new("output_tokens", DataType::Int64, true),
            Field::new("cost", DataType::Float64, true),
        ]
        .into_iter()
        .chain(content)
        .chain([
            Field::new("hash", DataType::Utf8, false),
            Field::new("stored", DataType::Utf8, false),
        ])
        .collect::<Vec<_>>(),
    ))
}

/// An RFC 3339 timestamp as microseconds since the epoch.
fn micros(v: Option<&serde_json::Value>) -> Option<i64> {
    let t: jiff::Timestamp = v?.as_str()?.parse().ok()?;
    Some(t.as_microsecond())
}

/// A content value as text: a string as it is, anything else as JSON.
fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The content columns of one batch: for each field, its opened value, else its stored value
/// where that is not sealed (a field the tenant's policy leaves in clear), else null.
fn content_arrays(rows: &[serde_json::Value], opener: Option<&ContentOpener>) -> Vec<ArrayRef> {
    let opened: Vec<Option<serde_json::Value>> =
        rows.iter().map(|r| opener.and_then(|o| (o.0)(r))).collect();
    let columns = content_columns();
    let mut out: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 1);
    for (_, path) in &columns {
        let pointer = format!("/{}", path.replace('.', "/"));
        let values: Vec<Option<String>> = rows
            .iter()
            .zip(&opened)
            .map(|(r, o)| {
                o.as_ref()
                    .and_then(|o| o.get(*path))
                    .or_else(|| {
                        r.pointer(&pointer)
                            .filter(|v| !agentrail_vault::is_sealed(v))
                    })
                    .map(as_text)
            })
            .collect();
        out.push(Arc::new(StringArray::from(values)));
    }
    let more: Vec<Option<String>> = opened
        .iter()
        .map(|o| {
            let rest: serde_json::Map<String, serde_json::Value> = o
                .as_ref()?
                .as_object()?
                .iter()
                .filter(|(k, _)| !columns.iter().any(|(_, p)| p == k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!rest.is_empty()).then(|| serde_json::Value::Object(rest).to_string())
        })
        .collect();
    out.push(Arc::new(StringArray::from(more)));
    out
}

fn record_batch(
    events: &[StoredEvent],
    opener: Option<&ContentOpener>,
) -> Result<RecordBatch, ExportError> {
    let mut rows: Vec<serde_json::Value> = Vec::with_capacity(events.len());
    let mut stored = Vec::with_capacity(events.len());
    for ev in events {
        rows.push(
            serde_json::from_slice(&ev.bytes)
                .map_err(|e| ExportError::Bad(format!("seq {}: {e}", ev.seq)))?,
        );
        stored.push(
            std::str::from_utf8(&ev.bytes)
                .map_err(|_| ExportError::Bad(format!("seq {} is not UTF-8", ev.seq)))?,
        );
    }
    let is = |r: &serde_json::Value, t: &str| r["event_type"] == t;
    let text = |f: &dyn Fn(&serde_json::Value) -> Option<&serde_json::Value>| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| f(r).and_then(serde_json::Value::as_str))
                .collect::<Vec<_>>(),
        ))
    };
    let float = |f: &dyn Fn(&serde_json::Value) -> Option<&serde_json::Value>| -> ArrayRef {
        Arc::new(Float64Array::from(
            rows.iter()
                .map(|r| f(r).and_then(serde_json::Value::as_f64))
                .collect::<Vec<_>>(),
        ))
    };
    let int = |f: &dyn Fn(&serde_json::Value) -> Option<&serde_json::Value>| -> ArrayRef {
        Arc::new(Int64Array::from(
            rows.iter()
                .map(|r| f(r).and_then(serde_json::Value::as_i64))
                .collect::<Vec<_>>(),
        ))
    };
    let time = |key: &str| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(
                rows.iter().map(|r| micros(r.get(key))).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        )
    };
    let mut cols_out: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        )),
        text(&|r| r.get("event_id")),
        text(&|r| r.get("event_type")),
        text(&|r| r.get("session_id")),
        text(&|r| r.get("agent_id")),
        text(&|r| r.get("subject_id")),
        time("occurred_at"),
        time("received_at"),
        text(&|r| r.pointer("/payload/model/provider")),
        text(&|r| r.pointer("/payload/model/name")),
        text(&|r| r.pointer("/payload/model/version")),
        text(&|r| r.pointer("/payload/decision/kind")),
        text(&|r| r.pointer("/payload/tool/name")),
        text(&|r| r.pointer("/payload/status/outcome")),
        text(&|r| {
            is(r, "human.review")
                .then(|| r.pointer("/payload/decision"))
                .flatten()
        }),
        // A decision's model latency; a tool invocation's duration.
        float(&|r| {
            r.pointer("/payload/latency_ms")
                .or_else(|| r.pointer("/payload/duration_ms"))
        }),
        int(&|r| r.pointer("/payload/usage/input_tokens")),
        int(&|r| r.pointer("/payload/usage/output_tokens")),
        float(&|r| r.pointer("/payload/usage/cost")),
    ];
    cols_out.extend(content_arrays(&rows, opener));
    cols_out.push(Arc::new(StringArray::from(
        events.iter().map(|e| to_hex(&e.hash)).collect::<Vec<_>>(),
    )));
    cols_out.push(Arc::new(StringArray::from(stored)));
    RecordBatch::try_new(parquet_schema(), cols_out)
        .map_err(|e| ExportError::Parquet(e.to_string()))
}

impl OpenFile {
    fn create(
        dir: &Path,
        format: FileFormat,
        first_seq: u64,
        content: Option<&ContentOpener>,
    ) -> Result<OpenFile, ExportError> {
        let name = format!("{DATA_DIR}/events-{first_seq:020}.{}", format.extension());
        let tmp = dir.join(format!("{name}.part"));
        let f = File::create(&tmp).map_err(io("create", &tmp))?;
        let sink = match format {
            FileFormat::Ndjson => Sink::Ndjson(BufWriter::with_capacity(1 << 20, f)),
            FileFormat::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP))
                    .set_created_by("agentrail".into())
                    .build();
                let w = parquet::arrow::ArrowWriter::try_new(f, parquet_schema(), Some(props))
                    .map_err(|e| ExportError::Parquet(e.to_string()))?;
                Sink::Parquet(Box::new(w), Vec::new(), content.cloned())
            }
        };
        Ok(OpenFile {
            name,
            tmp,
            first_seq,
            count: 0,
            bytes: 0,
            sink,
        })
    }

    fn push(&mut self, ev: StoredEvent) -> Result<(), ExportError> {
        self.count += 1;
        self.bytes += ev.bytes.len() as u64 + 1;
        match &mut self.sink {
            Sink::Ndjson(w) => {
                w.write_all(&ev.bytes)
                    .and_then(|()| w.write_all(b"\n"))
                    .map_err(io("write", &self.tmp))?;
            }
            Sink::Parquet(w, pending, opener) => {
                pending.push(ev);
                if pending.len() >= ROW_GROUP {
                    let batch = record_batch(pending, opener.as_ref())?;
                    pending.clear();
                    w.write(&batch)
                        .map_err(|e| ExportError::Parquet(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Flushes, fsyncs, renames into place; returns the manifest entry.
    fn finish(self, dir: &Path) -> Result<FileEntry, ExportError> {
        let file = match self.sink {
            Sink::Ndjson(w) => w.into_inner().map_err(|e| ExportError::Io {
                op: "flush",
                path: self.tmp.clone(),
                source: e.into_error(),
            })?,
            Sink::Parquet(mut w, pending, opener) => {
                if !pending.is_empty() {
                    let batch = record_batch(&pending, opener.as_ref())?;
                    w.write(&batch)
                        .map_err(|e| ExportError::Parquet(e.to_string()))?;
                }
                w.into_inner()
                    .map_err(|e| ExportError::Parquet(e.to_string()))?
            }
        };
        file.sync_all().map_err(io("sync", &self.tmp))?;
        drop(file);
        let path = dir.join(&self.name);
        fs::rename(&self.tmp, &path).map_err(io("rename", &path))?;
        let (sha, bytes) = file_sha256(&path)?;
        Ok(FileEntry {
            name: self.name,
            first_seq: self.first_seq,
            count: self.count,
            bytes,
            sha256: sha,
        })
    }
}

/// Hex SHA-256 and length of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<(String, u64), ExportError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = std::io::Read::read(&mut f, &mut buf).map_err(io("read", path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Writes (or finishes, after a crash or a cancel) an export into `dir`. `progress(done, total)`
/// is called as events are written; returning `false` cancels.
pub fn export(
    ledger: &Ledger,
    req: &ExportRequest,
    dir: &Path,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<SignedManifest, ExportError> {
    let data = dir.join(DATA_DIR);
    fs::create_dir_all(&data).map_err(io("create", &data))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let job_path = dir.join(JOB_FILE);
    let job: Job = match fs::read(&job_path) {
        Ok(b) => {
            let job: Job = serde_json::from_slice(&b)
                .map_err(|e| ExportError::Bad(format!("{}: {e}", job_path.display())))?;
            if job.tenant != req.tenant.as_str()
                || job.format != req.format
                || job.selection != req.selection
                || job.content != req.content.is_some()
            {
                return Err(ExportError::Mismatch {
                    dir: dir.to_path_buf(),
                    reason: "tenant, format or selection differ".into(),
                });
            }
            job
        }
        Err(_) if manifest_path.exists() => {
            let b = fs::read(&manifest_path).map_err(io("read", &manifest_path))?;
            let m: SignedManifest = serde_json::from_slice(&b)
                .map_err(|e| ExportError::Bad(format!("{}: {e}", manifest_path.display())))?;
            if m.manifest.tenant != req.tenant.as_str()
                || m.manifest.file_format != req.format
                || m.manifest.selection != req.selection
            {
                return Err(ExportError::Mismatch {
                    dir: dir.to_path_buf(),
                    reason: "tenant, format or selection differ".into(),
                });
            }
            return Ok(m); // already complete
        }
        Err(_) => {
            let job = plan(ledger, req)?;
            let b = serde_json::to_vec_pretty(&job).map_err(|e| ExportError::Bad(e.to_string()))?;
            write_atomic(&job_path, &b)?;
            job
        }
    };
    let t = &req.tenant;
    let total = job.end_seq - job.first_seq;
    let mut files = Vec::new();
    let mut open: Option<OpenFile> = None;
    let mut seq = job.first_seq;
    if !progress(0, total) {
        return Err(ExportError::Cancelled);
    }
    while seq < job.end_seq {
        let want = ((job.end_seq - seq) as usize).min(CHUNK);
        let chunk = ledger.read_range(t, seq, want)?;
        if chunk.is_empty() {
            return Err(ExportError::Bad(format!("the ledger ended at seq {seq}")));
        }
        for ev in chunk {
            if open.as_ref().is_some_and(|f| f.bytes >= job.max_file_bytes)
                && let Some(f) = open.take()
            {
                files.push(f.finish(dir)?);
            }
            if open.is_none() {
                open = Some(OpenFile::create(
                    dir,
                    job.format,
                    ev.seq,
                    req.content.as_ref(),
                )?);
            }
            if let Some(f) = open.as_mut() {
                f.push(ev)?;
            }
            seq += 1;
        }
        if !progress(seq - job.first_seq, total) {
            return Err(ExportError::Cancelled);
        }
    }
    if let Some(f) = open.take() {
        files.push(f.finish(dir)?);
    }
    sync_dir(&data)?; // the renames into data/ are durable before the manifest names them
    let prev_hash = if job.first_seq > 0 {
        Some(to_hex(&ledger.read(t, job.first_seq - 1)?.hash))
    } else {
        None
    };
    let frontier = ledger
        .frontier(t, job.first_seq)?
        .iter()
        .map(to_hex)
        .collect();
    let consistency = if job.end_seq > 0 && job.end_seq < job.checkpoint_size {
        ledger
            .consistency_proof(t, job.end_seq, job.checkpoint_size)?
            .iter()
            .map(to_hex)
            .collect()
    } else {
        Vec::new()
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        tenant: job.tenant.clone(),
        origin: ledger.origin(t),
        file_format: job.format,
        selection: job.selection.clone(),
        first_seq: job.first_seq,
        end_seq: job.end_seq,
        count: total,
        prev_hash,
        files,
        frontier,
        checkpoint: job.checkpoint.clone(),
        consistency,
    };
    let statement = manifest.statement().map_err(ExportError::Bad)?;
    let signature = ledger
        .sign_statement(t, "export", &[statement])
        .map_err(ExportError::Bad)?;
    let signed = SignedManifest {
        manifest,
        signature,
    };
    let bytes = serde_json::to_vec_pretty(&signed).map_err(|e| ExportError::Bad(e.to_string()))?;
    write_atomic(&manifest_path, &bytes)?;
    fs::remove_file(&job_path).map_err(io("remove", &job_path))?;
    sync_dir(dir)?;
    Ok(signed)
}
