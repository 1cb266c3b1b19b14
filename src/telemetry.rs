//! Metrics (Prometheus text at `/metrics`) and the HTTP metrics middleware.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder), so it
//! is installed once and every router in the process renders the same registry.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HTTP requests served, by route, method and status.
pub const HTTP_REQUESTS: &str = "powertail_http_requests_total";
/// HTTP request latency, by route.
pub const HTTP_DURATION: &str = "powertail_http_request_duration_seconds";
/// PowerJob requests, by endpoint and outcome.
pub const UPSTREAM_REQUESTS: &str = "powertail_upstream_requests_total";
/// PowerJob request latency, by endpoint.
pub const UPSTREAM_DURATION: &str = "powertail_upstream_request_duration_seconds";
/// Refreshes of one instance, by outcome (`ok`, `error`).
pub const REFRESHES: &str = "powertail_refreshes_total";
/// Reads that shared a refresh (waited for one in flight, or found it fresh).
pub const REFRESHES_COALESCED: &str = "powertail_refreshes_coalesced_total";
/// Reads of an instance already cached / not cached.
pub const CACHE_HITS: &str = "powertail_cache_hits_total";
/// See [`CACHE_HITS`].
pub const CACHE_MISSES: &str = "powertail_cache_misses_total";
/// Instances evicted from the cache.
pub const CACHE_EVICTIONS: &str = "powertail_cache_evictions_total";
/// Instances followed (cached) now.
pub const INSTANCES_FOLLOWED: &str = "powertail_instances_followed";
/// Bytes of log lines cached now (the weigher's view).
pub const CACHE_BYTES: &str = "powertail_cache_bytes";
/// Server-Sent Events streams waiting for lines now.
pub const SSE_CLIENTS: &str = "powertail_sse_clients";
/// Long-poll requests waiting now.
pub const LONG_POLL_WAITING: &str = "powertail_long_poll_waiting";

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// The process-wide Prometheus recorder.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder =
            PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS).expect("static, non-empty buckets").build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples are buffered until drained: drain them even when nobody
        // scrapes /metrics, so memory stays bounded.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        });
        handle
    })
}

/// Counts and times a request (run by the router's outermost middleware) by its route template (never by raw
/// path, which would carry instance ids into label values). Labels are static strings:
/// no allocation on the hot path.
pub async fn track<F, Fut>(req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| route_label(p.as_str()));
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next(req).await;
    let status = status_label(resp.status());
    metrics::histogram!(HTTP_DURATION, "route" => route).record(start.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
    resp
}

/// The `'static` copy of a route template (from [`crate::http::ROUTES`], with axum's
/// `{instance_id}`-style names mapped to the documented ones).
fn route_label(matched: &str) -> &'static str {
    crate::http::ROUTES.iter().map(|(_, p)| *p).find(|p| same_template(p, matched)).unwrap_or("other")
}

fn same_template(documented: &str, matched: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (documented.split('/').collect(), matched.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y || (x.starts_with('{') && y.starts_with('{')))
}

fn status_label(status: axum::http::StatusCode) -> metrics::SharedString {
    match status.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        400 => "400".into(),
        404 => "404".into(),
        other => other.to_string().into(),
    }
}

fn method_label(m: &axum::http::Method) -> &'static str {
    match *m {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}
