//! `LogService`: follows instances on demand, shares one refresh among all readers of
//! an instance, and answers cursor reads from what it holds.
//!
//! Each followed instance is an [`Entry`]: the pure [`Follower`] behind a `RwLock`
//! (readers never wait for I/O), a gate that makes refreshes single-flight and at most
//! one per `refresh_interval`, and a `watch` channel that wakes long-polls when lines
//! arrive. There is no background scan: a refresh happens only when someone reads an
//! instance whose last refresh is older than the interval (for a complete log: older
//! than `recheck_complete_ms`, and then only its status is read, to see a retry).
//!
//! A refresh runs in its own task. A reader waits for it at most `read_wait_ms` when
//! something is held, then answers from what is held (`stale` once the refresh is
//! overdue), so a PowerJob that hangs stalls only that one refresh, never the readers.
//!
//! Entries live in a [`store::Store`] of two tiers (growing, complete). Each also holds
//! its start-up state, computed lazily from its lines ([`startup`]).

mod cluster;
mod notify;
mod redis;
mod startup;
mod store;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::logs::lines::LineSlice;
use crate::logs::{
    refresh_log, Attempt, Follower, InstanceFacts, PageSource, Pages, Plan, RawPage, ReadError, SnapshotError, Status,
    Timing,
};
use crate::telemetry;
use crate::upstream::{PowerJobClient, UpstreamError};
pub use notify::{signature, FAILED_SETTLE};
pub use redis::StoreError;
pub use startup::Startup;
use store::Store;

/// Back-off after consecutive failed refreshes: the interval doubled at most this often…
const MAX_BACKOFF_DOUBLINGS: u32 = 5;
/// …and never longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bytes counted per entry besides its lines.
const ENTRY_OVERHEAD: u64 = 512;

/// One answer to a cursor read; `L` is `Vec<Arc<str>>` (owned) or a [`LineSlice`]
/// (rendered in place, without copying the lines), `A` the attempts likewise, `E` the
/// epoch (`Arc<str>` owned, `&str` borrowed).
#[derive(Debug, Clone)]
pub struct LogPage<L = Vec<Arc<str>>, A = Vec<Attempt>, E = Arc<str>> {
    /// The instance.
    pub instance_id: i64,
    /// Names the served sequence of this instance: `<boot id>-<entry number>`, opaque to
    /// clients (docs/API.md, "Epochs").
    pub epoch: E,
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
    /// The log reached `logs.max_lines_per_instance` and was cut there.
    pub truncated: bool,
    /// The current run (PowerJob's `runningTimes`).
    pub attempt: u32,
    /// Every run seen and the first line it logged.
    pub attempts: A,
}

/// A page whose lines and attempts are borrowed from the follower.
pub type BorrowedPage<'a> = LogPage<LineSlice<'a>, &'a [Attempt], &'a str>;

impl<L, A, E> LogPage<L, A, E> {
    fn map<L2, A2, E2>(&self, lines: L2, attempts: A2, epoch: E2) -> LogPage<L2, A2, E2> {
        LogPage {
            instance_id: self.instance_id,
            epoch,
            from_line: self.from_line,
            lines,
            total_lines: self.total_lines,
            status: self.status,
            complete: self.complete,
            stale: self.stale,
            upstream_lost: self.upstream_lost,
            truncated: self.truncated,
            attempt: self.attempt,
            attempts,
        }
    }
}

impl LogPage {
    /// The cursor for the next read.
    pub fn next_line(&self) -> u64 {
        self.from_line + self.lines.len() as u64
    }
}

impl BorrowedPage<'_> {
    /// The cursor for the next read.
    pub fn next_line(&self) -> u64 {
        self.from_line + self.lines.len() as u64
    }

    /// An owned copy.
    pub fn to_owned_page(&self) -> LogPage {
        self.map(self.lines.to_vec(), self.attempts.to_vec(), Arc::from(self.epoch))
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
    recheck_complete: Duration,
    read_wait: Duration,
    /// How long a read with nothing held waits for the first refresh.
    first_read_wait: Duration,
    store: Store,
    /// Start-up rules per job and per instance run through powertail.
    startup_rules: startup::StartupRules,
    /// Cancelled when the server shuts down: long-polls and streams answer at once.
    shutdown: CancellationToken,
    /// Webhooks of start-up events, and their watchers.
    notifier: notify::Notifier,
    /// The shared line log (`[cluster]`); `None`: everything in this process.
    shared: Option<Arc<redis::SharedLog>>,
}

struct Entry {
    id: i64,
    /// When a client last read it (epoch ms), for idle eviction.
    last_read: AtomicI64,
    /// The follower; in cluster mode it may hold lines readers must not see yet (see
    /// `view`).
    follower: RwLock<Follower>,
    /// What readers see (lock order: follower, then view).
    view: RwLock<View>,
    /// Cluster mode: this replica holds the instance's lease (it reads PowerJob).
    holder: AtomicBool,
    /// Cluster mode: the follower must be rebuilt from the store before it is used
    /// again (an append failed, so it may hold lines the store does not).
    reload: AtomicBool,
    gate: Mutex<Gate>,
    /// Bumped whenever lines, status or completeness change.
    changed: watch::Sender<u64>,
    /// Bumped whenever a refresh ends, well or not.
    refreshed: watch::Sender<u64>,
    /// The follower's weight as of its last refresh (read without its lock).
    weight: AtomicU64,
    /// Start-up trackers, advanced lazily (lock order: follower, then this).
    startup: Mutex<startup::StartupState>,
}

/// What readers of an entry see: the first `visible` lines of its follower (in cluster
/// mode, those committed to the store) and the state as of then.
#[derive(Debug, Clone, Default, PartialEq)]
struct View {
    /// Names the sequence this entry serves. Memory mode: a new entry (after a restart,
    /// an idle eviction, or a complete log evicted and read again) has a new one.
    /// Cluster mode: the store's, empty until it was read.
    epoch: Arc<str>,
    visible: usize,
    status: Status,
    complete: bool,
    upstream_lost: bool,
    truncated: bool,
    attempts: Vec<Attempt>,
}

impl View {
    /// The first `visible` lines of `f` and its state; complete only if that is all.
    fn of(f: &Follower, visible: usize, epoch: Arc<str>) -> Self {
        let visible = visible.min(f.line_count());
        View {
            epoch,
            visible,
            status: f.status(),
            complete: f.is_complete() && visible == f.line_count(),
            upstream_lost: f.upstream_lost(),
            truncated: f.truncated(),
            attempts: f.attempts().to_vec(),
        }
    }
}

#[derive(Default)]
struct Gate {
    in_flight: bool,
    /// Refresh at the next read whatever the interval (after a retry through powertail).
    force: bool,
    last_attempt: Option<Instant>,
    last_ok: Option<Instant>,
    failures: u32,
    facts: Option<InstanceFacts>,
    /// The instance's job as PowerJob reports it (for its start-up rules).
    job_id: Option<i64>,
    last_error: Option<ServiceError>,
}

impl Gate {
    fn due(&self, interval: Duration, now: Instant) -> bool {
        let backoff =
            interval.saturating_mul(1 << self.failures.min(MAX_BACKOFF_DOUBLINGS)).min(MAX_BACKOFF.max(interval));
        self.force || self.last_attempt.is_none_or(|t| now >= t + backoff)
    }

    fn next_due(&self, interval: Duration) -> Option<Instant> {
        let backoff =
            interval.saturating_mul(1 << self.failures.min(MAX_BACKOFF_DOUBLINGS)).min(MAX_BACKOFF.max(interval));
        self.last_attempt.map(|t| t + backoff)
    }
}

impl LogService {
    /// A service reading through `client`; with `[cluster]`, sharing its logs through
    /// Redis (connected lazily: a Redis that is down only fails reads until it is back).
    ///
    /// # Errors
    /// A `[cluster]` address the Redis client refuses.
    pub fn new(config: &Config, client: PowerJobClient) -> Result<Self, StoreError> {
        let read_wait = Duration::from_millis(config.logs.read_wait_ms);
        let shared = config.cluster.as_ref().map(redis::SharedLog::new).transpose()?.map(Arc::new);
        let clock = client.clock().clone();
        let service = LogService {
            inner: Arc::new(Inner {
                client,
                timing: config.timing(),
                refresh_interval: config.refresh_interval(),
                recheck_complete: Duration::from_millis(config.logs.recheck_complete_ms),
                read_wait,
                first_read_wait: config.request_timeout() + read_wait,
                store: Store::new(config, clock),
                startup_rules: startup::StartupRules::new(config),
                notifier: notify::Notifier::new(config),
                shutdown: CancellationToken::new(),
                shared,
            }),
        };
        service.start_wake_ups();
        Ok(service)
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
    /// With `epoch`, the read is answered only if it names the sequence held now
    /// ([`ServiceError::EpochMismatch`] otherwise, at once, before PowerJob is read).
    ///
    /// # Errors
    /// The upstream failure when nothing at all is known about the instance,
    /// [`UpstreamError::InstanceNotFound`] for an instance PowerJob does not know, and
    /// [`ServiceError::EpochMismatch`].
    pub async fn read(
        &self,
        id: i64,
        from_line: u64,
        limit: usize,
        wait: Duration,
        epoch: Option<&str>,
    ) -> Result<LogPage, ServiceError> {
        self.read_with(id, from_line, limit, wait, epoch, |page| page.to_owned_page()).await
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
        epoch: Option<&str>,
        render: impl Fn(&BorrowedPage<'_>) -> R,
    ) -> Result<R, ServiceError> {
        let entry = self.entry(id)?;
        // Another sequence than the client's (also one this very request created: a new
        // sequence cannot match): 410 before anything is read. (Cluster mode: once the
        // store named it; before, the first look after its read checks.)
        let mismatch = |current: &str| epoch.is_some_and(|e| e != current);
        let current = entry.epoch();
        if !current.is_empty() && mismatch(&current) {
            return Err(ServiceError::EpochMismatch(current));
        }
        // Cluster mode: a cursor past the lines this replica shows was served by another
        // replica, so the store holds more: sync now; and from behind it never answer
        // `complete` (the client would stop short), nor from a store that failed (503).
        let shared = self.inner.shared.is_some();
        if shared && from_line > entry.line_count() as u64 {
            self.gate(&entry).force = true;
        }
        self.poll(&entry, wait, |stale, last| {
            // (A complete entry is never `stale`: the error says the store failed.)
            if shared && from_line > entry.line_count() as u64 {
                if let Some(ServiceError::Store(e)) = &self.gate(&entry).last_error {
                    return Some(Err(ServiceError::Store(e.clone())));
                }
            }
            entry.with_page(from_line, limit, stale, |page| {
                if mismatch(page.epoch) {
                    return Some(Err(ServiceError::EpochMismatch(Arc::from(page.epoch))));
                }
                if shared && page.complete && from_line > page.total_lines {
                    return last.then(|| Ok(render(&LogPage { complete: false, ..page.clone() })));
                }
                (!page.lines.is_empty() || page.complete || last).then(|| Ok(render(page)))
            })
        })
        .await?
    }

    /// Refreshes `entry` when due and asks `look(stale, last)` for an answer; until it
    /// gives one, waits for a change, the next refresh or the end of `wait`, and asks
    /// again. `last` is true when the wait is over (or the server shuts down, then with
    /// `stale` false); `look` must answer then. The first look subscribes to nothing (the
    /// common case: the answer is there, or there is no wait).
    async fn poll<R>(
        &self,
        entry: &Arc<Entry>,
        wait: Duration,
        mut look: impl FnMut(bool, bool) -> Option<R>,
    ) -> Result<R, ServiceError> {
        let stale = self.refresh_if_due(entry).await?;
        if let Some(answer) = look(stale, wait.is_zero()) {
            return Ok(answer);
        }
        let deadline = Instant::now() + wait;
        let mut changed = entry.changed.subscribe();
        loop {
            // Subscribed before looking: a change after the look wakes the wait below.
            changed.mark_unchanged();
            let stale = self.refresh_if_due(entry).await?;
            let now = Instant::now();
            if let Some(answer) = look(stale, now >= deadline) {
                return Ok(answer);
            }
            let next_refresh = self.gate(entry).next_due(self.inner.refresh_interval).unwrap_or(now);
            let until = deadline.min(next_refresh.max(now + Duration::from_millis(5)));
            let _waiting = GaugeGuard::new(telemetry::LONG_POLL_WAITING);
            tokio::select! {
                _ = changed.changed() => {}
                () = tokio::time::sleep_until(until) => {}
                () = self.inner.shutdown.cancelled() => {
                    return Ok(look(false, true).expect("a last look answers"));
                }
            }
        }
    }

    /// The whole log held (after a refresh when due) and its epoch, handed to `render`
    /// in place.
    ///
    /// # Errors
    /// As [`LogService::read`].
    pub async fn read_all_with<R>(
        &self,
        id: i64,
        render: impl FnOnce(&str, LineSlice<'_>) -> R,
    ) -> Result<R, ServiceError> {
        let entry = self.entry(id)?;
        self.refresh_if_due(&entry).await?;
        let follower = entry.follower.read().expect("follower lock poisoned");
        let view = entry.view.read().expect("view lock poisoned");
        Ok(render(&view.epoch, follower.lines_in(0..view.visible)))
    }

    /// Tells the service that the instance was just retried through powertail: its next
    /// read checks PowerJob at once, complete or not.
    pub fn retried(&self, id: i64) {
        let mut job_id = None;
        if let Some(entry) = self.inner.store.get(id) {
            let mut gate = self.gate(&entry);
            gate.force = true;
            job_id = gate.job_id;
        }
        // The new attempt's events (the webhook's watcher may have ended).
        self.notify_seen(id, job_id);
    }

    fn entry(&self, id: i64) -> Result<Arc<Entry>, ServiceError> {
        self.inner.store.get_or_create(id)
    }

    fn gate<'a>(&self, entry: &'a Entry) -> std::sync::MutexGuard<'a, Gate> {
        entry.gate.lock().expect("gate lock poisoned")
    }

    /// Cluster mode: whether the shared store answers a PING (`None` in memory mode).
    pub async fn store_ready(&self) -> Option<Result<(), StoreError>> {
        let shared = self.inner.shared.as_ref()?;
        Some(shared.ping().await)
    }

    /// Cluster mode: this replica's name (`cluster.node_id`).
    pub fn node(&self) -> Option<&str> {
        self.inner.shared.as_ref().map(|s| s.node())
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

    /// Starts a refresh of `entry` when one is due and none is in flight, waits for the
    /// one in flight a bounded time, and says whether the answer is stale.
    async fn refresh_if_due(&self, entry: &Arc<Entry>) -> Result<bool, ServiceError> {
        let complete = entry.is_complete();
        let interval = if complete { self.inner.recheck_complete } else { self.inner.refresh_interval };
        let (in_flight, held) = {
            let mut gate = self.gate(entry);
            if !self.start_refresh_if_due(entry, &mut gate, interval) && !gate.in_flight {
                static COALESCED: OnceLock<metrics::Counter> = OnceLock::new();
                telemetry::cached_counter(&COALESCED, telemetry::REFRESHES_COALESCED).increment(1);
                if gate.last_error.is_none() {
                    // The common case: fresh, nothing in flight, nothing failed.
                    return Ok(false);
                }
            }
            (gate.in_flight, gate.facts.is_some() || entry.line_count() > 0)
        };
        if in_flight {
            // Subscribed, then checked again: the refresh clears `in_flight` before it
            // signals, so its end cannot slip between the check and the wait.
            let mut done = entry.refreshed.subscribe();
            if self.gate(entry).in_flight {
                let wait = if held { self.inner.read_wait } else { self.inner.first_read_wait };
                let _ = tokio::time::timeout(wait, done.changed()).await;
            }
        }
        let gate = self.gate(entry);
        let lines = entry.line_count() > 0;
        let held = gate.facts.is_some() || lines;
        match &gate.last_error {
            // The status is known and the log is not readable for the moment: no lines
            // yet, `stale`, the status.
            Some(ServiceError::Upstream(UpstreamError::NotReady(_))) if held => Ok(true),
            // No line held: the error is the answer (404, 502, 503 or 504).
            Some(e) if !lines => Err(e.clone()),
            None if !held && gate.in_flight => Err(UpstreamError::Timeout(self.inner.first_read_wait).into()),
            _ if entry.is_complete() => Ok(false),
            Some(_) => Ok(true),
            None => {
                let overdue = interval + self.inner.read_wait;
                Ok(gate.in_flight && gate.last_ok.is_none_or(|t| t.elapsed() > overdue))
            }
        }
    }

    /// Starts a refresh of `entry` in its own task if none is in flight and one is due
    /// (or forced); says whether it did.
    fn start_refresh_if_due(&self, entry: &Arc<Entry>, gate: &mut Gate, interval: Duration) -> bool {
        let now = Instant::now();
        if gate.in_flight || !gate.due(interval, now) {
            return false;
        }
        gate.in_flight = true;
        gate.force = false;
        gate.last_attempt = Some(now);
        let (service, entry) = (self.clone(), entry.clone());
        tokio::spawn(async move { service.run_refresh(&entry).await });
        true
    }

    /// One refresh, in its own task: reads, records the outcome, wakes the waiters.
    async fn run_refresh(&self, entry: &Arc<Entry>) {
        let result = match &self.inner.shared {
            Some(shared) => self.refresh_shared(entry, shared).await,
            None => {
                let result = self.refresh(entry).await;
                // Memory mode: every line is visible as soon as it is read.
                let view = {
                    let f = entry.follower.read().expect("follower lock poisoned");
                    View::of(&f, f.line_count(), entry.epoch())
                };
                entry.publish(view);
                result.map_err(ServiceError::from)
            }
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(telemetry::REFRESHES, "outcome" => outcome).increment(1);
        entry.weight.store(entry.follower.read().expect("follower lock poisoned").weight(), Ordering::Relaxed);
        let again = {
            let mut gate = self.gate(entry);
            gate.in_flight = false;
            match result {
                Ok(()) => {
                    gate.failures = 0;
                    gate.last_error = None;
                    gate.last_ok = Some(Instant::now());
                }
                Err(e) => {
                    if !matches!(e, ServiceError::Upstream(UpstreamError::InstanceNotFound(_))) {
                        let held = gate.facts.is_some() || entry.line_count() > 0;
                        tracing::warn!(instance.id = entry.id, error = %e, held, "log refresh failed");
                    }
                    // (The shared store: retried at twice the interval at most, so that
                    // a failover or a restart of Redis is over for readers at once.)
                    gate.failures =
                        if matches!(e, ServiceError::Store(_)) { 1 } else { gate.failures.saturating_add(1) };
                    gate.last_error = Some(e);
                }
            }
            // Forced meanwhile (a retry, a wake-up from another replica): at once.
            gate.force
        };
        if entry.is_complete() {
            // Immutable from now on: into the size-bounded cache of complete logs.
            self.inner.store.promote(entry);
        } else {
            self.inner.store.demote(entry);
        }
        entry.refreshed.send_modify(|v| *v += 1);
        if again {
            let mut gate = self.gate(entry);
            self.start_refresh_if_due(entry, &mut gate, self.inner.refresh_interval);
        }
    }

    /// Reads the instance's status and, when the follower's plan says so, its log from
    /// PowerJob into the follower (readers see the result once it is published).
    #[tracing::instrument(skip_all, fields(instance.id = entry.id))]
    async fn refresh(&self, entry: &Entry) -> Result<(), UpstreamError> {
        let client = &self.inner.client;
        let timing = &self.inner.timing;
        let info = client.instance_info(entry.id).await?;
        let facts = InstanceFacts {
            status: Status::from_code(info.status),
            actual_trigger_time: info.actual_trigger_time,
            finished_time: info.finished_time,
            task_tracker_address: info.task_tracker_address.clone(),
            running_times: info.running_times.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        };
        let now = client.clock().now_ms();
        let plan = {
            let mut f = entry.follower.write().expect("follower lock poisoned");
            f.observe(&facts, now, timing);
            f.plan(&facts, now, timing)
        };
        let job_id = {
            let mut gate = self.gate(entry);
            gate.facts = Some(facts);
            gate.job_id = info.job_id.or(gate.job_id);
            gate.job_id
        };
        // A run of a job with a webhook (also one from the console): watched.
        self.notify_seen(entry.id, job_id);
        if let Plan::Read(pages) = plan {
            self.read_log(entry, pages).await?;
        }
        Ok(())
    }

    /// Reads the pages the plan asks for and applies them (see `logs::reader`).
    async fn read_log(&self, entry: &Entry, pages: Pages) -> Result<(), UpstreamError> {
        let src = InstancePages { client: &self.inner.client, id: entry.id };
        let read_at = self.inner.client.clock().now_ms();
        // A finished log no longer grows (but for late lines, which are checked later by
        // the usual window read): download it whole rather than page by page.
        let whole_file_ok = entry.follower.read().expect("follower lock poisoned").status().is_final();
        // (A failed read may still keep records it saw: see `Follower::salvage`.)
        let result = refresh_log(&src, &entry.follower, pages, read_at, &self.inner.timing, whole_file_ok).await;
        let outcome = result.map_err(|e| match e {
            ReadError::Source(e) => e,
            ReadError::Snapshot(e @ SnapshotError::Malformed(_)) => UpstreamError::Protocol(e.to_string()),
            ReadError::Snapshot(e) => UpstreamError::NotReady(e.to_string()),
        })?;
        tracing::debug!(
            instance.id = entry.id,
            appended = outcome.appended,
            pages = outcome.pages_read,
            "log refreshed"
        );
        Ok(())
    }
}

impl Entry {
    fn new(id: i64, epoch: Arc<str>, now: i64) -> Self {
        Entry {
            id,
            last_read: AtomicI64::new(now),
            follower: RwLock::new(Follower::default()),
            view: RwLock::new(View { epoch, ..View::default() }),
            holder: AtomicBool::new(false),
            reload: AtomicBool::new(false),
            gate: Mutex::new(Gate::default()),
            changed: watch::Sender::new(0),
            refreshed: watch::Sender::new(0),
            weight: AtomicU64::new(0),
            startup: startup::new_state(),
        }
    }

    /// The epoch readers see (empty in cluster mode until the store was read).
    fn epoch(&self) -> Arc<str> {
        self.view.read().expect("view lock poisoned").epoch.clone()
    }

    /// Complete as readers see it.
    fn is_complete(&self) -> bool {
        self.view.read().expect("view lock poisoned").complete
    }

    /// Lines readers see.
    fn line_count(&self) -> usize {
        self.view.read().expect("view lock poisoned").visible
    }

    fn weight(&self) -> u64 {
        self.weight.load(Ordering::Relaxed) + ENTRY_OVERHEAD
    }

    /// Shows `view` to readers; wakes the waiting ones if anything changed.
    fn publish(&self, view: View) {
        {
            let mut current = self.view.write().expect("view lock poisoned");
            if *current == view {
                return;
            }
            *current = view;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn with_page<R>(&self, from_line: u64, limit: usize, stale: bool, f: impl FnOnce(&BorrowedPage<'_>) -> R) -> R {
        let follower = self.follower.read().expect("follower lock poisoned");
        let view = self.view.read().expect("view lock poisoned");
        let count = view.visible.min(follower.line_count());
        let total = count as u64;
        let start = usize::try_from(from_line.min(total)).unwrap_or(count);
        let lines = follower.lines_in(start..start.saturating_add(limit).min(count));
        let reaches_end = from_line.saturating_add(lines.len() as u64) >= total;
        f(&LogPage {
            instance_id: self.id,
            epoch: &view.epoch,
            from_line,
            lines,
            total_lines: total,
            status: view.status,
            complete: view.complete && reaches_end,
            stale,
            upstream_lost: view.upstream_lost,
            truncated: view.truncated,
            attempt: view.attempts.last().map_or(1, |a| a.attempt),
            attempts: &view.attempts,
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
        self.client.clock().now_ms()
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
    /// Growing logs hold `logs.max_following_bytes` already.
    #[error("growing logs hold {0} bytes already (logs.max_following_bytes); try again later")]
    TooManyBytes(u64),
    /// The shared store (cluster mode) failed and nothing is held.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client's epoch names another sequence than the one served now (it holds the
    /// current epoch).
    #[error("the log was rebuilt since this epoch (now `{0}`): start over from line 0 with the new epoch")]
    EpochMismatch(Arc<str>),
}
