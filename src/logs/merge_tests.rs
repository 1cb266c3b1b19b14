//! Unit and property tests of the merge (`merge.rs`).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// 2024-06-01 16:00:05.123 in Asia/Shanghai (+08:00).
const T0: i64 = 1_717_228_805_123;
const SHANGHAI: i32 = 480;
const WORKER: &str = "10.0.0.21:27777";
const CFG: MergeConfig = MergeConfig { window_ms: 1_000, retain_ms: DEFAULT_RETAIN_MS };
const PUSH: PushConfig = PushConfig { gap_wait_ms: 2_000, max_waiting: 8, max_sources: 4 };

fn line(ts: i64, text: &str) -> PushedLine {
    PushedLine { ts, level: Level::Info, text: text.into() }
}

fn record(ts: i64, text: &str) -> Record {
    Record::parse(&render(ts, WORKER, Level::Info, text, SHANGHAI), SHANGHAI).expect("a record")
}

fn batch(source: &str, seq: u64, texts: &[&str]) -> Batch {
    let lines = texts.iter().map(|t| line(T0, t)).collect();
    Batch { source: source.into(), seq, worker: WORKER.into(), is_final: false, lines }
}

fn seqs(batches: &[Batch]) -> Vec<u64> {
    batches.iter().map(|b| b.seq).collect()
}

#[test]
fn renders_a_pushed_line_as_powerjob_does() {
    assert_eq!(
        render(T0, WORKER, Level::Info, "Loading weights took 2.31 seconds", SHANGHAI),
        ["2024-06-01 16:00:05.123 [10.0.0.21:27777] INFO Loading weights took 2.31 seconds"]
    );
    // A text with a trace: continuation lines, and the empty line its final break makes.
    assert_eq!(
        render(T0, WORKER, Level::Error, "boom\r\n\tat a.B.c(B.java:1)\n", 0),
        ["2024-06-01 08:00:05.123 [10.0.0.21:27777] ERROR boom", "\tat a.B.c(B.java:1)", ""]
    );
    // Empty text, an odd worker, a time out of range: still one record line.
    assert_eq!(render(-5, "a]\nb", Level::Warn, "", 0), ["1970-01-01 00:00:00.000 [a__b] WARN "]);
    // A final lone `\r` goes with the record's line break, as in PowerJob's file.
    assert_eq!(render(0, "w", Level::Info, "x\r", 0), ["1970-01-01 00:00:00.000 [w] INFO x"]);
    assert_eq!(normalize("x\r"), "x");
    assert_eq!(record_time(&render(i64::MAX, WORKER, Level::Info, "x", 840)[0]).map(|_| ()), Some(()));
}

#[test]
fn reads_records_back() {
    let unit = ["2024-06-01 16:00:05.123 [10.0.0.21:27777] ERROR boom", "\tat x", ""];
    let r = Record::parse(&unit, SHANGHAI).unwrap();
    assert_eq!(r, Record { ts: T0, worker: WORKER.into(), level: Level::Error, content: "boom\n\tat x\n".into() });
    assert_eq!(Record::parse(&unit, 0).unwrap().ts, T0 + 8 * 3_600_000);
    assert_eq!(Record::parse(&["\tat x"], SHANGHAI), None);
    assert_eq!(Record::parse(&["2024-06-01 16:00:05.123 [w:1] TRACE x"], SHANGHAI), None);
    assert_eq!(Record::parse(&["2024-06-01 16:00:05.123 [w:1] info x"], SHANGHAI), None);
    assert_eq!(Record::parse::<&str>(&[], SHANGHAI), None);
    assert_eq!(Level::parse("warn"), Some(Level::Warn));
    assert_eq!(Level::parse("WARNING"), None);
}

#[test]
fn the_second_copy_is_dropped_whichever_comes_first() {
    let mut m = Merger::default();
    assert_eq!(m.offer_pushed(&CFG, &line(T0, "a")), Verdict::Serve);
    assert_eq!(m.offer_record(&CFG, &record(T0 + 3, "a")), Verdict::Copy);
    // A push that arrives after PowerJob's copy was served.
    assert_eq!(m.offer_record(&CFG, &record(T0 + 10, "b")), Verdict::Serve);
    assert_eq!(m.offer_pushed(&CFG, &line(T0 + 10, "b")), Verdict::Copy);
    // Never paired twice, never with the same source.
    assert_eq!(m.offer_record(&CFG, &record(T0 + 10, "b")), Verdict::Serve);
    assert_eq!(m.offer_pushed(&CFG, &line(T0 + 20, "c")), Verdict::Serve);
    assert_eq!(m.offer_pushed(&CFG, &line(T0 + 20, "c")), Verdict::Serve);
    // Another level, another text, or outside the window: another line.
    let warn = Record { level: Level::Warn, ..record(T0 + 20, "c") };
    assert_eq!(m.offer_record(&CFG, &warn), Verdict::Serve);
    assert_eq!(m.offer_record(&CFG, &record(T0 + 20, "c ")), Verdict::Serve);
    assert_eq!(m.offer_record(&CFG, &record(T0 + 20 + 1_001, "c")), Verdict::Serve);
    assert_eq!(m.offer_record(&CFG, &record(T0 + 20 + 1_000, "c")), Verdict::Copy);
    // A unit as the follower holds it; a unit that is no record is served.
    let unit = ["2024-06-01 16:00:06.000 [10.0.0.21:27777] WARN d", "  more", ""];
    assert_eq!(
        m.offer_pushed(&CFG, &PushedLine { ts: T0 + 877, level: Level::Warn, text: "d\n  more\n".into() }),
        Verdict::Serve
    );
    assert_eq!(m.offer_unit(&CFG, &unit, SHANGHAI), Verdict::Copy);
    assert_eq!(m.offer_unit(&CFG, &unit[1..], SHANGHAI), Verdict::Serve);
    // Line breaks compare as `\n`.
    assert_eq!(m.offer_pushed(&CFG, &line(T0, "x\r\ny\rz")), Verdict::Serve);
    assert_eq!(m.offer_record(&CFG, &record(T0, "x\ny\nz")), Verdict::Copy);
}

#[test]
fn equal_lines_pair_up_as_many_as_can() {
    let mut m = Merger::default();
    let cfg = MergeConfig { window_ms: 100, ..CFG };
    // Pushed at 0 and 150; PowerJob's copies arrive in the other order, the second with
    // its time 90 ms early. Pairing the first record with the nearest push would leave
    // the other record alone (150 ms from the push left): both must be copies.
    assert_eq!(m.offer_pushed(&cfg, &line(T0, "x")), Verdict::Serve);
    assert_eq!(m.offer_pushed(&cfg, &line(T0 + 150, "x")), Verdict::Serve);
    assert_eq!(m.offer_record(&cfg, &record(T0 + 60, "x")), Verdict::Copy);
    assert_eq!(m.offer_record(&cfg, &record(T0, "x")), Verdict::Copy);
    assert_eq!(m.offer_record(&cfg, &record(T0 + 75, "x")), Verdict::Serve);
    assert_eq!(m.len(), 5);
}

#[test]
fn dense_bursts_of_equal_lines_pair_up() {
    // A thousand equal lines in one millisecond, then 3 000 over 300 ms, then one a
    // millisecond for 3 s (longer than the reach of a pairing): every record pairs with
    // a push, however many copies share a time.
    let mut m = Merger::default();
    let burst = (0..1_000).map(|_| T0).chain((0..3_000).map(|i| T0 + 10_000 + i / 10));
    let burst = burst.chain((0..3_000).map(|i| T0 + 20_000 + i));
    let times: Vec<i64> = burst.collect();
    assert!(times.iter().all(|&t| m.offer_pushed(&CFG, &line(t, "")) == Verdict::Serve));
    assert!(times.iter().all(|&t| m.offer_record(&CFG, &record(t, "")) == Verdict::Copy));
    assert_eq!(m.offer_record(&CFG, &record(T0, "")), Verdict::Serve);
    assert_eq!(m.len(), 14_001);
}

#[test]
fn lines_past_the_retention_are_forgotten() {
    let mut m = Merger::default();
    let cfg = MergeConfig { retain_ms: 5_000, ..CFG };
    assert_eq!(m.offer_pushed(&cfg, &line(T0, "a")), Verdict::Serve);
    assert_eq!(m.offer_pushed(&cfg, &line(T0 + 5_000, "b")), Verdict::Serve);
    assert_eq!(m.offer_record(&cfg, &record(T0, "a")), Verdict::Copy);
    assert_eq!(m.offer_pushed(&cfg, &line(T0 + 5_001, "c")), Verdict::Serve);
    // Older than the newest line by more than the retention: served again.
    assert_eq!(m.offer_record(&cfg, &record(T0, "a")), Verdict::Serve);
    m.forget_before(T0 + 5_001);
    assert_eq!(m.len(), 1);
    assert_eq!(m.offer_record(&cfg, &record(T0 + 5_000, "b")), Verdict::Serve);
    m.forget_before(i64::MAX);
    assert!(m.is_empty());
}

#[test]
fn the_state_survives_serialisation() {
    let mut m = Merger::default();
    assert_eq!(m.offer_pushed(&CFG, &line(T0, "a")), Verdict::Serve);
    let mut m: Merger = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(m.offer_record(&CFG, &record(T0, "a")), Verdict::Copy);

    let mut p = PushState::default();
    assert!(p.offer(&PUSH, batch("s", 1, &["b"]), 0).unwrap().ready.is_empty());
    let mut p: PushState = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(seqs(&p.offer(&PUSH, batch("s", 0, &["a"]), 1).unwrap().ready), [0, 1]);
}

#[test]
fn batches_apply_once_and_in_order() {
    let mut p = PushState::default();
    let o = p.offer(&PUSH, batch("s", 0, &["a", "b"]), 0).unwrap();
    assert_eq!((o.accepted, o.duplicate, o.next_seq, seqs(&o.ready)), (2, false, 1, vec![0]));
    // A retry: a duplicate, nothing to apply.
    let o = p.offer(&PUSH, batch("s", 0, &["a", "b"]), 1).unwrap();
    assert_eq!((o.accepted, o.duplicate, o.next_seq, o.ready.len()), (0, true, 1, 0));
    // Ahead of a missing batch: waits; its retry is a duplicate too.
    let o = p.offer(&PUSH, batch("s", 2, &["d"]), 2).unwrap();
    assert_eq!((o.accepted, o.duplicate, o.next_seq, o.ready.len()), (1, false, 1, 0));
    assert!(p.offer(&PUSH, batch("s", 2, &["d"]), 3).unwrap().duplicate);
    assert_eq!(p.next_deadline(&PUSH), Some(2_002));
    // The missing one arrives: both apply, in order.
    let o = p.offer(&PUSH, batch("s", 1, &["c"]), 4).unwrap();
    assert_eq!((o.next_seq, seqs(&o.ready)), (3, vec![1, 2]));
    assert_eq!(p.next_deadline(&PUSH), None);
    // Sources are counted apart.
    assert_eq!(seqs(&p.offer(&PUSH, batch("t", 0, &[]), 5).unwrap().ready), [0]);
    assert_eq!((p.next_seq("s"), p.next_seq("t"), p.next_seq("u")), (3, 1, 0));
}

#[test]
fn a_gap_is_skipped_after_the_wait() {
    let mut p = PushState::default();
    p.offer(&PUSH, batch("s", 2, &["c"]), 1_000).unwrap();
    p.offer(&PUSH, batch("s", 5, &["f"]), 2_500).unwrap();
    assert_eq!(p.expire(&PUSH, 2_999), Expired::default());
    let e = p.expire(&PUSH, 3_000);
    assert_eq!((seqs(&e.ready), e.skipped, p.next_seq("s")), (vec![2], 2, 3));
    // The skipped batch arrives late: the poll filled it in; a duplicate.
    assert!(p.offer(&PUSH, batch("s", 0, &["a"]), 3_001).unwrap().duplicate);
    assert_eq!(p.next_deadline(&PUSH), Some(4_500));
    let e = p.expire(&PUSH, 10_000);
    assert_eq!((seqs(&e.ready), e.skipped, p.next_seq("s")), (vec![5], 2, 6));
}

#[test]
fn too_many_waiting_batches_skip_the_gap_at_once() {
    let mut p = PushState::default();
    for seq in 1..=8 {
        assert!(p.offer(&PUSH, batch("s", seq, &["x"]), 0).unwrap().ready.is_empty());
    }
    let o = p.offer(&PUSH, batch("s", 10, &["x"]), 0).unwrap();
    assert_eq!((seqs(&o.ready), o.skipped, o.next_seq), ((1..=8).collect(), 1, 9));
}

#[test]
fn a_final_batch_ends_its_source() {
    let mut p = PushState::default();
    assert!(!p.all_final());
    p.offer(&PUSH, batch("s", 0, &["a"]), 0).unwrap();
    let last = Batch { is_final: true, ..batch("s", 2, &["c"]) };
    p.offer(&PUSH, last.clone(), 0).unwrap();
    assert!(!p.all_final(), "batch 1 is still missing");
    assert_eq!(p.offer(&PUSH, batch("s", 3, &["d"]), 0), Err(PushError::AfterFinal { seq: 3, final_seq: 2 }));
    let other_end = Batch { is_final: true, ..batch("s", 1, &["b"]) };
    assert_eq!(p.offer(&PUSH, other_end, 0), Err(PushError::AfterFinal { seq: 1, final_seq: 2 }));
    assert_eq!(seqs(&p.offer(&PUSH, batch("s", 1, &["b"]), 0).unwrap().ready), [1, 2]);
    assert!(p.all_final());
    assert!(p.offer(&PUSH, last, 0).unwrap().duplicate, "a retry of the final batch");
    p.offer(&PUSH, batch("t", 0, &["a"]), 0).unwrap();
    assert!(!p.all_final());
    // An end before a batch already waiting.
    p.offer(&PUSH, batch("t", 5, &["f"]), 0).unwrap();
    let early_end = Batch { is_final: true, ..batch("t", 3, &["d"]) };
    assert_eq!(p.offer(&PUSH, early_end, 0), Err(PushError::AfterFinal { seq: 5, final_seq: 3 }));
}

#[test]
fn sources_and_numbers_are_bounded() {
    let mut p = PushState::default();
    for s in ["a", "b", "c", "d"] {
        p.offer(&PUSH, batch(s, 0, &[]), 0).unwrap();
    }
    assert_eq!(p.offer(&PUSH, batch("e", 0, &[]), 0), Err(PushError::TooManySources(4)));
    assert!(p.offer(&PUSH, batch("a", 0, &[]), 0).unwrap().duplicate);
    assert_eq!(p.offer(&PUSH, batch("a", MAX_SEQ + 1, &[]), 0), Err(PushError::SeqOutOfRange));
}

/// The most pairs (push, record) at most `window` apart, by augmenting paths (Kuhn).
fn max_matching(pushes: &[i64], records: &[i64], window: i64) -> usize {
    fn augment(p: usize, pushes: &[i64], records: &[i64], w: i64, seen: &mut [bool], to: &mut [Option<usize>]) -> bool {
        for r in 0..records.len() {
            if !seen[r] && (pushes[p] - records[r]).abs() <= w {
                seen[r] = true;
                if to[r].is_none_or(|q| augment(q, pushes, records, w, seen, to)) {
                    to[r] = Some(p);
                    return true;
                }
            }
        }
        false
    }
    let mut to = vec![None; records.len()];
    (0..pushes.len()).filter(|&p| augment(p, pushes, records, window, &mut vec![false; records.len()], &mut to)).count()
}

/// Texts of the simulated processor: few, so that equal lines repeat.
const TEXTS: [&str; 5] = ["Loading safetensors checkpoint shards", "", ".", "Traceback\n\tat x\n", "进度 ✓"];

/// A processor's log calls: groups of 1–3 equal lines 1 ms apart (bursts), the groups
/// 0 ms to 4 s apart.
fn processor() -> impl Strategy<Value = Vec<(i64, Level, &'static str)>> {
    let gap = prop_oneof![Just(0i64), 1..5i64, 200..700i64, 1_500..4_000i64];
    proptest::collection::vec((gap, 1..4usize, 0..TEXTS.len(), any::<bool>()), 1..20).prop_map(|groups| {
        let mut t = T0;
        let mut calls = Vec::new();
        for (gap, n, text, warn) in groups {
            t += gap;
            for _ in 0..n {
                calls.push((t, if warn { Level::Warn } else { Level::Info }, TEXTS[text]));
                t += 1;
            }
        }
        calls
    })
}

/// What becomes of a pushed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Once,
    /// Sent, then retried.
    Twice,
    /// Lost (every retry failed).
    Dropped,
}

/// Per call: push clock skew, record clock skew, record lost by PowerJob, record
/// arrival delay, batch ends here, the fate and delay of the batch ending here.
type CallPlan = (i64, i64, bool, i64, bool, Fate, i64);

fn scenario() -> impl Strategy<Value = (Vec<(i64, Level, &'static str)>, Vec<CallPlan>)> {
    processor().prop_flat_map(|calls| {
        let fate = prop_oneof![7 => Just(Fate::Once), 2 => Just(Fate::Twice), 1 => Just(Fate::Dropped)];
        let delay = prop_oneof![6 => 0..50i64, 3 => 100..3_000i64, 1 => 20_000..40_000i64];
        let plan = (0..=200i64, -200..=200i64, proptest::bool::weighted(0.1), 0..15_000i64, any::<bool>(), fate, delay);
        let n = calls.len();
        (Just(calls), proptest::collection::vec(plan, n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A pushed line reads back as the record PowerJob would have written.
    #[test]
    fn rendering_reads_back(
        ts in 0..MAX_TS, offset in -720..=840i32, level in 0..6usize,
        worker in "[0-9a-z.:-]{1,24}", text in "[a-z ✓\t\r\n]{0,16}",
    ) {
        let level = Level::ALL[level];
        let lines = render(ts, &worker, level, &text, offset);
        prop_assert_eq!(super::super::units::segment(&lines).len(), 1, "one unit: {:?}", lines);
        let r = Record::parse(&lines, offset).unwrap();
        prop_assert_eq!(r, Record { ts, worker, level, content: normalize(&text).into_owned() });
    }

    /// Offered in any order, copies of one text are dropped exactly as often as an
    /// offline maximum matching pairs them.
    #[test]
    fn drops_as_many_copies_as_pair_up(
        copies in proptest::collection::vec((0..2_000i64, any::<bool>()), 0..40)
            .prop_flat_map(|c| Just(c).prop_shuffle()),
    ) {
        let cfg = MergeConfig { window_ms: 100, ..CFG };
        let mut m = Merger::default();
        let served = copies.iter().filter(|&&(t, pushed)| {
            let origin = if pushed { Origin::Push } else { Origin::Poll };
            m.offer(&cfg, origin, T0 + t, Level::Info, "x") == Verdict::Serve
        }).count();
        let p: Vec<i64> = copies.iter().filter(|c| c.1).map(|c| c.0).collect();
        let r: Vec<i64> = copies.iter().filter(|c| !c.1).map(|c| c.0).collect();
        prop_assert_eq!(served, copies.len() - max_matching(&p, &r, 100));
    }

    /// End to end: a processor's lines pushed (batches retried, duplicated, reordered,
    /// lost, delayed past the poll) and polled from PowerJob (records late, lost, with
    /// clock skew): every line is served once, pushed lines in the processor's order.
    #[test]
    fn every_line_is_served_once((calls, plan) in scenario()) {
        // Batches: cut after a call the plan says, or after 5 calls.
        let mut batches: Vec<Vec<usize>> = vec![vec![]];
        for (i, p) in plan.iter().enumerate() {
            batches.last_mut().unwrap().push(i);
            if (p.4 || batches.last().unwrap().len() == 5) && i + 1 < calls.len() {
                batches.push(vec![]);
            }
        }
        // Events: (time, kind, batch): kind 0 a push, 1 a poll.
        let mut events = Vec::new();
        for (seq, ids) in batches.iter().enumerate() {
            let last = *ids.last().unwrap();
            let (fate, delay) = (plan[last].5, plan[last].6);
            let sent = calls[last].0 + 100 + delay;
            match fate {
                Fate::Once => events.push((sent, 0, seq)),
                Fate::Twice => events.extend([(sent, 0, seq), (sent + 700, 0, seq)]),
                Fate::Dropped => {}
            }
        }
        let end = calls.last().unwrap().0 + 60_000;
        events.extend((0..).map(|k| (T0 + k * 5_000, 1, 0)).take_while(|e| e.0 <= end));
        events.push((i64::MAX / 2, 1, 0));
        events.sort_unstable();

        let mut state = PushState::default();
        let mut merger = Merger::default();
        let mut served: Vec<(usize, Origin)> = Vec::new();
        let (mut pushed, mut polled) = (BTreeSet::new(), BTreeSet::new());
        let mut applied = Vec::new();
        let mut apply = |ready: Vec<Batch>, merger: &mut Merger, served: &mut Vec<(usize, Origin)>| {
            for b in ready {
                applied.push(b.seq);
                for (l, &id) in b.lines.iter().zip(&batches[b.seq as usize]) {
                    pushed.insert(id);
                    if merger.offer_pushed(&CFG, l) == Verdict::Serve {
                        served.push((id, Origin::Push));
                    }
                }
            }
        };
        for (now, kind, seq) in events {
            apply(state.expire(&PUSH, now).ready, &mut merger, &mut served);
            if kind == 0 {
                let lines = batches[seq].iter()
                    .map(|&i| PushedLine { ts: calls[i].0 + plan[i].0, level: calls[i].1, text: calls[i].2.into() })
                    .collect();
                let b = Batch { source: "w/1".into(), seq: seq as u64, worker: WORKER.into(), is_final: false, lines };
                apply(state.offer(&PUSH, b, now).unwrap().ready, &mut merger, &mut served);
                continue;
            }
            // A poll: the records that reached PowerJob and were not seen before, in
            // PowerJob's order (by time), each read back from its rendered lines.
            let mut new: Vec<usize> = (0..calls.len())
                .filter(|&i| !plan[i].2 && calls[i].0 + plan[i].3 <= now && !polled.contains(&i))
                .collect();
            new.sort_by_key(|&i| (calls[i].0 + plan[i].1, i));
            for i in new {
                polled.insert(i);
                let (ts, level, text) = calls[i];
                let unit = render(ts + plan[i].1, WORKER, level, text, SHANGHAI);
                let rec = Record::parse(&unit, SHANGHAI).unwrap();
                if merger.offer_record(&CFG, &rec) == Verdict::Serve {
                    served.push((i, Origin::Poll));
                }
            }
        }

        prop_assert!(applied.windows(2).all(|w| w[0] < w[1]), "batches in seq order: {:?}", applied);
        let pushed_order: Vec<usize> = served.iter().filter(|s| s.1 == Origin::Push).map(|s| s.0).collect();
        prop_assert!(pushed_order.windows(2).all(|w| w[0] < w[1]), "pushed lines in order: {:?}", pushed_order);
        // Per text: served once per call some source delivered. Equal lines are told
        // apart only by time: when the sources lost different calls of one text within
        // the window, their copies pair up (the limit in the module docs), so the count
        // is checked against an offline maximum matching, and exactly when that pairs
        // only copies of one call.
        let mut by_key: BTreeMap<(Level, &str), Vec<usize>> = BTreeMap::new();
        for (i, c) in calls.iter().enumerate() {
            by_key.entry((c.1, c.2)).or_default().push(i);
        }
        for (key, ids) in by_key {
            let delivered = ids.iter().filter(|i| pushed.contains(i) || polled.contains(i)).count();
            let both = ids.iter().filter(|i| pushed.contains(i) && polled.contains(i)).count();
            let n = served.iter().filter(|s| ids.contains(&s.0)).count();
            let p: Vec<i64> = ids.iter().filter(|i| pushed.contains(i)).map(|&i| calls[i].0 + plan[i].0).collect();
            let r: Vec<i64> = ids.iter().filter(|i| polled.contains(i)).map(|&i| calls[i].0 + plan[i].1).collect();
            let pairs = max_matching(&p, &r, CFG.window_ms);
            prop_assert!(n <= delivered, "{:?}: {} served, {} delivered", key, n, delivered);
            prop_assert_eq!(n, p.len() + r.len() - pairs, "{:?}", key);
            if pairs == both {
                prop_assert_eq!(n, delivered, "{:?}", key);
            }
        }
    }
}

/// Per batch: how often it arrives (0: lost), and when (ms after the start).
fn deliveries() -> impl Strategy<Value = Vec<(usize, i64, i64)>> {
    let copies = prop_oneof![1 => Just(0usize), 6 => Just(1usize), 3 => Just(2usize)];
    proptest::collection::vec((copies, 0..10_000i64, 0..3_000i64), 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Batches lost, duplicated and reordered: each applies at most once, in `seq` order,
    /// none waits longer than `gap_wait_ms`, and every one that arrived before its gap
    /// was skipped applies.
    #[test]
    fn batches_apply_once_in_order_and_wait_a_bounded_time(plan in deliveries()) {
        let cfg = PushConfig { max_waiting: 3, ..PUSH };
        let last = plan.len() as u64 - 1;
        let mut arrivals: Vec<(i64, u64)> = Vec::new();
        for (seq, &(copies, at, retry)) in plan.iter().enumerate() {
            arrivals.extend([(at, seq as u64), (at + retry, seq as u64)].into_iter().take(copies));
        }
        arrivals.sort_unstable();
        let mut state = PushState::default();
        let mut first_seen: BTreeMap<u64, (i64, bool)> = BTreeMap::new();
        let mut applied: Vec<(u64, i64)> = Vec::new();
        for (at, seq) in arrivals.iter().copied().chain([(i64::MAX / 2, u64::MAX)]) {
            // Timers fire on time: every deadline before this arrival.
            while let Some(deadline) = state.next_deadline(&cfg).filter(|&d| d <= at) {
                let e = state.expire(&cfg, deadline);
                prop_assert!(!e.ready.is_empty());
                applied.extend(e.ready.iter().map(|b| (b.seq, deadline)));
            }
            if seq == u64::MAX {
                break;
            }
            let batch = Batch { is_final: seq == last, ..batch("s", seq, &["x"]) };
            let o = state.offer(&cfg, batch, at).unwrap();
            first_seen.entry(seq).or_insert((at, o.duplicate));
            applied.extend(o.ready.iter().map(|b| (b.seq, at)));
            prop_assert_eq!(o.next_seq, state.next_seq("s"));
        }
        prop_assert!(applied.windows(2).all(|w| w[0].0 < w[1].0), "in order, once: {:?}", applied);
        for &(seq, when) in &applied {
            let (arrived, dup) = first_seen[&seq];
            prop_assert!(!dup && when - arrived <= cfg.gap_wait_ms, "batch {} waited {}", seq, when - arrived);
        }
        let applied: BTreeSet<u64> = applied.iter().map(|a| a.0).collect();
        for (seq, &(_, dup)) in &first_seen {
            prop_assert_eq!(applied.contains(seq), !dup, "batch {}", seq);
        }
        prop_assert_eq!(state.all_final(), first_seen.get(&last).is_some_and(|f| !f.1));
        prop_assert_eq!(state.next_deadline(&cfg), None);
    }
}

#[test]
fn the_bytes_held_are_counted_as_copies_come_and_go() {
    let mut m = Merger::default();
    assert_eq!(m.approx_bytes(), 0);
    for k in 0..100 {
        m.offer_pushed(&CFG, &line(T0 + k, &format!("line {k:03}")));
    }
    // Per text: its entry (no copy of the text) and one copy.
    assert_eq!(m.approx_bytes(), 100 * (KEY_OVERHEAD + COPIES_BYTES) as u64);
    m.offer_record(&CFG, &record(T0 + 1, "line 001"));
    assert_eq!(m.approx_bytes(), 100 * (KEY_OVERHEAD + COPIES_BYTES) as u64 + COPIES_BYTES as u64);
    m.forget_before(T0 + 50);
    assert_eq!(m.approx_bytes(), 50 * (KEY_OVERHEAD + COPIES_BYTES) as u64);
    m.forget_before(i64::MAX);
    assert_eq!((m.approx_bytes(), m.is_empty()), (0, true));
}
