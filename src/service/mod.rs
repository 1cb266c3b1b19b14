//! `LogService`: follows instances on demand, shares one refresh among all readers of
//! an instance, and answers cursor reads from what it holds.
//!
//! | file | concern |
//! |---|---|
//! | [`entry`] | one followed instance: its follower, the [`View`](entry::View) readers see, the refresh gate |
//! | [`read`] | cursor reads and long-polls, answered from the view |
//! | [`refresh`] | the single-flight refresh (PowerJob, or the shared store through [`cluster`]) |
//! | [`cluster`] | cluster mode: lease ticks, syncs from the store, write-back, wake-ups |
//! | [`cluster_push`] | cluster mode: pushes queued in Redis by any replica, drained by the lease holder |
//! | [`redis`] | the shared line log on Redis (keys, scripts, connections) |
//! | [`store`] | where entries live (growing and complete tiers, epochs) |
//! | [`startup`], [`notify`] | start-up state and its webhooks |
//! | [`per_job`] | what is configured per job (rules, webhook), found for an instance |
//! | [`push`] | pushed lines (memory mode): merged into the served log, deadlines |
//! | [`archive`] | the archive: complete logs written once, and read back on a miss |
//!
//! Each followed instance is an entry: the pure served log ([`crate::logs::Joined`]: the
//! [`crate::logs::Follower`] and what was pushed) behind a `RwLock` (readers
//! never wait for I/O), a gate that makes refreshes single-flight and at most one per
//! `refresh_interval`, and a `watch` channel that wakes long-polls when lines arrive.
//! There is no background scan of instances: a refresh starts when someone reads an
//! instance whose last refresh is older than the interval (for a complete log: older than
//! `recheck_complete_ms`, and then only its status is read, to see a retry), or, in
//! cluster mode, when another replica's message asks for one (its commit, or its readers
//! waiting for the lease holder).
//!
//! A refresh runs in its own task. A reader waits for it at most `read_wait_ms` when
//! something is held, then answers from what is held (`stale` once the refresh is
//! overdue), so a PowerJob that hangs stalls only that one refresh, never the readers.

mod archive;
mod cluster;
mod cluster_push;
mod entry;
mod notify;
mod per_job;
mod push;
mod read;
mod redis;
mod refresh;
mod startup;
mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::logs::lines::LineSlice;
use crate::logs::{Attempt, JoinConfig, PushStats, Status, Timing};
use crate::telemetry;
use crate::upstream::{PowerJobClient, UpstreamError};
pub use archive::{purge as purge_archive, ArchiveAccess};
use entry::{Entry, Gate};
pub use notify::signature;
pub use push::PushFailure;
pub use read::ReadRequest;
pub use redis::StoreError;
pub use startup::{Startup, StartupKey};
use store::Store;

/// One answer to a cursor read; `L` is `Vec<Arc<str>>` (owned) or a [`LineSlice`]
/// (rendered in place, without copying the lines), `A` the attempts likewise, `E` the
/// epoch (`Arc<str>` owned, `&str` borrowed).
#[derive(Debug, Clone)]
pub struct LogPage<L = Vec<Arc<str>>, A = Vec<Attempt>, E = Arc<str>> {
    /// The instance.
    pub instance_id: i64,
    /// Names the served sequence of this instance: `<boot id>-<entry number>`, opaque to
    /// clients (docs/API.md, "Epochs").
    pub epoch: E,
    /// First line of `lines`.
    pub from_line: u64,
    /// Lines from `from_line` on (at most the limit asked for).
    pub lines: L,
    /// Lines held in all.
    pub total_lines: u64,
    /// Latest known status.
    pub status: Status,
    /// No line can follow, and this answer reaches the end.
    pub complete: bool,
    /// PowerJob could not be read just now; this is the cache.
    pub stale: bool,
    /// PowerJob's own copy lost lines this log still holds.
    pub upstream_lost: bool,
    /// The log reached `logs.max_lines_per_instance` and was cut there.
    pub truncated: bool,
    /// The current run (PowerJob's `runningTimes`).
    pub attempt: u32,
    /// Every run seen and the first line it logged.
    pub attempts: A,
    /// What pushes brought (`None`: nothing was ever pushed to this instance).
    pub push: Option<PushStats>,
}

/// A page whose lines and attempts are borrowed from the follower.
pub type BorrowedPage<'a> = LogPage<LineSlice<'a>, &'a [Attempt], &'a str>;

impl<L, A, E> LogPage<L, A, E> {
    fn map<L2, A2, E2>(&self, lines: L2, attempts: A2, epoch: E2) -> LogPage<L2, A2, E2> {
        LogPage {
            instance_id: self.instance_id,
            epoch,
            from_line: self.from_line,
            lines,
            total_lines: self.total_lines,
            status: self.status,
            complete: self.complete,
            stale: self.stale,
            upstream_lost: self.upstream_lost,
            truncated: self.truncated,
            attempt: self.attempt,
            attempts,
            push: self.push,
        }
    }
}

impl LogPage {
    /// The cursor for the next read.
    pub fn next_line(&self) -> u64 {
        self.from_line + self.lines.len() as u64
    }
}

impl BorrowedPage<'_> {
    /// The cursor for the next read.
    pub fn next_line(&self) -> u64 {
        self.from_line + self.lines.len() as u64
    }

    /// An owned copy.
    pub fn to_owned_page(&self) -> LogPage {
        self.map(self.lines.to_vec(), self.attempts.to_vec(), Arc::from(self.epoch))
    }
}

/// Follows PowerJob instance logs; cheap to clone.
#[derive(Clone)]
pub struct LogService {
    inner: Arc<Inner>,
}

struct Inner {
    client: PowerJobClient,
    timing: Timing,
    refresh_interval: Duration,
    recheck_complete: Duration,
    read_wait: Duration,
    /// How long a read with nothing held waits for the first refresh.
    first_read_wait: Duration,
    store: Store,
    /// Start-up rules per job and per instance run through powertail.
    startup_rules: startup::StartupRules,
    /// Cancelled when the server shuts down: long-polls and streams answer at once.
    shutdown: CancellationToken,
    /// Webhooks of start-up events, and their watchers.
    notifier: notify::Notifier,
    /// The shared line log (`[cluster]`); `None`: everything in this process.
    shared: Option<Arc<redis::SharedLog>>,
    /// How pushed lines join PowerJob's (`[push]`).
    join: JoinConfig,
    /// Instances PowerJob was asked about for a push.
    known: push::Known,
    /// The archive (`[archive]`); `None`: off.
    archiver: Option<archive::Archiver>,
    /// `archive.url` and `archive.max_connections`, to open it.
    archive_url: secrecy::SecretString,
    archive_max_connections: u32,
}

impl LogService {
    /// A service reading through `client`; with `[cluster]`, sharing its logs through
    /// Redis (connected lazily: a Redis that is down only fails reads until it is back).
    ///
    /// # Errors
    /// A `[cluster]` address the Redis client refuses.
    pub fn new(config: &Config, client: PowerJobClient) -> Result<Self, StoreError> {
        let read_wait = Duration::from_millis(config.logs.read_wait_ms);
        let app_name = &config.powerjob.app_name;
        let shared = config.cluster.as_ref().map(|c| redis::SharedLog::new(c, app_name)).transpose()?.map(Arc::new);
        let clock = client.clock().clone();
        let service = LogService {
            inner: Arc::new(Inner {
                client,
                timing: config.timing(),
                refresh_interval: config.refresh_interval(),
                recheck_complete: Duration::from_millis(config.logs.recheck_complete_ms),
                read_wait,
                first_read_wait: config.request_timeout() + read_wait,
                store: Store::new(config, clock),
                startup_rules: startup::StartupRules::new(config),
                notifier: notify::Notifier::new(config),
                shutdown: CancellationToken::new(),
                shared,
                join: config.push.join_config(config.logs.max_lines_per_instance),
                known: push::known_cache(),
                archiver: archive::Archiver::new(config),
                archive_url: config.archive.url.clone(),
                archive_max_connections: config.archive.max_connections,
            }),
        };
        service.start_wake_ups();
        service.start_archive();
        Ok(service)
    }

    /// Cancelled when the server begins to shut down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The PowerJob client.
    pub fn client(&self) -> &PowerJobClient {
        &self.inner.client
    }

    /// Tells the service that the instance was just retried through powertail: its next
    /// read checks PowerJob at once, complete or not.
    pub fn retried(&self, id: i64) {
        let mut job_id = None;
        if let Some(entry) = self.inner.store.get(id) {
            let mut gate = self.gate(&entry);
            gate.force = true;
            job_id = gate.job_id;
        }
        // The new attempt's events (the webhook's watcher may have ended), and with an
        // archive its new complete state.
        self.notify_seen(id, job_id);
        self.follow_to_completion(id, job_id);
    }

    fn entry(&self, id: i64) -> Result<Arc<Entry>, ServiceError> {
        self.inner.store.get_or_create(id)
    }

    fn gate<'a>(&self, entry: &'a Entry) -> std::sync::MutexGuard<'a, Gate> {
        entry.gate.lock().expect("gate lock poisoned")
    }

    /// Cluster mode: whether the shared store answers a PING and belongs to this
    /// replica's PowerJob (`None` in memory mode).
    pub async fn store_ready(&self) -> Option<Result<(), StoreError>> {
        let shared = self.inner.shared.as_ref()?;
        let ready = async {
            shared.ping().await?;
            shared.ensure_identity(self.inner.client.app_id()).await
        };
        Some(ready.await)
    }

    /// Cluster mode: this replica's name (`cluster.node_id`).
    pub fn node(&self) -> Option<&str> {
        self.inner.shared.as_ref().map(|s| s.node())
    }

    /// Whether the instance is held now.
    pub fn is_cached(&self, id: i64) -> bool {
        self.inner.store.contains(id)
    }

    /// Publishes the cache gauges (called when metrics are scraped).
    pub fn record_gauges(&self) {
        let (instances, bytes) = self.inner.store.usage();
        metrics::gauge!(telemetry::INSTANCES_FOLLOWED).set(instances as f64);
        metrics::gauge!(telemetry::CACHE_BYTES).set(bytes as f64);
    }
}

/// A read that could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// PowerJob failed (or does not know the instance) and nothing is held.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// `logs.max_followed_instances` growing logs are followed already.
    #[error("{0} growing logs are followed already (logs.max_followed_instances); try again later")]
    TooManyInstances(usize),
    /// Growing logs hold `logs.max_following_bytes` already.
    #[error("growing logs hold {0} bytes already (logs.max_following_bytes); try again later")]
    TooManyBytes(u64),
    /// The shared store (cluster mode) failed and nothing is held.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The client's epoch names another sequence than the one served now (it holds the
    /// current epoch).
    #[error("the log was rebuilt since this epoch (now `{0}`): start over from line 0 with the new epoch")]
    EpochMismatch(Arc<str>),
    /// Cluster mode: the shared store holds this id for another PowerJob (another
    /// cluster sharing the Redis and the key prefix); nothing of it is served.
    #[error("{0}")]
    InstanceConflict(String),
}
