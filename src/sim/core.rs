//! `SimCore`: the PowerJob server's state machine, pure and deterministic.
//!
//! No I/O, no clock, no tokio: every time-dependent call takes `now` (epoch ms), and the
//! order of equal-timestamp rows at each rebuild comes from a seeded RNG, so a property
//! test can drive it in virtual time and replay a failure from its seed. The HTTP layer
//! ([`super::http`]) wraps it with the wall clock.
//!
//! What it reproduces (`powerjob-protocol.md` §2–§6, `InstanceLogService` of 4.3.9/5.1.1):
//! * the instance table and its status machine (§2.4–§2.10, §3);
//! * worker batches that become H2 rows when they arrive, and the live map
//!   (`instanceId2LastReportTime`) they enter;
//! * the temporary file, rebuilt from the rows at most every `LOG_CACHE_TIME`, ties in
//!   `logTime` in a new random order at every rebuild;
//! * the stable file, served forever once it exists, including the "no online log"
//!   placeholder written by a read that came too early (the poisoning bug, §6.10);
//! * the sync `sync_delay_ms` after finishing that reuses an existing stable file,
//!   uploads it to the DFS and deletes the rows (late batches then form a new live log);
//! * paging (§4.2), rendering (§4.4), the download padding bug (§4.8), restarts (§6.13)
//!   and retries reusing the instance id (§6.11, the script replayed as a second run);
//! * frequent (FIXED_RATE/FIXED_DELAY) jobs whose live logs lose their old rows at every
//!   `timingCheck` (§4.3 item 4, §6.12; `core/clean.rs`);
//! * optionally, a stopped processor that goes on logging ([`SimConfig::logs_after_stop`]).
//!
//! Every served line can be traced back to the record it came from
//! ([`SimCore::log_page_traced`]), which property tests use as their oracle.
//!
//! Every event (arrival, scripted status, sync) is kept in one time-ordered queue and
//! applied by [`SimCore::tick`] in time order, so a late `tick` gives the same state as
//! many small ones.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

pub use super::file::{iso, local_time, read_lines, render, LineId, DOWNLOAD_BUFFER};
use super::file::{pad_like_file2http, FileLines};
use super::script::JobScript;

mod clean;
pub use self::clean::TimeExpression;

/// The single line of the stable file written when there is no log (§4.5).
pub const NO_ONLINE_LOG: &str = "SYSTEM: There is no online log for this job instance.";
/// `StringPage.simple` text when preparing the file took longer than 5 s (§4.5).
pub const PREPARING: &str = "log file is being prepared, please try again later.";
/// Prefix of the `StringPage.simple` text when the log method threw (§4.5).
pub const SERVER_EXCEPTION: &str = "oms-server execution exception, caused by ";
/// Physical lines per page (`MAX_LINE_COUNT`).
pub const PAGE_LINES: usize = 100;
/// First instance id handed out: a real snowflake id, above 2^53 like every real one.
pub const FIRST_INSTANCE_ID: i64 = 677_182_124_851_200_064;
/// Gap between consecutive instance ids (snowflake ids grow with time and sequence).
const INSTANCE_ID_STEP: i64 = 4_096;
/// Time between a worker batch reaching the server and its rows being inserted (the
/// async `LOCAL_DB_POOL` insert).
pub const INSERT_DELAY_MS: i64 = 20;
/// Records per `WorkerLogReportReq` batch (§5).
pub const BATCH_RECORDS: usize = 20;
/// `gmtCreate`/`gmtModified` of the simulated jobs (2024-05-20T03:12:45Z).
const JOB_GMT_CREATE: i64 = 1_716_174_765_000;

/// Server generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// 4.3.x: no auth anywhere, no `code` in error envelopes.
    V4,
    /// 5.1.x: console JWT for `/instance/*`, optional OpenAPI tokens, `code` in errors.
    V5,
}

/// A job that exists on the simulated server.
#[derive(Clone, Debug)]
pub struct SimJob {
    /// Job id (`jobId`).
    pub id: i64,
    /// `jobName`.
    pub name: String,
    /// Static `jobParams`, copied into every instance.
    pub job_params: String,
    /// What a run logs and how it ends; `None`: the test drives the instance by hand.
    pub script: Option<Arc<JobScript>>,
}

/// The simulated server's configuration. The time constants are configurable so that
/// tests can run a whole lifecycle in seconds.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// 4.3.x or 5.1.x.
    pub version: Version,
    /// The one app's id.
    pub app_id: i64,
    /// The one app's name.
    pub app_name: String,
    /// The app's password (plaintext; `/authApp` also accepts its MD5).
    pub app_password: String,
    /// 5.x console user; `ADMIN` is a global admin, any other user has no app role.
    pub console_username: String,
    /// 5.x console password.
    pub console_password: String,
    /// 5.x `oms.auth.openapi.enable`: require app tokens on `/openApi/**`.
    pub openapi_auth: bool,
    /// Lifetime of app and console tokens (`oms.auth.security.jwt.expire-seconds`).
    pub token_ttl_ms: i64,
    /// `LOG_CACHE_TIME`: how long a temporary file is served without a rebuild.
    pub log_cache_ms: i64,
    /// Delay between an instance finishing and its log sync.
    pub sync_delay_ms: i64,
    /// Worker flush cadence, used when playing scripts.
    pub worker_flush_ms: i64,
    /// `true`: a Windows server, whose line separator is `"\r\n"`.
    pub crlf: bool,
    /// The server's time zone, used to format log line times.
    pub utc_offset_minutes: i32,
    /// `true`: synced logs are uploaded to a DFS (and downloaded when the stable file is
    /// missing); `false`: `EmptyDFsService`.
    pub dfs: bool,
    /// Seed of the RNG that orders equal-timestamp rows.
    pub seed: u64,
    /// The worker instances are dispatched to (`taskTrackerAddress`).
    pub worker: String,
    /// The jobs that exist.
    pub jobs: Vec<SimJob>,
    /// The time expression of jobs (`timeExpressionType`/`timeExpression` in `fetchJob`);
    /// a job not listed is API-triggered. FIXED_RATE/FIXED_DELAY jobs are "frequent":
    /// their live logs lose old rows at every clean-up (§4.3 item 4, §6.12).
    pub time_expressions: BTreeMap<i64, TimeExpression>,
    /// `timingCheck` period (`@Scheduled(fixedDelay = 120000)`, from server start);
    /// `<= 0`: no periodic clean-up (only [`SimCore::clean_now`]).
    pub clean_interval_ms: i64,
    /// A clean-up deletes the rows of frequent jobs' live logs whose `logTime` (worker
    /// clock) is older than the server's now minus this (10 min).
    pub clean_age_ms: i64,
    /// `true`: a stopped processor goes on and logs its scripted lines, which its worker
    /// still ships every `worker_flush_ms` after status 10 (the stop message is
    /// unreliable and the processor may ignore the interrupt). `false`: the lines not
    /// logged yet at the stop are never logged.
    pub logs_after_stop: bool,
    /// The server's time of day: the wall clock by default; a test gives its own (e.g.
    /// `powertail::clock::Clock::now_fn`) to move the server's time forward with it.
    pub clock: SimClock,
}

/// The time of day a simulator reads (epoch ms): the wall clock, or a function a test
/// gives it. The core itself never reads a clock: [`super::http`] passes `now` in.
#[derive(Clone, Default)]
pub struct SimClock(Option<Arc<dyn Fn() -> i64 + Send + Sync>>);

impl SimClock {
    /// Time read from `now` (epoch ms).
    pub fn from_fn(now: Arc<dyn Fn() -> i64 + Send + Sync>) -> Self {
        SimClock(Some(now))
    }

    /// The test's function, `None` for the wall clock.
    pub fn custom(&self) -> Option<&(dyn Fn() -> i64 + Send + Sync)> {
        self.0.as_deref()
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "SimClock(custom)" } else { "SimClock(wall)" })
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            version: Version::V4,
            app_id: 1,
            app_name: "llm-test-platform".into(),
            app_password: "secret".into(),
            console_username: "ADMIN".into(),
            console_password: "powerjob_admin".into(),
            openapi_auth: false,
            token_ttl_ms: 604_800_000,
            log_cache_ms: 10_000,
            sync_delay_ms: 60_000,
            worker_flush_ms: 5_000,
            crlf: false,
            utc_offset_minutes: 480,
            dfs: true,
            seed: 0,
            worker: "10.0.0.21:27777".into(),
            jobs: vec![SimJob { id: 12, name: "llm-start".into(), job_params: String::new(), script: None }],
            time_expressions: BTreeMap::new(),
            clean_interval_ms: 120_000,
            clean_age_ms: 600_000,
            logs_after_stop: false,
            clock: SimClock::default(),
        }
    }
}

impl SimConfig {
    /// Sets `job_id`'s time expression (e.g. [`TimeExpression::FixedRate`] to make it a
    /// frequent job whose old log rows are cleaned up).
    #[must_use]
    pub fn with_time_expression(mut self, job_id: i64, expression: TimeExpression) -> Self {
        self.time_expressions.insert(job_id, expression);
        self
    }

    /// The server's `System.lineSeparator()`.
    pub fn separator(&self) -> &'static str {
        if self.crlf {
            "\r\n"
        } else {
            "\n"
        }
    }
}

/// OmsLogger levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `WARN`
    Warn,
    /// `ERROR`
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

/// One OmsLogger record as a worker produces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The worker's clock when the log call happened, epoch ms.
    pub log_time: i64,
    /// Level.
    pub level: Level,
    /// Content; may contain `'\n'` (a stack trace ends with `'\n'`).
    pub content: String,
    /// The reporting worker's `ip:port`.
    pub worker: String,
}

/// One page of `/instance/log` (`StringPage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringPage {
    /// The page index, as echoed by the server.
    pub index: i64,
    /// `ceil(lines / 100)` of the file served.
    pub total_pages: i64,
    /// The page's lines, each followed by the server's separator.
    pub data: String,
}

impl StringPage {
    /// `StringPage.simple(text)`: index 0, one page, no trailing separator.
    pub fn simple(text: impl Into<String>) -> Self {
        StringPage { index: 0, total_pages: 1, data: text.into() }
    }

    /// The JSON `StringPage`.
    pub fn to_json(&self) -> Value {
        json!({"index": self.index, "totalPages": self.total_pages, "data": self.data})
    }
}

/// Which file a read was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFile {
    /// `<id>-temporary.log`: the live log, rebuilt every `log_cache_ms`.
    Temporary,
    /// `<id>-stable.log`: served forever once it exists.
    Stable,
}

/// A row of `local_instance_log`, with the order in which it was delivered.
#[derive(Clone, Debug)]
struct Row {
    seq: u64,
    record: Record,
}

/// An instance row (what `InstanceInfoDTO` is copied from).
#[derive(Clone, Debug)]
struct Instance {
    job_id: i64,
    app_id: i64,
    job_params: String,
    instance_params: Option<String>,
    status: i32,
    result: Option<String>,
    expected_trigger_time: Option<i64>,
    actual_trigger_time: Option<i64>,
    finished_time: Option<i64>,
    task_tracker_address: Option<String>,
    running_times: i64,
    gmt_create: i64,
    gmt_modified: i64,
    /// Run generation: a retry starts a new one, and events of older runs are ignored.
    run: u64,
}

/// The server's log state of one instance id (also for ids that have no instance row:
/// reading an unknown id writes a stable file too).
#[derive(Clone, Debug, Default)]
struct LogState {
    /// H2 rows that have arrived.
    rows: Vec<Row>,
    /// The id is in `instanceId2LastReportTime`.
    live: bool,
    /// `<id>-temporary.log`: built at, lines.
    temp: Option<(i64, FileLines)>,
    /// `<id>-stable.log`.
    stable: Option<FileLines>,
    /// Every record ever delivered (pending ones included), for [`SimCore::final_lines`].
    delivered: Vec<Row>,
    /// When the temporary file was (re)built, for [`SimCore::rebuilds`].
    rebuilds: Vec<i64>,
}

/// Something that happens at a given time.
#[derive(Clone, Debug)]
enum Event {
    /// A worker batch reaches the server. `logged_at` is the real time each record was
    /// logged (to cancel the lines a stopped processor never logs); `run` is set for
    /// scripted batches.
    Arrive { id: i64, rows: Vec<(i64, Row)>, run: Option<u64> },
    /// A delayed run leaves the time wheel.
    Dispatch { id: i64, run: u64 },
    /// The worker's first status report of a scripted run.
    Running { id: i64, run: u64 },
    /// The scripted run's final status report.
    Finish { id: i64, run: u64, status: i32, result: String },
    /// The log sync timer (in server memory: a restart loses it).
    Sync { id: i64 },
}

/// The simulated PowerJob server: instance table, log storage, scheduled events.
#[derive(Debug)]
pub struct SimCore {
    cfg: SimConfig,
    rng: StdRng,
    next_id: i64,
    next_seq: u64,
    instances: BTreeMap<i64, Instance>,
    logs: BTreeMap<i64, LogState>,
    /// The DFS bucket `log`: `oms-<id>.log` objects. Survives restarts.
    dfs: BTreeMap<i64, FileLines>,
    /// Pending events by (time, insertion order).
    queue: BTreeMap<(i64, u64), Event>,
    next_event: u64,
    /// The server's start: the first `tick`, or the last restart.
    started: bool,
    /// When the periodic `timingCheck` runs next (see [`clean`]).
    next_clean: Option<i64>,
    /// When it ran.
    clean_ups: Vec<i64>,
}

impl SimCore {
    /// A fresh server with `cfg`'s jobs and no instances.
    pub fn new(cfg: SimConfig) -> Self {
        SimCore {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            next_id: FIRST_INSTANCE_ID,
            next_seq: 0,
            instances: BTreeMap::new(),
            logs: BTreeMap::new(),
            dfs: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_event: 0,
            started: false,
            next_clean: None,
            clean_ups: Vec::new(),
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The job with this id, if it exists.
    pub fn job(&self, job_id: i64) -> Option<&SimJob> {
        self.cfg.jobs.iter().find(|j| j.id == job_id)
    }

    /// Whether the instance table holds this id.
    pub fn has_instance(&self, id: i64) -> bool {
        self.instances.contains_key(&id)
    }

    /// Whether the id is currently in the live map (`instanceId2LastReportTime`).
    pub fn is_live(&self, id: i64) -> bool {
        self.logs.get(&id).is_some_and(|l| l.live)
    }

    // --- scripting -------------------------------------------------------------------

    /// New instance in WAITING_DISPATCH (status 1). Ids are snowflake-like, > 2^53
    /// (start at 677182124851200064 and increase by a few thousand per instance).
    pub fn create_instance(&mut self, job_id: i64, instance_params: Option<String>, now: i64) -> i64 {
        self.tick(now);
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(INSTANCE_ID_STEP);
        let job_params = self.job(job_id).map(|j| j.job_params.clone()).unwrap_or_default();
        self.instances.insert(
            id,
            Instance {
                job_id,
                app_id: self.cfg.app_id,
                job_params,
                instance_params,
                status: 1,
                result: None,
                expected_trigger_time: Some(now),
                actual_trigger_time: None,
                finished_time: None,
                task_tracker_address: None,
                running_times: 0,
                gmt_create: now,
                gmt_modified: now,
                run: 0,
            },
        );
        id
    }

    /// Dispatch succeeded: status 2, `actualTriggerTime`, `taskTrackerAddress` = the worker.
    pub fn dispatch(&mut self, id: i64, now: i64) {
        self.tick(now);
        self.apply_dispatch(id, now);
    }

    /// Dispatch failed for lack of workers: status 4, `no worker available`, tracker
    /// `N/A`, finished at once (and synced later, like every finish but a cancel).
    pub fn fail_no_worker(&mut self, id: i64, now: i64) {
        self.tick(now);
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.actual_trigger_time = Some(now);
            inst.task_tracker_address = Some("N/A".into());
        }
        self.apply_finish(id, 4, "no worker available", now);
    }

    /// The worker's first report of this run: status 3, `runningTimes += 1`. Ignored
    /// unless the instance is waiting (1 or 2), as the server ignores stale reports.
    pub fn set_running(&mut self, id: i64, now: i64) {
        self.tick(now);
        self.apply_running(id, now);
    }

    /// Final status 4/5/9/10 with `result`, `finishedTime = now`; the log sync follows
    /// `sync_delay_ms` later (not for 9, CANCELED). Cancels the scripted status reports
    /// still due for this run.
    pub fn finish(&mut self, id: i64, status: i32, result: &str, now: i64) {
        self.tick(now);
        if let Some(run) = self.instances.get(&id).map(|i| i.run) {
            self.queue.retain(|_, e| !matches!(e, Event::Running { id: i, run: r } | Event::Finish { id: i, run: r, .. } if *i == id && *r == run));
        }
        self.apply_finish(id, status, result, now);
    }

    /// A worker batch that reaches the server at `arrive_at` (may be in the past or future).
    /// Until then it is invisible; at `arrive_at` the instance becomes "live" (its id enters
    /// instanceId2LastReportTime) and the rows are inserted.
    ///
    /// An empty `records` makes the id live without rows: the moment between the map
    /// entry and the insert, whose read caches an empty file (§4.5, §6 pitfall 4).
    pub fn deliver(&mut self, id: i64, records: Vec<Record>, arrive_at: i64) {
        let rows: Vec<(i64, Row)> =
            records.into_iter().map(|record| (arrive_at, self.delivered_row(id, record))).collect();
        self.schedule(arrive_at, Event::Arrive { id, rows, run: None });
    }

    /// Server restart (§6 pitfall 13): H2 rows, live map, pending batches that already
    /// arrived are lost; files on disk (stable files) survive; instance table survives.
    ///
    /// The sync timers are lost too (they live in server memory), so an instance that
    /// finished less than `sync_delay_ms` ago is never synced. Batches still on their way
    /// and the workers' future status reports are not affected.
    pub fn restart(&mut self, now: i64) {
        self.tick(now);
        for log in self.logs.values_mut() {
            log.rows.clear();
            log.live = false;
        }
        self.queue.retain(|_, e| !matches!(e, Event::Sync { .. }));
        self.start_clean_timer(now);
    }

    /// Every line a perfect reader can ever see for this instance: all records ever
    /// delivered (pending ones included), sorted by log_time (ties: delivery order),
    /// rendered (§4.4) and split into lines without separators. What a client that
    /// never poisons the log should end up holding (as a multiset).
    pub fn final_lines(&self, id: i64) -> Vec<String> {
        let Some(log) = self.logs.get(&id) else { return Vec::new() };
        let mut rows: Vec<&Row> = log.delivered.iter().collect();
        rows.sort_by_key(|r| (r.record.log_time, r.seq));
        FileLines::render(
            rows.into_iter().map(|r| (r.seq, &r.record)),
            self.cfg.separator(),
            self.cfg.utc_offset_minutes,
        )
        .lines
    }

    /// When the server (re)built this instance's temporary file, epoch ms, oldest first:
    /// a line that arrived at `t` is visible from the first rebuild at or after `t`.
    pub fn rebuilds(&self, id: i64) -> Vec<i64> {
        self.logs.get(&id).map(|l| l.rebuilds.clone()).unwrap_or_default()
    }

    // --- protocol --------------------------------------------------------------------

    /// Applies everything due at or before `now`, in time order: batch arrivals,
    /// delayed dispatches, scripted status reports, syncs.
    /// The periodic clean-up of frequent jobs' logs runs in between, in time order too.
    pub fn tick(&mut self, now: i64) {
        if !self.started {
            // The first call is the server's start.
            self.started = true;
            self.start_clean_timer(now);
        }
        loop {
            let next = self.queue.first_key_value().map(|(&(at, _), _)| at).filter(|&at| at <= now);
            // Clean-ups due before (or with) the next event run first.
            self.clean_until(next.unwrap_or(now));
            let Some(entry) = self.queue.first_entry().filter(|_| next.is_some()) else { break };
            let at = entry.key().0;
            let event = entry.remove();
            self.apply(event, at);
        }
    }

    /// One page of `/instance/log` (§4.1–4.5), including the "no online log" stable file.
    pub fn log_page(&mut self, id: i64, index: i64, now: i64) -> StringPage {
        self.log_page_traced(id, index, now).0
    }

    /// [`SimCore::log_page`], with the origin of each line of the page (`None`: the
    /// "no online log" placeholder): a test oracle for "which line did the server serve",
    /// telling apart lines with the same text (repeated stack-trace lines, replays).
    pub fn log_page_traced(&mut self, id: i64, index: i64, now: i64) -> (StringPage, Vec<Option<LineId>>) {
        self.tick(now);
        let kind = self.prepare(id, now);
        self.file(id, kind).page(index, self.cfg.separator())
    }

    /// `/instance/downloadLog`: the file, padded to a multiple of 4096 bytes by the
    /// `file2HttpResponse` bug (§4.8). `None` would be a failed preparation (a JSON
    /// failure envelope); the simulated preparation never fails.
    pub fn download_log(&mut self, id: i64, now: i64) -> Option<Vec<u8>> {
        self.download_log_file(id, now).map(|(_, body)| body)
    }

    /// As [`SimCore::download_log`], with the file the body came from (for the
    /// `Content-Disposition` file name).
    pub fn download_log_file(&mut self, id: i64, now: i64) -> Option<(LogFile, Vec<u8>)> {
        self.download_log_traced(id, now).map(|(kind, body, _)| (kind, body))
    }

    /// [`SimCore::download_log_file`], with the origin of each line of the file (in file
    /// order; the padding has none), like [`SimCore::log_page_traced`].
    pub fn download_log_traced(&mut self, id: i64, now: i64) -> Option<(LogFile, Vec<u8>, Vec<Option<LineId>>)> {
        self.tick(now);
        let kind = self.prepare(id, now);
        let file = self.file(id, kind);
        let body = pad_like_file2http(file.text(self.cfg.separator()).as_bytes());
        Some((kind, body, file.origins.clone()))
    }

    /// `/openApi/runJob`: a new instance, dispatched at once (`delay_ms <= 0`) or after
    /// `delay_ms`; a job with a script then plays it. The error is the envelope's message.
    pub fn run_job(
        &mut self,
        job_id: i64,
        instance_params: Option<String>,
        delay_ms: i64,
        now: i64,
    ) -> Result<i64, String> {
        self.tick(now);
        if self.job(job_id).is_none() {
            return Err(format!("IllegalArgumentException: can't find job by jobId: {job_id}"));
        }
        let id = self.create_instance(job_id, instance_params, now);
        let at = now.saturating_add(delay_ms.max(0));
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.expected_trigger_time = Some(at);
        }
        if delay_ms <= 0 {
            self.start_run(id, now);
        } else {
            self.schedule(at, Event::Dispatch { id, run: 0 });
        }
        Ok(id)
    }

    /// `/openApi/stopInstance` (§2.6): only 1, 2, 3; → 10 `stopped by user`. The scripted
    /// reports are cancelled; lines already logged still arrive with the worker's next
    /// flush. The scripted lines not logged yet are cancelled too, unless
    /// [`SimConfig::logs_after_stop`]: then the processor goes on logging and they arrive
    /// in its worker's flush batches as scheduled, after status 10 (and after the sync,
    /// if they are that late: a new live log of late lines, §6 pitfall 9).
    pub fn stop_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.tick(now);
        let Some(inst) = self.instances.get(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if !matches!(inst.status, 1..=3) {
            return Err("IllegalArgumentException: can't stop finished instance!".into());
        }
        let run = inst.run;
        let cut_lines_after = (!self.cfg.logs_after_stop).then_some(now);
        self.cancel_run(id, run, cut_lines_after);
        self.apply_finish(id, 10, "stopped by user", now);
        Ok(())
    }

    /// `/openApi/cancelInstance` (§2.7): only while status 1 (a delayed run still in the
    /// time wheel) → 9 `canceled by user`, no sync.
    pub fn cancel_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.tick(now);
        let Some(inst) = self.instances.get(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if inst.status != 1 {
            return Err("PowerJobException: instance already up and running".into());
        }
        let run = inst.run;
        self.cancel_run(id, run, Some(now));
        self.apply_finish(id, 9, "canceled by user", now);
        Ok(())
    }

    /// `/openApi/retryInstance` (§2.8): only finished instances. The same id goes back to
    /// 1 with its times reset and is dispatched again (playing the job's script again).
    /// The old stable file stays, so after this run's sync the *old* log is served
    /// (§6 pitfall 11); a sync still pending from the previous run fires as scheduled.
    pub fn retry_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.tick(now);
        let Some(inst) = self.instances.get_mut(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if !matches!(inst.status, 4 | 5 | 9 | 10) {
            return Err("PowerJobException: Only stopped instance can be retry!".into());
        }
        inst.status = 1;
        inst.run = inst.run.wrapping_add(1);
        inst.expected_trigger_time = Some(now);
        inst.actual_trigger_time = None;
        inst.finished_time = None;
        inst.task_tracker_address = None;
        inst.result = None;
        inst.gmt_modified = now;
        self.start_run(id, now);
        Ok(())
    }

    /// The instance's status, if it exists.
    pub fn instance_status(&mut self, id: i64, now: i64) -> Option<i32> {
        self.tick(now);
        self.instances.get(&id).map(|i| i.status)
    }

    /// `InstanceInfoDTO`, field for field (§2.10).
    pub fn instance_info(&mut self, id: i64, now: i64) -> Option<Value> {
        self.tick(now);
        let i = self.instances.get(&id)?;
        Some(json!({
            "jobId": i.job_id,
            "appId": i.app_id,
            "instanceId": id,
            "wfInstanceId": null,
            "jobParams": i.job_params,
            "instanceParams": i.instance_params,
            "status": i.status,
            "type": 1,
            "result": i.result,
            "expectedTriggerTime": i.expected_trigger_time,
            "actualTriggerTime": i.actual_trigger_time,
            "finishedTime": i.finished_time,
            "taskTrackerAddress": i.task_tracker_address,
            "runningTimes": i.running_times,
            "gmtCreate": iso(i.gmt_create),
            "gmtModified": iso(i.gmt_modified),
        }))
    }

    /// Every instance, as `InstanceInfoDTO`s in id order (for `/openApi/queryInstance`).
    pub fn instances_info(&mut self, now: i64) -> Vec<Value> {
        self.tick(now);
        let ids: Vec<i64> = self.instances.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.instance_info(id, now)).collect()
    }

    /// `JobInfoDTO`, field for field (§2.12): a standalone job that logs online at INFO,
    /// API-triggered unless [`SimConfig::time_expressions`] says otherwise.
    pub fn job_info(&self, job_id: i64) -> Option<Value> {
        let job = self.job(job_id)?;
        Some(json!({
            "id": job.id,
            "jobName": job.name,
            "jobDescription": "",
            "appId": self.cfg.app_id,
            "jobParams": job.job_params,
            "timeExpressionType": self.time_expression(job_id).type_code(),
            "timeExpression": self.time_expression(job_id).expression(),
            "executeType": 1,
            "processorType": 1,
            "processorInfo": "tech.powerjob.sim.SimulatedProcessor",
            "maxInstanceNum": 0,
            "concurrency": 5,
            "instanceTimeLimit": 0,
            "instanceRetryNum": 0,
            "taskRetryNum": 0,
            "status": 1,
            "nextTriggerTime": null,
            "minCpuCores": 0.0,
            "minMemorySpace": 0.0,
            "minDiskSpace": 0.0,
            "designatedWorkers": "",
            "maxWorkerCount": 0,
            "notifyUserIds": null,
            "gmtCreate": iso(JOB_GMT_CREATE),
            "gmtModified": iso(JOB_GMT_CREATE),
            "extra": null,
            "dispatchStrategy": 1,
            "dispatchStrategyConfig": null,
            "lifecycle": "{}",
            "alarmConfig": {"alertThreshold": 0, "statisticWindowLen": 0, "silenceWindowLen": 0},
            "tag": null,
            "logConfig": {"type": 1, "level": 2, "loggerName": null},
            "advancedRuntimeConfig": null,
        }))
    }

    // --- internals -------------------------------------------------------------------

    fn schedule(&mut self, at: i64, event: Event) {
        self.queue.insert((at, self.next_event), event);
        self.next_event = self.next_event.wrapping_add(1);
    }

    /// A row for `record`, also remembered for [`SimCore::final_lines`].
    fn delivered_row(&mut self, id: i64, record: Record) -> Row {
        let row = Row { seq: self.next_seq, record };
        self.next_seq = self.next_seq.wrapping_add(1);
        self.logs.entry(id).or_default().delivered.push(row.clone());
        row
    }

    fn apply(&mut self, event: Event, at: i64) {
        let current = |core: &SimCore, id: i64, run: u64| core.instances.get(&id).is_some_and(|i| i.run == run);
        match event {
            Event::Arrive { id, rows, .. } => {
                // An empty batch is the instant between the live-map entry and the
                // insert: a live log without rows, served as an empty page (§4.5).
                let log = self.logs.entry(id).or_default();
                // The id enters the live map before the rows are inserted.
                log.live = true;
                log.rows.extend(rows.into_iter().map(|(_, row)| row));
            }
            Event::Dispatch { id, run } if current(self, id, run) => self.start_run(id, at),
            Event::Running { id, run } if current(self, id, run) => self.apply_running(id, at),
            Event::Finish { id, run, status, result } if current(self, id, run) => {
                self.apply_finish(id, status, &result, at);
            }
            Event::Sync { id } => self.sync(id),
            Event::Dispatch { .. } | Event::Running { .. } | Event::Finish { .. } => {}
        }
    }

    fn apply_dispatch(&mut self, id: i64, now: i64) {
        if let Some(inst) = self.instances.get_mut(&id) {
            inst.status = 2;
            inst.actual_trigger_time = Some(now);
            inst.task_tracker_address = Some(self.cfg.worker.clone());
            inst.gmt_modified = now;
        }
    }

    fn apply_running(&mut self, id: i64, now: i64) {
        if let Some(inst) = self.instances.get_mut(&id) {
            if matches!(inst.status, 1 | 2) {
                inst.status = 3;
                inst.running_times = inst.running_times.saturating_add(1);
                inst.gmt_modified = now;
            }
        }
    }

    fn apply_finish(&mut self, id: i64, status: i32, result: &str, now: i64) {
        let Some(inst) = self.instances.get_mut(&id) else { return };
        inst.status = status;
        inst.result = Some(result.to_owned());
        inst.finished_time = Some(now);
        inst.gmt_modified = now;
        // `processFinishedInstance` schedules the sync; a cancel does not go through it.
        if status != 9 {
            self.schedule(now.saturating_add(self.cfg.sync_delay_ms), Event::Sync { id });
        }
    }

    /// Dispatches now and, for a scripted job, schedules the run's events from `start`.
    fn start_run(&mut self, id: i64, start: i64) {
        self.apply_dispatch(id, start);
        let Some(inst) = self.instances.get(&id) else { return };
        let run = inst.run;
        let Some(script) = self.job(inst.job_id).and_then(|j| j.script.clone()) else { return };
        // The run reads its params as a start script would (`${port:-8000}`).
        let script = script.for_run(&inst.job_params, inst.instance_params.as_deref());
        self.schedule(start.saturating_add(script.running_at_ms), Event::Running { id, run });
        let flush = self.cfg.worker_flush_ms.max(1);
        let mut lines: Vec<_> = script.lines.iter().filter(|l| l.worker < script.workers.len()).collect();
        lines.sort_by_key(|l| l.at_ms);
        // (arrive_at, worker) -> records logged before that flush tick, in log order.
        let mut batches: BTreeMap<(i64, usize), Vec<(i64, Record)>> = BTreeMap::new();
        for line in lines {
            let Some(worker) = script.workers.get(line.worker) else { continue };
            let logged_at = start.saturating_add(line.at_ms);
            let first_tick = start.saturating_add(worker.flush_phase_ms);
            // The first flush tick strictly after the log call.
            let tick = if logged_at < first_tick {
                first_tick
            } else {
                let k = (logged_at - first_tick) / flush + 1;
                first_tick.saturating_add(k.saturating_mul(flush))
            };
            let record = Record {
                log_time: logged_at.saturating_add(worker.clock_skew_ms),
                level: line.level,
                content: line.content.clone(),
                worker: worker.address.clone(),
            };
            batches.entry((tick.saturating_add(INSERT_DELAY_MS), line.worker)).or_default().push((logged_at, record));
        }
        for ((arrive_at, _), records) in batches {
            let mut records = records.into_iter().peekable();
            while records.peek().is_some() {
                let chunk: Vec<(i64, Record)> = records.by_ref().take(BATCH_RECORDS).collect();
                let rows = chunk.into_iter().map(|(logged_at, r)| (logged_at, self.delivered_row(id, r))).collect();
                self.schedule(arrive_at, Event::Arrive { id, rows, run: Some(run) });
            }
        }
        self.schedule(
            start.saturating_add(script.end_ms),
            Event::Finish { id, run, status: script.final_status, result: script.result.clone() },
        );
    }

    /// Drops the run's future: its delayed dispatch, status reports and, with
    /// `cut_lines_after`, the scripted lines logged after that time (which the stopped
    /// processor never logs).
    fn cancel_run(&mut self, id: i64, run: u64, cut_lines_after: Option<i64>) {
        let Some(now) = cut_lines_after else {
            self.queue.retain(|_, event| match event {
                Event::Dispatch { id: i, run: r }
                | Event::Running { id: i, run: r }
                | Event::Finish { id: i, run: r, .. } => !(*i == id && *r == run),
                Event::Arrive { .. } | Event::Sync { .. } => true,
            });
            return;
        };
        let mut cancelled: Vec<u64> = Vec::new();
        self.queue.retain(|_, event| match event {
            Event::Dispatch { id: i, run: r }
            | Event::Running { id: i, run: r }
            | Event::Finish { id: i, run: r, .. } => !(*i == id && *r == run),
            Event::Arrive { id: i, rows, run: Some(r) } if *i == id && *r == run => {
                rows.retain(|(logged_at, row)| {
                    let keep = *logged_at <= now;
                    if !keep {
                        cancelled.push(row.seq);
                    }
                    keep
                });
                !rows.is_empty()
            }
            Event::Arrive { .. } | Event::Sync { .. } => true,
        });
        if let Some(log) = self.logs.get_mut(&id) {
            log.delivered.retain(|r| !cancelled.contains(&r.seq));
        }
    }

    /// `sync(instanceId)`: stable file (an existing one is reused: the poisoning bug),
    /// DFS upload, rows deleted, id out of the live map.
    fn sync(&mut self, id: i64) {
        let log = self.logs.entry(id).or_default();
        if log.stable.is_none() {
            log.stable = Some(if log.live {
                build_lines(&log.rows, &mut self.rng, &self.cfg)
            } else {
                self.dfs.get(&id).cloned().unwrap_or_else(FileLines::placeholder)
            });
        }
        if self.cfg.dfs {
            if let Some(stable) = &log.stable {
                self.dfs.insert(id, stable.clone());
            }
        }
        log.rows.clear();
        log.live = false;
    }

    /// Makes sure the file a read of `id` serves exists (§4.3 step 2) and says which.
    fn prepare(&mut self, id: i64, now: i64) -> LogFile {
        let log = self.logs.entry(id).or_default();
        if log.live {
            let fresh =
                matches!(&log.temp, Some((built_at, _)) if now.saturating_sub(*built_at) < self.cfg.log_cache_ms);
            if !fresh {
                log.temp = Some((now, build_lines(&log.rows, &mut self.rng, &self.cfg)));
                log.rebuilds.push(now);
            }
            LogFile::Temporary
        } else {
            if log.stable.is_none() {
                // Not live and no file: the DFS copy, else the placeholder, which stays
                // forever (the poisoning bug when the first batch has not arrived yet).
                log.stable = Some(self.dfs.get(&id).cloned().unwrap_or_else(FileLines::placeholder));
            }
            LogFile::Stable
        }
    }

    fn file(&self, id: i64, kind: LogFile) -> &FileLines {
        static EMPTY: FileLines = FileLines { lines: Vec::new(), origins: Vec::new() };
        let log = self.logs.get(&id);
        let file = match kind {
            LogFile::Temporary => log.and_then(|l| l.temp.as_ref()).map(|(_, file)| file),
            LogFile::Stable => log.and_then(|l| l.stable.as_ref()),
        };
        file.unwrap_or(&EMPTY)
    }
}

/// The file rebuilt from H2: rows `ORDER BY logTime`, ties in a fresh random order.
fn build_lines(rows: &[Row], rng: &mut StdRng, cfg: &SimConfig) -> FileLines {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    // Shuffle, then a stable sort: equal log times end up in a random order.
    sorted.shuffle(rng);
    sorted.sort_by_key(|r| r.record.log_time);
    FileLines::render(sorted.into_iter().map(|r| (r.seq, &r.record)), cfg.separator(), cfg.utc_offset_minutes)
}

#[cfg(test)]
mod tests {
    use super::super::script::{ScriptLine, ScriptWorker};
    use super::*;

    /// 2024-06-01T08:00:00Z, 16:00 in the server's +08:00.
    const T0: i64 = 1_717_228_800_000;

    fn rec(log_time: i64, content: &str) -> Record {
        Record { log_time, level: Level::Info, content: content.into(), worker: "10.0.0.21:27777".into() }
    }

    fn core() -> SimCore {
        SimCore::new(SimConfig::default())
    }

    fn lines_of(page: &StringPage) -> Vec<String> {
        read_lines(&page.data)
    }

    /// A running instance with `n` records delivered at `T0`.
    fn running_with(c: &mut SimCore, n: i64) -> i64 {
        let id = c.create_instance(12, None, T0);
        c.dispatch(id, T0);
        c.set_running(id, T0);
        let records = (0..n).map(|i| rec(T0 + i, &format!("line {i}"))).collect();
        c.deliver(id, records, T0);
        id
    }

    #[test]
    fn renders_like_the_fixture() {
        let r = rec(T0 + 5_123, "start processing");
        assert_eq!(render(&r, 480), "2024-06-01 16:00:05.123 [10.0.0.21:27777] INFO start processing");
        assert_eq!(iso(T0 + 12), "2024-06-01T08:00:00.012+00:00");
    }

    #[test]
    fn ids_are_snowflake_sized_and_increasing() {
        let mut c = core();
        let a = c.create_instance(12, None, T0);
        let b = c.create_instance(12, None, T0);
        assert_eq!(a, FIRST_INSTANCE_ID);
        assert!(a > 1 << 53 && b > a && b - a < 10_000);
    }

    #[test]
    fn pages_hold_100_lines_with_separators() {
        let mut c = core();
        let id = running_with(&mut c, 138);
        let p0 = c.log_page(id, 0, T0);
        assert_eq!((p0.index, p0.total_pages), (0, 2));
        assert_eq!(lines_of(&p0).len(), 100);
        assert!(p0.data.ends_with('\n') && !p0.data.ends_with("\n\n"));
        let p1 = c.log_page(id, 1, T0);
        assert_eq!(lines_of(&p1).len(), 38);
        assert!(lines_of(&p1)[37].ends_with("line 137"));
        let past = c.log_page(id, 5, T0);
        assert_eq!(past, StringPage { index: 5, total_pages: 2, data: String::new() });
        let negative = c.log_page(id, -1, T0);
        assert_eq!(negative, StringPage { index: -1, total_pages: 2, data: String::new() });
        let huge = c.log_page(id, i64::MAX, T0);
        assert_eq!(huge.data, "");
    }

    #[test]
    fn live_log_without_rows_yet_is_empty_and_cached() {
        let mut c = core();
        let id = c.create_instance(12, None, T0);
        c.deliver(id, Vec::new(), T0);
        c.deliver(id, vec![rec(T0, "a")], T0 + 100);
        let empty = StringPage { index: 0, total_pages: 0, data: String::new() };
        assert_eq!(c.log_page(id, 0, T0), empty);
        // The empty file is served for the whole cache time, then rebuilt.
        assert_eq!(c.log_page(id, 0, T0 + 9_999), empty);
        assert_eq!(c.log_page(id, 0, T0 + 10_000).total_pages, 1);
        // Never poisoned: the read came after the live-map entry.
        c.finish(id, 5, "ok", T0 + 10_000);
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 70_000)).len(), 1);
    }

    #[test]
    fn temporary_file_is_cached_for_log_cache_ms() {
        let mut c = core();
        let id = running_with(&mut c, 3);
        let first = c.log_page(id, 0, T0);
        c.deliver(id, vec![rec(T0 + 100, "late")], T0 + 1_000);
        // Within the cache time: the identical snapshot, although a batch arrived.
        assert_eq!(c.log_page(id, 0, T0 + 9_999), first);
        assert_eq!(c.rebuilds(id), [T0]);
        // Cache expired: rebuilt with the new row.
        let rebuilt = c.log_page(id, 0, T0 + 10_000);
        assert_eq!(lines_of(&rebuilt).len(), 4);
        assert!(rebuilt.data.contains("late"));
        assert_eq!(c.rebuilds(id), [T0, T0 + 10_000]);
    }

    #[test]
    fn equal_timestamps_swap_between_rebuilds() {
        let mut c = core();
        let id = c.create_instance(12, None, T0);
        let records = (0..10).map(|i| rec(T0, &format!("tie {i}"))).collect();
        c.deliver(id, records, T0);
        let mut orders = std::collections::BTreeSet::new();
        for k in 0..20 {
            let p = c.log_page(id, 0, T0 + k * 10_000);
            let mut sorted = lines_of(&p);
            orders.insert(sorted.clone());
            sorted.sort();
            assert_eq!(sorted.len(), 10);
        }
        assert!(orders.len() > 1, "ties never changed order");
        // Deterministic: the same seed gives the same sequence of orders.
        let mut again = core();
        let id2 = again.create_instance(12, None, T0);
        again.deliver(id2, (0..10).map(|i| rec(T0, &format!("tie {i}"))).collect(), T0);
        let mut c3 = core();
        let id3 = c3.create_instance(12, None, T0);
        c3.deliver(id3, (0..10).map(|i| rec(T0, &format!("tie {i}"))).collect(), T0);
        assert_eq!(again.log_page(id2, 0, T0), c3.log_page(id3, 0, T0));
    }

    #[test]
    fn records_with_newlines_are_several_lines_and_trailing_empty_line() {
        let mut c = core();
        let id = c.create_instance(12, None, T0);
        let trace = "failed\njava.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n";
        c.deliver(id, vec![rec(T0, trace), rec(T0 + 1, "after\rcr")], T0);
        let lines = lines_of(&c.log_page(id, 0, T0));
        assert_eq!(lines.len(), 6);
        assert!(lines[0].ends_with("INFO failed"));
        assert_eq!(lines[2], "\tat a.B.c(B.java:1)");
        assert_eq!(lines[3], "");
        assert!(lines[4].ends_with("INFO after"));
        assert_eq!(lines[5], "cr");
        assert_eq!(c.final_lines(id), lines);
    }

    #[test]
    fn placeholder_for_unknown_ids_is_a_normal_page() {
        let mut c = core();
        let p = c.log_page(42, 0, T0);
        assert_eq!(p, StringPage { index: 0, total_pages: 1, data: format!("{NO_ONLINE_LOG}\n") });
        assert_eq!(c.log_page(42, 1, T0), StringPage { index: 1, total_pages: 1, data: String::new() });
        assert_eq!(StringPage::simple(PREPARING).to_json()["totalPages"], 1);
    }

    #[test]
    fn reading_before_the_first_batch_poisons_the_log_forever() {
        let mut c = core();
        let id = c.run_job(12, None, 0, T0).expect("job 12 exists");
        // Read right after runJob: nothing arrived, the stable placeholder is written.
        assert_eq!(c.log_page(id, 0, T0 + 10).data, format!("{NO_ONLINE_LOG}\n"));
        c.set_running(id, T0 + 1_000);
        c.deliver(id, vec![rec(T0 + 1_000, "real line")], T0 + 5_020);
        // While live, the temporary file shows the real log.
        assert!(c.log_page(id, 0, T0 + 6_000).data.contains("real line"));
        c.finish(id, 5, "ok", T0 + 7_000);
        assert!(c.log_page(id, 0, T0 + 66_999).data.contains("real line"));
        // Sync reused the poisoned stable file and deleted the rows.
        for t in [T0 + 67_000, T0 + 1_000_000] {
            assert_eq!(c.log_page(id, 0, t).data, format!("{NO_ONLINE_LOG}\n"));
        }
        // ... and uploaded it: a restart does not heal it either.
        c.restart(T0 + 2_000_000);
        assert_eq!(c.log_page(id, 0, T0 + 2_000_001).data, format!("{NO_ONLINE_LOG}\n"));
        assert_eq!(c.final_lines(id).len(), 1);
    }

    #[test]
    fn sync_keeps_the_log_when_nobody_read_early() {
        let mut c = core();
        let id = running_with(&mut c, 3);
        c.finish(id, 5, "ok", T0 + 1_000);
        let before = lines_of(&c.log_page(id, 0, T0 + 1_000));
        let after = lines_of(&c.log_page(id, 0, T0 + 61_000));
        assert_eq!(after, before);
        assert!(!c.is_live(id));
    }

    #[test]
    fn late_lines_after_sync_form_a_new_live_log() {
        let mut c = core();
        let id = running_with(&mut c, 5);
        c.finish(id, 5, "ok", T0 + 1_000);
        c.deliver(id, vec![rec(T0 + 900, "late 1"), rec(T0 + 950, "late 2")], T0 + 70_000);
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 69_000)).len(), 5);
        let p = c.log_page(id, 0, T0 + 70_000);
        let lines = lines_of(&p);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("late 1") && lines[1].ends_with("late 2"));
        // The perfect reader's view has all 7 lines.
        assert_eq!(c.final_lines(id).len(), 7);
    }

    #[test]
    fn crlf_server_separates_with_crlf() {
        let mut c = SimCore::new(SimConfig { crlf: true, ..SimConfig::default() });
        let id = c.create_instance(12, None, T0);
        c.deliver(id, vec![rec(T0, "a\nb"), rec(T0 + 1, "c")], T0);
        let p = c.log_page(id, 0, T0);
        assert!(p.data.ends_with("INFO c\r\n"));
        assert_eq!(p.data.matches("\r\n").count(), 3);
        assert_eq!(lines_of(&p).len(), 3);
        assert_eq!(c.log_page(42, 0, T0).data, format!("{NO_ONLINE_LOG}\r\n"));
    }

    #[test]
    fn restart_loses_rows_but_keeps_stable_files_and_future_batches() {
        let mut c = SimCore::new(SimConfig { dfs: false, ..SimConfig::default() });
        let done = running_with(&mut c, 2);
        c.finish(done, 5, "ok", T0);
        assert_eq!(lines_of(&c.log_page(done, 0, T0 + 60_000)).len(), 2);
        let id = running_with(&mut c, 3);
        c.deliver(id, vec![rec(T0 + 50, "after restart")], T0 + 70_000);
        c.restart(T0 + 60_500);
        // Synced log: the stable file is on disk and survives.
        assert_eq!(lines_of(&c.log_page(done, 0, T0 + 60_600)).len(), 2);
        // Live log: rows and live map lost, so the placeholder.
        assert_eq!(c.log_page(id, 0, T0 + 60_600).data, format!("{NO_ONLINE_LOG}\n"));
        // A batch after the restart makes the id live again: the temporary file wins
        // over the stable placeholder while it is live.
        let p = c.log_page(id, 0, T0 + 70_000);
        assert_eq!(lines_of(&p).len(), 1);
        assert!(p.data.contains("after restart"));
        assert_eq!(c.instance_status(id, T0 + 70_000), Some(3));
    }

    #[test]
    fn restart_drops_pending_syncs() {
        let mut c = core();
        let id = running_with(&mut c, 2);
        c.finish(id, 5, "ok", T0);
        c.restart(T0 + 1_000);
        c.deliver(id, vec![rec(T0 + 10, "late")], T0 + 2_000);
        // No sync ever happens: the late rows stay live.
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 500_000)).len(), 1);
        assert!(c.is_live(id));
    }

    #[test]
    fn download_is_padded_to_4096() {
        let mut c = core();
        let id = running_with(&mut c, 1);
        let (kind, body) = c.download_log_file(id, T0).expect("prepared");
        assert_eq!(kind, LogFile::Temporary);
        assert_eq!(body.len(), 4_096);
        let text = render(&rec(T0, "line 0"), 480) + "\n";
        assert_eq!(&body[..text.len()], text.as_bytes());
        assert!(body[text.len()..].iter().all(|b| *b == 0));
        // Two chunks: the second is padded with stale bytes of the first.
        let big = running_with(&mut c, 80);
        let body = c.download_log(big, T0).expect("prepared");
        assert_eq!(body.len(), 8_192);
        assert!(body[4_096..].iter().any(|b| *b != 0));
    }

    #[test]
    fn status_machine_and_errors() {
        let mut c = core();
        assert_eq!(c.run_job(999, None, 0, T0), Err("IllegalArgumentException: can't find job by jobId: 999".into()));
        let id = c.run_job(12, Some("p".into()), 0, T0).expect("runs");
        let info = c.instance_info(id, T0).expect("exists");
        assert_eq!((info["status"].as_i64(), info["taskTrackerAddress"].as_str()), (Some(2), Some("10.0.0.21:27777")));
        assert_eq!(c.cancel_instance(id, T0), Err("PowerJobException: instance already up and running".into()));
        assert_eq!(c.retry_instance(id, T0), Err("PowerJobException: Only stopped instance can be retry!".into()));
        c.set_running(id, T0 + 1);
        c.set_running(id, T0 + 2);
        assert_eq!(c.instance_info(id, T0 + 2).expect("exists")["runningTimes"], 1);
        c.stop_instance(id, T0 + 3).expect("stops");
        let info = c.instance_info(id, T0 + 3).expect("exists");
        assert_eq!((info["status"].as_i64(), info["result"].as_str()), (Some(10), Some("stopped by user")));
        assert_eq!(c.stop_instance(id, T0 + 4), Err("IllegalArgumentException: can't stop finished instance!".into()));
        c.retry_instance(id, T0 + 5).expect("retries");
        let info = c.instance_info(id, T0 + 5).expect("exists");
        assert_eq!(info["status"], 2);
        assert_eq!(info["finishedTime"], Value::Null);
        assert_eq!(info["result"], Value::Null);
        // Delayed run: waits in status 1 and can be cancelled.
        let delayed = c.run_job(12, None, 60_000, T0).expect("runs");
        assert_eq!(c.instance_status(delayed, T0 + 59_999), Some(1));
        c.cancel_instance(delayed, T0 + 1).expect("cancels");
        assert_eq!(c.instance_status(delayed, T0 + 120_000), Some(9));
        let d2 = c.run_job(12, None, 1_000, T0).expect("runs");
        assert_eq!(c.instance_status(d2, T0 + 1_000), Some(2));
        assert_eq!(c.instance_info(d2, T0 + 1_000).expect("exists")["expectedTriggerTime"], T0 + 1_000);
        assert!(c.instance_info(42, T0).is_none());
        let fail = c.create_instance(12, None, T0);
        c.fail_no_worker(fail, T0);
        assert_eq!(c.instance_info(fail, T0).expect("exists")["taskTrackerAddress"], "N/A");
    }

    fn scripted(script: JobScript) -> SimCore {
        let job = SimJob { id: 7, name: "scripted".into(), job_params: String::new(), script: Some(Arc::new(script)) };
        SimCore::new(SimConfig { jobs: vec![job], ..SimConfig::default() })
    }

    #[test]
    fn script_playback_timing_and_late_lines_after_finish() {
        let script = JobScript {
            workers: vec![ScriptWorker { address: "w:1".into(), clock_skew_ms: 0, flush_phase_ms: 1_000 }],
            lines: vec![
                ScriptLine { at_ms: 500, level: Level::Info, content: "a".into(), worker: 0 },
                ScriptLine { at_ms: 1_000, level: Level::Info, content: "b".into(), worker: 0 },
                ScriptLine { at_ms: 7_000, level: Level::Warn, content: "c".into(), worker: 0 },
            ],
            running_at_ms: 2_000,
            end_ms: 7_500,
            final_status: 5,
            result: "done".into(),
        };
        let mut c = scripted(script);
        let id = c.run_job(7, None, 0, T0).expect("runs");
        // "a" (logged at 500) ships with the flush tick at 1000 and lands 20 ms later.
        assert_eq!(c.instance_status(id, T0 + 1_019), Some(2));
        assert!(!c.is_live(id));
        c.tick(T0 + 1_020);
        assert!(c.is_live(id));
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 1_020)).len(), 1);
        assert_eq!(c.instance_status(id, T0 + 2_000), Some(3));
        // Finished at 7500 ...
        assert_eq!(c.instance_status(id, T0 + 7_500), Some(5));
        let info = c.instance_info(id, T0 + 7_500).expect("exists");
        assert_eq!(info["finishedTime"], T0 + 7_500);
        // ... "b" (1000, not strictly before the 1000 tick) came with the 6000 tick, and
        // "c" (7000) comes with the 11000 tick: after the finish. The file built at 1020
        // is served until 11020.
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 11_019)).len(), 1);
        let late = c.log_page(id, 0, T0 + 11_020);
        assert_eq!(lines_of(&late).len(), 3);
        assert!(lines_of(&late)[2].ends_with("WARN c"));
        assert_eq!(c.final_lines(id), lines_of(&late));
    }

    #[test]
    fn script_skew_batches_of_20_and_stop_cancels_future_lines() {
        let lines = (0..50)
            .map(|i| ScriptLine { at_ms: i * 100, level: Level::Info, content: format!("l{i}"), worker: 0 })
            .collect();
        let script = JobScript {
            workers: vec![ScriptWorker { address: "w:1".into(), clock_skew_ms: -300, flush_phase_ms: 0 }],
            lines,
            running_at_ms: 0,
            end_ms: 100_000,
            final_status: 5,
            result: "done".into(),
        };
        let mut c = scripted(script);
        let id = c.run_job(7, None, 0, T0).expect("runs");
        // Lines 0..=49 logged at 0..4900 all flush at 5000 in 3 batches.
        let arrivals: Vec<usize> = c
            .queue
            .values()
            .filter_map(|e| match e {
                Event::Arrive { rows, .. } => Some(rows.len()),
                _ => None,
            })
            .collect();
        assert_eq!(arrivals, [20, 20, 10]);
        assert_eq!(c.final_lines(id)[0], format!("{} [w:1] INFO l0", local_time(T0 - 300, 480)));
        c.stop_instance(id, T0 + 2_450).expect("stops");
        // Lines logged up to 2400 (25 lines) still arrive; the rest never existed.
        assert_eq!(c.final_lines(id).len(), 25);
        let p = c.log_page(id, 0, T0 + 5_020);
        assert_eq!(lines_of(&p).len(), 25);
        assert_eq!(c.instance_status(id, T0 + 200_000), Some(10));
    }

    #[test]
    fn retry_keeps_the_old_stable_file() {
        let mut c = core();
        let id = running_with(&mut c, 3);
        c.finish(id, 4, "failed", T0);
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 60_000)).len(), 3);
        c.retry_instance(id, T0 + 100_000).expect("retries");
        c.set_running(id, T0 + 100_001);
        c.deliver(id, vec![rec(T0 + 100_002, "second run")], T0 + 100_010);
        let p = c.log_page(id, 0, T0 + 100_010);
        assert_eq!(lines_of(&p).len(), 1);
        c.finish(id, 5, "ok", T0 + 101_000);
        // After the retry's sync the old stable file is served again.
        let synced = lines_of(&c.log_page(id, 0, T0 + 161_000));
        assert_eq!(synced.len(), 3);
        assert!(!synced.iter().any(|l| l.contains("second run")));
    }

    #[test]
    fn stopped_processor_can_go_on_logging() {
        let lines = (0..50)
            .map(|i| ScriptLine { at_ms: i * 100, level: Level::Info, content: format!("l{i}"), worker: 0 })
            .collect();
        let script = JobScript {
            workers: vec![ScriptWorker { address: "w:1".into(), clock_skew_ms: 0, flush_phase_ms: 0 }],
            lines,
            running_at_ms: 0,
            end_ms: 100_000,
            final_status: 5,
            result: "done".into(),
        };
        let job = SimJob { id: 7, name: "scripted".into(), job_params: String::new(), script: Some(Arc::new(script)) };
        let mut c = SimCore::new(SimConfig { jobs: vec![job], logs_after_stop: true, ..SimConfig::default() });
        let id = c.run_job(7, None, 0, T0).expect("runs");
        c.stop_instance(id, T0 + 2_450).expect("stops");
        assert_eq!(c.instance_status(id, T0 + 2_450), Some(10));
        // Every line still arrives, with the 5000 flush, after status 10 ...
        assert_eq!(c.final_lines(id).len(), 50);
        assert!(!c.is_live(id));
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 5_020)).len(), 50);
        // ... and no scripted status report follows the stop.
        assert_eq!(c.instance_status(id, T0 + 100_000), Some(10));
        assert_eq!(c.instance_info(id, T0 + 100_000).expect("exists")["result"], "stopped by user");
    }

    #[test]
    fn retried_script_replays_as_a_second_run() {
        let script = JobScript::from_text("a\nb\nc", 3_000, 4, "boom");
        let mut c = scripted(script);
        let id = c.run_job(7, None, 0, T0).expect("runs");
        assert_eq!(c.instance_status(id, T0 + 3_001), Some(4));
        let first = lines_of(&c.log_page(id, 0, T0 + 70_000));
        assert_eq!(first.len(), 3);
        c.retry_instance(id, T0 + 100_000).expect("retries");
        let info = c.instance_info(id, T0 + 100_000).expect("exists");
        assert_eq!((info["status"].as_i64(), info["runningTimes"].as_i64()), (Some(3), Some(2)));
        // While it runs only the second run's lines show (same texts, new times).
        let second = lines_of(&c.log_page(id, 0, T0 + 105_020));
        assert_eq!(second.len(), 3);
        assert!(second.iter().all(|l| l.starts_with("2024-06-01 16:01:4")), "{second:?}");
        assert_eq!(c.instance_status(id, T0 + 103_001), Some(4));
        // The retry's sync serves (and uploads) the first run's stable file again.
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 163_001)), first);
        assert_eq!(c.final_lines(id).len(), 6);
        // Origins tell the runs apart.
        let (_, origins) = c.log_page_traced(id, 0, T0 + 163_001);
        assert!(origins.iter().all(|o| o.is_some_and(|o| o.record < 3)));
    }

    #[test]
    fn sync_without_an_early_read_uploads_the_real_log() {
        let mut c = SimCore::new(SimConfig { dfs: true, ..SimConfig::default() });
        let id = running_with(&mut c, 2);
        c.finish(id, 5, "ok", T0);
        c.tick(T0 + 60_000);
        // Synced to the DFS without a read: the stable file exists and was uploaded.
        assert_eq!(lines_of(&c.log_page(id, 0, T0 + 60_001)).len(), 2);
    }

    #[test]
    fn extreme_inputs_never_panic() {
        let mut c =
            SimCore::new(SimConfig { utc_offset_minutes: i32::MAX, worker_flush_ms: 0, ..SimConfig::default() });
        let id = c.create_instance(12, None, i64::MAX);
        c.deliver(id, vec![rec(i64::MIN, "x"), rec(i64::MAX, "y")], i64::MIN);
        c.finish(id, 5, "ok", i64::MAX);
        let _ = c.log_page(id, i64::MIN, i64::MAX);
        let _ = c.download_log(id, i64::MAX);
        let _ = c.run_job(12, None, i64::MAX, i64::MAX);
    }
}
