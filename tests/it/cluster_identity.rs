//! Cluster mode (issue 21, items 1 and 6): two PowerJob clusters on one Redis never mix
//! their logs, and the shared store's failures name their real cause.
//!
//! Every test here needs `redis-server` (Debian package `redis-server`); they are
//! ignored without `--include-ignored`, which CI passes.

use std::sync::Arc;
use std::time::Duration;

use crate::common::cluster::{
    brief, cluster_config, free_port, get_json, wait_for, wait_until, Cursor, InProcess, RedisServer, Replica,
};
use crate::common::fast_sim;
use powertail::sim::{InstanceIds, JobScript, SimConfig, SimHandle, SimJob, Simulator};
use serde_json::Value;

/// How long a follow to `complete` may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// The default `key_prefix`: both clusters keep it, as a new user would.
const DEFAULT_PREFIX: &str = "key_prefix = \"pt\"";

/// The fast simulator with job 12 logging `n` lines tagged `tag` over `ms`. Its ids are
/// the same on every start (two PowerJob clusters that create the same instance id: the
/// worst case; real snowflake ids rarely collide, the demo's used to on every start).
fn sim_config(tag: &str, n: usize, ms: i64) -> SimConfig {
    let text: String = (0..n).map(|k| format!("[INFO] {tag} step {k} of {n}\n")).collect();
    let script = JobScript::from_text(&text, ms, 5, "ok");
    SimConfig {
        jobs: vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }],
        instance_ids: InstanceIds::Sequential { first: 677_182_124_851_200_064 },
        ..fast_sim()
    }
}

/// Runs job 12 now; its instance id.
fn run(sim: &SimHandle) -> i64 {
    sim.with_core(|c, now| c.run_job(12, None, 0, now)).expect("job 12 exists")
}

/// Runs `f` a few milliseconds later: instances of two PowerJob clusters are told apart
/// by their creation time among others (to the millisecond), and two servers that
/// create an instance of the same id, app and job in the same millisecond are beyond
/// what powertail can tell apart (documented in docs/API.md).
async fn created_apart<T>(f: impl FnOnce() -> T) -> T {
    tokio::time::sleep(Duration::from_millis(5)).await;
    f()
}

/// `GET path` of `base`.
async fn get(base: &str, path: &str) -> (u16, Value) {
    get_json(&reqwest::Client::new(), &format!("{base}{path}")).await
}

/// Asserts that `base` refuses instance `id` with 409 `instance_conflict` (through the
/// cursor read and `/raw`), saying what to change.
async fn assert_conflict(base: &str, id: i64) {
    let (status, body) = get(base, &format!("/llm/logs?instanceId={id}&fromLine=0")).await;
    assert_eq!((status, &body["error"]["code"]), (409, &Value::from("instance_conflict")), "{}", brief(&body));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("belongs to another PowerJob") && message.contains("key_prefix"), "{message}");
    let (status, body) = get(base, &format!("/llm/logs/{id}/raw")).await;
    assert_eq!(status, 409, "{body}");
}

/// Two PowerJob clusters (two simulators whose ids restart at the same value) behind
/// replicas on one Redis with the default key prefix: each instance is served by the
/// replicas of the cluster that wrote it first; the other cluster's replica answers
/// 409 `instance_conflict`, never the first one's lines (in either order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn two_powerjob_clusters_with_the_same_instance_ids_never_mix() {
    let redis = RedisServer::start();
    let sim_a = Simulator::spawn(sim_config("cluster-a", 40, 1_500)).await.unwrap();
    let sim_b = Simulator::spawn(sim_config("cluster-b", 40, 1_500)).await.unwrap();
    let a = InProcess::start_toml(&cluster_config(&sim_a.url(), &redis.url(), DEFAULT_PREFIX)).await;
    let b = InProcess::start_toml(&cluster_config(&sim_b.url(), &redis.url(), DEFAULT_PREFIX)).await;

    // A's replica reads the shared id first. (Two PowerJob servers never create an
    // instance in the same millisecond in this test: see `created_apart`.)
    let id = run(&sim_a);
    let id_b = created_apart(|| run(&sim_b)).await;
    assert_eq!(id, id_b, "both simulators start their ids at one value");
    let mut cursor = Cursor::new(id);
    cursor.follow(&[a.base()], DEADLINE).await;
    assert_eq!(cursor.lines, sim_a.with_core(|c, _| c.final_lines(id)));
    assert_conflict(b.base(), id).await;
    // Still refused later, and A's replica still serves A's lines.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_conflict(b.base(), id).await;
    let mut again = Cursor::new(id);
    again.follow(&[a.base()], DEADLINE).await;
    assert_eq!(again.lines, cursor.lines);

    // The next id: B's replica reads it first.
    let id2 = run(&sim_a);
    let id2_b = created_apart(|| run(&sim_b)).await;
    assert_eq!(id2, id2_b);
    let mut cursor = Cursor::new(id2);
    cursor.follow(&[b.base()], DEADLINE).await;
    assert_eq!(cursor.lines, sim_b.with_core(|c, _| c.final_lines(id2)));
    assert!(cursor.lines.iter().all(|l| l.contains("cluster-b")));
    assert_conflict(a.base(), id2).await;
    a.stop().await;
    b.stop().await;
}

/// The key prefix belongs to the PowerJob app that used it first: a replica of another
/// app (another name, or the same name with another `appId`: another PowerJob) is not
/// ready (503 with the reason and what to change), refuses reads alike, and logs why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_replica_of_another_powerjob_refuses_the_key_prefix() {
    let redis = RedisServer::start();
    let sim_a = Simulator::spawn(sim_config("cluster-a", 10, 500)).await.unwrap();
    let a = Replica::spawn(&cluster_config(&sim_a.url(), &redis.url(), DEFAULT_PREFIX)).await;
    // (Its appId is known once it authenticated: `/readyz` does.)
    wait_until(Duration::from_secs(10), "A ready, the prefix recorded", || async {
        a.get("/readyz").await.0 == 200 && redis.cmd(&["HGET", "pt:powerjob", "appId"]) == "1"
    })
    .await;
    assert_eq!(redis.cmd(&["HGETALL", "pt:powerjob"]), "appName\nllm-test-platform\nappId\n1");

    // Another app name.
    let sim_b =
        Simulator::spawn(SimConfig { app_name: "other-app".into(), ..sim_config("cluster-b", 10, 500) }).await.unwrap();
    let extra = format!("{DEFAULT_PREFIX}\n[powerjob]\napp_name = \"other-app\"");
    let b = Replica::spawn(&cluster_config(&sim_b.url(), &redis.url(), &extra)).await;
    let want = "the shared store (Redis) refuses this replica: key prefix \"pt\" belongs to PowerJob app \
                \"llm-test-platform\", and this replica follows app \"other-app\". Replicas of two PowerJob clusters \
                must not share one: set another [cluster] key_prefix for this one (or give it its own Redis)";
    assert_refused(&b, run(&sim_b), want).await;
    assert!(b.stderr_text().contains("this replica refuses the shared store"), "{}", b.stderr_text());

    // The same name, another appId.
    let sim_c = Simulator::spawn(SimConfig { app_id: 7, ..sim_config("cluster-c", 10, 500) }).await.unwrap();
    let c = Replica::spawn(&cluster_config(&sim_c.url(), &redis.url(), DEFAULT_PREFIX)).await;
    let want = "the shared store (Redis) refuses this replica: key prefix \"pt\" belongs to the PowerJob where \
                app \"llm-test-platform\" has appId 1; this replica's PowerJob gives it appId 7, so it is another \
                PowerJob cluster. Replicas of two PowerJob clusters must not share one: set another [cluster] \
                key_prefix for this one (or give it its own Redis)";
    assert_refused(&c, run(&sim_c), want).await;
    assert_eq!(a.get("/readyz").await.0, 200);
}

/// Waits until `replica`'s `/readyz` is 503 with `message` (the store's, exactly), then
/// checks that a read of `id` is refused with it too.
async fn assert_refused(replica: &Replica, id: i64, message: &str) {
    let body = wait_for(Duration::from_secs(10), "/readyz 503 with the reason", || async {
        let (status, body) = replica.get("/readyz").await;
        (status == 503 && body["store"]["error"] == message).then_some(body)
    })
    .await;
    assert_eq!((&body["error"]["code"], &body["error"]["message"]), (&"store_unavailable".into(), &message.into()));
    let (status, body) = replica.get(&format!("/llm/logs?instanceId={id}&fromLine=0")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with(message), "{body}");
}

/// Redis errors name the real cause: a database index Redis does not have, a Redis
/// that is not running (connection refused at host:port); `/readyz` says it in the
/// store's words, not a read's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn redis_errors_name_the_real_cause() {
    let redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let url = format!("redis://127.0.0.1:{}/99", redis.port());
    let p = InProcess::start_toml(&cluster_config(&sim.url(), &url, "")).await;
    let want = format!(
        "the shared store (Redis) refuses this replica: Redis at 127.0.0.1:{} has no database 99: the index at the \
         end of cluster.redis_url is out of range (Redis's `databases` setting, 16 by default); use one it has, \
         such as /0",
        redis.port()
    );
    let (status, body) = p.get("/readyz").await;
    assert_eq!((status, &body["store"]["error"], &body["error"]["message"]), (503, &want.clone().into(), &want.into()));
    p.stop().await;

    let port = free_port();
    let p = InProcess::start_toml(&cluster_config(&sim.url(), &format!("redis://127.0.0.1:{port}/0"), "")).await;
    let want = format!(
        "the shared store (Redis) is unreachable: connection refused at 127.0.0.1:{port} (is Redis running and \
         listening there?)"
    );
    let (status, body) = p.get("/readyz").await;
    assert_eq!((status, &body["store"]["error"], &body["error"]["message"]), (503, &want.clone().into(), &want.into()));
    p.stop().await;
}
