//! `POST /llm/logs/{instanceId}/append`: lines pushed by the processor (issue 19;
//! docs/API.md, "Pushing lines").
//!
//! Two bodies: a numbered batch of one pusher run (`source`, `seq`, `worker`,
//! `timestamp`, `final`, `lines`), deduplicated and applied in `seq` order, and the
//! seed's body (`instanceId`, `timestamp`, `lines`), merged at once without dedup. A line
//! is a string (logged at `timestamp`, level INFO) or `{"ts", "level", "text"}`. Unknown
//! fields are ignored (pushers of later versions may send more).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Authorized, PushLogs};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::logs::parse_instance_id;
use super::state::AppState;
use crate::config::PushSection;
use crate::logs::joined::NO_WORKER;
use crate::logs::merge::{Batch, Level, PushError, PushedLine, MAX_SEQ};
use crate::logs::Pushed;
use crate::service::PushFailure;

/// Longest `source` and `worker`, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The body as sent (validated by [`PushBody::into_pushed`]).
#[derive(Debug, Deserialize)]
pub struct PushBody {
    /// Names one pusher run; absent for the seed's body.
    #[serde(default)]
    source: Option<String>,
    /// The batch's number in its run, from 0.
    #[serde(default)]
    seq: Option<u64>,
    /// The worker address lines are shown with.
    #[serde(default)]
    worker: Option<String>,
    /// When the batch was sent (epoch ms): the time of its string lines.
    #[serde(default)]
    timestamp: Option<i64>,
    /// The run sends nothing after this batch.
    #[serde(default, rename = "final")]
    is_final: bool,
    /// The seed's body names the instance (it must be the path's).
    #[serde(default, rename = "instanceId")]
    instance_id: Option<Value>,
    /// The lines, in the processor's order.
    lines: Vec<LineIn>,
}

/// One line as sent.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LineIn {
    /// Logged at the body's `timestamp`, level INFO.
    Plain(String),
    /// With its own time and level.
    Full {
        #[serde(default)]
        ts: Option<i64>,
        #[serde(default)]
        level: Option<String>,
        text: String,
    },
}

impl PushBody {
    /// Checks the body against the limits and the contract, for instance `id` at `now`.
    ///
    /// # Errors
    /// 400 for a field out of contract, 413 for a body over a limit.
    pub fn into_pushed(self, id: i64, limits: &PushSection, now: i64) -> Result<Pushed, ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        if self.lines.len() > limits.max_batch_lines {
            return Err(ApiError::PayloadTooLarge);
        }
        if let Some(v) = &self.instance_id {
            let named = match v {
                Value::String(s) => parse_instance_id(s).ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            };
            if named != Some(id) {
                return bad(format!("`instanceId` in the body ({v}) is not the path's ({id})"));
            }
        }
        let timestamp = self.timestamp.unwrap_or(now);
        let mut lines = Vec::with_capacity(self.lines.len());
        for (k, line) in self.lines.into_iter().enumerate() {
            let (ts, level, text) = match line {
                LineIn::Plain(text) => (timestamp, Level::Info, text),
                LineIn::Full { ts, level, text } => {
                    let level = match level {
                        None => Level::Info,
                        Some(l) => match Level::parse(&l) {
                            Some(l) => l,
                            None => {
                                return bad(format!(
                                    "`lines[{k}].level` must be DEBUG, INFO, WARN, ERROR, OFF or UNKNOWN, got {l:?}"
                                ))
                            }
                        },
                    };
                    (ts.unwrap_or(timestamp), level, text)
                }
            };
            if text.len() > limits.max_line_bytes {
                return Err(ApiError::PayloadTooLarge);
            }
            lines.push(PushedLine { ts, level, text });
        }
        let worker = self.worker.filter(|w| !w.is_empty());
        if worker.as_ref().is_some_and(|w| w.len() > MAX_NAME_BYTES) {
            return bad(format!("`worker` must be at most {MAX_NAME_BYTES} bytes"));
        }
        let Some(source) = self.source else {
            if self.seq.is_some() || self.is_final {
                return bad("`seq` and `final` need a `source` (the pusher run they number)".into());
            }
            return Ok(Pushed::Unnumbered { worker: worker.unwrap_or_else(|| NO_WORKER.into()), lines });
        };
        if source.is_empty() || source.len() > MAX_NAME_BYTES {
            return bad(format!("`source` must be 1 to {MAX_NAME_BYTES} bytes"));
        }
        let Some(seq) = self.seq else {
            return bad("`seq` is required with `source` (the batch's number in its run, from 0)".into());
        };
        if seq > MAX_SEQ {
            return bad(format!("`seq` must be at most {MAX_SEQ}, got {seq}"));
        }
        let worker = worker.unwrap_or_else(|| NO_WORKER.into());
        Ok(Pushed::Batch(Batch { source, seq, worker, is_final: self.is_final, lines }))
    }
}

impl From<PushFailure> for ApiError {
    fn from(e: PushFailure) -> Self {
        match e {
            PushFailure::Service(e) => e.into(),
            PushFailure::Refused(e @ PushError::SeqOutOfRange) => ApiError::BadRequest(e.to_string()),
            PushFailure::Refused(e @ (PushError::AfterFinal { .. } | PushError::TooManySources(_))) => {
                ApiError::Conflict(e.to_string())
            }
        }
    }
}

/// `POST /llm/logs/{instanceId}/append`
pub async fn append(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: Authorized<PushLogs>,
    ApiJson(body): ApiJson<PushBody>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_instance_id(&id)?;
    let now = state.logs.client().clock().now_ms();
    let pushed = body.into_pushed(id, &state.push, now)?;
    let a = state.logs.push(id, pushed).await?;
    Ok(Json(json!({
        "instanceId": id.to_string(), "accepted": a.accepted, "duplicate": a.duplicate, "nextSeq": a.next_seq,
    })))
}
