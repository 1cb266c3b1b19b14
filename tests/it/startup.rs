//! Start-up state end to end (issue 13): the demo's three vLLM jobs through the
//! simulator, `GET /llm/instances/{id}/startup` as a long-poll, a retry's own phase,
//! the `startup` event of the log stream, and per-job rules from the configuration.

use std::time::Duration;

use futures::StreamExt as _;
use powertail::config::Config;
use powertail::logs::rules::{RuleKind, RuleSet, RuleSpec};
use powertail::logs::startup::StartupTracker;
use serde_json::{json, Value};

use crate::common::{Deadline, TestApp};

const DEADLINE: Duration = Duration::from_secs(40);

/// The demo app (its `get` asserts 200 and returns the JSON body).
struct App(TestApp);

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.0
    }
}

/// The demo 10 times faster (a vLLM start-up takes ~3 s), `f` applied to its config.
async fn spawn(f: impl FnOnce(&mut Config)) -> App {
    App(TestApp::demo(0.1, f).await)
}

impl App {
    async fn get(&self, path: &str) -> Value {
        self.get_ok(path).await
    }

    /// Runs a configured job; returns (instance id, startupUrl).
    async fn run(&self, job: &str) -> (String, String) {
        let body = self.run_named(job).await;
        let id = body["instanceId"].as_str().unwrap().to_owned();
        assert_eq!(body["startupUrl"], format!("/llm/instances/{id}/startup"));
        (id, body["startupUrl"].as_str().unwrap().to_owned())
    }

    /// Long-polls the start-up state until `done` holds; returns every answer.
    async fn until(&self, url: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Deadline::after(DEADLINE);
        let mut answers: Vec<Value> = Vec::new();
        loop {
            let q = match answers.last() {
                Some(a) => {
                    format!("?waitMs=2000&attempt={}&fromEvent={}", a["attempt"], a["events"].as_array().unwrap().len())
                }
                None => String::new(),
            };
            let a = self.get(&format!("{url}{q}")).await;
            answers.push(a.clone());
            if done(&a) {
                return answers;
            }
            deadline.check(|| format!("not done: {a}"));
        }
    }

    /// Served line `n` of the instance's log.
    async fn line(&self, id: &str, n: u64) -> String {
        let page = self.get(&format!("/llm/logs?instanceId={id}&fromLine={n}&limit=1")).await;
        page["lines"][0].as_str().unwrap().to_owned()
    }
}

fn phases(answers: &[Value]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for a in answers {
        let p = a["phase"].as_str().unwrap().to_owned();
        if seen.last() != Some(&p) {
            seen.push(p);
        }
    }
    seen
}

#[tokio::test]
async fn a_vllm_start_goes_from_loading_to_ready_and_stays_ready() {
    let app = spawn(|_| {}).await;
    let (id, url) = app.run("vllm-start").await;
    let answers = app.until(&url, |a| a["phase"] == "ready").await;
    let last = answers.last().unwrap();
    assert_eq!(last["instanceId"], id);
    assert_eq!((last["attempt"].as_u64(), last["complete"].as_bool()), (Some(1), Some(true)));
    let seen = phases(&answers);
    assert_eq!(seen.last().unwrap(), "ready");
    assert!(seen.iter().all(|p| ["starting", "loading", "ready"].contains(&p.as_str())), "{seen:?}");
    let ready = &last["ready"];
    let text = app.line(&id, ready["line"].as_u64().unwrap()).await;
    assert_eq!(ready["text"], text);
    assert!(text.ends_with("INFO:     Application startup complete."), "{text}");
    let events = last["events"].as_array().unwrap();
    assert_eq!(events[0]["kind"], "loading", "{events:?}");
    assert!(events.iter().any(|e| e["kind"] == "progress" && e["done"] == 67 && e["total"] == 67));
    assert_eq!(events.last().unwrap(), &json!({"kind": "ready", "line": ready["line"]}));
    assert_eq!(last["progress"]["label"], "Capturing CUDA graphs (decode, FULL)");
    // The script then exits with success: still ready.
    let after = app.until(&url, |a| a["status"] == "SUCCEED").await;
    assert_eq!(after.last().unwrap()["phase"], "ready");
    // The events followed live are those of the whole log read at once.
    let lines = app.get(&format!("/llm/logs?instanceId={id}&limit=10000")).await;
    let mut tracker = StartupTracker::default();
    for (i, l) in lines["lines"].as_array().unwrap().iter().enumerate() {
        tracker.feed(RuleSet::builtin(), powertail::config::FAILURE_SETTLE_MS as i64, i as u64, l.as_str().unwrap());
    }
    assert_eq!(&serde_json::to_value(tracker.events()).unwrap(), &last["events"]);
}

#[tokio::test]
async fn a_job_that_is_no_model_server_exits() {
    let app = spawn(|_| {}).await;
    let (_, url) = app.run("multi-worker").await;
    let last = app.until(&url, |a| a["complete"] == true).await.pop().unwrap();
    assert_eq!((last["phase"].as_str(), last["status"].as_str()), (Some("exited"), Some("SUCCEED")));
    assert_eq!(last["events"], json!([{"kind": "exited", "status": "SUCCEED"}]));
    assert_eq!((&last["ready"], &last["failure"], &last["progress"]), (&Value::Null, &Value::Null, &Value::Null));
}

#[tokio::test]
async fn an_oom_is_its_root_cause_and_a_retry_gets_its_own_phase() {
    let app = spawn(|_| {}).await;
    let (id, url) = app.run("vllm-oom").await;
    let answers = app.until(&url, |a| a["complete"] == true).await;
    let last = answers.last().unwrap();
    assert_eq!((last["phase"].as_str(), last["status"].as_str()), (Some("failed"), Some("FAILED")));
    let failure = &last["failure"];
    assert_eq!(failure["cause"], "cuda_oom");
    let text = app.line(&id, failure["line"].as_u64().unwrap()).await;
    assert!(text.contains("torch.OutOfMemoryError: CUDA out of memory"), "{text}");
    let causes: Vec<&Value> =
        last["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "failed").map(|e| &e["cause"]).collect();
    // One `failed` event, with the final cause (issue 21, item 2).
    assert_eq!(causes, [&json!("cuda_oom")]);

    // Retry: attempt 2 starts over (not failed at once), then fails with its own line.
    let resp = app.http.post(format!("{}/llm/instances/{id}/retry", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // (`engine_failed` first, then the root cause a few lines later.)
    let second = app.until(&url, |a| a["attempt"] == 2 && a["failure"]["cause"] == "cuda_oom").await;
    let first_of_2 = second.iter().find(|a| a["attempt"] == 2).unwrap();
    assert_ne!(first_of_2["phase"], "failed", "the retry is not the first attempt's failure: {first_of_2}");
    let last = second.last().unwrap();
    assert_eq!(last["failure"]["cause"], "cuda_oom");
    let logs = app.get(&format!("/llm/logs?instanceId={id}&limit=1")).await;
    let from = logs["attempts"][1]["fromLine"].as_u64().unwrap();
    assert!(last["failure"]["line"].as_u64().unwrap() >= from, "{last} {logs}");
    assert!(last["events"].as_array().unwrap().iter().all(|e| e["line"].as_u64().is_none_or(|l| l >= from)));
}

#[tokio::test]
async fn the_log_stream_carries_the_startup_state() {
    let app = spawn(|_| {}).await;
    let (id, _) = app.run("vllm-port-in-use").await;
    let resp = app.http.get(format!("{}/llm/logs/{id}/stream", app.base)).send().await.unwrap();
    let mut body = resp.bytes_stream();
    let (mut buf, mut next_line, mut startups) = (String::new(), 0u64, Vec::new());
    let end = tokio::time::Instant::now() + DEADLINE;
    'read: while let Ok(Some(chunk)) = tokio::time::timeout_at(end, body.next()).await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(at) = buf.find("\n\n") {
            let block: String = buf.drain(..at + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or("");
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            match name {
                "lines" => next_line = serde_json::from_str::<Value>(&data).unwrap()["nextLine"].as_u64().unwrap(),
                "startup" => {
                    let s: Value = serde_json::from_str(&data).unwrap();
                    // Sent after the lines it refers to.
                    for e in s["events"].as_array().unwrap() {
                        assert!(e["line"].as_u64().is_none_or(|l| l < next_line), "{s} before line {next_line}");
                    }
                    startups.push(s);
                }
                "end" => break 'read,
                _ => {}
            }
        }
    }
    let last = startups.last().expect("startup events");
    assert_eq!((last["phase"].as_str(), last["failure"]["cause"].as_str()), (Some("failed"), Some("port_in_use")));
    assert_eq!(last["complete"], true, "the last startup event comes before `end`: {startups:?}");
    assert_eq!(&app.get(&format!("/llm/instances/{id}/startup")).await["failure"], &last["failure"]);
}

#[tokio::test]
async fn a_jobs_own_rules_apply_to_its_runs_also_from_the_console() {
    let app = spawn(|c| {
        let job = c.jobs.get_mut("vllm-port-in-use").unwrap();
        job.builtin_rules = false;
        job.startup_rules = vec![RuleSpec {
            kind: RuleKind::Failed,
            pattern: r"port \d+ is in use".into(),
            cause: Some("port_busy".into()),
            label: None,
            priority: None,
        }];
    })
    .await;
    let (_, url) = app.run("vllm-port-in-use").await;
    let last = app.until(&url, |a| a["phase"] == "failed").await.pop().unwrap();
    assert_eq!(last["failure"]["cause"], "port_busy");
    assert!(last["failure"]["text"].as_str().unwrap().contains("[ERROR] port 8000 is in use"));
    // Run behind powertail's back: the job id PowerJob reports picks the rules.
    let id = app.sim.with_core(|c, now| c.run_job(14, None, 0, now)).unwrap();
    let last = app.until(&format!("/llm/instances/{id}/startup"), |a| a["phase"] == "failed").await.pop().unwrap();
    assert_eq!(last["failure"]["cause"], "port_busy");
    // Another job keeps the built-ins.
    let (_, url) = app.run("vllm-oom").await;
    let last = app.until(&url, |a| a["phase"] == "failed").await.pop().unwrap();
    assert!(["engine_failed", "cuda_oom"].contains(&last["failure"]["cause"].as_str().unwrap()), "{last}");
}
