//! `powertail push`: copies stdin to stdout unchanged and pushes each line to powertail's
//! `POST /llm/logs/{instanceId}/append` (issue 19), for shell scripts:
//! `vllm serve … 2>&1 | powertail push --instance-id "$ID"`.
//!
//! The pipe comes first. Bytes go to stdout as soon as they are read (no line
//! buffering), and a line's push is only offered to a bounded queue, so a slow or
//! absent powertail never slows the pipe: a full queue drops the push and counts it.
//! One task sends the queue in batches as the Java `PushLogger` does (20 lines or 100 ms,
//! one in flight, retried under the same `seq`, 401/403/404/405 turn pushing off, a 413
//! halves the batch). At end of input it sends the rest and a batch with `final: true`
//! (waiting at most `--close-timeout-ms`), writes a one-line summary to stderr and exits 0,
//! so that a pipeline's status is the upstream's.
//!
//! A leaf module: reqwest and tokio only, nothing from the service.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Environment variable holding the API token (scope `logs:push`); never echoed or logged.
pub const ENV_TOKEN: &str = "POWERTAIL_TOKEN";

/// A pushed line is cut after this many bytes (a "line" of binary output without newlines
/// must not grow without bound); the rest follows as further lines.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Lines a batch holds (sent at once when this many wait).
const BATCH_SIZE: usize = 20;
/// Lines a catch-up batch holds at most (halved after a 413).
const MAX_BATCH_SIZE: usize = 200;
/// How long a line waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(100);
/// Lines queued at most; more are dropped and counted.
const QUEUE_CAPACITY: usize = 10_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one batch is retried before it is given up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Copy stdin to stdout, pushing each line to powertail (issue 19; token from
/// `POWERTAIL_TOKEN`).
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The PowerJob instance id whose log the lines belong to.
    #[arg(long, value_parser = parse_instance_id)]
    pub instance_id: String,
    /// powertail's root URL.
    #[arg(long, env = "POWERTAIL_URL", hide_env_values = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Names this pusher run (`source` of each batch); default `<worker>/<random hex>`.
    #[arg(long)]
    pub source: Option<String>,
    /// The worker's address as PowerJob writes it in its log lines; default this host's
    /// address and port 27777.
    #[arg(long, env = "POWERTAIL_WORKER", hide_env_values = true)]
    pub worker: Option<String>,
    /// Take each line's level from a leading DEBUG, INFO, WARN(ING), ERROR, CRITICAL or
    /// FATAL word (after an optional `(…)` prefix, in optional brackets); else INFO.
    #[arg(long)]
    pub level_from_prefix: bool,
    /// How long to wait at end of input for the last batches, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub close_timeout_ms: u64,
}

fn parse_instance_id(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not an instance id (decimal digits)"))
    }
}

/// One line as it was read.
#[derive(Debug, Clone, Serialize)]
struct Line {
    ts: i64,
    level: &'static str,
    text: String,
}

/// The body of one batch (issue 19 item 1), in that order.
#[derive(Serialize)]
struct Body<'a> {
    source: &'a str,
    seq: u64,
    worker: &'a str,
    timestamp: i64,
    #[serde(rename = "final")]
    last: bool,
    lines: &'a [Line],
}

/// What happened to the lines; every line read is `queued` or `dropped`, and a queued one
/// is later `sent`, `rejected` (refused, given up) or abandoned at the close timeout.
#[derive(Debug, Default)]
struct Stats {
    lines: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    sent: AtomicU64,
    rejected: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
    disabled: AtomicBool,
    disabled_by: AtomicU64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The level a line names at its start (`--level-from-prefix`): `INFO 11-25 …`,
/// `(APIServer pid=1) WARNING …`, `[ERROR] …`, `ERROR:root:…`; else INFO.
#[must_use]
pub fn level_of(line: &str) -> &'static str {
    let mut s = line.trim_start();
    if s.starts_with('(') {
        if let Some(end) = s.find(')') {
            s = s[end + 1..].trim_start();
        }
    }
    let s = s.strip_prefix('[').unwrap_or(s);
    let word_end = s.find(|c: char| !c.is_ascii_uppercase()).unwrap_or(s.len());
    let (word, rest) = s.split_at(word_end);
    if !(rest.is_empty() || rest.starts_with([' ', ':', ']', '\t'])) {
        return "INFO";
    }
    match word {
        "DEBUG" | "TRACE" => "DEBUG",
        "WARN" | "WARNING" => "WARN",
        "ERROR" | "CRITICAL" | "FATAL" => "ERROR",
        _ => "INFO",
    }
}

/// This host's address (its name resolved) and PowerJob's worker port 27777.
fn default_worker() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|name| (name.trim(), 27777).to_socket_addrs().ok())
        .and_then(|mut addrs| addrs.find(std::net::SocketAddr::is_ipv4))
        .map_or_else(|| "127.0.0.1".to_owned(), |a| a.ip().to_string());
    format!("{host}:27777")
}

/// Splits bytes into lines at `\n`, `\r\n` or `\r` (as PowerJob's shell processors do),
/// across reads.
#[derive(Debug, Default)]
struct Splitter {
    current: Vec<u8>,
    after_cr: bool,
}

impl Splitter {
    fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            if b == b'\n' || b == b'\r' {
                emit(&self.current);
                self.current.clear();
                self.after_cr = b == b'\r';
            } else {
                self.current.push(b);
                if self.current.len() >= MAX_LINE_BYTES {
                    emit(&self.current);
                    self.current.clear();
                }
            }
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.current.is_empty() {
            emit(&self.current);
            self.current.clear();
        }
    }
}

/// Runs `powertail push`: returns at end of input, once the last batches are sent or the
/// close timeout passed. Never fails: a bad `--url` is said on stderr and the lines still
/// pass, unpushed (the pipe must not break because of powertail).
///
/// # Errors
/// None from powertail or the URL; only a failure of the runtime itself.
pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel::<Line>(QUEUE_CAPACITY);
    let sending = match Sender::new(&args, Arc::clone(&stats)) {
        Ok(sender) => Some(tokio::spawn(sender.run(rx))),
        Err(e) => {
            eprintln!("powertail push: {e}; the lines pass but are not pushed");
            stats.disabled.store(true, Ordering::Relaxed);
            None
        }
    };

    let level_from_prefix = args.level_from_prefix;
    let reader_stats = Arc::clone(&stats);
    tokio::task::spawn_blocking(move || copy_and_queue(&tx, &reader_stats, level_from_prefix)).await?;

    if let Some(sending) = sending {
        let abort = sending.abort_handle();
        if tokio::time::timeout(Duration::from_millis(args.close_timeout_ms), sending).await.is_err() {
            abort.abort();
        }
    }
    eprintln!("{}", summary(&stats));
    Ok(())
}

/// Copies stdin to stdout as it comes and queues each line's push without waiting. A
/// closed stdout (the reader of the pipe went away) stops the copy, not the reading
/// and pushing, so the upstream is never stopped by a broken pipe.
fn copy_and_queue(tx: &mpsc::Sender<Line>, stats: &Stats, level_from_prefix: bool) {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut stdout_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut splitter = Splitter::default();
    let mut offer = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let level = if level_from_prefix { level_of(&text) } else { "INFO" };
        stats.lines.fetch_add(1, Ordering::Relaxed);
        if stats.disabled.load(Ordering::Relaxed) || tx.try_send(Line { ts: now_ms(), level, text }).is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.queued.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("powertail push: reading stdin: {e}");
                break;
            }
        };
        if stdout_open && stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
            stdout_open = false;
        }
        splitter.feed(&buf[..n], &mut offer);
    }
    splitter.finish(&mut offer);
}

fn summary(stats: &Stats) -> String {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (queued, sent, rejected) = (get(&stats.queued), get(&stats.sent), get(&stats.rejected));
    let mut s = format!(
        "powertail push: {} lines, {sent} pushed in {} batches, {} dropped, {rejected} rejected, {} abandoned, {} retries",
        get(&stats.lines),
        get(&stats.batches),
        get(&stats.dropped),
        queued.saturating_sub(sent + rejected),
        get(&stats.retries),
    );
    match (stats.disabled.load(Ordering::Relaxed), get(&stats.disabled_by)) {
        (false, _) => {}
        (true, 0) => s.push_str("; pushing off (see above)"),
        (true, status) => s.push_str(&format!("; pushing turned off after HTTP {status}")),
    }
    s
}

/// The sending task: batches from the queue, one in flight.
struct Sender {
    http: reqwest::Client,
    endpoint: String,
    authority: String,
    token: Option<String>,
    source: String,
    worker: String,
    seq: u64,
    max_batch: usize,
    stats: Arc<Stats>,
    warned: bool,
}

impl Sender {
    fn new(args: &PushArgs, stats: Arc<Stats>) -> Result<Self, String> {
        // The URL is not echoed: it may hold a password.
        let base = url::Url::parse(&args.url).map_err(|e| format!("--url is not a URL ({e})"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("--url must be an http(s) URL, not {}:", base.scheme()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Self {
            http,
            endpoint: format!("{}/llm/logs/{}/append", args.url.trim_end_matches('/'), args.instance_id),
            authority: match base.port() {
                Some(port) => format!("{}:{port}", base.host_str().unwrap_or_default()),
                None => base.host_str().unwrap_or_default().to_owned(),
            },
            token: std::env::var(ENV_TOKEN).ok().filter(|t| !t.trim().is_empty()),
            // Filled in by `run`, off the pipe's path: naming the host may wait for DNS.
            source: args.source.clone().unwrap_or_default(),
            worker: args.worker.clone().unwrap_or_default(),
            seq: 0,
            max_batch: MAX_BATCH_SIZE,
            stats,
            warned: false,
        })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Line>) {
        if self.worker.is_empty() {
            self.worker =
                tokio::task::spawn_blocking(default_worker).await.unwrap_or_else(|_| "127.0.0.1:27777".into());
        }
        if self.source.is_empty() {
            self.source = format!("{}/{:016x}", self.worker, rand::random::<u64>());
        }
        let mut final_sent = false;
        while let Some(first) = rx.recv().await {
            // The line's own time stamp starts its linger, bounded so that a wall clock set
            // back cannot hold it longer.
            let age = u64::try_from(now_ms().saturating_sub(first.ts)).unwrap_or(0);
            let deadline = Instant::now() + LINGER.saturating_sub(Duration::from_millis(age));
            let mut batch = vec![first];
            let mut closed = false;
            while batch.len() < BATCH_SIZE {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(line)) => batch.push(line),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // Lines that queued up meanwhile (one batch is in flight at a time) catch up
            // in batches of up to max_batch.
            while !closed && batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(line) => batch.push(line),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            self.deliver(batch, closed).await;
            if closed {
                final_sent = true;
                break;
            }
        }
        if !final_sent && !self.stats.disabled.load(Ordering::Relaxed) {
            self.deliver(Vec::new(), true).await;
        }
    }

    fn body(&self, lines: &[Line], last: bool) -> Vec<u8> {
        let body = Body {
            source: &self.source,
            seq: self.seq,
            worker: &self.worker,
            timestamp: lines.first().map_or_else(now_ms, |l| l.ts),
            last,
            lines,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    fn reject(&self, lines: &[Line]) {
        self.stats.rejected.fetch_add(lines.len() as u64, Ordering::Relaxed);
    }

    /// Sends one batch until powertail acknowledges it (2xx), refuses it for good (a 4xx
    /// but 408, 425, 429), or [`GIVE_UP_AFTER`] passes; a 413 sends it in halves.
    async fn deliver(&mut self, lines: Vec<Line>, last: bool) {
        let mut pieces = VecDeque::from([(lines, last)]);
        while let Some((lines, last)) = pieces.pop_front() {
            if self.stats.disabled.load(Ordering::Relaxed) {
                self.reject(&lines);
                continue;
            }
            if let Some((first, second)) = self.deliver_one(&lines, last).await {
                pieces.push_front(second);
                pieces.push_front(first);
            }
        }
    }

    /// One batch under one seq; `Some` halves to send instead after a 413.
    async fn deliver_one(&mut self, lines: &[Line], last: bool) -> Option<((Vec<Line>, bool), (Vec<Line>, bool))> {
        let payload = self.body(lines, last);
        let started = Instant::now();
        let mut failures: u32 = 0;
        loop {
            let mut request = self
                .http
                .post(&self.endpoint)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::USER_AGENT, concat!("powertail-push/", env!("CARGO_PKG_VERSION")))
                .body(payload.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let (status, retry_after) = match request.send().await {
                Ok(answer) => {
                    let retry_after = answer
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (answer.status().as_u16(), retry_after)
                }
                Err(e) => {
                    self.warn(&causes(&e.without_url()));
                    (0, None)
                }
            };
            if (200..300).contains(&status) {
                self.stats.sent.fetch_add(lines.len() as u64, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.seq += 1;
                return None;
            }
            if matches!(status, 401 | 403 | 404 | 405) {
                // No endpoint (an older powertail), no scope, or an instance it does not
                // know: nothing later can succeed. PowerJob's log still has every line.
                self.stats.disabled_by.store(u64::from(status), Ordering::Relaxed);
                self.stats.disabled.store(true, Ordering::Relaxed);
                self.reject(lines);
                return None;
            }
            if status == 413 && lines.len() > 1 {
                // Nothing was applied: the halves go under this seq and the next, and
                // later batches stay at most that large.
                let half = lines.len() / 2;
                self.max_batch = self.max_batch.min(half).max(1);
                return Some(((lines[..half].to_vec(), false), (lines[half..].to_vec(), last)));
            }
            if status != 0 {
                self.warn(&format!("HTTP {status}"));
            }
            let transient = status == 0 || matches!(status, 408 | 425 | 429) || status >= 500;
            if !transient {
                // Refused for good (400, 413, ...): nothing was applied, the seq is free.
                self.reject(lines);
                return None;
            }
            failures += 1;
            if started.elapsed() > GIVE_UP_AFTER {
                // Maybe applied, maybe not: the next batch takes the next seq, powertail
                // skips the gap after its wait, and the polled log fills it in.
                self.reject(lines);
                self.seq += 1;
                return None;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let mut backoff = MAX_BACKOFF.min(Duration::from_millis(100) * 2u32.pow((failures - 1).min(16)));
            if let Some(after) = retry_after {
                backoff = MAX_BACKOFF.min(backoff.max(after));
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// The first failure of the run goes to stderr (never the token); later ones only
    /// count, and the summary says what became of the lines.
    fn warn(&mut self, what: &str) {
        if !std::mem::replace(&mut self.warned, true) {
            eprintln!("powertail push: push to {} failed ({what}); retrying, the lines still pass", self.authority);
        }
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message says little).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    for _ in 0..8 {
        let Some(cause) = next else { break };
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_from_prefixes() {
        let cases = [
            ("INFO 11-25 12:00:01 [loader.py:12] Loading weights", "INFO"),
            ("WARNING 11-25 something", "WARN"),
            ("WARN: x", "WARN"),
            ("ERROR:root:boom", "ERROR"),
            ("[ERROR] boom", "ERROR"),
            ("(APIServer pid=12) ERROR 11-25 CUDA out of memory", "ERROR"),
            ("  DEBUG x", "DEBUG"),
            ("CRITICAL", "ERROR"),
            ("ERRORS are fine", "INFO"),
            ("Error: lower case is text", "INFO"),
            ("plain text", "INFO"),
            ("", "INFO"),
            ("(unclosed ERROR", "INFO"),
        ];
        for (line, want) in cases {
            assert_eq!(level_of(line), want, "{line:?}");
        }
    }

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = Splitter::default();
        for c in chunks {
            s.feed(c, |l| out.push(l.to_vec()));
        }
        s.finish(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_split_at_lf_crlf_and_cr_across_reads() {
        let got = split(&[b"a\nb\r", b"\nc\rd", b"\n\ne"]);
        let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"", b"e"];
        assert_eq!(got, want);
        assert_eq!(split(&[b"x\n"]), vec![b"x".to_vec()]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn a_long_line_is_cut() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let got = split(&[&long]);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![MAX_LINE_BYTES, 10]);
    }

    #[test]
    fn instance_ids_are_digits() {
        assert!(parse_instance_id("677182124851200064").is_ok());
        for bad in ["", "12a", "-1", "123456789012345678901"] {
            assert!(parse_instance_id(bad).is_err(), "{bad}");
        }
    }
}
