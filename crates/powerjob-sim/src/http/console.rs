//! `/instance/*` (§4): log pages, the download URL and the padded download, behind the
//! 5.x console JWT.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use super::params::{long_or_null, Params};
use super::{ok, Failure, Simulator};
use crate::json;
use crate::types::{LogFile, StringPage, SERVER_EXCEPTION};

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
pub(super) async fn instance_log(State(sim): State<Simulator>, req: Request) -> Response {
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
        (Ok(Some(id)), Ok(Some(index))) => ok(json::string_page(&sim.with_core(|c, now| c.log_page(id, index, now)))),
        // Unboxing a null `Long` inside the service: caught and turned into a page.
        _ => ok(json::string_page(&StringPage::simple(format!("{SERVER_EXCEPTION}NullPointerException: ")))),
    }
}

/// `GET /instance/downloadLogUrl`: the designated server's own address (§4.7, §4.8):
/// its local address, never the `Host` the client used (that only stands in when the
/// router is used without [`Simulator::serve`]).
pub(super) async fn download_log_url(State(sim): State<Simulator>, req: Request) -> Response {
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
    ok(format!("http://{host}/instance/downloadLog?instanceId={}", long_or_null(id)).into())
}

/// `GET /instance/downloadLog`: no auth in either version, padded body (§4.8).
pub(super) async fn download_log(State(sim): State<Simulator>, req: Request) -> Response {
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
