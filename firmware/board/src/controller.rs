//! The firmware's main-loop logic as a pure state machine: events in (host messages, nonces,
//! sensor readings, time), actions out (frames to the host, jobs to the chips, fan, power,
//! frequency). The RP2040 crate only performs the actions; everything that decides is here and
//! tested on the host.
//!
//! Safety first: the controller stops hashing and powers the core down on its own, without the
//! host, when the chips or the regulator get too hot, when the regulator reports a fault, when
//! the chip temperature sensor fails for more than a moment, or when the host has been silent
//! for the board's timeout. Every fault is reported with its reason.

use bm13xx::job::{FullHeaderJob, roll_version};
use bm13xx::model::{ChipModel, NonceReply};
use bm13xx::register::addr;
use bm13xx::response::RegisterReply;
use bm13xx::sequence::address_interval;
use bm13xx::tracker::{JobTracker, RecentNonces};
use bm13xx::verify::{header_hash, leading_zero_bits};
use heapless::{Deque, String, Vec};
use hearth_link::{
    BoardState, BoardToHost, Capabilities, ChipCounters, Fault, HostToBoard, LogLevel, NonceReport,
    Sensor, Telemetry, WorkItem,
};

use crate::thermal::{ThermalLimits, ThermalZone, fan_percent, next_zone};

/// Work items the board queues.
pub const QUEUE_DEPTH: usize = 16;
/// Below this many queued items the board asks for more.
pub const QUEUE_LOW: usize = 4;
/// Telemetry period.
pub const TELEMETRY_MS: u32 = 1000;
/// Failed chip-temperature readings (net of good ones: each good reading takes one back) before
/// the board stops hashing, with the fan already at 100 % from the first one. A leaky bucket, so
/// a sensor that fails every other reading still stops the board.
pub const SENSOR_FAILURES_TO_STOP: u8 = 5;
/// The bucket's ceiling: a sensor that failed for long needs this many good readings in a row
/// before the board trusts it again.
pub const SENSOR_FAILURES_MAX: u8 = 2 * SENSOR_FAILURES_TO_STOP;
/// With the core powered, the board stops hashing when its last good chip temperature is older
/// than this; it powers up only with one younger than this.
pub const SENSOR_STALE_MS: u32 = 2000;
/// While the queue stays low, the board asks for work again this often (the host may have had
/// none the first time).
pub const WORK_LOW_REPEAT_MS: u32 = 2000;
/// Time between frequency steps while throttling.
pub const THROTTLE_STEP_MS: u32 = 5000;

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
    /// Allowed core voltage range, mV.
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

/// A reading of every sensor (`None` = not fitted or not read this time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sensors {
    /// Chip temperature, or `Err` when the sensor failed.
    pub asic_mc: Option<Result<i32, ()>>,
    /// Board temperature.
    pub board_mc: Option<i32>,
    /// Regulator temperature.
    pub vr_mc: Option<i32>,
    /// Regulator STATUS_WORD when it reports a fault that must stop the core.
    pub vr_fault: Option<u16>,
    /// Whether the regulator answered at all.
    pub vr_ok: bool,
    /// Core voltage.
    pub vcore_mv: Option<u16>,
    /// Core current.
    pub vcore_ma: Option<u32>,
    /// Input voltage.
    pub input_mv: Option<u32>,
    /// Input current.
    pub input_ma: Option<u32>,
    /// Input power.
    pub input_mw: Option<u32>,
    /// Fan speed.
    pub fan_rpm: Option<u32>,
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
    /// Hashing stops: chips held in reset, core voltage off.
    PowerDown,
    /// Ramp the hash clock.
    SetFrequency {
        /// From, kHz.
        from_khz: u32,
        /// To, kHz.
        to_khz: u32,
    },
    /// Change the core voltage.
    SetCoreVoltage(u16),
}

/// Why the board is in its safe state, mildest first: a worse reason replaces a milder one,
/// never the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SafeReason {
    HostReset,
    HostSilent,
    InputPower,
    Sensor,
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

/// A job the chips have, with the work item it came from.
#[derive(Debug, Clone, Copy)]
struct SentJob {
    work_id: u32,
    version_mask: u32,
    job: FullHeaderJob,
}

/// The controller.
#[derive(Debug)]
pub struct Controller {
    config: BoardConfig,
    power: Power,
    safe: Option<SafeReason>,
    zone: ThermalZone,
    paused: bool,
    queue: Deque<WorkItem, QUEUE_DEPTH>,
    jobs: JobTracker<SentJob>,
    recent: RecentNonces<64>,
    counters: Vec<ChipCounters, 16>,
    share_floor_bits: u32,
    frequency_khz: u32,
    core_mv: u16,
    fan_override: Option<u8>,
    fan: u8,
    last_host_ms: u32,
    last_job_ms: u32,
    last_telemetry_ms: u32,
    last_throttle_ms: u32,
    send_next_now: bool,
    /// When the board last asked for work or got some; `None` = ask as soon as the queue is low.
    asked_for_work_ms: Option<u32>,
    sensor_failures: u8,
    /// When the chip temperature was last read successfully.
    last_asic_ok_ms: Option<u32>,
    sensors: Sensors,
    retry_power_at: Option<u32>,
    generation: u32,
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

impl Controller {
    /// A controller at boot (`now_ms`): fan at 100 % until the first temperature, then power-up
    /// on the first tick after a good chip-temperature reading.
    pub fn new(config: BoardConfig, now_ms: u32) -> Self {
        let job_ids = config.model.job_id_count();
        let chips = usize::from(config.chips).min(16);
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
            queue: Deque::new(),
            jobs: JobTracker::with_ids(job_ids),
            recent: RecentNonces::default(),
            counters,
            share_floor_bits: 32,
            fan_override: None,
            fan: 100,
            last_host_ms: now_ms,
            last_job_ms: now_ms,
            last_telemetry_ms: now_ms,
            last_throttle_ms: now_ms,
            send_next_now: true,
            asked_for_work_ms: None,
            sensor_failures: 0,
            last_asic_ok_ms: None,
            sensors: Sensors::default(),
            retry_power_at: Some(now_ms),
            generation: 0,
        }
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
        } else if self.paused || self.queue.is_empty() && self.jobs.is_empty() {
            BoardState::Idle
        } else if self.zone == ThermalZone::Throttle {
            BoardState::Throttled
        } else {
            BoardState::Hashing
        }
    }

    /// The capabilities frame.
    pub fn capabilities(&self) -> Capabilities {
        let mut board = String::new();
        for c in self.config.board_id.chars() {
            if board.push(c).is_err() {
                break;
            }
        }
        Capabilities {
            protocol: hearth_link::PROTOCOL_VERSION,
            firmware: self.config.firmware,
            board,
            serial: self.config.serial.clone(),
            chip_id: self.config.model.chip_id(),
            chip_count: self.config.chips,
            queue_depth: QUEUE_DEPTH as u8,
            share_bits: self.share_bits() as u8,
        }
    }

    fn set_fan(&mut self, percent: u8, out: &mut impl FnMut(Action)) {
        let percent = percent.min(100);
        if percent != self.fan {
            self.fan = percent;
            out(Action::SetFan(percent));
        }
    }

    fn fault(&self, fault: Fault, out: &mut impl FnMut(Action)) {
        out(Action::Send(BoardToHost::Fault(fault)));
    }

    fn enter_safe(&mut self, reason: SafeReason, fault: Fault, out: &mut impl FnMut(Action)) {
        // Power off first, then cooling, then the report: the actions run in this order, and
        // cutting the core is what matters most if a later one stalls.
        if self.power != Power::Off {
            out(Action::PowerDown);
        }
        self.power = Power::Off;
        let fan = match reason {
            SafeReason::Thermal | SafeReason::Sensor | SafeReason::Regulator => 100,
            _ => self.config.limits.min_fan_percent.max(50),
        };
        self.set_fan(fan.max(if self.safe.is_some() { self.fan } else { 0 }), out);
        self.queue.clear();
        self.jobs.clear();
        self.asked_for_work_ms = None;
        // A worse reason replaces a milder one (a thermal fault outranks a silent host); a
        // milder one never hides a worse one.
        if self.safe.is_none_or(|current| reason > current) {
            self.safe = Some(reason);
        }
        self.fault(fault, out);
    }

    fn leave_safe(&mut self, now_ms: u32, out: &mut impl FnMut(Action)) {
        if self.safe.take().is_some() {
            self.fault(Fault::Cleared, out);
            self.retry_power_at = Some(now_ms);
        }
    }

    /// A message from the host.
    pub fn on_host(&mut self, now_ms: u32, message: HostToBoard, out: &mut impl FnMut(Action)) {
        self.last_host_ms = now_ms;
        if self.safe == Some(SafeReason::HostSilent) {
            self.leave_safe(now_ms, out);
        }
        match message {
            HostToBoard::Hello => out(Action::Send(BoardToHost::Hello(self.capabilities()))),
            HostToBoard::Ping { seq } => out(Action::Send(BoardToHost::Pong { seq })),
            HostToBoard::Work(item) => {
                if self.queue.is_full() {
                    self.queue.pop_front();
                }
                let _ = self.queue.push_back(item);
                // Work arriving is the host answering: the rest of its burst is on the way, so
                // the repeat timer restarts rather than asking again while it lands.
                self.asked_for_work_ms = Some(now_ms);
                if self.send_next_now {
                    self.send_next_job(now_ms, out);
                }
            }
            HostToBoard::ClearWork => {
                self.queue.clear();
                // The next item is for a new block: straight to the chips.
                self.send_next_now = true;
            }
            HostToBoard::SetFrequency { khz } => {
                let khz = khz.clamp(
                    self.config.min_frequency_khz,
                    self.config
                        .max_frequency_khz
                        .max(self.config.min_frequency_khz),
                );
                if self.power == Power::Up && khz != self.frequency_khz {
                    out(Action::SetFrequency {
                        from_khz: self.frequency_khz,
                        to_khz: khz,
                    });
                }
                self.frequency_khz = khz;
                self.config.frequency_khz = khz;
            }
            HostToBoard::SetVoltage { mv } => {
                let (lo, hi) = self.config.core_mv_range;
                let mv = mv.clamp(lo, hi);
                self.core_mv = mv;
                if self.power == Power::Up {
                    out(Action::SetCoreVoltage(mv));
                }
            }
            HostToBoard::SetFan { percent } => {
                self.fan_override = percent.map(|p| p.min(100));
                if let Some(p) = self.fan_override
                    && self.safe.is_none()
                {
                    self.set_fan(p, out);
                }
            }
            HostToBoard::Pause => self.paused = true,
            HostToBoard::Resume => {
                self.paused = false;
                self.send_next_now = true;
                if let Some(reason) = self.safe
                    && reason == SafeReason::HostReset
                {
                    self.leave_safe(now_ms, out);
                }
            }
            HostToBoard::Reset => match self.safe {
                Some(reason) if !reason.host_clearable() => out(Action::Send(BoardToHost::Log {
                    level: LogLevel::Warn,
                    text: text("reset ignored: the board is safe for a hardware fault"),
                })),
                _ => {
                    self.enter_safe(SafeReason::HostReset, Fault::Cleared, out);
                    self.leave_safe(now_ms, out);
                }
            },
            HostToBoard::SetShareFloor { bits } => {
                self.share_floor_bits = u32::from(bits.clamp(1, 32));
                out(Action::Send(BoardToHost::Hello(self.capabilities())));
            }
        }
    }

    fn send_next_job(&mut self, now_ms: u32, out: &mut impl FnMut(Action)) {
        if self.power != Power::Up || self.safe.is_some() || self.paused {
            return;
        }
        let Some(item) = self.queue.pop_front() else {
            return;
        };
        let job = FullHeaderJob {
            job_id: 0,
            starting_nonce: 0,
            nbits: item.nbits,
            ntime: item.ntime,
            merkle_root: item.merkle_root,
            prev_block_hash: item.prev_block_hash,
            version: item.version,
        };
        let sent = SentJob {
            work_id: item.id,
            version_mask: item.version_mask,
            job,
        };
        let id = self.jobs.insert(sent);
        let job = FullHeaderJob { job_id: id, ..job };
        self.jobs.insert_at(id, SentJob { job, ..sent });
        out(Action::SendJob(job));
        self.last_job_ms = now_ms;
        self.send_next_now = false;
        self.ask_for_work_if_low(now_ms, out);
    }

    /// Ask the host for work when the queue is low: at once the first time, then whenever it has
    /// stayed low for [`WORK_LOW_REPEAT_MS`] since the last ask or the last work item.
    fn ask_for_work_if_low(&mut self, now_ms: u32, out: &mut impl FnMut(Action)) {
        if self.power != Power::Up || self.safe.is_some() || self.queue.len() >= QUEUE_LOW {
            return;
        }
        if self
            .asked_for_work_ms
            .is_some_and(|at| now_ms.wrapping_sub(at) < WORK_LOW_REPEAT_MS)
        {
            return;
        }
        self.asked_for_work_ms = Some(now_ms);
        out(Action::Send(BoardToHost::WorkLow {
            queued: self.queue.len() as u8,
            wanted: QUEUE_DEPTH as u8,
        }));
    }

    /// Power-up `generation` finished: the chain is initialised and hashing can start. An
    /// answer to an abandoned power-up (a fault came in between) is ignored; the firmware has
    /// already been told to power down.
    pub fn on_chain_up(&mut self, now_ms: u32, generation: u32, out: &mut impl FnMut(Action)) {
        if generation != self.generation || self.power != Power::Starting {
            return;
        }
        self.power = Power::Up;
        self.jobs.clear();
        self.recent.clear();
        self.send_next_now = true;
        self.asked_for_work_ms = None;
        out(Action::Send(BoardToHost::Log {
            level: LogLevel::Info,
            text: text("chain up, hashing"),
        }));
        out(Action::Send(BoardToHost::Hello(self.capabilities())));
        self.send_next_job(now_ms, out);
        self.ask_for_work_if_low(now_ms, out);
    }

    /// Power-up `generation` failed, or the chain it brought up was lost: power down, report,
    /// and try again in 10 s. Stale reports are ignored as in [`Controller::on_chain_up`].
    pub fn on_chain_failed(
        &mut self,
        now_ms: u32,
        generation: u32,
        reason: &str,
        out: &mut impl FnMut(Action),
    ) {
        if generation != self.generation || self.power == Power::Off {
            return;
        }
        self.fault(
            Fault::ChainInit {
                reason: text(reason),
            },
            out,
        );
        out(Action::PowerDown);
        self.power = Power::Off;
        self.jobs.clear();
        self.retry_power_at = Some(now_ms.wrapping_add(10_000));
    }

    /// A nonce from the chips: look up its job, re-hash, report it if it is real.
    pub fn on_nonce(&mut self, _now_ms: u32, reply: &NonceReply, out: &mut impl FnMut(Action)) {
        let chip = usize::from(reply.chip_index(self.config.model, self.config.chips));
        let Some(sent) = self.jobs.get(reply.job_id).copied() else {
            return;
        };
        let version = roll_version(sent.job.version, reply.version_bits, sent.version_mask);
        let hash = header_hash(&sent.job.header(version, reply.nonce));
        let zero_bits = leading_zero_bits(&hash);
        if zero_bits < self.share_bits() {
            if let Some(c) = self.counters.get_mut(chip) {
                c.errors = c.errors.saturating_add(1);
            }
            return;
        }
        if !self.recent.insert(reply.job_id, version, reply.nonce) {
            return;
        }
        if let Some(c) = self.counters.get_mut(chip) {
            c.nonces = c.nonces.saturating_add(1);
        }
        out(Action::Send(BoardToHost::Nonce(NonceReport {
            work_id: sent.work_id,
            version,
            nonce: reply.nonce,
            chip: chip as u8,
            zero_bits: zero_bits.min(255) as u8,
        })));
    }

    /// A register reply from the chips: the hash and error counters they are polled for.
    pub fn on_register(&mut self, reply: &RegisterReply) {
        let chip = usize::from(u16::from(reply.chip_address) / address_interval(self.config.chips));
        let Some(c) = self.counters.get_mut(chip) else {
            return;
        };
        match reply.register {
            addr::HASH_COUNTER_TOTAL => c.hash_counter = reply.value,
            addr::ERROR_COUNTER => c.error_counter = reply.value,
            _ => {}
        }
    }

    /// A round of sensor readings.
    pub fn on_sensors(&mut self, now_ms: u32, sensors: Sensors, out: &mut impl FnMut(Action)) {
        self.sensors = sensors;
        // Chip temperature: the one sensor hashing cannot do without.
        let asic = match sensors.asic_mc {
            Some(Ok(t)) => {
                self.last_asic_ok_ms = Some(now_ms);
                self.sensor_failures = self.sensor_failures.saturating_sub(1);
                if self.sensor_failures == 0 && self.safe == Some(SafeReason::Sensor) {
                    self.leave_safe(now_ms, out);
                }
                Some(t)
            }
            Some(Err(())) => {
                if self.sensor_failures == 0 {
                    self.fault(
                        Fault::SensorFailure {
                            sensor: Sensor::AsicTemperature,
                        },
                        out,
                    );
                }
                self.sensor_failures = (self.sensor_failures + 1).min(SENSOR_FAILURES_MAX);
                self.set_fan(100, out);
                if self.sensor_failures >= SENSOR_FAILURES_TO_STOP
                    && self.safe.is_none_or(|r| r < SafeReason::Sensor)
                {
                    self.enter_safe(
                        SafeReason::Sensor,
                        Fault::SensorFailure {
                            sensor: Sensor::AsicTemperature,
                        },
                        out,
                    );
                }
                None
            }
            None => None,
        };
        if !sensors.vr_ok && self.safe.is_none() && self.power != Power::Off {
            self.enter_safe(
                SafeReason::Regulator,
                Fault::SensorFailure {
                    sensor: Sensor::Regulator,
                },
                out,
            );
            return;
        }
        if let Some(status_word) = sensors.vr_fault
            && self.power != Power::Off
        {
            self.enter_safe(
                SafeReason::Regulator,
                Fault::RegulatorFault { status_word },
                out,
            );
            return;
        }
        if let (Some(mv), Some(mw)) = (sensors.input_mv, sensors.input_mw) {
            let (lo, hi) = self.config.input_mv_range;
            let bad =
                (mv < lo && self.power == Power::Up) || mv > hi || mw > self.config.max_input_mw;
            if bad && self.safe.is_none() {
                self.enter_safe(
                    SafeReason::InputPower,
                    Fault::InputPower {
                        input_mv: mv,
                        input_mw: mw,
                    },
                    out,
                );
                return;
            }
        }
        let limits = self.config.limits;
        let Some(asic) = asic else {
            // No chip temperature: the regulator's own limit still stops the board.
            if let Some(vr_mc) = sensors.vr_mc
                && vr_mc >= limits.vr_shutdown_mc
                && self.safe != Some(SafeReason::Thermal)
            {
                self.zone = ThermalZone::Shutdown;
                self.enter_safe(
                    SafeReason::Thermal,
                    Fault::RegulatorOverTemperature { temp_mc: vr_mc },
                    out,
                );
            }
            return;
        };
        let zone = next_zone(&limits, self.zone, asic, sensors.vr_mc);
        match (self.zone, zone) {
            (_, ThermalZone::Shutdown) if self.safe != Some(SafeReason::Thermal) => {
                let vr_hot = sensors.vr_mc.is_some_and(|t| t >= limits.vr_shutdown_mc);
                let fault = if vr_hot && asic < limits.shutdown_mc {
                    Fault::RegulatorOverTemperature {
                        temp_mc: sensors.vr_mc.unwrap_or(asic),
                    }
                } else {
                    Fault::OverTemperature {
                        temp_mc: asic,
                        limit_mc: limits.shutdown_mc,
                    }
                };
                self.enter_safe(SafeReason::Thermal, fault, out);
            }
            (ThermalZone::Shutdown, ThermalZone::Normal | ThermalZone::Throttle)
                if self.safe == Some(SafeReason::Thermal) =>
            {
                self.leave_safe(now_ms, out);
            }
            (ThermalZone::Normal, ThermalZone::Throttle) => {
                self.last_throttle_ms = now_ms;
                self.throttle_step(asic, out);
            }
            (ThermalZone::Throttle, ThermalZone::Normal) => {
                if self.power == Power::Up && self.frequency_khz != self.config.frequency_khz {
                    out(Action::SetFrequency {
                        from_khz: self.frequency_khz,
                        to_khz: self.config.frequency_khz,
                    });
                }
                self.frequency_khz = self.config.frequency_khz;
                self.fault(Fault::Cleared, out);
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
        if self.safe.is_none() && self.sensor_failures == 0 {
            let fan = self
                .fan_override
                .unwrap_or_else(|| fan_percent(&limits, asic));
            self.set_fan(fan, out);
        }
    }

    fn throttle_step(&mut self, asic_mc: i32, out: &mut impl FnMut(Action)) {
        // 10 % of the configured clock per step, never below the model's minimum.
        let step = (self.config.frequency_khz / 10).max(6_250);
        let to = self
            .frequency_khz
            .saturating_sub(step)
            .max(self.config.min_frequency_khz);
        if to != self.frequency_khz && self.power == Power::Up {
            out(Action::SetFrequency {
                from_khz: self.frequency_khz,
                to_khz: to,
            });
        }
        self.frequency_khz = to;
        self.fault(
            Fault::Throttling {
                temp_mc: asic_mc,
                frequency_khz: to,
            },
            out,
        );
    }

    /// Whether the chip temperature was read successfully within [`SENSOR_STALE_MS`].
    fn asic_temperature_recent(&self, now_ms: u32) -> bool {
        self.last_asic_ok_ms
            .is_some_and(|at| now_ms.wrapping_sub(at) < SENSOR_STALE_MS)
    }

    /// Time passes: power-up retries, job cadence, telemetry, host-silence and sensor watchdogs.
    pub fn tick(&mut self, now_ms: u32, out: &mut impl FnMut(Action)) {
        let silent = now_ms.wrapping_sub(self.last_host_ms);
        if silent >= self.config.host_timeout_ms && self.safe.is_none() {
            self.enter_safe(
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
                SafeReason::Sensor,
                Fault::SensorFailure {
                    sensor: Sensor::AsicTemperature,
                },
                out,
            );
        }
        if self.power == Power::Off
            && self.safe.is_none()
            && self.zone != ThermalZone::Shutdown
            && self.sensor_failures == 0
            && self.asic_temperature_recent(now_ms)
            && let Some(at) = self.retry_power_at
            && now_ms.wrapping_sub(at) < u32::MAX / 2
        {
            self.retry_power_at = None;
            self.power = Power::Starting;
            self.generation = self.generation.wrapping_add(1);
            if self.zone == ThermalZone::Normal {
                self.frequency_khz = self.config.frequency_khz;
            }
            out(Action::PowerUp {
                core_mv: self.core_mv,
                frequency_khz: self.frequency_khz,
                generation: self.generation,
            });
        }
        if self.power == Power::Up
            && (self.send_next_now
                || now_ms.wrapping_sub(self.last_job_ms) >= self.config.job_interval_ms)
        {
            self.send_next_job(now_ms, out);
        }
        if !self.paused {
            self.ask_for_work_if_low(now_ms, out);
        }
        if now_ms.wrapping_sub(self.last_telemetry_ms) >= TELEMETRY_MS {
            self.last_telemetry_ms = now_ms;
            out(Action::Send(BoardToHost::Telemetry(self.telemetry(now_ms))));
        }
    }

    /// Current measurements and counters.
    pub fn telemetry(&self, now_ms: u32) -> Telemetry {
        let s = &self.sensors;
        Telemetry {
            uptime_ms: now_ms,
            state: self.state(),
            asic_temp_mc: s.asic_mc.and_then(Result::ok),
            board_temp_mc: s.board_mc,
            vr_temp_mc: s.vr_mc,
            fan_percent: self.fan,
            fan_rpm: s.fan_rpm,
            vcore_mv: s.vcore_mv,
            vcore_ma: s.vcore_ma,
            input_mv: s.input_mv,
            input_ma: s.input_ma,
            input_mw: s.input_mw,
            frequency_khz: if self.power == Power::Up {
                self.frequency_khz
            } else {
                0
            },
            queued: self.queue.len() as u8,
            chips: self.counters.clone(),
        }
    }

    /// Fan duty currently commanded.
    pub fn fan(&self) -> u8 {
        self.fan
    }
}
