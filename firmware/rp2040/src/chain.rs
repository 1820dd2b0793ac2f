//! The chain task: owns the chips' UART and reset line. Bring-up (reset, enumeration, PLL ramp,
//! baud switch) takes seconds; running it here keeps the main loop free to watch temperatures,
//! answer the host and cut power while it happens.

use bm13xx::chain::{Chain, ChainEvent, ChainOptions, ChainRx, ChainTx, HostBaud, hard_reset};
use bm13xx::command::{Command, Destination};
use bm13xx::job::FullHeaderJob;
use bm13xx::model::{ChainBaud, ChipModel};
use bm13xx::pll::{self, FrequencyRamp};
use bm13xx::register::{self, addr};
use bm13xx::sequence::InitConfig;
use embassy_futures::select::{Either, Either3, Either4, select, select3, select4};
use embassy_rp::gpio::Output;
use embassy_rp::uart::{BufferedUartRx, BufferedUartTx};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::signal::Signal;
use embassy_time::{Delay, Duration, Instant, Timer};
use hearth_link::Enumeration;

use crate::board;

/// The chain state the main loop wants. A signal, not a queue: only the latest matters, and
/// setting it never blocks the main loop (which must keep watching temperatures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Chips held in reset.
    Down,
    /// Reset and initialise the chips (the core is already powered) for power-up `generation`.
    Up {
        /// The controller's power-up generation, echoed in the reports.
        generation: u32,
        /// Hash clock, kHz.
        frequency_khz: u32,
    },
}

/// What the main loop has the chips do while they are up, carried out in order: a version-mask
/// write goes out before the job that needs it, a clock-on before the next job.
#[derive(Debug, Clone, Copy)]
pub enum ChainCommand {
    /// A job for the chips.
    Job(FullHeaderJob),
    /// Version-rolling mask for the jobs that follow (register 0xA4, every chip).
    VersionMask(u32),
    /// Hash clock off; answered with [`ChainReport::HashingStopped`].
    StopHashing,
    /// Hash clock ramped back on; answered with [`ChainReport::HashingResumed`].
    ResumeHashing,
}

/// What the chain tells the main loop. Bring-up reports carry the power-up generation so the
/// controller can ignore answers to an abandoned power-up.
pub enum ChainReport {
    /// What a bring-up found, sent before its `Up` or `Failed` (the host's self-test asks).
    Enumerated(Found),
    /// Bring-up finished; hashing possible.
    Up(u32),
    /// Bring-up failed.
    Failed(u32, &'static str),
    /// A nonce or register reply.
    Event(ChainEvent),
    /// The UART failed while hashing.
    Lost(u32),
    /// The clock-off write went out.
    HashingStopped(u32),
    /// The hash clock is back at its frequency.
    HashingResumed(u32),
}

/// Desired chain state.
pub static TARGET: Signal<CriticalSectionRawMutex, Target> = Signal::new();
/// Desired hash clock while up, kHz; the chain task ramps to it from wherever it is.
pub static FREQUENCY: Signal<CriticalSectionRawMutex, u32> = Signal::new();
/// Jobs and the commands ordered with them. The main loop uses `try_send`: a command that does
/// not fit is dropped rather than stalling the safety loop, and the controller is told
/// ([`hearth_board::controller::Controller::on_chain_command_dropped`]) so that it issues what
/// matters again. Few wait at a time: the task drains the queue as it comes, except during a
/// resume ramp, and the controller sends no job then.
pub static COMMANDS: Channel<CriticalSectionRawMutex, ChainCommand, 16> = Channel::new();
/// Reports from the chain task.
pub static REPORTS: Channel<CriticalSectionRawMutex, ChainReport, 16> = Channel::new();

/// Changes the RP2040 UART's baud divisors in place (the UART is split between the chain's
/// halves, so this goes through the registers, as embassy-rp's own `set_baudrate` does).
struct UartBaud;

impl HostBaud for UartBaud {
    type Error = core::convert::Infallible;
    fn set_host_baud(&mut self, baud: u32) -> Result<(), Self::Error> {
        set_uart_baud(baud);
        Ok(())
    }
}

fn set_uart_baud(baud: u32) {
    // PL011: divisor = clk_peri / (16 · baud) as 16.6 fixed point (RP2040 datasheet §4.2.3.2.1).
    let r = embassy_rp::pac::UART1;
    let div = 8 * embassy_rp::clocks::clk_peri_freq() / baud.max(1);
    let (ibrd, fbrd) = match div >> 7 {
        0 => (1, 0),
        i if i >= 65535 => (65535, 0),
        i => (i, (div & 0x7f).div_ceil(2)),
    };
    r.uartibrd()
        .write_value(embassy_rp::pac::uart::regs::Uartibrd(ibrd));
    r.uartfbrd()
        .write_value(embassy_rp::pac::uart::regs::Uartfbrd(fbrd));
    // The divisors take effect on the next write of LCR_H.
    r.uartlcr_h().modify(|_| {});
}

/// The board's mining baud; the boards loader has already refused any other, and an image for
/// one that slipped through does not build.
const MINING_BAUD: ChainBaud = match ChainBaud::from_nominal(board::ASIC_BAUD) {
    Some(baud) => baud,
    None => panic!("the board's ASIC baud is not one a BM13xx chain runs at"),
};

/// What a bring-up found, small enough for the report queue; the main loop turns it into the
/// host's [`hearth_link::Enumeration`].
#[derive(Debug, Clone, Copy)]
pub struct Found {
    /// Bring-ups since boot, this one included.
    pub attempts: u32,
    /// Chips that answered the chip-id read (a chip of another model stops the count and is
    /// counted).
    pub chips_found: u16,
    /// The id they reported; `None` when none answered.
    pub chip_id: Option<u16>,
    /// Why the bring-up failed, or `None` when it finished.
    pub error: Option<&'static str>,
}

impl Found {
    /// The host's form of it.
    pub fn to_link(self) -> Enumeration {
        let mut error = heapless::String::new();
        for c in self.error.unwrap_or("").chars() {
            if error.push(c).is_err() {
                break;
            }
        }
        Enumeration {
            attempts: self.attempts,
            chips_found: self.chips_found,
            chip_id: self.chip_id,
            up: self.error.is_none(),
            error,
        }
    }
}

async fn bring_up(
    model: ChipModel,
    tx: BufferedUartTx,
    rx: BufferedUartRx,
    reset: &mut Output<'static>,
    frequency_khz: u32,
    attempt: u32,
) -> Result<
    (ChainTx<BufferedUartTx>, ChainRx<BufferedUartRx>, InitConfig),
    (BufferedUartTx, BufferedUartRx, &'static str),
> {
    set_uart_baud(115_200);
    let _ = hard_reset(reset, &mut Delay).await;
    let mut options = ChainOptions::new(model, Some(board::ASIC_COUNT));
    options.init.frequency_khz = frequency_khz;
    options.init.ticket_difficulty = board::TICKET_DIFFICULTY;
    options.init.baud = MINING_BAUD;
    let init = options.init;
    let mut chain = Chain::new(model, tx, rx, Delay, UartBaud, options);
    let result = chain.init().await;
    // What answered: the count is known once enumeration got through, or from its error.
    let mut found = Found {
        attempts: attempt,
        chips_found: chain.chip_count(),
        chip_id: (chain.chip_count() > 0).then(|| model.chip_id()),
        error: None,
    };
    let (tx, rx, _, _) = chain.split();
    let outcome = match result {
        Ok(_) => Ok((tx, rx, init)),
        Err(e) => {
            reset.set_low();
            set_uart_baud(115_200);
            let reason = match e {
                bm13xx::ChainError::NoChips => "no chip answered the chip-id read",
                bm13xx::ChainError::ChipCount { found: n, .. } => {
                    found.chips_found = n;
                    found.chip_id = Some(model.chip_id());
                    "another number of chips answered than the board has"
                }
                bm13xx::ChainError::UnexpectedChip {
                    index, found_id, ..
                } => {
                    // Enumeration stops at the stranger; it answered, so it counts.
                    found.chips_found = index.saturating_add(1);
                    found.chip_id = Some(found_id);
                    "a chip reports another model"
                }
                _ => "chain bring-up failed",
            };
            found.error = Some(reason);
            Err((tx.into_inner(), rx.into_inner(), reason))
        }
    };
    REPORTS.send(ChainReport::Enumerated(found)).await;
    outcome
}

/// Write the PLL for `khz` to every chip.
async fn set_pll(tx: &mut ChainTx<BufferedUartTx>, model: ChipModel, khz: u32) {
    let limits = model.pll_limits();
    if let Some(params) = pll::solve(khz, &limits) {
        let command = Command::WriteRegister {
            to: Destination::All,
            register: addr::PLL0_PARAMETER,
            value: params.register_value(&limits),
        };
        let _ = tx.send(command).await;
        let _ = tx.flush().await;
    }
}

/// Hand chip events to the main loop; returns when the UART fails.
async fn forward_events(rx: &mut ChainRx<BufferedUartRx>) {
    while let Ok(event) = rx.next_event().await {
        REPORTS.send(ChainReport::Event(event)).await;
    }
}

/// ESP-Miner's ramp pace: one 6.25 MHz step every 100 ms.
const RAMP_STEP_MS: u64 = 100;
/// The chips' own hash and error counters are read this often (ESP-Miner polls the same).
const POLL_MS: u64 = 1000;

/// Run the chain until the MCU resets.
#[embassy_executor::task]
pub async fn run(
    mut tx: BufferedUartTx,
    mut rx: BufferedUartRx,
    mut reset: Output<'static>,
    model: ChipModel,
) -> ! {
    let mut target = Target::Down;
    let mut attempts: u32 = 0;
    loop {
        // Down: chips in reset until a bring-up is wanted.
        reset.set_low();
        let (generation, frequency_khz) = loop {
            if let Target::Up {
                generation,
                frequency_khz,
            } = target
            {
                break (generation, frequency_khz);
            }
            target = TARGET.wait().await;
        };
        target = Target::Down;
        // Commands and clock changes meant for an earlier chain are void.
        while COMMANDS.try_receive().is_ok() {}
        FREQUENCY.reset();
        attempts = attempts.wrapping_add(1);
        let (mut chain_tx, mut chain_rx, init) =
            match bring_up(model, tx, rx, &mut reset, frequency_khz, attempts).await {
                Ok(up) => up,
                Err((t, r, reason)) => {
                    (tx, rx) = (t, r);
                    REPORTS.send(ChainReport::Failed(generation, reason)).await;
                    continue;
                }
            };
        REPORTS.send(ChainReport::Up(generation)).await;
        let hash_counter = if model == ChipModel::Bm1397 {
            addr::HASH_RATE_BM1397
        } else {
            addr::HASH_COUNTER_TOTAL
        };
        // Hashing: jobs out, replies in, counters polled, the clock ramped a step at a time,
        // and a new target taken at once even mid-ramp.
        let mut ramp: Option<FrequencyRamp> = None;
        // The PLL's setting now, and the one asked for (the ramp's end).
        let mut clock_khz = frequency_khz;
        let mut wanted_khz = frequency_khz;
        // False between a StopHashing and a ResumeHashing: the hash clock is off.
        let mut hashing = true;
        let mut next_poll = Instant::now() + Duration::from_millis(POLL_MS);
        let mut next_step = Instant::now();
        loop {
            let wake = match ramp {
                Some(_) => next_step.min(next_poll),
                None => next_poll,
            };
            let event = select4(
                select(TARGET.wait(), FREQUENCY.wait()),
                COMMANDS.receive(),
                chain_rx.next_event(),
                Timer::at(wake),
            )
            .await;
            match event {
                Either4::First(Either::First(new_target)) => {
                    target = new_target;
                    break;
                }
                Either4::First(Either::Second(khz)) => {
                    wanted_khz = khz;
                    // With the clock off a PLL write would switch it on: the resume ramps
                    // straight to the new clock instead.
                    if hashing {
                        ramp = Some(FrequencyRamp::new(clock_khz, khz));
                        next_step = Instant::now();
                    }
                }
                Either4::Second(ChainCommand::Job(job)) => {
                    let _ = chain_tx.send_job(&job).await;
                    let _ = chain_tx.flush().await;
                }
                Either4::Second(ChainCommand::VersionMask(mask)) => {
                    let command = Command::WriteRegister {
                        to: Destination::All,
                        register: addr::VERSION_ROLLING,
                        value: register::version_rolling(mask),
                    };
                    let _ = chain_tx.send(command).await;
                    let _ = chain_tx.flush().await;
                }
                Either4::Second(ChainCommand::StopHashing) => {
                    ramp = None;
                    let off = InitConfig {
                        frequency_khz: clock_khz,
                        ..init
                    };
                    if chain_tx.stop_hashing(off).await.is_err() {
                        REPORTS.send(ChainReport::Lost(generation)).await;
                        break;
                    }
                    hashing = false;
                    REPORTS.send(ChainReport::HashingStopped(generation)).await;
                }
                Either4::Second(ChainCommand::ResumeHashing) => {
                    ramp = None;
                    let on = InitConfig {
                        frequency_khz: wanted_khz,
                        ..init
                    };
                    // The ramp takes seconds: replies keep flowing meanwhile, and a new target
                    // (power down) ends it at once.
                    let resumed = select3(
                        chain_tx.resume_hashing(on, board::ASIC_COUNT, &mut Delay),
                        forward_events(&mut chain_rx),
                        TARGET.wait(),
                    )
                    .await;
                    match resumed {
                        Either3::First(Ok(())) => {
                            hashing = true;
                            clock_khz = wanted_khz;
                            REPORTS.send(ChainReport::HashingResumed(generation)).await;
                        }
                        Either3::First(Err(_)) | Either3::Second(()) => {
                            REPORTS.send(ChainReport::Lost(generation)).await;
                            break;
                        }
                        Either3::Third(new_target) => {
                            target = new_target;
                            break;
                        }
                    }
                }
                Either4::Third(Ok(event)) => REPORTS.send(ChainReport::Event(event)).await,
                Either4::Third(Err(_)) => {
                    REPORTS.send(ChainReport::Lost(generation)).await;
                    break;
                }
                Either4::Fourth(()) => {
                    let now = Instant::now();
                    if let Some(steps) = ramp.as_mut()
                        && now >= next_step
                    {
                        match steps.next() {
                            Some(khz) => {
                                set_pll(&mut chain_tx, model, khz).await;
                                clock_khz = khz;
                                next_step = now + Duration::from_millis(RAMP_STEP_MS);
                            }
                            None => ramp = None,
                        }
                    }
                    if now >= next_poll {
                        next_poll = now + Duration::from_millis(POLL_MS);
                        let _ = chain_tx.read_register(Destination::All, hash_counter).await;
                        let _ = chain_tx
                            .read_register(Destination::All, addr::ERROR_COUNTER)
                            .await;
                        let _ = chain_tx.flush().await;
                    }
                }
            }
        }
        reset.set_low();
        set_uart_baud(115_200);
        (tx, rx) = (chain_tx.into_inner(), chain_rx.into_inner());
    }
}
