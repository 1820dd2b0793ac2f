//! Safety: what the sensors say and what the board does about it. Thermal zones and the fan
//! policy, sensor and fan failures, regulator warnings (throttle) and faults (stop), input
//! power, the host's silence, the safe state and the way out of it.

use hearth_link::{BoardToHost, Fault, LogLevel, Sensor};

use super::{Action, Actions, Controller, Out, Power, SafeReason, format, text};
use crate::pmbus::Health;
use crate::sensors::{InputPower, Reading, RegulatorReading, Sensors};
use crate::thermal::{ThermalZone, fan_percent, next_zone};

/// Failed chip-temperature (or input-monitor) readings, net of good ones (each good reading
/// takes one back), before the board stops hashing, with the fan already at 100 % from the
/// first one. A leaky bucket, so a sensor that fails every other reading still stops the board.
pub const SENSOR_FAILURES_TO_STOP: u8 = 5;
/// The bucket's ceiling: a sensor that failed for long needs this many good readings in a row
/// before the board trusts it again.
pub const SENSOR_FAILURES_MAX: u8 = 2 * SENSOR_FAILURES_TO_STOP;
/// With the core powered, the board stops hashing when its last good chip temperature is older
/// than this; it powers up only with one younger than this.
pub const SENSOR_STALE_MS: u32 = 2000;
/// Time between frequency steps while throttling.
pub const THROTTLE_STEP_MS: u32 = 5000;
/// A fan driven at 10 % or more whose tachometer has seen no pulse for
/// this long has stalled: a fault, and the fan to 100 % …
pub const FAN_STALL_MS: u32 = 3000;
/// … and if it is still stalled this long after it stopped, hashing stops.
pub const FAN_STALL_STOP_MS: u32 = 10_000;
/// Below this duty a fan may legitimately stand still ([`FAN_STALL_MS`]).
const FAN_STALL_MIN_PERCENT: u8 = 10;
/// Readings with the tachometer turning before a stalled fan is trusted again.
const FAN_RECOVERED_READINGS: u8 = 8;
/// Healthy readings in a row, after CLEAR_FAULTS, before the board leaves the Regulator or
/// InputPower safe state (2 s at the firmware's 4 Hz).
pub const RECOVERY_HEALTHY_READINGS: u8 = 8;
/// The wait between a regulator or input-power trip and the first CLEAR_FAULTS …
pub const RECOVERY_BACKOFF_MS: u32 = 10_000;
/// … doubling with each trip up to this.
pub const RECOVERY_BACKOFF_MAX_MS: u32 = 320_000;
/// Hashing this long without a trip resets the backoff.
const BACKOFF_RESET_MS: u32 = 600_000;
/// The host's Reset power-cycles the rail at most once in this long.
pub const RESET_MIN_INTERVAL_MS: u32 = 10_000;
/// A measured core voltage above the chip's envelope maximum by this (‰) stops the board.
pub const VOUT_ENVELOPE_MARGIN_PERMILLE: u32 = 1_050;

/// `now` has reached `at` (wrapping time).
/// While the regulator reports a warning, CLEAR_FAULTS goes out this often; a warning that
/// comes back after the clear is still there.
pub const WARNING_CLEAR_INTERVAL_MS: u32 = 10_000;

fn reached(now_ms: u32, at: u32) -> bool {
    now_ms.wrapping_sub(at) < u32::MAX / 2
}

impl Controller {
    /// Whether the clock is held down for heat or a regulator warning.
    pub(super) fn throttled(&self) -> bool {
        self.zone != ThermalZone::Normal
    }

    /// The lowest fan duty the board accepts now: full while it cannot see (no chip
    /// temperature yet, a failing sensor) or its cooling is in doubt, half or more in the safe
    /// state, else the thermal policy's duty.
    fn fan_floor(&self) -> u8 {
        let full = self.fan_stalled
            || self.sensor_failures > 0
            || self.last_asic_ok_ms.is_none()
            || matches!(
                self.safe,
                Some(
                    SafeReason::Thermal
                        | SafeReason::Sensor
                        | SafeReason::Regulator
                        | SafeReason::Fan
                )
            );
        if full {
            return 100;
        }
        let safe_floor = if self.safe.is_some() {
            self.config.limits.min_fan_percent.max(50)
        } else {
            0
        };
        self.policy_fan.max(safe_floor)
    }

    /// The fan at the floor, or higher if the host asked for more; never lower.
    pub(super) fn apply_fan(&mut self, out: &mut Out) {
        let fan = self.fan_floor().max(self.fan_request.unwrap_or(0)).min(100);
        if fan != self.fan {
            self.fan = fan;
            out.push(Action::SetFan(fan));
        }
    }

    /// Power off first, then cooling, then the report: the actions run in this order, and
    /// cutting the core is what matters most if a later one stalls. PowerDown goes out whatever
    /// the controller believes about the rail: it may be wrong (a rail left on by a previous
    /// run, a power-up in flight).
    pub(super) fn enter_safe(
        &mut self,
        now_ms: u32,
        reason: SafeReason,
        fault: Fault,
        out: &mut Out,
    ) {
        out.push(Action::PowerDown);
        self.power = Power::Off;
        self.up_since = None;
        self.queue.clear();
        self.jobs.clear();
        self.asked_for_work_ms = None;
        // A worse reason replaces a milder one (a thermal fault outranks a silent host); a
        // milder one never hides a worse one.
        if self.safe.is_none_or(|current| reason > current) {
            self.safe = Some(reason);
        }
        if matches!(reason, SafeReason::Regulator | SafeReason::InputPower) {
            self.arm_recovery(now_ms);
        }
        self.apply_fan(out);
        out.send(BoardToHost::Fault(fault));
    }

    pub(super) fn leave_safe(&mut self, now_ms: u32, out: &mut Out) {
        if self.safe.take().is_some() {
            out.send(BoardToHost::Fault(Fault::Cleared));
            self.retry_power_at = Some(now_ms);
            self.apply_fan(out);
        }
    }

    /// The next CLEAR_FAULTS after the current backoff, which then doubles.
    fn arm_recovery(&mut self, now_ms: u32) {
        let r = &mut self.recovery;
        r.clear_at = now_ms.wrapping_add(r.backoff_ms);
        r.cleared = false;
        r.healthy = 0;
        r.backoff_ms = r.backoff_ms.saturating_mul(2).min(RECOVERY_BACKOFF_MAX_MS);
    }

    /// The host's Reset: a power cycle, unless a hardware fault holds the board or the last
    /// one was less than [`RESET_MIN_INTERVAL_MS`] ago.
    pub(super) fn host_reset(&mut self, now_ms: u32, out: &mut Out) {
        if let Some(reason) = self.safe
            && !reason.host_clearable()
        {
            out.log(
                LogLevel::Warn,
                text("reset ignored: the board is safe for a hardware fault"),
            );
            return;
        }
        if let Some(at) = self.last_reset_ms
            && now_ms.wrapping_sub(at) < RESET_MIN_INTERVAL_MS
        {
            out.log(
                LogLevel::Warn,
                format(format_args!(
                    "reset ignored: the last was {} ms ago (one per {RESET_MIN_INTERVAL_MS} ms)",
                    now_ms.wrapping_sub(at)
                )),
            );
            return;
        }
        self.last_reset_ms = Some(now_ms);
        self.enter_safe(now_ms, SafeReason::HostReset, Fault::Cleared, out);
        self.leave_safe(now_ms, out);
    }

    /// The firmware could not carry out a power action (for now: a core-voltage change). The
    /// regulator is in doubt, so the board stops and reports why.
    pub fn on_power_error(&mut self, now_ms: u32, reason: &str) -> Actions {
        let mut out = Out::default();
        out.log(LogLevel::Warn, text(reason));
        if self.safe.is_none_or(|r| r < SafeReason::Regulator) {
            self.enter_safe(
                now_ms,
                SafeReason::Regulator,
                Fault::SensorFailure {
                    sensor: Sensor::Regulator,
                },
                &mut out,
            );
        }
        self.finish(out)
    }

    /// Whether the chip temperature was read successfully within [`SENSOR_STALE_MS`].
    fn asic_temperature_recent(&self, now_ms: u32) -> bool {
        self.last_asic_ok_ms
            .is_some_and(|at| now_ms.wrapping_sub(at) < SENSOR_STALE_MS)
    }

    /// Host silence, a stalled sensor round, fault recovery and power-up.
    pub(super) fn safety_tick(&mut self, now_ms: u32, out: &mut Out) {
        let silent = now_ms.wrapping_sub(self.last_host_ms);
        if silent >= self.config.host_timeout_ms && self.safe.is_none() {
            self.enter_safe(
                now_ms,
                SafeReason::HostSilent,
                Fault::HostSilent { silent_ms: silent },
                out,
            );
        }
        // Powered without a recent chip temperature (the sensor task stalled, or every reading
        // is missing): the board cannot see a runaway, so it stops.
        if self.power != Power::Off && self.safe.is_none() && !self.asic_temperature_recent(now_ms)
        {
            self.enter_safe(
                now_ms,
                SafeReason::Sensor,
                Fault::SensorFailure {
                    sensor: Sensor::AsicTemperature,
                },
                out,
            );
        }
        if matches!(
            self.safe,
            Some(SafeReason::Regulator | SafeReason::InputPower)
        ) && !self.recovery.cleared
            && reached(now_ms, self.recovery.clear_at)
        {
            self.recovery.cleared = true;
            self.recovery.healthy = 0;
            out.push(Action::ClearRegulatorFaults);
        }
        if let Some(since) = self.up_since
            && now_ms.wrapping_sub(since) >= BACKOFF_RESET_MS
        {
            self.recovery.backoff_ms = RECOVERY_BACKOFF_MS;
        }
        if self.power == Power::Off
            && self.safe.is_none()
            && self.zone != ThermalZone::Shutdown
            && self.sensor_failures == 0
            && self.input_failures == 0
            && !self.fan_stalled
            && self.asic_temperature_recent(now_ms)
            && let Some(at) = self.retry_power_at
            && reached(now_ms, at)
        {
            self.retry_power_at = None;
            self.power = Power::Starting;
            self.generation = self.generation.wrapping_add(1);
            if self.zone == ThermalZone::Normal {
                self.frequency_khz = self.config.frequency_khz;
            }
            out.push(Action::PowerUp {
                core_mv: self.core_mv,
                frequency_khz: self.frequency_khz,
                generation: self.generation,
            });
            self.powered_with = (self.core_mv, self.frequency_khz);
        }
    }

    /// A round of sensor readings.
    pub fn on_sensors(&mut self, now_ms: u32, sensors: Sensors) -> Actions {
        let mut out = Out::default();
        self.sensors_round(now_ms, sensors, &mut out);
        self.finish(out)
    }

    fn sensors_round(&mut self, now_ms: u32, sensors: Sensors, out: &mut Out) {
        self.last_sensors_ms = now_ms;
        self.sensors = sensors;
        let asic = self.check_asic(now_ms, sensors.asic_mc, out);
        self.check_fan(now_ms, sensors.fan_rpm, out);
        if self.check_regulator(now_ms, sensors.regulator, out)
            || self.check_input(now_ms, sensors.input, out)
        {
            return;
        }
        self.check_recovery(now_ms, &sensors, out);
        let vr_mc = sensors.regulator.value().map(|r| r.temp_mc);
        match asic {
            Some(asic) => self.thermal(now_ms, asic, vr_mc, out),
            None => {
                // No chip temperature: the regulator's own limit still stops the board.
                if let Some(vr) = vr_mc
                    && vr >= self.config.limits.vr_shutdown_mc
                    && self.safe != Some(SafeReason::Thermal)
                {
                    self.zone = ThermalZone::Shutdown;
                    self.enter_safe(
                        now_ms,
                        SafeReason::Thermal,
                        Fault::RegulatorOverTemperature { temp_mc: vr },
                        out,
                    );
                }
            }
        }
        self.apply_fan(out);
    }

    /// Chip temperature: the one sensor hashing cannot do without.
    fn check_asic(&mut self, now_ms: u32, reading: Reading<i32>, out: &mut Out) -> Option<i32> {
        match reading {
            Reading::Value(t) => {
                self.last_asic_ok_ms = Some(now_ms);
                self.sensor_failures = self.sensor_failures.saturating_sub(1);
                if self.sensor_failures == 0 && self.safe == Some(SafeReason::Sensor) {
                    self.leave_safe(now_ms, out);
                }
                Some(t)
            }
            Reading::Failed => {
                let fault = Fault::SensorFailure {
                    sensor: Sensor::AsicTemperature,
                };
                if self.sensor_failures == 0 {
                    out.send(BoardToHost::Fault(fault.clone()));
                }
                self.sensor_failures = (self.sensor_failures + 1).min(SENSOR_FAILURES_MAX);
                self.apply_fan(out);
                if self.sensor_failures >= SENSOR_FAILURES_TO_STOP
                    && self.safe.is_none_or(|r| r < SafeReason::Sensor)
                {
                    self.enter_safe(now_ms, SafeReason::Sensor, fault, out);
                }
                None
            }
            Reading::Absent => None,
        }
    }

    /// A fan that stands still while driven: a fault and full duty at once, a stop if it
    /// persists.
    fn check_fan(&mut self, now_ms: u32, rpm: Reading<u32>, out: &mut Out) {
        let fault = Fault::SensorFailure {
            sensor: Sensor::Fan,
        };
        match rpm {
            Reading::Value(0) if self.fan >= FAN_STALL_MIN_PERCENT => {
                self.fan_good_readings = 0;
                let since = *self.fan_still_since.get_or_insert(now_ms);
                let still_ms = now_ms.wrapping_sub(since);
                if still_ms >= FAN_STALL_MS && !self.fan_stalled {
                    self.fan_stalled = true;
                    out.send(BoardToHost::Fault(fault.clone()));
                    self.apply_fan(out);
                }
                if still_ms >= FAN_STALL_STOP_MS && self.safe.is_none_or(|r| r < SafeReason::Fan) {
                    self.enter_safe(now_ms, SafeReason::Fan, fault, out);
                }
            }
            Reading::Value(_) => {
                self.fan_still_since = None;
                if self.fan_stalled {
                    self.fan_good_readings = self.fan_good_readings.saturating_add(1);
                    if self.fan_good_readings >= FAN_RECOVERED_READINGS {
                        self.fan_stalled = false;
                        self.fan_good_readings = 0;
                        if self.safe == Some(SafeReason::Fan) {
                            self.leave_safe(now_ms, out);
                        } else {
                            out.send(BoardToHost::Fault(Fault::Cleared));
                        }
                    }
                }
            }
            Reading::Failed | Reading::Absent => {}
        }
    }

    /// The regulator: faults stop the board, warnings throttle it, silence while powered stops
    /// it, and so does a core voltage above the chip's envelope. True when the board stopped.
    fn check_regulator(
        &mut self,
        now_ms: u32,
        reading: Reading<RegulatorReading>,
        out: &mut Out,
    ) -> bool {
        let may_stop = self.safe.is_none_or(|r| r < SafeReason::Regulator);
        match reading {
            Reading::Failed => {
                if self.power != Power::Off && may_stop {
                    self.enter_safe(
                        now_ms,
                        SafeReason::Regulator,
                        Fault::SensorFailure {
                            sensor: Sensor::Regulator,
                        },
                        out,
                    );
                    return true;
                }
            }
            Reading::Value(r) => {
                // With the rail off (on purpose) its status says little; power-up clears it.
                let powered = self.power != Power::Off;
                if powered && r.health == Health::Fault && may_stop {
                    self.enter_safe(
                        now_ms,
                        SafeReason::Regulator,
                        Fault::RegulatorFault {
                            status_word: r.status_word,
                        },
                        out,
                    );
                    return true;
                }
                let warning = powered && r.health == Health::Warning;
                if warning && !self.regulator_warning {
                    out.log(
                        LogLevel::Warn,
                        format(format_args!(
                            "regulator warning (STATUS_WORD 0x{:04X}): throttling",
                            r.status_word
                        )),
                    );
                }
                self.regulator_warning = warning;
                // The status bits are latched: clear them (at most every
                // WARNING_CLEAR_INTERVAL_MS) so that a warning counts only while its cause lasts.
                if warning
                    && self
                        .warning_cleared_ms
                        .is_none_or(|at| now_ms.wrapping_sub(at) >= WARNING_CLEAR_INTERVAL_MS)
                {
                    self.warning_cleared_ms = Some(now_ms);
                    out.push(Action::ClearRegulatorFaults);
                }
                let bound =
                    u32::from(self.config.core_mv_range.1) * VOUT_ENVELOPE_MARGIN_PERMILLE / 1000;
                if powered && u32::from(r.vout_mv) > bound && may_stop {
                    out.log(
                        LogLevel::Warn,
                        format(format_args!(
                            "core at {} mV, above the chip's {bound} mV bound",
                            r.vout_mv
                        )),
                    );
                    self.enter_safe(
                        now_ms,
                        SafeReason::Regulator,
                        Fault::RegulatorFault {
                            status_word: r.status_word,
                        },
                        out,
                    );
                    return true;
                }
            }
            Reading::Absent => {}
        }
        false
    }

    fn input_in_limits(&self, p: InputPower, powered: bool) -> bool {
        let (lo, hi) = self.config.input_mv_range;
        !((p.mv < lo && powered) || p.mv > hi || p.mw > self.config.max_input_mw)
    }

    /// Input power out of limits stops the board; so does a monitor that stops answering, or
    /// the board would lose its input protection without a word. True when the board stopped.
    fn check_input(&mut self, now_ms: u32, reading: Reading<InputPower>, out: &mut Out) -> bool {
        let may_stop = self.safe.is_none_or(|r| r < SafeReason::InputPower);
        match reading {
            Reading::Failed => {
                let fault = Fault::SensorFailure {
                    sensor: Sensor::PowerMonitor,
                };
                if self.input_failures == 0 {
                    out.send(BoardToHost::Fault(fault.clone()));
                }
                self.input_failures = (self.input_failures + 1).min(SENSOR_FAILURES_MAX);
                if self.input_failures >= SENSOR_FAILURES_TO_STOP && may_stop {
                    self.enter_safe(now_ms, SafeReason::InputPower, fault, out);
                    return true;
                }
            }
            Reading::Value(p) => {
                self.input_failures = self.input_failures.saturating_sub(1);
                if !self.input_in_limits(p, self.power == Power::Up) && may_stop {
                    self.enter_safe(
                        now_ms,
                        SafeReason::InputPower,
                        Fault::InputPower {
                            input_mv: p.mv,
                            input_mw: p.mw,
                        },
                        out,
                    );
                    return true;
                }
            }
            Reading::Absent => {}
        }
        false
    }

    /// In the Regulator or InputPower safe state, after CLEAR_FAULTS: count healthy rounds and
    /// leave after [`RECOVERY_HEALTHY_READINGS`]; a round that is not healthy starts the next,
    /// longer backoff.
    fn check_recovery(&mut self, now_ms: u32, sensors: &Sensors, out: &mut Out) {
        if !matches!(
            self.safe,
            Some(SafeReason::Regulator | SafeReason::InputPower)
        ) || !self.recovery.cleared
        {
            return;
        }
        let regulator_ok = match sensors.regulator {
            Reading::Value(r) => r.health != Health::Fault,
            Reading::Absent => true,
            Reading::Failed => false,
        };
        let input_ok = match sensors.input {
            Reading::Value(p) => self.input_in_limits(p, true) && self.input_failures == 0,
            Reading::Absent => true,
            Reading::Failed => false,
        };
        if !(regulator_ok && input_ok) {
            self.arm_recovery(now_ms);
            return;
        }
        self.recovery.healthy = self.recovery.healthy.saturating_add(1);
        if self.recovery.healthy >= RECOVERY_HEALTHY_READINGS {
            self.leave_safe(now_ms, out);
        }
    }

    fn thermal(&mut self, now_ms: u32, asic: i32, vr_mc: Option<i32>, out: &mut Out) {
        let limits = self.config.limits;
        let mut zone = next_zone(&limits, self.zone, asic, vr_mc);
        // A regulator warning throttles like heat does.
        if self.regulator_warning && zone == ThermalZone::Normal {
            zone = ThermalZone::Throttle;
        }
        match (self.zone, zone) {
            (_, ThermalZone::Shutdown) if self.safe != Some(SafeReason::Thermal) => {
                let vr_hot = vr_mc.is_some_and(|t| t >= limits.vr_shutdown_mc);
                let fault = match vr_mc {
                    Some(vr) if vr_hot && asic < limits.shutdown_mc => {
                        Fault::RegulatorOverTemperature { temp_mc: vr }
                    }
                    _ => Fault::OverTemperature {
                        temp_mc: asic,
                        limit_mc: limits.shutdown_mc,
                    },
                };
                self.zone = zone;
                self.enter_safe(now_ms, SafeReason::Thermal, fault, out);
            }
            (ThermalZone::Shutdown, ThermalZone::Normal | ThermalZone::Throttle)
                if self.safe == Some(SafeReason::Thermal) =>
            {
                self.zone = zone;
                self.leave_safe(now_ms, out);
            }
            (ThermalZone::Normal, ThermalZone::Throttle) => {
                self.last_throttle_ms = now_ms;
                self.throttle_step(asic, out);
            }
            (ThermalZone::Throttle, ThermalZone::Normal) => {
                if self.power == Power::Up && self.frequency_khz != self.config.frequency_khz {
                    out.push(Action::SetFrequency {
                        from_khz: self.frequency_khz,
                        to_khz: self.config.frequency_khz,
                    });
                }
                self.frequency_khz = self.config.frequency_khz;
                out.send(BoardToHost::Fault(Fault::Cleared));
            }
            (ThermalZone::Throttle, ThermalZone::Throttle)
                if now_ms.wrapping_sub(self.last_throttle_ms) >= THROTTLE_STEP_MS =>
            {
                self.last_throttle_ms = now_ms;
                self.throttle_step(asic, out);
            }
            _ => {}
        }
        self.zone = zone;
        self.policy_fan = fan_percent(&limits, asic);
    }

    fn throttle_step(&mut self, asic_mc: i32, out: &mut Out) {
        // 10 % of the configured clock per step, never below the model's minimum.
        let step = (self.config.frequency_khz / 10).max(6_250);
        let to = self
            .frequency_khz
            .saturating_sub(step)
            .max(self.config.min_frequency_khz);
        if to != self.frequency_khz && self.power == Power::Up {
            out.push(Action::SetFrequency {
                from_khz: self.frequency_khz,
                to_khz: to,
            });
        }
        self.frequency_khz = to;
        out.send(BoardToHost::Fault(Fault::Throttling {
            temp_mc: asic_mc,
            frequency_khz: to,
        }));
    }
}
