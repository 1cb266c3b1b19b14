//! Webhooks of start-up events (issue 13 part 3), end to end: the demo's vLLM jobs
//! through the simulator, a receiver on loopback that records every request.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use powertail::config::{JobConfig, NotifyConfig};
use powertail::sim::{JobScript, SimConfig, SimJob, Simulator};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(40);
const KEY_VAR: &str = "WEBHOOK_TEST_SIGNING_KEY";
const KEY: &str = "a-test-signing-key-0123456789";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
    at: Instant,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Receiver {
    url: String,
    hits: watch::Receiver<Vec<Hit>>,
}

struct ReceiverState {
    fail_first: AtomicUsize,
    hits: watch::Sender<Vec<Hit>>,
}

async fn hook(State(s): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let fail = s.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if fail { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::NO_CONTENT };
    s.hits.send_modify(|h| h.push(Hit { headers, body, answered: status.as_u16(), at: Instant::now() }));
    status
}

impl Receiver {
    /// A receiver on 127.0.0.1 that answers 503 to its first `fail_first` requests.
    async fn spawn(fail_first: usize) -> Self {
        let (tx, rx) = watch::channel(Vec::new());
        let state = Arc::new(ReceiverState { fail_first: AtomicUsize::new(fail_first), hits: tx });
        let app = axum::Router::new().route("/hooks/llm", axum::routing::post(hook)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/llm?token=t0k3n", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, hits: rx }
    }

    /// Waits (at most [`DEADLINE`]) until the requests received satisfy `done`.
    async fn until(&self, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let mut rx = self.hits.clone();
        let waited = tokio::time::timeout(DEADLINE, rx.wait_for(|h| done(h))).await;
        let hits = self.hits.borrow().clone();
        assert!(waited.is_ok(), "not received in {DEADLINE:?}: {hits:#?}");
        hits
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.borrow().clone()
    }
}

/// The demo app (its `get` asserts 200 and returns the JSON body).
struct App(common::TestApp);

impl std::ops::Deref for App {
    type Target = common::TestApp;
    fn deref(&self) -> &common::TestApp {
        &self.0
    }
}

async fn serve(demo: powertail::demo::Demo) -> App {
    App(common::TestApp::spawn_app(demo.sim, &demo.config).await)
}

impl App {
    async fn get(&self, path: &str) -> Value {
        self.get_ok(path).await
    }

    async fn run(&self, job: &str) -> String {
        self.run_named(job).await["instanceId"].as_str().unwrap().to_owned()
    }

    /// Waits until the instance's log is complete and its webhook watcher has ended:
    /// nothing more can be delivered for it.
    async fn until_done(&self, id: &str) {
        let deadline = common::Deadline::after(DEADLINE);
        let mut from = 0;
        loop {
            let page = self.get(&format!("/llm/logs?instanceId={id}&fromLine={from}&waitMs=2000")).await;
            from = page["nextLine"].as_u64().unwrap();
            if page["complete"] == true {
                break;
            }
            deadline.check(|| "the log is complete");
        }
        let n: i64 = id.parse().unwrap();
        common::wait_until(deadline.left(), "the watcher ended", || async { !self.logs.is_watched(n) }).await;
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_ready_start_is_delivered_once_and_signed_from_the_demos_config_file() {
    let receiver = Receiver::spawn(0).await;
    // `powertail demo --config FILE`: the user's webhook and other keys under the demo's own.
    std::env::set_var(KEY_VAR, KEY);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user.toml");
    std::fs::write(
        &file,
        format!(
            "[powerjob]\naddresses = [\"http://127.0.0.1:9\"]\napp_name = \"x\"\napp_password = \"y\"\n\
             [logs]\nread_wait_ms = 900\n\
             [jobs.vllm-start]\njob_id = 999\n\
             [jobs.vllm-start.notify]\nurl = \"{}\"\nsecret_env = \"{KEY_VAR}\"\n",
            receiver.url
        ),
    )
    .unwrap();
    let demo = powertail::demo::setup_with("127.0.0.1:0".parse().unwrap(), 0.1, Some(&file)).await.unwrap();
    assert_eq!(demo.config.logs.read_wait_ms, 900, "a key the demo does not set is the user's");
    assert_eq!(demo.config.jobs["vllm-start"].job_id, 12, "a key the demo sets is the demo's");
    assert_eq!(demo.config.powerjob.addresses[0].as_str(), demo.sim.url() + "/");
    let app = serve(demo).await;

    let id = app.run("vllm-start").await;
    let hits = receiver.until(|h| !h.is_empty()).await;
    let hit = &hits[0];
    assert_eq!(hit.answered, 204);
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert_eq!(hit.header("x-powertail-delivery"), Some(format!("{id}:1:ready").as_str()));
    assert_eq!(hit.header("x-powertail-event"), Some("ready"));
    // The signature is HMAC-SHA256 of the exact body with the key from the environment.
    let expected = format!("sha256={}", hmac_hex(KEY.as_bytes(), &hit.body));
    assert_eq!(hit.header("x-powertail-signature"), Some(expected.as_str()));
    assert_ne!(hit.header("x-powertail-signature"), Some(format!("sha256={}", hmac_hex(b"other", &hit.body)).as_str()));
    let body = hit.json();
    assert_eq!(body["instanceId"], Value::String(id.clone()));
    assert_eq!((body["job"].as_str(), body["jobId"].as_str()), (Some("vllm-start"), Some("12")));
    assert_eq!((body["event"].as_str(), body["attempt"].as_u64()), (Some("ready"), Some(1)));
    assert_eq!(body["cause"], Value::Null);
    let startup = app.get(&format!("/llm/instances/{id}/startup")).await;
    assert_eq!(body["line"], startup["ready"]["line"]);
    assert_eq!(body["text"], startup["ready"]["text"]);
    assert!(body["text"].as_str().unwrap().ends_with("Application startup complete."), "{body}");

    // The job then exits with success; the watcher ends; nothing else was sent.
    app.until_done(&id).await;
    assert_eq!(receiver.hits().len(), 1, "{:#?}", receiver.hits());
    // Another read of the finished instance does not send it again.
    app.get(&format!("/llm/instances/{id}/startup")).await;
    app.until_done(&id).await;
    assert_eq!(receiver.hits().len(), 1, "{:#?}", receiver.hits());
}

#[tokio::test]
async fn a_failure_is_retried_until_the_receiver_recovers_and_a_retry_has_its_own() {
    let receiver = Receiver::spawn(2).await;
    let mut demo = powertail::demo::setup("127.0.0.1:0".parse().unwrap(), 0.1).await.unwrap();
    demo.config.jobs.get_mut("vllm-oom").unwrap().notify = Some(NotifyConfig::to(receiver.url.parse().unwrap()));
    let app = serve(demo).await;

    let id = app.run("vllm-oom").await;
    let hits = receiver.until(|h| h.iter().any(|h| h.answered == 204)).await;
    assert_eq!(hits.iter().map(|h| h.answered).collect::<Vec<_>>(), [503, 503, 204]);
    let key = format!("{id}:1:failed");
    assert!(hits.iter().all(|h| h.header("x-powertail-delivery") == Some(key.as_str())), "{hits:#?}");
    assert!(hits.iter().all(|h| h.body == hits[0].body), "a repeat carries the same body");
    assert!(hits.iter().all(|h| h.header("x-powertail-signature").is_none()), "no secret, no signature");
    // The first retry within a few seconds.
    assert!(hits[1].at - hits[0].at < Duration::from_secs(3), "{:?}", hits[1].at - hits[0].at);
    let body = hits[2].json();
    assert_eq!((body["event"].as_str(), body["attempt"].as_u64()), (Some("failed"), Some(1)));
    assert_eq!((body["job"].as_str(), body["instanceId"].as_str()), (Some("vllm-oom"), Some(id.as_str())));
    // The most specific cause, not the generic `engine_failed` that comes first.
    assert_eq!(body["cause"], "cuda_oom", "{body}");
    assert!(body["text"].as_str().unwrap().contains("CUDA out of memory"), "{body}");
    app.until_done(&id).await;
    assert_eq!(receiver.hits().len(), 3);

    // A retry is a new attempt with its own delivery.
    let resp = app.http.post(format!("{}/llm/instances/{id}/retry", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hits = receiver.until(|h| h.len() >= 4).await;
    assert_eq!(hits[3].header("x-powertail-delivery"), Some(format!("{id}:2:failed").as_str()));
    let body = hits[3].json();
    assert_eq!((body["attempt"].as_u64(), body["cause"].as_str()), (Some(2), Some("cuda_oom")));
    let logs = app.get(&format!("/llm/logs?instanceId={id}&limit=1")).await;
    assert!(body["line"].as_u64().unwrap() >= logs["attempts"][1]["fromLine"].as_u64().unwrap(), "{body} {logs}");
    app.until_done(&id).await;
    assert_eq!(receiver.hits().len(), 4, "{:#?}", receiver.hits());

    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for outcome in ["retried", "delivered"] {
        assert!(
            metrics.lines().any(|l| l.starts_with("powertail_webhook_deliveries_total{")
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.contains("event=\"failed\"")),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_run_from_the_console_is_delivered_once_something_reads_it() {
    let receiver = Receiver::spawn(0).await;
    let mut demo = powertail::demo::setup("127.0.0.1:0".parse().unwrap(), 0.1).await.unwrap();
    demo.config.jobs.get_mut("vllm-port-in-use").unwrap().notify =
        Some(NotifyConfig::to(receiver.url.parse().unwrap()));
    // Run behind powertail's back (PowerJob's console or schedule).
    let id = demo.sim.with_core(|c, now| c.run_job(14, None, 0, now)).unwrap().to_string();
    let app = serve(demo).await;
    // Not watched before anything reads it (powertail does not scan PowerJob).
    let n: i64 = id.parse().unwrap();
    assert!(!app.logs.is_watched(n));
    // One read, and the instance's job id picks the webhook.
    app.get(&format!("/llm/logs?instanceId={id}")).await;
    let hits = receiver.until(|h| !h.is_empty()).await;
    assert_eq!(hits[0].header("x-powertail-delivery"), Some(format!("{id}:1:failed").as_str()));
    let body = hits[0].json();
    assert_eq!((body["job"].as_str(), body["cause"].as_str()), (Some("vllm-port-in-use"), Some("port_in_use")));
    app.until_done(&id).await;
    assert_eq!(receiver.hits().len(), 1, "{:#?}", receiver.hits());
}

#[tokio::test]
async fn a_failure_while_the_job_runs_on_is_delivered_once_it_settled() {
    let receiver = Receiver::spawn(0).await;
    // A failure line at 0.4 s, then the job lives on until 13 s.
    let mut text = String::from("[INFO] launching the server\nERROR: EngineCore failed to start.\n");
    for k in 0..63 {
        text.push_str(&format!("[INFO] still here {k}\n"));
    }
    let script = JobScript::from_text(&text, 13_000, 5, "done");
    let job = SimJob { id: 40, name: "hangs".into(), job_params: String::new(), script: Some(Arc::new(script)) };
    let sim = Simulator::spawn(SimConfig { jobs: vec![job], ..common::fast_sim() }).await.unwrap();
    let mut config = common::app_config(&[sim.url()], "");
    config.jobs.insert(
        "hangs".into(),
        JobConfig {
            job_id: 40,
            description: String::new(),
            params: serde_json::Map::new(),
            builtin_rules: true,
            startup_rules: Vec::new(),
            notify: Some(NotifyConfig::to(receiver.url.parse().unwrap())),
        },
    );
    // The failure is final once the job logged a line this much later (by the lines' time).
    config.startup.failure_settle_ms = 5_000;
    let app = common::TestApp::spawn_app(sim, &config).await;
    let resp = app.http.post(format!("{}/llm/jobs/hangs/run", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["instanceId"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let hits = receiver.until(|h| !h.is_empty()).await;
    let body = hits[0].json();
    assert_eq!((body["event"].as_str(), body["cause"].as_str()), (Some("failed"), Some("engine_failed")), "{body}");
    assert_eq!(body["status"], "RUNNING", "delivered while the job runs on: {body}");
    let after = hits[0].at - started;
    assert!(after >= Duration::from_millis(5_000), "not before the failure settled: {after:?}");
    // The job's end changes nothing: delivered once.
    let n: i64 = id.parse().unwrap();
    let deadline = common::Deadline::after(DEADLINE);
    let mut from = 0;
    loop {
        let page = app.logs_wait(n, from, 1000).await;
        from = page["nextLine"].as_u64().unwrap();
        if page["complete"] == true && !app.logs.is_watched(n) {
            break;
        }
        deadline.check(|| format!("complete, the watcher ended: {page}"));
        if page["complete"] == true {
            tokio::time::sleep(Duration::from_millis(20)).await; // the watcher's end
        }
    }
    assert_eq!(receiver.hits().len(), 1, "{:#?}", receiver.hits());
}

/// Cluster mode: three replicas watch the same run (each was told it runs the job); the
/// claim in Redis lets exactly one of them deliver each event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn in_cluster_mode_one_replica_delivers_each_event() {
    let redis = common::cluster::RedisServer::start();
    let receiver = Receiver::spawn(0).await;
    let mut demo = powertail::demo::setup("127.0.0.1:0".parse().unwrap(), 0.1).await.unwrap();
    demo.config.jobs.get_mut("vllm-start").unwrap().notify = Some(NotifyConfig::to(receiver.url.parse().unwrap()));
    let cluster = powertail::config::Config::from_toml(&format!(
        "[powerjob]\naddresses = [\"http://127.0.0.1:9\"]\napp_name = \"x\"\napp_password = \"y\"\n\
         [cluster]\nredis_url = \"{}\"\nkey_prefix = {:?}\n",
        redis.url(),
        common::cluster::test_key_prefix()
    ))
    .unwrap()
    .cluster;
    demo.config.cluster = cluster;
    let config = demo.config.clone();
    let a = serve(demo).await;
    let replicas = [common::cluster::InProcess::start(&config).await, common::cluster::InProcess::start(&config).await];
    let id = a.run("vllm-start").await;
    let n: i64 = id.parse().unwrap();
    for r in &replicas {
        r.logs.started_as(n, "vllm-start");
        assert!(r.logs.is_watched(n));
    }
    let hits = receiver.until(|h| !h.is_empty()).await;
    assert_eq!(hits[0].header("x-powertail-delivery"), Some(format!("{id}:1:ready").as_str()));
    // Every watcher saw the ready line and ended with the log; one request in all.
    a.until_done(&id).await;
    for r in &replicas {
        let end = Instant::now() + DEADLINE;
        while r.logs.is_watched(n) {
            assert!(Instant::now() < end, "a watcher did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(receiver.hits().len(), 1, "{:#?}", receiver.hits());
    assert_eq!(redis.keys(&format!("{}:delivery:*", common::cluster::test_key_prefix())).len(), 1);
}
