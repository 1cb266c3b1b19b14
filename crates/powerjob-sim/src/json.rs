//! Every JSON body the simulated server writes, in one place: the envelopes, the DTOs
//! and the token claims, exactly as `docs/powerjob-protocol.md` §0–§4 and the fixtures
//! show them.
//!
//! The envelopes are plain `ResultDTO`s (`{success, data, message}`, HTTP 200 for
//! failures too), with `code` on 5.x failures only; the interceptor's rejections have no
//! `data` key; unmapped paths get Spring Boot's error body. Everything here is a pure
//! function of its arguments (no time, no state), so the HTTP layer decides what to
//! answer and this module how it is written.

use serde_json::{json, Value};

use crate::config::SimJob;
use crate::file::iso;
use crate::types::{InstanceInfo, StringPage, TimeExpression};

/// `gmtCreate`/`gmtModified` of the simulated jobs (2024-05-20T03:12:45Z).
const JOB_GMT_CREATE: i64 = 1_716_174_765_000;

/// A body cut off mid-way: a success page whose JSON ends inside `totalPages`.
pub const TRUNCATED_PAGE: &str = r#"{"success":true,"data":{"index":0,"totalPa"#;

/// A success envelope (plain `ResultDTO`: no `code`).
pub fn ok(data: Value) -> Value {
    json!({"success": true, "data": data, "message": null})
}

/// A failure envelope: `code` only on 5.x (the `PowerResultDTO` of the exception
/// handler), with the `<SimpleClassName>: <message>` text the caller built.
pub fn fail(v5: bool, message: &str, code: Option<&str>) -> Value {
    if v5 {
        json!({"success": false, "data": null, "message": message, "code": code})
    } else {
        json!({"success": false, "data": null, "message": message})
    }
}

/// A plain `ResultDTO` failure with a raw message (the 5.x console login).
pub fn plain_fail(message: &str) -> Value {
    json!({"success": false, "data": null, "message": message})
}

/// A `PowerResultDTO` (5.x `/openApi/authApp`): `code` on success and failure alike.
pub fn power_result(success: bool, data: Value, message: Option<&str>, code: Option<&str>) -> Value {
    json!({"success": success, "data": data, "message": message, "code": code})
}

/// An OpenAPI interceptor rejection: written by `JsonUtils`, so no `data` key.
pub fn rejection(message: &str, code: &str) -> Value {
    json!({"success": false, "message": message, "code": code})
}

/// Spring Boot's default error body, `timestamp` being now (epoch ms).
pub fn spring_error(now: i64, status: u16, reason: &str, path: &str) -> Value {
    json!({"timestamp": iso(now), "status": status, "error": reason, "path": path})
}

/// The `StringPage` of `/instance/log`.
pub fn string_page(page: &StringPage) -> Value {
    json!({"index": page.index, "totalPages": page.total_pages, "data": page.data})
}

impl StringPage {
    /// The JSON `StringPage` ([`string_page`]).
    pub fn to_json(&self) -> Value {
        string_page(self)
    }
}

/// `InstanceInfoDTO`, field for field (§2.10).
pub fn instance_info(i: &InstanceInfo) -> Value {
    json!({
        "jobId": i.job_id,
        "appId": i.app_id,
        "instanceId": i.instance_id,
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
    })
}

/// `JobInfoDTO`, field for field (§2.12): a standalone job of app `app_id` that logs
/// online at INFO, triggered as `time` says.
pub fn job_info(job: &SimJob, app_id: i64, time: &TimeExpression) -> Value {
    json!({
        "id": job.id,
        "jobName": job.name,
        "jobDescription": "",
        "appId": app_id,
        "jobParams": job.job_params,
        "timeExpressionType": time.type_code(),
        "timeExpression": time.expression(),
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
    })
}

/// A page of `/openApi/queryInstance` (5.1.1's `PageResult`).
pub fn page_result(index: i64, page_size: i64, total: i64, data: Vec<Value>) -> Value {
    json!({
        "index": index,
        "pageSize": page_size,
        "totalPages": (total + page_size - 1) / page_size,
        "totalItems": total,
        "data": data,
    })
}

/// The `data` of `/openApi/authApp`.
pub fn app_token(app_id: i64, token: &str) -> Value {
    json!({"appId": app_id, "token": token, "extra": null})
}

/// The claims of an `/openApi/authApp` token; `exp` in seconds.
pub fn app_token_claims(password: Option<&str>, app_id: i64, encrypt_type: Option<&str>, exp: i64, jti: &str) -> Value {
    json!({
        "password": password,
        "appId": app_id,
        "encryptType": encrypt_type,
        "sub": "PowerJob",
        "exp": exp,
        "jti": jti,
    })
}

/// The claims of a console login token; `exp` in seconds.
pub fn console_token_claims(username: &str, encrypted_token: &str, exp: i64, jti: &str) -> Value {
    json!({
        "username": format!("PWJB_{username}"),
        "encryptedToken": encrypted_token,
        "sub": "PowerJob",
        "exp": exp,
        "jti": jti,
    })
}

/// The console user (`PowerJobLoginVO`), with its token after a login.
pub fn console_user(username: &str, token: Option<&str>) -> Value {
    json!({
        "id": 1,
        "username": format!("PWJB_{username}"),
        "phone": null,
        "email": null,
        "webHook": null,
        "extra": null,
        "jwtToken": token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_code_only_where_the_server_writes_it() {
        assert_eq!(fail(false, "x", Some("-1")), json!({"success": false, "data": null, "message": "x"}));
        assert_eq!(fail(true, "x", None)["code"], Value::Null);
        assert!(fail(true, "x", None).as_object().is_some_and(|o| o.contains_key("code")));
        assert!(!rejection("m", "-401").as_object().is_some_and(|o| o.contains_key("data")));
        assert_eq!(ok(json!(7)), json!({"success": true, "data": 7, "message": null}));
        assert!(serde_json::from_str::<Value>(TRUNCATED_PAGE).is_err());
    }

    #[test]
    fn instance_ids_above_2_53_stay_exact() {
        let info = InstanceInfo {
            instance_id: 677_182_124_851_200_064,
            job_id: 12,
            app_id: 1,
            job_params: String::new(),
            instance_params: None,
            status: 3,
            result: None,
            expected_trigger_time: Some(1_717_228_800_000),
            actual_trigger_time: None,
            finished_time: None,
            task_tracker_address: None,
            running_times: 1,
            gmt_create: 1_717_228_800_000,
            gmt_modified: 1_717_228_800_012,
        };
        let text = instance_info(&info).to_string();
        assert!(text.contains(r#""instanceId":677182124851200064"#), "{text}");
        assert!(text.contains(r#""gmtModified":"2024-06-01T08:00:00.012+00:00""#), "{text}");
        assert_eq!(page_result(0, 10, 21, Vec::new())["totalPages"], 3);
    }
}
