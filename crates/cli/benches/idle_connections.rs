//! What an idle connection costs `agentrail serve` (a child process, its RSS from /proc), and
//! whether memory comes back after the connections close. Prints a table; run with
//! `cargo bench -p agentrail --bench idle_connections`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agentrail.toml");
    std::fs::write(
        &cfg,
        "header_read_timeout_ms = 120000\nmax_connections_per_address = 100000\nmax_connections = 100000\n",
    )
    .unwrap();
    let (mut child, url, _) =
        common::spawn_server_with(&tmp.path().join("data"), Some(&cfg), None, 0);
    let addr = url.trim_start_matches("http://").to_owned();
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "| round | connections | RSS before (KiB) | RSS open (KiB) | per connection (KiB) | RSS 2 s after close (KiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for (round, n) in [500usize, 2000, 2000, 5000].into_iter().enumerate() {
        let before = rss_kib(pid);
        let conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(1000));
        let open = rss_kib(pid);
        drop(conns);
        std::thread::sleep(Duration::from_millis(2000));
        let after = rss_kib(pid);
        println!(
            "| {} | {n} | {before} | {open} | {:.1} | {after} |",
            round + 1,
            open.saturating_sub(before) as f64 / n as f64
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
