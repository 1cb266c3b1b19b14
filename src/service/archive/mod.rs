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
//! * **Files.** This one holds the archive's state, the hooks of the refresh and the
//!   reads from the archive; [`write`] the writer and the upkeep tasks.
//! * **Upkeep.** The archive is opened (migrations run) at start-up in a task of its
//!   own, retried while it fails; the usage gauges are refreshed every [`USAGE_EVERY`];
//!   with `retain_days > 0`, runs finished before then are deleted in batches of
//!   [`PURGE_BATCH`] every [`PURGE_EVERY`].

mod write;

pub use write::purge;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::entry::{Entry, Source, View};
use super::per_job::PerJob;
use super::redis::SharedLog;
use super::{LogService, ServiceError};
use crate::archive::{Archive, ArchivedLog};
use crate::config::{ArchiveConfig, Config};
use crate::logs::units::segment;
use crate::logs::{Follower, Joined, SharedMeta, Status};
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
        if let Some(log) = found {
            if self.restore(entry, &log) {
                return true;
            }
        }
        self.name_epoch(entry);
        false
    }

    /// Memory mode with an archive: names a new entry's sequence now, if nothing did yet
    /// (its first refresh found nothing archived, or lines were pushed before it).
    pub(super) fn name_epoch(&self, entry: &Entry) {
        if self.inner.shared.is_some() {
            return;
        }
        let named = {
            let mut view = entry.view.write().expect("view lock poisoned");
            let empty = view.epoch.is_empty();
            if empty {
                view.epoch = self.inner.store.new_epoch();
            }
            empty
        };
        if named {
            entry.changed.send_modify(|v| *v += 1);
        }
    }

    /// Serves `log` from `entry`, under its archived epoch; `false` when the entry got a
    /// sequence of its own meanwhile (lines pushed before its first refresh).
    fn restore(&self, entry: &Arc<Entry>, log: &ArchivedLog) -> bool {
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
            join: None,
        };
        let mut flags = vec![false; log.lines.len()];
        for r in segment(&log.lines) {
            flags[r.start] = true;
        }
        let mut follower = Follower::default();
        follower.extend_shared(&log.lines, &flags, &meta);
        // (Served as the archive holds it: what was pushed is not told apart any more.)
        let follower = Joined::from(follower);
        let epoch: Arc<str> = Arc::from(log.epoch.as_str());
        let view = View::of(&follower, follower.line_count(), epoch, Source::Local);
        let weight = follower.weight();
        // (Under the follower's lock, checked again: a push publishes under it too.)
        let mut held = entry.follower.write().expect("follower lock poisoned");
        if held.line_count() > 0 || !entry.epoch().is_empty() {
            return false;
        }
        *held = follower;
        entry.weight.store(weight, Ordering::Relaxed);
        if let Some(a) = self.archiver() {
            a.written.insert(entry.id, Written::of(&view));
            a.times.insert(entry.id, (log.started_at, log.finished_at));
            if self.inner.shared.is_some() {
                a.pinned.insert(entry.id, ());
            }
        }
        entry.publish(view);
        drop(held);
        {
            let mut gate = self.gate(entry);
            gate.job_id = log.job_id.or(gate.job_id);
        }
        metrics::counter!(ARCHIVE_RESTORES).increment(1);
        tracing::debug!(instance.id = entry.id, lines = log.lines.len(), epoch = %log.epoch, "served from the archive");
        true
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
}
