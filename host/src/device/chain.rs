//! BM13xx chains: the emulated one (`sim`) and one on a serial port (`serial`), both through the
//! same `bm13xx` driver the firmware uses.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bm13xx::chain::{Chain, ChainEvent, ChainOptions, HostBaud};
use bm13xx::job::{MidstateJob, midstate_version};
use bm13xx::model::{ChainBaud, ChipModel, JobFormat};
use bm13xx::sequence::InitConfig;
use bm13xx::sim::{SimConfig, SimHandle, TokioDelay};
use bm13xx::verify::{NonceVerifier, midstate};
use bm13xx::{Command, Destination, register};
use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Device, DeviceContext, STOP_CHIPS_AFTER};
use crate::events::Event;
use crate::share::{Found, Threshold};
use crate::work::{Job, TemplateWork};

/// How long a stopping chain device keeps reading nonces the chips already sent.
const STOP_DRAIN: Duration = Duration::from_millis(200);

/// Drive an initialised chain: send jobs, turn nonces into results. With no work for
/// [`STOP_CHIPS_AFTER`] (paused), the chips' hash clock is switched off so they stop hashing for
/// real; it is switched on again with the next work. On shutdown the chips are stopped the same way and the nonces already on
/// the wire are still read and handed over.
async fn mine_chain<W, R, B>(
    chain: Chain<W, R, TokioDelay, B>,
    ctx: &mut DeviceContext,
    init: InitConfig,
    chips: u16,
    share_bits: u32,
    interval: Duration,
    mut chip_mask: u32,
) -> anyhow::Result<()>
where
    W: embedded_io_async::Write<Error = std::io::Error>,
    R: embedded_io_async::Read<Error = std::io::Error>,
    B: HostBaud,
{
    let model = chain.model();
    let (mut tx, mut rx, mut delay, _) = chain.split();
    // Jobs in flight with their masks; it rebuilds each nonce's version. The share checker
    // re-hashes and classifies every result, so this one never hashes.
    let mut verifier: NonceVerifier<Arc<Job>> = NonceVerifier::new(model, chip_mask, share_bits);
    let mut work: Option<Arc<TemplateWork>> = ctx.work.borrow_and_update().clone();
    let mut hashing = true;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the chips are to stop for lack of work (see STOP_CHIPS_AFTER).
    let mut stop_at = work
        .is_none()
        .then(|| tokio::time::Instant::now() + STOP_CHIPS_AFTER);
    loop {
        let send_now = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = tokio::time::sleep_until(stop_at.unwrap_or_else(tokio::time::Instant::now)), if stop_at.is_some() => {
                stop_at = None;
                if work.is_none() && hashing {
                    tx.stop_hashing(init).await?;
                    hashing = false;
                    ctx.stats.update(ctx.index, |d| d.paused = true);
                    tracing::info!(device = %ctx.name, "paused: chips stopped (hash clock off)");
                }
                false
            }
            changed = ctx.work.changed() => {
                if changed.is_err() {
                    break; // daemon gone
                }
                work = ctx.work.borrow_and_update().clone();
                stop_at = work
                    .is_none()
                    .then(|| tokio::time::Instant::now() + STOP_CHIPS_AFTER);
                tick.reset();
                true
            }
            _ = tick.tick() => true,
            event = rx.next_event() => {
                let event = event.map_err(|e| anyhow::anyhow!("chain UART: {e:?}"))?;
                if let Some(found) = nonce_result(event, &verifier, ctx, chips, share_bits)
                    && ctx.found.send(found).await.is_err()
                {
                    return Ok(());
                }
                false
            }
        };
        if !send_now {
            continue;
        }
        let Some(w) = &work else { continue };
        if !hashing {
            tx.resume_hashing(init, chips, &mut delay).await?;
            hashing = true;
            ctx.stats.update(ctx.index, |d| d.paused = false);
            tracing::info!(device = %ctx.name, "resumed: hash clock on");
        }
        let job = Arc::new(ctx.factory.next_job(w));
        // Full-header chips roll the version bits of their 0xA4 register, chip-wide: keep it
        // equal to the job's mask (which shrinks when a template sets bits inside BIP320), or the
        // chips would roll, and so clear, the template's bits and every nonce would fail to
        // verify. Midstate chips roll nothing themselves: the host steps the versions.
        if model.job_format() == JobFormat::FullHeader && job.version_mask != chip_mask {
            tx.send(Command::WriteRegister {
                to: Destination::All,
                register: register::addr::VERSION_ROLLING,
                value: register::version_rolling(job.version_mask),
            })
            .await?;
            tracing::debug!(device = %ctx.name, mask = format_args!("{:#010x}", job.version_mask),
                "chip version-rolling mask changed");
            chip_mask = job.version_mask;
        }
        let booked = verifier.add_job_with(job.chip_job(0), job.version_mask, job.clone());
        match model.job_format() {
            JobFormat::FullHeader => tx.send_job(&booked).await?,
            JobFormat::Midstate => {
                tx.send_midstate_job(&midstate_job(&job, booked.job_id))
                    .await?
            }
        }
        tx.flush().await?;
    }
    // Stopping: nobody will send work or read results any more, so the chips must not go on
    // hashing; what they already sent is still a result (it may be a block).
    if hashing {
        tx.stop_hashing(init).await?;
    }
    let drain = tokio::time::sleep(STOP_DRAIN);
    tokio::pin!(drain);
    loop {
        tokio::select! {
            _ = &mut drain => break,
            event = rx.next_event() => {
                let Ok(event) = event else { break };
                if let Some(found) = nonce_result(event, &verifier, ctx, chips, share_bits)
                    && ctx.found.send(found).await.is_err()
                {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The result a nonce reply stands for, if it belongs to a job we sent. The version the chip
/// hashed is rebuilt by the shared verifier (the firmware uses the same one, and also re-hashes
/// there); every result for a known job goes on to the share checker, which re-hashes,
/// classifies and counts it, hardware errors and repeats included.
fn nonce_result(
    event: ChainEvent,
    verifier: &NonceVerifier<Arc<Job>>,
    ctx: &DeviceContext,
    chips: u16,
    share_bits: u32,
) -> Option<Found> {
    let ChainEvent::Nonce(reply) = event else {
        return None;
    };
    let (version, job) = verifier.job_version(&reply)?;
    let job = job.clone();
    Some(Found {
        device: ctx.index,
        device_name: ctx.name.clone(),
        chip: Some(reply.chip_index(verifier.model(), chips)),
        job,
        version: version as i32,
        nonce: reply.nonce,
        threshold: Threshold::zero_bits(share_bits),
    })
}

/// A BM1397 job: four midstates for four versions stepped inside the mask.
fn midstate_job(job: &Job, id: u8) -> MidstateJob {
    let midstates = core::array::from_fn(|i| {
        let version = midstate_version(job.version as u32, job.version_mask, i as u8) as i32;
        let header = bitcoin::consensus::encode::serialize(&job.header(version, 0));
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        midstate(&first)
    });
    let chip = job.chip_job(id);
    let mut tail = [0u8; 4];
    tail.copy_from_slice(&chip.merkle_root[28..32]);
    MidstateJob {
        job_id: id,
        starting_nonce: 0,
        nbits: chip.nbits,
        ntime: chip.ntime,
        merkle_root_tail: tail,
        midstate_count: 4,
        midstates,
    }
}

/// Bring up a chain over any byte stream, then mine.
async fn bring_up_and_mine<S, B>(
    stream: S,
    baud: B,
    options: ChainOptions,
    ctx: &mut DeviceContext,
    model: ChipModel,
    share_floor: u32,
    detail: &str,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    B: HostBaud,
{
    let (rx, tx) = tokio::io::split(stream);
    let mut chain = Chain::new(
        model,
        FromTokio::new(tx),
        FromTokio::new(rx),
        TokioDelay,
        baud,
        options,
    );
    let info = tokio::time::timeout(Duration::from_secs(120), chain.init())
        .await
        .map_err(|_| anyhow::anyhow!("chain bring-up took more than 2 minutes"))?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let share_bits = share_floor + options.init.ticket_difficulty.trailing_zeros();
    tracing::info!(device = %ctx.name, chips = info.chip_count, model = %model, baud = info.baud,
        mhz = info.frequency_khz as f64 / 1000.0, share_bits, "chain ready");
    ctx.stats.update(ctx.index, |d| {
        d.chips
            .resize(usize::from(info.chip_count), Default::default())
    });
    let _ = ctx.events.send(Event::DeviceUp {
        device: ctx.name.clone(),
        detail: format!("{} × {model} {detail}", info.chip_count),
    });
    mine_chain(
        chain,
        ctx,
        options.init,
        info.chip_count,
        share_bits,
        model.job_interval(),
        options.init.version_mask,
    )
    .await
}

/// An emulated chain in this process.
#[derive(Debug)]
pub struct SimDevice {
    /// Emulator settings.
    pub config: SimConfig,
    /// The running emulator, for tests and benchmarks.
    pub handle: Arc<Mutex<Option<SimHandle>>>,
}

impl Device for SimDevice {
    async fn run(&mut self, ctx: &mut DeviceContext) -> anyhow::Result<()> {
        let port = bm13xx::sim::spawn(self.config.clone());
        if let Ok(mut h) = self.handle.lock() {
            *h = Some(port.handle.clone());
        }
        let model = self.config.model;
        let mut options = ChainOptions::new(model, Some(self.config.chips));
        // Emulated silicon needs no settling time; the ticket mask stays at difficulty 1 so the
        // emulator's floor is the share threshold.
        options.init.ramp_step_delay_ms = 0;
        options.init.per_chip_delay_ms = 0;
        options.init.ticket_difficulty = 1;
        options.enumeration_timeout_ms = 100 + self.config.latency.as_millis() as u32;
        let result = bring_up_and_mine(
            port.stream,
            port.baud,
            options,
            ctx,
            model,
            self.config.floor_bits,
            "(emulated)",
        )
        .await;
        port.handle.stop();
        result
    }
}

/// A chain on a serial port.
#[derive(Debug, Clone)]
pub struct SerialDevice {
    /// Port path.
    pub path: PathBuf,
    /// Chip model.
    pub model: ChipModel,
    /// Chips fitted.
    pub chips: u16,
    /// Hash clock, kHz.
    pub frequency_khz: u32,
    /// Chip difficulty.
    pub ticket_difficulty: u32,
    /// Mining baud.
    pub baud: ChainBaud,
    /// Host-side baud override.
    pub host_baud: Option<u32>,
}

/// Changes the baud of a serial port through a cloned handle (the stream itself is split
/// between the reading and writing halves).
struct SerialBaud {
    port: serialport::TTYPort,
    host_override: Option<u32>,
}

impl HostBaud for SerialBaud {
    type Error = serialport::Error;
    fn set_host_baud(&mut self, baud: u32) -> Result<(), Self::Error> {
        use serialport::SerialPort as _;
        self.port.set_baud_rate(self.host_override.unwrap_or(baud))
    }
}

impl Device for SerialDevice {
    async fn run(&mut self, ctx: &mut DeviceContext) -> anyhow::Result<()> {
        let path = self.path.to_string_lossy().to_string();
        let port = serialport::new(&path, 115_200)
            .timeout(Duration::from_millis(100))
            .open_native()
            .with_context(|| {
                format!("cannot open serial port {path} (plugged in? permissions: dialout group?)")
            })?;
        let control = port
            .try_clone_native()
            .with_context(|| format!("cannot clone {path} for baud control"))?;
        let stream = tokio_serial::SerialStream::try_from(port)
            .with_context(|| format!("{path} is not pollable"))?;
        let mut options = ChainOptions::new(self.model, Some(self.chips));
        options.init.frequency_khz = self.frequency_khz;
        options.init.ticket_difficulty = self.ticket_difficulty;
        options.init.baud = self.baud;
        let baud = SerialBaud {
            port: control,
            host_override: self.host_baud,
        };
        // Silicon reports only hashes with 32 leading zero bits before the ticket mask.
        bring_up_and_mine(
            stream,
            baud,
            options,
            ctx,
            self.model,
            32,
            &format!("on {path}"),
        )
        .await
    }
}
