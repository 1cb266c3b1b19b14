//! `AppState`: what the handlers share, and the API-token policy.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::{Config, JobConfig, Scope};
use crate::service::LogService;

/// Shared state of every handler: one `Arc`, so the per-request clone is one atomic
/// increment (fields through `Deref`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
pub struct Shared {
    /// Log following.
    pub logs: LogService,
    /// Token policy.
    pub auth: Auth,
    /// Named jobs and the allow-list.
    pub jobs: Jobs,
    /// Server limits (copied from `[server]`).
    pub limits: crate::config::ServerConfig,
    /// Job runs per caller and minute.
    pub runs: RunLimiter,
    /// Permits of long-polls and event streams waiting at once.
    pub waiters: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for LogService {
    fn from_ref(s: &AppState) -> Self {
        s.logs.clone()
    }
}

impl AppState {
    /// State for `config`, serving on `listen`.
    pub fn new(config: &Config, logs: LogService, listen: SocketAddr) -> Self {
        AppState(Arc::new(Shared {
            logs,
            auth: Auth::new(config, listen),
            jobs: Jobs { named: config.jobs.clone(), allowed: config.auth.allowed_jobs.clone() },
            limits: config.server.clone(),
            runs: RunLimiter::new(config.auth.runs_per_minute),
            waiters: Arc::new(tokio::sync::Semaphore::new(config.server.max_waiting_clients)),
        }))
    }
}

/// Who made a request (for audit logs): a token's name, or `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Cow<'static, str>);

/// The API-token policy.
pub struct Auth {
    tokens: Vec<(String, SecretString, Vec<Scope>)>,
    loopback: bool,
}

impl Auth {
    fn new(config: &Config, listen: SocketAddr) -> Self {
        Auth {
            tokens: config.auth.tokens.iter().map(|t| (t.name.clone(), t.token.clone(), t.scopes.clone())).collect(),
            loopback: listen.ip().is_loopback(),
        }
    }

    /// Checks the request's `Authorization: Bearer` token for `scope`.
    ///
    /// Without configured tokens reads are open and job control is allowed only when the
    /// listener is loopback. Tokens are compared in constant time, all of them, always.
    ///
    /// # Errors
    /// 401 without a valid token, 403 when it lacks the scope (or no tokens and not loopback).
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller, AppError> {
        self.check_value(headers.get(axum::http::header::AUTHORIZATION), scope)
    }

    /// [`Auth::check`] with just the `Authorization` header's value.
    ///
    /// # Errors
    /// As [`Auth::check`].
    pub fn check_value(
        &self,
        authorization: Option<&axum::http::HeaderValue>,
        scope: Scope,
    ) -> Result<Caller, AppError> {
        if self.tokens.is_empty() {
            if scope == Scope::LogsRead || self.loopback {
                return Ok(Caller(Cow::Borrowed("anonymous")));
            }
            return Err(AppError::Forbidden(
                "running or controlling jobs on a non-loopback listener needs [[auth.tokens]] in the configuration"
                    .into(),
            ));
        }
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(AppError::Unauthorized)?;
        let mut found: Option<&(String, SecretString, Vec<Scope>)> = None;
        for t in &self.tokens {
            if bool::from(t.1.expose_secret().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(t);
            }
        }
        let (name, _, scopes) = found.ok_or(AppError::Unauthorized)?;
        if scopes.contains(&scope) {
            Ok(Caller(Cow::Owned(name.clone())))
        } else {
            Err(AppError::Forbidden(format!("token `{name}` lacks the scope `{}`", scope.name())))
        }
    }
}

/// Named jobs and the allow-list.
pub struct Jobs {
    named: BTreeMap<String, JobConfig>,
    allowed: Vec<String>,
}

/// A job resolved from a path segment.
#[derive(Debug, Clone)]
pub struct ResolvedJob {
    /// PowerJob job id.
    pub job_id: i64,
    /// The configured name, if it was one.
    pub name: Option<String>,
    /// Default params of a named job.
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl Jobs {
    /// Resolves a job id or configured name, enforcing the allow-list.
    ///
    /// # Errors
    /// 404 for an unknown name, 400 for a malformed id, 403 when not allowed.
    pub fn resolve(&self, key: &str) -> Result<ResolvedJob, AppError> {
        let job = if let Some(cfg) = self.named.get(key) {
            ResolvedJob { job_id: cfg.job_id, name: Some(key.to_owned()), params: cfg.params.clone() }
        } else if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            let job_id = key
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| AppError::BadRequest(format!("job id `{key}` is out of range")))?;
            ResolvedJob { job_id, name: self.name_of(job_id), params: serde_json::Map::new() }
        } else {
            return Err(AppError::UnknownJobName(key.to_owned()));
        };
        if !self.allowed.is_empty() {
            let id = job.job_id.to_string();
            let ok = self.allowed.iter().any(|a| *a == id || job.name.as_deref() == Some(a.as_str()));
            if !ok {
                return Err(AppError::Forbidden(format!("job `{key}` is not in auth.allowed_jobs")));
            }
        }
        Ok(job)
    }

    fn name_of(&self, job_id: i64) -> Option<String> {
        self.named.iter().find(|(_, j)| j.job_id == job_id).map(|(n, _)| n.clone())
    }

    /// The configured jobs (name, id, description), for the viewer.
    pub fn list(&self) -> Vec<(String, i64, String)> {
        self.named.iter().map(|(n, j)| (n.clone(), j.job_id, j.description.clone())).collect()
    }
}

impl AppState {
    /// A permit to wait (long-poll or stream).
    ///
    /// # Errors
    /// 503 with `Retry-After` when `server.max_waiting_clients` are waiting already.
    pub fn wait_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
        self.waiters.clone().try_acquire_owned().map_err(|_| AppError::Overloaded {
            message:
                "too many clients are waiting for lines (server.max_waiting_clients); poll without waitMs or retry"
                    .into(),
            retry_after_secs: 2,
        })
    }
}

/// What the app's policies refuse; `http` maps each to its status and JSON error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    BadRequest(String),
    /// API tokens are configured and none or a wrong one was sent.
    #[error("a valid API token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The token lacks the right, or the job is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A job key that is neither a configured name nor a numeric id.
    #[error("no job named `{0}` is configured (use a numeric PowerJob job id or a [jobs.<name>] entry)")]
    UnknownJobName(String),
    /// A limit of this server was hit; try again after `retry_after_secs`.
    #[error("{message}")]
    Overloaded {
        /// What limit.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The caller ran too many jobs in the last minute.
    #[error("{message}")]
    RateLimited {
        /// What limit.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// Fixed one-minute windows of job runs per caller.
pub struct RunLimiter {
    per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl RunLimiter {
    fn new(per_minute: u32) -> Self {
        RunLimiter { per_minute, windows: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    /// Counts a run by `caller`.
    ///
    /// # Errors
    /// 429 with the seconds until the caller's window ends.
    pub fn check(&self, caller: &Caller) -> Result<(), AppError> {
        const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
        let now = std::time::Instant::now();
        let mut windows = self.windows.lock().expect("run limiter poisoned");
        windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        let (start, count) = windows.entry(caller.0.to_string()).or_insert((now, 0));
        if *count >= self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(*start));
            // Rounded up: a client that waits exactly this long is not refused again.
            let wait = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let wait = wait.max(1);
            return Err(AppError::RateLimited {
                message: format!(
                    "`{}` ran {} jobs in the last minute (auth.runs_per_minute)",
                    caller.0, self.per_minute
                ),
                retry_after_secs: wait,
            });
        }
        *count += 1;
        Ok(())
    }
}
