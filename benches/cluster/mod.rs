//! Cluster-mode scenarios (issue 12): replicas that share one line log on a real
//! `redis-server`, which the bench starts itself on a free loopback port
//! ([`REDIS_SERVER`], Debian's package; `scripts/bench.sh --cluster` installs it).
//!
//! `cargo bench --bench bench -- cluster` runs all of them; each also by name
//! ([`SCENARIOS`]). The default run (no arguments) runs none of them, so it needs no
//! Redis. As in the other scenarios, every figure has its baseline measured in the same
//! run, on loopback, and every loop is bounded.
//!
//! Replicas run in this process (`powertail::build` + `powertail::run`, each with its
//! own store, Redis connections and subscriber), except in the takeover scenario, which
//! kills the real binary with SIGKILL.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use powertail::sim::{JobScript, Level, Record, SimConfig, SimHandle, SimJob, Simulator};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::cluster::{redis_available, RedisServer, Replica, REDIS_SERVER};
use crate::common::Server;
mod hotpath;
mod memory;
mod readload;
mod takeover;
mod upstream;
mod wakeup;

/// The cluster scenarios, in the order `cluster` runs them.
pub const SCENARIOS: [&str; 6] =
    ["cluster-upstream", "cluster-hotpath", "cluster-memory", "cluster-takeover", "cluster-wakeup", "cluster-readload"];

/// Runs one cluster scenario (a name from [`SCENARIOS`]) against its own Redis.
pub async fn run(name: &str) {
    let Some(redis) = Redis::start().await else {
        println!("## {name}\n\n{REDIS_SERVER} is missing (`scripts/bench.sh --cluster` installs it); skipped.\n");
        return;
    };
    // The machine may be shared: say how busy it was (the ratios are what to read).
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("<!-- {name}: load average at the start {} -->\n", load.join(" "));
    match name {
        "cluster-upstream" => upstream::upstream(&redis).await,
        "cluster-hotpath" => hotpath::hotpath(&redis).await,
        "cluster-memory" => memory::memory(&redis).await,
        "cluster-takeover" => takeover::takeover(&redis).await,
        "cluster-wakeup" => wakeup::wakeup(&redis).await,
        "cluster-readload" => readload::readload(&redis).await,
        _ => unreachable!("{name}"),
    }
}

// ---- Redis -------------------------------------------------------------------------------

/// The harness's `redis-server` ([`RedisServer`]: 127.0.0.1, a free port, no
/// persistence, `maxmemory-policy noeviction`; killed on drop), with an async connection
/// for the scenarios' commands and a client for subscriptions.
struct Redis {
    server: RedisServer,
    conn: redis::aio::MultiplexedConnection,
    client: redis::Client,
}

impl Redis {
    /// `None` when the binary is missing.
    async fn start() -> Option<Redis> {
        if !redis_available() {
            return None;
        }
        let server = RedisServer::start(); // returns once it answers PING
        let client = redis::Client::open(server.url()).unwrap();
        let conn = client.get_multiplexed_async_connection().await.unwrap();
        Some(Redis { server, conn, client })
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// One command; panics on an error.
    async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// `CONFIG RESETSTAT`: the command counters start from zero.
    async fn reset_stats(&self) {
        let _: () = self.cmd(&["CONFIG", "RESETSTAT"]).await;
    }

    /// Calls per command since the last reset (`INFO commandstats`), lower-case names.
    async fn calls(&self) -> HashMap<String, u64> {
        let info: String = self.cmd(&["INFO", "commandstats"]).await;
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    /// `MEMORY USAGE key SAMPLES 0` (every element counted); 0 when there is no such key.
    async fn memory_usage(&self, key: &str) -> u64 {
        let n: Option<u64> = self.cmd(&["MEMORY", "USAGE", key, "SAMPLES", "0"]).await;
        n.unwrap_or(0)
    }

    /// Commit messages (`"<id> <committed>"` on `<prefix>:appended`) with the time they
    /// came, collected by a task until the returned sender is dropped or fired.
    async fn collect_commits(&self, prefix: &str) -> (Arc<Mutex<Vec<(Instant, i64, u64)>>>, oneshot::Sender<()>) {
        let mut pubsub = self.client.get_async_pubsub().await.unwrap();
        pubsub.subscribe(format!("{prefix}:appended")).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let out = seen.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { return };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        if let Some((id, n)) = payload.split_once(' ') {
                            if let (Ok(id), Ok(n)) = (id.parse(), n.parse()) {
                                out.lock().unwrap().push((Instant::now(), id, n));
                            }
                        }
                    }
                    _ = &mut stopped => return,
                }
            }
        });
        (seen, stop)
    }
}

// ---- replicas ----------------------------------------------------------------------------

/// A replica's `[cluster]` keys: Redis, key prefix, node id, extra lines.
struct Shared<'a> {
    redis_url: String,
    prefix: &'a str,
    node: String,
    extra: &'a str,
}

/// The configuration text of one powertail (no `[server]` table): PowerJob at `pj`,
/// the server's cache and flush times, the refresh interval, and a `[cluster]` section
/// when `shared` is set (memory mode otherwise).
fn config_text(pj: &str, cache_ms: u64, flush_ms: u64, refresh_ms: u64, shared: Option<&Shared<'_>>) -> String {
    let mut text = format!(
        "[powerjob]\naddresses = [\"{pj}\"]\napp_name = \"llm-test-platform\"\napp_password = \"secret\"\n\
         request_timeout_ms = 10000\nlog_cache_ms = {cache_ms}\nworker_flush_ms = {flush_ms}\nclock_skew_ms = 100\n\
         [logs]\nrefresh_interval_ms = {refresh_ms}\nfirst_read_delay_ms = 200\n"
    );
    if let Some(s) = shared {
        text.push_str(&format!(
            "[cluster]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nnode_id = \"{}\"\n{}\n",
            s.redis_url, s.prefix, s.node, s.extra
        ));
    }
    text
}

/// One powertail in this process on a free port (the harness's [`Server`]).
type Node = Server;

/// The real binary as a child process on a fixed free port, so that it can be killed
/// with SIGKILL and started again at the same place (the harness's [`Replica`]).
type Process = Replica;

/// Upstream requests as one PowerJob saw them: (which endpoint, path, when).
type RequestLog = Arc<Mutex<Vec<(usize, String, Instant)>>>;

/// Serves `sim` on another free port whose requests are logged with tag `k` (the
/// simulator's own counters count them too), so that each replica can be given its own
/// PowerJob address and every upstream request names the replica that made it.
async fn tagged_endpoint(sim: &SimHandle, k: usize, log: RequestLog) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = sim.router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((k, req.uri().path().to_owned(), Instant::now()));
                next.run(req).await
            }
        },
    ));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, task)
}

// ---- clients -----------------------------------------------------------------------------

/// One `/llm/logs` answer that parsed, or `None` (any failure).
async fn try_json(http: &reqwest::Client, url: &str, timeout: Duration) -> Option<Value> {
    get_status(http, url, timeout).await.ok()
}

/// One answer: the JSON of a 200, or the failure (`"503"`, `"error"`).
async fn get_status(http: &reqwest::Client, url: &str, timeout: Duration) -> Result<Value, String> {
    let resp = http.get(url).timeout(timeout).send().await.map_err(|_| "error".to_owned())?;
    if resp.status() != 200 {
        return Err(resp.status().as_u16().to_string());
    }
    resp.json().await.map_err(|_| "bad json".to_owned())
}

/// Failed polls by kind (status code, `error`).
type Failures = Arc<Mutex<std::collections::BTreeMap<String, u64>>>;

fn failures_text(f: &Failures) -> String {
    f.lock().unwrap().iter().map(|(k, v)| format!("{v} × {k}")).collect::<Vec<_>>().join(", ")
}

/// Long-polling watchers until `until` (`waitMs` [`WAIT_MS`], the client library's default): each poll of each watcher goes
/// to the next of `bases` in turn (round-robin through a load balancer). Counts the polls
/// and the failed ones by kind, and the age of every line received from a
/// [`running_job`] (time received − time the job logged it: the flush, the server's
/// cache and powertail's own delay).
#[derive(Clone)]
struct Watchers {
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
    until: Instant,
    polls: Arc<AtomicU64>,
    failures: Failures,
    ages: Arc<Mutex<Vec<(Instant, f64)>>>,
}

impl Watchers {
    fn new(bases: Vec<String>, until: Instant) -> Self {
        Watchers {
            http: reqwest::Client::builder().pool_max_idle_per_host(4096).build().unwrap(),
            bases: Arc::new(bases),
            until,
            polls: Arc::default(),
            failures: Arc::default(),
            ages: Arc::default(),
        }
    }

    /// One watcher of `id` (a run of [`running_job`] started at `started_ms`) from line
    /// 0, after `delay`, its first poll to `bases[first]`.
    fn spawn(&self, id: i64, started_ms: i64, first: usize, delay: Duration) -> JoinHandle<()> {
        let w = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut from = 0u64;
            let mut k = first;
            while Instant::now() < w.until {
                let base = &w.bases[k % w.bases.len()];
                k += 1;
                w.polls.fetch_add(1, Ordering::Relaxed);
                let url = format!("{base}/llm/logs?instanceId={id}&fromLine={from}&waitMs={WAIT_MS}");
                match get_status(&w.http, &url, Duration::from_secs(30)).await {
                    Ok(v) => {
                        let (now, at) = (Instant::now(), Simulator::now());
                        if let Some(lines) = v["lines"].as_array() {
                            let mut ages = w.ages.lock().unwrap();
                            for step in lines.iter().filter_map(|l| step_of(l.as_str()?)) {
                                ages.push((now, (at - started_ms - step * JOB_LINE_MS) as f64));
                            }
                        }
                        from = v["nextLine"].as_u64().unwrap_or(from);
                        if v["complete"] == true {
                            return;
                        }
                    }
                    Err(kind) => {
                        *w.failures.lock().unwrap().entry(kind).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    }

    fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Ages (ms) of the lines received between `from` and `to`.
    fn ages(&self, from: Instant, to: Instant) -> Vec<f64> {
        self.ages.lock().unwrap().iter().filter(|a| a.0 >= from && a.0 <= to).map(|a| a.1).collect()
    }
}

/// The watchers' `waitMs`: the default of `powertail.js` and the Python client.
const WAIT_MS: u64 = 15_000;

/// `k` of a line of [`running_job`] (`… step <k>: …`).
fn step_of(line: &str) -> Option<i64> {
    let rest = &line[line.find(" step ")? + " step ".len()..];
    rest[..rest.find(':')?].parse().ok()
}

/// [`running_job`]'s pace: a line every 50 ms (20 lines/s).
const JOB_LINE_MS: i64 = 50;

/// A running job of `lines` lines, one every [`JOB_LINE_MS`].
fn running_job(lines: usize) -> SimJob {
    let mut text = String::new();
    for k in 0..lines {
        text.push_str(&format!("[INFO] step {k}: tokens/s=1234.5 kv_cache=41.2% prompt_throughput=88.1\n"));
    }
    let script = JobScript::from_text(&text, lines as i64 * JOB_LINE_MS, 5, "ok");
    SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }
}

/// A running instance that logged `n` lines long ago and logs nothing more for now.
fn growing_instance(sim: &SimHandle, n: i64, tag: &str) -> i64 {
    crate::common::delivered_instance(sim, n, tag, false)
}

/// The `p`-th percentile (nearest rank) of `v`, sorted in place.
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn prefix(name: &str) -> String {
    format!("bench{}.{name}", std::process::id())
}
