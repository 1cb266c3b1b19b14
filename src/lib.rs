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
//! * [`http`]: the axum router, thin handlers, [`http::ApiError`];
//! * [`sim`]: a protocol-faithful PowerJob simulator for tests and the demo.

pub mod config;
pub mod demo;
pub mod http;
pub mod logs;
pub mod service;
pub mod sim;
pub mod upstream;

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::service::LogService;
use crate::upstream::PowerJobClient;

/// Builds the service for `config`.
///
/// # Errors
/// When the HTTP client cannot be built (TLS initialisation).
pub fn build(config: &Config) -> anyhow::Result<LogService> {
    let client = PowerJobClient::new(&config.powerjob)?;
    Ok(LogService::new(config, client))
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
///
/// # Errors
/// I/O errors of the listener.
pub async fn run(
    listener: TcpListener,
    logs: LogService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(logs))
        .with_graceful_shutdown(shutdown)
        .await
}
