//! The push script and the queue against a real `redis-server` that each test starts on
//! a free loopback port (ignored without `--include-ignored`, which CI passes; the
//! end-to-end tests over HTTP are tests/it/cluster_push.rs).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::config::ClusterConfig;
use crate::logs::merge::{Level, PushedLine};
use crate::logs::SharedMeta;
use crate::service::redis::LineTag;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` child without persistence; killed on drop.
struct Redis {
    child: Child,
    url: String,
}

impl Redis {
    fn start() -> Redis {
        assert!(std::path::Path::new(REDIS_SERVER).is_file(), "{REDIS_SERVER} is missing (Debian: redis-server)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Redis { child, url: format!("redis://127.0.0.1:{port}/0") }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store on `redis` (node `node`), once it answers.
async fn store(redis: &Redis, node: &str) -> SharedLog {
    let config = serde_json::json!({"redis_url": redis.url, "node_id": node, "key_prefix": "t"});
    let config: ClusterConfig = serde_json::from_value(config).unwrap();
    let log = SharedLog::new(&config, "app").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.ping().await.is_err() {
        assert!(Instant::now() < deadline, "redis-server did not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log
}

fn batch(source: &str, seq: u64, is_final: bool) -> Batch {
    let line = PushedLine { ts: 1_764_900_001_120 + seq as i64, level: Level::Info, text: format!("line {seq}") };
    Batch { source: source.to_owned(), seq, worker: "w:1".to_owned(), is_final, lines: vec![line] }
}

async fn push(log: &SharedLog, source: &str, seq: u64, is_final: bool) -> Result<Queued, PushError> {
    log.push(7, &batch(source, seq, is_final), false, 1_000 + seq as i64, 3).await.unwrap()
}

fn queued(next: u64) -> Result<Queued, PushError> {
    Ok(Queued { duplicate: false, late: false, next_seq: Some(next) })
}

fn duplicate(next: u64) -> Result<Queued, PushError> {
    Ok(Queued { duplicate: true, late: false, next_seq: Some(next) })
}

async fn raw(log: &SharedLog, args: &[&str]) -> redis::Value {
    let mut conn = log.connection(&log.reads).await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

async fn pttl(log: &SharedLog, key: &str) -> i64 {
    match raw(log, &["PTTL", key]).await {
        redis::Value::Int(n) => n,
        other => panic!("PTTL {key}: {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn batches_are_queued_once_in_arrival_order_and_refused_after_their_final_one() {
    let redis = Redis::start();
    let log = store(&redis, "a").await;
    assert_eq!(push(&log, "s", 0, false).await, queued(1));
    assert_eq!(push(&log, "s", 0, false).await, duplicate(1), "a retry");
    assert_eq!(push(&log, "s", 2, false).await, queued(1), "ahead of a missing one");
    assert_eq!(push(&log, "s", 2, false).await, duplicate(1), "a retry of one ahead");
    assert_eq!(push(&log, "s", 1, false).await, queued(3), "the missing one");
    assert_eq!(push(&log, "s", 4, true).await, queued(3));
    assert_eq!(push(&log, "s", 5, false).await, Err(PushError::AfterFinal { seq: 5, final_seq: 4 }));
    assert_eq!(push(&log, "s", 3, true).await, Err(PushError::AfterFinal { seq: 3, final_seq: 4 }), "a second end");
    assert_eq!(push(&log, "s", 3, false).await, queued(5));
    // An end before a batch already seen.
    assert_eq!(push(&log, "t", 6, false).await, queued(0));
    assert_eq!(push(&log, "t", 2, true).await, Err(PushError::AfterFinal { seq: 6, final_seq: 2 }));
    assert_eq!(push(&log, "u", 0, false).await, queued(1), "the third source");
    assert_eq!(push(&log, "v", 0, false).await, Err(PushError::TooManySources(3)));
    let seed = log.push(7, &batch("ignored", 9, false), true, 2_000, 3).await.unwrap();
    assert_eq!(seed, Ok(Queued { duplicate: false, late: false, next_seq: None }), "a seed body: no dedup, no source");
    assert_eq!(log.push(7, &batch("", 9, false), true, 2_000, 3).await.unwrap(), seed);

    let all = log.read_queue(7, "", 1_000).await.unwrap();
    let order: Vec<(&str, u64, i64)> = all.iter().map(|q| (q.batch.source.as_str(), q.batch.seq, q.at)).collect();
    let want = [("s", 0, 1_000), ("s", 2, 1_002), ("s", 1, 1_001), ("s", 4, 1_004), ("s", 3, 1_003)];
    let want = want.into_iter().chain([("t", 6, 1_006), ("u", 0, 1_000), ("", 9, 2_000), ("", 9, 2_000)]);
    assert_eq!(order, want.collect::<Vec<_>>());
    assert_eq!(all[0].batch, batch("s", 0, false), "the batch as pushed");
    let rest = log.read_queue(7, &all[6].entry, 1_000).await.unwrap();
    assert_eq!(rest, all[7..].to_vec(), "after an entry");
    assert_eq!(log.read_queue(7, &all[0].entry, 1).await.unwrap(), all[1..2].to_vec(), "at least one, then the limit");
    assert!(log.read_queue(8, "", 1_000).await.unwrap().is_empty(), "another instance");
}

#[tokio::test]
#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]
async fn the_append_trims_what_it_consumed_and_a_batch_the_holder_skipped_is_a_duplicate() {
    let redis = Redis::start();
    let log = store(&redis, "a").await;
    for seq in [0, 1, 5] {
        push(&log, "s", seq, false).await.unwrap();
    }
    let (pushed, queue) = ("t:{7}:pushed", "t:{7}:pushq");
    let ttl = pttl(&log, queue).await;
    assert!((1..=600_000).contains(&ttl), "no state yet: the queue expires soon ({ttl} ms)");
    assert!((1..=600_000).contains(&pttl(&log, pushed).await));
    let all = log.read_queue(7, "", 1_000).await.unwrap();
    let tick = log.tick(7, "e1", 0, false).await.unwrap();
    assert!(tick.holder);
    // The holder applied 0 and 1, then gave up on 2..=4 and applied 5.
    let progress = PushProgress { consumed: all[2].entry.clone(), applied: [("s".to_owned(), 6)].into() };
    let tags = [LineTag { starts_unit: true, pushed: true }, LineTag { starts_unit: false, pushed: true }];
    let next = log.append(7, 0, &["a", "b"], &tags, &SharedMeta::default(), Some(&progress)).await.unwrap();
    assert_eq!(next, 2);
    assert_eq!(log.read_lines(7, 0, 2).await.unwrap(), (vec!["a".to_owned(), "b".to_owned()], tags.to_vec()));
    assert!(log.read_queue(7, "", 1_000).await.unwrap().is_empty(), "trimmed up to the entry consumed");
    let ttls = (pttl(&log, queue).await, pttl(&log, pushed).await);
    assert_eq!(ttls, (-1, -1), "kept (the queue empty) like the state once written");
    assert_eq!(push(&log, "s", 3, false).await, duplicate(6), "given up by the holder");
    assert_eq!(push(&log, "s", 6, false).await, queued(7));
    let left = log.read_queue(7, "", 1_000).await.unwrap();
    assert_eq!(left.iter().map(|q| q.batch.seq).collect::<Vec<_>>(), [6]);
    // The largest seq a JSON number carries exactly: its next one comes back exact.
    let max = crate::logs::merge::MAX_SEQ;
    assert_eq!(push(&log, "big", max, false).await, queued(0));
    assert_eq!(push(&log, "big", max + 1, false).await, Err(PushError::SeqOutOfRange));
    // The log completes (its keys expire then): a batch is dropped, a retry is still a
    // duplicate.
    let meta = SharedMeta { complete: true, ..SharedMeta::default() };
    log.append(7, 2, &[], &[], &meta, None).await.unwrap();
    let late = Ok(Queued { duplicate: false, late: true, next_seq: Some(7) });
    assert_eq!(push(&log, "s", 7, false).await, late);
    assert_eq!(push(&log, "s", 6, false).await, duplicate(7));
    let seed = log.push(7, &batch("", 0, false), true, 2_000, 3).await.unwrap();
    assert_eq!(seed, Ok(Queued { duplicate: false, late: true, next_seq: None }));
    let left = log.read_queue(7, "", 1_000).await.unwrap();
    assert_eq!(left.iter().map(|q| q.batch.seq).collect::<Vec<_>>(), [6, max], "nothing more queued");
}
