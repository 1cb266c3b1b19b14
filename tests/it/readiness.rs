//! `/readyz`: one shared, briefly reused probe whatever the number of callers, and the
//! same error code as every other route for the same upstream failure.

use crate::common;

use common::{fast_sim, TestApp};
use powertail::sim::{Fault, FaultKind, SimConfig, Version};
use serde_json::{json, Value};

const INSTANCE: &str = "677182124851200064";

/// The adapter in front of a 5.x simulator (app authentication by `/openApi/authApp`),
/// `/readyz` probing unless PowerJob answered within `ready_window_ms`.
async fn app(ready_window_ms: u64, f: impl FnOnce(&mut SimConfig)) -> TestApp {
    let mut cfg = SimConfig { version: Version::V5, openapi_auth: true, ..fast_sim() };
    f(&mut cfg);
    TestApp::spawn_config(cfg, "", |c| {
        c.server.ready_window_ms = ready_window_ms;
    })
    .await
}

/// `n` concurrent `GET /readyz` → their (status, body).
async fn readyz_burst(app: &TestApp, n: usize) -> Vec<(u16, Value)> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let (http, url) = (app.http.clone(), format!("{}/readyz", app.base));
            tokio::spawn(async move {
                let resp = http.get(url).send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn concurrent_readyz_calls_share_one_probe() {
    // Window 0: every call is "after the window"; only the shared probe may go upstream.
    let app = app(0, |_| {}).await;
    let (status, body) = app.get(&format!("/llm/instances/{INSTANCE}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("instance_not_found")), "{body}");
    let auths = app.sim.requests("/openApi/authApp");
    assert_eq!(auths, 1);
    for (status, body) in readyz_burst(&app, 50).await {
        assert_eq!((status, body), (200, json!({"status": "ready", "archive": "off"})));
    }
    assert_eq!(app.sim.requests("/openApi/authApp"), auths + 1, "50 concurrent calls, one probe");
    // Reused: another burst right after makes no request.
    readyz_burst(&app, 50).await;
    assert_eq!(app.sim.requests("/openApi/authApp"), auths + 1);

    // Within the window, no probe at all.
    let app = self::app(30_000, |_| {}).await;
    app.get(&format!("/llm/instances/{INSTANCE}")).await;
    let auths = app.sim.requests("/openApi/authApp");
    readyz_burst(&app, 50).await;
    assert_eq!(app.sim.requests("/openApi/authApp"), auths);
}

#[tokio::test]
async fn concurrent_readyz_calls_share_one_failing_probe() {
    let app = app(0, |_| {}).await;
    app.sim.inject(Fault { path: None, kind: FaultKind::Down, times: 1_000 });
    for (status, body) in readyz_burst(&app, 50).await {
        assert_eq!(
            (status, body["status"].as_str(), body["error"]["code"].as_str()),
            (503, Some("not_ready"), Some("upstream_unavailable")),
            "{body}"
        );
    }
    assert_eq!(app.sim.requests("/openApi/authApp"), 1, "50 concurrent calls, one probe");
}

#[tokio::test]
async fn a_server_that_is_not_powerjob_is_upstream_error_everywhere() {
    for kind in [FaultKind::HtmlError, FaultKind::NotJson] {
        let app = app(30_000, |_| {}).await;
        app.sim.inject(Fault { path: None, kind: kind.clone(), times: 1_000 });
        // Read first: an answer that is not PowerJob's protocol must not count as
        // PowerJob answering (which would make /readyz ready for 30 s).
        let (status, body) = app.get(&format!("/llm/logs?instanceId={INSTANCE}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_error")), "{kind:?}: {body}");
        let message = body["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with("PowerJob answered outside its protocol: "), "{message}");
        let (status, body) = app.get("/readyz").await;
        assert_eq!(
            (status, body["status"].as_str(), body["error"]["code"].as_str()),
            (503, Some("not_ready"), Some("upstream_error")),
            "{kind:?}: {body}"
        );
        assert_eq!(body["error"]["message"], message.as_str(), "{kind:?}");
    }
}
