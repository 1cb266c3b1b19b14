//! The runs a processor would push (issue 19): each scripted run that starts, handed to
//! the HTTP layer's pusher ([`crate::http::Pusher`]) with every log call it makes, and
//! the time after which a stopped run logs nothing more.
//!
//! Off unless [`SimCore::record_runs`] is on; the core stays pure: it only keeps the
//! list, the HTTP layer plays it against the wall clock.

use super::SimCore;
use crate::script::{JobScript, ScriptLine, ScriptWorker};

/// A scripted run that started: what its processor logs, and when (server clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedRun {
    /// The instance.
    pub instance_id: i64,
    /// Its job.
    pub job_id: i64,
    /// The run generation (a retry starts a new one).
    pub run: u64,
    /// When the run started (dispatch), epoch ms on the server's clock.
    pub start: i64,
    /// When the processor returns (the script's end, before the final status report).
    pub end_at: i64,
    /// The workers taking part.
    pub workers: Vec<ScriptWorker>,
    /// Every log call, in log order (`at_ms` after `start`), params rendered.
    pub lines: Vec<ScriptLine>,
}

impl StartedRun {
    /// The run of `script` (params already rendered) started at `start`.
    pub(super) fn new(instance_id: i64, job_id: i64, run: u64, start: i64, script: &JobScript) -> Self {
        let mut lines: Vec<ScriptLine> =
            script.lines.iter().filter(|l| l.worker < script.workers.len()).cloned().collect();
        lines.sort_by_key(|l| l.at_ms);
        StartedRun {
            instance_id,
            job_id,
            run,
            start,
            end_at: start.saturating_add(script.end_ms),
            workers: script.workers.clone(),
            lines,
        }
    }
}

impl SimCore {
    /// Whether runs that start are kept for [`SimCore::take_started_runs`] (off by default).
    pub fn record_runs(&mut self, on: bool) {
        self.record_runs = on;
        if !on {
            self.started_runs.clear();
        }
    }

    /// The runs that started since the last call, oldest first.
    pub fn take_started_runs(&mut self) -> Vec<StartedRun> {
        std::mem::take(&mut self.started_runs)
    }

    /// For a run that was stopped or cancelled while its processor still had lines to
    /// log: the time after which it logs nothing ([`crate::SimConfig::logs_after_stop`]
    /// off). `None`: the run logs its whole script.
    pub fn logged_until(&self, instance_id: i64, run: u64) -> Option<i64> {
        self.cut_runs.get(&(instance_id, run)).copied()
    }

    pub(super) fn started(&mut self, run: StartedRun) {
        if self.record_runs {
            self.started_runs.push(run);
        }
    }
}
