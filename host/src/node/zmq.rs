//! Optional ZMQ `hashblock` subscription: the fastest tip signal, but one that can miss events
//! (ZMQ drops on reconnect and on slow subscribers), so longpoll and polling stay on as backstops.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketRecv, SubSocket};

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Subscribe to `hashblock` on `endpoint` and send one `()` per notification until cancelled.
/// Reconnects with backoff when the connection fails.
pub async fn watch_hashblock(
    endpoint: String,
    notify: mpsc::Sender<()>,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ended = tokio::select! {
            ended = forward_hashblocks(&endpoint, &notify) => ended,
            _ = cancel.cancelled() => return,
        };
        let Ended::Failed {
            what,
            error,
            subscribed,
        } = ended
        else {
            return;
        };
        tracing::warn!(%endpoint, %error, "ZMQ {what}");
        if subscribed {
            // The connection worked: a later failure starts the backoff afresh.
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        if !subscribed {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// How one subscription ended.
enum Ended {
    /// Nobody listens any more.
    Closed,
    /// The socket failed; `subscribed` says whether it had got as far as subscribing.
    Failed {
        what: &'static str,
        error: zeromq::ZmqError,
        subscribed: bool,
    },
}

/// Connect, subscribe, and forward notifications until the socket fails or `notify` closes.
async fn forward_hashblocks(endpoint: &str, notify: &mpsc::Sender<()>) -> Ended {
    let failed = |what, error, subscribed| Ended::Failed {
        what,
        error,
        subscribed,
    };
    let mut socket = SubSocket::new();
    if let Err(e) = socket.connect(endpoint).await {
        return failed("connect failed; retrying", e, false);
    }
    if let Err(e) = socket.subscribe("hashblock").await {
        return failed("subscribe failed; retrying", e, false);
    }
    tracing::info!(%endpoint, "subscribed to ZMQ hashblock");
    loop {
        match socket.recv().await {
            // Frames: topic, 32-byte hash, 4-byte sequence. Only the fact matters here; the
            // template fetch that follows reads the tip from the node itself.
            Ok(m) if m.get(0).is_some_and(|topic| topic.as_ref() == b"hashblock") => {
                if notify.try_send(()).is_err() && notify.is_closed() {
                    return Ended::Closed;
                }
            }
            Ok(_) => {}
            Err(e) => return failed("receive failed; reconnecting", e, true),
        }
    }
}
