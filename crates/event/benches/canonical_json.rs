//! How fast the strict parser and the RFC 8785 writer handle an ingest-sized event (~1.2 KB: a
//! model decision with a 700-byte prompt), on one core: µs per event and MB/s. Both run on every
//! event at ingest (the writer twice: the content digest and the stored form).
//!
//! `cargo bench -p agentrail-event --bench canonical_json`

use agentrail_event::json::{parse, write_canonical};
use std::time::Instant;

fn events(n: usize) -> Vec<Vec<u8>> {
    let text = "The customer asked whether the refund for order 20261125-0042 could go to a \
                different card; I explained the policy. "
        .repeat(6);
    (0..n)
        .map(|i| {
            serde_json::json!({
                "schema_version": "1",
                "event_id": format!("0193a1b2-0000-7000-8000-{i:012}"),
                "event_type": "model.decision",
                "occurred_at": "2026-11-25T10:30:00.123Z",
                "session_id": format!("sess-{}", i % 64),
                "subject_id": "cust-2291",
                "actor": {"kind": "agent", "id": "agent-7", "version": "1.4.2"},
                "payload": {
                    "model": "gpt-4o-2024-08-06",
                    "params": {"temperature": 0.2, "max_tokens": 1024},
                    "prompt": {"messages": [{"role": "user", "content": text}]},
                    "output": {"raw": "Approved \"refund\" of $49.99\nwithin policy.", "tool_calls": []},
                    "usage": {"input_tokens": 1893, "output_tokens": 211}
                }
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

fn main() {
    let lines = events(5000);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let per = |secs: f64| (secs * 1e6 / lines.len() as f64, bytes as f64 / secs / 1e6);
    println!(
        "| round | parse (µs/event) | parse (MB/s) | canonicalize (µs/event) | canonicalize (MB/s) |"
    );
    println!("|---|---|---|---|---|");
    for round in 1..=3 {
        let reps = 4;
        let t = Instant::now();
        let mut values = Vec::new();
        for _ in 0..reps {
            values = lines
                .iter()
                .map(|l| parse(l).expect("valid JSON"))
                .collect();
        }
        let (pu, pm) = per(t.elapsed().as_secs_f64() / f64::from(reps));
        let t = Instant::now();
        let mut out = Vec::with_capacity(2048);
        for _ in 0..reps {
            for v in &values {
                out.clear();
                write_canonical(v, &mut out).expect("canonical");
            }
        }
        let (cu, cm) = per(t.elapsed().as_secs_f64() / f64::from(reps));
        println!("| {round} | {pu:.2} | {pm:.0} | {cu:.2} | {cm:.0} |");
    }
}
