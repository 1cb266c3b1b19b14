//! Issue 21, item 9: the edges of the cursor contract. Past the end of a complete log a
//! read answers `complete` at once with the true `totalLines` and `nextLine =
//! totalLines` (never a cursor that waits for ever); an `epoch` that is not an epoch's
//! shape is a 400, one of that shape that is not the current one a 410.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{fast_sim, TestApp};
use powertail::sim::{JobScript, SimJob};
use serde_json::{json, Value};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(40);

/// The simulator with one job of `n` lines over `ms`, and the adapter.
async fn app(n: usize, ms: i64) -> TestApp {
    let text: String = (0..n).map(|k| format!("step {k} of {n}\n")).collect();
    let mut cfg = fast_sim();
    let script = JobScript::from_text(&text, ms, 5, "done");
    cfg.jobs = vec![SimJob { id: 12, name: "job".into(), job_params: String::new(), script: Some(Arc::new(script)) }];
    TestApp::spawn(cfg).await
}

fn run(app: &TestApp) -> i64 {
    app.sim.with_core(|core, now| core.run_job(12, None, 0, now)).expect("job 12 exists")
}

/// The first named event of a stream other than `startup`, within 20 s.
async fn first_event(app: &TestApp, path: &str) -> (String, Value) {
    let mut resp = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await.unwrap().unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block = buf[..end].to_owned();
            buf.drain(..end + 2);
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(|v| v.trim().to_owned());
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            if let Some(name) = name.filter(|n| n != "startup") {
                return (name, serde_json::from_str(&data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn past_the_end_of_a_complete_log_answers_complete_with_the_true_total() {
    let app = app(93, 400).await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines.len(), 93);
    let epoch = follow.last["epoch"].as_str().unwrap().to_owned();
    let end = json!({
        "instanceId": id.to_string(), "epoch": epoch, "fromLine": 93, "nextLine": 93, "lines": [],
        "totalLines": 93, "status": "SUCCEED", "complete": true, "stale": false,
        "attempt": 1, "attempts": [{"attempt": 1, "fromLine": 0}],
    });
    // At the end, and far past it (a corrupted cursor), also with a long-poll: at once.
    for from in [93, 94, 999_999] {
        let t = Instant::now();
        let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&fromLine={from}&waitMs=5000")).await;
        assert!(t.elapsed() < Duration::from_secs(3), "fromLine={from} waited {:?}", t.elapsed());
        assert_eq!((status, &body), (200, &end), "fromLine={from}");
    }
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&fromLine=999999&epoch={epoch}")).await;
    assert_eq!((status, &body), (200, &end));
    // The stream ends at once, at the true end.
    let (event, data) = first_event(&app, &format!("/llm/logs/{id}/stream?fromLine=999999")).await;
    assert_eq!(event, "end");
    assert_eq!((&data["nextLine"], &data["totalLines"]), (&json!(93), &json!(93)), "{data}");
}

#[tokio::test]
async fn past_the_end_of_a_growing_log_waits_for_lines() {
    // (A replica behind another may be asked for lines it does not hold yet.)
    let app = app(40, 20_000).await;
    let id = run(&app);
    let t = Instant::now();
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&fromLine=500&waitMs=600")).await;
    assert!(t.elapsed() >= Duration::from_millis(500), "answered after {:?}: {body}", t.elapsed());
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["fromLine"], &body["nextLine"], &body["complete"]), (&json!(500), &json!(500), &json!(false)));
    assert_eq!(body["lines"], json!([]));
}

#[tokio::test]
async fn an_epoch_not_of_an_epochs_shape_is_a_400_and_an_unknown_one_a_410() {
    let app = app(10, 300).await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    let epoch = follow.last["epoch"].as_str().unwrap().to_owned();
    for bogus in ["bogus", "0123456789abcdef", "0123456789abcdef-", "0123456789abcdeg-1", "0123456789ABCDEF-1", "x-1"] {
        let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&epoch={bogus}")).await;
        assert_eq!(status, 400, "{bogus}: {body}");
        assert_eq!(
            body,
            json!({"error": {"code": "bad_request", "message": format!(
                "`epoch` must be the `epoch` of an earlier answer (16 hex digits, a dash and a number, like `9f2c4e81a07b3d56-12`), got {bogus:?}"
            )}}),
            "{bogus}"
        );
        let (status, body) = app.get(&format!("/llm/logs/{id}/stream?epoch={bogus}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bogus}: {body}");
    }
    // The shape of an epoch, not this one: the sequence is not the one served.
    let other = if epoch.ends_with("-1") { epoch.replace("-1", "-2") } else { format!("{}-1", &epoch[..16]) };
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&epoch={other}")).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "epoch_mismatch");
    assert_eq!(body["epoch"], json!(epoch));
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&epoch={epoch}")).await;
    assert_eq!((status, body["epoch"].as_str()), (200, Some(epoch.as_str())));
}
