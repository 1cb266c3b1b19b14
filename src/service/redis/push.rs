//! Pushes in cluster mode (docs/API.md "Cluster mode"): a batch may reach any replica;
//! that replica records its `(source, seq)` and queues it in Redis in one script
//! ([`scripts::PUSH`](super::scripts::PUSH)), and the lease holder drains the queue into
//! the shared line log with its fenced append, which also records the last entry it
//! consumed (in the meta) and trims the queue up to it. Per instance, beside the keys of
//! the line log and under the same hash tag:
//!
//! * `<prefix>:{<id>}:pushed`: a Hash, each source's batch numbers (which were seen, the
//!   final one, the next one the holder applies) and the number of sources;
//! * `<prefix>:{<id>}:pushq`: a Stream of the batches not consumed yet, fields `b` (the
//!   batch, JSON) and `t` (when it arrived, epoch ms, the receiving replica's clock).
//!
//! Both expire with the instance's state.

use std::collections::BTreeMap;

use redis::RedisError;

use super::{SharedLog, StoreError, UNWRITTEN_RETAIN_MS};
use crate::logs::merge::{Batch, PushError, MAX_SEQ};

/// Queue entries read per request at most.
const QUEUE_BATCH: usize = 32;
/// Bytes of queued batches taken per read (at least one batch): what one append of
/// their lines holds Redis for stays near a chunk's (see `APPEND_CHUNK_BYTES`).
const QUEUE_BYTES: usize = 1 << 20;

/// What [`SharedLog::push`] made of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The batch was seen before: nothing was queued.
    pub duplicate: bool,
    /// The log is complete: the batch was dropped (nothing recorded).
    pub late: bool,
    /// The source's next batch number expected (`None` for a seed body).
    pub next_seq: Option<u64>,
}

/// One batch of the push queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedBatch {
    /// Its Stream entry ID: the consumed mark once applied.
    pub entry: String,
    /// The batch; a seed body has an empty `source`.
    pub batch: Batch,
    /// When it arrived (epoch ms).
    pub at: i64,
}

/// What an append records of the push queue (see [`SharedLog::append`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushProgress {
    /// The last queue entry applied: the queue is trimmed up to it.
    pub consumed: String,
    /// Per source, the next batch number to apply.
    pub applied: BTreeMap<String, u64>,
}

/// The reply of the push script: a tag and up to two numbers (as strings).
type PushReply = (String, String, String);
/// One `XRANGE` row of the queue: the entry ID and its fields.
type QueueRow = (String, Vec<(String, String)>);

impl SharedLog {
    /// Records and queues a pushed `batch` of `id` that arrived at `at` (epoch ms) and
    /// wakes the lease holder. `seed`: a body without `source` (no dedup; the batch's
    /// `source` is ignored). The outer error is the store's; the inner one refuses the
    /// batch (after its source's final batch, or one source too many).
    pub async fn push(
        &self,
        id: i64,
        batch: &Batch,
        seed: bool,
        at: i64,
        max_sources: usize,
    ) -> Result<Result<Queued, PushError>, StoreError> {
        if batch.seq > MAX_SEQ {
            return Ok(Err(PushError::SeqOutOfRange));
        }
        let source = if seed { "" } else { batch.source.as_str() };
        let payload =
            serde_json::to_string(&Batch { source: source.to_owned(), ..batch.clone() }).expect("a batch serialises");
        let mut conn = self.connection(&self.reads).await?;
        let reply: Result<PushReply, RedisError> = self
            .push_script
            .key(self.key(id, "state"))
            .key(self.key(id, "pushed"))
            .key(self.key(id, "pushq"))
            .arg(source)
            .arg(batch.seq)
            .arg(if batch.is_final { "1" } else { "0" })
            .arg(payload)
            .arg(max_sources)
            .arg(UNWRITTEN_RETAIN_MS.min(self.retain_ms))
            .arg(self.channel())
            .arg(id)
            .arg(at)
            .invoke_async(&mut conn)
            .await;
        let (what, a, b) = match reply {
            Ok(r) => r,
            Err(e) => return Err(self.failed(&self.reads, "push", &e).await),
        };
        let number = |s: &str| s.parse::<i64>().map_err(|_| StoreError::Protocol(format!("push reply {s:?}")));
        let next = number(&a)?;
        let next_seq = u64::try_from(next).ok();
        Ok(match what.as_str() {
            "ok" => Ok(Queued { duplicate: false, late: false, next_seq: if seed { None } else { next_seq } }),
            "dup" => Ok(Queued { duplicate: true, late: false, next_seq }),
            "late" => Ok(Queued { duplicate: false, late: true, next_seq }),
            "final" => {
                let final_seq = number(&b)?;
                Err(PushError::AfterFinal { seq: next as u64, final_seq: final_seq as u64 })
            }
            "many" => Err(PushError::TooManySources(next as usize)),
            other => return Err(StoreError::Protocol(format!("push reply {other:?}"))),
        })
    }

    /// The queued batches of `id` after entry `after` (`""`: from the start), at most
    /// [`QUEUE_BATCH`] (fewer once they hold `max_lines` lines or [`QUEUE_BYTES`], at
    /// least one).
    pub async fn read_queue(&self, id: i64, after: &str, max_lines: usize) -> Result<Vec<QueuedBatch>, StoreError> {
        let mut conn = self.connection(&self.reads).await?;
        let from = if after.is_empty() { "-".to_owned() } else { format!("({after}") };
        let reply: Result<Vec<QueueRow>, RedisError> = redis::cmd("XRANGE")
            .arg(self.key(id, "pushq"))
            .arg(from)
            .arg("+")
            .arg("COUNT")
            .arg(QUEUE_BATCH)
            .query_async(&mut conn)
            .await;
        let rows = match reply {
            Ok(r) => r,
            Err(e) => return Err(self.failed(&self.reads, "read_queue", &e).await),
        };
        let mut out = Vec::with_capacity(rows.len());
        let (mut lines, mut bytes) = (0, 0);
        for (entry, fields) in rows {
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            let payload = field("b").unwrap_or_default();
            let batch: Batch =
                serde_json::from_str(payload).map_err(|e| StoreError::Protocol(format!("a queued push: {e}")))?;
            let at = field("t").and_then(|t| t.parse().ok()).unwrap_or_default();
            lines += batch.lines.len();
            bytes += payload.len();
            out.push(QueuedBatch { entry, batch, at });
            if lines >= max_lines || bytes >= QUEUE_BYTES {
                break;
            }
        }
        metrics::counter!(crate::telemetry::STORE_READS).increment(1);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
