//! # powertail
//!
//! Follows PowerJob online logs and serves them to a test platform as a stable,
//! append-only line cursor (`GET /llm/logs?instanceId=…&fromLine=…`), without any
//! change to PowerJob, its workers or the jobs' scripts.
//!
//! # Layout
//!
//! * [`config`]: `config.toml` + `POWERTAIL_<SECTION>__<KEY>` overrides, validated;
//! * [`upstream`]: the PowerJob client (4.3.x and 5.1.x), wire types, [`upstream::UpstreamError`];
//! * [`logs`]: the pure core (paging, merge, completeness), unit- and property-tested;
//! * [`service`]: [`service::LogService`], on-demand single-flight refreshes and the cache;
//! * [`app`]: [`app::AppState`], API tokens and named jobs;
//! * [`http`]: the axum router, thin handlers, [`http::ApiError`];
//! * [`telemetry`]: Prometheus metrics and the HTTP metrics middleware;
//! * [`sim`]: a protocol-faithful PowerJob simulator for tests and the demo.

pub mod app;
pub mod config;
pub mod demo;
pub mod http;
pub mod logs;
pub mod service;
pub mod sim;
pub mod telemetry;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::Config;
use crate::service::LogService;
use crate::upstream::PowerJobClient;

/// Builds the application state for `config`, to serve on `listen`.
///
/// # Errors
/// When the HTTP client cannot be built (TLS initialisation).
pub fn build(config: &Config, listen: SocketAddr) -> anyhow::Result<AppState> {
    telemetry::prometheus();
    let client = PowerJobClient::new(&config.powerjob)?;
    Ok(AppState::new(config, LogService::new(config, client), listen))
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
///
/// # Errors
/// I/O errors of the listener.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown).await
}
