//! Soak: 200 instances followed at once (some with late batches from a second worker)
//! while PowerJob fails at random — 500s, resets, placeholders, stalls — and every final
//! log must be exact. Bounded: ~40 s with the defaults; `SOAK_INSTANCES`, `SOAK_LINES`
//! and `SOAK_JOB_MS` (each job's duration) scale it up (figures in BENCHMARKS.md).

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast_sim, sorted, TestApp};
use powertail::sim::{Fault, FaultKind, JobScript, Level, ScriptLine, ScriptWorker, SimJob};
use rand::{Rng, SeedableRng};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The cache bound of the soak run.
const CACHE_MAX_BYTES: u64 = 64 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_instances_under_random_faults_end_exact() {
    let instances = env("SOAK_INSTANCES", 200);
    let lines = env("SOAK_LINES", 300);
    let job_ms = env("SOAK_JOB_MS", 15_000);
    let text: String = (0..lines).map(|k| format!("[INFO] soak step {k}\n")).collect();
    let plain = JobScript::from_text(&text, job_ms as i64, 5, "ok");
    let mut skewed = plain.clone();
    skewed.workers.push(ScriptWorker { address: "10.0.0.22:27777".into(), clock_skew_ms: -300, flush_phase_ms: 90 });
    for k in 0..lines as i64 / 3 {
        skewed.lines.push(ScriptLine {
            at_ms: k * 45,
            level: Level::Info,
            content: format!("worker-2 shard {k}"),
            worker: 1,
        });
    }
    let mut cfg = fast_sim();
    cfg.jobs = vec![
        SimJob { id: 12, name: "plain".into(), job_params: String::new(), script: Some(Arc::new(plain)) },
        SimJob { id: 13, name: "skewed".into(), job_params: String::new(), script: Some(Arc::new(skewed)) },
    ];
    let app = TestApp::spawn_config(cfg, "", |c| {
        c.logs.refresh_interval_ms = 100;
        c.logs.cache_max_bytes = CACHE_MAX_BYTES;
    })
    .await;

    let started = Instant::now();
    let chaos = {
        let sim = app.sim.sim.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(42);
            let mut injected = 0;
            while started.elapsed() < Duration::from_millis(job_ms as u64 + 10_000) {
                let kind = match rng.gen_range(0..5) {
                    0 => FaultKind::Http500,
                    1 => FaultKind::Reset,
                    2 => FaultKind::Preparing,
                    3 => FaultKind::Delay(Duration::from_millis(400)),
                    _ => FaultKind::NotJson,
                };
                let path = ["/instance/log", "/openApi/fetchInstanceInfo"][rng.gen_range(0..2)];
                sim.inject(Fault { path: Some(path.into()), kind, times: rng.gen_range(1..4) });
                injected += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            injected
        })
    };
    let followers: Vec<_> = (0..instances)
        .map(|k| {
            let (http, base, sim) = (app.http.clone(), app.base.clone(), app.sim.sim.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis((k as u64 * 47) % 8_000)).await;
                let job = if k % 4 == 0 { 13 } else { 12 };
                let id = sim.with_core(|c, now| c.run_job(job, None, 0, now)).unwrap();
                let mut got: Vec<String> = Vec::new();
                let deadline = common::Deadline::after(Duration::from_millis(job_ms as u64 + 120_000));
                loop {
                    deadline.check(|| format!("instance {id} completed"));
                    let resp = http
                        .get(format!("{base}/llm/logs?instanceId={id}&fromLine={}", got.len()))
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status().as_u16();
                    let body: serde_json::Value = resp.json().await.unwrap();
                    if status == 200 {
                        assert_eq!(body["fromLine"].as_u64(), Some(got.len() as u64));
                        got.extend(serde_json::from_value::<Vec<String>>(body["lines"].clone()).unwrap());
                        if body["complete"] == true {
                            break;
                        }
                    } else {
                        assert!(matches!(status, 502..=504), "{status}: {body}");
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                let want = sim.with_core(|c, _| c.final_lines(id));
                assert_eq!(got.len(), want.len(), "instance {id}: line count");
                assert_eq!(sorted(got), sorted(want), "instance {id}: lines");
            })
        })
        .collect();
    for f in followers {
        f.await.unwrap();
    }
    let injected = chaos.await.unwrap();
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| common::metric(&metrics, name);
    let cache = gauge("powertail_cache_bytes");
    eprintln!(
        "soak: {instances} instances × ~{lines} lines, {injected} fault bursts, {:.1} s, cache {:.1} MiB of {} MiB",
        started.elapsed().as_secs_f64(),
        cache / 1_048_576.0,
        CACHE_MAX_BYTES >> 20
    );
    assert!(cache <= CACHE_MAX_BYTES as f64);
}
