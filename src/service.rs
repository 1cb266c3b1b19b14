//! `LogService`: follows instances on demand, shares one refresh among all readers of
//! an instance, and answers cursor reads from what it holds.
//!
//! Each followed instance is an [`Entry`]: the pure [`Follower`] behind a `RwLock`
//! (readers never wait for I/O), a refresh gate (`tokio::Mutex`) that makes refreshes
//! single-flight and at most one per `refresh_interval`, and a `watch` channel that
//! wakes long-polls when lines arrive. There is no background scan: a refresh happens
//! only when someone reads an instance whose last refresh is older than the interval.
//!
//! Entries live in a `Store` of two tiers: growing logs (never evicted for size, since
//! their readers' cursors depend on the order they were served in; dropped after an idle
//! time, capped in number) and complete logs (immutable, in a size-bounded moka cache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::logs::lines::LineSlice;
use crate::logs::{refresh_log, Follower, InstanceFacts, PageSource, Plan, RawPage, ReadError, Status, Timing};
use crate::telemetry;
use crate::upstream::{now_ms, PowerJobClient, UpstreamError};

/// Back-off after consecutive failed refreshes: the interval doubled at most this often…
const MAX_BACKOFF_DOUBLINGS: u32 = 5;
/// …and never longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bytes counted per entry besides its lines.
const ENTRY_OVERHEAD: u64 = 512;

/// One answer to a cursor read; `L` is `Vec<Arc<str>>` (owned) or a [`LineSlice`]
/// (rendered in place, without copying the lines or touching reference counts).
#[derive(Debug, Clone)]
pub struct LogPage<L = Vec<Arc<str>>> {
    /// The instance.
    pub instance_id: i64,
    /// First line of `lines`.
    pub from_line: u64,
    /// Lines from `from_line` on (at most the limit asked for).
    pub lines: L,
    /// Lines held in all.
    pub total_lines: u64,
    /// Latest known status.
    pub status: Status,
    /// No line can follow, and this answer reaches the end.
    pub complete: bool,
    /// PowerJob could not be read just now; this is the cache.
    pub stale: bool,
    /// PowerJob's own copy lost lines this log still holds.
    pub upstream_lost: bool,
}

impl LogPage {
    /// The cursor for the next read.
    pub fn next_line(&self) -> u64 {
        self.from_line + self.lines.len() as u64
    }
}

impl LogPage<LineSlice<'_>> {
    /// The cursor for the next read.
    pub fn next_line(&self) -> u64 {
        self.from_line + self.lines.len() as u64
    }

    /// An owned copy.
    pub fn to_owned_page(&self) -> LogPage {
        LogPage {
            instance_id: self.instance_id,
            from_line: self.from_line,
            lines: self.lines.to_vec(),
            total_lines: self.total_lines,
            status: self.status,
            complete: self.complete,
            stale: self.stale,
            upstream_lost: self.upstream_lost,
        }
    }
}

/// Follows PowerJob instance logs; cheap to clone.
#[derive(Clone)]
pub struct LogService {
    inner: Arc<Inner>,
}

struct Inner {
    client: PowerJobClient,
    timing: Timing,
    refresh_interval: Duration,
    store: Store,
    /// Cancelled when the server shuts down: long-polls and streams answer at once.
    shutdown: CancellationToken,
}

struct Entry {
    id: i64,
    /// When a client last read it (epoch ms), for idle eviction.
    last_read: AtomicI64,
    follower: RwLock<Follower>,
    gate: Mutex<Gate>,
    /// Bumped whenever lines, status or completeness change.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Gate {
    last_attempt: Option<Instant>,
    failures: u32,
    facts: Option<InstanceFacts>,
    last_error: Option<UpstreamError>,
}

impl Gate {
    fn next_due(&self, interval: Duration) -> Option<Instant> {
        let backoff =
            interval.saturating_mul(1 << self.failures.min(MAX_BACKOFF_DOUBLINGS)).min(MAX_BACKOFF.max(interval));
        self.last_attempt.map(|t| t + backoff)
    }
}

impl LogService {
    /// A service reading through `client`.
    pub fn new(config: &Config, client: PowerJobClient) -> Self {
        let complete = moka::sync::Cache::builder()
            .max_capacity(config.logs.cache_max_bytes)
            .weigher(|_, e: &Arc<Entry>| u32::try_from(e.weight()).unwrap_or(u32::MAX))
            .eviction_listener(|_, _, cause| {
                if cause.was_evicted() {
                    metrics::counter!(telemetry::CACHE_EVICTIONS).increment(1);
                }
            })
            .build();
        let store = Store {
            complete,
            following: std::sync::Mutex::new(HashMap::new()),
            idle_ms: i64::try_from(config.logs.idle_evict_ms).unwrap_or(i64::MAX),
            max_following: config.logs.max_followed_instances,
        };
        LogService {
            inner: Arc::new(Inner {
                client,
                timing: config.timing(),
                refresh_interval: config.refresh_interval(),
                store,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Cancelled when the server begins to shut down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The PowerJob client.
    pub fn client(&self) -> &PowerJobClient {
        &self.inner.client
    }

    /// Reads up to `limit` lines from `from_line`, refreshing from PowerJob when due.
    /// With `wait > 0` and nothing new, holds the request until a line arrives, the log
    /// completes, or `wait` passes.
    ///
    /// # Errors
    /// The upstream failure when nothing at all is known about the instance, and
    /// [`UpstreamError::InstanceNotFound`] for an instance PowerJob does not know.
    pub async fn read(&self, id: i64, from_line: u64, limit: usize, wait: Duration) -> Result<LogPage, ServiceError> {
        self.read_with(id, from_line, limit, wait, |page| page.to_owned_page()).await
    }

    /// As [`LogService::read`], handing the answer to `render` while the lines are
    /// borrowed (the hot path serialises them in place).
    ///
    /// # Errors
    /// As [`LogService::read`].
    pub async fn read_with<R>(
        &self,
        id: i64,
        from_line: u64,
        limit: usize,
        wait: Duration,
        render: impl Fn(&LogPage<LineSlice<'_>>) -> R,
    ) -> Result<R, ServiceError> {
        let entry = self.entry(id)?;
        // The common case first, with no subscription: lines are there, or no wait.
        let stale = self.refresh_if_due(&entry).await?;
        let answer = entry.with_page(from_line, limit, stale, |page| {
            (!page.lines.is_empty() || page.complete || wait.is_zero()).then(|| render(page))
        });
        if let Some(answer) = answer {
            return Ok(answer);
        }
        let deadline = Instant::now() + wait;
        let mut changed = entry.changed.subscribe();
        loop {
            // Subscribed before looking: a change after the look wakes the wait below.
            changed.mark_unchanged();
            let stale = self.refresh_if_due(&entry).await?;
            let now = Instant::now();
            let answer = entry.with_page(from_line, limit, stale, |page| {
                (!page.lines.is_empty() || page.complete || now >= deadline).then(|| render(page))
            });
            if let Some(answer) = answer {
                return Ok(answer);
            }
            let next_refresh = entry.gate.lock().await.next_due(self.inner.refresh_interval).unwrap_or(now);
            let until = deadline.min(next_refresh.max(now + Duration::from_millis(5)));
            let _waiting = GaugeGuard::new(telemetry::LONG_POLL_WAITING);
            tokio::select! {
                _ = changed.changed() => {}
                () = tokio::time::sleep_until(until) => {}
                () = self.inner.shutdown.cancelled() => return Ok(entry.with_page(from_line, limit, false, |p| render(p))),
            }
        }
    }

    /// The whole log held (after a refresh when due), handed to `render` in place.
    ///
    /// # Errors
    /// As [`LogService::read`].
    pub async fn read_all_with<R>(&self, id: i64, render: impl FnOnce(LineSlice<'_>) -> R) -> Result<R, ServiceError> {
        let entry = self.entry(id)?;
        self.refresh_if_due(&entry).await?;
        let follower = entry.follower.read().expect("follower lock poisoned");
        Ok(render(follower.lines()))
    }

    fn entry(&self, id: i64) -> Result<Arc<Entry>, ServiceError> {
        self.inner.store.get_or_create(id)
    }

    /// Whether the instance is held now.
    pub fn is_cached(&self, id: i64) -> bool {
        self.inner.store.contains(id)
    }

    /// Publishes the cache gauges (called when metrics are scraped).
    pub fn record_gauges(&self) {
        let (instances, bytes) = self.inner.store.usage();
        metrics::gauge!(telemetry::INSTANCES_FOLLOWED).set(instances as f64);
        metrics::gauge!(telemetry::CACHE_BYTES).set(bytes as f64);
    }

    /// Refreshes `entry` unless it is complete or was refreshed less than an interval
    /// ago; concurrent callers wait for the one refresh in flight. Returns whether the
    /// answer is stale.
    async fn refresh_if_due(&self, entry: &Arc<Entry>) -> Result<bool, UpstreamError> {
        if entry.is_complete() {
            return Ok(false);
        }
        let mut gate = entry.gate.lock().await;
        let now = Instant::now();
        if gate.next_due(self.inner.refresh_interval).is_none_or(|due| now >= due) && !entry.is_complete() {
            gate.last_attempt = Some(now);
            let result = self.refresh(entry, &mut gate).await;
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!(telemetry::REFRESHES, "outcome" => outcome).increment(1);
            match result {
                Ok(()) => {
                    gate.failures = 0;
                    gate.last_error = None;
                }
                Err(e) => {
                    if !matches!(e, UpstreamError::InstanceNotFound(_)) {
                        tracing::warn!(instance.id = entry.id, error = %e, "refresh failed; serving the cache");
                    }
                    gate.failures = gate.failures.saturating_add(1);
                    gate.last_error = Some(e);
                }
            }
            if entry.is_complete() {
                // Immutable from now on: into the size-bounded cache of complete logs.
                self.inner.store.promote(entry);
            }
        } else {
            static COALESCED: OnceLock<metrics::Counter> = OnceLock::new();
            telemetry::cached_counter(&COALESCED, telemetry::REFRESHES_COALESCED).increment(1);
        }
        match &gate.last_error {
            None => Ok(false),
            // Nothing held: the error is the answer (404, 502, 503 or 504).
            Some(e) if entry.line_count() == 0 => Err(e.clone()),
            Some(_) => Ok(true),
        }
    }

    #[tracing::instrument(skip_all, fields(instance.id = entry.id))]
    async fn refresh(&self, entry: &Entry, gate: &mut Gate) -> Result<(), UpstreamError> {
        let client = &self.inner.client;
        let timing = &self.inner.timing;
        let info = client.instance_info(entry.id).await?;
        let facts = InstanceFacts {
            status: Status::from_code(info.status),
            actual_trigger_time: info.actual_trigger_time,
            finished_time: info.finished_time,
            task_tracker_address: info.task_tracker_address.clone(),
        };
        let now = now_ms();
        let plan = {
            let mut f = entry.follower.write().expect("follower lock poisoned");
            f.observe(&facts, now);
            f.plan(&facts, now, timing)
        };
        let status_changed = gate.facts.as_ref().is_none_or(|old| old.status != facts.status);
        gate.facts = Some(facts);
        if let Plan::Read { probe_page, first_page } = plan {
            self.read_log(entry, probe_page, first_page).await?;
        } else if status_changed || entry.is_complete() {
            entry.changed.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Reads the pages the plan asks for and applies them (see `logs::reader`).
    async fn read_log(&self, entry: &Entry, probe_page: u64, first_page: u64) -> Result<(), UpstreamError> {
        let src = InstancePages { client: &self.inner.client, id: entry.id };
        let read_at = now_ms();
        let was_complete = entry.is_complete();
        // A finished log no longer grows (but for late lines, which are checked later by
        // the usual window read): download it whole rather than page by page.
        let whole_file_ok = entry.follower.read().expect("follower lock poisoned").status().is_final();
        let outcome =
            refresh_log(&src, &entry.follower, probe_page, first_page, read_at, &self.inner.timing, whole_file_ok)
                .await
                .map_err(|e| match e {
                    ReadError::Source(e) => e,
                    ReadError::Snapshot(e) => UpstreamError::Protocol(e.to_string()),
                })?;
        tracing::debug!(
            instance.id = entry.id,
            appended = outcome.appended,
            pages = outcome.pages_read,
            "log refreshed"
        );
        if outcome.appended > 0 || entry.is_complete() != was_complete {
            entry.changed.send_modify(|v| *v += 1);
        }
        Ok(())
    }
}

impl Entry {
    fn is_complete(&self) -> bool {
        self.follower.read().expect("follower lock poisoned").is_complete()
    }

    fn line_count(&self) -> usize {
        self.follower.read().expect("follower lock poisoned").line_count()
    }

    fn weight(&self) -> u64 {
        self.follower.read().expect("follower lock poisoned").weight() + ENTRY_OVERHEAD
    }

    fn with_page<R>(
        &self,
        from_line: u64,
        limit: usize,
        stale: bool,
        f: impl FnOnce(&LogPage<LineSlice<'_>>) -> R,
    ) -> R {
        let follower = self.follower.read().expect("follower lock poisoned");
        let count = follower.line_count();
        let total = count as u64;
        let start = usize::try_from(from_line.min(total)).unwrap_or(count);
        let lines = follower.lines_in(start..start.saturating_add(limit));
        let reaches_end = from_line.saturating_add(lines.len() as u64) >= total;
        f(&LogPage {
            instance_id: self.id,
            from_line,
            lines,
            total_lines: total,
            status: follower.status(),
            complete: follower.is_complete() && reaches_end,
            stale,
            upstream_lost: follower.upstream_lost(),
        })
    }
}

/// The pages of one instance's log on PowerJob.
struct InstancePages<'a> {
    client: &'a PowerJobClient,
    id: i64,
}

impl PageSource for InstancePages<'_> {
    type Error = UpstreamError;

    async fn page(&self, index: u64) -> Result<RawPage, UpstreamError> {
        self.client.log_page(self.id, index).await
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }

    async fn whole_file(&self) -> Result<Option<Vec<u8>>, UpstreamError> {
        self.client.download_log(self.id).await
    }
}

/// Increments a gauge while alive.
struct GaugeGuard(&'static str);

impl GaugeGuard {
    fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        GaugeGuard(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// A read that could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// PowerJob failed (or does not know the instance) and nothing is held.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// `logs.max_followed_instances` growing logs are followed already.
    #[error("{0} growing logs are followed already (logs.max_followed_instances); try again later")]
    TooManyInstances(usize),
}

/// Where followed instances live.
///
/// A growing log is never evicted for size: its clients' cursors depend on the order it
/// was served in (late lines appended at the end), which a re-read would not restore.
/// Growing logs are only dropped after `idle_evict_ms` without a read, and their number
/// is capped. Complete logs are immutable and live in a size-bounded cache (least
/// recently used first); an evicted one is read again if asked.
struct Store {
    complete: moka::sync::Cache<i64, Arc<Entry>>,
    following: std::sync::Mutex<HashMap<i64, Arc<Entry>>>,
    idle_ms: i64,
    max_following: usize,
}

impl Store {
    fn get_or_create(&self, id: i64) -> Result<Arc<Entry>, ServiceError> {
        static HITS: OnceLock<metrics::Counter> = OnceLock::new();
        if let Some(e) = self.complete.get(&id) {
            telemetry::cached_counter(&HITS, telemetry::CACHE_HITS).increment(1);
            return Ok(e);
        }
        let now = now_ms();
        let mut following = self.following.lock().expect("store lock poisoned");
        if let Some(e) = following.get(&id).filter(|e| !self.idle(e, now)) {
            telemetry::cached_counter(&HITS, telemetry::CACHE_HITS).increment(1);
            e.last_read.store(now, Ordering::Relaxed);
            return Ok(e.clone());
        }
        metrics::counter!(telemetry::CACHE_MISSES).increment(1);
        if following.len() >= self.max_following || following.get(&id).is_some() {
            let before = following.len();
            following.retain(|_, e| !self.idle(e, now));
            metrics::counter!(telemetry::CACHE_EVICTIONS).increment((before - following.len()) as u64);
        }
        if following.len() >= self.max_following {
            return Err(ServiceError::TooManyInstances(following.len()));
        }
        let entry = Arc::new(Entry {
            id,
            last_read: AtomicI64::new(now),
            follower: RwLock::new(Follower::default()),
            gate: Mutex::new(Gate::default()),
            changed: watch::Sender::new(0),
        });
        following.insert(id, entry.clone());
        Ok(entry)
    }

    fn idle(&self, e: &Entry, now: i64) -> bool {
        now - e.last_read.load(Ordering::Relaxed) > self.idle_ms
    }

    fn promote(&self, entry: &Arc<Entry>) {
        let removed = self.following.lock().expect("store lock poisoned").remove(&entry.id);
        if removed.is_some() {
            self.complete.insert(entry.id, entry.clone());
        }
    }

    fn contains(&self, id: i64) -> bool {
        self.complete.contains_key(&id)
            || self.following.lock().expect("store lock poisoned").get(&id).is_some_and(|e| !self.idle(e, now_ms()))
    }

    /// (instances held, bytes held)
    fn usage(&self) -> (u64, u64) {
        self.complete.run_pending_tasks();
        let following = self.following.lock().expect("store lock poisoned");
        let bytes: u64 = following.values().map(|e| e.weight()).sum();
        (self.complete.entry_count() + following.len() as u64, self.complete.weighted_size() + bytes)
    }
}
