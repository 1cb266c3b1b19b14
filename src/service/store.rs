//! Where followed instances live.
//!
//! A growing log is never evicted for size: its clients' cursors depend on the order it
//! was served in (late lines appended at the end), which a re-read would not restore.
//! Growing logs are only dropped after `idle_evict_ms` without a read; their number and
//! their bytes are capped (past either cap a new instance is refused, never an
//! out-of-memory crash). Complete logs are immutable and live in a size-bounded cache
//! (least recently used first); an evicted one is read again if asked. A complete log
//! that runs again (a retry) moves back to the growing tier.
//!
//! Each entry is created with a new epoch (see [`Epochs`]): whenever the served order is
//! rebuilt from scratch (a new process, an idle growing log dropped, a complete log
//! evicted and read again), its clients' cursors no longer hold, and the epoch says so.
//!
//! With an archive (`[archive]`), a complete log is *held* until it is archived: never
//! evicted (nothing of it would be lost if the archive is down for a while), then moved
//! into the cache. An entry gets its epoch at its first refresh then (the archive's, if
//! the log was archived: see `super::archive`).
//!
//! Cluster mode: the shared store keeps every order and its epoch, so this store is only
//! a cache. Past its caps it drops the growing logs read least recently instead of
//! refusing new ones; an entry read again is rebuilt from the shared store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::entry::Entry;
use super::ServiceError;
use crate::clock::Clock;
use crate::config::Config;
use crate::telemetry;

/// Names the sequences this store creates: a random boot id (64 bits, drawn when the
/// store is built, so a restarted process, or a second router in one test process,
/// never repeats one) and the number of entries created so far.
///
/// The epoch lives on the [`Entry`], not in the pure `Follower`: it names the store's
/// copy of the sequence, not anything the follower computes. In cluster mode the shared
/// store (Redis) creates it with the sequence itself (set once, when the sequence key is
/// created, from an epoch this process proposes) and hands it to every replica, so that
/// a restart of one keeps it.
pub(super) struct Epochs {
    boot: u64,
    created: AtomicU64,
}

impl Epochs {
    fn new() -> Self {
        Epochs { boot: rand::random(), created: AtomicU64::new(0) }
    }

    /// A new epoch: `<boot id, 16 hex digits>-<n>`.
    pub(super) fn next(&self) -> Arc<str> {
        let n = self.created.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::from(format!("{:016x}-{n}", self.boot))
    }
}

pub(super) struct Store {
    epochs: Epochs,
    /// Cluster mode: epochs come from the shared store, not from this process.
    shared: bool,
    /// An archive is configured: a new entry's epoch is named at its first refresh
    /// (the archive's, or a new one).
    archive: bool,
    /// Complete logs waiting to be archived (never evicted).
    held: std::sync::Mutex<HashMap<i64, Arc<Entry>>>,
    complete: moka::sync::Cache<i64, Arc<Entry>>,
    following: std::sync::Mutex<HashMap<i64, Arc<Entry>>>,
    idle_ms: i64,
    max_following: usize,
    max_following_bytes: u64,
    /// The time of day (idle ages).
    clock: Clock,
}

impl Store {
    pub(super) fn new(config: &Config, clock: Clock) -> Self {
        let complete = moka::sync::Cache::builder()
            .max_capacity(config.logs.cache_max_bytes)
            .weigher(|_, e: &Arc<Entry>| u32::try_from(e.weight()).unwrap_or(u32::MAX))
            .eviction_listener(|_, _, cause| {
                if cause.was_evicted() {
                    metrics::counter!(telemetry::CACHE_EVICTIONS).increment(1);
                }
            })
            .build();
        Store {
            epochs: Epochs::new(),
            shared: config.cluster.is_some(),
            archive: config.archive.enabled(),
            held: std::sync::Mutex::new(HashMap::new()),
            complete,
            following: std::sync::Mutex::new(HashMap::new()),
            idle_ms: i64::try_from(config.logs.idle_evict_ms).unwrap_or(i64::MAX),
            max_following: config.logs.max_followed_instances,
            max_following_bytes: config.logs.max_following_bytes,
            clock,
        }
    }

    pub(super) fn get_or_create(&self, id: i64) -> Result<Arc<Entry>, ServiceError> {
        static HITS: OnceLock<metrics::Counter> = OnceLock::new();
        if let Some(e) = self.complete.get(&id) {
            telemetry::cached_counter(&HITS, telemetry::CACHE_HITS).increment(1);
            return Ok(e);
        }
        if let Some(e) = self.held.lock().expect("store lock poisoned").get(&id) {
            telemetry::cached_counter(&HITS, telemetry::CACHE_HITS).increment(1);
            return Ok(e.clone());
        }
        let now = self.clock.now_ms();
        let mut following = self.following.lock().expect("store lock poisoned");
        if let Some(e) = following.get(&id).filter(|e| !self.idle(e, now)) {
            telemetry::cached_counter(&HITS, telemetry::CACHE_HITS).increment(1);
            e.last_read.store(now, Ordering::Relaxed);
            return Ok(e.clone());
        }
        metrics::counter!(telemetry::CACHE_MISSES).increment(1);
        let full =
            following.len() >= self.max_following || self.following_bytes(&following) >= self.max_following_bytes;
        if full || following.contains_key(&id) {
            let before = following.len();
            following.retain(|_, e| !self.idle(e, now));
            metrics::counter!(telemetry::CACHE_EVICTIONS).increment((before - following.len()) as u64);
        }
        if self.shared {
            // The shared store holds every growing log's order: drop the ones read least
            // recently from this replica's memory rather than refuse (read back from the
            // store if asked again, under the same epoch).
            while following.len() >= self.max_following
                || self.following_bytes(&following) >= self.max_following_bytes && !following.is_empty()
            {
                let lru = following.iter().min_by_key(|(_, e)| e.last_read.load(Ordering::Relaxed)).map(|(id, _)| *id);
                following.remove(&lru.expect("not empty"));
                metrics::counter!(telemetry::CACHE_EVICTIONS).increment(1);
            }
        }
        if following.len() >= self.max_following {
            return Err(ServiceError::TooManyInstances(following.len()));
        }
        let bytes = self.following_bytes(&following);
        if bytes >= self.max_following_bytes {
            return Err(ServiceError::TooManyBytes(bytes));
        }
        // (Cluster mode: the store names the sequence at the first refresh; with an
        // archive, the archive or this store does, at the first refresh.)
        let epoch = if self.shared || self.archive { Arc::from("") } else { self.epochs.next() };
        let entry = Arc::new(Entry::new(id, epoch, now));
        following.insert(id, entry.clone());
        Ok(entry)
    }

    /// An epoch for a sequence the shared store creates (cluster mode).
    pub(super) fn new_epoch(&self) -> Arc<str> {
        self.epochs.next()
    }

    fn following_bytes(&self, following: &HashMap<i64, Arc<Entry>>) -> u64 {
        following.values().map(|e| e.weight()).sum()
    }

    fn idle(&self, e: &Entry, now: i64) -> bool {
        now - e.last_read.load(Ordering::Relaxed) > self.idle_ms
    }

    /// Moves a log that became complete into the size-bounded cache.
    pub(super) fn promote(&self, entry: &Arc<Entry>) {
        let removed = self.following.lock().expect("store lock poisoned").remove(&entry.id);
        if removed.is_some() {
            self.complete.insert(entry.id, entry.clone());
        }
    }

    /// Holds a complete log until it is archived ([`Store::release`]): never evicted.
    pub(super) fn hold(&self, entry: &Arc<Entry>) {
        let mut held = self.held.lock().expect("store lock poisoned");
        self.following.lock().expect("store lock poisoned").remove(&entry.id);
        self.complete.invalidate(&entry.id);
        held.insert(entry.id, entry.clone());
    }

    /// A held log was archived: into the size-bounded cache.
    pub(super) fn release(&self, entry: &Arc<Entry>) {
        let mut held = self.held.lock().expect("store lock poisoned");
        if held.get(&entry.id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            held.remove(&entry.id);
            self.complete.insert(entry.id, entry.clone());
        }
    }

    /// Moves a complete log that runs again (a retry) back among the growing ones.
    pub(super) fn demote(&self, entry: &Arc<Entry>) {
        if self.held.lock().expect("store lock poisoned").remove(&entry.id).is_some() {
            self.following.lock().expect("store lock poisoned").insert(entry.id, entry.clone());
        }
        if self.complete.contains_key(&entry.id) {
            self.following.lock().expect("store lock poisoned").insert(entry.id, entry.clone());
            self.complete.invalidate(&entry.id);
        }
    }

    /// The ids of every entry held.
    pub(super) fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.complete.iter().map(|(id, _)| *id).collect();
        ids.extend(self.following.lock().expect("store lock poisoned").keys());
        ids.extend(self.held.lock().expect("store lock poisoned").keys());
        ids
    }

    /// The entry of `id`, if held.
    pub(super) fn get(&self, id: i64) -> Option<Arc<Entry>> {
        self.complete
            .get(&id)
            .or_else(|| self.held.lock().expect("store lock poisoned").get(&id).cloned())
            .or_else(|| self.following.lock().expect("store lock poisoned").get(&id).cloned())
    }

    pub(super) fn contains(&self, id: i64) -> bool {
        self.complete.contains_key(&id)
            || self.held.lock().expect("store lock poisoned").contains_key(&id)
            || self
                .following
                .lock()
                .expect("store lock poisoned")
                .get(&id)
                .is_some_and(|e| !self.idle(e, self.clock.now_ms()))
    }

    /// (instances held, bytes held)
    pub(super) fn usage(&self) -> (u64, u64) {
        self.complete.run_pending_tasks();
        let held = self.held.lock().expect("store lock poisoned");
        let held_bytes = self.following_bytes(&held);
        let following = self.following.lock().expect("store lock poisoned");
        let bytes = self.following_bytes(&following) + held_bytes;
        let count = self.complete.entry_count() + following.len() as u64 + held.len() as u64;
        (count, self.complete.weighted_size() + bytes)
    }
}
