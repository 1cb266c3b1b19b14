//! The WebSocket stream (`GET /llm/logs/{instanceId}/ws`) over real sockets: a run's lines
//! exactly and in order, a resume after a reconnect, `end` then close 1000, the same
//! events as the SSE stream, errors before the upgrade (400, 404, 410, 426), tokens by
//! header and by first message (401, 403, close 1008), origins refused as CORS would,
//! a client that stops reading closed with 1013 and resuming without loss, `shutdown`
//! then close 1001, and the real binary at trace level never logging a token.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use powertail::config::{Scope, TokenConfig};
use powertail::sim::Simulator;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{self, delivered_instance, fast_sim, metric, steps, wait_until, Deadline, TestApp};

/// How long a test waits for what it expects.
const DEADLINE: Duration = Duration::from_secs(40);
const READER: &str = "ws-reader-token-0123456789";
const RUNNER: &str = "ws-runner-token-0123456789";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http://", "ws://", 1))
}

fn request(base: &str, path: &str, headers: &[(&'static str, &str)]) -> tungstenite::handshake::client::Request {
    let mut req = ws_url(base, path).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    req
}

/// Opens a WebSocket, which must be accepted.
async fn open(base: &str, path: &str, headers: &[(&'static str, &str)]) -> Socket {
    match tokio_tungstenite::connect_async(request(base, path, headers)).await {
        Ok((socket, resp)) => {
            assert_eq!(resp.status(), 101);
            socket
        }
        Err(e) => panic!("{path}: {}", refusal_text(e)),
    }
}

fn refusal_text(e: tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(resp) => {
            format!("HTTP {}: {}", resp.status(), String::from_utf8_lossy(resp.body().as_deref().unwrap_or(b"")))
        }
        e => e.to_string(),
    }
}

/// The HTTP answer refusing an upgrade: (status, JSON body).
async fn refused(base: &str, path: &str, headers: &[(&'static str, &str)]) -> (u16, Value) {
    match tokio_tungstenite::connect_async(request(base, path, headers)).await {
        Ok(_) => panic!("{path}: upgraded, expected a refusal"),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("{path}: {e}"),
    }
}

/// What a socket brought: JSON messages, then how it was closed (`None`: no close frame).
#[derive(Debug, Default)]
struct Got {
    messages: Vec<Value>,
    close: Option<(u16, String)>,
}

impl Got {
    /// The lines of the `lines` messages, checking that each starts where the last ended
    /// (from `from`).
    fn lines(&self, from: u64) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.messages.iter().filter(|m| m["type"] == "lines") {
            assert_eq!(m["fromLine"].as_u64().unwrap(), from + out.len() as u64, "{m}");
            let batch: Vec<String> = serde_json::from_value(m["lines"].clone()).unwrap();
            assert_eq!(m["nextLine"].as_u64().unwrap(), m["fromLine"].as_u64().unwrap() + batch.len() as u64);
            out.extend(batch);
        }
        out
    }

    fn types(&self) -> Vec<&str> {
        self.messages.iter().map(|m| m["type"].as_str().unwrap()).collect()
    }

    fn close_code(&self) -> Option<u16> {
        self.close.as_ref().map(|c| c.0)
    }
}

/// Reads until the server closes (or `lines` messages were read, when given).
async fn read(socket: &mut Socket, lines: Option<usize>) -> Got {
    let deadline = Deadline::after(DEADLINE);
    let mut got = Got::default();
    loop {
        let next = tokio::time::timeout(deadline.left(), socket.next()).await;
        let Ok(next) = next else { panic!("the socket did not close in time: {got:?}") };
        match next {
            Some(Ok(Message::Text(text))) => {
                got.messages.push(serde_json::from_str(text.as_str()).unwrap());
                if lines.is_some_and(|n| got.types().iter().filter(|t| **t == "lines").count() >= n) {
                    return got;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                got.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                // The close handshake: the library answers; read it to the end.
                while let Ok(Some(Ok(_))) = tokio::time::timeout(deadline.left(), socket.next()).await {}
                return got;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return got,
        }
    }
}

#[tokio::test]
async fn a_websocket_follows_a_run_to_its_end_and_resumes_exactly() {
    let app = TestApp::spawn(steps(300).over(2_000).sim(12)).await;
    let id = app.run_job(12);
    let path = format!("/llm/logs/{id}/ws");

    // Two batches, then the connection dropped.
    let mut socket = open(&app.base, &path, &[]).await;
    let first = read(&mut socket, Some(2)).await;
    // A client that closes gets the server's answering close.
    let frame = tungstenite::protocol::CloseFrame { code: 1000.into(), reason: "bye".into() };
    socket.close(Some(frame)).await.unwrap();
    assert_eq!(read(&mut socket, None).await.close_code(), Some(1000));
    let mut lines = first.lines(0);
    assert!(!lines.is_empty());
    let last = first.messages.iter().rfind(|m| m["type"] == "lines").unwrap();
    let (next, epoch) = (last["nextLine"].as_u64().unwrap(), last["epoch"].as_str().unwrap().to_owned());
    assert_eq!(next, lines.len() as u64);
    // The same fields as the SSE `lines` event.
    let mut keys: Vec<&str> = last.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let want =
        ["attempt", "attempts", "epoch", "fromLine", "lines", "nextLine", "stale", "status", "totalLines", "type"];
    assert_eq!(keys, want);

    // Resumed where it stopped, in the same sequence, to the end: close 1000 after `end`.
    let mut socket = open(&app.base, &format!("{path}?fromLine={next}&epoch={epoch}"), &[]).await;
    let rest = read(&mut socket, None).await;
    lines.extend(rest.lines(next));
    assert_eq!(rest.close_code(), Some(1000), "{rest:?}");
    let end = rest.messages.last().unwrap();
    assert_eq!((end["type"].as_str(), end["status"].as_str()), (Some("end"), Some("SUCCEED")), "{end}");
    assert_eq!(end["totalLines"].as_u64(), Some(lines.len() as u64));
    assert_eq!(lines, app.sim.with_core(|c, _| c.final_lines(id)));

    // A complete log: its lines from `fromLine`, then `end`; past its end only `end`.
    let mut socket = open(&app.base, &format!("{path}?fromLine=295"), &[]).await;
    let tail = read(&mut socket, None).await;
    // (A job that is no model server gets one `startup` event when it ends.)
    assert_eq!(tail.types(), ["lines", "startup", "end"]);
    assert_eq!(tail.lines(295), lines[295..]);
    let mut socket = open(&app.base, &format!("{path}?fromLine=900"), &[]).await;
    let past = read(&mut socket, None).await;
    assert_eq!((past.types(), past.close_code()), (vec!["startup", "end"], Some(1000)));
    assert_eq!(past.messages[1]["nextLine"], 300);

    // The same events as the SSE stream, built by the same code: data equal, `type` aside.
    let sse = app.http.get(format!("{}/llm/logs/{id}/stream?fromLine=295", app.base)).send().await.unwrap();
    let text = sse.text().await.unwrap();
    let sse_data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim_start()).unwrap())
        .collect();
    let ws_data: Vec<Value> = tail
        .messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.as_object_mut().unwrap().remove("type");
            m
        })
        .collect();
    assert_eq!(ws_data, sse_data);

    // Errors before the upgrade, in the JSON error shape.
    let (status, body) = refused(&app.base, &format!("{path}?epoch=0123456789abcdef-999"), &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), body["epoch"].as_str()),
        (410, Some("epoch_mismatch"), Some(&*epoch))
    );
    let (status, body) = refused(&app.base, &format!("{path}?fromLine=-1"), &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = refused(&app.base, &format!("{path}?token={READER}"), &[]).await;
    assert_eq!(status, 400, "a token in the URL is refused: {body}");
    let (status, body) = refused(&app.base, "/llm/logs/424242/ws", &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("instance_not_found")), "{body}");
    let resp = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["upgrade"].to_str().unwrap()), (426, "websocket"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
}

fn token(name: &str, token: &str, scopes: Vec<Scope>) -> TokenConfig {
    TokenConfig { name: name.into(), token: token.to_owned().into(), token_env: None, scopes }
}

#[tokio::test]
async fn tokens_by_header_or_first_message_and_origins_as_cors() {
    let app = TestApp::spawn_config(steps(40).over(300).sim(12), "", |c| {
        c.auth.tokens =
            vec![token("reader", READER, vec![Scope::LogsRead]), token("runner", RUNNER, vec![Scope::JobsRun])];
        c.server.cors_allowed_origins = vec!["https://platform.example".into()];
    })
    .await;
    let id = app.run_job(12);
    let path = format!("/llm/logs/{id}/ws");

    // A browser that never authenticates: an error message, then 1008, after 5 s (meanwhile
    // the other cases run).
    let silent = tokio::spawn({
        let base = app.base.clone();
        let path = path.clone();
        async move {
            let mut socket = open(&base, &path, &[]).await;
            let started = tokio::time::Instant::now();
            let got = read(&mut socket, None).await;
            (got, started.elapsed())
        }
    });

    // By header.
    let bearer = format!("Bearer {READER}");
    let mut socket = open(&app.base, &path, &[("authorization", &bearer)]).await;
    let got = read(&mut socket, None).await;
    let want = app.sim.with_core(|c, _| c.final_lines(id));
    assert_eq!((got.lines(0), got.close_code()), (want.clone(), Some(1000)));
    assert_eq!(want.len(), 40);
    // By first message.
    let mut socket = open(&app.base, &path, &[]).await;
    socket.send(Message::text(json!({"type": "auth", "token": READER}).to_string())).await.unwrap();
    let got = read(&mut socket, None).await;
    assert_eq!((got.lines(0), got.close_code()), (want.clone(), Some(1000)));

    // A wrong header, or one without `logs:read`: refused before the upgrade.
    let (status, body) = refused(&app.base, &path, &[("authorization", "Bearer nope-nope-nope")]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let runner = format!("Bearer {RUNNER}");
    let (status, body) = refused(&app.base, &path, &[("authorization", &runner)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    // The same by message: an `error` message, then 1008, and no line.
    for (sent, code) in [
        (json!({"type": "auth", "token": "nope-nope-nope"}), "unauthorized"),
        (json!({"type": "auth", "token": RUNNER}), "forbidden"),
        (json!({"type": "hello"}), "bad_request"),
    ] {
        let mut socket = open(&app.base, &path, &[]).await;
        socket.send(Message::text(sent.to_string())).await.unwrap();
        let got = read(&mut socket, None).await;
        assert_eq!((got.types(), got.close_code()), (vec!["error"], Some(1008)), "{sent}");
        assert_eq!(got.messages[0]["code"], code, "{sent}");
        let text = got.messages[0].to_string();
        assert!(!text.contains(RUNNER) && !text.contains("nope-nope"), "no token echoed: {text}");
    }
    // Errors of the first read come after the upgrade (the caller was not known before):
    // an `error` message, then 4000 + the HTTP status.
    let mut socket = open(&app.base, &format!("{path}?epoch=0123456789abcdef-999"), &[]).await;
    socket.send(Message::text(json!({"type": "auth", "token": READER}).to_string())).await.unwrap();
    let got = read(&mut socket, None).await;
    assert_eq!((got.types(), got.close_code()), (vec!["error"], Some(4410)));
    assert_eq!(got.messages[0]["code"], "epoch_mismatch");
    assert!(got.messages[0]["epoch"].is_string());

    // Origins: this server's page and a listed origin may; another site may not.
    let host = app.base.trim_start_matches("http://").to_owned();
    for origin in [format!("http://{host}"), "https://platform.example".to_owned()] {
        let mut socket = open(&app.base, &path, &[("authorization", &bearer), ("origin", &origin)]).await;
        assert_eq!(read(&mut socket, None).await.close_code(), Some(1000), "{origin}");
    }
    for origin in ["https://evil.example", "http://127.0.0.1:1", "null"] {
        let (status, body) = refused(&app.base, &path, &[("authorization", &bearer), ("origin", origin)]).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{origin}");
    }

    let (got, after) = silent.await.unwrap();
    assert_eq!((got.types(), got.close_code()), (vec!["error"], Some(1008)), "{got:?}");
    assert!(after >= Duration::from_millis(4_900), "{after:?}");
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metric(&metrics, "powertail_ws_closes_total{reason=\"auth\"}") >= 4.0);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_resumes_without_loss() {
    let app = TestApp::spawn(fast_sim()).await;
    // About 10 MB of log: more than the kernel buffers of a loopback connection hold.
    let id = delivered_instance(&app.sim, 100_000, "slow", true);
    let want = app.follow(id, DEADLINE).await.lines;
    assert_eq!(want.len(), 100_000);
    let slow = "powertail_ws_closes_total{reason=\"slow\"}";
    let metrics =
        || async { app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap() };
    let before = metric(&metrics().await, slow);

    // A small receive buffer, and nothing read after the first message.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(app.base.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    let req = request(&app.base, &format!("/llm/logs/{id}/ws"), &[]);
    let (mut socket, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await.unwrap();
    let first = read(&mut socket, Some(1)).await;
    let mut lines = first.lines(0);
    wait_until(DEADLINE, "the server gives up on the client", || async { metric(&metrics().await, slow) > before })
        .await;
    // What the connection held, then the close: 1013, try again later.
    let rest = read(&mut socket, None).await;
    assert_eq!(rest.close_code(), Some(1013), "{:?}", rest.close);
    assert!(rest.types().iter().all(|t| ["lines", "startup"].contains(t)), "{:?}", rest.types());
    lines.extend(rest.lines(lines.len() as u64));
    assert!(lines.len() < want.len(), "closed before the end");
    // Resumed from the last line received: every line once, in order.
    let mut socket = open(&app.base, &format!("/llm/logs/{id}/ws?fromLine={}", lines.len()), &[]).await;
    let last = read(&mut socket, None).await;
    assert_eq!(last.close_code(), Some(1000));
    lines.extend(last.lines(lines.len() as u64));
    assert_eq!(lines, want);
}

#[tokio::test]
async fn shutdown_sends_shutdown_then_closes_1001() {
    let mut app = TestApp::spawn(steps(100).over(60_000).sim(12)).await;
    let id = app.run_job(12);
    let mut socket = open(&app.base, &format!("/llm/logs/{id}/ws"), &[]).await;
    let first = read(&mut socket, Some(1)).await;
    assert!(!first.lines(0).is_empty());
    app.server.begin_stop();
    let rest = read(&mut socket, None).await;
    assert_eq!(rest.messages.last(), Some(&json!({"type": "shutdown"})), "{rest:?}");
    assert_eq!(rest.close_code(), Some(1001));
}

#[tokio::test]
async fn the_binary_at_trace_level_never_logs_a_token() {
    let sim = Simulator::spawn(steps(30).over(300).sim(12)).await.unwrap();
    let id = common::run_job(&sim, 12);
    let dir = tempfile::tempdir().unwrap();
    let port = common::cluster::free_port();
    let config = dir.path().join("config.toml");
    let toml = common::app_config_toml(&[sim.url()], "");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{toml}\n\
             [[auth.tokens]]\nname = \"reader\"\ntoken = \"{READER}\"\nscopes = [\"logs:read\"]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_powertail"));
    cmd.arg("--config").arg(&config).env("RUST_LOG", "trace").stdin(std::process::Stdio::null());
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(DEADLINE, "the binary listens", || async { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() })
        .await;

    let path = format!("/llm/logs/{id}/ws");
    let bearer = format!("Bearer {READER}");
    let mut socket = open(&base, &path, &[("authorization", &bearer)]).await;
    let by_header = read(&mut socket, None).await;
    let mut socket = open(&base, &path, &[]).await;
    socket.send(Message::text(json!({"type": "auth", "token": READER}).to_string())).await.unwrap();
    let by_message = read(&mut socket, None).await;
    let wrong = "Bearer ws-wrong-token-0123456789";
    assert_eq!(refused(&base, &path, &[("authorization", wrong)]).await.0, 401);
    let metrics = reqwest::Client::new().get(format!("{base}/metrics")).header("authorization", &bearer).send().await;
    let metrics = metrics.unwrap().text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let lines = sim.with_core(|c, _| c.final_lines(id));
    assert_eq!((by_message.lines(0), by_message.close_code()), (lines.clone(), Some(1000)));
    assert_eq!(by_header.lines(0), lines);
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    // It did log at trace level, the WebSocket's requests among it.
    assert!(stderr.lines().count() > 50 && stderr.contains(&path), "{stderr}");
    for secret in [READER, "ws-wrong-token-0123456789"] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for text in [&stderr, &metrics] {
            let at = text.find(secret).or_else(|| text.find(&hex));
            assert!(at.is_none(), "a token in the output: {}", &text[at.unwrap().saturating_sub(600)..]);
        }
    }
}
