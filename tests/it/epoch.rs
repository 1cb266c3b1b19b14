//! Epochs (issue 12, item 6): every log answer names the served sequence, and a client
//! whose epoch names a sequence that was rebuilt from scratch (a restarted process, an
//! idle growing log dropped) gets 410 `epoch_mismatch` with the current epoch, never
//! lines of another sequence, also on the very first request after a restart.

use crate::common;

use std::time::Duration;

use common::{app_config, run_job, shared_clock, steps, wait_for, wait_until, Server};
use powertail::sim::Simulator;
use serde_json::Value;

/// Reads until at least `n` lines came from line 0 (without epoch); the last answer.
async fn read_until(p: &Server, id: i64, n: usize) -> Value {
    wait_for(Duration::from_secs(20), &format!("{n} lines"), || async {
        let (status, body) = p.get(&format!("/llm/logs?instanceId={id}&fromLine=0")).await;
        assert_eq!(status, 200, "{body}");
        (body["lines"].as_array().unwrap().len() >= n).then_some(body)
    })
    .await
}

fn sim_config() -> powertail::sim::SimConfig {
    steps(400).text(|k, _| format!("[INFO] step {k}")).over(6_000).sim(12)
}

fn epoch_of(body: &Value) -> String {
    let epoch = body["epoch"].as_str().unwrap_or_else(|| panic!("no epoch in {body}")).to_owned();
    let (boot, n) = epoch.split_once('-').unwrap();
    assert!(boot.len() == 16 && boot.bytes().all(|b| b.is_ascii_hexdigit()), "{epoch}");
    assert!(n.parse::<u64>().is_ok(), "{epoch}");
    epoch
}

/// Asserts a 410 `epoch_mismatch` naming `current` (when given); returns its epoch.
fn gone(status: u16, body: &Value, current: Option<&str>) -> String {
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "epoch_mismatch", "{body}");
    assert!(body["error"]["message"].is_string());
    let epoch = epoch_of(body);
    if let Some(current) = current {
        assert_eq!(epoch, current);
    }
    epoch
}

/// The first SSE event of a stream that must start: (event, data).
async fn first_event(p: &Server, path: &str) -> (String, Value) {
    let mut resp = p.http.get(format!("{}{path}", p.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await.unwrap().unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        if let Some(end) = buf.find("\n\n") {
            let block = &buf[..end];
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(|v| v.trim().to_owned());
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if let Some(name) = name.filter(|n| n != "startup") {
                return (name, serde_json::from_str(&data).unwrap());
            }
            buf.drain(..end + 2);
        }
    }
}

#[tokio::test]
async fn a_restarted_process_answers_410_with_its_epoch_to_the_old_one() {
    let mut sim_cfg = sim_config();
    let clock = shared_clock(&mut sim_cfg);
    let sim = Simulator::spawn(sim_cfg).await.unwrap();
    let config = app_config(&[sim.url()], "");
    let id = run_job(&sim, 12);

    // The first process serves the growing log under E1, in every answer.
    let first = Server::start_with_clock(&config, clock.clone()).await;
    let body = read_until(&first, id, 20).await;
    let e1 = epoch_of(&body);
    let (status, again) = first.get(&format!("/llm/logs?instanceId={id}&fromLine=20&epoch={e1}")).await;
    assert_eq!((status, epoch_of(&again)), (200, e1.clone()), "{again}");
    assert_eq!(again["fromLine"], 20);
    let raw = first.http.get(format!("{}/llm/logs/{id}/raw", first.base)).send().await.unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["powertail-epoch"].to_str().unwrap(), e1);
    let (event, data) = first_event(&first, &format!("/llm/logs/{id}/stream?epoch={e1}")).await;
    assert_eq!((event.as_str(), epoch_of(&data)), ("lines", e1.clone()));
    first.stop().await;

    // A restarted process: its very first answer to E1 is 410 with its own epoch, at
    // once, without reading PowerJob (a new sequence cannot be E1's).
    let second = Server::start_with_clock(&config, clock.clone()).await;
    sim.reset_counters();
    let (status, body) = second.get(&format!("/llm/logs?instanceId={id}&fromLine=20&epoch={e1}")).await;
    let e2 = gone(status, &body, None);
    assert_ne!(e2.split('-').next(), e1.split('-').next(), "another boot id");
    assert_eq!(sim.requests("/instance/log"), 0, "answered without reading the log");
    assert!(body.get("lines").is_none());
    // The stream too, before it starts (also an EventSource reconnect with its id).
    let (status, body) = second.get(&format!("/llm/logs/{id}/stream?epoch={e1}")).await;
    gone(status, &body, Some(&e2));
    let resp = second
        .http
        .get(format!("{}/llm/logs/{id}/stream?epoch={e1}", second.base))
        .header("Last-Event-ID", "20")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);
    let body: Value = resp.json().await.unwrap();
    gone(410, &body, Some(&e2));

    // Without an epoch: served as before, under E2.
    let body = read_until(&second, id, 1).await;
    assert_eq!(epoch_of(&body), e2);
    // Later, E1 still gets 410 and E2 is served.
    let (status, body) = second.get(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch={e1}")).await;
    gone(status, &body, Some(&e2));
    let (status, body) = second.get(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch={e2}")).await;
    assert_eq!((status, epoch_of(&body)), (200, e2.clone()), "{body}");
    let (event, data) = first_event(&second, &format!("/llm/logs/{id}/stream?epoch={e2}")).await;
    assert_eq!((event.as_str(), epoch_of(&data)), ("lines", e2.clone()));
    let raw = second.http.get(format!("{}/llm/logs/{id}/raw", second.base)).send().await.unwrap();
    assert_eq!(raw.headers()["powertail-epoch"].to_str().unwrap(), e2);

    // The `end` event carries it too, and a bad epoch is a 400 like any bad input.
    clock.advance(Duration::from_secs(10)); // the rest of the 6 s run, its sync, the window
    wait_until(Duration::from_secs(30), "complete", || async {
        second.get(&format!("/llm/logs?instanceId={id}&fromLine=100000")).await.1["complete"] == true
    })
    .await;
    let (event, data) = first_event(&second, &format!("/llm/logs/{id}/stream?fromLine=100000&epoch={e2}")).await;
    assert_eq!((event.as_str(), epoch_of(&data)), ("end", e2.clone()));
    let (status, body) = second.get(&format!("/llm/logs?instanceId={id}&epoch=")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")));
    second.stop().await;
}

#[tokio::test]
async fn an_idle_evicted_growing_log_gets_a_new_epoch() {
    let mut sim_cfg = sim_config();
    let clock = shared_clock(&mut sim_cfg);
    let sim = Simulator::spawn(sim_cfg).await.unwrap();
    let mut config = app_config(&[sim.url()], "");
    config.logs.idle_evict_ms = 150;
    let id = run_job(&sim, 12);
    let p = Server::start_with_clock(&config, clock.clone()).await;
    let e1 = epoch_of(&read_until(&p, id, 10).await);
    // Nobody reads for a while: the growing log is dropped, and its order with it.
    clock.advance(Duration::from_millis(600));
    let (status, body) = p.get(&format!("/llm/logs?instanceId={id}&fromLine=10&epoch={e1}")).await;
    let e2 = gone(status, &body, None);
    assert_ne!(e2, e1);
    assert_eq!(e2.split('-').next(), e1.split('-').next(), "the same process");
    // The new sequence is served from line 0 under E2; E1 stays refused.
    let (status, body) = p.get(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch={e2}")).await;
    assert_eq!((status, epoch_of(&body)), (200, e2.clone()), "{body}");
    let (status, body) = p.get(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch={e1}")).await;
    gone(status, &body, Some(&e2));
    p.stop().await;
}
