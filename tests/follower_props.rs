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
//!
//! The second half runs the same read path against the simulator (`sim::SimCore`) with
//! server restarts, head clean-ups of frequent jobs and retries, and checks that the
//! follower serves every physical line the simulator ever served, exactly once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::RwLock;

use powertail::logs::line::{PAGE_LINES, PREPARING};
use powertail::logs::{refresh_log, Follower, InstanceFacts, PageSource, Plan, RawPage, Status, Timing};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
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

// --- The same read path against the simulator's `SimCore` --------------------------------
//
// The upstream above is a reduced model. The histories below run on the simulator's state
// machine itself, with what it adds: server restarts (§6.13), head clean-ups of frequent
// jobs (§6.12), retries reusing the instance id (§6.11: a second run, then the first
// run's stable file again), poisoning by an early read (§6.10), syncs and late lines.
//
// Oracle: every page the simulator serves comes with the origin of each line (record,
// line in record; `SimCore::log_page_traced`), so "what PowerJob served" is the set of
// distinct physical lines that appeared in any read, whatever file served them and
// however often. The follower must end up serving exactly those, each once: compared as
// multisets of text, so identical lines of distinct records (stack-trace continuation
// lines, the empty line after a trace, a retry's replay) count separately.

use std::collections::{BTreeMap, VecDeque};

use powertail::sim::core::{read_lines, NO_ONLINE_LOG};
use powertail::sim::{Level, LineId, Record as SimRecord, SimConfig, SimCore, TimeExpression};

/// Something the test does to the server at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Finish,
    Restart,
    Retry,
    Running,
}

/// The simulator, the instance, the test's scheduled actions and the oracle.
struct SimUp {
    core: SimCore,
    id: i64,
    actions: VecDeque<(i64, Action)>,
    /// Every line any read served, by origin.
    served: BTreeMap<LineId, String>,
    /// Records some answer served whole (all their lines in one page, or one download).
    whole: std::collections::HashSet<u64>,
    rng: StdRng,
    placeholder_rate: f64,
}

impl SimUp {
    /// Applies the test's actions due at or before `now`, in time order.
    fn catch_up(&mut self, now: i64) {
        while let Some(&(at, action)) = self.actions.front() {
            if at > now {
                break;
            }
            self.actions.pop_front();
            let id = self.id;
            match action {
                Action::Finish => self.core.finish(id, 5, "ok", at),
                Action::Restart => self.core.restart(at),
                Action::Retry => self.core.retry_instance(id, at).expect("retry a finished instance"),
                Action::Running => self.core.set_running(id, at),
            }
            if debug() {
                eprintln!("  ACTION {action:?} at {}", at - T0);
            }
        }
    }

    fn facts(&mut self, now: i64) -> InstanceFacts {
        self.catch_up(now);
        let info = self.core.instance_info(self.id, now).expect("instance exists");
        InstanceFacts {
            status: Status::from_code(info["status"].as_i64().unwrap_or(0)),
            actual_trigger_time: info["actualTriggerTime"].as_i64(),
            finished_time: info["finishedTime"].as_i64(),
            task_tracker_address: info["taskTrackerAddress"].as_str().map(str::to_owned),
            running_times: info["runningTimes"].as_u64().map_or(0, |n| n as u32),
        }
    }

    /// Takes in the lines of one answer; `ends_file`: its last line is the file's last.
    fn record(&mut self, lines: &[String], origins: &[Option<LineId>], ends_file: bool) {
        assert_eq!(lines.len(), origins.len(), "one origin per line");
        // A record is served whole when its first line is here and what follows it here
        // is another record (or the end of the file).
        for (k, origin) in origins.iter().enumerate() {
            let Some(o) = origin.filter(|o| o.line == 0) else { continue };
            let next = origins[k + 1..].iter().find(|n| n.is_none_or(|n| n.record != o.record));
            if next.is_some() || ends_file {
                self.whole.insert(o.record);
            }
        }
        for (line, origin) in lines.iter().zip(origins) {
            if let Some(origin) = origin {
                let previous = self.served.insert(*origin, line.clone());
                assert!(previous.is_none_or(|p| &p == line), "a line changed its text");
            }
        }
    }

    fn page(&mut self, index: u64, now: i64) -> RawPage {
        self.catch_up(now);
        if self.rng.gen_bool(self.placeholder_rate) {
            return RawPage { index: 0, total_pages: 1, data: PREPARING.to_owned() };
        }
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        let (page, origins) = self.core.log_page_traced(self.id, index, now);
        let ends_file = page.index + 1 >= page.total_pages;
        self.record(&read_lines(&page.data), &origins, ends_file);
        RawPage { index: page.index as u64, total_pages: page.total_pages as u64, data: page.data }
    }

    fn whole(&mut self, now: i64) -> Vec<u8> {
        self.catch_up(now);
        let (_, body, origins) = self.core.download_log_traced(self.id, now).expect("prepared");
        // The file's lines come first; the padding after them has no origin.
        let lines: Vec<String> = read_lines(&String::from_utf8_lossy(&body)).into_iter().take(origins.len()).collect();
        self.record(&lines, &origins, true);
        body
    }
}

struct SimSource<'a> {
    up: &'a RefCell<SimUp>,
    now: &'a Cell<i64>,
    rng: &'a RefCell<StdRng>,
    max_page_ms: i64,
}

impl SimSource<'_> {
    fn step(&self) -> i64 {
        let step = self.rng.borrow_mut().gen_range(0..=self.max_page_ms);
        self.now.set(self.now.get() + step);
        self.now.get()
    }
}

impl PageSource for SimSource<'_> {
    type Error = std::convert::Infallible;

    async fn page(&self, index: u64) -> Result<RawPage, Self::Error> {
        let now = self.step();
        let p = self.up.borrow_mut().page(index, now);
        if debug() {
            eprintln!("  page {index} at {} -> total {} len {}", now - T0, p.total_pages, p.data.len());
        }
        Ok(p)
    }

    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    async fn whole_file(&self) -> Result<Option<Vec<u8>>, Self::Error> {
        let now = self.step();
        Ok(Some(self.up.borrow_mut().whole(now)))
    }
}

/// What a simulated history may add to the plain run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Features {
    restart: bool,
    clean_up: bool,
    retry: bool,
    /// Probability (in %) that a record is a stack trace.
    trace_pct: u32,
}

#[derive(Debug, Clone)]
struct SimHistory {
    seed: u64,
    workers: Vec<(i64, i64)>,
    /// Records of the first run: (gap ms to the next, worker, stack trace?).
    steps: Vec<(u16, u8, bool)>,
    /// Records of the retry's run (used only with `retry`).
    steps2: Vec<(u16, u8, bool)>,
    finish_after: i64,
    /// Restart at this share (per mille) of the first run + 90 s (only with `restart`).
    restart_at: u16,
    /// Retry this long after the first run finished (only with `retry`): before or after
    /// its sync.
    retry_after: i64,
    /// timingCheck interval and age (only with `clean_up`).
    clean: (i64, i64),
    dfs: bool,
    placeholder_rate: f64,
    max_page_ms: i64,
    poll_gaps: (i64, i64),
    features: Features,
}

fn steps(max: usize, trace_pct: u32) -> impl Strategy<Value = Vec<(u16, u8, bool)>> {
    prop::collection::vec((0u16..400, any::<u8>(), prop::bool::weighted(f64::from(trace_pct) / 100.0)), 1..max)
}

fn sim_history(features: Features) -> impl Strategy<Value = SimHistory> {
    (
        (any::<u64>(), prop::collection::vec((-400i64..=400, 0i64..FLUSH), 1..=3)),
        (steps(300, features.trace_pct), steps(100, features.trace_pct)),
        (0i64..4_000, 0u16..1_000, 0i64..120_000),
        prop_oneof![Just((20_000i64, 30_000i64)), Just((30_000, 60_000)), Just((120_000, 600_000))],
        any::<bool>(),
        (prop_oneof![Just(0.0), Just(0.05)], prop_oneof![Just(0i64), Just(50), Just(700)]),
        prop_oneof![Just((50i64, 400i64)), Just((500, 4_000)), Just((3_000, 15_000))],
    )
        .prop_map(
            move |(
                (seed, workers),
                (steps, steps2),
                (finish_after, restart_at, retry_after),
                clean,
                dfs,
                (placeholder_rate, max_page_ms),
                poll_gaps,
            )| SimHistory {
                seed,
                workers,
                steps,
                steps2,
                finish_after,
                restart_at,
                retry_after,
                clean,
                dfs,
                placeholder_rate,
                max_page_ms,
                poll_gaps,
                features,
            },
        )
}

/// Delivers the records of one run logged from `start` (each in its worker's next flush
/// batch); returns when the last one was logged.
fn deliver_run(
    core: &mut SimCore,
    id: i64,
    h: &SimHistory,
    steps: &[(u16, u8, bool)],
    start: i64,
    rng: &mut StdRng,
) -> i64 {
    let mut t = start;
    for (i, &(gap, worker, trace)) in steps.iter().enumerate() {
        t += i64::from(gap / 50 * 50);
        let w = usize::from(worker) % h.workers.len();
        let (skew, phase) = h.workers[w];
        let (level, content) = if trace {
            // Continuation lines and the final empty line repeat across records.
            let trace = "java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n";
            (Level::Error, format!("failed step {i}\n{trace}"))
        } else {
            (Level::Info, format!("processed record {}", i % 50))
        };
        let tick = phase + ((t - T0 - phase).div_euclid(FLUSH) + 1) * FLUSH + T0;
        let arrive = tick + rng.gen_range(0..=MAX_INSERT_DELAY);
        let record = SimRecord { log_time: t + skew, level, content, worker: format!("10.0.0.{}:27777", 20 + w) };
        core.deliver(id, vec![record], arrive);
    }
    t
}

/// The simulator set up with the whole history: deliveries scheduled, actions queued.
/// Returns it and the time after which nothing more happens.
fn build_sim(h: &SimHistory) -> (SimUp, i64) {
    let mut cfg = SimConfig { seed: h.seed, dfs: h.dfs, ..SimConfig::default() };
    if h.features.clean_up {
        cfg = cfg.with_time_expression(12, TimeExpression::FixedRate(1_000));
        (cfg.clean_interval_ms, cfg.clean_age_ms) = h.clean;
    }
    let mut core = SimCore::new(cfg);
    let mut rng = StdRng::seed_from_u64(h.seed ^ 3);
    let id = core.create_instance(12, None, T0);
    core.dispatch(id, T0);
    core.set_running(id, T0);
    let mut actions = Vec::new();
    let finished = deliver_run(&mut core, id, h, &h.steps, T0, &mut rng) + h.finish_after;
    actions.push((finished, Action::Finish));
    let mut end = finished;
    if h.features.retry {
        let retry = finished + h.retry_after;
        actions.push((retry, Action::Retry));
        actions.push((retry + 500, Action::Running));
        let finished2 = deliver_run(&mut core, id, h, &h.steps2, retry + 1_000, &mut rng) + h.finish_after;
        actions.push((finished2, Action::Finish));
        end = finished2;
    }
    if h.features.restart {
        let restart = T0 + (finished - T0 + 90_000) * i64::from(h.restart_at) / 1_000;
        actions.push((restart, Action::Restart));
    }
    // Equal times: in the order pushed (a restart goes last).
    actions.sort_by_key(|(at, _)| *at);
    let up = SimUp {
        core,
        id,
        actions: actions.into(),
        served: BTreeMap::new(),
        whole: std::collections::HashSet::new(),
        rng: StdRng::seed_from_u64(h.seed ^ 1),
        placeholder_rate: h.placeholder_rate,
    };
    // Late batches: up to a flush and an insert delay after the last log call.
    (up, end + FLUSH + MAX_INSERT_DELAY)
}

/// Lines in `a` more often than in `b`, with how many more.
fn excess<'a>(a: &HashMap<&'a str, usize>, b: &HashMap<&'a str, usize>) -> Vec<(&'a str, usize)> {
    let mut v: Vec<(&str, usize)> = a
        .iter()
        .map(|(k, &n)| (*k, n.saturating_sub(b.get(k).copied().unwrap_or(0))))
        .filter(|&(_, more)| more > 0)
        .collect();
    v.sort();
    v
}

fn run_sim(h: &SimHistory) -> Result<(), TestCaseError> {
    let (up, quiet_after) = build_sim(h);
    let up = RefCell::new(up);
    let now = Cell::new(T0);
    let rng = RefCell::new(StdRng::seed_from_u64(h.seed ^ 2));
    let src = SimSource { up: &up, now: &now, rng: &rng, max_page_ms: h.max_page_ms };
    let follower = RwLock::new(Follower::default());
    let mut served: Vec<String> = Vec::new();
    let give_up = quiet_after + 300_000;
    loop {
        let t = now.get();
        let facts = up.borrow_mut().facts(t);
        let plan = {
            let mut f = follower.write().unwrap();
            f.observe(&facts, t, &TIMING);
            f.plan(&facts, t, &TIMING)
        };
        if let Plan::Read(pages) = plan {
            let r =
                futures::executor::block_on(refresh_log(&src, &follower, pages, t, &TIMING, facts.status.is_final()));
            if debug() {
                eprintln!("REFRESH at {} ({:?}) {pages:?} -> {r:?}", t - T0, facts.status);
            }
        }
        let f = follower.read().unwrap();
        let now_lines: Vec<String> = f.lines().iter().map(|l| l.to_string()).collect();
        prop_assert!(now_lines.starts_with(&served), "append-only violated");
        prop_assert!(now_lines.iter().all(|l| l != PREPARING && l != NO_ONLINE_LOG), "placeholder served");
        served = now_lines;
        let quiet = up.borrow().actions.is_empty() && t > quiet_after;
        if f.is_complete() && quiet {
            break;
        }
        drop(f);
        prop_assert!(now.get() < give_up, "never completed");
        let gap = rng.borrow_mut().gen_range(h.poll_gaps.0..=h.poll_gaps.1);
        now.set(now.get() + gap);
    }
    let up = up.into_inner();
    // Lost: a record some answer served whole that the follower does not serve. (A
    // record split over two pages of a burst never proven to come from one file, and
    // destroyed upstream before it was read again, cannot be told apart from a splice.)
    // Invented or repeated: more copies of a line than any answer ever held.
    let expected: Vec<String> = up.served.values().cloned().collect();
    let whole: Vec<String> =
        up.served.iter().filter(|(o, _)| up.whole.contains(&o.record)).map(|(_, l)| l.clone()).collect();
    let (got, want, want_whole) = (counts(&served), counts(&expected), counts(&whole));
    let lost = excess(&want_whole, &got);
    let extra = excess(&got, &want);
    if debug() {
        eprintln!("CASE END lost {} extra {}", lost.len(), extra.len());
    }
    prop_assert!(
        lost.is_empty() && extra.is_empty(),
        "{} lines served upstream, {} by the follower; lost {lost:?}; duplicated or invented {extra:?}",
        expected.len(),
        served.len()
    );
    Ok(())
}

const PLAIN: Features = Features { restart: false, clean_up: false, retry: false, trace_pct: 8 };

/// The simulated histories keep their failure seeds apart from the model's above
/// (`follower_props.sim-regressions`): a seed replays as a different input under
/// another strategy.
fn sim_config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("sim-regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(sim_config())]

    /// The simulator without the features below: the harness itself.
    #[test]
    fn follows_the_simulator_exactly(h in sim_history(PLAIN)) {
        run_sim(&h)?;
    }
}

proptest! {
    #![proptest_config(sim_config())]

    /// Restarts, clean-ups and retries with records of one line each: every text is
    /// unique (its timestamp), so only the repeated stack-trace lines below fail today.
    #[test]
    fn follows_restarts_clean_ups_and_retries_of_one_line_records(
        h in sim_history(Features { restart: true, clean_up: true, retry: true, trace_pct: 0 })
    ) {
        run_sim(&h)?;
    }

    /// Many stack traces whose continuation lines (and final empty line) repeat, in a
    /// log that is only rebuilt (late batches, ties, syncs).
    #[test]
    fn follows_repeated_stack_traces(h in sim_history(Features { trace_pct: 50, ..PLAIN })) {
        run_sim(&h)?;
    }
}

// Each failed before the follower matched whole records (issue 11): the continuation
// lines and the empty line of a stack trace that reached a rewritten log (after a
// restart, a head clean-up or a retry's new run) were taken for the already-served lines
// of an earlier trace, and never served. The smallest cases are the tests at the end.
proptest! {
    #![proptest_config(sim_config())]

    #[test]
    fn follows_the_simulator_across_restarts(h in sim_history(Features { restart: true, ..PLAIN })) {
        run_sim(&h)?;
    }

    #[test]
    fn follows_the_simulator_across_head_clean_ups(h in sim_history(Features { clean_up: true, ..PLAIN })) {
        run_sim(&h)?;
    }

    #[test]
    fn follows_the_simulator_across_retries(h in sim_history(Features { retry: true, ..PLAIN })) {
        run_sim(&h)?;
    }

    #[test]
    fn follows_the_simulator_through_everything(
        h in sim_history(Features { restart: true, clean_up: true, retry: true, trace_pct: 30 })
    ) {
        run_sim(&h)?;
    }
}

// --- The smallest histories that failed before (what the shrunk proptest cases boil down to)

/// A hand-written history: one worker without skew, reads every second, no placeholders.
fn case(features: Features, steps: &[(u16, u8, bool)], steps2: &[(u16, u8, bool)]) -> SimHistory {
    SimHistory {
        seed: 0,
        workers: vec![(0, 0)],
        steps: steps.to_vec(),
        steps2: steps2.to_vec(),
        finish_after: 0,
        restart_at: 0,
        retry_after: 0,
        clean: (30_000, 30_000),
        dfs: true,
        placeholder_rate: 0.0,
        max_page_ms: 0,
        poll_gaps: (1_000, 1_000),
        features,
    }
}

fn check(h: &SimHistory) {
    if let Err(e) = run_sim(h) {
        panic!("{e}");
    }
}

const TRACE: (u16, u8, bool) = (0, 0, true);

/// Run 1 logs one stack trace, run 2 (a retry, same instanceId) another one: the second
/// trace's continuation lines and empty line have the texts of the first's.
#[test]
fn retry_with_a_repeated_stack_trace() {
    let h = SimHistory { retry_after: 70_000, ..case(Features { retry: true, ..PLAIN }, &[TRACE], &[TRACE]) };
    check(&h);
}

/// A trace at 0 s, read; a restart at 10 s; another trace at 20 s, the only record of
/// the log after the restart.
#[test]
fn restart_then_a_repeated_stack_trace() {
    let h =
        SimHistory { restart_at: 91, ..case(Features { restart: true, ..PLAIN }, &[TRACE, (20_000, 0, true)], &[]) };
    check(&h);
}

/// A frequent job: a trace at 0 s, read; a trace at 55 s that arrives with the clean-up
/// at 60 s, which deletes the first (logTime < 30 s).
#[test]
fn head_clean_up_then_a_repeated_stack_trace() {
    let h = case(Features { clean_up: true, ..PLAIN }, &[TRACE, (55_000, 0, true)], &[]);
    check(&h);
}
