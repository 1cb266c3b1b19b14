//! Issue 21, items 2 and 7, end to end on the demo's jobs through the simulator.
//!
//! * vLLM's OOM start logs `EngineCore failed to start` (generic, `engine_failed`) a
//!   few lines before the CUDA out-of-memory error (`cuda_oom`): the phase is never
//!   `failed` with the generic cause; the provisional cause shows as `failure` with
//!   `final: false`; the final cause is `cuda_oom`, in one `failed` event and one
//!   `failed` webhook.
//! * Jobs that are no model servers (noisy-batch, multi-worker) are `tracked: false`
//!   all along; a vLLM job is tracked once its first start-up line matched.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt as _;
use powertail::config::NotifyConfig;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::common::TestApp;

const DEADLINE: Duration = Duration::from_secs(60);
/// The demo's times scaled (a vLLM start-up in ~9 s; the OOM's two causes ~1.2 s apart).
const SCALE: f64 = 0.3;

/// The demo app (its `get` asserts 200 and returns the JSON body).
struct App(TestApp);

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.0
    }
}

/// The demo with `hook` (if any) as the webhook of vllm-oom.
async fn spawn(hook: Option<&str>) -> App {
    App(TestApp::demo(SCALE, |config| {
        if let Some(url) = hook {
            config.jobs.get_mut("vllm-oom").unwrap().notify = Some(NotifyConfig::to(url.parse().unwrap()));
        }
    })
    .await)
}

impl App {
    async fn get(&self, path: &str) -> Value {
        self.get_ok(path).await
    }

    async fn run(&self, job: &str) -> String {
        self.run_named(job).await["instanceId"].as_str().unwrap().to_owned()
    }

    /// Every `startup` event of the instance's log stream until its `end`.
    async fn startup_events(&self, id: &str) -> Vec<Value> {
        let resp = self.http.get(format!("{}/llm/logs/{id}/stream", self.base)).send().await.unwrap();
        let mut body = resp.bytes_stream();
        let (mut buf, mut startups) = (String::new(), Vec::new());
        let end = Instant::now() + DEADLINE;
        loop {
            let chunk = tokio::time::timeout_at(end, body.next()).await;
            let chunk = chunk.expect("the stream ends in time").expect("the stream ends with `end`").unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(at) = buf.find("\n\n") {
                let block: String = buf.drain(..at + 2).collect();
                let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or("");
                let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
                match name {
                    "startup" => startups.push(serde_json::from_str(&data).unwrap()),
                    "end" => return startups,
                    _ => {}
                }
            }
        }
    }

    /// Short-polls the start-up state until `done` holds; returns every answer.
    async fn poll_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let end = Instant::now() + DEADLINE;
        let mut answers = Vec::new();
        loop {
            let a = self.get(&format!("/llm/instances/{id}/startup")).await;
            answers.push(a.clone());
            if done(&a) {
                return answers;
            }
            assert!(Instant::now() < end, "not done in {DEADLINE:?}: {a}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// No answer is `failed` with another cause than `cuda_oom`, nor with a provisional one.
fn assert_never_failed_but_with_the_final_cause(answers: &[Value]) {
    for a in answers {
        let failure = &a["failure"];
        if a["phase"] == "failed" {
            assert_eq!((&failure["cause"], &failure["final"]), (&json!("cuda_oom"), &json!(true)), "{a}");
        }
        if !failure.is_null() {
            assert!(failure["final"].is_boolean(), "`failure.final` always: {a}");
            if failure["final"] == false {
                assert_ne!(a["phase"], "failed", "{a}");
                assert_eq!(failure["cause"], "engine_failed", "{a}");
            }
        }
    }
}

#[tokio::test]
async fn an_oom_start_is_never_failed_with_the_generic_cause() {
    let app = spawn(None).await;
    let id = app.run("vllm-oom").await;
    let (polled, streamed) = tokio::join!(app.poll_until(&id, |a| a["complete"] == true), app.startup_events(&id));
    assert_never_failed_but_with_the_final_cause(&polled);
    assert_never_failed_but_with_the_final_cause(&streamed);
    // The provisional cause was shown while it was the only one (streamed: every change).
    assert!(
        streamed.iter().any(|a| a["failure"]["cause"] == "engine_failed" && a["failure"]["final"] == false),
        "{streamed:#?}"
    );
    let last = polled.last().unwrap();
    assert_eq!((&last["phase"], &last["status"], &last["tracked"]), (&json!("failed"), &json!("FAILED"), &json!(true)));
    assert_eq!((&last["failure"]["cause"], &last["failure"]["final"]), (&json!("cuda_oom"), &json!(true)));
    let failed: Vec<&Value> = last["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "failed").collect();
    assert_eq!(failed, [&json!({"kind": "failed", "line": last["failure"]["line"], "cause": "cuda_oom"})]);
}

async fn hook(State(tx): State<Arc<watch::Sender<Vec<Value>>>>, body: Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap();
    tx.send_modify(|h| h.push(body));
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn the_failed_webhook_carries_the_final_cause_once() {
    let (tx, rx) = watch::channel(Vec::new());
    let router = axum::Router::new().route("/hooks/llm", axum::routing::post(hook)).with_state(Arc::new(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/llm", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = spawn(Some(&url)).await;
    let id = app.run("vllm-oom").await;
    // Until the log is complete and the watcher ended: nothing more can be delivered.
    let end = Instant::now() + DEADLINE;
    let mut from = 0;
    loop {
        let page = app.get(&format!("/llm/logs?instanceId={id}&fromLine={from}&waitMs=2000")).await;
        from = page["nextLine"].as_u64().unwrap();
        if page["complete"] == true && !app.logs.is_watched(id.parse().unwrap()) {
            break;
        }
        assert!(Instant::now() < end, "not complete in {DEADLINE:?}: {page}");
        if page["complete"] == true {
            tokio::time::sleep(Duration::from_millis(20)).await; // the watcher's end
        }
    }
    let hits = rx.borrow().clone();
    let failed: Vec<&Value> = hits.iter().filter(|h| h["event"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{hits:#?}");
    assert_eq!((&failed[0]["cause"], &failed[0]["instanceId"]), (&json!("cuda_oom"), &json!(id)), "{hits:#?}");
}

#[tokio::test]
async fn jobs_that_are_no_model_servers_are_not_tracked() {
    let app = spawn(None).await;
    let mapper = app.run("multi-worker").await;
    let batch = app.run("noisy-batch").await;
    let answers = app.poll_until(&mapper, |a| a["complete"] == true).await;
    assert!(answers.iter().all(|a| a["tracked"] == false), "{answers:#?}");
    assert_eq!(answers.last().unwrap()["phase"], "exited", "the state is still answered");
    let end = Instant::now() + DEADLINE;
    loop {
        let page = app.get(&format!("/llm/logs?instanceId={batch}&fromLine=1000&limit=1&waitMs=2000")).await;
        if page["totalLines"].as_u64().unwrap() > 1_000 {
            break;
        }
        assert!(Instant::now() < end, "the batch job logged too little: {page}");
    }
    assert_eq!(app.get(&format!("/llm/instances/{batch}/startup")).await["tracked"], false);
    // A vLLM start is tracked once its first start-up line matched, and stays so.
    let vllm = app.run("vllm-start").await;
    let answers = app.poll_until(&vllm, |a| a["phase"] == "ready").await;
    let first = answers.iter().position(|a| a["tracked"] == true).expect("tracked");
    assert!(answers[first..].iter().all(|a| a["tracked"] == true), "{answers:#?}");
    assert!(answers[..first].iter().all(|a| a["events"] == json!([])), "tracked with the first match: {answers:#?}");
}
