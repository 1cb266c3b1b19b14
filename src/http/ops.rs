//! Operations endpoints: `/healthz`, `/readyz`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::service::LogService;
use crate::upstream::now_ms;

/// PowerJob counts as ready if it answered this recently.
const READY_WINDOW_MS: i64 = 30_000;
/// The readiness probe gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /healthz`: the process serves.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: PowerJob answered recently (or answers a probe now).
pub async fn readyz(State(logs): State<LogService>) -> (StatusCode, Json<Value>) {
    let client = logs.client();
    if now_ms() - client.last_ok_ms() <= READY_WINDOW_MS {
        return (StatusCode::OK, Json(json!({ "status": "ready" })));
    }
    match tokio::time::timeout(PROBE_TIMEOUT, client.probe()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "not_ready", "error": { "code": "upstream_unavailable", "message": e.to_string() } }),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "not_ready", "error": { "code": "upstream_timeout", "message": "PowerJob did not answer the readiness probe in time" } }),
            ),
        ),
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(logs): State<LogService>) -> impl axum::response::IntoResponse {
    logs.record_gauges();
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::prometheus().render(),
    )
}
