//! `agentrail ingest --data-dir DIR --tenant T FILE`: validates every event of a file, then
//! stores them in batches through the service's one ingest operation
//! ([`agentrail_service::Service::ingest_events`]: the same tokenizing and sealing of sensitive
//! fields as over HTTP), printing each receipt (one JSON line, with the signed checkpoint that
//! covers it) once its batch is durable.
//! Nothing is appended unless every event of the file is valid.

use crate::input::{self, Format};
use agentrail_event::TenantId;
use agentrail_event::batch::parse_batch;
use agentrail_service::{Service, ServiceConfig};
use anyhow::{Context, anyhow};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(
    data_dir: &Path,
    tenant: &str,
    file: &Path,
    format: Option<Format>,
    batch_size: usize,
    signer: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::parse(tenant).map_err(|e| anyhow!(e))?;
    if batch_size == 0 {
        return Err(anyhow!("--batch-size must be at least 1"));
    }
    let bytes = input::read(file)?;
    let mut events = Vec::new();
    let mut invalid = 0usize;
    for item in parse_batch(&bytes, input::batch_format(file, format)) {
        match item.result {
            Ok(ev) => events.push(ev),
            Err(e) => {
                invalid += 1;
                for p in e.problems {
                    let path = if p.path.is_empty() {
                        "(event)"
                    } else {
                        &p.path
                    };
                    eprintln!(
                        "{}: {}: {path}: {}",
                        file.display(),
                        item.position,
                        p.reason
                    );
                }
            }
        }
    }
    if invalid > 0 {
        eprintln!("{invalid} invalid events; nothing was appended");
        return Ok(ExitCode::FAILURE);
    }
    // A short-lived process: no scheduled verification or retention runs of its own.
    let mut cfg = ServiceConfig::unscheduled(data_dir.to_owned());
    cfg.signer = signer;
    let opened = Service::open(cfg)
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    if let Some(key) = &opened.new_root_key {
        eprintln!(
            "new data directory; root key (shown once; also saved 0600 in {}):\n  {key}",
            opened.root_key_file.display()
        );
    }
    let service = opened.service;
    if service.create_tenant_offline(&tenant)? {
        eprintln!("created tenant {tenant}");
    }
    let total = events.len();
    let (mut appended, mut replayed) = (0usize, 0usize);
    let stdout = std::io::stdout();
    let mut rest = events;
    while !rest.is_empty() {
        let tail = rest.split_off(batch_size.min(rest.len()));
        let batch = std::mem::replace(&mut rest, tail);
        let receipts = service
            .ingest_events(&tenant, batch)
            .with_context(|| format!("appending after {appended} events"))?;
        // The same signed checkpoint an HTTP answer carries, on every receipt line.
        let checkpoint = service
            .sign_receipts(&tenant, &receipts, false)?
            .map(|(cp, _)| cp);
        let mut out = stdout.lock();
        for r in &receipts {
            if r.replayed {
                replayed += 1;
            } else {
                appended += 1;
            }
            let mut line = serde_json::to_value(r)?;
            if let (Some(m), Some(cp)) = (line.as_object_mut(), &checkpoint) {
                m.insert("checkpoint".into(), serde_json::Value::String(cp.clone()));
            }
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        // A printed receipt means durable: make sure it leaves the process now.
        out.flush()?;
    }
    let size = service.ledger().size(&tenant).unwrap_or(0);
    service.shutdown();
    eprintln!(
        "{total} events: {appended} appended, {replayed} already present (tenant {tenant}, size {size})"
    );
    Ok(ExitCode::SUCCESS)
}
