//! [`ConfigError`]: every configuration problem as one line that names the key (as
//! written in the file, without figment's profile), where it came from, the value and
//! what is allowed. Values of keys that may hold a secret are never shown.

use std::path::PathBuf;

use figment::error::{Actual, Kind};
use figment::Profile;

use super::ENV_PREFIX;

/// A configuration problem, naming the key. Its `Display` is the whole message (no
/// `source()` to print again under it).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `--config` was given and the working directory has no `config.toml`.
    #[error(
        "no configuration file: there is no config.toml in {dir} and no --config was given; \
         start from the repository's config.toml (see the README, \"Running against a real \
         PowerJob\") and run `powertail --config FILE`"
    )]
    NoFile {
        /// The working directory.
        dir: String,
    },
    /// The file given with `--config` does not exist.
    #[error("invalid configuration: --config file {} does not exist", .0.display())]
    FileMissing(PathBuf),
    /// The file or an environment variable could not be read or has the wrong type or
    /// an unknown key (the message is complete).
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A value is out of its range.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid {
        /// `section.key`
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A value of a key whose name is built (`jobs.<name>.startup_rules[0].pattern`).
    #[error("invalid configuration: `{key}` {problem}")]
    InvalidKey {
        /// The full key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Last parts of key names whose values may hold a password or a token.
const SECRET_KEYS: [&str; 6] = ["password", "token", "redis_url", "sentinel_urls", "addresses", "url"];

impl ConfigError {
    /// [`ConfigError::Invalid`] of `key`.
    pub(super) fn invalid(key: &'static str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid { key, problem: problem.into() }
    }

    /// One line for figment's first error (and how many more there are).
    pub(super) fn from_figment(error: figment::Error) -> Self {
        let count = error.count();
        let first = error.into_iter().next().map_or_else(|| "unreadable".to_owned(), |e| describe(&e));
        let more = match count {
            0 | 1 => String::new(),
            2 => " (and 1 more problem)".to_owned(),
            n => format!(" (and {} more problems)", n - 1),
        };
        ConfigError::Load(format!("{first}{more}"))
    }
}

/// `` `key` in FILE: what is wrong ``.
fn describe(e: &figment::Error) -> String {
    let mut path = e.path.clone();
    if let Kind::MissingField(field) = &e.kind {
        if path.last().map(String::as_str) != Some(field.as_ref()) {
            path.push(field.to_string());
        }
    }
    // A profile name never belongs to the key (figment puts `default.` before it).
    if path.len() > 1 && e.profile.as_ref().is_some_and(|p| *p == Profile::Default && path[0] == p.as_str().as_str()) {
        path.remove(0);
    }
    let key = path.join(".");
    let secret = path.last().is_some_and(|last| SECRET_KEYS.iter().any(|s| last.ends_with(s)));
    let from = match &e.metadata {
        Some(md) if md.name.contains("environment") => {
            format!(" from {ENV_PREFIX}{}", path.iter().map(|p| p.to_ascii_uppercase()).collect::<Vec<_>>().join("__"))
        }
        Some(md) => md.source.as_ref().map(|s| format!(" in {s}")).unwrap_or_default(),
        None => String::new(),
    };
    let value =
        |actual: &Actual| if secret { "a value not shown (the key holds a secret)".to_owned() } else { shown(actual) };
    let what = match &e.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {}, got {}", expectation(expected), value(actual))
        }
        Kind::UnknownVariant(found, allowed) => {
            format!("expected {}, got \"{found}\"", one_of(allowed))
        }
        Kind::UnknownField(_, allowed) => {
            let table =
                if path.len() > 1 { format!("[{}]", path[..path.len() - 1].join(".")) } else { "the file".into() };
            format!("is not a known key; {table} takes {}", one_of(allowed))
        }
        Kind::MissingField(_) => "is required but missing".to_owned(),
        Kind::Message(m) => flatten(m),
        other => other.to_string(),
    };
    if matches!(e.kind, Kind::MissingField(_)) && path.len() == 1 {
        return format!("the section [{key}] is required but missing{from}");
    }
    if key.is_empty() {
        // A whole file at fault (its syntax): `config.toml: TOML parse error at …`.
        let file = e.metadata.as_ref().and_then(|md| md.source.as_ref()).map(|s| format!("{s}: ")).unwrap_or_default();
        format!("{file}{what}")
    } else {
        format!("`{key}`{from}: {what}")
    }
}

/// A value as written in TOML.
fn shown(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Seq => "a list".to_owned(),
        Actual::Map => "a table".to_owned(),
        other => other.to_string(),
    }
}

/// serde's type names in words.
fn expectation(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        other => other.to_owned(),
    }
}

/// `` `a`, `b` or `c` ``.
fn one_of(allowed: &[&str]) -> String {
    match allowed {
        [] => "nothing here".to_owned(),
        [one] => format!("`{one}`"),
        [init @ .., last] => {
            format!("{} or `{last}`", init.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "))
        }
    }
}

/// A message on one line. A TOML syntax error keeps its position and its reason, not
/// the quoted line (which may hold a secret).
fn flatten(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [first, .., last] if first.starts_with("TOML parse error") => format!("{first}: {last}"),
        _ => lines.join("; "),
    }
}
