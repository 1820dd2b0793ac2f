//! The Hearth board firmware: embassy-rp wiring only. Every decision (power-on, job cadence,
//! nonce checks, thermal and power safety) is made by `hearth_board::controller::Controller`;
//! this file owns the peripherals and carries out its actions.
//!
//! Tasks: the USB device, the CDC link (frames in and out), the chain (UART and reset line), and
//! the main loop, which owns the controller, the I2C peripherals, the fan PWM and the regulator.
#![no_std]
#![no_main]

#[macro_use]
mod board {
    #![allow(dead_code, unused_macros)]
    include!(concat!(env!("OUT_DIR"), "/board.rs"));
}

mod chain;
mod link;
mod power;

use core::panic::PanicInfo;

use bm13xx::chain::ChainEvent;
use bm13xx::model::ChipModel;
use chain::{ChainCommand, ChainReport, Target};
use embassy_executor::Spawner;
use embassy_futures::select::{Either4, select4};
use embassy_rp::bind_interrupts;
use embassy_rp::gpio::{Level, Output, OutputOpenDrain};
use embassy_rp::uart::{BufferedInterruptHandler, BufferedUart};
use embassy_rp::watchdog::Watchdog;
use embassy_time::{Delay, Duration, Instant, Ticker};
use heapless::Deque;
use hearth_board::controller::{Action, Actions, BoardConfig, Controller, MAX_ACTIONS};
use hearth_board::thermal::ThermalLimits;
use hearth_link::BoardState;
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    UART1_IRQ => BufferedInterruptHandler<embassy_rp::peripherals::UART1>;
    I2C1_IRQ => embassy_rp::i2c::InterruptHandler<embassy_rp::peripherals::I2C1>;
    USBCTRL_IRQ => embassy_rp::usb::InterruptHandler<embassy_rp::peripherals::USB>;
});

// The interrupt table above names UART1 and I2C1; a board on other instances must edit it.
const _: () = assert!(
    board::ASIC_UART == 1 && board::I2C_BUS == 1,
    "bind_interrupts! names UART1 and I2C1"
);

/// Firmware version reported to the host.
const FIRMWARE_VERSION: [u8; 3] = [0, 1, 0];

/// A panic resets the MCU: the power pins return to inputs, and the pads' reset pull-downs and
/// the board's keep the regulator's CONTROL pin low (which, with ON_OFF_CONFIG's CP bit set,
/// cuts the rail whatever OPERATION says) and the chips in reset until the firmware starts.
#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// The watchdog resets the MCU (and the board's pull-downs cut the core) unless it is fed within
/// this. It is fed only while the controller has seen both a sensor round and a safety tick in
/// the last second ([`Controller::watchdog_may_feed`]): a loop that turns while either is stuck
/// does not keep it quiet. The slowest step, a power-up, takes 100 ms plus I2C bounded by
/// [`power::I2C_TIMEOUT`] per transaction.
const WATCHDOG_TIMEOUT: Duration = Duration::from_millis(1500);

/// SCL half-period of the boot-time bus clear: 5 µs, 100 kHz.
const BUS_CLEAR_HALF_PERIOD_US: u32 = 5;

fn now_ms() -> u32 {
    Instant::now().as_millis() as u32
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let mut p = embassy_rp::init(Default::default());

    // The rail off before anything else. From reset until here the pad's reset pull-down and
    // the board's hold the enable pin low; now it is driven low. With the regulator's CONTROL
    // pin authoritative (tps546::ON_OFF_CONFIG) that alone cuts the core, whatever the bus.
    let enable = Output::new(power_enable_pin!(p), Level::Low);
    let reset = Output::new(asic_reset_pin!(p), Level::Low);
    let mut led = Output::new(led_pin!(p), Level::Low);

    // A device left mid-byte by the reset may hold SDA low: clock it free before the I2C
    // peripheral takes the pins. A failure here leaves the bus as it was; the reads that
    // follow then fail and are handled as sensor failures.
    {
        let mut scl = OutputOpenDrain::new(i2c_scl_pin!(p).reborrow(), Level::High);
        let mut sda = OutputOpenDrain::new(i2c_sda_pin!(p).reborrow(), Level::High);
        let _ = hearth_board::power::clear_bus(
            &mut scl,
            &mut sda,
            &mut Delay,
            BUS_CLEAR_HALF_PERIOD_US,
        );
    }

    let mut fan = power::fan_pwm(fan_pwm_slice!(p), fan_pwm_pin!(p));
    let mut i2c_config = embassy_rp::i2c::Config::default();
    i2c_config.frequency = board::I2C_FREQUENCY_HZ;
    let i2c = embassy_rp::i2c::I2c::new_async(
        i2c_bus!(p),
        i2c_scl_pin!(p),
        i2c_sda_pin!(p),
        Irqs,
        i2c_config,
    );
    let (mut power, mut scanner) = power::power_stage(i2c, enable);
    // A rail a previous run left on (an MCU reset does not reset the regulator): OPERATION off,
    // and the CONTROL pin made authoritative, before anything else is on the bus.
    let _ = power.boot().await;
    power.set_fan(100).await;

    let model = match ChipModel::from_name(board::ASIC_MODEL) {
        Some(m) => m,
        None => ChipModel::Bm1370,
    };
    let serial = link::serial_number(p.FLASH);

    // USB CDC link to the host.
    let usb = embassy_rp::usb::Driver::new(p.USB, Irqs);
    link::start(spawner, usb, &serial);

    // Chain UART at the power-on baud, owned by the chain task.
    static TX_BUF: StaticCell<[u8; 512]> = StaticCell::new();
    static RX_BUF: StaticCell<[u8; 1024]> = StaticCell::new();
    let mut uart_config = embassy_rp::uart::Config::default();
    uart_config.baudrate = 115_200;
    let uart = BufferedUart::new(
        asic_uart!(p),
        asic_tx_pin!(p),
        asic_rx_pin!(p),
        Irqs,
        TX_BUF.init([0; 512]),
        RX_BUF.init([0; 1024]),
        uart_config,
    );
    let (uart_tx, uart_rx) = uart.split();
    if let Ok(task) = chain::run(uart_tx, uart_rx, reset, model) {
        spawner.spawn(task);
    }

    let config = BoardConfig {
        board_id: board::BOARD_ID,
        serial,
        firmware: FIRMWARE_VERSION,
        model,
        chips: board::ASIC_COUNT,
        frequency_khz: board::ASIC_FREQUENCY_KHZ,
        min_frequency_khz: board::ASIC_MIN_FREQUENCY_KHZ,
        max_frequency_khz: board::ASIC_MAX_FREQUENCY_KHZ,
        core_mv: board::CORE_VOLTAGE_MV as u16,
        core_mv_range: (
            board::CORE_VOLTAGE_MIN_MV as u16,
            board::CORE_VOLTAGE_MAX_MV as u16,
        ),
        ticket_difficulty: board::TICKET_DIFFICULTY,
        limits: ThermalLimits {
            target_mc: board::TARGET_ASIC_MC,
            throttle_mc: board::THROTTLE_ASIC_MC,
            shutdown_mc: board::SHUTDOWN_ASIC_MC,
            hysteresis_mc: board::HYSTERESIS_MC,
            vr_throttle_mc: board::THROTTLE_VR_MC,
            vr_shutdown_mc: board::SHUTDOWN_VR_MC,
            min_fan_percent: board::FAN_MIN_PERCENT,
        },
        host_timeout_ms: board::HOST_TIMEOUT_MS,
        input_mv_range: (board::INPUT_MIN_MV, board::INPUT_MAX_MV),
        max_input_mw: board::MAX_INPUT_POWER_MW,
        job_interval_ms: u32::try_from(model.job_interval().as_millis()).unwrap_or(u32::MAX),
    };
    let mut controller = Controller::new(config, now_ms());
    let mut ticker = Ticker::every(Duration::from_millis(50));
    let mut sensor_ticker = Ticker::every(Duration::from_millis(250));
    // One event's actions plus the follow-ups of a failed power action (each list holds at
    // most MAX_ACTIONS; the controller's tests keep real lists under half of it).
    let mut pending: Deque<Action, { 2 * MAX_ACTIONS }> = Deque::new();
    let mut watchdog = Watchdog::new(p.WATCHDOG);
    watchdog.pause_on_debug(true);
    watchdog.start(WATCHDOG_TIMEOUT);

    loop {
        if controller.watchdog_may_feed(now_ms()) {
            watchdog.feed(WATCHDOG_TIMEOUT);
        }
        let event = select4(
            link::HOST_RX.receive(),
            chain::REPORTS.receive(),
            ticker.next(),
            sensor_ticker.next(),
        )
        .await;
        let now = now_ms();
        let actions = match event {
            Either4::First(message) => controller.on_host(now, message),
            Either4::Second(ChainReport::Event(ChainEvent::Nonce(reply))) => {
                controller.on_nonce(now, &reply)
            }
            Either4::Second(ChainReport::Event(ChainEvent::Register(reply))) => {
                controller.on_register(&reply);
                Actions::new()
            }
            Either4::Second(ChainReport::Enumerated(found)) => {
                controller.on_enumeration(found.to_link())
            }
            Either4::Second(ChainReport::Up(generation)) => {
                let actions = controller.on_chain_up(now, generation);
                if matches!(
                    controller.state(),
                    BoardState::Idle | BoardState::Hashing | BoardState::Throttled
                ) {
                    led.set_high();
                }
                actions
            }
            // The controller answers with PowerDown unless the report is stale.
            Either4::Second(ChainReport::Failed(generation, reason)) => {
                controller.on_chain_failed(now, generation, reason)
            }
            Either4::Second(ChainReport::Lost(generation)) => {
                controller.on_chain_failed(now, generation, "chain UART error")
            }
            Either4::Second(ChainReport::HashingStopped(generation)) => {
                controller.on_hashing_stopped(now, generation)
            }
            Either4::Second(ChainReport::HashingResumed(generation)) => {
                controller.on_hashing_resumed(now, generation)
            }
            Either4::Third(()) => controller.tick(now),
            Either4::Fourth(()) => {
                let sensors = power.read_sensors().await;
                controller.on_sensors(now_ms(), sensors)
            }
        };
        queue(&mut pending, &mut controller, actions);
        while let Some(action) = pending.pop_front() {
            let follow_up = match action {
                Action::Send(message) => {
                    link::send(message);
                    None
                }
                // Nothing here waits on the chain task: it may be mid bring-up or mid resume
                // ramp for seconds.
                Action::SendJob(job) => to_chain(&mut controller, ChainCommand::Job(job)),
                Action::SetVersionMask(mask) => {
                    to_chain(&mut controller, ChainCommand::VersionMask(mask))
                }
                Action::StopHashing => to_chain(&mut controller, ChainCommand::StopHashing),
                Action::ResumeHashing => to_chain(&mut controller, ChainCommand::ResumeHashing),
                Action::SetFan(percent) => {
                    fan.set(percent);
                    power.set_fan(percent).await;
                    None
                }
                Action::PowerDown => {
                    // Pin low first, here and now (that alone cuts the rail); OPERATION off is a
                    // second line whose failure changes nothing. The chain task then holds the
                    // chips in reset.
                    let _ = power.core_off().await;
                    chain::TARGET.signal(Target::Down);
                    led.set_low();
                    None
                }
                Action::PowerUp {
                    core_mv,
                    frequency_khz,
                    generation,
                } => match power.core_on(core_mv, &mut Delay).await {
                    Ok(()) => {
                        chain::TARGET.signal(Target::Up {
                            generation,
                            frequency_khz,
                        });
                        None
                    }
                    // A regulator that is silent, refuses, or brings the core up outside its
                    // bounds is a regulator fault: the Regulator safe state (pin low, backoff
                    // that doubles, CLEAR_FAULTS, healthy readings), not a chain retry every
                    // 10 s that would put the chips through the same overshoot each time.
                    Err(e) => Some(controller.on_power_error(now_ms(), e.reason())),
                },
                Action::SetFrequency { to_khz, .. } => {
                    chain::FREQUENCY.signal(to_khz);
                    None
                }
                Action::SetCoreVoltage(mv) => match power.set_core_voltage(mv).await {
                    Ok(()) => None,
                    Err(e) => Some(controller.on_power_error(now_ms(), e.reason())),
                },
                Action::ScanI2c => {
                    // About 25 ms at 100 kHz; a hung bus stops it at the first timeout, well
                    // inside the watchdog's time.
                    let found = hearth_board::i2c_scan::scan(&mut scanner).await;
                    link::send(hearth_link::BoardToHost::I2cScan(found));
                    None
                }
                Action::ClearRegulatorFaults => {
                    // A failure leaves the status latched; the controller then sees no
                    // healthy readings and tries again after its backoff.
                    let _ = power.clear_regulator_faults().await;
                    None
                }
            };
            if let Some(actions) = follow_up {
                queue(&mut pending, &mut controller, actions);
            }
        }
    }
}

/// Queues `command` for the chain task without waiting; if the queue is full the controller is
/// told, so that it issues what the chips need again.
fn to_chain(controller: &mut Controller, command: ChainCommand) -> Option<Actions> {
    if chain::COMMANDS.try_send(command).is_err() {
        controller.on_chain_command_dropped();
    }
    None
}

/// Appends `actions` to the pending list; any that do not fit are counted by the controller,
/// which reports them to the host.
fn queue(
    pending: &mut Deque<Action, { 2 * MAX_ACTIONS }>,
    controller: &mut Controller,
    actions: Actions,
) {
    let mut dropped = 0;
    for action in actions {
        if pending.push_back(action).is_err() {
            dropped += 1;
        }
    }
    controller.note_dropped_actions(dropped);
}
