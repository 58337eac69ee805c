//! `agentrail witness`: a C2SP tlog-witness for agentrail logs ([`agentrail_server::witness`]),
//! its own HTTP server on its own data directory.

use agentrail_event::hash::{from_hex, to_hex};
use agentrail_ledger::treerecord::TreeRecord;
use agentrail_note::{Cosigner, Verifier};
use agentrail_server::witness::{Witness, serve};
use anyhow::{Context, anyhow};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// The cosigning key in `<dir>/witness.key`: its name, then its 32-byte Ed25519 seed in hex
/// (0600); created on first start.
fn key(dir: &Path, name: &str) -> anyhow::Result<Cosigner> {
    let path = dir.join("witness.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let mut lines = s.lines();
            let (Some(stored), Some(seed)) = (lines.next(), lines.next().and_then(from_hex)) else {
                return Err(anyhow!(
                    "{}: expected a name line and a hex seed line",
                    path.display()
                ));
            };
            Cosigner::from_seed(stored, seed).map_err(|e| anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow!("generating a key: {e}"))?;
            let key = Cosigner::from_seed(name, seed)
                .map_err(|e| anyhow!("cannot make a key named {name:?}: {e}"))?;
            agentrail_ledger::files::write_atomic(
                &path,
                format!("{name}\n{}\n", to_hex(&seed)).as_bytes(),
                0o600,
            )
            .map_err(|e| anyhow!("writing {}: {}", path.display(), e.source))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn run(dir: &Path, name: &str, listen: &str, logs: &[String]) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = key(dir, name)?;
    let logs = logs
        .iter()
        .map(|l| {
            l.parse::<Verifier>()
                .map_err(|e| anyhow!("--log {l:?}: not a verifier key: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if logs.is_empty() {
        anyhow::bail!("give the verifier key of at least one log (--log)");
    }
    let record = TreeRecord::open(&dir.join("cosigned.jsonl")).map_err(|e| anyhow!(e))?;
    let witness = Arc::new(Witness::new(key, logs, record));
    let vkey = witness.verifier().to_string();
    agentrail_ledger::files::write_atomic(
        &dir.join("witness.vkey"),
        format!("{vkey}\n").as_bytes(),
        0o644,
    )
    .map_err(|e| anyhow!("writing the verifier key: {}", e.source))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "witness {vkey} listening on http://{}",
            listener.local_addr()?
        );
        serve(listener, witness, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
