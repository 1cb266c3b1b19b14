-- The archive on PostgreSQL (see src/archive/mod.rs for the reasons of this shape).
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per archived instance. sort_at = finished_at, or archived_at when PowerJob
-- gave no finish time: the key of every ordering, time filter and retention.
CREATE TABLE runs (
    instance_id    BIGINT  PRIMARY KEY,
    epoch          TEXT    NOT NULL,
    job_id         BIGINT,
    job_name       TEXT,
    status         TEXT    NOT NULL,
    started_at     BIGINT,
    finished_at    BIGINT,
    archived_at    BIGINT  NOT NULL,
    sort_at        BIGINT  NOT NULL,
    attempt        BIGINT  NOT NULL,
    attempts       TEXT    NOT NULL,
    upstream_lost  BOOLEAN NOT NULL,
    truncated      BOOLEAN NOT NULL,
    phase          TEXT,
    ready_after_ms BIGINT,
    cause          TEXT,
    cause_line     BIGINT,
    line_count     BIGINT  NOT NULL,
    bytes          BIGINT  NOT NULL
);
CREATE INDEX runs_order ON runs (sort_at DESC, instance_id);
CREATE INDEX runs_job_order ON runs (job_name, sort_at DESC, instance_id);

-- One row per served line.
CREATE TABLE lines (
    instance_id BIGINT  NOT NULL REFERENCES runs (instance_id) ON DELETE CASCADE,
    line        BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    PRIMARY KEY (instance_id, line)
);

-- Case-insensitive substring search (ILIKE '%…%').
CREATE INDEX lines_text_trgm ON lines USING gin (text gin_trgm_ops);
