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
use crate::error::ApiError;
use crate::state::AppState;
use agentrail_event::TenantId;
use agentrail_index::Cutoffs;
use agentrail_ledger::clock::format_timestamp;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::{Mutex, Weak};
use std::time::Duration;

const DAY_NS: i128 = 86_400 * 1_000_000_000;

/// The retention job of a server.
#[derive(Debug)]
pub struct Retention {
    /// The run logs (`GET …/retention-runs` pages them).
    pub logs: TenantLogs,
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
    pub fn new(data_dir: &Path) -> Retention {
        Retention {
            logs: TenantLogs::new(data_dir, "retention"),
            running: Mutex::new(()),
            schedule: Default::default(),
        }
    }

    /// Applies the tenant's policy to its index now; returns the run's record (durable).
    pub fn run(
        &self,
        s: &AppState,
        tenant: &TenantId,
        trigger: Trigger,
    ) -> Result<Value, ApiError> {
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let policy = s.privacy.policy(tenant)?;
        let now = s.clock.now();
        let mut m = Map::new();
        m.insert("event_type".into(), json!("retention.run"));
        m.insert("tenant_id".into(), json!(tenant.as_str()));
        m.insert("at".into(), json!(format_timestamp(now)));
        m.insert(
            "trigger".into(),
            json!(match trigger {
                Trigger::Schedule => "schedule",
                Trigger::OnDemand => "on_demand",
            }),
        );
        m.insert(
            "policy".into(),
            json!({
                "hot_content_days": policy.hot_content_days,
                "retention_days": policy.retention_days,
                "legal_hold": policy.legal_hold,
            }),
        );
        if policy.legal_hold {
            m.insert("outcome".into(), json!("skipped_legal_hold"));
            m.insert("purged".into(), json!({"content": 0, "events": 0}));
        } else {
            let (content_ns, content_before) = cutoff(now, policy.hot_content_days);
            let (events_ns, events_before) = cutoff(now, policy.retention_days);
            let purged = s.indexer.purge(
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

    /// The cutoffs of the tenant's latest applied run (none before the first): what an index
    /// rebuilt from the ledger, or opened after an upgrade rebuilt it, must apply again.
    pub fn cutoffs(&self, tenant: &TenantId) -> Result<Cutoffs, ApiError> {
        let log = self.logs.log(tenant)?;
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

    /// Runs every tenant's retention every `every`.
    pub fn start_schedule(&self, state: Weak<AppState>, every: Duration) {
        self.schedule.start("retention", every, move |stopped| {
            let Some(s) = state.upgrade() else {
                return false;
            };
            let Ok(tenants) = s.ledger.tenants() else {
                return true;
            };
            for t in tenants {
                if stopped() {
                    return false;
                }
                if let Err(e) = s.retention.run(&s, &t, Trigger::Schedule) {
                    tracing::error!(tenant = %t, error = %e.message, "scheduled retention run failed");
                }
            }
            true
        });
    }

    pub fn stop(&self) {
        self.schedule.stop();
    }
}
