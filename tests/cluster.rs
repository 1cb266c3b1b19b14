//! Cluster mode (issue 12), end to end: replicas sharing one line log on a real Redis
//! that each test starts itself (tests/common/cluster.rs), the PowerJob simulator
//! behind them, and clients that keep their cursor while replicas, Redis and leases
//! change under them. Every result is exact: each line of the simulator's final log
//! served once, in one sequence, under one epoch (unless the test says otherwise).
//!
//! Every test here needs `redis-server` (Debian package `redis-server`); they are
//! ignored without `--include-ignored`, which CI passes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{cluster_config, get_json, merge_toml, test_key_prefix, Cursor, InProcess, RedisServer};
use common::{app_config_toml, fast_sim};
use powertail::sim::{JobScript, Level, ScriptLine, ScriptWorker, SimConfig, SimHandle, SimJob, Simulator};
use serde_json::{json, Value};

/// How long a follow to `complete` may take (the runs last a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);

/// A run of `n` lines of worker 1 over `ms`; with `late > 0`, a second worker whose
/// clock is 400 ms behind logs `late` lines meanwhile: its batches sort before lines
/// already served (mid-log inserts upstream, appended at the end by powertail).
fn script(n: usize, ms: i64, late: usize) -> JobScript {
    let text: String = (0..n).map(|k| format!("[INFO] step {k} of {n}\n")).collect();
    let mut s = JobScript::from_text(&text, ms, 5, "ok");
    if late > 0 {
        s.workers.push(ScriptWorker { address: "10.0.0.22:27777".into(), clock_skew_ms: -400, flush_phase_ms: 130 });
        let step = ms / late as i64;
        for k in 0..late {
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

/// The fast simulator with job 12 playing `script`.
fn sim_config(script: JobScript) -> SimConfig {
    SimConfig {
        jobs: vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }],
        ..fast_sim()
    }
}

/// Runs job 12 now; its instance id.
fn run(sim: &SimHandle) -> i64 {
    sim.with_core(|c, now| c.run_job(12, None, 0, now)).expect("job 12 exists")
}

/// Every line the simulator's server can ever serve for `id`.
fn final_lines(sim: &SimHandle, id: i64) -> Vec<String> {
    sim.with_core(|c, _| c.final_lines(id))
}

/// The lines as a multiset.
fn counts(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_default() += 1;
    }
    m
}

/// Asserts that `got` holds exactly the lines of `want`, each as often (a diff of the
/// multisets when not).
#[track_caller]
fn assert_same_lines(got: &[String], want: &[String], what: &str) {
    let (g, w) = (counts(got), counts(want));
    if g != w {
        let extra: Vec<_> = g.iter().filter(|(l, n)| w.get(*l) != Some(n)).take(10).collect();
        let missing: Vec<_> = w.iter().filter(|(l, n)| g.get(*l) != Some(n)).take(10).collect();
        panic!(
            "{what}: {} lines served, {} expected\nserved a different number of times (first 10): {extra:?}\n\
             expected (first 10): {missing:?}",
            got.len(),
            want.len()
        );
    }
}

/// `GET /llm/logs/{id}/raw` of `base`: (the body, the `powertail-epoch` header).
async fn raw(base: &str, id: i64) -> (String, String) {
    let resp = reqwest::get(format!("{base}/llm/logs/{id}/raw")).await.unwrap();
    assert_eq!(resp.status(), 200, "{base}");
    let epoch = resp.headers()["powertail-epoch"].to_str().unwrap().to_owned();
    (resp.text().await.unwrap(), epoch)
}

/// Lines as `/raw` serves them: each followed by `\n`.
fn as_raw(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Asserts that every replica at `bases` serves exactly `lines` (byte for byte, through
/// `/raw` and `/llm/logs` from line 0) under `epoch`.
async fn assert_every_replica_serves(bases: &[&str], id: i64, lines: &[String], epoch: &str) {
    let http = reqwest::Client::new();
    for base in bases {
        let (text, raw_epoch) = raw(base, id).await;
        assert_eq!((raw_epoch.as_str(), text.len()), (epoch, as_raw(lines).len()), "{base}");
        assert!(text == as_raw(lines), "{base} serves another sequence");
        let (status, body) =
            get_json(&http, &format!("{base}/llm/logs?instanceId={id}&fromLine=0&limit=10000&epoch={epoch}")).await;
        assert_eq!(status, 200, "{base}: {body}");
        let all: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
        assert!(all == lines, "{base} serves another sequence through /llm/logs");
        assert_eq!(body["complete"], true, "{base}: {body}");
    }
}

async fn post(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new().post(format!("{base}{path}")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// 1. A client whose every poll goes to another of three replicas, through a log with a
/// second worker's late lines (mid-log inserts upstream) and a retry under the same
/// instance id, gets exactly what a client of one process in memory mode gets: every
/// line of the simulator's final log once, under one epoch; and every replica serves
/// the very same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_client_switching_replica_on_every_poll_gets_what_one_process_serves() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(sim_config(script(300, 2_000, 100))).await.unwrap();
    // A retry is seen by a complete log's next read after 200 ms.
    let extra = "[logs]\nrecheck_complete_ms = 200";
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await);
    }
    let single = InProcess::start_toml(&merge_toml(&app_config_toml(&[sim.url()], ""), "", extra)).await;
    let bases: Vec<&str> = replicas.iter().map(InProcess::base).collect();
    let one = [single.base()];
    let id = run(&sim);

    // Run 1, followed by both clients at once.
    let (mut across, mut alone) = (Cursor::new(id), Cursor::new(id));
    tokio::join!(across.follow(&bases, DEADLINE), alone.follow(&one, DEADLINE));
    let run1 = across.lines.len();
    assert_same_lines(&across.lines, &final_lines(&sim, id), "run 1 across replicas");
    assert!(across.answers.len() > 10, "followed while it grew ({} polls)", across.answers.len());

    // A retry under the same id, through one replica; both clients keep their cursor.
    let (status, body) = post(bases[1], &format!("/llm/instances/{id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    let second_run_complete = |b: &Value| b["complete"] == true && b["attempt"] == 2;
    tokio::join!(
        across.follow_until(&bases, DEADLINE, second_run_complete),
        alone.follow_until(&one, DEADLINE, second_run_complete)
    );

    // Both runs, each line once; what the single process served, as a multiset.
    let expected = final_lines(&sim, id);
    assert_same_lines(&alone.lines, &expected, "one process in memory mode");
    assert_same_lines(&across.lines, &expected, "across replicas");
    let last = across.answers.last().unwrap();
    assert_eq!(last["attempts"], json!([{"attempt": 1, "fromLine": 0}, {"attempt": 2, "fromLine": run1}]));
    // One sequence: every replica serves the client's lines in the client's order.
    let epoch = across.epoch.clone().unwrap();
    assert_every_replica_serves(&bases, id, &across.lines, &epoch).await;
    assert_eq!(redis_state(&redis, &test_key_prefix(), id).next, across.lines.len() as u64);
    for r in replicas {
        r.stop().await;
    }
    single.stop().await;
}

/// An instance's shared state in Redis (`<prefix>:{<id>}:state`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    epoch: String,
    next: u64,
    committed: u64,
}

/// The state of `id` under `prefix`.
#[track_caller]
fn redis_state(redis: &RedisServer, prefix: &str, id: i64) -> State {
    let key = key(prefix, id, "state");
    let reply = redis.cmd(&["HMGET", &key, "epoch", "next", "committed"]);
    let v: Vec<&str> = reply.lines().collect();
    assert_eq!(v.len(), 3, "{key}: {reply}");
    State { epoch: v[0].to_owned(), next: v[1].parse().unwrap(), committed: v[2].parse().unwrap() }
}

/// `<prefix>:{<id>}:<what>`
fn key(prefix: &str, id: i64, what: &str) -> String {
    format!("{prefix}:{{{id}}}:{what}")
}
