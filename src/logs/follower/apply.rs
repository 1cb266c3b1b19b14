//! Applying what a refresh read: merging a snapshot's records into the served lines
//! (append-only, matched by text and count), salvaging unproven pages, and the model of
//! the upstream file.

use std::sync::Arc;

use super::{Applied, Follower, PageMark, Timing};
use crate::logs::line::{classify, record_time, PageText, PAGE_LINES};
use crate::logs::snapshot::{RawPage, Snapshot};
use crate::logs::units::{segment, unit_hash, KeyRef, Served};

/// The read did not line up with what is held: read more (the window, or the whole log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the log moved before the re-read region; a wider read is needed")]
pub struct NeedFullRead;

impl Follower {
    /// Records a read started at `read_at` that found the log unchanged.
    pub fn apply_unchanged(&mut self, read_at: i64, timing: &Timing) {
        self.data.last_page_seen_at = Some(read_at);
        self.settle(read_at, timing);
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
    pub(super) fn append_unit(&mut self, text: &[impl AsRef<str>], max_lines: usize) -> Option<(u32, KeyRef)> {
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

    pub(super) fn set_model(&mut self, from_unit: usize, tail: &[u32]) {
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
