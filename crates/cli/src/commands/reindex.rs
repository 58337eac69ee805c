//! `agentrail reindex --data-dir DIR [--tenant T] [--index postgres://…]`: deletes a tenant's
//! query store (its SQLite file, or its rows in the shared PostgreSQL store) and rebuilds it from
//! the ledger (the ledger is the only source of truth; the index is derived). The
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
    index: Option<&str>,
    recompute_retention: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_index(index, data_dir)?;
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
        let index = agentrail_service::reindex(&ledger, &*store, t, now, &mut |done, total| {
            bar.set(done, total)
        })
        .with_context(|| format!("rebuilding the index of tenant {t}"));
        bar.clear();
        let index = index?;
        let secs = start.elapsed().as_secs_f64();
        let size = index
            .size_on_disk()
            .map_or(String::new(), |b| format!(", {:.1} MB", b as f64 / 1e6));
        println!(
            "{t}: {} events indexed in {secs:.2} s ({:.0} events/s){size}",
            index.applied(),
            index.applied() as f64 / secs.max(1e-9),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The query store a configuration names: `postgres://…` (or `postgresql://…`, or libpq
/// `key=value` pairs containing `host=`), connected and migrated; none: the embedded SQLite files
/// of the data directory. The server and `reindex` both open it here.
pub fn open_index(
    url: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<std::sync::Arc<dyn agentrail_index::Store>> {
    match url {
        None => Ok(std::sync::Arc::new(agentrail_index::SqliteStore::new(
            data_dir,
        ))),
        Some(u)
            if u.starts_with("postgres://")
                || u.starts_with("postgresql://")
                || u.contains("host=") =>
        {
            let store = agentrail_pgindex::PgStore::connect(u)
                .with_context(|| "opening the PostgreSQL query store".to_string())?;
            Ok(std::sync::Arc::new(store))
        }
        Some(u) => bail!(
            "index {u:?}: a query store is postgres://user[:password]@host[:port]/db (or leave it out for the embedded SQLite files)"
        ),
    }
}
