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
use chain::{ChainReport, Target};
use embassy_executor::Spawner;
use embassy_futures::select::{Either4, select4};
use embassy_rp::bind_interrupts;
use embassy_rp::gpio::{Level, Output};
use embassy_rp::uart::{BufferedInterruptHandler, BufferedUart};
use embassy_rp::watchdog::Watchdog;
use embassy_time::{Duration, Instant, Ticker};
use hearth_board::controller::{Action, BoardConfig, Controller};
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

/// A panic resets the MCU: the power pins return to inputs and the board's pull-downs keep the
/// regulator off and the chips in reset until the firmware starts again.
#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// The main loop must come round within this, or the watchdog resets the MCU (and the board's
/// pull-downs cut the core). The loop wakes every 50 ms; its slowest step is a power-up (about
/// 100 ms) or a round of I2C reads.
const WATCHDOG_TIMEOUT: Duration = Duration::from_millis(1500);

fn now_ms() -> u32 {
    Instant::now().as_millis() as u32
}

fn job_interval_ms(model: ChipModel) -> u32 {
    match model {
        ChipModel::Bm1366 => 2000,
        ChipModel::Bm1368 | ChipModel::Bm1370 => 500,
        ChipModel::Bm1397 => 40,
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());

    // Safe state before anything else: chips in reset, regulator disabled.
    let reset = Output::new(asic_reset_pin!(p), Level::Low);
    let enable = Output::new(power_enable_pin!(p), Level::Low);
    let mut led = Output::new(led_pin!(p), Level::Low);

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

    // Peripherals on I2C and the fan PWM.
    let mut i2c_config = embassy_rp::i2c::Config::default();
    i2c_config.frequency = board::I2C_FREQUENCY_HZ;
    let i2c = embassy_rp::i2c::I2c::new_async(
        i2c_bus!(p),
        i2c_scl_pin!(p),
        i2c_sda_pin!(p),
        Irqs,
        i2c_config,
    );
    let pwm = power::fan_pwm(fan_pwm_slice!(p), fan_pwm_pin!(p));
    let mut power = power::Power::new(i2c, pwm, enable);
    power.set_fan(100).await;

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
        job_interval_ms: job_interval_ms(model),
    };
    let mut controller = Controller::new(config, now_ms());
    let mut ticker = Ticker::every(Duration::from_millis(50));
    let mut sensor_ticker = Ticker::every(Duration::from_millis(250));
    let mut actions: heapless::Vec<Action, 24> = heapless::Vec::new();
    let mut watchdog = Watchdog::new(p.WATCHDOG);
    watchdog.pause_on_debug(true);
    watchdog.start(WATCHDOG_TIMEOUT);

    loop {
        watchdog.feed(WATCHDOG_TIMEOUT);
        let event = select4(
            link::HOST_RX.receive(),
            chain::REPORTS.receive(),
            ticker.next(),
            sensor_ticker.next(),
        )
        .await;
        let now = now_ms();
        {
            let mut out = |a: Action| {
                let _ = actions.push(a);
            };
            match event {
                Either4::First(message) => controller.on_host(now, message, &mut out),
                Either4::Second(ChainReport::Event(ChainEvent::Nonce(reply))) => {
                    controller.on_nonce(now, &reply, &mut out)
                }
                Either4::Second(ChainReport::Event(ChainEvent::Register(reply))) => {
                    controller.on_register(&reply)
                }
                Either4::Second(ChainReport::Up(generation)) => {
                    controller.on_chain_up(now, generation, &mut out);
                    if matches!(
                        controller.state(),
                        BoardState::Idle | BoardState::Hashing | BoardState::Throttled
                    ) {
                        led.set_high();
                    }
                }
                // The controller answers with PowerDown unless the report is stale.
                Either4::Second(ChainReport::Failed(generation, reason)) => {
                    controller.on_chain_failed(now, generation, reason, &mut out)
                }
                Either4::Second(ChainReport::Lost(generation)) => {
                    controller.on_chain_failed(now, generation, "chain UART error", &mut out)
                }
                Either4::Third(()) => controller.tick(now, &mut out),
                Either4::Fourth(()) => {
                    let sensors = power.read_sensors().await;
                    controller.on_sensors(now, sensors, &mut out);
                }
            }
        }
        while !actions.is_empty() {
            let action = actions.remove(0);
            match action {
                Action::Send(message) => link::send(message),
                // Nothing here waits on the chain task: it may be mid bring-up for seconds.
                Action::SendJob(job) => {
                    let _ = chain::JOBS.try_send(job);
                }
                Action::SetFan(percent) => power.set_fan(percent).await,
                Action::PowerDown => {
                    // Core off first, here and now; the chain task then holds the chips in reset.
                    power.core_off().await;
                    chain::TARGET.signal(Target::Down);
                    led.set_low();
                }
                Action::PowerUp {
                    core_mv,
                    frequency_khz,
                    generation,
                } => match power.core_on(core_mv).await {
                    Ok(()) => chain::TARGET.signal(Target::Up {
                        generation,
                        frequency_khz,
                    }),
                    Err(reason) => {
                        let mut out = |a: Action| {
                            let _ = actions.push(a);
                        };
                        controller.on_chain_failed(now_ms(), generation, reason, &mut out);
                    }
                },
                Action::SetFrequency { to_khz, .. } => chain::FREQUENCY.signal(to_khz),
                Action::SetCoreVoltage(mv) => power.set_core_voltage(mv).await,
            }
        }
    }
}
