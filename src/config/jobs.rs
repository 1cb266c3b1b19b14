//! `[jobs.<name>]`: named PowerJob jobs, their default params, start-up rules and
//! webhooks (`[jobs.<name>.notify]`).

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::ConfigError;
use crate::logs::rules::{RuleError, RuleSet, RuleSpec};

/// `[jobs.<name>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The PowerJob job id.
    pub job_id: i64,
    /// What the job does (shown by the viewer).
    #[serde(default)]
    pub description: String,
    /// Default instance params; a JSON object in a run request is merged over them.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Whether the built-in start-up rules (vLLM's OpenAI server) follow the job's own.
    #[serde(default = "yes")]
    pub builtin_rules: bool,
    /// The job's own start-up rules (`[[jobs.<name>.startup_rules]]`), tried first.
    #[serde(default)]
    pub startup_rules: Vec<RuleSpec>,
    /// The webhook of its start-up events (`[jobs.<name>.notify]`).
    pub notify: Option<NotifyConfig>,
}

impl JobConfig {
    /// The job's start-up rules, compiled.
    ///
    /// # Errors
    /// The first rule that does not compile or lacks what its kind needs.
    pub fn rules(&self) -> Result<RuleSet, RuleError> {
        RuleSet::compile(&self.startup_rules, self.builtin_rules)
    }
}

fn yes() -> bool {
    true
}

/// `[jobs.<name>.notify]`: a webhook POSTed once per start-up event and attempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where to POST (http or https).
    pub url: Url,
    /// The events delivered (default `ready` and `failed`).
    #[serde(default = "defaults::notify_events")]
    pub events: Vec<NotifyEvent>,
    /// Environment variable holding the HMAC-SHA256 key that signs each body.
    pub secret_env: Option<String>,
    /// The key read from `secret_env` (never in the file).
    #[serde(skip)]
    pub secret: Option<SecretString>,
    /// How long one delivery is retried before it is given up.
    #[serde(default = "defaults::notify_deadline_ms")]
    pub deadline_ms: u64,
}

impl NotifyConfig {
    /// A webhook to `url` with the defaults (events `ready` and `failed`, no secret).
    pub fn to(url: Url) -> Self {
        NotifyConfig {
            url,
            events: defaults::notify_events(),
            secret_env: None,
            secret: None,
            deadline_ms: defaults::notify_deadline_ms(),
        }
    }
}

/// A start-up event a webhook can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The model server is ready.
    Ready,
    /// The start failed (with its most specific cause).
    Failed,
    /// The job ended without ready or failure.
    Exited,
}

impl NotifyEvent {
    /// The event as written in the configuration and the body.
    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::Ready => "ready",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Exited => "exited",
        }
    }
}

mod defaults {
    pub fn notify_events() -> Vec<super::NotifyEvent> {
        vec![super::NotifyEvent::Ready, super::NotifyEvent::Failed]
    }
    pub fn notify_deadline_ms() -> u64 {
        60_000
    }
}

/// Reads each webhook's `secret_env` variable into its `secret`.
pub(super) fn resolve_secrets<'a>(
    jobs: impl Iterator<Item = (&'a String, &'a mut JobConfig)>,
) -> Result<(), ConfigError> {
    for (name, job) in jobs {
        let Some(notify) = &mut job.notify else { continue };
        if let Some(var) = &notify.secret_env {
            let value = std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| ConfigError::InvalidKey {
                key: format!("jobs.{name}.notify.secret_env"),
                problem: format!("names the environment variable `{var}`, which is not set"),
            })?;
            notify.secret = Some(SecretString::from(value));
        }
    }
    Ok(())
}

/// Checks one `[jobs.<name>]`: its name, id, webhook and start-up rules.
pub(super) fn validate(name: &str, job: &JobConfig) -> Result<(), ConfigError> {
    if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            "jobs",
            format!("job name `{name}` must not be empty or all digits (those are job ids)"),
        ));
    }
    if job.job_id <= 0 {
        return Err(ConfigError::invalid(
            "jobs.<name>.job_id",
            format!("job `{name}`: job_id must be positive, got {}", job.job_id),
        ));
    }
    if let Some(n) = &job.notify {
        let bad = |field: &str, problem: String| {
            Err(ConfigError::InvalidKey { key: format!("jobs.{name}.notify.{field}"), problem })
        };
        if !matches!(n.url.scheme(), "http" | "https") || n.url.host_str().is_none() {
            return bad("url", "must be an http or https URL".into());
        }
        if n.events.is_empty() {
            return bad("events", "must name at least one of \"ready\", \"failed\", \"exited\"".into());
        }
        if !(1_000..=86_400_000).contains(&n.deadline_ms) {
            return bad("deadline_ms", format!("must be between 1000 and 86400000, got {}", n.deadline_ms));
        }
    }
    job.rules().map(|_| ()).map_err(|e| ConfigError::InvalidKey {
        key: format!("jobs.{name}.startup_rules[{}].{}", e.index, e.field),
        problem: e.problem,
    })
}
