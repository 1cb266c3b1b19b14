//! `[powerjob]`: the PowerJob cluster, powertail's credentials and the server timing
//! the follower relies on.

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::{empty_secret, in_range, ConfigError};

/// `[powerjob]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerJobConfig {
    /// Servers tried in order; the first that answers serves the request.
    #[serde(deserialize_with = "super::urls")]
    pub addresses: Vec<Url>,
    /// OpenAPI app name.
    pub app_name: String,
    /// OpenAPI app password.
    pub app_password: SecretString,
    /// 5.x console user for `/instance/log` (empty on 4.x).
    #[serde(default)]
    pub console_username: String,
    /// 5.x console password.
    #[serde(default = "empty_secret")]
    pub console_password: SecretString,
    /// Per-request timeout; above the server's 5 s file preparation + 5 s forwarding.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The server's log file cache time (`LOG_CACHE_TIME`).
    #[serde(default = "defaults::log_cache_ms")]
    pub log_cache_ms: u64,
    /// How often workers ship their log lines.
    #[serde(default = "defaults::worker_flush_ms")]
    pub worker_flush_ms: u64,
    /// Allowance for clock differences between powertail, the server and workers.
    #[serde(default = "defaults::clock_skew_ms")]
    pub clock_skew_ms: u64,
    /// Delay between an instance finishing and the server's log sync (60 s in PowerJob):
    /// a log that never stops growing completes a late window after it.
    #[serde(default = "defaults::sync_delay_ms")]
    pub sync_delay_ms: u64,
    /// Extra CA certificate (PEM file) trusted for `https://` PowerJob addresses.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

mod defaults {
    pub fn request_timeout_ms() -> u64 {
        15_000
    }
    pub fn log_cache_ms() -> u64 {
        10_000
    }
    pub fn worker_flush_ms() -> u64 {
        5_000
    }
    pub fn clock_skew_ms() -> u64 {
        1_000
    }
    pub fn sync_delay_ms() -> u64 {
        60_000
    }
}

impl PowerJobConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.addresses.is_empty() {
            return Err(ConfigError::invalid("powerjob.addresses", "must list at least one server"));
        }
        if let Some(u) = self.addresses.iter().find(|u| !matches!(u.scheme(), "http" | "https")) {
            return Err(ConfigError::invalid(
                "powerjob.addresses",
                format!("`{u}` must be an http:// or https:// URL"),
            ));
        }
        if self.addresses.iter().any(|u| !u.username().is_empty() || u.password().is_some()) {
            // Not echoed: the URL holds a password.
            return Err(ConfigError::invalid(
                "powerjob.addresses",
                "must not hold a user or password (the app password goes in powerjob.app_password)",
            ));
        }
        if self.app_name.trim().is_empty() {
            return Err(ConfigError::invalid("powerjob.app_name", "must not be empty"));
        }
        in_range("powerjob.request_timeout_ms", self.request_timeout_ms, 100..=600_000)?;
        in_range("powerjob.log_cache_ms", self.log_cache_ms, 0..=3_600_000)?;
        in_range("powerjob.worker_flush_ms", self.worker_flush_ms, 0..=3_600_000)?;
        in_range("powerjob.clock_skew_ms", self.clock_skew_ms, 0..=3_600_000)?;
        in_range("powerjob.sync_delay_ms", self.sync_delay_ms, 0..=86_400_000)?;
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| ConfigError::invalid("powerjob.ca_file", format!("cannot read {}: {e}", ca.display())))?;
            if reqwest::Certificate::from_pem(&pem).is_err() {
                return Err(ConfigError::invalid("powerjob.ca_file", "is not a PEM certificate"));
            }
        }
        Ok(())
    }
}
