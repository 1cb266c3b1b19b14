//! Cluster mode (issue 12), end to end: replicas sharing one line log on a real Redis
//! that each test starts itself (tests/common/cluster.rs), the PowerJob simulator
//! behind them, and clients that keep their cursor while replicas, Redis and leases
//! change under them. Every result is exact: each line of the simulator's final log
//! served once, in one sequence, under one epoch (unless the test says otherwise).
//!
//! Every test here needs `redis-server` (Debian package `redis-server`); they are
//! ignored without `--include-ignored`, which CI passes. (Memory mode, where a restart
//! answers 410 to an old epoch, is tests/epoch.rs.)

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::{
    brief, cluster_config, get_json, merge_toml, test_key_prefix, wait_for, wait_until, Cursor, InProcess, RedisServer,
    Replica, Reply,
};
use common::{app_config_toml, fast_sim, steps, Deadline};
use powertail::sim::{Fault, FaultKind, JobScript, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};

/// How long a follow to `complete` may take (the runs last a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);

/// A run of `n` lines of worker 1 over `ms`; with `late > 0`, a second worker whose
/// clock is 400 ms behind logs `late` lines meanwhile ([`common::Steps::late`]).
fn script(n: usize, ms: i64, late: usize) -> JobScript {
    steps(n).over(ms).late(late).script()
}

/// The fast simulator with job 12 playing `script`.
fn sim_config(script: JobScript) -> SimConfig {
    SimConfig { jobs: vec![common::sim_job(12, script)], ..fast_sim() }
}

/// Runs job 12 now; its instance id.
fn run(sim: &SimHandle) -> i64 {
    common::run_job(sim, 12)
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
        assert_eq!(status, 200, "{base}: {}", brief(&body));
        let all: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
        assert!(all == lines, "{base} serves another sequence through /llm/logs");
        assert_eq!(body["complete"], true, "{base}: {}", brief(&body));
    }
}

async fn post(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new().post(format!("{base}{path}")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
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

/// The node id of the replica whose token the lease of `id` holds (`<node_id>:<hex>`).
fn lease_node(redis: &RedisServer, prefix: &str, id: i64) -> Option<String> {
    match redis.try_cmd(&["GET", &key(prefix, id, "lease")]).unwrap() {
        Reply::Bulk(Some(token)) => {
            let token = String::from_utf8(token).unwrap();
            Some(token.rsplit_once(':').unwrap_or_else(|| panic!("a token {token:?}")).0.to_owned())
        }
        Reply::Bulk(None) => None,
        other => panic!("GET lease: {other:?}"),
    }
}

/// `errorstat_<code>` of `INFO errorstats`: error replies Redis sent with that code.
fn error_replies(redis: &RedisServer, code: &str) -> u64 {
    redis
        .info_field("errorstats", &format!("errorstat_{code}"))
        .map_or(0, |v| v.strip_prefix("count=").unwrap().split(',').next().unwrap().parse().unwrap())
}

/// A replica's `cluster.node_id`, as `/readyz` reports it.
async fn node_of(replica: &Replica) -> String {
    let (_, body) = replica.get("/readyz").await;
    body["store"]["node"].as_str().unwrap_or_else(|| panic!("no store.node: {body}")).to_owned()
}

/// `GET url` with a client of its own (for a spawned task).
async fn get_json_owned(url: String) -> (u16, Value) {
    get_json(&reqwest::Client::new(), &url).await
}

/// Subscribers of the wake-up channel `<prefix>:appended` (`PUBSUB NUMSUB`).
fn subscribers(redis: &RedisServer, prefix: &str) -> u64 {
    let channel = format!("{prefix}:appended");
    let reply = redis.cmd(&["PUBSUB", "NUMSUB", &channel]);
    reply.lines().nth(1).unwrap_or_else(|| panic!("PUBSUB NUMSUB: {reply}")).parse().unwrap()
}

/// How Redis becomes unreachable.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// SIGSTOP: connections are accepted, nothing is answered (commands time out).
    Paused,
    /// `kill -9`: connections are refused (a durable Redis comes back with its data).
    Killed,
}

/// The value of `powertail_store_errors_total{op="<op>",kind="<kind>"}` in a
/// `/metrics` text (0 when absent).
fn store_errors(metrics: &str, op: &str, kind: &str) -> u64 {
    let (op, kind) = (format!("op=\"{op}\""), format!("kind=\"{kind}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with("powertail_store_errors_total{") && l.contains(&op) && l.contains(&kind))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// The OOM errors of appends one replica counted.
async fn oom_appends(replica: &Replica) -> u64 {
    let (status, body) = replica.get("/metrics").await;
    assert_eq!(status, 200);
    store_errors(body.as_str().unwrap(), "append", "oom")
}

/// `PTTL key` in ms (-2: no such key, -1: no expiry).
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    match redis.try_cmd(&["PTTL", key]).unwrap() {
        Reply::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
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
    let upstream = final_lines(&sim, id);
    assert_same_lines(&across.lines, &upstream, "run 1 across replicas");
    assert!(across.lines != upstream, "late lines were inserted mid-log upstream (and served at the end)");
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

/// 2. `kill -9` of the replica that holds an instance's lease, mid-log: a survivor takes
/// the lease within `lease_ms` + one refresh interval (+ slack for this machine) and
/// reads PowerJob on; the client, keeping its cursor and epoch across the switch, loses
/// and repeats nothing. The killed replica, started again, serves the same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn kill_9_of_the_lease_holder_loses_and_repeats_nothing() {
    const LEASE: Duration = Duration::from_millis(600); // cluster_config's lease_ms
    const REFRESH: Duration = Duration::from_millis(50); // app_config_toml's refresh_interval_ms
    const SLACK: Duration = Duration::from_millis(1_000);
    let redis = RedisServer::start();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(script(500, 5_000, 100))).await.unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::spawn(&cluster_config(&sim.url(), &redis.url(), "")).await);
    }
    let mut nodes = Vec::new();
    for r in &replicas {
        nodes.push(node_of(r).await);
    }
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    let all: Vec<String> = replicas.iter().map(|r| r.base().to_owned()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    cursor.follow_until(&all, DEADLINE, |b| b["totalLines"].as_u64() >= Some(100)).await;
    let holder = lease_node(&redis, &prefix, id).expect("a replica holds the lease while the log is read");
    let h = nodes.iter().position(|n| *n == holder).unwrap_or_else(|| panic!("{holder} is none of {nodes:?}"));
    let held_at_kill = cursor.lines.len();

    replicas[h].kill9();
    let killed = tokio::time::Instant::now();
    let survivors: Vec<&str> = (0..3).filter(|&k| k != h).map(|k| all[k]).collect();
    // The client goes on polling the survivors (as a load balancer would send it). The
    // lease moves to one of them, which reads PowerJob's log next.
    let mut taken: Option<(Duration, String, u64)> = None;
    let log_read_after = loop {
        cursor.poll(survivors[cursor.polls % 2], 0).await;
        if taken.is_none() {
            if let Some(node) = lease_node(&redis, &prefix, id).filter(|n| *n != holder) {
                taken = Some((killed.elapsed(), node, sim.requests("/instance/log")));
            }
        }
        if let Some((_, _, reads)) = &taken {
            if sim.requests("/instance/log") > *reads {
                break killed.elapsed();
            }
        }
        assert!(killed.elapsed() < 4 * (LEASE + REFRESH + SLACK), "no takeover: {taken:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (takeover, new_holder, _) = taken.unwrap();
    eprintln!(
        "kill -9 of {holder}: {new_holder} took the lease after {takeover:?}, read the log after {log_read_after:?}"
    );
    assert!(takeover <= LEASE + REFRESH + SLACK, "lease taken after {takeover:?}");
    assert!(log_read_after <= LEASE + REFRESH + SLACK + REFRESH, "log read after {log_read_after:?}");
    assert!(nodes.contains(&new_holder));

    // On to the end through the survivors: each line once, in one sequence.
    cursor.follow(&survivors, DEADLINE).await;
    assert!(cursor.lines.len() > held_at_kill + 100, "killed mid-log");
    assert_same_lines(&cursor.lines, &final_lines(&sim, id), "across a kill -9");
    let epoch = cursor.epoch.clone().unwrap();
    assert_every_replica_serves(&survivors, id, &cursor.lines, &epoch).await;
    let state = redis_state(&redis, &prefix, id);
    assert_eq!(
        (state.epoch.as_str(), state.next, state.committed),
        (epoch.as_str(), cursor.lines.len() as u64, state.next)
    );
    assert_eq!(redis.cmd(&["XLEN", &key(&prefix, id, "lines")]), cursor.lines.len().to_string());

    // Started again, the killed replica serves that very sequence under that epoch.
    replicas[h].respawn().await;
    assert_every_replica_serves(&all, id, &cursor.lines, &epoch).await;
}

/// 3. The lease holder is paused (SIGSTOP) while its refresh waits for PowerJob; its
/// lease runs out and another replica takes it and appends. Resumed, the old holder
/// tries to append what it read: Redis refuses it (`FENCED`, counted in Redis's error
/// statistics), nothing forks or repeats, and the old holder serves the store's
/// sequence from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_paused_holder_resuming_after_its_lease_moved_is_fenced() {
    let redis = RedisServer::start();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(script(600, 6_000, 100))).await.unwrap();
    // PowerJob's answer may take longer than the pause: the paused refresh must not time out.
    let config = || cluster_config(&sim.url(), &redis.url(), "[powerjob]\nrequest_timeout_ms = 20000");
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::spawn(&config()).await);
    }
    let mut nodes = Vec::new();
    for r in &replicas {
        nodes.push(node_of(r).await);
    }
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    let all: Vec<String> = replicas.iter().map(|r| r.base().to_owned()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    cursor.follow_until(&all, DEADLINE, |b| b["totalLines"].as_u64() >= Some(100)).await;
    let holder = lease_node(&redis, &prefix, id).expect("a replica holds the lease while the log is read");
    let h = nodes.iter().position(|n| *n == holder).unwrap();
    let others: Vec<&str> = (0..3).filter(|&k| k != h).map(|k| all[k]).collect();

    // PowerJob answers the holder's next log read 1.5 s late; reads of the holder start
    // its refreshes until one reads the log, and the holder is paused while it waits for
    // the answer. (The reads still open then are answered after the pause.)
    let log_reads = sim.requests("/instance/log");
    sim.inject(Fault::new(Some("/instance/log"), FaultKind::Delay(Duration::from_millis(1_500)), 1));
    let from = cursor.lines.len();
    let epoch = cursor.epoch.clone().unwrap();
    let mut held_reads = Vec::new();
    let deadline = Deadline::after(Duration::from_secs(10));
    while sim.requests("/instance/log") == log_reads {
        deadline.check(|| "the holder did not read the log");
        let url = format!("{}/llm/logs?instanceId={id}&fromLine={from}&epoch={epoch}", all[h]);
        held_reads.push(tokio::spawn(get_json_owned(url)));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    replicas[h].sigstop();
    assert_eq!(lease_node(&redis, &prefix, id).as_deref(), Some(holder.as_str()), "paused while it held the lease");
    let next_at_pause = redis_state(&redis, &prefix, id).next;

    // The others go on: one takes the lease and appends past the paused holder's view.
    let fenced_before = error_replies(&redis, "FENCED");
    let deadline = Deadline::after(Duration::from_secs(20));
    loop {
        cursor.poll(others[cursor.polls % 2], 0).await;
        let moved = lease_node(&redis, &prefix, id).is_some_and(|n| n != holder);
        if moved && redis_state(&redis, &prefix, id).next > next_at_pause {
            break;
        }
        deadline.check(|| "no other replica took the lease and appended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[h].sigcont();
    // Its refresh goes on with PowerJob's late answer; its append is refused whole.
    wait_until(Duration::from_secs(20), "the resumed holder's append to be refused", || async {
        error_replies(&redis, "FENCED") > fenced_before
    })
    .await;
    let mut held_answers = Vec::new();
    for read in held_reads {
        let (status, body) = read.await.unwrap();
        assert_eq!(status, 200, "{}", brief(&body));
        held_answers.push(serde_json::from_value::<Vec<String>>(body["lines"].clone()).unwrap());
    }

    // Everyone, the resumed replica included, serves one sequence to the end.
    cursor.follow(&all, DEADLINE).await;
    assert_same_lines(&cursor.lines, &final_lines(&sim, id), "across a paused holder");
    for lines in held_answers {
        assert_eq!(lines[..], cursor.lines[from..from + lines.len()], "an answer of the paused replica");
    }
    assert_every_replica_serves(&all, id, &cursor.lines, &epoch).await;
    let state = redis_state(&redis, &prefix, id);
    assert_eq!((state.epoch.as_str(), state.next), (epoch.as_str(), cursor.lines.len() as u64));
    assert_eq!(redis.cmd(&["XLEN", &key(&prefix, id, "lines")]), cursor.lines.len().to_string());
    // A refusal is no error of the store (it is how fencing works).
    let (_, metrics) = replicas[h].get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        !metrics.lines().any(|l| l.starts_with("powertail_store_errors_total") && l.contains("op=\"append\"")),
        "{metrics}"
    );
}

/// 4a. Redis restarts with its data (`appendonly yes`, `appendfsync always`) mid-log:
/// the epoch stays, the client's cursor stays valid and the follow goes on exactly where
/// it was; every replica subscribes again, and a long-poll on a replica that does not
/// hold the lease (and whose own timer would answer only after 5 s) is woken through
/// Redis by the holder's next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_durable_redis_restart_keeps_the_epoch_and_every_cursor() {
    const SLOW_TIMER: Duration = Duration::from_secs(5);
    let mut redis = RedisServer::start_durable();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(script(500, 5_000, 100))).await.unwrap();
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "")).await;
    // A replica that refreshes on its own only every 5 s: only a wake-up through Redis
    // answers its long-polls sooner.
    let slow = "lease_ms = 10000\n[logs]\nrefresh_interval_ms = 5000";
    let n = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), slow)).await;
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    cursor.follow_until(&[a.base(), b.base()], DEADLINE, |b| b["totalLines"].as_u64() >= Some(100)).await;
    let epoch = cursor.epoch.clone().unwrap();
    assert_eq!(redis_state(&redis, &prefix, id).epoch, epoch);
    // N reads the instance once: it holds it now, without the lease (A or B renews it).
    let (status, body) = n.get(&format!("/llm/logs?instanceId={id}&epoch={epoch}&limit=10000")).await;
    assert_eq!(status, 200, "{}", brief(&body));
    let n_lines: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
    assert_eq!(n_lines[..], cursor.lines[..n_lines.len()]);
    let n_node = n.logs.node().unwrap().to_owned();
    assert_ne!(lease_node(&redis, &prefix, id), Some(n_node.clone()), "N holds no lease");
    assert_eq!(subscribers(&redis, &prefix), 3);

    // kill -9 and start again: every acknowledged write is back, under the same epoch.
    let state = redis_state(&redis, &prefix, id);
    redis.restart();
    let back = redis_state(&redis, &prefix, id);
    assert_eq!((back.epoch.as_str(), back.next), (epoch.as_str(), state.next), "the log survived the restart");

    // A long-poll on N from its end, answered by a wake-up once the holder appends.
    let from = n_lines.len();
    let url = format!("{}/llm/logs?instanceId={id}&fromLine={from}&epoch={epoch}&waitMs=20000", n.base());
    let started = tokio::time::Instant::now();
    let long_poll = tokio::spawn(async move {
        let answer = get_json_owned(url).await;
        (answer, started.elapsed())
    });
    // The client goes on through A and B with its cursor: same epoch, nothing lost.
    cursor.follow_until(&[a.base(), b.base()], DEADLINE, |_| long_poll.is_finished()).await;
    let ((status, body), waited) = long_poll.await.unwrap();
    eprintln!("a long-poll on a non-holder answered {waited:?} after the Redis restart");
    assert_eq!(status, 200, "{}", brief(&body));
    assert_eq!(body["epoch"], epoch.as_str());
    let woken: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
    assert!(!woken.is_empty(), "{}", brief(&body));
    assert!(waited < SLOW_TIMER - Duration::from_secs(1), "answered after {waited:?}: not by a wake-up");
    wait_until(Duration::from_secs(10), "every replica subscribed again", || async {
        subscribers(&redis, &prefix) == 3
    })
    .await;

    cursor.follow(&[a.base(), b.base()], DEADLINE).await;
    // N learns of the completion (the holder's last append may carry no line) through
    // Redis too, long before its own timer.
    let total = cursor.lines.len();
    let completed = tokio::time::Instant::now();
    wait_until(Duration::from_millis(1_500), "N to see the log complete", || async {
        let (status, body) = n.get(&format!("/llm/logs?instanceId={id}&fromLine={total}&epoch={epoch}")).await;
        assert_eq!(status, 200, "{}", brief(&body));
        body["complete"] == true
    })
    .await;
    eprintln!("N saw the completion {:?} after the client", completed.elapsed());
    assert_same_lines(&cursor.lines, &final_lines(&sim, id), "across a Redis restart");
    assert_eq!(woken[..], cursor.lines[from..from + woken.len()], "N's answer");
    assert_every_replica_serves(&[a.base(), b.base(), n.base()], id, &cursor.lines, &epoch).await;
    assert_eq!(redis_state(&redis, &prefix, id).next, cursor.lines.len() as u64);
    for r in [a, b, n] {
        r.stop().await;
    }
}

/// 4b. Redis restarts without its data (no persistence): every replica answers the old
/// epoch with 410 `epoch_mismatch` naming one new epoch, never lines of another
/// sequence, and serves the new sequence from line 0, whole and exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_redis_restart_without_data_is_a_new_epoch_on_every_replica() {
    let mut redis = RedisServer::start();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(script(400, 4_000, 100))).await.unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "")).await);
    }
    let bases: Vec<&str> = replicas.iter().map(InProcess::base).collect();
    let id = run(&sim);
    let mut old = Cursor::new(id);
    old.follow_until(&bases, DEADLINE, |b| b["totalLines"].as_u64() >= Some(100)).await;
    let e1 = old.epoch.clone().unwrap();

    redis.restart();
    assert!(redis.keys(&format!("{prefix}:*")).is_empty(), "the restart lost every key");
    // Each replica learns at its next refresh that the sequence is gone: 410 from then
    // on (before that, it may still answer from the old sequence it holds, under E1).
    let http = reqwest::Client::new();
    let mut e2 = Vec::new();
    for base in &bases {
        let url = format!("{base}/llm/logs?instanceId={id}&fromLine={}&epoch={e1}", old.lines.len());
        let epoch = wait_for(Duration::from_secs(10), "410 to the old epoch", || async {
            let (status, body) = get_json(&http, &url).await;
            match status {
                200 => {
                    assert_eq!(body["epoch"], e1.as_str(), "{base}: {}", brief(&body));
                    None
                }
                410 => {
                    assert_eq!(body["error"]["code"], "epoch_mismatch", "{body}");
                    Some(body["epoch"].as_str().unwrap().to_owned())
                }
                _ => panic!("{base}: {status} {}", brief(&body)),
            }
        })
        .await;
        e2.push(epoch);
    }
    assert!(e2.iter().all(|e| *e == e2[0] && *e != e1), "{e1} then {e2:?}");
    let e2 = e2.swap_remove(0);
    assert_eq!(redis_state(&redis, &prefix, id).epoch, e2);
    for base in &bases {
        let (status, body) = get_json(&http, &format!("{base}/llm/logs?instanceId={id}&fromLine=0&epoch={e1}")).await;
        assert_eq!((status, body["epoch"].as_str()), (410, Some(e2.as_str())), "{base}: {body}");
    }

    // The client starts over from line 0 without an epoch: the new sequence, whole.
    let mut new = Cursor::new(id);
    new.follow(&bases, DEADLINE).await;
    assert_eq!(new.epoch.as_deref(), Some(e2.as_str()));
    assert_same_lines(&new.lines, &final_lines(&sim, id), "the new sequence");
    assert_every_replica_serves(&bases, id, &new.lines, &e2).await;
    for r in replicas {
        r.stop().await;
    }
}

/// 5. Redis unreachable (paused with SIGSTOP, then killed): every replica answers what it
/// holds, 200 with `stale: true`; an instance it does not hold gets 503
/// `store_unavailable` with `Retry-After`; no replica reads PowerJob on its own (that
/// would fork the order). Once Redis is back, everything recovers without restarting a
/// replica, and the client's follow ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn replicas_serve_what_they_hold_while_redis_is_unreachable() {
    let mut redis = RedisServer::start_durable();
    let prefix = test_key_prefix();
    // Long enough to be growing through both outages (a complete log is never stale).
    let sim = Simulator::spawn(sim_config(script(1_200, 14_000, 100))).await.unwrap();
    // A paused Redis is given up on after 300 ms (+ the commit timeout, 200 ms).
    let extra = "command_timeout_ms = 300";
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let bases = [a.base(), b.base()];
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    cursor.follow_until(&bases, DEADLINE, |b| b["totalLines"].as_u64() >= Some(100)).await;
    let http = reqwest::Client::new();
    let mut prefixes = Vec::new();

    for outage in [Outage::Paused, Outage::Killed] {
        match outage {
            Outage::Paused => redis.stop(),
            Outage::Killed => redis.kill(),
        }
        // Each replica answers from what it holds, stale once its refresh failed: its
        // lines from line 0 (a prefix of the one sequence, checked at the end)…
        let epoch = cursor.epoch.clone().unwrap();
        let mut held = Vec::new();
        for base in bases {
            let url = format!("{base}/llm/logs?instanceId={id}&limit=10000&epoch={epoch}");
            let lines = wait_for(Duration::from_secs(10), "a stale answer", || async {
                let (status, body) = get_json(&http, &url).await;
                assert_eq!(status, 200, "{outage:?}: {base}: {}", brief(&body));
                assert_ne!(body["complete"], true, "complete before the outage ended: make the log longer");
                (body["stale"] == true).then(|| serde_json::from_value::<Vec<String>>(body["lines"].clone()).unwrap())
            })
            .await;
            held.push(lines.len());
            prefixes.push(lines);
        }
        let upstream = (sim.requests("/instance/log"), sim.requests("/openApi/fetchInstanceInfo"));
        // …an instance no replica holds: 503, store_unavailable, Retry-After…
        let other = run(&sim);
        for base in bases {
            let resp = http.get(format!("{base}/llm/logs?instanceId={other}")).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body: Value = resp.json().await.unwrap();
            assert_eq!(status, 503, "{outage:?}: {base}: {body}");
            assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
            assert!(retry_after.is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s > 0)), "{body}");
        }
        // …and the client's cursor: stale lines from a replica that holds that far, 503
        // from one that does not (lines it does not hold). For a while, and PowerJob is
        // not read at all meanwhile.
        let watched = tokio::time::Instant::now();
        while watched.elapsed() < Duration::from_millis(1_500) {
            let k = cursor.polls % 2;
            let at = cursor.lines.len();
            let (status, body) = cursor.try_poll(bases[k], 0).await;
            if held[k] >= at {
                assert_eq!((status, &body["stale"]), (200, &json!(true)), "{outage:?}: {}", brief(&body));
            } else {
                assert_eq!((status, &body["error"]["code"]), (503, &json!("store_unavailable")), "{outage:?}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let now = (sim.requests("/instance/log"), sim.requests("/openApi/fetchInstanceInfo"));
        assert_eq!(now, upstream, "{outage:?}: PowerJob (log reads, status reads) read while Redis was down");

        match outage {
            Outage::Paused => redis.cont(),
            Outage::Killed => redis.restart(),
        }
        // Back by itself: fresh answers under the same epoch, the other instance served,
        // PowerJob read again.
        for base in bases {
            let deadline = Deadline::after(Duration::from_secs(15));
            while cursor.poll(base, 0).await["stale"] != false {
                deadline.check(|| format!("{outage:?}: {base} stays stale"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let url = format!("{base}/llm/logs?instanceId={other}");
            wait_until(Duration::from_secs(15), "the other instance served", || async {
                get_json(&http, &url).await.0 == 200
            })
            .await;
        }
        assert!(sim.requests("/instance/log") > upstream.0, "{outage:?}: PowerJob read again");
        assert_eq!(redis_state(&redis, &prefix, id).epoch, cursor.epoch.clone().unwrap(), "{outage:?}");
    }

    cursor.follow(&bases, DEADLINE).await;
    assert_same_lines(&cursor.lines, &final_lines(&sim, id), "across two Redis outages");
    assert!(cursor.answers.iter().any(|b| b["stale"] == true));
    for held in prefixes {
        assert!(held[..] == cursor.lines[..held.len()], "a replica served another sequence while Redis was down");
    }
    let epoch = cursor.epoch.clone().unwrap();
    assert_every_replica_serves(&bases, id, &cursor.lines, &epoch).await;
    assert_eq!(redis_state(&redis, &prefix, id).next, cursor.lines.len() as u64);
    a.stop().await;
    b.stop().await;
}

/// 5b. A replica behind the client's cursor never says `complete`: B holds a complete
/// run, the instance is retried through A and the client reads the new run's first
/// lines there; B, paused meanwhile, resumes while Redis is unreachable. Asked from the
/// client's cursor (lines B does not hold), B answers 503 `store_unavailable` (JSON and
/// the stream's reconnect alike), not `complete: true` (the client would stop for good
/// and lose the rest of the run) nor 204; once Redis is back it serves the new run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_replica_behind_the_cursor_never_says_complete() {
    let redis = RedisServer::start_durable();
    let sim = Simulator::spawn(sim_config(script(100, 1_000, 0))).await.unwrap();
    let config = || cluster_config(&sim.url(), &redis.url(), "command_timeout_ms = 300");
    let a = Replica::spawn(&config()).await;
    let b = Replica::spawn(&config()).await;
    let both = [a.base(), b.base()];
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    cursor.follow(&both, DEADLINE).await;
    let run1 = cursor.lines.len();
    let epoch = cursor.epoch.clone().unwrap();
    let (status, body) = b.get(&format!("/llm/logs?instanceId={id}&fromLine={run1}&epoch={epoch}")).await;
    assert_eq!((status, &body["complete"]), (200, &json!(true)), "{}", brief(&body));

    b.sigstop();
    let (status, body) = post(a.base(), &format!("/llm/instances/{id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    let mut polls = 0;
    while cursor.lines.len() == run1 {
        polls += 1;
        assert!(polls < 1_000, "no line of the second run on A");
        cursor.poll(a.base(), 0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.stop();
    b.sigcont();
    let at = cursor.lines.len();
    // (Until its refresh failed, B may answer without lines; never `complete`.)
    let url = format!("/llm/logs?instanceId={id}&fromLine={at}&epoch={epoch}");
    wait_until(Duration::from_secs(10), "503 from B", || async {
        let (status, body) = b.get(&url).await;
        assert_ne!(body["complete"], true, "B, behind the cursor, says complete: {}", brief(&body));
        match status {
            200 => assert_eq!(body["lines"], json!([]), "{}", brief(&body)),
            503 => assert_eq!(body["error"]["code"], "store_unavailable", "{body}"),
            _ => panic!("{status} {body}"),
        }
        status == 503
    })
    .await;
    let resp = reqwest::Client::new()
        .get(format!("{}/llm/logs/{id}/stream?epoch={epoch}", b.base()))
        .header("Last-Event-ID", at.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "an EventSource reconnecting to B");
    // What B holds it still serves (the first run, complete as B knows it).
    let (status, body) = b.get(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch={epoch}")).await;
    assert_eq!(status, 200, "{}", brief(&body));
    assert_eq!(body["lines"], json!(cursor.lines[..run1]));

    redis.cont();
    cursor.follow_until(&both, DEADLINE, |b| b["complete"] == true && b["attempt"] == 2).await;
    assert_same_lines(&cursor.lines, &final_lines(&sim, id), "both runs");
    assert_every_replica_serves(&both, id, &cursor.lines, &epoch).await;
}

/// 6a. Redis out of memory (`maxmemory 2mb`, `noeviction`) under a log that outgrows it:
/// the append that does not fit fails whole (the stream holds exactly `next` lines, all
/// committed), `powertail_store_errors_total{op="append",kind="oom"}` counts it, and
/// readers on every replica keep getting exactly what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn an_append_past_maxmemory_fails_whole_and_readers_keep_the_committed_lines() {
    let redis = RedisServer::start_with(&["--maxmemory", "2mb"]);
    let prefix = test_key_prefix();
    // 6 000 lines of about 250 bytes: 1.5 MB of text, more than the ~1.1 MB left.
    let pad = "x".repeat(200);
    let text: String = (0..6_000).map(|k| format!("[INFO] {pad} row {k}\n")).collect();
    let sim = Simulator::spawn(sim_config(JobScript::from_text(&text, 4_000, 5, "ok"))).await.unwrap();
    let a = Replica::spawn(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let b = Replica::spawn(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let both = [a.base(), b.base()];
    assert_eq!(oom_appends(&a).await + oom_appends(&b).await, 0);
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    let lines_key = key(&prefix, id, "lines");
    let deadline = Deadline::after(DEADLINE);
    let mut refused = 0;
    while refused == 0 {
        let body = cursor.poll(both[cursor.polls % 2], 0).await;
        assert_ne!(body["complete"], true, "the whole log fitted: make it longer");
        deadline.check(|| "no append refused for lack of memory");
        refused = oom_appends(&a).await + oom_appends(&b).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Whole: every line the stream holds is counted and committed, nothing more.
    let state = redis_state(&redis, &prefix, id);
    assert_eq!(state.next, state.committed);
    assert_eq!(redis.cmd(&["XLEN", &lines_key]), state.next.to_string());
    // Readers get exactly the committed lines, on either replica, and no more.
    let committed = usize::try_from(state.committed).unwrap();
    cursor.follow_until(&both, DEADLINE, |b| b["nextLine"].as_u64() == Some(committed as u64)).await;
    let http = reqwest::Client::new();
    let epoch = cursor.epoch.clone().unwrap();
    for base in both {
        wait_until(Duration::from_secs(10), "the replica to serve the committed lines", || async {
            let (status, body) =
                get_json(&http, &format!("{base}/llm/logs?instanceId={id}&limit=10000&epoch={epoch}")).await;
            assert_eq!(status, 200, "{}", brief(&body));
            let lines: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
            assert!(lines[..] == cursor.lines[..lines.len().min(committed)], "{base} serves another sequence");
            assert!(lines.len() <= committed, "{base} serves lines that are not committed");
            lines.len() == committed
        })
        .await;
    }
    // The refresh is tried again (and refused again), never in part.
    let later = tokio::time::Instant::now();
    while later.elapsed() < Duration::from_secs(2) {
        cursor.poll(both[cursor.polls % 2], 0).await;
        let now = redis_state(&redis, &prefix, id);
        assert_eq!((now.next, now.committed), (state.next, state.committed), "an append went through");
        assert_eq!(redis.cmd(&["XLEN", &lines_key]), state.next.to_string());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(cursor.lines.len(), committed);
    // A replica that did not hold the log reads it too, also once the lease has lapsed
    // (nobody can take it while Redis refuses writes).
    wait_until(Duration::from_secs(5), "the lease to lapse", || async { lease_node(&redis, &prefix, id).is_none() })
        .await;
    let c = Replica::spawn(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let mut fresh = Cursor::new(id);
    fresh
        .follow_until(&[c.base()], Duration::from_secs(10), |b| b["nextLine"].as_u64() == Some(committed as u64))
        .await;
    assert!(fresh.lines == cursor.lines && fresh.epoch == cursor.epoch);
    let total = oom_appends(&a).await + oom_appends(&b).await;
    eprintln!(
        "{committed} lines committed of {}; appends refused for lack of memory: {refused}, then {total}",
        final_lines(&sim, id).len()
    );
}

/// 6b. `retain_complete_ms`: once a log is complete its keys expire that long after
/// (none before: a growing log's keys have no expiry); they are gone then, and the next
/// read rebuilds the log under a new epoch (410 to the old one), whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_complete_log_expires_after_retain_complete_ms() {
    const RETAIN_MS: i64 = 2_000;
    let redis = RedisServer::start();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(script(200, 1_500, 0))).await.unwrap();
    // (A complete log read is checked again after 200 ms: the read after the expiry.)
    let extra = format!("retain_complete_ms = {RETAIN_MS}\n[logs]\nrecheck_complete_ms = 200");
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), &extra)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), &extra)).await;
    let both = [a.base(), b.base()];
    let id = run(&sim);
    let (state_key, lines_key) = (key(&prefix, id, "state"), key(&prefix, id, "lines"));
    let mut cursor = Cursor::new(id);
    cursor.follow_until(&both, DEADLINE, |b| b["totalLines"].as_u64() >= Some(20)).await;
    assert_eq!((pttl(&redis, &state_key), pttl(&redis, &lines_key)), (-1, -1), "a growing log does not expire");
    cursor.follow(&both, DEADLINE).await;
    let e1 = cursor.epoch.clone().unwrap();
    assert_same_lines(&cursor.lines, &final_lines(&sim, id), "the first sequence");
    for k in [&state_key, &lines_key] {
        let ttl = pttl(&redis, k);
        assert!(0 < ttl && ttl <= RETAIN_MS, "{k}: PTTL {ttl}");
    }
    wait_until(Duration::from_millis(RETAIN_MS as u64 + 5_000), "the keys to expire", || async {
        redis.try_cmd(&["EXISTS", &state_key, &lines_key]).unwrap() == Reply::Int(0)
    })
    .await;

    // A read of the old epoch: 410 with a new one (once the replica looked at Redis).
    let http = reqwest::Client::new();
    let url = format!("{}/llm/logs?instanceId={id}&fromLine={}&epoch={e1}", a.base(), cursor.lines.len());
    let e2 = wait_for(Duration::from_secs(10), "410 to the expired epoch", || async {
        let (status, body) = get_json(&http, &url).await;
        match status {
            200 => None,
            410 => Some(body["epoch"].as_str().unwrap().to_owned()),
            _ => panic!("{status} {}", brief(&body)),
        }
    })
    .await;
    assert_ne!(e2, e1);
    let mut again = Cursor::new(id);
    again.follow(&both, DEADLINE).await;
    assert_eq!(again.epoch.as_deref(), Some(e2.as_str()));
    assert_same_lines(&again.lines, &final_lines(&sim, id), "the rebuilt sequence");
    assert_every_replica_serves(&both, id, &again.lines, &e2).await;
    a.stop().await;
    b.stop().await;
}

/// 6c. `logs.max_lines_per_instance` holds in cluster mode: the log is cut at the cap
/// (`truncated: true`), Redis holds exactly that many lines, every replica the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn the_line_cap_holds_in_redis() {
    let redis = RedisServer::start();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(script(400, 1_500, 0))).await.unwrap();
    let extra = "[logs]\nmax_lines_per_instance = 150";
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let both = [a.base(), b.base()];
    let id = run(&sim);
    let mut cursor = Cursor::new(id);
    let last = cursor.follow(&both, DEADLINE).await;
    assert_eq!(last["truncated"], true, "{}", brief(&last));
    assert_eq!(cursor.lines[..], final_lines(&sim, id)[..150]);
    let state = redis_state(&redis, &prefix, id);
    assert_eq!((state.next, state.committed), (150, 150));
    assert_eq!(redis.cmd(&["XLEN", &key(&prefix, id, "lines")]), "150");
    let epoch = cursor.epoch.clone().unwrap();
    assert_every_replica_serves(&both, id, &cursor.lines, &epoch).await;
    a.stop().await;
    b.stop().await;
}

/// 7. `/readyz` in cluster mode reports the store: ready with `store.ok` while Redis
/// answers; 503 `not_ready`, code `store_unavailable`, `Retry-After`, while it does not
/// (paused or killed); ready again once it is back, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn readyz_reports_the_store() {
    let mut redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let p = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "command_timeout_ms = 300")).await;
    let node = p.logs.node().unwrap().to_owned();
    let readyz = || async {
        let resp = p.http.get(format!("{}/readyz", p.base())).send().await.unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, resp.json::<Value>().await.unwrap())
    };
    let ready = |(status, retry_after, body): (u16, Option<String>, Value)| {
        assert_eq!((status, retry_after), (200, None), "{body}");
        assert_eq!(body, json!({"status": "ready", "store": {"ok": true, "node": node}, "archive": "off"}));
    };
    let unready = |(status, retry_after, body): &(u16, Option<String>, Value)| {
        *status == 503 && {
            assert!(retry_after.is_some(), "{body}");
            assert_eq!(body["status"], "not_ready", "{body}");
            assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
            assert_eq!((&body["store"]["ok"], &body["store"]["node"]), (&json!(false), &json!(node)), "{body}");
            true
        }
    };
    ready(readyz().await);
    for outage in [Outage::Paused, Outage::Killed] {
        match outage {
            Outage::Paused => redis.stop(),
            Outage::Killed => redis.kill(),
        }
        wait_until(Duration::from_secs(10), "/readyz 503", || async { unready(&readyz().await) }).await;
        match outage {
            Outage::Paused => redis.cont(),
            Outage::Killed => redis.restart(),
        }
        wait_until(Duration::from_secs(10), "/readyz 200", || async { readyz().await.0 == 200 }).await;
        ready(readyz().await);
    }
    p.stop().await;
}
