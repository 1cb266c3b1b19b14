//! Shared test harness: the simulator and the real router, each on 127.0.0.1:0, with
//! the server's timing scaled down so that a whole job lifecycle takes seconds.
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod cluster;

use std::time::Duration;

use powertail::config::Config;
use powertail::sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Scaled server timing: flush 200 ms, cache 300 ms, sync 2 s.
pub fn fast_sim() -> SimConfig {
    SimConfig { log_cache_ms: 300, worker_flush_ms: 200, sync_delay_ms: 2_000, ..SimConfig::default() }
}

/// The adapter's configuration for a simulator at `urls`, timing matched to [`fast_sim`].
pub fn app_config(urls: &[String], extra_powerjob: &str) -> Config {
    Config::from_toml(&app_config_toml(urls, extra_powerjob)).expect("test config")
}

/// The TOML text of [`app_config`]: `[powerjob]` (with `extra_powerjob` inside it) and
/// `[logs]`, one key per line (what [`cluster::merge_toml`] expects).
pub fn app_config_toml(urls: &[String], extra_powerjob: &str) -> String {
    let addresses: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[powerjob]\n\
         addresses = [{}]\n\
         app_name = \"llm-test-platform\"\n\
         app_password = \"secret\"\n\
         request_timeout_ms = 1500\n\
         log_cache_ms = 300\n\
         worker_flush_ms = 200\n\
         clock_skew_ms = 100\n\
         sync_delay_ms = 2000\n\
         {extra_powerjob}\n\
         [logs]\n\
         refresh_interval_ms = 50\n\
         first_read_delay_ms = 300\n",
        addresses.join(", ")
    )
}

/// A running adapter in front of a running simulator.
pub struct TestApp {
    pub sim: SimHandle,
    pub base: String,
    pub http: reqwest::Client,
    pub logs: powertail::service::LogService,
    _stop: oneshot::Sender<()>,
}

impl TestApp {
    /// Simulator with `sim_cfg`, adapter with the matching fast timing.
    pub async fn spawn(sim_cfg: SimConfig) -> Self {
        Self::spawn_with(sim_cfg, "").await
    }

    /// As [`TestApp::spawn`], with extra `[powerjob]` keys for the adapter.
    pub async fn spawn_with(sim_cfg: SimConfig, extra_powerjob: &str) -> Self {
        let sim = Simulator::spawn(sim_cfg).await.expect("simulator");
        let config = app_config(&[sim.url()], extra_powerjob);
        Self::spawn_app(sim, &config).await
    }

    /// The adapter with an explicit configuration in front of `sim`.
    pub async fn spawn_app(sim: SimHandle, config: &Config) -> Self {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = powertail::build(config, listener.local_addr().unwrap()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let logs = state.logs.clone();
        tokio::spawn(powertail::run(listener, state, async {
            let _ = stopped.await;
        }));
        TestApp { sim, base, http: reqwest::Client::new(), logs, _stop: stop }
    }

    /// `GET path` → (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// One `/llm/logs` read that must succeed.
    pub async fn logs(&self, id: i64, from: u64) -> Value {
        let (status, body) = self.get(&format!("/llm/logs?instanceId={id}&fromLine={from}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// One long-poll `/llm/logs` read that must succeed.
    pub async fn logs_wait(&self, id: i64, from: u64, wait_ms: u32) -> Value {
        let (status, body) = self.get(&format!("/llm/logs?instanceId={id}&fromLine={from}&waitMs={wait_ms}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Follows the log like a browser (poll, send back `nextLine`) until `complete`,
    /// checking the cursor contract on every answer. Returns every line served.
    pub async fn follow(&self, id: i64, deadline: Duration) -> Follow {
        self.follow_from(id, Vec::new(), deadline).await
    }

    /// As [`TestApp::follow`], continuing after the lines already read.
    pub async fn follow_from(&self, id: i64, read: Vec<String>, deadline: Duration) -> Follow {
        let until = tokio::time::Instant::now() + deadline;
        let mut lines: Vec<String> = read;
        let mut answers = Vec::new();
        loop {
            let body = self.logs(id, lines.len() as u64).await;
            assert_eq!(body["instanceId"], Value::String(id.to_string()));
            assert_eq!(body["fromLine"].as_u64().unwrap(), lines.len() as u64);
            let got: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
            assert_eq!(body["nextLine"].as_u64().unwrap(), lines.len() as u64 + got.len() as u64, "{body}");
            assert!(body["totalLines"].as_u64().unwrap() >= body["nextLine"].as_u64().unwrap());
            lines.extend(got);
            answers.push(body.clone());
            if body["complete"] == Value::Bool(true) {
                return Follow { lines, last: body, answers };
            }
            assert!(tokio::time::Instant::now() < until, "not complete in {deadline:?}; last answer {body}");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
}

/// What a follow ended with.
pub struct Follow {
    pub lines: Vec<String>,
    pub last: Value,
    pub answers: Vec<Value>,
}

/// The lines sorted, for comparisons where late lines were appended at the end.
pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Logs to the test output when `RUST_LOG` is set (`RUST_LOG=powertail=debug cargo test`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}
