//! Cluster mode: an `EventSource` that loses its replica resumes on another one with
//! `Last-Event-ID` (and its epoch), and gets every line once, in the shared order.

use crate::common;

use std::time::Duration;

use common::cluster::{cluster_config, InProcess, RedisServer};
use powertail::sim::Simulator;
use serde_json::Value;

/// Reads SSE events of `resp` until `stop(event, data)` says so; returns them.
async fn events(mut resp: reqwest::Response, mut stop: impl FnMut(&str, &Value) -> bool) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await.expect("an event in time");
        let Some(chunk) = chunk.unwrap() else { return out };
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(|v| v.trim().to_owned());
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            let Some(name) = name else { continue };
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            let done = stop(&name, &data);
            out.push((name, data));
            if done {
                return out;
            }
        }
    }
}

fn lines_of(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(n, _)| n == "lines")
        .flat_map(|(_, d)| d["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_stream_resumes_on_another_replica_with_last_event_id() {
    let redis = RedisServer::start();
    let sim_cfg = common::steps(500).text(|k, _| format!("[INFO] step {k}")).over(4_000).sim(12);
    let sim = Simulator::spawn(sim_cfg).await.unwrap();
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "")).await;
    let id = common::run_job(&sim, 12);

    // On A until some lines came, then the connection drops (A is gone for this client).
    let resp = a.http.get(format!("{}/llm/logs/{id}/stream", a.base())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut seen = 0;
    let first = events(resp, |name, data| {
        if name == "lines" {
            seen += data["lines"].as_array().unwrap().len();
        }
        seen >= 50
    })
    .await;
    let (_, last) = first.iter().rev().find(|(n, _)| n == "lines").unwrap();
    let (resume_at, epoch) = (last["nextLine"].as_u64().unwrap(), last["epoch"].as_str().unwrap().to_owned());
    let mut lines = lines_of(&first);
    assert_eq!(lines.len() as u64, resume_at);

    // The EventSource reconnects through the load balancer to B, with its last id.
    let resp = b
        .http
        .get(format!("{}/llm/logs/{id}/stream?epoch={epoch}", b.base()))
        .header("Last-Event-ID", resume_at.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rest = events(resp, |name, _| name == "end").await;
    let (_, first_rest) = rest.iter().find(|(n, _)| n == "lines").unwrap();
    assert_eq!(first_rest["fromLine"].as_u64(), Some(resume_at), "resumed exactly at its id");
    assert!(rest.iter().filter(|(n, _)| n == "lines" || n == "end").all(|(_, d)| d["epoch"] == epoch.as_str()));
    lines.extend(lines_of(&rest));
    assert_eq!(lines, sim.with_core(|c, _| c.final_lines(id)), "every line once, in order");
}

/// The lease holder refreshes for readers on other replicas too: a client that only
/// long-polls another replica gets every line, and the lease never moves (without the
/// holder's help it would lapse, `lease_ms` without local reads, and move at each gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn the_holder_refreshes_for_readers_on_another_replica() {
    let redis = RedisServer::start();
    let sim_cfg = common::steps(300).text(|k, _| format!("[INFO] step {k}")).over(4_000).sim(12);
    let sim = Simulator::spawn(sim_cfg).await.unwrap();
    // A 2 s lease (the harness's is 600 ms): shorter than the 6 s run and sync, so it
    // would lapse without the holder's help, and long enough that a loaded machine's
    // late renewal is not taken for a lapse.
    let a = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "lease_ms = 2000")).await;
    let b = InProcess::start_toml(&cluster_config(&sim.url(), &redis.url(), "lease_ms = 2000")).await;
    let id = common::run_job(&sim, 12);
    let node_a = a.get("/readyz").await.1["store"]["node"].as_str().unwrap().to_owned();
    // A reads first and takes the lease; from then on only B is read.
    let (status, _) = a.get(&format!("/llm/logs?instanceId={id}")).await;
    assert_eq!(status, 200);
    let lease_key = format!("{}:{{{id}}}:lease", common::cluster::test_key_prefix());
    assert!(redis.cmd(&["GET", &lease_key]).starts_with(&format!("{node_a}:")));
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..400 {
        let (status, body) = b.get(&format!("/llm/logs?instanceId={id}&fromLine={}&waitMs=3000", lines.len())).await;
        assert_eq!(status, 200, "{body}");
        lines.extend(body["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()));
        let owner = redis.cmd(&["GET", &lease_key]);
        assert!(owner.is_empty() || owner.starts_with(&format!("{node_a}:")), "the lease moved to {owner}");
        if body["complete"] == true {
            break;
        }
    }
    assert_eq!(lines, sim.with_core(|c, _| c.final_lines(id)), "every line once, in order");
}
