//! Transport: each request goes to the configured servers in turn, from the last one
//! that answered; a transport failure (refused, reset, timeout, HTTP 5xx) moves on to
//! the next. Every attempt is counted and timed by endpoint and outcome.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::wire::Envelope;
use super::{PowerJobClient, UpstreamError, AUTH_APP, LOG_TARGET};

/// Which servers a request may go to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// Every configured server in turn, from the last one that answered.
    Failover,
    /// Only the server at this index (the start-up check, a download from the server
    /// that holds the log). Its caller reports a failure, with context.
    Only(usize),
}

/// An HTTP answer, not yet read as PowerJob's.
pub(super) struct Raw {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl PowerJobClient {
    /// The envelope of an answer; an answer in PowerJob's protocol (even a refusal)
    /// counts as PowerJob answering, for readiness.
    pub(super) fn parse<T: DeserializeOwned>(&self, raw: &Raw, what: &str) -> Result<Envelope<T>, UpstreamError> {
        if raw.status != StatusCode::OK {
            return Err(UpstreamError::Protocol(format!("{what} answered HTTP {}", raw.status)));
        }
        let env = serde_json::from_slice(&raw.body).map_err(|e| {
            let head: String = String::from_utf8_lossy(&raw.body[..raw.body.len().min(60)]).chars().collect();
            UpstreamError::Protocol(format!("{what} answered a body that is not PowerJob JSON ({e}): {head:?}"))
        })?;
        self.inner.last_ok_ms.store(self.inner.clock.now_ms(), Ordering::Relaxed);
        Ok(env)
    }

    /// Sends a request to the first address that answers, starting with the last good one.
    pub(super) async fn send(
        &self,
        endpoint: &'static str,
        build: impl Fn(&Url) -> RequestBuilder,
    ) -> Result<Raw, UpstreamError> {
        self.send_to(Target::Failover, endpoint, build).await
    }

    /// Sends a request to `target`. Each attempt is counted in
    /// `powertail_upstream_requests_total` by endpoint and outcome; a 404 from
    /// `/openApi/authApp` is the 4.x answer to the version probe, counted as `probe`
    /// rather than `http_error`.
    pub(super) async fn send_to(
        &self,
        target: Target,
        endpoint: &'static str,
        build: impl Fn(&Url) -> RequestBuilder,
    ) -> Result<Raw, UpstreamError> {
        self.send_indexed_to(target, endpoint, build).await.map(|(_, raw)| raw)
    }

    /// As [`PowerJobClient::send_to`], also returning the index of the address that
    /// answered. (An answer is not yet PowerJob's: `parse` records when one was.)
    pub(super) async fn send_indexed_to(
        &self,
        target: Target,
        endpoint: &'static str,
        build: impl Fn(&Url) -> RequestBuilder,
    ) -> Result<(usize, Raw), UpstreamError> {
        let n = self.inner.addresses.len();
        let (first, tries) = match target {
            Target::Failover => (self.inner.preferred.load(Ordering::Relaxed) % n.max(1), n),
            Target::Only(i) => (i, 1),
        };
        let mut last_error = UpstreamError::Unreachable("no PowerJob address configured".into());
        for k in 0..tries {
            let i = (first + k) % n;
            let base = &self.inner.addresses[i];
            let start = std::time::Instant::now();
            let result = self.send_once(build(base)).await;
            let outcome = match &result {
                Ok(raw) if raw.status.is_success() => "ok",
                Ok(raw) if endpoint == AUTH_APP && raw.status == StatusCode::NOT_FOUND => "probe",
                Ok(_) => "http_error",
                Err(UpstreamError::Timeout(_)) => "timeout",
                Err(UpstreamError::Unreachable(_)) => "unreachable",
                Err(_) => "bad_answer",
            };
            metrics::counter!(crate::telemetry::UPSTREAM_REQUESTS, "endpoint" => endpoint, "outcome" => outcome)
                .increment(1);
            metrics::histogram!(crate::telemetry::UPSTREAM_DURATION, "endpoint" => endpoint)
                .record(start.elapsed().as_secs_f64());
            match result {
                Ok(raw) => {
                    if matches!(target, Target::Failover) {
                        self.inner.preferred.store(i, Ordering::Relaxed);
                    }
                    return Ok((i, raw));
                }
                Err(e) => {
                    // A single-server request's caller reports its failure (with context).
                    if matches!(target, Target::Failover) {
                        tracing::warn!(target: LOG_TARGET, server = %base, error = %e, "PowerJob server failed");
                    }
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn send_once(&self, req: RequestBuilder) -> Result<Raw, UpstreamError> {
        let timeout = self.inner.timeout;
        let resp = req.send().await.map_err(|e| UpstreamError::from_reqwest(e, timeout))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| UpstreamError::from_reqwest(e, timeout))?;
        if status.is_server_error() {
            // Official clients treat any non-200 as a transport failure; 5xx also covers
            // a proxy in front of a dead server. Try the next address.
            return Err(UpstreamError::Protocol(format!("HTTP {status}")));
        }
        Ok(Raw { status, headers, body })
    }
}

/// `path` under the server's base URL.
pub(super) fn join(base: &Url, path: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
}
