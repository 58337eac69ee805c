//! The retention job (DESIGN.md §4): per tenant, with its policy, the sensitive content of events
//! older than `hot_content_days` leaves the query index (it can no longer be found by token), and
//! every index row of events older than `retention_days` goes too. Age is measured on
//! `received_at` (the server's clock, never decreasing along the ledger). `legal_hold` suspends
//! both. The ledger is never touched: it keeps the ciphertext, and every hash, proof and
//! checkpoint; `view=decrypted` still opens an event while its keys exist.
//!
//! Each run — scheduled (every `retention_interval_ms`) or asked for
//! (`POST /v1/tenants/{t}/retention-runs`) — is recorded in the tenant's hash-chained run log
//! `tenants/<id>/retention/log` before it is answered.

use crate::access::TenantLogs;
use crate::error::ServiceError;
use crate::indexer::Indexer;
use crate::privacy::Privacy;
use agentrail_event::TenantId;
use agentrail_index::Cutoffs;
use agentrail_ledger::clock::format_timestamp;
use agentrail_ledger::layout::{DataDir, TenantPaths};
use agentrail_ledger::sync::lock;
use agentrail_ledger::{Clock, Ledger};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DAY_NS: i128 = 86_400 * 1_000_000_000;

/// The retention run logs of a data directory (`tenants/<id>/retention/log`).
pub fn run_logs(layout: &DataDir) -> TenantLogs {
    TenantLogs::new(layout, TenantPaths::retention_log)
}

/// The retention job: a job of the service.
pub struct Retention {
    ledger: Arc<Ledger>,
    privacy: Arc<Privacy>,
    indexer: Arc<Indexer>,
    clock: Arc<dyn Clock>,
    /// The run logs (`GET …/retention-runs` pages them), shared with the index source that
    /// reads the latest cutoffs.
    logs: Arc<TenantLogs>,
    /// One run at a time.
    running: Mutex<()>,
    schedule: crate::schedule::Schedule,
}

/// Why a run happened.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Schedule,
    OnDemand,
}

fn cutoff(now: jiff::Timestamp, days: u32) -> (i64, String) {
    let ns = now.as_nanosecond() - i128::from(days) * DAY_NS;
    let ts = jiff::Timestamp::from_nanosecond(ns).unwrap_or(jiff::Timestamp::MIN);
    (i64::try_from(ns).unwrap_or(i64::MIN), format_timestamp(ts))
}

impl Retention {
    pub fn new(
        ledger: Arc<Ledger>,
        privacy: Arc<Privacy>,
        indexer: Arc<Indexer>,
        clock: Arc<dyn Clock>,
        logs: Arc<TenantLogs>,
    ) -> Retention {
        Retention {
            logs,
            ledger,
            privacy,
            indexer,
            clock,
            running: Mutex::new(()),
            schedule: Default::default(),
        }
    }

    /// Applies the tenant's policy to its index now; returns the run's record (durable).
    pub fn run(&self, tenant: &TenantId, trigger: Trigger) -> Result<Value, ServiceError> {
        let _one = lock(&self.running);
        let policy = self.privacy.policy(tenant)?;
        let now = self.clock.now();
        let trigger = match trigger {
            Trigger::Schedule => "schedule",
            Trigger::OnDemand => "on_demand",
        };
        let mut m = run_record(tenant, now, trigger, &policy);
        let drift = self.ledger.clock_watch().check(now);
        if policy.legal_hold {
            m.insert("outcome".into(), json!("skipped_legal_hold"));
            m.insert("purged".into(), json!({"content": 0, "events": 0}));
        } else if let Some(drift) = drift {
            // Cutoffs only move forward: one computed from a clock a year ahead would purge
            // the hot content of everything received minutes ago, for good.
            tracing::error!(%tenant, drift_ms = drift, "retention refused: the wall clock jumped");
            m.insert("outcome".into(), json!("skipped_clock_jump"));
            m.insert("clock_drift_ms".into(), json!(drift));
            m.insert("purged".into(), json!({"content": 0, "events": 0}));
        } else {
            let (content_ns, content_before) = cutoff(now, policy.hot_content_days);
            let (events_ns, events_before) = cutoff(now, policy.retention_days);
            let purged = self.indexer.purge(
                tenant,
                Cutoffs {
                    content_ns,
                    events_ns,
                },
            )?;
            m.insert("outcome".into(), json!("applied"));
            m.insert("content_received_before".into(), json!(content_before));
            m.insert("events_received_before".into(), json!(events_before));
            m.insert(
                "purged".into(),
                json!({"content": purged.content, "events": purged.events}),
            );
        }
        let rec = self.logs.log(tenant)?.append(m)?;
        let v = rec.value();
        tracing::info!(%tenant, outcome = %v["outcome"], purged = %v["purged"], "retention run");
        Ok(v)
    }

    /// Runs every tenant's retention every `every` (a thread; it ends when the job is stopped
    /// or dropped).
    pub fn start_schedule(self: &Arc<Self>, every: Duration) {
        self.schedule.start_per_tenant(
            "retention",
            every,
            Arc::downgrade(self),
            |j| &j.ledger,
            |j, t| j.run(t, Trigger::Schedule),
        );
    }

    /// A page of the tenant's runs, oldest first.
    pub fn runs(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ServiceError> {
        self.logs.page(tenant, cursor, limit)
    }

    pub fn stop(&self) {
        self.schedule.stop();
    }
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Retention")
    }
}

/// The fields every run record starts with: what ran, when, why, under which policy.
fn run_record(
    tenant: &TenantId,
    now: jiff::Timestamp,
    trigger: &str,
    policy: &crate::privacy::Policy,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_type".into(), json!("retention.run"));
    m.insert("tenant_id".into(), json!(tenant.as_str()));
    m.insert("at".into(), json!(format_timestamp(now)));
    m.insert("trigger".into(), json!(trigger));
    m.insert(
        "policy".into(),
        json!({
            "hot_content_days": policy.hot_content_days,
            "retention_days": policy.retention_days,
            "legal_hold": policy.legal_hold,
        }),
    );
    m
}

/// Records a run whose cutoffs are computed again from the tenant's policy and `now`, in place
/// of the earlier runs' (the one way cutoffs move back): after a run by a wrong clock was found
/// and the clock fixed, a rebuild of the index with these cutoffs restores the rows and content
/// that run purged (the ledger kept everything). An operator's act, recorded in the run log.
pub fn recompute_cutoffs(
    logs: &TenantLogs,
    layout: &DataDir,
    tenant: &TenantId,
    now: jiff::Timestamp,
) -> Result<Value, ServiceError> {
    let policy = crate::privacy::Policy::load(layout, tenant)?;
    let (content_before, events_before) = if policy.legal_hold {
        let epoch = format_timestamp(jiff::Timestamp::UNIX_EPOCH);
        (epoch.clone(), epoch)
    } else {
        (
            cutoff(now, policy.hot_content_days).1,
            cutoff(now, policy.retention_days).1,
        )
    };
    let mut m = run_record(tenant, now, "reindex", &policy);
    m.insert("outcome".into(), json!("recomputed"));
    m.insert("content_received_before".into(), json!(content_before));
    m.insert("events_received_before".into(), json!(events_before));
    let v = logs.log(tenant)?.append(m)?.value();
    tracing::warn!(%tenant, record = %v, "retention cutoffs recomputed");
    Ok(v)
}

/// The cutoffs of the tenant's latest applied run (none before the first): what an index
/// rebuilt from the ledger, or opened after an upgrade rebuilt it, must apply again.
pub fn latest_cutoffs(logs: &TenantLogs, tenant: &TenantId) -> Result<Cutoffs, ServiceError> {
    let log = logs.log(tenant)?;
    let mut end = log.records();
    while end > 0 {
        let from = end.saturating_sub(64);
        let recs = log.read(from, (end - from) as usize)?;
        for r in recs.iter().rev() {
            let v = r.value();
            let ns = |k: &str| {
                v[k].as_str()
                    .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                    .map(|t| i64::try_from(t.as_nanosecond()).unwrap_or(i64::MIN))
            };
            if let (Some(content_ns), Some(events_ns)) =
                (ns("content_received_before"), ns("events_received_before"))
            {
                return Ok(Cutoffs {
                    content_ns,
                    events_ns,
                });
            }
        }
        end = from;
    }
    Ok(Cutoffs::default())
}
