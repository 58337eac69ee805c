//! Any number of tenants under a small file limit: 10,000 tenants (AGENTRAIL_MANY_TENANTS) with
//! `RLIMIT_NOFILE` lowered to 1,024 for this test process. Every tenant is created, takes a
//! batch and answers a query, before and after a restart; open files stay inside the budget.
//! (Its own test binary: the limit applies to the whole process.)

use agentrail_event::batch::BatchFormat;
use agentrail_index::{EventFilter, PageReq};
use agentrail_service::{Consistency, ReadRequest, Scope, Service, ServiceConfig};
use serde_json::json;
use std::time::Instant;

#[test]
fn ten_thousand_tenants_under_a_limit_of_1024_files() {
    let n: usize = std::env::var("AGENTRAIL_MANY_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let limit = rustix::process::Rlimit {
        current: Some(1024),
        maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    assert_eq!(agentrail_service::budget::file_limit(), Some(1024));

    let dir = tempfile::tempdir().unwrap();
    let cfg = ServiceConfig {
        reserve_bytes: 1 << 20,
        ..ServiceConfig::unscheduled(dir.path().to_path_buf())
    };
    let opened = Service::open(cfg.clone()).unwrap();
    let root = opened.root().unwrap();
    let service = opened.service;
    let started = Instant::now();
    let mut peak_files = 0;
    for i in 0..n {
        let t = service
            .create_tenant(&root, &format!("t{i:05}"))
            .unwrap()
            .tenant_id;
        let events: Vec<_> = (0..3)
            .map(|k| {
                json!({"schema_version": "1", "event_id": format!("e{k}"), "event_type": "tool.invocation",
                    "session_id": "s", "agent_id": "bot",
                    "payload": {"tool": {"name": "lookup"}, "status": {"outcome": "ok"}}})
            })
            .collect();
        service
            .ingest(&t, &serde_json::to_vec(&events).unwrap(), BatchFormat::Json)
            .unwrap_or_else(|e| panic!("tenant {i}: {e}"));
        if i % 500 == 0 {
            peak_files = peak_files.max(agentrail_service::budget::open_files().unwrap());
        }
    }
    let files = agentrail_service::budget::open_files().unwrap();
    eprintln!(
        "{n} tenants created and ingested in {:.1} s; open files {files} (peak sampled {peak_files}), RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        agentrail_testkit::bench::proc_status_mib("VmRSS")
    );
    assert!(peak_files.max(files) < 1024);

    // Queries (with their access records) on tenants spread over the range.
    let query = |service: &Service, i: usize| {
        let t = agentrail_event::TenantId::parse(&format!("t{i:05}")).unwrap();
        let (_, key) = service
            .create_key(&root, &t, None, &[Scope::EventsRead])
            .unwrap();
        let req = ReadRequest {
            caller: service.authenticate(&key).unwrap(),
            tenant: t,
            endpoint: "test".into(),
            params: json!({}),
        };
        let (rows, _) = service
            .read(req, Consistency::Latest, |ix| {
                let page = PageReq {
                    cursor: None,
                    limit: 100,
                };
                let p = ix.events(&EventFilter::default(), &page)?;
                let n = p.items.len() as u64;
                Ok((p.items.len(), n))
            })
            .unwrap_or_else(|e| panic!("tenant {i}: {e}"));
        assert_eq!(rows, 3, "tenant {i}");
    };
    for i in (0..n).step_by((n / 50).max(1)) {
        query(&service, i);
    }
    service.shutdown();
    drop(service);

    // After a restart every tenant still opens.
    let service = Service::open(cfg).unwrap().service;
    for i in (0..n).step_by((n / 200).max(1)) {
        let t = agentrail_event::TenantId::parse(&format!("t{i:05}")).unwrap();
        assert_eq!(service.ledger().size(&t).unwrap(), 3, "tenant {i}");
    }
    for i in (n / 3..n).step_by((n / 20).max(1)) {
        query(&service, i);
    }
    let files = agentrail_service::budget::open_files().unwrap();
    eprintln!(
        "after restart: open files {files}, RSS {:.0} MiB",
        agentrail_testkit::bench::proc_status_mib("VmRSS")
    );
    assert!(files < 1024);
    let text = service.metrics_text();
    assert!(text.contains("agentrail_open_files_budget 768"), "{text}");
    service.shutdown();
}
