//! The HTTP API: routes, the JSON error shape, thin handlers over [`LogService`].
//!
//! [`state`] holds what the handlers share ([`AppState`]), [`auth`] who may do what
//! (the [`auth::Authorized`] extractor), [`error`] the one error enum ([`ApiError`])
//! every lower layer's error converts into, [`extract`] the extractors whose
//! rejections are [`ApiError`]s; one file per route group for the handlers.

pub mod auth;
pub mod error;
pub mod extract;
pub mod history;
pub mod jobs;
pub mod logs;
pub mod ops;
pub mod push;
pub mod startup;
pub mod state;
pub mod stream;
pub mod viewer;
pub mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::FutureExt as _;
use tracing::Instrument as _;

pub use error::ApiError;
pub use state::AppState;

use crate::telemetry;

/// Longest a request may take, streams excepted: above the longest long-poll (30 s) and
/// a slow refresh; past it the answer is 504.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(50);

/// Largest total size of a request's headers (names and values).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Largest request body accepted (run requests are small JSON objects).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route of [`routes`] (method, path template): for the request metrics
/// ([`telemetry::RouteMetrics`]) and the OpenAPI check.
pub const ROUTES: &[telemetry::Route] = &[
    ("get", "/"),
    ("get", "/openapi.json"),
    ("get", "/powertail.js"),
    ("get", "/favicon.ico"),
    ("get", "/llm/logs"),
    ("get", "/llm/logs/{instanceId}/raw"),
    ("get", "/llm/logs/{instanceId}/stream"),
    ("get", "/llm/logs/{instanceId}/ws"),
    ("post", "/llm/logs/{instanceId}/append"),
    ("get", "/llm/jobs"),
    ("post", "/llm/jobs/{jobId}/run"),
    ("get", "/llm/jobs/{name}/runs"),
    ("get", "/llm/jobs/{name}/stats"),
    ("get", "/llm/search"),
    ("get", "/llm/instances/{instanceId}"),
    ("get", "/llm/instances/{instanceId}/startup"),
    ("post", "/llm/instances/{instanceId}/stop"),
    ("post", "/llm/instances/{instanceId}/cancel"),
    ("post", "/llm/instances/{instanceId}/retry"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The whole API: [`routes`] behind the [`Front`] door. Serve it with
/// `axum::serve(listener, axum::ServiceExt::into_make_service(app(state)))`.
pub fn app(state: AppState) -> Front {
    let max = state.limits.max_concurrent_requests;
    Front::new(routes(state), max)
}

/// The routes and their handlers. Only the CORS layer (when origins are configured)
/// and the body limit of the POST routes are layered here: each `Router::layer` costs
/// a clone per request, so everything else lives in [`Front`], once.
pub fn routes(state: AppState) -> Router {
    // No CORS layer at all unless origins are configured.
    let cors = (!state.limits.cors_allowed_origins.is_empty()).then(|| cors(&state.limits.cors_allowed_origins));
    let limited = || DefaultBodyLimit::max(MAX_BODY_BYTES);
    let router = Router::new()
        .route("/llm/logs", get(logs::get_logs))
        .route("/llm/logs/{instance_id}/raw", get(logs::get_raw))
        .route("/", get(viewer::index))
        .route("/openapi.json", get(viewer::openapi))
        .route("/powertail.js", get(viewer::module))
        .route("/favicon.ico", get(viewer::favicon))
        .route("/llm/jobs", get(viewer::list_jobs))
        .route("/llm/jobs/{job_id}/run", post(jobs::run_job).layer(limited()))
        // (One name per path segment for the router: `{job_id}` holds the job's name here.)
        .route("/llm/jobs/{job_id}/runs", get(history::runs))
        .route("/llm/jobs/{job_id}/stats", get(history::stats))
        .route("/llm/search", get(history::search))
        .route("/llm/instances/{instance_id}", get(jobs::get_instance))
        .route("/llm/instances/{instance_id}/startup", get(startup::get_startup))
        .route("/llm/instances/{instance_id}/stop", post(jobs::stop).layer(limited()))
        .route("/llm/instances/{instance_id}/cancel", post(jobs::cancel).layer(limited()))
        .route("/llm/instances/{instance_id}/retry", post(jobs::retry).layer(limited()))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/llm/logs/{instance_id}/stream", get(stream::stream_logs))
        .route("/llm/logs/{instance_id}/ws", get(ws::ws_logs));
    // Off: 404 like any unknown route.
    let router = if state.push.enabled {
        let limit = DefaultBodyLimit::max(state.push.max_body_bytes);
        router.route("/llm/logs/{instance_id}/append", post(push::append).layer(limit))
    } else {
        router
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(tower::util::option_layer(cors))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
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
        .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .max_age(std::time::Duration::from_secs(600))
}

/// The front door, around the whole router (one clone of an `Arc` per request, no
/// boxing of services): a `tracing` span per request; counts and times the request
/// by its route template; refuses headers over [`MAX_HEADER_BYTES`] (431); sheds
/// requests beyond `server.max_concurrent_requests` (503); bounds every request but
/// event streams by [`REQUEST_TIMEOUT`] (504); and answers a panicking handler with a
/// 500 in the JSON error shape.
#[derive(Clone)]
pub struct Front {
    inner: Router,
    in_flight: Arc<InFlight>,
}

impl Front {
    /// `inner` behind the front door, answering at most `max_concurrent` requests at
    /// once; requests are counted by the templates of [`ROUTES`].
    pub fn new(inner: Router, max_concurrent: usize) -> Self {
        Front { inner, in_flight: Arc::new(InFlight { now: AtomicUsize::new(0), max: max_concurrent }) }
    }
}

/// The request metrics of [`ROUTES`], resolved once for the process (the metrics
/// registry is process-wide too), so that a request clones nothing for them.
fn route_metrics() -> &'static telemetry::RouteMetrics {
    static METRICS: std::sync::OnceLock<telemetry::RouteMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| telemetry::RouteMetrics::new(ROUTES))
}

/// Requests being answered now, and the most allowed.
struct InFlight {
    now: AtomicUsize,
    max: usize,
}

/// One request counted in [`InFlight`] until dropped.
struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> Option<InFlightGuard> {
        if self.now.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.now.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlightGuard(self.clone()))
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The path only: a query may carry a token (the viewer's `/?token=…`).
        let span = tracing::debug_span!("request", method = %req.method(), path = req.uri().path());
        let metrics = route_metrics();
        let route = metrics.route(req.method(), req.uri().path());
        let start = std::time::Instant::now();
        let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        let streams = req.uri().path().ends_with("/stream");
        let guard = self.in_flight.enter();
        let mut inner = self.inner.clone();
        let answer = async move {
            if header_bytes > MAX_HEADER_BYTES {
                return ApiError::HeadersTooLarge.into_response();
            }
            let Some(_guard) = guard else {
                let message = "too many requests at once; try again shortly".into();
                return ApiError::Overloaded { message, retry_after_secs: 1 }.into_response();
            };
            // A panic while routing or in a handler must not take the connection down.
            let handled = std::panic::AssertUnwindSafe(async move {
                let Ok(resp) = inner.call(req).await;
                resp
            })
            .catch_unwind();
            let resp = if streams {
                // Event streams last as long as the log grows.
                handled.await
            } else {
                match tokio::time::timeout(REQUEST_TIMEOUT, handled).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        tracing::warn!("request not answered within {REQUEST_TIMEOUT:?}; answering 504");
                        return ApiError::Upstream(crate::upstream::UpstreamError::Timeout(REQUEST_TIMEOUT))
                            .into_response();
                    }
                }
            };
            resp.unwrap_or_else(|panic| {
                let what = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
                tracing::error!(panic = what.unwrap_or("(not a string)"), "a handler panicked");
                let body = serde_json::json!({"error": {"code": "internal", "message": "internal error"}});
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
            })
        };
        Box::pin(
            async move {
                let resp = answer.await;
                let latency = start.elapsed();
                metrics.record(route, resp.status(), latency);
                // Debug only: upstream failures are logged where they happen (once per
                // refresh, not once per waiting client), panics above, and a shed or
                // refused request must not turn into a log storm.
                tracing::debug!(status = resp.status().as_u16(), ?latency, "request answered");
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    async fn call(front: &Front, path: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();
        let resp = front.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_json_500_and_frees_its_slot() {
        let inner = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
            .route("/ok", get(|| async { axum::Json(serde_json::json!({"ok": true})) }));
        // One request at a time: a slot leaked by the panic would shed the next one.
        let front = Front::new(inner, 1);
        for _ in 0..3 {
            let (status, body) = call(&front, "/boom").await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body, serde_json::json!({"error": {"code": "internal", "message": "internal error"}}));
        }
        assert_eq!(call(&front, "/ok").await, (StatusCode::OK, serde_json::json!({"ok": true})));
    }
}
