//! The archive in the service (issue 20, docs/API.md "Archive"): every complete log is
//! written once to the SQL store of [`crate::archive`], and a log that is not held is
//! looked for there before PowerJob is asked.
//!
//! * **Writing.** When a refresh finds a log complete ([`LogService::completed`]), the
//!   entry is *held* by the store (never evicted, see `Store::hold`) and queued; the
//!   writer task puts it (insert or replace by instance id) and only then lets it into
//!   the size-bounded cache of complete logs. A failed write is retried with back-off
//!   ([`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`]) and counted; readers never wait for
//!   a write. A retry makes the log live again (the store demotes it); its next complete
//!   state differs from the one written ([`Written`]) and replaces the row. In cluster
//!   mode one replica writes each complete state: the first to claim it in Redis.
//! * **Runs started through powertail** are followed to completion by the webhook
//!   watcher of [`super::notify`] (one mechanism), with or without a webhook, so they
//!   are archived whether or not anyone reads them. Instances started elsewhere are
//!   archived once a reader followed them to completion.
//! * **Reading.** A new entry has no epoch yet; its first refresh looks in the archive
//!   ([`LogService::restored_from_archive`]): an archived log is served from there under
//!   its archived epoch, without a request to PowerJob (complete cursors hold across
//!   restarts, and a log PowerJob lost is served as it was archived). Otherwise (also
//!   while the archive cannot be read) the entry gets a new epoch (memory mode) or the
//!   shared store's (cluster mode) and PowerJob is read as before. A restored log is
//!   rechecked like any complete log: its status only, every `recheck_complete_ms`, to
//!   see a retry.
//! * **Upkeep.** The archive is opened (migrations run) at start-up in a task of its
//!   own, retried while it fails; the usage gauges are refreshed every [`USAGE_EVERY`];
//!   with `retain_days > 0`, runs finished before then are deleted in batches of
//!   [`PURGE_BATCH`] every [`PURGE_EVERY`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::entry::{Entry, Source, View};
use super::per_job::PerJob;
use super::redis::SharedLog;
use super::{Inner, LogService, ServiceError};
use crate::archive::{Archive, ArchiveError, ArchivedLog, StartupOutcome};
use crate::config::{ArchiveConfig, Config};
use crate::logs::line::record_time;
use crate::logs::units::segment;
use crate::logs::{Follower, SharedMeta, Status};
use crate::upstream::wire::InstanceInfo;

/// The first retry of a failed write waits this long, each next one twice as long…
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// …at most this long.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Opening the archive is retried this often while it fails.
const OPEN_RETRY: Duration = Duration::from_secs(5);
/// How long a first read waits for the archive to open at start-up (after that, while
/// it cannot be opened, reads go to PowerJob at once).
const OPEN_WAIT: Duration = Duration::from_secs(5);
/// Rows deleted per retention statement (each one is short: the database is never held
/// long).
pub const PURGE_BATCH: u32 = 1_000;
/// How often the retention runs.
const PURGE_EVERY: Duration = Duration::from_secs(3_600);
/// How often the usage gauges are refreshed.
const USAGE_EVERY: Duration = Duration::from_secs(30);
/// Instances remembered with what was archived of them, their times and their job.
const REMEMBERED: u64 = 100_000;

/// Rows (runs) in the archive.
pub const ARCHIVE_ROWS: &str = "powertail_archive_rows";
/// Archived lines.
pub const ARCHIVE_LINES: &str = "powertail_archive_lines";
/// Bytes the archive takes (tables and indexes).
pub const ARCHIVE_BYTES: &str = "powertail_archive_bytes";
/// Archive writes (rows put), by `outcome` (`ok`, `error`).
pub const ARCHIVE_WRITES: &str = "powertail_archive_writes_total";
/// Archive writes that failed (retried later), by `kind` (`unavailable`, `other`).
pub const ARCHIVE_WRITE_FAILURES: &str = "powertail_archive_write_failures_total";
/// Latency of one archive write.
pub const ARCHIVE_WRITE_SECONDS: &str = "powertail_archive_write_duration_seconds";
/// Time from a log found complete to its row written (the lag of the archive).
pub const ARCHIVE_LAG_SECONDS: &str = "powertail_archive_lag_seconds";
/// Complete logs waiting to be archived now.
pub const ARCHIVE_PENDING: &str = "powertail_archive_pending";
/// Logs served from the archive (a read that found nothing held).
pub const ARCHIVE_RESTORES: &str = "powertail_archive_restores_total";
/// Rows deleted by the retention.
pub const ARCHIVE_PURGED: &str = "powertail_archive_purged_total";

/// The archive as the HTTP layer sees it.
#[derive(Clone)]
pub enum ArchiveAccess {
    /// `archive.url = ""`.
    Off,
    /// Configured, but not open (yet, or any more).
    Unavailable,
    /// Open.
    Open(Archive),
}

/// Where opening the archive stands.
#[derive(Clone)]
enum Opened {
    /// The first try runs.
    Opening,
    /// Open (migrations ran).
    Open(Archive),
    /// The last try failed; tried again every [`OPEN_RETRY`].
    Failed,
}

/// What was archived of an instance: a complete state is written once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    epoch: Arc<str>,
    lines: usize,
    attempts: usize,
    status: Status,
}

impl Written {
    fn of(view: &View) -> Self {
        Written { epoch: view.epoch.clone(), lines: view.visible, attempts: view.attempts.len(), status: view.status }
    }
}

/// A complete log waiting for its write.
struct Pending {
    entry: Arc<Entry>,
    /// When it was found complete (the lag is measured from here).
    since: Instant,
    next_try: Instant,
    failures: u32,
}

/// The archive of one service: the store, the write queue and what was written.
pub(super) struct Archiver {
    retain_days: u64,
    opened: watch::Sender<Opened>,
    pending: Mutex<HashMap<i64, Pending>>,
    wake: Notify,
    written: moka::sync::Cache<i64, Written>,
    /// Instance times as PowerJob last reported them: (actualTriggerTime, finishedTime).
    times: moka::sync::Cache<i64, (Option<i64>, Option<i64>)>,
    /// The configured job name of an instance (run as it, or by its job id).
    names: PerJob<String>,
    /// Cluster mode: restored from the archive and complete; rechecked by status only,
    /// outside the shared store, until it runs again.
    pinned: moka::sync::Cache<i64, ()>,
}

impl Archiver {
    /// The archive of `config`, `None` when off (it opens in [`LogService::start_archive`]).
    pub(super) fn new(config: &Config) -> Option<Self> {
        let archive: &ArchiveConfig = &config.archive;
        archive.enabled().then(|| Archiver {
            retain_days: archive.retain_days,
            opened: watch::Sender::new(Opened::Opening),
            pending: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            written: moka::sync::Cache::new(REMEMBERED),
            times: moka::sync::Cache::new(REMEMBERED),
            names: PerJob::new(config, REMEMBERED, |name, _| Some(name.to_owned())),
            pinned: moka::sync::Cache::new(REMEMBERED),
        })
    }

    fn open_archive(&self) -> Option<Archive> {
        match &*self.opened.borrow() {
            Opened::Open(a) => Some(a.clone()),
            _ => None,
        }
    }

    /// The open archive; during the first try to open it, waits for it at most `wait`.
    async fn wait_open(&self, wait: Duration) -> Option<Archive> {
        let mut rx = self.opened.subscribe();
        let opened = tokio::time::timeout(wait, rx.wait_for(|o| !matches!(o, Opened::Opening))).await;
        match opened {
            Ok(Ok(o)) => match &*o {
                Opened::Open(a) => Some(a.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    fn pending_count(&self) -> usize {
        self.pending.lock().expect("pending lock poisoned").len()
    }

    fn is_pinned(&self, id: i64) -> bool {
        self.pinned.contains_key(&id)
    }
}

impl LogService {
    fn archiver(&self) -> Option<&Archiver> {
        self.inner.archiver.as_ref()
    }

    /// Whether an archive is configured.
    pub(super) fn archives(&self) -> bool {
        self.inner.archiver.is_some()
    }

    /// The archive as it is now.
    pub fn archive(&self) -> ArchiveAccess {
        match self.archiver() {
            None => ArchiveAccess::Off,
            Some(a) => a.open_archive().map_or(ArchiveAccess::Unavailable, ArchiveAccess::Open),
        }
    }

    /// The archive, for the history routes: during the first try to open it (start-up),
    /// waits for it a few seconds.
    pub async fn archive_opened(&self) -> ArchiveAccess {
        match self.archiver() {
            None => ArchiveAccess::Off,
            Some(a) => a.wait_open(OPEN_WAIT).await.map_or(ArchiveAccess::Unavailable, ArchiveAccess::Open),
        }
    }

    /// For `/readyz`: `"off"`, `"ok"` (open and answering) or `"unavailable"`.
    pub async fn archive_ready(&self) -> &'static str {
        match self.archive() {
            ArchiveAccess::Off => "off",
            ArchiveAccess::Unavailable => "unavailable",
            ArchiveAccess::Open(a) => match tokio::time::timeout(Duration::from_secs(2), a.ping()).await {
                Ok(Ok(())) => "ok",
                _ => "unavailable",
            },
        }
    }

    /// Complete logs waiting to be archived now (0 without an archive).
    pub fn archive_pending(&self) -> usize {
        self.archiver().map_or(0, Archiver::pending_count)
    }

    /// Remembers the times PowerJob reported for an instance (they go to its row).
    pub(super) fn note_instance(&self, id: i64, info: &InstanceInfo) {
        if let Some(a) = self.archiver() {
            a.times.insert(id, (info.actual_trigger_time, info.finished_time));
        }
    }

    /// Instance `id` was run as configured job `job` (its row names it).
    pub(super) fn archive_started(&self, id: i64, job: &str) {
        if let Some(a) = self.archiver() {
            a.names.started_as(id, job);
        }
    }

    /// A refresh left `entry` complete: into the cache of complete logs once archived
    /// (at once when this state was archived already, or without an archive).
    pub(super) fn completed(&self, entry: &Arc<Entry>) {
        let Some(a) = self.archiver() else {
            self.inner.store.promote(entry);
            return;
        };
        let state = Written::of(&entry.view());
        if a.written.get(&entry.id).is_some_and(|w| w == state) {
            self.inner.store.promote(entry);
            return;
        }
        self.inner.store.hold(entry);
        let now = Instant::now();
        {
            let mut pending = a.pending.lock().expect("pending lock poisoned");
            let p = pending.entry(entry.id).or_insert_with(|| Pending {
                entry: entry.clone(),
                since: now,
                next_try: now,
                failures: 0,
            });
            if !Arc::ptr_eq(&p.entry, entry) {
                *p = Pending { entry: entry.clone(), since: now, next_try: now, failures: 0 };
            }
            metrics::gauge!(ARCHIVE_PENDING).set(pending.len() as f64);
        }
        a.wake.notify_one();
    }

    /// The first refresh of an entry (no epoch yet): an archived log is restored from
    /// the archive (`true`: nothing else to do); otherwise, in memory mode, the entry is
    /// named a new epoch and PowerJob is read as before.
    pub(super) async fn restored_from_archive(&self, entry: &Arc<Entry>) -> bool {
        if !entry.epoch().is_empty() {
            return false;
        }
        let found = match self.archiver() {
            None => None,
            Some(a) => match a.wait_open(OPEN_WAIT).await {
                None => None,
                Some(db) => match db.get(entry.id).await {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(instance.id = entry.id, error = %e, "archive unreadable; reading PowerJob");
                        None
                    }
                },
            },
        };
        match found {
            Some(log) => {
                self.restore(entry, &log);
                true
            }
            None => {
                if self.inner.shared.is_none() && entry.epoch().is_empty() {
                    let view = View { epoch: self.inner.store.new_epoch(), ..entry.view().clone() };
                    entry.publish(view);
                }
                false
            }
        }
    }

    /// Serves `log` from `entry`, under its archived epoch.
    fn restore(&self, entry: &Arc<Entry>, log: &ArchivedLog) {
        let meta = SharedMeta {
            v: crate::logs::follower::SHARED_META_VERSION,
            status: log.status,
            attempts: log.attempts.clone(),
            finished_time: log.finished_at,
            // (Seen final: a later status that runs again is a retry.)
            final_seen_at: Some(log.archived_at),
            last_growth_at: None,
            complete: true,
            upstream_lost: log.upstream_lost,
            truncated: log.truncated,
            job_id: None,
            upstream_failing: false,
            origin: None,
        };
        let mut flags = vec![false; log.lines.len()];
        for r in segment(&log.lines) {
            flags[r.start] = true;
        }
        let mut follower = Follower::default();
        follower.extend_shared(&log.lines, &flags, &meta);
        let epoch: Arc<str> = Arc::from(log.epoch.as_str());
        let view = View::of(&follower, follower.line_count(), epoch, Source::Local);
        entry.weight.store(follower.weight(), Ordering::Relaxed);
        *entry.follower.write().expect("follower lock poisoned") = follower;
        {
            let mut gate = self.gate(entry);
            gate.job_id = log.job_id.or(gate.job_id);
        }
        if let Some(a) = self.archiver() {
            a.written.insert(entry.id, Written::of(&view));
            a.times.insert(entry.id, (log.started_at, log.finished_at));
            if self.inner.shared.is_some() {
                a.pinned.insert(entry.id, ());
            }
        }
        entry.publish(view);
        metrics::counter!(ARCHIVE_RESTORES).increment(1);
        tracing::debug!(instance.id = entry.id, lines = log.lines.len(), epoch = %log.epoch, "served from the archive");
    }

    /// Cluster mode: the refresh of `entry`; a log restored from the archive is only
    /// rechecked (its status), until it runs again: then it follows the shared store.
    pub(super) async fn refresh_clustered(
        &self,
        entry: &Arc<Entry>,
        shared: &Arc<SharedLog>,
    ) -> Result<(), ServiceError> {
        let pinned = self.archiver().is_some_and(|a| a.is_pinned(entry.id));
        if pinned {
            let info = self.inner.client.instance_info(entry.id).await?;
            let (attempt, archived) = {
                let f = entry.follower.read().expect("follower lock poisoned");
                (f.attempt(), f.status())
            };
            let runs = info.running_times.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
            let status = Status::from_code(info.status);
            let retried = runs > attempt || (!status.is_final() && status != Status::Unknown && archived.is_final());
            if !retried {
                return Ok(());
            }
            tracing::info!(instance.id = entry.id, "an archived log runs again; following the shared store");
            if let Some(a) = self.archiver() {
                a.pinned.invalidate(&entry.id);
            }
            // (Rebuilt from the store before it is used: the store's sequence, if it
            // still has one, is this one; else a new one, under a new epoch.)
            entry.reload.store(true, Ordering::Relaxed);
        }
        self.refresh_shared(entry, shared).await
    }

    /// Opens the archive, then runs the writer and the upkeep until shutdown.
    pub(super) fn start_archive(&self) {
        if self.archiver().is_none() {
            return;
        }
        let (weak, stop) = (Arc::downgrade(&self.inner), self.inner.shutdown.clone());
        let url = self.inner.archive_url.clone();
        let max_connections = self.inner.archive_max_connections;
        tokio::spawn(async move {
            tokio::select! {
                () = run_archive(weak, url, max_connections) => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// One write of a pending entry; `Ok` when done with it: `true` when this replica
    /// wrote it, `false` when there was nothing (more) to write.
    async fn write_one(&self, db: &Archive, entry: &Arc<Entry>, since: Instant) -> Result<bool, ArchiveError> {
        let Some(a) = self.archiver() else { return Ok(false) };
        let Some((log, state)) = self.archived_log(entry) else {
            // Runs again (a retry): its next complete state is queued then.
            return Ok(false);
        };
        if a.written.get(&entry.id).is_some_and(|w| w == state) {
            return Ok(false);
        }
        let (log, state) = if a.times.get(&entry.id).is_none() {
            // (Cluster mode: a replica that did not read PowerJob for it; once.)
            if let Ok(info) = self.inner.client.instance_info(entry.id).await {
                a.times.insert(entry.id, (info.actual_trigger_time, info.finished_time));
            }
            match self.archived_log(entry) {
                Some(again) => again,
                None => return Ok(false),
            }
        } else {
            (log, state)
        };
        if let Some(shared) = &self.inner.shared {
            let key = format!("archive:{}:{}:{}:{}", entry.id, state.epoch, state.lines, state.attempts);
            match shared.claim(&key).await {
                Ok(true) => {}
                Ok(false) => {
                    // Another replica writes this state.
                    a.written.insert(entry.id, state);
                    self.pin(entry.id);
                    return Ok(false);
                }
                Err(e) => tracing::debug!(instance.id = entry.id, error = %e, "archive claim failed; writing"),
            }
        }
        let started = Instant::now();
        db.put(&log).await?;
        metrics::histogram!(ARCHIVE_WRITE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(ARCHIVE_LAG_SECONDS).record(since.elapsed().as_secs_f64());
        a.written.insert(entry.id, state);
        self.pin(entry.id);
        tracing::debug!(instance.id = entry.id, lines = log.lines.len(), "archived");
        Ok(true)
    }

    /// Cluster mode: an archived complete log is rechecked by its status only, without
    /// the shared store (its Redis keys may expire; it stays served under its epoch).
    fn pin(&self, id: i64) {
        if let (Some(a), Some(_)) = (self.archiver(), &self.inner.shared) {
            a.pinned.insert(id, ());
        }
    }

    /// The row of a complete entry and the state it holds; `None` when it is not
    /// complete (any more).
    fn archived_log(&self, entry: &Arc<Entry>) -> Option<(ArchivedLog, Written)> {
        let (lines, view) = {
            let f = entry.follower.read().expect("follower lock poisoned");
            let view = entry.view().clone();
            if !view.complete {
                return None;
            }
            let lines: Vec<String> = f.lines_in(0..view.visible).iter().map(str::to_owned).collect();
            (lines, view)
        };
        let a = self.archiver()?;
        let job_id = self.gate(entry).job_id;
        let (started_at, finished_at) = a.times.get(&entry.id).unwrap_or((None, None));
        let finished_at =
            finished_at.or_else(|| entry.follower.read().expect("follower lock poisoned").shared_meta().finished_time);
        let startup = self.startup_held(entry.id).filter(|s| s.snapshot.tracked).map(|s| {
            let snap = &s.snapshot;
            let from = view.attempts.last().map_or(0, |at| at.from_line);
            let ready_after_ms = snap.ready.as_ref().and_then(|r| {
                let first = lines.iter().skip(usize::try_from(from).ok()?).find_map(|l| record_time(l))?;
                Some(record_time(lines.get(usize::try_from(r.line).ok()?)?)? - first)
            });
            StartupOutcome {
                phase: serde_json::to_value(snap.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                ready_after_ms,
                cause: snap.failure.as_ref().map(|f| f.cause.to_string()),
                cause_line: snap.failure.as_ref().and_then(|f| f.line),
            }
        });
        let state = Written::of(&view);
        let log = ArchivedLog {
            instance_id: entry.id,
            epoch: view.epoch.to_string(),
            job_id,
            job_name: a.names.for_instance(entry.id, job_id),
            status: view.status,
            started_at,
            finished_at,
            archived_at: self.inner.client.clock().now_ms(),
            lines,
            attempts: view.attempts.clone(),
            upstream_lost: view.upstream_lost,
            truncated: view.truncated,
            startup,
        };
        Some((log, state))
    }
}

/// Opens the archive (retried while it fails), then writes and keeps it up.
async fn run_archive(weak: Weak<Inner>, url: secrecy::SecretString, max_connections: u32) {
    use secrecy::ExposeSecret as _;
    let shown = crate::config::redact_url(url.expose_secret());
    let db = loop {
        let Some(inner) = weak.upgrade() else { return };
        let archiver = inner.archiver.as_ref().expect("started with an archive");
        match Archive::open(url.expose_secret(), max_connections).await {
            Ok(db) => {
                tracing::info!(archive = %shown, "archive open");
                archiver.opened.send_replace(Opened::Open(db.clone()));
                break db;
            }
            Err(e) => {
                tracing::warn!(archive = %shown, error = %e, "archive cannot be opened; retrying in {OPEN_RETRY:?}");
                archiver.opened.send_replace(Opened::Failed);
            }
        }
        drop(inner);
        tokio::time::sleep(OPEN_RETRY).await;
    };
    tokio::join!(write_loop(weak.clone(), db.clone()), upkeep_loop(weak, db));
}

/// Writes the pending entries as they come and when their back-off ends.
async fn write_loop(weak: Weak<Inner>, db: Archive) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let service = LogService { inner };
        let archiver = service.archiver().expect("started with an archive");
        let notified = archiver.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let due: Vec<(Arc<Entry>, Instant)> = {
            let pending = archiver.pending.lock().expect("pending lock poisoned");
            pending.values().filter(|p| p.next_try <= now).map(|p| (p.entry.clone(), p.since)).collect()
        };
        for (entry, since) in due {
            let result = service.write_one(&db, &entry, since).await;
            let mut pending = archiver.pending.lock().expect("pending lock poisoned");
            let ours = pending.get(&entry.id).is_some_and(|p| Arc::ptr_eq(&p.entry, &entry));
            match result {
                Ok(wrote) => {
                    if wrote {
                        metrics::counter!(ARCHIVE_WRITES, "outcome" => "ok").increment(1);
                    }
                    // (Complete again meanwhile, in another state: written at the next turn.)
                    let current = entry.is_complete().then(|| Written::of(&entry.view()));
                    let done = current.is_none_or(|c| archiver.written.get(&entry.id).is_some_and(|w| w == c));
                    if ours && done {
                        pending.remove(&entry.id);
                    }
                    drop(pending);
                    if done && entry.is_complete() {
                        service.inner.store.release(&entry);
                    }
                }
                Err(e) => {
                    let kind = if matches!(e, ArchiveError::Unavailable(..)) { "unavailable" } else { "other" };
                    metrics::counter!(ARCHIVE_WRITES, "outcome" => "error").increment(1);
                    metrics::counter!(ARCHIVE_WRITE_FAILURES, "kind" => kind).increment(1);
                    if let Some(p) = pending.get_mut(&entry.id).filter(|_| ours) {
                        p.failures = p.failures.saturating_add(1);
                        let backoff = FIRST_BACKOFF.saturating_mul(1 << (p.failures - 1).min(10)).min(MAX_BACKOFF);
                        p.next_try = Instant::now() + backoff;
                        tracing::warn!(instance.id = entry.id, error = %e, failures = p.failures, retry_in = ?backoff, "archive write failed; the log stays held");
                    }
                }
            }
        }
        let next = {
            let pending = archiver.pending.lock().expect("pending lock poisoned");
            metrics::gauge!(ARCHIVE_PENDING).set(pending.len() as f64);
            pending.values().map(|p| p.next_try).min()
        };
        let until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3_600));
        // (The service is kept while this waits: the task ends at shutdown.)
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// Refreshes the usage gauges and runs the retention.
async fn upkeep_loop(weak: Weak<Inner>, db: Archive) {
    let mut last_purge: Option<Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let retain_days = inner.archiver.as_ref().map_or(0, |a| a.retain_days);
        let now_ms = inner.client.clock().now_ms();
        drop(inner);
        if retain_days > 0 && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(Instant::now());
            let cutoff = now_ms - i64::try_from(retain_days * 86_400_000).unwrap_or(i64::MAX);
            purge(&db, cutoff).await;
        }
        match db.usage().await {
            Ok(u) => {
                metrics::gauge!(ARCHIVE_ROWS).set(u.runs as f64);
                metrics::gauge!(ARCHIVE_LINES).set(u.lines as f64);
                metrics::gauge!(ARCHIVE_BYTES).set(u.bytes as f64);
            }
            Err(e) => tracing::debug!(error = %e, "archive usage unavailable"),
        }
        tokio::time::sleep(USAGE_EVERY).await;
    }
}

/// Deletes the runs finished before `cutoff_ms`, [`PURGE_BATCH`] at a time (bounded:
/// at most a thousand batches per round).
pub async fn purge(db: &Archive, cutoff_ms: i64) -> u64 {
    let mut deleted = 0;
    for _ in 0..1_000 {
        match db.purge_finished_before(cutoff_ms, PURGE_BATCH).await {
            Ok(n) => {
                deleted += n;
                metrics::counter!(ARCHIVE_PURGED).increment(n);
                if n < u64::from(PURGE_BATCH) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "archive retention failed; tried again later");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "archive retention: old runs deleted");
    }
    deleted
}
