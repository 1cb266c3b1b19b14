//! `SimCore`: the PowerJob server's state machine, pure and deterministic.
//!
//! No I/O, no clock, no tokio: every time-dependent call takes `now` (epoch ms), and
//! the order of equal-timestamp rows at each rebuild comes from a seeded RNG. The HTTP
//! layer ([`super::http`]) wraps it with the wall clock; property tests can drive it in
//! virtual time. What it reproduces is in `powerjob-protocol.md` §2–§6: the H2 rows, the
//! live map, the temporary file cached `LOG_CACHE_TIME`, the stable file served forever,
//! the sync 60 s after finishing (reusing an existing stable file: the poisoning bug),
//! placeholders, paging, CRLF servers, retries reusing the instance id.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use super::script::JobScript;

/// The text of a stable file written when there is no log (§4.5).
pub const NO_ONLINE_LOG: &str = "SYSTEM: There is no online log for this job instance.";
/// `StringPage.simple` text when preparing the file took longer than 5 s.
pub const PREPARING: &str = "log file is being prepared, please try again later.";
/// Lines per page (`MAX_LINE_COUNT`).
pub const PAGE_LINES: usize = 100;
/// First instance id handed out (a real snowflake id, above 2^53).
pub const FIRST_INSTANCE_ID: i64 = 677_182_124_851_200_064;
/// Server-side delay between a worker batch and its rows (async insert).
pub const INSERT_DELAY_MS: i64 = 20;

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
    /// Job id.
    pub id: i64,
    /// `jobName`.
    pub name: String,
    /// Static `jobParams`.
    pub job_params: String,
    /// What a run of it logs and how it ends; `None`: tests drive it by hand.
    pub script: Option<Arc<JobScript>>,
}

/// The simulated server's configuration. Time constants are configurable so tests run
/// in seconds.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// 4.3.x or 5.1.x.
    pub version: Version,
    /// The app's id.
    pub app_id: i64,
    /// The app's name.
    pub app_name: String,
    /// The app's password.
    pub app_password: String,
    /// 5.x console user.
    pub console_username: String,
    /// 5.x console password.
    pub console_password: String,
    /// 5.x `oms.auth.openapi.enable`.
    pub openapi_auth: bool,
    /// Lifetime of app tokens and console JWTs.
    pub token_ttl_ms: i64,
    /// `LOG_CACHE_TIME`.
    pub log_cache_ms: i64,
    /// Delay of the sync after an instance finished.
    pub sync_delay_ms: i64,
    /// Worker flush interval (scripted runs).
    pub worker_flush_ms: i64,
    /// Windows server: `\r\n` separators.
    pub crlf: bool,
    /// Server time zone used to format log lines.
    pub utc_offset_minutes: i32,
    /// Whether synced logs are uploaded to a DFS.
    pub dfs: bool,
    /// RNG seed (tie order at rebuilds, tokens).
    pub seed: u64,
    /// The default worker address.
    pub worker: String,
    /// Jobs that exist.
    pub jobs: Vec<SimJob>,
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
            seed: 7,
            worker: "10.0.0.21:27777".into(),
            jobs: vec![SimJob { id: 12, name: "llm-start".into(), job_params: String::new(), script: None }],
        }
    }
}

/// `OmsLogger` log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// DEBUG
    Debug,
    /// INFO
    Info,
    /// WARN
    Warn,
    /// ERROR
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// One log record as a worker produces it.
#[derive(Clone, Debug)]
pub struct Record {
    /// Worker clock, epoch ms.
    pub log_time: i64,
    /// Level.
    pub level: Level,
    /// Message; may contain newlines (a stack trace ends with one).
    pub content: String,
    /// Reporting worker `ip:port`.
    pub worker: String,
}

/// One `/instance/log` answer (`StringPage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringPage {
    /// Echoed (or forced 0) index.
    pub index: i64,
    /// Pages in the file.
    pub total_pages: i64,
    /// Page text.
    pub data: String,
}

/// A log file on the server's disk: its lines, shared (pages slice it, never copy it).
type File = Arc<Vec<String>>;

#[derive(Clone, Debug)]
struct Row {
    record: Record,
    seq: u64,
}

#[derive(Clone, Debug)]
enum Event {
    Running,
    Finish { status: i32, result: String },
}

#[derive(Clone, Debug)]
struct Instance {
    job_id: i64,
    job_params: String,
    instance_params: Option<String>,
    status: i32,
    result: Option<String>,
    expected_trigger: i64,
    actual_trigger: Option<i64>,
    finished: Option<i64>,
    tracker: Option<String>,
    running_times: i64,
    gmt_create: i64,
    gmt_modified: i64,
    /// H2 rows (`local_instance_log`).
    rows: Vec<Row>,
    /// Worker batches on their way: (arrival, records, real log times).
    pending: Vec<(i64, Vec<Record>, Vec<i64>)>,
    /// Id in `instanceId2LastReportTime`.
    live: bool,
    temp_file: Option<(i64, File)>,
    stable_file: Option<File>,
    sync_at: Option<i64>,
    events: Vec<(i64, Event)>,
    /// Every record ever delivered (for `final_lines`).
    all: Vec<Row>,
    /// When the temporary file was rebuilt (for freshness measurements).
    rebuilds: Vec<i64>,
}

/// The simulated PowerJob server (see the module docs).
pub struct SimCore {
    cfg: SimConfig,
    rng: StdRng,
    instances: BTreeMap<i64, Instance>,
    dfs: BTreeMap<i64, File>,
    next_id: i64,
    seq: u64,
}

impl SimCore {
    /// A server with no instances.
    pub fn new(cfg: SimConfig) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        SimCore { cfg, rng, instances: BTreeMap::new(), dfs: BTreeMap::new(), next_id: FIRST_INSTANCE_ID, seq: 0 }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Whether `id` exists.
    pub fn has_instance(&self, id: i64) -> bool {
        self.instances.contains_key(&id)
    }

    // ---- scripting ----------------------------------------------------------------

    /// A new instance in WAITING_DISPATCH (1).
    pub fn create_instance(&mut self, job_id: i64, instance_params: Option<String>, now: i64) -> i64 {
        let id = self.next_id;
        self.next_id += 4_194_304 + 77; // the next snowflake a few ms later
        let job_params =
            self.cfg.jobs.iter().find(|j| j.id == job_id).map(|j| j.job_params.clone()).unwrap_or_default();
        self.instances.insert(
            id,
            Instance {
                job_id,
                job_params,
                instance_params,
                status: 1,
                result: None,
                expected_trigger: now,
                actual_trigger: None,
                finished: None,
                tracker: None,
                running_times: 0,
                gmt_create: now,
                gmt_modified: now,
                rows: Vec::new(),
                pending: Vec::new(),
                live: false,
                temp_file: None,
                stable_file: None,
                sync_at: None,
                events: Vec::new(),
                all: Vec::new(),
                rebuilds: Vec::new(),
            },
        );
        id
    }

    /// Dispatch to the worker: WAITING_WORKER_RECEIVE (2).
    pub fn dispatch(&mut self, id: i64, now: i64) {
        let worker = self.cfg.worker.clone();
        if let Some(i) = self.instances.get_mut(&id) {
            i.status = 2;
            i.actual_trigger = Some(now);
            i.tracker = Some(worker);
            i.gmt_modified = now;
        }
    }

    /// The worker's first report: RUNNING (3).
    pub fn set_running(&mut self, id: i64, now: i64) {
        if let Some(i) = self.instances.get_mut(&id) {
            i.status = 3;
            i.running_times += 1;
            i.gmt_modified = now;
        }
    }

    /// A final status (4, 5, 9, 10); schedules the sync (not for CANCELED).
    pub fn finish(&mut self, id: i64, status: i32, result: &str, now: i64) {
        let delay = self.cfg.sync_delay_ms;
        if let Some(i) = self.instances.get_mut(&id) {
            i.status = status;
            i.result = Some(result.to_owned());
            i.finished = Some(now);
            i.gmt_modified = now;
            i.events.clear();
            if status != 9 {
                i.sync_at = Some(now + delay);
            }
        }
    }

    /// Dispatch failed: FAILED with `no worker available` and tracker `N/A`.
    pub fn fail_no_worker(&mut self, id: i64, now: i64) {
        if let Some(i) = self.instances.get_mut(&id) {
            i.actual_trigger = Some(now);
            i.tracker = Some("N/A".into());
        }
        self.finish(id, 4, "no worker available", now);
    }

    /// A worker batch reaching the server at `arrive_at`.
    pub fn deliver(&mut self, id: i64, records: Vec<Record>, arrive_at: i64) {
        if let Some(i) = self.instances.get_mut(&id) {
            let times = records.iter().map(|r| r.log_time).collect();
            i.pending.push((arrive_at, records, times));
        }
    }

    /// Server restart: H2, the live map and in-flight batches are lost; files survive.
    pub fn restart(&mut self, now: i64) {
        self.tick(now);
        for i in self.instances.values_mut() {
            i.rows.clear();
            i.live = false;
        }
    }

    /// Every line a reader that never poisons the log can see: all records ever
    /// delivered, sorted by log time (ties in delivery order), rendered and split.
    pub fn final_lines(&self, id: i64) -> Vec<String> {
        let Some(i) = self.instances.get(&id) else { return Vec::new() };
        let mut rows: Vec<Row> = i.all.clone();
        let mut seq = self.seq;
        for (_, records, _) in &i.pending {
            for r in records {
                seq += 1;
                rows.push(Row { record: r.clone(), seq });
            }
        }
        rows.sort_by_key(|r| (r.record.log_time, r.seq));
        rows.iter().flat_map(|r| self.render(&r.record)).collect()
    }

    /// When the server rebuilt this instance's temporary log file (epoch ms).
    pub fn rebuilds(&self, id: i64) -> Vec<i64> {
        self.instances.get(&id).map(|i| i.rebuilds.clone()).unwrap_or_default()
    }

    // ---- time ---------------------------------------------------------------------

    /// Applies everything due by `now`, in time order: scripted status changes, batch
    /// arrivals, syncs.
    pub fn tick(&mut self, now: i64) {
        let ids: Vec<i64> = self.instances.keys().copied().collect();
        for id in ids {
            self.tick_one(id, now);
        }
    }

    /// [`SimCore::tick`] for one instance (instances are independent; a request only
    /// needs its own instance brought up to date).
    pub fn tick_one(&mut self, id: i64, now: i64) {
        while let Some(i) = self.instances.get(&id) {
            let next_event = i.events.iter().map(|(t, _)| *t).filter(|t| *t <= now).min();
            let next_arrival = i.pending.iter().map(|(t, _, _)| *t).filter(|t| *t <= now).min();
            let next_sync = i.sync_at.filter(|t| *t <= now);
            let next = [next_event, next_arrival, next_sync].into_iter().flatten().min();
            let Some(t) = next else { break };
            if next_event == Some(t) {
                self.apply_event(id, t);
            } else if next_arrival == Some(t) {
                self.arrive(id, t);
            } else {
                self.sync(id);
            }
        }
    }

    fn apply_event(&mut self, id: i64, t: i64) {
        let Some(i) = self.instances.get_mut(&id) else { return };
        let Some(pos) = i.events.iter().position(|(at, _)| *at == t) else { return };
        let (_, event) = i.events.remove(pos);
        match event {
            Event::Running => self.set_running(id, t),
            Event::Finish { status, result } => self.finish(id, status, &result, t),
        }
    }

    fn arrive(&mut self, id: i64, t: i64) {
        let Some(i) = self.instances.get_mut(&id) else { return };
        let Some(pos) = i.pending.iter().position(|(at, _, _)| *at == t) else { return };
        let (_, records, _) = i.pending.remove(pos);
        // The id enters the live map before the rows are inserted.
        i.live = true;
        for record in records {
            self.seq += 1;
            let row = Row { record, seq: self.seq };
            i.rows.push(row.clone());
            i.all.push(row);
        }
    }

    fn sync(&mut self, id: i64) {
        let rows = self.instances.get(&id).map(|i| i.rows.clone()).unwrap_or_default();
        let lines = self.sorted_lines(&rows, false);
        let dfs = self.cfg.dfs;
        let Some(i) = self.instances.get_mut(&id) else { return };
        i.sync_at = None;
        // The existing stable file is reused: a placeholder written by an early read wins.
        if i.stable_file.is_none() {
            i.stable_file = Some(Arc::new(if i.rows.is_empty() { vec![NO_ONLINE_LOG.to_owned()] } else { lines }));
        }
        if dfs {
            self.dfs.insert(id, i.stable_file.clone().unwrap_or_default());
        }
        i.rows.clear();
        i.live = false;
    }

    // ---- protocol -----------------------------------------------------------------

    /// `/instance/log` (§4.1–4.5).
    pub fn log_page(&mut self, id: i64, index: i64, now: i64) -> StringPage {
        self.tick_one(id, now);
        let lines = self.prepare_file(id, now);
        let sep = if self.cfg.crlf { "\r\n" } else { "\n" };
        let total = lines.len().div_ceil(PAGE_LINES) as i64;
        let data = if index < 0 || index >= total {
            String::new()
        } else {
            let from = index as usize * PAGE_LINES;
            let to = (from + PAGE_LINES).min(lines.len());
            let mut data = String::new();
            for l in &lines[from..to] {
                data.push_str(l);
                data.push_str(sep);
            }
            data
        };
        StringPage { index, total_pages: total, data }
    }

    /// `/instance/downloadLog`: the whole file, padded to 4096-byte blocks (§4.8 bug).
    pub fn download_log(&mut self, id: i64, now: i64) -> Vec<u8> {
        self.tick_one(id, now);
        let lines = self.prepare_file(id, now);
        let sep = if self.cfg.crlf { "\r\n" } else { "\n" };
        let mut body = Vec::new();
        for l in lines.iter() {
            body.extend_from_slice(l.as_bytes());
            body.extend_from_slice(sep.as_bytes());
        }
        let padded = body.len().div_ceil(4096) * 4096;
        body.resize(padded, 0);
        body
    }

    /// The file a read serves now (§4.3 step 2).
    fn prepare_file(&mut self, id: i64, now: i64) -> File {
        let cache = self.cfg.log_cache_ms;
        let Some(i) = self.instances.get(&id) else {
            // Unknown instance: the placeholder (and, on a real server, a stable file).
            return Arc::new(vec![NO_ONLINE_LOG.to_owned()]);
        };
        if i.live {
            if let Some((built, lines)) = &i.temp_file {
                if now - built < cache {
                    return lines.clone();
                }
            }
            let lines = Arc::new(self.sorted_lines(&i.rows.clone(), true));
            let i = self.instances.get_mut(&id).expect("checked above");
            i.temp_file = Some((now, lines.clone()));
            i.rebuilds.push(now);
            return lines;
        }
        if let Some(stable) = &i.stable_file {
            return stable.clone();
        }
        let lines = self.dfs.get(&id).cloned().unwrap_or_else(|| Arc::new(vec![NO_ONLINE_LOG.to_owned()]));
        let i = self.instances.get_mut(&id).expect("checked above");
        i.stable_file = Some(lines.clone());
        lines
    }

    fn sorted_lines(&mut self, rows: &[Row], shuffle_ties: bool) -> Vec<String> {
        let mut rows: Vec<&Row> = rows.iter().collect();
        if shuffle_ties {
            rows.shuffle(&mut self.rng);
            rows.sort_by_key(|r| r.record.log_time); // stable: ties keep the shuffled order
        } else {
            rows.sort_by_key(|r| (r.record.log_time, r.seq));
        }
        rows.iter().flat_map(|r| self.render(&r.record)).collect()
    }

    /// `"yyyy-MM-dd HH:mm:ss.SSS [worker] LEVEL content"`, split like `readLine`.
    fn render(&self, r: &Record) -> Vec<String> {
        let local = r.log_time + i64::from(self.cfg.utc_offset_minutes) * 60_000;
        let time = chrono::DateTime::from_timestamp_millis(local)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let text = format!("{time} [{}] {} {}", r.worker, r.level.name(), r.content);
        split_read_line(&text)
    }

    /// `runJob` (§2.4): creates the instance and plays the job's script, if any.
    ///
    /// # Errors
    /// The failure message of an unknown job.
    pub fn run_job(
        &mut self,
        job_id: i64,
        instance_params: Option<String>,
        delay_ms: i64,
        now: i64,
    ) -> Result<i64, String> {
        let Some(job) = self.cfg.jobs.iter().find(|j| j.id == job_id).cloned() else {
            return Err(format!("IllegalArgumentException: can't find job by jobId: {job_id}"));
        };
        let id = self.create_instance(job_id, instance_params, now);
        let start = now + delay_ms.max(0);
        if let Some(i) = self.instances.get_mut(&id) {
            i.expected_trigger = start;
        }
        self.start_run(id, job.script.as_deref(), start);
        Ok(id)
    }

    /// Dispatches at `start` and schedules the script's lines and status changes.
    fn start_run(&mut self, id: i64, script: Option<&JobScript>, start: i64) {
        self.dispatch(id, start);
        let Some(script) = script else { return };
        let flush = self.cfg.worker_flush_ms.max(1);
        let default_worker = self.cfg.worker.clone();
        let Some(i) = self.instances.get_mut(&id) else { return };
        i.events.push((start + script.running_at_ms, Event::Running));
        i.events.push((
            start + script.end_ms,
            Event::Finish { status: script.final_status, result: script.result.clone() },
        ));
        // Group lines into worker batches: each worker ships at its flush ticks, 20
        // records a batch.
        let mut batches: BTreeMap<(usize, i64), Vec<(Record, i64)>> = BTreeMap::new();
        for line in &script.lines {
            let w = script.workers.get(line.worker);
            let (address, skew, phase) =
                w.map_or((default_worker.clone(), 0, 0), |w| (w.address.clone(), w.clock_skew_ms, w.flush_phase_ms));
            let real = start + line.at_ms;
            let tick = start + phase + ((real - start - phase).div_euclid(flush) + 1) * flush;
            let record =
                Record { log_time: real + skew, level: line.level, content: line.content.clone(), worker: address };
            batches.entry((line.worker, tick)).or_default().push((record, real));
        }
        for ((_, tick), records) in batches {
            for (k, chunk) in records.chunks(20).enumerate() {
                let times = chunk.iter().map(|(_, real)| *real).collect();
                let recs = chunk.iter().map(|(r, _)| r.clone()).collect();
                i.pending.push((tick + INSERT_DELAY_MS + k as i64, recs, times));
            }
        }
    }

    /// `stopInstance` (§2.6).
    ///
    /// # Errors
    /// PowerJob's failure message.
    pub fn stop_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.tick_one(id, now);
        let Some(i) = self.instances.get_mut(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if !(1..=3).contains(&i.status) {
            return Err("IllegalArgumentException: can't stop finished instance!".into());
        }
        // Lines not logged yet never will be; logged but unflushed ones still arrive.
        for (_, records, times) in &mut i.pending {
            let keep: Vec<bool> = times.iter().map(|t| *t <= now).collect();
            let mut k = keep.iter();
            records.retain(|_| *k.next().unwrap_or(&false));
            times.retain(|t| *t <= now);
        }
        i.pending.retain(|(_, r, _)| !r.is_empty());
        self.finish(id, 10, "stopped by user", now);
        Ok(())
    }

    /// `cancelInstance` (§2.7).
    ///
    /// # Errors
    /// PowerJob's failure message.
    pub fn cancel_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.tick_one(id, now);
        let Some(i) = self.instances.get_mut(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if i.status != 1 {
            return Err("PowerJobException: instance already up and running".into());
        }
        i.pending.clear();
        self.finish(id, 9, "canceled by user", now);
        Ok(())
    }

    /// `retryInstance` (§2.8): the same id runs again; the old stable file stays.
    ///
    /// # Errors
    /// PowerJob's failure message.
    pub fn retry_instance(&mut self, id: i64, now: i64) -> Result<(), String> {
        self.tick_one(id, now);
        let Some(i) = self.instances.get_mut(&id) else {
            return Err(format!("IllegalArgumentException: can't find instance by instanceId: {id}"));
        };
        if ![4, 5, 9, 10].contains(&i.status) {
            return Err("PowerJobException: Only stopped instance can be retry!".into());
        }
        i.status = 1;
        i.expected_trigger = now;
        i.finished = None;
        i.actual_trigger = None;
        i.tracker = None;
        i.result = None;
        i.gmt_modified = now;
        let job_id = i.job_id;
        let script = self.cfg.jobs.iter().find(|j| j.id == job_id).and_then(|j| j.script.clone());
        self.start_run(id, script.as_deref(), now);
        Ok(())
    }

    /// `fetchInstanceInfo` data (InstanceInfoDTO, field for field), or `None`.
    pub fn instance_info(&mut self, id: i64, now: i64) -> Option<Value> {
        self.tick_one(id, now);
        let app_id = self.cfg.app_id;
        let i = self.instances.get(&id)?;
        Some(json!({
            "jobId": i.job_id,
            "appId": app_id,
            "instanceId": id,
            "wfInstanceId": null,
            "jobParams": i.job_params,
            "instanceParams": i.instance_params,
            "status": i.status,
            "type": 1,
            "result": i.result,
            "expectedTriggerTime": i.expected_trigger,
            "actualTriggerTime": i.actual_trigger,
            "finishedTime": i.finished,
            "taskTrackerAddress": i.tracker,
            "runningTimes": i.running_times,
            "gmtCreate": iso(i.gmt_create),
            "gmtModified": iso(i.gmt_modified),
        }))
    }

    /// `fetchInstanceStatus` data.
    pub fn instance_status(&mut self, id: i64, now: i64) -> Option<i32> {
        self.tick_one(id, now);
        self.instances.get(&id).map(|i| i.status)
    }

    /// `fetchJob` data (JobInfoDTO, field for field), or `None`.
    pub fn job_info(&self, job_id: i64) -> Option<Value> {
        let job = self.cfg.jobs.iter().find(|j| j.id == job_id)?;
        Some(json!({
            "id": job.id, "jobName": job.name, "jobDescription": "", "appId": self.cfg.app_id,
            "jobParams": job.job_params, "timeExpressionType": 1, "timeExpression": null,
            "executeType": 1, "processorType": 2, "processorInfo": "/opt/llm/bin/start_vllm.sh",
            "maxInstanceNum": 0, "concurrency": 5, "instanceTimeLimit": 0, "instanceRetryNum": 0,
            "taskRetryNum": 0, "status": 1, "nextTriggerTime": null, "minCpuCores": 0.0,
            "minMemorySpace": 0.0, "minDiskSpace": 0.0, "designatedWorkers": "", "maxWorkerCount": 0,
            "notifyUserIds": null, "gmtCreate": "2024-05-20T03:12:45.000+00:00",
            "gmtModified": "2024-05-28T09:40:11.000+00:00", "extra": null, "dispatchStrategy": 1,
            "dispatchStrategyConfig": null, "lifecycle": "{}",
            "alarmConfig": { "alertThreshold": 0, "statisticWindowLen": 0, "silenceWindowLen": 0 },
            "tag": null, "logConfig": { "type": 1, "level": 2, "loggerName": null },
            "advancedRuntimeConfig": null,
        }))
    }
}

/// Splits like Java's `readLine` over a file: `\r\n`, `\n` and `\r` end lines, and a
/// text ending in a separator yields a final empty line (the record's own separator
/// follows it in the file).
fn split_read_line(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(std::mem::take(&mut cur));
            }
            '\n' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Jackson's default date format: ISO-8601 in UTC with a colon offset.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> SimCore {
        SimCore::new(SimConfig { log_cache_ms: 10_000, sync_delay_ms: 60_000, ..SimConfig::default() })
    }

    fn rec(t: i64, text: &str) -> Record {
        Record { log_time: t, level: Level::Info, content: text.into(), worker: "w:1".into() }
    }

    fn running(s: &mut SimCore, now: i64) -> i64 {
        let id = s.create_instance(12, None, now);
        s.dispatch(id, now);
        s.set_running(id, now);
        id
    }

    #[test]
    fn serves_a_cached_file_for_log_cache_ms_then_rebuilds() {
        let mut s = sim();
        let id = running(&mut s, 0);
        s.deliver(id, vec![rec(0, "a")], 0);
        assert_eq!(s.log_page(id, 0, 1).data, "1970-01-01 08:00:00.000 [w:1] INFO a\n");
        s.deliver(id, vec![rec(5, "b")], 2);
        assert_eq!(s.log_page(id, 0, 9_999).data.lines().count(), 1, "the cached file");
        assert_eq!(s.log_page(id, 0, 10_001).data.lines().count(), 2, "rebuilt");
    }

    #[test]
    fn late_rows_are_inserted_by_time_and_ties_swap_between_rebuilds() {
        let mut s = sim();
        let id = running(&mut s, 0);
        s.deliver(id, vec![rec(10, "x"), rec(10, "y"), rec(20, "z")], 0);
        s.deliver(id, vec![rec(15, "late")], 1);
        let mut orders = std::collections::HashSet::new();
        for k in 0..20 {
            let data = s.log_page(id, 0, 10_000 * (k + 1)).data;
            let lines: Vec<&str> = data.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
            assert_eq!(lines[2..], ["late", "z"]);
            orders.insert(lines[..2].join(","));
        }
        assert_eq!(orders.len(), 2, "x and y swap places at some rebuild");
    }

    #[test]
    fn pages_hold_100_lines_and_placeholders_have_their_shapes() {
        let mut s = sim();
        let id = running(&mut s, 0);
        s.deliver(id, (0..150).map(|k| rec(k, "l")).collect(), 0);
        let p1 = s.log_page(id, 1, 1);
        assert_eq!((p1.index, p1.total_pages, p1.data.lines().count()), (1, 2, 50));
        let past = s.log_page(id, 7, 1);
        assert_eq!((past.index, past.total_pages, past.data.as_str()), (7, 2, ""));
        let unknown = s.log_page(42, 0, 1);
        assert_eq!(
            (unknown.total_pages, unknown.data.as_str()),
            (1, "SYSTEM: There is no online log for this job instance.\n")
        );
        let mut lines = sim();
        let id = running(&mut lines, 0);
        lines.deliver(id, vec![rec(0, "boom\n\tat a.b(C.java:1)\n")], 0);
        assert_eq!(lines.log_page(id, 0, 1).data.lines().count(), 3, "a stack trace ends with an empty line");
    }

    #[test]
    fn reading_before_the_first_batch_poisons_the_synced_log() {
        let mut s = sim();
        let id = running(&mut s, 0);
        assert!(s.log_page(id, 0, 1).data.starts_with(NO_ONLINE_LOG));
        s.deliver(id, vec![rec(0, "real")], 2_000);
        assert!(s.log_page(id, 0, 3_000).data.contains("real"), "while live, the temporary file is served");
        s.finish(id, 5, "ok", 4_000);
        assert!(s.log_page(id, 0, 63_999).data.contains("real"));
        assert!(s.log_page(id, 0, 64_000).data.starts_with(NO_ONLINE_LOG), "after the sync: the placeholder, forever");
        assert!(s.log_page(id, 0, 1_000_000).data.starts_with(NO_ONLINE_LOG));
    }

    #[test]
    fn a_clean_log_survives_the_sync_and_late_lines_recreate_a_tiny_live_log() {
        let mut s = sim();
        let id = running(&mut s, 0);
        s.deliver(id, vec![rec(0, "a"), rec(1, "b")], 100);
        s.finish(id, 5, "ok", 1_000);
        assert_eq!(s.log_page(id, 0, 61_000).data.lines().count(), 2, "stable file after the sync");
        s.deliver(id, vec![rec(2, "late")], 62_000);
        let data = s.log_page(id, 0, 62_001).data;
        assert_eq!(data.lines().count(), 1, "only the late line: {data}");
        assert_eq!(s.final_lines(id).len(), 3);
    }

    #[test]
    fn scripts_finish_before_their_last_lines_arrive_and_restart_loses_live_rows() {
        let mut cfg = SimConfig { worker_flush_ms: 1_000, ..SimConfig::default() };
        let script = JobScript::from_text("one\ntwo\nthree\n", 3_000, 5, "ok");
        cfg.jobs = vec![SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) }];
        let mut s = SimCore::new(cfg);
        let id = s.run_job(12, None, 0, 0).unwrap();
        let info = s.instance_info(id, 3_001).unwrap();
        assert_eq!(info["status"], 5);
        let before = s.log_page(id, 0, 3_001).data.lines().count();
        assert!(before < 3, "the last line is still in the worker's queue");
        assert_eq!(s.log_page(id, 0, 30_000).data.lines().count(), 3);
        s.restart(30_001);
        assert!(s.log_page(id, 0, 40_002).data.starts_with(NO_ONLINE_LOG), "rows lost, no stable file yet");
    }
}
