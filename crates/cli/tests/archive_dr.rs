//! Disaster recovery and faults with a real S3 API server (moto's server mode, with Object
//! Lock) and real `agentrail` processes:
//!
//! - a server archives to S3; its data directory is deleted; `agentrail restore` rebuilds it
//!   from the archive; the server starts on it: every archived event byte for byte, proofs
//!   against the archived checkpoints, and the log goes on consistently (`verify-archive` over
//!   the old and the new objects together checks every checkpoint against the next);
//! - S3 unreachable during ingest (a proxy in front of it refusing connections): ingest goes
//!   on, the archive lag rises, uploads resume when S3 is back;
//! - the server killed (SIGKILL) while it archives: the restarted one resumes, the manifests
//!   verify, and no object was ever written twice (one version per key: nothing was replaced).

mod common;

use agentrail_archive::ArchiveStore;
use agentrail_ledger::{Config, DataDir, Ledger};
use agentrail_service::archiver::manifest_end;
use agentrail_testkit::s3::Server;
use common::{Killed, agent, call, run, spawn_server_env, stdout, tenant_key};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CREDS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// A TCP proxy in front of the S3 server that can refuse connections (S3 unreachable).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, o) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                o.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, open }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// S3 unreachable: new connections are closed at once, open ones are cut.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn write_config(dir: &Path, endpoint: &str, interval_ms: u64) -> std::path::PathBuf {
    let p = dir.join("agentrail.toml");
    std::fs::write(
        &p,
        format!(
            "archive = \"s3://worm/dr\"\narchive_endpoint = \"{endpoint}\"\narchive_region = \"us-east-1\"\narchive_interval_ms = {interval_ms}\ncheckpoint_interval_ms = 100\n"
        ),
    )
    .unwrap();
    p
}

fn store(endpoint: &str) -> agentrail_s3::S3Archive {
    agentrail_s3::S3Archive::open(&agentrail_s3::S3Config {
        url: "s3://worm/dr".into(),
        endpoint: Some(endpoint.into()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        session_token: None,
    })
    .unwrap()
}

/// The events tenant acme's archive holds (the newest manifest's end).
fn archived(s: &dyn ArchiveStore) -> u64 {
    s.list("acme/")
        .unwrap()
        .iter()
        .filter_map(|o| manifest_end(&o.key))
        .max()
        .unwrap_or(0)
}

fn wait_archived(s: &dyn ArchiveStore, n: u64, within: Duration) {
    let start = Instant::now();
    while archived(s) < n {
        assert!(
            start.elapsed() < within,
            "the archive holds {} events, not {n}, after {within:?}",
            archived(s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn batch(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .map(|i| {
            json!({"schema_version": "1", "event_id": format!("e-{i}"), "event_type": "tool.invocation",
                "session_id": format!("s{}", i % 7), "agent_id": "bot",
                "payload": {"tool": {"name": "lookup", "arguments": {"q": "x".repeat(600)}},
                "status": {"outcome": "ok"}}})
            .to_string()
                + "\n"
        })
        .collect::<String>()
        .into_bytes()
}

fn ingest(url: &str, key: &str, from: usize, n: usize) {
    let (st, v) = call(
        &agent(),
        "POST",
        &format!("{url}/v1/tenants/acme/events"),
        key,
        Some(("application/x-ndjson", batch(from, n))),
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
}

fn metric(url: &str, name: &str) -> f64 {
    let mut r = agent().get(format!("{url}/metrics")).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn stop(child: &mut Killed, log: &Path) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let st = child.0.wait().unwrap();
    assert!(
        st.success(),
        "{st}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// `agentrail verify-archive URL --tenant acme --key KEY [more]` with the S3 credentials.
fn verify_archive(url: &str, key: &str, more: &[&str]) -> std::process::Output {
    common::bin()
        .args(["verify-archive", url, "--tenant", "acme", "--key", key])
        .args(more)
        .envs(CREDS)
        .output()
        .unwrap()
}

/// [`verify_archive`] passed, with `events` events.
fn verifies(o: &std::process::Output, events: u64) {
    assert!(o.status.success(), "{}", common::text(o));
    let want = format!("ok: tenant acme, {events} events");
    assert!(stdout(o).starts_with(&want), "{}", stdout(o));
}

fn verifier(data: &Path) -> String {
    std::fs::read_to_string(DataDir::new(data).system().log_vkey())
        .unwrap()
        .trim()
        .to_owned()
}

/// Every object version in the bucket, as (key, ETag), through the S3 API.
fn versions(endpoint: &str) -> Vec<(String, String)> {
    let mut r = agent()
        .get(format!("{endpoint}/worm?versions&prefix=dr/"))
        .call()
        .unwrap();
    let xml = r.body_mut().read_to_string().unwrap();
    let tag = |s: &str, t: &str| -> String {
        let a = s
            .find(&format!("<{t}>"))
            .map(|i| i + t.len() + 2)
            .unwrap_or(0);
        let b = s[a..].find(&format!("</{t}>")).map_or(a, |i| a + i);
        s[a..b].to_owned()
    };
    xml.split("<Version>")
        .skip(1)
        .map(|v| (tag(v, "Key"), tag(v, "ETag")))
        .collect()
}

#[test]
fn restore_after_losing_the_data_directory() {
    let s3 = Server::start();
    s3.create_bucket("worm", true);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &s3.endpoint(), 300);
    let log = dir.path().join("server.log");
    let (child, url, _) = spawn_server_env(&data, Some(&config), Some(&log), 0, &CREDS);
    let mut child = Killed(child);
    let key = tenant_key(&url, &data, "acme", &["events:write", "events:read"]);
    ingest(&url, &key, 0, 100);
    // A read before the loss: its access-log record is archived with the next round.
    let (st, v) = call(
        &agent(),
        "GET",
        &format!("{url}/v1/tenants/acme/events/e-7"),
        &key,
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
    std::thread::sleep(Duration::from_millis(500));
    for i in 1..6 {
        ingest(&url, &key, i * 100, 100);
    }
    let archive = store(&s3.endpoint());
    wait_archived(&archive, 600, Duration::from_secs(60));
    stop(&mut child, &log);
    let vkey = verifier(&data);
    let log_key = dir.path().join("log.key.backup");
    std::fs::copy(DataDir::new(&data).system().log_key(), &log_key).unwrap();
    let t = agentrail_event::TenantId::parse("acme").unwrap();
    let original: Vec<Vec<u8>> = {
        let mut cfg = Config::new(&data);
        cfg.checkpoint_interval = None;
        let l = Ledger::open(cfg).unwrap();
        (0..600).map(|s| l.read(&t, s).unwrap().bytes).collect()
    };
    // Object Lock retention on every archived segment: COMPLIANCE until its newest event's
    // received_at plus the tenant's retention_days (the default policy's 2555), as S3 reports it.
    let mut locked = 0;
    for o in archive.list("acme/").unwrap() {
        let Some((first, end)) = o
            .key
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
        else {
            continue;
        };
        assert!(first < end);
        let last: serde_json::Value = serde_json::from_slice(&original[end - 1]).unwrap();
        let received: jiff::Timestamp = last["received_at"].as_str().unwrap().parse().unwrap();
        let want = received
            .checked_add(jiff::SignedDuration::from_hours(24 * 2555))
            .unwrap();
        let got: jiff::Timestamp = archive
            .retention(&o.key)
            .unwrap()
            .unwrap_or_else(|| panic!("{} has no COMPLIANCE retention", o.key))
            .parse()
            .unwrap();
        assert!(
            (got.as_second() - want.as_second()).abs() <= 1,
            "{}: retained until {got}, the policy says {want}",
            o.key
        );
        locked += 1;
    }
    assert!(locked >= 1, "{locked} segments");
    // The archived checkpoints, as an auditor kept them.
    let checkpoints: Vec<(u64, agentrail_merkle::Hash)> = archive
        .list("acme/")
        .unwrap()
        .iter()
        .filter(|o| o.key.contains("/checkpoint-"))
        .map(|o| {
            let text = archive.get(&o.key).unwrap().unwrap();
            let v: agentrail_note::Verifier = vkey.parse().unwrap();
            let (c, _) = agentrail_note::open_checkpoint(&text, &v, &[]).unwrap();
            (c.size, c.root)
        })
        .filter(|c| c.0 <= 600)
        .collect();
    assert!(!checkpoints.is_empty());

    // The disk is lost.
    std::fs::remove_dir_all(&data).unwrap();
    let endpoint = s3.endpoint();
    let s3_args = ["--endpoint", endpoint.as_str(), "--region", "us-east-1"];
    verifies(&verify_archive("s3://worm/dr", &vkey, &s3_args), 600);
    let mut args = vec!["restore", "s3://worm/dr"];
    args.extend(s3_args);
    args.extend([
        "--data-dir",
        data.to_str().unwrap(),
        "--log-key",
        log_key.to_str().unwrap(),
    ]);
    let o = common::bin().args(&args).envs(CREDS).output().unwrap();
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(stdout(&o).contains("acme: 600 events"), "{}", stdout(&o));
    // Again: refused, the target is not empty.
    let o = common::bin().args(&args).envs(CREDS).output().unwrap();
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("not empty"),
        "{}",
        common::text(&o)
    );

    // The server on the restored directory: the log goes on, and is archived on.
    let (child, url, _) = spawn_server_env(&data, Some(&config), None, 0, &CREDS);
    let mut child = Killed(child);
    let key = tenant_key(
        &url,
        &data,
        "acme",
        &["events:write", "events:read", "tenant:admin"],
    );
    let (st, v) = call(
        &agent(),
        "GET",
        &format!("{url}/v1/tenants/acme/events/e-42"),
        &key,
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
    // Who read what before the loss came back with the archive.
    let (st, v) = call(
        &agent(),
        "GET",
        &format!("{url}/v1/tenants/acme/access-log?limit=100"),
        &key,
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
    assert!(v.to_string().contains("e-7"), "{v}");
    ingest(&url, &key, 600, 100);
    wait_archived(&archive, 700, Duration::from_secs(60));
    stop(&mut child, Path::new("/nonexistent"));
    // The old objects and the new ones verify as one archive: every checkpoint, the archived
    // ones before the loss and the ones signed after the restore, consistent with the next.
    verifies(&verify_archive("s3://worm/dr", &vkey, &s3_args), 700);

    let mut cfg = Config::new(&data);
    cfg.checkpoint_interval = None;
    let l = Ledger::open(cfg).unwrap();
    for (seq, want) in original.iter().enumerate() {
        assert_eq!(&l.read(&t, seq as u64).unwrap().bytes, want, "seq {seq}");
    }
    let size = l.size(&t).unwrap();
    let now = l.root_at(&t, size).unwrap();
    for &(csize, root) in &checkpoints {
        for seq in [0, csize / 2, csize.saturating_sub(1)] {
            if seq < csize {
                let proof = l.inclusion_proof(&t, seq, csize).unwrap();
                agentrail_merkle::verify_inclusion(
                    seq,
                    csize,
                    &agentrail_merkle::leaf_hash(&original[seq as usize]),
                    &proof,
                    &root,
                )
                .unwrap();
            }
        }
        let proof = l.consistency_proof(&t, csize, size).unwrap();
        agentrail_merkle::verify_consistency(csize, size, &root, &now, &proof).unwrap();
    }
    let _ = run;
}

#[test]
fn s3_unreachable_then_back_and_a_server_killed_while_archiving() {
    let s3 = Server::start();
    s3.create_bucket("worm", true);
    let proxy = Proxy::start(&s3.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), &proxy.endpoint(), 200);
    let (child, url, _) = spawn_server_env(&data, Some(&config), None, 0, &CREDS);
    let mut child = Killed(child);
    let key = tenant_key(&url, &data, "acme", &["events:write", "events:read"]);
    let archive = store(&s3.endpoint());
    ingest(&url, &key, 0, 100);
    wait_archived(&archive, 100, Duration::from_secs(60));

    // S3 unreachable: ingest goes on, the lag grows, errors are counted.
    proxy.down();
    for i in 1..5 {
        ingest(&url, &key, i * 100, 100);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(archived(&archive), 100);
    // (The gauge is set every round, backing off or not: a round is due every 50 ms here.)
    let start = Instant::now();
    while metric(&url, "agentrail_archive_lag_events") < 400.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lag does not rise"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(&url, "agentrail_archive_upload_errors") >= 1.0);
    // Back: the archive catches up (the back-off is at most a few seconds here).
    proxy.resume();
    wait_archived(&archive, 500, Duration::from_secs(60));

    // Killed while archiving: events keep coming, the server dies mid-round.
    for i in 5..15 {
        ingest(&url, &key, i * 100, 100);
        std::thread::sleep(Duration::from_millis(60));
    }
    let behind = archived(&archive);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let (child, _url, _) = spawn_server_env(&data, Some(&config), None, 0, &CREDS);
    let mut child = Killed(child);
    wait_archived(&archive, 1500, Duration::from_secs(60));
    stop(&mut child, Path::new("/nonexistent"));
    eprintln!("killed with {behind} of 1500 events archived");

    // One version per key: nothing was ever replaced or written twice with other bytes.
    let vs = versions(&s3.endpoint());
    assert!(vs.len() > 10, "{vs:?}");
    let mut keys: Vec<&String> = vs.iter().map(|v| &v.0).collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key with more than one version: {vs:?}");
    // And the archive verifies, manifests chained across the crash.
    let o = verify_archive(
        "s3://worm/dr",
        &verifier(&data),
        &["--endpoint", &s3.endpoint()],
    );
    verifies(&o, 1500);
}

#[test]
fn verify_archive_exits_1_naming_a_tampered_object() {
    let dir = tempfile::tempdir().unwrap();
    let (data, archive_dir) = (dir.path().join("data"), dir.path().join("archive"));
    let config = dir.path().join("agentrail.toml");
    std::fs::write(
        &config,
        format!(
            "archive = \"file://{}\"\narchive_interval_ms = 200\n",
            archive_dir.display()
        ),
    )
    .unwrap();
    let (child, url, _) = spawn_server_env(&data, Some(&config), None, 0, &[]);
    let mut child = Killed(child);
    let key = tenant_key(&url, &data, "acme", &["events:write"]);
    ingest(&url, &key, 0, 50);
    let archive = agentrail_archive::FileArchive::new(&archive_dir);
    wait_archived(&archive, 50, Duration::from_secs(60));
    stop(&mut child, Path::new("/nonexistent"));
    let vkey = verifier(&data);
    let url = format!("file://{}", archive_dir.display());
    let verify = || verify_archive(&url, &vkey, &[]);
    verifies(&verify(), 50);
    let seg = archive
        .list("acme/")
        .unwrap()
        .into_iter()
        .find(|o| o.key.contains("/segment-"))
        .unwrap()
        .key;
    let p = archive_dir.join(&seg);
    let mut b = std::fs::read(&p).unwrap();
    b[500] ^= 1;
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&p, &b).unwrap();
    let o = verify();
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&seg) && out.contains("(seq 0)") && out.contains("altered"),
        "{out}"
    );
}
