//! What the board reports about itself: the telemetry frame, once a second.

use hearth_link::{BoardToHost, Telemetry};

use super::{Controller, HashClock, Out, Power};

/// Telemetry period.
pub const TELEMETRY_MS: u32 = 1000;

impl Controller {
    pub(super) fn telemetry_tick(&mut self, now_ms: u32, out: &mut Out) {
        if now_ms.wrapping_sub(self.last_telemetry_ms) >= TELEMETRY_MS {
            self.last_telemetry_ms = now_ms;
            out.send(BoardToHost::Telemetry(self.telemetry(now_ms)));
        }
    }

    /// Current measurements and counters.
    pub fn telemetry(&self, now_ms: u32) -> Telemetry {
        let s = &self.sensors;
        let regulator = s.regulator.value();
        let input = s.input.value();
        Telemetry {
            uptime_ms: now_ms,
            state: self.state(),
            asic_temp_mc: s.asic_mc.value(),
            board_temp_mc: s.board_mc.value(),
            vr_temp_mc: regulator.map(|r| r.temp_mc),
            fan_percent: self.fan,
            fan_rpm: s.fan_rpm.value(),
            vcore_mv: regulator.map(|r| r.vout_mv),
            vcore_ma: regulator.map(|r| r.iout_ma),
            input_mv: input.map(|p| p.mv),
            input_ma: input.map(|p| p.ma),
            input_mw: input.map(|p| p.mw),
            frequency_khz: if self.power == Power::Up && self.hash_clock != HashClock::Off {
                self.frequency_khz
            } else {
                0
            },
            queued: self.queue.len() as u8,
            chips: self.counters.clone(),
        }
    }
}
