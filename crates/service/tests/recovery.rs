//! Recovery without an operator: a damaged index rebuilds itself while ingest goes on, and a
//! full disk pauses ingest (reads still served) until space is back, without a restart.

mod common;

use agentrail_event::TenantId;
use agentrail_event::batch::BatchFormat;
use agentrail_index::{EventFilter, PageReq};
use agentrail_service::{Principal, Scope, Service, ServiceConfig, ServiceError};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Env {
    service: Arc<Service>,
    tenants: Vec<TenantId>,
    key: String,
}

fn config(data: &Path) -> ServiceConfig {
    ServiceConfig {
        reserve_bytes: 1 << 20,
        heal_after_ms: 200,
        query_wait_ms: 2_000,
        ..ServiceConfig::unscheduled(data.to_path_buf())
    }
}

/// A service with tenants `names` and one key holding every scope of the first.
fn env(cfg: ServiceConfig, names: &[&str]) -> Env {
    env_with_clock(cfg, Arc::new(agentrail_ledger::SystemClock), names)
}

fn env_with_clock(
    cfg: ServiceConfig,
    clock: Arc<dyn agentrail_ledger::Clock>,
    names: &[&str],
) -> Env {
    let opened = Service::open_with_clock(cfg, clock).unwrap();
    let root = opened.root().unwrap();
    let service = opened.service;
    let tenants: Vec<TenantId> = names
        .iter()
        .map(|n| service.create_tenant(&root, n).unwrap().tenant_id)
        .collect();
    let (_, key) = service
        .create_key(&root, &tenants[0], None, &Scope::ALL)
        .unwrap();
    Env {
        service,
        tenants,
        key,
    }
}

fn reopen(cfg: ServiceConfig, old: Env) -> Env {
    let Env {
        service,
        tenants,
        key,
    } = old;
    service.shutdown();
    drop(service);
    let service = Service::open(cfg).unwrap().service;
    Env {
        service,
        tenants,
        key,
    }
}

fn event(batch: u64, i: u64) -> Value {
    json!({"schema_version": "1", "event_id": format!("b{batch}-{i}"), "event_type": "tool.invocation",
        "session_id": format!("s{}", batch % 7), "agent_id": "bot", "occurred_at": "2026-11-26T01:00:00Z",
        "payload": {"tool": {"name": "lookup"}, "status": {"outcome": "ok"},
            "output": "x".repeat(300)}})
}

fn batch(b: u64, n: u64) -> Vec<u8> {
    let items: Vec<Value> = (0..n).map(|i| event(b, i)).collect();
    serde_json::to_vec(&items).unwrap()
}

impl Env {
    fn principal(&self) -> Principal {
        self.service.authenticate(&self.key).unwrap()
    }

    /// Sets the first tenant's retention (and hot-content days, when given).
    fn retention(&self, hot_days: Option<u32>, days: u32) {
        let t = &self.tenants[0];
        let mut policy = self.service.policy(t).unwrap();
        if let Some(h) = hot_days {
            policy.hot_content_days = h;
        }
        policy.retention_days = days;
        self.service
            .set_policy(&self.principal(), t, policy)
            .unwrap();
    }

    /// Ingests batches `bs` of 100 events each into the first tenant.
    fn batches(&self, bs: std::ops::Range<u64>) {
        for b in bs {
            self.service
                .ingest(&self.tenants[0], &batch(b, 100), BatchFormat::Json)
                .unwrap();
        }
    }

    /// Every event of the first tenant as (seq, hash, event_id), or the service's refusal.
    fn list(&self) -> Result<Vec<(u64, String, String)>, ServiceError> {
        let req = common::request(self.principal(), &self.tenants[0]);
        let rows = common::all_events(&self.service, &req, &EventFilter::default())?;
        Ok(rows
            .into_iter()
            .map(|r| (r.seq, r.hash, r.event_id))
            .collect())
    }
}

fn index_file(data: &Path, tenant: &str) -> PathBuf {
    data.join("tenants").join(tenant).join("index/index.sqlite")
}

fn metric(service: &Service, name: &str) -> f64 {
    let text = service.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[test]
fn a_damaged_index_is_rebuilt_while_ingest_goes_on() {
    type Damage = fn(&Path);
    let kinds: [(&str, Damage); 3] = [
        ("flipped header", |p| {
            let mut b = std::fs::read(p).unwrap();
            b[3] ^= 0x20;
            std::fs::write(p, b).unwrap();
        }),
        ("damaged pages", |p| {
            let mut b = std::fs::read(p).unwrap();
            let (from, to) = (b.len() / 3, 2 * b.len() / 3);
            b[from..to].fill(0xAB);
            std::fs::write(p, b).unwrap();
        }),
        ("truncated file", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }),
    ];
    for (what, damage) in kinds {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let e = env(cfg.clone(), &["acme"]);
        for b in 0..20 {
            e.service
                .ingest(&e.tenants[0], &batch(b, 100), BatchFormat::Json)
                .unwrap();
        }
        let before = e.list().unwrap();
        assert_eq!(before.len(), 2000);
        let e = {
            let Env {
                service,
                tenants,
                key,
            } = e;
            service.shutdown();
            drop(service);
            damage(&index_file(dir.path(), "acme"));
            Env {
                service: Service::open(cfg.clone()).unwrap().service,
                tenants,
                key,
            }
        };
        // Ingest is not held up by the damage: the ledger is the truth.
        e.service
            .ingest(&e.tenants[0], &batch(100, 50), BatchFormat::Json)
            .unwrap_or_else(|err| panic!("{what}: ingest refused: {err}"));
        // Queries answer 503 index_rebuilding (or, once rebuilt, the same answers as before).
        let deadline = Instant::now() + Duration::from_secs(60);
        let after = loop {
            match e.list() {
                Ok(rows) if rows.len() == 2050 => break rows,
                Ok(rows) => panic!("{what}: {} rows", rows.len()),
                Err(ServiceError::Unavailable { code, .. })
                    if code == "index_rebuilding" || code == "index_behind" =>
                {
                    assert!(Instant::now() < deadline, "{what}: never rebuilt");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => panic!("{what}: {err:?}"),
            }
        };
        assert_eq!(after[..2000], before[..], "{what}: answers changed");
        assert!(
            dir.path()
                .join("tenants/acme/index/index.sqlite.damaged")
                .exists(),
            "{what}: the damaged file is kept aside"
        );
        assert!(metric(&e.service, "agentrail_recovery_actions") >= 1.0);
        assert!(e.service.readiness().is_empty(), "{what}");
        e.service.shutdown();
    }
}

/// A small ext4 volume mounted from a file, removed on drop. `None` when this process may not
/// mount (not root): the test then says so, unless AGENTRAIL_REQUIRE_MOUNT is set (as `.ci/run`
/// does), where it fails.
struct Volume {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Volume {
    fn new(mb: u64) -> Option<Volume> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mb << 20)
            .unwrap();
        let ok = |c: &mut std::process::Command| c.output().is_ok_and(|o| o.status.success());
        let made = ok(std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img))
            && ok(std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt));
        if !made {
            assert!(
                std::env::var_os("AGENTRAIL_REQUIRE_MOUNT").is_none(),
                "cannot mount a loop ext4 volume (needs root, mkfs.ext4 and a loop device)"
            );
            eprintln!("skipped: cannot mount a loop ext4 volume here (needs root)");
            return None;
        }
        Some(Volume { dir, mnt })
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
        let _ = &self.dir;
    }
}

#[test]
fn a_full_disk_pauses_ingest_and_recovers_without_restart() {
    full_disk(4 << 20);
}

/// Without a reserve, writes really fail (ENOSPC at write or fsync): the tenant's writer is
/// poisoned, heals once space is back; reads fail closed (503) rather than unrecorded.
#[test]
fn a_full_disk_without_a_reserve_heals_too() {
    full_disk(0);
}

fn full_disk(reserve: u64) {
    let Some(vol) = Volume::new(48) else { return };
    let data = vol.mnt.join("data");
    let mut cfg = config(&data);
    cfg.reserve_bytes = reserve;
    let e = env(cfg.clone(), &["acme", "globex"]);
    // Fill the disk with acme's events; `filler` is what the operator frees later.
    let filler = vol.mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 12 << 20]).unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut refused: Vec<(u64, String)> = Vec::new();
    let mut b = 0u64;
    while refused.len() < 3 && b < 100_000 {
        match e
            .service
            .ingest(&e.tenants[0], &batch(b, 200), BatchFormat::Json)
        {
            Ok(_) => acked.push(b),
            Err(ServiceError::Unavailable { code, .. }) => refused.push((b, code.into())),
            Err(err) => panic!("batch {b}: a full disk must answer 503, got {err:?}"),
        }
        b += 1;
    }
    assert!(acked.len() > 10, "{} batches acknowledged", acked.len());
    eprintln!("reserve {reserve}: refused {refused:?}");
    if reserve > 0 {
        assert!(
            refused.iter().any(|(_, c)| c == "storage_full"),
            "{refused:?}"
        );
        // Reads of acknowledged events are still served (and recorded in the access log).
        let rows = e.list().unwrap();
        assert_eq!(rows.len(), acked.len() * 200);
        let problems = e.service.readiness();
        assert!(
            problems.iter().any(|p| p["check"] == "storage"),
            "{problems:?}"
        );
        assert_eq!(metric(&e.service, "agentrail_storage_full"), 1.0);
    } else {
        match e.list() {
            Ok(rows) => assert_eq!(rows.len(), acked.len() * 200),
            Err(ServiceError::Unavailable { .. }) => {}
            Err(err) => panic!("a read on a full disk must be served or 503: {err:?}"),
        }
        assert!(!e.service.readiness().is_empty());
    }
    // The other tenant is refused too while the guard says full (the disk is shared), but its
    // writer is never poisoned by acme's failure.
    match e
        .service
        .ingest(&e.tenants[1], &batch(1_000_000, 10), BatchFormat::Json)
    {
        Err(ServiceError::Unavailable {
            code: "storage_full",
            ..
        }) => {}
        // Without a reserve: whatever the disk says at that moment, as a 503 or a success.
        Err(ServiceError::Unavailable { .. }) | Ok(_) if reserve == 0 => {}
        other => panic!("{other:?}"),
    }
    assert!(
        !e.service
            .readiness()
            .iter()
            .any(|p| p["tenant"] == "globex")
    );
    // Space freed: ingest resumes without a restart, into both tenants.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let mut next = b;
    loop {
        match e
            .service
            .ingest(&e.tenants[0], &batch(next, 200), BatchFormat::Json)
        {
            Ok(_) => {
                acked.push(next);
                break;
            }
            Err(ServiceError::Unavailable { .. }) => {
                assert!(freed.elapsed() < Duration::from_secs(30), "never resumed");
                refused.push((next, "after free".into()));
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("{err:?}"),
        }
        next += 1;
    }
    eprintln!(
        "ingest resumed {} ms after space was freed",
        freed.elapsed().as_millis()
    );
    e.service
        .ingest(&e.tenants[1], &batch(1_000_001, 10), BatchFormat::Json)
        .unwrap();
    assert!(
        e.service.readiness().is_empty(),
        "{:?}",
        e.service.readiness()
    );
    // After a restart: every acknowledged batch is whole, no refused batch left anything.
    let e = reopen(cfg, e);
    let rows = e.list().unwrap();
    let mut per_batch = std::collections::BTreeMap::<u64, Vec<u64>>::new();
    for (seq, _, id) in &rows {
        let b: u64 = id[1..id.find('-').unwrap()].parse().unwrap();
        per_batch.entry(b).or_default().push(*seq);
    }
    for b in &acked {
        let seqs = per_batch.get(b).unwrap_or_else(|| panic!("batch {b} lost"));
        assert_eq!(seqs.len(), 200, "batch {b}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "batch {b} not contiguous"
        );
    }
    for (b, _) in &refused {
        assert!(
            per_batch.get(b).is_none_or(|s| s.len() == 200),
            "batch {b} partly stored"
        );
    }
    drop(e);
    let report = agentrail_ledger::verify_tenant(
        &data,
        &TenantId::parse("acme").unwrap(),
        &agentrail_ledger::read_verifier(&data).unwrap(),
        &agentrail_ledger::read_origin_prefix(&data).unwrap(),
    );
    assert!(report.failure.is_none(), "{:?}", report.failure);
}

/// The system clock moved by an offset a test sets: a wall clock that can jump.
#[derive(Debug, Default)]
struct JumpingClock(std::sync::atomic::AtomicI64);

impl agentrail_ledger::Clock for JumpingClock {
    fn now(&self) -> jiff::Timestamp {
        let off = self.0.load(std::sync::atomic::Ordering::SeqCst);
        jiff::Timestamp::now() + jiff::SignedDuration::from_millis(off)
    }
    fn follows_real_time(&self) -> bool {
        true
    }
}

#[test]
fn a_jumped_clock_purges_nothing_and_loses_no_index_rows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(JumpingClock::default());
    let e = env_with_clock(config(dir.path()), clock.clone(), &["acme"]);
    let t = e.tenants[0].clone();
    e.retention(Some(30), 365);
    e.batches(0..5);
    // The wall clock jumps a year ahead (a bad NTP step, a restored VM snapshot).
    clock
        .0
        .store(366 * 86_400_000, std::sync::atomic::Ordering::SeqCst);
    e.service
        .ingest(&t, &batch(5, 100), BatchFormat::Json)
        .unwrap();
    let run = e.service.run_retention(&t).unwrap();
    assert_eq!(run["outcome"], json!("skipped_clock_jump"), "{run}");
    assert_eq!(run["purged"], json!({"content": 0, "events": 0}));
    assert_eq!(e.list().unwrap().len(), 600, "no index row lost");
    assert!(metric(&e.service, "agentrail_clock_jumps") >= 1.0);
    assert!(
        e.service.readiness().iter().any(|p| p["check"] == "clock"),
        "{:?}",
        e.service.readiness()
    );
    // The clock comes back: retention runs again, and purges nothing received recently.
    clock.0.store(0, std::sync::atomic::Ordering::SeqCst);
    let run = e.service.run_retention(&t).unwrap();
    assert_eq!(run["outcome"], json!("applied"), "{run}");
    assert_eq!(run["purged"], json!({"content": 0, "events": 0}));
    assert_eq!(e.list().unwrap().len(), 600);
    assert!(
        e.service.readiness().is_empty(),
        "{:?}",
        e.service.readiness()
    );
    // And after a rebuild of the index (the cutoffs it re-applies are the runs' own).
    let before = e.list().unwrap();
    let e = reopen(config(dir.path()), e);
    std::fs::remove_file(index_file(dir.path(), "acme")).unwrap();
    assert_eq!(e.list().unwrap(), before);
}

#[test]
fn a_purge_by_a_wrong_clock_is_undone_by_a_reindex_that_recomputes_cutoffs() {
    let dir = tempfile::tempdir().unwrap();
    // A clock that is not watched (moved by hand), so a run by a wrong time does happen.
    let clock = Arc::new(agentrail_ledger::ManualClock::at("2026-12-01T00:00:00Z"));
    let e = env_with_clock(config(dir.path()), clock.clone(), &["acme"]);
    let t = e.tenants[0].clone();
    e.retention(None, 365);
    e.batches(0..3);
    assert_eq!(e.list().unwrap().len(), 300);
    clock.advance_ms(3 * 365 * 86_400_000);
    let run = e.service.run_retention(&t).unwrap();
    assert_eq!(run["purged"]["events"], json!(300), "{run}");
    assert!(e.list().unwrap().is_empty());
    let Env { service, .. } = e;
    service.shutdown();
    drop(service);
    // A plain rebuild keeps the wrong cutoffs (cutoffs never move back on their own).
    let mut lc = agentrail_ledger::Config::new(dir.path());
    lc.checkpoint_interval = None;
    let ledger = agentrail_ledger::Ledger::open(lc).unwrap();
    let store = agentrail_index::SqliteStore::new(dir.path());
    assert_eq!(
        agentrail_service::reindex(&ledger, &store, &t, None, &mut |_, _| {})
            .unwrap()
            .applied(),
        300
    );
    let rows = |ix: &agentrail_index::TenantIndex| {
        ix.events(
            &EventFilter::default(),
            &PageReq {
                cursor: None,
                limit: 1000,
            },
        )
        .unwrap()
        .items
        .len()
    };
    assert_eq!(
        rows(&agentrail_service::reindex(&ledger, &store, &t, None, &mut |_, _| {}).unwrap()),
        0
    );
    // With the clock right again, recomputing them restores every row.
    let now: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
    let ix = agentrail_service::reindex(&ledger, &store, &t, Some(now), &mut |_, _| {}).unwrap();
    assert_eq!(rows(&ix), 300);
    drop(ix);
    drop(ledger);
    let service = Service::open_with_clock(config(dir.path()), clock)
        .unwrap()
        .service;
    let runs = service.retention_runs(&t, None, 10).unwrap().0;
    assert_eq!(runs.last().unwrap()["outcome"], json!("recomputed"));
    service.shutdown();
}

/// The token records of a tenant's vault as (token, event_id), read from the file (destroyed
/// ones, tombstones, left out).
fn token_records(data: &Path, tenant: &str) -> Vec<(String, Option<String>)> {
    let log = agentrail_ledger::ChainLog::open_redactable(
        &data.join("tenants").join(tenant).join("tokens/log"),
    )
    .unwrap();
    log.read(0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|r| !r.is_tombstone())
        .map(|r| {
            let v = r.value();
            (
                v["token"].as_str().unwrap().to_owned(),
                v["event_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn a_refused_batch_leaves_no_token_values_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let e = env(cfg.clone(), &["acme"]);
    let t = e.tenants[0].clone();
    let decision = |id: &str, text: &str| {
        json!({"schema_version": "1", "event_id": id, "event_type": "model.decision", "session_id": "s1",
            "subject_id": "alice", "payload": {"model": {"provider": "p", "name": "m", "version": "1"},
            "prompt": {"messages": [text]}, "output": {"raw": "ok"}}})
    };
    let send = |e: &Env, evs: &[Value]| {
        e.service
            .ingest(&t, &serde_json::to_vec(evs).unwrap(), BatchFormat::Json)
    };
    send(&e, &[decision("d1", "hello")]).unwrap();
    let conflict = |second: Value, first_text: &str| {
        let refused = send(&e, &[decision("d2", first_text), second]);
        assert!(
            matches!(refused, Err(ServiceError::Conflict { .. })),
            "{refused:?}"
        );
    };
    // A conflict with the ledger is found before anything is sealed: nothing is kept.
    conflict(
        decision("d1", "changed"),
        "write to early.value@example.com",
    );
    assert_eq!(token_records(dir.path(), "acme"), vec![]);
    // A batch the ledger refuses (d2 twice with different content) after its values were kept.
    conflict(
        decision("d2", "changed"),
        "write to refused.value@example.com",
    );
    let orphans = token_records(dir.path(), "acme");
    assert_eq!(
        orphans.len(),
        1,
        "the value was made durable before the append"
    );
    let token = orphans[0].0.clone();
    // Not revealable, and not reused by the next batch naming the same value.
    let req = common::request(e.principal(), &t);
    assert_eq!(
        e.service
            .reveal(req.clone(), std::slice::from_ref(&token))
            .unwrap()[0]
            .1,
        None
    );
    send(&e, &[decision("d3", "again refused.value@example.com")]).unwrap();
    let v = e.service.reveal(req, std::slice::from_ref(&token)).unwrap();
    assert_eq!(v[0].1, Some(json!("refused.value@example.com")));
    assert_eq!(token_records(dir.path(), "acme").len(), 2);
    // On the next start, the refused batch's record is dropped; the kept one stays.
    let e = reopen(cfg, e);
    let req = common::request(e.principal(), &t);
    assert_eq!(
        e.service.reveal(req, std::slice::from_ref(&token)).unwrap()[0].1,
        Some(json!("refused.value@example.com"))
    );
    let left = token_records(dir.path(), "acme");
    assert_eq!(left, vec![(token, Some("d3".to_owned()))]);
    assert!(metric(&e.service, "agentrail_recovery_actions") >= 1.0);
    e.service.shutdown();
}
