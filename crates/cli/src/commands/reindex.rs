//! `agentrail reindex --data-dir DIR [--tenant T]`: deletes a tenant's query store and rebuilds
//! it from the ledger (the ledger is the only source of truth; the index is derived).

use agentrail_event::TenantId;
use agentrail_ledger::{Config, Ledger, list_tenants};
use anyhow::{Context, anyhow, bail};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(data_dir: &Path, tenant: Option<&str>) -> anyhow::Result<ExitCode> {
    let tenants = match tenant {
        Some(t) => {
            let t = TenantId::parse(t).map_err(|e| anyhow!(e))?;
            if !data_dir.join("tenants").join(t.as_str()).is_dir() {
                bail!("tenant {t} does not exist in {}", data_dir.display());
            }
            vec![t]
        }
        None => list_tenants(data_dir)
            .with_context(|| format!("listing tenants of {}", data_dir.display()))?,
    };
    let mut cfg = Config::new(data_dir);
    cfg.checkpoint_interval = None;
    let ledger = Ledger::open(cfg)
        .with_context(|| format!("opening the ledger in {}", data_dir.display()))?;
    // The index holds the tokenized content of sealed fields for search: it needs the vault
    // (the master key from AGENTRAIL_MASTER_KEY or system/master.key), as the server does.
    let master = std::env::var("AGENTRAIL_MASTER_KEY").ok();
    let content = if master.is_some() || data_dir.join("system").join("master.key").exists() {
        let privacy = agentrail_server::privacy::Privacy::open(data_dir, master.as_deref())
            .map_err(|e| anyhow!(e))?;
        Some(privacy.content_source())
    } else {
        None
    };
    let retention = agentrail_server::retention::Retention::new(data_dir);
    for t in &tenants {
        let start = Instant::now();
        // The cutoffs of the tenant's latest retention run: purged content stays purged.
        let cutoffs = retention.cutoffs(t).map_err(|e| anyhow!(e.message))?;
        let index = agentrail_index::reindex(&ledger, data_dir, t, content.clone(), cutoffs)
            .with_context(|| format!("rebuilding the index of tenant {t}"))?;
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
