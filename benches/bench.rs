//! powertail benchmarks: `cargo bench --bench bench [-- <scenario>...]` (or
//! `scripts/bench.sh`, which installs `wrk` first). Scenarios: `amplification`,
//! `catchup`, `hotpath`, `memory`, `freshness`, `followcost` (all by default). Every figure is
//! measured side by side with its baseline in the same run, on loopback only, with
//! bounded loops. Results go to stdout as Markdown (BENCHMARKS.md holds a copy).
//!
//! Issue 19's scenarios (`benches/push/mod.rs`: `push-freshness`, `push-throughput`, or
//! `push` for both) need the push endpoint and run only when asked; `push-throughput`
//! needs the profiling build of the binary (`scripts/bench.sh` builds it).
//!
//! The cluster scenarios (issue 12, `benches/cluster/mod.rs`) need a real `redis-server`
//! and run only when asked: `cluster` (all of them) or `cluster-upstream`,
//! `cluster-hotpath`, `cluster-memory`, `cluster-takeover`, `cluster-wakeup`,
//! `cluster-readload` (`scripts/bench.sh --cluster`).
//!
//! `archive_restart` (issue 20, `benches/archive_restart/mod.rs`) runs only when asked.

mod archive_restart;
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;
mod memory;
mod push;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use powertail::config::Config;
use powertail::sim::{JobScript, Level, Record, SimConfig, SimHandle, SimJob, Simulator};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = ["amplification", "catchup", "hotpath", "memory", "freshness", "followcost"];
    let chosen: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        all.iter()
            .chain(cluster::SCENARIOS.iter())
            .chain(push::SCENARIOS.iter())
            .chain(["archive_restart"].iter())
            .copied()
            .filter(|s| {
                args.iter().any(|a| {
                    a == s || (a == "cluster" && s.starts_with("cluster-")) || (a == "push" && s.starts_with("push-"))
                })
            })
            .collect()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("# powertail benchmarks\n\nmachine: {}\n", machine());
    for s in chosen {
        rt.block_on(async {
            match s {
                "amplification" => amplification().await,
                "catchup" => catchup().await,
                "hotpath" => hotpath().await,
                "memory" => memory::memory().await,
                "freshness" => freshness().await,
                "followcost" => followcost().await,
                "archive_restart" => archive_restart::archive_restart().await,
                s if s.starts_with("push-") => push::run(s).await,
                s => cluster::run(s).await,
            }
        });
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {mem} GiB RAM, profiling build (release + line tables)")
}

/// Adapter configuration for a simulator, with `[logs]` overrides: the harness's
/// ([`common::app_config_toml`]) with the bench's timing and PowerJob's own sync delay.
fn config(sim: &SimHandle, cache_ms: u64, flush_ms: u64, refresh_ms: u64, extra_logs: &str) -> Config {
    let base = common::app_config_toml(&[sim.url()], "");
    let text = common::cluster::merge_toml(
        &base,
        "[powerjob]",
        &format!(
            "request_timeout_ms = 10000\nlog_cache_ms = {cache_ms}\nworker_flush_ms = {flush_ms}\n\
             sync_delay_ms = {}\n[logs]\nrefresh_interval_ms = {refresh_ms}\nfirst_read_delay_ms = 200\n{extra_logs}",
            SimConfig::default().sync_delay_ms
        ),
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One powertail in this process (the harness's [`common::Server`]); it serves until
/// dropped.
async fn serve(config: &Config) -> common::Server {
    common::Server::start(config).await
}

/// A finished instance of `n` lines, delivered long ago.
fn finished_instance(sim: &SimHandle, n: i64, tag: &str) -> i64 {
    common::delivered_instance(sim, n, tag, true)
}

// ---- 1. upstream amplification ----------------------------------------------------

async fn amplification() {
    println!("## Upstream amplification\n");
    println!("One running instance logging 40 lines/s; N browser-like pollers each read `/llm/logs` every 1 s");
    println!("(± jitter) with their own cursor, for 8 s. Server cache 1 s, flush 0.5 s, powertail refresh");
    println!("interval 250 ms. Baseline: a naive pass-through proxy that, per client poll, reads the instance");
    println!("status and the pages from the client's cursor to the end.\n");
    println!("| pollers | powertail: upstream requests / interval | log pages / interval | naive proxy: upstream requests / interval | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    for n in [1usize, 10, 100, 500] {
        let (ours, pages) = amplification_run(n, false).await;
        let (naive, _) = amplification_run(n, true).await;
        println!("| {n} | {ours:.2} | {pages:.2} | {naive:.2} | {:.1}x fewer |", naive / ours.max(0.01));
    }
    println!();
}

async fn amplification_run(pollers: usize, naive: bool) -> (f64, f64) {
    let mut text = String::new();
    for k in 0..2_000 {
        text.push_str(&format!("[INFO] step {k}: tokens/s=1234.5 kv_cache=41.2%\n"));
    }
    let script = JobScript::from_text(&text, 50_000, 5, "ok");
    let sim = Simulator::spawn(SimConfig {
        log_cache_ms: 1_000,
        worker_flush_ms: 500,
        jobs: vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let server = serve(&config(&sim, 1_000, 500, 250, "")).await;
    let base = server.base.clone();
    let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    sim.reset_counters();
    let run_for = Duration::from_secs(8);
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build().unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..pollers {
        let http = http.clone();
        let base = base.clone();
        let sim_url = sim.url();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((k as u64 * 37) % 1_000)).await;
            let mut from = 0u64;
            while start.elapsed() < run_for {
                if naive {
                    from = naive_poll(&http, &sim_url, id, from).await;
                } else {
                    let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine={from}")).await;
                    from = v["nextLine"].as_u64().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(900 + (k as u64 * 13) % 200)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let intervals = start.elapsed().as_secs_f64() / 0.25;
    let pages = sim.requests("/instance/log") as f64;
    let total = pages + sim.requests("/openApi/fetchInstanceInfo") as f64 + sim.requests("/openApi/assert") as f64;
    (total / intervals, pages / intervals)
}

/// A naive proxy's work for one client poll: status, then pages from the cursor on.
async fn naive_poll(http: &reqwest::Client, sim: &str, id: i64, from: u64) -> u64 {
    let _ = http
        .post(format!("{sim}/openApi/fetchInstanceInfo"))
        .form(&[("instanceId", id.to_string()), ("appId", "1".into())])
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    let mut page = from / 100;
    let mut lines;
    loop {
        let v: Value = get_json(http, format!("{sim}/instance/log?appId=1&instanceId={id}&index={page}")).await;
        let total = v["data"]["totalPages"].as_u64().unwrap_or(0);
        lines = page * 100 + v["data"]["data"].as_str().unwrap_or("").lines().count() as u64;
        page += 1;
        if page >= total {
            break;
        }
    }
    lines.max(from)
}

// ---- 1b. the cost to PowerJob of following one growing log, real timing ---------------

async fn followcost() {
    println!("## The cost to PowerJob of following a growing log (real timing)\n");
    println!("PowerJob's defaults: server cache 10 s, worker flush 5 s; powertail refresh 1 s. One instance");
    println!("logging 200 lines/s, followed for 40 s by 1 and by 100 browser-like viewers (a poll every 1 s).");
    println!("On the real server every page request re-reads the whole file, so `/instance/log` requests are");
    println!("the cost. Baseline, from the same run: the minimum, one request per interval plus the pages that");
    println!("changed (1 + lines added / 100 per interval); and a reader that re-reads every page each interval.\n");
    println!("| viewers | powertail: `/instance/log` / interval | minimum | re-read everything | ratio to minimum | status calls / interval |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for viewers in [1usize, 100] {
        let r = followcost_run(viewers).await;
        println!(
            "| {viewers} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} |",
            r.pages,
            r.minimum,
            r.everything,
            r.pages / r.minimum,
            r.status
        );
    }
    println!();
}

struct FollowCost {
    pages: f64,
    minimum: f64,
    everything: f64,
    status: f64,
}

async fn followcost_run(viewers: usize) -> FollowCost {
    let mut text = String::new();
    for k in 0..24_000 {
        text.push_str(&format!("[INFO] step {k}: tokens/s=1234.5 kv_cache=41.2% prompt_throughput=88.1\n"));
    }
    let script = JobScript::from_text(&text, 120_000, 5, "ok"); // 200 lines/s for 2 minutes
    let sim = Simulator::spawn(SimConfig {
        log_cache_ms: 10_000,
        worker_flush_ms: 5_000,
        jobs: vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut cfg = config(&sim, 10_000, 5_000, 1_000, "");
    cfg.powerjob.clock_skew_ms = 1_000;
    cfg.logs.first_read_delay_ms = 8_000;
    let server = serve(&cfg).await;
    let base = server.base.clone();
    let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build().unwrap();
    // Warm up: past the first read delay and the first full read.
    let until = Instant::now() + Duration::from_secs(15);
    let mut held = 0;
    while Instant::now() < until {
        let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine=0&limit=1")).await;
        held = v["totalLines"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    sim.reset_counters();
    let lines_before = held;
    let run_for = Duration::from_secs(40);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..viewers {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((k as u64 * 37) % 1_000)).await;
            let mut from = held;
            while start.elapsed() < run_for {
                let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine={from}")).await;
                from = v["nextLine"].as_u64().unwrap_or(from);
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let intervals = start.elapsed().as_secs_f64();
    let pages = sim.requests("/instance/log") as f64 / intervals;
    let status = sim.requests("/openApi/fetchInstanceInfo") as f64 / intervals;
    // The lines the server's file gained in the window, as the follower read them.
    let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine=0&limit=1")).await;
    let lines_after = v["totalLines"].as_u64().unwrap_or(0);
    let added = lines_after.saturating_sub(lines_before) as f64;
    FollowCost {
        pages,
        minimum: 1.0 + added / 100.0 / intervals,
        everything: (lines_after + lines_before).div_ceil(200) as f64,
        status,
    }
}

// ---- 2. catch-up of a finished 200 000-line log ------------------------------------

async fn catchup() {
    println!("## Catch-up of a finished 200 000-line log\n");
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let id = finished_instance(&sim, 200_000, "catch-up");
    let other = finished_instance(&sim, 200_000, "catch-up");
    let server = serve(&config(&sim, 10_000, 5_000, 1_000, "")).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    // Page by page, as a client of /instance/log would.
    sim.reset_counters();
    let start = Instant::now();
    let mut page = 0;
    let mut lines = 0usize;
    loop {
        let v: Value =
            get_json(&http, format!("{}/instance/log?appId=1&instanceId={other}&index={page}", sim.url())).await;
        lines += v["data"]["data"].as_str().unwrap().lines().count();
        page += 1;
        if page >= v["data"]["totalPages"].as_u64().unwrap() {
            break;
        }
    }
    let paged_time = start.elapsed();
    let paged_requests = sim.requests("/instance/log");
    assert_eq!(lines, 200_000);
    // powertail: the first read of a finished log downloads the file.
    sim.reset_counters();
    let start = Instant::now();
    let mut from = 0u64;
    while from < 200_000 {
        let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine={from}&limit=10000")).await;
        from = v["nextLine"].as_u64().unwrap();
    }
    let ours_time = start.elapsed();
    let ours_requests = sim.requests("/instance/log")
        + sim.requests("/instance/downloadLog")
        + sim.requests("/openApi/fetchInstanceInfo");
    println!("| reader | upstream requests | wall time to hold all 200 000 lines |");
    println!("|---|---:|---:|");
    println!(
        "| page by page (`/instance/log`, 100 lines a page) | {paged_requests} | {:.2} s |",
        paged_time.as_secs_f64()
    );
    println!(
        "| powertail (whole-file download, checked against first and last pages) | {ours_requests} | {:.2} s |",
        ours_time.as_secs_f64()
    );
    println!(
        "\nratio: {:.0}x fewer upstream requests, {:.1}x less time (the simulator answers a page in microseconds; a real server re-reads the file for each page, so the saving there is larger).\n",
        paged_requests as f64 / ours_requests as f64,
        paged_time.as_secs_f64() / ours_time.as_secs_f64()
    );
}

// ---- 3. hot path ---------------------------------------------------------------------

async fn hotpath() {
    println!("## Hot path: cached `/llm/logs` reads (limit 100)\n");
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("wrk is not installed (scripts/bench.sh installs it); skipped.\n");
        return;
    }
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let id = finished_instance(&sim, 10_000, "hot");
    let server = serve(&config(&sim, 10_000, 5_000, 1_000, "")).await;
    let base = server.base.clone();
    let url = format!("{base}/llm/logs?instanceId={id}&fromLine=5000&limit=100");
    // Warm up until the log is complete and cached.
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine=0&limit=10000")).await;
        if v["complete"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    // Baseline: a bare axum handler serving the same pre-built bytes.
    let bare = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, bare).await });
    println!("wrk, 2 threads, 10 s per run, loopback; server and load generator share the machine.\n");
    println!("| connections | server | requests/s | p50 | p99 | ratio to bare |");
    println!("|---:|---|---:|---:|---:|---:|");
    for conns in [64, 256] {
        let only = std::env::var("PT_HOT_ONLY").unwrap_or_default();
        if only == "pause" {
            eprintln!("PID {} READY {url} {bare_url}", std::process::id());
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let b = wrk(&bare_url, conns).await;
        let o = wrk(&url, conns).await;
        println!("| {conns} | bare axum, same bytes | {:.0} | {} | {} | 1.00 |", b.0, b.1, b.2);
        println!("| {conns} | powertail | {:.0} | {} | {} | {:.2} |", o.0, o.1, o.2, o.0 / b.0);
    }
    println!();
}

async fn wrk(url: &str, conns: u32) -> (f64, String, String) {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("wrk").args(["-t2", &format!("-c{conns}"), "-d10s", "--latency", &url]).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_default()
    };
    (rps, pct("50%"), pct("99%"))
}

// ---- 5. freshness ----------------------------------------------------------------------

async fn freshness() {
    println!("## Freshness: a new line to a waiting client\n");
    let sim = Simulator::spawn(SimConfig { log_cache_ms: 1_000, ..SimConfig::default() }).await.unwrap();
    let refresh: i64 = 250;
    let server = serve(&config(&sim, 1_000, 500, refresh as u64, "")).await;
    let base = server.base.clone();
    let id = sim.with_core(|c, now| common::logged_instance(c, now, 10_000, ["start".to_owned()], false));
    let http = reqwest::Client::new();
    let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}")).await;
    let mut from = v["nextLine"].as_u64().unwrap();
    let mut samples = Vec::new();
    for k in 0..20 {
        // The line reaches the server now; the client is already waiting (long-poll).
        let waiter = {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let v: Value =
                    get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine={from}&waitMs=20000")).await;
                (Simulator::now(), v)
            })
        };
        tokio::time::sleep(Duration::from_millis(100 + (k * 61) % 400)).await;
        let arrived = sim.with_core(|c, now| {
            c.deliver(
                id,
                vec![Record { log_time: now, level: Level::Info, content: format!("line {k}"), worker: "w:1".into() }],
                now,
            );
            now
        });
        let (held_at, v) = waiter.await.unwrap();
        from = v["nextLine"].as_u64().unwrap();
        // The upstream's own delay: until the first rebuild of the file after arrival.
        let visible = sim.with_core(|c, _| c.rebuilds(id).into_iter().find(|t| *t >= arrived)).unwrap_or(arrived);
        samples.push((held_at - visible, held_at - arrived));
    }
    samples.sort_unstable();
    let ours: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let p50 = ours[ours.len() / 2];
    let max = *ours.last().unwrap();
    let mut e2e: Vec<i64> = samples.iter().map(|s| s.1).collect();
    e2e.sort_unstable();
    println!("20 lines, each delivered to the server while a long-poll (`waitMs`) waits; server cache 1 s,");
    println!("refresh interval {refresh} ms. Freshness = time the client holds the line − time the server");
    println!("first served a file containing it (the upstream's own cache delay is excluded).\n");
    println!("| measure | ms |\n|---|---:|");
    println!("| freshness p50 | {p50} |\n| freshness max | {max} |");
    println!(
        "| for reference, end to end incl. the server's 1 s cache: p50 / max | {} / {} |",
        e2e[e2e.len() / 2],
        e2e[e2e.len() - 1]
    );
    println!(
        "| goal: ≤ refresh interval + 50 ms = {} | {} |\n",
        refresh + 50,
        if max <= refresh + 50 { "met" } else { "NOT met" }
    );
}

/// GET `url` and parse the JSON answer.
async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}
