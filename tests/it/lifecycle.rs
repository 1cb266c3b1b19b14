//! End to end through PowerJob's whole life cycle (issue 11): retries under the same
//! instanceId, a stopped process that keeps logging, repeated stack traces across a
//! restart and a head clean-up, placeholders on a first read, a stalled server, an
//! absurd page count and the memory caps. Each case runs on the 4.3 and the 5.1 wire.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::{fast_sim, wait_until, TestApp};
use powertail::config::Config;
use powertail::sim::{Fault, FaultKind, JobScript, SimConfig, SimJob, TimeExpression, Version};
use serde_json::Value;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(40);
const CONSOLE: &str = "console_username = \"ADMIN\"\nconsole_password = \"powerjob_admin\"";

/// Runs `$body(version)` as one test per wire version.
macro_rules! both_wires {
    ($body:ident, $v4:ident, $v5:ident) => {
        #[tokio::test]
        async fn $v4() {
            $body(Version::V4).await;
        }
        #[tokio::test]
        async fn $v5() {
            $body(Version::V5).await;
        }
    };
}

/// `n` records over `ms`; every `trace_every`-th is an ERROR with the same stack trace
/// (6 continuation lines, the last one empty).
fn script(tag: &str, n: usize, ms: i64, trace_every: usize, final_status: i32) -> JobScript {
    let mut text = String::new();
    for k in 0..n {
        if trace_every > 0 && k % trace_every == trace_every - 1 {
            text.push_str(&format!("[ERROR] {tag} step {k} failed\n"));
        } else {
            text.push_str(&format!("{tag} step {k} of {n}\n"));
        }
    }
    let mut s = JobScript::from_text(&text, ms, final_status, "done");
    for line in &mut s.lines {
        if line.content.starts_with("[ERROR]") {
            line.content.push_str(
                "\njava.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n\
                 \tat java.lang.Thread.run(Thread.java:748)\nCaused by: x\n",
            );
        }
    }
    s
}

fn sim(version: Version, script: JobScript, f: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut cfg = fast_sim();
    cfg.version = version;
    cfg.jobs = vec![SimJob { name: "job".into(), ..common::sim_job(12, script) }];
    f(&mut cfg);
    cfg
}

/// The simulator and the adapter on one manual clock ([`TestApp::spawn_config`]); 5.x
/// with the console account.
async fn spawn(cfg: SimConfig, f: impl FnOnce(&mut Config)) -> TestApp {
    let extra = if cfg.version == Version::V5 { CONSOLE } else { "" };
    TestApp::spawn_config(cfg, extra, f).await
}

fn run(app: &TestApp) -> i64 {
    app.run_job(12)
}

fn counts(lines: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_default() += 1;
    }
    m
}

// 1. A retry under the same instanceId, through powertail and from the console.

async fn retry_through_powertail(version: Version) {
    let app = spawn(sim(version, script("run", 120, 1_200, 20, 4), |_| {}), |_| {}).await;
    let id = run(&app);
    let first = app.follow(id, DEADLINE).await;
    assert_eq!(first.last["status"], "FAILED");
    assert_eq!(first.last["attempt"], 1);
    let run1 = first.lines.clone();
    assert_eq!(run1, app.sim.with_core(|c, _| c.final_lines(id)));
    let (status, body) = post(&app, &format!("/llm/instances/{id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    // At once after the retry: no longer complete, the status follows PowerJob.
    let after = app.logs(id, run1.len() as u64).await;
    assert_eq!(after["complete"], false, "{after}");
    assert_ne!(after["status"], "FAILED", "{after}");
    let follow = app.follow_from(id, run1.clone(), DEADLINE).await;
    assert_eq!(follow.last["attempt"], 2);
    let attempts = serde_json::json!([{"attempt": 1, "fromLine": 0}, {"attempt": 2, "fromLine": run1.len()}]);
    assert_eq!(follow.last["attempts"], attempts);
    // The second run's records, each once, none of the first run's again. (Run 1's sync
    // falls inside run 2 and splits its log: part of it is served only from the stable
    // file after run 2's own sync, which the follower reads before it completes.)
    let run2 = &follow.lines[run1.len()..];
    let (c1, c2) = (counts(&run1), counts(run2));
    assert_eq!(run2.len(), run1.len(), "{run2:?}");
    assert!(c2.iter().all(|(l, n)| *n == 1 || l.is_empty() || l.starts_with('\t') || !l.contains(" step ")));
    assert!(run2.iter().filter(|l| l.contains(" step ")).all(|l| !c1.contains_key(l.as_str())), "a new run");
    // Whatever the server serves from now on was served already.
    let upstream = app.sim.with_core(|c, now| {
        c.tick(now + 10_000);
        c.final_lines(id)
    });
    let all = counts(&follow.lines);
    for (line, n) in counts(&upstream) {
        assert!(all.get(line).copied().unwrap_or(0) >= n, "{line:?} served later by PowerJob");
    }
    let again = app.logs(id, 0).await;
    let lines: Vec<String> = serde_json::from_value(again["lines"].clone()).unwrap();
    assert_eq!(lines, follow.lines);
    assert_eq!(again["complete"], true);
}
both_wires!(retry_through_powertail, retry_through_powertail_v4, retry_through_powertail_v5);

async fn retry_from_the_console(version: Version) {
    let app = spawn(sim(version, script("run", 60, 600, 0, 5), |_| {}), |c| c.logs.recheck_complete_ms = 200).await;
    let id = run(&app);
    let first = app.follow(id, DEADLINE).await;
    let n = first.lines.len();
    // Retried behind powertail's back (the console, or PowerJob's retry policy).
    app.sim.with_core(|c, now| c.retry_instance(id, now)).unwrap();
    wait_until(DEADLINE, "the retry to be seen by a read", || async {
        let body = app.logs(id, n as u64).await;
        body["complete"] == false && body["attempt"] == 2
    })
    .await;
    let follow = app.follow_from(id, first.lines.clone(), DEADLINE).await;
    assert_eq!(follow.lines.len(), 2 * n);
    assert_eq!(follow.last["attempts"][1]["fromLine"], n);
}
both_wires!(retry_from_the_console, retry_from_the_console_v4, retry_from_the_console_v5);

/// A complete log that is read is re-checked with the status call only, never pages.
#[tokio::test]
async fn a_complete_log_is_rechecked_by_status_only() {
    let app = spawn(sim(Version::V4, script("run", 30, 300, 0, 5), |_| {}), |c| c.logs.recheck_complete_ms = 100).await;
    let id = run(&app);
    app.follow(id, DEADLINE).await;
    app.sim.reset_counters();
    for _ in 0..10 {
        assert_eq!(app.logs(id, 0).await["complete"], true);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(app.sim.requests("/instance/log"), 0);
    assert!(app.sim.requests("/openApi/fetchInstanceInfo") >= 1, "re-checked");
}

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.http.post(format!("{}{path}", app.base)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

// 2. A stopped instance whose process keeps logging.

async fn a_stopped_process_that_keeps_logging(version: Version) {
    // The process logs for about 1.2 s after the stop: batches every 200 ms, longer than
    // the late window (600 ms here), shorter than the server's sync (2 s here).
    let cfg = sim(version, script("job", 100, 1_600, 0, 5), |c| c.logs_after_stop = true);
    let app = spawn(cfg, |_| {}).await;
    let id = run(&app);
    wait_until(DEADLINE, "some lines", || async {
        app.logs_wait(id, 1, 2_000).await["totalLines"].as_u64().unwrap() > 1
    })
    .await;
    let (status, body) = post(&app, &format!("/llm/instances/{id}/stop")).await;
    assert_eq!(status, 200, "{body}");
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.last["status"], "STOPPED");
    assert_eq!(follow.lines.len(), 100, "every line logged after the stop is served");
    // And nothing more can come: the server's own log ends there too.
    let upstream = app.sim.with_core(|c, now| {
        c.tick(now + 60_000);
        c.final_lines(id)
    });
    assert_eq!(counts(&follow.lines), counts(&upstream));
}
both_wires!(a_stopped_process_that_keeps_logging, stopped_process_v4, stopped_process_v5);

// 3. Repeated stack-trace lines across a restart and a head clean-up.

async fn repeated_traces_across_a_restart(version: Version) {
    let app = spawn(sim(version, script("job", 120, 3_000, 4, 5), |_| {}), |_| {}).await;
    let id = run(&app);
    wait_until(DEADLINE, "half the log", || async { app.logs(id, 0).await["totalLines"].as_u64().unwrap() >= 150 })
        .await;
    let before = serde_json::from_value::<Vec<String>>(app.logs(id, 0).await["lines"].clone()).unwrap();
    app.sim.restart();
    let follow = app.follow_from(id, before, DEADLINE).await;
    let upstream = app.sim.with_core(|c, _| c.final_lines(id));
    // Every line the server holds after the restart is served, each trace whole.
    let (got, want) = (counts(&follow.lines), counts(&upstream));
    for (line, n) in &want {
        assert!(got.get(line).copied().unwrap_or(0) >= *n, "lost {line:?}");
    }
    let records = follow.lines.iter().filter(|l| l.contains(" step ")).count();
    let failed = follow.lines.iter().filter(|l| l.contains(" failed")).count();
    assert_eq!(got["\tat a.B.c(B.java:1)"], failed, "each trace's own continuation lines");
    assert_eq!(got[""], failed);
    assert!(records <= 120, "no record twice: {records}");
    assert_eq!(follow.lines.len(), records + 6 * failed);
}
both_wires!(repeated_traces_across_a_restart, traces_across_a_restart_v4, traces_across_a_restart_v5);

async fn repeated_traces_across_a_head_clean_up(version: Version) {
    let cfg = sim(version, script("job", 200, 4_000, 4, 5), |c| {
        *c = c.clone().with_time_expression(12, TimeExpression::FixedRate(1_000));
        c.clean_interval_ms = 0; // cleaned by hand below
        c.clean_age_ms = 1_000;
    });
    let app = spawn(cfg, |_| {}).await;
    let id = run(&app);
    wait_until(DEADLINE, "a third of the log", || async {
        app.logs(id, 0).await["totalLines"].as_u64().unwrap() >= 200
    })
    .await;
    assert!(app.sim.clean_now() > 0, "the head was cleaned");
    let follow = app.follow(id, DEADLINE).await;
    let records = follow.lines.iter().filter(|l| l.contains(" step ")).count();
    let failed = follow.lines.iter().filter(|l| l.contains(" failed")).count();
    assert_eq!(records, 200, "every record once, though the head left the server's file");
    assert_eq!(failed, 50);
    assert_eq!(follow.lines.len(), 200 + 6 * 50);
    assert_eq!(follow.last["upstreamLost"], true);
}
both_wires!(repeated_traces_across_a_head_clean_up, traces_across_a_clean_up_v4, traces_across_a_clean_up_v5);

// 4. A placeholder on the first read.

async fn a_placeholder_on_the_first_read_is_a_stale_200(version: Version) {
    let app = spawn(sim(version, script("job", 40, 400, 0, 5), |_| {}), |_| {}).await;
    let id = run(&app);
    app.sim.inject(Fault::always(Some("/instance/log"), FaultKind::Preparing));
    tokio::time::sleep(Duration::from_millis(400)).await; // past first_read_delay_ms
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lines"], serde_json::json!([]));
    assert_eq!(body["stale"], true);
    assert!(body["status"] == "RUNNING" || body["status"] == "SUCCEED", "{body}");
    app.sim.clear_faults();
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
}
both_wires!(a_placeholder_on_the_first_read_is_a_stale_200, placeholder_first_read_v4, placeholder_first_read_v5);

// 5. A stalled PowerJob does not stall the readers.

async fn a_stalled_server_does_not_stall_readers(version: Version) {
    let app =
        spawn(sim(version, script("job", 400, 20_000, 0, 5), |_| {}), |c| c.powerjob.request_timeout_ms = 8_000).await;
    let id = run(&app);
    wait_until(DEADLINE, "some lines", || async { app.logs(id, 0).await["totalLines"].as_u64().unwrap() > 5 }).await;
    app.sim.inject(Fault::always(Some("/instance/log"), FaultKind::Hang(Duration::from_secs(6))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stale = 0;
    for _ in 0..8 {
        let t = Instant::now();
        let body = app.logs(id, 0).await;
        assert!(t.elapsed() < Duration::from_millis(2_500), "a cached read took {:?}", t.elapsed());
        stale += usize::from(body["stale"] == true);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(stale >= 4, "the answers say stale once the refresh is overdue ({stale} of 8)");
    let total = app.logs(id, 0).await["totalLines"].as_u64().unwrap();
    let t = Instant::now();
    let body = app.logs_wait(id, total, 1_000).await;
    assert!(t.elapsed() < Duration::from_millis(3_000), "a long-poll took {:?}", t.elapsed());
    assert_eq!(body["stale"], true);
    app.sim.clear_faults();
    // The rest of the 20 s run, its sync and the completion window: not waited out.
    app.clock.advance(Duration::from_secs(25));
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
}
both_wires!(a_stalled_server_does_not_stall_readers, stalled_server_v4, stalled_server_v5);

// 6. An absurd page count, the line cap and the byte cap of growing logs.

async fn an_absurd_page_count_fails_one_refresh(version: Version) {
    let app = spawn(sim(version, script("job", 40, 300, 0, 5), |_| {}), |_| {}).await;
    let id = run(&app);
    app.sim.inject(Fault::always(Some("/instance/log"), FaultKind::TotalPages(1_000_000_000)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.sim.reset_counters();
    let t = Instant::now();
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}")).await;
    assert!(t.elapsed() < Duration::from_secs(3), "answered in {:?}", t.elapsed());
    assert!(status == 502 || body["stale"] == true, "{status} {body}");
    let requests = app.sim.requests("/instance/log");
    assert!(requests <= 10, "{requests} page requests for one refresh");
    app.sim.clear_faults();
    wait_until(DEADLINE, "a good answer", || async { app.get(&format!("/llm/logs?instanceId={id}")).await.0 == 200 })
        .await;
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
}
both_wires!(an_absurd_page_count_fails_one_refresh, absurd_page_count_v4, absurd_page_count_v5);

async fn the_line_cap_cuts_the_log(version: Version) {
    let app = spawn(sim(version, script("job", 400, 800, 0, 5), |_| {}), |c| c.logs.max_lines_per_instance = 150).await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines.len(), 150);
    assert_eq!(follow.last["truncated"], true);
    assert_eq!(follow.lines[..], app.sim.with_core(|c, _| c.final_lines(id))[..150]);
}
both_wires!(the_line_cap_cuts_the_log, line_cap_v4, line_cap_v5);

#[tokio::test]
async fn growing_logs_are_bounded_in_bytes() {
    let tag = "x".repeat(200); // 5 000 lines of ~280 bytes: over a MiB while it still runs
    let app = spawn(sim(Version::V4, script(&tag, 12_000, 120_000, 0, 5), |_| {}), |c| {
        c.logs.max_following_bytes = 1 << 20;
    })
    .await;
    let id = run(&app);
    // The first 55 s of the 120 s run, 5 s (500 lines) at a time, each step read as it
    // grows: the run still goes on for a minute then, however loaded the machine (it
    // failed once when a 20 s run had ended first). (A step's last lines may wait for
    // the worker's next flush.)
    for step in 1..=11u64 {
        app.clock.advance(Duration::from_secs(5));
        wait_until(DEADLINE, "a step read", || async {
            app.logs(id, 0).await["totalLines"].as_u64().unwrap() + 100 >= step * 500
        })
        .await;
    }
    wait_until(DEADLINE, "over a MiB held", || async {
        app.logs(id, 0).await["totalLines"].as_u64().unwrap() >= 5_000
    })
    .await;
    app.logs(id, 0).await; // one more refresh: its weight is counted
    let other = run(&app);
    let resp = app.http.get(format!("{}/llm/logs?instanceId={other}", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_following_bytes"), "{body}");
}
