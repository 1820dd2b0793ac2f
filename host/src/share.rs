//! Every result a device returns is checked here: rebuild the header, sha256d, compare the
//! 256-bit hash with 256-bit targets (never floating-point difficulties), and classify.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Target};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Stats};
use crate::submit::{Journal, JournalEntry};
use crate::work::{Job, JobId};

/// A result from a device.
#[derive(Debug, Clone)]
pub struct Found {
    /// Device index (stats).
    pub device: usize,
    /// Device name.
    pub device_name: String,
    /// Chip on the chain, when known.
    pub chip: Option<u16>,
    /// The job the device says it hashed.
    pub job: Arc<Job>,
    /// Full rolled header version.
    pub version: i32,
    /// Header nonce.
    pub nonce: u32,
    /// What every result of this device meets (its share threshold).
    pub threshold: Threshold,
}

/// A device's share threshold: the target every result it returns meets, and the work one
/// result stands for. Chips and the CPU report from a number of leading zero bits; a Stratum
/// miner from its session difficulty, which may be fractional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Every result hashes to this or below.
    pub target: Target,
    /// Expected hashes per result.
    pub hashes: f64,
}

impl Threshold {
    /// "At least `bits` leading zero bits".
    pub fn zero_bits(bits: u32) -> Threshold {
        Threshold {
            target: target_for_zero_bits(bits),
            hashes: hashes_per_share(bits),
        }
    }
}

/// The target meaning "at least `bits` leading zero bits".
pub fn target_for_zero_bits(bits: u32) -> Target {
    let mut be = [0xFFu8; 32];
    let bits = bits.min(256) as usize;
    for (i, byte) in be.iter_mut().enumerate() {
        let start = i * 8;
        if start + 8 <= bits {
            *byte = 0;
        } else if start < bits {
            *byte = 0xFF >> (bits - start);
        }
    }
    Target::from_be_bytes(be)
}

/// Expected hashes for one share at `bits` zero bits.
pub fn hashes_per_share(bits: u32) -> f64 {
    2f64.powi(bits as i32)
}

/// Difficulty of a hash (difficulty-1 target over the hash), for display only.
pub fn hash_difficulty(hash: &BlockHash) -> f64 {
    let mut value = 0f64;
    for byte in hash.to_byte_array().iter().rev() {
        value = value * 256.0 + f64::from(*byte);
    }
    // Difficulty 1 = 0xFFFF · 2^208.
    if value == 0.0 {
        f64::INFINITY
    } else {
        65535.0 * 2f64.powi(208) / value
    }
}

/// What a result is.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Meets the network target: a block, whatever else is wrong with the result.
    Block {
        /// Block hash.
        hash: BlockHash,
        /// The device rolled version bits outside its mask (a valid block all the same, if the
        /// version is one the network accepts: the node decides).
        outside_mask: bool,
    },
    /// Meets the device's share target.
    Share {
        /// Hash.
        hash: BlockHash,
    },
    /// Rolls version bits outside the allowed mask.
    VersionOutsideMask,
    /// Does not meet the device's own threshold: corrupted or miscomputed.
    HardwareError,
}

/// Check one result. Pure. The hash decides first: a result that meets the network target is
/// a block even if the device misbehaved in producing it.
pub fn verify(job: &Job, version: i32, nonce: u32, share_target: &Target) -> Verdict {
    let hash = job.header(version, nonce).block_hash();
    let in_mask = job.version_allowed(version);
    if job.work.template.target.is_met_by(hash) {
        Verdict::Block {
            hash,
            outside_mask: !in_mask,
        }
    } else if !in_mask {
        Verdict::VersionOutsideMask
    } else if share_target.is_met_by(hash) {
        Verdict::Share { hash }
    } else {
        Verdict::HardwareError
    }
}

/// A block to submit.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The journal entry, already on disk.
    pub entry: JournalEntry,
    /// Hash.
    pub hash: BlockHash,
    /// The block it builds on.
    pub parent: BlockHash,
    /// Device index.
    pub device_index: usize,
    /// Whether its work was already replaced when it came back.
    pub stale_work: bool,
}

/// What the checker made of one result. Decided by [`ResultLedger::check`], which is pure.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// The same (job, version, nonce) came back before.
    Duplicate,
    /// Below the device's own threshold.
    HardwareError,
    /// Rolled version bits outside the mask (and is no block).
    VersionOutsideMask,
    /// A share; `stale` when its work builds on a replaced tip.
    Share {
        /// Hash.
        hash: BlockHash,
        /// Its work was already replaced.
        stale: bool,
    },
    /// Meets the network target: journalled and submitted, always.
    Block {
        /// Hash.
        hash: BlockHash,
        /// Its work was already replaced.
        stale: bool,
        /// The first block we found on this parent (mining pauses on it until the node
        /// answers); later ones are siblings of it.
        first_on_parent: bool,
        /// Rolled version bits outside the device's mask.
        outside_mask: bool,
    },
}

/// What the checker remembers between results: which results it has seen (duplicates) and on
/// which parents it already found a block (siblings).
#[derive(Debug, Default)]
pub struct ResultLedger {
    seen: HashMap<JobId, HashSet<(i32, u32)>>,
    extended: HashSet<BlockHash>,
}

impl ResultLedger {
    /// Classify one result against the tip new work builds on. No I/O.
    pub fn check(&mut self, found: &Found, current_tip: Option<BlockHash>) -> Checked {
        if self.seen.len() > 4096 {
            let newest = self.seen.keys().copied().max().unwrap_or(0);
            self.seen.retain(|id, _| *id + 2048 > newest);
        }
        if !self
            .seen
            .entry(found.job.id)
            .or_default()
            .insert((found.version, found.nonce))
        {
            return Checked::Duplicate;
        }
        let parent = found.job.work.prev_blockhash();
        let stale = current_tip.is_some_and(|tip| tip != parent);
        match verify(
            &found.job,
            found.version,
            found.nonce,
            &found.threshold.target,
        ) {
            Verdict::VersionOutsideMask => Checked::VersionOutsideMask,
            Verdict::HardwareError => Checked::HardwareError,
            Verdict::Share { hash } => Checked::Share { hash, stale },
            Verdict::Block { hash, outside_mask } => {
                if self.extended.len() >= 1000 {
                    self.extended.clear();
                }
                let first_on_parent = self.extended.insert(parent);
                Checked::Block {
                    hash,
                    stale,
                    first_on_parent,
                    outside_mask,
                }
            }
        }
    }
}

/// The share checker actor: results in, counters and block candidates out.
#[derive(Debug)]
pub struct ShareChecker {
    /// Results from devices.
    pub found: mpsc::Receiver<Found>,
    /// The tip new work builds on (updated by the template source even while paused).
    pub tip: watch::Receiver<Option<BlockHash>>,
    /// Block candidates to the submitter.
    pub candidates: mpsc::Sender<Candidate>,
    /// The journal: every candidate is written here before it is queued for submission.
    pub journal: Journal,
    /// Tells the template source to stop mining on a tip we just extended.
    pub found_block: mpsc::Sender<BlockHash>,
    /// Counters.
    pub stats: Stats,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// The devices have stopped: take no more results, check and journal every one already
    /// queued, then end (which lets the submitter finish in turn).
    pub drain: CancellationToken,
    /// Hard stop: end now.
    pub cancel: CancellationToken,
}

impl ShareChecker {
    /// Run until every device is gone and the queue is drained, or until the hard stop.
    pub async fn run(mut self) {
        let mut ledger = ResultLedger::default();
        let mut draining = false;
        loop {
            let found = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                _ = self.drain.cancelled(), if !draining => {
                    // Nothing new gets in; what is queued is still delivered below.
                    draining = true;
                    self.found.close();
                    continue;
                }
                f = self.found.recv() => match f { Some(f) => f, None => break },
            };
            let current_tip = *self.tip.borrow();
            match ledger.check(&found, current_tip) {
                Checked::Duplicate => self.stats.update(found.device, |d| {
                    d.duplicates += 1;
                    if let Some(chip) = found.chip {
                        d.chip(chip).duplicates += 1;
                    }
                }),
                Checked::VersionOutsideMask => {
                    tracing::warn!(device = %found.device_name, version = format_args!("{:#010x}", found.version),
                        "result rolls version bits outside the mask; dropped");
                    self.stats.update(found.device, |d| d.hardware_errors += 1);
                }
                Checked::HardwareError => self.stats.update(found.device, |d| {
                    d.hardware_errors += 1;
                    if let Some(chip) = found.chip {
                        d.chip(chip).hardware_errors += 1;
                    }
                }),
                Checked::Share { hash, stale } => {
                    self.count_share(&found, &hash, stale);
                    if !stale {
                        self.share_upstream(&found, &hash, false);
                        self.share_to_pool(&found, &hash, false);
                    }
                }
                Checked::Block { hash, stale, .. } if found.job.work.upstream.is_some() => {
                    // A pool's work: its coinbase pays the pool, which submits its blocks.
                    self.count_share(&found, &hash, stale);
                    self.share_upstream(&found, &hash, true);
                }
                Checked::Block {
                    hash,
                    stale,
                    first_on_parent,
                    outside_mask,
                } => {
                    self.count_share(&found, &hash, stale);
                    self.block_candidate(&found, hash, stale, first_on_parent, outside_mask)
                        .await;
                    // A pool member's block is a share too, and the coordinator submits it as
                    // well (after ours: the journal comes first).
                    self.share_to_pool(&found, &hash, true);
                }
            }
        }
    }

    /// Journal a hash that meets the network target and hand it to the submitter. Every one
    /// is kept: the submitter, which knows the node's answers, decides what is pointless.
    async fn block_candidate(
        &self,
        found: &Found,
        hash: BlockHash,
        stale: bool,
        first_on_parent: bool,
        outside_mask: bool,
    ) {
        let prev = found.job.work.prev_blockhash();
        let height = found.job.work.template.height;
        if outside_mask {
            tracing::info!(%hash, device = %found.device_name, version = format_args!("{:#010x}", found.version),
                "a block with version bits outside the device's mask; submitting it, the node decides");
        }
        if !first_on_parent {
            tracing::info!(%hash, height, device = %found.device_name,
                "another block on a parent we already found one on; journalled, submitted unless ours holds the height");
        }
        // The block straight from its parts, which cannot fail; then our own decoding and
        // consensus checks. A failure there is our bug, not a reason to withhold the block: it
        // is submitted all the same and the node's verdict says what is wrong.
        let bytes = found.job.block_bytes(found.version, found.nonce);
        let target = found.job.work.template.target;
        match bitcoin::consensus::deserialize::<bitcoin::Block>(&bytes) {
            Ok(block) => {
                if !block.check_merkle_root()
                    || !block.check_witness_commitment()
                    || block.header.validate_pow(target).is_err()
                {
                    tracing::error!(%hash, "assembled block fails its own consensus checks; submitting for the node's verdict");
                }
            }
            Err(e) => {
                tracing::error!(%hash, error = %e, "could not decode the assembled block; submitting it from its parts for the node's verdict");
            }
        }
        self.stats.update(found.device, |d| d.block_candidates += 1);
        if first_on_parent {
            let _ = self.found_block.try_send(prev);
        }
        // On disk before anything else can go wrong: a shutdown, a crash, or a submitter still
        // busy with an earlier block cannot lose it now.
        let entry = JournalEntry {
            height,
            hash: hash.to_string(),
            device: found.device_name.clone(),
            found_at: crate::work::unix_now(),
            block: hex::encode(&bytes),
        };
        if let Err(e) = self.journal.record(&entry) {
            tracing::error!(error = %e, %hash, "could not journal a block candidate; submitting anyway");
        }
        let candidate = Candidate {
            entry,
            hash,
            parent: prev,
            device_index: found.device,
            stale_work: stale,
        };
        if self.candidates.send(candidate).await.is_err() {
            tracing::error!(%hash, height, "submitter is gone; the candidate stays in the journal for the next start");
        }
    }

    /// Send a share of a pool's work up, when it meets the pool's target.
    fn share_upstream(&self, found: &Found, hash: &BlockHash, block: bool) {
        let Some(upstream) = &found.job.work.upstream else {
            return;
        };
        if !block && !upstream.share_target.is_met_by(*hash) {
            return;
        }
        let Some(share) = found.job.upstream_share(found.version, found.nonce, block) else {
            return;
        };
        if upstream.shares.try_send(share).is_err() {
            tracing::warn!(pool = %upstream.pool, device = %found.device_name,
                "pool connection busy or gone; a share for it was dropped");
        }
    }

    /// Send a share of a Hearth pool round to the coordinator, when it meets the pool's target.
    fn share_to_pool(&self, found: &Found, hash: &BlockHash, block: bool) {
        let Some(pool) = &found.job.work.pool else {
            return;
        };
        if !block && !pool.target.borrow().is_met_by(*hash) {
            return;
        }
        let header = bitcoin::consensus::serialize(&found.job.header(found.version, found.nonce));
        let Ok(header) = <[u8; 80]>::try_from(header) else {
            return;
        };
        let share = crate::pool::member::PoolShare {
            round: pool.round,
            header,
            coinbase: found.job.work.coinbase.legacy_bytes(found.job.extranonce()),
            branch: found.job.work.branch.clone(),
            block: block.then(|| hex::encode(found.job.block_bytes(found.version, found.nonce))),
        };
        if pool.shares.try_send(share).is_err() {
            tracing::warn!(device = %found.device_name, "pool link busy or gone; a share for the coordinator was dropped");
        }
    }

    fn count_share(&self, found: &Found, hash: &BlockHash, stale: bool) {
        if stale {
            self.stats.update(found.device, |d| {
                d.stale += 1;
                if let Some(chip) = found.chip {
                    d.chip(chip).stale += 1;
                }
            });
            return;
        }
        let work = found.threshold.hashes;
        let difficulty = hash_difficulty(hash);
        self.stats
            .update(found.device, |d| d.add_share(work, difficulty, found.chip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bit_targets() {
        assert_eq!(target_for_zero_bits(0).to_be_bytes(), [0xFF; 32]);
        let t = target_for_zero_bits(12).to_be_bytes();
        assert_eq!(&t[..3], &[0x00, 0x0F, 0xFF]);
        let t = target_for_zero_bits(32).to_be_bytes();
        assert_eq!(&t[..5], &[0, 0, 0, 0, 0xFF]);
    }
}

#[cfg(test)]
mod verify_tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::template::parse_template;
    use crate::work::{BIP320_MASK, JobFactory, TemplateWork};

    pub(super) fn job(bits: &str) -> crate::work::Job {
        let mut gbt = crate::template::tests::sample_gbt(100);
        // Mainnet-like target so that shares and blocks differ.
        gbt["bits"] = serde_json::json!(bits);
        let target = bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(
            u32::from_str_radix(bits, 16).unwrap(),
        ));
        gbt["target"] = serde_json::json!(hex::encode(target.to_be_bytes()));
        let template = parse_template(gbt.to_string().as_bytes()).unwrap();
        let payout =
            bitcoin::ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        let work = Arc::new(TemplateWork::new(1, template, &payout, b"t", true).unwrap());
        JobFactory::new(0, Arc::new(AtomicU64::new(0)), BIP320_MASK).next_job(&work)
    }

    #[test]
    fn results_are_classified_by_256_bit_comparison() {
        let job = job("1d00ffff");
        // Search a few nonces for one with >= 8 zero bits (a share at 8 bits, not a block).
        let nonce = (0u32..)
            .find(|n| target_for_zero_bits(8).is_met_by(job.header(job.version, *n).block_hash()))
            .unwrap();
        assert!(matches!(
            verify(&job, job.version, nonce, &target_for_zero_bits(8)),
            Verdict::Share { .. }
        ));
        assert_eq!(
            verify(&job, job.version, nonce, &target_for_zero_bits(40)),
            Verdict::HardwareError
        );
        assert_eq!(
            verify(
                &job,
                job.version | 0x4000_0000,
                nonce,
                &target_for_zero_bits(8)
            ),
            Verdict::VersionOutsideMask
        );
        // Regtest target: every hash with a leading zero bit is a block.
        let easy = super::verify_tests::job("207fffff");
        let nonce = (0u32..)
            .find(|n| target_for_zero_bits(1).is_met_by(easy.header(easy.version, *n).block_hash()))
            .unwrap();
        assert!(matches!(
            verify(&easy, easy.version, nonce, &target_for_zero_bits(1)),
            Verdict::Block { .. }
        ));
    }
}

#[cfg(test)]
mod ledger_tests {
    use std::sync::Arc;

    use super::*;

    fn found(job: &Arc<Job>, version: i32, nonce: u32) -> Found {
        Found {
            device: 0,
            device_name: "d".into(),
            chip: None,
            job: job.clone(),
            version,
            nonce,
            threshold: Threshold::zero_bits(1),
        }
    }

    /// Nonces whose hash meets the (regtest) network target of `job`.
    fn block_nonces(job: &Job, version: i32) -> impl Iterator<Item = u32> + '_ {
        (0u32..).filter(move |n| {
            job.work
                .template
                .target
                .is_met_by(job.header(version, *n).block_hash())
        })
    }

    #[test]
    fn duplicates_are_caught_per_job_version_and_nonce() {
        let job = Arc::new(super::verify_tests::job("207fffff"));
        let tip = Some(job.work.prev_blockhash());
        let mut ledger = ResultLedger::default();
        let nonce = block_nonces(&job, job.version).next().unwrap();
        assert!(matches!(
            ledger.check(&found(&job, job.version, nonce), tip),
            Checked::Block { .. }
        ));
        assert_eq!(
            ledger.check(&found(&job, job.version, nonce), tip),
            Checked::Duplicate
        );
        // The same nonce with another rolled version is another header, not a duplicate.
        let rolled = job.version | 0x0000_2000;
        assert_ne!(
            ledger.check(&found(&job, rolled, nonce), tip),
            Checked::Duplicate
        );
    }

    #[test]
    fn blocks_after_the_first_on_a_parent_are_siblings_and_still_blocks() {
        let job = Arc::new(super::verify_tests::job("207fffff"));
        let tip = Some(job.work.prev_blockhash());
        let mut ledger = ResultLedger::default();
        let mut nonces = block_nonces(&job, job.version);
        let first = ledger.check(&found(&job, job.version, nonces.next().unwrap()), tip);
        let second = ledger.check(&found(&job, job.version, nonces.next().unwrap()), tip);
        assert!(matches!(
            first,
            Checked::Block {
                first_on_parent: true,
                stale: false,
                ..
            }
        ));
        // Before: only logged at debug and dropped. Now a block, journalled and submitted.
        assert!(matches!(
            second,
            Checked::Block {
                first_on_parent: false,
                ..
            }
        ));
    }

    #[test]
    fn results_for_a_replaced_tip_are_stale_and_blocks_among_them_still_count() {
        let job = Arc::new(super::verify_tests::job("207fffff"));
        let other_tip = Some(BlockHash::from_byte_array([7; 32]));
        let mut ledger = ResultLedger::default();
        let nonce = block_nonces(&job, job.version).next().unwrap();
        assert!(matches!(
            ledger.check(&found(&job, job.version, nonce), other_tip),
            Checked::Block { stale: true, .. }
        ));
        // A share (not a block) on a replaced tip is a stale share. (Both test jobs have id 0:
        // a ledger of its own.)
        let mut ledger = ResultLedger::default();
        let hard = Arc::new(super::verify_tests::job("1d00ffff"));
        let share_nonce = (0u32..)
            .find(|n| target_for_zero_bits(1).is_met_by(hard.header(hard.version, *n).block_hash()))
            .unwrap();
        assert!(matches!(
            ledger.check(&found(&hard, hard.version, share_nonce), other_tip),
            Checked::Share { stale: true, .. }
        ));
        assert!(matches!(
            ledger.check(
                &found(&hard, hard.version, share_nonce),
                Some(hard.work.prev_blockhash())
            ),
            Checked::Duplicate
        ));
    }

    #[test]
    fn a_block_with_version_bits_outside_the_mask_is_still_a_block() {
        let job = Arc::new(super::verify_tests::job("207fffff"));
        let tip = Some(job.work.prev_blockhash());
        let outside = job.version | 0x0000_1000; // below the BIP320 range
        let mut ledger = ResultLedger::default();
        let nonce = block_nonces(&job, outside).next().unwrap();
        assert!(matches!(
            ledger.check(&found(&job, outside, nonce), tip),
            Checked::Block {
                outside_mask: true,
                ..
            }
        ));
        // Below the network target it is what it was: a device fault.
        let hard = Arc::new(super::verify_tests::job("1d00ffff"));
        assert_eq!(
            ledger.check(&found(&hard, hard.version | 0x0000_1000, 1), tip),
            Checked::VersionOutsideMask
        );
    }
}

#[cfg(test)]
mod checker_tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::template::parse_template;
    use crate::work::{BIP320_MASK, JobFactory, TemplateWork};

    #[tokio::test]
    async fn a_block_that_does_not_decode_here_is_still_journalled_and_submitted() {
        // A template transaction that is valid hex but not a transaction we can decode: our
        // assembly of the block fails. The block is journalled and handed to the submitter from
        // its parts all the same (it was dropped), and the node decides.
        let mut gbt = crate::template::tests::sample_gbt(100);
        gbt["transactions"][0]["data"] = serde_json::json!("ff".repeat(100));
        let template = parse_template(gbt.to_string().as_bytes()).unwrap();
        let payout =
            bitcoin::ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        let work = Arc::new(TemplateWork::new(1, template, &payout, b"t", true).unwrap());
        let job =
            Arc::new(JobFactory::new(0, Arc::new(AtomicU64::new(0)), BIP320_MASK).next_job(&work));
        let nonce = (0u32..)
            .find(|n| {
                work.template
                    .target
                    .is_met_by(job.header(job.version, *n).block_hash())
            })
            .unwrap();
        assert!(job.block(job.version, nonce).is_err());

        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let stats = Stats::default();
        stats.add_device("d");
        let (found_tx, found_rx) = mpsc::channel(4);
        let (candidate_tx, mut candidate_rx) = mpsc::channel(4);
        let (found_block_tx, _found_block_rx) = mpsc::channel(4);
        let (_tip_tx, tip_rx) = watch::channel(Some(work.prev_blockhash()));
        let checker = ShareChecker {
            found: found_rx,
            tip: tip_rx,
            candidates: candidate_tx,
            journal: journal.clone(),
            found_block: found_block_tx,
            stats,
            events: broadcast::channel(4).0,
            drain: CancellationToken::new(),
            cancel: CancellationToken::new(),
        };
        let task = tokio::spawn(checker.run());
        found_tx
            .send(Found {
                device: 0,
                device_name: "d".into(),
                chip: None,
                job: job.clone(),
                version: job.version,
                nonce,
                threshold: Threshold::zero_bits(1),
            })
            .await
            .unwrap();
        drop(found_tx);
        let candidate = candidate_rx.recv().await.expect("no candidate");
        assert_eq!(
            candidate.entry.block,
            hex::encode(job.block_bytes(job.version, nonce))
        );
        assert_eq!(journal.pending().unwrap().len(), 1);
        task.await.unwrap();
    }
}
