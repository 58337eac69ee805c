//! Threat: the log itself lies — whoever holds its key file (taken with the data directory)
//! signs a second, rewritten history, and shows it to some parties while others saw the real
//! one (a split view). Every checkpoint alone verifies with the log's key.
//!
//! Defence: witnesses (C2SP tlog-witness). Here `agentrail witness` runs as its own process; the
//! server submits each checkpoint to it and serves the cosigned one. The witness cosigns only
//! trees consistent with the newest it cosigned (recorded durably), so the fork gets no
//! cosignature — before or after the witness restarts — and a client that requires one
//! (`verify-note --witness KEY --min-witnesses 1`) rejects the forged checkpoint.

mod common;

use common::{Killed, bin, text};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Starts a witness on a free port trusting `log_vkey`; the process and its URL.
fn start_witness(dir: &Path, log_vkey: &str) -> (Killed, String) {
    let mut child = bin()
        .args(["witness", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--log", log_vkey])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the witness exited").unwrap();
        if let Some((_, u)) = line.split_once("listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), url)
}

fn ingest_offline(data: &Path, events: &str) -> Output {
    let file = data.with_extension("ndjson");
    std::fs::write(&file, events).unwrap();
    bin()
        .args(["ingest", "--data-dir"])
        .arg(data)
        .args(["--tenant", "acme"])
        .arg(&file)
        .output()
        .unwrap()
}

fn reviews(decision: &str, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"schema_version":"1","event_id":"rv-{i}","event_type":"human.review","session_id":"s-refunds","payload":{{"reviewer":{{"id":"alice"}},"decision":"{decision}","presented_at":"2026-11-25T12:00:00Z","decided_at":"2026-11-25T12:00:09Z"}}}}"#
            ) + "\n"
        })
        .collect()
}

/// The latest signed checkpoint of tenant acme in `data`.
fn checkpoint_of(data: &Path) -> String {
    let o = bin()
        .args(["checkpoint", "--data-dir"])
        .arg(data)
        .args(["--tenant", "acme"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn post_checkpoint(witness: &str, body: String) -> (u16, String) {
    let mut r = common::agent()
        .post(&format!("{witness}/add-checkpoint"))
        .send(body.as_bytes())
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Polls the server until it serves a cosigned checkpoint of at least `size` events.
fn cosigned(url: &str, key: &str, size: u64) -> String {
    let started = Instant::now();
    loop {
        let mut r = common::agent()
            .get(&format!("{url}/v1/tenants/acme/checkpoint?cosigned=true"))
            .header("Authorization", &format!("Bearer {key}"))
            .call()
            .unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        if r.status().as_u16() == 200
            && body.lines().nth(1).and_then(|s| s.parse::<u64>().ok()) >= Some(size)
        {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never cosigned: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn verify_note(log: &str, witness: &str, note: &str, dir: &Path) -> Output {
    let file = dir.join(format!("note-{}.txt", note.len()));
    std::fs::write(&file, note).unwrap();
    bin()
        .args([
            "verify-note",
            "--key",
            log,
            "--witness",
            witness,
            "--min-witnesses",
            "1",
        ])
        .arg(&file)
        .output()
        .unwrap()
}

#[test]
fn a_forked_history_gets_no_cosignature_and_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = ingest_offline(&data, &reviews("reject", 0, 10));
    assert!(o.status.success(), "{}", text(&o));
    let log_vkey = std::fs::read_to_string(data.join("system/log.vkey")).unwrap();
    let log_vkey = log_vkey.trim();

    let wdir = tmp.path().join("witness");
    let (witness, wurl) = start_witness(&wdir, log_vkey);
    let wvkey = std::fs::read_to_string(wdir.join("witness.vkey")).unwrap();
    let wvkey = wvkey.trim().to_owned();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "checkpoint_interval_ms = 100\nwitness_interval_ms = 100\n[[witnesses]]\nurl = \"{wurl}\"\nkey = \"{wvkey}\"\n"
        ),
    )
    .unwrap();
    let (server, url, _) = common::spawn_server_with(&data, Some(&config), None, 0);
    let server = Killed(server);
    let reader = common::tenant_key(&url, &data, "acme", &["events:read"]);
    let writer = common::tenant_key(&url, &data, "acme", &["events:write"]);

    // The real checkpoint is cosigned and served with the cosignature; it grows with the log
    // (the second submission carries a consistency proof from the first).
    let first = cosigned(&url, &reader, 10);
    assert!(
        verify_note(log_vkey, &wvkey, &first, tmp.path())
            .status
            .success()
    );
    let (st, _) = common::call(
        &common::agent(),
        "POST",
        &format!("{url}/v1/tenants/acme/events"),
        &writer,
        Some((
            "application/x-ndjson",
            reviews("reject", 10, 5).into_bytes(),
        )),
    )
    .unwrap();
    assert_eq!(st, 200);
    let real = cosigned(&url, &reader, 15);
    let o = verify_note(log_vkey, &wvkey, &real, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cosignature by"), "{}", text(&o));
    // An export against the cosigned checkpoint carries the cosignature: `verify-export` can
    // require it; one against the latest checkpoint alone fails that requirement.
    let exporter = common::tenant_key(&url, &data, "acme", &["export"]);
    let export = |body: &str| {
        let (st, v) = common::call(
            &common::agent(),
            "POST",
            &format!("{url}/v1/tenants/acme/exports"),
            &exporter,
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .unwrap();
        assert_eq!(st, 202, "{v}");
        let id = v["export_id"].as_str().unwrap().to_owned();
        let started = Instant::now();
        loop {
            let (_, v) = common::call(
                &common::agent(),
                "GET",
                &format!("{url}/v1/tenants/acme/exports/{id}"),
                &exporter,
                None,
            )
            .unwrap();
            if v["status"] == "done" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{v}");
            std::thread::sleep(Duration::from_millis(50));
        }
        data.join("tenants/acme/exports").join(id)
    };
    let verify_export = |dir: &Path, min: &str| {
        bin()
            .arg("verify-export")
            .arg(dir)
            .args([
                "--key",
                log_vkey,
                "--witness",
                &wvkey,
                "--min-witnesses",
                min,
            ])
            .output()
            .unwrap()
    };
    let witnessed = export(r#"{"cosigned": true}"#);
    let o = verify_export(&witnessed, "1");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cosignature by"), "{}", text(&o));
    let plain = export("{}");
    let o = verify_export(&plain, "1");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("0 of the given witnesses"),
        "{}",
        text(&o)
    );
    assert!(verify_export(&plain, "0").status.success());
    drop(server);

    // The fork: approvals instead, signed with the real key (copied with the data directory).
    let fork = tmp.path().join("fork");
    std::fs::create_dir_all(&fork).unwrap();
    agentrail_testkit::copy_dir(&data.join("system"), &fork.join("system"));
    let o = ingest_offline(&fork, &reviews("approve", 0, 17));
    assert!(o.status.success(), "{}", text(&o));
    let forged = checkpoint_of(&fork);
    assert!(
        forged.starts_with("agentrail.local/tenants/acme\n17\n"),
        "{forged}"
    );
    // It verifies with the log's key alone — and fails when a cosignature is required.
    let o = verify_note(log_vkey, &wvkey, &forged, tmp.path());
    assert!(!o.status.success());
    assert!(
        text(&o).contains("0 of the given witnesses"),
        "{}",
        text(&o)
    );

    // Submitted to the witness with the fork's own consistency proof from 15: refused.
    let proof = bin()
        .args(["prove", "--data-dir"])
        .arg(&fork)
        .args(["--tenant", "acme", "--from", "15"])
        .output()
        .unwrap();
    assert!(proof.status.success(), "{}", text(&proof));
    let proof = String::from_utf8(proof.stdout).unwrap();
    let (st, body) = post_checkpoint(&wurl, format!("old 15\n{proof}\n{forged}"));
    assert_eq!(st, 422, "{body}");
    // Claiming the witness saw less: told what it holds.
    let (st, body) = post_checkpoint(&wurl, format!("old 10\n{proof}\n{forged}"));
    assert_eq!((st, body.as_str()), (409, "15\n"));
    // The same size as the real one, another root: refused.
    let fork15 = tmp.path().join("fork15");
    agentrail_testkit::copy_dir(&data.join("system"), &fork15.join("system"));
    assert!(
        ingest_offline(&fork15, &reviews("approve", 0, 15))
            .status
            .success()
    );
    let same = checkpoint_of(&fork15);
    assert!(
        same.starts_with("agentrail.local/tenants/acme\n15\n"),
        "{same}"
    );
    let (st, body) = post_checkpoint(&wurl, format!("old 15\n\n{same}"));
    assert_eq!(st, 422, "{body}");
    // After a restart the witness still holds the real tree.
    drop(witness);
    let (_witness, wurl) = start_witness(&wdir, log_vkey);
    let (st, body) = post_checkpoint(&wurl, format!("old 15\n{proof}\n{forged}"));
    assert_eq!(st, 422, "{body}");
    // A log key it does not know: 404; garbage: 400.
    let (st, _) = post_checkpoint(&wurl, "old 0\n\nother.example/log\n1\nAAAA\n\n".into());
    assert!(st == 400 || st == 404, "{st}");
    let (st, _) = post_checkpoint(&wurl, "hello".into());
    assert_eq!(st, 400);
}

/// Polls `GET …/checkpoint` until the server refuses the tenant; the refusal's text.
fn refused(url: &str, key: &str) -> String {
    let started = Instant::now();
    loop {
        let (st, v) = common::call(
            &common::agent(),
            "GET",
            &format!("{url}/v1/tenants/acme/checkpoint"),
            key,
            None,
        )
        .unwrap();
        if st >= 500 {
            return v.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never refused: {st} {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Threat: the data directory put back to an earlier state (events a witness already saw cut,
/// as a crash or a rogue operator leaves it), or replaced by a history rewritten with the real
/// key. Locally everything verifies.
///
/// Defence: the witness is asked on every round. One that cosigned a longer tree, or refuses
/// this tree as inconsistent with the one it cosigned, makes the server refuse the tenant
/// (named, no further signature), rather than sign over it.
#[test]
fn a_log_cut_or_rewritten_behind_its_witness_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let o = ingest_offline(&data, &reviews("reject", 0, 10));
    assert!(o.status.success(), "{}", text(&o));
    let early = tmp.path().join("early");
    agentrail_testkit::copy_dir(&data, &early);
    let o = ingest_offline(&data, &reviews("reject", 10, 5));
    assert!(o.status.success(), "{}", text(&o));
    let log_vkey = std::fs::read_to_string(data.join("system/log.vkey")).unwrap();
    let wdir = tmp.path().join("witness");
    let (_witness, wurl) = start_witness(&wdir, log_vkey.trim());
    let wvkey = std::fs::read_to_string(wdir.join("witness.vkey")).unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "checkpoint_interval_ms = 100\nwitness_interval_ms = 100\n[[witnesses]]\nurl = \"{wurl}\"\nkey = \"{}\"\n",
            wvkey.trim()
        ),
    )
    .unwrap();
    {
        let (server, url, _) = common::spawn_server_with(&data, Some(&config), None, 0);
        let _server = Killed(server);
        let reader = common::tenant_key(&url, &data, "acme", &["events:read"]);
        cosigned(&url, &reader, 15);
    }

    // Put back to 10 events: the witness holds 15.
    let (server, url, _) = common::spawn_server_with(&early, Some(&config), None, 0);
    let _server = Killed(server);
    let reader = common::tenant_key(&url, &early, "acme", &["events:read"]);
    let why = refused(&url, &reader);
    assert!(
        why.contains("witness") && why.contains("cosigned a tree of 15 events"),
        "{why}"
    );
    drop(_server);

    // Rewritten with the real key: 17 approvals instead of 15 rejections.
    let fork = tmp.path().join("fork");
    std::fs::create_dir_all(&fork).unwrap();
    agentrail_testkit::copy_dir(&data.join("system"), &fork.join("system"));
    let o = ingest_offline(&fork, &reviews("approve", 0, 17));
    assert!(o.status.success(), "{}", text(&o));
    let (server, url, _) = common::spawn_server_with(&fork, Some(&config), None, 0);
    let _server = Killed(server);
    let reader = common::tenant_key(&url, &fork, "acme", &["events:read"]);
    let why = refused(&url, &reader);
    assert!(why.contains("inconsistent"), "{why}");
}
