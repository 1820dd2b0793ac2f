//! Nonce checking on the device: rebuild the header a chip hashed and run sha256d.
//!
//! The host checks every nonce again with rust-bitcoin; doing it here as well lets the firmware
//! drop corrupted replies (CRC5 lets one corrupted frame in 32 through) before they cross USB.

use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

use crate::job::{FullHeaderJob, midstate_version, roll_version};
use crate::model::{ChipModel, JobFormat, NonceReply};
use crate::tracker::{JobTracker, RecentNonces};

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
pub const SHA256_INIT: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 state after compressing the first 64 header bytes: what BM1397 jobs carry, and what
/// the emulator reuses for every nonce of one version.
pub fn midstate(first_64: &[u8; 64]) -> [u32; 8] {
    let mut state = SHA256_INIT;
    compress256(&mut state, &[*GenericArray::from_slice(first_64)]);
    state
}

/// sha256d of an 80-byte header starting from its midstate; result in internal byte order (the
/// order rust-bitcoin stores a `BlockHash`; display order is reversed).
pub fn sha256d_from_midstate(midstate: &[u32; 8], tail: &[u8; 16]) -> [u8; 32] {
    // Second block of the first hash: 16 header bytes, 0x80, zeros, length 640 bits.
    let mut block = [0u8; 64];
    block[..16].copy_from_slice(tail);
    block[16] = 0x80;
    block[62] = 0x02;
    block[63] = 0x80;
    let mut state = *midstate;
    compress256(&mut state, &[*GenericArray::from_slice(&block)]);
    // Second hash over the 32-byte digest: one block.
    let mut block2 = [0u8; 64];
    for (i, word) in state.iter().enumerate() {
        block2[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    block2[32] = 0x80;
    block2[62] = 0x01;
    block2[63] = 0x00;
    let mut state2 = SHA256_INIT;
    compress256(&mut state2, &[*GenericArray::from_slice(&block2)]);
    let mut out = [0u8; 32];
    for (i, word) in state2.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// sha256d of an 80-byte header, internal byte order.
pub fn header_hash(header: &[u8; 80]) -> [u8; 32] {
    let mut first = [0u8; 64];
    first.copy_from_slice(&header[..64]);
    let mut tail = [0u8; 16];
    tail.copy_from_slice(&header[64..]);
    sha256d_from_midstate(&midstate(&first), &tail)
}

/// Leading zero bits of a hash in display order (= trailing zero bits of the internal bytes
/// read as a little-endian 256-bit number, from the top).
pub fn leading_zero_bits(hash_internal: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for byte in hash_internal.iter().rev() {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// A nonce re-hashed against its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedNonce {
    /// Rolled header version.
    pub version: u32,
    /// Header nonce.
    pub nonce: u32,
    /// sha256d of the header, internal byte order.
    pub hash: [u8; 32],
    /// Leading zero bits of the hash (display order).
    pub zero_bits: u32,
}

/// Rebuild the header a full-header chip hashed for `reply` and hash it. The rolled bits are
/// applied inside `version_mask` only.
pub fn check_full_header(
    job: &FullHeaderJob,
    reply: &NonceReply,
    version_mask: u32,
) -> CheckedNonce {
    let version = roll_version(job.version, reply.version_bits, version_mask);
    let hash = header_hash(&job.header(version, reply.nonce));
    CheckedNonce {
        version,
        nonce: reply.nonce,
        hash,
        zero_bits: leading_zero_bits(&hash),
    }
}

/// What [`NonceVerifier::check`] decided about a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceVerdict {
    /// The header hashes to at least the required zero bits: a real result.
    Valid(CheckedNonce),
    /// The job id names no job in flight (stale after a new block, or a corrupted reply).
    UnknownJob,
    /// The same (job, version, nonce) was reported recently.
    Duplicate(CheckedNonce),
    /// The hash does not meet the threshold: a hardware error or a corrupted reply that passed
    /// CRC5.
    HardwareError(CheckedNonce),
}

impl NonceVerdict {
    /// The re-hashed result, whatever was decided about it (none for an unknown job).
    pub fn checked(&self) -> Option<&CheckedNonce> {
        match self {
            NonceVerdict::Valid(c)
            | NonceVerdict::Duplicate(c)
            | NonceVerdict::HardwareError(c) => Some(c),
            NonceVerdict::UnknownJob => None,
        }
    }
}

/// A job as the verifier remembers it: what the chips hash, the version bits they may roll
/// for it, and the caller's own data for it.
#[derive(Debug, Clone)]
struct Booked<P> {
    job: FullHeaderJob,
    version_mask: u32,
    payload: P,
}

/// Jobs in flight plus the checks every reply must pass: job known, hash meets the chip
/// threshold, not a repeat. The one implementation of nonce checking: the firmware keeps the
/// host's work id per job as the payload `P`, the daemon its own job.
#[derive(Debug, Clone)]
pub struct NonceVerifier<P = ()> {
    model: ChipModel,
    jobs: JobTracker<Booked<P>>,
    recent: RecentNonces<128>,
    version_mask: u32,
    min_zero_bits: u32,
}

impl<P: Clone> NonceVerifier<P> {
    /// A verifier for `model` chips rolling `version_mask` unless a job says otherwise,
    /// accepting hashes with at least `min_zero_bits` leading zero bits (32 + ticket-mask bits
    /// on silicon).
    pub fn new(model: ChipModel, version_mask: u32, min_zero_bits: u32) -> Self {
        NonceVerifier {
            model,
            jobs: JobTracker::with_ids(model.job_id_count()),
            recent: RecentNonces::default(),
            version_mask,
            min_zero_bits,
        }
    }

    /// Remember `job` under the next job id, with the default version mask and payload; the id
    /// is written into the returned copy. For BM1397 the job is the header template the
    /// midstates were computed from.
    pub fn add_job(&mut self, job: FullHeaderJob) -> FullHeaderJob
    where
        P: Default,
    {
        self.add_job_with(job, self.version_mask, P::default())
    }

    /// Remember `job` under the next job id with the bits the chips may roll for it and the
    /// caller's `payload`; the id is written into the returned copy.
    pub fn add_job_with(
        &mut self,
        mut job: FullHeaderJob,
        version_mask: u32,
        payload: P,
    ) -> FullHeaderJob {
        let booked = Booked {
            job,
            version_mask,
            payload,
        };
        let id = self.jobs.insert(booked.clone());
        job.job_id = id;
        self.jobs.insert_at(id, Booked { job, ..booked });
        job
    }

    /// Model of the chips.
    pub fn model(&self) -> ChipModel {
        self.model
    }

    /// The payload of the job in flight under `job_id`.
    pub fn payload(&self, job_id: u8) -> Option<&P> {
        self.jobs.get(job_id).map(|b| &b.payload)
    }

    /// Change the threshold (the ticket mask or the share floor changed).
    pub fn set_min_zero_bits(&mut self, bits: u32) {
        self.min_zero_bits = bits;
    }

    /// Whether no job is in flight.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Forget all jobs (new block, chain re-initialised).
    pub fn clear(&mut self) {
        self.jobs.clear();
        self.recent.clear();
    }

    /// The version the chip hashed for `reply` on `booked`: rolled bits on full-header chips,
    /// the midstate's step on BM1397, inside the job's mask.
    fn hashed_version(&self, booked: &Booked<P>, reply: &NonceReply) -> u32 {
        let (base, mask) = (booked.job.version, booked.version_mask);
        match self.model.job_format() {
            JobFormat::FullHeader => roll_version(base, reply.version_bits, mask),
            JobFormat::Midstate => midstate_version(base, mask, reply.midstate_index),
        }
    }

    /// The version the chip hashed for `reply` and its job's payload; `None` for a job not in
    /// flight. No hashing: for a caller that re-hashes the header itself (the daemon's share
    /// checker does, against 256-bit targets).
    pub fn job_version(&self, reply: &NonceReply) -> Option<(u32, &P)> {
        let booked = self.jobs.get(reply.job_id)?;
        Some((self.hashed_version(booked, reply), &booked.payload))
    }

    /// Check one reply: rebuild the version the chip hashed, re-hash the header, compare with
    /// the threshold, and look for a repeat.
    pub fn check(&mut self, reply: &NonceReply) -> NonceVerdict {
        let Some(booked) = self.jobs.get(reply.job_id) else {
            return NonceVerdict::UnknownJob;
        };
        let version = self.hashed_version(booked, reply);
        let hash = header_hash(&booked.job.header(version, reply.nonce));
        let checked = CheckedNonce {
            version,
            nonce: reply.nonce,
            hash,
            zero_bits: leading_zero_bits(&hash),
        };
        if checked.zero_bits < self.min_zero_bits {
            return NonceVerdict::HardwareError(checked);
        }
        if !self.recent.insert(reply.job_id, version, reply.nonce) {
            return NonceVerdict::Duplicate(checked);
        }
        NonceVerdict::Valid(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn midstate_path_equals_plain_sha256d() {
        let mut header = [0u8; 80];
        for (i, b) in header.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let plain: [u8; 32] = Sha256::digest(Sha256::digest(header)).into();
        assert_eq!(header_hash(&header), plain);
    }

    #[test]
    fn block_839900_hashes_to_its_block_hash() {
        // docs/bm13xx-vectors.md §5.4.
        let header = hex_literal(
            "0060962aa39b4310863947efd282b30ff755d3ab247c76ee7e5d0100000000000000000\
             04c4577aff36cdfdb0613ee3dc73c46e349da802849ec4f4995f9de8df5838008df1b226619420317178560d2",
        );
        let mut hash = header_hash(&header);
        hash.reverse();
        assert_eq!(hash[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x3d, 0xfa]);
        hash.reverse();
        assert_eq!(leading_zero_bits(&hash), 78);
    }

    #[test]
    fn each_job_keeps_its_own_mask_and_payload() {
        let job = FullHeaderJob {
            job_id: 0,
            starting_nonce: 0,
            nbits: 0x1703_4219,
            ntime: 0x6622_1BDF,
            merkle_root: [3; 32],
            prev_block_hash: [5; 32],
            version: 0x3000_0000,
        };
        let mut verifier: NonceVerifier<u32> =
            NonceVerifier::new(ChipModel::Bm1370, 0x1FFF_E000, 0);
        // A template that signals bit 28 rolls only the bits below it.
        let narrow = verifier.add_job_with(job, 0x0FFF_E000, 7);
        let wide = verifier.add_job_with(job, 0x1FFF_E000, 8);
        let reply = |job_id| NonceReply {
            job_id,
            nonce: 0x1234_5678,
            version_bits: 0x0000_2000,
            midstate_index: 0,
            core: 0,
            small_core: 0,
            excess_zero_bits: 0,
            chip_address_bits: 0,
        };
        let checked = |v: NonceVerdict| *v.checked().unwrap();
        assert_eq!(
            checked(verifier.check(&reply(narrow.job_id))).version,
            0x3000_2000
        );
        assert_eq!(verifier.payload(narrow.job_id), Some(&7));
        // The same version without hashing, for a caller that re-hashes itself.
        assert_eq!(
            verifier.job_version(&reply(narrow.job_id)),
            Some((0x3000_2000, &7))
        );
        assert_eq!(verifier.job_version(&reply(30)), None);
        // The same reply for the wide job clears bit 28: another header.
        assert_eq!(
            checked(verifier.check(&reply(wide.job_id))).version,
            0x2000_2000
        );
        assert_eq!(verifier.payload(wide.job_id), Some(&8));
        assert!(matches!(
            verifier.check(&reply(narrow.job_id)),
            NonceVerdict::Duplicate(_)
        ));
        assert_eq!(verifier.check(&reply(30)), NonceVerdict::UnknownJob);
    }

    fn hex_literal(s: &str) -> [u8; 80] {
        let mut out = [0u8; 80];
        let digits: heapless::Vec<u8, 160> = s.bytes().filter(|c| c.is_ascii_hexdigit()).collect();
        for (i, pair) in digits.chunks(2).enumerate() {
            let v = |c: u8| (c as char).to_digit(16).map_or(0, |d| d as u8);
            out[i] = (v(pair[0]) << 4) | v(pair[1]);
        }
        out
    }
}
