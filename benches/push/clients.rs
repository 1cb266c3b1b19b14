//! Waiting clients for the freshness run: each reads one instance's log from line 0 and
//! notes when it held each line (epoch ms).

use futures::StreamExt as _;
use powertail::sim::Simulator;
use serde_json::Value;

/// The clients measured.
pub const CLIENTS: [&str; 3] = ["long-poll", "SSE", "WebSocket"];

/// Lines held, each with the time the client held it (epoch ms, to the microsecond).
pub type Received = Vec<(String, f64)>;

/// Now, epoch ms to the microsecond.
fn now_us() -> f64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_micros() as f64 / 1_000.0
}

/// Reads instance `id` with `client` until it holds `n` lines or the clock passes `until`.
pub async fn collect(client: &str, base: &str, id: i64, n: usize, until: i64) -> Received {
    match client {
        "long-poll" => long_poll(base, id, n, until).await,
        "SSE" => sse(base, id, n, until).await,
        "WebSocket" => websocket(base, id, n, until).await,
        _ => Vec::new(),
    }
}

async fn long_poll(base: &str, id: i64, n: usize, until: i64) -> Received {
    let http = reqwest::Client::new();
    let mut got = Received::new();
    while got.len() < n && Simulator::now() < until {
        let wait = (until - Simulator::now()).clamp(1, 20_000);
        let url = format!("{base}/llm/logs?instanceId={id}&fromLine={}&waitMs={wait}", got.len());
        let Ok(resp) = http.get(url).send().await else {
            super::sleep_ms(100).await;
            continue;
        };
        let Ok(v) = resp.json::<Value>().await else { continue };
        let at = now_us();
        let lines = v["lines"].as_array().cloned().unwrap_or_default();
        got.extend(lines.iter().filter_map(|l| Some((l.as_str()?.to_owned(), at))));
        if v["complete"] == true {
            break;
        }
    }
    got
}

async fn sse(base: &str, id: i64, n: usize, until: i64) -> Received {
    let http = reqwest::Client::new();
    let mut got = Received::new();
    while got.len() < n && Simulator::now() < until {
        let url = format!("{base}/llm/logs/{id}/stream?fromLine={}", got.len());
        let Ok(resp) = http.get(url).send().await else {
            super::sleep_ms(100).await;
            continue;
        };
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let left = std::time::Duration::from_millis(u64::try_from(until - Simulator::now()).unwrap_or(0));
        let deadline = tokio::time::Instant::now() + left;
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
            let at = now_us();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if !event.lines().any(|l| l == "event: lines") {
                    continue;
                }
                let data: String = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                let Ok(v) = serde_json::from_str::<Value>(&data) else { continue };
                let lines = v["lines"].as_array().cloned().unwrap_or_default();
                got.extend(lines.iter().filter_map(|l| Some((l.as_str()?.to_owned(), at))));
            }
            if got.len() >= n {
                break;
            }
        }
    }
    got
}

async fn websocket(base: &str, id: i64, n: usize, until: i64) -> Received {
    use tokio_tungstenite::tungstenite::Message;
    let mut got = Received::new();
    while got.len() < n && Simulator::now() < until {
        let url = format!("{}/llm/logs/{id}/ws?fromLine={}", base.replacen("http://", "ws://", 1), got.len());
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            super::sleep_ms(100).await;
            continue;
        };
        let left = std::time::Duration::from_millis(u64::try_from(until - Simulator::now()).unwrap_or(0));
        let deadline = tokio::time::Instant::now() + left;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.next()).await {
            let at = now_us();
            let Message::Text(text) = message else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            if v["type"] == "lines" {
                let lines = v["lines"].as_array().cloned().unwrap_or_default();
                got.extend(lines.iter().filter_map(|l| Some((l.as_str()?.to_owned(), at))));
            } else if v["type"] == "end" || got.len() >= n {
                break;
            }
        }
    }
    got
}
