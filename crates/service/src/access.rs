//! The tenant's access log (DESIGN.md §5): every read of audit data appends an `audit.access`
//! record — who, which key, what, with which parameters, how many results, when — to a
//! hash-chained log at `<data-dir>/tenants/<id>/access/log`, durably, before the answer is sent.

use crate::error::ApiError;
use crate::keys::Principal;
use agentrail_event::TenantId;
use agentrail_ledger::{ChainLog, ChainRecord};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where a tenant's access log lives.
pub fn access_log_path(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    TenantLogs::path(data_dir, tenant, "access")
}

/// One kind of per-tenant chain log (`<data-dir>/tenants/<id>/<kind>/log`), opened on first use
/// and kept open while used.
#[derive(Debug)]
pub struct TenantLogs {
    data_dir: PathBuf,
    kind: &'static str,
    open: Mutex<HashMap<TenantId, Arc<ChainLog>>>,
}

impl TenantLogs {
    pub fn new(data_dir: &Path, kind: &'static str) -> TenantLogs {
        TenantLogs {
            data_dir: data_dir.to_path_buf(),
            kind,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn path(data_dir: &Path, tenant: &TenantId, kind: &str) -> PathBuf {
        data_dir
            .join("tenants")
            .join(tenant.as_str())
            .join(kind)
            .join("log")
    }

    pub fn log(&self, tenant: &TenantId) -> Result<Arc<ChainLog>, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = open.get(tenant) {
            return Ok(l.clone());
        }
        let path = TenantLogs::path(&self.data_dir, tenant, self.kind);
        let log = Arc::new(ChainLog::open(&path)?);
        if open.len() >= 1024 {
            open.retain(|_, l| Arc::strong_count(l) > 1);
        }
        open.insert(tenant.clone(), log.clone());
        Ok(log)
    }

    /// A page of a tenant's records, oldest first, after the record `cursor` names (a seq);
    /// the cursor of the next page when there is one.
    pub fn page(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        let from = match cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("cursor {c:?} is not one of ours")))?
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
    pub logs: TenantLogs,
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
    pub fn new(data_dir: &Path) -> AccessLogs {
        AccessLogs {
            logs: TenantLogs::new(data_dir, "access"),
        }
    }

    pub fn log(&self, tenant: &TenantId) -> Result<Arc<ChainLog>, ApiError> {
        self.logs.log(tenant)
    }

    /// Appends the record of one read; returns once it is durable.
    pub fn record(
        &self,
        tenant: &TenantId,
        at: &str,
        a: Access<'_>,
    ) -> Result<ChainRecord, ApiError> {
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
        Ok(self.log(tenant)?.append(m)?)
    }
}
