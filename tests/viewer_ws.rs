//! The viewer and `powertail.js` over the WebSocket, in a real headless Chromium: the
//! viewer follows a run over `GET /llm/logs/{id}/ws` (the transport it reports), says how
//! the lines arrive and how fresh the newest is, and `/?instanceId=…&line=N` opens the log
//! at line N, highlighted; a pushed line shows at once, and the page says "pushed". The
//! module's `follow(…, {transport: "websocket", token})` from another origin authenticates
//! by its first message and gets every line once; where the WebSocket (and SSE) cannot
//! get through it falls back to long-polls and still gets every line once. The History view (issue 20) lists a job's archived runs with their
//! start-up badges and statistics, and a search hit opens its line.
//!
//! Needs Debian's `chromium` and `chromium-driver`; `#[ignore]`d like tests/viewer_browser.rs
//! (run with `cargo test -- --include-ignored`). `POWERTAIL_UPDATE_SCREENSHOT=1` writes
//! screenshots to the temp dir.

use std::time::Duration;

mod common;

use common::browser::{browser, js, shot, start_driver, wait_js, SERIAL};
use common::{steps, wait_for, TestApp};
use powertail::config::{Scope, TokenConfig};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

/// A script that is true when the row of `line` is rendered inside the viewport, outlined.
fn in_view(line: u64) -> String {
    format!(
        "const r = document.querySelector('#rows .line[data-line=\"{line}\"]'); if (!r) return false; \
         const a = r.getBoundingClientRect(), v = document.getElementById('viewport').getBoundingClientRect(); \
         return a.top >= v.top && a.bottom <= v.bottom && r.classList.contains('target')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_viewer_follows_over_a_websocket_and_opens_a_line() {
    let _turn = SERIAL.lock().await;
    let driver = start_driver().await;
    let app = TestApp::spawn(steps(300).over(4_000).sim(12)).await;
    let id = app.run_job(12);
    let c = browser(&driver).await;

    c.goto(&format!("{}/?instanceId={id}", app.base)).await.unwrap();
    wait_js(&c, "return window.powertail.lines().length > 0 && !window.powertail.complete()", DEADLINE).await;
    assert_eq!(js(&c, "return window.powertail.transport()").await, "websocket");
    wait_js(&c, "return window.powertail.complete()", DEADLINE).await;
    let shown: Vec<String> = serde_json::from_value(js(&c, "return window.powertail.lines()").await).unwrap();
    assert_eq!(shown, app.sim.with_core(|core, _| core.final_lines(id)));
    assert_eq!(shown.len(), 300);
    // Nothing was pushed: the lines come from PowerJob, over the WebSocket. The newest
    // line's timestamp is in PowerJob's zone (the simulator's is UTC+8, the browser's
    // another): the run's trigger time gives it, so the age is seconds, not hours.
    assert_eq!(js(&c, "return window.powertail.delivery()").await, "polled");
    let via = js(&c, "return document.getElementById('via').textContent").await;
    assert_eq!(via, "lines polled (PowerJob) over WebSocket");
    wait_js(&c, "return /^newest line [0-9.]+ s old$/.test(window.powertail.fresh())", Duration::from_secs(10)).await;
    let fresh = js(&c, "return window.powertail.fresh()").await;
    let secs: f64 = fresh.as_str().unwrap().split(' ').nth(2).unwrap().parse().unwrap();
    assert!(secs < 60.0, "{fresh}");
    shot(&c, "viewer-ws.png").await;

    // `?line=N` (the API's line number, from 0): the log opens there, the line outlined.
    c.goto(&format!("{}/?instanceId={id}&line=150", app.base)).await.unwrap();
    wait_js(&c, &in_view(150), DEADLINE).await;
    assert_eq!(js(&c, "return window.powertail.target()").await, 150);
    let url = c.current_url().await.unwrap();
    assert_eq!(url.query(), Some(format!("instanceId={id}&line=150").as_str()), "the link stays shareable");
    let row = js(&c, "return document.querySelector('#rows .line[data-line=\"150\"] .n').textContent").await;
    assert_eq!(row, "151", "the gutter numbers from 1");
    shot(&c, "viewer-line.png").await;
    // A line past the end says so.
    c.goto(&format!("{}/?instanceId={id}&line=5000", app.base)).await.unwrap();
    wait_js(&c, "return window.powertail.complete()", DEADLINE).await;
    wait_js(&c, "return !document.getElementById('note').hidden", Duration::from_secs(10)).await;
    let note = js(&c, "return document.getElementById('note').textContent").await;
    assert_eq!(note, "line 5001 (API line 5000) is past the end of this log (300 lines)");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_module_follows_over_a_websocket_with_a_token_and_falls_back_to_long_polls() {
    let _turn = SERIAL.lock().await;
    let driver = start_driver().await;
    // The platform's page: another origin, allowed by CORS (and so for the WebSocket).
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", page_listener.local_addr().unwrap());
    let app = TestApp::spawn_config(steps(400).over(3_000).sim(12), "", |c| {
        let token = "platform-token-0123456789".to_owned();
        c.auth.tokens = vec![TokenConfig {
            name: "platform".into(),
            token: token.into(),
            token_env: None,
            scopes: vec![Scope::LogsRead],
        }];
        c.server.cors_allowed_origins = vec![origin.clone()];
    })
    .await;
    let id = app.run_job(12);
    let base = app.base.clone();

    // The same page also serves a stand-in for powertail behind a proxy that passes
    // neither WebSockets nor event streams: `/llm/logs` forwarded, nothing else.
    let upstream = base.clone();
    let proxy = move |axum::extract::RawQuery(q): axum::extract::RawQuery, headers: axum::http::HeaderMap| {
        let upstream = upstream.clone();
        async move {
            let mut req = reqwest::Client::new().get(format!("{upstream}/llm/logs?{}", q.unwrap_or_default()));
            if let Some(auth) = headers.get("authorization") {
                req = req.header("authorization", auth.to_str().unwrap());
            }
            let resp = req.send().await.unwrap();
            let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
            (status, [("content-type", "application/json")], resp.bytes().await.unwrap())
        }
    };
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><title>platform</title><script type="module">
import {{ follow }} from "{base}/powertail.js";
const run = (root, token) => {{
  const out = {{ lines: [], froms: [], transports: [], errors: 0, end: null, failed: null }};
  follow(root, "{id}", {{ transport: "websocket", token, waitMs: 1000,
    onLines: (l, from) => {{ out.froms.push(from); out.lines.push(...l); }},
    onTransport: (t) => out.transports.push(t), onError: () => out.errors++ }})
    .then((end) => out.end = end.nextLine, (e) => out.failed = [e.name, e.status, e.code]);
  return out;
}};
window.direct = run("{base}", "platform-token-0123456789");
window.proxied = run("", "platform-token-0123456789");
window.tokenless = run("{base}", undefined);
</script>"#
    );
    let site = axum::Router::new()
        .route("/", axum::routing::get(move || async move { axum::response::Html(page) }))
        .route(
            "/powertail.js",
            axum::routing::get(|| async {
                ([("content-type", "text/javascript")], include_str!("../assets/powertail.js"))
            }),
        )
        .route("/llm/logs", axum::routing::get(proxy));
    tokio::spawn(async move { axum::serve(page_listener, site).await.unwrap() });

    let c = browser(&driver).await;
    c.goto(&format!("{origin}/")).await.unwrap();
    wait_js(&c, "return window.direct.end !== null && window.proxied.end !== null", DEADLINE).await;
    let want = app.sim.with_core(|core, _| core.final_lines(id));
    assert_eq!(want.len(), 400);
    let direct = js(&c, "return window.direct").await;
    assert_eq!(direct["lines"], json!(want), "over the WebSocket, the token by message");
    assert_eq!(direct["transports"], json!(["websocket"]));
    assert_eq!(direct["end"], 400);
    let proxied = js(&c, "return window.proxied").await;
    assert_eq!(proxied["lines"], json!(want), "by long-poll where nothing else gets through");
    // (No SSE in between: an EventSource cannot send the token.)
    assert_eq!(proxied["transports"], json!(["websocket", "poll"]), "{proxied}");
    // Without a token: the server's `error` message and close 1008 make it a 4xx.
    wait_js(&c, "return window.tokenless.failed !== null", DEADLINE).await;
    let tokenless = js(&c, "return window.tokenless").await;
    assert_eq!(tokenless["failed"], json!(["PowertailError", 400, "bad_request"]), "{tokenless}");
    assert_eq!(tokenless["lines"], json!([]));
    let froms: Vec<u64> = serde_json::from_value(proxied["froms"].clone()).unwrap();
    assert!(froms.windows(2).all(|w| w[0] < w[1]), "{froms:?}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_viewer_says_when_lines_are_pushed() {
    let _turn = SERIAL.lock().await;
    let driver = start_driver().await;
    // A long run, polled from PowerJob, until the test pushes a line.
    let app = TestApp::spawn(steps(200).over(30_000).sim(12)).await;
    let id = app.run_job(12);
    let c = browser(&driver).await;
    c.goto(&format!("{}/?instanceId={id}", app.base)).await.unwrap();
    wait_js(&c, "return window.powertail.lines().length > 0", DEADLINE).await;
    assert_eq!(js(&c, "return window.powertail.delivery()").await, "polled");

    let now = app.clock.now_ms();
    let batch = json!({"source": "10.0.0.5:27777/viewer", "seq": 0, "worker": "10.0.0.5:27777", "timestamp": now,
        "final": false, "lines": [{"ts": now, "level": "WARN", "text": "pushed by the test"}]});
    let resp = app.http.post(format!("{}/llm/logs/{id}/append", app.base)).json(&batch).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // Rendered as PowerJob renders its records, shown at once, and said to be pushed.
    wait_js(
        &c,
        "return window.powertail.lines().some(l => / \\[10\\.0\\.0\\.5:27777\\] WARN pushed by the test$/.test(l))",
        Duration::from_secs(10),
    )
    .await;
    wait_js(&c, "return window.powertail.delivery() === 'pushed'", Duration::from_secs(5)).await;
    let via = js(&c, "return document.getElementById('via').textContent").await;
    assert_eq!(via, "lines pushed over WebSocket");
    let title = js(&c, "return document.getElementById('via').title").await;
    assert!(title.as_str().unwrap().starts_with("1 line pushed by 1 source,"), "{title}");
    // What the page holds is the server's log, every line once.
    let shown: Vec<String> = serde_json::from_value(js(&c, "return window.powertail.lines()").await).unwrap();
    let served: Vec<String> = serde_json::from_value(app.logs(id, 0).await["lines"].clone()).unwrap();
    assert_eq!(shown[..], served[..shown.len()]);
    shot(&c, "viewer-pushed.png").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_history_view_lists_runs_and_a_search_hit_opens_its_line() {
    let _turn = SERIAL.lock().await;
    let driver = start_driver().await;
    // The demo with an archive in a SQLite file; runs started through powertail are
    // followed to completion and archived.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/archive.db", dir.path().display());
    let demo = TestApp::demo(0.2, |c| c.archive.url = url.into()).await;
    let ok = demo.run_named("vllm-start").await["instanceId"].as_str().unwrap().to_owned();
    let oom = demo.run_named("vllm-oom").await["instanceId"].as_str().unwrap().to_owned();
    let archived = |job: &'static str, id: String| {
        let demo = &demo;
        async move {
            let (status, body) = demo.get(&format!("/llm/jobs/{job}/runs")).await;
            let runs = body["runs"].as_array().cloned().unwrap_or_default();
            (status == 200).then(|| runs.into_iter().find(|r| r["instanceId"] == id.as_str())).flatten()
        }
    };
    let oom_run = wait_for(DEADLINE, "the OOM run archived", || archived("vllm-oom", oom.clone())).await;
    let ok_run = wait_for(DEADLINE, "the ready run archived", || archived("vllm-start", ok.clone())).await;
    assert_eq!((oom_run["phase"].as_str(), oom_run["cause"].as_str()), (Some("failed"), Some("cuda_oom")), "{oom_run}");
    let cause_line = oom_run["causeLine"].as_u64().unwrap();
    assert_eq!(ok_run["phase"], "ready");

    let c = browser(&driver).await;
    c.goto(&format!("{}/?history&job=vllm-oom", demo.base)).await.unwrap();
    let row = |id: &str| format!("document.querySelector('#hruns tr[data-instance=\"{id}\"]')");
    wait_js(&c, &format!("return {} !== null", row(&oom)), DEADLINE).await;
    let cells = js(&c, &format!("return [...{}.cells].map(c => c.textContent)", row(&oom))).await;
    assert_eq!(cells[0], oom.as_str());
    assert_eq!((cells[2].as_str(), cells[5].as_str()), (Some("FAILED"), Some("failed")), "{cells}");
    assert_eq!(cells[7], format!("cuda_oom line {}", cause_line + 1), "{cells}");
    let link = js(&c, &format!("return {}.querySelector('td.cause a').getAttribute('href')", row(&oom))).await;
    assert_eq!(link, format!("/?instanceId={oom}&line={cause_line}"));
    wait_js(&c, "return /^1 run failed 1 cuda_oom 1$/.test(document.getElementById('hstats').textContent)", DEADLINE)
        .await;
    let stats = js(&c, "return document.getElementById('hstats').textContent").await;
    assert!(stats.as_str().unwrap().contains("failed 1") && stats.as_str().unwrap().contains("cuda_oom 1"), "{stats}");
    shot(&c, "viewer-history-oom.png").await;

    // Another job: its runs, with the time to ready.
    js(&c, "const s = document.getElementById('hjob'); s.value = 'vllm-start'; s.dispatchEvent(new Event('change')); return true").await;
    wait_js(&c, &format!("return {} !== null", row(&ok)), DEADLINE).await;
    let cells = js(&c, &format!("return [...{}.cells].map(c => c.textContent)", row(&ok))).await;
    let ready = format!("{:.1} s", ok_run["readyAfterMs"].as_f64().unwrap() / 1000.0);
    assert_eq!((cells[5].as_str(), cells[6].as_str()), (Some("ready"), Some(ready.as_str())), "{cells}");
    assert!(c.current_url().await.unwrap().as_str().ends_with("/?history&job=vllm-start"));

    // A search across every job: the hits of the API, each a link to its line.
    let want = demo.get_ok("/llm/search?q=cuda%20out%20of%20memory&limit=50").await;
    let hits = want["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "{want}");
    js(&c, "document.getElementById('hjobOnly').checked = false; document.getElementById('hq').value = 'cuda out of memory'; \
            document.querySelector('#hsearch button').click(); return true").await;
    wait_js(&c, &format!("return document.querySelectorAll('#hhits li').length === {}", hits.len()), DEADLINE).await;
    let hrefs = js(&c, "return [...document.querySelectorAll('#hhits a.hit')].map(a => a.getAttribute('href'))").await;
    let urls: Vec<&Value> = hits.iter().map(|h| &h["url"]).collect();
    assert_eq!(hrefs, json!(urls));
    let marked = js(&c, "return document.querySelector('#hhits mark').textContent").await;
    assert_eq!(marked.as_str().map(str::to_lowercase).as_deref(), Some("cuda out of memory"));
    shot(&c, "viewer-history-search.png").await;

    // A click on a hit opens the log at that line, outlined.
    let first = &hits[0];
    let line = first["line"].as_u64().unwrap();
    js(&c, "document.querySelector('#hhits a.hit').click(); return true").await;
    wait_js(&c, &in_view(line), DEADLINE).await;
    let url = c.current_url().await.unwrap();
    assert_eq!(url.query(), Some(format!("instanceId={}&line={line}", first["instanceId"].as_str().unwrap()).as_str()));
    let text = js(&c, &format!("return window.powertail.lines()[{line}]")).await;
    assert_eq!(text, first["text"]);
    // The archived log, over the WebSocket too.
    assert_eq!(js(&c, "return window.powertail.transport()").await, "websocket");
    shot(&c, "viewer-history-hit.png").await;
    c.close().await.unwrap();
}
