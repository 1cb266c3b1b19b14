//! Pushed lines (issue 19), memory mode: a pushed body is merged into the entry's served
//! log ([`crate::logs::Joined`]) under its lock, the view is published and the waiting
//! readers wake. A push never reads PowerJob, but for one existence check of an
//! instance this process holds nothing of (cached).
//!
//! Batches that wait for a missing one, and a log that completes once its sources are
//! quiet, have deadlines: a timer task per entry sleeps until the next one (one at a
//! time, ended with the server), and a read that finds a deadline passed applies it at
//! once (a manual clock in tests moves past deadlines without any timer firing).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::entry::{Entry, Source, View};
use super::{LogService, ServiceError};
use crate::logs::joined::Accepted;
use crate::logs::merge::PushError;
use crate::logs::Pushed;
use crate::telemetry;
use crate::upstream::UpstreamError;

/// How long the existence of an instance (or its absence) is remembered.
pub(super) const KNOWN_TTL: Duration = Duration::from_secs(600);
/// Instances whose existence is remembered at most.
pub(super) const KNOWN_CAPACITY: u64 = 100_000;

/// Instances PowerJob was asked about for a push: `Some(job id, if PowerJob said)`
/// when it knows them, `None` when it does not.
pub(super) type Known = moka::future::Cache<i64, Option<Option<i64>>>;

/// The cache of [`Known`] instances.
pub(super) fn known_cache() -> Known {
    moka::future::Cache::builder().max_capacity(KNOWN_CAPACITY).time_to_live(KNOWN_TTL).build()
}

/// A push that could not be taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushFailure {
    /// The instance is unknown (404), PowerJob could not say, or no room (503).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The batch bookkeeping refused the batch (409, 400).
    #[error(transparent)]
    Refused(#[from] PushError),
}

impl LogService {
    /// Takes in a body pushed for instance `id` (see the module docs).
    ///
    /// # Errors
    /// [`PushFailure`]: an instance PowerJob does not know, PowerJob unreachable for the
    /// existence check, the limits on followed logs, a batch the bookkeeping refuses,
    /// the shared store (cluster mode).
    pub async fn push(&self, id: i64, body: Pushed) -> Result<Accepted, PushFailure> {
        let held = self.inner.store.get(id).is_some_and(|e| e.view().held());
        if !held {
            let job_id = self.check_known(id).await?;
            // A run of a job with a webhook (started from the console, say, and read by
            // nobody yet): watched, so that its start-up events fire on pushed lines.
            self.notify_seen(id, job_id);
        }
        if let Some(shared) = self.inner.shared.clone() {
            // Cluster mode: queued in the shared store, drained by the lease holder.
            return self.push_shared(&shared, id, body).await;
        }
        let entry = self.entry(id)?;
        // (With an archive a new entry is named at its first refresh: now, if it is this.)
        self.name_epoch(&entry);
        let now = self.inner.client.clock().now_ms();
        let lines = match &body {
            Pushed::Batch(b) => b.lines.len(),
            Pushed::Unnumbered { lines, .. } => lines.len(),
        };
        let accepted = {
            let mut f = entry.follower.write().expect("follower lock poisoned");
            let accepted = f.offer(&self.inner.join, body, now)?;
            // Published under the lock: two pushes never show their views out of order.
            entry.publish(View::of(&f, f.line_count(), entry.epoch(), Source::Local));
            entry.weight.store(f.weight(), Ordering::Relaxed);
            accepted
        };
        let outcome = if accepted.duplicate {
            "duplicate"
        } else if accepted.dropped > 0 {
            "late"
        } else {
            "accepted"
        };
        metrics::counter!(telemetry::PUSH_LINES, "outcome" => outcome).increment(lines as u64);
        if entry.is_complete() {
            // (Its last source ended after PowerJob's log was complete; archived first,
            // with an archive.)
            self.completed(&entry);
        }
        self.schedule_tick(&entry);
        Ok(accepted)
    }

    /// Asks PowerJob once whether it knows instance `id` (remembered for [`KNOWN_TTL`]);
    /// its job, if PowerJob said.
    async fn check_known(&self, id: i64) -> Result<Option<i64>, ServiceError> {
        let client = &self.inner.client;
        let known = self.inner.known.try_get_with(id, async {
            match client.instance_info(id).await {
                Ok(info) => Ok(Some(info.job_id)),
                Err(UpstreamError::InstanceNotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match known.await {
            Ok(Some(job_id)) => Ok(job_id),
            Ok(None) => Err(UpstreamError::InstanceNotFound(id).into()),
            Err(e) => Err(ServiceError::Upstream((*e).clone())),
        }
    }

    /// Makes sure a timer task applies the entry's next deadline, if it has one.
    pub(super) fn schedule_tick(&self, entry: &Arc<Entry>) {
        let Some(at) = entry.follower.read().expect("follower lock poisoned").next_deadline(&self.inner.join) else {
            return;
        };
        if entry.timer_at.fetch_min(at, Ordering::AcqRel) <= at {
            // A timer due as soon or sooner runs already (and schedules the next one).
            return;
        }
        let (service, entry) = (self.clone(), entry.clone());
        tokio::spawn(async move {
            let now = service.inner.client.clock().now_ms();
            let wait = Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = service.inner.shutdown.cancelled() => return,
            }
            let _ = entry.timer_at.compare_exchange(at, i64::MAX, Ordering::AcqRel, Ordering::Acquire);
            service.tick(&entry);
        });
    }

    /// Applies a deadline of the entry that has passed, if any (on reads: see the module
    /// docs).
    pub(super) fn tick_if_due(&self, entry: &Arc<Entry>) {
        let now = self.inner.client.clock().now_ms();
        let at = entry.timer_at.load(Ordering::Acquire);
        if at <= now && entry.timer_at.compare_exchange(at, i64::MAX, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.tick(entry);
        }
    }

    /// Applies what is due now, publishes it, and schedules the next deadline.
    fn tick(&self, entry: &Arc<Entry>) {
        let now = self.inner.client.clock().now_ms();
        let changed = {
            let mut f = entry.follower.write().expect("follower lock poisoned");
            let changed = f.tick(&self.inner.join, now);
            if changed {
                entry.publish(View::of(&f, f.line_count(), entry.epoch(), Source::Local));
                entry.weight.store(f.weight(), Ordering::Relaxed);
            }
            changed
        };
        if changed && entry.is_complete() {
            self.inner.store.promote(entry);
        }
        self.schedule_tick(entry);
    }
}
