//! The HTTP layer's unit tests: the auth helpers, faults, and a few lifecycles over HTTP.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::auth::{b64url, md5_hex, password_matches};
use super::*;
use crate::config::SimJob;
use crate::file::read_lines;
use crate::script::JobScript;
use crate::types::{Level, Record, TimeExpression};

#[test]
fn base64url_matches_the_fixture_header() {
    assert_eq!(b64url(br#"{"typ":"JWT","alg":"HS256"}"#), "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9");
    assert_eq!(b64url(b"a"), "YQ");
    assert_eq!(b64url(b"ab"), "YWI");
}

#[test]
fn md5_of_password() {
    assert_eq!(md5_hex("password"), "5f4dcc3b5aa765d61d8327deb882cf99");
    assert_eq!(password_matches("password", Some("5F4DCC3B5AA765D61D8327DEB882CF99"), Some("md5")), Ok(true));
    assert_eq!(password_matches("password", Some("password"), None), Ok(true));
    assert_eq!(password_matches("password", Some("x"), Some("sha1")), Err(()));
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.expect("answer").json().await.expect("JSON")
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> Value {
    let resp = reqwest::Client::new().post(url).form(form).send().await.expect("answer");
    resp.json().await.expect("JSON")
}

/// A live instance of job 12 with `n` lines.
fn logged(sim: &Simulator, n: i64) -> i64 {
    sim.with_core(|c, now| {
        let id = c.create_instance(12, None, now);
        c.dispatch(id, now);
        c.set_running(id, now);
        let records = (0..n)
            .map(|i| Record { log_time: now + i, level: Level::Info, content: format!("l{i}"), worker: "w:1".into() })
            .collect();
        c.deliver(id, records, now - 1);
        id
    })
}

#[tokio::test]
async fn hang_answers_nothing_then_resets() {
    let sim = Simulator::spawn(SimConfig::default()).await.expect("binds");
    let url = format!("{}/instance/log?appId=1&instanceId=42&index=0", sim.url());
    sim.inject(Fault::new(Some("/instance/log"), FaultKind::Hang(Duration::from_millis(300)), 2));
    let started = std::time::Instant::now();
    let err = reqwest::get(&url).await.expect_err("no answer");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!err.is_timeout(), "closed, not timed out: {err}");
    // A client with a shorter read timeout gives up first.
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().expect("client");
    assert!(quick.get(&url).send().await.expect_err("times out").is_timeout());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_json(&url).await["data"]["totalPages"], 1);
    assert_eq!(sim.requests("/instance/log"), 3);
}

#[tokio::test]
async fn absurd_total_pages_keep_the_real_data() {
    let sim = Simulator::spawn(SimConfig::default()).await.expect("binds");
    let id = logged(&sim, 150);
    let page = |index: u64| format!("{}/instance/log?appId=1&instanceId={id}&index={index}", sim.url());
    let real = get_json(&page(0)).await;
    assert_eq!(real["data"]["totalPages"], 2);
    sim.inject(Fault::always(Some("/instance/log"), FaultKind::TotalPages(1_000_000_000)));
    for _ in 0..3 {
        let faulty = get_json(&page(0)).await;
        assert_eq!(faulty["data"]["totalPages"], 1_000_000_000u64);
        assert_eq!(faulty["data"]["data"], real["data"]["data"]);
        assert_eq!(faulty["data"]["index"], 0);
    }
    let past = get_json(&page(7)).await;
    assert_eq!(past["data"], json!({"index": 7, "totalPages": 1_000_000_000u64, "data": ""}));
    // Other paths are not affected, nor are failure envelopes.
    let status_url = format!("{}/openApi/fetchInstanceStatus", sim.url());
    let info = post_form(&status_url, &[("instanceId", &id.to_string())]).await;
    assert_eq!(info["data"], 3);
    let failed = get_json(&format!("{}/instance/log?instanceId={id}&index=0", sim.url())).await;
    assert_eq!(failed["success"], false);
    assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::TotalPages(1_000_000_000)));
    sim.clear_faults();
    assert_eq!(get_json(&page(0)).await["data"]["totalPages"], 2);
}

/// Retry through the OpenAPI (§2.8, §6.11): the same id, `runningTimes` 2, the
/// second run's lines while it runs, then the first run's stable file again.
#[tokio::test]
async fn retry_over_http_replays_and_then_serves_the_old_stable_file() {
    let script = JobScript::from_text("first\nsecond\nthird", 300, 4, "boom");
    let job = SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) };
    let cfg = SimConfig {
        log_cache_ms: 100,
        worker_flush_ms: 100,
        sync_delay_ms: 1_000,
        jobs: vec![job],
        ..SimConfig::default()
    };
    let sim = Simulator::spawn(cfg).await.expect("binds");
    let api = |path: &str| format!("{}/openApi/{path}", sim.url());
    let run = post_form(&api("runJob"), &[("appId", "1"), ("jobId", "12")]).await;
    let id = run["data"].as_i64().expect("instance id").to_string();
    let form = [("appId", "1"), ("instanceId", id.as_str())];
    let log_url = format!("{}/instance/log?appId=1&instanceId={id}&index=0", sim.url());
    let lines = |v: &Value| read_lines(v["data"]["data"].as_str().unwrap_or_default());
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let info = post_form(&api("fetchInstanceInfo"), &form).await;
    assert_eq!((info["data"]["status"].as_i64(), info["data"]["runningTimes"].as_i64()), (Some(4), Some(1)));
    let first = lines(&get_json(&log_url).await);
    assert_eq!(first.len(), 3);
    assert_eq!(post_form(&api("retryInstance"), &form).await["success"], true);
    let info = post_form(&api("fetchInstanceInfo"), &form).await;
    assert_eq!(info["data"]["instanceId"].to_string(), id);
    assert_eq!(info["data"]["finishedTime"], Value::Null);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let info = post_form(&api("fetchInstanceInfo"), &form).await;
    assert_eq!((info["data"]["status"].as_i64(), info["data"]["runningTimes"].as_i64()), (Some(4), Some(2)));
    let second = lines(&get_json(&log_url).await);
    assert_eq!(second.len(), 3);
    assert!(second.iter().all(|l| !first.contains(l)), "the second run's lines: {second:?}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(lines(&get_json(&log_url).await), first);
}

#[tokio::test]
async fn frequent_jobs_over_http() {
    let cfg = SimConfig { clean_age_ms: 1_000, ..SimConfig::default() }
        .with_time_expression(12, TimeExpression::FixedDelay(30_000));
    let sim = Simulator::spawn(cfg).await.expect("binds");
    let job = post_form(&format!("{}/openApi/fetchJob", sim.url()), &[("appId", "1"), ("jobId", "12")]).await;
    assert_eq!(
        (job["data"]["timeExpressionType"].as_i64(), job["data"]["timeExpression"].as_str()),
        (Some(4), Some("30000"))
    );
    let id = logged(&sim, 2);
    assert_eq!(sim.clean_now(), 0);
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    assert_eq!(sim.clean_now(), 2);
    sim.restart();
    assert!(!sim.with_core(|c, _| c.is_live(id)));
}

#[test]
fn faults_are_consumed_in_order_and_by_path() {
    let sim = Simulator::new(SimConfig::default());
    sim.inject(Fault { path: Some("/instance/log".into()), kind: FaultKind::Http500, times: 2 });
    sim.inject(Fault { path: None, kind: FaultKind::Preparing, times: 1 });
    assert_eq!(sim.take_fault("/openApi/runJob"), None);
    assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::Http500));
    assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::Http500));
    assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::Preparing));
    assert_eq!(sim.take_fault("/instance/log"), None);
}

/// Issue 21: two servers (two runs of the demo) started one after the other hand out
/// different instance ids, as real snowflake ids are; each a snowflake id of its time.
#[tokio::test]
async fn two_simulators_started_in_turn_give_different_first_ids() {
    let mut firsts = Vec::new();
    for _ in 0..2 {
        let sim = Simulator::spawn(SimConfig::default()).await.expect("binds");
        let before = Simulator::now();
        let run = post_form(&format!("{}/openApi/runJob", sim.url()), &[("appId", "1"), ("jobId", "12")]).await;
        let id = run["data"].as_i64().expect("instance id");
        let created = (id >> 22) + crate::core::SNOWFLAKE_EPOCH_MS;
        assert!((before..=Simulator::now()).contains(&created), "{id} is a snowflake id of its creation time");
        firsts.push(id);
        sim.shutdown();
    }
    assert_ne!(firsts[0], firsts[1]);
    assert!(firsts.iter().all(|&id| id > 1 << 53));
}
