//! Cluster mode (issue 12): replicas sharing one line log on a real Redis that the test
//! starts itself. Every test here needs `redis-server` (Debian package `redis-server`);
//! they are ignored without it, and CI runs them (`--include-ignored`).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{app_config, fast_sim};
use powertail::config::Config;
use powertail::sim::{JobScript, Level, ScriptLine, ScriptWorker, SimConfig, SimHandle, SimJob, Simulator};
use serde_json::Value;
use tokio::sync::oneshot;

const NEEDS_REDIS: &str = "needs redis-server";

/// A redis-server of this test on a free loopback port.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction", "--dir", dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed for this test");
        let r = Redis { child, port, _dir: dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One replica in this test process.
struct Replica {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Replica {
    async fn start(config: &Config) -> Self {
        common::init_tracing();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = powertail::build(config, listener.local_addr().unwrap()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(powertail::run(listener, state, async {
            let _ = stopped.await;
        }));
        Replica { base, http: reqwest::Client::new(), stop: Some(stop) }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn cluster_config(sim: &SimHandle, redis: &Redis, prefix: &str) -> Config {
    let mut config = app_config(&[sim.url()], "");
    let cluster: Config = Config::from_toml(&format!(
        "[powerjob]\naddresses = [\"http://127.0.0.1:1\"]\napp_name = \"x\"\napp_password = \"y\"\n\
         [logs]\nrefresh_interval_ms = 50\n[cluster]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\nlease_ms = 600\n",
        redis.url()
    ))
    .unwrap();
    config.cluster = cluster.cluster;
    config
}

/// Two workers, the second 400 ms behind: its batches land before lines already served.
fn late_lines_sim() -> SimConfig {
    let mut text = String::new();
    for k in 0..400 {
        text.push_str(&format!("[INFO] step {k}\n"));
    }
    let mut s = JobScript::from_text(&text, 2_500, 5, "ok");
    s.workers.push(ScriptWorker { address: "10.0.0.22:27777".into(), clock_skew_ms: -400, flush_phase_ms: 130 });
    for k in 0..150 {
        s.lines.push(ScriptLine {
            at_ms: k * 16,
            level: Level::Info,
            content: format!("worker-2 shard {k}"),
            worker: 1,
        });
    }
    let mut cfg = fast_sim();
    cfg.jobs = vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(s)) }];
    cfg
}

/// Follows `id` to completion, each poll on the next replica; returns the lines and the
/// epoch of every answer.
async fn follow_round_robin(replicas: &[&Replica], id: i64) -> (Vec<String>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let (mut lines, mut epochs) = (Vec::new(), Vec::new());
    for k in 0.. {
        let r = replicas[k % replicas.len()];
        let (status, body) = r.get(&format!("/llm/logs?instanceId={id}&fromLine={}&waitMs=200", lines.len())).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fromLine"], lines.len() as u64);
        epochs.push(body["epoch"].as_str().unwrap().to_owned());
        lines.extend(body["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()));
        if body["complete"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not complete in time: {body}");
    }
    (lines, epochs)
}

#[tokio::test]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn a_client_switching_replica_on_every_poll_gets_one_sequence() {
    let _ = NEEDS_REDIS;
    let redis = Redis::start();
    let sim = Simulator::spawn(late_lines_sim()).await.unwrap();
    let config = cluster_config(&sim, &redis, "rr");
    let (a, b, c) = (Replica::start(&config).await, Replica::start(&config).await, Replica::start(&config).await);
    let id = sim.with_core(|core, now| core.run_job(12, None, 0, now)).unwrap();
    let (lines, epochs) = follow_round_robin(&[&a, &b, &c], id).await;
    // Exactly the server's final log, each line once, under one epoch.
    let mut expected = sim.with_core(|core, _| core.final_lines(id));
    assert_eq!(lines.len(), expected.len());
    let mut got = lines.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "{epochs:?}");
    // Every replica serves the very same sequence.
    for r in [&a, &b, &c] {
        let (_, body) = r.get(&format!("/llm/logs?instanceId={id}&fromLine=0&limit=10000")).await;
        let all: Vec<String> =
            body["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
        assert_eq!(all, lines);
        assert_eq!(body["epoch"], epochs[0]);
    }
}
