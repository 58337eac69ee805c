//! `file:///path`: objects as read-only files under a directory (the embedded default, tests,
//! and a mounted WORM volume). An object is written to a temporary name beside it, fsync'd,
//! made read-only (0444), then hard-linked to its key — a link never replaces an existing file,
//! so two writers cannot both win and a crash leaves either no object or the whole one — and
//! the directory is fsync'd. Files enforce no retention: whoever can write the directory can
//! still delete them, which is what S3 Object Lock is for; the archive manifest records the
//! retention asked.

use crate::store::{ArchiveError, ArchiveStore, ObjectInfo, Put, same_or_conflict, valid_key};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct FileArchive {
    root: PathBuf,
}

static TMP: AtomicU64 = AtomicU64::new(0);

impl FileArchive {
    /// The archive in directory `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> FileArchive {
        FileArchive { root: root.into() }
    }

    /// `file:///absolute/path`.
    pub fn from_url(url: &str) -> Result<FileArchive, ArchiveError> {
        let path = url
            .strip_prefix("file://")
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| ArchiveError::NotWorm {
                url: url.to_owned(),
                reason: "a file archive is file:///absolute/path".into(),
            })?;
        Ok(FileArchive::new(path))
    }

    fn path(&self, key: &str) -> Result<PathBuf, ArchiveError> {
        valid_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let key = key.to_owned();
        move |source| ArchiveError::Io { op, key, source }
    }

    /// The same bytes: AlreadyThere; others: Conflict.
    fn compare(&self, key: &str, path: &Path, bytes: &[u8]) -> Result<Put, ArchiveError> {
        let stored = fs::read(path).map_err(Self::io("read", key))?;
        same_or_conflict(key, &stored, bytes)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ArchiveStore for FileArchive {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn check(&self) -> Result<(), ArchiveError> {
        let not = |reason: String| ArchiveError::NotWorm {
            url: self.url(),
            reason,
        };
        if !self.root.is_absolute() {
            return Err(not("the directory must be an absolute path".into()));
        }
        fs::create_dir_all(&self.root).map_err(|e| not(format!("cannot create it: {e}")))?;
        let meta = fs::metadata(&self.root).map_err(|e| not(e.to_string()))?;
        if !meta.is_dir() {
            return Err(not("not a directory".into()));
        }
        Ok(())
    }

    fn put_once(
        &self,
        key: &str,
        bytes: &[u8],
        _retain_until: Option<&str>,
    ) -> Result<Put, ArchiveError> {
        let path = self.path(key)?;
        if path.exists() {
            return self.compare(key, &path, bytes);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(Self::io("create the folder of", key))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Self::io("write", key)(e));
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&dir).map_err(Self::io("sync the folder of", key))?;
                Ok(Put::Written)
            }
            // Someone wrote it meanwhile: theirs stays; same bytes or a conflict.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => self.compare(key, &path, bytes),
            Err(e) => Err(Self::io("link", key)(e)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        match fs::read(self.path(key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io("read", key)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArchiveError> {
        // Walk the folder the prefix names up to its last '/', keep the keys it starts.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            valid_key(dir_part)?;
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Self::io("list", prefix)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(Self::io("list", prefix))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue; // a temporary name, never an object
                }
                let path = entry.path();
                let meta = entry.metadata().map_err(Self::io("list", prefix))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().into_owned();
                if key.starts_with(prefix) && valid_key(&key).is_ok() {
                    out.push(ObjectInfo {
                        key,
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn retention(&self, key: &str) -> Result<Option<String>, ArchiveError> {
        self.path(key)?;
        Ok(None)
    }
}
