//! Webhooks of start-up events (`[jobs.<name>.notify]`, issue 13 part 3).
//!
//! The start-up state is computed only when asked, so a webhook needs someone who asks:
//! a watcher task per instance of a job with `notify`. It is started when the instance
//! is run through powertail ([`LogService::started_as`]), retried through powertail
//! ([`LogService::retried`]), or refreshed for any reader while its PowerJob job id is
//! that of a configured job with `notify` (a run from the console or PowerJob's
//! schedule, once something reads it: there is no background scan of PowerJob).
//!
//! The watcher long-polls [`LogService::startup`] and hands each configured event of
//! each attempt to a delivery task, once: `ready` when the ready line is read;
//! `failed` once the failure is final (`failure.final`: the attempt ended, a retry
//! superseded it, its cause is the most specific one, or `startup.failure_settle_ms`
//! passed on the lines' timestamps), with that final cause only; `exited` when the
//! attempt ended without either. It ends when the
//! current attempt's state is complete and the log is complete, at shutdown, or after
//! [`MAX_WATCH`].
//!
//! A delivery POSTs the JSON body with `X-Powertail-Delivery: <instanceId>:<attempt>:<event>`
//! (the idempotency key) and, with a secret, `X-Powertail-Signature: sha256=<hex>`
//! (HMAC-SHA256 of the body), retrying transport failures, 5xx, 408 and 429 with
//! back-off (1 s, 2 s, 4 s, … at most 10 s) until the job's `deadline_ms`.
//!
//! With an archive (`[archive]`) the same watcher follows every run started or retried
//! through powertail to completion, with or without a webhook (then it delivers
//! nothing), so that it is archived whether or not anyone reads it (`super::archive`).
//!
//! Each key is claimed before its delivery starts, so that a watcher started again
//! (after a retry, or a later read) never repeats an event. In cluster mode the claim is
//! also made in Redis (`SET <prefix>:delivery:<key> NX`, a day), so that one replica
//! delivers each event whichever replicas watch the instance; while Redis cannot be
//! reached, the local claim decides (at least once: receivers drop repeated keys).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::per_job::PerJob;
use super::LogService;
use crate::config::{Config, NotifyEvent};
use crate::logs::startup::{Event, Phase, StartupSnapshot};
use crate::logs::Status;
use crate::telemetry;
use crate::upstream::UpstreamError;

/// A watcher gives up after this long whatever happens.
pub const MAX_WATCH: Duration = Duration::from_secs(24 * 3600);
/// How long one long-poll of the watcher waits.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// How often a watcher looks again while the state is complete and the job runs on (a
/// ready server), to see a retry.
const RECHECK: Duration = Duration::from_secs(2);
/// The first retry of a delivery waits this long, each next one twice as long…
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// …at most this long.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// One delivery request takes at most this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Claimed keys remembered (a day).
const CLAIMS_CAPACITY: u64 = 100_000;

/// Where a job's events go.
pub(super) struct Target {
    job: String,
    job_id: i64,
    url: Url,
    events: Vec<NotifyEvent>,
    secret: Option<SecretString>,
    deadline: Duration,
}

impl Target {
    /// The receiver as logged: scheme, host and port (a path or query may hold a token).
    fn receiver(&self) -> String {
        format!(
            "{}://{}:{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or(""),
            self.url.port_or_known_default().unwrap_or(0)
        )
    }
}

/// The webhooks per job, the instances watched and the keys claimed.
pub(super) struct Notifier {
    targets: PerJob<Arc<Target>>,
    watching: Mutex<HashSet<i64>>,
    claims: moka::sync::Cache<String, ()>,
}

impl Notifier {
    pub(super) fn new(config: &Config) -> Self {
        let targets = PerJob::new(config, CLAIMS_CAPACITY, |name, job| {
            let n = job.notify.as_ref()?;
            Some(Arc::new(Target {
                job: name.to_owned(),
                job_id: job.job_id,
                url: n.url.clone(),
                events: n.events.clone(),
                secret: n.secret.clone(),
                deadline: Duration::from_millis(n.deadline_ms),
            }))
        });
        Notifier {
            targets,
            watching: Mutex::new(HashSet::new()),
            claims: moka::sync::Cache::builder()
                .max_capacity(CLAIMS_CAPACITY)
                .time_to_live(Duration::from_secs(86_400))
                .build(),
        }
    }

    fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The webhook of instance `id`: that of the job it was run as, else that of its job id.
    fn for_instance(&self, id: i64, job_id: Option<i64>) -> Option<Arc<Target>> {
        self.targets.for_instance(id, job_id)
    }

    /// Claims delivery `key` in this process; `false` when it was claimed already.
    fn claim(&self, key: &str) -> bool {
        let entry = self.claims.entry_by_ref(key).or_insert(());
        entry.is_fresh()
    }
}

/// Removes the instance from the watched set when the watcher ends (also by a panic).
struct Watching<'a>(&'a Notifier, i64);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watching.lock().expect("watching lock poisoned").remove(&self.1);
    }
}

impl LogService {
    /// Whether a webhook watcher runs for instance `id` now.
    pub fn is_watched(&self, id: i64) -> bool {
        self.inner.notifier.watching.lock().expect("watching lock poisoned").contains(&id)
    }

    /// Instance `id` was run as configured job `job`: watch it if the job has a webhook
    /// (or, with an archive, to completion).
    pub(super) fn notify_started(&self, id: i64, job: &str) {
        let target = self.inner.notifier.targets.started_as(id, job);
        if target.is_some() || self.archives() {
            self.watch(id, target);
        }
    }

    /// With an archive: watch instance `id` (run or retried through powertail) to
    /// completion, delivering its job's webhook events if it has one.
    pub(crate) fn follow_to_completion(&self, id: i64, job_id: Option<i64>) {
        if self.archives() {
            self.watch(id, self.inner.notifier.for_instance(id, job_id));
        }
    }

    /// Instance `id` (of PowerJob job `job_id`, if known) was refreshed or retried: watch
    /// it if its job has a webhook and no watcher runs.
    pub(super) fn notify_seen(&self, id: i64, job_id: Option<i64>) {
        let notifier = &self.inner.notifier;
        if notifier.is_empty() {
            return;
        }
        if let Some(target) = notifier.for_instance(id, job_id) {
            self.watch(id, Some(target));
        }
    }

    /// Watches instance `id` (delivering `target`'s events, if any) unless a watcher runs.
    fn watch(&self, id: i64, target: Option<Arc<Target>>) {
        if self.inner.shutdown.is_cancelled()
            || !self.inner.notifier.watching.lock().expect("watching lock poisoned").insert(id)
        {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let job = target.as_ref().map_or("-", |t| t.job.as_str()).to_owned();
            let ended = {
                let _watching = Watching(&service.inner.notifier, id);
                tracing::debug!(instance.id = id, %job, "watcher started");
                service.watch_instance(id, target.as_ref()).await
            };
            tracing::debug!(instance.id = id, %job, "watcher ended");
            // A retry seen by a refresh between the last look and the end: watch it.
            if ended && service.inner.store.get(id).is_some_and(|e| !e.is_complete()) {
                service.watch(id, target);
            }
        });
    }

    /// Watches until the log is complete and so is the state (with a `target`) (`true`),
    /// or until shutdown, [`MAX_WATCH`], or an instance PowerJob does not know (`false`).
    async fn watch_instance(&self, id: i64, target: Option<&Arc<Target>>) -> bool {
        let job = target.map_or("-", |t| t.job.as_str());
        let shutdown = self.inner.shutdown.clone();
        let end = Instant::now() + MAX_WATCH;
        let mut known: (Option<u32>, Option<usize>) = (None, None);
        let mut errors = 0u32;
        loop {
            let now = Instant::now();
            if shutdown.is_cancelled() {
                return false;
            }
            if now >= end {
                tracing::warn!(instance.id = id, %job, "watcher gave up after {MAX_WATCH:?}");
                return false;
            }
            let s = match self.startup(id, POLL_WAIT, known).await {
                Ok(s) => {
                    errors = 0;
                    s
                }
                Err(super::ServiceError::Upstream(UpstreamError::InstanceNotFound(_))) => {
                    tracing::warn!(instance.id = id, %job, "watcher: PowerJob does not know the instance");
                    return false;
                }
                Err(e) => {
                    errors += 1;
                    tracing::debug!(instance.id = id, error = %e, "webhook watcher: start-up state unavailable");
                    let pause = FIRST_BACKOFF.saturating_mul(1 << errors.min(5)).min(Duration::from_secs(30));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = shutdown.cancelled() => return false,
                    }
                }
            };
            let snap = &s.snapshot;
            if let Some(target) = target {
                // Attempts a retry superseded: their ready or failure, if not delivered yet.
                for earlier in self.earlier_attempts(id) {
                    self.offer(id, target, &earlier, s.status);
                }
                self.offer(id, target, snap, s.status);
            }
            let log_complete = self.inner.store.get(id).is_some_and(|e| e.is_complete());
            if log_complete && (snap.complete || target.is_none()) {
                return true;
            }
            if snap.complete {
                // Ready and running on: look again now and then, for a retry.
                known = (None, None);
                tokio::select! {
                    () = tokio::time::sleep(RECHECK) => {}
                    () = shutdown.cancelled() => return false,
                }
            } else {
                known = (Some(snap.attempt), Some(snap.events.len()));
            }
        }
    }

    /// Hands the events of `snap` that are due to delivery, each once (a failure only
    /// once it is final: the cause delivered is never replaced).
    fn offer(&self, id: i64, target: &Arc<Target>, snap: &StartupSnapshot, status: Status) {
        // (event, cause, line, text)
        let mut due: Vec<Due<'_>> = Vec::new();
        if let Some(r) = &snap.ready {
            due.push((NotifyEvent::Ready, None, Some(r.line), Some(&r.text)));
        }
        if let Some(f) = snap.failure.as_ref().filter(|f| f.is_final) {
            due.push((NotifyEvent::Failed, Some(&f.cause), f.line, f.text.as_deref()));
        }
        if snap.phase == Phase::Exited {
            let status = snap.events.iter().find_map(|e| match e {
                Event::Exited { status } => Some(*status),
                _ => None,
            });
            due.push((NotifyEvent::Exited, status, None, None));
        }
        for (event, cause, line, text) in due {
            if !target.events.contains(&event) {
                continue;
            }
            let key = format!("{id}:{}:{}", snap.attempt, event.name());
            if !self.inner.notifier.claim(&key) {
                continue;
            }
            let body = json!({
                "instanceId": id.to_string(),
                "job": target.job,
                "jobId": target.job_id.to_string(),
                "event": event.name(),
                "attempt": snap.attempt,
                "cause": cause,
                "line": line,
                "text": text,
                "status": status.name(),
            });
            let delivery = Delivery {
                http: self.inner.client.http().clone(),
                target: target.clone(),
                key,
                event,
                body: body.to_string().into_bytes(),
            };
            let (shared, shutdown) = (self.inner.shared.clone(), self.inner.shutdown.clone());
            tokio::spawn(async move {
                if let Some(shared) = shared {
                    match shared.claim(&delivery.key).await {
                        Ok(true) => {}
                        // Another replica delivers it.
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(key = %delivery.key, error = %e, "cannot claim the delivery in Redis; delivering");
                        }
                    }
                }
                delivery.run(shutdown).await;
            });
        }
    }
}

/// An event due: (event, cause, line, text).
type Due<'a> = (NotifyEvent, Option<&'a str>, Option<u64>, Option<&'a str>);

/// One event to one receiver, retried until delivered or its deadline.
struct Delivery {
    http: reqwest::Client,
    target: Arc<Target>,
    key: String,
    event: NotifyEvent,
    body: Vec<u8>,
}

impl Delivery {
    async fn run(self, shutdown: CancellationToken) {
        let target = &self.target;
        let signature = target.secret.as_ref().map(|s| signature(s.expose_secret().as_bytes(), &self.body));
        let deadline = Instant::now() + target.deadline;
        let count = |outcome: &'static str| {
            metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "event" => self.event.name(), "outcome" => outcome)
                .increment(1);
        };
        let mut tries = 0u32;
        loop {
            tries += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let mut request = self
                .http
                .post(target.url.clone())
                .timeout(left.clamp(Duration::from_millis(100), REQUEST_TIMEOUT))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Powertail-Delivery", &self.key)
                .header("X-Powertail-Event", self.event.name())
                .body(self.body.clone());
            if let Some(sig) = &signature {
                request = request.header("X-Powertail-Signature", sig);
            }
            let sent = tokio::select! {
                r = request.send() => r,
                () = shutdown.cancelled() => {
                    count("abandoned");
                    tracing::warn!(delivery = %self.key, job = %target.job, receiver = %target.receiver(), "webhook abandoned at shutdown");
                    return;
                }
            };
            // Never the error's text: it holds the URL, whose path or query may be a secret.
            let problem = match sent {
                Ok(resp) if resp.status().is_success() => {
                    count("delivered");
                    tracing::info!(delivery = %self.key, job = %target.job, receiver = %target.receiver(), tries, "webhook delivered");
                    return;
                }
                Ok(resp) if resp.status().is_client_error() && !matches!(resp.status().as_u16(), 408 | 425 | 429) => {
                    count("rejected");
                    tracing::warn!(delivery = %self.key, job = %target.job, receiver = %target.receiver(), status = resp.status().as_u16(), tries, "webhook rejected by the receiver; not retried");
                    return;
                }
                Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
                Err(e) if e.is_timeout() => "timeout".to_owned(),
                Err(e) if e.is_connect() => "connection failed".to_owned(),
                Err(_) => "request failed".to_owned(),
            };
            let backoff = FIRST_BACKOFF.saturating_mul(1 << (tries - 1).min(10)).min(MAX_BACKOFF);
            if Instant::now() + backoff >= deadline {
                count("gave_up");
                tracing::warn!(delivery = %self.key, job = %target.job, receiver = %target.receiver(), %problem, tries, "webhook not delivered; given up");
                return;
            }
            count("retried");
            tracing::info!(delivery = %self.key, job = %target.job, receiver = %target.receiver(), %problem, tries, retry_in = ?backoff, "webhook failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {
                    count("abandoned");
                    tracing::warn!(delivery = %self.key, job = %target.job, receiver = %target.receiver(), "webhook abandoned at shutdown");
                    return;
                }
            }
        }
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
