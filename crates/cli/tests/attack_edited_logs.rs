//! Threat: whoever can write the data directory edits what says "who did what" — cuts a
//! tenant's access log (the reads of an auditor's question disappear), edits one of its records
//! and re-chains the rest (no key is needed for a hash chain), drops the tenant's records from
//! the system integrity log, or widens an API key's scopes in the key log. Before, all of these
//! were honoured and nothing noticed.
//!
//! Defence: every tenant checkpoint commits the heads of these logs as extension lines
//! (`agentrail-log <log> <count> <hash>`, see `agentrail_ledger::anchors`), signed with the
//! log key the attacker does not have. `agentrail verify` fails the tenant naming the log, and
//! the server refuses to open the tenant (it serves none of its data, signs nothing more).

mod common;

use agentrail_ledger::ChainLog;
use agentrail_testkit::copy_dir;
use common::{Killed, agent, call, run, spawn_server, stdout, tenant_key};
use serde_json::{Map, Value};
use std::path::Path;

/// A data directory with a tenant whose every log has records, shut down cleanly (so its last
/// checkpoint commits them all).
fn prepared(data: &Path) -> String {
    let (child, url, _) = spawn_server(data, 0);
    let mut child = Killed(child);
    let key = tenant_key(
        &url,
        data,
        "acme",
        &["events:write", "events:read", "verify"],
    );
    let a = agent();
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/events.ndjson"
    ))
    .unwrap();
    let (st, v) = call(
        &a,
        "POST",
        &format!("{url}/v1/tenants/acme/events"),
        &key,
        Some(("application/x-ndjson", body)),
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
    for _ in 0..3 {
        let (st, v) = call(
            &a,
            "GET",
            &format!("{url}/v1/tenants/acme/reviews"),
            &key,
            None,
        )
        .unwrap();
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = call(
        &a,
        "POST",
        &format!("{url}/v1/tenants/acme/verify"),
        &key,
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(child.0.wait().unwrap().success());
    key
}

/// Rewrites a chain log with `edit` applied to its records, every hash re-chained: what anyone
/// can do without a key.
fn rechain(path: &Path, edit: impl Fn(u64, &mut Map<String, Value>) -> bool) {
    let old = ChainLog::open(path).unwrap();
    let records = old.read(0, usize::MAX).unwrap();
    drop(old);
    let tmp = path.with_extension("forged");
    let new = ChainLog::open(&tmp).unwrap();
    let mut kept = Vec::new();
    for r in records {
        let Value::Object(mut m) = r.value() else {
            unreachable!()
        };
        for k in ["seq", "prev_hash", "hash"] {
            m.remove(k);
        }
        if edit(r.seq, &mut m) {
            kept.push(m);
        }
    }
    new.append_all(kept).unwrap();
    drop(new);
    std::fs::rename(&tmp, path).unwrap();
}

fn verify_fails(data: &Path, what: &str) {
    let v = run(&["verify", "--data-dir", data.to_str().unwrap()]);
    let out = stdout(&v);
    assert_eq!(v.status.code(), Some(1), "{out}");
    assert!(
        out.contains("acme: FAILED") && out.contains(what),
        "verify names the {what}: {out}"
    );
}

/// The server refuses the tenant: no read of its data is answered, and the reason names the
/// log.
fn server_refuses(data: &Path, key: &str, what: &str) {
    let (child, url, _) = spawn_server(data, 0);
    let _child = Killed(child);
    let (st, v) = call(
        &agent(),
        "GET",
        &format!("{url}/v1/tenants/acme/checkpoint"),
        key,
        None,
    )
    .unwrap();
    assert!(st >= 500, "{st}: {v}");
    assert!(v.to_string().contains(what), "{st}: {v}");
}

#[test]
fn edited_logs_are_found_by_verify_and_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let key = prepared(&clean);
    let ok = run(&["verify", "--data-dir", clean.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stdout(&ok));

    // 1. The access log cut to its first record: the auditor's reads are gone.
    let d = tmp.path().join("cut");
    copy_dir(&clean, &d);
    rechain(&d.join("tenants/acme/access/log"), |seq, _| seq == 0);
    verify_fails(&d, "access log");
    server_refuses(&d, &key, "access log");

    // 2. One access record edited (who read), the rest re-chained.
    let d = tmp.path().join("edited");
    copy_dir(&clean, &d);
    rechain(&d.join("tenants/acme/access/log"), |seq, m| {
        if seq == 1 {
            m.insert(
                "at".into(),
                Value::String("2020-01-01T00:00:00.000000000Z".into()),
            );
        }
        true
    });
    verify_fails(&d, "access log");

    // 3. The tenant's integrity reports dropped from the system integrity log.
    let d = tmp.path().join("integrity");
    copy_dir(&clean, &d);
    rechain(&d.join("system/integrity/log"), |_, m| {
        m["report"]["tenant"] != Value::String("acme".into())
    });
    verify_fails(&d, "integrity log");
    server_refuses(&d, &key, "integrity log");

    // 4. A key given a scope it was never granted (tenant:admin), the log re-chained.
    let d = tmp.path().join("keys");
    copy_dir(&clean, &d);
    rechain(&d.join("system/keys.log"), |_, m| {
        if m["op"] == "create" && m["key"]["tenant_id"] == "acme" {
            m["key"]["scopes"]
                .as_array_mut()
                .unwrap()
                .push(Value::String("tenant:admin".into()));
        }
        true
    });
    verify_fails(&d, "API key log");
    server_refuses(&d, &key, "API key log");

    // 5. The whole access log deleted.
    let d = tmp.path().join("deleted");
    copy_dir(&clean, &d);
    std::fs::remove_file(d.join("tenants/acme/access/log")).unwrap();
    verify_fails(&d, "access log");
}
