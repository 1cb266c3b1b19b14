//! The simulated PowerJob server over HTTP: axum routes around `Arc<Mutex<SimCore>>` with
//! the wall clock, the 5.x OpenAPI token and console JWT checks, request counters and
//! fault injection.
//!
//! Every body is written here with `serde_json::json!`, exactly as `docs/powerjob-protocol.md`
//! §0–§4 and the fixtures show it: `{success, data, message}` envelopes with HTTP 200 for
//! failures too, `code` on 5.x errors only, raw messages where the server writes them
//! raw, Spring's 404 JSON for unmapped paths, form parameters (query string or
//! urlencoded body) for the id-taking endpoints and JSON bodies for the object-taking ones.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::core::{iso, LogFile, SimConfig, SimCore, StringPage, Version, PREPARING, SERVER_EXCEPTION};

/// Response header of the 5.x OpenAPI interceptor (§2.1).
const AUTH_PASSED: &str = "X-POWERJOB-AUTH-PASSED";
/// Request headers of the 5.x OpenAPI token (§2.1).
const APP_ID_HEADER: &str = "X-POWERJOB-APP-ID";
const TOKEN_HEADER: &str = "X-POWERJOB-ACCESS-TOKEN";
/// Console JWT headers, 5.1.x name first, then the legacy 5.0.x one (§4.9).
const CONSOLE_JWT_HEADERS: [&str; 2] = ["PowerJwt", "Power_jwt"];
/// The built-in global admin of the 5.x account system.
const GLOBAL_ADMIN: &str = "ADMIN";
/// Largest request body read (the real server has no reason to get more from a client).
const MAX_BODY: usize = 1 << 20;
/// What a proxy answers when the server behind it is down.
const PROXY_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// A fault to inject into the next matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only requests to this path (e.g. `"/instance/log"`); `None`: any path.
    pub path: Option<String>,
    /// What happens instead of (or before) the normal answer.
    pub kind: FaultKind,
    /// How many requests it affects; it is removed after that. `u32::MAX` ([`Fault::always`]):
    /// every request, until [`Simulator::clear_faults`].
    pub times: u32,
}

impl Fault {
    /// `kind` for the next `times` requests to `path` (`None`: any path).
    pub fn new(path: Option<&str>, kind: FaultKind, times: u32) -> Self {
        Fault { path: path.map(str::to_owned), kind, times }
    }

    /// `kind` for every request to `path` (`None`: any path) until the faults are cleared.
    /// Faults apply in the order queued, one per request, so it shadows the faults queued
    /// after it for the same requests.
    pub fn always(path: Option<&str>, kind: FaultKind) -> Self {
        Fault::new(path, kind, u32::MAX)
    }
}

/// The kinds of fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 500 with Spring Boot's error JSON.
    Http500,
    /// The normal answer, this much later.
    Delay(Duration),
    /// Close the TCP connection without answering.
    Reset,
    /// The "being prepared" placeholder for `/instance/log` (other paths skip it).
    Preparing,
    /// The "oms-server execution exception" placeholder for `/instance/log` (other
    /// paths skip it).
    ServerException,
    /// A proxy's 502 HTML page.
    HtmlError,
    /// 200 with a truncated JSON body.
    NotJson,
    /// Connection refused-like: [`FaultKind::Reset`] for every request while present;
    /// `times` counts requests.
    Down,
    /// No answer for this long, then the connection is closed without a response (a
    /// hanging server or proxy whose idle timeout fires): [`FaultKind::Reset`], late.
    Hang(Duration),
    /// `/instance/log` only (other paths skip it): the real answer, with a success
    /// page's `totalPages` replaced by this value. Pages past the real end answer
    /// `data: ""` as they do for any index past the end, with the same absurd count.
    TotalPages(u64),
}

/// An issued `/openApi/authApp` token.
#[derive(Clone, Debug)]
struct AppToken {
    app_id: i64,
    /// `encryptedPassword` as sent, re-checked against the app on every call.
    password: Option<String>,
    encrypt_type: Option<String>,
    expires_at: i64,
}

/// An issued console login token.
#[derive(Clone, Debug)]
struct ConsoleToken {
    username: String,
    expires_at: i64,
}

/// Mutable HTTP-side state, apart from the core.
#[derive(Debug, Default)]
struct Shared {
    faults: VecDeque<Fault>,
    counters: HashMap<String, u64>,
    app_tokens: HashMap<String, AppToken>,
    console_tokens: HashMap<String, ConsoleToken>,
    /// This server's own `host:port` as `downloadLogUrl` names it (§4.8).
    local_address: Option<String>,
}

/// The simulated server: cheap to clone, every clone shares the same state.
#[derive(Clone)]
pub struct Simulator {
    cfg: Arc<SimConfig>,
    core: Arc<Mutex<SimCore>>,
    shared: Arc<Mutex<Shared>>,
}

/// A simulator serving on a local port; the server stops when this is dropped.
pub struct SimHandle {
    /// The simulator, for scripting and fault injection (also reachable through `Deref`).
    pub sim: Simulator,
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// Base URL, `"http://127.0.0.1:port"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections (same as dropping the handle).
    pub fn shutdown(self) {}
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Deref for SimHandle {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Simulator {
    /// A simulator with a fresh [`SimCore`].
    pub fn new(cfg: SimConfig) -> Self {
        Simulator {
            cfg: Arc::new(cfg.clone()),
            core: Arc::new(Mutex::new(SimCore::new(cfg))),
            shared: Arc::new(Mutex::new(Shared::default())),
        }
    }

    /// Starts a simulator on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn spawn(cfg: SimConfig) -> std::io::Result<SimHandle> {
        Simulator::new(cfg).serve(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves this simulator on `addr` (port 0: any free port).
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        // Like the JVM property `powerjob.network.local.address`, or else the address
        // the server detects for itself (here: the one it listens on).
        self.shared().local_address.get_or_insert_with(|| addr.to_string());
        let router = self.router();
        let task = tokio::spawn(async move {
            // Only returns on an accept error that axum cannot recover from.
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(%error, "PowerJob simulator stopped");
            }
        });
        Ok(SimHandle { sim: self, addr, task })
    }

    /// The wall clock, epoch ms.
    pub fn now() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Runs `f` on the core with the current time (scripting from tests).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut SimCore, i64) -> R) -> R {
        let mut core = self.core.lock().expect("sim core poisoned");
        f(&mut core, self.time())
    }

    /// This server's now, epoch ms: [`SimConfig::clock`] (the wall clock, [`Simulator::now`],
    /// unless the test gave its own).
    pub fn time(&self) -> i64 {
        self.cfg.clock.custom().map_or_else(Self::now, |now| now())
    }

    /// Queues a fault; faults apply in the order they were queued.
    pub fn inject(&self, fault: Fault) {
        self.shared().faults.push_back(fault);
    }

    /// Runs `timingCheck` now: the old rows of frequent jobs' live logs are deleted
    /// ([`SimCore::clean_now`]); returns how many.
    pub fn clean_now(&self) -> usize {
        self.with_core(|c, now| c.clean_now(now))
    }

    /// Restarts the simulated server now ([`SimCore::restart`]); the HTTP side (tokens,
    /// faults, counters) is not affected.
    pub fn restart(&self) {
        self.with_core(|c, now| c.restart(now));
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.shared().faults.clear();
    }

    /// Requests received for `path`, e.g. `"/instance/log"` (faulted ones included).
    pub fn requests(&self, path: &str) -> u64 {
        self.shared().counters.get(path).copied().unwrap_or(0)
    }

    /// Sets every request counter to zero.
    pub fn reset_counters(&self) {
        self.shared().counters.clear();
    }

    /// Sets the `host:port` this server names as its own in `downloadLogUrl` (§4.8), as
    /// `powerjob.network.local.address` does: e.g. another server of the cluster's, to
    /// play a server that does not hold the logs it is asked for.
    pub fn set_local_address(&self, host_port: &str) {
        self.shared().local_address = Some(host_port.to_owned());
    }

    /// Invalidates every issued app and console token (as if the signing secret changed).
    pub fn revoke_tokens(&self) {
        let mut shared = self.shared();
        shared.app_tokens.clear();
        shared.console_tokens.clear();
    }

    /// The routes of a PowerJob 4.3.x or 5.1.x server.
    pub fn router(&self) -> Router {
        let v5 = self.cfg.version == Version::V5;
        let mut open = Router::new()
            .route("/openApi/assert", only(post(assert_app)))
            .route("/openApi/runJob", only(post(run_job)))
            .route("/openApi/stopInstance", only(post(stop_instance)))
            .route("/openApi/cancelInstance", only(post(cancel_instance)))
            .route("/openApi/retryInstance", only(post(retry_instance)))
            .route("/openApi/fetchInstanceStatus", only(post(fetch_instance_status)))
            .route("/openApi/fetchInstanceInfo", only(post(fetch_instance_info)))
            .route("/openApi/fetchJob", only(post(fetch_job)))
            .route("/openApi/queryInstance", only(post(query_instance)));
        if v5 {
            open = open.route("/openApi/authApp", only(post(auth_app)));
        }
        let open = open.route_layer(middleware::from_fn_with_state(self.clone(), openapi_interceptor));
        let mut router = Router::new()
            .merge(open)
            .route("/instance/log", only(get(instance_log)))
            .route("/instance/downloadLogUrl", only(get(download_log_url)))
            .route("/instance/downloadLog", only(get(download_log)));
        if v5 {
            router = router
                .route("/auth/thirdPartyLoginDirect", only(post(console_login)))
                .route("/auth/ifLogin", only(get(if_login)));
        }
        router
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(self.clone(), count_and_inject))
            .with_state(self.clone())
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("sim state poisoned")
    }

    fn v5(&self) -> bool {
        self.cfg.version == Version::V5
    }

    /// A failure envelope: `code` only on 5.x (the `PowerResultDTO` of the exception
    /// handler), with the `<SimpleClassName>: <message>` text the caller built.
    fn fail(&self, message: &str, code: Option<&str>) -> Response {
        if self.v5() {
            Json(json!({"success": false, "data": null, "message": message, "code": code})).into_response()
        } else {
            Json(json!({"success": false, "data": null, "message": message})).into_response()
        }
    }

    fn failure(&self, failure: Failure) -> Response {
        self.fail(&failure.message, failure.code)
    }

    /// Takes the first queued fault that applies to `path`, counting one use of it.
    fn take_fault(&self, path: &str) -> Option<FaultKind> {
        let mut shared = self.shared();
        shared.faults.retain(|f| f.times > 0);
        let pos = shared.faults.iter().position(|f| {
            let path_matches = f.path.as_deref().is_none_or(|p| p == path);
            let applies = match f.kind {
                FaultKind::Preparing | FaultKind::ServerException | FaultKind::TotalPages(_) => path == "/instance/log",
                _ => true,
            };
            path_matches && applies
        })?;
        let fault = shared.faults.get_mut(pos)?;
        if fault.times != u32::MAX {
            fault.times -= 1;
        }
        let kind = fault.kind.clone();
        if fault.times == 0 {
            shared.faults.remove(pos);
        }
        Some(kind)
    }

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
    fn console_user(&self, headers: &HeaderMap, now: i64) -> Option<String> {
        let token = CONSOLE_JWT_HEADERS.iter().find_map(|h| present_header(headers, h))?;
        let issued = self.shared().console_tokens.get(&token).cloned()?;
        (now < issued.expires_at && issued.username == self.cfg.console_username).then_some(issued.username)
    }

    /// 5.x `PowerJobAuthInterceptor` for `@ApiPermission(roleScope = APP)` endpoints.
    /// Only [`GLOBAL_ADMIN`] holds a role; any other user is denied.
    fn check_console(&self, headers: &HeaderMap, now: i64) -> Result<(), Failure> {
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

    fn console_user_json(username: &str, token: Option<&str>) -> Value {
        json!({
            "id": 1,
            "username": format!("PWJB_{username}"),
            "phone": null,
            "email": null,
            "webHook": null,
            "extra": null,
            "jwtToken": token,
        })
    }
}

/// A failure envelope to be written: the exception text and the 5.x `code`.
struct Failure {
    message: String,
    code: Option<&'static str>,
}

impl Failure {
    fn new(message: &str, code: Option<&'static str>) -> Self {
        Failure { message: message.to_owned(), code }
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
        let body = json!({"success": false, "message": self.message, "code": self.code}).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        headers.insert(AUTH_PASSED, HeaderValue::from_static("false"));
        response
    }
}

/// A header value, with `null`/`undefined` (any case) and blanks counted as absent.
fn present_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    let absent = value.is_empty() || value.eq_ignore_ascii_case("null") || value.eq_ignore_ascii_case("undefined");
    (!absent).then(|| value.to_owned())
}

/// `/authApp` password check: `Ok(matches)` or `Err` for an unknown encrypt type.
fn password_matches(app_password: &str, sent: Option<&str>, encrypt_type: Option<&str>) -> Result<bool, ()> {
    let sent = sent.unwrap_or_default();
    match encrypt_type.unwrap_or_default() {
        "" | "none" => Ok(sent == app_password),
        "md5" => Ok(md5_hex(app_password).eq_ignore_ascii_case(sent)),
        _ => Err(()),
    }
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpadded base64url.
fn b64url(bytes: &[u8]) -> String {
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

/// A mapped path: the wrong method is Spring's `HttpRequestMethodNotSupportedException`,
/// handled by PowerJob's exception handler (a failure envelope with HTTP 200).
fn only(route: MethodRouter<Simulator>) -> MethodRouter<Simulator> {
    route.fallback(wrong_method)
}

async fn wrong_method(State(sim): State<Simulator>, method: Method) -> Response {
    sim.fail(&format!("HttpRequestMethodNotSupportedException: Request method '{method}' not supported"), None)
}

/// Spring Boot's default error body.
fn spring_error(status: StatusCode, path: &str) -> Response {
    let body = json!({
        "timestamp": iso(Simulator::now()),
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "path": path,
    });
    (status, Json(body)).into_response()
}

async fn not_found(req: Request) -> Response {
    spring_error(StatusCode::NOT_FOUND, req.uri().path())
}

/// Outermost layer: counts every request and plays the first matching fault.
async fn count_and_inject(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    *sim.shared().counters.entry(path.clone()).or_default() += 1;
    match sim.take_fault(&path) {
        None => next.run(req).await,
        Some(FaultKind::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(req).await
        }
        Some(FaultKind::Reset | FaultKind::Down) => reset(),
        Some(FaultKind::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            reset()
        }
        Some(FaultKind::TotalPages(total)) => with_total_pages(next.run(req).await, total).await,
        Some(FaultKind::Http500) => spring_error(StatusCode::INTERNAL_SERVER_ERROR, &path),
        Some(FaultKind::Preparing) => ok(StringPage::simple(PREPARING).to_json()),
        Some(FaultKind::ServerException) => {
            ok(StringPage::simple(format!("{SERVER_EXCEPTION}NullPointerException: ")).to_json())
        }
        Some(FaultKind::HtmlError) => {
            (StatusCode::BAD_GATEWAY, [(CONTENT_TYPE, "text/html")], PROXY_502).into_response()
        }
        Some(FaultKind::NotJson) => {
            ([(CONTENT_TYPE, "application/json")], r#"{"success":true,"data":{"index":0,"totalPa"#).into_response()
        }
    }
}

/// Closes the connection without writing a response.
fn reset() -> Response {
    // Unwinding out of the connection task makes hyper drop the socket without writing a
    // response; `resume_unwind` skips the panic hook, so nothing is printed. (Called
    // through `Router::oneshot`, this unwinds into the caller.)
    std::panic::resume_unwind(Box::new("simulated connection reset"))
}

/// `response` with `data.totalPages` set to `total` if it is a success page; any other
/// answer (a failure envelope, a 5.x auth error) as it was.
async fn with_total_pages(response: Response, total: u64) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return spring_error(StatusCode::INTERNAL_SERVER_ERROR, "/instance/log");
    };
    let mut value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, Body::from(bytes)),
    };
    let is_page = value["success"] == true && value["data"].get("totalPages").is_some();
    if !is_page {
        return Response::from_parts(parts, Body::from(bytes));
    }
    value["data"]["totalPages"] = json!(total);
    Json(value).into_response()
}

/// 5.x `OpenApiInterceptor` on `/openApi/**` (§2.1, §2.3).
async fn openapi_interceptor(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
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

/// A success envelope (plain `ResultDTO`: no `code`).
fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data, "message": null})).into_response()
}

/// Request parameters as Spring binds un-annotated controller arguments: the query
/// string, then an `application/x-www-form-urlencoded` body (never a JSON body). The
/// first value of a name wins.
struct Params(Vec<(String, String)>);

impl Params {
    async fn read(req: Request) -> (HeaderMap, Self) {
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
    fn string(&self, name: &str) -> Option<String> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// A `Long` argument: `Ok(None)` when absent or empty, `Err(message)` for Spring's
    /// type-mismatch failure.
    fn long(&self, name: &str) -> Result<Option<i64>, String> {
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
async fn json_body(req: Request) -> (HeaderMap, Result<Value, String>) {
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

fn text_or_null(v: Option<&str>) -> String {
    v.unwrap_or("null").to_owned()
}

fn long_or_null(v: Option<i64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

// --- OpenAPI ---------------------------------------------------------------------------

async fn assert_app(State(sim): State<Simulator>, req: Request) -> Response {
    let (_, p) = Params::read(req).await;
    let name = p.string("appName");
    let password = p.string("password");
    let known = name.as_deref() == Some(sim.cfg.app_name.as_str());
    match (sim.v5(), known) {
        (false, false) => sim.fail(
            &format!("PowerJobException: can't find appInfo by appName: {}", text_or_null(name.as_deref())),
            None,
        ),
        (true, false) => {
            sim.fail(&format!("PowerJobException: INVALID_APP:{}", text_or_null(name.as_deref())), Some("-402"))
        }
        // 5.x calls `password.equals(...)` on the argument.
        (true, true) if password.is_none() => sim.fail("NullPointerException: ", None),
        (v5, true) if password.as_deref() != Some(sim.cfg.app_password.as_str()) => {
            if v5 {
                sim.fail("PowerJobException: INCORRECT_PASSWORD", Some("-400"))
            } else {
                sim.fail("PowerJobException: password error!", None)
            }
        }
        _ => ok(json!(sim.cfg.app_id)),
    }
}

/// `/openApi/authApp` (5.1.x): a `PowerResultDTO` on success and failure, raw messages.
async fn auth_app(State(sim): State<Simulator>, req: Request) -> Response {
    let result = |success: bool, data: Value, message: Option<&str>, code: Option<&str>| {
        Json(json!({"success": success, "data": data, "message": message, "code": code})).into_response()
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
            let token = Simulator::issue_token(&json!({
                "password": password,
                "appId": sim.cfg.app_id,
                "encryptType": encrypt_type,
                "sub": "PowerJob",
                "exp": expires_at / 1000,
                "jti": format!("{:032x}", rand::random::<u128>()),
            }));
            sim.shared().app_tokens.insert(
                token.clone(),
                AppToken {
                    app_id: sim.cfg.app_id,
                    password: password.map(str::to_owned),
                    encrypt_type: encrypt_type.map(str::to_owned),
                    expires_at,
                },
            );
            result(true, json!({"appId": sim.cfg.app_id, "token": token, "extra": null}), None, None)
        }
    }
}

/// The ownership check of `runJob`/`fetchJob`: `Err` is the failure envelope.
fn check_job(sim: &Simulator, p: &Params) -> Result<i64, Failure> {
    let job_id = p.long("jobId").map_err(|m| Failure::new(&m, None))?;
    let app_id = p.long("appId").map_err(|m| Failure::new(&m, None))?;
    let exists = job_id.is_some_and(|id| sim.cfg.jobs.iter().any(|j| j.id == id));
    match job_id {
        Some(job_id) if exists => {
            if app_id == Some(sim.cfg.app_id) {
                Ok(job_id)
            } else {
                let text = format!(
                    "IllegalArgumentException: this job is not belong to the app whose appId is {}",
                    long_or_null(app_id)
                );
                Err(Failure::new(&text, None))
            }
        }
        _ => Err(Failure::new(
            &format!("IllegalArgumentException: can't find job by jobId: {}", long_or_null(job_id)),
            None,
        )),
    }
}

async fn run_job(State(sim): State<Simulator>, req: Request) -> Response {
    let (_, p) = Params::read(req).await;
    let job_id = match check_job(&sim, &p) {
        Ok(id) => id,
        Err(failure) => return sim.failure(failure),
    };
    let delay = match p.long("delay") {
        Ok(delay) => delay.unwrap_or(0),
        Err(m) => return sim.fail(&m, None),
    };
    let params = p.string("instanceParams");
    match sim.with_core(|c, now| c.run_job(job_id, params, delay, now)) {
        Ok(id) => ok(json!(id)),
        Err(m) => sim.fail(&m, None),
    }
}

async fn fetch_job(State(sim): State<Simulator>, req: Request) -> Response {
    let (_, p) = Params::read(req).await;
    match check_job(&sim, &p) {
        Ok(job_id) => ok(sim.with_core(|c, _| c.job_info(job_id)).unwrap_or(Value::Null)),
        Err(failure) => sim.failure(failure),
    }
}

/// `checkInstanceIdValid` then one of stop/cancel/retry.
async fn instance_op(sim: Simulator, req: Request, op: fn(&mut SimCore, i64, i64) -> Result<(), String>) -> Response {
    let (_, p) = Params::read(req).await;
    let (id, app_id) = match (p.long("instanceId"), p.long("appId")) {
        (Ok(id), Ok(app_id)) => (id, app_id),
        (Err(m), _) | (_, Err(m)) => return sim.fail(&m, None),
    };
    let exists = id.is_some_and(|id| sim.with_core(|c, _| c.has_instance(id)));
    let Some(id) = id.filter(|_| exists) else {
        return sim
            .fail(&format!("IllegalArgumentException: can't find instance by instanceId: {}", long_or_null(id)), None);
    };
    if app_id != Some(sim.cfg.app_id) {
        let text = format!(
            "IllegalArgumentException: instance is not belong to the app whose appId is {}",
            long_or_null(app_id)
        );
        return sim.fail(&text, None);
    }
    match sim.with_core(|c, now| op(c, id, now)) {
        Ok(()) => ok(Value::Null),
        Err(m) => sim.fail(&m, None),
    }
}

async fn stop_instance(State(sim): State<Simulator>, req: Request) -> Response {
    instance_op(sim, req, SimCore::stop_instance).await
}

async fn cancel_instance(State(sim): State<Simulator>, req: Request) -> Response {
    instance_op(sim, req, SimCore::cancel_instance).await
}

async fn retry_instance(State(sim): State<Simulator>, req: Request) -> Response {
    instance_op(sim, req, SimCore::retry_instance).await
}

/// `fetchInstanceStatus`/`fetchInstanceInfo`: no ownership check, no forwarding.
async fn instance_query(sim: Simulator, req: Request, status_only: bool) -> Response {
    let (_, p) = Params::read(req).await;
    let id = match p.long("instanceId") {
        Ok(id) => id,
        Err(m) => return sim.fail(&m, None),
    };
    let info = id.and_then(|id| sim.with_core(|c, now| c.instance_info(id, now)));
    match info {
        Some(info) if status_only => ok(info["status"].clone()),
        Some(info) => ok(info),
        None => sim.fail(&format!("IllegalArgumentException: invalid instanceId: {}", long_or_null(id)), None),
    }
}

async fn fetch_instance_status(State(sim): State<Simulator>, req: Request) -> Response {
    instance_query(sim, req, true).await
}

async fn fetch_instance_info(State(sim): State<Simulator>, req: Request) -> Response {
    instance_query(sim, req, false).await
}

/// `/openApi/queryInstance`: a paged query on 5.1.1; on 4.x the abstract `PowerQuery`
/// body cannot be bound, so every call fails (§2.11).
async fn query_instance(State(sim): State<Simulator>, req: Request) -> Response {
    if !sim.v5() {
        return sim.fail(
            "HttpMessageConversionException: Type definition error: [simple type, class tech.powerjob.common.PowerQuery]; \
             nested exception is com.fasterxml.jackson.databind.exc.InvalidDefinitionException: Cannot construct \
             instance of `tech.powerjob.common.PowerQuery` (no Creators, like default constructor, exist): abstract types \
             either need to be mapped to concrete types, have custom deserializer, or contain additional type information",
            None,
        );
    }
    let (_, body) = json_body(req).await;
    let q = match body {
        Ok(q) => q,
        Err(m) => return sim.fail(&m, None),
    };
    let eq = |field: &str, info: &Value, key: &str| q.get(field).and_then(Value::as_i64).is_none_or(|v| info[key] == v);
    let statuses: Option<Vec<i64>> =
        q.get("statusIn").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_i64).collect());
    let mut items: Vec<Value> = sim
        .with_core(|c, now| c.instances_info(now))
        .into_iter()
        .filter(|i| eq("appIdEq", i, "appId") && eq("jobIdEq", i, "jobId") && eq("instanceIdEq", i, "instanceId"))
        .filter(|i| statuses.as_ref().is_none_or(|s| i["status"].as_i64().is_some_and(|v| s.contains(&v))))
        .collect();
    // `Sort.by(sortBy)` is ascending whatever `asc` says; ids grow with creation time.
    if q.get("sortBy").and_then(Value::as_str).is_some() {
        items.sort_by_key(|i| i["instanceId"].as_i64());
    }
    let index = q.get("index").and_then(Value::as_i64).unwrap_or(0).max(0);
    let page_size = q.get("pageSize").and_then(Value::as_i64).unwrap_or(10).max(1);
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let skip = usize::try_from(index.saturating_mul(page_size)).unwrap_or(usize::MAX);
    let data: Vec<Value> =
        items.into_iter().skip(skip).take(usize::try_from(page_size).unwrap_or(usize::MAX)).collect();
    ok(json!({
        "index": index,
        "pageSize": page_size,
        "totalPages": (total + page_size - 1) / page_size,
        "totalItems": total,
        "data": data,
    }))
}

// --- console ---------------------------------------------------------------------------

/// The `appId` checks of the `@DesignateServer` aspect: `Err` is the failure envelope.
fn check_log_app(sim: &Simulator, p: &Params) -> Result<(), Failure> {
    match p.long("appId") {
        Err(m) => Err(Failure::new(&m, None)),
        Ok(None) => Err(Failure::new("NumberFormatException: For input string: \"null\"", None)),
        Ok(Some(id)) if id != sim.cfg.app_id => Err(Failure::new("PowerJobException: can't find app info", None)),
        Ok(Some(_)) => Ok(()),
    }
}

/// `GET /instance/log` (§4.1–§4.6; 5.x: console JWT and OPS on the app).
async fn instance_log(State(sim): State<Simulator>, req: Request) -> Response {
    let (headers, p) = Params::read(req).await;
    let now = sim.time();
    if let Err(failure) = sim.check_console(&headers, now) {
        return sim.failure(failure);
    }
    if let Err(failure) = check_log_app(&sim, &p) {
        return sim.failure(failure);
    }
    match (p.long("instanceId"), p.long("index")) {
        (Err(m), _) | (_, Err(m)) => sim.fail(&m, None),
        (Ok(Some(id)), Ok(Some(index))) => ok(sim.with_core(|c, now| c.log_page(id, index, now)).to_json()),
        // Unboxing a null `Long` inside the service: caught and turned into a page.
        _ => ok(StringPage::simple(format!("{SERVER_EXCEPTION}NullPointerException: ")).to_json()),
    }
}

/// `GET /instance/downloadLogUrl`: the designated server's own address (§4.7, §4.8):
/// its local address, never the `Host` the client used (that only stands in when the
/// router is used without [`Simulator::serve`]).
async fn download_log_url(State(sim): State<Simulator>, req: Request) -> Response {
    let (headers, p) = Params::read(req).await;
    if let Err(failure) = sim.check_console(&headers, sim.time()) {
        return sim.failure(failure);
    }
    if let Err(failure) = check_log_app(&sim, &p) {
        return sim.failure(failure);
    }
    let id = match p.long("instanceId") {
        Ok(id) => id,
        Err(m) => return sim.fail(&m, None),
    };
    let local = sim.shared().local_address.clone();
    let host = local.or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned));
    let host = host.unwrap_or_else(|| "127.0.0.1:7700".to_owned());
    ok(json!(format!("http://{host}/instance/downloadLog?instanceId={}", long_or_null(id))))
}

/// `GET /instance/downloadLog`: no auth in either version, padded body (§4.8).
async fn download_log(State(sim): State<Simulator>, req: Request) -> Response {
    let (_, p) = Params::read(req).await;
    let id = match p.long("instanceId") {
        Ok(Some(id)) => id,
        Ok(None) => return sim.fail("NullPointerException: ", None),
        Err(m) => return sim.fail(&m, None),
    };
    match sim.with_core(|c, now| c.download_log_file(id, now)) {
        Some((kind, body)) => {
            let suffix = match kind {
                LogFile::Temporary => "temporary",
                LogFile::Stable => "stable",
            };
            let disposition = format!("attachment;filename={id}-{suffix}.log");
            let mut response = Body::from(body).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(CONTENT_DISPOSITION, value);
            }
            response
        }
        None => sim.fail("TimeoutException: ", None),
    }
}

/// `POST /auth/thirdPartyLoginDirect` (5.x): plain `ResultDTO`, raw messages.
async fn console_login(State(sim): State<Simulator>, req: Request) -> Response {
    let fail = |message: &str| Json(json!({"success": false, "data": null, "message": message})).into_response();
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
    let token = Simulator::issue_token(&json!({
        "username": format!("PWJB_{username}"),
        "encryptedToken": md5_hex(password),
        "sub": "PowerJob",
        "exp": expires_at / 1000,
        "jti": format!("{:032x}", rand::random::<u128>()),
    }));
    sim.shared().console_tokens.insert(token.clone(), ConsoleToken { username: username.to_owned(), expires_at });
    let mut response = ok(Simulator::console_user_json(username, Some(&token)));
    // Set but never read by the server (that code is commented out).
    if let Ok(cookie) = HeaderValue::from_str(&format!("PowerJwt={token}; Path=/")) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `GET /auth/ifLogin` (5.x): the user, or `data: null` without a valid JWT.
async fn if_login(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    match sim.console_user(&headers, sim.time()) {
        Some(user) => ok(Simulator::console_user_json(&user, None)),
        None => ok(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_fixture_header() {
        assert_eq!(b64url(br#"{"typ":"JWT","alg":"HS256"}"#), "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9");
        assert_eq!(b64url(b"a"), "YQ");
        assert_eq!(b64url(b"ab"), "YWI");
    }

    #[test]
    fn md5_of_password() {
        assert_eq!(md5_hex("password"), "5f4dcc3b5aa765d61d8327deb882cf99");
        assert_eq!(password_matches("password", Some("5F4DCC3B5AA765D61D8327DEB882CF99"), Some("md5")), Ok(true));
        assert_eq!(password_matches("password", Some("password"), None), Ok(true));
        assert_eq!(password_matches("password", Some("x"), Some("sha1")), Err(()));
    }

    use std::sync::Arc;

    use super::super::core::{Level, Record, SimJob, TimeExpression};
    use super::super::script::JobScript;

    async fn get_json(url: &str) -> Value {
        reqwest::get(url).await.expect("answer").json().await.expect("JSON")
    }

    async fn post_form(url: &str, form: &[(&str, &str)]) -> Value {
        let resp = reqwest::Client::new().post(url).form(form).send().await.expect("answer");
        resp.json().await.expect("JSON")
    }

    /// A live instance of job 12 with `n` lines.
    fn logged(sim: &Simulator, n: i64) -> i64 {
        sim.with_core(|c, now| {
            let id = c.create_instance(12, None, now);
            c.dispatch(id, now);
            c.set_running(id, now);
            let records = (0..n)
                .map(|i| Record {
                    log_time: now + i,
                    level: Level::Info,
                    content: format!("l{i}"),
                    worker: "w:1".into(),
                })
                .collect();
            c.deliver(id, records, now - 1);
            id
        })
    }

    #[tokio::test]
    async fn hang_answers_nothing_then_resets() {
        let sim = Simulator::spawn(SimConfig::default()).await.expect("binds");
        let url = format!("{}/instance/log?appId=1&instanceId=42&index=0", sim.url());
        sim.inject(Fault::new(Some("/instance/log"), FaultKind::Hang(Duration::from_millis(300)), 2));
        let started = std::time::Instant::now();
        let err = reqwest::get(&url).await.expect_err("no answer");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!err.is_timeout(), "closed, not timed out: {err}");
        // A client with a shorter read timeout gives up first.
        let quick = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().expect("client");
        assert!(quick.get(&url).send().await.expect_err("times out").is_timeout());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get_json(&url).await["data"]["totalPages"], 1);
        assert_eq!(sim.requests("/instance/log"), 3);
    }

    #[tokio::test]
    async fn absurd_total_pages_keep_the_real_data() {
        let sim = Simulator::spawn(SimConfig::default()).await.expect("binds");
        let id = logged(&sim, 150);
        let page = |index: u64| format!("{}/instance/log?appId=1&instanceId={id}&index={index}", sim.url());
        let real = get_json(&page(0)).await;
        assert_eq!(real["data"]["totalPages"], 2);
        sim.inject(Fault::always(Some("/instance/log"), FaultKind::TotalPages(1_000_000_000)));
        for _ in 0..3 {
            let faulty = get_json(&page(0)).await;
            assert_eq!(faulty["data"]["totalPages"], 1_000_000_000u64);
            assert_eq!(faulty["data"]["data"], real["data"]["data"]);
            assert_eq!(faulty["data"]["index"], 0);
        }
        let past = get_json(&page(7)).await;
        assert_eq!(past["data"], json!({"index": 7, "totalPages": 1_000_000_000u64, "data": ""}));
        // Other paths are not affected, nor are failure envelopes.
        let status_url = format!("{}/openApi/fetchInstanceStatus", sim.url());
        let info = post_form(&status_url, &[("instanceId", &id.to_string())]).await;
        assert_eq!(info["data"], 3);
        let failed = get_json(&format!("{}/instance/log?instanceId={id}&index=0", sim.url())).await;
        assert_eq!(failed["success"], false);
        assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::TotalPages(1_000_000_000)));
        sim.clear_faults();
        assert_eq!(get_json(&page(0)).await["data"]["totalPages"], 2);
    }

    /// Retry through the OpenAPI (§2.8, §6.11): the same id, `runningTimes` 2, the
    /// second run's lines while it runs, then the first run's stable file again.
    #[tokio::test]
    async fn retry_over_http_replays_and_then_serves_the_old_stable_file() {
        let script = JobScript::from_text("first\nsecond\nthird", 300, 4, "boom");
        let job = SimJob { id: 12, name: "j".into(), job_params: String::new(), script: Some(Arc::new(script)) };
        let cfg = SimConfig {
            log_cache_ms: 100,
            worker_flush_ms: 100,
            sync_delay_ms: 1_000,
            jobs: vec![job],
            ..SimConfig::default()
        };
        let sim = Simulator::spawn(cfg).await.expect("binds");
        let api = |path: &str| format!("{}/openApi/{path}", sim.url());
        let run = post_form(&api("runJob"), &[("appId", "1"), ("jobId", "12")]).await;
        let id = run["data"].as_i64().expect("instance id").to_string();
        let form = [("appId", "1"), ("instanceId", id.as_str())];
        let log_url = format!("{}/instance/log?appId=1&instanceId={id}&index=0", sim.url());
        let lines = |v: &Value| super::super::core::read_lines(v["data"]["data"].as_str().unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        let info = post_form(&api("fetchInstanceInfo"), &form).await;
        assert_eq!((info["data"]["status"].as_i64(), info["data"]["runningTimes"].as_i64()), (Some(4), Some(1)));
        let first = lines(&get_json(&log_url).await);
        assert_eq!(first.len(), 3);
        assert_eq!(post_form(&api("retryInstance"), &form).await["success"], true);
        let info = post_form(&api("fetchInstanceInfo"), &form).await;
        assert_eq!(info["data"]["instanceId"].to_string(), id);
        assert_eq!(info["data"]["finishedTime"], Value::Null);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let info = post_form(&api("fetchInstanceInfo"), &form).await;
        assert_eq!((info["data"]["status"].as_i64(), info["data"]["runningTimes"].as_i64()), (Some(4), Some(2)));
        let second = lines(&get_json(&log_url).await);
        assert_eq!(second.len(), 3);
        assert!(second.iter().all(|l| !first.contains(l)), "the second run's lines: {second:?}");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(lines(&get_json(&log_url).await), first);
    }

    #[tokio::test]
    async fn frequent_jobs_over_http() {
        let cfg = SimConfig { clean_age_ms: 1_000, ..SimConfig::default() }
            .with_time_expression(12, TimeExpression::FixedDelay(30_000));
        let sim = Simulator::spawn(cfg).await.expect("binds");
        let job = post_form(&format!("{}/openApi/fetchJob", sim.url()), &[("appId", "1"), ("jobId", "12")]).await;
        assert_eq!(
            (job["data"]["timeExpressionType"].as_i64(), job["data"]["timeExpression"].as_str()),
            (Some(4), Some("30000"))
        );
        let id = logged(&sim, 2);
        assert_eq!(sim.clean_now(), 0);
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        assert_eq!(sim.clean_now(), 2);
        sim.restart();
        assert!(!sim.with_core(|c, _| c.is_live(id)));
    }

    #[test]
    fn faults_are_consumed_in_order_and_by_path() {
        let sim = Simulator::new(SimConfig::default());
        sim.inject(Fault { path: Some("/instance/log".into()), kind: FaultKind::Http500, times: 2 });
        sim.inject(Fault { path: None, kind: FaultKind::Preparing, times: 1 });
        assert_eq!(sim.take_fault("/openApi/runJob"), None);
        assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::Http500));
        assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::Http500));
        assert_eq!(sim.take_fault("/instance/log"), Some(FaultKind::Preparing));
        assert_eq!(sim.take_fault("/instance/log"), None);
    }
}
