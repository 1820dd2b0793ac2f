//! Stratum jobs cut from the daemon's template work, and the judgement of one submission.
//! Pure and consensus-critical: a submission becomes the same [`Job`] and header a device's
//! result would, and its hash is compared with 256-bit targets.
//!
//! Extranonce layout: the work's extranonce slot (8 bytes on the node's work, 4 to 8 on a
//! pool's) is `extranonce1 ‖ extranonce2` (see [`layout`]). Every session's extranonce1 has its
//! top bit set, and the daemon's own devices use 2-byte prefixes below 0x8000 (their index), so
//! a miner's coinbase never equals a device's or another session's.

use std::sync::Arc;
use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Target};
use serde_json::json;

use crate::template::{EXTRANONCE_SIZE, merkle_root};
use crate::work::{Job, JobId, TemplateWork};

/// How a work's extranonce slot of `extranonce_len` bytes splits into the server's
/// extranonce1 and the miner's extranonce2. The miner gets 4 bytes where the slot has room
/// for a 2-byte extranonce1 besides, else 2: both inside every client's accepted range
/// (NerdMiner takes 2, 4 or 8, cgminer 2 to 16, stock Antminer firmware at most 8, ESP-Miner
/// at most 32). The node's 8-byte slot gives 4 and 4, as public-pool does.
pub fn layout(extranonce_len: usize) -> (usize, usize) {
    let len = extranonce_len.clamp(4, EXTRANONCE_SIZE);
    let extranonce2 = if len >= 6 { 4 } else { 2 };
    (len - extranonce2, extranonce2)
}

/// The extranonce1 of session number `n`, `len` bytes (2 to 4) with the top bit set.
pub fn extranonce1(n: u32, len: usize) -> Vec<u8> {
    let len = len.clamp(1, 4);
    let mut bytes = n.to_be_bytes()[4 - len..].to_vec();
    bytes[0] |= 0x80;
    bytes
}

/// A job as announced to every miner: the template work plus what `mining.notify` says about
/// it, serialised once for all sessions.
#[derive(Debug)]
pub struct StratumJob {
    /// Daemon-unique number.
    pub number: u64,
    /// The work it was cut from.
    pub work: Arc<TemplateWork>,
    /// Header version the miner starts from (the template's, with required deployment bits).
    pub version: i32,
    /// Version bits this job lets miners roll (before each session's own granted mask).
    pub rollable: u32,
    /// Whether miners must drop older jobs (a new tip).
    pub clean: bool,
    /// The `mining.notify` line after its job id, with `clean_jobs = true` (a new tip, or a
    /// miner's first job). Job ids are per session (see [`StratumJob::write_notify`]), so the
    /// rest of the line is serialised once for every session.
    notify_tail_clean: Arc<str>,
    /// The same with `clean_jobs = false` (a fee refresh, or the job again after a difficulty
    /// change).
    notify_tail_update: Arc<str>,
}

/// How every `mining.notify` line starts, up to the job id (serde_json writes keys sorted).
const NOTIFY_HEAD: &str = r#"{"id":null,"method":"mining.notify","params":[""#;

/// The `mining.notify` previous-hash field: the header's 32 bytes with each 4-byte word
/// byte-swapped (the historical Stratum V1 form every client undoes).
pub fn stratum_prevhash(hash: &BlockHash) -> String {
    hex::encode(swap_words(hash.to_byte_array()))
}

/// Each 4-byte word byte-swapped: header order to Stratum's previous-hash order, and back
/// (the swap is its own inverse).
pub fn swap_words(mut bytes: [u8; 32]) -> [u8; 32] {
    for word in bytes.chunks_mut(4) {
        word.reverse();
    }
    bytes
}

impl StratumJob {
    /// Cut the job numbered `number` from `work`.
    pub fn new(number: u64, work: Arc<TemplateWork>, clean: bool) -> StratumJob {
        let template = &work.template;
        let version = ((template.version as u32) | template.vb_required) as i32;
        let ntime = work.ntime_now();
        let branch: Vec<String> = work
            .branch
            .iter()
            .map(|n| hex::encode(n.to_byte_array()))
            .collect();
        let notify_tail = |clean: bool| -> Arc<str> {
            let line = super::protocol::notification(
                "mining.notify",
                json!([
                    "",
                    stratum_prevhash(&template.prev_blockhash),
                    hex::encode(&work.coinbase.prefix),
                    hex::encode(&work.coinbase.suffix),
                    branch,
                    format!("{:08x}", version as u32),
                    format!("{:08x}", template.bits.to_consensus()),
                    format!("{ntime:08x}"),
                    clean,
                ]),
            );
            // Everything after the (empty) job id's opening quote.
            line.get(NOTIFY_HEAD.len()..).unwrap_or_default().into()
        };
        StratumJob {
            number,
            notify_tail_clean: notify_tail(true),
            notify_tail_update: notify_tail(false),
            rollable: work.rollable_version_bits(),
            version,
            clean,
            work,
        }
    }

    /// Append the `mining.notify` line for this job under a session's job id `id` (8 hex
    /// digits) to `out`, with `clean_jobs` (true for a new tip and for a miner's first job;
    /// false for a fee refresh and for the job sent again after a difficulty change).
    ///
    /// Job ids are per session and never reused, because miners build new work only when the
    /// id changes (ESP-Miner ignores a repeated id, cpuminer keeps its work): the same job sent
    /// again after a difficulty change, which cgminer, cpuminer and NerdQAxe apply only at the
    /// next notify, needs a new id.
    pub fn write_notify(&self, out: &mut Vec<u8>, id: u32, clean: bool) {
        use std::io::Write as _;
        out.extend_from_slice(NOTIFY_HEAD.as_bytes());
        let _ = write!(out, "{id:08x}");
        out.extend_from_slice(self.tail(clean).as_bytes());
    }

    fn tail(&self, clean: bool) -> &str {
        if clean {
            &self.notify_tail_clean
        } else {
            &self.notify_tail_update
        }
    }
}

/// What a submission is, once judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Meets the network target: a block, whatever else is wrong with it.
    Block {
        /// Block hash.
        hash: BlockHash,
    },
    /// Meets the session's share target on current work.
    Share {
        /// Hash.
        hash: BlockHash,
    },
    /// A valid share of work whose tip was replaced.
    Stale,
    /// Does not meet the share target.
    LowDifficulty,
    /// ntime outside `[mintime, curtime + 2 h margin]`.
    NtimeOutOfRange,
    /// Version bits outside the granted mask.
    VersionOutsideMask,
}

/// A judged submission: what it is, the [`Job`] it is a result of, and the header version it
/// was hashed with.
#[derive(Debug, Clone)]
pub struct Judged {
    /// What it is.
    pub judgement: Judgement,
    /// The job, for the share checker and the journal.
    pub job: Job,
    /// Header version.
    pub version: i32,
}

/// One submission, checked by the caller for job id, extranonce2 size and duplicates.
#[derive(Debug, Clone, Copy)]
pub struct Submission {
    /// The session's extranonce1 and the miner's extranonce2, back to back (the work's
    /// `extranonce_len` bytes; the rest is zero).
    pub extranonce: [u8; EXTRANONCE_SIZE],
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// BIP310 version bits (none: the job's version).
    pub version_bits: Option<u32>,
}

/// The header version a submission means. BIP310 miners send the rolled bits (`version &
/// mask`, as cgminer and ESP-Miner do); some send the whole rolled version. Either way the
/// result is `(job & !mask) | (bits & mask)`; `None` when bits outside the mask differ from
/// the job's (never `job | bits`, which broke shares on templates with bits inside the mask).
pub fn rolled_version(job_version: i32, mask: u32, bits: Option<u32>) -> Option<i32> {
    let base = job_version as u32;
    let Some(bits) = bits else {
        return Some(job_version);
    };
    if bits & !mask == 0 || (bits ^ base) & !mask == 0 {
        Some(((base & !mask) | (bits & mask)) as i32)
    } else {
        None
    }
}

/// Judge one submission against `job`: rebuild the coinbase, merkle root and header exactly
/// as a device's result would be, hash, and compare with the network and share targets. A hash
/// that meets the network target is a block first (stale work, a time or version the miner had
/// no right to: the node decides). Returns the [`Job`] the submission is a result of, for the
/// share checker and the journal. `mask` is the session's granted version mask; `current`
/// whether the job still builds on the tip; `job_id` the daemon-wide id the [`Job`] gets.
pub fn judge(
    job: &StratumJob,
    submission: &Submission,
    mask: u32,
    share_target: &Target,
    current: bool,
    job_id: JobId,
) -> Judged {
    let work = &job.work;
    let extranonce = submission.extranonce;
    let len = work.extranonce_len.min(EXTRANONCE_SIZE);
    let version_mask = mask & job.rollable;
    let rolled = rolled_version(job.version, version_mask, submission.version_bits);
    let result = Job {
        id: job_id,
        work: work.clone(),
        extranonce,
        merkle_root: merkle_root(work.coinbase.txid(&extranonce[..len]), &work.branch),
        version: job.version,
        version_mask,
        ntime: submission.ntime,
        created: Instant::now(),
    };
    // Bits outside the mask: hash what the miner most plausibly hashed (the whole version it
    // sent when that looks like a version, else the job's with its bits), for the one case that
    // matters, a block.
    let version = rolled.unwrap_or_else(|| {
        let bits = submission.version_bits.unwrap_or(0);
        if bits & 0xE000_0000 == 0x2000_0000 {
            bits as i32
        } else {
            (job.version as u32 | bits) as i32
        }
    });
    let hash = result.header(version, submission.nonce).block_hash();
    if work.template.target.is_met_by(hash) {
        return Judged {
            judgement: Judgement::Block { hash },
            job: result,
            version,
        };
    }
    let template = &work.template;
    let judgement = if rolled.is_none() {
        Judgement::VersionOutsideMask
    } else if submission.ntime < template.mintime
        || submission.ntime > template.curtime.saturating_add(work.max_ntime_ahead)
    {
        Judgement::NtimeOutOfRange
    } else if !share_target.is_met_by(hash) {
        Judgement::LowDifficulty
    } else if !current {
        Judgement::Stale
    } else {
        Judgement::Share { hash }
    };
    Judged {
        judgement,
        job: result,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prevhash_words_are_swapped_as_stratum_has_it() {
        // slush's Stratum V1 documentation example.
        let hash: BlockHash = "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8"
            .parse()
            .unwrap();
        assert_eq!(
            stratum_prevhash(&hash),
            "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000"
        );
        // The Bitaxe vector (docs/bm13xx-vectors.md §5.3).
        let hash: BlockHash = "000000000000000000015296bc96391d0d67f4a301f2d4fc6db962c16b6455fd"
            .parse()
            .unwrap();
        assert_eq!(
            stratum_prevhash(&hash),
            "6b6455fd6db962c101f2d4fc0d67f4a3bc96391d000152960000000000000000"
        );
    }

    #[test]
    fn rolled_versions_replace_bits_inside_the_mask_only() {
        let mask = 0x1FFF_E000;
        assert_eq!(
            rolled_version(0x2000_0000, mask, Some(0x00b4_4000)),
            Some(0x20b4_4000)
        );
        // The whole version sent instead of the bits: same header.
        assert_eq!(
            rolled_version(0x2000_0000, mask, Some(0x20b4_4000)),
            Some(0x20b4_4000)
        );
        // A template with bits inside the mask: replaced, not ORed (c2pool#1392).
        assert_eq!(
            rolled_version(0x2000_6000, mask, Some(0x0000_2000)),
            Some(0x2000_2000)
        );
        assert_eq!(rolled_version(0x2000_0000, mask, Some(0x4000_0000)), None);
        assert_eq!(rolled_version(0x2000_0000, 0, Some(0x0000_2000)), None);
        assert_eq!(rolled_version(0x2000_0000, 0, None), Some(0x2000_0000));
        assert_eq!(
            rolled_version(0x2000_0000, 0, Some(0x2000_0000)),
            Some(0x2000_0000)
        );
    }

    /// The Bitaxe Gamma share for mainnet height 901,936 (docs/bm13xx-vectors.md §5.3): the
    /// pool's coinb1/coinb2, branch and header fields as a [`StratumJob`], judged as the pool
    /// judged the miner's real submission.
    fn bitaxe_job() -> StratumJob {
        use crate::template::tests::bitaxe;
        let coinb1 = hex::decode(bitaxe::COINB1).unwrap();
        let coinb2 = hex::decode(bitaxe::COINB2).unwrap();
        let branch = bitaxe::branch();
        let bits = bitcoin::CompactTarget::from_consensus(0x1702_3a04);
        let template = crate::template::BlockTemplate {
            height: 901_936,
            version: 0x2000_0000,
            prev_blockhash: "000000000000000000015296bc96391d0d67f4a301f2d4fc6db962c16b6455fd"
                .parse()
                .unwrap(),
            bits,
            target: Target::from_compact(bits),
            curtime: 0x6854_68d7,
            mintime: 0x6854_6000,
            coinbase_value: bitcoin::Amount::from_sat(314_000_000),
            transactions: Vec::new(),
            default_witness_commitment: None,
            weight_limit: 4_000_000,
            sigop_limit: 80_000,
            longpoll_id: None,
            rules: vec!["segwit".into()],
            vb_required: 0,
            vb_available: 0,
        };
        let work = TemplateWork {
            generation: 1,
            template,
            coinbase: crate::template::CoinbaseTemplate {
                prefix: coinb1,
                suffix: coinb2,
                has_witness_commitment: true,
                weight: 0,
            },
            branch,
            received_at: Instant::now(),
            new_tip: true,
            max_ntime_ahead: crate::work::MAX_NTIME_AHEAD_SECS,
            extranonce_len: 8,
            upstream: None,
            pool: None,
        };
        StratumJob::new(0x875b4b7, Arc::new(work), true)
    }

    fn bitaxe_submission() -> Submission {
        Submission {
            extranonce: [0x41, 0x28, 0x06, 0x4f, 0x17, 0, 0, 0],
            ntime: 0x6854_68d7,
            nonce: 0x7552_034c,
            version_bits: Some(0x00b4_4000),
        }
    }

    #[test]
    fn a_real_bitaxe_share_is_judged_as_its_pool_judged_it() {
        let job = bitaxe_job();
        let at =
            |difficulty: f64| super::super::difficulty::target_for_difficulty(difficulty).unwrap();
        let judged = judge(
            &job,
            &bitaxe_submission(),
            0x1fff_e000,
            &at(8192.0),
            true,
            7,
        );
        let Judgement::Share { hash } = judged.judgement else {
            panic!("{:?}", judged.judgement)
        };
        assert_eq!(
            hash.to_string(),
            "0000000000023704cface997bcf7388694ea43dae96c51d80658687a7d8827fe"
        );
        assert_eq!(judged.version, 0x20b4_4000);
        assert_eq!(
            hex::encode(judged.job.merkle_root.to_byte_array()),
            "06ddf5f08c36414b95ea54db71a0c28761a98bcf6355919e044f88725519a7cb"
        );
        // Its hash has difficulty 29,588: refused at 32,768, stale once the tip moved.
        let j = |s: &Submission, mask: u32, d: f64, current: bool| {
            judge(&job, s, mask, &at(d), current, 7).judgement
        };
        let s = bitaxe_submission();
        assert_eq!(j(&s, 0x1fff_e000, 32768.0, true), Judgement::LowDifficulty);
        assert_eq!(j(&s, 0x1fff_e000, 8192.0, false), Judgement::Stale);
        // Without the granted mask its version bits are refused.
        assert_eq!(j(&s, 0, 8192.0, true), Judgement::VersionOutsideMask);
        // Another extranonce2, nonce or time is another hash.
        let other = Submission {
            extranonce: [0x41, 0x28, 0x06, 0x4f, 0x18, 0, 0, 0],
            ..s
        };
        assert_eq!(
            j(&other, 0x1fff_e000, 8192.0, true),
            Judgement::LowDifficulty
        );
        // ntime before mintime, or beyond curtime plus the 2-hour margin.
        let early = Submission {
            ntime: 0x6854_5fff,
            ..s
        };
        assert_eq!(
            j(&early, 0x1fff_e000, 8192.0, true),
            Judgement::NtimeOutOfRange
        );
        let late = Submission {
            ntime: 0x6854_68d7 + 7001,
            ..s
        };
        assert_eq!(
            j(&late, 0x1fff_e000, 8192.0, true),
            Judgement::NtimeOutOfRange
        );
    }

    #[test]
    fn notify_lines_carry_the_session_job_id_and_the_stratum_fields() {
        let job = bitaxe_job();
        let line = notify_line(&job, 0x2a, false);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["method"], "mining.notify");
        assert_eq!(v["id"], serde_json::Value::Null);
        let p = v["params"].as_array().unwrap();
        assert_eq!(p.len(), 9);
        assert_eq!(p[0], "0000002a");
        assert_eq!(
            p[1],
            "6b6455fd6db962c101f2d4fc0d67f4a3bc96391d000152960000000000000000"
        );
        assert_eq!(
            p[2],
            "02000000010000000000000000000000000000000000000000000000000000000000000000ffffffff170330c30d5075626c69632d506f6f6c"
        );
        assert_eq!(p[4].as_array().unwrap().len(), 12);
        assert_eq!(p[5], "20000000");
        assert_eq!(p[6], "17023a04");
        assert_eq!(p[7], "685468d7");
        assert_eq!(p[8], false);
        let clean: serde_json::Value = serde_json::from_str(&notify_line(&job, 1, true)).unwrap();
        assert_eq!(clean["params"][8], true);
    }

    fn notify_line(job: &StratumJob, id: u32, clean: bool) -> String {
        let mut out = Vec::new();
        job.write_notify(&mut out, id, clean);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn extranonce1_never_meets_a_device_prefix() {
        for len in [2, 3, 4] {
            for n in [0, 1, 0x7FFF, 0x7FFF_FFFF, u32::MAX] {
                let e = extranonce1(n, len);
                assert_eq!(e.len(), len);
                assert!(e[0] >= 0x80);
            }
            assert_ne!(extranonce1(1, len), extranonce1(2, len));
        }
    }

    #[test]
    fn every_slot_gives_miners_an_extranonce2_they_all_take() {
        assert_eq!(layout(8), (4, 4));
        assert_eq!(layout(7), (3, 4));
        assert_eq!(layout(6), (2, 4));
        assert_eq!(layout(5), (3, 2));
        assert_eq!(layout(4), (2, 2));
        for len in 4..=8 {
            let (one, two) = layout(len);
            assert_eq!(one + two, len);
            assert!(one >= 2 && [2, 4].contains(&two));
        }
    }
}
