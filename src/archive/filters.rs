//! The WHERE clauses and page assembly of a search, the same on both backends
//! (`QueryBuilder` writes each backend's placeholders).

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::query::SearchCursor;
use super::{ArchiveError, SearchHit, SearchPage, SearchQuery};

/// Appends ` AND …` for the filters of `q` and the keyset position after `cursor`, over
/// `r` (runs) and `l` (lines): hits are ordered by `r.sort_at DESC, r.instance_id, l.line`.
pub(super) fn push_search_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, q: &SearchQuery, cursor: Option<SearchCursor>)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    if let Some(job) = &q.job {
        qb.push(" AND r.job_name = ").push_bind(job.clone());
    }
    if let Some(status) = q.status {
        qb.push(" AND r.status = ").push_bind(status.name().to_owned());
    }
    if let Some(cause) = &q.cause {
        qb.push(" AND r.cause = ").push_bind(cause.clone());
    }
    if let Some(since) = q.since {
        qb.push(" AND r.sort_at >= ").push_bind(since);
    }
    if let Some(until) = q.until {
        qb.push(" AND r.sort_at < ").push_bind(until);
    }
    if let Some(c) = cursor {
        qb.push(" AND (r.sort_at < ").push_bind(c.sort_at);
        qb.push(" OR (r.sort_at = ").push_bind(c.sort_at);
        qb.push(" AND (r.instance_id > ").push_bind(c.instance_id);
        qb.push(" OR (r.instance_id = ").push_bind(c.instance_id);
        qb.push(" AND l.line > ").push_bind(c.line).push("))))");
    }
}

/// The page of the first `limit` of `rows` (fetched with `LIMIT limit + 1`), each read by
/// `hit` as the hit and its run's `sort_at`; a cursor when there is more.
pub(super) fn search_page<R>(
    rows: &[R],
    limit: u32,
    mut hit: impl FnMut(&R) -> Result<(SearchHit, i64), sqlx::Error>,
) -> Result<SearchPage, ArchiveError> {
    let mut hits = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last = None;
    for row in rows.iter().take(limit as usize) {
        let (h, sort_at) = hit(row)?;
        last = Some(SearchCursor { sort_at, instance_id: h.instance_id, line: super::query::signed(h.line) });
        hits.push(h);
    }
    let next_cursor = if rows.len() > limit as usize { last.map(|c| c.encode()) } else { None };
    Ok(SearchPage { hits, next_cursor })
}
