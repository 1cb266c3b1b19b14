//! Real-shaped archived runs: each starts like one of the vLLM fixtures
//! (`/work/shared/fixtures/llm`, or the copies under `fixtures/` when present: a clean
//! start, CUDA out of memory, port in use) with the model, pids and worker varied, then
//! serves until it has its line count: engine throughput reports, access-log lines, and
//! requests received and finished with unique ids (`chatcmpl-<32 hex>`), in PowerJob's
//! served format (`yyyy-MM-dd HH:mm:ss.SSS [worker] LEVEL text`).

use std::path::Path;

use powertail::archive::{ArchivedLog, StartupOutcome};
use powertail::logs::{Attempt, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The models the runs' jobs are named after.
pub const MODELS: [&str; 8] =
    ["qwen-7b", "llama-3-8b", "qwen-72b", "mistral-7b", "deepseek-v2", "glm-4", "baichuan-13b", "yi-34b"];

/// When the first run finished (epoch ms); one run finishes a minute after the other.
pub const FIRST_FINISH: i64 = 1_762_900_000_000;

/// The three start-ups, as lines.
pub struct Fixtures {
    ready: Vec<String>,
    oom: Vec<String>,
    port: Vec<String>,
}

fn read_fixture(name: &str) -> Vec<String> {
    for dir in ["../shared/fixtures/llm", "/work/shared/fixtures/llm", "fixtures/llm"] {
        if let Ok(text) = std::fs::read_to_string(Path::new(dir).join(name)) {
            return text.lines().map(str::to_owned).collect();
        }
    }
    panic!("fixture {name} not found (shared/fixtures/llm)")
}

impl Fixtures {
    pub fn load() -> Self {
        Fixtures {
            ready: read_fixture("vllm-startup.log"),
            oom: read_fixture("vllm-oom.log"),
            port: read_fixture("vllm-port-in-use.log"),
        }
    }
}

/// The unique request id of line `line` of run `run` (what a needle search looks for).
pub fn request_id(run: u64, line: u64) -> String {
    // splitmix64: cheap, well spread, reproducible.
    let mut z = run.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ line.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let a = z ^ (z >> 31);
    let b = a.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("chatcmpl-{a:016x}{b:016x}")
}

/// Run number `run` (0-based) with `lines` lines.
pub fn run(fx: &Fixtures, run: u64, lines: usize) -> ArchivedLog {
    let mut rng = StdRng::seed_from_u64(run);
    let model = MODELS[(run % MODELS.len() as u64) as usize];
    let (startup, status, outcome) = match run % 10 {
        3 => (&fx.oom, Status::Failed, ("failed", None, Some("oom"))),
        7 => (&fx.port, Status::Failed, ("failed", None, Some("port_in_use"))),
        _ => (&fx.ready, Status::Succeed, ("ready", Some(rng.gen_range(25_000..240_000)), None)),
    };
    let worker = format!("10.0.{}.{}:27777", run % 7, 10 + run % 50);
    let pid = 10_000 + rng.gen_range(0..50_000);
    let finished = FIRST_FINISH + run as i64 * 60_000;
    let started = finished - 3_600_000;
    let mut text = Vec::with_capacity(lines);
    let mut ms = started;
    let push = |text: &mut Vec<String>, level: &str, body: &str, ms: i64| {
        let t = chrono::DateTime::from_timestamp_millis(ms).unwrap().naive_utc();
        text.push(format!("{} [{worker}] {level} {body}", t.format("%Y-%m-%d %H:%M:%S%.3f")));
    };
    for line in startup.iter().take(lines) {
        let body = line.replace("qwen-7b", model).replace("12345", &pid.to_string());
        let level = if body.contains("ERROR") || body.contains("Error") { "ERROR" } else { "INFO" };
        ms += rng.gen_range(0..400);
        push(&mut text, level, &body, ms);
    }
    while text.len() < lines {
        let n = text.len() as u64;
        ms += rng.gen_range(0..300);
        let stamp = chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%m-%d %H:%M:%S").to_string();
        let api = format!("\x1b[1;36m(APIServer pid={pid})\x1b[0;0m");
        let body = match rng.gen_range(0..10) {
            0..=1 => format!(
                "{api} INFO {stamp} [loggers.py:123] Engine 000: Avg prompt throughput: {:.1} tokens/s, Avg \
                 generation throughput: {:.1} tokens/s, Running: {} reqs, Waiting: {} reqs, GPU KV cache usage: \
                 {:.1}%, Prefix cache hit rate: {:.1}%",
                rng.gen_range(0.0..5000.0),
                rng.gen_range(0.0..900.0),
                rng.gen_range(0..64),
                rng.gen_range(0..8),
                rng.gen_range(0.0..100.0),
                rng.gen_range(0.0..100.0),
            ),
            2..=4 => format!(
                "{api} INFO:     10.{}.{}.{}:{} - \"POST /v1/chat/completions HTTP/1.1\" 200 OK",
                rng.gen_range(0..255),
                rng.gen_range(0..255),
                rng.gen_range(0..255),
                rng.gen_range(30_000..60_000)
            ),
            5..=7 => format!(
                "{api} INFO {stamp} [logger.py:43] Received request {}: prompt: '<|im_start|>user\\nsummarise \
                 ticket {}<|im_end|>', params: SamplingParams(n=1, temperature={:.1}, max_tokens={}), \
                 lora_request: None.",
                request_id(run, n),
                rng.gen_range(1_000..99_999),
                rng.gen_range(0.0..1.5),
                rng.gen_range(16..4096)
            ),
            8 => format!("{api} INFO {stamp} [engine.py:310] Finished request {}.", request_id(run, n)),
            _ => format!(
                "{api} WARNING {stamp} [scheduler.py:1520] Sequence group {} is preempted by \
                 PreemptionMode.RECOMPUTE mode because there is not enough KV cache space.",
                rng.gen_range(0..100_000)
            ),
        };
        let level = if body.contains(" WARNING ") { "WARN" } else { "INFO" };
        push(&mut text, level, &body, ms);
    }
    ArchivedLog {
        instance_id: 1_000_000_000 + run as i64,
        epoch: format!("bench-{run}"),
        job_id: Some((run % MODELS.len() as u64) as i64 + 1),
        job_name: Some(model.to_owned()),
        status,
        started_at: Some(started),
        finished_at: Some(finished),
        archived_at: finished + 20_000,
        lines: text,
        attempts: vec![Attempt { attempt: 1, from_line: 0 }],
        upstream_lost: false,
        truncated: false,
        startup: Some(StartupOutcome {
            phase: outcome.0.to_owned(),
            ready_after_ms: outcome.1,
            cause: outcome.2.map(str::to_owned),
            cause_line: outcome.2.map(|_| 76),
        }),
    }
}
