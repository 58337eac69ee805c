//! The allocator, and giving its memory back once the server goes quiet.
//!
//! mimalloc instead of the system allocator: ingest, sealing and indexing allocate many small
//! JSON values; measured with `cargo bench -p agentrail-server --bench http_ingest` on the 2-core
//! VM, alternating runs, it raised HTTP ingest by 22–36% (privacy on and off, 1 and 4
//! connections).
//!
//! mimalloc keeps freed pages in the heap of the thread that used them and purges them lazily,
//! on later allocator calls: after thousands of connections close, an idle server kept their
//! memory (`cargo bench -p agentrail --bench idle_connections`: 116 MB after 5,000 connections
//! closed, against 63 MB before they opened). Purging at once (`MIMALLOC_PURGE_DELAY=0`) gives
//! it back but cost HTTP ingest 21–25%; a collection from another thread does not reach the
//! workers' heaps. So each runtime worker collects its own heap when it parks (has nothing to
//! do), at most once a second, and a tick every second ([`tick`]) wakes a worker that would
//! otherwise stay parked with its collection still due: memory after close 115 → 31 MB, ingest
//! unchanged (alternated runs, 1 and 4 connections).
//!
//! Built without transparent huge pages (the `no_thp` feature: mimalloc does not
//! `madvise(MADV_HUGEPAGE)` its arenas). With them, every first touch of a fresh page faulted
//! in and zeroed 2 MiB: `clear_page_erms` was 7% of the server's CPU under HTTP ingest (perf),
//! and without them ingest rose 12–15% (alternated runs). On a host whose THP mode is `always`
//! rather than `madvise`, `MIMALLOC_ALLOW_THP=0` does the same for the process.

use std::cell::Cell;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often a worker thread at most collects its heap.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// Called by each tokio worker as it parks: returns the thread's free memory to the OS, at
/// most once per [`COLLECT_EVERY`].
pub fn worker_parked() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_none_or(|t| now.duration_since(t) >= COLLECT_EVERY)
        {
            last.set(Some(now));
            collect();
        }
    });
}

/// Runs for the server's life on its runtime: wakes a worker once a second, so a worker that
/// parked too soon after its last collection parks again and collects.
pub async fn tick() {
    let mut every = tokio::time::interval(COLLECT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
    }
}

/// mimalloc's `mi_collect(true)`: frees the calling thread's empty pages and purges what the
/// arenas hold unused. The crate exposes no safe wrapper.
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time; it
    // only returns memory no live allocation uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
