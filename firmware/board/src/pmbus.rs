//! PMBus, the parts every PMBus device shares: command codes, the LINEAR11 / ULINEAR16 number
//! formats, the status registers and what they mean, and a small transport over I²C. The
//! TPS546 driver ([`crate::tps546`]) is one user; another PMBus regulator would be another.
//!
//! Sources: PMBus 1.3 Part II (§7 data formats, §10.2 and §17 status registers, §10.5 fault
//! responses, §12.2 ON_OFF_CONFIG) and TI's TPS546D24S datasheet (SLUSF26) §7.6, which documents
//! the same command set as the TPS546D24A on our boards.
//!
//! PMBus words are little-endian on the wire. Reads are `write_read(addr, &[command], buf)`;
//! writes are one `write(addr, &[command, data..])`. No PEC.

use embedded_hal_async::i2c::I2c;

/// PMBus command codes (PMBus 1.3 Part II §11 standard codes, plus the TI ones the TPS546 uses).
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
    /// VOUT_OV_FAULT_LIMIT (word, ULINEAR16 per VOUT_MODE; a ratio of VOUT_COMMAND when REL).
    pub const VOUT_OV_FAULT_LIMIT: u8 = 0x40;
    /// VOUT_OV_FAULT_RESPONSE (byte, [`super::fault_response`]).
    pub const VOUT_OV_FAULT_RESPONSE: u8 = 0x41;
    /// VOUT_UV_FAULT_LIMIT (word, ULINEAR16 per VOUT_MODE; a ratio of VOUT_COMMAND when REL).
    pub const VOUT_UV_FAULT_LIMIT: u8 = 0x44;
    /// VOUT_UV_FAULT_RESPONSE (byte, [`super::fault_response`]).
    pub const VOUT_UV_FAULT_RESPONSE: u8 = 0x45;
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

    /// STATUS_VOUT bit 7: over-voltage fault.
    pub const VOUT_OV_FAULT: u8 = 0x80;
    /// STATUS_VOUT bit 6: over-voltage warning.
    pub const VOUT_OV_WARN: u8 = 0x40;
    /// STATUS_VOUT bit 5: under-voltage warning.
    pub const VOUT_UV_WARN: u8 = 0x20;
    /// STATUS_VOUT bit 4: under-voltage fault.
    pub const VOUT_UV_FAULT: u8 = 0x10;
    /// STATUS_VOUT bit 3: a VOUT_COMMAND was clamped to VOUT_MAX/VOUT_MIN (a warning).
    pub const VOUT_MIN_MAX_WARN: u8 = 0x08;
    /// STATUS_VOUT bit 2: the output did not reach regulation within TON_MAX.
    pub const TON_MAX_FAULT: u8 = 0x04;
    /// STATUS_IOUT bit 7: over-current fault.
    pub const IOUT_OC_FAULT: u8 = 0x80;
    /// STATUS_IOUT bit 6: over-current fault with low output voltage.
    pub const IOUT_OC_LV_FAULT: u8 = 0x40;
    /// STATUS_IOUT bit 5: over-current warning.
    pub const IOUT_OC_WARN: u8 = 0x20;
    /// STATUS_TEMPERATURE bit 7: over-temperature fault.
    pub const OT_FAULT: u8 = 0x80;
    /// STATUS_TEMPERATURE bit 6: over-temperature warning.
    pub const OT_WARN: u8 = 0x40;
    /// STATUS_IOUT bit 4: under-current (reverse current) fault.
    pub const IOUT_UC_FAULT: u8 = 0x10;
    /// STATUS_TEMPERATURE bit 4: under-temperature fault.
    pub const UT_FAULT: u8 = 0x10;
    /// STATUS_INPUT bit 7: input over-voltage fault.
    pub const VIN_OV_FAULT: u8 = 0x80;
    /// STATUS_INPUT bit 5: input under-voltage warning.
    pub const VIN_UV_WARN: u8 = 0x20;
    /// STATUS_INPUT bit 4: input under-voltage fault.
    pub const VIN_UV_FAULT: u8 = 0x10;
    /// STATUS_INPUT bit 3: unit off for insufficient input voltage.
    pub const LOW_VIN: u8 = 0x08;
}

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
}

/// A fault response byte (PMBus 1.3 Part II §10.5.1; SLUSF26 §7.6 VOUT_OV_FAULT_RESPONSE and
/// VOUT_UV_FAULT_RESPONSE): bits 7..6 the response, 5..3 the retries, 2..0 the delay.
pub mod fault_response {
    /// Bits 7..6 = 10: shut the output down at once.
    pub const SHUT_DOWN: u8 = 0b10 << 6;
    /// Bits 5..3 = 000: no restart; the output stays off ("latch-off") until the rail is
    /// commanded off and on again (OPERATION or CONTROL) or input power cycles.
    pub const NO_RETRY: u8 = 0b000 << 3;
    /// Shut down immediately and stay off: what the core rail wants for OV and UV.
    pub const LATCH_OFF: u8 = SHUT_DOWN | NO_RETRY;
}

/// How bad the status registers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Nothing to act on.
    Ok,
    /// A warning limit was crossed (or an unclassified status bit is set): slow down.
    Warning,
    /// A fault limit was crossed: the output is or must be off.
    Fault,
}

/// STATUS_WORD and the detail bytes behind its summary bits (zero when not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status {
    /// STATUS_WORD (0x79).
    pub word: StatusWord,
    /// STATUS_VOUT (0x7A).
    pub vout: u8,
    /// STATUS_IOUT (0x7B).
    pub iout: u8,
    /// STATUS_INPUT (0x7C).
    pub input: u8,
    /// STATUS_TEMPERATURE (0x7D).
    pub temperature: u8,
}

/// Detail bits that are faults; every other set bit of the same byte is a warning.
const VOUT_FAULTS: u8 = bits::VOUT_OV_FAULT | bits::VOUT_UV_FAULT | bits::TON_MAX_FAULT;
const IOUT_FAULTS: u8 = bits::IOUT_OC_FAULT | bits::IOUT_OC_LV_FAULT | bits::IOUT_UC_FAULT;
const INPUT_FAULTS: u8 = bits::VIN_OV_FAULT | bits::VIN_UV_FAULT | bits::LOW_VIN;
const TEMPERATURE_FAULTS: u8 = bits::OT_FAULT | bits::UT_FAULT;

impl Status {
    /// Whether the STATUS_VOUT byte is needed to classify the word (its summary bit or the
    /// low-byte VOUT_OV_FAULT is set). Likewise for the other bytes.
    pub const fn needs_vout(&self) -> bool {
        self.word.vout() || self.word.vout_ov_fault()
    }
    /// See [`Status::needs_vout`].
    pub const fn needs_iout(&self) -> bool {
        self.word.iout() || self.word.iout_oc_fault()
    }
    /// See [`Status::needs_vout`].
    pub const fn needs_input(&self) -> bool {
        self.word.input() || self.word.vin_uv()
    }
    /// See [`Status::needs_vout`].
    pub const fn needs_temperature(&self) -> bool {
        self.word.temperature()
    }

    /// Faults stop, warnings slow down. The low byte's VOUT_OV_FAULT and IOUT_OC_FAULT are
    /// faults outright; the TEMPERATURE and VIN_UV summaries and the high-byte summaries are
    /// classified by their detail byte, and a summary whose byte shows nothing known is a
    /// warning. OFF, POWER_GOOD#, BUSY and CML alone say nothing about the rail's health (the
    /// output is off on purpose, or one transaction was bad).
    pub const fn health(&self) -> Health {
        let w = self.word;
        if w.vout_ov_fault()
            || w.iout_oc_fault()
            || self.vout & VOUT_FAULTS != 0
            || self.iout & IOUT_FAULTS != 0
            || self.input & INPUT_FAULTS != 0
            || self.temperature & TEMPERATURE_FAULTS != 0
        {
            return Health::Fault;
        }
        if self.vout != 0
            || self.iout != 0
            || self.input != 0
            || self.temperature != 0
            || w.vout()
            || w.iout()
            || w.input()
            || w.vin_uv()
            || w.temperature()
        {
            return Health::Warning;
        }
        Health::Ok
    }
}

/// One PMBus device on an I²C bus: byte and word reads and writes, send-byte commands.
#[derive(Debug)]
pub struct Device<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Device<I2C> {
    /// The device at 7-bit `address`. No bus traffic.
    pub fn new(i2c: I2C, address: u8) -> Self {
        Device { i2c, address }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// Read byte.
    pub async fn read_byte(&mut self, command: u8) -> Result<u8, I2C::Error> {
        let mut buf = [0u8; 1];
        self.i2c
            .write_read(self.address, &[command], &mut buf)
            .await?;
        let [value] = buf;
        Ok(value)
    }

    /// Read word (little-endian).
    pub async fn read_word(&mut self, command: u8) -> Result<u16, I2C::Error> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[command], &mut buf)
            .await?;
        Ok(u16::from_le_bytes(buf))
    }

    /// Block read into `buf` (the count byte first, as the device sends it).
    pub async fn read_block(&mut self, command: u8, buf: &mut [u8]) -> Result<(), I2C::Error> {
        self.i2c.write_read(self.address, &[command], buf).await
    }

    /// Write byte.
    pub async fn write_byte(&mut self, command: u8, value: u8) -> Result<(), I2C::Error> {
        self.i2c.write(self.address, &[command, value]).await
    }

    /// Write word (little-endian).
    pub async fn write_word(&mut self, command: u8, value: u16) -> Result<(), I2C::Error> {
        let [lo, hi] = value.to_le_bytes();
        self.i2c.write(self.address, &[command, lo, hi]).await
    }

    /// Send byte (a command without data, such as CLEAR_FAULTS).
    pub async fn send_byte(&mut self, command: u8) -> Result<(), I2C::Error> {
        self.i2c.write(self.address, &[command]).await
    }

    /// STATUS_WORD, then each detail byte its summary bits point at ([`Status::needs_vout`]
    /// and friends): one read when all is well, up to five when something is set.
    pub async fn read_status(&mut self) -> Result<Status, I2C::Error> {
        let mut status = Status {
            word: StatusWord(self.read_word(commands::STATUS_WORD).await?),
            ..Status::default()
        };
        if status.needs_vout() {
            status.vout = self.read_byte(commands::STATUS_VOUT).await?;
        }
        if status.needs_iout() {
            status.iout = self.read_byte(commands::STATUS_IOUT).await?;
        }
        if status.needs_input() {
            status.input = self.read_byte(commands::STATUS_INPUT).await?;
        }
        if status.needs_temperature() {
            status.temperature = self.read_byte(commands::STATUS_TEMPERATURE).await?;
        }
        Ok(status)
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
    }

    #[test]
    fn health_tells_warnings_from_faults() {
        let s = |word: u16, vout: u8, iout: u8, input: u8, temperature: u8| Status {
            word: StatusWord(word),
            vout,
            iout,
            input,
            temperature,
        };
        assert_eq!(s(0, 0, 0, 0, 0).health(), Health::Ok);
        // Output off, power not good, CML: not a health problem by themselves.
        assert_eq!(s(0x0842, 0, 0, 0, 0).health(), Health::Ok);
        // TEMPERATURE summary: the byte decides.
        assert_eq!(s(0x0004, 0, 0, 0, bits::OT_WARN).health(), Health::Warning);
        assert_eq!(s(0x0004, 0, 0, 0, bits::OT_FAULT).health(), Health::Fault);
        // VOUT summary with an OV warning, then a UV fault.
        assert_eq!(
            s(0x8000, bits::VOUT_OV_WARN, 0, 0, 0).health(),
            Health::Warning
        );
        assert_eq!(
            s(0x8000, bits::VOUT_UV_FAULT, 0, 0, 0).health(),
            Health::Fault
        );
        // IOUT summary: warning, then fault; the low-byte OC fault is a fault outright.
        assert_eq!(
            s(0x4000, 0, bits::IOUT_OC_WARN, 0, 0).health(),
            Health::Warning
        );
        assert_eq!(
            s(0x4000, 0, bits::IOUT_OC_FAULT, 0, 0).health(),
            Health::Fault
        );
        assert_eq!(s(0x0010, 0, 0, 0, 0).health(), Health::Fault);
        assert_eq!(s(0x0020, 0, 0, 0, 0).health(), Health::Fault);
        // Input: UV warning vs unit off for low input.
        assert_eq!(
            s(0x2000, 0, 0, bits::VIN_UV_WARN, 0).health(),
            Health::Warning
        );
        assert_eq!(s(0x2008, 0, 0, bits::LOW_VIN, 0).health(), Health::Fault);
        // A summary bit whose byte shows nothing known: a warning, never ignored.
        assert_eq!(s(0x8000, 0, 0, 0, 0).health(), Health::Warning);
    }

    #[test]
    fn latch_off_response_is_shut_down_without_retry() {
        // PMBus Part II §10.5.1: 10 (shut down) 000 (no retry) 000 (no delay).
        assert_eq!(fault_response::LATCH_OFF, 0x80);
    }
}
