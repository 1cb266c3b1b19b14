//! The state of one followed instance: its follower, the [`View`] readers see, and the
//! [`Gate`] that makes its refreshes single-flight.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{startup, BorrowedPage, LogPage, ServiceError};
use crate::logs::{Attempt, Joined, PushStats, Status};

/// Back-off after consecutive failed refreshes: the interval doubled at most this often…
const MAX_BACKOFF_DOUBLINGS: u32 = 5;
/// …and never longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bytes counted per entry besides its lines.
const ENTRY_OVERHEAD: u64 = 512;

pub(super) struct Entry {
    pub(super) id: i64,
    /// When a client last read it (epoch ms), for idle eviction.
    pub(super) last_read: AtomicI64,
    /// The served log: the follower, and the lines pushed to it (`logs::joined`); in
    /// cluster mode it may hold lines readers must not see yet (see `view`).
    pub(super) follower: RwLock<Joined>,
    /// What readers see (lock order: follower, then view).
    pub(super) view: RwLock<View>,
    /// Cluster mode: this replica holds the instance's lease (it reads PowerJob).
    pub(super) holder: AtomicBool,
    /// Cluster mode: the follower must be rebuilt from the store before it is used
    /// again (an append failed, so it may hold lines the store does not).
    pub(super) reload: AtomicBool,
    pub(super) gate: Mutex<Gate>,
    /// Bumped whenever lines, status or completeness change.
    pub(super) changed: watch::Sender<u64>,
    /// Bumped whenever a refresh ends, well or not.
    pub(super) refreshed: watch::Sender<u64>,
    /// The follower's weight as of its last refresh (read without its lock).
    pub(super) weight: AtomicU64,
    /// Start-up trackers, advanced lazily (lock order: follower, then this).
    pub(super) startup: Mutex<startup::StartupState>,
    /// When the timer task of pushed batches is due (epoch ms; `i64::MAX`: none).
    pub(super) timer_at: AtomicI64,
}

/// Where the lines of a [`View`] come from, which says what a cursor past them means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Source {
    /// This process reads PowerJob and serves everything it read (memory mode): a
    /// cursor past the view is past the end of the log.
    #[default]
    Local,
    /// The lines committed to the shared store, as this replica (the lease holder)
    /// wrote them.
    Holder,
    /// The lines committed to the shared store, as another replica wrote them: a cursor
    /// past the view was served by another replica, and the store holds more.
    Mirror,
}

/// What readers of an entry see: the first `visible` lines of its follower (in cluster
/// mode, those committed to the store) and the state as of then.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct View {
    /// Names the sequence this entry serves. Memory mode: a new entry (after a restart,
    /// an idle eviction, or a complete log evicted and read again) has a new one.
    /// Cluster mode: the store's, empty until it was read.
    pub(super) epoch: Arc<str>,
    pub(super) visible: usize,
    pub(super) status: Status,
    pub(super) complete: bool,
    pub(super) upstream_lost: bool,
    pub(super) truncated: bool,
    pub(super) attempts: Vec<Attempt>,
    pub(super) source: Source,
    /// The writer of these lines (another replica) could not read PowerJob at its last
    /// refresh: answers from them are `stale`.
    pub(super) writer_stale: bool,
    /// What pushes brought (`None`: nothing was ever pushed).
    pub(super) push: Option<PushStats>,
}

impl View {
    /// The first `visible` lines of `f` and its state; complete only if that is all.
    pub(super) fn of(f: &Joined, visible: usize, epoch: Arc<str>, source: Source) -> Self {
        let visible = visible.min(f.line_count());
        View {
            epoch,
            visible,
            status: f.status(),
            complete: f.is_complete() && visible == f.line_count(),
            upstream_lost: f.upstream_lost(),
            truncated: f.truncated(),
            attempts: f.attempts().to_vec(),
            source,
            writer_stale: false,
            push: f.push_stats(),
        }
    }

    /// Something is known of the instance: its status, or lines.
    pub(super) fn held(&self) -> bool {
        self.status != Status::Unknown || self.visible > 0
    }

    /// A cursor at `from_line` is past these lines but not past the end of the log
    /// (another replica served it from the shared store).
    pub(super) fn behind(&self, from_line: u64) -> bool {
        self.source != Source::Local && from_line > self.visible as u64
    }

    /// A cursor at `from_line` says that the store holds more than this replica shows,
    /// and only a sync from the store brings them (this replica does not write them).
    pub(super) fn needs_sync(&self, from_line: u64) -> bool {
        self.source == Source::Mirror && from_line > self.visible as u64
    }
}

#[derive(Default)]
pub(super) struct Gate {
    pub(super) in_flight: bool,
    /// Refresh at the next read whatever the interval (after a retry through powertail).
    pub(super) force: bool,
    pub(super) last_attempt: Option<Instant>,
    pub(super) last_ok: Option<Instant>,
    pub(super) failures: u32,
    /// The instance's job as PowerJob reports it (for its start-up rules).
    pub(super) job_id: Option<i64>,
    /// What this process's PowerJob says the instance is ([`super::refresh::origin`]).
    pub(super) origin: Option<String>,
    pub(super) last_error: Option<ServiceError>,
    /// Cluster mode: a batch was queued while a refresh or a drain was in flight; the
    /// holder drains the push queue once it ends (`cluster_push`).
    pub(super) push_due: bool,
    /// Cluster mode: when the drain timer is due (epoch ms; the joined log's deadline).
    pub(super) drain_at: Option<i64>,
}

impl Gate {
    fn backoff(&self, interval: Duration) -> Duration {
        interval.saturating_mul(1 << self.failures.min(MAX_BACKOFF_DOUBLINGS)).min(MAX_BACKOFF.max(interval))
    }

    pub(super) fn due(&self, interval: Duration, now: Instant) -> bool {
        self.force || self.last_attempt.is_none_or(|t| now >= t + self.backoff(interval))
    }

    pub(super) fn next_due(&self, interval: Duration) -> Option<Instant> {
        self.last_attempt.map(|t| t + self.backoff(interval))
    }
}

impl Entry {
    pub(super) fn new(id: i64, epoch: Arc<str>, now: i64) -> Self {
        Entry {
            id,
            last_read: AtomicI64::new(now),
            follower: RwLock::new(Joined::default()),
            view: RwLock::new(View { epoch, ..View::default() }),
            holder: AtomicBool::new(false),
            reload: AtomicBool::new(false),
            gate: Mutex::new(Gate::default()),
            changed: watch::Sender::new(0),
            refreshed: watch::Sender::new(0),
            weight: AtomicU64::new(0),
            startup: startup::new_state(),
            timer_at: AtomicI64::new(i64::MAX),
        }
    }

    /// What readers see now (held read-locked: keep it short).
    pub(super) fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().expect("view lock poisoned")
    }

    /// The epoch readers see (empty in cluster mode until the store was read).
    pub(super) fn epoch(&self) -> Arc<str> {
        self.view().epoch.clone()
    }

    /// Complete as readers see it.
    pub(super) fn is_complete(&self) -> bool {
        self.view().complete
    }

    pub(super) fn weight(&self) -> u64 {
        self.weight.load(Ordering::Relaxed) + ENTRY_OVERHEAD
    }

    /// Shows `view` to readers; wakes the waiting ones if anything changed.
    pub(super) fn publish(&self, view: View) {
        {
            let mut current = self.view.write().expect("view lock poisoned");
            if *current == view {
                return;
            }
            *current = view;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Shows the instance's status as soon as it is first known (before its lines:
    /// a first read then answers with the status rather than wait for the log).
    pub(super) fn show_first_status(&self, status: Status) {
        {
            let mut current = self.view.write().expect("view lock poisoned");
            if current.status != Status::Unknown || status == Status::Unknown {
                return;
            }
            current.status = status;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    pub(super) fn with_page<R>(
        &self,
        from_line: u64,
        limit: usize,
        stale: bool,
        f: impl FnOnce(&BorrowedPage<'_>) -> R,
    ) -> R {
        let follower = self.follower.read().expect("follower lock poisoned");
        let view = self.view();
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
            // (From behind the cursor never `complete`: the client would stop short.)
            complete: view.complete && reaches_end && !view.behind(from_line),
            stale,
            upstream_lost: view.upstream_lost,
            truncated: view.truncated,
            attempt: view.attempts.last().map_or(1, |a| a.attempt),
            attempts: &view.attempts,
            push: view.push,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(source: Source) -> View {
        View { visible: 10, source, ..View::default() }
    }

    #[test]
    fn only_a_mirror_syncs_for_a_cursor_ahead_and_only_a_shared_view_is_behind() {
        let cases = [(Source::Local, false, false), (Source::Holder, false, true), (Source::Mirror, true, true)];
        for (source, sync, behind) in cases {
            let v = view(source);
            assert_eq!((v.needs_sync(11), v.behind(11)), (sync, behind), "{source:?} ahead");
            assert_eq!((v.needs_sync(10), v.behind(10)), (false, false), "{source:?} at the end");
        }
    }

    #[test]
    fn a_view_holds_the_instance_once_its_status_or_a_line_is_known() {
        assert!(!View::default().held());
        assert!(View { status: Status::Running, ..View::default() }.held());
        assert!(View { visible: 1, ..View::default() }.held());
    }
}
