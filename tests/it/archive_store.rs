//! The archive's store layer (`powertail::archive`) on both backends, through the same
//! test bodies: embedded SQLite in a temporary file, and a real PostgreSQL started by the
//! harness ([`crate::common::postgres::PgServer`]; those tests are ignored unless run with
//! `--include-ignored`, as CI does). Every answer is compared exactly with what the test
//! put in, or with a brute-force scan of the same data in Rust.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use powertail::archive::{
    Archive, ArchiveError, ArchivedLog, Backend, RunSummary, RunsQuery, SearchHit, SearchQuery, StartupOutcome,
    ACQUIRE_TIMEOUT, MIN_QUERY_CHARS,
};
use powertail::logs::{Attempt, Status};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::common::cluster::free_port;
use crate::common::postgres::PgServer;
use crate::common::wait_until;

/// A backend under test and what keeps it alive.
struct Db {
    archive: Archive,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgServer>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("archive.db").display());
    let archive = Archive::open(&url, 4).await.expect("open sqlite");
    assert_eq!(archive.backend(), Backend::Sqlite);
    Db { archive, _dir: Some(dir), pg: None }
}

async fn postgres() -> Db {
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let archive = Archive::open(&pg.url(), 4).await.expect("open postgres");
    assert_eq!(archive.backend(), Backend::Postgres);
    Db { archive, _dir: None, pg: Some(pg) }
}

/// One `#[tokio::test]` per backend for each scenario `fn name(&mut Db)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut db = super::sqlite().await;
                super::$name(&mut db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs postgresql (apt-get install postgresql)"]
            async fn postgres() {
                let mut db = super::postgres().await;
                super::$name(&mut db).await;
            }
        }
    )*};
}

on_both!(
    round_trip_is_exact,
    a_second_put_replaces_the_run,
    search_is_exact_against_a_brute_force_scan,
    runs_and_stats_are_exact,
    retention_deletes_in_bounded_batches,
    bad_queries_are_refused,
);

fn log(instance_id: i64, lines: Vec<String>) -> ArchivedLog {
    ArchivedLog {
        instance_id,
        epoch: format!("e{instance_id}"),
        job_id: Some(7),
        job_name: Some("vllm-serve".to_owned()),
        status: Status::Succeed,
        started_at: Some(1_764_900_000_000),
        finished_at: Some(1_764_900_000_000 + instance_id),
        archived_at: 1_764_990_000_000,
        lines,
        attempts: vec![Attempt { attempt: 1, from_line: 0 }],
        upstream_lost: false,
        truncated: false,
        startup: None,
    }
}

async fn round_trip_is_exact(db: &mut Db) {
    let a = &db.archive;
    let mut full = log(
        1_000_000_000_000_123,
        vec![
            "2026-12-05 10:00:00.000 [w] INFO plain".to_owned(),
            "tab\there, quote ' and \" and backslash \\ and 100% _under_".to_owned(),
            String::new(),
            "unicode: héllo Ünïcode 日本語 🚀".to_owned(),
            "   leading and trailing spaces   ".to_owned(),
        ],
    );
    full.attempts = vec![Attempt { attempt: 1, from_line: 0 }, Attempt { attempt: 2, from_line: 3 }];
    full.status = Status::Failed;
    full.upstream_lost = true;
    full.truncated = true;
    full.startup = Some(StartupOutcome {
        phase: "failed".to_owned(),
        ready_after_ms: None,
        cause: Some("oom".to_owned()),
        cause_line: Some(3),
    });
    a.put(&full).await.unwrap();
    let mut bare = log(2, vec![]);
    bare.job_id = None;
    bare.job_name = None;
    bare.started_at = None;
    bare.finished_at = None;
    bare.attempts = vec![];
    bare.status = Status::Unknown;
    a.put(&bare).await.unwrap();
    let mut ready = log(3, (0..12_345).map(|i| format!("line {i} of a long log")).collect());
    ready.startup =
        Some(StartupOutcome { phase: "ready".to_owned(), ready_after_ms: Some(41_250), cause: None, cause_line: None });
    a.put(&ready).await.unwrap();

    assert_eq!(a.get(full.instance_id).await.unwrap().as_ref(), Some(&full));
    assert_eq!(a.get(2).await.unwrap().as_ref(), Some(&bare));
    assert_eq!(a.get(3).await.unwrap().as_ref(), Some(&ready));
    assert_eq!(a.get(4).await.unwrap(), None);
    assert_eq!(a.has(full.instance_id).await.unwrap().as_deref(), Some("e1000000000000123"));
    assert_eq!(a.has(4).await.unwrap(), None);
    a.ping().await.unwrap();
    let usage = a.usage().await.unwrap();
    assert_eq!((usage.runs, usage.lines), (3, 5 + 12_345));
    assert!(usage.bytes > 12_345 * 20, "{usage:?}");

    // The attempt of each line, in search hits.
    let hits = a.search(&query("unicode")).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].attempt, hits[0].line, hits[0].instance_id), (2, 3, full.instance_id));

    // Concurrent puts (several pooled connections) each keep their lines exact.
    let logs: Vec<ArchivedLog> =
        (100..116).map(|id| log(id, (0..300).map(|i| format!("run {id} line {i}")).collect())).collect();
    let puts = logs.iter().map(|l| a.put(l));
    for result in futures::future::join_all(puts).await {
        result.unwrap();
    }
    for l in &logs {
        assert_eq!(a.get(l.instance_id).await.unwrap().as_ref(), Some(l));
    }
}

async fn a_second_put_replaces_the_run(db: &mut Db) {
    let a = &db.archive;
    a.put(&log(10, (0..500).map(|i| format!("first archive {i}")).collect())).await.unwrap();
    a.put(&log(11, vec!["a neighbour stays".to_owned()])).await.unwrap();
    let mut retry = log(10, (0..30).map(|i| format!("after the retry {i}")).collect());
    retry.epoch = "e10-retried".to_owned();
    retry.status = Status::Failed;
    retry.attempts = vec![Attempt { attempt: 1, from_line: 0 }, Attempt { attempt: 2, from_line: 20 }];
    a.put(&retry).await.unwrap();
    assert_eq!(a.get(10).await.unwrap().as_ref(), Some(&retry));
    assert_eq!(a.has(10).await.unwrap().as_deref(), Some("e10-retried"));
    assert!(a.search(&query("first archive")).await.unwrap().hits.is_empty());
    assert_eq!(a.search(&query("after the retry")).await.unwrap().hits.len(), 30);
    assert_eq!(a.search(&query("neighbour")).await.unwrap().hits.len(), 1);
    let usage = a.usage().await.unwrap();
    assert_eq!((usage.runs, usage.lines), (2, 31));
}

fn query(q: &str) -> SearchQuery {
    SearchQuery { q: q.to_owned(), limit: 500, ..SearchQuery::default() }
}

/// What the random lines are made of: words in both cases (ASCII, Latin, Cyrillic), the
/// SQL wildcards and the escape character, quotes, CJK, an emoji.
const ALPHABET: &[&str] = &[
    "CUDA",
    "cuda",
    "Out of Memory",
    "out of memory",
    "ready",
    "READY",
    "50%",
    "a_b",
    "a%b",
    "\\",
    "'",
    "\"",
    "été",
    "ÉTÉ",
    "Über",
    "über",
    "жар",
    "ЖАР",
    "日本",
    "🚀",
    " ",
    " ",
    "0",
    "1",
    ":",
    ".",
    "x",
    "_",
    "%",
];

fn random_text(rng: &mut StdRng, len: usize) -> String {
    (0..len).map(|_| *ALPHABET.choose(rng).unwrap()).collect()
}

/// Random runs: jobs, statuses, causes, finish times with ties, lines of random text.
fn random_runs(rng: &mut StdRng, runs: usize) -> Vec<ArchivedLog> {
    let jobs = ["alpha", "beta", "gamma"];
    let causes = [None, Some("oom"), Some("port_in_use")];
    (0..runs)
        .map(|i| {
            let n = rng.gen_range(0..120);
            let mut l = log(
                5_000 + i as i64 * 37,
                (0..n)
                    .map(|_| {
                        let len = rng.gen_range(0..12);
                        random_text(rng, len)
                    })
                    .collect(),
            );
            l.job_name = Some((*jobs.choose(rng).unwrap()).to_owned());
            l.status = *[Status::Succeed, Status::Failed, Status::Stopped].choose(rng).unwrap();
            // Few distinct times: many runs share one, so the instance id breaks ties.
            l.finished_at = if rng.gen_bool(0.1) { None } else { Some(1_000 * rng.gen_range(0..8)) };
            l.archived_at = 3_500;
            let cause = *causes.choose(rng).unwrap();
            l.startup = Some(StartupOutcome {
                phase: if cause.is_some() { "failed" } else { "ready" }.to_owned(),
                ready_after_ms: if cause.is_some() { None } else { Some(rng.gen_range(1_000..90_000)) },
                cause: cause.map(str::to_owned),
                cause_line: cause.map(|_| 0),
            });
            if n > 10 {
                l.attempts.push(Attempt { attempt: 2, from_line: n / 2 });
            }
            l
        })
        .collect()
}

/// Every hit of `q` in `runs`, in the archive's order, by scanning them.
fn brute_force(runs: &[ArchivedLog], q: &SearchQuery) -> Vec<SearchHit> {
    let needle = q.q.to_lowercase();
    let mut matching: Vec<&ArchivedLog> = runs
        .iter()
        .filter(|r| q.job.as_ref().is_none_or(|j| r.job_name.as_ref() == Some(j)))
        .filter(|r| q.status.is_none_or(|s| r.status == s))
        .filter(|r| q.cause.as_ref().is_none_or(|c| r.startup.as_ref().and_then(|s| s.cause.as_ref()) == Some(c)))
        .filter(|r| q.since.is_none_or(|s| r.sort_at() >= s))
        .filter(|r| q.until.is_none_or(|u| r.sort_at() < u))
        .collect();
    matching.sort_by_key(|r| (std::cmp::Reverse(r.sort_at()), r.instance_id));
    let mut hits = Vec::new();
    for r in matching {
        for (i, text) in r.lines.iter().enumerate() {
            if text.to_lowercase().contains(&needle) {
                hits.push(SearchHit {
                    instance_id: r.instance_id,
                    attempt: r.attempts.iter().rev().find(|a| a.from_line <= i as u64).map_or(1, |a| a.attempt),
                    line: i as u64,
                    text: text.clone(),
                    job_name: r.job_name.clone(),
                    finished_at: r.finished_at,
                });
            }
        }
    }
    hits
}

/// Every page of `q`, `limit` hits at a time, following the cursors.
async fn all_pages(a: &Archive, q: &SearchQuery) -> Vec<SearchHit> {
    let mut q = q.clone();
    let mut hits = Vec::new();
    for _ in 0..10_000 {
        let page = a.search(&q).await.unwrap_or_else(|e| panic!("{q:?}: {e}"));
        assert!(page.hits.len() <= q.limit as usize);
        hits.extend(page.hits);
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => return hits,
        }
    }
    panic!("more than 10 000 pages for {q:?}")
}

async fn search_is_exact_against_a_brute_force_scan(db: &mut Db) {
    let a = &db.archive;
    let mut rng = StdRng::seed_from_u64(20);
    let runs = random_runs(&mut rng, 60);
    for r in &runs {
        a.put(r).await.unwrap();
    }
    let mut queries: Vec<String> =
        ["%_%", "\\\\\\", "10%", "a_b", "ÉÜa", "жЖ ", "日本🚀", "🚀 a", "'\"a", "nothing like this"]
            .map(str::to_owned)
            .to_vec();
    // Substrings of real lines, with their case flipped at random.
    while queries.len() < 40 {
        let r = runs.choose(&mut rng).unwrap();
        let Some(line) = r.lines.choose(&mut rng) else { continue };
        let chars: Vec<char> = line.chars().collect();
        if chars.len() < MIN_QUERY_CHARS {
            continue;
        }
        let len = rng.gen_range(MIN_QUERY_CHARS..=chars.len().min(6));
        let start = rng.gen_range(0..=chars.len() - len);
        let q: String = chars[start..start + len]
            .iter()
            .map(|c| if rng.gen_bool(0.5) { c.to_uppercase().next().unwrap() } else { *c })
            .collect();
        queries.push(q);
    }
    let mut total = 0;
    for (i, text) in queries.iter().enumerate() {
        let mut q = query(text);
        q.limit = [3, 7, 50][i % 3];
        match i % 5 {
            1 => q.job = Some("beta".to_owned()),
            2 => q.status = Some(Status::Failed),
            3 => q.cause = Some("oom".to_owned()),
            4 => (q.since, q.until) = (Some(2_000), Some(5_000)),
            _ => {}
        }
        let expected = brute_force(&runs, &q);
        total += expected.len();
        // Both plans: from the index (few matches), walking the runs (many).
        for (plan, cap) in [("index", i64::MAX), ("walk", 0)] {
            let got = all_pages(&a.clone().with_search_plan_cap(cap), &q).await;
            assert_eq!(got.len(), expected.len(), "{plan} plan: hits for {q:?}");
            assert_eq!(got, expected, "{plan} plan: hits for {q:?}");
        }
    }
    assert!(total > 300, "the queries found too little to prove anything: {total}");
}

async fn runs_and_stats_are_exact(db: &mut Db) {
    let a = &db.archive;
    let mut rng = StdRng::seed_from_u64(21);
    let runs = random_runs(&mut rng, 80);
    for r in &runs {
        a.put(r).await.unwrap();
    }
    for (job, since, until) in [("alpha", None, None), ("beta", Some(3_000), None), ("gamma", Some(1_000), Some(6_000))]
    {
        let mut expected: Vec<&ArchivedLog> = runs
            .iter()
            .filter(|r| r.job_name.as_deref() == Some(job))
            .filter(|r| since.is_none_or(|s| r.sort_at() >= s) && until.is_none_or(|u| r.sort_at() < u))
            .collect();
        expected.sort_by_key(|r| (std::cmp::Reverse(r.sort_at()), r.instance_id));
        let expected: Vec<RunSummary> = expected
            .into_iter()
            .map(|r| {
                let s = r.startup.clone().unwrap();
                RunSummary {
                    instance_id: r.instance_id,
                    attempt: r.attempts.last().unwrap().attempt,
                    status: r.status,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                    phase: Some(s.phase),
                    ready_after_ms: s.ready_after_ms,
                    cause: s.cause,
                    cause_line: s.cause_line,
                    lines: r.lines.len() as u64,
                }
            })
            .collect();
        let mut q = RunsQuery { job: job.to_owned(), since, until, limit: 4, cursor: None };
        let mut got = Vec::new();
        for _ in 0..1_000 {
            let page = a.runs(&q).await.unwrap();
            assert!(page.runs.len() <= 4);
            got.extend(page.runs);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        assert!(expected.len() >= 5, "too few runs of {job} to page through");
        assert_eq!(got, expected, "runs of {job} since {since:?} until {until:?}");

        // Stats (`since` only).
        let counted: Vec<&ArchivedLog> = runs
            .iter()
            .filter(|r| r.job_name.as_deref() == Some(job) && since.is_none_or(|s| r.sort_at() >= s))
            .collect();
        let mut by_outcome = BTreeMap::new();
        let mut by_cause = BTreeMap::new();
        let mut ready: Vec<i64> = Vec::new();
        for r in &counted {
            let s = r.startup.as_ref().unwrap();
            *by_outcome.entry(s.phase.clone()).or_insert(0u64) += 1;
            if let Some(c) = &s.cause {
                *by_cause.entry(c.clone()).or_insert(0u64) += 1;
            }
            ready.extend(s.ready_after_ms);
        }
        ready.sort_unstable();
        let rank = |p: f64| ready[((p * ready.len() as f64).ceil() as usize).max(1) - 1];
        let stats = a.stats(job, since).await.unwrap();
        assert_eq!(stats.job, job);
        assert_eq!(stats.since, since);
        assert_eq!(stats.runs, counted.len() as u64);
        assert_eq!(stats.by_outcome, by_outcome);
        assert_eq!(stats.by_cause, by_cause);
        assert_eq!(stats.ready_p50_ms, Some(rank(0.5)), "{ready:?}");
        assert_eq!(stats.ready_p95_ms, Some(rank(0.95)), "{ready:?}");
    }
    let none = a.stats("no-such-job", None).await.unwrap();
    assert_eq!((none.runs, none.ready_p50_ms, none.ready_p95_ms), (0, None, None));
    assert!(none.by_outcome.is_empty() && none.by_cause.is_empty());
    let page = a.runs(&RunsQuery { job: "no-such-job".to_owned(), limit: 10, ..RunsQuery::default() }).await.unwrap();
    assert!(page.runs.is_empty() && page.next_cursor.is_none());
}

async fn retention_deletes_in_bounded_batches(db: &mut Db) {
    let a = &db.archive;
    for id in 0..20 {
        let mut l = log(id, (0..50).map(|i| format!("retained {id}:{i}")).collect());
        l.finished_at = Some(1_000 * id);
        a.put(&l).await.unwrap();
    }
    let mut calls = Vec::new();
    for _ in 0..100 {
        let n = a.purge_finished_before(12_000, 5).await.unwrap();
        calls.push(n);
        if n < 5 {
            break;
        }
    }
    assert_eq!(calls, [5, 5, 2], "12 runs finished before the cutoff, at most 5 a call");
    for id in 0..20 {
        assert_eq!(a.has(id).await.unwrap().is_some(), id >= 12, "run {id}");
    }
    assert!(a.search(&query("retained 3:")).await.unwrap().hits.is_empty());
    assert_eq!(a.search(&query("retained 13:")).await.unwrap().hits.len(), 50);
    let usage = a.usage().await.unwrap();
    assert_eq!((usage.runs, usage.lines), (8, 8 * 50));
    assert_eq!(a.purge_finished_before(i64::MAX, 0).await.unwrap(), 0);
    // Ids freed by the purge are reused without mixing runs up.
    let again = log(99, (0..70).map(|i| format!("after the purge {i}")).collect());
    a.put(&again).await.unwrap();
    assert_eq!(a.get(99).await.unwrap().as_ref(), Some(&again));
    assert_eq!(a.get(13).await.unwrap().unwrap().lines.len(), 50);
}

async fn bad_queries_are_refused(db: &mut Db) {
    let a = &db.archive;
    a.put(&log(1, vec!["abc".to_owned()])).await.unwrap();
    for q in ["", "ab", "日本"] {
        assert!(matches!(a.search(&query(q)).await, Err(ArchiveError::BadQuery(_))), "{q:?}");
    }
    let mut q = query("abc");
    q.cursor = Some("not-a-cursor".to_owned());
    assert!(matches!(a.search(&q).await, Err(ArchiveError::BadQuery(_))));
    let runs = RunsQuery { job: "j".to_owned(), limit: 5, cursor: Some("zz".to_owned()), ..RunsQuery::default() };
    assert!(matches!(a.runs(&runs).await, Err(ArchiveError::BadQuery(_))));
    // A limit of 0 is read as 1.
    let mut q = query("abc");
    q.limit = 0;
    assert_eq!(a.search(&q).await.unwrap().hits.len(), 1);
}

#[tokio::test]
async fn a_url_of_another_scheme_is_refused() {
    let err = Archive::open("mysql://u:s3cret@127.0.0.1/x", 1).await.unwrap_err();
    assert!(matches!(err, ArchiveError::BadQuery(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

/// Nothing listens: the open fails fast, as `Unavailable`, without the password.
#[tokio::test]
async fn an_unreachable_postgres_fails_fast_without_its_password() {
    let url = format!("postgres://app:s3cret-pw@127.0.0.1:{}/pt", free_port());
    let started = Instant::now();
    let err = Archive::open(&url, 2).await.unwrap_err();
    assert!(started.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(err, ArchiveError::Unavailable(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("s3cret-pw"), "{err:?}");
}

/// PostgreSQL stopped under an open archive: every call answers `Unavailable` within the
/// acquire timeout; once it is back, the same handle works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs postgresql (apt-get install postgresql)"]
async fn postgres_down_then_back() {
    let mut db = postgres().await;
    let a = db.archive.clone();
    let before = log(1, vec!["before the outage".to_owned()]);
    a.put(&before).await.unwrap();
    let mut pg = db.pg.take().unwrap();
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    for call in 0..3 {
        let started = Instant::now();
        let result = match call {
            0 => a.ping().await,
            1 => a.put(&log(2, vec!["during".to_owned()])).await,
            _ => a.get(1).await.map(|_| ()),
        };
        let took = started.elapsed();
        assert!(matches!(result, Err(ArchiveError::Unavailable(_))), "call {call}: {result:?}");
        assert!(took < ACQUIRE_TIMEOUT + Duration::from_secs(2), "call {call} took {took:?}");
    }
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    wait_until(Duration::from_secs(15), "the archive answers again", || async { a.ping().await.is_ok() }).await;
    let after = log(3, vec!["after the outage".to_owned()]);
    a.put(&after).await.unwrap();
    assert_eq!(a.get(1).await.unwrap().as_ref(), Some(&before));
    assert_eq!(a.get(3).await.unwrap().as_ref(), Some(&after));
    assert_eq!(a.get(2).await.unwrap(), None);
    drop(pg);
}
