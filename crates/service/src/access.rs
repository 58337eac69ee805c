//! The tenant's access log (DESIGN.md §5): every read of audit data appends an `audit.access`
//! record — who, which key, what, with which parameters, how many results, when — to a
//! hash-chained log at `<data-dir>/tenants/<id>/access/log`, durably, before the answer is sent.

use crate::error::ServiceError;
use crate::keys::Principal;
use agentrail_event::TenantId;
use agentrail_ledger::layout::{DataDir, TenantPaths};
use agentrail_ledger::sync::HandleCache;
use agentrail_ledger::{ChainLog, ChainRecord};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;

/// One kind of per-tenant chain log (the access log, the retention runs), opened on first use
/// and kept open while used.
#[derive(Debug)]
pub struct TenantLogs {
    layout: DataDir,
    path: fn(&TenantPaths) -> PathBuf,
    open: HandleCache<TenantId, ChainLog>,
}

impl TenantLogs {
    /// The logs at `path` of each tenant's files (e.g. `TenantPaths::access_log`).
    pub fn new(layout: &DataDir, path: fn(&TenantPaths) -> PathBuf) -> TenantLogs {
        TenantLogs {
            layout: layout.clone(),
            path,
            open: HandleCache::new(1024),
        }
    }

    /// Keeps at most about `n` logs open (each holds one file).
    pub fn limit_open(&self, n: usize) {
        self.open.set_capacity(n);
    }

    /// Logs open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn log(&self, tenant: &TenantId) -> Result<Arc<ChainLog>, ServiceError> {
        self.open.get_or_try_insert(tenant, || {
            Ok(ChainLog::open(&(self.path)(&self.layout.tenant(tenant)))?)
        })
    }

    /// A page of a tenant's records, oldest first, after the record `cursor` names (a seq);
    /// the cursor of the next page when there is one.
    pub fn page(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ServiceError> {
        let from = match cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| ServiceError::bad_request(format!("cursor {c:?} is not one of ours")))?
                .saturating_add(1),
        };
        let log = self.log(tenant)?;
        let recs = log.read(from, limit)?;
        let next = (recs.len() == limit && from + (limit as u64) < log.records())
            .then(|| recs.last().map(|r| r.seq.to_string()))
            .flatten();
        Ok((recs.iter().map(|r| r.value()).collect(), next))
    }
}

/// The open access logs of a data directory.
#[derive(Debug)]
pub struct AccessLogs {
    pub logs: Arc<TenantLogs>,
}

/// Numbers a canonical (RFC 8785) record cannot hold exactly become strings.
fn json_safe(v: Value) -> Value {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    match v {
        Value::Number(n) => {
            let exact = n.as_u64().is_some_and(|x| x <= MAX_SAFE)
                || n.as_i64().is_some_and(|x| x.unsigned_abs() <= MAX_SAFE)
                || (n.is_f64() && n.as_f64().is_some_and(f64::is_finite));
            if exact {
                Value::Number(n)
            } else {
                Value::String(n.to_string())
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(json_safe).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, json_safe(v))).collect()),
        other => other,
    }
}

/// One read to record.
#[derive(Debug)]
pub struct Access<'a> {
    pub principal: &'a Principal,
    /// `GET /v1/tenants/{tenant}/sessions/{session_id}`: the method and route template.
    pub endpoint: &'a str,
    /// What was asked: path and query parameters.
    pub params: Value,
    pub result_count: u64,
}

impl AccessLogs {
    pub fn new(layout: &DataDir) -> AccessLogs {
        AccessLogs {
            logs: Arc::new(TenantLogs::new(layout, TenantPaths::access_log)),
        }
    }

    pub fn logs(&self) -> &Arc<TenantLogs> {
        &self.logs
    }

    /// Appends the record of one read; returns once it is durable.
    pub fn record(
        &self,
        tenant: &TenantId,
        at: &str,
        a: Access<'_>,
    ) -> Result<ChainRecord, ServiceError> {
        let mut m = Map::new();
        m.insert("event_type".into(), json!("audit.access"));
        m.insert("tenant_id".into(), json!(tenant.as_str()));
        m.insert("at".into(), json!(at));
        m.insert(
            "who".into(),
            json!({
                "key_id": a.principal.key_id,
                "key_name": a.principal.name,
                "root": a.principal.is_root(),
            }),
        );
        m.insert("endpoint".into(), json!(a.endpoint));
        m.insert("params".into(), json_safe(a.params));
        m.insert("result_count".into(), json!(a.result_count));
        Ok(self.logs.log(tenant)?.append(m)?)
    }
}
