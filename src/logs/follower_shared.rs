//! A follower shared through a store (Redis, docs/API.md "Cluster mode"): the store keeps
//! the served lines, each with a flag saying whether it starts a unit, and a small
//! [`SharedMeta`] beside them. That is enough for any replica to rebuild the follower
//! exactly (units, lookup index) and go on appending; what it lacks is the upstream
//! model, so the first refresh after a takeover reads the whole log and matches it
//! against what was served, which serves nothing twice and loses nothing.

use serde::{Deserialize, Serialize};

use super::{Attempt, Follower};
use crate::logs::joined::SharedJoin;
use crate::logs::status::Status;
use crate::logs::units::{segment, Served};

/// The part of a follower's state a shared store keeps beside the lines: small and
/// independent of the log's length.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedMeta {
    /// Version of this layout; a replica refuses a newer one.
    #[serde(default)]
    pub v: u32,
    /// Latest status.
    pub status: Status,
    /// Every run and its first line.
    pub attempts: Vec<Attempt>,
    /// PowerJob's `finishedTime` of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<i64>,
    /// When the writer first saw the current run final (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_seen_at: Option<i64>,
    /// When a read last appended lines (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_growth_at: Option<i64>,
    /// No line can follow.
    pub complete: bool,
    /// PowerJob's copy lost lines this log holds.
    pub upstream_lost: bool,
    /// Cut at the line limit.
    pub truncated: bool,
    /// The instance's job, as PowerJob reported it to the writer (not follower state:
    /// the service fills it in, so every replica applies the job's start-up rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// The writer could not read PowerJob at its last refresh (not follower state
    /// either: the service fills it in, so every replica answers `stale` alike).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upstream_failing: bool,
    /// What PowerJob said this instance is (app, job, creation), as the writer read it:
    /// a replica whose PowerJob says otherwise of the same id follows another PowerJob
    /// and must not serve these lines (the service fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// What the join adds once anything was pushed (`crate::logs::joined`; the layout
    /// is then [`JOINED_META_VERSION`](crate::logs::joined::JOINED_META_VERSION)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<SharedJoin>,
}

impl SharedMeta {
    /// The part the follower itself keeps ([`Follower::shared_meta`]): without what the
    /// service fills in.
    pub fn follower_part(&self) -> SharedMeta {
        SharedMeta { job_id: None, upstream_failing: false, origin: None, ..self.clone() }
    }
}

/// The layout version written by this build for a log nothing was pushed to (one that
/// was has [`JOINED_META_VERSION`](crate::logs::joined::JOINED_META_VERSION)).
pub const SHARED_META_VERSION: u32 = 1;

impl Follower {
    /// The state to store beside the lines.
    pub fn shared_meta(&self) -> SharedMeta {
        let d = &self.data;
        SharedMeta {
            v: SHARED_META_VERSION,
            status: d.status,
            attempts: d.attempts.clone(),
            finished_time: d.finished_time,
            final_seen_at: d.final_seen_at,
            last_growth_at: d.last_growth_at,
            complete: d.complete,
            upstream_lost: d.upstream_lost,
            truncated: d.truncated,
            job_id: None,
            upstream_failing: false,
            origin: None,
            join: None,
        }
    }

    /// Whether each served line from `from` on starts a unit. A complete log keeps no
    /// unit boundaries: they are cut at timestamps then, as when it runs again.
    pub fn unit_flags(&self, from: usize) -> Vec<bool> {
        let d = &self.data;
        let count = d.lines.len();
        if from >= count {
            return Vec::new();
        }
        let mut flags = vec![false; count - from];
        if d.units.is_empty() {
            let lines: Vec<&str> = d.lines.slice(from..count).iter().collect();
            for r in segment(&lines) {
                flags[r.start] = true;
            }
        } else {
            let first = d.units.partition_point(|&u| (u as usize) < from);
            for &u in &d.units[first..] {
                flags[u as usize - from] = true;
            }
            // (A unit that started before `from` goes on: its lines are continuations.)
        }
        flags
    }

    /// Appends lines read from the store (each with its unit flag) after those held, and
    /// takes the store's meta. The upstream model is dropped: it is the writer's, and
    /// the next refresh of this follower reads the whole log. Lines the store appended
    /// are never checked against the line limit again (the writer did).
    ///
    /// # Panics
    /// When `lines` and `flags` differ in length.
    pub fn extend_shared<S: AsRef<str>>(&mut self, lines: &[S], flags: &[bool], meta: &SharedMeta) {
        assert_eq!(lines.len(), flags.len(), "one flag per line");
        if self.data.complete && (!lines.is_empty() || !meta.complete) {
            // Runs again (or grew past a completion this replica saw): rebuild the tables.
            self.data.complete = false;
            *self = Follower::from(std::mem::take(&mut self.data));
        }
        self.set_model(0, &[]);
        let d = &mut self.data;
        d.last_page = None;
        d.last_page_seen_at = None;
        let mut k = 0;
        while k < lines.len() {
            let end = (k + 1..lines.len()).find(|&j| flags[j]).unwrap_or(lines.len());
            if flags[k] || self.data.units.is_empty() {
                self.push_unit(&lines[k..end]);
            } else {
                // Continues the last unit held (an append cut inside a unit).
                for l in &lines[k..end] {
                    self.data.lines.push(l.as_ref());
                }
                self.reindex_last_unit();
            }
            k = end;
        }
        let d = &mut self.data;
        d.status = meta.status;
        d.attempts.clone_from(&meta.attempts);
        d.finished_time = meta.finished_time;
        d.final_seen_at = meta.final_seen_at;
        d.last_growth_at = meta.last_growth_at;
        d.upstream_lost = meta.upstream_lost;
        d.truncated = meta.truncated;
        if meta.complete && !self.data.complete {
            self.finish();
        }
    }

    fn push_unit<S: AsRef<str>>(&mut self, text: &[S]) {
        let u = self.data.units.len() as u32;
        self.data.units.push(self.data.lines.len() as u32);
        for l in text {
            self.data.lines.push(l.as_ref());
        }
        let served = Served { lines: &self.data.lines, units: &self.data.units };
        self.index.add_served(&served, u, text);
    }

    /// The last unit grew: rebuild the index (rare: only a writer's append that ends
    /// inside a record, which the follower never produces itself).
    fn reindex_last_unit(&mut self) {
        *self = Follower::from(std::mem::take(&mut self.data));
    }
}
