//! The archive: every complete log, kept in SQL after PowerJob forgot it (issue 20).
//!
//! A storage layer beside [`crate::upstream`]: it imports only [`crate::logs`] types and
//! knows nothing of the service or HTTP. [`Archive`] is one handle over either backend:
//!
//! * `sqlite://path.db` (embedded, the default; one process) — [`sqlite`];
//! * `postgres://…` (several replicas share it) — [`postgres`].
//!
//! # One query layer: sqlx, one pool per backend, no `Any`
//! sqlx gives both drivers, async pools with an acquire timeout, and versioned migrations
//! embedded in the binary (`migrations/sqlite/`, `migrations/postgres/`, run at
//! [`Archive::open`]). Queries are plain `sqlx::query` + `bind` (no `query!` macros: the
//! build needs no database). The `Any` driver is not used: the two schemas differ where it
//! matters (FTS5 against `pg_trgm`, `UNNEST` bulk inserts, size functions), so each
//! backend has its own SQL anyway, and typed pools keep `i64`/`bool` exact. The shared
//! parts (cursors, LIKE escaping, validation, percentiles) are pure code in [`query`].
//!
//! # Schema (both backends)
//! * `runs`: one row per instance (`instance_id` primary key): epoch, job id and name,
//!   status, times, the attempts as JSON (read back whole, never queried), the last
//!   attempt, flags, the start-up outcome (phase, ready after, cause, cause line: columns,
//!   since stats and filters read them), line count and text bytes, and `sort_at` =
//!   `finished_at`, or `archived_at` when PowerJob gave no finish time. Every ordering,
//!   time filter and retention uses `sort_at` (never NULL, so keyset cursors stay simple).
//!   Indexes: `(sort_at DESC, instance_id)` (search order, retention) and `(job_name,
//!   sort_at DESC, instance_id)` (runs listing, stats).
//! * `lines`: one row per served line: instance id, line number (0-based, as served),
//!   attempt, text.
//!   - SQLite: `id INTEGER PRIMARY KEY`, the lines of one run inserted contiguously in one
//!     transaction, the run's first id kept in `runs.first_line_id`: a get or delete is a
//!     rowid range, so no second index on `(instance_id, line)` is paid for. The text index
//!     is an FTS5 table with the `trigram` tokenizer (`case_sensitive 0`), external content
//!     (`content='lines'`: the text is stored once), kept in step by the same transaction
//!     (no triggers).
//!   - PostgreSQL: primary key `(instance_id, line)` and a GIN `pg_trgm` index on `text`
//!     (`gin_trgm_ops`) for `ILIKE`. A NUL character (which PostgreSQL text cannot hold) is
//!     stored as U+FFFD.
//!
//! [`Archive::put`] replaces a run in one transaction: a retry archived again replaces the
//! old lines.
//!
//! # Search
//! Case-insensitive substring, at least [`MIN_QUERY_CHARS`] characters; hits ordered by
//! `sort_at` descending, instance id, line; keyset pagination with an opaque cursor. Case
//! folding is the store's own: FTS5's Unicode folding on SQLite, the database's `lower()`
//! (its `LC_CTYPE`) on PostgreSQL; the two agree on ASCII and on simple Unicode letters.
//!
//! # Failures
//! [`ArchiveError::Unavailable`] when the database cannot be reached (refused, timed out:
//! [`ACQUIRE_TIMEOUT`] bounds the wait for a connection, [`OP_TIMEOUT`] a whole call),
//! [`ArchiveError::BadQuery`] for a query the caller must change, [`ArchiveError::Other`]
//! for the rest. No error or log line carries a password of the URL ([`redact_url`]).

mod common;
mod error;
mod filters;
pub mod postgres;
pub mod query;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{redact_url, ArchiveError};

use crate::logs::{Attempt, Status};

/// The shortest search query, in characters (a trigram index needs three).
pub const MIN_QUERY_CHARS: usize = 3;

/// The most hits or runs one page holds (a larger `limit` is clamped).
pub const MAX_PAGE: u32 = 1_000;

/// A search first counts the matches of its query in the whole archive, up to this many.
/// Fewer: every match is taken from the trigram index, joined to its run and sorted (at
/// most this many rows). More (a common substring): the runs are walked in page order and
/// each is searched until the page is full, which ends early because hits are dense.
/// Both plans give the same hits in the same order; only their cost differs.
pub const SEARCH_PLAN_CAP: i64 = 10_000;

/// How long a call waits for a pooled connection before it answers
/// [`ArchiveError::Unavailable`]: a database that is down fails fast.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest one call may take (a connection stuck on a frozen server included).
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database an [`Archive`] stores into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (`sqlite://…`).
    Sqlite,
    /// PostgreSQL (`postgres://…` or `postgresql://…`).
    Postgres,
}

/// The start-up outcome of a run (issue 13), as archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupOutcome {
    /// The phase it ended in (`ready`, `failed`, …).
    pub phase: String,
    /// How long it took to become ready (ms), when it did.
    pub ready_after_ms: Option<i64>,
    /// The failure's cause (`oom`, …), when it failed.
    pub cause: Option<String>,
    /// The served line of the failure's cause.
    pub cause_line: Option<u64>,
}

/// One complete log, as archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedLog {
    pub instance_id: i64,
    /// The epoch its readers' cursors carry (kept across restarts).
    pub epoch: String,
    pub job_id: Option<i64>,
    pub job_name: Option<String>,
    pub status: Status,
    /// Epoch ms (PowerJob's clock).
    pub started_at: Option<i64>,
    /// Epoch ms (PowerJob's clock).
    pub finished_at: Option<i64>,
    /// When it was archived (epoch ms, our clock).
    pub archived_at: i64,
    /// The served lines, exactly.
    pub lines: Vec<String>,
    pub attempts: Vec<Attempt>,
    pub upstream_lost: bool,
    pub truncated: bool,
    pub startup: Option<StartupOutcome>,
}

impl ArchivedLog {
    /// The key runs are ordered, filtered and purged by: the finish time, or the archive
    /// time when PowerJob gave none.
    pub fn sort_at(&self) -> i64 {
        self.finished_at.unwrap_or(self.archived_at)
    }
}

/// A search across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// The substring (case-insensitive, at least [`MIN_QUERY_CHARS`] characters).
    pub q: String,
    /// Only runs of this job name.
    pub job: Option<String>,
    pub status: Option<Status>,
    /// Only runs whose start-up failed with this cause.
    pub cause: Option<String>,
    /// Only runs with `sort_at >= since` (epoch ms).
    pub since: Option<i64>,
    /// Only runs with `sort_at < until` (epoch ms).
    pub until: Option<i64>,
    /// Hits per page (clamped to `1..=`[`MAX_PAGE`]).
    pub limit: u32,
    /// The previous page's [`SearchPage::next_cursor`].
    pub cursor: Option<String>,
}

/// One line that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub instance_id: i64,
    pub attempt: u32,
    pub line: u64,
    pub text: String,
    pub job_name: Option<String>,
    pub finished_at: Option<i64>,
}

/// One page of hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The runs of one job, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunsQuery {
    pub job: String,
    /// `sort_at >= since`
    pub since: Option<i64>,
    /// `sort_at < until`
    pub until: Option<i64>,
    /// Runs per page (clamped to `1..=`[`MAX_PAGE`]).
    pub limit: u32,
    pub cursor: Option<String>,
}

/// One archived run, without its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub instance_id: i64,
    /// The last attempt (PowerJob's `runningTimes`).
    pub attempt: u32,
    pub status: Status,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub phase: Option<String>,
    pub ready_after_ms: Option<i64>,
    pub cause: Option<String>,
    pub cause_line: Option<u64>,
    /// Its line count.
    pub lines: u64,
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsPage {
    pub runs: Vec<RunSummary>,
    pub next_cursor: Option<String>,
}

/// Start-up statistics of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    pub job: String,
    pub since: Option<i64>,
    pub runs: u64,
    /// Runs by start-up phase (`unknown` for runs without an outcome).
    pub by_outcome: BTreeMap<String, u64>,
    /// Runs by failure cause (runs without a cause are not counted).
    pub by_cause: BTreeMap<String, u64>,
    /// Nearest-rank percentiles of `ready_after_ms` over the runs that have one.
    pub ready_p50_ms: Option<i64>,
    pub ready_p95_ms: Option<i64>,
}

/// What the archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub runs: u64,
    pub lines: u64,
    /// On disk, tables and indexes (SQLite: the database's used pages).
    pub bytes: u64,
}

#[derive(Clone)]
enum Db {
    Sqlite(sqlite::SqliteArchive),
    Postgres(postgres::PgArchive),
}

/// A handle on the archive; cheap to clone (pools are shared).
#[derive(Clone)]
pub struct Archive {
    db: Db,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Runs `op` within [`OP_TIMEOUT`].
async fn bounded<T>(op: impl Future<Output = Result<T, ArchiveError>>) -> Result<T, ArchiveError> {
    tokio::time::timeout(OP_TIMEOUT, op).await.unwrap_or(Err(ArchiveError::Unavailable(format!(
        "the archive did not answer within {} s",
        OP_TIMEOUT.as_secs()
    ))))
}

macro_rules! dispatch {
    ($self:ident, $db:ident => $call:expr) => {
        bounded(async {
            match &$self.db {
                Db::Sqlite($db) => $call.await,
                Db::Postgres($db) => $call.await,
            }
        })
        .await
    };
}

impl Archive {
    /// Connects (`sqlite://…`, created when missing; `postgres://…`) with at most
    /// `max_connections` pooled connections, and runs the pending migrations.
    ///
    /// # Errors
    /// [`ArchiveError::BadQuery`] for a URL of another scheme or that does not parse,
    /// [`ArchiveError::Unavailable`] when the database cannot be reached,
    /// [`ArchiveError::Other`] when a migration fails.
    pub async fn open(url: &str, max_connections: u32) -> Result<Archive, ArchiveError> {
        let max_connections = max_connections.max(1);
        let db = bounded(async {
            if url.starts_with("sqlite:") {
                Ok(Db::Sqlite(sqlite::SqliteArchive::open(url, max_connections).await?))
            } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Ok(Db::Postgres(postgres::PgArchive::open(url, max_connections).await?))
            } else {
                Err(ArchiveError::BadQuery(format!(
                    "archive url {} is neither sqlite:// nor postgres://",
                    redact_url(url)
                )))
            }
        })
        .await?;
        Ok(Archive { db })
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Inserts `log`, or replaces the run of the same instance id (lines included), in
    /// one transaction.
    ///
    /// # Errors
    /// [`ArchiveError::Unavailable`] when the database cannot be reached, else `Other`.
    pub async fn put(&self, log: &ArchivedLog) -> Result<(), ArchiveError> {
        dispatch!(self, db => db.put(log))
    }

    /// The archived log of `instance_id`, lines and all.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn get(&self, instance_id: i64) -> Result<Option<ArchivedLog>, ArchiveError> {
        dispatch!(self, db => db.get(instance_id))
    }

    /// The archived epoch of `instance_id`, if it is archived.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn has(&self, instance_id: i64) -> Result<Option<String>, ArchiveError> {
        dispatch!(self, db => db.has(instance_id))
    }

    /// One page of lines containing `q.q`, newest runs first.
    ///
    /// # Errors
    /// [`ArchiveError::BadQuery`] for a query shorter than [`MIN_QUERY_CHARS`] or a cursor
    /// this archive did not issue; else as [`put`](Self::put).
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchPage, ArchiveError> {
        query::validate_search(q)?;
        dispatch!(self, db => db.search(q))
    }

    /// One page of the runs of `q.job`, newest first.
    ///
    /// # Errors
    /// As [`search`](Self::search) (a bad cursor).
    pub async fn runs(&self, q: &RunsQuery) -> Result<RunsPage, ArchiveError> {
        dispatch!(self, db => db.runs(q))
    }

    /// Start-up statistics of the runs of `job` (with `sort_at >= since`).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn stats(&self, job: &str, since: Option<i64>) -> Result<JobStats, ArchiveError> {
        dispatch!(self, db => db.stats(job, since))
    }

    /// Deletes at most `batch` runs (lines and all) with `sort_at < cutoff_ms`, oldest
    /// first, in one transaction; returns how many. Call again until it returns less
    /// than `batch`.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn purge_finished_before(&self, cutoff_ms: i64, batch: u32) -> Result<u64, ArchiveError> {
        if batch == 0 {
            return Ok(0);
        }
        dispatch!(self, db => db.purge_finished_before(cutoff_ms, batch))
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn ping(&self) -> Result<(), ArchiveError> {
        dispatch!(self, db => db.ping())
    }

    /// Rows and bytes held.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn usage(&self) -> Result<Usage, ArchiveError> {
        dispatch!(self, db => db.usage())
    }

    /// This handle with another threshold between the two search plans (see
    /// [`SEARCH_PLAN_CAP`]): 0 always walks the runs, `i64::MAX` always starts from the
    /// index. For tests (both plans give the same pages) and benchmarks.
    #[must_use]
    pub fn with_search_plan_cap(mut self, cap: i64) -> Archive {
        match &mut self.db {
            Db::Sqlite(db) => db.set_plan_cap(cap),
            Db::Postgres(db) => db.set_plan_cap(cap),
        }
        self
    }

    /// Closes the pool: waits for connections in use to come back.
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(db) => db.close().await,
            Db::Postgres(db) => db.close().await,
        }
    }
}
