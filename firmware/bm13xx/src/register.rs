//! Register addresses and value encodings shared by the BM13xx family.
//!
//! Addresses and layouts are from docs/bm13xx-protocol.md §3.1 (skot/BM1397 register notes,
//! bm13xx-rs register models, mujina REFERENCE.md, ESP-Miner drivers, and factory captures).

/// Register addresses.
pub mod addr {
    /// Chip id (31..16), core count (15..8), address (7..0). Read-only.
    pub const CHIP_ID: u8 = 0x00;
    /// BM1397 hash rate counter (bit 31 "long" flag, low 31 bits in 2^20 hashes/s per ESP-Miner).
    pub const HASH_RATE_BM1397: u8 = 0x04;
    /// PLL0 (hash clock) parameters, see [`crate::pll`].
    pub const PLL0_PARAMETER: u8 = 0x08;
    /// Per-chip nonce offset on BM1368/BM1370: bit 31 enable, bits 15..0 offset.
    pub const CHIP_NONCE_OFFSET: u8 = 0x0C;
    /// Number of 25 MHz ticks a core sweeps before moving to the next rolled versions.
    pub const HASH_COUNTING_NUMBER: u8 = 0x10;
    /// Ticket mask (chip difficulty), see [`super::ticket_mask`].
    pub const TICKET_MASK: u8 = 0x14;
    /// Misc control; on BM1397 it also holds the UART baud divider.
    pub const MISC_CONTROL: u8 = 0x18;
    /// BM1397 ordered clock enable.
    pub const ORDERED_CLOCK_ENABLE: u8 = 0x20;
    /// Fast UART configuration (baud divider on BM1366/68/70).
    pub const FAST_UART_CONFIGURATION: u8 = 0x28;
    /// UART relay (gap count, RO/CO relay enables).
    pub const UART_RELAY: u8 = 0x2C;
    /// Core register mailbox: `0x8000_8R_VV` writes core register R := VV on every core.
    pub const CORE_REGISTER_CONTROL: u8 = 0x3C;
    /// Nonce error counter, polled for the chip's error rate.
    pub const ERROR_COUNTER: u8 = 0x4C;
    /// Analog mux (2 routes the temperature diode out on BM1370).
    pub const ANALOG_MUX: u8 = 0x54;
    /// IO driver strength.
    pub const IO_DRIVER_STRENGTH: u8 = 0x58;
    /// PLL3 parameter (BM1397 UART clock) / ring-oscillator guard pattern on BM1368/70.
    pub const PLL3_PARAMETER: u8 = 0x68;
    /// BM1397 PLL0 divider.
    pub const PLL0_DIVIDER: u8 = 0x70;
    /// BM1397 clock order control 0 and 1.
    pub const CLOCK_ORDER_CONTROL0: u8 = 0x80;
    /// See [`CLOCK_ORDER_CONTROL0`].
    pub const CLOCK_ORDER_CONTROL1: u8 = 0x84;
    /// Hash counter of domain 0 (0x88..0x8B are domains 0..3).
    pub const HASH_COUNTER_DOMAIN0: u8 = 0x88;
    /// Total hash counter on BM1366/68/70; one count = 2^32 hashes (ESP-Miner `hashCounterToGhs`).
    pub const HASH_COUNTER_TOTAL: u8 = 0x8C;
    /// Version rolling: bit 31 auto midstate, bits 29..28 midstate count, bits 15..0 = mask >> 13.
    pub const VERSION_ROLLING: u8 = 0xA4;
    /// Soft reset control.
    pub const SOFT_RESET_CONTROL: u8 = 0xA8;
    /// BM1368 on-die temperature sensor control.
    pub const TEMP_SENSOR_CONTROL: u8 = 0xB0;
    /// BM1368 on-die temperature sensor result: bit 31 valid, bits 15..0 code.
    pub const TEMP_SENSOR_RESULT: u8 = 0xB4;
    /// BM1370 ADC control.
    pub const ADC_CONTROL: u8 = 0xB9;
}

/// Ticket mask register value for a chip difficulty, and the power-of-two difficulty it gives.
///
/// The chip reports a nonce when the hash has 32 + N leading zero bits; the mask is 2^N − 1 with
/// the bit order reversed inside each byte, sent most-significant byte first (docs §7; ESP-Miner
/// `get_difficulty_mask`, cgminer, mujina and bm13xx-rs agree). Requests that are not a power of
/// two round down; 0 is treated as 1.
///
/// ```
/// assert_eq!(bm13xx::register::ticket_mask(256), (0x0000_00FF, 256));
/// assert_eq!(bm13xx::register::ticket_mask(512), (0x0000_80FF, 512));
/// assert_eq!(bm13xx::register::ticket_mask(1000), (0x0000_80FF, 512)); // rounds down
/// ```
pub const fn ticket_mask(difficulty: u32) -> (u32, u32) {
    let bits = ticket_mask_bits(difficulty);
    let mask: u32 = if bits == 0 {
        0
    } else {
        u32::MAX >> (32 - bits)
    };
    let b = mask.to_be_bytes();
    let value = u32::from_be_bytes([
        b[0].reverse_bits(),
        b[1].reverse_bits(),
        b[2].reverse_bits(),
        b[3].reverse_bits(),
    ]);
    (value, 1u32 << bits)
}

/// N, the number of extra leading zero bits a ticket mask for `difficulty` asks for.
pub const fn ticket_mask_bits(difficulty: u32) -> u32 {
    if difficulty <= 1 {
        0
    } else {
        31 - difficulty.leading_zeros()
    }
}

/// Decode a ticket mask register value back to N (extra zero bits), if it is a valid mask.
pub const fn ticket_mask_value_bits(value: u32) -> Option<u32> {
    let b = value.to_be_bytes();
    let mask = u32::from_be_bytes([
        b[0].reverse_bits(),
        b[1].reverse_bits(),
        b[2].reverse_bits(),
        b[3].reverse_bits(),
    ]);
    // Valid masks are 2^N - 1.
    if mask & mask.wrapping_add(1) == 0 {
        Some(32 - mask.leading_zeros())
    } else {
        None
    }
}

/// BIP320 version-rolling mask every implementation uses by default (bits 28..13).
pub const DEFAULT_VERSION_MASK: u32 = 0x1FFF_E000;

/// Register 0xA4 value enabling hardware version rolling over `mask` (bits 28..13 only).
/// `0x9000_FFFF` for the full BIP320 mask, as written by every firmware.
pub const fn version_rolling(mask: u32) -> u32 {
    0x9000_0000 | ((mask & DEFAULT_VERSION_MASK) >> 13)
}

/// Register 0x0C value for chip `index` of `count` (BM1368/BM1370 factory practice, docs §2.3):
/// `0x8000_0000 | ceil(index · 65536 / count)`.
///
/// ```
/// // Antminer S21 (108 chips): 0x80000000, 0x8000025F, 0x800004BE, 0x8000071D ...
/// assert_eq!(bm13xx::register::chip_nonce_offset(1, 108), 0x8000_025F);
/// assert_eq!(bm13xx::register::chip_nonce_offset(3, 108), 0x8000_071D);
/// ```
pub const fn chip_nonce_offset(index: u16, count: u16) -> u32 {
    if count <= 1 {
        return 0x8000_0000;
    }
    let offset = (index as u32 * 65536).div_ceil(count as u32);
    0x8000_0000 | (offset & 0xFFFF)
}

/// HASH_COUNTING_NUMBER from ESP-Miner's formula (PR #420):
/// `floor(2^32 / pow2ceil(cores) / pow2ceil(chips) · 25 / f_MHz · 0.5)`, minus 268 ticks on the
/// BM1370 (ESP-Miner's "HW errata" guard). Computed in integers with the frequency in kHz.
pub const fn hash_counting_number(
    cores: u16,
    chips: u16,
    frequency_khz: u32,
    errata_ticks: u32,
) -> u32 {
    let cores = (cores as u64).next_power_of_two();
    let chips = (if chips == 0 { 1 } else { chips } as u64).next_power_of_two();
    let f = if frequency_khz == 0 {
        1
    } else {
        frequency_khz as u64
    };
    let hcn = (1u64 << 32) * 25_000 / (2 * cores * chips * f);
    let hcn = hcn.saturating_sub(errata_ticks as u64);
    if hcn > u32::MAX as u64 {
        u32::MAX
    } else {
        hcn as u32
    }
}

/// BM1368 on-die temperature in millidegrees Celsius from the 16-bit sensor code
/// (°C = code · 0.171342 − 299.5144; mujina, ESP-Miner comment from NerdAxe).
pub const fn bm1368_temperature_millicelsius(code: u16) -> i32 {
    (code as i32 * 171_342 / 1000) - 299_514
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_masks_match_the_computed_table() {
        let table = [
            (1, 0x0000_0000),
            (2, 0x0000_0080),
            (16, 0x0000_00F0),
            (64, 0x0000_00FC),
            (256, 0x0000_00FF),
            (1024, 0x0000_C0FF),
            (8192, 0x0000_F8FF),
            (65536, 0x0000_FFFF),
        ];
        for (difficulty, value) in table {
            assert_eq!(
                ticket_mask(difficulty),
                (value, difficulty),
                "difficulty {difficulty}"
            );
            assert_eq!(
                ticket_mask_value_bits(value),
                Some(difficulty.trailing_zeros())
            );
        }
        assert_eq!(ticket_mask_value_bits(0x0000_0001), None);
    }

    #[test]
    fn hash_counting_numbers_match_esp_miner() {
        assert_eq!(hash_counting_number(128, 1, 525_000, 268), 0x000C_2FB7);
        assert_eq!(hash_counting_number(128, 1, 600_000, 268), 0x000A_A99E);
        assert_eq!(hash_counting_number(128, 2, 525_000, 268), 0x0006_1755);
        assert_eq!(hash_counting_number(112, 1, 485_000, 0), 0x000D_3224);
        assert_eq!(hash_counting_number(112, 6, 485_000, 0), 0x0001_A644);
        assert_eq!(hash_counting_number(80, 1, 490_000, 0), 0x000D_0FAC);
    }

    #[test]
    fn bm1368_temperature_codes() {
        // S21 capture: 0x0783 → 30.0 °C, 0x0828 → 58.2 °C.
        assert!((bm1368_temperature_millicelsius(0x0783) - 30_000).abs() < 100);
        assert!((bm1368_temperature_millicelsius(0x0828) - 58_200).abs() < 100);
    }
}
