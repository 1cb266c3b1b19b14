//! The operations: instance info, log pages and downloads, job runs, instance
//! operations and job lookups, each one authenticated call ([`super::auth`]).

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use url::Url;

use super::transport::{join, Target};
use super::wire::{InstanceInfo, StringPage};
use super::{PowerJobClient, UpstreamError, LOG_TARGET};
use crate::logs::RawPage;

/// The instance operations of the OpenAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOp {
    /// `stopInstance` (statuses 1–3).
    Stop,
    /// `cancelInstance` (a not yet dispatched instance).
    Cancel,
    /// `retryInstance` (a finished instance; same instanceId).
    Retry,
}

impl InstanceOp {
    fn path(self) -> &'static str {
        match self {
            InstanceOp::Stop => "stopInstance",
            InstanceOp::Cancel => "cancelInstance",
            InstanceOp::Retry => "retryInstance",
        }
    }
}

impl PowerJobClient {
    /// `fetchInstanceInfo`.
    ///
    /// # Errors
    /// [`UpstreamError::InstanceNotFound`] for an unknown id, or any other failure.
    #[tracing::instrument(target = "powertail::upstream", skip(self), fields(instance.id = id))]
    pub async fn instance_info(&self, id: i64) -> Result<InstanceInfo, UpstreamError> {
        match self.openapi::<InstanceInfo>("fetchInstanceInfo", &[("instanceId", id.to_string())]).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(UpstreamError::Protocol("fetchInstanceInfo answered no data".into())),
            Err(UpstreamError::Refused { message, .. }) if message.contains("invalid instanceId") => {
                Err(UpstreamError::InstanceNotFound(id))
            }
            Err(e) => Err(e),
        }
    }

    /// `runJob`: starts an instance now (or after `delay_ms`) and returns its id. The
    /// id comes back even when dispatch fails (the instance is then FAILED).
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] for an unknown job or one of another app.
    #[tracing::instrument(target = "powertail::upstream", skip(self, instance_params))]
    pub async fn run_job(
        &self,
        job_id: i64,
        instance_params: Option<&str>,
        delay_ms: u64,
    ) -> Result<i64, UpstreamError> {
        let mut form = vec![("jobId", job_id.to_string()), ("delay", delay_ms.to_string())];
        if let Some(p) = instance_params.filter(|p| !p.is_empty()) {
            form.push(("instanceParams", p.to_owned()));
        }
        self.openapi::<i64>("runJob", &form)
            .await?
            .ok_or_else(|| UpstreamError::Protocol("runJob answered no instanceId".into()))
    }

    /// `stopInstance`, `cancelInstance` or `retryInstance`.
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] with PowerJob's reason (finished, not finished, unknown).
    #[tracing::instrument(target = "powertail::upstream", skip(self))]
    pub async fn instance_op(&self, op: InstanceOp, id: i64) -> Result<(), UpstreamError> {
        self.openapi::<serde_json::Value>(op.path(), &[("instanceId", id.to_string())]).await.map(|_| ())
    }

    /// `fetchJob`: the job's JobInfoDTO as PowerJob sent it.
    ///
    /// # Errors
    /// [`UpstreamError::Refused`] for an unknown job.
    pub async fn fetch_job(&self, job_id: i64) -> Result<serde_json::Value, UpstreamError> {
        self.openapi::<serde_json::Value>("fetchJob", &[("jobId", job_id.to_string())])
            .await?
            .ok_or_else(|| UpstreamError::Protocol("fetchJob answered no job".into()))
    }

    /// `/instance/downloadLog`: the whole log file (padded with garbage to 4 KiB blocks,
    /// `docs/powerjob-protocol.md` §4.8), or `None` when it cannot be downloaded safely (the caller pages).
    ///
    /// `downloadLog` is not forwarded (§4.7, §4.8): a server that does not hold the log
    /// serves (and creates) a placeholder file of its own. So the forwarded
    /// `downloadLogUrl` is asked first; it names the server that holds the log, and the
    /// file is downloaded only when that is the configured address that answered, from
    /// that address alone (no failover to another server).
    ///
    /// # Errors
    /// Transport failures.
    #[tracing::instrument(target = "powertail::upstream", skip(self), fields(instance.id = id))]
    pub async fn download_log(&self, id: i64) -> Result<Option<Vec<u8>>, UpstreamError> {
        let Some(i) = self.download_address(id).await? else { return Ok(None) };
        let query = [("instanceId", id.to_string())];
        let raw = self
            .send_to(Target::Only(i), "/instance/downloadLog", |base| {
                self.inner.http.get(join(base, "/instance/downloadLog")).query(&query)
            })
            .await?;
        let is_file = raw
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/octet-stream"));
        let ok = raw.status == StatusCode::OK && is_file;
        if ok {
            self.inner.last_ok_ms.store(self.inner.clock.now_ms(), Ordering::Relaxed);
        }
        Ok(ok.then(|| raw.body.to_vec()))
    }

    /// The index of the configured address to download `id`'s log from: the address that
    /// answered `downloadLogUrl`, when the URL it answered has that address's host and
    /// port. `None` when the log lives on another server (or the URL cannot be had).
    async fn download_address(&self, id: i64) -> Result<Option<usize>, UpstreamError> {
        let (i, url) = match self.console_get::<String>("/instance/downloadLogUrl", id, &[]).await {
            Ok((i, Some(url))) => (i, url),
            Ok((_, None)) => return Ok(None),
            Err(e @ (UpstreamError::Unreachable(_) | UpstreamError::Timeout(_))) => return Err(e),
            Err(e) => {
                tracing::debug!(target: LOG_TARGET, error = %e, "no download URL; reading pages");
                return Ok(None);
            }
        };
        let ours = &self.inner.addresses[i];
        let same = Url::parse(&url).is_ok_and(|theirs| {
            theirs.host_str().is_some_and(|h| Some(h) == ours.host_str())
                && theirs.port_or_known_default() == ours.port_or_known_default()
        });
        if !same {
            tracing::debug!(target: LOG_TARGET, server = %ours, %url, "the log lives on another server; reading pages");
        }
        Ok(same.then_some(i))
    }

    /// One `/instance/log` page.
    ///
    /// # Errors
    /// Any [`UpstreamError`]; a 5.x login problem is [`UpstreamError::Auth`].
    #[tracing::instrument(target = "powertail::upstream", skip(self), fields(instance.id = id))]
    pub async fn log_page(&self, id: i64, index: u64) -> Result<RawPage, UpstreamError> {
        let (_, page) = self.console_get::<StringPage>("/instance/log", id, &[("index", index.to_string())]).await?;
        let page = page.ok_or_else(|| UpstreamError::Protocol("/instance/log answered no page".into()))?;
        Ok(RawPage {
            index: u64::try_from(page.index).unwrap_or(0),
            total_pages: u64::try_from(page.total_pages).unwrap_or(0),
            data: page.data.unwrap_or_default(),
        })
    }
}
