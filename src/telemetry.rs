//! Metrics (Prometheus text at `/metrics`), the per-route request metrics that the
//! HTTP front door records, and the process's own log output ([`init_logging`]).
//!
//! A leaf module: it imports nothing of powertail; the HTTP layer hands it its route
//! table.
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
/// WebSocket streams open now.
pub const WS_CLIENTS: &str = "powertail_ws_clients";
/// WebSockets closed by the server, by `reason` (`end`, `shutdown`, `epoch_mismatch`,
/// `slow`: a client that did not read, `auth`: no or a refused token, `refused`: an
/// error of the first read).
pub const WS_CLOSES: &str = "powertail_ws_closes_total";
/// Long-poll requests waiting now.
pub const LONG_POLL_WAITING: &str = "powertail_long_poll_waiting";
/// Webhook delivery tries, by `event` and `outcome` (`delivered`, `retried`, `rejected`,
/// `gave_up`, `abandoned`).
pub const WEBHOOK_DELIVERIES: &str = "powertail_webhook_deliveries_total";
/// Failed commands to the shared store (cluster mode), by `op` (`connect`, `tick`,
/// `read`, `append`, `commit`, `renew`, `rotate`, `claim`, `ping`, `subscribe`, `sync`)
/// and `kind` (`unavailable`, `oom`, `unconfirmed`, `rolled_back`, `protocol`).
pub const STORE_ERRORS: &str = "powertail_store_errors_total";
/// Reads of lines from the shared store (one per sync that found new lines).
pub const STORE_READS: &str = "powertail_store_reads_total";
/// Appends to the shared store that succeeded.
pub const STORE_APPENDS: &str = "powertail_store_appends_total";
/// Lease changes of this replica, by `change` (`acquired`, `lost`, and `fenced` or
/// `conflict` when an append was refused: another replica holds the lease, or wrote).
pub const STORE_LEASES: &str = "powertail_store_leases_total";
/// Pushed lines (issue 19), by `outcome`: `accepted` (taken in: served, or dropped as a
/// copy of a line PowerJob's log brought first), `late` (the log was complete),
/// `duplicate` (a batch seen before).
pub const PUSH_LINES: &str = "powertail_push_lines_total";

/// Log targets capped at `info` whatever the filter says: the WebSocket library traces
/// every message it receives, and a browser's first message holds its API token.
const CAPPED_TARGETS: [&str; 2] = ["tungstenite=info", "tokio_tungstenite=info"];

/// Sets up powertail's own log output on stderr: `RUST_LOG` when set (and valid), else
/// `level` (`server.log_level`) as the filter, with [`CAPPED_TARGETS`]; one JSON object per line when `json`
/// (`timestamp`, `level`, `target`, `message` and the event's fields at the top level,
/// the enclosing spans under `span`/`spans`), else text. Colours (ANSI escapes) only
/// when stderr is a terminal, so files, pipes and journald get plain text.
///
/// # Errors
/// When a global subscriber is already installed.
pub fn init_logging(json: bool, level: &str) -> Result<(), tracing_subscriber::util::TryInitError> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::EnvFilter;

    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let (filter, bad_env) = match from_env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (EnvFilter::new(level), Some(e)),
        None => (EnvFilter::new(level), None),
    };
    let filter = CAPPED_TARGETS.iter().fold(filter, |f, d| f.add_directive(d.parse().expect("a valid directive")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().flatten_event(true).finish().try_init()?;
    } else {
        builder.finish().try_init()?;
    }
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, "RUST_LOG is not a valid filter; using server.log_level `{level}`");
    }
    Ok(())
}

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

/// A route of the router: (method in lower case, path template with `{name}` segments).
pub type Route = (&'static str, &'static str);

/// Request metrics by route, for the routes the router serves (the HTTP layer passes
/// its route table in: telemetry knows nothing of the router).
///
/// Metric handles are resolved once per route (a labelled `counter!` looks its key up
/// in the registry on every call; a handle is one atomic add). Only series that can
/// happen are created up front: the latency histogram of every route and the `200`
/// counter of each `GET` route; everything else appears when it first happens.
pub struct RouteMetrics {
    routes: &'static [Route],
    /// One per route, then one for `unmatched`.
    handles: Vec<RouteHandles>,
}

struct RouteHandles {
    duration: metrics::Histogram,
    /// `GET 200`, for `GET` routes.
    get_ok: Option<metrics::Counter>,
}

/// A request's route for the metrics: its template in the route table (never the raw
/// path, which would carry instance ids into label values), or `unmatched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteId {
    /// Index into the route table; `None` for no route.
    index: Option<usize>,
    method: &'static str,
}

impl RouteMetrics {
    /// Metrics for the routes of `routes`.
    pub fn new(routes: &'static [Route]) -> Self {
        let handles = routes
            .iter()
            .map(|&(method, template)| RouteHandles {
                duration: metrics::histogram!(HTTP_DURATION, "route" => template),
                get_ok: method.eq_ignore_ascii_case("get").then(
                    || metrics::counter!(HTTP_REQUESTS, "route" => template, "method" => "GET", "status" => "200"),
                ),
            })
            .chain([RouteHandles {
                duration: metrics::histogram!(HTTP_DURATION, "route" => "unmatched"),
                get_ok: None,
            }])
            .collect();
        RouteMetrics { routes, handles }
    }

    /// The route `path` matches (as the router would: `{name}` segments match any
    /// non-empty segment). A path served under several methods counts under one route.
    pub fn route(&self, method: &axum::http::Method, path: &str) -> RouteId {
        let index = self.routes.iter().position(|(_, template)| matches_template(template, path));
        RouteId { index, method: method_label(method) }
    }

    /// The route's label value.
    pub fn label(&self, route: RouteId) -> &'static str {
        route.index.map_or("unmatched", |i| self.routes[i].1)
    }

    /// Counts the request and records its latency.
    pub fn record(&self, route: RouteId, status: axum::http::StatusCode, latency: std::time::Duration) {
        let h = &self.handles[route.index.unwrap_or(self.routes.len())];
        h.duration.record(latency.as_secs_f64());
        match &h.get_ok {
            Some(ok) if status == axum::http::StatusCode::OK && route.method == "GET" => ok.increment(1),
            _ => {
                let (label, method, status) = (self.label(route), route.method, status_label(status));
                metrics::counter!(HTTP_REQUESTS, "route" => label, "method" => method, "status" => status).increment(1);
            }
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

    const ROUTES: &[Route] = &[
        ("get", "/"),
        ("get", "/llm/logs"),
        ("get", "/llm/logs/{instanceId}/raw"),
        ("get", "/llm/logs/{instanceId}/stream"),
        ("post", "/llm/jobs/{jobId}/run"),
    ];

    #[test]
    fn requests_are_labelled_by_route_template() {
        let table = RouteMetrics::new(ROUTES);
        let label = |m: &Method, p: &str| table.label(table.route(m, p));
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
