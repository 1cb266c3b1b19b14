//! `ApiError`: every error the API answers, rendered as
//! `{"error": {"code": "<snake_case>", "message": "<human text>"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::upstream::UpstreamError;

/// Seconds a client should wait before retrying when PowerJob is unreachable.
const RETRY_AFTER_SECS: &str = "5";
/// …and when the shared store is (it usually comes back within a failover).
const STORE_RETRY_AFTER_SECS: &str = "2";

/// An API error; one variant per answer of the contract.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    BadRequest(String),
    /// API tokens are configured and none or a wrong one was sent.
    #[error("a valid API token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The token lacks the right, or the job is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No job of that name is configured.
    #[error("no job named `{0}` is configured (use a numeric PowerJob job id or a [jobs.<name>] entry)")]
    UnknownJobName(String),
    /// PowerJob does not know the job (given by id, or by a configured name).
    #[error("PowerJob has no job {job_id}{}", name.as_ref().map(|n| format!(" (configured as `{n}`)")).unwrap_or_default())]
    UnknownJob {
        /// The PowerJob job id.
        job_id: i64,
        /// The configured name it was reached by, if any.
        name: Option<String>,
    },
    /// The instance is not in a state that allows the operation.
    #[error("{0}")]
    Conflict(String),
    /// The request's headers are larger than allowed.
    #[error("request headers too large (at most 16 KiB)")]
    HeadersTooLarge,
    /// The request body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A limit of this server was hit; try again after `retry_after_secs`.
    #[error("{message}")]
    Overloaded {
        /// What limit.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The caller ran too many jobs in the last minute.
    #[error("{message}")]
    RateLimited {
        /// What limit.
        message: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// No such route.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// A WebSocket route asked without the upgrade handshake (426).
    #[error("this endpoint is a WebSocket: send the upgrade handshake (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13)")]
    UpgradeRequired,
    /// The route exists, the method does not.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A PowerJob failure (or an instance it does not know).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The client's `epoch` names a sequence that is no longer served (410); holds the
    /// current epoch, answered beside the error.
    #[error("the log was rebuilt since this epoch: start over from line 0 with epoch `{0}`")]
    EpochMismatch(std::sync::Arc<str>),
    /// Cluster mode: the shared store (Redis) failed and this replica holds nothing of
    /// the instance, or not the lines asked for (503).
    #[error("{0}; this replica holds nothing of the instance, or not the lines asked for, yet")]
    StoreUnavailable(String),
    /// Cluster mode: the shared store holds this instance id for another PowerJob (409).
    #[error("{0}")]
    InstanceConflict(String),
    /// The archive (`[archive]`) cannot be reached or could not answer (503).
    #[error("{0}; try again later")]
    ArchiveUnavailable(String),
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        match e {
            crate::service::ServiceError::Upstream(e) => ApiError::Upstream(e),
            e @ (crate::service::ServiceError::TooManyInstances(_) | crate::service::ServiceError::TooManyBytes(_)) => {
                ApiError::Overloaded { message: e.to_string(), retry_after_secs: 5 }
            }
            crate::service::ServiceError::EpochMismatch(epoch) => ApiError::EpochMismatch(epoch),
            crate::service::ServiceError::Store(e) => ApiError::StoreUnavailable(e.to_string()),
            crate::service::ServiceError::InstanceConflict(m) => ApiError::InstanceConflict(m),
        }
    }
}

impl ApiError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownJobName(_) | ApiError::UnknownJob { .. } | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            ApiError::EpochMismatch(_) => StatusCode::GONE,
            ApiError::InstanceConflict(_) => StatusCode::CONFLICT,
            ApiError::StoreUnavailable(_) | ApiError::ArchiveUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(e) => match e {
                UpstreamError::InstanceNotFound(_) => StatusCode::NOT_FOUND,
                UpstreamError::Unreachable(_) | UpstreamError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
                UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Protocol(_) | UpstreamError::Refused { .. } | UpstreamError::Auth(_) => {
                    StatusCode::BAD_GATEWAY
                }
            },
        }
    }

    /// The machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::UnknownJobName(_) | ApiError::UnknownJob { .. } => "job_not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::UpgradeRequired => "upgrade_required",
            ApiError::EpochMismatch(_) => "epoch_mismatch",
            ApiError::InstanceConflict(_) => "instance_conflict",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::ArchiveUnavailable(_) => "archive_unavailable",
            ApiError::Upstream(e) => match e {
                UpstreamError::InstanceNotFound(_) => "instance_not_found",
                UpstreamError::Unreachable(_) | UpstreamError::NotReady(_) => "upstream_unavailable",
                UpstreamError::Timeout(_) => "upstream_timeout",
                UpstreamError::Protocol(_) | UpstreamError::Refused { .. } | UpstreamError::Auth(_) => "upstream_error",
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::Overloaded { retry_after_secs, .. } | ApiError::RateLimited { retry_after_secs, .. } => {
                Some(retry_after_secs.to_string())
            }
            ApiError::StoreUnavailable(_) => Some(STORE_RETRY_AFTER_SECS.to_owned()),
            _ => None,
        };
        let mut body = serde_json::json!({ "error": { "code": self.code(), "message": self.to_string() } });
        if let ApiError::EpochMismatch(epoch) = &self {
            body["epoch"] = serde_json::Value::String(epoch.to_string());
        }
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::UPGRADE_REQUIRED {
            resp.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        resp
    }
}
