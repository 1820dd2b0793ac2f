//! Hearth boards: the RP2040 firmware on USB CDC-ACM, speaking `hearth-link`.
//!
//! The board keeps a queue of work items and asks for more (`WorkLow`); the driver fills it,
//! clears it on a new tip, turns the board's verified nonces back into results for the share
//! checker, pings so the board knows the host is alive, and keeps the latest telemetry. Found by
//! USB VID/PID (the built-in board definitions) and serial number, or given a port; an emulated
//! board's USB is reachable over TCP. Unplugging the board ends the run with an error; the
//! supervisor reconnects and work resumes.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hearth_link::{
    BoardToHost, Capabilities, FrameDecoder, HostToBoard, MAX_FRAME, Telemetry, WorkItem, encode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::{Device, DeviceContext, STOP_CHIPS_AFTER};
use crate::events::Event;
use crate::share::{Found, Threshold};
use crate::work::{Job, TemplateWork};

/// A board on USB (or an emulated one over TCP).
#[derive(Debug, Clone)]
pub struct LinkDevice {
    /// Serial device; `None` = find by VID/PID.
    pub port: Option<PathBuf>,
    /// USB serial number filter.
    pub serial_number: Option<String>,
    /// Emulated board's USB over TCP.
    pub tcp: Option<String>,
    /// Emulated chains: zero bits the chips guarantee before the ticket mask.
    pub share_floor_bits: Option<u8>,
    /// Latest telemetry, shared with the daemon.
    pub telemetry: Arc<Mutex<Option<Telemetry>>>,
    /// Operator settings (the API's frequency, voltage and fan controls); applied on every
    /// connection and whenever they change.
    pub settings: Option<watch::Receiver<BoardSettings>>,
}

/// What the operator set for a board; `None` leaves the board's own choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoardSettings {
    /// Hash clock, kHz.
    pub frequency_khz: Option<u32>,
    /// Core voltage, mV.
    pub voltage_mv: Option<u16>,
    /// `Some(None)`: the board's own fan control; `Some(Some(p))`: fixed at p %.
    pub fan_percent: Option<Option<u8>>,
}

impl BoardSettings {
    /// The link messages that apply these settings.
    pub fn messages(&self) -> Vec<HostToBoard> {
        let mut out = Vec::new();
        if let Some(khz) = self.frequency_khz {
            out.push(HostToBoard::SetFrequency { khz });
        }
        if let Some(mv) = self.voltage_mv {
            out.push(HostToBoard::SetVoltage { mv });
        }
        if let Some(percent) = self.fan_percent {
            out.push(HostToBoard::SetFan { percent });
        }
        out
    }
}

/// Waits for new settings; never returns when there is no settings channel (or it closed).
async fn settings_changed(settings: &mut Option<watch::Receiver<BoardSettings>>) -> BoardSettings {
    if let Some(rx) = settings
        && rx.changed().await.is_ok()
    {
        return *rx.borrow_and_update();
    }
    *settings = None;
    std::future::pending().await
}

/// Serial ports of boards this daemon knows (VID/PID from the built-in board definitions).
pub fn find_boards(serial_number: Option<&str>) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let known = hearth_boards::builtin_usb_ids();
    let ports = serialport::available_ports().context("listing serial ports")?;
    Ok(ports
        .into_iter()
        .filter_map(|p| match p.port_type {
            serialport::SerialPortType::UsbPort(usb)
                if known
                    .iter()
                    .any(|(vid, pid, _)| *vid == usb.vid && *pid == usb.pid)
                    && serial_number.is_none_or(|s| usb.serial_number.as_deref() == Some(s)) =>
            {
                Some((
                    PathBuf::from(p.port_name),
                    usb.serial_number.unwrap_or_default(),
                ))
            }
            _ => None,
        })
        .collect())
}

const PING_EVERY: Duration = Duration::from_secs(1);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Jobs remembered for mapping nonces back (the board's queue plus what its chips still hash).
const JOBS_KEPT: usize = 256;

impl Device for LinkDevice {
    async fn run(&mut self, ctx: &mut DeviceContext) -> anyhow::Result<()> {
        if let Some(addr) = self.tcp.clone() {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .with_context(|| format!("cannot reach the emulated board's USB at {addr}"))?;
            let _ = stream.set_nodelay(true);
            return self.session(stream, &addr, ctx).await;
        }
        let (port, name) = open_port(self.port.as_deref(), self.serial_number.as_deref())?;
        self.session(port, &name, ctx).await
    }
}

/// The board's serial port, opened: `port` if given, else the one Hearth board on USB (with
/// `serial_number`, if given). Returns the port and its name for messages.
pub fn open_port(
    port: Option<&std::path::Path>,
    serial_number: Option<&str>,
) -> anyhow::Result<(tokio_serial::SerialStream, String)> {
    let path = match port {
        Some(p) => p.to_path_buf(),
        None => {
            let found = find_boards(serial_number)?;
            match found.as_slice() {
                [(path, _)] => path.clone(),
                [] => bail!(
                    "no Hearth board found on USB{}: is it plugged in and flashed?",
                    serial_number
                        .map(|s| format!(" with serial {s}"))
                        .unwrap_or_default()
                ),
                many => bail!(
                    "{} Hearth boards found ({}); choose one by serial number or port",
                    many.len(),
                    many.iter()
                        .map(|(p, s)| format!("{} ({s})", p.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let name = path.display().to_string();
    // CDC-ACM ignores the baud; any value opens the port.
    let stream = tokio_serial::SerialStream::open(&tokio_serial::new(&name, 115_200))
        .with_context(|| format!("cannot open {name} (permissions: dialout group?)"))?;
    Ok((stream, name))
}

struct Session<'a, W> {
    writer: W,
    frame: [u8; MAX_FRAME],
    jobs: HashMap<u32, Arc<Job>>,
    order: VecDeque<u32>,
    ctx: &'a mut DeviceContext,
}

impl<W: AsyncWrite + Unpin> Session<'_, W> {
    async fn send(&mut self, message: &HostToBoard) -> anyhow::Result<()> {
        let bytes = encode(message, &mut self.frame)
            .map_err(|e| anyhow::anyhow!("encoding a frame: {e}"))?;
        tokio::time::timeout(Duration::from_secs(5), self.writer.write_all(bytes))
            .await
            .context("the board stopped taking data")?
            .context("writing to the board")?;
        Ok(())
    }

    async fn send_work(&mut self, work: &Arc<TemplateWork>, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            let job = Arc::new(self.ctx.factory.next_job(work));
            let chip = job.chip_job(0);
            let id = job.id as u32;
            let item = WorkItem {
                id,
                version: chip.version,
                version_mask: job.version_mask,
                prev_block_hash: chip.prev_block_hash,
                merkle_root: chip.merkle_root,
                ntime: chip.ntime,
                nbits: chip.nbits,
            };
            self.jobs.insert(id, job);
            self.order.push_back(id);
            while self.order.len() > JOBS_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.jobs.remove(&old);
                }
            }
            self.send(&HostToBoard::Work(item)).await?;
        }
        Ok(())
    }
}

impl LinkDevice {
    async fn session<S: AsyncRead + AsyncWrite + Send + Unpin>(
        &mut self,
        stream: S,
        name: &str,
        ctx: &mut DeviceContext,
    ) -> anyhow::Result<()> {
        let (mut reader, writer) = tokio::io::split(stream);
        let mut s = Session {
            writer,
            frame: [0; MAX_FRAME],
            jobs: HashMap::new(),
            order: VecDeque::new(),
            ctx,
        };
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 4096];
        // A lone delimiter first: whatever the board's decoder held from an earlier session
        // ends there, so the Hello that follows is read whole.
        s.writer
            .write_all(&[0])
            .await
            .with_context(|| format!("writing to {name}"))?;
        s.send(&HostToBoard::Hello).await?;
        let caps: Capabilities = {
            let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
            let mut caps = None;
            loop {
                if let Some(c) = caps.take() {
                    break c;
                }
                let n = tokio::time::timeout_at(deadline, reader.read(&mut buf))
                    .await
                    .map_err(|_| anyhow::anyhow!("{name}: no answer to Hello within {HELLO_TIMEOUT:?}: not a Hearth board, or its firmware is stuck"))?
                    .with_context(|| format!("reading {name}"))?;
                if n == 0 {
                    bail!("{name} closed");
                }
                decoder.feed(&buf[..n], |r: Result<BoardToHost, _>| match r {
                    Ok(BoardToHost::Hello(c)) => caps = Some(c),
                    Err(hearth_link::DecodeError::Version { found }) => {
                        tracing::error!(
                            board = name,
                            found,
                            ours = hearth_link::PROTOCOL_VERSION,
                            "board speaks another link protocol version; update firmware or daemon"
                        );
                    }
                    _ => {}
                });
            }
        };
        if caps.protocol != hearth_link::PROTOCOL_VERSION {
            bail!(
                "{name} speaks link protocol {}, this daemon {}: update one of them",
                caps.protocol,
                hearth_link::PROTOCOL_VERSION
            );
        }
        if let Some(bits) = self.share_floor_bits {
            s.send(&HostToBoard::SetShareFloor { bits }).await?;
        }
        let mut share_bits = u32::from(caps.share_bits);
        let model = bm13xx::ChipModel::from_chip_id(caps.chip_id)
            .map_or("unknown chip".to_string(), |m| m.to_string());
        tracing::info!(device = %s.ctx.name, board = %caps.board, serial = %caps.serial, chips = caps.chip_count, %model,
            firmware = ?caps.firmware, "board connected");
        let _ = s.ctx.events.send(Event::DeviceUp {
            device: s.ctx.name.clone(),
            detail: format!(
                "{} × {model} on {} (board {}, serial {})",
                caps.chip_count, name, caps.board, caps.serial
            ),
        });
        s.ctx.stats.update(s.ctx.index, |d| {
            d.chips
                .resize(usize::from(caps.chip_count), Default::default())
        });

        let mut settings = self.settings.clone();
        if let Some(rx) = settings.as_mut() {
            let current = *rx.borrow_and_update();
            for m in current.messages() {
                s.send(&m).await?;
            }
        }
        let depth = usize::from(caps.queue_depth).max(1);
        let mut work = s.ctx.work.borrow_and_update().clone();
        // With no work the chips must stop for real: Pause switches the board's hash clock off
        // (ClearWork alone leaves them hashing the last job). The board may still be paused by
        // an earlier session, so work starts with Resume.
        match work.clone() {
            Some(w) => {
                s.send(&HostToBoard::Resume).await?;
                s.send(&HostToBoard::ClearWork).await?;
                s.send_work(&w, depth).await?;
            }
            None => {
                s.send(&HostToBoard::ClearWork).await?;
                s.send(&HostToBoard::Pause).await?;
            }
        }
        let mut pause_sent = work.is_none();
        // When to tell the board to stop its chips for lack of work (see STOP_CHIPS_AFTER).
        let mut pause_at: Option<tokio::time::Instant> = None;
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut seq = 0u32;
        let mut last_log = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = s.ctx.cancel.cancelled() => {
                    // Nobody will send work any more: stop the chips now rather than when the
                    // board notices the silence.
                    let _ = s.send(&HostToBoard::Pause).await;
                    return Ok(());
                }
                changed = s.ctx.work.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let new = s.ctx.work.borrow_and_update().clone();
                    let new_tip = match (&work, &new) {
                        (Some(old), Some(w)) => old.prev_blockhash() != w.prev_blockhash(),
                        _ => true,
                    };
                    work = new;
                    match &work {
                        Some(w) => {
                            if pause_sent {
                                s.send(&HostToBoard::Resume).await?;
                                pause_sent = false;
                                s.ctx.stats.update(s.ctx.index, |d| d.paused = false);
                            }
                            if new_tip {
                                s.send(&HostToBoard::ClearWork).await?;
                            }
                            s.send_work(&w.clone(), if new_tip { depth } else { 2 }).await?;
                        }
                        None => {
                            s.send(&HostToBoard::ClearWork).await?;
                            pause_at = Some(tokio::time::Instant::now() + STOP_CHIPS_AFTER);
                        }
                    }
                    if work.is_some() {
                        pause_at = None;
                    }
                }
                _ = tokio::time::sleep_until(pause_at.unwrap_or_else(tokio::time::Instant::now)), if pause_at.is_some() => {
                    pause_at = None;
                    if work.is_none() && !pause_sent {
                        s.send(&HostToBoard::Pause).await?;
                        pause_sent = true;
                    }
                }
                new = settings_changed(&mut settings) => {
                    tracing::info!(device = %s.ctx.name, ?new, "applying the operator's settings");
                    for m in new.messages() {
                        s.send(&m).await?;
                    }
                }
                _ = ping.tick() => {
                    seq = seq.wrapping_add(1);
                    s.send(&HostToBoard::Ping { seq }).await?;
                }
                read = reader.read(&mut buf) => {
                    let n = read.with_context(|| format!("reading {name} (unplugged?)"))?;
                    if n == 0 {
                        bail!("{name} closed (unplugged?)");
                    }
                    let mut messages = Vec::new();
                    decoder.feed(&buf[..n], |r: Result<BoardToHost, _>| match r {
                        Ok(m) => messages.push(m),
                        Err(e) => tracing::debug!(board = name, error = %e, "dropped a bad frame"),
                    });
                    for message in messages {
                        match message {
                            BoardToHost::Nonce(report) => {
                                let Some(job) = s.jobs.get(&report.work_id).cloned() else {
                                    tracing::debug!(work_id = report.work_id, "nonce for work no longer held; stale");
                                    s.ctx.stats.update(s.ctx.index, |d| d.stale += 1);
                                    continue;
                                };
                                let found = Found {
                                    device: s.ctx.index,
                                    device_name: s.ctx.name.clone(),
                                    chip: Some(u16::from(report.chip)),
                                    job,
                                    version: report.version as i32,
                                    nonce: report.nonce,
                                    threshold: Threshold::zero_bits(share_bits),
                                };
                                if s.ctx.found.send(found).await.is_err() {
                                    return Ok(());
                                }
                            }
                            BoardToHost::WorkLow { queued, wanted } => {
                                if let Some(w) = work.clone() {
                                    let n = usize::from(wanted.saturating_sub(queued)).min(depth);
                                    s.send_work(&w, n).await?;
                                }
                            }
                            BoardToHost::Telemetry(t) => {
                                if last_log.elapsed() > Duration::from_secs(30) {
                                    last_log = tokio::time::Instant::now();
                                    tracing::info!(device = %s.ctx.name, state = ?t.state,
                                        asic_c = ?t.asic_temp_mc.map(|m| m as f64 / 1000.0), fan = t.fan_percent,
                                        vcore_mv = ?t.vcore_mv, input_mw = ?t.input_mw, mhz = t.frequency_khz as f64 / 1000.0,
                                        "board telemetry");
                                }
                                // Paused only once the board says so: it reports Idle after
                                // its hash clock is off.
                                let paused = pause_sent
                                    && matches!(t.state, hearth_link::BoardState::Idle | hearth_link::BoardState::Safe);
                                let readings = crate::events::BoardReadings::from(&t);
                                s.ctx.stats.update(s.ctx.index, |d| {
                                    d.paused = paused;
                                    d.board = Some(readings);
                                });
                                if let Ok(mut slot) = self.telemetry.lock() {
                                    *slot = Some(t);
                                }
                            }
                            BoardToHost::Fault(fault) => {
                                tracing::warn!(device = %s.ctx.name, ?fault, "board reports");
                                let _ = s.ctx.events.send(Event::BoardFault { device: s.ctx.name.clone(), fault: format!("{fault:?}") });
                            }
                            BoardToHost::Hello(c) => share_bits = u32::from(c.share_bits),
                            BoardToHost::Log { level, text } => tracing::info!(device = %s.ctx.name, ?level, "board: {text}"),
                            // Self-test answers: this session never asks.
                            BoardToHost::Pong { .. } | BoardToHost::I2cScan(_) | BoardToHost::Enumeration(_) => {}
                        }
                    }
                }
            }
        }
    }
}
