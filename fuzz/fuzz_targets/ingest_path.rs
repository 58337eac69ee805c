//! The whole ingest path on a real service (data directory in /dev/shm when there is one):
//! body bytes → batch counting and parsing → validation → tokenization and sealing → the
//! ledger. Never panics; a refused body writes nothing; an accepted one gets one receipt per
//! item, each the hash of a canonical stored event whose sensitive fields are all sealed; and
//! sending it again, when every item named its `event_id`, replays every receipt.
#![no_main]

use agentrail_event::TenantId;
use agentrail_event::batch::{BatchFormat, count_items, parse_batch};
use agentrail_event::hash::{sha256, to_hex};
use agentrail_event::json;
use agentrail_service::privacy::sensitive_paths;
use agentrail_service::{Service, ServiceConfig};
use agentrail_vault::is_sealed;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::{Arc, LazyLock};

struct Env {
    service: Arc<Service>,
    tenant: TenantId,
    _dir: tempfile::TempDir,
}

static ENV: LazyLock<Env> = LazyLock::new(|| {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let cfg = ServiceConfig {
        reserve_bytes: 0,
        ..ServiceConfig::unscheduled(dir.path().to_path_buf())
    };
    let opened = Service::open(cfg).unwrap();
    let root = opened.root().unwrap();
    let service = opened.service;
    let tenant = service.create_tenant(&root, "fuzz").unwrap().tenant_id;
    Env {
        service,
        tenant,
        _dir: dir,
    }
});

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, p| cur.get(p))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        BatchFormat::Json
    } else {
        BatchFormat::Ndjson
    };
    let env = &*ENV;
    let ledger = env.service.ledger();
    let before = ledger.size(&env.tenant).unwrap();
    let Ok(receipts) = env.service.ingest(&env.tenant, body, format) else {
        assert_eq!(ledger.size(&env.tenant).unwrap(), before, "a refused body wrote");
        return;
    };
    assert_eq!(receipts.len(), count_items(body, format));
    for r in &receipts {
        let ev = ledger.read(&env.tenant, r.seq).unwrap();
        assert_eq!(to_hex(&sha256(&ev.bytes)), r.hash);
        assert_eq!(json::canonicalize(&ev.bytes).unwrap(), ev.bytes);
        let stored: Value = serde_json::from_slice(&ev.bytes).unwrap();
        assert_eq!(stored["event_id"], r.event_id.as_str());
        let event_type = stored["event_type"].as_str().unwrap_or_default();
        for path in sensitive_paths(event_type) {
            if let Some(v) = at(&stored, path) {
                assert!(is_sealed(v), "{path} stored unsealed");
            }
        }
    }
    let all_named = parse_batch(body, format).iter().all(|item| {
        item.result
            .as_ref()
            .is_ok_and(|ev| ev.value.contains_key("event_id"))
    });
    if all_named {
        let size = ledger.size(&env.tenant).unwrap();
        let again = env.service.ingest(&env.tenant, body, format).unwrap();
        assert_eq!(ledger.size(&env.tenant).unwrap(), size);
        for (a, b) in receipts.iter().zip(&again) {
            assert!(b.replayed);
            assert_eq!((a.seq, &a.hash), (b.seq, &b.hash));
        }
    }
});
