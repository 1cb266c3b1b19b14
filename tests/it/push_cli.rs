//! `powertail push` (issue 19 item 6): the real binary between a pipe's two ends, pushing
//! to a small recording axum server on 127.0.0.1:0 (the push endpoint itself is not in
//! powertail yet, so the server plays it and records every body).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

const TOKEN: &str = "tok-SECRET-4711";
const INSTANCE: &str = "677182124851200064";

/// One request the recorder got.
#[derive(Debug, Clone)]
struct Recorded {
    instance: String,
    authorization: Option<String>,
    raw: String,
    body: Value,
}

/// The answer to the n-th request; `None` hangs it (never answered).
type Script = Arc<dyn Fn(usize) -> Option<StatusCode> + Send + Sync>;

#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<Recorded>>>,
    script: Script,
}

impl Recorder {
    /// Serves on 127.0.0.1:0 in its own thread; `script(n)` answers the n-th request.
    fn start(script: impl Fn(usize) -> Option<StatusCode> + Send + Sync + 'static) -> (Self, SocketAddr) {
        let recorder = Self { seen: Arc::default(), script: Arc::new(script) };
        let state = recorder.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new().route("/llm/logs/{id}/append", post(append)).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("recorder started");
        (recorder, addr)
    }

    fn bodies(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests once `cond` holds for them; panics after 20 s.
    fn wait_for(&self, what: &str, cond: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.bodies();
            if cond(&seen) {
                return seen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {seen:#?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn append(
    State(r): State<Recorder>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, &'static str) {
    let raw = String::from_utf8(body.to_vec()).expect("the body is UTF-8");
    let body: Value = serde_json::from_str(&raw).expect("the body is JSON");
    let n = {
        let mut seen = r.seen.lock().unwrap();
        let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
        seen.push(Recorded { instance, authorization, raw, body });
        seen.len() - 1
    };
    match (r.script)(n) {
        Some(status) => (status, "{}"),
        None => std::future::pending().await,
    }
}

/// `powertail push` with `args`, pushing to `url`, all three streams piped.
fn spawn_push(url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_powertail"))
        .args(["push", "--instance-id", INSTANCE, "--url", url])
        .args(args)
        .env("POWERTAIL_TOKEN", TOKEN)
        .env_remove("POWERTAIL_URL")
        .env_remove("POWERTAIL_WORKER")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the powertail binary runs")
}

/// Feeds `input` and closes stdin; returns (exit status, stdout (empty if not piped),
/// stderr, how long it took after the input was closed). Fails after 30 s.
fn pipe_through(mut child: Child, input: &[u8]) -> (ExitStatus, Vec<u8>, String, Duration) {
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
        drop(stdin);
        done_tx.send(Instant::now()).unwrap();
    });
    let stdout = child.stdout.take().map(read_all);
    let stderr = read_all(child.stderr.take().unwrap());
    let closed_at = done_rx.recv_timeout(Duration::from_secs(30)).expect("stdin written");
    let status = wait(&mut child, Duration::from_secs(30));
    let took = closed_at.elapsed();
    let out = stdout.map_or_else(Vec::new, |rx| rx.recv_timeout(Duration::from_secs(5)).unwrap());
    let err = stderr.recv_timeout(Duration::from_secs(5)).unwrap();
    (status, out, String::from_utf8(err).unwrap(), took)
}

fn read_all(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        from.read_to_end(&mut all).unwrap();
        let _ = tx.send(all);
    });
    rx
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("powertail push did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn texts(seen: &[Recorded]) -> Vec<String> {
    seen.iter()
        .flat_map(|r| r.body["lines"].as_array().unwrap().iter())
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

fn seqs(seen: &[Recorded]) -> Vec<u64> {
    seen.iter().map(|r| r.body["seq"].as_u64().unwrap()).collect()
}

#[test]
fn every_byte_passes_and_every_line_is_pushed_once_in_order() {
    let (server, addr) = Recorder::start(|_| Some(StatusCode::OK));
    let mut input = b"first line\nwindows\r\nprogress 10%\rprogress 20%\rbytes \xff\xfe end\n\n".to_vec();
    for i in 0..300 {
        input.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    input.extend_from_slice(b"last without newline");
    let child = spawn_push(&format!("http://{addr}/"), &["--source", "run-1", "--worker", "10.0.0.5:27777"]);
    let (status, stdout, stderr, _) = pipe_through(child, &input);

    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stdout, input, "stdout is stdin byte for byte");
    let seen = server.bodies();
    let mut want: Vec<String> =
        ["first line", "windows", "progress 10%", "progress 20%", "bytes \u{fffd}\u{fffd} end", ""]
            .map(String::from)
            .to_vec();
    want.extend((0..300).map(|i| format!("line {i}")));
    want.push("last without newline".to_owned());
    assert_eq!(texts(&seen), want);
    assert_eq!(seqs(&seen), (0..seen.len() as u64).collect::<Vec<_>>());
    let finals: Vec<bool> = seen.iter().map(|r| r.body["final"].as_bool().unwrap()).collect();
    assert_eq!(finals.iter().filter(|f| **f).count(), 1);
    assert_eq!(finals.last(), Some(&true));
    for r in &seen {
        assert_eq!(r.instance, INSTANCE);
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        assert!(r.raw.starts_with(r#"{"source":"run-1","seq":"#), "{}", r.raw);
        assert!(r.raw.contains(r#","worker":"10.0.0.5:27777","timestamp":"#), "{}", r.raw);
        assert_eq!(r.body.as_object().unwrap().len(), 6);
        assert_eq!(r.body["source"], "run-1");
        assert_eq!(r.body["worker"], "10.0.0.5:27777");
        let lines = r.body["lines"].as_array().unwrap();
        assert!(lines.len() <= 200);
        for l in lines {
            assert_eq!(l["level"], "INFO");
            assert!(l["ts"].as_i64().unwrap() > 1_700_000_000_000);
        }
        if let Some(first) = lines.first() {
            assert_eq!(r.body["timestamp"], first["ts"]);
        }
    }
    assert!(!stderr.contains(TOKEN));
    assert!(stderr.contains("powertail push: 307 lines, 307 pushed in"), "{stderr}");
    assert!(stderr.contains(" 0 dropped, 0 rejected, 0 abandoned"), "{stderr}");
}

#[test]
fn each_line_passes_and_is_pushed_before_the_input_ends() {
    let (server, addr) = Recorder::start(|_| Some(StatusCode::OK));
    let mut child = spawn_push(&format!("http://{addr}"), &[]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    stdin.write_all(b"one\npartial").unwrap();
    stdin.flush().unwrap();
    let mut got = Vec::new();
    while got != b"one\npartial" {
        got.extend(rx.recv_timeout(Duration::from_secs(10)).expect("the bytes pass at once, newline or not"));
    }
    let seen = server.wait_for("the first line pushed", |s| !s.is_empty());
    assert_eq!(texts(&seen), ["one"]);
    assert_eq!(seen[0].body["final"], false);
    stdin.write_all(b" line\n").unwrap();
    drop(stdin);
    assert!(wait(&mut child, Duration::from_secs(30)).success());
    let seen = server.bodies();
    assert_eq!(texts(&seen), ["one", "partial line"]);
    assert_eq!(seqs(&seen), (0..seen.len() as u64).collect::<Vec<_>>());
    assert_eq!(seen.last().unwrap().body["final"], true);
}

#[test]
fn levels_from_prefixes_when_asked() {
    let (server, addr) = Recorder::start(|_| Some(StatusCode::OK));
    let input = b"INFO 11-25 loading\nWARNING 11-25 slow\n(APIServer pid=7) ERROR 11-25 CUDA out of memory\nplain\n";
    let child = spawn_push(&format!("http://{addr}"), &["--level-from-prefix"]);
    let (status, stdout, _, _) = pipe_through(child, input);
    assert!(status.success());
    assert_eq!(stdout, input);
    let levels: Vec<String> = server
        .bodies()
        .iter()
        .flat_map(|r| r.body["lines"].as_array().unwrap().clone())
        .map(|l| l["level"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(levels, ["INFO", "WARN", "ERROR", "INFO"]);
    // Without --worker and --source: this host's address, port 27777, and a random run name.
    let first = &server.bodies()[0].body;
    let worker = first["worker"].as_str().unwrap();
    assert!(worker.ends_with(":27777") && worker.parse::<SocketAddr>().is_ok(), "{worker}");
    let source = first["source"].as_str().unwrap();
    let run = source.strip_prefix(&format!("{worker}/")).unwrap_or_else(|| panic!("{source}"));
    assert!(run.len() == 16 && run.bytes().all(|b| b.is_ascii_hexdigit()), "{source}");
}

#[test]
fn retried_under_the_same_seq_on_503() {
    let (server, addr) =
        Recorder::start(|n| Some(if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }));
    let child = spawn_push(&format!("http://{addr}"), &[]);
    let (status, stdout, stderr, _) = pipe_through(child, b"a\nb\n");
    assert!(status.success());
    assert_eq!(stdout, b"a\nb\n");
    let seen = server.bodies();
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(seen[1].body, seen[2].body);
    assert_eq!(seqs(&seen)[..3], [0, 0, 0]);
    assert_eq!(texts(&seen[2..]), ["a", "b"]);
    assert!(stderr.contains("2 lines, 2 pushed") && stderr.contains("2 retries"), "{stderr}");
}

#[test]
fn a_404_turns_pushing_off_and_the_lines_still_pass() {
    let (server, addr) = Recorder::start(|_| Some(StatusCode::NOT_FOUND));
    let input: Vec<u8> = (0..500).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let child = spawn_push(&format!("http://{addr}"), &[]);
    let (status, stdout, stderr, _) = pipe_through(child, &input);
    assert!(status.success());
    assert_eq!(stdout, input);
    assert_eq!(server.bodies().len(), 1, "nothing after the 404");
    assert!(stderr.contains("pushing turned off after HTTP 404"), "{stderr}");
    assert!(stderr.contains("500 lines, 0 pushed"), "{stderr}");
}

#[test]
fn with_nothing_listening_the_pipe_still_flows_and_exits_0_promptly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let input: Vec<u8> = (0..2000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let child = spawn_push(&format!("http://127.0.0.1:{port}"), &[]);
    let started = Instant::now();
    let (status, stdout, stderr, after_eof) = pipe_through(child, &input);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, input);
    // The close timeout (3 s) bounds the wait for the last batches.
    assert!(after_eof < Duration::from_secs(8), "exited {after_eof:?} after the end of input");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(stderr.contains("2000 lines, 0 pushed"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
}

#[test]
fn a_bad_url_is_said_and_the_lines_still_pass() {
    let child = spawn_push("ftp://user:pw-7@example.invalid/", &[]);
    let (status, stdout, stderr, _) = pipe_through(child, b"a\nb");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, b"a\nb");
    assert!(stderr.contains("--url must be an http(s) URL"), "{stderr}");
    assert!(stderr.contains("2 lines, 0 pushed in 0 batches, 2 dropped"), "{stderr}");
    assert!(!stderr.contains("pw-7") && !stderr.contains(TOKEN), "{stderr}");
}

#[test]
fn a_hung_server_drops_and_counts_and_the_pipe_still_flows() {
    let (server, addr) = Recorder::start(|_| None);
    let input: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let child = spawn_push(&format!("http://{addr}"), &["--close-timeout-ms", "500"]);
    let (status, stdout, stderr, after_eof) = pipe_through(child, &input);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, input);
    assert!(after_eof < Duration::from_secs(5), "exited {after_eof:?} after the end of input");
    assert!(server.bodies().len() <= 1, "one batch in flight at most, never answered");
    // 10 000 queued behind the one in flight at most; the rest dropped and counted.
    let counted = |what: &str| -> u64 {
        let at = stderr.find(what).unwrap_or_else(|| panic!("{what} in {stderr}"));
        stderr[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(counted(" pushed in"), 0);
    assert!(counted(" dropped,") >= 20_000 - 10_000 - 200, "{stderr}");
    assert_eq!(counted(" dropped,") + counted(" abandoned,"), 20_000, "{stderr}");
}

#[test]
fn a_closed_stdout_does_not_stop_reading_or_pushing() {
    let (server, addr) = Recorder::start(|_| Some(StatusCode::OK));
    let mut child = spawn_push(&format!("http://{addr}"), &[]);
    drop(child.stdout.take()); // the pipe's reader went away
    let input: Vec<u8> = (0..1000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let (status, _, stderr, _) = pipe_through(child, &input);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(texts(&server.bodies()), (0..1000).map(|i| format!("line {i}")).collect::<Vec<_>>());
}
