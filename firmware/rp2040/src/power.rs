//! The hardware the main loop drives: power pins, core regulator, fan, sensors, and the chain
//! UART. Every method carries out one controller action; none decides anything.

use bm13xx::chain::{Chain, ChainEvent, ChainOptions, ChainRx, ChainTx, HostBaud, hard_reset};
use bm13xx::command::{Command, Destination};
use bm13xx::job::FullHeaderJob;
use bm13xx::model::{ChainBaud, ChipModel};
use bm13xx::pll::{self, FrequencyRamp};
use bm13xx::register::addr;
use embassy_embedded_hal::shared_bus::asynch::i2c::I2cDevice;
use embassy_rp::gpio::Output;
use embassy_rp::i2c::{Async, I2c};
use embassy_rp::pwm::{self, Pwm};
use embassy_rp::uart::{BufferedUartRx, BufferedUartTx};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::{Delay, Timer};
use hearth_board::controller::Sensors;
use hearth_board::emc2101::{self, Emc2101, Percent};
use hearth_board::ina260::{self, Ina260};
use hearth_board::tps546::{self, Tps546};
use static_cell::StaticCell;

use crate::board;

type Bus = I2c<'static, board::I2cBus, Async>;
type Dev = I2cDevice<'static, CriticalSectionRawMutex, Bus>;

/// The fan PWM at the board's frequency, 0 % until told otherwise.
pub fn fan_pwm<S: pwm::Slice>(
    slice: embassy_rp::Peri<'static, S>,
    pin: embassy_rp::Peri<'static, impl pwm::ChannelAPin<S>>,
) -> (Pwm<'static>, u16) {
    let top = (embassy_rp::clocks::clk_sys_freq() / board::FAN_PWM_FREQUENCY_HZ)
        .saturating_sub(1)
        .min(u32::from(u16::MAX)) as u16;
    let mut config = pwm::Config::default();
    config.top = top;
    config.compare_a = top; // full speed until the first temperature
    (Pwm::new_output_a(slice, pin, config), top)
}

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
        i => (i, ((div & 0x7f) + 1) / 2),
    };
    r.uartibrd()
        .write_value(embassy_rp::pac::uart::regs::Uartibrd(ibrd));
    r.uartfbrd()
        .write_value(embassy_rp::pac::uart::regs::Uartfbrd(fbrd));
    // The divisors take effect on the next write of LCR_H.
    r.uartlcr_h().modify(|_| {});
}

enum Uart {
    Idle(BufferedUartTx, BufferedUartRx),
    Up(ChainTx<BufferedUartTx>, ChainRx<BufferedUartRx>),
    Gone,
}

/// Everything the main loop drives.
pub struct Hardware {
    emc: Emc2101<Dev>,
    tps: Tps546<Dev>,
    ina: Ina260<Dev>,
    emc_ready: bool,
    ina_ready: bool,
    pwm: Pwm<'static>,
    pwm_top: u16,
    reset: Output<'static>,
    enable: Output<'static>,
    uart: Uart,
    model: ChipModel,
}

impl Hardware {
    /// Take the peripherals; the regulator stays off and the chips in reset.
    pub fn new(
        i2c: Bus,
        (pwm, pwm_top): (Pwm<'static>, u16),
        reset: Output<'static>,
        enable: Output<'static>,
        uart_tx: BufferedUartTx,
        uart_rx: BufferedUartRx,
        model: ChipModel,
    ) -> Self {
        static BUS: StaticCell<Mutex<CriticalSectionRawMutex, Bus>> = StaticCell::new();
        let bus = BUS.init(Mutex::new(i2c));
        let address = |a: Option<u8>, default: u8| a.unwrap_or(default);
        Hardware {
            emc: Emc2101::new(
                I2cDevice::new(bus),
                address(board::EMC2101_ADDRESS, emc2101::DEFAULT_ADDRESS),
            ),
            tps: Tps546::new(
                I2cDevice::new(bus),
                address(board::TPS546D24A_ADDRESS, tps546::DEFAULT_ADDRESS),
            ),
            ina: Ina260::new(
                I2cDevice::new(bus),
                address(board::INA260_ADDRESS, ina260::DEFAULT_ADDRESS),
            ),
            emc_ready: false,
            ina_ready: false,
            pwm,
            pwm_top,
            reset,
            enable,
            uart: Uart::Idle(uart_tx, uart_rx),
            model,
        }
    }

    /// Fan duty on the PWM output and on the EMC2101.
    pub async fn set_fan(&mut self, percent: u8) {
        let percent = percent.min(100);
        let mut config = pwm::Config::default();
        config.top = self.pwm_top;
        config.compare_a = (u32::from(self.pwm_top) * u32::from(percent) / 100) as u16;
        self.pwm.set_config(&config);
        if self.emc_ready
            && let Some(p) = Percent::new(percent)
        {
            let _ = self.emc.set_fan(p).await;
        }
    }

    /// Read every sensor once.
    pub async fn read_sensors(&mut self) -> Sensors {
        if !self.emc_ready {
            self.emc_ready = self.emc.init(&emc2101::Config::default()).await.is_ok();
        }
        if !self.ina_ready && board::INA260_ADDRESS.is_some() {
            self.ina_ready = self.ina.init().await.is_ok();
        }
        let mut s = Sensors::default();
        s.asic_mc = Some(if self.emc_ready {
            self.emc.external_temperature_mc().await.map_err(|_| ())
        } else {
            Err(())
        });
        if self.emc_ready {
            s.board_mc = self.emc.internal_temperature_mc().await.ok();
            s.fan_rpm = self.emc.fan_rpm().await.ok().flatten();
        }
        match self.tps.status_word().await {
            Ok(status) => {
                s.vr_ok = true;
                if status.is_fault() {
                    s.vr_fault = Some(status.0);
                }
                s.vr_mc = self.tps.read_temperature_mc().await.ok();
                s.vcore_mv = self
                    .tps
                    .read_vout_mv()
                    .await
                    .ok()
                    .map(|mv| mv.min(u32::from(u16::MAX)) as u16);
                s.vcore_ma = self
                    .tps
                    .read_iout_ma()
                    .await
                    .ok()
                    .map(|ma| ma.max(0) as u32);
            }
            Err(_) => s.vr_ok = false,
        }
        if self.ina_ready {
            s.input_mv = self.ina.voltage_mv().await.ok();
            s.input_ma = self.ina.current_ma().await.ok().map(|ma| ma.max(0) as u32);
            s.input_mw = self.ina.power_mw().await.ok();
        }
        s
    }

    /// Power-on sequence: regulator configured and on at `core_mv`, reset pulse, chain bring-up
    /// at `frequency_khz` through the `bm13xx` driver.
    pub async fn power_up(&mut self, core_mv: u16, frequency_khz: u32) -> Result<(), &'static str> {
        if self.tps.init(&tps546::Config::single_chip()).await.is_err() {
            self.power_down().await;
            return Err("core regulator does not answer on I2C");
        }
        if self.tps.set_vout_mv(u32::from(core_mv)).await.is_err()
            || self.tps.enable(true).await.is_err()
        {
            self.power_down().await;
            return Err("core regulator refused the voltage");
        }
        self.enable.set_high();
        Timer::after_millis(100).await;
        match self.tps.read_vout_mv().await {
            Ok(mv) if mv * 10 >= u32::from(core_mv) * 9 => {}
            _ => {
                self.power_down().await;
                return Err("core voltage did not come up");
            }
        }
        let (tx, rx) = match core::mem::replace(&mut self.uart, Uart::Gone) {
            Uart::Idle(tx, rx) => (tx, rx),
            Uart::Up(tx, rx) => (tx.into_inner(), rx.into_inner()),
            Uart::Gone => return Err("chain UART lost"),
        };
        let _ = hard_reset(&mut self.reset, &mut Delay).await;
        let mut options = ChainOptions::new(self.model, Some(board::ASIC_COUNT));
        options.init.frequency_khz = frequency_khz;
        options.init.ticket_difficulty = board::TICKET_DIFFICULTY;
        options.init.baud = match board::ASIC_BAUD {
            3_125_000 => ChainBaud::Fast3M,
            115_200 => ChainBaud::PowerOn,
            _ => ChainBaud::Fast1M,
        };
        set_uart_baud(115_200);
        let mut chain = Chain::new(self.model, tx, rx, Delay, UartBaud, options);
        let result = chain.init().await;
        let (tx, rx, _, _) = chain.split();
        match result {
            Ok(_) => {
                self.uart = Uart::Up(tx, rx);
                Ok(())
            }
            Err(e) => {
                self.uart = Uart::Idle(tx.into_inner(), rx.into_inner());
                self.power_down().await;
                Err(match e {
                    bm13xx::ChainError::NoChips => "no chip answered the chip-id read",
                    bm13xx::ChainError::ChipCount { .. } => {
                        "fewer chips answered than the board has"
                    }
                    bm13xx::ChainError::UnexpectedChip { .. } => "a chip reports another model",
                    _ => "chain bring-up failed",
                })
            }
        }
    }

    /// Hashing stops: chips in reset, regulator off, UART back at the power-on baud.
    pub async fn power_down(&mut self) {
        self.reset.set_low();
        let _ = self.tps.enable(false).await;
        self.enable.set_low();
        self.uart = match core::mem::replace(&mut self.uart, Uart::Gone) {
            Uart::Up(tx, rx) => Uart::Idle(tx.into_inner(), rx.into_inner()),
            other => other,
        };
        set_uart_baud(115_200);
    }

    /// The next nonce or register reply while the chain is up; pending forever otherwise.
    /// `None` means the UART failed.
    pub async fn next_chain_event(&mut self) -> Option<ChainEvent> {
        match &mut self.uart {
            Uart::Up(_, rx) => rx.next_event().await.ok(),
            _ => core::future::pending().await,
        }
    }

    /// Give the chips a job.
    pub async fn send_job(&mut self, job: &FullHeaderJob) {
        if let Uart::Up(tx, _) = &mut self.uart {
            let _ = tx.send_job(job).await;
            let _ = tx.flush().await;
        }
    }

    /// Step the PLL from one frequency to another, 100 ms per 6.25 MHz (ESP-Miner's ramp).
    pub async fn ramp_frequency(&mut self, from_khz: u32, to_khz: u32) {
        let Uart::Up(tx, _) = &mut self.uart else {
            return;
        };
        let limits = self.model.pll_limits();
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
            Timer::after_millis(100).await;
        }
    }

    /// New core voltage.
    pub async fn set_core_voltage(&mut self, mv: u16) {
        let _ = self.tps.set_vout_mv(u32::from(mv)).await;
    }
}
