//! A background job that runs every interval on its own thread until it is stopped: the
//! integrity verifier and the retention job use it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::ServiceError;
use agentrail_event::TenantId;
use agentrail_ledger::Ledger;
use agentrail_ledger::sync::lock;
use std::sync::Weak;

/// One scheduled job.
#[derive(Debug, Default)]
pub struct Schedule {
    stop: Arc<(Mutex<bool>, Condvar)>,
    started: AtomicBool,
    /// The job's thread, joined by [`Schedule::stop`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by the job's thread as it ends.
    done: Arc<(Mutex<bool>, Condvar)>,
}

/// How long [`Schedule::stop`] waits for a run in progress to end (a run checks for the stop
/// between tenants; one tenant's run may be long: a full verification, an upload to a slow
/// store).
const STOP_WAIT: Duration = Duration::from_secs(30);

impl Schedule {
    /// Runs `tick` every `every` (the first run after one interval) on a thread named `name`.
    /// `tick` gets a function telling whether the job was stopped meanwhile (to leave a long run
    /// early) and returns false to end the job. A second start does nothing.
    pub fn start(
        &self,
        name: &str,
        every: Duration,
        mut tick: impl FnMut(&dyn Fn() -> bool) -> bool + Send + 'static,
    ) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let stop = self.stop.clone();
        let done = self.done.clone();
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                /// Tells `stop` the thread is ending, however it ends.
                struct Ended(Arc<(Mutex<bool>, Condvar)>);
                impl Drop for Ended {
                    fn drop(&mut self) {
                        *lock(&self.0.0) = true;
                        self.0.1.notify_all();
                    }
                }
                let _ended = Ended(done);
                loop {
                    {
                        let (m, cv) = &*stop;
                        let g = lock(m);
                        let (g, _) = cv.wait_timeout(g, every).unwrap_or_else(|e| e.into_inner());
                        if *g {
                            return;
                        }
                    }
                    let stopped = || *lock(&stop.0);
                    if !tick(&stopped) {
                        return;
                    }
                }
            });
        match spawned {
            Ok(h) => *lock(&self.thread) = Some(h),
            Err(e) => tracing::error!(job = name, error = %e, "cannot start a background job"),
        }
    }

    /// Runs `run` for every tenant of the job's ledger every `every`, while the job (held
    /// weakly, so the thread never keeps it alive) exists; a tenant whose run fails is logged
    /// and the others still run.
    pub fn start_per_tenant<J: Send + Sync + 'static, T: 'static>(
        &self,
        name: &'static str,
        every: Duration,
        job: Weak<J>,
        ledger: fn(&J) -> &Ledger,
        run: fn(&J, &TenantId) -> Result<T, ServiceError>,
    ) {
        self.start(name, every, move |stopped| {
            let Some(job) = job.upgrade() else {
                return false;
            };
            let Ok(tenants) = ledger(&job).tenants() else {
                return true;
            };
            for t in tenants {
                if stopped() {
                    return false;
                }
                if let Err(e) = run(&job, &t) {
                    tracing::error!(job = name, tenant = %t, error = %e, "scheduled run failed");
                }
            }
            true
        });
    }

    /// Stops the job and waits until its thread is gone (a run in progress ends at its next
    /// check), so nothing of the job still holds the ledger once the service is shut down; a
    /// run still going after [`STOP_WAIT`] is logged and left to finish on its own. Called on
    /// the job's own thread (its last owner dropped there), it does not wait.
    pub fn stop(&self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        let handle = lock(&self.thread).take();
        let Some(h) = handle else { return };
        if h.thread().id() == std::thread::current().id() {
            return;
        }
        let (dm, dcv) = &*self.done;
        let g = lock(dm);
        let (g, waited) = dcv
            .wait_timeout_while(g, STOP_WAIT, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        let ended = *g;
        drop(g);
        if ended {
            let _ = h.join();
        } else if waited.timed_out() {
            tracing::warn!(
                job = h.thread().name().unwrap_or("?"),
                wait_s = STOP_WAIT.as_secs(),
                "a background job is still running at shutdown; not waiting for it"
            );
        }
    }
}
