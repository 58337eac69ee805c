//! The integrity verifier (DESIGN.md §7): on a schedule and on demand, per tenant, re-verify the
//! ledger files (every record, hash, chain, Merkle node, checkpoint signature and root) and check
//! that the tree is consistent with the one verified last time (so history cannot be rewritten
//! between runs, even consistently). Each run writes a signed integrity report to the system
//! ledger (`<data-dir>/system/integrity/log`, a hash-chained `ChainLog`). A failure is logged at
//! error level, counted in metrics, and POSTed to the configured webhook.
//!
//! Each report verifies offline with the log's verifier key: its `signature` is a C2SP signed
//! note `<origin>/integrity-report\nsha256 <hex of the RFC 8785 bytes of "report">\n`.

use crate::error::ServiceError;
use agentrail_event::TenantId;
use agentrail_event::hash::{from_hex, sha256, to_hex};
use agentrail_ledger::clock::format_timestamp;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::sync::lock;
use agentrail_ledger::{ChainLog, Clock, Ledger, read_origin_prefix, verify_tenant_with_progress};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The integrity verifier: a job of the service.
pub struct Integrity {
    ledger: Arc<Ledger>,
    clock: Arc<dyn Clock>,
    log: ChainLog,
    /// Report seqs per tenant, oldest first.
    by_tenant: Mutex<HashMap<String, Vec<u64>>>,
    /// Per tenant: the size and root verified last (from the reports).
    verified: Mutex<HashMap<String, (u64, String)>>,
    /// One verification per tenant at a time.
    running: Mutex<()>,
    webhook: Option<String>,
    /// The query store, whose rows are sampled against the ledger.
    indexer: Arc<crate::indexer::Indexer>,
    /// The WORM archive, which must hold what the ledger sealed.
    archive: Option<Arc<dyn agentrail_archive::ArchiveStore>>,
    failures: AtomicU64,
    failing: Mutex<std::collections::BTreeSet<String>>,
    schedule: crate::schedule::Schedule,
}

/// Why a report is what it is: `schedule` or `on_demand`.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Schedule,
    OnDemand,
}

impl Integrity {
    pub fn open(
        ledger: Arc<Ledger>,
        clock: Arc<dyn Clock>,
        webhook: Option<String>,
        indexer: Arc<crate::indexer::Indexer>,
        archive: Option<Arc<dyn agentrail_archive::ArchiveStore>>,
    ) -> Result<Integrity, ServiceError> {
        let path = DataDir::new(ledger.data_dir()).system().integrity_log();
        let log = ChainLog::open(&path)
            .map_err(|e| ServiceError::internal(format!("opening the integrity log: {e}")))?;
        let mut by_tenant: HashMap<String, Vec<u64>> = HashMap::new();
        let mut verified = HashMap::new();
        let mut from = 0;
        loop {
            let recs = log.read(from, 4096)?;
            if recs.is_empty() {
                break;
            }
            for r in &recs {
                let v = r.value();
                let rep = &v["report"];
                if let Some(t) = rep["tenant"].as_str() {
                    by_tenant.entry(t.to_owned()).or_default().push(r.seq);
                    if rep["result"] == "ok"
                        && let (Some(size), Some(root)) =
                            (rep["to_size"].as_u64(), rep["root"].as_str())
                    {
                        verified.insert(t.to_owned(), (size, root.to_owned()));
                    }
                }
            }
            from = recs.last().map_or(from, |r| r.seq + 1);
        }
        Ok(Integrity {
            ledger,
            clock,
            log,
            by_tenant: Mutex::new(by_tenant),
            verified: Mutex::new(verified),
            running: Mutex::new(()),
            webhook,
            indexer,
            archive,
            failures: AtomicU64::new(0),
            failing: Mutex::new(Default::default()),
            schedule: Default::default(),
        })
    }

    /// Verifies a tenant now and records a signed report; returns the stored record.
    pub fn run(&self, tenant: &TenantId, trigger: Trigger) -> Result<Value, ServiceError> {
        let _one = lock(&self.running);
        let ledger = &*self.ledger;
        let now = format_timestamp(self.clock.now());
        let started = Instant::now();
        let data_dir = ledger.data_dir();
        let prefix = read_origin_prefix(data_dir)
            .map_err(|e| ServiceError::internal(format!("reading the origin: {e}")))?;
        let previous = lock(&self.verified).get(tenant.as_str()).cloned();
        let r = verify_tenant_with_progress(
            data_dir,
            tenant,
            ledger.verifier(),
            &prefix,
            &agentrail_ledger::Anchors {
                trust_dir: ledger.trust_dir(),
                ..Default::default()
            },
            &mut |_, _| {},
        );
        let mut failure = r.failure.as_ref().map(|d| d.to_string());
        // The tree verified now must extend the one verified last time.
        if failure.is_none()
            && let Some((size, root)) = &previous
        {
            failure = self.extends(ledger, tenant, *size, root, r.events, &r.root);
        }
        if failure.is_none() {
            failure = self.sample_index(tenant, r.events);
        }
        // The archive holds what the ledger sealed, byte for byte.
        let archive = self
            .archive
            .as_ref()
            .map(|store| crate::archive_read::compare_sealed(&**store, ledger, tenant));
        let archive = match archive {
            None => Value::Null,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                if failure.is_none() {
                    failure = Some(format!("the archive: {e}"));
                }
                json!({"url": self.archive.as_ref().map(|a| a.url()), "result": "failed", "failure": e})
            }
        };
        let checkpoint = ledger
            .latest_checkpoint(tenant)
            .ok()
            .flatten()
            .map(|c| c.text);
        let report = json!({
            "tenant": tenant.as_str(),
            "origin": ledger.origin(tenant),
            "trigger": match trigger { Trigger::Schedule => "schedule", Trigger::OnDemand => "on_demand" },
            "from_size": previous.as_ref().map_or(0, |p| p.0),
            "to_size": r.events,
            "root": to_hex(&r.root),
            "result": if failure.is_none() { "ok" } else { "failed" },
            "failure": failure,
            "notes": r.notes,
            "checkpoint": checkpoint,
            "verified_at": &now,
            "duration_ms": started.elapsed().as_millis() as u64,
            "bytes": r.bytes,
            "archive": archive,
        });
        let digest = {
            let bytes = agentrail_event::json::to_canonical_vec(&report)
                .map_err(|e| ServiceError::internal(e.to_string()))?;
            to_hex(&sha256(&bytes))
        };
        let signature = ledger
            .sign_statement(tenant, "integrity-report", &[format!("sha256 {digest}")])
            .map_err(ServiceError::internal)?;
        let mut rec = Map::new();
        rec.insert("report".into(), report.clone());
        rec.insert("signature".into(), Value::String(signature));
        let stored = self.log.append(rec)?;
        // The tenant's next checkpoint commits its report (in the integrity log's head).
        if let Err(e) = ledger.anchor_soon(tenant) {
            tracing::warn!(%tenant, error = %e, "the integrity report is left for a later checkpoint to commit");
        }
        lock(&self.by_tenant)
            .entry(tenant.to_string())
            .or_default()
            .push(stored.seq);
        let value = stored.value();
        if report["result"] == "ok" {
            lock(&self.verified).insert(tenant.to_string(), (r.events, to_hex(&r.root)));
            lock(&self.failing).remove(tenant.as_str());
            tracing::info!(%tenant, events = r.events, "integrity verified");
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            lock(&self.failing).insert(tenant.to_string());
            tracing::error!(%tenant, failure = %report["failure"], "INTEGRITY FAILURE");
            self.notify(&value);
        }
        Ok(value)
    }

    /// `None` if the tree of `size`/`root` (verified earlier) is a prefix of the one now.
    fn extends(
        &self,
        ledger: &Ledger,
        tenant: &TenantId,
        size: u64,
        root: &str,
        now_size: u64,
        now_root: &[u8; 32],
    ) -> Option<String> {
        if now_size < size {
            return Some(format!(
                "the tree shrank from {size} events (verified earlier) to {now_size}"
            ));
        }
        let old = from_hex(root)?;
        if size == 0 {
            return None;
        }
        if size == now_size {
            return (&old != now_root)
                .then(|| format!("the root at size {size} changed since it was verified"));
        }
        match ledger.consistency_proof(tenant, size, now_size) {
            Ok(p) => agentrail_merkle::verify_consistency(size, now_size, &old, now_root, &p)
                .err()
                .map(|e| {
                    format!("the tree is not an extension of the one verified at size {size}: {e}")
                }),
            Err(e) => Some(format!("cannot prove consistency with size {size}: {e}")),
        }
    }

    /// Up to 64 index rows spread over `[0, size)` checked against the ledger: a row whose
    /// hash is not the ledger's at its seq means an edited or damaged query store. Rows not
    /// indexed (yet, or purged by retention) are skipped.
    fn sample_index(&self, tenant: &TenantId, size: u64) -> Option<String> {
        const SAMPLES: u64 = 64;
        let mut seqs: Vec<u64> = (0..SAMPLES.min(size))
            .map(|i| i * size / SAMPLES.min(size))
            .collect();
        if size > 0 {
            seqs.push(size - 1);
        }
        seqs.dedup();
        let rows = self.indexer.query(tenant, None, |ix| {
            let mut out = Vec::new();
            for &seq in &seqs {
                match ix.event_at(seq) {
                    Ok(r) => out.push((seq, r.hash)),
                    Err(agentrail_index::IndexError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        });
        let rows = match rows {
            Ok((rows, _)) => rows,
            // Rebuilding, or not openable now: the ledger verified; sample next time.
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "index rows not sampled");
                return None;
            }
        };
        for (seq, hash) in rows {
            match self.ledger.read(tenant, seq) {
                Ok(stored) if to_hex(&stored.hash) == hash => {}
                Ok(_) => {
                    return Some(format!(
                        "the query store's row at seq {seq} does not match the ledger (edited or damaged): reindex the tenant"
                    ));
                }
                Err(e) => return Some(format!("reading seq {seq}: {e}")),
            }
        }
        None
    }

    fn notify(&self, record: &Value) {
        crate::webhook::alert(self.webhook.as_deref(), "integrity.failure", record);
    }

    /// Reports of a tenant after `cursor` (a report seq), oldest first.
    pub fn reports(
        &self,
        tenant: &TenantId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ServiceError> {
        let seqs: Vec<u64> = lock(&self.by_tenant)
            .get(tenant.as_str())
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|s| after.is_none_or(|a| *s > a))
                    .take(limit + 1)
                    .collect()
            })
            .unwrap_or_default();
        let more = seqs.len() > limit;
        let mut out = Vec::new();
        for s in seqs.iter().take(limit) {
            if let Some(r) = self.log.read(*s, 1)?.first() {
                out.push(r.value());
            }
        }
        let next = more
            .then(|| seqs.get(limit.saturating_sub(1)).map(u64::to_string))
            .flatten();
        Ok((out, next))
    }

    /// Starts the scheduled verification of every tenant every `every` (a thread; it ends when
    /// the job is stopped or dropped).
    pub fn start_schedule(self: &Arc<Self>, every: Duration) {
        self.schedule.start_per_tenant(
            "integrity",
            every,
            Arc::downgrade(self),
            |j| &j.ledger,
            |j, t| j.run(t, Trigger::Schedule),
        );
    }

    /// Failing runs so far, and the tenants whose latest run failed.
    pub fn failures(&self) -> (u64, usize) {
        (
            self.failures.load(Ordering::Relaxed),
            lock(&self.failing).len(),
        )
    }

    pub fn stop(&self) {
        self.schedule.stop();
    }
}

/// Checks a stored integrity record offline with the log's verifier key; returns the report.
pub fn verify_report(record: &Value, key: &agentrail_note::Verifier) -> Result<Value, String> {
    let report = record
        .get("report")
        .ok_or("the record has no report")?
        .clone();
    let sig = record
        .get("signature")
        .and_then(Value::as_str)
        .ok_or("the record has no signature")?;
    let (note, _) =
        agentrail_note::open(sig.as_bytes(), &[key]).map_err(|e| format!("signature: {e}"))?;
    let bytes = agentrail_event::json::to_canonical_vec(&report).map_err(|e| e.to_string())?;
    let origin = report["origin"]
        .as_str()
        .ok_or("the report has no origin")?;
    let want = format!(
        "{origin}/integrity-report\nsha256 {}\n",
        to_hex(&sha256(&bytes))
    );
    if note.text != want {
        return Err("the signed statement does not match this report".into());
    }
    Ok(report)
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Integrity")
    }
}
