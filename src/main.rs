//! The `powertail` binary: parses the command line, sets up tracing, loads the
//! configuration and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use powertail::config::{Config, ConfigError, LogFormat};

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
        /// Address of the API and viewer (`ip:port` or `host:port`).
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = powertail::config::parse_listen)]
        listen: SocketAddr,
        /// Every simulated time (flushes, caches, the jobs' scripts) times this factor:
        /// 0.1 runs a vLLM start-up in a few seconds (the client libraries' tests).
        #[arg(long, hide = true, env = "POWERTAIL_DEMO_SCALE", default_value_t = 1.0, value_parser = parse_scale)]
        scale: f64,
        /// Run this many replicas in cluster mode on one Redis (child processes on
        /// --listen's port and the next ones), behind one simulator.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        replicas: u16,
        /// The replicas' Redis (`redis://host:port/db`); without it the demo starts
        /// `redis-server` from PATH when it runs replicas.
        #[arg(long, env = "POWERTAIL_DEMO_REDIS", hide_env_values = true)]
        redis: Option<String>,
        /// Internal: run as one replica of a replicas demo, following this simulator.
        #[arg(long, hide = true)]
        attach: Option<String>,
        /// Internal: the replica's node id.
        #[arg(long, hide = true, default_value = "demo-1")]
        node_id: String,
        /// Share (0 to 1) of the simulated processors' pushed batches lost on the way, so
        /// that their lines come from PowerJob's log instead (issue 19).
        #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
        push_drop: f64,
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

/// Exit status of a configuration error (a user error; 1 is any other failure).
const EXIT_CONFIG: u8 = 2;

/// Errors are printed here, on one line and without a backtrace (anyhow would add one
/// under `RUST_BACKTRACE=1`, and repeat each cause under "Caused by").
fn main() -> ExitCode {
    // Before the runtime's threads exist: they pick their heaps at their first allocation.
    large_allocations_from_the_kernel();
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(serve(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            // Its message is whole: no context was added on the way.
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            // Configuration first: it says how to log. Its errors go to stderr (`main`).
            let config = Config::load_given(cli.config.as_deref())?;
            let server = &config.server;
            powertail::telemetry::init_logging(server.log_format == LogFormat::Json, &server.log_level)?;
            let listener = tokio::net::TcpListener::bind(server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", server.listen))?;
            let listen = listener.local_addr()?;
            let state = powertail::build(&config, listen)?;
            tracing::info!(%listen, "powertail serving");
            if config.archive.enabled() {
                // (Opened in the background: see `/readyz` and the log for its state.)
                tracing::info!(archive = %config.archive.redacted(), "archive configured");
            }
            // Say once, in the background, whether PowerJob can be reached; never wait for it.
            let client = state.logs.client().clone();
            tokio::spawn(async move { client.check_servers().await });
            powertail::run(listener, state, shutdown_signal()).await?;
        }
        Command::Demo { listen, scale, replicas, redis, attach, node_id, push_drop } => {
            powertail::telemetry::init_logging(false, "info")?;
            let config = cli.config.as_deref();
            match (attach, redis) {
                (Some(sim_url), Some(redis_url)) => {
                    let cluster = powertail::demo::ClusterOptions { redis_url, node_id };
                    powertail::demo::run_replica(listen, scale, config, &sim_url, &cluster, shutdown_signal()).await?;
                }
                (Some(_), None) => anyhow::bail!("--attach needs --redis"),
                (None, redis) if replicas > 1 || redis.is_some() => {
                    let options = powertail::demo::replicas::Options {
                        listen,
                        scale,
                        user_config: cli.config.clone(),
                        replicas,
                        redis,
                        push_drop,
                    };
                    powertail::demo::replicas::run(options, shutdown_signal()).await?;
                }
                (None, _) => powertail::demo::run(listen, scale, config, push_drop, shutdown_signal()).await?,
            }
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

/// `--push-drop`: a share in 0..=1.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number between 0 and 1")),
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
