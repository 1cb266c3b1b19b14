//! Cluster-mode harness (issue 12): a real `redis-server` that the test starts itself on
//! a random loopback port, powertail replicas as child processes of the real binary
//! (so they can be killed with SIGKILL, paused with SIGSTOP) or in-process, and the
//! `[cluster]` configuration they share.
//!
//! Tests that start a Redis need Debian's `redis-server` at [`REDIS_SERVER`]. Mark them
//! `#[ignore = "needs redis-server (Debian package redis-server); CI installs it"]`: a
//! plain `cargo test` lists them as ignored, `cargo test -- --include-ignored` (what CI
//! runs) runs them, and [`RedisServer::start`] panics with an explanation when the
//! binary is missing, so such a test never passes without doing its work.
//!
//! The Redis helpers are blocking (std sockets and processes, a few milliseconds; a
//! start waits until Redis answers `PING`). With in-process replicas on the same
//! runtime, prefer `#[tokio::test(flavor = "multi_thread")]` so a Redis restart does not
//! also pause the replicas.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Follow;

/// The Redis server binary the harness runs (Debian package `redis-server`).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// How long a Redis or a replica may take to answer after it was started.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Whether [`REDIS_SERVER`] is installed.
pub fn redis_available() -> bool {
    Path::new(REDIS_SERVER).is_file()
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[allow(unused_imports, reason = "the cluster tests import them from here")]
pub use super::{wait_for, wait_until};

// ---------------------------------------------------------------------------------
// Redis

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`, `-OOM …`, `-LOADING …` (the whole line after `-`)
    Error(String),
    /// `:1`
    Int(i64),
    /// `$…`; `None` is the nil bulk string
    Bulk(Option<Vec<u8>>),
    /// `*…`; `None` is the nil array
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, like `redis-cli` prints it: strings as they are, integers in
    /// decimal, nil as `(nil)`, an error as its line, array elements one per line.
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => "(nil)".to_owned(),
            Reply::Array(Some(items)) => items.iter().map(Reply::text).collect::<Vec<_>>().join("\n"),
        }
    }
}

/// A `redis-server` child process on 127.0.0.1 and a random port, with its own data
/// directory; killed on drop. Started with `--save '' --appendonly no` (no persistence)
/// and `--maxmemory-policy noeviction` (what powertail requires), plus extra arguments.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A Redis without persistence, answering `PING`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A Redis that keeps every acknowledged write across a `kill -9` and
    /// [`restart`](Self::restart): `--appendonly yes --appendfsync always`.
    pub fn start_durable() -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A Redis with extra command-line arguments after the defaults (a later option
    /// wins), e.g. `&["--maxmemory", "2mb"]`. Kept for [`restart`](Self::restart).
    pub fn start_with(extra: &[&str]) -> Self {
        assert!(
            redis_available(),
            "{REDIS_SERVER} is missing: this test needs a real Redis (Debian: apt-get install redis-server; \
             .ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|&a| a.to_owned()).collect();
        // The port is free when picked, but another process may take it before Redis
        // binds it: then another one.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn_redis(port, dir.path(), &extra) {
                Ok(child) => return RedisServer { port, dir, extra, child: Some(child) },
                Err(why) if why.contains("Address already in use") => last = why,
                Err(why) => panic!("redis-server did not start: {why}"),
            }
        }
        panic!("redis-server did not start: {last}")
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (dump, append-only files), kept across restarts.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process was started and not killed since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL (also while stopped), and reaps it. Nothing is saved: what it held in
    /// memory is gone unless the append-only file has it ([`start_durable`](Self::start_durable)).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it runs, then starts it again: same port, same directory, same
    /// arguments; returns once it answers `PING`.
    pub fn restart(&mut self) {
        self.kill();
        match spawn_redis(self.port, self.dir.path(), &self.extra) {
            Ok(child) => self.child = Some(child),
            Err(why) => panic!("redis-server did not restart on port {}: {why}", self.port),
        }
    }

    /// SIGSTOP: the process stays, its sockets accept, nothing is answered.
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`stop`](Self::stop).
    pub fn cont(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid().expect("redis-server is running")).unwrap();
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// One command on a new connection; panics on an I/O error or an error reply.
    /// The reply as [`Reply::text`].
    pub fn cmd(&self, args: &[&str]) -> String {
        match self.try_cmd(args) {
            Ok(Reply::Error(e)) => panic!("redis answered {args:?} with an error: {e}"),
            Ok(reply) => reply.text(),
            Err(e) => panic!("redis on port {} did not answer {args:?}: {e}", self.port),
        }
    }

    /// One command on a new connection, the reply as it came (an error reply is `Ok`);
    /// `Err` on connection failures and when nothing came within 5 s.
    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Reply> {
        self.try_cmd_timeout(args, Duration::from_secs(5))
    }

    /// [`try_cmd`](Self::try_cmd) with another timeout for the connect and the answer.
    pub fn try_cmd_timeout(&self, args: &[&str], timeout: Duration) -> std::io::Result<Reply> {
        command(self.port, args, timeout)
    }

    /// `FLUSHALL`: every key of every database is gone (what a Redis without persistence
    /// looks like after a restart, without the restart).
    pub fn flushall(&self) {
        assert_eq!(self.cmd(&["FLUSHALL"]), "OK");
    }

    /// The keys matching `pattern` (`KEYS`), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.try_cmd(&["KEYS", pattern]) {
            Ok(Reply::Array(Some(items))) => {
                let mut keys: Vec<String> = items.iter().map(Reply::text).collect();
                keys.sort();
                keys
            }
            other => panic!("KEYS {pattern}: {other:?}"),
        }
    }

    /// `INFO memory`, as Redis writes it (`field:value` lines).
    pub fn info_memory(&self) -> String {
        self.cmd(&["INFO", "memory"])
    }

    /// One field of `INFO <section>`, e.g. `info_field("memory", "used_memory")`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = self.cmd(&["INFO", section]);
        info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).map(|v| v.trim().to_owned())
    }

    /// `used_memory` in bytes.
    pub fn used_memory(&self) -> u64 {
        self.info_field("memory", "used_memory").expect("INFO memory has used_memory").parse().unwrap()
    }

    /// `MEMORY USAGE key SAMPLES 0` (every element counted): bytes, `None` if no such key.
    pub fn memory_usage(&self, key: &str) -> Option<u64> {
        match self.try_cmd(&["MEMORY", "USAGE", key, "SAMPLES", "0"]) {
            Ok(Reply::Int(n)) => Some(u64::try_from(n).unwrap()),
            Ok(Reply::Bulk(None)) => None,
            other => panic!("MEMORY USAGE {key}: {other:?}"),
        }
    }

    /// Everything the process logged (all its runs).
    pub fn log_text(&self) -> String {
        read_lossy(&self.dir.path().join(REDIS_LOG))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- redis-server on port {} (log tail) ---\n{}", self.port, tail(&self.log_text(), 8 * 1024));
        }
        self.kill();
    }
}

/// The file in the data directory that gets Redis's log (all runs).
const REDIS_LOG: &str = "redis.log";

/// Starts `redis-server` on `port` with `dir` and waits until it answers `PING` with
/// `PONG` (not `-LOADING`). Err: why not, with its log.
fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Result<Child, String> {
    let log_path = dir.join(REDIS_LOG);
    let log = OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut child = Command::new(REDIS_SERVER)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--maxmemory-policy", "noeviction"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{REDIS_SERVER}: {e}"))?;
    let until = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Reply::Status(pong)) = command(port, &["PING"], Duration::from_secs(1)) {
            if pong == "PONG" {
                return Ok(child);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("it exited with {status}; its log:\n{}", read_lossy(&log_path)));
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no PONG within {START_DEADLINE:?}; its log:\n{}", read_lossy(&log_path)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One command to the Redis on 127.0.0.1:`port`, on a new connection.
fn command(port: u16, args: &[&str], timeout: Duration) -> std::io::Result<Reply> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request)?;
    read_reply(&mut BufReader::new(stream))
}

/// A file's text (lossy UTF-8), empty when it cannot be read.
fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Reads one RESP2 reply.
fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.strip_suffix("\r\n").ok_or_else(|| bad(format!("no CRLF: {line:?}")))?;
    let (kind, rest) = line.split_at(1.min(line.len()));
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad(format!("not a number: {line:?}")));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(int(rest)?),
        "$" => match usize::try_from(int(rest)?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut buf = vec![0; len + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(len);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match usize::try_from(int(rest)?) {
            Err(_) => Reply::Array(None),
            Ok(n) => Reply::Array(Some((0..n).map(|_| read_reply(r)).collect::<Result<_, _>>()?)),
        },
        _ => return Err(bad(format!("unknown reply: {line:?}"))),
    })
}

/// The last `max` bytes of `text` (at a char boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ---------------------------------------------------------------------------------
// Configuration

/// A `key_prefix` for this test: the test's name (libtest names the thread that runs a
/// test after it) and the process id, so tests can share one Redis. Call it from the
/// test's own body (a task on a runtime worker thread has another thread name).
pub fn test_key_prefix() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    let name: String = name
        .replace("::", ".")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' { c } else { '_' })
        .collect();
    format!("pt.{}.{name}", std::process::id())
}

/// A new `node_id` on every call in this process: `pt-0`, `pt-1`, …
pub fn next_node_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("pt-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The configuration text of one replica: [`super::app_config_toml`] for the simulator
/// at `sim_url` (fast timing: refresh interval 50 ms) and a `[cluster]` section with
/// `redis_url`, `key_prefix` = [`test_key_prefix`] (the same for every replica of the
/// test), `node_id` = [`next_node_id`] (another per call) and `lease_ms = 600`.
///
/// `extra` is merged over it with [`merge_toml`]; its lines before any table header
/// belong to `[cluster]`, so `"commit_replicas = 1\nlease_ms = 1000"` sets or replaces
/// those keys and `"[logs]\nrefresh_interval_ms = 100"` replaces that one.
pub fn cluster_config(sim_url: &str, redis_url: &str, extra: &str) -> String {
    let base = super::app_config_toml(&[sim_url.to_owned()], "");
    let cluster = format!(
        "[cluster]\nredis_url = {redis_url:?}\nkey_prefix = {:?}\nnode_id = {:?}\nlease_ms = 600\n",
        test_key_prefix(),
        next_node_id()
    );
    merge_toml(&format!("{base}\n{cluster}"), "[cluster]", extra)
}

/// `base` with `extra` merged over it, line by line: a `key = value` line of `extra`
/// replaces the line of the same key in the same table of `base`, or is added at the
/// end of that table; tables `base` lacks are appended; array tables (`[[…]]`) are
/// always appended. Lines of `extra` before its first header belong to `table` (e.g.
/// `"[cluster]"`; `""` for the root). Both texts must hold one key per line (no
/// multi-line arrays or strings), as the harness's own texts do.
pub fn merge_toml(base: &str, table: &str, extra: &str) -> String {
    fn sections(text: &str, first: &str) -> Vec<(String, Vec<String>)> {
        let mut out = vec![(first.to_owned(), Vec::new())];
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                out.push((t.to_owned(), Vec::new()));
            } else if !t.is_empty() {
                out.last_mut().unwrap().1.push(t.to_owned());
            }
        }
        out
    }
    fn key(line: &str) -> Option<&str> {
        (!line.starts_with('#')).then(|| line.split_once('=').map(|(k, _)| k.trim()))?
    }
    let norm = |header: &str| header.split('#').next().unwrap_or("").replace(' ', "");
    let mut merged = sections(base, "");
    for (header, lines) in sections(extra, table) {
        let existing =
            if header.starts_with("[[") { None } else { merged.iter().position(|(h, _)| norm(h) == norm(&header)) };
        let Some(at) = existing else {
            if !lines.is_empty() || header.starts_with('[') {
                merged.push((header, lines));
            }
            continue;
        };
        let target = &mut merged[at].1;
        for line in lines {
            match key(&line).and_then(|k| target.iter().position(|l| key(l) == Some(k))) {
                Some(i) => target[i] = line,
                None => target.push(line),
            }
        }
    }
    let mut text = String::new();
    for (header, lines) in merged {
        if !header.is_empty() {
            let _ = writeln!(text, "{header}");
        }
        for line in lines {
            let _ = writeln!(text, "{line}");
        }
    }
    text
}

/// `text` with `listen = "127.0.0.1:<port>"` in its `[server]` table (added when it has
/// none). Panics if the text sets `listen` itself: the harness owns the port.
fn with_listen(text: &str, port: u16) -> String {
    let listen = format!("listen = \"127.0.0.1:{port}\"");
    let mut in_server = false;
    let mut out = Vec::new();
    let mut placed = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_server = t.split('#').next().unwrap_or("").replace(' ', "") == "[server]";
            out.push(line.to_owned());
            if in_server {
                out.push(listen.clone());
                placed = true;
            }
            continue;
        }
        assert!(
            !(in_server && t.split_once('=').is_some_and(|(k, _)| k.trim() == "listen")),
            "the harness sets [server] listen itself: {line}"
        );
        out.push(line.to_owned());
    }
    let mut text = out.join("\n");
    if !placed {
        text = format!("[server]\n{listen}\n{text}");
    }
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------
// Replicas

/// `GET url` → (status, JSON body, or the text as a JSON string when it is not JSON).
pub async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = http.get(url).timeout(Duration::from_secs(60)).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// One replica: the real `powertail serve` binary as a child process, with its
/// configuration in a temporary file and its stderr (and stdout) in a file; killed on
/// drop (and its stderr printed when the test panics).
pub struct Replica {
    child: Option<Child>,
    port: u16,
    base: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Replica {
    /// Writes `config_toml` (with `[server] listen` on a free loopback port added) to a
    /// file, starts `powertail serve --config <file>` without `POWERTAIL_*` variables in
    /// its environment (`RUST_LOG` passes through), and waits until `GET /healthz`
    /// answers 200 (20 s at most).
    pub async fn spawn(config_toml: &str) -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            std::fs::write(dir.path().join("config.toml"), with_listen(config_toml, port)).unwrap();
            let mut replica = Replica {
                child: None,
                port,
                base: format!("http://127.0.0.1:{port}"),
                dir,
                http: reqwest::Client::new(),
            };
            match replica.start().await {
                Ok(()) => return replica,
                // Another process took the port between its pick and the bind: another one.
                Err(why) if why.contains("cannot listen") => last = why,
                Err(why) => panic!("powertail did not start: {why}"),
            }
        }
        panic!("powertail did not start: {last}")
    }

    /// Starts the process with the configuration file and waits for `/healthz`.
    async fn start(&mut self) -> Result<(), String> {
        let stderr = OpenOptions::new().create(true).append(true).open(self.stderr_path()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_powertail"));
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("POWERTAIL_") {
                cmd.env_remove(key);
            }
        }
        self.child = Some(cmd.spawn().map_err(|e| format!("{}: {e}", env!("CARGO_BIN_EXE_powertail")))?);
        let url = format!("{}/healthz", self.base);
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Ok(resp) = self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("it exited with {status}; stderr:\n{}", self.stderr_text()));
            }
            if tokio::time::Instant::now() > until {
                self.kill9();
                return Err(format!("{url} not 200 within {START_DEADLINE:?}; stderr:\n{}", self.stderr_text()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills it (SIGKILL) if it runs and starts it again: same port, same configuration,
    /// stderr appended to the same file. Returns once `/healthz` answers.
    pub async fn respawn(&mut self) {
        self.kill9();
        if let Err(why) = self.start().await {
            panic!("powertail did not restart on port {}: {why}", self.port);
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The configuration file it runs with (with `listen` added).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// `GET path` → (status, JSON body, or the text as a JSON string); 60 s at most.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&self.http, &format!("{}{path}", self.base)).await
    }

    /// SIGKILL and reap (also while stopped). No-op when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (graceful shutdown), then waits up to 15 s for the exit; SIGKILL past it.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if tokio::time::Instant::now() > until {
                let _ = child.kill();
                panic!("powertail on port {} ignored SIGTERM for 15 s; stderr:\n{}", self.port, self.stderr_text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGSTOP: the process is frozen (its listener still accepts connections, nothing
    /// answers; its lease runs out).
    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`sigstop`](Self::sigstop).
    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid().expect("powertail is running")).unwrap();
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Everything it wrote to stderr (all its runs).
    pub fn stderr_text(&self) -> String {
        read_lossy(&self.stderr_path())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- powertail replica {} (stderr tail) ---\n{}",
                self.base,
                tail(&self.stderr_text(), 16 * 1024)
            );
        }
        self.kill9();
    }
}

/// One replica in this process, for tests that need no signals: the shared [`super::Server`].
pub type InProcess = super::Server;

/// A client's cursor on one instance's log, as the viewer keeps it: the lines read so
/// far (`fromLine` of the next poll is their number) and the epoch of its first answer,
/// sent back with every later poll. Any replica may answer any poll.
pub struct Cursor {
    pub id: i64,
    /// Every line served, in order.
    pub lines: Vec<String>,
    /// The epoch of the first answer (every later one must carry the same).
    pub epoch: Option<String>,
    /// Every answer, in order.
    pub answers: Vec<Value>,
    /// Polls sent.
    pub polls: usize,
    http: reqwest::Client,
}

impl Cursor {
    /// A cursor at line 0 without an epoch.
    pub fn new(id: i64) -> Self {
        Cursor { id, lines: Vec::new(), epoch: None, answers: Vec::new(), polls: 0, http: reqwest::Client::new() }
    }

    /// The `/llm/logs` path of the next poll (`fromLine`, `epoch` when known, `waitMs`
    /// when not 0).
    pub fn path(&self, wait_ms: u32) -> String {
        let mut path = format!("/llm/logs?instanceId={}&fromLine={}", self.id, self.lines.len());
        if let Some(e) = &self.epoch {
            path.push_str(&format!("&epoch={e}"));
        }
        if wait_ms > 0 {
            path.push_str(&format!("&waitMs={wait_ms}"));
        }
        path
    }

    /// One poll of `base` that must answer 200 under the cursor's epoch (taken from the
    /// first answer); checks the cursor contract and takes the lines. The answer.
    pub async fn poll(&mut self, base: &str, wait_ms: u32) -> Value {
        let from = self.lines.len();
        let (status, body) = self.try_poll(base, wait_ms).await;
        assert_eq!(status, 200, "poll {} to {base} from line {from}: {}", self.polls, brief(&body));
        body
    }

    /// One poll of `base`: a 200 is checked and taken as [`poll`](Self::poll) does;
    /// any other answer is returned as it came, the cursor unchanged.
    pub async fn try_poll(&mut self, base: &str, wait_ms: u32) -> (u16, Value) {
        let from = self.lines.len();
        let (status, body) = get_json(&self.http, &format!("{base}{}", self.path(wait_ms))).await;
        self.polls += 1;
        if status != 200 {
            return (status, body);
        }
        assert_eq!(body["instanceId"], Value::String(self.id.to_string()));
        assert_eq!(body["fromLine"].as_u64(), Some(from as u64), "{}", brief(&body));
        let this_epoch = body["epoch"].as_str().unwrap_or_else(|| panic!("no epoch: {}", brief(&body))).to_owned();
        assert_eq!(*self.epoch.get_or_insert_with(|| this_epoch.clone()), this_epoch, "poll {} to {base}", self.polls);
        let got: Vec<String> = serde_json::from_value(body["lines"].clone()).unwrap();
        let (next, total) = (body["nextLine"].as_u64().unwrap(), body["totalLines"].as_u64().unwrap());
        assert_eq!(next, (from + got.len()) as u64, "{}", brief(&body));
        // (`fromLine > totalLines` is no error: a replica may hold fewer lines than the
        // one that served the cursor. Lines it serves it holds, and `complete` is only
        // said at the very end.)
        assert!(got.is_empty() || total >= next, "{}", brief(&body));
        assert!(body["complete"] != Value::Bool(true) || total == next, "complete short of the end: {}", brief(&body));
        self.lines.extend(got);
        self.answers.push(body.clone());
        (status, body)
    }

    /// Polls the next of `bases` in turn (round-robin through a load balancer), 40 ms
    /// apart, until an answer satisfies `done`; panics after `deadline`. The last answer.
    pub async fn follow_until(
        &mut self,
        bases: &[&str],
        deadline: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        assert!(!bases.is_empty());
        let until = tokio::time::Instant::now() + deadline;
        for poll in 0.. {
            let body = self.poll(bases[poll % bases.len()], 0).await;
            if done(&body) {
                return body;
            }
            assert!(tokio::time::Instant::now() < until, "not done in {deadline:?}; last answer {}", brief(&body));
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        unreachable!()
    }

    /// [`follow_until`](Self::follow_until) an answer says `complete`.
    pub async fn follow(&mut self, bases: &[&str], deadline: Duration) -> Value {
        self.follow_until(bases, deadline, |b| b["complete"] == Value::Bool(true)).await
    }
}

/// Follows `id`'s log like a browser whose every poll goes to the next of `bases` in
/// turn (round-robin through a load balancer) until `complete`, sending back `nextLine`
/// and, from the first answer on, its `epoch` (a [`Cursor`]). Checks the cursor
/// contract and that the epoch never changes on every answer. Returns every line served.
pub async fn follow_across(bases: &[&str], id: i64, deadline: Duration) -> Follow {
    let mut cursor = Cursor::new(id);
    let last = cursor.follow(bases, deadline).await;
    Follow { lines: cursor.lines, last, answers: cursor.answers }
}

/// An answer without its lines (their number instead), for assertion messages.
pub fn brief(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(lines) = b.get("lines").and_then(Value::as_array).map(Vec::len) {
        b["lines"] = Value::String(format!("({lines} lines)"));
    }
    b
}
