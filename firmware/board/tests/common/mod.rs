//! Shared helpers for the driver tests. Register addresses and values are re-declared here from
//! the datasheets (and docs/bm13xx-protocol.md §9) on purpose, independently of the crate, so the
//! tests check the drivers against the documents rather than against themselves.
#![allow(dead_code)]

use embedded_hal_mock::eh1::i2c::Transaction;

/// Runs a driver future to completion (the mock bus never pends).
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    embassy_futures::block_on(future)
}

/// A register/command read: the register byte written, then `response` read back in one
/// repeated-start transaction.
pub fn read(address: u8, register: u8, response: &[u8]) -> Transaction {
    Transaction::write_read(address, vec![register], response.to_vec())
}

/// A plain write of `bytes` (register/command first).
pub fn write(address: u8, bytes: &[u8]) -> Transaction {
    Transaction::write(address, bytes.to_vec())
}

/// Microchip EMC2101 datasheet (DS20006703) register map; doc §9.2.
pub mod emc2101 {
    pub const ADDRESS: u8 = 0x4C;

    pub const INTERNAL_TEMP: u8 = 0x00;
    pub const EXTERNAL_TEMP_MSB: u8 = 0x01;
    pub const CONFIGURATION: u8 = 0x03;
    pub const CONVERSION_RATE: u8 = 0x04;
    pub const EXTERNAL_TEMP_LSB: u8 = 0x10;
    pub const EXTERNAL_IDEALITY: u8 = 0x17;
    pub const BETA_COMPENSATION: u8 = 0x18;
    pub const TACH_LOW: u8 = 0x46;
    pub const TACH_HIGH: u8 = 0x47;
    pub const FAN_CONFIGURATION: u8 = 0x4A;
    pub const FAN_SETTING: u8 = 0x4C;
    pub const PRODUCT_ID: u8 = 0xFD;
    pub const MANUFACTURER_ID: u8 = 0xFE;

    /// Configuration bit 2, ALT_TCH: pin 6 is the TACH input instead of ALERT#.
    pub const ALT_TCH: u8 = 0b0000_0100;
    /// Bitaxe fan configuration: bit 5 (program fan setting directly) + TACH bits 1..0 = 11.
    pub const FAN_CONFIGURATION_BITAXE: u8 = 0b0010_0011;
    /// Conversion rate code 4: one conversion per second.
    pub const ONE_PER_SECOND: u8 = 4;

    pub const PRODUCT_EMC2101: u8 = 0x16;
    pub const PRODUCT_EMC2101_R: u8 = 0x28;
    pub const SMSC: u8 = 0x5D;

    /// Power-on ideality (1.0080) and beta (automatic).
    pub const IDEALITY_POR: u8 = 0x12;
    pub const BETA_POR: u8 = 0x08;
    /// ESP-Miner's Bitaxe Gamma values.
    pub const IDEALITY_GAMMA: u8 = 0x24;
    pub const BETA_GAMMA: u8 = 0x00;
}

/// PMBus 1.3 command codes and TPS546D24A specifics; doc §9.3.
pub mod tps546 {
    pub const ADDRESS: u8 = 0x24;

    pub const OPERATION: u8 = 0x01;
    pub const ON_OFF_CONFIG: u8 = 0x02;
    pub const CLEAR_FAULTS: u8 = 0x03;
    pub const VOUT_MODE: u8 = 0x20;
    pub const VOUT_COMMAND: u8 = 0x21;
    pub const VOUT_MAX: u8 = 0x24;
    pub const VOUT_MIN: u8 = 0x2B;
    pub const VOUT_OV_FAULT_LIMIT: u8 = 0x40;
    pub const VOUT_OV_FAULT_RESPONSE: u8 = 0x41;
    pub const VOUT_UV_FAULT_LIMIT: u8 = 0x44;
    pub const VOUT_UV_FAULT_RESPONSE: u8 = 0x45;
    pub const FREQUENCY_SWITCH: u8 = 0x33;
    pub const VIN_ON: u8 = 0x35;
    pub const VOUT_SCALE_LOOP: u8 = 0x29;
    pub const VIN_OFF: u8 = 0x36;
    pub const IOUT_OC_FAULT_LIMIT: u8 = 0x46;
    pub const IOUT_OC_WARN_LIMIT: u8 = 0x4A;
    pub const OT_FAULT_LIMIT: u8 = 0x4F;
    pub const OT_WARN_LIMIT: u8 = 0x51;
    pub const STATUS_WORD: u8 = 0x79;
    pub const STATUS_VOUT: u8 = 0x7A;
    pub const STATUS_IOUT: u8 = 0x7B;
    pub const STATUS_INPUT: u8 = 0x7C;
    pub const STATUS_TEMPERATURE: u8 = 0x7D;
    pub const READ_VIN: u8 = 0x88;
    pub const READ_VOUT: u8 = 0x8B;
    pub const READ_IOUT: u8 = 0x8C;
    pub const READ_TEMPERATURE_1: u8 = 0x8D;
    pub const IC_DEVICE_ID: u8 = 0xAD;

    pub const OPERATION_OFF: u8 = 0x00;
    pub const OPERATION_ON: u8 = 0x80;
    /// TPS546D24S datasheet (SLUSF26) §7.6.3 ON_OFF_CONFIG: PU (bit 4) | CMD (3) | CP (2) |
    /// POLARITY (1) | DELAY (0): on only while OPERATION is on and the CONTROL pin is high,
    /// off at once when the pin falls.
    pub const ON_OFF_CONFIG_CONTROL_PIN: u8 = 0x1F;
    /// PMBus Part II §10.5.1 fault response: 10 (shut down) 000 (no retry) 000 (no delay).
    pub const RESPONSE_LATCH_OFF: u8 = 0x80;
    /// STATUS_TEMPERATURE bits 7 (OT fault) and 6 (OT warning).
    pub const OT_FAULT: u8 = 0x80;
    pub const OT_WARN: u8 = 0x40;
    /// STATUS_VOUT bit 7 (OV fault); STATUS_IOUT bit 5 (OC warning).
    pub const VOUT_OV_FAULT: u8 = 0x80;
    pub const IOUT_OC_WARN: u8 = 0x20;

    /// TPS546 default VOUT_MODE: REL set, linear, exponent -9.
    pub const VOUT_MODE_DEFAULT: u8 = 0x97;

    /// IC_DEVICE_ID block replies: count byte then "TIT", 'm', 0x24, 'A' / 'b'; and 'k' variant.
    pub const ID_D24A: [u8; 7] = [6, b'T', b'I', b'T', b'm', 0x24, b'A'];
    pub const ID_D24S: [u8; 7] = [6, b'T', b'I', b'T', b'm', 0x24, b'b'];
    pub const ID_K24A: [u8; 7] = [6, b'T', b'I', b'T', b'k', 0x24, b'A'];

    // ESP-Miner single-chip limits as little-endian SLINEAR11 words, most precise exponent
    // (worked by hand: mantissa · 2^exponent).
    /// 4.8 V = 614 · 2^-7 (4.797 V): 0b11001_01001100110 = 0xCA66.
    pub const VIN_ON_4V8: [u8; 2] = [0x66, 0xCA];
    /// 0.25 in SLINEAR11, most precise form: 512 x 2^-11.
    pub const SCALE_LOOP_0_25: [u8; 2] = [0x00, 0xAA];
    /// 4.5 V = 576 · 2^-7: 0xCA40.
    pub const VIN_OFF_4V5: [u8; 2] = [0x40, 0xCA];
    /// 25 A = 800 · 2^-5: 0xDB20.
    pub const IOUT_25A: [u8; 2] = [0x20, 0xDB];
    /// 30 A = 960 · 2^-5: 0xDBC0.
    pub const IOUT_30A: [u8; 2] = [0xC0, 0xDB];
    /// 105 °C = 840 · 2^-3: 0xEB48.
    pub const OT_105C: [u8; 2] = [0x48, 0xEB];
    /// 145 °C = 580 · 2^-2: 0xF244.
    pub const OT_145C: [u8; 2] = [0x44, 0xF2];
    /// 110 °C = 880 · 2^-3: 0xEB70.
    pub const OT_110C: [u8; 2] = [0x70, 0xEB];
    /// 650 kHz = 650 · 2^0: 0x028A.
    pub const FREQ_650KHZ: [u8; 2] = [0x8A, 0x02];
    // ULINEAR16 at exponent -9 (1/512 V), truncated.
    /// 2.0 V = 1024: 0x0400.
    pub const VOUT_2V0: [u8; 2] = [0x00, 0x04];
    /// 1.0 V = 512: 0x0200.
    pub const VOUT_1V0: [u8; 2] = [0x00, 0x02];
    /// 1.2 V = 614.4 → 614: 0x0266.
    pub const VOUT_1V2: [u8; 2] = [0x66, 0x02];
    /// 1.15 V = 588.8 → 588: 0x024C.
    pub const VOUT_1V15: [u8; 2] = [0x4C, 0x02];
    /// 1.3 V = 665.6 → 665: 0x0299.
    pub const VOUT_1V3: [u8; 2] = [0x99, 0x02];
    // OV/UV limits in relative format (VOUT_MODE REL set): ratios of VOUT_COMMAND at 2^-9.
    /// 1.25 = 640: 0x0280.
    pub const RATIO_1_25: [u8; 2] = [0x80, 0x02];
    /// 1.131 = 579.07 → 579: 0x0243.
    pub const RATIO_1_131: [u8; 2] = [0x43, 0x02];
    /// 0.75 = 384: 0x0180.
    pub const RATIO_0_75: [u8; 2] = [0x80, 0x01];
}

/// TI INA260 datasheet (SBOS656) register map; doc §9.4.
pub mod ina260 {
    pub const ADDRESS: u8 = 0x40;

    pub const CONFIGURATION: u8 = 0x00;
    pub const CURRENT: u8 = 0x01;
    pub const BUS_VOLTAGE: u8 = 0x02;
    pub const POWER: u8 = 0x03;
    pub const MANUFACTURER_ID: u8 = 0xFE;
    pub const DIE_ID: u8 = 0xFF;

    /// "TI", big-endian.
    pub const MANUFACTURER_TI: [u8; 2] = [0x54, 0x49];
    /// Device id 0x227, revision 0.
    pub const DIE_INA260: [u8; 2] = [0x22, 0x70];
    /// An INA226's die id (0x2260): same manufacturer, other part.
    pub const DIE_INA226: [u8; 2] = [0x22, 0x60];

    /// Reserved 110 | AVG 101 (256) | VBUSCT 100 (1.1 ms) | ISHCT 100 (1.1 ms) | MODE 111
    /// = 0110 1011 0010 0111.
    pub const CONFIGURATION_AVG256: [u8; 2] = [0x6B, 0x27];
}
