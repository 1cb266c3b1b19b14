//! Unit tests of the follower (`follower.rs`, `follower/plan.rs`, `follower/apply.rs`).

use std::sync::Arc;

use super::*;
use crate::logs::{RawPage, Snapshot};

const T: Timing = Timing {
    worker_flush_ms: 5_000,
    log_cache_ms: 10_000,
    first_read_delay_ms: 8_000,
    clock_skew_ms: 1_000,
    sync_delay_ms: 60_000,
    max_lines: 1_000_000,
};

fn rec(sec: i64, text: &str) -> String {
    format!("2024-06-01 16:{:02}:{:02}.000 [10.0.0.21:27777] INFO {text}", sec / 60, sec % 60)
}

/// An ERROR record with a stack trace: the same 6 continuation lines every time.
fn error_record(sec: i64, text: &str) -> Vec<String> {
    let mut r = vec![format!("2024-06-01 16:{:02}:{:02}.000 [10.0.0.21:27777] ERROR {text}", sec / 60, sec % 60)];
    r.extend(
        ["java.lang.IllegalStateException: boom", "\tat a.B.c(B.java:1)", "\tat a.B.d(B.java:2)"].map(String::from),
    );
    r.extend(["\tat java.lang.Thread.run(Thread.java:748)", "Caused by: x", ""].map(String::from));
    r
}

fn running() -> InstanceFacts {
    InstanceFacts {
        status: Status::Running,
        actual_trigger_time: Some(-100_000),
        finished_time: None,
        task_tracker_address: Some("10.0.0.21:27777".into()),
        running_times: 1,
    }
}

fn finished(status: Status, at: i64, running_times: u32) -> InstanceFacts {
    InstanceFacts { status, finished_time: Some(at), running_times, ..running() }
}

/// Reads `file` the way `reader::refresh_log` does: probe, then tail or window, then
/// full if needed. Returns (lines appended, pages read).
fn read(f: &mut Follower, file: &[String], now: i64) -> (usize, usize) {
    let status = if f.status() == Status::Unknown { Status::Running } else { f.status() };
    let facts = InstanceFacts { status, ..running() };
    let Plan::Read(Pages { probe_page, tail_page, first_page }) = f.plan(&facts, now, &T) else { return (0, 0) };
    let probe = page_of(file, probe_page);
    let total = file.len().div_ceil(100) as u64;
    match f.probe(&probe) {
        Probe::Unchanged => {
            f.apply_unchanged(now, &T);
            return (0, 1);
        }
        Probe::Grew => {
            if let Ok(a) = f.apply_tail(&window(file, tail_page), now, &T) {
                return (a.appended, (total - tail_page).max(1) as usize + usize::from(tail_page < probe_page));
            }
        }
        Probe::Moved => {}
    }
    match f.apply(&window(file, first_page), now, &T) {
        Ok(a) => (a.appended, 1 + (total - first_page) as usize),
        Err(NeedFullRead) => (f.apply(&self::window(file, 0), now, &T).unwrap().appended, 1 + 2 * total as usize),
    }
}

fn refresh(f: &mut Follower, file: &[String], now: i64) -> usize {
    read(f, file, now).0
}

fn page_of(file: &[String], index: u64) -> RawPage {
    let total = file.len().div_ceil(100) as u64;
    let from = (index as usize * 100).min(file.len());
    let to = (from + 100).min(file.len());
    let data = file[from..to].iter().map(|l| format!("{l}\n")).collect();
    RawPage { index, total_pages: total, data }
}

fn window(file: &[String], first_page: u64) -> Snapshot {
    let total = file.len().div_ceil(100) as u64;
    let from = (first_page as usize * 100).min(file.len());
    Snapshot::Lines {
        first_page,
        total_pages: total,
        lines: file[from..].iter().map(|l| Arc::from(l.as_str())).collect(),
    }
}

fn served(f: &Follower) -> Vec<String> {
    f.lines().iter().map(str::to_owned).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn appends_new_lines_and_nothing_twice() {
    let mut f = Follower::default();
    let mut file: Vec<String> = (0..250).map(|i| rec(i / 10, &format!("l{i}"))).collect();
    assert_eq!(refresh(&mut f, &file, 0), 250);
    assert_eq!(refresh(&mut f, &file, 1), 0);
    file.push(rec(30, "tail"));
    assert_eq!(refresh(&mut f, &file, 2), 1);
    assert_eq!(served(&f), file);
}

#[test]
fn a_growing_log_costs_the_changed_pages_plus_one() {
    let mut f = Follower::default();
    let mut file: Vec<String> = (0..1000).map(|i| rec(i / 10, &format!("l{i}"))).collect();
    refresh(&mut f, &file, 0);
    // 150 lines more, in order: pages 9 (was full), 10 and 11 change.
    file.extend((1000..1150).map(|i| rec(i / 10, &format!("l{i}"))));
    assert_eq!(read(&mut f, &file, 1), (150, 3));
    assert_eq!(read(&mut f, &file, 2), (0, 1));
    file.push(rec(200, "one more"));
    assert_eq!(read(&mut f, &file, 3), (1, 1), "the tail page alone");
    assert_eq!(served(&f), file);
}

#[test]
fn late_insert_is_appended_at_the_end() {
    let mut f = Follower::default();
    let mut file: Vec<String> = (0..500).map(|i| rec(i / 10, &format!("l{i}"))).collect();
    refresh(&mut f, &file, 0);
    // A late batch from 12 s before the newest record lands 120 lines back.
    let late: Vec<String> = (0..3).map(|i| rec(37, &format!("late{i}"))).collect();
    for (k, l) in late.iter().enumerate() {
        file.insert(380 + k, l.clone());
    }
    assert_eq!(refresh(&mut f, &file, 1), 3);
    assert_eq!(&served(&f)[500..], &late[..]);
    assert_eq!(refresh(&mut f, &file, 2), 0);
}

#[test]
fn insert_older_than_the_window_falls_back_to_a_full_read() {
    let mut f = Follower::default();
    let mut file: Vec<String> = (0..1000).map(|i| rec(i / 10, &format!("l{i}"))).collect();
    refresh(&mut f, &file, 0);
    // Far beyond the late window (clock skew): must still be found, once.
    file.insert(5, rec(0, "skewed"));
    assert_eq!(refresh(&mut f, &file, 1), 1);
    assert_eq!(f.lines().iter().next_back(), Some(&*rec(0, "skewed")));
    file.push(rec(100, "after"));
    assert_eq!(refresh(&mut f, &file, 2), 1);
    assert_eq!(sorted(served(&f)), sorted(file));
}

#[test]
fn equal_records_are_counted_not_deduplicated() {
    let mut f = Follower::default();
    let mut file = error_record(0, "boom");
    refresh(&mut f, &file, 0);
    file.extend(error_record(1, "boom"));
    assert_eq!(refresh(&mut f, &file, 1), 7);
    assert_eq!(served(&f), file);
    // The very same record twice (same millisecond, worker and text) is two records.
    file.extend(error_record(2, "twice"));
    file.extend(error_record(2, "twice"));
    assert_eq!(refresh(&mut f, &file, 2), 14);
    assert_eq!(served(&f), file);
}

#[test]
fn ties_swapping_between_rebuilds_add_nothing() {
    let mut f = Follower::default();
    let mut file = vec![rec(0, "a"), rec(0, "b"), rec(1, "c")];
    refresh(&mut f, &file, 0);
    file.swap(0, 1);
    assert_eq!(refresh(&mut f, &file, 1), 0);
    assert_eq!(served(&f), [rec(0, "a"), rec(0, "b"), rec(1, "c")]);
}

#[test]
fn repeated_continuation_lines_survive_a_restart() {
    // 10 error records served; the server restarts (H2 lost) and serves only new
    // records with the very same stack trace: each must be served whole.
    let mut f = Follower::default();
    let before: Vec<String> = (0..10).flat_map(|i| error_record(i, &format!("e{i}"))).collect();
    refresh(&mut f, &before, 0);
    let after: Vec<String> = (20..31).flat_map(|i| error_record(i, &format!("e{i}"))).collect();
    assert_eq!(refresh(&mut f, &after, 1), after.len());
    assert!(f.upstream_lost());
    let mut all = before.clone();
    all.extend(after.clone());
    assert_eq!(served(&f), all);
    // The old records coming back (read on a server that holds them) add nothing.
    assert_eq!(refresh(&mut f, &all, 2), 0);
}

#[test]
fn a_head_clean_up_loses_nothing_new() {
    // A frequent job: rows older than 10 minutes vanish from the head, while new
    // records with identical continuation lines arrive.
    let mut f = Follower::default();
    let mut file: Vec<String> = (0..30).flat_map(|i| error_record(i * 30, &format!("run {i}"))).collect();
    refresh(&mut f, &file, 0);
    file.drain(..7 * 10);
    file.extend((30..40).flat_map(|i| error_record(i * 30, &format!("run {i}"))));
    assert_eq!(refresh(&mut f, &file, 1), 70);
    assert_eq!(f.line_count(), 40 * 7);
    assert_eq!(refresh(&mut f, &file, 2), 0);
}

#[test]
fn collapse_after_sync_keeps_the_log_and_adds_late_lines() {
    let mut f = Follower::default();
    let file: Vec<String> = (0..150).map(|i| rec(i, &format!("l{i}"))).collect();
    refresh(&mut f, &file, 0);
    assert_eq!(f.apply(&Snapshot::NoLog, 1, &T), Ok(Applied { appended: 0 }));
    assert!(f.upstream_lost());
    assert_eq!(f.lines().len(), 150);
    let mut late = error_record(151, "late");
    late.push(rec(152, "after"));
    assert_eq!(refresh(&mut f, &late, 2), 8);
    assert_eq!(f.lines().len(), 158);
    // And the original log coming back (read on another server) adds nothing.
    let mut all = file.clone();
    all.extend(late);
    assert_eq!(refresh(&mut f, &all, 3), 0);
}

#[test]
fn completes_only_after_a_read_past_the_late_window() {
    let mut f = Follower::default();
    let file = vec![rec(0, "a")];
    f.observe(&running(), 9_000, &T);
    refresh(&mut f, &file, 9_000);
    f.observe(&finished(Status::Succeed, 10_000, 1), 10_500, &T);
    f.apply(&window(&file, 0), 20_000, &T).unwrap();
    assert!(!f.is_complete(), "a late batch can still arrive");
    // Deadline: min(10_500 + 16_000, 10_000 + 16_000 + 1_000) = 26_500.
    f.apply(&window(&file, 0), 26_499, &T).unwrap();
    assert!(!f.is_complete());
    let with_late = vec![rec(0, "a"), rec(1, "late")];
    assert_eq!(f.apply(&window(&with_late, 0), 26_500, &T), Ok(Applied { appended: 1 }));
    assert!(!f.is_complete(), "it just grew: it must stay unchanged for a window first");
    f.apply(&window(&with_late, 0), 42_499, &T).unwrap();
    assert!(!f.is_complete());
    f.apply(&window(&with_late, 0), 42_500, &T).unwrap();
    assert!(f.is_complete(), "unchanged for a whole window after it last grew");
    assert_eq!(f.plan(&finished(Status::Succeed, 10_000, 1), 50_000, &T), Plan::Done);
    // After complete, nothing more is taken.
    let more = vec![rec(0, "a"), rec(1, "late"), rec(2, "too late")];
    assert_eq!(f.apply(&window(&more, 0), 50_000, &T), Ok(Applied { appended: 0 }));
    assert_eq!(f.line_count(), 2);
}

#[test]
fn a_stopped_process_that_keeps_logging_is_followed_until_it_stops() {
    let mut f = Follower::default();
    let mut file = vec![rec(0, "start")];
    f.observe(&running(), 0, &T);
    refresh(&mut f, &file, 0);
    f.observe(&finished(Status::Stopped, 10_000, 1), 10_000, &T);
    // A batch every 5 s after the stop, seen a few seconds later each.
    let mut now = 10_000;
    for k in 0..8 {
        file.push(rec(10 + 5 * k, &format!("after stop {k}")));
        now += 5_000;
        assert_eq!(refresh(&mut f, &file, now), 1);
        assert!(!f.is_complete(), "batch {k}");
    }
    // It stops: complete a late window after the last growth, with every line.
    now += 16_000;
    refresh(&mut f, &file, now - 1);
    assert!(!f.is_complete());
    refresh(&mut f, &file, now);
    assert!(f.is_complete());
    assert_eq!(served(&f), file);
}

#[test]
fn a_log_that_never_stops_completes_at_the_sync_plus_a_window() {
    let mut f = Follower::default();
    let mut file = vec![rec(0, "start")];
    refresh(&mut f, &file, 0);
    f.observe(&finished(Status::Stopped, 0, 1), 0, &T);
    let mut now = 0;
    while !f.is_complete() {
        now += 1_000;
        file.push(rec(now / 1000, "still going"));
        refresh(&mut f, &file, now);
        assert!(now <= 77_000, "completes by finish + window + skew + sync");
    }
    assert_eq!(now, 76_000, "min(0 + 16 s, 0 + 17 s) + 60 s");
}

#[test]
fn a_retry_appends_the_new_run_and_ignores_the_old_file_coming_back() {
    let mut f = Follower::default();
    let run1: Vec<String> = (0..120).map(|i| rec(i, &format!("run 1 line {i}"))).collect();
    f.observe(&running(), 0, &T);
    refresh(&mut f, &run1, 0);
    f.observe(&finished(Status::Failed, 200_000, 1), 200_000, &T);
    refresh(&mut f, &run1, 300_000);
    assert!(f.is_complete());
    let stored: Follower = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
    assert_eq!((served(&stored), stored.is_complete()), (served(&f), true));
    let compact = f.weight();
    // PowerJob's retry reuses the instance id; the status goes back to waiting.
    let waiting = InstanceFacts { status: Status::WaitingDispatch, running_times: 1, ..running() };
    f.observe(&waiting, 400_000, &T);
    assert!(!f.is_complete());
    assert_eq!(f.status(), Status::WaitingDispatch);
    assert_eq!(f.attempt(), 2);
    assert!(f.weight() > compact, "following again costs the lookup tables");
    // Dispatched: runningTimes 2, the same attempt.
    f.observe(&InstanceFacts { running_times: 2, ..running() }, 401_000, &T);
    assert_eq!(f.attempts(), [Attempt { attempt: 1, from_line: 0 }, Attempt { attempt: 2, from_line: 120 }]);
    let run2: Vec<String> = (500..660).map(|i| rec(i, &format!("run 2 line {i}"))).collect();
    assert_eq!(refresh(&mut f, &run2, 402_000), 160);
    // After the retry's sync the server serves the old stable file again.
    assert_eq!(refresh(&mut f, &run1, 500_000), 0);
    let mut all = run1.clone();
    all.extend(run2);
    assert_eq!(served(&f), all);
}

#[test]
fn a_retry_that_already_finished_is_seen_by_running_times() {
    let mut f = Follower::default();
    f.observe(&finished(Status::Succeed, 0, 1), 0, &T);
    refresh(&mut f, &[rec(0, "one")], 100_000);
    assert!(f.is_complete());
    f.observe(&finished(Status::Succeed, 200_000, 2), 300_000, &T);
    assert!(!f.is_complete(), "runningTimes went up: a second run happened");
    assert_eq!(f.attempt(), 2);
    assert_eq!(refresh(&mut f, &[rec(200, "two")], 300_001), 1);
}

#[test]
fn a_status_powerjob_does_not_define_is_not_a_retry() {
    let mut f = Follower::default();
    f.observe(&finished(Status::Succeed, 0, 1), 0, &T);
    f.observe(&InstanceFacts { status: Status::Unknown, ..running() }, 1, &T);
    assert_eq!(f.attempts().len(), 1);
    f.observe(&InstanceFacts { status: Status::WaitingDispatch, ..running() }, 2, &T);
    assert_eq!(f.attempts().len(), 2);
}

#[test]
fn never_reads_a_waiting_or_young_instance() {
    let f = Follower::default();
    let mut facts = running();
    facts.status = Status::WaitingWorkerReceive;
    assert_eq!(f.plan(&facts, 100_000, &T), Plan::Wait);
    facts.status = Status::Running;
    facts.actual_trigger_time = Some(100_000);
    assert_eq!(f.plan(&facts, 107_999, &T), Plan::Wait);
    assert!(matches!(f.plan(&facts, 108_000, &T), Plan::Read(_)));
}

#[test]
fn an_instance_that_never_ran_completes_empty() {
    let mut f = Follower::default();
    let facts = InstanceFacts { task_tracker_address: Some("N/A".into()), ..finished(Status::Failed, 5, 1) };
    f.observe(&facts, 10, &T);
    assert!(f.is_complete());
    assert_eq!(f.plan(&facts, 10, &T), Plan::Done);
}

#[test]
fn a_run_redispatched_to_no_worker_still_reads_its_last_lines() {
    // Run 1 served lines, failed with retries left, and the re-dispatch found no
    // worker (taskTrackerAddress "N/A"): its tail must still be read.
    let mut f = Follower::default();
    assert_eq!(refresh(&mut f, &[rec(0, "run 1 starts")], 0), 1);
    let facts = InstanceFacts { task_tracker_address: Some("N/A".into()), ..finished(Status::Failed, 50_000, 1) };
    f.observe(&facts, 50_000, &T);
    assert!(!f.is_complete());
    assert!(matches!(f.plan(&facts, 50_000, &T), Plan::Read(_)));
}

#[test]
fn the_line_cap_cuts_the_log_and_stops_reading() {
    let t = Timing { max_lines: 250, ..T };
    let mut f = Follower::default();
    let file: Vec<String> = (0..400).map(|i| rec(i / 10, &format!("l{i}"))).collect();
    f.apply(&window(&file, 0), 0, &t).unwrap();
    assert_eq!(f.line_count(), 250);
    assert!(f.truncated());
    assert_eq!(f.plan(&running(), 1, &t), Plan::Wait, "a cut log is not read again");
    f.observe(&finished(Status::Succeed, 10, 1), 20, &t);
    assert!(!f.is_complete());
    f.observe(&finished(Status::Succeed, 10, 1), 100_000, &t);
    assert!(f.is_complete(), "completes by the clock alone");
    assert_eq!(served(&f), &file[..250]);
}

#[test]
fn a_growing_log_costs_the_text_plus_under_64_bytes_a_line() {
    let mut f = Follower::default();
    let mut file = Vec::new();
    for batch in 0..100 {
        file.extend((0..100).map(|i| rec(batch, &format!("{i:04} {}", "x".repeat(92)))));
        refresh(&mut f, &file, batch);
    }
    let text = f.data.lines.text_bytes();
    assert_eq!(f.line_count(), 10_000);
    let per_line = (f.weight() - text) as f64 / 10_000.0;
    eprintln!("growing: {per_line:.1} bytes a line besides the text");
    assert!(per_line <= 64.0, "{per_line:.1} bytes a line besides the text");
    f.finish();
    let per_line = (f.weight() - text) as f64 / 10_000.0;
    assert!(per_line <= 16.0, "{per_line:.1} bytes a line once complete");
}

#[test]
fn state_round_trips_through_serde() {
    let mut f = Follower::default();
    let mut file: Vec<String> = (0..120).map(|i| rec(i, &format!("l{i}"))).collect();
    file.extend(error_record(130, "x"));
    refresh(&mut f, &file, 0);
    let json = serde_json::to_string(&f).unwrap();
    let mut g: Follower = serde_json::from_str(&json).unwrap();
    let mut more = file.clone();
    more.extend(error_record(200, "y"));
    assert_eq!(refresh(&mut g, &more, 1), 7);
    assert_eq!(served(&g), more);
}

/// A follower rebuilt from the store's copy (lines, unit flags, meta), as a replica that
/// takes over an instance does.
fn through_store(f: &Follower, chunks: usize) -> Follower {
    let lines: Vec<String> = f.lines().iter().map(str::to_owned).collect();
    let flags = f.unit_flags(0);
    let meta = f.shared_meta();
    let mut g = Follower::default();
    let step = lines.len().div_ceil(chunks).max(1);
    for from in (0..lines.len()).step_by(step) {
        let to = (from + step).min(lines.len());
        g.extend_shared(&lines[from..to], &flags[from..to], &meta);
    }
    if lines.is_empty() {
        g.extend_shared::<&str>(&[], &[], &meta);
    }
    g
}

#[test]
fn a_follower_rebuilt_from_the_store_serves_the_same_and_appends_only_what_is_new() {
    let mut file: Vec<String> = (0..150).map(|s| rec(s, &format!("line {s}"))).collect();
    file.extend(error_record(150, "first trace"));
    file.extend((151..260).map(|s| rec(s, &format!("line {s}"))));
    file.extend(error_record(260, "second trace"));
    let mut f = Follower::default();
    f.observe(&running(), 0, &T);
    refresh(&mut f, &file, 300_000);
    assert_eq!(f.line_count(), file.len());
    // Flags mark exactly the records' first lines (a trace is one unit).
    let flags = f.unit_flags(0);
    assert_eq!(flags.iter().filter(|&&b| b).count(), 150 + 1 + 109 + 1);
    assert_eq!(f.unit_flags(151), flags[151..].to_vec());
    for chunks in [1, 3, 7] {
        let mut g = through_store(&f, chunks);
        assert_eq!(g.lines().to_vec(), f.lines().to_vec());
        assert_eq!(g.shared_meta(), f.shared_meta());
        assert_eq!(g.unit_flags(0), flags);
        // Late lines landed in the middle, and one more record at the end: the rebuilt
        // follower (no model: it reads the whole file) appends exactly those.
        let mut later = file.clone();
        later.insert(100, rec(99, "late"));
        later.push(rec(270, "last"));
        let appended = refresh(&mut g, &later, 310_000);
        assert_eq!(appended, 2, "{chunks} chunks");
        assert_eq!(g.lines().iter().rev().take(2).collect::<Vec<_>>(), [&*rec(270, "last"), &*rec(99, "late")]);
        // And nothing more on the next read.
        assert_eq!(refresh(&mut g, &later, 320_000), 0);
    }
}

#[test]
fn a_complete_log_through_the_store_stays_complete_and_runs_again_on_a_retry() {
    let file: Vec<String> = (0..30).map(|s| rec(s, &format!("line {s}"))).collect();
    let mut f = Follower::default();
    f.observe(&running(), 0, &T);
    refresh(&mut f, &file, 60_000);
    f.observe(&finished(Status::Succeed, 60_000, 1), 61_000, &T);
    refresh(&mut f, &file, 200_000);
    assert!(f.is_complete());
    let mut g = through_store(&f, 2);
    assert!(g.is_complete());
    assert_eq!(g.lines().to_vec(), f.lines().to_vec());
    // The meta of a retried run reaches a replica that saw the log complete.
    f.observe(&InstanceFacts { running_times: 2, ..running() }, 300_000, &T);
    g.extend_shared::<&str>(&[], &[], &f.shared_meta());
    assert!(!g.is_complete());
    assert_eq!(g.attempt(), 2);
    assert_eq!(g.attempts()[1].from_line, 30);
}
