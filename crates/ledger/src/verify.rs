//! Offline verification of a data directory: every record, every hash, the chain, the session
//! chains, causal links, the Merkle tree and every signed checkpoint — recomputed from the
//! segments alone and compared with what is stored. Read-only; needs no lock and no server.

use crate::error::Damage;
use crate::files::{
    CHECKPOINT_LOG, ENTRIES_FILE, TREE_FILE, list_segments, segment_name, tenant_dir,
};
use crate::frame::{
    self, ENTRY_LEN, Entry, FileKind, HEADER_LEN, RecordRead, decode_entry, decode_header,
    digest16, node_position,
};
use crate::stored::StoredHeader;
use agentrail_event::TenantId;
use agentrail_event::hash::{from_hex, sha256, to_hex};
use agentrail_event::json;
use agentrail_merkle::{Frontier, Hash, leaf_hash, verify_consistency};
use agentrail_note::{Verifier, open_checkpoint};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// The outcome for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    pub tenant: String,
    /// Events that verified (all of them when `failure` is `None`).
    pub events: u64,
    /// Bytes of segment data read.
    pub bytes: u64,
    pub segments: usize,
    pub checkpoints: usize,
    /// Root of the verified tree.
    pub root: Hash,
    /// Size of the latest checkpoint.
    pub checkpointed: u64,
    /// The first thing that did not verify.
    pub failure: Option<Damage>,
    /// Things worth knowing that are not damage (a torn tail the next open will truncate).
    pub notes: Vec<String>,
    /// The latest checkpoint's note text.
    pub latest_checkpoint: Option<String>,
}

struct Walk<'a> {
    tenant: &'a str,
}

impl Walk<'_> {
    fn damage(&self, file: &str, offset: Option<u64>, seq: Option<u64>, reason: String) -> Damage {
        Damage {
            tenant: self.tenant.to_owned(),
            file: file.to_owned(),
            offset,
            seq,
            reason,
        }
    }
}

/// Verifies one tenant of a data directory against the log's verifier key.
pub fn verify_tenant(
    data_dir: &Path,
    tenant: &TenantId,
    verifier: &Verifier,
    origin_prefix: &str,
) -> TenantReport {
    verify_tenant_with_progress(
        data_dir,
        tenant,
        verifier,
        origin_prefix,
        &Anchors::default(),
        &mut |_, _| {},
    )
}

/// What was signed or acknowledged, kept outside the data directory, that the records must
/// still hold: whoever rewrote the directory cannot have rewritten these.
#[derive(Debug, Default)]
pub struct Anchors<'a> {
    /// The trust directory whose pin of the tenant ([`crate::pins`]) the records must hold.
    pub trust_dir: Option<&'a Path>,
    /// Signed checkpoints of the tenant kept elsewhere (a client's receipts), each `(where it
    /// comes from, size, root)`; their signatures are the caller's to have checked.
    pub checkpoints: Vec<(String, u64, Hash)>,
    /// Acknowledged events: seq → (where the receipt comes from, the hash acknowledged).
    pub events: HashMap<u64, (String, Hash)>,
    /// The logs the checkpoints commit are not there to check (segments and checkpoints
    /// fetched from the archive, which does not carry them).
    pub without_logs: bool,
}

/// [`verify_tenant`], also against `anchors` (a trust directory's pin, receipts' checkpoints
/// and hashes), calling `progress(bytes verified, bytes of all segments)` as the walk goes
/// (every few thousand events, and at each segment's end).
pub fn verify_tenant_with_progress(
    data_dir: &Path,
    tenant: &TenantId,
    verifier: &Verifier,
    origin_prefix: &str,
    anchors: &Anchors<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> TenantReport {
    let mut report = TenantReport {
        tenant: tenant.to_string(),
        events: 0,
        bytes: 0,
        segments: 0,
        checkpoints: 0,
        root: agentrail_merkle::EMPTY_ROOT,
        checkpointed: 0,
        failure: None,
        notes: Vec::new(),
        latest_checkpoint: None,
    };
    let walked = walk(
        data_dir,
        tenant,
        verifier,
        origin_prefix,
        &anchors.events,
        &mut report,
        progress,
    );
    if let Err(d) = walked
        .and_then(|roots| check_anchors(anchors, tenant, verifier, origin_prefix, &report, &roots))
        .and_then(|()| {
            if anchors.without_logs {
                return Ok(());
            }
            check_logs(data_dir, tenant, verifier, origin_prefix, &report)
        })
    {
        report.failure = Some(d);
    }
    report
}

/// The logs the latest checkpoint commits ([`crate::anchors`]) still hold what it committed.
/// (Not expected at a checkpoint the tenant was restored at from the archive.)
fn check_logs(
    data_dir: &Path,
    tenant: &TenantId,
    verifier: &Verifier,
    origin_prefix: &str,
    report: &TenantReport,
) -> Result<(), Damage> {
    let Some(text) = &report.latest_checkpoint else {
        return Ok(());
    };
    let layout = crate::DataDir::new(data_dir);
    let origin = format!("{origin_prefix}/tenants/{tenant}");
    let checked =
        crate::anchors::check_or_restored(&layout, tenant, verifier, &origin, text).map(|_| ());
    checked.map_err(|reason| Damage {
        tenant: tenant.to_string(),
        file: CHECKPOINT_LOG.to_owned(),
        offset: None,
        seq: None,
        reason: format!(
            "the latest checkpoint (size {}) commits a log that does not hold it: {reason}",
            report.checkpointed
        ),
    })
}

fn walk(
    data_dir: &Path,
    tenant: &TenantId,
    verifier: &Verifier,
    origin_prefix: &str,
    acknowledged: &HashMap<u64, (String, Hash)>,
    report: &mut TenantReport,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Roots, Damage> {
    let w = Walk {
        tenant: tenant.as_str(),
    };
    let dir = tenant_dir(data_dir, tenant);
    let read = |rel: &str| {
        fs::read(dir.join(rel)).map_err(|e| w.damage(rel, None, None, format!("cannot read: {e}")))
    };

    // Checkpoints first: their sizes are where the walk must compare roots.
    let ck = read(CHECKPOINT_LOG)?;
    decode_header(FileKind::Checkpoints, &ck)
        .map_err(|e| w.damage(CHECKPOINT_LOG, Some(0), None, e.to_string()))?;
    let origin = format!("{origin_prefix}/tenants/{tenant}");
    let mut checkpoints: Vec<(u64, u64, Hash)> = Vec::new(); // (offset, size, root)
    let mut pos = HEADER_LEN;
    loop {
        match frame::read_note(&ck, pos) {
            RecordRead::Record { payload, next, .. } => {
                let (cp, _) = open_checkpoint(payload, verifier, &[])
                    .map_err(|e| w.damage(CHECKPOINT_LOG, Some(pos as u64), None, e.to_string()))?;
                if cp.origin != origin {
                    return Err(w.damage(
                        CHECKPOINT_LOG,
                        Some(pos as u64),
                        None,
                        format!("checkpoint origin {:?}, expected {origin:?}", cp.origin),
                    ));
                }
                if let Some(&(_, prev, _)) = checkpoints.last()
                    && cp.size < prev
                {
                    return Err(w.damage(
                        CHECKPOINT_LOG,
                        Some(pos as u64),
                        None,
                        format!(
                            "checkpoint size {} is below the previous one ({prev})",
                            cp.size
                        ),
                    ));
                }
                checkpoints.push((pos as u64, cp.size, cp.root));
                report.latest_checkpoint = Some(String::from_utf8_lossy(payload).into_owned());
                pos = next;
            }
            RecordRead::End => break,
            RecordRead::Torn { reason } => {
                report.notes.push(format!(
                    "{CHECKPOINT_LOG}: torn tail at offset {pos}: {reason}"
                ));
                break;
            }
            RecordRead::Corrupt { reason } => {
                return Err(w.damage(CHECKPOINT_LOG, Some(pos as u64), None, reason));
            }
        }
    }
    report.checkpoints = checkpoints.len();
    report.checkpointed = checkpoints.last().map_or(0, |c| c.1);
    let mut roots_wanted: HashMap<u64, Option<Hash>> =
        checkpoints.iter().map(|c| (c.1, None)).collect();

    let entries = read(ENTRIES_FILE)?;
    decode_header(FileKind::Entries, &entries)
        .map_err(|e| w.damage(ENTRIES_FILE, Some(0), None, e.to_string()))?;
    let tree = read(TREE_FILE)?;
    decode_header(FileKind::Tree, &tree)
        .map_err(|e| w.damage(TREE_FILE, Some(0), None, e.to_string()))?;

    let segments = list_segments(&dir)
        .map_err(|e| w.damage("ledger", None, None, format!("cannot list segments: {e}")))?;
    report.segments = segments.len();
    let total: u64 = segments
        .iter()
        .filter_map(|&first| fs::metadata(dir.join(segment_name(first))).ok())
        .map(|m| m.len())
        .sum();
    let mut frontier = Frontier::new();
    if let Some(r) = roots_wanted.get_mut(&0) {
        *r = Some(frontier.root());
    }
    let mut seq = 0u64;
    let mut last_hash: Option<Hash> = None;
    let mut last_received = String::new();
    let mut ids: HashMap<[u8; 16], Hash> = HashMap::new();
    let mut sessions: HashMap<[u8; 16], (u64, Hash)> = HashMap::new();
    // Recomputed tree nodes that differ from the (stale) tree file, and where staleness began.
    let mut overlay: HashMap<u64, Hash> = HashMap::new();
    let mut stale: Option<u64> = None;
    for (si, &first) in segments.iter().enumerate() {
        let name = segment_name(first);
        let is_last = si + 1 == segments.len();
        if first != seq {
            return Err(w.damage(
                &name,
                None,
                Some(seq),
                format!(
                    "segment starts at seq {first} but the previous one ends before seq {seq} (missing or truncated segment)"
                ),
            ));
        }
        let bytes = read(&name)?;
        let done_before = report.bytes;
        report.bytes += bytes.len() as u64;
        let base = decode_header(FileKind::Segment, &bytes)
            .map_err(|e| w.damage(&name, Some(0), None, e.to_string()))?;
        if base != first {
            return Err(w.damage(
                &name,
                Some(0),
                None,
                format!("header says the segment starts at seq {base}"),
            ));
        }
        // Pass 1 (sequential, cheap): framing and checksums, up to the first bad frame.
        let mut frames: Vec<(usize, &[u8], usize)> = Vec::new(); // (offset, payload, next)
        let mut stop: Option<Damage> = None;
        let mut pos = HEADER_LEN;
        let mut expect = seq;
        // Frames up to the last record that ends a batch: only those were ever acknowledged.
        let mut committed = 0usize;
        loop {
            match frame::read_record(&bytes, pos, 0) {
                RecordRead::Record {
                    seq: s,
                    payload,
                    next,
                    more,
                } => {
                    if s != expect {
                        stop = Some(w.damage(
                            &name,
                            Some(pos as u64),
                            Some(expect),
                            format!("record has seq {s}, expected {expect}"),
                        ));
                        break;
                    }
                    frames.push((pos, payload, next));
                    if !more {
                        committed = frames.len();
                    }
                    expect += 1;
                    pos = next;
                }
                RecordRead::End => break,
                RecordRead::Torn { reason } if is_last => {
                    report.notes.push(format!(
                        "{name}: torn tail of {} bytes at offset {pos} (seq {expect}), never acknowledged: {reason}",
                        bytes.len() - pos
                    ));
                    break;
                }
                RecordRead::Torn { reason } => {
                    stop = Some(w.damage(
                        &name,
                        Some(pos as u64),
                        Some(expect),
                        format!("sealed segment is cut short: {reason}"),
                    ));
                    break;
                }
                RecordRead::Corrupt { reason } => {
                    stop = Some(w.damage(&name, Some(pos as u64), Some(expect), reason));
                    break;
                }
            }
        }
        if stop.is_none() && committed < frames.len() {
            let (at, _, _) = frames[committed];
            let first = seq + committed as u64;
            let last = seq + frames.len() as u64 - 1;
            if is_last {
                report.notes.push(format!(
                    "{name}: an unfinished batch at offset {at} (seqs {first}..={last}), never acknowledged; the next open drops it"
                ));
            } else {
                stop = Some(w.damage(
                    &name,
                    Some(at as u64),
                    Some(first),
                    "sealed segment ends inside a batch".into(),
                ));
            }
            frames.truncate(committed);
        }
        // Pass 2 (parallel): per-record work that needs no other record.
        // Pass 3 (sequential, in seq order, overlapping pass 2): chains, maps, tree.
        for_each_checked(&frames, |i, checked| {
            let pos = frames[i].0;
            let fail = |reason: String| w.damage(&name, Some(pos as u64), Some(seq), reason);
            let Checked {
                header: h,
                hash,
                leaf,
                id_digest,
                session_digest,
                prev_hash,
                session_prev_hash,
                causes,
            } = checked.map_err(fail)?;
            if h.seq != seq {
                return Err(fail(format!("stored event says seq {}", h.seq)));
            }
            if h.tenant_id != tenant.as_str() {
                return Err(fail(format!(
                    "stored event belongs to tenant {:?}",
                    h.tenant_id
                )));
            }
            if prev_hash != Some(last_hash) {
                return Err(fail(
                    "prev_hash does not match the previous event's hash".into(),
                ));
            }
            if let Some((from, acked)) = acknowledged.get(&seq)
                && *acked != hash
            {
                return Err(fail(format!(
                    "the event is not the one acknowledged in {from} (hash {}): it was altered",
                    to_hex(acked)
                )));
            }
            if h.received_at < last_received {
                return Err(fail("received_at goes backwards".into()));
            }
            if ids.contains_key(&id_digest) {
                return Err(fail(format!("event_id {:?} appears twice", h.event_id)));
            }
            for (i, (digest, claimed)) in causes.iter().enumerate() {
                let known = ids.get(digest).copied();
                if *claimed != Some(known) {
                    let c = h.caused_by.as_ref().and_then(|c| c.get(i));
                    return Err(fail(format!(
                        "caused_by {:?} has hash {:?}, the ledger says {:?}",
                        c.map(|c| &c.event_id),
                        c.and_then(|c| c.hash.as_ref()),
                        known.as_ref().map(to_hex)
                    )));
                }
            }
            let session = match (session_digest, h.session_seq) {
                (Some(sd), Some(ss)) => {
                    let (want_seq, want_prev) = match sessions.get(&sd) {
                        Some(&(s, ph)) => (s + 1, Some(ph)),
                        None => (0, None),
                    };
                    if ss != want_seq || session_prev_hash != Some(want_prev) {
                        return Err(fail(format!(
                            "session {:?} chain broken: session_seq {ss} (expected {want_seq}) or session_prev_hash wrong",
                            h.session_id.as_deref().unwrap_or_default()
                        )));
                    }
                    sessions.insert(sd, (ss, hash));
                    Some((sd, ss))
                }
                (None, None) => None,
                _ => return Err(fail("session_id and session_seq disagree".into())),
            };
            // The derived files must agree with the records.
            let want = Entry {
                offset: pos as u64,
                hash,
                id_digest,
                session,
            };
            // Derived data of sealed segments was made durable with them and must match; that
            // of the active segment is rebuilt from the records on every open, so staleness
            // there (after a crash) is a note, not damage.
            let at = HEADER_LEN + seq as usize * ENTRY_LEN;
            if entries.get(at..at + ENTRY_LEN).and_then(decode_entry) != Some(want) {
                let d = w.damage(
                    ENTRIES_FILE,
                    Some(at as u64),
                    Some(seq),
                    "entry missing or disagrees with its record".into(),
                );
                if !is_last {
                    return Err(d);
                }
                stale.get_or_insert(seq);
            }
            let mut node_err = None;
            frontier.push(leaf, |level, index, node| {
                let p = HEADER_LEN + 32 * node_position(level, index) as usize;
                if tree.get(p..p + 32) != Some(&node[..]) {
                    overlay.insert(node_position(level, index), *node);
                    node_err.get_or_insert((p, level, index));
                }
            });
            if let Some((p, level, index)) = node_err {
                if !is_last {
                    return Err(w.damage(
                        TREE_FILE,
                        Some(p as u64),
                        Some(seq),
                        format!("tree node (level {level}, index {index}) missing or wrong"),
                    ));
                }
                stale.get_or_insert(seq);
            }
            ids.insert(id_digest, hash);
            last_hash = Some(hash);
            last_received = h.received_at;
            seq += 1;
            if let Some(r) = roots_wanted.get_mut(&seq) {
                *r = Some(frontier.root());
            }
            report.events = seq;
            if seq.is_multiple_of(4096) {
                progress(done_before + frames[i].2 as u64, total.max(report.bytes));
            }
            Ok(())
        })?;
        progress(report.bytes, total.max(report.bytes));
        if let Some(d) = stop {
            return Err(d);
        }
    }
    report.root = frontier.root();
    if let Some(from) = stale {
        report.notes.push(format!(
            "derived entries/tree of the active segment are stale from seq {from} (as after a crash); the next open rebuilds them"
        ));
    }

    // Every checkpoint: a root of this tree, consistent with the next.
    let tree_reader = MemNodes(&tree, &overlay);
    let mut prev: Option<(u64, Hash)> = None;
    for &(offset, size, root) in &checkpoints {
        match roots_wanted.get(&size).copied().flatten() {
            None => {
                return Err(w.damage(
                    CHECKPOINT_LOG,
                    Some(offset),
                    Some(size),
                    format!("checkpoint covers {size} events but the ledger holds only {seq}"),
                ));
            }
            Some(actual) if actual != root => {
                return Err(w.damage(
                    CHECKPOINT_LOG,
                    Some(offset),
                    Some(size),
                    format!("checkpoint root for size {size} does not match the recomputed tree"),
                ));
            }
            Some(_) => {}
        }
        if let Some((psize, proot)) = prev
            && psize > 0
        {
            let proof = agentrail_merkle::consistency_proof(&tree_reader, psize, size)
                .map_err(|e| w.damage(TREE_FILE, None, None, e.to_string()))?;
            verify_consistency(psize, size, &proot, &root, &proof).map_err(|e| {
                w.damage(
                    CHECKPOINT_LOG,
                    Some(offset),
                    Some(size),
                    format!(
                        "checkpoint is not consistent with the previous one (size {psize}): {e}"
                    ),
                )
            })?;
        }
        prev = Some((size, root));
    }
    let expected_tree = HEADER_LEN as u64 + 32 * frame::node_count(seq);
    let expected_entries = HEADER_LEN as u64 + ENTRY_LEN as u64 * seq;
    if (tree.len() as u64) > expected_tree || (entries.len() as u64) > expected_entries {
        report.notes.push(format!(
            "derived files extend past the last record (seq {seq}); the next open trims them"
        ));
    }
    Ok(Roots {
        tree,
        overlay,
        size: seq,
    })
}

/// The verified tree, to compute roots at any size after the walk.
struct Roots {
    tree: Vec<u8>,
    overlay: HashMap<u64, Hash>,
    size: u64,
}

/// The records hold every anchor: the pin in the trust directory (if there is one), every
/// receipt's checkpoint, and an event for every receipt (the hashes were compared in the walk).
fn check_anchors(
    anchors: &Anchors<'_>,
    tenant: &TenantId,
    verifier: &Verifier,
    origin_prefix: &str,
    report: &TenantReport,
    roots: &Roots,
) -> Result<(), Damage> {
    let damage = |file: String, seq: Option<u64>, reason: String| Damage {
        tenant: tenant.to_string(),
        file,
        offset: None,
        seq,
        reason,
    };
    let size = roots.size.min(report.events);
    let reader = MemNodes(&roots.tree, &roots.overlay);
    let root_at = |n: u64| agentrail_merkle::root(&reader, n).ok();
    if let Some(dir) = anchors.trust_dir {
        let origin = format!("{origin_prefix}/tenants/{tenant}");
        let file = crate::pins::pin_path(dir, tenant).display().to_string();
        if let Some(pin) = crate::pins::read_pin(dir, tenant, verifier, &origin)
            .map_err(|e| damage(file.clone(), None, e))?
            && let Some(reason) = crate::pins::pin_conflict(&pin, size, root_at, dir)
        {
            return Err(damage(file, None, reason));
        }
    }
    for (from, signed_size, signed_root) in &anchors.checkpoints {
        let what = format!("the checkpoint of size {signed_size} in {from}");
        if let Some(reason) = crate::pins::conflict(*signed_size, signed_root, &what, size, root_at)
        {
            return Err(damage(from.clone(), Some(*signed_size), reason));
        }
    }
    if let Some((seq, (from, _))) = anchors
        .events
        .iter()
        .filter(|(s, _)| **s >= size)
        .min_by_key(|(s, _)| **s)
    {
        return Err(damage(
            from.clone(),
            Some(*seq),
            format!("the ledger holds {size} events: the event acknowledged at seq {seq} is gone"),
        ));
    }
    Ok(())
}

/// What one record yields without looking at any other.
struct Checked {
    header: StoredHeader,
    hash: Hash,
    leaf: Hash,
    id_digest: [u8; 16],
    session_digest: Option<[u8; 16]>,
    /// Hex hashes decoded (`None`: not valid hex, which never matches).
    prev_hash: Option<Option<Hash>>,
    session_prev_hash: Option<Option<Hash>>,
    causes: Vec<([u8; 16], Option<Option<Hash>>)>,
}

fn decode_hash(h: &Option<String>) -> Option<Option<Hash>> {
    match h {
        None => Some(None),
        Some(s) => from_hex(s).map(Some),
    }
}

fn check_record(payload: &[u8]) -> Result<Checked, String> {
    // The stored form must be canonical JSON, so anyone recomputing the hash with RFC 8785 gets
    // the same bytes.
    json::check_canonical(payload).map_err(|e| format!("stored event is {e}"))?;
    let header = StoredHeader::parse(payload).map_err(|e| format!("stored event: {e}"))?;
    Ok(Checked {
        hash: sha256(payload),
        leaf: leaf_hash(payload),
        id_digest: digest16(&header.event_id),
        session_digest: header.session_id.as_deref().map(digest16),
        prev_hash: decode_hash(&header.prev_hash),
        session_prev_hash: decode_hash(&header.session_prev_hash),
        causes: header
            .caused_by
            .iter()
            .flatten()
            .map(|c| (digest16(&c.event_id), decode_hash(&c.hash)))
            .collect(),
        header,
    })
}

/// Runs [`check_record`] over every frame on worker threads (one per core) and hands the results
/// to `f` in frame order on the calling thread, so the sequential checks overlap the parallel
/// ones. Stops at the first error `f` returns.
fn for_each_checked(
    frames: &[(usize, &[u8], usize)],
    mut f: impl FnMut(usize, Result<Checked, String>) -> Result<(), Damage>,
) -> Result<(), Damage> {
    const CHUNK: usize = 256;
    let chunks = frames.len().div_ceil(CHUNK);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || chunks <= 1 {
        for (i, frame) in frames.iter().enumerate() {
            f(i, check_record(frame.1))?;
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Vec<Result<Checked, String>>)>();
        for _ in 0..threads.min(chunks) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let part = &frames[c * CHUNK..((c + 1) * CHUNK).min(frames.len())];
                    let results = part.iter().map(|fr| check_record(fr.1)).collect();
                    // The receiver is gone once the caller stopped at an error.
                    if tx.send((c, results)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, Vec<Result<Checked, String>>> = BTreeMap::new();
        let mut want = 0;
        for (c, results) in rx {
            pending.insert(c, results);
            while let Some(results) = pending.remove(&want) {
                for (j, r) in results.into_iter().enumerate() {
                    f(want * CHUNK + j, r)?;
                }
                want += 1;
            }
        }
        if want < chunks {
            // A worker died (a panic) before sending this chunk: report it at its first record.
            f(want * CHUNK, Err("a verification thread failed".into()))?;
        }
        Ok(())
    })
}

/// The tree file, already read and checked, with recomputed nodes where it is stale.
struct MemNodes<'a>(&'a [u8], &'a HashMap<u64, Hash>);

impl agentrail_merkle::NodeReader for MemNodes<'_> {
    type Error = String;

    fn node(&self, level: u32, index: u64) -> Result<Hash, String> {
        if let Some(h) = self.1.get(&node_position(level, index)) {
            return Ok(*h);
        }
        let p = HEADER_LEN + 32 * node_position(level, index) as usize;
        let mut h = [0u8; 32];
        h.copy_from_slice(
            self.0
                .get(p..p + 32)
                .ok_or_else(|| format!("tree node (level {level}, index {index}) missing"))?,
        );
        Ok(h)
    }
}
