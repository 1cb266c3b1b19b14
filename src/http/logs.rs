//! `GET /llm/logs` and `GET /llm/logs/{instanceId}/raw`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;

use super::auth::{Authorized, ReadLogs};
use super::error::ApiError;
use super::extract::{digits, strict_query, ApiPath};
use super::state::AppState;
use crate::service::BorrowedPage;

/// Most lines in one answer.
pub const MAX_LIMIT: u32 = 10_000;
/// Lines in one answer when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 1_000;
/// Longest long-poll.
pub const MAX_WAIT_MS: u32 = 30_000;

/// The query of `GET /llm/logs`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsQuery {
    /// PowerJob instance id.
    pub instance_id: i64,
    /// First line wanted.
    pub from_line: u64,
    /// Most lines in the answer.
    pub limit: u32,
    /// Long-poll time.
    pub wait_ms: u32,
    /// The epoch the client's cursor belongs to (410 when it is not the current one).
    pub epoch: Option<String>,
}

impl LogsQuery {
    /// Parses and validates a raw query string (strictly: see [`strict_query`]).
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] naming the parameter.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let values = strict_query(raw, ["instanceId", "fromLine", "limit", "waitMs", "epoch"])?;
        let [id, from, limit, wait, epoch] = values.each_ref().map(|v| v.as_deref());
        let instance_id = parse_instance_id(
            id.ok_or_else(|| ApiError::BadRequest("query parameter `instanceId` is required".into()))?,
        )?;
        let from_line = match from {
            None => 0,
            Some(v) => digits::<u64>(v)
                .ok_or_else(|| ApiError::BadRequest(format!("`fromLine` must be a non-negative integer, got {v:?}")))?,
        };
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => digits::<u32>(v).filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::BadRequest(format!("`limit` must be an integer from 1 to {MAX_LIMIT}, got {v:?}"))
            })?,
        };
        let wait_ms = match wait {
            None => 0,
            Some(v) => digits::<u32>(v).filter(|n| *n <= MAX_WAIT_MS).ok_or_else(|| {
                ApiError::BadRequest(format!("`waitMs` must be an integer from 0 to {MAX_WAIT_MS}, got {v:?}"))
            })?,
        };
        let epoch = epoch.map(parse_epoch).transpose()?;
        Ok(LogsQuery { instance_id, from_line, limit, wait_ms, epoch })
    }
}

/// A PowerJob instance id: decimal digits of a positive i64.
///
/// # Errors
/// [`ApiError::BadRequest`] otherwise.
pub fn parse_instance_id(v: &str) -> Result<i64, ApiError> {
    digits::<i64>(v).filter(|n| *n > 0).ok_or_else(|| {
        ApiError::BadRequest(format!("`instanceId` must be a positive 64-bit decimal integer, got {v:?}"))
    })
}

/// The `epoch` query parameter: an epoch's shape, `<boot id: 16 lowercase hex digits>-<entry
/// number: a positive decimal integer>` (docs/API.md, "Epochs"); one of that shape that
/// is not the current epoch gets 410.
///
/// # Errors
/// [`ApiError::BadRequest`] otherwise.
pub fn parse_epoch(v: &str) -> Result<String, ApiError> {
    let shaped = v.split_once('-').is_some_and(|(boot, n)| {
        boot.len() == 16
            && boot.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && digits::<u64>(n).is_some_and(|n| n > 0)
    });
    if !shaped {
        return Err(ApiError::BadRequest(format!(
            "`epoch` must be the `epoch` of an earlier answer (16 hex digits, a dash and a number, like `9f2c4e81a07b3d56-12`), got {v:?}"
        )));
    }
    Ok(v.to_owned())
}

/// The header that carries the epoch of `GET /llm/logs/{instanceId}/raw`.
pub const EPOCH_HEADER: &str = "powertail-epoch";

/// The 200 answer of `GET /llm/logs`, encoded straight from the borrowed page.
///
/// Written by hand because it is the hot path: a line that needs no JSON escaping (no
/// `"`, `\\` or control byte: nearly all log lines) is copied as is, which is several
/// times faster than escaping it byte by byte; other lines go through `serde_json`.
/// Field order and names are those of the contract (`docs/API.md`).
pub fn encode_page(p: &BorrowedPage<'_>) -> Vec<u8> {
    use std::io::Write as _;
    let text_len: usize = p.lines.iter().map(|l| l.len() + 3).sum();
    let mut out = Vec::with_capacity(text_len + 256);
    let _ = write!(
        out,
        "{{\"instanceId\":\"{}\",\"epoch\":\"{}\",\"fromLine\":{},\"nextLine\":{},\"lines\":[",
        p.instance_id,
        p.epoch,
        p.from_line,
        p.next_line()
    );
    for (k, line) in p.lines.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let bytes = line.as_bytes();
        // No early exit: this form compiles to a vectorised scan.
        let needs_escape = bytes.iter().fold(false, |acc, &b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'));
        if !needs_escape {
            out.push(b'"');
            out.extend_from_slice(bytes);
            out.push(b'"');
        } else {
            serde_json::to_writer(&mut out, line).expect("a string serialises");
        }
    }
    let _ = write!(
        out,
        "],\"totalLines\":{},\"status\":\"{}\",\"complete\":{},\"stale\":{}",
        p.total_lines,
        p.status.name(),
        p.complete,
        p.stale
    );
    if p.upstream_lost {
        out.extend_from_slice(b",\"upstreamLost\":true");
    }
    if p.truncated {
        out.extend_from_slice(b",\"truncated\":true");
    }
    let _ = write!(out, ",\"attempt\":{},\"attempts\":[", p.attempt);
    for (k, a) in p.attempts.iter().enumerate() {
        let sep = if k > 0 { "," } else { "" };
        let _ = write!(out, "{sep}{{\"attempt\":{},\"fromLine\":{}}}", a.attempt, a.from_line);
    }
    out.push(b']');
    if let Some(push) = &p.push {
        let _ = write!(
            out,
            ",\"push\":{{\"sources\":{},\"lines\":{},\"lastAt\":{}}}",
            push.sources, push.lines, push.last_at
        );
    }
    out.push(b'}');
    out
}

/// The `push` field of log answers and stream events (docs/API.md, "Pushing lines"):
/// sources seen, lines served from pushes, when the last body arrived.
pub fn push_json(push: &crate::logs::PushStats) -> serde_json::Value {
    serde_json::json!({"sources": push.sources, "lines": push.lines, "lastAt": push.last_at})
}

/// [`encode_page`] of `p`, or, when `p` asks for lines past the end of a complete log (a
/// corrupted or foreign cursor), of the end itself: `fromLine = nextLine = totalLines`.
fn encode_answer(p: &BorrowedPage<'_>) -> Vec<u8> {
    match past_end(p.complete, p.from_line, p.total_lines) {
        Some(end) => encode_page(&BorrowedPage { from_line: end, ..p.clone() }),
        None => encode_page(p),
    }
}

/// The line to answer from instead of `from_line` when it lies past the end of a
/// complete log (see docs/API.md, "Past the end"). A growing log keeps the cursor: its
/// lines may still come (in cluster mode a replica may be behind another).
pub fn past_end(complete: bool, from_line: u64, total_lines: u64) -> Option<u64> {
    (complete && from_line > total_lines).then_some(total_lines)
}

/// `GET /llm/logs`
pub async fn get_logs(
    State(state): State<AppState>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let logs = &state.logs;
    let q = LogsQuery::parse(raw.as_deref())?;
    let wait = Duration::from_millis(u64::from(q.wait_ms));
    let _permit = if q.wait_ms > 0 { Some(state.wait_permit()?) } else { None };
    // Serialised while the lines are borrowed: no copy, no reference-count traffic.
    let epoch = q.epoch.as_deref();
    let req =
        crate::service::ReadRequest { id: q.instance_id, from_line: q.from_line, limit: q.limit as usize, wait, epoch };
    let body = logs.read_with(req, encode_answer).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `GET /llm/logs/{instanceId}/raw`: the whole log as text, one line per `\n`.
pub async fn get_raw(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    _: Authorized<ReadLogs>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let logs = &state.logs;
    let id = parse_instance_id(&id)?;
    strict_query(raw.as_deref(), [])?;
    let (epoch, body) = logs
        .read_all_with(id, |epoch, lines| {
            let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for l in lines.iter() {
                body.push_str(l);
                body.push('\n');
            }
            (epoch.to_owned(), body)
        })
        .await?;
    // The epoch is ASCII hex, a dash and digits: always a valid header value.
    let epoch = header::HeaderValue::from_str(&epoch).expect("an epoch is a valid header value");
    let text = header::HeaderValue::from_static("text/plain; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, text), (header::HeaderName::from_static(EPOCH_HEADER), epoch)], body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_encoding_is_the_json_of_the_contract() {
        use crate::logs::lines::Lines;
        use crate::logs::Attempt;
        use crate::service::LogPage;
        let text = [
            "2026-11-25 10:00:01.120 [10.0.0.5:27777] INFO plain",
            "quote \" and backslash \\ and tab \t",
            "\u{1b}[1;36m(APIServer pid=1)\u{1b}[0;0m ansi",
            "ünïcödé ✓ \u{2028} \u{7f}",
            "",
        ];
        let lines: Lines = text.into_iter().collect();
        let attempts = [Attempt { attempt: 1, from_line: 0 }, Attempt { attempt: 2, from_line: 9 }];
        let pushed =
            crate::logs::PushStats { sources: 2, lines: 1234, last_at: 1_764_900_001_120, ..Default::default() };
        for (upstream_lost, truncated, push) in
            [(false, false, None), (true, false, None), (false, true, None), (false, false, Some(pushed))]
        {
            let page = LogPage {
                instance_id: 677_182_124_851_200_064,
                epoch: "0123456789abcdef-7",
                from_line: 7,
                lines: lines.all(),
                total_lines: 12,
                status: crate::logs::Status::Running,
                complete: false,
                stale: true,
                upstream_lost,
                truncated,
                attempt: 2,
                attempts: &attempts[..],
                push,
            };
            let got: serde_json::Value = serde_json::from_slice(&encode_page(&page)).unwrap();
            let mut want = serde_json::json!({
                "instanceId": "677182124851200064", "epoch": "0123456789abcdef-7", "fromLine": 7, "nextLine": 12,
                "lines": text,
                "totalLines": 12, "status": "RUNNING", "complete": false, "stale": true,
                "attempt": 2, "attempts": [{"attempt": 1, "fromLine": 0}, {"attempt": 2, "fromLine": 9}],
            });
            if upstream_lost {
                want["upstreamLost"] = serde_json::Value::Bool(true);
            }
            if truncated {
                want["truncated"] = serde_json::Value::Bool(true);
            }
            if push.is_some() {
                want["push"] = serde_json::json!({"sources": 2, "lines": 1234, "lastAt": 1_764_900_001_120_i64});
            }
            assert_eq!(got, want);
        }
    }

    fn bad(q: &str) -> String {
        match LogsQuery::parse(Some(q)) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{q}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_contract() {
        let q = LogsQuery::parse(Some("instanceId=677182124851200064&fromLine=3&limit=10&waitMs=500&_=1")).unwrap();
        assert_eq!(
            q,
            LogsQuery { instance_id: 677_182_124_851_200_064, from_line: 3, limit: 10, wait_ms: 500, epoch: None }
        );
        let q = LogsQuery::parse(Some("instanceId=5&epoch=0123456789abcdef-12")).unwrap();
        assert_eq!(q.epoch.as_deref(), Some("0123456789abcdef-12"));
        let q = LogsQuery::parse(Some("instanceId=5")).unwrap();
        assert_eq!((q.from_line, q.limit, q.wait_ms), (0, DEFAULT_LIMIT, 0));
    }

    #[test]
    fn rejects_every_bad_input_naming_it() {
        assert!(bad("").contains("instanceId"));
        assert!(bad("instanceId=abc").contains("instanceId"));
        assert!(bad("instanceId=-5").contains("instanceId"));
        assert!(bad("instanceId=0").contains("instanceId"));
        assert!(bad("instanceId=99999999999999999999").contains("instanceId"));
        assert!(bad("instanceId=1&fromLine=-1").contains("fromLine"));
        assert!(bad("instanceId=1&fromLine=x").contains("fromLine"));
        assert!(bad("instanceId=1&fromLine=1.5").contains("fromLine"));
        assert!(bad("instanceId=1&limit=0").contains("limit"));
        assert!(bad("instanceId=1&limit=10001").contains("limit"));
        assert!(bad("instanceId=1&waitMs=30001").contains("waitMs"));
        assert!(bad("instanceId=1&fromline=5").contains("fromline"));
        assert!(bad("instanceId=1&fromLine=5&fromLine=6").contains("repeated"));
        assert!(bad("instanceId=1&instanceId=2").contains("repeated"));
        assert!(bad("instanceId=1&epoch=").contains("epoch"));
        assert!(bad("instanceId=1&epoch=a%20b").contains("epoch"));
        assert!(bad("instanceId=1&epoch=a&epoch=b").contains("repeated"));
        for shapeless in ["bogus", "0123456789abcdef", "0123456789abcdef-0", "0123456789abcdef-x", "0123456789abcdeF-1"]
        {
            assert!(bad(&format!("instanceId=1&epoch={shapeless}")).contains("16 hex digits"), "{shapeless}");
        }
        assert!(LogsQuery::parse(Some("instanceId=1&_=1&_=2")).is_ok());
    }
}
