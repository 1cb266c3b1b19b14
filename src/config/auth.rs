//! `[auth]`: API tokens and their scopes, the job allow-list and the run rate.

use std::collections::{BTreeMap, HashSet};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{empty_secret, ConfigError, JobConfig};

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// API tokens; none configured means open reads and job control from loopback only.
    pub tokens: Vec<TokenConfig>,
    /// Job names or ids that may be run; empty allows every job.
    pub allowed_jobs: Vec<String>,
    /// Job runs allowed per caller (token name, or `anonymous`) and minute.
    pub runs_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { tokens: Vec::new(), allowed_jobs: Vec::new(), runs_per_minute: 30 }
    }
}

/// `[[auth.tokens]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (in audit logs; never the token itself).
    pub name: String,
    /// The token, or empty to read it from `token_env`.
    #[serde(default = "empty_secret")]
    pub token: SecretString,
    /// Environment variable holding the token (preferred over the file).
    pub token_env: Option<String>,
    /// `logs:read`, `logs:push`, `jobs:run`, `jobs:control`.
    pub scopes: Vec<Scope>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scope {
    /// Read logs and instance status.
    #[serde(rename = "logs:read")]
    LogsRead,
    /// Run jobs.
    #[serde(rename = "jobs:run")]
    JobsRun,
    /// Stop, cancel and retry instances.
    #[serde(rename = "jobs:control")]
    JobsControl,
    /// Push log lines (`POST /llm/logs/{instanceId}/append`).
    #[serde(rename = "logs:push")]
    LogsPush,
}

impl Scope {
    /// The scope as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Scope::LogsRead => "logs:read",
            Scope::JobsRun => "jobs:run",
            Scope::JobsControl => "jobs:control",
            Scope::LogsPush => "logs:push",
        }
    }
}

impl AuthConfig {
    /// Reads `token_env` variables into the tokens.
    pub(super) fn resolve_tokens(&mut self) -> Result<(), ConfigError> {
        for t in &mut self.tokens {
            if let Some(var) = &t.token_env {
                let value = std::env::var(var).map_err(|_| {
                    ConfigError::invalid(
                        "auth.tokens.token_env",
                        format!("environment variable `{var}` (token `{}`) is not set", t.name),
                    )
                })?;
                t.token = SecretString::from(value);
            }
        }
        Ok(())
    }

    /// Checks the rate, the allow-list against `jobs`, and the tokens (never echoed).
    pub(super) fn validate(&self, jobs: &BTreeMap<String, JobConfig>) -> Result<(), ConfigError> {
        if self.runs_per_minute == 0 {
            return Err(ConfigError::invalid("auth.runs_per_minute", "must be at least 1, got 0"));
        }
        if let Some(allowed) = self.allowed_jobs.iter().find(|a| !jobs.contains_key(*a) && a.parse::<i64>().is_err()) {
            return Err(ConfigError::invalid(
                "auth.allowed_jobs",
                format!("`{allowed}` is neither a job id nor a name under [jobs]"),
            ));
        }
        let mut names = HashSet::new();
        let mut secrets = HashSet::new();
        for t in &self.tokens {
            let problem = if t.name.trim().is_empty() {
                Some(("auth.tokens.name", "every token needs a name".to_owned()))
            } else if !names.insert(t.name.as_str()) {
                Some(("auth.tokens.name", format!("token name `{}` is used twice", t.name)))
            } else if t.token.expose_secret().len() < 16 {
                Some(("auth.tokens.token", format!("token `{}` must be at least 16 characters", t.name)))
            } else if !secrets.insert(t.token.expose_secret()) {
                Some(("auth.tokens.token", format!("token `{}` has the same value as another token", t.name)))
            } else if t.scopes.is_empty() {
                Some(("auth.tokens.scopes", format!("token `{}` has no scope", t.name)))
            } else {
                None
            };
            if let Some((key, problem)) = problem {
                return Err(ConfigError::invalid(key, problem));
            }
        }
        Ok(())
    }
}
