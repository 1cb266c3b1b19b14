//! Typed configuration: `config.toml` (or `--config FILE`), then environment variables
//! `POWERTAIL_<SECTION>__<KEY>` over single keys, then validation with messages that
//! name the offending key. Secrets are [`SecretString`]s: never in `Debug`, logs or errors.
//!
//! One file per section: [`server`] (`[server]`), [`powerjob`] (`[powerjob]`),
//! [`logs`] (`[logs]`), [`jobs`] (`[jobs.<name>]`, webhooks, start-up rules),
//! [`auth`] (`[auth]`), [`cluster`] (`[cluster]`), [`push`] (`[push]`), [`archive`]
//! (`[archive]`); [`error`] turns every problem into
//! one line that names the key, the value and what is allowed.

mod archive;
mod auth;
mod cluster;
mod error;
mod jobs;
mod logs;
mod powerjob;
mod push;
mod server;
mod startup;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use url::Url;

pub use archive::{redact as redact_url, ArchiveConfig, ArchiveKind};
pub use auth::{AuthConfig, Scope, TokenConfig};
pub use cluster::ClusterConfig;
pub use error::ConfigError;
pub use jobs::{JobConfig, NotifyConfig, NotifyEvent};
pub use logs::LogsConfig;
pub use powerjob::PowerJobConfig;
pub use push::PushSection;
pub use server::{parse_listen, LogFormat, ServerConfig};
pub use startup::{StartupConfig, FAILURE_SETTLE_MS};

use crate::logs::Timing;

/// Prefix of the environment variables that override single keys.
pub const ENV_PREFIX: &str = "POWERTAIL_";

/// The file read when no `--config` is given, in the working directory.
pub const DEFAULT_FILE: &str = "config.toml";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The PowerJob cluster.
    pub powerjob: PowerJobConfig,
    /// Log following and caching.
    #[serde(default)]
    pub logs: LogsConfig,
    /// Named jobs (`[jobs.<name>]`): a PowerJob job id and default params.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    /// API tokens and the job allow-list.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Replicas sharing a line log on Redis; absent = one process, all in memory.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Start-up tracking (`[startup]`).
    #[serde(default)]
    pub startup: StartupConfig,
    /// Lines pushed by the processor (`[push]`, issue 19).
    #[serde(default)]
    pub push: PushSection,
    /// The archive of complete logs (`[archive]`); off when absent.
    #[serde(default)]
    pub archive: ArchiveConfig,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

/// Accepts a TOML list or, from the environment, one string with comma-separated URLs.
/// A URL that does not parse is echoed only when it holds no user or password.
fn urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let raw = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        OneOrMany::Many(v) => v,
    };
    raw.iter()
        .map(|s| {
            Url::parse(s).map_err(|e| {
                let shown = if s.contains('@') { "(a URL with a user or password, not shown)" } else { s };
                serde::de::Error::custom(format!("`{shown}` is not a URL: {e}"))
            })
        })
        .collect()
}

/// `key` must lie in `range`: the message says the range and the value.
fn in_range(key: &'static str, value: u64, range: RangeInclusive<u64>) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    let problem = if *range.start() == 0 {
        format!("must be at most {}, got {value}", range.end())
    } else {
        format!("must be between {} and {}, got {value}", range.start(), range.end())
    };
    Err(ConfigError::invalid(key, problem))
}

/// `key` must be at least `least` (`unit` says it in other words, e.g. " (1 MiB)").
fn at_least(key: &'static str, value: u64, least: u64, unit: &str) -> Result<(), ConfigError> {
    if value >= least {
        return Ok(());
    }
    Err(ConfigError::invalid(key, format!("must be at least {least}{unit}, got {value}")))
}

impl Config {
    /// Loads `path` (which must exist), then the environment overrides, and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::FileMissing(path.to_owned()));
        }
        Self::from_figment(Figment::from(Toml::file_exact(path)))
    }

    /// Loads the `--config` file when one is given, else [`DEFAULT_FILE`] from the
    /// working directory: its absence is [`ConfigError::NoFile`], which says what to do.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load_given(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Self::load(path),
            None if !Path::new(DEFAULT_FILE).exists() => Err(ConfigError::NoFile {
                dir: std::env::current_dir().map_or_else(|_| ".".to_owned(), |d| d.display().to_string()),
            }),
            None => Self::load(Path::new(DEFAULT_FILE)),
        }
    }

    /// Loads from TOML text, then the environment overrides (for tests and the demo).
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    /// The demo's configuration: `user` (the `--config` file, if given), then the
    /// environment overrides, then `own` (the keys the demo sets itself) over both.
    /// Tables merge key by key, so the user's `[jobs.<name>.notify]` survives under
    /// the demo's `[jobs.<name>]`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load_under(user: Option<&Path>, own: &str) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = user {
            if !path.exists() {
                return Err(ConfigError::FileMissing(path.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::finish(figment.merge(Self::env()).merge(Toml::string(own)))
    }

    /// Only `<SECTION>__<KEY>` names: other POWERTAIL_* variables are not configuration.
    fn env() -> Env {
        Env::prefixed(ENV_PREFIX).filter(|k| k.as_str().contains("__")).split("__")
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        Self::finish(figment.merge(Self::env()))
    }

    fn finish(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        jobs::resolve_secrets(config.jobs.iter_mut())?;
        config.auth.resolve_tokens()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.powerjob.validate()?;
        self.server.validate()?;
        self.logs.validate()?;
        if let Some(c) = &self.cluster {
            c.validate(self.logs.refresh_interval_ms)?;
        }
        self.startup.validate()?;
        self.push.validate()?;
        self.archive.validate(self.cluster.is_some())?;
        for (name, job) in &self.jobs {
            jobs::validate(name, job)?;
        }
        self.auth.validate(&self.jobs)
    }

    /// The server timing the follower relies on.
    pub fn timing(&self) -> Timing {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Timing {
            worker_flush_ms: ms(self.powerjob.worker_flush_ms),
            log_cache_ms: ms(self.powerjob.log_cache_ms),
            first_read_delay_ms: ms(self.logs.first_read_delay_ms),
            clock_skew_ms: ms(self.powerjob.clock_skew_ms),
            sync_delay_ms: ms(self.powerjob.sync_delay_ms),
            max_lines: self.logs.max_lines_per_instance,
        }
    }

    /// The per-request timeout towards PowerJob.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.powerjob.request_timeout_ms)
    }

    /// The minimum time between two upstream refreshes of one instance.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.logs.refresh_interval_ms)
    }
}

#[cfg(test)]
mod tests;
