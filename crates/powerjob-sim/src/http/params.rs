//! Request parameters as Spring binds them: form parameters for the id-taking endpoints,
//! JSON bodies for the object-taking ones, and the exception texts of a failed binding.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use serde_json::Value;

/// Largest request body read (the real server has no reason to get more from a client).
const MAX_BODY: usize = 1 << 20;

/// Request parameters as Spring binds un-annotated controller arguments: the query
/// string, then an `application/x-www-form-urlencoded` body (never a JSON body). The
/// first value of a name wins.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) async fn read(req: Request) -> (HeaderMap, Self) {
        let (parts, body) = req.into_parts();
        let mut pairs: Vec<(String, String)> =
            parts.uri.query().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
        let form = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if form {
            if let Ok(bytes) = to_bytes(body, MAX_BODY).await {
                pairs.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes).unwrap_or_default());
            }
        }
        (parts.headers, Params(pairs))
    }

    /// A `String` argument; Spring binds an empty value as `""`.
    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// A `Long` argument: `Ok(None)` when absent or empty, `Err(message)` for Spring's
    /// type-mismatch failure.
    pub(super) fn long(&self, name: &str) -> Result<Option<i64>, String> {
        match self.string(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                format!(
                    "MethodArgumentTypeMismatchException: Failed to convert value of type 'java.lang.String' to required \
                     type 'java.lang.Long'; nested exception is java.lang.NumberFormatException: For input string: \
                     \"{v}\""
                )
            }),
        }
    }
}

/// A JSON `@RequestBody`: `Err` is the exception handler's message.
pub(super) async fn json_body(req: Request) -> (HeaderMap, Result<Value, String>) {
    let (parts, body) = req.into_parts();
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        let ct = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        return (parts.headers, Err(format!("HttpMediaTypeNotSupportedException: Content type '{ct}' not supported")));
    }
    let parsed = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("HttpMessageNotReadableException: JSON parse error: {e}")),
        Err(e) => Err(format!("HttpMessageNotReadableException: I/O error while reading input message: {e}")),
    };
    (parts.headers, parsed)
}

pub(super) fn text_or_null(v: Option<&str>) -> String {
    v.unwrap_or("null").to_owned()
}

pub(super) fn long_or_null(v: Option<i64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}
