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
    /// Leading zero bits the device guarantees for every result (its share threshold).
    pub share_bits: u32,
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
    /// Meets the network target: a block.
    Block {
        /// Block hash.
        hash: BlockHash,
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

/// Check one result. Pure.
pub fn verify(job: &Job, version: i32, nonce: u32, share_bits: u32) -> Verdict {
    if !job.version_allowed(version) {
        return Verdict::VersionOutsideMask;
    }
    let hash = job.header(version, nonce).block_hash();
    if job.work.template.target.is_met_by(hash) {
        Verdict::Block { hash }
    } else if target_for_zero_bits(share_bits).is_met_by(hash) {
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
    /// Parents of blocks the node refused: siblings found on them are submitted after all.
    pub refused: mpsc::Receiver<BlockHash>,
    /// Tells the template source to stop mining on a tip we just extended.
    pub found_block: mpsc::Sender<BlockHash>,
    /// Counters.
    pub stats: Stats,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

impl ShareChecker {
    /// Run until cancelled or every device is gone.
    pub async fn run(mut self) {
        // Seen results per job, pruned as jobs age out.
        let mut seen: HashMap<JobId, HashSet<(i32, u32)>> = HashMap::new();
        // Parents we already found a block on: later candidates on them are siblings of our own
        // block and cannot win anything it doesn't.
        let mut extended: HashSet<BlockHash> = HashSet::new();
        loop {
            let found = tokio::select! {
                Some(parent) = self.refused.recv() => {
                    extended.remove(&parent);
                    continue;
                }
                f = self.found.recv() => match f { Some(f) => f, None => break },
                _ = self.cancel.cancelled() => break,
            };
            if seen.len() > 4096 {
                let newest = seen.keys().copied().max().unwrap_or(0);
                seen.retain(|id, _| *id + 2048 > newest);
            }
            if !seen
                .entry(found.job.id)
                .or_default()
                .insert((found.version, found.nonce))
            {
                self.stats.update(found.device, |d| d.duplicates += 1);
                continue;
            }
            let current_tip = *self.tip.borrow();
            let stale = current_tip.is_some_and(|tip| tip != found.job.work.prev_blockhash());
            match verify(&found.job, found.version, found.nonce, found.share_bits) {
                Verdict::VersionOutsideMask => {
                    tracing::warn!(device = %found.device_name, version = format_args!("{:#010x}", found.version),
                        "result rolls version bits outside the mask; dropped");
                    self.stats.update(found.device, |d| d.hardware_errors += 1);
                }
                Verdict::HardwareError => self.stats.update(found.device, |d| {
                    d.hardware_errors += 1;
                    if let Some(chip) = found.chip {
                        d.chip(chip).hardware_errors += 1;
                    }
                }),
                Verdict::Share { hash } => self.count_share(&found, &hash, stale),
                Verdict::Block { hash } => {
                    self.count_share(&found, &hash, stale);
                    let prev = found.job.work.prev_blockhash();
                    if extended.contains(&prev) {
                        tracing::debug!(%hash, "another block on a parent we already extended; not submitted");
                        continue;
                    }
                    let block = match found.job.block(found.version, found.nonce) {
                        Ok(block) => block,
                        Err(e) => {
                            tracing::error!(%hash, error = %e, "could not assemble the block for a candidate");
                            continue;
                        }
                    };
                    // Re-check the assembled block as the node will: merkle root, witness
                    // commitment, proof of work. A failure here is our bug; submit anyway, the
                    // node's verdict says what is wrong and nothing is lost by asking.
                    let target = found.job.work.template.target;
                    if !block.check_merkle_root()
                        || !block.check_witness_commitment()
                        || block.header.validate_pow(target).is_err()
                    {
                        tracing::error!(%hash, "assembled block fails its own consensus checks; submitting for the node's verdict");
                    }
                    extended.insert(prev);
                    if extended.len() > 1000 {
                        extended.clear();
                        extended.insert(prev);
                    }
                    let height = found.job.work.template.height;
                    self.stats.update(found.device, |d| d.blocks_found += 1);
                    let _ = self.found_block.try_send(prev);
                    // On disk before anything else can go wrong: a shutdown, a crash, or a
                    // submitter still busy with an earlier block cannot lose it now.
                    let entry = JournalEntry {
                        height,
                        hash: hash.to_string(),
                        device: found.device_name.clone(),
                        found_at: crate::work::unix_now(),
                        block: bitcoin::consensus::encode::serialize_hex(&block),
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
            }
        }
    }

    fn count_share(&self, found: &Found, hash: &BlockHash, stale: bool) {
        if stale {
            self.stats.update(found.device, |d| d.stale += 1);
            return;
        }
        let work = hashes_per_share(found.share_bits);
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

    fn job(bits: &str) -> crate::work::Job {
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
            verify(&job, job.version, nonce, 8),
            Verdict::Share { .. }
        ));
        assert_eq!(verify(&job, job.version, nonce, 40), Verdict::HardwareError);
        assert_eq!(
            verify(&job, job.version | 0x4000_0000, nonce, 8),
            Verdict::VersionOutsideMask
        );
        // Regtest target: every hash with a leading zero bit is a block.
        let easy = super::verify_tests::job("207fffff");
        let nonce = (0u32..)
            .find(|n| target_for_zero_bits(1).is_met_by(easy.header(easy.version, *n).block_hash()))
            .unwrap();
        assert!(matches!(
            verify(&easy, easy.version, nonce, 1),
            Verdict::Block { .. }
        ));
    }
}
