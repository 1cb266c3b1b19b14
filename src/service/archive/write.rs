//! Writing the archive: the task that opens it, the writer of the held complete logs,
//! and the upkeep (usage gauges, retention); see the parent module.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    Opened, Written, ARCHIVE_BYTES, ARCHIVE_LAG_SECONDS, ARCHIVE_LINES, ARCHIVE_PENDING, ARCHIVE_PURGED, ARCHIVE_ROWS,
    ARCHIVE_WRITES, ARCHIVE_WRITE_FAILURES, ARCHIVE_WRITE_SECONDS, FIRST_BACKOFF, MAX_BACKOFF, OPEN_RETRY, PURGE_BATCH,
    PURGE_EVERY, USAGE_EVERY,
};
use crate::archive::{Archive, ArchiveError, ArchivedLog, StartupOutcome};
use crate::logs::line::record_time;
use crate::service::entry::Entry;
use crate::service::{Inner, LogService};

impl LogService {
    /// Opens the archive, then runs the writer and the upkeep until shutdown.
    pub(in crate::service) fn start_archive(&self) {
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
        let finished_at = finished_at
            .or_else(|| entry.follower.read().expect("follower lock poisoned").follower().shared_meta().finished_time);
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
