//! The history of archived runs (issue 20, docs/API.md "Search", "Runs and statistics"):
//! `GET /llm/search`, `GET /llm/jobs/{name}/runs`, `GET /llm/jobs/{name}/stats`.
//!
//! Thin: the queries are validated here (strict query strings, 400 for anything out of
//! range) and answered by the archive ([`crate::archive`]). With the archive off every
//! route answers 404 `not_found`; while it cannot be reached, 503 `archive_unavailable`.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{Authorized, ReadLogs};
use super::error::ApiError;
use super::extract::{digits, strict_query, ApiPath};
use super::state::AppState;
use crate::archive::{Archive, ArchiveError, RunsQuery, SearchQuery, MIN_QUERY_CHARS};
use crate::logs::Status;
use crate::service::ArchiveAccess;

/// Hits or runs per page by default…
const DEFAULT_LIMIT: u32 = 50;
/// …and at most.
const MAX_LIMIT: u32 = 500;
/// Longest search text (characters).
const MAX_QUERY_CHARS: usize = 256;
/// Longest job name, cause or cursor accepted (characters).
const MAX_TEXT: usize = 512;

/// The open archive, or the answer when there is none.
async fn open(state: &AppState) -> Result<Archive, ApiError> {
    match state.logs.archive_opened().await {
        ArchiveAccess::Open(a) => Ok(a),
        ArchiveAccess::Off => {
            Err(ApiError::NotFound("the archive is off (archive.url = \"\"): there is no history to search".into()))
        }
        ArchiveAccess::Unavailable => Err(ApiError::ArchiveUnavailable("the archive cannot be reached".into())),
    }
}

/// 400 for a bad query, 503 otherwise (the cause is logged, never answered).
fn archive_error(e: ArchiveError) -> ApiError {
    match e {
        ArchiveError::BadQuery(m) => ApiError::BadRequest(m),
        e => {
            tracing::warn!(error = %e, "archive query failed");
            ApiError::ArchiveUnavailable("the archive could not answer".into())
        }
    }
}

/// An epoch-ms bound (`since`, `until`).
fn millis(v: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    v.map(|v| {
        digits::<i64>(v).ok_or_else(|| {
            ApiError::BadRequest(format!("`{name}` must be a time in epoch milliseconds (digits), got {v:?}"))
        })
    })
    .transpose()
}

fn limit(v: Option<&str>) -> Result<u32, ApiError> {
    v.map_or(Ok(DEFAULT_LIMIT), |v| {
        digits::<u32>(v)
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("`limit` must be an integer from 1 to {MAX_LIMIT}, got {v:?}")))
    })
}

/// A short free text (`job`, `cause`, `cursor`): 1 to [`MAX_TEXT`] characters.
fn text(v: Option<std::borrow::Cow<'_, str>>, name: &str) -> Result<Option<String>, ApiError> {
    v.map(|v| {
        if v.is_empty() || v.chars().count() > MAX_TEXT {
            return Err(ApiError::BadRequest(format!("`{name}` must be 1 to {MAX_TEXT} characters long")));
        }
        Ok(v.into_owned())
    })
    .transpose()
}

fn status(v: Option<&str>) -> Result<Option<Status>, ApiError> {
    const NAMES: [Status; 7] = [
        Status::WaitingDispatch,
        Status::WaitingWorkerReceive,
        Status::Running,
        Status::Failed,
        Status::Succeed,
        Status::Canceled,
        Status::Stopped,
    ];
    v.map(|v| {
        NAMES.into_iter().find(|s| s.name().eq_ignore_ascii_case(v)).ok_or_else(|| {
            let names: Vec<&str> = NAMES.iter().map(|s| s.name()).collect();
            ApiError::BadRequest(format!("`status` must be one of {}, got {v:?}", names.join(", ")))
        })
    })
    .transpose()
}

fn job_name(name: &str) -> Result<String, ApiError> {
    if name.is_empty() || name.chars().count() > MAX_TEXT {
        return Err(ApiError::BadRequest(format!("the job name must be 1 to {MAX_TEXT} characters long")));
    }
    Ok(name.to_owned())
}

/// `GET /llm/search?q=&job=&status=&cause=&since=&until=&limit=&cursor=`.
pub async fn search(
    State(state): State<AppState>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let [q, job, st, cause, since, until, lim, cursor] =
        strict_query(raw.as_deref(), ["q", "job", "status", "cause", "since", "until", "limit", "cursor"])?;
    let q = q.ok_or_else(|| ApiError::BadRequest("query parameter `q` is required".into()))?;
    let chars = q.chars().count();
    if !(MIN_QUERY_CHARS..=MAX_QUERY_CHARS).contains(&chars) {
        return Err(ApiError::BadRequest(format!(
            "`q` must be {MIN_QUERY_CHARS} to {MAX_QUERY_CHARS} characters long, got {chars}"
        )));
    }
    let query = SearchQuery {
        q: q.into_owned(),
        job: text(job, "job")?,
        status: status(st.as_deref())?,
        cause: text(cause, "cause")?,
        since: millis(since.as_deref(), "since")?,
        until: millis(until.as_deref(), "until")?,
        limit: limit(lim.as_deref())?,
        cursor: text(cursor, "cursor")?,
    };
    let db = open(&state).await?;
    let started = Instant::now();
    let page = db.search(&query).await.map_err(archive_error)?;
    let hits: Vec<Value> = page
        .hits
        .iter()
        .map(|h| {
            json!({
                "instanceId": h.instance_id.to_string(),
                "attempt": h.attempt,
                "line": h.line,
                "text": h.text,
                "jobName": h.job_name,
                "finishedAt": h.finished_at,
                "url": format!("/?instanceId={}&line={}", h.instance_id, h.line),
            })
        })
        .collect();
    Ok(Json(json!({
        "hits": hits,
        "nextCursor": page.next_cursor,
        "tookMs": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })))
}

/// `GET /llm/jobs/{name}/runs?since=&until=&limit=&cursor=`.
pub async fn runs(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let [since, until, lim, cursor] = strict_query(raw.as_deref(), ["since", "until", "limit", "cursor"])?;
    let query = RunsQuery {
        job: job_name(&name)?,
        since: millis(since.as_deref(), "since")?,
        until: millis(until.as_deref(), "until")?,
        limit: limit(lim.as_deref())?,
        cursor: text(cursor, "cursor")?,
    };
    let db = open(&state).await?;
    let page = db.runs(&query).await.map_err(archive_error)?;
    let runs: Vec<Value> = page
        .runs
        .iter()
        .map(|r| {
            json!({
                "instanceId": r.instance_id.to_string(),
                "attempt": r.attempt,
                "status": r.status.name(),
                "startedAt": r.started_at,
                "finishedAt": r.finished_at,
                "phase": r.phase,
                "readyAfterMs": r.ready_after_ms,
                "cause": r.cause,
                "causeLine": r.cause_line,
                "lines": r.lines,
            })
        })
        .collect();
    Ok(Json(json!({ "job": query.job, "runs": runs, "nextCursor": page.next_cursor })))
}

/// `GET /llm/jobs/{name}/stats?since=`.
pub async fn stats(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let [since] = strict_query(raw.as_deref(), ["since"])?;
    let job = job_name(&name)?;
    let since = millis(since.as_deref(), "since")?;
    let db = open(&state).await?;
    let s = db.stats(&job, since).await.map_err(archive_error)?;
    Ok(Json(json!({
        "job": s.job,
        "since": s.since,
        "runs": s.runs,
        "byOutcome": s.by_outcome,
        "byCause": s.by_cause,
        "readyP50Ms": s.ready_p50_ms,
        "readyP95Ms": s.ready_p95_ms,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bounds_are_checked() {
        assert_eq!(status(Some("failed")).unwrap(), Some(Status::Failed));
        assert!(matches!(status(Some("gone")), Err(ApiError::BadRequest(m)) if m.contains("SUCCEED")));
        assert_eq!(limit(None).unwrap(), 50);
        assert!(limit(Some("0")).is_err() && limit(Some("501")).is_err() && limit(Some("-1")).is_err());
        assert_eq!(millis(Some("1764900001120"), "since").unwrap(), Some(1_764_900_001_120));
        assert!(millis(Some("yesterday"), "since").is_err());
    }
}
