//! PowerJob's JSON as this client reads it (`docs/powerjob-protocol.md` §1, §2.10, §4.1). Unknown fields
//! are ignored; `code` may be present, absent or null. A missing `Option` field is
//! `None` (serde's own rule), so no field needs a `default` attribute.

use serde::Deserialize;

/// `ResultDTO` / `PowerResultDTO`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// Always present.
    pub success: bool,
    /// Payload; null or absent on failures and void operations.
    pub data: Option<T>,
    /// Error text on failure.
    pub message: Option<String>,
    /// 5.x error code (a string such as `"-100"`).
    pub code: Option<String>,
}

/// `StringPage`: one page of the online log.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringPage {
    /// Echoed page index (0 for placeholders, whatever was asked).
    pub index: i64,
    /// Pages in the file.
    pub total_pages: i64,
    /// Page text.
    pub data: Option<String>,
}

/// `InstanceInfoDTO`, the fields powertail uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    /// Owning job.
    pub job_id: Option<i64>,
    /// Owning app.
    pub app_id: Option<i64>,
    /// Instance id (> 2^53; JSON number read as i64).
    pub instance_id: i64,
    /// When the instance was created (ISO-8601 text, as PowerJob writes it; kept as
    /// text: it only tells instances apart).
    pub gmt_create: Option<String>,
    /// Status code (§3).
    pub status: i64,
    /// Processor result or system reason.
    pub result: Option<String>,
    /// Dispatch time, epoch ms.
    pub actual_trigger_time: Option<i64>,
    /// Finish time, epoch ms.
    pub finished_time: Option<i64>,
    /// Worker `ip:port`, `"N/A"` when dispatch failed.
    pub task_tracker_address: Option<String>,
    /// Runs so far (retries included).
    pub running_times: Option<i64>,
}

/// `/openApi/authApp` data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppAuth {
    /// The app's id.
    pub app_id: i64,
    /// The OpenAPI JWT.
    pub token: String,
}

/// `/auth/thirdPartyLoginDirect` data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleUser {
    /// The console JWT.
    pub jwt_token: String,
}
