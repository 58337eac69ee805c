//! What privacy costs per event, step by step, on one core: detecting and tokenizing PII in the
//! sensitive fields, sealing them (XChaCha20-Poly1305 under the subject's key), the whole ingest
//! step (`protect_batch`: both, plus new subject keys and token values made durable once per
//! batch), and what the indexer does per event (opening the sealed fields again for the hot
//! content and finding its tokens). Events: generated ~1 KiB decisions, tool calls and reviews,
//! `--pii-rate` (default 0.3) of prompts quoting personal data.
//!
//! `cargo bench -p agentrail-service --bench privacy_cost [-- --events 20000 --pii-rate 0.3]`

use agentrail_event::{TenantId, ValidEvent, validate_value};
use agentrail_index::IndexSource;
use agentrail_ledger::{DataDir, ManualClock};
use agentrail_service::privacy::{Privacy, VaultIndexSource, open_vault, sensitive_paths};
use agentrail_testkit::bench::arg;
use agentrail_testkit::{Generator, Profile};
use agentrail_vault::{Aad, Detectors, seal_field, tokenize_value};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// The allocator the `agentrail` binary uses, so this measures what it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn events(n: usize, pii_rate: f64) -> Vec<ValidEvent> {
    let profile = Profile {
        text_bytes: 700,
        pii_rate,
        ..Profile::default()
    };
    Generator::with_profile(42, "bench", 64, profile)
        .take(n)
        .map(|mut e| {
            e.as_object_mut().map(|m| m.remove("tenant_id"));
            validate_value(e).expect("generated events are valid")
        })
        .collect()
}

fn sensitive_mut(ev: &mut ValidEvent) -> Vec<(String, &mut Value)> {
    let t = ev.value["event_type"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let paths: Vec<&str> = sensitive_paths(&t).collect();
    let Some(Value::Object(payload)) = ev.value.get_mut("payload") else {
        return Vec::new();
    };
    payload
        .iter_mut()
        .filter(|(k, _)| {
            paths
                .iter()
                .any(|p| p.strip_prefix("payload.") == Some(k.as_str()))
        })
        .map(|(k, v)| (format!("payload.{k}"), v))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--events")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let pii_rate: f64 = arg(&args, "--pii-rate")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3);
    let dir = agentrail_testkit::bench::scratch_dir();
    let layout = DataDir::new(dir.path());
    let vault = Arc::new(open_vault(&layout).expect("vault"));
    let clock = Arc::new(ManualClock::at("2026-11-26T00:00:00Z"));
    let now = agentrail_ledger::Clock::now(&*clock);
    let privacy = Privacy::new(vault.clone(), &layout, clock, None);
    let tenant = TenantId::parse("bench").expect("tenant");
    let base = events(n, pii_rate);
    let bytes: usize = base
        .iter()
        .map(|e| Value::Object(e.value.clone()).to_string().len())
        .sum();
    let sensitive: usize = base
        .clone()
        .iter_mut()
        .map(|e| {
            sensitive_mut(e)
                .iter()
                .map(|(_, v)| v.to_string().len())
                .sum::<usize>()
        })
        .sum();
    println!(
        "privacy cost per event, one core: {n} events, {} B each on average ({} B in sensitive fields), {:.0}% of prompts with personal data",
        bytes / n,
        sensitive / n,
        pii_rate * 100.0
    );
    println!("| step | µs/event | events/s (one core) | MB/s of events |");
    println!("|---|---|---|---|");
    let row = |name: &str, secs: f64| {
        println!(
            "| {name} | {:.2} | {:.0} | {:.1} |",
            secs * 1e6 / n as f64,
            n as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    };

    // The sensitive field values, taken out once: the two steps below time only their own work.
    let mut fields: Vec<(String, Option<String>, String, Value)> = Vec::new();
    for ev in &mut base.clone() {
        let id = ev.value["event_id"].as_str().unwrap_or_default().to_owned();
        let subject = ev
            .value
            .get("subject_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        for (path, v) in sensitive_mut(ev) {
            fields.push((id.clone(), subject.clone(), path, v.clone()));
        }
    }

    // Detection and tokenization only.
    let key = vault.token_key(&tenant, now).expect("token key");
    let detectors = Detectors::default();
    let mut found = Vec::new();
    let t = Instant::now();
    for (_, _, _, v) in &mut fields {
        tokenize_value(&key, &detectors, v, &mut found);
    }
    row("detect + tokenize", t.elapsed().as_secs_f64());
    let detected = found.len();

    // Sealing only (the keys exist: a first pass creates them).
    let seal_all = || {
        let mut out = 0;
        for (id, subject, path, v) in &fields {
            let sealed = seal_field(
                &vault,
                &tenant,
                subject.as_deref(),
                Aad::new(id, path),
                v,
                now,
            )
            .expect("seal");
            out += sealed["$enc"]["ct"].as_str().map_or(0, str::len);
        }
        out
    };
    seal_all();
    let t = Instant::now();
    std::hint::black_box(seal_all());
    row("seal (XChaCha20-Poly1305)", t.elapsed().as_secs_f64());

    // The whole ingest step, in batches of 1,000 as the HTTP benchmark sends them, on a fresh
    // tenant (new subject keys and token values included).
    let fresh = TenantId::parse("bench-fresh").expect("tenant");
    let mut evs = base.clone();
    let t = Instant::now();
    for chunk in evs.chunks_mut(1000) {
        privacy
            .sealing(&fresh, |s| s.protect_batch(chunk))
            .expect("protect");
    }
    row(
        "protect_batch (ingest: all of it, durable)",
        t.elapsed().as_secs_f64(),
    );

    // The indexer: the hot content of each stored event.
    let runs = Arc::new(agentrail_service::retention::run_logs(&layout));
    let source = VaultIndexSource::new(vault.clone(), runs, true);
    let stored: Vec<Value> = evs.into_iter().map(|e| Value::Object(e.value)).collect();
    let t = Instant::now();
    let mut tokens = 0;
    for v in &stored {
        if let Some(c) = source.content(&fresh, v) {
            tokens += c.tokens.len();
        }
    }
    row(
        "index content (open + find tokens)",
        t.elapsed().as_secs_f64(),
    );
    println!("\n{detected} values detected; {tokens} token occurrences in the index content");
}
