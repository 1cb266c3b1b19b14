//! `GET /llm/logs/{instanceId}/ws`: the log stream of [`super::stream`] over a WebSocket.
//!
//! The same events as the SSE stream, built by the same [`Streamer`], each sent as one
//! JSON text message with a `type`: `lines` (the SSE `lines` data), `startup`, `error`,
//! `end` (then close 1000) and `shutdown` (then close 1001). A client resumes after a
//! dropped connection with `?fromLine=<its last nextLine>&epoch=<its epoch>`.
//!
//! - **Before the upgrade** (plain JSON errors, as SSE): bad input 400, an `Origin` that
//!   is neither this server's nor in `server.cors_allowed_origins` 403, an `Authorization`
//!   header refused 401/403, no slot left 503, not an upgrade 426; and, when the caller is
//!   known (a valid header, or no tokens configured), the first read's errors (404, 410
//!   `epoch_mismatch`, 503).
//! - **Token for browsers** (a WebSocket cannot carry headers): with tokens configured and
//!   no `Authorization` header, the first message must be `{"type":"auth","token":"…"}`
//!   within [`AUTH_WAIT`], else an `error` message and close 1008. The token is never in
//!   the URL (an unknown query parameter is a 400) and never logged.
//! - **A client that does not read**: every message must be taken by the connection within
//!   [`SEND_TIMEOUT`] (the kernel's buffers full means the client has not read for a
//!   while); else close 1013 (try again later), and the client resumes from the `nextLine`
//!   of the last message it got. The stream reads no further lines meanwhile: memory stays
//!   bounded by one message.
//! - A ping every [`PING`]; an error after the upgrade (the first read of a client that
//!   authenticated by message, or the log rebuilt under the stream) is an `error` message,
//!   then close `4000 + the HTTP status` (4404, 4410, 4503 …).

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use futures::StreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{strict_query, ApiPath};
use super::logs::{parse_epoch, parse_instance_id};
use super::state::AppState;
use super::stream::{parse_line, StreamEvent, Streamer};
use crate::config::Scope;
use crate::telemetry;

/// How long a client without an `Authorization` header has to send its `auth` message.
pub const AUTH_WAIT: Duration = Duration::from_secs(5);
/// How long one message may take to be written to the connection before the client is
/// deemed not to read (and the socket is closed with 1013).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive ping interval.
pub const PING: Duration = Duration::from_secs(15);
/// Largest message a client may send (only `auth` messages mean anything).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// Close codes (RFC 6455 §7.4; 4000-4999: this API's).
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TRY_AGAIN_LATER: u16 = 1013;
const APP_BASE: u16 = 4000;

/// `GET /llm/logs/{instanceId}/ws?fromLine=N&epoch=E`
pub async fn ws_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    RawQuery(raw): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = parse_instance_id(&id)?;
    let [from_line, epoch] = strict_query(raw.as_deref(), ["fromLine", "epoch"])?;
    let from = from_line.map(|v| parse_line(&v, "fromLine")).transpose()?.unwrap_or(0);
    let epoch = epoch.map(|v| parse_epoch(&v)).transpose()?;
    check_origin(&headers, &state.limits.cors_allowed_origins)?;
    let authorization = headers.get(header::AUTHORIZATION);
    // Without a header, a browser authenticates by its first message (when tokens are
    // configured at all: otherwise reads are open).
    let by_message = authorization.is_none() && state.auth.requires_token();
    if !by_message {
        state.auth.check(authorization, Scope::LogsRead)?;
    }
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    let permit = state.wait_permit()?;
    let upgrade = upgrade.max_message_size(MAX_CLIENT_MESSAGE).max_frame_size(MAX_CLIENT_MESSAGE);
    if by_message {
        return Ok(upgrade.on_upgrade(move |mut socket| async move {
            if authenticate(&mut socket, &state).await {
                match Streamer::start(&state, permit, id, from, epoch, telemetry::WS_CLIENTS).await {
                    Ok(streamer) => serve(socket, &state, streamer).await,
                    Err(e) => refuse(socket, &e, APP_BASE + e.status().as_u16()).await,
                }
            }
        }));
    }
    let streamer = Streamer::start(&state, permit, id, from, epoch, telemetry::WS_CLIENTS).await?;
    Ok(upgrade.on_upgrade(move |socket| async move { serve(socket, &state, streamer).await }))
}

/// Refuses a cross-origin upgrade as CORS would refuse the request: a browser's `Origin`
/// must be this server's (its `Host`, any scheme: TLS may end at a proxy) or listed in
/// `server.cors_allowed_origins`. Clients that are no browser send no `Origin`.
///
/// # Errors
/// 403 naming the origin.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin.split_once("://").map(|(_, a)| a);
    let same = matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
    if same || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "origin {origin:?} may not open this WebSocket (not this server's; list it in server.cors_allowed_origins)"
    )))
}

/// Waits for the `{"type":"auth","token":"…"}` message and checks its token. On a
/// refusal sends an `error` message and closes with 1008; `false` then, or when the
/// client went away.
async fn authenticate(socket: &mut WebSocket, state: &AppState) -> bool {
    let token = match tokio::time::timeout(AUTH_WAIT, auth_message(socket)).await {
        Err(_) => None,
        Ok(Ok(token)) => token,
        Ok(Err(())) => return false,
    };
    let refusal = match token {
        None => ApiError::BadRequest(format!(
            "send {{\"type\":\"auth\",\"token\":\"…\"}} as the first message within {} s \
             (or the header Authorization: Bearer <token>)",
            AUTH_WAIT.as_secs()
        )),
        Some(token) => {
            let value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()));
            let checked = value.map_err(|_| ApiError::Unauthorized).and_then(|mut v| {
                v.set_sensitive(true);
                state.auth.check(Some(&v), Scope::LogsRead)
            });
            match checked {
                Ok(_) => return true,
                Err(e) => e,
            }
        }
    };
    closed("auth");
    let code = refusal.code();
    let message = json!({"type": "error", "code": code, "message": refusal.to_string()});
    close_with(socket, Some(message), POLICY, code).await;
    false
}

/// The token of the client's first text message if it is an `auth` message (`None`
/// when it is something else); `Err` when the client went away first.
async fn auth_message(socket: &mut WebSocket) -> Result<Option<SecretString>, ()> {
    #[derive(serde::Deserialize)]
    struct Auth {
        #[serde(rename = "type")]
        kind: String,
        token: SecretString,
    }
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                let auth = serde_json::from_str::<Auth>(text.as_str()).ok();
                return Ok(auth.filter(|a| a.kind == "auth").map(|a| a.token));
            }
            Some(Ok(Message::Binary(_))) => return Ok(None),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(()),
        }
    }
}

/// Sends `streamer`'s events until the last one, a client that went away or one that
/// does not read.
async fn serve(mut socket: WebSocket, state: &AppState, streamer: Streamer) {
    let mut events = Box::pin(futures::stream::unfold(streamer, |mut s| async move {
        let event = s.next_event().await?;
        Some((event, s))
    }));
    let shutdown = state.logs.shutdown_token().clone();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    loop {
        // Every arm is cancel-safe: the event stream keeps a read in progress across polls.
        let (message, close) = tokio::select! {
            event = events.next() => match event {
                Some(event) => message_of(event),
                // Not reached: the last event closes.
                None => (None, Some((NORMAL, "end"))),
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) => {
                    // The library queued the answering close: send it.
                    let _ = tokio::time::timeout(SEND_TIMEOUT, futures::SinkExt::flush(&mut socket)).await;
                    return;
                }
                Some(Err(_)) | None => return,
                // Pongs, and anything else a client sends, mean nothing here.
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => (Some(Message::Ping(Default::default())), None),
            () = shutdown.cancelled() => message_of(StreamEvent::Shutdown),
        };
        if let Some(message) = message {
            match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!("a WebSocket client read nothing for {SEND_TIMEOUT:?}; closing it (1013)");
                    closed("slow");
                    let reason = "too slow: resume from the nextLine of the last message received";
                    close_with(&mut socket, None, TRY_AGAIN_LATER, reason).await;
                    return;
                }
            }
        }
        if let Some((code, reason)) = close {
            closed(reason);
            close_with(&mut socket, None, code, reason).await;
            return;
        }
    }
}

/// The message of an event, and the close that follows it when it is the last.
fn message_of(event: StreamEvent) -> (Option<Message>, Option<(u16, &'static str)>) {
    let (kind, data, close) = match event {
        StreamEvent::Lines { data, .. } => ("lines", data, None),
        StreamEvent::Startup(data) => ("startup", data, None),
        StreamEvent::Error(data) => {
            // With an epoch: the log was rebuilt under the stream, which ends.
            let close = data.get("epoch").is_some().then_some((APP_BASE + 410, "epoch_mismatch"));
            ("error", data, close)
        }
        StreamEvent::End { data, .. } => ("end", data, Some((NORMAL, "end"))),
        StreamEvent::Shutdown => ("shutdown", json!({}), Some((GOING_AWAY, "shutdown"))),
    };
    (Some(Message::Text(typed(kind, data).to_string().into())), close)
}

/// `data` (an object) with `"type": kind`.
fn typed(kind: &str, data: Value) -> Value {
    let mut object = match data {
        Value::Object(map) => map,
        other => [("data".to_owned(), other)].into_iter().collect(),
    };
    object.insert("type".into(), Value::String(kind.into()));
    Value::Object(object)
}

/// Counts a closed WebSocket by `reason`.
fn closed(reason: &'static str) {
    metrics::counter!(telemetry::WS_CLOSES, "reason" => reason).increment(1);
}

/// Refuses a client after the upgrade: an `error` message (with the current `epoch` for
/// a 410), then close `code`.
async fn refuse(mut socket: WebSocket, e: &ApiError, code: u16) {
    let mut message = json!({"type": "error", "code": e.code(), "message": e.to_string()});
    if let ApiError::EpochMismatch(epoch) = e {
        message["epoch"] = Value::String(epoch.to_string());
    }
    closed("refused");
    close_with(&mut socket, Some(message), code, e.code()).await;
}

/// Sends `message` if any, then a close frame, each within [`SEND_TIMEOUT`], and waits
/// (as long) for the client's close, so that it reads the frames before the connection
/// ends.
async fn close_with(socket: &mut WebSocket, message: Option<Value>, code: u16, reason: &str) {
    let close = async {
        if let Some(m) = message {
            socket.send(Message::Text(m.to_string().into())).await?;
        }
        let frame = CloseFrame { code, reason: reason.into() };
        socket.send(Message::Close(Some(frame))).await?;
        // The client's answering close (or the end of the connection).
        while let Some(Ok(_)) = socket.recv().await {}
        Ok::<_, axum::Error>(())
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, close).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn origins_are_checked_as_cors_would() {
        let allowed = ["https://platform.example".to_owned()];
        let ok = |h: &[(&'static str, &str)]| check_origin(&headers(h), &allowed).is_ok();
        // No browser, no origin; this server's own page, any scheme; a listed origin.
        assert!(ok(&[("host", "127.0.0.1:8080")]));
        assert!(ok(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]));
        assert!(ok(&[("host", "powertail.example"), ("origin", "https://PowerTail.example")]));
        assert!(ok(&[("host", "127.0.0.1:8080"), ("origin", "https://platform.example")]));
        // Another site, another port, an opaque origin, no Host to compare with.
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8081")]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]));
        assert!(!ok(&[("origin", "http://127.0.0.1:8080")]));
        let e = check_origin(&headers(&[("host", "a:1"), ("origin", "http://b:2")]), &[]).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (403, "forbidden"));
    }

    #[test]
    fn messages_carry_the_event_data_and_a_type() {
        let lines = StreamEvent::Lines { next: 3, data: json!({"fromLine": 1, "nextLine": 3, "lines": ["a", "b"]}) };
        let (Some(Message::Text(text)), None) = message_of(lines) else { panic!("a text message, no close") };
        let got: Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(got, json!({"type": "lines", "fromLine": 1, "nextLine": 3, "lines": ["a", "b"]}));
        let closes = |e| message_of(e).1.map(|c| c.0);
        assert_eq!(closes(StreamEvent::End { next: 3, data: json!({"nextLine": 3}) }), Some(1000));
        assert_eq!(closes(StreamEvent::Shutdown), Some(1001));
        assert_eq!(closes(StreamEvent::Error(json!({"code": "upstream_unavailable"}))), None);
        assert_eq!(closes(StreamEvent::Error(json!({"code": "epoch_mismatch", "epoch": "e"}))), Some(4410));
        let (Some(Message::Text(text)), _) = message_of(StreamEvent::Shutdown) else { panic!() };
        assert_eq!(text.as_str(), r#"{"type":"shutdown"}"#);
    }
}
