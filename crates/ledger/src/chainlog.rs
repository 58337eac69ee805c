//! A small append-only, hash-chained log of JSON records: a tenant's access log (who read what)
//! and, later, the system ledger of integrity reports. No Merkle tree: records are chained, each
//! naming the hash of the one before, so a deleted, reordered or edited record breaks the chain.
//!
//! Format (little-endian): a 16-byte header `agentrail-chain\x01`, then frames
//! `len u32 | crc32c(payload) u32 | payload`, where the payload is the RFC 8785 form of a JSON
//! object holding `seq` (0, 1, 2, …), `prev_hash` (hex SHA-256 of the previous payload, `null`
//! for seq 0) and the record's own fields. A record's hash is SHA-256 of its payload.
//!
//! An append returns after `fdatasync`. On open, an incomplete last frame (or a last frame whose
//! payload holds NUL bytes: a zero-filled tail after a crash; canonical JSON never holds NUL) was
//! never acknowledged and is cut; anything else that does not verify refuses the log.
//!
//! Logs whose entries must be destroyed (wrapped keys of a shredded subject, erased token
//! values) are opened *redactable*: [`ChainLog::redact`] replaces a record by a tombstone
//! `{"prev_hash", "redacted": <hex of the record's hash>, "seq", …}` whose hash is the one it
//! names, so the chain — and a head committed in a signed checkpoint ([`crate::anchors`]) —
//! stays what it was. Any other log refuses a tombstone as damage: its records are never
//! destroyed, so one that says it was is an edit.

use agentrail_event::hash::{Hash, from_hex, sha256, to_hex};
use agentrail_event::json::to_canonical_vec;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

const MAGIC: &[u8; 16] = b"agentrail-chain\x01";
const FRAME_HEAD: u64 = 8;
/// Records larger than this are refused (a record is a small JSON object).
pub const MAX_CHAIN_RECORD: usize = 1 << 20;
/// Every this many records, the in-memory index remembers an offset.
const SPARSE: u64 = 256;
/// The field of a tombstone naming the hash of the record it replaced.
const REDACTED: &str = "redacted";

/// What this process knows of each log it opened: its head (records, last hash), kept when the
/// log is closed (only an open log appends), and the open log itself, to read a record from.
struct Known {
    head: (u64, Option<Hash>),
    live: Weak<Mutex<State>>,
}

static KNOWN: LazyLock<Mutex<HashMap<PathBuf, Known>>> = LazyLock::new(Default::default);

fn known() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Known>> {
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

fn note_head(path: &Path, st: &State, live: Option<&Arc<Mutex<State>>>) {
    let mut k = known();
    let e = k.entry(path.to_path_buf()).or_insert_with(|| Known {
        head: (0, None),
        live: Weak::new(),
    });
    e.head = (st.next_seq, st.last_hash);
    if let Some(live) = live {
        e.live = Arc::downgrade(live);
    }
}

/// The head (number of records, hash of the last) of the log at `path`: from this process's
/// open log, or what it held when it was closed, or else read from the file (a missing file is
/// an empty log). What a signed checkpoint commits ([`crate::anchors`]).
pub fn head_of(path: &Path, redactable: bool) -> Result<(u64, Option<Hash>), ChainLogError> {
    if let Some(e) = known().get(path) {
        return Ok(e.head);
    }
    // Read once: only this process writes the directory (it holds its lock), and through an
    // open log, which keeps the head current.
    let head = if path.exists() {
        let scan = scan_chain_log_at(path, redactable, None)?;
        (scan.records, scan.last_hash)
    } else {
        (0, None)
    };
    known().entry(path.to_path_buf()).or_insert(Known {
        head,
        live: Weak::new(),
    });
    Ok(head)
}

/// Checks that the log at `path` holds at least `count` records and that record `count − 1`
/// has `hash`: what a signed checkpoint committed is still there, unedited. Reads one record
/// of an open log; otherwise the whole file (checking every record on the way).
pub fn check_head(path: &Path, redactable: bool, count: u64, hash: &Hash) -> Result<(), String> {
    if count == 0 {
        return Ok(());
    }
    let live = known().get(path).and_then(|e| e.live.upgrade());
    let (records, at) = match live {
        Some(st) => {
            let st = st.lock().unwrap_or_else(|e| e.into_inner());
            let at = read_state(path, &st, count - 1, 1)
                .map_err(|e| e.to_string())?
                .pop()
                .map(|r| r.hash);
            (st.next_seq, at)
        }
        None => {
            if !path.exists() {
                return Err(format!(
                    "the log is missing; a signed checkpoint commits its first {count} records"
                ));
            }
            let scan =
                scan_chain_log_at(path, redactable, Some(count - 1)).map_err(|e| e.to_string())?;
            (scan.records, scan.hash_at)
        }
    };
    if records < count {
        return Err(format!(
            "it holds {records} records; a signed checkpoint commits {count} (records were removed)"
        ));
    }
    if at.as_ref() != Some(hash) {
        return Err(format!(
            "record {} has hash {}, a signed checkpoint committed {} (the log was rewritten)",
            count - 1,
            at.as_ref().map_or_else(|| "none".into(), to_hex),
            to_hex(hash)
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ChainLogError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} at offset {offset} (record {seq}): {reason}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        seq: u64,
        reason: String,
    },
    #[error("record is not a JSON object that can be canonicalized: {0}")]
    BadRecord(String),
    #[error("{path}: a write failed earlier; the log refuses appends until it is reopened")]
    Poisoned { path: PathBuf },
}

/// One record as stored: its seq, hash and canonical payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRecord {
    pub seq: u64,
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

impl ChainRecord {
    /// Whether this is the tombstone of a destroyed record ([`ChainLog::redact`]).
    pub fn is_tombstone(&self) -> bool {
        record_hash(&self.bytes, None, true).is_ok_and(|(_, t)| t)
    }

    /// The payload with its `hash` added, as served to readers.
    pub fn value(&self) -> Value {
        let mut v: Value = serde_json::from_slice(&self.bytes).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("hash".into(), Value::String(to_hex(&self.hash)));
        }
        v
    }
}

struct State {
    file: File,
    len: u64,
    next_seq: u64,
    last_hash: Option<Hash>,
    /// Offsets of records `0, SPARSE, 2·SPARSE, …`.
    sparse: Vec<u64>,
    poisoned: bool,
}

/// An open chain log. Appends are serialized by a mutex and fsync'd one by one.
pub struct ChainLog {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    /// Whether tombstones are records of this log ([`ChainLog::redact`]).
    redactable: bool,
}

impl Drop for ChainLog {
    fn drop(&mut self) {
        let st = self.lock();
        note_head(&self.path, &st, None);
    }
}

impl std::fmt::Debug for ChainLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainLog({})", self.path.display())
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ChainLogError {
    let path = path.to_path_buf();
    move |source| ChainLogError::Io { op, path, source }
}

static RECOVERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Torn tails cut from chain logs by this process (every open logs the file, offset and
/// record count).
pub fn chain_log_recoveries() -> u64 {
    RECOVERIES.load(std::sync::atomic::Ordering::Relaxed)
}

/// What a scan of a log found.
#[derive(Debug)]
pub struct ChainScan {
    pub records: u64,
    pub last_hash: Option<Hash>,
    /// Where the verified records end (a torn tail beyond is not counted).
    pub valid_len: u64,
    pub file_len: u64,
    /// Tombstones among the records ([`ChainLog::redact`]).
    pub redacted: u64,
    /// The hash of the record asked for, if there is one.
    pub hash_at: Option<Hash>,
    sparse: Vec<u64>,
}

/// Reads and checks a whole log without changing it: checksums, seqs and the chain; a
/// tombstone is damage unless the log is `redactable`.
pub fn scan_chain_log(path: &Path, redactable: bool) -> Result<ChainScan, ChainLogError> {
    scan_chain_log_at(path, redactable, None)
}

fn scan_chain_log_at(
    path: &Path,
    redactable: bool,
    at: Option<u64>,
) -> Result<ChainScan, ChainLogError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io("read", path))?;
    scan_bytes(path, &data, redactable, at)
}

/// A record's hash: SHA-256 of its payload, or for a tombstone the hash it names.
fn record_hash(
    payload: &[u8],
    parsed: Option<&Value>,
    redactable: bool,
) -> Result<(Hash, bool), String> {
    // Canonical JSON escapes every quote inside a string, so this byte string can only be a
    // key; most records never hold it and are not parsed here.
    let needle = b"\"redacted\":";
    if !payload.windows(needle.len()).any(|w| w == needle) {
        return Ok((sha256(payload), false));
    }
    let owned;
    let v = match parsed {
        Some(v) => v,
        None => {
            owned = serde_json::from_slice::<Value>(payload)
                .map_err(|e| format!("payload is not JSON: {e}"))?;
            &owned
        }
    };
    match v.get(REDACTED) {
        None => Ok((sha256(payload), false)),
        Some(_) if !redactable => {
            Err("a redacted record in a log whose records are never destroyed (an edit)".into())
        }
        Some(h) => h
            .as_str()
            .and_then(from_hex)
            .map(|h| (h, true))
            .ok_or_else(|| "a tombstone whose \"redacted\" is not a SHA-256 hex digest".into()),
    }
}

fn scan_bytes(
    path: &Path,
    data: &[u8],
    redactable: bool,
    at: Option<u64>,
) -> Result<ChainScan, ChainLogError> {
    let damaged = |offset: u64, seq: u64, reason: String| ChainLogError::Damaged {
        path: path.to_path_buf(),
        offset,
        seq,
        reason,
    };
    if data.len() < MAGIC.len() {
        if MAGIC.starts_with(data) {
            // A header torn while the file was being created: an empty log.
            return Ok(ChainScan {
                records: 0,
                last_hash: None,
                valid_len: 0,
                file_len: data.len() as u64,
                redacted: 0,
                hash_at: None,
                sparse: Vec::new(),
            });
        }
        return Err(damaged(0, 0, "not a chain log (bad header)".into()));
    }
    if &data[..MAGIC.len()] != MAGIC {
        return Err(damaged(0, 0, "not a chain log (bad header)".into()));
    }
    let mut pos = MAGIC.len();
    let mut seq = 0u64;
    let mut last: Option<Hash> = None;
    let mut sparse = Vec::new();
    let (mut redacted, mut hash_at) = (0u64, None);
    while pos < data.len() {
        let offset = pos as u64;
        let rest = &data[pos..];
        if rest.len() < FRAME_HEAD as usize {
            break; // torn frame head
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 && crc == 0 && rest.iter().all(|&b| b == 0) {
            break; // zero-filled tail
        }
        if len > MAX_CHAIN_RECORD {
            return Err(damaged(
                offset,
                seq,
                format!("record length {len} is too large"),
            ));
        }
        let end = FRAME_HEAD as usize + len;
        if rest.len() < end {
            break; // torn payload
        }
        let payload = &rest[FRAME_HEAD as usize..end];
        let is_last = rest.len() == end;
        if crc32c::crc32c(payload) != crc {
            if is_last && payload.contains(&0) {
                break; // zero-filled payload of an unacknowledged last record
            }
            return Err(damaged(offset, seq, "checksum mismatch".into()));
        }
        let v: Value = serde_json::from_slice(payload)
            .map_err(|e| damaged(offset, seq, format!("payload is not JSON: {e}")))?;
        let got_seq = v.get("seq").and_then(Value::as_u64);
        if got_seq != Some(seq) {
            return Err(damaged(
                offset,
                seq,
                format!("expected seq {seq}, found {got_seq:?}"),
            ));
        }
        let prev = v.get("prev_hash").and_then(Value::as_str);
        let want = last.as_ref().map(to_hex);
        if prev != want.as_deref() {
            return Err(damaged(
                offset,
                seq,
                format!("prev_hash {prev:?} is not the previous record's hash {want:?}"),
            ));
        }
        if seq.is_multiple_of(SPARSE) {
            sparse.push(offset);
        }
        let (hash, tomb) =
            record_hash(payload, Some(&v), redactable).map_err(|r| damaged(offset, seq, r))?;
        redacted += u64::from(tomb);
        if at == Some(seq) {
            hash_at = Some(hash);
        }
        last = Some(hash);
        seq += 1;
        pos += end;
    }
    Ok(ChainScan {
        records: seq,
        last_hash: last,
        valid_len: pos.min(data.len()) as u64,
        file_len: data.len() as u64,
        redacted,
        hash_at,
        sparse,
    })
}

/// The header every log file starts with: a log is this, then the frames of its records.
pub fn file_header() -> &'static [u8] {
    MAGIC
}

/// The frames of `records` as the log file stores them, back to back: a piece of the file
/// (what the archive keeps of a log; [`file_header`] and the pieces in order are the file).
pub fn frames_of(records: &[ChainRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&frame(&r.bytes));
    }
    out
}

/// The stored frames of records `[first, end)` of the log file at `path`, as
/// [`frames_of`] gives them (read-only: what the archive's piece of the log must equal).
pub fn frames_in(path: &Path, first: u64, end: u64) -> Result<Vec<u8>, ChainLogError> {
    let data = std::fs::read(path).map_err(io("read", path))?;
    let damaged = |offset: usize, seq: u64, reason: &str| ChainLogError::Damaged {
        path: path.to_path_buf(),
        offset: offset as u64,
        seq,
        reason: reason.to_owned(),
    };
    if !data.starts_with(MAGIC) {
        return Err(damaged(0, 0, "not a chain log"));
    }
    let mut pos = MAGIC.len();
    let mut start = None;
    for seq in 0..end {
        if seq == first {
            start = Some(pos);
        }
        let len = data
            .get(pos..pos + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| damaged(pos, seq, "the log ends before this record"))?;
        let next = pos + FRAME_HEAD as usize + len as usize;
        if next > data.len() {
            return Err(damaged(pos, seq, "the log ends inside this record"));
        }
        pos = next;
    }
    Ok(start.map_or_else(Vec::new, |s| data[s..pos].to_vec()))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + FRAME_HEAD as usize);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn sync_dir(dir: &Path) -> Result<(), ChainLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))
}

/// Appends records to a locked log state: one write and one fsync (see [`ChainLog::append_all`]).
fn append_locked(
    path: &Path,
    st: &mut State,
    records: Vec<Map<String, Value>>,
) -> Result<Vec<ChainRecord>, ChainLogError> {
    let mut next_seq = st.next_seq;
    let mut last_hash = st.last_hash;
    let mut bytes = Vec::new();
    let mut out = Vec::with_capacity(records.len());
    let mut offsets = Vec::with_capacity(records.len());
    for mut record in records {
        record.insert("seq".into(), Value::from(next_seq));
        record.insert(
            "prev_hash".into(),
            last_hash
                .as_ref()
                .map_or(Value::Null, |h| Value::String(to_hex(h))),
        );
        let payload = to_canonical_vec(&Value::Object(record))
            .map_err(|e| ChainLogError::BadRecord(e.to_string()))?;
        if payload.len() > MAX_CHAIN_RECORD {
            return Err(ChainLogError::BadRecord(format!(
                "record is {} bytes, above the limit of {MAX_CHAIN_RECORD}",
                payload.len()
            )));
        }
        offsets.push(st.len + bytes.len() as u64);
        bytes.extend_from_slice(&frame(&payload));
        let hash = sha256(&payload);
        last_hash = Some(hash);
        out.push(ChainRecord {
            seq: next_seq,
            hash,
            bytes: payload,
        });
        next_seq += 1;
    }
    if out.is_empty() {
        return Ok(out);
    }
    let written = st
        .file
        .write_all_at(&bytes, st.len)
        .and_then(|()| st.file.sync_data());
    if let Err(e) = written {
        // Never retry an fsync and carry on with the same file state: cut the file back to
        // its durable records first (the failed write may sit in the page cache, never to
        // reach the disk); until that works the log refuses appends.
        st.poisoned = true;
        heal(path, st);
        return Err(ChainLogError::Io {
            op: "append to",
            path: path.to_path_buf(),
            source: e,
        });
    }
    for (r, offset) in out.iter().zip(offsets) {
        if r.seq.is_multiple_of(SPARSE) {
            st.sparse.push(offset);
        }
    }
    st.len += bytes.len() as u64;
    st.next_seq = next_seq;
    st.last_hash = last_hash;
    Ok(out)
}

/// After a failed append: cuts the file back to the records known durable (`st.len`, what
/// memory holds) and makes that durable; true when the log may take appends again.
fn heal(path: &Path, st: &mut State) -> bool {
    let healed = st
        .file
        .set_len(st.len)
        .and_then(|()| st.file.sync_all())
        .is_ok()
        // (A rename in `redact` whose directory sync failed is made durable here too.)
        && sync_dir(path.parent().unwrap_or(Path::new("."))).is_ok();
    if healed {
        st.poisoned = false;
    }
    healed
}

impl ChainLog {
    /// Opens (creating it and its directory if needed) a log, checking every record and cutting
    /// a torn tail. Its records are never destroyed: a tombstone in it is damage.
    pub fn open(path: &Path) -> Result<ChainLog, ChainLogError> {
        ChainLog::open_with(path, false)
    }

    /// [`ChainLog::open`] for a log whose records may be destroyed ([`ChainLog::redact`]).
    pub fn open_redactable(path: &Path) -> Result<ChainLog, ChainLogError> {
        ChainLog::open_with(path, true)
    }

    fn open_with(path: &Path, redactable: bool) -> Result<ChainLog, ChainLogError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let created = !path.exists();
        if created {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open", path))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io("read", path))?;
        let scan = scan_bytes(path, &data, redactable, None)?;
        let mut len = scan.valid_len;
        if len < MAGIC.len() as u64 {
            file.set_len(0).map_err(io("truncate", path))?;
            file.seek(SeekFrom::Start(0)).map_err(io("seek", path))?;
            file.write_all(MAGIC).map_err(io("write", path))?;
            file.sync_all().map_err(io("sync", path))?;
            sync_dir(dir)?;
            len = MAGIC.len() as u64;
        } else if scan.file_len > len {
            file.set_len(len).map_err(io("truncate", path))?;
            file.sync_all().map_err(io("sync", path))?;
            RECOVERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                file = %path.display(),
                offset = len,
                records = scan.records,
                cut_bytes = scan.file_len - len,
                "chain log recovery: cut a torn tail, never acknowledged"
            );
        }
        let state = Arc::new(Mutex::new(State {
            file,
            len,
            next_seq: scan.records,
            last_hash: scan.last_hash,
            sparse: scan.sparse,
            poisoned: false,
        }));
        note_head(
            path,
            &state.lock().unwrap_or_else(|e| e.into_inner()),
            Some(&state),
        );
        Ok(ChainLog {
            path: path.to_path_buf(),
            state,
            redactable,
        })
    }

    /// Destroys records and appends others, atomically: each record `which` picks (tombstones
    /// are not offered again) becomes a tombstone keeping its seq, `prev_hash` and hash, with
    /// the fields `which` returns; then `append` follows, chained. The new file is written and
    /// fsync'd beside the log, renamed over it, the directory synced: a crash leaves either the
    /// old log or the new one, and every hash of the old records stays what it was. Once the
    /// rename happened this log reads the new records, even if syncing the directory then fails
    /// (the error is returned and the log refuses appends until it is healed). Returns how many
    /// records became tombstones.
    pub fn redact(
        &self,
        mut which: impl FnMut(&ChainRecord) -> Option<Map<String, Value>>,
        append: Vec<Map<String, Value>>,
    ) -> Result<u64, ChainLogError> {
        if !self.redactable {
            return Err(ChainLogError::BadRecord(format!(
                "{}: the records of this log are never destroyed",
                self.path.display()
            )));
        }
        let mut st = self.lock();
        if st.poisoned && !heal(&self.path, &mut st) {
            return Err(ChainLogError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".rewrite");
        let tmp = self.path.with_file_name(name);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &tmp)(e)),
        }
        let mut bytes = MAGIC.to_vec();
        let mut destroyed = 0u64;
        let mut from = 0;
        while from < st.next_seq {
            let recs = read_state(&self.path, &st, from, 4096)?;
            let Some(last) = recs.last() else { break };
            from = last.seq + 1;
            for r in recs {
                let tomb = r.is_tombstone();
                let payload = match (tomb, if tomb { None } else { which(&r) }) {
                    (false, Some(mut fields)) => {
                        destroyed += 1;
                        let prev = serde_json::from_slice::<Value>(&r.bytes)
                            .ok()
                            .and_then(|v| v.get("prev_hash").cloned())
                            .unwrap_or(Value::Null);
                        fields.insert("seq".into(), Value::from(r.seq));
                        fields.insert("prev_hash".into(), prev);
                        fields.insert(REDACTED.into(), Value::String(to_hex(&r.hash)));
                        to_canonical_vec(&Value::Object(fields))
                            .map_err(|e| ChainLogError::BadRecord(e.to_string()))?
                    }
                    _ => r.bytes,
                };
                bytes.extend_from_slice(&frame(&payload));
            }
        }
        let written = (|| -> std::io::Result<File> {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(f)
        })()
        .map_err(io("write", &tmp))?;
        // The sparse index of the new file (offsets moved where tombstones differ in length).
        let scan = scan_bytes(&tmp, &bytes, true, None)?;
        let mut new_state = State {
            file: written,
            len: bytes.len() as u64,
            next_seq: st.next_seq,
            last_hash: st.last_hash,
            sparse: scan.sparse,
            poisoned: false,
        };
        append_locked(&tmp, &mut new_state, append)?;
        std::fs::rename(&tmp, &self.path).map_err(io("rename", &self.path))?;
        *st = new_state;
        note_head(&self.path, &st, None);
        if let Err(e) = sync_dir(self.path.parent().unwrap_or(Path::new("."))) {
            st.poisoned = true;
            return Err(e);
        }
        Ok(destroyed)
    }

    /// The number of records and the hash of the last.
    pub fn head(&self) -> (u64, Option<Hash>) {
        let st = self.lock();
        (st.next_seq, st.last_hash)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of records.
    pub fn records(&self) -> u64 {
        self.lock().next_seq
    }

    pub fn is_empty(&self) -> bool {
        self.records() == 0
    }

    /// Appends a record (its `seq` and `prev_hash` are set here; any given are replaced) and
    /// returns it once durable.
    pub fn append(&self, record: Map<String, Value>) -> Result<ChainRecord, ChainLogError> {
        self.append_all(vec![record])?
            .pop()
            .ok_or_else(|| ChainLogError::BadRecord("no record appended".into()))
    }

    /// Appends records in order with one write and one fsync; returns them once all are
    /// durable. Nothing is appended if one of them is refused.
    pub fn append_all(
        &self,
        records: Vec<Map<String, Value>>,
    ) -> Result<Vec<ChainRecord>, ChainLogError> {
        let mut st = self.lock();
        if st.poisoned && !heal(&self.path, &mut st) {
            return Err(ChainLogError::Poisoned {
                path: self.path.clone(),
            });
        }
        let out = append_locked(&self.path, &mut st, records)?;
        if !out.is_empty() {
            note_head(&self.path, &st, None);
        }
        Ok(out)
    }

    /// Calls `f` with every record, oldest first (read a page at a time, the log unlocked
    /// between pages); the first error ends it.
    pub fn for_each<E: From<ChainLogError>>(
        &self,
        mut f: impl FnMut(&ChainRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut from = 0;
        loop {
            let recs = self.read(from, 4096)?;
            let Some(last) = recs.last() else {
                return Ok(());
            };
            from = last.seq + 1;
            for r in &recs {
                f(r)?;
            }
        }
    }

    /// Up to `limit` records from `from` on.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<ChainRecord>, ChainLogError> {
        read_state(&self.path, &self.lock(), from, limit)
    }
}

/// Up to `limit` records from `from` on, of a locked log state (a tombstone's hash is the one
/// it names).
fn read_state(
    path: &Path,
    st: &State,
    from: u64,
    limit: usize,
) -> Result<Vec<ChainRecord>, ChainLogError> {
    if from >= st.next_seq || limit == 0 {
        return Ok(Vec::new());
    }
    let mut seq = from - from % SPARSE;
    let mut offset = st.sparse[(from / SPARSE) as usize];
    let mut out = Vec::new();
    let damaged = |offset: u64, seq: u64, reason: &str| ChainLogError::Damaged {
        path: path.to_path_buf(),
        offset,
        seq,
        reason: reason.into(),
    };
    while seq < st.next_seq && out.len() < limit {
        let mut head = [0u8; FRAME_HEAD as usize];
        st.file
            .read_exact_at(&mut head, offset)
            .map_err(io("read", path))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_CHAIN_RECORD {
            return Err(damaged(offset, seq, "record length is too large"));
        }
        if seq >= from {
            let mut payload = vec![0u8; len];
            st.file
                .read_exact_at(&mut payload, offset + FRAME_HEAD)
                .map_err(io("read", path))?;
            let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if crc32c::crc32c(&payload) != crc {
                return Err(damaged(offset, seq, "checksum mismatch"));
            }
            let (hash, _) =
                record_hash(&payload, None, true).map_err(|r| damaged(offset, seq, &r))?;
            out.push(ChainRecord {
                seq,
                hash,
                bytes: payload,
            });
        }
        offset += FRAME_HEAD + len as u64;
        seq += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(i: u64) -> Map<String, Value> {
        match json!({"what": "read", "n": i}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn check_reopen(path: &Path) -> Result<u64, ChainLogError> {
        Ok(ChainLog::open(path)?.records())
    }

    #[test]
    fn append_read_reopen_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/log");
        let log = ChainLog::open(&path).unwrap();
        let mut hashes = Vec::new();
        for i in 0..300 {
            hashes.push(log.append(rec(i)).unwrap().hash);
        }
        // The rest in batches (one write and fsync each), crossing sparse-index boundaries.
        for chunk in (300..600).collect::<Vec<_>>().chunks(70) {
            let recs = log
                .append_all(chunk.iter().map(|&i| rec(i)).collect())
                .unwrap();
            assert_eq!(recs[0].seq, chunk[0]);
            hashes.extend(recs.iter().map(|r| r.hash));
        }
        assert!(log.append_all(Vec::new()).unwrap().is_empty());
        let got = log.read(255, 3).unwrap();
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![255, 256, 257]
        );
        assert_eq!(got[1].value()["prev_hash"], json!(to_hex(&hashes[255])));
        assert_eq!(got[1].value()["hash"], json!(to_hex(&hashes[256])));
        let got = log.read(511, 2).unwrap();
        assert_eq!(got[1].value()["prev_hash"], json!(to_hex(&hashes[511])));
        assert_eq!(got[1].value()["seq"], json!(512));
        drop(log);
        assert_eq!(check_reopen(&path).unwrap(), 600);
        let log = ChainLog::open(&path).unwrap();
        let r = log.append(rec(600)).unwrap();
        assert_eq!(r.seq, 600);
        assert_eq!(r.value()["prev_hash"], json!(to_hex(&hashes[599])));
        assert!(log.read(601, 10).unwrap().is_empty());
        drop(log);
        // Records of a plain log are never destroyed.
        let log = ChainLog::open(&path).unwrap();
        assert!(log.redact(|_| Some(Map::new()), vec![]).is_err());
        assert_eq!(log.head(), (601, Some(log.read(600, 1).unwrap()[0].hash)));
    }

    #[test]
    fn redaction_keeps_the_chain_and_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = ChainLog::open_redactable(&path).unwrap();
        for i in 0..600 {
            log.append(rec(i)).unwrap();
        }
        let (n, head) = log.head();
        let (n, head) = (n, head.unwrap());
        let h7 = log.read(7, 1).unwrap()[0].hash;
        // Records 7 and 300 destroyed (one keeps a field), one appended, in one rewrite.
        let destroyed = log
            .redact(
                |r| match r.value()["n"].as_u64() {
                    Some(7) => Some(Map::new()),
                    Some(300) => match json!({"kept": true}) {
                        Value::Object(m) => Some(m),
                        _ => None,
                    },
                    _ => None,
                },
                vec![rec(600)],
            )
            .unwrap();
        assert_eq!(destroyed, 2);
        let r7 = &log.read(7, 1).unwrap()[0];
        assert!(r7.is_tombstone());
        assert_eq!(r7.hash, h7);
        assert!(r7.value().get("n").is_none());
        assert_eq!(log.read(300, 1).unwrap()[0].value()["kept"], json!(true));
        // What was committed before still checks, open or read from the file.
        check_head(&path, true, n, &head).unwrap();
        check_head(&path, true, 8, &h7).unwrap();
        assert_eq!(log.records(), 601);
        // A tombstone is not offered again.
        assert_eq!(log.redact(|_| Some(Map::new()), vec![]).unwrap(), 599);
        assert_eq!(log.redact(|_| Some(Map::new()), vec![]).unwrap(), 0);
        drop(log);
        assert!(!dir.path().join("log.rewrite").exists());
        check_head(&path, true, n, &head).unwrap();
        assert_eq!(head_of(&path, true).unwrap().0, 601);
        let log = ChainLog::open_redactable(&path).unwrap();
        assert_eq!(log.records(), 601);
        drop(log);
        // The same file read as a log that never destroys records: the tombstones are edits.
        known().remove(&path);
        let e = ChainLog::open(&path).unwrap_err().to_string();
        assert!(e.contains("never destroyed"), "{e}");
        // A commitment beyond the records, or to another hash, fails, naming which.
        let e = check_head(&path, true, 700, &head).unwrap_err();
        assert!(e.contains("holds 601 records"), "{e}");
        let e = check_head(&path, true, 8, &head).unwrap_err();
        assert!(e.contains("record 7 has hash"), "{e}");
    }

    #[test]
    fn torn_tails_are_cut_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = ChainLog::open(&path).unwrap();
        for i in 0..5 {
            log.append(rec(i)).unwrap();
        }
        drop(log);
        let good = std::fs::read(&path).unwrap();
        // Torn: a cut inside the last frame, and a zero-filled tail.
        for cut in [good.len() - 1, good.len() - 20] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert_eq!(check_reopen(&path).unwrap(), 4, "cut at {cut}");
        }
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0u8; 300]);
        std::fs::write(&path, &zeros).unwrap();
        assert_eq!(check_reopen(&path).unwrap(), 5);
        // A flipped byte in any record but a torn last one is damage.
        for at in [MAGIC.len() + 12, good.len() / 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let e = check_reopen(&path).unwrap_err().to_string();
            assert!(
                e.contains("checksum mismatch") || e.contains("record"),
                "{e}"
            );
        }
        // A whole record removed breaks the chain (seq and prev_hash).
        let scan = scan_bytes(&path, &good, false, None).unwrap();
        assert_eq!(scan.records, 5);
        let second = {
            let len0 = u32::from_le_bytes(good[16..20].try_into().unwrap()) as usize;
            16 + 8 + len0
        };
        let len1 = u32::from_le_bytes(good[second..second + 4].try_into().unwrap()) as usize;
        let mut cut = good[..second].to_vec();
        cut.extend_from_slice(&good[second + 8 + len1..]);
        std::fs::write(&path, &cut).unwrap();
        let e = check_reopen(&path).unwrap_err().to_string();
        assert!(e.contains("expected seq 1"), "{e}");
    }
}
