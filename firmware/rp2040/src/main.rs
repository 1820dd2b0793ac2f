//! The Hearth board firmware: embassy-rp wiring only. Every decision (power-on, job cadence,
//! nonce checks, thermal and power safety) is made by `hearth_board::controller::Controller`;
//! this file owns the peripherals and carries out its actions.
//!
//! Tasks: the USB device, the CDC link (frames in and out), and the main loop, which owns the
//! chain UART, the I2C peripherals, the fan PWM and the power pins.
#![no_std]
#![no_main]

#[macro_use]
mod board {
    #![allow(dead_code, unused_macros)]
    include!(concat!(env!("OUT_DIR"), "/board.rs"));
}

mod link;
mod power;

use core::panic::PanicInfo;

use bm13xx::chain::ChainEvent;
use bm13xx::model::ChipModel;
use embassy_executor::Spawner;
use embassy_futures::select::{Either4, select4};
use embassy_rp::bind_interrupts;
use embassy_rp::gpio::{Level, Output};
use embassy_rp::uart::{BufferedInterruptHandler, BufferedUart};
use embassy_time::{Duration, Instant, Ticker};
use hearth_board::controller::{Action, BoardConfig, Controller};
use hearth_board::thermal::ThermalLimits;
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

    // Chain UART at the power-on baud.
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
    let mut hw = power::Hardware::new(i2c, pwm, reset, enable, uart_tx, uart_rx, model);
    hw.set_fan(100).await;

    let config = BoardConfig {
        board_id: board::BOARD_ID,
        serial,
        firmware: FIRMWARE_VERSION,
        model,
        chips: board::ASIC_COUNT,
        frequency_khz: board::ASIC_FREQUENCY_KHZ,
        min_frequency_khz: board::ASIC_MIN_FREQUENCY_KHZ,
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

    loop {
        let event = select4(
            link::HOST_RX.receive(),
            hw.next_chain_event(),
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
                Either4::Second(Some(ChainEvent::Nonce(reply))) => {
                    controller.on_nonce(now, &reply, &mut out)
                }
                Either4::Second(Some(ChainEvent::Register(_))) => {}
                Either4::Second(None) => {
                    // The UART failed or closed; take the chain down and start it again.
                    hw.power_down().await;
                    controller.on_chain_failed(now, "chain UART error", &mut out);
                }
                Either4::Third(()) => controller.tick(now, &mut out),
                Either4::Fourth(()) => {
                    let sensors = hw.read_sensors().await;
                    controller.on_sensors(now, sensors, &mut out);
                }
            }
        }
        while !actions.is_empty() {
            let action = actions.remove(0);
            match action {
                Action::Send(message) => link::send(message),
                Action::SendJob(job) => hw.send_job(&job).await,
                Action::SetFan(percent) => hw.set_fan(percent).await,
                Action::PowerDown => {
                    hw.power_down().await;
                    led.set_low();
                }
                Action::PowerUp {
                    core_mv,
                    frequency_khz,
                } => {
                    let result = hw.power_up(core_mv, frequency_khz).await;
                    let now = now_ms();
                    let mut out = |a: Action| {
                        let _ = actions.push(a);
                    };
                    match result {
                        Ok(()) => {
                            led.set_high();
                            controller.on_chain_up(now, &mut out);
                        }
                        Err(reason) => controller.on_chain_failed(now, reason, &mut out),
                    }
                }
                Action::SetFrequency { from_khz, to_khz } => {
                    hw.ramp_frequency(from_khz, to_khz).await
                }
                Action::SetCoreVoltage(mv) => hw.set_core_voltage(mv).await,
            }
        }
    }
}
