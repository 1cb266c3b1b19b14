//! No password or token ever appears in logs (captured at TRACE level), error answers
//! or metrics, across logins, renewals, failures and job runs.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast_sim, TestApp};
use powertail::config::Config;
use powertail::sim::{JobScript, SimJob, Simulator, Version};

const APP_PW: &str = "app-pw-5d2e1c";
const CONSOLE_PW: &str = "console-pw-7f3a9b";
const TOKEN: &str = "tok-secret-0123456789abcdef";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_errors_or_metrics() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt().with_env_filter("trace").with_writer(move || writer.clone()).with_ansi(false).init();

    let mut cfg = fast_sim();
    cfg.version = Version::V5;
    cfg.openapi_auth = true;
    cfg.token_ttl_ms = 300;
    cfg.app_password = APP_PW.into();
    cfg.console_password = CONSOLE_PW.into();
    let text: String = (0..50).map(|k| format!("[INFO] step {k}\n")).collect();
    cfg.jobs = vec![SimJob {
        id: 12,
        name: "j".into(),
        job_params: String::new(),
        script: Some(Arc::new(JobScript::from_text(&text, 500, 5, "ok"))),
    }];
    let sim = Simulator::spawn(cfg).await.unwrap();
    let config = Config::from_toml(&format!(
        r#"
        [powerjob]
        addresses = ["{}"]
        app_name = "llm-test-platform"
        app_password = "{APP_PW}"
        console_username = "ADMIN"
        console_password = "{CONSOLE_PW}"
        log_cache_ms = 300
        worker_flush_ms = 200
        clock_skew_ms = 100
        [logs]
        refresh_interval_ms = 50
        first_read_delay_ms = 300
        [[auth.tokens]]
        name = "platform"
        token = "{TOKEN}"
        scopes = ["logs:read", "jobs:run", "jobs:control"]
        "#,
        sim.url()
    ))
    .unwrap();
    assert!(!format!("{config:?}").contains(APP_PW));
    let app = TestApp::spawn_app(sim, &config).await;
    let mut seen = String::new();
    // A run, a follow through token renewals, a wrong token, an unauthorised read.
    let run = app.http.post(format!("{}/llm/jobs/12/run", app.base)).bearer_auth(TOKEN).send().await.unwrap();
    seen.push_str(&run.text().await.unwrap());
    let id: i64 =
        serde_json::from_str::<serde_json::Value>(&seen).unwrap()["instanceId"].as_str().unwrap().parse().unwrap();
    for _ in 0..200 {
        let r = app.http.get(format!("{}/llm/logs?instanceId={id}", app.base)).bearer_auth(TOKEN).send().await.unwrap();
        let body = r.text().await.unwrap();
        let done = body.contains("\"complete\":true");
        seen.push_str(&body);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for wrong in ["tok-secret-0123456789abcdeX", ""] {
        let r = app.http.get(format!("{}/llm/logs?instanceId={id}", app.base)).bearer_auth(wrong).send().await.unwrap();
        assert_eq!(r.status(), 401);
        seen.push_str(&r.text().await.unwrap());
    }
    // The console password changes on the server: logins now fail (and are logged).
    app.sim.revoke_tokens();
    seen.push_str(&app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap());
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("authenticated with PowerJob") && logs.contains("job run"), "the capture works");
    for secret in [APP_PW, CONSOLE_PW, TOKEN] {
        assert!(!logs.contains(secret), "a secret in the logs");
        assert!(!seen.contains(secret), "a secret in an answer or in the metrics");
    }
    // The MD5 the 5.x login sends is a password equivalent too.
    let md5 = format!("{:x}", <md5::Md5 as md5::Digest>::digest(APP_PW.as_bytes()));
    assert!(!logs.contains(&md5));
}
