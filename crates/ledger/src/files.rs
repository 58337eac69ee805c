//! File-system helpers: names of the files in a tenant directory, durable creation, fsync with a
//! fault-injection hook, positional reads.

use crate::frame::{FileKind, encode_header};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Called before every fsync the ledger issues, with the path being synced; an error is treated
/// exactly like a failed fsync. Lets tests inject disk failures into the real code path.
pub type FsyncHook = Arc<dyn Fn(&Path) -> io::Result<()> + Send + Sync>;

/// The fsync policy: plain `sync_data`, optionally preceded by a hook.
#[derive(Clone, Default)]
pub struct Syncer {
    pub hook: Option<FsyncHook>,
}

impl fmt::Debug for Syncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Syncer {{ hook: {} }}", self.hook.is_some())
    }
}

impl Syncer {
    pub fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        if let Some(hook) = &self.hook {
            hook(path)?;
        }
        file.sync_data()
    }

    /// Makes a directory's entries (created, renamed, removed files) durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some(hook) = &self.hook {
            hook(dir)?;
        }
        File::open(dir)?.sync_all()
    }
}

pub use crate::layout::{
    CHECKPOINT_LOG, CHECKPOINTS_DIR, ENTRIES_FILE, LEDGER_DIR, TREE_FILE, segment_name,
};

/// The first seq of a segment file name, or `None` for other names.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments of a tenant directory, by first seq.
pub fn list_segments(tenant_dir: &Path) -> io::Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(tenant_dir.join(LEDGER_DIR))? {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Creates `path` holding only a header for `kind`, synced.
pub fn create_with_header(
    syncer: &Syncer,
    path: &Path,
    kind: FileKind,
    base: u64,
) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all_at(&encode_header(kind, base), 0)?;
    syncer.sync(&file, path)?;
    Ok(file)
}

pub fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Reads `len` bytes at `offset` (fewer only at the end of the file).
pub fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Makes a sealed segment read-only: it is never written again.
pub fn make_read_only(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms)
}

pub fn tenant_dir(data_dir: &Path, tenant: &agentrail_event::TenantId) -> PathBuf {
    crate::layout::DataDir::new(data_dir)
        .tenant(tenant)
        .dir()
        .to_path_buf()
}

/// Why [`write_atomic`] failed: the step, the file and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {path}: {source}")]
pub struct WriteFileError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// Replaces a small file durably and atomically: write `<path>.tmp` with `mode`, fsync, rename,
/// fsync the directory. Readers see the old file or the new one, never a part. Used for keys,
/// manifests, policies and other small state files across the workspace.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| WriteFileError { op, path, source }
    };
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err("create", &tmp))?;
    f.write_all(bytes).map_err(err("write", &tmp))?;
    f.sync_all().map_err(err("sync", &tmp))?;
    fs::rename(&tmp, path).map_err(err("rename", path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("sync", dir))
}
