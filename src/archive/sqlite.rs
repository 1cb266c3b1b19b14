//! The archive on embedded SQLite: WAL, FTS5 `trigram` over the line text.
//!
//! A run's lines get consecutive rowids in one `BEGIN IMMEDIATE` transaction (the write
//! lock is taken first, so nobody else allocates ids meanwhile), inserted from one JSON
//! array per batch (`json_each`: one statement, one bound value, however many lines),
//! then indexed with one `INSERT … SELECT` into the external-content FTS5 table.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool};

use super::common::common_queries;
use super::query::{self, RunsCursor, SearchCursor};
use super::{
    ArchiveError, ArchivedLog, JobStats, RunSummary, RunsPage, RunsQuery, SearchHit, SearchPage, SearchQuery,
    StartupOutcome, Usage, ACQUIRE_TIMEOUT,
};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines per insert statement (one JSON array each).
const INSERT_BATCH: usize = 5_000;

/// The SQLite archive.
#[derive(Clone)]
pub struct SqliteArchive {
    pool: SqlitePool,
    plan_cap: i64,
}

impl SqliteArchive {
    /// Opens (creating the file when missing) and migrates.
    ///
    /// # Errors
    /// See [`super::Archive::open`].
    pub(super) async fn open(url: &str, max_connections: u32) -> Result<Self, ArchiveError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        // An in-memory database lives as long as its one connection.
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut pool = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        pool = if memory {
            pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            pool.max_connections(max_connections)
        };
        let pool = pool.connect_with(options).await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteArchive { pool, plan_cap: super::SEARCH_PLAN_CAP })
    }

    pub(super) fn set_plan_cap(&mut self, cap: i64) {
        self.plan_cap = cap;
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    common_queries!(Sqlite);

    pub(super) async fn put(&self, log: &ArchivedLog) -> Result<(), ArchiveError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        delete_run(&mut tx, log.instance_id).await?;
        let base: i64 =
            sqlx::query("SELECT coalesce(max(id), 0) + 1 FROM lines").fetch_one(&mut *tx).await?.try_get(0)?;
        let bytes: usize = log.lines.iter().map(String::len).sum();
        let startup = log.startup.as_ref();
        sqlx::query(
            "INSERT INTO runs (instance_id, epoch, job_id, job_name, status, started_at, finished_at, archived_at, \
             sort_at, attempt, attempts, upstream_lost, truncated, phase, ready_after_ms, cause, cause_line, \
             line_count, bytes, first_line_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        )
        .bind(log.instance_id)
        .bind(&log.epoch)
        .bind(log.job_id)
        .bind(&log.job_name)
        .bind(log.status.name())
        .bind(log.started_at)
        .bind(log.finished_at)
        .bind(log.archived_at)
        .bind(log.sort_at())
        .bind(i64::from(query::last_attempt(&log.attempts)))
        .bind(query::attempts_to_json(&log.attempts))
        .bind(log.upstream_lost)
        .bind(log.truncated)
        .bind(startup.map(|s| s.phase.as_str()))
        .bind(startup.and_then(|s| s.ready_after_ms))
        .bind(startup.and_then(|s| s.cause.as_deref()))
        .bind(startup.and_then(|s| s.cause_line).map(query::signed))
        .bind(query::signed(log.lines.len() as u64))
        .bind(query::signed(bytes as u64))
        .bind(base)
        .execute(&mut *tx)
        .await?;
        for (chunk_no, chunk) in log.lines.chunks(INSERT_BATCH).enumerate() {
            let first = chunk_no * INSERT_BATCH;
            let rows: Vec<(u32, &str)> = chunk
                .iter()
                .enumerate()
                .map(|(i, text)| (query::attempt_of((first + i) as u64, &log.attempts), text.as_str()))
                .collect();
            let json = serde_json::to_string(&rows).map_err(|e| ArchiveError::Other(e.to_string()))?;
            sqlx::query(
                "INSERT INTO lines (id, instance_id, line, attempt, text) \
                 SELECT ?1 + j.key, ?2, ?3 + j.key, j.value ->> 0, j.value ->> 1 FROM json_each(?4) AS j",
            )
            .bind(base + first as i64)
            .bind(log.instance_id)
            .bind(first as i64)
            .bind(json)
            .execute(&mut *tx)
            .await?;
        }
        if !log.lines.is_empty() {
            sqlx::query("INSERT INTO lines_fts (rowid, text) SELECT id, text FROM lines WHERE id BETWEEN ?1 AND ?2")
                .bind(base)
                .bind(base + log.lines.len() as i64 - 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get(&self, instance_id: i64) -> Result<Option<ArchivedLog>, ArchiveError> {
        // One read transaction: the run and its lines from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT epoch, job_id, job_name, status, started_at, finished_at, archived_at, attempts, \
             upstream_lost, truncated, phase, ready_after_ms, cause, cause_line, first_line_id, line_count \
             FROM runs WHERE instance_id = ?1",
        )
        .bind(instance_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let first: i64 = row.try_get(14)?;
        let count: i64 = row.try_get(15)?;
        let lines = sqlx::query("SELECT text FROM lines WHERE id BETWEEN ?1 AND ?2 ORDER BY id")
            .bind(first)
            .bind(first + count - 1)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        let phase: Option<String> = row.try_get(10)?;
        Ok(Some(ArchivedLog {
            instance_id,
            epoch: row.try_get(0)?,
            job_id: row.try_get(1)?,
            job_name: row.try_get(2)?,
            status: query::status_from_name(&row.try_get::<String, _>(3)?),
            started_at: row.try_get(4)?,
            finished_at: row.try_get(5)?,
            archived_at: row.try_get(6)?,
            lines,
            attempts: query::attempts_from_json(&row.try_get::<String, _>(7)?)?,
            upstream_lost: row.try_get(8)?,
            truncated: row.try_get(9)?,
            startup: match phase {
                Some(phase) => Some(StartupOutcome {
                    phase,
                    ready_after_ms: row.try_get(11)?,
                    cause: row.try_get(12)?,
                    cause_line: row.try_get::<Option<i64>, _>(13)?.map(query::unsigned),
                }),
                None => None,
            },
        }))
    }

    /// Two plans (see [`super::SEARCH_PLAN_CAP`]): with few matches in the whole archive,
    /// every match from the trigram index, joined and sorted; with many, the runs in
    /// order, each probed through the index within its rowid range, until the page is full.
    pub(super) async fn search(&self, q: &SearchQuery) -> Result<SearchPage, ArchiveError> {
        let cursor = q.cursor.as_deref().map(SearchCursor::decode).transpose()?;
        let limit = query::page_limit(q.limit);
        let phrase = query::fts_phrase(&q.q);
        let mut conn = self.pool.acquire().await?;
        let matches: i64 =
            sqlx::query("SELECT count(*) FROM (SELECT 1 FROM lines_fts WHERE lines_fts MATCH ?1 LIMIT ?2)")
                .bind(&phrase)
                .bind(self.plan_cap)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
        // CROSS JOIN fixes the join order.
        let mut qb = if matches < self.plan_cap {
            // The index first, then each hit's line and run by primary key.
            sqlx::QueryBuilder::<Sqlite>::new(
                "SELECT l.instance_id, l.attempt, l.line, l.text, r.job_name, r.finished_at, r.sort_at \
                 FROM lines_fts CROSS JOIN lines AS l ON l.id = lines_fts.rowid \
                 CROSS JOIN runs AS r ON r.instance_id = l.instance_id WHERE lines_fts MATCH ",
            )
        } else {
            // The runs in the order of the page (an index), then the index within each.
            sqlx::QueryBuilder::<Sqlite>::new(
                "SELECT l.instance_id, l.attempt, l.line, l.text, r.job_name, r.finished_at, r.sort_at \
                 FROM runs AS r CROSS JOIN lines_fts CROSS JOIN lines AS l ON l.id = lines_fts.rowid \
                 WHERE lines_fts.rowid BETWEEN r.first_line_id AND r.first_line_id + r.line_count - 1 \
                 AND lines_fts MATCH ",
            )
        };
        qb.push_bind(phrase);
        super::filters::push_search_filters(&mut qb, q, cursor);
        qb.push(" ORDER BY r.sort_at DESC, r.instance_id, l.line LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&mut *conn).await?;
        super::filters::search_page(&rows, limit, |row| {
            Ok((
                SearchHit {
                    instance_id: row.try_get(0)?,
                    attempt: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(1),
                    line: query::unsigned(row.try_get(2)?),
                    text: row.try_get(3)?,
                    job_name: row.try_get(4)?,
                    finished_at: row.try_get(5)?,
                },
                row.try_get(6)?,
            ))
        })
    }

    pub(super) async fn purge_finished_before(&self, cutoff_ms: i64, batch: u32) -> Result<u64, ArchiveError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids = Self::purge_batch(&mut tx, cutoff_ms, batch).await?;
        for &id in &ids {
            delete_run(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    pub(super) async fn usage(&self) -> Result<Usage, ArchiveError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query("SELECT count(*), coalesce(sum(line_count), 0) FROM runs").fetch_one(&mut *conn).await?;
        let (runs, lines): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let mut pragma = async |name: &str| -> Result<i64, ArchiveError> {
            Ok(sqlx::query(&format!("PRAGMA {name}")).fetch_one(&mut *conn).await?.try_get(0)?)
        };
        let used = pragma("page_count").await? - pragma("freelist_count").await?;
        let page = pragma("page_size").await?;
        Ok(Usage { runs: query::unsigned(runs), lines: query::unsigned(lines), bytes: query::unsigned(used * page) })
    }
}

/// Deletes the run of `instance_id` with its lines and their index entries (nothing when
/// it is not archived).
async fn delete_run(conn: &mut SqliteConnection, instance_id: i64) -> Result<(), ArchiveError> {
    let Some(row) = sqlx::query("SELECT first_line_id, line_count FROM runs WHERE instance_id = ?1")
        .bind(instance_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let first: i64 = row.try_get(0)?;
    let last = first + row.try_get::<i64, _>(1)? - 1;
    // External content: the index forgets a row only when told its old text.
    sqlx::query(
        "INSERT INTO lines_fts (lines_fts, rowid, text) \
         SELECT 'delete', id, text FROM lines WHERE id BETWEEN ?1 AND ?2",
    )
    .bind(first)
    .bind(last)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM lines WHERE id BETWEEN ?1 AND ?2").bind(first).bind(last).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM runs WHERE instance_id = ?1").bind(instance_id).execute(&mut *conn).await?;
    Ok(())
}
