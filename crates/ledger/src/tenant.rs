//! One tenant's ledger: its files, its sequencer state, recovery on open, group commit, reads,
//! proofs and checkpoints. [`crate::Ledger`] owns many of these behind an LRU.
//!
//! Locks: `state` (the sequencer: held while sequencing and writing a batch to the page cache),
//! then `sync` (durability bookkeeping: never held during an fsync), then `ckpt` (the checkpoint
//! log). They are only ever taken in that order.

use crate::clock::Clock;
use crate::error::{AppendError, CheckpointError, Damage, OpenError, ReadError};
use crate::files::{
    self, CHECKPOINT_LOG, CHECKPOINTS_DIR, ENTRIES_FILE, LEDGER_DIR, Syncer, TREE_FILE,
    create_with_header, list_segments, open_rw, read_at, segment_name,
};
use crate::frame::{
    self, ENTRY_LEN, Entry, FileKind, HEADER_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN, RecordRead,
    decode_entry, decode_header, digest16, encode_entry, encode_note, encode_record, node_count,
    node_position,
};
use crate::layout::DataDir;
use crate::stored::{self, Prepared, ServerFields, StoredHeader};
use agentrail_event::TenantId;
use agentrail_event::hash::{sha256, to_hex};
use agentrail_merkle::{Frontier, Hash, NodeReader, leaf_hash};
use agentrail_note::{Checkpoint, Verifier, open_checkpoint};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What every tenant shares: configuration, clock, keys.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub data_dir: PathBuf,
    pub segment_size: u64,
    pub clock: Arc<dyn Clock>,
    pub watch: Arc<crate::clock::ClockWatch>,
    pub syncer: Syncer,
    pub clock_skew_bound_ms: i64,
    pub origin_prefix: String,
    pub signer: Arc<dyn crate::signer::LogSigner>,
    pub verifier: Verifier,
    /// See [`crate::Config::trust_dir`].
    pub trust_dir: Option<PathBuf>,
}

impl Ctx {
    pub fn origin(&self, tenant: &TenantId) -> String {
        format!("{}/tenants/{}", self.origin_prefix, tenant)
    }
}

fn proof_err(e: agentrail_merkle::ProofError<io::Error>) -> String {
    e.to_string()
}

/// What an append returns per event: where it is in the ledger. The receipt of a replayed event
/// (same event_id, same content) is the original one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    pub event_id: String,
    pub seq: u64,
    /// Lowercase hex SHA-256 of the stored form.
    pub hash: String,
    pub received_at: String,
    /// True when this event_id was already in the ledger with the same content.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// What a tenant's ledger holds for a probed event id ([`crate::Ledger::replays`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// No event with that id.
    Absent,
    /// The same submission (same content digest): the original receipt.
    Replay(Receipt),
    /// An event with that id stored without a content digest (before the ledger kept one):
    /// only its content can tell whether it is the same. `receipt` is the answer if it is,
    /// `stored` its stored bytes.
    Undigested { receipt: Receipt, stored: Vec<u8> },
}

/// One stored event as read back: its seq, hash and canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

impl StoredEvent {
    /// The stored event's `event_id` (every stored event has one: assigned if it was sent
    /// without); `None` only if the bytes are not an event.
    pub fn event_id(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.bytes).ok()?;
        v.get("event_id")?.as_str().map(str::to_owned)
    }

    /// When the ledger received it (every stored event has `received_at`).
    pub fn received_at(&self) -> Option<jiff::Timestamp> {
        let v: serde_json::Value = serde_json::from_slice(&self.bytes).ok()?;
        v.get("received_at")?.as_str()?.parse().ok()
    }
}

/// A signed checkpoint of a tenant's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The whole signed note (C2SP tlog-checkpoint).
    pub text: String,
}

/// Reads perfect-subtree hashes from a tree file (post-order layout, see `frame`).
#[derive(Debug)]
pub(crate) struct TreeFile<'a>(pub &'a File);

impl NodeReader for TreeFile<'_> {
    type Error = io::Error;

    fn node(&self, level: u32, index: u64) -> io::Result<Hash> {
        let mut h = [0u8; 32];
        let at = HEADER_LEN as u64 + 32 * node_position(level, index);
        self.0.read_exact_at(&mut h, at)?;
        Ok(h)
    }
}

struct State {
    /// First seq of every segment; the last one is the active segment.
    segments: Vec<u64>,
    active: Arc<File>,
    active_len: u64,
    entries: Arc<File>,
    tree: Arc<File>,
    frontier: Frontier,
    next_seq: u64,
    last_hash: Option<Hash>,
    last_received: jiff::Timestamp,
    ids: HashMap<[u8; 16], u64>,
    sessions: HashMap<[u8; 16], (u64, Hash)>,
}

/// A batch's stored events, entries and tree nodes, sequenced but not yet written; they go to
/// the active segment's end (`State::active_len`) and the derived files together. Entry offsets
/// are relative to the batch's first record until then.
#[derive(Default)]
struct Pending {
    events: Vec<(u64, Vec<u8>)>,
    bytes: u64,
    entries: Vec<Entry>,
    nodes: Vec<(u64, Hash)>,
}

struct SyncState {
    /// Records `[0, written)` are in the page cache.
    written: u64,
    /// Where they end in `file`.
    written_len: u64,
    /// Where the durable records `[0, synced)` end in `file`: what a heal truncates back to.
    synced_len: u64,
    /// Records `[0, synced)` are durable; only these are visible to readers.
    synced: u64,
    syncing: bool,
    /// Why and since when the writer refuses appends (until [`Tenant::heal`] and a reopen).
    poisoned: Option<(String, Instant)>,
    /// The file holding records `[synced, written)`.
    file: Arc<File>,
    path: PathBuf,
}

struct CkptLog {
    file: File,
    len: u64,
    latest: Option<SignedCheckpoint>,
    /// The lines of `latest` committing the tenant's own logs ([`crate::anchors::own`]).
    own: Vec<String>,
    /// A change to commit although the tree did not grow ([`Tenant::anchor_soon`]).
    dirty: bool,
    written_at: Option<Instant>,
}

/// One open tenant.
pub(crate) struct Tenant {
    pub id: TenantId,
    dir: PathBuf,
    state: Mutex<State>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
    ckpt: Mutex<CkptLog>,
    /// The last checkpoint signed for receipts (not in the log): reused while it covers them.
    receipt_cp: Mutex<Option<SignedCheckpoint>>,
    /// `State::tree` (the same file for the tenant's life), for whoever must not wait for the
    /// state lock a batch's sequencing holds: nodes of the synced size are always written.
    tree_file: Arc<File>,
    /// What recovery did on open (a truncated torn tail), for logs.
    pub recovery_note: Option<String>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tenant({})", self.id)
    }
}

pub(crate) use crate::sync::lock;

struct Opener<'a> {
    id: &'a TenantId,
    dir: &'a Path,
}

impl Opener<'_> {
    fn damage(
        &self,
        file: &str,
        offset: Option<u64>,
        seq: Option<u64>,
        reason: String,
    ) -> OpenError {
        OpenError::Damaged(Damage {
            tenant: self.id.to_string(),
            file: file.to_owned(),
            offset,
            seq,
            reason,
        })
    }

    fn io(&self, op: &'static str, rel: &str) -> impl FnOnce(io::Error) -> OpenError + '_ {
        let path = self.dir.join(rel);
        let tenant = self.id.to_string();
        move |source| OpenError::Io {
            tenant,
            op,
            path,
            source,
        }
    }
}

/// Creates a tenant directory atomically: built under a temporary name, then renamed.
fn create_tenant_dir(ctx: &Ctx, id: &TenantId) -> Result<(), OpenError> {
    let layout = crate::layout::DataDir::new(&ctx.data_dir);
    let tenants = layout.tenants_dir();
    let tmp = layout.tenant_staging(id);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        let tenant = id.to_string();
        move |source| OpenError::Io {
            tenant,
            op,
            path,
            source,
        }
    };
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
    }
    for d in [LEDGER_DIR, CHECKPOINTS_DIR] {
        fs::create_dir_all(tmp.join(d)).map_err(io("create", &tmp))?;
    }
    let s = &ctx.syncer;
    create_with_header(s, &tmp.join(segment_name(0)), FileKind::Segment, 0)
        .map_err(io("create", &tmp))?;
    create_with_header(s, &tmp.join(ENTRIES_FILE), FileKind::Entries, 0)
        .map_err(io("create", &tmp))?;
    create_with_header(s, &tmp.join(TREE_FILE), FileKind::Tree, 0).map_err(io("create", &tmp))?;
    create_with_header(s, &tmp.join(CHECKPOINT_LOG), FileKind::Checkpoints, 0)
        .map_err(io("create", &tmp))?;
    for d in [LEDGER_DIR, CHECKPOINTS_DIR] {
        s.sync_dir(&tmp.join(d)).map_err(io("sync", &tmp))?;
    }
    s.sync_dir(&tmp).map_err(io("sync", &tmp))?;
    let dir = files::tenant_dir(&ctx.data_dir, id);
    fs::rename(&tmp, &dir).map_err(io("rename", &dir))?;
    s.sync_dir(&tenants).map_err(io("sync", &tenants))?;
    Ok(())
}

/// Whether damage found on open may lie in the derived files: it names one, or the records
/// and the latest checkpoint disagree (the tree's frontier is read from the tree file). Only
/// then is a rebuild worth a try; the open after it checks everything again.
fn may_be_derived(d: &Damage) -> bool {
    d.file == ENTRIES_FILE
        || d.file == TREE_FILE
        || (d.file == CHECKPOINT_LOG && d.reason.contains("does not match"))
}

/// Rewrites the entries and tree files of the tenant directory `dir` from its segments (records
/// up to the first one that does not read; the open or verification that follows checks the
/// rest). Returns what it rebuilt. Also what `restore` runs on segments fetched from the archive.
pub fn rebuild_derived(id: &TenantId, dir: &Path) -> Result<String, OpenError> {
    let o = Opener { id, dir };
    let segments = list_segments(dir).map_err(o.io("list", LEDGER_DIR))?;
    let mut entries = frame::encode_header(FileKind::Entries, 0).to_vec();
    let mut nodes: Vec<Hash> = Vec::new();
    let mut frontier = Frontier::new();
    let mut seq = 0u64;
    'segments: for &first in &segments {
        let name = segment_name(first);
        let bytes = fs::read(dir.join(&name)).map_err(o.io("read", &name))?;
        if decode_header(FileKind::Segment, &bytes) != Ok(first) || first != seq {
            break;
        }
        let mut pos = HEADER_LEN;
        loop {
            let RecordRead::Record {
                seq: s,
                payload,
                next,
                ..
            } = frame::read_record(&bytes, pos, 0)
            else {
                continue 'segments;
            };
            let Ok(h) = StoredHeader::parse(payload) else {
                break 'segments;
            };
            if s != seq {
                break 'segments;
            }
            let session = match (&h.session_id, h.session_seq) {
                (Some(sid), Some(ss)) => Some((digest16(sid), ss)),
                _ => None,
            };
            entries.extend_from_slice(&encode_entry(&Entry {
                offset: pos as u64,
                hash: sha256(payload),
                id_digest: digest16(&h.event_id),
                session,
            }));
            frontier.push(leaf_hash(payload), |level, index, h| {
                let p = node_position(level, index) as usize;
                if nodes.len() <= p {
                    nodes.resize(p + 1, [0u8; 32]);
                }
                nodes[p] = *h;
            });
            seq += 1;
            pos = next;
        }
    }
    let mut tree = frame::encode_header(FileKind::Tree, 0).to_vec();
    for n in &nodes {
        tree.extend_from_slice(n);
    }
    for (rel, aside, bytes) in [
        (ENTRIES_FILE, crate::layout::ENTRIES_DAMAGED, &entries),
        (TREE_FILE, crate::layout::TREE_DAMAGED, &tree),
    ] {
        let path = dir.join(rel);
        // The old file is evidence (of damage, or of an edit of the segments): kept aside.
        match fs::rename(&path, dir.join(aside)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(o.io("move aside", rel)(e)),
        }
        files::write_atomic(&path, bytes, 0o644).map_err(|e| OpenError::Io {
            tenant: id.to_string(),
            op: e.op,
            path: e.path,
            source: e.source,
        })?;
    }
    Ok(format!(
        "the entries and tree files from {seq} records (the old ones are kept as *.damaged)"
    ))
}

/// Reads and checks the record at `offset` of `file`, which must have sequence number `seq`.
pub(crate) fn read_record_at(
    file: &File,
    offset: u64,
    seq: u64,
) -> Result<Vec<u8>, Result<String, io::Error>> {
    let head = read_at(file, offset, RECORD_HEADER_LEN).map_err(Err)?;
    if head.len() < RECORD_HEADER_LEN {
        return Err(Ok("record header past the end of the segment".into()));
    }
    let len = (frame::u32_at(&head, 0) & !frame::MORE_IN_BATCH) as usize;
    if len > MAX_RECORD_LEN {
        return Err(Ok(format!("record length {len} is out of range")));
    }
    let mut whole = head;
    let payload = read_at(file, offset + RECORD_HEADER_LEN as u64, len).map_err(Err)?;
    whole.extend_from_slice(&payload);
    match frame::read_record(&whole, 0, offset) {
        RecordRead::Record {
            seq: s, payload, ..
        } if s == seq => Ok(payload.to_vec()),
        RecordRead::Record { seq: s, .. } => Err(Ok(format!("record has seq {s}, expected {seq}"))),
        RecordRead::End | RecordRead::Torn { .. } => {
            Err(Ok("record is cut short by the end of the segment".into()))
        }
        RecordRead::Corrupt { reason } => Err(Ok(reason)),
    }
}

fn read_entry(file: &File, seq: u64) -> io::Result<Option<Entry>> {
    let b = read_at(file, HEADER_LEN as u64 + seq * ENTRY_LEN as u64, ENTRY_LEN)?;
    Ok(decode_entry(&b))
}

fn segment_of(segments: &[u64], seq: u64) -> usize {
    segments
        .partition_point(|&first| first <= seq)
        .saturating_sub(1)
}

impl Tenant {
    /// Opens (and with `create`, first creates) a tenant, recovering from a crash: a torn tail
    /// is truncated; anything else that does not verify refuses the tenant with its location.
    /// Opens (and recovers) a tenant. The entries and tree files are derived: if either is
    /// damaged it is rebuilt from the segments and the open tried again (which re-checks the
    /// tree against the latest signed checkpoint, so a rebuild never accepts altered records
    /// a checkpoint covers).
    pub fn open(ctx: &Ctx, id: TenantId, create: bool) -> Result<Tenant, OpenError> {
        let t = Tenant::open_recovered(ctx, id, create)?;
        let (_, _, tree, size) = t.snapshot();
        if let Some(reason) = t.pin_conflict(ctx, &tree, size) {
            return Err(OpenError::Damaged(Damage {
                tenant: t.id.to_string(),
                file: pin_label(ctx, &t.id),
                offset: None,
                seq: None,
                reason,
            }));
        }
        // The logs the newest checkpoint commits must still hold what it committed.
        if let Some(latest) = t.latest_checkpoint() {
            let layout = DataDir::new(&ctx.data_dir);
            let origin = ctx.origin(&t.id);
            let excused = crate::anchors::check_or_restored(
                &layout,
                &t.id,
                &ctx.verifier,
                &origin,
                &latest.text,
            )
            .map_err(|reason| {
                    OpenError::Damaged(Damage {
                        tenant: t.id.to_string(),
                        file: CHECKPOINT_LOG.to_owned(),
                        offset: None,
                        seq: None,
                        reason: format!(
                            "the latest checkpoint (size {}) commits a log that does not hold it: {reason}",
                            latest.size
                        ),
                    })
                })?;
            if excused {
                // Restored from the archive at this checkpoint, without some of the logs it
                // commits: the next checkpoint commits them as they are.
                t.anchor_soon();
            }
        }
        Ok(t)
    }

    /// Asks the next checkpoint to be signed even if the tree did not grow: a log it commits
    /// changed in a way the tenant's own lines do not show (a record about it in a system log).
    pub fn anchor_soon(&self) {
        lock(&self.ckpt).dirty = true;
    }

    /// Why this tenant's tree does not hold its pinned checkpoint (`None`: it does, or there is
    /// none): checked at open and before every signature.
    fn pin_conflict(&self, ctx: &Ctx, tree: &File, size: u64) -> Option<String> {
        let dir = ctx.trust_dir.as_deref()?;
        let pin = match crate::pins::read_pin(dir, &self.id, &ctx.verifier, &ctx.origin(&self.id)) {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => return Some(e),
        };
        crate::pins::pin_conflict(
            &pin,
            size,
            |n| agentrail_merkle::root(&TreeFile(tree), n).ok(),
            dir,
        )
    }

    fn open_recovered(ctx: &Ctx, id: TenantId, create: bool) -> Result<Tenant, OpenError> {
        match Tenant::open_once(ctx, id.clone(), create) {
            Err(OpenError::Damaged(d)) if may_be_derived(&d) => {
                let dir = files::tenant_dir(&ctx.data_dir, &id);
                let rebuilt = rebuild_derived(&id, &dir)?;
                let mut t = Tenant::open_once(ctx, id, false)?;
                let note = format!("{d}: rebuilt {rebuilt}");
                t.recovery_note = Some(match t.recovery_note.take() {
                    Some(n) => format!("{note}; {n}"),
                    None => note,
                });
                Ok(t)
            }
            r => r,
        }
    }

    fn open_once(ctx: &Ctx, id: TenantId, create: bool) -> Result<Tenant, OpenError> {
        let dir = files::tenant_dir(&ctx.data_dir, &id);
        if !dir.exists() {
            if !create {
                return Err(OpenError::NotFound(id.to_string()));
            }
            create_tenant_dir(ctx, &id)?;
        }
        let o = Opener { id: &id, dir: &dir };
        let mut recovery_note = None;

        // ---- the checkpoint log: the latest signed checkpoint bounds what must be present.
        let ck_file = open_rw(&dir.join(CHECKPOINT_LOG)).map_err(o.io("open", CHECKPOINT_LOG))?;
        let ck_bytes = fs::read(dir.join(CHECKPOINT_LOG)).map_err(o.io("read", CHECKPOINT_LOG))?;
        decode_header(FileKind::Checkpoints, &ck_bytes)
            .map_err(|e| o.damage(CHECKPOINT_LOG, Some(0), None, e.to_string()))?;
        let mut pos = HEADER_LEN;
        let mut last_note: Option<(usize, &[u8])> = None;
        loop {
            match frame::read_note(&ck_bytes, pos) {
                RecordRead::Record { payload, next, .. } => {
                    last_note = Some((pos, payload));
                    pos = next;
                }
                RecordRead::End => break,
                RecordRead::Torn { reason } => {
                    ck_file
                        .set_len(pos as u64)
                        .map_err(o.io("truncate", CHECKPOINT_LOG))?;
                    ctx.syncer
                        .sync(&ck_file, &dir.join(CHECKPOINT_LOG))
                        .map_err(o.io("sync", CHECKPOINT_LOG))?;
                    recovery_note = Some(format!(
                        "truncated the checkpoint log at offset {pos}: {reason}"
                    ));
                    break;
                }
                RecordRead::Corrupt { reason } => {
                    return Err(o.damage(CHECKPOINT_LOG, Some(pos as u64), None, reason));
                }
            }
        }
        let ck_len = pos as u64;
        let latest = match last_note {
            None => None,
            Some((at, note)) => {
                let (cp, _) = open_checkpoint(note, &ctx.verifier, &[]).map_err(|e| {
                    o.damage(
                        CHECKPOINT_LOG,
                        Some(at as u64),
                        None,
                        format!("latest checkpoint does not verify: {e}"),
                    )
                })?;
                if cp.origin != ctx.origin(&id) {
                    return Err(o.damage(
                        CHECKPOINT_LOG,
                        Some(at as u64),
                        None,
                        format!("latest checkpoint is for origin {:?}", cp.origin),
                    ));
                }
                Some(SignedCheckpoint {
                    size: cp.size,
                    root: cp.root,
                    text: String::from_utf8_lossy(note).into_owned(),
                })
            }
        };
        let (cp_size, cp_root) = latest
            .as_ref()
            .map_or((0, agentrail_merkle::EMPTY_ROOT), |c| (c.size, c.root));

        // ---- segments: 0 first, headers matching their names.
        let segments = list_segments(&dir).map_err(o.io("list", LEDGER_DIR))?;
        if segments.first() != Some(&0) {
            return Err(o.damage(
                &segment_name(0),
                None,
                Some(0),
                "the first segment is missing".into(),
            ));
        }
        let active_first = *segments.last().unwrap_or(&0);
        let active_name = segment_name(active_first);
        let active_path = dir.join(&active_name);
        for &first in &segments {
            let name = segment_name(first);
            let f = File::open(dir.join(&name)).map_err(o.io("open", &name))?;
            let head = read_at(&f, 0, HEADER_LEN).map_err(o.io("read", &name))?;
            match decode_header(FileKind::Segment, &head) {
                Ok(base) if base == first => {}
                Ok(base) => {
                    return Err(o.damage(
                        &name,
                        Some(0),
                        None,
                        format!("header says the segment starts at seq {base}"),
                    ));
                }
                // An interrupted rollover can leave the new segment without its header.
                Err(_) if first == active_first && head.iter().all(|&b| b == 0) && first > 0 => {
                    let f = open_rw(&active_path).map_err(o.io("open", &name))?;
                    f.set_len(0).map_err(o.io("truncate", &name))?;
                    f.write_all_at(&frame::encode_header(FileKind::Segment, first), 0)
                        .map_err(o.io("write", &name))?;
                    ctx.syncer
                        .sync(&f, &active_path)
                        .map_err(o.io("sync", &name))?;
                    recovery_note = Some(format!("rewrote the unwritten header of {name}"));
                }
                Err(e) => return Err(o.damage(&name, Some(0), None, e.to_string())),
            }
        }

        // ---- derived files.
        let entries = open_rw(&dir.join(ENTRIES_FILE)).map_err(o.io("open", ENTRIES_FILE))?;
        let tree = open_rw(&dir.join(TREE_FILE)).map_err(o.io("open", TREE_FILE))?;
        for (f, kind, name) in [
            (&entries, FileKind::Entries, ENTRIES_FILE),
            (&tree, FileKind::Tree, TREE_FILE),
        ] {
            let head = read_at(f, 0, HEADER_LEN).map_err(o.io("read", name))?;
            decode_header(kind, &head).map_err(|e| o.damage(name, Some(0), None, e.to_string()))?;
        }
        let entries_len = entries
            .metadata()
            .map_err(o.io("stat", ENTRIES_FILE))?
            .len();
        let slots = entries_len.saturating_sub(HEADER_LEN as u64) / ENTRY_LEN as u64;
        if slots < active_first {
            return Err(o.damage(
                ENTRIES_FILE,
                None,
                Some(slots),
                format!("holds {slots} entries but the sealed segments hold {active_first} events"),
            ));
        }
        let entry = |seq: u64| -> Result<Entry, OpenError> {
            let at = HEADER_LEN as u64 + seq * ENTRY_LEN as u64;
            read_entry(&entries, seq)
                .map_err(o.io("read", ENTRIES_FILE))?
                .ok_or_else(|| {
                    o.damage(
                        ENTRIES_FILE,
                        Some(at),
                        Some(seq),
                        "entry checksum mismatch".into(),
                    )
                })
        };

        // Sealed segments: each must end exactly with the record before the next one starts
        // (catches a missing or truncated segment without reading it all; `verify` reads all).
        for pair in segments.windows(2) {
            let (first, next) = (pair[0], pair[1]);
            let name = segment_name(first);
            let last = next - 1;
            let e = entry(last)?;
            let f = File::open(dir.join(&name)).map_err(o.io("open", &name))?;
            let flen = f.metadata().map_err(o.io("stat", &name))?.len();
            let payload = read_record_at(&f, e.offset, last).map_err(|r| match r {
                Ok(reason) => o.damage(
                    &name,
                    Some(e.offset),
                    Some(last),
                    format!("sealed segment should end with seq {last}: {reason}"),
                ),
                Err(err) => o.io("read", &name)(err),
            })?;
            if e.offset + (RECORD_HEADER_LEN + payload.len()) as u64 != flen
                || sha256(&payload) != e.hash
            {
                return Err(o.damage(
                    &name,
                    Some(e.offset),
                    Some(last),
                    format!("sealed segment does not end with seq {last}"),
                ));
            }
        }

        // ---- the active segment: scanned in full. Its entries and tree nodes are derived and
        // never fsync'd on their own (only when the segment is sealed), so they are recomputed
        // here from the records; everything before it was made durable when it was sealed.
        let start = active_first;
        let mut last_hash = None;
        let mut last_received = jiff::Timestamp::UNIX_EPOCH;
        let mut scan_offset = HEADER_LEN as u64;
        if start > 0 {
            let anchor = start - 1;
            let e = entry(anchor)?;
            let si = segment_of(&segments, anchor);
            let name = segment_name(segments[si]);
            let f = File::open(dir.join(&name)).map_err(o.io("open", &name))?;
            let payload = read_record_at(&f, e.offset, anchor).map_err(|r| match r {
                Ok(reason) => o.damage(&name, Some(e.offset), Some(anchor), reason),
                Err(err) => o.io("read", &name)(err),
            })?;
            if sha256(&payload) != e.hash {
                return Err(o.damage(
                    &name,
                    Some(e.offset),
                    Some(anchor),
                    "record does not match its hash in the entries file".into(),
                ));
            }
            let h = StoredHeader::parse(&payload)
                .map_err(|r| o.damage(&name, Some(e.offset), Some(anchor), r))?;
            last_received = h.received_at.parse().unwrap_or(last_received);
            last_hash = Some(e.hash);
            if segments[si] == active_first {
                scan_offset = e.offset + (RECORD_HEADER_LEN + payload.len()) as u64;
            }
        }
        let mut frontier = Frontier::from_reader(&TreeFile(&tree), start).map_err(|e| {
            o.damage(
                TREE_FILE,
                None,
                Some(start),
                format!("cannot read tree nodes: {e}"),
            )
        })?;
        if cp_size <= start {
            let root = agentrail_merkle::root(&TreeFile(&tree), cp_size)
                .map_err(|e| o.damage(TREE_FILE, None, None, format!("cannot read: {e}")))?;
            if root != cp_root {
                // Either the tree file is damaged (it is rebuilt and this checked again) or the
                // segments or the checkpoint are.
                return Err(o.damage(
                    TREE_FILE,
                    None,
                    Some(cp_size),
                    format!("the tree does not match the latest checkpoint (size {cp_size})"),
                ));
            }
        }
        let active = open_rw(&active_path).map_err(o.io("open", &active_name))?;
        let active_len = active.metadata().map_err(o.io("stat", &active_name))?.len();
        let tail = read_at(
            &active,
            scan_offset,
            (active_len.saturating_sub(scan_offset)) as usize,
        )
        .map_err(o.io("read", &active_name))?;
        // Framing first: only records up to the last one that ends a batch were ever
        // acknowledged; an unfinished batch or a torn record after it is cut below, whole.
        let mut committed_end = 0usize;
        let mut cut_reason: Option<String> = None;
        {
            let (mut p, mut count, mut unfinished) = (0usize, 0u64, 0u64);
            loop {
                match frame::read_record(&tail, p, scan_offset) {
                    RecordRead::Record { next, more, .. } => {
                        p = next;
                        count += 1;
                        unfinished += 1;
                        if !more {
                            committed_end = next;
                            unfinished = 0;
                        }
                    }
                    RecordRead::End => break,
                    RecordRead::Torn { reason } => {
                        cut_reason = Some(reason.to_string());
                        break;
                    }
                    RecordRead::Corrupt { reason } => {
                        return Err(o.damage(
                            &active_name,
                            Some(scan_offset + p as u64),
                            Some(start + count),
                            reason,
                        ));
                    }
                }
            }
            if unfinished > 0 {
                let first = start + count - unfinished;
                let what = format!(
                    "an unfinished batch (seqs {first}..={})",
                    first + unfinished - 1
                );
                cut_reason = Some(match cut_reason {
                    Some(r) => format!("{what} ending in a torn record: {r}"),
                    None => what,
                });
            }
        }
        let tail_len = tail.len();
        let tail = &tail[..committed_end];
        let mut seq = start;
        let mut pos = 0usize;
        let mut new_entries = Vec::new();
        let mut new_nodes: Vec<(u64, Hash)> = Vec::new();
        let end_offset;
        loop {
            let abs = scan_offset + pos as u64;
            match frame::read_record(tail, pos, scan_offset) {
                RecordRead::Record {
                    seq: s,
                    payload,
                    next,
                    ..
                } => {
                    if s != seq {
                        return Err(o.damage(
                            &active_name,
                            Some(abs),
                            Some(seq),
                            format!("record has seq {s}, expected {seq}"),
                        ));
                    }
                    let hash = sha256(payload);
                    let h = StoredHeader::parse(payload).map_err(|r| {
                        o.damage(
                            &active_name,
                            Some(abs),
                            Some(seq),
                            format!("stored event: {r}"),
                        )
                    })?;
                    let fail =
                        |reason: String| o.damage(&active_name, Some(abs), Some(seq), reason);
                    if h.seq != seq {
                        return Err(fail(format!("stored event says seq {}", h.seq)));
                    }
                    if h.tenant_id != id.as_str() {
                        return Err(fail(format!("stored event is of tenant {:?}", h.tenant_id)));
                    }
                    if h.prev_hash.as_deref() != last_hash.as_ref().map(to_hex).as_deref() {
                        return Err(fail("prev_hash does not match the previous event".into()));
                    }
                    let session = match (&h.session_id, h.session_seq) {
                        (Some(sid), Some(ss)) => Some((digest16(sid), ss)),
                        (None, None) => None,
                        _ => return Err(fail("session_id and session_seq disagree".into())),
                    };
                    if let Ok(t) = h.received_at.parse::<jiff::Timestamp>() {
                        last_received = last_received.max(t);
                    }
                    let e = Entry {
                        offset: abs,
                        hash,
                        id_digest: digest16(&h.event_id),
                        session,
                    };
                    new_entries.extend_from_slice(&encode_entry(&e));
                    frontier.push(leaf_hash(payload), |level, index, h| {
                        new_nodes.push((node_position(level, index), *h));
                    });
                    last_hash = Some(hash);
                    seq += 1;
                    pos = next;
                    if seq == cp_size && frontier.root() != cp_root {
                        return Err(o.damage(
                            CHECKPOINT_LOG,
                            None,
                            Some(cp_size),
                            format!(
                                "the latest checkpoint (size {cp_size}) does not match the ledger's records"
                            ),
                        ));
                    }
                }
                RecordRead::End => {
                    end_offset = abs;
                    if let Some(reason) = cut_reason.take() {
                        if seq < cp_size {
                            return Err(o.damage(
                                &active_name,
                                Some(abs),
                                Some(seq),
                                format!(
                                    "{reason}, but the latest checkpoint covers {cp_size} events"
                                ),
                            ));
                        }
                        active
                            .set_len(abs)
                            .map_err(o.io("truncate", &active_name))?;
                        recovery_note = Some(format!(
                            "truncated a torn tail of {} bytes at offset {abs} of {active_name} (seq {seq}), never acknowledged: {reason}",
                            tail_len - committed_end
                        ));
                    }
                    break;
                }
                RecordRead::Torn { reason } => {
                    // The framing pass stopped at the last whole batch: nothing torn is left.
                    return Err(o.damage(&active_name, Some(abs), Some(seq), reason.into()));
                }
                RecordRead::Corrupt { reason } => {
                    return Err(o.damage(&active_name, Some(abs), Some(seq), reason));
                }
            }
        }
        let n = seq;
        if n < cp_size {
            return Err(o.damage(
                CHECKPOINT_LOG,
                None,
                Some(n),
                format!(
                    "the latest checkpoint covers {cp_size} events but the ledger holds only {n}"
                ),
            ));
        }
        // Rewrite the derived entries and nodes of the scanned range and cut anything beyond.
        entries
            .write_all_at(&new_entries, HEADER_LEN as u64 + start * ENTRY_LEN as u64)
            .map_err(o.io("write", ENTRIES_FILE))?;
        entries
            .set_len(HEADER_LEN as u64 + n * ENTRY_LEN as u64)
            .map_err(o.io("truncate", ENTRIES_FILE))?;
        for (p, h) in &new_nodes {
            tree.write_all_at(h, HEADER_LEN as u64 + 32 * p)
                .map_err(o.io("write", TREE_FILE))?;
        }
        tree.set_len(HEADER_LEN as u64 + 32 * node_count(n))
            .map_err(o.io("truncate", TREE_FILE))?;
        // What is in the segment now is what readers will see: make it durable first.
        ctx.syncer
            .sync(&active, &active_path)
            .map_err(o.io("sync", &active_name))?;
        ctx.syncer
            .sync(&entries, &dir.join(ENTRIES_FILE))
            .map_err(o.io("sync", ENTRIES_FILE))?;
        ctx.syncer
            .sync(&tree, &dir.join(TREE_FILE))
            .map_err(o.io("sync", TREE_FILE))?;

        // ---- the sequencer's maps, from the entries.
        let all = read_at(&entries, HEADER_LEN as u64, (n * ENTRY_LEN as u64) as usize)
            .map_err(o.io("read", ENTRIES_FILE))?;
        let mut ids = HashMap::with_capacity(n as usize);
        let mut sessions = HashMap::new();
        for (i, slot) in all.chunks_exact(ENTRY_LEN).enumerate() {
            let s = i as u64;
            let e = decode_entry(slot).ok_or_else(|| {
                o.damage(
                    ENTRIES_FILE,
                    Some(HEADER_LEN as u64 + s * ENTRY_LEN as u64),
                    Some(s),
                    "entry checksum mismatch".into(),
                )
            })?;
            ids.insert(e.id_digest, s);
            if let Some((sd, ss)) = e.session {
                sessions.insert(sd, (ss, e.hash));
            }
        }
        let active = Arc::new(active);
        let tree = Arc::new(tree);
        Ok(Tenant {
            dir: dir.clone(),
            tree_file: tree.clone(),
            state: Mutex::new(State {
                segments,
                active: active.clone(),
                active_len: end_offset,
                entries: Arc::new(entries),
                tree,
                frontier,
                next_seq: n,
                last_hash,
                last_received,
                ids,
                sessions,
            }),
            sync: Mutex::new(SyncState {
                written: n,
                written_len: end_offset,
                synced_len: end_offset,
                synced: n,
                syncing: false,
                poisoned: None,
                file: active,
                path: active_path,
            }),
            synced_cv: Condvar::new(),
            ckpt: Mutex::new(CkptLog {
                file: ck_file,
                len: ck_len,
                own: latest.as_ref().map_or_else(Vec::new, |c| {
                    let lines = crate::anchors::extension_lines(&c.text);
                    crate::anchors::own(&lines)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                }),
                latest,
                dirty: false,
                written_at: None,
            }),
            receipt_cp: Mutex::new(None),
            recovery_note,
            id,
        })
    }

    fn poisoned(&self) -> Option<String> {
        lock(&self.sync).poisoned.as_ref().map(|(r, _)| r.clone())
    }

    fn poison(&self, reason: String) {
        let mut s = lock(&self.sync);
        if s.poisoned.is_none() {
            s.poisoned = Some((reason, Instant::now()));
        }
        self.synced_cv.notify_all();
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned().is_some()
    }

    /// Keeps the writer poisoned and restarts its back-off (a heal or reopen failed).
    pub fn poison_again(&self, reason: String) {
        let mut s = lock(&self.sync);
        s.poisoned = Some((reason, Instant::now()));
    }

    /// Why the writer is poisoned, and for how long it has been.
    pub fn poisoned_for(&self) -> Option<(String, Duration)> {
        lock(&self.sync)
            .poisoned
            .as_ref()
            .map(|(r, at)| (r.clone(), at.elapsed()))
    }

    /// Prepares a poisoned tenant for a reopen: no retry-and-carry-on on the same file state.
    /// After a failed write or fsync the page cache may hold records that never reached the
    /// disk (and will not, once the kernel has marked them clean), so the active segment is cut
    /// back to the end of the last durable batch and that is made durable; the reopen that
    /// follows re-verifies the tail. Holds the sequencer lock, so no write of this handle runs
    /// meanwhile (and none follows: the handle stays poisoned). Returns what was cut.
    pub fn heal(&self, ctx: &Ctx) -> io::Result<String> {
        let _st = lock(&self.state);
        let s = lock(&self.sync);
        let (reason, _) = s
            .poisoned
            .clone()
            .ok_or_else(|| io::Error::other("the tenant is not poisoned"))?;
        let len = s.file.metadata()?.len();
        if len > s.synced_len {
            s.file.set_len(s.synced_len)?;
        }
        // A failed rollover may have made the segment read-only before its successor existed:
        // it is the active segment again.
        let mut perms = fs::metadata(&s.path)?.permissions();
        if perms.readonly() {
            use std::os::unix::fs::PermissionsExt;
            perms.set_mode(0o644);
            fs::set_permissions(&s.path, perms)?;
        }
        ctx.syncer.sync(&s.file, &s.path)?;
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(format!(
            "healed a write failure ({reason}): cut {} bytes of ledger/{name} after offset {} (seq {}), never acknowledged",
            len.saturating_sub(s.synced_len),
            s.synced_len,
            s.synced
        ))
    }

    /// Sequences and writes a batch, then waits until it is durable. All-or-nothing: a conflict
    /// anywhere refuses the whole batch before anything is written.
    pub fn append(&self, ctx: &Ctx, batch: Vec<Prepared>) -> Result<Vec<Receipt>, AppendError> {
        let end = {
            let mut st = lock(&self.state);
            if let Some(reason) = self.poisoned() {
                return Err(AppendError::Poisoned {
                    tenant: self.id.to_string(),
                    reason,
                });
            }
            let (receipts, end) = match self.sequence(ctx, &mut st, batch) {
                Ok(r) => r,
                Err(e @ AppendError::Conflict { .. }) => return Err(e),
                Err(e) => {
                    // Sequencing may have advanced memory past the files.
                    self.poison(e.to_string());
                    return Err(e);
                }
            };
            if end.is_none() {
                // Every event was a replay: the originals are already durable.
                return Ok(receipts.into_iter().flatten().collect());
            }
            drop(st);
            (receipts, end)
        };
        let (receipts, end) = end;
        self.wait_durable(ctx, end.unwrap_or(0))?;
        Ok(receipts.into_iter().flatten().collect())
    }

    /// What the ledger holds for each of `probes` (`(event_id, content_digest)`), in order:
    /// [`Held::Replay`] with the original receipt when the digest is the same,
    /// [`Held::Undigested`] for an id stored without a digest (only its content can tell),
    /// [`Held::Absent`] for an id not in the ledger. A different digest is a conflict. Lets a
    /// caller skip protecting events that are replays.
    pub fn replays(&self, probes: &[(&str, &str)]) -> Result<Vec<Held>, AppendError> {
        let st = lock(&self.state);
        let mut out = Vec::with_capacity(probes.len());
        for (index, (event_id, digest)) in probes.iter().enumerate() {
            let Some(&seq) = st.ids.get(&digest16(event_id)) else {
                out.push(Held::Absent);
                continue;
            };
            let (existing, header) = self.read_header(&st, seq)?;
            if header.content_digest.is_none() {
                if header.event_id == *event_id {
                    let receipt = receipt_of(&existing, header, event_id);
                    out.push(Held::Undigested {
                        receipt,
                        stored: existing.bytes,
                    });
                } else {
                    // Another id with the same 16-byte digest: not this event.
                    out.push(Held::Absent);
                }
                continue;
            }
            match as_replay(&existing, header, event_id, Some(digest), Vec::new) {
                Some(r) => out.push(Held::Replay(r)),
                None => {
                    return Err(AppendError::Conflict {
                        index,
                        event_id: (*event_id).to_owned(),
                        seq,
                    });
                }
            }
        }
        Ok(out)
    }

    fn read_header(
        &self,
        st: &State,
        seq: u64,
    ) -> Result<(StoredEvent, StoredHeader), AppendError> {
        let tenant = self.id.to_string();
        let existing = self
            .read_locked(st, seq)
            .map_err(|e| AppendError::Damaged {
                tenant: tenant.clone(),
                reason: e.to_string(),
            })?;
        let header = StoredHeader::parse(&existing.bytes).map_err(|r| AppendError::Damaged {
            tenant,
            reason: format!("seq {seq}: {r}"),
        })?;
        Ok((existing, header))
    }

    /// Under the state lock: resolve replays and conflicts, then write every new event.
    #[allow(clippy::type_complexity)]
    fn sequence(
        &self,
        ctx: &Ctx,
        st: &mut State,
        batch: Vec<Prepared>,
    ) -> Result<(Vec<Option<Receipt>>, Option<u64>), AppendError> {
        let tenant = self.id.to_string();
        // Phase 1: replays and conflicts, against the ledger and earlier events of the batch.
        let mut receipts: Vec<Option<Receipt>> = vec![None; batch.len()];
        let mut in_batch: HashMap<[u8; 16], usize> = HashMap::new();
        let mut replay_of: Vec<Option<usize>> = vec![None; batch.len()];
        for (i, p) in batch.iter().enumerate() {
            if p.assigned_id {
                continue;
            }
            let d = digest16(&p.event_id);
            if let Some(&j) = in_batch.get(&d) {
                if !same_submission(&batch[j], p) {
                    return Err(AppendError::Conflict {
                        index: i,
                        event_id: p.event_id.clone(),
                        seq: st.next_seq,
                    });
                }
                replay_of[i] = Some(j);
                continue;
            }
            if let Some(&seq) = st.ids.get(&d) {
                let (existing, header) = self.read_header(st, seq)?;
                let digest = p.content_digest.as_deref();
                match as_replay(&existing, header, &p.event_id, digest, || {
                    stored::submitted_content(p)
                }) {
                    Some(r) => receipts[i] = Some(r),
                    None => {
                        return Err(AppendError::Conflict {
                            index: i,
                            event_id: p.event_id.clone(),
                            seq,
                        });
                    }
                }
                continue;
            }
            in_batch.insert(d, i);
        }

        // Phase 2: sequence and frame every new event.
        ctx.watch.check(ctx.clock.now());
        let first_seq = st.next_seq;
        let mut pending = Pending::default();
        let mut batch_hashes: Vec<Hash> = Vec::new();
        let mut any_new = false;
        for (i, p) in batch.iter().enumerate() {
            if receipts[i].is_some() {
                continue;
            }
            if let Some(j) = replay_of[i] {
                receipts[i] = receipts[j].clone().map(|mut r| {
                    r.replayed = true;
                    r
                });
                continue;
            }
            let seq = st.next_seq;
            let now = ctx.clock.now();
            let received_at = now.max(st.last_received);
            let session = p
                .session_id
                .as_ref()
                .map(|sid| match st.sessions.get(&digest16(sid)) {
                    Some(&(ss, h)) => (ss + 1, Some(h)),
                    None => (0, None),
                });
            let caused_by = match &p.caused_by {
                None => None,
                Some(ids) => {
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        let hash = match st.ids.get(&digest16(id)) {
                            Some(&s) if s >= first_seq => {
                                batch_hashes.get((s - first_seq) as usize).copied()
                            }
                            Some(&s) => read_entry(&st.entries, s)
                                .map_err(|source| AppendError::Io {
                                    tenant: tenant.clone(),
                                    op: "read the entries file",
                                    source,
                                })?
                                .map(|e| e.hash),
                            None => None,
                        };
                        out.push((id.clone(), hash));
                    }
                    Some(out)
                }
            };
            let clock_skew_ms = p.occurred_at.and_then(|occurred| {
                let skew = received_at.duration_since(occurred).as_millis();
                let skew = i64::try_from(skew).unwrap_or(i64::MAX);
                (skew.abs() > ctx.clock_skew_bound_ms).then_some(skew)
            });
            let server = ServerFields {
                seq,
                received_at,
                prev_hash: st.last_hash,
                session,
                caused_by,
                clock_skew_ms,
            };
            let bytes = stored::finish(p, &server);
            // `Ledger::append` refused events whose stored form could exceed the limit.
            debug_assert!(bytes.len() <= MAX_RECORD_LEN);
            let hash = sha256(&bytes);
            let offset = pending.bytes;
            pending.bytes += (RECORD_HEADER_LEN + bytes.len()) as u64;
            let d = digest16(&p.event_id);
            let sess = p
                .session_id
                .as_ref()
                .zip(session)
                .map(|(sid, (ss, _))| (digest16(sid), ss));
            pending.entries.push(Entry {
                offset,
                hash,
                id_digest: d,
                session: sess,
            });
            st.frontier.push(leaf_hash(&bytes), |level, index, h| {
                pending.nodes.push((node_position(level, index), *h));
            });
            pending.events.push((seq, bytes));
            st.ids.insert(d, seq);
            if let Some((sd, ss)) = sess {
                st.sessions.insert(sd, (ss, hash));
            }
            st.last_hash = Some(hash);
            st.last_received = received_at;
            st.next_seq += 1;
            batch_hashes.push(hash);
            receipts[i] = Some(Receipt {
                event_id: p.event_id.clone(),
                seq,
                hash: to_hex(&hash),
                received_at: crate::clock::format_timestamp(received_at),
                replayed: false,
            });
            any_new = true;
        }
        if !any_new {
            return Ok((receipts, None));
        }
        // A batch never spans two segments (its records are committed by its last one): seal
        // the active segment first when the batch would take it past the segment size. A batch
        // larger than a segment gets a segment of its own.
        if st.active_len + pending.bytes > ctx.segment_size && st.active_len > HEADER_LEN as u64 {
            self.roll(ctx, st, first_seq)?;
        }
        self.flush(st, &mut pending)?;
        Ok((receipts, Some(st.next_seq)))
    }

    /// Writes buffered records, entries and nodes to the page cache and publishes them to the
    /// group-commit state. A failed write poisons the tenant: memory is ahead of the files.
    fn flush(&self, st: &mut State, pending: &mut Pending) -> Result<(), AppendError> {
        let Pending {
            events,
            bytes,
            entries,
            nodes,
        } = pending;
        let Some(&(first, _)) = events.first() else {
            return Ok(());
        };
        // Every record but the batch's last says "more follow": recovery keeps a batch whole
        // or drops it whole.
        let mut records = Vec::with_capacity(*bytes as usize);
        for (i, (seq, payload)) in events.iter().enumerate() {
            encode_record(*seq, payload, i + 1 < events.len(), &mut records);
        }
        let mut entry_bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for e in entries.iter() {
            entry_bytes.extend_from_slice(&encode_entry(&Entry {
                offset: st.active_len + e.offset,
                ..*e
            }));
        }
        if let Some(reason) = self.poisoned() {
            return Err(AppendError::Poisoned {
                tenant: self.id.to_string(),
                reason,
            });
        }
        let res = (|| -> io::Result<()> {
            st.active.write_all_at(&records, st.active_len)?;
            st.entries
                .write_all_at(&entry_bytes, HEADER_LEN as u64 + first * ENTRY_LEN as u64)?;
            // Nodes of one batch are contiguous in the post-order layout.
            if let Some(&(p0, _)) = nodes.first() {
                let mut buf = Vec::with_capacity(nodes.len() * 32);
                for (i, (p, h)) in nodes.iter().enumerate() {
                    debug_assert_eq!(*p, p0 + i as u64);
                    buf.extend_from_slice(h);
                }
                st.tree.write_all_at(&buf, HEADER_LEN as u64 + 32 * p0)?;
            }
            Ok(())
        })();
        if let Err(source) = res {
            self.poison(format!("write failed: {source}"));
            return Err(AppendError::Io {
                tenant: self.id.to_string(),
                op: "write the segment",
                source,
            });
        }
        st.active_len += records.len() as u64;
        *pending = Pending::default();
        let mut s = lock(&self.sync);
        s.written = st.next_seq;
        s.written_len = st.active_len;
        Ok(())
    }

    /// Sealed segments, oldest first: `(first seq, end seq, path)`. Sealed files are read-only
    /// and never change again.
    pub fn sealed_segments(&self) -> Vec<(u64, u64, PathBuf)> {
        let st = lock(&self.state);
        st.segments
            .windows(2)
            .map(|w| (w[0], w[1], self.dir.join(segment_name(w[0]))))
            .collect()
    }

    /// Seals the active segment now if it holds events (for the archive, which takes sealed
    /// segments only): it is made durable and read-only and a new one starts. Returns whether
    /// it sealed one.
    pub fn seal_active(&self, ctx: &Ctx) -> Result<bool, AppendError> {
        if let Some(reason) = self.poisoned() {
            return Err(AppendError::Poisoned {
                tenant: self.id.to_string(),
                reason,
            });
        }
        let mut st = lock(&self.state);
        if st.active_len <= HEADER_LEN as u64 {
            return Ok(false);
        }
        let next = st.next_seq;
        self.roll(ctx, &mut st, next)?;
        Ok(true)
    }

    /// The first seq of the active segment and when its first event was received (`None`
    /// while it holds none).
    pub fn active_since(&self) -> Result<Option<(u64, jiff::Timestamp)>, ReadError> {
        let first = {
            let st = lock(&self.state);
            if st.active_len <= HEADER_LEN as u64 {
                return Ok(None);
            }
            *st.segments.last().unwrap_or(&0)
        };
        if first >= self.size() {
            return Ok(None); // not durable yet
        }
        let ev = self.read(first)?;
        Ok(ev.received_at().map(|at| (first, at)))
    }

    /// Seals the active segment (durable, read-only) and starts a new one.
    fn roll(&self, ctx: &Ctx, st: &mut State, new_first: u64) -> Result<(), AppendError> {
        let old_first = *st.segments.last().unwrap_or(&0);
        let old_path = self.dir.join(segment_name(old_first));
        let new_path = self.dir.join(segment_name(new_first));
        let res = (|| -> io::Result<File> {
            ctx.syncer.sync(&st.active, &old_path)?;
            ctx.syncer.sync(&st.entries, &self.dir.join(ENTRIES_FILE))?;
            ctx.syncer.sync(&st.tree, &self.dir.join(TREE_FILE))?;
            files::make_read_only(&old_path)?;
            let f = create_with_header(&ctx.syncer, &new_path, FileKind::Segment, new_first)?;
            ctx.syncer.sync_dir(&self.dir.join(LEDGER_DIR))?;
            Ok(f)
        })();
        match res {
            Ok(f) => {
                let f = Arc::new(f);
                st.segments.push(new_first);
                st.active = f.clone();
                st.active_len = HEADER_LEN as u64;
                let mut s = lock(&self.sync);
                s.written = s.written.max(new_first);
                s.synced = s.synced.max(new_first);
                s.written_len = HEADER_LEN as u64;
                s.synced_len = HEADER_LEN as u64;
                s.file = f;
                s.path = new_path;
                self.synced_cv.notify_all();
                Ok(())
            }
            Err(source) => {
                self.poison(format!("sealing segment {old_first} failed: {source}"));
                Err(AppendError::Io {
                    tenant: self.id.to_string(),
                    op: "seal the segment",
                    source,
                })
            }
        }
    }

    /// Group commit: returns once records `[0, end)` are durable. One caller at a time fsyncs
    /// everything written so far; the others wait for it and usually find their records covered.
    fn wait_durable(&self, ctx: &Ctx, end: u64) -> Result<(), AppendError> {
        let mut s = lock(&self.sync);
        loop {
            if s.synced >= end {
                return Ok(());
            }
            if let Some((reason, _)) = &s.poisoned {
                return Err(AppendError::Poisoned {
                    tenant: self.id.to_string(),
                    reason: reason.clone(),
                });
            }
            if s.syncing {
                s = self.synced_cv.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.syncing = true;
            let target = s.written;
            let target_len = s.written_len;
            let file = s.file.clone();
            let path = s.path.clone();
            drop(s);
            let res = ctx.syncer.sync(&file, &path);
            s = lock(&self.sync);
            s.syncing = false;
            match res {
                // A roll in the meantime moved on to a new file, already durable up to where
                // its writes began.
                Ok(()) if Arc::ptr_eq(&file, &s.file) => {
                    s.synced = s.synced.max(target);
                    s.synced_len = s.synced_len.max(target_len);
                }
                Ok(()) => s.synced = s.synced.max(target),
                Err(e) => {
                    if s.poisoned.is_none() {
                        s.poisoned = Some((
                            format!("fsync of {} failed: {e}", path.display()),
                            Instant::now(),
                        ));
                    }
                }
            }
            self.synced_cv.notify_all();
        }
    }

    /// Number of durable events: the tree size readers and proofs see.
    pub fn size(&self) -> u64 {
        lock(&self.sync).synced
    }

    fn read_locked(&self, st: &State, seq: u64) -> Result<StoredEvent, ReadError> {
        self.read_with(&st.segments, &st.entries, seq, &mut HashMap::new())
    }

    /// Reads and checks one record; `open` keeps the segment files opened so far (a page of
    /// reads opens each segment once).
    fn read_with(
        &self,
        segments: &[u64],
        entries: &File,
        seq: u64,
        open: &mut HashMap<u64, File>,
    ) -> Result<StoredEvent, ReadError> {
        let damage = |file: &str, offset: Option<u64>, reason: String| {
            ReadError::Damaged(Damage {
                tenant: self.id.to_string(),
                file: file.to_owned(),
                offset,
                seq: Some(seq),
                reason,
            })
        };
        let e = read_entry(entries, seq)
            .map_err(|source| ReadError::Io {
                tenant: self.id.to_string(),
                path: self.dir.join(ENTRIES_FILE),
                source,
            })?
            .ok_or_else(|| damage(ENTRIES_FILE, None, "entry checksum mismatch".into()))?;
        let first = segments[segment_of(segments, seq)];
        let name = segment_name(first);
        let path = self.dir.join(&name);
        let io = |source| ReadError::Io {
            tenant: self.id.to_string(),
            path: path.clone(),
            source,
        };
        let f = match open.entry(first) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(File::open(&path).map_err(io)?)
            }
        };
        let bytes = read_record_at(f, e.offset, seq).map_err(|r| match r {
            Ok(reason) => damage(&name, Some(e.offset), reason),
            Err(err) => io(err),
        })?;
        if sha256(&bytes) != e.hash {
            return Err(damage(
                &name,
                Some(e.offset),
                "record does not match its hash".into(),
            ));
        }
        Ok(StoredEvent {
            seq,
            hash: e.hash,
            bytes,
        })
    }

    fn snapshot(&self) -> (Vec<u64>, Arc<File>, Arc<File>, u64) {
        let st = lock(&self.state);
        let size = lock(&self.sync).synced;
        (
            st.segments.clone(),
            st.entries.clone(),
            st.tree.clone(),
            size,
        )
    }

    /// Reads up to `limit` durable events from `from` on.
    pub fn read_range(&self, from: u64, limit: usize) -> Result<Vec<StoredEvent>, ReadError> {
        let (segments, entries, _, size) = self.snapshot();
        let end = size.min(from.saturating_add(limit as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(from) as usize);
        let mut seq = from;
        let mut open = HashMap::new();
        while seq < end {
            out.push(self.read_with(&segments, &entries, seq, &mut open)?);
            seq += 1;
        }
        Ok(out)
    }

    /// Reads the durable events at `seqs`, in their order (a page of query results).
    pub fn read_seqs(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>, ReadError> {
        let (segments, entries, _, size) = self.snapshot();
        let mut open = HashMap::new();
        seqs.iter()
            .map(|&seq| {
                if seq >= size {
                    return Err(ReadError::OutOfRange {
                        tenant: self.id.to_string(),
                        seq,
                        size,
                    });
                }
                self.read_with(&segments, &entries, seq, &mut open)
            })
            .collect()
    }

    pub fn read(&self, seq: u64) -> Result<StoredEvent, ReadError> {
        let (segments, entries, _, size) = self.snapshot();
        if seq >= size {
            return Err(ReadError::OutOfRange {
                tenant: self.id.to_string(),
                seq,
                size,
            });
        }
        self.read_with(&segments, &entries, seq, &mut HashMap::new())
    }

    /// The seq of a durable event by its event_id.
    pub fn find(&self, event_id: &str) -> Result<Option<u64>, ReadError> {
        let seq = {
            let st = lock(&self.state);
            st.ids.get(&digest16(event_id)).copied()
        };
        let Some(seq) = seq else { return Ok(None) };
        if seq >= self.size() {
            return Ok(None);
        }
        let ev = self.read(seq)?;
        let h = StoredHeader::parse(&ev.bytes).map_err(|r| {
            ReadError::Damaged(Damage {
                tenant: self.id.to_string(),
                file: LEDGER_DIR.into(),
                offset: None,
                seq: Some(seq),
                reason: r,
            })
        })?;
        Ok((h.event_id == event_id).then_some(seq))
    }

    fn tree_err(&self, e: io::Error) -> ReadError {
        ReadError::Io {
            tenant: self.id.to_string(),
            path: self.dir.join(TREE_FILE),
            source: e,
        }
    }

    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        let (_, _, tree, cur) = self.snapshot();
        if size > cur {
            return Err(ReadError::BadSizes {
                tenant: self.id.to_string(),
                from: size,
                to: size,
                size: cur,
            });
        }
        agentrail_merkle::root(&TreeFile(&tree), size).map_err(|e| self.tree_err(e))
    }

    /// The compact range `[0, size)`: roots of its perfect subtrees, largest first.
    pub fn frontier(&self, size: u64) -> Result<Vec<Hash>, ReadError> {
        let (_, _, tree, cur) = self.snapshot();
        if size > cur {
            return Err(ReadError::BadSizes {
                tenant: self.id.to_string(),
                from: size,
                to: size,
                size: cur,
            });
        }
        agentrail_merkle::Frontier::from_reader(&TreeFile(&tree), size)
            .map(|f| f.hashes())
            .map_err(|e| self.tree_err(e))
    }

    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        let (_, _, tree, cur) = self.snapshot();
        if size > cur || seq >= size {
            return Err(ReadError::OutOfRange {
                tenant: self.id.to_string(),
                seq,
                size: size.min(cur),
            });
        }
        agentrail_merkle::inclusion_proof(&TreeFile(&tree), seq, size).map_err(|e| match e {
            agentrail_merkle::ProofError::Read(e) => self.tree_err(e),
            _ => ReadError::OutOfRange {
                tenant: self.id.to_string(),
                seq,
                size,
            },
        })
    }

    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ReadError> {
        let (_, _, tree, cur) = self.snapshot();
        let bad = || ReadError::BadSizes {
            tenant: self.id.to_string(),
            from,
            to,
            size: cur,
        };
        if to > cur || from == 0 || from > to {
            return Err(bad());
        }
        agentrail_merkle::consistency_proof(&TreeFile(&tree), from, to).map_err(|e| match e {
            agentrail_merkle::ProofError::Read(e) => self.tree_err(e),
            _ => bad(),
        })
    }

    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        lock(&self.ckpt).latest.clone()
    }

    /// Signs and appends a checkpoint of the durable tree when it grew since the last one (and
    /// at least `min_interval` has passed unless `force`). Returns the latest checkpoint.
    pub fn checkpoint(
        &self,
        ctx: &Ctx,
        force: bool,
        min_interval: Duration,
    ) -> Result<Option<SignedCheckpoint>, CheckpointError> {
        let (_, _, tree, size) = self.snapshot();
        let mut ck = lock(&self.ckpt);
        let last_size = ck.latest.as_ref().map(|c| c.size);
        let due = force || ck.written_at.is_none_or(|t| t.elapsed() >= min_interval);
        if !due {
            return Ok(ck.latest.clone());
        }
        let layout = DataDir::new(&ctx.data_dir);
        let lines =
            crate::anchors::lines(&layout, &self.id).map_err(|reason| CheckpointError::Io {
                tenant: self.id.to_string(),
                op: "read the heads of the logs a checkpoint commits",
                source: io::Error::other(reason),
            })?;
        let own: Vec<String> = crate::anchors::own(&lines)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let grew = last_size.is_none_or(|s| size > s) || ck.dirty || own != ck.own;
        if !grew {
            return Ok(ck.latest.clone());
        }
        if let Some(reason) = self.poisoned() {
            return Err(CheckpointError::Poisoned {
                tenant: self.id.to_string(),
                reason,
            });
        }
        let tenant = self.id.to_string();
        let io = |op: &'static str| {
            let tenant = tenant.clone();
            move |source| CheckpointError::Io { tenant, op, source }
        };
        let root = agentrail_merkle::root(&TreeFile(&tree), size).map_err(io("read the tree"))?;
        // Never sign a tree that does not hold what was already signed and pinned.
        if let Some(reason) = self.pin_conflict(ctx, &tree, size) {
            return Err(CheckpointError::Inconsistent {
                tenant: self.id.to_string(),
                reason,
            });
        }
        // The records it covers are durable (it is signed over the synced size); the tree
        // nodes need not be: open recomputes those of the active segment from the records.
        let text = self
            .sign_tree(ctx, &tree, size, root, lines)
            .map_err(|reason| CheckpointError::Signer {
                tenant: self.id.to_string(),
                reason,
            })?;
        let res = (|| -> io::Result<(String, u64)> {
            let mut framed = Vec::with_capacity(text.len() + frame::NOTE_HEADER_LEN);
            encode_note(text.as_bytes(), &mut framed);
            ck.file.write_all_at(&framed, ck.len)?;
            ctx.syncer.sync(&ck.file, &self.dir.join(CHECKPOINT_LOG))?;
            Ok((text, framed.len() as u64))
        })();
        match res {
            Ok((text, len)) => {
                ck.len += len;
                ck.written_at = Some(Instant::now());
                if let Some(dir) = &ctx.trust_dir {
                    crate::pins::write_pin(
                        dir,
                        &self.id,
                        size,
                        &text,
                        &ctx.verifier,
                        &ctx.origin(&self.id),
                    )
                    .map_err(|e| CheckpointError::Io {
                        tenant: self.id.to_string(),
                        op: "pin the checkpoint",
                        source: io::Error::other(e),
                    })?;
                }
                ck.latest = Some(SignedCheckpoint { size, root, text });
                ck.own = own;
                ck.dirty = false;
                Ok(ck.latest.clone())
            }
            Err(source) => {
                drop(ck);
                self.poison(format!("writing a checkpoint failed: {source}"));
                Err(CheckpointError::Io {
                    tenant: self.id.to_string(),
                    op: "write a checkpoint",
                    source,
                })
            }
        }
    }

    /// The signed checkpoint of the durable tree of `size` with `root`: the signer may ask
    /// for a consistency proof to any other size it signed (which this tree must hold).
    fn sign_tree(
        &self,
        ctx: &Ctx,
        tree: &File,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<String, String> {
        let text = Checkpoint {
            origin: ctx.origin(&self.id),
            size,
            root,
            extensions,
        }
        .to_text();
        let prove = |m: u64| -> Result<Vec<Hash>, String> {
            let durable = lock(&self.sync).synced;
            if m > durable {
                return Err(format!(
                    "a tree of {m} events was signed for tenant {}, which holds {durable}: its records were cut",
                    self.id
                ));
            }
            let (lo, hi) = (m.min(size), m.max(size));
            if lo == 0 {
                return Ok(vec![]);
            }
            agentrail_merkle::consistency_proof(&TreeFile(tree), lo, hi).map_err(proof_err)
        };
        let sig = ctx.signer.sign_checkpoint(&text, &prove)?;
        Ok(agentrail_note::Note {
            text,
            signatures: vec![sig],
        }
        .to_text())
    }

    /// See [`crate::Ledger::receipt_checkpoint`].
    pub fn receipt_checkpoint(
        &self,
        ctx: &Ctx,
        covering: u64,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let covers =
            |c: &Option<SignedCheckpoint>| c.as_ref().filter(|c| c.size >= covering).cloned();
        // The logged checkpoint when it is at hand: the checkpointer holds its lock across an
        // fsync, and an answer does not wait for that (signing its own costs less).
        if let Ok(ck) = self.ckpt.try_lock()
            && let Some(c) = covers(&ck.latest)
        {
            return Ok(c);
        }
        let mut cached = lock(&self.receipt_cp);
        if let Some(c) = covers(&cached) {
            return Ok(c);
        }
        let (tree, size) = (&self.tree_file, lock(&self.sync).synced);
        if size < covering {
            return Err(CheckpointError::Io {
                tenant: self.id.to_string(),
                op: "sign a receipt",
                source: io::Error::other(format!(
                    "{covering} events are not durable yet (the durable tree has {size})"
                )),
            });
        }
        let root = agentrail_merkle::root(&TreeFile(tree), size).map_err(|source| {
            CheckpointError::Io {
                tenant: self.id.to_string(),
                op: "read the tree",
                source,
            }
        })?;
        // Never sign a tree that does not hold what was already signed and pinned.
        if let Some(reason) = self.pin_conflict(ctx, tree, size) {
            return Err(CheckpointError::Inconsistent {
                tenant: self.id.to_string(),
                reason,
            });
        }
        // A receipt commits the events only: the logged checkpoints commit the other logs.
        let text = self
            .sign_tree(ctx, tree, size, root, vec![])
            .map_err(|reason| CheckpointError::Signer {
                tenant: self.id.to_string(),
                reason,
            })?;
        let cp = SignedCheckpoint { size, root, text };
        *cached = Some(cp.clone());
        Ok(cp)
    }

    /// Makes everything written durable (used on close).
    pub fn sync_all(&self, ctx: &Ctx) -> Result<(), AppendError> {
        let written = lock(&self.sync).written;
        self.wait_durable(ctx, written)
    }

    /// All stored checkpoints, oldest first, with their byte offsets in the log.
    pub fn checkpoint_texts(&self) -> Result<Vec<(u64, String)>, ReadError> {
        let path = self.dir.join(CHECKPOINT_LOG);
        let bytes = fs::read(&path).map_err(|source| ReadError::Io {
            tenant: self.id.to_string(),
            path: path.clone(),
            source,
        })?;
        let mut out = Vec::new();
        let mut pos = HEADER_LEN;
        while let RecordRead::Record { payload, next, .. } = frame::read_note(&bytes, pos) {
            out.push((pos as u64, String::from_utf8_lossy(payload).into_owned()));
            pos = next;
        }
        Ok(out)
    }
}

/// How a pin is named in damage reports.
fn pin_label(ctx: &Ctx, id: &TenantId) -> String {
    ctx.trust_dir.as_deref().map_or_else(String::new, |d| {
        crate::pins::pin_path(d, id).display().to_string()
    })
}

/// Whether two events of one batch with the same id are the same submission: by content digest
/// when both have one, else by their content.
fn same_submission(a: &Prepared, b: &Prepared) -> bool {
    match (&a.content_digest, &b.content_digest) {
        (Some(x), Some(y)) => x == y,
        _ => stored::submitted_content(a) == stored::submitted_content(b),
    }
}

/// A stored event as a replay of a submission of `event_id`: its receipt if the content is the
/// same — by content digest when both sides have one (what the emitter sent, whatever keys
/// sealed it since), else by the submitted content `content()` against the stored content.
/// `None`: different content.
fn as_replay(
    existing: &StoredEvent,
    header: StoredHeader,
    event_id: &str,
    digest: Option<&str>,
    content: impl FnOnce() -> Vec<u8>,
) -> Option<Receipt> {
    let same = header.event_id == event_id
        && match (digest, header.content_digest.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => stored::submitted_content_of_stored(&existing.bytes).ok() == Some(content()),
        };
    same.then(|| receipt_of(existing, header, event_id))
}

/// The receipt a replay of a stored event gets: the original one, marked replayed.
fn receipt_of(existing: &StoredEvent, header: StoredHeader, event_id: &str) -> Receipt {
    Receipt {
        event_id: event_id.to_owned(),
        seq: existing.seq,
        hash: to_hex(&existing.hash),
        received_at: header.received_at,
        replayed: true,
    }
}
