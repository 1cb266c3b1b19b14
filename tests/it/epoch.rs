//! Epochs (issue 12, item 6): every log answer names the served sequence, and a client
//! whose epoch names a sequence that was rebuilt from scratch (a restarted process, an
//! idle growing log dropped) gets 410 `epoch_mismatch` with the current epoch, never
//! lines of another sequence, also on the very first request after a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{app_config, fast_sim};
use powertail::config::Config;
use powertail::sim::{JobScript, SimHandle, SimJob, Simulator};
use serde_json::Value;
use tokio::sync::oneshot;

/// One powertail process: a fresh `powertail::build` + `run` on its own port.
struct Process {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Process {
    async fn start(config: &Config) -> Self {
        common::init_tracing();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = powertail::build(config, listener.local_addr().unwrap()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(powertail::run(listener, state, async {
            let _ = stopped.await;
        }));
        Process { base, http: reqwest::Client::new(), stop: Some(stop), server }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await.expect("the server stops");
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// Reads until at least `n` lines came from line 0 (without epoch); the last answer.
    async fn read_until(&self, id: i64, n: usize) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&format!("/llm/logs?instanceId={id}&fromLine=0")).await;
            assert_eq!(status, 200, "{body}");
            if body["lines"].as_array().unwrap().len() >= n {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {n} lines in time: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn sim_config() -> powertail::sim::SimConfig {
    let mut text = String::new();
    for k in 0..400 {
        text.push_str(&format!("[INFO] step {k}\n"));
    }
    let mut cfg = fast_sim();
    cfg.jobs = vec![SimJob {
        id: 12,
        name: "j".into(),
        job_params: String::new(),
        script: Some(Arc::new(JobScript::from_text(&text, 6_000, 5, "ok"))),
    }];
    cfg
}

fn run(sim: &SimHandle) -> i64 {
    sim.with_core(|c, now| c.run_job(12, None, 0, now)).expect("job 12 exists")
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
async fn first_event(p: &Process, path: &str) -> (String, Value) {
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
    let sim = Simulator::spawn(sim_config()).await.unwrap();
    let config = app_config(&[sim.url()], "");
    let id = run(&sim);

    // The first process serves the growing log under E1, in every answer.
    let first = Process::start(&config).await;
    let body = first.read_until(id, 20).await;
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
    let second = Process::start(&config).await;
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
    let body = second.read_until(id, 1).await;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = second.get(&format!("/llm/logs?instanceId={id}&fromLine=100000")).await;
        if body["complete"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not complete: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (event, data) = first_event(&second, &format!("/llm/logs/{id}/stream?fromLine=100000&epoch={e2}")).await;
    assert_eq!((event.as_str(), epoch_of(&data)), ("end", e2.clone()));
    let (status, body) = second.get(&format!("/llm/logs?instanceId={id}&epoch=")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")));
    second.stop().await;
}

#[tokio::test]
async fn an_idle_evicted_growing_log_gets_a_new_epoch() {
    let sim = Simulator::spawn(sim_config()).await.unwrap();
    let mut config = app_config(&[sim.url()], "");
    config.logs.idle_evict_ms = 150;
    let id = run(&sim);
    let p = Process::start(&config).await;
    let e1 = epoch_of(&p.read_until(id, 10).await);
    // Nobody reads for a while: the growing log is dropped, and its order with it.
    tokio::time::sleep(Duration::from_millis(600)).await;
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
