//! Metrics (Prometheus text at `/metrics`) and the per-route request metrics that
//! [`crate::http::Front`] records.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder), so it
//! is installed once and every router in the process renders the same registry.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

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

/// A request's route for the metrics: its template in [`crate::http::ROUTES`] (never
/// the raw path, which would carry instance ids into label values), or `unmatched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteId {
    /// Index into `ROUTES`; `None` for no route.
    index: Option<usize>,
    method: &'static str,
}

/// Metric handles resolved once per route (a labelled `counter!` looks its key up
/// in the registry on every call; a handle is one atomic add).
struct RouteHandles {
    duration: metrics::Histogram,
    get_ok: metrics::Counter,
}

impl RouteId {
    /// The route `path` matches (as the router would: `{name}` segments match any
    /// non-empty segment).
    pub fn of(method: &axum::http::Method, path: &str) -> Self {
        let index = crate::http::ROUTES.iter().position(|(_, template)| matches_template(template, path));
        RouteId { index, method: method_label(method) }
    }

    /// The route's label value.
    pub fn label(self) -> &'static str {
        self.index.map_or("unmatched", |i| crate::http::ROUTES[i].1)
    }

    /// Counts the request and records its latency.
    pub fn record(self, status: axum::http::StatusCode, latency: std::time::Duration) {
        static HANDLES: OnceLock<Vec<RouteHandles>> = OnceLock::new();
        let handles = HANDLES.get_or_init(|| {
            let labels = crate::http::ROUTES.iter().map(|(_, t)| *t).chain(["unmatched"]);
            labels
                .map(|route| RouteHandles {
                    duration: metrics::histogram!(HTTP_DURATION, "route" => route),
                    get_ok: metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => "GET", "status" => "200"),
                })
                .collect()
        });
        let h = &handles[self.index.unwrap_or(crate::http::ROUTES.len())];
        h.duration.record(latency.as_secs_f64());
        if status == axum::http::StatusCode::OK && self.method == "GET" {
            h.get_ok.increment(1);
        } else {
            let (route, method, status) = (self.label(), self.method, status_label(status));
            metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status).increment(1);
        }
    }
}

/// Whether `path` is an instance of the route `template`, segment by segment.
fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b || (a.starts_with('{') && !b.is_empty()) => {}
            _ => return false,
        }
    }
}

/// A counter handle resolved once (see [`RouteHandles`]); for the unlabelled counters
/// of the read path.
pub fn cached_counter(cell: &'static OnceLock<metrics::Counter>, name: &'static str) -> &'static metrics::Counter {
    cell.get_or_init(|| metrics::counter!(name))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn requests_are_labelled_by_route_template() {
        let label = |m: &Method, p: &str| RouteId::of(m, p).label();
        assert_eq!(label(&Method::GET, "/llm/logs"), "/llm/logs");
        assert_eq!(label(&Method::GET, "/llm/logs/677182124851200064/raw"), "/llm/logs/{instanceId}/raw");
        assert_eq!(label(&Method::GET, "/llm/logs/5/stream"), "/llm/logs/{instanceId}/stream");
        assert_eq!(label(&Method::POST, "/llm/jobs/vllm-start/run"), "/llm/jobs/{jobId}/run");
        assert_eq!(label(&Method::GET, "/"), "/");
        assert_eq!(label(&Method::GET, "/llm/logs/"), "unmatched");
        assert_eq!(label(&Method::GET, "/llm/logs//raw"), "unmatched");
        assert_eq!(label(&Method::GET, "/llm/logs/5/raw/x"), "unmatched");
        assert_eq!(label(&Method::GET, "/nope"), "unmatched");
    }
}
