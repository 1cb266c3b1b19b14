//! 5.x authentication: `/openApi/authApp` tokens checked by the OpenAPI interceptor, and
//! console logins whose JWT guards `/instance/*` (§2.1–§2.3, §4.9). Tokens are opaque,
//! JWT-shaped strings looked up in the simulator's state.

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use md5::{Digest, Md5};
use serde_json::Value;

use super::params::{json_body, text_or_null};
use super::{ok, Failure, Simulator};
use crate::json;

/// Response header of the 5.x OpenAPI interceptor (§2.1).
const AUTH_PASSED: &str = "X-POWERJOB-AUTH-PASSED";
/// Request headers of the 5.x OpenAPI token (§2.1).
const APP_ID_HEADER: &str = "X-POWERJOB-APP-ID";
const TOKEN_HEADER: &str = "X-POWERJOB-ACCESS-TOKEN";
/// Console JWT headers, 5.1.x name first, then the legacy 5.0.x one (§4.9).
const CONSOLE_JWT_HEADERS: [&str; 2] = ["PowerJwt", "Power_jwt"];
/// The built-in global admin of the 5.x account system.
const GLOBAL_ADMIN: &str = "ADMIN";

/// An issued `/openApi/authApp` token.
#[derive(Clone, Debug)]
pub(super) struct AppToken {
    app_id: i64,
    /// `encryptedPassword` as sent, re-checked against the app on every call.
    password: Option<String>,
    encrypt_type: Option<String>,
    expires_at: i64,
}

/// An issued console login token.
#[derive(Clone, Debug)]
pub(super) struct ConsoleToken {
    username: String,
    expires_at: i64,
}

impl Simulator {
    /// Checks the 5.x OpenAPI token headers in the interceptor's order (§2.3).
    fn check_app_token(&self, headers: &HeaderMap, now: i64) -> Result<(), Rejection> {
        let app_id = present_header(headers, APP_ID_HEADER)
            .ok_or(Rejection::new("INVALID_REQUEST:lack_of_appId_in_header", "-300"))?;
        let token = present_header(headers, TOKEN_HEADER)
            .ok_or(Rejection::new("OPEN_API_AUTH_FAILED:token_is_empty", "-1002"))?;
        let issued = self.shared().app_tokens.get(&token).cloned();
        let Some(issued) = issued else {
            let detail = if token.matches('.').count() == 2 {
                "SignatureException: JWT signature does not match locally computed signature. JWT validity cannot be \
                 asserted and should not be trusted."
                    .to_owned()
            } else {
                format!(
                    "MalformedJwtException: JWT strings must contain exactly 2 period characters. Found: {}",
                    token.matches('.').count()
                )
            };
            return Err(Rejection::owned(format!("INVALID_TOKEN:{detail}"), "-401"));
        };
        if now >= issued.expires_at {
            let exp = issued.expires_at;
            let text = format!(
                "TOKEN_EXPIRED:JWT expired at {}. Current time: {}, a difference of {} milliseconds.  Allowed clock skew: 0 \
                 milliseconds.",
                jwt_time(exp),
                jwt_time(now),
                now - exp
            );
            return Err(Rejection::owned(text, "-403"));
        }
        let Ok(header_app_id) = app_id.trim().parse::<i64>() else {
            // An unexpected exception inside the interceptor: HTTP 500, code -500.
            let mut rejection =
                Rejection::owned(format!("NumberFormatException: For input string: \"{app_id}\""), "-500");
            rejection.status = StatusCode::INTERNAL_SERVER_ERROR;
            return Err(rejection);
        };
        if header_app_id != issued.app_id {
            return Err(Rejection::new("INVALID_REQUEST:Inconsistent_appId_from_token_and_header", "-300"));
        }
        if issued.app_id != self.cfg.app_id {
            return Err(Rejection::new("INVALID_APP:can_not_find_app", "-402"));
        }
        match password_matches(&self.cfg.app_password, issued.password.as_deref(), issued.encrypt_type.as_deref()) {
            Ok(true) => Ok(()),
            _ => Err(Rejection::new("INCORRECT_PASSWORD", "-400")),
        }
    }

    /// A new opaque, JWT-shaped token (HS256 header, the server's claims, a random
    /// signature; nobody verifies the signature, the map lookup does).
    fn issue_token(claims: &Value) -> String {
        let header = b64url(br#"{"typ":"JWT","alg":"HS256"}"#);
        let payload = b64url(claims.to_string().as_bytes());
        let signature = b64url(&rand::random::<[u8; 32]>());
        format!("{header}.{payload}.{signature}")
    }

    /// The console user of the request's JWT, if it is valid and not expired.
    pub(super) fn console_user(&self, headers: &HeaderMap, now: i64) -> Option<String> {
        let token = CONSOLE_JWT_HEADERS.iter().find_map(|h| present_header(headers, h))?;
        let issued = self.shared().console_tokens.get(&token).cloned()?;
        (now < issued.expires_at && issued.username == self.cfg.console_username).then_some(issued.username)
    }

    /// 5.x `PowerJobAuthInterceptor` for `@ApiPermission(roleScope = APP)` endpoints.
    /// Only [`GLOBAL_ADMIN`] holds a role; any other user is denied.
    pub(super) fn check_console(&self, headers: &HeaderMap, now: i64) -> Result<(), Failure> {
        if !self.v5() {
            return Ok(());
        }
        let Some(user) = self.console_user(headers, now) else {
            return Err(Failure::new("PowerJobAuthException: UserNotLoggedIn", Some("-100")));
        };
        if user == GLOBAL_ADMIN {
            Ok(())
        } else if present_header(headers, "AppId").is_none() {
            // The app lookup with a null id fails before the permission check proper.
            Err(Failure::new("NullPointerException: ", None))
        } else {
            Err(Failure::new("PowerJobException: Permission denied!", None))
        }
    }
}

/// An OpenAPI interceptor rejection: written by `JsonUtils`, so no `data` key.
struct Rejection {
    status: StatusCode,
    message: String,
    code: &'static str,
}

impl Rejection {
    fn new(message: &str, code: &'static str) -> Self {
        Rejection::owned(message.to_owned(), code)
    }

    fn owned(message: String, code: &'static str) -> Self {
        Rejection { status: StatusCode::OK, message, code }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = json::rejection(&self.message, self.code).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        headers.insert(AUTH_PASSED, HeaderValue::from_static("false"));
        response
    }
}

/// A header value, with `null`/`undefined` (any case) and blanks counted as absent.
pub(super) fn present_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    let absent = value.is_empty() || value.eq_ignore_ascii_case("null") || value.eq_ignore_ascii_case("undefined");
    (!absent).then(|| value.to_owned())
}

/// `/authApp` password check: `Ok(matches)` or `Err` for an unknown encrypt type.
pub(super) fn password_matches(app_password: &str, sent: Option<&str>, encrypt_type: Option<&str>) -> Result<bool, ()> {
    let sent = sent.unwrap_or_default();
    match encrypt_type.unwrap_or_default() {
        "" | "none" => Ok(sent == app_password),
        "md5" => Ok(md5_hex(app_password).eq_ignore_ascii_case(sent)),
        _ => Err(()),
    }
}

pub(super) fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpadded base64url.
pub(super) fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// jjwt's time format in expiry messages: UTC, seconds, `Z`.
fn jwt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// 5.x `OpenApiInterceptor` on `/openApi/**` (§2.1, §2.3).
pub(super) async fn openapi_interceptor(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    if !sim.v5() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let exempt = path.ends_with("/assert") || path.ends_with("/authApp");
    if sim.cfg.openapi_auth {
        if exempt {
            return next.run(req).await;
        }
        if let Err(rejection) = sim.check_app_token(req.headers(), sim.time()) {
            return rejection.into_response();
        }
    }
    // Set before the controller runs: "passed" says nothing about the body.
    let mut response = next.run(req).await;
    response.headers_mut().insert(AUTH_PASSED, HeaderValue::from_static("true"));
    response
}

/// `/openApi/authApp` (5.1.x): a `PowerResultDTO` on success and failure, raw messages.
pub(super) async fn auth_app(State(sim): State<Simulator>, req: Request) -> Response {
    let result = |success: bool, data: Value, message: Option<&str>, code: Option<&str>| {
        Json(json::power_result(success, data, message, code)).into_response()
    };
    let (_, body) = json_body(req).await;
    let body = match body {
        Ok(body) => body,
        Err(message) => return result(false, Value::Null, Some(&message), None),
    };
    let name = body.get("appName").and_then(Value::as_str);
    if name != Some(sim.cfg.app_name.as_str()) {
        return result(false, Value::Null, Some(&format!("INVALID_APP:{}", text_or_null(name))), Some("-402"));
    }
    let password = body.get("encryptedPassword").and_then(Value::as_str);
    let encrypt_type = body.get("encryptType").and_then(Value::as_str);
    if password.is_none() {
        return result(false, Value::Null, Some("NullPointerException: "), Some("-500"));
    }
    match password_matches(&sim.cfg.app_password, password, encrypt_type) {
        Err(()) => {
            let message = format!("INVALID_REQUEST:unknown_encryptType:{}", encrypt_type.unwrap_or_default());
            result(false, Value::Null, Some(&message), Some("-300"))
        }
        Ok(false) => result(false, Value::Null, Some("INCORRECT_PASSWORD"), Some("-400")),
        Ok(true) => {
            let now = sim.time();
            let expires_at = now.saturating_add(sim.cfg.token_ttl_ms);
            let jti = format!("{:032x}", rand::random::<u128>());
            let claims = json::app_token_claims(password, sim.cfg.app_id, encrypt_type, expires_at / 1000, &jti);
            let token = Simulator::issue_token(&claims);
            sim.shared().app_tokens.insert(
                token.clone(),
                AppToken {
                    app_id: sim.cfg.app_id,
                    password: password.map(str::to_owned),
                    encrypt_type: encrypt_type.map(str::to_owned),
                    expires_at,
                },
            );
            result(true, json::app_token(sim.cfg.app_id, &token), None, None)
        }
    }
}

/// `POST /auth/thirdPartyLoginDirect` (5.x): plain `ResultDTO`, raw messages.
pub(super) async fn console_login(State(sim): State<Simulator>, req: Request) -> Response {
    let fail = |message: &str| Json(json::plain_fail(message)).into_response();
    let (_, body) = json_body(req).await;
    let body = match body {
        Ok(body) => body,
        Err(m) => return sim.fail(&m, None),
    };
    let login_type = body.get("loginType").and_then(Value::as_str).unwrap_or_default();
    if login_type != "PWJB" {
        return fail(&format!("INVALID_REQUEST:can't find ThirdPartyLoginService by type: {login_type}"));
    }
    let origin = body.get("originParams").and_then(Value::as_str).unwrap_or_default();
    if origin.is_empty() {
        return fail("can't find login Info");
    }
    let params: Value = serde_json::from_str(origin).unwrap_or(Value::Null);
    let (Some(username), Some(password)) =
        (params.get("username").and_then(Value::as_str), params.get("password").and_then(Value::as_str))
    else {
        return fail("INVALID_REQUEST");
    };
    if username != sim.cfg.console_username {
        return fail("UserNotExist");
    }
    if password != sim.cfg.console_password {
        return fail("password is incorrect");
    }
    let expires_at = sim.time().saturating_add(sim.cfg.token_ttl_ms);
    let jti = format!("{:032x}", rand::random::<u128>());
    let token =
        Simulator::issue_token(&json::console_token_claims(username, &md5_hex(password), expires_at / 1000, &jti));
    sim.shared().console_tokens.insert(token.clone(), ConsoleToken { username: username.to_owned(), expires_at });
    let mut response = ok(json::console_user(username, Some(&token)));
    // Set but never read by the server (that code is commented out).
    if let Ok(cookie) = HeaderValue::from_str(&format!("PowerJwt={token}; Path=/")) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `GET /auth/ifLogin` (5.x): the user, or `data: null` without a valid JWT.
pub(super) async fn if_login(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    match sim.console_user(&headers, sim.time()) {
        Some(user) => ok(json::console_user(&user, None)),
        None => ok(Value::Null),
    }
}
