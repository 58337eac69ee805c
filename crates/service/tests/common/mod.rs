//! Shared by the service's crate tests.
#![allow(dead_code)]

pub mod archive;

use agentrail_event::TenantId;
use agentrail_event::batch::BatchFormat;
use agentrail_index::{EventFilter, EventRow, PageReq};
use agentrail_service::{
    Consistency, Principal, ReadRequest, Scope, Service, ServiceConfig, ServiceError,
};
use serde_json::{Value, json};
use std::sync::Arc;

/// A service on a fresh data directory with tenant `acme` and a principal holding every scope.
pub struct Env {
    pub service: Arc<Service>,
    pub tenant: TenantId,
    pub admin: Principal,
    pub _dir: tempfile::TempDir,
}

/// [`Env`] with the configuration changed by `config` first.
pub fn env_with(config: impl FnOnce(&mut ServiceConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServiceConfig::unscheduled(dir.path().to_path_buf());
    config(&mut cfg);
    let opened = Service::open(cfg).unwrap();
    let root = opened.root().unwrap();
    let service = opened.service;
    let info = service.create_tenant(&root, "acme").unwrap();
    let (_, key) = service
        .create_key(&root, &info.tenant_id, None, &Scope::ALL)
        .unwrap();
    let admin = service.authenticate(&key).unwrap();
    Env {
        service,
        tenant: info.tenant_id,
        admin,
        _dir: dir,
    }
}

impl Env {
    /// Ingests `events` as one JSON array into the tenant.
    pub fn ingest(&self, events: &[Value]) -> Result<Vec<agentrail_ledger::Receipt>, ServiceError> {
        let body = serde_json::to_vec(events).unwrap();
        self.service.ingest(&self.tenant, &body, BatchFormat::Json)
    }
}

/// A read request of `tenant` by `caller`, as the tests make them.
pub fn request(caller: Principal, tenant: &TenantId) -> ReadRequest {
    ReadRequest {
        caller,
        tenant: tenant.clone(),
        endpoint: "test".into(),
        params: json!({}),
    }
}

/// Every event of the request's tenant that `filter` selects, page by page (read your writes).
pub fn all_events(
    service: &Service,
    req: &ReadRequest,
    filter: &EventFilter,
) -> Result<Vec<EventRow>, ServiceError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = PageReq {
            cursor: cursor.clone(),
            limit: 1000,
        };
        let (p, _) = service.read(req.clone(), Consistency::Latest, |ix| {
            let p = ix.events(filter, &page)?;
            let n = p.items.len() as u64;
            Ok((p, n))
        })?;
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}
