//! `[logs]`: how often logs are refreshed, and what is held of them.

use serde::{Deserialize, Serialize};

use super::{at_least, in_range, ConfigError};

/// `[logs]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// At most one upstream refresh per instance per interval.
    pub refresh_interval_ms: u64,
    /// No upstream log read before an instance ran this long.
    pub first_read_delay_ms: u64,
    /// Bound of the bytes of cached log lines.
    pub cache_max_bytes: u64,
    /// A followed instance nobody read for this long is dropped (complete logs stay).
    pub idle_evict_ms: u64,
    /// Growing logs followed at most at once (complete logs are bounded by size instead).
    pub max_followed_instances: usize,
    /// Most lines held for one instance; past it the log is cut (`truncated` in answers).
    pub max_lines_per_instance: usize,
    /// Bound of the bytes held by growing logs; past it new instances get 503.
    pub max_following_bytes: u64,
    /// A complete log that is read is re-checked (one status call) this often, so that a
    /// retry from the console or PowerJob's retry policy is seen.
    pub recheck_complete_ms: u64,
    /// How long a read of a held log waits for the refresh in flight before it answers
    /// from what is held (`stale: true` when the refresh is overdue).
    pub read_wait_ms: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            refresh_interval_ms: 1_000,
            first_read_delay_ms: 8_000,
            cache_max_bytes: 256 << 20,
            idle_evict_ms: 600_000,
            max_followed_instances: 5_000,
            max_lines_per_instance: 200_000,
            max_following_bytes: 256 << 20,
            recheck_complete_ms: 15_000,
            read_wait_ms: 1_000,
        }
    }
}

/// One MiB, the least of the byte bounds.
const MIB: u64 = 1 << 20;

impl LogsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        in_range("logs.refresh_interval_ms", self.refresh_interval_ms, 10..=600_000)?;
        at_least("logs.max_followed_instances", count(self.max_followed_instances), 1, "")?;
        in_range("logs.idle_evict_ms", self.idle_evict_ms, 100..=86_400_000)?;
        in_range("logs.first_read_delay_ms", self.first_read_delay_ms, 0..=3_600_000)?;
        at_least("logs.cache_max_bytes", self.cache_max_bytes, MIB, " (1 MiB)")?;
        in_range("logs.max_lines_per_instance", count(self.max_lines_per_instance), 100..=50_000_000)?;
        at_least("logs.max_following_bytes", self.max_following_bytes, MIB, " (1 MiB)")?;
        in_range("logs.recheck_complete_ms", self.recheck_complete_ms, 100..=86_400_000)?;
        in_range("logs.read_wait_ms", self.read_wait_ms, 10..=20_000)
    }
}
