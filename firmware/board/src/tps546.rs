//! TI TPS546D24A synchronous buck converter (ASIC core rail) over PMBus ([`crate::pmbus`]).
//!
//! Sources: TI's TPS546D24S datasheet (SLUSF26, the same command set as the D24A) §7.6, PMBus
//! 1.3 Part II, and docs/bm13xx-protocol.md §9.3 (ESP-Miner's and mujina's register values).
//! VOUT_MODE bit 7 is REL (relative format for the margin and OV/UV limits), bits 6..5 the
//! read-only format (00 = linear), bits 4..0 the exponent; VOUT_MAX and VOUT_MIN are
//! "ULINEAR16, absolute only"; SLINEAR11 limits such as VIN_ON are rounded down to the hardware
//! steps (VIN_ON: 0.25 V).
//!
//! Safety model: the board's power-enable GPIO drives the regulator's CONTROL pin, and
//! [`ON_OFF_CONFIG`] makes that pin authoritative: the output is on only while OPERATION says on
//! **and** the pin is high, so a low pin (the MCU driving it low, or the board's pull-down while
//! the MCU is in reset, hung or panicking) cuts the rail whatever the I²C bus is doing. OV and UV
//! faults latch the output off in the regulator itself.
//!
//! ```text
//! new(i2c, DEFAULT_ADDRESS) -> init(&Config::for_core(..)) -> set_vout_mv(1150) -> enable(true)
//! ```

use embedded_hal_async::i2c::I2c;

use crate::pmbus::{
    Device, Status, StatusWord, bits, commands, fault_response, linear11_to_milli,
    milli_to_linear11, mv_to_ulinear16, ulinear16_to_mv,
};

/// 7-bit PMBus address of the TPS546 on Bitaxe boards.
pub const DEFAULT_ADDRESS: u8 = 0x24;

/// ON_OFF_CONFIG written by [`Tps546::init`] and [`Tps546::force_off`]: PU | CMD | CP |
/// POLARITY | DELAY = 0x1F (SLUSF26 §7.6.3). PU: act on the pin and command rather than
/// whenever input is present; CMD: obey OPERATION; CP: also obey the CONTROL pin; POLARITY:
/// pin active high; DELAY: a pin turn-off stops conversion at once (no TOFF_DELAY / TOFF_FALL).
/// ESP-Miner writes CP clear (0x18 / 0x1B), which lets the rail outlive the MCU.
pub const ON_OFF_CONFIG: u8 = bits::ON_OFF_PU
    | bits::ON_OFF_CMD
    | bits::ON_OFF_CP
    | bits::ON_OFF_POLARITY
    | bits::ON_OFF_DELAY;

/// IC_DEVICE_ID payloads accepted by [`Tps546::init`] (doc §9.3): "TIT" 'm' 0x24 'A' = TPS546D24A,
/// "TIT" 'm' 0x24 'b' = TPS546D24S, and "TIT" 'k' 0x24 'A' (labelled D24A by mujina, B24A by ESP).
pub const DEVICE_IDS: [[u8; 6]; 3] = [
    [0x54, 0x49, 0x54, 0x6D, 0x24, 0x41],
    [0x54, 0x49, 0x54, 0x6D, 0x24, 0x62],
    [0x54, 0x49, 0x54, 0x6B, 0x24, 0x41],
];

/// Lowest and highest VOUT_OV_FAULT_LIMIT ratios [`Config::for_core`] picks, ‰ of VOUT_COMMAND:
/// tighter than +8 % trips on load transients; +25 % is ESP-Miner's value.
const OV_RATIO_RANGE_PERMILLE: (u32, u32) = (1_080, 1_250);
/// VOUT_UV_FAULT_LIMIT, ‰ of VOUT_COMMAND (ESP-Miner's 0.75).
const UV_RATIO_PERMILLE: u32 = 750;
/// The regulator's own over-temperature warning sits this far above the board's VR throttle
/// point, so the board's throttling acts first and the warning is a second line.
pub const OT_WARN_ABOVE_THROTTLE_C: i16 = 5;

/// Limits written by [`Tps546::init`]. Units are in the field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Input voltage at which conversion may start (VIN_ON), mV.
    pub vin_on_mv: u32,
    /// Input voltage at which conversion stops (VIN_OFF), mV; below `vin_on_mv`.
    pub vin_off_mv: u32,
    /// Highest output voltage the chip will accept (VOUT_MAX), mV.
    pub vout_max_mv: u32,
    /// Lowest output voltage the chip will accept (VOUT_MIN), mV.
    pub vout_min_mv: u32,
    /// Output over-voltage fault (VOUT_OV_FAULT_LIMIT), ‰ of VOUT_COMMAND; latches off.
    pub vout_ov_fault_permille: u32,
    /// Output under-voltage fault (VOUT_UV_FAULT_LIMIT), ‰ of VOUT_COMMAND; latches off.
    pub vout_uv_fault_permille: u32,
    /// Output over-current warning (IOUT_OC_WARN_LIMIT), mA.
    pub iout_oc_warn_ma: u32,
    /// Output over-current fault (IOUT_OC_FAULT_LIMIT), mA; at least the warning.
    pub iout_oc_fault_ma: u32,
    /// Over-temperature warning (OT_WARN_LIMIT), °C.
    pub ot_warn_c: i16,
    /// Over-temperature fault (OT_FAULT_LIMIT), °C; at least the warning.
    pub ot_fault_c: i16,
    /// Switching frequency (FREQUENCY_SWITCH), kHz.
    pub frequency_switch_khz: u16,
    /// VOUT_SCALE_LOOP, thousandths: the internal feedback divider (125, 250, 500, 1000),
    /// which must match how the board senses its output (boards/*.toml).
    pub vout_scale_loop_permille: u32,
}

impl Config {
    /// ESP-Miner's single-chip profile (Gamma/Ultra/Supra; doc §9.3): VIN_ON 4.8 V, VIN_OFF
    /// 4.5 V, VOUT 1.0..=2.0 V, OV +25 % / UV −25 % latching, IOUT OC warn 25 A / fault 30 A,
    /// OT warn 105 °C / fault 145 °C, 650 kHz. A starting point: boards use
    /// [`Config::for_core`], which narrows it to the chip.
    pub const fn single_chip() -> Self {
        Config {
            vin_on_mv: 4_800,
            // boards/src/load.rs TPS546_VIN_OFF_MV repeats this: no board file may set its
            // input minimum below it (the core would cut out with no "input low"). Change both
            // together.
            vin_off_mv: 4_500,
            vout_max_mv: 2_000,
            vout_min_mv: 1_000,
            vout_ov_fault_permille: OV_RATIO_RANGE_PERMILLE.1,
            vout_uv_fault_permille: UV_RATIO_PERMILLE,
            iout_oc_warn_ma: 25_000,
            iout_oc_fault_ma: 30_000,
            ot_warn_c: 105,
            ot_fault_c: 145,
            frequency_switch_khz: 650,
            vout_scale_loop_permille: 250,
        }
    }

    /// The single-chip profile narrowed to a board: VOUT_MIN/VOUT_MAX = the chip's core-voltage
    /// envelope (boards/asics.toml, e.g. BM1370 1000..=1300 mV), so no VOUT_COMMAND can leave it;
    /// the OV fault ratio = envelope maximum / the board's core voltage (1300 / 1150 → +13 %),
    /// kept within +8..+25 %, so that at the board's voltage the regulator trips where the chip's
    /// envelope ends; the OT warning [`OT_WARN_ABOVE_THROTTLE_C`] above the board's VR throttle
    /// point (the fault stays at 145 °C, or above the warning).
    pub const fn for_core(envelope_mv: (u32, u32), core_mv: u32, vr_throttle_c: i16) -> Self {
        let base = Config::single_chip();
        let (min_mv, max_mv) = envelope_mv;
        // Rounded up: the trip never lands below the envelope at the board's voltage. A zero
        // core voltage (never valid) gives the widest ratio.
        let ov = max_mv
            .saturating_mul(1000)
            .div_ceil(if core_mv > 0 { core_mv } else { 1 });
        let ov = if ov < OV_RATIO_RANGE_PERMILLE.0 {
            OV_RATIO_RANGE_PERMILLE.0
        } else if ov > OV_RATIO_RANGE_PERMILLE.1 {
            OV_RATIO_RANGE_PERMILLE.1
        } else {
            ov
        };
        let ot_warn = vr_throttle_c.saturating_add(OT_WARN_ABOVE_THROTTLE_C);
        Config {
            vout_min_mv: min_mv,
            vout_max_mv: max_mv,
            vout_ov_fault_permille: ov,
            ot_warn_c: ot_warn,
            ot_fault_c: if base.ot_fault_c > ot_warn {
                base.ot_fault_c
            } else {
                ot_warn
            },
            ..base
        }
    }

    /// Checks the ordering of the limits and that each fits its encoding; the name of the first
    /// bad field otherwise.
    pub const fn validate(&self) -> Result<(), &'static str> {
        if self.vin_on_mv > i32::MAX as u32 {
            return Err("vin_on_mv");
        }
        if self.vin_off_mv >= self.vin_on_mv {
            return Err("vin_off_mv");
        }
        if self.vout_min_mv > self.vout_max_mv {
            return Err("vout_min_mv");
        }
        if self.vout_ov_fault_permille <= 1000 || self.vout_ov_fault_permille > 2000 {
            return Err("vout_ov_fault_permille");
        }
        if self.vout_uv_fault_permille >= 1000 || self.vout_uv_fault_permille < 500 {
            return Err("vout_uv_fault_permille");
        }
        if self.iout_oc_fault_ma > i32::MAX as u32 {
            return Err("iout_oc_fault_ma");
        }
        if self.iout_oc_warn_ma > self.iout_oc_fault_ma {
            return Err("iout_oc_warn_ma");
        }
        if self.ot_warn_c > self.ot_fault_c {
            return Err("ot_warn_c");
        }
        if !matches!(self.vout_scale_loop_permille, 125 | 250 | 500 | 1000) {
            return Err("vout_scale_loop_permille");
        }
        Ok(())
    }
}

/// What went wrong talking to the TPS546.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The I²C bus failed.
    I2c(E),
    /// IC_DEVICE_ID is not one of [`DEVICE_IDS`].
    WrongDevice {
        /// Block byte count the device sent (6 expected).
        count: u8,
        /// The six bytes after the count.
        id: [u8; 6],
    },
    /// VOUT_MODE is not in linear format (bits 6..5 not 00).
    UnsupportedVoutMode {
        /// VOUT_MODE read.
        found: u8,
    },
    /// A [`Config`] field is out of order or does not fit its encoding.
    InvalidConfig {
        /// Name of the field.
        field: &'static str,
    },
    /// [`Tps546::init`] has not completed.
    NotInitialized,
    /// [`Tps546::enable`]`(true)` before any [`Tps546::set_vout_mv`] since init.
    VoutNotSet,
    /// Requested output voltage outside the configured VOUT_MIN..=VOUT_MAX.
    OutOfRange {
        /// Requested, mV.
        mv: u32,
        /// Configured minimum, mV.
        min_mv: u32,
        /// Configured maximum, mV.
        max_mv: u32,
    },
    /// OPERATION read back differs from what was written.
    OperationNotAccepted {
        /// Value written.
        commanded: u8,
        /// Value read back.
        readback: u8,
    },
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::I2c(e) => write!(f, "TPS546 I2C error: {e:?}"),
            Error::WrongDevice { count, id } => write!(
                f,
                "not a TPS546D24A/S: IC_DEVICE_ID count {count}, bytes {:02X} {:02X} {:02X} {:02X} {:02X} {:02X}",
                id[0], id[1], id[2], id[3], id[4], id[5]
            ),
            Error::UnsupportedVoutMode { found } => {
                write!(f, "TPS546 VOUT_MODE 0x{found:02X} is not linear format")
            }
            Error::InvalidConfig { field } => write!(f, "TPS546 config field {field} is invalid"),
            Error::NotInitialized => f.write_str("TPS546 not initialised"),
            Error::VoutNotSet => f.write_str("TPS546 output enabled before setting VOUT"),
            Error::OutOfRange { mv, min_mv, max_mv } => write!(
                f,
                "TPS546 output {mv} mV outside the configured {min_mv}..={max_mv} mV"
            ),
            Error::OperationNotAccepted {
                commanded,
                readback,
            } => write!(
                f,
                "TPS546 OPERATION reads back 0x{readback:02X} after writing 0x{commanded:02X}"
            ),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for Error<E> {}

/// TPS546 driver; owns the bus until [`Tps546::destroy`].
#[derive(Debug)]
pub struct Tps546<I2C> {
    bus: Device<I2C>,
    /// VOUT_MODE as last read.
    vout_mode: Option<u8>,
    /// (VOUT_MIN, VOUT_MAX) in mV, set when init completes.
    vout_range_mv: Option<(u32, u32)>,
    /// VOUT_COMMAND written since init.
    vout_set: bool,
}

impl<I2C: I2c> Tps546<I2C> {
    /// A driver for the device at `address` (normally [`DEFAULT_ADDRESS`]). No bus traffic.
    pub fn new(i2c: I2C, address: u8) -> Self {
        Tps546 {
            bus: Device::new(i2c, address),
            vout_mode: None,
            vout_range_mv: None,
            vout_set: false,
        }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.bus.destroy()
    }

    /// The cached VOUT_MODE (`None` until read by [`Tps546::init`] or a VOUT read).
    pub fn vout_mode(&self) -> Option<u8> {
        self.vout_mode
    }

    /// The (VOUT_MIN, VOUT_MAX) written by the last completed [`Tps546::init`], mV.
    pub fn vout_range_mv(&self) -> Option<(u32, u32)> {
        self.vout_range_mv
    }

    /// At boot, before anything else on the bus: OPERATION off, then [`ON_OFF_CONFIG`], so that
    /// a rail left on by a previous run (an MCU reset does not reset the regulator) is off and
    /// from then on follows the enable pin. Both writes are tried; the first error is returned.
    pub async fn force_off(&mut self) -> Result<(), Error<I2C::Error>> {
        let off = self
            .bus
            .write_byte(commands::OPERATION, bits::OPERATION_OFF)
            .await;
        let config = self
            .bus
            .write_byte(commands::ON_OFF_CONFIG, ON_OFF_CONFIG)
            .await;
        off.and(config).map_err(Error::I2c)
    }

    /// Identifies the chip, turns the output off and writes the limits. Transactions, in order:
    ///
    /// 1. block read IC_DEVICE_ID (0xAD): count byte + 6 bytes, one of [`DEVICE_IDS`];
    /// 2. OPERATION (0x01) = 0x00, output off;
    /// 3. ON_OFF_CONFIG (0x02) = 0x1F ([`ON_OFF_CONFIG`]: the CONTROL pin is authoritative);
    /// 4. read VOUT_MODE (0x20), must be linear; cached;
    /// 5. words VOUT_SCALE_LOOP (0x29, the board's internal divider), VIN_ON (0x35),
    ///    VIN_OFF (0x36), VOUT_MAX (0x24), VOUT_MIN (0x2B);
    /// 6. VOUT_OV_FAULT_LIMIT (0x40) word, VOUT_OV_FAULT_RESPONSE (0x41) = 0x80, then
    ///    VOUT_UV_FAULT_LIMIT (0x44) word, VOUT_UV_FAULT_RESPONSE (0x45) = 0x80: latch off
    ///    ([`fault_response::LATCH_OFF`]);
    /// 7. words IOUT_OC_WARN_LIMIT (0x4A), IOUT_OC_FAULT_LIMIT (0x46), OT_WARN_LIMIT (0x51),
    ///    OT_FAULT_LIMIT (0x4F), FREQUENCY_SWITCH (0x33);
    /// 8. CLEAR_FAULTS (0x03).
    ///
    /// VIN_ON before VIN_OFF and warnings before faults keep each pair ordered while it is
    /// rewritten from larger defaults. VOUT_MAX and VOUT_MIN are **absolute** ULINEAR16 voltages
    /// whatever the REL bit says (SLUSF26: "absolute only"). The OV and UV limits are ratios of
    /// VOUT_COMMAND when VOUT_MODE is relative (the stock 0x97), as the hardware implements them
    /// either way (SLUSF26 §7.6, VOUT_OV_FAULT_LIMIT: "the true overvoltage fault limit remains
    /// relative to the current VOUT_COMMAND"); with an absolute VOUT_MODE they are written as
    /// the ratio of VOUT_MAX (OV) and VOUT_MIN (UV). The output stays off until
    /// [`Tps546::set_vout_mv`] and [`Tps546::enable`].
    pub async fn init(&mut self, config: &Config) -> Result<(), Error<I2C::Error>> {
        self.vout_mode = None;
        self.vout_range_mv = None;
        self.vout_set = false;
        if let Err(field) = config.validate() {
            return Err(Error::InvalidConfig { field });
        }
        // validate() bounds every u32 field that gets encoded to ≤ i32::MAX mV/mA.
        let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let vin_on = milli_to_linear11(to_i32(config.vin_on_mv));
        let vin_off = milli_to_linear11(to_i32(config.vin_off_mv));
        let oc_warn = milli_to_linear11(to_i32(config.iout_oc_warn_ma));
        let oc_fault = milli_to_linear11(to_i32(config.iout_oc_fault_ma));
        let ot_warn = milli_to_linear11(i32::from(config.ot_warn_c) * 1000);
        let ot_fault = milli_to_linear11(i32::from(config.ot_fault_c) * 1000);
        let frequency = milli_to_linear11(i32::from(config.frequency_switch_khz) * 1000);

        let mut raw = [0u8; 7];
        self.bus
            .read_block(commands::IC_DEVICE_ID, &mut raw)
            .await
            .map_err(Error::I2c)?;
        let [count, id @ ..] = raw;
        if count != 6 || !DEVICE_IDS.contains(&id) {
            return Err(Error::WrongDevice { count, id });
        }

        self.write_byte(commands::OPERATION, bits::OPERATION_OFF)
            .await?;
        self.write_byte(commands::ON_OFF_CONFIG, ON_OFF_CONFIG)
            .await?;
        let mode = self.read_vout_mode().await?;
        let ulinear =
            |mv: u32, field| mv_to_ulinear16(mv, mode).ok_or(Error::InvalidConfig { field });
        let vout_max = ulinear(config.vout_max_mv, "vout_max_mv")?;
        let vout_min = ulinear(config.vout_min_mv, "vout_min_mv")?;
        // A ratio in milli-units encodes like a voltage in mV.
        let (ov, uv) = if mode & bits::VOUT_MODE_RELATIVE != 0 {
            (config.vout_ov_fault_permille, config.vout_uv_fault_permille)
        } else {
            (
                config.vout_max_mv * config.vout_ov_fault_permille / 1000,
                config.vout_min_mv * config.vout_uv_fault_permille / 1000,
            )
        };
        let ov = ulinear(ov, "vout_ov_fault_permille")?;
        let uv = ulinear(uv, "vout_uv_fault_permille")?;

        // The divider first: the limits below are voltages at the output either way, and the
        // chip only takes a new VOUT_SCALE_LOOP while it is not converting (it is off here).
        let scale = milli_to_linear11(to_i32(config.vout_scale_loop_permille));
        self.write_word(commands::VOUT_SCALE_LOOP, scale).await?;
        self.write_word(commands::VIN_ON, vin_on).await?;
        self.write_word(commands::VIN_OFF, vin_off).await?;
        self.write_word(commands::VOUT_MAX, vout_max).await?;
        self.write_word(commands::VOUT_MIN, vout_min).await?;
        self.write_word(commands::VOUT_OV_FAULT_LIMIT, ov).await?;
        self.write_byte(commands::VOUT_OV_FAULT_RESPONSE, fault_response::LATCH_OFF)
            .await?;
        self.write_word(commands::VOUT_UV_FAULT_LIMIT, uv).await?;
        self.write_byte(commands::VOUT_UV_FAULT_RESPONSE, fault_response::LATCH_OFF)
            .await?;
        self.write_word(commands::IOUT_OC_WARN_LIMIT, oc_warn)
            .await?;
        self.write_word(commands::IOUT_OC_FAULT_LIMIT, oc_fault)
            .await?;
        self.write_word(commands::OT_WARN_LIMIT, ot_warn).await?;
        self.write_word(commands::OT_FAULT_LIMIT, ot_fault).await?;
        self.write_word(commands::FREQUENCY_SWITCH, frequency)
            .await?;
        self.clear_faults().await?;

        self.vout_range_mv = Some((config.vout_min_mv, config.vout_max_mv));
        Ok(())
    }

    /// Sets VOUT_COMMAND (0x21) to `mv`, truncated to the VOUT_MODE resolution
    /// ([`mv_to_ulinear16`]). Refuses values outside the init limits ([`Error::OutOfRange`]);
    /// [`Error::NotInitialized`] before [`Tps546::init`]. One word write.
    pub async fn set_vout_mv(&mut self, mv: u32) -> Result<(), Error<I2C::Error>> {
        let (Some((min_mv, max_mv)), Some(mode)) = (self.vout_range_mv, self.vout_mode) else {
            return Err(Error::NotInitialized);
        };
        let out_of_range = Error::OutOfRange { mv, min_mv, max_mv };
        if mv < min_mv || mv > max_mv {
            return Err(out_of_range);
        }
        let raw = mv_to_ulinear16(mv, mode).ok_or(out_of_range)?;
        self.write_word(commands::VOUT_COMMAND, raw).await?;
        self.vout_set = true;
        Ok(())
    }

    /// Output on (OPERATION = 0x80) or off (0x00), then reads OPERATION back
    /// ([`Error::OperationNotAccepted`] on a mismatch). Turning on needs a completed init and a
    /// [`Tps546::set_vout_mv`] since ([`Error::NotInitialized`], [`Error::VoutNotSet`]);
    /// turning off is always attempted. With [`ON_OFF_CONFIG`] the output also needs the
    /// CONTROL pin high.
    pub async fn enable(&mut self, on: bool) -> Result<(), Error<I2C::Error>> {
        let commanded = if on {
            if self.vout_range_mv.is_none() {
                return Err(Error::NotInitialized);
            }
            if !self.vout_set {
                return Err(Error::VoutNotSet);
            }
            bits::OPERATION_ON
        } else {
            bits::OPERATION_OFF
        };
        self.write_byte(commands::OPERATION, commanded).await?;
        let readback = self.read_byte(commands::OPERATION).await?;
        if readback != commanded {
            return Err(Error::OperationNotAccepted {
                commanded,
                readback,
            });
        }
        Ok(())
    }

    /// Measured output voltage (READ_VOUT, 0x8B), mV. Reads VOUT_MODE first if not cached.
    pub async fn read_vout_mv(&mut self) -> Result<u32, Error<I2C::Error>> {
        let mode = match self.vout_mode {
            Some(mode) => mode,
            None => self.read_vout_mode().await?,
        };
        let raw = self.read_word(commands::READ_VOUT).await?;
        Ok(ulinear16_to_mv(raw, mode))
    }

    /// Measured output current (READ_IOUT, 0x8C), mA.
    pub async fn read_iout_ma(&mut self) -> Result<i32, Error<I2C::Error>> {
        let raw = self.read_word(commands::READ_IOUT).await?;
        Ok(linear11_to_milli(raw))
    }

    /// Measured input voltage (READ_VIN, 0x88), mV; a negative reading gives 0.
    pub async fn read_vin_mv(&mut self) -> Result<u32, Error<I2C::Error>> {
        let raw = self.read_word(commands::READ_VIN).await?;
        Ok(u32::try_from(linear11_to_milli(raw)).unwrap_or(0))
    }

    /// Regulator die temperature (READ_TEMPERATURE_1, 0x8D), milli-°C.
    pub async fn read_temperature_mc(&mut self) -> Result<i32, Error<I2C::Error>> {
        let raw = self.read_word(commands::READ_TEMPERATURE_1).await?;
        Ok(linear11_to_milli(raw))
    }

    /// STATUS_WORD (0x79).
    pub async fn status_word(&mut self) -> Result<StatusWord, Error<I2C::Error>> {
        Ok(StatusWord(self.read_word(commands::STATUS_WORD).await?))
    }

    /// STATUS_WORD and the STATUS_VOUT / IOUT / INPUT / TEMPERATURE bytes its summary bits
    /// point at, to tell warnings from faults ([`Status::health`]).
    pub async fn read_status(&mut self) -> Result<Status, Error<I2C::Error>> {
        self.bus.read_status().await.map_err(Error::I2c)
    }

    /// CLEAR_FAULTS (0x03, send byte): clears latched status bits (still-present faults re-assert).
    pub async fn clear_faults(&mut self) -> Result<(), Error<I2C::Error>> {
        self.bus
            .send_byte(commands::CLEAR_FAULTS)
            .await
            .map_err(Error::I2c)
    }

    async fn read_vout_mode(&mut self) -> Result<u8, Error<I2C::Error>> {
        let mode = self.read_byte(commands::VOUT_MODE).await?;
        if mode & bits::VOUT_MODE_FORMAT_MASK != 0 {
            return Err(Error::UnsupportedVoutMode { found: mode });
        }
        self.vout_mode = Some(mode);
        Ok(mode)
    }

    async fn read_byte(&mut self, command: u8) -> Result<u8, Error<I2C::Error>> {
        self.bus.read_byte(command).await.map_err(Error::I2c)
    }

    async fn read_word(&mut self, command: u8) -> Result<u16, Error<I2C::Error>> {
        self.bus.read_word(command).await.map_err(Error::I2c)
    }

    async fn write_byte(&mut self, command: u8, value: u8) -> Result<(), Error<I2C::Error>> {
        self.bus
            .write_byte(command, value)
            .await
            .map_err(Error::I2c)
    }

    async fn write_word(&mut self, command: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        self.bus
            .write_word(command, value)
            .await
            .map_err(Error::I2c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_config_makes_the_control_pin_authoritative() {
        // SLUSF26 §7.6.3: PU (4) | CMD (3) | CP (2) | POLARITY (1) | DELAY (0).
        assert_eq!(ON_OFF_CONFIG, 0x1F);
        assert_ne!(
            ON_OFF_CONFIG & bits::ON_OFF_CP,
            0,
            "CP set: the pin can cut the rail"
        );
    }

    #[test]
    fn bm1370_board_limits_come_from_the_envelope() {
        let c = Config::for_core((1_000, 1_300), 1_150, 105);
        assert_eq!((c.vout_min_mv, c.vout_max_mv), (1_000, 1_300));
        assert_eq!(c.vout_ov_fault_permille, 1_131); // 1300 / 1150 = 1.1304, rounded up
        assert_eq!(c.vout_uv_fault_permille, 750);
        assert!(c.ot_warn_c > 105, "OT warning above the VR throttle point");
        assert_eq!((c.ot_warn_c, c.ot_fault_c), (110, 145));
        assert_eq!(c.validate(), Ok(()));
        // A board at the envelope's top still gets a margin; a low one gets at most +25 %.
        assert_eq!(
            Config::for_core((1_000, 1_300), 1_300, 105).vout_ov_fault_permille,
            1_080
        );
        assert_eq!(
            Config::for_core((1_000, 1_300), 900, 105).vout_ov_fault_permille,
            1_250
        );
        assert_eq!(Config::for_core((1_000, 1_300), 1_150, 140).ot_fault_c, 145);
        assert_eq!(Config::for_core((1_000, 1_300), 1_150, 145).ot_fault_c, 150);
    }

    #[test]
    fn only_the_four_internal_dividers_are_accepted() {
        for permille in [125, 250, 500, 1000] {
            let c = Config {
                vout_scale_loop_permille: permille,
                ..Config::single_chip()
            };
            assert_eq!(c.validate(), Ok(()));
        }
        let c = Config {
            vout_scale_loop_permille: 300,
            ..Config::single_chip()
        };
        assert_eq!(c.validate(), Err("vout_scale_loop_permille"));
    }

    #[test]
    fn single_chip_config_is_valid() {
        assert_eq!(Config::single_chip().validate(), Ok(()));
        let mut c = Config::single_chip();
        c.vin_off_mv = c.vin_on_mv;
        assert_eq!(c.validate(), Err("vin_off_mv"));
        let mut c = Config::single_chip();
        c.vout_min_mv = 2_001;
        assert_eq!(c.validate(), Err("vout_min_mv"));
        let mut c = Config::single_chip();
        c.vout_ov_fault_permille = 1_000;
        assert_eq!(c.validate(), Err("vout_ov_fault_permille"));
        let mut c = Config::single_chip();
        c.vout_uv_fault_permille = 1_000;
        assert_eq!(c.validate(), Err("vout_uv_fault_permille"));
        let mut c = Config::single_chip();
        c.iout_oc_warn_ma = 30_001;
        assert_eq!(c.validate(), Err("iout_oc_warn_ma"));
        let mut c = Config::single_chip();
        c.ot_warn_c = 146;
        assert_eq!(c.validate(), Err("ot_warn_c"));
        let mut c = Config::single_chip();
        c.vin_on_mv = u32::MAX;
        assert_eq!(c.validate(), Err("vin_on_mv"));
        let mut c = Config::single_chip();
        c.iout_oc_fault_ma = u32::MAX;
        assert_eq!(c.validate(), Err("iout_oc_fault_ma"));
    }
}
