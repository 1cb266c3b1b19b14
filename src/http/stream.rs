//! `GET /llm/logs/{instanceId}/stream`: the log as Server-Sent Events.
//!
//! One `lines` event per batch (`id:` = the next line number, so a reconnecting
//! `EventSource` resumes with `Last-Event-ID`), an `end` event once the log is complete,
//! `error` events while PowerJob fails (the stream goes on), a `shutdown` event when the
//! server stops, and comment heartbeats that keep proxies from closing an idle stream.
//! A `startup` event (the body of `GET /llm/instances/{id}/startup`) follows the `lines`
//! event (or precedes the `end` event) whenever the start-up state changed.
//!
//! Every `lines` and `end` event carries the `epoch` of the sequence. A request with
//! `epoch` (in the URL: an `EventSource` reconnect cannot set headers) that names
//! another sequence gets the JSON 410 `epoch_mismatch` before the stream starts; a stream
//! whose sequence is rebuilt while it runs (the log evicted and read again) sends an
//! `error` event `epoch_mismatch` with the new `epoch` and ends.
//!
//! A reconnect (`Last-Event-ID`) that finds the log complete and nothing past its id
//! gets 204 No Content: the SSE spec's way to tell an `EventSource` to stop, so a page
//! that does not close on `end` does not reconnect for ever.
//!
//! The events are built once, transport-neutral ([`Streamer`] yields [`StreamEvent`]s),
//! and written as SSE here and as WebSocket messages by [`super::ws`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::{Authorized, ReadLogs};
use super::error::ApiError;
use super::extract::{digits, strict_query, ApiPath};
use super::logs::{parse_epoch, parse_instance_id, past_end, push_json};
use super::startup::startup_json;
use super::state::AppState;
use crate::service::{LogPage, LogService, ReadRequest, ServiceError, StartupKey};
use crate::telemetry;

/// Lines in one event at most.
const BATCH_LINES: usize = 1_000;
/// How long one wait for new lines lasts before the stream loops.
const WAIT: Duration = Duration::from_secs(20);
/// Heartbeat comment interval.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Pause after an upstream error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(2);

/// `GET /llm/logs/{instanceId}/stream?fromLine=N&epoch=E` (or `Last-Event-ID: N`).
pub async fn stream_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_instance_id(&id)?;
    let [from_line, epoch] = strict_query(raw.as_deref(), ["fromLine", "epoch"])?;
    let mut from = from_line.map(|v| parse_line(&v, "fromLine")).transpose()?;
    let epoch = epoch.map(|v| parse_epoch(&v)).transpose()?;
    let reconnect = headers.get("last-event-id").is_some();
    if let Some(v) = headers.get("last-event-id") {
        let v = v.to_str().map_err(|_| ApiError::BadRequest("`Last-Event-ID` is not text".into()))?;
        from = Some(parse_line(v, "Last-Event-ID")?);
    }
    let from = from.unwrap_or(0);
    // Only a valid request waits for a slot: bad input is a 400 even under load.
    let permit = state.wait_permit()?;
    let stream = Streamer::start(&state, permit, id, from, epoch, telemetry::SSE_CLIENTS).await?;
    if reconnect && stream.first.as_ref().is_some_and(|first| first.complete && from >= first.total_lines) {
        // An `EventSource` reconnecting after `end`: 204 makes it stop for good.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let events = futures::stream::unfold(stream, |mut s| async move {
        let event = s.next_event().await?;
        Some((Ok::<_, Infallible>(event.into_sse()), s))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT)).into_response())
}

pub(super) fn parse_line(v: &str, name: &str) -> Result<u64, ApiError> {
    digits(v).ok_or_else(|| ApiError::BadRequest(format!("`{name}` must be a non-negative integer, got {v:?}")))
}

/// One event of a log stream, whatever carries it: SSE ([`StreamEvent::into_sse`]) or a
/// WebSocket ([`super::ws`]). `Lines` and `End` carry their SSE `id` (the next line).
pub(super) enum StreamEvent {
    /// New lines: the `lines` event's data.
    Lines {
        /// The next line (the SSE `id`).
        next: u64,
        /// `{"epoch","fromLine","nextLine","lines","totalLines","status","stale","attempt","attempts"}`,
        /// and `push` once anything was pushed.
        data: Value,
    },
    /// The start-up state changed: the body of `GET /llm/instances/{id}/startup`.
    Startup(Value),
    /// `{"code","message"}` (PowerJob failing; the stream goes on), or with `epoch` (the
    /// sequence was rebuilt; the stream ends).
    Error(Value),
    /// The log is complete: the `end` event's data; the stream ends.
    End {
        /// The next line (the SSE `id`).
        next: u64,
        /// `{"epoch","nextLine","totalLines","status","upstreamLost","truncated","attempt","attempts"}`.
        data: Value,
    },
    /// The server is shutting down; the stream ends.
    Shutdown,
}

impl StreamEvent {
    /// The SSE event.
    fn into_sse(self) -> Event {
        match self {
            StreamEvent::Lines { next, data } => {
                Event::default().event("lines").id(next.to_string()).json_data(data).unwrap_or_default()
            }
            StreamEvent::Startup(data) => Event::default().event("startup").json_data(data).unwrap_or_default(),
            StreamEvent::Error(data) => Event::default().event("error").json_data(data).unwrap_or_default(),
            StreamEvent::End { next, data } => {
                Event::default().event("end").id(next.to_string()).json_data(data).unwrap_or_default()
            }
            StreamEvent::Shutdown => Event::default().event("shutdown").data("the server is shutting down; reconnect"),
        }
    }
}

/// The events of one stream of one log, from a cursor on (shared by SSE and WebSocket).
pub(super) struct Streamer {
    logs: LogService,
    id: i64,
    /// The sequence this stream serves (that of its first read).
    epoch: Arc<str>,
    from: u64,
    /// The first read (made before the stream starts, so that its errors are HTTP
    /// answers), or a page to look at again.
    first: Option<LogPage>,
    done: bool,
    /// The start-up state last sent ([`crate::service::Startup::key`]).
    startup_key: Option<StartupKey>,
    /// A `startup` event to send next.
    pending: Option<StreamEvent>,
    _open: GaugeGuard,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Streamer {
    /// A stream of instance `id` from line `from` (in the sequence `epoch` when given),
    /// holding `permit` (a waiting slot), after its first read, whose errors (unknown
    /// instance, PowerJob down with nothing cached, a stale `epoch`) are answered before
    /// the stream starts. `gauge` counts it while it lives.
    ///
    /// # Errors
    /// The first read's.
    pub(super) async fn start(
        state: &AppState,
        permit: tokio::sync::OwnedSemaphorePermit,
        id: i64,
        from: u64,
        epoch: Option<String>,
        gauge: &'static str,
    ) -> Result<Self, ApiError> {
        let req =
            ReadRequest { id, from_line: from, limit: BATCH_LINES, wait: Duration::ZERO, epoch: epoch.as_deref() };
        let first = state.logs.read(req).await?;
        Ok(Streamer {
            logs: state.logs.clone(),
            id,
            epoch: first.epoch.clone(),
            from,
            first: Some(first),
            done: false,
            startup_key: None,
            pending: None,
            _open: GaugeGuard::new(gauge),
            _permit: permit,
        })
    }

    /// The next event, `None` after the last one (`end`, `shutdown`, an `epoch_mismatch`).
    pub(super) async fn next_event(&mut self) -> Option<StreamEvent> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        if self.done {
            return None;
        }
        loop {
            let page = match self.first.take() {
                Some(p) => Ok(p),
                None => {
                    let epoch = Some(&*self.epoch);
                    let req = ReadRequest { id: self.id, from_line: self.from, limit: BATCH_LINES, wait: WAIT, epoch };
                    self.logs.read(req).await
                }
            };
            let page = match page {
                Ok(mut p) => {
                    // Past the end of a complete log: the end is where it ends.
                    if let Some(end) = past_end(p.complete, p.from_line, p.total_lines) {
                        p.from_line = end;
                        self.from = end;
                    }
                    p
                }
                Err(ServiceError::EpochMismatch(epoch)) => {
                    // Rebuilt under this stream: its ids no longer hold. The end.
                    self.done = true;
                    let err = ApiError::EpochMismatch(epoch.clone());
                    return Some(StreamEvent::Error(
                        json!({"code": err.code(), "message": err.to_string(), "epoch": epoch}),
                    ));
                }
                Err(e) => {
                    let err = ApiError::from(e);
                    let event = StreamEvent::Error(json!({"code": err.code(), "message": err.to_string()}));
                    tokio::time::sleep(ERROR_PAUSE).await;
                    return Some(event);
                }
            };
            if !page.lines.is_empty() {
                let next = page.next_line();
                let mut data = json!({
                    "epoch": page.epoch, "fromLine": page.from_line, "nextLine": next, "lines": page.lines,
                    "totalLines": page.total_lines, "status": page.status.name(), "stale": page.stale,
                    "attempt": page.attempt, "attempts": page.attempts,
                });
                if let Some(push) = &page.push {
                    data["push"] = push_json(push);
                }
                self.from = next;
                if page.complete {
                    // The end event follows on the next poll of the stream.
                    self.first = Some(LogPage { lines: Vec::new(), from_line: next, ..page });
                }
                self.pending = self.startup_event();
                return Some(StreamEvent::Lines { next, data });
            }
            if let Some(event) = self.startup_event() {
                // The page is looked at again (its `end`) on the next poll.
                self.first = Some(page);
                return Some(event);
            }
            if page.complete {
                self.done = true;
                // With an id too (the next line), so that a page that keeps its
                // EventSource open reconnects with `Last-Event-ID` (and gets 204) even
                // after a log without lines.
                let next = page.next_line();
                let data = json!({
                    "epoch": page.epoch, "nextLine": next, "totalLines": page.total_lines, "status": page.status.name(),
                    "upstreamLost": page.upstream_lost, "truncated": page.truncated,
                    "attempt": page.attempt, "attempts": page.attempts,
                });
                return Some(StreamEvent::End { next, data });
            }
            if self.logs.shutdown_token().is_cancelled() {
                self.done = true;
                return Some(StreamEvent::Shutdown);
            }
        }
    }

    /// A `startup` event when the start-up state changed since the last one sent.
    fn startup_event(&mut self) -> Option<StreamEvent> {
        let startup = self.logs.startup_held(self.id)?;
        let key = startup.key();
        if self.startup_key.as_ref() == Some(&key) || self.startup_key.is_none() && key == (1, 0, false, None, false) {
            return None;
        }
        self.startup_key = Some(key);
        Some(StreamEvent::Startup(startup_json(&startup)))
    }
}

/// Counts open streams in a gauge (dropped with the stream).
struct GaugeGuard(&'static str);

impl GaugeGuard {
    fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        GaugeGuard(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}
