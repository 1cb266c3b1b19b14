//! The configuration's tests: loading, defaults, the environment, and errors that
//! name their key.
#![expect(clippy::result_large_err, reason = "figment::Jail's closure signature is fixed")]

use super::*;
use secrecy::ExposeSecret;

const MIN: &str = r#"
    [powerjob]
    addresses = ["http://127.0.0.1:7700"]
    app_name = "app"
    app_password = "hunter2"
"#;

#[test]
fn example_config_loads() {
    jailed(|| {
        let c = Config::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.logs.first_read_delay_ms, 8_000);
    });
}

/// Runs `f` under figment's global environment lock, so that the environment test
/// cannot leak its variables into the others.
fn jailed(f: impl FnOnce()) {
    figment::Jail::expect_with(|_| {
        f();
        Ok(())
    });
}

#[test]
fn defaults_fill_missing_keys_and_secrets_stay_hidden() {
    jailed(|| {
        let c = Config::from_toml(MIN).unwrap();
        assert_eq!(c.powerjob.request_timeout_ms, 15_000);
        assert_eq!(c.logs.refresh_interval_ms, 1_000);
        assert_eq!(c.powerjob.app_password.expose_secret(), "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    });
}

#[test]
fn errors_name_the_key() {
    jailed(|| {
        let bad = MIN.replace("[powerjob]", "[logs]\nrefresh_interval_ms = 1\n[powerjob]");
        let e = Config::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("logs.refresh_interval_ms"), "{e}");
        let e = Config::from_toml(&MIN.replace("http://127.0.0.1:7700", "ftp://x")).unwrap_err().to_string();
        assert!(e.contains("powerjob.addresses"), "{e}");
        let with_password = MIN.replace("http://127.0.0.1:7700", "http://admin:s3cr3t@127.0.0.1:7700");
        let e = Config::from_toml(&with_password).unwrap_err().to_string();
        assert!(e.contains("powerjob.addresses") && !e.contains("s3cr3t"), "{e}");
        let e = Config::from_toml(&format!("{MIN}\nrefresh_intervall_ms = 3")).unwrap_err().to_string();
        assert!(e.contains("refresh_intervall_ms"), "{e}");
        let e =
            Config::from_toml(&MIN.replace("app_password = \"hunter2\"", "app_password = 3")).unwrap_err().to_string();
        assert!(e.contains("app_password") && !e.contains("hunter2"), "{e}");
    });
}

#[test]
fn startup_rules_are_read_and_bad_ones_name_their_key() {
    jailed(|| {
        let job = |rules: &str| format!("{MIN}\n[jobs.vllm]\njob_id = 12\n{rules}");
        let c = Config::from_toml(&job("builtin_rules = false\n[[jobs.vllm.startup_rules]]\nkind = \"ready\"\npattern = \"READY\"\n[[jobs.vllm.startup_rules]]\nkind = \"failed\"\ncause = \"disk_full\"\npattern = \"No space left\"\npriority = 80\n")).unwrap();
        let rules = c.jobs["vllm"].rules().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(&*rules.first_match("OSError: No space left on device").unwrap().cause, "disk_full");
        assert!(c.jobs["vllm"].rules().is_ok());
        let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"ready\"\npattern = \"(unclosed\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`jobs.vllm.startup_rules[0].pattern` does not compile"), "{e}");
        let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"ready\"\npattern = \"x\"\n[[jobs.vllm.startup_rules]]\nkind = \"progress\"\npattern = \"(?P<done>\\\\d+) of\"\n")).unwrap_err().to_string();
        assert!(e.contains("`jobs.vllm.startup_rules[1].pattern` needs the named capture groups"), "{e}");
        let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"failed\"\npattern = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`jobs.vllm.startup_rules[0].cause` is required"), "{e}");
        let e = Config::from_toml(&job("[[jobs.vllm.startup_rules]]\nkind = \"done\"\npattern = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("startup_rules") && e.contains("kind"), "{e}");
    });
}

#[test]
fn log_format_and_level_are_read_and_checked() {
    figment::Jail::expect_with(|jail| {
        let c = Config::from_toml(MIN).unwrap();
        assert_eq!((c.server.log_format, c.server.log_level.as_str()), (LogFormat::Text, "info"));
        let json =
            Config::from_toml(&format!("[server]\nlog_format = \"json\"\nlog_level = \"warn,powertail=debug\"\n{MIN}"));
        let json = json.unwrap();
        assert_eq!((json.server.log_format, json.server.log_level.as_str()), (LogFormat::Json, "warn,powertail=debug"));
        let e = Config::from_toml(&format!("[server]\nlog_format = \"xml\"\n{MIN}")).unwrap_err().to_string();
        assert!(e.contains("log_format"), "{e}");
        let e = Config::from_toml(&format!("[server]\nlog_level = \"powertail=loud\"\n{MIN}")).unwrap_err().to_string();
        assert!(e.contains("server.log_level"), "{e}");
        jail.set_env("POWERTAIL_SERVER__LOG_FORMAT", "json");
        assert_eq!(Config::from_toml(MIN).unwrap().server.log_format, LogFormat::Json);
        Ok(())
    });
}

#[test]
fn a_webhook_is_read_with_its_defaults_and_its_secret_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        let job = |notify: &str| format!("{MIN}\n[jobs.vllm]\njob_id = 12\n[jobs.vllm.notify]\n{notify}");
        let c = Config::from_toml(&job("url = \"http://127.0.0.1:9/hook\"")).unwrap();
        let n = c.jobs["vllm"].notify.as_ref().unwrap();
        assert_eq!(
            (n.events.as_slice(), n.deadline_ms),
            ([NotifyEvent::Ready, NotifyEvent::Failed].as_slice(), 60_000)
        );
        assert!(n.secret.is_none());
        let signed = job("url = \"https://platform/hook\"\nevents = [\"exited\"]\nsecret_env = \"HOOK_KEY\"");
        let e = Config::from_toml(&signed).unwrap_err().to_string();
        assert!(e.contains("`jobs.vllm.notify.secret_env`") && e.contains("HOOK_KEY"), "{e}");
        jail.set_env("HOOK_KEY", "k3y-value");
        let c = Config::from_toml(&signed).unwrap();
        let n = c.jobs["vllm"].notify.as_ref().unwrap();
        assert_eq!(n.secret.as_ref().unwrap().expose_secret(), "k3y-value");
        assert_eq!(n.events, [NotifyEvent::Exited]);
        assert!(!format!("{c:?}").contains("k3y-value"));
        let e = Config::from_toml(&job("url = \"ftp://x/\"")).unwrap_err().to_string();
        assert!(e.contains("`jobs.vllm.notify.url`"), "{e}");
        let e = Config::from_toml(&job("url = \"http://x/\"\nevents = []")).unwrap_err().to_string();
        assert!(e.contains("`jobs.vllm.notify.events`"), "{e}");
        let e = Config::from_toml(&job("url = \"http://x/\"\nevents = [\"loading\"]")).unwrap_err().to_string();
        assert!(e.contains("events") || e.contains("loading"), "{e}");
        Ok(())
    });
}

#[test]
fn the_demo_sets_its_own_keys_over_the_users_file_and_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "user.toml",
            &format!("{MIN}\n[logs]\nread_wait_ms = 900\n[jobs.vllm]\njob_id = 99\n[jobs.vllm.notify]\nurl = \"http://127.0.0.1:9/hook\"\n"),
        )?;
        jail.set_env("POWERTAIL_LOGS__REFRESH_INTERVAL_MS", "250");
        jail.set_env("POWERTAIL_LOGS__IDLE_EVICT_MS", "5000");
        let own = MIN.replace("7700", "7800") + "[logs]\nrefresh_interval_ms = 40\n[jobs.vllm]\njob_id = 12\n";
        let c = Config::load_under(Some(Path::new("user.toml")), &own).unwrap();
        assert_eq!(c.powerjob.addresses[0].port(), Some(7800));
        assert_eq!((c.logs.refresh_interval_ms, c.logs.read_wait_ms, c.logs.idle_evict_ms), (40, 900, 5000));
        assert_eq!(c.jobs["vllm"].job_id, 12);
        assert_eq!(c.jobs["vllm"].notify.as_ref().unwrap().url.as_str(), "http://127.0.0.1:9/hook");
        let e = Config::load_under(Some(Path::new("missing.toml")), &own).unwrap_err().to_string();
        assert!(e.contains("--config"), "{e}");
        Ok(())
    });
}

#[test]
fn environment_overrides_single_keys() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("POWERTAIL_POWERJOB__ADDRESSES", "http://a:1, http://b:2");
        jail.set_env("POWERTAIL_LOGS__REFRESH_INTERVAL_MS", "250");
        jail.set_env("POWERTAIL_SOMETHING_ELSE", "1"); // not configuration: ignored
        let c = Config::from_toml(MIN).unwrap();
        let hosts: Vec<_> = c.powerjob.addresses.iter().map(|u| u.host_str().unwrap().to_owned()).collect();
        assert_eq!(hosts, ["a", "b"]);
        assert_eq!(c.logs.refresh_interval_ms, 250);
        Ok(())
    });
}

#[test]
fn the_push_section_has_its_defaults_env_overrides_and_checked_keys() {
    figment::Jail::expect_with(|jail| {
        let c = Config::from_toml(MIN).unwrap();
        assert!(c.push.enabled);
        assert_eq!((c.push.max_body_bytes, c.push.max_batch_lines, c.push.max_line_bytes), (1 << 20, 1_000, 65_536));
        assert_eq!((c.push.gap_wait_ms, c.push.window_ms, c.push.retain_ms), (2_000, 1_000, 600_000));
        assert_eq!((c.push.quiet_ms, c.push.max_sources, c.push.utc_offset_minutes), (15_000, 64, 480));
        let join = c.push.join_config(c.logs.max_lines_per_instance);
        assert_eq!((join.merge.window_ms, join.push.gap_wait_ms, join.quiet_ms), (1_000, 2_000, 15_000));
        jail.set_env("POWERTAIL_PUSH__ENABLED", "false");
        jail.set_env("POWERTAIL_PUSH__QUIET_MS", "500");
        let c = Config::from_toml(MIN).unwrap();
        assert_eq!((c.push.enabled, c.push.quiet_ms), (false, 500));
        for (key, value) in [("max_batch_lines", "0"), ("utc_offset_minutes", "1000"), ("retain_ms", "10")] {
            let e = Config::from_toml(&format!("{MIN}\n[push]\n{key} = {value}\n")).unwrap_err().to_string();
            assert!(e.contains(&format!("push.{key}")), "{e}");
        }
        Ok(())
    });
}
