//! The simulated pusher against a recording receiver (a test double of powertail's
//! `POST /llm/logs/{instanceId}/append`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::*;
use crate::config::SimJob;
use crate::script::JobScript;

/// What the receiver got: (instance id, body), in arrival order.
type Received = Arc<Mutex<Vec<(i64, Value)>>>;

/// A receiver that answers 200 (or, for the first `fail_first` requests, 503), and
/// records every body.
async fn receiver(fail_first: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let count = Arc::new(Mutex::new(0usize));
    let app = Router::new()
        .route(
            "/llm/logs/{id}/append",
            post(move |State((rec, count)): State<(Received, Arc<Mutex<usize>>)>, Path(id): Path<i64>, Json(body): Json<Value>| async move {
                let n = {
                    let mut c = count.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n <= fail_first {
                    return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"code": "unavailable"}})));
                }
                let accepted = body["lines"].as_array().map_or(0, Vec::len);
                let seq = body["seq"].as_u64().unwrap_or(0);
                rec.lock().unwrap().push((id, body));
                let answer = json!({"instanceId": id.to_string(), "accepted": accepted, "duplicate": false, "nextSeq": seq + 1});
                (StatusCode::OK, Json(answer))
            }),
        )
        .with_state((received.clone(), count));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn sim_with(text: &str, ms: i64) -> SimConfig {
    let script = JobScript::from_text(text, ms, 5, "ok");
    SimConfig {
        worker_flush_ms: 1_000,
        jobs: vec![
            SimJob { id: 12, name: "pushes".into(), job_params: String::new(), script: Some(Arc::new(script.clone())) },
            SimJob { id: 13, name: "silent".into(), job_params: String::new(), script: Some(Arc::new(script)) },
        ],
        ..SimConfig::default()
    }
}

/// Waits (bounded) until the receiver holds a final batch for `id`.
async fn until_final(received: &Received, id: i64) {
    for _ in 0..200 {
        if received.lock().unwrap().iter().any(|(i, b)| *i == id && b["final"] == true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no final batch for {id}: {:#?}", received.lock().unwrap());
}

/// The texts pushed for `id`, in (source, seq) order.
fn texts(received: &Received, id: i64) -> Vec<String> {
    let mut bodies: Vec<Value> =
        received.lock().unwrap().iter().filter(|(i, _)| *i == id).map(|(_, b)| b.clone()).collect();
    bodies.sort_by_key(|b| (b["source"].as_str().unwrap_or("").to_owned(), b["seq"].as_u64()));
    bodies.dedup_by(|a, b| a["source"] == b["source"] && a["seq"] == b["seq"]);
    bodies
        .iter()
        .flat_map(|b| b["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_run_pushes_every_line_in_batches_once_with_final_and_the_other_job_pushes_nothing() {
    let (url, received) = receiver(0).await;
    let text: String = (0..60).map(|k| format!("line {k}\n")).collect();
    let sim = Simulator::spawn(sim_with(&text, 600)).await.unwrap();
    sim.set_pusher(Some(Pusher::new(&url).jobs([12])));
    let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    let silent = sim.with_core(|c, now| c.run_job(13, None, 0, now)).unwrap();
    until_final(&received, id).await;
    let expected: Vec<String> = (0..60).map(|k| format!("line {k}")).collect();
    assert_eq!(texts(&received, id), expected);
    let bodies: Vec<Value> = received.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    // One source, seq 0, 1, … in arrival order (one in flight), final last.
    let seqs: Vec<u64> = bodies.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert!(bodies.iter().all(|b| b["source"] == bodies[0]["source"] && b["worker"] == "10.0.0.21:27777"));
    assert!(bodies[0]["source"].as_str().unwrap().starts_with("10.0.0.21:27777/"));
    assert_eq!(bodies.iter().filter(|b| b["final"] == true).count(), 1);
    assert_eq!(bodies.last().unwrap()["final"], true);
    // 100 lines/s with a 100 ms linger: batches of a few lines, never more than 20.
    assert!(bodies.len() >= 4, "{} batches", bodies.len());
    assert!(bodies.iter().all(|b| b["lines"].as_array().unwrap().len() <= 20));
    // A line's ts is its log call on the worker's clock: the record's logTime.
    let first = &bodies[0]["lines"][0];
    assert_eq!(first["level"], "INFO");
    let started = sim.with_core(|c, now| c.instance(id, now)).unwrap().actual_trigger_time.unwrap();
    assert_eq!(first["ts"].as_i64().unwrap(), started);
    // The fields in the contract's order (the raw text).
    let raw = bodies[0].to_string();
    assert!(raw.contains("\"seq\":0"), "{raw}");
    assert!(received.lock().unwrap().iter().all(|(i, _)| *i != silent));
    let stats = sim.push_stats();
    assert_eq!((stats.sources, stats.lines, stats.accepted, stats.finals), (1, 60, 60, 1));
}

#[tokio::test]
async fn failures_are_retried_under_the_same_seq() {
    let (url, received) = receiver(3).await;
    let sim = Simulator::spawn(sim_with("a\nb\nc\n", 30)).await.unwrap();
    sim.set_pusher(Some(Pusher::new(&url)));
    let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    until_final(&received, id).await;
    assert_eq!(texts(&received, id), ["a", "b", "c"]);
    let stats = sim.push_stats();
    assert_eq!(stats.retries, 3, "{stats:?}");
    assert_eq!(received.lock().unwrap()[0].1["seq"], 0);
}

#[tokio::test]
async fn drops_are_deterministic_for_a_seed_and_consume_their_seq() {
    let text: String = (0..200).map(|k| format!("line {k}\n")).collect();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (url, received) = receiver(0).await;
        let mut cfg = sim_with(&text, 400);
        cfg.instance_ids = crate::InstanceIds::Sequential { first: 1_000 };
        let sim = Simulator::spawn(cfg).await.unwrap();
        let faults = PushFaults { drop: 0.3, ..PushFaults::default() };
        sim.set_pusher(Some(Pusher { seed: 7, record: true, ..Pusher::new(&url).faults(faults) }));
        let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
        until_final(&received, id).await;
        let pushed = sim.pushed_lines(id);
        let dropped: Vec<String> = pushed.iter().filter(|l| l.fate == Fate::Dropped).map(|l| l.text.clone()).collect();
        let sent = texts(&received, id);
        // Every line is either sent or dropped, never both.
        assert_eq!(sent.len() + dropped.len(), 200);
        assert!(dropped.iter().all(|d| !sent.contains(d)));
        let seqs: Vec<u64> = received.lock().unwrap().iter().map(|(_, b)| b["seq"].as_u64().unwrap()).collect();
        let stats = sim.push_stats();
        assert_eq!(stats.batches, seqs.len() as u64 + stats.dropped_batches);
        let source = received.lock().unwrap()[0].1["source"].as_str().unwrap().to_owned();
        runs.push((source, seqs, stats.batches));
    }
    // The same seed: the same source name, and the same batch numbers dropped (which
    // lines a batch holds follows the wall clock).
    assert_eq!(runs[0].0, runs[1].0);
    let n = runs[0].2.min(runs[1].2);
    let missing = |seqs: &Vec<u64>| (0..n).filter(|k| !seqs.contains(k)).collect::<Vec<_>>();
    assert!(!missing(&runs[0].1).is_empty(), "nothing dropped");
    assert_eq!(missing(&runs[0].1), missing(&runs[1].1));
}

#[tokio::test]
async fn reordered_and_delayed_batches_arrive_behind_later_ones_and_every_seq_once() {
    let (url, received) = receiver(0).await;
    let text: String = (0..100).map(|k| format!("line {k}\n")).collect();
    let sim = Simulator::spawn(sim_with(&text, 1_000)).await.unwrap();
    let faults = PushFaults { reorder: 0.5, delay: 0.4, delay_ms: 300, ..PushFaults::default() };
    sim.set_pusher(Some(Pusher { seed: 1, record: true, ..Pusher::new(&url).jobs([12]).faults(faults) }));
    let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    until_final(&received, id).await;
    // The delayed batches come up to 300 ms after the others.
    for _ in 0..100 {
        if texts(&received, id).len() == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected: Vec<String> = (0..100).map(|k| format!("line {k}")).collect();
    assert_eq!(texts(&received, id), expected, "every line once, by seq");
    let seqs: Vec<u64> = received.lock().unwrap().iter().map(|(_, b)| b["seq"].as_u64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..seqs.len() as u64).collect::<Vec<_>>(), "each seq once: {seqs:?}");
    assert_ne!(seqs, sorted, "nothing overtaken");
    let fates: Vec<Fate> = sim.pushed_lines(id).iter().map(|l| l.fate).collect();
    assert!(fates.contains(&Fate::Reordered) && fates.contains(&Fate::Delayed), "{fates:?}");
}

#[tokio::test]
async fn a_stopped_run_pushes_what_it_logged_before_the_stop_then_final() {
    let (url, received) = receiver(0).await;
    let text: String = (0..100).map(|k| format!("line {k}\n")).collect();
    let sim = Simulator::spawn(sim_with(&text, 2_000)).await.unwrap();
    sim.set_pusher(Some(Pusher::new(&url)));
    let id = sim.with_core(|c, now| c.run_job(12, None, 0, now)).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.with_core(|c, now| c.stop_instance(id, now)).unwrap();
    until_final(&received, id).await;
    let logged = sim.with_core(|c, _| c.final_lines(id)).len();
    let pushed = texts(&received, id);
    assert!(logged > 0 && logged < 100, "{logged}");
    assert_eq!(pushed.len(), logged, "pushed exactly the lines logged before the stop");
}
