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
//!
//! In parts: [`auth`] (app authentication, console login, the calls that replay after
//! a refused token), [`transport`] (failover across `addresses`, metrics, the HTTP
//! answer), [`ops`] (the operations: instance info, log pages, downloads, job runs and
//! instance operations), [`error`] and [`wire`].

mod auth;
pub mod error;
mod ops;
mod transport;
pub mod wire;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

pub use auth::Version;
pub use error::UpstreamError;
pub use ops::InstanceOp;

use crate::clock::Clock;
use crate::config::PowerJobConfig;

/// 5.1.x app authentication; its 404 tells a 4.x server (version detection; the
/// transport counts that answer as a probe, not an error).
const AUTH_APP: &str = "/openApi/authApp";
/// The tracing target of every event and span of the client, whichever of its files
/// they come from (log filters and shippers match it; keep it when moving code).
const LOG_TARGET: &str = "powertail::upstream";

/// Connecting never needs long; the request timeout covers slow answers.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    session: RwLock<auth::Session>,
    /// Serialises (re-)authentication so a burst of expired calls logs in once.
    login: tokio::sync::Mutex<()>,
    /// When a server last answered in PowerJob's protocol (epoch ms).
    last_ok_ms: AtomicI64,
    /// The time of day (epoch ms) for `last_ok_ms`.
    clock: Clock,
    /// The last readiness probe (when, and its result); the lock makes probes single-flight.
    probe: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), UpstreamError>)>>,
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
                session: RwLock::new(auth::Session::default()),
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
}

/// Wall-clock epoch milliseconds ([`Clock::real`]; the service reads its [`Clock`]).
pub fn now_ms() -> i64 {
    Clock::real().now_ms()
}
