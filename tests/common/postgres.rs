//! A real PostgreSQL per test (Debian's `postgresql` package), like [`super::cluster::RedisServer`]:
//! `initdb` into a temporary directory (trust authentication, UTF-8, `C.UTF-8`), then
//! `postgres` on a free loopback port with its Unix socket in that directory. As root
//! (CI), both run as the `postgres` user (or `nobody`), which PostgreSQL requires.
//! Dropped = stopped and deleted.
//!
//! Tests that need it are `#[ignore = "needs postgresql (apt-get install postgresql)"]`;
//! `.ci/run` installs the package and runs ignored tests. [`PgServer::start`] panics with
//! an explanation when the binaries are missing, so such a test never passes without
//! doing its work. Blocking helpers (processes, a few hundred milliseconds to start).

use std::fs::OpenOptions;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::free_port;

/// Where Debian installs each major version's server binaries.
const PG_ROOT: &str = "/usr/lib/postgresql";

/// How long a start or stop may take.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The newest installed `/usr/lib/postgresql/<major>/bin` with `initdb` and `postgres`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_ROOT)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((major, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// Whether a PostgreSQL server is installed.
pub fn postgres_available() -> bool {
    pg_bin_dir().is_some()
}

/// The user and group the server runs as: ours, or `postgres` (else `nobody`) as root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: a NUL-terminated name; the result is read at once, before any other
        // getpw* call on this thread could overwrite it.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null, points to a valid passwd record.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    panic!("running as root, but there is neither a postgres nor a nobody user to run PostgreSQL as")
}

/// One PostgreSQL server: own data directory, own port, trust authentication.
pub struct PgServer {
    bin: PathBuf,
    /// Where data, socket and log live.
    root: PathBuf,
    /// Deleted on drop (`None`: a directory the caller keeps, [`PgServer::start_in`]).
    _temp: Option<tempfile::TempDir>,
    port: u16,
    user: Option<(u32, u32)>,
    /// `-c name=value` settings after the defaults.
    extra: Vec<String>,
    child: Option<Child>,
}

impl PgServer {
    /// `initdb`, then a running server that accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("powertail-pg").tempdir().unwrap();
        Self::start_at(dir.path().to_owned(), Some(dir), &[])
    }

    /// A server on the data kept in `root` (created and `initdb`'d when missing, kept
    /// after the drop), with extra settings (`&["shared_buffers=512MB"]`): for the
    /// benchmarks, whose data takes minutes to load.
    pub fn start_in(root: &Path, settings: &[&str]) -> Self {
        std::fs::create_dir_all(root).unwrap();
        Self::start_at(root.to_owned(), None, settings)
    }

    fn start_at(root: PathBuf, temp: Option<tempfile::TempDir>, settings: &[&str]) -> Self {
        let bin = pg_bin_dir().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL under {PG_ROOT}/<version>/bin: this test needs a real PostgreSQL \
                 (Debian: apt-get install postgresql; .ci/run installs it)"
            )
        });
        let user = run_as();
        let fresh = !root.join("data").join("PG_VERSION").is_file();
        for sub in ["data", "sock"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        if let Some((uid, gid)) = user {
            for path in [root.clone(), root.join("data"), root.join("sock")] {
                chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let extra = settings.iter().map(|&s| s.to_owned()).collect();
        let mut server = PgServer { bin, root, _temp: temp, port: 0, user, extra, child: None };
        if fresh {
            server.initdb();
        }
        // The port is free when picked, but another process may take it first: retry.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => last = why,
            }
        }
        panic!("postgres did not start: {last}")
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .args(["-D"])
            .arg(self.data_dir())
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.stdin(Stdio::null()).env("LC_ALL", "C.UTF-8").current_dir(&self.root);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Starts `postgres` on `self.port` and waits until it accepts queries.
    fn spawn(&mut self) -> Result<(), String> {
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        if let Some((uid, gid)) = self.user {
            chown(self.log_path(), Some(uid), Some(gid)).unwrap();
        }
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.root.join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test database: nothing survives a crash anyway, so no waiting on the disk.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=50"])
            .args(self.extra.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        let until = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("postgres exited with {status}: {}", self.log_text()));
            }
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("postgres not ready within {START_DEADLINE:?}: {}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (kept across [`stop`](Self::stop) and [`restart`](Self::restart)).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A fast shutdown (SIGINT: sessions are ended, the data is kept); returns once the
    /// server exited. Connections are refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).unwrap();
            // SAFETY: `kill` has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let until = Instant::now() + START_DEADLINE;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > until {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Stops it if it runs, then starts it again: same port, same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(why) = self.spawn() {
            panic!("postgres did not restart on port {}: {why}", self.port);
        }
    }

    /// Everything the server logged.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let mut start = log.len().saturating_sub(8 * 1024);
            while !log.is_char_boundary(start) {
                start += 1;
            }
            let tail = &log[start..];
            eprintln!("--- postgres on port {} (log tail) ---\n{tail}", self.port);
        }
        self.stop();
    }
}
