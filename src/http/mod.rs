//! The HTTP API: routes, the JSON error shape, thin handlers over [`LogService`].

pub mod error;
pub mod logs;
pub mod ops;

use axum::extract::OriginalUri;
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::service::LogService;

/// The whole API.
pub fn router(logs: LogService) -> Router {
    Router::new()
        .route("/llm/logs", get(logs::get_logs))
        .route("/llm/logs/{instance_id}/raw", get(logs::get_raw))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(logs)
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            let body =
                serde_json::json!({"error": {"code": "internal", "message": "internal error"}});
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(body),
            )
                .into_response()
        }))
}

use axum::response::IntoResponse;

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
