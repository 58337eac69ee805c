//! The committed JSON Schema must be what the types generate. Regenerate with
//! `cargo run -p agentrail -- schema > schemas/event-v1.schema.json`.

#[test]
fn committed_schema_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/event-v1.schema.json"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = serde_json::to_string_pretty(&agentrail_event::event_schema()).unwrap() + "\n";
    assert!(
        committed == generated,
        "schemas/event-v1.schema.json is out of date: run \
         `cargo run -p agentrail -- schema > schemas/event-v1.schema.json`"
    );
}

#[test]
fn the_schema_validates_an_independent_reading() {
    // The committed schema must be usable by any JSON Schema 2020-12 validator on its own.
    let schema = agentrail_event::event_schema();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let good: serde_json::Value = serde_json::json!({
        "schema_version": "1", "event_type": "tool.invocation", "session_id": "s",
        "payload": {"tool": {"name": "search"}, "status": {"outcome": "ok", "code": 200}}
    });
    assert!(v.is_valid(&good));
    let bad = serde_json::json!({"schema_version": "1", "event_type": "tool.invocation", "session_id": "s"});
    assert!(!v.is_valid(&bad));
}
