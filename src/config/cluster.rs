//! `[cluster]`: several replicas sharing one line log on Redis (docs/API.md, "Running
//! several replicas"). Absent, powertail is one process with everything in memory.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{in_range, ConfigError};

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port/db` or `rediss://…` (TLS). A secret: it may hold a
    /// password, so it is never logged or echoed. Either this or the sentinel keys.
    #[serde(default)]
    pub redis_url: Option<SecretString>,
    /// Sentinels (`redis://host:26379`) that name the primary of `sentinel_master`.
    #[serde(default, deserialize_with = "super::urls")]
    pub sentinel_urls: Vec<Url>,
    /// The master name the sentinels monitor.
    #[serde(default)]
    pub sentinel_master: Option<String>,
    /// Password of the Redis primary found through the sentinels (the sentinels' own
    /// password goes in their URLs).
    #[serde(default)]
    pub sentinel_redis_password: Option<SecretString>,
    /// Prefix of every key (`<prefix>:{<instanceId>}:lines`, …).
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    /// This replica's name in logs and metrics (default: host name and process id).
    #[serde(default)]
    pub node_id: Option<String>,
    /// How long the refresh lease of an instance lasts unless renewed; a replica that
    /// dies holding it is replaced after at most this plus one refresh interval.
    #[serde(default = "defaults::lease_ms")]
    pub lease_ms: u64,
    /// Redis replicas that must confirm an append (`WAIT`) before readers see its lines;
    /// 0 = a single Redis (then run it with `appendfsync always` to survive its restart).
    #[serde(default)]
    pub commit_replicas: u32,
    /// How long an append waits for those confirmations; unconfirmed lines stay hidden
    /// until a later append is confirmed.
    #[serde(default = "defaults::commit_timeout_ms")]
    pub commit_timeout_ms: u64,
    /// A complete log's keys expire this long after it completed.
    #[serde(default = "defaults::retain_complete_ms")]
    pub retain_complete_ms: u64,
    /// Timeout of one Redis command; past it the command counts as failed.
    #[serde(default = "defaults::command_timeout_ms")]
    pub command_timeout_ms: u64,
}

mod defaults {
    pub fn key_prefix() -> String {
        "pt".to_owned()
    }
    pub fn lease_ms() -> u64 {
        3_000
    }
    pub fn commit_timeout_ms() -> u64 {
        200
    }
    pub fn retain_complete_ms() -> u64 {
        7 * 24 * 3_600_000
    }
    pub fn command_timeout_ms() -> u64 {
        2_000
    }
}

impl ClusterConfig {
    /// This replica's name.
    pub fn node(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    pub(super) fn validate(&self, refresh_interval_ms: u64) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| Err(ConfigError::Invalid { key, problem: problem.to_owned() });
        match (&self.redis_url, self.sentinel_urls.is_empty()) {
            (Some(_), false) => {
                return invalid("cluster.redis_url", "set either it or cluster.sentinel_urls, not both")
            }
            (None, true) => return invalid("cluster.redis_url", "is required (or cluster.sentinel_urls)"),
            (Some(url), true) => {
                // The URL is not echoed: it may hold a password.
                let ok = Url::parse(url.expose_secret())
                    .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some());
                if !ok {
                    return invalid("cluster.redis_url", "must be a redis:// or rediss:// URL with a host");
                }
            }
            (None, false) => {
                if self.sentinel_master.as_deref().is_none_or(|m| m.trim().is_empty()) {
                    return invalid("cluster.sentinel_master", "is required with cluster.sentinel_urls");
                }
                if self.sentinel_urls.iter().any(|u| !matches!(u.scheme(), "redis" | "rediss")) {
                    return invalid("cluster.sentinel_urls", "must be redis:// or rediss:// URLs");
                }
            }
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ' ']) {
            return invalid("cluster.key_prefix", "must be non-empty, without braces or spaces");
        }
        if self.lease_ms < refresh_interval_ms.saturating_mul(2) || self.lease_ms > 600_000 {
            return Err(ConfigError::invalid(
                "cluster.lease_ms",
                format!(
                    "must be at least twice logs.refresh_interval_ms ({}) and at most 600000, got {}",
                    refresh_interval_ms.saturating_mul(2),
                    self.lease_ms
                ),
            ));
        }
        in_range("cluster.commit_replicas", u64::from(self.commit_replicas), 0..=16)?;
        in_range("cluster.commit_timeout_ms", self.commit_timeout_ms, 1..=60_000)?;
        in_range("cluster.retain_complete_ms", self.retain_complete_ms, 1_000..=365 * 86_400_000)?;
        in_range("cluster.command_timeout_ms", self.command_timeout_ms, 10..=60_000)?;
        Ok(())
    }
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail's closure signature is fixed")]
mod tests {
    use super::super::Config;
    use secrecy::ExposeSecret;

    const MIN: &str = "[powerjob]\naddresses = [\"http://127.0.0.1:7700\"]\napp_name = \"app\"\napp_password = \"p\"\n";

    fn load(cluster: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{MIN}[cluster]\n{cluster}")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_the_url_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            let c = load("redis_url = \"redis://:s3cret@10.0.0.5:6379/2\"").unwrap().cluster.unwrap();
            assert_eq!((c.key_prefix.as_str(), c.lease_ms, c.commit_replicas), ("pt", 3_000, 0));
            assert_eq!((c.commit_timeout_ms, c.retain_complete_ms), (200, 7 * 86_400_000));
            assert!(!format!("{c:?}").contains("s3cret"), "the URL is a secret");
            // No [cluster] section: memory mode.
            assert!(Config::from_toml(MIN).unwrap().cluster.is_none());
            // The URL from the environment alone turns cluster mode on.
            jail.set_env("POWERTAIL_CLUSTER__REDIS_URL", "rediss://:pw@redis.internal:6380/0");
            let c = Config::from_toml(MIN).unwrap().cluster.unwrap();
            assert_eq!(c.redis_url.unwrap().expose_secret(), "rediss://:pw@redis.internal:6380/0");
            Ok(())
        });
    }

    #[test]
    fn bad_settings_name_their_key_and_never_echo_the_url() {
        figment::Jail::expect_with(|_| {
            let e = load("redis_url = \"http://:s3cret@h:1\"").unwrap_err();
            assert!(e.contains("cluster.redis_url") && !e.contains("s3cret"), "{e}");
            let e = load("").unwrap_err();
            assert!(e.contains("cluster.redis_url"), "{e}");
            let e = load("redis_url = \"redis://h\"\nsentinel_urls = [\"redis://s:26379\"]").unwrap_err();
            assert!(e.contains("not both"), "{e}");
            let e = load("sentinel_urls = [\"redis://s:26379\"]").unwrap_err();
            assert!(e.contains("cluster.sentinel_master"), "{e}");
            let e = load("redis_url = \"redis://h\"\nlease_ms = 1500").unwrap_err();
            assert!(e.contains("cluster.lease_ms"), "{e}");
            let e = load("redis_url = \"redis://h\"\nkey_prefix = \"a{b}\"").unwrap_err();
            assert!(e.contains("cluster.key_prefix"), "{e}");
            let c = load("sentinel_urls = [\"redis://s1:26379\", \"redis://s2:26379\"]\nsentinel_master = \"m\"");
            assert_eq!(c.unwrap().cluster.unwrap().sentinel_urls.len(), 2);
            Ok(())
        });
    }
}
