//! The archive's benchmarks (issue 20): `cargo bench --bench archive -- [sqlite] [postgres]
//! [--runs=1000] [--lines=10000] [--reps=5] [--ingest-runs=100] [--dir=target/archive-bench] [--explain]`.
//!
//! For each backend (both by default; PostgreSQL is Debian's, started by the test
//! harness on a loopback port):
//! 1. **Ingest**: `--ingest-runs` runs of `--lines` real-shaped lines ([`gen`]) put one after the other
//!    into a fresh database: lines per second, bytes per line on disk (table and index).
//! 2. **Search**: `--runs` × `--lines` lines (10 000 000 by default), loaded once into
//!    `--dir` and reused by later runs of the bench (loading takes minutes; the time is
//!    printed). Then each query of a fixed set (needles, errors, case variants, a job
//!    filter, common substrings, a second page), `--reps` times: the first page (50 hits)
//!    through [`Archive::search`], p50 and p95; against a full scan of the same data for
//!    the same page (LIKE without the index), measured in the same run.
//!
//! Results go to stdout as Markdown (BENCHMARKS.md, "Issue 20: archive", holds a copy).

#[path = "../../tests/common/mod.rs"]
mod common;
mod gen;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use powertail::archive::{Archive, SearchQuery};
use sqlx::Row;

use crate::common::postgres::PgServer;

/// Settings of the benchmark's PostgreSQL (a 24 GiB machine; loads of gigabytes).
const PG_SETTINGS: &[&str] = &["shared_buffers=1GB", "max_wal_size=8GB", "maintenance_work_mem=512MB", "work_mem=64MB"];

/// Hits per page, as the HTTP default.
const PAGE: u32 = 50;

struct Opts {
    backends: Vec<String>,
    runs: u64,
    lines: usize,
    reps: usize,
    /// Runs of the ingest measurement (0: none).
    ingest_runs: u64,
    dir: PathBuf,
    explain: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        backends: Vec::new(),
        runs: 1_000,
        lines: 10_000,
        reps: 5,
        ingest_runs: 100,
        dir: PathBuf::from("target/archive-bench"),
        explain: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("--runs", v)) => o.runs = v.parse().expect("--runs=N"),
            Some(("--lines", v)) => o.lines = v.parse().expect("--lines=N"),
            Some(("--reps", v)) => o.reps = v.parse().expect("--reps=N"),
            Some(("--ingest-runs", v)) => o.ingest_runs = v.parse().expect("--ingest-runs=N"),
            Some(("--dir", v)) => o.dir = PathBuf::from(v),
            _ if arg == "--explain" => o.explain = true,
            _ if arg == "sqlite" || arg == "postgres" => o.backends.push(arg),
            _ => {} // `--bench`, from cargo
        }
    }
    if o.backends.is_empty() {
        o.backends = vec!["sqlite".to_owned(), "postgres".to_owned()];
    }
    o
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let o = opts();
    std::fs::create_dir_all(&o.dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("# archive benchmarks (issue 20)\n");
    println!(
        "{} CPUs, load average {} at the start\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let fx = gen::Fixtures::load();
    for backend in &o.backends {
        rt.block_on(async {
            if o.ingest_runs > 0 {
                let fresh = Db::open(backend, &o.dir.join(format!("ingest-{backend}")), true).await;
                ingest(&fresh, &fx, &o).await;
                fresh.close_and_delete().await;
            }
            // Kept and grown: a later run with more `--runs` adds the missing ones.
            let big = Db::open(backend, &o.dir.join(format!("{backend}-{}-lines", o.lines)), false).await;
            search(&big, &fx, &o).await;
        });
    }
    println!("load average {} at the end", loadavg());
}

/// An archive on a backend, and the server behind it.
struct Db {
    backend: String,
    url: String,
    archive: Archive,
    dir: PathBuf,
    pg: Option<PgServer>,
}

impl Db {
    async fn open(backend: &str, dir: &Path, fresh: bool) -> Db {
        if fresh && dir.exists() {
            std::fs::remove_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(dir).unwrap();
        let (url, pg) = if backend == "sqlite" {
            (format!("sqlite://{}", dir.join("archive.db").display()), None)
        } else {
            let root = dir.to_owned();
            let pg = tokio::task::spawn_blocking(move || PgServer::start_in(&root, PG_SETTINGS)).await.unwrap();
            (pg.url(), Some(pg))
        };
        let archive = Archive::open(&url, 4).await.unwrap();
        Db { backend: backend.to_owned(), url, archive, dir: dir.to_owned(), pg }
    }

    async fn close_and_delete(mut self) {
        self.archive.close().await;
        if let Some(pg) = self.pg.take() {
            tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
        }
        std::fs::remove_dir_all(&self.dir).unwrap();
    }

    /// Bytes of the lines table and of its text index, and of everything.
    async fn sizes(&self) -> (u64, u64, u64) {
        if self.backend == "sqlite" {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let rows =
                sqlx::query("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetch_all(&pool).await.unwrap();
            let (mut table, mut index, mut all) = (0, 0, 0);
            for row in rows {
                let name: String = row.get(0);
                let size: i64 = row.get(1);
                let size = size as u64;
                all += size;
                if name == "lines" {
                    table += size;
                } else if name.starts_with("lines_fts") {
                    index += size;
                }
            }
            pool.close().await;
            (table, index, all)
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let row = sqlx::query(
                "SELECT pg_table_size('lines') + pg_relation_size('lines_pkey'), pg_relation_size('lines_text_trgm'), \
                 pg_database_size(current_database())",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            (row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64, row.get::<i64, _>(2) as u64)
        }
    }
}

async fn ingest(db: &Db, fx: &gen::Fixtures, o: &Opts) {
    let runs: Vec<_> = (0..o.ingest_runs).map(|r| gen::run(fx, r, o.lines)).collect();
    let lines: usize = runs.iter().map(|r| r.lines.len()).sum();
    let text: usize = runs.iter().flat_map(|r| &r.lines).map(String::len).sum();
    let started = Instant::now();
    for r in &runs {
        db.archive.put(r).await.unwrap();
    }
    let took = started.elapsed();
    let (table, index, all) = db.sizes().await;
    let per = |b: u64| b as f64 / lines as f64;
    println!("## Ingest, {} ({} runs × {} lines, one put after the other)\n", db.backend, o.ingest_runs, o.lines);
    println!("| lines | text bytes/line | seconds | lines/s | table B/line | index B/line | database B/line |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {lines} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        text as f64 / lines as f64,
        took.as_secs_f64(),
        lines as f64 / took.as_secs_f64(),
        per(table),
        per(index),
        per(all)
    );
}

/// The query set: (label, query).
fn queries(fx: &gen::Fixtures, o: &Opts) -> Vec<(&'static str, SearchQuery)> {
    let q = |text: &str| SearchQuery { q: text.to_owned(), limit: PAGE, ..SearchQuery::default() };
    let mut out = Vec::new();
    // Needles: the id of one request each, from runs spread over the archive.
    for k in 0..5u64 {
        let run = (k * 997 + 13) % o.runs;
        let log = gen::run(fx, run, o.lines);
        let line = log.lines.iter().rev().find(|l| l.contains("Received request")).expect("a request line");
        let id = line.split("Received request ").nth(1).unwrap().split(':').next().unwrap().to_owned();
        out.push(("needle: one request id", q(&id)));
    }
    out.push(("error: CUDA out of memory", q("CUDA out of memory")));
    out.push(("error, other case: cuda OUT OF MEMORY", q("cuda OUT OF MEMORY")));
    out.push(("error: Address already in use", q("Address already in use")));
    out.push(("error: Traceback", q("Traceback (most recent call last)")));
    let mut job = q("out of memory");
    job.job = Some(gen::MODELS[3].to_owned());
    out.push(("error, one job: out of memory", job));
    out.push(("common: Avg prompt throughput", q("Avg prompt throughput")));
    out.push(("common: POST /v1/chat/completions", q("POST /v1/chat/completions")));
    out.push(("common: preempted", q("preempted")));
    out.push(("common, 3 chars: 200", q("200")));
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((p * sorted.len() as f64).ceil() as usize).max(1) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

async fn load(db: &Db, fx: &gen::Fixtures, o: &Opts) {
    let have = db.archive.usage().await.unwrap().runs;
    if have >= o.runs {
        println!("(data loaded by an earlier run of the bench: {have} runs in {})\n", db.dir.display());
        return;
    }
    // PostgreSQL: a GIN index is built far faster in one go than row by row, so a load
    // from nothing drops it first and builds it at the end (the ingest figure above is
    // the one with the index kept up to date).
    let rebuild = db.backend == "postgres" && have == 0;
    let pool = if rebuild { Some(sqlx::PgPool::connect(&db.url).await.unwrap()) } else { None };
    if let Some(pool) = &pool {
        sqlx::query("DROP INDEX IF EXISTS lines_text_trgm").execute(pool).await.unwrap();
    }
    let started = Instant::now();
    for r in have..o.runs {
        // Generated on a blocking thread while the previous put runs would be faster;
        // one at a time keeps the figure a plain sequential-ingest one.
        db.archive.put(&gen::run(fx, r, o.lines)).await.unwrap();
        if (r + 1) % 50 == 0 {
            eprintln!("{}: {} runs loaded, {:.0} s", db.backend, r + 1, started.elapsed().as_secs_f64());
        }
    }
    let mut took = started.elapsed();
    if let Some(pool) = pool {
        let indexing = Instant::now();
        sqlx::query("CREATE INDEX lines_text_trgm ON lines USING gin (text gin_trgm_ops)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        println!(
            "(PostgreSQL: lines loaded without the trigram index, which was built at the end in {:.0} s.)\n",
            indexing.elapsed().as_secs_f64()
        );
        took = started.elapsed();
        pool.close().await;
    }
    let lines = (o.runs - have) * o.lines as u64;
    println!(
        "Loading {} runs ({lines} lines) took {:.0} s ({:.0} lines/s, generation included), load average {}.\n",
        o.runs - have,
        took.as_secs_f64(),
        lines as f64 / took.as_secs_f64(),
        loadavg()
    );
}

async fn search(db: &Db, fx: &gen::Fixtures, o: &Opts) {
    load(db, fx, o).await;
    let usage = db.archive.usage().await.unwrap();
    let (table, index, all) = db.sizes().await;
    println!("## Search, {}: {} runs, {} lines\n", db.backend, usage.runs, usage.lines);
    let per = |b: u64| b as f64 / usage.lines as f64;
    println!(
        "On disk: lines table {:.0} B/line, text index {:.0} B/line, whole database {:.1} GB.\n",
        per(table),
        per(index),
        all as f64 / 1e9
    );
    let queries = queries(fx, o);
    let mut all_times = Vec::new();
    println!("| query | hits on page 1 | p50 ms | max ms | page 2 ms |");
    println!("|---|---|---|---|---|");
    for (label, q) in &queries {
        let mut times = Vec::new();
        let mut first = None;
        for _ in 0..o.reps {
            let started = Instant::now();
            let page = db.archive.search(q).await.unwrap();
            times.push(started.elapsed());
            first = Some(page);
        }
        let first = first.unwrap();
        let page2 = match &first.next_cursor {
            Some(c) => {
                let started = Instant::now();
                db.archive.search(&SearchQuery { cursor: Some(c.clone()), ..q.clone() }).await.unwrap();
                ms(started.elapsed())
            }
            None => "–".to_owned(),
        };
        times.sort();
        println!(
            "| {label} | {} | {} | {} | {page2} |",
            first.hits.len(),
            ms(percentile(&times, 0.5)),
            ms(*times.last().unwrap())
        );
        all_times.extend(times);
    }
    all_times.sort();
    println!(
        "\nAll {} searches: p50 {} ms, p95 {} ms (goal p95 ≤ 200 ms).\n",
        all_times.len(),
        ms(percentile(&all_times, 0.5)),
        ms(percentile(&all_times, 0.95))
    );
    full_scans(db, &queries).await;
    if o.explain {
        explain(db, &queries).await;
    }
}

/// The same first page without the text index: LIKE over every line (SQLite: a table
/// scan; PostgreSQL: index and bitmap scans off, so a sequential scan), checked against
/// the archive's page.
async fn full_scans(db: &Db, queries: &[(&str, SearchQuery)]) {
    println!("| full scan (no text index), same page | ms | same hits as the index |");
    println!("|---|---|---|");
    for pick in [0, 5, 10] {
        let Some((label, q)) = queries.get(pick) else { continue };
        let pattern = powertail::archive::query::like_pattern(&q.q);
        let sql_tail = " ORDER BY r.sort_at DESC, r.instance_id, l.line LIMIT 50";
        let started = Instant::now();
        let got: Vec<(i64, i64)> = if db.backend == "sqlite" {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let rows = sqlx::query(&format!(
                "SELECT l.instance_id, l.line FROM lines AS l CROSS JOIN runs AS r ON r.instance_id = l.instance_id \
                 WHERE l.text LIKE ?1 ESCAPE '\\'{sql_tail}"
            ))
            .bind(&pattern)
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        } else {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            for s in ["enable_bitmapscan", "enable_indexscan", "enable_indexonlyscan"] {
                sqlx::query(&format!("SET LOCAL {s} = off")).execute(&mut *tx).await.unwrap();
            }
            let rows = sqlx::query(&format!(
                "SELECT l.instance_id, l.line FROM lines AS l JOIN runs AS r ON r.instance_id = l.instance_id \
                 WHERE l.text ILIKE $1{sql_tail}"
            ))
            .bind(&pattern)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            tx.rollback().await.unwrap();
            pool.close().await;
            rows.iter().map(|r| (r.get(0), r.get(1))).collect()
        };
        let took = started.elapsed();
        let page = db.archive.search(q).await.unwrap();
        let same = page.hits.iter().map(|h| (h.instance_id, h.line as i64)).collect::<Vec<_>>() == got;
        println!("| {label} | {} | {} |", ms(took), if same { "yes" } else { "NO" });
    }
    println!();
}

/// The plans of both search strategies for a needle and a common substring (stderr).
async fn explain(db: &Db, queries: &[(&str, SearchQuery)]) {
    for pick in [0, queries.len() - 3] {
        let q = &queries[pick].1;
        for cap in [i64::MAX, 0] {
            let started = Instant::now();
            let page = db.archive.clone().with_search_plan_cap(cap).search(q).await.unwrap();
            eprintln!(
                "{}: {:?} with plan cap {cap}: {} hits in {} ms",
                db.backend,
                q.q,
                page.hits.len(),
                ms(started.elapsed())
            );
        }
    }
}
