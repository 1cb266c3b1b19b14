//! Reads and long-polls: answers from what an entry's [`View`](super::entry::View)
//! shows, after a refresh when one is due ([`super::refresh`]), waiting for a change
//! when the client asked to. Nothing here knows whether the lines come from PowerJob
//! or from the shared store: the view says what a cursor past it means.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::entry::Entry;
use super::{BorrowedPage, LogPage, LogService, ServiceError};
use crate::logs::lines::LineSlice;
use crate::telemetry;

/// One cursor read of an instance's log.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest<'a> {
    /// The instance.
    pub id: i64,
    /// The first line wanted (the cursor).
    pub from_line: u64,
    /// At most this many lines.
    pub limit: usize,
    /// With nothing new, hold the request until a line arrives, the log completes, or
    /// this passes (zero: answer at once).
    pub wait: Duration,
    /// The epoch the client's cursor belongs to, if it has one.
    pub epoch: Option<&'a str>,
}

impl LogService {
    /// Reads up to `limit` lines from `from_line`, refreshing from PowerJob when due.
    /// With `wait > 0` and nothing new, holds the request until a line arrives, the log
    /// completes, or `wait` passes.
    ///
    /// With `epoch`, the read is answered only if it names the sequence held now
    /// ([`ServiceError::EpochMismatch`] otherwise, at once, before PowerJob is read).
    ///
    /// # Errors
    /// The upstream failure when nothing at all is known about the instance,
    /// [`crate::upstream::UpstreamError::InstanceNotFound`] for an instance PowerJob
    /// does not know, and [`ServiceError::EpochMismatch`].
    pub async fn read(&self, req: ReadRequest<'_>) -> Result<LogPage, ServiceError> {
        self.read_with(req, |page| page.to_owned_page()).await
    }

    /// As [`LogService::read`], handing the answer to `render` while the lines are
    /// borrowed (the hot path serialises them in place).
    ///
    /// # Errors
    /// As [`LogService::read`].
    pub async fn read_with<R>(
        &self,
        req: ReadRequest<'_>,
        render: impl Fn(&BorrowedPage<'_>) -> R,
    ) -> Result<R, ServiceError> {
        let entry = self.entry(req.id)?;
        // Another sequence than the client's (also one this very request created: a new
        // sequence cannot match): 410 before anything is read. (Cluster mode: once the
        // store named it; before, the first look after its read checks.)
        let mismatch = |current: &str| req.epoch.is_some_and(|e| e != current);
        let current = entry.epoch();
        if !current.is_empty() && mismatch(&current) {
            return Err(ServiceError::EpochMismatch(current));
        }
        self.poll_at(&entry, req.wait, Some(req.from_line), |stale, last| {
            entry.with_page(req.from_line, req.limit, stale, |page| {
                if mismatch(page.epoch) {
                    return Some(Err(ServiceError::EpochMismatch(Arc::from(page.epoch))));
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
    pub(super) async fn poll<R>(
        &self,
        entry: &Arc<Entry>,
        wait: Duration,
        look: impl FnMut(bool, bool) -> Option<R>,
    ) -> Result<R, ServiceError> {
        self.poll_at(entry, wait, None, look).await
    }

    /// [`LogService::poll`] for a reader whose cursor is at `cursor` (the refresh
    /// decision takes it into account: see [`LogService::refresh_if_due`]).
    async fn poll_at<R>(
        &self,
        entry: &Arc<Entry>,
        wait: Duration,
        cursor: Option<u64>,
        mut look: impl FnMut(bool, bool) -> Option<R>,
    ) -> Result<R, ServiceError> {
        let since = Instant::now();
        let stale = self.refresh_if_due(entry, cursor, since).await?;
        if let Some(answer) = look(stale, wait.is_zero()) {
            return Ok(answer);
        }
        let deadline = Instant::now() + wait;
        let mut changed = entry.changed.subscribe();
        loop {
            // Subscribed before looking: a change after the look wakes the wait below.
            changed.mark_unchanged();
            let stale = self.refresh_if_due(entry, cursor, since).await?;
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
        self.refresh_if_due(&entry, None, Instant::now()).await?;
        let follower = entry.follower.read().expect("follower lock poisoned");
        let view = entry.view();
        Ok(render(&view.epoch, follower.lines_in(0..view.visible)))
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
