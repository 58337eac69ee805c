//! The storage guard: what keeps a full disk from becoming an outage.
//!
//! A file of zeros (`system/reserve`, `reserve_bytes`) holds disk space back. When free space
//! falls below half of it, or a write fails and little space is left, the guard says "full":
//! ingest is refused with 503 `storage_full` before anything is written, and the reserve is
//! deleted, so the writes that reads need (their `audit.access` records, the index catching up
//! on what was acknowledged) still find space. Once free space is back above twice the reserve,
//! the reserve is written again and ingest resumes — no restart. A tenant whose write failed
//! heals on its own (`agentrail_ledger::Config::heal_after`).
//!
//! Reads fail closed: if even the released space runs out, a read whose access record cannot
//! be written is refused with 503 `storage_unavailable`, never served unrecorded.

use crate::error::ServiceError;
use agentrail_ledger::layout::DataDir;
use agentrail_ledger::sync::lock;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often free space is looked at on the ingest path (statvfs is cheap; this bounds it).
const CHECK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct StorageGuard {
    data_dir: PathBuf,
    reserve: PathBuf,
    bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Why ingest is refused, since when.
    full: Option<(String, Instant)>,
    checked: Option<Instant>,
    /// Times the guard went "full", for metrics.
    episodes: u64,
}

/// What the guard reports (readiness, metrics).
#[derive(Debug, Clone)]
pub struct StorageStatus {
    pub full: Option<String>,
    pub available_bytes: Option<u64>,
    pub episodes: u64,
}

fn available(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl StorageGuard {
    /// Writes the reserve if it is missing (and there is room for it: otherwise the guard
    /// starts "full").
    pub fn open(layout: &DataDir, bytes: u64) -> StorageGuard {
        let g = StorageGuard {
            data_dir: layout.root().to_path_buf(),
            reserve: layout.system().reserve(),
            bytes,
            state: Mutex::new(State::default()),
        };
        if bytes == 0 {
            let _ = std::fs::remove_file(&g.reserve);
        } else {
            let mut st = lock(&g.state);
            g.check(&mut st, true);
        }
        g
    }

    /// Whether ingest may write now.
    pub fn admit(&self) -> Result<(), ServiceError> {
        let mut st = lock(&self.state);
        let due = st.checked.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
        if due {
            self.check(&mut st, false);
        }
        match &st.full {
            None => Ok(()),
            Some((why, _)) => Err(ServiceError::unavailable(
                "storage_full",
                format!("ingest is paused: {why}; reads are still served"),
                5,
            )),
        }
    }

    /// After a write failed: if space is short, go "full" now (a failure for another reason
    /// leaves the guard as it is; the tenant heals on its own).
    pub fn write_failed(&self) {
        let mut st = lock(&self.state);
        self.check(&mut st, true);
        if st.full.is_none()
            && self.bytes == 0
            && available(&self.data_dir).is_ok_and(|a| a < 1 << 20)
        {
            self.go_full(&mut st, "the disk is full".into());
        }
    }

    pub fn status(&self) -> StorageStatus {
        let st = lock(&self.state);
        StorageStatus {
            full: st.full.as_ref().map(|(w, _)| w.clone()),
            available_bytes: available(&self.data_dir).ok(),
            episodes: st.episodes,
        }
    }

    fn check(&self, st: &mut State, force_write: bool) {
        st.checked = Some(Instant::now());
        if self.bytes == 0 {
            // No reserve: "full" only after a failure, until some space is back.
            if st.full.is_some() && available(&self.data_dir).is_ok_and(|a| a >= 4 << 20) {
                self.recovered(st);
            }
            return;
        }
        let Ok(free) = available(&self.data_dir) else {
            return;
        };
        let have_reserve = std::fs::metadata(&self.reserve).is_ok_and(|m| m.len() >= self.bytes);
        match &st.full {
            None if !have_reserve => {
                if free >= 2 * self.bytes || force_write && free >= self.bytes + (1 << 20) {
                    if let Err(e) = self.write_reserve() {
                        self.go_full(st, format!("cannot write the space reserve: {e}"));
                    }
                } else {
                    self.go_full(st, format!("only {free} bytes are free on the data disk"));
                }
            }
            None if free < self.bytes / 2 => {
                self.go_full(st, format!("only {free} bytes are free on the data disk"));
            }
            None => {}
            Some(_) if free >= 2 * self.bytes => match self.write_reserve() {
                Ok(()) => self.recovered(st),
                Err(e) => tracing::warn!(error = %e, "writing the space reserve again"),
            },
            Some(_) => {}
        }
    }

    fn go_full(&self, st: &mut State, why: String) {
        if st.full.is_some() {
            return;
        }
        // Give the space back to the writers reads depend on.
        let _ = std::fs::remove_file(&self.reserve);
        tracing::error!(reason = %why, "storage full: ingest paused, reserve released");
        st.full = Some((why, Instant::now()));
        st.episodes += 1;
    }

    fn recovered(&self, st: &mut State) {
        if let Some((_, since)) = st.full.take() {
            tracing::warn!(
                after_ms = since.elapsed().as_millis() as u64,
                "storage recovered: ingest resumes"
            );
        }
    }

    fn write_reserve(&self) -> std::io::Result<()> {
        let tmp = self.reserve.with_extension("new");
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            let chunk = vec![0u8; 1 << 20];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.reserve)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}
