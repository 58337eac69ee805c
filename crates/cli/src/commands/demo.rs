//! `agentrail demo`: drives a running server (it starts nothing itself) with the workload
//! generator across several tenants, then asks a few of the auditor's questions and prints the
//! answers, and checks one inclusion proof locally against the signed checkpoint. Re-running it
//! is harmless: the same events are idempotent replays.

use crate::client::{Client, Remote, enc};
use agentrail_event::hash::from_hex;
use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Instant;

const TENANTS: [&str; 4] = ["demo-fintech", "demo-health", "demo-legal", "demo-saas"];

fn key(root: &Client, tenant: &str, scopes: &[&str], name: &str) -> anyhow::Result<String> {
    let a = root.post_json(
        &format!("/v1/tenants/{tenant}/keys"),
        &json!({"scopes": scopes, "name": name}),
    )?;
    if !a.ok() {
        return Err(a.error());
    }
    a.json()?["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no key in the answer"))
}

pub fn run(r: &Remote, tenants: usize, events: usize) -> anyhow::Result<ExitCode> {
    if tenants == 0 || tenants > TENANTS.len() {
        bail!("--tenants must be 1..={}", TENANTS.len());
    }
    let root = Client::new(r);
    println!("== 1. tenants and keys (root key)");
    let mut readers = Vec::new();
    let mut firsts: Vec<Vec<Value>> = Vec::new();
    for (i, tenant) in TENANTS.iter().take(tenants).enumerate() {
        let a = root.post_json("/v1/tenants", &json!({"tenant_id": tenant}))?;
        match a.status {
            201 => println!("created tenant {tenant}"),
            409 => println!("tenant {tenant} exists (re-running the demo)"),
            _ => return Err(a.error()),
        }
        let writer = key(&root, tenant, &["events:write"], "demo writer")?;
        let reader = key(&root, tenant, &["events:read"], "demo auditor")?;
        let w = root.with_key(&writer);
        let started = Instant::now();
        let mut generator = agentrail_testkit::Generator::new(7 + i as u64, tenant, 8);
        let mut sent = 0usize;
        let mut sample = Vec::new();
        while sent < events {
            let n = (events - sent).min(500);
            let batch: Vec<Value> = generator.by_ref().take(n).collect();
            if sample.len() < 200 {
                sample.extend(batch.iter().take(200 - sample.len()).cloned());
            }
            let mut body = Vec::new();
            for ev in &batch {
                body.extend_from_slice(ev.to_string().as_bytes());
                body.push(b'\n');
            }
            let a = w.post_retrying(
                &format!("/v1/tenants/{tenant}/events"),
                "application/x-ndjson",
                &body,
                20,
            )?;
            if !a.ok() {
                return Err(a.error());
            }
            sent += n;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  {tenant}: {sent} events acknowledged durable in {secs:.2}s ({:.0} events/s)",
            sent as f64 / secs
        );
        readers.push(root.with_key(&reader));
        firsts.push(sample);
    }

    let tenant = TENANTS[0];
    let reader = &readers[0];
    let sample = &firsts[0];
    let base = format!("/v1/tenants/{tenant}");
    println!("\n== 2. the auditor's questions ({tenant}, read-only key)");

    let session = sample
        .iter()
        .find_map(|e| e["session_id"].as_str())
        .ok_or_else(|| anyhow!("no session in the sample"))?;
    let v = reader.get_json(&format!("{base}/sessions/{}?limit=5", enc(session)))?;
    println!(
        "session {session}: {} events, chain unbroken: {}; first events:",
        v["total"], v["chain"]["unbroken"]
    );
    for e in v["events"].as_array().into_iter().flatten() {
        println!(
            "  seq {:>5}  {:<20} {}",
            e["seq"],
            e["event_type"].as_str().unwrap_or(""),
            e["event_id"].as_str().unwrap_or("")
        );
    }

    let tool_call = sample
        .iter()
        .find(|e| e["event_type"] == "tool.invocation")
        .and_then(|e| e["event_id"].as_str())
        .ok_or_else(|| anyhow!("no tool invocation in the sample"))?;
    let v = reader.get_json(&format!("{base}/events/{}/causes", enc(tool_call)))?;
    println!("why did tool call {tool_call} happen? its causal chain:");
    for n in v["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {} {}",
            n["event_type"].as_str().unwrap_or(""),
            n["event_id"].as_str().unwrap_or(""),
            n["payload"]["model"]["name"].as_str().unwrap_or("")
        );
    }

    let v = reader.get_json(&format!(
        "{base}/anomalies?kind=fast_approval&max_latency_ms=1000&limit=1000"
    ))?;
    let fast = v["anomalies"].as_array().map_or(0, Vec::len);
    println!("approvals decided in under a second (rubber-stamping?): {fast}");
    if let Some(a) = v["anomalies"].as_array().and_then(|a| a.first()) {
        println!("  e.g. {} {}", a["event_id"], a["detail"]);
    }
    let v = reader.get_json(&format!(
        "{base}/anomalies?kind=executed_after_rejection&limit=1000"
    ))?;
    println!(
        "tool calls executed although a human rejected the action: {}",
        v["anomalies"].as_array().map_or(0, Vec::len)
    );
    let v = reader.get_json(&format!("{base}/reviews?decision=reject&limit=1000"))?;
    println!(
        "human rejections: {}",
        v["reviews"].as_array().map_or(0, Vec::len)
    );
    if let Some(model) = sample
        .iter()
        .find_map(|e| e["payload"]["model"]["name"].as_str())
    {
        let v = reader.get_json(&format!("{base}/models/{}?limit=10", enc(model)))?;
        println!(
            "decisions of model {model} by version: {}",
            v["counts_by_version"]
        );
    }

    println!("\n== 3. verify, don't trust: an inclusion proof checked here, offline");
    let vkey = reader.get(&format!("{base}/verifier-key"))?;
    if !vkey.ok() {
        return Err(vkey.error());
    }
    let verifier: agentrail_note::Verifier = vkey
        .text()
        .trim()
        .parse()
        .map_err(|e| anyhow!("verifier key: {e}"))?;
    let ev = reader.get_json(&format!("{base}/events/{}?view=stored", enc(tool_call)))?;
    let mut stored = ev["event"].clone();
    let claimed = stored
        .as_object_mut()
        .and_then(|m| m.remove("hash"))
        .and_then(|h| h.as_str().and_then(from_hex))
        .ok_or_else(|| anyhow!("the event has no hash"))?;
    let bytes = agentrail_event::json::to_canonical_vec(&stored)?;
    let hash = agentrail_event::hash::sha256(&bytes);
    let seq = stored["seq"]
        .as_u64()
        .ok_or_else(|| anyhow!("the event has no seq"))?;
    // Checkpoints are signed in the background (about once a second): wait for one that
    // covers the event.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let checkpoint = loop {
        let cp = reader.get(&format!("{base}/checkpoint"))?;
        if !cp.ok() {
            return Err(cp.error());
        }
        let (checkpoint, _) = agentrail_note::open_checkpoint(&cp.body, &verifier, &[])
            .map_err(|e| anyhow!("the checkpoint does not verify: {e}"))?;
        if checkpoint.size > seq || std::time::Instant::now() >= deadline {
            break checkpoint;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    println!(
        "checkpoint of {} signed by {}: size {}",
        checkpoint.origin,
        verifier.name(),
        checkpoint.size
    );
    let p = reader.get_json(&format!(
        "{base}/proofs/inclusion?seq={seq}&tree_size={}",
        checkpoint.size
    ))?;
    let proof: Vec<[u8; 32]> = p["proof"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().and_then(from_hex))
        .collect();
    let leaf = agentrail_merkle::leaf_hash(&bytes);
    let ok = hash == claimed
        && agentrail_merkle::verify_inclusion(
            seq,
            checkpoint.size,
            &leaf,
            &proof,
            &checkpoint.root,
        )
        .is_ok();
    println!(
        "event {tool_call} (seq {seq}): recomputed hash matches: {}; {}-hash proof against the signed root: {}",
        hash == claimed,
        proof.len(),
        if ok { "VERIFIED" } else { "FAILED" }
    );

    if readers.len() > 1 {
        println!("\n== 4. tenant isolation");
        let a = readers[1].get(&format!("{base}/sessions/{}", enc(session)))?;
        println!(
            "{}'s auditor key asking for {tenant}'s session: HTTP {} ({})",
            TENANTS[1],
            a.status,
            a.json()
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_default()
        );
    }
    println!(
        "\nnext: agentrail query --tenant {tenant} session {session}   (with AGENTRAIL_KEY set to a reader key)"
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
