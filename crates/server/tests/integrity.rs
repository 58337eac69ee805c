//! The integrity verifier: on-demand and scheduled runs write signed reports that verify
//! offline; a ledger file tampered with while the server runs is caught by the next scheduled
//! run, which records a failing signed report and fires the webhook.

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A one-request-at-a-time HTTP listener that hands every request body to the test.
fn webhook() -> (String, mpsc::Receiver<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (url, rx)
}

mod common;

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let ct = [("content-type", "application/x-ndjson")];
    let a = common::send(app, method, path, Some(key), &ct, body).await;
    (a.status, a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_caught_by_the_next_scheduled_run() {
    let (hook, hooked) = webhook();
    let common::TestServer {
        state,
        app,
        root,
        dir,
    } = common::open(
        |c| {
            c.service.verify_interval_ms = 300;
            c.service.webhook_url = Some(hook);
        },
        None,
    );
    let (st, _) = call(
        &app,
        "POST",
        "/v1/tenants",
        &root,
        json!({"tenant_id": "acme"}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let mut keys = Vec::new();
    for scope in ["events:write", "verify"] {
        let (_, b) = call(
            &app,
            "POST",
            "/v1/tenants/acme/keys",
            &root,
            json!({"scopes": [scope]}).to_string().into_bytes(),
        )
        .await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        keys.push(v["key"].as_str().unwrap().to_owned());
    }
    let body: Vec<u8> = agentrail_testkit::Generator::new(4, "acme", 4)
        .take(300)
        .flat_map(|e| format!("{e}\n").into_bytes())
        .collect();
    let (st, _) = call(&app, "POST", "/v1/tenants/acme/events", &keys[0], body).await;
    assert_eq!(st, StatusCode::OK);

    // On demand: ok, signed, verifiable offline.
    let (st, b) = call(
        &app,
        "POST",
        "/v1/tenants/acme/verify",
        &keys[1],
        Vec::new(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let rec: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(rec["report"]["result"], json!("ok"));
    assert_eq!(rec["report"]["to_size"], json!(300));
    let key = state.service.ledger().verifier().clone();
    agentrail_service::integrity::verify_report(&rec, &key).unwrap();
    let mut forged = rec.clone();
    forged["report"]["result"] = json!("failed");
    assert!(agentrail_service::integrity::verify_report(&forged, &key).is_err());

    // Flip a byte inside a stored record while the server runs.
    let seg = dir
        .path()
        .join("tenants/acme/ledger/00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&seg, bytes).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let (_, b) = call(
            &app,
            "GET",
            "/v1/tenants/acme/integrity-reports?limit=1000",
            &keys[1],
            Vec::new(),
        )
        .await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        if let Some(f) = v["reports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["report"]["result"] == "failed")
        {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "no failing report: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["report"]["trigger"], json!("schedule"));
    assert!(
        failed["report"]["failure"]
            .as_str()
            .unwrap()
            .contains("00000000000000000000.seg"),
        "{failed}"
    );
    let failed_record = json!({"report": failed["report"], "signature": failed["signature"]});
    agentrail_service::integrity::verify_report(&failed_record, &key).unwrap();
    let posted = hooked
        .recv_timeout(Duration::from_secs(10))
        .expect("the webhook fired");
    assert!(
        posted.contains("integrity.failure") && posted.contains("acme"),
        "{posted}"
    );
    let (_, m) = call(&app, "GET", "/metrics", &keys[1], Vec::new()).await;
    assert!(String::from_utf8_lossy(&m).contains("agentrail_integrity_failing_tenants 1"));
    state.service.shutdown();
}
