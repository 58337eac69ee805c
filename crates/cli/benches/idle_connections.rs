//! What hostile clients cost `agentrail serve` (a child process, its memory from /proc): an idle
//! connection (RSS per connection, and whether memory comes back after they close), and a
//! 10^6-line body (time to refuse it, peak RSS). Prints tables; run with
//! `cargo bench -p agentrail --bench idle_connections`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    common::status_kib(pid, "VmRSS:")
}

fn main() {
    agentrail_server::conn::raise_open_file_limit();
    let tmp = agentrail_testkit::bench::scratch_dir();
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
    // A 10^6-line body (NDJSON and a JSON array), refused by the batch limit before parsing.
    let key = common::tenant_key(&url, &tmp.path().join("data"), "bench", &["events:write"]);
    let a = common::agent();
    let ingest = format!("{url}/v1/tenants/bench/events");
    println!(
        "| body | bytes | status | time to answer (ms) | peak RSS before (KiB) | peak RSS after (KiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for round in 0..2 {
        for (name, ct, body) in [
            (
                "NDJSON, 10^6 lines",
                "application/x-ndjson",
                b"{}\n".repeat(1_000_000),
            ),
            (
                "JSON array, 10^6 items",
                "application/json",
                [b"[".to_vec(), b"{},".repeat(999_999), b"{}]".to_vec()].concat(),
            ),
        ] {
            let len = body.len();
            let hwm = common::status_kib(pid, "VmHWM:");
            let started = std::time::Instant::now();
            let (status, _) = common::call(&a, "POST", &ingest, &key, Some((ct, body))).unwrap();
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            println!(
                "| {name} (round {}) | {len} | {status} | {ms:.1} | {hwm} | {} |",
                round + 1,
                common::status_kib(pid, "VmHWM:")
            );
        }
    }
    println!();

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
