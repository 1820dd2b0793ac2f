//! What the daemon is doing, kept up to date from its events and its work: the node, the tip,
//! the template's age, the network difficulty, the work source, and the log the dashboard shows:
//! the daemon's events as lines, and the warnings and errors logged (`crate::logging::Tail`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::events::Event;
use crate::work::TemplateWork;

/// How many log lines the dashboard can show.
pub const LOG_LINES: usize = 200;

/// Unix time now, seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The node and the work, as `/api/status` shows them.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct NodeStatus {
    /// The node answers.
    pub node_up: bool,
    /// Why it does not, when it does not.
    pub node_error: Option<String>,
    /// Height being mined.
    pub height: Option<u32>,
    /// The tip the work builds on.
    pub tip: Option<String>,
    /// Unix time of the current template.
    pub template_time: Option<u64>,
    /// Transactions in the template.
    pub transactions: usize,
    /// Network difficulty of the block being mined.
    pub network_difficulty: Option<f64>,
    /// `node` or the pool being mined.
    pub work_source: String,
    /// Why the devices are paused, when they are.
    pub paused: Option<String>,
}

/// One line of the dashboard's log: a daemon event, or a warning or error logged.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogLine {
    /// Unix time.
    pub time: u64,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    /// What happened.
    pub message: String,
}

/// Shared between the tracker and the API.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    inner: Arc<Mutex<Inner>>,
    /// Each log line as it is added (the dashboard's live log).
    lines: broadcast::Sender<LogLine>,
}

impl Default for StatusBoard {
    fn default() -> StatusBoard {
        StatusBoard {
            inner: Arc::default(),
            lines: broadcast::channel(256).0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    status: NodeStatus,
    log: VecDeque<LogLine>,
    operator_paused: bool,
}

impl StatusBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current status.
    pub fn status(&self) -> NodeStatus {
        self.lock().status.clone()
    }

    /// The recent log lines, oldest first.
    pub fn log(&self) -> Vec<LogLine> {
        self.lock().log.iter().cloned().collect()
    }

    /// Every log line added from now on.
    pub fn follow_log(&self) -> broadcast::Receiver<LogLine> {
        self.lines.subscribe()
    }

    /// Add a line to the log (bounded: the oldest goes).
    pub fn push_log(&self, line: LogLine) {
        let mut inner = self.lock();
        if inner.log.len() == LOG_LINES {
            inner.log.pop_front();
        }
        inner.log.push_back(line.clone());
        // Sent under the lock, so followers see lines in the log's order.
        let _ = self.lines.send(line);
    }

    /// Apply an event (pure bookkeeping; tested directly).
    pub fn apply(&self, event: &Event) {
        let mut inner = self.lock();
        let s = &mut inner.status;
        match event {
            Event::NewWork { .. } => {}
            Event::NodeDown { error } => {
                s.node_up = false;
                s.node_error = Some(error.clone());
            }
            Event::NodeUp => {
                s.node_up = true;
                s.node_error = None;
            }
            Event::Paused { reason } => s.paused = Some(reason.clone()),
            Event::WorkSource { source, .. } => s.work_source = source.clone(),
            _ => {}
        }
        drop(inner);
        if let Some((level, message)) = describe(event) {
            self.push_log(LogLine {
                time: unix_now(),
                level,
                message,
            });
        }
    }

    /// Record the work the devices now have.
    pub fn set_work(&self, work: Option<&TemplateWork>) {
        let mut inner = self.lock();
        let operator_paused = inner.operator_paused;
        let s = &mut inner.status;
        match work {
            Some(w) => {
                // Work from a pool says nothing about the node.
                match &w.upstream {
                    None => {
                        s.node_up = true;
                        s.node_error = None;
                        s.work_source = "node".into();
                    }
                    Some(u) => s.work_source = u.pool.clone(),
                }
                if !operator_paused {
                    s.paused = None;
                }
                s.height = Some(w.template.height);
                s.tip = Some(w.template.prev_blockhash.to_string());
                s.template_time = Some(unix_now());
                s.transactions = w.template.transactions.len();
                s.network_difficulty = Some(w.template.target.difficulty_float());
            }
            None => {
                if s.paused.is_none() {
                    s.paused = Some("no work".into());
                }
            }
        }
    }

    /// Mark an operator pause or resume.
    pub fn set_operator_pause(&self, paused: bool) {
        let mut inner = self.lock();
        inner.operator_paused = paused;
        inner.status.paused = paused.then(|| "paused by the operator".to_string());
    }
}

/// The event as a log line, for those worth one.
pub fn describe(event: &Event) -> Option<(&'static str, String)> {
    Some(match event {
        Event::NewWork {
            height,
            transactions,
            new_tip: true,
            ..
        } => (
            "info",
            format!("new block to mine: height {height}, {transactions} transactions"),
        ),
        Event::NewWork { .. } => return None,
        Event::Paused { reason } => ("warn", format!("devices paused: {reason}")),
        Event::NodeDown { error } => ("error", format!("node down: {error}")),
        Event::NodeUp => ("info", "node answers again".into()),
        Event::BlockCandidate {
            height,
            hash,
            device,
        } => (
            "info",
            format!("block candidate at height {height} from {device}: {hash} (submitting)"),
        ),
        Event::BlockAccepted {
            height,
            hash,
            device,
        } => (
            "info",
            format!(
                "BLOCK FOUND at height {height} by {device}: {hash}, on the node's active chain"
            ),
        ),
        Event::BlockRejected {
            height,
            hash,
            reason,
        } => (
            "error",
            format!("block {hash} at height {height} rejected by the node: {reason}"),
        ),
        Event::BlockStale { height, hash } => (
            "warn",
            format!("block {hash} at height {height} is valid but another block took the height"),
        ),
        Event::BlockUnconfirmed {
            height,
            hash,
            reason,
        } => (
            "warn",
            format!("block {hash} at height {height} not confirmed yet: {reason}"),
        ),
        Event::DeviceUp { device, detail } => ("info", format!("{device} mining: {detail}")),
        Event::BoardFault { device, fault } => ("warn", format!("{device}: {fault}")),
        Event::WorkSource { source, reason } => ("warn", format!("mining {source} now: {reason}")),
        Event::DeviceLost { device, reason } => ("warn", format!("{device} lost: {reason}")),
        Event::DeviceError { device, error } => ("error", format!("{device}: {error}")),
        Event::PoolUp { name } => (
            "info",
            format!("pool: logged in to the coordinator as {name}"),
        ),
        Event::PoolDown { reason } => ("warn", format!("pool: coordinator lost: {reason}")),
    })
}

/// Keeps `board` up to date until cancelled: its status from the events and the work, its log
/// from the events and from `logged` (the warnings and errors kept before it started, and a
/// feed of those after).
pub async fn track(
    board: StatusBoard,
    mut events: broadcast::Receiver<Event>,
    mut work: watch::Receiver<Option<Arc<TemplateWork>>>,
    logged: (Vec<LogLine>, broadcast::Receiver<LogLine>),
    cancel: CancellationToken,
) {
    board.set_work(work.borrow_and_update().as_deref());
    let (earlier, mut logged) = logged;
    for line in earlier {
        board.push_log(line);
    }
    let mut logged_open = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            line = logged.recv(), if logged_open => match line {
                Ok(line) => board.push_log(line),
                Err(broadcast::error::RecvError::Lagged(n)) => board.push_log(LogLine {
                    time: unix_now(),
                    level: "warn",
                    message: format!("{n} warnings were logged too fast to show here; the full log has them"),
                }),
                Err(broadcast::error::RecvError::Closed) => logged_open = false,
            },
            event = events.recv() => match event {
                Ok(e) => board.apply(&e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "status tracker fell behind the events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = work.changed() => {
                if changed.is_err() {
                    return;
                }
                board.set_work(work.borrow_and_update().as_deref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_update_the_status_and_the_log() {
        let b = StatusBoard::default();
        b.apply(&Event::NodeDown {
            error: "connection refused".into(),
        });
        let s = b.status();
        assert!(!s.node_up);
        assert_eq!(s.node_error.as_deref(), Some("connection refused"));
        b.apply(&Event::NodeUp);
        assert!(b.status().node_up);
        b.apply(&Event::WorkSource {
            source: "pool-a".into(),
            reason: "node down".into(),
        });
        assert_eq!(b.status().work_source, "pool-a");
        let log = b.log();
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].level, "error");
        assert!(log[0].message.contains("connection refused"));
    }

    #[test]
    fn the_log_is_bounded() {
        let b = StatusBoard::default();
        for _ in 0..LOG_LINES + 50 {
            b.apply(&Event::NodeUp);
        }
        assert_eq!(b.log().len(), LOG_LINES);
    }

    #[test]
    fn a_candidate_is_not_a_found_block() {
        use bitcoin::hashes::Hash as _;
        let hash = bitcoin::BlockHash::from_byte_array([7; 32]);
        let (_, candidate) = describe(&Event::BlockCandidate {
            height: 5,
            hash,
            device: "b".into(),
        })
        .unwrap_or(("", String::new()));
        assert!(!candidate.contains("FOUND"), "{candidate}");
        let (_, accepted) = describe(&Event::BlockAccepted {
            height: 5,
            hash,
            device: "b".into(),
        })
        .unwrap_or(("", String::new()));
        assert!(accepted.contains("BLOCK FOUND"), "{accepted}");
    }
}
