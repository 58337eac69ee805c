//! The data-directory layout: the one place that knows where every file lives. Every crate asks
//! [`DataDir`] for a path; nothing else joins path segments of a data directory. The tree it
//! describes is listed in `docs/format.md` ("Layout of a data directory"); a test keeps the two
//! in step.
//!
//! ```
//! use agentrail_ledger::layout::DataDir;
//! use agentrail_event::TenantId;
//! let d = DataDir::new("/var/lib/agentrail");
//! let acme = TenantId::parse("acme").unwrap();
//! assert!(d.tenant(&acme).access_log().ends_with("tenants/acme/access/log"));
//! assert!(d.system().keys().ends_with("system/keys.json"));
//! ```

use agentrail_event::TenantId;
use std::io;
use std::path::{Path, PathBuf};

/// A tenant's ledger files, relative to its directory (the ledger opens them by these names).
pub const LEDGER_DIR: &str = "ledger";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const ENTRIES_FILE: &str = "ledger/entries";
pub const TREE_FILE: &str = "ledger/tree";
/// Where a derived file found damaged is kept (for inspection) when it is rebuilt.
pub const ENTRIES_DAMAGED: &str = "ledger/entries.damaged";
pub const TREE_DAMAGED: &str = "ledger/tree.damaged";
pub const CHECKPOINT_LOG: &str = "checkpoints/log";

/// `ledger/<first seq, 20 digits>.seg`: names sort in seq order.
pub fn segment_name(first_seq: u64) -> String {
    format!("{LEDGER_DIR}/{first_seq:020}.seg")
}

/// A data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// The files of the whole data directory (`<data-dir>/system/`).
#[derive(Debug, Clone)]
pub struct SystemPaths {
    dir: PathBuf,
}

/// The files of one tenant (`<data-dir>/tenants/<id>/`, and its key log under `system/vault/`).
#[derive(Debug, Clone)]
pub struct TenantPaths {
    dir: PathBuf,
    vault_keys: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn system(&self) -> SystemPaths {
        SystemPaths {
            dir: self.root.join("system"),
        }
    }

    /// The folder holding one folder per tenant.
    pub fn tenants_dir(&self) -> PathBuf {
        self.root.join("tenants")
    }

    pub fn tenant(&self, tenant: &TenantId) -> TenantPaths {
        TenantPaths {
            dir: self.tenants_dir().join(tenant.as_str()),
            vault_keys: self.system().vault_keys(tenant),
        }
    }

    /// Where a new tenant's folder is built before it is renamed into place.
    pub fn tenant_staging(&self, tenant: &TenantId) -> PathBuf {
        self.tenants_dir().join(format!(".new-{tenant}"))
    }

    /// Deletes every file of a tenant: its folder and its key log (with a rewrite's leftover).
    /// Missing files are not an error.
    pub fn remove_tenant(&self, tenant: &TenantId) -> io::Result<()> {
        let t = self.tenant(tenant);
        match std::fs::remove_dir_all(t.dir()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for f in [t.vault_keys(), t.vault_keys_rewrite()] {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

impl SystemPaths {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The origin prefix, one line.
    pub fn origin(&self) -> PathBuf {
        self.dir.join("origin")
    }
    /// The Ed25519 checkpoint signing key (0600).
    pub fn log_key(&self) -> PathBuf {
        self.dir.join("log.key")
    }
    /// Its verifier key.
    pub fn log_vkey(&self) -> PathBuf {
        self.dir.join("log.vkey")
    }
    /// Locked by the process that has the ledger open.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// Disk space held in reserve, released when the disk fills so reads stay served.
    pub fn reserve(&self) -> PathBuf {
        self.dir.join("reserve")
    }
    /// API keys as older versions kept them (SHA-256 of each key, never a key): imported into
    /// [`SystemPaths::api_keys_log`] on the first start that finds it, then removed.
    pub fn keys(&self) -> PathBuf {
        self.dir.join("keys.json")
    }
    /// API key changes (created, revoked; SHA-256 of each key, never a key), a chain log (0600)
    /// whose head every tenant's checkpoint commits.
    pub fn api_keys_log(&self) -> PathBuf {
        self.dir.join("keys.log")
    }
    /// The root API key, written once on the first start (0600).
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root.key")
    }
    /// The master key wrapping every data key, unless given in `AGENTRAIL_MASTER_KEY` (0600).
    pub fn master_key(&self) -> PathBuf {
        self.dir.join("master.key")
    }
    /// The folder of the tenants' wrapped-key logs.
    pub fn vault_dir(&self) -> PathBuf {
        self.dir.join("vault")
    }
    /// A tenant's wrapped keys, an append-only chain log.
    pub fn vault_keys(&self, tenant: &TenantId) -> PathBuf {
        self.vault_dir().join(format!("{tenant}.keys"))
    }
    /// The integrity verifier's signed reports, a chain log.
    pub fn integrity_log(&self) -> PathBuf {
        self.dir.join("integrity").join("log")
    }
}

impl TenantPaths {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Segments, entries and tree.
    pub fn ledger_dir(&self) -> PathBuf {
        self.dir.join(LEDGER_DIR)
    }
    pub fn segment(&self, first_seq: u64) -> PathBuf {
        self.dir.join(segment_name(first_seq))
    }
    pub fn entries(&self) -> PathBuf {
        self.dir.join(ENTRIES_FILE)
    }
    pub fn tree(&self) -> PathBuf {
        self.dir.join(TREE_FILE)
    }
    /// The entries file as it was when found damaged (kept when it was rebuilt).
    pub fn entries_damaged(&self) -> PathBuf {
        self.dir.join(ENTRIES_DAMAGED)
    }
    /// The tree file as it was when found damaged.
    pub fn tree_damaged(&self) -> PathBuf {
        self.dir.join(TREE_DAMAGED)
    }
    pub fn checkpoint_log(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_LOG)
    }
    /// The query index (derived; may be deleted at any time).
    pub fn index_db(&self) -> PathBuf {
        self.dir.join("index").join("index.sqlite")
    }
    /// The last index found damaged, moved aside for inspection (the next one replaces it).
    pub fn index_damaged(&self) -> PathBuf {
        self.dir.join("index").join("index.sqlite.damaged")
    }
    /// Who read what: a chain log of `audit.access` records.
    pub fn access_log(&self) -> PathBuf {
        self.dir.join("access").join("log")
    }
    /// The retention runs, a chain log.
    pub fn retention_log(&self) -> PathBuf {
        self.dir.join("retention").join("log")
    }
    /// The token vault: token values sealed under their subject's key, a chain log.
    pub fn tokens_log(&self) -> PathBuf {
        self.dir.join("tokens").join("log")
    }
    /// The signed statement `agentrail restore` leaves: the tenant was rebuilt from the
    /// archive at its latest checkpoint, without the logs the archive does not carry.
    pub fn restored(&self) -> PathBuf {
        self.dir.join("restored")
    }
    /// The tenant's privacy and retention policy.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.json")
    }
    pub fn exports_dir(&self) -> PathBuf {
        self.dir.join("exports")
    }
    /// One export's files, `request.json` and `manifest.json`.
    pub fn export(&self, export_id: &str) -> PathBuf {
        self.exports_dir().join(export_id)
    }
    /// A named export destination's watermark.
    pub fn destination(&self, name: &str) -> PathBuf {
        self.dir.join("destinations").join(format!("{name}.json"))
    }
    /// The tenant's wrapped keys (under `system/vault/`).
    pub fn vault_keys(&self) -> PathBuf {
        self.vault_keys.clone()
    }
    /// What an interrupted rewrite of the key log leaves behind.
    pub fn vault_keys_rewrite(&self) -> PathBuf {
        self.vault_keys.with_extension("keys.rewrite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the layout names, relative to the data directory, with placeholders.
    fn every_path() -> Vec<String> {
        let d = DataDir::new("/d");
        let t = TenantId::parse("tt").unwrap_or_else(|e| panic!("{e}"));
        let s = d.system();
        let tp = d.tenant(&t);
        let rel = |p: PathBuf| {
            p.strip_prefix("/d")
                .map(|r| r.display().to_string())
                .unwrap_or_default()
                .replace("/tt/", "/<tenant_id>/")
                .replace("/tt.keys", "/<tenant_id>.keys")
        };
        vec![
            rel(s.origin()),
            rel(s.log_key()),
            rel(s.log_vkey()),
            rel(s.lock()),
            rel(s.reserve()),
            rel(s.api_keys_log()),
            rel(s.root_key()),
            rel(s.master_key()),
            rel(s.vault_keys(&t)),
            rel(s.integrity_log()),
            rel(tp.segment(0)).replace("00000000000000000000", "<first_seq>"),
            rel(tp.entries()),
            rel(tp.tree()),
            rel(tp.entries_damaged()),
            rel(tp.tree_damaged()),
            rel(tp.checkpoint_log()),
            rel(tp.index_db()),
            rel(tp.index_damaged()),
            rel(tp.access_log()),
            rel(tp.retention_log()),
            rel(tp.tokens_log()),
            rel(tp.restored()),
            rel(tp.policy()),
            rel(tp.export("<export_id>")),
            rel(tp.destination("<name>")),
        ]
    }

    /// docs/format.md lists every file of the layout, and nothing the layout does not name.
    #[test]
    fn format_doc_lists_every_path() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/format.md"))
                .unwrap_or_else(|e| panic!("{e}"));
        let start = doc
            .find("## Layout of a data directory")
            .unwrap_or_else(|| panic!("no layout section"));
        let block = &doc[start..];
        let open = block.find("```").unwrap_or(0) + 3;
        let close = open + block[open..].find("```").unwrap_or(0);
        // The tree as full paths: indentation is two spaces a level.
        let mut listed = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        for line in block[open..close].lines().skip(1) {
            let name = line.trim_start();
            if name.is_empty() {
                continue;
            }
            let depth = (line.len() - name.len()) / 2;
            let name = name
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            stack.truncate(depth);
            let full = format!("{}{}", stack.concat(), name);
            if name.ends_with('/') {
                stack.push(name);
            } else {
                listed.push(full.trim_start_matches("<data-dir>/").to_owned());
            }
        }
        let mut want = every_path();
        want.sort();
        listed.sort();
        assert_eq!(listed, want, "docs/format.md's tree and layout.rs disagree");
    }

    #[test]
    fn removing_a_tenant_removes_its_folder_and_key_log_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = DataDir::new(dir.path());
        let a = TenantId::parse("a").unwrap_or_else(|e| panic!("{e}"));
        let b = TenantId::parse("b").unwrap_or_else(|e| panic!("{e}"));
        for t in [&a, &b] {
            let p = d.tenant(t);
            for f in [p.access_log(), p.vault_keys(), p.policy()] {
                std::fs::create_dir_all(f.parent().unwrap_or(Path::new("/")))
                    .unwrap_or_else(|e| panic!("{e}"));
                std::fs::write(&f, b"x").unwrap_or_else(|e| panic!("{e}"));
            }
        }
        d.remove_tenant(&a).unwrap_or_else(|e| panic!("{e}"));
        assert!(!d.tenant(&a).dir().exists() && !d.tenant(&a).vault_keys().exists());
        assert!(d.tenant(&b).policy().exists() && d.tenant(&b).vault_keys().exists());
        // Again: nothing left to remove is fine.
        d.remove_tenant(&a).unwrap_or_else(|e| panic!("{e}"));
    }
}
