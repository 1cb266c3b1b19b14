//! Cluster mode: the refresh of an entry when its line log is shared on Redis (see
//! [`super::redis`] for the keys and scripts).
//!
//! Each refresh starts with a *tick*: it renews or takes the instance's lease and reads
//! the shared state (once the key prefix is known to belong to this replica's PowerJob,
//! and the instance's lines, if any, to this PowerJob's instance of that id).
//! Both roles then *bring* the follower *to* N lines of the store with its meta:
//!
//! * The lease is another replica's: *sync* to the committed lines, and show them with
//!   the meta (also the writer's failure to read PowerJob: `stale`). PowerJob is not
//!   read (but for the status of an instance nobody has written yet, so that an unknown
//!   one gets 404, and once per entry to check the instance's origin).
//! * The lease is ours: *catch up* to every appended line (another holder's, perhaps
//!   not all committed), *drain* the queue of pushed batches ([`super::cluster_push`]),
//!   refresh from PowerJob as in memory mode, then *write back* what changed with the
//!   fenced append (in chunks). Readers see the lines once committed.
//!
//! Whatever fails, nothing readers saw changes: a failed append leaves the lines hidden
//! and the follower is rebuilt from the store before its next use.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cluster_push::consumed;
use super::entry::{Entry, Source, View};
use super::redis::{SharedLog, StoreError, Tick, Wake};
use super::{LogService, ServiceError};
use crate::logs::{Joined, SharedMeta, Status};
use crate::telemetry;
use crate::upstream::UpstreamError;

impl LogService {
    /// One refresh of `entry` in cluster mode (see the module docs).
    pub(super) async fn refresh_shared(&self, entry: &Arc<Entry>, shared: &Arc<SharedLog>) -> Result<(), ServiceError> {
        // A complete log is only rechecked now and then: its holder keeps the lease
        // until after its next recheck, so that the other replicas do not take turns.
        shared.ensure_identity(self.inner.client.app_id()).await?;
        let extra = if entry.is_complete() { self.inner.recheck_complete.as_millis() as u64 } else { 0 };
        let tick = shared.tick(entry.id, &self.inner.store.new_epoch(), extra, false).await?;
        let known = entry.epoch();
        if *known != *tick.epoch && !known.is_empty() {
            tracing::warn!(
                instance.id = entry.id,
                "the shared log of this instance was lost from the store; it is served anew under a new epoch"
            );
            // (Readers see the new epoch with the lines of the next publish, never the
            // old lines under it: the follower is rebuilt first.)
            entry.reload.store(true, Ordering::Relaxed);
        }
        self.check_origin(entry, shared, &tick).await?;
        let was_holder = entry.holder.swap(tick.holder, Ordering::Relaxed);
        if tick.holder != was_holder {
            let change = if tick.holder { "acquired" } else { "lost" };
            metrics::counter!(telemetry::STORE_LEASES, "change" => change).increment(1);
            tracing::debug!(instance.id = entry.id, node = shared.node(), change, "lease");
        }
        if !tick.holder {
            return self.sync(entry, shared, &tick).await;
        }
        let tick = self.catch_up(entry, shared, &tick, !was_holder || tick.acquired).await?;
        // Pushed lines first (`cluster_push`): they are the fresher ones.
        self.gate(entry).push_due = false;
        let Some(tick) = self.drain_queue(entry, shared, tick).await? else { return Ok(()) };
        let failing = tick.meta.as_ref().is_some_and(|m| m.upstream_failing);
        let meta_before = SharedMeta { upstream_failing: failing, ..self.meta_of(entry, &consumed(&tick)) };
        let before = entry.follower.read().expect("follower lock poisoned").line_count();
        let refreshed = self.refresh_renewing(entry, shared).await;
        {
            // (What PowerJob brought joins what was pushed.)
            let now = self.inner.client.clock().now_ms();
            entry.follower.write().expect("follower lock poisoned").sync(&self.inner.join, now);
        }
        // Whatever the refresh changed goes to the store, also after a failed read (it
        // may have kept records it saw: `Follower::salvage`), and so does the failure:
        // every replica then answers `stale`, as this one does.
        let written = self.write_back(entry, shared, &tick, before, &meta_before, refreshed.is_ok()).await;
        self.schedule_drain(entry);
        refreshed?;
        written
    }

    /// [`LogService::refresh`], renewing the lease meanwhile: a refresh can outlast it
    /// (a slow PowerJob, or a long log to apply), and another replica would then read
    /// PowerJob too (its append, or this one's, would be refused: safe, but twice the
    /// load, and two replicas that each outlast the lease take turns for ever). The
    /// renewals run in a task of their own, so that the refresh's own work (applying a
    /// long log holds its task) never delays them.
    async fn refresh_renewing(&self, entry: &Entry, shared: &Arc<SharedLog>) -> Result<(), UpstreamError> {
        let period = shared.lease() / 3;
        let (renewer, id) = (shared.clone(), entry.id);
        let renewals = tokio::spawn(async move {
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                renew.tick().await;
                // (Lost or unreachable: the append at the end finds out and is refused.)
                let _ = renewer.renew(id).await;
            }
        });
        let result = self.refresh(entry).await;
        renewals.abort();
        result
    }

    /// The served log's meta, with `consumed` the last push queue entry applied, and
    /// the instance's job and origin (PowerJob read well).
    pub(super) fn meta_of(&self, entry: &Entry, consumed: &str) -> SharedMeta {
        let meta = entry.follower.read().expect("follower lock poisoned").shared_meta(consumed);
        let gate = self.gate(entry);
        SharedMeta { job_id: gate.job_id, origin: gate.origin.clone(), ..meta }
    }

    /// The store's lines of `entry` must be of the instance this replica's PowerJob
    /// knows under that id: another PowerJob cluster sharing the Redis and the key
    /// prefix may have written the same id (ids restart with a fresh server, and
    /// snowflake ids can meet). On a mismatch nothing of it is served: the follower
    /// is dropped, and the read is refused ([`ServiceError::InstanceConflict`]).
    pub(super) async fn check_origin(
        &self,
        entry: &Entry,
        shared: &SharedLog,
        tick: &Tick,
    ) -> Result<(), ServiceError> {
        let Some(stored) = tick.meta.as_ref().and_then(|m| m.origin.clone()) else { return Ok(()) };
        let known = self.gate(entry).origin.clone();
        let mine = match known {
            Some(o) => o,
            None => match self.inner.client.instance_info(entry.id).await {
                Ok(info) => {
                    let o = super::refresh::origin(&info);
                    self.gate(entry).origin = Some(o.clone());
                    o
                }
                // This replica's PowerJob does not know the id: not its instance.
                Err(e @ UpstreamError::InstanceNotFound(_)) => return Err(e.into()),
                // PowerJob cannot say now: the store serves as before (checked again at
                // the next refresh), rather than a replica that cannot reach PowerJob
                // refusing what the store holds.
                Err(e) => {
                    tracing::debug!(instance.id = entry.id, error = %e, "origin not checked: PowerJob unreadable");
                    return Ok(());
                }
            },
        };
        if stored == mine {
            return Ok(());
        }
        *entry.follower.write().expect("follower lock poisoned") = Joined::default();
        entry.reload.store(true, Ordering::Relaxed);
        entry.publish(View { epoch: tick.epoch.clone(), source: Source::Mirror, ..View::default() });
        if tick.holder {
            // (The other PowerJob's replicas refresh it, not this one.)
            let _ = shared.release(entry.id).await;
            entry.holder.store(false, Ordering::Relaxed);
        }
        metrics::counter!(telemetry::STORE_ERRORS, "op" => "sync", "kind" => "instance_conflict").increment(1);
        Err(ServiceError::InstanceConflict(format!(
            "instance {id} in the shared store belongs to another PowerJob: the store holds {stored}, this \
             replica's PowerJob says {mine}. Two PowerJob clusters share this Redis and [cluster] key_prefix \
             \"{prefix}\": give each its own key_prefix (or its own Redis)",
            id = entry.id,
            prefix = shared.prefix()
        )))
    }

    /// When this replica holds more lines than the store (and all of them were
    /// appended there: no failed append), the store lost lines readers may have seen:
    /// the sequence gets a new epoch, so that their cursors are refused (410), never
    /// answered with other lines at the same numbers. Returns the epoch to serve.
    async fn check_rollback(&self, entry: &Entry, shared: &SharedLog, tick: &Tick) -> Result<Arc<str>, ServiceError> {
        let local = entry.follower.read().expect("follower lock poisoned").line_count() as u64;
        if local <= tick.next || entry.reload.load(Ordering::Relaxed) {
            return Ok(tick.epoch.clone());
        }
        let epoch = shared.rotate_epoch(entry.id, &tick.epoch, &self.inner.store.new_epoch()).await?;
        tracing::warn!(
            instance.id = entry.id,
            held = local,
            stored = tick.next,
            "the shared store lost lines of this log (a failover or restart lost its tail); new epoch {epoch}"
        );
        metrics::counter!(telemetry::STORE_ERRORS, "op" => "sync", "kind" => "rolled_back").increment(1);
        entry.reload.store(true, Ordering::Relaxed);
        Ok(epoch)
    }

    /// Not the holder: takes the committed lines and the meta from the store.
    async fn sync(&self, entry: &Arc<Entry>, shared: &SharedLog, tick: &Tick) -> Result<(), ServiceError> {
        let epoch = self.check_rollback(entry, shared, tick).await?;
        let tick = &Tick { epoch, ..tick.clone() };
        let Some(meta) = &tick.meta else {
            // Nobody wrote this instance yet (the holder has not read its status, or
            // PowerJob does not know it): its status, so that readers get a status or a
            // 404 rather than an empty log of unknown state.
            let info = self.inner.client.instance_info(entry.id).await?;
            self.gate(entry).origin = Some(super::refresh::origin(&info));
            self.bring_to(entry, shared, 0, None, false).await?;
            let status = Status::from_code(info.status);
            let view = View { epoch: tick.epoch.clone(), status, source: Source::Mirror, ..View::default() };
            entry.publish(view);
            return Ok(());
        };
        self.bring_to(entry, shared, tick.committed, Some(meta), false).await?;
        let view = {
            let f = entry.follower.read().expect("follower lock poisoned");
            let visible = usize::try_from(tick.committed).unwrap_or(usize::MAX);
            let mut view = View::of(&f, visible, tick.epoch.clone(), Source::Mirror);
            // Complete only when every appended line is committed.
            view.complete &= tick.committed == tick.next;
            view.writer_stale = meta.upstream_failing;
            view
        };
        entry.publish(view);
        Ok(())
    }

    /// The holder: brings the follower to the store's `next` (lines another holder
    /// appended, perhaps not all committed yet; the whole log after a failed append),
    /// dropping the upstream model when the lease was just taken (another writer may
    /// have moved on since it was read).
    pub(super) async fn catch_up(
        &self,
        entry: &Arc<Entry>,
        shared: &SharedLog,
        tick: &Tick,
        new_holder: bool,
    ) -> Result<Tick, ServiceError> {
        let epoch = self.check_rollback(entry, shared, tick).await?;
        let tick = Tick { epoch, ..tick.clone() };
        self.bring_to(entry, shared, tick.next, tick.meta.as_ref(), new_holder).await?;
        self.show(entry, tick.committed, &tick, tick.meta.as_ref().is_some_and(|m| m.upstream_failing));
        Ok(tick)
    }

    /// Brings this process's follower to the first `target` lines of the store, with
    /// the store's `meta` (`None`: nobody wrote one yet). With `fresh`, the follower
    /// takes the meta even when nothing changed (which drops its upstream model).
    async fn bring_to(
        &self,
        entry: &Entry,
        shared: &SharedLog,
        target: u64,
        meta: Option<&SharedMeta>,
        fresh: bool,
    ) -> Result<(), ServiceError> {
        let target = usize::try_from(target).unwrap_or(usize::MAX);
        let reload = entry.reload.load(Ordering::Relaxed);
        let local = entry.follower.read().expect("follower lock poisoned").line_count();
        // (Lines without a meta: the first append was cut between two chunks.)
        let default_meta = SharedMeta::default();
        let meta = match meta {
            Some(meta) => meta,
            None if target > 0 => &default_meta,
            None => {
                if local > 0 || reload {
                    // A new sequence (the old one was lost): start over.
                    *entry.follower.write().expect("follower lock poisoned") = Joined::default();
                    entry.reload.store(false, Ordering::Relaxed);
                }
                return Ok(());
            }
        };
        if meta.job_id.is_some() {
            // (The store's word: the writer read it from PowerJob.)
            self.gate(entry).job_id = meta.job_id;
        }
        if reload || local > target {
            // Rolled back under us (a failover lost lines), or lines of a failed append.
            let f = self.load(shared, entry.id, target, meta).await?;
            *entry.follower.write().expect("follower lock poisoned") = f;
            entry.reload.store(false, Ordering::Relaxed);
        } else if local < target {
            let (lines, tags) = shared.read_lines(entry.id, local as u64, target as u64).await?;
            let tags: Vec<(bool, bool)> = tags.iter().map(|t| (t.starts_unit, t.pushed)).collect();
            entry.follower.write().expect("follower lock poisoned").extend_shared(
                &self.inner.join,
                &lines,
                &tags,
                meta,
            );
        } else if fresh || {
            let consumed = meta.join.as_ref().map_or("", |j| j.consumed.as_str());
            entry.follower.read().expect("follower lock poisoned").shared_meta(consumed) != meta.follower_part()
        } {
            entry.follower.write().expect("follower lock poisoned").extend_shared::<&str>(
                &self.inner.join,
                &[],
                &[],
                meta,
            );
        }
        Ok(())
    }

    /// Appends what the refresh added after line `before` (and the meta, if it changed,
    /// with whether PowerJob could be read: `upstream_ok`) to the store; shows it once
    /// committed. Also commits what an earlier append left uncommitted.
    async fn write_back(
        &self,
        entry: &Arc<Entry>,
        shared: &SharedLog,
        tick: &Tick,
        before: usize,
        meta_before: &SharedMeta,
        upstream_ok: bool,
    ) -> Result<(), ServiceError> {
        let meta = SharedMeta { upstream_failing: !upstream_ok, ..self.meta_of(entry, &consumed(tick)) };
        let (lines, flags) = self.tagged_since(entry, before);
        // The first meta only after PowerJob answered: the other replicas read an
        // instance nobody wrote themselves.
        let first = tick.meta.is_none() && upstream_ok;
        if lines.is_empty() && meta == *meta_before && !first && tick.committed == tick.next {
            return Ok(());
        }
        if lines.is_empty() && tick.meta.is_none() && !upstream_ok {
            return Ok(());
        }
        let texts: Vec<&str> = lines.iter().map(|l| &**l).collect();
        let next = match shared.append(entry.id, before as u64, &texts, &flags, &meta, None).await {
            Ok(next) => next,
            // Hidden lines, perhaps another writer: rebuilt from the store next time.
            Err(e) => return self.append_refused(entry, e),
        };
        let committed =
            if !shared.waits_for_replicas() || shared.commit(entry.id, next).await? { next } else { tick.committed };
        self.show(entry, committed, &Tick { next, ..tick.clone() }, meta.upstream_failing);
        Ok(())
    }

    /// Shows the holder's first `committed` lines to readers.
    pub(super) fn show(&self, entry: &Entry, committed: u64, tick: &Tick, writer_stale: bool) {
        let view = {
            let f = entry.follower.read().expect("follower lock poisoned");
            let visible = usize::try_from(committed).unwrap_or(usize::MAX);
            View { writer_stale, ..View::of(&f, visible, tick.epoch.clone(), Source::Holder) }
        };
        entry.publish(view);
    }

    /// A served log with the first `to` lines of the store and `meta`.
    async fn load(&self, shared: &SharedLog, id: i64, to: usize, meta: &SharedMeta) -> Result<Joined, StoreError> {
        let (lines, tags) = shared.read_lines(id, 0, to as u64).await?;
        let tags: Vec<(bool, bool)> = tags.iter().map(|t| (t.starts_unit, t.pushed)).collect();
        let mut f = Joined::default();
        f.extend_shared(&self.inner.join, &lines, &tags, meta);
        Ok(f)
    }

    /// Cluster mode: listens for other replicas' commits and syncs the entries this
    /// replica holds at once (the timer of one refresh interval is the fallback).
    pub(super) fn start_wake_ups(&self) {
        let Some(shared) = self.inner.shared.clone() else { return };
        // At start-up: whether the key prefix belongs to this PowerJob's app (logged when
        // not; `/readyz` and every read say so too): its name at once, its `appId` once
        // authenticated (one authentication now, else at the first read).
        let (client, check) = (self.inner.client.clone(), shared.clone());
        let stop = self.inner.shutdown.clone();
        tokio::spawn(async move {
            let checked = async {
                if check.ensure_identity(client.app_id()).await.is_ok() && client.app_id().is_none() {
                    let _ = client.probe().await;
                    let _ = check.ensure_identity(client.app_id()).await;
                }
            };
            tokio::select! {
                () = checked => {}
                () = stop.cancelled() => {}
            }
        });
        let (weak, again) = (Arc::downgrade(&self.inner), Arc::downgrade(&self.inner));
        let stop = self.inner.shutdown.clone();
        tokio::spawn(shared.subscribe(
            stop,
            move |id, wake| {
                if let Some(inner) = weak.upgrade() {
                    LogService { inner }.woken(id, wake);
                }
            },
            // Messages published while this replica was not subscribed are lost: sync
            // every instance held now rather than wait for each one's timer.
            move || {
                if let Some(inner) = again.upgrade() {
                    let service = LogService { inner };
                    for id in service.inner.store.ids() {
                        service.woken(id, Wake::Committed(0));
                    }
                }
            },
        ));
    }

    /// A message about `id`: another replica committed lines or meta (this replica
    /// syncs, unless it wrote them), or another replica's readers wait for it (the
    /// holder refreshes when due: it does so only for its own readers otherwise, and
    /// they may all be on other replicas).
    fn woken(&self, id: i64, wake: Wake) {
        let Some(entry) = self.inner.store.get(id) else { return };
        let holder = entry.holder.load(Ordering::Relaxed);
        let mut gate = self.gate(&entry);
        match wake {
            // (Also when this replica holds that many lines already: the append may
            // have changed the meta only, the status, the completion, a retry. Not an
            // entry nobody read here: pushes made it, and a refresh would ask the holder
            // to read PowerJob for nobody.)
            Wake::Committed(_) if !holder && gate.last_attempt.is_some() => gate.force = true,
            Wake::Want if holder => {}
            Wake::Push if holder => {
                drop(gate);
                return self.start_drain(&entry);
            }
            _ => return,
        }
        let interval = if entry.is_complete() { self.inner.recheck_complete } else { self.inner.refresh_interval };
        self.start_refresh_if_due(&entry, &mut gate, interval);
    }
}
