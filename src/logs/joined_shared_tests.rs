//! The joined log through a store (`joined_shared.rs`): what one replica wrote, another
//! rebuilds, and goes on from without serving anything twice.

use crate::logs::follower::SharedMeta;
use crate::logs::joined::tests::{batch, cfg, line, poll, rec, served, T0};
use crate::logs::joined::{Joined, JOINED_META_VERSION};
use crate::logs::merge::{Level, PushedLine};

/// What a store holds of `j`: its lines, their tags and its meta.
fn stored(j: &Joined, consumed: &str) -> (Vec<String>, Vec<(bool, bool)>, SharedMeta) {
    (served(j), j.line_tags(0), j.shared_meta(consumed))
}

#[test]
fn a_log_nothing_was_pushed_to_is_stored_as_before() {
    let mut j = Joined::default();
    let file = vec![rec(T0, "a"), "\tat trace".to_owned(), rec(T0 + 1, "b")];
    poll(&mut j, &file, T0 + 10_000);
    let (lines, tags, meta) = stored(&j, "");
    assert_eq!(meta, j.follower().shared_meta());
    assert_eq!((meta.v, meta.join.is_none()), (1, true));
    assert_eq!(tags, [(true, false), (false, false), (true, false)]);
    let mut r = Joined::default();
    r.extend_shared(&cfg(), &lines, &tags, &meta);
    assert!(!r.is_joined());
    assert_eq!(served(&r), file);
}

#[test]
fn pushed_lines_are_tagged_per_record_and_source() {
    let mut j = Joined::default();
    poll(&mut j, &[rec(T0, "polled")], T0 + 10_000);
    let trace = PushedLine { ts: T0 + 2, level: Level::Error, text: "boom\n\tat x\n".into() };
    j.offer(&cfg(), batch("s", 0, vec![line(T0 + 1, "pushed"), trace]), T0 + 10_050).unwrap();
    assert_eq!(j.line_count(), 5, "{:?}", served(&j));
    let tags = j.line_tags(0);
    assert_eq!(tags, [(true, false), (true, true), (true, true), (false, true), (false, true)]);
    for from in 0..=5 {
        assert_eq!(j.line_tags(from), tags[from..].to_vec(), "from {from}");
    }
    let meta = j.shared_meta("3-1");
    let join = meta.join.as_ref().unwrap();
    assert_eq!((meta.v, join.consumed.as_str(), join.stats.lines), (JOINED_META_VERSION, "3-1", 4));
    assert_eq!(j.applied_seqs(), [("s".to_owned(), 1)].into());
}

#[test]
fn another_replica_rebuilds_the_joined_log_and_serves_nothing_twice() {
    let cfg = cfg();
    let mut j = Joined::default();
    // PowerJob first, then pushes: one a copy of a polled line, one batch ahead of a
    // missing one (it waits), then PowerJob's copies of pushed lines (dropped).
    let mut file = vec![rec(T0, "a"), rec(T0 + 10, "b")];
    poll(&mut j, &file, T0 + 10_000);
    j.offer(&cfg, batch("s", 0, vec![line(T0 + 10, "b"), line(T0 + 20, "c")]), T0 + 10_010).unwrap();
    j.offer(&cfg, batch("s", 2, vec![line(T0 + 40, "e")]), T0 + 10_020).unwrap();
    let first = stored(&j, "1-0");
    j.offer(&cfg, batch("s", 1, vec![line(T0 + 30, "d"), line(T0 + 35, "d2")]), T0 + 10_030).unwrap();
    file.extend([rec(T0 + 20, "c"), rec(T0 + 25, "own"), rec(T0 + 30, "d")]);
    poll(&mut j, &file, T0 + 11_000);
    let want = [rec(T0, "a"), rec(T0 + 10, "b"), rec(T0 + 20, "c"), rec(T0 + 30, "d"), rec(T0 + 35, "d2")];
    let want: Vec<String> = want.into_iter().chain([rec(T0 + 40, "e"), rec(T0 + 25, "own")]).collect();
    assert_eq!(served(&j), want);
    let (lines, tags, meta) = stored(&j, "2-0");

    // A replica that read the first state, then the rest; and one that reads it all.
    let mut r = Joined::default();
    r.extend_shared(&cfg, &first.0, &first.1, &first.2);
    assert_eq!((served(&r), r.push_stats()), (first.0.clone(), first.2.join.as_ref().map(|j| j.stats)));
    let n = first.0.len();
    r.extend_shared(&cfg, &lines[n..], &tags[n..], &meta);
    let mut whole = Joined::default();
    whole.extend_shared(&cfg, &lines, &tags, &meta);
    for r in [&mut r, &mut whole] {
        assert_eq!(served(r), want);
        assert_eq!((r.push_stats(), r.attempts(), r.is_complete()), (j.push_stats(), j.attempts(), j.is_complete()));
        assert_eq!(r.shared_meta("2-0"), meta, "stored again as it was read");
        assert_eq!(r.line_tags(0), tags);
        assert_eq!(r.applied_seqs(), j.applied_seqs());
        // Its next holder reads PowerJob's whole file (every record it dropped as a copy
        // included) and pushes go on, retries among them: nothing twice, nothing lost.
        file.push(rec(T0 + 35, "d2"));
        poll(r, &file, T0 + 12_000);
        let retry = r.offer(&cfg, batch("s", 1, vec![line(T0 + 30, "d")]), T0 + 12_010).unwrap();
        assert!(retry.duplicate);
        r.offer(&cfg, batch("s", 3, vec![line(T0 + 50, "f")]), T0 + 12_020).unwrap();
        file.pop();
        let mut expected = want.clone();
        expected.push(rec(T0 + 50, "f"));
        assert_eq!(served(r), expected);
        assert_eq!(r.push_stats().unwrap().lines, j.push_stats().unwrap().lines + 1);
    }
}
