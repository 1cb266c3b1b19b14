//! Scenario 4: memory of complete and growing logs, the binary as a separate process.

use super::*;

// ---- 4. memory -------------------------------------------------------------------------

pub(super) async fn memory() {
    println!("## Memory: 1 000 complete instances of 10 000 lines\n");
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/profiling/powertail");
    if !bin.exists() {
        println!("target/profiling/powertail is missing (scripts/bench.sh builds it); skipped.\n");
        return;
    }
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let ids: Vec<i64> = (0..1_000).map(|k| finished_instance(&sim, 10_000, &format!("i{k}"))).collect();
    let bound: u64 = 256 << 20;
    let (mut child, base, _dir) = spawn_binary(&bin, &sim, &format!("cache_max_bytes = {bound}")).await;
    let http = reqwest::Client::new();
    let idle = rss(child.id());
    let held = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for chunk in ids.chunks(125) {
        let chunk = chunk.to_vec();
        let (http, base, held) = (http.clone(), base.clone(), held.clone());
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine=9999&limit=1")).await;
                held.fetch_add(v["totalLines"].as_u64().unwrap_or(0), Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| common::metric(&metrics, name);
    let peak = rss(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!("The binary (profiling build: release code plus line tables) as a separate process, `cache_max_bytes` = 256 MiB; each instance read once (first read: whole-file download).\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| lines read (1 000 × 10 000, ~90 bytes each) | {} |", held.load(Ordering::Relaxed));
    println!("| RSS idle | {:.1} MiB |", mib(idle));
    println!("| RSS after reading all | {:.1} MiB |", mib(peak));
    println!(
        "| cache bytes (weigher) / instances kept | {:.1} MiB / {} |",
        gauge("powertail_cache_bytes") / 1_048_576.0,
        gauge("powertail_instances_followed")
    );
    println!(
        "| goal: RSS ≤ bound + 64 MiB = {:.0} MiB | {} |\n",
        mib(bound) + 64.0,
        if mib(peak) <= mib(bound) + 64.0 { "met" } else { "NOT met" }
    );
    memory_growing(&bin).await;
}

/// 40 growing (running) instances of 10 000 lines, read once each by a fresh process:
/// what a growing log costs per line besides its text.
async fn memory_growing(bin: &std::path::Path) {
    println!("### Growing logs: 40 running instances of 10 000 lines\n");
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let ids: Vec<i64> = (0..40)
        .map(|k| {
            sim.with_core(|c, now| {
                let contents = (0..10_000)
                    .map(|n| format!("g{k} step {n}: tokens/s=1234.5 kv_cache=41.2% prompt_throughput=88.1 gen=17.3"));
                let id = common::logged_instance(c, now, 600_000, contents, false);
                c.tick(now);
                id
            })
        })
        .collect();
    let text: u64 =
        ids.iter().map(|&id| sim.with_core(|c, _| c.final_lines(id).iter().map(|l| l.len() as u64).sum::<u64>())).sum();
    let (mut child, base, _dir) = spawn_binary(bin, &sim, "").await;
    let http = reqwest::Client::new();
    let idle = rss(child.id());
    let mut lines = 0;
    for &id in &ids {
        let v: Value = get_json(&http, format!("{base}/llm/logs?instanceId={id}&fromLine=9999&limit=1")).await;
        lines += v["totalLines"].as_u64().unwrap_or(0);
    }
    let grown = rss(child.id()).saturating_sub(idle);
    let _ = child.kill();
    let _ = child.wait();
    let per_line = (grown as f64 - text as f64) / lines.max(1) as f64;
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| lines held (40 growing logs) | {lines} |");
    println!(
        "| text (baseline: the bytes of the lines) | {:.1} MiB, {:.0} B a line |",
        text as f64 / 1_048_576.0,
        text as f64 / lines.max(1) as f64
    );
    println!("| RSS growth while reading them | {:.1} MiB |", grown as f64 / 1_048_576.0);
    println!("| RSS growth − text, per line | {per_line:.0} B |");
    println!("| goal: ≤ text + 64 B a line | {} |\n", if per_line <= 64.0 { "met" } else { "NOT met" });
}

/// The built binary as its own process on a free loopback port, configured for `sim`
/// with extra `[logs]` keys; returns it, its base URL and the config's directory.
async fn spawn_binary(
    bin: &std::path::Path,
    sim: &SimHandle,
    extra_logs: &str,
) -> (std::process::Child, String, tempfile::TempDir) {
    spawn_binary_with(bin, sim, "", extra_logs).await
}

/// [`spawn_binary`] with extra `[powerjob]` keys too.
pub async fn spawn_binary_with(
    bin: &std::path::Path,
    sim: &SimHandle,
    extra_powerjob: &str,
    extra_logs: &str,
) -> (std::process::Child, String, tempfile::TempDir) {
    let port = common::cluster::free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    // No first-read delay (the logs read here were delivered long ago), unless asked.
    let first_read = if extra_logs.contains("first_read_delay_ms") { "" } else { "first_read_delay_ms = 0\n" };
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[powerjob]\naddresses = [\"{}\"]\napp_name = \"llm-test-platform\"\napp_password = \"secret\"\n{extra_powerjob}\n[logs]\n{first_read}{extra_logs}\n",
            sim.url()
        ),
    )
    .unwrap();
    let child = Command::new(bin).arg("--config").arg(&cfg).env("RUST_LOG", "warn").spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base, dir)
}

/// The resident set of process `pid`, bytes (0 when it is gone).
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
