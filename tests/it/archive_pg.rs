//! The archive on a real PostgreSQL (issue 20), started by the harness on a loopback port
//! with its own data directory (`tests/common/postgres.rs`): a database that is down,
//! then back, loses nothing; two replicas in cluster mode (real `redis-server`) sharing
//! one PostgreSQL write each log once, and serve it from the archive once Redis lost it.

use crate::common;

use std::time::Duration;

use common::cluster::{cluster_config, merge_toml, RedisServer, Replica};
use common::postgres::PgServer;
use common::{app_config, delivered_instance, fast_sim, metric, wait_until, Server};
use powertail::archive::Archive;
use powertail::sim::Simulator;

use super::archive::{archived, read_complete, with_archive};

const DEADLINE: Duration = Duration::from_secs(60);

/// `powertail_archive_write_failures_total` (both kinds) in a `/metrics` text.
fn write_failures(text: &str) -> f64 {
    metric(text, "powertail_archive_write_failures_total{kind=\"unavailable\"}")
        + metric(text, "powertail_archive_write_failures_total{kind=\"other\"}")
}

#[tokio::test]
#[ignore = "needs postgresql (apt-get install postgresql)"]
async fn a_database_down_then_back_loses_nothing_and_counts_the_failures() {
    let mut pg = PgServer::start();
    let url = pg.url();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let p = Server::start(&with_archive(app_config(&[sim.url()], ""), &url)).await;
    wait_until(DEADLINE, "the archive open", || async { p.get_ok("/readyz").await["archive"] == "ok" }).await;
    let failures_before = write_failures(p.get_ok("/metrics").await.as_str().unwrap_or_default());

    pg.stop();
    let ids: Vec<i64> = (0..3).map(|k| delivered_instance(&sim, 30 + 10 * k, &format!("down{k}"), true)).collect();
    let mut served = Vec::new();
    for &id in &ids {
        // Reads are answered while the archive is down (never blocked by it).
        let started = std::time::Instant::now();
        served.push(read_complete(&p, id).await);
        assert!(started.elapsed() < Duration::from_secs(10), "a read waited for the archive");
    }
    wait_until(DEADLINE, "two failed writes counted", || async {
        let text = p.get_ok("/metrics").await.as_str().unwrap_or_default().to_owned();
        write_failures(&text) >= failures_before + 2.0
    })
    .await;
    assert_eq!(p.get_ok("/readyz").await["archive"], "unavailable");
    // Held meanwhile: in memory, never evicted, served under the same epoch.
    assert_eq!(p.logs.archive_pending(), 3);
    for (&id, (epoch, lines)) in ids.iter().zip(&served) {
        assert!(p.logs.is_cached(id));
        let (again, same) = read_complete(&p, id).await;
        assert_eq!((&again, &same), (epoch, lines));
    }

    pg.restart();
    let db = Archive::open(&url, 2).await.unwrap(); // (migrated already: `p` opened it before)
    for (&id, (epoch, lines)) in ids.iter().zip(&served) {
        let row = archived(&db, id, Some(epoch), lines.len()).await;
        assert_eq!(&row.lines, lines);
    }
    wait_until(DEADLINE, "nothing pending", || async { p.logs.archive_pending() == 0 }).await;
    assert_eq!(p.get_ok("/readyz").await["archive"], "ok");
    p.stop().await;
}

/// `GET path` on a replica, which must answer 200.
async fn get_ok(r: &Replica, path: &str) -> serde_json::Value {
    let (status, body) = r.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Reads `id` from line 0 on replica `r` until complete: (epoch, lines).
async fn replica_complete(r: &Replica, id: i64) -> (String, Vec<String>) {
    common::wait_for(DEADLINE, &format!("instance {id} complete"), || async {
        let body = get_ok(r, &format!("/llm/logs?instanceId={id}&fromLine=0&limit=10000")).await;
        (body["complete"] == true).then(|| {
            let lines: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
            (body["epoch"].as_str().unwrap().to_owned(), lines)
        })
    })
    .await
}

/// Rows this replica wrote (its `powertail_archive_writes_total{outcome="ok"}`).
async fn rows_written(r: &Replica) -> f64 {
    let (_, text) = r.get("/metrics").await;
    metric(text.as_str().unwrap_or_default(), "powertail_archive_writes_total{outcome=\"ok\"}")
}

#[tokio::test]
#[ignore = "needs postgresql and redis-server (apt-get install postgresql redis-server); CI installs them"]
async fn two_replicas_sharing_postgresql_archive_each_log_once_and_serve_it_after_redis_lost_it() {
    let pg = PgServer::start();
    let redis = RedisServer::start();
    let sim = Simulator::spawn(fast_sim()).await.unwrap();
    let config = |_: ()| {
        merge_toml(&cluster_config(&sim.url(), &redis.url(), ""), "[archive]", &format!("url = {:?}", pg.url()))
    };
    let mut replicas = [Replica::spawn(&config(())).await, Replica::spawn(&config(())).await];
    let ids: Vec<i64> = (0..4).map(|k| delivered_instance(&sim, 40 + 10 * k, &format!("shared{k}"), true)).collect();

    // Both replicas follow every log to completion.
    let mut served = Vec::new();
    for &id in &ids {
        let a = replica_complete(&replicas[0], id).await;
        let b = replica_complete(&replicas[1], id).await;
        assert_eq!(a, b, "one sequence for both replicas");
        served.push(a);
    }
    let db = Archive::open(&pg.url(), 2).await.unwrap();
    for (&id, (epoch, lines)) in ids.iter().zip(&served) {
        assert_eq!(&archived(&db, id, Some(epoch), lines.len()).await.lines, lines);
    }
    wait_until(DEADLINE, "every log written by one replica", || async {
        rows_written(&replicas[0]).await + rows_written(&replicas[1]).await >= ids.len() as f64
    })
    .await;
    // (Both saw every log complete; a write is claimed once: never twice.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = rows_written(&replicas[0]).await + rows_written(&replicas[1]).await;
    assert_eq!(written, ids.len() as f64, "each log written once");

    // Redis loses every key (they may expire once archived); a restarted replica, which
    // holds nothing, serves each log from the archive under its epoch, without PowerJob.
    redis.flushall();
    replicas[1].respawn().await;
    sim.reset_counters();
    for (&id, (epoch, lines)) in ids.iter().zip(&served) {
        let body =
            get_ok(&replicas[1], &format!("/llm/logs?instanceId={id}&fromLine=0&limit=10000&epoch={epoch}")).await;
        assert_eq!(body["epoch"], epoch.as_str());
        assert_eq!(body["complete"], true);
        let got: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
        assert_eq!(&got, lines);
    }
    assert_eq!(sim.requests("/instance/log"), 0);
    let ready = get_ok(&replicas[1], "/readyz").await;
    assert_eq!(ready["archive"], "ok", "{ready}");
}
