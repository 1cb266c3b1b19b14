//! `[startup]`: how start-up tracking (`GET /llm/instances/{id}/startup`) decides that a
//! failure is final (docs/API.md, "Start-up state").

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[startup]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StartupConfig {
    /// A failure line's cause becomes final once the attempt has logged a line this much
    /// later (by the lines' own timestamps), unless the attempt ended first or the cause
    /// is the most specific one the rules know. Until then a more specific cause may
    /// still follow (vLLM logs `EngineCore failed to start` seconds before the CUDA
    /// out-of-memory error that caused it).
    pub failure_settle_ms: u64,
}

/// Default of [`StartupConfig::failure_settle_ms`].
pub const FAILURE_SETTLE_MS: u64 = 15_000;

impl Default for StartupConfig {
    fn default() -> Self {
        StartupConfig { failure_settle_ms: FAILURE_SETTLE_MS }
    }
}

impl StartupConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.failure_settle_ms > 3_600_000 {
            return Err(ConfigError::invalid(
                "startup.failure_settle_ms",
                format!("must be at most 3600000, got {}", self.failure_settle_ms),
            ));
        }
        Ok(())
    }
}
