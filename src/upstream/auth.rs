//! Authentication: the app (`/openApi/authApp` on 5.1.x with its token headers, or
//! `/openApi/assert` on 4.x, told apart by authApp's 404), the 5.x console login
//! (`/auth/thirdPartyLoginDirect`), readiness probes, and the OpenAPI and console
//! calls that log in again and replay once when a token or JWT is refused.

use std::time::Duration;

use md5::{Digest, Md5};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::transport::{join, Target};
use super::wire::{AppAuth, ConsoleUser, Envelope};
use super::{PowerJobClient, UpstreamError, AUTH_APP, LOG_TARGET};

/// Response header set by 5.1.x's OpenAPI interceptor.
const AUTH_PASSED: &str = "X-POWERJOB-AUTH-PASSED";
/// 5.x console error codes that mean "log in again".
const CONSOLE_RELOGIN_CODES: [&str; 2] = ["-100", "-401"];
/// The readiness probe gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A readiness probe's result is reused this long (by every caller).
const PROBE_REUSE: Duration = Duration::from_secs(5);

/// Which server generation answered (detected by `/openApi/authApp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 4.x: no authentication anywhere.
    V4,
    /// 5.x: app token for the OpenAPI, console JWT for `/instance/*`.
    V5,
}

/// What the client holds of its logins.
#[derive(Debug, Clone, Default)]
pub(super) struct Session {
    pub(super) app_id: Option<i64>,
    pub(super) version: Option<Version>,
    pub(super) app_token: Option<String>,
    pub(super) console_jwt: Option<String>,
}

impl PowerJobClient {
    /// Readiness: `Ok` when a server answered in PowerJob's protocol within `recent`;
    /// otherwise the result of a [`PowerJobClient::probe`]. Probes are single-flight and
    /// their result is reused for [`PROBE_REUSE`], so any number of concurrent callers
    /// cause at most one upstream authentication per [`PROBE_REUSE`].
    ///
    /// # Errors
    /// The probe's failure ([`UpstreamError::Timeout`] past [`PROBE_TIMEOUT`]).
    pub async fn ready(&self, recent: Duration) -> Result<(), UpstreamError> {
        let recent_ms = i64::try_from(recent.as_millis()).unwrap_or(i64::MAX);
        if self.inner.clock.now_ms().saturating_sub(self.last_ok_ms()) <= recent_ms {
            return Ok(());
        }
        let mut last = self.inner.probe.lock().await;
        if let Some((at, result)) = last.as_ref().filter(|(at, _)| at.elapsed() < PROBE_REUSE) {
            tracing::trace!(target: LOG_TARGET, age = ?at.elapsed(), "readiness probe reused");
            return result.clone();
        }
        let result = tokio::time::timeout(PROBE_TIMEOUT, self.probe())
            .await
            .unwrap_or(Err(UpstreamError::Timeout(PROBE_TIMEOUT)));
        *last = Some((std::time::Instant::now(), result.clone()));
        result
    }

    /// Authenticates the app again (a cheap liveness and credentials check).
    ///
    /// # Errors
    /// Any [`UpstreamError`].
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        let stale = self.session().app_token;
        self.login_app(stale.as_deref(), true).await
    }

    /// Calls an OpenAPI operation with form fields (`appId` is added) and returns its
    /// `data`. Replays once after re-authenticating when a 5.x token was not accepted.
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] with the server's message on `success: false`.
    pub async fn openapi<T: DeserializeOwned>(
        &self,
        op: &'static str,
        form: &[(&str, String)],
    ) -> Result<Option<T>, UpstreamError> {
        let path = format!("/openApi/{op}");
        let endpoint = op;
        let mut session = self.ready_session().await?;
        let mut replayed = false;
        loop {
            let app_id = session.app_id.unwrap_or_default();
            let mut fields: Vec<(&str, String)> = form.to_vec();
            fields.push(("appId", app_id.to_string()));
            let token = session.app_token.clone();
            let raw = self
                .send(endpoint, |base| {
                    let mut req = self.inner.http.post(join(base, &path)).form(&fields);
                    if let Some(token) = &token {
                        req = req.header("X-POWERJOB-APP-ID", app_id).header("X-POWERJOB-ACCESS-TOKEN", token);
                    }
                    req
                })
                .await?;
            let passed = header_is_true(&raw.headers);
            if token.is_some() && !passed && !replayed {
                replayed = true;
                self.login_app(token.as_deref(), false).await?;
                session = self.session();
                continue;
            }
            let env: Envelope<T> = self.parse(&raw, &path)?;
            if env.success {
                return Ok(env.data);
            }
            return Err(UpstreamError::Refused { message: env.message.unwrap_or_default(), code: env.code });
        }
    }

    /// A console `GET` of an instance (`appId` and `instanceId` added to `query`), with
    /// the 5.x console login (logged in when missing, again and replayed once when
    /// refused). Returns the index of the address that answered and the `data`.
    ///
    /// # Errors
    /// Any [`UpstreamError`]; a 5.x login problem is [`UpstreamError::Auth`].
    pub(super) async fn console_get<T: DeserializeOwned>(
        &self,
        path: &'static str,
        id: i64,
        query: &[(&str, String)],
    ) -> Result<(usize, Option<T>), UpstreamError> {
        let mut session = self.ready_session().await?;
        if session.version == Some(Version::V5)
            && session.console_jwt.is_none()
            && !self.inner.console_username.is_empty()
        {
            self.login_console(None).await?;
            session = self.session();
        }
        let mut replayed = false;
        loop {
            let app_id = session.app_id.unwrap_or_default();
            let mut fields: Vec<(&str, String)> = vec![("appId", app_id.to_string()), ("instanceId", id.to_string())];
            fields.extend_from_slice(query);
            let jwt = session.console_jwt.clone();
            let (i, raw) = self
                .send_indexed_to(Target::Failover, path, |base| {
                    let mut req = self.inner.http.get(join(base, path)).query(&fields);
                    if let Some(jwt) = &jwt {
                        req = req.header("PowerJwt", jwt).header("AppId", app_id);
                    }
                    req
                })
                .await?;
            let env: Envelope<T> = self.parse(&raw, path)?;
            if env.success {
                return Ok((i, env.data));
            }
            let code = env.code.as_deref();
            let relogin = code.is_some_and(|c| CONSOLE_RELOGIN_CODES.contains(&c));
            if relogin && !replayed && !self.inner.console_username.is_empty() {
                replayed = true;
                self.login_console(jwt.as_deref()).await?;
                session = self.session();
                continue;
            }
            let message = env.message.unwrap_or_default();
            return Err(if relogin {
                UpstreamError::Auth(format!(
                    "PowerJob 5.x needs a console login for {path} (set powerjob.console_username \
                     and powerjob.console_password): {message}"
                ))
            } else if message.contains("Permission denied") {
                UpstreamError::Auth(format!("the console user needs the OPS permission on the app: {message}"))
            } else {
                UpstreamError::Refused { message, code: env.code }
            });
        }
    }

    /// The `appId` PowerJob assigned to `app_name`, once authenticated.
    pub fn app_id(&self) -> Option<i64> {
        self.session().app_id
    }

    pub(super) fn session(&self) -> Session {
        self.inner.session.read().expect("session lock poisoned").clone()
    }

    pub(super) async fn ready_session(&self) -> Result<Session, UpstreamError> {
        let s = self.session();
        if s.app_id.is_some() {
            return Ok(s);
        }
        self.login_app(None, false).await?;
        Ok(self.session())
    }

    /// (Re-)authenticates the app unless another task already replaced `stale`.
    pub(super) async fn login_app(&self, stale: Option<&str>, force: bool) -> Result<(), UpstreamError> {
        let _guard = self.inner.login.lock().await;
        let current = self.session();
        if !force && current.app_id.is_some() && current.app_token.as_deref() != stale {
            return Ok(());
        }
        let (app_id, version, token) = self.authenticate(Target::Failover).await?;
        let mut s = self.inner.session.write().expect("session lock poisoned");
        s.app_id = Some(app_id);
        s.version = Some(version);
        s.app_token = token;
        tracing::info!(target: LOG_TARGET, { app.id = app_id, version = ?version }, "authenticated with PowerJob");
        Ok(())
    }

    /// Authenticates the app, detecting the server generation on the way: the app id,
    /// the version, and the 5.x token.
    pub(super) async fn authenticate(&self, target: Target) -> Result<(i64, Version, Option<String>), UpstreamError> {
        let password = self.inner.app_password.expose_secret();
        let md5 = format!("{:x}", Md5::digest(password.as_bytes()));
        let body = serde_json::json!({
            "appName": self.inner.app_name, "encryptedPassword": md5, "encryptType": "md5",
        });
        let raw = self.send_to(target, AUTH_APP, |base| self.inner.http.post(join(base, AUTH_APP)).json(&body)).await?;
        if raw.status == StatusCode::NOT_FOUND {
            // 4.x has no authApp: the app name and password only map to an appId.
            let form = [("appName", self.inner.app_name.as_str()), ("password", password)];
            let raw = self
                .send_to(target, "/openApi/assert", |base| {
                    self.inner.http.post(join(base, "/openApi/assert")).form(&form)
                })
                .await?;
            let env: Envelope<i64> = self.parse(&raw, "/openApi/assert")?;
            match (env.success, env.data) {
                (true, Some(id)) => Ok((id, Version::V4, None)),
                _ => Err(UpstreamError::Auth(env.message.unwrap_or_else(|| "assert failed".into()))),
            }
        } else {
            let env: Envelope<AppAuth> = self.parse(&raw, AUTH_APP)?;
            match (env.success, env.data) {
                (true, Some(auth)) => Ok((auth.app_id, Version::V5, Some(auth.token))),
                _ => Err(UpstreamError::Auth(env.message.unwrap_or_else(|| "authApp failed".into()))),
            }
        }
    }

    /// Checks every configured server once and says what it found, one log line per
    /// server: `info` when it speaks PowerJob's protocol and accepts the app, `warn`
    /// naming the address when it cannot be reached, answers something else, or
    /// refuses the credentials. Meant to run in the background at start-up: it neither
    /// retries nor fails anything (requests try the servers again when they need them).
    pub async fn check_servers(&self) {
        for (i, server) in self.inner.addresses.iter().enumerate() {
            match self.authenticate(Target::Only(i)).await {
                Ok((app_id, version, _)) => {
                    tracing::info!(target: LOG_TARGET, { %server, ?version, app.id = app_id }, "PowerJob at {server} answers ({version:?})");
                }
                Err(error @ (UpstreamError::Unreachable(_) | UpstreamError::Timeout(_))) => {
                    tracing::warn!(target: LOG_TARGET, %server, %error, "PowerJob at {server} cannot be reached at start-up; serving anyway");
                }
                Err(error @ UpstreamError::Auth(_)) => {
                    tracing::warn!(target: LOG_TARGET, %server, %error, "PowerJob at {server} refused app `{}`", self.inner.app_name);
                }
                Err(error) => {
                    tracing::warn!(target: LOG_TARGET, %server, %error, "{server} does not answer as a PowerJob server (4.3.x or 5.1.x)");
                }
            }
        }
    }

    /// Logs the console user in (5.x) unless another task already replaced `stale`.
    pub(super) async fn login_console(&self, stale: Option<&str>) -> Result<(), UpstreamError> {
        let _guard = self.inner.login.lock().await;
        let current = self.session();
        if current.console_jwt.is_some() && current.console_jwt.as_deref() != stale {
            return Ok(());
        }
        let origin = serde_json::json!({
            "username": self.inner.console_username,
            "password": self.inner.console_password.expose_secret(),
            "encryption": "none",
        });
        let body = serde_json::json!({ "loginType": "PWJB", "originParams": origin.to_string() });
        let raw = self
            .send("/auth/thirdPartyLoginDirect", |base| {
                self.inner.http.post(join(base, "/auth/thirdPartyLoginDirect")).json(&body)
            })
            .await?;
        let env: Envelope<ConsoleUser> = self.parse(&raw, "/auth/thirdPartyLoginDirect")?;
        match (env.success, env.data) {
            (true, Some(user)) => {
                self.inner.session.write().expect("session lock poisoned").console_jwt = Some(user.jwt_token);
                tracing::info!(target: LOG_TARGET, user = %self.inner.console_username, "logged in to the PowerJob console");
                Ok(())
            }
            _ => Err(UpstreamError::Auth(format!(
                "console login as `{}` failed: {}",
                self.inner.console_username,
                env.message.unwrap_or_default()
            ))),
        }
    }
}

fn header_is_true(headers: &HeaderMap) -> bool {
    headers.get(AUTH_PASSED).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
