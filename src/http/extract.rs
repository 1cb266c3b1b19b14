//! Extractors whose rejections are [`ApiError`]s in the JSON error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::error::ApiError;

/// `axum::Json` with rejections mapped to 400 (or 413 for an oversized body).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge),
            Err(rejection) => Err(ApiError::BadRequest(format!("invalid JSON body: {}", rejection.body_text()))),
        }
    }
}

impl<S, T> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    /// An empty body means "no body", whatever the headers say.
    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let json_type =
            req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        let bytes = match bytes::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => return Err(ApiError::BadRequest(format!("unreadable body: {}", rejection.body_text()))),
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        if !json_type {
            return Err(ApiError::BadRequest("a body must be JSON (`Content-Type: application/json`)".into()));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Some(ApiJson(v))),
            Err(rejection) => Err(ApiError::BadRequest(format!("invalid JSON body: {}", rejection.body_text()))),
        }
    }
}

/// `axum::extract::Path` with rejections in the JSON error shape (a segment that is not
/// UTF-8 once percent-decoded is a 400 like any other bad input).
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(_) => {
                Err(ApiError::BadRequest("the path holds a segment that is not valid percent-encoded UTF-8".into()))
            }
        }
    }
}

/// The values of a strict query string: each of `names` at most once (a repeated one
/// is a 400), any other name a 400 that lists the accepted ones (a misspelt
/// `fromline` must not silently restart at line 0); `_`, the usual cache-buster, may
/// appear any number of times. Values are borrowed unless percent-encoded.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the parameter.
pub fn strict_query<'q, const N: usize>(
    raw: Option<&'q str>,
    names: [&str; N],
) -> Result<[Option<std::borrow::Cow<'q, str>>; N], ApiError> {
    let mut values = [const { None }; N];
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if key == "_" {
            continue;
        }
        let Some(slot) = names.iter().position(|n| *n == key) else {
            let accepted = names.iter().map(|n| format!("`{n}`")).chain(["`_`".to_owned()]).collect::<Vec<_>>();
            let accepted = if N == 0 { "only `_` (a cache-buster)".to_owned() } else { accepted.join(", ") };
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter `{key}`; this endpoint accepts {accepted}"
            )));
        };
        if values[slot].replace(value).is_some() {
            return Err(ApiError::BadRequest(format!("query parameter `{key}` is repeated")));
        }
    }
    Ok(values)
}

/// A query value of plain decimal digits (no sign, spaces or exponent) within range.
pub fn digits<T: std::str::FromStr>(v: &str) -> Option<T> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn strict_queries_name_what_is_wrong() {
        let [a, b] = strict_query(Some("a=1&_=x&b=%32&_=y"), ["a", "b"]).unwrap();
        assert_eq!((a.as_deref(), b.as_deref()), (Some("1"), Some("2")));
        assert_eq!(strict_query(None, ["a"]).unwrap(), [None]);
        assert!(message(strict_query(Some("a=1&a=2"), ["a"])).contains("`a` is repeated"));
        assert_eq!(
            message(strict_query(Some("A=1"), ["a", "b"])),
            "unknown query parameter `A`; this endpoint accepts `a`, `b`, `_`"
        );
        assert_eq!(
            message(strict_query(Some("fromLine=3"), [])),
            "unknown query parameter `fromLine`; this endpoint accepts only `_` (a cache-buster)"
        );
    }

    #[test]
    fn digits_are_plain_decimal() {
        assert_eq!(digits::<u32>("42"), Some(42));
        for bad in ["", "-1", "+1", " 1", "1.0", "1e3", "4294967296"] {
            assert_eq!(digits::<u32>(bad), None, "{bad:?}");
        }
    }
}
