//! The served log of one instance: PowerJob's log as the [`Follower`] mirrors it,
//! joined with the lines the processor pushes (issue 19), each log call once.
//!
//! The follower stays what it is: the exactly-once mirror *F* of PowerJob's log (its
//! unit index, its reads, its completeness). [`Joined`] owns it and produces the
//! sequence *O* readers are served:
//!
//! * **Nothing pushed** (every instance by default): *O* is *F*. No copy, no merge state,
//!   nothing but an empty `Option` more than the follower.
//! * **From the first push on**, *O* is a list of its own, started as a copy of *F* (whose
//!   records are offered to the [`Merger`] then, so that a push of a line PowerJob already
//!   served is recognised). From then on every unit *F* appends is offered to the merge
//!   ([`Joined::sync`], after each change of the follower): [`Verdict::Serve`] appends it
//!   to *O*, [`Verdict::Copy`] does not (it was pushed before). Every pushed line that
//!   [`PushState`] makes ready (in `seq` order per source) is offered too, and on `Serve`
//!   its [`render`]ed lines are appended. *F* never sees a pushed line: its unit index,
//!   its `upstream_lost` and its reads stay PowerJob's alone.
//! * **Attempts**: each run the follower sees starts where *O* stands when *F* reaches the
//!   run's first line; a pushed line belongs to the run current when it is served.
//!   `upstream_lost` is the follower's; `truncated` is *O*'s or the follower's
//!   (`logs.max_lines_per_instance` bounds *O* too); the status is the follower's.
//! * **Completeness**: *O* is complete once *F* is, no batch waits for a missing one, and
//!   every source sent its final batch or has been silent for `quiet_ms` (so is the body
//!   without a source). A push that arrives after *O* completed is dropped and counted:
//!   nothing is appended to a complete log (a retry run is seen by the poll, and reopens
//!   it).
//!
//! Each input is one pure step, given the time: [`Joined::offer`] (a pushed body),
//! [`Joined::sync`] (after the follower changed), [`Joined::tick`] (a deadline of
//! [`Joined::next_deadline`] passed: skip a gap, or complete).
//!
//! `joined_shared.rs`: what a shared store (cluster mode) keeps of it, and the rebuild.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::follower::{Attempt, Follower};
use super::lines::{LineSlice, Lines};
use super::merge::{render, Batch, MergeConfig, Merger, PushConfig, PushError, PushState, PushedLine, Verdict};
use super::status::Status;

/// The worker shown for lines of a body that names none (the seed's body).
pub const NO_WORKER: &str = "-";

/// The join's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinConfig {
    /// The merge's window and retention.
    pub merge: MergeConfig,
    /// The batch bookkeeping's limits.
    pub push: PushConfig,
    /// A source that never sent `final` counts as ended this long after its last batch.
    pub quiet_ms: i64,
    /// PowerJob's time zone, minutes east of UTC (record times are shown in it).
    pub utc_offset_minutes: i32,
    /// Most lines served (`logs.max_lines_per_instance`).
    pub max_lines: usize,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            merge: MergeConfig::default(),
            push: PushConfig::default(),
            quiet_ms: 15_000,
            utc_offset_minutes: 480,
            max_lines: 200_000,
        }
    }
}

/// A pushed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// A numbered batch of one source (deduplicated, applied in `seq` order).
    Batch(Batch),
    /// A body without `source` (the seed's): its lines go to the merge at once.
    Unnumbered {
        /// The worker its lines are shown with ([`NO_WORKER`] when it names none).
        worker: String,
        /// Its lines.
        lines: Vec<PushedLine>,
    },
}

/// What [`Joined::offer`] made of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Lines taken in (0 for a duplicate, or a body after completion).
    pub accepted: usize,
    /// The batch was seen before (or its gap was skipped): nothing appended.
    pub duplicate: bool,
    /// The source's next batch number (`None` for a body without source).
    pub next_seq: Option<u64>,
    /// Lines appended to the served log by this step (this body's and the batches that
    /// waited for it).
    pub appended: usize,
    /// Pushed lines dropped because the log was complete.
    pub dropped: usize,
}

/// What pushes brought to an instance (the `push` field of log answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushStats {
    /// Sources seen (a body without source counts as one).
    pub sources: u32,
    /// Lines served from pushes.
    pub lines: u64,
    /// When the last body arrived (epoch ms, our clock).
    pub last_at: i64,
    /// Copies dropped, from either source (a line served once, seen twice).
    pub copies: u64,
    /// Pushed lines dropped because the log was complete.
    pub dropped: u64,
    /// Batch numbers given up on (gaps skipped; the poll fills them in).
    pub skipped: u64,
}

/// The served log of one instance (see the module docs). Plain data.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    follower: Follower,
    /// `None` until the first push: the follower's lines are served as they are.
    join: Option<Box<Join>>,
}

/// The state of a log pushed to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    /// *O*, the served lines.
    lines: Lines,
    /// Which of them came from pushes: sorted, disjoint line ranges.
    pushed: Vec<Range<u64>>,
    /// Lines of the follower offered to the merge so far.
    follower_seen: usize,
    /// Runs of the follower mapped to [`Join::attempts`] so far.
    attempts_seen: usize,
    /// The runs, with their first line in *O*.
    attempts: Vec<Attempt>,
    merger: Merger,
    batches: PushState,
    /// When the last body without source arrived (epoch ms).
    unnumbered_at: Option<i64>,
    stats: PushStats,
    complete: bool,
    truncated: bool,
}

/// The follower inside, for the read procedure ([`super::refresh_log`]), which applies
/// what it reads to it directly; call [`Joined::sync`] afterwards.
impl std::borrow::Borrow<Follower> for Joined {
    fn borrow(&self) -> &Follower {
        &self.follower
    }
}

impl std::borrow::BorrowMut<Follower> for Joined {
    fn borrow_mut(&mut self) -> &mut Follower {
        &mut self.follower
    }
}

impl From<Follower> for Joined {
    fn from(follower: Follower) -> Self {
        Joined { follower, join: None }
    }
}

impl Joined {
    /// The follower (PowerJob's log as mirrored).
    pub fn follower(&self) -> &Follower {
        &self.follower
    }

    /// The follower, to apply what a refresh read. Call [`Joined::sync`] after changing it.
    pub fn follower_mut(&mut self) -> &mut Follower {
        &mut self.follower
    }

    /// True once anything was pushed: the served log is its own list.
    pub fn is_joined(&self) -> bool {
        self.join.is_some()
    }

    /// Every line served so far, in served order.
    pub fn lines(&self) -> LineSlice<'_> {
        match &self.join {
            Some(j) => j.lines.all(),
            None => self.follower.lines(),
        }
    }

    /// Served lines `range` (clamped to those served).
    pub fn lines_in(&self, range: Range<usize>) -> LineSlice<'_> {
        match &self.join {
            Some(j) => j.lines.slice(range),
            None => self.follower.lines_in(range),
        }
    }

    /// Number of lines served.
    pub fn line_count(&self) -> usize {
        self.join.as_ref().map_or_else(|| self.follower.line_count(), |j| j.lines.len())
    }

    /// The instance status last observed.
    pub fn status(&self) -> Status {
        self.follower.status()
    }

    /// True once no further line can be served (see the module docs).
    pub fn is_complete(&self) -> bool {
        self.join.as_ref().map_or_else(|| self.follower.is_complete(), |j| j.complete)
    }

    /// True when PowerJob's copy lost lines the follower still serves.
    pub fn upstream_lost(&self) -> bool {
        self.follower.upstream_lost()
    }

    /// True when the log reached the line limit and was cut there.
    pub fn truncated(&self) -> bool {
        self.follower.truncated() || self.join.as_ref().is_some_and(|j| j.truncated)
    }

    /// Every run seen, with the first served line of each.
    pub fn attempts(&self) -> &[Attempt] {
        self.join.as_ref().map_or_else(|| self.follower.attempts(), |j| &j.attempts)
    }

    /// The current run (1 before anything is known).
    pub fn attempt(&self) -> u32 {
        self.attempts().last().map_or(1, |a| a.attempt)
    }

    /// What pushes brought (`None` when nothing was ever pushed).
    pub fn push_stats(&self) -> Option<PushStats> {
        self.join.as_ref().map(|j| j.stats)
    }

    /// The batch bookkeeping (`None` when nothing was ever pushed).
    pub fn push_state(&self) -> Option<&PushState> {
        self.join.as_ref().map(|j| &j.batches)
    }

    /// Whether each served line from `from` on came from a push (all false when nothing
    /// was pushed).
    pub fn pushed_flags(&self, from: usize) -> Vec<bool> {
        let count = self.line_count();
        let mut flags = vec![false; count.saturating_sub(from)];
        for r in self.join.iter().flat_map(|j| &j.pushed) {
            let (start, end) = (r.start as usize, r.end as usize);
            for flag in flags.iter_mut().take(end.saturating_sub(from)).skip(start.saturating_sub(from)) {
                *flag = true;
            }
        }
        flags
    }

    /// Bytes held, approximately: the follower's, and the served copy and the merge
    /// state once something was pushed.
    pub fn weight(&self) -> u64 {
        let joined = self.join.as_ref().map_or(0, |j| {
            j.lines.allocated_bytes()
                + (j.pushed.capacity() * 16 + j.attempts.capacity() * 16) as u64
                + j.merger.approx_bytes()
                + std::mem::size_of::<Join>() as u64
        });
        self.follower.weight() + joined
    }

    /// Takes in a pushed body that arrived at `now` (epoch ms): appends the lines it
    /// makes ready that no copy served before, unless the log is complete (then they
    /// are dropped and counted).
    ///
    /// # Errors
    /// [`PushError`] from the batch bookkeeping (a batch after its source's final one,
    /// `seq` out of range, one source too many); nothing changes then.
    pub fn offer(&mut self, config: &JoinConfig, body: Pushed, now: i64) -> Result<Accepted, PushError> {
        if self.is_complete() {
            return Ok(self.drop_late(body));
        }
        let first = self.join.is_none();
        self.start_join(config);
        self.sync(config, now);
        let j = self.join.as_deref_mut().expect("joined above");
        let before = j.lines.len();
        let mut accepted = match body {
            Pushed::Unnumbered { worker, lines } => {
                j.unnumbered_at = Some(now);
                j.serve_pushed(config, &worker, &lines);
                Accepted { accepted: lines.len(), duplicate: false, next_seq: None, appended: 0, dropped: 0 }
            }
            Pushed::Batch(batch) => {
                let offer = match j.batches.offer(&config.push, batch, now) {
                    Ok(offer) => offer,
                    Err(e) => {
                        if first {
                            // Nothing was pushed after all: the follower's lines, as they were.
                            self.join = None;
                        }
                        return Err(e);
                    }
                };
                j.stats.skipped += offer.skipped;
                for b in &offer.ready {
                    j.serve_pushed(config, &b.worker, &b.lines);
                }
                let (accepted, duplicate) = (offer.accepted, offer.duplicate);
                Accepted { accepted, duplicate, next_seq: Some(offer.next_seq), appended: 0, dropped: 0 }
            }
        };
        j.stats.last_at = j.stats.last_at.max(now);
        j.stats.sources = (j.batches.source_count() + usize::from(j.unnumbered_at.is_some())) as u32;
        accepted.appended = j.lines.len() - before;
        self.settle(config, now);
        Ok(accepted)
    }

    /// A body for a complete log: dropped (a batch seen before is still a duplicate).
    fn drop_late(&mut self, body: Pushed) -> Accepted {
        let (lines, next_seq, duplicate) = match &body {
            Pushed::Unnumbered { lines, .. } => (lines.len(), None, false),
            Pushed::Batch(b) => {
                let next = self.push_state().map_or(0, |s| s.next_seq(&b.source));
                (b.lines.len(), Some(next), b.seq < next)
            }
        };
        let dropped = if duplicate { 0 } else { lines };
        if let Some(j) = self.join.as_deref_mut() {
            j.stats.dropped += dropped as u64;
        }
        Accepted { accepted: 0, duplicate, next_seq, appended: 0, dropped }
    }

    /// Catches up with the follower after it changed (a refresh applied, a run began):
    /// offers the units it appended since the last call to the merge, maps its new runs,
    /// and decides completeness as of `now`. Nothing to do while nothing was pushed.
    pub fn sync(&mut self, config: &JoinConfig, now: i64) {
        let Some(j) = self.join.as_deref_mut() else { return };
        let f = &self.follower;
        let count = f.line_count();
        if count > j.follower_seen {
            let from = j.follower_seen;
            let flags = f.unit_flags(from);
            let lines: Vec<&str> = f.lines_in(from..count).iter().collect();
            let mut k = 0;
            while k < lines.len() {
                let end = (k + 1..lines.len()).find(|&i| flags[i]).unwrap_or(lines.len());
                j.map_attempts(f.attempts(), (from + k) as u64);
                let unit = &lines[k..end];
                match j.merger.offer_unit(&config.merge, unit, config.utc_offset_minutes) {
                    Verdict::Serve => j.append(unit, false, config.max_lines),
                    Verdict::Copy => j.stats.copies += 1,
                }
                k = end;
            }
            j.follower_seen = count;
        }
        j.map_attempts(f.attempts(), u64::MAX);
        self.settle(config, now);
    }

    /// Applies what is due by `now`: batches whose gap waited `gap_wait_ms` (the gap is
    /// skipped), and completeness once the sources are quiet. Says whether anything
    /// readers see changed.
    pub fn tick(&mut self, config: &JoinConfig, now: i64) -> bool {
        let Some(j) = self.join.as_deref_mut() else { return false };
        let before = (j.lines.len(), j.complete);
        let expired = j.batches.expire(&config.push, now);
        j.stats.skipped += expired.skipped;
        for b in &expired.ready {
            j.serve_pushed(config, &b.worker, &b.lines);
        }
        self.settle(config, now);
        let j = self.join.as_deref().expect("joined");
        (j.lines.len(), j.complete) != before
    }

    /// When [`Joined::tick`] next has something to do (epoch ms): a waiting batch's gap
    /// expires, or the sources fall quiet after the follower completed.
    pub fn next_deadline(&self, config: &JoinConfig) -> Option<i64> {
        let j = self.join.as_deref()?;
        let gap = j.batches.next_deadline(&config.push);
        let quiet = (self.follower.is_complete() && !j.complete).then(|| j.quiet_from(config.quiet_ms)).flatten();
        gap.into_iter().chain(quiet).min()
    }

    /// From the first push on: *O* is a copy of *F*, whose records the merge has seen.
    fn start_join(&mut self, config: &JoinConfig) {
        if self.join.is_some() {
            return;
        }
        let f = &self.follower;
        let mut j = Join { attempts: f.attempts().to_vec(), attempts_seen: f.attempts().len(), ..Join::default() };
        let count = f.line_count();
        let flags = f.unit_flags(0);
        let lines: Vec<&str> = f.lines().iter().collect();
        j.lines.reserve_exact(count, lines.iter().map(|l| l.len()).sum());
        let mut k = 0;
        while k < lines.len() {
            let end = (k + 1..lines.len()).find(|&i| flags[i]).unwrap_or(lines.len());
            // (Nothing was pushed yet: every record is a first copy.)
            j.merger.offer_unit(&config.merge, &lines[k..end], config.utc_offset_minutes);
            k = end;
        }
        for l in lines {
            j.lines.push(l);
        }
        j.follower_seen = count;
        j.truncated = f.truncated();
        self.join = Some(Box::new(j));
    }

    /// Decides completeness as of `now` (see the module docs).
    fn settle(&mut self, config: &JoinConfig, now: i64) {
        let f_complete = self.follower.is_complete();
        let Some(j) = self.join.as_deref_mut() else { return };
        j.complete = f_complete && j.batches.is_idle() && j.quiet_from(config.quiet_ms).is_none_or(|t| t <= now);
    }
}

impl Join {
    /// Offers pushed `lines` of `worker` to the merge and appends the first copies.
    fn serve_pushed(&mut self, config: &JoinConfig, worker: &str, lines: &[PushedLine]) {
        for l in lines {
            match self.merger.offer_pushed(&config.merge, l) {
                Verdict::Serve => {
                    let text = render(l.ts, worker, l.level, &l.text, config.utc_offset_minutes);
                    self.append(&text, true, config.max_lines);
                }
                Verdict::Copy => self.stats.copies += 1,
            }
        }
    }

    /// Appends one record's lines, unless that would pass `max_lines` (then the log is
    /// cut there: nothing more is appended).
    fn append<S: AsRef<str>>(&mut self, text: &[S], pushed: bool, max_lines: usize) {
        if self.truncated || self.lines.len() + text.len() > max_lines {
            self.truncated = true;
            return;
        }
        let start = self.lines.len() as u64;
        for l in text {
            self.lines.push(l.as_ref());
        }
        let end = self.lines.len() as u64;
        if pushed {
            self.stats.lines += end - start;
            match self.pushed.last_mut() {
                Some(r) if r.end == start => r.end = end,
                _ => self.pushed.push(start..end),
            }
        }
    }

    /// Maps the follower's runs that began at or before its line `line` to runs of *O*
    /// beginning where *O* stands now.
    fn map_attempts(&mut self, runs: &[Attempt], line: u64) {
        while let Some(run) = runs.get(self.attempts_seen).filter(|r| r.from_line <= line) {
            // (The first run holds whatever was pushed before PowerJob was first read.)
            let from_line = if self.attempts.is_empty() { 0 } else { self.lines.len() as u64 };
            self.attempts.push(Attempt { attempt: run.attempt, from_line });
            self.attempts_seen += 1;
        }
    }

    /// When every source will have ended: see [`PushState::quiet_from`]; the body
    /// without source counts as a source that never ends.
    fn quiet_from(&self, quiet_ms: i64) -> Option<i64> {
        let unnumbered = self.unnumbered_at.map(|t| t.saturating_add(quiet_ms));
        self.batches.quiet_from(quiet_ms).into_iter().chain(unnumbered).max()
    }
}

#[path = "joined_shared.rs"]
mod shared;
pub use shared::{JoinMeta, SharedJoin, JOINED_META_VERSION};

#[cfg(test)]
#[path = "joined_tests.rs"]
mod tests;
