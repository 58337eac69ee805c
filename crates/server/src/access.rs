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
    data_dir
        .join("tenants")
        .join(tenant.as_str())
        .join("access")
        .join("log")
}

/// The open access logs of a data directory.
#[derive(Debug)]
pub struct AccessLogs {
    data_dir: PathBuf,
    open: Mutex<HashMap<TenantId, Arc<ChainLog>>>,
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
            data_dir: data_dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn log(&self, tenant: &TenantId) -> Result<Arc<ChainLog>, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = open.get(tenant) {
            return Ok(l.clone());
        }
        let log = Arc::new(ChainLog::open(&access_log_path(&self.data_dir, tenant))?);
        if open.len() >= 1024 {
            open.retain(|_, l| Arc::strong_count(l) > 1);
        }
        open.insert(tenant.clone(), log.clone());
        Ok(log)
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
