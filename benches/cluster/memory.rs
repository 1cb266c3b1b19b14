//! Cluster scenario 3: Redis bytes per line.

use super::*;

// ---- 3. Redis bytes per line -------------------------------------------------------------

const MEM_LINES: usize = 100_000;
const MEM_LINE_BYTES: usize = 100;

pub(super) async fn memory(redis: &Redis) {
    println!("## Cluster: Redis memory per line\n");
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    // Lines of exactly 100 bytes as PowerJob renders them (timestamp, worker, level, text).
    let worker = "10.0.0.21:27777";
    let overhead = powertail::sim::file::render(
        &Record { log_time: 0, level: Level::Info, content: String::new(), worker: worker.into() },
        0,
    )
    .len();
    let id = sim.with_core(|c, now| {
        let id = c.create_instance(12, None, now - 600_000);
        c.dispatch(id, now - 600_000);
        c.set_running(id, now - 600_000);
        let records = (0..MEM_LINES)
            .map(|k| {
                let mut content = format!("mem step {k:06}: loss=0.{:04} ", k % 10_000);
                while content.len() < MEM_LINE_BYTES - overhead {
                    content.push('x');
                }
                Record { log_time: now - 500_000 + k as i64, level: Level::Info, content, worker: worker.into() }
            })
            .collect();
        c.deliver(id, records, now - 400_000);
        c.finish(id, 5, "ok", now - 300_000);
        c.tick(now);
        id
    });
    let lines = sim.with_core(|c, _| c.final_lines(id));
    assert_eq!(lines.len(), MEM_LINES);
    let text_bytes: usize = lines.iter().map(String::len).sum();
    let key_prefix = prefix("mem");
    let s = Shared { redis_url: redis.url(), prefix: &key_prefix, node: "pt-0".into(), extra: "" };
    let node = Node::start_toml(&config_text(&sim.url(), 10_000, 5_000, 1_000, Some(&s))).await;
    let used_before: u64 = info_field(redis, "memory", "used_memory").await;
    let _: () = redis.cmd(&["SLOWLOG", "RESET"]).await;
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut held = 0;
    for _ in 0..1_200 {
        let url = format!("{}/llm/logs?instanceId={id}&fromLine={}&limit=1", node.base, MEM_LINES - 1);
        if let Some(v) = try_json(&http, &url, Duration::from_secs(60)).await {
            held = v["totalLines"].as_u64().unwrap_or(0);
            if held == MEM_LINES as u64 && v["complete"] == true {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_read = t.elapsed();
    assert_eq!(held, MEM_LINES as u64, "the replica did not hold the whole log within 60 s");
    let slow = slowest(redis).await;
    let key = |what: &str| format!("{key_prefix}:{{{id}}}:{what}");
    let stream = redis.memory_usage(&key("lines")).await;
    let state = redis.memory_usage(&key("state")).await;
    let lease = redis.memory_usage(&key("lease")).await;
    let ttl: i64 = redis.cmd(&["PTTL", &key("lines")]).await;
    let used_after: u64 = info_field(redis, "memory", "used_memory").await;
    node.stop().await;
    // Baselines in the same Redis: the same texts in a bare Stream (same IDs, field `l`,
    // no tag byte) and in a LIST.
    let bare = format!("{key_prefix}:bare:lines");
    let list = format!("{key_prefix}:bare:list");
    let mut conn = redis.conn.clone();
    for (k, chunk) in lines.chunks(1_000).enumerate() {
        let mut pipe = redis::pipe();
        for (j, l) in chunk.iter().enumerate() {
            let n = k * 1_000 + j + 1;
            pipe.cmd("XADD").arg(&bare).arg(format!("{n}-0")).arg("l").arg(l).ignore();
        }
        pipe.cmd("RPUSH").arg(&list).arg(chunk).ignore();
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let bare_stream = redis.memory_usage(&bare).await;
    let bare_list = redis.memory_usage(&list).await;
    let per = |b: u64| b as f64 / MEM_LINES as f64;
    let ours = per(stream + state + lease);
    println!(
        "A finished instance of {MEM_LINES} lines of {MEM_LINE_BYTES} bytes each (as PowerJob renders them: timestamp,"
    );
    println!("worker, level, text) read once through one replica, which appends it to Redis");
    println!(
        "(redis-server {}). `MEMORY USAGE … SAMPLES 0` of its keys; baselines: the same",
        info_field::<String>(redis, "server", "redis_version").await
    );
    println!("texts written by the bench into a bare Stream (same IDs, one field, no tag byte) and a LIST.\n");
    println!("| measure | bytes | bytes / line | ratio to bare Stream |");
    println!("|---|---:|---:|---:|");
    println!("| text of the lines | {text_bytes} | {:.1} | |", per(text_bytes as u64));
    println!(
        "| powertail: `lines` Stream | {stream} | {:.1} | {:.2} |",
        per(stream),
        stream as f64 / bare_stream as f64
    );
    println!("| powertail: `state` Hash + `lease` | {} | {:.3} | |", state + lease, per(state + lease));
    println!(
        "| **powertail: all keys of the instance** | {} | **{ours:.1}** | {:.2} |",
        stream + state + lease,
        ours / per(bare_stream)
    );
    println!("| baseline: bare Stream, same IDs | {bare_stream} | {:.1} | 1.00 |", per(bare_stream));
    println!("| baseline: LIST | {bare_list} | {:.1} | {:.2} |", per(bare_list), bare_list as f64 / bare_stream as f64);
    println!(
        "| `used_memory` growth while powertail appended (incl. allocator, scripts) | {} | {:.1} | |",
        used_after.saturating_sub(used_before),
        per(used_after.saturating_sub(used_before))
    );
    println!("\ngoal: ≤ 140 B a line: **{}**.", met(ours <= 140.0));
    println!(
        "First read through the replica (whole-file download, append, commit): {:.2} s; the slowest Redis command: {}; `lines` expires in {:.1} days (complete log).\n",
        first_read.as_secs_f64(),
        slow,
        ttl as f64 / 86_400_000.0
    );
}

async fn info_field<T: std::str::FromStr>(redis: &Redis, section: &str, field: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let info: String = redis.cmd(&["INFO", section]).await;
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .trim()
        .parse()
        .unwrap()
}

/// The slowest entry of `SLOWLOG GET`: "<command> <n> args, <ms> ms".
async fn slowest(redis: &Redis) -> String {
    let entries: redis::Value = redis.cmd(&["SLOWLOG", "GET", "128"]).await;
    let redis::Value::Array(entries) = entries else { return "none".into() };
    let mut best: Option<(i64, String)> = None;
    for e in entries {
        let redis::Value::Array(f) = e else { continue };
        let (Some(redis::Value::Int(us)), Some(redis::Value::Array(args))) = (f.get(2), f.get(3)) else { continue };
        let name = match args.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => "?".into(),
        };
        // Redis keeps the first 31 arguments and says how many more there were.
        let more = match args.last() {
            Some(redis::Value::BulkString(b)) => {
                let s = String::from_utf8_lossy(b);
                s.strip_prefix("... (").and_then(|r| r.split(' ').next()?.parse::<usize>().ok()).unwrap_or(0)
            }
            _ => 0,
        };
        let desc =
            format!("`{}` with {} arguments, {:.1} ms", name.to_uppercase(), args.len() + more, *us as f64 / 1000.0);
        if best.as_ref().is_none_or(|(b, _)| *us > *b) {
            best = Some((*us, desc));
        }
    }
    best.map_or_else(|| "none over 10 ms".into(), |(_, d)| d)
}
