//! Fault injection: [`Fault`]s queued by tests, and the outermost layer that counts
//! every request and plays the first fault that applies to it.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{ok, spring_error, Simulator};
use crate::json;
use crate::types::{StringPage, PREPARING, SERVER_EXCEPTION};

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
    /// `/instance/log` only (other paths skip it): as [`FaultKind::TotalPages`], but only
    /// page 0's answer carries the count; every other page carries the true one (a
    /// proxy or server that lies on the first page only).
    FirstPageTotalPages(u64),
}

impl Simulator {
    /// Takes the first queued fault that applies to `path`, counting one use of it.
    pub(super) fn take_fault(&self, path: &str) -> Option<FaultKind> {
        let mut shared = self.shared();
        shared.faults.retain(|f| f.times > 0);
        let pos = shared.faults.iter().position(|f| {
            let path_matches = f.path.as_deref().is_none_or(|p| p == path);
            let applies = match f.kind {
                FaultKind::Preparing
                | FaultKind::ServerException
                | FaultKind::TotalPages(_)
                | FaultKind::FirstPageTotalPages(_) => path == "/instance/log",
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
}

/// Outermost layer: counts every request and plays the first matching fault.
pub(super) async fn count_and_inject(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    {
        let mut shared = sim.shared();
        *shared.counters.entry(path.clone()).or_default() += 1;
        let index = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("index=")));
        if let (true, Some(index)) = (path == "/instance/log", index) {
            *shared.counters.entry(format!("{path}?index={index}")).or_default() += 1;
        }
    }
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
        Some(FaultKind::TotalPages(total)) => with_total_pages(next.run(req).await, total, false).await,
        Some(FaultKind::FirstPageTotalPages(total)) => with_total_pages(next.run(req).await, total, true).await,
        Some(FaultKind::Http500) => spring_error(StatusCode::INTERNAL_SERVER_ERROR, &path),
        Some(FaultKind::Preparing) => ok(json::string_page(&StringPage::simple(PREPARING))),
        Some(FaultKind::ServerException) => {
            ok(json::string_page(&StringPage::simple(format!("{SERVER_EXCEPTION}NullPointerException: "))))
        }
        Some(FaultKind::HtmlError) => {
            (StatusCode::BAD_GATEWAY, [(CONTENT_TYPE, "text/html")], PROXY_502).into_response()
        }
        Some(FaultKind::NotJson) => ([(CONTENT_TYPE, "application/json")], json::TRUNCATED_PAGE).into_response(),
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
async fn with_total_pages(response: Response, total: u64, first_only: bool) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return spring_error(StatusCode::INTERNAL_SERVER_ERROR, "/instance/log");
    };
    let mut value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, Body::from(bytes)),
    };
    let is_page = value["success"] == true && value["data"].get("totalPages").is_some();
    if !is_page || first_only && value["data"]["index"] != 0 {
        return Response::from_parts(parts, Body::from(bytes));
    }
    value["data"]["totalPages"] = json!(total);
    Json(value).into_response()
}
