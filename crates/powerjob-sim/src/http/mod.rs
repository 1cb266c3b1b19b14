//! The simulated PowerJob server over HTTP: axum routes around `Arc<Mutex<SimCore>>` with
//! the wall clock, the 5.x OpenAPI token and console JWT checks, request counters and
//! fault injection.
//!
//! Every body is written by [`crate::json`]; this layer picks the answer and its HTTP
//! status, exactly as `docs/powerjob-protocol.md` §0–§4 and the fixtures show it:
//! envelopes with HTTP 200 for failures too, Spring's 404 JSON for unmapped paths, form
//! parameters (query string or urlencoded body) for the id-taking endpoints and JSON
//! bodies for the object-taking ones.
//!
//! * this file: [`Simulator`] (state, test controls, the router) and [`SimHandle`];
//! * [`fault`]: [`Fault`]s and the outermost layer that counts requests and plays them;
//! * [`auth`]: 5.x app tokens, console logins and the OpenAPI interceptor;
//! * [`params`]: request parameters as Spring binds them;
//! * [`openapi`]: `/openApi/*`; [`console`]: `/instance/*` (logs and downloads);
//! * [`push`]: the other side of the worker, the processor pushing its lines to powertail
//!   ([`Pusher`], [`Simulator::set_pusher`]), and [`push_send`] its sender (batches,
//!   retries, network faults). [`Simulator::with_core`] hands every run that starts to it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::core::SimCore;
use crate::json;
use crate::types::Version;

mod auth;
mod console;
mod fault;
mod openapi;
mod params;
mod push;
mod push_send;
#[cfg(test)]
mod push_tests;
#[cfg(test)]
mod tests;

use self::auth::{AppToken, ConsoleToken};
pub use self::fault::{Fault, FaultKind};
pub use self::push::{Fate, PushFaults, PushStats, PushedLine, Pusher};

/// Mutable HTTP-side state, apart from the core.
#[derive(Debug, Default)]
struct Shared {
    faults: VecDeque<Fault>,
    counters: HashMap<String, u64>,
    app_tokens: HashMap<String, AppToken>,
    console_tokens: HashMap<String, ConsoleToken>,
    /// This server's own `host:port` as `downloadLogUrl` names it (§4.8).
    local_address: Option<String>,
}

/// The simulated server: cheap to clone, every clone shares the same state.
#[derive(Clone)]
pub struct Simulator {
    cfg: Arc<SimConfig>,
    core: Arc<Mutex<SimCore>>,
    shared: Arc<Mutex<Shared>>,
    /// The simulated processors' pushes to powertail ([`push`]).
    push: Arc<Mutex<push::PushState>>,
}

/// A simulator serving on a local port; the server stops when this is dropped.
pub struct SimHandle {
    /// The simulator, for scripting and fault injection (also reachable through `Deref`).
    pub sim: Simulator,
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// Base URL, `"http://127.0.0.1:port"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections (same as dropping the handle).
    pub fn shutdown(self) {}
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Deref for SimHandle {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Simulator {
    /// A simulator with a fresh [`SimCore`].
    pub fn new(cfg: SimConfig) -> Self {
        Simulator {
            cfg: Arc::new(cfg.clone()),
            core: Arc::new(Mutex::new(SimCore::new(cfg))),
            shared: Arc::new(Mutex::new(Shared::default())),
            push: Arc::new(Mutex::new(push::PushState::default())),
        }
    }

    /// Starts a simulator on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn spawn(cfg: SimConfig) -> std::io::Result<SimHandle> {
        Simulator::new(cfg).serve(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves this simulator on `addr` (port 0: any free port).
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        // Like the JVM property `powerjob.network.local.address`, or else the address
        // the server detects for itself (here: the one it listens on).
        self.shared().local_address.get_or_insert_with(|| addr.to_string());
        let router = self.router();
        let task = tokio::spawn(async move {
            // Only returns on an accept error that axum cannot recover from.
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "PowerJob simulator stopped");
            }
        });
        Ok(SimHandle { sim: self, addr, task })
    }

    /// The wall clock, epoch ms.
    pub fn now() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Runs `f` on the core with the current time (scripting from tests). Runs that
    /// started meanwhile start pushing, with a [`Pusher`] set.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut SimCore, i64) -> R) -> R {
        let (result, started) = {
            let mut core = self.core.lock().expect("sim core poisoned");
            let result = f(&mut core, self.time());
            (result, core.take_started_runs())
        };
        if !started.is_empty() {
            self.start_pushers(started);
        }
        result
    }

    /// This server's now, epoch ms: [`SimConfig::clock`] (the wall clock, [`Simulator::now`],
    /// unless the test gave its own).
    pub fn time(&self) -> i64 {
        self.cfg.clock.custom().map_or_else(Self::now, |now| now())
    }

    /// Queues a fault; faults apply in the order they were queued.
    pub fn inject(&self, fault: Fault) {
        self.shared().faults.push_back(fault);
    }

    /// Runs `timingCheck` now: the old rows of frequent jobs' live logs are deleted
    /// ([`SimCore::clean_now`]); returns how many.
    pub fn clean_now(&self) -> usize {
        self.with_core(|c, now| c.clean_now(now))
    }

    /// Restarts the simulated server now ([`SimCore::restart`]); the HTTP side (tokens,
    /// faults, counters) is not affected.
    pub fn restart(&self) {
        self.with_core(|c, now| c.restart(now));
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.shared().faults.clear();
    }

    /// Requests received for `path`, e.g. `"/instance/log"` (faulted ones included).
    pub fn requests(&self, path: &str) -> u64 {
        self.shared().counters.get(path).copied().unwrap_or(0)
    }

    /// `/instance/log` requests received for pages `from_index` and later.
    pub fn log_requests_from(&self, from_index: u64) -> u64 {
        let shared = self.shared();
        let past = |key: &str| key.strip_prefix("/instance/log?index=").and_then(|i| i.parse::<u64>().ok());
        shared.counters.iter().filter(|(k, _)| past(k).is_some_and(|i| i >= from_index)).map(|(_, n)| n).sum()
    }

    /// Sets every request counter to zero.
    pub fn reset_counters(&self) {
        self.shared().counters.clear();
    }

    /// Sets the `host:port` this server names as its own in `downloadLogUrl` (§4.8), as
    /// `powerjob.network.local.address` does: e.g. another server of the cluster's, to
    /// play a server that does not hold the logs it is asked for.
    pub fn set_local_address(&self, host_port: &str) {
        self.shared().local_address = Some(host_port.to_owned());
    }

    /// Invalidates every issued app and console token (as if the signing secret changed).
    pub fn revoke_tokens(&self) {
        let mut shared = self.shared();
        shared.app_tokens.clear();
        shared.console_tokens.clear();
    }

    /// The routes of a PowerJob 4.3.x or 5.1.x server.
    pub fn router(&self) -> Router {
        let v5 = self.cfg.version == Version::V5;
        let mut open = Router::new()
            .route("/openApi/assert", only(post(openapi::assert_app)))
            .route("/openApi/runJob", only(post(openapi::run_job)))
            .route("/openApi/stopInstance", only(post(openapi::stop_instance)))
            .route("/openApi/cancelInstance", only(post(openapi::cancel_instance)))
            .route("/openApi/retryInstance", only(post(openapi::retry_instance)))
            .route("/openApi/fetchInstanceStatus", only(post(openapi::fetch_instance_status)))
            .route("/openApi/fetchInstanceInfo", only(post(openapi::fetch_instance_info)))
            .route("/openApi/fetchJob", only(post(openapi::fetch_job)))
            .route("/openApi/queryInstance", only(post(openapi::query_instance)));
        if v5 {
            open = open.route("/openApi/authApp", only(post(auth::auth_app)));
        }
        let open = open.route_layer(middleware::from_fn_with_state(self.clone(), auth::openapi_interceptor));
        let mut router = Router::new()
            .merge(open)
            .route("/instance/log", only(get(console::instance_log)))
            .route("/instance/downloadLogUrl", only(get(console::download_log_url)))
            .route("/instance/downloadLog", only(get(console::download_log)));
        if v5 {
            router = router
                .route("/auth/thirdPartyLoginDirect", only(post(auth::console_login)))
                .route("/auth/ifLogin", only(get(auth::if_login)));
        }
        router
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), fault::count_and_inject))
            .with_state(self.clone())
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("sim state poisoned")
    }

    fn v5(&self) -> bool {
        self.cfg.version == Version::V5
    }

    /// A failure envelope ([`json::fail`]): `code` only on 5.x.
    fn fail(&self, message: &str, code: Option<&str>) -> Response {
        Json(json::fail(self.v5(), message, code)).into_response()
    }

    fn failure(&self, failure: Failure) -> Response {
        self.fail(&failure.message, failure.code)
    }
}

/// A success envelope (plain `ResultDTO`: no `code`).
fn ok(data: Value) -> Response {
    Json(json::ok(data)).into_response()
}

/// A failure envelope to be written: the exception text and the 5.x `code`.
struct Failure {
    message: String,
    code: Option<&'static str>,
}

impl Failure {
    fn new(message: &str, code: Option<&'static str>) -> Self {
        Failure { message: message.to_owned(), code }
    }
}

/// A mapped path: the wrong method is Spring's `HttpRequestMethodNotSupportedException`,
/// handled by PowerJob's exception handler (a failure envelope with HTTP 200).
fn only(route: MethodRouter<Simulator>) -> MethodRouter<Simulator> {
    route.fallback(wrong_method)
}

async fn wrong_method(State(sim): State<Simulator>, method: Method) -> Response {
    sim.fail(&format!("HttpRequestMethodNotSupportedException: Request method '{method}' not supported"), None)
}

/// Spring Boot's default error body.
fn spring_error(status: StatusCode, path: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    (status, Json(json::spring_error(Simulator::now(), status.as_u16(), reason, path))).into_response()
}

async fn not_found(req: Request) -> Response {
    spring_error(StatusCode::NOT_FOUND, req.uri().path())
}
