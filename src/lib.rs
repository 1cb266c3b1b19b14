//! # powertail
//!
//! Follows PowerJob online logs and serves them to a test platform as a stable,
//! append-only line cursor (`GET /llm/logs?instanceId=…&fromLine=…`), without any
//! change to PowerJob, its workers or the jobs' scripts.
//!
//! # Layout
//!
//! * [`clock`]: the wall clock (epoch ms), real or advanced by tests (a leaf);
//! * [`config`]: `config.toml` + `POWERTAIL_<SECTION>__<KEY>` overrides, validated; one
//!   file per section (`server`, `powerjob`, `logs`, `jobs` with webhooks and start-up
//!   rules, `auth`, `cluster`, `push`) and `error` (one line per problem: key, value, what is allowed);
//! * [`upstream`]: the PowerJob client (4.3.x and 5.1.x): `auth` (authApp, assert,
//!   console login, replays), `transport` (failover across `addresses`), `ops` (instance
//!   info, log pages, downloads, runs), wire types, [`upstream::UpstreamError`];
//! * [`archive`]: the SQL archive of complete logs (issue 20): SQLite (FTS5 trigram) or
//!   PostgreSQL (`pg_trgm`) through sqlx, versioned migrations (`migrations/`), search
//!   across runs, runs and start-up statistics per job, retention; imports only `logs`;
//! * [`logs`]: the pure core, unit- and property-tested: records and units, the follower
//!   (`follower/plan`, `follower/apply`: paging, merge of late lines, completeness), the
//!   page reader, start-up rules and tracking, `merge` (pushed and polled copies of a
//!   line, served once) and `joined` (the served log: the follower joined with pushed
//!   lines, issue 19);
//! * [`service`]: [`service::LogService`]: entries and their published views, reads and
//!   long-polls, on-demand single-flight refreshes, the two-tier store, cluster mode (the
//!   shared line log on Redis), pushed lines, start-up state and webhooks (its module
//!   docs map each file);
//! * [`http`]: the axum router behind [`http::Front`], thin handlers, the one error enum
//!   [`http::ApiError`]; `state` ([`http::AppState`], named jobs, wait permits), `auth`
//!   (API tokens, the `Authorized<Scope>` extractor, the run rate), `extract`, `push`
//!   (`POST /llm/logs/{instanceId}/append`); `stream` (Server-Sent Events) and `ws` (the
//!   WebSocket) write the events of one `Streamer`;
//! * [`telemetry`]: Prometheus metrics, per-route request counts and latencies, log output (a leaf);
//! * [`demo`]: `powertail demo`, the simulator with sample LLM jobs behind the real service;
//!   [`demo::replicas`]: `powertail demo --replicas N`, the same behind N replicas in cluster
//!   mode on one Redis;
//! * [`push_cli`]: `powertail push`, stdin to stdout with each line pushed (a leaf).
//!
//! Apart from the service, the workspace crate `crates/powerjob-sim` (`powerjob_sim`) is a
//! protocol-faithful PowerJob server simulator (4.3.x and 5.1.x) for the tests and the demo.
//! It writes its own JSON and depends on nothing of powertail; its own layout map is in
//! its `lib.rs`.

pub mod archive;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod logs;
pub mod push_cli;
pub mod service;
pub mod telemetry;
pub mod upstream;

/// The PowerJob simulator, now its own crate (`crates/powerjob-sim`); this alias keeps
/// `powertail::sim::…` in tests/ and benches/ compiling until they import it directly.
#[doc(hidden)]
pub use powerjob_sim as sim;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::AppState;
use crate::service::LogService;
use crate::upstream::PowerJobClient;

/// Builds the application state for `config`, to serve on `listen`.
///
/// # Errors
/// When the HTTP client cannot be built (TLS initialisation).
pub fn build(config: &Config, listen: SocketAddr) -> anyhow::Result<AppState> {
    build_with_clock(config, listen, Clock::real())
}

/// [`build`] reading the time of day from `clock` (tests pass a [`Clock::manual`] and
/// advance it, rather than wait out completion windows).
///
/// # Errors
/// As [`build`].
pub fn build_with_clock(config: &Config, listen: SocketAddr, clock: Clock) -> anyhow::Result<AppState> {
    telemetry::prometheus();
    let client = PowerJobClient::with_clock(&config.powerjob, clock)?;
    Ok(AppState::new(config, LogService::new(config, client)?, listen))
}

/// How long in-flight requests may take to finish after shutdown began.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (long-polls answer at once, streams send a final event) for at most
/// [`DRAIN_TIMEOUT`].
///
/// # Errors
/// I/O errors of the listener.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.logs.shutdown_token().clone();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let serve = axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(http::app(state)))
        .with_graceful_shutdown(token.clone().cancelled_owned());
    tokio::select! {
        result = serve.into_future() => result,
        () = async {
            token.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
            Ok(())
        }
    }
}
