//! `JobScript`: what one simulated run of a job logs, on which workers, and how it ends.
//!
//! A script is pure data. [`super::SimCore::run_job`] turns it into scheduled events:
//! dispatch at once, RUNNING at `running_at_ms`, each line as a worker record shipped in
//! that worker's next flush batch (so lines arrive up to `worker_flush_ms` late, and the
//! last ones after the final status, protocol §5 and §6 pitfall 8), the final status at
//! `end_ms`.

use super::core::Level;

/// One log call of the processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptLine {
    /// When the processor logs it, in ms after the run started (dispatch).
    pub at_ms: i64,
    /// OmsLogger level.
    pub level: Level,
    /// The record's content; may contain `'\n'` (a stack trace ends with one).
    pub content: String,
    /// Index into [`JobScript::workers`] of the worker that logs it.
    pub worker: usize,
}

/// A worker taking part in the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptWorker {
    /// `ip:port` written into every line it logs.
    pub address: String,
    /// Added to the real time to get the worker's clock (the `logTime` of its records).
    pub clock_skew_ms: i64,
    /// Offset of the worker's flush ticks from the run start (its flusher runs every
    /// `SimConfig::worker_flush_ms` since the worker booted, not since the run started).
    pub flush_phase_ms: i64,
}

/// A scripted job run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobScript {
    /// The workers; a line's `worker` indexes this. A script without workers logs nothing.
    pub workers: Vec<ScriptWorker>,
    /// Every log call, in any order.
    pub lines: Vec<ScriptLine>,
    /// When the worker's first status report moves the instance from 2 to 3.
    pub running_at_ms: i64,
    /// When the final status is reported (at once, without flushing the log queue).
    pub end_ms: i64,
    /// The final status: 4 (FAILED) or 5 (SUCCEED) usually.
    pub final_status: i32,
    /// The `result` reported with the final status.
    pub result: String,
}

/// The address a default single-worker script logs from (the fixtures' worker).
const DEFAULT_WORKER: &str = "10.0.0.21:27777";

impl JobScript {
    /// Lines of a text (one record per line; an exception record = several lines joined
    /// with '\n' is fine too) spread evenly over `duration_ms`, single worker.
    ///
    /// Line `i` of `n` is logged at `duration_ms * i / n`; RUNNING is reported at the
    /// first line, the final status right after `duration_ms`.
    pub fn from_text(text: &str, duration_ms: i64, final_status: i32, result: &str) -> Self {
        let duration_ms = duration_ms.max(0);
        let contents: Vec<&str> = text.lines().collect();
        let n = i64::try_from(contents.len()).unwrap_or(i64::MAX).max(1);
        let lines = contents
            .iter()
            .enumerate()
            .map(|(i, content)| ScriptLine {
                at_ms: duration_ms.saturating_mul(i64::try_from(i).unwrap_or(i64::MAX)) / n,
                level: level_of(content),
                content: (*content).to_owned(),
                worker: 0,
            })
            .collect();
        JobScript {
            workers: vec![ScriptWorker { address: DEFAULT_WORKER.into(), clock_skew_ms: 0, flush_phase_ms: 0 }],
            lines,
            running_at_ms: 0,
            end_ms: duration_ms.saturating_add(1),
            final_status,
            result: result.to_owned(),
        }
    }

    /// The same run, every time multiplied by `factor` (`< 1`: faster). Used by
    /// `powertail demo` and the tests to replay realistic scripts in seconds.
    pub fn scaled(&self, factor: f64) -> Self {
        // Script times are far below 2^53 ms, so the float round trip is exact enough.
        let f = |ms: i64| (ms as f64 * factor).round() as i64;
        JobScript {
            workers: self
                .workers
                .iter()
                .map(|w| ScriptWorker {
                    clock_skew_ms: f(w.clock_skew_ms),
                    flush_phase_ms: f(w.flush_phase_ms),
                    ..w.clone()
                })
                .collect(),
            lines: self.lines.iter().map(|l| ScriptLine { at_ms: f(l.at_ms), ..l.clone() }).collect(),
            running_at_ms: f(self.running_at_ms),
            end_ms: f(self.end_ms).max(1),
            final_status: self.final_status,
            result: self.result.clone(),
        }
    }
}

/// The level a processor would plausibly log a text line with.
fn level_of(line: &str) -> Level {
    if line.contains("ERROR") || line.contains("Traceback") || line.contains("Exception") {
        Level::Error
    } else if line.contains("WARN") {
        Level::Warn
    } else {
        Level::Info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_text_spreads_lines_evenly() {
        let s = JobScript::from_text("a\nb\nc\nd", 4_000, 5, "ok");
        let at: Vec<i64> = s.lines.iter().map(|l| l.at_ms).collect();
        assert_eq!(at, [0, 1_000, 2_000, 3_000]);
        assert_eq!(s.end_ms, 4_001);
        assert_eq!(s.workers.len(), 1);
        assert_eq!(s.result, "ok");
    }

    #[test]
    fn scaled_scales_every_time() {
        let s = JobScript::from_text("a\nb", 10_000, 5, "ok").scaled(0.1);
        assert_eq!(s.lines[1].at_ms, 500);
        assert_eq!(s.end_ms, 1_000);
    }
}
