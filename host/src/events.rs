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
    /// A device went away: a Stratum miner disconnected or was dropped.
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

/// The hash-rate estimate's window, and the buckets it is kept in.
const RECENT_WINDOW: Duration = Duration::from_secs(300);
const RECENT_BUCKET: Duration = Duration::from_secs(10);

/// Counters for one chip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChipStats {
    /// Valid shares.
    pub shares: u64,
    /// Hashes that did not meet the chip's threshold.
    pub hardware_errors: u64,
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
    pub blocks_found: u64,
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
    recent: VecDeque<(Instant, f64)>,
}

impl DeviceStats {
    /// Record a valid share worth `hashes` expected hashes.
    pub fn add_share(&mut self, hashes: f64, difficulty: f64, chip: Option<u16>) {
        self.shares += 1;
        self.work_hashes += hashes;
        if difficulty > self.best_difficulty {
            self.best_difficulty = difficulty;
        }
        if let Some(chip) = chip {
            self.chip(chip).shares += 1;
        }
        // Work in 10-second buckets over the last five minutes: bounded whatever the share
        // rate (a Stratum miner at a tiny difficulty sends thousands a second).
        let now = Instant::now();
        match self.recent.back_mut() {
            Some((start, work)) if now.duration_since(*start) < RECENT_BUCKET => *work += hashes,
            _ => self.recent.push_back((now, hashes)),
        }
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RECENT_WINDOW)
        {
            self.recent.pop_front();
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
        let Some((first, _)) = self.recent.front() else {
            return 0.0;
        };
        let span = first.elapsed().as_secs_f64();
        if span < 1.0 {
            return 0.0;
        }
        self.recent.iter().map(|(_, h)| h).sum::<f64>() / span
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
