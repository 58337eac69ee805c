//! Privacy end to end: sensitive fields are tokenized and sealed before they are stored, so no
//! file of the data directory holds the PII; readers see tokens, `pii:reveal` sees values (and
//! is logged); erasing a subject makes its content `$erased` everywhere (also via reveal) while
//! the other subjects' content is intact and the ledger still verifies.

use agentrail_server::{AppState, ServerConfig, router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let st = resp.status();
    let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

const ALICE_EMAIL: &str = "alice.liddell@wonderland.example";
const ALICE_CARD: &str = "4111 1111 1111 1111";
const BOB_EMAIL: &str = "bob.builder@construct.example";
const SECRET: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";

fn decision(id: &str, subject: &str, text: &str) -> Value {
    json!({"schema_version": "1", "event_id": id, "event_type": "model.decision", "session_id": "s1",
        "agent_id": "support-bot", "subject_id": subject, "occurred_at": "2026-11-26T01:00:00Z",
        "payload": {"model": {"provider": "acme-ai", "name": "m1", "version": "1"},
            "prompt": {"system": "You are a helpful agent.", "messages": [text]},
            "output": {"raw": format!("Done for {text}")}}})
}

fn files_containing(dir: &std::path::Path, needle: &str, hits: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_containing(&p, needle, hits);
        } else {
            let b = std::fs::read(&p).unwrap();
            if b.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(p.display().to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_tokenized_revealable_and_erasable() {
    let dir = tempfile::tempdir().unwrap();
    let opened = AppState::open(ServerConfig {
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    })
    .unwrap();
    let root = opened.new_root_key.clone().unwrap();
    let state = opened.state.clone();
    let app = router(opened.state);
    assert_eq!(
        call(
            &app,
            "POST",
            "/v1/tenants",
            &root,
            json!({"tenant_id": "acme"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let mut keys = Vec::new();
    for scope in ["events:write", "events:read", "pii:reveal", "tenant:admin"] {
        let (_, v) = call(
            &app,
            "POST",
            "/v1/tenants/acme/keys",
            &root,
            json!({"scopes": [scope]}),
        )
        .await;
        keys.push(v["key"].as_str().unwrap().to_owned());
    }
    let (w, r, reveal, admin) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let events = json!([
        decision(
            "e-alice",
            "alice",
            &format!("my email is {ALICE_EMAIL} and card {ALICE_CARD}")
        ),
        decision(
            "e-bob",
            "bob",
            &format!("reach me at {BOB_EMAIL}; our key is {SECRET}")
        ),
    ]);
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, events.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A replay of the same content is recognized although sealing happened again.
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, events).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["receipts"][0]["replayed"], json!(true));

    // Reads: decrypted by default shows tokens, never the values; stored shows ciphertext.
    let (_, v) = call(
        &app,
        "GET",
        "/v1/tenants/acme/events/e-alice",
        r,
        Value::Null,
    )
    .await;
    let text = v["event"]["payload"]["prompt"]["messages"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.starts_with("my email is tok_email_") && text.contains("tok_card_"),
        "{text}"
    );
    assert_eq!(
        v["event"]["payload"]["prompt"]["system"],
        json!("You are a helpful agent.")
    );
    let (_, stored) = call(
        &app,
        "GET",
        "/v1/tenants/acme/events/e-alice?view=stored",
        r,
        Value::Null,
    )
    .await;
    assert!(stored["event"]["payload"]["prompt"]["$enc"]["ct"].is_string());
    let email_token = text.split_whitespace().nth(3).unwrap().to_owned();

    // No file anywhere holds the plaintexts.
    for needle in [ALICE_EMAIL, "4111 1111 1111 1111", BOB_EMAIL, SECRET] {
        let mut hits = Vec::new();
        files_containing(dir.path(), needle, &mut hits);
        assert!(hits.is_empty(), "{needle} found in {hits:?}");
    }

    // Reveal needs pii:reveal and is logged.
    assert_eq!(
        call(
            &app,
            "POST",
            "/v1/tenants/acme/tokens/reveal",
            r,
            json!({"tokens": [email_token]})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/tokens/reveal",
        reveal,
        json!({"tokens": [email_token, "tok_email_unknown"]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["values"][0]["value"], json!(ALICE_EMAIL));
    assert_eq!(v["values"][1]["value"], Value::Null);
    let (_, log) = call(
        &app,
        "GET",
        "/v1/tenants/acme/access-log?limit=1000",
        admin,
        Value::Null,
    )
    .await;
    assert!(log.to_string().contains("/tokens/reveal"));

    // Erase alice.
    let (st, v) = call(
        &app,
        "DELETE",
        "/v1/tenants/acme/subjects/alice",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["had_key"], json!(true));
    let (_, v) = call(
        &app,
        "GET",
        "/v1/tenants/acme/events/e-alice",
        r,
        Value::Null,
    )
    .await;
    assert!(
        v["event"]["payload"]["prompt"]["$erased"].is_object(),
        "{v}"
    );
    assert!(
        v["event"]["payload"]["output"]["$erased"].is_object(),
        "{v}"
    );
    let (_, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/tokens/reveal",
        reveal,
        json!({"tokens": [email_token]}),
    )
    .await;
    assert!(v["values"][0]["value"]["$erased"].is_object(), "{v}");
    // Bob's content is intact.
    let (_, v) = call(&app, "GET", "/v1/tenants/acme/events/e-bob", r, Value::Null).await;
    assert!(
        v["event"]["payload"]["prompt"]["messages"][0]
            .as_str()
            .unwrap()
            .contains("tok_secret_"),
        "{v}"
    );
    // The erasure is itself in the ledger, and everything still verifies.
    let (_, v) = call(
        &app,
        "GET",
        "/v1/tenants/acme/events?event_type=custom.subject.erased",
        r,
        Value::Null,
    )
    .await;
    assert_eq!(v["events"][0]["payload"]["subject_id"], json!("alice"));
    // Policy: bad ones are refused with every problem named; a good one adds a sensitive path
    // and a custom detector, and turns the email detector off.
    let (st, v) = call(&app, "PUT", "/v1/tenants/acme/policy", admin, json!({
        "sensitive_fields": {"custom.note": ["notes"]}, "detectors": {"fax": true},
        "custom_detectors": [{"name": "emp", "regex": "("}], "hot_content_days": 400, "retention_days": 30})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["details"].as_array().unwrap().len(), 4, "{v}");
    let (st, v) = call(
        &app,
        "PUT",
        "/v1/tenants/acme/policy",
        admin,
        json!({
        "sensitive_fields": {"custom.note": ["payload.text"]}, "detectors": {"email": false},
        "custom_detectors": [{"name": "emp", "regex": "EMP-[0-9]{6}"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["hot_content_days"], json!(90));
    let note = json!({"schema_version": "1", "event_id": "n1", "event_type": "custom.note",
        "payload": {"text": "EMP-004211 wrote to carol@example.org", "kind": "memo"}});
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, note).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, stored) = call(
        &app,
        "GET",
        "/v1/tenants/acme/events/n1?view=stored",
        r,
        Value::Null,
    )
    .await;
    assert!(
        stored["event"]["payload"]["text"]["$enc"].is_object(),
        "{stored}"
    );
    assert_eq!(stored["event"]["payload"]["kind"], json!("memo"));
    let (_, v) = call(&app, "GET", "/v1/tenants/acme/events/n1", r, Value::Null).await;
    let text = v["event"]["payload"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("tok_emp_") && text.ends_with("carol@example.org"),
        "{text}"
    );

    // Exports carry the sealed form: the erased subject stays erased in them, the other opens.
    let out = dir.path().join("export-after-erasure");
    let req = agentrail_export::ExportRequest {
        tenant: agentrail_event::TenantId::parse("acme").unwrap(),
        selection: agentrail_export::Selection::default(),
        format: agentrail_export::FileFormat::Ndjson,
        max_file_bytes: agentrail_export::DEFAULT_MAX_FILE_BYTES,
    };
    let m = agentrail_export::export(&state.ledger, &req, &out, |_, _| true).unwrap();
    agentrail_export::verify_export(&out, state.ledger.verifier()).unwrap();
    let lines = std::fs::read_to_string(out.join(&m.manifest.files[0].name)).unwrap();
    for line in lines.lines() {
        let mut ev: Value = serde_json::from_str(line).unwrap();
        let id = ev["event_id"].as_str().unwrap().to_owned();
        state.privacy.open_event("acme", &mut ev);
        match id.as_str() {
            "e-alice" => assert!(ev["payload"]["prompt"]["$erased"].is_object(), "{ev}"),
            "e-bob" => assert!(ev["payload"]["prompt"]["messages"][0].is_string(), "{ev}"),
            _ => {}
        }
    }
    // The whole tenant (root only): everything reads erased, the ledger still verifies.
    assert_eq!(
        call(
            &app,
            "DELETE",
            "/v1/tenants/acme/content",
            admin,
            Value::Null
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (st, v) = call(
        &app,
        "DELETE",
        "/v1/tenants/acme/content",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = call(&app, "GET", "/v1/tenants/acme/events/e-bob", r, Value::Null).await;
    assert!(
        v["event"]["payload"]["prompt"]["$erased"].is_object(),
        "{v}"
    );
    state.shutdown();
    let verifier = agentrail_ledger::read_verifier(dir.path()).unwrap();
    let prefix = agentrail_ledger::read_origin_prefix(dir.path()).unwrap();
    let report = agentrail_ledger::verify_tenant(
        dir.path(),
        &agentrail_event::TenantId::parse("acme").unwrap(),
        &verifier,
        &prefix,
    );
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.events, 5);
}
