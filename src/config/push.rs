//! `[push]`: the push endpoint (`POST /llm/logs/{instanceId}/append`, issue 19) and how
//! pushed lines merge with PowerJob's (docs/API.md, "Pushing lines").

use serde::{Deserialize, Serialize};

use super::{at_least, in_range, ConfigError};
use crate::logs::merge::{MergeConfig, PushConfig, DEFAULT_MAX_WAITING};
use crate::logs::JoinConfig;

/// `[push]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// The endpoint exists (`false`: 404 `not_found`, as for any unknown route).
    pub enabled: bool,
    /// Largest body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Most lines in one body (413 beyond).
    pub max_batch_lines: usize,
    /// Longest line text, in bytes (413 beyond).
    pub max_line_bytes: usize,
    /// How long a batch waits for a missing one before it; then the gap is skipped.
    pub gap_wait_ms: u64,
    /// Most time between a pushed line and PowerJob's record of the same call.
    pub window_ms: u64,
    /// How long a line stays recognisable behind the newest one.
    pub retain_ms: u64,
    /// A source that never sent `final` counts as ended this long after its last batch.
    pub quiet_ms: u64,
    /// Most push sources per instance.
    pub max_sources: usize,
    /// PowerJob's time zone (its server JVM's), minutes east of UTC: pushed lines are
    /// shown in it, and PowerJob's record times are read in it (480: Asia/Shanghai, the
    /// official server image's `TZ`).
    pub utc_offset_minutes: i32,
}

impl Default for PushSection {
    fn default() -> Self {
        PushSection {
            enabled: true,
            max_body_bytes: 1 << 20,
            max_batch_lines: 1_000,
            max_line_bytes: 64 << 10,
            gap_wait_ms: 2_000,
            window_ms: 1_000,
            retain_ms: 600_000,
            quiet_ms: 15_000,
            max_sources: 64,
            utc_offset_minutes: 480,
        }
    }
}

impl PushSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        in_range("push.max_body_bytes", n(self.max_body_bytes), 1_024..=(64 << 20))?;
        in_range("push.max_batch_lines", n(self.max_batch_lines), 1..=100_000)?;
        in_range("push.max_line_bytes", n(self.max_line_bytes), 64..=(16 << 20))?;
        in_range("push.gap_wait_ms", self.gap_wait_ms, 0..=600_000)?;
        in_range("push.window_ms", self.window_ms, 0..=600_000)?;
        at_least("push.retain_ms", self.retain_ms, self.window_ms, " (push.window_ms)")?;
        in_range("push.retain_ms", self.retain_ms, 0..=86_400_000)?;
        in_range("push.quiet_ms", self.quiet_ms, 0..=86_400_000)?;
        in_range("push.max_sources", n(self.max_sources), 1..=10_000)?;
        if !(-16 * 60..=16 * 60).contains(&self.utc_offset_minutes) {
            let problem =
                format!("must be between -960 and 960 (minutes east of UTC), got {}", self.utc_offset_minutes);
            return Err(ConfigError::invalid("push.utc_offset_minutes", problem));
        }
        Ok(())
    }

    /// The join's parameters, for logs of at most `max_lines` lines.
    pub fn join_config(&self, max_lines: usize) -> JoinConfig {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        JoinConfig {
            merge: MergeConfig { window_ms: ms(self.window_ms), retain_ms: ms(self.retain_ms) },
            push: PushConfig {
                gap_wait_ms: ms(self.gap_wait_ms),
                max_waiting: DEFAULT_MAX_WAITING,
                max_sources: self.max_sources,
            },
            quiet_ms: ms(self.quiet_ms),
            utc_offset_minutes: self.utc_offset_minutes,
            max_lines,
        }
    }
}
