//! Unit tests of the start-up tracker on the vLLM fixtures (fixtures/llm/), each line
//! with the PowerJob prefix the server adds.

use proptest::prelude::*;

use super::*;

const STARTUP: &str = include_str!("../../fixtures/llm/vllm-startup.log");
const OOM: &str = include_str!("../../fixtures/llm/vllm-oom.log");
const PORT: &str = include_str!("../../fixtures/llm/vllm-port-in-use.log");

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
        t.feed(rules, i as u64, l);
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
        t.feed(rules, i as u64, l);
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
    let s = t.snapshot(1);
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
    assert_eq!(run(&lines, Some(Status::Succeed)).snapshot(1).phase, Phase::Ready);
}

#[test]
fn out_of_memory_is_the_root_cause_not_the_first_engine_failure() {
    let lines = served(OOM);
    let t = run(&lines, Some(Status::Failed));
    let s = t.snapshot(1);
    assert_eq!((s.phase, s.complete), (Phase::Failed, true));
    let f = s.failure.unwrap();
    assert_eq!(&*f.cause, "cuda_oom");
    let oom = index_of(&lines, "torch.OutOfMemoryError: CUDA out of memory");
    assert_eq!(f.line, Some(oom));
    assert!(f.text.unwrap().contains("OutOfMemoryError"));
    let engine = index_of(&lines, "EngineCore failed to start.");
    assert!(engine < oom);
    let failures: Vec<&Event> = s.events.iter().filter(|e| matches!(e, Event::Failed { .. })).collect();
    assert_eq!(
        failures,
        [
            &Event::Failed { line: Some(engine), cause: "engine_failed".into() },
            &Event::Failed { line: Some(oom), cause: "cuda_oom".into() }
        ]
    );
    assert_eq!(phases(&lines, Status::Failed), [Phase::Starting, Phase::Loading, Phase::Failed]);
}

#[test]
fn port_in_use_fails_before_loading() {
    let lines = served(PORT);
    let s = run(&lines, Some(Status::Failed)).snapshot(1);
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
    let f = t.snapshot(1).failure.unwrap();
    assert_eq!((&*f.cause, f.line), (UNKNOWN_CAUSE, Some(1)));
    let s = run(&lines[..1], Some(Status::Succeed)).snapshot(1);
    assert_eq!((s.phase, s.complete), (Phase::Exited, true));
    assert_eq!(s.events, [Event::Exited { status: "SUCCEED" }]);
    assert_eq!(run(&[], Some(Status::Failed)).snapshot(1).failure.unwrap().line, None);
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
                t.feed(rules, i as u64, l);
            }
            from = from.max(cut);
            t.observe_status(Status::Running, false);
            t.observe_status(end, false);
            let _ = t.snapshot(1);
        }
        t.observe_status(end, true);
        prop_assert_eq!(t.snapshot(1), whole.snapshot(1));
    }
}
