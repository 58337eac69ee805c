//! `agentrail verify --data-dir DIR [--tenant T]`: offline, read-only verification of every
//! record, hash, chain, session chain, causal link, tree node and signed checkpoint, and the
//! chain of each tenant's access log, retention log, token vault and key log (and of the system
//! integrity and API key logs), each against the head its tenant's latest checkpoint commits. On a terminal, a progress line per tenant (bytes of its segments).

use crate::progress::Progress;
use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_ledger::DataDir;
use agentrail_ledger::anchors::Anchored;
use agentrail_ledger::{
    Anchors, list_tenants, read_origin_prefix, read_verifier, verify_tenant_with_progress,
};
use agentrail_note::Verifier;
use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub struct VerifyArgs<'a> {
    pub data_dir: &'a Path,
    pub tenant: Option<&'a str>,
    pub key: Option<&'a str>,
    pub trust_dir: Option<&'a Path>,
    pub allow_unsigned_tail: bool,
    /// A file of kept ingest answers or receipts (JSON lines, each with its `checkpoint`).
    pub receipts: Option<&'a Path>,
}

/// What a client kept, by tenant: the checkpoints its answers carried and the events they
/// acknowledged.
#[derive(Default)]
struct Kept {
    checkpoints: Vec<(String, u64, agentrail_merkle::Hash)>,
    events: HashMap<u64, (String, agentrail_merkle::Hash)>,
}

/// Reads a receipts file: each line an ingest answer `{"receipts": [...], "checkpoint": …}` or
/// one receipt with its answer's `checkpoint` (what `agentrail ingest --receipts` prints).
/// Every checkpoint must verify with `verifier`; its origin names the tenant.
fn read_receipts(
    path: &Path,
    verifier: &Verifier,
    prefix: &str,
) -> anyhow::Result<HashMap<TenantId, Kept>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the receipts {}", path.display()))?;
    let mut out: HashMap<TenantId, Kept> = HashMap::new();
    let mut seen: HashMap<String, TenantId> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{} line {}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{at}: not JSON"))?;
        let cp = v["checkpoint"]
            .as_str()
            .ok_or_else(|| anyhow!("{at}: no \"checkpoint\" (answers from a server without signed receipts prove nothing)"))?;
        let tenant = match seen.get(cp) {
            Some(t) => t.clone(),
            None => {
                let (c, _) = agentrail_note::open_checkpoint(cp.as_bytes(), verifier, &[])
                    .map_err(|e| {
                        anyhow!("{at}: the checkpoint does not verify with the key: {e}")
                    })?;
                let t = c
                    .origin
                    .strip_prefix(&format!("{prefix}/tenants/"))
                    .and_then(|t| TenantId::parse(t).ok())
                    .ok_or_else(|| {
                        anyhow!(
                            "{at}: checkpoint origin {:?} is not a tenant of this log",
                            c.origin
                        )
                    })?;
                out.entry(t.clone())
                    .or_default()
                    .checkpoints
                    .push((at.clone(), c.size, c.root));
                seen.insert(cp.to_owned(), t.clone());
                t
            }
        };
        let receipts = match v.get("receipts") {
            Some(Value::Array(a)) => a.clone(),
            _ => vec![v.clone()],
        };
        let kept = out.entry(tenant).or_default();
        for r in receipts {
            let (Some(seq), Some(hash)) = (r["seq"].as_u64(), r["hash"].as_str()) else {
                bail!("{at}: a receipt without seq and hash: {r}");
            };
            let hash = agentrail_event::hash::from_hex(hash)
                .ok_or_else(|| anyhow!("{at}: hash {hash:?} is not 64 hex digits"))?;
            kept.events.insert(seq, (at.clone(), hash));
        }
    }
    Ok(out)
}

pub fn run(a: VerifyArgs<'_>) -> anyhow::Result<ExitCode> {
    let VerifyArgs {
        data_dir,
        tenant,
        key,
        trust_dir,
        allow_unsigned_tail,
        receipts,
    } = a;
    let verifier: Verifier = match key {
        Some(k) => k.parse().map_err(|e| anyhow!("--key: {e}"))?,
        None => read_verifier(data_dir)?,
    };
    let prefix = read_origin_prefix(data_dir)
        .with_context(|| format!("reading the origin of {}", data_dir.display()))?;
    let tenants = match tenant {
        Some(t) => {
            let t = TenantId::parse(t).map_err(|e| anyhow!(e))?;
            if !DataDir::new(data_dir).tenant(&t).dir().is_dir() {
                return Err(anyhow!(
                    "tenant {t} does not exist in {}",
                    data_dir.display()
                ));
            }
            vec![t]
        }
        None => list_tenants(data_dir)
            .with_context(|| format!("listing tenants of {}", data_dir.display()))?,
    };
    let mut kept = match receipts {
        Some(p) => read_receipts(p, &verifier, &prefix)?,
        None => HashMap::new(),
    };
    if tenant.is_none()
        && let Some(t) = kept.keys().find(|t| !tenants.contains(t))
    {
        // A tenant the receipts name is gone altogether: the strongest form of a drop.
        bail!(
            "the receipts are for tenant {t}, which {} does not hold",
            data_dir.display()
        );
    }
    let mut failed = 0usize;
    let (mut events, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    for t in &tenants {
        let began = Instant::now();
        let mut bar = Progress::bytes(0, format!("{t}: "));
        let k = kept.remove(t).unwrap_or_default();
        let anchors = Anchors {
            trust_dir,
            checkpoints: k.checkpoints,
            events: k.events,
            without_logs: false,
        };
        let acknowledged = anchors.events.len();
        let mut r = verify_tenant_with_progress(
            data_dir,
            t,
            &verifier,
            &prefix,
            &anchors,
            &mut |done, total| bar.set(done, total),
        );
        if acknowledged > 0 && r.failure.is_none() {
            r.notes.push(format!(
                "{acknowledged} kept receipts: every event there, as acknowledged"
            ));
        }
        // A key given from outside is the reader's trust: what no checkpoint signed by it covers
        // is unattested (a forged tail after a clean shutdown looks exactly like this).
        if key.is_some() && !allow_unsigned_tail && r.failure.is_none() && r.events > r.checkpointed
        {
            r.failure = Some(agentrail_ledger::Damage {
                tenant: t.to_string(),
                file: "checkpoints/log".into(),
                offset: None,
                seq: Some(r.checkpointed),
                reason: format!(
                    "{} of {} events (from seq {}) are covered by no signed checkpoint; --allow-unsigned-tail accepts them",
                    r.events - r.checkpointed,
                    r.events,
                    r.checkpointed
                ),
            });
        }
        bar.clear();
        let secs = began.elapsed().as_secs_f64().max(1e-9);
        events += r.events;
        bytes += r.bytes;
        match &r.failure {
            None => println!(
                "{t}: ok: {} events, {} segments, {} checkpoints (latest covers {}), root {}, {:.1} MB in {:.2} s",
                r.events,
                r.segments,
                r.checkpoints,
                r.checkpointed,
                to_hex(&r.root),
                r.bytes as f64 / 1e6,
                secs
            ),
            Some(d) => {
                failed += 1;
                println!("{t}: FAILED after {} verified events: {d}", r.events);
            }
        }
        for n in &r.notes {
            println!("{t}: note: {n}");
        }
        // The tenant's chain logs are hash-chained on their own: who read what, retention
        // runs, the token vault and the wrapped keys (a damaged one of these refuses reads,
        // reveals or sealing although the ledger verifies).
        // (What the latest checkpoint commits of each was checked with the tenant above.)
        let layout = DataDir::new(data_dir);
        for log in Anchored::ALL.into_iter().filter(|a| !a.system()) {
            let (what, path) = (log.label(), log.path(&layout, t));
            if !path.exists() {
                continue;
            }
            match agentrail_ledger::scan_chain_log(&path, log.redactable()) {
                Ok(scan) => println!(
                    "{t}: {what} ok: {} records chained{}",
                    scan.records,
                    if scan.file_len > scan.valid_len {
                        " (a torn tail will be cut on the next start)"
                    } else {
                        ""
                    }
                ),
                Err(e) => {
                    failed += 1;
                    println!("{t}: {what} FAILED: {e}");
                }
            }
        }
    }
    let layout = DataDir::new(data_dir);
    for log in Anchored::ALL {
        let Some(path) = log.system_path(&layout) else {
            continue;
        };
        if tenant.is_some() || !path.exists() {
            continue;
        }
        match agentrail_ledger::scan_chain_log(&path, false) {
            Ok(scan) => println!("{} ok: {} records chained", log.label(), scan.records),
            Err(e) => {
                failed += 1;
                println!("{} FAILED: {e}", log.label());
            }
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "{} tenants, {failed} failed; {events} events, {:.1} MB in {secs:.2} s ({:.0} MB/s)",
        tenants.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
