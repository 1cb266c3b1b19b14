//! The archive in the service (issue 20), end to end with the embedded SQLite in a
//! temporary directory: restarts served from the archive without PowerJob, a PowerJob
//! that lost the log, runs started through powertail archived with nobody reading, a
//! retry that replaces the row, and the history routes' answers checked exactly against
//! what the service serves.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{app_config, delivered_instance, fast_sim, steps, wait_for, wait_until, Server};
use powertail::archive::Archive;
use powertail::config::{Config, JobConfig};
use powertail::sim::Simulator;
use secrecy::SecretString;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(40);

/// `sqlite://<dir>/archive.db`.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/archive.db", dir.path().display())
}

/// `config` with the archive at `url`.
pub fn with_archive(mut config: Config, url: &str) -> Config {
    config.archive.url = SecretString::from(url.to_owned());
    config
}

/// A configured job `name` of PowerJob job `job_id`.
pub fn named_job(config: &mut Config, name: &str, job_id: i64) {
    let job: JobConfig = toml_job(job_id);
    config.jobs.insert(name.to_owned(), job);
}

fn toml_job(job_id: i64) -> JobConfig {
    let text = format!(
        "[powerjob]\naddresses = [\"http://127.0.0.1:1\"]\napp_name = \"a\"\napp_password = \"p\"\n[jobs.j]\njob_id = {job_id}\n"
    );
    Config::from_toml(&text).unwrap().jobs.remove("j").unwrap()
}

/// The archive at `url`, once `p` opened it (it runs the migrations: one at a time).
pub async fn open_archive(p: &Server, url: &str) -> Archive {
    wait_until(DEADLINE, "the archive open", || async { p.get_ok("/readyz").await["archive"] == "ok" }).await;
    Archive::open(url, 2).await.unwrap()
}

/// Reads `id` from line 0 until complete: (epoch, lines).
pub async fn read_complete(p: &Server, id: i64) -> (String, Vec<String>) {
    wait_for(DEADLINE, &format!("instance {id} complete"), || async {
        let (status, body) = p.get(&format!("/llm/logs?instanceId={id}&fromLine=0&limit=10000")).await;
        assert_eq!(status, 200, "{body}");
        (body["complete"] == true).then(|| {
            let lines: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
            (body["epoch"].as_str().unwrap().to_owned(), lines)
        })
    })
    .await
}

/// Waits until the archive holds `id` under `epoch` with `lines` lines; its row.
pub async fn archived(db: &Archive, id: i64, epoch: Option<&str>, lines: usize) -> powertail::archive::ArchivedLog {
    wait_for(DEADLINE, &format!("instance {id} archived with {lines} lines"), || async {
        let log = db.get(id).await.unwrap()?;
        (epoch.is_none_or(|e| e == log.epoch) && log.lines.len() == lines).then_some(log)
    })
    .await
}

#[tokio::test]
async fn a_restart_serves_archived_logs_from_the_archive_even_when_powerjob_lost_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let config = with_archive(app_config(&[sim.url()], ""), &url);
    let ids: Vec<i64> = (0..5).map(|k| delivered_instance(&sim, 40 + 25 * k, &format!("run{k}"), true)).collect();

    let first = Server::start(&config).await;
    let mut served = Vec::new();
    for &id in &ids {
        served.push(read_complete(&first, id).await);
    }
    let db = open_archive(&first, &url).await;
    for (&id, (epoch, lines)) in ids.iter().zip(&served) {
        let row = archived(&db, id, Some(epoch), lines.len()).await;
        assert_eq!(&row.lines, lines, "the archive holds the served lines, in the served order");
        assert_eq!(row.attempts.len(), 1);
    }
    first.stop().await;

    // PowerJob restarted without its files: it serves "no online log" for all of them.
    sim.restart();
    sim.reset_counters();
    let second = Server::start(&config).await;
    for (&id, (epoch, lines)) in ids.iter().zip(&served) {
        // The old cursor's epoch holds across the restart.
        let body = second.get_ok(&format!("/llm/logs?instanceId={id}&fromLine=0&limit=10000&epoch={epoch}")).await;
        assert_eq!(body["epoch"], epoch.as_str(), "{body}");
        assert_eq!(body["complete"], true);
        let got: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
        assert_eq!(&got, lines);
        // A cursor in the middle, and the raw text, from the same sequence.
        let mid = lines.len() / 2;
        let body = second.get_ok(&format!("/llm/logs?instanceId={id}&fromLine={mid}&epoch={epoch}")).await;
        assert_eq!(body["lines"][0], lines[mid].as_str());
        let resp = second.http.get(format!("{}/llm/logs/{id}/raw", second.base)).send().await.unwrap();
        assert_eq!(resp.headers()["powertail-epoch"], epoch.as_str());
        assert_eq!(resp.text().await.unwrap(), lines.iter().map(|l| format!("{l}\n")).collect::<String>());
    }
    // The event stream of an archived log: its lines under the archived epoch, then its end.
    let (id, (epoch, lines)) = (ids[0], &served[0]);
    let mut resp =
        second.http.get(format!("{}/llm/logs/{id}/stream?fromLine=0&epoch={epoch}", second.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("event: end") {
        let chunk = tokio::time::timeout(DEADLINE, resp.chunk()).await.unwrap().unwrap().expect("the stream ends");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let streamed: Vec<String> = text
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: lines"))
        .flat_map(|block| {
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["epoch"], epoch.as_str(), "{data}");
            serde_json::from_value::<Vec<String>>(data["lines"].clone()).unwrap()
        })
        .collect();
    assert_eq!(&streamed, lines);
    assert_eq!(sim.requests("/instance/log"), 0, "no log read from PowerJob");
    assert_eq!(sim.requests("/openApi/fetchInstanceInfo"), 0, "not even its status");
    let ready = second.get_ok("/readyz").await;
    assert_eq!(ready["archive"], "ok", "{ready}");
    second.stop().await;
}

#[tokio::test]
async fn runs_through_powertail_are_archived_unread_and_a_retry_replaces_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let sim = Simulator::spawn(steps(60).over(800).sim(12)).await.unwrap();
    let mut config = with_archive(app_config(&[sim.url()], ""), &url);
    config.logs.recheck_complete_ms = 200;
    named_job(&mut config, "train", 12);
    let p = Server::start(&config).await;
    let db = open_archive(&p, &url).await;

    // Nobody reads it: the watcher follows it to completion, and it is archived.
    let id: i64 = p.run_named("train").await["instanceId"].as_str().unwrap().parse().unwrap();
    let row = archived(&db, id, None, 60).await;
    assert_eq!(row.job_name.as_deref(), Some("train"));
    assert_eq!(row.job_id, Some(12));
    assert_eq!(row.status, powertail::logs::Status::Succeed);
    assert!(row.finished_at.is_some() && row.started_at.is_some(), "{row:?}");
    let (epoch, lines) = read_complete(&p, id).await;
    assert_eq!((row.epoch.as_str(), &row.lines), (epoch.as_str(), &lines), "what is served was archived");
    let expected: Vec<String> = (0..60).map(|k| format!("[INFO] step {k} of 60")).collect();
    let texts: Vec<String> =
        lines.iter().map(|l| l.split_once("] INFO ").map_or(l.clone(), |(_, t)| t.to_owned())).collect();
    assert_eq!(texts, expected);

    // Retried through powertail: the log runs again, nobody reads it, and its new
    // complete state (two attempts, 120 lines, the same sequence) replaces the row.
    let resp = p.http.post(format!("{}/llm/instances/{id}/retry", p.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let row = archived(&db, id, Some(&epoch), 120).await;
    assert_eq!(row.attempts.iter().map(|a| (a.attempt, a.from_line)).collect::<Vec<_>>(), [(1, 0), (2, 60)]);
    let (again, lines) = read_complete(&p, id).await;
    assert_eq!(again, epoch, "the retry continues the sequence");
    assert_eq!(row.lines, lines);
    assert_eq!(p.logs.archive_pending(), 0);
    p.stop().await;
}

/// The hits of `q` in `logs` (instance id → lines), by brute force: (instance, line, text).
fn brute_force(logs: &[(i64, Vec<String>)], q: &str) -> BTreeSet<(String, u64, String)> {
    let q = q.to_lowercase();
    let mut hits = BTreeSet::new();
    for (id, lines) in logs {
        for (n, l) in lines.iter().enumerate() {
            if l.to_lowercase().contains(&q) {
                hits.insert((id.to_string(), n as u64, l.clone()));
            }
        }
    }
    hits
}

/// Every hit of a search, page by page (`limit` per page).
async fn search_all(p: &Server, query: &str, limit: u32) -> Vec<Value> {
    let mut hits = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/llm/search?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()));
        }
        let body = p.get_ok(&path).await;
        assert!(body["tookMs"].is_u64(), "{body}");
        let page = body["hits"].as_array().unwrap();
        assert!(page.len() <= limit as usize);
        hits.extend(page.iter().cloned());
        match body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return hits,
        }
    }
    panic!("the search did not end");
}

#[tokio::test]
async fn search_runs_and_stats_answer_exactly_what_was_archived() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let app = common::TestApp::demo(0.1, |c| c.archive.url = SecretString::from(url.clone())).await;
    let db = open_archive(&app, &url).await;
    let mut runs: Vec<(String, i64)> = Vec::new();
    for job in ["vllm-start", "vllm-oom", "vllm-start"] {
        let id: i64 = app.run_named(job).await["instanceId"].as_str().unwrap().parse().unwrap();
        runs.push((job.to_owned(), id));
    }
    let mut logs = Vec::new();
    let mut startups = Vec::new();
    for (_, id) in &runs {
        let (epoch, lines) = read_complete(&app, *id).await;
        archived(&db, *id, Some(&epoch), lines.len()).await;
        startups.push(app.get_ok(&format!("/llm/instances/{id}/startup")).await);
        logs.push((*id, lines));
    }

    // Search: exactly the lines a full scan finds, over pages, in the documented order.
    for q in ["out of memory", "CUDA OUT OF MEMORY", "KV cache memory"] {
        let query = format!("q={}", form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
        let hits = search_all(&app, &query, 2).await;
        let got: Vec<(String, u64, String)> = hits
            .iter()
            .map(|h| {
                (
                    h["instanceId"].as_str().unwrap().to_owned(),
                    h["line"].as_u64().unwrap(),
                    h["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = brute_force(&logs, q);
        assert!(!expected.is_empty(), "{q}: the demo logs it");
        assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), expected, "{q}");
        assert_eq!(got.len(), expected.len(), "{q}: no hit twice");
        for h in &hits {
            let (id, line) = (h["instanceId"].as_str().unwrap(), h["line"].as_u64().unwrap());
            assert_eq!(h["url"], format!("/?instanceId={id}&line={line}"));
            let job = &runs.iter().find(|(_, i)| i.to_string() == id).unwrap().0;
            assert_eq!(h["jobName"], job.as_str());
            assert!(h["finishedAt"].is_i64());
        }
        let order: Vec<(i64, String, u64)> = hits
            .iter()
            .map(|h| {
                (
                    -h["finishedAt"].as_i64().unwrap(),
                    h["instanceId"].as_str().unwrap().to_owned(),
                    h["line"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|a| (a.0, a.1.parse::<i64>().unwrap(), a.2));
        assert_eq!(order, sorted, "{q}: newest run first, then instance, then line");
    }
    // Filters: the job and the cause.
    let only = search_all(&app, "q=memory&job=vllm-start", 50).await;
    assert!(only.iter().all(|h| h["jobName"] == "vllm-start"));
    let oom = &startups[1];
    let cause = oom["failure"]["cause"].as_str().unwrap();
    let by_cause = search_all(&app, &format!("q=memory&cause={cause}"), 50).await;
    assert!(!by_cause.is_empty() && by_cause.iter().all(|h| h["jobName"] == "vllm-oom"), "{by_cause:?}");

    // Runs of a job: each with its start-up outcome as the start-up route said.
    let body = app.get_ok("/llm/jobs/vllm-start/runs").await;
    assert_eq!(body["job"], "vllm-start");
    assert_eq!(body["nextCursor"], Value::Null);
    let listed = body["runs"].as_array().unwrap();
    let mut ids: Vec<String> = listed.iter().map(|r| r["instanceId"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    let mut expected: Vec<String> =
        runs.iter().filter(|(j, _)| j == "vllm-start").map(|(_, id)| id.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for r in listed {
        let k = runs.iter().position(|(_, id)| id.to_string() == r["instanceId"].as_str().unwrap()).unwrap();
        assert_eq!(r["lines"].as_u64().unwrap(), logs[k].1.len() as u64);
        assert_eq!(r["status"], "SUCCEED");
        assert_eq!(r["phase"], "ready");
        assert_eq!(r["attempt"], 1);
        assert!(r["readyAfterMs"].as_i64().is_some_and(|ms| ms > 0), "{r}");
        assert!(r["startedAt"].is_i64() && r["finishedAt"].is_i64(), "{r}");
    }
    let body = app.get_ok("/llm/jobs/vllm-oom/runs?limit=1").await;
    let r = &body["runs"][0];
    assert_eq!((r["phase"].as_str(), r["cause"].as_str()), (Some("failed"), Some(cause)), "{r}");
    assert_eq!(r["causeLine"], oom["failure"]["line"]);
    assert_eq!(r["status"], "FAILED");

    // Statistics.
    let stats = app.get_ok("/llm/jobs/vllm-oom/stats").await;
    assert_eq!((stats["job"].as_str(), stats["runs"].as_u64()), (Some("vllm-oom"), Some(1)), "{stats}");
    assert_eq!(stats["byCause"], serde_json::json!({ cause: 1 }), "{stats}");
    let stats = app.get_ok("/llm/jobs/vllm-start/stats").await;
    assert_eq!(stats["runs"], 2, "{stats}");
    assert!(stats["readyP50Ms"].as_i64().is_some() && stats["readyP95Ms"].as_i64().is_some(), "{stats}");
    let none = app.get_ok("/llm/jobs/vllm-start/stats?since=99999999999999").await;
    assert_eq!(none["runs"], 0, "{none}");
}

#[tokio::test]
async fn bad_history_queries_are_400_and_an_archive_that_is_off_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let on = Server::start(&with_archive(app_config(&[sim.url()], ""), &sqlite_url(&dir))).await;
    for bad in [
        "/llm/search",
        "/llm/search?q=ab",
        "/llm/search?q=abc&limit=0",
        "/llm/search?q=abc&limit=501",
        "/llm/search?q=abc&status=GONE",
        "/llm/search?q=abc&since=yesterday",
        "/llm/search?q=a%00c",
        "/llm/search?q=abc&qq=1",
        "/llm/search?q=abc&q=abd",
        "/llm/jobs/x/runs?limit=-1",
        "/llm/jobs/x/runs?until=1.5",
        "/llm/jobs/x/stats?since=-3",
        "/llm/jobs/x/stats?limit=3",
    ] {
        let (status, body) = on.get(bad).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}: {body}");
    }
    let body = on.get_ok("/llm/search?q=nothing%20like%20this").await;
    assert_eq!((body["hits"].as_array().map(Vec::len), &body["nextCursor"]), (Some(0), &Value::Null));
    let body = on.get_ok("/llm/jobs/nobody/runs").await;
    assert_eq!(body["runs"], serde_json::json!([]));
    on.stop().await;

    let off = Server::start(&app_config(&[sim.url()], "")).await;
    for path in ["/llm/search?q=abc", "/llm/jobs/x/runs", "/llm/jobs/x/stats"] {
        let (status, body) = off.get(path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
    }
    assert_eq!(off.get_ok("/readyz").await["archive"], "off");
    off.stop().await;
}

#[test]
fn a_cluster_with_a_sqlite_archive_is_refused_saying_why() {
    let text = "[powerjob]\naddresses = [\"http://127.0.0.1:1\"]\napp_name = \"a\"\napp_password = \"p\"\n\
                [cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n[archive]\nurl = \"sqlite://powertail.db\"\n";
    let e = Config::from_toml(text).unwrap_err().to_string();
    assert!(e.contains("archive.url") && e.contains("only one process") && e.contains("PostgreSQL"), "{e}");
}

/// A complete run of `lines` lines that finished at `finished_at`, as archived.
fn old_run(id: i64, finished_at: i64, lines: usize) -> powertail::archive::ArchivedLog {
    powertail::archive::ArchivedLog {
        instance_id: id,
        epoch: format!("00000000000000aa-{id}"),
        job_id: Some(12),
        job_name: Some("train".into()),
        status: powertail::logs::Status::Succeed,
        started_at: Some(finished_at - 60_000),
        finished_at: Some(finished_at),
        archived_at: finished_at + 1_000,
        lines: (0..lines)
            .map(|k| format!("2026-01-01 00:00:{:02}.000 [10.0.0.5:27777] INFO old run {id} line {k}", k % 60))
            .collect(),
        attempts: vec![powertail::logs::Attempt { attempt: 1, from_line: 0 }],
        upstream_lost: false,
        truncated: false,
        startup: None,
    }
}

#[tokio::test]
async fn retention_deletes_old_runs_and_a_run_powerjob_never_knew_is_served_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let db = Archive::open(&url, 2).await.unwrap();
    let now = powertail::clock::Clock::real().now_ms();
    let day = 86_400_000;
    for id in 1..=3 {
        db.put(&old_run(id, now - 3 * day - id, 20)).await.unwrap();
    }
    for id in 4..=5 {
        db.put(&old_run(id, now - day / 2, 30)).await.unwrap();
    }
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let mut config = with_archive(app_config(&[sim.url()], ""), &url);
    config.archive.retain_days = 2;
    let p = Server::start(&config).await;
    wait_for(DEADLINE, "runs finished 3 days ago deleted", || async {
        let mut gone = true;
        for id in 1..=3 {
            gone &= db.has(id).await.unwrap().is_none();
        }
        gone.then_some(())
    })
    .await;
    for id in 4..=5 {
        let epoch = db.has(id).await.unwrap();
        assert_eq!(epoch.as_deref(), Some(format!("00000000000000aa-{id}").as_str()), "a recent run stays");
        // PowerJob never knew these ids (its retention, or another server): served as archived.
        let body = p.get_ok(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch=00000000000000aa-{id}")).await;
        assert_eq!(body["complete"], true);
        assert_eq!(body["lines"].as_array().unwrap().len(), 30);
        assert_eq!(body["lines"][29], old_run(id, 0, 30).lines[29].as_str());
    }
    // A purged one is PowerJob's again (which does not know it either).
    let (status, body) = p.get("/llm/logs?instanceId=1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("instance_not_found")), "{body}");
    assert_eq!(sim.requests("/instance/log"), 0);
    p.stop().await;
}

#[tokio::test]
async fn a_log_pushed_to_before_its_first_read_is_named_its_own_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::spawn(steps(40).over(60_000).sim(12)).await.unwrap();
    let p = Server::start(&with_archive(app_config(&[sim.url()], ""), &sqlite_url(&dir))).await;
    let id = common::run_job(&sim, 12);
    let body = serde_json::json!({"source": "10.0.0.5:27777/a", "seq": 0, "worker": "10.0.0.5:27777",
        "timestamp": 1_764_900_001_120_i64, "final": false, "lines": ["pushed before any read"]});
    let resp = p
        .http
        .post(format!("{}/llm/logs/{id}/append", p.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let page = p.get_ok(&format!("/llm/logs?instanceId={id}&fromLine=0")).await;
    let epoch = page["epoch"].as_str().unwrap();
    let (boot, n) = epoch.split_once('-').unwrap_or_else(|| panic!("an epoch's shape: {page}"));
    assert!(boot.len() == 16 && n.parse::<u64>().is_ok(), "{page}");
    let again = p.get_ok(&format!("/llm/logs?instanceId={id}&fromLine=0&epoch={epoch}")).await;
    assert_eq!(again["epoch"], epoch);
    assert!(again["lines"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().ends_with("pushed before any read")));
    p.stop().await;
}
