//! Microchip EMC2101 / EMC2101-R: PWM fan driver with tachometer, internal temperature sensor and
//! one external diode channel (the ASIC's diode on a Bitaxe Gamma).
//!
//! Register facts are from the Microchip EMC2101 datasheet (DS20006703; bit meanings, the
//! ideality/beta defaults and the conversion-rate codes as also transcribed in the Linux hwmon
//! emc2101 driver), cross-checked against docs/bm13xx-protocol.md §9.2 (ESP-Miner and mujina
//! use the same registers and values).
//!
//! ```text
//! new(i2c, DEFAULT_ADDRESS) -> init(&Config) -> set_fan(Percent) / fan_rpm() / *_temperature_mc()
//! ```
//!
//! [`Emc2101::init`] leaves the fan setting register alone; the caller sets a duty right after it.

use embedded_hal_async::i2c::I2c;

/// 7-bit I²C address of the EMC2101 (fixed; the EMC2101-R answers at the same address).
pub const DEFAULT_ADDRESS: u8 = 0x4C;

/// Register addresses and register values (datasheet register map, §6).
pub mod regs {
    /// Internal diode temperature, whole °C, two's complement (read-only).
    pub const INTERNAL_TEMP: u8 = 0x00;
    /// External diode temperature, high byte: whole °C, two's complement (read-only).
    pub const EXTERNAL_TEMP_HIGH: u8 = 0x01;
    /// Status register (read-only).
    pub const STATUS: u8 = 0x02;
    /// Configuration register (also mirrored at 0x09).
    pub const CONFIG: u8 = 0x03;
    /// Conversion rate register (also mirrored at 0x0A).
    pub const CONVERSION_RATE: u8 = 0x04;
    /// External diode temperature, low byte: bits 7..5 are 0.5, 0.25 and 0.125 °C.
    pub const EXTERNAL_TEMP_LOW: u8 = 0x10;
    /// External diode ideality factor.
    pub const IDEALITY: u8 = 0x17;
    /// External diode beta compensation.
    pub const BETA: u8 = 0x18;
    /// Tachometer count, low byte. Read it before [`TACH_MSB`].
    pub const TACH_LSB: u8 = 0x46;
    /// Tachometer count, high byte.
    pub const TACH_MSB: u8 = 0x47;
    /// Fan configuration register.
    pub const FAN_CONFIG: u8 = 0x4A;
    /// Fan setting (duty), 0..=63 when the look-up table is disabled.
    pub const FAN_SETTING: u8 = 0x4C;
    /// PWM frequency register.
    pub const PWM_FREQUENCY: u8 = 0x4D;
    /// PWM frequency divide register.
    pub const PWM_DIVIDE: u8 = 0x4E;
    /// Product ID (read-only).
    pub const PRODUCT_ID: u8 = 0xFD;
    /// Manufacturer ID (read-only).
    pub const MANUFACTURER_ID: u8 = 0xFE;
    /// Silicon revision (read-only).
    pub const REVISION: u8 = 0xFF;

    /// CONFIG bit 2 (ALT_TCH): the ALERT#/TACH pin works as the tachometer input.
    pub const CONFIG_ALT_TCH: u8 = 1 << 2;

    /// FAN_CONFIG bit 5: the fan is driven from [`FAN_SETTING`], not the look-up table.
    pub const FAN_CONFIG_PROG: u8 = 1 << 5;
    /// FAN_CONFIG bits 1..0: tachometer mode (both set as on Bitaxe boards).
    pub const FAN_CONFIG_TACH_MODE: u8 = 0b11;
    /// FAN_CONFIG value every Bitaxe firmware writes (doc §9.2): PROG | TACH mode 11.
    pub const FAN_CONFIG_VALUE: u8 = FAN_CONFIG_PROG | FAN_CONFIG_TACH_MODE;

    /// CONVERSION_RATE code for one conversion per second (codes 0..=9 are 1/16 Hz..32 Hz,
    /// doubling per step; power-on default 0x08 = 16 Hz).
    pub const CONVERSION_RATE_1_HZ: u8 = 0x04;

    /// Largest FAN_SETTING value (6 bits): 100 % duty.
    pub const FAN_SETTING_MAX: u8 = 0x3F;

    /// IDEALITY power-on default, 0x12 = 1.0080.
    pub const IDEALITY_DEFAULT: u8 = 0x12;
    /// Largest valid IDEALITY code (6-bit field).
    pub const IDEALITY_MAX: u8 = 0x3F;
    /// BETA power-on default, 0x08 = automatic beta detection.
    pub const BETA_AUTO: u8 = 0x08;
    /// Largest valid BETA code (4-bit field).
    pub const BETA_MAX: u8 = 0x0F;

    /// PRODUCT_ID of the EMC2101.
    pub const PRODUCT_ID_EMC2101: u8 = 0x16;
    /// PRODUCT_ID of the EMC2101-R.
    pub const PRODUCT_ID_EMC2101_R: u8 = 0x28;
    /// MANUFACTURER_ID of SMSC / Microchip.
    pub const MANUFACTURER_ID_MICROCHIP: u8 = 0x5D;

    /// 11-bit external reading meaning "diode open" (0x7F high, 0b000 fraction).
    pub const EXTERNAL_OPEN: u16 = 0x3F8;
    /// 11-bit external reading meaning "diode shorted" (0x7F high, 0b111 fraction).
    pub const EXTERNAL_SHORT: u16 = 0x3FF;

    /// RPM = TACH_RPM_NUMERATOR / tach count (datasheet §6.14).
    pub const TACH_RPM_NUMERATOR: u32 = 5_400_000;
}

/// A duty cycle in percent, 0..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u8);

impl Percent {
    /// 0 %.
    pub const ZERO: Percent = Percent(0);
    /// 100 %.
    pub const FULL: Percent = Percent(100);

    /// `Some` when `value` is at most 100.
    pub const fn new(value: u8) -> Option<Self> {
        if value <= 100 {
            Some(Percent(value))
        } else {
            None
        }
    }

    /// `value` limited to 100.
    pub const fn saturating(value: u8) -> Self {
        if value <= 100 {
            Percent(value)
        } else {
            Percent(100)
        }
    }

    /// The percentage, 0..=100.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Diode settings written by [`Emc2101::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// IDEALITY register code (0..=0x3F; 0x12 = 1.0080).
    pub ideality: u8,
    /// BETA register code (0..=0x0F; 0x08 = automatic).
    pub beta: u8,
}

impl Default for Config {
    /// The datasheet power-on values: ideality 0x12 (1.0080), beta 0x08 (automatic).
    fn default() -> Self {
        Config {
            ideality: regs::IDEALITY_DEFAULT,
            beta: regs::BETA_AUTO,
        }
    }
}

impl Config {
    /// Bitaxe Gamma (600 series): the external channel reads the BM1370's diode; ESP-Miner
    /// writes ideality 0x24 and beta 0x00 (doc §9.2).
    pub const fn bitaxe_gamma() -> Self {
        Config {
            ideality: 0x24,
            beta: 0x00,
        }
    }
}

/// Why the external diode has no temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorFault {
    /// The diode is open (reading 0x3F8).
    Open,
    /// The diode is shorted (reading 0x3FF).
    Short,
}

impl core::fmt::Display for SensorFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SensorFault::Open => f.write_str("external diode open"),
            SensorFault::Short => f.write_str("external diode shorted"),
        }
    }
}

/// What went wrong talking to the EMC2101.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The I²C bus failed.
    I2c(E),
    /// Something else answers at the address.
    WrongDevice {
        /// PRODUCT_ID read (0x16 or 0x28 expected).
        product_id: u8,
        /// MANUFACTURER_ID read (0x5D expected).
        manufacturer_id: u8,
    },
    /// A [`Config`] field does not fit its register.
    InvalidConfig {
        /// Ideality code given.
        ideality: u8,
        /// Beta code given.
        beta: u8,
    },
    /// The external diode is open (disconnected, or the ASIC is unpowered).
    SensorOpen,
    /// The external diode is shorted.
    SensorShort,
}

impl<E> From<SensorFault> for Error<E> {
    fn from(fault: SensorFault) -> Self {
        match fault {
            SensorFault::Open => Error::SensorOpen,
            SensorFault::Short => Error::SensorShort,
        }
    }
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::I2c(e) => write!(f, "EMC2101 I2C error: {e:?}"),
            Error::WrongDevice {
                product_id,
                manufacturer_id,
            } => write!(
                f,
                "not an EMC2101: product id 0x{product_id:02X} (want 0x16 or 0x28), manufacturer id 0x{manufacturer_id:02X} (want 0x5D)"
            ),
            Error::InvalidConfig { ideality, beta } => write!(
                f,
                "EMC2101 config out of range: ideality 0x{ideality:02X} (max 0x3F), beta 0x{beta:02X} (max 0x0F)"
            ),
            Error::SensorOpen => f.write_str("EMC2101 external diode open"),
            Error::SensorShort => f.write_str("EMC2101 external diode shorted"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for Error<E> {}

/// FAN_SETTING code for a duty: `duty · 63 / 100`, rounded to nearest (0 % → 0, 100 % → 63).
pub const fn fan_setting(duty: Percent) -> u8 {
    // duty ≤ 100, so the product is at most 6,350 + 50.
    let scaled = (duty.0 as u16) * (regs::FAN_SETTING_MAX as u16) + 50;
    (scaled / 100) as u8
}

/// Fan speed from a tachometer count; `None` when the fan is stopped (count 0 or 0xFFFF).
pub const fn rpm_from_tach(count: u16) -> Option<u32> {
    if count == 0 || count == u16::MAX {
        None
    } else {
        Some(regs::TACH_RPM_NUMERATOR / count as u32)
    }
}

/// Internal temperature register (whole °C, two's complement) to milli-°C.
pub const fn decode_internal(raw: u8) -> i32 {
    (raw as i8) as i32 * 1000
}

/// External temperature from its high byte (register 0x01) and low byte (register 0x10):
/// an 11-bit two's complement value in 0.125 °C steps, in milli-°C; the diode fault codes
/// 0x3F8 (open) and 0x3FF (short) give a [`SensorFault`].
pub const fn decode_external(high: u8, low: u8) -> Result<i32, SensorFault> {
    let fraction = low >> 5;
    let code = ((high as u16) << 3) | fraction as u16;
    if code == regs::EXTERNAL_OPEN {
        return Err(SensorFault::Open);
    }
    if code == regs::EXTERNAL_SHORT {
        return Err(SensorFault::Short);
    }
    // The high byte carries the sign; the fraction bits add a positive 0..0.875 °C.
    Ok((high as i8) as i32 * 1000 + fraction as i32 * 125)
}

/// EMC2101 driver; owns the bus until [`Emc2101::destroy`].
#[derive(Debug)]
pub struct Emc2101<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Emc2101<I2C> {
    /// A driver for the device at `address` (normally [`DEFAULT_ADDRESS`]). No bus traffic.
    pub fn new(i2c: I2C, address: u8) -> Self {
        Emc2101 { i2c, address }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// Checks the IDs, then configures the chip. Transactions, in order:
    ///
    /// 1. read PRODUCT_ID (0xFD), read MANUFACTURER_ID (0xFE) → [`Error::WrongDevice`];
    /// 2. read CONFIG (0x03), write it back with ALT_TCH (bit 2) set: the pin is the tach input;
    /// 3. write FAN_CONFIG (0x4A) = 0x23: fan driven by FAN_SETTING, tach mode 11;
    /// 4. write IDEALITY (0x17) and BETA (0x18) from `config`;
    /// 5. write CONVERSION_RATE (0x04) = 0x04 (1 Hz, enough for a 1 s control loop).
    ///
    /// `config` is checked before any bus traffic ([`Error::InvalidConfig`]).
    pub async fn init(&mut self, config: &Config) -> Result<(), Error<I2C::Error>> {
        if config.ideality > regs::IDEALITY_MAX || config.beta > regs::BETA_MAX {
            return Err(Error::InvalidConfig {
                ideality: config.ideality,
                beta: config.beta,
            });
        }
        let product_id = self.read_reg(regs::PRODUCT_ID).await?;
        let manufacturer_id = self.read_reg(regs::MANUFACTURER_ID).await?;
        let known_product =
            product_id == regs::PRODUCT_ID_EMC2101 || product_id == regs::PRODUCT_ID_EMC2101_R;
        if !known_product || manufacturer_id != regs::MANUFACTURER_ID_MICROCHIP {
            return Err(Error::WrongDevice {
                product_id,
                manufacturer_id,
            });
        }
        let cfg = self.read_reg(regs::CONFIG).await?;
        self.write_reg(regs::CONFIG, cfg | regs::CONFIG_ALT_TCH)
            .await?;
        self.write_reg(regs::FAN_CONFIG, regs::FAN_CONFIG_VALUE)
            .await?;
        self.write_reg(regs::IDEALITY, config.ideality).await?;
        self.write_reg(regs::BETA, config.beta).await?;
        self.write_reg(regs::CONVERSION_RATE, regs::CONVERSION_RATE_1_HZ)
            .await
    }

    /// Sets the fan duty: one write of [`fan_setting`]`(duty)` to FAN_SETTING (0x4C).
    pub async fn set_fan(&mut self, duty: Percent) -> Result<(), Error<I2C::Error>> {
        self.write_reg(regs::FAN_SETTING, fan_setting(duty)).await
    }

    /// Fan speed; `Ok(None)` when the fan is stopped. Reads TACH_LSB (0x46) then TACH_MSB (0x47),
    /// low byte first so the low-byte read latches the high byte (the order the Linux hwmon
    /// emc2101 driver also uses).
    pub async fn fan_rpm(&mut self) -> Result<Option<u32>, Error<I2C::Error>> {
        let lsb = self.read_reg(regs::TACH_LSB).await?;
        let msb = self.read_reg(regs::TACH_MSB).await?;
        Ok(rpm_from_tach(u16::from_be_bytes([msb, lsb])))
    }

    /// Internal (die) temperature in milli-°C, 1 °C resolution. One read of register 0x00.
    pub async fn internal_temperature_mc(&mut self) -> Result<i32, Error<I2C::Error>> {
        let raw = self.read_reg(regs::INTERNAL_TEMP).await?;
        Ok(decode_internal(raw))
    }

    /// External diode temperature in milli-°C, 0.125 °C resolution. Reads the high byte (0x01)
    /// then the low byte (0x10): SMSC/Microchip sensors copy the low byte into a shadow
    /// register when the high byte is read, so the pair is coherent.
    /// A faulty diode gives [`Error::SensorOpen`] or [`Error::SensorShort`].
    pub async fn external_temperature_mc(&mut self) -> Result<i32, Error<I2C::Error>> {
        let high = self.read_reg(regs::EXTERNAL_TEMP_HIGH).await?;
        let low = self.read_reg(regs::EXTERNAL_TEMP_LOW).await?;
        decode_external(high, low).map_err(Error::from)
    }

    async fn read_reg(&mut self, reg: u8) -> Result<u8, Error<I2C::Error>> {
        let mut buf = [0u8; 1];
        self.i2c
            .write_read(self.address, &[reg], &mut buf)
            .await
            .map_err(Error::I2c)?;
        let [value] = buf;
        Ok(value)
    }

    async fn write_reg(&mut self, reg: u8, value: u8) -> Result<(), Error<I2C::Error>> {
        self.i2c
            .write(self.address, &[reg, value])
            .await
            .map_err(Error::I2c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_accepts_0_to_100_only() {
        for v in 0..=u8::MAX {
            assert_eq!(Percent::new(v).is_some(), v <= 100, "{v}");
            assert_eq!(Percent::saturating(v).get(), v.min(100));
        }
        assert_eq!(Percent::new(100), Some(Percent::FULL));
        assert_eq!(Percent::new(0), Some(Percent::ZERO));
    }

    #[test]
    fn fan_setting_every_percent() {
        for v in 0..=100u8 {
            let duty = Percent::new(v).unwrap();
            let expected = (f64::from(v) * 63.0 / 100.0).round() as u8;
            assert_eq!(fan_setting(duty), expected, "{v} %");
            assert!(fan_setting(duty) <= regs::FAN_SETTING_MAX);
        }
        assert_eq!(fan_setting(Percent::ZERO), 0);
        assert_eq!(fan_setting(Percent::FULL), 63);
        assert_eq!(fan_setting(Percent::new(50).unwrap()), 32); // 31.5 rounds up
        assert_eq!(fan_setting(Percent::new(25).unwrap()), 16); // 15.75
    }

    #[test]
    fn fan_setting_is_monotonic() {
        for v in 1..=100u8 {
            let lo = fan_setting(Percent::new(v - 1).unwrap());
            let hi = fan_setting(Percent::new(v).unwrap());
            assert!(hi >= lo && hi - lo <= 1, "{v}");
        }
    }

    #[test]
    fn rpm_every_count() {
        for count in 0..=u16::MAX {
            let rpm = rpm_from_tach(count);
            match count {
                0 | 0xFFFF => assert_eq!(rpm, None),
                c => assert_eq!(rpm, Some(5_400_000 / u32::from(c))),
            }
        }
        assert_eq!(rpm_from_tach(1), Some(5_400_000));
        assert_eq!(rpm_from_tach(0xFFFE), Some(82));
        assert_eq!(rpm_from_tach(1800), Some(3000));
    }

    #[test]
    fn internal_every_byte() {
        for raw in 0..=u8::MAX {
            assert_eq!(decode_internal(raw), i32::from(raw as i8) * 1000);
        }
        assert_eq!(decode_internal(0x19), 25_000);
        assert_eq!(decode_internal(0xFF), -1_000);
        assert_eq!(decode_internal(0x80), -128_000);
    }

    #[test]
    fn external_every_code() {
        for high in 0..=u8::MAX {
            for low in 0..=u8::MAX {
                let code = (u16::from(high) << 3) | u16::from(low >> 5);
                let got = decode_external(high, low);
                match code {
                    0x3F8 => assert_eq!(got, Err(SensorFault::Open)),
                    0x3FF => assert_eq!(got, Err(SensorFault::Short)),
                    _ => {
                        // 11-bit two's complement, 0.125 °C per LSB.
                        let signed = if code >= 0x400 {
                            i32::from(code) - 0x800
                        } else {
                            i32::from(code)
                        };
                        assert_eq!(got, Ok(signed * 125), "{high:02X} {low:02X}");
                    }
                }
            }
        }
    }

    #[test]
    fn external_examples() {
        assert_eq!(decode_external(0x00, 0x00), Ok(0));
        assert_eq!(decode_external(0x32, 0x20), Ok(50_125));
        assert_eq!(decode_external(0x3C, 0xE0), Ok(60_875));
        assert_eq!(decode_external(0xFF, 0xE0), Ok(-125));
        assert_eq!(decode_external(0xC0, 0x00), Ok(-64_000));
        assert_eq!(decode_external(0x7F, 0x20), Ok(127_125));
        assert_eq!(decode_external(0x7F, 0xC0), Ok(127_750));
        // Low bits 4..0 are unused.
        assert_eq!(decode_external(0x32, 0x3F), Ok(50_125));
        assert_eq!(decode_external(0x7F, 0x00), Err(SensorFault::Open));
        assert_eq!(decode_external(0x7F, 0x1F), Err(SensorFault::Open));
        assert_eq!(decode_external(0x7F, 0xE0), Err(SensorFault::Short));
        assert_eq!(decode_external(0x7F, 0xFF), Err(SensorFault::Short));
    }

    #[test]
    fn configs() {
        assert_eq!(
            Config::default(),
            Config {
                ideality: 0x12,
                beta: 0x08
            }
        );
        assert_eq!(
            Config::bitaxe_gamma(),
            Config {
                ideality: 0x24,
                beta: 0x00
            }
        );
    }

    #[test]
    fn sensor_fault_maps_to_error() {
        assert_eq!(Error::<()>::from(SensorFault::Open), Error::SensorOpen);
        assert_eq!(Error::<()>::from(SensorFault::Short), Error::SensorShort);
    }
}
