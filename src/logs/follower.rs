//! The follower: one instance's append-only view of a log the server keeps rewriting.
//!
//! PowerJob serves the log as a file sorted by worker timestamp and rebuilt at most
//! every `LOG_CACHE_TIME`: late batches are inserted mid-log, equal timestamps swap,
//! after the sync the file can collapse, a restart or a frequent job's clean-up drops
//! records, a retry starts a second run under the same id (docs/powerjob-protocol.md
//! §6). A client needs the opposite: a list where line N never changes once served.
//! The follower keeps
//!
//! * `lines`: what it has served, append-only, cut into units (records, see
//!   [`super::units`]);
//! * `model`: the upstream file as last read, as served unit ids.
//!
//! A refresh is one pure step, `apply(snapshot)`: the snapshot's records are matched
//! against the records already served **by text and count**, and every record the
//! upstream holds more often than it was served is appended, in upstream order. Nothing
//! is ever removed, so nothing served can be lost or served twice, and every record the
//! upstream ever serves is served once, whether it is still in the file or not.
//!
//! What a refresh reads (cost to PowerJob: every page request re-reads the file there):
//!
//! * the *probe*, the last page of the previous snapshot. Unchanged: done.
//! * It still starts with the lines it had: nothing moved before it, the file only
//!   grew at its end. Read the pages after it ([`Follower::apply_tail`]).
//! * Otherwise lines landed or vanished before it. A late line cannot land before
//!   records older than `worker_flush_ms + log_cache_ms` relative to the newest one, so
//!   read from the page holding the first record of that "unsettled" region, checking
//!   that the settled lines re-read are still where they were ([`Follower::apply`]); if
//!   they moved (an insert older than the window, a collapse), read the whole file.
//!
//! Files: this one holds the state, its accessors, the instance status and completeness;
//! `follower/plan.rs` what a refresh reads (the plan, the probe, the model's page layout);
//! `follower/apply.rs` what it does with what it read (merge, salvage).
//!
//! Completeness: the instance is final, a snapshot read after the last possible late
//! batch (`finishedTime` + flush + cache) was applied, and the log has not grown for a
//! whole late window since it last grew (a stopped process can go on logging). A log
//! that never stops growing completes at the server's sync plus that window.

use serde::{Deserialize, Serialize};

use super::lines::{LineSlice, Lines};
use super::status::{InstanceFacts, Status};
use super::units::{segment, Served, UnitIndex};

mod apply;
mod plan;

pub use apply::NeedFullRead;
use plan::PageMark;
pub use plan::{Pages, Plan, Probe};

/// The server's timing, which bounds where and when late lines can appear, and the
/// follower's own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often workers ship their queued lines (`OmsLogHandler`, 5 s).
    pub worker_flush_ms: i64,
    /// How long the server serves a log file before rebuilding it (`LOG_CACHE_TIME`, 10 s).
    pub log_cache_ms: i64,
    /// No log read before an instance has run this long (avoids the poisoning bug).
    pub first_read_delay_ms: i64,
    /// Allowance for clock differences and the server's asynchronous insert.
    pub clock_skew_ms: i64,
    /// Delay between an instance finishing and the server's sync (60 s).
    pub sync_delay_ms: i64,
    /// Most lines held for one instance; past it the log is cut.
    pub max_lines: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            worker_flush_ms: 5_000,
            log_cache_ms: 10_000,
            first_read_delay_ms: 8_000,
            clock_skew_ms: 1_000,
            sync_delay_ms: 60_000,
            max_lines: 200_000,
        }
    }
}

impl Timing {
    /// How far back (in record time) a late line can land behind the newest record, and
    /// how long a log must stay unchanged after it last grew before it can complete.
    pub fn late_window_ms(&self) -> i64 {
        self.worker_flush_ms + self.log_cache_ms + self.clock_skew_ms
    }
}

/// One run of the instance (PowerJob's `runningTimes`) and the first line it logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// PowerJob's `runningTimes` for this run (1 for the first).
    pub attempt: u32,
    /// The first served line of this run.
    pub from_line: u64,
}

/// Plain, serialisable state of one followed instance (see the module docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "FollowerData", into = "FollowerData")]
pub struct Follower {
    data: FollowerData,
    index: UnitIndex,
}

/// The stored part of a [`Follower`]; everything else is derived from it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FollowerData {
    lines: Lines,
    /// First line of each served unit.
    units: Vec<u32>,
    /// The upstream file as last read: served unit ids, in upstream order.
    model: Vec<u32>,
    last_page: Option<PageMark>,
    /// When the refresh that last saw `last_page` started (epoch ms).
    last_page_seen_at: Option<i64>,
    status: Status,
    attempts: Vec<Attempt>,
    finished_time: Option<i64>,
    final_seen_at: Option<i64>,
    /// When a read last appended lines (epoch ms).
    last_growth_at: Option<i64>,
    complete: bool,
    upstream_lost: bool,
    truncated: bool,
}

impl From<FollowerData> for Follower {
    fn from(data: FollowerData) -> Self {
        let mut f = Follower { data, index: UnitIndex::default() };
        if f.data.complete {
            // Never merges again: no lookup tables.
            f.data.lines.shrink();
            f.data.model = Vec::new();
            return f;
        }
        if f.data.units.is_empty() && !f.data.lines.is_empty() {
            // A complete log keeps no unit boundaries: cut its lines at their timestamps.
            let lines: Vec<&str> = f.data.lines.all().iter().collect();
            f.data.units = segment(&lines).into_iter().map(|r| r.start as u32).collect();
        }
        let served = Served { lines: &f.data.lines, units: &f.data.units };
        for u in 0..f.data.units.len() as u32 {
            let text: Vec<&str> = served.unit_lines(u).collect();
            f.index.add_served(&served, u, &text);
        }
        for &u in &f.data.model {
            let r = f.index.of_unit(&served, u);
            f.index.get_mut(r).in_model += 1;
        }
        f
    }
}

impl From<Follower> for FollowerData {
    fn from(f: Follower) -> Self {
        f.data
    }
}

/// What one applied snapshot changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Lines appended to the served list.
    pub appended: usize,
}

impl Follower {
    /// Every line served so far, in served order.
    pub fn lines(&self) -> LineSlice<'_> {
        self.data.lines.all()
    }

    /// Served lines `range` (clamped to those served).
    pub fn lines_in(&self, range: std::ops::Range<usize>) -> LineSlice<'_> {
        self.data.lines.slice(range)
    }

    /// Number of lines served.
    pub fn line_count(&self) -> usize {
        self.data.lines.len()
    }

    /// The instance status last observed.
    pub fn status(&self) -> Status {
        self.data.status
    }

    /// True once no further line can appear (see the module docs).
    pub fn is_complete(&self) -> bool {
        self.data.complete
    }

    /// True when the upstream's copy lost lines this follower still serves.
    pub fn upstream_lost(&self) -> bool {
        self.data.upstream_lost
    }

    /// True when the log reached [`Timing::max_lines`] and was cut there.
    pub fn truncated(&self) -> bool {
        self.data.truncated
    }

    /// The current run (PowerJob's `runningTimes`; 1 before anything is known).
    pub fn attempt(&self) -> u32 {
        self.data.attempts.last().map_or(1, |a| a.attempt)
    }

    /// Every run seen, with the first line each logged.
    pub fn attempts(&self) -> &[Attempt] {
        &self.data.attempts
    }

    /// Takes in the instance status just read from the OpenAPI at `now`.
    pub fn observe(&mut self, facts: &InstanceFacts, now: i64, timing: &Timing) {
        let running_times = facts.running_times;
        if self.data.attempts.is_empty() {
            self.data.attempts.push(Attempt { attempt: running_times.max(1), from_line: 0 });
        }
        let current = self.attempt();
        // (A status PowerJob does not define is no sign of a new run.)
        let runs_again =
            matches!(facts.status, Status::WaitingDispatch | Status::WaitingWorkerReceive | Status::Running);
        let back_from_final = self.data.final_seen_at.is_some() && runs_again;
        if running_times > current || back_from_final {
            // Retried under the same instanceId (§2.8, §6.11): a new run, whose lines are
            // appended after the old ones.
            self.start_attempt(running_times.max(current + 1));
        }
        let d = &mut self.data;
        d.status = facts.status;
        if facts.status.is_final() {
            d.finished_time = facts.finished_time;
            d.final_seen_at.get_or_insert(now);
            let run_logged = d.lines.len() as u64 > d.attempts.last().map_or(0, |a| a.from_line);
            if !facts.ever_ran() && !run_logged {
                // This run never reached a worker (no worker available, canceled while
                // waiting) and logged nothing: no line can come, and reading would only
                // create a placeholder file. (A run that logged, then failed and was
                // re-dispatched to no worker, still needs its last lines read.)
                self.finish();
            } else if self.data.truncated {
                // Cut: nothing more is read, so completion needs no read either.
                self.settle(now, timing);
            }
        }
    }

    /// Marks the log complete when the instance is final, this read started after the
    /// last possible late batch, and the log has not grown for a late window (or the
    /// server's sync has passed that window ago: the bound for a log that never stops).
    /// A retried run completes only after its sync (see below).
    fn settle(&mut self, read_at: i64, timing: &Timing) {
        let d = &self.data;
        if !d.status.is_final() || d.complete {
            return;
        }
        let window = timing.late_window_ms();
        // `final_seen_at` is our own clock: the instance had finished by then, so this
        // bound holds whatever the server's clock says. `finishedTime` is the server's
        // clock and lets a long-finished instance complete at once.
        let by_our_clock = d.final_seen_at.map(|t| t + window);
        let by_server_clock = d.finished_time.map(|t| t + window + timing.clock_skew_ms);
        let deadline = match (by_our_clock, by_server_clock) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(i64::MAX),
        };
        let quiet = d.last_growth_at.is_none_or(|t| read_at >= t + window);
        let past_sync = read_at >= deadline.saturating_add(timing.sync_delay_ms);
        // A retried run can be split by the previous run's sync (due a fixed time after
        // that run finished, whatever runs since): the rows it deletes are served again
        // only from the stable file, after this run's own sync. So a retried run is read
        // once more after it.
        let retried = d.attempts.len() > 1;
        if read_at >= deadline && (quiet || past_sync) && (!retried || past_sync) {
            self.finish();
        }
    }

    /// Complete: a complete log never merges again, so drop the model and the lookup
    /// tables and free the room kept for appends.
    fn finish(&mut self) {
        self.data.complete = true;
        self.data.model = Vec::new();
        self.data.last_page = None;
        self.index = UnitIndex::default();
        self.data.lines.shrink();
        // Derived again (from the timestamps) if the instance runs again.
        self.data.units = Vec::new();
    }

    /// A new run: the log grows again after what the earlier runs logged.
    fn start_attempt(&mut self, attempt: u32) {
        let from_line = self.data.lines.len() as u64;
        self.data.attempts.push(Attempt { attempt, from_line });
        let was_complete = std::mem::replace(&mut self.data.complete, false);
        let d = &mut self.data;
        d.finished_time = None;
        d.final_seen_at = None;
        d.last_growth_at = None;
        d.last_page = None;
        d.last_page_seen_at = None;
        if was_complete {
            // Rebuild the tables `finish` dropped.
            *self = Follower::from(std::mem::take(&mut self.data));
        } else {
            self.set_model(0, &[]);
        }
    }

    /// Bytes this follower holds, approximately: the text plus its bookkeeping.
    pub fn weight(&self) -> u64 {
        let d = &self.data;
        d.lines.allocated_bytes()
            + (d.units.capacity() * 4 + d.model.capacity() * 4 + d.attempts.capacity() * 16) as u64
            + self.index.allocated_bytes()
    }

    fn served(&self) -> Served<'_> {
        Served { lines: &self.data.lines, units: &self.data.units }
    }
}

#[path = "follower_shared.rs"]
mod shared;
pub use shared::{SharedMeta, SHARED_META_VERSION};

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
