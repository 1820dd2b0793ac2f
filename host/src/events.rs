//! What the daemon tells the outside world: events (for logs, the demo, tests) and counters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::BlockHash;

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Devices got new work.
    NewWork {
        /// Height being mined.
        height: u32,
        /// Tip it builds on.
        prev: BlockHash,
        /// Transactions in the template.
        transactions: usize,
        /// A new tip (true) or a fee refresh (false).
        new_tip: bool,
    },
    /// Devices were told to stop hashing.
    Paused {
        /// Why.
        reason: String,
    },
    /// The node stopped answering.
    NodeDown {
        /// The error.
        error: String,
    },
    /// The node answers again.
    NodeUp,
    /// A hash met the network target; the block is journalled and about to be submitted.
    BlockCandidate {
        /// Height.
        height: u32,
        /// Block hash.
        hash: BlockHash,
        /// Device that found it.
        device: String,
    },
    /// The node accepted the block and it is on the active chain.
    BlockAccepted {
        /// Height.
        height: u32,
        /// Block hash.
        hash: BlockHash,
        /// Device that found it.
        device: String,
    },
    /// The node rejected the block.
    BlockRejected {
        /// Height.
        height: u32,
        /// Block hash.
        hash: BlockHash,
        /// The node's reason.
        reason: String,
    },
    /// The block is valid but not on the active chain (another block won the height).
    BlockStale {
        /// Height.
        height: u32,
        /// Block hash.
        hash: BlockHash,
    },
    /// The node took the block, but where it ended up could not be confirmed; it stays pending
    /// in the journal and is checked again at the next start.
    BlockUnconfirmed {
        /// Height.
        height: u32,
        /// Block hash.
        hash: BlockHash,
        /// What kept failing.
        reason: String,
    },
    /// A device is mining.
    DeviceUp {
        /// Device name.
        device: String,
        /// What it is ("4 × BM1370", "cpu, 2 threads").
        detail: String,
    },
    /// A board reported a fault or a state change (link devices).
    BoardFault {
        /// Device name.
        device: String,
        /// The fault, as the board described it.
        fault: String,
    },
    /// Mining moved to another work source (the node, or a pool).
    WorkSource {
        /// `node` or the pool's name.
        source: String,
        /// Why.
        reason: String,
    },
    /// A pool member logged in to its coordinator.
    PoolUp {
        /// Our name at the coordinator.
        name: String,
    },
    /// A pool member lost its coordinator (it mines solo after `solo_after_secs`).
    PoolDown {
        /// Why.
        reason: String,
    },
    /// A device went away: a Stratum miner disconnected or was dropped, or a board failed (the
    /// first failure of a streak; it is retried, and [`Event::DeviceUp`] says it is back).
    DeviceLost {
        /// Device name.
        device: String,
        /// Why.
        reason: String,
    },
    /// A device failed; it will be retried.
    DeviceError {
        /// Device name.
        device: String,
        /// The error.
        error: String,
    },
}

/// Work in 10-second buckets over the last 10 minutes and 1-minute buckets over the last hour:
/// bounded whatever the share rate (a Stratum miner at a tiny difficulty sends thousands of
/// shares a second), about 2 KB per device.
const FINE_BUCKET: Duration = Duration::from_secs(10);
const FINE_WINDOW: Duration = Duration::from_secs(600);
const COARSE_BUCKET: Duration = Duration::from_secs(60);
const COARSE_WINDOW: Duration = Duration::from_secs(3600);

/// Work done over time, for hash rates over 1 minute, 10 minutes and 1 hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rate {
    fine: VecDeque<(Instant, f64)>,
    coarse: VecDeque<(Instant, f64)>,
    since: Option<Instant>,
}

impl Rate {
    /// Count `hashes` of work done at `now`.
    pub fn add(&mut self, now: Instant, hashes: f64) {
        self.since.get_or_insert(now);
        for (buckets, width, window) in [
            (&mut self.fine, FINE_BUCKET, FINE_WINDOW),
            (&mut self.coarse, COARSE_BUCKET, COARSE_WINDOW),
        ] {
            match buckets.back_mut() {
                Some((start, work)) if now.saturating_duration_since(*start) < width => {
                    *work += hashes
                }
                _ => buckets.push_back((now, hashes)),
            }
            while buckets
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
            {
                buckets.pop_front();
            }
        }
    }

    /// Hashes per second over the last `window` (at most an hour), counted from the first work
    /// if that is more recent; 0 until a second of history exists.
    pub fn per_second(&self, now: Instant, window: Duration) -> f64 {
        let Some(since) = self.since else { return 0.0 };
        let span = window.min(now.saturating_duration_since(since));
        if span < Duration::from_secs(1) {
            return 0.0;
        }
        let buckets = if window <= FINE_WINDOW {
            &self.fine
        } else {
            &self.coarse
        };
        let work: f64 = buckets
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= window)
            .map(|(_, w)| w)
            .sum();
        work / span.as_secs_f64()
    }
}

/// Counters for one chip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChipStats {
    /// Valid shares.
    pub shares: u64,
    /// Hashes that did not meet the chip's threshold.
    pub hardware_errors: u64,
    /// Results for replaced work.
    pub stale: u64,
    /// Results seen before.
    pub duplicates: u64,
    /// Work in accepted shares, expected hashes.
    pub work_hashes: f64,
    /// Work over time.
    pub rate: Rate,
}

/// A board's latest measurements (link devices), as the API and metrics show them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct BoardReadings {
    /// Board state (Starting, Hashing, Throttled, Idle, Safe).
    pub state: String,
    /// Chip temperature, °C.
    pub asic_temp_c: Option<f64>,
    /// Board temperature, °C.
    pub board_temp_c: Option<f64>,
    /// Regulator temperature, °C.
    pub vr_temp_c: Option<f64>,
    /// Fan duty, percent.
    pub fan_percent: u8,
    /// Fan speed.
    pub fan_rpm: Option<u32>,
    /// Core voltage, V.
    pub vcore_v: Option<f64>,
    /// Core current, A.
    pub vcore_a: Option<f64>,
    /// Input voltage, V.
    pub input_v: Option<f64>,
    /// Input power, W.
    pub input_w: Option<f64>,
    /// Hash clock, MHz.
    pub frequency_mhz: f64,
}

impl From<&hearth_link::Telemetry> for BoardReadings {
    fn from(t: &hearth_link::Telemetry) -> Self {
        let milli = |v: i32| f64::from(v) / 1000.0;
        BoardReadings {
            state: format!("{:?}", t.state),
            asic_temp_c: t.asic_temp_mc.map(milli),
            board_temp_c: t.board_temp_mc.map(milli),
            vr_temp_c: t.vr_temp_mc.map(milli),
            fan_percent: t.fan_percent,
            fan_rpm: t.fan_rpm,
            vcore_v: t.vcore_mv.map(|v| f64::from(v) / 1000.0),
            vcore_a: t.vcore_ma.map(|v| f64::from(v) / 1000.0),
            input_v: t.input_mv.map(|v| f64::from(v) / 1000.0),
            input_w: t.input_mw.map(|v| f64::from(v) / 1000.0),
            frequency_mhz: f64::from(t.frequency_khz) / 1000.0,
        }
    }
}

/// Counters for one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceStats {
    /// Name.
    pub name: String,
    /// Results the device handed to the share checker (each ends as exactly one of: a share,
    /// a stale result, a duplicate, a hardware error).
    pub results: u64,
    /// Valid shares of current work.
    pub shares: u64,
    /// Results for replaced work.
    pub stale: u64,
    /// Results seen before.
    pub duplicates: u64,
    /// Stratum submissions refused for another reason (low difficulty, unknown job, bad time
    /// or version); never handed to the share checker.
    pub rejected: u64,
    /// Results that do not hash to the device's threshold, or roll bits outside the mask.
    pub hardware_errors: u64,
    /// Block candidates.
    pub block_candidates: u64,
    /// Blocks the node put on the active chain.
    pub blocks_accepted: u64,
    /// Best share difficulty.
    pub best_difficulty: f64,
    /// Work done in accepted shares, expressed as expected hashes.
    pub work_hashes: f64,
    /// Per-chip counters (BM13xx devices).
    pub chips: Vec<ChipStats>,
    /// The device has really stopped hashing (set by the driver once the chips are stopped,
    /// not when it was asked to).
    pub paused: bool,
    /// Unix time of the best share.
    pub best_at: Option<u64>,
    /// Latest board measurements (link devices).
    pub board: Option<BoardReadings>,
    /// Work over time.
    pub rate: Rate,
}

impl DeviceStats {
    /// Record a valid share worth `hashes` expected hashes.
    pub fn add_share(&mut self, hashes: f64, difficulty: f64, chip: Option<u16>) {
        self.shares += 1;
        self.work_hashes += hashes;
        if difficulty > self.best_difficulty {
            self.best_difficulty = difficulty;
            self.best_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs());
        }
        let now = Instant::now();
        self.rate.add(now, hashes);
        if let Some(chip) = chip {
            let c = self.chip(chip);
            c.shares += 1;
            c.work_hashes += hashes;
            c.rate.add(now, hashes);
        }
    }

    /// Per-chip counters, growing the list as needed.
    pub fn chip(&mut self, chip: u16) -> &mut ChipStats {
        let i = usize::from(chip);
        if self.chips.len() <= i {
            self.chips.resize(i + 1, ChipStats::default());
        }
        &mut self.chips[i]
    }

    /// Hash rate estimated from the shares of the last five minutes, hashes per second.
    pub fn hashrate(&self) -> f64 {
        self.rate
            .per_second(Instant::now(), Duration::from_secs(300))
    }
}

/// Daemon-wide counters, shared by the actors that update them.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<Devices>>,
}

#[derive(Debug, Default)]
struct Devices {
    list: Vec<DeviceStats>,
    by_name: HashMap<String, usize>,
}

impl Devices {
    fn add(&mut self, name: &str) -> usize {
        self.list.push(DeviceStats {
            name: name.to_string(),
            ..DeviceStats::default()
        });
        let index = self.list.len() - 1;
        self.by_name.insert(name.to_string(), index);
        index
    }
}

impl Stats {
    /// Register a device; returns its index.
    pub fn add_device(&self, name: &str) -> usize {
        self.lock().add(name)
    }

    /// The device called `name`, registered on first use (Stratum miners reconnecting under
    /// the same worker name keep their counters).
    pub fn device_named(&self, name: &str) -> usize {
        let mut all = self.lock();
        match all.by_name.get(name) {
            Some(index) => *index,
            None => all.add(name),
        }
    }

    /// [`Stats::device_named`], but once `limit` devices exist a new name is counted under
    /// `overflow` instead (so that miners connecting under ever new worker names cannot grow
    /// the list without end). Returns the index and the name used.
    pub fn device_named_within(&self, name: &str, limit: usize, overflow: &str) -> (usize, String) {
        let mut all = self.lock();
        if let Some(index) = all.by_name.get(name) {
            return (*index, name.to_string());
        }
        if all.list.len() < limit {
            return (all.add(name), name.to_string());
        }
        let index = match all.by_name.get(overflow) {
            Some(index) => *index,
            None => all.add(overflow),
        };
        (index, overflow.to_string())
    }

    /// Devices registered so far.
    pub fn device_count(&self) -> usize {
        self.lock().list.len()
    }

    /// Update one device's counters.
    pub fn update(&self, device: usize, f: impl FnOnce(&mut DeviceStats)) {
        if let Some(d) = self.lock().list.get_mut(device) {
            f(d);
        }
    }

    /// A copy of every device's counters.
    pub fn snapshot(&self) -> Vec<DeviceStats> {
        self.lock().list.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Devices> {
        // A panic while holding the lock cannot leave counters inconsistent in a way that
        // matters; keep counting.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_worker_names_past_the_limit_share_one_entry() {
        let stats = Stats::default();
        let (a, name) = stats.device_named_within("stratum:a", 2, "stratum:other");
        assert_eq!((a, name.as_str()), (0, "stratum:a"));
        assert_eq!(
            stats.device_named_within("stratum:b", 2, "stratum:other").0,
            1
        );
        // Known names keep their entry; new ones go to the overflow entry.
        assert_eq!(
            stats.device_named_within("stratum:a", 2, "stratum:other").0,
            0
        );
        let (c, name) = stats.device_named_within("stratum:c", 2, "stratum:other");
        assert_eq!((c, name.as_str()), (2, "stratum:other"));
        assert_eq!(
            stats.device_named_within("stratum:d", 2, "stratum:other").0,
            2
        );
        assert_eq!(stats.device_count(), 3);
    }
}
