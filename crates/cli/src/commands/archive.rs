//! `agentrail verify-archive URL --tenant T --key K`: offline verification of a tenant's WORM
//! archive from the archive alone (no data directory, no server): every manifest's signature
//! and place in the chain, every object's size and SHA-256, and the ledger's own checks of the
//! fetched segments (records, hashes, the chain across segments, sessions, causal links, the
//! Merkle root of every archived checkpoint, consistency between them). Exits 1 naming the
//! object and seq that failed.
//!
//! `agentrail restore URL --data-dir DIR --log-key FILE [--tenant T]`: rebuilds a data
//! directory from the archive (DESIGN.md §8.1; the runbook is in the README). The log key
//! comes from the operator's key backup: the archive holds no secret, and the key signs each
//! restored tenant's restore statement.
//!
//! Both read `file:///path` and `s3://bucket/prefix` archives ([`open_store`], also what
//! `serve` uses).

use crate::progress::Progress;
use agentrail_archive::ArchiveStore;
use agentrail_event::TenantId;
use agentrail_note::{Signer, Verifier};
use agentrail_service::archive_read::{self, RestoreOptions};
use anyhow::{Context, anyhow, bail};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Where an archive is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveAt {
    /// The archive: `s3://bucket/prefix` or `file:///path`.
    pub url: String,
    /// An S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
}

/// Opens the archive at `url`: `file:///path` or `s3://bucket/prefix` (credentials the usual
/// AWS way).
pub fn open_store(
    url: &str,
    endpoint: Option<String>,
    region: Option<String>,
) -> anyhow::Result<Arc<dyn ArchiveStore>> {
    if url.starts_with("s3://") {
        let store = agentrail_s3::S3Archive::open(&agentrail_s3::S3Config {
            url: url.to_owned(),
            endpoint,
            region,
            ..Default::default()
        })
        .map_err(|e| anyhow!("{e}"))?;
        Ok(Arc::new(store))
    } else if url.starts_with("file://") {
        Ok(Arc::new(
            agentrail_archive::FileArchive::from_url(url).map_err(|e| anyhow!("{e}"))?,
        ))
    } else {
        bail!("archive {url:?}: expected s3://bucket/prefix or file:///path")
    }
}

/// A progress line per tenant and phase.
struct Bars {
    bar: Option<(String, Progress)>,
}

impl Bars {
    fn set(&mut self, tenant: &str, phase: &str, done: u64, total: u64) {
        let label = format!("{tenant}: {phase} ");
        if self.bar.as_ref().is_none_or(|(l, _)| *l != label) {
            if let Some((_, b)) = &mut self.bar {
                b.clear();
            }
            let p = if phase == "index" {
                Progress::labelled(total, "events", label.clone())
            } else {
                Progress::bytes(total, label.clone())
            };
            self.bar = Some((label, p));
        }
        if let Some((_, b)) = &mut self.bar {
            b.set(done, total);
        }
    }

    fn clear(&mut self) {
        if let Some((_, b)) = &mut self.bar {
            b.clear();
        }
        self.bar = None;
    }
}

pub fn verify_archive(
    at: &ArchiveAt,
    tenant: &str,
    key: &str,
    scratch: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(tenant).map_err(|e| anyhow!("--tenant: {e}"))?;
    let key: Verifier = key.trim().parse().map_err(|e| anyhow!("--key: {e}"))?;
    let store = open_store(&at.url, at.endpoint.clone(), at.region.clone())?;
    let scratch = scratch.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let started = Instant::now();
    let mut bars = Bars { bar: None };
    let r = archive_read::verify_archive(&*store, &tenant, &key, &scratch, &mut |phase, d, n| {
        bars.set(tenant.as_str(), phase, d, n)
    });
    bars.clear();
    match r {
        Ok(r) => {
            let f = &r.fetched;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "ok: tenant {tenant}, {} events in {} segments ({:.1} MB) under {} manifests, every signature, digest and hash, the chain, and {} checkpoints (root {} at size {}) verified in {secs:.2} s ({:.1} MB/s)",
                f.events,
                f.segments.len(),
                f.bytes as f64 / 1e6,
                f.manifests,
                f.checkpoints.len(),
                r.root,
                f.events,
                f.bytes as f64 / 1e6 / secs
            );
            for p in &f.pending {
                println!(
                    "note: {p} covers events the archive does not hold yet; a later verify-archive checks it once they are archived"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            println!("FAILED: tenant {tenant}: {d}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub struct RestoreArgs<'a> {
    pub at: &'a ArchiveAt,
    pub data_dir: &'a Path,
    pub tenants: &'a [String],
    pub log_key: &'a Path,
}

pub fn restore(a: RestoreArgs<'_>) -> anyhow::Result<ExitCode> {
    let log_key = std::fs::read_to_string(a.log_key)
        .with_context(|| format!("reading the log key {}", a.log_key.display()))?;
    let verifier: Verifier = Signer::from_private_key_string(log_key.trim())
        .map_err(|e| anyhow!("--log-key: {e}"))?
        .verifier();
    let tenants = if a.tenants.is_empty() {
        None
    } else {
        Some(
            a.tenants
                .iter()
                .map(|t| TenantId::parse(t).map_err(|e| anyhow!("--tenant: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let store = open_store(&a.at.url, a.at.endpoint.clone(), a.at.region.clone())?;
    let started = Instant::now();
    let mut bars = Bars { bar: None };
    let r = archive_read::restore(
        &*store,
        &RestoreOptions {
            data_dir: a.data_dir.to_path_buf(),
            tenants,
            verifier,
            log_key,
        },
        &mut |t, phase, d, n| bars.set(t.as_str(), phase, d, n),
    );
    bars.clear();
    let restored = r.map_err(|e| anyhow!("{e}"))?;
    for r in &restored {
        let size = r
            .checkpoint
            .split('\n')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        println!(
            "{}: {} events ({:.1} MB, {} manifests) restored and verified, from the archived checkpoint of size {}; signed a checkpoint of size {size}; {} events indexed",
            r.tenant,
            r.events,
            r.bytes as f64 / 1e6,
            r.manifests,
            r.checkpoint_size
                .map_or_else(|| "none".to_owned(), |s| s.to_string()),
            r.indexed
        );
    }
    println!(
        "restored {} tenants into {} in {:.2} s; start it with `agentrail serve --data-dir {}` (a new root key is printed on its first start)",
        restored.len(),
        a.data_dir.display(),
        started.elapsed().as_secs_f64(),
        a.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
