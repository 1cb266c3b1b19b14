//! The PowerJob client: OpenAPI calls and online-log pages for 4.3.x and 5.1.x.
//!
//! * App authentication: `/openApi/authApp` (5.1.x, MD5 of the password) with the token
//!   headers; a 404 there means 4.x, which only maps the app name to an `appId` with
//!   `/openApi/assert`. A 5.x answer without `X-POWERJOB-AUTH-PASSED: true` means the
//!   token expired or was rejected: authenticate again and replay once (as the official
//!   clients do).
//! * Console login for `/instance/log` on 5.x: `/auth/thirdPartyLoginDirect`, the JWT in
//!   `PowerJwt` and the app in `AppId`; a "not logged in" answer logs in again and
//!   replays once.
//! * Several server addresses: tried in order from the last one that answered; a
//!   transport failure (refused, reset, timeout, HTTP 5xx) moves on to the next.

pub mod error;
pub mod wire;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

pub use error::UpstreamError;
use wire::{AppAuth, ConsoleUser, Envelope, InstanceInfo, StringPage};

use crate::clock::Clock;
use crate::config::PowerJobConfig;
use crate::logs::RawPage;

/// Response header set by 5.1.x's OpenAPI interceptor.
const AUTH_PASSED: &str = "X-POWERJOB-AUTH-PASSED";
/// 5.x console error codes that mean "log in again".
const CONSOLE_RELOGIN_CODES: [&str; 2] = ["-100", "-401"];
/// 5.1.x app authentication; its 404 tells a 4.x server (version detection).
const AUTH_APP: &str = "/openApi/authApp";
/// Connecting never needs long; the request timeout covers slow answers.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The readiness probe gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A readiness probe's result is reused this long (by every caller).
const PROBE_REUSE: Duration = Duration::from_secs(5);

/// The instance operations of the OpenAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOp {
    /// `stopInstance` (statuses 1–3).
    Stop,
    /// `cancelInstance` (a not yet dispatched instance).
    Cancel,
    /// `retryInstance` (a finished instance; same instanceId).
    Retry,
}

impl InstanceOp {
    fn path(self) -> &'static str {
        match self {
            InstanceOp::Stop => "stopInstance",
            InstanceOp::Cancel => "cancelInstance",
            InstanceOp::Retry => "retryInstance",
        }
    }
}

/// Which server generation answered (detected by `/openApi/authApp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 4.x: no authentication anywhere.
    V4,
    /// 5.x: app token for the OpenAPI, console JWT for `/instance/*`.
    V5,
}

/// Which servers a request may go to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Every configured server in turn, from the last one that answered.
    Failover,
    /// Only the server at this index (the start-up check, a download from the server
    /// that holds the log). Its caller reports a failure, with context.
    Only(usize),
}

#[derive(Debug, Clone, Default)]
struct Session {
    app_id: Option<i64>,
    version: Option<Version>,
    app_token: Option<String>,
    console_jwt: Option<String>,
}

/// A cheap-to-clone PowerJob client shared by every request.
#[derive(Clone)]
pub struct PowerJobClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    addresses: Vec<Url>,
    preferred: AtomicUsize,
    timeout: Duration,
    app_name: String,
    app_password: SecretString,
    console_username: String,
    console_password: SecretString,
    session: RwLock<Session>,
    /// Serialises (re-)authentication so a burst of expired calls logs in once.
    login: tokio::sync::Mutex<()>,
    /// When a server last answered in PowerJob's protocol (epoch ms).
    last_ok_ms: AtomicI64,
    /// The time of day (epoch ms) for `last_ok_ms`.
    clock: Clock,
    /// The last readiness probe (when, and its result); the lock makes probes single-flight.
    probe: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), UpstreamError>)>>,
}

struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl PowerJobClient {
    /// Builds a client for the configured cluster.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(cfg: &PowerJobConfig) -> Result<Self, reqwest::Error> {
        Self::with_clock(cfg, Clock::real())
    }

    /// [`PowerJobClient::new`] with the clock the service reads the time of day from
    /// (a manual one in tests); [`PowerJobClient::clock`] hands it on.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn with_clock(cfg: &PowerJobConfig, clock: Clock) -> Result<Self, reqwest::Error> {
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(concat!("powertail/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            // Validated when the configuration was loaded.
            if let Some(cert) = std::fs::read(ca).ok().and_then(|pem| reqwest::Certificate::from_pem(&pem).ok()) {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build()?;
        Ok(PowerJobClient {
            inner: Arc::new(Inner {
                http,
                addresses: cfg.addresses.clone(),
                preferred: AtomicUsize::new(0),
                timeout,
                app_name: cfg.app_name.clone(),
                app_password: cfg.app_password.clone(),
                console_username: cfg.console_username.clone(),
                console_password: cfg.console_password.clone(),
                session: RwLock::new(Session::default()),
                login: tokio::sync::Mutex::new(()),
                last_ok_ms: AtomicI64::new(0),
                clock,
                probe: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The clock this client and the service built on it read the time of day from.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The HTTP client (rustls, the configured timeouts and CA), shared with the webhooks.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// When a PowerJob server last answered in its protocol (epoch ms; 0 = never).
    pub fn last_ok_ms(&self) -> i64 {
        self.inner.last_ok_ms.load(Ordering::Relaxed)
    }

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
            tracing::trace!(age = ?at.elapsed(), "readiness probe reused");
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

    /// `fetchInstanceInfo`.
    ///
    /// # Errors
    /// [`UpstreamError::InstanceNotFound`] for an unknown id, or any other failure.
    #[tracing::instrument(skip(self), fields(instance.id = id))]
    pub async fn instance_info(&self, id: i64) -> Result<InstanceInfo, UpstreamError> {
        match self.openapi::<InstanceInfo>("fetchInstanceInfo", &[("instanceId", id.to_string())]).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(UpstreamError::Protocol("fetchInstanceInfo answered no data".into())),
            Err(UpstreamError::Refused { message, .. }) if message.contains("invalid instanceId") => {
                Err(UpstreamError::InstanceNotFound(id))
            }
            Err(e) => Err(e),
        }
    }

    /// `runJob`: starts an instance now (or after `delay_ms`) and returns its id. The
    /// id comes back even when dispatch fails (the instance is then FAILED).
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] for an unknown job or one of another app.
    #[tracing::instrument(skip(self, instance_params))]
    pub async fn run_job(
        &self,
        job_id: i64,
        instance_params: Option<&str>,
        delay_ms: u64,
    ) -> Result<i64, UpstreamError> {
        let mut form = vec![("jobId", job_id.to_string()), ("delay", delay_ms.to_string())];
        if let Some(p) = instance_params.filter(|p| !p.is_empty()) {
            form.push(("instanceParams", p.to_owned()));
        }
        self.openapi::<i64>("runJob", &form)
            .await?
            .ok_or_else(|| UpstreamError::Protocol("runJob answered no instanceId".into()))
    }

    /// `stopInstance`, `cancelInstance` or `retryInstance`.
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] with PowerJob's reason (finished, not finished, unknown).
    #[tracing::instrument(skip(self))]
    pub async fn instance_op(&self, op: InstanceOp, id: i64) -> Result<(), UpstreamError> {
        self.openapi::<serde_json::Value>(op.path(), &[("instanceId", id.to_string())]).await.map(|_| ())
    }

    /// `fetchJob`: the job's JobInfoDTO as PowerJob sent it.
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] for an unknown job.
    pub async fn fetch_job(&self, job_id: i64) -> Result<serde_json::Value, UpstreamError> {
        self.openapi::<serde_json::Value>("fetchJob", &[("jobId", job_id.to_string())])
            .await?
            .ok_or_else(|| UpstreamError::Protocol("fetchJob answered no job".into()))
    }

    /// `/instance/downloadLog`: the whole log file (padded with garbage to 4 KiB blocks,
    /// `docs/powerjob-protocol.md` §4.8), or `None` when it cannot be downloaded safely (the caller pages).
    ///
    /// `downloadLog` is not forwarded (§4.7, §4.8): a server that does not hold the log
    /// serves (and creates) a placeholder file of its own. So the forwarded
    /// `downloadLogUrl` is asked first; it names the server that holds the log, and the
    /// file is downloaded only when that is the configured address that answered, from
    /// that address alone (no failover to another server).
    ///
    /// # Errors
    /// Transport failures.
    #[tracing::instrument(skip(self), fields(instance.id = id))]
    pub async fn download_log(&self, id: i64) -> Result<Option<Vec<u8>>, UpstreamError> {
        let Some(i) = self.download_address(id).await? else { return Ok(None) };
        let query = [("instanceId", id.to_string())];
        let raw = self
            .send_to(Target::Only(i), "/instance/downloadLog", |base| {
                self.inner.http.get(join(base, "/instance/downloadLog")).query(&query)
            })
            .await?;
        let is_file = raw
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/octet-stream"));
        let ok = raw.status == StatusCode::OK && is_file;
        if ok {
            self.inner.last_ok_ms.store(self.inner.clock.now_ms(), Ordering::Relaxed);
        }
        Ok(ok.then(|| raw.body.to_vec()))
    }

    /// The index of the configured address to download `id`'s log from: the address that
    /// answered `downloadLogUrl`, when the URL it answered has that address's host and
    /// port. `None` when the log lives on another server (or the URL cannot be had).
    async fn download_address(&self, id: i64) -> Result<Option<usize>, UpstreamError> {
        let (i, url) = match self.console_get::<String>("/instance/downloadLogUrl", id, &[]).await {
            Ok((i, Some(url))) => (i, url),
            Ok((_, None)) => return Ok(None),
            Err(e @ (UpstreamError::Unreachable(_) | UpstreamError::Timeout(_))) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no download URL; reading pages");
                return Ok(None);
            }
        };
        let ours = &self.inner.addresses[i];
        let same = Url::parse(&url).is_ok_and(|theirs| {
            theirs.host_str().is_some_and(|h| Some(h) == ours.host_str())
                && theirs.port_or_known_default() == ours.port_or_known_default()
        });
        if !same {
            tracing::debug!(server = %ours, %url, "the log lives on another server; reading pages");
        }
        Ok(same.then_some(i))
    }

    /// One `/instance/log` page.
    ///
    /// # Errors
    /// Any [`UpstreamError`]; a 5.x login problem is [`UpstreamError::Auth`].
    #[tracing::instrument(skip(self), fields(instance.id = id))]
    pub async fn log_page(&self, id: i64, index: u64) -> Result<RawPage, UpstreamError> {
        let (_, page) = self.console_get::<StringPage>("/instance/log", id, &[("index", index.to_string())]).await?;
        let page = page.ok_or_else(|| UpstreamError::Protocol("/instance/log answered no page".into()))?;
        Ok(RawPage {
            index: u64::try_from(page.index).unwrap_or(0),
            total_pages: u64::try_from(page.total_pages).unwrap_or(0),
            data: page.data.unwrap_or_default(),
        })
    }

    /// A console `GET` of an instance (`appId` and `instanceId` added to `query`), with
    /// the 5.x console login (logged in when missing, again and replayed once when
    /// refused). Returns the index of the address that answered and the `data`.
    ///
    /// # Errors
    /// Any [`UpstreamError`]; a 5.x login problem is [`UpstreamError::Auth`].
    async fn console_get<T: DeserializeOwned>(
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

    /// The envelope of an answer; an answer in PowerJob's protocol (even a refusal)
    /// counts as PowerJob answering, for readiness.
    fn parse<T: DeserializeOwned>(&self, raw: &Raw, what: &str) -> Result<Envelope<T>, UpstreamError> {
        if raw.status != StatusCode::OK {
            return Err(UpstreamError::Protocol(format!("{what} answered HTTP {}", raw.status)));
        }
        let env = serde_json::from_slice(&raw.body).map_err(|e| {
            let head: String = String::from_utf8_lossy(&raw.body[..raw.body.len().min(60)]).chars().collect();
            UpstreamError::Protocol(format!("{what} answered a body that is not PowerJob JSON ({e}): {head:?}"))
        })?;
        self.inner.last_ok_ms.store(self.inner.clock.now_ms(), Ordering::Relaxed);
        Ok(env)
    }

    fn session(&self) -> Session {
        self.inner.session.read().expect("session lock poisoned").clone()
    }

    async fn ready_session(&self) -> Result<Session, UpstreamError> {
        let s = self.session();
        if s.app_id.is_some() {
            return Ok(s);
        }
        self.login_app(None, false).await?;
        Ok(self.session())
    }

    /// (Re-)authenticates the app unless another task already replaced `stale`.
    async fn login_app(&self, stale: Option<&str>, force: bool) -> Result<(), UpstreamError> {
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
        tracing::info!(app.id = app_id, version = ?version, "authenticated with PowerJob");
        Ok(())
    }

    /// Authenticates the app, detecting the server generation on the way: the app id,
    /// the version, and the 5.x token.
    async fn authenticate(&self, target: Target) -> Result<(i64, Version, Option<String>), UpstreamError> {
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
                    tracing::info!(%server, ?version, app.id = app_id, "PowerJob at {server} answers ({version:?})");
                }
                Err(error @ (UpstreamError::Unreachable(_) | UpstreamError::Timeout(_))) => {
                    tracing::warn!(%server, %error, "PowerJob at {server} cannot be reached at start-up; serving anyway");
                }
                Err(error @ UpstreamError::Auth(_)) => {
                    tracing::warn!(%server, %error, "PowerJob at {server} refused app `{}`", self.inner.app_name);
                }
                Err(error) => {
                    tracing::warn!(%server, %error, "{server} does not answer as a PowerJob server (4.3.x or 5.1.x)");
                }
            }
        }
    }

    /// Logs the console user in (5.x) unless another task already replaced `stale`.
    async fn login_console(&self, stale: Option<&str>) -> Result<(), UpstreamError> {
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
                tracing::info!(user = %self.inner.console_username, "logged in to the PowerJob console");
                Ok(())
            }
            _ => Err(UpstreamError::Auth(format!(
                "console login as `{}` failed: {}",
                self.inner.console_username,
                env.message.unwrap_or_default()
            ))),
        }
    }

    /// Sends a request to the first address that answers, starting with the last good one.
    async fn send(&self, endpoint: &'static str, build: impl Fn(&Url) -> RequestBuilder) -> Result<Raw, UpstreamError> {
        self.send_to(Target::Failover, endpoint, build).await
    }

    /// Sends a request to `target`. Each attempt is counted in
    /// `powertail_upstream_requests_total` by endpoint and outcome; a 404 from
    /// `/openApi/authApp` is the 4.x answer to the version probe, counted as `probe`
    /// rather than `http_error`.
    async fn send_to(
        &self,
        target: Target,
        endpoint: &'static str,
        build: impl Fn(&Url) -> RequestBuilder,
    ) -> Result<Raw, UpstreamError> {
        self.send_indexed_to(target, endpoint, build).await.map(|(_, raw)| raw)
    }

    /// As [`PowerJobClient::send_to`], also returning the index of the address that
    /// answered. (An answer is not yet PowerJob's: `parse` records when one was.)
    async fn send_indexed_to(
        &self,
        target: Target,
        endpoint: &'static str,
        build: impl Fn(&Url) -> RequestBuilder,
    ) -> Result<(usize, Raw), UpstreamError> {
        let n = self.inner.addresses.len();
        let (first, tries) = match target {
            Target::Failover => (self.inner.preferred.load(Ordering::Relaxed) % n.max(1), n),
            Target::Only(i) => (i, 1),
        };
        let mut last_error = UpstreamError::Unreachable("no PowerJob address configured".into());
        for k in 0..tries {
            let i = (first + k) % n;
            let base = &self.inner.addresses[i];
            let start = std::time::Instant::now();
            let result = self.send_once(build(base)).await;
            let outcome = match &result {
                Ok(raw) if raw.status.is_success() => "ok",
                Ok(raw) if endpoint == AUTH_APP && raw.status == StatusCode::NOT_FOUND => "probe",
                Ok(_) => "http_error",
                Err(UpstreamError::Timeout(_)) => "timeout",
                Err(UpstreamError::Unreachable(_)) => "unreachable",
                Err(_) => "bad_answer",
            };
            metrics::counter!(crate::telemetry::UPSTREAM_REQUESTS, "endpoint" => endpoint, "outcome" => outcome)
                .increment(1);
            metrics::histogram!(crate::telemetry::UPSTREAM_DURATION, "endpoint" => endpoint)
                .record(start.elapsed().as_secs_f64());
            match result {
                Ok(raw) => {
                    if matches!(target, Target::Failover) {
                        self.inner.preferred.store(i, Ordering::Relaxed);
                    }
                    return Ok((i, raw));
                }
                Err(e) => {
                    // A single-server request's caller reports its failure (with context).
                    if matches!(target, Target::Failover) {
                        tracing::warn!(server = %base, error = %e, "PowerJob server failed");
                    }
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn send_once(&self, req: RequestBuilder) -> Result<Raw, UpstreamError> {
        let timeout = self.inner.timeout;
        let resp = req.send().await.map_err(|e| UpstreamError::from_reqwest(e, timeout))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| UpstreamError::from_reqwest(e, timeout))?;
        if status.is_server_error() {
            // Official clients treat any non-200 as a transport failure; 5xx also covers
            // a proxy in front of a dead server. Try the next address.
            return Err(UpstreamError::Protocol(format!("HTTP {status}")));
        }
        Ok(Raw { status, headers, body })
    }
}

fn header_is_true(headers: &HeaderMap) -> bool {
    headers.get(AUTH_PASSED).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn join(base: &Url, path: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
}

/// Wall-clock epoch milliseconds ([`Clock::real`]; the service reads its [`Clock`]).
pub fn now_ms() -> i64 {
    Clock::real().now_ms()
}
