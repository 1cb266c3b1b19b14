//! `/metrics` counts and times every request by route template (never by raw path) and
//! status, through the real server.

mod common;

use common::{fast_sim, TestApp};

/// The metrics recorder is one per process: tests that count requests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of the sample named exactly `series` (name and labels), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
    let _turn = SERIAL.lock().await;
    let app = TestApp::spawn(fast_sim()).await;
    let scrape = || async {
        let (status, body) = app.get("/metrics").await;
        assert_eq!(status, 200);
        body.as_str().expect("Prometheus text").to_owned()
    };
    let series = [
        r#"powertail_http_requests_total{route="/healthz",method="GET",status="200"}"#,
        r#"powertail_http_requests_total{route="/llm/logs",method="GET",status="400"}"#,
        r#"powertail_http_requests_total{route="/llm/logs/{instanceId}/raw",method="GET",status="400"}"#,
        r#"powertail_http_requests_total{route="/llm/logs/{instanceId}/raw",method="POST",status="405"}"#,
        r#"powertail_http_requests_total{route="unmatched",method="GET",status="404"}"#,
        r#"powertail_http_request_duration_seconds_count{route="/healthz"}"#,
    ];
    let before = scrape().await;
    let before: Vec<f64> = series.iter().map(|s| sample(&before, s)).collect();

    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.0, 200);
    }
    assert_eq!(app.get("/llm/logs?instanceId=abc").await.0, 400);
    assert_eq!(app.get("/llm/logs/677182124851200064/raw?x=1").await.0, 400);
    let post = app.http.post(format!("{}/llm/logs/5/raw", app.base)).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(app.get("/llm/logs/677182124851200064").await.0, 404);
    assert_eq!(app.get("/nope/677182124851200064").await.0, 404);

    let after = scrape().await;
    let delta: Vec<f64> = series.iter().zip(&before).map(|(s, b)| sample(&after, s) - b).collect();
    assert_eq!(delta, [3.0, 1.0, 1.0, 1.0, 2.0, 3.0], "{after}");
    // Instance ids never become label values.
    assert!(!after.contains("677182124851200064"), "{after}");
}

#[tokio::test]
async fn only_series_that_can_happen_are_exported_before_they_happen() {
    let _turn = SERIAL.lock().await;
    let app = TestApp::spawn(fast_sim()).await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (_, body) = app.get("/metrics").await;
    let metrics = body.as_str().expect("Prometheus text");
    // A GET route's 200 series exists before its first request.
    assert!(
        metrics.contains(r#"powertail_http_requests_total{route="/llm/logs",method="GET",status="200"}"#),
        "{metrics}"
    );
    // No GET series for POST-only routes, and no 200 for requests that match no route.
    for impossible in [
        r#"route="/llm/jobs/{jobId}/run",method="GET""#,
        r#"route="/llm/instances/{instanceId}/stop",method="GET""#,
        r#"route="unmatched",method="GET",status="200""#,
    ] {
        assert!(!metrics.contains(impossible), "{impossible} in {metrics}");
    }
}

#[tokio::test]
async fn the_version_probe_is_not_an_upstream_error() {
    let _turn = SERIAL.lock().await;
    // The simulator is PowerJob 4.3.x: `/openApi/authApp` answers 404, which is how the
    // client tells 4.x from 5.x.
    let app = TestApp::spawn(fast_sim()).await;
    let authapp = |outcome: &str| {
        format!(r#"powertail_upstream_requests_total{{endpoint="/openApi/authApp",outcome="{outcome}"}}"#)
    };
    let scrape = || async { app.get("/metrics").await.1.as_str().expect("Prometheus text").to_owned() };
    let before = scrape().await;
    assert_eq!(app.get("/readyz").await.0, 200, "the readiness probe authenticates");
    let after = scrape().await;
    assert!(sample(&after, &authapp("probe")) > sample(&before, &authapp("probe")), "{after}");
    assert_eq!(sample(&after, &authapp("http_error")), 0.0, "{after}");
    let assert_ok = r#"powertail_upstream_requests_total{endpoint="/openApi/assert",outcome="ok"}"#;
    assert!(sample(&after, assert_ok) > sample(&before, assert_ok), "{after}");
}
