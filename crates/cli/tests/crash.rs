//! Crash test: `agentrail ingest` appending into a data directory is SIGKILLed at random moments.
//! After every kill the ledger reopens, every event whose receipt was printed before the kill is
//! present and byte-identical to what was acknowledged, and `verify` passes.
//!
//! AGENTRAIL_CRASH_ITERATIONS sets the number of kills (default 200).

use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_ledger::{Config, Ledger, read_origin_prefix, read_verifier, verify_tenant};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn write_events(path: &std::path::Path, iteration: u64, n: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..n {
        let caused = if i > 0 {
            format!(r#","caused_by":["it{iteration}-{}"]"#, i - 1)
        } else {
            String::new()
        };
        writeln!(
            f,
            r#"{{"schema_version":"1","event_id":"it{iteration}-{i}","event_type":"tool.invocation","session_id":"s{}"{caused},"payload":{{"tool":{{"name":"lookup"}},"status":{{"outcome":"ok"}},"output":"{}"}}}}"#,
            i % 5,
            "o".repeat(200)
        )
        .unwrap();
    }
}

#[derive(serde::Deserialize)]
struct Receipt {
    event_id: String,
    seq: u64,
    hash: String,
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let iterations: u64 = std::env::var("AGENTRAIL_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("events.ndjson");
    let tenant = TenantId::parse("acme").unwrap();
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut acknowledged: Vec<Receipt> = Vec::new();
    let (mut killed_mid_run, mut recovered_tails) = (0u64, 0u64);
    for it in 0..iterations {
        write_events(&input, it, 300);
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentrail"))
            .args([
                "ingest",
                "--batch-size",
                "7",
                "--tenant",
                "acme",
                "--data-dir",
            ])
            .arg(&data)
            .arg(&input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only complete lines count: a receipt cut by the kill was never fully printed.
            let mut lines = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut buf = String::new();
            while r.read_line(&mut buf).unwrap_or(0) > 0 {
                if buf.ends_with('\n') {
                    lines.push(std::mem::take(&mut buf));
                } else {
                    break;
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if !status.success() {
            killed_mid_run += 1;
        }
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
        }
        if stderr.contains("truncated a torn tail") {
            recovered_tails += 1;
        }
        assert!(
            !stderr.contains("refusing tenant"),
            "iteration {it}: the child found damage: {stderr}"
        );
        for line in reader.join().unwrap() {
            acknowledged.push(serde_json::from_str(&line).unwrap());
        }

        // Reopen: every acknowledged event is there, byte-identical (its hash), in place.
        let mut cfg = Config::new(&data);
        cfg.checkpoint_interval = None;
        let ledger = Ledger::open(cfg).unwrap();
        if !ledger.exists(&tenant) {
            // Killed before it created the tenant (a loaded machine): nothing was acknowledged.
            assert!(
                acknowledged.is_empty(),
                "iteration {it}: the tenant vanished"
            );
            continue;
        }
        let size = ledger.size(&tenant).unwrap();
        for r in &acknowledged {
            assert!(
                r.seq < size,
                "iteration {it}: acknowledged seq {} lost",
                r.seq
            );
            let ev = ledger.read(&tenant, r.seq).unwrap();
            assert_eq!(
                to_hex(&ev.hash),
                r.hash,
                "iteration {it}: seq {} changed",
                r.seq
            );
            let stored: serde_json::Value = serde_json::from_slice(&ev.bytes).unwrap();
            assert_eq!(stored["event_id"], r.event_id.as_str());
        }
        if let Some(t) = ledger.take_recovery_notes().first() {
            assert!(t.contains("torn tail"), "{t}");
            recovered_tails += 1;
        }
        drop(ledger);
        if it % 20 == 19 || it + 1 == iterations {
            let report = verify_tenant(
                &data,
                &tenant,
                &read_verifier(&data).unwrap(),
                &read_origin_prefix(&data).unwrap(),
            );
            assert!(
                report.failure.is_none(),
                "iteration {it}: {}",
                report.failure.unwrap()
            );
        }
    }
    eprintln!(
        "{iterations} kills ({killed_mid_run} mid-run), {} events acknowledged, {recovered_tails} torn tails recovered",
        acknowledged.len()
    );
    assert!(
        killed_mid_run > 0,
        "the child was never killed while running"
    );
}
