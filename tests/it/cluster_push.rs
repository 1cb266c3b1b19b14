//! Pushes in cluster mode (issue 19, part 3), end to end: two replicas on one real Redis
//! that each test starts itself, the simulator behind them, pushes spread over both (a
//! retry on the other replica is a duplicate), the lease holder killed mid-run. Every
//! pushed line is served once in the one shared sequence, both replicas serve the very
//! same lines, and pushes read nothing from PowerJob.
//!
//! Every test here needs `redis-server`; they are ignored without `--include-ignored`,
//! which CI passes.

use crate::common;

use std::time::Duration;

use common::cluster::{
    brief, cluster_config, get_json, test_key_prefix, wait_for, wait_until, Cursor, InProcess, RedisServer, Replica,
};
use common::fast_sim;
use powertail::logs::merge::{render, Level};
use powertail::sim::{Level as SimLevel, Record, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);
const WORKER: &str = "10.0.0.21:27777";
/// The simulator's time zone (Asia/Shanghai), `push.utc_offset_minutes` by default.
const ZONE: i32 = 480;
/// Replicas' extra configuration: a body without source counts as ended 1 s after it
/// came (15 s by default).
const PUSH: &str = "[push]\nquiet_ms = 1000";

/// A line as PowerJob (and powertail, for a pushed line) shows it.
fn shown(ts: i64, text: &str) -> String {
    render(ts, WORKER, Level::Info, text, ZONE).remove(0)
}

/// An instance of job 12 running for a minute already; (its id, now).
fn running(sim: &SimHandle) -> (i64, i64) {
    sim.with_core(|c, now| {
        let id = c.create_instance(12, None, now - 60_000);
        c.dispatch(id, now - 60_000);
        c.set_running(id, now - 60_000);
        (id, now)
    })
}

/// PowerJob receives records `(ts, text)` of instance `id` now.
fn deliver(sim: &SimHandle, id: i64, records: &[(i64, String)]) {
    sim.with_core(|c, now| {
        let records = records
            .iter()
            .map(|(ts, text)| Record {
                log_time: *ts,
                level: SimLevel::Info,
                content: text.clone(),
                worker: WORKER.into(),
            })
            .collect();
        c.deliver(id, records, now);
        c.tick(now);
    });
}

/// The instance succeeded now.
fn finish(sim: &SimHandle, id: i64) {
    sim.with_core(|c, now| c.finish(id, 5, "ok", now));
}

fn batch(source: &str, seq: u64, lines: &[(i64, String)], last: bool) -> Value {
    let lines: Vec<Value> = lines.iter().map(|(ts, text)| json!({"ts": ts, "level": "INFO", "text": text})).collect();
    let timestamp = lines.first().map_or(0, |l| l["ts"].as_i64().unwrap());
    json!({"source": source, "seq": seq, "worker": WORKER, "timestamp": timestamp, "final": last, "lines": lines})
}

/// `POST {base}/llm/logs/{id}/append`: (status, JSON); `None` when the replica did not
/// answer (killed).
async fn try_push(http: &reqwest::Client, base: &str, id: i64, body: &Value) -> Option<(u16, Value)> {
    let resp = http
        .post(format!("{base}/llm/logs/{id}/append"))
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.ok()?))
}

async fn push(http: &reqwest::Client, base: &str, id: i64, body: &Value) -> Value {
    let (status, answer) = try_push(http, base, id, body).await.unwrap_or_else(|| panic!("{base} did not answer"));
    assert_eq!(status, 200, "{base}: {answer}");
    answer
}

fn answer(id: i64, accepted: usize, duplicate: bool, next_seq: Option<u64>) -> Value {
    json!({"instanceId": id.to_string(), "accepted": accepted, "duplicate": duplicate, "nextSeq": next_seq})
}

/// Every line `base` serves of `id` now, and its answer.
async fn served(http: &reqwest::Client, base: &str, id: i64) -> (Vec<String>, Value) {
    let (status, body) = get_json(http, &format!("{base}/llm/logs?instanceId={id}&limit=10000")).await;
    assert_eq!(status, 200, "{base}: {}", brief(&body));
    (serde_json::from_value(body["lines"].clone()).unwrap(), body)
}

/// Waits until `base` serves `n` lines of `id`; returns them.
async fn served_when(http: &reqwest::Client, base: &str, id: i64, n: usize) -> Vec<String> {
    wait_for(DEADLINE, &format!("{n} lines on {base}"), || async {
        let (lines, _) = served(http, base, id).await;
        assert!(lines.len() <= n, "{base} serves more than {n} lines: {lines:#?}");
        (lines.len() == n).then_some(lines)
    })
    .await
}

/// PowerJob's requests so far: (log pages, instance infos).
fn powerjob_reads(sim: &SimHandle) -> (u64, u64) {
    (sim.requests("/instance/log"), sim.requests("/openApi/fetchInstanceInfo"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn pushes_to_either_replica_are_served_once_in_one_sequence_and_read_nothing_from_powerjob() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), PUSH)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), PUSH)).await;
    let http = reqwest::Client::new();
    let (id, now) = running(&sim);
    let t = now - 1_000;
    let before = powerjob_reads(&sim);

    // Source w/1: 20 batches of 3 lines, each to one replica and retried on the other.
    let mut pushed = Vec::new();
    for seq in 0..20u64 {
        let lines: Vec<(i64, String)> = (0..3).map(|k| (t + seq as i64 * 10 + k, format!("w1 {seq}.{k}"))).collect();
        let body = batch("w/1", seq, &lines, seq == 19);
        let (first, second) = if seq % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(push(&http, first.base(), id, &body).await, answer(id, 3, false, Some(seq + 1)));
        assert_eq!(push(&http, second.base(), id, &body).await, answer(id, 0, true, Some(seq + 1)), "a retry");
        pushed.extend(lines);
    }
    // Source w/2: its second batch first (it waits), its first on the other replica.
    let w2 = |k: i64| (t + 500 + k, format!("w2 {k}"));
    let ahead = push(&http, b.base(), id, &batch("w/2", 1, &[w2(1)], true)).await;
    assert_eq!(ahead, answer(id, 1, false, Some(0)));
    assert_eq!(push(&http, a.base(), id, &batch("w/2", 0, &[w2(0)], false)).await, answer(id, 1, false, Some(2)));
    pushed.extend([w2(0), w2(1)]);
    // A batch after its source's end: refused by either replica.
    let (status, body) = try_push(&http, a.base(), id, &batch("w/2", 2, &[w2(2)], false)).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    // The seed's body (no source): never a duplicate.
    let seed = json!({"instanceId": id, "timestamp": t + 900, "lines": ["seed line"]});
    assert_eq!(push(&http, b.base(), id, &seed).await, answer(id, 1, false, None));
    let seed_line = render(t + 900, "-", Level::Info, "seed line", ZONE).remove(0);

    // Every pushed line, once, in the order the batches apply; on both replicas.
    let mut want: Vec<String> = pushed.iter().map(|(ts, text)| shown(*ts, text)).collect();
    want.push(seed_line);
    // Drained into the shared log with nobody reading: without a read of PowerJob's log,
    // and one existence check per replica (the first push each took).
    let state = format!("{}:{{{id}}}:state", test_key_prefix());
    wait_until(DEADLINE, "the pushes drained", || async {
        redis.cmd(&["HGET", &state, "next"]) == want.len().to_string()
    })
    .await;
    let after = powerjob_reads(&sim);
    assert_eq!(after.0, before.0, "log pages read for pushes");
    assert!(after.1 <= before.1 + 2, "instance infos read for pushes: {before:?} → {after:?}");
    let on_a = served_when(&http, a.base(), id, want.len()).await;
    let on_b = served_when(&http, b.base(), id, want.len()).await;
    assert_eq!(on_a, want);
    assert_eq!(on_b, want);
    let (_, body) = served(&http, b.base(), id).await;
    assert_eq!(body["push"]["sources"], 3, "{}", brief(&body));
    assert_eq!(body["push"]["lines"], want.len(), "{}", brief(&body));

    // PowerJob gets copies of some pushed lines and a line only it has; the run ends.
    let mut records: Vec<(i64, String)> = pushed.iter().step_by(4).cloned().collect();
    records.push((t + 990, "OmsLogger only".to_owned()));
    deliver(&sim, id, &records);
    finish(&sim, id);
    want.push(shown(t + 990, "OmsLogger only"));
    let mut cursor = Cursor::new(id);
    let last = cursor.follow(&[a.base(), b.base()], DEADLINE).await;
    assert_eq!(cursor.lines, want, "every line once, in one sequence: {}", brief(&last));
    // The log is complete: a push is dropped (accepted 0), a retry is still a duplicate.
    assert_eq!(push(&http, a.base(), id, &seed).await, answer(id, 0, false, None));
    let lines: Vec<(i64, String)> = (0..3).map(|k| (t + 30 + k, format!("w1 3.{k}"))).collect();
    assert_eq!(push(&http, b.base(), id, &batch("w/1", 3, &lines, false)).await, answer(id, 0, true, Some(20)));
    for base in [a.base(), b.base()] {
        let (lines, body) = served(&http, base, id).await;
        assert_eq!(lines, want, "{base}");
        assert_eq!(body["complete"], true, "{base}: {}", brief(&body));
    }
}

/// The lease holder is killed (SIGKILL) while pushes go on, some of them to it; its
/// pushes are retried on the other replica, which takes over the queue from the entry the
/// store says was consumed. Then it comes back and takes pushes again. Every pushed line
/// is served once, in order, by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_holder_killed_mid_run_is_continued_exactly() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let mut a = Replica::spawn(&cluster_config(&sim.url(), &redis.url(), PUSH)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), PUSH)).await;
    let node_a = a.get("/readyz").await.1["store"]["node"].as_str().unwrap().to_owned();
    let prefix = test_key_prefix();
    let http = reqwest::Client::new();
    let (id, now) = running(&sim);
    let lease = format!("{prefix}:{{{id}}}:lease");
    let t = now - 5_000;
    let (mut alive, mut killed_holder, mut retried) = (true, false, 0);
    let mut pushed = Vec::new();
    for seq in 0..180u64 {
        if seq == 70 {
            // A took the lease with its first push and keeps it while it drains.
            let owner = redis.cmd(&["GET", &lease]);
            assert!(owner.starts_with(&format!("{node_a}:")), "A ({node_a}) holds the lease, not {owner}");
            a.kill9();
            (alive, killed_holder) = (false, true);
        }
        if seq == 130 {
            a.respawn().await;
            alive = true;
        }
        let lines: Vec<(i64, String)> = (0..5).map(|k| (t + seq as i64 * 10 + k, format!("line {seq}.{k}"))).collect();
        let body = batch("w/1", seq, &lines, seq == 179);
        let target = if alive && seq % 3 != 2 { a.base() } else { b.base() };
        match try_push(&http, target, id, &body).await {
            Some((200, answer)) => assert_eq!(answer["nextSeq"], seq + 1, "{answer}"),
            other => {
                // (A died under the request: the batch may be queued already.)
                assert!(other.is_none() && target == a.base(), "{other:?}");
                let answer = push(&http, b.base(), id, &body).await;
                assert_eq!(answer["nextSeq"], seq + 1, "{answer}");
                retried += 1;
            }
        }
        pushed.extend(lines);
    }
    assert!(killed_holder);
    let mut want: Vec<String> = pushed.iter().map(|(ts, text)| shown(*ts, text)).collect();
    let on_b = served_when(&http, b.base(), id, want.len()).await;
    assert_eq!(on_b, want, "every pushed line once, in order ({retried} retried)");

    // PowerJob has a copy of every fifth line and one of its own; the run ends.
    let mut records: Vec<(i64, String)> = pushed.iter().step_by(5).cloned().collect();
    records.push((t + 1_900, "OmsLogger only".to_owned()));
    deliver(&sim, id, &records);
    finish(&sim, id);
    want.push(shown(t + 1_900, "OmsLogger only"));
    let mut cursor = Cursor::new(id);
    cursor.follow(&[a.base(), b.base()], DEADLINE).await;
    assert_eq!(cursor.lines, want);
    for base in [a.base(), b.base()] {
        let (lines, body) = served(&http, base, id).await;
        assert_eq!(lines, want, "{base}");
        assert_eq!((body["complete"].clone(), body["push"]["lines"].clone()), (json!(true), json!(900)), "{base}");
    }
}

/// A batch that arrives ahead of a missing one waits `push.gap_wait_ms`, then the
/// holder gives the gap up on its own timer (nobody reads meanwhile); the missing batch,
/// arriving late at the other replica, is a duplicate there too, and PowerJob's copy
/// fills the gap in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_gap_is_given_up_by_the_holder_and_the_late_batch_is_a_duplicate_on_any_replica() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let extra = format!("{PUSH}\ngap_wait_ms = 300");
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), &extra)).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), &extra)).await;
    let http = reqwest::Client::new();
    let (id, now) = running(&sim);
    let line = |k: i64| (now - 1_000 + k * 10, format!("line {k}"));
    assert_eq!(push(&http, a.base(), id, &batch("w/1", 0, &[line(0)], false)).await, answer(id, 1, false, Some(1)));
    assert_eq!(push(&http, b.base(), id, &batch("w/1", 2, &[line(2)], false)).await, answer(id, 1, false, Some(1)));
    let state = format!("{}:{{{id}}}:state", test_key_prefix());
    wait_until(DEADLINE, "the gap given up", || async { redis.cmd(&["HGET", &state, "next"]) == "2" }).await;
    let late = push(&http, b.base(), id, &batch("w/1", 1, &[line(1)], false)).await;
    assert_eq!(late, answer(id, 0, true, Some(3)), "given up by the holder");
    assert_eq!(push(&http, b.base(), id, &batch("w/1", 3, &[line(3)], true)).await, answer(id, 1, false, Some(4)));
    wait_until(DEADLINE, "batch 3 drained", || async { redis.cmd(&["HGET", &state, "next"]) == "3" }).await;
    deliver(&sim, id, &[line(0), line(1), line(2), line(3)]);
    finish(&sim, id);
    let want: Vec<String> = [0, 2, 3, 1].into_iter().map(line).map(|(ts, text)| shown(ts, &text)).collect();
    let mut cursor = Cursor::new(id);
    cursor.follow(&[b.base(), a.base()], DEADLINE).await;
    assert_eq!(cursor.lines, want);
    for base in [a.base(), b.base()] {
        assert_eq!(served(&http, base, id).await.0, want, "{base}");
    }
}

/// A replica of another PowerJob app never queues into the key prefix of this one: its
/// push is refused with the reason its reads get (503 `store_unavailable`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_replica_of_another_powerjob_queues_nothing() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let _a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), PUSH)).await;
    let identity = format!("{}:powerjob", test_key_prefix());
    wait_until(DEADLINE, "the prefix recorded", || async { !redis.cmd(&["HGET", &identity, "appName"]).is_empty() })
        .await;
    let other = Simulator::spawn(SimConfig { app_name: "other-app".into(), ..fast_sim() }).await.unwrap();
    let extra = format!("{PUSH}\n[powerjob]\napp_name = \"other-app\"");
    let b = InProcess::start_toml(&cluster_config(&other.url(), &redis.url(), &extra)).await;
    let (id, now) = running(&other);
    let http = reqwest::Client::new();
    let (status, body) =
        try_push(&http, b.base(), id, &batch("w/1", 0, &[(now, "x".to_owned())], false)).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("store_unavailable")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("belongs to PowerJob app \"llm-test-platform\""), "{message}");
    assert!(redis.keys(&format!("{}:{{{id}}}:*", test_key_prefix())).is_empty(), "nothing queued");
}
