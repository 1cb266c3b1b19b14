//! `powertail demo`: an embedded PowerJob simulator with sample LLM jobs, followed by
//! the adapter, on one command.

use std::future::Future;
use std::net::SocketAddr;

/// Runs the demo until `shutdown` resolves.
///
/// # Errors
/// When a listener cannot be bound.
pub async fn run(listen: SocketAddr, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let _ = (listen, shutdown);
    anyhow::bail!("the demo is not built yet")
}
