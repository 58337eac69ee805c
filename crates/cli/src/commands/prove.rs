//! `agentrail checkpoint` and `agentrail prove`: a tenant's latest signed checkpoint, and
//! inclusion or consistency proofs against it, straight from a data directory.

use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_ledger::{Config, Ledger, SignedCheckpoint};
use agentrail_note::TlogProof;
use anyhow::{Context, anyhow, bail};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn open(data_dir: &Path, tenant: &str) -> anyhow::Result<(Ledger, TenantId)> {
    let tenant = TenantId::parse(tenant).map_err(|e| anyhow!(e))?;
    if !data_dir.join("tenants").join(tenant.as_str()).is_dir() {
        bail!("tenant {tenant} does not exist in {}", data_dir.display());
    }
    let mut cfg = Config::new(data_dir);
    cfg.checkpoint_interval = None;
    let ledger = Ledger::open(cfg)
        .with_context(|| format!("opening the ledger in {}", data_dir.display()))?;
    Ok((ledger, tenant))
}

/// The latest checkpoint, signing one first if the tree grew since.
fn current(ledger: &Ledger, tenant: &TenantId) -> anyhow::Result<SignedCheckpoint> {
    Ok(ledger.checkpoint(tenant)?)
}

pub fn checkpoint(data_dir: &Path, tenant: &str) -> anyhow::Result<ExitCode> {
    let (ledger, tenant) = open(data_dir, tenant)?;
    print!("{}", current(&ledger, &tenant)?.text);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProofFormat {
    /// c2sp.org/tlog-proof@v1 for inclusion proofs; base64 hashes, one per line, for
    /// consistency proofs.
    Text,
    /// Hex hashes with sizes, roots and the checkpoint.
    Json,
}

pub struct ProveArgs<'a> {
    pub seq: Option<u64>,
    pub event_id: Option<&'a str>,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub size: Option<u64>,
    pub format: ProofFormat,
}

pub fn prove(data_dir: &Path, tenant: &str, a: ProveArgs<'_>) -> anyhow::Result<ExitCode> {
    let (ledger, tenant) = open(data_dir, tenant)?;
    let cp = current(&ledger, &tenant)?;
    if let Some(from) = a.from {
        let to = a.to.unwrap_or(cp.size);
        let proof = ledger.consistency_proof(&tenant, from, to)?;
        let (r1, r2) = (ledger.root_at(&tenant, from)?, ledger.root_at(&tenant, to)?);
        match a.format {
            ProofFormat::Json => println!(
                "{:#}",
                json!({
                    "tenant": tenant.as_str(),
                    "from": from,
                    "to": to,
                    "root_from": to_hex(&r1),
                    "root_to": to_hex(&r2),
                    "proof": proof.iter().map(to_hex).collect::<Vec<_>>(),
                    "checkpoint": (to == cp.size).then_some(&cp.text),
                })
            ),
            ProofFormat::Text => {
                use base64::Engine;
                for h in &proof {
                    println!("{}", base64::engine::general_purpose::STANDARD.encode(h));
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let seq = match (a.seq, a.event_id) {
        (Some(s), None) => s,
        (None, Some(id)) => ledger
            .find(&tenant, id)?
            .ok_or_else(|| anyhow!("tenant {tenant} has no event with event_id {id:?}"))?,
        _ => bail!("give exactly one of --seq, --event-id, or --from for a consistency proof"),
    };
    let size = a.size.unwrap_or(cp.size);
    let proof = ledger.inclusion_proof(&tenant, seq, size)?;
    let event = ledger.read(&tenant, seq)?;
    let leaf = agentrail_merkle::leaf_hash(&event.bytes);
    let root = ledger.root_at(&tenant, size)?;
    agentrail_merkle::verify_inclusion(seq, size, &leaf, &proof, &root)
        .map_err(|e| anyhow!("the proof does not verify against the tree: {e}"))?;
    match a.format {
        ProofFormat::Json => println!(
            "{:#}",
            json!({
                "tenant": tenant.as_str(),
                "seq": seq,
                "tree_size": size,
                "event_hash": to_hex(&event.hash),
                "leaf_hash": to_hex(&leaf),
                "root": to_hex(&root),
                "proof": proof.iter().map(to_hex).collect::<Vec<_>>(),
                "checkpoint": (size == cp.size).then_some(&cp.text),
            })
        ),
        ProofFormat::Text => {
            if size != cp.size {
                bail!(
                    "tlog-proof text needs the proof at the checkpoint's size {}; use --format json for size {size}",
                    cp.size
                );
            }
            print!(
                "{}",
                TlogProof {
                    extra: None,
                    index: seq,
                    hashes: proof,
                    checkpoint: cp.text.clone(),
                }
                .to_text()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
