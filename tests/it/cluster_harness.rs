//! The cluster harness itself (tests/common/cluster.rs): a Redis the test starts, stops,
//! kills and restarts on its own port; the configuration helpers; a replica of the real
//! binary with signals. The Redis tests need Debian's redis-server and are ignored
//! without `--include-ignored` (CI runs them).

use crate::common;

use std::time::{Duration, Instant};

use common::cluster::{
    cluster_config, follow_across, merge_toml, next_node_id, redis_available, test_key_prefix, wait_until, InProcess,
    RedisServer, Replica, Reply,
};
use powertail::config::Config;
use powertail::sim::{SimConfig, Simulator};

#[test]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
fn redis_starts_pauses_dies_and_restarts_on_its_port() {
    assert!(redis_available());
    let mut redis = RedisServer::start();
    assert_eq!(redis.cmd(&["PING"]), "PONG");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/0", redis.port()));
    assert_eq!(redis.cmd(&["CONFIG", "GET", "maxmemory-policy"]), "maxmemory-policy\nnoeviction");
    assert_eq!(redis.cmd(&["CONFIG", "GET", "appendonly"]), "appendonly\nno");
    assert_eq!(redis.cmd(&["CONFIG", "GET", "save"]), "save\n");

    // Replies of every kind.
    assert_eq!(redis.cmd(&["SET", "pt:{1}:lease", "tok", "PX", "60000"]), "OK");
    assert_eq!(redis.try_cmd(&["GET", "pt:{1}:lease"]).unwrap(), Reply::Bulk(Some(b"tok".to_vec())));
    assert_eq!(redis.try_cmd(&["GET", "missing"]).unwrap(), Reply::Bulk(None));
    assert_eq!(redis.cmd(&["XADD", "pt:{1}:lines", "1-0", "l", "\u{1}line zero"]), "1-0");
    assert_eq!(redis.cmd(&["XADD", "pt:{1}:lines", "2-0", "l", "\u{1}line one"]), "2-0");
    assert!(
        matches!(redis.try_cmd(&["XADD", "pt:{1}:lines", "2-0", "l", "again"]).unwrap(), Reply::Error(e) if e.starts_with("ERR"))
    );
    assert_eq!(redis.cmd(&["XRANGE", "pt:{1}:lines", "2", "+"]), "2-0\nl\n\u{1}line one");
    assert_eq!(redis.try_cmd(&["XLEN", "pt:{1}:lines"]).unwrap(), Reply::Int(2));
    assert_eq!(redis.keys("pt:{1}:*"), ["pt:{1}:lease", "pt:{1}:lines"]);
    assert!(redis.memory_usage("pt:{1}:lines").unwrap() > 0);
    assert_eq!(redis.memory_usage("missing"), None);
    assert!(redis.info_memory().contains("used_memory:"));
    assert!(redis.used_memory() > 0);
    redis.flushall();
    assert!(redis.keys("*").is_empty());

    // Paused: connections are accepted, nothing answers; resumed: it answers again.
    redis.cmd(&["SET", "k", "v"]);
    redis.stop();
    let err = redis.try_cmd_timeout(&["PING"], Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{err:?}");
    redis.cont();
    assert_eq!(redis.cmd(&["GET", "k"]), "v");

    // Killed: refused; restarted on the same port, empty (no persistence).
    let port = redis.port();
    let pid = redis.pid().unwrap();
    redis.kill();
    assert!(!redis.is_running());
    assert!(redis.try_cmd(&["PING"]).is_err());
    redis.restart();
    assert_eq!((redis.port(), redis.cmd(&["PING"])), (port, "PONG".to_owned()));
    assert_ne!(redis.pid(), Some(pid));
    assert_eq!(redis.try_cmd(&["GET", "k"]).unwrap(), Reply::Bulk(None));
    // A paused one can be restarted (kill -9 works on a stopped process).
    redis.stop();
    redis.restart();
    assert_eq!(redis.cmd(&["PING"]), "PONG");
    assert!(redis.log_text().contains("Ready to accept connections"));
}

#[test]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
fn a_durable_redis_keeps_acknowledged_writes_across_kill_9() {
    let mut redis = RedisServer::start_durable();
    assert_eq!(redis.cmd(&["CONFIG", "GET", "appendfsync"]), "appendfsync\nalways");
    for n in 1..=100 {
        redis.cmd(&["XADD", "pt:{7}:lines", &format!("{n}-0"), "l", &format!("line {n}")]);
    }
    redis.kill();
    redis.restart();
    assert_eq!(redis.cmd(&["XLEN", "pt:{7}:lines"]), "100");
    // Extra arguments stay across restarts too.
    let mut small = RedisServer::start_with(&["--maxmemory", "2mb"]);
    small.restart();
    assert_eq!(small.cmd(&["CONFIG", "GET", "maxmemory"]), format!("maxmemory\n{}", 2 * 1024 * 1024));
    // noeviction: past maxmemory a write is refused with OOM, nothing is evicted.
    let big = "x".repeat(64 * 1024);
    let mut refused = None;
    for n in 0..100 {
        if let Reply::Error(e) = small.try_cmd(&["SET", &format!("k{n}"), &big]).unwrap() {
            refused = Some((n, e));
            break;
        }
    }
    let (n, e) = refused.expect("an OOM error before 6.4 MB");
    assert!(e.starts_with("OOM"), "{e}");
    assert_eq!(small.cmd(&["DBSIZE"]), n.to_string(), "nothing evicted");
}

#[test]
fn two_redis_servers_get_two_ports_and_a_missing_binary_is_said() {
    if !redis_available() {
        let Err(panic) = std::panic::catch_unwind(RedisServer::start) else {
            panic!("started without {}", common::cluster::REDIS_SERVER)
        };
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("apt-get install redis-server"), "{message}");
        return;
    }
    let (a, b) = (RedisServer::start(), RedisServer::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
}

#[test]
fn cluster_config_shares_the_prefix_of_the_test_and_merges_extra_keys() {
    let a = cluster_config("http://127.0.0.1:7700", "redis://127.0.0.1:6390/0", "");
    let b = cluster_config(
        "http://127.0.0.1:7700",
        "redis://127.0.0.1:6390/0",
        "commit_replicas = 1\nlease_ms = 1000\n[logs]\nrefresh_interval_ms = 100\n[server]\nlog_level = \"debug\"",
    );
    let (ca, cb) = (Config::from_toml(&a).unwrap(), Config::from_toml(&b).unwrap());
    let (cla, clb) = (ca.cluster.as_ref().unwrap(), cb.cluster.as_ref().unwrap());
    assert_eq!(cla.key_prefix, test_key_prefix());
    assert_eq!(cla.key_prefix, clb.key_prefix, "one prefix per test");
    assert!(cla.key_prefix.contains("cluster_config_shares_the_prefix"), "{}", cla.key_prefix);
    assert_ne!(cla.node_id, clb.node_id, "one node id per replica");
    assert_eq!((cla.lease_ms, clb.lease_ms), (600, 1000));
    assert_eq!((cla.commit_replicas, clb.commit_replicas), (0, 1));
    assert_eq!((ca.logs.refresh_interval_ms, cb.logs.refresh_interval_ms), (50, 100));
    assert_eq!(cb.server.log_level, "debug");
    assert_eq!(ca.powerjob.log_cache_ms, 300, "the fast timing of app_config");
    assert!(next_node_id().starts_with("pt-"));

    // merge_toml: replace in place, add to a table, append tables and array tables.
    let merged =
        merge_toml("a = 1\n[t]\nx = 1\ny = 2\n", "[t]", "y = 3\nz = 4\n[u]\nw = 5\n[[v]]\nq = 1\n[[v]]\nq = 2");
    assert_eq!(merged, "a = 1\n[t]\nx = 1\ny = 3\nz = 4\n[u]\nw = 5\n[[v]]\nq = 1\n[[v]]\nq = 2\n");
    assert_eq!(merge_toml("a = 1\n[t]\nx = 1\n", "", "a = 2"), "a = 2\n[t]\nx = 1\n");
}

#[tokio::test]
async fn wait_until_polls_until_the_condition_holds() {
    let start = Instant::now();
    wait_until(Duration::from_secs(5), "100 ms passed", || async { start.elapsed() > Duration::from_millis(100) })
        .await;
    let late = tokio::spawn(wait_until(Duration::from_millis(100), "never", || async { false }));
    let panic = late.await.unwrap_err().into_panic();
    assert!(panic.downcast_ref::<String>().unwrap().contains("never"));
}

/// The replica harness with the binary in memory mode (no Redis needed): start, serve,
/// pause, kill -9, start again on the same port.
#[tokio::test]
async fn a_replica_process_serves_pauses_dies_and_respawns() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let config = common::app_config_toml(&[sim.url()], "");
    let mut replica = Replica::spawn(&format!("{config}[server]\nlog_format = \"json\"\n")).await;
    let (status, body) = replica.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(replica.base(), format!("http://127.0.0.1:{}", replica.port()));
    let written = std::fs::read_to_string(replica.config_path()).unwrap();
    assert!(written.contains(&format!("listen = \"127.0.0.1:{}\"", replica.port())), "{written}");
    wait_until(Duration::from_secs(10), "a JSON line on stderr", || async {
        replica.stderr_text().lines().any(|l| l.starts_with('{') && l.contains("powertail serving"))
    })
    .await;

    // Paused: a request gets no answer; resumed: it is answered.
    replica.sigstop();
    let http = reqwest::Client::new();
    let url = format!("{}/healthz", replica.base());
    assert!(http.get(&url).timeout(Duration::from_millis(300)).send().await.is_err());
    replica.sigcont();
    assert_eq!(replica.get("/healthz").await.0, 200);

    // Killed: refused; respawned on the same port.
    let pid = replica.pid().unwrap();
    replica.kill9();
    assert!(http.get(&url).send().await.is_err());
    replica.respawn().await;
    assert_ne!(replica.pid(), Some(pid));
    assert_eq!(replica.get("/healthz").await.0, 200);
    assert_eq!(replica.stderr_text().matches("powertail serving").count(), 2, "both runs in one file");
    assert!(replica.terminate().await.success());
}

/// An in-process replica (memory mode) followed to `complete` by `follow_across`, which
/// sends the epoch of its first answer with every later poll.
#[tokio::test]
async fn an_in_process_replica_serves_a_follow_and_stops() {
    let sim_cfg = common::steps(60).text(|k, _| format!("[INFO] step {k}")).over(1_500).sim(12);
    let sim = Simulator::spawn(sim_cfg).await.unwrap();
    let id = common::run_job(&sim, 12);
    let p = InProcess::start_toml(&common::app_config_toml(&[sim.url()], "")).await;
    assert_eq!(p.get("/healthz").await.0, 200);
    let follow = follow_across(&[p.base(), p.base()], id, Duration::from_secs(30)).await;
    assert_eq!(follow.lines.len(), 60);
    assert!(follow.answers.len() > 2, "followed while it grew");
    p.stop().await;
}

/// config.toml ships in memory mode, and its commented `[cluster]` example is valid
/// configuration once uncommented.
#[test]
fn the_commented_cluster_example_of_config_toml_is_valid() {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    assert!(Config::from_toml(&shipped).unwrap().cluster.is_none(), "the default stays memory mode");
    let start = shipped.find("# [cluster]").expect("a commented [cluster] example");
    let uncommented: String = shipped[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = Config::from_toml(&format!("{}\n{uncommented}", &shipped[..start])).unwrap();
    let cluster = config.cluster.expect("[cluster] uncommented");
    assert_eq!((cluster.key_prefix.as_str(), cluster.lease_ms, cluster.commit_replicas), ("pt", 3000, 0));
    assert_eq!((cluster.retain_complete_ms, cluster.command_timeout_ms), (604_800_000, 2000));
}
