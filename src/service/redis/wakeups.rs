//! The wake-up channel: every replica's commits, wants and pushes, delivered to the others.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::{SharedLog, StoreError};

/// One message of the wake-up channel about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A replica committed lines or meta up to this line count (`"<id> <n>"`).
    Committed(u64),
    /// Another replica's readers wait for the instance (`"<id> want"`).
    Want,
    /// A batch was queued for the instance (`"<id> push"`): the holder drains the queue.
    Push,
}

impl Wake {
    /// The instance and the message of a payload; `None` for one this build does not know.
    fn parse(payload: &str) -> Option<(i64, Wake)> {
        let (id, what) = payload.split_once(' ')?;
        let wake = match what {
            "want" => Wake::Want,
            "push" => Wake::Push,
            n => Wake::Committed(n.parse().ok()?),
        };
        Some((id.parse().ok()?, wake))
    }
}

impl SharedLog {
    /// Delivers every message to `on_message` until `stop` ([`Wake`]), reconnecting and resubscribing after any failure; `on_resubscribed` runs after
    /// each (re)subscription, since messages published meanwhile are lost.
    pub async fn subscribe(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
        on_message: impl Fn(i64, Wake) + Send + 'static,
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
                        if let Some((id, wake)) = Wake::parse(&payload) {
                            on_message(id, wake);
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

#[cfg(test)]
mod tests {
    use super::Wake;

    #[test]
    fn payloads_name_an_instance_and_what_happened_to_it() {
        assert_eq!(Wake::parse("12 340"), Some((12, Wake::Committed(340))));
        assert_eq!(Wake::parse("-3 want"), Some((-3, Wake::Want)));
        assert_eq!(Wake::parse("7 push"), Some((7, Wake::Push)));
        for junk in ["", "7", "x push", "7 later", "7 -1"] {
            assert_eq!(Wake::parse(junk), None, "{junk:?}");
        }
    }
}
