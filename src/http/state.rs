//! [`AppState`]: what the handlers share (the log service, the token policy, the
//! named jobs, the server's limits), and the policies whose refusals are answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRef;

use super::auth::{Auth, HasAuth, RunLimiter};
use super::error::ApiError;
use crate::config::{Config, JobConfig, PushSection, ServerConfig};
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
    pub limits: ServerConfig,
    /// Job runs per caller and minute.
    pub runs: RunLimiter,
    /// Permits of long-polls and event streams waiting at once.
    pub waiters: Arc<tokio::sync::Semaphore>,
    /// The push endpoint's limits (`[push]`).
    pub push: PushSection,
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
            push: config.push.clone(),
        }))
    }

    /// A permit to wait (long-poll or stream).
    ///
    /// # Errors
    /// 503 with `Retry-After` when `server.max_waiting_clients` are waiting already.
    pub fn wait_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.waiters.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded {
            message:
                "too many clients are waiting for lines (server.max_waiting_clients); poll without waitMs or retry"
                    .into(),
            retry_after_secs: 2,
        })
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
    pub fn resolve(&self, key: &str) -> Result<ResolvedJob, ApiError> {
        let job = if let Some(cfg) = self.named.get(key) {
            ResolvedJob { job_id: cfg.job_id, name: Some(key.to_owned()), params: cfg.params.clone() }
        } else if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            let job_id = key
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ApiError::BadRequest(format!("job id `{key}` is out of range")))?;
            ResolvedJob { job_id, name: self.name_of(job_id), params: serde_json::Map::new() }
        } else {
            return Err(ApiError::UnknownJobName(key.to_owned()));
        };
        if !self.allowed.is_empty() {
            let id = job.job_id.to_string();
            let ok = self.allowed.iter().any(|a| *a == id || job.name.as_deref() == Some(a.as_str()));
            if !ok {
                return Err(ApiError::Forbidden(format!("job `{key}` is not in auth.allowed_jobs")));
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

impl HasAuth for AppState {
    fn auth(&self) -> &Auth {
        &self.auth
    }
}
