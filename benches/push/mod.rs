//! Issue 19's measures (BENCHMARKS.md "Issue 19: pushing"): the simulated processor
//! pushes its lines to powertail as the Java `PushLogger` would, while it also logs them
//! to the simulated PowerJob with PowerJob's real delays (5 s worker flush, 10 s file
//! cache; powertail refreshes every 1 s).
//!
//! * `push-freshness`: from the processor's log call to a waiting client holding the
//!   line (long-poll, SSE, WebSocket), a pushing job against a job that pushes nothing,
//!   in the same run;
//! * `push-throughput` ([`throughput`]): one pusher at 10 000 lines/s, and 100 instances
//!   at 100 lines/s each, each against the same load with pushing off: every line once,
//!   RSS, PowerJob requests.

pub mod clients;
pub mod throughput;

use std::sync::Arc;
use std::time::Duration;

use powertail::sim::{JobScript, Level, Pusher, ScriptLine, ScriptWorker, SimConfig, SimJob, Simulator};

use self::clients::{Received, CLIENTS};

/// The scenarios of this module.
pub const SCENARIOS: [&str; 2] = ["push-freshness", "push-throughput"];

/// Runs one of [`SCENARIOS`].
pub async fn run(scenario: &str) {
    match scenario {
        "push-freshness" => freshness().await,
        "push-throughput" => throughput::throughput().await,
        other => println!("unknown scenario {other}\n"),
    }
}

/// How long the jobs of the freshness run log.
const LOG_FOR_MS: i64 = 60_000;
/// How long after the last line the clients may still wait for it (PowerJob's worst case
/// is about 16 s).
const DRAIN_MS: i64 = 25_000;

/// `n` log calls spread over `ms`, 150 to 350 ms apart (a fixed pattern), each naming
/// its number (`tick <k> …`), on one worker.
fn ticking(ms: i64) -> JobScript {
    let mut lines = Vec::new();
    let (mut at, mut k) = (0i64, 0i64);
    while at < ms {
        lines.push(ScriptLine {
            at_ms: at,
            level: if k % 17 == 0 { Level::Warn } else { Level::Info },
            content: format!("tick {k} (APIServer pid=4242) Avg prompt throughput: 118.3 tokens/s"),
            worker: 0,
        });
        at += 150 + (k * 37) % 201;
        k += 1;
    }
    JobScript {
        workers: vec![ScriptWorker { address: "10.0.0.21:27777".into(), clock_skew_ms: 0, flush_phase_ms: 1_234 }],
        lines,
        running_at_ms: 0,
        end_ms: ms + 100,
        final_status: 5,
        result: "ok".into(),
    }
}

/// The log call `tick <k>` of a served line, if it is one.
fn tick_of(line: &str) -> Option<usize> {
    let rest = &line[line.find("tick ")? + 5..];
    rest.split(' ').next()?.parse().ok()
}

async fn freshness() {
    println!("## Issue 19: freshness, from the log call to a waiting client\n");
    let script = ticking(LOG_FOR_MS);
    let job = |id: i64, name: &str| SimJob {
        id,
        name: name.into(),
        job_params: String::new(),
        script: Some(Arc::new(script.clone())),
    };
    let sim = Simulator::spawn(SimConfig {
        log_cache_ms: 10_000,
        worker_flush_ms: 5_000,
        jobs: vec![job(12, "pushes"), job(13, "polled")],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let server = super::serve(&super::config(&sim, 10_000, 5_000, 1_000, "")).await;
    let base = server.base.clone();
    sim.set_pusher(Some(Pusher::new(&base).jobs([12])));
    let pushed = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    let polled = sim.with_core(|c, now| c.run_job(13, None, 0, now)).unwrap();
    let start = |id| sim.with_core(|c, now| c.instance(id, now)).and_then(|i| i.actual_trigger_time).unwrap();
    let (start_pushed, start_polled) = (start(pushed), start(polled));
    let n = script.lines.len();
    let until = Simulator::now() + LOG_FOR_MS + DRAIN_MS;
    let mut tasks = Vec::new();
    for (id, path) in [(pushed, "pushed"), (polled, "polled")] {
        for client in CLIENTS {
            let base = base.clone();
            tasks.push(tokio::spawn(async move {
                let got = clients::collect(client, &base, id, n, until).await;
                (path, client, got)
            }));
        }
    }
    let mut rows = Vec::new();
    for task in tasks {
        let (path, client, got): (&str, &str, Received) = task.await.unwrap();
        let start = if path == "pushed" { start_pushed } else { start_polled };
        let mut ages: Vec<f64> = got
            .iter()
            .filter_map(|(line, at)| Some(at - (start + script.lines.get(tick_of(line)?)?.at_ms) as f64))
            .collect();
        ages.sort_unstable_by(f64::total_cmp);
        rows.push((path, client, got.len(), ages));
    }
    let stats = sim.push_stats();
    println!(
        "Two jobs run at once, each logging {n} lines over {} s (150–350 ms apart) on one worker; the",
        LOG_FOR_MS / 1_000
    );
    println!("simulated PowerJob has its real delays (worker flush 5 s, file cache 10 s) and powertail");
    println!("refreshes every 1 s. Job `pushes` also pushes each line as the Java library would (20 lines");
    println!("or 100 ms, one in flight); job `polled` does not: the baseline, in the same run. Each job has");
    println!("one waiting client of each kind from line 0. Freshness = when the client holds the line −");
    println!("when the processor logged it (one clock: all on this machine).\n");
    println!("| job | client | lines held | p50 ms | p99 ms | max ms | mean ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (path, client, held, ages) in &rows {
        let mean = ages.iter().sum::<f64>() / ages.len().max(1) as f64;
        println!(
            "| {path} | {client} | {held} / {n} | {:.1} | {:.1} | {:.1} | {mean:.1} |",
            pct(ages, 50),
            pct(ages, 99),
            pct(ages, 100)
        );
    }
    let worst_pushed_p99 = rows.iter().filter(|r| r.0 == "pushed").map(|r| pct(&r.3, 99)).fold(0.0, f64::max);
    let best_polled_p50 = rows.iter().filter(|r| r.0 == "polled").map(|r| pct(&r.3, 50)).fold(f64::INFINITY, f64::min);
    println!(
        "\npushes: {} batches, {} requests, {} lines accepted, {} retries.\n",
        stats.batches, stats.requests, stats.accepted, stats.retries
    );
    println!("| goal | measured | met |\n|---|---:|---|");
    println!(
        "| pushed p99 ≤ 250 ms (worst client) | {worst_pushed_p99:.1} ms | {} |",
        if worst_pushed_p99 <= 250.0 { "yes" } else { "NO" }
    );
    let ratio = best_polled_p50 / worst_pushed_p99.max(1.0);
    println!(
        "| polled p50 (best client) ≥ 20 × pushed p99 (worst client) | {best_polled_p50:.0} ms / {worst_pushed_p99:.1} ms = {ratio:.0}× | {} |\n",
        if ratio >= 20.0 { "yes" } else { "NO" }
    );
    drop(server);
}

/// The `p`-th percentile (nearest rank) of sorted `v`; NaN when empty.
fn pct(v: &[f64], p: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (v.len() * p).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}

/// Waits `ms` in steps, bounded.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
