//! The chain driver: the only part of this crate that does I/O.
//!
//! It runs the pure [`Sequence`](crate::sequence::Sequence) steps over any UART that implements
//! `embedded_io_async::{Read, Write}` (embassy-rp's `BufferedUart` halves on the board, a tokio
//! serial port through `embedded-io-adapters` on the host, the emulator's duplex stream in tests),
//! with `embedded_hal_async::delay::DelayNs` for pauses and timeouts.
//!
//! Bring-up is [`Chain::init`]; mining splits the chain into a [`ChainTx`] (jobs, register polls)
//! and a [`ChainRx`] (nonces and register replies, resynchronising on garbage) so that two tasks
//! can own them.

use embassy_futures::select::{Either, select};
use embedded_hal::digital::OutputPin;
use embedded_hal_async::delay::DelayNs;
use embedded_io_async::{Read, Write};

use crate::command::{Command, Destination};
use crate::job::{FullHeaderJob, MIDSTATE_JOB_FRAME_MAX_LEN, MidstateJob};
use crate::model::{ChainBaud, ChipModel, NonceReply};
use crate::register::addr;
use crate::response::{DecoderStats, RegisterReply, Response, ResponseDecoder};
use crate::sequence::{InitConfig, Phase, Sequence, Step, chip_address};

/// Switches the host side of the UART to a new baud rate.
pub trait HostBaud {
    /// Error from the UART driver.
    type Error: core::fmt::Debug;
    /// Set the host UART's baud rate. Called after the chips were told to switch and the TX
    /// buffer was flushed.
    fn set_host_baud(&mut self, baud: u32) -> Result<(), Self::Error>;
}

/// For links whose baud cannot or need not change (a TCP connection to the emulator).
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedBaud;

impl HostBaud for FixedBaud {
    type Error = core::convert::Infallible;
    fn set_host_baud(&mut self, _baud: u32) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// What went wrong on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainError<E, B = core::convert::Infallible> {
    /// The UART failed.
    Io(E),
    /// The UART reached end of stream (the link closed).
    Closed,
    /// The host UART could not change baud.
    HostBaud(B),
    /// Nothing answered the chip-id read.
    NoChips,
    /// A different number of chips answered than the board has.
    ChipCount {
        /// Chips the board definition says are fitted.
        expected: u16,
        /// Chips that answered.
        found: u16,
    },
    /// A chip answered with another chip id than the configured model.
    UnexpectedChip {
        /// Position in the chain of the chip (0 = nearest the host).
        index: u16,
        /// Model the chain was configured for.
        expected: ChipModel,
        /// Chip id it reported.
        found_id: u16,
    },
    /// No PLL setting reaches the requested frequency on this model.
    Frequency {
        /// Requested frequency, kHz.
        khz: u32,
    },
    /// A register read got no answer in time.
    Timeout {
        /// Register that was read.
        register: u8,
    },
}

impl<E: core::fmt::Debug, B: core::fmt::Debug> core::fmt::Display for ChainError<E, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "chain UART error: {e:?}"),
            Self::Closed => f.write_str("chain UART closed"),
            Self::HostBaud(e) => write!(f, "could not change the host UART baud: {e:?}"),
            Self::NoChips => f.write_str(
                "no chip answered the chip-id read: check core power, the reset line, the 25 MHz clock and the UART wiring (TX/RX swapped?)",
            ),
            Self::ChipCount { expected, found } => write!(
                f,
                "{found} chips answered but the board has {expected}: the chip after the last one that answered may be dead, unpowered, or not relaying"
            ),
            Self::UnexpectedChip { index, expected, found_id } => {
                let name = ChipModel::from_chip_id(*found_id).map_or("an unknown chip", ChipModel::name);
                write!(
                    f,
                    "chip {index} reports id 0x{found_id:04X} ({name}) but the board is configured for {expected}; mixed chains are not supported"
                )
            }
            Self::Frequency { khz } => write!(f, "no PLL setting reaches {} kHz on this chip", khz),
            Self::Timeout { register } => write!(f, "no reply to a read of register 0x{register:02X}"),
        }
    }
}

impl<E: core::fmt::Debug, B: core::fmt::Debug> core::error::Error for ChainError<E, B> {}

/// Options for [`Chain::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOptions {
    /// Chips the board has; `None` accepts however many answer (at least one).
    pub expected_chips: Option<u16>,
    /// Silence after the last chip-id reply that ends enumeration.
    pub enumeration_timeout_ms: u32,
    /// Bring-up settings.
    pub init: InitConfig,
}

impl ChainOptions {
    /// Defaults for `model` with an expected chip count.
    pub const fn new(model: ChipModel, expected_chips: Option<u16>) -> Self {
        ChainOptions {
            expected_chips,
            enumeration_timeout_ms: 250,
            init: InitConfig::for_model(model),
        }
    }
}

/// One thing that came back from the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainEvent {
    /// A nonce, decoded for the chain's model.
    Nonce(NonceReply),
    /// A register reply (from a poll or a temperature read).
    Register(RegisterReply),
}

/// Pulse the chips' active-low reset: low 100 ms, high, then 100 ms for them to wake
/// (ESP-Miner `asic_reset.c`).
pub async fn hard_reset<P: OutputPin, D: DelayNs>(
    pin: &mut P,
    delay: &mut D,
) -> Result<(), P::Error> {
    pin.set_low()?;
    delay.delay_ms(100).await;
    pin.set_high()?;
    delay.delay_ms(100).await;
    Ok(())
}

/// A delay for phases that have none.
struct NoDelay;

impl DelayNs for NoDelay {
    async fn delay_ns(&mut self, _ns: u32) {}
}

/// Sending half of a chain: commands and jobs.
#[derive(Debug)]
pub struct ChainTx<W> {
    uart: W,
    model: ChipModel,
}

impl<W: Write> ChainTx<W> {
    /// Wrap a UART writer.
    pub fn new(uart: W, model: ChipModel) -> Self {
        ChainTx { uart, model }
    }

    /// Model of the chips.
    pub fn model(&self) -> ChipModel {
        self.model
    }

    /// Send one command frame.
    pub async fn send(&mut self, command: Command) -> Result<(), W::Error> {
        self.uart.write_all(command.encode().as_bytes()).await
    }

    /// Send a full-header job (BM1366/68/70).
    pub async fn send_job(&mut self, job: &FullHeaderJob) -> Result<(), W::Error> {
        self.uart.write_all(&job.encode()).await
    }

    /// Send a midstate job (BM1397).
    pub async fn send_midstate_job(&mut self, job: &MidstateJob) -> Result<(), W::Error> {
        let mut buf = [0u8; MIDSTATE_JOB_FRAME_MAX_LEN];
        let frame = job.encode(&mut buf);
        self.uart.write_all(frame).await
    }

    /// Ask chips for a register; the replies arrive on [`ChainRx`] as [`ChainEvent::Register`].
    pub async fn read_register(&mut self, to: Destination, register: u8) -> Result<(), W::Error> {
        self.send(Command::ReadRegister { to, register }).await
    }

    /// Flush buffered bytes onto the wire.
    pub async fn flush(&mut self) -> Result<(), W::Error> {
        self.uart.flush().await
    }

    /// Stop every chip hashing, for real: the hash clock is switched off (PLL0 enable bit
    /// clear), so the chips neither hash the last job on nor draw hashing power, and they keep
    /// their configuration and addresses. This is all a host with only the UART (no reset line,
    /// no power control) can do for a pause. Flushed before it returns.
    pub async fn stop_hashing(&mut self, init: InitConfig) -> Result<(), W::Error> {
        self.send_phase(init, 0, Phase::HashClockOff, &mut NoDelay)
            .await?;
        self.flush().await
    }

    /// Start hashing again after [`ChainTx::stop_hashing`], ramping the hash clock up from the
    /// power-on frequency as bring-up does (`init.ramp_step_delay_ms` per step).
    pub async fn resume_hashing<D: DelayNs>(
        &mut self,
        init: InitConfig,
        chip_count: u16,
        delay: &mut D,
    ) -> Result<(), W::Error> {
        self.send_phase(init, chip_count, Phase::HashClockOn, delay)
            .await?;
        self.flush().await
    }

    /// Send the steps of a phase that needs no replies and no baud change.
    async fn send_phase<D: DelayNs>(
        &mut self,
        init: InitConfig,
        chip_count: u16,
        phase: Phase,
        delay: &mut D,
    ) -> Result<(), W::Error> {
        for step in Sequence::new(self.model, init, chip_count, phase) {
            match step {
                Step::Send(command) => self.send(command).await?,
                Step::Delay(ms) => {
                    self.flush().await?;
                    delay.delay_ms(ms).await;
                }
                // Not part of these phases: the chips stay at their mining baud.
                Step::SetHostBaud(_) => {}
            }
        }
        Ok(())
    }

    /// Give the UART writer back.
    pub fn into_inner(self) -> W {
        self.uart
    }
}

/// Receiving half of a chain: decodes responses, resynchronising on garbage.
#[derive(Debug)]
pub struct ChainRx<R> {
    uart: R,
    model: ChipModel,
    decoder: ResponseDecoder,
}

impl<R: Read> ChainRx<R> {
    /// Wrap a UART reader. Frames are `model.response_len()` bytes.
    pub fn new(uart: R, model: ChipModel) -> Self {
        ChainRx {
            uart,
            model,
            decoder: ResponseDecoder::new(model.response_len()),
        }
    }

    /// Decoder statistics: frames, CRC errors, bytes skipped while resynchronising.
    pub fn stats(&self) -> DecoderStats {
        self.decoder.stats()
    }

    /// Drop any partial frame (after a baud change).
    pub fn discard_buffered(&mut self) {
        self.decoder.clear();
    }

    /// Next response. Cancel-safe: bytes read stay in the decoder if the future is dropped
    /// while waiting.
    pub async fn next_response(&mut self) -> Result<Response, ReadError<R::Error>> {
        loop {
            if let Some(response) = self.decoder.next_response() {
                return Ok(response);
            }
            let mut buf = [0u8; 32];
            let want = self.decoder.free().min(buf.len());
            let n = self
                .uart
                .read(&mut buf[..want])
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Next nonce or register reply, decoded for the chain's model.
    pub async fn next_event(&mut self) -> Result<ChainEvent, ReadError<R::Error>> {
        Ok(match self.next_response().await? {
            Response::Nonce(raw) => ChainEvent::Nonce(self.model.decode_nonce(&raw)),
            Response::Register(reply) => ChainEvent::Register(reply),
        })
    }

    /// Give the UART reader back.
    pub fn into_inner(self) -> R {
        self.uart
    }
}

/// Error from the receiving half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The UART failed.
    Io(E),
    /// End of stream.
    Closed,
}

impl<E, B> From<ReadError<E>> for ChainError<E, B> {
    fn from(e: ReadError<E>) -> Self {
        match e {
            ReadError::Io(e) => ChainError::Io(e),
            ReadError::Closed => ChainError::Closed,
        }
    }
}

/// What [`Chain::init`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainInfo {
    /// Model of every chip.
    pub model: ChipModel,
    /// Chips found.
    pub chip_count: u16,
    /// Hash clock after the ramp, kHz.
    pub frequency_khz: u32,
    /// UART baud after init.
    pub baud: u32,
}

/// A chain of BM13xx chips behind one UART.
#[derive(Debug)]
pub struct Chain<W, R, D, B> {
    tx: ChainTx<W>,
    rx: ChainRx<R>,
    delay: D,
    baud: B,
    options: ChainOptions,
    chip_count: u16,
}

impl<E, W, R, D, B> Chain<W, R, D, B>
where
    E: embedded_io_async::Error,
    W: Write<Error = E>,
    R: Read<Error = E>,
    D: DelayNs,
    B: HostBaud,
{
    /// A chain of `model` chips on the given UART halves.
    pub fn new(model: ChipModel, tx: W, rx: R, delay: D, baud: B, options: ChainOptions) -> Self {
        Chain {
            tx: ChainTx::new(tx, model),
            rx: ChainRx::new(rx, model),
            delay,
            baud,
            options,
            chip_count: 0,
        }
    }

    /// Model of the chips.
    pub fn model(&self) -> ChipModel {
        self.tx.model
    }

    /// Chips found by the last enumeration.
    pub fn chip_count(&self) -> u16 {
        self.chip_count
    }

    /// Address of chip `index` after init.
    pub fn chip_address(&self, index: u16) -> u8 {
        chip_address(index, self.chip_count)
    }

    /// Enumerate and configure the chain: version rolling, chip-id read (counting and checking
    /// every chip), addressing, core configuration, ticket mask, frequency ramp, nonce split,
    /// and the baud switch.
    pub async fn init(&mut self) -> Result<ChainInfo, ChainError<E, B::Error>> {
        let model = self.model();
        let config = self.options.init;
        if crate::pll::solve(config.frequency_khz, &model.pll_limits()).is_none() {
            return Err(ChainError::Frequency {
                khz: config.frequency_khz,
            });
        }
        // The chips may still run at the mining baud from an earlier session (a board without
        // a reset line, or a host restarted with the core powered): start at the power-on baud
        // and, if nothing answers, tell them at the mining baud to come back to it.
        self.switch_host_baud(ChainBaud::PowerOn.chip_baud())?;
        match self.enumerate().await {
            Err(ChainError::NoChips) if config.baud != ChainBaud::PowerOn => {
                self.recall_to_power_on_baud(config.baud).await?;
                self.enumerate().await?;
            }
            result => {
                result?;
            }
        }
        let mut baud = ChainBaud::PowerOn.chip_baud();
        for step in Sequence::new(model, config, self.chip_count, Phase::Configure) {
            if let Step::SetHostBaud(b) = step {
                baud = b;
            }
            self.run_step(step).await?;
        }
        Ok(ChainInfo {
            model,
            chip_count: self.chip_count,
            frequency_khz: config.frequency_khz,
            baud,
        })
    }

    fn switch_host_baud(&mut self, baud: u32) -> Result<(), ChainError<E, B::Error>> {
        self.baud
            .set_host_baud(baud)
            .map_err(ChainError::HostBaud)?;
        self.rx.discard_buffered();
        Ok(())
    }

    /// Broadcast, at `from`, the baud-register value for the power-on baud, then follow.
    async fn recall_to_power_on_baud(
        &mut self,
        from: ChainBaud,
    ) -> Result<(), ChainError<E, B::Error>> {
        let (register, value) = self.model().baud_register(ChainBaud::PowerOn);
        self.switch_host_baud(from.chip_baud())?;
        self.tx
            .send(Command::WriteRegister {
                to: Destination::All,
                register,
                value,
            })
            .await
            .map_err(ChainError::Io)?;
        self.tx.flush().await.map_err(ChainError::Io)?;
        self.delay.delay_ms(50).await;
        self.switch_host_baud(ChainBaud::PowerOn.chip_baud())
    }

    /// Count the chips: enable version rolling (11-byte replies), broadcast a chip-id read, and
    /// collect replies until the line is quiet. Fails on a wrong chip id or a count that differs
    /// from the board's.
    pub async fn enumerate(&mut self) -> Result<u16, ChainError<E, B::Error>> {
        let model = self.model();
        for step in Sequence::new(model, self.options.init, 0, Phase::PreEnumeration) {
            self.run_step(step).await?;
        }
        self.rx.discard_buffered();
        self.tx
            .send(Command::ReadRegister {
                to: Destination::All,
                register: addr::CHIP_ID,
            })
            .await
            .map_err(ChainError::Io)?;
        self.tx.flush().await.map_err(ChainError::Io)?;
        let mut found: u16 = 0;
        while let Some(reply) = self
            .next_register_reply(self.options.enumeration_timeout_ms)
            .await?
        {
            if reply.register != addr::CHIP_ID {
                continue;
            }
            let id = (reply.value >> 16) as u16;
            if id != model.chip_id() {
                return Err(ChainError::UnexpectedChip {
                    index: found,
                    expected: model,
                    found_id: id,
                });
            }
            found += 1;
        }
        if found == 0 {
            return Err(ChainError::NoChips);
        }
        if let Some(expected) = self.options.expected_chips
            && expected != found
        {
            return Err(ChainError::ChipCount { expected, found });
        }
        self.chip_count = found;
        Ok(found)
    }

    /// Read one register from one chip and wait for the answer.
    pub async fn read_register(
        &mut self,
        chip_address: u8,
        register: u8,
        timeout_ms: u32,
    ) -> Result<u32, ChainError<E, B::Error>> {
        self.tx
            .read_register(Destination::Chip(chip_address), register)
            .await
            .map_err(ChainError::Io)?;
        self.tx.flush().await.map_err(ChainError::Io)?;
        while let Some(reply) = self.next_register_reply(timeout_ms).await? {
            if reply.register == register && reply.chip_address == chip_address {
                return Ok(reply.value);
            }
        }
        Err(ChainError::Timeout { register })
    }

    async fn next_register_reply(
        &mut self,
        timeout_ms: u32,
    ) -> Result<Option<RegisterReply>, ChainError<E, B::Error>> {
        loop {
            let event = select(self.rx.next_response(), self.delay.delay_ms(timeout_ms)).await;
            match event {
                Either::First(Ok(Response::Register(reply))) => return Ok(Some(reply)),
                // A nonce during bring-up belongs to no job of ours; skip it.
                Either::First(Ok(Response::Nonce(_))) => continue,
                Either::First(Err(e)) => return Err(e.into()),
                Either::Second(()) => return Ok(None),
            }
        }
    }

    async fn run_step(&mut self, step: Step) -> Result<(), ChainError<E, B::Error>> {
        match step {
            Step::Send(command) => self.tx.send(command).await.map_err(ChainError::Io),
            Step::Delay(ms) => {
                self.tx.flush().await.map_err(ChainError::Io)?;
                self.delay.delay_ms(ms).await;
                Ok(())
            }
            Step::SetHostBaud(baud) => {
                // The chips switch as soon as they have the write; the host follows once the
                // frame has left (bm13xx-rs waits 50 ms, factory firmware ~60 ms).
                self.tx.flush().await.map_err(ChainError::Io)?;
                self.delay.delay_ms(50).await;
                self.switch_host_baud(baud)
            }
        }
    }

    /// Split into the sending and receiving halves for mining, plus the delay and baud handles.
    pub fn split(self) -> (ChainTx<W>, ChainRx<R>, D, B) {
        (self.tx, self.rx, self.delay, self.baud)
    }
}
