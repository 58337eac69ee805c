//! One budget of open files for every per-tenant handle, so any number of tenants works under a
//! process's file limit. The budget (`max_open_files`, or three quarters of the soft
//! `RLIMIT_NOFILE`) is shared out by what each handle costs: an open ledger tenant holds 4 files
//! (active segment, entries, tree, checkpoint log), an open index 3 per SQLite connection (the
//! database, its WAL, its shared memory; a writer and up to [`INDEX_READERS`] readers), every
//! chain log 1. Each kind of handle is an LRU bounded by its share; the rest of the budget is
//! headroom for sockets, sealed-segment reads and exports.

/// Read connections kept per open index.
pub const INDEX_READERS: usize = 2;
const FILES_PER_TENANT: u64 = 4;
const FILES_PER_INDEX: u64 = 3 * (1 + INDEX_READERS as u64);

/// How the budget is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBudget {
    pub total: u64,
    pub ledger_tenants: usize,
    pub indexes: usize,
    /// Each kind of chain log (access, retention, token vault, key log) keeps this many open.
    pub logs_per_kind: usize,
}

/// The soft limit on open files of this process, if it can be read.
pub fn file_limit() -> Option<u64> {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    l.current
}

/// Files this process has open now (Linux: entries of /proc/self/fd).
pub fn open_files() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

impl FileBudget {
    /// `configured` 0: three quarters of the soft limit (1,024 when unknown). The configured
    /// caps of ledger tenants and indexes still apply when lower.
    pub fn new(configured: u64, max_tenants: usize, max_indexes: usize) -> FileBudget {
        let total = if configured > 0 {
            configured
        } else {
            file_limit().unwrap_or(1024).saturating_mul(3) / 4
        }
        .max(64);
        let share = |percent: u64, each: u64| ((total * percent / 100) / each).max(1) as usize;
        FileBudget {
            total,
            ledger_tenants: share(30, FILES_PER_TENANT).min(max_tenants.max(1)),
            indexes: share(35, FILES_PER_INDEX).min(max_indexes.max(1)),
            logs_per_kind: share(5, 1),
        }
    }

    /// What the shares hold at most, in files.
    pub fn planned(&self) -> u64 {
        self.ledger_tenants as u64 * FILES_PER_TENANT
            + self.indexes as u64 * FILES_PER_INDEX
            + 4 * self.logs_per_kind as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_stay_inside_the_budget() {
        for total in [64, 716, 1024, 10_000, 1 << 20] {
            let b = FileBudget::new(total, usize::MAX, usize::MAX);
            assert!(b.planned() <= total * 85 / 100, "{b:?}");
            assert!(b.ledger_tenants >= 1 && b.indexes >= 1 && b.logs_per_kind >= 1);
        }
        // Configured caps win when lower.
        let b = FileBudget::new(1 << 20, 256, 128);
        assert_eq!((b.ledger_tenants, b.indexes), (256, 128));
    }
}
