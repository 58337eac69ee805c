//! Small concurrency helpers every crate above the ledger uses: a mutex lock that survives a
//! poisoned lock, and a bounded map of shared handles.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Locks `m`, also when a thread panicked while holding it: the state behind agentrail's locks is
/// either rebuilt from disk or checked again by the next operation, and carrying on to report
/// errors is safer than panicking again.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared handles by key (open logs, compiled policies, locks), at most about `cap` of them:
/// when a new one would pass the bound, the entries nobody else holds any more are dropped.
#[derive(Debug)]
pub struct HandleCache<K, V> {
    cap: AtomicUsize,
    map: Mutex<HashMap<K, Arc<V>>>,
}

impl<K: Eq + Hash + Clone, V> HandleCache<K, V> {
    pub fn new(cap: usize) -> HandleCache<K, V> {
        HandleCache {
            cap: AtomicUsize::new(cap.max(1)),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the bound (a share of the service's open-file budget); idle handles beyond it
    /// go on the next insert.
    pub fn set_capacity(&self, cap: usize) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
    }

    /// Handles held now.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle of `key`, made by `make` if there is none (under the cache's lock, so two
    /// callers never make the same handle twice).
    pub fn get_or_try_insert<E>(
        &self,
        key: &K,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let mut map = lock(&self.map);
        if let Some(v) = map.get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(make()?);
        Self::make_room(&mut map, self.cap.load(Ordering::Relaxed));
        map.insert(key.clone(), v.clone());
        Ok(v)
    }

    /// Replaces the handle of `key`.
    pub fn insert(&self, key: K, value: V) -> Arc<V> {
        let v = Arc::new(value);
        let mut map = lock(&self.map);
        Self::make_room(&mut map, self.cap.load(Ordering::Relaxed));
        map.insert(key, v.clone());
        v
    }

    fn make_room(map: &mut HashMap<K, Arc<V>>, cap: usize) {
        if map.len() >= cap {
            map.retain(|_, v| Arc::strong_count(v) > 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_held_handles_and_drops_idle_ones_when_full() {
        let c: HandleCache<u32, String> = HandleCache::new(2);
        let held = c
            .get_or_try_insert(&1, || Ok::<_, ()>("one".into()))
            .unwrap_or_else(|_| panic!());
        c.get_or_try_insert(&2, || Ok::<_, ()>("two".into()))
            .unwrap_or_else(|_| panic!());
        // Full: 2 is idle and goes, 1 is held and stays (the same handle comes back).
        c.get_or_try_insert(&3, || Ok::<_, ()>("three".into()))
            .unwrap_or_else(|_| panic!());
        let again = c
            .get_or_try_insert(&1, || Ok::<_, ()>("new".into()))
            .unwrap_or_else(|_| panic!());
        assert!(Arc::ptr_eq(&held, &again));
        assert_eq!(lock(&c.map).len(), 2);
        // A failed make leaves nothing behind.
        assert!(c.get_or_try_insert(&9, || Err::<String, _>("no")).is_err());
        assert!(!lock(&c.map).contains_key(&9));
    }
}
