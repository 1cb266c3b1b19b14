//! Everything that can go wrong talking to PowerJob, classified where the client sees it.

use std::time::Duration;

/// A failed PowerJob call. Messages never contain credentials or tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No server could be connected to, or the connection broke.
    #[error("PowerJob could not be reached: {0}")]
    Unreachable(String),
    /// A server did not answer within the request timeout.
    #[error("PowerJob did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer that is not PowerJob's protocol (a proxy's error page, HTTP 5xx, bad JSON).
    #[error("PowerJob answered outside its protocol: {0}")]
    Protocol(String),
    /// PowerJob answered `success: false`.
    #[error("PowerJob refused the request: {message}")]
    Refused {
        /// The server's message (`<ExceptionClass>: <text>`).
        message: String,
        /// 5.x error code, when present.
        code: Option<String>,
    },
    /// Login or app authentication failed (wrong password, unknown app, missing user).
    #[error("PowerJob rejected powertail's credentials: {0}")]
    Auth(String),
    /// PowerJob served a placeholder ("log file is being prepared", a server exception)
    /// or kept rebuilding the log while it was read: a transient state, read again.
    #[error("PowerJob's log is not readable yet: {0}")]
    NotReady(String),
    /// PowerJob does not know the instance.
    #[error("PowerJob does not know instance {0}")]
    InstanceNotFound(i64),
}

impl UpstreamError {
    pub(crate) fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            UpstreamError::Timeout(timeout)
        } else if e.is_decode() || e.is_body() && !e.is_connect() {
            UpstreamError::Protocol(describe(e))
        } else {
            UpstreamError::Unreachable(describe(e))
        }
    }
}

/// The error and its causes, without the URL (logged separately with the address).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
