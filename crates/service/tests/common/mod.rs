//! Shared by the service's crate tests.
#![allow(dead_code)]

pub mod archive;

use agentrail_event::TenantId;
use agentrail_index::{EventFilter, EventRow, PageReq};
use agentrail_service::{Consistency, Principal, ReadRequest, Service, ServiceError};
use serde_json::json;

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
