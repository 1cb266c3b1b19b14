//! Unit tests of the start-up tracker on the vLLM fixtures (fixtures/llm/), each line
//! with the PowerJob prefix the server adds.

use proptest::prelude::*;

use super::*;

const STARTUP: &str = include_str!("../../fixtures/llm/vllm-startup.log");
const OOM: &str = include_str!("../../fixtures/llm/vllm-oom.log");
const PORT: &str = include_str!("../../fixtures/llm/vllm-port-in-use.log");
/// The default `startup.failure_settle_ms`.
const SETTLE_MS: i64 = 15_000;

/// The fixture's lines as PowerJob serves them.
fn served(fixture: &str) -> Vec<String> {
    fixture
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let level = if l.contains("ERROR") || l.contains("Traceback") { "ERROR" } else { "INFO" };
            format!("2025-11-12 01:02:{:02}.{:03} [10.0.0.21:27777] {level} {l}", i / 10, i % 1000)
        })
        .collect()
}

fn run(lines: &[String], end: Option<Status>) -> StartupTracker {
    let rules = RuleSet::builtin();
    let mut t = StartupTracker::default();
    for (i, l) in lines.iter().enumerate() {
        t.feed(rules, SETTLE_MS, i as u64, l);
    }
    if let Some(s) = end {
        t.observe_status(s, true);
    }
    t
}

fn index_of(lines: &[String], needle: &str) -> u64 {
    lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?}")) as u64
}

fn phases(lines: &[String], end: Status) -> Vec<Phase> {
    let rules = RuleSet::builtin();
    let mut t = StartupTracker::default();
    let mut seen = vec![t.phase()];
    for (i, l) in lines.iter().enumerate() {
        t.feed(rules, SETTLE_MS, i as u64, l);
        if seen.last() != Some(&t.phase()) {
            seen.push(t.phase());
        }
    }
    t.observe_status(end, true);
    if seen.last() != Some(&t.phase()) {
        seen.push(t.phase());
    }
    seen
}

#[test]
fn a_successful_start_is_ready_at_application_startup_complete() {
    let lines = served(STARTUP);
    let t = run(&lines, None);
    let ready = index_of(&lines, "Application startup complete.");
    assert_eq!(ready, 103, "line 104 of the file, 0-based");
    let s = t.snapshot(1, false);
    assert_eq!((s.phase, s.complete), (Phase::Ready, true));
    assert_eq!(s.ready, Some(Mark { line: ready, text: lines[ready as usize].clone() }));
    assert_eq!(s.failure, None);
    let p = s.progress.unwrap();
    assert_eq!((&*p.label, p.done, p.total), ("Capturing CUDA graphs (decode, FULL)", 35, 35));
    // Loading, then the shards 0..4 (the repeated 100% bar is one event), then the graphs.
    assert!(matches!(s.events[0], Event::Loading { .. }), "{:?}", s.events);
    let shards: Vec<(u64, u64)> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { label, done, total, .. } if label.contains("checkpoint shards") => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(shards, [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]);
    assert_eq!(s.events.last(), Some(&Event::Ready { line: ready }));
    assert_eq!(phases(&lines, Status::Succeed), [Phase::Starting, Phase::Loading, Phase::Ready]);
    // Ready stays after the script exits with success.
    assert_eq!(run(&lines, Some(Status::Succeed)).snapshot(1, false).phase, Phase::Ready);
}

#[test]
fn out_of_memory_is_the_root_cause_not_the_first_engine_failure() {
    let lines = served(OOM);
    let t = run(&lines, Some(Status::Failed));
    let s = t.snapshot(1, false);
    assert_eq!((s.phase, s.complete), (Phase::Failed, true));
    let f = s.failure.unwrap();
    assert_eq!(&*f.cause, "cuda_oom");
    let oom = index_of(&lines, "torch.OutOfMemoryError: CUDA out of memory");
    assert_eq!(f.line, Some(oom));
    assert!(f.text.unwrap().contains("OutOfMemoryError"));
    let engine = index_of(&lines, "EngineCore failed to start.");
    assert!(engine < oom);
    // One failed event, with the final cause only (issue 21, item 2).
    let failures: Vec<&Event> = s.events.iter().filter(|e| matches!(e, Event::Failed { .. })).collect();
    assert_eq!(failures, [&Event::Failed { line: Some(oom), cause: "cuda_oom".into() }]);
    assert_eq!(phases(&lines, Status::Failed), [Phase::Starting, Phase::Loading, Phase::Failed]);
}

#[test]
fn a_generic_failure_is_provisional_until_the_specific_cause_follows() {
    let lines = served(OOM);
    let engine = index_of(&lines, "EngineCore failed to start.") as usize;
    let oom = index_of(&lines, "torch.OutOfMemoryError: CUDA out of memory") as usize;
    // Between the two: failing, not failed.
    for upto in [engine + 1, oom] {
        let s = run(&lines[..upto], None).snapshot(1, false);
        assert_eq!(s.phase, Phase::Loading, "phase keeps its value while the cause is provisional");
        let f = s.failure.expect("the provisional failure shows");
        assert_eq!((&*f.cause, f.line, f.is_final), ("engine_failed", Some(engine as u64), false));
        assert!(!s.events.iter().any(|e| matches!(e, Event::Failed { .. })), "{:?}", s.events);
    }
    // cuda_oom has the highest priority of the built-ins: final at once, job still running.
    let s = run(&lines[..=oom], None).snapshot(1, false);
    let f = s.failure.unwrap();
    assert_eq!((s.phase, &*f.cause, f.is_final, s.complete), (Phase::Failed, "cuda_oom", true, false));
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["final"], true, "{json}");
}

/// `text` as served lines, line `k` logged at `times[k]` seconds.
fn timed(texts: &[(u32, &str)]) -> Vec<String> {
    texts
        .iter()
        .map(|(s, t)| format!("2025-11-12 01:{:02}:{:02}.000 [10.0.0.21:27777] INFO {t}", s / 60, s % 60))
        .collect()
}

#[test]
fn a_provisional_failure_is_final_after_the_settle_window_by_the_lines_time() {
    let lines = timed(&[
        (0, "Starting to load model /data/m"),
        (5, "EngineCore failed to start."),
        (10, "still cleaning up"),
        (19, "still cleaning up"),
        (20, "shutting down"),
        (30, "CUDA out of memory"),
    ]);
    let snap = |n: usize| run(&lines[..n], None).snapshot(1, false);
    assert_eq!(snap(4).failure.map(|f| f.is_final), Some(false), "14 s after the failure line: provisional");
    assert_eq!(snap(4).phase, Phase::Loading);
    // 15 s after it: final with the cause known then; a later cause no longer replaces it.
    for n in [5, 6] {
        let s = snap(n);
        let f = s.failure.unwrap();
        assert_eq!((s.phase, &*f.cause, f.is_final), (Phase::Failed, "engine_failed", true));
        assert_eq!(s.events.iter().filter(|e| matches!(e, Event::Failed { .. })).count(), 1);
    }
    // The end of the attempt makes a provisional failure final too, with its cause.
    let mut t = run(&lines[..3], None);
    t.observe_status(Status::Failed, false);
    assert_eq!(t.phase(), Phase::Loading, "a final status alone is not the end: late lines may follow");
    t.observe_status(Status::Failed, true);
    let f = t.snapshot(1, false).failure.unwrap();
    assert_eq!((t.phase(), &*f.cause, f.is_final), (Phase::Failed, "engine_failed", true));
    // So does a retry that supersedes the attempt.
    let mut t = run(&lines[..2], None);
    t.supersede();
    assert_eq!(t.phase(), Phase::Failed);
    assert_eq!(
        t.events(),
        [Event::Loading { line: 0 }, Event::Failed { line: Some(1), cause: "engine_failed".into() }]
    );
}

#[test]
fn a_job_is_tracked_with_rules_of_its_own_or_once_a_rule_matched() {
    let batch = timed(&[(0, "[INFO] processed batch 1"), (1, "[WARN] shard 2: slow disk, retrying"), (2, "done")]);
    let mut t = run(&batch, None);
    assert!(!t.snapshot(1, false).tracked, "built-in rules, nothing like vLLM: not a model server");
    assert!(t.snapshot(1, true).tracked, "the job's own rules: tracked from the start");
    t.observe_status(Status::Succeed, true);
    assert_eq!((t.phase(), t.snapshot(1, false).tracked), (Phase::Exited, false));
    let vllm = served(STARTUP);
    assert!(run(&vllm[..40], None).snapshot(1, false).tracked, "a vLLM line matched");
    // A job with no rules at all matches nothing.
    let none = RuleSet::compile(&[], false).unwrap();
    let mut t = StartupTracker::default();
    for (i, l) in vllm.iter().enumerate() {
        t.feed(&none, SETTLE_MS, i as u64, l);
    }
    assert!(!t.matched() && !t.snapshot(1, false).tracked);
}

#[test]
fn port_in_use_fails_before_loading() {
    let lines = served(PORT);
    let s = run(&lines, Some(Status::Failed)).snapshot(1, false);
    let f = s.failure.unwrap();
    assert_eq!((&*f.cause, f.line), ("port_in_use", Some(index_of(&lines, "OSError: [Errno 98]"))));
    assert_eq!(s.progress, None);
    assert_eq!(phases(&lines, Status::Failed), [Phase::Starting, Phase::Failed]);
}

#[test]
fn a_failed_job_without_a_matching_line_is_unknown_with_its_last_error_line() {
    let lines = served("[2025-11-12 01:02:03] [INFO] start\n[2025-11-12 01:02:04] [ERROR] boom\nbye\n");
    let mut t = run(&lines, None);
    t.observe_status(Status::Failed, false);
    assert_eq!(t.phase(), Phase::Starting, "not before the log is complete");
    t.observe_status(Status::Failed, true);
    let f = t.snapshot(1, false).failure.unwrap();
    assert_eq!((&*f.cause, f.line), (UNKNOWN_CAUSE, Some(1)));
    let s = run(&lines[..1], Some(Status::Succeed)).snapshot(1, false);
    assert_eq!((s.phase, s.complete), (Phase::Exited, true));
    assert_eq!(s.events, [Event::Exited { status: "SUCCEED" }]);
    assert_eq!(run(&[], Some(Status::Failed)).snapshot(1, false).failure.unwrap().line, None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Events depend only on the lines: fed in any chunks, with status observations
    /// and snapshots in between, the tracker ends where it ends fed at once.
    #[test]
    fn events_do_not_depend_on_chunking(fixture in 0..3usize, cuts in proptest::collection::vec(0..180usize, 0..12)) {
        let (text, end) = [(STARTUP, Status::Succeed), (OOM, Status::Failed), (PORT, Status::Failed)][fixture];
        let lines = served(text);
        let whole = run(&lines, Some(end));
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(lines.len())).collect();
        cuts.sort_unstable();
        cuts.push(lines.len());
        let rules = RuleSet::builtin();
        let mut t = StartupTracker::default();
        let mut from = 0;
        for cut in cuts {
            for (i, l) in lines.iter().enumerate().take(cut).skip(from) {
                t.feed(rules, SETTLE_MS, i as u64, l);
            }
            from = from.max(cut);
            t.observe_status(Status::Running, false);
            t.observe_status(end, false);
            let _ = t.snapshot(1, false);
        }
        t.observe_status(end, true);
        prop_assert_eq!(t.snapshot(1, false), whole.snapshot(1, false));
    }
}
