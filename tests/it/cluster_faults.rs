//! Cluster mode: the service-side faults of issue 18 (2–6), each against a real Redis
//! (tests/common/cluster.rs) and the simulator.
//!
//! Every test here needs `redis-server` (Debian package `redis-server`); they are
//! ignored without `--include-ignored`, which CI passes.

use std::sync::Arc;
use std::time::Duration;

use crate::common::cluster::{
    brief, cluster_config, get_json, test_key_prefix, wait_for, wait_until, Cursor, InProcess, RedisServer, Replica,
    Reply,
};
use crate::common::fast_sim;
use powertail::sim::{Fault, FaultKind, JobScript, SimConfig, SimHandle, SimJob, Simulator};
use serde_json::Value;

/// How long a follow to `complete` may take.
const DEADLINE: Duration = Duration::from_secs(90);

/// The fast simulator with job 12 logging `n` lines over `ms`.
fn sim_config(n: usize, ms: i64) -> SimConfig {
    let text: String = (0..n).map(|k| format!("[INFO] step {k} of {n}\n")).collect();
    let script = JobScript::from_text(&text, ms, 5, "ok");
    SimConfig {
        jobs: vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }],
        ..fast_sim()
    }
}

/// Runs job 12 after `delay_ms`; its instance id.
fn run(sim: &SimHandle, delay_ms: i64) -> i64 {
    sim.with_core(|c, now| c.run_job(12, None, delay_ms, now)).expect("job 12 exists")
}

/// `<prefix>:{<id>}:<what>`
fn key(prefix: &str, id: i64, what: &str) -> String {
    format!("{prefix}:{{{id}}}:{what}")
}

/// `PTTL key` in ms (-2: no such key, -1: no expiry).
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    match redis.try_cmd(&["PTTL", key]).unwrap() {
        Reply::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
}

/// (`next`, `committed`) of `id`'s state, `None` before it exists.
fn marks(redis: &RedisServer, prefix: &str, id: i64) -> Option<(u64, u64)> {
    let reply = redis.try_cmd(&["HMGET", &key(prefix, id, "state"), "next", "committed"]).ok()?;
    let Reply::Array(Some(items)) = reply else { return None };
    let n: Vec<u64> = items.iter().filter_map(|r| r.text().parse().ok()).collect();
    (n.len() == 2).then(|| (n[0], n[1]))
}

/// The value of counter `name` (no labels) in a `/metrics` text (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Asserts that `got` holds every line of `want` exactly once (lines logged in the same
/// millisecond may come in another order than PowerJob's file shows them now).
#[track_caller]
fn assert_same_lines(got: &[String], want: &[String]) {
    let (mut g, mut w) = (got.to_vec(), want.to_vec());
    g.sort();
    w.sort();
    assert_eq!(g.len(), w.len(), "lines served");
    assert!(g == w, "another set of lines than PowerJob's");
}

/// `GET /llm/logs/{id}/raw` of `base`: the text.
async fn raw(base: &str, id: i64) -> String {
    let resp = reqwest::get(format!("{base}/llm/logs/{id}/raw")).await.unwrap();
    assert_eq!(resp.status(), 200, "{base}");
    resp.text().await.unwrap()
}

/// Append script calls of many lines in Redis's slow log (every command, with
/// `slowlog-log-slower-than 0`): their number, and their median and longest time in µs.
fn script_calls(redis: &RedisServer) -> (usize, i64, i64) {
    let Reply::Array(Some(entries)) = redis.try_cmd(&["SLOWLOG", "GET", "100000"]).unwrap() else {
        panic!("SLOWLOG GET")
    };
    let mut durations = Vec::new();
    for entry in entries {
        let Reply::Array(Some(fields)) = entry else { continue };
        // (The slow log keeps 32 arguments of a command, and says how many more.)
        let is_script = matches!(&fields[3], Reply::Array(Some(args)) if args[0].text().starts_with("EVAL")
            && args.len() == 32);
        if let (true, Reply::Int(us)) = (is_script, &fields[2]) {
            durations.push(*us);
        }
    }
    durations.sort_unstable();
    (durations.len(), durations.get(durations.len() / 2).copied().unwrap_or(0), durations.last().copied().unwrap_or(0))
}

/// `GET /llm/logs` of `base` from line `from`.
async fn logs(base: &str, id: i64, from: u64) -> (u16, Value) {
    get_json(&reqwest::Client::new(), &format!("{base}/llm/logs?instanceId={id}&fromLine={from}")).await
}

/// Fault 2. On the lease holder, a cursor past the lines it shows (served by another
/// replica from a commit this one has not shown yet) forces no refresh: the holder
/// writes those lines itself. 20 such polls within one refresh interval read
/// PowerJob's status at most twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_cursor_ahead_of_the_holder_forces_no_powerjob_read() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(sim_config(200, 60_000)).await.unwrap();
    let extra = "lease_ms = 10000\n[logs]\nrefresh_interval_ms = 4000";
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let id = run(&sim, 0);
    let (_, body) = wait_for(Duration::from_secs(20), "a first line", || async {
        let (status, body) = logs(a.base(), id, 0).await;
        (status == 200 && body["totalLines"].as_u64() > Some(0)).then_some((status, body))
    })
    .await;
    let ahead = body["totalLines"].as_u64().unwrap() + 5;
    let before = sim.requests("/openApi/fetchInstanceInfo");
    for _ in 0..20 {
        let (status, body) = logs(a.base(), id, ahead).await;
        assert_eq!((status, &body["complete"]), (200, &Value::Bool(false)), "{}", brief(&body));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reads = sim.requests("/openApi/fetchInstanceInfo") - before;
    assert!(reads <= 2, "{reads} status reads for 20 polls within one refresh interval");
    a.stop().await;
}

/// Fault 3. A replica without the lease, whose view shows the instance's status (no
/// line yet), counts as holding it: while its refresh hangs (Redis paused) it answers
/// from that view after `read_wait_ms`, `stale`, as the holder does; never 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_replica_without_the_lease_that_knows_the_status_never_answers_504() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(sim_config(10, 1_000)).await.unwrap();
    // First read wait 300 + 100 ms, far less than a tick that hangs 5 s.
    let extra = "command_timeout_ms = 5000\n[powerjob]\nrequest_timeout_ms = 300\n[logs]\nread_wait_ms = 100";
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    // Waits a minute to be dispatched: its status is known, it has no line.
    let id = run(&sim, 60_000);
    let (status, body) = logs(a.base(), id, 0).await;
    assert_eq!(status, 200, "{}", brief(&body));
    let seen = wait_for(Duration::from_secs(10), "B to show the status", || async {
        let (status, body) = logs(b.base(), id, 0).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(seen["totalLines"], 0, "{}", brief(&seen));
    redis.stop();
    // (Past the refresh interval: the next read starts a refresh, which hangs.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = logs(b.base(), id, 0).await;
    let (status_a, body_a) = logs(a.base(), id, 0).await;
    redis.cont();
    assert_eq!((status, &body["status"], &body["stale"]), (200, &seen["status"], &Value::Bool(true)), "{body}");
    assert_eq!((status_a, &body_a["stale"]), (200, &Value::Bool(true)), "the holder: {body_a}");
    a.stop().await;
    b.stop().await;
}

/// Fault 5. The keys of an id PowerJob does not know expire soon (10 min at most), not
/// after `retain_complete_ms`; a log that grows has no expiry once lines are appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn keys_of_an_unknown_id_expire_soon() {
    let redis = RedisServer::start();
    let prefix = test_key_prefix();
    let sim = Simulator::spawn(sim_config(100, 5_000)).await.unwrap();
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let unknown = 4_242_424_242;
    let (status, body) = logs(a.base(), unknown, 0).await;
    assert_eq!(status, 404, "{}", brief(&body));
    let ttl = pttl(&redis, &key(&prefix, unknown, "state"));
    assert!(0 < ttl && ttl <= 600_000, "PTTL of an unknown id's state: {ttl}");

    let id = run(&sim, 0);
    let mut cursor = Cursor::new(id);
    cursor.follow_until(&[a.base()], DEADLINE, |b| b["totalLines"].as_u64() >= Some(5)).await;
    let (state, lines) = (key(&prefix, id, "state"), key(&prefix, id, "lines"));
    assert_eq!((pttl(&redis, &state), pttl(&redis, &lines)), (-1, -1), "a growing log does not expire");
    a.stop().await;
}

/// Fault 6. While the holder cannot read PowerJob's log, every replica says `stale`,
/// not only the holder; once it reads again, none does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn every_replica_says_stale_while_the_holder_cannot_read_powerjob() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(sim_config(200, 20_000)).await.unwrap();
    // (A lease that outlasts the holder's back-off: it stays the holder throughout, and
    // the other replica never reads PowerJob itself.)
    let extra = "lease_ms = 60000";
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), extra)).await;
    let id = run(&sim, 0);
    // A reads first: it holds the lease.
    let mut cursor = Cursor::new(id);
    cursor.follow_until(&[a.base()], DEADLINE, |b| b["totalLines"].as_u64() >= Some(5)).await;
    let (_, body) = logs(b.base(), id, 0).await;
    assert_eq!(body["stale"], false, "{}", brief(&body));
    sim.inject(Fault::always(Some("/instance/log"), FaultKind::Http500));
    for (name, base) in [("the holder", a.base()), ("the other replica", b.base())] {
        wait_until(Duration::from_secs(10), &format!("{name} to say stale"), || async {
            logs(base, id, 0).await.1["stale"] == true
        })
        .await;
    }
    sim.clear_faults();
    for (name, base) in [("the holder", a.base()), ("the other replica", b.base())] {
        wait_until(Duration::from_secs(40), &format!("{name} to say fresh again"), || async {
            logs(base, id, 0).await.1["stale"] == false
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
}

/// A finished log of this many lines is appended to Redis at once (fault 4).
const BIG: usize = 100_000;

/// Starts Redis, the simulator with a finished `BIG`-line log and two replica
/// processes; returns them with the instance id (nothing read yet).
async fn big_finished_log() -> (RedisServer, SimHandle, Replica, Replica, i64) {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(sim_config(BIG, 500)).await.unwrap();
    // (The simulator takes seconds to serve a page of so long a log.)
    let extra = "lease_ms = 3000\n[powerjob]\nrequest_timeout_ms = 30000\n[logs]\nrecheck_complete_ms = 500";
    let config = |_: ()| cluster_config(&sim.url(), &redis.url(), extra);
    let a = Replica::spawn(&config(())).await;
    let b = Replica::spawn(&config(())).await;
    let id = run(&sim, 0);
    wait_until(Duration::from_secs(30), "the run to finish", || async {
        sim.with_core(|c, _| c.final_lines(id).len()) == BIG
            && sim.with_core(|c, now| c.instance_status(id, now) == Some(5))
    })
    .await;
    (redis, sim, a, b, id)
}

/// Follows `id` on `base` to `complete`, checking that no answer shows part of a
/// chunked append (between 0 and `BIG` lines).
async fn follow_whole(base: &str, id: i64) -> Vec<String> {
    let mut cursor = Cursor::new(id);
    cursor
        .follow_until(&[base], DEADLINE, |b| {
            let total = b["totalLines"].as_u64().unwrap();
            assert!(total == 0 || total == BIG as u64, "a partial append is visible: {}", brief(b));
            b["complete"] == true
        })
        .await;
    cursor.lines
}

/// Fault 4. A big finished log goes to Redis in chunks (many appends, each short), and
/// a reader on another replica sees none of it until the last chunk, then all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_big_append_goes_in_chunks_and_readers_see_it_whole() {
    let (redis, sim, a, b, id) = big_finished_log().await;
    let prefix = test_key_prefix();
    redis.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    redis.cmd(&["CONFIG", "SET", "slowlog-max-len", "100000"]);
    // A reads first: it holds the lease and appends the whole log.
    let (status, body) = logs(a.base(), id, 0).await;
    assert!(status == 200 || status == 504, "{}", brief(&body));
    let lines = follow_whole(b.base(), id).await;
    assert_same_lines(&lines, &sim.with_core(|c, _| c.final_lines(id)));
    assert_eq!(raw(a.base(), id).await, raw(b.base(), id).await, "one sequence on both replicas");
    let (_, metrics) = a.get("/metrics").await;
    let appends = counter(metrics.as_str().unwrap(), "powertail_store_appends_total");
    assert!(appends >= (BIG / 2_000) as u64, "{appends} appends for {BIG} lines");
    let (calls, median, longest) = script_calls(&redis);
    eprintln!(
        "{appends} appends for {BIG} lines; {calls} long ones held Redis {median} µs (median), {longest} µs at most"
    );
    assert_eq!(marks(&redis, &prefix, id), Some((BIG as u64, BIG as u64)));
    assert_eq!(redis.cmd(&["XLEN", &key(&prefix, id, "lines")]), BIG.to_string());
}

/// Fault 4. The holder killed between two chunks of a big append: the next holder
/// continues exactly where it stopped (every line once, in order), and readers never
/// saw the partial append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_holder_killed_between_chunks_is_continued_exactly() {
    let (redis, sim, mut a, b, id) = big_finished_log().await;
    let prefix = test_key_prefix();
    let http = reqwest::Client::new();
    let url = format!("{}/llm/logs?instanceId={id}&fromLine=0", a.base());
    // (Not awaited: A may be killed before it answers.)
    let read = tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) });
    wait_until(Duration::from_secs(30), "an append between two chunks", || async {
        marks(&redis, &prefix, id).is_some_and(|(next, committed)| next > committed)
    })
    .await;
    a.kill9();
    let (next, committed) = marks(&redis, &prefix, id).unwrap();
    assert!(committed < next && next < BIG as u64, "killed between chunks: next {next}, committed {committed}");
    let _ = read.await;
    let lines = follow_whole(b.base(), id).await;
    assert_same_lines(&lines, &sim.with_core(|c, _| c.final_lines(id)));
    assert_eq!(marks(&redis, &prefix, id), Some((BIG as u64, BIG as u64)));
    assert_eq!(redis.cmd(&["XLEN", &key(&prefix, id, "lines")]), BIG.to_string());
}
