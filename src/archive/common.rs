//! The queries whose SQL is the same on both backends (placeholders aside, which
//! `QueryBuilder` writes): `has`, `runs`, `stats`, `ping`, the selection of a purge batch.
//! [`common_queries!`] expands them for one backend's pool type, so each backend module
//! states its own SQL only where the two really differ.

/// Expands, inside `impl $ty { … }` of a backend whose `self.pool` is a `Pool<$db>`, the
/// shared queries.
macro_rules! common_queries {
    ($db:ty) => {
        pub(super) async fn has(&self, instance_id: i64) -> Result<Option<String>, ArchiveError> {
            let row = sqlx::query("SELECT epoch FROM runs WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
        }

        pub(super) async fn ping(&self) -> Result<(), ArchiveError> {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }

        pub(super) async fn runs(&self, q: &RunsQuery) -> Result<RunsPage, ArchiveError> {
            let cursor = q.cursor.as_deref().map(RunsCursor::decode).transpose()?;
            let limit = query::page_limit(q.limit);
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "SELECT instance_id, attempt, status, started_at, finished_at, phase, ready_after_ms, cause, \
                 cause_line, line_count, sort_at FROM runs WHERE job_name = ",
            );
            qb.push_bind(q.job.clone());
            if let Some(since) = q.since {
                qb.push(" AND sort_at >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                qb.push(" AND sort_at < ").push_bind(until);
            }
            if let Some(c) = cursor {
                qb.push(" AND (sort_at < ").push_bind(c.sort_at);
                qb.push(" OR (sort_at = ").push_bind(c.sort_at);
                qb.push(" AND instance_id > ").push_bind(c.instance_id).push("))");
            }
            qb.push(" ORDER BY sort_at DESC, instance_id LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = qb.build().fetch_all(&self.pool).await?;
            let mut runs = Vec::with_capacity(rows.len());
            let mut last = None;
            for row in rows.iter().take(limit as usize) {
                let instance_id: i64 = row.try_get(0)?;
                last = Some(RunsCursor { sort_at: row.try_get(10)?, instance_id });
                runs.push(RunSummary {
                    instance_id,
                    attempt: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(1),
                    status: query::status_from_name(&row.try_get::<String, _>(2)?),
                    started_at: row.try_get(3)?,
                    finished_at: row.try_get(4)?,
                    phase: row.try_get(5)?,
                    ready_after_ms: row.try_get(6)?,
                    cause: row.try_get(7)?,
                    cause_line: row.try_get::<Option<i64>, _>(8)?.map(query::unsigned),
                    lines: query::unsigned(row.try_get(9)?),
                });
            }
            let next_cursor = if rows.len() > limit as usize { last.map(|c| c.encode()) } else { None };
            Ok(RunsPage { runs, next_cursor })
        }

        pub(super) async fn stats(&self, job: &str, since: Option<i64>) -> Result<JobStats, ArchiveError> {
            // `WHERE job_name = ? [AND sort_at >= ?]`, then `extra`.
            let filtered = |select: &str, extra: &str| {
                let mut qb = sqlx::QueryBuilder::<$db>::new(select);
                qb.push(" FROM runs WHERE job_name = ").push_bind(job.to_owned());
                if let Some(since) = since {
                    qb.push(" AND sort_at >= ").push_bind(since);
                }
                qb.push(extra);
                qb
            };
            let runs: i64 = filtered("SELECT count(*)", "").build().fetch_one(&self.pool).await?.try_get(0)?;
            let mut by_outcome = BTreeMap::new();
            for row in filtered("SELECT coalesce(phase, 'unknown'), count(*)", " GROUP BY 1")
                .build()
                .fetch_all(&self.pool)
                .await?
            {
                by_outcome.insert(row.try_get::<String, _>(0)?, query::unsigned(row.try_get(1)?));
            }
            let mut by_cause = BTreeMap::new();
            for row in filtered("SELECT cause, count(*)", " AND cause IS NOT NULL GROUP BY cause")
                .build()
                .fetch_all(&self.pool)
                .await?
            {
                by_cause.insert(row.try_get::<String, _>(0)?, query::unsigned(row.try_get(1)?));
            }
            let ready: i64 = filtered("SELECT count(*)", " AND ready_after_ms IS NOT NULL")
                .build()
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
            let mut percentiles = [None, None];
            for (slot, percent) in percentiles.iter_mut().zip([50, 95]) {
                if let Some(offset) = query::nearest_rank(percent, query::unsigned(ready)) {
                    let mut qb = filtered(
                        "SELECT ready_after_ms",
                        " AND ready_after_ms IS NOT NULL ORDER BY ready_after_ms LIMIT 1 OFFSET ",
                    );
                    qb.push_bind(query::signed(offset));
                    *slot = Some(qb.build().fetch_one(&self.pool).await?.try_get::<i64, _>(0)?);
                }
            }
            let [ready_p50_ms, ready_p95_ms] = percentiles;
            Ok(JobStats {
                job: job.to_owned(),
                since,
                runs: query::unsigned(runs),
                by_outcome,
                by_cause,
                ready_p50_ms,
                ready_p95_ms,
            })
        }

        /// The instance ids of the (at most `batch`) oldest runs with `sort_at < cutoff`.
        async fn purge_batch(
            conn: &mut <$db as sqlx::Database>::Connection,
            cutoff_ms: i64,
            batch: u32,
        ) -> Result<Vec<i64>, ArchiveError> {
            let rows = sqlx::query("SELECT instance_id FROM runs WHERE sort_at < $1 ORDER BY sort_at LIMIT $2")
                .bind(cutoff_ms)
                .bind(i64::from(batch))
                .fetch_all(&mut *conn)
                .await?;
            Ok(rows.iter().map(|r| r.try_get::<i64, _>(0)).collect::<Result<_, _>>()?)
        }
    };
}

pub(super) use common_queries;
