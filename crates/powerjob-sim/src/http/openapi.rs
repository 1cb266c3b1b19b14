//! `/openApi/*` (§2): `assert`, running, stopping, cancelling and retrying instances,
//! and the instance and job queries.

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::Value;

use super::params::{json_body, long_or_null, text_or_null, Params};
use super::{ok, Failure, Simulator};
use crate::core::SimCore;
use crate::json;

pub(super) async fn assert_app(State(sim): State<Simulator>, req: Request) -> Response {
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
        _ => ok(sim.cfg.app_id.into()),
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

pub(super) async fn run_job(State(sim): State<Simulator>, req: Request) -> Response {
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
        Ok(id) => ok(id.into()),
        Err(m) => sim.fail(&m, None),
    }
}

pub(super) async fn fetch_job(State(sim): State<Simulator>, req: Request) -> Response {
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

pub(super) async fn stop_instance(State(sim): State<Simulator>, req: Request) -> Response {
    instance_op(sim, req, SimCore::stop_instance).await
}

pub(super) async fn cancel_instance(State(sim): State<Simulator>, req: Request) -> Response {
    instance_op(sim, req, SimCore::cancel_instance).await
}

pub(super) async fn retry_instance(State(sim): State<Simulator>, req: Request) -> Response {
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

pub(super) async fn fetch_instance_status(State(sim): State<Simulator>, req: Request) -> Response {
    instance_query(sim, req, true).await
}

pub(super) async fn fetch_instance_info(State(sim): State<Simulator>, req: Request) -> Response {
    instance_query(sim, req, false).await
}

/// `/openApi/queryInstance`: a paged query on 5.1.1; on 4.x the abstract `PowerQuery`
/// body cannot be bound, so every call fails (§2.11).
pub(super) async fn query_instance(State(sim): State<Simulator>, req: Request) -> Response {
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
    ok(json::page_result(index, page_size, total, data))
}
