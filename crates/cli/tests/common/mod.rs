//! Shared by the tests that run `agentrail serve` as a child process.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts the server on a free port with `data` as its data directory. Returns the child, its
/// base URL (from the first line it prints), and the next `extra_lines` lines it printed; the
/// rest of its output is drained so it never blocks on it.
pub fn spawn_server(data: &Path, extra_lines: usize) -> (Child, String, Vec<String>) {
    spawn_server_with(data, None, None, extra_lines)
}

/// [`spawn_server`] with a config file, and its log (stderr) written to `log`.
pub fn spawn_server_with(
    data: &Path,
    config: Option<&Path>,
    log: Option<&Path>,
    extra_lines: usize,
) -> (Child, String, Vec<String>) {
    spawn_server_env(data, config, log, extra_lines, &[])
}

/// [`spawn_server_with`] with these environment variables set.
pub fn spawn_server_env(
    data: &Path,
    config: Option<&Path>,
    log: Option<&Path>,
    extra_lines: usize,
    envs: &[(&str, &str)],
) -> (Child, String, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentrail"));
    cmd.envs(envs.iter().copied());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        });
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("agentrail listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let printed: Vec<String> = lines
        .by_ref()
        .take(extra_lines)
        .map(|l| l.unwrap())
        .collect();
    std::thread::spawn(move || for _ in lines {});
    (child, url, printed)
}

/// An HTTP client that returns error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// One request; `Err` only when no HTTP answer came (the connection failed).
pub fn call(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    key: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, Value), String> {
    let auth = format!("Bearer {key}");
    let r = match (method, body) {
        ("GET", _) => a.get(url).header("Authorization", &auth).call(),
        (_, Some((ct, b))) => a
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", ct)
            .send(&b[..]),
        _ => a.post(url).header("Authorization", &auth).send_empty(),
    };
    let mut r = r.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Creates `tenant` with the root key of `data` and returns a new key of it with `scopes`.
pub fn tenant_key(url: &str, data: &Path, tenant: &str, scopes: &[&str]) -> String {
    let root = std::fs::read_to_string(data.join("system/root.key"))
        .unwrap()
        .trim()
        .to_owned();
    let a = agent();
    let post = |path: &str, body: serde_json::Value| {
        let body = body.to_string().into_bytes();
        let url = format!("{url}{path}");
        call(&a, "POST", &url, &root, Some(("application/json", body))).unwrap()
    };
    let (st, v) = post("/v1/tenants", serde_json::json!({ "tenant_id": tenant }));
    assert!(st == 201 || st == 409, "{st}: {v}");
    let path = format!("/v1/tenants/{tenant}/keys");
    let (st, v) = post(&path, serde_json::json!({ "scopes": scopes }));
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`); 0 when it cannot be read.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The `agentrail` binary the tests built, run from the repository root (where `examples/` is).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentrail"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

/// Runs `agentrail ARGS` to completion.
pub fn run(args: &[&str]) -> std::process::Output {
    bin().args(args).output().unwrap()
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard output then standard error, for assertions and their messages.
pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

/// A child process killed (and reaped) when the test lets go of it, pass or fail.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
