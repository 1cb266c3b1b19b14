//! Every 4xx of the contract, and the 5xx answers when PowerJob is unreachable and
//! nothing is cached, driven through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use powertail::config::Config;
use serde_json::Value;
use tower::ServiceExt;

fn router() -> axum::Router {
    // Port 1 on loopback refuses connections at once.
    let config = Config::from_toml(
        r#"
        [powerjob]
        addresses = ["http://127.0.0.1:1"]
        app_name = "app"
        app_password = "pw"
        request_timeout_ms = 1000
        "#,
    )
    .unwrap();
    powertail::http::router(powertail::build(&config, "127.0.0.1:8080".parse().unwrap()).unwrap())
}

async fn call(method: &str, uri: &str) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let resp = router().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{uri}: not JSON: {body:?}"));
    (status, retry_after, json)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {v}"))
}

#[tokio::test]
async fn bad_queries_are_400_with_the_json_error_shape() {
    let cases = [
        "/llm/logs",
        "/llm/logs?instanceId=",
        "/llm/logs?instanceId=abc",
        "/llm/logs?instanceId=-1",
        "/llm/logs?instanceId=1.5",
        "/llm/logs?instanceId=99999999999999999999",
        "/llm/logs?instanceId=1&fromLine=-1",
        "/llm/logs?instanceId=1&fromLine=abc",
        "/llm/logs?instanceId=1&limit=0",
        "/llm/logs?instanceId=1&limit=10001",
        "/llm/logs?instanceId=1&limit=x",
        "/llm/logs?instanceId=1&waitMs=30001",
        "/llm/logs?instanceId=1&waitMs=-5",
        "/llm/logs?instanceId=1&fromline=5",
        "/llm/logs?instanceId=1&fromLine=1&fromLine=2",
        "/llm/logs?instanceId=1&instanceId=2",
        "/llm/logs/abc/raw",
        "/llm/logs/0/raw",
        "/llm/logs/12/raw?fromLine=3",
    ];
    for uri in cases {
        let (status, _, body) = call("GET", uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(code(&body), "bad_request", "{uri}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let (status, _, body) = call("GET", "/nope").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _, body) = call("POST", "/llm/logs?instanceId=1").await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    let (status, _, body) = call("DELETE", "/healthz").await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn unreachable_powerjob_with_nothing_cached_is_503_with_retry_after() {
    let (status, retry_after, body) = call("GET", "/llm/logs?instanceId=677182124851200064").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "upstream_unavailable");
    assert!(retry_after.is_some());
    assert!(!body.to_string().contains("pw\""), "no secret in errors: {body}");
    let (status, _, body) = call("GET", "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _, _) = call("GET", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
