//! The client commands against a running `agentrail serve`: demo, tenant/key administration,
//! streaming ingest (and its error report), queries.

mod common;

use std::io::Write;
use std::process::{Child, Command, Output};

struct Server {
    child: Child,
    url: String,
    root: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, url, printed) = common::spawn_server(&data, 2);
    let root = std::fs::read_to_string(data.join("system/root.key"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        printed[1].contains(&root),
        "the root key is printed on the first start"
    );
    Server {
        child,
        url,
        root,
        _dir: dir,
    }
}

fn run(s: &Server, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(args)
        .env("AGENTRAIL_URL", &s.url)
        .env("AGENTRAIL_KEY", key)
        .output()
        .unwrap()
}

fn created_key(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["key"].as_str().unwrap().to_owned()
}

#[test]
fn demo_runs_verifies_a_proof_and_hands_over_commands_that_work() {
    let s = serve();
    let keys = s._dir.path().join("demo.env");
    let keys_arg = keys.to_str().unwrap();
    let demo = || {
        let o = run(
            &s,
            &s.root,
            &[
                "demo",
                "--tenants",
                "2",
                "--events",
                "600",
                "--keys-file",
                keys_arg,
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let out = demo();
    assert!(out.contains("VERIFIED"), "{out}");
    assert!(out.contains("HTTP 403"), "{out}");
    assert!(!out.contains("events/s"), "no throughput figure: {out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the keys file is the owner's only");
    let saved = std::fs::read_to_string(&keys).unwrap();
    assert!(saved.contains("export DEMO_FINTECH_READER=ar_"), "{saved}");

    // The commands it hands over, run as printed (with the keys file sourced): each answers,
    // and each answer holds something.
    let next: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("next:"))
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(next[0], format!("source {keys_arg}"), "{out}");
    assert!(next.len() >= 5, "{out}");
    for cmd in &next[1..] {
        let script = format!(
            "set -euo pipefail; source '{keys_arg}'; agentrail() {{ '{}' \"$@\"; }}; {cmd}",
            env!("CARGO_BIN_EXE_agentrail")
        );
        let o = Command::new("bash")
            .args(["-c", &script])
            .env_remove("AGENTRAIL_KEY")
            .env("AGENTRAIL_URL", "http://127.0.0.1:1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{cmd}: {text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let count = text
            .lines()
            .rev()
            .filter_map(|l| l.strip_suffix(" results").or(l.strip_suffix(" result")))
            .find_map(|n| n.parse::<usize>().ok());
        assert!(
            matches!(count, Some(n) if n > 0),
            "{cmd}: nothing found\n{text}"
        );
    }
    // Again: another run of events into the same tenants.
    let again = demo();
    assert!(again.contains("exists (re-running the demo)"), "{again}");
}

#[test]
fn administer_ingest_and_query() {
    let s = serve();
    assert!(
        run(&s, &s.root, &["tenant", "create", "acme"])
            .status
            .success()
    );
    let o = run(&s, &s.root, &["tenant", "create", "acme"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("409"));
    let w = created_key(&run(
        &s,
        &s.root,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "events:write",
        ],
    ));
    let r = created_key(&run(
        &s,
        &s.root,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "events:read",
            "--name",
            "auditor",
        ],
    ));
    let list = run(&s, &s.root, &["key", "list", "--tenant", "acme"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("auditor"));

    // A file whose 3rd batch has a bad line: two batches land, the error names the line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for (i, e) in agentrail_testkit::Generator::new(1, "acme", 4)
        .take(25)
        .enumerate()
    {
        if i == 22 {
            writeln!(
                f,
                r#"{{"schema_version":"1","event_type":"model.decision"}}"#
            )
            .unwrap();
        }
        writeln!(f, "{e}").unwrap();
    }
    drop(f);
    let o = run(
        &s,
        &w,
        &["ingest", "--tenant", "acme", "--batch-size", "10"]
            .into_iter()
            .chain([file.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("422") && err.contains("\"line\":3") && err.contains("starting at line 21"),
        "{err}"
    );
    assert!(err.contains("20 events were acknowledged"), "{err}");

    // Fix the file: the rest goes in (the first 20 are idempotent replays).
    let text = std::fs::read_to_string(&file).unwrap();
    let fixed: String = text
        .lines()
        .filter(|l| !l.contains(r#"{"schema_version":"1","event_type":"model.decision"}"#))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, fixed).unwrap();
    let o = run(
        &s,
        &w,
        &[
            "ingest",
            "--tenant",
            "acme",
            "--receipts",
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 25);

    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let sid = first["session_id"].as_str().unwrap();
    let o = run(&s, &r, &["query", "--tenant", "acme", "session", sid]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("chain unbroken"),
        "{out}"
    );
    let o = run(
        &s,
        &r,
        &[
            "query",
            "--tenant",
            "acme",
            "--json",
            "events",
            "--event-type",
            "tool.invocation",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event_type"] == "tool.invocation")
    );
    // A writer key cannot query.
    let o = run(&s, &w, &["query", "--tenant", "acme", "session", sid]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("403"));
}

#[test]
fn export_download_and_verify_offline_then_incrementally() {
    let s = serve();
    assert!(
        run(&s, &s.root, &["tenant", "create", "acme"])
            .status
            .success()
    );
    let w = created_key(&run(
        &s,
        &s.root,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "events:write",
        ],
    ));
    let x = created_key(&run(
        &s,
        &s.root,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "export,verify",
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let all: Vec<serde_json::Value> = agentrail_testkit::Generator::new(2, "acme", 4)
        .take(1500)
        .collect();
    let write = |evs: &[serde_json::Value]| {
        let text: String = evs.iter().map(|e| format!("{e}\n")).collect();
        std::fs::write(&file, text).unwrap();
    };
    write(&all[..1000]);
    assert!(
        run(
            &s,
            &w,
            &["ingest", "--tenant", "acme", file.to_str().unwrap()]
        )
        .status
        .success()
    );
    let key = {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        agent
            .get(format!("{}/v1/tenants/acme/verifier-key", s.url))
            .header("Authorization", format!("Bearer {x}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    for format in ["ndjson", "parquet"] {
        let out = dir.path().join(format!("export-{format}"));
        let o = run(
            &s,
            &x,
            &[
                "export",
                "--tenant",
                "acme",
                "--format",
                format,
                "--from-seq",
                "100",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v = Command::new(env!("CARGO_BIN_EXE_agentrail"))
            .args(["verify-export", out.to_str().unwrap(), "--key", &key])
            .output()
            .unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
        assert!(String::from_utf8_lossy(&v.stdout).contains("900 events"));
        // Tampered: exit 1 and the file is named.
        let data = std::fs::read_dir(out.join("data"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("events-"))
            .unwrap();
        let mut b = std::fs::read(&data).unwrap();
        b[10] ^= 0x20;
        std::fs::write(&data, b).unwrap();
        let v = Command::new(env!("CARGO_BIN_EXE_agentrail"))
            .args(["verify-export", out.to_str().unwrap(), "--key", &key])
            .output()
            .unwrap();
        assert_eq!(v.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&v.stdout).contains("events-"));
    }
    // A named destination: the first run takes everything, the second only what is new.
    let to_siem = |out: &std::path::Path| {
        run(
            &s,
            &x,
            &[
                "export",
                "--tenant",
                "acme",
                "--destination",
                "siem",
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let d1 = dir.path().join("d1");
    let o = to_siem(&d1);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1000 events (seq 0..1000)"));
    write(&all[1000..]);
    assert!(
        run(
            &s,
            &w,
            &["ingest", "--tenant", "acme", file.to_str().unwrap()]
        )
        .status
        .success()
    );
    let d2 = dir.path().join("d2");
    let o = to_siem(&d2);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("500 events (seq 1000..1500)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(["verify-export", d2.to_str().unwrap(), "--key", &key])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// Search by PII token, through a stop, an offline `agentrail reindex` (which opens the vault to
/// rebuild the hot content) and a restart.
#[test]
fn search_by_token_survives_an_offline_reindex() {
    let mut s = serve();
    assert!(
        run(&s, &s.root, &["tenant", "create", "acme"])
            .status
            .success()
    );
    let k = created_key(&run(
        &s,
        &s.root,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "events:write,events:read",
        ],
    ));
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/events.ndjson");
    let o = run(&s, &k, &["ingest", "--tenant", "acme", examples]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let one = run(&s, &k, &["query", "--tenant", "acme", "events", "--json"]);
    let text = String::from_utf8_lossy(&one.stdout).to_string();
    let at = text
        .find("tok_email_")
        .expect("the example's email is tokenized");
    let token = text[at..at + "tok_email_".len() + 32].to_owned();
    let found = |s: &Server| {
        let o = run(
            s,
            &k,
            &[
                "query", "--tenant", "acme", "events", "--token", &token, "--json",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        agentrail_testkit::event_ids(&serde_json::from_slice(&o.stdout).unwrap())
    };
    assert_eq!(found(&s), vec!["evt-0002"]);

    let _ = s.child.kill();
    let _ = s.child.wait();
    let data = s._dir.path().join("data");
    let re = Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(["reindex", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        re.status.success(),
        "{}",
        String::from_utf8_lossy(&re.stderr)
    );
    let (child, url, _) = common::spawn_server(&data, 0);
    s.child = child;
    s.url = url;
    assert_eq!(found(&s), vec!["evt-0002"]);
}
