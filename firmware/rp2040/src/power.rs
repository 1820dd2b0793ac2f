//! The board's power and cooling: core regulator and enable pin, fan PWM, and the sensors on
//! I2C. Every method carries out one controller action; none decides anything.

use embassy_embedded_hal::shared_bus::asynch::i2c::I2cDevice;
use embassy_rp::gpio::Output;
use embassy_rp::i2c::{Async, I2c};
use embassy_rp::pwm::{self, Pwm};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::Timer;
use hearth_board::controller::Sensors;
use hearth_board::emc2101::{self, Emc2101, Percent};
use hearth_board::ina260::{self, Ina260};
use hearth_board::tps546::{self, Tps546};
use static_cell::StaticCell;

use crate::board;

type Bus = I2c<'static, board::I2cBus, Async>;
type Dev = I2cDevice<'static, CriticalSectionRawMutex, Bus>;

/// The fan PWM at the board's frequency, at full duty until told otherwise.
pub fn fan_pwm<S: pwm::Slice>(
    slice: embassy_rp::Peri<'static, S>,
    pin: embassy_rp::Peri<'static, impl pwm::ChannelAPin<S>>,
) -> (Pwm<'static>, u16) {
    let top = (embassy_rp::clocks::clk_sys_freq() / board::FAN_PWM_FREQUENCY_HZ)
        .saturating_sub(1)
        .min(u32::from(u16::MAX)) as u16;
    let mut config = pwm::Config::default();
    config.top = top;
    config.compare_a = top.saturating_add(1); // full speed until the first temperature
    (Pwm::new_output_a(slice, pin, config), top)
}

/// Regulator, fan and sensors.
pub struct Power {
    emc: Emc2101<Dev>,
    tps: Tps546<Dev>,
    ina: Ina260<Dev>,
    emc_ready: bool,
    ina_ready: bool,
    pwm: Pwm<'static>,
    pwm_top: u16,
    enable: Output<'static>,
}

impl Power {
    /// Take the peripherals; the regulator stays off.
    pub fn new(i2c: Bus, (pwm, pwm_top): (Pwm<'static>, u16), enable: Output<'static>) -> Self {
        static BUS: StaticCell<Mutex<CriticalSectionRawMutex, Bus>> = StaticCell::new();
        let bus = BUS.init(Mutex::new(i2c));
        let address = |a: Option<u8>, default: u8| a.unwrap_or(default);
        Power {
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
            enable,
        }
    }

    /// Fan duty on the PWM output and on the EMC2101.
    pub async fn set_fan(&mut self, percent: u8) {
        let percent = percent.min(100);
        let mut config = pwm::Config::default();
        config.top = self.pwm_top;
        // compare = top + 1 is a constant high output: 100 % really is 100 %.
        config.compare_a = ((u32::from(self.pwm_top) + 1) * u32::from(percent) / 100) as u16;
        self.pwm.set_config(&config);
        if self.emc_ready
            && let Some(p) = Percent::new(percent)
        {
            let _ = self.emc.set_fan(p).await;
        }
    }

    /// Read every sensor once (re-initialising a sensor that was missing).
    pub async fn read_sensors(&mut self) -> Sensors {
        if !self.emc_ready {
            self.emc_ready = self.emc.init(&emc2101::Config::default()).await.is_ok();
        }
        if !self.ina_ready && board::INA260_ADDRESS.is_some() {
            self.ina_ready = self.ina.init().await.is_ok();
        }
        let asic = if self.emc_ready {
            self.emc.external_temperature_mc().await.map_err(|_| ())
        } else {
            Err(())
        };
        let mut s = Sensors {
            asic_mc: Some(asic),
            ..Sensors::default()
        };
        if self.emc_ready {
            match self.emc.internal_temperature_mc().await {
                Ok(t) => s.board_mc = Some(t),
                // Reads fail when the device vanished: find it again next time.
                Err(_) => self.emc_ready = false,
            }
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

    /// Regulator configured and on at `core_mv`, checked by reading the output back.
    pub async fn core_on(&mut self, core_mv: u16) -> Result<(), &'static str> {
        if self.tps.init(&tps546::Config::single_chip()).await.is_err() {
            self.core_off().await;
            return Err("core regulator does not answer on I2C");
        }
        if self.tps.set_vout_mv(u32::from(core_mv)).await.is_err()
            || self.tps.enable(true).await.is_err()
        {
            self.core_off().await;
            return Err("core regulator refused the voltage");
        }
        self.enable.set_high();
        Timer::after_millis(100).await;
        match self.tps.read_vout_mv().await {
            Ok(mv) if mv * 10 >= u32::from(core_mv) * 9 => Ok(()),
            _ => {
                self.core_off().await;
                Err("core voltage did not come up")
            }
        }
    }

    /// Regulator off: the enable pin first (instant, and works with the I2C bus hung), then
    /// the regulator's own OPERATION register.
    pub async fn core_off(&mut self) {
        self.enable.set_low();
        let _ = self.tps.enable(false).await;
    }

    /// New core voltage.
    pub async fn set_core_voltage(&mut self, mv: u16) {
        let _ = self.tps.set_vout_mv(u32::from(mv)).await;
    }
}
