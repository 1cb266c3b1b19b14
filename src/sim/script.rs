//! Scripted job runs: what a run logs, from which workers, and how it ends.

use super::core::Level;

/// One line (record) a run logs.
#[derive(Clone, Debug)]
pub struct ScriptLine {
    /// Offset from the run's start (real time).
    pub at_ms: i64,
    /// Level.
    pub level: Level,
    /// Message (may contain newlines).
    pub content: String,
    /// Index into [`JobScript::workers`].
    pub worker: usize,
}

/// A worker of a scripted run.
#[derive(Clone, Debug)]
pub struct ScriptWorker {
    /// `ip:port`.
    pub address: String,
    /// Its clock's offset: log times are real time plus this.
    pub clock_skew_ms: i64,
    /// When, within the flush interval, its flusher runs.
    pub flush_phase_ms: i64,
}

/// A whole scripted run.
#[derive(Clone, Debug)]
pub struct JobScript {
    /// Workers (at least one).
    pub workers: Vec<ScriptWorker>,
    /// Records, in any order.
    pub lines: Vec<ScriptLine>,
    /// When the status goes from 2 to 3.
    pub running_at_ms: i64,
    /// When the final status is reported (before the last lines reach the server).
    pub end_ms: i64,
    /// 4 (FAILED) or 5 (SUCCEED).
    pub final_status: i32,
    /// The instance's result text.
    pub result: String,
}

impl JobScript {
    /// One record per line of `text`, spread evenly over `duration_ms`, one worker.
    pub fn from_text(text: &str, duration_ms: i64, final_status: i32, result: &str) -> Self {
        let records: Vec<&str> = text.lines().collect();
        let n = records.len().max(1) as i64;
        let lines = records
            .iter()
            .enumerate()
            .map(|(k, content)| ScriptLine {
                at_ms: duration_ms * k as i64 / n,
                level: level_of(content),
                content: (*content).to_owned(),
                worker: 0,
            })
            .collect();
        JobScript {
            workers: vec![ScriptWorker { address: "10.0.0.21:27777".into(), clock_skew_ms: 0, flush_phase_ms: 0 }],
            lines,
            running_at_ms: (duration_ms / 20).max(1),
            end_ms: duration_ms + 1,
            final_status,
            result: result.to_owned(),
        }
    }
}

impl JobScript {
    /// The same run, `factor` times as fast (`factor` < 1) or slow.
    pub fn scaled(&self, factor: f64) -> Self {
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

/// The level a processor would log a script line with (stderr-ish lines as WARN/ERROR).
fn level_of(line: &str) -> Level {
    if line.contains("[ERROR]") || line.contains("Traceback") || line.contains("Error:") {
        Level::Error
    } else if line.contains("[WARN]") || line.contains("WARNING") {
        Level::Warn
    } else {
        Level::Info
    }
}
