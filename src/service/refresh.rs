//! The single-flight refresh of an entry: at most one in flight and one per
//! `refresh_interval` (a complete log: per `recheck_complete_ms`, status only), in its
//! own task, so that a PowerJob that hangs stalls that refresh and never its readers.
//!
//! A refresh starts when a reader finds one due, or, in cluster mode, when another
//! replica's message asks for one ([`super::cluster`]). Readers wait for the one in
//! flight a bounded time, then answer from the published view, `stale` once it is
//! overdue.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::entry::{Entry, Gate, Source, View};
use super::{LogService, ServiceError};
use crate::logs::{refresh_log, InstanceFacts, PageSource, Pages, Plan, RawPage, ReadError, SnapshotError, Status};
use crate::telemetry;
use crate::upstream::wire::InstanceInfo;
use crate::upstream::{PowerJobClient, UpstreamError};

impl LogService {
    /// Starts a refresh of `entry` when one is due and none is in flight, waits for the
    /// one in flight a bounded time, and says whether the answer is stale.
    ///
    /// `cursor` is the reader's, if it reads lines: when the view says that the shared
    /// store holds lines past what this replica shows ([`View::needs_sync`]), one
    /// refresh is forced for a read that began at `since`.
    pub(super) async fn refresh_if_due(
        &self,
        entry: &Arc<Entry>,
        cursor: Option<u64>,
        since: Instant,
    ) -> Result<bool, ServiceError> {
        // (A pushed batch's gap, or the quiet window, may have passed meanwhile.)
        self.tick_if_due(entry);
        let (complete, needs_sync, held, writer_stale) = {
            let v = entry.view();
            (v.complete, cursor.is_some_and(|c| v.needs_sync(c)), v.held(), v.writer_stale)
        };
        let interval = if complete { self.inner.recheck_complete } else { self.inner.refresh_interval };
        let in_flight = {
            let mut gate = self.gate(entry);
            if needs_sync && gate.last_attempt.is_none_or(|t| t < since) {
                gate.force = true;
            }
            if !self.start_refresh_if_due(entry, &mut gate, interval) && !gate.in_flight {
                static COALESCED: OnceLock<metrics::Counter> = OnceLock::new();
                telemetry::cached_counter(&COALESCED, telemetry::REFRESHES_COALESCED).increment(1);
                if gate.last_error.is_none() && (complete || !writer_stale) {
                    // The common case: fresh, nothing in flight, nothing failed.
                    return Ok(false);
                }
            }
            gate.in_flight
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
        let (complete, held, lines, behind, writer_stale) = {
            let v = entry.view();
            (v.complete, v.held(), v.visible > 0, cursor.is_some_and(|c| v.behind(c)), v.writer_stale)
        };
        let gate = self.gate(entry);
        match &gate.last_error {
            // Never another PowerJob's lines (409).
            Some(e @ ServiceError::InstanceConflict(_)) => Err(e.clone()),
            // The status is known and the log is not readable for the moment: no lines
            // yet, `stale`, the status.
            Some(ServiceError::Upstream(UpstreamError::NotReady(_))) if held => Ok(true),
            // The cursor is past what this replica shows and the store failed: the lines
            // it asks for are not here (503).
            Some(e @ ServiceError::Store(_)) if behind => Err(e.clone()),
            // No line held: the error is the answer (404, 502, 503 or 504).
            Some(e) if !lines => Err(e.clone()),
            None if !held && gate.in_flight => Err(UpstreamError::Timeout(self.inner.first_read_wait).into()),
            // (A complete log is never `stale`.)
            _ if complete => Ok(false),
            Some(_) => Ok(true),
            None => {
                let overdue = interval + self.inner.read_wait;
                Ok(writer_stale || gate.in_flight && gate.last_ok.is_none_or(|t| t.elapsed() > overdue))
            }
        }
    }

    /// Starts a refresh of `entry` in its own task if none is in flight and one is due
    /// (or forced); says whether it did.
    pub(super) fn start_refresh_if_due(&self, entry: &Arc<Entry>, gate: &mut Gate, interval: Duration) -> bool {
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
        let result = if self.restored_from_archive(entry).await {
            Ok(())
        } else {
            match &self.inner.shared {
                Some(shared) => self.refresh_clustered(entry, shared).await,
                None => {
                    let result = self.refresh(entry).await;
                    // Memory mode: every line is visible as soon as it is read (and joined
                    // with what was pushed; published under the lock, as pushes are).
                    {
                        let now = self.inner.client.clock().now_ms();
                        let mut f = entry.follower.write().expect("follower lock poisoned");
                        f.sync(&self.inner.join, now);
                        entry.publish(View::of(&f, f.line_count(), entry.epoch(), Source::Local));
                    }
                    self.schedule_tick(entry);
                    result.map_err(ServiceError::from)
                }
            }
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(telemetry::REFRESHES, "outcome" => outcome).increment(1);
        entry.weight.store(entry.follower.read().expect("follower lock poisoned").weight(), Ordering::Relaxed);
        let held = entry.view().held();
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
            // Immutable from now on: into the size-bounded cache of complete logs (once
            // archived, with an archive).
            self.completed(entry);
        } else {
            self.inner.store.demote(entry);
        }
        entry.refreshed.send_modify(|v| *v += 1);
        if again {
            let mut gate = self.gate(entry);
            self.start_refresh_if_due(entry, &mut gate, self.inner.refresh_interval);
        }
        // Cluster mode: a batch queued meanwhile (`cluster_push`).
        if self.gate(entry).push_due && entry.holder.load(Ordering::Relaxed) {
            self.start_drain(entry);
        }
    }

    /// Reads the instance's status and, when the follower's plan says so, its log from
    /// PowerJob into the follower (readers see the result once it is published; the
    /// status at once when it was not known yet).
    #[tracing::instrument(skip_all, fields(instance.id = entry.id))]
    pub(super) async fn refresh(&self, entry: &Entry) -> Result<(), UpstreamError> {
        let client = &self.inner.client;
        let timing = &self.inner.timing;
        let info = client.instance_info(entry.id).await?;
        self.note_instance(entry.id, &info);
        let facts = InstanceFacts {
            status: Status::from_code(info.status),
            actual_trigger_time: info.actual_trigger_time,
            finished_time: info.finished_time,
            task_tracker_address: info.task_tracker_address.clone(),
            running_times: info.running_times.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        };
        let now = self.inner.client.clock().now_ms();
        let plan = {
            let mut f = entry.follower.write().expect("follower lock poisoned");
            let f = f.follower_mut();
            f.observe(&facts, now, timing);
            f.plan(&facts, now, timing)
        };
        entry.show_first_status(facts.status);
        let job_id = {
            let mut gate = self.gate(entry);
            gate.job_id = info.job_id.or(gate.job_id);
            gate.origin = Some(origin(&info));
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

/// What PowerJob says an instance is, in a form that tells instances of two PowerJob
/// clusters with the same id apart: its app, its job and when it was created (none of
/// them changes when it runs again, unlike its trigger times and its worker).
pub(super) fn origin(info: &InstanceInfo) -> String {
    let or_dash = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "appId={} jobId={} created={}",
        or_dash(info.app_id),
        or_dash(info.job_id),
        info.gmt_create.as_deref().unwrap_or("-")
    )
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
