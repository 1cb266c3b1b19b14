//! The viewer in a real headless Chromium (WebDriver via chromedriver): run a job from
//! the page, watch the lines arrive, reach completion; every line shown once and in
//! order, the start-up strip (progress, then ready; a failure's cause; a click on its
//! badge scrolls to the line), folded tqdm bars, wrapping, filtering, retries, and a
//! 100 000-line log that stays responsive. A real `EventSource` on another origin
//! (CORS) follows a stream exactly and stops on the 204 that answers its reconnect;
//! the module's `stream()` opened with a stale epoch starts over under the current one. And
//! the browser module's `follow()` against a scripted server (503, stale, 4xx, a 410
//! `epoch_mismatch` that starts it over, and the viewer starting over on it).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). The test is `#[ignore]`d so that a plain
//! `cargo test` shows it as ignored rather than passing without a browser; run it with
//! `cargo test -- --include-ignored` (what CI and the README run), where a missing
//! browser fails it.

use std::time::{Duration, Instant};

mod common;

use common::browser::{browser, js, shot, start_driver, wait_js, SERIAL};
use common::{wait_until, TestApp};
use fantoccini::Locator;
use powertail::sim::{Level, Record};
use serde_json::{json, Value};

/// A script that is true when the row of `line` is rendered inside the viewport.
fn in_view(line: u64) -> String {
    format!(
        "const r = document.querySelector('#rows .line[data-line=\"{line}\"]'); if (!r) return false; \
         const a = r.getBoundingClientRect(), v = document.getElementById('viewport').getBoundingClientRect(); \
         return a.top >= v.top && a.bottom <= v.bottom && r.classList.contains('target')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_viewer_follows_a_vllm_startup_in_chromium() {
    let _turn = SERIAL.lock().await;
    let driver = start_driver().await;
    // The demo, 5 times faster: the vLLM start-up takes ~6 s.
    let demo = TestApp::demo(0.2, |_| {}).await;
    let base = demo.base.clone();
    let c = browser(&driver).await;

    // An empty page says what to do.
    c.goto(&format!("{base}/")).await.unwrap();
    let empty = c.find(Locator::Id("empty")).await.unwrap();
    assert!(empty.is_displayed().await.unwrap());
    assert!(empty.text().await.unwrap().contains("instance id"), "{}", empty.text().await.unwrap());
    // A line holding carriage returns shows as a terminal shows it: the last segment.
    assert_eq!(js(&c, r#"return window.powertail.display("a 10%\rb 20%\r")"#).await, "b 20%");

    // Run the job from the page.
    wait_js(&c, "return !document.getElementById('run').hidden", Duration::from_secs(10)).await;
    c.find(Locator::Id("job")).await.unwrap().select_by_value("vllm-start").await.unwrap();
    c.find(Locator::Css("#run button")).await.unwrap().click().await.unwrap();
    wait_js(&c, "return window.powertail.lines().length > 0 && !window.powertail.complete()", Duration::from_secs(20))
        .await;
    wait_js(&c, "return window.powertail.complete()", Duration::from_secs(60)).await;

    // Every line once, in order: exactly the server's log.
    let url = c.current_url().await.unwrap();
    let id: i64 = url.query_pairs().find(|(k, _)| k == "instanceId").unwrap().1.parse().unwrap();
    let shown: Vec<String> = serde_json::from_value(js(&c, "return window.powertail.lines()").await).unwrap();
    assert_eq!(shown, demo.sim.with_core(|core, _| core.final_lines(id)));
    assert_eq!(shown.len(), 113);
    // The start-up strip: the server's state, progress seen before ready.
    wait_js(
        &c,
        "const s = window.powertail.startup(); return s !== null && s.phase === 'ready'",
        Duration::from_secs(20),
    )
    .await;
    let server: Value = reqwest::get(format!("{base}/llm/instances/{id}/startup")).await.unwrap().json().await.unwrap();
    assert_eq!(server["ready"]["line"], 103);
    let verdict = c.find(Locator::Id("verdict")).await.unwrap();
    assert_eq!(verdict.text().await.unwrap(), "READY at line 104");
    assert_eq!(verdict.attr("data-line").await.unwrap().as_deref(), Some("103"));
    let phases: Vec<String> = serde_json::from_value(js(&c, "return window.powertail.phases()").await).unwrap();
    let loading = phases.iter().position(|p| p.starts_with("loading ") && p.contains("/")).expect("progress seen");
    let ready = phases.iter().position(|p| p.starts_with("ready")).unwrap();
    assert!(loading < ready, "{phases:?}");
    let progress = &server["progress"];
    assert_eq!(
        c.find(Locator::Id("progLabel")).await.unwrap().text().await.unwrap(),
        progress["label"].as_str().unwrap()
    );
    assert_eq!(
        c.find(Locator::Id("progCount")).await.unwrap().text().await.unwrap(),
        format!("{}/{}", progress["done"], progress["total"])
    );
    // tqdm bars are folded: each bar once, at its last state; the lines stay exact.
    for (bar, last) in
        [("Loading safetensors checkpoint shards", "4/4"), ("Capturing CUDA graphs (decode, FULL)", "35/35")]
    {
        let texts: Vec<String> = serde_json::from_value(
            js(&c, &format!("return window.powertail.shown().map(i => window.powertail.lines()[i]).filter(l => l.includes({bar:?}))"))
                .await,
        )
        .unwrap();
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains(last), "{texts:?}");
    }
    if std::env::var_os("POWERTAIL_UPDATE_SCREENSHOT").is_some() {
        js(&c, "document.getElementById('viewport').scrollTop = 15 * 18; return true").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        shot(&c, "viewer-fold.png").await;
    }
    let state_text = c.find(Locator::Id("state")).await.unwrap().text().await.unwrap();
    assert!(state_text.contains("complete"), "{state_text}");
    // The rendered rows are consecutive shown lines, and no raw escape byte is shown.
    let rows: Vec<i64> = serde_json::from_value(
        js(&c, "return [...document.querySelectorAll('#rows .line')].map(e => +e.dataset.line)").await,
    )
    .unwrap();
    let order: Vec<i64> = serde_json::from_value(js(&c, "return window.powertail.shown()").await).unwrap();
    let at = order.iter().position(|i| Some(i) == rows.first()).unwrap();
    assert!(!rows.is_empty() && order[at..at + rows.len()] == rows[..], "{rows:?}");
    let text = js(&c, "return document.getElementById('rows').textContent").await;
    assert!(!text.as_str().unwrap().contains('\u{1b}'), "ANSI escapes are rendered, not shown");
    // A click on the badge scrolls to the ready line.
    js(&c, "document.getElementById('viewport').scrollTop = 0; return true").await;
    wait_js(&c, "return document.querySelector('#rows .line[data-line=\"103\"]') === null", Duration::from_secs(5))
        .await;
    verdict.click().await.unwrap();
    wait_js(&c, &in_view(103), Duration::from_secs(5)).await;
    let row = c.find(Locator::Css("#rows .line[data-line=\"103\"]")).await.unwrap();
    assert_eq!(
        row.attr("class").await.unwrap().as_deref().map(|c| c.contains("ready") && c.contains("target")),
        Some(true)
    );
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    if std::env::var_os("POWERTAIL_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/viewer.png"), png).unwrap();
    }

    // Filtering.
    c.find(Locator::Id("filter")).await.unwrap().send_keys("Application startup complete").await.unwrap();
    wait_js(
        &c,
        "return window.powertail.view() !== null && window.powertail.view().length === 1",
        Duration::from_secs(5),
    )
    .await;
    wait_js(&c, "return document.querySelectorAll('#rows .line').length === 1", Duration::from_secs(5)).await;
    let row = c.find(Locator::Css("#rows .line")).await.unwrap().text().await.unwrap();
    assert!(row.contains("Application startup complete."), "{row}");

    // A failed start: the server's root cause, highlighted where it is; the job selector
    // follows the instance's job.
    let http = reqwest::Client::new();
    let run: Value = http.post(format!("{base}/llm/jobs/vllm-oom/run")).send().await.unwrap().json().await.unwrap();
    let oom = run["instanceId"].as_str().unwrap().to_owned();
    c.goto(&format!("{base}/?instanceId={oom}")).await.unwrap();
    wait_js(&c, "return window.powertail.complete()", Duration::from_secs(60)).await;
    wait_js(&c, "const s = window.powertail.startup(); return s !== null && s.complete", Duration::from_secs(30)).await;
    assert_eq!(js(&c, "return document.getElementById('st').textContent").await, "FAILED");
    assert_eq!(js(&c, "return document.getElementById('job').value").await, "vllm-oom");
    let verdict = c.find(Locator::Id("verdict")).await.unwrap();
    assert_eq!(verdict.attr("data-cause").await.unwrap().as_deref(), Some("cuda_oom"));
    let cause: u64 = verdict.attr("data-line").await.unwrap().unwrap().parse().unwrap();
    assert_eq!(verdict.text().await.unwrap(), format!("FAILED: cuda_oom at line {}", cause + 1));
    let cause_line = js(&c, &format!("return window.powertail.lines()[{cause}]")).await;
    assert!(cause_line.as_str().unwrap().contains("OutOfMemoryError"), "{cause_line}");
    js(&c, "document.getElementById('viewport').scrollTop = 0; return true").await;
    verdict.click().await.unwrap();
    wait_js(&c, &in_view(cause), Duration::from_secs(5)).await;
    shot(&c, "viewer-oom.png").await;
    let row = c.find(Locator::Css(&format!("#rows .line[data-line=\"{cause}\"]"))).await.unwrap();
    assert!(row.attr("class").await.unwrap().unwrap().contains("failed"));
    assert!(row.text().await.unwrap().contains("OutOfMemoryError"));
    // Wrapping: long lines take more rows, and nothing scrolls sideways.
    js(&c, "document.getElementById('viewport').scrollLeft = 0; return true").await;
    let wide = js(&c, "const v = document.getElementById('viewport'); return v.scrollWidth > v.clientWidth").await;
    assert_eq!(wide, true, "the OOM log has lines wider than the window");
    c.find(Locator::Id("wrap")).await.unwrap().click().await.unwrap();
    wait_js(
        &c,
        "const v = document.getElementById('viewport'); return v.scrollWidth <= v.clientWidth && \
         [...document.querySelectorAll('#rows .line')].some(e => e.offsetHeight > 18 && e.querySelector('.t').scrollHeight <= e.offsetHeight)",
        Duration::from_secs(5),
    )
    .await;
    wait_js(&c, &in_view(cause), Duration::from_secs(5)).await; // the outlined line stays in view
    shot(&c, "viewer-wrap.png").await;
    c.find(Locator::Id("wrap")).await.unwrap().click().await.unwrap();

    // Retried under the same instanceId: the second run follows the first, marked.
    let first_run = js(&c, "return window.powertail.lines().length").await.as_u64().unwrap();
    let retried = http.post(format!("{base}/llm/instances/{oom}/retry")).send().await.unwrap();
    assert_eq!(retried.status(), 200);
    c.goto(&format!("{base}/?instanceId={oom}")).await.unwrap();
    wait_js(&c, "return window.powertail.attempts().length === 1", Duration::from_secs(60)).await;
    assert_eq!(js(&c, "return window.powertail.attempts()").await, json!([[first_run, 2]]));
    wait_js(&c, &format!("return window.powertail.lines().length > {first_run}"), Duration::from_secs(60)).await;
    js(
        &c,
        &format!("const vp = document.getElementById('viewport'); vp.scrollTop = vp.scrollHeight * {first_run} / window.powertail.lines().length - 100; return true"),
    )
    .await;
    wait_js(&c, "return document.querySelector('#rows .line.attempt') !== null", Duration::from_secs(5)).await;
    let sep = c.find(Locator::Css("#rows .line.attempt")).await.unwrap();
    assert_eq!(sep.attr("data-line").await.unwrap(), Some(first_run.to_string()));
    assert!(sep.text().await.unwrap().contains("run 2"));
    let state_text = c.find(Locator::Id("state")).await.unwrap().text().await.unwrap();
    assert!(state_text.contains("run 2"), "{state_text}");

    // An unknown instance: the module's 4xx stops following, and the page says why.
    c.goto(&format!("{base}/?instanceId=1")).await.unwrap();
    wait_js(
        &c,
        "return document.getElementById('error').textContent.startsWith('instance_not_found')",
        Duration::from_secs(20),
    )
    .await;

    // A 100 000-line log stays responsive: virtualised rendering, chunked appends.
    let big = demo.sim.with_core(|core, now| {
        let id = core.create_instance(15, None, now - 600_000);
        core.dispatch(id, now - 600_000);
        core.set_running(id, now - 600_000);
        let records: Vec<Record> = (0..100_000)
            .map(|k| Record {
                log_time: now - 500_000 + k,
                level: if k % 1000 == 0 { Level::Warn } else { Level::Info },
                content: format!("processed batch {k}: 512 samples"),
                worker: "10.0.0.21:27777".into(),
            })
            .collect();
        core.deliver(id, records, now - 400_000);
        core.finish(id, 5, "ok", now - 300_000);
        id
    });
    c.goto(&format!("{base}/?instanceId={big}")).await.unwrap();
    wait_js(&c, "return window.powertail.complete()", Duration::from_secs(120)).await;
    assert_eq!(js(&c, "return window.powertail.lines().length").await, 100_000);
    let render_ms = js(&c, "return window.powertail.renderMs()").await.as_f64().unwrap();
    eprintln!("render of a 100 000-line log: {render_ms:.2} ms");
    // A generous bound, only to catch a full-DOM rebuild (which takes seconds).
    assert!(render_ms < 250.0, "render took {render_ms} ms");
    let rendered = js(&c, "return document.querySelectorAll('#rows .line').length").await.as_u64().unwrap();
    assert!(rendered < 200, "only the visible rows are in the DOM ({rendered})");
    // Scrolling up stops following and offers to follow again.
    js(&c, "document.getElementById('viewport').scrollTop = 0; return true").await;
    wait_js(&c, "return document.getElementById('follow').style.display === 'block'", Duration::from_secs(5)).await;
    c.close().await.unwrap();
}

/// A real `EventSource` in Chromium, on a page of another origin (CORS configured),
/// that does not close on `end`: every line once, one `end`, and its reconnect after the
/// end is answered 204, which stops it for good. The same page follows the stream with
/// the module's `stream()` (imported cross-origin), which closes on `end`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn a_cross_origin_event_source_follows_the_stream_and_stops_on_204() {
    let _turn = SERIAL.lock().await;
    let driver = start_driver().await;
    // The page's server: another port on loopback, so another origin.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page_listener.local_addr().unwrap());
    let demo = TestApp::demo(0.2, |c| c.server.cors_allowed_origins = vec![origin.clone()]).await;
    let base = demo.base.clone();

    // A finished instance with 1 000 lines.
    let id = demo.sim.with_core(|core, now| {
        let id = core.create_instance(15, None, now - 600_000);
        core.dispatch(id, now - 600_000);
        core.set_running(id, now - 600_000);
        let records: Vec<Record> = (0..1_000)
            .map(|k| Record {
                log_time: now - 500_000 + k,
                level: Level::Info,
                content: format!("step {k} of 1000"),
                worker: "10.0.0.21:27777".into(),
            })
            .collect();
        core.deliver(id, records, now - 400_000);
        core.finish(id, 5, "ok", now - 300_000);
        id
    });
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><title>platform</title><script type="module">
const url = "{base}/llm/logs/{id}/stream";
const raw = window.raw = {{ lines: [], ends: 0, opens: 0, errors: 0, state: -1 }};
const es = new EventSource(url);
es.onopen = () => raw.opens++;
es.addEventListener("lines", (e) => {{ const b = JSON.parse(e.data); if (b.fromLine === raw.lines.length) raw.lines.push(...b.lines); else raw.gap = b.fromLine; }});
es.addEventListener("end", () => raw.ends++);
es.onerror = () => {{ raw.errors++; raw.state = es.readyState; }};
const mod = window.mod = {{ lines: 0, statuses: 0, end: null, startups: [] }};
const {{ stream }} = await import("{base}/powertail.js");
window.streamFn = stream;
stream("{base}", "{id}", {{ onLines: (l) => mod.lines += l.length, onStatus: () => mod.statuses++, onStartup: (s) => mod.startups.push(s.phase) }})
  .then((end) => mod.end = end, (e) => mod.error = String(e));
</script>"#
    );
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    tokio::spawn(async move { axum::serve(page_listener, app).await.unwrap() });

    // The log must be complete first (the late-line window), as a platform would see it.
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(60), "the log is complete", || async {
        demo.get(&format!("/llm/logs?instanceId={id}&fromLine=1000")).await.1["complete"] == true
    })
    .await;

    let c = browser(&driver).await;
    c.goto(&format!("{origin}/")).await.unwrap();
    // The reconnect after `end` gets 204: the EventSource gives up (CLOSED).
    wait_js(&c, "return window.raw.state === 2", Duration::from_secs(30)).await;
    let raw: Value = js(&c, "return window.raw").await;
    let expected = demo.sim.with_core(|core, _| core.final_lines(id));
    assert_eq!(expected.len(), 1_000);
    assert_eq!(raw["lines"], json!(expected), "every line once, in order");
    assert_eq!(raw["ends"], 1);
    assert_eq!(raw["opens"], 1, "the reconnect never opened a stream");
    let stream_204 =
        r#"powertail_http_requests_total{route="/llm/logs/{instanceId}/stream",method="GET",status="204"} 1"#;
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(stream_204), "{metrics}");
    // Nothing more: no second `end`, no further request, over a few reconnect periods.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let raw: Value = js(&c, "return window.raw").await;
    assert_eq!((raw["ends"].as_u64(), raw["state"].as_i64()), (Some(1), Some(2)));
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(stream_204), "one reconnect only");

    // The module's stream(): every line, closed on `end` (no reconnect).
    wait_js(&c, "return window.mod.end !== null || window.mod.error !== undefined", Duration::from_secs(30)).await;
    let m: Value = js(&c, "return window.mod").await;
    assert_eq!((m["lines"].as_u64(), m["end"]["totalLines"].as_u64()), (Some(1_000), Some(1_000)), "{m}");
    // No model server: one `startup` event, when it ended.
    assert_eq!(m["startups"], json!(["exited"]), "{m}");

    // A stale epoch (a page opened before powertail restarted): the stream is refused
    // with 410, stream() learns the current epoch, calls onRestart and starts over.
    let current: Value =
        http.get(format!("{base}/llm/logs?instanceId={id}&limit=1")).send().await.unwrap().json().await.unwrap();
    let current = current["epoch"].as_str().unwrap().to_owned();
    js(
        &c,
        &format!(
            r#"const stale = window.stale = {{ restarts: [], lines: 0, end: null }};
window.streamFn("{base}", "{id}", {{ epoch: "0000000000000000-1", fromLine: 500,
  onRestart: (e) => {{ stale.restarts.push(e); stale.lines = 0; }}, onLines: (l, from) => stale.lines += l.length }})
  .then((end) => stale.end = end.epoch, (e) => stale.error = String(e));
return 0;"#
        ),
    )
    .await;
    wait_js(&c, "return window.stale.end !== null || window.stale.error !== undefined", Duration::from_secs(30)).await;
    let stale: Value = js(&c, "return window.stale").await;
    assert_eq!(stale, json!({"restarts": [current], "lines": 1_000, "end": current}));
    c.close().await.unwrap();
}

/// The module's `follow()` in Chromium against a scripted server: a 503 waits its
/// `Retry-After`, a stale answer is not a reason to spin, `nextLine` is sent back,
/// `attempts` reach `onStatus`, the token goes in `Authorization`, the promise resolves
/// on `complete`, and a 4xx rejects with its code after one request. A 410
/// `epoch_mismatch` calls `onRestart` and starts over from line 0 under the new epoch
/// (or rejects without `onRestart`); the viewer then clears its lines and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_module_follows_a_scripted_server_in_chromium() {
    let _turn = SERIAL.lock().await;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};

    type Calls = Arc<Mutex<Vec<(String, Option<String>, Instant)>>>;
    async fn logs(State(calls): State<Calls>, headers: HeaderMap, RawQuery(q): RawQuery) -> axum::response::Response {
        use axum::response::IntoResponse;
        let q = q.unwrap_or_default();
        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
        let n = {
            let mut calls = calls.lock().unwrap();
            calls.push((q.clone(), auth, Instant::now()));
            calls.iter().filter(|c| c.0.contains("instanceId=7")).count()
        };
        let page = |body: Value| axum::Json(body).into_response();
        if q.contains("instanceId=404") {
            let body = json!({"error": {"code": "instance_not_found", "message": "no instance 404"}});
            return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        }
        // Instances 8, 9, 10: served under E1 first, then rebuilt under E2.
        if let Some(id) = ["8", "9", "10"].into_iter().find(|id| q.contains(&format!("instanceId={id}&"))) {
            let page = |from: u64, lines: &[&str], epoch: &str, complete: bool| {
                let next = from + lines.len() as u64;
                axum::Json(json!({"instanceId": id, "epoch": epoch, "fromLine": from, "nextLine": next,
                    "lines": lines, "totalLines": next, "status": if complete { "SUCCEED" } else { "RUNNING" },
                    "complete": complete, "stale": false, "attempt": 1, "attempts": [{"attempt": 1, "fromLine": 0}]}))
                .into_response()
            };
            return if q.contains("epoch=E1") {
                let body =
                    json!({"error": {"code": "epoch_mismatch", "message": "the log was rebuilt"}, "epoch": "E2"});
                (StatusCode::GONE, axum::Json(body)).into_response()
            } else if q.contains("epoch=E2") {
                assert!(q.contains("fromLine=0&"), "a restart reads from line 0: {q}");
                page(0, &["p", "q"], "E2", true)
            } else {
                page(0, &["x", "y"], "E1", false)
            };
        }
        match n {
            1 => {
                let body = json!({"error": {"code": "upstream_unavailable", "message": "PowerJob is down"}});
                (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], axum::Json(body)).into_response()
            }
            2 => page(json!({"instanceId": "7", "fromLine": 0, "nextLine": 2, "lines": ["a", "b"], "totalLines": 2,
                "status": "RUNNING", "complete": false, "stale": false, "attempt": 1, "attempts": [{"attempt": 1, "fromLine": 0}]})),
            3 => page(json!({"instanceId": "7", "fromLine": 2, "nextLine": 2, "lines": [], "totalLines": 2,
                "status": "RUNNING", "complete": false, "stale": true, "attempt": 1, "attempts": [{"attempt": 1, "fromLine": 0}]})),
            _ => page(json!({"instanceId": "7", "fromLine": 2, "nextLine": 3, "lines": ["c"], "totalLines": 3,
                "status": "SUCCEED", "complete": true, "stale": false, "attempt": 2,
                "attempts": [{"attempt": 1, "fromLine": 0}, {"attempt": 2, "fromLine": 2}]})),
        }
    }
    let calls: Calls = Arc::default();
    let page = r#"<!doctype html><meta charset="utf-8"><title>platform</title><script type="module">
import { follow } from "/powertail.js";
const out = window.out = { lines: [], statuses: [], errors: [], done: null, failed: null };
follow("", "7", { token: "t0k", waitMs: 100,
  onLines: (l, from) => out.lines.push([from, ...l]),
  onStatus: (s) => out.statuses.push([s.status, s.complete, s.stale, s.attempt, s.attempts.length]),
  onError: (e) => out.errors.push(e.code) }).then((b) => out.done = b.nextLine);
follow("", "404", {}).catch((e) => out.failed = [e.name, e.status, e.code]);
const re = window.re = { lines: [], restarts: [], done: null, rejected: null };
follow("", "8", { waitMs: 100, onLines: (l, from, b) => re.lines.push([b.epoch, from, ...l]),
  onRestart: (epoch) => re.restarts.push(epoch) }).then((b) => re.done = [b.epoch, b.nextLine]);
follow("", "9", { waitMs: 100 }).catch((e) => re.rejected = [e.name, e.status, e.code, e.epoch]);
</script>"#;
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || async move { axum::response::Html(page) }))
        .route(
            "/powertail.js",
            axum::routing::get(|| async {
                ([("content-type", "text/javascript")], include_str!("../assets/powertail.js"))
            }),
        )
        .route("/viewer", axum::routing::get(|| async { axum::response::Html(include_str!("../assets/viewer.html")) }))
        .route("/llm/logs", axum::routing::get(logs))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let driver = start_driver().await;
    let c = browser(&driver).await;
    c.goto(&format!("{base}/")).await.unwrap();
    wait_js(&c, "return window.out.done !== null && window.out.failed !== null", Duration::from_secs(20)).await;
    let out = js(&c, "return window.out").await;
    assert_eq!(out["lines"], json!([[0, "a", "b"], [2, "c"]]));
    assert_eq!(
        out["statuses"],
        json!([["RUNNING", false, false, 1, 1], ["RUNNING", false, true, 1, 1], ["SUCCEED", true, false, 2, 2]])
    );
    assert_eq!(out["errors"], json!(["upstream_unavailable"]));
    assert_eq!(out["done"], 3);
    assert_eq!(out["failed"], json!(["PowertailError", 404, "instance_not_found"]));
    let shared = calls.clone();
    let calls = calls.lock().unwrap().clone();
    let ours: Vec<_> = calls.iter().filter(|c| c.0.contains("instanceId=7")).collect();
    let froms: Vec<&str> = ours.iter().map(|c| c.0.split('&').find(|p| p.starts_with("fromLine=")).unwrap()).collect();
    assert_eq!(froms, ["fromLine=0", "fromLine=0", "fromLine=2", "fromLine=2"]);
    assert!(ours.iter().all(|c| c.1.as_deref() == Some("Bearer t0k") && c.0.contains("waitMs=100")));
    assert!(ours[1].2 - ours[0].2 >= Duration::from_millis(950), "503 waits Retry-After");
    assert!(ours[3].2 - ours[2].2 >= Duration::from_millis(1_400), "a stale empty answer waits");
    assert_eq!(calls.iter().filter(|c| c.0.contains("instanceId=404")).count(), 1, "a 4xx is not retried");

    // A 410 epoch_mismatch: onRestart, then from line 0 under the new epoch; without
    // onRestart, a rejection naming the new epoch, never lines of another sequence.
    wait_js(&c, "return window.re.done !== null && window.re.rejected !== null", Duration::from_secs(20)).await;
    let re = js(&c, "return window.re").await;
    assert_eq!(re["lines"], json!([["E1", 0, "x", "y"], ["E2", 0, "p", "q"]]), "{re}");
    assert_eq!(re["restarts"], json!(["E2"]));
    assert_eq!(re["done"], json!(["E2", 2]));
    assert_eq!(re["rejected"], json!(["PowertailError", 410, "epoch_mismatch", "E2"]));
    let calls = shared.lock().unwrap().clone();
    let sent = |id: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.0.contains(&format!("instanceId={id}&")))
            .map(|c| {
                c.0.split('&')
                    .filter(|p| p.starts_with("fromLine=") || p.starts_with("epoch="))
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .collect()
    };
    let eight = sent("8");
    assert_eq!(eight[..3], ["fromLine=0", "fromLine=2&epoch=E1", "fromLine=0&epoch=E2"], "{eight:?}");

    // The viewer clears what it showed and starts over, saying so.
    c.goto(&format!("{base}/viewer?instanceId=10")).await.unwrap();
    wait_js(&c, "return window.powertail && window.powertail.complete()", Duration::from_secs(20)).await;
    let v = js(
        &c,
        "return {lines: window.powertail.lines(), restarts: window.powertail.restarts(),
                 note: document.getElementById('note').hidden ? null : document.getElementById('note').textContent,
                 transport: window.powertail.transport()}",
    )
    .await;
    // This server has neither the WebSocket nor the event stream: the viewer long-polls.
    let note = "the log was rebuilt; starting over";
    assert_eq!(v, json!({"lines": ["p", "q"], "restarts": 1, "note": note, "transport": "poll"}));
    c.close().await.unwrap();
}
