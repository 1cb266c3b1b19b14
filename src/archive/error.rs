//! [`ArchiveError`], the classification of sqlx errors, and URL redaction.

/// What went wrong in the archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The database cannot be reached now (down, refused, timed out, busy): retry later.
    #[error("archive unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (query too short, a cursor we did not issue, a URL of
    /// an unknown scheme): the caller must change it (HTTP 400).
    #[error("{0}")]
    BadQuery(String),
    /// Anything else (a failed migration, a constraint, stored data we cannot read).
    #[error("archive error: {0}")]
    Other(String),
}

/// PostgreSQL SQLSTATE classes and codes that mean "cannot be reached now": connection
/// exceptions (08), insufficient resources (53), operator intervention (57P01–57P05:
/// shutdown, crash, cannot connect now).
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

/// SQLite result codes (primary, the low byte of the extended code) that mean "try
/// again later": `SQLITE_BUSY` (5), `SQLITE_LOCKED` (6), `SQLITE_CANTOPEN` (14).
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 14))
}

impl From<sqlx::Error> for ArchiveError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => {
                ArchiveError::Unavailable("no database connection within the acquire timeout".to_owned())
            }
            sqlx::Error::PoolClosed => ArchiveError::Unavailable("the archive is closed".to_owned()),
            sqlx::Error::Io(e) => ArchiveError::Unavailable(format!("database I/O: {e}")),
            sqlx::Error::Tls(e) => ArchiveError::Unavailable(format!("database TLS: {e}")),
            sqlx::Error::Protocol(e) => ArchiveError::Unavailable(format!("database protocol: {e}")),
            sqlx::Error::WorkerCrashed => ArchiveError::Unavailable("the SQLite worker stopped".to_owned()),
            sqlx::Error::Database(e) => {
                let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
                let unavailable = match e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    Some(_) => pg_unavailable(&code),
                    None => sqlite_unavailable(&code),
                };
                let message = format!("database error {code}: {}", e.message());
                if unavailable {
                    ArchiveError::Unavailable(message)
                } else {
                    ArchiveError::Other(message)
                }
            }
            // Configuration errors are formatted without the URL (see `redact_url`).
            sqlx::Error::Configuration(_) => ArchiveError::BadQuery("the archive url is not valid".to_owned()),
            sqlx::Error::Migrate(e) => ArchiveError::Other(format!("migration failed: {e}")),
            other => ArchiveError::Other(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for ArchiveError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            // The database failed under the migration (down, busy): as any query.
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => ArchiveError::Other(format!("migration failed: {other}")),
        }
    }
}

/// `url` with its password (if any) replaced by `***`, for logs and errors; a URL that
/// does not parse is shown as its scheme only.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            // `?password=…` is accepted by libpq-style URLs too.
            if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => format!("{scheme}:…"),
            _ => "(unparsable url)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/pt"), "postgres://app:***@db:5432/pt");
        assert_eq!(redact_url("postgres://app@db/pt"), "postgres://app@db/pt");
        let q = redact_url("postgres://db/pt?user=app&password=s3cret&sslmode=require");
        assert!(!q.contains("s3cret"), "{q}");
        assert!(q.contains("sslmode=require"), "{q}");
        assert_eq!(redact_url("postgres://app:s3cret@[bad"), "postgres:…");
        assert!(!redact_url("garbage s3cret").contains("s3cret"));
    }

    #[test]
    fn codes_are_classified() {
        assert!(pg_unavailable("57P01"));
        assert!(pg_unavailable("08006"));
        assert!(!pg_unavailable("23505"));
        assert!(sqlite_unavailable("5"));
        assert!(sqlite_unavailable("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(!sqlite_unavailable("19"));
        assert!(matches!(ArchiveError::from(sqlx::Error::PoolTimedOut), ArchiveError::Unavailable(_)));
    }
}
