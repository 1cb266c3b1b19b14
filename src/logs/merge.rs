//! Pushed lines and PowerJob's records merged into one log: one line, one copy,
//! whichever source brings it first.
//!
//! # Merge rules
//!
//! A line can reach powertail from two sources. The processor **pushes** it, in batches
//! numbered per source; and the **poll** reads it from PowerJob's online log, where each
//! log call is a record `<yyyy-MM-dd HH:mm:ss.SSS> [<worker>] <LEVEL> <content>`, the
//! worker's clock shown in the server's time zone. Both keep the processor's order, and
//! either can lose lines.
//!
//! 1. **One log call, one line.** A pushed line and a PowerJob record are copies of one
//!    log call when their levels are equal, their texts are equal (line breaks compared
//!    as `\n`), and their times differ by at most the merge window (`window_ms`, 1 s by
//!    default). The worker is not compared. The record's time is read in the server's
//!    time zone, a fixed offset (`utc_offset_minutes`).
//! 2. **Whichever comes first.** A line is served when its first copy arrives, from
//!    either source. A copy that arrives later from the other source is dropped: a
//!    PowerJob record of a line already pushed, or a push that arrives after PowerJob's
//!    copy was served. A line is never paired twice, and lines from the same source are
//!    never paired with each other.
//! 3. **Equal lines.** Equal lines (progress lines, bursts) are paired so that as many
//!    as possible pair up and in order: the first copy from one source with the first
//!    from the other, unless the window rules that out (a maximum matching within the
//!    window, whose pairs never cross). A new copy is dropped exactly when it adds a pair.
//! 4. **One format.** A pushed line is served in PowerJob's format, rendered from the
//!    pushed `ts`, the batch's `worker` and the line's `level` in the server's time zone:
//!    a log reads the same whichever source delivered each line, and the level colours,
//!    the start-up rules and `/raw` see PowerJob's format throughout.
//! 5. **One source only.** Lines only PowerJob has (the processor's own `OmsLogger`
//!    lines, lines a failed push lost) are appended when a poll brings them, like late
//!    lines. Lines only the push has stay: PowerJob drops records when a worker's queue
//!    is full.
//! 6. **Batches.** `source` names one pusher run and `seq` numbers its batches from 0. A
//!    batch seen before is a duplicate: nothing is appended. Batches apply in `seq`
//!    order; one that arrives ahead of a missing one waits for it at most `gap_wait_ms`
//!    (2 s by default), then the gap is skipped (the poll fills it in), and a skipped
//!    batch that comes later counts as a duplicate. `final: true` ends a source: a later
//!    batch of it is refused.
//! 7. **Limits.** A copy is recognised for `retain_ms` (10 min by default) behind the
//!    newest line; a copy later than that is served again. When both sources lose
//!    different calls of one text within the window, the two remaining copies pair up,
//!    and one line is served for the two calls: no source can tell them apart. Pairing
//!    looks at copies of one text from at most 1 024 distinct times either side of a new
//!    one (a text repeated more densely is paired within that reach). In a zone with summer time, the offset
//!    must be the one in force: records an hour off pair with nothing.
//!
//! Everything here is plain data: no I/O, no clock (`now` is passed in), serialisable.
//!
//! How callers use it: the push endpoint passes each batch to [`PushState::offer`] (and
//! calls [`PushState::expire`] when [`PushState::next_deadline`] is due); every line of
//! the batches it returns ready goes to [`Merger::offer_pushed`], and on
//! [`Verdict::Serve`] its [`render`]ed lines are appended (a body without `source` has no
//! batch bookkeeping: its lines go to the merge at once). The follower passes every
//! PowerJob record it sees for the first time (where it appends late lines today) to
//! [`Merger::offer_unit`] (or [`Merger::offer_record`] with [`Record::parse`] of the
//! unit), and appends it only on [`Verdict::Serve`]. A record found to be a copy must still count as seen in the
//! follower's unit index (without a served line), so that the next poll does not offer it
//! again; the rendered pushed lines must not enter that index.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, FixedOffset, Offset, Utc};
use serde::{Deserialize, Serialize};

use super::line::{record_time, split_lines};

/// The default merge window: a pushed line and a record this far apart in time can be
/// copies of one log call. The processor takes both times from one clock, so the gap
/// is the time between two calls (or, for a body without per-line times, the batching).
pub const DEFAULT_WINDOW_MS: i64 = 1_000;
/// The default time a line stays recognisable behind the newest line.
pub const DEFAULT_RETAIN_MS: i64 = 600_000;
/// The default time a batch waits for a missing one before it.
pub const DEFAULT_GAP_WAIT_MS: i64 = 2_000;
/// The default number of batches of one source that may wait for a missing one.
pub const DEFAULT_MAX_WAITING: usize = 64;
/// The default number of push sources one instance may have.
pub const DEFAULT_MAX_SOURCES: usize = 64;
/// The largest `seq` (the largest integer a JSON number carries exactly).
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Times of one text looked at on either side of a new copy when pairing: bounds the
/// work for a text repeated densely (thousands of times within chained windows).
const MAX_SCAN: usize = 1_024;
/// Every this many offers, texts older than the retention are dropped from all keys.
const SWEEP_EVERY: u32 = 4_096;
/// The latest time rendered (9999-12-30T23:59:59.999Z): 4-digit years in every zone.
const MAX_TS: i64 = 253_402_214_399_999;

/// A PowerJob log level (`LogLevel`), as records show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `WARN`
    Warn,
    /// `ERROR`
    Error,
    /// `OFF`
    Off,
    /// `UNKNOWN`: what PowerJob shows for a level number it does not know.
    Unknown,
}

impl Level {
    /// Every level.
    pub const ALL: [Level; 6] = [Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Off, Level::Unknown];

    /// The name as PowerJob renders it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Off => "OFF",
            Level::Unknown => "UNKNOWN",
        }
    }

    /// The level named `name`, in any case (`info`, `INFO`).
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pushed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedLine {
    /// When the processor logged it (epoch ms, the worker's clock).
    pub ts: i64,
    /// Its level.
    pub level: Level,
    /// Its text; line breaks in it make a multi-line record, as in PowerJob.
    pub text: String,
}

/// One PowerJob record, read back from the lines it was served as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's time (epoch ms), read in the server's time zone.
    pub ts: i64,
    /// The worker address between the brackets.
    pub worker: String,
    /// The record's level.
    pub level: Level,
    /// The content: the rest of the first line, then each continuation line after `\n`.
    pub content: String,
}

impl Record {
    /// Reads a unit (a timestamped line and its continuation lines, see
    /// [`super::units`]) as a record; `None` when its first line is no record of
    /// PowerJob's format (the head of a file, an unknown level).
    pub fn parse<S: AsRef<str>>(unit: &[S], utc_offset_minutes: i32) -> Option<Record> {
        let first = unit.first()?.as_ref();
        let local = record_time(first)?;
        // `record_time` checked that the first 25 bytes are `yyyy-MM-dd HH:mm:ss.SSS [`.
        let (worker, rest) = first[25..].split_once("] ")?;
        let (level, content) = rest.split_once(' ')?;
        let level = Level::ALL.into_iter().find(|l| l.as_str() == level)?;
        let mut content = content.to_owned();
        for line in &unit[1..] {
            content.push('\n');
            content.push_str(line.as_ref());
        }
        let ts = local - i64::from(zone(utc_offset_minutes).local_minus_utc()) * 1_000;
        Some(Record { ts, worker: worker.to_owned(), level, content })
    }
}

/// A pushed line's text as the lines PowerJob would serve for the same log call: its
/// time (`ts` clamped to years 1970–9999) in the zone `utc_offset_minutes` east of UTC,
/// `[worker]` (`]` and line breaks in it replaced by `_`), the level, the text. Each
/// line break in the text starts a continuation line; a text that ends with one ends
/// with an empty line, as a record with a stack trace does.
pub fn render(ts: i64, worker: &str, level: Level, text: &str, utc_offset_minutes: i32) -> Vec<String> {
    let time = DateTime::from_timestamp_millis(ts.clamp(0, MAX_TS)).expect("a time in chrono's range");
    let time = time.with_timezone(&zone(utc_offset_minutes)).format("%Y-%m-%d %H:%M:%S%.3f");
    let worker = worker.replace([']', '\r', '\n'], "_");
    let record = format!("{time} [{worker}] {level} {text}\n");
    split_lines(&record).into_iter().map(str::to_owned).collect()
}

/// The zone `minutes` east of UTC (UTC when out of range, as the simulator does).
fn zone(minutes: i32) -> FixedOffset {
    FixedOffset::east_opt(minutes.saturating_mul(60)).unwrap_or_else(|| Utc.fix())
}

/// The content PowerJob's record of `text` reads back as: written with a line break
/// after it and read line by line, so `\r\n` and a lone `\r` become `\n` (and a final
/// `\r` goes with the break).
fn normalize(text: &str) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(split_lines(&format!("{text}\n")).join("\n"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Which source delivered a copy of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Pushed by the processor.
    Push,
    /// Read from PowerJob's online log.
    Poll,
}

/// What to do with a line just offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first copy: append it.
    Serve,
    /// A copy of a line already served from the other source: drop it.
    Copy,
}

/// The merge's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeConfig {
    /// Most time between two copies of one log call (see the module docs).
    pub window_ms: i64,
    /// How long behind the newest line a line stays recognisable.
    pub retain_ms: i64,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig { window_ms: DEFAULT_WINDOW_MS, retain_ms: DEFAULT_RETAIN_MS }
    }
}

/// The lines of one instance seen from either source, to tell first copies from later
/// ones (see the module docs). Plain data, serialisable with the follower.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Merger {
    /// Per text (a 64-bit hash of its level and normalised text, so that the merge
    /// holds no copy of the log's text): the copies seen, sorted by time and source.
    keys: HashMap<u64, Vec<Copies>>,
    /// The newest time offered.
    newest: Option<i64>,
    /// Offers since the last sweep.
    #[serde(skip)]
    offers: u32,
    /// Bytes held, approximately ([`Merger::approx_bytes`]); kept up to date as copies
    /// come and go, recounted at every sweep (and 0 after deserialising until then).
    #[serde(skip)]
    bytes: usize,
}

/// The key of a text: a 64-bit hash of its level and normalised text, with fixed keys
/// (the merge is rebuilt in every process, never compared across builds). Two texts
/// with one hash (about one pair in 10^19) would count as one; the text itself is not
/// kept: a log's text is held once already, by the served lines.
fn text_key(level: Level, text: &str) -> u64 {
    use std::hash::Hasher as _;
    let mut h = std::hash::DefaultHasher::new();
    h.write_u8(level as u8);
    h.write(text.as_bytes());
    h.finish()
}

/// Bytes counted per text held (its map entry and vector).
const KEY_OVERHEAD: usize = 64;
/// Bytes of one entry of copies.
const COPIES_BYTES: usize = std::mem::size_of::<Copies>();

/// Copies of one text with one time from one source: how many.
type Copies = (i64, Origin, u32);

impl Merger {
    /// Offers a pushed line (of a batch [`PushState`] made ready).
    pub fn offer_pushed(&mut self, config: &MergeConfig, line: &PushedLine) -> Verdict {
        self.offer(config, Origin::Push, line.ts, line.level, &line.text)
    }

    /// Offers a PowerJob record the follower sees for the first time.
    pub fn offer_record(&mut self, config: &MergeConfig, record: &Record) -> Verdict {
        self.offer(config, Origin::Poll, record.ts, record.level, &record.content)
    }

    /// Offers a unit of PowerJob's log (see [`super::units`]) the follower sees for the
    /// first time, read in the zone `utc_offset_minutes` east of UTC: a unit that is no
    /// record (the head of a file) is always served.
    pub fn offer_unit<S: AsRef<str>>(&mut self, config: &MergeConfig, unit: &[S], utc_offset_minutes: i32) -> Verdict {
        Record::parse(unit, utc_offset_minutes).map_or(Verdict::Serve, |r| self.offer_record(config, &r))
    }

    /// Offers a copy of the line `level` `text` logged at `ts` (epoch ms), delivered by
    /// `origin`: [`Verdict::Copy`] exactly when it pairs with a copy from the other
    /// source that no other copy needs (the maximum number of pairs grows).
    pub fn offer(&mut self, config: &MergeConfig, origin: Origin, ts: i64, level: Level, text: &str) -> Verdict {
        let ts = ts.clamp(0, MAX_TS);
        let newest = self.newest.map_or(ts, |n| n.max(ts));
        self.newest = Some(newest);
        let horizon = newest.saturating_sub(config.retain_ms.max(0));
        self.offers += 1;
        if self.offers >= SWEEP_EVERY {
            self.offers = 0;
            self.forget_before(horizon);
        }
        let copies = match self.keys.entry(text_key(level, &normalize(text))) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                self.bytes += KEY_OVERHEAD;
                v.insert(Vec::new())
            }
        };
        let old = copies.partition_point(|c| c.0 < horizon);
        copies.drain(..old);
        self.bytes = self.bytes.saturating_sub(old * COPIES_BYTES);
        if ts < horizon {
            return Verdict::Serve;
        }
        let at = copies.partition_point(|c| (c.0, c.1) < (ts, origin));
        match copies.get_mut(at) {
            Some(c) if (c.0, c.1) == (ts, origin) => c.2 += 1,
            _ => {
                copies.insert(at, (ts, origin, 1));
                self.bytes += COPIES_BYTES;
            }
        }
        let window = config.window_ms.max(0);
        // A copy with no copy of the other source in reach adds no pair (the common
        // case: the first copy of a line).
        let after = copies[at + 1..].iter().take(MAX_SCAN).take_while(|c| c.0 <= ts + window);
        let before = copies[..at].iter().rev().take(MAX_SCAN).take_while(|c| c.0 >= ts - window);
        if !after.chain(before).any(|c| c.1 != origin) {
            return Verdict::Serve;
        }
        // No pair spans a gap wider than the window: only the run of copies chained by
        // smaller gaps around the new one can change.
        let chained = |i: usize| copies[i].0 - copies[i - 1].0 <= window;
        let mut lo = at;
        while lo > 0 && at - lo < MAX_SCAN && chained(lo) {
            lo -= 1;
        }
        let mut hi = at;
        while hi + 1 < copies.len() && hi - at < MAX_SCAN && chained(hi + 1) {
            hi += 1;
        }
        // A run cut short ends at a whole time: both sources' copies of a time, or none.
        if lo > 0 && chained(lo) {
            let edge = copies[lo].0;
            while lo < at && copies[lo].0 == edge {
                lo += 1;
            }
        }
        if hi + 1 < copies.len() && chained(hi + 1) {
            let edge = copies[hi].0;
            while hi > at && copies[hi].0 == edge {
                hi -= 1;
            }
        }
        let run = &copies[lo..=hi];
        let with = max_pairs(run.iter().copied(), window);
        let without = run.iter().enumerate().map(|(i, &(t, o, n))| (t, o, if i == at - lo { n - 1 } else { n }));
        if with > max_pairs(without, window) {
            Verdict::Copy
        } else {
            Verdict::Serve
        }
    }

    /// Forgets every line older than `ts` (epoch ms): a copy of one arriving later is
    /// served again.
    pub fn forget_before(&mut self, ts: i64) {
        let mut bytes = 0;
        self.keys.retain(|_, copies| {
            copies.drain(..copies.partition_point(|c| c.0 < ts));
            if copies.is_empty() {
                return false;
            }
            bytes += KEY_OVERHEAD + copies.len() * COPIES_BYTES;
            true
        });
        self.bytes = bytes;
    }

    /// Bytes held, approximately (the texts and their copies), in constant time.
    pub fn approx_bytes(&self) -> u64 {
        self.bytes as u64
    }

    /// Number of copies held.
    pub fn len(&self) -> usize {
        self.keys.values().flatten().map(|c| c.2 as usize).sum()
    }

    /// True when no copy is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The most pairs of copies from different sources at most `window` apart, of
/// `copies` sorted by time. Greedy is optimal here: the earliest copy pairs with the
/// earliest unpaired one of the other source still in reach, and copies from one
/// source wait in a queue only while none of the other source does.
fn max_pairs(copies: impl Iterator<Item = Copies>, window: i64) -> u64 {
    let mut waiting: VecDeque<(i64, u32)> = VecDeque::new();
    let mut waiting_origin = Origin::Push;
    let mut pairs = 0;
    for (ts, origin, mut n) in copies {
        while waiting.front().is_some_and(|&(t, _)| t < ts - window) {
            waiting.pop_front();
        }
        if waiting_origin != origin {
            while let Some(front) = waiting.front_mut().filter(|_| n > 0) {
                let k = n.min(front.1);
                (front.1, n, pairs) = (front.1 - k, n - k, pairs + u64::from(k));
                if front.1 == 0 {
                    waiting.pop_front();
                }
            }
        }
        if n > 0 {
            if waiting.is_empty() {
                waiting_origin = origin;
            }
            waiting.push_back((ts, n));
        }
    }
    pairs
}

#[path = "merge_push.rs"]
mod push;
pub use push::{Batch, Expired, Offer, PushConfig, PushError, PushState};

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
