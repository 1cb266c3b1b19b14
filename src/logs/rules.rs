//! Start-up rules: regexes over a job's own text that say when a model server is ready,
//! how far it loaded, and why it failed (issue 13). Pure data and matching; the tracker
//! that applies them is [`super::startup`].
//!
//! A rule is matched against the *job text* of a served line ([`job_text`]): what
//! follows PowerJob's `yyyy-MM-dd HH:mm:ss.SSS [worker] LEVEL ` prefix, with ANSI
//! escapes removed and vLLM's `(Name pid=N) ` process prefix cut off. Continuation
//! lines (no timestamp) are matched as they are, after the same ANSI and process-prefix
//! clean-up. A pattern is searched anywhere in that text (anchor it with `^` if needed).
//!
//! One line, one rule: the first rule in order whose pattern matches decides the line,
//! the job's own rules before the built-ins.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::line::record_time;

/// What a rule's match means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The server is ready (`Application startup complete.`).
    Ready,
    /// The start failed; the rule names the `cause`.
    Failed,
    /// Progress: named groups `done` and `total` (and optionally `label`).
    Progress,
    /// The server began loading (before any progress bar): phase `loading`.
    Loading,
}

/// Default `priority` of a `failed` rule; a generic rule (`engine_failed`) has less.
pub const DEFAULT_PRIORITY: i32 = 50;

/// A rule as configured (`[[jobs.<name>.startup_rules]]`) or built in: plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// What a match means.
    pub kind: RuleKind,
    /// A Rust `regex` searched in the job text.
    pub pattern: String,
    /// `failed` only, required: the cause reported (`cuda_oom`, `port_in_use`, …).
    #[serde(default)]
    pub cause: Option<String>,
    /// `progress` only: the label reported when the pattern has no `label` group.
    #[serde(default)]
    pub label: Option<String>,
    /// `failed` only: specificity (default [`DEFAULT_PRIORITY`]). A later failure line
    /// replaces the attempt's failure only with a strictly higher priority.
    #[serde(default)]
    pub priority: Option<i32>,
}

/// A rule that cannot be used: its index in the list given and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}: `{field}` {problem}")]
pub struct RuleError {
    /// Index in the job's own rules.
    pub index: usize,
    /// `pattern`, `cause`, `label` or `priority`.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What a match means.
    pub kind: RuleKind,
    /// The failure cause (`failed`).
    pub cause: Arc<str>,
    /// The progress label when the pattern has no `label` group.
    pub label: Arc<str>,
    /// Specificity of a failure.
    pub priority: i32,
    regex: Regex,
}

impl Rule {
    fn compile(spec: &RuleSpec, index: usize) -> Result<Rule, RuleError> {
        let err = |field, problem: String| RuleError { index, field, problem };
        let regex = regex::RegexBuilder::new(&spec.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| err("pattern", format!("does not compile: {e}")))?;
        let groups: Vec<&str> = regex.capture_names().flatten().collect();
        let kind = spec.kind;
        if kind == RuleKind::Progress && !(groups.contains(&"done") && groups.contains(&"total")) {
            let problem = "needs the named capture groups `(?P<done>\\d+)` and `(?P<total>\\d+)` (kind = progress)";
            return Err(err("pattern", problem.into()));
        }
        let cause = match (&spec.cause, kind) {
            (Some(c), RuleKind::Failed) if !c.trim().is_empty() => c.trim(),
            (_, RuleKind::Failed) => return Err(err("cause", "is required for kind = \"failed\"".into())),
            (Some(_), _) => return Err(err("cause", "is only for kind = \"failed\"".into())),
            (None, _) => "",
        };
        if spec.label.is_some() && kind != RuleKind::Progress {
            return Err(err("label", "is only for kind = \"progress\"".into()));
        }
        if spec.priority.is_some() && kind != RuleKind::Failed {
            return Err(err("priority", "is only for kind = \"failed\"".into()));
        }
        Ok(Rule {
            kind,
            cause: cause.into(),
            label: spec.label.as_deref().unwrap_or("progress").into(),
            priority: spec.priority.unwrap_or(DEFAULT_PRIORITY),
            regex,
        })
    }

    /// The captures of a progress match: (label, done, total).
    pub fn progress(&self, text: &str) -> Option<(Arc<str>, u64, u64)> {
        let c = self.regex.captures(text)?;
        let done = c.name("done")?.as_str().trim().parse().ok()?;
        let total = c.name("total")?.as_str().trim().parse().ok()?;
        let label = c.name("label").map_or_else(|| self.label.clone(), |m| m.as_str().trim().into());
        Some((label, done, total))
    }
}

/// The rules of one job, compiled, with a set that finds the first match in one pass.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    set: RegexSet,
}

impl RuleSet {
    /// The job's own `rules`, followed by the built-ins when `builtin`.
    ///
    /// # Errors
    /// The first rule that does not compile or lacks what its kind needs.
    pub fn compile(rules: &[RuleSpec], builtin: bool) -> Result<RuleSet, RuleError> {
        let mut compiled = rules.iter().enumerate().map(|(i, s)| Rule::compile(s, i)).collect::<Result<Vec<_>, _>>()?;
        if builtin {
            compiled.extend(RuleSet::builtin().rules.iter().cloned());
        }
        let set = RegexSet::new(compiled.iter().map(|r| r.regex.as_str())).map_err(|e| RuleError {
            index: 0,
            field: "pattern",
            problem: format!("the rules do not compile: {e}"),
        })?;
        Ok(RuleSet { rules: compiled, set })
    }

    /// The built-in rules for vLLM's OpenAI-compatible server ([`builtin_specs`]).
    pub fn builtin() -> &'static Arc<RuleSet> {
        static BUILTIN: OnceLock<Arc<RuleSet>> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let specs = builtin_specs();
            let rules = specs.iter().enumerate().map(|(i, s)| Rule::compile(s, i).expect("built-in rule")).collect();
            let set = RegexSet::new(specs.iter().map(|s| &s.pattern)).expect("built-in rules");
            Arc::new(RuleSet { rules, set })
        })
    }

    /// The rule deciding `text`: the first whose pattern matches.
    pub fn first_match(&self, text: &str) -> Option<&Rule> {
        self.set.matches(text).iter().next().map(|i| &self.rules[i])
    }

    /// The highest `priority` of the set's `failed` rules: a failure of that priority
    /// cannot give way to a more specific one.
    pub fn max_failed_priority(&self) -> Option<i32> {
        self.rules.iter().filter(|r| r.kind == RuleKind::Failed).map(|r| r.priority).max()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without any rule (`builtin_rules = false` and no rule of the job's own).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The built-in rules, for vLLM's OpenAI-compatible server 0.6–0.11 (derived from
/// fixtures/llm/ and vLLM's, uvicorn's, torch's and transformers' format strings).
pub fn builtin_specs() -> Vec<RuleSpec> {
    let rule = |kind, pattern: &str, cause: Option<&str>, priority: Option<i32>| RuleSpec {
        kind,
        pattern: pattern.to_owned(),
        cause: cause.map(str::to_owned),
        label: None,
        priority,
    };
    use RuleKind::*;
    vec![
        // uvicorn's lifespan; `Uvicorn running on` only for vLLM ≤ 0.6.
        rule(Ready, r"Application startup complete\.|^(?:INFO:\s+)?Uvicorn running on ", None, None),
        rule(
            Failed,
            r"CUDA out of memory|OutOfMemoryError|No available memory for the cache blocks|larger than the available KV cache memory|is less than desired GPU memory utilization",
            Some("cuda_oom"),
            None,
        ),
        rule(Failed, r"Address already in use", Some("port_in_use"), None),
        rule(
            Failed,
            r"Can't load the configuration of|Invalid repository ID or local directory|Repo id must be in the form|is not a local folder and is not a valid model identifier",
            Some("model_not_found"),
            None,
        ),
        rule(
            Failed,
            r"EngineCore failed to start|Engine core initialization failed|Engine process failed to start",
            Some("engine_failed"),
            Some(10),
        ),
        rule(Failed, r"Application startup failed", Some("startup_failed"), Some(10)),
        rule(
            Progress,
            r"(?P<label>Loading (?:safetensors|pt) checkpoint shards):\s+\d+% Completed \| (?P<done>\d+)/(?P<total>\d+)",
            None,
            None,
        ),
        rule(
            Progress,
            r"(?P<label>Capturing CUDA graphs?(?: shapes)?(?: \([^)]*\))?):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)",
            None,
            None,
        ),
        rule(Loading, r"Starting to load model |Initializing an? (?:V1 )?LLM engine", None, None),
    ]
}

/// A served line as rules see it: PowerJob's level (`INFO`, `ERROR`, …; none on a
/// continuation line) and the job text (see the module docs).
pub fn job_text(line: &str) -> (Option<&str>, Cow<'_, str>) {
    let (level, rest) = match record_time(line).and_then(|_| line[25..].split_once("] ")) {
        Some((_, after)) => match after.split_once(' ') {
            Some((level, text)) => (Some(level), text),
            None => (Some(after), ""),
        },
        None => (None, line),
    };
    let text = strip_ansi(rest);
    let cut = proc_prefix_len(&text);
    let text = match text {
        Cow::Borrowed(t) => Cow::Borrowed(&t[cut..]),
        Cow::Owned(mut t) => {
            t.drain(..cut);
            Cow::Owned(t)
        }
    };
    (level, text)
}

/// `text` without ANSI CSI sequences (`ESC [ params letter`); borrowed when it has none.
fn strip_ansi(text: &str) -> Cow<'_, str> {
    if !text.contains('\x1b') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        let seq = &rest[at + 1..];
        let Some(params) = seq.strip_prefix('[') else {
            // A lone ESC: dropped.
            rest = seq;
            continue;
        };
        let end = params.bytes().position(|b| !(b.is_ascii_digit() || b == b';'));
        match end {
            Some(e) if params.as_bytes()[e].is_ascii_alphabetic() => rest = &params[e + 1..],
            _ => rest = params,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Length of vLLM's `(Name pid=N) ` prefix at the start of `text` (0 without one).
fn proc_prefix_len(text: &str) -> usize {
    let Some(inner) = text.strip_prefix('(') else { return 0 };
    let Some(close) = inner.find(')') else { return 0 };
    let name = &inner[..close];
    let Some((proc, pid)) = name.rsplit_once(" pid=") else { return 0 };
    if proc.contains('(') || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let after = &inner[close + 1..];
    1 + close + 1 + usize::from(after.starts_with(' '))
}

/// Whether a line is an error line: PowerJob level `ERROR`, or a job text that starts
/// with a level `ERROR`/`CRITICAL`/`FATAL` (vLLM, uvicorn, or a script's `[ts] [ERROR]`).
pub fn is_error_line(level: Option<&str>, text: &str) -> bool {
    static ERROR: OnceLock<Regex> = OnceLock::new();
    let re = ERROR.get_or_init(|| Regex::new(r"^(?:\[[^\]]*\] )?\[?(?:ERROR|CRITICAL|FATAL)\b").expect("regex"));
    level == Some("ERROR") || re.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_text_strips_the_prefixes() {
        let l = "2025-11-12 01:02:14.000 [10.0.0.21:27777] INFO \x1b[1;36m(APIServer pid=12345)\x1b[0;0m INFO:     Application startup complete.";
        assert_eq!(job_text(l), (Some("INFO"), Cow::Borrowed("INFO:     Application startup complete.")));
        assert_eq!(job_text("2025-11-12 01:02:14.000 [w:1] ERROR boom").0, Some("ERROR"));
        assert_eq!(job_text("2025-11-12 01:02:14.000 [w:1] INFO \x1b[1;36m(EngineCore_DP0 pid=1)\x1b[0;0m ").1, "");
        assert_eq!(job_text("Capturing CUDA graphs: 5%").1, "Capturing CUDA graphs: 5%");
        assert_eq!(job_text("(VllmWorker TP0 pid=7) x").1, "x");
        assert_eq!(job_text("(not a prefix) x").1, "(not a prefix) x");
        assert_eq!(job_text("\x1b[31mred\x1b[0m \x1b").1, "red ");
    }

    #[test]
    fn builtins_know_the_failures_and_versions_without_a_fixture() {
        let decide = |text: &str| {
            RuleSet::builtin().first_match(text).map(|r| match r.kind {
                RuleKind::Failed => r.cause.to_string(),
                other => format!("{other:?}"),
            })
        };
        let cases = [
            ("OSError: Can't load the configuration of '/data/models/nope'. If you were", "model_not_found"),
            ("huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name'", "model_not_found"),
            ("ValueError: Invalid repository ID or local directory specified: '/data/m'.", "model_not_found"),
            ("ValueError: Free memory on device (7.85/79.15 GiB) on startup is less than desired GPU memory utilization (0.9, 71.24 GiB).", "cuda_oom"),
            ("ValueError: No available memory for the cache blocks. Try increasing", "cuda_oom"),
            ("RuntimeError: Engine process failed to start. See stack trace for the root cause.", "engine_failed"),
            ("ERROR:    Application startup failed. Exiting.", "startup_failed"),
            ("INFO:     Uvicorn running on socket ('0.0.0.0', 8000) (Press CTRL+C to quit)", "Ready"),
            ("INFO 11-12 01:02:03 llm_engine.py:237] Initializing an LLM engine (v0.6.3.post1) with config:", "Loading"),
            ("Capturing CUDA graph shapes:  40%|████      | 27/67 [00:01<00:02, 16.30it/s]", "Progress"),
            ("Loading pt checkpoint shards:  50% Completed | 1/2 [00:01<00:01,  1.45it/s]", "Progress"),
        ];
        for (text, want) in cases {
            assert_eq!(decide(text).as_deref(), Some(want), "{text}");
        }
        let graphs = RuleSet::builtin().first_match(cases[9].0).unwrap().progress(cases[9].0);
        assert_eq!(graphs, Some(("Capturing CUDA graph shapes".into(), 27, 67)));
        // Serving-time errors that are no start failure, and the script's own lines.
        for text in ["ERROR:    Exception in ASGI application", "[2025-11-12 01:02:13] [ERROR] qwen-7b failed to start"]
        {
            assert_eq!(decide(text), None, "{text}");
        }
    }

    #[test]
    fn rules_are_checked_and_name_the_field() {
        let spec =
            |kind, pattern: &str| RuleSpec { kind, pattern: pattern.into(), cause: None, label: None, priority: None };
        let e = RuleSet::compile(&[spec(RuleKind::Ready, "(")], true).unwrap_err();
        assert_eq!((e.index, e.field), (0, "pattern"));
        let e = RuleSet::compile(&[spec(RuleKind::Ready, "x"), spec(RuleKind::Progress, r"(?P<done>\d+)")], true)
            .unwrap_err();
        assert_eq!((e.index, e.field), (1, "pattern"));
        assert_eq!(RuleSet::compile(&[spec(RuleKind::Failed, "x")], true).unwrap_err().field, "cause");
        let set =
            RuleSet::compile(&[RuleSpec { cause: Some("mine".into()), ..spec(RuleKind::Failed, "OSError") }], true)
                .unwrap();
        assert_eq!(&*set.first_match("OSError: [Errno 98] Address already in use").unwrap().cause, "mine");
        assert_eq!(set.len(), RuleSet::builtin().len() + 1);
        assert!(RuleSet::compile(&[], false).unwrap().is_empty());
    }
}
