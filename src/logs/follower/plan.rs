//! Planning a refresh: which pages to read ([`Follower::plan`]), what the probe page
//! says ([`Follower::probe`]), and the model of the upstream file they rely on.

use serde::{Deserialize, Serialize};

use super::{Follower, Timing};
use crate::logs::line::split_lines;
use crate::logs::line::PAGE_LINES;
use crate::logs::snapshot::RawPage;
use crate::logs::status::{InstanceFacts, Status};
use crate::logs::units::unit_hash;

/// Settled lines re-read and compared before the unsettled region, so that an insert
/// older than the window cannot go unnoticed.
const ANCHOR_LINES: usize = 8;

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
pub(super) struct PageMark {
    pub(super) index: u64,
    pub(super) total_pages: u64,
    /// Lines on that page.
    pub(super) lines: u32,
    pub(super) hash: u64,
}

impl Follower {
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

    /// Until when (epoch ms) a burst of page reads is provably cut from one file, once
    /// the probe showed the file changed: the previous file was still served at the
    /// previous read, so the rebuild came after it, and the server rebuilds at most every
    /// `log_cache_ms`. `None` when there is no previous read to reason from.
    pub fn stable_until(&self, timing: &Timing) -> Option<i64> {
        self.data.last_page_seen_at.map(|t| t + timing.log_cache_ms)
    }

    /// First model line of each model unit, and the model's line count at the end.
    pub(super) fn model_starts(&self) -> Vec<u32> {
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

    pub(super) fn model_time(&self, pos: usize) -> Option<i64> {
        self.served().unit_time(self.data.model[pos])
    }

    /// Number of model units whose record time is older than the late window behind the
    /// newest record: no late line can be inserted before them.
    pub(super) fn settled_units(&self, timing: &Timing) -> usize {
        let model = &self.data.model;
        let Some(newest) = (0..model.len()).rev().find_map(|p| self.model_time(p)) else {
            return 0;
        };
        let horizon = newest - timing.late_window_ms();
        // The model is sorted by record time (a unit without one is only ever first).
        model.partition_point(|&u| self.served().unit_time(u).is_none_or(|t| t < horizon))
    }
}
