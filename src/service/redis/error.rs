//! Failures of the shared store, each named by its real cause (never with the URL:
//! it may hold a password).

use redis::RedisError;

/// A failure of the shared store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or did not answer in time.
    #[error("the shared store (Redis) is unreachable: {0}")]
    Unavailable(String),
    /// Redis answers, and refuses this replica as configured (a database index it does
    /// not have, a wrong password, another PowerJob's key prefix).
    #[error("the shared store (Redis) refuses this replica: {0}")]
    Rejected(String),
    /// Redis refused a write for lack of memory (`maxmemory`, `noeviction`).
    #[error("the shared store (Redis) is out of memory: the write was refused whole")]
    OutOfMemory,
    /// Another replica holds the instance's lease now.
    #[error("another replica holds the lease of this instance")]
    Fenced,
    /// The shared log is not where this replica expected it (another writer, a failover).
    #[error("the shared log holds {0} lines, not the number expected")]
    Conflict(i64),
    /// A reply this build does not understand (a newer replica's meta, a foreign key).
    #[error("unexpected data in the shared store: {0}")]
    Protocol(String),
}

impl StoreError {
    /// The `kind` label of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Rejected(_) => "rejected",
            StoreError::OutOfMemory => "oom",
            StoreError::Fenced => "fenced",
            StoreError::Conflict(_) => "conflict",
            StoreError::Protocol(_) => "protocol",
        }
    }
}

/// Where a replica connects, as its messages name it: `host:port` and the database
/// index (never the password).
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// `host:port`, or what names the primary (Sentinel).
    pub(super) addr: String,
    /// The database index of `cluster.redis_url` (`/N`).
    pub(super) db: i64,
}

impl Target {
    /// A failed connection attempt, by its cause.
    pub(super) fn connect_failed(&self, e: &RedisError) -> StoreError {
        let addr = &self.addr;
        let detail = e.detail().unwrap_or_default();
        let switch_refused = detail.contains("DB index") || e.to_string().contains("switch database");
        match e.code() {
            _ if switch_refused => StoreError::Rejected(format!(
                "Redis at {addr} has no database {db}: the index at the end of cluster.redis_url is out of range \
                 (Redis's `databases` setting, 16 by default); use one it has, such as /0",
                db = self.db
            )),
            Some("WRONGPASS" | "NOAUTH") => StoreError::Rejected(format!(
                "Redis at {addr} refused the credentials of cluster.redis_url ({})",
                e.code().unwrap_or_default()
            )),
            _ => self.unreachable(e),
        }
    }

    /// A connection that failed or broke: refused, timed out, or an I/O error.
    pub(super) fn unreachable(&self, e: &RedisError) -> StoreError {
        let addr = &self.addr;
        StoreError::Unavailable(if e.is_connection_refusal() {
            format!("connection refused at {addr} (is Redis running and listening there?)")
        } else if e.is_timeout() {
            format!("{addr} did not answer in time")
        } else if e.is_io_error() || e.is_connection_dropped() {
            format!("the connection to {addr} failed ({})", e.category())
        } else {
            format!("{addr}: {}", e.category())
        })
    }
}
