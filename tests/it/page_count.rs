//! Issue 18, fault 1: an absurd `totalPages` on page 0 only (PowerJob or a broken proxy
//! in front of it), the other pages with the true count. At most one request past the
//! real end of the log per refresh, whatever page 0 claims (on main a refresh asked for
//! page after page up to the line cap: ~930 requests past the end in 10 s).

use std::sync::Arc;
use std::time::Duration;

use crate::common::{app_config, fast_sim, TestApp};
use powertail::sim::{Fault, FaultKind, JobScript, SimJob, Simulator};
use tokio::time::Instant;

/// How long the lie is watched, and the refresh interval (as measured in the issue).
const WATCH: Duration = Duration::from_secs(10);
const REFRESH_MS: u64 = 300;

#[tokio::test]
async fn a_lying_first_page_costs_at_most_one_request_past_the_end_per_refresh() {
    // A 250-line log (3 pages, page 0 full) of a job that keeps running for a minute.
    let text: String = (0..250).map(|k| format!("step {k}\n")).collect();
    let mut script = JobScript::from_text(&text, 300, 5, "done");
    script.end_ms = 60_000;
    let mut cfg = fast_sim();
    cfg.jobs = vec![SimJob { id: 12, name: "job".into(), job_params: String::new(), script: Some(Arc::new(script)) }];
    let sim = Simulator::spawn(cfg).await.unwrap();
    let mut config = app_config(&[sim.url()], "");
    config.logs.refresh_interval_ms = REFRESH_MS;
    let app = TestApp::spawn_app(sim, &config).await;
    let id = app.sim.with_core(|core, now| core.run_job(12, None, 0, now)).expect("job 12 exists");
    app.sim.inject(Fault::always(Some("/instance/log"), FaultKind::FirstPageTotalPages(1_000_000_000)));

    // A reader that keeps asking (each ask may start a refresh once the interval passed).
    let end = Instant::now() + WATCH;
    let mut answers = 0;
    while Instant::now() < end {
        let (status, body) = app.get(&format!("/llm/logs?instanceId={id}&waitMs=250")).await;
        assert!(matches!(status, 200 | 502 | 503 | 504), "{status} {body}");
        answers += 1;
    }
    let past_end = app.sim.log_requests_from(3);
    let all = app.sim.log_requests_from(0);
    let refreshes = app.sim.requests("/openApi/fetchInstanceInfo").max(1);
    eprintln!("{past_end} requests past the end in {WATCH:?}, {refreshes} refreshes, {all} page requests in all");
    assert!(answers > 1, "the reader kept asking ({answers} answers)");
    assert!(past_end <= 50, "{past_end} requests past the end of a 3-page log in {WATCH:?} ({all} in all)");
    assert!(past_end <= refreshes, "{past_end} requests past the end in {refreshes} refreshes");
    // Once the lie stops, the log is read (refreshes back off after failures: 20 s).
    app.sim.clear_faults();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = app.get(&format!("/llm/logs?instanceId={id}&waitMs=1000")).await;
        if body["totalLines"] == 250 {
            assert!(body["lines"][249].as_str().is_some_and(|l| l.ends_with("step 249")), "{body}");
            break;
        }
        assert!(Instant::now() < end, "not read after the lie stopped: {body}");
    }
}
