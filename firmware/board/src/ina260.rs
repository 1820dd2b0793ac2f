//! TI INA260: input voltage, current and power monitor with an integrated 2 mΩ shunt.
//!
//! Sources: TI INA260 datasheet (SBOS656) §8.6 register map; scaling as in docs/bm13xx-protocol.md
//! §9.4. Registers are 16-bit, **big-endian** on the wire: reads are
//! `write_read(addr, &[reg], &mut [msb, lsb])`, writes `write(addr, &[reg, msb, lsb])`.
//!
//! ```text
//! new(i2c, DEFAULT_ADDRESS) -> init() -> voltage_mv() / current_ma() / power_mw()
//! ```

use embedded_hal_async::i2c::I2c;

/// 7-bit I²C address with A0 and A1 tied to GND.
pub const DEFAULT_ADDRESS: u8 = 0x40;

/// Register addresses and values.
pub mod regs {
    /// Configuration (read/write).
    pub const CONFIG: u8 = 0x00;
    /// Current, two's complement, 1.25 mA per LSB.
    pub const CURRENT: u8 = 0x01;
    /// Bus voltage, unsigned, 1.25 mV per LSB.
    pub const BUS_VOLTAGE: u8 = 0x02;
    /// Power, unsigned, 10 mW per LSB.
    pub const POWER: u8 = 0x03;
    /// Mask/Enable (alert configuration).
    pub const MASK_ENABLE: u8 = 0x06;
    /// Alert limit.
    pub const ALERT_LIMIT: u8 = 0x07;
    /// Manufacturer ID (read-only).
    pub const MANUFACTURER_ID: u8 = 0xFE;
    /// Die ID (read-only): bits 15..4 device id, bits 3..0 revision.
    pub const DIE_ID: u8 = 0xFF;

    /// MANUFACTURER_ID value: "TI" in ASCII.
    pub const MANUFACTURER_ID_TI: u16 = 0x5449;
    /// DIE_ID bits 15..4 of an INA260 (the revision nibble is not checked).
    pub const DIE_ID_INA260: u16 = 0x227;
    /// Shift from DIE_ID to its device-id field.
    pub const DIE_ID_SHIFT: u32 = 4;

    /// CONFIG bit 15: reset all registers (self-clearing).
    pub const CONFIG_RESET: u16 = 1 << 15;
    /// CONFIG bits 14..12 as they read after reset (0b110); written back unchanged.
    pub const CONFIG_RESERVED: u16 = 0b110 << 12;
    /// Shift of the 3-bit averaging field (bits 11..9).
    pub const CONFIG_AVG_SHIFT: u32 = 9;
    /// Shift of the 3-bit bus-voltage conversion-time field (bits 8..6).
    pub const CONFIG_VBUSCT_SHIFT: u32 = 6;
    /// Shift of the 3-bit current conversion-time field (bits 5..3).
    pub const CONFIG_ISHCT_SHIFT: u32 = 3;
    /// AVG code for 256 samples (codes 0..=7: 1, 4, 16, 64, 128, 256, 512, 1024).
    pub const AVG_256: u16 = 0b101;
    /// Conversion-time code for 1.1 ms (codes 0..=7: 140, 204, 332, 588 µs, 1.1, 2.116,
    /// 4.156, 8.244 ms).
    pub const CT_1_1_MS: u16 = 0b100;
    /// MODE bits 2..0: current and bus voltage, continuous.
    pub const MODE_CONTINUOUS_BOTH: u16 = 0b111;
    /// CONFIG written by [`init`](super::Ina260::init) = 0x6B27: 256 averages of 1.1 ms
    /// current + 1.1 ms voltage conversions, continuous. Each register update then averages
    /// 256 × 2.2 ms ≈ 563 ms, under one 1 s telemetry period, so every poll sees a fresh value
    /// with the switching ripple averaged out. (Power-on default 0x6127: no averaging.)
    pub const CONFIG_TELEMETRY: u16 = CONFIG_RESERVED
        | (AVG_256 << CONFIG_AVG_SHIFT)
        | (CT_1_1_MS << CONFIG_VBUSCT_SHIFT)
        | (CT_1_1_MS << CONFIG_ISHCT_SHIFT)
        | MODE_CONTINUOUS_BOTH;
}

/// What went wrong talking to the INA260.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The I²C bus failed.
    I2c(E),
    /// Something else answers at the address.
    WrongDevice {
        /// MANUFACTURER_ID read (0x5449 expected).
        manufacturer_id: u16,
        /// DIE_ID read (0x227x expected).
        die_id: u16,
    },
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::I2c(e) => write!(f, "INA260 I2C error: {e:?}"),
            Error::WrongDevice {
                manufacturer_id,
                die_id,
            } => write!(
                f,
                "not an INA260: manufacturer id 0x{manufacturer_id:04X} (want 0x5449), die id 0x{die_id:04X} (want 0x227x)"
            ),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for Error<E> {}

/// Bus voltage register to mV (1.25 mV per LSB), rounded to nearest.
pub const fn voltage_mv_from_raw(raw: u16) -> u32 {
    (raw as u32 * 5 + 2) / 4
}

/// Current register (two's complement, 1.25 mA per LSB) to mA, rounded to nearest (halves
/// away from zero). Positive = current flowing IN+ → IN−.
pub const fn current_ma_from_raw(raw: u16) -> i32 {
    let scaled = (raw as i16) as i32 * 5;
    if scaled >= 0 {
        (scaled + 2) / 4
    } else {
        (scaled - 2) / 4
    }
}

/// Power register to mW (10 mW per LSB).
pub const fn power_mw_from_raw(raw: u16) -> u32 {
    raw as u32 * 10
}

/// INA260 driver; owns the bus until [`Ina260::destroy`].
#[derive(Debug)]
pub struct Ina260<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Ina260<I2C> {
    /// A driver for the device at `address` (normally [`DEFAULT_ADDRESS`]). No bus traffic.
    pub fn new(i2c: I2C, address: u8) -> Self {
        Ina260 { i2c, address }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// Checks the IDs and sets the averaging. Transactions, in order:
    ///
    /// 1. read MANUFACTURER_ID (0xFE) and DIE_ID (0xFF) → [`Error::WrongDevice`] unless 0x5449
    ///    and 0x227 in DIE_ID bits 15..4;
    /// 2. write CONFIG (0x00) = [`regs::CONFIG_TELEMETRY`] (0x6B27).
    pub async fn init(&mut self) -> Result<(), Error<I2C::Error>> {
        let manufacturer_id = self.read_reg(regs::MANUFACTURER_ID).await?;
        let die_id = self.read_reg(regs::DIE_ID).await?;
        if manufacturer_id != regs::MANUFACTURER_ID_TI
            || die_id >> regs::DIE_ID_SHIFT != regs::DIE_ID_INA260
        {
            return Err(Error::WrongDevice {
                manufacturer_id,
                die_id,
            });
        }
        let [msb, lsb] = regs::CONFIG_TELEMETRY.to_be_bytes();
        self.i2c
            .write(self.address, &[regs::CONFIG, msb, lsb])
            .await
            .map_err(Error::I2c)
    }

    /// Bus voltage (register 0x02), mV.
    pub async fn voltage_mv(&mut self) -> Result<u32, Error<I2C::Error>> {
        Ok(voltage_mv_from_raw(self.read_reg(regs::BUS_VOLTAGE).await?))
    }

    /// Current (register 0x01), mA; negative when flowing IN− → IN+.
    pub async fn current_ma(&mut self) -> Result<i32, Error<I2C::Error>> {
        Ok(current_ma_from_raw(self.read_reg(regs::CURRENT).await?))
    }

    /// Power (register 0x03), mW.
    pub async fn power_mw(&mut self) -> Result<u32, Error<I2C::Error>> {
        Ok(power_mw_from_raw(self.read_reg(regs::POWER).await?))
    }

    async fn read_reg(&mut self, reg: u8) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[reg], &mut buf)
            .await
            .map_err(Error::I2c)?;
        Ok(u16::from_be_bytes(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voltage_every_code() {
        for raw in 0..=u16::MAX {
            let exact = f64::from(raw) * 1.25;
            let got = voltage_mv_from_raw(raw);
            assert!((f64::from(got) - exact).abs() <= 0.5, "{raw:04X}");
            // Exact ties (x.5) round up.
            assert_eq!(got, (exact + 0.5).floor() as u32, "{raw:04X}");
        }
        assert_eq!(voltage_mv_from_raw(0), 0);
        assert_eq!(voltage_mv_from_raw(4000), 5_000);
        assert_eq!(voltage_mv_from_raw(9600), 12_000);
        assert_eq!(voltage_mv_from_raw(1), 1); // 1.25
        assert_eq!(voltage_mv_from_raw(2), 3); // 2.5 rounds up
        assert_eq!(voltage_mv_from_raw(0xFFFF), 81_919); // 81,918.75
    }

    #[test]
    fn current_every_code() {
        for raw in 0..=u16::MAX {
            let exact = f64::from(raw as i16) * 1.25;
            let got = current_ma_from_raw(raw);
            assert_eq!(f64::from(got), exact.round(), "{raw:04X}");
        }
        assert_eq!(current_ma_from_raw(0x0000), 0);
        assert_eq!(current_ma_from_raw(0x0320), 1_000); // 800 · 1.25
        assert_eq!(current_ma_from_raw(0xFCE0), -1_000);
        assert_eq!(current_ma_from_raw(0x0002), 3); // 2.5
        assert_eq!(current_ma_from_raw(0xFFFE), -3); // -2.5
        assert_eq!(current_ma_from_raw(0x7FFF), 40_959); // 40,958.75
        assert_eq!(current_ma_from_raw(0x8000), -40_960);
    }

    #[test]
    fn power_every_code() {
        for raw in 0..=u16::MAX {
            assert_eq!(power_mw_from_raw(raw), u32::from(raw) * 10);
        }
        assert_eq!(power_mw_from_raw(1_500), 15_000);
    }

    #[test]
    fn telemetry_config_value() {
        assert_eq!(regs::CONFIG_TELEMETRY, 0x6B27);
        assert_eq!(regs::CONFIG_TELEMETRY & regs::CONFIG_RESET, 0);
    }
}
