//! The archiver (DESIGN.md §8.1): a job of the service that keeps each tenant's legal record in
//! the WORM archive ([`agentrail_archive::ArchiveStore`]: files, or S3 with Object Lock).
//!
//! Every round, per tenant: the active segment is sealed once its first event is older than
//! `archive_interval` less one round's period (so the archive is at most that far behind, plus
//! the upload); every sealed segment not in the archive yet is put there, then a checkpoint
//! covering them, then what the tenant's access and retention logs gained since the last
//! round, then a signed archive manifest, under `<tenant>/<yyyy>/<mm>/<dd>/` (the UTC day its
//! first event was received, for a segment; the day it was archived, for the others):
//!
//! ```text
//! acme/2026/12/07/segment-<first seq>-<end seq>     the sealed segment file, byte for byte
//! acme/2026/12/07/checkpoint-<size>-<digest>        the signed checkpoint note
//! acme/2026/12/07/access-<first>-<end>              access-log records (who read what)
//! acme/2026/12/07/retention-<first>-<end>           retention-run records
//! acme/2026/12/07/manifest-<end seq>-<records>.json {"manifest": …, "signature": …}
//! ```
//!
//! (seqs zero-padded to 20 digits, so keys sort in seq order). A log piece is its records'
//! stored frames: a log file is its header and its pieces in order. The token vault and key
//! logs are never archived: erasure must be able to destroy what they hold. A manifest names
//! the segments it adds (key, seq range, size, SHA-256, retention), the checkpoint, the log
//! pieces (range, size, SHA-256, head hash) and where each log stands, and the previous
//! manifest (key and SHA-256): the manifests chain, and each is signed with the log key as a
//! statement `<origin>/archive-manifest` over the SHA-256 of its RFC 8785 bytes. Each object is
//! retained (COMPLIANCE, where the store enforces it) until its newest event's `received_at`
//! plus the tenant's `retention_days`. Log records with no new events (reads of a quiet
//! tenant) are archived once an interval, in a manifest without segments. A manifest's name orders it in
//! the chain: events, then log records (the sum of every log's records) after it.
//!
//! Objects are written once: a re-run after a crash puts the same bytes again (a no-op), and
//! where the archive stands is read back from it (the newest manifest), never kept only
//! here. A failed upload is counted, logged, retried with backoff (1 s doubling to 5 min);
//! ingest never waits for the archive. The lag (events and seconds not yet archived) is a
//! metric, and passing `archive_lag_alert_ms` is logged at error and POSTed to the webhook.

use crate::access::TenantLogs;
use crate::error::ServiceError;
use crate::privacy::Privacy;
use crate::schedule::Schedule;
use agentrail_archive::ArchiveStore;
use agentrail_event::TenantId;
use agentrail_event::hash::{sha256, to_hex};
use agentrail_ledger::anchors::Anchored;
use agentrail_ledger::sync::lock;
use agentrail_ledger::{Clock, Ledger};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `format` of an archive manifest.
pub const MANIFEST_FORMAT: &str = "agentrail-archive-manifest/v1";

/// One archived segment, as its manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSegment {
    pub key: String,
    pub first_seq: u64,
    pub end_seq: u64,
    pub bytes: u64,
    pub sha256: String,
    pub retain_until: String,
}

/// A piece of one of the tenant's chain logs (records `[first, end)` as their stored frames):
/// the access log (who read what) and the retention runs, archived beside the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedLog {
    /// `access` or `retention` (the names of checkpoint extension lines).
    pub log: String,
    pub key: String,
    pub first: u64,
    pub end: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The hash of record `end - 1`.
    pub head: String,
}

/// An archived object named by key and digest (the checkpoint, the previous manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub key: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveManifest {
    pub format: String,
    pub tenant: String,
    pub origin: String,
    /// The events it adds: `[first_seq, end_seq)`, in `segments`, contiguous.
    pub first_seq: u64,
    pub end_seq: u64,
    pub segments: Vec<ArchivedSegment>,
    /// A signed checkpoint of at least `end_seq` events.
    pub checkpoint: ObjectRef,
    pub checkpoint_size: u64,
    /// The manifest before it (`None` for the first).
    pub prev_manifest: Option<ObjectRef>,
    /// The pieces of the tenant's logs it adds, each continuing where the log's last piece
    /// ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<ArchivedLog>,
    /// Where each archived log stands after it (records), for every log archived so far.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub log_ends: std::collections::BTreeMap<String, u64>,
}

impl ArchiveManifest {
    /// The SHA-256 (hex) of its RFC 8785 form: what its signature commits to.
    pub fn digest(&self) -> Result<String, String> {
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let bytes = agentrail_event::json::to_canonical_vec(&v).map_err(|e| e.to_string())?;
        Ok(to_hex(&sha256(&bytes)))
    }
}

/// A manifest object: the manifest and the log's signature over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedArchiveManifest {
    pub manifest: ArchiveManifest,
    /// A C2SP signed note `<origin>/archive-manifest\nsha256 <digest>\n`.
    pub signature: String,
}

/// The key of a manifest on `day` (`yyyy/mm/dd`) after which the archive holds `end` events
/// and `log_records` records of the tenant's logs (together: its place in the chain, growing
/// with every manifest).
pub fn manifest_key(tenant: &str, day: &str, end: u64, log_records: u64) -> String {
    format!("{tenant}/{day}/manifest-{end:020}-{log_records:020}.json")
}

/// The place a manifest key names, `(events, log records)`, if it is one.
pub fn manifest_order(key: &str) -> Option<(u64, u64)> {
    let name = key.rsplit('/').next()?;
    let place = name.strip_prefix("manifest-")?.strip_suffix(".json")?;
    match place.split_once('-') {
        Some((end, logs)) => Some((end.parse().ok()?, logs.parse().ok()?)),
        // The first archives named manifests by their end alone (no logs were archived).
        None => Some((place.parse().ok()?, 0)),
    }
}

/// The end seq a manifest key names, if it is one.
pub fn manifest_end(key: &str) -> Option<u64> {
    manifest_order(key).map(|(end, _)| end)
}

/// `yyyy/mm/dd` of a time, in UTC.
fn day(ts: jiff::Timestamp) -> String {
    ts.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y/%m/%d")
        .to_string()
}

/// Where a tenant's archive stands: the events it holds and its newest manifest.
#[derive(Debug, Clone, Default)]
struct Head {
    end: u64,
    manifest: Option<ObjectRef>,
    /// Records of each log the archive holds.
    log_ends: std::collections::BTreeMap<String, u64>,
}

/// The most records put in one log piece.
const LOG_PIECE: u64 = 50_000;

/// What one round did for a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveRound {
    pub sealed: bool,
    pub segments: usize,
    pub bytes: u64,
    /// The events the archive holds after it.
    pub archived: u64,
}

#[derive(Debug)]
pub struct Archiver {
    ledger: Arc<Ledger>,
    privacy: Arc<Privacy>,
    store: Arc<dyn ArchiveStore>,
    /// The tenant logs archived beside the events, with where they are kept open.
    logs: Vec<(Anchored, Arc<TenantLogs>)>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    lag_alert: Duration,
    webhook: Option<String>,
    heads: Mutex<HashMap<TenantId, Head>>,
    /// Per tenant after a failure: when to try again, and the next back-off.
    retry: Mutex<HashMap<TenantId, (Instant, Duration)>>,
    /// Per tenant: events and seconds not archived yet.
    lags: Mutex<HashMap<TenantId, (u64, f64)>>,
    alerted: Mutex<HashSet<TenantId>>,
    /// When each tenant's last manifest was written (by this process).
    written: Mutex<HashMap<TenantId, Instant>>,
    pub upload_errors: AtomicU64,
    /// One round at a time (the schedule's and an on-demand one would both build a manifest
    /// from the same head).
    running: Mutex<()>,
    schedule: Schedule,
}

const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Archiver {
    /// An archiver to `store`, which must keep objects as written ([`ArchiveStore::check`]:
    /// refused here otherwise, so a misconfigured archive stops the start, not a later upload).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ledger: Arc<Ledger>,
        privacy: Arc<Privacy>,
        store: Arc<dyn ArchiveStore>,
        logs: Vec<(Anchored, Arc<TenantLogs>)>,
        clock: Arc<dyn Clock>,
        interval: Duration,
        lag_alert: Duration,
        webhook: Option<String>,
    ) -> Result<Archiver, ServiceError> {
        store
            .check()
            .map_err(|e| ServiceError::internal(format!("the archive: {e}")))?;
        Ok(Archiver {
            ledger,
            privacy,
            store,
            logs,
            clock,
            interval,
            lag_alert,
            webhook,
            heads: Mutex::new(HashMap::new()),
            retry: Mutex::new(HashMap::new()),
            lags: Mutex::new(HashMap::new()),
            alerted: Mutex::new(HashSet::new()),
            written: Mutex::new(HashMap::new()),
            upload_errors: AtomicU64::new(0),
            running: Mutex::new(()),
            schedule: Schedule::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn ArchiveStore> {
        &self.store
    }

    /// Runs a round for every tenant this often (a quarter of the interval, at most 10 s, so a
    /// segment is sealed soon after it is due).
    pub fn start_schedule(self: &Arc<Self>) {
        let every = self.period();
        self.schedule.start_per_tenant(
            "archiver",
            every,
            Arc::downgrade(self),
            |j| &j.ledger,
            |j, t| j.scheduled(t),
        );
    }

    pub fn stop(&self) {
        self.schedule.stop();
    }

    /// How often the schedule runs a round.
    fn period(&self) -> Duration {
        (self.interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(10))
    }

    /// The largest lag over tenants: (events, seconds).
    pub fn lag(&self) -> (u64, f64) {
        lock(&self.lags)
            .values()
            .fold((0, 0.0), |(e, s), (e2, s2)| (e.max(*e2), s.max(*s2)))
    }

    fn scheduled(&self, t: &TenantId) -> Result<(), ServiceError> {
        if let Some((at, _)) = lock(&self.retry).get(t)
            && Instant::now() < *at
        {
            // Backing off: the lag still says how far behind the archive is now.
            let archived = lock(&self.heads).get(t).map_or(0, |h| h.end);
            return self.note_lag(t, archived, self.clock.now());
        }
        match self.run(t, false) {
            Ok(_) => {
                lock(&self.retry).remove(t);
                Ok(())
            }
            Err(e) => {
                self.upload_errors.fetch_add(1, Ordering::Relaxed);
                // The lag goes on growing while the archive cannot be reached (from where it
                // was last seen to stand; all of it if that was never read).
                let archived = lock(&self.heads).get(t).map_or(0, |h| h.end);
                if let Err(e) = self.note_lag(t, archived, self.clock.now()) {
                    tracing::warn!(tenant = %t, error = %e, "cannot compute the archive lag");
                }
                let mut retry = lock(&self.retry);
                let next = retry
                    .get(t)
                    .map_or(Duration::from_secs(1), |(_, b)| (*b * 2).min(MAX_BACKOFF));
                retry.insert(t.clone(), (Instant::now() + next, next));
                tracing::warn!(tenant = %t, error = %e, retry_in_s = next.as_secs(), "archiving failed");
                Err(e)
            }
        }
    }

    /// Where the archive of `t` stands, read back from it the first time (its newest
    /// manifest), then kept.
    fn head(&self, t: &TenantId) -> Result<Head, ServiceError> {
        if let Some(h) = lock(&self.heads).get(t) {
            return Ok(h.clone());
        }
        let err = |e: agentrail_archive::ArchiveError| ServiceError::internal(e.to_string());
        let newest = self
            .store
            .list(&format!("{t}/"))
            .map_err(err)?
            .into_iter()
            .filter_map(|o| manifest_order(&o.key).map(|order| (order, o.key)))
            .max();
        let head = match newest {
            None => Head::default(),
            Some(((end, _), key)) => {
                let bytes = self.store.get(&key).map_err(err)?.ok_or_else(|| {
                    ServiceError::internal(format!("archive manifest {key} was listed but is gone"))
                })?;
                // Only a manifest the log signed says where the archive stands (one planted
                // beyond the ledger would stop archiving with no lag to show for it).
                let m = crate::archive_read::read_manifest(&key, &bytes, t, self.ledger.verifier())
                    .map_err(|e| {
                        ServiceError::internal(format!(
                            "the newest archive manifest does not verify, archiving stops: {e}"
                        ))
                    })?;
                let size = self.ledger.size(t)?;
                if end > size {
                    return Err(ServiceError::internal(format!(
                        "archive manifest {key} says the archive holds {end} events, the ledger only {size}: archiving stops"
                    )));
                }
                Head {
                    end,
                    manifest: Some(ObjectRef {
                        key,
                        sha256: to_hex(&sha256(&bytes)),
                    }),
                    log_ends: m.manifest.log_ends,
                }
            }
        };
        lock(&self.heads).insert(t.clone(), head.clone());
        Ok(head)
    }

    /// One round for a tenant now (what the schedule runs). With `seal`, the active segment is
    /// sealed whatever its age (an on-demand round: archive everything durable now).
    pub fn run(&self, t: &TenantId, seal: bool) -> Result<ArchiveRound, ServiceError> {
        let _one = lock(&self.running);
        let now = self.clock.now();
        let mut round = ArchiveRound::default();
        if let Some((_, since)) = self.ledger.active_since(t)? {
            let age = now.duration_since(since).unsigned_abs();
            // Sealed one round early: the next round may come a period later, and the oldest
            // event must be archived within the interval.
            if seal || age + self.period() >= self.interval {
                round.sealed = self.ledger.seal_active(t)?;
            }
        }
        let head = self.head(t)?;
        let new: Vec<(u64, u64, std::path::PathBuf)> = self
            .ledger
            .sealed_segments(t)?
            .into_iter()
            .filter(|s| s.0 >= head.end)
            .collect();
        if let Some(first) = new.first()
            && first.0 != head.end
        {
            return Err(ServiceError::internal(format!(
                "the archive of {t} holds events up to seq {}, but the next sealed segment starts at {}",
                head.end, first.0
            )));
        }
        // The logs alone may have grown (reads with no new events): archived too.
        // (Their heads as this process knows them: no log is opened for this.)
        let layout = agentrail_ledger::DataDir::new(self.ledger.data_dir());
        let mut logs_grew = false;
        for (a, _) in &self.logs {
            let archived = head.log_ends.get(a.name()).copied().unwrap_or(0);
            let (records, _) = agentrail_ledger::chainlog::head_of(&a.path(&layout, t), false)
                .map_err(|e| ServiceError::internal(format!("{}: {e}", a.label())))?;
            logs_grew |= records > archived;
        }
        // Log records alone are archived once an interval (a read every second must not write a
        // manifest every round), or on demand.
        let logs_due = logs_grew
            && (seal
                || lock(&self.written)
                    .get(t)
                    .is_none_or(|at| at.elapsed() + self.period() >= self.interval));
        if !new.is_empty() || logs_due {
            self.upload(t, &head, &new, now, &mut round)?;
        }
        round.archived = lock(&self.heads).get(t).map_or(head.end, |h| h.end);
        self.note_lag(t, round.archived, now)?;
        Ok(round)
    }

    fn upload(
        &self,
        t: &TenantId,
        head: &Head,
        new: &[(u64, u64, std::path::PathBuf)],
        now: jiff::Timestamp,
        round: &mut ArchiveRound,
    ) -> Result<(), ServiceError> {
        let err = |e: agentrail_archive::ArchiveError| ServiceError::internal(e.to_string());
        let days = i64::from(self.privacy.policy(t)?.retention_days);
        let received = |seq: u64| -> Result<jiff::Timestamp, ServiceError> {
            self.ledger.read(t, seq)?.received_at().ok_or_else(|| {
                ServiceError::internal(format!("event {seq} of {t} has no received_at"))
            })
        };
        let retain = |at: jiff::Timestamp| -> Result<String, ServiceError> {
            at.checked_add(jiff::SignedDuration::from_hours(24 * days))
                .map(|t| t.to_string())
                .map_err(|e| ServiceError::internal(e.to_string()))
        };
        // The checkpoint first (signed now if the logged one is behind): it covers every
        // sealed segment, which holds durable events only.
        let cp = self
            .ledger
            .checkpoint(t)
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        let mut segments = Vec::with_capacity(new.len());
        // The logs' pieces, with no events, are kept as long as events received now would be.
        let mut newest = match new.first() {
            Some(first) => received(first.0)?,
            None => now,
        };
        for (first, end, path) in new {
            let bytes = std::fs::read(path)
                .map_err(|e| ServiceError::internal(format!("reading {}: {e}", path.display())))?;
            let last = received(end - 1)?;
            newest = newest.max(last);
            let until = retain(last)?;
            let key = format!(
                "{t}/{}/segment-{first:020}-{end:020}",
                day(received(*first)?)
            );
            self.store
                .put_once(&key, &bytes, Some(&until))
                .map_err(err)?;
            round.segments += 1;
            round.bytes += bytes.len() as u64;
            segments.push(ArchivedSegment {
                key,
                first_seq: *first,
                end_seq: *end,
                bytes: bytes.len() as u64,
                sha256: to_hex(&sha256(&bytes)),
                retain_until: until,
            });
        }
        let end = new.last().map_or(head.end, |s| s.1);
        let until = retain(newest)?;
        // Checkpoints of one size may differ in the log heads they commit: the name says which.
        let cp_digest = to_hex(&sha256(cp.text.as_bytes()));
        let cp_key = format!(
            "{t}/{}/checkpoint-{:020}-{}",
            day(now),
            cp.size,
            &cp_digest[..16]
        );
        self.store
            .put_once(&cp_key, cp.text.as_bytes(), Some(&until))
            .map_err(err)?;
        // The logs as they are now: at least what the checkpoint commits of them.
        let mut logs = Vec::new();
        let mut log_ends = head.log_ends.clone();
        for (a, open) in &self.logs {
            let log = open.log(t)?;
            let count = log.records();
            let mut from = log_ends.get(a.name()).copied().unwrap_or(0);
            while from < count {
                let n = (count - from).min(LOG_PIECE);
                let records = log.read(from, n as usize)?;
                let Some(last) = records.last() else { break };
                let to = from + records.len() as u64;
                let bytes = agentrail_ledger::chainlog::frames_of(&records);
                let key = format!("{t}/{}/{}-{from:020}-{to:020}", day(now), a.name());
                self.store
                    .put_once(&key, &bytes, Some(&until))
                    .map_err(err)?;
                logs.push(ArchivedLog {
                    log: a.name().to_owned(),
                    key,
                    first: from,
                    end: to,
                    bytes: bytes.len() as u64,
                    sha256: to_hex(&sha256(&bytes)),
                    head: to_hex(&last.hash),
                });
                from = to;
            }
            if from > 0 {
                log_ends.insert(a.name().to_owned(), from);
            }
        }
        let manifest = ArchiveManifest {
            format: MANIFEST_FORMAT.into(),
            tenant: t.to_string(),
            origin: self.ledger.origin(t),
            first_seq: head.end,
            end_seq: end,
            segments,
            checkpoint: ObjectRef {
                key: cp_key,
                sha256: cp_digest,
            },
            checkpoint_size: cp.size,
            prev_manifest: head.manifest.clone(),
            logs,
            log_ends: log_ends.clone(),
        };
        let digest = manifest.digest().map_err(ServiceError::internal)?;
        let signature = self
            .ledger
            .sign_statement(t, "archive-manifest", &[format!("sha256 {digest}")])
            .map_err(ServiceError::internal)?;
        let body = serde_json::to_value(SignedArchiveManifest {
            manifest,
            signature,
        })
        .map_err(|e| ServiceError::internal(e.to_string()))?;
        let body = agentrail_event::json::to_canonical_vec(&body)
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        let key = manifest_key(t.as_str(), &day(now), end, log_ends.values().sum());
        self.store
            .put_once(&key, &body, Some(&until))
            .map_err(err)?;
        tracing::info!(tenant = %t, segments = round.segments, bytes = round.bytes, end, "archived");
        lock(&self.written).insert(t.clone(), Instant::now());
        lock(&self.heads).insert(
            t.clone(),
            Head {
                end,
                manifest: Some(ObjectRef {
                    key,
                    sha256: to_hex(&sha256(&body)),
                }),
                log_ends,
            },
        );
        Ok(())
    }

    fn note_lag(
        &self,
        t: &TenantId,
        archived: u64,
        now: jiff::Timestamp,
    ) -> Result<(), ServiceError> {
        let size = self.ledger.size(t)?;
        let events = size.saturating_sub(archived);
        let secs = if events > 0 {
            let at = self.ledger.read(t, archived)?.received_at();
            at.map_or(0.0, |at| now.duration_since(at).as_secs_f64().max(0.0))
        } else {
            0.0
        };
        lock(&self.lags).insert(t.clone(), (events, secs));
        let behind = secs > self.lag_alert.as_secs_f64();
        let newly = if behind {
            lock(&self.alerted).insert(t.clone())
        } else {
            lock(&self.alerted).remove(t);
            false
        };
        if newly {
            let record = json!({"tenant": t.as_str(), "events": events, "seconds": secs,
                "bound_seconds": self.lag_alert.as_secs_f64(), "archive": self.store.url()});
            tracing::error!(tenant = %t, events, seconds = secs, "ARCHIVE BEHIND: the archive lags past its bound");
            crate::webhook::alert(self.webhook.as_deref(), "archive.lag", &record);
        }
        Ok(())
    }
}

/// What a value is, for tests reading a manifest object.
pub fn parse_manifest(bytes: &[u8]) -> Result<SignedArchiveManifest, String> {
    serde_json::from_slice::<Value>(bytes)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("not an archive manifest: {e}"))
}
