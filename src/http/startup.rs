//! `GET /llm/instances/{instanceId}/startup`: where a model server's start stands.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{Authorized, ReadLogs};
use super::error::ApiError;
use super::extract::{digits, strict_query, ApiPath};
use super::logs::{parse_instance_id, MAX_WAIT_MS};
use super::state::AppState;
use crate::service::Startup;

/// `GET /llm/instances/{instanceId}/startup[?waitMs=&attempt=&fromEvent=]`.
pub async fn get_startup(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = parse_instance_id(&id)?;
    let [wait, attempt, from_event] = strict_query(raw.as_deref(), ["waitMs", "attempt", "fromEvent"])?;
    let number = |v: Option<&str>, name: &str, max: u64| -> Result<Option<u64>, ApiError> {
        v.map(|v| {
            digits::<u64>(v)
                .filter(|n| *n <= max)
                .ok_or_else(|| ApiError::BadRequest(format!("`{name}` must be an integer from 0 to {max}, got {v:?}")))
        })
        .transpose()
    };
    let wait_ms = number(wait.as_deref(), "waitMs", u64::from(MAX_WAIT_MS))?.unwrap_or(0);
    let attempt = number(attempt.as_deref(), "attempt", u64::from(u32::MAX))?.map(|a| a as u32);
    let from_event = number(from_event.as_deref(), "fromEvent", u64::from(u32::MAX))?.map(|e| e as usize);
    let _permit = if wait_ms > 0 { Some(state.wait_permit()?) } else { None };
    let startup = state.logs.startup(id, Duration::from_millis(wait_ms), (attempt, from_event)).await?;
    Ok(Json(startup_json(&startup)))
}

/// The JSON of a start-up state (also the `startup` event of the log stream).
pub fn startup_json(s: &Startup) -> Value {
    let snap = &s.snapshot;
    json!({
        "instanceId": s.instance_id.to_string(),
        "attempt": snap.attempt,
        "phase": snap.phase,
        "ready": snap.ready,
        "failure": snap.failure,
        "progress": snap.progress,
        "events": snap.events,
        "complete": snap.complete,
        "tracked": snap.tracked,
        "status": s.status.name(),
        "stale": s.stale,
    })
}
