//! The `powertail` binary: parses the command line, sets up tracing, loads the
//! configuration and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use powertail::config::LogFormat;

/// Follow PowerJob online logs over a stable REST cursor.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (`serve`: default config.toml; `demo`: optional, applied
    /// under the demo's own keys, e.g. for `[jobs.vllm-start.notify]`).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Start an embedded PowerJob simulator with sample LLM jobs and follow it.
    Demo {
        /// Address of the API and viewer.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Every simulated time (flushes, caches, the jobs' scripts) times this factor:
        /// 0.1 runs a vLLM start-up in a few seconds (the client libraries' tests).
        #[arg(long, hide = true, env = "POWERTAIL_DEMO_SCALE", default_value_t = 1.0, value_parser = parse_scale)]
        scale: f64,
    },
    /// Copy stdin to stdout and push each line to powertail (token: `POWERTAIL_TOKEN`).
    Push(powertail::push_cli::PushArgs),
}

/// Large buffers (each complete log packed into one, downloads, big answers) are mapped
/// from the kernel and unmapped when freed. By default glibc raises its mmap threshold
/// after the first such free and serves them from the heap, where evicting logs while
/// reading new ones fragments it: RSS 337 MiB instead of 263 MiB for a 256 MiB cache in
/// the memory benchmark (BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn large_allocations_from_the_kernel() {
    // SAFETY: `mallopt` only sets an allocator parameter; it takes the allocator's own
    // lock and has no other precondition.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn large_allocations_from_the_kernel() {}

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist: they pick their heaps at their first allocation.
    large_allocations_from_the_kernel();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(Cli::parse()))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            // Configuration first: it says how to log. Its errors go to stderr as is.
            let path = cli.config.unwrap_or_else(|| PathBuf::from("config.toml"));
            let config = powertail::config::Config::load(&path)?;
            let server = &config.server;
            powertail::telemetry::init_logging(server.log_format == LogFormat::Json, &server.log_level)?;
            let listener = tokio::net::TcpListener::bind(server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", server.listen))?;
            let state = powertail::build(&config, listener.local_addr()?)?;
            tracing::info!(listen = %server.listen, "powertail serving");
            // Say once, in the background, whether PowerJob can be reached; never wait for it.
            let client = state.logs.client().clone();
            tokio::spawn(async move { client.check_servers().await });
            powertail::run(listener, state, shutdown_signal()).await?;
        }
        Command::Demo { listen, scale } => {
            powertail::telemetry::init_logging(false, "info")?;
            powertail::demo::run(listen, scale, cli.config.as_deref(), shutdown_signal()).await?;
        }
        Command::Push(args) => powertail::push_cli::run(args).await?,
    }
    Ok(())
}

/// `--scale`: a finite factor in 0.01..=100.
fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.01..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number between 0.01 and 100")),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
