//! [`SimConfig`]: what the simulated server is (version, app, accounts, jobs) and its
//! timings, which tests shorten to run a whole lifecycle in seconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::script::JobScript;
use crate::types::{InstanceIds, TimeExpression, Version};

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
    /// `<= 0`: no periodic clean-up (only [`crate::SimCore::clean_now`]).
    pub clean_interval_ms: i64,
    /// A clean-up deletes the rows of frequent jobs' live logs whose `logTime` (worker
    /// clock) is older than the server's now minus this (10 min).
    pub clean_age_ms: i64,
    /// `true`: a stopped processor goes on and logs its scripted lines, which its worker
    /// still ships every `worker_flush_ms` after status 10 (the stop message is
    /// unreliable and the processor may ignore the interrupt). `false`: the lines not
    /// logged yet at the stop are never logged.
    pub logs_after_stop: bool,
    /// How instances are numbered: by default snowflake ids of their creation time with
    /// a random machine id, so ids differ on every start, as on a real server.
    pub instance_ids: InstanceIds,
    /// The server's time of day: the wall clock by default; a test gives its own (e.g.
    /// `powertail::clock::Clock::now_fn`) to move the server's time forward with it.
    pub clock: SimClock,
}

/// The time of day a simulator reads (epoch ms): the wall clock, or a function a test
/// gives it. The core itself never reads a clock: the HTTP layer passes `now` in.
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
            instance_ids: InstanceIds::random(),
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
