//! The follower: one instance's append-only view of a log the server keeps rewriting.
//!
//! PowerJob serves the log as a file sorted by worker timestamp and rebuilt at most
//! every `LOG_CACHE_TIME`: late batches are inserted mid-log, equal timestamps swap,
//! after the sync the file can collapse (protocol §6). A client needs the opposite: a
//! list where line N never changes once served. The follower keeps
//!
//! * `lines`: what it has served, append-only;
//! * `model`: the upstream file as last read, as indices into `lines`.
//!
//! A refresh is one pure step, `apply(snapshot)`: the snapshot's lines are matched
//! against what is already held **by content and count** (a multiset), and every line
//! the upstream has more often than it was served is appended, in upstream order.
//! Nothing is ever removed, so nothing served can be lost or served twice.
//!
//! Reading the whole log on every refresh would cost one page request per 100 lines
//! (each re-reading the whole file on the server). A late line cannot land before
//! records older than `worker_flush_ms + log_cache_ms` relative to the newest record
//! (it was flushed at most one flush interval after it was logged, and the snapshot is
//! at most one cache time old), so the follower only re-reads from the page holding the
//! first record of that "unsettled" region, and checks that the settled lines it re-reads
//! are still exactly where they were. If they moved (an insert older than the window,
//! clock skew beyond the window, a collapse), it asks for a full read instead.
//!
//! Completeness: a log is complete once the instance is final and a snapshot read after
//! the last possible late batch (`finishedTime` + flush + cache) was applied.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::line::{record_time, split_lines, PAGE_LINES};
use super::lines::{LineSlice, Lines};
use super::snapshot::{RawPage, Snapshot};
use super::status::{InstanceFacts, Status};

/// Memory per held line besides its text: for a complete (packed) log its end offset;
/// for a followed log the `Arc<str>` header and allocator rounding, the slot in
/// `lines`, the model slot and the lookup tables.
const BYTES_PER_LINE_COMPLETE: u64 = 8;
/// See [`BYTES_PER_LINE_COMPLETE`].
const BYTES_PER_LINE_FOLLOWING: u64 = 170;

/// Settled lines re-read and compared before the unsettled region, so that an insert
/// older than the window cannot go unnoticed.
const ANCHOR_LINES: usize = 8;

/// The server's timing, which bounds where and when late lines can appear.
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
}

impl Timing {
    /// How far back (in record time) a late line can land behind the newest record.
    pub fn late_window_ms(&self) -> i64 {
        self.worker_flush_ms + self.log_cache_ms + self.clock_skew_ms
    }
}

/// What the next refresh should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to read: the log is complete.
    Done,
    /// Do not read the log yet (waiting instance, or too early: poisoning risk).
    Wait,
    /// Read `probe_page` first; if [`Follower::probe_unchanged`] says so, the log has not
    /// changed. Otherwise read pages `first_page..totalPages` as one snapshot.
    Read {
        /// The last page of the previous snapshot.
        probe_page: u64,
        /// First page of the region late lines can still reach.
        first_page: u64,
    },
}

/// The window read did not line up with what is held: read the whole log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the log moved before the re-read window; a full read is needed")]
pub struct NeedFullRead;

/// Fingerprint of the last page of the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PageMark {
    index: u64,
    total_pages: u64,
    hash: u64,
}

/// Plain, serialisable state of one followed instance (see the module docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "FollowerData", into = "FollowerData")]
pub struct Follower {
    data: FollowerData,
    index: TextIndex,
}

/// The stored part of a [`Follower`]; everything else is derived from it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FollowerData {
    lines: Lines,
    model: Vec<u32>,
    last_page: Option<PageMark>,
    /// When the refresh that last saw `last_page` started (epoch ms).
    last_page_seen_at: Option<i64>,
    status: Status,
    finished_time: Option<i64>,
    final_seen_at: Option<i64>,
    complete: bool,
    upstream_lost: bool,
}

/// Derived lookup tables: distinct texts, and how often each is served / in the model.
#[derive(Debug, Clone, Default)]
struct TextIndex {
    ids: HashMap<Arc<str>, u32>,
    /// served line → text id
    text_of: Vec<u32>,
    /// text id → times served
    served: Vec<u32>,
    /// text id → a served line holding this text
    some_line: Vec<u32>,
    /// text id → occurrences in the model
    in_model: Vec<u32>,
}

impl TextIndex {
    fn text_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    fn push_line(&mut self, line_no: u32, text: &Arc<str>) {
        let id = match self.ids.get(text) {
            Some(&id) => id,
            None => {
                let id = self.served.len() as u32;
                self.ids.insert(text.clone(), id);
                self.served.push(0);
                self.some_line.push(line_no);
                self.in_model.push(0);
                id
            }
        };
        self.served[id as usize] += 1;
        self.text_of.push(id);
    }
}

impl From<FollowerData> for Follower {
    fn from(mut data: FollowerData) -> Self {
        if data.complete {
            // Never merges again: no lookup tables, one buffer.
            data.lines.pack();
            return Follower { data, index: TextIndex::default() };
        }
        let lines = std::mem::take(&mut data.lines).into_each();
        let mut index = TextIndex::default();
        for (n, line) in lines.iter().enumerate() {
            index.push_line(n as u32, line);
        }
        data.lines = Lines::Each(lines);
        for &n in &data.model {
            let id = index.text_of[n as usize];
            index.in_model[id as usize] += 1;
        }
        Follower { data, index }
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

    /// Takes in the instance status just read from the OpenAPI at `now`.
    pub fn observe(&mut self, facts: &InstanceFacts, now: i64) {
        let d = &mut self.data;
        d.status = facts.status;
        if facts.status.is_final() {
            d.finished_time = facts.finished_time;
            d.final_seen_at.get_or_insert(now);
            if !facts.ever_ran() && d.lines.is_empty() {
                // Never reached a worker (no worker available, canceled while waiting):
                // no line can exist, and reading would only create a placeholder file.
                // (A log with lines held ran before, e.g. a run that failed and was
                // re-dispatched to no worker: its last lines still need the normal read.)
                d.complete = true;
            }
        } else if d.final_seen_at.take().is_some() {
            // Retried with the same instanceId: the log grows again (protocol §6.11).
            let was_complete = std::mem::replace(&mut d.complete, false);
            d.finished_time = None;
            if was_complete {
                // Rebuild the tables `compact` dropped; the next read is a full one.
                *self = Follower::from(std::mem::take(&mut self.data));
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
        if waiting || too_early {
            return Plan::Wait;
        }
        let settled = self.settled_len(timing);
        let mut first_page = (settled.saturating_sub(ANCHOR_LINES) as u64) / PAGE_LINES;
        // Records with equal times swap places at every rebuild, and a record's lines stay
        // together: start the window where the record time changes, so that nothing can
        // move between the unread prefix and the window.
        while first_page > 0 {
            let start = (first_page * PAGE_LINES) as usize;
            if self.time_at(start - 1) != self.time_at(start) {
                break;
            }
            first_page -= 1;
        }
        Plan::Read { probe_page: self.data.last_page.map_or(0, |m| m.index), first_page }
    }

    /// True when `page` (read as the plan's probe) shows the log exactly as it was at the
    /// previous snapshot: same page count and same last page, so no line was added.
    pub fn probe_unchanged(&self, page: &RawPage) -> bool {
        let Some(mark) = self.data.last_page else {
            return false;
        };
        page.index == mark.index
            && page.total_pages == mark.total_pages
            && hash_lines(split_lines(&page.data).into_iter()) == mark.hash
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

    /// Applies a snapshot read (its first request sent at `read_at`) and appends the
    /// lines not served yet.
    ///
    /// # Errors
    /// [`NeedFullRead`] when a window snapshot (first page > 0) does not line up with
    /// the held model; nothing is changed then. A full snapshot is always applied.
    pub fn apply(&mut self, snapshot: &Snapshot, read_at: i64, timing: &Timing) -> Result<Applied, NeedFullRead> {
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
                if start > 0 {
                    self.check_anchor(start, lines, timing)?;
                }
                let appended = self.merge_window(start, lines);
                let last_index = total_pages.saturating_sub(1);
                let from = ((last_index * PAGE_LINES) as usize).saturating_sub(start).min(lines.len());
                self.data.last_page = Some(PageMark {
                    index: last_index,
                    total_pages: *total_pages,
                    hash: hash_lines(lines[from..].iter().map(|l| &**l)),
                });
                self.data.last_page_seen_at = Some(read_at);
                appended
            }
        };
        self.settle(read_at, timing);
        Ok(Applied { appended })
    }

    /// Marks the log complete when the instance is final and this read started after
    /// the last possible late batch: the snapshot it applied (every one is checked to be
    /// cut from one file) holds every line the log will ever have.
    fn settle(&mut self, read_at: i64, timing: &Timing) {
        let d = &mut self.data;
        if !d.status.is_final() {
            return;
        }
        let window = timing.worker_flush_ms + timing.log_cache_ms + timing.clock_skew_ms;
        // `final_seen_at` is our own clock: the instance had finished by then, so this
        // bound holds whatever the server's clock says. `finishedTime` is the server's
        // clock and lets a long-finished instance complete at once.
        let by_our_clock = d.final_seen_at.map(|t| t + window);
        let by_server_clock = d.finished_time.map(|t| t + window + timing.clock_skew_ms);
        let deadline = match (by_our_clock, by_server_clock) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(i64::MAX),
        };
        if read_at >= deadline {
            d.complete = true;
            self.compact();
        }
    }

    /// A complete log never merges again: drop the model and the lookup tables and
    /// pack the lines into one buffer (together about two thirds of the memory per
    /// line). They are rebuilt if the instance runs again.
    fn compact(&mut self) {
        self.data.model = Vec::new();
        self.data.last_page = None;
        self.index = TextIndex::default();
        self.data.lines.pack();
    }

    /// Bytes this follower holds, approximately: the text plus per-line bookkeeping
    /// (measured: ~8 bytes a line complete, ~170 while following; see BENCHMARKS.md).
    pub fn weight(&self) -> u64 {
        let per_line = if self.data.complete { BYTES_PER_LINE_COMPLETE } else { BYTES_PER_LINE_FOLLOWING };
        self.data.lines.text_bytes() + self.data.lines.len() as u64 * per_line
    }

    /// Number of model lines whose record time is older than the late window behind the
    /// newest record: no late line can be inserted before them.
    fn settled_len(&self, timing: &Timing) -> usize {
        let model = &self.data.model;
        let Some(newest) = (0..model.len()).rev().find_map(|p| self.model_time(p)) else {
            return 0;
        };
        let horizon = newest - timing.late_window_ms();
        // The model is sorted by record time; continuation lines take their record's time.
        let mut lo = 0;
        let mut hi = model.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let t = self.time_at(mid);
            if t.is_some_and(|t| t < horizon) || t.is_none() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // Lines before the first record have no time: they are settled only if some
        // record after them is.
        lo
    }

    /// The record time of model line `pos` (a continuation line takes its record's).
    fn time_at(&self, pos: usize) -> Option<i64> {
        (0..=pos.min(self.data.model.len().saturating_sub(1))).rev().find_map(|p| self.model_time(p))
    }

    fn model_time(&self, pos: usize) -> Option<i64> {
        record_time(self.data.lines.get(self.data.model[pos] as usize))
    }

    /// The settled lines re-read at the start of a window must be exactly where the
    /// model has them; otherwise lines moved before the window.
    fn check_anchor(&self, start: usize, window: &[Arc<str>], timing: &Timing) -> Result<(), NeedFullRead> {
        let settled = self.settled_len(timing).min(self.data.model.len());
        if start > settled || start + window.len() < settled {
            return Err(NeedFullRead);
        }
        let held = &self.data.model[start..settled];
        let same = held.iter().zip(window).all(|(&n, text)| self.data.lines.get(n as usize) == &**text);
        if same {
            Ok(())
        } else {
            Err(NeedFullRead)
        }
    }

    /// Multiset merge of `window` (upstream lines from position `start` on) into the held
    /// lines; replaces the model from `start` on. Returns the number of lines appended.
    fn merge_window(&mut self, start: usize, window: &[Arc<str>]) -> usize {
        let start = start.min(self.data.model.len());
        // How often each text occurs in the model region being replaced.
        let mut replaced: HashMap<u32, u32> = HashMap::new();
        for &n in &self.data.model[start..] {
            *replaced.entry(self.index.text_of[n as usize]).or_default() += 1;
        }
        // Occurrences in the window that are already served: served − those in the
        // untouched model prefix.
        let mut budget: HashMap<u32, u32> = HashMap::new();
        let mut matched_total = 0usize;
        let mut new_model = Vec::with_capacity(window.len());
        let mut appended = 0;
        for text in window {
            let id = self.index.text_id(text);
            let old = id.and_then(|id| {
                let b = budget.entry(id).or_insert_with(|| {
                    let i = id as usize;
                    let in_prefix = self.index.in_model[i] - replaced.get(&id).copied().unwrap_or(0);
                    self.index.served[i].saturating_sub(in_prefix)
                });
                (*b > 0).then(|| {
                    *b -= 1;
                    self.index.some_line[id as usize]
                })
            });
            let n = match old {
                Some(n) => {
                    matched_total += 1;
                    n
                }
                None => {
                    let n = self.data.lines.len() as u32;
                    self.index.push_line(n, text);
                    self.data.lines.push(text.clone());
                    // This window's later copies of a text are new too: its budget of
                    // already-served copies (computed before any append) stays at zero.
                    budget.entry(self.index.text_of[n as usize]).or_insert(0);
                    appended += 1;
                    n
                }
            };
            new_model.push(n);
        }
        if start == 0 && matched_total + appended < self.data.lines.len() {
            // A full read that lacks lines already served: the upstream copy shrank
            // (sync collapse, restart, head clean-up). Keep serving what we hold.
            self.data.upstream_lost = true;
        }
        self.set_model(start, &new_model);
        appended
    }

    fn set_model(&mut self, start: usize, tail: &[u32]) {
        let start = start.min(self.data.model.len());
        for &n in &self.data.model[start..] {
            self.index.in_model[self.index.text_of[n as usize] as usize] -= 1;
        }
        self.data.model.truncate(start);
        for &n in tail {
            self.index.in_model[self.index.text_of[n as usize] as usize] += 1;
        }
        self.data.model.extend_from_slice(tail);
    }
}

fn hash_lines<'a>(lines: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = DefaultHasher::new();
    for l in lines {
        l.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing =
        Timing { worker_flush_ms: 5_000, log_cache_ms: 10_000, first_read_delay_ms: 8_000, clock_skew_ms: 1_000 };

    fn rec(sec: i64, text: &str) -> String {
        format!("2024-06-01 16:{:02}:{:02}.000 [10.0.0.21:27777] INFO {text}", sec / 60, sec % 60)
    }

    fn running() -> InstanceFacts {
        InstanceFacts {
            status: Status::Running,
            actual_trigger_time: Some(-100_000),
            finished_time: None,
            task_tracker_address: Some("10.0.0.21:27777".into()),
        }
    }

    /// Reads `file` the way the service does: probe, then window, then full if needed.
    fn refresh(f: &mut Follower, file: &[String], now: i64) -> usize {
        let Plan::Read { probe_page, first_page } = f.plan(&running(), now, &T) else { panic!("no read") };
        let probe = page_of(file, probe_page);
        if f.probe_unchanged(&probe) {
            f.apply_unchanged(now, &T);
            return 0;
        }
        let window = window(file, first_page);
        match f.apply(&window, now, &T) {
            Ok(a) => a.appended,
            Err(NeedFullRead) => f.apply(&self::window(file, 0), now, &T).unwrap().appended,
        }
    }

    fn page_of(file: &[String], index: u64) -> RawPage {
        let total = file.len().div_ceil(100) as u64;
        let from = (index as usize * 100).min(file.len());
        let to = (from + 100).min(file.len());
        let data = file[from..to].iter().map(|l| format!("{l}\n")).collect();
        RawPage { index, total_pages: total, data }
    }

    fn window(file: &[String], first_page: u64) -> Snapshot {
        let total = file.len().div_ceil(100) as u64;
        let from = (first_page as usize * 100).min(file.len());
        Snapshot::Lines {
            first_page,
            total_pages: total,
            lines: file[from..].iter().map(|l| Arc::from(l.as_str())).collect(),
        }
    }

    fn served(f: &Follower) -> Vec<String> {
        f.lines().iter().map(str::to_owned).collect()
    }

    #[test]
    fn appends_new_lines_and_nothing_twice() {
        let mut f = Follower::default();
        let mut file: Vec<String> = (0..250).map(|i| rec(i / 10, &format!("l{i}"))).collect();
        assert_eq!(refresh(&mut f, &file, 0), 250);
        assert_eq!(refresh(&mut f, &file, 1), 0);
        file.push(rec(30, "tail"));
        assert_eq!(refresh(&mut f, &file, 2), 1);
        assert_eq!(served(&f), file);
    }

    #[test]
    fn late_insert_is_appended_at_the_end() {
        let mut f = Follower::default();
        let mut file: Vec<String> = (0..500).map(|i| rec(i / 10, &format!("l{i}"))).collect();
        refresh(&mut f, &file, 0);
        // A late batch from 12 s before the newest record lands 120 lines back.
        let late: Vec<String> = (0..3).map(|i| rec(37, &format!("late{i}"))).collect();
        for (k, l) in late.iter().enumerate() {
            file.insert(380 + k, l.clone());
        }
        assert_eq!(refresh(&mut f, &file, 1), 3);
        assert_eq!(&served(&f)[500..], &late[..]);
        assert_eq!(refresh(&mut f, &file, 2), 0);
    }

    #[test]
    fn insert_older_than_the_window_falls_back_to_a_full_read() {
        let mut f = Follower::default();
        let mut file: Vec<String> = (0..1000).map(|i| rec(i / 10, &format!("l{i}"))).collect();
        refresh(&mut f, &file, 0);
        // Far beyond the late window (clock skew): must still be found, once.
        file.insert(5, rec(0, "skewed"));
        assert_eq!(refresh(&mut f, &file, 1), 1);
        assert_eq!(f.lines().iter().next_back(), Some(&*rec(0, "skewed")));
        file.push(rec(100, "after"));
        assert_eq!(refresh(&mut f, &file, 2), 1);
        let mut a = served(&f);
        let mut b = file.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn equal_lines_are_counted_not_deduplicated() {
        let mut f = Follower::default();
        let mut file = vec![rec(0, "boom"), "\tat x".to_string(), String::new()];
        refresh(&mut f, &file, 0);
        file.extend([rec(1, "boom"), "\tat x".to_string(), String::new()]);
        assert_eq!(refresh(&mut f, &file, 1), 3);
        assert_eq!(served(&f), file);
    }

    #[test]
    fn ties_swapping_between_rebuilds_add_nothing() {
        let mut f = Follower::default();
        let mut file = vec![rec(0, "a"), rec(0, "b"), rec(1, "c")];
        refresh(&mut f, &file, 0);
        file.swap(0, 1);
        assert_eq!(refresh(&mut f, &file, 1), 0);
        assert_eq!(served(&f), [rec(0, "a"), rec(0, "b"), rec(1, "c")]);
    }

    #[test]
    fn collapse_after_sync_keeps_the_log_and_adds_late_lines() {
        let mut f = Follower::default();
        let file: Vec<String> = (0..150).map(|i| rec(i, &format!("l{i}"))).collect();
        refresh(&mut f, &file, 0);
        assert_eq!(f.apply(&Snapshot::NoLog, 1, &T), Ok(Applied { appended: 0 }));
        assert!(f.upstream_lost());
        assert_eq!(f.lines().len(), 150);
        let late = vec![rec(151, "late")];
        assert_eq!(refresh(&mut f, &late, 2), 1);
        assert_eq!(f.lines().len(), 151);
        // And the original log coming back (read on another server) adds nothing.
        let mut all = file.clone();
        all.extend(late);
        assert_eq!(refresh(&mut f, &all, 3), 0);
    }

    #[test]
    fn completes_only_after_a_read_past_the_late_window() {
        let mut f = Follower::default();
        let file = vec![rec(0, "a")];
        let mut facts = running();
        f.observe(&facts, 9_000);
        refresh(&mut f, &file, 9_000);
        facts.status = Status::Succeed;
        facts.finished_time = Some(10_000);
        f.observe(&facts, 10_500);
        f.apply(&window(&file, 0), 20_000, &T).unwrap();
        assert!(!f.is_complete(), "a late batch can still arrive");
        // Deadline: min(10_500 + 16_000, 10_000 + 16_000 + 1_000) = 26_500.
        f.apply(&window(&file, 0), 26_499, &T).unwrap();
        assert!(!f.is_complete());
        let with_late = vec![rec(0, "a"), rec(1, "late")];
        assert_eq!(f.apply(&window(&with_late, 0), 26_500, &T), Ok(Applied { appended: 1 }));
        assert!(f.is_complete(), "a snapshot read after the deadline holds every line");
        assert_eq!(f.lines().len(), 2);
        assert_eq!(f.plan(&facts, 30_000, &T), Plan::Done);
    }

    #[test]
    fn a_retried_complete_log_keeps_its_lines_and_appends_the_new_run() {
        let mut f = Follower::default();
        let file = vec![rec(0, "run 1")];
        let mut facts = running();
        facts.status = Status::Succeed;
        facts.finished_time = Some(0);
        f.observe(&facts, 0);
        f.apply(&window(&file, 0), 100_000, &T).unwrap();
        assert!(f.is_complete());
        assert!(matches!(f.data.lines, Lines::Packed(_)), "a complete log is packed");
        let stored: Follower = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!((served(&stored), stored.is_complete()), (served(&f), true));
        let compact = f.weight();
        // PowerJob's retry reuses the instance id; the new run's log replaces the old one.
        f.observe(&running(), 200_000);
        assert!(!f.is_complete());
        assert!(f.weight() > compact, "following again costs the lookup tables");
        let second = vec![rec(300, "run 2")];
        assert_eq!(refresh(&mut f, &second, 200_001), 1);
        assert_eq!(served(&f), [rec(0, "run 1"), rec(300, "run 2")]);
    }

    #[test]
    fn never_reads_a_waiting_or_young_instance() {
        let f = Follower::default();
        let mut facts = running();
        facts.status = Status::WaitingWorkerReceive;
        assert_eq!(f.plan(&facts, 100_000, &T), Plan::Wait);
        facts.status = Status::Running;
        facts.actual_trigger_time = Some(100_000);
        assert_eq!(f.plan(&facts, 107_999, &T), Plan::Wait);
        assert!(matches!(f.plan(&facts, 108_000, &T), Plan::Read { .. }));
    }

    #[test]
    fn an_instance_that_never_ran_completes_empty() {
        let mut f = Follower::default();
        let facts = InstanceFacts {
            status: Status::Failed,
            actual_trigger_time: Some(5),
            finished_time: Some(5),
            task_tracker_address: Some("N/A".into()),
        };
        f.observe(&facts, 10);
        assert!(f.is_complete());
        assert_eq!(f.plan(&facts, 10, &T), Plan::Done);
    }

    #[test]
    fn a_run_redispatched_to_no_worker_still_reads_its_last_lines() {
        // Run 1 served lines, failed with retries left, and the re-dispatch found no
        // worker (taskTrackerAddress "N/A"): its tail must still be read.
        let mut f = Follower::default();
        let file = vec![rec(0, "run 1 starts")];
        assert_eq!(refresh(&mut f, &file, 0), 1);
        let facts = InstanceFacts {
            status: Status::Failed,
            actual_trigger_time: Some(0),
            finished_time: Some(50_000),
            task_tracker_address: Some("N/A".into()),
        };
        f.observe(&facts, 50_000);
        assert!(!f.is_complete());
        assert!(matches!(f.plan(&facts, 50_000, &T), Plan::Read { .. }));
    }

    #[test]
    fn state_round_trips_through_serde() {
        let mut f = Follower::default();
        let file: Vec<String> = (0..120).map(|i| rec(i, &format!("l{i}"))).collect();
        refresh(&mut f, &file, 0);
        let json = serde_json::to_string(&f).unwrap();
        let mut g: Follower = serde_json::from_str(&json).unwrap();
        let mut more = file.clone();
        more.push(rec(200, "x"));
        assert_eq!(refresh(&mut g, &more, 1), 1);
        assert_eq!(served(&g), more);
    }
}
