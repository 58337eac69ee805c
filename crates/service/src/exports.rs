//! Export jobs: each runs on its own thread into `<data-dir>/tenants/<id>/exports/<export_id>/`;
//! progress is kept in memory, the result on disk (`manifest.json`), so an export survives a
//! restart. A job interrupted by a crash is resumed at the next start and, following the plan
//! it recorded, writes the same files and manifest. A named destination keeps a watermark
//! (`destinations/<name>.json`: the next seq to export), so re-running exports only new events.
//!
//! A Parquet export asked with `view=decrypted` holds the sealed content opened (tokenized) in its
//! content columns. Erasure must reach it: every erasure in a tenant removes the data files of
//! its content exports held here (`erased.json` records when; the signed manifest stays), and a
//! content export still running when an erasure happens removes its own on finishing. Exports
//! of stored events hold ciphertext only and need nothing: shredding the key erased them.

use crate::error::ServiceError;
use agentrail_event::TenantId;
use agentrail_export::{
    ContentOpener, DATA_DIR, ExportRequest, FileFormat, MANIFEST_FILE, Selection, SignedManifest,
};
use agentrail_ledger::Ledger;
use agentrail_ledger::files::write_atomic;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::sync::lock;
use agentrail_vault::Vault;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The request a job was started with (`request.json` in its directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    pub format: FileFormat,
    pub selection: Selection,
    pub max_file_bytes: u64,
    pub destination: Option<String>,
    /// Parquet: the sealed content opened into the content columns (`view=decrypted`).
    #[serde(default)]
    pub content: bool,
    /// Against the newest checkpoint the configured witnesses cosigned (its size bounds the
    /// range) rather than the latest, so `verify-export --min-witnesses` holds.
    #[serde(default)]
    pub cosigned: bool,
    /// The cosigned checkpoint, pinned when the job starts (a resumed job uses the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// A job's state as served.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportStatus {
    pub export_id: String,
    pub tenant_id: String,
    /// running, done, failed, interrupted, or erased (a content export an erasure removed).
    pub status: String,
    pub events_done: u64,
    pub events_total: u64,
    pub error: Option<String>,
    /// Data files and `manifest.json`, once done.
    pub files: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub manifest: Option<serde_json::Value>,
    pub destination: Option<String>,
}

#[derive(Debug, Clone)]
struct Running {
    done: u64,
    total: u64,
    error: Option<String>,
    finished: bool,
}

/// The export jobs: a job of the service.
#[derive(Debug)]
pub struct Exports {
    ledger: Arc<Ledger>,
    layout: DataDir,
    running: Arc<Mutex<HashMap<(TenantId, String), Running>>>,
    stop: Arc<AtomicBool>,
    /// One job per destination at a time.
    destinations: Mutex<()>,
    vault: Arc<Vault>,
    /// How many erasures each tenant had since start, and when the last was: a content export
    /// that saw the count change while it ran removes its files.
    erasures: Arc<Mutex<HashMap<TenantId, (u64, String)>>>,
}

const ERASED_FILE: &str = "erased.json";

/// Removes the data files of a finished content export (an erasure reached it); idempotent.
fn remove_content(dir: &Path, erased_at: &str) -> Result<(), ServiceError> {
    let fail = |e: std::io::Error| ServiceError::internal(format!("{}: {e}", dir.display()));
    let marker = serde_json::to_vec_pretty(&serde_json::json!({ "erased_at": erased_at }))
        .map_err(|e| ServiceError::internal(e.to_string()))?;
    // The marker first: from now on nothing serves the files, whatever happens below.
    write_atomic(&dir.join(ERASED_FILE), &marker, 0o644)
        .map_err(|e| ServiceError::internal(e.to_string()))?;
    match std::fs::remove_dir_all(dir.join(DATA_DIR)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

fn read_request(dir: &Path) -> Option<JobRequest> {
    std::fs::read(dir.join("request.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Export ids and destination names: `[a-z0-9_-]{1,64}`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Destination {
    next_seq: u64,
    /// An export started for this destination and not finished yet.
    pending: Option<String>,
    exports: Vec<String>,
}

impl Exports {
    /// `vault` opens the content of `view=decrypted` exports.
    pub fn new(ledger: Arc<Ledger>, vault: Arc<Vault>) -> Exports {
        Exports {
            layout: DataDir::new(ledger.data_dir()),
            ledger,
            running: Arc::new(Mutex::new(HashMap::new())),
            stop: Arc::new(AtomicBool::new(false)),
            destinations: Mutex::new(()),
            vault,
            erasures: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// After an erasure in `tenant` (its keys are shredded): removes the data files of every
    /// content export of the tenant held here; a running one does so when it finishes.
    pub fn content_erased(&self, tenant: &TenantId, erased_at: &str) -> Result<(), ServiceError> {
        // The count first, the scan second: a job that finishes after the scan sees the count.
        {
            let mut e = lock(&self.erasures);
            let entry = e.entry(tenant.clone()).or_default();
            *entry = (entry.0 + 1, erased_at.to_owned());
        }
        let Ok(entries) = std::fs::read_dir(self.layout.tenant(tenant).exports_dir()) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let dir = e.path();
            if dir.join(MANIFEST_FILE).exists() && read_request(&dir).is_some_and(|r| r.content) {
                remove_content(&dir, erased_at)?;
            }
        }
        Ok(())
    }

    pub fn dir(&self, t: &TenantId, id: &str) -> PathBuf {
        self.layout.tenant(t).export(id)
    }

    fn dest_path(&self, t: &TenantId, name: &str) -> PathBuf {
        self.layout.tenant(t).destination(name)
    }

    fn read_dest(&self, t: &TenantId, name: &str) -> Result<Destination, ServiceError> {
        match std::fs::read(self.dest_path(t, name)) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ServiceError::internal(format!("destination {name}: {e}"))),
            Err(_) => Ok(Destination::default()),
        }
    }

    fn write_dest(&self, t: &TenantId, name: &str, d: &Destination) -> Result<(), ServiceError> {
        let p = self.dest_path(t, name);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ServiceError::internal(e.to_string()))?;
        }
        let b = serde_json::to_vec_pretty(d).map_err(|e| ServiceError::internal(e.to_string()))?;
        write_atomic(&p, &b, 0o644)
            .map_err(|e| ServiceError::internal(format!("{}: {e}", p.display())))
    }

    /// Starts an export (or, for a destination with an unfinished one, resumes that one).
    pub fn start(
        &self,
        tenant: &TenantId,
        mut req: JobRequest,
        new_id: String,
    ) -> Result<String, ServiceError> {
        let _g = lock(&self.destinations);
        let id = match &req.destination {
            Some(name) => {
                let mut d = self.read_dest(tenant, name)?;
                if let Some(p) = &d.pending {
                    p.clone()
                } else {
                    // Only what the destination has not received yet.
                    req.selection = Selection {
                        from_seq: Some(d.next_seq),
                        ..Selection::default()
                    };
                    d.pending = Some(new_id.clone());
                    self.write_dest(tenant, name, &d)?;
                    new_id
                }
            }
            None => new_id,
        };
        let dir = self.dir(tenant, &id);
        std::fs::create_dir_all(&dir).map_err(|e| ServiceError::internal(e.to_string()))?;
        let req_path = dir.join("request.json");
        let req = match std::fs::read(&req_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ServiceError::internal(format!("{}: {e}", req_path.display())))?,
            Err(_) => {
                let b = serde_json::to_vec_pretty(&req)
                    .map_err(|e| ServiceError::internal(e.to_string()))?;
                write_atomic(&req_path, &b, 0o644)
                    .map_err(|e| ServiceError::internal(e.to_string()))?;
                req
            }
        };
        self.spawn(tenant.clone(), id.clone(), req);
        Ok(id)
    }

    fn spawn(&self, tenant: TenantId, id: String, req: JobRequest) {
        let key = (tenant.clone(), id.clone());
        {
            let mut r = lock(&self.running);
            if r.get(&key).is_some_and(|j| !j.finished) {
                return; // already running
            }
            r.insert(
                key.clone(),
                Running {
                    done: 0,
                    total: 0,
                    error: None,
                    finished: false,
                },
            );
        }
        let running = self.running.clone();
        let stop = self.stop.clone();
        let ledger = self.ledger.clone();
        let dir = self.dir(&tenant, &id);
        let dest = req
            .destination
            .as_ref()
            .map(|n| (n.clone(), self.dest_path(&tenant, n)));
        let erasures = self.erasures.clone();
        let seen = lock(&erasures).get(&tenant).map_or(0, |e| e.0);
        let content = req.content.then(|| {
            let (vault, tenant) = (self.vault.clone(), tenant.clone());
            ContentOpener(Arc::new(move |v: &serde_json::Value| {
                agentrail_vault::sealed_content(&vault, &tenant, v)
            }))
        });
        let spawned = std::thread::Builder::new()
            .name(format!("export-{id}"))
            .spawn(move || {
                let er = ExportRequest {
                    tenant: tenant.clone(),
                    selection: req.selection.clone(),
                    format: req.format,
                    max_file_bytes: req.max_file_bytes,
                    content,
                    checkpoint: req.checkpoint.clone(),
                };
                let result = agentrail_export::export(&ledger, &er, &dir, |done, total| {
                    if let Some(j) = lock(&running).get_mut(&key) {
                        j.done = done;
                        j.total = total;
                    }
                    !stop.load(Ordering::Acquire)
                });
                let erased_at = lock(&erasures)
                    .get(&tenant)
                    .filter(|e| e.0 != seen)
                    .map(|e| e.1.clone());
                let result = match (result, erased_at) {
                    (Ok(_), Some(at)) if req.content => {
                        tracing::info!(%tenant, export_id = %id, "an erasure happened while the export ran: its content is removed");
                        remove_content(&dir, &at)
                            .map(|()| None)
                            .map_err(|e| agentrail_export::ExportError::Bad(e.to_string()))
                    }
                    (r, _) => r.map(Some),
                };
                let error = match result {
                    Ok(None) => None,
                    Ok(Some(m)) => {
                        if let Some((name, path)) = dest {
                            // Advance the watermark only once the manifest is durable.
                            let mut d: Destination = std::fs::read(&path)
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or_default();
                            d.next_seq = d.next_seq.max(m.manifest.end_seq);
                            d.pending = None;
                            d.exports.push(id.clone());
                            let b = serde_json::to_vec_pretty(&d).unwrap_or_default();
                            if let Err(e) = write_atomic(&path, &b, 0o644) {
                                tracing::error!(destination = %name, error = %e, "cannot advance the watermark");
                            }
                        }
                        tracing::info!(%tenant, export_id = %id, events = m.manifest.count, "export done");
                        None
                    }
                    Err(agentrail_export::ExportError::Cancelled) => None,
                    Err(e) => {
                        tracing::error!(%tenant, export_id = %id, error = %e, "export failed");
                        Some(e.to_string())
                    }
                };
                if let Some(j) = lock(&running).get_mut(&key) {
                    j.error = error;
                    j.finished = true;
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an export thread");
        }
    }

    /// The state of an export, from memory or from its directory.
    pub fn status(&self, tenant: &TenantId, id: &str) -> Result<ExportStatus, ServiceError> {
        let dir = self.dir(tenant, id);
        if !valid_name(id) || !dir.is_dir() {
            return Err(ServiceError::not_found(format!(
                "no export {id:?} in this tenant"
            )));
        }
        let req = read_request(&dir);
        let mut st = ExportStatus {
            export_id: id.to_owned(),
            tenant_id: tenant.to_string(),
            status: "interrupted".into(),
            events_done: 0,
            events_total: 0,
            error: None,
            files: Vec::new(),
            manifest: None,
            destination: req.and_then(|r| r.destination),
        };
        if let Some(j) = lock(&self.running).get(&(tenant.clone(), id.to_owned())) {
            st.events_done = j.done;
            st.events_total = j.total;
            st.error = j.error.clone();
            st.status = match (&j.error, j.finished) {
                (Some(_), _) => "failed".into(),
                (None, false) => "running".into(),
                (None, true) => "interrupted".into(),
            };
        }
        if let Ok(b) = std::fs::read(dir.join(MANIFEST_FILE)) {
            let m: SignedManifest = serde_json::from_slice(&b)
                .map_err(|e| ServiceError::internal(format!("export {id}: {e}")))?;
            st.status = "done".into();
            st.events_done = m.manifest.count;
            st.events_total = m.manifest.count;
            st.files = m.manifest.files.iter().map(|f| f.name.clone()).collect();
            st.files.push(MANIFEST_FILE.into());
            st.manifest = serde_json::to_value(&m).ok();
            if let Ok(b) = std::fs::read(dir.join(ERASED_FILE)) {
                let at: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                st.status = "erased".into();
                st.error = Some(format!(
                    "its content was removed by an erasure at {}; export again",
                    at["erased_at"].as_str().unwrap_or("an unknown time")
                ));
                st.files.clear();
            }
        }
        Ok(st)
    }

    /// The path of a file of a finished export, if `name` is one of its files.
    pub fn file(&self, tenant: &TenantId, id: &str, name: &str) -> Result<PathBuf, ServiceError> {
        let st = self.status(tenant, id)?;
        if st.status != "done" {
            return Err(ServiceError::NotReady(format!(
                "export {id} is {}",
                st.status
            )));
        }
        if !st.files.iter().any(|f| f == name) {
            return Err(ServiceError::not_found(format!(
                "export {id} has no file {name:?}"
            )));
        }
        Ok(self.dir(tenant, id).join(name))
    }

    /// Resumes every export a crash interrupted (a directory with a request but no manifest).
    pub fn resume_interrupted(&self) {
        let Ok(tenants) = self.ledger.tenants() else {
            return;
        };
        for t in tenants {
            let Ok(entries) = std::fs::read_dir(self.layout.tenant(&t).exports_dir()) else {
                continue;
            };
            for e in entries.flatten() {
                let dir = e.path();
                let id = e.file_name().to_string_lossy().into_owned();
                if dir.join(MANIFEST_FILE).exists() || !valid_name(&id) {
                    continue;
                }
                let Some(req) = std::fs::read(dir.join("request.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<JobRequest>(&b).ok())
                else {
                    continue;
                };
                tracing::info!(tenant = %t, export_id = %id, "resuming an interrupted export");
                self.spawn(t.clone(), id, req);
            }
        }
    }

    /// Asks running jobs to stop after their current chunk (they resume at the next start).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}
