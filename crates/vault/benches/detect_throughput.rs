//! How fast `detect` reads text, on one core, in MB/s: (a) agent text with no personal data,
//! the common case at ingest (the generator's prompts and outputs, and hand-written tool-call
//! and log lines full of numbers, ids and hashes that are not PII), (b) text dense with personal
//! data and secrets of every kind, and (c) what the `http_ingest` bench sends: 700-byte prompts,
//! 30% of them quoting an email (a quarter of those also a phone and a card). The first call,
//! which compiles the patterns, is timed apart.
//!
//! `cargo bench -p agentrail-vault --bench detect_throughput [-- --seconds 2]`

use agentrail_testkit::bench::arg;
use agentrail_testkit::{Generator, Profile};
use agentrail_vault::{Detectors, detect};
use std::time::Instant;

/// Agent text from the workload generator: with no personal data by default; `profile` sets
/// the text length and the share of prompts that quote an email, a phone and a card.
fn generated_text(profile: Profile) -> Vec<String> {
    let g = Generator::with_profile(42, "bench", 16, profile);
    let mut out = Vec::new();
    for ev in g.take(4000) {
        let p = &ev["payload"];
        for v in [&p["prompt"]["messages"][0]["content"], &p["output"]["raw"]] {
            if let Some(s) = v.as_str() {
                out.push(s.to_owned());
            }
        }
    }
    out
}

/// Tool calls and logs an agent writes: digits, ids, hashes, versions, URLs; no PII.
const LOG_LINES: &[&str] = &[
    "tool_call: search_orders(customer_id=\"cust-2291\", status=\"shipped\", limit=20)",
    "GET /api/v2/orders/1234567?page=2 200 15ms ua=Mozilla/5.0 (X11; Linux x86_64)",
    "commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f: fix refund rounding for partial returns",
    "request 550e8400-e29b-41d4-a716-446655440000 took 231 ms, retries=0, cache=miss",
    "{\"model\": \"gpt-4o-2024-08-06\", \"max_tokens\": 1024, \"temperature\": 0.2}",
    "The refund of $49.99 for order 20261125-0042 was approved within the 30-day policy.",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 pulled in 2.3s",
    "Ticket #48213 escalated at 2026-11-25T10:30:00Z by agent-7 after 3 failed lookups.",
    "usage: input_tokens=1893 output_tokens=211 latency_ms=1432 finish_reason=tool_calls",
    "Python 3.12.1 on linux; pip install requests==2.31.0 urllib3==2.0.7 completed",
    "The customer asked to reset their password; I sent the standard reset link instead.",
    "shipping label created: carrier=ups service=ground weight=2.4kg boxes=1",
];

/// Text dense with personal data and secrets.
const PII_LINES: &[&str] = &[
    "Hi, I'm Jane (jane.doe@example.com, +1 415 555 2671). Card 4242 4242 4242 4242 exp 04/28.",
    "refund to DE89 3704 0044 0532 0130 00, receipt to jörg@müller.de, ssn 123-45-6789",
    "api_key=0123456789abcdef0123456789abcdef and Authorization: Bearer 7f3a9c2e1b8d4f6a0e5c",
    "aws AKIAIOSFODNN7EXAMPLE / aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "{\"user\": \"bob\", \"password\": \"s3cr3t-P@ss\", \"ip\": \"203.0.113.7\"}",
    "qty 2 4000056655665556, mail jane [at] example [dot] com, iban gb29nwbk60161331926819",
    "token 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 and sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "call 030 1234 5678 or (415) 555-2671; from 2001:db8::8a2e:370:7334 and 10.0.0.1",
];

fn repeat(lines: &[String], bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut n = 0;
    while n < bytes {
        for l in lines {
            n += l.len();
            out.push(l.clone());
        }
    }
    out
}

/// MB/s of `detect` over `texts`, repeated for at least `seconds`; and matches per pass.
fn throughput(texts: &[String], seconds: f64) -> (f64, usize) {
    let d = Detectors::default();
    let bytes: usize = texts.iter().map(String::len).sum();
    let mut passes = 0usize;
    let mut found = 0usize;
    let t = Instant::now();
    while passes == 0 || t.elapsed().as_secs_f64() < seconds {
        found = 0;
        for s in texts {
            found += detect(s, &d).len();
        }
        passes += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    ((bytes * passes) as f64 / secs / 1e6, found)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let t = Instant::now();
    detect("warm up: jane@example.com", &Detectors::default());
    println!(
        "first call (compiles the patterns): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let generated = generated_text(Profile::default());
    // What the HTTP ingest bench sends (`http_ingest`'s defaults).
    let ingest_like = generated_text(Profile {
        text_bytes: 700,
        pii_rate: 0.3,
        ..Profile::default()
    });
    let logs = repeat(
        &LOG_LINES
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
        1 << 20,
    );
    let pii = repeat(
        &PII_LINES
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
        1 << 20,
    );
    println!("| text | fields | avg bytes | MB/s (one core) | matches per pass |");
    println!("|---|---|---|---|---|");
    for (name, texts) in [
        ("(a) generated agent text, no PII", &generated),
        ("(a) tool calls and logs, no PII", &logs),
        ("(b) dense PII and secrets", &pii),
        ("(c) http_ingest's agent text, PII in 30%", &ingest_like),
    ] {
        let (mbs, found) = throughput(texts, seconds);
        let avg = texts.iter().map(String::len).sum::<usize>() / texts.len().max(1);
        println!("| {name} | {} | {avg} | {mbs:.1} | {found} |", texts.len());
    }
}
