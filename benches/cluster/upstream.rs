//! Cluster scenario 1: PowerJob requests per interval at 1, 2 and 4 replicas.

use super::*;

// ---- 1. PowerJob requests per interval at 1, 2 and 4 replicas ------------------------------

const UP_INSTANCES: usize = 20;
pub(super) const UP_WARM: Duration = Duration::from_secs(4);
const UP_WINDOW: Duration = Duration::from_secs(15);

pub(super) async fn upstream(redis: &Redis) {
    println!("## Cluster: PowerJob requests per refresh interval at 1, 2 and 4 replicas\n");
    println!("{UP_INSTANCES} running instances, each logging 20 lines/s, each followed by W watchers that long-poll");
    println!("(`waitMs=15000`, the client libraries' default) one poll after the other; in cluster mode each poll of");
    println!("each watcher goes to the next replica (round-robin). Server cache 1 s, flush 0.5 s, powertail refresh");
    println!("interval 1 s, lease 3 s.");
    println!(
        "Counted for {} s after a {} s warm-up: `/instance/log` and `/openApi/fetchInstanceInfo` at the",
        UP_WINDOW.as_secs(),
        UP_WARM.as_secs()
    );
    println!("simulator, per instance and interval; the age of each line when a watcher got it (now − the time");
    println!("the job logged it, so flush and server cache included); lease takeovers (`SET` in the tick script).");
    println!("Baseline: one process in memory mode with the same watchers, same run.\n");
    println!("| W | setup | upstream requests / instance / interval | of which `/instance/log` | `fetchInstanceInfo` | ratio to memory mode | line age p50 / p99 (ms) | polls / s | lease takeovers | EVALSHA / replica / instance / interval | XRANGE / replica / instance / interval |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for watchers in [10, 1] {
        let mut baseline = None;
        for (label, replicas, shared) in [
            ("memory mode, 1 process", 1, false),
            ("cluster, 1 replica", 1, true),
            ("cluster, 2 replicas", 2, true),
            ("cluster, 4 replicas", 4, true),
        ] {
            let mut r = upstream_run(redis, replicas, shared, watchers).await;
            let base = *baseline.get_or_insert(r.total);
            let redis_cols = if shared {
                format!("{} | {:.2} | {:.2}", r.takeovers, r.evalsha, r.xrange)
            } else {
                "– | – | –".to_owned()
            };
            println!(
                "| {watchers} | {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} | {:.0} | {redis_cols} |",
                r.total,
                r.log,
                r.info,
                r.total / base,
                pct(&mut r.ages, 50.0),
                pct(&mut r.ages, 99.0),
                r.polls
            );
            if !r.failures.is_empty() {
                println!("| | ({label}: polls failed: {}) | | | | | | | | | |", r.failures);
            }
        }
    }
    println!("\ngoal: at 2 and 4 replicas ≤ 1.1 × the memory-mode count.\n");
}

struct UpRun {
    total: f64,
    log: f64,
    info: f64,
    polls: f64,
    ages: Vec<f64>,
    takeovers: u64,
    evalsha: f64,
    xrange: f64,
    failures: String,
}

async fn upstream_run(redis: &Redis, replicas: usize, shared: bool, per_instance: usize) -> UpRun {
    let sim = Simulator::spawn(SimConfig {
        log_cache_ms: 1_000,
        worker_flush_ms: 500,
        jobs: vec![running_job(1_200)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let key_prefix = prefix(&format!("up{per_instance}.{replicas}{}", if shared { "c" } else { "m" }));
    let mut nodes = Vec::new();
    for k in 0..replicas {
        let s = Shared { redis_url: redis.url(), prefix: &key_prefix, node: format!("pt-{k}"), extra: "" };
        nodes.push(Node::start_toml(&config_text(&sim.url(), 1_000, 500, 1_000, shared.then_some(&s))).await);
    }
    let ids: Vec<(i64, i64)> =
        (0..UP_INSTANCES).map(|_| sim.with_core(|c, now| (c.run_job(12, None, 0, now).unwrap(), now))).collect();
    let start = Instant::now();
    let watchers = Watchers::new(nodes.iter().map(|n| n.base.clone()).collect(), start + UP_WARM + UP_WINDOW);
    let mut tasks = Vec::new();
    for (i, &(id, started)) in ids.iter().enumerate() {
        for w in 0..per_instance {
            let delay = Duration::from_millis(((i * per_instance + w) as u64 * 97) % 1_000);
            tasks.push(watchers.spawn(id, started, w + i, delay));
        }
    }
    tokio::time::sleep_until((start + UP_WARM).into()).await;
    sim.reset_counters();
    redis.reset_stats().await;
    let polls_before = watchers.polls();
    let t0 = Instant::now();
    tokio::time::sleep(UP_WINDOW).await;
    let log = sim.requests("/instance/log") as f64;
    let info = sim.requests("/openApi/fetchInstanceInfo") as f64;
    let stats = redis.calls().await;
    let polled = watchers.polls() - polls_before;
    let t1 = Instant::now();
    let secs = t1.duration_since(t0).as_secs_f64();
    // (Stopping answers the waiting long-polls at once; then the watchers end.)
    for n in nodes {
        n.stop().await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let per = |x: f64| x / secs / UP_INSTANCES as f64; // per instance and 1 s interval
    let redis_per = |x: u64| x as f64 / secs / UP_INSTANCES as f64 / replicas as f64;
    let get = |c: &str| stats.get(c).copied().unwrap_or(0);
    UpRun {
        total: per(log + info),
        log: per(log),
        info: per(info),
        polls: polled as f64 / secs,
        ages: watchers.ages(t0, t1),
        takeovers: get("set"),
        evalsha: redis_per(get("evalsha") + get("eval")),
        xrange: redis_per(get("xrange")),
        failures: failures_text(&watchers.failures),
    }
}
