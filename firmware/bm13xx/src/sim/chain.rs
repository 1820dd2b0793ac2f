//! The emulated chain's protocol state: what each chip knows and how it answers host frames.
//! Pure and synchronous; the I/O runner ([`super::line`]) and the hashing workers
//! ([`super::hasher`]) share it behind a mutex.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::command::{Command, Destination, command_frame_len};
use crate::crc::response_crc;
use crate::job::{
    FULL_HEADER_JOB_FRAME_LEN, FullHeaderJob, JOB_ID_COUNT, MIDSTATE_JOB_FRAME_MAX_LEN, MidstateJob,
};
use crate::model::{ChipModel, JobFormat};
use crate::register::{self, addr};
use crate::verify::midstate;

/// Work a chip hashes: one job as the chip received it.
#[derive(Debug, Clone)]
pub enum SimJob {
    /// BM1366/68/70 job; the chip rolls versions itself.
    FullHeader(FullHeaderJob),
    /// BM1397 job with host-computed midstates.
    Midstate(MidstateJob),
}

/// A job a chip is working on plus the precomputed pieces the hot loop needs.
#[derive(Debug)]
pub struct ActiveJob {
    /// Job id echoed in replies.
    pub job_id: u8,
    /// The job.
    pub job: SimJob,
    /// Sequence number, unique per received job, so workers notice replacements.
    pub serial: u64,
}

/// Reset values that matter to the emulator (docs/bm13xx-protocol.md §3.1).
fn reset_registers(model: ChipModel) -> BTreeMap<u8, u32> {
    let mut regs = BTreeMap::new();
    regs.insert(addr::PLL0_PARAMETER, 0xC054_0165);
    regs.insert(addr::TICKET_MASK, 0);
    regs.insert(
        addr::MISC_CONTROL,
        if model == ChipModel::Bm1397 {
            0x0000_7A31
        } else {
            0x0000_C100
        },
    );
    regs.insert(
        addr::FAST_UART_CONFIGURATION,
        if model == ChipModel::Bm1397 {
            0x0600_000F
        } else {
            0x0130_1A00
        },
    );
    regs.insert(addr::VERSION_ROLLING, 0x0000_FFFF);
    regs.insert(addr::SOFT_RESET_CONTROL, 0x0007_0000);
    regs
}

/// One emulated chip.
#[derive(Debug)]
pub struct Chip {
    /// Position in the chain, 0 = nearest the host.
    pub position: u16,
    /// Current address (all chips start at 0).
    pub address: u8,
    /// Whether the chip has taken an address since the last chain-inactive.
    pub addressed: bool,
    /// Chip id it reports (the model's, unless a fault says otherwise).
    pub chip_id: u16,
    /// A dead chip answers nothing and hashes nothing but still relays.
    pub dead: bool,
    /// Register file.
    pub registers: BTreeMap<u8, u32>,
    /// Job slots by id.
    pub jobs: [Option<Arc<ActiveJob>>; JOB_ID_COUNT as usize],
    /// The job the chip is hashing: the most recent one received.
    pub current: Option<Arc<ActiveJob>>,
    /// Hashes done, in units of real sha256d computations.
    pub hashes: u64,
    /// Nonces reported.
    pub nonces: u64,
}

impl Chip {
    fn register(&self, register: u8) -> u32 {
        self.registers.get(&register).copied().unwrap_or(0)
    }

    /// Whether the hash clock runs: PLL0's enable bit (set from power-on; cleared by
    /// [`crate::sequence::Phase::HashClockOff`]).
    pub fn hash_clock_running(&self) -> bool {
        self.register(addr::PLL0_PARAMETER) & crate::sequence::PLL_ENABLE_BIT != 0
    }

    /// Whether hardware version rolling is on (0xA4 bit 31), which also makes replies 11 bytes.
    pub fn version_rolling(&self, model: ChipModel) -> bool {
        model != ChipModel::Bm1397 && self.register(addr::VERSION_ROLLING) & 0x8000_0000 != 0
    }

    /// Version-rolling mask as header bits (0 when rolling is off).
    pub fn version_mask(&self, model: ChipModel) -> u32 {
        if self.version_rolling(model) {
            (self.register(addr::VERSION_ROLLING) & 0xFFFF) << 13
        } else {
            0
        }
    }

    /// Extra leading zero bits the ticket mask asks for (N of difficulty 2^N).
    pub fn ticket_bits(&self) -> u32 {
        register::ticket_mask_value_bits(self.register(addr::TICKET_MASK)).unwrap_or(0)
    }
}

/// Replies the chain sends back to the host, in order.
pub type Replies = Vec<Vec<u8>>;

/// Statistics of frames the chain received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames accepted.
    pub frames: u64,
    /// Frames ignored for a bad CRC (as a chip would).
    pub bad_frames: u64,
    /// Bytes skipped while looking for a preamble.
    pub bytes_skipped: u64,
    /// Job frames accepted.
    pub jobs: u64,
    /// When the last job frame arrived, and the previous-block hash it carried (full-header
    /// jobs only).
    pub last_job: Option<(std::time::Instant, [u8; 32])>,
}

/// The whole emulated chain.
#[derive(Debug)]
pub struct ChainState {
    /// Chip model.
    pub model: ChipModel,
    /// Chips in chain order.
    pub chips: Vec<Chip>,
    /// Leading zero bits every chip requires before the ticket mask (32 on real silicon).
    pub floor_bits: u32,
    /// Frame statistics.
    pub stats: FrameStats,
    buffer: Vec<u8>,
    next_serial: u64,
}

impl ChainState {
    /// A freshly powered chain.
    pub fn new(
        model: ChipModel,
        chips: u16,
        floor_bits: u32,
        dead: &[u16],
        wrong_ids: &[(u16, u16)],
    ) -> Self {
        let chips = (0..chips)
            .map(|position| Chip {
                position,
                address: 0,
                addressed: false,
                chip_id: wrong_ids
                    .iter()
                    .find(|(p, _)| *p == position)
                    .map_or(model.chip_id(), |(_, id)| *id),
                dead: dead.contains(&position),
                registers: reset_registers(model),
                jobs: std::array::from_fn(|_| None),
                current: None,
                hashes: 0,
                nonces: 0,
            })
            .collect();
        ChainState {
            model,
            chips,
            floor_bits,
            stats: FrameStats::default(),
            buffer: Vec::new(),
            next_serial: 0,
        }
    }

    /// UART baud the chips are set to (from 0x28, or 0x18 on BM1397).
    pub fn chip_baud(&self) -> u32 {
        let Some(chip) = self.chips.first() else {
            return 115_200;
        };
        let bt8d = if self.model == ChipModel::Bm1397 {
            // BT8D bits 12..8 (low 5) and 27..24 (high 4) of MISC_CONTROL (skot/BM1397).
            let v = chip.register(addr::MISC_CONTROL);
            ((v >> 8) & 0x1F) | (((v >> 24) & 0x0F) << 5)
        } else {
            (chip.register(addr::FAST_UART_CONFIGURATION) >> 8) & 0xFF
        };
        // 25 MHz / (8 · (BT8D + 1)); the power-on divider 26 gives 115,741 ≈ 115,200.
        if bt8d == 26 {
            115_200
        } else {
            (25_000_000 + 4 * (bt8d + 1)) / (8 * (bt8d + 1))
        }
    }

    /// Feed bytes from the host; returns the replies the chips send, in line order.
    pub fn receive(&mut self, bytes: &[u8]) -> Replies {
        self.buffer.extend_from_slice(bytes);
        let mut replies = Vec::new();
        loop {
            let Some(start) = self.buffer.windows(2).position(|w| w == [0x55, 0xAA]) else {
                let keep = usize::from(self.buffer.last() == Some(&0x55));
                let drop = self.buffer.len() - keep;
                self.stats.bytes_skipped += drop as u64;
                self.buffer.drain(..drop);
                break;
            };
            if start > 0 {
                self.stats.bytes_skipped += start as u64;
                self.buffer.drain(..start);
            }
            if self.buffer.len() < 4 {
                break;
            }
            let header = self.buffer[2];
            let len = match (header, self.model.job_format()) {
                (0x21, JobFormat::FullHeader) => FULL_HEADER_JOB_FRAME_LEN,
                // One midstate (56 bytes) or four (152); any other length byte is line noise,
                // and trusting it could swallow the frames behind it.
                (0x21, JobFormat::Midstate) => match usize::from(self.buffer[3]) + 2 {
                    len @ (56 | MIDSTATE_JOB_FRAME_MAX_LEN) => len,
                    _ => {
                        self.stats.bytes_skipped += 1;
                        self.buffer.drain(..1);
                        continue;
                    }
                },
                (h, _) => match command_frame_len(h) {
                    Some(len) => len,
                    None => {
                        self.stats.bytes_skipped += 1;
                        self.buffer.drain(..1);
                        continue;
                    }
                },
            };
            if self.buffer.len() < len {
                break;
            }
            let frame: Vec<u8> = self.buffer[..len].to_vec();
            if self.handle_frame(&frame, &mut replies) {
                self.stats.frames += 1;
                self.buffer.drain(..len);
            } else {
                // Bad CRC: the chips ignore it; look for the next preamble.
                self.stats.bad_frames += 1;
                self.buffer.drain(..1);
            }
        }
        replies
    }

    fn handle_frame(&mut self, frame: &[u8], replies: &mut Replies) -> bool {
        if frame[2] == 0x21 {
            let job = match self.model.job_format() {
                JobFormat::FullHeader => FullHeaderJob::decode(frame).map(SimJob::FullHeader).ok(),
                JobFormat::Midstate => MidstateJob::decode(frame).map(SimJob::Midstate).ok(),
            };
            let Some(job) = job else { return false };
            self.stats.jobs += 1;
            if let SimJob::FullHeader(j) = &job {
                self.stats.last_job = Some((std::time::Instant::now(), j.prev_block_hash));
            }
            let job_id = match &job {
                SimJob::FullHeader(j) => j.job_id,
                SimJob::Midstate(j) => j.job_id,
            };
            self.next_serial += 1;
            let active = Arc::new(ActiveJob {
                job_id,
                job,
                serial: self.next_serial,
            });
            for chip in self.chips.iter_mut().filter(|c| !c.dead) {
                chip.jobs[usize::from(job_id)] = Some(active.clone());
                chip.current = Some(active.clone());
            }
            return true;
        }
        let Ok(command) = Command::decode(frame) else {
            return false;
        };
        match command {
            Command::ChainInactive => {
                for chip in self.chips.iter_mut().filter(|c| !c.dead) {
                    chip.addressed = false;
                }
            }
            Command::SetChipAddress(address) => {
                // The first live chip without an address takes it; addressed chips relay it.
                if let Some(chip) = self.chips.iter_mut().find(|c| !c.dead && !c.addressed) {
                    chip.address = address;
                    chip.addressed = true;
                }
            }
            Command::WriteRegister {
                to,
                register,
                value,
            } => {
                for chip in self
                    .chips
                    .iter_mut()
                    .filter(|c| !c.dead && matches_destination(c, to))
                {
                    chip.registers.insert(register, value);
                }
            }
            Command::ReadRegister { to, register } => {
                let model = self.model;
                for chip in self
                    .chips
                    .iter()
                    .filter(|c| !c.dead && matches_destination(c, to))
                {
                    let value = read_register(model, chip, register, self.floor_bits);
                    replies.push(encode_register_reply(model, chip, register, value));
                }
            }
        }
        true
    }

    /// Nonce-space slice of the chip at `position` as (first, count) of the low 25 bits of N
    /// (N = the nonce bytes read big-endian; bits 31..25 are the core id).
    ///
    /// * BM1366 / BM1397: the chain splits by chip address in N bits 24..17; a chip covers
    ///   addresses from its own up to the next higher one on the chain (docs §2.3).
    /// * BM1368 / BM1370 with a CHIP_NONCE_OFFSET (0x0C bit 31): N bits 24..9 start at the offset
    ///   and run to the next chip's offset (mujina measured the start at `offset << 9`).
    /// * Otherwise the chip covers the whole range, which duplicates work on a chain whose
    ///   offsets were not written: exactly what real silicon does.
    pub fn nonce_slice(&self, position: usize) -> (u32, u32) {
        let chip = &self.chips[position];
        const FULL: u32 = 1 << 25;
        if self.model.uses_chip_nonce_offset() {
            let offset_of = |c: &Chip| {
                let v = c.register(addr::CHIP_NONCE_OFFSET);
                (v & 0x8000_0000 != 0).then_some(v & 0xFFFF)
            };
            let Some(start) = offset_of(chip) else {
                return (0, FULL);
            };
            let end = self
                .chips
                .iter()
                .filter_map(offset_of)
                .filter(|o| *o > start)
                .min()
                .unwrap_or(0x1_0000);
            return (start << 9, (end - start) << 9);
        }
        let start = u32::from(chip.address);
        let end = self
            .chips
            .iter()
            .filter(|c| !c.dead)
            .map(|c| u32::from(c.address))
            .filter(|a| *a > start)
            .min()
            .unwrap_or(256);
        (start << 17, (end - start) << 17)
    }
}

fn matches_destination(chip: &Chip, to: Destination) -> bool {
    match to {
        Destination::All => true,
        Destination::Chip(address) => chip.address == address,
    }
}

fn read_register(model: ChipModel, chip: &Chip, register: u8, floor_bits: u32) -> u32 {
    match register {
        addr::CHIP_ID => {
            // CORE_NUM byte: 0x18 on BM1397 (skot/BM1397 reset value), 0x00 in BM1366/68/70 captures.
            let core_byte = if model == ChipModel::Bm1397 {
                0x18
            } else {
                0x00
            };
            (u32::from(chip.chip_id) << 16) | (core_byte << 8) | u32::from(chip.address)
        }
        addr::HASH_COUNTER_TOTAL if model != ChipModel::Bm1397 => {
            // One count = 2^32 hashes at the chips' real difficulty; the emulator's hashes count
            // 2^(32 - floor) times as much because it reports nonces that much more often.
            let effective = u128::from(chip.hashes) << 32u32.saturating_sub(floor_bits);
            (effective >> 32) as u32
        }
        addr::ERROR_COUNTER => 0,
        // BM1368 on-die sensor: valid bit + code for about 50 °C.
        addr::TEMP_SENSOR_RESULT if model == ChipModel::Bm1368 => 0x8000_0000 | 0x07F8,
        other => chip.register(other),
    }
}

/// A register reply from `chip`: 9 bytes until version rolling is on (BM1366+), 11 after.
pub fn encode_register_reply(model: ChipModel, chip: &Chip, register: u8, value: u32) -> Vec<u8> {
    let mut frame = vec![0xAA, 0x55];
    frame.extend_from_slice(&value.to_be_bytes());
    frame.push(chip.address);
    frame.push(register);
    if chip.version_rolling(model) {
        frame.extend_from_slice(&[0x00, 0x00]);
    }
    let crc = response_crc(&frame[2..], 0x00);
    frame.push(crc);
    frame
}

/// A nonce reply in the chip's real format (docs §6): nonce bytes = N big-endian, then the
/// excess-zero-bits / job-id / small-core fields, then the rolled version field.
pub fn encode_nonce_reply(
    model: ChipModel,
    n_big_endian: u32,
    job_id: u8,
    small_core: u8,
    excess_bits: u32,
    version_field: u16,
    midstate_index: u8,
) -> Vec<u8> {
    let mut frame = vec![0xAA, 0x55];
    frame.extend_from_slice(&n_big_endian.to_be_bytes());
    let excess = excess_bits.min(127) as u8;
    match model {
        ChipModel::Bm1366 => {
            frame.push(excess);
            frame.push((job_id << 3) | (small_core & 0x07));
        }
        ChipModel::Bm1368 | ChipModel::Bm1370 => {
            frame.push((excess << 1) | ((job_id >> 4) & 1));
            frame.push(((job_id & 0x0F) << 4) | (small_core & 0x0F));
        }
        ChipModel::Bm1397 => {
            frame.push(0x00);
            frame.push((job_id << 2) | (midstate_index & 0x03));
        }
    }
    if model != ChipModel::Bm1397 {
        frame.extend_from_slice(&version_field.to_be_bytes());
    }
    let crc = response_crc(&frame[2..], 0x80);
    frame.push(0x80 | crc);
    frame
}

/// Midstate of the first 64 header bytes of a full-header job at `version`.
pub fn job_midstate(job: &FullHeaderJob, version: u32) -> [u32; 8] {
    let header = job.header(version, 0);
    let mut first = [0u8; 64];
    first.copy_from_slice(&header[..64]);
    midstate(&first)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::command::{Command, Destination};

    #[test]
    fn a_midstate_job_with_a_corrupted_length_is_skipped_and_the_next_frame_still_heard() {
        let mut chain = ChainState::new(ChipModel::Bm1397, 1, 32, &[], &[]);
        let read = Command::ReadRegister {
            to: Destination::All,
            register: crate::register::addr::CHIP_ID,
        };
        for bad_len in [0u8, 1, 2, 0xFF, 60] {
            let mut bytes = vec![0x55, 0xAA, 0x21, bad_len, 0, 1];
            bytes.extend_from_slice(read.encode().as_bytes());
            let replies = chain.receive(&bytes);
            assert_eq!(replies.len(), 1, "length byte {bad_len}: {replies:?}");
        }
        assert_eq!(chain.stats.jobs, 0);
    }
}
