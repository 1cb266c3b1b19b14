//! The start-up state of followed instances (`GET /llm/instances/{id}/startup`).
//!
//! Each [`super::Entry`] holds a [`StartupState`]: one [`StartupTracker`] per attempt,
//! and how many served lines were fed. It is advanced lazily, when asked, from the last
//! line fed to the current line count; the lines from `attempts[k].fromLine` on belong
//! to attempt k. It reads PowerJob no more than the log does: an answer refreshes the
//! log exactly as a log read does.
//!
//! The rules of an instance: those of the configured job it was run as through
//! powertail ([`LogService::started_as`]); else those of the configured job whose
//! `job_id` PowerJob reports for it; else the built-ins. A job with rules of its own is
//! tracked from the start; one with the built-ins only once a rule matched; one with no
//! rules (`builtin_rules = false` and none of its own) never (`tracked: false`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::per_job::PerJob;
use super::{Entry, LogService, ServiceError};
use crate::config::Config;
use crate::logs::rules::RuleSet;
use crate::logs::startup::{StartupSnapshot, StartupTracker};
use crate::logs::Status;

/// Lines fed under one hold of the locks (a writer waits at most that long).
const FEED_CHUNK: usize = 4_096;
/// Instances remembered with the job they were run as.
const STARTED_CAPACITY: u64 = 100_000;

/// An instance's start-up state as answered.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The instance.
    pub instance_id: i64,
    /// The current (last) attempt's state.
    pub snapshot: StartupSnapshot,
    /// The instance's status.
    pub status: Status,
    /// PowerJob could not be read just now (as in a log read).
    pub stale: bool,
}

/// What a waiter compares (see [`Startup::key`]).
pub type StartupKey = (u32, usize, bool, Option<(Arc<str>, bool)>, bool);

impl Startup {
    /// What a waiter compares: (attempt, events, complete, the failure's cause and
    /// finality, tracked). A provisional failure adds no event, yet is news.
    pub fn key(&self) -> StartupKey {
        let s = &self.snapshot;
        let failure = s.failure.as_ref().map(|f| (f.cause.clone(), f.is_final));
        (s.attempt, s.events.len(), s.complete, failure, s.tracked)
    }
}

/// The rules of one job, and whether any of them are the job's own.
#[derive(Clone)]
struct JobRules {
    set: Arc<RuleSet>,
    own: bool,
}

impl JobRules {
    fn builtin() -> Self {
        JobRules { set: RuleSet::builtin().clone(), own: false }
    }
}

/// The rules per job, and the job each instance run through powertail was run as.
pub(super) struct StartupRules {
    rules: PerJob<JobRules>,
    /// `startup.failure_settle_ms`.
    settle_ms: i64,
}

impl StartupRules {
    pub(super) fn new(config: &Config) -> Self {
        let rules = PerJob::new(config, STARTED_CAPACITY, |name, job| {
            let own = !job.startup_rules.is_empty();
            let rules = match job.rules() {
                Ok(_) if !own && job.builtin_rules => JobRules::builtin(),
                Ok(r) => JobRules { set: Arc::new(r), own },
                Err(e) => {
                    // Validated with the configuration: not reached.
                    tracing::error!(job = name, error = %e, "start-up rules unusable; using the built-ins");
                    JobRules::builtin()
                }
            };
            Some(rules)
        });
        StartupRules { rules, settle_ms: i64::try_from(config.startup.failure_settle_ms).unwrap_or(i64::MAX) }
    }

    fn for_instance(&self, id: i64, job_id: Option<i64>) -> JobRules {
        self.rules.for_instance(id, job_id).unwrap_or_else(JobRules::builtin)
    }
}

/// The trackers of one entry.
#[derive(Default)]
pub(super) struct StartupState {
    rules: Option<Arc<RuleSet>>,
    /// One per attempt, in the follower's order.
    trackers: Vec<StartupTracker>,
    /// Served lines fed so far.
    fed: usize,
    /// The rules are the job's own (tracked from the start).
    own: bool,
}

impl LogService {
    /// Remembers that instance `id` was run as the configured job `job` (its start-up
    /// rules apply).
    pub fn started_as(&self, id: i64, job: &str) {
        self.inner.startup_rules.rules.started_as(id, job);
        self.archive_started(id, job);
        // Its webhook, if it has one, is driven from now on.
        self.notify_started(id, job);
    }

    /// The states of the attempts before the current one, as fed so far (for the
    /// webhook: a retry supersedes them).
    pub(super) fn earlier_attempts(&self, id: i64) -> Vec<StartupSnapshot> {
        let Some(entry) = self.inner.store.get(id) else { return Vec::new() };
        let view = entry.view.read().expect("view lock poisoned");
        let state = entry.startup.lock().expect("startup lock poisoned");
        let attempts = &view.attempts;
        let earlier = state.trackers.len().saturating_sub(1);
        let own = state.own;
        state.trackers[..earlier]
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let mut t = t.clone();
                t.supersede();
                t.snapshot(attempts.get(k).map_or(k as u32 + 1, |a| a.attempt), own)
            })
            .collect()
    }

    /// The start-up state of instance `id`'s current attempt, refreshing the log when
    /// due (as a log read). With `wait > 0`, holds the request until the state differs
    /// from `known` (attempt, number of events; default: the state now), the state is
    /// complete, or `wait` passes.
    ///
    /// # Errors
    /// As [`LogService::read`].
    pub async fn startup(
        &self,
        id: i64,
        wait: Duration,
        known_in: (Option<u32>, Option<usize>),
    ) -> Result<Startup, ServiceError> {
        let entry = self.entry(id)?;
        // What the client knows: as sent, or the state at its first look; and the rest of
        // the state at the first look (a provisional failure, `tracked`: no event).
        let mut known = None;
        let mut first: Option<StartupKey> = None;
        self.poll(&entry, wait, |stale, last| {
            let s = self.startup_of(&entry, stale);
            let (attempt, events) = (s.snapshot.attempt, s.snapshot.events.len());
            let k = *known.get_or_insert((known_in.0.unwrap_or(attempt), known_in.1.unwrap_or(events)));
            let key = s.key();
            let moved = first.get_or_insert_with(|| key.clone()) != &key;
            (s.snapshot.complete || (attempt, events) != k || moved || last).then_some(s)
        })
        .await
    }

    /// The start-up state from what is held, without reading PowerJob (for the event
    /// stream, right after a log read); `None` when the instance is not held.
    pub fn startup_held(&self, id: i64) -> Option<Startup> {
        let entry = self.inner.store.get(id)?;
        Some(self.startup_of(&entry, false))
    }

    fn startup_of(&self, entry: &Entry, stale: bool) -> Startup {
        let job_id = self.gate(entry).job_id;
        let JobRules { set: rules, own } = self.inner.startup_rules.for_instance(entry.id, job_id);
        let settle_ms = self.inner.startup_rules.settle_ms;
        let fresh = || StartupState { rules: Some(rules.clone()), own, ..StartupState::default() };
        loop {
            let follower = entry.follower.read().expect("follower lock poisoned");
            let view = entry.view.read().expect("view lock poisoned");
            let mut state = entry.startup.lock().expect("startup lock poisoned");
            if !state.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, &rules)) {
                *state = fresh();
            }
            let attempts = &view.attempts;
            let wanted = attempts.len().max(1).max(state.trackers.len());
            state.trackers.resize_with(wanted, StartupTracker::default);
            let count = view.visible.min(follower.line_count());
            if state.fed > count {
                // Rebuilt under a new epoch (cluster mode): fed anew.
                *state = fresh();
                state.trackers.resize_with(wanted, StartupTracker::default);
            }
            let end = count.min(state.fed + FEED_CHUNK);
            let from = state.fed;
            let StartupState { trackers, .. } = &mut *state;
            for (i, line) in follower.lines_in(from..end).iter().enumerate() {
                let index = (from + i) as u64;
                let k = attempts.iter().rposition(|a| a.from_line <= index).unwrap_or(0);
                trackers[k].feed(&rules, settle_ms, index, line);
            }
            state.fed = end;
            if end < count {
                continue;
            }
            let status = view.status;
            let last = state.trackers.len() - 1;
            for earlier in &mut state.trackers[..last] {
                earlier.supersede();
            }
            state.trackers[last].observe_status(status, view.complete);
            return Startup {
                instance_id: entry.id,
                snapshot: state.trackers[last].snapshot(attempts.last().map_or(1, |a| a.attempt), own),
                status,
                stale,
            };
        }
    }
}

/// For [`super::Entry`]: a fresh state.
pub(super) fn new_state() -> Mutex<StartupState> {
    Mutex::new(StartupState::default())
}
