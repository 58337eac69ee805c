//! `agentrail demo`: drives a running server (it starts nothing itself) with the workload
//! generator across several tenants, then asks a few of the auditor's questions and prints the
//! answers, and checks one inclusion proof locally against the signed checkpoint. It hands over:
//! the keys it made are printed and saved (mode 0600) as a shell file to `source`, and it ends
//! with the exact commands to run next. Events are stamped with the current time (the last one
//! now), with event ids unique to the run, so re-running adds another run's events.

use crate::client::{Client, Remote, enc};
use agentrail_event::hash::from_hex;
use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

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

/// The demo's traffic: the generator's mix (reviews, fast approvals, rejections, most of them
/// executed anyway, failures, sub-agents, a little clock skew, personal data in a fifth of the
/// prompts), events 20 ms apart, the last one at `now_ms`; ids `<tenant>-<run>-<n>`.
fn traffic(seed: u64, tenant: &str, run: &str, events: usize, now_ms: i64) -> Vec<Value> {
    // Rejections, and rejected actions executed anyway, often enough that every question the
    // demo hands over has an answer in a few hundred events (at the generator's defaults a
    // tenant of 600 events had as few as 3 rejections and, now and then, none executed).
    let profile = agentrail_testkit::Profile {
        gap_ms: 20,
        pii_rate: 0.2,
        reject_rate: 0.3,
        execute_after_reject_rate: 0.7,
        ..Default::default()
    };
    let generator = agentrail_testkit::Generator::with_profile(seed, tenant, 8, profile)
        .with_id_prefix(&format!("{tenant}-{run}"));
    // The stream is deterministic: a dry run says how long it spans, so that it ends now.
    let last = |evs: &[Value]| {
        evs.iter()
            .filter_map(|e| e["occurred_at"].as_str())
            .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond())
            .max()
            .unwrap_or(0)
    };
    let dry: Vec<Value> = generator.clone().starting_at(0).take(events).collect();
    let span = last(&dry);
    generator.starting_at(now_ms - span).take(events).collect()
}

/// A run's stamp: its start in ms, base 36 (`miq3k2x1`), short in every event id.
fn base36(mut n: i64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The shell name of a tenant's key: `DEMO_FINTECH_READER`.
fn var(tenant: &str, role: &str) -> String {
    format!("{}_{role}", tenant.replace('-', "_").to_uppercase())
}

pub fn run(
    r: &Remote,
    tenants: usize,
    events: usize,
    keys_file: &Path,
) -> anyhow::Result<ExitCode> {
    if tenants == 0 || tenants > TENANTS.len() {
        bail!("--tenants must be 1..={}", TENANTS.len());
    }
    let root = Client::new(r);
    let now = jiff::Timestamp::now();
    let run = base36(now.as_millisecond());
    let mut keys = format!(
        "# agentrail demo keys, {now:.0}: `source` this file. Each key is shown only once.\nexport AGENTRAIL_URL={}\n",
        r.url
    );
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
        for (role, k, scope) in [
            ("WRITER", &writer, "events:write"),
            ("READER", &reader, "events:read"),
        ] {
            println!("  ${} = {k}   ({scope})", var(tenant, role));
            let _ = writeln!(keys, "export {}={k}", var(tenant, role));
        }
        let w = root.with_key(&writer);
        let all = traffic(7 + i as u64, tenant, &run, events, now.as_millisecond());
        for batch in all.chunks(500) {
            let mut body = Vec::new();
            for ev in batch {
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
        }
        println!(
            "  {tenant}: {} events sent in batches of 500, each acknowledged once durable",
            all.len()
        );
        readers.push(root.with_key(&reader));
        firsts.push(all.into_iter().take(200).collect());
    }
    save_keys(keys_file, &keys)?;
    println!("  (keys saved, mode 0600, in {})", keys_file.display());

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
    let reader_var = var(tenant, "READER");
    println!(
        "\nnext: the same questions from the CLI, with the auditor key this demo made\n  source {}",
        keys_file.display()
    );
    for q in [
        format!("session {session}"),
        format!("causes {tool_call}"),
        "anomalies fast_approval --max-latency-ms 1000".to_owned(),
        "anomalies executed_after_rejection".to_owned(),
        "reviews --decision reject".to_owned(),
    ] {
        println!("  AGENTRAIL_KEY=${reader_var} agentrail query --tenant {tenant} {q}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes the keys file readable by its owner only (created so, never widened afterwards).
fn save_keys(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An existing file keeps its mode on open: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        }
    }
    let mut f = options
        .open(path)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}
