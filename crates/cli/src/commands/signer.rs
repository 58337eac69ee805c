//! `agentrail signer`: the log key in its own process ([`agentrail_ledger::signer`]).

use agentrail_ledger::pkcs11::Pkcs11Signer;
use agentrail_ledger::signer::{KeyFile, LogSigner, SignerService};
use agentrail_note::Signer;
use anyhow::{Context, anyhow, bail};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Reads the key, or creates it (0600) named `name`.
fn key(path: &Path, name: &str) -> anyhow::Result<Signer> {
    match std::fs::read_to_string(path) {
        Ok(s) => Signer::from_private_key_string(s.trim())
            .map_err(|e| anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow!("generating a key: {e}"))?;
            let signer = Signer::from_seed(name, seed)
                .map_err(|e| anyhow!("cannot make a key named {name:?}: {e}"))?;
            agentrail_ledger::files::write_atomic(
                path,
                format!("{}\n", signer.to_private_key_string()).as_bytes(),
                0o600,
            )
            .map_err(|e| anyhow!("writing {}: {}", path.display(), e.source))?;
            eprintln!(
                "created the log key {} ({})",
                path.display(),
                signer.verifier()
            );
            Ok(signer)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn run(key_path: &Path, name: &str, state: &Path, socket: &Path) -> anyhow::Result<ExitCode> {
    let spec = key_path.to_string_lossy();
    let key: Box<dyn LogSigner> = if spec.starts_with("pkcs11:") {
        Box::new(Pkcs11Signer::open(&spec, name).map_err(|e| anyhow!(e))?)
    } else {
        Box::new(KeyFile::new(key(key_path, name)?))
    };
    let verifier = key.verifier().clone();
    let service =
        Arc::new(SignerService::open(key, state).map_err(|e| anyhow!("the signer's record: {e}"))?);
    if socket.exists() {
        // A socket nobody answers on is what a killed signer leaves; a live one is refused.
        if UnixStream::connect(socket).is_ok() {
            bail!("{} is in use by another signer", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("listening on {}", socket.display()))?;
    // The signer's user and group may connect: the server runs as another user in that group,
    // so it can ask for signatures but cannot read the key file.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("restricting {}", socket.display()))?;
    eprintln!("signer {verifier} listening on {}", socket.display());
    service.serve(listener)?;
    Ok(ExitCode::SUCCESS)
}
