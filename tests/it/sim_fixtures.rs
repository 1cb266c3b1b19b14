//! The HTTP simulator against the recorded PowerJob JSON in `fixtures/powerjob/`: for
//! every fixture a request can reproduce, the simulator's answer has the same keys at
//! every level and the same JSON type per key (null where the fixture has null), on 4.3.x
//! and 5.1.x where the file is not version-specific. Texts that are not ids, times or
//! tokens are compared exactly, and so are whole log pages rebuilt from the fixture's
//! own records. Also the `X-POWERJOB-AUTH-PASSED` headers and the 5.x token flows.

use std::time::Duration;

use powertail::sim::{Fault, FaultKind, Level, Record, SimConfig, SimHandle, Simulator, Version};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

const AUTH_PASSED: &str = "X-POWERJOB-AUTH-PASSED";

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/powerjob/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The 4.x form of a 5.x error envelope: no `code`.
fn without_code(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("code");
    }
    v
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Same keys at every level and the same JSON type per key.
fn assert_shape(expected: &Value, actual: &Value, at: &str) {
    assert_eq!(kind(expected), kind(actual), "type at {at}: expected {expected}, got {actual}");
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let ek: Vec<&String> = e.keys().collect();
            let ak: Vec<&String> = a.keys().collect();
            assert_eq!(ek, ak, "keys at {at}");
            for (k, ev) in e {
                assert_shape(ev, &a[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e0), Some(a0)) = (e.first(), a.first()) {
                assert_shape(e0, a0, &format!("{at}[0]"));
            }
        }
        _ => {}
    }
}

/// Shape of the fixture, plus its exact `message` (and `code`, `success`).
fn assert_like(name: &str, actual: &Value) {
    assert_like_value(&fixture(name), actual, name);
}

fn assert_like_value(expected: &Value, actual: &Value, name: &str) {
    assert_shape(expected, actual, name);
    for key in ["success", "message", "code"] {
        assert_eq!(expected.get(key), actual.get(key), "{name}: {key}");
    }
}

/// The fixture as it is on `version` (5.x error fixtures lose `code` on 4.x).
fn versioned(name: &str, version: Version) -> Value {
    match version {
        Version::V5 => fixture(name),
        Version::V4 => without_code(fixture(name)),
    }
}

struct Sim {
    handle: SimHandle,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Sim {
    async fn spawn(cfg: SimConfig) -> Self {
        let handle = Simulator::spawn(cfg).await.expect("simulator binds");
        Sim { handle, http: reqwest::Client::new() }
    }

    async fn answer(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        Answer { status, headers, body }
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.handle.url())).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.send().await.expect("request")).await
    }

    async fn form(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.post_form(path, form, &[]).await.body
    }

    async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let req = self.http.post(format!("{}{path}", self.handle.url())).json(body);
        Self::answer(req.send().await.expect("request")).await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.handle.url()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.send().await.expect("request")).await
    }

    async fn log(&self, query: &str, headers: &[(&str, &str)]) -> Value {
        self.get(&format!("/instance/log?{query}"), headers).await.body
    }

    /// A 5.x console login; the JWT.
    async fn login(&self) -> String {
        let a = self.post_json("/auth/thirdPartyLoginDirect", &fixture("console-login-request.json")).await;
        assert_like("console-login-ok.json", &a.body);
        a.body["data"]["jwtToken"].as_str().expect("jwt").to_owned()
    }
}

/// Parses log text back into records: a line with a timestamp starts a record, others
/// continue it (so a stack trace and its trailing empty line become one record).
fn records_of(text: &str) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    for line in text.split('\n') {
        let head = line.get(..23).and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.3f").ok());
        match (head, line.get(24..).and_then(|rest| rest.strip_prefix('['))) {
            (Some(t), Some(rest)) => {
                let (worker, rest) = rest.split_once("] ").expect("worker");
                let (level, content) = rest.split_once(' ').expect("level");
                let level = match level {
                    "DEBUG" => Level::Debug,
                    "INFO" => Level::Info,
                    "WARN" => Level::Warn,
                    _ => Level::Error,
                };
                // The fixtures' server is in +08:00.
                let log_time = t.and_utc().timestamp_millis() - 8 * 3_600_000;
                records.push(Record { log_time, level, content: content.into(), worker: worker.into() });
            }
            _ => {
                let last = records.last_mut().expect("a continuation follows a record");
                last.content.push('\n');
                last.content.push_str(line);
            }
        }
    }
    records
}

/// The 138-line log of `log-page-0.json` + `log-page-1.json`, as worker records.
fn fixture_records() -> Vec<Record> {
    let mut text = String::new();
    for name in ["log-page-0.json", "log-page-1.json"] {
        text.push_str(fixture(name)["data"]["data"].as_str().expect("page text"));
    }
    // Every line ends with '\n', so the last element of the split is the final "".
    let text = text.strip_suffix('\n').expect("ends with a separator");
    records_of(text)
}

/// A running instance whose records already arrived.
fn logged_instance(sim: &Simulator, records: Vec<Record>) -> i64 {
    sim.with_core(|c, now| {
        let id = c.create_instance(12, Some("{\"date\":\"2024-06-01\"}".into()), now);
        c.dispatch(id, now);
        c.set_running(id, now);
        c.deliver(id, records, now - 1);
        id
    })
}

#[tokio::test]
async fn openapi_answers_match_the_fixtures_on_both_versions() {
    for version in [Version::V4, Version::V5] {
        let v = if version == Version::V4 { "v4" } else { "v5" };
        let sim = Sim::spawn(SimConfig { version, ..SimConfig::default() }).await;

        let a =
            sim.post_form("/openApi/assert", &[("appName", "llm-test-platform"), ("password", "secret")], &[]).await;
        assert_like("assert-ok.json", &a.body);
        assert_eq!(a.body["data"], 1);
        let bad = sim.form("/openApi/assert", &[("appName", "llm-test-platform"), ("password", "x")]).await;
        assert_like(&format!("assert-fail-{v}.json"), &bad);
        // A JSON body does not bind to form parameters.
        let json_run = sim.post_json("/openApi/runJob", &json!({"appId": 1, "jobId": 12})).await;
        assert_shape(&versioned("run-job-unknown-job-v5.json", version), &json_run.body, v);
        assert_eq!(json_run.body["message"], "IllegalArgumentException: can't find job by jobId: null");

        let unknown = sim.form("/openApi/runJob", &[("appId", "1"), ("jobId", "999")]).await;
        assert_like(&format!("run-job-unknown-job-{v}.json"), &unknown);
        let wrong_app = sim.form("/openApi/runJob", &[("appId", "2"), ("jobId", "12")]).await;
        assert_like_value(&versioned("run-job-wrong-app-v5.json", version), &wrong_app, v);

        // Delayed: still waiting, cancellable.
        let params = "{\"date\":\"2024-06-01\"}";
        let delayed = sim
            .form(
                "/openApi/runJob",
                &[("appId", "1"), ("jobId", "12"), ("delay", "600000"), ("instanceParams", params)],
            )
            .await;
        assert_like("run-job-ok.json", &delayed);
        let delayed_id = delayed["data"].as_i64().expect("i64 id").to_string();
        let info = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", &delayed_id)]).await;
        assert_shape(&fixture("instance-info-waiting.json"), &info, "waiting");
        assert_eq!(info["data"]["status"], 1);
        let cancel = sim.form("/openApi/cancelInstance", &[("instanceId", &delayed_id), ("appId", "1")]).await;
        assert_like("void-ok.json", &cancel);

        let run = sim.form("/openApi/runJob", &[("appId", "1"), ("jobId", "12"), ("instanceParams", params)]).await;
        assert_like("run-job-ok.json", &run);
        let id = run["data"].as_i64().expect("i64 id");
        assert!(id > 1 << 53);
        let sid = id.to_string();
        sim.handle.with_core(|c, now| c.set_running(id, now));
        let info = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", &sid)]).await;
        assert_shape(&fixture("instance-info-running.json"), &info, "running");
        assert_eq!(info["data"]["instanceParams"], params);
        let status = sim.form("/openApi/fetchInstanceStatus", &[("instanceId", &sid)]).await;
        assert_eq!(status, fixture("instance-status-running.json"));
        let unknown = sim.form("/openApi/fetchInstanceStatus", &[("instanceId", "42")]).await;
        assert_like_value(&versioned("instance-status-unknown-v5.json", version), &unknown, v);
        let unknown = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", "42")]).await;
        assert_like_value(&versioned("instance-status-unknown-v5.json", version), &unknown, v);

        let too_late = sim.form("/openApi/cancelInstance", &[("instanceId", &sid), ("appId", "1")]).await;
        assert_like_value(&versioned("cancel-instance-too-late-v5.json", version), &too_late, v);
        let not_finished = sim.form("/openApi/retryInstance", &[("instanceId", &sid), ("appId", "1")]).await;
        assert_like_value(&versioned("retry-instance-not-finished-v5.json", version), &not_finished, v);
        let other_app = sim.form("/openApi/stopInstance", &[("instanceId", &sid), ("appId", "2")]).await;
        assert_eq!(
            other_app["message"],
            "IllegalArgumentException: instance is not belong to the app whose appId is 2"
        );
        let stop = sim.form("/openApi/stopInstance", &[("instanceId", &sid), ("appId", "1")]).await;
        assert_like("void-ok.json", &stop);
        let info = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", &sid)]).await;
        assert_shape(&fixture("instance-info-stopped.json"), &info, "stopped");
        assert_eq!(info["data"]["result"], "stopped by user");
        let again = sim.form("/openApi/stopInstance", &[("instanceId", &sid), ("appId", "1")]).await;
        assert_like_value(&versioned("stop-instance-finished-v5.json", version), &again, v);
        let retry = sim.form("/openApi/retryInstance", &[("instanceId", &sid), ("appId", "1")]).await;
        assert_like("void-ok.json", &retry);
        let info = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", &sid)]).await;
        assert_eq!((info["data"]["status"].as_i64(), &info["data"]["finishedTime"]), (Some(2), &Value::Null));

        sim.handle.with_core(|c, now| c.finish(id, 5, "done: success=131, failed=1", now));
        let info = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", &sid)]).await;
        assert_shape(&fixture("instance-info-succeed.json"), &info, "succeed");
        let no_worker = sim.handle.with_core(|c, now| {
            let id = c.create_instance(12, Some(params.into()), now);
            c.fail_no_worker(id, now);
            id
        });
        let info = sim.form("/openApi/fetchInstanceInfo", &[("instanceId", &no_worker.to_string())]).await;
        assert_shape(&fixture("instance-info-failed-no-worker.json"), &info, "no worker");
        assert_eq!(info["data"]["taskTrackerAddress"], "N/A");

        let job = sim.form("/openApi/fetchJob", &[("jobId", "12"), ("appId", "1")]).await;
        assert_like("fetch-job-ok.json", &job);
        assert_shape(&fixture("fetch-job-ok.json"), &job, "job");

        // Wrong method on a mapped path: a failure envelope with HTTP 200.
        let get = sim.get("/openApi/runJob", &[]).await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.body["message"], "HttpRequestMethodNotSupportedException: Request method 'GET' not supported");
        // Unmapped paths: Spring's 404; runJob2 is not in 5.1.1, authApp not in 4.x.
        for path in ["/openApi/runJob2", "/nope"] {
            let a = sim.get(path, &[]).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND);
            assert_shape(&fixture("spring-404.json"), &a.body, "404");
            assert_eq!(a.body["path"], path);
        }
        let auth = sim.post_json("/openApi/authApp", &fixture("auth-app-request.json")).await;
        assert_eq!(auth.status == StatusCode::NOT_FOUND, version == Version::V4);

        // Headers (§2.1): 4.x none; 5.x with auth disabled: `true` on every /openApi answer.
        let a = sim.post_form("/openApi/fetchInstanceStatus", &[("instanceId", "42")], &[]).await;
        let b = sim.post_form("/openApi/assert", &[("appName", "x")], &[]).await;
        for h in [&a.headers, &b.headers] {
            let expected = (version == Version::V5).then_some("true");
            assert_eq!(h.get(AUTH_PASSED).and_then(|v| v.to_str().ok()), expected);
        }
        let log = sim.get("/instance/log?appId=1&instanceId=42&index=0", &[]).await;
        assert!(log.headers.get(AUTH_PASSED).is_none());
    }
}

#[tokio::test]
async fn query_instance_is_paged_on_v5_and_unusable_on_v4() {
    let sim = Sim::spawn(SimConfig { version: Version::V5, ..SimConfig::default() }).await;
    let id = sim.handle.with_core(|c, now| {
        let id = c.run_job(12, Some("{\"date\":\"2024-06-01\"}".into()), 0, now).expect("job 12");
        c.finish(id, 5, "done", now);
        id
    });
    let a = sim.post_json("/openApi/queryInstance", &fixture("query-instance-request-v5.json")).await;
    assert_like("query-instance-v5.json", &a.body);
    assert_shape(&fixture("query-instance-v5.json"), &a.body, "query");
    assert_eq!(a.body["data"]["data"][0]["instanceId"], id);
    let v4 = Sim::spawn(SimConfig::default()).await;
    let a = v4.post_json("/openApi/queryInstance", &fixture("query-instance-request-v5.json")).await;
    assert_eq!(a.body["success"], false);
}

#[tokio::test]
async fn log_pages_are_the_fixture_pages_byte_for_byte() {
    for version in [Version::V4, Version::V5] {
        let sim = Sim::spawn(SimConfig { version, ..SimConfig::default() }).await;
        let jwt = if version == Version::V5 { sim.login().await } else { String::new() };
        let auth: Vec<(&str, &str)> = if version == Version::V5 { vec![("PowerJwt", &jwt)] } else { vec![] };
        let records = fixture_records();
        assert_eq!(records.len(), 133, "132 INFO records and one exception record");
        let id = logged_instance(&sim.handle, records);

        let p0 = sim.log(&format!("appId=1&instanceId={id}&index=0"), &auth).await;
        assert_eq!(p0, fixture("log-page-0.json"));
        let p1 = sim.log(&format!("appId=1&instanceId={id}&index=1"), &auth).await;
        assert_eq!(p1, fixture("log-page-1.json"));
        let p5 = sim.log(&format!("appId=1&instanceId={id}&index=5"), &auth).await;
        assert_eq!(p5, fixture("log-page-out-of-range.json"));

        // Unknown id: the "no online log" page.
        let none = sim.log("appId=1&instanceId=42&index=0", &auth).await;
        assert_eq!(none, fixture("log-no-log.json"));
        // A live log without rows yet.
        let empty = sim.handle.with_core(|c, now| {
            let id = c.create_instance(12, None, now);
            c.deliver(id, Vec::new(), now - 1);
            id
        });
        let e = sim.log(&format!("appId=1&instanceId={empty}&index=0"), &auth).await;
        assert_eq!(e, fixture("log-empty.json"));
        // Missing index: the exception placeholder.
        let ex = sim.log(&format!("appId=1&instanceId={id}"), &auth).await;
        assert_eq!(ex, fixture("log-server-exception.json"));
        // Placeholders by fault injection, whatever page was asked for.
        sim.handle.inject(Fault { path: Some("/instance/log".into()), kind: FaultKind::Preparing, times: 1 });
        let prep = sim.log(&format!("appId=1&instanceId={id}&index=1"), &auth).await;
        assert_eq!(prep, fixture("log-preparing.json"));
        sim.handle.inject(Fault { path: None, kind: FaultKind::ServerException, times: 1 });
        let ex = sim.log(&format!("appId=1&instanceId={id}&index=1"), &auth).await;
        assert_eq!(ex, fixture("log-server-exception.json"));

        // appId errors.
        let unknown_app = sim.log(&format!("appId=999&instanceId={id}&index=0"), &auth).await;
        assert_shape(&versioned("log-error-missing-appid-v5.json", version), &unknown_app, "unknown app");
        assert_eq!(unknown_app["message"], fixture("log-error-unknown-app-v4.json")["message"]);
        let missing = sim.log(&format!("instanceId={id}&index=0"), &auth).await;
        assert_like_value(&versioned("log-error-missing-appid-v5.json", version), &missing, "missing appId");

        // Download URL and the padded download.
        let url = sim.get(&format!("/instance/downloadLogUrl?appId=1&instanceId={id}"), &auth).await;
        assert_shape(&fixture("download-log-url.json"), &url.body, "url");
        let url = url.body["data"].as_str().expect("url").to_owned();
        assert!(url.ends_with(&format!("/instance/downloadLog?instanceId={id}")));
        let resp = sim.http.get(&url).send().await.expect("download");
        assert_eq!(resp.headers()["content-type"], "application/octet-stream");
        assert_eq!(resp.headers()["content-disposition"], format!("attachment;filename={id}-temporary.log").as_str());
        let body = resp.bytes().await.expect("body");
        let text = format!(
            "{}{}",
            fixture("log-page-0.json")["data"]["data"].as_str().unwrap_or_default(),
            fixture("log-page-1.json")["data"]["data"].as_str().unwrap_or_default()
        );
        assert_eq!(body.len() % 4096, 0);
        assert!(body.len() >= text.len() && body.len() < text.len() + 4096);
        assert_eq!(&body[..text.len()], text.as_bytes());
    }
}

#[tokio::test]
async fn windows_server_pages_end_lines_with_crlf() {
    let sim = Sim::spawn(SimConfig { crlf: true, ..SimConfig::default() }).await;
    let id = logged_instance(&sim.handle, fixture_records().into_iter().take(3).collect());
    let p = sim.log(&format!("appId=1&instanceId={id}&index=0"), &[]).await;
    assert_eq!(p, fixture("log-page-0-crlf-windows-server.json"));
}

#[tokio::test]
async fn v5_console_login_permissions_and_expiry() {
    let cfg = SimConfig { version: Version::V5, token_ttl_ms: 1_000, ..SimConfig::default() };
    let sim = Sim::spawn(cfg).await;
    let id = logged_instance(&sim.handle, fixture_records());
    let q = format!("appId=1&instanceId={id}&index=0");

    assert_eq!(sim.log(&q, &[]).await, fixture("console-not-logged-in.json"));
    assert_eq!(sim.log(&q, &[("PowerJwt", "garbage")]).await, fixture("console-not-logged-in.json"));
    let fail = sim
        .post_json(
            "/auth/thirdPartyLoginDirect",
            &json!({"loginType": "PWJB", "originParams": "{\"username\":\"ADMIN\",\"password\":\"nope\"}"}),
        )
        .await;
    assert_eq!(fail.body, fixture("console-login-fail.json"));
    let unknown = sim
        .post_json(
            "/auth/thirdPartyLoginDirect",
            &json!({"loginType": "PWJB", "originParams": "{\"username\":\"bob\",\"password\":\"x\"}"}),
        )
        .await;
    assert_eq!(unknown.body["message"], "UserNotExist");

    let jwt = sim.login().await;
    assert_eq!(sim.log(&q, &[("PowerJwt", &jwt)]).await, fixture("log-page-0.json"));
    // The legacy 5.0.x header name still works.
    assert_eq!(sim.log(&q, &[("Power_jwt", &jwt)]).await, fixture("log-page-0.json"));
    let who = sim.get("/auth/ifLogin", &[("PowerJwt", &jwt)]).await;
    assert_eq!(who.body["data"]["username"], "PWJB_ADMIN");

    // Console JWT expiry: treated like no token.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(sim.log(&q, &[("PowerJwt", &jwt)]).await, fixture("console-not-logged-in.json"));
    let who = sim.get("/auth/ifLogin", &[("PowerJwt", &jwt)]).await;
    assert_eq!(who.body, json!({"success": true, "data": null, "message": null}));
    // The download itself needs no login in either version.
    let resp = sim.http.get(format!("{}/instance/downloadLog?instanceId={id}", sim.handle.url())).send().await;
    assert_eq!(resp.expect("download").status(), StatusCode::OK);

    // A user without a role on the app.
    let cfg = SimConfig {
        version: Version::V5,
        console_username: "qa".into(),
        console_password: "pw".into(),
        ..SimConfig::default()
    };
    let sim = Sim::spawn(cfg).await;
    let login = sim
        .post_json(
            "/auth/thirdPartyLoginDirect",
            &json!({"loginType": "PWJB", "originParams": "{\"username\":\"qa\",\"password\":\"pw\"}"}),
        )
        .await;
    let jwt = login.body["data"]["jwtToken"].as_str().expect("jwt").to_owned();
    let denied = sim.log("appId=1&instanceId=42&index=0", &[("PowerJwt", &jwt), ("AppId", "1")]).await;
    assert_eq!(denied, fixture("console-permission-denied.json"));
}

#[tokio::test]
async fn v5_app_auth_and_token_expiry() {
    let base = SimConfig {
        version: Version::V5,
        app_name: "demo-app".into(),
        app_password: "password".into(),
        ..SimConfig::default()
    };
    // authApp with the fixture request (md5 of "password").
    let sim = Sim::spawn(SimConfig { openapi_auth: true, token_ttl_ms: 1_000, ..base.clone() }).await;
    let ok = sim.post_json("/openApi/authApp", &fixture("auth-app-request.json")).await;
    assert_like("auth-app-ok.json", &ok.body);
    assert_shape(&fixture("auth-app-ok.json"), &ok.body, "authApp");
    // With auth enabled, /authApp and /assert carry no AUTH-PASSED header.
    assert!(ok.headers.get(AUTH_PASSED).is_none());
    let token = ok.body["data"]["token"].as_str().expect("token").to_owned();
    assert_eq!(token.matches('.').count(), 2, "JWT-shaped");
    let mut wrong = fixture("auth-app-request.json");
    wrong["encryptedPassword"] = json!("00000000000000000000000000000000");
    assert_eq!(sim.post_json("/openApi/authApp", &wrong).await.body, fixture("auth-fail.json"));
    let mut unknown = fixture("auth-app-request.json");
    unknown["appName"] = json!("no-such-app");
    assert_eq!(sim.post_json("/openApi/authApp", &unknown).await.body, fixture("auth-fail-unknown-app.json"));
    let mut plain = fixture("auth-app-request.json");
    plain["encryptedPassword"] = json!("password");
    plain["encryptType"] = json!("none");
    assert_eq!(sim.post_json("/openApi/authApp", &plain).await.body["success"], true);
    let a = sim.post_form("/openApi/assert", &[("appName", "demo-app"), ("password", "password")], &[]).await;
    assert!(a.headers.get(AUTH_PASSED).is_none());

    // The interceptor, in its order.
    let form = [("appId", "1"), ("jobId", "12")];
    let passed = |a: &Answer| a.headers.get(AUTH_PASSED).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let no_app = sim.post_form("/openApi/runJob", &form, &[("X-POWERJOB-ACCESS-TOKEN", &token)]).await;
    assert_eq!(no_app.body, fixture("auth-appid-header-missing.json"));
    assert_eq!((no_app.status, passed(&no_app).as_deref()), (StatusCode::OK, Some("false")));
    let null_app = sim
        .post_form("/openApi/runJob", &form, &[("X-POWERJOB-APP-ID", "NULL"), ("X-POWERJOB-ACCESS-TOKEN", &token)])
        .await;
    assert_eq!(null_app.body, fixture("auth-appid-header-missing.json"));
    let no_token = sim.post_form("/openApi/runJob", &form, &[("X-POWERJOB-APP-ID", "1")]).await;
    assert_eq!(no_token.body, fixture("auth-token-missing.json"));
    assert_eq!(passed(&no_token).as_deref(), Some("false"));
    let bad = sim
        .post_form("/openApi/runJob", &form, &[("X-POWERJOB-APP-ID", "1"), ("X-POWERJOB-ACCESS-TOKEN", "x.y.z")])
        .await;
    assert_eq!(bad.body["code"], "-401");
    let other = sim
        .post_form("/openApi/runJob", &form, &[("X-POWERJOB-APP-ID", "2"), ("X-POWERJOB-ACCESS-TOKEN", &token)])
        .await;
    assert_eq!(other.body["message"], "INVALID_REQUEST:Inconsistent_appId_from_token_and_header");
    let headers = [("X-POWERJOB-APP-ID", "1"), ("X-POWERJOB-ACCESS-TOKEN", token.as_str())];
    let run = sim.post_form("/openApi/runJob", &form, &headers).await;
    assert_like("run-job-ok.json", &run.body);
    assert_eq!(passed(&run).as_deref(), Some("true"));
    // Passing auth says nothing about the body.
    let unknown_job = sim.post_form("/openApi/runJob", &[("appId", "1"), ("jobId", "999")], &headers).await;
    assert_like("run-job-unknown-job-v5.json", &unknown_job.body);
    assert_eq!(passed(&unknown_job).as_deref(), Some("true"));

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let expired = sim.post_form("/openApi/runJob", &form, &headers).await;
    assert_shape(&fixture("auth-token-expired.json"), &expired.body, "expired");
    assert_eq!(expired.body["code"], "-403");
    let message = expired.body["message"].as_str().expect("message");
    assert!(
        message.starts_with("TOKEN_EXPIRED:JWT expired at ") && message.contains("Allowed clock skew: 0 milliseconds.")
    );
    assert_eq!(passed(&expired).as_deref(), Some("false"));

    // A re-auth gives a fresh token that passes again (what the official clients do).
    let fresh = sim.post_json("/openApi/authApp", &fixture("auth-app-request.json")).await;
    let fresh = fresh.body["data"]["token"].as_str().expect("token").to_owned();
    let run = sim
        .post_form("/openApi/runJob", &form, &[("X-POWERJOB-APP-ID", "1"), ("X-POWERJOB-ACCESS-TOKEN", &fresh)])
        .await;
    assert_eq!(run.body["success"], true);
    sim.handle.revoke_tokens();
    let revoked = sim
        .post_form("/openApi/runJob", &form, &[("X-POWERJOB-APP-ID", "1"), ("X-POWERJOB-ACCESS-TOKEN", &fresh)])
        .await;
    assert_eq!(revoked.body["code"], "-401");
}

#[tokio::test]
async fn faults_and_counters() {
    let sim = Sim::spawn(SimConfig::default()).await;
    let url = format!("{}/instance/log?appId=1&instanceId=42&index=0", sim.handle.url());
    let one = |kind: FaultKind| Fault { path: Some("/instance/log".into()), kind, times: 1 };

    sim.handle.inject(one(FaultKind::Http500));
    assert_eq!(sim.http.get(&url).send().await.expect("answer").status(), StatusCode::INTERNAL_SERVER_ERROR);
    sim.handle.inject(one(FaultKind::HtmlError));
    let resp = sim.http.get(&url).send().await.expect("answer");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert!(resp.text().await.expect("body").contains("<html>"));
    sim.handle.inject(one(FaultKind::NotJson));
    let resp = sim.http.get(&url).send().await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&resp.text().await.expect("body")).is_err());
    sim.handle.inject(one(FaultKind::Reset));
    assert!(sim.http.get(&url).send().await.is_err(), "connection closed without an answer");
    sim.handle.inject(Fault { path: None, kind: FaultKind::Down, times: 2 });
    assert!(sim.http.get(&url).send().await.is_err());
    assert!(reqwest::Client::new().post(format!("{}/openApi/runJob", sim.handle.url())).send().await.is_err());
    sim.handle.inject(one(FaultKind::Delay(Duration::from_millis(300))));
    let started = std::time::Instant::now();
    assert_eq!(sim.log("appId=1&instanceId=42&index=0", &[]).await, fixture("log-no-log.json"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Faults for other paths are not consumed here.
    sim.handle.inject(Fault { path: Some("/openApi/runJob".into()), kind: FaultKind::Http500, times: 1 });
    assert_eq!(sim.log("appId=1&instanceId=42&index=0", &[]).await, fixture("log-no-log.json"));
    sim.handle.clear_faults();

    assert_eq!(sim.handle.requests("/instance/log"), 7);
    assert_eq!(sim.handle.requests("/openApi/runJob"), 1);
    sim.handle.reset_counters();
    assert_eq!(sim.handle.requests("/instance/log"), 0);
}
