//! `agentrail checkpoint` and `agentrail prove`: a tenant's latest signed checkpoint, and
//! inclusion or consistency proofs against it, straight from a data directory.

use agentrail_event::TenantId;
use agentrail_ledger::{Config, Ledger, SignedCheckpoint, proofs};
use anyhow::{Context, anyhow, bail};
use std::path::Path;
use std::process::ExitCode;

fn open(data_dir: &Path, tenant: &str) -> anyhow::Result<(Ledger, TenantId)> {
    let tenant = TenantId::parse(tenant).map_err(|e| anyhow!(e))?;
    if !agentrail_ledger::DataDir::new(data_dir)
        .tenant(&tenant)
        .dir()
        .is_dir()
    {
        bail!("tenant {tenant} does not exist in {}", data_dir.display());
    }
    let mut cfg = Config::new(data_dir);
    cfg.checkpoint_interval = None;
    cfg.without_signer = true;
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
        let p = proofs::consistency(&ledger, &tenant, &cp, from, a.to)?;
        match a.format {
            ProofFormat::Json => println!("{:#}", p.to_json()),
            ProofFormat::Text => print!("{}", p.to_text()),
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
    let p = proofs::inclusion(&ledger, &tenant, &cp, seq, a.size)?;
    match a.format {
        ProofFormat::Json => println!("{:#}", p.to_json()),
        ProofFormat::Text => print!("{}", p.to_tlog_text(&cp)?),
    }
    Ok(ExitCode::SUCCESS)
}
