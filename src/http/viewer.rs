//! `GET /`: the log viewer page, `GET /powertail.js` and `GET /favicon.ico` (embedded in
//! the binary), and `GET /llm/jobs`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::auth::{Authorized, ReadLogs, RunJobs};
use super::error::ApiError;
use super::state::AppState;

/// The viewer: one self-contained HTML file, no CDN, no build step.
const VIEWER_HTML: &str = include_str!("../../assets/viewer.html");

/// The browser module (`follow`, `stream`, `followStartup`), also used by the viewer.
const POWERTAIL_JS: &str = include_str!("../../assets/powertail.js");

/// The viewer's icon, an SVG (browsers ask for `/favicon.ico` whatever its type).
const FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");

/// The API description (OpenAPI 3.1), checked against the router by tests.
pub const OPENAPI_JSON: &str = include_str!("../../assets/openapi.json");

/// `GET /openapi.json`
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// `GET /powertail.js`: an ES module for platform frontends (no build step).
pub async fn module() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        POWERTAIL_JS,
    )
}

/// `GET /favicon.ico`: the icon of the viewer's tab (an SVG), so that browsers get no 404.
pub async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        FAVICON_SVG,
    )
}

/// `GET /`
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                 img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        VIEWER_HTML,
    )
}

/// `GET /llm/jobs`: the configured jobs, and whether this caller may run them.
pub async fn list_jobs(
    State(state): State<AppState>,
    _: Authorized<ReadLogs>,
    can_run: Result<Authorized<RunJobs>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let can_run = can_run.is_ok();
    let jobs: Vec<Value> = state
        .jobs
        .list()
        .into_iter()
        .map(|(name, id, description)| json!({ "name": name, "jobId": id.to_string(), "description": description }))
        .collect();
    Ok(Json(json!({ "jobs": jobs, "canRun": can_run })))
}
