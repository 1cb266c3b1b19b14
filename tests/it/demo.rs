//! `powertail demo` end to end: a run's `instanceParams` reach the simulated start
//! script, as they would reach the real one (merged over the job's default params).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{Deadline, TestApp};

/// How long the scaled vLLM start-up may take to log its start-up lines.
const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_demo_run_logs_the_port_of_its_instance_params() {
    // The demo 10 times faster: the vLLM start-up takes ~3 s.
    let app = TestApp::demo(0.1, |_| {}).await;
    let (base, http) = (&app.base, &app.http);

    let resp = http
        .post(format!("{base}/llm/jobs/vllm-start/run"))
        .json(&json!({"instanceParams": {"port": 8001}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let run: Value = resp.json().await.unwrap();
    let id = run["instanceId"].as_str().unwrap().to_owned();

    // Follow the log until the script has said where it starts the server.
    let deadline = Deadline::after(DEADLINE);
    let mut lines: Vec<String> = Vec::new();
    while !lines.iter().any(|l| l.contains("waiting for http://127.0.0.1:")) {
        deadline.check(|| format!("no start-up line: {lines:#?}"));
        let url = format!("{base}/llm/logs?instanceId={id}&fromLine={}&waitMs=2000", lines.len());
        let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        lines.extend(page["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()));
    }
    let text = lines.join("\n");
    assert!(text.contains("port=8001") && text.contains("on port 8001"), "{text}");
    assert!(text.contains("waiting for http://127.0.0.1:8001/health"), "{text}");
    assert!(!text.contains("8000"), "the recorded port leaks: {text}");
    // The job's default params still apply where the run gives none.
    assert!(text.contains("start qwen-7b: modelName=qwen-7b modelPath=/data/models/qwen-7b"), "{text}");
}
