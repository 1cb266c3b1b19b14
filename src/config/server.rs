//! `[server]`: the HTTP listener, its limits and powertail's own log output.

use std::net::{SocketAddr, ToSocketAddrs as _};

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use super::ConfigError;

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the API listens on: `ip:port`, or `host:port` resolved once at start-up
    /// (an IPv4 address of the host when it has one).
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Browser origins allowed to call the API from another site (CORS); none by default.
    pub cors_allowed_origins: Vec<String>,
    /// Requests served at once; more are refused with 503 and `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Long-polls and event streams waiting at once; more are refused the same way.
    pub max_waiting_clients: usize,
    /// `/readyz` is ready without a probe when PowerJob answered this recently.
    pub ready_window_ms: u64,
    /// How powertail's own log lines (on stderr) are written.
    pub log_format: LogFormat,
    /// Which of powertail's own log lines are written: an `EnvFilter` directive such as
    /// `info` or `warn,powertail=debug`. `RUST_LOG`, when set, wins.
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cors_allowed_origins: Vec::new(),
            max_concurrent_requests: 2_048,
            max_waiting_clients: 1_024,
            ready_window_ms: 30_000,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
        }
    }
}

/// `server.log_format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    Text,
    /// One JSON object per line with `timestamp`, `level`, `target`, `message` and the
    /// event's fields at the top level, for log shippers.
    Json,
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_requests == 0 || self.max_waiting_clients == 0 {
            return Err(ConfigError::invalid(
                "server.max_concurrent_requests/max_waiting_clients",
                "must be at least 1",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(ConfigError::invalid(
                "server.log_level",
                format!("`{}` is not a level or filter such as `info` or `warn,powertail=debug`", self.log_level),
            ));
        }
        if let Some(o) = self.cors_allowed_origins.iter().find(|o| Url::parse(o).is_err() || o.ends_with('/')) {
            return Err(ConfigError::invalid(
                "server.cors_allowed_origins",
                format!("`{o}` is not an origin like https://platform.example.com"),
            ));
        }
        Ok(())
    }
}

/// `server.listen`: an `ip:port` or a `host:port`, resolved now.
fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_listen(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Parses `ip:port`, `[ipv6]:port` or `host:port` (the host resolved, its first IPv4
/// address preferred), with a message that says what is wrong.
///
/// # Errors
/// A message naming the text and what is wrong with it (no port, a port out of range,
/// a host that does not resolve).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let shape = "an address such as 127.0.0.1:8080, [::1]:8080 or localhost:8080";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} has no port: expected {shape}"));
    };
    let port = match port.parse::<u64>() {
        Ok(p) => u16::try_from(p).map_err(|_| format!("{text:?}: the port {p} is out of range (0 to 65535)"))?,
        Err(_) => return Err(format!("{text:?}: the port {port:?} is not a number: expected {shape}")),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{text:?} has no host: expected {shape}"));
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{text:?}: the host {host:?} cannot be resolved ({e})"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{text:?}: the host {host:?} has no address"))
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_addresses_take_ips_and_host_names_and_say_what_is_wrong() {
        assert_eq!(parse_listen("0.0.0.0:8095").unwrap().to_string(), "0.0.0.0:8095");
        assert_eq!(parse_listen("[::1]:8095").unwrap().to_string(), "[::1]:8095");
        assert!(parse_listen("localhost:8095").unwrap().ip().is_loopback());
        assert_eq!(parse_listen("localhost:8095").unwrap().port(), 8095);
        assert_eq!(
            parse_listen("127.0.0.1:70000").unwrap_err(),
            "\"127.0.0.1:70000\": the port 70000 is out of range (0 to 65535)"
        );
        assert!(parse_listen("127.0.0.1").unwrap_err().contains("has no port"));
        assert!(parse_listen("127.0.0.1:http").unwrap_err().contains("is not a number"));
        assert!(parse_listen(":80").unwrap_err().contains("has no host"));
    }
}
