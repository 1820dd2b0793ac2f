//! Job frames, host → chip, and the block header they describe.
//!
//! Two formats (docs/bm13xx-protocol.md §5):
//! * full-header jobs (BM1366/BM1368/BM1370): the chip rolls the version itself (BIP320 bits
//!   28..13 within the mask programmed in register 0xA4);
//! * midstate jobs (BM1397): the host sends SHA-256 midstates of the first 64 header bytes, one
//!   per version it wants hashed.
//!
//! Byte order: `merkle_root` and `prev_block_hash` are kept exactly as they appear in the 80-byte
//! header (Bitcoin's internal order). On the wire the eight 4-byte words of each are sent in
//! reverse order, bytes inside a word unchanged. nbits, ntime, version and the starting nonce are
//! little-endian, as in the header.

use crate::command::COMMAND_PREAMBLE;
use crate::crc::crc16;

/// HDR byte of a job frame (type 1 = job, command 1).
pub const JOB_HEADER: u8 = 0x21;
/// Full-header job frame length, preamble and CRC16 included.
pub const FULL_HEADER_JOB_FRAME_LEN: usize = 88;
/// LEN byte sent with full-header jobs.
///
/// 0x56 is the true count of bytes after the preamble, as ESP-Miner sends it on BM1366/68/70.
/// Bitmain's factory firmware sends 0x36 and the chips take the length from the job format, not
/// from LEN; both are proven on hardware (docs/bm13xx-protocol.md §1.4), and [`FullHeaderJob::decode`]
/// accepts either.
pub const FULL_HEADER_JOB_LEN_BYTE: u8 = 0x56;
/// Largest midstate job frame (4 midstates).
pub const MIDSTATE_JOB_FRAME_MAX_LEN: usize = 152;
/// Number of distinct job ids every supported chip can echo back (5-bit field).
pub const JOB_ID_COUNT: u8 = 32;

/// A full-header job for BM1366/BM1368/BM1370.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FullHeaderJob {
    /// Job id, 0..32; sent as `id << 3` and echoed in nonce replies.
    pub job_id: u8,
    /// First nonce to try; every implementation sends 0.
    pub starting_nonce: u32,
    /// Compact target (header field `bits`).
    pub nbits: u32,
    /// Header timestamp.
    pub ntime: u32,
    /// Merkle root in header byte order.
    pub merkle_root: [u8; 32],
    /// Previous block hash in header byte order.
    pub prev_block_hash: [u8; 32],
    /// Base version; the chip ORs rolled bits in within the version-rolling mask.
    pub version: u32,
}

/// Why a byte sequence is not a valid job frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobDecodeError {
    /// The frame length does not match the job format.
    BadLength(usize),
    /// The frame does not start with `55 AA 21`.
    BadHeader,
    /// The job byte has bits set below the job id field.
    BadJobByte(u8),
    /// The midstate count is not 1 or 4 (midstate jobs) or LEN disagrees with it.
    BadMidstateCount(u8),
    /// CRC16 mismatch.
    BadCrc {
        /// CRC computed over the frame.
        expected: u16,
        /// CRC found at the end of the frame.
        found: u16,
    },
}

impl core::fmt::Display for JobDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadLength(n) => write!(f, "job frame of {n} bytes has the wrong length"),
            Self::BadHeader => f.write_str("job frame does not start with 55 AA 21"),
            Self::BadJobByte(b) => write!(f, "job byte 0x{b:02X} is not a valid job id"),
            Self::BadMidstateCount(n) => write!(f, "midstate count {n} is not 1 or 4"),
            Self::BadCrc { expected, found } => {
                write!(
                    f,
                    "job CRC16 0x{found:04X} wrong, expected 0x{expected:04X}"
                )
            }
        }
    }
}

impl core::error::Error for JobDecodeError {}

/// Reverse the order of the eight 4-byte words of a 32-byte field, keeping bytes inside words.
fn reverse_words(field: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for word in 0..8 {
        out[word * 4..word * 4 + 4].copy_from_slice(&field[(7 - word) * 4..(7 - word) * 4 + 4]);
    }
    out
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl FullHeaderJob {
    /// Encode the 88-byte job frame with CRC16.
    pub fn encode(&self) -> [u8; FULL_HEADER_JOB_FRAME_LEN] {
        self.encode_with_len_byte(FULL_HEADER_JOB_LEN_BYTE)
    }

    /// Encode with a chosen LEN byte: 0x36 reproduces Bitmain factory frames byte for byte.
    pub fn encode_with_len_byte(&self, len_byte: u8) -> [u8; FULL_HEADER_JOB_FRAME_LEN] {
        let mut f = [0u8; FULL_HEADER_JOB_FRAME_LEN];
        f[..2].copy_from_slice(&COMMAND_PREAMBLE);
        f[2] = JOB_HEADER;
        f[3] = len_byte;
        f[4] = (self.job_id & (JOB_ID_COUNT - 1)) << 3;
        f[5] = 0x01; // one midstate: the chip derives them itself
        f[6..10].copy_from_slice(&self.starting_nonce.to_le_bytes());
        f[10..14].copy_from_slice(&self.nbits.to_le_bytes());
        f[14..18].copy_from_slice(&self.ntime.to_le_bytes());
        f[18..50].copy_from_slice(&reverse_words(&self.merkle_root));
        f[50..82].copy_from_slice(&reverse_words(&self.prev_block_hash));
        f[82..86].copy_from_slice(&self.version.to_le_bytes());
        let crc = crc16(&f[2..86]);
        f[86..88].copy_from_slice(&crc.to_be_bytes());
        f
    }

    /// Decode an 88-byte job frame (LEN 0x36 or 0x56 or any other value: chips ignore it).
    pub fn decode(frame: &[u8]) -> Result<FullHeaderJob, JobDecodeError> {
        if frame.len() != FULL_HEADER_JOB_FRAME_LEN {
            return Err(JobDecodeError::BadLength(frame.len()));
        }
        if frame[..2] != COMMAND_PREAMBLE || frame[2] != JOB_HEADER {
            return Err(JobDecodeError::BadHeader);
        }
        let expected = crc16(&frame[2..86]);
        let found = u16::from_be_bytes([frame[86], frame[87]]);
        if expected != found {
            return Err(JobDecodeError::BadCrc { expected, found });
        }
        let job_byte = frame[4];
        if job_byte & 0x07 != 0 {
            return Err(JobDecodeError::BadJobByte(job_byte));
        }
        let mut merkle = [0u8; 32];
        merkle.copy_from_slice(&frame[18..50]);
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&frame[50..82]);
        Ok(FullHeaderJob {
            job_id: job_byte >> 3,
            starting_nonce: le32(&frame[6..10]),
            nbits: le32(&frame[10..14]),
            ntime: le32(&frame[14..18]),
            merkle_root: reverse_words(&merkle),
            prev_block_hash: reverse_words(&prev),
            version: le32(&frame[82..86]),
        })
    }

    /// The 80-byte block header for a given (rolled) version and header nonce.
    pub fn header(&self, version: u32, nonce: u32) -> [u8; 80] {
        let mut h = [0u8; 80];
        h[..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_block_hash);
        h[36..68].copy_from_slice(&self.merkle_root);
        h[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }
}

/// Apply rolled version bits the BIP320 way: keep every base bit outside `mask`, take the bits
/// inside `mask` from `rolled_bits`. Never `base | bits`, which breaks when the base already has
/// bits inside the mask (c2pool#1392, docs/solo-mining-correctness.md).
pub const fn roll_version(base: u32, rolled_bits: u32, mask: u32) -> u32 {
    (base & !mask) | (rolled_bits & mask)
}

/// A midstate job for BM1397: up to four SHA-256 midstates, one per version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MidstateJob {
    /// Job id, 0..32; sent as `id << 2` (the low two bits of the echo carry the midstate index).
    pub job_id: u8,
    /// First nonce to try (0).
    pub starting_nonce: u32,
    /// Compact target.
    pub nbits: u32,
    /// Header timestamp.
    pub ntime: u32,
    /// Header bytes 64..68: the last four bytes of the merkle root, header order.
    pub merkle_root_tail: [u8; 4],
    /// How many of `midstates` are used: 1 or 4.
    pub midstate_count: u8,
    /// SHA-256 state words H0..H7 after the first 64 header bytes, one set per version.
    pub midstates: [[u32; 8]; 4],
}

impl MidstateJob {
    /// Frame length for this job: 24 + 32·n bytes (LEN = 22 + 32·n).
    pub fn frame_len(&self) -> usize {
        24 + 32 * usize::from(self.midstate_count)
    }

    /// Encode into `out` (at least [`MIDSTATE_JOB_FRAME_MAX_LEN`] bytes); returns the frame.
    pub fn encode<'a>(&self, out: &'a mut [u8; MIDSTATE_JOB_FRAME_MAX_LEN]) -> &'a [u8] {
        let n = if self.midstate_count >= 4 { 4 } else { 1 };
        let len = 24 + 32 * n;
        out[..2].copy_from_slice(&COMMAND_PREAMBLE);
        out[2] = JOB_HEADER;
        out[3] = (len - 2) as u8;
        out[4] = (self.job_id & (JOB_ID_COUNT - 1)) << 2;
        out[5] = n as u8;
        out[6..10].copy_from_slice(&self.starting_nonce.to_le_bytes());
        out[10..14].copy_from_slice(&self.nbits.to_le_bytes());
        out[14..18].copy_from_slice(&self.ntime.to_le_bytes());
        out[18..22].copy_from_slice(&self.merkle_root_tail);
        for (i, state) in self.midstates.iter().take(n).enumerate() {
            // H7 first, each word big-endian (ESP-Miner bm1397.py example, docs §5.2).
            for (w, word) in state.iter().rev().enumerate() {
                let at = 22 + i * 32 + w * 4;
                out[at..at + 4].copy_from_slice(&word.to_be_bytes());
            }
        }
        let crc = crc16(&out[2..len - 2]);
        out[len - 2..len].copy_from_slice(&crc.to_be_bytes());
        &out[..len]
    }

    /// Decode a midstate job frame.
    pub fn decode(frame: &[u8]) -> Result<MidstateJob, JobDecodeError> {
        if frame.len() < 4 {
            return Err(JobDecodeError::BadLength(frame.len()));
        }
        if frame[..2] != COMMAND_PREAMBLE || frame[2] != JOB_HEADER {
            return Err(JobDecodeError::BadHeader);
        }
        let len = usize::from(frame[3]) + 2;
        if frame.len() != len || (len != 56 && len != 152) {
            return Err(JobDecodeError::BadLength(frame.len()));
        }
        let expected = crc16(&frame[2..len - 2]);
        let found = u16::from_be_bytes([frame[len - 2], frame[len - 1]]);
        if expected != found {
            return Err(JobDecodeError::BadCrc { expected, found });
        }
        let n = usize::from(frame[5]);
        if (n != 1 && n != 4) || 24 + 32 * n != len {
            return Err(JobDecodeError::BadMidstateCount(frame[5]));
        }
        if frame[4] & 0x03 != 0 {
            return Err(JobDecodeError::BadJobByte(frame[4]));
        }
        let mut midstates = [[0u32; 8]; 4];
        for (i, state) in midstates.iter_mut().take(n).enumerate() {
            for w in 0..8 {
                let at = 22 + i * 32 + w * 4;
                state[7 - w] =
                    u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
            }
        }
        let mut tail = [0u8; 4];
        tail.copy_from_slice(&frame[18..22]);
        Ok(MidstateJob {
            job_id: (frame[4] >> 2) & (JOB_ID_COUNT - 1),
            starting_nonce: le32(&frame[6..10]),
            nbits: le32(&frame[10..14]),
            ntime: le32(&frame[14..18]),
            merkle_root_tail: tail,
            midstate_count: n as u8,
            midstates,
        })
    }
}

/// Versions for the midstates of a BM1397 job: `base` stepped `index` times by the lowest bit of
/// `mask` within the mask (ESP-Miner `increment_bitmask`: 0x20000000 with mask 0x1FFFE000 gives
/// 0x20000000, 0x20002000, 0x20004000, 0x20006000).
pub const fn midstate_version(base: u32, mask: u32, index: u8) -> u32 {
    if mask == 0 {
        return base;
    }
    let mut rolled = base & mask;
    let mut i = 0;
    while i < index {
        // Add one unit of the mask's field, carrying only through mask bits.
        rolled = (rolled | !mask).wrapping_add(1) & mask;
        i += 1;
    }
    (base & !mask) | rolled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midstate_versions_step_inside_the_mask() {
        let v: [u32; 4] =
            core::array::from_fn(|i| midstate_version(0x2000_0000, 0x1FFF_E000, i as u8));
        assert_eq!(v, [0x2000_0000, 0x2000_2000, 0x2000_4000, 0x2000_6000]);
        // Carry wraps within the mask and never touches bits outside it.
        assert_eq!(midstate_version(0x3FFF_E004, 0x1FFF_E000, 1), 0x2000_0004);
    }

    #[test]
    fn rolling_keeps_base_bits_outside_the_mask() {
        assert_eq!(
            roll_version(0x2000_0000, 0x00B4_4000, 0x1FFF_E000),
            0x20B4_4000
        );
        // A base that already has bits inside the mask: they are replaced, not ORed.
        assert_eq!(
            roll_version(0x2000_4000, 0x0000_2000, 0x1FFF_E000),
            0x2000_2000
        );
    }
}
