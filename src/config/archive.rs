//! `[archive]`: the history every complete log is written to (issue 20, docs/API.md
//! "Archive"). An embedded SQLite file by default (`sqlite://powertail.db`, relative to
//! the working directory), PostgreSQL when several replicas share it; `url = ""` (the
//! default when the section is absent) turns it off.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{in_range, ConfigError};

/// Which store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `sqlite:…`: one process's file.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: shared by replicas.
    Postgres,
}

/// `[archive]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// `sqlite://FILE` (relative to the working directory, created if missing),
    /// `sqlite:///abs/path.db`, or `postgres://user:password@host:port/db`; `""` = off.
    /// A secret: it may hold a password, so it is shown only through [`Self::redacted`].
    #[serde(default = "defaults::url")]
    pub url: SecretString,
    /// Runs finished longer ago than this are deleted (in bounded batches); 0 = never.
    #[serde(default = "defaults::retain_days")]
    pub retain_days: u64,
    /// Connections of the pool.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            url: defaults::url(),
            retain_days: defaults::retain_days(),
            max_connections: defaults::max_connections(),
        }
    }
}

mod defaults {
    use secrecy::SecretString;

    pub fn url() -> SecretString {
        SecretString::from(String::new())
    }
    pub fn retain_days() -> u64 {
        30
    }
    pub fn max_connections() -> u32 {
        8
    }
}

impl ArchiveConfig {
    /// The store the URL names; `None` when the archive is off (`url = ""`).
    pub fn kind(&self) -> Option<ArchiveKind> {
        let url = self.url.expose_secret().trim();
        if url.is_empty() {
            None
        } else if url.starts_with("sqlite:") {
            Some(ArchiveKind::Sqlite)
        } else {
            Some(ArchiveKind::Postgres)
        }
    }

    /// Whether an archive is configured.
    pub fn enabled(&self) -> bool {
        self.kind().is_some()
    }

    /// The URL as it may be shown (logs, errors, `/readyz`): a password replaced by
    /// `***`, the query (it may carry one too) dropped.
    pub fn redacted(&self) -> String {
        redact(self.url.expose_secret())
    }

    pub(super) fn validate(&self, cluster: bool) -> Result<(), ConfigError> {
        let url = self.url.expose_secret().trim();
        match self.kind() {
            None => return Ok(()),
            Some(ArchiveKind::Sqlite) => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                if path.is_empty() || path.starts_with('?') {
                    return Err(ConfigError::invalid(
                        "archive.url",
                        "names no file: use sqlite://powertail.db (relative to the working directory) or sqlite:///abs/path.db",
                    ));
                }
                if cluster {
                    return Err(ConfigError::invalid(
                        "archive.url",
                        "is a SQLite file, which only one process can use, and [cluster] runs several replicas: \
                         give them a shared PostgreSQL archive (postgres://user:password@host:5432/db), or set \
                         url = \"\" to turn the archive off",
                    ));
                }
            }
            Some(ArchiveKind::Postgres) => {
                // The URL is not echoed: it may hold a password.
                let ok = Url::parse(url).is_ok_and(|u| {
                    matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some_and(|h| !h.is_empty())
                });
                if !ok {
                    return Err(ConfigError::invalid(
                        "archive.url",
                        "must be \"\" (off), sqlite://FILE, or a postgres:// URL with a host",
                    ));
                }
            }
        }
        in_range("archive.retain_days", self.retain_days, 0..=36_500)?;
        in_range("archive.max_connections", u64::from(self.max_connections), 1..=256)
    }
}

/// `url` with its password replaced by `***` and its query dropped.
pub fn redact(url: &str) -> String {
    let url = url.trim();
    if url.starts_with("sqlite:") {
        return url.split('?').next().unwrap_or("").to_owned();
    }
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(an unparsable URL, not shown)".to_owned(),
    }
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail's closure signature is fixed")]
mod tests {
    use super::super::Config;
    use super::*;

    const MIN: &str = "[powerjob]\naddresses = [\"http://127.0.0.1:7700\"]\napp_name = \"app\"\napp_password = \"p\"\n";

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{MIN}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_defaults_when_on() {
        figment::Jail::expect_with(|jail| {
            let c = load("").unwrap().archive;
            assert_eq!((c.kind(), c.retain_days, c.max_connections), (None, 30, 8));
            let c = load("[archive]\nurl = \"sqlite://powertail.db\"").unwrap().archive;
            assert_eq!(c.kind(), Some(ArchiveKind::Sqlite));
            assert_eq!(load("[archive]\nurl = \"\"").unwrap().archive.kind(), None);
            jail.set_env("POWERTAIL_ARCHIVE__URL", "postgres://pt:s3cret@db.internal:5432/powertail");
            let c = load("").unwrap().archive;
            assert_eq!(c.kind(), Some(ArchiveKind::Postgres));
            assert_eq!(c.redacted(), "postgres://pt:***@db.internal:5432/powertail");
            assert!(!format!("{c:?}").contains("s3cret"), "the URL is a secret");
            Ok(())
        });
    }

    #[test]
    fn cluster_with_sqlite_is_refused_with_the_reason() {
        figment::Jail::expect_with(|_| {
            let cluster = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n";
            let e = load(&format!("{cluster}[archive]\nurl = \"sqlite://powertail.db\"")).unwrap_err();
            assert!(e.contains("archive.url") && e.contains("SQLite") && e.contains("PostgreSQL"), "{e}");
            assert!(load(&format!("{cluster}[archive]\nurl = \"postgres://u:p@h/db\"")).is_ok());
            assert!(load(&format!("{cluster}[archive]\nurl = \"\"")).is_ok());
            Ok(())
        });
    }

    #[test]
    fn bad_settings_name_their_key_and_never_echo_a_password() {
        figment::Jail::expect_with(|_| {
            let e = load("[archive]\nurl = \"mysql://u:s3cret@h/db\"").unwrap_err();
            assert!(e.contains("archive.url") && !e.contains("s3cret"), "{e}");
            let e = load("[archive]\nurl = \"sqlite://\"").unwrap_err();
            assert!(e.contains("archive.url"), "{e}");
            let e = load("[archive]\nurl = \"sqlite://a.db\"\nmax_connections = 0").unwrap_err();
            assert!(e.contains("archive.max_connections"), "{e}");
            let e = load("[archive]\nurl = \"sqlite://a.db\"\nretain_days = 99999").unwrap_err();
            assert!(e.contains("archive.retain_days"), "{e}");
            assert_eq!(redact("postgres://u@h/db?password=x"), "postgres://u@h/db");
            assert_eq!(redact("sqlite://powertail.db?mode=rwc"), "sqlite://powertail.db");
            Ok(())
        });
    }
}
