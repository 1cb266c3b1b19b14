//! The pure parts both backends share: validation, cursors, LIKE and FTS5 quoting,
//! attempts of lines, percentiles.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{ArchiveError, SearchQuery, MAX_PAGE, MIN_QUERY_CHARS};
use crate::logs::{Attempt, Status};

/// The longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;

/// Checks what the store cannot answer: a query shorter than [`MIN_QUERY_CHARS`] or
/// longer than [`MAX_QUERY_CHARS`] characters, a NUL, a cursor we did not issue.
///
/// # Errors
/// [`ArchiveError::BadQuery`] saying which.
pub fn validate_search(q: &SearchQuery) -> Result<(), ArchiveError> {
    let chars = q.q.chars().count();
    if chars < MIN_QUERY_CHARS {
        return Err(ArchiveError::BadQuery(format!(
            "q must have at least {MIN_QUERY_CHARS} characters (it has {chars})"
        )));
    }
    if chars > MAX_QUERY_CHARS {
        return Err(ArchiveError::BadQuery(format!("q must have at most {MAX_QUERY_CHARS} characters")));
    }
    if q.q.contains('\0') {
        return Err(ArchiveError::BadQuery("q must not contain a NUL character".to_owned()));
    }
    if let Some(cursor) = &q.cursor {
        SearchCursor::decode(cursor)?;
    }
    Ok(())
}

/// `limit` within `1..=`[`MAX_PAGE`].
pub fn page_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_PAGE)
}

/// A LIKE pattern matching `q` anywhere, with `\` as the escape character for `%`, `_`
/// and `\` itself.
pub fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// An FTS5 query for the substring `q`: one phrase (a trigram table matches a phrase as
/// a substring), `"` doubled inside.
pub fn fts_phrase(q: &str) -> String {
    format!("\"{}\"", q.replace('"', "\"\""))
}

/// Where a page of hits ended: the last hit's run key and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor {
    pub sort_at: i64,
    pub instance_id: i64,
    pub line: i64,
}

/// Where a page of runs ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunsCursor {
    pub sort_at: i64,
    pub instance_id: i64,
}

fn bad_cursor() -> ArchiveError {
    ArchiveError::BadQuery("cursor is not one this archive issued".to_owned())
}

fn decode_fields<const N: usize>(cursor: &str, tag: &str) -> Result<[i64; N], ArchiveError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let mut parts = text.split(':');
    if parts.next() != Some(tag) {
        return Err(bad_cursor());
    }
    let mut out = [0i64; N];
    for slot in &mut out {
        *slot = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad_cursor)?;
    }
    if parts.next().is_some() {
        return Err(bad_cursor());
    }
    Ok(out)
}

impl SearchCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("s1:{}:{}:{}", self.sort_at, self.instance_id, self.line))
    }

    /// # Errors
    /// [`ArchiveError::BadQuery`] for anything [`encode`](Self::encode) did not make.
    pub fn decode(cursor: &str) -> Result<Self, ArchiveError> {
        let [sort_at, instance_id, line] = decode_fields::<3>(cursor, "s1")?;
        Ok(SearchCursor { sort_at, instance_id, line })
    }
}

impl RunsCursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("r1:{}:{}", self.sort_at, self.instance_id))
    }

    /// # Errors
    /// [`ArchiveError::BadQuery`] for anything [`encode`](Self::encode) did not make.
    pub fn decode(cursor: &str) -> Result<Self, ArchiveError> {
        let [sort_at, instance_id] = decode_fields::<2>(cursor, "r1")?;
        Ok(RunsCursor { sort_at, instance_id })
    }
}

/// The attempt that logged served line `line`: the last attempt starting at or before
/// it (1 when none is known).
pub fn attempt_of(line: u64, attempts: &[Attempt]) -> u32 {
    attempts.iter().rev().find(|a| a.from_line <= line).or(attempts.first()).map_or(1, |a| a.attempt)
}

/// The run's last attempt (1 when none is known).
pub fn last_attempt(attempts: &[Attempt]) -> u32 {
    attempts.iter().map(|a| a.attempt).max().unwrap_or(1)
}

/// The 0-based offset of the nearest-rank `percent` percentile among `n` sorted values
/// (`None` when there are none): rank ⌈percent/100 · n⌉.
pub fn nearest_rank(percent: u32, n: u64) -> Option<u64> {
    if n == 0 {
        return None;
    }
    let rank = (u64::from(percent) * n).div_ceil(100).max(1);
    Some(rank.min(n) - 1)
}

/// [`Status`] from the name we store ([`Status::name`]); unknown names read as
/// [`Status::Unknown`].
pub fn status_from_name(name: &str) -> Status {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).unwrap_or(Status::Unknown)
}

/// The attempts as stored (JSON).
pub fn attempts_to_json(attempts: &[Attempt]) -> String {
    serde_json::to_string(attempts).unwrap_or_else(|_| "[]".to_owned())
}

/// # Errors
/// [`ArchiveError::Other`] when the stored JSON does not parse.
pub fn attempts_from_json(json: &str) -> Result<Vec<Attempt>, ArchiveError> {
    serde_json::from_str(json).map_err(|e| ArchiveError::Other(format!("stored attempts do not parse: {e}")))
}

/// A stored integer that must not be negative (line numbers, counts).
pub fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A count or line number as stored (saturating at `i64::MAX`).
pub fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escapes_wildcards_and_backslash() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(like_pattern("héllo"), "%héllo%");
    }

    #[test]
    fn fts_phrase_doubles_quotes() {
        assert_eq!(fts_phrase("say \"hi\" now"), "\"say \"\"hi\"\" now\"");
        assert_eq!(fts_phrase("a OR b*"), "\"a OR b*\"");
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_ones() {
        let c = SearchCursor { sort_at: -5, instance_id: i64::MAX, line: 42 };
        assert_eq!(SearchCursor::decode(&c.encode()).unwrap(), c);
        let r = RunsCursor { sort_at: 1_764_900_001_120, instance_id: 7 };
        assert_eq!(RunsCursor::decode(&r.encode()).unwrap(), r);
        for bad in ["", "!!", "czE6MToy", &r.encode()] {
            assert!(matches!(SearchCursor::decode(bad), Err(ArchiveError::BadQuery(_))), "{bad}");
        }
        assert!(RunsCursor::decode(&c.encode()).is_err());
    }

    #[test]
    fn validation_counts_characters_not_bytes() {
        let q = |s: &str| SearchQuery { q: s.to_owned(), limit: 10, ..SearchQuery::default() };
        assert!(validate_search(&q("ab")).is_err());
        assert!(validate_search(&q("日本")).is_err());
        assert!(validate_search(&q("日本語")).is_ok());
        assert!(validate_search(&q("a\0b")).is_err());
        assert!(validate_search(&q(&"x".repeat(MAX_QUERY_CHARS + 1))).is_err());
        let mut with_cursor = q("abc");
        with_cursor.cursor = Some("nope".to_owned());
        assert!(validate_search(&with_cursor).is_err());
    }

    #[test]
    fn attempts_of_lines() {
        let attempts = [Attempt { attempt: 1, from_line: 0 }, Attempt { attempt: 2, from_line: 10 }];
        assert_eq!(attempt_of(0, &attempts), 1);
        assert_eq!(attempt_of(9, &attempts), 1);
        assert_eq!(attempt_of(10, &attempts), 2);
        assert_eq!(attempt_of(99, &attempts), 2);
        assert_eq!(attempt_of(3, &[]), 1);
        assert_eq!(attempt_of(0, &[Attempt { attempt: 3, from_line: 5 }]), 3);
        assert_eq!(last_attempt(&attempts), 2);
        assert_eq!(last_attempt(&[]), 1);
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(50, 0), None);
        assert_eq!(nearest_rank(50, 1), Some(0));
        assert_eq!(nearest_rank(95, 1), Some(0));
        assert_eq!(nearest_rank(50, 4), Some(1));
        assert_eq!(nearest_rank(95, 20), Some(18));
        assert_eq!(nearest_rank(95, 21), Some(19));
        assert_eq!(nearest_rank(100, 7), Some(6));
    }

    #[test]
    fn statuses_by_name() {
        for s in [Status::Failed, Status::Succeed, Status::Stopped, Status::Canceled, Status::Running] {
            assert_eq!(status_from_name(s.name()), s);
        }
        assert_eq!(status_from_name("NOPE"), Status::Unknown);
    }
}
