//! TI TPS546D24A synchronous buck converter (ASIC core rail) over PMBus.
//!
//! Sources: docs/bm13xx-protocol.md §9.3 (ESP-Miner and mujina) and the PMBus 1.3 numeric
//! formats. From TI's datasheets of the same family (TPS546D24S SLUSF26, TPS546B24S SLUSF27):
//! VOUT_MODE bit 7 is REL (relative format for the margin and OV/UV limits), bits 6..5 the
//! read-only format (00 = linear), bits 4..0 the exponent (−4..−12 supported); VOUT_MAX and
//! VOUT_MIN are "ULINEAR16, absolute only"; SLINEAR11 limits such as VIN_ON accept any valid
//! encoding and are rounded down to the hardware steps (VIN_ON: 0.25 V).
//!
//! PMBus words are little-endian on the wire. Reads are `write_read(addr, &[command], buf)`;
//! writes are one `write(addr, &[command, data..])`. No PEC.
//!
//! ```text
//! new(i2c, DEFAULT_ADDRESS) -> init(&Config::single_chip()) -> set_vout_mv(1200) -> enable(true)
//! ```

use embedded_hal_async::i2c::I2c;

/// 7-bit PMBus address of the TPS546 on Bitaxe boards.
pub const DEFAULT_ADDRESS: u8 = 0x24;

/// PMBus command codes (PMBus 1.3 standard codes plus TI's IC_DEVICE_ID and MFR-specific ones).
pub mod commands {
    /// OPERATION (byte): output on/off.
    pub const OPERATION: u8 = 0x01;
    /// ON_OFF_CONFIG (byte): what turns the output on.
    pub const ON_OFF_CONFIG: u8 = 0x02;
    /// CLEAR_FAULTS (send byte).
    pub const CLEAR_FAULTS: u8 = 0x03;
    /// PHASE (byte).
    pub const PHASE: u8 = 0x04;
    /// VOUT_MODE (byte): format and exponent of output-voltage commands.
    pub const VOUT_MODE: u8 = 0x20;
    /// VOUT_COMMAND (word, ULINEAR16).
    pub const VOUT_COMMAND: u8 = 0x21;
    /// VOUT_MAX (word, ULINEAR16, absolute).
    pub const VOUT_MAX: u8 = 0x24;
    /// VOUT_SCALE_LOOP (word, SLINEAR11).
    pub const VOUT_SCALE_LOOP: u8 = 0x29;
    /// VOUT_MIN (word, ULINEAR16, absolute).
    pub const VOUT_MIN: u8 = 0x2B;
    /// FREQUENCY_SWITCH (word, SLINEAR11, kHz).
    pub const FREQUENCY_SWITCH: u8 = 0x33;
    /// VIN_ON (word, SLINEAR11, V).
    pub const VIN_ON: u8 = 0x35;
    /// VIN_OFF (word, SLINEAR11, V).
    pub const VIN_OFF: u8 = 0x36;
    /// IOUT_OC_FAULT_LIMIT (word, SLINEAR11, A).
    pub const IOUT_OC_FAULT_LIMIT: u8 = 0x46;
    /// IOUT_OC_WARN_LIMIT (word, SLINEAR11, A).
    pub const IOUT_OC_WARN_LIMIT: u8 = 0x4A;
    /// OT_FAULT_LIMIT (word, SLINEAR11, °C).
    pub const OT_FAULT_LIMIT: u8 = 0x4F;
    /// OT_WARN_LIMIT (word, SLINEAR11, °C).
    pub const OT_WARN_LIMIT: u8 = 0x51;
    /// STATUS_WORD (word).
    pub const STATUS_WORD: u8 = 0x79;
    /// STATUS_VOUT (byte).
    pub const STATUS_VOUT: u8 = 0x7A;
    /// STATUS_IOUT (byte).
    pub const STATUS_IOUT: u8 = 0x7B;
    /// STATUS_INPUT (byte).
    pub const STATUS_INPUT: u8 = 0x7C;
    /// STATUS_TEMPERATURE (byte).
    pub const STATUS_TEMPERATURE: u8 = 0x7D;
    /// STATUS_CML (byte): communication, memory, logic.
    pub const STATUS_CML: u8 = 0x7E;
    /// READ_VIN (word, SLINEAR11, V).
    pub const READ_VIN: u8 = 0x88;
    /// READ_VOUT (word, ULINEAR16 per VOUT_MODE, V).
    pub const READ_VOUT: u8 = 0x8B;
    /// READ_IOUT (word, SLINEAR11, A).
    pub const READ_IOUT: u8 = 0x8C;
    /// READ_TEMPERATURE_1 (word, SLINEAR11, °C).
    pub const READ_TEMPERATURE_1: u8 = 0x8D;
    /// MFR_ID (block).
    pub const MFR_ID: u8 = 0x99;
    /// MFR_MODEL (block).
    pub const MFR_MODEL: u8 = 0x9A;
    /// MFR_REVISION (block).
    pub const MFR_REVISION: u8 = 0x9B;
    /// IC_DEVICE_ID (block, 6 data bytes on the TPS546).
    pub const IC_DEVICE_ID: u8 = 0xAD;
    /// COMPENSATION_CONFIG (TI block).
    pub const COMPENSATION_CONFIG: u8 = 0xB1;
    /// SYNC_CONFIG (TI byte).
    pub const SYNC_CONFIG: u8 = 0xE4;
    /// STACK_CONFIG (TI word).
    pub const STACK_CONFIG: u8 = 0xEC;
}

/// Command data values and bit masks.
pub mod bits {
    /// OPERATION: output off (immediate).
    pub const OPERATION_OFF: u8 = 0x00;
    /// OPERATION: output on, no margining.
    pub const OPERATION_ON: u8 = 0x80;

    /// ON_OFF_CONFIG bit 4 (PU): power up only as bits 3..2 say, not whenever input is present.
    pub const ON_OFF_PU: u8 = 1 << 4;
    /// ON_OFF_CONFIG bit 3 (CMD): obey the OPERATION on/off bit.
    pub const ON_OFF_CMD: u8 = 1 << 3;
    /// ON_OFF_CONFIG bit 2 (CP): also require the CONTROL pin.
    pub const ON_OFF_CP: u8 = 1 << 2;
    /// ON_OFF_CONFIG bit 1 (POLARITY): CONTROL pin active high.
    pub const ON_OFF_POLARITY: u8 = 1 << 1;
    /// ON_OFF_CONFIG bit 0: turn off immediately (no TOFF_DELAY/TOFF_FALL) on a pin turn-off.
    pub const ON_OFF_DELAY: u8 = 1 << 0;
    /// What [`init`](super::Tps546::init) writes: PU | CMD | POLARITY | DELAY = 0x1B, the
    /// value ESP-Miner's config and mujina settle on. The output follows OPERATION only; the
    /// CONTROL pin is ignored (CP clear), so a glitch on it cannot drop the rail.
    pub const ON_OFF_CONFIG_OPERATION_ONLY: u8 =
        ON_OFF_PU | ON_OFF_CMD | ON_OFF_POLARITY | ON_OFF_DELAY;

    /// VOUT_MODE bit 7 (TI REL): margin and OV/UV limits are ratios of VOUT_COMMAND.
    pub const VOUT_MODE_RELATIVE: u8 = 1 << 7;
    /// VOUT_MODE bits 6..5: data format; 00 = linear, the only one this driver supports.
    pub const VOUT_MODE_FORMAT_MASK: u8 = 0b0110_0000;
    /// VOUT_MODE bits 4..0: signed exponent of ULINEAR16 values.
    pub const VOUT_MODE_EXPONENT_MASK: u8 = 0b0001_1111;

    /// STATUS_WORD bit 15: a STATUS_VOUT bit is set.
    pub const STATUS_VOUT: u16 = 1 << 15;
    /// STATUS_WORD bit 14: a STATUS_IOUT bit is set.
    pub const STATUS_IOUT: u16 = 1 << 14;
    /// STATUS_WORD bit 13: a STATUS_INPUT bit is set.
    pub const STATUS_INPUT: u16 = 1 << 13;
    /// STATUS_WORD bit 12: a STATUS_MFR_SPECIFIC bit is set.
    pub const STATUS_MFR: u16 = 1 << 12;
    /// STATUS_WORD bit 11: POWER_GOOD# (set = power is not good).
    pub const STATUS_POWER_GOOD_N: u16 = 1 << 11;
    /// STATUS_WORD bit 10: a STATUS_FANS bit is set.
    pub const STATUS_FANS: u16 = 1 << 10;
    /// STATUS_WORD bit 9: a STATUS_OTHER bit is set.
    pub const STATUS_OTHER: u16 = 1 << 9;
    /// STATUS_WORD bit 7: device busy.
    pub const STATUS_BUSY: u16 = 1 << 7;
    /// STATUS_WORD bit 6: output off.
    pub const STATUS_OFF: u16 = 1 << 6;
    /// STATUS_WORD bit 5: output over-voltage fault.
    pub const STATUS_VOUT_OV_FAULT: u16 = 1 << 5;
    /// STATUS_WORD bit 4: output over-current fault.
    pub const STATUS_IOUT_OC_FAULT: u16 = 1 << 4;
    /// STATUS_WORD bit 3: input under-voltage.
    pub const STATUS_VIN_UV: u16 = 1 << 3;
    /// STATUS_WORD bit 2: temperature warning or fault.
    pub const STATUS_TEMPERATURE: u16 = 1 << 2;
    /// STATUS_WORD bit 1: communication, memory or logic fault.
    pub const STATUS_CML: u16 = 1 << 1;
    /// STATUS_WORD bit 0: none of the above.
    pub const STATUS_NONE_OF_THE_ABOVE: u16 = 1 << 0;
    /// STATUS_WORD bits for which [`StatusWord::is_fault`](super::StatusWord::is_fault) is true.
    pub const STATUS_STOP_MASK: u16 = STATUS_VOUT
        | STATUS_IOUT
        | STATUS_VOUT_OV_FAULT
        | STATUS_IOUT_OC_FAULT
        | STATUS_VIN_UV
        | STATUS_TEMPERATURE;

    /// STATUS_VOUT bit 7: over-voltage fault.
    pub const VOUT_OV_FAULT: u8 = 0x80;
    /// STATUS_VOUT bit 6: over-voltage warning.
    pub const VOUT_OV_WARN: u8 = 0x40;
    /// STATUS_VOUT bit 5: under-voltage warning.
    pub const VOUT_UV_WARN: u8 = 0x20;
    /// STATUS_VOUT bit 4: under-voltage fault.
    pub const VOUT_UV_FAULT: u8 = 0x10;
    /// STATUS_IOUT bit 7: over-current fault.
    pub const IOUT_OC_FAULT: u8 = 0x80;
    /// STATUS_IOUT bit 5: over-current warning.
    pub const IOUT_OC_WARN: u8 = 0x20;
    /// STATUS_TEMPERATURE bit 7: over-temperature fault.
    pub const OT_FAULT: u8 = 0x80;
    /// STATUS_TEMPERATURE bit 6: over-temperature warning.
    pub const OT_WARN: u8 = 0x40;
    /// STATUS_INPUT bit 7: input over-voltage fault.
    pub const VIN_OV_FAULT: u8 = 0x80;
    /// STATUS_INPUT bit 5: input under-voltage warning.
    pub const VIN_UV_WARN: u8 = 0x20;
    /// STATUS_INPUT bit 3: unit off for insufficient input voltage.
    pub const LOW_VIN: u8 = 0x08;
}

/// IC_DEVICE_ID payloads accepted by [`Tps546::init`] (doc §9.3): "TIT" 'm' 0x24 'A' = TPS546D24A,
/// "TIT" 'm' 0x24 'b' = TPS546D24S, and "TIT" 'k' 0x24 'A' (labelled D24A by mujina, B24A by ESP).
pub const DEVICE_IDS: [[u8; 6]; 3] = [
    [0x54, 0x49, 0x54, 0x6D, 0x24, 0x41],
    [0x54, 0x49, 0x54, 0x6D, 0x24, 0x62],
    [0x54, 0x49, 0x54, 0x6B, 0x24, 0x41],
];

/// Signed 5-bit two's complement field (bits 4..0) as an exponent.
const fn exponent5(bits: u8) -> i32 {
    let e = (bits & 0x1F) as i32;
    if e >= 16 { e - 32 } else { e }
}

/// `value / 2^shift`, rounded to nearest, halves away from zero. `shift` ≤ 32.
const fn div_pow2_round(value: i64, shift: u32) -> i64 {
    let d = 1i64 << shift;
    let half = d / 2;
    if value >= 0 {
        (value + half) / d
    } else {
        (value - half) / d
    }
}

/// `value / divisor`, rounded to nearest, halves away from zero. `divisor` > 0.
const fn div_round(value: i64, divisor: i64) -> i64 {
    let half = divisor / 2;
    if value >= 0 {
        (value + half) / divisor
    } else {
        (value - half) / divisor
    }
}

const fn saturate_i32(v: i64) -> i32 {
    if v > i32::MAX as i64 {
        i32::MAX
    } else if v < i32::MIN as i64 {
        i32::MIN
    } else {
        v as i32
    }
}

/// SLINEAR11 (PMBus "linear"): bits 15..11 a 5-bit two's complement exponent N, bits 10..0 an
/// 11-bit two's complement mantissa Y; value = Y · 2^N. Returned ×1000 (milli-units), rounded to
/// nearest; saturates at the `i32` range (only reachable with N ≥ 12).
pub const fn linear11_to_milli(raw: u16) -> i32 {
    let exponent = exponent5((raw >> 11) as u8);
    let m = (raw & 0x07FF) as i64;
    let mantissa = if m >= 1024 { m - 2048 } else { m };
    let scaled = mantissa * 1000;
    if exponent >= 0 {
        // |scaled| < 2^20 and exponent ≤ 15: fits i64.
        saturate_i32(scaled << exponent)
    } else {
        saturate_i32(div_pow2_round(scaled, (-exponent) as u32))
    }
}

/// `value_milli / 1000` as SLINEAR11 with the smallest exponent (most precision) whose rounded
/// mantissa fits −1024..=1023. Zero encodes as 0x0000. Every `i32` input fits (exponent ≤ 12).
pub const fn milli_to_linear11(value_milli: i32) -> u16 {
    if value_milli == 0 {
        return 0;
    }
    let v = value_milli as i64;
    let mut exponent: i32 = -16;
    while exponent <= 15 {
        let mantissa = if exponent < 0 {
            // |v| < 2^31, shift ≤ 16: fits i64.
            div_round(v << (-exponent) as u32, 1000)
        } else {
            div_round(v, 1000i64 << exponent as u32)
        };
        if mantissa >= -1024 && mantissa <= 1023 {
            return (((exponent as u16) & 0x1F) << 11) | ((mantissa as u16) & 0x07FF);
        }
        exponent += 1;
    }
    // Unreachable for i32 input; saturate rather than panic.
    if value_milli > 0 { 0x7BFF } else { 0x7C00 }
}

/// ULINEAR16 with the exponent from VOUT_MODE bits 4..0 (0x97 → −9 → 1/512 V per LSB), to mV,
/// rounded to nearest; saturates at `u32::MAX`. Bits 7..5 of `vout_mode` are ignored.
pub const fn ulinear16_to_mv(raw: u16, vout_mode: u8) -> u32 {
    let exponent = exponent5(vout_mode);
    let scaled = raw as u64 * 1000;
    let mv = if exponent >= 0 {
        // < 2^26 · 2^15: fits u64.
        scaled << exponent as u32
    } else {
        let shift = (-exponent) as u32;
        (scaled + ((1u64 << shift) >> 1)) >> shift
    };
    if mv > u32::MAX as u64 {
        u32::MAX
    } else {
        mv as u32
    }
}

/// mV to ULINEAR16 with the VOUT_MODE exponent, **truncating** as ESP-Miner does (so the
/// commanded voltage never exceeds the request): 1200 mV @ 0x97 → 0x0266, 1150 mV → 0x024C.
/// `None` when the result does not fit 16 bits. Bits 7..5 of `vout_mode` are ignored.
pub const fn mv_to_ulinear16(mv: u32, vout_mode: u8) -> Option<u16> {
    let exponent = exponent5(vout_mode);
    let raw = if exponent >= 0 {
        mv as u64 / (1000u64 << exponent as u32)
    } else {
        // < 2^32 · 2^16: fits u64.
        ((mv as u64) << (-exponent) as u32) / 1000
    };
    if raw > u16::MAX as u64 {
        None
    } else {
        Some(raw as u16)
    }
}

/// PMBus STATUS_WORD (0x79). Bit accessors per PMBus 1.3 / doc §9.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatusWord(pub u16);

impl StatusWord {
    const fn bit(self, mask: u16) -> bool {
        self.0 & mask != 0
    }
    /// Bit 15: something in STATUS_VOUT.
    pub const fn vout(&self) -> bool {
        self.bit(bits::STATUS_VOUT)
    }
    /// Bit 14: something in STATUS_IOUT.
    pub const fn iout(&self) -> bool {
        self.bit(bits::STATUS_IOUT)
    }
    /// Bit 13: something in STATUS_INPUT.
    pub const fn input(&self) -> bool {
        self.bit(bits::STATUS_INPUT)
    }
    /// Bit 12: something in STATUS_MFR_SPECIFIC.
    pub const fn mfr(&self) -> bool {
        self.bit(bits::STATUS_MFR)
    }
    /// Bit 11: POWER_GOOD# — set while the output is not in regulation (also when off).
    pub const fn power_good_negated(&self) -> bool {
        self.bit(bits::STATUS_POWER_GOOD_N)
    }
    /// Bit 10: something in STATUS_FANS.
    pub const fn fans(&self) -> bool {
        self.bit(bits::STATUS_FANS)
    }
    /// Bit 9: something in STATUS_OTHER.
    pub const fn other(&self) -> bool {
        self.bit(bits::STATUS_OTHER)
    }
    /// Bit 7: the device was busy and could not answer.
    pub const fn busy(&self) -> bool {
        self.bit(bits::STATUS_BUSY)
    }
    /// Bit 6: the output is off.
    pub const fn off(&self) -> bool {
        self.bit(bits::STATUS_OFF)
    }
    /// Bit 5: output over-voltage fault.
    pub const fn vout_ov_fault(&self) -> bool {
        self.bit(bits::STATUS_VOUT_OV_FAULT)
    }
    /// Bit 4: output over-current fault.
    pub const fn iout_oc_fault(&self) -> bool {
        self.bit(bits::STATUS_IOUT_OC_FAULT)
    }
    /// Bit 3: input under-voltage.
    pub const fn vin_uv(&self) -> bool {
        self.bit(bits::STATUS_VIN_UV)
    }
    /// Bit 2: temperature warning or fault.
    pub const fn temperature(&self) -> bool {
        self.bit(bits::STATUS_TEMPERATURE)
    }
    /// Bit 1: communication, memory or logic fault.
    pub const fn cml(&self) -> bool {
        self.bit(bits::STATUS_CML)
    }
    /// Bit 0: a fault not covered by the other bits.
    pub const fn none_of_the_above(&self) -> bool {
        self.bit(bits::STATUS_NONE_OF_THE_ABOVE)
    }
    /// True when hashing must stop: VOUT_OV, IOUT_OC, VIN_UV, TEMPERATURE, or the VOUT / IOUT
    /// summary bits ([`bits::STATUS_STOP_MASK`]). OFF, POWER_GOOD#, CML, BUSY and the
    /// INPUT/MFR/OTHER summaries alone are not faults.
    pub const fn is_fault(&self) -> bool {
        self.bit(bits::STATUS_STOP_MASK)
    }
}

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
}

impl Config {
    /// ESP-Miner's single-chip profile (Gamma/Ultra/Supra; doc §9.3): VIN_ON 4.8 V, VIN_OFF
    /// 4.5 V, VOUT 1.0..=2.0 V, IOUT OC warn 25 A / fault 30 A, OT warn 105 °C / fault 145 °C,
    /// 650 kHz.
    pub const fn single_chip() -> Self {
        Config {
            vin_on_mv: 4_800,
            vin_off_mv: 4_500,
            vout_max_mv: 2_000,
            vout_min_mv: 1_000,
            iout_oc_warn_ma: 25_000,
            iout_oc_fault_ma: 30_000,
            ot_warn_c: 105,
            ot_fault_c: 145,
            frequency_switch_khz: 650,
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
        if self.iout_oc_fault_ma > i32::MAX as u32 {
            return Err("iout_oc_fault_ma");
        }
        if self.iout_oc_warn_ma > self.iout_oc_fault_ma {
            return Err("iout_oc_warn_ma");
        }
        if self.ot_warn_c > self.ot_fault_c {
            return Err("ot_warn_c");
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
    i2c: I2C,
    address: u8,
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
            i2c,
            address,
            vout_mode: None,
            vout_range_mv: None,
            vout_set: false,
        }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// The cached VOUT_MODE (`None` until read by [`Tps546::init`] or a VOUT read).
    pub fn vout_mode(&self) -> Option<u8> {
        self.vout_mode
    }

    /// Identifies the chip, turns the output off and writes the limits. Transactions, in order:
    ///
    /// 1. block read IC_DEVICE_ID (0xAD): count byte + 6 bytes, one of [`DEVICE_IDS`];
    /// 2. OPERATION (0x01) = 0x00, output off;
    /// 3. ON_OFF_CONFIG (0x02) = 0x1B ([`bits::ON_OFF_CONFIG_OPERATION_ONLY`]);
    /// 4. read VOUT_MODE (0x20), must be linear; cached;
    /// 5. words: VIN_ON (0x35), VIN_OFF (0x36), VOUT_MAX (0x24), VOUT_MIN (0x2B),
    ///    IOUT_OC_WARN_LIMIT (0x4A), IOUT_OC_FAULT_LIMIT (0x46), OT_WARN_LIMIT (0x51),
    ///    OT_FAULT_LIMIT (0x4F), FREQUENCY_SWITCH (0x33);
    /// 6. CLEAR_FAULTS (0x03).
    ///
    /// VIN_ON before VIN_OFF and warnings before faults keep each pair ordered while it is
    /// rewritten from larger defaults. SLINEAR11 words use [`milli_to_linear11`] (the chip rounds
    /// down to its hardware steps, e.g. VIN_ON in 0.25 V steps).
    ///
    /// VOUT_MAX and VOUT_MIN are written as **absolute** ULINEAR16 voltages with the VOUT_MODE
    /// exponent whatever the REL bit says: TI documents both commands as "absolute only" (ESP's
    /// ratio writes are for the margin and OV/UV limits, which this driver leaves at their
    /// defaults, relative to VOUT_COMMAND on a stock TPS546D24A). VOUT_COMMAND, VOUT_SCALE_LOOP,
    /// PHASE, SYNC/STACK_CONFIG, fault responses and timings are not written either: the output
    /// stays off until [`Tps546::set_vout_mv`] and [`Tps546::enable`].
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
        self.i2c
            .write_read(self.address, &[commands::IC_DEVICE_ID], &mut raw)
            .await
            .map_err(Error::I2c)?;
        let [count, id @ ..] = raw;
        if count != 6 || !DEVICE_IDS.contains(&id) {
            return Err(Error::WrongDevice { count, id });
        }

        self.write_byte(commands::OPERATION, bits::OPERATION_OFF)
            .await?;
        self.write_byte(commands::ON_OFF_CONFIG, bits::ON_OFF_CONFIG_OPERATION_ONLY)
            .await?;
        let mode = self.read_vout_mode().await?;
        let vout_max = mv_to_ulinear16(config.vout_max_mv, mode).ok_or(Error::InvalidConfig {
            field: "vout_max_mv",
        })?;
        let vout_min = mv_to_ulinear16(config.vout_min_mv, mode).ok_or(Error::InvalidConfig {
            field: "vout_min_mv",
        })?;

        self.write_word(commands::VIN_ON, vin_on).await?;
        self.write_word(commands::VIN_OFF, vin_off).await?;
        self.write_word(commands::VOUT_MAX, vout_max).await?;
        self.write_word(commands::VOUT_MIN, vout_min).await?;
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
    /// turning off is always attempted.
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

    /// CLEAR_FAULTS (0x03, send byte): clears latched status bits (still-present faults re-assert).
    pub async fn clear_faults(&mut self) -> Result<(), Error<I2C::Error>> {
        self.i2c
            .write(self.address, &[commands::CLEAR_FAULTS])
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
        let mut buf = [0u8; 1];
        self.i2c
            .write_read(self.address, &[command], &mut buf)
            .await
            .map_err(Error::I2c)?;
        let [value] = buf;
        Ok(value)
    }

    async fn read_word(&mut self, command: u8) -> Result<u16, Error<I2C::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[command], &mut buf)
            .await
            .map_err(Error::I2c)?;
        Ok(u16::from_le_bytes(buf))
    }

    async fn write_byte(&mut self, command: u8, value: u8) -> Result<(), Error<I2C::Error>> {
        self.i2c
            .write(self.address, &[command, value])
            .await
            .map_err(Error::I2c)
    }

    async fn write_word(&mut self, command: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [lo, hi] = value.to_le_bytes();
        self.i2c
            .write(self.address, &[command, lo, hi])
            .await
            .map_err(Error::I2c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference decode in floating point.
    fn linear11_f64(raw: u16) -> f64 {
        let e = i32::from((raw >> 11) as u8 & 0x1F);
        let e = if e >= 16 { e - 32 } else { e };
        let m = i32::from(raw & 0x7FF);
        let m = if m >= 1024 { m - 2048 } else { m };
        f64::from(m) * 2f64.powi(e)
    }

    #[test]
    fn linear11_every_word() {
        for raw in 0..=u16::MAX {
            let exact = linear11_f64(raw) * 1000.0;
            let got = linear11_to_milli(raw);
            if exact > f64::from(i32::MAX) {
                assert_eq!(got, i32::MAX, "{raw:04X}");
            } else if exact < f64::from(i32::MIN) {
                assert_eq!(got, i32::MIN, "{raw:04X}");
            } else {
                assert!(
                    (f64::from(got) - exact).abs() <= 0.5,
                    "{raw:04X}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn linear11_examples() {
        // TI examples: E804h = 4 · 2^-3 = 0.5; E054h = 84 · 2^-4 = 5.25.
        assert_eq!(linear11_to_milli(0xE804), 500);
        assert_eq!(linear11_to_milli(0xE054), 5_250);
        assert_eq!(linear11_to_milli(0x0000), 0);
        assert_eq!(linear11_to_milli(0x028A), 650_000);
        assert_eq!(linear11_to_milli(0xCA66), 4_797); // 614/128 V = 4.796875
        assert_eq!(linear11_to_milli(0xDB20), 25_000);
        assert_eq!(linear11_to_milli(0x07FF), -1_000); // mantissa -1, exponent 0
        assert_eq!(linear11_to_milli(0x0400), -1_024_000);
        assert_eq!(linear11_to_milli(0x7BFF), i32::MAX); // 1023 · 2^15 V saturates
        assert_eq!(linear11_to_milli(0x7C00), i32::MIN);
        assert_eq!(linear11_to_milli(0x8001), 0); // 2^-16 V rounds to 0 mV
        assert_eq!(linear11_to_milli(0x8021), 1); // 33 · 2^-16 V = 0.5035 mV
    }

    #[test]
    fn linear11_encode_examples() {
        assert_eq!(milli_to_linear11(0), 0x0000);
        assert_eq!(milli_to_linear11(4_800), 0xCA66);
        assert_eq!(milli_to_linear11(4_500), 0xCA40);
        assert_eq!(milli_to_linear11(25_000), 0xDB20);
        assert_eq!(milli_to_linear11(30_000), 0xDBC0);
        assert_eq!(milli_to_linear11(105_000), 0xEB48);
        assert_eq!(milli_to_linear11(145_000), 0xF244);
        assert_eq!(milli_to_linear11(650_000), 0x028A);
        assert_eq!(milli_to_linear11(5_250), 0xCAA0); // 5.25 · 2^7 = 672, exponent -7
        assert_eq!(milli_to_linear11(-1_000), 0xB400); // -1024 · 2^-10
        assert_eq!(milli_to_linear11(i32::MAX), 0x620C); // 524 · 2^12 V (1049 · 2^11 would not fit)
    }

    #[test]
    fn linear11_encode_picks_smallest_exponent_and_rounds() {
        for v in (-2_000_000..=2_000_000)
            .step_by(997)
            .chain([i32::MIN, i32::MAX, 1, -1, 999, -999])
        {
            let raw = milli_to_linear11(v);
            let e = i32::from((raw >> 11) as u8 & 0x1F);
            let e = if e >= 16 { e - 32 } else { e };
            let m = i32::from(raw & 0x7FF);
            let m = if m >= 1024 { m - 2048 } else { m };
            let exact = f64::from(v) / 1000.0;
            let step = 2f64.powi(e);
            assert!(
                (f64::from(m) * step - exact).abs() <= step / 2.0 + 1e-9,
                "{v}: {raw:04X}"
            );
            if v != 0 && e > -16 {
                // One exponent smaller would not fit.
                let finer = (exact / 2f64.powi(e - 1)).round();
                assert!(
                    !(-1024.0..=1023.0).contains(&finer),
                    "{v}: {raw:04X} not finest"
                );
            }
        }
    }

    #[test]
    fn linear11_round_trip_within_half_step() {
        for v in (-1_000_000..=1_000_000).step_by(331) {
            let back = linear11_to_milli(milli_to_linear11(v));
            // The mantissa keeps ≥ 10 significant bits, so the error is below |v| / 1000.
            let tolerance = (v.unsigned_abs() / 1000).max(1) as i32;
            assert!((back - v).abs() <= tolerance, "{v} -> {back}");
        }
    }

    #[test]
    fn ulinear16_examples() {
        assert_eq!(ulinear16_to_mv(0x0266, 0x97), 1_199); // 614/512 V = 1.19922
        assert_eq!(ulinear16_to_mv(0x024C, 0x97), 1_148); // 588/512 V = 1.14844
        assert_eq!(ulinear16_to_mv(0x0400, 0x97), 2_000);
        assert_eq!(ulinear16_to_mv(0x0200, 0x17), 1_000);
        assert_eq!(ulinear16_to_mv(0x0733, 0x97), 3_600); // 1843/512 = 3.5996
        assert_eq!(ulinear16_to_mv(0x03E6, 0x16), 975); // TI example: 998/1024 V
        assert_eq!(ulinear16_to_mv(0x0001, 0x00), 1_000);
        assert_eq!(ulinear16_to_mv(0xFFFF, 0x0F), u32::MAX); // 65535 · 2^15 V saturates
    }

    #[test]
    fn ulinear16_every_word_at_minus_9() {
        for raw in 0..=u16::MAX {
            let exact = f64::from(raw) * 1000.0 / 512.0;
            let got = ulinear16_to_mv(raw, 0x97);
            assert!((f64::from(got) - exact).abs() <= 0.5, "{raw:04X}");
        }
    }

    #[test]
    fn mv_to_ulinear16_truncates_like_esp_miner() {
        assert_eq!(mv_to_ulinear16(1_200, 0x97), Some(0x0266));
        assert_eq!(mv_to_ulinear16(1_150, 0x97), Some(0x024C));
        assert_eq!(mv_to_ulinear16(3_600, 0x97), Some(0x0733));
        assert_eq!(mv_to_ulinear16(2_000, 0x97), Some(0x0400));
        assert_eq!(mv_to_ulinear16(1_000, 0x97), Some(0x0200));
        assert_eq!(mv_to_ulinear16(1_000, 0x16), Some(0x0400)); // TI example, exponent -10
        assert_eq!(mv_to_ulinear16(0, 0x97), Some(0));
        assert_eq!(mv_to_ulinear16(127_998, 0x97), Some(0xFFFE));
        assert_eq!(mv_to_ulinear16(127_999, 0x97), Some(0xFFFF));
        assert_eq!(mv_to_ulinear16(128_000, 0x97), None);
        assert_eq!(mv_to_ulinear16(u32::MAX, 0x97), None);
        assert_eq!(mv_to_ulinear16(u32::MAX, 0x0F), Some(131)); // 4.29e6 V / 32768
    }

    #[test]
    fn mv_to_ulinear16_never_exceeds_request() {
        for mode in [0x97u8, 0x17, 0x16, 0x14, 0x1C, 0x00, 0x01] {
            for mv in (0..=6_000u32).chain([65_535, 1_000_000]) {
                if let Some(raw) = mv_to_ulinear16(mv, mode) {
                    let e = exponent5(mode);
                    let volts = f64::from(raw) * 2f64.powi(e);
                    let step = 2f64.powi(e);
                    let req = f64::from(mv) / 1000.0;
                    assert!(volts <= req + 1e-12, "{mv} @ {mode:02X}");
                    assert!(req - volts < step, "{mv} @ {mode:02X}");
                }
            }
        }
    }

    #[test]
    fn status_word_bits() {
        let all = [
            (15, StatusWord::vout as fn(&StatusWord) -> bool),
            (14, StatusWord::iout),
            (13, StatusWord::input),
            (12, StatusWord::mfr),
            (11, StatusWord::power_good_negated),
            (10, StatusWord::fans),
            (9, StatusWord::other),
            (7, StatusWord::busy),
            (6, StatusWord::off),
            (5, StatusWord::vout_ov_fault),
            (4, StatusWord::iout_oc_fault),
            (3, StatusWord::vin_uv),
            (2, StatusWord::temperature),
            (1, StatusWord::cml),
            (0, StatusWord::none_of_the_above),
        ];
        for (bit, _) in all {
            let s = StatusWord(1 << bit);
            for (other, f) in all {
                assert_eq!(f(&s), bit == other, "bit {bit} accessor {other}");
            }
        }
        let stop = [15, 14, 5, 4, 3, 2];
        for bit in 0..16 {
            assert_eq!(
                StatusWord(1 << bit).is_fault(),
                stop.contains(&bit),
                "bit {bit}"
            );
        }
        assert!(!StatusWord(0).is_fault());
        // Output off, power not good, CML: not a reason to stop hashing by itself.
        assert!(!StatusWord(0x0842).is_fault());
        assert!(StatusWord(0x0844).is_fault());
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
