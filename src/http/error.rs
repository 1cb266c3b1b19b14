//! `ApiError`: every error the API answers, rendered as
//! `{"error": {"code": "<snake_case>", "message": "<human text>"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::upstream::UpstreamError;

/// Seconds a client should wait before retrying when PowerJob is unreachable.
const RETRY_AFTER_SECS: &str = "5";

/// An API error; one variant per answer of the contract.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    BadRequest(String),
    /// No such route.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A PowerJob failure (or an instance it does not know).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl ApiError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Upstream(e) => match e {
                UpstreamError::InstanceNotFound(_) => StatusCode::NOT_FOUND,
                UpstreamError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
                UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Protocol(_)
                | UpstreamError::Refused { .. }
                | UpstreamError::Auth(_) => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Upstream(e) => match e {
                UpstreamError::InstanceNotFound(_) => "instance_not_found",
                UpstreamError::Unreachable(_) => "upstream_unavailable",
                UpstreamError::Timeout(_) => "upstream_timeout",
                UpstreamError::Protocol(_)
                | UpstreamError::Refused { .. }
                | UpstreamError::Auth(_) => "upstream_error",
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body =
            serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}
