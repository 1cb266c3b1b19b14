//! Unit and property tests of the served log (`joined.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::logs::follower::Timing;
use crate::logs::merge::{Level, Record};
use crate::logs::{InstanceFacts, Snapshot};

/// 2024-06-01 16:00:05.123 in Asia/Shanghai (+08:00).
pub(super) const T0: i64 = 1_717_228_805_123;
const WORKER: &str = "10.0.0.21:27777";
const TIMING: Timing = Timing {
    worker_flush_ms: 5_000,
    log_cache_ms: 10_000,
    first_read_delay_ms: 0,
    clock_skew_ms: 1_000,
    sync_delay_ms: 60_000,
    max_lines: 1_000_000,
};

pub(super) fn cfg() -> JoinConfig {
    JoinConfig { max_lines: 1_000_000, ..JoinConfig::default() }
}

pub(super) fn rec(ts: i64, text: &str) -> String {
    render(ts, WORKER, Level::Info, text, 480).remove(0)
}

pub(super) fn line(ts: i64, text: &str) -> PushedLine {
    PushedLine { ts, level: Level::Info, text: text.into() }
}

pub(super) fn batch(source: &str, seq: u64, lines: Vec<PushedLine>) -> Pushed {
    Pushed::Batch(Batch { source: source.into(), seq, worker: WORKER.into(), is_final: false, lines })
}

fn final_batch(source: &str, seq: u64, lines: Vec<PushedLine>) -> Pushed {
    Pushed::Batch(Batch { source: source.into(), seq, worker: WORKER.into(), is_final: true, lines })
}

fn facts(status: Status, running_times: u32, finished_time: Option<i64>) -> InstanceFacts {
    InstanceFacts {
        status,
        actual_trigger_time: Some(T0 - 60_000),
        finished_time,
        task_tracker_address: Some(WORKER.into()),
        running_times,
    }
}

/// PowerJob's whole file now is `file`: the follower applies it read at `now`, then the
/// join catches up.
pub(super) fn poll(j: &mut Joined, file: &[String], now: i64) {
    let f = j.follower_mut();
    if f.status() == Status::Unknown {
        f.observe(&facts(Status::Running, 1, None), now, &TIMING);
    }
    let lines: Vec<Arc<str>> = file.iter().map(|l| Arc::from(l.as_str())).collect();
    let total_pages = (lines.len() as u64).div_ceil(100).max(1);
    f.apply(&Snapshot::Lines { first_page: 0, total_pages, lines }, now, &TIMING).expect("a full read applies");
    j.sync(&cfg(), now);
}

/// The instance finished at `at` with `file` as its log: read after every late line
/// could have come, so the follower completes.
fn finish(j: &mut Joined, file: &[String], at: i64) {
    j.follower_mut().observe(&facts(Status::Succeed, 1, Some(at)), at, &TIMING);
    // (Once to take in the last lines, once more after they stopped growing.)
    poll(j, file, at + 30_000);
    poll(j, file, at + 60_000);
    assert!(j.follower().is_complete(), "{:?}", j.follower());
}

pub(super) fn served(j: &Joined) -> Vec<String> {
    j.lines().iter().map(str::to_owned).collect()
}

#[test]
fn with_nothing_pushed_the_log_is_the_followers_and_costs_nothing_more() {
    let mut j = Joined::default();
    let file = vec![rec(T0, "a"), rec(T0 + 1, "b")];
    poll(&mut j, &file, T0 + 10_000);
    assert!(!j.is_joined());
    assert_eq!(served(&j), file);
    assert_eq!(j.weight(), j.follower().weight());
    assert_eq!((j.push_stats(), j.next_deadline(&cfg()), j.pushed_flags(0)), (None, None, vec![false, false]));
    assert!(!j.tick(&cfg(), T0 + 99_000));
    finish(&mut j, &file, T0 + 20_000);
    assert!(j.is_complete());
}

#[test]
fn a_pushed_line_is_served_at_once_in_powerjobs_format_and_its_polled_copy_is_dropped() {
    let mut j = Joined::default();
    let a = j.offer(&cfg(), batch("s", 0, vec![line(T0, "a"), line(T0 + 5, "b")]), T0 + 50).unwrap();
    assert_eq!(a, Accepted { accepted: 2, duplicate: false, next_seq: Some(1), appended: 2, dropped: 0 });
    assert_eq!(served(&j), [rec(T0, "a"), rec(T0 + 5, "b")]);
    // PowerJob has both, and one line only it has (the processor's own OmsLogger line).
    let file = vec![rec(T0, "a"), rec(T0 + 3, "own"), rec(T0 + 5, "b")];
    poll(&mut j, &file, T0 + 10_000);
    assert_eq!(served(&j), [rec(T0, "a"), rec(T0 + 5, "b"), rec(T0 + 3, "own")]);
    assert_eq!(j.pushed_flags(0), [true, true, false]);
    assert_eq!(j.pushed_flags(1), [true, false]);
    let stats = j.push_stats().unwrap();
    assert_eq!((stats.sources, stats.lines, stats.last_at, stats.copies), (1, 2, T0 + 50, 2));
    // The follower never saw a pushed line: PowerJob's mirror is PowerJob's alone.
    assert_eq!(j.follower().line_count(), 3);
}

#[test]
fn a_push_after_powerjobs_copy_was_served_is_dropped() {
    let mut j = Joined::default();
    let file = vec![rec(T0, "a"), rec(T0 + 5, "b")];
    poll(&mut j, &file, T0 + 10_000);
    // The first push copies the follower's lines, which the merge has seen.
    let a = j.offer(&cfg(), batch("s", 0, vec![line(T0, "a"), line(T0 + 5, "b"), line(T0 + 9, "c")]), T0 + 10_050);
    assert_eq!(a.unwrap().appended, 1);
    assert_eq!(served(&j), [rec(T0, "a"), rec(T0 + 5, "b"), rec(T0 + 9, "c")]);
    assert_eq!(j.pushed_flags(0), [false, false, true]);
}

#[test]
fn a_retry_is_a_duplicate_and_a_gap_waits_then_is_skipped_and_its_batch_comes_too_late() {
    let c = cfg();
    let mut j = Joined::default();
    j.offer(&c, batch("s", 0, vec![line(T0, "0")]), T0).unwrap();
    let retry = j.offer(&c, batch("s", 0, vec![line(T0, "0")]), T0 + 10).unwrap();
    assert_eq!(retry, Accepted { accepted: 0, duplicate: true, next_seq: Some(1), appended: 0, dropped: 0 });
    // Batch 1 is lost for now: 2 waits.
    let ahead = j.offer(&c, batch("s", 2, vec![line(T0 + 20, "2")]), T0 + 20).unwrap();
    assert_eq!((ahead.accepted, ahead.appended, ahead.next_seq), (1, 0, Some(1)));
    assert_eq!(j.next_deadline(&c), Some(T0 + 20 + c.push.gap_wait_ms));
    assert!(!j.tick(&c, T0 + 20 + c.push.gap_wait_ms - 1));
    assert!(j.tick(&c, T0 + 20 + c.push.gap_wait_ms));
    assert_eq!(served(&j), [rec(T0, "0"), rec(T0 + 20, "2")]);
    assert_eq!(j.push_stats().unwrap().skipped, 1);
    let late = j.offer(&c, batch("s", 1, vec![line(T0 + 10, "1")]), T0 + 5_000).unwrap();
    assert_eq!((late.duplicate, late.appended, late.next_seq), (true, 0, Some(3)));
    // The poll fills the gap in.
    poll(&mut j, &[rec(T0, "0"), rec(T0 + 10, "1"), rec(T0 + 20, "2")], T0 + 10_000);
    assert_eq!(served(&j), [rec(T0, "0"), rec(T0 + 20, "2"), rec(T0 + 10, "1")]);
}

#[test]
fn the_seed_body_is_merged_at_once_without_dedup() {
    let c = cfg();
    let mut j = Joined::default();
    let body = || Pushed::Unnumbered { worker: NO_WORKER.into(), lines: vec![line(T0, "x")] };
    let a = j.offer(&c, body(), T0).unwrap();
    assert_eq!(a, Accepted { accepted: 1, duplicate: false, next_seq: None, appended: 1, dropped: 0 });
    j.offer(&c, body(), T0 + 1).unwrap();
    let shown = render(T0, NO_WORKER, Level::Info, "x", 480).remove(0);
    assert_eq!(served(&j), [shown.clone(), shown]);
    assert_eq!(j.push_stats().unwrap().sources, 1);
}

#[test]
fn a_log_powerjob_never_has_completes_once_final_and_quiet_and_drops_later_pushes() {
    let c = cfg();
    let mut j = Joined::default();
    // Pushed shortly before the follower's last read (`finish` reads at T0 + 60 s).
    let at = T0 + 50_000;
    j.offer(&c, batch("s", 0, vec![line(T0, "a")]), at).unwrap();
    j.offer(&c, batch("quiet", 0, vec![line(T0 + 1, "b")]), at + 1).unwrap();
    finish(&mut j, &[], T0);
    // `s` never sent `final`, nor did `quiet`: complete once both were quiet.
    assert!(!j.is_complete());
    let done_at = at + 1 + c.quiet_ms;
    assert_eq!(j.next_deadline(&c), Some(done_at));
    j.offer(&c, final_batch("s", 1, vec![]), at + 2).unwrap();
    assert_eq!(j.next_deadline(&c), Some(done_at));
    assert!(!j.tick(&c, done_at - 1));
    assert!(j.tick(&c, done_at));
    assert!(j.is_complete());
    assert_eq!(j.next_deadline(&c), None);
    assert_eq!(served(&j), [rec(T0, "a"), rec(T0 + 1, "b")]);
    let late = j.offer(&c, batch("quiet", 1, vec![line(T0 + 2, "c")]), done_at + 1).unwrap();
    assert_eq!(late, Accepted { accepted: 0, duplicate: false, next_seq: Some(1), appended: 0, dropped: 1 });
    let again = j.offer(&c, batch("quiet", 0, vec![line(T0 + 1, "b")]), done_at + 1).unwrap();
    assert!(again.duplicate);
    assert_eq!((j.line_count(), j.push_stats().unwrap().dropped), (2, 1));
    // Every source final: complete as soon as the follower is.
    let mut k = Joined::default();
    k.offer(&c, final_batch("s", 0, vec![line(T0, "a")]), T0).unwrap();
    finish(&mut k, &[rec(T0, "a")], T0 + 1_000);
    assert!(k.is_complete());
    assert_eq!(served(&k), [rec(T0, "a")]);
    // A batch after the final one: refused, nothing changes.
    let mut m = Joined::default();
    m.offer(&c, final_batch("s", 0, vec![]), T0).unwrap();
    assert_eq!(m.offer(&c, batch("s", 1, vec![]), T0), Err(PushError::AfterFinal { seq: 1, final_seq: 0 }));
}

#[test]
fn runs_start_where_the_served_log_stands_and_pushed_lines_belong_to_the_current_one() {
    let c = cfg();
    let mut j = Joined::default();
    // Pushed before PowerJob was ever read: the first run.
    j.offer(&c, batch("s", 0, vec![line(T0, "a")]), T0).unwrap();
    poll(&mut j, &[rec(T0, "a"), rec(T0 + 1, "b")], T0 + 10_000);
    assert_eq!(j.attempts(), [Attempt { attempt: 1, from_line: 0 }]);
    // A retry: the follower's second run begins at its line 2, ours at line 2 too.
    j.follower_mut().observe(&facts(Status::Running, 2, None), T0 + 20_000, &TIMING);
    j.sync(&c, T0 + 20_000);
    j.offer(&c, batch("t", 0, vec![line(T0 + 30_000, "c")]), T0 + 30_000).unwrap();
    assert_eq!(j.attempts(), [Attempt { attempt: 1, from_line: 0 }, Attempt { attempt: 2, from_line: 2 }]);
    assert_eq!(j.attempt(), 2);
    assert_eq!(served(&j), [rec(T0, "a"), rec(T0 + 1, "b"), rec(T0 + 30_000, "c")]);
}

#[test]
fn the_line_limit_bounds_the_served_log() {
    let c = JoinConfig { max_lines: 2, ..cfg() };
    let mut j = Joined::default();
    let lines = (0..3).map(|k| line(T0 + k, &format!("l{k}"))).collect();
    let a = j.offer(&c, batch("s", 0, lines), T0).unwrap();
    assert_eq!((a.accepted, a.appended, j.line_count(), j.truncated()), (3, 2, 2, true));
}

#[test]
fn a_multi_line_record_is_one_unit_whichever_source_brings_it() {
    let c = cfg();
    let mut j = Joined::default();
    let trace = "boom\n\tat a.B(B.java:1)\n";
    let pushed = PushedLine { ts: T0, level: Level::Error, text: trace.into() };
    j.offer(&c, batch("s", 0, vec![pushed]), T0).unwrap();
    let mut file = render(T0, WORKER, Level::Error, trace, 480);
    file.push(rec(T0 + 1, "after"));
    poll(&mut j, &file, T0 + 10_000);
    assert_eq!(served(&j), file);
    assert_eq!(j.pushed_flags(0), [true, true, true, false]);
}

#[test]
fn a_shared_store_restores_it_exactly_and_copies_pair_again() {
    let c = cfg();
    let mut j = Joined::default();
    j.offer(&c, batch("s", 0, vec![line(T0, "a"), line(T0 + 5, "b")]), T0).unwrap();
    let file = vec![rec(T0, "a"), rec(T0 + 3, "own"), rec(T0 + 5, "b")];
    poll(&mut j, &file, T0 + 10_000);
    // Batch 2 waits for batch 1.
    j.offer(&c, batch("s", 2, vec![line(T0 + 20, "d")]), T0 + 10_000).unwrap();
    let trace = PushedLine { ts: T0 + 7, level: Level::Error, text: "boom\n\tat x\n".into() };
    j.offer(&c, Pushed::Unnumbered { worker: WORKER.into(), lines: vec![trace] }, T0 + 10_001).unwrap();
    let lines = served(&j);
    let (units, pushed) = (j.unit_flags(0), j.pushed_flags(0));
    assert_eq!(units, [true, true, true, true, false, false]);
    assert_eq!(pushed, [true, true, false, true, true, true]);
    let json = serde_json::to_string(&j.join_meta().unwrap()).unwrap();
    let meta: JoinMeta = serde_json::from_str(&json).unwrap();
    let mut r = Joined::restore(&c, &lines, &units, &pushed, &j.follower().shared_meta(), Some(meta));
    assert_eq!(served(&r), lines);
    assert_eq!((r.attempts(), r.push_stats(), r.pushed_flags(0)), (j.attempts(), j.push_stats(), pushed.clone()));
    assert_eq!(r.follower().line_count(), 1, "PowerJob's line only");
    // The next read brings PowerJob's copies of the pushed lines again: dropped again.
    poll(&mut r, &file, T0 + 11_000);
    assert_eq!(served(&r), lines);
    // A retry is still a duplicate, the waiting batch still waits.
    assert!(r.offer(&c, batch("s", 0, vec![line(T0, "a")]), T0 + 11_000).unwrap().duplicate);
    assert_eq!(r.next_deadline(&c), j.next_deadline(&c));
    assert!(r.tick(&c, T0 + 10_000 + c.push.gap_wait_ms));
    assert_eq!(served(&r)[6..], [rec(T0 + 20, "d")]);
    // Nothing pushed: the follower as it was.
    let mut p = Joined::default();
    poll(&mut p, &file, T0 + 10_000);
    let flags = p.unit_flags(0);
    let q = Joined::restore(&c, &served(&p), &flags, &p.pushed_flags(0), &p.follower().shared_meta(), None);
    assert!(!q.is_joined());
    assert_eq!(served(&q), file);
}

#[test]
fn a_log_pushed_to_costs_twice_its_text_plus_under_200_bytes_a_line() {
    let c = cfg();
    let mut j = Joined::default();
    let mut file = Vec::new();
    for b in 0..100u64 {
        let lines: Vec<PushedLine> =
            (0..100).map(|i| line(T0 + (b * 100 + i) as i64, &format!("{i:04} {}", "x".repeat(92)))).collect();
        file.extend(lines.iter().map(|l| rec(l.ts, &l.text)));
        j.offer(&c, batch("s", b, lines), T0).unwrap();
        if b % 20 == 19 {
            poll(&mut j, &file, T0 + 10_000 + b as i64);
        }
    }
    assert_eq!((j.line_count(), j.follower().line_count()), (10_000, 10_000));
    let text: u64 = file.iter().map(|l| l.len() as u64).sum();
    let per_line = (j.weight() as f64 - 2.0 * text as f64) / 10_000.0;
    eprintln!("pushed and polled: {per_line:.1} bytes a line besides twice the text");
    assert!(per_line <= 200.0, "{per_line:.1} bytes a line besides twice the text");
}

/// One scenario of the property test: a processor's log calls, which PowerJob has (but
/// for a few of unique text: its queue was full) and which the pusher sends in batches
/// that are lost (10 %), retried, duplicated, reordered and delayed past the poll.
#[derive(Debug, Clone)]
struct Scenario {
    /// Per call: (text index into a small alphabet, or a unique text; ms after the
    /// previous call; PowerJob lost it).
    calls: Vec<(u8, i64, bool)>,
    /// Lines per batch.
    batch: usize,
    /// Per batch: lost, sent twice, delay in steps.
    fates: Vec<(bool, bool, u8)>,
    /// Steps between polls.
    poll_every: u8,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let call = (0u8..8, 0i64..400, prop::bool::weighted(0.05));
    (prop::collection::vec(call, 1..120), 1usize..8, 1u8..6).prop_flat_map(|(calls, batch, poll_every)| {
        let batches = calls.len().div_ceil(batch);
        let fate = (prop::bool::weighted(0.1), prop::bool::weighted(0.1), 0u8..6);
        prop::collection::vec(fate, batches).prop_map(move |fates| Scenario {
            calls: calls.clone(),
            batch,
            fates,
            poll_every,
        })
    })
}

/// The text of call `k`: a small alphabet (equal lines in bursts) or, for a call
/// PowerJob loses, a unique text (two sources that lose different calls of one text
/// cannot be told apart: merge rule 7).
fn text_of(s: &Scenario, k: usize) -> String {
    let (t, _, lost) = s.calls[k];
    if lost || t >= 6 {
        format!("unique {k}")
    } else {
        format!("progress {t}")
    }
}

fn run(s: &Scenario) -> (Joined, BTreeMap<String, usize>) {
    let c = cfg();
    let mut at = T0;
    let times: Vec<i64> = s
        .calls
        .iter()
        .map(|&(_, gap, _)| {
            at += gap;
            at
        })
        .collect();
    let texts: Vec<String> = (0..s.calls.len()).map(|k| text_of(s, k)).collect();
    // Sends: (step it arrives at, batch), in arrival order.
    let mut sends: Vec<(usize, Pushed)> = Vec::new();
    for (b, chunk) in (0..s.calls.len()).collect::<Vec<_>>().chunks(s.batch).enumerate() {
        let (lost, twice, delay) = s.fates[b];
        let lines = chunk.iter().map(|&k| line(times[k], &texts[k])).collect();
        let is_final = b + 1 == s.fates.len();
        let body = Batch { source: "s".into(), seq: b as u64, worker: WORKER.into(), is_final, lines };
        // The final batch is never lost: the completion below waits for it otherwise.
        if !lost || is_final {
            sends.push((b + usize::from(delay), Pushed::Batch(body.clone())));
        }
        if twice {
            sends.push((b + usize::from(delay) + 3, Pushed::Batch(body)));
        }
    }
    sends.sort_by_key(|(step, _)| *step);
    // PowerJob's file at step n: the calls made by then (in time order), but the lost ones.
    let file_at = |step: usize| -> Vec<String> {
        let made = ((step + 1) * s.batch).min(s.calls.len());
        let mut recs: Vec<(i64, String)> =
            (0..made).filter(|&k| !s.calls[k].2).map(|k| (times[k], rec(times[k], &texts[k]))).collect();
        recs.sort();
        recs.into_iter().map(|(_, r)| r).collect()
    };
    let mut j = Joined::default();
    let mut served_before: Vec<String> = Vec::new();
    let steps = s.fates.len() + 10;
    let mut next = sends.into_iter().peekable();
    for step in 0..steps {
        let now = at + step as i64 * 500;
        while let Some((_, body)) = next.next_if(|(arrive, _)| *arrive <= step) {
            j.offer(&c, body, now).expect("the batches of one source");
        }
        if step % usize::from(s.poll_every) == 0 {
            poll(&mut j, &file_at(step), now);
        }
        j.tick(&c, now);
        let now_served = served(&j);
        assert!(now_served.starts_with(&served_before), "append-only");
        served_before = now_served;
    }
    poll(&mut j, &file_at(steps), at + 100_000);
    finish(&mut j, &file_at(steps), at + 100_000);
    // Served: what PowerJob has, and what the push applied. A batch is applied unless it
    // never got through, or came after a later batch waited `gap_wait_ms` (4 steps) for it.
    let first_arrival = |b: usize| {
        let (lost, twice, delay) = s.fates[b];
        let sent = b + usize::from(delay);
        if !lost || b + 1 == s.fates.len() {
            Some(sent)
        } else {
            twice.then_some(sent + 3)
        }
    };
    let applied = |b: usize| {
        first_arrival(b).is_some_and(|a| (b + 1..s.fates.len()).all(|l| first_arrival(l).is_none_or(|al| a < al + 5)))
    };
    let mut want = BTreeMap::new();
    for (k, t) in texts.iter().enumerate() {
        if !s.calls[k].2 || applied(k / s.batch) {
            *want.entry(t.clone()).or_default() += 1;
        }
    }
    (j, want)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every call served exactly once (counted per text), the served log append-only,
    /// pushed lines in the processor's order, complete at the end.
    #[test]
    fn every_line_is_served_once_whatever_happens_to_the_pushes(s in scenario()) {
        let (mut j, want) = run(&s);
        j.tick(&cfg(), i64::MAX / 2);
        prop_assert!(j.is_complete());
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        let lines = served(&j);
        let mut pushed_times = Vec::new();
        for (l, pushed) in lines.iter().zip(j.pushed_flags(0)) {
            let r = Record::parse(&[l], 480).expect("a record");
            *got.entry(r.content).or_default() += 1;
            if pushed {
                pushed_times.push(r.ts);
            }
        }
        prop_assert_eq!(got, want);
        // Batches apply in `seq` order and calls are in time order within the source.
        prop_assert!(pushed_times.windows(2).all(|w| w[0] <= w[1]), "pushed lines out of order");
    }
}
