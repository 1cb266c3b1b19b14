//! Who may do what: the API-token policy, the [`Authorized`] extractor every handler
//! that needs a scope takes, and the per-caller limit of job runs.

use std::borrow::Cow;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{self, Config};

/// Who made a request (for audit logs): a token's name, or `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Cow<'static, str>);

/// A scope a handler needs, as a type: `Authorized<RunJobs>`.
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope a token must hold.
    const SCOPE: config::Scope;
}

/// `logs:read`: read logs, start-up state and instance status.
pub struct ReadLogs;
/// `jobs:run`: run jobs.
pub struct RunJobs;
/// `jobs:control`: stop, cancel and retry instances.
pub struct ControlJobs;
/// `logs:push`: push log lines.
pub struct PushLogs;

impl RequiredScope for ReadLogs {
    const SCOPE: config::Scope = config::Scope::LogsRead;
}
impl RequiredScope for RunJobs {
    const SCOPE: config::Scope = config::Scope::JobsRun;
}
impl RequiredScope for ControlJobs {
    const SCOPE: config::Scope = config::Scope::JobsControl;
}
impl RequiredScope for PushLogs {
    const SCOPE: config::Scope = config::Scope::LogsPush;
}

/// A request allowed `S` by [`Auth`]; its rejection is the 401 or 403. Reads only the
/// `Authorization` header (no copy of the others). Place it after the path and query
/// extractors, so that malformed input is a 400 whoever asks, and before the body.
pub struct Authorized<S: RequiredScope> {
    /// Who asked.
    pub caller: Caller,
    scope: PhantomData<fn() -> S>,
}

/// A router state that holds the token policy (the app's `AppState`), so that this
/// module needs nothing else of it.
pub trait HasAuth {
    /// The API-token policy.
    fn auth(&self) -> &Auth;
}

impl<S: RequiredScope, St: HasAuth + Send + Sync> FromRequestParts<St> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let caller = state.auth().check(parts.headers.get(header::AUTHORIZATION), S::SCOPE)?;
        Ok(Authorized { caller, scope: PhantomData })
    }
}

/// The API-token policy.
pub struct Auth {
    tokens: Vec<(String, SecretString, Vec<config::Scope>)>,
    loopback: bool,
}

impl Auth {
    /// The tokens of `config`, for a listener on `listen` (loopback or not).
    pub fn new(config: &Config, listen: std::net::SocketAddr) -> Self {
        Auth {
            tokens: config.auth.tokens.iter().map(|t| (t.name.clone(), t.token.clone(), t.scopes.clone())).collect(),
            loopback: listen.ip().is_loopback(),
        }
    }

    /// Whether reads need a token (tokens are configured).
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks an `Authorization: Bearer` header's value for `scope`.
    ///
    /// Without configured tokens reads are open, and pushing lines and job control are
    /// allowed only when the listener is loopback. Tokens are compared in constant time, all of them, always.
    ///
    /// # Errors
    /// 401 without a valid token, 403 when it lacks the scope (or no tokens and not loopback).
    pub fn check(&self, authorization: Option<&HeaderValue>, scope: config::Scope) -> Result<Caller, ApiError> {
        if self.tokens.is_empty() {
            if scope == config::Scope::LogsRead || self.loopback {
                return Ok(Caller(Cow::Borrowed("anonymous")));
            }
            let what = if scope == config::Scope::LogsPush { "pushing lines" } else { "running or controlling jobs" };
            return Err(ApiError::Forbidden(format!(
                "{what} on a non-loopback listener needs [[auth.tokens]] in the configuration"
            )));
        }
        let presented = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let mut found: Option<&(String, SecretString, Vec<config::Scope>)> = None;
        for t in &self.tokens {
            if bool::from(t.1.expose_secret().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(t);
            }
        }
        let (name, _, scopes) = found.ok_or(ApiError::Unauthorized)?;
        if scopes.contains(&scope) {
            Ok(Caller(Cow::Owned(name.clone())))
        } else {
            Err(ApiError::Forbidden(format!("token `{name}` lacks the scope `{}`", scope.name())))
        }
    }
}

/// Fixed one-minute windows of job runs per caller.
pub struct RunLimiter {
    per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl RunLimiter {
    /// At most `per_minute` runs per caller.
    pub fn new(per_minute: u32) -> Self {
        RunLimiter { per_minute, windows: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    /// Counts a run by `caller`.
    ///
    /// # Errors
    /// 429 with the seconds until the caller's window ends.
    pub fn check(&self, caller: &Caller) -> Result<(), ApiError> {
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
            return Err(ApiError::RateLimited {
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

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail's closure signature is fixed")]
mod tests {
    use super::*;

    const POWERJOB: &str = "[powerjob]\naddresses = [\"http://127.0.0.1:9\"]\napp_name = \"a\"\napp_password = \"p\"\n";

    fn auth(tokens: &str, listen: &str) -> Auth {
        let mut config = None;
        // Under figment's environment lock: the configuration's tests set POWERTAIL_ variables.
        figment::Jail::expect_with(|_| {
            config = Some(Config::from_toml(&format!("{POWERJOB}{tokens}")).unwrap());
            Ok(())
        });
        Auth::new(&config.unwrap(), listen.parse().unwrap())
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn tokens_are_checked_for_their_scope() {
        let tokens = "[[auth.tokens]]\nname = \"ci\"\ntoken = \"0123456789abcdef\"\nscopes = [\"logs:read\"]\n";
        let auth = auth(tokens, "0.0.0.0:8080");
        let ci = auth.check(Some(&bearer("0123456789abcdef")), config::Scope::LogsRead).unwrap();
        assert_eq!(ci, Caller(Cow::Borrowed("ci")));
        let refused = |header: Option<&HeaderValue>, scope| auth.check(header, scope).unwrap_err().status().as_u16();
        assert_eq!(refused(None, config::Scope::LogsRead), 401);
        assert_eq!(refused(Some(&bearer("0123456789abcdeX")), config::Scope::LogsRead), 401);
        assert_eq!(refused(Some(&HeaderValue::from_static("0123456789abcdef")), config::Scope::LogsRead), 401);
        let lacks = auth.check(Some(&bearer("0123456789abcdef")), config::Scope::JobsRun).unwrap_err();
        assert_eq!(
            (lacks.status().as_u16(), lacks.to_string().as_str()),
            (403, "token `ci` lacks the scope `jobs:run`")
        );
    }

    #[test]
    fn without_tokens_reads_are_open_and_jobs_run_only_on_loopback() {
        let open = auth("", "0.0.0.0:8080");
        assert!(open.check(None, config::Scope::LogsRead).is_ok());
        assert_eq!(open.check(None, config::Scope::JobsRun).unwrap_err().status().as_u16(), 403);
        let local = auth("", "127.0.0.1:8080");
        assert_eq!(local.check(None, config::Scope::JobsControl).unwrap(), Caller(Cow::Borrowed("anonymous")));
        // Pushing lines likewise.
        let refused = open.check(None, config::Scope::LogsPush).unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.to_string().as_str()),
            (403, "pushing lines on a non-loopback listener needs [[auth.tokens]] in the configuration")
        );
        assert!(local.check(None, config::Scope::LogsPush).is_ok());
    }
}
