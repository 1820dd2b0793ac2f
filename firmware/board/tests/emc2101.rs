#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::emc2101::*;
use common::{block_on, read, write};
use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use hearth_board::emc2101::{Config, Emc2101, Error, Percent};

fn driver(expectations: &[Transaction]) -> Emc2101<Mock> {
    Emc2101::new(Mock::new(expectations), ADDRESS)
}

fn init_sequence(product: u8, config_before: u8, ideality: u8, beta: u8) -> Vec<Transaction> {
    vec![
        read(ADDRESS, PRODUCT_ID, &[product]),
        read(ADDRESS, MANUFACTURER_ID, &[SMSC]),
        read(ADDRESS, CONFIGURATION, &[config_before]),
        write(ADDRESS, &[CONFIGURATION, config_before | ALT_TCH]),
        write(ADDRESS, &[FAN_CONFIGURATION, FAN_CONFIGURATION_BITAXE]),
        write(ADDRESS, &[EXTERNAL_IDEALITY, ideality]),
        write(ADDRESS, &[BETA_COMPENSATION, beta]),
        write(ADDRESS, &[CONVERSION_RATE, ONE_PER_SECOND]),
    ]
}

#[test]
fn default_address_is_0x4c() {
    assert_eq!(hearth_board::emc2101::DEFAULT_ADDRESS, ADDRESS);
}

#[test]
fn init_with_default_config() {
    let mut d = driver(&init_sequence(
        PRODUCT_EMC2101,
        0x00,
        IDEALITY_POR,
        BETA_POR,
    ));
    block_on(d.init(&Config::default())).unwrap();
    d.destroy().done();
}

#[test]
fn init_keeps_other_configuration_bits() {
    // MASK (bit 7) and QUEUE (bit 0) already set: only ALT_TCH is added.
    let mut d = driver(&init_sequence(
        PRODUCT_EMC2101,
        0x81,
        IDEALITY_POR,
        BETA_POR,
    ));
    block_on(d.init(&Config::default())).unwrap();
    d.destroy().done();
}

#[test]
fn init_bitaxe_gamma_on_emc2101_r() {
    let mut d = driver(&init_sequence(
        PRODUCT_EMC2101_R,
        ALT_TCH,
        IDEALITY_GAMMA,
        BETA_GAMMA,
    ));
    block_on(d.init(&Config::bitaxe_gamma())).unwrap();
    d.destroy().done();
}

#[test]
fn init_rejects_other_product() {
    let mut d = driver(&[
        read(ADDRESS, PRODUCT_ID, &[0x14]),
        read(ADDRESS, MANUFACTURER_ID, &[SMSC]),
    ]);
    assert_eq!(
        block_on(d.init(&Config::default())),
        Err(Error::WrongDevice {
            product_id: 0x14,
            manufacturer_id: SMSC
        })
    );
    d.destroy().done();
}

#[test]
fn init_rejects_other_manufacturer() {
    let mut d = driver(&[
        read(ADDRESS, PRODUCT_ID, &[PRODUCT_EMC2101]),
        read(ADDRESS, MANUFACTURER_ID, &[0x00]),
    ]);
    assert_eq!(
        block_on(d.init(&Config::default())),
        Err(Error::WrongDevice {
            product_id: PRODUCT_EMC2101,
            manufacturer_id: 0x00
        })
    );
    d.destroy().done();
}

#[test]
fn init_rejects_out_of_range_config_without_bus_traffic() {
    let mut d = driver(&[]);
    let bad = Config {
        ideality: 0x40,
        beta: 0x00,
    };
    assert_eq!(
        block_on(d.init(&bad)),
        Err(Error::InvalidConfig {
            ideality: 0x40,
            beta: 0x00
        })
    );
    let bad = Config {
        ideality: 0x12,
        beta: 0x10,
    };
    assert!(matches!(
        block_on(d.init(&bad)),
        Err(Error::InvalidConfig { beta: 0x10, .. })
    ));
    d.destroy().done();
}

#[test]
fn init_reports_bus_errors() {
    let mut d =
        driver(
            &[Transaction::write_read(ADDRESS, vec![PRODUCT_ID], vec![0])
                .with_error(ErrorKind::Other)],
        );
    assert_eq!(
        block_on(d.init(&Config::default())),
        Err(Error::I2c(ErrorKind::Other))
    );
    d.destroy().done();
}

#[test]
fn set_fan_scales_percent_to_63() {
    let mut d = driver(&[
        write(ADDRESS, &[FAN_SETTING, 0]),
        write(ADDRESS, &[FAN_SETTING, 16]), // 25 % → 15.75
        write(ADDRESS, &[FAN_SETTING, 32]), // 50 % → 31.5
        write(ADDRESS, &[FAN_SETTING, 44]), // 70 % → 44.1
        write(ADDRESS, &[FAN_SETTING, 63]),
    ]);
    for p in [0, 25, 50, 70, 100] {
        block_on(d.set_fan(Percent::new(p).unwrap())).unwrap();
    }
    d.destroy().done();
}

#[test]
fn fan_rpm_reads_low_byte_first() {
    let mut d = driver(&[
        // 1800 counts = 0x0708 → 5,400,000 / 1800 = 3000 RPM.
        read(ADDRESS, TACH_LOW, &[0x08]),
        read(ADDRESS, TACH_HIGH, &[0x07]),
        // Stopped fan.
        read(ADDRESS, TACH_LOW, &[0xFF]),
        read(ADDRESS, TACH_HIGH, &[0xFF]),
        // 0x0100 = 256 counts → 21,093 RPM.
        read(ADDRESS, TACH_LOW, &[0x00]),
        read(ADDRESS, TACH_HIGH, &[0x01]),
    ]);
    assert_eq!(block_on(d.fan_rpm()), Ok(Some(3000)));
    assert_eq!(block_on(d.fan_rpm()), Ok(None));
    assert_eq!(block_on(d.fan_rpm()), Ok(Some(21_093)));
    d.destroy().done();
}

#[test]
fn internal_temperature() {
    let mut d = driver(&[
        read(ADDRESS, INTERNAL_TEMP, &[0x2D]),
        read(ADDRESS, INTERNAL_TEMP, &[0xF6]),
    ]);
    assert_eq!(block_on(d.internal_temperature_mc()), Ok(45_000));
    assert_eq!(block_on(d.internal_temperature_mc()), Ok(-10_000));
    d.destroy().done();
}

#[test]
fn external_temperature_reads_high_then_low() {
    let mut d = driver(&[
        // 60 + 0.5 + 0.25 + 0.125 °C.
        read(ADDRESS, EXTERNAL_TEMP_MSB, &[0x3C]),
        read(ADDRESS, EXTERNAL_TEMP_LSB, &[0xE0]),
        // -0.125 °C: 11-bit 0x7FF.
        read(ADDRESS, EXTERNAL_TEMP_MSB, &[0xFF]),
        read(ADDRESS, EXTERNAL_TEMP_LSB, &[0xE0]),
    ]);
    assert_eq!(block_on(d.external_temperature_mc()), Ok(60_875));
    assert_eq!(block_on(d.external_temperature_mc()), Ok(-125));
    d.destroy().done();
}

#[test]
fn external_diode_faults() {
    let mut d = driver(&[
        // 0x3F8: open.
        read(ADDRESS, EXTERNAL_TEMP_MSB, &[0x7F]),
        read(ADDRESS, EXTERNAL_TEMP_LSB, &[0x00]),
        // 0x3FF: short.
        read(ADDRESS, EXTERNAL_TEMP_MSB, &[0x7F]),
        read(ADDRESS, EXTERNAL_TEMP_LSB, &[0xE0]),
        // 0x3F9 = 127.125 °C is a reading.
        read(ADDRESS, EXTERNAL_TEMP_MSB, &[0x7F]),
        read(ADDRESS, EXTERNAL_TEMP_LSB, &[0x20]),
    ]);
    assert_eq!(
        block_on(d.external_temperature_mc()),
        Err(Error::SensorOpen)
    );
    assert_eq!(
        block_on(d.external_temperature_mc()),
        Err(Error::SensorShort)
    );
    assert_eq!(block_on(d.external_temperature_mc()), Ok(127_125));
    d.destroy().done();
}

#[test]
fn errors_display() {
    let e: Error<ErrorKind> = Error::WrongDevice {
        product_id: 0x14,
        manufacturer_id: 0x5D,
    };
    let text = format!("{e}");
    assert!(text.contains("0x14"), "{text}");
    assert!(format!("{}", Error::<ErrorKind>::SensorOpen).contains("open"));
}
