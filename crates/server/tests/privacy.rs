//! Privacy end to end: sensitive fields are tokenized and sealed before they are stored, so no
//! file of the data directory holds the PII; readers see tokens, `pii:reveal` sees values (and
//! is logged); erasing a subject makes its content `$erased` everywhere (also via reveal) while
//! the other subjects' content is intact and the ledger still verifies.

use agentrail_server::{AppState, ServerConfig};
use axum::http::StatusCode;
use serde_json::{Value, json};

mod common;

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let ct = [("content-type", "application/json")];
    let a = common::send(app, method, path, Some(key), &ct, body).await;
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(Value::Null),
    )
}

/// A server on a fresh data directory whose root key created tenant `acme`.
struct Acme {
    dir: tempfile::TempDir,
    state: std::sync::Arc<AppState>,
    app: axum::Router,
    root: String,
}

async fn acme(
    tune: impl FnOnce(&mut ServerConfig),
    clock: Option<std::sync::Arc<dyn agentrail_ledger::Clock>>,
) -> Acme {
    let common::TestServer {
        state,
        app,
        root,
        dir,
    } = common::open(tune, clock);
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants",
        &root,
        json!({"tenant_id": "acme"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    Acme {
        dir,
        state,
        app,
        root,
    }
}

impl Acme {
    /// A new key of `acme` with these scopes.
    async fn key(&self, scopes: &[&str]) -> String {
        let (st, v) = call(
            &self.app,
            "POST",
            "/v1/tenants/acme/keys",
            &self.root,
            json!({ "scopes": scopes }),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["key"].as_str().unwrap().to_owned()
    }
}

const ALICE_EMAIL: &str = "alice.liddell@wonderland.example";
const ALICE_CARD: &str = "4111 1111 1111 1111";
const BOB_EMAIL: &str = "bob.builder@construct.example";
const SECRET: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
/// Alice's own words: not detected as PII, so in the hot index (tokenized content) until erased.
const ALICE_PHRASE: &str = "I-live-at-the-rabbit-hole-by-the-old-oak";

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
    let env = acme(|_| {}, None).await;
    let keys = [
        env.key(&["events:write"]).await,
        env.key(&["events:read"]).await,
        env.key(&["pii:reveal"]).await,
        env.key(&["tenant:admin"]).await,
    ];
    let (w, r, reveal, admin) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let Acme {
        dir,
        state,
        app,
        root,
    } = env;
    // What a `pii:reveal` key gets for one token; erasing a subject (tenant admin).
    let reveal_one = async |token: &str| {
        let (st, v) = call(
            &app,
            "POST",
            "/v1/tenants/acme/tokens/reveal",
            reveal,
            json!({ "tokens": [token] }),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["values"][0]["value"].clone()
    };
    let erase = async |subject: &str| {
        let (st, v) = call(
            &app,
            "DELETE",
            &format!("/v1/tenants/acme/subjects/{subject}"),
            admin,
            Value::Null,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    };
    let events = json!([
        decision(
            "e-alice",
            "alice",
            &format!("my email is {ALICE_EMAIL} and card {ALICE_CARD} {ALICE_PHRASE}")
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
    // The index holds the tokenized content: searching by token finds the event.
    let (st, v) = call(
        &app,
        "GET",
        &format!("/v1/tenants/acme/events?token={email_token}"),
        r,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["events"][0]["event_id"], json!("e-alice"));
    let mut hits = Vec::new();
    files_containing(dir.path(), ALICE_PHRASE, &mut hits);
    assert!(
        hits.iter().all(|h| h.contains("index.sqlite")) && !hits.is_empty(),
        "{hits:?}"
    );

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
    assert_eq!(erase("alice").await["had_key"], json!(true));
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
    let v = reveal_one(&email_token).await;
    assert!(v["$erased"].is_object(), "{v}");
    // The token vault no longer links her tokens to her (tombstones replaced the records).
    let tokens_log = std::fs::read(dir.path().join("tenants/acme/tokens/log")).unwrap();
    let has = |needle: &str| {
        tokens_log
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(!has("\"subject_id\":\"alice\""));
    assert!(has("\"subject_id\":\"bob\""));
    assert!(has(&email_token));
    // Gone from the index too: no search by her token finds her event, and no file holds her
    // words any more (the index overwrites deleted rows and truncates its write-ahead log).
    let (_, v) = call(
        &app,
        "GET",
        &format!("/v1/tenants/acme/events?token={email_token}"),
        r,
        Value::Null,
    )
    .await;
    assert_eq!(v["events"], json!([]), "{v}");
    for needle in [ALICE_PHRASE, ALICE_EMAIL] {
        let mut hits = Vec::new();
        files_containing(dir.path(), needle, &mut hits);
        assert!(hits.is_empty(), "{needle} found in {hits:?} after erasure");
    }
    // A value two subjects mentioned: erasing one leaves the other's copy revealable.
    let shared = "shared.inbox@team.example";
    for (id, subj) in [("sh-carl", "carl"), ("sh-dana", "dana")] {
        let (st, v) = call(
            &app,
            "POST",
            "/v1/tenants/acme/events",
            w,
            decision(id, subj, &format!("cc {shared}")),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (_, v) = call(
        &app,
        "GET",
        "/v1/tenants/acme/events/sh-carl",
        r,
        Value::Null,
    )
    .await;
    let shared_token = v["event"]["payload"]["prompt"]["messages"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("cc ")
        .to_owned();
    erase("carl").await;
    let v = reveal_one(&shared_token).await;
    assert_eq!(v, json!(shared), "{v}");
    erase("dana").await;
    let v = reveal_one(&shared_token).await;
    assert!(v["$erased"].is_object(), "{v}");
    // The same value coming back with a new subject is revealable again (a new record).
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/events",
        w,
        decision(
            "e-alice-2",
            "alice-2",
            &format!("my email is {ALICE_EMAIL}"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = reveal_one(&email_token).await;
    assert_eq!(v, json!(ALICE_EMAIL), "{v}");
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
        "/v1/tenants/acme/events?event_type=custom.agentrail.subject.erased",
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

    // Rotating the tenant's data key: new content without a subject is sealed under the new
    // version, older content stays readable.
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/data-keys/rotate",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_kid = v["kid"].as_str().unwrap().to_owned();
    assert!(new_kid.starts_with("t:acme:v"), "{v}");
    let note2 = json!({"schema_version": "1", "event_id": "n2", "event_type": "custom.note",
        "payload": {"text": "after rotation", "kind": "memo"}});
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, note2).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let kid_of = async |id: &str| {
        let (_, v) = call(
            &app,
            "GET",
            &format!("/v1/tenants/acme/events/{id}?view=stored"),
            r,
            Value::Null,
        )
        .await;
        v["event"]["payload"]["text"]["$enc"]["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(kid_of("n2").await, new_kid);
    assert_ne!(kid_of("n1").await, new_kid);
    let text_of = async |id: &str| {
        let (_, v) = call(
            &app,
            "GET",
            &format!("/v1/tenants/acme/events/{id}"),
            r,
            Value::Null,
        )
        .await;
        v["event"]["payload"]["text"].as_str().unwrap().to_owned()
    };
    assert!(text_of("n1").await.starts_with("tok_emp_"));
    assert_eq!(text_of("n2").await, "after rotation");

    // Exports carry the sealed form: the erased subject stays erased in them, the other opens.
    let out = dir.path().join("export-after-erasure");
    let req = agentrail_export::ExportRequest {
        tenant: agentrail_event::TenantId::parse("acme").unwrap(),
        selection: agentrail_export::Selection::default(),
        format: agentrail_export::FileFormat::Ndjson,
        max_file_bytes: agentrail_export::DEFAULT_MAX_FILE_BYTES,
        content: None,
        checkpoint: None,
    };
    let m = agentrail_export::export(state.service.ledger(), &req, &out, |_, _| true).unwrap();
    agentrail_export::verify_export(&out, state.service.ledger().verifier()).unwrap();
    let lines = std::fs::read_to_string(out.join(&m.manifest.files[0].name)).unwrap();
    for line in lines.lines() {
        let mut ev: Value = serde_json::from_str(line).unwrap();
        let id = ev["event_id"].as_str().unwrap().to_owned();
        state
            .service
            .presenter(&agentrail_event::TenantId::parse("acme").unwrap(), true)
            .open(&mut ev);
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
    // New content after it gets new keys; the old tenant-key content stays erased (the new
    // key never takes a destroyed key's id).
    let note3 = json!({"schema_version": "1", "event_id": "n3", "event_type": "custom.note",
        "payload": {"text": "after the tenant erasure", "kind": "memo"}});
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, note3).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = call(&app, "GET", "/v1/tenants/acme/events/n3", r, Value::Null).await;
    assert_eq!(
        v["event"]["payload"]["text"],
        json!("after the tenant erasure"),
        "{v}"
    );
    for id in ["n1", "n2"] {
        let (_, v) = call(
            &app,
            "GET",
            &format!("/v1/tenants/acme/events/{id}"),
            r,
            Value::Null,
        )
        .await;
        assert!(
            v["event"]["payload"]["text"]["$erased"]["at"].is_string(),
            "{v}"
        );
    }
    state.service.shutdown();
    let verifier = agentrail_ledger::read_verifier(dir.path()).unwrap();
    let prefix = agentrail_ledger::read_origin_prefix(dir.path()).unwrap();
    let report = agentrail_ledger::verify_tenant(
        dir.path(),
        &agentrail_event::TenantId::parse("acme").unwrap(),
        &verifier,
        &prefix,
    );
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.events, 12);
}

/// Retention: with a manual clock, content older than `hot_content_days` leaves the index (no
/// search by token finds it; the event itself still reads decrypted from the ledger), rows older
/// than `retention_days` leave the index, legal hold suspends both, every run is logged in a
/// chain, and the ledger still verifies.
/// Starts an export and waits until it is no longer running; its final status.
async fn export_done(app: &axum::Router, key: &str, body: Value) -> Value {
    let (st, v) = call(app, "POST", "/v1/tenants/acme/exports", key, body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["export_id"].as_str().unwrap().to_owned();
    for _ in 0..500 {
        let (_, v) = call(
            app,
            "GET",
            &format!("/v1/tenants/acme/exports/{id}"),
            key,
            Value::Null,
        )
        .await;
        if v["status"] != "running" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("export {id} did not finish");
}

/// Column `name` of a Parquet file, by `event_id`.
fn parquet_column(bytes: Vec<u8>, name: &str) -> std::collections::HashMap<String, Option<String>> {
    use arrow_array::{Array, StringArray};
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = std::collections::HashMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .unwrap_or_else(|| panic!("no column {n}"))
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (ids, values) = (col("event_id"), col(name));
        for i in 0..batch.num_rows() {
            out.insert(
                ids.value(i).to_owned(),
                values.is_valid(i).then(|| values.value(i).to_owned()),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_exports_open_content_for_readers_and_erasure_removes_it() {
    let env = acme(|_| {}, None).await;
    let keys = [
        env.key(&["events:write"]).await,
        env.key(&["export", "events:read"]).await,
        env.key(&["export"]).await,
        env.key(&["tenant:admin"]).await,
    ];
    let (w, reader, exporter, admin) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let Acme { dir, app, .. } = env;
    let events = json!([
        decision(
            "e-alice",
            "alice",
            &format!("mail {ALICE_EMAIL} {ALICE_PHRASE}")
        ),
        decision("e-bob", "bob", "no secrets here"),
    ]);
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, events).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let download = async |key: &str, status: &Value, name: &str| {
        let id = status["export_id"].as_str().unwrap();
        common::send(
            &app,
            "GET",
            &format!("/v1/tenants/acme/exports/{id}/files/{name}"),
            Some(key),
            &[],
            Vec::new(),
        )
        .await
    };

    // A key that may read content: the content columns hold it, tokenized; `stored` stays sealed.
    let opened = export_done(&app, reader, json!({"format": "parquet"})).await;
    assert_eq!(opened["status"], "done", "{opened}");
    let name = opened["files"][0].as_str().unwrap().to_owned();
    assert!(name.starts_with("data/events-"), "{name}");
    // The listed name works as a path, and with its `/` encoded.
    let a = download(reader, &opened, &name).await;
    assert_eq!(a.status, StatusCode::OK);
    let b = download(reader, &opened, &name.replace('/', "%2F")).await;
    assert_eq!(a.body, b.body);
    let prompt = parquet_column(a.body.clone(), "prompt");
    let alice = prompt["e-alice"].as_deref().unwrap();
    assert!(
        alice.contains(ALICE_PHRASE) && alice.contains("tok_email_"),
        "{alice}"
    );
    assert!(!alice.contains(ALICE_EMAIL), "{alice}");
    assert!(
        prompt["e-bob"]
            .as_deref()
            .unwrap()
            .contains("no secrets here")
    );
    let stored = parquet_column(a.body.clone(), "stored");
    assert!(stored["e-alice"].as_deref().unwrap().contains("$enc"));
    assert!(!stored["e-alice"].as_deref().unwrap().contains(ALICE_PHRASE));
    // Not a string: JSON text.
    let output = parquet_column(a.body, "output");
    let output: Value = serde_json::from_str(output["e-alice"].as_deref().unwrap()).unwrap();
    assert!(
        output["raw"].as_str().unwrap().contains("tok_email_"),
        "{output}"
    );

    // A key without events:read, or `view=stored`: sealed content reads null.
    for (key, body) in [
        (exporter, json!({"format": "parquet"})),
        (reader, json!({"format": "parquet", "view": "stored"})),
    ] {
        let st = export_done(&app, key, body).await;
        let a = download(key, &st, st["files"][0].as_str().unwrap()).await;
        assert_eq!(parquet_column(a.body, "prompt")["e-alice"], None, "{st}");
    }
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/exports",
        exporter,
        json!({"format": "parquet", "view": "decrypted"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("events:read"),
        "{v}"
    );
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/exports",
        reader,
        json!({"format": "ndjson", "view": "decrypted"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // Erasing a subject removes what the server holds of content exports; the signed manifest
    // stays, the status says why, nothing is served.
    let (st, v) = call(
        &app,
        "DELETE",
        "/v1/tenants/acme/subjects/alice",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = opened["export_id"].as_str().unwrap();
    let (_, after) = call(
        &app,
        "GET",
        &format!("/v1/tenants/acme/exports/{id}"),
        reader,
        Value::Null,
    )
    .await;
    assert_eq!(after["status"], "erased", "{after}");
    assert!(
        after["error"].as_str().unwrap().contains("erasure"),
        "{after}"
    );
    assert_eq!(after["files"], json!([]));
    assert_eq!(
        download(reader, &opened, &name).await.status,
        StatusCode::CONFLICT
    );
    let mut hits = Vec::new();
    files_containing(dir.path(), ALICE_PHRASE, &mut hits);
    assert!(hits.is_empty(), "alice's words are still in {hits:?}");
    // A content export made after the erasure has nothing of hers.
    let again = export_done(&app, reader, json!({"format": "parquet"})).await;
    let a = download(reader, &again, again["files"][0].as_str().unwrap()).await;
    let prompt = parquet_column(a.body, "prompt");
    assert_eq!(prompt["e-alice"], None);
    assert!(prompt["e-bob"].is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_hot_content_then_rows_and_legal_hold_suspends_it() {
    const DAY_MS: i64 = 86_400_000;
    let clock = std::sync::Arc::new(agentrail_ledger::ManualClock::at("2026-01-01T00:00:00Z"));
    let env = acme(
        |c| {
            c.service.retention_interval_ms = 0;
            c.service.verify_interval_ms = 0;
        },
        Some(clock.clone()),
    )
    .await;
    let keys = [
        env.key(&["events:write"]).await,
        env.key(&["events:read"]).await,
        env.key(&["tenant:admin"]).await,
        env.key(&["verify"]).await,
    ];
    let (w, r, admin, verifier) = (&keys[0], &keys[1], &keys[2], &keys[3]);
    let app = env.app.clone();
    let now = |c: &agentrail_ledger::ManualClock| {
        agentrail_ledger::clock::format_timestamp(agentrail_ledger::Clock::now(c))
    };
    let ingest = async |id: &str, email: &str| {
        let mut ev = decision(id, "s1", &format!("write to {email}"));
        ev["occurred_at"] = json!(now(&clock));
        let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", w, ev).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (_, v) = call(
            &app,
            "GET",
            &format!("/v1/tenants/acme/events/{id}"),
            r,
            Value::Null,
        )
        .await;
        let text = v["event"]["payload"]["prompt"]["messages"][0]
            .as_str()
            .unwrap()
            .to_owned();
        text.split_whitespace().nth(2).unwrap().to_owned()
    };
    let old_token = ingest("old", "old@example.com").await;
    clock.advance_ms(60 * DAY_MS);
    let mid_token = ingest("mid", "mid@example.com").await;
    clock.advance_ms(40 * DAY_MS);
    let found = async |token: &str| {
        let (st, v) = call(
            &app,
            "GET",
            &format!("/v1/tenants/acme/events?token={token}"),
            r,
            Value::Null,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        agentrail_testkit::event_ids(&v)
    };
    assert_eq!(found(&old_token).await, vec!["old"]);
    assert_eq!(found(&mid_token).await, vec!["mid"]);
    // Tenant admins only.
    assert_eq!(
        call(
            &app,
            "POST",
            "/v1/tenants/acme/retention-runs",
            r,
            Value::Null
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // Day 100, default policy (90 hot days): the old event's content leaves the index.
    let (st, run) = call(
        &app,
        "POST",
        "/v1/tenants/acme/retention-runs",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"], json!("applied"));
    assert_eq!(run["purged"], json!({"content": 1, "events": 0}), "{run}");
    assert_eq!(
        run["content_received_before"],
        json!("2026-01-11T00:00:00.000000000Z")
    );
    assert!(found(&old_token).await.is_empty());
    assert_eq!(found(&mid_token).await, vec!["mid"]);
    // The structure stays, and the ledger's ciphertext still opens.
    let (st, v) = call(&app, "GET", "/v1/tenants/acme/events/old", r, Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["event"]["payload"]["prompt"]["messages"][0]
            .as_str()
            .unwrap()
            .starts_with("write to tok_email_"),
        "{v}"
    );

    // Legal hold: nothing is purged, whatever the days say.
    let (st, v) = call(
        &app,
        "PUT",
        "/v1/tenants/acme/policy",
        admin,
        json!({"hot_content_days": 1, "retention_days": 30, "legal_hold": true}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, run) = call(
        &app,
        "POST",
        "/v1/tenants/acme/retention-runs",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(run["outcome"], json!("skipped_legal_hold"), "{run}");
    assert_eq!(found(&mid_token).await, vec!["mid"]);

    // Hold lifted: the mid event's content goes (older than 1 day), and both rows (older than 30
    // days) leave the index; the ledger keeps them and still verifies.
    call(
        &app,
        "PUT",
        "/v1/tenants/acme/policy",
        admin,
        json!({"hot_content_days": 1, "retention_days": 30}),
    )
    .await;
    let (_, run) = call(
        &app,
        "POST",
        "/v1/tenants/acme/retention-runs",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(run["purged"], json!({"content": 1, "events": 2}), "{run}");
    assert!(found(&mid_token).await.is_empty());
    let (_, v) = call(&app, "GET", "/v1/tenants/acme/events", r, Value::Null).await;
    assert_eq!(v["events"], json!([]), "{v}");
    let (st, v) = call(
        &app,
        "POST",
        "/v1/tenants/acme/verify",
        verifier,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["report"]["result"], json!("ok"), "{v}");

    // Every run is in the tenant's chained run log.
    let (st, v) = call(
        &app,
        "GET",
        "/v1/tenants/acme/retention-runs",
        admin,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{v}");
    assert_eq!(runs[1]["prev_hash"], runs[0]["hash"]);
    assert_eq!(runs[2]["policy"]["retention_days"], json!(30));
}

/// The retention job runs by itself on its schedule, for every tenant, and logs each run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_on_its_schedule() {
    let env = acme(
        |c| {
            c.service.retention_interval_ms = 50;
            c.service.verify_interval_ms = 0;
        },
        None,
    )
    .await;
    let admin = env.key(&["tenant:admin"]).await;
    let app = env.app.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (st, v) = call(
            &app,
            "GET",
            "/v1/tenants/acme/retention-runs",
            &admin,
            Value::Null,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if let Some(run) = v["runs"].as_array().unwrap().first() {
            assert_eq!(run["trigger"], json!("schedule"), "{run}");
            assert_eq!(run["outcome"], json!("applied"), "{run}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled run");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    env.state.service.shutdown();
}

/// A ciphertext changed in the ledger (even re-framed with valid checksums, as a careful forger
/// would) changes the event's hash: the next event's `prev_hash` and the signed tree root no
/// longer match, and verification fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ciphertext_breaks_the_hash() {
    use agentrail_ledger::frame::{HEADER_LEN, RecordRead, encode_record, read_record};
    let env = acme(|c| c.service.verify_interval_ms = 0, None).await;
    let w = env.key(&["events:write"]).await;
    let Acme {
        dir, state, app, ..
    } = env;
    let evs = json!([
        decision("t1", "alice", "first"),
        decision("t2", "bob", "second")
    ]);
    let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", &w, evs).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    state.service.shutdown();
    drop(app);
    drop(state);

    let t = agentrail_event::TenantId::parse("acme").unwrap();
    let verify = || {
        agentrail_ledger::verify_tenant(
            dir.path(),
            &t,
            &agentrail_ledger::read_verifier(dir.path()).unwrap(),
            &agentrail_ledger::read_origin_prefix(dir.path()).unwrap(),
        )
    };
    assert!(verify().failure.is_none());
    let seg_dir = dir.path().join("tenants/acme/ledger");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().windows(4).any(|w| w == b"\"t1\""))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut at = HEADER_LEN;
    loop {
        let RecordRead::Record {
            seq,
            payload,
            next,
            more,
        } = read_record(&bytes, at, 0)
        else {
            panic!("no record of t1 in {}", seg.display());
        };
        let mut stored: Value = serde_json::from_slice(payload).unwrap();
        if stored["event_id"] == json!("t1") {
            let ct = stored["payload"]["prompt"]["$enc"]["ct"]
                .as_str()
                .unwrap()
                .to_owned();
            let flipped = if ct.starts_with('A') { "B" } else { "A" };
            stored["payload"]["prompt"]["$enc"]["ct"] = json!(format!("{flipped}{}", &ct[1..]));
            let forged = agentrail_event::json::to_canonical_vec(&stored).unwrap();
            assert_eq!(forged.len(), payload.len());
            let mut framed = Vec::new();
            encode_record(seq, &forged, more, &mut framed);
            bytes[at..next].copy_from_slice(&framed);
            break;
        }
        at = next;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let report = verify();
    let failure = format!("{:?}", report.failure.expect("tampering must be found"));
    assert!(failure.contains("hash"), "{failure}");
}

/// Ingest of a subject racing with its erasure: every event of the subject sequenced before the
/// erasure event reads `$erased`, every one after it reads in clear (new content, new key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasure_racing_with_ingest_leaves_nothing_readable_before_it() {
    let env = acme(
        |c| {
            c.service.verify_interval_ms = 0;
            c.service.retention_interval_ms = 0;
        },
        None,
    )
    .await;
    let key = env
        .key(&["events:write", "events:read", "tenant:admin"])
        .await;
    let app = env.app.clone();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, key) = (app.clone(), key.clone());
        writers.push(tokio::spawn(async move {
            for b in 0..15 {
                let evs: Vec<Value> = (0..10)
                    .map(|i| {
                        decision(
                            &format!("r-{w}-{b}-{i}"),
                            "racer",
                            "racer@example.com says hi",
                        )
                    })
                    .collect();
                let (st, v) = call(&app, "POST", "/v1/tenants/acme/events", &key, json!(evs)).await;
                assert_eq!(st, StatusCode::OK, "{v}");
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let (st, v) = call(
        &app,
        "DELETE",
        "/v1/tenants/acme/subjects/racer",
        &key,
        Value::Null,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let erased_at = v["receipt"]["seq"].as_u64().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let mut cursor = String::new();
    let (mut before, mut after) = (0, 0);
    loop {
        let (_, v) = call(
            &app,
            "GET",
            &format!("/v1/tenants/acme/events?event_type=model.decision&limit=1000{cursor}"),
            &key,
            Value::Null,
        )
        .await;
        let (b, a) = agentrail_testkit::check_erasure_boundary(
            v["events"].as_array().unwrap(),
            erased_at,
            "racer@",
        );
        before += b;
        after += a;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(before + after, 600);
}
