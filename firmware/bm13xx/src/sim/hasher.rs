//! Hashing workers: each owns some chips, walks their nonce space in the order real silicon
//! divides it (core id in N bits 31..25, chip slice below), hashes two headers at a time from a
//! per-version midstate, and reports every hash that meets the chip's threshold
//! (floor bits + ticket mask) as a nonce reply in the chip's real format.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::chain::{ActiveJob, SimJob, encode_nonce_reply, job_midstate};
use super::sha256d::{TailWords, sha256d_lanes, state_zero_bits};
use super::{Outgoing, Shared};
use crate::job::roll_version;
use crate::model::ChipModel;

/// Where a chip is in its current job's search space.
#[derive(Debug, Default)]
struct Cursor {
    serial: u64,
    version_index: u32,
    nonce_index: u64,
    midstate: [u32; 8],
    midstate_for: Option<u32>,
    /// Hash credit, for throttling to the configured rate.
    credit: f64,
}

/// Deposit the low bits of `index` into the set bits of `mask` (software PDEP).
fn deposit(mut index: u32, mask: u16) -> u16 {
    let mut out = 0u16;
    let mut m = mask;
    while m != 0 && index != 0 {
        let low = m & m.wrapping_neg();
        if index & 1 != 0 {
            out |= low;
        }
        index >>= 1;
        m &= m - 1;
    }
    out
}

struct Snapshot {
    job: Arc<ActiveJob>,
    model: ChipModel,
    version_mask: u32,
    threshold: u32,
    slice_start: u32,
    slice_len: u32,
    cores: u32,
}

/// Shortest sleep when no chip had work to do.
const IDLE_POLL_MIN: Duration = Duration::from_millis(1);
/// Longest: how late an idle chip may start on a job that has just arrived.
const IDLE_POLL_MAX: Duration = Duration::from_millis(10);

/// Run one worker until the line stops. `chips` are the chain positions it owns.
pub(super) fn run(
    shared: Arc<Shared>,
    chips: Vec<usize>,
    out: tokio::sync::mpsc::UnboundedSender<Outgoing>,
) {
    let mut cursors: Vec<Cursor> = chips.iter().map(|_| Cursor::default()).collect();
    let mut last = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        let rate = shared.config.hashrate_per_chip;
        let mut worked = false;
        // Until the next batch is due, when paced: sleeping exactly that long instead of
        // polling every millisecond keeps a slow emulated chain from costing a steady ~1 % of
        // a core per chain (it runs inside the daemon in the demo and the benchmarks).
        let mut idle = IDLE_POLL_MAX;
        for (slot, &position) in chips.iter().enumerate() {
            let cursor = &mut cursors[slot];
            let batch: u64 = if rate > 0.0 {
                (rate / 200.0).clamp(2.0, 8192.0) as u64 & !1
            } else {
                8192
            };
            if rate > 0.0 {
                cursor.credit = (cursor.credit + rate * dt).min(rate * 0.05 + batch as f64);
                if cursor.credit < batch as f64 {
                    let due = (batch as f64 - cursor.credit) / rate;
                    idle = idle.min(Duration::from_secs_f64(due.max(0.0)));
                    continue;
                }
            }
            let Some(snapshot) = snapshot(&shared, position) else {
                continue;
            };
            let replies = hash_batch(cursor, &snapshot, batch);
            worked = true;
            cursor.credit -= batch as f64;
            let Ok(mut state) = shared.state.lock() else {
                return;
            };
            let chip = &mut state.chips[position];
            chip.hashes += batch;
            chip.nonces += replies.len() as u64;
            drop(state);
            for reply in replies {
                if out
                    .send(Outgoing {
                        at: Instant::now(),
                        bytes: reply,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
        if !worked {
            std::thread::sleep(idle.clamp(IDLE_POLL_MIN, IDLE_POLL_MAX));
        }
    }
}

fn snapshot(shared: &Shared, position: usize) -> Option<Snapshot> {
    let state = shared.state.lock().ok()?;
    let chip = state.chips.get(position)?;
    if chip.dead || !chip.hash_clock_running() {
        return None;
    }
    let job = chip.current.clone()?;
    let (slice_start, slice_len) = state.nonce_slice(position);
    Some(Snapshot {
        job,
        model: state.model,
        version_mask: chip.version_mask(state.model),
        threshold: state.floor_bits + chip.ticket_bits(),
        slice_start,
        slice_len,
        // The core id has 7 bits in N; BM1397's 168 cores cannot all have their own values
        // (where its real layout puts them is unknown, docs §2.3), so the emulator uses 128.
        cores: u32::from(state.model.cores()).min(128),
    })
}

fn hash_batch(cursor: &mut Cursor, s: &Snapshot, batch: u64) -> Vec<Vec<u8>> {
    if cursor.serial != s.job.serial {
        *cursor = Cursor {
            serial: s.job.serial,
            credit: cursor.credit,
            ..Cursor::default()
        };
    }
    let per_version = u64::from(s.cores) * u64::from(s.slice_len.max(1));
    let (versions, tail): (u32, TailWords) = match &s.job.job {
        SimJob::FullHeader(job) => {
            let mask16 = (s.version_mask >> 13) as u16;
            let count = 1u32.checked_shl(mask16.count_ones()).unwrap_or(u32::MAX);
            let tail = [
                u32::from_be_bytes([
                    job.merkle_root[28],
                    job.merkle_root[29],
                    job.merkle_root[30],
                    job.merkle_root[31],
                ]),
                job.ntime.swap_bytes(),
                job.nbits.swap_bytes(),
            ];
            (count, tail)
        }
        SimJob::Midstate(job) => {
            let t = job.merkle_root_tail;
            (
                u32::from(job.midstate_count),
                [
                    u32::from_be_bytes(t),
                    job.ntime.swap_bytes(),
                    job.nbits.swap_bytes(),
                ],
            )
        }
    };
    let mut replies = Vec::new();
    let mut done = 0;
    while done < batch {
        if cursor.nonce_index >= per_version {
            cursor.nonce_index = 0;
            cursor.version_index = (cursor.version_index + 1) % versions.max(1);
        }
        // Version and midstate for this cursor position.
        let (version_field, midstate) = match &s.job.job {
            SimJob::FullHeader(job) => {
                let field = deposit(cursor.version_index, (s.version_mask >> 13) as u16);
                if cursor.midstate_for != Some(cursor.version_index) {
                    let version = roll_version(job.version, u32::from(field) << 13, s.version_mask);
                    cursor.midstate = job_midstate(job, version);
                    cursor.midstate_for = Some(cursor.version_index);
                }
                (field, cursor.midstate)
            }
            SimJob::Midstate(job) => (0, job.midstates[cursor.version_index as usize % 4]),
        };
        let run = (per_version - cursor.nonce_index).min(batch - done) & !1;
        let run = run.max(2);
        let mut walk = NonceWalk::at(s, cursor.nonce_index);
        let mut i = 0;
        while i < run {
            let n0 = walk.next_word(s);
            let n1 = walk.next_word(s);
            let states = sha256d_lanes(&midstate, &tail, [n0, n1]);
            for (lane, state) in states.iter().enumerate() {
                let bits = state_zero_bits(state);
                if bits >= s.threshold {
                    let n = if lane == 0 { n0 } else { n1 };
                    let small_core =
                        (version_field as u32 % u32::from(s.model.small_cores_per_core())) as u8;
                    replies.push(encode_nonce_reply(
                        s.model,
                        n,
                        s.job.job_id,
                        small_core,
                        bits - s.threshold,
                        version_field,
                        cursor.version_index as u8,
                    ));
                }
            }
            i += 2;
        }
        cursor.nonce_index += run;
        done += run;
    }
    replies
}

/// Walks N (the nonce bytes read big-endian) through a version's space with the cores
/// interleaved, so every core shows up in the replies as on silicon where they run in parallel:
/// index i is core `i % cores`, slice offset `i / cores`. Stepping avoids a division per nonce.
struct NonceWalk {
    core: u32,
    low: u32,
}

impl NonceWalk {
    fn at(s: &Snapshot, index: u64) -> Self {
        let per_version = u64::from(s.cores) * u64::from(s.slice_len.max(1));
        let i = index % per_version;
        NonceWalk {
            core: (i % u64::from(s.cores)) as u32,
            low: (i / u64::from(s.cores)) as u32,
        }
    }

    #[inline]
    fn next_word(&mut self, s: &Snapshot) -> u32 {
        let word = (self.core << 25) | ((s.slice_start + self.low) & 0x01FF_FFFF);
        self.core += 1;
        if self.core == s.cores {
            self.core = 0;
            self.low += 1;
            if self.low >= s.slice_len.max(1) {
                self.low = 0;
            }
        }
        word
    }
}

#[cfg(test)]
mod tests {
    use super::deposit;

    #[test]
    fn deposit_spreads_bits_into_the_mask() {
        assert_eq!(deposit(0b101, 0xFFFF), 0b101);
        assert_eq!(deposit(0b11, 0b1010_0000), 0b1010_0000);
        assert_eq!(deposit(0b10, 0b1010_0000), 0b1000_0000);
    }
}
