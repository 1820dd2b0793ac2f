//! Mining devices. Each runs as its own task, takes work from a watch channel (so a tip change
//! reaches every device at once), cuts its own jobs with a private extranonce prefix, and sends
//! every result to the share checker. Drivers:
//!
//! * [`chain`]: a BM13xx chain through the `bm13xx` driver, either emulated in-process (`sim`)
//!   or on a serial port behind a USB-UART adapter (`serial`);
//! * [`cpu`]: SHA-256 on this computer, for regtest and for testing the pipeline.
//!
//! A device that fails (port unplugged, chain not answering) reports why, waits, and starts
//! again; the daemon keeps running.

pub mod chain;
pub mod cpu;
pub mod link;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Stats};
use crate::share::Found;
use crate::work::{JobFactory, TemplateWork};

/// What every device gets from the daemon.
#[derive(Debug)]
pub struct DeviceContext {
    /// Index (stats).
    pub index: usize,
    /// Name.
    pub name: String,
    /// Current work; `None` means stop hashing.
    pub work: watch::Receiver<Option<Arc<TemplateWork>>>,
    /// Results.
    pub found: ResultSender,
    /// Job cutter with this device's extranonce prefix.
    pub factory: JobFactory,
    /// Counters.
    pub stats: Stats,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

/// How long a device goes without work before it stops its chips. Most pauses are the moment
/// between finding a block and the node's next template (milliseconds): stopping the hash clock
/// for those would cost a full frequency ramp (seconds on silicon) after every find, while the
/// chips would only have added a few siblings of our own block. A pause that lasts (the node is
/// gone) stops them for real.
pub const STOP_CHIPS_AFTER: Duration = Duration::from_secs(2);

/// Where a device sends its results: the share checker's queue. Every result handed over is
/// counted ([`crate::events::DeviceStats::results`]), so that "every result was checked" can
/// be verified: after a shutdown, a device's results equal its shares, stale results,
/// duplicates and hardware errors together.
#[derive(Debug, Clone)]
pub struct ResultSender {
    tx: mpsc::Sender<Found>,
    stats: Stats,
}

impl ResultSender {
    /// Wrap the share checker's queue.
    pub fn new(tx: mpsc::Sender<Found>, stats: Stats) -> Self {
        ResultSender { tx, stats }
    }

    /// Queue a result; `Err` when the share checker is gone.
    pub async fn send(&self, found: Found) -> Result<(), mpsc::error::SendError<Found>> {
        let device = found.device;
        self.tx.send(found).await?;
        self.stats.update(device, |d| d.results += 1);
        Ok(())
    }

    /// Queue a result from a thread outside the runtime.
    pub fn blocking_send(&self, found: Found) -> Result<(), mpsc::error::SendError<Found>> {
        let device = found.device;
        self.tx.blocking_send(found)?;
        self.stats.update(device, |d| d.results += 1);
        Ok(())
    }
}

/// A mining device driver.
pub trait Device: Send + 'static {
    /// Mine until cancelled (`Ok`) or until something breaks (`Err`, retried by the caller).
    fn run(&mut self, ctx: &mut DeviceContext) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A run at least this long counts as the device having worked: its next failure starts a new
/// streak (backoff from 1 s, and a new "device lost" notice).
const WORKED_FOR: Duration = Duration::from_secs(60);

/// Run a device, restarting it after failures, until the daemon shuts down.
///
/// Every failure is an [`Event::DeviceError`] (log, dashboard). The first failure of a streak
/// is also an [`Event::DeviceLost`], which reaches the webhook: the operator hears once that a
/// board was unplugged or stopped answering, not once per retry.
pub async fn supervise<D: Device>(mut device: D, mut ctx: DeviceContext) {
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let started = tokio::time::Instant::now();
        match device.run(&mut ctx).await {
            Ok(()) => return,
            Err(e) => {
                if ctx.cancel.is_cancelled() {
                    return;
                }
                let error = format!("{e:#}");
                tracing::error!(device = %ctx.name, %error, "device failed; restarting it");
                if started.elapsed() > WORKED_FOR {
                    backoff = Duration::from_secs(1);
                    failing = false;
                }
                if !failing {
                    failing = true;
                    let _ = ctx.events.send(Event::DeviceLost {
                        device: ctx.name.clone(),
                        reason: error.clone(),
                    });
                }
                let _ = ctx.events.send(Event::DeviceError {
                    device: ctx.name.clone(),
                    error,
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = ctx.cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
