//! `SimCore`: the PowerJob server's state machine, pure and deterministic.
//!
//! No I/O, no clock, no tokio: every time-dependent call takes `now` (epoch ms), and the
//! order of equal-timestamp rows at each rebuild comes from a seeded RNG, so a property
//! test can drive it in virtual time and replay a failure from its seed. The HTTP layer
//! ([`crate::http`]) wraps it with the wall clock.
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
//!   `timingCheck` (§4.3 item 4, §6.12; [`clean`]);
//! * optionally, a stopped processor that goes on logging ([`SimConfig::logs_after_stop`]).
//!
//! Every served line can be traced back to the record it came from
//! ([`SimCore::log_page_traced`]), which property tests use as their oracle.
//!
//! Every event (arrival, scripted status, sync) is kept in one time-ordered queue and
//! applied by [`SimCore::tick`] in time order, so a late `tick` gives the same state as
//! many small ones.
//!
//! Its parts: [`ids`] numbers instances, [`events`] plays the time-ordered queue (runs,
//! status reports, batch arrivals, syncs), [`storage`] holds the H2 rows and the files,
//! [`clean`] the periodic clean-up; this file is the server's public face.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

pub use crate::config::{SimConfig, SimJob};
pub use crate::file::{iso, local_time, read_lines, render, DOWNLOAD_BUFFER};
use crate::file::{pad_like_file2http, FileLines};
use crate::json;
pub use crate::types::{
    InstanceIds, InstanceInfo, Level, LineId, LogFile, Record, StringPage, TimeExpression, Version, BATCH_RECORDS,
    INSERT_DELAY_MS, NO_ONLINE_LOG, PAGE_LINES, PREPARING, SERVER_EXCEPTION,
};

mod clean;
mod events;
mod ids;
mod runs;
mod storage;
#[cfg(test)]
mod tests;

use self::events::Event;
pub use self::ids::{next_snowflake, FIRST_INSTANCE_ID, SNOWFLAKE_EPOCH_MS};
pub use self::runs::StartedRun;
use self::storage::{LogState, Row};

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

/// The simulated PowerJob server: instance table, log storage, scheduled events.
#[derive(Debug)]
pub struct SimCore {
    cfg: SimConfig,
    rng: StdRng,
    /// The last instance id handed out.
    last_id: Option<i64>,
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
    /// Keep the runs that start, for a pusher ([`runs`]).
    record_runs: bool,
    /// The runs that started and were not taken yet.
    started_runs: Vec<StartedRun>,
    /// (instance, run) of a stopped run → the time after which it logs nothing.
    cut_runs: BTreeMap<(i64, u64), i64>,
}

impl SimCore {
    /// A fresh server with `cfg`'s jobs and no instances.
    pub fn new(cfg: SimConfig) -> Self {
        SimCore {
            rng: StdRng::seed_from_u64(cfg.seed),
            cfg,
            last_id: None,
            next_seq: 0,
            instances: BTreeMap::new(),
            logs: BTreeMap::new(),
            dfs: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_event: 0,
            started: false,
            next_clean: None,
            clean_ups: Vec::new(),
            record_runs: false,
            started_runs: Vec::new(),
            cut_runs: BTreeMap::new(),
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

    /// New instance in WAITING_DISPATCH (status 1), its id as [`SimConfig::instance_ids`]
    /// says: by default a snowflake id of `now` (> 2^53, growing with time, different on
    /// every start).
    pub fn create_instance(&mut self, job_id: i64, instance_params: Option<String>, now: i64) -> i64 {
        self.tick(now);
        let id = self.next_instance_id(now);
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
        let run =
            self.run_in(id, now, |s| matches!(s, 1..=3), "IllegalArgumentException: can't stop finished instance!")?;
        let cut_lines_after = (!self.cfg.logs_after_stop).then_some(now);
        self.cancel_run(id, run, cut_lines_after);
        self.apply_finish(id, 10, "stopped by user", now);
        Ok(())
    }

    /// `/openApi/cancelInstance` (§2.7): only while status 1 (a delayed run still in the
    /// time wheel) → 9 `canceled by user`, no sync.
    pub fn cancel_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        let run = self.run_in(id, now, |s| s == 1, "PowerJobException: instance already up and running")?;
        self.cancel_run(id, run, Some(now));
        self.apply_finish(id, 9, "canceled by user", now);
        Ok(())
    }

    /// `/openApi/retryInstance` (§2.8): only finished instances. The same id goes back to
    /// 1 with its times reset and is dispatched again (playing the job's script again).
    /// The old stable file stays, so after this run's sync the *old* log is served
    /// (§6 pitfall 11); a sync still pending from the previous run fires as scheduled.
    pub fn retry_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.run_in(
            id,
            now,
            |s| matches!(s, 4 | 5 | 9 | 10),
            "PowerJobException: Only stopped instance can be retry!",
        )?;
        let Some(inst) = self.instances.get_mut(&id) else { return Ok(()) };
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

    /// The current run of instance `id` at `now`, if its status is one `allowed` takes;
    /// `Err` is the envelope's message: no such instance, or `refused`.
    fn run_in(&mut self, id: i64, now: i64, allowed: fn(i32) -> bool, refused: &str) -> Result<u64, String> {
        self.tick(now);
        let Some(inst) = self.instances.get(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if allowed(inst.status) {
            Ok(inst.run)
        } else {
            Err(refused.to_owned())
        }
    }

    /// The instance's status, if it exists.
    pub fn instance_status(&mut self, id: i64, now: i64) -> Option<i32> {
        self.tick(now);
        self.instances.get(&id).map(|i| i.status)
    }

    /// The instance, as `fetchInstanceInfo` shows it, if it exists.
    pub fn instance(&mut self, id: i64, now: i64) -> Option<InstanceInfo> {
        self.tick(now);
        let i = self.instances.get(&id)?;
        Some(InstanceInfo {
            instance_id: id,
            job_id: i.job_id,
            app_id: i.app_id,
            job_params: i.job_params.clone(),
            instance_params: i.instance_params.clone(),
            status: i.status,
            result: i.result.clone(),
            expected_trigger_time: i.expected_trigger_time,
            actual_trigger_time: i.actual_trigger_time,
            finished_time: i.finished_time,
            task_tracker_address: i.task_tracker_address.clone(),
            running_times: i.running_times,
            gmt_create: i.gmt_create,
            gmt_modified: i.gmt_modified,
        })
    }

    /// `InstanceInfoDTO`, field for field (§2.10; written by [`json::instance_info`]).
    pub fn instance_info(&mut self, id: i64, now: i64) -> Option<Value> {
        self.instance(id, now).map(|i| json::instance_info(&i))
    }

    /// Every instance, as `InstanceInfoDTO`s in id order (for `/openApi/queryInstance`).
    pub fn instances_info(&mut self, now: i64) -> Vec<Value> {
        self.tick(now);
        let ids: Vec<i64> = self.instances.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.instance_info(id, now)).collect()
    }

    /// `JobInfoDTO`, field for field (§2.12; written by [`json::job_info`]): a standalone
    /// job that logs online at INFO, API-triggered unless [`SimConfig::time_expressions`]
    /// says otherwise.
    pub fn job_info(&self, job_id: i64) -> Option<Value> {
        let job = self.job(job_id)?;
        Some(json::job_info(job, self.cfg.app_id, &self.time_expression(job_id)))
    }
}
