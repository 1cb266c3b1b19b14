//! Cluster scenario 6: Redis read load at 10 and 1 000 watchers.

use super::*;

// ---- 6. Redis read load at 10 and 1 000 watchers -----------------------------------------

const LOAD_REPLICAS: usize = 2;
const LOAD_INSTANCES: usize = 2;
const LOAD_WINDOW: Duration = Duration::from_secs(15);

pub(super) async fn readload(redis: &Redis) {
    println!("## Cluster: Redis reads at 10 and 1 000 watchers\n");
    println!("{LOAD_REPLICAS} replicas, {LOAD_INSTANCES} running instances each logging 20 lines/s (server cache 1 s, refresh 1 s); N watchers");
    println!(
        "in all (half on each instance) long-poll (`waitMs=15000`) round-robin over the replicas. Counted for {} s",
        LOAD_WINDOW.as_secs()
    );
    println!(
        "after a 4 s warm-up: `INFO commandstats` of the Redis, and the commits (messages on `<prefix>:appended`,"
    );
    println!("one per change of an instance). Only the replica that does not hold an instance's lease reads its lines");
    println!("(`XRANGE`); the holder has them. Baseline: the same at 10 watchers.\n");
    println!("| watchers | polls / s | changes | XRANGE | XRANGE / (reading replica, instance, change) | EVALSHA (tick, append) / (replica, instance, s) | PUBLISH (in scripts: commits, wants) | Redis calls / s (EVALSHA, XRANGE, …) | ratio of XRANGE per change to 10 watchers |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut base = None;
    for watchers in [10usize, 1_000] {
        let r = readload_run(redis, watchers).await;
        // `changes` counts the commits of all instances; each has one reading replica here.
        let per_change = r.xrange as f64 / ((LOAD_REPLICAS - 1) as f64 * r.changes.max(1) as f64);
        let b = *base.get_or_insert(per_change);
        println!(
            "| {watchers} | {:.0} | {} | {} | {per_change:.2} | {:.2} | {} | {:.1} | {:.2} |",
            r.polls,
            r.changes,
            r.xrange,
            r.evalsha as f64 / (LOAD_REPLICAS * LOAD_INSTANCES) as f64 / r.secs,
            r.publish,
            r.commands as f64 / r.secs,
            per_change / b
        );
        if !r.failures.is_empty() {
            println!("| ({watchers}: polls failed: {}) | | | | | | | | |", r.failures);
        }
    }
    println!("\nGoal: about one XRANGE per (replica, instance, change), flat from 10 to 1 000 watchers.\n");
}

struct LoadRun {
    polls: f64,
    secs: f64,
    changes: u64,
    xrange: u64,
    evalsha: u64,
    publish: u64,
    commands: u64,
    failures: String,
}

async fn readload_run(redis: &Redis, watchers: usize) -> LoadRun {
    let sim = Simulator::spawn(SimConfig {
        log_cache_ms: 1_000,
        worker_flush_ms: 500,
        jobs: vec![running_job(1_200)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let key_prefix = prefix(&format!("load{watchers}"));
    let mut nodes = Vec::new();
    for k in 0..LOAD_REPLICAS {
        let s = Shared { redis_url: redis.url(), prefix: &key_prefix, node: format!("pt-{k}"), extra: "" };
        nodes.push(Node::start_toml(&config_text(&sim.url(), 1_000, 500, 1_000, Some(&s))).await);
    }
    let (commits, stop_commits) = redis.collect_commits(&key_prefix).await;
    let ids: Vec<(i64, i64)> =
        (0..LOAD_INSTANCES).map(|_| sim.with_core(|c, now| (c.run_job(12, None, 0, now).unwrap(), now))).collect();
    let start = Instant::now();
    let clients =
        Watchers::new(nodes.iter().map(|n| n.base.clone()).collect(), start + super::upstream::UP_WARM + LOAD_WINDOW);
    let mut tasks = Vec::new();
    for &(id, started) in &ids {
        // Watcher j of each instance starts on replica j mod replicas: half on each.
        for j in 0..watchers / LOAD_INSTANCES {
            tasks.push(clients.spawn(id, started, j, Duration::from_millis((j as u64 * 37) % 2_000)));
        }
    }
    tokio::time::sleep_until((start + super::upstream::UP_WARM).into()).await;
    redis.reset_stats().await;
    let polls_before = clients.polls();
    let t0 = Instant::now();
    tokio::time::sleep(LOAD_WINDOW).await;
    let stats = redis.calls().await;
    if std::env::var_os("PT_BENCH_STATS").is_some() {
        eprintln!("commandstats at {watchers} watchers: {stats:?}");
    }
    let t1 = Instant::now();
    let polled = clients.polls() - polls_before;
    let secs = t1.duration_since(t0).as_secs_f64();
    let changes = commits.lock().unwrap().iter().filter(|c| c.0 >= t0 && c.0 <= t1).count() as u64;
    let _ = stop_commits.send(());
    // (Stopping answers the waiting long-polls at once; then the watchers end.)
    for n in nodes {
        n.stop().await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let get = |c: &str| stats.get(c).copied().unwrap_or(0);
    // What replicas send (commandstats also counts the commands that scripts run, and the
    // bench's own INFO and CONFIG).
    let commands: u64 = ["evalsha", "eval", "script|load", "xrange", "wait", "ping"].iter().map(|c| get(c)).sum();
    LoadRun {
        polls: polled as f64 / secs,
        secs,
        changes,
        xrange: get("xrange"),
        evalsha: get("evalsha") + get("eval"),
        publish: get("publish"),
        commands,
        failures: failures_text(&clients.failures),
    }
}
