//! Pushed lines end to end (issue 19, memory mode): `POST /llm/logs/{id}/append` on the
//! real router in front of the simulator, read back over HTTP. Each test writes
//! PowerJob's side of the log record by record (`SimCore::deliver`), so the exact served
//! lines are known: pushed lines in PowerJob's format, each log call once whichever
//! source brings it first. Time windows (a batch's gap, the quiet window, completion) pass
//! on the shared manual clock, never by sleeping.

use std::time::Duration;

use powertail::config::{Scope, TokenConfig};
use powertail::logs::merge::{render, Level};
use powertail::sim::{Level as SimLevel, Record, SimConfig};
use serde_json::{json, Value};

use crate::common::{fast_sim, wait_for, TestApp};

const DEADLINE: Duration = Duration::from_secs(20);
const WORKER: &str = "10.0.0.21:27777";

/// The simulator's time zone (Asia/Shanghai), which powertail's `push.utc_offset_minutes`
/// defaults to.
const ZONE: i32 = 480;

/// A line as PowerJob (and powertail, for a pushed line) shows it.
fn shown(ts: i64, text: &str) -> String {
    render(ts, WORKER, Level::Info, text, ZONE).remove(0)
}

async fn spawn() -> TestApp {
    TestApp::spawn(SimConfig { ..fast_sim() }).await
}

/// An instance of job 12 running for a minute already; (its id, now).
fn running(app: &TestApp) -> (i64, i64) {
    app.sim.with_core(|c, now| {
        let id = c.create_instance(12, None, now - 60_000);
        c.dispatch(id, now - 60_000);
        c.set_running(id, now - 60_000);
        (id, now)
    })
}

/// PowerJob receives records `(ts, text)` of instance `id` now.
fn deliver(app: &TestApp, id: i64, records: &[(i64, &str)]) {
    app.sim.with_core(|c, now| {
        let records = records
            .iter()
            .map(|&(ts, text)| Record {
                log_time: ts,
                level: SimLevel::Info,
                content: text.into(),
                worker: WORKER.into(),
            })
            .collect();
        c.deliver(id, records, now);
        c.tick(now);
    });
}

/// The instance succeeded now.
fn finish(app: &TestApp, id: i64) {
    app.sim.with_core(|c, now| c.finish(id, 5, "ok", now));
}

fn batch(source: &str, seq: u64, lines: &[(i64, &str)]) -> Value {
    let lines: Vec<Value> = lines.iter().map(|&(ts, text)| json!({"ts": ts, "level": "INFO", "text": text})).collect();
    json!({"source": source, "seq": seq, "worker": WORKER, "timestamp": lines.first().map_or(0, |l| l["ts"].as_i64().unwrap()), "final": false, "lines": lines})
}

impl TestApp {
    /// `POST /llm/logs/{id}/append` with `body` (and `token`, if any): (status, JSON).
    async fn push(&self, id: i64, body: &Value) -> (u16, Value) {
        self.push_raw(id, body.to_string(), None).await
    }

    async fn push_raw(&self, id: i64, body: String, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/llm/logs/{id}/append", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn push_ok(&self, id: i64, body: &Value) -> Value {
        let (status, answer) = self.push(id, body).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Every line served now.
    async fn served(&self, id: i64) -> Vec<String> {
        serde_json::from_value(self.logs(id, 0).await["lines"].clone()).unwrap()
    }

    /// Reads until `n` lines are served (PowerJob's log brought them); returns them.
    async fn served_when(&self, id: i64, n: usize) -> Vec<String> {
        wait_for(DEADLINE, &format!("{n} lines served"), || async {
            let lines = self.served(id).await;
            (lines.len() >= n).then_some(lines)
        })
        .await
    }
}

#[tokio::test]
async fn pushed_lines_are_served_at_once_and_powerjobs_copies_once() {
    let app = spawn().await;
    let (id, now) = running(&app);
    let t = now - 1_000;
    let a = app.push_ok(id, &batch("w/1", 0, &[(t, "loading weights"), (t + 5, "weights loaded")])).await;
    assert_eq!(a, json!({"instanceId": id.to_string(), "accepted": 2, "duplicate": false, "nextSeq": 1}));
    let page = app.logs(id, 0).await;
    assert_eq!(page["lines"], json!([shown(t, "loading weights"), shown(t + 5, "weights loaded")]));
    assert_eq!(page["push"]["sources"], 1);
    assert_eq!(page["push"]["lines"], 2);
    assert!(page["push"]["lastAt"].as_i64().unwrap() >= now);
    // PowerJob has both pushed lines, and a line only it has (the processor's own).
    deliver(&app, id, &[(t, "loading weights"), (t + 3, "OmsLogger only"), (t + 5, "weights loaded")]);
    let lines = app.served_when(id, 3).await;
    assert_eq!(lines, [shown(t, "loading weights"), shown(t + 5, "weights loaded"), shown(t + 3, "OmsLogger only")]);
    // A push of a line PowerJob's copy brought first: dropped.
    app.push_ok(id, &batch("w/1", 1, &[(t + 3, "OmsLogger only"), (t + 9, "new")])).await;
    assert_eq!(app.served(id).await[3..], [shown(t + 9, "new")]);
    // A log nothing was pushed to has no `push` field.
    let (other, _) = running(&app);
    deliver(&app, other, &[(t, "polled only")]);
    let page = app.served_when(other, 1).await;
    assert_eq!(page, [shown(t, "polled only")]);
    assert_eq!(app.logs(other, 0).await.get("push"), None);
}

#[tokio::test]
async fn a_retry_is_a_duplicate_and_a_gap_is_skipped_then_filled_by_the_poll() {
    let app = spawn().await;
    let (id, now) = running(&app);
    let t = now - 1_000;
    app.push_ok(id, &batch("w/1", 0, &[(t, "zero")])).await;
    let retry = app.push_ok(id, &batch("w/1", 0, &[(t, "zero")])).await;
    assert_eq!(retry, json!({"instanceId": id.to_string(), "accepted": 0, "duplicate": true, "nextSeq": 1}));
    // Batch 1 is lost: 2 waits for it.
    let ahead = app.push_ok(id, &batch("w/1", 2, &[(t + 20, "two")])).await;
    assert_eq!((ahead["accepted"].clone(), ahead["nextSeq"].clone()), (json!(1), json!(1)));
    assert_eq!(app.served(id).await, [shown(t, "zero")]);
    // `push.gap_wait_ms` (2 s) later the gap is skipped; batch 1 comes too late then.
    app.clock.advance(Duration::from_millis(2_000));
    assert_eq!(app.served(id).await, [shown(t, "zero"), shown(t + 20, "two")]);
    let late = app.push_ok(id, &batch("w/1", 1, &[(t + 10, "one")])).await;
    assert_eq!((late["duplicate"].clone(), late["nextSeq"].clone()), (json!(true), json!(3)));
    // PowerJob's log has all three: the skipped line comes from it, once.
    deliver(&app, id, &[(t, "zero"), (t + 10, "one"), (t + 20, "two")]);
    let lines = app.served_when(id, 3).await;
    assert_eq!(lines, [shown(t, "zero"), shown(t + 20, "two"), shown(t + 10, "one")]);
}

#[tokio::test]
async fn the_seed_body_is_served_without_dedup() {
    let app = spawn().await;
    let (id, now) = running(&app);
    let body = json!({"instanceId": id, "timestamp": now, "lines": ["seed line"]});
    let a = app.push_ok(id, &body).await;
    assert_eq!(a, json!({"instanceId": id.to_string(), "accepted": 1, "duplicate": false, "nextSeq": null}));
    app.push_ok(id, &body).await;
    let line = render(now, "-", Level::Info, "seed line", ZONE).remove(0);
    assert_eq!(app.served(id).await, [line.clone(), line]);
}

#[tokio::test]
async fn a_log_only_pushed_completes_once_final_and_quiet_and_drops_later_pushes() {
    let app = spawn().await;
    let (id, now) = running(&app);
    let t = now - 1_000;
    app.push_ok(id, &batch("w/1", 0, &[(t, "only pushed")])).await;
    let mut last = batch("w/2", 0, &[(t + 1, "final batch")]);
    last["final"] = json!(true);
    app.push_ok(id, &last).await;
    finish(&app, id);
    // PowerJob's log stays empty; past its late window and sync the follower is done,
    // but `w/1` never sent `final`: complete once it was quiet for `push.quiet_ms` (15 s).
    app.clock.advance(Duration::from_secs(5));
    let page = wait_for(DEADLINE, "PowerJob's side read as final", || async {
        let p = app.logs(id, 0).await;
        (p["status"] == "SUCCEED").then_some(p)
    })
    .await;
    assert_eq!(page["complete"], false);
    app.clock.advance(Duration::from_secs(15));
    let follow = app.follow(id, DEADLINE).await;
    assert_eq!(follow.lines, [shown(t, "only pushed"), shown(t + 1, "final batch")]);
    // After completion a push is dropped (accepted 0), a retry is still a duplicate.
    let a = app.push_ok(id, &batch("w/1", 1, &[(t + 2, "too late")])).await;
    assert_eq!((a["accepted"].clone(), a["duplicate"].clone()), (json!(0), json!(false)));
    let a = app.push_ok(id, &batch("w/1", 0, &[(t, "only pushed")])).await;
    assert_eq!(a["duplicate"], true);
    let end = app.logs(id, 0).await;
    assert_eq!((end["totalLines"].clone(), end["complete"].clone()), (json!(2), json!(true)));
}

#[tokio::test]
async fn refusals_are_json_errors() {
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        c.push.max_batch_lines = 3;
        c.push.max_line_bytes = 100;
        c.push.max_body_bytes = 2_048;
    })
    .await;
    let (id, now) = running(&app);
    let code = |(status, body): (u16, Value)| (status, body["error"]["code"].as_str().unwrap_or("").to_owned());
    // 404: PowerJob does not know the instance (asked once, then remembered).
    assert_eq!(code(app.push(424_242, &batch("s", 0, &[(now, "x")])).await), (404, "instance_not_found".into()));
    assert_eq!(code(app.push(424_242, &batch("s", 0, &[(now, "x")])).await), (404, "instance_not_found".into()));
    // 413: too many lines, a line too long, a body too big.
    let four: Vec<(i64, &str)> = (0..4).map(|k| (now + k, "l")).collect();
    assert_eq!(code(app.push(id, &batch("s", 0, &four)).await), (413, "payload_too_large".into()));
    let long = "x".repeat(101);
    assert_eq!(code(app.push(id, &batch("s", 0, &[(now, &long)])).await), (413, "payload_too_large".into()));
    let huge = json!({"source": "s", "seq": 0, "lines": ["x"], "pad": "y".repeat(4_000)});
    assert_eq!(code(app.push(id, &huge).await), (413, "payload_too_large".into()));
    // 400: bad JSON, fields out of contract.
    assert_eq!(code(app.push_raw(id, "{".into(), None).await), (400, "bad_request".into()));
    for body in [
        json!({"lines": "not a list"}),
        json!({"source": "s", "lines": []}),
        json!({"seq": 0, "lines": []}),
        json!({"source": "s", "seq": 9_007_199_254_740_992_u64, "lines": []}),
        json!({"source": "s", "seq": -1, "lines": []}),
        json!({"source": "s", "seq": 0, "lines": [{"text": "x", "level": "TRACE"}]}),
        json!({"instanceId": 5, "lines": ["x"]}),
    ] {
        assert_eq!(code(app.push(id, &body).await), (400, "bad_request".into()), "{body}");
    }
    assert_eq!(code(app.push_raw(0, "{}".into(), None).await).0, 400);
    // 409: a batch after its source's final one.
    let mut end = batch("f", 0, &[(now, "end")]);
    end["final"] = json!(true);
    app.push_ok(id, &end).await;
    assert_eq!(code(app.push(id, &batch("f", 1, &[(now, "more")])).await), (409, "conflict".into()));
    // Nothing of the refused bodies was served.
    assert_eq!(app.served(id).await, [shown(now, "end")]);
}

#[tokio::test]
async fn pushing_needs_the_logs_push_scope_and_can_be_turned_off() {
    let tokens = [
        ("reader", "reader-token-0123456789", Scope::LogsRead),
        ("pusher", "pusher-token-0123456789", Scope::LogsPush),
    ];
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        for (name, token, scope) in tokens {
            let token = secrecy::SecretString::from(token.to_owned());
            c.auth.tokens.push(TokenConfig { name: name.into(), token, token_env: None, scopes: vec![scope] });
        }
    })
    .await;
    let (id, now) = running(&app);
    let body = batch("s", 0, &[(now, "x")]).to_string();
    assert_eq!(app.push_raw(id, body.clone(), None).await.0, 401);
    let (status, refused) = app.push_raw(id, body.clone(), Some("reader-token-0123456789")).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(app.push_raw(id, body.clone(), Some("pusher-token-0123456789")).await.0, 200);
    let off = TestApp::spawn_config(fast_sim(), "", |c| c.push.enabled = false).await;
    let (id, _) = running(&off);
    let (status, answer) = off.push_raw(id, body, None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn startup_is_ready_from_a_pushed_line_before_powerjob_has_it() {
    let app = spawn().await;
    let (id, now) = running(&app);
    let before = app.get_ok(&format!("/llm/instances/{id}/startup")).await;
    assert_ne!(before["phase"], "ready", "{before}");
    app.push_ok(id, &batch("w/1", 0, &[(now, "INFO:     Application startup complete.")])).await;
    let after = app.get_ok(&format!("/llm/instances/{id}/startup")).await;
    assert_eq!(after["phase"], "ready", "{after}");
    assert_eq!(app.served(id).await, [shown(now, "INFO:     Application startup complete.")]);
}

#[tokio::test]
async fn a_push_wakes_a_long_poll_and_a_stream_at_once() {
    use futures::StreamExt as _;
    let app = spawn().await;
    let (id, now) = running(&app);
    // Known before anything is pushed: a first read (nothing logged yet).
    assert_eq!(app.logs(id, 0).await["lines"], json!([]));
    let stream = app.http.get(format!("{}/llm/logs/{id}/stream", app.base)).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    let waiting = {
        let (http, url) = (app.http.clone(), format!("{}/llm/logs?instanceId={id}&fromLine=0&waitMs=20000", app.base));
        tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    // (Whether the long-poll is parked before the push or not, it answers with the line
    // well before its 20 s; the stream surely is: its first read found nothing.)
    app.push_ok(id, &batch("w/1", 0, &[(now, "pushed")])).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the long-poll answers").unwrap();
    assert_eq!(answer["lines"], json!([shown(now, "pushed")]));
    assert_eq!(answer["push"]["lines"], 1);
    let mut text = String::new();
    while !text.contains("event: lines") || !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an event").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["lines"], json!([shown(now, "pushed")]));
    assert_eq!(event["push"]["sources"], 1);
}

#[tokio::test]
async fn powertail_push_pipes_a_script_into_the_served_log() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let app = spawn().await;
    let (id, _) = running(&app);
    let (base, instance) = (app.base.clone(), id.to_string());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_powertail"))
            .args(["push", "--instance-id", &instance, "--url", &base, "--worker", WORKER, "--level-from-prefix"])
            .env_remove("POWERTAIL_TOKEN")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the powertail binary runs");
        let input = "INFO loading\nWARNING slow disk\nprogress 1\nprogress 1\n";
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"INFO loading\nWARNING slow disk\nprogress 1\nprogress 1\n");
    let page = app.logs(id, 0).await;
    let lines: Vec<String> = serde_json::from_value(page["lines"].clone()).unwrap();
    // Each line once, in order, in PowerJob's format, the level read from its prefix
    // (the text keeps it, as in the OmsLogger record of the same line).
    let shape: Vec<String> = lines.iter().map(|l| l[24..].to_owned()).collect();
    let want = ["INFO INFO loading", "WARN WARNING slow disk", "INFO progress 1", "INFO progress 1"];
    assert_eq!(shape, want.map(|w| format!("[{WORKER}] {w}")));
    assert_eq!((page["push"]["sources"].clone(), page["push"]["lines"].clone()), (json!(1), json!(4)));
}

#[tokio::test]
async fn a_webhook_fires_on_a_pushed_ready_line_of_a_run_nobody_reads() {
    // A receiver that keeps every body it gets.
    let (tx, mut rx) = tokio::sync::watch::channel(Vec::<Value>::new());
    let hook = axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
        let tx = tx.clone();
        async move {
            tx.send_modify(|bodies| bodies.push(body));
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/hook", hook)).await });
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        let notify = powertail::config::NotifyConfig::to(url.parse().unwrap());
        let job = powertail::config::JobConfig {
            job_id: 12,
            description: String::new(),
            params: serde_json::Map::new(),
            builtin_rules: true,
            startup_rules: Vec::new(),
            notify: Some(notify),
        };
        c.jobs.insert("vllm".into(), job);
    })
    .await;
    // Started from PowerJob's console: powertail knows nothing of it until the push.
    let (id, now) = running(&app);
    app.push_ok(id, &batch("w/1", 0, &[(now, "INFO:     Application startup complete.")])).await;
    let got = tokio::time::timeout(DEADLINE, rx.wait_for(|b| !b.is_empty())).await.expect("a webhook").unwrap().clone();
    assert_eq!(
        (got[0]["event"].as_str(), got[0]["instanceId"].as_str()),
        (Some("ready"), Some(id.to_string().as_str()))
    );
    assert_eq!(got[0]["text"], shown(now, "INFO:     Application startup complete."));
}

/// Cluster mode queues a push in Redis (tests/it/cluster_push.rs): with Redis
/// unreachable, nothing is taken and the pusher is told to send it again (503).
#[tokio::test]
async fn in_cluster_mode_a_push_redis_cannot_take_is_503_store_unavailable() {
    let app = TestApp::spawn_config(fast_sim(), "", |c| {
        // Nothing listens there (Redis is connected lazily).
        let toml = crate::common::app_config_toml(&["http://127.0.0.1:9".into()], "");
        let with =
            powertail::config::Config::from_toml(&format!("{toml}[cluster]\nredis_url = \"redis://127.0.0.1:9/0\"\n"));
        c.cluster = with.unwrap().cluster;
    })
    .await;
    let (id, now) = running(&app);
    let (status, body) = app.push(id, &batch("s", 0, &[(now, "x")])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("store_unavailable")), "{body}");
}
