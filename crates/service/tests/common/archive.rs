//! Shared by the archive tests: a service archiving to a file archive, events, and what the
//! tests do to the archive.

use agentrail_archive::{ArchiveStore, FileArchive};
use agentrail_event::TenantId;
use agentrail_service::{Principal, ReadRequest, Service, ServiceConfig};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A service on `data` archiving to files in `archive`.
pub fn config(data: &Path, archive: &Path) -> ServiceConfig {
    ServiceConfig {
        archive: Some(format!("file://{}", archive.display())),
        // The schedule's rounds (every 10 s here) stay out of the way: the tests archive on
        // demand, which seals whatever the active segment holds.
        archive_interval_ms: 3_600_000,
        ..ServiceConfig::unscheduled(data.to_path_buf())
    }
}

/// `n` tool invocations from `e-<from>` on, as NDJSON.
pub fn events(from: u64, n: u64) -> Vec<u8> {
    (from..from + n)
        .map(|i| {
            json!({"schema_version": "1", "event_id": format!("e-{i}"), "event_type": "tool.invocation",
                "session_id": format!("s{}", i % 3), "agent_id": "bot",
                "payload": {"tool": {"name": "lookup"}, "status": {"outcome": "ok"}}})
            .to_string()
                + "\n"
        })
        .collect::<String>()
        .into_bytes()
}

/// A fresh service archiving tenant `acme`, in a temporary directory.
pub struct Acme {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub archive: PathBuf,
    pub service: std::sync::Arc<Service>,
    pub root: Principal,
    pub tenant: TenantId,
}

pub fn acme() -> Acme {
    let dir = tempfile::tempdir().unwrap();
    let (data, archive) = (dir.path().join("data"), dir.path().join("archive"));
    let opened = Service::open(config(&data, &archive)).unwrap();
    let root = opened.root().unwrap();
    let service = opened.service;
    let tenant = service.create_tenant(&root, "acme").unwrap().tenant_id;
    Acme {
        dir,
        data,
        archive,
        service,
        root,
        tenant,
    }
}

/// Reads a page of the tenant's access log as `caller` (itself recorded in the access log).
pub fn read_access_log(s: &Service, caller: &Principal, tenant: &TenantId, params: Value) {
    let req = ReadRequest {
        caller: caller.clone(),
        tenant: tenant.clone(),
        endpoint: "GET /v1/tenants/{tenant}/access-log".into(),
        params,
    };
    s.access_log(req, None, 10).unwrap();
}

/// The keys of tenant acme's archive that contain `what` ("" for all), sorted.
pub fn keys(store: &FileArchive, what: &str) -> Vec<String> {
    let mut k: Vec<String> = store
        .list("acme/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains(what))
        .collect();
    k.sort();
    k
}

/// Rewrites an archived file (a file archive's objects are 0444; whoever owns the directory
/// can still change them, which is what verify-archive must catch).
pub fn rewrite(archive: &Path, key: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let p = archive.join(key);
    let mut b = std::fs::read(&p).unwrap();
    edit(&mut b);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&p, &b).unwrap();
}
