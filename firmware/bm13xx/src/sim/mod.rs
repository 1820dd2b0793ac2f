//! A BM13xx chip-chain emulator that answers the real protocol from the chips' side.
//!
//! What it does, byte for byte: checks CRC5/CRC16 and ignores bad frames as a chip would;
//! chain-inactive and address assignment in chain order; a register file with reads and writes;
//! 9-byte replies until version rolling is enabled, 11 after; baud changes (a host left at the
//! wrong speed sees garbage); job slots by id; the nonce space split by chip address (BM1366,
//! BM1397) or CHIP_NONCE_OFFSET (BM1368/70) and by core; version rolling within the programmed
//! mask; ticket-mask filtering; real sha256d on the CPU; replies in the chip's format, including
//! the excess-zero-bits field.
//!
//! One deliberate difference: a real chip requires 32 leading zero bits before the ticket mask
//! adds more, which at CPU speed means one nonce every few minutes. [`SimConfig::floor_bits`]
//! lowers that floor (tests use 8–16); everything above it behaves as on silicon, and 32 gives
//! the faithful behaviour.
//!
//! Reach it in-process with [`spawn`] (a duplex byte stream the driver reads and writes, plus a
//! [`SimBaud`] for the host baud) or over TCP with [`serve_tcp`] (`hearth sim-chain --listen`).

pub mod chain;
mod hasher;
pub mod sha256d;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::chain::HostBaud;
use crate::model::ChipModel;
use chain::ChainState;

/// Line faults, changeable while the emulator runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LineFaults {
    /// Probability that a byte (either direction) has one bit flipped.
    pub byte_error_rate: f64,
    /// Probability that a byte (either direction) is lost.
    pub byte_drop_rate: f64,
}

/// Emulator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Chip model.
    pub model: ChipModel,
    /// Chips on the chain.
    pub chips: u16,
    /// Real sha256d computations per second per chip; 0 = as fast as the CPU allows.
    pub hashrate_per_chip: f64,
    /// Delay from a reply being produced to its first byte on the line.
    pub latency: Duration,
    /// Leading zero bits every chip requires before the ticket mask (32 on silicon).
    pub floor_bits: u32,
    /// Hashing threads (each owns a share of the chips).
    pub threads: usize,
    /// Line faults at start.
    pub faults: LineFaults,
    /// Chain positions of chips that are dead: they answer nothing and hash nothing, but relay.
    pub dead_chips: Vec<u16>,
    /// Chain positions that report another chip id.
    pub wrong_chip_ids: Vec<(u16, u16)>,
    /// Pace replies at the chips' baud rate (10 bits per byte).
    pub pace_line: bool,
    /// Seed for fault injection.
    pub seed: u64,
}

impl SimConfig {
    /// A healthy chain of `chips` chips with a floor of 12 bits (a nonce per ~4096 hashes).
    pub fn new(model: ChipModel, chips: u16) -> Self {
        SimConfig {
            model,
            chips,
            hashrate_per_chip: 0.0,
            latency: Duration::ZERO,
            floor_bits: 12,
            threads: 1,
            faults: LineFaults::default(),
            dead_chips: Vec::new(),
            wrong_chip_ids: Vec::new(),
            pace_line: false,
            seed: 0x4845_4152_5448,
        }
    }
}

/// Emulator counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Frames from the host the chips accepted.
    pub frames: u64,
    /// Frames ignored for a bad CRC.
    pub bad_frames: u64,
    /// Job frames accepted.
    pub jobs: u64,
    /// sha256d computations per chip.
    pub hashes: Vec<u64>,
    /// Nonces reported per chip.
    pub nonces: Vec<u64>,
    /// Current chip-side baud.
    pub chip_baud: u32,
    /// Chip addresses in chain order.
    pub addresses: Vec<u8>,
    /// When the last job frame arrived and the previous-block hash it carried (header order).
    pub last_job: Option<(Instant, [u8; 32])>,
}

pub(crate) struct Outgoing {
    at: Instant,
    bytes: Vec<u8>,
}

pub(crate) struct Shared {
    config: SimConfig,
    state: Mutex<ChainState>,
    faults: Mutex<LineFaults>,
    /// Host UART baud for in-process links; `None` over TCP, where the baud is not visible.
    host_baud: Option<Arc<AtomicU32>>,
    stop: AtomicBool,
}

/// Control and statistics of a running emulator.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Change line faults while running.
    pub fn set_faults(&self, faults: LineFaults) {
        if let Ok(mut f) = self.shared.faults.lock() {
            *f = faults;
        }
    }

    /// Kill (or revive) the chip at a chain position.
    pub fn set_dead(&self, position: u16, dead: bool) {
        if let Ok(mut state) = self.shared.state.lock()
            && let Some(chip) = state.chips.get_mut(usize::from(position))
        {
            chip.dead = dead;
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        let Ok(state) = self.shared.state.lock() else {
            return SimStats::default();
        };
        SimStats {
            frames: state.stats.frames,
            bad_frames: state.stats.bad_frames,
            jobs: state.stats.jobs,
            hashes: state.chips.iter().map(|c| c.hashes).collect(),
            nonces: state.chips.iter().map(|c| c.nonces).collect(),
            chip_baud: state.chip_baud(),
            addresses: state.chips.iter().map(|c| c.address).collect(),
            last_job: state.stats.last_job,
        }
    }

    /// Stop hashing and close the line.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The host's view of the emulated UART's baud, for [`crate::chain::HostBaud`].
#[derive(Debug, Clone)]
pub struct SimBaud(Arc<AtomicU32>);

impl HostBaud for SimBaud {
    type Error = core::convert::Infallible;
    fn set_host_baud(&mut self, baud: u32) -> Result<(), Self::Error> {
        self.0.store(baud, Ordering::Relaxed);
        Ok(())
    }
}

/// An emulated chain reachable in-process.
#[derive(Debug)]
pub struct SimPort {
    /// The host end of the UART.
    pub stream: tokio::io::DuplexStream,
    /// Host baud control.
    pub baud: SimBaud,
    /// Emulator control.
    pub handle: SimHandle,
}

fn shared(config: SimConfig, host_baud: Option<Arc<AtomicU32>>) -> Arc<Shared> {
    let state = ChainState::new(
        config.model,
        config.chips,
        config.floor_bits,
        &config.dead_chips,
        &config.wrong_chip_ids,
    );
    Arc::new(Shared {
        faults: Mutex::new(config.faults),
        config,
        state: Mutex::new(state),
        host_baud,
        stop: AtomicBool::new(false),
    })
}

/// Start an emulated chain on the current tokio runtime and return the host end.
pub fn spawn(config: SimConfig) -> SimPort {
    let baud = Arc::new(AtomicU32::new(115_200));
    let shared = shared(config, Some(baud.clone()));
    let (host, chip) = tokio::io::duplex(64 * 1024);
    let handle = SimHandle {
        shared: shared.clone(),
    };
    tokio::spawn(async move {
        let _ = run_line(chip, shared).await;
    });
    SimPort {
        stream: host,
        baud: SimBaud(baud),
        handle,
    }
}

/// Serve emulated chains over TCP; every connection gets its own freshly powered chain (the
/// TCP link carries no reset line). Runs until the listener fails.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    config: SimConfig,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tracing::info!(%peer, model = %config.model, chips = config.chips, "chain emulator connected");
        let shared = shared(config.clone(), None);
        tokio::spawn(async move {
            if let Err(e) = run_line(stream, shared).await {
                tracing::info!(%peer, error = %e, "chain emulator connection ended");
            }
        });
    }
}

/// Whether host and chips disagree on the baud by more than a UART tolerates (5 %).
fn baud_mismatch(shared: &Shared, chip_baud: u32) -> bool {
    let Some(host) = &shared.host_baud else {
        return false;
    };
    let host = f64::from(host.load(Ordering::Relaxed));
    let chip = f64::from(chip_baud);
    (host - chip).abs() / chip > 0.05
}

fn corrupt(bytes: &mut Vec<u8>, faults: LineFaults, garble: bool, rng: &mut StdRng) {
    if garble {
        for b in bytes.iter_mut() {
            *b = rng.random();
        }
        return;
    }
    if faults.byte_error_rate <= 0.0 && faults.byte_drop_rate <= 0.0 {
        return;
    }
    bytes.retain(|_| !rng.random_bool(faults.byte_drop_rate.clamp(0.0, 1.0)));
    for b in bytes.iter_mut() {
        if rng.random_bool(faults.byte_error_rate.clamp(0.0, 1.0)) {
            *b ^= 1 << rng.random_range(0..8);
        }
    }
}

/// Run one emulated chain over a byte stream until the host closes it or [`SimHandle::stop`].
async fn run_line<S>(stream: S, shared: Arc<Shared>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    let threads = shared.config.threads.max(1);
    let chips = usize::from(shared.config.chips);
    let mut workers = Vec::new();
    for t in 0..threads {
        let mine: Vec<usize> = (0..chips).filter(|c| c % threads == t).collect();
        let (s, out) = (shared.clone(), tx.clone());
        workers.push(std::thread::spawn(move || hasher::run(s, mine, out)));
    }

    let read_shared = shared.clone();
    let reader_task = async move {
        let mut rng = StdRng::seed_from_u64(read_shared.config.seed);
        let mut buf = vec![0u8; 4096];
        loop {
            if read_shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let n = match tokio::time::timeout(Duration::from_millis(100), reader.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => continue,
            };
            let mut bytes = buf[..n].to_vec();
            let faults = read_shared.faults.lock().map(|f| *f).unwrap_or_default();
            let replies = {
                let Ok(mut state) = read_shared.state.lock() else {
                    break;
                };
                let garble = baud_mismatch(&read_shared, state.chip_baud());
                corrupt(&mut bytes, faults, garble, &mut rng);
                state.receive(&bytes)
            };
            for reply in replies {
                if tx
                    .send(Outgoing {
                        at: Instant::now(),
                        bytes: reply,
                    })
                    .is_err()
                {
                    break;
                }
            }
        }
        read_shared.stop.store(true, Ordering::Relaxed);
    };

    let write_shared = shared.clone();
    let writer_task = async move {
        let mut rng = StdRng::seed_from_u64(write_shared.config.seed ^ 0xA5A5);
        let mut line_free = Instant::now();
        while let Some(mut out) = rx.recv().await {
            let latency = write_shared.config.latency;
            if !latency.is_zero() {
                tokio::time::sleep_until((out.at + latency).into()).await;
            }
            let (faults, chip_baud) = (
                write_shared.faults.lock().map(|f| *f).unwrap_or_default(),
                write_shared
                    .state
                    .lock()
                    .map(|s| s.chip_baud())
                    .unwrap_or(115_200),
            );
            corrupt(
                &mut out.bytes,
                faults,
                baud_mismatch(&write_shared, chip_baud),
                &mut rng,
            );
            if writer.write_all(&out.bytes).await.is_err() {
                break;
            }
            if write_shared.config.pace_line {
                let now = Instant::now();
                line_free = line_free.max(now)
                    + Duration::from_nanos(
                        out.bytes.len() as u64 * 10 * 1_000_000_000 / u64::from(chip_baud.max(1)),
                    );
                if line_free > now + Duration::from_millis(2) {
                    tokio::time::sleep_until(line_free.into()).await;
                }
            }
            if write_shared.stop.load(Ordering::Relaxed) && rx.is_empty() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };

    tokio::join!(reader_task, writer_task);
    shared.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    }
    Ok(())
}

/// An `embedded-hal-async` delay on tokio's clock, for running the driver on the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(u64::from(ns))).await;
    }
}
