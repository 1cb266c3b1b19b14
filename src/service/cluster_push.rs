//! Cluster mode: pushes (issue 19, docs/API.md "Cluster mode"). A body may reach any
//! replica. That replica records its `(source, seq)` and queues it in Redis in one
//! script ([`SharedLog::push`]: a retry on any replica is a duplicate), answers at once,
//! and the script wakes the lease holder. The holder *drains* the queue: it offers the
//! queued bodies to its joined log ([`crate::logs::Joined`]: seq order, gap waits, the
//! merge with PowerJob's records) and appends the lines they bring with its fenced
//! append, which records the last entry consumed (in the meta, with the batch
//! bookkeeping) in the same script: a holder killed at any point is continued exactly,
//! its successor reading the queue from the entry the store says was consumed. A
//! conflict (the lease moved) reloads from the store, as appends do.
//!
//! A drain reads no PowerJob: it is a refresh of its own (single-flight with the
//! others), and PowerJob is read by the refreshes readers start, as before. A replica
//! that takes a push for an instance nobody holds takes the lease (quietly: it asks
//! nobody to refresh) and drains itself. The holder drains again when a batch's gap
//! wait or the quiet window of the sources ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::entry::Entry;
use super::push::PushFailure;
use super::redis::{LineTag, PushProgress, QueuedBatch, SharedLog, StoreError, Tick};
use super::{LogService, ServiceError};
use crate::logs::joined::Accepted;
use crate::logs::merge::Batch;
use crate::logs::{Pushed, SharedMeta};
use crate::telemetry;

/// Pushed lines read from the queue per append (at least one batch).
const DRAIN_LINES: usize = 2_000;
/// Appends of one drain at most (another drain goes on after it).
const DRAIN_ROUNDS: usize = 32;

impl LogService {
    /// Cluster mode: records and queues a body pushed for `id` (see the module docs).
    pub(super) async fn push_shared(
        &self,
        shared: &Arc<SharedLog>,
        id: i64,
        body: Pushed,
    ) -> Result<Accepted, PushFailure> {
        // (Never into another PowerJob's key prefix: refused with the reason, as reads are.)
        shared.ensure_identity(self.inner.client.app_id()).await.map_err(ServiceError::from)?;
        let entry = self.entry(id)?;
        let now = self.inner.client.clock().now_ms();
        let (batch, seed) = match body {
            Pushed::Batch(b) => (b, false),
            Pushed::Unnumbered { worker, lines } => {
                (Batch { source: String::new(), seq: 0, worker, is_final: false, lines }, true)
            }
        };
        let max_sources = self.inner.join.push.max_sources;
        let queued = shared.push(id, &batch, seed, now, max_sources).await.map_err(ServiceError::from)??;
        let outcome = match (queued.duplicate, queued.late) {
            (true, _) => "duplicate",
            (_, true) => "late",
            _ => "accepted",
        };
        metrics::counter!(telemetry::PUSH_LINES, "outcome" => outcome).increment(batch.lines.len() as u64);
        let queued_now = !queued.duplicate && !queued.late;
        if queued_now && !entry.holder.load(Ordering::Relaxed) {
            // (The holder drains on the script's wake-up; this replica only when nobody
            // holds the lease: the quiet tick takes it then.)
            self.start_drain(&entry);
        }
        let (accepted, dropped) = if queued_now { (batch.lines.len(), 0) } else { (0, batch.lines.len()) };
        let dropped = if queued.late { dropped } else { 0 };
        Ok(Accepted { accepted, duplicate: queued.duplicate, next_seq: queued.next_seq, appended: 0, dropped })
    }

    /// Drains the push queue of `entry` in a task of its own, unless a refresh or a
    /// drain is in flight (then once that one ends).
    pub(super) fn start_drain(&self, entry: &Arc<Entry>) {
        {
            let mut gate = self.gate(entry);
            if gate.in_flight {
                gate.push_due = true;
                return;
            }
            gate.in_flight = true;
            gate.push_due = false;
        }
        let (service, entry) = (self.clone(), entry.clone());
        tokio::spawn(async move { service.run_drain(&entry).await });
    }

    /// One drain, in its own task; then what was asked for meanwhile.
    async fn run_drain(&self, entry: &Arc<Entry>) {
        let Some(shared) = self.inner.shared.clone() else { return };
        if let Err(e) = self.drain_shared(entry, &shared).await {
            metrics::counter!(telemetry::STORE_ERRORS, "op" => "drain", "kind" => "failed").increment(1);
            tracing::warn!(instance.id = entry.id, error = %e, "draining pushed lines failed; retried at the next push or read");
        }
        entry.weight.store(entry.follower.read().expect("follower lock poisoned").weight(), Ordering::Relaxed);
        if entry.is_complete() {
            self.inner.store.promote(entry);
        }
        let interval = self.inner.refresh_interval;
        let (drain, refresh) = {
            let mut gate = self.gate(entry);
            gate.in_flight = false;
            // A poll that came due meanwhile, for readers of this replica (a drain never
            // reads PowerJob for nobody: not for an entry only pushes made).
            let read_lately = self.inner.client.clock().now_ms() - entry.last_read.load(Ordering::Relaxed)
                < i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            let poll = gate.last_attempt.is_some() && read_lately && gate.due(interval, tokio::time::Instant::now());
            (gate.push_due, gate.force || poll)
        };
        entry.refreshed.send_modify(|v| *v += 1);
        if drain {
            self.start_drain(entry);
        } else if refresh {
            let mut gate = self.gate(entry);
            self.start_refresh_if_due(entry, &mut gate, interval);
        }
    }

    /// A drain: takes the lease quietly if nobody holds it; the holder catches up with
    /// the store and drains the queue.
    async fn drain_shared(&self, entry: &Arc<Entry>, shared: &Arc<SharedLog>) -> Result<(), ServiceError> {
        let extra = if entry.is_complete() { self.inner.recheck_complete.as_millis() as u64 } else { 0 };
        let tick = shared.tick(entry.id, &self.inner.store.new_epoch(), extra, true).await?;
        let known = entry.epoch();
        if *known != *tick.epoch && !known.is_empty() {
            entry.reload.store(true, Ordering::Relaxed);
        }
        // The instance's origin, when this replica knows it (a refresh read it): never
        // pushed lines into another PowerJob's log of the same id. (Not asked of PowerJob
        // here: a drain reads no PowerJob; the next refresh checks it.)
        if self.gate(entry).origin.is_some() {
            self.check_origin(entry, shared, &tick).await?;
        }
        let was_holder = entry.holder.swap(tick.holder, Ordering::Relaxed);
        if tick.holder != was_holder {
            let change = if tick.holder { "acquired" } else { "lost" };
            metrics::counter!(telemetry::STORE_LEASES, "change" => change).increment(1);
        }
        if !tick.holder {
            return Ok(());
        }
        let tick = self.catch_up(entry, shared, &tick, !was_holder || tick.acquired).await?;
        self.drain_queue(entry, shared, tick).await.map(drop)
    }

    /// The holder, caught up with the store at `tick`: applies the queued bodies after
    /// the entry consumed and what is due by now (a gap given up, the sources quiet),
    /// and appends what they bring with the consumed entry. Returns the tick after its
    /// appends; `None` when an append was refused (the lease moved, or the log under it:
    /// the store is followed from the next refresh on).
    pub(super) async fn drain_queue(
        &self,
        entry: &Arc<Entry>,
        shared: &SharedLog,
        mut tick: Tick,
    ) -> Result<Option<Tick>, ServiceError> {
        let failing = tick.meta.as_ref().is_some_and(|m| m.upstream_failing);
        for round in 0.. {
            if round == DRAIN_ROUNDS {
                // (A long queue: the rest in a drain of its own, once this one ended.)
                self.gate(entry).push_due = true;
                break;
            }
            let consumed = consumed(&tick);
            let queued = shared.read_queue(entry.id, &consumed, DRAIN_LINES).await?;
            let last = queued.last().map_or(consumed, |q| q.entry.clone());
            let before = self.apply_queued(entry, &queued);
            let meta = SharedMeta { upstream_failing: failing, ..self.meta_of(entry, &last) };
            let (lines, tags) = self.tagged_since(entry, before);
            // (Nothing queued, and the join as stored: nothing to write. Not even the
            // meta of an instance nobody wrote yet: it is the refreshes' to write.)
            let stored_join = tick.meta.as_ref().and_then(|m| m.join.as_ref());
            if queued.is_empty() && lines.is_empty() && meta.join.as_ref() == stored_join {
                break;
            }
            let applied = entry.follower.read().expect("follower lock poisoned").applied_seqs();
            let progress = PushProgress { consumed: last, applied };
            let texts: Vec<&str> = lines.iter().map(|l| &**l).collect();
            let next = match shared.append(entry.id, before as u64, &texts, &tags, &meta, Some(&progress)).await {
                Ok(next) => next,
                Err(e) => {
                    if matches!(e, StoreError::Conflict(_)) {
                        // Another writer moved the log under this one: drain again, from
                        // the store (its queue entries are not consumed).
                        self.gate(entry).push_due = true;
                    }
                    return self.append_refused(entry, e).map(|()| None);
                }
            };
            let committed = if !shared.waits_for_replicas() || shared.commit(entry.id, next).await? {
                next
            } else {
                tick.committed
            };
            tick = Tick { next, committed, meta: Some(meta), ..tick };
            self.show(entry, committed, &tick, failing);
            // (Until a read finds the queue empty, and nothing new is due.)
        }
        self.schedule_drain(entry);
        Ok(Some(tick))
    }

    /// Offers `queued` to the entry's joined log and applies what is due now; returns
    /// the number of lines it held before.
    fn apply_queued(&self, entry: &Entry, queued: &[QueuedBatch]) -> usize {
        let now = self.inner.client.clock().now_ms();
        let config = &self.inner.join;
        let mut f = entry.follower.write().expect("follower lock poisoned");
        let before = f.line_count();
        for q in queued {
            let body = if q.batch.source.is_empty() {
                Pushed::Unnumbered { worker: q.batch.worker.clone(), lines: q.batch.lines.clone() }
            } else {
                Pushed::Batch(q.batch.clone())
            };
            // (The store checked the batch already; the bookkeeping may still refuse
            // one, e.g. a source too many counted differently: it is dropped.)
            if let Err(e) = f.offer(config, body, q.at) {
                tracing::debug!(instance.id = entry.id, error = %e, "a queued push was refused");
            }
        }
        f.tick(config, now);
        before
    }

    /// The entry's lines from `from` on, with their tags.
    pub(super) fn tagged_since(&self, entry: &Entry, from: usize) -> (Vec<Arc<str>>, Vec<LineTag>) {
        let f = entry.follower.read().expect("follower lock poisoned");
        let tags = f.line_tags(from).into_iter().map(|(starts_unit, pushed)| LineTag { starts_unit, pushed });
        (f.lines_in(from..f.line_count()).to_vec(), tags.collect())
    }

    /// An append the store refused: the follower is rebuilt from the store before its
    /// next use; a lost lease or another writer is no error (the store is followed).
    pub(super) fn append_refused(&self, entry: &Entry, e: StoreError) -> Result<(), ServiceError> {
        entry.reload.store(true, Ordering::Relaxed);
        if matches!(e, StoreError::Fenced) {
            entry.holder.store(false, Ordering::Relaxed);
        }
        if matches!(e, StoreError::Fenced | StoreError::Conflict(_)) {
            let change = if matches!(e, StoreError::Fenced) { "fenced" } else { "conflict" };
            metrics::counter!(telemetry::STORE_LEASES, "change" => change).increment(1);
            tracing::info!(instance.id = entry.id, error = %e, "append refused; following the store");
            return Ok(());
        }
        Err(e.into())
    }

    /// Makes sure the holder drains again when the joined log's next deadline passes
    /// (a batch's gap wait, the sources' quiet window).
    pub(super) fn schedule_drain(&self, entry: &Arc<Entry>) {
        let Some(at) = entry.follower.read().expect("follower lock poisoned").next_deadline(&self.inner.join) else {
            return;
        };
        {
            let mut gate = self.gate(entry);
            if gate.drain_at.is_some_and(|t| t <= at) {
                return;
            }
            gate.drain_at = Some(at);
        }
        let (service, entry) = (self.clone(), entry.clone());
        tokio::spawn(async move {
            let now = service.inner.client.clock().now_ms();
            let wait = Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = service.inner.shutdown.cancelled() => return,
            }
            {
                let mut gate = service.gate(&entry);
                if gate.drain_at == Some(at) {
                    gate.drain_at = None;
                }
            }
            if entry.holder.load(Ordering::Relaxed) {
                service.start_drain(&entry);
            }
        });
    }
}

/// The last push queue entry the store says was applied.
pub(super) fn consumed(tick: &Tick) -> String {
    tick.meta.as_ref().and_then(|m| m.join.as_ref()).map(|j| j.consumed.clone()).unwrap_or_default()
}
