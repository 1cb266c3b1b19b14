//! Chromium through chromedriver (WebDriver) for the browser tests: `tests/viewer_browser.rs`,
//! `tests/viewer_gaps.rs` and `tests/viewer_ws.rs`. Needs Debian's `chromium` and `chromium-driver`.
#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use super::cluster::free_port;
use super::wait_until;

/// One browser at a time: Chromium is heavy on a small machine, and the test threads
/// (RUST_TEST_THREADS, .cargo/config.toml) are meant for tests that mostly wait.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Driver {
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

pub async fn start_driver() -> Driver {
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
    wait_until(Duration::from_secs(20), "chromedriver listens", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    Driver { child, port, _profile: tempfile::tempdir().unwrap() }
}

pub async fn browser(driver: &Driver) -> Client {
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

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits until `script` returns true.
pub async fn wait_js(c: &Client, script: &str, timeout: Duration) {
    wait_until(timeout, &format!("`{script}` returns true"), || async { js(c, script).await == Value::Bool(true) })
        .await;
}

/// With `POWERTAIL_UPDATE_SCREENSHOT`, a screenshot of this state in the temp dir (to look at).
pub async fn shot(c: &Client, name: &str) {
    if std::env::var_os("POWERTAIL_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(std::env::temp_dir().join(name), c.screenshot().await.unwrap()).unwrap();
    }
}
