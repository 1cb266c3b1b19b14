//! The simulator's HTTP server: [`SimCore`] behind the wall clock, with PowerJob's
//! envelopes, 5.x authentication, request counters and injectable faults.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::core::{iso, SimConfig, SimCore, Version, PREPARING};

const AUTH_PASSED: &str = "X-POWERJOB-AUTH-PASSED";

/// What a fault does to a request.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// HTTP 500 with a Spring error body.
    Http500,
    /// Answer normally after a delay.
    Delay(Duration),
    /// Send the headers, then break the connection inside the body.
    Reset,
    /// `/instance/log` answers the "being prepared" placeholder.
    Preparing,
    /// `/instance/log` answers the "oms-server execution exception" placeholder.
    ServerException,
    /// A proxy's HTML 502 page.
    HtmlError,
    /// HTTP 200 with a truncated JSON body.
    NotJson,
}

/// A fault applied to the next `times` requests whose path matches.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Path to match (`None`: every path).
    pub path: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// How many requests it affects.
    pub times: u32,
}

#[derive(Default)]
struct Shared {
    faults: VecDeque<Fault>,
    counters: HashMap<String, u64>,
    /// token → (appId, expires at)
    app_tokens: HashMap<String, i64>,
    /// console JWT → expires at
    console_tokens: HashMap<String, i64>,
    token_seq: u64,
}

/// The simulated PowerJob server; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    core: Arc<Mutex<SimCore>>,
    shared: Arc<Mutex<Shared>>,
    version: Version,
    openapi_auth: bool,
}

/// A simulator serving on a loopback port; stops when dropped.
pub struct SimHandle {
    /// The simulator (scripting, faults, counters).
    pub sim: Simulator,
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl std::ops::Deref for SimHandle {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Simulator {
    /// A simulator with `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        let version = cfg.version;
        let openapi_auth = cfg.openapi_auth && version == Version::V5;
        Simulator {
            core: Arc::new(Mutex::new(SimCore::new(cfg))),
            shared: Arc::new(Mutex::new(Shared::default())),
            version,
            openapi_auth,
        }
    }

    /// Binds 127.0.0.1:0 and serves until the handle is dropped.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn spawn(cfg: SimConfig) -> std::io::Result<SimHandle> {
        Self::new(cfg).serve("127.0.0.1:0".parse().expect("literal address")).await
    }

    /// Serves on `addr` until the handle is dropped.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(SimHandle { sim: self, addr, _stop: stop })
    }

    /// The wall clock, epoch ms.
    pub fn now() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    /// Runs `f` on the core with the current time (for scripting from tests).
    pub fn with_core<R>(&self, f: impl FnOnce(&mut SimCore, i64) -> R) -> R {
        let mut core = self.core.lock().expect("sim core poisoned");
        f(&mut core, Self::now())
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().expect("sim state poisoned").faults.push_back(fault);
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.shared.lock().expect("sim state poisoned").faults.clear();
    }

    /// Requests received for `path` (faulted ones included).
    pub fn requests(&self, path: &str) -> u64 {
        self.shared.lock().expect("sim state poisoned").counters.get(path).copied().unwrap_or(0)
    }

    /// Sets every request counter to zero.
    pub fn reset_counters(&self) {
        self.shared.lock().expect("sim state poisoned").counters.clear();
    }

    /// Forgets every issued token (as if the signing secret changed).
    pub fn revoke_tokens(&self) {
        let mut s = self.shared.lock().expect("sim state poisoned");
        s.app_tokens.clear();
        s.console_tokens.clear();
    }

    /// The HTTP routes of PowerJob 4.3.x / 5.1.x.
    pub fn router(&self) -> Router {
        let mut r = Router::new()
            .route("/openApi/assert", post(assert_app))
            .route("/openApi/runJob", post(run_job))
            .route("/openApi/stopInstance", post(stop_instance))
            .route("/openApi/cancelInstance", post(cancel_instance))
            .route("/openApi/retryInstance", post(retry_instance))
            .route("/openApi/fetchInstanceStatus", post(fetch_instance_status))
            .route("/openApi/fetchInstanceInfo", post(fetch_instance_info))
            .route("/openApi/fetchJob", post(fetch_job))
            .route("/instance/log", get(instance_log))
            .route("/instance/downloadLogUrl", get(download_log_url))
            .route("/instance/downloadLog", get(download_log));
        if self.version == Version::V5 {
            r = r
                .route("/openApi/authApp", post(auth_app))
                .route("/auth/thirdPartyLoginDirect", post(console_login))
                .route("/auth/ifLogin", get(if_login));
        }
        r.fallback(spring_404)
            .method_not_allowed_fallback(wrong_method)
            .layer(axum::middleware::from_fn_with_state(self.clone(), openapi_auth))
            .layer(axum::middleware::from_fn_with_state(self.clone(), faults))
            .with_state(self.clone())
    }

    fn now_core(&self) -> std::sync::MutexGuard<'_, SimCore> {
        self.core.lock().expect("sim core poisoned")
    }

    /// `{"success":false,...}` in this version's shape.
    fn fail(&self, message: &str, code: Option<&str>) -> Response {
        let body = match self.version {
            Version::V4 => json!({ "success": false, "data": null, "message": message }),
            Version::V5 => json!({ "success": false, "data": null, "message": message, "code": code }),
        };
        Json(body).into_response()
    }

    fn token(&self, prefix: &str) -> String {
        let mut s = self.shared.lock().expect("sim state poisoned");
        s.token_seq += 1;
        let header = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";
        format!("{header}.{prefix}{:016x}.c2lt", s.token_seq.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

fn ok(data: Value) -> Response {
    Json(json!({ "success": true, "data": data, "message": null })).into_response()
}

fn param(form: &HashMap<String, String>, key: &str) -> Option<i64> {
    form.get(key).and_then(|v| v.parse().ok())
}

// ---- middleware ------------------------------------------------------------------

async fn faults(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let fault = {
        let mut s = sim.shared.lock().expect("sim state poisoned");
        *s.counters.entry(path.clone()).or_default() += 1;
        let pos = s.faults.iter().position(|f| f.path.as_deref().is_none_or(|p| p == path));
        pos.map(|pos| {
            let f = &mut s.faults[pos];
            f.times = f.times.saturating_sub(1);
            let kind = f.kind.clone();
            if f.times == 0 {
                s.faults.remove(pos);
            }
            kind
        })
    };
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        Some(FaultKind::Http500) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"timestamp": iso(Simulator::now()), "status": 500, "error": "Internal Server Error", "path": path})),
        )
            .into_response(),
        Some(FaultKind::Reset) => {
            let body = futures::stream::once(async { Err::<bytes::Bytes, _>(std::io::Error::other("connection reset")) });
            Response::builder()
                .header("content-type", "application/json")
                .header("content-length", "1000")
                .body(Body::from_stream(body))
                .expect("static response")
        }
        Some(FaultKind::HtmlError) => (
            StatusCode::BAD_GATEWAY,
            [("content-type", "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        )
            .into_response(),
        Some(FaultKind::NotJson) => ([("content-type", "application/json")], "{\"success\":true,\"data\":{\"index\":0,\"tot").into_response(),
        Some(FaultKind::Preparing) => ok(json!({ "index": 0, "totalPages": 1, "data": PREPARING })),
        Some(FaultKind::ServerException) => ok(json!({
            "index": 0, "totalPages": 1, "data": "oms-server execution exception, caused by NullPointerException: "
        })),
    }
}

/// 5.x OpenAPI interceptor (§2.1, §2.3): `X-POWERJOB-AUTH-PASSED` and token checks.
async fn openapi_auth(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if sim.version != Version::V5 || !path.starts_with("/openApi/") {
        return next.run(req).await;
    }
    let exempt = path.ends_with("/assert") || path.ends_with("/authApp");
    if !sim.openapi_auth {
        let mut resp = next.run(req).await;
        resp.headers_mut().insert(AUTH_PASSED, HeaderValue::from_static("true"));
        return resp;
    }
    if exempt {
        return next.run(req).await;
    }
    match check_app_token(&sim, req.headers()) {
        Ok(()) => {
            let mut resp = next.run(req).await;
            resp.headers_mut().insert(AUTH_PASSED, HeaderValue::from_static("true"));
            resp
        }
        Err((message, code)) => {
            let mut resp = Json(json!({ "success": false, "message": message, "code": code })).into_response();
            resp.headers_mut().insert(AUTH_PASSED, HeaderValue::from_static("false"));
            resp
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("null") && !v.eq_ignore_ascii_case("undefined"))
}

fn check_app_token(sim: &Simulator, headers: &HeaderMap) -> Result<(), (String, &'static str)> {
    let Some(app_id) = header(headers, "X-POWERJOB-APP-ID") else {
        return Err(("INVALID_REQUEST:lack_of_appId_in_header".into(), "-300"));
    };
    let Some(token) = header(headers, "X-POWERJOB-ACCESS-TOKEN") else {
        return Err(("OPEN_API_AUTH_FAILED:token_is_empty".into(), "-1002"));
    };
    let expires = sim.shared.lock().expect("sim state poisoned").app_tokens.get(token).copied();
    let Some(expires) = expires else {
        return Err((
            "INVALID_TOKEN:SignatureException: JWT signature does not match locally computed signature.".into(),
            "-401",
        ));
    };
    let now = Simulator::now();
    if now >= expires {
        let msg = format!(
            "TOKEN_EXPIRED:JWT expired at {}. Current time: {}, a difference of {} milliseconds.  Allowed clock skew: 0 milliseconds.",
            iso(expires),
            iso(now),
            now - expires
        );
        return Err((msg, "-403"));
    }
    let own = sim.now_core().config().app_id.to_string();
    if app_id != own {
        return Err(("INVALID_REQUEST:Inconsistent_appId_from_token_and_header".into(), "-300"));
    }
    Ok(())
}

// ---- OpenAPI ---------------------------------------------------------------------

async fn assert_app(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    let cfg = sim.now_core().config().clone();
    let name = form.get("appName").map(String::as_str).unwrap_or_default();
    let password = form.get("password");
    if name != cfg.app_name {
        return match sim.version {
            Version::V4 => sim.fail(&format!("PowerJobException: can't find appInfo by appName: {name}"), None),
            Version::V5 => sim.fail(&format!("PowerJobException: INVALID_APP:{name}"), Some("-402")),
        };
    }
    match (sim.version, password) {
        (Version::V5, None) => sim.fail("NullPointerException: ", None),
        (_, Some(p)) if *p != cfg.app_password => match sim.version {
            Version::V4 => sim.fail("PowerJobException: password error!", None),
            Version::V5 => sim.fail("PowerJobException: INCORRECT_PASSWORD", Some("-400")),
        },
        (Version::V4, None) => sim.fail("PowerJobException: password error!", None),
        _ => ok(json!(cfg.app_id)),
    }
}

async fn auth_app(State(sim): State<Simulator>, Json(body): Json<Value>) -> Response {
    let cfg = sim.now_core().config().clone();
    let fail = |message: &str, code: &str| {
        Json(json!({ "success": false, "data": null, "message": message, "code": code })).into_response()
    };
    let name = body["appName"].as_str().unwrap_or_default();
    if name != cfg.app_name {
        return fail(&format!("INVALID_APP:{name}"), "-402");
    }
    let given = body["encryptedPassword"].as_str().unwrap_or_default();
    let matches = match body["encryptType"].as_str().unwrap_or("none") {
        "md5" => given.eq_ignore_ascii_case(&format!("{:x}", Md5::digest(cfg.app_password.as_bytes()))),
        "none" | "" => given == cfg.app_password,
        other => return fail(&format!("INVALID_REQUEST:unknown_encryptType:{other}"), "-300"),
    };
    if !matches {
        return fail("INCORRECT_PASSWORD", "-400");
    }
    let token = sim.token("app");
    let expires = Simulator::now() + cfg.token_ttl_ms;
    sim.shared.lock().expect("sim state poisoned").app_tokens.insert(token.clone(), expires);
    Json(json!({ "success": true, "data": { "appId": cfg.app_id, "token": token, "extra": null }, "message": null, "code": null }))
        .into_response()
}

async fn run_job(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    let job = form.get("jobId").cloned().unwrap_or_else(|| "null".into());
    let Some(job_id) = job.parse::<i64>().ok() else {
        return sim.fail(&format!("IllegalArgumentException: can't find job by jobId: {job}"), None);
    };
    let app_id = param(&form, "appId");
    let own = sim.now_core().config().app_id;
    let params = form.get("instanceParams").cloned();
    let delay = param(&form, "delay").unwrap_or(0);
    let result = sim.now_core().run_job(job_id, params, delay, Simulator::now());
    match result {
        Err(message) => sim.fail(&message, None),
        Ok(_) if app_id != Some(own) => sim.fail(
            &format!(
                "IllegalArgumentException: this job is not belong to the app whose appId is {}",
                app_id.map_or("null".into(), |a| a.to_string())
            ),
            None,
        ),
        Ok(id) => ok(json!(id)),
    }
}

async fn stop_instance(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    instance_op(&sim, &form, |core, id, now| core.stop_instance(id, now))
}

async fn cancel_instance(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    instance_op(&sim, &form, |core, id, now| core.cancel_instance(id, now))
}

async fn retry_instance(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    instance_op(&sim, &form, |core, id, now| core.retry_instance(id, now))
}

fn instance_op(
    sim: &Simulator,
    form: &HashMap<String, String>,
    op: impl FnOnce(&mut SimCore, i64, i64) -> Result<(), String>,
) -> Response {
    let Some(id) = param(form, "instanceId") else {
        return sim.fail("IllegalArgumentException: can't find instance by instanceId: null", None);
    };
    let result = op(&mut sim.now_core(), id, Simulator::now());
    match result {
        Ok(()) => ok(Value::Null),
        Err(message) => sim.fail(&message, None),
    }
}

async fn fetch_instance_status(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    let id = param(&form, "instanceId");
    let status = id.and_then(|id| sim.now_core().instance_status(id, Simulator::now()));
    match status {
        Some(s) => ok(json!(s)),
        None => sim.fail(
            &format!("IllegalArgumentException: invalid instanceId: {}", id.map_or("null".into(), |i| i.to_string())),
            None,
        ),
    }
}

async fn fetch_instance_info(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    let id = param(&form, "instanceId");
    let info = id.and_then(|id| sim.now_core().instance_info(id, Simulator::now()));
    match info {
        Some(info) => ok(info),
        None => sim.fail(
            &format!("IllegalArgumentException: invalid instanceId: {}", id.map_or("null".into(), |i| i.to_string())),
            None,
        ),
    }
}

async fn fetch_job(State(sim): State<Simulator>, Form(form): Form<HashMap<String, String>>) -> Response {
    let job_id = param(&form, "jobId");
    let info = job_id.and_then(|j| sim.now_core().job_info(j));
    match info {
        Some(info) => ok(info),
        None => sim.fail(
            &format!(
                "IllegalArgumentException: can't find job by jobId: {}",
                job_id.map_or("null".into(), |j| j.to_string())
            ),
            None,
        ),
    }
}

// ---- console and logs ------------------------------------------------------------

async fn console_login(State(sim): State<Simulator>, Json(body): Json<Value>) -> Response {
    let fail = |m: &str| Json(json!({ "success": false, "data": null, "message": m })).into_response();
    let Some(origin) = body["originParams"].as_str().filter(|s| !s.is_empty()) else {
        return fail("can't find login Info");
    };
    let Ok(origin) = serde_json::from_str::<Value>(origin) else { return fail("INVALID_REQUEST") };
    let (Some(user), Some(password)) = (origin["username"].as_str(), origin["password"].as_str()) else {
        return fail("INVALID_REQUEST");
    };
    let cfg = sim.now_core().config().clone();
    if user != cfg.console_username {
        return fail("UserNotExist");
    }
    if password != cfg.console_password {
        return fail("password is incorrect");
    }
    let jwt = sim.token("console");
    let expires = Simulator::now() + cfg.token_ttl_ms;
    sim.shared.lock().expect("sim state poisoned").console_tokens.insert(jwt.clone(), expires);
    ok(
        json!({ "id": 1, "username": "PWJB_ADMIN", "phone": null, "email": null, "webHook": null, "extra": null, "jwtToken": jwt }),
    )
}

fn console_user_ok(sim: &Simulator, headers: &HeaderMap) -> bool {
    let jwt = header(headers, "PowerJwt").or_else(|| header(headers, "Power_jwt"));
    let s = sim.shared.lock().expect("sim state poisoned");
    jwt.and_then(|j| s.console_tokens.get(j)).is_some_and(|exp| Simulator::now() < *exp)
}

async fn if_login(State(sim): State<Simulator>, headers: HeaderMap) -> Response {
    if console_user_ok(&sim, &headers) {
        ok(json!({ "id": 1, "username": "PWJB_ADMIN", "phone": null, "email": null, "webHook": null, "extra": null }))
    } else {
        ok(Value::Null)
    }
}

/// Checks 5.x console auth; `Some(response)` when it fails.
fn console_guard(sim: &Simulator, headers: &HeaderMap) -> Option<Response> {
    if sim.version == Version::V5 && !console_user_ok(sim, headers) {
        return Some(sim.fail("PowerJobAuthException: UserNotLoggedIn", Some("-100")));
    }
    None
}

async fn instance_log(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = console_guard(&sim, &headers) {
        return denied;
    }
    let own = sim.now_core().config().app_id;
    match q.get("appId").map(String::as_str) {
        None => return sim.fail("NumberFormatException: For input string: \"null\"", None),
        Some(a) if a.parse::<i64>().ok() != Some(own) => {
            return sim.fail("PowerJobException: can't find app info", None)
        }
        _ => {}
    }
    let (Some(id), Some(index)) = (param(&q, "instanceId"), param(&q, "index")) else {
        return ok(
            json!({ "index": 0, "totalPages": 1, "data": "oms-server execution exception, caused by NullPointerException: " }),
        );
    };
    let page = sim.now_core().log_page(id, index, Simulator::now());
    ok(json!({ "index": page.index, "totalPages": page.total_pages, "data": page.data }))
}

async fn download_log_url(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = console_guard(&sim, &headers) {
        return denied;
    }
    let id = q.get("instanceId").cloned().unwrap_or_default();
    ok(json!(format!("http://127.0.0.1:7700/instance/downloadLog?instanceId={id}")))
}

async fn download_log(State(sim): State<Simulator>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(id) = param(&q, "instanceId") else {
        return sim.fail("NumberFormatException: For input string: \"null\"", None);
    };
    let mut core = sim.now_core();
    let live = core.has_instance(id);
    let body = core.download_log(id, Simulator::now());
    let name = if live { format!("{id}-temporary.log") } else { format!("{id}-stable.log") };
    (
        [
            ("content-type", "application/octet-stream".to_owned()),
            ("content-disposition", format!("attachment;filename={name}")),
        ],
        body,
    )
        .into_response()
}

async fn spring_404(req: Request) -> Response {
    let body =
        json!({ "timestamp": iso(Simulator::now()), "status": 404, "error": "Not Found", "path": req.uri().path() });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn wrong_method(State(sim): State<Simulator>, req: Request) -> Response {
    sim.fail(&format!("HttpRequestMethodNotSupportedException: Request method '{}' not supported", req.method()), None)
}
