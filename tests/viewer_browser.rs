//! The viewer in a real headless Chromium (WebDriver via chromedriver): run a job from
//! the page, watch the lines arrive, reach completion; every line shown once and in
//! order, the READY mark, filtering, and a 100 000-line log that stays responsive.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). The test is `#[ignore]`d so that a plain
//! `cargo test` shows it as ignored rather than passing without a browser; run it with
//! `cargo test -- --include-ignored` (what CI and the README run), where a missing
//! browser fails it.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use powertail::sim::{Level, Record};
use serde_json::{json, Value};

struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_driver() -> Driver {
    let exists = |p: &str| std::path::Path::new(p).exists();
    assert!(
        exists("/usr/bin/chromium") && exists("/usr/bin/chromedriver"),
        "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
    );
    let port = free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { child, port, _profile: tempfile::tempdir().unwrap() }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,800", format!("--user-data-dir={}", driver._profile.path().display())],
        }),
    );
    // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits until `script` returns true.
async fn wait_js(c: &Client, script: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if js(c, script).await == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for `{script}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn the_viewer_follows_a_vllm_startup_in_chromium() {
    let driver = start_driver().await;
    // The demo, 5 times faster: the vLLM start-up takes ~6 s.
    let demo = powertail::demo::setup("127.0.0.1:0".parse().unwrap(), 0.2).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = powertail::build(&demo.config, addr).unwrap();
    tokio::spawn(powertail::run(listener, state, std::future::pending()));
    let base = format!("http://{addr}");
    let c = browser(&driver).await;

    // Run the job from the page.
    c.goto(&format!("{base}/")).await.unwrap();
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
    let marks = c.find(Locator::Id("marks")).await.unwrap().text().await.unwrap();
    assert_eq!(marks, "READY at line 104");
    let state_text = c.find(Locator::Id("state")).await.unwrap().text().await.unwrap();
    assert!(state_text.contains("complete"), "{state_text}");
    // The rendered rows are consecutive line numbers, and no raw escape byte is shown.
    let rows: Vec<i64> = serde_json::from_value(
        js(&c, "return [...document.querySelectorAll('#rows .line')].map(e => +e.dataset.line)").await,
    )
    .unwrap();
    assert!(!rows.is_empty() && rows.windows(2).all(|w| w[1] == w[0] + 1), "{rows:?}");
    let text = js(&c, "return document.getElementById('rows').textContent").await;
    assert!(!text.as_str().unwrap().contains('\u{1b}'), "ANSI escapes are rendered, not shown");
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

    // A failed start is marked where it failed (the first FAILED match of the fixture).
    let http = reqwest::Client::new();
    let run: Value = http.post(format!("{base}/llm/jobs/vllm-oom/run")).send().await.unwrap().json().await.unwrap();
    let oom = run["instanceId"].as_str().unwrap().to_owned();
    c.goto(&format!("{base}/?instanceId={oom}")).await.unwrap();
    wait_js(&c, "return window.powertail.complete()", Duration::from_secs(60)).await;
    let marks = c.find(Locator::Id("marks")).await.unwrap().text().await.unwrap();
    assert_eq!(marks, "FAILED at line 44");
    assert_eq!(js(&c, "return document.getElementById('st').textContent").await, "FAILED");

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
