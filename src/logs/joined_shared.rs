//! A served log shared through a store (cluster mode): the store keeps its lines, each
//! with a unit flag and a pushed flag, the follower's [`SharedMeta`] and, once something
//! was pushed, a small [`JoinMeta`]; [`Joined::restore`] rebuilds it on any replica.

use serde::{Deserialize, Serialize};

use super::{Join, JoinConfig, Joined, PushStats};
use crate::logs::follower::{Attempt, Follower, SharedMeta};
use crate::logs::merge::{PushState, PushedLine, Record};
use crate::logs::units::segment;

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

impl Joined {
    /// Whether each served line from `from` on starts a unit (a record): the follower's
    /// own flags while nothing was pushed, else cut at the record times.
    pub fn unit_flags(&self, from: usize) -> Vec<bool> {
        let Some(j) = self.join.as_deref() else { return self.follower.unit_flags(from) };
        let lines: Vec<&str> = j.lines.slice(from..j.lines.len()).iter().collect();
        let mut flags = vec![false; lines.len()];
        for r in segment(&lines) {
            flags[r.start] = true;
        }
        flags
    }

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

    /// Rebuilds a served log from a shared store: its `lines`, whether each starts a
    /// unit (`units`) and came from a push (`pushed`), the follower's `meta` and, once
    /// something was pushed, `join`. The follower gets the lines that were not pushed
    /// (PowerJob's records served; the copies of pushed lines it dropped come back with
    /// its next read and pair with them again), the merge sees every served line again.
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
        let Some(jm) = join else {
            let mut follower = Follower::default();
            follower.extend_shared(lines, units, meta);
            return Joined::from(follower);
        };
        // The follower's lines and runs, numbered without the pushed lines.
        let polled = |upto: u64| pushed[..(upto as usize).min(pushed.len())].iter().filter(|&&p| !p).count() as u64;
        let keep: Vec<usize> = (0..lines.len()).filter(|&i| !pushed[i]).collect();
        let f_lines: Vec<&str> = keep.iter().map(|&i| lines[i].as_ref()).collect();
        let f_units: Vec<bool> = keep.iter().map(|&i| units[i]).collect();
        let attempts = jm.attempts.iter().map(|a| Attempt { attempt: a.attempt, from_line: polled(a.from_line) });
        let f_meta = SharedMeta { attempts: attempts.collect(), ..meta.clone() };
        let mut follower = Follower::default();
        follower.extend_shared(&f_lines, &f_units, &f_meta);
        let mut j = Join {
            follower_seen: follower.line_count(),
            attempts_seen: follower.attempts().len(),
            attempts: jm.attempts,
            batches: jm.batches,
            unnumbered_at: jm.unnumbered_at,
            stats: jm.stats,
            complete: jm.complete,
            truncated: jm.truncated,
            ..Join::default()
        };
        let mut k = 0;
        while k < lines.len() {
            let end = (k + 1..lines.len()).find(|&i| units[i]).unwrap_or(lines.len());
            let unit: Vec<&str> = lines[k..end].iter().map(AsRef::as_ref).collect();
            let record = pushed[k].then(|| Record::parse(&unit, config.utc_offset_minutes)).flatten();
            match record {
                Some(r) => {
                    let line = PushedLine { ts: r.ts, level: r.level, text: r.content };
                    j.merger.offer_pushed(&config.merge, &line);
                }
                None => {
                    j.merger.offer_unit(&config.merge, &unit, config.utc_offset_minutes);
                }
            }
            for l in &unit {
                j.lines.push(l);
            }
            if pushed[k] {
                let (start, end) = (k as u64, end as u64);
                match j.pushed.last_mut() {
                    Some(r) if r.end == start => r.end = end,
                    _ => j.pushed.push(start..end),
                }
            }
            k = end;
        }
        Joined { follower, join: Some(Box::new(j)) }
    }
}
