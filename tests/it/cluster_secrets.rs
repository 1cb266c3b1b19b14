//! Cluster mode: the Redis password (in `cluster.redis_url`) never reaches logs, errors,
//! metrics or `/readyz`, when Redis refuses it or when it is right.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::{cluster_config, wait_until, RedisServer, Replica};
use common::fast_sim;
use powertail::sim::{JobScript, SimJob, Simulator};

async fn text(r: &Replica, path: &str) -> String {
    reqwest::get(format!("{}{path}", r.base())).await.unwrap().text().await.unwrap()
}

const RIGHT: &str = "Right-Pw-4711";
const WRONG: &str = "Wrong-Pw-0815";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn the_redis_password_never_leaks() {
    let redis = RedisServer::start();
    // (Set after start: the harness's own readiness PING has no password.)
    redis.cmd(&["CONFIG", "SET", "requirepass", RIGHT]);
    let mut sim_cfg = fast_sim();
    sim_cfg.jobs = vec![SimJob {
        id: 12,
        name: "j".into(),
        job_params: String::new(),
        script: Some(Arc::new(JobScript::from_text("[INFO] one\n[INFO] two\n", 500, 5, "ok"))),
    }];
    let sim = Simulator::spawn(sim_cfg).await.unwrap();
    let url = |pw: &str| format!("redis://:{pw}@127.0.0.1:{}/0", redis.port());
    let config = |pw: &str| format!("{}\n[server]\nlog_level = \"debug\"\n", cluster_config(&sim.url(), &url(pw), ""));
    let id = common::run_job(&sim, 12);

    // A wrong password: Redis refuses every command; the answers say so without it.
    let wrong = Replica::spawn(&config(WRONG)).await;
    let (status, body) = wrong.get(&format!("/llm/logs?instanceId={id}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("store_unavailable")), "{body}");
    let (status, ready) = wrong.get("/readyz").await;
    assert_eq!((status, ready["store"]["ok"].as_bool()), (503, Some(false)), "{ready}");
    let metrics = text(&wrong, "/metrics").await;
    assert!(metrics.contains("powertail_store_errors_total"), "{metrics}");
    for text in [body.to_string(), ready.to_string(), metrics, wrong.stderr_text()] {
        assert!(!text.contains(WRONG) && !text.contains(RIGHT), "the password leaked: {text}");
    }

    // The right one: served.
    let right = Replica::spawn(&config(RIGHT)).await;
    wait_until(Duration::from_secs(20), "lines through Redis", || async {
        let (status, body) = right.get(&format!("/llm/logs?instanceId={id}")).await;
        status == 200 && body["lines"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    let (status, ready) = right.get("/readyz").await;
    assert_eq!((status, ready["store"]["ok"].as_bool()), (200, Some(true)), "{ready}");
    let text = right.stderr_text() + &text(&right, "/metrics").await;
    assert!(!text.contains(RIGHT), "the password leaked: {text}");
}
