//! The simulated processor pushes its lines (issue 19): with a [`Pusher`] set
//! ([`Simulator::set_pusher`]), every scripted run of a chosen job also pushes each log
//! call to powertail's `POST /llm/logs/{instanceId}/append`, at the moment it logs it
//! (the same call that its worker ships to the simulated server with the flush delay),
//! as the Java `PushLogger` would: one pusher run (`source` = `<worker>/<random hex>`) per
//! worker of the run, batches at 20 lines or 100 ms, one in flight, retried under the
//! same `seq` with back-off, `final: true` when the processor returns.
//!
//! [`PushFaults`] play a bad network on top (batches dropped, sent twice, held back,
//! delayed), from a seed, so that the fallback to the polled log can be seen and tested.
//! The sender itself is in [`send`](super::push_send).
//!
//! The server side of the simulator is not involved: this is the processor talking to
//! powertail over HTTP, sharing only the script and the clock with the simulated server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use super::push_send::Sender;
use super::Simulator;
use crate::core::StartedRun;
use crate::types::Level;

/// Lines a batch holds when it is sent as soon as they wait (the Java library's 20).
pub const BATCH_LINES: usize = 20;
/// Most lines of a catch-up batch (lines that queued while a batch was in flight).
pub const MAX_BATCH_LINES: usize = 200;
/// How long a line waits for its batch to fill (the Java library's 100 ms).
pub const LINGER: Duration = Duration::from_millis(100);
/// Lines a source queues at most; more are dropped and counted (never blocking the log call).
pub const QUEUE_LINES: usize = 10_000;
/// The longest a wait for the server's clock sleeps before it looks again (a test's
/// clock may jump).
const CLOCK_STEP_MS: i64 = 50;

/// Where and how the simulated processors push their lines.
#[derive(Clone, Debug)]
pub struct Pusher {
    /// powertail's root URL, e.g. `http://127.0.0.1:8080`; with several (replicas), batch
    /// `seq` goes to the `seq`-th (round robin), and each retry to the next one.
    pub urls: Vec<String>,
    /// API token (scope `logs:push`), sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// The jobs whose runs push; `None`: every scripted job.
    pub jobs: Option<Vec<i64>>,
    /// A bad network between the processor and powertail.
    pub faults: PushFaults,
    /// Seed of the sources' names and of the faults (with the instance, run and worker).
    pub seed: u64,
    /// Keep the fate of every pushed line ([`Simulator::pushed_lines`]), for tests.
    pub record: bool,
}

impl Pusher {
    /// Every scripted job pushes to powertail at `url`, without faults.
    pub fn new(url: impl Into<String>) -> Self {
        Pusher {
            urls: vec![url.into()],
            token: None,
            jobs: None,
            faults: PushFaults::default(),
            seed: 0,
            record: false,
        }
    }

    /// Every scripted job pushes to these replicas (round robin), without faults.
    pub fn replicas(urls: impl IntoIterator<Item = String>) -> Self {
        Pusher { urls: urls.into_iter().collect(), ..Pusher::new("") }
    }

    /// Only these jobs push.
    #[must_use]
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = i64>) -> Self {
        self.jobs = Some(jobs.into_iter().collect());
        self
    }

    /// With these faults.
    #[must_use]
    pub fn faults(mut self, faults: PushFaults) -> Self {
        self.faults = faults;
        self
    }

    fn pushes(&self, job_id: i64) -> bool {
        self.jobs.as_ref().is_none_or(|jobs| jobs.contains(&job_id))
    }
}

/// A bad network, batch by batch: each share (0..=1) is the chance that a batch meets
/// that fault (drawn in this order; the last batch, `final`, only meets `duplicate`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushFaults {
    /// Never sent, its `seq` used (a batch the library gave up on): the receiver skips
    /// the gap after its wait, and the poll fills it in. `--push-drop` of the demo.
    pub drop: f64,
    /// Sent from the side `delay_ms` later, while the next batches go on (they overtake it).
    pub delay: f64,
    /// How late a delayed batch is sent.
    pub delay_ms: u64,
    /// Held back and sent right after the next batch (reordered).
    pub reorder: f64,
    /// Sent again 100 ms after its answer: a retry whose first answer was lost (counted
    /// in [`PushStats::retries`]).
    pub duplicate: f64,
}

/// What became of a pushed line ([`Pusher::record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Sent in its turn and answered 200.
    Sent,
    /// Sent in its turn, then sent again.
    Duplicated,
    /// Sent after the next batch.
    Reordered,
    /// Sent late, after batches behind it.
    Delayed,
    /// Never sent ([`PushFaults::drop`]).
    Dropped,
    /// Refused, or given up after its retries (or its source was turned off).
    Failed,
    /// Not queued: the source's queue was full.
    QueueFull,
}

/// One pushed line as the processor logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedLine {
    /// The pusher run.
    pub source: String,
    /// The worker's clock at the log call (the line's `ts`).
    pub ts: i64,
    /// Level.
    pub level: Level,
    /// Text.
    pub text: String,
    /// What became of it.
    pub fate: Fate,
}

/// Counts of every pusher since the simulator started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Pusher runs (sources) started.
    pub sources: u64,
    /// Log calls of pushing runs.
    pub lines: u64,
    /// Lines a full queue refused.
    pub queue_dropped: u64,
    /// Batches built (`seq` numbers used, dropped ones included).
    pub batches: u64,
    /// Requests made (retries and duplicates included).
    pub requests: u64,
    /// Lines the receiver said it accepted.
    pub accepted: u64,
    /// Answers that said `"duplicate": true`.
    pub duplicate_answers: u64,
    /// Batches and lines dropped by [`PushFaults::drop`].
    pub dropped_batches: u64,
    /// Lines of those batches.
    pub dropped_lines: u64,
    /// Retries after a failure (no answer, 408, 425, 429, 5xx, or a lost answer).
    pub retries: u64,
    /// Batches refused (4xx) or given up after 60 s of retries.
    pub failed_batches: u64,
    /// Sources turned off by 401, 403, 404 or 405.
    pub disabled: u64,
    /// `final` batches answered 200 (a retried one counts again).
    pub finals: u64,
}

/// The counters behind [`PushStats`] and the recorded lines.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sources: AtomicU64,
    pub(super) lines: AtomicU64,
    pub(super) queue_dropped: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) requests: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) duplicate_answers: AtomicU64,
    pub(super) dropped_batches: AtomicU64,
    pub(super) dropped_lines: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) failed_batches: AtomicU64,
    pub(super) disabled: AtomicU64,
    pub(super) finals: AtomicU64,
    /// instance → its pushed lines, when recorded.
    pub(super) recorded: Mutex<BTreeMap<i64, Vec<PushedLine>>>,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn snapshot(&self) -> PushStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PushStats {
            sources: get(&self.sources),
            lines: get(&self.lines),
            queue_dropped: get(&self.queue_dropped),
            batches: get(&self.batches),
            requests: get(&self.requests),
            accepted: get(&self.accepted),
            duplicate_answers: get(&self.duplicate_answers),
            dropped_batches: get(&self.dropped_batches),
            dropped_lines: get(&self.dropped_lines),
            retries: get(&self.retries),
            failed_batches: get(&self.failed_batches),
            disabled: get(&self.disabled),
            finals: get(&self.finals),
        }
    }

    /// Records the fate of `lines` of instance `id` (when the pusher records).
    pub(super) fn record(&self, id: i64, source: &str, lines: &[QueuedLine], fate: Fate) {
        let mut recorded = self.recorded.lock().expect("push records poisoned");
        recorded.entry(id).or_default().extend(lines.iter().map(|l| PushedLine {
            source: source.to_owned(),
            ts: l.ts,
            level: l.level,
            text: l.text.clone(),
            fate,
        }));
    }
}

/// A line in a source's queue.
#[derive(Clone, Debug)]
pub(super) struct QueuedLine {
    pub(super) ts: i64,
    pub(super) level: Level,
    pub(super) text: String,
}

/// The pusher and its counters, kept by the simulator.
#[derive(Debug, Default)]
pub(super) struct PushState {
    pub(super) pusher: Option<Arc<Pusher>>,
    pub(super) counters: Arc<Counters>,
    pub(super) client: Option<reqwest::Client>,
}

impl Simulator {
    /// Makes the simulated processors push their lines to powertail from now on
    /// (`None`: stop; runs already pushing go on). Runs that start from now on push.
    ///
    /// # Panics
    /// When the HTTP client cannot be built (TLS initialisation).
    pub fn set_pusher(&self, pusher: Option<Pusher>) {
        let on = pusher.is_some();
        {
            let mut state = self.push.lock().expect("push state poisoned");
            state.pusher = pusher.map(Arc::new);
            if on && state.client.is_none() {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("HTTP client");
                state.client = Some(client);
            }
        }
        self.with_core(|c, _| c.record_runs(on));
    }

    /// Counts of every pusher so far.
    pub fn push_stats(&self) -> PushStats {
        self.push.lock().expect("push state poisoned").counters.snapshot()
    }

    /// The lines pushed for instance `id`, each with its fate, in the order their
    /// batches were built per source ([`Pusher::record`]).
    pub fn pushed_lines(&self, id: i64) -> Vec<PushedLine> {
        let counters = self.push.lock().expect("push state poisoned").counters.clone();
        let recorded = counters.recorded.lock().expect("push records poisoned");
        recorded.get(&id).cloned().unwrap_or_default()
    }

    /// Starts the pushers of runs that just started (called after every core access).
    pub(super) fn start_pushers(&self, runs: Vec<StartedRun>) {
        let (pusher, counters, client) = {
            let state = self.push.lock().expect("push state poisoned");
            match (&state.pusher, &state.client) {
                (Some(p), Some(c)) => (p.clone(), state.counters.clone(), c.clone()),
                _ => return,
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("simulated pushers need a tokio runtime; not pushing");
            return;
        };
        for run in runs.into_iter().filter(|r| pusher.pushes(r.job_id)) {
            for (index, worker) in run.workers.iter().enumerate() {
                let lines: Vec<_> = run.lines.iter().filter(|l| l.worker == index).cloned().collect();
                if lines.is_empty() {
                    continue;
                }
                let seed = pusher.seed
                    ^ (run.instance_id as u64).rotate_left(17)
                    ^ run.run.rotate_left(40)
                    ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut rng = StdRng::seed_from_u64(seed);
                let source = format!("{}/{:08x}", worker.address, rng.gen::<u32>());
                let (tx, rx) = mpsc::channel(QUEUE_LINES);
                Counters::add(&counters.sources, 1);
                let sender = Sender::new(
                    client.clone(),
                    pusher.clone(),
                    counters.clone(),
                    run.instance_id,
                    source,
                    worker.address.clone(),
                    worker.clock_skew_ms,
                    rng,
                    self.clone(),
                );
                runtime.spawn(sender.run(rx));
                let logs = Logger {
                    sim: self.clone(),
                    counters: counters.clone(),
                    record: pusher.record,
                    id: run.instance_id,
                    run: run.run,
                    skew: worker.clock_skew_ms,
                };
                let times: Vec<(i64, Level, String)> =
                    lines.into_iter().map(|l| (run.start.saturating_add(l.at_ms), l.level, l.content)).collect();
                runtime.spawn(logs.play(times, run.end_at, tx));
            }
        }
    }

    /// Waits until the server's clock reads `at` (in steps: a test's clock may jump).
    pub(super) async fn wait_until(&self, at: i64) {
        loop {
            let left = at.saturating_sub(self.time());
            if left <= 0 {
                return;
            }
            let ms = u64::try_from(left.min(CLOCK_STEP_MS)).unwrap_or(1);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// The processor's log calls of one worker, made at their times into the source's queue.
struct Logger {
    sim: Simulator,
    counters: Arc<Counters>,
    record: bool,
    id: i64,
    run: u64,
    skew: i64,
}

impl Logger {
    /// Logs `lines` (server time, level, text) at their times; the queue closes when the
    /// processor returns at `end_at`, or when a stop cut the run short.
    async fn play(self, lines: Vec<(i64, Level, String)>, end_at: i64, tx: mpsc::Sender<QueuedLine>) {
        let mut lines = lines.into_iter().peekable();
        loop {
            let now = self.sim.time();
            let cut = self.sim.with_core(|c, _| c.logged_until(self.id, self.run));
            let until = cut.map_or(now, |cut| cut.min(now));
            while let Some((at, ..)) = lines.peek() {
                if *at > until {
                    break;
                }
                let Some((at, level, text)) = lines.next() else { break };
                Counters::add(&self.counters.lines, 1);
                let line = QueuedLine { ts: at.saturating_add(self.skew), level, text };
                if let Err(mpsc::error::TrySendError::Full(line) | mpsc::error::TrySendError::Closed(line)) =
                    tx.try_send(line)
                {
                    Counters::add(&self.counters.queue_dropped, 1);
                    if self.record {
                        self.counters.record(self.id, "", &[line], Fate::QueueFull);
                    }
                }
            }
            let next = match (lines.peek(), cut) {
                (_, Some(cut)) if cut <= now => break,
                (Some((at, ..)), _) => *at,
                (None, _) if now >= end_at => break,
                (None, _) => end_at,
            };
            self.sim.wait_until(next.min(now.saturating_add(CLOCK_STEP_MS))).await;
        }
        // Dropping `tx` tells the sender that the processor returned: it sends `final`.
    }
}
