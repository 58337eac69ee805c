//! `agentrail reindex --data-dir DIR [--tenant T]`: deletes a tenant's query store and rebuilds
//! it from the ledger (the ledger is the only source of truth; the index is derived). The
//! rebuild is the service's ([`agentrail_service::reindex`]): with the vault, so sealed content
//! is searchable by token again, and with the latest retention cutoffs. On a terminal, a
//! progress line per tenant.

use crate::progress::Progress;
use agentrail_event::TenantId;
use agentrail_ledger::{Config, DataDir, Ledger, list_tenants};
use anyhow::{Context, anyhow, bail};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(
    data_dir: &Path,
    tenant: Option<&str>,
    recompute_retention: bool,
) -> anyhow::Result<ExitCode> {
    let tenants = match tenant {
        Some(t) => {
            let t = TenantId::parse(t).map_err(|e| anyhow!(e))?;
            if !DataDir::new(data_dir).tenant(&t).dir().is_dir() {
                bail!("tenant {t} does not exist in {}", data_dir.display());
            }
            vec![t]
        }
        None => list_tenants(data_dir)
            .with_context(|| format!("listing tenants of {}", data_dir.display()))?,
    };
    let mut cfg = Config::new(data_dir);
    cfg.checkpoint_interval = None;
    cfg.without_signer = true;
    let ledger = Ledger::open(cfg)
        .with_context(|| format!("opening the ledger in {}", data_dir.display()))?;
    for t in &tenants {
        let start = Instant::now();
        let now = recompute_retention
            .then(|| agentrail_ledger::Clock::now(&agentrail_ledger::SystemClock));
        let mut bar = Progress::labelled(0, "events", format!("{t}: "));
        let index =
            agentrail_service::reindex(&ledger, t, now, &mut |done, total| bar.set(done, total))
                .with_context(|| format!("rebuilding the index of tenant {t}"));
        bar.clear();
        let index = index?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{t}: {} events indexed in {secs:.2} s ({:.0} events/s), {:.1} MB",
            index.applied(),
            index.applied() as f64 / secs.max(1e-9),
            index.size_on_disk() as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}
