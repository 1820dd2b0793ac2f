#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::ina260::*;
use common::{block_on, read, write};
use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use hearth_board::ina260::{Error, Ina260};

fn driver(expectations: &[Transaction]) -> Ina260<Mock> {
    Ina260::new(Mock::new(expectations), ADDRESS)
}

#[test]
fn default_address_is_0x40() {
    assert_eq!(hearth_board::ina260::DEFAULT_ADDRESS, ADDRESS);
}

#[test]
fn init_checks_ids_and_sets_averaging() {
    let mut d = driver(&[
        read(ADDRESS, MANUFACTURER_ID, &MANUFACTURER_TI),
        read(ADDRESS, DIE_ID, &DIE_INA260),
        write(
            ADDRESS,
            &[
                CONFIGURATION,
                CONFIGURATION_AVG256[0],
                CONFIGURATION_AVG256[1],
            ],
        ),
    ]);
    block_on(d.init()).unwrap();
    d.destroy().done();
}

#[test]
fn init_ignores_die_revision() {
    let mut d = driver(&[
        read(ADDRESS, MANUFACTURER_ID, &MANUFACTURER_TI),
        read(ADDRESS, DIE_ID, &[0x22, 0x71]),
        write(
            ADDRESS,
            &[
                CONFIGURATION,
                CONFIGURATION_AVG256[0],
                CONFIGURATION_AVG256[1],
            ],
        ),
    ]);
    block_on(d.init()).unwrap();
    d.destroy().done();
}

#[test]
fn init_rejects_other_manufacturer() {
    let mut d = driver(&[
        // Byte-swapped "IT": a little-endian reading would look like this.
        read(ADDRESS, MANUFACTURER_ID, &[0x49, 0x54]),
        read(ADDRESS, DIE_ID, &DIE_INA260),
    ]);
    assert_eq!(
        block_on(d.init()),
        Err(Error::WrongDevice {
            manufacturer_id: 0x4954,
            die_id: 0x2270
        })
    );
    d.destroy().done();
}

#[test]
fn init_rejects_other_ti_part() {
    let mut d = driver(&[
        read(ADDRESS, MANUFACTURER_ID, &MANUFACTURER_TI),
        read(ADDRESS, DIE_ID, &DIE_INA226),
    ]);
    assert_eq!(
        block_on(d.init()),
        Err(Error::WrongDevice {
            manufacturer_id: 0x5449,
            die_id: 0x2260
        })
    );
    d.destroy().done();
}

#[test]
fn init_reports_bus_errors() {
    let mut d = driver(&[
        Transaction::write_read(ADDRESS, vec![MANUFACTURER_ID], vec![0, 0]).with_error(
            ErrorKind::NoAcknowledge(embedded_hal::i2c::NoAcknowledgeSource::Address),
        ),
    ]);
    assert_eq!(
        block_on(d.init()),
        Err(Error::I2c(ErrorKind::NoAcknowledge(
            embedded_hal::i2c::NoAcknowledgeSource::Address
        )))
    );
    d.destroy().done();
}

#[test]
fn voltage_is_big_endian_1_25_mv() {
    let mut d = driver(&[
        read(ADDRESS, BUS_VOLTAGE, &[0x0F, 0xA0]), // 4000 · 1.25 = 5000 mV
        read(ADDRESS, BUS_VOLTAGE, &[0x25, 0x80]), // 9600 · 1.25 = 12000 mV
    ]);
    assert_eq!(block_on(d.voltage_mv()), Ok(5_000));
    assert_eq!(block_on(d.voltage_mv()), Ok(12_000));
    d.destroy().done();
}

#[test]
fn current_is_signed_1_25_ma() {
    let mut d = driver(&[
        read(ADDRESS, CURRENT, &[0x03, 0x20]), // 800 · 1.25 = 1000 mA
        read(ADDRESS, CURRENT, &[0xFC, 0xE0]), // -800 · 1.25
        read(ADDRESS, CURRENT, &[0x0B, 0xB8]), // 3000 · 1.25 = 3750 mA
    ]);
    assert_eq!(block_on(d.current_ma()), Ok(1_000));
    assert_eq!(block_on(d.current_ma()), Ok(-1_000));
    assert_eq!(block_on(d.current_ma()), Ok(3_750));
    d.destroy().done();
}

#[test]
fn power_is_10_mw() {
    let mut d = driver(&[read(ADDRESS, POWER, &[0x05, 0xDC])]); // 1500 · 10 mW
    assert_eq!(block_on(d.power_mw()), Ok(15_000));
    d.destroy().done();
}

#[test]
fn errors_display() {
    let e: Error<ErrorKind> = Error::WrongDevice {
        manufacturer_id: 0x1234,
        die_id: 0x2260,
    };
    let text = format!("{e}");
    assert!(text.contains("0x1234") && text.contains("0x2260"), "{text}");
}
