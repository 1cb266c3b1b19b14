//! The batch bookkeeping of pushes (rule 6 of the [merge rules](super)): which batches
//! each source sent, which wait for a missing one, which are duplicates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PushedLine, DEFAULT_GAP_WAIT_MS, DEFAULT_MAX_SOURCES, DEFAULT_MAX_WAITING, MAX_SEQ};

/// One batch a source pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The pusher run that sent it.
    pub source: String,
    /// Its number in that run, from 0.
    pub seq: u64,
    /// The worker address its lines are rendered with.
    pub worker: String,
    /// The source sends nothing after this batch.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Its lines, in the processor's order.
    pub lines: Vec<PushedLine>,
}

/// The batch bookkeeping's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushConfig {
    /// Most time a batch waits for a missing batch before it (then the gap is skipped).
    pub gap_wait_ms: i64,
    /// Most batches of one source that wait; one more skips the first gap at once.
    pub max_waiting: usize,
    /// Most sources one instance may have.
    pub max_sources: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            gap_wait_ms: DEFAULT_GAP_WAIT_MS,
            max_waiting: DEFAULT_MAX_WAITING,
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

/// What [`PushState::offer`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Lines taken in: the batch's, unless it is a duplicate.
    pub accepted: usize,
    /// The batch was seen before (or its gap was skipped): nothing is appended.
    pub duplicate: bool,
    /// The source's next batch number to apply.
    pub next_seq: u64,
    /// Batches to apply now, in order: this one and the ones that waited for it.
    pub ready: Vec<Batch>,
    /// Batch numbers given up on (a gap skipped because too many batches waited).
    pub skipped: u64,
}

/// What [`PushState::expire`] released.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Batches to apply now, in order per source.
    pub ready: Vec<Batch>,
    /// Batch numbers given up on.
    pub skipped: u64,
}

/// A batch that cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The source already ended with another batch.
    #[error("batch {seq} conflicts with this source's final batch {final_seq}")]
    AfterFinal {
        /// The batch's number.
        seq: u64,
        /// The number of the source's final batch.
        final_seq: u64,
    },
    /// `seq` is past [`MAX_SEQ`].
    #[error("seq must be at most {MAX_SEQ}")]
    SeqOutOfRange,
    /// The instance has [`PushConfig::max_sources`] sources already.
    #[error("too many push sources for one instance (at most {0})")]
    TooManySources(usize),
}

/// The batch bookkeeping of one instance: which batches each source sent, which wait
/// for a missing one (see the module docs). Plain data, serialisable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PushState {
    sources: BTreeMap<String, SourceState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceState {
    /// Every batch before it was applied or skipped.
    next_seq: u64,
    /// The number of the source's final batch, once it arrived.
    final_seq: Option<u64>,
    /// Batches that arrived ahead of a missing one, and when (epoch ms).
    waiting: BTreeMap<u64, (i64, Batch)>,
    /// When the source's last batch arrived (epoch ms), a duplicate too: it is alive.
    #[serde(default)]
    last_at: i64,
}

impl SourceState {
    /// Moves the batches that follow the applied ones to `ready`.
    fn drain(&mut self, ready: &mut Vec<Batch>) {
        while let Some((_, batch)) = self.waiting.remove(&self.next_seq) {
            ready.push(batch);
            self.next_seq += 1;
        }
    }

    /// Skips the first gap: returns the batch numbers given up on.
    fn skip_gap(&mut self, ready: &mut Vec<Batch>) -> u64 {
        let Some(&first) = self.waiting.keys().next() else { return 0 };
        let skipped = first - self.next_seq;
        self.next_seq = first;
        self.drain(ready);
        skipped
    }

    fn done(&self) -> bool {
        self.final_seq.is_some_and(|f| self.next_seq > f)
    }
}

impl PushState {
    /// Takes in `batch`, arrived at `now` (epoch ms).
    ///
    /// # Errors
    /// [`PushError`] when the batch follows (or contradicts) its source's final batch,
    /// its `seq` is out of range, or it would be one source too many; nothing changes.
    pub fn offer(&mut self, config: &PushConfig, batch: Batch, now: i64) -> Result<Offer, PushError> {
        let seq = batch.seq;
        if seq > MAX_SEQ {
            return Err(PushError::SeqOutOfRange);
        }
        if !self.sources.contains_key(&batch.source) && self.sources.len() >= config.max_sources {
            return Err(PushError::TooManySources(config.max_sources));
        }
        let source = self.sources.entry(batch.source.clone()).or_default();
        if seq < source.next_seq || source.waiting.contains_key(&seq) {
            source.last_at = source.last_at.max(now);
            return Ok(Offer { accepted: 0, duplicate: true, next_seq: source.next_seq, ready: vec![], skipped: 0 });
        }
        match source.final_seq {
            // Past the end, or a second end.
            Some(final_seq) if seq > final_seq || batch.is_final => {
                return Err(PushError::AfterFinal { seq, final_seq });
            }
            // An end before a batch already waiting.
            None if batch.is_final => {
                if let Some(&later) = source.waiting.keys().next_back().filter(|&&l| l > seq) {
                    return Err(PushError::AfterFinal { seq: later, final_seq: seq });
                }
            }
            _ => {}
        }
        source.last_at = source.last_at.max(now);
        if batch.is_final {
            source.final_seq = Some(seq);
        }
        let accepted = batch.lines.len();
        source.waiting.insert(seq, (now, batch));
        let mut ready = Vec::new();
        source.drain(&mut ready);
        let mut skipped = 0;
        while source.waiting.len() > config.max_waiting {
            skipped += source.skip_gap(&mut ready);
        }
        Ok(Offer { accepted, duplicate: false, next_seq: source.next_seq, ready, skipped })
    }

    /// Skips the gaps batches have waited on for `gap_wait_ms` by `now`: returns the
    /// batches that follow them.
    pub fn expire(&mut self, config: &PushConfig, now: i64) -> Expired {
        let mut expired = Expired::default();
        for source in self.sources.values_mut() {
            while source.waiting.values().any(|&(at, _)| at.saturating_add(config.gap_wait_ms) <= now) {
                expired.skipped += source.skip_gap(&mut expired.ready);
            }
        }
        expired
    }

    /// When [`PushState::expire`] will next release something (epoch ms).
    pub fn next_deadline(&self, config: &PushConfig) -> Option<i64> {
        let waiting = self.sources.values().flat_map(|s| s.waiting.values());
        waiting.map(|&(at, _)| at.saturating_add(config.gap_wait_ms)).min()
    }

    /// The next batch number `source` applies (0 for a source not seen).
    pub fn next_seq(&self, source: &str) -> u64 {
        self.sources.get(source).map_or(0, |s| s.next_seq)
    }

    /// Number of sources seen.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// True when `source` sent its final batch and every batch before it was applied
    /// or skipped.
    pub fn is_done(&self, source: &str) -> bool {
        self.sources.get(source).is_some_and(SourceState::done)
    }

    /// True when no batch waits for a missing one.
    pub fn is_idle(&self) -> bool {
        self.sources.values().all(|s| s.waiting.is_empty())
    }

    /// When every source will have ended (epoch ms): done (its final batch and all
    /// before it applied), or silent for `quiet_ms` since its last batch. `None` when
    /// every source is done already (or none was seen).
    pub fn quiet_from(&self, quiet_ms: i64) -> Option<i64> {
        let open = self.sources.values().filter(|s| !s.done());
        open.map(|s| s.last_at.saturating_add(quiet_ms)).max()
    }

    /// True once every source seen sent its final batch and all before it were applied
    /// or skipped (false when no source was seen).
    pub fn all_final(&self) -> bool {
        !self.sources.is_empty() && self.sources.values().all(SourceState::done)
    }
}
