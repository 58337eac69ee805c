//! Pinned checkpoints: the newest signed checkpoint of each tenant, kept outside the data
//! directory (`trust_dir`, ideally another volume or host mount), so that whoever can rewrite the
//! data directory cannot make the log forget what it already signed.
//!
//! Whoever holds the data directory but not the trust directory can re-chain every hash after
//! an edit, truncate the checkpoint log and delete the index; without a pin the rewritten log
//! would open, verify and be signed again. With one, a tenant whose records do not contain the
//! pinned tree (shorter, or a different root at the pinned size) is refused at open, no
//! checkpoint is signed over it, and the offline verifier names it. The pin only moves forward.
//!
//! `<trust_dir>/tenants/<tenant>.checkpoint`: the C2SP signed checkpoint text, written atomically
//! after the checkpoint is durable in the tenant's own log.

use crate::files::write_atomic;
use agentrail_event::TenantId;
use agentrail_merkle::Hash;
use agentrail_note::{Verifier, open_checkpoint};
use std::path::{Path, PathBuf};

/// A tenant's pinned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub size: u64,
    pub root: Hash,
    pub text: String,
}

/// Where a tenant's pin is kept.
pub fn pin_path(trust_dir: &Path, tenant: &TenantId) -> PathBuf {
    trust_dir
        .join("tenants")
        .join(format!("{}.checkpoint", tenant.as_str()))
}

/// The tenant's pin (`None`: none yet), checked: signed by `verifier`, for `origin`.
pub fn read_pin(
    trust_dir: &Path,
    tenant: &TenantId,
    verifier: &Verifier,
    origin: &str,
) -> Result<Option<Pin>, String> {
    let path = pin_path(trust_dir, tenant);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let (cp, _) = open_checkpoint(&bytes, verifier, &[]).map_err(|e| {
        format!(
            "the pinned checkpoint {} does not verify with the log's key: {e}",
            path.display()
        )
    })?;
    if cp.origin != origin {
        return Err(format!(
            "the pinned checkpoint {} is for origin {:?}, not {origin:?}",
            path.display(),
            cp.origin
        ));
    }
    Ok(Some(Pin {
        size: cp.size,
        root: cp.root,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }))
}

/// Pins `text` (a checkpoint of `size`) unless the pin already covers more.
pub fn write_pin(
    trust_dir: &Path,
    tenant: &TenantId,
    size: u64,
    text: &str,
    verifier: &Verifier,
    origin: &str,
) -> Result<(), String> {
    if let Some(p) = read_pin(trust_dir, tenant, verifier, origin)?
        && p.size > size
    {
        return Ok(());
    }
    let path = pin_path(trust_dir, tenant);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    write_atomic(&path, text.as_bytes(), 0o644).map_err(|e| e.to_string())
}

/// Why a tree of `size` events, whose root over its first `n` is `root_at(n)`, does not hold
/// a signed tree of `signed_size` with `signed_root` (`what` names it in the answer, e.g. "the
/// checkpoint pinned in /mnt/trust"): `None` when it does.
pub fn conflict(
    signed_size: u64,
    signed_root: &Hash,
    what: &str,
    size: u64,
    root_at: impl FnOnce(u64) -> Option<Hash>,
) -> Option<String> {
    if size < signed_size {
        return Some(format!(
            "the ledger holds {size} events but {what} covers {signed_size}: its end was cut"
        ));
    }
    match root_at(signed_size) {
        Some(r) if r == *signed_root => None,
        Some(_) => Some(format!(
            "the ledger's first {signed_size} events are not those of {what}: they were rewritten"
        )),
        None => Some(format!(
            "the root of the ledger's first {signed_size} events cannot be read to compare with {what}"
        )),
    }
}

/// [`conflict`] with a tenant's pin.
pub fn pin_conflict(
    pin: &Pin,
    size: u64,
    root_at: impl FnOnce(u64) -> Option<Hash>,
    trust_dir: &Path,
) -> Option<String> {
    let what = format!("the checkpoint pinned in {}", trust_dir.display());
    conflict(pin.size, &pin.root, &what, size, root_at)
}
