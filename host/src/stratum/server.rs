//! The Stratum listener: connection limits (in total and per address), one task per session,
//! and the job publisher that turns the daemon's work into `mining.notify` lines once for all
//! sessions.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::difficulty::VardiffConfig;
use super::job::StratumJob;
use crate::device::ResultSender;
use crate::events::{Event, Stats};
use crate::work::TemplateWork;

/// Checked `[stratum]` settings.
#[derive(Debug, Clone)]
pub struct StratumSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Difficulty and vardiff.
    pub vardiff: VardiffConfig,
    /// Connections held at once, in total.
    pub max_connections: usize,
    /// Connections held at once from one address.
    pub max_connections_per_ip: usize,
    /// Time a new connection has to subscribe and authorize.
    pub handshake_timeout: Duration,
    /// A session that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Longest wait for a miner to take what is written to it.
    pub write_timeout: Duration,
}

/// The longest line a miner may send (16 KiB); a longer one drops the connection.
pub const MAX_LINE: usize = 16 * 1024;

/// What every session shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub settings: StratumSettings,
    pub jobs: watch::Receiver<Option<Arc<StratumJob>>>,
    pub found: ResultSender,
    pub stats: Stats,
    pub events: broadcast::Sender<Event>,
    /// Daemon-wide job ids (shared with the devices' job factories).
    pub ids: Arc<AtomicU64>,
    /// Session numbers, for extranonce1.
    pub sessions: AtomicU32,
}

/// A bound, not yet running, Stratum server.
#[derive(Debug)]
pub struct StratumServer {
    listener: TcpListener,
    settings: StratumSettings,
}

/// Connections currently held, in total and per address.
#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Holds one connection's place; gives it back when the session ends.
#[derive(Debug)]
struct Slot {
    connections: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

impl StratumServer {
    /// Bind the listening socket (at start-up, so that a port in use is a start-up error).
    pub async fn bind(settings: StratumSettings) -> anyhow::Result<StratumServer> {
        // A backlog as deep as a farm reconnecting at once (tokio's default, 128, drops
        // handshakes when hundreds of miners come back after a restart).
        let backlog = settings.max_connections.clamp(128, 4096) as u32;
        let listener = (|| {
            let socket = if settings.listen.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.bind(settings.listen)?;
            socket.listen(backlog)
        })()
        .map_err(|e| {
            anyhow::anyhow!(
                "stratum.listen = \"{}\": cannot listen there ({e}); choose a free port",
                settings.listen
            )
        })?;
        Ok(StratumServer { listener, settings })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `cancel`, then end every session and return once they have ended (their
    /// last results are queued for the share checker by then).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        self,
        work: watch::Receiver<Option<Arc<TemplateWork>>>,
        found: ResultSender,
        stats: Stats,
        events: broadcast::Sender<Event>,
        ids: Arc<AtomicU64>,
        cancel: CancellationToken,
    ) {
        let (jobs_tx, jobs_rx) = watch::channel(None);
        let publisher = tokio::spawn(publish_jobs(work, jobs_tx, cancel.clone()));
        let shared = Arc::new(Shared {
            settings: self.settings.clone(),
            jobs: jobs_rx,
            found,
            stats,
            events,
            ids,
            sessions: AtomicU32::new(rand::random()),
        });
        let connections = Arc::new(Mutex::new(Connections::default()));
        let sessions = TaskTracker::new();
        tracing::info!(listen = %self.settings.listen, "stratum server listening");
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "stratum accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Some(slot) = take_slot(&connections, &self.settings, peer.ip()) else {
                tracing::debug!(%peer, "stratum connection refused: over the connection limit");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            sessions.spawn(run_session(
                shared.clone(),
                stream,
                peer,
                slot,
                cancel.clone(),
            ));
        }
        sessions.close();
        sessions.wait().await;
        let _ = publisher.await;
    }
}

fn take_slot(
    connections: &Arc<Mutex<Connections>>,
    settings: &StratumSettings,
    ip: IpAddr,
) -> Option<Slot> {
    let mut c = connections
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if c.total >= settings.max_connections || from_ip >= settings.max_connections_per_ip {
        return None;
    }
    c.total += 1;
    c.per_ip.insert(ip, from_ip + 1);
    Some(Slot {
        connections: connections.clone(),
        ip,
    })
}

async fn run_session(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    cancel: CancellationToken,
) {
    super::session::Session::new(shared, peer)
        .run(stream, cancel)
        .await;
    drop(slot);
}

/// Turn each new piece of template work into a Stratum job, serialised once.
async fn publish_jobs(
    mut work: watch::Receiver<Option<Arc<TemplateWork>>>,
    jobs: watch::Sender<Option<Arc<StratumJob>>>,
    cancel: CancellationToken,
) {
    let mut number: u64 = 0;
    let mut last: Option<Arc<StratumJob>> = None;
    loop {
        let current = work.borrow_and_update().clone();
        if let Some(w) = current
            && last.as_ref().is_none_or(|l| !Arc::ptr_eq(&l.work, &w))
        {
            number += 1;
            let clean = w.new_tip
                || last
                    .as_ref()
                    .is_none_or(|l| l.work.prev_blockhash() != w.prev_blockhash());
            let job = Arc::new(StratumJob::new(number, w, clean));
            last = Some(job.clone());
            jobs.send_replace(Some(job));
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = work.changed() => if changed.is_err() { return },
        }
    }
}
