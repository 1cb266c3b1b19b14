//! `powertail demo --replicas 2 --redis URL` (issue 21 item 3), the real binary: one
//! banner with every URL, one simulated PowerJob behind two replicas in cluster mode
//! with the demo's shortened timings, the same complete log through either replica, and
//! a Ctrl-C (SIGTERM) that stops the replicas too.

use std::process::Stdio;
use std::time::Duration;

use crate::common::cluster::{get_json, Cursor, RedisServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// How long the demo may take to print its banner (it waits for both replicas).
const START_DEADLINE: Duration = Duration::from_secs(60);
/// vllm-oom at scale 0.1 runs 2 s and is synced 2 s later. With powertail's default
/// timings (sync 60 s) a replica could not say `complete` within this.
const COMPLETE_DEADLINE: Duration = Duration::from_secs(40);

/// The `http://…` of each `  replica K: URL  (pid …)` line of the banner.
fn replica_url(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("replica ")?;
    let (_, rest) = rest.split_once(": ")?;
    rest.split_whitespace().next().filter(|u| u.starts_with("http://")).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn two_demo_replicas_serve_the_same_complete_log() {
    let redis = RedisServer::start();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_powertail"))
        .args(["demo", "--replicas", "2", "--redis", &redis.url(), "--listen", "127.0.0.1:0"])
        .env("POWERTAIL_DEMO_SCALE", "0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let read_banner = async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let done = line.contains("Ctrl-C stops");
            banner.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(START_DEADLINE, read_banner).await.expect("the banner within the deadline");
    let text = banner.join("\n");
    let replicas: Vec<String> = banner.iter().filter_map(|l| replica_url(l)).collect();
    assert_eq!(replicas.len(), 2, "{text}");
    assert_ne!(replicas[0], replicas[1]);
    assert!(text.contains("app \"llm-test-platform\", password \"secret\""), "{text}");
    assert!(text.contains(&redis.url()) && text.contains("powertail-demo"), "{text}");
    let upstream = replicas.iter().map(|u| format!("server {} ", u.trim_start_matches("http://")));
    assert!(upstream.clone().all(|s| text.contains(&s)), "the nginx upstream names both replicas: {text}");

    // Run the failing vLLM start-up through replica 1.
    let http = reqwest::Client::new();
    let resp = http.post(format!("{}/llm/jobs/vllm-oom/run", replicas[0])).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let run: Value = resp.json().await.unwrap();
    let id: i64 = run["instanceId"].as_str().unwrap().parse().unwrap();

    // A reader on each replica, and one whose polls alternate between them.
    let (mut one, mut two, mut both) = (Cursor::new(id), Cursor::new(id), Cursor::new(id));
    let (a, b) = (replicas[0].as_str(), replicas[1].as_str());
    let (only_a, only_b, alternating) = ([a], [b], [b, a]);
    let (last_one, last_two, last_both) = tokio::join!(
        one.follow(&only_a, COMPLETE_DEADLINE),
        two.follow(&only_b, COMPLETE_DEADLINE),
        both.follow(&alternating, COMPLETE_DEADLINE),
    );
    let fixture = std::fs::read_to_string(format!("{}/fixtures/llm/vllm-oom.log", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let expected: Vec<&str> = fixture.lines().collect();
    assert_eq!(one.lines.len(), expected.len(), "every line of the run");
    for (line, content) in one.lines.iter().zip(&expected) {
        assert!(line.ends_with(content), "{line:?} logs {content:?}");
    }
    assert_eq!(two.lines, one.lines, "replica 2 serves the same lines");
    assert_eq!(both.lines, one.lines, "alternating replicas serve the same lines");
    assert_eq!(last_one["epoch"], last_two["epoch"]);
    assert_eq!(last_both["epoch"], last_one["epoch"]);
    for base in [a, b] {
        let (status, info) = get_json(&http, &format!("{base}/llm/instances/{id}")).await;
        assert_eq!((status, info["status"].as_str()), (200, Some("FAILED")), "{info}");
    }

    // SIGTERM (Ctrl-C) stops the demo and its replicas.
    let pid = libc::pid_t::try_from(demo.id().unwrap()).unwrap();
    // SAFETY: sends a signal to the child this test started and has not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), demo.wait()).await.expect("the demo stops").unwrap();
    assert!(status.success(), "{status}");
    for base in [a, b] {
        let gone = http.get(format!("{base}/healthz")).timeout(Duration::from_secs(2)).send().await;
        assert!(gone.is_err(), "{base} still answers after the demo stopped");
    }
}

#[test]
fn banner_lines_name_the_replicas() {
    assert_eq!(
        replica_url("  replica 2: http://127.0.0.1:8081  (pid 42, node demo-2)").as_deref(),
        Some("http://127.0.0.1:8081")
    );
    assert_eq!(replica_url("  viewer:    http://127.0.0.1:8080/"), None);
}
