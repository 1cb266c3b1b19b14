-- The archive on SQLite (see src/archive/mod.rs for the reasons of this shape).

-- One row per archived instance. sort_at = finished_at, or archived_at when PowerJob
-- gave no finish time: the key of every ordering, time filter and retention.
-- The run's lines are lines.id first_line_id .. first_line_id + line_count - 1.
CREATE TABLE runs (
    instance_id    INTEGER PRIMARY KEY,
    epoch          TEXT    NOT NULL,
    job_id         INTEGER,
    job_name       TEXT,
    status         TEXT    NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    archived_at    INTEGER NOT NULL,
    sort_at        INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    attempts       TEXT    NOT NULL,
    upstream_lost  INTEGER NOT NULL,
    truncated      INTEGER NOT NULL,
    phase          TEXT,
    ready_after_ms INTEGER,
    cause          TEXT,
    cause_line     INTEGER,
    line_count     INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    first_line_id  INTEGER NOT NULL
);
CREATE INDEX runs_order ON runs (sort_at DESC, instance_id);
CREATE INDEX runs_job_order ON runs (job_name, sort_at DESC, instance_id);

-- One row per served line; the lines of a run have consecutive ids, in line order.
CREATE TABLE lines (
    id          INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL,
    line        INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    text        TEXT    NOT NULL
);

-- Case-insensitive substring search: trigrams of the text, which stays in `lines`.
CREATE VIRTUAL TABLE lines_fts USING fts5(
    text,
    content = 'lines',
    content_rowid = 'id',
    tokenize = 'trigram case_sensitive 0'
);
