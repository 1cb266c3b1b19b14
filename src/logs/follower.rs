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
//! Completeness: the instance is final, a snapshot read after the last possible late
//! batch (`finishedTime` + flush + cache) was applied, and the log has not grown for a
//! whole late window since it last grew (a stopped process can go on logging). A log
//! that never stops growing completes at the server's sync plus that window.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::line::{classify, record_time, split_lines, PageText, PAGE_LINES};
use super::lines::{LineSlice, Lines};
use super::snapshot::{RawPage, Snapshot};
use super::status::{InstanceFacts, Status};
use super::units::{segment, unit_hash, KeyRef, Served, UnitIndex};

/// Settled lines re-read and compared before the unsettled region, so that an insert
/// older than the window cannot go unnoticed.
const ANCHOR_LINES: usize = 8;

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

/// What the next refresh should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to read: the log is complete.
    Done,
    /// Do not read the log (waiting instance, too early: poisoning risk; or cut).
    Wait,
    /// Read the log (see [`Pages`]).
    Read(Pages),
}

/// The pages a refresh reads: `probe_page` first (see the module docs), then pages
/// `tail_page..totalPages` or `first_page..totalPages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    /// The last page of the previous snapshot.
    pub probe_page: u64,
    /// Where a read of what follows the previous snapshot starts: the probe page, or an
    /// earlier one when records of one time straddle the page boundary.
    pub tail_page: u64,
    /// First page of the region late lines can still reach.
    pub first_page: u64,
}

/// The read did not line up with what is held: read more (the window, or the whole log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the log moved before the re-read region; a wider read is needed")]
pub struct NeedFullRead;

/// What the probe page says about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Exactly as at the previous snapshot.
    Unchanged,
    /// It starts with the lines it had: the file only grew after them.
    Grew,
    /// Lines moved: read the window.
    Moved,
}

/// Fingerprint of the last page of the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PageMark {
    index: u64,
    total_pages: u64,
    /// Lines on that page.
    lines: u32,
    hash: u64,
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

    /// What the next refresh should read, given the latest status and the time.
    pub fn plan(&self, facts: &InstanceFacts, now: i64, timing: &Timing) -> Plan {
        if self.data.complete {
            return Plan::Done;
        }
        let waiting = matches!(facts.status, Status::WaitingDispatch | Status::WaitingWorkerReceive | Status::Unknown);
        let too_early = facts.actual_trigger_time.is_none_or(|t| now < t.saturating_add(timing.first_read_delay_ms));
        if waiting || too_early || self.data.truncated {
            return Plan::Wait;
        }
        let starts = self.model_starts();
        let settled = starts[self.settled_units(timing)] as usize;
        let first_page = self.aligned_page((settled.saturating_sub(ANCHOR_LINES) as u64) / PAGE_LINES, &starts);
        let probe_page = self.data.last_page.map_or(0, |m| m.index);
        let tail_page = self.aligned_page(probe_page, &starts);
        Plan::Read(Pages { probe_page, tail_page, first_page })
    }

    /// The last page at or before `page` that starts with a record whose time differs
    /// from the record before it. Records with equal times swap places at every rebuild
    /// and a record's lines stay together, so nothing can move between the part of the
    /// file before such a page and the part from it on without shifting the latter.
    fn aligned_page(&self, mut page: u64, starts: &[u32]) -> u64 {
        while page > 0 {
            let line = (page * PAGE_LINES) as u32;
            if let Ok(u) = starts.binary_search(&line) {
                if u > 0 && u < self.data.model.len() && self.model_time(u - 1) != self.model_time(u) {
                    break;
                }
            }
            page -= 1;
        }
        page
    }

    /// Compares `page` (read as the plan's probe) with the last page of the previous
    /// snapshot.
    pub fn probe(&self, page: &RawPage) -> Probe {
        let Some(mark) = self.data.last_page else {
            return Probe::Moved;
        };
        if page.index != mark.index {
            return Probe::Moved;
        }
        let lines = split_lines(&page.data);
        let head = lines.get(..mark.lines as usize);
        match head.map(|h| unit_hash(h.iter().copied()) == mark.hash) {
            Some(true) if page.total_pages == mark.total_pages && lines.len() == mark.lines as usize => {
                Probe::Unchanged
            }
            Some(true) if page.total_pages >= mark.total_pages => Probe::Grew,
            _ => Probe::Moved,
        }
    }

    /// Records a read started at `read_at` that found the log unchanged.
    pub fn apply_unchanged(&mut self, read_at: i64, timing: &Timing) {
        self.data.last_page_seen_at = Some(read_at);
        self.settle(read_at, timing);
    }

    /// Until when (epoch ms) a burst of page reads is provably cut from one file, once
    /// the probe showed the file changed: the previous file was still served at the
    /// previous read, so the rebuild came after it, and the server rebuilds at most every
    /// `log_cache_ms`. `None` when there is no previous read to reason from.
    pub fn stable_until(&self, timing: &Timing) -> Option<i64> {
        self.data.last_page_seen_at.map(|t| t + timing.log_cache_ms)
    }

    /// Applies a snapshot of the window (or of the whole file: first page 0) read at
    /// `read_at` and appends the records not served yet.
    ///
    /// # Errors
    /// [`NeedFullRead`] when a window snapshot (first page > 0) does not line up with
    /// the held model; nothing is changed then. A full snapshot is always applied.
    pub fn apply(&mut self, snapshot: &Snapshot, read_at: i64, timing: &Timing) -> Result<Applied, NeedFullRead> {
        self.apply_with(snapshot, read_at, timing, false, &[])
    }

    /// Applies a snapshot read from the plan's `tail_page` on, after [`Probe::Grew`]: the
    /// model's lines from that page on must come back unchanged, and what follows is new.
    ///
    /// # Errors
    /// [`NeedFullRead`] when the snapshot does not start with the model's tail.
    pub fn apply_tail(&mut self, snapshot: &Snapshot, read_at: i64, timing: &Timing) -> Result<Applied, NeedFullRead> {
        self.apply_with(snapshot, read_at, timing, true, &[])
    }

    /// [`Follower::apply`] (`tail` false) or [`Follower::apply_tail`], then
    /// [`Follower::salvage`] of `unproven`, the other pages read for this snapshot, before
    /// completeness is decided.
    ///
    /// # Errors
    /// As [`Follower::apply`] and [`Follower::apply_tail`]; nothing is changed then.
    pub fn apply_with(
        &mut self,
        snapshot: &Snapshot,
        read_at: i64,
        timing: &Timing,
        tail: bool,
        unproven: &[RawPage],
    ) -> Result<Applied, NeedFullRead> {
        if self.data.complete {
            return Ok(Applied { appended: 0 });
        }
        let appended = match snapshot {
            Snapshot::NoLog => {
                if !self.data.lines.is_empty() {
                    self.data.upstream_lost = true;
                }
                self.set_model(0, &[]);
                self.data.last_page = None;
                self.data.last_page_seen_at = None;
                0
            }
            Snapshot::Lines { first_page, total_pages, lines } => {
                let start = (*first_page * PAGE_LINES) as usize;
                let from_unit = self.check_start(start, lines, timing, tail)?;
                let appended = self.merge(from_unit, start, lines, *first_page == 0 && !tail, timing.max_lines);
                let covered = first_page + (lines.len() as u64).div_ceil(PAGE_LINES);
                self.data.last_page = (covered >= *total_pages).then(|| {
                    let last_index = total_pages.saturating_sub(1);
                    let from = ((last_index * PAGE_LINES) as usize).saturating_sub(start).min(lines.len());
                    let page = &lines[from..];
                    PageMark {
                        index: last_index,
                        total_pages: *total_pages,
                        lines: page.len() as u32,
                        hash: unit_hash(page.iter().map(|l| &**l)),
                    }
                });
                self.data.last_page_seen_at = Some(read_at);
                appended
            }
        };
        let appended = appended + self.salvage(unproven, timing);
        if appended > 0 {
            self.data.last_growth_at = Some(read_at);
        }
        self.settle(read_at, timing);
        Ok(Applied { appended })
    }

    /// Appends the records of `pages` (read, but never proven to come from one file) that
    /// were never served, each once. Only records that lie whole inside one page are
    /// taken: the first lines of a page may continue a record of the page before, and its
    /// last record may go on in the next page unless it is the file's last. The model is
    /// not touched: these pages are no file. Returns the number of lines appended.
    pub fn salvage(&mut self, pages: &[RawPage], timing: &Timing) -> usize {
        if self.data.complete {
            return 0;
        }
        let mut appended = 0;
        for page in pages {
            let PageText::Lines(lines) = classify(page.total_pages, &page.data) else { continue };
            let units = segment(&lines);
            let last_whole = page.index + 1 >= page.total_pages;
            for (k, range) in units.iter().enumerate() {
                let text = &lines[range.clone()];
                let cut_head = k == 0 && page.index > 0 && record_time(text[0]).is_none();
                let cut_tail = k + 1 == units.len() && !last_whole;
                if cut_head || cut_tail || self.index.find(&self.served(), text).is_some() {
                    continue;
                }
                if self.append_unit(text, timing.max_lines).is_none() {
                    return appended;
                }
                appended += text.len();
            }
        }
        appended
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

    /// First model line of each model unit, and the model's line count at the end.
    fn model_starts(&self) -> Vec<u32> {
        let served = self.served();
        let mut starts = Vec::with_capacity(self.data.model.len() + 1);
        let mut at = 0u32;
        starts.push(0);
        for &u in &self.data.model {
            at += served.unit_len(u) as u32;
            starts.push(at);
        }
        starts
    }

    fn model_time(&self, pos: usize) -> Option<i64> {
        self.served().unit_time(self.data.model[pos])
    }

    /// Number of model units whose record time is older than the late window behind the
    /// newest record: no late line can be inserted before them.
    fn settled_units(&self, timing: &Timing) -> usize {
        let model = &self.data.model;
        let Some(newest) = (0..model.len()).rev().find_map(|p| self.model_time(p)) else {
            return 0;
        };
        let horizon = newest - timing.late_window_ms();
        // The model is sorted by record time (a unit without one is only ever first).
        model.partition_point(|&u| self.served().unit_time(u).is_none_or(|t| t < horizon))
    }

    /// The model unit a snapshot from line `start` begins at, after checking that it
    /// lines up: a window (`tail` false) must repeat the settled lines it re-reads and
    /// start at a unit; a tail must repeat every model line from `start` on. A tail may
    /// start inside a unit; the unit index returned is then the first after the model.
    fn check_start(
        &self,
        start: usize,
        window: &[Arc<str>],
        timing: &Timing,
        tail: bool,
    ) -> Result<usize, NeedFullRead> {
        if start == 0 && !tail {
            return Ok(0);
        }
        let starts = self.model_starts();
        let model_len = *starts.last().expect("starts has the end") as usize;
        let verify_to = if tail { model_len } else { starts[self.settled_units(timing)] as usize };
        if start > verify_to || start + window.len() < verify_to {
            return Err(NeedFullRead);
        }
        if !self.model_lines_eq(&starts, start, &window[..verify_to - start]) {
            return Err(NeedFullRead);
        }
        if tail {
            return Ok(self.data.model.len());
        }
        starts.binary_search(&(start as u32)).map_err(|_| NeedFullRead)
    }

    /// True when model lines `start..` equal `expected`.
    fn model_lines_eq(&self, starts: &[u32], start: usize, expected: &[Arc<str>]) -> bool {
        let served = self.served();
        let mut unit = starts.partition_point(|&s| s as usize <= start).saturating_sub(1);
        let mut pos = start;
        let mut expected = expected.iter();
        loop {
            let Some(want) = expected.next() else { return true };
            while unit + 1 < starts.len() && starts[unit + 1] as usize <= pos {
                unit += 1;
            }
            let Some(&u) = self.data.model.get(unit) else { return false };
            let line = served.unit_range(u).start + (pos - starts[unit] as usize);
            if self.data.lines.get(line) != &**want {
                return false;
            }
            pos += 1;
        }
    }

    /// Merges the records of `window` (upstream lines from model line `start` on) into
    /// the held ones and replaces the model from unit `from_unit` on. A tail window
    /// (`from_unit` past the model) repeats the model's last lines first; only what
    /// follows them is merged. Returns the number of lines appended.
    fn merge(&mut self, from_unit: usize, start: usize, window: &[Arc<str>], full: bool, max_lines: usize) -> usize {
        let starts = self.model_starts();
        let model_len = *starts.last().expect("starts has the end") as usize;
        let skip = if from_unit >= self.data.model.len() { model_len.saturating_sub(start) } else { 0 };
        let from_unit = from_unit.min(self.data.model.len());
        let window = &window[skip.min(window.len())..];
        // Copies of each text in the part of the model being replaced.
        let mut replaced: std::collections::HashMap<_, u32> = std::collections::HashMap::new();
        for &u in &self.data.model[from_unit..] {
            *replaced.entry(self.index.of_unit(&self.served(), u)).or_default() += 1;
        }
        // Copies already served that the window may match: served − those in the
        // untouched model prefix (a copy that left the upstream file still counts: the
        // same record can come back, e.g. the old stable file after a retry's sync).
        let mut budget: std::collections::HashMap<_, u32> = std::collections::HashMap::new();
        let units = segment(window);
        if self.data.lines.is_empty() {
            // A first read: everything in it is new; allocate it all at once, exactly.
            self.data.lines.reserve_exact(window.len(), window.iter().map(|l| l.len()).sum());
            self.data.units.reserve_exact(units.len());
            self.data.model.reserve_exact(units.len());
            self.index.reserve(units.len());
        }
        let mut new_model = Vec::with_capacity(units.len());
        let mut matched = 0;
        let mut appended = 0;
        for range in units {
            let text = &window[range];
            let found = self.index.find(&self.served(), text);
            let reuse = found.and_then(|r| {
                let key = self.index.get(r);
                let b = budget.entry(r).or_insert_with(|| {
                    key.served.saturating_sub(key.in_model - replaced.get(&r).copied().unwrap_or(0))
                });
                (*b > 0).then(|| {
                    *b -= 1;
                    key.rep
                })
            });
            let unit = match reuse {
                Some(u) => {
                    matched += text.len();
                    u
                }
                None => {
                    let Some((u, r)) = self.append_unit(text, max_lines) else { break };
                    // This window's later copies of the text are new too.
                    budget.insert(r, 0);
                    appended += text.len();
                    u
                }
            };
            new_model.push(unit);
        }
        if full && matched + appended < self.data.lines.len() {
            // A full read that lacks lines already served: the upstream copy shrank
            // (sync collapse, restart, head clean-up, a retry's new run). Keep serving
            // what we hold.
            self.data.upstream_lost = true;
        }
        self.set_model(from_unit, &new_model);
        appended
    }

    /// Serves `text` as a new unit, unless it would take the log past `max_lines` (then
    /// the log is cut: `truncated`). Returns the unit and its key.
    fn append_unit(&mut self, text: &[impl AsRef<str>], max_lines: usize) -> Option<(u32, KeyRef)> {
        if self.data.lines.len() + text.len() > max_lines {
            self.data.truncated = true;
            return None;
        }
        let u = self.data.units.len() as u32;
        self.data.units.push(self.data.lines.len() as u32);
        for l in text {
            self.data.lines.push(l.as_ref());
        }
        let served = Served { lines: &self.data.lines, units: &self.data.units };
        Some((u, self.index.add_served(&served, u, text)))
    }

    fn set_model(&mut self, from_unit: usize, tail: &[u32]) {
        let from_unit = from_unit.min(self.data.model.len());
        for i in from_unit..self.data.model.len() {
            let r = self.index.of_unit(&self.served(), self.data.model[i]);
            self.index.get_mut(r).in_model -= 1;
        }
        self.data.model.truncate(from_unit);
        for &u in tail {
            let r = self.index.of_unit(&self.served(), u);
            self.index.get_mut(r).in_model += 1;
        }
        self.data.model.extend_from_slice(tail);
    }
}

#[path = "follower_shared.rs"]
mod shared;
pub use shared::{SharedMeta, SHARED_META_VERSION};

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;
