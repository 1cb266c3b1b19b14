//! The sending half of a simulated pusher: batches from the source's queue, one in
//! flight, the pushers' retry rules (README "Client retry policy", rule 6), and the
//! network faults of [`PushFaults`](super::PushFaults).
//!
//! Rules, as the Java `PushLogger`, the Python `Pusher` and `powertail push` follow them:
//! a batch goes out when 20 lines wait or 100 ms after its first line (lines that queued
//! meanwhile go in one batch of at most 200); no answer, 408, 425, 429 and 5xx are
//! retried under the same `seq` after 100 ms doubling to 5 s (or `Retry-After`) for at
//! most 60 s, then the batch is given up; 401, 403, 404 and 405 turn the source off; a
//! 413 sends the batch in halves under this `seq` and the next; another 4xx drops it.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::push::{Counters, Fate, Pusher, QueuedLine, BATCH_LINES, LINGER, MAX_BATCH_LINES};
use super::Simulator;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// How one request ended.
enum Outcome {
    /// 200: the batch is in (or was a duplicate).
    Done,
    /// 413: the batch must be split.
    TooLarge,
    /// Refused for good (another 4xx, or retries exhausted).
    Failed,
    /// 401, 403, 404, 405: push no more.
    Off,
}

/// One pusher run (a `source`): takes the queue's lines and sends them.
pub(super) struct Sender {
    client: reqwest::Client,
    pusher: Arc<Pusher>,
    counters: Arc<Counters>,
    id: i64,
    source: String,
    worker: String,
    skew: i64,
    rng: StdRng,
    sim: Simulator,
    seq: u64,
    off: bool,
    /// A batch held back by [`PushFaults::reorder`](super::PushFaults::reorder): its `seq` and lines.
    held: Option<(u64, Vec<QueuedLine>)>,
}

impl Sender {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: reqwest::Client,
        pusher: Arc<Pusher>,
        counters: Arc<Counters>,
        id: i64,
        source: String,
        worker: String,
        skew: i64,
        rng: StdRng,
        sim: Simulator,
    ) -> Self {
        Sender { client, pusher, counters, id, source, worker, skew, rng, sim, seq: 0, off: false, held: None }
    }

    /// Sends the queue's lines until the processor returned (the queue closed), then
    /// the rest with `final: true`.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<QueuedLine>) {
        let mut closed = false;
        while !closed {
            let mut lines = Vec::new();
            match rx.recv().await {
                Some(line) => lines.push(line),
                None => closed = true,
            }
            if !closed {
                let deadline = Instant::now() + LINGER;
                while lines.len() < BATCH_LINES {
                    tokio::select! {
                        line = rx.recv() => match line {
                            Some(line) => lines.push(line),
                            None => { closed = true; break; }
                        },
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            while !closed && lines.len() < MAX_BATCH_LINES {
                match rx.try_recv() {
                    Ok(line) => lines.push(line),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            let last = closed && rx.is_empty();
            self.batch(lines, last).await;
            closed = last;
        }
    }

    /// One batch, through the faults.
    async fn batch(&mut self, lines: Vec<QueuedLine>, last: bool) {
        let seq = self.seq;
        self.seq += 1;
        Counters::add(&self.counters.batches, 1);
        if self.off {
            self.record(&lines, Fate::Failed);
            return;
        }
        let faults = self.pusher.faults.clone();
        if last {
            // The final batch is never held back: one held before it goes first.
            self.release_held().await;
        }
        if !last && self.rng.gen_bool(faults.drop.clamp(0.0, 1.0)) {
            Counters::add(&self.counters.dropped_batches, 1);
            Counters::add(&self.counters.dropped_lines, lines.len());
            self.record(&lines, Fate::Dropped);
        } else if !last && self.rng.gen_bool(faults.delay.clamp(0.0, 1.0)) {
            self.record(&lines, Fate::Delayed);
            let mut late = self.detached();
            let delay = Duration::from_millis(faults.delay_ms);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                late.send(seq, &lines, false).await;
            });
            return;
        } else if !last && self.held.is_none() && self.rng.gen_bool(faults.reorder.clamp(0.0, 1.0)) {
            self.record(&lines, Fate::Reordered);
            self.held = Some((seq, lines));
            return;
        } else {
            let twice = self.rng.gen_bool(faults.duplicate.clamp(0.0, 1.0));
            self.record(&lines, if twice { Fate::Duplicated } else { Fate::Sent });
            self.deliver(seq, lines.clone(), last).await;
            if twice && !self.off {
                // The answer was lost on the way back: the pusher retries the same batch.
                Counters::add(&self.counters.retries, 1);
                tokio::time::sleep(FIRST_BACKOFF).await;
                self.send(seq, &lines, last).await;
            }
        }
        self.release_held().await;
    }

    /// Sends the batch held back, if any (after the one that overtook it).
    async fn release_held(&mut self) {
        if let Some((seq, lines)) = self.held.take() {
            if !self.off {
                self.send(seq, &lines, false).await;
            }
        }
    }

    /// Sends a batch under `seq`, split in halves (under `seq` and the next numbers)
    /// while the receiver answers 413.
    async fn deliver(&mut self, seq: u64, lines: Vec<QueuedLine>, last: bool) {
        match self.send(seq, &lines, last).await {
            Outcome::TooLarge if lines.len() > 1 => {
                let mut first = lines;
                let second = first.split_off(first.len() / 2);
                Box::pin(self.deliver(seq, first, false)).await;
                let next = self.seq;
                self.seq += 1;
                Counters::add(&self.counters.batches, 1);
                Box::pin(self.deliver(next, second, last)).await;
            }
            Outcome::TooLarge => Counters::add(&self.counters.failed_batches, 1),
            Outcome::Done | Outcome::Failed | Outcome::Off => {}
        }
    }

    /// A copy for a batch sent from the side (its own RNG; it never splits).
    fn detached(&mut self) -> Sender {
        Sender {
            client: self.client.clone(),
            pusher: self.pusher.clone(),
            counters: self.counters.clone(),
            id: self.id,
            source: self.source.clone(),
            worker: self.worker.clone(),
            skew: self.skew,
            rng: rand::SeedableRng::seed_from_u64(self.rng.gen()),
            sim: self.sim.clone(),
            seq: self.seq,
            off: false,
            held: None,
        }
    }

    fn record(&self, lines: &[QueuedLine], fate: Fate) {
        if self.pusher.record {
            self.counters.record(self.id, &self.source, lines, fate);
        }
    }

    /// One batch under `seq`, retried on failures as the pushers' rules say.
    async fn send(&mut self, seq: u64, lines: &[QueuedLine], last: bool) -> Outcome {
        let body = self.body(seq, lines, last);
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0u64.. {
            let urls = &self.pusher.urls;
            let Some(base) = urls.get(usize::try_from(seq.wrapping_add(attempt)).unwrap_or(0) % urls.len().max(1))
            else {
                return Outcome::Off;
            };
            let url = format!("{}/llm/logs/{}/append", base.trim_end_matches('/'), self.id);
            Counters::add(&self.counters.requests, 1);
            let mut request = self.client.post(&url).header("content-type", "application/json").body(body.clone());
            if let Some(token) = &self.pusher.token {
                request = request.bearer_auth(token);
            }
            let mut wait = backoff;
            match request.send().await {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    let answer: Value = resp.json().await.unwrap_or(Value::Null);
                    let accepted = answer["accepted"].as_u64().unwrap_or(0);
                    Counters::add(&self.counters.accepted, usize::try_from(accepted).unwrap_or(usize::MAX));
                    if answer["duplicate"] == true {
                        Counters::add(&self.counters.duplicate_answers, 1);
                    }
                    if last {
                        Counters::add(&self.counters.finals, 1);
                    }
                    return Outcome::Done;
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match status {
                        408 | 425 | 429 | 500..=599 => {
                            let after = resp
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
                            if let Some(secs) = after {
                                wait = Duration::from_secs(secs);
                            }
                        }
                        401 | 403 | 404 | 405 => {
                            tracing::warn!(status, source = %self.source, "simulated pusher turned off");
                            Counters::add(&self.counters.disabled, 1);
                            self.off = true;
                            return Outcome::Off;
                        }
                        413 => return Outcome::TooLarge,
                        _ => {
                            tracing::warn!(status, source = %self.source, seq, "simulated push refused");
                            Counters::add(&self.counters.failed_batches, 1);
                            return Outcome::Failed;
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, source = %self.source, seq, "simulated push got no answer"),
            }
            if started.elapsed() + wait > GIVE_UP_AFTER {
                Counters::add(&self.counters.failed_batches, 1);
                return Outcome::Failed;
            }
            Counters::add(&self.counters.retries, 1);
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        Outcome::Failed
    }

    /// The body, fields in the contract's order.
    fn body(&self, seq: u64, lines: &[QueuedLine], last: bool) -> String {
        let text = |s: &str| Value::from(s).to_string();
        let lines: Vec<String> = lines
            .iter()
            .map(|l| format!(r#"{{"ts":{},"level":"{}","text":{}}}"#, l.ts, l.level, text(&l.text)))
            .collect();
        format!(
            r#"{{"source":{},"seq":{seq},"worker":{},"timestamp":{},"final":{last},"lines":[{}]}}"#,
            text(&self.source),
            text(&self.worker),
            self.sim.time().saturating_add(self.skew),
            lines.join(",")
        )
    }
}
