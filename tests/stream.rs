//! Server-Sent Events: a stream follows a run to its `end` event with exactly the
//! server's lines, and a reconnect with `Last-Event-ID` resumes where it stopped.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast_sim, TestApp};
use futures::StreamExt;
use powertail::sim::{JobScript, SimJob};
use serde_json::Value;

/// Parsed events: (event name, id, data).
async fn events(
    app: &TestApp,
    path: &str,
    last_event_id: Option<&str>,
    stop_after: Option<usize>,
) -> Vec<(String, Option<String>, Value)> {
    let mut req = app.http.get(format!("{}{path}", app.base));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, body.next()).await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue; // a heartbeat comment
            }
            let done = name == "end";
            out.push((name, id, serde_json::from_str(&data).unwrap_or(Value::String(data))));
            if done || stop_after.is_some_and(|n| out.len() >= n) {
                return out;
            }
        }
    }
    panic!("the stream did not end in time: {out:?}");
}

#[tokio::test]
async fn a_stream_follows_to_the_end_and_resumes_with_last_event_id() {
    let mut text = String::new();
    for k in 0..300 {
        text.push_str(&format!("[INFO] step {k}\n"));
    }
    let mut cfg = fast_sim();
    cfg.jobs = vec![SimJob {
        id: 12,
        name: "j".into(),
        job_params: String::new(),
        script: Some(Arc::new(JobScript::from_text(&text, 2_000, 5, "ok"))),
    }];
    let app = TestApp::spawn(cfg).await;
    let id = app.sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();

    // Read two batches, then drop the connection.
    let first = events(&app, &format!("/llm/logs/{id}/stream"), None, Some(2)).await;
    let mut lines: Vec<String> = Vec::new();
    let mut last_id = String::new();
    for (name, event_id, data) in &first {
        assert_eq!(name, "lines");
        assert_eq!(data["fromLine"].as_u64().unwrap(), lines.len() as u64);
        lines.extend(serde_json::from_value::<Vec<String>>(data["lines"].clone()).unwrap());
        last_id = event_id.clone().unwrap();
        assert_eq!(last_id, lines.len().to_string(), "id = the next line number");
    }
    // Reconnect where we stopped, as EventSource does.
    let rest = events(&app, &format!("/llm/logs/{id}/stream"), Some(&last_id), None).await;
    let (end_name, _, end) = rest.last().unwrap();
    assert_eq!(end_name, "end");
    for (name, _, data) in &rest[..rest.len() - 1] {
        assert_eq!(name, "lines");
        assert_eq!(data["fromLine"].as_u64().unwrap(), lines.len() as u64);
        lines.extend(serde_json::from_value::<Vec<String>>(data["lines"].clone()).unwrap());
    }
    assert_eq!(end["totalLines"].as_u64().unwrap(), lines.len() as u64);
    assert_eq!(end["status"], "SUCCEED");
    assert_eq!(lines, app.sim.with_core(|c, _| c.final_lines(id)));

    // A complete log streams at once from fromLine, then ends.
    let again = events(&app, &format!("/llm/logs/{id}/stream?fromLine=295"), None, None).await;
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].2["lines"].as_array().unwrap().len(), 5);
    // Bad input and unknown instances are plain HTTP errors.
    let (status, _) = app.get(&format!("/llm/logs/{id}/stream?fromLine=-1")).await;
    assert_eq!(status, 400);
    let (status, _) = app.get(&format!("/llm/logs/{id}/stream?from=1")).await;
    assert_eq!(status, 400);
    let (status, body) = app.get("/llm/logs/42/stream").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("instance_not_found")));
}
