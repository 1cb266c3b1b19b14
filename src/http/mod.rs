//! The HTTP API: routes, the JSON error shape, thin handlers over [`LogService`].

pub mod error;
pub mod extract;
pub mod jobs;
pub mod logs;
pub mod ops;
pub mod stream;
pub mod viewer;

use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::routing::{get, post};
use std::sync::Arc;

use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::app::AppState;

/// Longest a request may take, streams excepted: above the longest long-poll (30 s) and
/// a slow refresh; past it the answer is 504.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(50);

/// Largest total size of a request's headers (names and values).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Largest request body accepted (run requests are small JSON objects).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of [`router`] (method, path template), for the OpenAPI check.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/openapi.json"),
    ("get", "/llm/logs"),
    ("get", "/llm/logs/{instanceId}/raw"),
    ("get", "/llm/logs/{instanceId}/stream"),
    ("get", "/llm/jobs"),
    ("post", "/llm/jobs/{jobId}/run"),
    ("get", "/llm/instances/{instanceId}"),
    ("post", "/llm/instances/{instanceId}/stop"),
    ("post", "/llm/instances/{instanceId}/cancel"),
    ("post", "/llm/instances/{instanceId}/retry"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The whole API.
pub fn router(state: AppState) -> Router {
    // One semaphore for the whole router: requests beyond it are shed in `front`.
    let permits = Arc::new(tokio::sync::Semaphore::new(state.limits.max_concurrent_requests));
    // No CORS layer at all unless origins are configured (it costs a clone per request).
    let cors = (!state.limits.cors_allowed_origins.is_empty()).then(|| cors(&state.limits.cors_allowed_origins));
    Router::new()
        .route("/llm/logs", get(logs::get_logs))
        .route("/llm/logs/{instance_id}/raw", get(logs::get_raw))
        .route("/", get(viewer::index))
        .route("/openapi.json", get(viewer::openapi))
        .route("/llm/jobs", get(viewer::list_jobs))
        .route("/llm/jobs/{job_id}/run", post(jobs::run_job))
        .route("/llm/instances/{instance_id}", get(jobs::get_instance))
        .route("/llm/instances/{instance_id}/stop", post(jobs::stop))
        .route("/llm/instances/{instance_id}/cancel", post(jobs::cancel))
        .route("/llm/instances/{instance_id}/retry", post(jobs::retry))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/llm/logs/{instance_id}/stream", get(stream::stream_logs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower::util::option_layer(cors))
        .layer(axum::middleware::from_fn_with_state(permits, front))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            let body = serde_json::json!({"error": {"code": "internal", "message": "internal error"}});
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
        }))
}

use axum::response::IntoResponse;

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// CORS for the configured origins only (none by default: same-origin use only).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderValue, Method};
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::HeaderName::from_static("last-event-id")])
        .max_age(std::time::Duration::from_secs(600))
}

/// The outermost middleware (one layer, one clone per request): counts and times the
/// request; refuses headers over [`MAX_HEADER_BYTES`] (431); sheds requests beyond
/// `server.max_concurrent_requests` (503); and bounds every request but event streams
/// by [`REQUEST_TIMEOUT`] (504).
async fn front(
    axum::extract::State(permits): axum::extract::State<Arc<tokio::sync::Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let streams = req.uri().path().ends_with("/stream");
    crate::telemetry::track(req, |req| async move {
        if size > MAX_HEADER_BYTES {
            return ApiError::HeadersTooLarge.into_response();
        }
        let Ok(_permit) = permits.try_acquire() else {
            let message = "too many requests at once; try again shortly".into();
            return ApiError::Overloaded { message, retry_after_secs: 1 }.into_response();
        };
        if streams {
            // Event streams last as long as the log grows.
            return next.run(req).await;
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => ApiError::Upstream(crate::upstream::UpstreamError::Timeout(REQUEST_TIMEOUT)).into_response(),
        }
    })
    .await
}
