//! The start-up state of one attempt of a model-server job, computed from its served
//! lines with [`super::rules`] (issue 13).
//!
//! A [`StartupTracker`] is plain data advanced by [`StartupTracker::feed`] (each served
//! line of the attempt, in served order) and [`StartupTracker::observe_status`]. Its
//! events depend only on the lines fed (and the end observed), never on how they were
//! chunked.
//!
//! * `ready` once a `ready` rule matched; it stays, also after the job ends, and nothing
//!   after it is looked at.
//! * A `failed` rule's match is a *provisional* failure (`final: false`); a later line
//!   replaces it only with a strictly higher `priority` (a generic `engine_failed`
//!   gives way to `cuda_oom`). It becomes *final* (the phase `failed`, one `failed`
//!   event) only once no more specific cause can follow: its priority is the highest
//!   any failed rule of the set has; or the attempt logged a line `failure_settle_ms`
//!   later than the failure line, by the lines' own timestamps; or the attempt ended
//!   (final status and complete log) or was superseded by a retry. The lines' time
//!   (not the clock of whoever asks) makes the answer the same on every replica and
//!   whenever the log is read. Until then the phase stays what it was.
//! * With neither, when the attempt ended (final status and complete log): FAILED is a
//!   failure with cause `unknown` and the attempt's last error line (or its last line);
//!   any other final status is `exited`.
//! * Otherwise `loading` once a `loading` or `progress` rule matched, else `starting`.
//!
//! A tracker is *tracked* (shown by the viewer) when its rules are the job's own, or once
//! any rule matched: a job that only has the built-in vLLM rules and never logs like
//! vLLM (a batch job) is not a model server.

use std::sync::Arc;

use serde::Serialize;

use super::line::record_time;
use super::rules::{is_error_line, job_text, RuleKind, RuleSet};
use super::status::Status;

/// Events kept per attempt at most; progress updates beyond are not recorded as
/// events (the `progress` field still follows them).
pub const MAX_EVENTS: usize = 1_000;

/// The cause of a failure no rule explained.
pub const UNKNOWN_CAUSE: &str = "unknown";

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing known yet.
    Starting,
    /// The server is loading (a `loading` or `progress` line).
    Loading,
    /// A `ready` line: the server serves.
    Ready,
    /// A `failed` line, or the job failed without one.
    Failed,
    /// The job ended without ready or failure.
    Exited,
}

/// A line that marked something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Index in the served sequence (0-based, like `fromLine`).
    pub line: u64,
    /// The line as served.
    pub text: String,
}

/// Why the attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The rule's cause, or `unknown`.
    pub cause: Arc<str>,
    /// The line (none for an `unknown` failure of an attempt without a line).
    pub line: Option<u64>,
    /// Its text.
    pub text: Option<String>,
    /// No more specific cause can follow any more (see the module docs); until then the
    /// phase is not `failed`.
    #[serde(rename = "final")]
    pub is_final: bool,
    #[serde(skip)]
    priority: i32,
    /// The failure line's record time (or the latest before it), naive epoch ms.
    #[serde(skip)]
    at: Option<i64>,
}

/// The latest progress line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// What progresses (`Loading safetensors checkpoint shards`, …).
    pub label: Arc<str>,
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
    /// The line.
    pub line: u64,
}

/// One change of the start-up state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The server began loading.
    Loading {
        /// The line.
        line: u64,
    },
    /// A progress line.
    Progress {
        /// The line.
        line: u64,
        /// What progresses.
        label: Arc<str>,
        /// Steps done.
        done: u64,
        /// Steps in all.
        total: u64,
    },
    /// Ready.
    Ready {
        /// The line.
        line: u64,
    },
    /// The final failure (once per attempt).
    Failed {
        /// The line, if any.
        line: Option<u64>,
        /// The cause.
        cause: Arc<str>,
    },
    /// The job ended without ready or failure.
    Exited {
        /// Its final status.
        status: &'static str,
    },
}

/// The start-up state of one attempt (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupTracker {
    ready: Option<Mark>,
    failure: Option<Failure>,
    progress: Option<Progress>,
    loading: bool,
    ended: bool,
    last_error: Option<Mark>,
    last_line: Option<Mark>,
    /// The newest record time fed (naive epoch ms).
    latest: Option<i64>,
    /// A rule matched.
    matched: bool,
    events: Vec<Event>,
}

/// What `GET /llm/instances/{id}/startup` answers for one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartupSnapshot {
    /// PowerJob's `runningTimes` of the attempt.
    pub attempt: u32,
    /// Where it stands.
    pub phase: Phase,
    /// The ready line.
    pub ready: Option<Mark>,
    /// The failure.
    pub failure: Option<Failure>,
    /// The latest progress.
    pub progress: Option<Progress>,
    /// Every change, in order.
    pub events: Vec<Event>,
    /// Nothing about this attempt can change any more (ready, or the attempt ended).
    pub complete: bool,
    /// Start-up tracking applies to this job (see the module docs); `false`: the viewer
    /// shows no start-up state.
    pub tracked: bool,
}

impl StartupTracker {
    /// Takes in served line `index` of this attempt; a provisional failure is final once
    /// a line `settle_ms` later (by record time) is fed.
    pub fn feed(&mut self, rules: &RuleSet, settle_ms: i64, index: u64, line: &str) {
        if self.ready.is_some() || self.ended {
            return;
        }
        if let Some(t) = record_time(line) {
            self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
            let settled =
                self.failure.as_ref().is_some_and(|f| f.at.is_some_and(|at| t >= at.saturating_add(settle_ms)));
            if settled {
                self.finalize_failure();
            }
        }
        let (level, text) = job_text(line);
        let mark = |m: &mut Option<Mark>| {
            let m = m.get_or_insert_with(|| Mark { line: index, text: String::new() });
            m.line = index;
            m.text.clear();
            m.text.push_str(line);
        };
        mark(&mut self.last_line);
        if is_error_line(level, &text) {
            mark(&mut self.last_error);
        }
        let Some(rule) = rules.first_match(&text) else { return };
        self.matched = true;
        match rule.kind {
            RuleKind::Ready => {
                self.ready = Some(Mark { line: index, text: line.to_owned() });
                self.events.push(Event::Ready { line: index });
            }
            RuleKind::Failed => {
                let replaces = self.failure.as_ref().is_none_or(|f| !f.is_final && rule.priority > f.priority);
                if replaces {
                    let (cause, line, text) = (rule.cause.clone(), Some(index), Some(line.to_owned()));
                    let (priority, at) = (rule.priority, self.latest);
                    self.failure = Some(Failure { cause, line, text, is_final: false, priority, at });
                    if rules.max_failed_priority().is_some_and(|max| priority >= max) {
                        // Nothing more specific exists.
                        self.finalize_failure();
                    }
                }
            }
            _ if self.failure.is_some() => {}
            RuleKind::Progress => {
                let Some((label, done, total)) = rule.progress(&text) else { return };
                let same =
                    self.progress.as_ref().is_some_and(|p| p.label == label && (p.done, p.total) == (done, total));
                if !same {
                    if self.events.len() < MAX_EVENTS {
                        let label = label.clone();
                        self.events.push(Event::Progress { line: index, label, done, total });
                    }
                    self.progress = Some(Progress { label, done, total, line: index });
                }
                self.loading = true;
            }
            RuleKind::Loading => {
                if !self.loading {
                    self.loading = true;
                    self.events.push(Event::Loading { line: index });
                }
            }
        }
    }

    /// Takes in the instance status; `log_complete`: no line of this attempt can follow.
    /// Only a final status with a complete log ends the attempt.
    pub fn observe_status(&mut self, status: Status, log_complete: bool) {
        if self.ended || !status.is_final() || !log_complete {
            return;
        }
        self.ended = true;
        if self.ready.is_some() {
            return;
        }
        if self.failure.is_some() {
            self.finalize_failure();
            return;
        }
        if status == Status::Failed {
            let at = self.last_error.as_ref().or(self.last_line.as_ref());
            let cause: Arc<str> = UNKNOWN_CAUSE.into();
            let line = at.map(|m| m.line);
            let text = at.map(|m| m.text.clone());
            self.failure = Some(Failure { cause, line, text, is_final: false, priority: i32::MIN, at: None });
            self.finalize_failure();
        } else {
            self.events.push(Event::Exited { status: status.name() });
        }
    }

    /// A retry superseded this attempt: no line of it can follow, so its failure (if
    /// any) is final.
    pub fn supersede(&mut self) {
        if self.ready.is_none() {
            self.finalize_failure();
        }
    }

    /// Makes the failure final, with its one `failed` event.
    fn finalize_failure(&mut self) {
        let Some(f) = self.failure.as_mut().filter(|f| !f.is_final) else { return };
        f.is_final = true;
        self.events.push(Event::Failed { line: f.line, cause: f.cause.clone() });
    }

    /// Where the attempt stands.
    pub fn phase(&self) -> Phase {
        if self.ready.is_some() {
            Phase::Ready
        } else if self.failure.as_ref().is_some_and(|f| f.is_final) {
            Phase::Failed
        } else if self.ended {
            Phase::Exited
        } else if self.loading {
            Phase::Loading
        } else {
            Phase::Starting
        }
    }

    /// The events so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Whether nothing can change any more.
    pub fn is_complete(&self) -> bool {
        self.ready.is_some() || self.ended
    }

    /// True once a rule matched.
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// The answer for attempt number `attempt`; `own_rules`: the job has rules of its
    /// own (it is tracked from the start, see the module docs).
    pub fn snapshot(&self, attempt: u32, own_rules: bool) -> StartupSnapshot {
        StartupSnapshot {
            attempt,
            phase: self.phase(),
            ready: self.ready.clone(),
            failure: self.failure.clone(),
            progress: self.progress.clone(),
            events: self.events.clone(),
            complete: self.is_complete(),
            tracked: own_rules || self.matched,
        }
    }
}

#[cfg(test)]
#[path = "startup_tests.rs"]
mod tests;
