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
}

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
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
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
    /// check), so nothing of the job still holds the ledger once the service is shut down.
    /// Called on the job's own thread (its last owner dropped there), it does not wait.
    pub fn stop(&self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        let handle = lock(&self.thread).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}
