//! Limits, faults and security: waiting-client cap, job-run rate limit, CORS, a server
//! restart and revoked tokens mid-follow, and a bounded retry rate during an outage.

use crate::common;

use std::time::Duration;

use common::{fast_sim, sorted, steps, Deadline, TestApp};
use powertail::sim::{Fault, FaultKind, Level, Record, SimConfig, Version};

const DEADLINE: Duration = Duration::from_secs(30);

fn sim_with_job(lines: usize, ms: i64, f: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut cfg = steps(lines).text(|k, _| format!("[INFO] step {k}")).over(ms).sim(12);
    f(&mut cfg);
    cfg
}

#[tokio::test]
async fn waiting_clients_are_capped_with_retry_after() {
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        c.server.max_waiting_clients = 1;
    })
    .await;
    let id = app.sim.with_core(|c, now| c.create_instance(12, None, now)); // waits forever
    let url = format!("{}/llm/logs?instanceId={id}&waitMs=3000", app.base);
    let first = tokio::spawn(app.http.get(&url).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = app.http.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // Plain polls are not limited.
    assert_eq!(app.get(&format!("/llm/logs?instanceId={id}")).await.0, 200);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn job_runs_are_rate_limited_per_caller() {
    let app = TestApp::spawn_config(sim_with_job(5, 100, |_| {}), "", |c| {
        c.auth.runs_per_minute = 2;
    })
    .await;
    let run = || app.http.post(format!("{}/llm/jobs/12/run", app.base)).send();
    // Refused requests are not runs: they do not use up the caller's allowance.
    for _ in 0..3 {
        let bad = app.http.post(format!("{}/llm/jobs/12/run", app.base)).json(&serde_json::json!({"delayMs": -1}));
        assert_eq!(bad.send().await.unwrap().status(), 400);
        let unknown = app.http.post(format!("{}/llm/jobs/no-such-job/run", app.base)).send();
        assert_eq!(unknown.await.unwrap().status(), 404);
    }
    // An empty body with a JSON content type is no body.
    let empty = app.http.post(format!("{}/llm/jobs/12/run", app.base)).header("content-type", "application/json");
    assert_eq!(empty.send().await.unwrap().status(), 201);
    assert_eq!(run().await.unwrap().status(), 201);
    let third = run().await.unwrap();
    assert_eq!(third.status(), 429);
    let wait: u64 = third.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        c.server.cors_allowed_origins = vec!["https://platform.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/llm/logs?instanceId=1", app.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
    };
    let ok = preflight("https://platform.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://platform.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn oversized_headers_are_refused_not_crashing() {
    let app = TestApp::spawn(fast_sim()).await;
    let big = "x".repeat(200_000);
    let resp = app.http.get(format!("{}/healthz", app.base)).header("X-Big", big).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");
    assert_eq!(app.get("/healthz").await.0, 200, "still serving");
}

#[tokio::test]
async fn a_powerjob_restart_mid_log_loses_nothing_already_read() {
    let app = TestApp::spawn(fast_sim()).await;
    let (id, t0) = app.sim.with_core(|c, now| {
        let id = c.create_instance(12, None, now - 5_000);
        c.dispatch(id, now - 5_000);
        c.set_running(id, now - 5_000);
        (id, now)
    });
    let batch = |from: i64, n: i64| -> Vec<Record> {
        (from..from + n)
            .map(|k| Record {
                log_time: t0 + k,
                level: Level::Info,
                content: format!("line {k}"),
                worker: "w:1".into(),
            })
            .collect()
    };
    app.sim.with_core(|c, now| c.deliver(id, batch(0, 150), now));
    let mut read = Vec::new();
    while read.len() < 150 {
        let body = app.logs(id, read.len() as u64).await;
        read.extend(serde_json::from_value::<Vec<String>>(body["lines"].clone()).unwrap());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The server restarts: its H2 rows are gone; later batches make a new, short log.
    app.sim.with_core(|c, now| {
        c.restart(now);
        c.deliver(id, batch(150, 50), now + 10);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.sim.with_core(|c, now| c.finish(id, 5, "ok", now));
    let follow = app.follow_from(id, read, DEADLINE).await;
    assert_eq!(sorted(follow.lines.clone()), sorted(app.sim.with_core(|c, _| c.final_lines(id))));
    assert_eq!(follow.lines.len(), 200);
    assert_eq!(follow.last["upstreamLost"], true);
}

#[tokio::test]
async fn revoked_tokens_mid_follow_are_renewed() {
    let cfg = sim_with_job(200, 2_000, |c| {
        c.version = Version::V5;
        c.openapi_auth = true;
    });
    let app = TestApp::spawn_with(cfg, "console_username = \"ADMIN\"\nconsole_password = \"powerjob_admin\"").await;
    let id = app.run_job(12);
    let sim = app.sim.sim.clone();
    let revoker = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sim.revoke_tokens();
        }
    });
    let follow = app.follow(id, DEADLINE).await;
    revoker.await.unwrap();
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
}

#[tokio::test]
async fn an_outage_is_retried_with_back_off_not_a_storm() {
    let app = TestApp::spawn(sim_with_job(100, 200, |_| {})).await;
    let id = app.run_job(12);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines.len(), 100);
    // A second, running instance to keep refreshing, then PowerJob fails every request.
    let id = app.sim.with_core(|c, now| common::logged_instance(c, now, 5_000, ["hello".to_owned()], false));
    while app.logs(id, 0).await["totalLines"] != 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.sim.inject(Fault { path: None, kind: FaultKind::Http500, times: 100_000 });
    app.sim.reset_counters();
    let started = std::time::Instant::now();
    let pollers: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (app.http.clone(), format!("{}/llm/logs?instanceId={id}", app.base));
            tokio::spawn(async move {
                let mut stale = 0;
                while started.elapsed() < Duration::from_secs(3) {
                    let v: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
                    assert_eq!(
                        v["lines"][0].as_str().map(|l| l.ends_with("hello")),
                        Some(true),
                        "cached lines are served"
                    );
                    stale += usize::from(v["stale"] == true);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                stale
            })
        })
        .collect();
    let mut stale = 0;
    for p in pollers {
        stale += p.await.unwrap();
    }
    app.sim.clear_faults();
    let upstream = app.sim.requests("/openApi/fetchInstanceInfo");
    // 20 clients × ~100 polls; refreshes back off 50 ms → 1.6 s: about 7 attempts in 3 s.
    assert!(upstream <= 10, "{upstream} upstream requests during a 3 s outage");
    assert!(stale > 0);
    // And it recovers by itself.
    app.sim.with_core(|c, now| c.finish(id, 5, "ok", now));
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines.len(), 1);
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed_with_503() {
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        c.server.max_concurrent_requests = 1;
    })
    .await;
    let id = app.sim.with_core(|c, now| c.create_instance(12, None, now));
    let holder = tokio::spawn(app.http.get(format!("{}/llm/logs?instanceId={id}&waitMs=2000", app.base)).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    assert_eq!(app.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn growing_logs_are_never_evicted_for_size_and_their_number_is_capped() {
    // The run lasts 60 s of the test's clock, played 2.6 s (520 lines) at a time, each
    // step read as it grows: still growing when the second log is asked for below, however
    // loaded the machine (it failed once when an 8 s run had ended first). The second log
    // is job 13's, a few lines, so that its first read at the end is small.
    let cfg = sim_with_job(12_000, 60_000, |c| c.jobs.push(steps(10).over(120_000).job(13)));
    let app = TestApp::spawn_config(cfg, "", |c| {
        c.logs.cache_max_bytes = 1 << 20; // far below one log of ~1.3 MB
        c.logs.max_followed_instances = 1;
    })
    .await;
    let id = app.run_job(12);
    let mut read: Vec<String> = Vec::new();
    let deadline = Deadline::after(DEADLINE);
    let mut played = 0; // the lines logged by the test's clock so far
    while read.len() < 5_000 {
        deadline.check(|| format!("{} lines read", read.len()));
        // (A step's last lines may wait for the worker's next flush.)
        if read.len() + 100 >= played {
            app.clock.advance(Duration::from_millis(2_600));
            played += 520;
        }
        let body = app.logs(id, read.len() as u64).await;
        read.extend(serde_json::from_value::<Vec<String>>(body["lines"].clone()).unwrap());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(app.logs.is_cached(id), "a growing log stays however big");
    // A second growing log is refused while the first is followed.
    let other = app.run_job(13);
    let resp = app.http.get(format!("{}/llm/logs?instanceId={other}", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    // The rest of the run, its sync and the completion window.
    app.clock.advance(Duration::from_secs(40));
    let follow = app.follow_from(id, read, DEADLINE).await;
    let want = app.sim.with_core(|c, _| c.final_lines(id));
    assert_eq!(follow.lines.len(), want.len());
    assert!(sorted(follow.lines) == sorted(want), "the same lines (ties may be in another order)");
    // Complete, it moves to the size-bounded cache and the slot is free again.
    assert_eq!(app.get(&format!("/llm/logs?instanceId={other}")).await.0, 200);
}
