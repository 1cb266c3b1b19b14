//! End to end: the real router on a loopback port in front of the PowerJob simulator,
//! followed like a browser does, through every pitfall of protocol §6, to an exact
//! final result.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{app_config, fast_sim, sorted, Deadline, TestApp};
use powertail::sim::{
    Fault, FaultKind, JobScript, Level, Record, ScriptLine, ScriptWorker, SimConfig, SimJob, Simulator, Version,
};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// A run of `n` lines over `ms`, with a stack trace in the middle.
fn script(n: usize, ms: i64) -> JobScript {
    let mut text = String::new();
    for k in 0..n {
        text.push_str(&format!("[2026-11-25 10:00:{:02}] [INFO] step {k} of {n}\n", k % 60));
    }
    let mut s = JobScript::from_text(&text, ms, 5, "done");
    s.lines.insert(
        n / 2,
        ScriptLine {
            at_ms: ms / 2 + 1, // not on another line's timestamp: the order is then exact
            level: Level::Error,
            content: "load failed\njava.io.IOException: disk\n\tat a.B.c(B.java:1)\n".into(),
            worker: 0,
        },
    );
    s
}

fn sim_with(script: JobScript, f: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut cfg = fast_sim();
    cfg.jobs =
        vec![SimJob { id: 12, name: "vllm-start".into(), job_params: String::new(), script: Some(Arc::new(script)) }];
    f(&mut cfg);
    cfg
}

fn run(app: &TestApp) -> i64 {
    app.run_job(12)
}

#[tokio::test]
async fn follows_a_run_to_exactly_the_servers_log_without_poisoning_it() {
    let app = TestApp::spawn(sim_with(script(250, 1_500), |_| {})).await;
    let id = run(&app);
    let first = app.logs(id, 0).await;
    assert_eq!(first["lines"], Value::Array(vec![]), "nothing is read before first_read_delay_ms");
    assert_eq!(first["complete"], false);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
    assert_eq!(follow.lines.len(), 254, "250 records + a 4-line stack trace with its empty line");
    assert_eq!(follow.last["status"], "SUCCEED");
    assert_eq!(follow.last["stale"], false);
    // The upstream copy is not poisoned: after the sync it still holds the log.
    let synced = wait_for(|| app.sim.with_core(|c, now| c.log_page(id, 0, now).data.contains("step 0 of 250"))).await;
    assert!(synced);
    // A complete log is served from the cache with zero upstream requests.
    app.sim.reset_counters();
    let again = app.logs(id, 0).await;
    assert_eq!(again["totalLines"], 254);
    assert_eq!(again["complete"], true, "this answer (limit 1000 from 0) reaches the end");
    let partial = app.get(&format!("/llm/logs?instanceId={id}&limit=10")).await.1;
    assert_eq!(partial["complete"], false, "an answer that does not reach the end is not complete");
    assert_eq!(app.sim.requests("/openApi/fetchInstanceInfo") + app.sim.requests("/instance/log"), 0);
}

/// Polls `cond` every 50 ms for up to 10 s.
async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn late_batches_of_a_second_worker_are_appended_once() {
    let mut s = script(400, 2_000);
    // A second worker whose clock is 400 ms behind and flushes at another phase: its
    // batches sort before lines already served.
    s.workers.push(ScriptWorker { address: "10.0.0.22:27777".into(), clock_skew_ms: -400, flush_phase_ms: 130 });
    for k in 0..120 {
        s.lines.push(ScriptLine {
            at_ms: k * 16,
            level: Level::Info,
            content: format!("worker-2 shard {k}"),
            worker: 1,
        });
    }
    let app = TestApp::spawn(sim_with(s, |_| {})).await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    let expected = app.sim.with_core(|c, _| c.final_lines(id));
    assert_eq!(follow.lines.len(), expected.len());
    assert_eq!(sorted(follow.lines), sorted(expected));
}

#[tokio::test]
async fn a_windows_server_crlf_log_is_split_exactly() {
    let app = TestApp::spawn(sim_with(script(120, 800), |c| c.crlf = true)).await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
    assert!(follow.lines.iter().all(|l| !l.contains('\r')));
}

#[tokio::test]
async fn powerjob_5_with_console_login_and_expiring_tokens() {
    let cfg = sim_with(script(200, 1_500), |c| {
        c.version = Version::V5;
        c.openapi_auth = true;
        c.token_ttl_ms = 400; // app and console tokens expire several times during the run
    });
    let app = TestApp::spawn_with(cfg, "console_username = \"ADMIN\"\nconsole_password = \"powerjob_admin\"").await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
    assert!(app.sim.requests("/openApi/authApp") >= 2, "the app token was renewed");
    assert!(app.sim.requests("/auth/thirdPartyLoginDirect") >= 2, "the console login was renewed");
}

#[tokio::test]
async fn powerjob_5_without_a_console_user_is_a_clear_502() {
    let cfg = sim_with(script(50, 300), |c| c.version = Version::V5);
    let app = TestApp::spawn(cfg).await;
    let id = run(&app);
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = app.get(&format!("/llm/logs?instanceId={id}")).await;
        if last.0 != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, 502, "{}", last.1);
    assert_eq!(last.1["error"]["code"], "upstream_error");
    assert!(last.1["error"]["message"].as_str().unwrap().contains("console_username"), "{}", last.1);
}

#[tokio::test]
async fn placeholders_500s_and_resets_never_become_lines() {
    let app = TestApp::spawn(sim_with(script(300, 2_000), |_| {})).await;
    let id = run(&app);
    // Let the follow start, then break the upstream in every way for a while.
    let sim = app.sim.sim.clone();
    let chaos = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let log = Some("/instance/log".to_owned());
        let info = Some("/openApi/fetchInstanceInfo".to_owned());
        sim.inject(Fault { path: log.clone(), kind: FaultKind::Preparing, times: 4 });
        sim.inject(Fault { path: log.clone(), kind: FaultKind::ServerException, times: 2 });
        sim.inject(Fault { path: info.clone(), kind: FaultKind::Http500, times: 3 });
        sim.inject(Fault { path: log.clone(), kind: FaultKind::Reset, times: 2 });
        sim.inject(Fault { path: info, kind: FaultKind::NotJson, times: 2 });
        sim.inject(Fault { path: log, kind: FaultKind::HtmlError, times: 2 });
    });
    let follow = app.follow(id, DEADLINE).await;
    chaos.await.unwrap();
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
    assert!(follow.answers.iter().any(|a| a["stale"] == true), "some answer was served from the cache");
    assert!(!follow.lines.iter().any(|l| l.contains("being prepared") || l.contains("oms-server")));
}

#[tokio::test]
async fn a_log_read_too_early_by_someone_else_collapses_upstream_but_not_here() {
    let app = TestApp::spawn(sim_with(script(10, 100), |_| {})).await;
    let (id, worker_start) = app.sim.with_core(|c, now| {
        let id = c.create_instance(12, None, now);
        c.dispatch(id, now);
        // A naive poller reads before the first batch: the server writes the placeholder
        // stable file (pitfall 10).
        assert!(c.log_page(id, 0, now).data.starts_with("SYSTEM: There is no online log"));
        c.set_running(id, now);
        (id, now)
    });
    let records: Vec<Record> = (0..150)
        .map(|k| Record {
            log_time: worker_start + k,
            level: Level::Info,
            content: format!("line {k}"),
            worker: "10.0.0.21:27777".into(),
        })
        .collect();
    app.sim.with_core(|c, now| c.deliver(id, records, now));
    // Follow until the adapter holds the lines, then stop polling while the instance
    // finishes and the server syncs the poisoned file.
    let mut held = 0;
    for _ in 0..200 {
        held = app.logs(id, 0).await["totalLines"].as_u64().unwrap();
        if held == 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(held, 150);
    app.sim.with_core(|c, now| c.finish(id, 5, "ok", now));
    let collapsed = wait_for(|| {
        app.sim.with_core(|c, now| c.log_page(id, 0, now).data.starts_with("SYSTEM: There is no online log"))
    })
    .await;
    assert!(collapsed, "the server's copy collapsed to the placeholder after the sync");
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines.len(), 150, "the log held is kept");
    assert_eq!(follow.last["upstreamLost"], true);
    assert_eq!(follow.last["complete"], true);
}

#[tokio::test]
async fn a_waiting_instance_is_never_read() {
    let app = TestApp::spawn(sim_with(script(10, 100), |_| {})).await;
    let id = app.sim.with_core(|c, now| c.create_instance(12, None, now));
    for _ in 0..10 {
        let body = app.logs(id, 0).await;
        assert_eq!(body["status"], "WAITING_DISPATCH");
        assert_eq!(body["lines"], Value::Array(vec![]));
        assert_eq!(body["complete"], false);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(app.sim.requests("/instance/log"), 0);
    // Canceled before dispatch: complete at once, with no line and no log read.
    app.sim.with_core(|c, now| c.cancel_instance(id, now)).unwrap();
    let follow = app.follow(id, DEADLINE).await;
    assert!(follow.lines.is_empty());
    assert_eq!(follow.last["status"], "CANCELED");
    assert_eq!(app.sim.requests("/instance/log"), 0);
}

#[tokio::test]
async fn unknown_instance_is_404() {
    let app = TestApp::spawn(fast_sim()).await;
    let (status, body) = app.get("/llm/logs?instanceId=42").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "instance_not_found");
}

#[tokio::test]
async fn fails_over_to_the_second_address() {
    let sim = Simulator::spawn(sim_with(script(120, 500), |_| {})).await.unwrap();
    // Port 1 refuses connections.
    let config = app_config(&["http://127.0.0.1:1".into(), sim.url()], "");
    let app = TestApp::spawn_app(sim, &config).await;
    let id = run(&app);
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
}

#[tokio::test]
async fn upstream_faults_with_nothing_cached_map_to_502_and_504() {
    let app = TestApp::spawn(sim_with(script(10, 100), |_| {})).await;
    let info = Some("/openApi/fetchInstanceInfo".to_owned());
    app.sim.inject(Fault { path: info.clone(), kind: FaultKind::Delay(Duration::from_millis(2_500)), times: 1 });
    let (status, body) = app.get("/llm/logs?instanceId=677182124851200064").await;
    assert_eq!((status, body["error"]["code"].as_str()), (504, Some("upstream_timeout")), "{body}");
    tokio::time::sleep(Duration::from_millis(100)).await; // one refresh per interval
    app.sim.inject(Fault { path: info.clone(), kind: FaultKind::HtmlError, times: 1 });
    let (status, body) = app.get("/llm/logs?instanceId=677182124851200065").await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_error")), "{body}");
    app.sim.inject(Fault { path: info, kind: FaultKind::NotJson, times: 1 });
    let (status, body) = app.get("/llm/logs?instanceId=677182124851200066").await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_error")), "{body}");
}

#[tokio::test]
async fn many_readers_share_one_refresh_per_interval() {
    let app = TestApp::spawn(sim_with(script(400, 3_000), |_| {})).await;
    let id = run(&app);
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.sim.reset_counters();
    let started = std::time::Instant::now();
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let http = app.http.clone();
            let url = format!("{}/llm/logs?instanceId={id}", app.base);
            tokio::spawn(async move {
                for _ in 0..20 {
                    http.get(&url).send().await.unwrap().error_for_status().unwrap();
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let refreshes = app.sim.requests("/openApi/fetchInstanceInfo");
    // refresh_interval_ms = 50: at most one refresh per interval, plus the one in flight.
    assert!(refreshes <= elapsed_ms / 50 + 2, "{refreshes} refreshes in {elapsed_ms} ms for 640 reads");
    assert!(refreshes >= 1);
}

#[tokio::test]
async fn long_poll_answers_when_lines_arrive_and_raw_serves_text() {
    let app = TestApp::spawn(sim_with(script(60, 1_000), |_| {})).await;
    let id = run(&app);
    let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&waitMs=10000")).await;
    assert_eq!(status, 200);
    assert!(!body["lines"].as_array().unwrap().is_empty(), "the long-poll returned with lines: {body}");
    let follow = app.follow(id, DEADLINE).await;
    let raw = app.http.get(format!("{}/llm/logs/{id}/raw", app.base)).send().await.unwrap();
    assert_eq!(raw.headers()["content-type"], "text/plain; charset=utf-8");
    let text = raw.text().await.unwrap();
    assert_eq!(text, follow.lines.iter().map(|l| format!("{l}\n")).collect::<String>());
}

/// A finished instance of 20 000 lines (200 pages), finished 30 s ago.
fn big_finished_log(app: &TestApp) -> i64 {
    app.sim.with_core(|c, now| common::logged_instance(c, now, 60_000, (0..20_000).map(|k| format!("row {k}")), true))
}

#[tokio::test]
async fn a_big_finished_log_is_downloaded_whole_not_paged() {
    // 5.x: `downloadLogUrl` needs the console login, `downloadLog` none.
    let console = "console_username = \"ADMIN\"\nconsole_password = \"powerjob_admin\"";
    for (version, extra) in [(Version::V4, ""), (Version::V5, console)] {
        let app = TestApp::spawn_with(sim_with(script(1, 1), |c| c.version = version), extra).await;
        let id = big_finished_log(&app);
        app.sim.reset_counters();
        let follow = app.follow(id, DEADLINE).await;
        assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)), "{version:?}");
        // The server that answered is the one `downloadLogUrl` names: the file is its own.
        assert_eq!(app.sim.requests("/instance/downloadLogUrl"), 1, "{version:?}");
        assert_eq!(app.sim.requests("/instance/downloadLog"), 1, "{version:?}");
        let pages = app.sim.requests("/instance/log");
        assert!(pages <= 4, "{version:?}: {pages} page reads for 200 pages");
    }
}

#[tokio::test]
async fn a_log_held_by_another_server_is_paged_not_downloaded() {
    // `downloadLog` is not forwarded (protocol §4.7, §4.8): asked of a server that does
    // not hold the log, it would serve (and create) a placeholder. This server says the
    // log lives on 10.0.0.99:7700, which is not the configured address.
    let app = TestApp::spawn(fast_sim()).await;
    app.sim.set_local_address("10.0.0.99:7700");
    let id = big_finished_log(&app);
    app.sim.reset_counters();
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
    assert_eq!(follow.lines.len(), 20_000);
    assert_eq!(app.sim.requests("/instance/downloadLogUrl"), 1);
    assert_eq!(app.sim.requests("/instance/downloadLog"), 0, "never downloaded from a server without the log");
    let pages = app.sim.requests("/instance/log");
    assert!(pages >= 200, "read page by page: {pages} page reads for 200 pages");
}

#[tokio::test]
async fn an_idle_instance_is_evicted_and_read_again_transparently() {
    // Idle for 10 s of the test's clock, moved forward below: never by a slow machine.
    let app = TestApp::spawn_config(sim_with(script(400, 3_000), |_| {}), "", |c| {
        c.logs.idle_evict_ms = 10_000;
    })
    .await;
    let id = run(&app);
    let mut read: Vec<String> = Vec::new();
    let deadline = Deadline::after(DEADLINE);
    while read.len() < 100 {
        deadline.check(|| format!("{} lines read", read.len()));
        let body = app.logs(id, read.len() as u64).await;
        read.extend(serde_json::from_value::<Vec<String>>(body["lines"].clone()).unwrap());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Nobody reads for a while: the instance is dropped from the cache…
    assert!(app.logs.is_cached(id));
    app.clock.advance(Duration::from_millis(10_600));
    assert!(!app.logs.is_cached(id), "evicted after idle_evict_ms");
    app.sim.reset_counters();
    // …and read again from PowerJob when asked, continuing the same cursor.
    let follow = app.follow_from(id, read, DEADLINE).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
    assert!(app.logs.is_cached(id));
}
