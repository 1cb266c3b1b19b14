//! The simulator's shared vocabulary: the server's constants, its generations, log
//! records and levels, pages, instance snapshots, time expressions and line origins.
//!
//! A leaf: every other module of the crate imports from here, and this module imports
//! from none of them, so no two modules import each other.

use std::fmt;

/// The single line of the stable file written when there is no log (§4.5).
pub const NO_ONLINE_LOG: &str = "SYSTEM: There is no online log for this job instance.";
/// `StringPage.simple` text when preparing the file took longer than 5 s (§4.5).
pub const PREPARING: &str = "log file is being prepared, please try again later.";
/// Prefix of the `StringPage.simple` text when the log method threw (§4.5).
pub const SERVER_EXCEPTION: &str = "oms-server execution exception, caused by ";
/// Physical lines per page (`MAX_LINE_COUNT`).
pub const PAGE_LINES: usize = 100;
/// Time between a worker batch reaching the server and its rows being inserted (the
/// async `LOCAL_DB_POOL` insert).
pub const INSERT_DELAY_MS: i64 = 20;
/// Records per `WorkerLogReportReq` batch (§5).
pub const BATCH_RECORDS: usize = 20;

/// Server generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// 4.3.x: no auth anywhere, no `code` in error envelopes.
    V4,
    /// 5.1.x: console JWT for `/instance/*`, optional OpenAPI tokens, `code` in errors.
    V5,
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
}

/// Which file a read was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFile {
    /// `<id>-temporary.log`: the live log, rebuilt every `log_cache_ms`.
    Temporary,
    /// `<id>-stable.log`: served forever once it exists.
    Stable,
}

/// A job's `timeExpressionType` and `timeExpression` (§2.12).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TimeExpression {
    /// 1 API: run only through `runJob` (`timeExpression` null).
    #[default]
    Api,
    /// 2 CRON, with its expression.
    Cron(String),
    /// 3 FIXED_RATE, every so many ms (frequent).
    FixedRate(i64),
    /// 4 FIXED_DELAY, so many ms after the previous run (frequent).
    FixedDelay(i64),
}

impl TimeExpression {
    /// `timeExpressionType`.
    pub fn type_code(&self) -> i32 {
        match self {
            TimeExpression::Api => 1,
            TimeExpression::Cron(_) => 2,
            TimeExpression::FixedRate(_) => 3,
            TimeExpression::FixedDelay(_) => 4,
        }
    }

    /// `timeExpression`: null for API, the cron text, or the interval in ms as a string.
    pub fn expression(&self) -> Option<String> {
        match self {
            TimeExpression::Api => None,
            TimeExpression::Cron(cron) => Some(cron.clone()),
            TimeExpression::FixedRate(ms) | TimeExpression::FixedDelay(ms) => Some(ms.to_string()),
        }
    }

    /// `TimeExpressionType.FREQUENT_TYPES`: FIXED_RATE and FIXED_DELAY.
    pub fn is_frequent(&self) -> bool {
        matches!(self, TimeExpression::FixedRate(_) | TimeExpression::FixedDelay(_))
    }
}

/// Where one physical line of a served file came from: line `line` (0-based) of the
/// record delivered as number `record`. Records are numbered in delivery order, so two
/// records with the same text (a retry's replay, a repeated stack trace) never share an
/// id, and a line keeps its id whatever file (temporary, stable, DFS copy) serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineId {
    /// The record's delivery number.
    pub record: u64,
    /// The line within the record's rendering (0: the timestamped line).
    pub line: u32,
}

/// An instance as `fetchInstanceInfo` shows it (`InstanceInfoDTO`, §2.10), in Rust
/// types; [`crate::json::instance_info`] writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `instanceId`.
    pub instance_id: i64,
    /// `jobId`.
    pub job_id: i64,
    /// `appId`.
    pub app_id: i64,
    /// `jobParams`, copied from the job.
    pub job_params: String,
    /// `instanceParams` of the run.
    pub instance_params: Option<String>,
    /// `status`: 1 WAITING_DISPATCH, 2 WAITING_WORKER_RECEIVE, 3 RUNNING, 4 FAILED,
    /// 5 SUCCEED, 9 CANCELED, 10 STOPPED.
    pub status: i32,
    /// `result`.
    pub result: Option<String>,
    /// `expectedTriggerTime`, epoch ms.
    pub expected_trigger_time: Option<i64>,
    /// `actualTriggerTime`, epoch ms.
    pub actual_trigger_time: Option<i64>,
    /// `finishedTime`, epoch ms.
    pub finished_time: Option<i64>,
    /// `taskTrackerAddress`.
    pub task_tracker_address: Option<String>,
    /// `runningTimes`.
    pub running_times: i64,
    /// `gmtCreate`, epoch ms.
    pub gmt_create: i64,
    /// `gmtModified`, epoch ms.
    pub gmt_modified: i64,
}

/// How the server numbers new instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceIds {
    /// Snowflake ids from the server's clock at creation, with these 16 bits of data
    /// centre and machine id. The default, with random bits: ids differ on every start.
    Snowflake {
        /// Data centre (2 high bits) and machine (14 low bits) id.
        machine: u16,
    },
    /// `first`, then `first + 4096`, … whatever the time: the same ids on every start,
    /// for a test that needs known ids.
    Sequential {
        /// The first id.
        first: i64,
    },
}

impl InstanceIds {
    /// Gap between consecutive [`InstanceIds::Sequential`] ids.
    pub const SEQUENTIAL_STEP: i64 = 4_096;

    /// Snowflake ids with a random machine id, as a freshly deployed server has.
    pub fn random() -> Self {
        InstanceIds::Snowflake { machine: rand::random() }
    }
}

impl Default for InstanceIds {
    fn default() -> Self {
        InstanceIds::random()
    }
}
