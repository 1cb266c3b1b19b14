//! Server-Sent Events: a stream follows a run to its `end` event with exactly the
//! server's lines, and a reconnect with `Last-Event-ID` resumes where it stopped (and
//! gets 204 No Content once the log is complete and nothing follows its id).

use crate::common;

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
            if data.is_empty() || name == "startup" {
                continue; // a heartbeat comment, or the start-up state (tests/startup.rs)
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
    let id = app.run_job(12);

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
    // Without `Last-Event-ID`, even past the end: an `end` event.
    let past = events(&app, &format!("/llm/logs/{id}/stream?fromLine=300"), None, None).await;
    assert_eq!(past.iter().map(|e| (e.0.as_str(), e.1.as_deref())).collect::<Vec<_>>(), [("end", Some("300"))]);
    // An EventSource reconnecting after `end` (its Last-Event-ID is the last id): 204,
    // which makes it stop; an earlier id still resumes.
    let reconnect =
        |last: &str| app.http.get(format!("{}/llm/logs/{id}/stream", app.base)).header("Last-Event-ID", last);
    let resp = reconnect("300").send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.text().await.unwrap(), "");
    assert_eq!(reconnect("301").send().await.unwrap().status(), 204);
    let resumed = events(&app, &format!("/llm/logs/{id}/stream"), Some("299"), None).await;
    assert_eq!(resumed.len(), 2);
    // Bad input and unknown instances are plain HTTP errors.
    let (status, _) = app.get(&format!("/llm/logs/{id}/stream?fromLine=-1")).await;
    assert_eq!(status, 400);
    let (status, _) = app.get(&format!("/llm/logs/{id}/stream?from=1")).await;
    assert_eq!(status, 400);
    let (status, body) = app.get("/llm/logs/42/stream").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("instance_not_found")));
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_final_event_and_answers_long_polls() {
    let mut app = TestApp::spawn(fast_sim()).await;
    let id = app.sim.with_core(|c, now| c.create_instance(12, None, now)); // never logs
    let (base, http) = (app.base.clone(), app.http.clone());
    let stream = http.get(format!("{base}/llm/logs/{id}/stream")).send().await.unwrap();
    let poll = tokio::spawn(http.get(format!("{base}/llm/logs?instanceId={id}&waitMs=30000")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    app.server.begin_stop();
    let text = tokio::time::timeout(Duration::from_secs(5), stream.text()).await.expect("the stream ends").unwrap();
    assert!(text.contains("event: shutdown"), "{text}");
    let answer = poll.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200, "the long-poll is answered, not cut");
    tokio::time::timeout(Duration::from_secs(5), app.stop()).await.expect("the server stops");
    assert!(started.elapsed() < powertail::DRAIN_TIMEOUT);
}
