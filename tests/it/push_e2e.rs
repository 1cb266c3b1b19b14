//! Issue 19, "exactly once under faults", end to end: the simulator plays the processor
//! (it logs each line to the simulated PowerJob, which ships it with the worker's flush
//! delay, and pushes the same line to powertail as the Java `PushLogger` would), and a
//! bad network between the processor and powertail drops, duplicates, reorders and
//! delays its batches. powertail must serve every logged line exactly once, in the
//! processor's order where the push delivered it in order, and complete the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use powertail::sim::{
    Fate, InstanceIds, JobScript, Level, PushFaults, PushStats, Pusher, ScriptLine, ScriptWorker, SimConfig,
};
use serde_json::Value;

use crate::common::{fast_sim, sim_job, TestApp};

/// How long a run may take to be followed to `complete`.
const DEADLINE: Duration = Duration::from_secs(60);

/// `n` log calls 10 ms apart on one worker: unique lines, and every 40 lines a burst of
/// 5 equal progress lines logged in the same millisecond; some WARN and ERROR.
fn script(n: i64) -> JobScript {
    let lines = (0..n)
        .map(|k| {
            let (level, content) = match k % 40 {
                20..=24 => (Level::Info, "Loading safetensors checkpoint shards: 50% Completed | 2/4".to_owned()),
                7 => (Level::Warn, format!("step {k}: slow disk, retrying")),
                33 => (Level::Error, format!("step {k}: worker lost a heartbeat")),
                _ => (Level::Info, format!("step {k}: tokens/s=1234.5 kv_cache=41.2%")),
            };
            let at_ms = if (20..=24).contains(&(k % 40)) { (k - k % 40 + 20) * 10 } else { k * 10 };
            ScriptLine { at_ms, level, content, worker: 0 }
        })
        .collect();
    JobScript {
        workers: vec![ScriptWorker { address: "10.0.0.21:27777".into(), clock_skew_ms: 0, flush_phase_ms: 0 }],
        lines,
        running_at_ms: 0,
        end_ms: n * 10 + 50,
        final_status: 5,
        result: "ok".into(),
    }
}

fn sim(n: i64) -> SimConfig {
    let script = Arc::new(script(n));
    SimConfig {
        jobs: vec![sim_job(12, (*script).clone()), sim_job(13, (*script).clone())],
        // The same ids on every run: the pushers' faults are drawn from the seed, the
        // instance and the batch number.
        instance_ids: InstanceIds::Sequential { first: 1_000_000 },
        ..fast_sim()
    }
}

/// What a run ended with: the lines served, the last answer, the simulator's oracle,
/// and the pusher's account.
struct Run {
    id: i64,
    served: Vec<String>,
    last: Value,
    oracle: Vec<String>,
    stats: PushStats,
    /// The texts of lines the push delivered in its turn (sent or duplicated), in log order.
    in_order: Vec<String>,
}

async fn run(app: &TestApp, job: i64) -> Run {
    let id = app.run_job(job);
    let follow = app.follow(id, DEADLINE).await;
    let oracle = app.sim.with_core(|c, _| c.final_lines(id));
    let in_order = app
        .sim
        .pushed_lines(id)
        .into_iter()
        .filter(|l| matches!(l.fate, Fate::Sent | Fate::Duplicated))
        .map(|l| l.text)
        .collect();
    Run { id, served: follow.lines, last: follow.last, oracle, stats: app.sim.push_stats(), in_order }
}

/// Every logged line served exactly once; the lines the push delivered in order are
/// served in the processor's order (unique lines; the bursts' equal lines are
/// interchangeable).
fn assert_exactly_once(run: &Run) {
    assert_same_lines(&run.served, &run.oracle);
    // Position of each unique text in the served log.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for line in &run.served {
        *count.entry(text_of(line)).or_default() += 1;
    }
    let position: HashMap<&str, usize> =
        run.served.iter().enumerate().map(|(k, l)| (text_of(l), k)).filter(|(t, _)| count[t] == 1).collect();
    let order: Vec<usize> = run.in_order.iter().filter_map(|t| position.get(t.as_str()).copied()).collect();
    assert!(order.len() > run.in_order.len() / 2, "too few pushed lines found: {order:?}");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "pushed lines out of the processor's order: {order:?}");
}

/// `a` minus `b`, as multisets.
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for l in b {
        *left.entry(l.as_str()).or_default() += 1;
    }
    a.iter()
        .filter(|l| match left.get_mut(l.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// Every logged line served once, as multisets, saying which lines are missing or extra.
/// A text logged several times within the merge window is compared without its time:
/// when a push of one of those calls is lost, the pushed copy of another may pair with
/// the lost call's record (the merge pairs equal texts first with first, docs/API.md
/// "How pushed and polled lines merge", rule 3), and the line is served with that
/// call's time. Every other line is compared whole.
fn assert_same_lines(served: &[String], oracle: &[String]) {
    let mut times: HashMap<&str, usize> = HashMap::new();
    for l in oracle {
        *times.entry(text_of(l)).or_default() += 1;
    }
    let key = |l: &String| {
        if times.get(text_of(l)).copied().unwrap_or(0) > 1 {
            format!("(any time) {}", text_of(l))
        } else {
            l.clone()
        }
    };
    let served: Vec<String> = served.iter().map(key).collect();
    let oracle: Vec<String> = oracle.iter().map(key).collect();
    let (extra, missing) = (minus(&served, &oracle), minus(&oracle, &served));
    assert!(
        extra.is_empty() && missing.is_empty(),
        "served {} lines, logged {}; served but not logged: {extra:#?}; logged but not served: {missing:#?}",
        served.len(),
        oracle.len()
    );
}

/// The content of a served line `yyyy-MM-dd HH:mm:ss.SSS [worker] LEVEL content`.
fn text_of(line: &str) -> &str {
    line.splitn(5, ' ').nth(4).unwrap_or(line)
}

#[tokio::test]
async fn dropped_duplicated_and_reordered_pushes_serve_every_line_once() {
    let app = TestApp::spawn(sim(400)).await;
    let faults = PushFaults { drop: 0.1, duplicate: 0.2, reorder: 0.2, ..PushFaults::default() };
    app.sim.set_pusher(Some(Pusher { seed: 19, record: true, ..Pusher::new(&app.base).jobs([12]).faults(faults) }));
    let pushed = run(&app, 12).await;
    assert_exactly_once(&pushed);
    let s = &pushed.stats;
    assert!(s.dropped_batches > 0 && s.duplicate_answers > 0 && s.finals >= 1, "{s:?}");
    let fates: Vec<Fate> = app.sim.pushed_lines(pushed.id).iter().map(|l| l.fate).collect();
    for fate in [Fate::Dropped, Fate::Duplicated, Fate::Reordered, Fate::Sent] {
        assert!(fates.contains(&fate), "no {fate:?}: {fates:?}");
    }
    assert_eq!(pushed.last["push"]["sources"], 1, "{}", pushed.last);
    assert!(pushed.last["push"]["lines"].as_u64().unwrap() > 0, "{}", pushed.last);

    // A job that pushes nothing: PowerJob's log alone, no `push` in the answer.
    let polled = run(&app, 13).await;
    assert_eq!(polled.served, polled.oracle);
    assert!(polled.last.get("push").is_none(), "{}", polled.last);
    assert_eq!(app.sim.push_stats().sources, 1);
}

#[tokio::test]
async fn pushes_delayed_past_the_poll_are_recognised_and_dropped() {
    // Batches wait for a late one long enough for it to come (3 s), while the poll
    // (flush 200 ms, cache 300 ms) has long served the same lines.
    let app = TestApp::spawn_config(sim(300), "", |config| config.push.gap_wait_ms = 10_000).await;
    let faults = PushFaults { delay: 0.25, delay_ms: 3_000, duplicate: 0.1, ..PushFaults::default() };
    app.sim.set_pusher(Some(Pusher { seed: 5, record: true, ..Pusher::new(&app.base).jobs([12]).faults(faults) }));
    let id_run = run(&app, 12).await;
    let delayed = app.sim.push_stats();
    assert_exactly_once(&id_run);
    let fates: Vec<Fate> = app.sim.pushed_lines(id_run.id).iter().map(|l| l.fate).collect();
    assert!(fates.contains(&Fate::Delayed), "nothing delayed: {fates:?}");
    assert!(delayed.batches > 4 && delayed.finals >= 1, "{delayed:?}");
}

#[tokio::test]
async fn the_demo_pushes_vllm_start_with_drops_and_multi_worker_is_polled_only() {
    // The demo ten times faster, a third of the pushed batches lost on the way.
    let app = TestApp::demo(0.1, |_| {}).await;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    app.sim.set_pusher(Some(Pusher { seed: 3, record: true, ..powertail::demo::pusher(addr, 0.3) }));
    let start = run(&app, 12).await;
    assert_same_lines(&start.served, &start.oracle);
    assert!(start.stats.dropped_batches > 0 && start.stats.finals >= 1, "{:?}", start.stats);
    assert!(start.last["push"]["lines"].as_u64().unwrap() > 0, "{} {:?}", start.last, start.stats);

    let polled = run(&app, 16).await;
    assert_same_lines(&polled.served, &polled.oracle);
    assert!(polled.last.get("push").is_none(), "{}", polled.last);
    assert_eq!(app.sim.push_stats().sources, 1, "multi-worker pushed");
}
