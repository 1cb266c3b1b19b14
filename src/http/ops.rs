//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::state::AppState;
use crate::service::LogService;

/// `GET /healthz`: the process serves.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: PowerJob answered recently (`server.ready_window_ms`), or answers a
/// probe now. The probe is shared by concurrent callers and reused for a few seconds
/// (see [`crate::upstream::PowerJobClient::ready`]): this route needs no token, so it
/// must not let anyone drive requests to PowerJob. In cluster mode the shared store
/// (Redis) must answer a PING too, and the answer says so under `store`. `archive`
/// says whether the archive answers (`ok`, `unavailable`, `off`); an archive that is
/// down does not make the replica unready (live logs are served without it, and
/// complete logs stay held until it is back).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let window = Duration::from_millis(state.limits.ready_window_ms);
    let (upstream, store, archive) =
        tokio::join!(state.logs.client().ready(window), state.logs.store_ready(), state.logs.archive_ready());
    let store_json = store.as_ref().map(|r| match r {
        Ok(()) => json!({ "ok": true, "node": state.logs.node() }),
        Err(e) => json!({ "ok": false, "node": state.logs.node(), "error": e.to_string() }),
    });
    let error = match (upstream, store) {
        (Err(e), _) => {
            let e = ApiError::Upstream(e);
            Some((e.code(), e.to_string()))
        }
        // (The store's own words: not a read's "this replica holds nothing of the instance".)
        (Ok(()), Some(Err(e))) => Some(("store_unavailable", e.to_string())),
        (Ok(()), _) => None,
    };
    let mut body = match &error {
        None => json!({ "status": "ready" }),
        // The same code as any other route answering this failure; the status is 503.
        Some((code, message)) => json!({ "status": "not_ready", "error": { "code": code, "message": message } }),
    };
    if let Some(s) = store_json {
        body["store"] = s;
    }
    body["archive"] = json!(archive);
    if error.is_none() {
        return Json(body).into_response();
    }
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(logs): State<LogService>) -> impl IntoResponse {
    logs.record_gauges();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::prometheus().render())
}
