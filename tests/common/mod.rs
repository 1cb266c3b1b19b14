//! The one test harness, shared by every test binary and by the benchmarks
//! (`#[path = "../tests/common/mod.rs"]`): the simulator and the real router, each on
//! 127.0.0.1:0, with the server's timing scaled down so that a whole job lifecycle takes
//! seconds.
//!
//! - [`TestApp`]: a simulator and powertail in front of it ([`TestApp::spawn`],
//!   [`TestApp::spawn_with`], [`TestApp::spawn_app`]), or the demo ([`TestApp::demo`]).
//! - [`Server`]: one powertail in this process on its own port, memory or cluster mode
//!   (whatever its config says); [`Server::stop`] returns once it really stopped.
//! - [`wait_until`] / [`wait_for`]: poll a condition until a deadline (never a fixed sleep).
//! - [`steps`]: a builder for simulated jobs (`steps(300).over(2_000).job(12)`).
//! - [`cluster`]: a real `redis-server` per test, replicas as child processes, `[cluster]`
//!   configuration.
//! - [`postgres`]: a real PostgreSQL per test (`initdb` in a temporary directory, loopback port).
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod browser;
pub mod cluster;
pub mod postgres;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use powertail::clock::Clock;
use powertail::config::Config;
use powertail::sim::{
    JobScript, Level, Record, ScriptLine, ScriptWorker, SimClock, SimConfig, SimCore, SimHandle, SimJob, Simulator,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Scaled server timing: flush 200 ms, cache 300 ms, sync 2 s.
pub fn fast_sim() -> SimConfig {
    SimConfig { log_cache_ms: 300, worker_flush_ms: 200, sync_delay_ms: 2_000, ..SimConfig::default() }
}

/// The adapter's configuration for a simulator at `urls`, timing matched to [`fast_sim`].
pub fn app_config(urls: &[String], extra_powerjob: &str) -> Config {
    Config::from_toml(&app_config_toml(urls, extra_powerjob)).expect("test config")
}

/// The TOML text of [`app_config`]: `[powerjob]` (with `extra_powerjob` inside it) and
/// `[logs]`, one key per line (what [`cluster::merge_toml`] expects).
pub fn app_config_toml(urls: &[String], extra_powerjob: &str) -> String {
    let addresses: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[powerjob]\n\
         addresses = [{}]\n\
         app_name = \"llm-test-platform\"\n\
         app_password = \"secret\"\n\
         request_timeout_ms = 1500\n\
         log_cache_ms = 300\n\
         worker_flush_ms = 200\n\
         clock_skew_ms = 100\n\
         sync_delay_ms = 2000\n\
         {extra_powerjob}\n\
         [logs]\n\
         refresh_interval_ms = 50\n\
         first_read_delay_ms = 300\n",
        addresses.join(", ")
    )
}

/// One powertail in this process: `powertail::build` + `powertail::run` on 127.0.0.1 and
/// a free port (the config's `listen` is ignored), memory or cluster mode as its config
/// says. Dropping it shuts it down without waiting; [`Server::stop`] waits.
pub struct Server {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub http: reqwest::Client,
    pub logs: powertail::service::LogService,
    /// The time of day it reads (see [`TestApp::clock`]).
    pub clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serves `config` on the wall clock.
    pub async fn start(config: &Config) -> Self {
        Self::start_with_clock(config, Clock::real()).await
    }

    /// Serves `config`, reading the time of day from `clock`.
    pub async fn start_with_clock(config: &Config, clock: Clock) -> Self {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = powertail::build_with_clock(config, addr, clock.clone()).unwrap();
        let logs = state.logs.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(powertail::run(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            logs,
            clock,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// [`start`](Self::start) with configuration text (e.g. from [`cluster::cluster_config`]).
    pub async fn start_toml(config_toml: &str) -> Self {
        let config = Config::from_toml(config_toml).unwrap_or_else(|e| panic!("{e}\n{config_toml}"));
        Self::start(&config).await
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Begins a graceful shutdown (as SIGTERM would) without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts it down as SIGTERM would, and returns once it stopped (at most 15 s):
    /// its listener is closed and its tasks are done.
    pub async fn stop(mut self) {
        self.begin_stop();
        let server = self.server.take().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(15), server).await.expect("the server stops");
        result.expect("the server task").expect("the server's listener");
    }

    /// `GET path` → (status, JSON body, or the text as a JSON string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// `GET path`, which must answer 200: its JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// `POST /llm/jobs/{job}/run` of a configured job, which must answer 201: its JSON body.
    pub async fn run_named(&self, job: &str) -> Value {
        let resp = self.http.post(format!("{}/llm/jobs/{job}/run", self.base)).send().await.unwrap();
        assert_eq!(resp.status(), 201, "run {job}");
        resp.json().await.unwrap()
    }
}

/// A running adapter in front of a running simulator. Derefs to its [`Server`]
/// (`app.base`, `app.http`, `app.logs`, `app.clock`).
///
/// Time: [`TestApp::spawn`], [`TestApp::spawn_with`] and [`TestApp::spawn_config`] give
/// the simulator and the adapter one [`Clock::manual`]: `app.clock.advance(d)` moves
/// both forward at once (a scripted run plays `d` further, a sync delay or a completion
/// window passes) instead of the test sleeping. The other constructors use the wall
/// clock (advancing it panics).
pub struct TestApp {
    pub sim: SimHandle,
    pub server: Server,
}

impl Deref for TestApp {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl TestApp {
    /// Simulator with `sim_cfg`, adapter with the matching fast timing.
    pub async fn spawn(sim_cfg: SimConfig) -> Self {
        Self::spawn_with(sim_cfg, "").await
    }

    /// As [`TestApp::spawn`], with extra `[powerjob]` keys for the adapter.
    pub async fn spawn_with(sim_cfg: SimConfig, extra_powerjob: &str) -> Self {
        Self::spawn_config(sim_cfg, extra_powerjob, |_| {}).await
    }

    /// As [`TestApp::spawn_with`], with `f` applied to the adapter's configuration.
    pub async fn spawn_config(mut sim_cfg: SimConfig, extra_powerjob: &str, f: impl FnOnce(&mut Config)) -> Self {
        let clock = shared_clock(&mut sim_cfg);
        let sim = Simulator::spawn(sim_cfg).await.expect("simulator");
        let mut config = app_config(&[sim.url()], extra_powerjob);
        f(&mut config);
        TestApp { sim, server: Server::start_with_clock(&config, clock).await }
    }

    /// The adapter with an explicit configuration in front of `sim`.
    pub async fn spawn_app(sim: SimHandle, config: &Config) -> Self {
        TestApp { sim, server: Server::start(config).await }
    }

    /// `powertail demo` with every time `scale` times the demo's (0.1: a vLLM start-up
    /// takes ~3 s), `f` applied to its configuration.
    pub async fn demo(scale: f64, f: impl FnOnce(&mut Config)) -> Self {
        Self::demo_with(scale, None, f).await
    }

    /// [`TestApp::demo`] with a user configuration file merged in (`powertail demo --config`).
    pub async fn demo_with(scale: f64, user_config: Option<&std::path::Path>, f: impl FnOnce(&mut Config)) -> Self {
        let mut demo = powertail::demo::setup_with("127.0.0.1:0".parse().unwrap(), scale, user_config).await.unwrap();
        f(&mut demo.config);
        Self::spawn_app(demo.sim, &demo.config).await
    }

    /// Runs job `job_id` in the simulator now; the new instance's id.
    pub fn run_job(&self, job_id: i64) -> i64 {
        run_job(&self.sim, job_id)
    }

    /// Shuts the adapter down and waits until it stopped (the simulator stays).
    pub async fn stop(self) -> SimHandle {
        self.server.stop().await;
        self.sim
    }

    /// One `/llm/logs` read that must succeed.
    pub async fn logs(&self, id: i64, from: u64) -> Value {
        let (status, body) = self.get(&format!("/llm/logs?instanceId={id}&fromLine={from}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// One long-poll `/llm/logs` read that must succeed.
    pub async fn logs_wait(&self, id: i64, from: u64, wait_ms: u32) -> Value {
        let (status, body) = self.get(&format!("/llm/logs?instanceId={id}&fromLine={from}&waitMs={wait_ms}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Follows the log like a browser (poll, send back `nextLine`) until `complete`,
    /// checking the cursor contract on every answer. Returns every line served.
    pub async fn follow(&self, id: i64, deadline: Duration) -> Follow {
        self.follow_from(id, Vec::new(), deadline).await
    }

    /// As [`TestApp::follow`], continuing after the lines already read.
    pub async fn follow_from(&self, id: i64, read: Vec<String>, deadline: Duration) -> Follow {
        let until = tokio::time::Instant::now() + deadline;
        let mut lines: Vec<String> = read;
        let mut answers = Vec::new();
        loop {
            let body = self.logs(id, lines.len() as u64).await;
            assert_eq!(body["instanceId"], Value::String(id.to_string()));
            assert_eq!(body["fromLine"].as_u64().unwrap(), lines.len() as u64);
            let got: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
            assert_eq!(body["nextLine"].as_u64().unwrap(), lines.len() as u64 + got.len() as u64, "{body}");
            assert!(body["totalLines"].as_u64().unwrap() >= body["nextLine"].as_u64().unwrap());
            lines.extend(got);
            answers.push(body.clone());
            if body["complete"] == Value::Bool(true) {
                return Follow { lines, last: body, answers };
            }
            assert!(tokio::time::Instant::now() < until, "not complete in {deadline:?}; last answer {body}");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
}

/// What a follow ended with.
pub struct Follow {
    pub lines: Vec<String>,
    pub last: Value,
    pub answers: Vec<Value>,
}

/// The lines sorted, for comparisons where late lines were appended at the end.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Logs to the test output when `RUST_LOG` is set (`RUST_LOG=powertail=debug cargo test`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}

/// A [`Clock::manual`] that `sim_cfg`'s simulator reads too: give it to
/// [`Server::start_with_clock`], and `clock.advance(d)` moves both forward.
pub fn shared_clock(sim_cfg: &mut SimConfig) -> Clock {
    let clock = Clock::manual();
    sim_cfg.clock = SimClock::from_fn(clock.now_fn());
    clock
}

/// In `c` at `now`: an instance of job 12 that started `ago_ms` before, logged
/// `contents` (one INFO record each, 1 ms apart, from `ago_ms * 5/6` before), delivered
/// `ago_ms * 4/6` before, and, when `finished`, succeeded `ago_ms / 2` before.
pub fn logged_instance(
    c: &mut SimCore,
    now: i64,
    ago_ms: i64,
    contents: impl IntoIterator<Item = String>,
    finished: bool,
) -> i64 {
    let id = c.create_instance(12, None, now - ago_ms);
    c.dispatch(id, now - ago_ms);
    c.set_running(id, now - ago_ms);
    let records = contents
        .into_iter()
        .zip(0..)
        .map(|(content, k)| Record {
            log_time: now - ago_ms * 5 / 6 + k,
            level: Level::Info,
            content,
            worker: "10.0.0.21:27777".into(),
        })
        .collect();
    c.deliver(id, records, now - ago_ms * 4 / 6);
    if finished {
        c.finish(id, 5, "ok", now - ago_ms / 2);
    }
    id
}

/// An instance of job 12 that logged `n` lines (`{tag} processed batch {k}: …`) long
/// ago, then finished (`finished`) or logs nothing more for now; the arrivals and syncs
/// are applied at once (left to the first request, a thousand such logs would stall the
/// simulator past a client's timeout).
pub fn delivered_instance(sim: &SimHandle, n: i64, tag: &str, finished: bool) -> i64 {
    sim.with_core(|c, now| {
        let contents = (0..n).map(|k| format!("{tag} processed batch {k}: 512 samples, loss=0.{:04}", k % 10_000));
        let id = logged_instance(c, now, 600_000, contents, finished);
        c.tick(now);
        id
    })
}

/// The value of the first Prometheus sample whose line starts with `name`, 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0)
}

/// Runs job `job_id` in `sim` now; the new instance's id.
pub fn run_job(sim: &SimHandle, job_id: i64) -> i64 {
    sim.with_core(|c, now| c.run_job(job_id, None, 0, now)).unwrap_or_else(|e| panic!("job {job_id}: {e:?}"))
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `deadline`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(deadline, what, || {
        let fut = cond();
        async move { fut.await.then_some(()) }
    })
    .await;
}

/// Polls `probe` every 20 ms until it yields a value and returns it; panics naming
/// `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < until, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A deadline for loops that poll with their own state (long-polls that collect what
/// they read): `let d = Deadline::after(DEADLINE); loop { …; d.check(|| format!(…)); }`.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    until: tokio::time::Instant,
    within: Duration,
}

impl Deadline {
    /// `within` from now.
    pub fn after(within: Duration) -> Self {
        Deadline { until: tokio::time::Instant::now() + within, within }
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        tokio::time::Instant::now() >= self.until
    }

    /// What is left of it (zero once passed).
    pub fn left(&self) -> Duration {
        self.until.saturating_duration_since(tokio::time::Instant::now())
    }

    /// Panics with "not within …: `what()`" once it has passed.
    #[track_caller]
    pub fn check<D: std::fmt::Display>(&self, what: impl FnOnce() -> D) {
        assert!(!self.passed(), "not within {:?}: {}", self.within, what());
    }
}

/// A simulated job of `n` numbered lines: `steps(300).over(2_000).job(12)`.
pub fn steps(n: usize) -> Steps {
    Steps {
        n,
        ms: 1_000,
        text: Box::new(|k, n| format!("[INFO] step {k} of {n}")),
        final_status: 5,
        result: "ok".into(),
        late: 0,
    }
}

/// The builder [`steps`] returns.
pub struct Steps {
    n: usize,
    ms: i64,
    text: Box<dyn Fn(usize, usize) -> String>,
    final_status: i32,
    result: String,
    late: usize,
}

impl Steps {
    /// The lines spread evenly over `ms` (default 1 s); the final status right after.
    pub fn over(mut self, ms: i64) -> Self {
        self.ms = ms;
        self
    }

    /// Line `k` of `n` is `text(k, n)` (default `[INFO] step {k} of {n}`).
    pub fn text(mut self, text: impl Fn(usize, usize) -> String + 'static) -> Self {
        self.text = Box::new(text);
        self
    }

    /// The final status (default 5, SUCCEED) and its `result` (default `ok`).
    pub fn ends(mut self, final_status: i32, result: &str) -> Self {
        self.final_status = final_status;
        self.result = result.to_owned();
        self
    }

    /// A second worker whose clock is 400 ms behind logs `late` lines (`worker-2 shard
    /// {k}`) meanwhile: its batches sort before lines already served (mid-log inserts
    /// upstream, appended at the end by powertail).
    pub fn late(mut self, late: usize) -> Self {
        self.late = late;
        self
    }

    /// The script.
    pub fn script(&self) -> JobScript {
        let text: String = (0..self.n).map(|k| (self.text)(k, self.n) + "\n").collect();
        let mut s = JobScript::from_text(&text, self.ms, self.final_status, &self.result);
        if self.late > 0 {
            s.workers.push(ScriptWorker {
                address: "10.0.0.22:27777".into(),
                clock_skew_ms: -400,
                flush_phase_ms: 130,
            });
            let step = self.ms / self.late as i64;
            for k in 0..self.late {
                s.lines.push(ScriptLine {
                    at_ms: k as i64 * step,
                    level: Level::Info,
                    content: format!("worker-2 shard {k}"),
                    worker: 1,
                });
            }
        }
        s
    }

    /// Job `id` playing the script.
    pub fn job(&self, id: i64) -> SimJob {
        sim_job(id, self.script())
    }

    /// [`fast_sim`] with job `id` playing the script.
    pub fn sim(&self, id: i64) -> SimConfig {
        SimConfig { jobs: vec![self.job(id)], ..fast_sim() }
    }
}

/// Job `id` (named `j`) playing `script`.
pub fn sim_job(id: i64, script: JobScript) -> SimJob {
    SimJob { id, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }
}
