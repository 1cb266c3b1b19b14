//! The real `powertail` binary's own log output, read from its stderr (a pipe, not a
//! terminal): JSON lines with the documented top-level keys for `server.log_format =
//! "json"`, plain text without ANSI escapes otherwise, and one start-up line naming a
//! PowerJob address that cannot be reached — while the service serves anyway.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use powertail::sim::{SimConfig, Simulator};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::common::cluster::free_port;
use crate::common::wait_for;

/// How long a test waits for a line it expects.
const DEADLINE: Duration = Duration::from_secs(20);

/// A running `powertail serve` whose stderr lines arrive on `lines`; killed on drop.
struct Binary {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with a configuration for PowerJob at `powerjob` and `[server]` keys
/// `server_extra`, with `RUST_LOG` and `POWERTAIL_*` removed from its environment.
fn start(powerjob: &str, server_extra: &str) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}\n\
             [powerjob]\naddresses = [\"{powerjob}\"]\napp_name = \"llm-test-platform\"\napp_password = \"secret\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_powertail"));
    cmd.arg("--config").arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("POWERTAIL_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd.spawn().expect("the powertail binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Binary { child, lines, port, _dir: dir }
}

impl Binary {
    /// Lines until (and including) the first one for which `done` holds; panics at the
    /// deadline or when stderr closes first.
    async fn lines_until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let until = tokio::time::Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(until, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let stop = done(&line);
                    seen.push(line);
                    if stop {
                        return seen;
                    }
                }
                Ok(None) => panic!("stderr closed before the expected line: {seen:#?}"),
                Err(_) => panic!("no expected line within {DEADLINE:?}; stderr so far: {seen:#?}"),
            }
        }
    }

    /// Stops the process with SIGTERM and returns the rest of its stderr.
    async fn stop(mut self) -> Vec<String> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our live child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let mut rest = Vec::new();
        // The reader thread ends, closing the channel, when the process's stderr closes.
        while let Ok(Some(line)) = tokio::time::timeout(DEADLINE, self.lines.recv()).await {
            rest.push(line);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "powertail exited with {status}");
        rest
    }

    /// `GET /healthz` on the binary's listener, retried until it answers 200.
    async fn wait_healthy(&self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let status = wait_for(DEADLINE, &format!("{url} answers"), || async {
            reqwest::get(&url).await.ok().map(|resp| resp.status())
        })
        .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn json_format_writes_one_object_per_line_with_top_level_keys() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let mut bin = start(&sim.url(), "log_format = \"json\"");
    let lines = bin.lines_until(|l| l.contains("answers")).await;
    for line in &lines {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(event[key].is_string(), "no top-level `{key}` string in {line}");
        }
        assert!(event.get("fields").is_none(), "fields are flattened: {line}");
    }
    let check: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(check["level"], "INFO");
    assert_eq!(check["target"], "powertail::upstream");
    // The event's own fields sit beside the message.
    assert_eq!(check["server"], format!("{}/", sim.url()), "{check}");
    assert!(check["message"].as_str().unwrap().contains(&sim.url()), "{check}");
}

#[tokio::test]
async fn text_format_on_a_pipe_has_no_ansi_escapes() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let mut bin = start(&sim.url(), "");
    let mut lines = bin.lines_until(|l| l.contains("answers")).await;
    bin.wait_healthy().await;
    lines.extend(bin.stop().await);
    assert!(lines.iter().any(|l| l.contains(" INFO ") && l.contains("powertail serving")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("\x1b[")), "ANSI escapes on a pipe: {lines:#?}");
    assert!(!lines.iter().any(|l| l.trim_start().starts_with('{')), "text, not JSON: {lines:#?}");
}

#[tokio::test]
async fn an_unreachable_powerjob_is_reported_once_at_start_up_and_the_service_serves() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut bin = start(&format!("http://{address}"), "");
    let mut lines = bin.lines_until(|l| l.contains("cannot be reached")).await;
    // Start-up neither failed nor waited for PowerJob.
    bin.wait_healthy().await;
    lines.extend(bin.stop().await);
    let reports: Vec<&String> = lines.iter().filter(|l| l.contains(&address)).collect();
    assert_eq!(reports.len(), 1, "one line names {address}: {lines:#?}");
    assert!(reports[0].contains(" WARN ") && reports[0].contains("cannot be reached"), "{}", reports[0]);
    assert!(!lines.iter().any(|l| l.contains("secret")), "{lines:#?}");
}

#[tokio::test]
async fn a_server_that_does_not_speak_powerjob_is_reported_by_address() {
    // Any HTTP server that is not PowerJob: 404 for /openApi/authApp and /openApi/assert.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = other.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(other, axum::Router::new()).await });
    let mut bin = start(&format!("http://{address}"), "");
    let lines = bin.lines_until(|l| l.contains(&address)).await;
    let line = lines.last().unwrap();
    assert!(line.contains(" WARN ") && line.contains("does not answer as a PowerJob server"), "{line}");
}
