//! Configuration errors as a user meets them, through the real binary: one line on
//! stderr that names the key, the value and what is allowed; exit status 2; no
//! "Caused by" repeat, no figment profile (`default.`), no backtrace even with
//! `RUST_BACKTRACE=1`, and no secret echoed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_powertail");

const POWERJOB: &str =
    "[powerjob]\naddresses = [\"http://127.0.0.1:9\"]\napp_name = \"app\"\napp_password = \"hunter2-secret\"\n";

/// A command for the binary in `dir`, with a clean environment that asks for backtraces.
fn powertail(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the binary in a directory holding `config.toml` = `toml` (none when `None`),
/// with `args` and `env`, and returns its exit code and stderr, after checking what
/// every configuration error shares: status 2 and a single line with no repeat, no
/// profile prefix and no backtrace.
fn fails(toml: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(toml) = toml {
        std::fs::write(dir.path().join("config.toml"), toml).unwrap();
    }
    let mut cmd = powertail(dir.path());
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.spawn().unwrap().wait_with_output_within(Duration::from_secs(30));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for noise in ["Caused by", "default.", "backtrace", "Stack", "panicked", "hunter2"] {
        assert!(!stderr.contains(noise), "{noise:?} in {stderr}");
    }
    (dir, stderr.trim_end().to_owned())
}

/// `wait_with_output`, bounded: a binary that does not exit is killed and fails the test.
trait WithinDeadline {
    fn wait_with_output_within(self, limit: Duration) -> std::process::Output;
}

impl WithinDeadline for std::process::Child {
    fn wait_with_output_within(mut self, limit: Duration) -> std::process::Output {
        let deadline = Instant::now() + limit;
        loop {
            if self.try_wait().unwrap().is_some() {
                return self.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                self.kill().unwrap();
                panic!("powertail did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn an_unknown_key_is_named_without_the_profile_with_the_keys_allowed() {
    let (_dir, line) = fails(Some(&format!("{POWERJOB}[logs]\nrefresh_intervall_ms = 300\n")), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: `logs.refresh_intervall_ms` in config.toml: is not a known key; [logs] takes \
         `refresh_interval_ms`, `first_read_delay_ms`, `cache_max_bytes`, `idle_evict_ms`, `max_followed_instances`, \
         `max_lines_per_instance`, `max_following_bytes`, `recheck_complete_ms` or `read_wait_ms`"
    );
}

#[test]
fn a_wrong_type_names_the_key_the_value_and_the_type_wanted() {
    let (_dir, line) = fails(Some(&format!("{POWERJOB}[logs]\nrefresh_interval_ms = \"fast\"\n")), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: `logs.refresh_interval_ms` in config.toml: expected a whole number (0 or \
         more), got \"fast\""
    );
    let (_dir, line) = fails(Some(&format!("{POWERJOB}[server]\nlog_format = \"xml\"\n")), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: `server.log_format` in config.toml: expected `text` or `json`, got \"xml\""
    );
}

#[test]
fn an_environment_override_names_its_variable() {
    let env = [("POWERTAIL_LOGS__REFRESH_INTERVAL_MS", "fast")];
    let (_dir, line) = fails(Some(POWERJOB), &[], &env);
    assert_eq!(
        line,
        "error: invalid configuration: `logs.refresh_interval_ms` from POWERTAIL_LOGS__REFRESH_INTERVAL_MS: \
         expected a whole number (0 or more), got \"fast\""
    );
}

#[test]
fn a_missing_section_or_key_is_named() {
    let (_dir, line) = fails(Some("[logs]\nrefresh_interval_ms = 300\n"), &[], &[]);
    assert_eq!(line, "error: invalid configuration: the section [powerjob] is required but missing");
    let (_dir, line) = fails(Some(&POWERJOB.replace("app_name = \"app\"\n", "")), &[], &[]);
    assert_eq!(line, "error: invalid configuration: `powerjob.app_name` in config.toml: is required but missing");
}

#[test]
fn a_value_out_of_range_says_the_range_and_the_value() {
    let (_dir, line) = fails(Some(&format!("{POWERJOB}[logs]\nrefresh_interval_ms = 1\n")), &[], &[]);
    assert_eq!(line, "error: invalid configuration: `logs.refresh_interval_ms` must be between 10 and 600000, got 1");
}

#[test]
fn an_out_of_range_port_says_so() {
    let (_dir, line) = fails(Some(&format!("[server]\nlisten = \"127.0.0.1:70000\"\n{POWERJOB}")), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: `server.listen` in config.toml: \"127.0.0.1:70000\": the port 70000 is out of \
         range (0 to 65535)"
    );
}

#[test]
fn without_config_toml_or_config_the_message_says_what_to_do() {
    let (dir, line) = fails(None, &[], &[]);
    let dir = dir.path().display();
    assert_eq!(
        line,
        format!(
            "error: no configuration file: there is no config.toml in {dir} and no --config was given; start from \
             the repository's config.toml (see the README, \"Running against a real PowerJob\") and run \
             `powertail --config FILE`"
        )
    );
    let (_dir, line) = fails(None, &["--config", "elsewhere.toml"], &[]);
    assert_eq!(line, "error: invalid configuration: --config file elsewhere.toml does not exist");
}

#[test]
fn secrets_are_never_echoed() {
    // A password of the wrong type, an unterminated one, a Redis URL with a password,
    // and a PowerJob address with one that does not parse.
    let number = POWERJOB.replace("\"hunter2-secret\"", "1234567890123");
    let (_dir, line) = fails(Some(&number), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: `powerjob.app_password` in config.toml: expected a string, got a value not \
         shown (the key holds a secret)"
    );
    let (_dir, line) = fails(Some(&POWERJOB.replace("hunter2-secret\"", "hunter2-secret")), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: config.toml: TOML parse error at line 4, column 31: invalid basic string"
    );
    let redis = format!("{POWERJOB}[cluster]\nredis_url = \"http://:hunter2-redis@h:1\"\n");
    let (_dir, line) = fails(Some(&redis), &[], &[]);
    assert_eq!(
        line,
        "error: invalid configuration: `cluster.redis_url` must be a redis:// or rediss:// URL with a host"
    );
    let address = POWERJOB.replace("http://127.0.0.1:9", "http://admin:hunter2-pw@127.0.0.1:99999");
    let (_dir, line) = fails(Some(&address), &[], &[]);
    assert!(line.starts_with("error: invalid configuration: `powerjob.addresses` in config.toml: `(a URL"), "{line}");
}

#[test]
fn a_host_name_is_a_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), format!("[server]\nlisten = \"localhost:0\"\n{POWERJOB}")).unwrap();
    let mut child = powertail(dir.path()).spawn().unwrap();
    // Killed on every path out of this test, a failed assertion included.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let serving = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("powertail did not say it serves within 30 s");
        if line.contains("powertail serving") {
            break line;
        }
    };
    let addr = serving.split("listen=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{serving}");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
