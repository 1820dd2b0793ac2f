//! The firmware's main-loop logic as a pure state machine: events in (host messages, nonces,
//! sensor readings, time), actions out (frames to the host, jobs to the chips, fan, power,
//! frequency). The RP2040 crate only performs the actions; everything that decides is here and
//! tested on the host. Every event method returns its [`Actions`], in the order to perform them.
//!
//! * `safety`: sensors, thermal policy, faults, the safe state and recovery.
//! * `work`: the work queue, job cadence, chain bring-up answers, nonce checks.
//! * `telemetry`: what the board reports about itself.
//!
//! Safety first: the controller stops hashing and powers the core down on its own, without the
//! host, when the chips or the regulator get too hot, when the regulator reports a fault, when
//! a sensor or the fan fails for more than a moment, or when the host has been silent for the
//! board's timeout. Every fault is reported with its reason.

mod safety;
mod telemetry;
mod work;

use core::fmt::Write as _;

use bm13xx::job::FullHeaderJob;
use bm13xx::model::ChipModel;
use bm13xx::register::DEFAULT_VERSION_MASK;
use bm13xx::verify::NonceVerifier;
use heapless::{Deque, String, Vec};
use hearth_link::{
    BoardState, BoardToHost, Capabilities, ChipCounters, Enumeration, HostToBoard, LogLevel,
    WorkItem,
};

pub use crate::sensors::{InputPower, Reading, RegulatorReading, Sensors};
use crate::thermal::{ThermalLimits, ThermalZone};

pub use safety::{
    FAN_STALL_MS, FAN_STALL_STOP_MS, RECOVERY_BACKOFF_MAX_MS, RECOVERY_BACKOFF_MS,
    RECOVERY_HEALTHY_READINGS, RESET_MIN_INTERVAL_MS, SENSOR_FAILURES_MAX, SENSOR_FAILURES_TO_STOP,
    SENSOR_STALE_MS, THROTTLE_STEP_MS, VOUT_ENVELOPE_MARGIN_PERMILLE, WARNING_CLEAR_INTERVAL_MS,
};
pub use telemetry::TELEMETRY_MS;
pub use work::{QUEUE_DEPTH, QUEUE_LOW, WORK_LOW_REPEAT_MS};

/// Most actions one event can produce. The worst case (a sensor round that fails a sensor,
/// trips a fault and reports both) is far below; `tests/controller.rs` proves the bound by
/// driving every event through random sequences, and an overflow is never silent: the dropped
/// count is reported to the host at the next tick ([`Controller::actions_dropped`]).
pub const MAX_ACTIONS: usize = 16;

/// The actions one event produced, in order.
pub type Actions = Vec<Action, MAX_ACTIONS>;

/// The watchdog may be fed only while both the sensor round and the safety tick have run
/// within this long ([`Controller::watchdog_may_feed`]).
pub const WATCHDOG_PROOF_MS: u32 = 1000;

/// What the board is, from its definition.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// Board id.
    pub board_id: &'static str,
    /// Serial number.
    pub serial: String<24>,
    /// Firmware version.
    pub firmware: [u8; 3],
    /// Chip model.
    pub model: ChipModel,
    /// Chips fitted.
    pub chips: u16,
    /// Hash clock, kHz.
    pub frequency_khz: u32,
    /// Lowest hash clock throttling may go to, kHz.
    pub min_frequency_khz: u32,
    /// Highest hash clock the host may ask for, kHz (the model's envelope).
    pub max_frequency_khz: u32,
    /// Core voltage, mV.
    pub core_mv: u16,
    /// Allowed core voltage range, mV: the chip model's envelope (boards/asics.toml).
    pub core_mv_range: (u16, u16),
    /// Chip difficulty (power of two).
    pub ticket_difficulty: u32,
    /// Thermal limits.
    pub limits: ThermalLimits,
    /// Safe state after this long without a host message, ms.
    pub host_timeout_ms: u32,
    /// Accepted input voltage, mV.
    pub input_mv_range: (u32, u32),
    /// Input power limit, mW.
    pub max_input_mw: u32,
    /// Time between jobs when the tip does not change, ms.
    pub job_interval_ms: u32,
}

/// Something for the firmware to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "no_std without alloc: no Box; actions live briefly in a fixed list"
)]
pub enum Action {
    /// Send a frame to the host.
    Send(BoardToHost),
    /// Send a job to the chips.
    SendJob(FullHeaderJob),
    /// Write the chips' version-rolling register (0xA4) to every chip, so that they roll
    /// exactly these bits: after every job already sent, before the next. Full-header chips roll
    /// chip-wide, not per job, so a job whose mask differs from the last needs this first, or
    /// the chips roll (and clear) version bits its template set and no nonce verifies.
    SetVersionMask(u32),
    /// Switch the hash clock off on every chip ([`bm13xx::ChainTx::stop_hashing`]), after the
    /// jobs already sent: the chips stay powered and configured but stop hashing and drawing
    /// hashing power. Answer with [`Controller::on_hashing_stopped`] once the write went out.
    StopHashing,
    /// Ramp the hash clock back up after [`Action::StopHashing`]
    /// ([`bm13xx::ChainTx::resume_hashing`]) to the current clock. Answer with
    /// [`Controller::on_hashing_resumed`] once the ramp is done; no job goes out before.
    ResumeHashing,
    /// Set the fan duty, percent.
    SetFan(u8),
    /// Power up: regulator on at `core_mv`, release reset, initialise the chain at
    /// `frequency_khz`. Answer with [`Controller::on_chain_up`] or [`Controller::on_chain_failed`]
    /// carrying the same `generation`, so that the answer to an abandoned power-up is ignored.
    PowerUp {
        /// Core voltage.
        core_mv: u16,
        /// Hash clock.
        frequency_khz: u32,
        /// Which power-up this is.
        generation: u32,
    },
    /// Hashing stops: chips held in reset, core voltage off (enable pin low, then OPERATION
    /// off). Always safe to perform, whatever the firmware believes the rail is doing.
    PowerDown,
    /// Ramp the hash clock.
    SetFrequency {
        /// From, kHz.
        from_khz: u32,
        /// To, kHz.
        to_khz: u32,
    },
    /// Change the core voltage; a failure goes to [`Controller::on_power_error`].
    SetCoreVoltage(u16),
    /// CLEAR_FAULTS on the regulator, before the board trusts its status again.
    ClearRegulatorFaults,
    /// Probe the I²C bus ([`crate::i2c_scan::scan`]) and send the host a
    /// [`BoardToHost::I2cScan`]: the host asked, for its bring-up self-test.
    ScanI2c,
}

/// The actions of one event, with a count of any that did not fit.
#[derive(Debug, Default)]
struct Out {
    list: Actions,
    dropped: u32,
}

impl Out {
    fn push(&mut self, action: Action) {
        if action == Action::PowerDown {
            self.power_down();
        } else if self.list.push(action).is_err() {
            self.dropped += 1;
        }
    }

    /// PowerDown goes first, once, and is never the one dropped.
    fn power_down(&mut self) {
        if self.list.contains(&Action::PowerDown) {
            return;
        }
        if self.list.is_full() {
            self.list.pop();
            self.dropped += 1;
        }
        let _ = self.list.insert(0, Action::PowerDown);
    }

    fn send(&mut self, message: BoardToHost) {
        self.push(Action::Send(message));
    }

    fn log(&mut self, level: LogLevel, text: String<96>) {
        self.send(BoardToHost::Log { level, text });
    }
}

/// Why the board is in its safe state, mildest first: a worse reason replaces a milder one,
/// never the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SafeReason {
    HostReset,
    HostSilent,
    InputPower,
    Sensor,
    Fan,
    Regulator,
    Thermal,
}

impl SafeReason {
    /// Reasons the host may clear; the others clear only when the hardware is healthy again.
    fn host_clearable(self) -> bool {
        matches!(self, SafeReason::HostReset | SafeReason::HostSilent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    /// Waiting to power up (at boot, or after a fault cleared).
    Off,
    /// Power-up requested, waiting for the chain.
    Starting,
    /// Hashing possible.
    Up,
}

/// The chips' hash clock as the controller last had it set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashClock {
    /// Running: as bring-up leaves it, or resumed.
    On,
    /// [`Action::StopHashing`] issued, not yet confirmed.
    Stopping,
    /// The clock-off write went out: the chips are not hashing.
    Off,
    /// [`Action::ResumeHashing`] issued, the ramp not yet done.
    Starting,
}

/// The way out of the Regulator and InputPower safe states: after a backoff, CLEAR_FAULTS,
/// then enough healthy readings in a row.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    /// When the next CLEAR_FAULTS may go out.
    clear_at: u32,
    /// CLEAR_FAULTS sent; counting healthy readings.
    cleared: bool,
    healthy: u8,
    /// The wait before the next attempt; doubles with each trip.
    backoff_ms: u32,
}

/// The controller.
#[derive(Debug)]
pub struct Controller {
    config: BoardConfig,
    power: Power,
    safe: Option<SafeReason>,
    zone: ThermalZone,
    paused: bool,
    hash_clock: HashClock,
    /// The version-rolling mask the chips were last given; `None` when in doubt (a chain command
    /// was dropped), so the next job writes it again.
    chip_version_mask: Option<u32>,
    queue: Deque<WorkItem, QUEUE_DEPTH>,
    /// The jobs the chips have, each with the host's work id: the shared nonce verifier.
    jobs: NonceVerifier<u32>,
    counters: Vec<ChipCounters, 16>,
    share_floor_bits: u32,
    frequency_khz: u32,
    core_mv: u16,
    /// The host's fan request; it can only raise the fan above [`Controller::fan_floor`].
    fan_request: Option<u8>,
    /// What the thermal policy wants from the last chip temperature.
    policy_fan: u8,
    fan: u8,
    last_host_ms: u32,
    last_job_ms: u32,
    last_telemetry_ms: u32,
    last_throttle_ms: u32,
    /// Watchdog proof: when the sensor round and the tick last ran.
    last_sensors_ms: u32,
    last_tick_ms: u32,
    send_next_now: bool,
    /// When the board last asked for work or got some; `None` = ask as soon as the queue is low.
    asked_for_work_ms: Option<u32>,
    sensor_failures: u8,
    input_failures: u8,
    /// When the chip temperature was last read successfully.
    last_asic_ok_ms: Option<u32>,
    sensors: Sensors,
    regulator_warning: bool,
    /// When CLEAR_FAULTS last went out for a regulator warning: PMBus status bits stay latched
    /// until cleared, so without it one passing warning would throttle the board for good.
    warning_cleared_ms: Option<u32>,
    /// Core voltage and clock the last PowerUp asked for: a change that arrives during
    /// bring-up (the host, a throttle step) is applied once the chain is up.
    powered_with: (u16, u32),
    /// Since when the fan has read 0 rpm while driven.
    fan_still_since: Option<u32>,
    fan_stalled: bool,
    fan_good_readings: u8,
    recovery: Recovery,
    /// Since when the board has been hashing without a trip (resets the backoff).
    up_since: Option<u32>,
    last_reset_ms: Option<u32>,
    retry_power_at: Option<u32>,
    generation: u32,
    /// The first tick sends a PowerDown whatever the state: the rail may be on from before.
    boot_power_down: bool,
    actions_dropped: u32,
    actions_dropped_reported: u32,
    /// What the last chain bring-up found, for the host's self-test.
    enumeration: Enumeration,
}

fn text<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

fn format<const N: usize>(args: core::fmt::Arguments<'_>) -> String<N> {
    let mut out = String::new();
    // A message longer than N is cut short, not lost.
    let _ = out.write_fmt(args);
    out
}

impl Controller {
    /// A controller at boot (`now_ms`): fan at 100 % until the first temperature, a PowerDown on
    /// the first tick, then power-up on the first tick after a good chip-temperature reading.
    pub fn new(config: BoardConfig, now_ms: u32) -> Self {
        let chips = usize::from(config.chips).min(16);
        // The threshold follows the share floor: set before each check.
        let jobs = NonceVerifier::new(config.model, DEFAULT_VERSION_MASK, 32);
        let mut counters = Vec::new();
        for _ in 0..chips {
            let _ = counters.push(ChipCounters::default());
        }
        Controller {
            frequency_khz: config.frequency_khz,
            core_mv: config.core_mv,
            config,
            power: Power::Off,
            safe: None,
            zone: ThermalZone::Normal,
            paused: false,
            hash_clock: HashClock::On,
            chip_version_mask: None,
            queue: Deque::new(),
            jobs,
            counters,
            share_floor_bits: 32,
            fan_request: None,
            policy_fan: 100,
            fan: 100,
            last_host_ms: now_ms,
            last_job_ms: now_ms,
            last_telemetry_ms: now_ms,
            last_throttle_ms: now_ms,
            last_sensors_ms: now_ms,
            last_tick_ms: now_ms,
            send_next_now: true,
            asked_for_work_ms: None,
            sensor_failures: 0,
            input_failures: 0,
            last_asic_ok_ms: None,
            sensors: Sensors::default(),
            regulator_warning: false,
            warning_cleared_ms: None,
            powered_with: (0, 0),
            fan_still_since: None,
            fan_stalled: false,
            fan_good_readings: 0,
            recovery: Recovery {
                clear_at: now_ms,
                cleared: false,
                healthy: 0,
                backoff_ms: RECOVERY_BACKOFF_MS,
            },
            up_since: None,
            last_reset_ms: None,
            retry_power_at: Some(now_ms),
            generation: 0,
            boot_power_down: true,
            actions_dropped: 0,
            actions_dropped_reported: 0,
            enumeration: Enumeration::default(),
        }
    }

    fn finish(&mut self, out: Out) -> Actions {
        self.actions_dropped = self.actions_dropped.saturating_add(out.dropped);
        out.list
    }

    /// Actions that did not fit in an [`Actions`] list since boot (reported to the host as a
    /// warning log at the next tick). Zero unless [`MAX_ACTIONS`] is wrong.
    pub fn actions_dropped(&self) -> u32 {
        self.actions_dropped
    }

    /// Actions the firmware could not queue: counted with the controller's own and reported the
    /// same way.
    pub fn note_dropped_actions(&mut self, dropped: u32) {
        self.actions_dropped = self.actions_dropped.saturating_add(dropped);
    }

    /// Leading zero bits every reported nonce has.
    pub fn share_bits(&self) -> u32 {
        self.share_floor_bits + self.config.ticket_difficulty.trailing_zeros()
    }

    /// Current state as the host sees it.
    pub fn state(&self) -> BoardState {
        if self.safe.is_some() {
            BoardState::Safe
        } else if self.power != Power::Up {
            BoardState::Starting
        } else if self.paused && self.hash_clock == HashClock::Off
            || self.queue.is_empty() && self.jobs.is_empty()
        {
            // Paused is reported only once the chips have really stopped.
            BoardState::Idle
        } else if self.throttled() {
            BoardState::Throttled
        } else {
            BoardState::Hashing
        }
    }

    /// The capabilities frame.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            protocol: hearth_link::PROTOCOL_VERSION,
            firmware: self.config.firmware,
            board: text(self.config.board_id),
            serial: self.config.serial.clone(),
            chip_id: self.config.model.chip_id(),
            chip_count: self.config.chips,
            queue_depth: QUEUE_DEPTH as u8,
            share_bits: self.share_bits() as u8,
        }
    }

    /// Fan duty currently commanded.
    pub fn fan(&self) -> u8 {
        self.fan
    }

    /// Whether the main loop may feed the watchdog: the sensor round and the safety tick have
    /// both run within [`WATCHDOG_PROOF_MS`]. A loop that turns while either is stuck (a hung
    /// I²C read behind a timeout that never fires, a starved ticker) lets the watchdog reset the
    /// MCU, and the board's pull-down on the enable pin cuts the rail.
    pub fn watchdog_may_feed(&self, now_ms: u32) -> bool {
        now_ms.wrapping_sub(self.last_sensors_ms) < WATCHDOG_PROOF_MS
            && now_ms.wrapping_sub(self.last_tick_ms) < WATCHDOG_PROOF_MS
    }

    /// A message from the host.
    pub fn on_host(&mut self, now_ms: u32, message: HostToBoard) -> Actions {
        let mut out = Out::default();
        self.host(now_ms, message, &mut out);
        self.finish(out)
    }

    fn host(&mut self, now_ms: u32, message: HostToBoard, out: &mut Out) {
        self.last_host_ms = now_ms;
        if self.safe == Some(SafeReason::HostSilent) {
            self.leave_safe(now_ms, out);
        }
        match message {
            HostToBoard::Hello => out.send(BoardToHost::Hello(self.capabilities())),
            HostToBoard::Ping { seq } => out.send(BoardToHost::Pong { seq }),
            HostToBoard::Work(item) => self.add_work(now_ms, item, out),
            HostToBoard::ClearWork => self.clear_work(),
            HostToBoard::SetFrequency { khz } => self.host_frequency(khz, out),
            HostToBoard::SetVoltage { mv } => {
                let (lo, hi) = self.config.core_mv_range;
                let mv = mv.clamp(lo, hi);
                self.core_mv = mv;
                if self.power == Power::Up {
                    out.push(Action::SetCoreVoltage(mv));
                }
            }
            HostToBoard::SetFan { percent } => {
                self.fan_request = percent.map(|p| p.min(100));
                self.apply_fan(out);
            }
            HostToBoard::Pause => {
                self.paused = true;
                self.sync_hash_clock(out);
            }
            HostToBoard::Resume => {
                self.paused = false;
                self.send_next_now = true;
                if self.safe == Some(SafeReason::HostReset) {
                    self.leave_safe(now_ms, out);
                }
                self.sync_hash_clock(out);
            }
            HostToBoard::Reset => self.host_reset(now_ms, out),
            HostToBoard::SetShareFloor { bits } => {
                self.share_floor_bits = u32::from(bits.clamp(1, 32));
                out.send(BoardToHost::Hello(self.capabilities()));
            }
            HostToBoard::ScanI2c => out.push(Action::ScanI2c),
            HostToBoard::GetEnumeration => {
                out.send(BoardToHost::Enumeration(self.enumeration.clone()));
            }
        }
    }

    /// What a chain bring-up found (sent before its [`Controller::on_chain_up`] or
    /// [`Controller::on_chain_failed`]): kept for [`HostToBoard::GetEnumeration`] and passed on
    /// to the host at once. A report from an abandoned power-up is still what answered.
    pub fn on_enumeration(&mut self, enumeration: Enumeration) -> Actions {
        let mut out = Out::default();
        self.enumeration = enumeration.clone();
        out.send(BoardToHost::Enumeration(enumeration));
        self.finish(out)
    }

    /// Time passes: the boot PowerDown, host-silence and sensor watchdogs, fault recovery,
    /// power-up retries, job cadence, telemetry.
    pub fn tick(&mut self, now_ms: u32) -> Actions {
        let mut out = Out::default();
        self.last_tick_ms = now_ms;
        if self.boot_power_down {
            self.boot_power_down = false;
            out.push(Action::PowerDown);
        }
        self.safety_tick(now_ms, &mut out);
        self.work_tick(now_ms, &mut out);
        self.telemetry_tick(now_ms, &mut out);
        if self.actions_dropped != self.actions_dropped_reported {
            self.actions_dropped_reported = self.actions_dropped;
            out.log(
                LogLevel::Warn,
                format(format_args!(
                    "{} actions dropped since boot: MAX_ACTIONS is too small",
                    self.actions_dropped
                )),
            );
        }
        self.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_is_counted_and_power_down_is_never_the_one_dropped() {
        let mut out = Out::default();
        for seq in 0..MAX_ACTIONS as u32 + 3 {
            out.send(BoardToHost::Pong { seq });
        }
        assert_eq!(out.dropped, 3);
        out.push(Action::PowerDown);
        assert_eq!(out.list.first(), Some(&Action::PowerDown));
        assert_eq!(out.list.len(), MAX_ACTIONS);
        assert_eq!(out.dropped, 4);
        out.push(Action::PowerDown);
        assert_eq!(out.dropped, 4, "a second PowerDown is not needed");
    }
}
