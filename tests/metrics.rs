//! `/metrics` counts and times every request by route template (never by raw path) and
//! status, through the real server.

mod common;

use common::{fast_sim, TestApp};

/// The value of the sample named exactly `series` (name and labels), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
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
