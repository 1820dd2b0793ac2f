//! The chain task: owns the chips' UART and reset line. Bring-up (reset, enumeration, PLL ramp,
//! baud switch) takes seconds; running it here keeps the main loop free to watch temperatures,
//! answer the host and cut power while it happens.

use bm13xx::chain::{Chain, ChainEvent, ChainOptions, ChainRx, ChainTx, HostBaud, hard_reset};
use bm13xx::command::{Command, Destination};
use bm13xx::job::FullHeaderJob;
use bm13xx::model::{ChainBaud, ChipModel};
use bm13xx::pll::{self, FrequencyRamp};
use bm13xx::register::addr;
use embassy_futures::select::{Either3, select3};
use embassy_rp::gpio::Output;
use embassy_rp::uart::{BufferedUartRx, BufferedUartTx};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_time::{Delay, Duration, Ticker, Timer};

use crate::board;

/// What the main loop asks of the chain.
pub enum ChainCommand {
    /// Reset and initialise the chips (the core must already be powered).
    BringUp {
        /// Hash clock, kHz.
        frequency_khz: u32,
    },
    /// Hold the chips in reset.
    Down,
    /// Give the chips a job.
    Job(FullHeaderJob),
    /// Ramp the hash clock.
    Ramp {
        /// From, kHz.
        from_khz: u32,
        /// To, kHz.
        to_khz: u32,
    },
}

/// What the chain tells the main loop.
pub enum ChainReport {
    /// Bring-up finished; hashing possible.
    Up,
    /// Bring-up failed.
    Failed(&'static str),
    /// A nonce or register reply.
    Event(ChainEvent),
    /// The UART failed while hashing.
    Lost,
}

/// Commands to the chain task.
pub static COMMANDS: Channel<CriticalSectionRawMutex, ChainCommand, 8> = Channel::new();
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

fn mining_baud() -> ChainBaud {
    match board::ASIC_BAUD {
        3_125_000 => ChainBaud::Fast3M,
        115_200 => ChainBaud::PowerOn,
        _ => ChainBaud::Fast1M,
    }
}

async fn bring_up(
    model: ChipModel,
    tx: BufferedUartTx,
    rx: BufferedUartRx,
    reset: &mut Output<'static>,
    frequency_khz: u32,
) -> Result<
    (ChainTx<BufferedUartTx>, ChainRx<BufferedUartRx>),
    (BufferedUartTx, BufferedUartRx, &'static str),
> {
    set_uart_baud(115_200);
    let _ = hard_reset(reset, &mut Delay).await;
    let mut options = ChainOptions::new(model, Some(board::ASIC_COUNT));
    options.init.frequency_khz = frequency_khz;
    options.init.ticket_difficulty = board::TICKET_DIFFICULTY;
    options.init.baud = mining_baud();
    let mut chain = Chain::new(model, tx, rx, Delay, UartBaud, options);
    let result = chain.init().await;
    let (tx, rx, _, _) = chain.split();
    match result {
        Ok(_) => Ok((tx, rx)),
        Err(e) => {
            reset.set_low();
            set_uart_baud(115_200);
            Err((
                tx.into_inner(),
                rx.into_inner(),
                match e {
                    bm13xx::ChainError::NoChips => "no chip answered the chip-id read",
                    bm13xx::ChainError::ChipCount { .. } => {
                        "fewer chips answered than the board has"
                    }
                    bm13xx::ChainError::UnexpectedChip { .. } => "a chip reports another model",
                    _ => "chain bring-up failed",
                },
            ))
        }
    }
}

async fn ramp(tx: &mut ChainTx<BufferedUartTx>, model: ChipModel, from_khz: u32, to_khz: u32) {
    let limits = model.pll_limits();
    for khz in FrequencyRamp::new(from_khz, to_khz) {
        if let Some(params) = pll::solve(khz, &limits) {
            let command = Command::WriteRegister {
                to: Destination::All,
                register: addr::PLL0_PARAMETER,
                value: params.register_value(&limits),
            };
            let _ = tx.send(command).await;
            let _ = tx.flush().await;
        }
        // ESP-Miner's step: 6.25 MHz every 100 ms.
        Timer::after_millis(100).await;
    }
}

/// Run the chain until the MCU resets.
#[embassy_executor::task]
pub async fn run(
    mut tx: BufferedUartTx,
    mut rx: BufferedUartRx,
    mut reset: Output<'static>,
    model: ChipModel,
) -> ! {
    loop {
        // Down: chips in reset, waiting for a bring-up.
        reset.set_low();
        let frequency_khz = loop {
            // Jobs and ramps for a chain that is down are dropped.
            if let ChainCommand::BringUp { frequency_khz } = COMMANDS.receive().await {
                break frequency_khz;
            }
        };
        let (mut chain_tx, mut chain_rx) =
            match bring_up(model, tx, rx, &mut reset, frequency_khz).await {
                Ok(halves) => halves,
                Err((t, r, reason)) => {
                    (tx, rx) = (t, r);
                    REPORTS.send(ChainReport::Failed(reason)).await;
                    continue;
                }
            };
        REPORTS.send(ChainReport::Up).await;
        // The chips' own hash and error counters, once a second (ESP-Miner polls the same).
        let mut poll = Ticker::every(Duration::from_secs(1));
        let hash_counter = if model == ChipModel::Bm1397 {
            addr::HASH_RATE_BM1397
        } else {
            addr::HASH_COUNTER_TOTAL
        };
        loop {
            match select3(COMMANDS.receive(), chain_rx.next_event(), poll.next()).await {
                Either3::First(ChainCommand::Job(job)) => {
                    let _ = chain_tx.send_job(&job).await;
                    let _ = chain_tx.flush().await;
                }
                Either3::First(ChainCommand::Ramp { from_khz, to_khz }) => {
                    ramp(&mut chain_tx, model, from_khz, to_khz).await
                }
                Either3::First(ChainCommand::Down) => break,
                Either3::First(ChainCommand::BringUp { .. }) => {} // already up
                Either3::Second(Ok(event)) => REPORTS.send(ChainReport::Event(event)).await,
                Either3::Second(Err(_)) => {
                    REPORTS.send(ChainReport::Lost).await;
                    break;
                }
                Either3::Third(()) => {
                    let _ = chain_tx.read_register(Destination::All, hash_counter).await;
                    let _ = chain_tx
                        .read_register(Destination::All, addr::ERROR_COUNTER)
                        .await;
                    let _ = chain_tx.flush().await;
                }
            }
        }
        reset.set_low();
        set_uart_baud(115_200);
        (tx, rx) = (chain_tx.into_inner(), chain_rx.into_inner());
    }
}
