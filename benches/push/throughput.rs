//! `push-throughput`: one pusher at 10 000 lines/s for 60 s, and 100 instances pushing
//! 100 lines/s each for 30 s at once, each run again with pushing off (the baseline, in
//! the same process run). powertail runs as its own process (the profiling build), so
//! that its RSS is its own. At the end every instance's served log is read whole and
//! compared with what the processor logged (the simulator's record of every log call):
//! no line lost, none repeated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use powertail::sim::{JobScript, Level, PushStats, Pusher, ScriptLine, ScriptWorker, SimConfig, SimJob, Simulator};
use serde_json::Value;

/// One load: `instances` runs of a job logging `rate` lines/s each for `secs` seconds.
#[derive(Clone, Copy)]
struct Load {
    name: &'static str,
    instances: usize,
    rate: i64,
    secs: i64,
}

const LOADS: [Load; 2] = [
    Load { name: "one pusher, 10 000 lines/s", instances: 1, rate: 10_000, secs: 60 },
    Load { name: "100 instances × 100 lines/s", instances: 100, rate: 100, secs: 30 },
];

/// How long after the last log call the served logs may take to hold every line
/// (PowerJob's delays: up to ~16 s) before the run is declared incomplete.
const DRAIN: Duration = Duration::from_secs(40);

/// What one run measured.
struct Outcome {
    logged: usize,
    served: usize,
    exact: usize,
    rss_peak: u64,
    rss_end: u64,
    powerjob_requests: u64,
    stats: PushStats,
    drained_after: Duration,
}

pub async fn throughput() {
    println!("## Issue 19: push throughput, exactly once, memory and PowerJob's load\n");
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/profiling/powertail");
    if !bin.exists() {
        println!("target/profiling/powertail is missing (scripts/bench.sh builds it); skipped.\n");
        return;
    }
    println!("powertail as its own process (profiling build); the simulated PowerJob with its real delays");
    println!("(flush 5 s, cache 10 s), powertail refresh 1 s. Each load runs with pushing on, then off (the");
    println!("baseline). Exact = instances whose served log equals the logged lines as a multiset, with as");
    println!("many lines (nothing lost, nothing repeated). RSS of the powertail process, sampled every 250 ms.\n");
    println!("| load | pushing | lines logged | lines served | exact instances | RSS peak / end MiB | PowerJob requests | push requests | retries | queue drops | all served after |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for load in LOADS {
        for push in [true, false] {
            let o = run(&bin, load, push).await;
            println!(
                "| {} | {} | {} | {} | {} / {} | {:.0} / {:.0} | {} | {} | {} | {} | {:.1} s |",
                load.name,
                if push { "on" } else { "off" },
                o.logged,
                o.served,
                o.exact,
                load.instances,
                o.rss_peak as f64 / 1_048_576.0,
                o.rss_end as f64 / 1_048_576.0,
                o.powerjob_requests,
                o.stats.requests,
                o.stats.retries,
                o.stats.queue_dropped,
                o.drained_after.as_secs_f64(),
            );
        }
    }
    println!();
}

fn script(rate: i64, secs: i64, tag: &str) -> JobScript {
    let n = rate * secs;
    let lines = (0..n)
        .map(|k| ScriptLine {
            at_ms: k * 1_000 / rate,
            level: if k % 1_000 == 0 { Level::Warn } else { Level::Info },
            content: format!("{tag} row {k}: tokens/s=1234.5 kv_cache=41.2% prompt_throughput=88.1"),
            worker: 0,
        })
        .collect();
    JobScript {
        workers: vec![ScriptWorker { address: "10.0.0.21:27777".into(), clock_skew_ms: 0, flush_phase_ms: 0 }],
        lines,
        running_at_ms: 0,
        end_ms: secs * 1_000 + 50,
        final_status: 5,
        result: "ok".into(),
    }
}

async fn run(bin: &std::path::Path, load: Load, push: bool) -> Outcome {
    let script = Arc::new(script(load.rate, load.secs, if push { "pushed" } else { "polled" }));
    let sim = Simulator::spawn(SimConfig {
        log_cache_ms: 10_000,
        worker_flush_ms: 5_000,
        sync_delay_ms: 5_000,
        jobs: vec![SimJob { id: 12, name: "load".into(), job_params: String::new(), script: Some(script.clone()) }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The default first-read delay (8 s): an earlier read, before the worker's first
    // flush, makes PowerJob write its "no online log" stable file (§6.10), and the
    // polled log ends at what the temporary file held.
    let logs = "refresh_interval_ms = 1000\nfirst_read_delay_ms = 8000\nmax_lines_per_instance = 1000000\n\
                max_following_bytes = 1073741824\n";
    let powerjob = "log_cache_ms = 10000\nworker_flush_ms = 5000\nsync_delay_ms = 5000\n";
    let (mut child, base, _dir) = crate::memory::spawn_binary_with(bin, &sim, powerjob, logs).await;
    if push {
        sim.set_pusher(Some(Pusher::new(&base)));
    }
    sim.reset_counters();
    let ids: Vec<i64> =
        (0..load.instances).map(|_| sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap()).collect();
    let http = reqwest::Client::new();
    // Readers: one long-poll per instance, as a page would, from line 0.
    let held: Arc<std::sync::Mutex<BTreeMap<i64, u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for &id in &ids {
        let (http, base, held, stop) = (http.clone(), base.clone(), held.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut from = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url = format!("{base}/llm/logs?instanceId={id}&fromLine={from}&waitMs=5000&limit=10000");
                let Ok(resp) = http.get(url).send().await else {
                    super::sleep_ms(200).await;
                    continue;
                };
                let Ok(v) = resp.json::<Value>().await else { continue };
                from = v["nextLine"].as_u64().unwrap_or(from);
                held.lock().unwrap().insert(id, from);
            }
        }));
    }
    let per_instance = script.lines.len();
    let logged = per_instance * load.instances;
    let started = Instant::now();
    let log_for = Duration::from_millis(u64::try_from(load.secs * 1_000).unwrap_or(0));
    let (mut rss_peak, pid) = (0u64, child.id());
    let drained_after = loop {
        rss_peak = rss_peak.max(crate::memory::rss(pid));
        let total: u64 = held.lock().unwrap().values().sum();
        let elapsed = started.elapsed();
        if elapsed > log_for && total >= logged as u64 {
            break elapsed.saturating_sub(log_for);
        }
        if elapsed > log_for + DRAIN {
            break DRAIN;
        }
        super::sleep_ms(250).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    let rss_end = crate::memory::rss(pid);
    let powerjob_requests = sim.requests("/instance/log")
        + sim.requests("/instance/downloadLog")
        + sim.requests("/openApi/fetchInstanceInfo");
    // The exact check: every served log against the processor's log calls.
    let (mut served, mut exact) = (0usize, 0usize);
    for &id in &ids {
        let lines = read_all(&http, &base, id).await;
        served += lines.len();
        let mut expected = sim.with_core(|c, _| c.final_lines(id));
        let mut got = lines;
        expected.sort_unstable();
        got.sort_unstable();
        if got == expected {
            exact += 1;
        }
    }
    let stats = sim.push_stats();
    let _ = child.kill();
    let _ = child.wait();
    Outcome { logged, served, exact, rss_peak, rss_end, powerjob_requests, stats, drained_after }
}

/// Every line served for `id` now, read in pages of 10 000.
async fn read_all(http: &reqwest::Client, base: &str, id: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..1_000 {
        let url = format!("{base}/llm/logs?instanceId={id}&fromLine={}&limit=10000", lines.len());
        let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        let page = v["lines"].as_array().cloned().unwrap_or_default();
        lines.extend(page.iter().filter_map(|l| l.as_str().map(str::to_owned)));
        if page.is_empty() || v["nextLine"].as_u64() >= v["totalLines"].as_u64() {
            break;
        }
    }
    lines
}
