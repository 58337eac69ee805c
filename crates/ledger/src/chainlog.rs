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

use agentrail_event::hash::{Hash, sha256, to_hex};
use agentrail_event::json::to_canonical_vec;
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const MAGIC: &[u8; 16] = b"agentrail-chain\x01";
const FRAME_HEAD: u64 = 8;
/// Records larger than this are refused (a record is a small JSON object).
pub const MAX_CHAIN_RECORD: usize = 1 << 20;
/// Every this many records, the in-memory index remembers an offset.
const SPARSE: u64 = 256;

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
    state: Mutex<State>,
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
    sparse: Vec<u64>,
}

/// Reads and checks a whole log without changing it: checksums, seqs and the chain.
pub fn scan_chain_log(path: &Path) -> Result<ChainScan, ChainLogError> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io("read", path))?;
    scan_bytes(path, &data)
}

fn scan_bytes(path: &Path, data: &[u8]) -> Result<ChainScan, ChainLogError> {
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
        last = Some(sha256(payload));
        seq += 1;
        pos += end;
    }
    Ok(ChainScan {
        records: seq,
        last_hash: last,
        valid_len: pos.min(data.len()) as u64,
        file_len: data.len() as u64,
        sparse,
    })
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

impl ChainLog {
    /// Opens (creating it and its directory if needed) a log, checking every record and cutting
    /// a torn tail.
    pub fn open(path: &Path) -> Result<ChainLog, ChainLogError> {
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
        let scan = scan_bytes(path, &data)?;
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
        Ok(ChainLog {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                file,
                len,
                next_seq: scan.records,
                last_hash: scan.last_hash,
                sparse: scan.sparse,
                poisoned: false,
            }),
        })
    }

    /// Replaces this log's records by `records` (re-chained from seq 0), atomically: written
    /// and fsync'd beside the file, renamed over it, the directory synced. For logs whose
    /// entries must be destroyed (shredded keys, erased token values); a crash leaves either the
    /// old log or the new one. Once the rename happened this log reads the new records, even if
    /// syncing the directory then fails (the error is returned and the log refuses appends until
    /// reopened).
    pub fn replace_all(&self, records: Vec<Map<String, Value>>) -> Result<(), ChainLogError> {
        let mut st = self.lock();
        if st.poisoned && !self.heal(&mut st) {
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
        let new = ChainLog::open(&tmp)?;
        new.append_all(records)?;
        let new_state = std::mem::replace(
            &mut *new.lock(),
            State {
                file: st.file.try_clone().map_err(io("open", &self.path))?,
                len: 0,
                next_seq: 0,
                last_hash: None,
                sparse: Vec::new(),
                poisoned: true,
            },
        );
        std::fs::rename(&tmp, &self.path).map_err(io("rename", &self.path))?;
        *st = new_state;
        if let Err(e) = sync_dir(self.path.parent().unwrap_or(Path::new("."))) {
            st.poisoned = true;
            return Err(e);
        }
        Ok(())
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
        if st.poisoned && !self.heal(&mut st) {
            return Err(ChainLogError::Poisoned {
                path: self.path.clone(),
            });
        }
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
            self.heal(&mut st);
            return Err(ChainLogError::Io {
                op: "append to",
                path: self.path.clone(),
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
    fn heal(&self, st: &mut State) -> bool {
        let healed = st
            .file
            .set_len(st.len)
            .and_then(|()| st.file.sync_all())
            .is_ok()
            // (A rename in `replace_all` whose directory sync failed is made durable here too.)
            && sync_dir(self.path.parent().unwrap_or(Path::new("."))).is_ok();
        if healed {
            st.poisoned = false;
        }
        healed
    }

    /// Up to `limit` records from `from` on.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<ChainRecord>, ChainLogError> {
        let st = self.lock();
        if from >= st.next_seq || limit == 0 {
            return Ok(Vec::new());
        }
        let mut seq = from - from % SPARSE;
        let mut offset = st.sparse[(from / SPARSE) as usize];
        let mut out = Vec::new();
        let damaged = |offset: u64, seq: u64, reason: &str| ChainLogError::Damaged {
            path: self.path.clone(),
            offset,
            seq,
            reason: reason.into(),
        };
        while seq < st.next_seq && out.len() < limit {
            let mut head = [0u8; FRAME_HEAD as usize];
            st.file
                .read_exact_at(&mut head, offset)
                .map_err(io("read", &self.path))?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > MAX_CHAIN_RECORD {
                return Err(damaged(offset, seq, "record length is too large"));
            }
            if seq >= from {
                let mut payload = vec![0u8; len];
                st.file
                    .read_exact_at(&mut payload, offset + FRAME_HEAD)
                    .map_err(io("read", &self.path))?;
                let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                if crc32c::crc32c(&payload) != crc {
                    return Err(damaged(offset, seq, "checksum mismatch"));
                }
                out.push(ChainRecord {
                    seq,
                    hash: sha256(&payload),
                    bytes: payload,
                });
            }
            offset += FRAME_HEAD + len as u64;
            seq += 1;
        }
        Ok(out)
    }
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
        // A rewrite keeps only what it is given, re-chained from 0, atomically.
        let log = ChainLog::open(&path).unwrap();
        log.replace_all(vec![rec(7), rec(9)]).unwrap();
        let all = log.read(0, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].value()["prev_hash"], Value::Null);
        assert_eq!(all[1].value()["prev_hash"], json!(to_hex(&all[0].hash)));
        assert_eq!(log.append(rec(10)).unwrap().seq, 2);
        drop(log);
        assert_eq!(check_reopen(&path).unwrap(), 3);
        assert!(!dir.path().join("a/log.rewrite").exists());
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
        let scan = scan_bytes(&path, &good).unwrap();
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
