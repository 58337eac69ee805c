//! Shared by the tests that run `agentrail serve` as a child process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts the server on a free port with `data` as its data directory. Returns the child, its
/// base URL (from the first line it prints), and the next `extra_lines` lines it printed; the
/// rest of its output is drained so it never blocks on it.
pub fn spawn_server(data: &Path, extra_lines: usize) -> (Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
