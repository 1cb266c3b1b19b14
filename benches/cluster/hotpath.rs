//! Cluster scenario 2: cached read throughput, cluster mode against memory mode.

use super::*;

// ---- 2. cached read throughput: cluster mode against memory mode ---------------------------

pub(super) async fn hotpath(redis: &Redis) {
    println!("## Cluster: cached `/llm/logs` reads (limit 100), one replica in cluster mode against memory mode\n");
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("wrk is not installed (scripts/bench.sh installs it); skipped.\n");
        return;
    }
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let complete = crate::finished_instance(&sim, 10_000, "hot");
    let growing = growing_instance(&sim, 10_000, "grow");
    let mem = Node::start_toml(&config_text(&sim.url(), 10_000, 5_000, 1_000, None)).await;
    let key_prefix = prefix("hot");
    let s = Shared { redis_url: redis.url(), prefix: &key_prefix, node: "pt-0".into(), extra: "" };
    let clu = Node::start_toml(&config_text(&sim.url(), 10_000, 5_000, 1_000, Some(&s))).await;
    let http = reqwest::Client::new();
    for node in [&mem, &clu] {
        for (id, want_complete) in [(complete, true), (growing, false)] {
            let mut ok = false;
            for _ in 0..600 {
                let url = format!("{}/llm/logs?instanceId={id}&fromLine=0&limit=10000", node.base);
                if let Some(v) = try_json(&http, &url, Duration::from_secs(30)).await {
                    if v["totalLines"] == 10_000 && (!want_complete || v["complete"] == true) {
                        ok = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(ok, "{} did not hold instance {id} within 30 s", node.base);
        }
    }
    println!("wrk, 2 threads, 64 and 256 connections, loopback; both servers in this process. Three rounds of");
    println!("5 s on the memory-mode server then 5 s on the cluster one, alternately; the medians of each");
    println!("and their ratio, with the lowest and highest ratio of a round. Complete log: 10 000 lines, finished.");
    println!("Growing log: 10 000 lines, running, no new lines (refreshed every 1 s: in cluster mode a lease tick");
    println!("on Redis and a PowerJob read).\n");
    println!("| log | connections | memory mode requests/s | cluster mode requests/s | p99 memory / cluster | ratio (rounds: low–high) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, id) in [("complete", complete), ("growing", growing)] {
        for conns in [64, 256] {
            let path = format!("/llm/logs?instanceId={id}&fromLine=5000&limit=100");
            let (mut m, mut c, mut ratios, mut p99m, mut p99c) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..3 {
                let a = wrk_for(&format!("{}{path}", mem.base), conns, 5).await;
                let b = wrk_for(&format!("{}{path}", clu.base), conns, 5).await;
                ratios.push(b.0 / a.0.max(1.0));
                m.push(a.0);
                c.push(b.0);
                p99m.push(a.1);
                p99c.push(b.1);
            }
            let (mm, cm) = (pct(&mut m, 50.0), pct(&mut c, 50.0));
            println!(
                "| {label} | {conns} | {mm:.0} | {cm:.0} | {:.1} / {:.1} ms | {:.2} ({:.2}–{:.2}) |",
                pct(&mut p99m, 50.0),
                pct(&mut p99c, 50.0),
                cm / mm,
                pct(&mut ratios, 0.0),
                pct(&mut ratios, 100.0)
            );
        }
    }
    println!();
    mem.stop().await;
    clu.stop().await;
}

/// `wrk -t2 -c<conns> -d<secs>s --latency`: requests/s and p99 in ms.
async fn wrk_for(url: &str, conns: u32, secs: u32) -> (f64, f64) {
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args(["-t2", &format!("-c{conns}"), &format!("-d{secs}s"), "--latency", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map_or(f64::NAN, |v| {
            let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = num.parse().unwrap_or(f64::NAN);
            match unit {
                "us" => n / 1000.0,
                "s" => n * 1000.0,
                _ => n,
            }
        });
    (rps, p99)
}
