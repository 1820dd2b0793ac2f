//! The board's power and cooling on the RP2040: the fan PWM, the I²C bus with a timeout around
//! every transaction, and [`hearth_board::power::PowerStage`] on top. Nothing here decides.

use embassy_embedded_hal::shared_bus::asynch::i2c::I2cDevice;
use embassy_rp::gpio::Output;
use embassy_rp::i2c::{Async, I2c};
use embassy_rp::pwm::{self, Pwm};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::mutex::Mutex;
use embassy_time::{Duration, with_timeout};
use embedded_hal::i2c::{ErrorKind, ErrorType, Operation};
use hearth_board::emc2101::{self, Emc2101};
use hearth_board::ina260::Ina260;
use hearth_board::power::PowerStage;
use hearth_board::tps546::{self, Tps546};
use static_cell::StaticCell;

use crate::board;

/// Longest an I²C transaction may take. The longest one (a 7-byte block read) lasts about
/// 1 ms at 100 kHz, and an SMBus/PMBus device may stretch the clock for up to 25 ms of it
/// (SMBus 3.1 §4.2, tLOW:SEXT); past 35 ms (tTIMEOUT, max) an SMBus device itself gives up. A
/// transaction still running then is abandoned and its device treated as failed.
pub const I2C_TIMEOUT: Duration = Duration::from_millis(35);

type Bus = I2c<'static, board::I2cBus, Async>;
type Dev = TimedI2c<I2cDevice<'static, CriticalSectionRawMutex, Bus>>;

/// The power stage as this board builds it.
pub type Power = PowerStage<Dev, Output<'static>>;

/// An I²C device whose every transaction ends within [`I2C_TIMEOUT`]: a device that holds SCL
/// low gives an error (kind `Other`), which the drivers pass up and the controller treats as
/// that device failing, instead of hanging the main loop.
pub struct TimedI2c<T> {
    inner: T,
}

/// A bus error, or no answer within [`I2C_TIMEOUT`].
#[derive(Debug)]
pub enum TimedError<E> {
    /// The transaction failed.
    Bus(E),
    /// The transaction did not finish in time (and was abandoned).
    Timeout,
}

impl<E: embedded_hal::i2c::Error> embedded_hal::i2c::Error for TimedError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            TimedError::Bus(e) => e.kind(),
            TimedError::Timeout => ErrorKind::Other,
        }
    }
}

impl<T: ErrorType> ErrorType for TimedI2c<T> {
    type Error = TimedError<T::Error>;
}

/// The result of `transaction`, or a timeout.
async fn bounded<E>(
    transaction: impl core::future::Future<Output = Result<(), E>>,
) -> Result<(), TimedError<E>> {
    match with_timeout(I2C_TIMEOUT, transaction).await {
        Ok(result) => result.map_err(TimedError::Bus),
        Err(_) => Err(TimedError::Timeout),
    }
}

// Each method forwards to the same one of the inner device: embassy-rp's `write_read` sends
// the repeated START its generic `transaction` leaves to the controller.
impl<T: embedded_hal_async::i2c::I2c> embedded_hal_async::i2c::I2c for TimedI2c<T> {
    async fn read(&mut self, address: u8, read: &mut [u8]) -> Result<(), Self::Error> {
        bounded(self.inner.read(address, read)).await
    }

    async fn write(&mut self, address: u8, write: &[u8]) -> Result<(), Self::Error> {
        bounded(self.inner.write(address, write)).await
    }

    async fn write_read(
        &mut self,
        address: u8,
        write: &[u8],
        read: &mut [u8],
    ) -> Result<(), Self::Error> {
        bounded(self.inner.write_read(address, write, read)).await
    }

    async fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        bounded(self.inner.transaction(address, operations)).await
    }
}

/// The fan PWM at the board's frequency, at full duty until told otherwise.
pub fn fan_pwm<S: pwm::Slice>(
    slice: embassy_rp::Peri<'static, S>,
    pin: embassy_rp::Peri<'static, impl pwm::ChannelAPin<S>>,
) -> FanPwm {
    let top = (embassy_rp::clocks::clk_sys_freq() / board::FAN_PWM_FREQUENCY_HZ)
        .saturating_sub(1)
        .min(u32::from(u16::MAX)) as u16;
    let mut config = pwm::Config::default();
    config.top = top;
    config.compare_a = top.saturating_add(1); // full speed until the first temperature
    FanPwm {
        pwm: Pwm::new_output_a(slice, pin, config),
        top,
    }
}

/// The fan's PWM output.
pub struct FanPwm {
    pwm: Pwm<'static>,
    top: u16,
}

impl FanPwm {
    /// Duty in percent; compare = top + 1 is a constant high output, so 100 % really is 100 %.
    pub fn set(&mut self, percent: u8) {
        let mut config = pwm::Config::default();
        config.top = self.top;
        // With top = 0xFFFF, compare = top + 1 does not fit: 0xFFFF (one count short of
        // constant high) rather than wrapping to 0, which would stop the fan.
        let compare = (u32::from(self.top) + 1) * u32::from(percent.min(100)) / 100;
        config.compare_a = u16::try_from(compare).unwrap_or(u16::MAX);
        self.pwm.set_config(&config);
    }
}

/// The power stage on the board's I²C bus: regulator limits from the board definition and the
/// chip's envelope (boards/asics.toml), the enable pin already low. Also a device of its own on
/// the same bus for the host's I²C scan (bounded by the same timeout).
pub fn power_stage(i2c: Bus, enable: Output<'static>) -> (Power, Dev) {
    static BUS: StaticCell<Mutex<CriticalSectionRawMutex, Bus>> = StaticCell::new();
    let bus = BUS.init(Mutex::new(i2c));
    let device = || TimedI2c {
        inner: I2cDevice::new(bus),
    };
    let address = |a: Option<u8>, default: u8| a.unwrap_or(default);
    // `None` only on a board without the monitor: a fitted one that does not answer is a
    // failure, never "not fitted".
    let ina = board::INA260_ADDRESS.map(|a| Ina260::new(device(), a));
    let stage = PowerStage::new(
        Emc2101::new(
            device(),
            address(board::EMC2101_ADDRESS, emc2101::DEFAULT_ADDRESS),
        ),
        Tps546::new(
            device(),
            address(board::TPS546D24A_ADDRESS, tps546::DEFAULT_ADDRESS),
        ),
        ina,
        enable,
        tps546::Config {
            vout_scale_loop_permille: board::VOUT_SCALE_LOOP_PERMILLE,
            ..tps546::Config::for_core(
                (board::CORE_VOLTAGE_MIN_MV, board::CORE_VOLTAGE_MAX_MV),
                board::CORE_VOLTAGE_MV,
                (board::THROTTLE_VR_MC / 1000) as i16,
            )
        },
    );
    (stage, device())
}
