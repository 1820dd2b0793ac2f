#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::tps546::*;
use common::{block_on, read, write};
use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use hearth_board::pmbus::{Health, StatusWord};
use hearth_board::tps546::{Config, Error, Tps546};
use proptest::prelude::*;

fn driver(expectations: &[Transaction]) -> Tps546<Mock> {
    Tps546::new(Mock::new(expectations), ADDRESS)
}

fn word(command: u8, le: [u8; 2]) -> Transaction {
    write(ADDRESS, &[command, le[0], le[1]])
}

/// The full init conversation for `Config::single_chip()` with the default VOUT_MODE.
fn init_single_chip(id: [u8; 7]) -> Vec<Transaction> {
    vec![
        read(ADDRESS, IC_DEVICE_ID, &id),
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        write(ADDRESS, &[ON_OFF_CONFIG, ON_OFF_CONFIG_CONTROL_PIN]),
        read(ADDRESS, VOUT_MODE, &[VOUT_MODE_DEFAULT]),
        word(VOUT_SCALE_LOOP, SCALE_LOOP_0_25),
        word(VIN_ON, VIN_ON_4V8),
        word(VIN_OFF, VIN_OFF_4V5),
        word(VOUT_MAX, VOUT_2V0),
        word(VOUT_MIN, VOUT_1V0),
        word(VOUT_OV_FAULT_LIMIT, RATIO_1_25),
        write(ADDRESS, &[VOUT_OV_FAULT_RESPONSE, RESPONSE_LATCH_OFF]),
        word(VOUT_UV_FAULT_LIMIT, RATIO_0_75),
        write(ADDRESS, &[VOUT_UV_FAULT_RESPONSE, RESPONSE_LATCH_OFF]),
        word(IOUT_OC_WARN_LIMIT, IOUT_25A),
        word(IOUT_OC_FAULT_LIMIT, IOUT_30A),
        word(OT_WARN_LIMIT, OT_105C),
        word(OT_FAULT_LIMIT, OT_145C),
        word(FREQUENCY_SWITCH, FREQ_650KHZ),
        write(ADDRESS, &[CLEAR_FAULTS]),
    ]
}

/// The BM1370 board's limits: the chip's 1.0..=1.3 V envelope, a 1.15 V core, VR throttle at
/// 105 °C (boards/asics.toml, boards/hearth-bm1370-r1.toml).
fn bm1370_board() -> Config {
    Config::for_core((1_000, 1_300), 1_150, 105)
}

#[test]
fn init_writes_the_chip_envelope_latching_ov_uv_and_makes_the_pin_authoritative() {
    let mut d = driver(&[
        read(ADDRESS, IC_DEVICE_ID, &ID_D24A),
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        write(ADDRESS, &[ON_OFF_CONFIG, ON_OFF_CONFIG_CONTROL_PIN]),
        read(ADDRESS, VOUT_MODE, &[VOUT_MODE_DEFAULT]),
        word(VOUT_SCALE_LOOP, SCALE_LOOP_0_25),
        word(VIN_ON, VIN_ON_4V8),
        word(VIN_OFF, VIN_OFF_4V5),
        word(VOUT_MAX, VOUT_1V3),
        word(VOUT_MIN, VOUT_1V0),
        word(VOUT_OV_FAULT_LIMIT, RATIO_1_131),
        write(ADDRESS, &[VOUT_OV_FAULT_RESPONSE, RESPONSE_LATCH_OFF]),
        word(VOUT_UV_FAULT_LIMIT, RATIO_0_75),
        write(ADDRESS, &[VOUT_UV_FAULT_RESPONSE, RESPONSE_LATCH_OFF]),
        word(IOUT_OC_WARN_LIMIT, IOUT_25A),
        word(IOUT_OC_FAULT_LIMIT, IOUT_30A),
        word(OT_WARN_LIMIT, OT_110C),
        word(OT_FAULT_LIMIT, OT_145C),
        word(FREQUENCY_SWITCH, FREQ_650KHZ),
        write(ADDRESS, &[CLEAR_FAULTS]),
    ]);
    block_on(d.init(&bm1370_board())).unwrap();
    // The regulator now refuses anything past the chip's 1.3 V.
    assert_eq!(
        block_on(d.set_vout_mv(1_301)),
        Err(Error::OutOfRange {
            mv: 1_301,
            min_mv: 1_000,
            max_mv: 1_300
        })
    );
    d.destroy().done();
}

#[test]
fn force_off_turns_the_output_off_and_hands_it_to_the_pin_even_if_the_first_write_fails() {
    let mut d = driver(&[
        Transaction::write(ADDRESS, vec![OPERATION, OPERATION_OFF]).with_error(ErrorKind::Other),
        write(ADDRESS, &[ON_OFF_CONFIG, ON_OFF_CONFIG_CONTROL_PIN]),
    ]);
    assert_eq!(block_on(d.force_off()), Err(Error::I2c(ErrorKind::Other)));
    d.destroy().done();
}

#[test]
fn read_status_reads_the_detail_bytes_to_tell_warnings_from_faults() {
    let mut d = driver(&[
        // All clear: one read.
        read(ADDRESS, STATUS_WORD, &[0x00, 0x00]),
        // TEMPERATURE summary, OT warning: a warning.
        read(ADDRESS, STATUS_WORD, &[0x04, 0x00]),
        read(ADDRESS, STATUS_TEMPERATURE, &[OT_WARN]),
        // TEMPERATURE summary, OT fault: a fault.
        read(ADDRESS, STATUS_WORD, &[0x04, 0x00]),
        read(ADDRESS, STATUS_TEMPERATURE, &[OT_FAULT]),
        // IOUT summary (bit 14) with an OC warning.
        read(ADDRESS, STATUS_WORD, &[0x00, 0x40]),
        read(ADDRESS, STATUS_IOUT, &[IOUT_OC_WARN]),
        // VOUT summary (bit 15) and VOUT_OV_FAULT (bit 5).
        read(ADDRESS, STATUS_WORD, &[0x20, 0x80]),
        read(ADDRESS, STATUS_VOUT, &[VOUT_OV_FAULT]),
    ]);
    let health = |d: &mut Tps546<Mock>| block_on(d.read_status()).unwrap().health();
    assert_eq!(health(&mut d), Health::Ok);
    assert_eq!(health(&mut d), Health::Warning);
    assert_eq!(health(&mut d), Health::Fault);
    assert_eq!(health(&mut d), Health::Warning);
    assert_eq!(health(&mut d), Health::Fault);
    d.destroy().done();
}

fn with(mut first: Vec<Transaction>, rest: &[Transaction]) -> Vec<Transaction> {
    first.extend_from_slice(rest);
    first
}

#[test]
fn default_address_is_0x24() {
    assert_eq!(hearth_board::tps546::DEFAULT_ADDRESS, ADDRESS);
}

#[test]
fn init_single_chip_profile() {
    let mut d = driver(&init_single_chip(ID_D24A));
    block_on(d.init(&Config::single_chip())).unwrap();
    assert_eq!(d.vout_mode(), Some(VOUT_MODE_DEFAULT));
    d.destroy().done();
}

#[test]
fn init_accepts_the_other_device_ids() {
    for id in [ID_D24S, ID_K24A] {
        let mut d = driver(&init_single_chip(id));
        block_on(d.init(&Config::single_chip())).unwrap();
        d.destroy().done();
    }
}

#[test]
fn init_rejects_unknown_device_before_touching_the_output() {
    let other = [6, b'T', b'I', b'T', b'm', 0x24, b'B'];
    let mut d = driver(&[read(ADDRESS, IC_DEVICE_ID, &other)]);
    assert_eq!(
        block_on(d.init(&Config::single_chip())),
        Err(Error::WrongDevice {
            count: 6,
            id: [b'T', b'I', b'T', b'm', 0x24, b'B']
        })
    );
    d.destroy().done();

    // Right bytes, wrong block count.
    let mut bad_count = ID_D24A;
    bad_count[0] = 5;
    let mut d = driver(&[read(ADDRESS, IC_DEVICE_ID, &bad_count)]);
    assert!(matches!(
        block_on(d.init(&Config::single_chip())),
        Err(Error::WrongDevice { count: 5, .. })
    ));
    d.destroy().done();
}

#[test]
fn init_rejects_non_linear_vout_mode() {
    // Bits 6..5 = 01: VID mode.
    let mut d = driver(&[
        read(ADDRESS, IC_DEVICE_ID, &ID_D24A),
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        write(ADDRESS, &[ON_OFF_CONFIG, ON_OFF_CONFIG_CONTROL_PIN]),
        read(ADDRESS, VOUT_MODE, &[0x20]),
    ]);
    assert_eq!(
        block_on(d.init(&Config::single_chip())),
        Err(Error::UnsupportedVoutMode { found: 0x20 })
    );
    assert_eq!(block_on(d.set_vout_mv(1_200)), Err(Error::NotInitialized));
    d.destroy().done();
}

#[test]
fn init_with_absolute_vout_mode_uses_its_exponent() {
    // VOUT_MODE 0x16: absolute, exponent -10 → 2.0 V = 2048, 1.0 V = 1024.
    let mut d = driver(&[
        read(ADDRESS, IC_DEVICE_ID, &ID_D24A),
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        write(ADDRESS, &[ON_OFF_CONFIG, ON_OFF_CONFIG_CONTROL_PIN]),
        read(ADDRESS, VOUT_MODE, &[0x16]),
        word(VOUT_SCALE_LOOP, SCALE_LOOP_0_25),
        word(VIN_ON, VIN_ON_4V8),
        word(VIN_OFF, VIN_OFF_4V5),
        word(VOUT_MAX, [0x00, 0x08]),
        word(VOUT_MIN, [0x00, 0x04]),
        // Absolute: OV = 1.25 · VOUT_MAX = 2.5 V = 2560; UV = 0.75 · VOUT_MIN = 0.75 V = 768.
        word(VOUT_OV_FAULT_LIMIT, [0x00, 0x0A]),
        write(ADDRESS, &[VOUT_OV_FAULT_RESPONSE, RESPONSE_LATCH_OFF]),
        word(VOUT_UV_FAULT_LIMIT, [0x00, 0x03]),
        write(ADDRESS, &[VOUT_UV_FAULT_RESPONSE, RESPONSE_LATCH_OFF]),
        word(IOUT_OC_WARN_LIMIT, IOUT_25A),
        word(IOUT_OC_FAULT_LIMIT, IOUT_30A),
        word(OT_WARN_LIMIT, OT_105C),
        word(OT_FAULT_LIMIT, OT_145C),
        word(FREQUENCY_SWITCH, FREQ_650KHZ),
        write(ADDRESS, &[CLEAR_FAULTS]),
        // 1.2 V = 1228.8 → 1228 = 0x04CC.
        word(VOUT_COMMAND, [0xCC, 0x04]),
    ]);
    block_on(d.init(&Config::single_chip())).unwrap();
    block_on(d.set_vout_mv(1_200)).unwrap();
    d.destroy().done();
}

#[test]
fn init_rejects_inconsistent_config_without_bus_traffic() {
    let mut d = driver(&[]);
    let mut c = Config::single_chip();
    c.vin_off_mv = 5_000;
    assert_eq!(
        block_on(d.init(&c)),
        Err(Error::InvalidConfig {
            field: "vin_off_mv"
        })
    );
    let mut c = Config::single_chip();
    c.ot_fault_c = 100;
    assert!(matches!(
        block_on(d.init(&c)),
        Err(Error::InvalidConfig { .. })
    ));
    d.destroy().done();
}

#[test]
fn init_reports_bus_errors() {
    let mut d = driver(&[
        Transaction::write_read(ADDRESS, vec![IC_DEVICE_ID], vec![0; 7])
            .with_error(ErrorKind::Other),
    ]);
    assert_eq!(
        block_on(d.init(&Config::single_chip())),
        Err(Error::I2c(ErrorKind::Other))
    );
    d.destroy().done();
}

#[test]
fn power_on_sequence() {
    let mut d = driver(&with(
        init_single_chip(ID_D24A),
        &[
            word(VOUT_COMMAND, VOUT_1V15),
            word(VOUT_COMMAND, VOUT_1V2),
            write(ADDRESS, &[OPERATION, OPERATION_ON]),
            read(ADDRESS, OPERATION, &[OPERATION_ON]),
            write(ADDRESS, &[OPERATION, OPERATION_OFF]),
            read(ADDRESS, OPERATION, &[OPERATION_OFF]),
        ],
    ));
    block_on(d.init(&Config::single_chip())).unwrap();
    block_on(d.set_vout_mv(1_150)).unwrap();
    block_on(d.set_vout_mv(1_200)).unwrap();
    block_on(d.enable(true)).unwrap();
    block_on(d.enable(false)).unwrap();
    d.destroy().done();
}

#[test]
fn set_vout_refuses_values_outside_the_limits() {
    let mut d = driver(&with(
        init_single_chip(ID_D24A),
        &[word(VOUT_COMMAND, VOUT_1V0), word(VOUT_COMMAND, VOUT_2V0)],
    ));
    block_on(d.init(&Config::single_chip())).unwrap();
    let range = |mv| Error::OutOfRange {
        mv,
        min_mv: 1_000,
        max_mv: 2_000,
    };
    assert_eq!(block_on(d.set_vout_mv(999)), Err(range(999)));
    assert_eq!(block_on(d.set_vout_mv(2_001)), Err(range(2_001)));
    assert_eq!(block_on(d.set_vout_mv(0)), Err(range(0)));
    // The limits themselves are allowed.
    block_on(d.set_vout_mv(1_000)).unwrap();
    block_on(d.set_vout_mv(2_000)).unwrap();
    d.destroy().done();
}

#[test]
fn output_cannot_be_enabled_before_init_and_vout() {
    let mut d = driver(&[]);
    assert_eq!(block_on(d.set_vout_mv(1_200)), Err(Error::NotInitialized));
    assert_eq!(block_on(d.enable(true)), Err(Error::NotInitialized));
    d.destroy().done();
    let mut d = driver(&init_single_chip(ID_D24A));
    block_on(d.init(&Config::single_chip())).unwrap();
    assert_eq!(block_on(d.enable(true)), Err(Error::VoutNotSet));
    d.destroy().done();
}

#[test]
fn output_off_works_without_init() {
    let mut d = driver(&[
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        read(ADDRESS, OPERATION, &[OPERATION_OFF]),
    ]);
    block_on(d.enable(false)).unwrap();
    d.destroy().done();
}

#[test]
fn operation_readback_mismatch_is_an_error() {
    let mut d = driver(&[
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        read(ADDRESS, OPERATION, &[OPERATION_ON]),
    ]);
    assert_eq!(
        block_on(d.enable(false)),
        Err(Error::OperationNotAccepted {
            commanded: OPERATION_OFF,
            readback: OPERATION_ON
        })
    );
    d.destroy().done();
}

#[test]
fn read_vout_fetches_vout_mode_once() {
    let mut d = driver(&[
        read(ADDRESS, VOUT_MODE, &[VOUT_MODE_DEFAULT]),
        read(ADDRESS, READ_VOUT, &VOUT_1V2), // 614 / 512 V = 1.1992 V
        read(ADDRESS, READ_VOUT, &[0x00, 0x02]), // 512 / 512 V
    ]);
    assert_eq!(d.vout_mode(), None);
    assert_eq!(block_on(d.read_vout_mv()), Ok(1_199));
    assert_eq!(d.vout_mode(), Some(VOUT_MODE_DEFAULT));
    assert_eq!(block_on(d.read_vout_mv()), Ok(1_000));
    d.destroy().done();
}

#[test]
fn read_vout_after_init_uses_the_cached_mode() {
    let mut d = driver(&with(
        init_single_chip(ID_D24A),
        &[read(ADDRESS, READ_VOUT, &VOUT_1V15)], // 588 / 512 V = 1.1484 V
    ));
    block_on(d.init(&Config::single_chip())).unwrap();
    assert_eq!(block_on(d.read_vout_mv()), Ok(1_148));
    d.destroy().done();
}

#[test]
fn telemetry_reads_are_little_endian_slinear11() {
    let mut d = driver(&[
        // 0xD990: exponent -5, mantissa 400 → 12.5 A.
        read(ADDRESS, READ_IOUT, &[0x90, 0xD9]),
        // 0xCA80: exponent -7, mantissa 640 → 5.0 V.
        read(ADDRESS, READ_VIN, &[0x80, 0xCA]),
        // 0xCFFF: exponent -7, mantissa -1 → negative input reads as 0.
        read(ADDRESS, READ_VIN, &[0xFF, 0xCF]),
        // 0x0034: exponent 0, mantissa 52 → 52 °C.
        read(ADDRESS, READ_TEMPERATURE_1, &[0x34, 0x00]),
        // 0x07F6: exponent 0, mantissa -10 → -10 °C.
        read(ADDRESS, READ_TEMPERATURE_1, &[0xF6, 0x07]),
    ]);
    assert_eq!(block_on(d.read_iout_ma()), Ok(12_500));
    assert_eq!(block_on(d.read_vin_mv()), Ok(5_000));
    assert_eq!(block_on(d.read_vin_mv()), Ok(0));
    assert_eq!(block_on(d.read_temperature_mc()), Ok(52_000));
    assert_eq!(block_on(d.read_temperature_mc()), Ok(-10_000));
    d.destroy().done();
}

#[test]
fn status_word_and_clear_faults() {
    let mut d = driver(&[
        // Low byte 0x44 (OFF, TEMPERATURE), high byte 0x08 (POWER_GOOD#).
        read(ADDRESS, STATUS_WORD, &[0x44, 0x08]),
        read(ADDRESS, STATUS_WORD, &[0x40, 0x08]),
        write(ADDRESS, &[CLEAR_FAULTS]),
    ]);
    let s = block_on(d.status_word()).unwrap();
    assert_eq!(s, StatusWord(0x0844));
    assert!(s.off() && s.temperature() && s.power_good_negated());
    let s = block_on(d.status_word()).unwrap();
    assert!(s.off() && !s.temperature());
    block_on(d.clear_faults()).unwrap();
    d.destroy().done();
}

#[test]
fn errors_display() {
    let e: Error<ErrorKind> = Error::OutOfRange {
        mv: 2_500,
        min_mv: 1_000,
        max_mv: 2_000,
    };
    let text = format!("{e}");
    assert!(text.contains("2500") && text.contains("2000"), "{text}");
    let e: Error<ErrorKind> = Error::WrongDevice {
        count: 6,
        id: [0x54, 0x49, 0x54, 0x6D, 0x24, 0x42],
    };
    assert!(format!("{e}").contains("54 49 54 6D 24 42"));
}

proptest! {
    /// Any in-range request is written as floor(mv · 512 / 1000), little-endian.
    #[test]
    fn set_vout_writes_truncated_ulinear16(mv in 1_000u32..=2_000) {
        let raw = u16::try_from(mv * 512 / 1000).unwrap();
        let mut d = driver(&with(
            init_single_chip(ID_D24A),
            &[word(VOUT_COMMAND, raw.to_le_bytes())],
        ));
        block_on(d.init(&Config::single_chip())).unwrap();
        block_on(d.set_vout_mv(mv)).unwrap();
        d.destroy().done();
    }

    /// Out-of-range requests never reach the bus.
    #[test]
    fn set_vout_out_of_range_is_silent(mv in prop_oneof![0u32..1_000, 2_001u32..=u32::MAX]) {
        let mut d = driver(&init_single_chip(ID_D24A));
        block_on(d.init(&Config::single_chip())).unwrap();
        let refused = matches!(block_on(d.set_vout_mv(mv)), Err(Error::OutOfRange { .. }));
        prop_assert!(refused);
        d.destroy().done();
    }
}
