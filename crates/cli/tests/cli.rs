//! The `agentrail` binary, run as a user would.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn agentrail(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let o = agentrail(&["--help"], None);
    assert!(o.status.success());
    for cmd in ["validate", "canonicalize", "hash", "schema", "verify-note"] {
        assert!(stdout(&o).contains(cmd), "--help does not list {cmd}");
    }
}

#[test]
fn validate_accepts_the_examples_and_reports_every_problem() {
    let ok = agentrail(&["validate", "examples/events.ndjson"], None);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let bad = agentrail(&["validate", "examples/invalid.ndjson"], None);
    assert_eq!(bad.status.code(), Some(1));
    let out = stdout(&bad);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.contains("line 2: sesion_id: unknown field"), "{out}");
    assert!(
        out.contains("line 2: session_id: required for human.review events"),
        "{out}"
    );
    assert!(
        out.contains("line 2: payload.decided_at: must be an RFC 3339 UTC timestamp"),
        "{out}"
    );
    assert!(
        out.contains("line 3: payload.usage.input_tokens: integer 12345678901234567890 is outside"),
        "{out}"
    );
    // Standard input, as JSON.
    let o = agentrail(
        &["validate", "--format", "json", "-"],
        Some(br#"[{"schema_version":"1"}]"#),
    );
    assert_eq!(stdout(&o), "-: item 0: event_type: required\n");
}

#[test]
fn canonicalize_and_hash() {
    let o = agentrail(
        &["canonicalize", "-"],
        Some(br#"{"b":1.50,"a":[1e16,"\u00e9"]}"#),
    );
    assert_eq!(stdout(&o), "{\"a\":[10000000000000000,\"é\"],\"b\":1.5}\n");
    let o = agentrail(&["canonicalize", "-"], Some(br#"{"a":1,"a":2}"#));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("duplicate key \"a\""));

    // SPECS.md §3 reference: leaf hash of {"event":"login","n":1,"tenant":"a","ts":...}.
    let ev = br#"{"tenant":"a","event":"login","n":1.0,"ts":"2024-01-01T00:00:00Z"}"#;
    let o = agentrail(&["hash", "-"], Some(ev));
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("652776d855adf3e4132cf385b7aabccce6c43cae492efad6df3ae0b57add5c15")
    );
    let hash = stdout(&o)
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .to_owned();
    // A stored event whose `hash` field matches passes; a tampered one fails.
    let stored = format!(
        r#"{{"tenant":"a","event":"login","n":1,"ts":"2024-01-01T00:00:00Z","hash":"{hash}"}}"#
    );
    let o = agentrail(&["hash", "-"], Some(stored.as_bytes()));
    assert!(o.status.success());
    assert!(stdout(&o).ends_with("\tok\n"));
    let tampered = stored.replace("login", "logout");
    let o = agentrail(&["hash", "-"], Some(tampered.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).ends_with("\tMISMATCH\n"));
}

#[test]
fn verify_note_checks_the_example_checkpoint() {
    let cp = "../shared/testdata/c2sp/checkpoint_example.txt";
    let key = "example.com/audit/tenant-a+2988e6e5+AStcbgrIX65wnp7N5SoNvTo0cbeo9bobyvjOu56hpykZ";
    let witness = "witness.example/w1+d5301043+BL6zpXgcA8HJQZ8lFlCI/alSYe8D/e+Ugz3I+2ian1TF";
    let o = agentrail(
        &["verify-note", "--key", key, "--witness", witness, cp],
        None,
    );
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("cosignature by witness.example/w1 at 1700000000: ok"));
    assert!(stdout(&o).contains("tree size: 8"));
    let other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let o = agentrail(&["verify-note", "--key", other, cp], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).starts_with("FAILED"));
    let o = agentrail(&["verify-note", "--key", "garbage", cp], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let o = agentrail(&["schema"], None);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/event-v1.schema.json"
    ))
    .unwrap();
    assert_eq!(stdout(&o), committed);
}
