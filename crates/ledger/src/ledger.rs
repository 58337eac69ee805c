//! The ledger of a data directory: many tenants behind an LRU of open handles, the system signing
//! key, and a background thread that signs checkpoints.

use crate::clock::{Clock, SystemClock};
use crate::error::{AppendError, CheckpointError, Damage, LedgerOpenError, OpenError, ReadError};
use crate::files::{FsyncHook, Syncer};
use crate::layout::DataDir;
use crate::signer::{KeyFile, LogSigner, SocketSigner};
use crate::stored::{self, Prepared};
use crate::tenant::{Ctx, Held, Receipt, SignedCheckpoint, StoredEvent, Tenant, lock};
use agentrail_event::{TenantId, ValidEvent};
use agentrail_merkle::Hash;
use agentrail_note::{Signer, Verifier};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Default size at which a segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// How a ledger is opened.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Origins are `<origin_prefix>/tenants/<id>`. `None`: the one stored in the data directory,
    /// or `agentrail.local` for a new one.
    pub origin_prefix: Option<String>,
    pub segment_size: u64,
    /// Open tenants kept (each holds a few file handles and its maps); others are closed.
    pub max_open_tenants: usize,
    /// How often the background thread signs checkpoints for tenants with new events; `None`
    /// disables the thread (checkpoints are then only written on demand and on close).
    pub checkpoint_interval: Option<Duration>,
    /// Where each tenant's newest checkpoint is pinned, outside the data directory
    /// ([`crate::pins`]): a tenant whose records do not hold its pin is refused, and nothing
    /// inconsistent with it is signed. `None`: no pins (the log trusts its own checkpoint log).
    pub trust_dir: Option<PathBuf>,
    /// Where the log key is held instead of `system/log.key` (the data directory then holds only
    /// the verifier key): the Unix socket of an `agentrail signer` ([`crate::signer`]), or a
    /// `pkcs11:` URI of a key in a token ([`crate::pkcs11`]).
    pub signer: Option<PathBuf>,
    /// For offline readers (proofs, reindex): with the key held elsewhere and no `signer`,
    /// open anyway; any signature is then refused. Otherwise such a directory is refused.
    pub without_signer: bool,
    /// `clock_skew_ms` is recorded when `occurred_at` and `received_at` differ by more.
    pub clock_skew_bound_ms: i64,
    /// The wall clock has jumped when it moved this far from the monotonic clock since open.
    pub clock_jump_bound_ms: i64,
    pub clock: Arc<dyn Clock>,
    /// Called before every fsync; for fault-injection tests.
    pub fsync_hook: Option<FsyncHook>,
    /// A tenant whose write or fsync failed refuses appends; the first request after this long
    /// cuts its files back to the last durable batch and reopens it (again after the same wait
    /// if that fails: the cause, a full disk say, may still be there).
    pub heal_after: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("origin_prefix", &self.origin_prefix)
            .field("segment_size", &self.segment_size)
            .field("max_open_tenants", &self.max_open_tenants)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("trust_dir", &self.trust_dir)
            .field("signer", &self.signer)
            .field("clock_skew_bound_ms", &self.clock_skew_bound_ms)
            .field("heal_after", &self.heal_after)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            origin_prefix: None,
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_open_tenants: 256,
            checkpoint_interval: Some(Duration::from_secs(1)),
            trust_dir: None,
            signer: None,
            without_signer: false,
            clock_skew_bound_ms: 60_000,
            clock_jump_bound_ms: 300_000,
            clock: Arc::new(SystemClock),
            fsync_hook: None,
            heal_after: Duration::from_secs(1),
        }
    }
}

pub const DEFAULT_ORIGIN_PREFIX: &str = "agentrail.local";
/// What [`Ledger::sign_statement`] (and a signer process) signs: export manifests, integrity
/// reports, archive manifests. (A restore statement is signed only by `agentrail restore`, with
/// the key file itself: no running server or signer can be asked for one.)
pub const STATEMENT_KINDS: [&str; 3] = ["export", "integrity-report", "archive-manifest"];

struct Lru {
    open: HashMap<TenantId, (Arc<Tenant>, u64)>,
    tick: u64,
}

struct Inner {
    ctx: Ctx,
    max_open: usize,
    heal_after: Duration,
    /// Recovery actions taken (a truncated tail, a healed write failure), for metrics.
    recoveries: AtomicU64,
    tenants: Mutex<Lru>,
    closed: AtomicBool,
    recovery_notes: Mutex<Vec<String>>,
    /// Tenants refused on evidence from outside the box ([`Ledger::refuse`]), with why.
    refused: Mutex<HashMap<TenantId, Damage>>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    _lock: File,
}

/// The ledger of one data directory. Cheap to share (`Arc` inside); appends from many threads
/// share fsyncs per tenant.
pub struct Ledger {
    inner: Arc<Inner>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.inner.ctx.data_dir.display())
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LedgerOpenError {
    let path = path.to_path_buf();
    move |source| LedgerOpenError::Io { op, path, source }
}

/// Writes a file durably and atomically with mode 0600 (keys) or 0644.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), LedgerOpenError> {
    crate::files::write_atomic(path, contents, mode).map_err(|e| LedgerOpenError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

/// Loads the data directory's origin prefix and its signer (the key file, created on first open,
/// or the external signer at `external`), and checks the verifier key against it.
fn system_files(
    data_dir: &Path,
    given: Option<&str>,
    external: Option<&Path>,
    without_signer: bool,
) -> Result<(String, Arc<dyn LogSigner>), LedgerOpenError> {
    let sys = DataDir::new(data_dir).system();
    let origin_path = sys.origin();
    let origin = match fs::read_to_string(&origin_path) {
        Ok(s) => {
            let stored = s.trim_end_matches('\n').to_owned();
            if let Some(g) = given
                && g != stored
            {
                return Err(LedgerOpenError::OriginMismatch {
                    given: g.to_owned(),
                    stored,
                });
            }
            stored
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let o = given.unwrap_or(DEFAULT_ORIGIN_PREFIX).to_owned();
            if o.is_empty() || o.contains(['\n', '+']) || o.chars().any(char::is_whitespace) {
                return Err(LedgerOpenError::Config(format!(
                    "origin prefix {o:?} must be non-empty, without spaces or '+'"
                )));
            }
            write_new_file(&origin_path, format!("{o}\n").as_bytes(), 0o644)?;
            o
        }
        Err(e) => return Err(io_err("read", &origin_path)(e)),
    };
    let key_path = sys.log_key();
    let vkey_path = sys.log_vkey();
    if let Some(socket) = external {
        if key_path.exists() {
            return Err(LedgerOpenError::Config(format!(
                "{} is in the data directory although the log key is held by the signer at {}: move it to the signer's host and delete it here",
                key_path.display(),
                socket.display()
            )));
        }
        let spec = socket.to_string_lossy();
        let s: Arc<dyn LogSigner> = if spec.starts_with("pkcs11:") {
            Arc::new(
                crate::pkcs11::Pkcs11Signer::open(&spec, &origin)
                    .map_err(LedgerOpenError::Config)?,
            )
        } else {
            Arc::new(SocketSigner::connect(socket).map_err(LedgerOpenError::Config)?)
        };
        if s.verifier().name() != origin {
            return Err(LedgerOpenError::Config(format!(
                "the signer's key is named {:?}, this data directory's origin prefix is {origin:?}",
                s.verifier().name()
            )));
        }
        check_vkey(&vkey_path, s.verifier())?;
        return Ok((origin, s));
    }
    let signer = match fs::read_to_string(&key_path) {
        Ok(s) => Signer::from_private_key_string(s.trim()).map_err(|e| {
            LedgerOpenError::BadSystemFile {
                path: key_path.clone(),
                reason: e.to_string(),
            }
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && vkey_path.exists() => {
            if without_signer {
                let verifier = read_verifier(data_dir)?;
                return Ok((origin, Arc::new(crate::signer::Refuse(verifier))));
            }
            return Err(LedgerOpenError::Config(format!(
                "{} is missing but {} is there: this data directory's log key is held elsewhere (configure `signer`, the socket of the `agentrail signer` that holds it)",
                key_path.display(),
                vkey_path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| LedgerOpenError::Io {
                op: "generate a key for",
                path: key_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let signer = Signer::from_seed(&origin, seed).map_err(|e| {
                LedgerOpenError::Config(format!("cannot make a key named {origin:?}: {e}"))
            })?;
            write_new_file(
                &key_path,
                format!("{}\n", signer.to_private_key_string()).as_bytes(),
                0o600,
            )?;
            signer
        }
        Err(e) => return Err(io_err("read", &key_path)(e)),
    };
    let signer: Arc<dyn LogSigner> = Arc::new(KeyFile::new(signer));
    check_vkey(&vkey_path, signer.verifier())?;
    Ok((origin, signer))
}

/// The verifier key is derived from the signing key: a first start killed between writing the
/// two leaves the key without it, so it is (re)written whenever it is missing; one that does
/// not match the key refuses the data directory.
fn check_vkey(vkey_path: &Path, verifier: &Verifier) -> Result<(), LedgerOpenError> {
    match fs::read_to_string(vkey_path) {
        Ok(s) if s.trim() == verifier.to_string() => Ok(()),
        Ok(s) => Err(LedgerOpenError::BadSystemFile {
            path: vkey_path.to_path_buf(),
            reason: format!(
                "it holds {:?}, but the log key's verifier is {verifier}",
                s.trim()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_new_file(vkey_path, format!("{verifier}\n").as_bytes(), 0o644)
        }
        Err(e) => Err(io_err("read", vkey_path)(e)),
    }
}

/// The verifier key of a data directory's checkpoints (`system/log.vkey`), for offline checks.
pub fn read_verifier(data_dir: &Path) -> Result<Verifier, LedgerOpenError> {
    let path = DataDir::new(data_dir).system().log_vkey();
    let s = fs::read_to_string(&path).map_err(io_err("read", &path))?;
    s.trim().parse().map_err(
        |e: agentrail_note::KeyError| LedgerOpenError::BadSystemFile {
            path,
            reason: e.to_string(),
        },
    )
}

impl Ledger {
    /// Opens (creating if needed) the ledger of `cfg.data_dir`. Tenants are opened, and
    /// recovered, on first use.
    pub fn open(cfg: Config) -> Result<Ledger, LedgerOpenError> {
        if cfg.max_open_tenants == 0 {
            return Err(LedgerOpenError::Config(
                "max_open_tenants must be at least 1".into(),
            ));
        }
        if cfg.segment_size < 4096 {
            return Err(LedgerOpenError::Config(
                "segment_size must be at least 4096".into(),
            ));
        }
        let dir = &cfg.data_dir;
        let layout = DataDir::new(dir);
        for sub in [layout.system().dir().to_path_buf(), layout.tenants_dir()] {
            fs::create_dir_all(&sub).map_err(io_err("create", &sub))?;
        }
        let lock_path = layout.system().lock();
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LedgerOpenError::Locked(dir.clone())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let (origin_prefix, signer) = system_files(
            dir,
            cfg.origin_prefix.as_deref(),
            cfg.signer.as_deref(),
            cfg.without_signer,
        )?;
        let verifier = signer.verifier().clone();
        let inner = Arc::new(Inner {
            ctx: Ctx {
                data_dir: dir.clone(),
                segment_size: cfg.segment_size,
                clock: cfg.clock.clone(),
                watch: Arc::new(crate::clock::ClockWatch::new(
                    cfg.clock.as_ref(),
                    cfg.clock_jump_bound_ms,
                )),
                syncer: Syncer {
                    hook: cfg.fsync_hook.clone(),
                },
                clock_skew_bound_ms: cfg.clock_skew_bound_ms,
                origin_prefix,
                signer,
                verifier,
                trust_dir: cfg.trust_dir.clone(),
            },
            max_open: cfg.max_open_tenants,
            heal_after: cfg.heal_after,
            recoveries: AtomicU64::new(0),
            tenants: Mutex::new(Lru {
                open: HashMap::new(),
                tick: 0,
            }),
            closed: AtomicBool::new(false),
            recovery_notes: Mutex::new(Vec::new()),
            refused: Mutex::new(HashMap::new()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            _lock: lock_file,
        });
        let checkpointer = cfg.checkpoint_interval.map(|every| {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("agentrail-checkpointer".into())
                .spawn(move || checkpoint_loop(weak, every))
        });
        let checkpointer = match checkpointer {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => return Err(io_err("start the checkpoint thread for", dir)(e)),
            None => None,
        };
        Ok(Ledger {
            inner,
            checkpointer: Mutex::new(checkpointer),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.ctx.data_dir
    }

    /// The key that verifies this ledger's checkpoints.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.ctx.verifier
    }

    /// The watch on the ledger's clock (jumps against the monotonic clock).
    pub fn clock_watch(&self) -> &Arc<crate::clock::ClockWatch> {
        &self.inner.ctx.watch
    }

    /// The checkpoint origin of a tenant.
    pub fn origin(&self, tenant: &TenantId) -> String {
        self.inner.ctx.origin(tenant)
    }

    fn tenant(&self, id: &TenantId, create: bool) -> Result<Arc<Tenant>, OpenError> {
        self.inner.tenant(id, create)
    }

    /// Validated events → stored, durable, receipts in order. All-or-nothing: if any event is
    /// refused (tenant mismatch, id conflict, too large), nothing is written.
    pub fn append(
        &self,
        tenant: &TenantId,
        events: Vec<ValidEvent>,
    ) -> Result<Vec<Receipt>, AppendError> {
        self.append_digested(tenant, events.into_iter().map(|e| (e, None)).collect())
    }

    /// [`Ledger::append`] of events each with the caller's keyed digest of what its emitter
    /// sent (see [`stored::submitted_bytes`]), stored as `content_digest`: a re-send is a replay
    /// when the digests match, whatever the stored content was sealed with.
    pub fn append_digested(
        &self,
        tenant: &TenantId,
        events: Vec<(ValidEvent, Option<String>)>,
    ) -> Result<Vec<Receipt>, AppendError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(AppendError::Closed);
        }
        let ctx = &self.inner.ctx;
        let mut prepared: Vec<Prepared> = Vec::with_capacity(events.len());
        for (index, (ev, digest)) in events.into_iter().enumerate() {
            let mut p = stored::prepare(ev, tenant, ctx.clock.as_ref())
                .map_err(|reason| AppendError::Invalid { index, reason })?;
            p.content_digest = digest;
            let len = p.max_stored_len();
            if len > crate::frame::MAX_RECORD_LEN {
                return Err(AppendError::TooLarge {
                    index,
                    len,
                    max: crate::frame::MAX_RECORD_LEN,
                });
            }
            prepared.push(p);
        }
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.tenant(tenant, true)?;
        t.append(ctx, prepared)
    }

    /// What the tenant's ledger holds for each `(event_id, content_digest)` pair, in order
    /// ([`Held`]): the original receipt of a replay (same digest), the stored bytes of an event
    /// stored without a digest, or nothing. A different digest for a stored id is
    /// [`AppendError::Conflict`]. Read-only: a caller checks before sealing so a replay is
    /// never protected (nor its values kept) again.
    pub fn replays(
        &self,
        tenant: &TenantId,
        probes: &[(&str, &str)],
    ) -> Result<Vec<Held>, AppendError> {
        if probes.is_empty() || !self.exists(tenant) {
            return Ok(vec![Held::Absent; probes.len()]);
        }
        self.tenant(tenant, false)?.replays(probes)
    }

    /// Whether a tenant exists in this data directory.
    pub fn exists(&self, tenant: &TenantId) -> bool {
        crate::files::tenant_dir(&self.inner.ctx.data_dir, tenant).is_dir()
    }

    /// Creates an empty tenant (its directories and files); `false` if it already existed.
    pub fn create_tenant(&self, tenant: &TenantId) -> Result<bool, OpenError> {
        if self.exists(tenant) {
            return Ok(false);
        }
        self.tenant(tenant, true)?;
        Ok(true)
    }

    /// Every tenant of the data directory, sorted.
    pub fn tenants(&self) -> std::io::Result<Vec<TenantId>> {
        list_tenants(&self.inner.ctx.data_dir)
    }

    /// Number of durable events of a tenant (its tree size).
    pub fn size(&self, tenant: &TenantId) -> Result<u64, ReadError> {
        Ok(self.tenant(tenant, false)?.size())
    }

    pub fn read(&self, tenant: &TenantId, seq: u64) -> Result<StoredEvent, ReadError> {
        self.tenant(tenant, false)?.read(seq)
    }

    /// The durable events at `seqs`, in their order.
    pub fn read_seqs(
        &self,
        tenant: &TenantId,
        seqs: &[u64],
    ) -> Result<Vec<StoredEvent>, ReadError> {
        self.tenant(tenant, false)?.read_seqs(seqs)
    }

    /// Up to `limit` events from `from` on (fewer at the head).
    pub fn read_range(
        &self,
        tenant: &TenantId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        self.tenant(tenant, false)?.read_range(from, limit)
    }

    /// The seq of an event by its event_id.
    pub fn find(&self, tenant: &TenantId, event_id: &str) -> Result<Option<u64>, ReadError> {
        self.tenant(tenant, false)?.find(event_id)
    }

    pub fn root_at(&self, tenant: &TenantId, size: u64) -> Result<Hash, ReadError> {
        self.tenant(tenant, false)?.root_at(size)
    }

    /// The compact range `[0, size)` of a tenant's tree: the roots of its perfect subtrees,
    /// largest first (what an export carries so the range after it can be tied to a root).
    pub fn frontier(&self, tenant: &TenantId, size: u64) -> Result<Vec<Hash>, ReadError> {
        self.tenant(tenant, false)?.frontier(size)
    }

    /// Signs a statement about a tenant as a C2SP signed note with the log key. Its first line
    /// is `<origin>/<kind>`, which can never be a checkpoint's origin line (tenant ids hold no
    /// `/`), so a statement cannot pass for a checkpoint. `kind` is one of [`STATEMENT_KINDS`].
    pub fn sign_statement(
        &self,
        tenant: &TenantId,
        kind: &str,
        body: &[String],
    ) -> Result<String, String> {
        if !STATEMENT_KINDS.contains(&kind) {
            return Err(format!("unknown statement kind {kind:?}"));
        }
        let mut text = format!("{}/{kind}\n", self.origin(tenant));
        for line in body {
            if line.is_empty() || line.contains('\n') {
                return Err("statement lines must be non-empty single lines".into());
            }
            text.push_str(line);
            text.push('\n');
        }
        agentrail_note::Note::new(&text).map_err(|e| e.to_string())?;
        let sig = self.inner.ctx.signer.sign_statement(&text)?;
        Ok(agentrail_note::Note {
            text,
            signatures: vec![sig],
        }
        .to_text())
    }

    /// RFC 6962 inclusion proof of leaf `seq` in the tree of `size` (O(log n) node reads).
    pub fn inclusion_proof(
        &self,
        tenant: &TenantId,
        seq: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ReadError> {
        self.tenant(tenant, false)?.inclusion_proof(seq, size)
    }

    /// RFC 6962 consistency proof between two tree sizes.
    pub fn consistency_proof(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, ReadError> {
        self.tenant(tenant, false)?.consistency_proof(from, to)
    }

    /// The tenant's latest signed checkpoint, if one was written.
    pub fn latest_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SignedCheckpoint>, ReadError> {
        Ok(self.tenant(tenant, false)?.latest_checkpoint())
    }

    /// A signed checkpoint covering at least the first `covering` events, for the receipts of
    /// a batch just acknowledged: the latest one when it already covers them, else one signed
    /// now over the durable tree, and reused by every batch it covers — so at most one
    /// signature per durable group commit, whatever the number of batches in it. Not written to
    /// the checkpoint log (the scheduled checkpoints are): it signs a durable prefix of a tree
    /// that only grows, so every later checkpoint is consistent with it.
    pub fn receipt_checkpoint(
        &self,
        tenant: &TenantId,
        covering: u64,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let t = self.tenant(tenant, false)?;
        t.receipt_checkpoint(&self.inner.ctx, covering)
    }

    /// Signs a checkpoint now if the tree grew since the last one; returns the latest.
    pub fn checkpoint(&self, tenant: &TenantId) -> Result<SignedCheckpoint, CheckpointError> {
        let t = self.tenant(tenant, false)?;
        t.checkpoint(&self.inner.ctx, true, Duration::ZERO)?
            .ok_or_else(|| {
                // `force` always writes one for a tree without checkpoints.
                CheckpointError::Io {
                    tenant: tenant.to_string(),
                    op: "write a checkpoint",
                    source: std::io::Error::other("no checkpoint was written"),
                }
            })
    }

    /// Refuses a tenant for the life of this ledger: something outside the data directory (a
    /// witness that cosigned a longer or different tree) shows its records are not the ones
    /// it signed. It is closed without a checkpoint, and every later use answers `Damaged` with
    /// `damage` (never another signature over its tree). Reopening the data directory checks
    /// again from the start.
    pub fn refuse(&self, tenant: &TenantId, damage: Damage) {
        tracing::error!(%tenant, %damage, "TENANT REFUSED: its records are not what was signed");
        let reason = damage.to_string();
        lock(&self.inner.refused).insert(tenant.clone(), damage);
        // Dropped from the open set without the close that would sign its tree; whoever still
        // holds it (an append, the checkpointer's round) finds it poisoned: no append, no
        // signature.
        if let Some((t, _)) = lock(&self.inner.tenants).open.remove(tenant) {
            t.poison_again(format!("refused: {reason}"));
        }
    }

    /// Tenants refused by [`Ledger::refuse`], with why.
    pub fn refused_tenants(&self) -> Vec<Damage> {
        lock(&self.inner.refused).values().cloned().collect()
    }

    /// The tenant's sealed segments, oldest first: `(first seq, end seq, path)` (read-only
    /// files that never change again: what the archive takes).
    pub fn sealed_segments(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(u64, u64, PathBuf)>, OpenError> {
        Ok(self.tenant(tenant, false)?.sealed_segments())
    }

    /// Seals the tenant's active segment now if it holds events; whether it did.
    pub fn seal_active(&self, tenant: &TenantId) -> Result<bool, AppendError> {
        let t = self.tenant(tenant, false)?;
        t.seal_active(&self.inner.ctx)
    }

    /// The first seq of the active segment and when its first event was received (`None`
    /// while it holds no durable event): how far behind sealed segments are.
    pub fn active_since(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(u64, jiff::Timestamp)>, ReadError> {
        self.tenant(tenant, false)?.active_since()
    }

    /// Has the checkpointer sign the tenant's next checkpoint even if its tree did not grow: a
    /// record about it was appended to a system log its checkpoints commit
    /// ([`crate::anchors`]).
    pub fn anchor_soon(&self, tenant: &TenantId) -> Result<(), OpenError> {
        self.tenant(tenant, false)?.anchor_soon();
        Ok(())
    }

    /// Signs the tenant's checkpoint now, committing the logs' heads as they are (after a
    /// change that must not wait for the checkpointer: an API key created or revoked).
    pub fn anchor_now(&self, tenant: &TenantId) -> Result<SignedCheckpoint, CheckpointError> {
        let t = self.tenant(tenant, false)?;
        t.anchor_soon();
        t.checkpoint(&self.inner.ctx, true, Duration::ZERO)?
            .ok_or_else(|| CheckpointError::Io {
                tenant: tenant.to_string(),
                op: "write a checkpoint",
                source: std::io::Error::other("no checkpoint was written"),
            })
    }

    /// Where checkpoints are pinned ([`Config::trust_dir`]).
    pub fn trust_dir(&self) -> Option<&Path> {
        self.inner.ctx.trust_dir.as_deref()
    }

    /// Every stored checkpoint of a tenant, oldest first.
    pub fn checkpoints(&self, tenant: &TenantId) -> Result<Vec<String>, ReadError> {
        Ok(self
            .tenant(tenant, false)?
            .checkpoint_texts()?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    /// What recovery did when tenants were opened (truncated torn tails), since the last call.
    pub fn take_recovery_notes(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.inner.recovery_notes))
    }

    /// Recovery actions taken since the ledger was opened: truncated torn tails or unfinished
    /// batches, healed write failures.
    pub fn recoveries(&self) -> u64 {
        self.inner.recoveries.load(Ordering::Relaxed)
    }

    /// Open tenants whose writer is refusing appends after a failed write or fsync, with the
    /// reason; each heals on the first request after `heal_after`.
    pub fn poisoned_tenants(&self) -> Vec<(TenantId, String)> {
        let mut out: Vec<(TenantId, String)> = lock(&self.inner.tenants)
            .open
            .iter()
            .filter_map(|(id, (t, _))| t.poisoned_for().map(|(r, _)| (id.clone(), r)))
            .collect();
        out.sort();
        out
    }

    /// Number of tenants currently open (bounded by `max_open_tenants` plus those in use).
    pub fn open_tenants(&self) -> usize {
        lock(&self.inner.tenants).open.len()
    }

    /// Clean shutdown: every written event made durable and covered by a final checkpoint.
    /// Appends after this fail with `Closed`.
    pub fn close(&self) -> Result<(), CheckpointError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *lock(&self.inner.stop) = true;
        self.inner.stop_cv.notify_all();
        if let Some(h) = lock(&self.checkpointer).take() {
            let _ = h.join();
        }
        let open: Vec<Arc<Tenant>> = lock(&self.inner.tenants)
            .open
            .drain()
            .map(|(_, (t, _))| t)
            .collect();
        let mut first_err = None;
        for t in open {
            if let Err(e) = self.inner.close_tenant(&t)
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Inner {
    fn tenant(&self, id: &TenantId, create: bool) -> Result<Arc<Tenant>, OpenError> {
        if let Some(d) = lock(&self.refused).get(id) {
            return Err(OpenError::Damaged(d.clone()));
        }
        let mut lru = lock(&self.tenants);
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((t, used)) = lru.open.get_mut(id) {
            *used = tick;
            match t.poisoned_for() {
                Some((_, since)) if since >= self.heal_after => {}
                _ => return Ok(t.clone()),
            }
            // Poisoned long enough: heal it (cut back to the last durable batch) and reopen.
            let old = t.clone();
            match old.heal(&self.ctx) {
                Ok(note) => self.note(id, &note),
                Err(e) => {
                    old.poison_again(format!("healing failed: {e}"));
                    return Ok(old);
                }
            }
            match Tenant::open(&self.ctx, id.clone(), false) {
                Ok(t) => {
                    let t = Arc::new(t);
                    if let Some(note) = &t.recovery_note {
                        self.note(id, note);
                    }
                    lru.open.insert(id.clone(), (t.clone(), tick));
                    return Ok(t);
                }
                Err(e) => {
                    old.poison_again(format!("reopening failed: {e}"));
                    return Ok(old);
                }
            }
        }
        // Opening recovers the tenant; it happens under the LRU lock so that a tenant is never
        // opened twice.
        let t = Arc::new(Tenant::open(&self.ctx, id.clone(), create)?);
        if let Some(note) = &t.recovery_note {
            self.note(id, note);
        }
        lru.open.insert(id.clone(), (t.clone(), tick));
        while lru.open.len() > self.max_open {
            // Least recently used among those nobody is using right now (and never a poisoned
            // one: it stays refused until the ledger is reopened).
            let victim = lru
                .open
                .iter()
                .filter(|(_, (t, _))| Arc::strong_count(t) == 1 && !t.is_poisoned())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some((t, _)) = lru.open.remove(&victim) {
                // Best effort: a failure poisons nothing durable; reopening recovers.
                let _ = self.close_tenant(&t);
            }
        }
        Ok(t)
    }

    /// A recovery action: kept for [`Ledger::take_recovery_notes`], logged, counted.
    fn note(&self, id: &TenantId, note: &str) {
        tracing::warn!(tenant = %id, "ledger recovery: {note}");
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        let mut notes = lock(&self.recovery_notes);
        // Kept for a caller that asks; logged and counted either way, so the list stays small.
        if notes.len() >= 1000 {
            notes.remove(0);
        }
        notes.push(format!("tenant {id}: {note}"));
    }

    fn close_tenant(&self, t: &Tenant) -> Result<(), CheckpointError> {
        t.sync_all(&self.ctx).map_err(|e| CheckpointError::Io {
            tenant: t.id.to_string(),
            op: "sync on close",
            source: std::io::Error::other(e.to_string()),
        })?;
        t.checkpoint(&self.ctx, true, Duration::ZERO)?;
        Ok(())
    }
}

fn checkpoint_loop(inner: std::sync::Weak<Inner>, every: Duration) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        {
            let stop = lock(&inner.stop);
            let (stop, _) = inner
                .stop_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let open: Vec<Arc<Tenant>> = lock(&inner.tenants)
            .open
            .values()
            .map(|(t, _)| t.clone())
            .collect();
        for t in open {
            if t.is_poisoned() {
                continue;
            }
            // Errors poison the tenant, which refuses appends; nothing else to do here.
            let _ = t.checkpoint(&inner.ctx, false, every);
        }
    }
}

/// Tenant directories of a data directory, sorted.
pub fn list_tenants(data_dir: &Path) -> std::io::Result<Vec<TenantId>> {
    let dir = DataDir::new(data_dir).tenants_dir();
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| TenantId::parse(n).ok())
        {
            out.push(id);
        }
    }
    out.sort();
    Ok(out)
}
