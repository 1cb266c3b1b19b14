//! Issue 20: a restart with an archive. 1 000 complete logs are followed to completion
//! and archived (SQLite in a temporary directory); powertail restarts; every log is read
//! from line 0 with the epoch of before. Measured side by side with the same restart
//! without an archive (memory mode: every log is read from PowerJob again, under a new
//! epoch).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use powertail::archive::Archive;
use powertail::config::Config;
use powertail::sim::{SimConfig, SimHandle, Simulator};
use secrecy::SecretString;
use serde_json::Value;

use crate::common;

/// Logs archived, and lines in each.
const LOGS: usize = 1_000;
const LINES: i64 = 1_000;
/// Reads in flight at once.
const CONCURRENCY: usize = 16;

/// Every PowerJob request the simulator counted (by path).
fn upstream_requests(sim: &SimHandle) -> u64 {
    ["/instance/log", "/openApi/fetchInstanceInfo", "/instance/downloadLog"].iter().map(|p| sim.requests(p)).sum()
}

/// Reads each of `ids` from line 0 (with its epoch, when given) until complete, 16 at a
/// time: (epoch, lines) each, and the latency of each first answer.
async fn read_all(
    server: &common::Server,
    ids: &[i64],
    epochs: Option<&[String]>,
) -> (Vec<(String, usize)>, Vec<Duration>) {
    let answers: Vec<((String, usize), Duration)> = futures::stream::iter(ids.iter().enumerate())
        .map(|(k, id)| {
            let epoch = epochs.map(|e| format!("&epoch={}", e[k])).unwrap_or_default();
            let url = format!("{}/llm/logs?instanceId={id}&fromLine=0&limit=10000{epoch}", server.base);
            let http = server.http.clone();
            async move {
                let started = Instant::now();
                for _ in 0..2_000 {
                    let resp = http.get(&url).send().await.unwrap();
                    if matches!(resp.status().as_u16(), 503 | 504) {
                        // (Phase 1 under load: PowerJob, the simulator, answers slowly.)
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
                    let body: Value = resp.json().await.unwrap();
                    if body["complete"] == true {
                        let n = body["lines"].as_array().unwrap().len();
                        return ((body["epoch"].as_str().unwrap().to_owned(), n), started.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("instance {id} not complete");
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    answers.into_iter().unzip()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn config(sim: &SimHandle, archive: Option<&str>) -> Config {
    let mut config = common::app_config(&[sim.url()], "");
    config.logs.cache_max_bytes = 1 << 30;
    config.powerjob.request_timeout_ms = 20_000;
    if let Some(url) = archive {
        config.archive.url = SecretString::from(url.to_owned());
    }
    config
}

/// One restart: (time to serve all, p50, p95 of the first answers, PowerJob requests,
/// epochs kept, lines equal).
async fn restart(archive: Option<&str>) -> (Duration, Duration, Duration, u64, usize, bool) {
    let sim = Simulator::spawn(SimConfig { ..common::fast_sim() }).await.unwrap();
    let ids: Vec<i64> = (0..LOGS).map(|k| common::delivered_instance(&sim, LINES, &format!("run{k}"), true)).collect();
    let config = config(&sim, archive);
    let first = common::Server::start(&config).await;
    let (before, _) = read_all(&first, &ids, None).await;
    if let Some(url) = archive {
        let db = Archive::open(url, 4).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        for (id, (epoch, _)) in ids.iter().zip(&before) {
            while db.has(*id).await.unwrap().as_deref() != Some(epoch.as_str()) {
                assert!(Instant::now() < deadline, "not archived in time");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    first.stop().await;
    sim.reset_counters();
    let second = common::Server::start(&config).await;
    let epochs: Vec<String> = before.iter().map(|(e, _)| e.clone()).collect();
    let started = Instant::now();
    let (after, mut latencies) = read_all(&second, &ids, archive.map(|_| epochs.as_slice())).await;
    let total = started.elapsed();
    let requests = upstream_requests(&sim);
    let kept = before.iter().zip(&after).filter(|(b, a)| b.0 == a.0).count();
    let same = before.iter().zip(&after).all(|(b, a)| b.1 == a.1);
    second.stop().await;
    latencies.sort();
    (total, percentile(&latencies, 0.5), percentile(&latencies, 0.95), requests, kept, same)
}

/// `archive_restart`.
pub async fn archive_restart() {
    println!("## Issue 20: restart from the archive\n");
    println!(
        "{LOGS} complete logs of {LINES} lines, followed to completion by one powertail and archived (SQLite in a\n\
         temporary directory); powertail restarts; each log is read from line 0 ({CONCURRENCY} clients in parallel, with\n\
         the epoch of before when there is an archive) until `complete`. Baseline: the same restart without an archive.\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/archive.db", dir.path().display());
    println!("| restart | time to serve all | first answer p50 | p95 | PowerJob requests | epochs kept | same lines |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for archive in [Some(url.as_str()), None] {
        let (total, p50, p95, requests, kept, same) = restart(archive).await;
        println!(
            "| {} | {:.2} s | {:.1} ms | {:.1} ms | {requests} | {kept} / {LOGS} | {} |",
            if archive.is_some() { "with the archive" } else { "without (memory mode)" },
            total.as_secs_f64(),
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3,
            if same { "yes" } else { "no" },
        );
    }
    println!();
}
