//! The simulator answers field for field like the real server: for every fixture a
//! request can reproduce, the simulator's JSON has the same keys at every level and the
//! same JSON type per key (values differ where they are ids, times or tokens).

use std::collections::BTreeMap;
use std::time::Duration;

use powertail::sim::{Fault, FaultKind, Level, Record, SimConfig, SimHandle, Simulator, Version};
use serde_json::Value;

/// The shape of a JSON value: key sets and types, recursively.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/powerjob/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

struct Sim {
    handle: SimHandle,
    http: reqwest::Client,
    token: Option<String>,
    jwt: Option<String>,
}

impl Sim {
    async fn new(version: Version, f: impl FnOnce(&mut SimConfig)) -> Self {
        let mut cfg = SimConfig { version, ..SimConfig::default() };
        f(&mut cfg);
        Sim { handle: Simulator::spawn(cfg).await.unwrap(), http: reqwest::Client::new(), token: None, jwt: None }
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(format!("{}{path}", self.handle.url())).form(form);
        if let Some(t) = &self.token {
            req = req.header("X-POWERJOB-APP-ID", "1").header("X-POWERJOB-ACCESS-TOKEN", t);
        }
        let resp = req.send().await.unwrap();
        let headers = resp.headers().clone();
        (headers, resp.json().await.unwrap())
    }

    async fn post_json(&self, path: &str, body: &Value) -> Value {
        self.http.post(format!("{}{path}", self.handle.url())).json(body).send().await.unwrap().json().await.unwrap()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.handle.url()));
        if let Some(j) = &self.jwt {
            req = req.header("PowerJwt", j).header("AppId", "1");
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    fn now(&self) -> i64 {
        Simulator::now()
    }
}

fn check(got: &Value, fixture_name: &str, failures: &mut BTreeMap<String, String>) {
    let want = fixture(fixture_name);
    if shape(got) != shape(&want) {
        failures.insert(fixture_name.to_owned(), format!("got {got}\nwant shape {}", shape(&want)));
    }
}

#[tokio::test]
async fn the_simulator_matches_every_reproducible_fixture() {
    let mut failures = BTreeMap::new();
    let f = &mut failures;
    for version in [Version::V4, Version::V5] {
        let v5 = version == Version::V5;
        let mut sim = Sim::new(version, |_| {}).await;
        let (_, assert_ok) =
            sim.post_form("/openApi/assert", &[("appName", "llm-test-platform"), ("password", "secret")]).await;
        check(&assert_ok, "assert-ok.json", f);
        let (_, bad) = sim.post_form("/openApi/assert", &[("appName", "llm-test-platform"), ("password", "x")]).await;
        check(&bad, if v5 { "assert-fail-v5.json" } else { "assert-fail-v4.json" }, f);

        let (headers, run) = sim
            .post_form(
                "/openApi/runJob",
                &[("appId", "1"), ("jobId", "12"), ("delay", "0"), ("instanceParams", "{\"date\":\"2024-06-01\"}")],
            )
            .await;
        check(&run, "run-job-ok.json", f);
        if v5 {
            assert_eq!(headers["X-POWERJOB-AUTH-PASSED"], "true", "5.x without OpenAPI auth marks every answer");
        } else {
            assert!(headers.get("X-POWERJOB-AUTH-PASSED").is_none());
        }
        let id = run["data"].as_i64().unwrap().to_string();
        let (_, unknown) = sim.post_form("/openApi/runJob", &[("appId", "1"), ("jobId", "999")]).await;
        check(&unknown, if v5 { "run-job-unknown-job-v5.json" } else { "run-job-unknown-job-v4.json" }, f);
        if v5 {
            let (_, wrong) = sim.post_form("/openApi/runJob", &[("appId", "2"), ("jobId", "12")]).await;
            check(&wrong, "run-job-wrong-app-v5.json", f);
        }
        let (_, info) = sim.post_form("/openApi/fetchInstanceInfo", &[("instanceId", &id)]).await;
        check(&info, "instance-info-running.json", f);
        let id_num: i64 = id.parse().unwrap();
        sim.handle.with_core(|c, now| c.set_running(id_num, now));
        let (_, status) = sim.post_form("/openApi/fetchInstanceStatus", &[("instanceId", &id)]).await;
        check(&status, "instance-status-running.json", f);
        assert_eq!(status["data"], 3);
        if v5 {
            let (_, unknown) = sim.post_form("/openApi/fetchInstanceStatus", &[("instanceId", "42")]).await;
            check(&unknown, "instance-status-unknown-v5.json", f);
            let (_, cancel) = sim.post_form("/openApi/cancelInstance", &[("instanceId", &id), ("appId", "1")]).await;
            check(&cancel, "cancel-instance-too-late-v5.json", f);
            let (_, retry) = sim.post_form("/openApi/retryInstance", &[("instanceId", &id), ("appId", "1")]).await;
            check(&retry, "retry-instance-not-finished-v5.json", f);
        }
        let (_, stop) = sim.post_form("/openApi/stopInstance", &[("instanceId", &id), ("appId", "1")]).await;
        check(&stop, "void-ok.json", f);
        let (_, info) = sim.post_form("/openApi/fetchInstanceInfo", &[("instanceId", &id)]).await;
        check(&info, "instance-info-stopped.json", f);
        assert_eq!(info["data"]["result"], "stopped by user");
        if v5 {
            let (_, again) = sim.post_form("/openApi/stopInstance", &[("instanceId", &id), ("appId", "1")]).await;
            check(&again, "stop-instance-finished-v5.json", f);
        }
        let (_, job) = sim.post_form("/openApi/fetchJob", &[("jobId", "12"), ("appId", "1")]).await;
        check(&job, "fetch-job-ok.json", f);

        // Instance states by hand.
        let (waiting, done, no_worker) = sim.handle.with_core(|c, now| {
            let waiting = c.create_instance(12, Some("{}".into()), now);
            let done = c.create_instance(12, Some("{}".into()), now);
            c.dispatch(done, now);
            c.set_running(done, now);
            c.finish(done, 5, "ok", now);
            let no_worker = c.create_instance(12, Some("{}".into()), now);
            c.fail_no_worker(no_worker, now);
            (waiting, done, no_worker)
        });
        for (id, name) in [
            (waiting, "instance-info-waiting.json"),
            (done, "instance-info-succeed.json"),
            (no_worker, "instance-info-failed-no-worker.json"),
        ] {
            let (_, info) = sim.post_form("/openApi/fetchInstanceInfo", &[("instanceId", &id.to_string())]).await;
            check(&info, name, f);
        }

        // Logs.
        if v5 {
            let (_, denied) = sim.get(&format!("/instance/log?appId=1&instanceId={id}&index=0")).await;
            check(&denied, "console-not-logged-in.json", f);
            let bad_login = sim
                .post_json("/auth/thirdPartyLoginDirect", &serde_json::json!({"loginType": "PWJB", "originParams": "{\"username\":\"ADMIN\",\"password\":\"nope\"}"}))
                .await;
            check(&bad_login, "console-login-fail.json", f);
            let login = sim.post_json("/auth/thirdPartyLoginDirect", &fixture("console-login-request.json")).await;
            check(&login, "console-login-ok.json", f);
            sim.jwt = login["data"]["jwtToken"].as_str().map(str::to_owned);
            let (_, missing) = sim.get(&format!("/instance/log?instanceId={id}&index=0")).await;
            check(&missing, "log-error-missing-appid-v5.json", f);
        } else {
            let (_, unknown_app) = sim.get(&format!("/instance/log?appId=999&instanceId={id}&index=0")).await;
            check(&unknown_app, "log-error-unknown-app-v4.json", f);
        }
        let logged = sim.handle.with_core(|c, now| {
            let id = c.create_instance(12, None, now);
            c.dispatch(id, now);
            c.set_running(id, now);
            let records = (0..138)
                .map(|k| Record {
                    log_time: now + k,
                    level: Level::Info,
                    content: format!("processed record {k}"),
                    worker: "10.0.0.21:27777".into(),
                })
                .collect();
            c.deliver(id, records, now);
            id
        });
        let (_, p0) = sim.get(&format!("/instance/log?appId=1&instanceId={logged}&index=0")).await;
        check(&p0, "log-page-0.json", f);
        assert_eq!(
            (p0["data"]["totalPages"].as_i64(), p0["data"]["data"].as_str().map(|d| d.lines().count())),
            (Some(2), Some(100))
        );
        let (_, p1) = sim.get(&format!("/instance/log?appId=1&instanceId={logged}&index=1")).await;
        check(&p1, "log-page-1.json", f);
        let (_, p5) = sim.get(&format!("/instance/log?appId=1&instanceId={logged}&index=5")).await;
        check(&p5, "log-page-out-of-range.json", f);
        assert_eq!(p5["data"]["index"], 5);
        let (_, nolog) = sim.get("/instance/log?appId=1&instanceId=42&index=0").await;
        check(&nolog, "log-no-log.json", f);
        assert_eq!(nolog["data"]["data"], fixture("log-no-log.json")["data"]["data"]);
        let (_, exception) = sim.get(&format!("/instance/log?appId=1&instanceId={logged}")).await;
        check(&exception, "log-server-exception.json", f);
        sim.handle.inject(Fault { path: Some("/instance/log".into()), kind: FaultKind::Preparing, times: 1 });
        let (_, preparing) = sim.get(&format!("/instance/log?appId=1&instanceId={logged}&index=1")).await;
        check(&preparing, "log-preparing.json", f);
        assert_eq!(preparing["data"], fixture("log-preparing.json")["data"]);
        let empty = sim.handle.with_core(|c, now| {
            let id = c.create_instance(12, None, now);
            c.dispatch(id, now);
            c.deliver(id, Vec::new(), now); // the id is live before its rows are inserted
            id
        });
        let (_, e) = sim.get(&format!("/instance/log?appId=1&instanceId={empty}&index=0")).await;
        check(&e, "log-empty.json", f);
        assert_eq!(e["data"]["totalPages"], 0);
        let (_, url) = sim.get(&format!("/instance/downloadLogUrl?appId=1&instanceId={logged}")).await;
        check(&url, "download-log-url.json", f);
        let (status, not_found) = sim.get("/openApi/runJob2").await;
        assert_eq!(status, 404);
        check(&not_found, "spring-404.json", f);
        sim.token = None;
    }
    assert!(failures.is_empty(), "shape mismatches:\n{failures:#?}");
}

#[tokio::test]
async fn crlf_servers_end_lines_with_crlf() {
    let sim = Sim::new(Version::V4, |c| c.crlf = true).await;
    let id = sim.handle.with_core(|c, now| {
        let id = c.create_instance(12, None, now);
        c.dispatch(id, now);
        c.deliver(
            id,
            vec![Record { log_time: now, level: Level::Info, content: "x".into(), worker: "w:1".into() }],
            now,
        );
        id
    });
    let (_, page) = sim.get(&format!("/instance/log?appId=1&instanceId={id}&index=0")).await;
    let want = fixture("log-page-0-crlf-windows-server.json");
    assert_eq!(shape(&page), shape(&want));
    assert!(page["data"]["data"].as_str().unwrap().ends_with(" INFO x\r\n"));
}

#[tokio::test]
async fn openapi_auth_of_5x_rejects_and_expires_tokens_like_the_server() {
    let mut sim = Sim::new(Version::V5, |c| {
        c.openapi_auth = true;
        c.token_ttl_ms = 300;
    })
    .await;
    let bad = sim
        .post_json(
            "/openApi/authApp",
            &serde_json::json!({"appName": "llm-test-platform", "encryptedPassword": "x", "encryptType": "md5"}),
        )
        .await;
    check_one(&bad, "auth-fail.json");
    let unknown = sim
        .post_json(
            "/openApi/authApp",
            &serde_json::json!({"appName": "no-such-app", "encryptedPassword": "x", "encryptType": "md5"}),
        )
        .await;
    check_one(&unknown, "auth-fail-unknown-app.json");
    // The request fixture's password is "password"; ours is "secret".
    let md5 = "5ebe2294ecd0e0f08eab7690d2a6ee69";
    let ok = sim
        .post_json(
            "/openApi/authApp",
            &serde_json::json!({"appName": "llm-test-platform", "encryptedPassword": md5, "encryptType": "md5"}),
        )
        .await;
    check_one(&ok, "auth-app-ok.json");

    let resp = sim
        .http
        .post(format!("{}/openApi/fetchInstanceStatus", sim.handle.url()))
        .form(&[("instanceId", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["X-POWERJOB-AUTH-PASSED"], "false");
    check_one(&resp.json().await.unwrap(), "auth-appid-header-missing.json");
    let resp = sim
        .http
        .post(format!("{}/openApi/fetchInstanceStatus", sim.handle.url()))
        .header("X-POWERJOB-APP-ID", "1")
        .form(&[("instanceId", "1")])
        .send()
        .await
        .unwrap();
    check_one(&resp.json().await.unwrap(), "auth-token-missing.json");

    sim.token = ok["data"]["token"].as_str().map(str::to_owned);
    let (headers, passed) = sim.post_form("/openApi/fetchInstanceStatus", &[("instanceId", "42")]).await;
    assert_eq!(headers["X-POWERJOB-AUTH-PASSED"], "true", "auth passed even though the call failed");
    assert_eq!(passed["success"], false);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (headers, expired) = sim.post_form("/openApi/fetchInstanceStatus", &[("instanceId", "42")]).await;
    assert_eq!(headers["X-POWERJOB-AUTH-PASSED"], "false");
    check_one(&expired, "auth-token-expired.json");
    assert!(expired["message"].as_str().unwrap().starts_with("TOKEN_EXPIRED:JWT expired at "));
    let _ = sim.now();
}

fn check_one(got: &Value, name: &str) {
    let mut failures = BTreeMap::new();
    check(got, name, &mut failures);
    assert!(failures.is_empty(), "{failures:#?}");
}
