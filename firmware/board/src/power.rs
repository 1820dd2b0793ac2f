//! The board's power stage, generic over the bus and the enable pin: the regulator, the fan
//! controller and the input monitor read into [`Sensors`], and the core rail switched on and off.
//! The RP2040 image only adds the fan PWM and a timeout around every I²C transaction (which
//! reaches this code as a bus error, so a hung device reads as a failed one).

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::i2c::I2c;

use crate::emc2101::{self, Emc2101, Percent};
use crate::ina260::Ina260;
use crate::sensors::{InputPower, Reading, RegulatorReading, Sensors};
use crate::tps546::{self, Tps546};

/// How long the rail gets to come up before its voltage is checked.
pub const CORE_SETTLE_MS: u32 = 100;
/// After power-on the measured core voltage must be at least this share of the request …
pub const CORE_MIN_PERMILLE: u32 = 900;
/// … and at most this share of it (a regulator that overshoots is switched off).
pub const CORE_MAX_PERMILLE: u32 = 1_050;

/// Why the core rail could not be switched as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerError {
    /// The regulator did not answer on I²C (or timed out).
    RegulatorSilent,
    /// The regulator answered but refused a command.
    Refused,
    /// The enable pin could not be driven.
    EnablePin,
    /// After power-on the core voltage stayed below [`CORE_MIN_PERMILLE`] of the request.
    VoltageLow {
        /// Measured, mV.
        measured_mv: u32,
    },
    /// After power-on the core voltage was above [`CORE_MAX_PERMILLE`] of the request.
    VoltageHigh {
        /// Measured, mV.
        measured_mv: u32,
    },
}

impl PowerError {
    /// A short reason for the host.
    pub fn reason(&self) -> &'static str {
        match self {
            PowerError::RegulatorSilent => "core regulator does not answer on I2C",
            PowerError::Refused => "core regulator refused the command",
            PowerError::EnablePin => "core enable pin could not be driven",
            PowerError::VoltageLow { .. } => "core voltage did not come up",
            PowerError::VoltageHigh { .. } => "core voltage above its bound after power-on",
        }
    }
}

fn regulator_error<E>(e: tps546::Error<E>) -> PowerError {
    match e {
        tps546::Error::I2c(_) => PowerError::RegulatorSilent,
        _ => PowerError::Refused,
    }
}

/// Regulator, fan controller, input monitor and the regulator's enable pin.
#[derive(Debug)]
pub struct PowerStage<I2C, EN> {
    emc: Emc2101<I2C>,
    tps: Tps546<I2C>,
    ina: Option<Ina260<I2C>>,
    emc_ready: bool,
    ina_ready: bool,
    fan_percent: u8,
    enable: EN,
    regulator: tps546::Config,
}

impl<I2C: I2c, EN: OutputPin> PowerStage<I2C, EN> {
    /// Take the devices (`ina`: `None` on boards without an input monitor). No bus traffic;
    /// the caller has already driven `enable` low.
    pub fn new(
        emc: Emc2101<I2C>,
        tps: Tps546<I2C>,
        ina: Option<Ina260<I2C>>,
        enable: EN,
        regulator: tps546::Config,
    ) -> Self {
        PowerStage {
            emc,
            tps,
            ina,
            emc_ready: false,
            ina_ready: false,
            fan_percent: 100,
            enable,
            regulator,
        }
    }

    /// Gives the devices and the pin back.
    pub fn destroy(self) -> (Emc2101<I2C>, Tps546<I2C>, Option<Ina260<I2C>>, EN) {
        (self.emc, self.tps, self.ina, self.enable)
    }

    /// First thing at boot: pin low, then the regulator's OPERATION off and ON_OFF_CONFIG with
    /// the CONTROL pin authoritative ([`Tps546::force_off`]), for a rail a previous run left on.
    pub async fn boot(&mut self) -> Result<(), PowerError> {
        let pin = self.enable.set_low().map_err(|_| PowerError::EnablePin);
        let bus = self.tps.force_off().await.map_err(regulator_error);
        pin.and(bus)
    }

    /// Fan duty on the EMC2101 (the PWM pin is the firmware's); remembered for a re-init.
    pub async fn set_fan(&mut self, percent: u8) {
        self.fan_percent = percent.min(100);
        if self.emc_ready
            && let Some(p) = Percent::new(self.fan_percent)
            && self.emc.set_fan(p).await.is_err()
        {
            self.emc_ready = false;
        }
    }

    /// One round: every sensor read once (the regulator first), a device that was missing
    /// initialised again first. Any failed transaction, a timeout included, makes that device's
    /// reading [`Reading::Failed`].
    pub async fn read_sensors(&mut self) -> Sensors {
        // The regulator first: on a hung bus its failure is what cuts the rail, and the other
        // devices' timeouts must not delay it.
        let mut s = Sensors {
            regulator: match self.read_regulator().await {
                Ok(r) => Reading::Value(r),
                Err(_) => Reading::Failed,
            },
            ..Sensors::default()
        };
        self.read_emc(&mut s).await;
        s.input = self.read_input().await;
        s
    }

    async fn read_emc(&mut self, s: &mut Sensors) {
        if !self.emc_ready {
            self.emc_ready = self.emc.init(&emc2101::Config::default()).await.is_ok();
            if self.emc_ready {
                // The fan setting written while the device was missing never arrived.
                self.set_fan(self.fan_percent).await;
            }
        }
        if !self.emc_ready {
            s.asic_mc = Reading::Failed;
            s.board_mc = Reading::Failed;
            s.fan_rpm = Reading::Failed;
            return;
        }
        s.asic_mc = match self.emc.external_temperature_mc().await {
            Ok(t) => Reading::Value(t),
            // The bus failed (a NACK or a timeout): the device is gone for this round. Its
            // other reads would only add timeouts on a hung bus.
            Err(emc2101::Error::I2c(_)) => {
                self.emc_ready = false;
                s.board_mc = Reading::Failed;
                s.fan_rpm = Reading::Failed;
                s.asic_mc = Reading::Failed;
                return;
            }
            // The device answered: its diode is open or shorted.
            Err(_) => Reading::Failed,
        };
        s.board_mc = match self.emc.internal_temperature_mc().await {
            Ok(t) => Reading::Value(t),
            Err(_) => {
                // The device vanished: find it again next round.
                self.emc_ready = false;
                Reading::Failed
            }
        };
        s.fan_rpm = match self.emc.fan_rpm().await {
            Ok(rpm) => Reading::Value(rpm.unwrap_or(0)),
            Err(_) => Reading::Failed,
        };
    }

    async fn read_regulator(&mut self) -> Result<RegulatorReading, tps546::Error<I2C::Error>> {
        let status = self.tps.read_status().await?;
        let temp_mc = self.tps.read_temperature_mc().await?;
        let vout_mv = self.tps.read_vout_mv().await?;
        let iout_ma = self.tps.read_iout_ma().await?;
        Ok(RegulatorReading {
            health: status.health(),
            status_word: status.word.0,
            temp_mc,
            vout_mv: vout_mv.min(u32::from(u16::MAX)) as u16,
            iout_ma: iout_ma.max(0) as u32,
        })
    }

    /// A fitted monitor that does not answer is a failure, never "not fitted": input-power
    /// protection must not switch itself off.
    async fn read_input(&mut self) -> Reading<InputPower> {
        let Some(ina) = self.ina.as_mut() else {
            return Reading::Absent;
        };
        if !self.ina_ready {
            self.ina_ready = ina.init().await.is_ok();
            if !self.ina_ready {
                return Reading::Failed;
            }
        }
        let reading = async {
            Ok::<_, crate::ina260::Error<I2C::Error>>(InputPower {
                mv: ina.voltage_mv().await?,
                ma: ina.current_ma().await?.max(0) as u32,
                mw: ina.power_mw().await?,
            })
        }
        .await;
        match reading {
            Ok(p) => Reading::Value(p),
            Err(_) => {
                self.ina_ready = false;
                Reading::Failed
            }
        }
    }

    /// Regulator configured and on at `core_mv`, then checked: after [`CORE_SETTLE_MS`] the
    /// measured output must lie within [`CORE_MIN_PERMILLE`]..=[`CORE_MAX_PERMILLE`] of the
    /// request, or the rail goes off again. OPERATION goes on before the pin rises: with the
    /// CONTROL pin authoritative, the pin is what starts the rail.
    pub async fn core_on(
        &mut self,
        core_mv: u16,
        delay: &mut impl DelayNs,
    ) -> Result<(), PowerError> {
        let result = self.try_core_on(u32::from(core_mv), delay).await;
        if result.is_err() {
            let _ = self.core_off().await;
        }
        result
    }

    async fn try_core_on(
        &mut self,
        core_mv: u32,
        delay: &mut impl DelayNs,
    ) -> Result<(), PowerError> {
        self.tps
            .init(&self.regulator)
            .await
            .map_err(regulator_error)?;
        self.tps
            .set_vout_mv(core_mv)
            .await
            .map_err(regulator_error)?;
        self.tps.enable(true).await.map_err(regulator_error)?;
        self.enable.set_high().map_err(|_| PowerError::EnablePin)?;
        delay.delay_ms(CORE_SETTLE_MS).await;
        let measured_mv = self.tps.read_vout_mv().await.map_err(regulator_error)?;
        // In u64: a nonsense reading (a garbage VOUT_MODE exponent) must not wrap into range.
        let (measured, requested) = (u64::from(measured_mv) * 1000, u64::from(core_mv));
        if measured < requested * u64::from(CORE_MIN_PERMILLE) {
            return Err(PowerError::VoltageLow { measured_mv });
        }
        if measured > requested * u64::from(CORE_MAX_PERMILLE) {
            return Err(PowerError::VoltageHigh { measured_mv });
        }
        Ok(())
    }

    /// Rail off: the enable pin first (instant, and it works with the bus hung), then
    /// OPERATION off. Both are tried; the first failure is returned.
    pub async fn core_off(&mut self) -> Result<(), PowerError> {
        let pin = self.enable.set_low().map_err(|_| PowerError::EnablePin);
        let bus = self.tps.enable(false).await.map_err(regulator_error);
        pin.and(bus)
    }

    /// New core voltage while the rail is on.
    pub async fn set_core_voltage(&mut self, mv: u16) -> Result<(), PowerError> {
        self.tps
            .set_vout_mv(u32::from(mv))
            .await
            .map_err(regulator_error)
    }

    /// CLEAR_FAULTS on the regulator, so that a latched status can show health again.
    pub async fn clear_regulator_faults(&mut self) -> Result<(), PowerError> {
        self.tps.clear_faults().await.map_err(regulator_error)
    }
}

/// A bus-clear pin could not be driven or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinError;

/// Frees an I²C bus a device holds (NXP UM10204 §3.1.16, "Bus clear"): a slave stuck mid-byte
/// keeps SDA low; up to nine SCL pulses let it shift out its byte and release SDA, then a STOP
/// (SDA rising while SCL is high) resets every device's bus logic. Run at boot, on the bare
/// pins (open drain), before the I²C peripheral takes them. Returns the pulses sent; a bus whose
/// SDA is already high gets only the STOP. `half_period_us` ≥ 5 keeps to 100 kHz.
pub fn clear_bus<SCL, SDA, D>(
    scl: &mut SCL,
    sda: &mut SDA,
    delay: &mut D,
    half_period_us: u32,
) -> Result<u8, PinError>
where
    SCL: OutputPin,
    SDA: OutputPin + InputPin,
    D: embedded_hal::delay::DelayNs,
{
    sda.set_high().map_err(|_| PinError)?;
    scl.set_high().map_err(|_| PinError)?;
    delay.delay_us(half_period_us);
    let mut pulses = 0;
    while pulses < 9 && sda.is_low().map_err(|_| PinError)? {
        scl.set_low().map_err(|_| PinError)?;
        delay.delay_us(half_period_us);
        scl.set_high().map_err(|_| PinError)?;
        delay.delay_us(half_period_us);
        pulses += 1;
    }
    // STOP: SDA low while SCL is low, SCL up, then SDA up.
    scl.set_low().map_err(|_| PinError)?;
    delay.delay_us(half_period_us);
    sda.set_low().map_err(|_| PinError)?;
    delay.delay_us(half_period_us);
    scl.set_high().map_err(|_| PinError)?;
    delay.delay_us(half_period_us);
    sda.set_high().map_err(|_| PinError)?;
    delay.delay_us(half_period_us);
    Ok(pulses)
}
