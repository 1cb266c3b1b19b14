//! The job side: run a named job with params → instanceId → follow its log to
//! complete, against both simulator versions; stop, retry, tokens and the allow-list.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast_sim, TestApp};
use powertail::config::Config;
use powertail::sim::{JobScript, SimConfig, SimJob, Simulator, Version};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN_RUN: &str = "run-token-0123456789abcdef";
const TOKEN_READ: &str = "read-token-0123456789abcdef";

fn sim_cfg(version: Version, f: impl FnOnce(&mut SimConfig)) -> SimConfig {
    let mut text = String::new();
    for k in 0..150 {
        text.push_str(&format!("[INFO] loading shard {k}\n"));
    }
    let mut cfg = fast_sim();
    cfg.version = version;
    cfg.jobs = vec![
        SimJob {
            id: 12,
            name: "vllm-start".into(),
            job_params: String::new(),
            script: Some(Arc::new(JobScript::from_text(&text, 1_500, 5, "ok"))),
        },
        SimJob {
            id: 13,
            name: "slow".into(),
            job_params: String::new(),
            script: Some(Arc::new(JobScript::from_text(&text, 60_000, 5, "ok"))),
        },
    ];
    f(&mut cfg);
    cfg
}

/// The adapter's config with jobs, tokens and an allow-list.
fn config(sim_url: &str, extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
        [powerjob]
        addresses = ["{sim_url}"]
        app_name = "llm-test-platform"
        app_password = "secret"
        console_username = "ADMIN"
        console_password = "powerjob_admin"
        request_timeout_ms = 1500
        log_cache_ms = 300
        worker_flush_ms = 200
        clock_skew_ms = 100
        [logs]
        refresh_interval_ms = 50
        first_read_delay_ms = 300
        [jobs.vllm-start]
        job_id = 12
        [jobs.vllm-start.params]
        modelName = "qwen-7b"
        port = 8000
        [jobs.slow]
        job_id = 13
        {extra}
        "#
    ))
    .unwrap()
}

async fn app(version: Version, sim: impl FnOnce(&mut SimConfig), extra: &str) -> TestApp {
    let sim = Simulator::spawn(sim_cfg(version, sim)).await.unwrap();
    let cfg = config(&sim.url(), extra);
    TestApp::spawn_app(sim, &cfg).await
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = app.http.post(format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn run_a_named_job_with_params_and_follow_it_on_both_versions() {
    for version in [Version::V4, Version::V5] {
        let app = app(version, |c| c.openapi_auth = true, "").await;
        let (status, body) = post(
            &app,
            "/llm/jobs/vllm-start/run",
            None,
            Some(json!({"instanceParams": {"port": 8001, "callbackUrl": "http://cb"}})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["jobId"], "12");
        let id: i64 = body["instanceId"].as_str().unwrap().parse().unwrap();
        assert_eq!(body["logsUrl"], format!("/llm/logs?instanceId={id}"));
        assert_eq!(body["startupUrl"], format!("/llm/instances/{id}/startup"));
        // The params PowerJob received: the request's object merged over the defaults.
        let info = app.sim.with_core(|c, now| c.instance_info(id, now)).unwrap();
        let params: Value = serde_json::from_str(info["instanceParams"].as_str().unwrap()).unwrap();
        assert_eq!(params, json!({"modelName": "qwen-7b", "port": 8001, "callbackUrl": "http://cb"}));
        let follow = app.follow(id, DEADLINE).await;
        assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)), "{version:?}");
        let (status, inst) = app.get(&format!("/llm/instances/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(
            (inst["status"].as_str(), inst["jobId"].as_str(), inst["result"].as_str()),
            (Some("SUCCEED"), Some("12"), Some("ok"))
        );
    }
}

#[tokio::test]
async fn stop_and_retry_an_instance() {
    let app = app(Version::V5, |_| {}, "").await;
    let (_, body) = post(&app, "/llm/jobs/13/run", None, None).await;
    let id = body["instanceId"].as_str().unwrap().to_owned();
    let (status, body) = post(&app, &format!("/llm/instances/{id}/stop"), None, None).await;
    assert_eq!((status, &body), (200, &json!({"instanceId": id, "stopped": true})));
    let (status, body) = post(&app, &format!("/llm/instances/{id}/stop"), None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let (_, inst) = app.get(&format!("/llm/instances/{id}")).await;
    assert_eq!(inst["status"], "STOPPED");
    let (status, body) = post(&app, &format!("/llm/instances/{id}/retry"), None, None).await;
    assert_eq!((status, &body), (200, &json!({"instanceId": id, "retried": true})));
    let (status, body) = post(&app, "/llm/instances/42/stop", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("instance_not_found")), "{body}");
}

async fn app_v5_with(extra: &str) -> TestApp {
    app(Version::V5, |_| {}, extra).await
}

/// `POST path` must answer 409 `conflict` with exactly `message`.
async fn assert_conflict(app: &TestApp, path: &str, message: &str) {
    let (status, body) = post(app, path, None, None).await;
    assert_eq!((status, &body), (409, &json!({"error": {"code": "conflict", "message": message}})), "{path}");
}

#[tokio::test]
async fn operations_in_the_wrong_state_name_the_instances_real_state() {
    for version in [Version::V4, Version::V5] {
        let app = app(version, |_| {}, "").await;
        let (finished, running) = app.sim.with_core(|c, now| {
            let finished = c.create_instance(12, None, now);
            c.dispatch(finished, now);
            c.set_running(finished, now);
            c.finish(finished, 5, "ok", now);
            let running = c.create_instance(13, None, now);
            c.dispatch(running, now);
            c.set_running(running, now);
            (finished, running)
        });
        // PowerJob says "instance already up and running" for a finished instance.
        let cancel = "only an instance still waiting for dispatch (WAITING_DISPATCH) can be canceled";
        assert_conflict(
            &app,
            &format!("/llm/instances/{finished}/cancel"),
            &format!("instance {finished} is SUCCEED; {cancel}"),
        )
        .await;
        assert_conflict(
            &app,
            &format!("/llm/instances/{running}/cancel"),
            &format!("instance {running} is RUNNING; {cancel}"),
        )
        .await;
        let stop = "only a waiting or running instance can be stopped";
        assert_conflict(
            &app,
            &format!("/llm/instances/{finished}/stop"),
            &format!("instance {finished} is SUCCEED; {stop}"),
        )
        .await;
        let retry = "only a finished instance (FAILED, SUCCEED, CANCELED or STOPPED) can be retried";
        assert_conflict(
            &app,
            &format!("/llm/instances/{running}/retry"),
            &format!("instance {running} is RUNNING; {retry}"),
        )
        .await;
        // A delayed run can be canceled, once.
        let (status, body) = post(&app, "/llm/jobs/13/run", None, Some(json!({"delayMs": 60_000}))).await;
        assert_eq!(status, 201, "{body}");
        let delayed = body["instanceId"].as_str().unwrap().to_owned();
        let (status, body) = post(&app, &format!("/llm/instances/{delayed}/cancel"), None, None).await;
        assert_eq!((status, &body), (200, &json!({"instanceId": delayed, "canceled": true})));
        assert_conflict(
            &app,
            &format!("/llm/instances/{delayed}/cancel"),
            &format!("instance {delayed} is CANCELED; {cancel}"),
        )
        .await;
        assert_conflict(
            &app,
            &format!("/llm/instances/{delayed}/stop"),
            &format!("instance {delayed} is CANCELED; {stop}"),
        )
        .await;
    }
}

#[tokio::test]
async fn app_tokens_expiring_during_a_run_are_renewed() {
    let app = app(
        Version::V5,
        |c| {
            c.openapi_auth = true;
            c.token_ttl_ms = 300;
        },
        "",
    )
    .await;
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", None, None).await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", None, None).await;
    assert_eq!(status, 201, "an expired token is renewed and the call replayed: {body}");
    let id: i64 = body["instanceId"].as_str().unwrap().parse().unwrap();
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines.len(), 150);
    assert!(app.sim.requests("/openApi/authApp") >= 2);
}

#[tokio::test]
async fn wrong_app_password_is_a_clear_502_without_the_password() {
    let sim = Simulator::spawn(sim_cfg(Version::V5, |c| c.app_password = "other-secret".into())).await.unwrap();
    let cfg = config(&sim.url(), "");
    let app = TestApp::spawn_app(sim, &cfg).await;
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_error")), "{body}");
    let text = body.to_string();
    assert!(text.contains("INCORRECT_PASSWORD"), "{text}");
    assert!(!text.contains("secret"), "no password in errors: {text}");
}

#[tokio::test]
async fn unknown_jobs_and_the_allow_list() {
    let app = app(Version::V4, |_| {}, "[auth]\nallowed_jobs = [\"vllm-start\"]").await;
    let (status, body) = post(&app, "/llm/jobs/no-such-job/run", None, None).await;
    assert_eq!(
        (status, &body),
        (
            404,
            &json!({"error": {"code": "job_not_found", "message": "no job named `no-such-job` is configured \
                (use a numeric PowerJob job id or a [jobs.<name>] entry)"}})
        )
    );
    let (status, body) = post(&app, "/llm/jobs/slow/run", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = post(&app, "/llm/jobs/13/run", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "ids are checked too: {body}");
    let (status, _) = post(&app, "/llm/jobs/12/run", None, None).await;
    assert_eq!(status, 201, "job 12 is vllm-start");
    // A numeric job PowerJob does not know, and a configured name of one.
    let app = app_v5_with(&["[jobs.ghost]", "job_id = 77"].join("\n")).await;
    let (status, body) = post(&app, "/llm/jobs/999/run", None, None).await;
    assert_eq!(
        (status, &body),
        (404, &json!({"error": {"code": "job_not_found", "message": "PowerJob has no job 999"}}))
    );
    let (status, body) = post(&app, "/llm/jobs/ghost/run", None, None).await;
    let message = "PowerJob has no job 77 (configured as `ghost`)";
    assert_eq!((status, &body), (404, &json!({"error": {"code": "job_not_found", "message": message}})));
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", None, Some(json!({"instanceParams": [1]}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", None, Some(json!({"instanceParam": {}}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "unknown fields: {body}");
    let resp = app
        .http
        .post(format!("{}/llm/jobs/vllm-start/run", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = app
        .http
        .post(format!("{}/llm/jobs/vllm-start/run", app.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn tokens_and_scopes() {
    let extra = format!(
        r#"
        [[auth.tokens]]
        name = "platform"
        token = "{TOKEN_RUN}"
        scopes = ["logs:read", "jobs:run", "jobs:control"]
        [[auth.tokens]]
        name = "viewer"
        token = "{TOKEN_READ}"
        scopes = ["logs:read"]
        "#
    );
    let app = app(Version::V4, |_| {}, &extra).await;
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "missing token: {body}");
    let (status, _) = post(&app, "/llm/jobs/vllm-start/run", Some("wrong-token-0123456789"), None).await;
    assert_eq!(status, 401);
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", Some(TOKEN_READ), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = post(&app, "/llm/jobs/vllm-start/run", Some(TOKEN_RUN), None).await;
    assert_eq!(status, 201, "{body}");
    let id = body["instanceId"].as_str().unwrap();
    let (status, _) = app.get(&format!("/llm/logs?instanceId={id}")).await;
    assert_eq!(status, 401, "reads need a token once tokens are configured");
    let resp =
        app.http.get(format!("{}/llm/logs?instanceId={id}", app.base)).bearer_auth(TOKEN_READ).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn duplicate_token_names_and_values_are_rejected_at_start() {
    let token = |name: &str, value: &str| {
        format!("[[auth.tokens]]\nname = \"{name}\"\ntoken = \"{value}\"\nscopes = [\"logs:read\"]\n")
    };
    let load = |tokens: String| {
        let text = format!("[powerjob]\naddresses = [\"http://x\"]\napp_name = \"a\"\napp_password = \"p\"\n{tokens}");
        Config::from_toml(&text).unwrap_err().to_string()
    };
    let err = load(token("a", TOKEN_RUN) + &token("a", TOKEN_READ));
    assert!(err.contains("used twice"), "{err}");
    let err = load(token("a", TOKEN_RUN) + &token("b", TOKEN_RUN));
    assert!(err.contains("same value") && !err.contains(TOKEN_RUN), "{err}");
    let err = load(token("a", "short"));
    assert!(err.contains("at least 16") && !err.contains("short\""), "{err}");
}
