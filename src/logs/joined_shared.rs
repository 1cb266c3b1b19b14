//! A served log shared through a store (cluster mode, docs/API.md "Cluster mode"): the
//! store keeps its lines, each tagged with whether it starts a unit and whether it came
//! from a push, and the follower's [`SharedMeta`] beside them, whose [`SharedJoin`] holds
//! what the join adds once something was pushed ([`JoinMeta`]: its runs, its batch
//! bookkeeping, its counts; and the last push queue entry applied).
//!
//! Any replica rebuilds the join from that ([`Joined::restore`] at once,
//! [`Joined::extend_shared`] as the store grows): the served lines as they are, the
//! follower from the lines PowerJob brought (pushed lines never enter its unit index; its
//! runs numbered without them), and the merge by offering every retained line again from
//! the source that brought it. What the rebuilt merge lacks are the copies dropped before
//! (never stored); a PowerJob record that was dropped as a copy of a pushed line comes
//! again with the first read after a takeover (the follower reads the whole log then),
//! and pairs with the pushed line again.
//!
//! Unit boundaries: a log nothing was pushed to keeps the follower's own (exact, as
//! before); in a joined log a unit starts at each timestamped line and where the source
//! changes (`units::segment`, per source).

use serde::{Deserialize, Serialize};

use super::{JoinConfig, Joined, PushStats};
use crate::logs::follower::{Attempt, SharedMeta};
use crate::logs::line::record_time;
use crate::logs::merge::{Origin, PushState, Record};

/// What a shared store keeps of a log pushed to, beside its served lines (each with a
/// unit flag and a pushed flag): with them, [`Joined::restore`] rebuilds it on any
/// replica. Small: no line text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinMeta {
    /// The batch bookkeeping (which batches each source sent, which wait).
    pub batches: PushState,
    /// The runs, with their first served line.
    pub attempts: Vec<Attempt>,
    /// When the last body without source arrived (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unnumbered_at: Option<i64>,
    /// What pushes brought.
    pub stats: PushStats,
    /// The served log is complete.
    pub complete: bool,
    /// The served log was cut at the line limit.
    pub truncated: bool,
}

/// The layout version of a meta with a [`SharedJoin`] (older builds refuse it: they
/// would serve pushed lines as PowerJob's and lose the batch bookkeeping).
pub const JOINED_META_VERSION: u32 = 2;

/// What the store keeps of a join beside the follower's meta: a [`JoinMeta`] (its batch
/// bookkeeping as JSON, so that the meta stays comparable) and the last push queue entry
/// applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedJoin {
    /// The last entry of the push queue applied (`""`: none yet).
    pub consumed: String,
    /// The runs, with their first line in the served log.
    pub attempts: Vec<Attempt>,
    /// The batch bookkeeping ([`PushState`], as JSON: kept comparable).
    pub batches: serde_json::Value,
    /// When the last body without source arrived (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unnumbered_at: Option<i64>,
    /// What pushes brought.
    pub stats: PushStats,
    /// No line can follow (the follower's completeness and the sources' quiet).
    pub complete: bool,
    /// Cut at the line limit.
    pub truncated: bool,
}

impl SharedJoin {
    /// `join` as stored, with `consumed` the last push queue entry applied.
    pub fn new(join: JoinMeta, consumed: &str) -> SharedJoin {
        SharedJoin {
            consumed: consumed.to_owned(),
            attempts: join.attempts,
            batches: serde_json::to_value(&join.batches).expect("the batch bookkeeping serialises"),
            unnumbered_at: join.unnumbered_at,
            stats: join.stats,
            complete: join.complete,
            truncated: join.truncated,
        }
    }

    /// The join as stored (an unreadable batch bookkeeping: none, as if nothing waited).
    pub fn join_meta(&self) -> JoinMeta {
        JoinMeta {
            batches: serde_json::from_value(self.batches.clone()).unwrap_or_default(),
            attempts: self.attempts.clone(),
            unnumbered_at: self.unnumbered_at,
            stats: self.stats,
            complete: self.complete,
            truncated: self.truncated,
        }
    }
}

impl Joined {
    /// The state a shared store keeps beside the served lines (`None` while nothing
    /// was pushed: the follower's [`SharedMeta`] is all there is).
    pub fn join_meta(&self) -> Option<JoinMeta> {
        self.join.as_deref().map(|j| JoinMeta {
            batches: j.batches.clone(),
            attempts: j.attempts.clone(),
            unnumbered_at: j.unnumbered_at,
            stats: j.stats,
            complete: j.complete,
            truncated: j.truncated,
        })
    }

    /// Whether each served line from `from` on starts a unit (a record): the follower's
    /// own flags while nothing was pushed (see the module docs).
    pub fn unit_flags(&self, from: usize) -> Vec<bool> {
        self.line_tags(from).into_iter().map(|(starts, _)| starts).collect()
    }

    /// Rebuilds a served log from a shared store: its `lines`, whether each starts a
    /// unit (`units`) and came from a push (`pushed`), the follower's `meta` and, once
    /// something was pushed, `join` (see the module docs).
    ///
    /// # Panics
    /// When `lines`, `units` and `pushed` differ in length.
    pub fn restore<S: AsRef<str>>(
        config: &JoinConfig,
        lines: &[S],
        units: &[bool],
        pushed: &[bool],
        meta: &SharedMeta,
        join: Option<JoinMeta>,
    ) -> Joined {
        assert!(lines.len() == units.len() && lines.len() == pushed.len(), "one flag of each per line");
        let tags: Vec<(bool, bool)> = units.iter().copied().zip(pushed.iter().copied()).collect();
        let meta = SharedMeta { join: join.map(|j| SharedJoin::new(j, "")), ..meta.clone() };
        let mut restored = Joined::default();
        restored.extend_shared(config, lines, &tags, &meta);
        restored
    }
    /// The meta to store beside the lines: the follower's, and once something was
    /// pushed the join's, with `consumed` the last push queue entry applied.
    pub fn shared_meta(&self, consumed: &str) -> SharedMeta {
        let meta = self.follower.shared_meta();
        match self.join_meta() {
            Some(join) => SharedMeta { v: JOINED_META_VERSION, join: Some(SharedJoin::new(join, consumed)), ..meta },
            None => meta,
        }
    }

    /// Per line from `from` on: whether it starts a unit and whether it was pushed (see
    /// the module docs).
    pub fn line_tags(&self, from: usize) -> Vec<(bool, bool)> {
        let Some(j) = self.join.as_deref() else {
            return self.follower.unit_flags(from).into_iter().map(|s| (s, false)).collect();
        };
        let count = j.lines.len();
        let first = from.saturating_sub(1);
        let pushed = self.pushed_flags(first);
        let lines = j.lines.slice(first..count);
        let mut tags = Vec::with_capacity(count.saturating_sub(from));
        for (k, line) in lines.iter().enumerate() {
            let i = first + k;
            if i < from {
                continue;
            }
            let changed = i == 0 || (k > 0 && pushed[k] != pushed[k - 1]);
            tags.push((changed || record_time(line).is_some(), pushed[k]));
        }
        tags
    }

    /// The batch bookkeeping's next batch number per source (empty when nothing was
    /// pushed): what the store answers a late batch the holder gave up on with.
    pub fn applied_seqs(&self) -> std::collections::BTreeMap<String, u64> {
        let Some(j) = self.join.as_deref() else { return Default::default() };
        let value = serde_json::to_value(&j.batches).expect("the batch bookkeeping serialises");
        let sources = value.get("sources").and_then(serde_json::Value::as_object);
        sources.into_iter().flatten().filter_map(|(s, v)| Some((s.clone(), v.get("nextSeq")?.as_u64()?))).collect()
    }

    /// Appends lines read from the store (each with its tag: starts a unit, was pushed)
    /// after those held, and takes the store's meta (see the module docs). A replica that
    /// holds a log nothing was pushed to, and reads one that was, joins it first (its
    /// lines are the store's first ones).
    ///
    /// # Panics
    /// When `lines` and `tags` differ in length.
    pub fn extend_shared<S: AsRef<str>>(
        &mut self,
        config: &JoinConfig,
        lines: &[S],
        tags: &[(bool, bool)],
        meta: &SharedMeta,
    ) {
        assert_eq!(lines.len(), tags.len(), "one tag per line");
        if meta.join.is_none() && self.join.is_none() {
            let flags: Vec<bool> = tags.iter().map(|t| t.0).collect();
            self.follower.extend_shared(lines, &flags, meta);
            return;
        }
        if self.join.is_none() {
            self.start_join(config);
        }
        let j = self.join.as_deref_mut().expect("joined above");
        let (mut polled, mut flags) = (Vec::new(), Vec::new());
        let mut k = 0;
        while k < lines.len() {
            let end = (k + 1..lines.len()).find(|&i| tags[i].0 || tags[i].1 != tags[k].1).unwrap_or(lines.len());
            let unit = &lines[k..end];
            let pushed = tags[k].1;
            if let Some(r) = Record::parse(unit, config.utc_offset_minutes) {
                let origin = if pushed { Origin::Push } else { Origin::Poll };
                j.merger.offer(&config.merge, origin, r.ts, r.level, &r.content);
            }
            let start = j.lines.len() as u64;
            for l in unit {
                j.lines.push(l.as_ref());
            }
            if pushed {
                let end = j.lines.len() as u64;
                match j.pushed.last_mut() {
                    Some(r) if r.end == start => r.end = end,
                    _ => j.pushed.push(start..end),
                }
            } else {
                polled.extend(unit.iter().map(AsRef::as_ref));
                flags.extend(std::iter::once(true).chain(std::iter::repeat(false)).take(unit.len()));
                // (A unit cut by an append continues the follower's last one.)
                if !tags[k].0 {
                    let last = flags.len() - unit.len();
                    flags[last] = false;
                }
            }
            k = end;
        }
        // The follower's runs, numbered without the pushed lines (the writer's follower
        // may hold PowerJob's copies of pushed lines this one never sees).
        let f_meta = match meta.join.as_ref() {
            Some(shared) => {
                let polled_before = |line: u64| {
                    let pushed: u64 = j.pushed.iter().map(|r| r.end.min(line).saturating_sub(r.start)).sum();
                    line - pushed.min(line)
                };
                let runs = shared.attempts.iter().map(|a| Attempt { from_line: polled_before(a.from_line), ..*a });
                &SharedMeta { attempts: runs.collect(), ..meta.clone() }
            }
            None => meta,
        };
        self.follower.extend_shared(&polled, &flags, f_meta);
        let j = self.join.as_deref_mut().expect("joined above");
        j.follower_seen = self.follower.line_count();
        j.attempts_seen = self.follower.attempts().len();
        // (A store's meta names the join once anything was pushed; a holder writes it
        // with every append from then on.)
        let Some(shared) = meta.join.as_ref() else { return };
        let join = shared.join_meta();
        j.attempts = join.attempts;
        j.batches = join.batches;
        j.unnumbered_at = join.unnumbered_at;
        j.stats = join.stats;
        j.complete = join.complete;
        j.truncated = join.truncated;
    }
}

#[cfg(test)]
#[path = "joined_shared_tests.rs"]
mod tests;
