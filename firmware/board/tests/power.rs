//! The power stage against mock devices: timeouts and silent devices read as failures, the
//! core rail's power-on check, errors that are not thrown away, and the boot-time bus clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::tps546::*;
use common::{block_on, read, write};
use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as Pin};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use hearth_board::emc2101::Emc2101;
use hearth_board::ina260::Ina260;
use hearth_board::power::{PowerError, PowerStage, clear_bus};
use hearth_board::sensors::Reading;
use hearth_board::tps546::{Config, Tps546};

fn word(command: u8, le: [u8; 2]) -> Transaction {
    write(ADDRESS, &[command, le[0], le[1]])
}

/// What the RP2040 image's timeout wrapper hands the drivers when a transaction does not
/// finish in time (`embedded_hal::i2c::ErrorKind::Other`).
fn timed_out(t: Transaction) -> Transaction {
    t.with_error(ErrorKind::Other)
}

/// An EMC2101 whose first transaction fails: it is missing this round.
fn emc_missing() -> Emc2101<Mock> {
    Emc2101::new(
        Mock::new(&[timed_out(read(
            common::emc2101::ADDRESS,
            common::emc2101::PRODUCT_ID,
            &[0],
        ))]),
        common::emc2101::ADDRESS,
    )
}

/// An EMC2101 this test does not touch.
fn emc_idle() -> Emc2101<Mock> {
    Emc2101::new(Mock::new(&[]), common::emc2101::ADDRESS)
}

fn stage(
    emc: Emc2101<Mock>,
    tps: &[Transaction],
    ina: Option<&[Transaction]>,
    pin: &[Pin],
) -> PowerStage<Mock, PinMock> {
    PowerStage::new(
        emc,
        Tps546::new(Mock::new(tps), ADDRESS),
        ina.map(|t| Ina260::new(Mock::new(t), common::ina260::ADDRESS)),
        PinMock::new(pin),
        Config::for_core((1_000, 1_300), 1_150, 105),
    )
}

fn done(s: PowerStage<Mock, PinMock>) {
    let (emc, tps, ina, mut pin) = s.destroy();
    emc.destroy().done();
    tps.destroy().done();
    if let Some(ina) = ina {
        ina.destroy().done();
    }
    pin.done();
}

/// The BM1370 board's init conversation (limits as in tests/tps546.rs).
fn init_bm1370() -> Vec<Transaction> {
    vec![
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
    ]
}

fn power_on(read_back: [u8; 2]) -> Vec<Transaction> {
    let mut t = init_bm1370();
    t.extend([
        word(VOUT_COMMAND, VOUT_1V15),
        write(ADDRESS, &[OPERATION, OPERATION_ON]),
        read(ADDRESS, OPERATION, &[OPERATION_ON]),
        read(ADDRESS, READ_VOUT, &read_back),
    ]);
    t
}

fn rail_off() -> [Transaction; 2] {
    [
        write(ADDRESS, &[OPERATION, OPERATION_OFF]),
        read(ADDRESS, OPERATION, &[OPERATION_OFF]),
    ]
}

#[test]
fn boot_drops_the_pin_and_turns_the_regulator_off_on_the_bus() {
    let mut s = stage(
        emc_idle(),
        &[
            write(ADDRESS, &[OPERATION, OPERATION_OFF]),
            write(ADDRESS, &[ON_OFF_CONFIG, ON_OFF_CONFIG_CONTROL_PIN]),
        ],
        None,
        &[Pin::set(State::Low)],
    );
    block_on(s.boot()).unwrap();
    done(s);
}

#[test]
fn power_on_checks_the_core_voltage_against_an_upper_bound() {
    // 1.3 V measured for a 1.15 V request (> +5 %): the rail goes off again.
    let mut t = power_on(VOUT_1V3);
    t.extend(rail_off());
    let mut s = stage(
        emc_idle(),
        &t,
        None,
        &[Pin::set(State::High), Pin::set(State::Low)],
    );
    assert_eq!(
        block_on(s.core_on(1_150, &mut NoopDelay)),
        Err(PowerError::VoltageHigh { measured_mv: 1_299 })
    );
    done(s);
}

#[test]
fn power_on_within_bounds_leaves_the_rail_on() {
    let mut s = stage(
        emc_idle(),
        &power_on(VOUT_1V15),
        None,
        &[Pin::set(State::High)],
    );
    block_on(s.core_on(1_150, &mut NoopDelay)).unwrap();
    done(s);
}

#[test]
fn a_timed_out_regulator_reads_as_failed() {
    let mut s = stage(
        emc_missing(),
        &[timed_out(read(ADDRESS, STATUS_WORD, &[0, 0]))],
        None,
        &[],
    );
    let r = block_on(s.read_sensors());
    assert_eq!(r.regulator, Reading::Failed);
    assert_eq!(
        r.asic_mc,
        Reading::Failed,
        "a missing EMC2101 is a failed chip sensor"
    );
    done(s);
}

#[test]
fn a_regulator_that_times_out_mid_round_reads_as_failed() {
    let mut s = stage(
        emc_missing(),
        &[
            read(ADDRESS, STATUS_WORD, &[0, 0]),
            timed_out(read(ADDRESS, READ_TEMPERATURE_1, &[0, 0])),
        ],
        None,
        &[],
    );
    assert_eq!(block_on(s.read_sensors()).regulator, Reading::Failed);
    done(s);
}

#[test]
fn a_fitted_input_monitor_that_does_not_answer_is_a_failure_not_absent() {
    let ina = common::ina260::ADDRESS;
    let mut s = stage(
        emc_missing(),
        &[timed_out(read(ADDRESS, STATUS_WORD, &[0, 0]))],
        Some(&[timed_out(read(
            ina,
            common::ina260::MANUFACTURER_ID,
            &[0, 0],
        ))]),
        &[],
    );
    assert_eq!(block_on(s.read_sensors()).input, Reading::Failed);
    done(s);
}

#[test]
fn set_core_voltage_returns_the_regulator_error() {
    // Not initialised (the rail is off): refused, and the caller hears of it.
    let mut s = stage(emc_idle(), &[], None, &[]);
    assert_eq!(
        block_on(s.set_core_voltage(1_200)),
        Err(PowerError::Refused)
    );
    done(s);
    // A bus that times out.
    let mut t = power_on(VOUT_1V15);
    t.push(timed_out(word(VOUT_COMMAND, VOUT_1V2)));
    let mut s = stage(emc_idle(), &t, None, &[Pin::set(State::High)]);
    block_on(s.core_on(1_150, &mut NoopDelay)).unwrap();
    assert_eq!(
        block_on(s.set_core_voltage(1_200)),
        Err(PowerError::RegulatorSilent)
    );
    done(s);
}

#[test]
fn core_off_drops_the_pin_even_when_the_bus_is_hung() {
    let mut s = stage(
        emc_idle(),
        &[timed_out(write(ADDRESS, &[OPERATION, OPERATION_OFF]))],
        None,
        &[Pin::set(State::Low)],
    );
    assert_eq!(block_on(s.core_off()), Err(PowerError::RegulatorSilent));
    done(s);
}

#[test]
fn bus_clear_clocks_scl_until_sda_is_released_then_sends_a_stop() {
    // SDA held low for three clocks, released on the fourth look.
    let mut scl_expect = vec![Pin::set(State::High)];
    for _ in 0..3 {
        scl_expect.extend([Pin::set(State::Low), Pin::set(State::High)]);
    }
    scl_expect.extend([Pin::set(State::Low), Pin::set(State::High)]);
    let sda_expect = [
        Pin::set(State::High),
        Pin::get(State::Low),
        Pin::get(State::Low),
        Pin::get(State::Low),
        Pin::get(State::High),
        // STOP: SDA low while SCL is low, then high while SCL is high.
        Pin::set(State::Low),
        Pin::set(State::High),
    ];
    let (mut scl, mut sda) = (PinMock::new(&scl_expect), PinMock::new(&sda_expect));
    assert_eq!(clear_bus(&mut scl, &mut sda, &mut NoopDelay, 5), Ok(3));
    scl.done();
    sda.done();
}

#[test]
fn bus_clear_gives_up_after_nine_clocks() {
    let mut scl_expect = vec![Pin::set(State::High)];
    for _ in 0..9 {
        scl_expect.extend([Pin::set(State::Low), Pin::set(State::High)]);
    }
    scl_expect.extend([Pin::set(State::Low), Pin::set(State::High)]);
    let mut sda_expect = vec![Pin::set(State::High)];
    sda_expect.extend(std::iter::repeat_n(Pin::get(State::Low), 9));
    sda_expect.extend([Pin::set(State::Low), Pin::set(State::High)]);
    let (mut scl, mut sda) = (PinMock::new(&scl_expect), PinMock::new(&sda_expect));
    assert_eq!(clear_bus(&mut scl, &mut sda, &mut NoopDelay, 5), Ok(9));
    scl.done();
    sda.done();
}

/// An EMC2101 that initialises (datasheet defaults), takes the fan setting written while it was
/// missing, then sees `after` transactions.
fn emc_found_then(after: &[Transaction]) -> Emc2101<Mock> {
    use common::emc2101::*;
    let mut t = vec![
        read(ADDRESS, PRODUCT_ID, &[PRODUCT_EMC2101]),
        read(ADDRESS, MANUFACTURER_ID, &[SMSC]),
        read(ADDRESS, CONFIGURATION, &[0]),
        write(ADDRESS, &[CONFIGURATION, ALT_TCH]),
        write(ADDRESS, &[FAN_CONFIGURATION, FAN_CONFIGURATION_BITAXE]),
        write(ADDRESS, &[EXTERNAL_IDEALITY, IDEALITY_POR]),
        write(ADDRESS, &[BETA_COMPENSATION, BETA_POR]),
        write(ADDRESS, &[CONVERSION_RATE, ONE_PER_SECOND]),
        write(ADDRESS, &[FAN_SETTING, 63]), // 100 %
    ];
    t.extend_from_slice(after);
    Emc2101::new(Mock::new(&t), ADDRESS)
}

#[test]
fn a_fan_controller_that_times_out_gives_up_for_the_round_at_its_first_timeout() {
    // On a hung bus each further read would cost another timeout before the next round can
    // read the regulator: one is enough to know.
    let emc = emc_found_then(&[timed_out(read(
        common::emc2101::ADDRESS,
        common::emc2101::EXTERNAL_TEMP_MSB,
        &[0],
    ))]);
    let mut s = stage(
        emc,
        &[timed_out(read(ADDRESS, STATUS_WORD, &[0, 0]))],
        None,
        &[],
    );
    let r = block_on(s.read_sensors());
    assert_eq!(
        (r.asic_mc, r.board_mc, r.fan_rpm),
        (Reading::Failed, Reading::Failed, Reading::Failed)
    );
    done(s);
}
