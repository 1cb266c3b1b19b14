//! Property test of the whole read path (`logs::reader` + `logs::follower`) against
//! random upstream histories, in virtual time: several workers with skewed clocks,
//! batches delivered at flush ticks, equal timestamps swapped at every rebuild,
//! multi-line records whose continuation lines repeat, a 10 s file cache that can
//! expire in the middle of a burst of page reads, transient placeholders, final lines
//! arriving after the instance finished, and random poll timing.
//!
//! Invariants: the served list only grows (append-only), never holds a placeholder, ends
//! as exactly the upstream's lines (no line lost, none twice), and is `complete` only
//! once no line can still arrive.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::RwLock;

use powertail::logs::line::{PAGE_LINES, PREPARING};
use powertail::logs::{refresh_log, Follower, InstanceFacts, PageSource, Plan, RawPage, Status, Timing};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const FLUSH: i64 = 5_000;
const CACHE: i64 = 10_000;
const MAX_INSERT_DELAY: i64 = 300;
const TIMING: Timing = Timing {
    worker_flush_ms: FLUSH,
    log_cache_ms: CACHE,
    first_read_delay_ms: 0,
    clock_skew_ms: 1_000,
    sync_delay_ms: 60_000,
    max_lines: 1_000_000,
};
/// Virtual epoch of the run (2024-06-01T08:00:00Z).
const T0: i64 = 1_717_228_800_000;

#[derive(Debug, Clone)]
struct Record {
    log_time: i64,
    arrive: i64,
    lines: Vec<String>,
}

/// A PowerJob server reduced to what matters for the log file (protocol §4.2–4.4).
struct Upstream {
    records: Vec<Record>,
    file: Option<(i64, Vec<String>)>,
    rng: StdRng,
    placeholder_rate: f64,
}

impl Upstream {
    fn page(&mut self, index: u64, now: i64) -> RawPage {
        if self.rng.gen_bool(self.placeholder_rate) {
            return RawPage { index: 0, total_pages: 1, data: PREPARING.to_owned() };
        }
        let lines = self.file(now);
        let total = (lines.len() as u64).div_ceil(PAGE_LINES);
        let from = (index * PAGE_LINES).min(lines.len() as u64) as usize;
        let to = (from + PAGE_LINES as usize).min(lines.len());
        let data = lines[from..to].iter().map(|l| format!("{l}\n")).collect();
        RawPage { index, total_pages: total, data }
    }

    /// `/instance/downloadLog`, with its padding bug: the body is padded to 4096-byte
    /// blocks with stale bytes of the previous block (or NULs for a short file).
    fn whole(&mut self, now: i64) -> Vec<u8> {
        let mut body: Vec<u8> = self.file(now).iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
        let n = body.len();
        for i in n..n.div_ceil(4096) * 4096 {
            body.push(if i >= 4096 { body[i - 4096] } else { 0 });
        }
        body
    }

    fn file(&mut self, now: i64) -> Vec<String> {
        let stale = self.file.as_ref().is_none_or(|(built, _)| now - built >= CACHE);
        if stale {
            let mut rows: Vec<&Record> = self.records.iter().filter(|r| r.arrive <= now).collect();
            rows.shuffle(&mut self.rng); // ties end up in a different order at every rebuild
            rows.sort_by_key(|r| r.log_time);
            let lines: Vec<String> = rows.iter().flat_map(|r| r.lines.iter().cloned()).collect();
            if debug() {
                eprintln!("  REBUILD at {} ({} lines)", now - T0, lines_len(&lines));
            }
            self.file = Some((now, lines));
        }
        self.file.as_ref().expect("built above").1.clone()
    }

    fn all_lines(&self) -> Vec<String> {
        self.records.iter().flat_map(|r| r.lines.iter().cloned()).collect()
    }
}

/// Reads pages in virtual time: each page read takes a random while.
struct Source<'a> {
    up: &'a RefCell<Upstream>,
    now: &'a Cell<i64>,
    rng: &'a RefCell<StdRng>,
    max_page_ms: i64,
}

impl PageSource for Source<'_> {
    type Error = std::convert::Infallible;

    async fn page(&self, index: u64) -> Result<RawPage, Self::Error> {
        let step = self.rng.borrow_mut().gen_range(0..=self.max_page_ms);
        self.now.set(self.now.get() + step);
        let p = self.up.borrow_mut().page(index, self.now.get());
        if debug() {
            eprintln!("  page {index} at {} -> total {} len {}", self.now.get() - T0, p.total_pages, p.data.len());
        }
        Ok(p)
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    async fn whole_file(&self) -> Result<Option<Vec<u8>>, Self::Error> {
        let step = self.rng.borrow_mut().gen_range(0..=self.max_page_ms);
        self.now.set(self.now.get() + step);
        Ok(Some(self.up.borrow_mut().whole(self.now.get())))
    }
}

fn debug() -> bool {
    std::env::var_os("PT_DEBUG").is_some()
}

fn lines_len(v: &[String]) -> usize {
    v.len()
}

fn render(log_time: i64, worker: usize, level: &str, content: &str) -> Vec<String> {
    let t = chrono::DateTime::from_timestamp_millis(log_time + 8 * 3_600_000).expect("valid time");
    let first = format!("{} [10.0.0.{}:27777] {level} {content}", t.format("%Y-%m-%d %H:%M:%S%.3f"), 20 + worker);
    first.split('\n').map(str::to_owned).collect()
}

#[derive(Debug, Clone)]
struct History {
    seed: u64,
    workers: Vec<(i64, i64)>,    // (clock skew, flush phase)
    steps: Vec<(u16, u8, bool)>, // (gap ms to next record, worker, stack trace?)
    finish_after: i64,
    placeholder_rate: f64,
    max_page_ms: i64,
    poll_gaps: (i64, i64),
    /// First poll long after the instance finished (a whole-file download then).
    late_start: bool,
}

fn history() -> impl Strategy<Value = History> {
    (
        any::<u64>(),
        prop::collection::vec((-400i64..=400, 0i64..FLUSH), 1..=3),
        prop::collection::vec((0u16..400, any::<u8>(), prop::bool::weighted(0.08)), 1..700),
        0i64..4_000,
        prop_oneof![Just(0.0), Just(0.05)],
        prop_oneof![Just(0i64), Just(50), Just(700)],
        prop_oneof![Just((50i64, 400i64)), Just((500, 4_000)), Just((3_000, 15_000))],
        prop::bool::weighted(0.25),
    )
        .prop_map(|(seed, workers, steps, finish_after, placeholder_rate, max_page_ms, poll_gaps, late_start)| {
            History { seed, workers, steps, finish_after, placeholder_rate, max_page_ms, poll_gaps, late_start }
        })
}

fn build(h: &History) -> (Upstream, i64) {
    let mut t = T0;
    let mut records = Vec::new();
    let mut rng = StdRng::seed_from_u64(h.seed);
    for (i, &(gap, worker, trace)) in h.steps.iter().enumerate() {
        // Gaps of 0 and coarse rounding make equal timestamps common.
        t += i64::from(gap / 50 * 50);
        let w = usize::from(worker) % h.workers.len();
        let (skew, phase) = h.workers[w];
        let content = if trace {
            // Continuation lines repeat across records; the record ends with an empty line.
            format!(
                "failed step {i}\njava.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n"
            )
        } else {
            format!("processed record {}", i % 50) // equal contents at different times
        };
        let level = if trace { "ERROR" } else { "INFO" };
        // The worker ships at its next flush tick; the server inserts a little later.
        let tick = phase + ((t - T0 - phase).div_euclid(FLUSH) + 1) * FLUSH + T0;
        let arrive = tick + rng.gen_range(0..=MAX_INSERT_DELAY);
        records.push(Record { log_time: t + skew, arrive, lines: render(t + skew, w, level, &content) });
    }
    let finished = t + h.finish_after;
    (
        Upstream { records, file: None, rng: StdRng::seed_from_u64(h.seed ^ 1), placeholder_rate: h.placeholder_rate },
        finished,
    )
}

fn counts(lines: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_default() += 1;
    }
    m
}

fn run(h: &History) -> Result<(), TestCaseError> {
    let (up, finished) = build(h);
    let expected = up.all_lines();
    let last_arrival = up.records.iter().map(|r| r.arrive).max().unwrap_or(T0);
    let up = RefCell::new(up);
    let now = Cell::new(if h.late_start { finished + 30_000 } else { T0 });
    let rng = RefCell::new(StdRng::seed_from_u64(h.seed ^ 2));
    let src = Source { up: &up, now: &now, rng: &rng, max_page_ms: h.max_page_ms };
    let follower = RwLock::new(Follower::default());
    let mut served: Vec<String> = Vec::new();
    let give_up = finished + 200_000;
    loop {
        let t = now.get();
        let facts = if t < finished {
            InstanceFacts {
                status: Status::Running,
                actual_trigger_time: Some(T0),
                finished_time: None,
                task_tracker_address: Some("w".into()),
                running_times: 1,
            }
        } else {
            InstanceFacts {
                status: Status::Succeed,
                actual_trigger_time: Some(T0),
                finished_time: Some(finished),
                task_tracker_address: Some("w".into()),
                running_times: 1,
            }
        };
        let plan = {
            let mut f = follower.write().unwrap();
            f.observe(&facts, t, &TIMING);
            f.plan(&facts, t, &TIMING)
        };
        if let Plan::Read(pages) = plan {
            // A placeholder answer fails the refresh; the follower must be untouched then.
            let stable = follower.read().unwrap().stable_until(&TIMING).map(|s| s - T0);
            let r =
                futures::executor::block_on(refresh_log(&src, &follower, pages, t, &TIMING, facts.status.is_final()));
            if debug() {
                eprintln!("REFRESH at {} {pages:?} stable_until {stable:?} -> {r:?}", t - T0);
            }
        }
        let f = follower.read().unwrap();
        let now_lines: Vec<String> = f.lines().iter().map(|l| l.to_string()).collect();
        prop_assert!(now_lines.starts_with(&served), "append-only violated");
        prop_assert!(now_lines.iter().all(|l| l != PREPARING), "placeholder served");
        served = now_lines;
        if f.is_complete() {
            prop_assert!(t >= last_arrival, "complete at {t} before the last batch arrived at {last_arrival}");
            break;
        }
        drop(f);
        prop_assert!(now.get() < give_up, "never completed");
        let gap = rng.borrow_mut().gen_range(h.poll_gaps.0..=h.poll_gaps.1);
        now.set(now.get() + gap);
    }
    prop_assert_eq!(served.len(), expected.len(), "line count");
    prop_assert_eq!(counts(&served), counts(&expected));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn follows_any_history_exactly(h in history()) {
        run(&h)?;
    }
}
