//! `JobScript`: what one simulated run of a job logs, on which workers, and how it ends.
//!
//! A script is pure data. [`crate::SimCore::run_job`] turns it into scheduled events:
//! dispatch at once, RUNNING at `running_at_ms`, each line as a worker record shipped in
//! that worker's next flush batch (so lines arrive up to `worker_flush_ms` late, and the
//! last ones after the final status, `docs/powerjob-protocol.md` §5 and §6 pitfall 8), the final status at
//! `end_ms`.
//!
//! A script's text may read the run's params the way a start script reads its
//! arguments: `${port:-8000}` in a line (or the result) becomes the run's `port` param,
//! or `8000` when the run has none ([`JobScript::for_run`]; the demo's vLLM scripts
//! use it for `modelName`, `modelPath` and `port`).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::types::Level;

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

impl JobScript {
    /// The script as a run with these params plays it: every `${name:-default}` in its
    /// lines and result replaced (see [`render`]), the params being the job's
    /// `jobParams` with the run's `instanceParams` merged over them, each a JSON object
    /// (anything else counts as no params). Borrowed when the script reads no param.
    pub fn for_run(&self, job_params: &str, instance_params: Option<&str>) -> Cow<'_, JobScript> {
        let reads_params = |t: &str| t.contains("${");
        if !reads_params(&self.result) && !self.lines.iter().any(|l| reads_params(&l.content)) {
            return Cow::Borrowed(self);
        }
        let mut params = json_object(job_params);
        params.extend(json_object(instance_params.unwrap_or_default()));
        Cow::Owned(JobScript {
            lines: self
                .lines
                .iter()
                .map(|l| ScriptLine { content: render(&l.content, &params).into_owned(), ..l.clone() })
                .collect(),
            result: render(&self.result, &params).into_owned(),
            ..self.clone()
        })
    }
}

fn json_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `text` with every `${name:-default}` replaced by the param `name` (a string as is,
/// a number or boolean as JSON writes it), or by `default` when the param is missing,
/// null or empty (as a shell's `${name:-default}`). Anything else is left as it is.
pub fn render<'a>(text: &'a str, params: &Map<String, Value>) -> Cow<'a, str> {
    if !text.contains("${") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let parsed = after.find('}').and_then(|end| {
            let (name, default) = after[..end].split_once(":-")?;
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            valid.then_some((name, default, end))
        });
        let Some((name, default, end)) = parsed else {
            out.push_str("${");
            rest = after;
            continue;
        };
        match params.get(name) {
            Some(Value::String(v)) if !v.is_empty() => out.push_str(v),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            _ => out.push_str(default),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
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
    fn params_replace_their_placeholders_and_defaults_fill_the_rest() {
        let params = json_object(r#"{"port": 8001, "modelName": "llama-3", "empty": "", "flag": true}"#);
        let r = |t| render(t, &params).into_owned();
        assert_eq!(r("start ${modelName:-qwen-7b} on port ${port:-8000}"), "start llama-3 on port 8001");
        assert_eq!(r("${modelPath:-/data/models/qwen-7b} ${empty:-x} ${flag:-false}"), "/data/models/qwen-7b x true");
        // Not placeholders: left alone.
        assert_eq!(r("{'model': 1} ${HOME} ${a b:-c} ${port:-8000"), "{'model': 1} ${HOME} ${a b:-c} ${port:-8000");
        assert!(matches!(render("no placeholder", &params), Cow::Borrowed(_)));
    }

    #[test]
    fn a_run_reads_instance_params_over_job_params() {
        let script = JobScript::from_text(
            "serve ${modelName:-qwen-7b} on :${port:-8000}\nplain",
            2_000,
            5,
            "${modelName:-qwen-7b} up",
        );
        let run = script.for_run(r#"{"modelName": "job-model", "port": 9000}"#, Some(r#"{"port": 8001}"#));
        let lines: Vec<&str> = run.lines.iter().map(|l| l.content.as_str()).collect();
        assert_eq!(lines, ["serve job-model on :8001", "plain"]);
        assert_eq!(run.result, "job-model up");
        assert_eq!(run.lines[0].at_ms, script.lines[0].at_ms);
        // No params (or params that are not a JSON object): the recorded defaults.
        let run = script.for_run("", Some("port=8001"));
        assert_eq!(run.lines[0].content, "serve qwen-7b on :8000");
        // A script that reads no params is played as it is.
        let plain = JobScript::from_text("a\nb", 1_000, 5, "ok");
        assert!(matches!(plain.for_run("", Some(r#"{"port": 1}"#)), Cow::Borrowed(_)));
    }

    #[test]
    fn scaled_scales_every_time() {
        let s = JobScript::from_text("a\nb", 10_000, 5, "ok").scaled(0.1);
        assert_eq!(s.lines[1].at_ms, 500);
        assert_eq!(s.end_ms, 1_000);
    }
}
