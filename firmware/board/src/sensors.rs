//! One round of sensor readings as typed values: every reading says whether it is a value, a
//! failure (the device did not answer, answered nonsense, or its I²C transaction timed out) or
//! absent (not fitted). The controller decides what each means; [`crate::power`] produces them.

use crate::pmbus::Health;

/// One sensor's reading this round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reading<T> {
    /// Not fitted on this board, or not read this round.
    #[default]
    Absent,
    /// A value.
    Value(T),
    /// The device failed: no answer, a bus error or timeout, or an impossible value.
    Failed,
}

impl<T: Copy> Reading<T> {
    /// The value, if there is one.
    pub fn value(self) -> Option<T> {
        match self {
            Reading::Value(v) => Some(v),
            Reading::Absent | Reading::Failed => None,
        }
    }

    /// Whether the device failed.
    pub fn failed(self) -> bool {
        matches!(self, Reading::Failed)
    }
}

/// The core regulator: its status and measurements, all from one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegulatorReading {
    /// What the PMBus status registers say.
    pub health: Health,
    /// STATUS_WORD, for the report.
    pub status_word: u16,
    /// Die temperature, milli-°C.
    pub temp_mc: i32,
    /// Output voltage, mV.
    pub vout_mv: u16,
    /// Output current, mA.
    pub iout_ma: u32,
}

/// The input power monitor's measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPower {
    /// Input voltage, mV.
    pub mv: u32,
    /// Input current, mA.
    pub ma: u32,
    /// Input power, mW.
    pub mw: u32,
}

/// A reading of every sensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sensors {
    /// Chip temperature, milli-°C.
    pub asic_mc: Reading<i32>,
    /// Board temperature, milli-°C.
    pub board_mc: Reading<i32>,
    /// Core regulator.
    pub regulator: Reading<RegulatorReading>,
    /// Input power.
    pub input: Reading<InputPower>,
    /// Fan speed, rpm; `Value(0)` when the tachometer sees no pulses (stopped or stalled).
    pub fan_rpm: Reading<u32>,
}
