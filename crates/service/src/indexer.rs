//! Keeps every tenant's query store caught up with its ledger, in the background, and hands out
//! read connections. One indexer thread applies new events (tenants queue for it after each
//! append); queries run on separate read connections (SQLite WAL: readers do not wait for the
//! writer) after waiting until the index holds at least what the ledger held when the query
//! arrived, so a client always reads its own acknowledged writes.

use crate::error::ServiceError;
use agentrail_event::TenantId;
use agentrail_index::{Cutoffs, IndexError, IndexSource, Purged, Store, TenantIndex};
use agentrail_ledger::Ledger;
use agentrail_ledger::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events read from the ledger and applied per transaction.
const APPLY_BATCH: usize = 4096;
/// Idle read connections kept per tenant (a share of the open-file budget counts them).
const MAX_READERS: usize = crate::budget::INDEX_READERS;

/// One tenant's index handles.
pub struct TenantHandle {
    tenant: TenantId,
    writer: Mutex<Option<TenantIndex>>,
    /// Idle read connections, with the generation of the index file they read.
    readers: Mutex<Vec<(u64, TenantIndex)>>,
    /// Bumped whenever a damaged index is replaced: older read connections are dropped.
    generation: AtomicU64,
    /// Set while a replaced index is rebuilt from the ledger: queries answer 503
    /// `index_rebuilding` until it holds what the ledger held then.
    rebuilding: Mutex<Option<Rebuild>>,
    /// What the index holds: `[0, applied)`.
    applied: AtomicU64,
    /// The largest ledger size seen by an append or a query.
    known_size: AtomicU64,
    queued: AtomicBool,
    progress: (Mutex<()>, Condvar),
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for TenantHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TenantHandle({})", self.tenant)
    }
}

#[derive(Debug, Clone)]
struct Rebuild {
    target: u64,
    started: Instant,
    reason: String,
}

impl TenantHandle {
    /// While the index is being rebuilt after damage: (events applied, events to reach).
    pub fn rebuilding(&self) -> Option<(u64, u64)> {
        lock(&self.rebuilding)
            .as_ref()
            .map(|r| (self.applied.load(Ordering::Acquire), r.target))
    }

    /// Events the ledger holds that the index does not (as far as this server knows).
    pub fn lag(&self) -> u64 {
        self.known_size
            .load(Ordering::Acquire)
            .saturating_sub(self.applied.load(Ordering::Acquire))
    }
}

fn rebuilding_error(tenant: &TenantId, applied: u64, of: u64) -> ServiceError {
    ServiceError::unavailable(
        "index_rebuilding",
        format!(
            "the query index of tenant {tenant} was damaged and is being rebuilt from the ledger: {applied} of {of} events; retry shortly"
        ),
        2,
    )
}

struct Inner {
    ledger: Arc<Ledger>,
    /// Where the indexes live: SQLite files in the data directory, or a shared database.
    store: Arc<dyn Store>,
    tenants: Mutex<HashMap<TenantId, Arc<TenantHandle>>>,
    queue: Mutex<VecDeque<Arc<TenantHandle>>>,
    queue_cv: Condvar,
    stop: AtomicBool,
    max_open: usize,
    source: Option<Arc<dyn IndexSource>>,
    /// Damaged indexes replaced and rebuilt since start.
    rebuilds: AtomicU64,
}

/// The background indexer of a server.
pub struct Indexer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Indexer")
    }
}

impl Indexer {
    /// Starts the indexer thread. `max_open`: tenants whose index connections are kept open;
    /// `source`: what every index opened asks for content, erased subjects and retention cutoffs.
    pub fn start(
        ledger: Arc<Ledger>,
        store: Arc<dyn Store>,
        max_open: usize,
        source: Option<Arc<dyn IndexSource>>,
    ) -> Indexer {
        let inner = Arc::new(Inner {
            ledger,
            store,
            tenants: Mutex::new(HashMap::new()),
            queue: Mutex::new(VecDeque::new()),
            queue_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            max_open: max_open.max(1),
            source,
            rebuilds: AtomicU64::new(0),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || worker.run())
            .ok();
        Indexer {
            inner,
            thread: Mutex::new(thread),
        }
    }

    /// The handle of a tenant, opening its index (and queueing a catch-up) if needed.
    pub fn handle(&self, tenant: &TenantId) -> Result<Arc<TenantHandle>, ServiceError> {
        self.inner.handle(tenant)
    }

    /// Tells the indexer that a tenant's ledger grew to `size`.
    pub fn appended(
        &self,
        tenant: &TenantId,
        size: u64,
    ) -> Result<Arc<TenantHandle>, ServiceError> {
        let h = self.handle(tenant)?;
        h.known_size.fetch_max(size, Ordering::AcqRel);
        self.inner.enqueue(&h);
        Ok(h)
    }

    /// Runs `f` on a read connection once the index holds everything the ledger holds now
    /// (waiting at most `wait`; `None`: at once, on what the index holds). Returns the answer
    /// and the number of events it covers.
    pub fn query<T>(
        &self,
        tenant: &TenantId,
        wait: Option<Duration>,
        f: impl FnOnce(&TenantIndex) -> Result<T, IndexError>,
    ) -> Result<(T, u64), ServiceError> {
        let h = self.handle(tenant)?;
        let target = self.inner.ledger.size(tenant)?;
        h.known_size.fetch_max(target, Ordering::AcqRel);
        if h.applied.load(Ordering::Acquire) < target {
            self.inner.enqueue(&h);
        }
        if let Some((applied, of)) = h.rebuilding() {
            return Err(rebuilding_error(tenant, applied, of));
        }
        if let Some(wait) = wait
            && h.applied.load(Ordering::Acquire) < target
        {
            let deadline = Instant::now() + wait;
            let mut g = lock(&h.progress.0);
            while h.applied.load(Ordering::Acquire) < target {
                if let Some(e) = lock(&h.last_error).clone() {
                    // Retried with the next append or query (this one queued it).
                    return Err(ServiceError::unavailable(
                        "index_unavailable",
                        format!("indexing tenant {tenant} failed: {e}; retry shortly"),
                        2,
                    ));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(ServiceError::unavailable(
                        "index_behind",
                        format!(
                            "the index of tenant {tenant} is catching up ({} of {target} events); retry shortly",
                            h.applied.load(Ordering::Acquire)
                        ),
                        2,
                    ));
                }
                g = h
                    .progress
                    .1
                    .wait_timeout(g, (deadline - now).min(Duration::from_millis(100)))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        let generation = h.generation.load(Ordering::Acquire);
        let reader = lock(&h.readers).pop();
        let reader = match reader {
            Some((g, r)) if g == generation => Ok(r),
            _ => self.inner.store.open(tenant),
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) if e.is_damage() => return Err(self.inner.damaged(&h, &e)),
            Err(e) => return Err(e.into()),
        };
        // What the read connection's snapshot covers: at least what was applied before it began.
        let covered = h.applied.load(Ordering::Acquire);
        let out = f(&reader);
        if let Err(e) = &out
            && e.is_damage()
        {
            drop(reader);
            return Err(self.inner.damaged(&h, e));
        }
        let mut pool = lock(&h.readers);
        if pool.len() < MAX_READERS && h.generation.load(Ordering::Acquire) == generation {
            pool.push((generation, reader));
        }
        Ok((out?, covered))
    }

    /// Damaged indexes replaced and rebuilt since start.
    pub fn rebuilds(&self) -> u64 {
        self.inner.rebuilds.load(Ordering::Relaxed)
    }

    /// Tenants whose index is being rebuilt: (tenant, applied, target).
    pub fn rebuilding(&self) -> Vec<(TenantId, u64, u64)> {
        let tenants = lock(&self.inner.tenants);
        let mut out: Vec<_> = tenants
            .iter()
            .filter_map(|(t, h)| h.rebuilding().map(|(a, of)| (t.clone(), a, of)))
            .collect();
        out.sort();
        out
    }

    /// Runs `f` on the tenant's index writer (between the indexer's batches).
    fn with_writer<T>(
        &self,
        tenant: &TenantId,
        f: impl FnOnce(&mut TenantIndex) -> Result<T, IndexError>,
    ) -> Result<T, ServiceError> {
        let h = self.handle(tenant)?;
        let mut w = lock(&h.writer);
        let index = w
            .as_mut()
            .ok_or_else(|| ServiceError::internal(format!("the index of {tenant} is closed")))?;
        Ok(f(index)?)
    }

    /// Drops a data subject's content (every subject's: `None`) from the tenant's index, after
    /// its keys were shredded.
    pub fn erase_content(
        &self,
        tenant: &TenantId,
        subject: Option<&str>,
    ) -> Result<u64, ServiceError> {
        self.with_writer(tenant, |ix| ix.erase_content(subject))
    }

    /// Applies retention cutoffs to the tenant's index.
    pub fn purge(&self, tenant: &TenantId, cutoffs: Cutoffs) -> Result<Purged, ServiceError> {
        self.with_writer(tenant, |ix| ix.purge(cutoffs))
    }

    /// Total and largest lag over the tenants with open handles.
    pub fn lag(&self) -> (u64, u64) {
        let tenants = lock(&self.inner.tenants);
        tenants.values().fold((0, 0), |(sum, max), h| {
            let l = h.lag();
            (sum + l, max.max(l))
        })
    }

    /// Tenants with open index handles.
    pub fn open_tenants(&self) -> Vec<TenantId> {
        lock(&self.inner.tenants).keys().cloned().collect()
    }

    /// Stops the thread after the batch it is applying.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.queue_cv.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    fn handle(&self, tenant: &TenantId) -> Result<Arc<TenantHandle>, ServiceError> {
        let mut tenants = lock(&self.tenants);
        if let Some(h) = tenants.get(tenant) {
            return Ok(h.clone());
        }
        let (writer, replaced) = self.open_writer(tenant)?;
        let applied = writer.applied();
        let rebuilding = replaced.map(|reason| Rebuild {
            target: self.ledger.size(tenant).unwrap_or(0),
            started: Instant::now(),
            reason,
        });
        let h = Arc::new(TenantHandle {
            tenant: tenant.clone(),
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            rebuilding: Mutex::new(rebuilding),
            applied: AtomicU64::new(applied),
            known_size: AtomicU64::new(applied),
            queued: AtomicBool::new(false),
            progress: (Mutex::new(()), Condvar::new()),
            last_error: Mutex::new(None),
        });
        tenants.insert(tenant.clone(), h.clone());
        if h.rebuilding().is_some() {
            self.enqueue(&h);
        }
        if tenants.len() > self.max_open {
            // Close handles nobody holds and that have nothing left to apply.
            let idle: Vec<TenantId> = tenants
                .iter()
                .filter(|(t, h)| {
                    *t != tenant
                        && Arc::strong_count(h) == 1
                        && h.lag() == 0
                        && !h.queued.load(Ordering::Acquire)
                })
                .map(|(t, _)| t.clone())
                .take(tenants.len() - self.max_open)
                .collect();
            for t in idle {
                tenants.remove(&t);
            }
        }
        Ok(h)
    }

    /// Opens a tenant's index for writing; a damaged one is moved aside and replaced by an
    /// empty one (to be rebuilt from the ledger), with the reason.
    fn open_writer(
        &self,
        tenant: &TenantId,
    ) -> Result<(TenantIndex, Option<String>), ServiceError> {
        let open = || -> Result<TenantIndex, IndexError> {
            let mut w = self.store.open(tenant)?;
            w.bind_ledger(agentrail_index::ledger_mark(&self.ledger, tenant));
            w.set_source(self.source.clone())?;
            Ok(w)
        };
        match open() {
            Ok(w) => Ok((w, None)),
            Err(e) if e.is_damage() => {
                let reason = e.to_string();
                self.replace(tenant, &reason)?;
                Ok((open()?, Some(reason)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a damaged index aside; logged and counted.
    fn replace(&self, tenant: &TenantId, reason: &str) -> Result<(), ServiceError> {
        let aside = self.store.discard(tenant, true)?;
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            %tenant,
            reason,
            moved_to = %aside.unwrap_or_default(),
            "the query index is damaged: moved aside, rebuilding it from the ledger"
        );
        Ok(())
    }

    /// A damaged index found while in use: replace it by an empty one that the indexer
    /// thread rebuilds from the ledger while ingest goes on. Returns what the caller answers.
    fn damaged(&self, h: &Arc<TenantHandle>, e: &IndexError) -> ServiceError {
        let mut w = lock(&h.writer);
        if h.rebuilding().is_none() {
            *w = None; // close the damaged file before moving it
            lock(&h.readers).clear();
            h.generation.fetch_add(1, Ordering::AcqRel);
            let reason = e.to_string();
            match self.replace(&h.tenant, &reason).and_then(|()| {
                let mut ix = self.store.open(&h.tenant)?;
                ix.bind_ledger(agentrail_index::ledger_mark(&self.ledger, &h.tenant));
                ix.set_source(self.source.clone())?;
                Ok(ix)
            }) {
                Ok(ix) => {
                    h.applied.store(ix.applied(), Ordering::Release);
                    *w = Some(ix);
                    *lock(&h.rebuilding) = Some(Rebuild {
                        target: self.ledger.size(&h.tenant).unwrap_or(0),
                        started: Instant::now(),
                        reason,
                    });
                }
                Err(err) => return err,
            }
        }
        drop(w);
        self.enqueue(h);
        let (applied, of) = h.rebuilding().unwrap_or((0, 0));
        rebuilding_error(&h.tenant, applied, of)
    }

    fn enqueue(&self, h: &Arc<TenantHandle>) {
        if !h.queued.swap(true, Ordering::AcqRel) {
            lock(&self.queue).push_back(h.clone());
            self.queue_cv.notify_one();
        }
    }

    fn run(&self) {
        loop {
            let next = {
                let mut q = lock(&self.queue);
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(h) = q.pop_front() {
                        break h;
                    }
                    q = self
                        .queue_cv
                        .wait_timeout(q, Duration::from_millis(500))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            };
            next.queued.store(false, Ordering::Release);
            match self.catch_up(&next) {
                Ok(()) => {}
                // (Damage of the fresh index during its rebuild is reported, not looped on.)
                Err(e) if e.is_damage() && next.rebuilding().is_none() => {
                    self.damaged(&next, &e);
                }
                Err(e) => {
                    tracing::error!(tenant = %next.tenant, error = %e, "indexing failed");
                    *lock(&next.last_error) = Some(e.to_string());
                    next.progress.1.notify_all();
                }
            }
        }
    }

    /// Applies the tenant's new events, a batch per transaction, publishing progress after each.
    fn catch_up(&self, h: &TenantHandle) -> Result<(), IndexError> {
        let mut w = lock(&h.writer);
        let Some(index) = w.as_mut() else {
            return Ok(());
        };
        let size = self.ledger.size(&h.tenant)?;
        h.known_size.fetch_max(size, Ordering::AcqRel);
        if index.applied() > size {
            return Err(IndexError::Ahead {
                tenant: h.tenant.to_string(),
                applied: index.applied(),
                ledger: size,
            });
        }
        while index.applied() < size && !self.stop.load(Ordering::Acquire) {
            let batch = self
                .ledger
                .read_range(&h.tenant, index.applied(), APPLY_BATCH)?;
            if batch.is_empty() {
                break;
            }
            index.apply(&batch)?;
            h.applied.store(index.applied(), Ordering::Release);
            let _g = lock(&h.progress.0);
            h.progress.1.notify_all();
        }
        *lock(&h.last_error) = None;
        let mut rb = lock(&h.rebuilding);
        if let Some(r) = rb.as_ref()
            && index.applied() >= r.target
        {
            tracing::warn!(
                tenant = %h.tenant,
                events = index.applied(),
                seconds = r.started.elapsed().as_secs_f64(),
                reason = %r.reason,
                "the query index was rebuilt"
            );
            *rb = None;
        }
        Ok(())
    }
}
