//! The wake-up channel: every replica's commits and wants, delivered to the others.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::{SharedLog, StoreError};

impl SharedLog {
    /// Delivers every message to `on_message` until `stop`: a commit (`id`,
    /// `Some(committed)`), or another replica's readers waiting for `id` (`None`),
    /// reconnecting and resubscribing after any failure; `on_resubscribed` runs after
    /// each (re)subscription, since messages published meanwhile are lost.
    pub async fn subscribe(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
        on_message: impl Fn(i64, Option<u64>) + Send + 'static,
        on_resubscribed: impl Fn() + Send + 'static,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut warned = false;
        while !stop.is_cancelled() {
            let subscribed = async {
                let client = self.client().await?;
                let mut pubsub = tokio::time::timeout(self.timeout, client.get_async_pubsub())
                    .await
                    .map_err(|_| StoreError::Unavailable(format!("{} did not answer in time", self.target.addr)))?
                    .map_err(|e| self.target.connect_failed(&e))?;
                pubsub.subscribe(self.channel()).await.map_err(|e| self.target.unreachable(&e))?;
                Ok::<_, StoreError>(pubsub)
            };
            let mut pubsub = match subscribed.await {
                Ok(p) => p,
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot subscribe to the shared store's wake-ups; retrying");
                        warned = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            if warned {
                tracing::info!("subscribed to the shared store's wake-ups again");
            }
            warned = false;
            backoff = Duration::from_millis(100);
            on_resubscribed();
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        if let Some((id, what)) = payload.split_once(' ') {
                            if let Ok(id) = id.parse() {
                                match what {
                                    "want" => on_message(id, None),
                                    n => {
                                        if let Ok(n) = n.parse() {
                                            on_message(id, Some(n));
                                        }
                                    }
                                }
                            }
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
            metrics::counter!(crate::telemetry::STORE_ERRORS, "op" => "subscribe", "kind" => "unavailable")
                .increment(1);
        }
    }
}
