//! Typed configuration: `config.toml` (or `--config FILE`), then environment variables
//! `POWERTAIL_<SECTION>__<KEY>` over single keys, then validation with messages that
//! name the offending key. Secrets are [`SecretString`]s: never in `Debug`, logs or errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use crate::logs::rules::{RuleSet, RuleSpec};
use crate::logs::Timing;

/// Prefix of the environment variables that override single keys.
mod cluster;
pub mod startup;
pub use cluster::ClusterConfig;
pub use startup::StartupConfig;

pub const ENV_PREFIX: &str = "POWERTAIL_";

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
    /// Start-up tracking.
    #[serde(default)]
    pub startup: StartupConfig,
}

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
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
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
    #[serde(default)]
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

impl JobConfig {
    /// The job's start-up rules, compiled.
    ///
    /// # Errors
    /// The first rule that does not compile or lacks what its kind needs.
    pub fn rules(&self) -> Result<RuleSet, crate::logs::rules::RuleError> {
        RuleSet::compile(&self.startup_rules, self.builtin_rules)
    }
}

fn yes() -> bool {
    true
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// API tokens; none configured means open reads and job control from loopback only.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Job names or ids that may be run; empty allows every job.
    #[serde(default)]
    pub allowed_jobs: Vec<String>,
    /// Job runs allowed per caller (token name, or `anonymous`) and minute.
    #[serde(default = "defaults::runs_per_minute")]
    pub runs_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { tokens: Vec::new(), allowed_jobs: Vec::new(), runs_per_minute: defaults::runs_per_minute() }
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
    #[serde(default)]
    pub token_env: Option<String>,
    /// `logs:read`, `jobs:run`, `jobs:control`.
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
}

impl Scope {
    /// The scope as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Scope::LogsRead => "logs:read",
            Scope::JobsRun => "jobs:run",
            Scope::JobsControl => "jobs:control",
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Browser origins allowed to call the API from another site (CORS); none by default.
    pub cors_allowed_origins: Vec<String>,
    /// Requests served at once; more are refused with 503 and `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Long-polls and event streams waiting at once; more are refused the same way.
    pub max_waiting_clients: usize,
    /// `/readyz` is ready without a probe when PowerJob answered this recently.
    pub ready_window_ms: u64,
    /// How powertail's own log lines (on stderr) are written.
    pub log_format: LogFormat,
    /// Which of powertail's own log lines are written: an `EnvFilter` directive such as
    /// `info` or `warn,powertail=debug`. `RUST_LOG`, when set, wins.
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cors_allowed_origins: Vec::new(),
            max_concurrent_requests: 2_048,
            max_waiting_clients: 1_024,
            ready_window_ms: 30_000,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
        }
    }
}

/// `server.log_format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    Text,
    /// One JSON object per line with `timestamp`, `level`, `target`, `message` and the
    /// event's fields at the top level, for log shippers.
    Json,
}

/// `[powerjob]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerJobConfig {
    /// Servers tried in order; the first that answers serves the request.
    #[serde(deserialize_with = "urls")]
    pub addresses: Vec<Url>,
    /// OpenAPI app name.
    pub app_name: String,
    /// OpenAPI app password.
    pub app_password: SecretString,
    /// 5.x console user for `/instance/log` (empty on 4.x).
    #[serde(default = "empty_string")]
    pub console_username: String,
    /// 5.x console password.
    #[serde(default = "empty_secret")]
    pub console_password: SecretString,
    /// Per-request timeout; above the server's 5 s file preparation + 5 s forwarding.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The server's log file cache time (`LOG_CACHE_TIME`).
    #[serde(default = "defaults::log_cache_ms")]
    pub log_cache_ms: u64,
    /// How often workers ship their log lines.
    #[serde(default = "defaults::worker_flush_ms")]
    pub worker_flush_ms: u64,
    /// Allowance for clock differences between powertail, the server and workers.
    #[serde(default = "defaults::clock_skew_ms")]
    pub clock_skew_ms: u64,
    /// Delay between an instance finishing and the server's log sync (60 s in PowerJob):
    /// a log that never stops growing completes a late window after it.
    #[serde(default = "defaults::sync_delay_ms")]
    pub sync_delay_ms: u64,
    /// Extra CA certificate (PEM file) trusted for `https://` PowerJob addresses.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// `[logs]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// At most one upstream refresh per instance per interval.
    pub refresh_interval_ms: u64,
    /// No upstream log read before an instance ran this long.
    pub first_read_delay_ms: u64,
    /// Bound of the bytes of cached log lines.
    pub cache_max_bytes: u64,
    /// A followed instance nobody read for this long is dropped (complete logs stay).
    pub idle_evict_ms: u64,
    /// Growing logs followed at most at once (complete logs are bounded by size instead).
    pub max_followed_instances: usize,
    /// Most lines held for one instance; past it the log is cut (`truncated` in answers).
    pub max_lines_per_instance: usize,
    /// Bound of the bytes held by growing logs; past it new instances get 503.
    pub max_following_bytes: u64,
    /// A complete log that is read is re-checked (one status call) this often, so that a
    /// retry from the console or PowerJob's retry policy is seen.
    pub recheck_complete_ms: u64,
    /// How long a read of a held log waits for the refresh in flight before it answers
    /// from what is held (`stale: true` when the refresh is overdue).
    pub read_wait_ms: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            refresh_interval_ms: 1_000,
            first_read_delay_ms: 8_000,
            cache_max_bytes: 256 << 20,
            idle_evict_ms: 600_000,
            max_followed_instances: 5_000,
            max_lines_per_instance: 200_000,
            max_following_bytes: 256 << 20,
            recheck_complete_ms: 15_000,
            read_wait_ms: 1_000,
        }
    }
}

mod defaults {
    pub fn request_timeout_ms() -> u64 {
        15_000
    }
    pub fn log_cache_ms() -> u64 {
        10_000
    }
    pub fn worker_flush_ms() -> u64 {
        5_000
    }
    pub fn clock_skew_ms() -> u64 {
        1_000
    }
    pub fn sync_delay_ms() -> u64 {
        60_000
    }
    pub fn runs_per_minute() -> u32 {
        30
    }
    pub fn notify_events() -> Vec<super::NotifyEvent> {
        vec![super::NotifyEvent::Ready, super::NotifyEvent::Failed]
    }
    pub fn notify_deadline_ms() -> u64 {
        60_000
    }
}

fn empty_string() -> String {
    String::new()
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

/// Accepts a TOML list or, from the environment, one string with comma-separated URLs.
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
        .map(|s| Url::parse(s).map_err(|e| serde::de::Error::custom(format!("`{s}` is not a URL: {e}"))))
        .collect()
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong type.
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of its range.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid {
        /// `section.key`
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A value of a key whose name is built (`jobs.<name>.startup_rules[0].pattern`).
    #[error("invalid configuration: `{key}` {problem}")]
    InvalidKey {
        /// The full key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Config {
    /// Loads `path` (which must exist), then the environment overrides, and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Invalid {
                key: "--config",
                problem: format!("file {} does not exist", path.display()),
            });
        }
        Self::from_figment(Figment::from(Toml::file(path)))
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
                return Err(ConfigError::Invalid {
                    key: "--config",
                    problem: format!("file {} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
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
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.resolve_tokens()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `token_env` variables into the tokens, and `secret_env` into the webhooks.
    fn resolve_tokens(&mut self) -> Result<(), ConfigError> {
        for (name, job) in &mut self.jobs {
            let Some(notify) = &mut job.notify else { continue };
            if let Some(var) = &notify.secret_env {
                let value =
                    std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| ConfigError::InvalidKey {
                        key: format!("jobs.{name}.notify.secret_env"),
                        problem: format!("names the environment variable `{var}`, which is not set"),
                    })?;
                notify.secret = Some(SecretString::from(value));
            }
        }
        for t in &mut self.auth.tokens {
            if let Some(var) = &t.token_env {
                let value = std::env::var(var).map_err(|_| ConfigError::Invalid {
                    key: "auth.tokens.token_env",
                    problem: format!("environment variable `{var}` (token `{}`) is not set", t.name),
                })?;
                t.token = SecretString::from(value);
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| Err(ConfigError::Invalid { key, problem: problem.to_owned() });
        let p = &self.powerjob;
        if p.addresses.is_empty() {
            return invalid("powerjob.addresses", "must list at least one server");
        }
        if let Some(u) = p.addresses.iter().find(|u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::Invalid {
                key: "powerjob.addresses",
                problem: format!("`{u}` must be an http:// or https:// URL"),
            });
        }
        if p.addresses.iter().any(|u| !u.username().is_empty() || u.password().is_some()) {
            // Not echoed: the URL holds a password.
            return invalid(
                "powerjob.addresses",
                "must not hold a user or password (the app password goes in powerjob.app_password)",
            );
        }
        if p.app_name.trim().is_empty() {
            return invalid("powerjob.app_name", "must not be empty");
        }
        if !(100..=600_000).contains(&p.request_timeout_ms) {
            return invalid("powerjob.request_timeout_ms", "must be between 100 and 600000");
        }
        if p.log_cache_ms > 3_600_000 || p.worker_flush_ms > 3_600_000 || p.clock_skew_ms > 3_600_000 {
            return invalid("powerjob.log_cache_ms/worker_flush_ms/clock_skew_ms", "must be at most 3600000");
        }
        if p.sync_delay_ms > 86_400_000 {
            return invalid("powerjob.sync_delay_ms", "must be at most 86400000");
        }
        if let Some(ca) = &p.ca_file {
            let pem = std::fs::read(ca).map_err(|e| ConfigError::Invalid {
                key: "powerjob.ca_file",
                problem: format!("cannot read {}: {e}", ca.display()),
            })?;
            if reqwest::Certificate::from_pem(&pem).is_err() {
                return invalid("powerjob.ca_file", "is not a PEM certificate");
            }
        }
        let srv = &self.server;
        if srv.max_concurrent_requests == 0 || srv.max_waiting_clients == 0 {
            return invalid("server.max_concurrent_requests/max_waiting_clients", "must be at least 1");
        }
        if tracing_subscriber::EnvFilter::try_new(&srv.log_level).is_err() {
            return Err(ConfigError::Invalid {
                key: "server.log_level",
                problem: format!(
                    "`{}` is not a level or filter such as `info` or `warn,powertail=debug`",
                    srv.log_level
                ),
            });
        }
        if let Some(o) = srv.cors_allowed_origins.iter().find(|o| Url::parse(o).is_err() || o.ends_with('/')) {
            return Err(ConfigError::Invalid {
                key: "server.cors_allowed_origins",
                problem: format!("`{o}` is not an origin like https://platform.example.com"),
            });
        }
        if self.auth.runs_per_minute == 0 {
            return invalid("auth.runs_per_minute", "must be at least 1");
        }
        let l = &self.logs;
        if !(10..=600_000).contains(&l.refresh_interval_ms) {
            return invalid("logs.refresh_interval_ms", "must be between 10 and 600000");
        }
        if l.max_followed_instances == 0 {
            return invalid("logs.max_followed_instances", "must be at least 1");
        }
        if !(100..=86_400_000).contains(&l.idle_evict_ms) {
            return invalid("logs.idle_evict_ms", "must be between 100 and 86400000");
        }
        if l.first_read_delay_ms > 3_600_000 {
            return invalid("logs.first_read_delay_ms", "must be at most 3600000");
        }
        if l.cache_max_bytes < 1 << 20 {
            return invalid("logs.cache_max_bytes", "must be at least 1048576 (1 MiB)");
        }
        if !(100..=50_000_000).contains(&l.max_lines_per_instance) {
            return invalid("logs.max_lines_per_instance", "must be between 100 and 50000000");
        }
        if l.max_following_bytes < 1 << 20 {
            return invalid("logs.max_following_bytes", "must be at least 1048576 (1 MiB)");
        }
        if !(100..=86_400_000).contains(&l.recheck_complete_ms) {
            return invalid("logs.recheck_complete_ms", "must be between 100 and 86400000");
        }
        if !(10..=20_000).contains(&l.read_wait_ms) {
            return invalid("logs.read_wait_ms", "must be between 10 and 20000");
        }
        if let Some(c) = &self.cluster {
            c.validate(l.refresh_interval_ms)?;
        }
        self.startup.validate()?;
        self.validate_jobs_and_tokens()
    }

    fn validate_jobs_and_tokens(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        for (name, job) in &self.jobs {
            if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
                return invalid(
                    "jobs",
                    format!("job name `{name}` must not be empty or all digits (those are job ids)"),
                );
            }
            if job.job_id <= 0 {
                return invalid("jobs.<name>.job_id", format!("job `{name}`: job_id must be positive"));
            }
            if let Some(n) = &job.notify {
                let bad = |field: &str, problem: &str| {
                    Err(ConfigError::InvalidKey { key: format!("jobs.{name}.notify.{field}"), problem: problem.into() })
                };
                if !matches!(n.url.scheme(), "http" | "https") || n.url.host_str().is_none() {
                    return bad("url", "must be an http or https URL");
                }
                if n.events.is_empty() {
                    return bad("events", "must name at least one of \"ready\", \"failed\", \"exited\"");
                }
                if !(1_000..=86_400_000).contains(&n.deadline_ms) {
                    return bad("deadline_ms", "must be between 1000 and 86400000");
                }
            }
            if let Err(e) = job.rules() {
                return Err(ConfigError::InvalidKey {
                    key: format!("jobs.{name}.startup_rules[{}].{}", e.index, e.field),
                    problem: e.problem,
                });
            }
        }
        for allowed in &self.auth.allowed_jobs {
            if !self.jobs.contains_key(allowed) && allowed.parse::<i64>().is_err() {
                return invalid(
                    "auth.allowed_jobs",
                    format!("`{allowed}` is neither a job id nor a name under [jobs]"),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for t in &self.auth.tokens {
            if t.name.trim().is_empty() {
                return invalid("auth.tokens.name", "every token needs a name".into());
            }
            if !names.insert(t.name.as_str()) {
                return invalid("auth.tokens.name", format!("token name `{}` is used twice", t.name));
            }
            if t.token.expose_secret().len() < 16 {
                return invalid("auth.tokens.token", format!("token `{}` must be at least 16 characters", t.name));
            }
            if !secrets.insert(t.token.expose_secret()) {
                return invalid("auth.tokens.token", format!("token `{}` has the same value as another token", t.name));
            }
            if t.scopes.is_empty() {
                return invalid("auth.tokens.scopes", format!("token `{}` has no scope", t.name));
            }
        }
        Ok(())
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
#[expect(clippy::result_large_err, reason = "figment::Jail's closure signature is fixed")]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const MIN: &str = r#"
        [powerjob]
        addresses = ["http://127.0.0.1:7700"]
        app_name = "app"
        app_password = "hunter2"
    "#;

    #[test]
    fn example_config_loads() {
        jailed(|| {
            let c = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))).unwrap();
            assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.logs.first_read_delay_ms, 8_000);
        });
    }

    /// Runs `f` under figment's global environment lock, so that the environment test
    /// cannot leak its variables into the others.
    fn jailed(f: impl FnOnce()) {
        figment::Jail::expect_with(|_| {
            f();
            Ok(())
        });
    }

    #[test]
    fn defaults_fill_missing_keys_and_secrets_stay_hidden() {
        jailed(|| {
            let c = Config::from_toml(MIN).unwrap();
            assert_eq!(c.powerjob.request_timeout_ms, 15_000);
            assert_eq!(c.logs.refresh_interval_ms, 1_000);
            assert_eq!(c.powerjob.app_password.expose_secret(), "hunter2");
            assert!(!format!("{c:?}").contains("hunter2"));
        });
    }

    #[test]
    fn errors_name_the_key() {
        jailed(|| {
            let bad = MIN.replace("[powerjob]", "[logs]\nrefresh_interval_ms = 1\n[powerjob]");
            let e = Config::from_toml(&bad).unwrap_err().to_string();
            assert!(e.contains("logs.refresh_interval_ms"), "{e}");
            let e = Config::from_toml(&MIN.replace("http://127.0.0.1:7700", "ftp://x")).unwrap_err().to_string();
            assert!(e.contains("powerjob.addresses"), "{e}");
            let with_password = MIN.replace("http://127.0.0.1:7700", "http://admin:s3cr3t@127.0.0.1:7700");
            let e = Config::from_toml(&with_password).unwrap_err().to_string();
            assert!(e.contains("powerjob.addresses") && !e.contains("s3cr3t"), "{e}");
            let e = Config::from_toml(&format!("{MIN}\nrefresh_intervall_ms = 3")).unwrap_err().to_string();
            assert!(e.contains("refresh_intervall_ms"), "{e}");
            let e = Config::from_toml(&MIN.replace("app_password = \"hunter2\"", "app_password = 3"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("app_password") && !e.contains("hunter2"), "{e}");
        });
    }

    #[test]
    fn startup_rules_are_read_and_bad_ones_name_their_key() {
        jailed(|| {
            let job = |rules: &str| format!("{MIN}\n[jobs.vllm]\njob_id = 12\n{rules}");
            let c = Config::from_toml(&job("builtin_rules = false\n[[jobs.vllm.startup_rules]]\nkind = \"ready\"\npattern = \"READY\"\n[[jobs.vllm.startup_rules]]\nkind = \"failed\"\ncause = \"disk_full\"\npattern = \"No space left\"\npriority = 80\n")).unwrap();
            let rules = c.jobs["vllm"].rules().unwrap();
            assert_eq!(rules.len(), 2);
            assert_eq!(&*rules.first_match("OSError: No space left on device").unwrap().cause, "disk_full");
            assert!(c.jobs["vllm"].rules().is_ok());
            let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"ready\"\npattern = \"(unclosed\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("`jobs.vllm.startup_rules[0].pattern` does not compile"), "{e}");
            let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"ready\"\npattern = \"x\"\n[[jobs.vllm.startup_rules]]\nkind = \"progress\"\npattern = \"(?P<done>\\\\d+) of\"\n")).unwrap_err().to_string();
            assert!(e.contains("`jobs.vllm.startup_rules[1].pattern` needs the named capture groups"), "{e}");
            let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"failed\"\npattern = \"x\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("`jobs.vllm.startup_rules[0].cause` is required"), "{e}");
            let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"done\"\npattern = \"x\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("startup_rules") && e.contains("kind"), "{e}");
        });
    }

    #[test]
    fn log_format_and_level_are_read_and_checked() {
        figment::Jail::expect_with(|jail| {
            let c = Config::from_toml(MIN).unwrap();
            assert_eq!((c.server.log_format, c.server.log_level.as_str()), (LogFormat::Text, "info"));
            let json = Config::from_toml(&format!(
                "[server]\nlog_format = \"json\"\nlog_level = \"warn,powertail=debug\"\n{MIN}"
            ));
            let json = json.unwrap();
            assert_eq!(
                (json.server.log_format, json.server.log_level.as_str()),
                (LogFormat::Json, "warn,powertail=debug")
            );
            let e = Config::from_toml(&format!("[server]\nlog_format = \"xml\"\n{MIN}")).unwrap_err().to_string();
            assert!(e.contains("log_format"), "{e}");
            let e =
                Config::from_toml(&format!("[server]\nlog_level = \"powertail=loud\"\n{MIN}")).unwrap_err().to_string();
            assert!(e.contains("server.log_level"), "{e}");
            jail.set_env("POWERTAIL_SERVER__LOG_FORMAT", "json");
            assert_eq!(Config::from_toml(MIN).unwrap().server.log_format, LogFormat::Json);
            Ok(())
        });
    }

    #[test]
    fn a_webhook_is_read_with_its_defaults_and_its_secret_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            let job = |notify: &str| format!("{MIN}\n[jobs.vllm]\njob_id = 12\n[jobs.vllm.notify]\n{notify}");
            let c = Config::from_toml(&job("url = \"http://127.0.0.1:9/hook\"")).unwrap();
            let n = c.jobs["vllm"].notify.as_ref().unwrap();
            assert_eq!(
                (n.events.as_slice(), n.deadline_ms),
                ([NotifyEvent::Ready, NotifyEvent::Failed].as_slice(), 60_000)
            );
            assert!(n.secret.is_none());
            let signed = job("url = \"https://platform/hook\"\nevents = [\"exited\"]\nsecret_env = \"HOOK_KEY\"");
            let e = Config::from_toml(&signed).unwrap_err().to_string();
            assert!(e.contains("`jobs.vllm.notify.secret_env`") && e.contains("HOOK_KEY"), "{e}");
            jail.set_env("HOOK_KEY", "k3y-value");
            let c = Config::from_toml(&signed).unwrap();
            let n = c.jobs["vllm"].notify.as_ref().unwrap();
            assert_eq!(n.secret.as_ref().unwrap().expose_secret(), "k3y-value");
            assert_eq!(n.events, [NotifyEvent::Exited]);
            assert!(!format!("{c:?}").contains("k3y-value"));
            let e = Config::from_toml(&job("url = \"ftp://x/\"")).unwrap_err().to_string();
            assert!(e.contains("`jobs.vllm.notify.url`"), "{e}");
            let e = Config::from_toml(&job("url = \"http://x/\"\nevents = []")).unwrap_err().to_string();
            assert!(e.contains("`jobs.vllm.notify.events`"), "{e}");
            let e = Config::from_toml(&job("url = \"http://x/\"\nevents = [\"loading\"]")).unwrap_err().to_string();
            assert!(e.contains("events") || e.contains("loading"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_demo_sets_its_own_keys_over_the_users_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "user.toml",
                &format!("{MIN}\n[logs]\nread_wait_ms = 900\n[jobs.vllm]\njob_id = 99\n[jobs.vllm.notify]\nurl = \"http://127.0.0.1:9/hook\"\n"),
            )?;
            jail.set_env("POWERTAIL_LOGS__REFRESH_INTERVAL_MS", "250");
            jail.set_env("POWERTAIL_LOGS__IDLE_EVICT_MS", "5000");
            let own = MIN.replace("7700", "7800") + "[logs]\nrefresh_interval_ms = 40\n[jobs.vllm]\njob_id = 12\n";
            let c = Config::load_under(Some(Path::new("user.toml")), &own).unwrap();
            assert_eq!(c.powerjob.addresses[0].port(), Some(7800));
            assert_eq!((c.logs.refresh_interval_ms, c.logs.read_wait_ms, c.logs.idle_evict_ms), (40, 900, 5000));
            assert_eq!(c.jobs["vllm"].job_id, 12);
            assert_eq!(c.jobs["vllm"].notify.as_ref().unwrap().url.as_str(), "http://127.0.0.1:9/hook");
            let e = Config::load_under(Some(Path::new("missing.toml")), &own).unwrap_err().to_string();
            assert!(e.contains("--config"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_single_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("POWERTAIL_POWERJOB__ADDRESSES", "http://a:1, http://b:2");
            jail.set_env("POWERTAIL_LOGS__REFRESH_INTERVAL_MS", "250");
            jail.set_env("POWERTAIL_SOMETHING_ELSE", "1"); // not configuration: ignored
            let c = Config::from_toml(MIN).unwrap();
            let hosts: Vec<_> = c.powerjob.addresses.iter().map(|u| u.host_str().unwrap().to_owned()).collect();
            assert_eq!(hosts, ["a", "b"]);
            assert_eq!(c.logs.refresh_interval_ms, 250);
            Ok(())
        });
    }
}
