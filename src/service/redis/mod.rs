//! The shared line log on Redis (`[cluster]`, docs/API.md "Cluster mode").
//!
//! Per instance, these keys under one hash tag (one slot, one script):
//!
//! * `<prefix>:{<id>}:lines`: a Stream, line n at ID `(n+1)-0`, one field `l` holding a
//!   tag byte (`u`: the line starts a unit, `c`: it continues one; `p` and `q` the same
//!   for a line that came from a push, see [`LineTag`]) and the text;
//! * `<prefix>:{<id>}:state`: a Hash, `epoch` (set once, when the sequence is created),
//!   `next` (lines appended), `committed` (lines readers may see) and `meta` (the
//!   served log's [`SharedMeta`], as of the last complete append: with pushes, the last
//!   push queue entry applied among it); it expires after
//!   [`UNWRITTEN_RETAIN_MS`] until the first append (an id PowerJob does not know);
//! * `<prefix>:{<id>}:lease`: the token of the replica that refreshes the instance;
//! * `<prefix>:{<id>}:pushed` and `<prefix>:{<id>}:pushq`: pushes ([`push`]).
//!
//! Every change goes through one Lua script, so it is atomic: [`SharedLog::tick`] renews
//! or takes the lease and reads the state; [`SharedLog::append`] checks the token and
//! the expected `next` before it writes anything (a paused former holder is refused,
//! never forks the sequence; Redis also refuses a repeated stream ID), in chunks of a
//! few milliseconds of Redis time, the meta and the commit with the last one; with
//! `commit_replicas > 0`, [`SharedLog::commit`] moves `committed` once `WAIT` confirmed
//! the lines; [`SharedLog::push`] records and queues a pushed batch. Each commit is
//! published on `<prefix>:appended` as `"<id> <committed>"`; a tick that finds the lease
//! held by another replica publishes `"<id> want"` there, so that the holder refreshes
//! for readers it does not serve itself, and a queued batch `"<id> push"`, so that the
//! holder drains the queue ([`Wake`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::config::ClusterConfig;
use crate::logs::SharedMeta;
pub use error::StoreError;
use error::Target;
use identity::Identity;
pub use line_tag::LineTag;
pub use push::{PushProgress, QueuedBatch};
pub use wakeups::Wake;

mod error;
mod identity;
mod line_tag;
mod push;
mod scripts;
mod wakeups;

/// Lines read from the stream per request.
const READ_BATCH: usize = 10_000;
/// At most this many lines per append script call…
const APPEND_CHUNK_LINES: usize = 2_000;
/// …and about this many bytes: each call holds Redis about 10 ms at most (100 000 lines
/// in one call held it 414 ms), and a chunk that is not the last shows nothing to
/// readers (see [`scripts::APPEND`]).
const APPEND_CHUNK_BYTES: usize = 1 << 20;
/// How long the state of an instance nobody appended to yet lives (an id PowerJob does
/// not know, mistyped or probed): 10 minutes, not `retain_complete_ms`. The first
/// append makes it permanent (or gives it `retain_complete_ms` once complete).
pub const UNWRITTEN_RETAIN_MS: u64 = 600_000;

/// What [`SharedLog::tick`] found.
#[derive(Debug, Clone)]
pub struct Tick {
    /// This replica holds the lease (renewed, or taken just now: `acquired`).
    pub holder: bool,
    /// The lease was free and this replica took it.
    pub acquired: bool,
    /// The sequence's epoch.
    pub epoch: Arc<str>,
    /// Lines appended.
    pub next: u64,
    /// Lines readers may see.
    pub committed: u64,
    /// The follower's meta as of `next` (`None` before the first append).
    pub meta: Option<SharedMeta>,
}

/// The tick script's reply: role, epoch, next, committed, meta.
type TickReply = (String, Option<String>, Option<u64>, Option<u64>, Option<String>);
/// One `XRANGE` row: the entry ID and its field-value list.
type StreamRow = (String, Vec<Vec<u8>>);

/// Where connections come from.
enum Source {
    Direct(Client),
    Sentinel(Mutex<redis::sentinel::SentinelClient>),
}

/// The shared line log; cheap to share (`Arc`).
pub struct SharedLog {
    source: Source,
    /// Where it connects, for messages.
    target: Target,
    /// Reads, lease ticks, and (with `commit_replicas = 0`) appends.
    reads: Mutex<Option<MultiplexedConnection>>,
    /// Appends and their `WAIT`, which blocks the connection it runs on.
    writes: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    /// This replica's lease token.
    token: String,
    node: String,
    lease_ms: u64,
    commit_replicas: u32,
    commit_timeout_ms: u64,
    retain_ms: u64,
    timeout: Duration,
    tick_script: Script,
    append_script: Script,
    commit_script: Script,
    rotate_script: Script,
    lease_script: Script,
    identity_script: Script,
    push_script: Script,
    /// The PowerJob app this replica follows (`powerjob.app_name`).
    app_name: String,
    /// Whether the key prefix was found to belong to this PowerJob.
    identity: std::sync::Mutex<Identity>,
}

impl SharedLog {
    /// A store as configured; connects lazily (the first command), so a Redis that is
    /// down at start-up only makes the first reads answer 503.
    ///
    /// # Errors
    /// A URL the Redis client refuses (never echoed: it may hold a password).
    pub fn new(config: &ClusterConfig, app_name: &str) -> Result<Self, StoreError> {
        // rustls needs a process-wide crypto provider for `rediss://`; reqwest brings ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let source = match &config.redis_url {
            Some(url) => Source::Direct(
                Client::open(url.expose_secret())
                    .map_err(|e| StoreError::Protocol(format!("cluster.redis_url is not usable ({})", e.category())))?,
            ),
            None => {
                let mut info = redis::sentinel::SentinelNodeConnectionInfo::default();
                if let Some(p) = &config.sentinel_redis_password {
                    info = info.set_redis_connection_info(
                        redis::RedisConnectionInfo::default().set_password(p.expose_secret()),
                    );
                }
                let urls: Vec<String> = config.sentinel_urls.iter().map(ToString::to_string).collect();
                let master = config.sentinel_master.clone().unwrap_or_default();
                let client = redis::sentinel::SentinelClient::build(
                    urls,
                    master,
                    Some(info),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| {
                    StoreError::Protocol(format!("cluster.sentinel_urls are not usable ({})", e.category()))
                })?;
                Source::Sentinel(Mutex::new(client))
            }
        };
        let target = match &source {
            Source::Direct(c) => {
                let info = c.get_connection_info();
                Target { addr: info.addr().to_string(), db: info.redis_settings().db() }
            }
            Source::Sentinel(_) => Target {
                addr: format!("the primary of {:?} (Sentinel)", config.sentinel_master.clone().unwrap_or_default()),
                db: 0,
            },
        };
        Ok(SharedLog {
            source,
            target,
            reads: Mutex::new(None),
            writes: Mutex::new(None),
            prefix: config.key_prefix.clone(),
            token: format!("{}:{:016x}", config.node(), rand::random::<u64>()),
            node: config.node(),
            lease_ms: config.lease_ms,
            commit_replicas: config.commit_replicas,
            commit_timeout_ms: config.commit_timeout_ms,
            retain_ms: config.retain_complete_ms,
            timeout: Duration::from_millis(config.command_timeout_ms),
            tick_script: Script::new(scripts::TICK),
            append_script: Script::new(scripts::APPEND),
            commit_script: Script::new(scripts::COMMIT),
            rotate_script: Script::new(scripts::ROTATE),
            lease_script: Script::new(scripts::LEASE),
            identity_script: Script::new(scripts::IDENTITY),
            push_script: Script::new(scripts::PUSH),
            app_name: app_name.to_owned(),
            identity: std::sync::Mutex::new(Identity::Unchecked),
        })
    }

    /// This replica's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `cluster.key_prefix`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel of commits.
    pub fn channel(&self) -> String {
        format!("{}:appended", self.prefix)
    }

    /// Whether appends wait for Redis replicas before lines become visible.
    pub fn waits_for_replicas(&self) -> bool {
        self.commit_replicas > 0
    }

    fn key(&self, id: i64, what: &str) -> String {
        format!("{}:{{{id}}}:{what}", self.prefix)
    }

    async fn client(&self) -> Result<Client, StoreError> {
        match &self.source {
            Source::Direct(c) => Ok(c.clone()),
            Source::Sentinel(s) => {
                let mut s = s.lock().await;
                tokio::time::timeout(self.timeout, s.async_get_client())
                    .await
                    .map_err(|_| StoreError::Unavailable("no sentinel answered in time".into()))?
                    .map_err(|e| self.target.connect_failed(&e))
            }
        }
    }

    async fn connection(
        &self,
        slot: &Mutex<Option<MultiplexedConnection>>,
    ) -> Result<MultiplexedConnection, StoreError> {
        let mut held = slot.lock().await;
        if let Some(c) = &*held {
            return Ok(c.clone());
        }
        let connected = async {
            let client = self.client().await?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout + Duration::from_millis(self.commit_timeout_ms)));
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| self.target.connect_failed(&e))
        };
        let conn = connected.await.inspect_err(|e| {
            metrics::counter!(crate::telemetry::STORE_ERRORS, "op" => "connect", "kind" => e.kind()).increment(1);
        })?;
        *held = Some(conn.clone());
        Ok(conn)
    }

    /// Maps a failed command; drops the connection when it is broken, so the next
    /// command reconnects (to the new primary, after a failover).
    async fn failed(
        &self,
        slot: &Mutex<Option<MultiplexedConnection>>,
        op: &'static str,
        e: &RedisError,
    ) -> StoreError {
        let err = match e.code() {
            Some("FENCED") => StoreError::Fenced,
            Some("CONFLICT") => StoreError::Conflict(e.detail().and_then(|d| d.trim().parse().ok()).unwrap_or(-1)),
            Some("OOM") => StoreError::OutOfMemory,
            Some("READONLY" | "LOADING" | "MASTERDOWN") => {
                // A replica promoted or demoted under us, or still loading: reconnect.
                *slot.lock().await = None;
                StoreError::Unavailable(e.category().to_owned())
            }
            _ if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() => {
                *slot.lock().await = None;
                self.target.unreachable(e)
            }
            _ => StoreError::Protocol(format!("{} ({})", e.category(), e.code().unwrap_or("-"))),
        };
        if !matches!(err, StoreError::Fenced | StoreError::Conflict(_)) {
            metrics::counter!(crate::telemetry::STORE_ERRORS, "op" => op, "kind" => err.kind()).increment(1);
        }
        err
    }

    /// Renews or takes the lease of `id` for `lease_ms` plus `extra_ms` (a complete log
    /// is refreshed rarely: its holder keeps the lease between its rechecks) and reads
    /// its state, creating the sequence (and its epoch) if there is none. Unless `quiet`
    /// (a refresh for pushes only), a lease held by another replica asks it to refresh.
    pub async fn tick(&self, id: i64, new_epoch: &str, extra_ms: u64, quiet: bool) -> Result<Tick, StoreError> {
        let mut conn = self.connection(&self.reads).await?;
        let reply: Result<TickReply, RedisError> = self
            .tick_script
            .key(self.key(id, "lease"))
            .key(self.key(id, "state"))
            .arg(&self.token)
            .arg(self.lease_ms + extra_ms)
            .arg(new_epoch)
            .arg(UNWRITTEN_RETAIN_MS.min(self.retain_ms))
            .arg(self.channel())
            .arg(id)
            .arg(if quiet { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await;
        let (role, epoch, next, committed, meta) = match reply {
            Ok(r) => r,
            Err(e) => return Err(self.failed(&self.reads, "tick", &e).await),
        };
        let meta = match meta {
            Some(text) => Some(parse_meta(&text)?),
            None => None,
        };
        let epoch = epoch.ok_or_else(|| StoreError::Protocol("a state without epoch".into()))?;
        Ok(Tick {
            holder: role != "other",
            acquired: role == "acquired",
            epoch: Arc::from(epoch),
            next: next.unwrap_or(0),
            committed: committed.unwrap_or(0),
            meta,
        })
    }

    /// Lines `from..to` of `id` with their tags.
    pub async fn read_lines(&self, id: i64, from: u64, to: u64) -> Result<(Vec<String>, Vec<LineTag>), StoreError> {
        let mut lines = Vec::with_capacity((to.saturating_sub(from)) as usize);
        let mut flags = Vec::with_capacity(lines.capacity());
        let key = self.key(id, "lines");
        let mut at = from;
        while at < to {
            let mut conn = self.connection(&self.reads).await?;
            let count = (to - at).min(READ_BATCH as u64);
            let reply: Result<Vec<StreamRow>, RedisError> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("{}-0", at + 1))
                .arg(format!("{}-0", at + count))
                .query_async(&mut conn)
                .await;
            let rows = match reply {
                Ok(r) => r,
                Err(e) => return Err(self.failed(&self.reads, "read", &e).await),
            };
            if rows.len() as u64 != count {
                // Lines that `next` counts are missing: the keys were lost under us.
                return Err(StoreError::Conflict(at as i64 + rows.len() as i64));
            }
            for (_, fields) in rows {
                let raw =
                    fields.into_iter().nth(1).ok_or_else(|| StoreError::Protocol("a line without text".into()))?;
                let (flag, text) = decode_line(raw)?;
                flags.push(flag);
                lines.push(text);
            }
            at += count;
        }
        metrics::counter!(crate::telemetry::STORE_READS).increment(1);
        Ok((lines, flags))
    }

    /// Appends `lines` (with their tags) after line `expected` and stores `meta`, if
    /// this replica still holds the lease and the log has exactly `expected` lines; with
    /// `push`, records the pushes applied (with the meta, which names the entry consumed
    /// too). Returns the new `next`; with `commit_replicas = 0` they are committed too.
    ///
    /// A long append goes in chunks ([`APPEND_CHUNK_LINES`], [`APPEND_CHUNK_BYTES`]),
    /// each fenced by the `next` the one before left: readers see nothing of it before
    /// the last chunk (which moves the meta and `committed`), and a holder that stops
    /// between two leaves lines its successor takes as its own and goes on from.
    pub async fn append(
        &self,
        id: i64,
        expected: u64,
        lines: &[&str],
        flags: &[LineTag],
        meta: &SharedMeta,
        push: Option<&PushProgress>,
    ) -> Result<u64, StoreError> {
        let mut next = expected;
        let mut from = 0;
        loop {
            let mut to = from;
            let mut bytes = 0;
            while to < lines.len() && to - from < APPEND_CHUNK_LINES && bytes < APPEND_CHUNK_BYTES {
                bytes += lines[to].len() + 1;
                to += 1;
            }
            let last = to == lines.len();
            let chunk = (&lines[from..to], &flags[from..to]);
            next = self.append_chunk(id, next, chunk, last.then_some((meta, push))).await?;
            if last {
                return Ok(next);
            }
            from = to;
        }
    }

    /// One call of the append script: the `(lines, flags)` of `chunk` after line
    /// `expected`; with the meta (the last chunk), the meta, the pushes applied and the
    /// commit too.
    async fn append_chunk(
        &self,
        id: i64,
        expected: u64,
        (lines, flags): (&[&str], &[LineTag]),
        meta: Option<(&SharedMeta, Option<&PushProgress>)>,
    ) -> Result<u64, StoreError> {
        let slot = if self.waits_for_replicas() { &self.writes } else { &self.reads };
        let mut conn = self.connection(slot).await?;
        // (The served log's completeness: with pushes, the join's.)
        let complete = meta.is_some_and(|(m, _)| m.join.as_ref().map_or(m.complete, |j| j.complete));
        let last = meta.is_some();
        let push = meta.and_then(|(_, p)| p);
        let meta = meta.map(|(m, _)| serde_json::to_string(m).expect("meta serialises")).unwrap_or_default();
        let mut inv = self.append_script.prepare_invoke();
        inv.key(self.key(id, "lease")).key(self.key(id, "state")).key(self.key(id, "lines"));
        inv.key(self.key(id, "pushed")).key(self.key(id, "pushq"));
        inv.arg(&self.token).arg(expected).arg(meta);
        inv.arg(if self.waits_for_replicas() { "0" } else { "1" });
        inv.arg(if complete { "1" } else { "0" });
        inv.arg(self.retain_ms).arg(self.channel()).arg(id);
        inv.arg(if last { "1" } else { "0" }).arg(self.lease_ms);
        inv.arg(push.map_or("", |p| p.consumed.as_str()));
        let applied: BTreeMap<&str, String> =
            push.iter().flat_map(|p| &p.applied).map(|(s, n)| (s.as_str(), n.to_string())).collect();
        inv.arg(if applied.is_empty() { String::new() } else { serde_json::to_string(&applied).expect("serialises") });
        for (line, &flag) in lines.iter().zip(flags) {
            let mut v = Vec::with_capacity(line.len() + 1);
            v.push(flag.byte());
            v.extend_from_slice(line.as_bytes());
            inv.arg(v);
        }
        match inv.invoke_async::<u64>(&mut conn).await {
            Ok(n) => {
                metrics::counter!(crate::telemetry::STORE_APPENDS).increment(1);
                Ok(n)
            }
            Err(e) => Err(self.failed(slot, "append", &e).await),
        }
    }

    /// With `commit_replicas > 0`: waits until that many Redis replicas hold everything
    /// this replica wrote, then moves `committed` of `id` to `next` and publishes it.
    /// Returns whether the lines are committed now.
    pub async fn commit(&self, id: i64, next: u64) -> Result<bool, StoreError> {
        let mut conn = self.connection(&self.writes).await?;
        let acked: Result<u32, RedisError> =
            redis::cmd("WAIT").arg(self.commit_replicas).arg(self.commit_timeout_ms).query_async(&mut conn).await;
        match acked {
            Ok(n) if n >= self.commit_replicas => {}
            Ok(_) => {
                metrics::counter!(crate::telemetry::STORE_ERRORS, "op" => "commit", "kind" => "unconfirmed")
                    .increment(1);
                return Ok(false);
            }
            Err(e) => return Err(self.failed(&self.writes, "commit", &e).await),
        }
        let reply: Result<u64, RedisError> = self
            .commit_script
            .key(self.key(id, "lease"))
            .key(self.key(id, "state"))
            .arg(&self.token)
            .arg(next)
            .arg(self.channel())
            .arg(id)
            .invoke_async(&mut conn)
            .await;
        match reply {
            Ok(_) => Ok(true),
            Err(e) => Err(self.failed(&self.writes, "commit", &e).await),
        }
    }

    /// How long a lease lasts unless renewed.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// Renews this replica's lease of `id` (during a long refresh); `false` when it is
    /// not held any more.
    pub async fn renew(&self, id: i64) -> Result<bool, StoreError> {
        self.lease_op(id, self.lease_ms, "renew").await
    }

    /// Gives up the lease of `id` if this replica holds it.
    pub async fn release(&self, id: i64) -> Result<(), StoreError> {
        self.lease_op(id, 0, "release").await.map(drop)
    }

    /// The lease script: renews this replica's lease of `id` for `ms`, or (0) deletes
    /// it; `false` when this replica does not hold it.
    async fn lease_op(&self, id: i64, ms: u64, op: &'static str) -> Result<bool, StoreError> {
        let mut conn = self.connection(&self.reads).await?;
        let reply: Result<i64, RedisError> =
            self.lease_script.key(self.key(id, "lease")).arg(&self.token).arg(ms).invoke_async(&mut conn).await;
        match reply {
            Ok(n) => Ok(n == 1),
            Err(e) => Err(self.failed(&self.reads, op, &e).await),
        }
    }

    /// Names the sequence of `id` anew (`new` replaces `old`, unless another replica
    /// did so first), after it was found rolled back: the store lost lines readers may
    /// have seen (a failover or a restart that lost the tail). Their cursors no longer
    /// hold, and the new epoch tells them (410). Returns the epoch now.
    pub async fn rotate_epoch(&self, id: i64, old: &str, new: &str) -> Result<Arc<str>, StoreError> {
        let mut conn = self.connection(&self.reads).await?;
        let reply: Result<Option<String>, RedisError> =
            self.rotate_script.key(self.key(id, "state")).arg(old).arg(new).invoke_async(&mut conn).await;
        match reply {
            Ok(Some(epoch)) => Ok(Arc::from(epoch)),
            Ok(None) => Err(StoreError::Conflict(-1)),
            Err(e) => Err(self.failed(&self.reads, "rotate", &e).await),
        }
    }

    /// Claims webhook delivery `key` for this replica (a day); `false` when another
    /// replica claimed it first.
    pub async fn claim(&self, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.connection(&self.reads).await?;
        let reply: Result<Option<String>, RedisError> = redis::cmd("SET")
            .arg(format!("{}:delivery:{key}", self.prefix))
            .arg(&self.node)
            .arg("NX")
            .arg("PX")
            .arg(86_400_000u64)
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(r) => Ok(r.is_some()),
            Err(e) => Err(self.failed(&self.reads, "claim", &e).await),
        }
    }

    /// PING, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection(&self.reads).await?;
        let r: Result<String, RedisError> = redis::cmd("PING").query_async(&mut conn).await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(&self.reads, "ping", &e).await),
        }
    }
}

fn parse_meta(text: &str) -> Result<SharedMeta, StoreError> {
    let meta: SharedMeta =
        serde_json::from_str(text).map_err(|e| StoreError::Protocol(format!("the follower's meta: {e}")))?;
    if meta.v > crate::logs::joined::JOINED_META_VERSION {
        return Err(StoreError::Protocol(format!("meta version {} is newer than this build's", meta.v)));
    }
    Ok(meta)
}

fn decode_line(raw: Vec<u8>) -> Result<(LineTag, String), StoreError> {
    let Some(flag) = raw.first().copied().and_then(LineTag::of) else {
        return Err(StoreError::Protocol("a line without its tag".into()));
    };
    let text = String::from_utf8(raw[1..].to_vec()).map_err(|_| StoreError::Protocol("a line not in UTF-8".into()))?;
    Ok((flag, text))
}
