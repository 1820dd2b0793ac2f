//! The messages. Field units are in their names (`_mv`, `_ma`, `_mc` = milli-°C, `_khz`).

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// A unit of work: one header template with its own merkle root. The board hands each item to
/// its chips once (it never hashes the same work twice) and rolls version bits inside
/// `version_mask` in hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// Host's id for the work; every nonce for it carries the id back.
    pub id: u32,
    /// Base version with the rollable bits cleared.
    pub version: u32,
    /// Bits the chips may roll (BIP320, 0x1FFFE000).
    pub version_mask: u32,
    /// Previous block hash, header byte order.
    pub prev_block_hash: [u8; 32],
    /// Merkle root, header byte order.
    pub merkle_root: [u8; 32],
    /// Header time.
    pub ntime: u32,
    /// Compact target.
    pub nbits: u32,
}

/// Messages from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostToBoard {
    /// Ask for [`Capabilities`]; the first message after opening the port.
    Hello,
    /// Queue work.
    Work(WorkItem),
    /// Drop all queued work (a new block); late nonces for older work may still arrive.
    ClearWork,
    /// Set the hash clock (ramped by the board).
    SetFrequency {
        /// Target, kHz.
        khz: u32,
    },
    /// Set the core voltage.
    SetVoltage {
        /// Target, mV (clamped to the board's limits).
        mv: u16,
    },
    /// Fix the fan duty, or `None` for the board's own control loop.
    SetFan {
        /// Duty, percent.
        percent: Option<u8>,
    },
    /// Stop hashing: no more jobs, and the chips' hash clock switched off (they stay powered
    /// and configured). The board reports `Idle` once the clock-off write has gone out.
    Pause,
    /// Resume after [`HostToBoard::Pause`] (the hash clock ramps back up before the next job)
    /// or a cleared fault.
    Resume,
    /// Power-cycle and re-initialise the chain.
    Reset,
    /// Keep-alive; the board enters its safe state when the host stays silent too long.
    Ping {
        /// Echoed in [`BoardToHost::Pong`].
        seq: u32,
    },
    /// Accept nonces from `bits` leading zero bits (plus the ticket mask) instead of silicon's
    /// 32. Only for emulated chains, whose chips are configured to report earlier so that they
    /// find anything at CPU speed; real boards never need it.
    SetShareFloor {
        /// Zero bits every chip guarantees before its ticket mask.
        bits: u8,
    },
    /// Probe every I2C address 0x08..=0x77 with a one-byte read and report which acknowledge
    /// ([`BoardToHost::I2cScan`]): the bring-up check (`hearth board selftest`). Appended after
    /// the variants above, so every earlier one keeps its encoding.
    ScanI2c,
    /// Ask what the last chain bring-up found ([`BoardToHost::Enumeration`]).
    GetEnumeration,
}

/// What the board is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Protocol version the firmware speaks.
    pub protocol: u8,
    /// Firmware version, semver.
    pub firmware: [u8; 3],
    /// Board definition id (`boards/<id>.toml`).
    pub board: String<32>,
    /// Unique serial number.
    pub serial: String<24>,
    /// Chip id of the fitted chips (0x1370 = BM1370).
    pub chip_id: u16,
    /// Chips the board has.
    pub chip_count: u16,
    /// Work items the board queues.
    pub queue_depth: u8,
    /// Leading zero bits every reported nonce has (32 + ticket-mask bits).
    pub share_bits: u8,
}

/// A verified nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceReport {
    /// Work item it belongs to.
    pub work_id: u32,
    /// Full rolled header version.
    pub version: u32,
    /// Header nonce.
    pub nonce: u32,
    /// Chip (0 = nearest the MCU).
    pub chip: u8,
    /// Leading zero bits of the header hash, as the board computed it.
    pub zero_bits: u8,
}

/// What the board is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BoardState {
    /// Powering up and initialising the chain.
    Starting,
    /// Hashing.
    Hashing,
    /// Hashing at reduced frequency because of temperature.
    Throttled,
    /// Paused by the host or waiting for work.
    Idle,
    /// Hashing stopped, core voltage off, fan on: after a fault or a silent host.
    Safe,
}

/// Per-chip counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChipCounters {
    /// Verified nonces.
    pub nonces: u32,
    /// Replies that failed verification.
    pub errors: u32,
    /// The chip's own hash counter (register 0x8C on BM1366/68/70; one count = 2^32 hashes at
    /// the chip's 32-zero-bit floor), wrapping; polled once a second.
    pub hash_counter: u32,
    /// The chip's own nonce error counter (register 0x4C), polled once a second.
    pub error_counter: u32,
}

/// Periodic measurements (about once a second).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Milliseconds since boot.
    pub uptime_ms: u32,
    /// State.
    pub state: BoardState,
    /// Chip temperature (external diode), milli-°C.
    pub asic_temp_mc: Option<i32>,
    /// Board temperature (controller's internal sensor), milli-°C.
    pub board_temp_mc: Option<i32>,
    /// Regulator temperature, milli-°C.
    pub vr_temp_mc: Option<i32>,
    /// Fan duty, percent.
    pub fan_percent: u8,
    /// Fan speed.
    pub fan_rpm: Option<u32>,
    /// Core voltage measured by the regulator, mV.
    pub vcore_mv: Option<u16>,
    /// Core current, mA.
    pub vcore_ma: Option<u32>,
    /// Input voltage, mV.
    pub input_mv: Option<u32>,
    /// Input current, mA.
    pub input_ma: Option<u32>,
    /// Input power, mW.
    pub input_mw: Option<u32>,
    /// Hash clock, kHz.
    pub frequency_khz: u32,
    /// Work items queued.
    pub queued: u8,
    /// Per-chip counters.
    pub chips: Vec<ChipCounters, 16>,
}

/// A sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sensor {
    /// Chip temperature (EMC2101 external diode).
    AsicTemperature,
    /// Board temperature (EMC2101 internal).
    BoardTemperature,
    /// Core regulator (TPS546D24A).
    Regulator,
    /// Input power monitor (INA260).
    PowerMonitor,
    /// The fan: driven, but its tachometer sees no pulse (stalled or unplugged). Appended
    /// last, so every earlier variant keeps its encoding.
    Fan,
}

/// Why the board stopped or changed what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Chips hotter than the board's limit: hashing stopped, fan at 100 %.
    OverTemperature {
        /// Temperature, milli-°C.
        temp_mc: i32,
        /// Limit, milli-°C.
        limit_mc: i32,
    },
    /// Hotter than the throttle point: frequency reduced.
    Throttling {
        /// Temperature, milli-°C.
        temp_mc: i32,
        /// New frequency, kHz.
        frequency_khz: u32,
    },
    /// Regulator too hot.
    RegulatorOverTemperature {
        /// Temperature, milli-°C.
        temp_mc: i32,
    },
    /// A sensor stopped answering or reads nonsense: fan at 100 %.
    SensorFailure {
        /// Which.
        sensor: Sensor,
    },
    /// The regulator reports a fault (PMBus STATUS_WORD).
    RegulatorFault {
        /// STATUS_WORD.
        status_word: u16,
    },
    /// Input power outside the board's limits.
    InputPower {
        /// Input voltage, mV.
        input_mv: u32,
        /// Input power, mW.
        input_mw: u32,
    },
    /// No message from the host within the timeout: safe state.
    HostSilent {
        /// Milliseconds since the last message.
        silent_ms: u32,
    },
    /// The chain did not come up.
    ChainInit {
        /// What the driver said.
        reason: String<96>,
    },
    /// A fault cleared; the board resumes.
    Cleared,
}

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Problems.
    Warn,
    /// Milestones.
    Info,
    /// Details.
    Debug,
}

/// Messages from the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[expect(
    clippy::large_enum_variant,
    reason = "no_std without alloc: no Box; a few hundred bytes in a fixed queue"
)]
pub enum BoardToHost {
    /// Answer to [`HostToBoard::Hello`] (also sent unprompted after boot).
    Hello(Capabilities),
    /// A verified nonce.
    Nonce(NonceReport),
    /// Measurements.
    Telemetry(Telemetry),
    /// A fault or state change, with its reason.
    Fault(Fault),
    /// The work queue is below its low-water mark: send more.
    WorkLow {
        /// Items queued.
        queued: u8,
        /// Items the board would like queued.
        wanted: u8,
    },
    /// A log line.
    Log {
        /// Severity.
        level: LogLevel,
        /// Text.
        text: String<96>,
    },
    /// Answer to [`HostToBoard::Ping`].
    Pong {
        /// The ping's number.
        seq: u32,
    },
    /// Answer to [`HostToBoard::ScanI2c`]. Appended after the variants above, so every earlier
    /// one keeps its encoding.
    I2cScan(I2cScan),
    /// What the last chain bring-up found: the answer to [`HostToBoard::GetEnumeration`], and
    /// sent unprompted after every bring-up.
    Enumeration(Enumeration),
}

/// Who answered on the board's I2C bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct I2cScan {
    /// Addresses (7-bit) that acknowledged, ascending.
    pub acked: Vec<u8, 112>,
    /// Where the scan stopped because a probe failed with something other than a NACK (a bus
    /// held low, a transaction that timed out); the addresses after it were not probed. `None`:
    /// all of 0x08..=0x77 were.
    pub stopped_at: Option<u8>,
}

/// What the last chain bring-up found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enumeration {
    /// Bring-ups tried since boot; 0 = none yet, and the other fields say nothing.
    pub attempts: u32,
    /// Chips that answered the chip-id read. Enumeration stops at a chip that reports another
    /// model; that chip is counted.
    pub chips_found: u16,
    /// Chip id the chips reported (the first one that differs from the board's model, if any);
    /// `None` when no chip answered.
    pub chip_id: Option<u16>,
    /// The bring-up finished: the chain is configured and can hash.
    pub up: bool,
    /// Why it failed; empty when it did not.
    pub error: String<96>,
}
