//! Jobs and instances: `POST /llm/jobs/{jobId}/run`, `GET /llm/instances/{instanceId}`,
//! `POST /llm/instances/{instanceId}/stop|cancel|retry`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::{Authorized, ControlJobs, ReadLogs, RunJobs};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::logs::parse_instance_id;
use super::state::{AppState, ResolvedJob};
use crate::logs::Status;
use crate::upstream::{InstanceOp, UpstreamError};

/// Longest `delayMs` accepted (a day).
const MAX_DELAY_MS: u64 = 86_400_000;

/// Body of `POST /llm/jobs/{jobId}/run`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunRequest {
    /// A string sent as is, or a JSON object merged over the job's default params.
    #[serde(default)]
    pub instance_params: Option<Value>,
    /// Dispatch delay in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

/// The params text PowerJob receives: `requested` merged over `defaults`.
///
/// # Errors
/// 400 when `instanceParams` is neither a string nor an object.
pub fn merge_params(defaults: &Map<String, Value>, requested: Option<Value>) -> Result<Option<String>, ApiError> {
    match requested {
        None | Some(Value::Null) if defaults.is_empty() => Ok(None),
        None | Some(Value::Null) => Ok(Some(Value::Object(defaults.clone()).to_string())),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Object(over)) => {
            let mut merged = defaults.clone();
            merged.extend(over);
            Ok(Some(Value::Object(merged).to_string()))
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "`instanceParams` must be a string or a JSON object, got {}",
            match other {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => "an array",
            }
        ))),
    }
}

/// `POST /llm/jobs/{jobId}/run` → 201 `{jobId, jobName, instanceId, logsUrl, startupUrl}`.
pub async fn run_job(
    State(state): State<AppState>,
    ApiPath(job): ApiPath<String>,
    Authorized { caller, .. }: Authorized<RunJobs>,
    body: Option<ApiJson<RunRequest>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = body.map(|ApiJson(r)| r).unwrap_or_default();
    if req.delay_ms > MAX_DELAY_MS {
        return Err(ApiError::BadRequest(format!("`delayMs` must be at most {MAX_DELAY_MS}")));
    }
    let resolved = state.jobs.resolve(&job)?;
    let params = merge_params(&resolved.params, req.instance_params)?;
    // Counted only once the request is valid and allowed: a typo is a 400, not a run.
    state.runs.check(&caller)?;
    let client = state.logs.client();
    let instance_id =
        client.run_job(resolved.job_id, params.as_deref(), req.delay_ms).await.map_err(|e| job_error(e, &resolved))?;
    tracing::info!(
        target: "audit", caller = %caller.0, job.id = resolved.job_id, job.name = resolved.name.as_deref().unwrap_or(""),
        instance.id = instance_id, "job run"
    );
    if let Some(name) = &resolved.name {
        // Its start-up state is computed with this job's rules.
        state.logs.started_as(instance_id, name);
    } else {
        // With an archive: followed to completion and archived, read or not.
        state.logs.follow_to_completion(instance_id, Some(resolved.job_id));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "jobId": resolved.job_id.to_string(),
            "jobName": resolved.name,
            "instanceId": instance_id.to_string(),
            "logsUrl": format!("/llm/logs?instanceId={instance_id}"),
            "startupUrl": format!("/llm/instances/{instance_id}/startup"),
        })),
    ))
}

/// `GET /llm/instances/{instanceId}`.
pub async fn get_instance(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: Authorized<ReadLogs>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_instance_id(&id)?;
    let info = state.logs.client().instance_info(id).await?;
    Ok(Json(json!({
        "instanceId": info.instance_id.to_string(),
        "jobId": info.job_id.map(|j| j.to_string()),
        "status": Status::from_code(info.status).name(),
        "result": info.result,
        "actualTriggerTime": info.actual_trigger_time,
        "finishedTime": info.finished_time,
        "taskTrackerAddress": info.task_tracker_address,
        "runningTimes": info.running_times,
    })))
}

/// The answer of an instance operation.
type Answer = Result<Json<Value>, ApiError>;

/// `POST /llm/instances/{instanceId}/stop`.
pub async fn stop(state: State<AppState>, id: ApiPath<String>, who: Authorized<ControlJobs>) -> Answer {
    instance_op(state, id, who, InstanceOp::Stop, "stopped").await
}

/// `POST /llm/instances/{instanceId}/cancel`.
pub async fn cancel(state: State<AppState>, id: ApiPath<String>, who: Authorized<ControlJobs>) -> Answer {
    instance_op(state, id, who, InstanceOp::Cancel, "canceled").await
}

/// `POST /llm/instances/{instanceId}/retry`.
pub async fn retry(state: State<AppState>, id: ApiPath<String>, who: Authorized<ControlJobs>) -> Answer {
    instance_op(state, id, who, InstanceOp::Retry, "retried").await
}

async fn instance_op(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    Authorized { caller, .. }: Authorized<ControlJobs>,
    op: InstanceOp,
    done: &'static str,
) -> Result<Json<Value>, ApiError> {
    let id = parse_instance_id(&id)?;
    let client = state.logs.client();
    match client.instance_op(op, id).await {
        Ok(()) => {}
        Err(UpstreamError::Refused { message, .. })
            if message.contains("can't find instance") || message.contains("invalid instanceId") =>
        {
            return Err(ApiError::Upstream(UpstreamError::InstanceNotFound(id)));
        }
        Err(UpstreamError::Refused { message, .. }) if is_state_conflict(&message) => {
            // PowerJob's reasons are misleading ("instance already up and running" for a
            // finished instance): say what state the instance is really in.
            let status = client.instance_info(id).await.ok().map(|info| Status::from_code(info.status));
            return Err(ApiError::Conflict(conflict_message(op, id, status, &message)));
        }
        Err(other) => return Err(other.into()),
    }
    if op == InstanceOp::Retry {
        // The log runs again: the next read checks PowerJob at once, complete or not.
        state.logs.retried(id);
    }
    tracing::info!(target: "audit", caller = %caller.0, instance.id = id, op = ?op, "instance {done}");
    Ok(Json(json!({ "instanceId": id.to_string(), done: true })))
}

fn job_error(e: UpstreamError, job: &ResolvedJob) -> ApiError {
    match e {
        UpstreamError::Refused { message, .. } if message.contains("can't find job by jobId") => {
            ApiError::UnknownJob { job_id: job.job_id, name: job.name.clone() }
        }
        UpstreamError::Refused { message, .. } if message.contains("not belong to the app") => {
            ApiError::Forbidden(format!("the job belongs to another PowerJob app: {}", strip_class(&message)))
        }
        other => other.into(),
    }
}

fn is_state_conflict(message: &str) -> bool {
    [
        "can't stop finished instance",
        "already up and running",
        "Only stopped instance can be retry",
        "do not support retry",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The 409 message of `op` refused on instance `id`, whose status is `status` (when it
/// could be read); PowerJob's own `message` otherwise.
fn conflict_message(op: InstanceOp, id: i64, status: Option<Status>, message: &str) -> String {
    if message.contains("do not support retry") {
        return format!("instance {id} belongs to a workflow; PowerJob does not retry workflow instances");
    }
    let allows = |s: Status| match op {
        InstanceOp::Stop => matches!(s, Status::WaitingDispatch | Status::WaitingWorkerReceive | Status::Running),
        InstanceOp::Cancel => s == Status::WaitingDispatch,
        InstanceOp::Retry => s.is_final(),
    };
    let status = match status {
        // Unread, or changed since the refusal into a state that allows `op`: PowerJob's word.
        None => return strip_class(message),
        Some(s) if allows(s) => return format!("{} (instance {id} is now {})", strip_class(message), s.name()),
        Some(s) => s,
    };
    let allowed = match op {
        InstanceOp::Stop => "only a waiting or running instance can be stopped",
        InstanceOp::Cancel => "only an instance still waiting for dispatch (WAITING_DISPATCH) can be canceled",
        InstanceOp::Retry => "only a finished instance (FAILED, SUCCEED, CANCELED or STOPPED) can be retried",
    };
    format!("instance {id} is {}; {allowed}", status.name())
}

/// `IllegalArgumentException: can't stop…` → `can't stop…`.
fn strip_class(message: &str) -> String {
    message.split_once(": ").map_or(message, |(_, m)| m).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_state_or_fall_back_to_powerjobs_reason() {
        let refused = "PowerJobException: instance already up and running";
        assert_eq!(
            conflict_message(InstanceOp::Cancel, 7, Some(Status::Succeed), refused),
            "instance 7 is SUCCEED; only an instance still waiting for dispatch (WAITING_DISPATCH) can be canceled"
        );
        assert_eq!(conflict_message(InstanceOp::Cancel, 7, None, refused), "instance already up and running");
        // Changed since: a state that would allow the operation is not blamed.
        assert_eq!(
            conflict_message(InstanceOp::Cancel, 7, Some(Status::WaitingDispatch), refused),
            "instance already up and running (instance 7 is now WAITING_DISPATCH)"
        );
        let workflow = "PowerJobException: Workflow's instance do not support retry!";
        assert_eq!(
            conflict_message(InstanceOp::Retry, 7, Some(Status::Failed), workflow),
            "instance 7 belongs to a workflow; PowerJob does not retry workflow instances"
        );
    }

    #[test]
    fn object_params_merge_over_defaults_and_strings_pass_through() {
        let defaults: Map<String, Value> = serde_json::from_str(r#"{"modelName":"qwen-7b","port":8000}"#).unwrap();
        let merged = merge_params(&defaults, Some(json!({"port": 8001, "callbackUrl": "http://cb"}))).unwrap().unwrap();
        let v: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v, json!({"modelName":"qwen-7b","port":8001,"callbackUrl":"http://cb"}));
        assert_eq!(merge_params(&defaults, Some(json!("raw"))).unwrap().as_deref(), Some("raw"));
        assert_eq!(merge_params(&Map::new(), None).unwrap(), None);
        let v: Value = serde_json::from_str(&merge_params(&defaults, None).unwrap().unwrap()).unwrap();
        assert_eq!(v, Value::Object(defaults.clone()));
        assert!(merge_params(&defaults, Some(json!([1]))).is_err());
    }
}
