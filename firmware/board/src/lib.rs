//! Board support for Hearth's RP2040 boards, without a HAL: everything here is generic over
//! `embedded-hal(-async)` traits so it is tested on the host and runs unchanged on the MCU.
//!
//! * [`emc2101`], [`tps546`], [`ina260`]: peripheral drivers (fan and temperatures, core
//!   regulator over PMBus, input power monitor). Pure conversions are free functions.
//! * [`thermal`]: fan duty and throttle/shutdown zones with hysteresis, as pure functions.
//! * [`controller`]: the firmware's main-loop logic as a state machine (events in, actions
//!   out): power-on, job cadence from the host's work queue, nonce verification, safety.
#![no_std]
#![deny(missing_docs)]

pub mod controller;
pub mod emc2101;
pub mod ina260;
pub mod thermal;
pub mod tps546;
