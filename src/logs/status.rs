//! Instance status as the follower needs it (protocol §3).

use serde::{Deserialize, Serialize};

/// PowerJob's `InstanceStatus`, plus `Unknown` while it could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// 1: created, or waiting for its trigger time / a retry.
    WaitingDispatch,
    /// 2: sent to a worker that has not reported yet.
    WaitingWorkerReceive,
    /// 3
    Running,
    /// 4
    Failed,
    /// 5
    Succeed,
    /// 9
    Canceled,
    /// 10: stopped by a user.
    Stopped,
    /// Not read yet, or PowerJob answered a value it does not define.
    #[default]
    Unknown,
}

impl Status {
    /// Maps PowerJob's numeric status.
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => Status::WaitingDispatch,
            2 => Status::WaitingWorkerReceive,
            3 => Status::Running,
            4 => Status::Failed,
            5 => Status::Succeed,
            9 => Status::Canceled,
            10 => Status::Stopped,
            _ => Status::Unknown,
        }
    }

    /// The name used in our JSON (`RUNNING`, …).
    pub fn name(self) -> &'static str {
        match self {
            Status::WaitingDispatch => "WAITING_DISPATCH",
            Status::WaitingWorkerReceive => "WAITING_WORKER_RECEIVE",
            Status::Running => "RUNNING",
            Status::Failed => "FAILED",
            Status::Succeed => "SUCCEED",
            Status::Canceled => "CANCELED",
            Status::Stopped => "STOPPED",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// PowerJob's `FINISHED_STATUS` (4, 5, 9, 10).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Failed | Status::Succeed | Status::Canceled | Status::Stopped)
    }
}

/// What `fetchInstanceInfo` tells the follower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFacts {
    /// Current status.
    pub status: Status,
    /// When the instance was dispatched to a worker (server clock, epoch ms).
    pub actual_trigger_time: Option<i64>,
    /// When it reached a final status (server clock, epoch ms).
    pub finished_time: Option<i64>,
    /// The worker's `ip:port`; `"N/A"` when dispatch failed.
    pub task_tracker_address: Option<String>,
    /// How often it was dispatched (`runningTimes`; a retry reuses the instance id and
    /// counts up); 0 when unknown.
    pub running_times: u32,
}

impl InstanceFacts {
    /// Whether a worker ever received this run (only then can it have a log).
    pub fn ever_ran(&self) -> bool {
        self.actual_trigger_time.is_some()
            && self.task_tracker_address.as_deref().is_some_and(|a| !a.is_empty() && a != "N/A")
    }
}
