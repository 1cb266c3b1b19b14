//! `powertail demo --replicas N [--redis URL]`: cluster mode on one machine.
//!
//! One simulated PowerJob server (in this process), one Redis (the user's, or a
//! `redis-server` from `PATH` that the demo starts on a free loopback port with the
//! settings cluster mode needs), and N replicas as child processes of this binary
//! (`powertail demo --attach …`, each with the demo's timings and jobs), so that any of
//! them can be killed (`kill -9 <pid>`) to watch a reader go on through another. One
//! banner names every URL, the app, and the nginx upstream to paste. Ctrl-C (or SIGTERM)
//! stops the replicas (each drains its requests), then the Redis it started.

use std::fmt::Write as _;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use powerjob_sim::Simulator;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

use super::{try_it, APP_NAME, APP_PASSWORD, KEY_PREFIX};

/// How long Redis and each replica may take to answer after they were started.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How often a start is probed, and the replicas checked for an exit.
const POLL: Duration = Duration::from_millis(100);
/// How long a stopping replica may take (it drains for at most [`crate::DRAIN_TIMEOUT`]).
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Most replicas the demo starts.
pub const MAX_REPLICAS: u16 = 16;

/// What `powertail demo --replicas N` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address of the first replica; the others take the next ports (port 0: any free
    /// ports).
    pub listen: SocketAddr,
    /// The demo's time factor (`--scale`), for the simulator and every replica.
    pub scale: f64,
    /// The user's `--config`, under the demo's own keys on every replica.
    pub user_config: Option<PathBuf>,
    /// How many replicas, 1..=[`MAX_REPLICAS`].
    pub replicas: u16,
    /// `redis://…`; `None`: start `redis-server` from `PATH`.
    pub redis: Option<String>,
    /// Share of the simulated processors' pushed batches lost on the way (issue 19).
    pub push_drop: f64,
}

/// Runs the replicas demo until `shutdown` resolves.
///
/// # Errors
/// No Redis (none given and no `redis-server` on `PATH`), a port that cannot be bound, a
/// replica that exits or does not answer within [`START_DEADLINE`].
pub async fn run(options: Options, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    if !(1..=MAX_REPLICAS).contains(&options.replicas) {
        bail!("--replicas must be between 1 and {MAX_REPLICAS}, not {}", options.replicas);
    }
    let dir = TempDir::new()?;
    let redis = match &options.redis {
        Some(url) => Redis { url: url.clone(), child: None },
        None => Redis::start(dir.path()).await?,
    };
    let sim =
        Simulator::spawn(super::sim_config(options.scale)).await.context("cannot start the PowerJob simulator")?;
    let addrs = addresses(options.listen, options.replicas)?;
    let mut replicas = Vec::with_capacity(addrs.len());
    for (k, addr) in addrs.iter().enumerate() {
        replicas.push(Replica::spawn(&options, *addr, &sim.url(), &redis.url, k + 1)?);
    }
    let started = async {
        for replica in &mut replicas {
            replica.wait_ready().await?;
        }
        anyhow::Ok(())
    };
    if let Err(error) = started.await {
        stop_all(&mut replicas).await;
        return Err(error);
    }
    // The processors push to every replica in turn, as behind a load balancer.
    let mut pusher = super::pusher(addrs[0], options.push_drop);
    pusher.urls = replicas.iter().map(Replica::url).collect();
    sim.set_pusher(Some(pusher));
    println!("{}", banner(&sim.url(), &redis, &replicas, options.push_drop));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut check = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = check.tick() => {
                for replica in &mut replicas {
                    replica.report_exit();
                }
            }
        }
    }
    stop_all(&mut replicas).await;
    drop(redis);
    drop(dir);
    Ok(())
}

/// The replicas' addresses: `listen`'s port and the next ones, or free ports.
fn addresses(listen: SocketAddr, n: u16) -> anyhow::Result<Vec<SocketAddr>> {
    if listen.port() == 0 {
        // Held together so that they differ; released for the replicas to bind.
        let held: Vec<StdListener> = (0..n)
            .map(|_| StdListener::bind(SocketAddr::new(listen.ip(), 0)))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot find free ports on {}", listen.ip()))?;
        return Ok(held.iter().map(StdListener::local_addr).collect::<Result<_, _>>()?);
    }
    (0..n)
        .map(|k| {
            let port = listen.port().checked_add(k).context("the replicas' ports go past 65535")?;
            Ok(SocketAddr::new(listen.ip(), port))
        })
        .collect()
}

/// The Redis the replicas share; a `redis-server` started here is killed on drop.
struct Redis {
    url: String,
    child: Option<Child>,
}

impl Redis {
    /// `redis-server` from `PATH` on a free loopback port: no persistence, `noeviction`
    /// (what cluster mode requires), its log and files in `dir`.
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let Some(binary) = on_path("redis-server") else {
            bail!(
                "--replicas needs a Redis: give one with --redis redis://HOST:PORT/DB, or install redis-server \
                 (Debian: apt-get install redis-server) and the demo starts its own"
            );
        };
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(&binary);
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction", "--logfile", "redis.log"])
            .current_dir(dir)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let until = tokio::time::Instant::now() + START_DEADLINE;
        while !pings(port).await {
            if let Some(status) = child.try_wait()? {
                bail!("redis-server exited ({status}); see {}", dir.join("redis.log").display());
            }
            if tokio::time::Instant::now() >= until {
                bail!("redis-server did not answer within {START_DEADLINE:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(Redis { url: format!("redis://127.0.0.1:{port}/0"), child: Some(child) })
    }
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING`.
async fn pings(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        std::io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), probe).await, Ok(Ok(true)))
}

/// `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A child that gets SIGTERM when the demo dies, however it dies (Linux).
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` is async-signal-safe and touches no memory of
    // the parent; it only sets an attribute of the child process.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// One replica: `powertail demo --attach SIM --redis URL --node-id demo-K --listen ADDR`.
struct Replica {
    number: usize,
    addr: SocketAddr,
    node_id: String,
    child: Child,
    pid: Option<u32>,
    exited: Option<ExitStatus>,
}

impl Replica {
    fn spawn(
        options: &Options,
        addr: SocketAddr,
        sim_url: &str,
        redis_url: &str,
        number: usize,
    ) -> anyhow::Result<Self> {
        let node_id = format!("demo-{number}");
        let exe = std::env::current_exe().context("cannot find the powertail binary to start the replicas")?;
        let mut command = Command::new(exe);
        command
            .args(["demo", "--listen", &addr.to_string(), "--attach", sim_url, "--node-id", &node_id])
            .env("POWERTAIL_DEMO_SCALE", options.scale.to_string())
            // The URL may hold a password: not on the command line, where `ps` shows it.
            .env(super::ATTACH_REDIS_ENV, redis_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some(path) = &options.user_config {
            command.arg("--config").arg(path);
        }
        die_with_parent(&mut command);
        let child = command.spawn().context("cannot start a replica")?;
        let pid = child.id();
        Ok(Replica { number, addr, node_id, child, pid, exited: None })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `/healthz` answers 200.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("{}/healthz", self.url());
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("replica {} ({}) exited at start ({status}); its messages are above", self.number, self.addr);
            }
            if tokio::time::Instant::now() >= until {
                bail!("replica {} did not answer on {} within {START_DEADLINE:?}", self.number, self.addr);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Says once that the replica exited (e.g. the user killed it to try a failover).
    fn report_exit(&mut self) {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                println!("replica {} ({}) exited ({status}); the others go on serving", self.number, self.url());
            }
        }
    }

    /// SIGTERM, then SIGKILL if it has not stopped within [`STOP_DEADLINE`].
    async fn stop(&mut self) {
        if self.exited.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = self.pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: `kill` only sends a signal; `pid` is our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

async fn stop_all(replicas: &mut [Replica]) {
    futures::future::join_all(replicas.iter_mut().map(Replica::stop)).await;
}

/// The demo's one banner: every URL, the app, the Redis, the nginx upstream.
fn banner(sim_url: &str, redis: &Redis, replicas: &[Replica], push_drop: f64) -> String {
    let first = replicas.first().map(Replica::url).unwrap_or_default();
    let redis_origin = if redis.child.is_some() { "started by the demo" } else { "yours" };
    let mut text = format!(
        "\npowertail demo: {n} replicas in cluster mode, one simulated PowerJob, one Redis\n\n  \
         PowerJob:  {sim_url}  (simulated; app {APP_NAME:?}, password {APP_PASSWORD:?})\n  \
         Redis:     {redis_url}  ({redis_origin}; key prefix {KEY_PREFIX:?})\n",
        n = replicas.len(),
        redis_url = redacted(&redis.url),
    );
    for r in replicas {
        let _ = writeln!(text, "  replica {}: {}  (pid {}, node {})", r.number, r.url(), r.pid.unwrap_or(0), r.node_id);
    }
    let _ = write!(
        text,
        "\n  viewer:    {first}/ (any replica serves any instance and cursor)\n\n\
         {try_it}\n  \
         nginx: put the replicas in the upstream of deploy/nginx-replicas.conf, or use the\n  \
         plain-HTTP local config of README \"Running several replicas\":\n    \
         upstream powertail_replicas {{\n        hash $powertail_instance consistent;\n{servers}    }}\n\n  \
         failover: kill -9 a replica's pid; a reader's next poll through nginx goes on from its cursor.\n\n\
         {pushing}\n\
         Ctrl-C stops them all.\n",
        try_it = try_it(&first),
        pushing = super::pushing(push_drop),
        servers = replicas
            .iter()
            .map(|r| format!("        server {} max_fails=1 fail_timeout=5s;\n", r.addr))
            .collect::<String>(),
    );
    text
}

/// `url` without its password.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// A directory of the demo's own (Redis's files and log), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("powertail-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_take_consecutive_ports_or_free_ones() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ports: Vec<u16> = addresses(listen, 3).unwrap().iter().map(SocketAddr::port).collect();
        assert_eq!(ports, [8080, 8081, 8082]);
        assert!(addresses("127.0.0.1:65535".parse().unwrap(), 2).is_err());
        let any = addresses("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        assert!(any.iter().all(|a| a.port() != 0 && a.ip() == listen.ip()));
        assert_eq!(any.iter().map(SocketAddr::port).collect::<std::collections::BTreeSet<_>>().len(), 4);
    }

    #[test]
    fn the_banner_never_shows_a_redis_password() {
        assert_eq!(redacted("redis://:hunter2@127.0.0.1:6379/0"), "redis://:***@127.0.0.1:6379/0");
        assert_eq!(redacted("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert!(!redacted("redis://u:hunter2@h/0").contains("hunter2"));
    }
}
