//! The ingest and erasure protocols on the service itself, without HTTP: what every intake path
//! (HTTP today, OTLP, Kafka and cluster nodes later) relies on when it calls `Service::ingest`.

mod common;

use agentrail_event::TenantId;
use agentrail_event::batch::BatchFormat;
use agentrail_index::EventFilter;
use agentrail_service::{Scope, Service, ServiceConfig, ServiceError};
use serde_json::{Value, json};

use common::{Env, env_with};

/// A service on a fresh data directory with tenant `acme` and a principal holding every scope.
fn env() -> Env {
    env_with(|_| {})
}

fn decision(id: &str, subject: &str, text: &str) -> Value {
    json!({"schema_version": "1", "event_id": id, "event_type": "model.decision", "session_id": "s1",
        "agent_id": "bot", "subject_id": subject, "occurred_at": "2026-11-26T01:00:00Z",
        "payload": {"model": {"provider": "p", "name": "m1", "version": "1"},
            "prompt": {"messages": [text]}, "output": {"raw": "ok"}}})
}

impl Env {
    /// Every model decision as served decrypted, by seq.
    fn decisions(&self) -> Vec<(u64, Value)> {
        let req = common::request(self.admin.clone(), &self.tenant);
        let pv = self.service.presenter(&self.tenant, true);
        let filter = EventFilter {
            event_type: Some("model.decision".into()),
            ..Default::default()
        };
        common::all_events(&self.service, &req, &filter)
            .unwrap()
            .iter()
            .map(|r| (r.seq, pv.one(r).unwrap()))
            .collect()
    }

    fn size(&self) -> u64 {
        self.service.ledger().size(&self.tenant).unwrap()
    }

    /// Whether ingesting `events` is refused as an id conflict.
    fn conflicts(&self, events: &[Value]) -> bool {
        matches!(self.ingest(events), Err(ServiceError::Conflict { .. }))
    }

    fn erase(&self, subject: &str) {
        self.service
            .erase_subject(&self.admin, &self.tenant, subject)
            .unwrap();
    }
}

#[test]
fn a_rejected_batch_appends_nothing() {
    let env = env();
    env.ingest(&[decision("ok-1", "alice", "hello")]).unwrap();
    let before = env.size();
    // One bad event among good ones: the whole batch is refused, every problem named.
    let mut bad = decision("bad-1", "alice", "x");
    bad["payload"]
        .as_object_mut()
        .unwrap()
        .remove("model")
        .unwrap();
    let batch = [
        decision("ok-2", "alice", "a"),
        bad,
        decision("ok-3", "bob", "b"),
    ];
    match env.ingest(&batch) {
        Err(ServiceError::InvalidEvents { details, .. }) => {
            assert!(
                details.iter().any(|d| d["index"] == 1),
                "the problem names the item: {details:?}"
            );
        }
        other => panic!("expected InvalidEvents, got {other:?}"),
    }
    // An event id reused for other content: refused as a conflict, nothing of the batch lands.
    let conflict = [
        decision("ok-4", "alice", "new"),
        decision("ok-1", "alice", "changed"),
    ];
    match env.ingest(&conflict) {
        // It names the event id, not the stored event's seq (a write-only key may not know it).
        Err(ServiceError::Conflict { message, details }) => {
            assert_eq!(details, vec![json!({"index": 1, "event_id": "ok-1"})]);
            assert!(!message.contains("seq"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Not a batch at all.
    assert!(
        env.service
            .ingest(&env.tenant, b"{not json", BatchFormat::Json)
            .is_err()
    );
    assert_eq!(env.size(), before, "a rejected batch appended events");
    let ids: Vec<String> = env
        .decisions()
        .into_iter()
        .map(|(_, e)| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["ok-1"]);
    // The same good events are taken afterwards, and a replay returns the same receipts.
    let first = env.ingest(&[decision("ok-2", "alice", "a")]).unwrap();
    let again = env.ingest(&[decision("ok-2", "alice", "a")]).unwrap();
    assert_eq!(first[0].seq, again[0].seq);
    assert!(again[0].replayed);
}

#[test]
fn ingest_for_a_tenant_that_does_not_exist_is_refused_and_creates_nothing() {
    let env = env();
    let nosuch = TenantId::parse("nosuch").unwrap();
    let body = serde_json::to_vec(&[decision("x-1", "alice", "hi")]).unwrap();
    match env.service.ingest(&nosuch, &body, BatchFormat::Json) {
        Err(ServiceError::NotFound(m)) => assert_eq!(m, "tenant nosuch does not exist"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let items = || vec![Ok(decision("x-2", "alice", "hi"))];
    let each = env.service.ingest_each(&nosuch, items);
    assert!(matches!(each, Err(ServiceError::NotFound(_))), "{each:?}");
    assert!(!env.service.ledger().exists(&nosuch));
    let tenants = std::fs::read_dir(env.service.layout().tenants_dir()).unwrap();
    let names: Vec<String> = tenants
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["acme"],
        "nothing of the unknown tenant is created"
    );
}

#[test]
fn a_tenant_whose_index_is_behind_is_refused_before_a_request_is_parsed_or_mapped() {
    let env = env_with(|c| c.max_index_lag = 0);
    env.ingest(&[decision("b-1", "alice", "hi")]).unwrap();
    // Read-your-writes: the index holds b-1 once this answers.
    assert_eq!(env.decisions().len(), 1);
    // Another writer on the index file holds the indexer off: what is appended next stays
    // behind in the index.
    let index = agentrail_index::index_path(env.service.layout().root(), &env.tenant);
    let blocker = rusqlite::Connection::open(&index).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    env.ingest(&[decision("b-2", "alice", "hi")]).unwrap();

    let behind = |r: Result<(), ServiceError>| match r {
        Err(ServiceError::Unavailable { code, .. }) => assert_eq!(code, "index_behind"),
        other => panic!("expected index_behind, got {other:?}"),
    };
    // Not even looked at: a malformed body is refused as the valid one would be.
    behind(
        env.service
            .ingest(&env.tenant, b"{not json", BatchFormat::Ndjson)
            .map(drop),
    );
    let mut made = 0;
    behind(
        env.service
            .ingest_each(&env.tenant, || {
                made += 1;
                vec![Ok(decision("b-3", "alice", "hi"))]
            })
            .map(drop),
    );
    assert_eq!(made, 0, "nothing is mapped for a refused request");

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match env.ingest(&[decision("b-3", "alice", "hi")]) {
            Ok(_) => break,
            Err(ServiceError::Unavailable { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("the index never caught up: {e}"),
        }
    }
    assert_eq!(env.decisions().len(), 3);
}

#[test]
fn an_erasure_racing_four_writers_leaves_nothing_readable_before_its_event() {
    let env = env();
    let service = &env.service;
    let erased_at = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let env = &env;
                s.spawn(move || {
                    for b in 0..15 {
                        let evs: Vec<Value> = (0..10)
                            .map(|i| {
                                decision(&format!("r-{w}-{b}-{i}"), "racer", "racer@example.com hi")
                            })
                            .collect();
                        env.ingest(&evs).unwrap();
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let e = service
            .erase_subject(&env.admin, &env.tenant, "racer")
            .unwrap();
        for w in writers {
            w.join().unwrap();
        }
        e.receipt.seq
    });
    let all = env.decisions();
    assert_eq!(all.len(), 600);
    let (before, after) =
        agentrail_testkit::check_erasure_boundary(all.iter().map(|(_, e)| e), erased_at, "racer@");
    assert_eq!(before + after, 600);
    // The erasure itself is an event of the ledger, and the ledger still verifies.
    let layout = service.layout();
    let report = agentrail_ledger::verify_tenant(
        layout.root(),
        &env.tenant,
        service.ledger().verifier(),
        &agentrail_ledger::read_origin_prefix(layout.root()).unwrap(),
    );
    assert!(report.failure.is_none(), "{:?}", report.failure);
}

#[test]
fn authorization_is_the_services_and_names_what_is_missing() {
    let env = env();
    let s = &env.service;
    let (_, writer) = s
        .create_key(&env.admin, &env.tenant, None, &[Scope::EventsWrite])
        .unwrap();
    let writer = s.authenticate(&writer).unwrap();
    assert_eq!(
        s.authorize(&writer, "acme", &[Scope::EventsWrite]).unwrap(),
        env.tenant
    );
    match s.authorize(&writer, "acme", &[Scope::EventsRead]) {
        Err(ServiceError::Forbidden(m)) => assert!(m.contains("events:read"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Another tenant: the same answer whether or not it exists.
    let a = s.authorize(&writer, "beta", &[Scope::EventsWrite]);
    let b = s.authorize(&writer, "no-such-tenant", &[Scope::EventsWrite]);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

/// Every byte of every file under `dir`.
fn all_files(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
}

#[test]
fn client_supplied_ciphertext_is_refused_and_nothing_of_it_is_kept() {
    let env = env();
    let probe = "bypass.probe@example.com 5105 1051 0510 5100";
    for (path, value) in [
        (
            "payload.prompt[\"$enc\"]",
            json!({"$enc": format!("x {probe}")}),
        ),
        (
            "payload.prompt.messages[0][\"$enc\"]",
            json!({"messages": [{"$enc": {"alg": "x", "ct": probe}}]}),
        ),
        (
            "payload.prompt[\"$erased\"]",
            json!({"$erased": {"reason": probe}}),
        ),
    ] {
        let mut ev = decision("enc-1", "alice", "x");
        ev["payload"]["prompt"] = value;
        match env.ingest(&[ev]) {
            Err(ServiceError::InvalidEvents { details, .. }) => {
                assert!(details.iter().any(|d| d["path"] == path), "{details:?}");
                let text = serde_json::to_string(&details).unwrap();
                assert!(
                    !text.contains("bypass.probe"),
                    "the refusal echoes the value: {text}"
                );
            }
            other => panic!("{path}: expected InvalidEvents, got {other:?}"),
        }
    }
    // Also in a field that is not sensitive (readers would try to open it).
    let mut ev = decision("enc-2", "alice", "x");
    ev["payload"]["output"] = json!({"raw": {"$enc": probe}});
    assert!(matches!(
        env.ingest(&[ev]),
        Err(ServiceError::InvalidEvents { .. })
    ));
    assert_eq!(env.size(), 0);
    let mut files = Vec::new();
    all_files(env._dir.path(), &mut files);
    for (p, b) in files {
        assert!(
            !b.windows(12).any(|w| w == b"bypass.probe"),
            "{} holds the probe",
            p.display()
        );
    }
}

#[test]
fn a_million_line_body_is_refused_before_it_is_parsed() {
    let env = env();
    for (body, format) in [
        (b"{}\n".repeat(1_000_000), BatchFormat::Ndjson),
        (
            [b"[".to_vec(), b"{},".repeat(999_999), b"{}]".to_vec()].concat(),
            BatchFormat::Json,
        ),
    ] {
        let started = std::time::Instant::now();
        match env.service.ingest(&env.tenant, &body, format) {
            Err(ServiceError::TooLarge { code, message, .. }) => {
                assert_eq!(code, "batch_too_large");
                assert!(message.contains("1000000 events"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        eprintln!("{format:?}: refused in {:?}", started.elapsed());
    }
    assert_eq!(env.size(), 0);
}

/// The first `tok_email_…` token in a served event.
fn email_token(ev: &Value) -> String {
    let text = ev.to_string();
    let at = text.find("tok_email_").expect("an email token");
    text[at..at + "tok_email_".len() + 32].to_owned()
}

/// Events stored before the ledger kept content digests (sealed and appended as earlier versions
/// did, without one): an identical re-send after a rotation is still a replay, recognized by
/// what was sent, recovered from the stored form; different content is a conflict; once the
/// subject is erased nothing can tell, and the re-send stays refused.
#[test]
fn resends_of_events_stored_without_a_digest_survive_a_rotation() {
    let env = env();
    let alice = decision(
        "old-1",
        "alice",
        "write to alice.w@example.com or tok_x today",
    );
    let mut wide = decision("old-2", "-", "ticket 7 for jane@example.com");
    wide.as_object_mut().unwrap().remove("subject_id");
    let ledger = env.service.ledger().clone();
    let first = env.service.privacy().sealing(&env.tenant, |s| {
        let mut evs: Vec<_> = [&alice, &wide]
            .iter()
            .map(|v| agentrail_event::validate_value((*v).clone()).unwrap())
            .collect();
        let w = s.protect_batch(&mut evs).unwrap();
        let r = ledger.append(&env.tenant, evs).unwrap();
        s.commit(w);
        r
    });
    let stored = ledger.read(&env.tenant, first[0].seq).unwrap();
    let text = String::from_utf8(stored.bytes.clone()).unwrap();
    assert!(
        !text.contains("content_digest") && text.contains("$enc"),
        "{text}"
    );
    // Without a rotation the stored bytes compare equal, as before.
    assert!(env.ingest(std::slice::from_ref(&alice)).unwrap()[0].replayed);

    env.service
        .rotate_data_key(&env.admin, &env.tenant)
        .unwrap();
    let size = env.size();
    let again = env.ingest(&[wide.clone(), alice.clone()]).unwrap();
    assert!(again.iter().all(|r| r.replayed), "{again:?}");
    assert_eq!(
        again.iter().map(|r| (r.seq, &r.hash)).collect::<Vec<_>>(),
        vec![
            (first[1].seq, &first[1].hash),
            (first[0].seq, &first[0].hash)
        ]
    );
    assert_eq!(env.size(), size);
    let mut changed = alice.clone();
    changed["payload"]["prompt"]["messages"] = json!(["write to alice.v@example.com today"]);
    assert!(env.conflicts(&[changed]));

    // Erased: what was sent cannot be recovered, so it cannot be shown to be the same.
    env.erase("alice");
    let size = env.size();
    assert!(env.conflicts(&[alice]));
    assert_eq!(env.size(), size);
    assert!(env.ingest(&[wide]).unwrap()[0].replayed);
}

#[test]
fn identical_resends_after_a_rotation_and_an_erasure_are_replays() {
    let env = env();
    let mut tenant_wide = decision("rot-1", "-", "ticket 7 is resolved");
    tenant_wide.as_object_mut().unwrap().remove("subject_id");
    let alice = decision("era-1", "alice", "write to alice.w@example.com today");
    let first = env.ingest(&[tenant_wide.clone(), alice.clone()]).unwrap();
    let (_, served) = env.decisions().pop().unwrap();
    let token = email_token(&served);
    let reveal = |env: &Env| {
        let req = common::request(env.admin.clone(), &env.tenant);
        env.service
            .reveal(req, std::slice::from_ref(&token))
            .unwrap()[0]
            .1
            .clone()
    };
    assert_eq!(reveal(&env), Some(json!("alice.w@example.com")));
    let erased = |v: Option<Value>| v.is_some_and(|v| v.get("$erased").is_some());

    // After a rotation the same event seals to other bytes; it is still the same submission.
    env.service
        .rotate_data_key(&env.admin, &env.tenant)
        .unwrap();
    let again = env.ingest(&[tenant_wide.clone()]).unwrap();
    assert!(again[0].replayed);
    assert_eq!(
        (again[0].seq, &again[0].hash),
        (first[0].seq, &first[0].hash)
    );
    // Other content under the same id is still a conflict.
    let mut changed = tenant_wide.clone();
    changed["payload"]["output"]["raw"] = json!("not ok");
    assert!(env.conflicts(&[changed]));

    // After the subject's erasure: a replay with the original receipt, and nothing of the
    // re-sent content is kept again (its value stays unrevealable, across a reopen too).
    env.erase("alice");
    assert!(erased(reveal(&env)));
    let size = env.size();
    let again = env.ingest(&[alice.clone(), tenant_wide.clone()]).unwrap();
    assert!(again.iter().all(|r| r.replayed), "{again:?}");
    assert_eq!(
        (again[0].seq, &again[0].hash),
        (first[1].seq, &first[1].hash)
    );
    assert_eq!(env.size(), size);
    assert!(erased(reveal(&env)));
    let served = env.decisions();
    assert!(
        !serde_json::to_string(&served).unwrap().contains("alice.w@"),
        "{served:?}"
    );
    // A replay mixed with a new event: the new one is written, receipts stay in order.
    let r = env
        .ingest(&[decision("new-1", "bob", "hi"), alice.clone()])
        .unwrap();
    assert!(!r[0].replayed && r[1].replayed);
    assert_eq!(r[1].seq, first[1].seq);
    // A conflict is named at its place in the whole batch.
    let mut alice_changed = alice.clone();
    alice_changed["payload"]["output"]["raw"] = json!("changed");
    match env.ingest(&[decision("new-2", "bob", "x"), alice.clone(), alice_changed]) {
        Err(ServiceError::Conflict { details, .. }) => {
            assert_eq!(details, vec![json!({"index": 2, "event_id": "era-1"})]);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    let dir = env._dir.path().to_path_buf();
    let Env {
        service,
        tenant,
        admin,
        _dir,
    } = env;
    service.shutdown();
    drop(service);
    let cfg = ServiceConfig::unscheduled(dir);
    let service = Service::open(cfg).unwrap().service;
    let env = Env {
        service,
        tenant,
        admin,
        _dir,
    };
    assert!(erased(reveal(&env)));
    assert!(env.ingest(&[alice]).unwrap()[0].replayed);
}

/// `payload.content` is sensitive in every event type (intake paths put content there that a
/// type has no field for): sealed in the ledger, tokenized when opened; other fields stay clear.
#[test]
fn payload_content_is_sealed_in_every_event_type() {
    let env = env();
    let probe = "content.probe@example.com";
    let events = [
        json!({"schema_version": "1", "event_id": "c-1", "event_type": "custom.otel.span",
            "occurred_at": "2026-11-26T01:00:00Z",
            "payload": {"name": "chain", "content": {"input.value": format!("mail {probe}")}}}),
        json!({"schema_version": "1", "event_id": "c-2", "event_type": "agent.spawned",
            "session_id": "s1", "agent_id": "bot", "occurred_at": "2026-11-26T01:00:00Z",
            "payload": {"child_agent_id": "helper", "content": [probe]}}),
        json!({"schema_version": "1", "event_id": "c-3", "event_type": "custom.plain",
            "occurred_at": "2026-11-26T01:00:00Z", "payload": {"note": "no content here"}}),
    ];
    env.ingest(&events).unwrap();
    let req = common::request(env.admin.clone(), &env.tenant);
    let rows = common::all_events(&env.service, &req, &EventFilter::default()).unwrap();
    // As stored (the sealed form), read from the ledger.
    let stored: Vec<Value> = env
        .service
        .presenter(&env.tenant, false)
        .all(&rows)
        .unwrap();
    assert!(
        stored[0]["payload"]["content"].get("$enc").is_some(),
        "{}",
        stored[0]
    );
    assert!(
        stored[1]["payload"]["content"].get("$enc").is_some(),
        "{}",
        stored[1]
    );
    assert_eq!(stored[0]["payload"]["name"], "chain");
    assert_eq!(stored[2]["payload"], json!({"note": "no content here"}));
    let pv = env.service.presenter(&env.tenant, true);
    let opened = pv.one(&rows[0]).unwrap();
    let text = opened["payload"]["content"]["input.value"]
        .as_str()
        .unwrap();
    assert!(text.starts_with("mail tok_email_"), "{text}");
    let mut files = Vec::new();
    all_files(env._dir.path(), &mut files);
    for (p, b) in files {
        assert!(
            !b.windows(13).any(|w| w == b"content.probe"),
            "{} holds the probe",
            p.display()
        );
    }
}
