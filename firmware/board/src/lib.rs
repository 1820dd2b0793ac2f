//! Board support for Hearth's RP2040 boards, without a HAL: everything here is generic over
//! `embedded-hal(-async)` traits so it is tested on the host and runs unchanged on the MCU.
//!
//! * [`emc2101`], [`tps546`] (over [`pmbus`]), [`ina260`]: peripheral drivers (fan and
//!   temperatures, core regulator, input power monitor). Pure conversions are free functions.
//! * [`power`]: the board's power stage on top of them: sensor rounds as typed readings, the
//!   core rail's power-on and power-off, and the I²C bus clear at boot.
//! * [`i2c_scan`]: which addresses answer on the bus (the bring-up self-test).
//! * [`thermal`]: fan duty and throttle/shutdown zones with hysteresis, as pure functions.
//! * [`controller`]: the firmware's main-loop logic as a state machine (events in, actions
//!   out): power-on, job cadence from the host's work queue, nonce verification, safety.
#![no_std]
#![deny(missing_docs)]

pub mod controller;
pub mod emc2101;
pub mod i2c_scan;
pub mod ina260;
pub mod pmbus;
pub mod power;
pub mod sensors;
pub mod thermal;
pub mod tps546;
