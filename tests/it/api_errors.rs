//! Every 4xx of the contract, and the 5xx answers when PowerJob is unreachable and
//! nothing is cached, driven through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use powertail::config::Config;
use serde_json::Value;
use tower::ServiceExt;

fn router() -> powertail::http::Front {
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
    powertail::http::app(powertail::build(&config, "127.0.0.1:8080".parse().unwrap()).unwrap())
}

async fn call(method: &str, uri: &str) -> Result<(StatusCode, Option<String>, Value), String> {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let resp = router().oneshot(req).await.unwrap();
    let status = resp.status();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).map_err(|_| String::from_utf8_lossy(&body).into_owned())?;
    Ok((status, retry_after, json))
}

async fn call_json(method: &str, uri: &str) -> (StatusCode, Option<String>, Value) {
    call(method, uri).await.unwrap_or_else(|text| panic!("{uri}: not JSON: {text}"))
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
        // Segments that are not UTF-8 once percent-decoded.
        "/llm/logs/%FF/raw",
        "/llm/logs/%C0/stream",
        "/llm/instances/%FF",
    ];
    let posts = ["/llm/jobs/%C0/run", "/llm/instances/%FF/stop"];
    for (method, uri) in cases.iter().map(|u| ("GET", *u)).chain(posts.iter().map(|u| ("POST", *u))) {
        let (status, _, body) = call_json(method, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(code(&body), "bad_request", "{uri}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn unknown_query_parameters_name_what_is_accepted() {
    let (status, _, body) = call_json("GET", "/llm/logs/12/raw?fromLine=3&_=1").await;
    let message = "unknown query parameter `fromLine`; this endpoint accepts only `_` (a cache-buster)";
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, serde_json::json!({"error": {"code": "bad_request", "message": message}}))
    );
    let (status, _, body) = call_json("GET", "/llm/logs?instanceId=1&fromline=3").await;
    let message =
        "unknown query parameter `fromline`; this endpoint accepts `instanceId`, `fromLine`, `limit`, `waitMs`, `epoch`, `_`";
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, serde_json::json!({"error": {"code": "bad_request", "message": message}}))
    );
    let (status, _, body) = call_json("GET", "/llm/logs/12/stream?limit=3").await;
    let message = "unknown query parameter `limit`; this endpoint accepts `fromLine`, `epoch`, `_`";
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, serde_json::json!({"error": {"code": "bad_request", "message": message}}))
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let (status, _, body) = call_json("GET", "/nope").await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _, body) = call_json("POST", "/llm/logs?instanceId=1").await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    let (status, _, body) = call_json("DELETE", "/healthz").await;
    assert_eq!((status, code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn unreachable_powerjob_with_nothing_cached_is_503_with_retry_after() {
    let (status, retry_after, body) = call_json("GET", "/llm/logs?instanceId=677182124851200064").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "upstream_unavailable");
    assert!(retry_after.is_some());
    assert!(!body.to_string().contains("pw\""), "no secret in errors: {body}");
    let (status, retry_after, body) = call_json("GET", "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!((body["status"].as_str(), code(&body)), (Some("not_ready"), "upstream_unavailable"), "as /llm/logs");
    assert!(retry_after.is_some());
    let (status, _, _) = call_json("GET", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes() {
    let spec: Value = serde_json::from_str(powertail::http::viewer::OPENAPI_JSON).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    documented.sort();
    let mut routes: Vec<(String, String)> =
        powertail::http::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    routes.sort();
    assert_eq!(documented, routes);
    // Every listed route exists in the router (a concrete path is not a 404 `not_found`).
    for (method, path) in powertail::http::ROUTES {
        let uri = path.replace("{instanceId}", "x").replace("{jobId}", "x").replace("{name}", "x");
        let (status, _, body) =
            call(&method.to_uppercase(), &uri).await.unwrap_or_else(|text| (StatusCode::OK, None, Value::String(text)));
        // (The history routes answer 404 `not_found` while the archive is off, saying so.)
        let archive_off = body["error"]["message"].as_str().is_some_and(|m| m.contains("the archive is off"));
        assert!(
            !(status == StatusCode::NOT_FOUND && body["error"]["code"] == "not_found") || archive_off,
            "{method} {path}: {body}"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    // What every handler can answer, and nothing it cannot.
    for (method, path) in powertail::http::ROUTES {
        let op = &spec["paths"][path][method];
        let codes: Vec<&str> = op["responses"].as_object().unwrap().keys().map(String::as_str).collect();
        // The front door sheds any request (503) and refuses oversized headers (431).
        assert!(codes.contains(&"503") && codes.contains(&"431"), "{method} {path}: {codes:?}");
        assert!(!codes.contains(&"415"), "{method} {path}: a non-JSON body is a 400");
        let runs = *path == "/llm/jobs/{jobId}/run";
        assert_eq!(codes.contains(&"429"), runs, "{method} {path}: only runs are rate-limited");
        if path.starts_with("/llm/") {
            // Token-checked: optional bearer (without configured tokens no token is needed).
            assert_eq!(op["security"], serde_json::json!([{"bearer": []}, {}]), "{method} {path}");
            assert!(codes.contains(&"401") && codes.contains(&"403"), "{method} {path}: {codes:?}");
        } else {
            assert!(op.get("security").is_none(), "{method} {path}");
        }
    }
    let stream = &spec["paths"]["/llm/logs/{instanceId}/stream"]["get"]["parameters"];
    assert!(stream.as_array().unwrap().iter().any(|p| p["name"] == "Last-Event-ID" && p["in"] == "header"));
}
