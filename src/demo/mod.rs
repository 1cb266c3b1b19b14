//! `powertail demo`: an embedded PowerJob simulator with realistic LLM jobs, followed
//! by the adapter, with the viewer, on one command.
//!
//! The simulator's timings are scaled (flush 1 s, cache 2 s, sync 20 s) so that a vLLM
//! start-up completes in well under a minute; the adapter is configured to match, and
//! so is every replica of `powertail demo --replicas N` ([`replicas`]): one simulator,
//! N processes in cluster mode on one Redis, each with the demo's timings.
//!
//! The simulated processors of [`PUSHING_JOBS`] also push every line to the demo's
//! powertail as they log it (issue 19, [`pusher`]; `--push-drop` loses a share of the
//! batches), with `push.gap_wait_ms` and `push.quiet_ms` scaled like the other timings;
//! `multi-worker` pushes nothing, to show the polled path next to the pushed one.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use powerjob_sim::{JobScript, Level, PushFaults, Pusher, ScriptLine, ScriptWorker, SimConfig, SimJob, Simulator};

use crate::config::Config;

pub mod replicas;

/// The simulated PowerJob app the demo's replicas log in to.
pub const APP_NAME: &str = "llm-test-platform";
/// Its password (the simulator's; not a secret).
pub const APP_PASSWORD: &str = "secret";
/// Key prefix of the demo's replicas in Redis, apart from a deployment's (`pt`).
pub const KEY_PREFIX: &str = "powertail-demo";
/// The environment variable that hands a replica its Redis URL (`--redis`; kept off
/// the command line, which any user can read, as it may hold a password).
pub const ATTACH_REDIS_ENV: &str = "POWERTAIL_DEMO_REDIS";

const STARTUP_LOG: &str = include_str!("../../fixtures/llm/vllm-startup.log");
const OOM_LOG: &str = include_str!("../../fixtures/llm/vllm-oom.log");
const PORT_IN_USE_LOG: &str = include_str!("../../fixtures/llm/vllm-port-in-use.log");

/// The demo's jobs whose processors push their lines to powertail as they log them
/// (issue 19): every job but `multi-worker`, which shows the polled path alone.
pub const PUSHING_JOBS: [i64; 4] = [12, 13, 14, 15];

/// The start script's params the vLLM fixtures were recorded with: (value in the
/// text, param name), longest value first.
const RECORDED_PARAMS: [(&str, &str); 3] =
    [("/data/models/qwen-7b", "modelPath"), ("qwen-7b", "modelName"), ("8000", "port")];

/// A vLLM fixture as a script that reads its run's params: every recorded value
/// becomes `${param:-value}`, so that a run with `{"port": 8001}` logs port 8001, as the
/// real start script would (`JobScript::for_run`). A number is replaced only as a
/// whole number (not the `8000` inside `18000`).
fn reading_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut i = 0;
    'scan: while i < text.len() {
        let rest = &text[i..];
        for (value, param) in RECORDED_PARAMS {
            let numeric = value.bytes().all(|b| b.is_ascii_digit());
            let digit_before = text[..i].bytes().next_back().is_some_and(|b| b.is_ascii_digit());
            let digit_after = || rest[value.len()..].bytes().next().is_some_and(|b| b.is_ascii_digit());
            if rest.starts_with(value) && !(numeric && (digit_before || digit_after())) {
                out.push_str(&format!("${{{param}:-{value}}}"));
                i += value.len();
                continue 'scan;
            }
        }
        let c = rest.chars().next().expect("i < len, on a char boundary");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The demo's jobs: (name, PowerJob job id, description, script).
fn jobs() -> Vec<(&'static str, i64, &'static str, JobScript)> {
    let vllm = |log: &str, ms, status, result: &str| {
        JobScript::from_text(&reading_params(log), ms, status, &reading_params(result))
    };
    vec![
        (
            "vllm-start",
            12,
            "vLLM start-up of qwen-7b that succeeds (ready after ~25 s)",
            vllm(STARTUP_LOG, 30_000, 5, "qwen-7b started successfully, pid=12345"),
        ),
        (
            "vllm-oom",
            13,
            "vLLM start-up that fails: CUDA out of memory while sizing the KV cache",
            vllm(OOM_LOG, 20_000, 4, "exit code 1"),
        ),
        (
            "vllm-port-in-use",
            14,
            "vLLM start-up that fails: port 8000 already in use",
            vllm(PORT_IN_USE_LOG, 8_000, 4, "exit code 1"),
        ),
        ("noisy-batch", 15, "A long, noisy job: 30 000 lines in 40 s", noisy(30_000, 40_000)),
        ("multi-worker", 16, "A map job on 3 workers whose late batches land mid-log", multi_worker()),
    ]
}

fn noisy(n: i64, ms: i64) -> JobScript {
    let mut text = String::new();
    for k in 0..n {
        match k % 500 {
            0 => text.push_str(&format!("[WARN] shard {k}: slow disk, retrying\n")),
            250 => text.push_str(&format!("[INFO] checkpoint {} written\n", k / 500)),
            _ => text.push_str(&format!(
                "[INFO] processed batch {k}: 512 samples, loss={:.4}\n",
                2.0 / (1.0 + k as f64 / 1000.0)
            )),
        }
    }
    JobScript::from_text(&text, ms, 5, "done")
}

fn multi_worker() -> JobScript {
    let workers = vec![
        ScriptWorker { address: "10.0.0.21:27777".into(), clock_skew_ms: 0, flush_phase_ms: 0 },
        ScriptWorker { address: "10.0.0.22:27777".into(), clock_skew_ms: -1_500, flush_phase_ms: 400 },
        ScriptWorker { address: "10.0.0.23:27777".into(), clock_skew_ms: 700, flush_phase_ms: 800 },
    ];
    let mut lines = Vec::new();
    for k in 0..600 {
        let worker = (k % 3) as usize;
        lines.push(ScriptLine {
            at_ms: k * 40,
            level: if k % 97 == 0 { Level::Warn } else { Level::Info },
            content: format!("map task {k} on worker {}: {} records", worker + 1, 1_000 + k * 7),
            worker,
        });
    }
    JobScript { workers, lines, running_at_ms: 500, end_ms: 24_100, final_status: 5, result: "reduce done".into() }
}

/// A simulator with the demo jobs and the adapter configuration that follows it.
pub struct Demo {
    /// The running simulator.
    pub sim: powerjob_sim::SimHandle,
    /// The adapter's configuration (server, PowerJob, jobs).
    pub config: Config,
    /// The jobs: (name, job id, description).
    pub jobs: Vec<(&'static str, i64, &'static str)>,
}

/// Where a replica of the demo keeps its lines: `[cluster]` with this Redis.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `redis://…`
    pub redis_url: String,
    /// The replica's name in logs and metrics.
    pub node_id: String,
}

/// Starts the simulator with the demo jobs, every time `scale` times the demo's (1.0:
/// a vLLM start-up takes ~30 s; tests use less), and builds the matching configuration.
///
/// # Errors
/// When the simulator cannot bind a port.
pub async fn setup(listen: SocketAddr, scale: f64) -> anyhow::Result<Demo> {
    setup_with(listen, scale, None).await
}

/// As [`setup`], with the user's configuration file under the demo's own keys: the
/// file (`powertail demo --config FILE`), then the `POWERTAIL_*` overrides, then what
/// the demo sets itself (server address, PowerJob, timing, its jobs' ids and params).
/// Everything else of the user's applies, e.g. `[jobs.vllm-start.notify]`.
///
/// # Errors
/// When the simulator cannot bind a port, or the configuration is invalid.
pub async fn setup_with(listen: SocketAddr, scale: f64, user_config: Option<&Path>) -> anyhow::Result<Demo> {
    let sim = Simulator::spawn(sim_config(scale)).await.context("cannot start the PowerJob simulator")?;
    let config = config_for(listen, scale, user_config, &sim.url(), None)?;
    Ok(Demo { sim, config, jobs: jobs().iter().map(|(n, i, d, _)| (*n, *i, *d)).collect() })
}

/// The simulator of the demo: its jobs, its timings `scale` times the demo's, and (as
/// on a real server) instance ids that differ on every start.
pub fn sim_config(scale: f64) -> SimConfig {
    let ms = |v: f64| scaled_ms(v, scale) as i64;
    SimConfig {
        log_cache_ms: ms(2_000.0),
        worker_flush_ms: ms(1_000.0),
        sync_delay_ms: ms(20_000.0),
        jobs: jobs()
            .iter()
            .map(|(name, id, _, script)| SimJob {
                id: *id,
                name: (*name).to_owned(),
                job_params: String::new(),
                script: Some(Arc::new(script.scaled(scale))),
            })
            .collect(),
        ..SimConfig::default()
    }
}

/// The simulated processors' pushes to powertail at `addr` (the demo's own): the jobs of
/// [`PUSHING_JOBS`], with `drop` (0..=1) of their batches lost on the way, so that
/// their lines come from PowerJob's log instead, seconds later.
pub fn pusher(addr: SocketAddr, drop: f64) -> Pusher {
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let host = if addr.is_ipv6() && !addr.ip().is_unspecified() { format!("[{host}]") } else { host };
    Pusher::new(format!("http://{host}:{}", addr.port()))
        .jobs(PUSHING_JOBS)
        .faults(PushFaults { drop: drop.clamp(0.0, 1.0), ..PushFaults::default() })
}

/// `v` ms of the demo's time line at `scale`, at least 1.
fn scaled_ms(v: f64, scale: f64) -> u64 {
    (v * scale).round().max(1.0) as u64
}

/// The configuration of powertail following the demo's simulator at `sim_url` on
/// `listen`, its timings `scale` times the demo's, under the user's file (see
/// [`setup_with`]); with `cluster`, a replica in cluster mode.
///
/// # Errors
/// When the configuration is invalid (the user's file, an override, the Redis URL).
pub fn config_for(
    listen: SocketAddr,
    scale: f64,
    user_config: Option<&Path>,
    sim_url: &str,
    cluster: Option<&ClusterOptions>,
) -> anyhow::Result<Config> {
    let ms = |v: f64| scaled_ms(v, scale);
    let mut toml = format!(
        r#"
        [server]
        listen = "{listen}"
        [powerjob]
        addresses = [{sim_url:?}]
        app_name = {APP_NAME:?}
        app_password = {APP_PASSWORD:?}
        request_timeout_ms = 5000
        log_cache_ms = {cache}
        worker_flush_ms = {flush}
        clock_skew_ms = {skew}
        sync_delay_ms = {sync}
        [logs]
        refresh_interval_ms = {refresh}
        first_read_delay_ms = {first}
        [push]
        gap_wait_ms = {gap}
        quiet_ms = {quiet}
        "#,
        cache = ms(2_000.0),
        flush = ms(1_000.0),
        skew = ms(500.0),
        sync = ms(20_000.0),
        refresh = ms(500.0).max(10),
        first = ms(1_500.0),
        gap = ms(2_000.0),
        quiet = ms(15_000.0),
    );
    if let Some(cluster) = cluster {
        toml.push_str(&format!(
            "[cluster]\nredis_url = {:?}\nkey_prefix = {KEY_PREFIX:?}\nnode_id = {:?}\n",
            cluster.redis_url, cluster.node_id
        ));
    }
    for (name, id, description, _) in &jobs() {
        toml.push_str(&format!("[jobs.{name}]\njob_id = {id}\ndescription = {description:?}\n"));
    }
    toml.push_str(
        "[jobs.vllm-start.params]\nmodelName = \"qwen-7b\"\nmodelPath = \"/data/models/qwen-7b\"\nport = 8000\n",
    );
    Ok(Config::load_under(user_config, &toml)?)
}

/// Runs the demo, its times `scale` times the demo's, until `shutdown` resolves, with
/// `user_config` under its own keys (see [`setup_with`]); the pushing jobs lose
/// `push_drop` (0..=1) of their batches.
///
/// # Errors
/// When a listener cannot be bound, or the configuration is invalid.
pub async fn run(
    listen: SocketAddr,
    scale: f64,
    user_config: Option<&Path>,
    push_drop: f64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut demo = setup_with(listen, scale, user_config).await?;
    // The archive (issue 20): a SQLite file in the demo's own temporary directory, unless
    // the user's file names one.
    let archive_dir = std::env::temp_dir().join(format!("powertail-demo-{}", std::process::id()));
    if !demo.config.archive.enabled() {
        std::fs::create_dir_all(&archive_dir).with_context(|| format!("cannot create {}", archive_dir.display()))?;
        let url = format!("sqlite://{}/archive.db", archive_dir.display());
        demo.config.archive.url = secrecy::SecretString::from(url);
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let state = crate::build(&demo.config, addr)?;
    demo.sim.set_pusher(Some(pusher(addr, push_drop)));
    let base = format!("http://{addr}");
    println!(
        "\npowertail demo: a simulated PowerJob server at {sim_url} and powertail at {base}\n\n  \
         viewer:    {base}/\n\n{try_it}\n  \
         jobs: {jobs}\n\n{pushing}\n  \
         webhooks: powertail demo --config FILE, with [jobs.vllm-start.notify] url = \"http://127.0.0.1:<port>/…\"\n  \
         replicas: powertail demo --replicas 2 --redis redis://127.0.0.1:6379/0 (README \"Running several replicas\")\n\n\
         Ctrl-C stops.\n",
        sim_url = demo.sim.url(),
        try_it = try_it(&base),
        jobs = demo.jobs.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", "),
        pushing = pushing(push_drop),
    );
    crate::run(listener, state, shutdown).await?;
    drop(demo);
    let _ = std::fs::remove_dir_all(&archive_dir);
    Ok(())
}

/// The banner's "pushing:" block (issue 19): what pushes, and what to look at.
fn pushing(drop: f64) -> String {
    let dropped = if drop > 0.0 {
        format!(
            "{:.0} % of the pushed batches are dropped on the way (--push-drop {drop}): their lines\n             \
             come from PowerJob's log seconds later, in place, once each",
            drop * 100.0
        )
    } else {
        "--push-drop 0.2 drops a fifth of the pushed batches: their lines then come from\n             \
         PowerJob's log seconds later, in place, once each"
            .to_owned()
    };
    format!(
        "  pushing:  vllm-start, vllm-oom, vllm-port-in-use and noisy-batch push every line as they log it\n             \
         (within a fraction of a second; the viewer's header says \"pushed\", `push` in answers counts them);\n             \
         multi-worker pushes nothing: its lines arrive by PowerJob's poll alone, 1 to 3 s late here.\n             \
         {dropped}.\n"
    )
}

/// The banner's "try:" block, against `base`.
fn try_it(base: &str) -> String {
    format!(
        "  try:\n    \
         curl -s -X POST {base}/llm/jobs/vllm-start/run -H 'Content-Type: application/json' -d '{{\"instanceParams\":{{\"port\":8001}}}}'\n    \
         curl -s '{base}/llm/logs?instanceId=<instanceId>&fromLine=0'\n    \
         curl -s '{base}/llm/logs?instanceId=<instanceId>&fromLine=<nextLine>&waitMs=10000'\n    \
         curl -s {base}/llm/instances/<instanceId>\n    \
         curl -s '{base}/llm/instances/<instanceId>/startup?waitMs=20000'   # the run's startupUrl: phase, progress, cause\n    \
         curl -s '{base}/llm/search?q=out%20of%20memory'   # every archived run that hit it\n    \
         curl -s {base}/llm/jobs/vllm-oom/stats\n    \
         curl -s {base}/metrics\n"
    )
}

/// One replica of `powertail demo --replicas N` (a child process the demo starts):
/// powertail in cluster mode following the demo's simulator at `sim_url`, with the
/// demo's timings and jobs, until `shutdown` resolves. Prints nothing: the demo prints
/// the banner.
///
/// # Errors
/// When the listener cannot be bound, or the configuration is invalid.
pub async fn run_replica(
    listen: SocketAddr,
    scale: f64,
    user_config: Option<&Path>,
    sim_url: &str,
    cluster: &ClusterOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = config_for(listen, scale, user_config, sim_url, Some(cluster))?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let state = crate::build(&config, listener.local_addr()?)?;
    crate::run(listener, state, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_read_model_and_port_from_the_run_params() {
        assert_eq!(
            reading_params("start qwen-7b: modelPath=/data/models/qwen-7b port=8000 18000 80001 :8000/health"),
            "start ${modelName:-qwen-7b}: modelPath=${modelPath:-/data/models/qwen-7b} port=${port:-8000} 18000 80001 \
             :${port:-8000}/health"
        );
        let script = JobScript::from_text(&reading_params(STARTUP_LOG), 30_000, 5, "ok");
        // Without params a run logs the fixture exactly as recorded.
        let recorded: Vec<&str> = STARTUP_LOG.lines().collect();
        let played = script.for_run("", None);
        assert_eq!(played.lines.iter().map(|l| l.content.as_str()).collect::<Vec<_>>(), recorded);
        // With params it logs them, and nothing of the recorded ones.
        let played = script.for_run("", Some(r#"{"modelName": "llama-3-8b", "port": 8001}"#));
        let text: Vec<&str> = played.lines.iter().map(|l| l.content.as_str()).collect();
        assert!(
            text[0].contains("start llama-3-8b: modelName=llama-3-8b modelPath=/data/models/qwen-7b port=8001"),
            "{}",
            text[0]
        );
        assert!(text.iter().any(|l| l.contains("http://127.0.0.1:8001/health")));
        assert!(!text.iter().any(|l| l.contains("port 8000") || l.contains(":8000")), "{text:#?}");
    }

    #[test]
    fn the_demo_pushes_to_its_own_powertail_and_multi_worker_pushes_nothing() {
        let p = pusher("0.0.0.0:8080".parse().unwrap(), 0.2);
        assert_eq!(p.urls, ["http://127.0.0.1:8080"]);
        assert!((p.faults.drop - 0.2).abs() < f64::EPSILON);
        let pushed = p.jobs.clone().unwrap();
        let ids: Vec<i64> = jobs().iter().map(|j| j.1).collect();
        assert_eq!(ids.iter().filter(|id| !pushed.contains(id)).collect::<Vec<_>>(), [&16], "one job pushes nothing");
        let p = pusher("[::1]:9000".parse().unwrap(), 3.0);
        assert_eq!(p.urls, ["http://[::1]:9000"]);
        assert!((p.faults.drop - 1.0).abs() < f64::EPSILON);
        assert!(pushing(0.2).contains("20 % of the pushed batches are dropped"), "{}", pushing(0.2));
        assert!(pushing(0.0).contains("--push-drop 0.2"));
    }

    /// Issue 21: replicas used powertail's default timings, so logs completed at 46 s
    /// instead of 34 s. Every replica gets the demo's, and the simulator's match them.
    #[test]
    fn a_replica_has_the_demos_timings_and_the_cluster_section() {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cluster = ClusterOptions { redis_url: "redis://127.0.0.1:6379/0".into(), node_id: "demo-2".into() };
        let single = config_for(listen, 0.5, None, "http://127.0.0.1:1", None).unwrap();
        let replica = config_for(listen, 0.5, None, "http://127.0.0.1:1", Some(&cluster)).unwrap();
        assert!(single.cluster.is_none());
        let timings = |c: &Config| {
            let (p, l) = (&c.powerjob, &c.logs);
            (p.log_cache_ms, p.worker_flush_ms, p.sync_delay_ms, l.refresh_interval_ms, l.first_read_delay_ms)
        };
        assert_eq!(timings(&replica), timings(&single));
        assert_eq!(timings(&replica), (1_000, 500, 10_000, 250, 750));
        let sim = sim_config(0.5);
        assert_eq!((sim.log_cache_ms, sim.worker_flush_ms, sim.sync_delay_ms), (1_000, 500, 10_000));
        let c = replica.cluster.as_ref().expect("cluster mode");
        assert_eq!((c.key_prefix.as_str(), c.node_id.as_deref()), (KEY_PREFIX, Some("demo-2")));
    }
}
