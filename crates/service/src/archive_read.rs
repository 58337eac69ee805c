//! Reading a tenant's WORM archive back (DESIGN.md §8.1): `agentrail verify-archive` checks it
//! offline with nothing but the archive and the log's verifier key, `agentrail restore` rebuilds
//! a data directory from it, and the integrity job compares it with the ledger's sealed segments.
//!
//! All three read it the same way ([`manifests`], then [`fetch`]): the manifests in seq order,
//! each signed by the log key over its RFC 8785 SHA-256, each naming the one before it (key and
//! SHA-256) and starting where it ended; every segment object of the size and SHA-256 its
//! manifest says, the segments contiguous; every checkpoint object the one its manifest names;
//! the access and retention log pieces contiguous, of the size and SHA-256 they should have,
//! and chained (their files are scanned) up to the head the manifest names.
//! The fetched segments and checkpoints are then a tenant directory like any other, and the
//! ledger's own offline verification ([`agentrail_ledger::verify_tenant_with_progress`]: every
//! record, hash, chain, session chain, causal link, the Merkle root of every checkpoint and the
//! consistency between them) runs on it: one verifier for the data directory and the archive.
//! What fails is named by its archive object and seq.

use crate::archiver::{
    ArchivedSegment, MANIFEST_FORMAT, ObjectRef, SignedArchiveManifest, manifest_end,
    manifest_order, parse_manifest,
};
use agentrail_archive::ArchiveStore;
use agentrail_event::TenantId;
use agentrail_event::hash::{sha256, to_hex};
use agentrail_ledger::anchors::Anchored;
use agentrail_ledger::frame::{self, FileKind};
use agentrail_ledger::layout::{CHECKPOINT_LOG, CHECKPOINTS_DIR, LEDGER_DIR, segment_name};
use agentrail_ledger::{Anchors, Damage, DataDir, verify_tenant_with_progress};
use agentrail_note::Verifier;
use std::fs;
use std::path::Path;

/// The tenant's logs the archiver keeps beside its events (the others hold what erasure must
/// be able to destroy, or are the system's).
pub const ARCHIVED_LOGS: [Anchored; 2] = [Anchored::Access, Anchored::Retention];

/// The committed logs a restore does not bring back.
pub const NOT_ARCHIVED: [Anchored; 4] = agentrail_ledger::anchors::NOT_IN_ARCHIVE;

/// What in the archive does not verify: the object, the seq where it applies, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}{}: {reason}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct ArchiveDamage {
    pub object: String,
    pub seq: Option<u64>,
    pub reason: String,
}

fn damage(object: &str, seq: Option<u64>, reason: impl Into<String>) -> ArchiveDamage {
    ArchiveDamage {
        object: object.to_owned(),
        seq,
        reason: reason.into(),
    }
}

/// One manifest as read from the archive: its key, the SHA-256 of its bytes, and what it says
/// (its signature verified, its place in the chain checked).
#[derive(Debug, Clone)]
pub struct ReadManifest {
    pub key: String,
    pub sha256: String,
    pub signed: SignedArchiveManifest,
}

impl ReadManifest {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            key: self.key.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

fn get(store: &dyn ArchiveStore, key: &str) -> Result<Vec<u8>, ArchiveDamage> {
    store
        .get(key)
        .map_err(|e| damage(key, None, e.to_string()))?
        .ok_or_else(|| damage(key, None, "is not in the archive"))
}

/// The `(first, end)` seqs a segment key names (`…/segment-<first>-<end>`).
fn segment_range(key: &str) -> Option<(u64, u64)> {
    let name = key.rsplit('/').next()?.strip_prefix("segment-")?;
    let (a, b) = name.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The tenant's manifests, oldest first, each checked: the format, the tenant, the signature
/// (a statement `<origin>/archive-manifest` over its SHA-256, by `verifier`), the origin (the
/// same in all), the previous manifest it names, and that it starts where the one before ended
/// and its segments are contiguous. An archive without any manifest for the tenant is an error.
pub fn manifests(
    store: &dyn ArchiveStore,
    tenant: &TenantId,
    verifier: &Verifier,
) -> Result<Vec<ReadManifest>, ArchiveDamage> {
    let prefix = format!("{tenant}/");
    let listed = store
        .list(&prefix)
        .map_err(|e| damage(&prefix, None, e.to_string()))?;
    let mut keys: Vec<((u64, u64), String)> = listed
        .into_iter()
        .filter_map(|o| manifest_order(&o.key).map(|order| (order, o.key)))
        .collect();
    keys.sort();
    if keys.is_empty() {
        return Err(damage(
            &prefix,
            None,
            format!(
                "the archive {} holds no manifest of tenant {tenant}",
                store.url()
            ),
        ));
    }
    for w in keys.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(damage(
                &w[1].1,
                Some(w[1].0.0),
                format!(
                    "a second manifest at the same place (seq {}, {} log records; the other is {})",
                    w[0].0.0, w[0].0.1, w[0].1
                ),
            ));
        }
    }
    let mut out: Vec<ReadManifest> = Vec::with_capacity(keys.len());
    let mut end = 0u64;
    let mut log_ends: std::collections::BTreeMap<String, u64> = Default::default();
    for (_, key) in keys {
        let bytes = get(store, &key)?;
        let signed = read_manifest(&key, &bytes, tenant, verifier)?;
        let m = &signed.manifest;
        let bad = |seq: Option<u64>, reason: String| damage(&key, seq, reason);
        if let Some(first) = out.first()
            && first.signed.manifest.origin != m.origin
        {
            return Err(bad(
                None,
                format!(
                    "origin {:?}, the first manifest's is {:?}",
                    m.origin, first.signed.manifest.origin
                ),
            ));
        }
        let prev = out.last().map(ReadManifest::object_ref);
        if m.prev_manifest != prev {
            return Err(bad(
                None,
                format!(
                    "names the previous manifest {:?}, but the one before it in the archive is {:?}",
                    m.prev_manifest, prev
                ),
            ));
        }
        if m.first_seq != end {
            return Err(bad(
                Some(end),
                format!(
                    "adds seqs {}..{}, but the manifests before it end at {end}",
                    m.first_seq, m.end_seq
                ),
            ));
        }
        let mut at = m.first_seq;
        for s in &m.segments {
            if s.first_seq != at
                || s.end_seq <= s.first_seq
                || !s.key.starts_with(&prefix)
                || segment_range(&s.key) != Some((s.first_seq, s.end_seq))
            {
                return Err(bad(
                    Some(at),
                    format!(
                        "segment {} (seqs {}..{}) does not continue at seq {at}",
                        s.key, s.first_seq, s.end_seq
                    ),
                ));
            }
            at = s.end_seq;
        }
        if at != m.end_seq {
            return Err(bad(
                Some(at),
                format!("its segments end at seq {at}, it says {}", m.end_seq),
            ));
        }
        for l in &m.logs {
            let at = log_ends.get(&l.log).copied().unwrap_or(0);
            if ARCHIVED_LOGS.iter().all(|a| a.name() != l.log)
                || l.first != at
                || l.end <= l.first
                || !l.key.starts_with(&prefix)
            {
                return Err(bad(
                    None,
                    format!(
                        "{} log piece {} (records {}..{}) does not continue the log at record {at}",
                        l.log, l.key, l.first, l.end
                    ),
                ));
            }
            log_ends.insert(l.log.clone(), l.end);
        }
        if m.log_ends != log_ends {
            return Err(bad(
                None,
                format!(
                    "says the logs stand at {:?}, its pieces and those before make {log_ends:?}",
                    m.log_ends
                ),
            ));
        }
        end = m.end_seq;
        out.push(ReadManifest {
            key,
            sha256: to_hex(&sha256(&bytes)),
            signed,
        });
    }
    Ok(out)
}

/// One manifest object on its own: its format, tenant and origin, its signature (a statement
/// `<origin>/archive-manifest` over its SHA-256, by `verifier`), and that its key names the
/// place its content says (events, then log records). What [`manifests`] checks of each, and
/// what the archiver checks of the newest before it goes on from it.
pub fn read_manifest(
    key: &str,
    bytes: &[u8],
    tenant: &TenantId,
    verifier: &Verifier,
) -> Result<SignedArchiveManifest, ArchiveDamage> {
    let signed = parse_manifest(bytes).map_err(|e| damage(key, None, e))?;
    let m = &signed.manifest;
    let bad = |seq: Option<u64>, reason: String| damage(key, seq, reason);
    if m.format != MANIFEST_FORMAT {
        return Err(bad(None, format!("unknown format {:?}", m.format)));
    }
    if m.tenant != tenant.as_str() || !m.origin.ends_with(&format!("/tenants/{tenant}")) {
        return Err(bad(
            None,
            format!(
                "is tenant {:?}'s (origin {:?}), not {tenant}'s",
                m.tenant, m.origin
            ),
        ));
    }
    let (note, _) =
        agentrail_note::open(signed.signature.as_bytes(), &[verifier]).map_err(|e| {
            bad(
                None,
                format!("the signature does not verify with the key: {e}"),
            )
        })?;
    let digest = m.digest().map_err(|e| bad(None, e))?;
    if note.text != format!("{}/archive-manifest\nsha256 {digest}\n", m.origin) {
        return Err(bad(
            None,
            "the signed statement does not match this manifest (it was edited)".into(),
        ));
    }
    let place = (m.end_seq, m.log_ends.values().sum::<u64>());
    if manifest_order(key) != Some(place) {
        return Err(bad(
            None,
            format!(
                "its name says it is at {:?} (events, log records), its content at {place:?}",
                manifest_order(key)
            ),
        ));
    }
    if m.end_seq < m.first_seq
        || (m.end_seq == m.first_seq && (m.logs.is_empty() || !m.segments.is_empty()))
    {
        return Err(bad(
            Some(m.first_seq),
            format!(
                "adds seqs {}..{}, {} segments and {} log pieces: a manifest adds events, or only log records",
                m.first_seq,
                m.end_seq,
                m.segments.len(),
                m.logs.len()
            ),
        ));
    }
    Ok(signed)
}

/// A segment object, checked against what its manifest says of it.
pub fn segment_bytes(
    store: &dyn ArchiveStore,
    s: &ArchivedSegment,
) -> Result<Vec<u8>, ArchiveDamage> {
    let bytes = get(store, &s.key)?;
    if bytes.len() as u64 != s.bytes {
        return Err(damage(
            &s.key,
            Some(s.first_seq),
            format!("holds {} bytes, its manifest says {}", bytes.len(), s.bytes),
        ));
    }
    let digest = to_hex(&sha256(&bytes));
    if digest != s.sha256 {
        return Err(damage(
            &s.key,
            Some(s.first_seq),
            format!(
                "SHA-256 {digest}, its manifest says {}: the object was altered",
                s.sha256
            ),
        ));
    }
    Ok(bytes)
}

/// What [`fetch`] wrote: a tenant directory of the archived segments and checkpoints.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub origin: String,
    pub manifests: usize,
    /// `(first seq, end seq, key)` of every archived segment.
    pub segments: Vec<(u64, u64, String)>,
    /// Events in the archive.
    pub events: u64,
    /// Bytes of segment objects.
    pub bytes: u64,
    /// The checkpoints in the fetched checkpoint log: `(offset in it, size, key)`.
    pub checkpoints: Vec<(u64, u64, String)>,
    /// Checkpoints of more events than the archive holds yet (signed while the active segment
    /// grew): not checked now; a later verification checks them once the segments they cover
    /// are archived.
    pub pending: Vec<String>,
    /// The newest checkpoint the archived events cover (its note text).
    pub latest_checkpoint: Option<String>,
    pub latest_manifest: ObjectRef,
    /// The logs fetched, with their records.
    pub logs: Vec<(Anchored, u64)>,
}

impl Fetched {
    /// The origin prefix (the origin without `/tenants/<t>`).
    pub fn origin_prefix(&self) -> &str {
        self.origin
            .rsplit_once("/tenants/")
            .map_or(self.origin.as_str(), |(p, _)| p)
    }

    /// The archive object that damage found in the fetched files lies in.
    pub fn object_of(&self, d: &Damage) -> String {
        if d.file == CHECKPOINT_LOG {
            let at = d.offset.unwrap_or(0);
            return self
                .checkpoints
                .iter()
                .rev()
                .find(|c| c.0 <= at)
                .map_or_else(|| "the archived checkpoints".to_owned(), |c| c.2.clone());
        }
        self.segments
            .iter()
            .find(|s| d.file == segment_name(s.0) || d.seq.is_some_and(|q| s.0 <= q && q < s.1))
            .map_or_else(|| d.file.clone(), |s| s.2.clone())
    }
}

/// Fetches the tenant's archive into the tenant directory `dir` (which must not exist): every
/// segment object, checked against its manifest ([`manifests`], [`segment_bytes`]), as a
/// segment file; the manifests' checkpoints the archived events cover as its checkpoint log;
/// and an empty active segment after the last one. `progress(bytes fetched, bytes in all)`.
/// The entries and tree files are not written ([`agentrail_ledger::rebuild_derived`] does).
pub fn fetch(
    store: &dyn ArchiveStore,
    tenant: &TenantId,
    verifier: &Verifier,
    layout: &DataDir,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Fetched, ArchiveDamage> {
    let ms = manifests(store, tenant, verifier)?;
    let paths = layout.tenant(tenant);
    let dir = paths.dir();
    let local = |op: &str, p: &Path, e: std::io::Error| {
        damage(&p.display().to_string(), None, format!("cannot {op}: {e}"))
    };
    for sub in [LEDGER_DIR, CHECKPOINTS_DIR] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|e| local("create", &p, e))?;
    }
    let total: u64 = ms
        .iter()
        .flat_map(|m| &m.signed.manifest.segments)
        .map(|s| s.bytes)
        .sum();
    let mut done = 0u64;
    progress(0, total);
    let mut segments = Vec::new();
    let mut cps: Vec<(u64, String, String)> = Vec::new(); // (size, key, text)
    let mut log_pieces: Vec<(crate::archiver::ArchivedLog, Vec<u8>)> = Vec::new();
    for m in &ms {
        let mm = &m.signed.manifest;
        for s in &mm.segments {
            let bytes = segment_bytes(store, s)?;
            let p = dir.join(segment_name(s.first_seq));
            fs::write(&p, &bytes).map_err(|e| local("write", &p, e))?;
            done += bytes.len() as u64;
            progress(done, total);
            segments.push((s.first_seq, s.end_seq, s.key.clone()));
        }
        for l in &mm.logs {
            let bytes = get(store, &l.key)?;
            let digest = to_hex(&sha256(&bytes));
            if bytes.len() as u64 != l.bytes || digest != l.sha256 {
                return Err(damage(
                    &l.key,
                    None,
                    format!(
                        "{} bytes with SHA-256 {digest}, manifest {} says {} bytes with {}: the object was altered",
                        bytes.len(),
                        m.key,
                        l.bytes,
                        l.sha256
                    ),
                ));
            }
            log_pieces.push((l.clone(), bytes));
        }
        let text = get(store, &mm.checkpoint.key)?;
        let digest = to_hex(&sha256(&text));
        if digest != mm.checkpoint.sha256 {
            return Err(damage(
                &mm.checkpoint.key,
                None,
                format!(
                    "SHA-256 {digest}, manifest {} says {}: the object was altered",
                    m.key, mm.checkpoint.sha256
                ),
            ));
        }
        let (cp, _) = agentrail_note::open_checkpoint(&text, verifier, &[]).map_err(|e| {
            damage(
                &mm.checkpoint.key,
                None,
                format!("the checkpoint does not verify: {e}"),
            )
        })?;
        if cp.origin != mm.origin || cp.size != mm.checkpoint_size || cp.size < mm.end_seq {
            return Err(damage(
                &mm.checkpoint.key,
                Some(cp.size),
                format!(
                    "a checkpoint of {} events for {:?}; manifest {} says {} events (at least {}) for {:?}",
                    cp.size, cp.origin, m.key, mm.checkpoint_size, mm.end_seq, mm.origin
                ),
            ));
        }
        if cps.last().is_none_or(|c| c.1 != mm.checkpoint.key) {
            cps.push((
                cp.size,
                mm.checkpoint.key.clone(),
                String::from_utf8_lossy(&text).into_owned(),
            ));
        }
    }
    let last = &ms[ms.len() - 1];
    let events = last.signed.manifest.end_seq;
    let mut log = frame::encode_header(FileKind::Checkpoints, 0).to_vec();
    let mut checkpoints = Vec::new();
    let mut pending = Vec::new();
    let mut latest = None;
    for (size, key, text) in cps {
        if size > events {
            pending.push(key);
            continue;
        }
        checkpoints.push((log.len() as u64, size, key));
        frame::encode_note(text.as_bytes(), &mut log);
        latest = Some(text);
    }
    let p = dir.join(CHECKPOINT_LOG);
    fs::write(&p, &log).map_err(|e| local("write", &p, e))?;
    let p = dir.join(segment_name(events));
    fs::write(&p, frame::encode_header(FileKind::Segment, events))
        .map_err(|e| local("write", &p, e))?;
    // The logs: the header and the pieces in order; their chains are checked by a scan.
    let mut logs = Vec::new();
    for a in ARCHIVED_LOGS {
        let pieces: Vec<&(crate::archiver::ArchivedLog, Vec<u8>)> = log_pieces
            .iter()
            .filter(|(l, _)| l.log == a.name())
            .collect();
        let Some((last, _)) = pieces.last() else {
            continue;
        };
        let path = a.path(layout, tenant);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| local("create", parent, e))?;
        }
        let mut bytes = agentrail_ledger::chainlog::file_header().to_vec();
        for (_, b) in &pieces {
            bytes.extend_from_slice(b);
        }
        fs::write(&path, &bytes).map_err(|e| local("write", &path, e))?;
        let scan = agentrail_ledger::scan_chain_log(&path, false).map_err(|e| {
            // The piece holding the record that does not verify.
            let key = match &e {
                agentrail_ledger::ChainLogError::Damaged { seq, .. } => pieces
                    .iter()
                    .find(|(l, _)| l.first <= *seq && *seq < l.end)
                    .map_or(&last.key, |(l, _)| &l.key),
                _ => &last.key,
            };
            damage(key, None, format!("the archived {}: {e}", a.label()))
        })?;
        if scan.records != last.end
            || scan.valid_len != scan.file_len
            || scan.last_hash.map(|h| to_hex(&h)) != Some(last.head.clone())
        {
            return Err(damage(
                &last.key,
                None,
                format!(
                    "the archived {} holds {} records ending in {:?}; its manifest says {} ending in {}",
                    a.label(),
                    scan.records,
                    scan.last_hash.map(|h| to_hex(&h)),
                    last.end,
                    last.head
                ),
            ));
        }
        logs.push((a, last.end));
    }
    Ok(Fetched {
        origin: last.signed.manifest.origin.clone(),
        manifests: ms.len(),
        segments,
        events,
        bytes: total,
        checkpoints,
        pending,
        latest_checkpoint: latest,
        latest_manifest: last.object_ref(),
        logs,
    })
}

/// What a verified archive holds.
#[derive(Debug, Clone)]
pub struct ArchiveReport {
    pub fetched: Fetched,
    /// The Merkle root of every archived event.
    pub root: String,
}

/// Fetches the tenant's archive into `dir` ([`fetch`]), rebuilds the derived files and runs the
/// ledger's offline verification on it. `progress(phase, done, total)`: `fetch` in bytes, then
/// `verify` in bytes.
pub fn fetch_verified(
    store: &dyn ArchiveStore,
    tenant: &TenantId,
    verifier: &Verifier,
    layout: &DataDir,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<ArchiveReport, ArchiveDamage> {
    let fetched = fetch(store, tenant, verifier, layout, &mut |d, t| {
        progress("fetch", d, t)
    })?;
    let dir = layout.tenant(tenant).dir().to_path_buf();
    agentrail_ledger::rebuild_derived(tenant, &dir)
        .map_err(|e| damage(&dir.display().to_string(), None, e.to_string()))?;
    let root = layout.root();
    let r = verify_tenant_with_progress(
        root,
        tenant,
        verifier,
        fetched.origin_prefix(),
        &Anchors {
            without_logs: true,
            ..Default::default()
        },
        &mut |d, t| progress("verify", d, t),
    );
    if let Some(d) = &r.failure {
        return Err(ArchiveDamage {
            object: fetched.object_of(d),
            seq: d.seq,
            reason: d.reason.clone(),
        });
    }
    // The archived logs hold what the newest archived checkpoint commits of them.
    if let Some(text) = &fetched.latest_checkpoint {
        let lines = agentrail_ledger::anchors::lines_of(
            &agentrail_ledger::anchors::extension_lines(text),
            &ARCHIVED_LOGS,
        );
        agentrail_ledger::anchors::check(layout, tenant, &lines).map_err(|reason| {
            damage(
                fetched
                    .checkpoints
                    .last()
                    .map_or("the archived checkpoints", |c| c.2.as_str()),
                None,
                format!("the checkpoint commits a log the archive does not hold: {reason}"),
            )
        })?;
    }
    if r.events != fetched.events {
        return Err(damage(
            &fetched.latest_manifest.key,
            Some(r.events),
            format!(
                "the manifests say the archive holds {} events, its segments hold {}",
                fetched.events, r.events
            ),
        ));
    }
    Ok(ArchiveReport {
        fetched,
        root: to_hex(&r.root),
    })
}

/// Verifies the tenant's archive offline: fetched into a scratch directory under `scratch`
/// (removed after), then [`fetch_verified`].
pub fn verify_archive(
    store: &dyn ArchiveStore,
    tenant: &TenantId,
    verifier: &Verifier,
    scratch: &Path,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<ArchiveReport, ArchiveDamage> {
    let mut n = [0u8; 8];
    getrandom::fill(&mut n).map_err(|e| damage("scratch", None, e.to_string()))?;
    let root = scratch.join(format!("agentrail-verify-archive-{}", hex::encode(n)));
    let layout = DataDir::new(&root);
    let r = fetch_verified(store, tenant, verifier, &layout, progress);
    let _ = fs::remove_dir_all(&root);
    r
}

/// The tenants the archive holds manifests of, sorted.
pub fn archived_tenants(store: &dyn ArchiveStore) -> Result<Vec<TenantId>, ArchiveDamage> {
    let mut out: Vec<TenantId> = store
        .list("")
        .map_err(|e| damage(&store.url(), None, e.to_string()))?
        .into_iter()
        .filter(|o| manifest_end(&o.key).is_some())
        .filter_map(|o| {
            o.key
                .split('/')
                .next()
                .and_then(|t| TenantId::parse(t).ok())
        })
        .collect();
    out.dedup();
    Ok(out)
}

/// What `agentrail restore` is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The data directory to rebuild: absent or empty.
    pub data_dir: std::path::PathBuf,
    /// Only these tenants (default: every tenant with a manifest in the archive).
    pub tenants: Option<Vec<TenantId>>,
    /// The log's verifier key: the archive must verify with it.
    pub verifier: Verifier,
    /// The log key (its private key string, from the operator's key backup), written to the
    /// data directory; it signs the restore statements.
    pub log_key: String,
}

/// What was restored of one tenant.
#[derive(Debug, Clone)]
pub struct Restored {
    pub tenant: TenantId,
    pub events: u64,
    pub bytes: u64,
    pub manifests: usize,
    /// The size of the newest archived checkpoint the restore started from.
    pub checkpoint_size: Option<u64>,
    /// The checkpoint signed after the restore, covering every restored event.
    pub checkpoint: String,
    /// Events indexed.
    pub indexed: u64,
}

/// Rebuilds a data directory from the archive: for each tenant, its segments, checkpoints and
/// access and retention logs, verified ([`fetch_verified`]) before anything else is written;
/// then the system's origin and log key, a signed `restored` statement per tenant (its latest
/// checkpoint commits logs the archive does not carry, [`NOT_ARCHIVED`]: the token vault and
/// key log start empty), a checkpoint over every restored event (consistent with the archived
/// ones), and the index. Refuses a
/// target that is not empty; if anything fails, what it wrote is removed.
/// `progress(tenant, phase, done, total)`: phases `fetch`, `verify`, `index`.
pub fn restore(
    store: &dyn ArchiveStore,
    opts: &RestoreOptions,
    progress: &mut dyn FnMut(&TenantId, &str, u64, u64),
) -> Result<Vec<Restored>, crate::ServiceError> {
    use crate::ServiceError;
    let dir = &opts.data_dir;
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ServiceError::bad_request(format!(
                    "refusing to restore into {}: it is not empty (restore rebuilds a data directory from nothing)",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServiceError::internal(format!(
                "reading {}: {e}",
                dir.display()
            )));
        }
    }
    let created = !dir.exists();
    fs::create_dir_all(dir)
        .map_err(|e| ServiceError::internal(format!("creating {}: {e}", dir.display())))?;
    let r = restore_into(store, opts, progress);
    if r.is_err() && created {
        let _ = fs::remove_dir_all(dir);
    } else if r.is_err()
        && let Ok(entries) = fs::read_dir(dir)
    {
        // It was empty: everything in it is this restore's.
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
    r
}

fn restore_into(
    store: &dyn ArchiveStore,
    opts: &RestoreOptions,
    progress: &mut dyn FnMut(&TenantId, &str, u64, u64),
) -> Result<Vec<Restored>, crate::ServiceError> {
    use crate::ServiceError;
    use agentrail_ledger::files::{make_read_only, write_atomic};
    let layout = DataDir::new(&opts.data_dir);
    let mut tenants = match &opts.tenants {
        Some(t) => t.clone(),
        None => archived_tenants(store).map_err(|e| ServiceError::internal(e.to_string()))?,
    };
    tenants.sort();
    tenants.dedup();
    if tenants.is_empty() {
        return Err(ServiceError::bad_request(format!(
            "the archive {} holds no tenant",
            store.url()
        )));
    }
    let mut reports = Vec::with_capacity(tenants.len());
    for t in &tenants {
        let r = fetch_verified(store, t, &opts.verifier, &layout, &mut |phase, d, n| {
            progress(t, phase, d, n)
        })
        .map_err(|e| {
            ServiceError::internal(format!(
                "tenant {t}: the archive does not verify, nothing is restored: {e}"
            ))
        })?;
        if let Some(first) = reports
            .first()
            .map(|r: &ArchiveReport| r.fetched.origin_prefix())
            && first != r.fetched.origin_prefix()
        {
            return Err(ServiceError::internal(format!(
                "tenant {t} is of the log {:?}, the others of {first:?}",
                r.fetched.origin_prefix()
            )));
        }
        for (first, _, _) in &r.fetched.segments {
            let p = layout.tenant(t).segment(*first);
            make_read_only(&p)
                .map_err(|e| ServiceError::internal(format!("{}: {e}", p.display())))?;
        }
        reports.push(r);
    }
    let io = |e: agentrail_ledger::files::WriteFileError| ServiceError::internal(e.to_string());
    let sys = layout.system();
    fs::create_dir_all(sys.dir())
        .map_err(|e| ServiceError::internal(format!("{}: {e}", sys.dir().display())))?;
    write_atomic(
        &sys.origin(),
        format!("{}\n", reports[0].fetched.origin_prefix()).as_bytes(),
        0o644,
    )
    .map_err(io)?;
    let key = agentrail_note::Signer::from_private_key_string(opts.log_key.trim())
        .map_err(|e| ServiceError::bad_request(format!("the log key: {e}")))?;
    write_atomic(
        &sys.log_key(),
        format!("{}\n", opts.log_key.trim()).as_bytes(),
        0o600,
    )
    .map_err(io)?;
    let mut cfg = agentrail_ledger::Config::new(&opts.data_dir);
    cfg.checkpoint_interval = None;
    let ledger = agentrail_ledger::Ledger::open(cfg)
        .map_err(|e| ServiceError::internal(format!("opening the restored ledger: {e}")))?;
    if ledger.verifier() != &opts.verifier {
        return Err(ServiceError::bad_request(format!(
            "the log key given is {}, but the archive was checked with {}",
            ledger.verifier(),
            opts.verifier
        )));
    }
    let mut out = Vec::with_capacity(reports.len());
    for (t, r) in tenants.iter().zip(&reports) {
        let f = &r.fetched;
        if let Some(text) = &f.latest_checkpoint {
            let lines = agentrail_ledger::anchors::restore_statement(
                text,
                f.events,
                (&f.latest_manifest.key, &f.latest_manifest.sha256),
                &NOT_ARCHIVED,
            );
            // Signed with the key file itself: no server or signer process signs these.
            let mut body = format!("{}/restore\n", ledger.origin(t));
            for l in &lines {
                body.push_str(l);
                body.push('\n');
            }
            let note = agentrail_note::Note {
                signatures: vec![key.sign(&body)],
                text: body,
            }
            .to_text();
            write_atomic(&layout.tenant(t).restored(), note.as_bytes(), 0o644).map_err(io)?;
        }
        let checkpoint = ledger
            .anchor_now(t)
            .map_err(|e| ServiceError::internal(format!("tenant {t}: {e}")))?;
        // The embedded index of the restored directory; a server configured with a shared
        // store rebuilds the tenant there when it finds the store ahead of the ledger.
        let store = agentrail_index::SqliteStore::new(ledger.data_dir());
        let index = crate::reindex(&ledger, &store, t, None, &mut |d, n| {
            progress(t, "index", d, n)
        })?;
        out.push(Restored {
            tenant: t.clone(),
            events: f.events,
            bytes: f.bytes,
            manifests: f.manifests,
            checkpoint_size: f.checkpoints.last().map(|c| c.1),
            checkpoint: checkpoint.text,
            indexed: index.applied(),
        });
    }
    ledger
        .close()
        .map_err(|e| ServiceError::internal(e.to_string()))?;
    Ok(out)
}

/// What the integrity job checks of the archive ([`crate::integrity`]): the manifests verify
/// and chain ([`manifests`]), every segment they name is in the archive with the size and
/// SHA-256 they say ([`segment_bytes`]), and is the ledger's sealed segment of the same seqs,
/// byte for byte; every archived piece of the access and retention logs is the local log's
/// records of that range. A tenant not archived yet is fine. Returns the summary the signed report
/// carries; the error names the object.
pub fn compare_sealed(
    store: &dyn ArchiveStore,
    ledger: &agentrail_ledger::Ledger,
    tenant: &TenantId,
) -> Result<serde_json::Value, String> {
    let url = store.url();
    let any = store
        .list(&format!("{tenant}/"))
        .map_err(|e| e.to_string())?
        .iter()
        .any(|o| manifest_end(&o.key).is_some());
    if !any {
        return Ok(
            serde_json::json!({"url": url, "result": "ok", "manifests": 0,
            "segments": 0, "events": 0, "bytes": 0}),
        );
    }
    let ms = manifests(store, tenant, ledger.verifier()).map_err(|e| e.to_string())?;
    let sealed: std::collections::HashMap<(u64, u64), std::path::PathBuf> = ledger
        .sealed_segments(tenant)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(a, b, p)| ((a, b), p))
        .collect();
    let (mut segments, mut bytes) = (0usize, 0u64);
    for m in &ms {
        for s in &m.signed.manifest.segments {
            // The store's digest (S3's checksum: nothing downloaded) against the manifest's.
            let (size, digest) = store
                .digest(&s.key)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("archive object {} is not in the archive", s.key))?;
            let digest = to_hex(&digest);
            if size != s.bytes || digest != s.sha256 {
                return Err(format!(
                    "archive object {} holds {size} bytes with SHA-256 {digest}, its manifest says {} bytes with {}: the object was altered",
                    s.key, s.bytes, s.sha256
                ));
            }
            let Some(path) = sealed.get(&(s.first_seq, s.end_seq)) else {
                return Err(format!(
                    "archive object {} holds seqs {}..{}, but the ledger has no sealed segment of those seqs",
                    s.key, s.first_seq, s.end_seq
                ));
            };
            let local = fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let digest = to_hex(&sha256(&local));
            if digest != s.sha256 {
                return Err(format!(
                    "archive object {} (SHA-256 {}) is not the ledger's sealed segment {} (SHA-256 {digest})",
                    s.key,
                    s.sha256,
                    path.display()
                ));
            }
            segments += 1;
            bytes += s.bytes;
        }
    }
    // The archived log pieces are the local logs' records, byte for byte.
    let layout = DataDir::new(ledger.data_dir());
    let mut log_pieces = 0usize;
    for m in &ms {
        for l in &m.signed.manifest.logs {
            let bytes = get(store, &l.key).map_err(|e| e.to_string())?;
            let digest = to_hex(&sha256(&bytes));
            if digest != l.sha256 {
                return Err(format!(
                    "archive object {} has SHA-256 {digest}, its manifest says {}: the object was altered",
                    l.key, l.sha256
                ));
            }
            let Some(a) = ARCHIVED_LOGS.into_iter().find(|a| a.name() == l.log) else {
                return Err(format!(
                    "archive object {} is of an unknown log {:?}",
                    l.key, l.log
                ));
            };
            let path = a.path(&layout, tenant);
            let local = agentrail_ledger::chainlog::frames_in(&path, l.first, l.end)
                .map_err(|e| format!("the local {}: {e}", a.label()))?;
            if local != bytes {
                return Err(format!(
                    "archive object {} (records {}..{}) is not the local {}'s records (SHA-256 {})",
                    l.key,
                    l.first,
                    l.end,
                    a.label(),
                    to_hex(&sha256(&local))
                ));
            }
            log_pieces += 1;
        }
    }
    let last = &ms[ms.len() - 1];
    Ok(
        serde_json::json!({"url": url, "result": "ok", "manifests": ms.len(),
        "segments": segments, "events": last.signed.manifest.end_seq, "bytes": bytes,
        "log_pieces": log_pieces, "latest_manifest": last.key}),
    )
}
