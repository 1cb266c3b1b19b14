//! The state machine's unit tests, in explicit time.

use std::sync::Arc;

use serde_json::Value;

use super::*;
use crate::script::{JobScript, ScriptLine, ScriptWorker};

/// 2024-06-01T08:00:00Z, 16:00 in the server's +08:00.
const T0: i64 = 1_717_228_800_000;

fn rec(log_time: i64, content: &str) -> Record {
    Record { log_time, level: Level::Info, content: content.into(), worker: "10.0.0.21:27777".into() }
}

fn core() -> SimCore {
    SimCore::new(SimConfig::default())
}

fn lines_of(page: &StringPage) -> Vec<String> {
    read_lines(&page.data)
}

/// A running instance with `n` records delivered at `T0`.
fn running_with(c: &mut SimCore, n: i64) -> i64 {
    let id = c.create_instance(12, None, T0);
    c.dispatch(id, T0);
    c.set_running(id, T0);
    let records = (0..n).map(|i| rec(T0 + i, &format!("line {i}"))).collect();
    c.deliver(id, records, T0);
    id
}

#[test]
fn renders_like_the_fixture() {
    let r = rec(T0 + 5_123, "start processing");
    assert_eq!(render(&r, 480), "2024-06-01 16:00:05.123 [10.0.0.21:27777] INFO start processing");
    assert_eq!(iso(T0 + 12), "2024-06-01T08:00:00.012+00:00");
}

#[test]
fn ids_are_snowflake_ids_of_their_creation_time() {
    let mut c = SimCore::new(SimConfig { instance_ids: InstanceIds::Snowflake { machine: 1 }, ..SimConfig::default() });
    let a = c.create_instance(12, None, T0);
    let b = c.create_instance(12, None, T0);
    let later = c.create_instance(12, None, T0 + 1_000);
    assert_eq!(a, FIRST_INSTANCE_ID);
    assert!(a > 1 << 53 && b == a + 1 && later > b);
    assert_eq!(later >> 22, T0 + 1_000 - ids::SNOWFLAKE_EPOCH_MS);
    // Known ids on every start, for tests that need them.
    let mut c =
        SimCore::new(SimConfig { instance_ids: InstanceIds::Sequential { first: 1 << 60 }, ..SimConfig::default() });
    assert_eq!([c.create_instance(12, None, T0), c.create_instance(12, None, 0)], [1 << 60, (1 << 60) + 4_096]);
}

#[test]
fn pages_hold_100_lines_with_separators() {
    let mut c = core();
    let id = running_with(&mut c, 138);
    let p0 = c.log_page(id, 0, T0);
    assert_eq!((p0.index, p0.total_pages), (0, 2));
    assert_eq!(lines_of(&p0).len(), 100);
    assert!(p0.data.ends_with('\n') && !p0.data.ends_with("\n\n"));
    let p1 = c.log_page(id, 1, T0);
    assert_eq!(lines_of(&p1).len(), 38);
    assert!(lines_of(&p1)[37].ends_with("line 137"));
    let past = c.log_page(id, 5, T0);
    assert_eq!(past, StringPage { index: 5, total_pages: 2, data: String::new() });
    let negative = c.log_page(id, -1, T0);
    assert_eq!(negative, StringPage { index: -1, total_pages: 2, data: String::new() });
    let huge = c.log_page(id, i64::MAX, T0);
    assert_eq!(huge.data, "");
}

#[test]
fn live_log_without_rows_yet_is_empty_and_cached() {
    let mut c = core();
    let id = c.create_instance(12, None, T0);
    c.deliver(id, Vec::new(), T0);
    c.deliver(id, vec![rec(T0, "a")], T0 + 100);
    let empty = StringPage { index: 0, total_pages: 0, data: String::new() };
    assert_eq!(c.log_page(id, 0, T0), empty);
    // The empty file is served for the whole cache time, then rebuilt.
    assert_eq!(c.log_page(id, 0, T0 + 9_999), empty);
    assert_eq!(c.log_page(id, 0, T0 + 10_000).total_pages, 1);
    // Never poisoned: the read came after the live-map entry.
    c.finish(id, 5, "ok", T0 + 10_000);
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 70_000)).len(), 1);
}

#[test]
fn temporary_file_is_cached_for_log_cache_ms() {
    let mut c = core();
    let id = running_with(&mut c, 3);
    let first = c.log_page(id, 0, T0);
    c.deliver(id, vec![rec(T0 + 100, "late")], T0 + 1_000);
    // Within the cache time: the identical snapshot, although a batch arrived.
    assert_eq!(c.log_page(id, 0, T0 + 9_999), first);
    assert_eq!(c.rebuilds(id), [T0]);
    // Cache expired: rebuilt with the new row.
    let rebuilt = c.log_page(id, 0, T0 + 10_000);
    assert_eq!(lines_of(&rebuilt).len(), 4);
    assert!(rebuilt.data.contains("late"));
    assert_eq!(c.rebuilds(id), [T0, T0 + 10_000]);
}

#[test]
fn equal_timestamps_swap_between_rebuilds() {
    let mut c = core();
    let id = c.create_instance(12, None, T0);
    let records = (0..10).map(|i| rec(T0, &format!("tie {i}"))).collect();
    c.deliver(id, records, T0);
    let mut orders = std::collections::BTreeSet::new();
    for k in 0..20 {
        let p = c.log_page(id, 0, T0 + k * 10_000);
        let mut sorted = lines_of(&p);
        orders.insert(sorted.clone());
        sorted.sort();
        assert_eq!(sorted.len(), 10);
    }
    assert!(orders.len() > 1, "ties never changed order");
    // Deterministic: the same seed gives the same sequence of orders.
    let mut again = core();
    let id2 = again.create_instance(12, None, T0);
    again.deliver(id2, (0..10).map(|i| rec(T0, &format!("tie {i}"))).collect(), T0);
    let mut c3 = core();
    let id3 = c3.create_instance(12, None, T0);
    c3.deliver(id3, (0..10).map(|i| rec(T0, &format!("tie {i}"))).collect(), T0);
    assert_eq!(again.log_page(id2, 0, T0), c3.log_page(id3, 0, T0));
}

#[test]
fn records_with_newlines_are_several_lines_and_trailing_empty_line() {
    let mut c = core();
    let id = c.create_instance(12, None, T0);
    let trace = "failed\njava.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n";
    c.deliver(id, vec![rec(T0, trace), rec(T0 + 1, "after\rcr")], T0);
    let lines = lines_of(&c.log_page(id, 0, T0));
    assert_eq!(lines.len(), 6);
    assert!(lines[0].ends_with("INFO failed"));
    assert_eq!(lines[2], "\tat a.B.c(B.java:1)");
    assert_eq!(lines[3], "");
    assert!(lines[4].ends_with("INFO after"));
    assert_eq!(lines[5], "cr");
    assert_eq!(c.final_lines(id), lines);
}

#[test]
fn placeholder_for_unknown_ids_is_a_normal_page() {
    let mut c = core();
    let p = c.log_page(42, 0, T0);
    assert_eq!(p, StringPage { index: 0, total_pages: 1, data: format!("{NO_ONLINE_LOG}\n") });
    assert_eq!(c.log_page(42, 1, T0), StringPage { index: 1, total_pages: 1, data: String::new() });
    assert_eq!(StringPage::simple(PREPARING).to_json()["totalPages"], 1);
}

#[test]
fn reading_before_the_first_batch_poisons_the_log_forever() {
    let mut c = core();
    let id = c.run_job(12, None, 0, T0).expect("job 12 exists");
    // Read right after runJob: nothing arrived, the stable placeholder is written.
    assert_eq!(c.log_page(id, 0, T0 + 10).data, format!("{NO_ONLINE_LOG}\n"));
    c.set_running(id, T0 + 1_000);
    c.deliver(id, vec![rec(T0 + 1_000, "real line")], T0 + 5_020);
    // While live, the temporary file shows the real log.
    assert!(c.log_page(id, 0, T0 + 6_000).data.contains("real line"));
    c.finish(id, 5, "ok", T0 + 7_000);
    assert!(c.log_page(id, 0, T0 + 66_999).data.contains("real line"));
    // Sync reused the poisoned stable file and deleted the rows.
    for t in [T0 + 67_000, T0 + 1_000_000] {
        assert_eq!(c.log_page(id, 0, t).data, format!("{NO_ONLINE_LOG}\n"));
    }
    // ... and uploaded it: a restart does not heal it either.
    c.restart(T0 + 2_000_000);
    assert_eq!(c.log_page(id, 0, T0 + 2_000_001).data, format!("{NO_ONLINE_LOG}\n"));
    assert_eq!(c.final_lines(id).len(), 1);
}

#[test]
fn sync_keeps_the_log_when_nobody_read_early() {
    let mut c = core();
    let id = running_with(&mut c, 3);
    c.finish(id, 5, "ok", T0 + 1_000);
    let before = lines_of(&c.log_page(id, 0, T0 + 1_000));
    let after = lines_of(&c.log_page(id, 0, T0 + 61_000));
    assert_eq!(after, before);
    assert!(!c.is_live(id));
}

#[test]
fn late_lines_after_sync_form_a_new_live_log() {
    let mut c = core();
    let id = running_with(&mut c, 5);
    c.finish(id, 5, "ok", T0 + 1_000);
    c.deliver(id, vec![rec(T0 + 900, "late 1"), rec(T0 + 950, "late 2")], T0 + 70_000);
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 69_000)).len(), 5);
    let p = c.log_page(id, 0, T0 + 70_000);
    let lines = lines_of(&p);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("late 1") && lines[1].ends_with("late 2"));
    // The perfect reader's view has all 7 lines.
    assert_eq!(c.final_lines(id).len(), 7);
}

#[test]
fn crlf_server_separates_with_crlf() {
    let mut c = SimCore::new(SimConfig { crlf: true, ..SimConfig::default() });
    let id = c.create_instance(12, None, T0);
    c.deliver(id, vec![rec(T0, "a\nb"), rec(T0 + 1, "c")], T0);
    let p = c.log_page(id, 0, T0);
    assert!(p.data.ends_with("INFO c\r\n"));
    assert_eq!(p.data.matches("\r\n").count(), 3);
    assert_eq!(lines_of(&p).len(), 3);
    assert_eq!(c.log_page(42, 0, T0).data, format!("{NO_ONLINE_LOG}\r\n"));
}

#[test]
fn restart_loses_rows_but_keeps_stable_files_and_future_batches() {
    let mut c = SimCore::new(SimConfig { dfs: false, ..SimConfig::default() });
    let done = running_with(&mut c, 2);
    c.finish(done, 5, "ok", T0);
    assert_eq!(lines_of(&c.log_page(done, 0, T0 + 60_000)).len(), 2);
    let id = running_with(&mut c, 3);
    c.deliver(id, vec![rec(T0 + 50, "after restart")], T0 + 70_000);
    c.restart(T0 + 60_500);
    // Synced log: the stable file is on disk and survives.
    assert_eq!(lines_of(&c.log_page(done, 0, T0 + 60_600)).len(), 2);
    // Live log: rows and live map lost, so the placeholder.
    assert_eq!(c.log_page(id, 0, T0 + 60_600).data, format!("{NO_ONLINE_LOG}\n"));
    // A batch after the restart makes the id live again: the temporary file wins
    // over the stable placeholder while it is live.
    let p = c.log_page(id, 0, T0 + 70_000);
    assert_eq!(lines_of(&p).len(), 1);
    assert!(p.data.contains("after restart"));
    assert_eq!(c.instance_status(id, T0 + 70_000), Some(3));
}

#[test]
fn restart_drops_pending_syncs() {
    let mut c = core();
    let id = running_with(&mut c, 2);
    c.finish(id, 5, "ok", T0);
    c.restart(T0 + 1_000);
    c.deliver(id, vec![rec(T0 + 10, "late")], T0 + 2_000);
    // No sync ever happens: the late rows stay live.
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 500_000)).len(), 1);
    assert!(c.is_live(id));
}

#[test]
fn download_is_padded_to_4096() {
    let mut c = core();
    let id = running_with(&mut c, 1);
    let (kind, body) = c.download_log_file(id, T0).expect("prepared");
    assert_eq!(kind, LogFile::Temporary);
    assert_eq!(body.len(), 4_096);
    let text = render(&rec(T0, "line 0"), 480) + "\n";
    assert_eq!(&body[..text.len()], text.as_bytes());
    assert!(body[text.len()..].iter().all(|b| *b == 0));
    // Two chunks: the second is padded with stale bytes of the first.
    let big = running_with(&mut c, 80);
    let body = c.download_log(big, T0).expect("prepared");
    assert_eq!(body.len(), 8_192);
    assert!(body[4_096..].iter().any(|b| *b != 0));
}

#[test]
fn status_machine_and_errors() {
    let mut c = core();
    assert_eq!(c.run_job(999, None, 0, T0), Err("IllegalArgumentException: can't find job by jobId: 999".into()));
    let id = c.run_job(12, Some("p".into()), 0, T0).expect("runs");
    let info = c.instance_info(id, T0).expect("exists");
    assert_eq!((info["status"].as_i64(), info["taskTrackerAddress"].as_str()), (Some(2), Some("10.0.0.21:27777")));
    assert_eq!(c.cancel_instance(id, T0), Err("PowerJobException: instance already up and running".into()));
    assert_eq!(c.retry_instance(id, T0), Err("PowerJobException: Only stopped instance can be retry!".into()));
    c.set_running(id, T0 + 1);
    c.set_running(id, T0 + 2);
    assert_eq!(c.instance_info(id, T0 + 2).expect("exists")["runningTimes"], 1);
    c.stop_instance(id, T0 + 3).expect("stops");
    let info = c.instance_info(id, T0 + 3).expect("exists");
    assert_eq!((info["status"].as_i64(), info["result"].as_str()), (Some(10), Some("stopped by user")));
    assert_eq!(c.stop_instance(id, T0 + 4), Err("IllegalArgumentException: can't stop finished instance!".into()));
    c.retry_instance(id, T0 + 5).expect("retries");
    let info = c.instance_info(id, T0 + 5).expect("exists");
    assert_eq!(info["status"], 2);
    assert_eq!(info["finishedTime"], Value::Null);
    assert_eq!(info["result"], Value::Null);
    // Delayed run: waits in status 1 and can be cancelled.
    let delayed = c.run_job(12, None, 60_000, T0).expect("runs");
    assert_eq!(c.instance_status(delayed, T0 + 59_999), Some(1));
    c.cancel_instance(delayed, T0 + 1).expect("cancels");
    assert_eq!(c.instance_status(delayed, T0 + 120_000), Some(9));
    let d2 = c.run_job(12, None, 1_000, T0).expect("runs");
    assert_eq!(c.instance_status(d2, T0 + 1_000), Some(2));
    assert_eq!(c.instance_info(d2, T0 + 1_000).expect("exists")["expectedTriggerTime"], T0 + 1_000);
    assert!(c.instance_info(42, T0).is_none());
    let fail = c.create_instance(12, None, T0);
    c.fail_no_worker(fail, T0);
    assert_eq!(c.instance_info(fail, T0).expect("exists")["taskTrackerAddress"], "N/A");
}

fn scripted(script: JobScript) -> SimCore {
    let job = SimJob { id: 7, name: "scripted".into(), job_params: String::new(), script: Some(Arc::new(script)) };
    SimCore::new(SimConfig { jobs: vec![job], ..SimConfig::default() })
}

#[test]
fn script_playback_timing_and_late_lines_after_finish() {
    let script = JobScript {
        workers: vec![ScriptWorker { address: "w:1".into(), clock_skew_ms: 0, flush_phase_ms: 1_000 }],
        lines: vec![
            ScriptLine { at_ms: 500, level: Level::Info, content: "a".into(), worker: 0 },
            ScriptLine { at_ms: 1_000, level: Level::Info, content: "b".into(), worker: 0 },
            ScriptLine { at_ms: 7_000, level: Level::Warn, content: "c".into(), worker: 0 },
        ],
        running_at_ms: 2_000,
        end_ms: 7_500,
        final_status: 5,
        result: "done".into(),
    };
    let mut c = scripted(script);
    let id = c.run_job(7, None, 0, T0).expect("runs");
    // "a" (logged at 500) ships with the flush tick at 1000 and lands 20 ms later.
    assert_eq!(c.instance_status(id, T0 + 1_019), Some(2));
    assert!(!c.is_live(id));
    c.tick(T0 + 1_020);
    assert!(c.is_live(id));
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 1_020)).len(), 1);
    assert_eq!(c.instance_status(id, T0 + 2_000), Some(3));
    // Finished at 7500 ...
    assert_eq!(c.instance_status(id, T0 + 7_500), Some(5));
    let info = c.instance_info(id, T0 + 7_500).expect("exists");
    assert_eq!(info["finishedTime"], T0 + 7_500);
    // ... "b" (1000, not strictly before the 1000 tick) came with the 6000 tick, and
    // "c" (7000) comes with the 11000 tick: after the finish. The file built at 1020
    // is served until 11020.
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 11_019)).len(), 1);
    let late = c.log_page(id, 0, T0 + 11_020);
    assert_eq!(lines_of(&late).len(), 3);
    assert!(lines_of(&late)[2].ends_with("WARN c"));
    assert_eq!(c.final_lines(id), lines_of(&late));
}

#[test]
fn script_skew_batches_of_20_and_stop_cancels_future_lines() {
    let lines = (0..50)
        .map(|i| ScriptLine { at_ms: i * 100, level: Level::Info, content: format!("l{i}"), worker: 0 })
        .collect();
    let script = JobScript {
        workers: vec![ScriptWorker { address: "w:1".into(), clock_skew_ms: -300, flush_phase_ms: 0 }],
        lines,
        running_at_ms: 0,
        end_ms: 100_000,
        final_status: 5,
        result: "done".into(),
    };
    let mut c = scripted(script);
    let id = c.run_job(7, None, 0, T0).expect("runs");
    // Lines 0..=49 logged at 0..4900 all flush at 5000 in 3 batches.
    let arrivals: Vec<usize> = c
        .queue
        .values()
        .filter_map(|e| match e {
            Event::Arrive { rows, .. } => Some(rows.len()),
            _ => None,
        })
        .collect();
    assert_eq!(arrivals, [20, 20, 10]);
    assert_eq!(c.final_lines(id)[0], format!("{} [w:1] INFO l0", local_time(T0 - 300, 480)));
    c.stop_instance(id, T0 + 2_450).expect("stops");
    // Lines logged up to 2400 (25 lines) still arrive; the rest never existed.
    assert_eq!(c.final_lines(id).len(), 25);
    let p = c.log_page(id, 0, T0 + 5_020);
    assert_eq!(lines_of(&p).len(), 25);
    assert_eq!(c.instance_status(id, T0 + 200_000), Some(10));
}

#[test]
fn retry_keeps_the_old_stable_file() {
    let mut c = core();
    let id = running_with(&mut c, 3);
    c.finish(id, 4, "failed", T0);
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 60_000)).len(), 3);
    c.retry_instance(id, T0 + 100_000).expect("retries");
    c.set_running(id, T0 + 100_001);
    c.deliver(id, vec![rec(T0 + 100_002, "second run")], T0 + 100_010);
    let p = c.log_page(id, 0, T0 + 100_010);
    assert_eq!(lines_of(&p).len(), 1);
    c.finish(id, 5, "ok", T0 + 101_000);
    // After the retry's sync the old stable file is served again.
    let synced = lines_of(&c.log_page(id, 0, T0 + 161_000));
    assert_eq!(synced.len(), 3);
    assert!(!synced.iter().any(|l| l.contains("second run")));
}

#[test]
fn stopped_processor_can_go_on_logging() {
    let lines = (0..50)
        .map(|i| ScriptLine { at_ms: i * 100, level: Level::Info, content: format!("l{i}"), worker: 0 })
        .collect();
    let script = JobScript {
        workers: vec![ScriptWorker { address: "w:1".into(), clock_skew_ms: 0, flush_phase_ms: 0 }],
        lines,
        running_at_ms: 0,
        end_ms: 100_000,
        final_status: 5,
        result: "done".into(),
    };
    let job = SimJob { id: 7, name: "scripted".into(), job_params: String::new(), script: Some(Arc::new(script)) };
    let mut c = SimCore::new(SimConfig { jobs: vec![job], logs_after_stop: true, ..SimConfig::default() });
    let id = c.run_job(7, None, 0, T0).expect("runs");
    c.stop_instance(id, T0 + 2_450).expect("stops");
    assert_eq!(c.instance_status(id, T0 + 2_450), Some(10));
    // Every line still arrives, with the 5000 flush, after status 10 ...
    assert_eq!(c.final_lines(id).len(), 50);
    assert!(!c.is_live(id));
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 5_020)).len(), 50);
    // ... and no scripted status report follows the stop.
    assert_eq!(c.instance_status(id, T0 + 100_000), Some(10));
    assert_eq!(c.instance_info(id, T0 + 100_000).expect("exists")["result"], "stopped by user");
}

#[test]
fn retried_script_replays_as_a_second_run() {
    let script = JobScript::from_text("a\nb\nc", 3_000, 4, "boom");
    let mut c = scripted(script);
    let id = c.run_job(7, None, 0, T0).expect("runs");
    assert_eq!(c.instance_status(id, T0 + 3_001), Some(4));
    let first = lines_of(&c.log_page(id, 0, T0 + 70_000));
    assert_eq!(first.len(), 3);
    c.retry_instance(id, T0 + 100_000).expect("retries");
    let info = c.instance_info(id, T0 + 100_000).expect("exists");
    assert_eq!((info["status"].as_i64(), info["runningTimes"].as_i64()), (Some(3), Some(2)));
    // While it runs only the second run's lines show (same texts, new times).
    let second = lines_of(&c.log_page(id, 0, T0 + 105_020));
    assert_eq!(second.len(), 3);
    assert!(second.iter().all(|l| l.starts_with("2024-06-01 16:01:4")), "{second:?}");
    assert_eq!(c.instance_status(id, T0 + 103_001), Some(4));
    // The retry's sync serves (and uploads) the first run's stable file again.
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 163_001)), first);
    assert_eq!(c.final_lines(id).len(), 6);
    // Origins tell the runs apart.
    let (_, origins) = c.log_page_traced(id, 0, T0 + 163_001);
    assert!(origins.iter().all(|o| o.is_some_and(|o| o.record < 3)));
}

#[test]
fn sync_without_an_early_read_uploads_the_real_log() {
    let mut c = SimCore::new(SimConfig { dfs: true, ..SimConfig::default() });
    let id = running_with(&mut c, 2);
    c.finish(id, 5, "ok", T0);
    c.tick(T0 + 60_000);
    // Synced to the DFS without a read: the stable file exists and was uploaded.
    assert_eq!(lines_of(&c.log_page(id, 0, T0 + 60_001)).len(), 2);
}

#[test]
fn extreme_inputs_never_panic() {
    let mut c = SimCore::new(SimConfig { utc_offset_minutes: i32::MAX, worker_flush_ms: 0, ..SimConfig::default() });
    let id = c.create_instance(12, None, i64::MAX);
    c.deliver(id, vec![rec(i64::MIN, "x"), rec(i64::MAX, "y")], i64::MIN);
    c.finish(id, 5, "ok", i64::MAX);
    let _ = c.log_page(id, i64::MIN, i64::MAX);
    let _ = c.download_log(id, i64::MAX);
    let _ = c.run_job(12, None, i64::MAX, i64::MAX);
}
