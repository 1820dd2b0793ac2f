//! Optional ZMQ `hashblock` subscription: the fastest tip signal, but one that can miss events
//! (ZMQ drops on reconnect and on slow subscribers), so longpoll and polling stay on as backstops.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketRecv, SubSocket};

/// Subscribe to `hashblock` on `endpoint` and send one `()` per notification until cancelled.
/// Reconnects with backoff when the connection fails.
pub async fn watch_hashblock(
    endpoint: String,
    notify: mpsc::Sender<()>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(500);
    while !cancel.is_cancelled() {
        let mut socket = SubSocket::new();
        let connected = tokio::select! {
            r = socket.connect(&endpoint) => r,
            _ = cancel.cancelled() => return,
        };
        if let Err(e) = connected {
            tracing::warn!(%endpoint, error = %e, "ZMQ connect failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            continue;
        }
        if let Err(e) = socket.subscribe("hashblock").await {
            tracing::warn!(%endpoint, error = %e, "ZMQ subscribe failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            continue;
        }
        tracing::info!(%endpoint, "subscribed to ZMQ hashblock");
        backoff = Duration::from_millis(500);
        loop {
            let message = tokio::select! {
                m = socket.recv() => m,
                _ = cancel.cancelled() => return,
            };
            match message {
                // Frames: topic, 32-byte hash, 4-byte sequence. Only the fact matters here; the
                // template fetch that follows reads the tip from the node itself.
                Ok(m) if m.get(0).is_some_and(|topic| topic.as_ref() == b"hashblock") => {
                    if notify.try_send(()).is_err() && notify.is_closed() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%endpoint, error = %e, "ZMQ receive failed; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = cancel.cancelled() => return,
                    }
                    break;
                }
            }
        }
    }
}
