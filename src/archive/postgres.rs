//! The archive on PostgreSQL: several replicas share it; `pg_trgm` GIN over the text.
//!
//! A put takes a transaction-scoped advisory lock on the instance id (two replicas that
//! archive the same run wait for each other instead of failing on the primary key),
//! deletes the old run (its lines cascade), and inserts the lines with `UNNEST` of three
//! arrays per batch: one statement per [`INSERT_BATCH`] lines.

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row};

use super::common::common_queries;
use super::query::{self, RunsCursor, SearchCursor};
use super::{
    ArchiveError, ArchivedLog, JobStats, RunSummary, RunsPage, RunsQuery, SearchHit, SearchPage, SearchQuery,
    StartupOutcome, Usage, ACQUIRE_TIMEOUT,
};

/// Lines per insert statement.
const INSERT_BATCH: usize = 10_000;

/// The PostgreSQL archive.
#[derive(Clone)]
pub struct PgArchive {
    pool: PgPool,
    plan_cap: i64,
}

/// PostgreSQL text cannot hold NUL: stored as U+FFFD.
fn storable(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

impl PgArchive {
    /// Connects and migrates (the migrator holds an advisory lock: replicas starting
    /// together migrate once).
    ///
    /// # Errors
    /// See [`super::Archive::open`].
    pub(super) async fn open(url: &str, max_connections: u32) -> Result<Self, ArchiveError> {
        // The server gives up on a statement when we would (OP_TIMEOUT): no query runs on
        // there after its caller was answered `Unavailable`.
        let statement_timeout = format!("{}s", super::OP_TIMEOUT.as_secs());
        let options = PgConnectOptions::from_str(url)?
            .application_name("powertail")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgArchive { pool, plan_cap: super::SEARCH_PLAN_CAP })
    }

    pub(super) fn set_plan_cap(&mut self, cap: i64) {
        self.plan_cap = cap;
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    common_queries!(Postgres);

    pub(super) async fn put(&self, log: &ArchivedLog) -> Result<(), ArchiveError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(log.instance_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM runs WHERE instance_id = $1").bind(log.instance_id).execute(&mut *tx).await?;
        let bytes: usize = log.lines.iter().map(String::len).sum();
        let startup = log.startup.as_ref();
        sqlx::query(
            "INSERT INTO runs (instance_id, epoch, job_id, job_name, status, started_at, finished_at, archived_at, \
             sort_at, attempt, attempts, upstream_lost, truncated, phase, ready_after_ms, cause, cause_line, \
             line_count, bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
        .execute(&mut *tx)
        .await?;
        for (chunk_no, chunk) in log.lines.chunks(INSERT_BATCH).enumerate() {
            let first = chunk_no * INSERT_BATCH;
            let numbers: Vec<i64> = (first..first + chunk.len()).map(|n| n as i64).collect();
            let attempts: Vec<i32> = (first..first + chunk.len())
                .map(|n| i32::try_from(query::attempt_of(n as u64, &log.attempts)).unwrap_or(i32::MAX))
                .collect();
            let texts: Vec<String> = chunk.iter().map(|t| storable(t)).collect();
            sqlx::query(
                "INSERT INTO lines (instance_id, line, attempt, text) \
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::int[], $4::text[])",
            )
            .bind(log.instance_id)
            .bind(numbers)
            .bind(attempts)
            .bind(texts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn get(&self, instance_id: i64) -> Result<Option<ArchivedLog>, ArchiveError> {
        // REPEATABLE READ: the run and its lines from the same snapshot.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let Some(row) = sqlx::query(
            "SELECT epoch, job_id, job_name, status, started_at, finished_at, archived_at, attempts, \
             upstream_lost, truncated, phase, ready_after_ms, cause, cause_line \
             FROM runs WHERE instance_id = $1",
        )
        .bind(instance_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query("SELECT text FROM lines WHERE instance_id = $1 ORDER BY line")
            .bind(instance_id)
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

    /// Two plans, as on SQLite (see [`super::SEARCH_PLAN_CAP`]): few matches in the whole
    /// archive, the GIN index finds them all and the page is sorted from them; many, the
    /// runs are walked in page order (an index) and each run's lines scanned in line
    /// order (the primary key) until the page is full; bitmap and sequential scans, hash
    /// and merge joins are turned off for that statement so the planner keeps that order.
    pub(super) async fn search(&self, q: &SearchQuery) -> Result<SearchPage, ArchiveError> {
        let cursor = q.cursor.as_deref().map(SearchCursor::decode).transpose()?;
        let limit = query::page_limit(q.limit);
        let pattern = query::like_pattern(&q.q);
        let mut tx = self.pool.begin_with("BEGIN READ ONLY").await?;
        let matches: i64 = sqlx::query("SELECT count(*) FROM (SELECT 1 FROM lines WHERE text ILIKE $1 LIMIT $2) AS m")
            .bind(&pattern)
            .bind(self.plan_cap)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let mut qb = if matches < self.plan_cap {
            sqlx::QueryBuilder::<Postgres>::new(
                "SELECT l.instance_id, l.attempt, l.line, l.text, r.job_name, r.finished_at, r.sort_at \
                 FROM lines AS l JOIN runs AS r ON r.instance_id = l.instance_id WHERE l.text ILIKE ",
            )
        } else {
            // A nested loop: runs in page order, each run's lines by primary key.
            for setting in ["enable_bitmapscan", "enable_hashjoin", "enable_mergejoin", "enable_seqscan"] {
                sqlx::query(&format!("SET LOCAL {setting} = off")).execute(&mut *tx).await?;
            }
            sqlx::QueryBuilder::<Postgres>::new(
                "SELECT l.instance_id, l.attempt, l.line, l.text, r.job_name, r.finished_at, r.sort_at \
                 FROM runs AS r JOIN lines AS l ON l.instance_id = r.instance_id WHERE l.text ILIKE ",
            )
        };
        qb.push_bind(pattern);
        super::filters::push_search_filters(&mut qb, q, cursor);
        qb.push(" ORDER BY r.sort_at DESC, r.instance_id, l.line LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        super::filters::search_page(&rows, limit, |row| {
            Ok((
                SearchHit {
                    instance_id: row.try_get(0)?,
                    attempt: u32::try_from(row.try_get::<i32, _>(1)?).unwrap_or(1),
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
        let mut tx = self.pool.begin().await?;
        let ids = Self::purge_batch(&mut tx, cutoff_ms, batch).await?;
        // Lines cascade.
        sqlx::query("DELETE FROM runs WHERE instance_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    pub(super) async fn usage(&self) -> Result<Usage, ArchiveError> {
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(line_count), 0)::bigint, \
             (pg_total_relation_size('runs') + pg_total_relation_size('lines'))::bigint FROM runs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Usage {
            runs: query::unsigned(row.try_get(0)?),
            lines: query::unsigned(row.try_get(1)?),
            bytes: query::unsigned(row.try_get(2)?),
        })
    }
}
