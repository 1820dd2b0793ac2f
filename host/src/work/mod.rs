//! Work: one [`TemplateWork`] per template, and [`Job`]s cut from it with disjoint extranonces.
//!
//! Search space, from the top down (none of it ever overlaps):
//! * every device gets its own 16-bit extranonce prefix (its index), and every job a new 48-bit
//!   counter under it, so no two jobs share a merkle root;
//! * inside a job, a BM13xx chain splits versions and nonces between chips and cores in hardware
//!   (chip addresses / nonce offsets, see `bm13xx::sequence`), and the CPU device splits nonces
//!   between its threads;
//! * version bits move only inside the BIP320 mask, and only those the template leaves clear and
//!   no deployment claims (see [`TemplateWork::rollable_version_bits`]); ntime never below the
//!   template's `mintime` nor more than two hours past the node's time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::{VarInt, serialize};
use bitcoin::{Block, BlockHash, ScriptBuf, TxMerkleNode};

use crate::template::{
    BlockTemplate, CoinbaseTemplate, EXTRANONCE_SIZE, coinbase::CoinbaseError,
    coinbase::build_coinbase_paying, coinbase_merkle_branch, merkle_root,
};

/// BIP320 general-purpose version bits.
pub const BIP320_MASK: u32 = 0x1FFF_E000;
/// Furthest ntime may run ahead of the node's clock (consensus: 2 hours; keep a margin).
pub const MAX_NTIME_AHEAD_SECS: u32 = 7000;

/// Everything needed to cut jobs from one template.
#[derive(Debug)]
pub struct TemplateWork {
    /// Increases with every template published.
    pub generation: u64,
    /// The node's template.
    pub template: BlockTemplate,
    /// Coinbase with the extranonce hole.
    pub coinbase: CoinbaseTemplate,
    /// Coinbase merkle branch.
    pub branch: Vec<TxMerkleNode>,
    /// When the template arrived (ntime advances from `curtime` with the local clock).
    pub received_at: Instant,
    /// Whether this template builds on a new tip (old work is stale) or refreshes fees.
    pub new_tip: bool,
    /// How far ntime may run past `curtime`: [`MAX_NTIME_AHEAD_SECS`], or 0 where a later time
    /// would need other `bits` (see [`ntime_may_roll`]).
    pub max_ntime_ahead: u32,
    /// Bytes of the coinbase's extranonce slot that jobs fill (8 for the node's work; what a
    /// pool leaves us, 4 to 8, for a pool's). Jobs always carry [`EXTRANONCE_SIZE`] bytes, of
    /// which the first `extranonce_len` are in the coinbase.
    pub extranonce_len: usize,
    /// Set when the work is a pool's: where its shares go. Its blocks are the pool's to
    /// submit.
    pub upstream: Option<Arc<UpstreamWork>>,
    /// Set when the node's work pays a Hearth pool's round (`[pool.member]`): where its shares
    /// go. Its blocks are still ours to submit, and the coordinator's too.
    pub pool: Option<Arc<crate::pool::member::PoolWork>>,
}

/// What a pool's work needs for its shares to reach the pool.
#[derive(Debug)]
pub struct UpstreamWork {
    /// The pool's name (logs, stats).
    pub pool: String,
    /// The pool's job id.
    pub job_id: String,
    /// Zero bytes in front of ours in the pool's extranonce2 (pools that give more than 8).
    pub extranonce2_padding: usize,
    /// The pool's share target (from its difficulty).
    pub share_target: bitcoin::Target,
    /// The pool's difficulty, for logs.
    pub difficulty: f64,
    /// Version bits the pool granted (BIP310); 0 without version rolling.
    pub version_mask: u32,
    /// Shares for the pool client.
    pub shares: tokio::sync::mpsc::Sender<UpstreamShare>,
}

/// A share on a pool's work, for the pool client to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamShare {
    /// The pool's job id.
    pub job_id: String,
    /// The whole extranonce2 as the pool counts it.
    pub extranonce2: Vec<u8>,
    /// Header time.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// Rolled version bits (`version & mask`), when the pool granted version rolling.
    pub version_bits: Option<u32>,
    /// Whether the hash meets the network target (the pool will find it is a block).
    pub block: bool,
}

/// Compact form of the proof-of-work limit of testnet3 and testnet4.
const TESTNET_POW_LIMIT_BITS: u32 = 0x1d00_ffff;

/// Whether ntime may roll forward from `curtime` for `template` on `network`. On testnet3 and
/// testnet4 a block more than 20 minutes after its parent must have the minimum-difficulty
/// `bits`, and one before must not (pow.cpp `GetNextWorkRequired`, checked exactly by
/// `bad-diffbits`). Core picked the template's `bits` for `curtime`; if they are not the minimum
/// difficulty, a later ntime could cross the 20-minute mark and make the block invalid, so
/// ntime stays at `curtime` and the next template (fee refresh, with the new `bits`) moves on.
pub fn ntime_may_roll(network: bitcoin::Network, template: &BlockTemplate) -> bool {
    match network {
        bitcoin::Network::Testnet | bitcoin::Network::Testnet4 => {
            template.bits.to_consensus() == TESTNET_POW_LIMIT_BITS
        }
        _ => true,
    }
}

impl TemplateWork {
    /// Build the coinbase and branch for a template.
    pub fn new(
        generation: u64,
        template: BlockTemplate,
        payout: &ScriptBuf,
        tag: &[u8],
        new_tip: bool,
    ) -> Result<Self, CoinbaseError> {
        let payouts = [bitcoin::TxOut {
            value: template.coinbase_value,
            script_pubkey: payout.clone(),
        }];
        Self::paying(generation, template, &payouts, None, tag, new_tip)
    }

    /// [`TemplateWork::new`] with the coinbase paying `payouts` (which add up to the
    /// template's `coinbase_value`) and committing to a pool member.
    pub fn paying(
        generation: u64,
        template: BlockTemplate,
        payouts: &[bitcoin::TxOut],
        member: Option<&[u8; 20]>,
        tag: &[u8],
        new_tip: bool,
    ) -> Result<Self, CoinbaseError> {
        // The witness-commitment check (inside build_coinbase) and the txid branch each hash
        // every transaction id once; on large templates do them on two cores.
        let txids: Vec<_> = template.transactions.iter().map(|t| t.txid).collect();
        let (coinbase, branch) = if txids.len() >= 256 {
            std::thread::scope(|scope| {
                let branch = scope.spawn(|| coinbase_merkle_branch(&txids));
                let coinbase = build_coinbase_paying(&template, payouts, member, tag);
                (
                    coinbase,
                    branch
                        .join()
                        .unwrap_or_else(|_| coinbase_merkle_branch(&txids)),
                )
            })
        } else {
            (
                build_coinbase_paying(&template, payouts, member, tag),
                coinbase_merkle_branch(&txids),
            )
        };
        let coinbase = coinbase?;
        Ok(TemplateWork {
            generation,
            template,
            coinbase,
            branch,
            received_at: Instant::now(),
            new_tip,
            max_ntime_ahead: MAX_NTIME_AHEAD_SECS,
            extranonce_len: EXTRANONCE_SIZE,
            upstream: None,
            pool: None,
        })
    }

    /// Tip this work builds on.
    pub fn prev_blockhash(&self) -> BlockHash {
        self.template.prev_blockhash
    }

    /// Version bits a device may roll for this template: the BIP320 bits that the template's
    /// version leaves clear, that `vbrequired` does not need, and that no deployment in
    /// `vbavailable` signals with. The template's own bits stay as the node set them (a
    /// signalling bit inside 0x1FFFE000 keeps signalling), and since they are outside the mask,
    /// `(base & !mask) | rolled` and `base | rolled` give the same header.
    pub fn rollable_version_bits(&self) -> u32 {
        let t = &self.template;
        BIP320_MASK & !(t.version as u32) & !t.vb_required & !t.vb_available
    }

    /// ntime for a job cut now: the node's `curtime` advanced by the time since the template
    /// arrived, at least `mintime`, at most `curtime + max_ntime_ahead` (normally
    /// [`MAX_NTIME_AHEAD_SECS`]).
    pub fn ntime_now(&self) -> u32 {
        self.ntime_after(self.received_at.elapsed())
    }

    /// ntime for a job cut `elapsed` after the template arrived (see [`TemplateWork::ntime_now`]).
    pub fn ntime_after(&self, elapsed: Duration) -> u32 {
        let elapsed = u32::try_from(elapsed.as_secs()).unwrap_or(u32::MAX);
        let t = &self.template;
        // Never below mintime (consensus: above the median time past), whatever else applies;
        // the parser refuses templates whose mintime is more than 2 hours past curtime.
        t.curtime
            .saturating_add(elapsed)
            .min(t.curtime.saturating_add(self.max_ntime_ahead))
            .max(t.mintime)
    }
}

/// Unique job id across the daemon.
pub type JobId = u64;

/// One unit of work: a template, an extranonce, and the header fields derived from them.
#[derive(Debug, Clone)]
pub struct Job {
    /// Daemon-wide id.
    pub id: JobId,
    /// The template work it was cut from.
    pub work: Arc<TemplateWork>,
    /// The extranonce in the coinbase.
    pub extranonce: [u8; EXTRANONCE_SIZE],
    /// Merkle root with this extranonce.
    pub merkle_root: TxMerkleNode,
    /// Version sent to the device: the template's, unchanged. None of its set bits are in
    /// `version_mask`, so a chip that ORs its rolled bits in and one that replaces them hash the
    /// same header.
    pub version: i32,
    /// Bits the device may roll: the factory's mask and the template's rollable bits.
    pub version_mask: u32,
    /// Header time.
    pub ntime: u32,
    /// When it was cut.
    pub created: Instant,
}

impl Job {
    /// The extranonce bytes that are in the coinbase.
    pub fn extranonce(&self) -> &[u8] {
        &self.extranonce[..self.work.extranonce_len.min(EXTRANONCE_SIZE)]
    }

    /// The share for the pool this job's work came from (none for the node's work).
    pub fn upstream_share(&self, version: i32, nonce: u32, block: bool) -> Option<UpstreamShare> {
        let upstream = self.work.upstream.as_ref()?;
        let mut extranonce2 = vec![0u8; upstream.extranonce2_padding];
        extranonce2.extend_from_slice(self.extranonce());
        Some(UpstreamShare {
            job_id: upstream.job_id.clone(),
            extranonce2,
            ntime: self.ntime,
            nonce,
            version_bits: (upstream.version_mask != 0)
                .then_some(version as u32 & upstream.version_mask),
            block,
        })
    }

    /// Whether `version` only differs from the job's in bits the device may roll.
    pub fn version_allowed(&self, version: i32) -> bool {
        ((version as u32) ^ (self.version as u32)) & !self.version_mask == 0
    }

    /// The header for a rolled version and nonce.
    pub fn header(&self, version: i32, nonce: u32) -> Header {
        Header {
            version: Version::from_consensus(version),
            prev_blockhash: self.work.template.prev_blockhash,
            merkle_root: self.merkle_root,
            time: self.ntime,
            bits: self.work.template.bits,
            nonce,
        }
    }

    /// The block's consensus bytes, straight from its parts: header, transaction count, the
    /// coinbase (in witness form when the block commits to witnesses) and the template's
    /// transactions as the node sent them. Nothing is decoded, so this cannot fail: a block
    /// that our own decoding chokes on is still submitted, and the node decides.
    pub fn block_bytes(&self, version: i32, nonce: u32) -> Vec<u8> {
        let txs = &self.work.template.transactions;
        let mut bytes = serialize(&self.header(version, nonce));
        bytes.extend_from_slice(&serialize(&VarInt(txs.len() as u64 + 1)));
        let coinbase = self.work.coinbase.legacy_bytes(self.extranonce());
        if self.work.coinbase.has_witness_commitment && coinbase.len() >= 8 {
            // BIP144: version, marker 0x00, flag 0x01, inputs and outputs, then one witness
            // stack for the one input (the 32-byte reserved value, BIP141), then lock time.
            let (body, lock_time) = coinbase.split_at(coinbase.len() - 4);
            bytes.extend_from_slice(&body[..4]);
            bytes.extend_from_slice(&[0x00, 0x01]);
            bytes.extend_from_slice(&body[4..]);
            bytes.extend_from_slice(&[0x01, 0x20]);
            bytes.extend_from_slice(&[0u8; 32]);
            bytes.extend_from_slice(lock_time);
        } else {
            bytes.extend_from_slice(&coinbase);
        }
        for tx in txs {
            bytes.extend_from_slice(&tx.bytes());
        }
        bytes
    }

    /// The full block for a rolled version and nonce, decoded (for our own consensus checks
    /// before submission).
    pub fn block(
        &self,
        version: i32,
        nonce: u32,
    ) -> Result<Block, bitcoin::consensus::encode::Error> {
        bitcoin::consensus::deserialize(&self.block_bytes(version, nonce))
    }

    /// The job as a BM13xx full-header job (the chip job id is filled in by the driver).
    pub fn chip_job(&self, chip_job_id: u8) -> bm13xx::FullHeaderJob {
        let header = self.header(self.version, 0);
        bm13xx::FullHeaderJob {
            job_id: chip_job_id,
            starting_nonce: 0,
            nbits: header.bits.to_consensus(),
            ntime: header.time,
            merkle_root: self.merkle_root.to_byte_array(),
            prev_block_hash: header.prev_blockhash.to_byte_array(),
            version: self.version as u32,
        }
    }
}

use bitcoin::hashes::Hash as _;

/// Cuts jobs for one device: extranonce = device prefix (2 bytes) ‖ counter (the rest of the
/// work's extranonce: 6 bytes on the node's work, 2 to 6 on a pool's).
#[derive(Debug)]
pub struct JobFactory {
    prefix: u16,
    counter: u64,
    ids: Arc<AtomicU64>,
    version_mask: u32,
}

impl JobFactory {
    /// A factory for device number `prefix`; `ids` is shared by all factories.
    pub fn new(prefix: u16, ids: Arc<AtomicU64>, version_mask: u32) -> Self {
        JobFactory {
            prefix,
            counter: 0,
            ids,
            version_mask: version_mask & BIP320_MASK,
        }
    }

    /// The next job from `work`.
    pub fn next_job(&mut self, work: &Arc<TemplateWork>) -> Job {
        let len = work.extranonce_len.clamp(2, EXTRANONCE_SIZE);
        let counter_bits = 8 * (len as u32 - 2);
        self.counter = (self.counter + 1) & (1u64 << counter_bits).wrapping_sub(1);
        let mut extranonce = [0u8; EXTRANONCE_SIZE];
        extranonce[..2].copy_from_slice(&self.prefix.to_be_bytes());
        extranonce[2..len].copy_from_slice(&self.counter.to_be_bytes()[8 - (len - 2)..]);
        let txid = work.coinbase.txid(&extranonce[..len]);
        Job {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            work: work.clone(),
            extranonce,
            merkle_root: merkle_root(txid, &work.branch),
            // Required deployment bits are set whatever the template's version says (BIP9
            // `vbrequired`); they are outside the rolling mask, so they stay set.
            version: ((work.template.version as u32) | work.template.vb_required) as i32,
            version_mask: self.version_mask & work.rollable_version_bits(),
            ntime: work.ntime_now(),
            created: Instant::now(),
        }
    }
}

/// Seconds since the Unix epoch (for logs).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use bitcoin::Txid;
    use bitcoin::hashes::{Hash, sha256d};

    use super::*;
    use crate::template::{merkle_root, parse_template};

    fn work() -> Arc<TemplateWork> {
        let gbt = crate::template::tests::sample_gbt(100);
        let template = parse_template(gbt.to_string().as_bytes()).unwrap();
        let payout = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        Arc::new(TemplateWork::new(1, template, &payout, b"t", true).unwrap())
    }

    #[test]
    fn jobs_never_share_an_extranonce_across_devices_or_time() {
        let w = work();
        let ids = Arc::new(AtomicU64::new(0));
        let mut seen = HashSet::new();
        for device in 0..8u16 {
            let mut factory = JobFactory::new(device, ids.clone(), BIP320_MASK);
            for _ in 0..500 {
                let job = factory.next_job(&w);
                assert!(seen.insert(job.merkle_root), "merkle root repeated");
            }
        }
    }

    fn work_with(edit: impl FnOnce(&mut serde_json::Value)) -> Arc<TemplateWork> {
        let mut gbt = crate::template::tests::sample_gbt(100);
        edit(&mut gbt);
        let template = parse_template(gbt.to_string().as_bytes()).unwrap();
        let payout = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        Arc::new(TemplateWork::new(1, template, &payout, b"t", true).unwrap())
    }

    fn job_of(w: &Arc<TemplateWork>) -> Job {
        JobFactory::new(0, Arc::new(AtomicU64::new(0)), BIP320_MASK).next_job(w)
    }

    #[test]
    fn a_plain_template_rolls_the_whole_bip320_mask() {
        let job = job_of(&work());
        assert_eq!(job.version, 0x2000_0000);
        assert_eq!(job.version_mask, BIP320_MASK);
        assert!(job.version_allowed(job.version | 0x1234_6000u32 as i32 & BIP320_MASK as i32));
        assert!(!job.version_allowed(job.version | 0x4000_0000));
        assert!(!job.version_allowed(job.version | 0x0000_1000));
    }

    #[test]
    fn a_block_from_its_parts_is_the_block_rust_bitcoin_builds() {
        let w = work();
        assert!(w.coinbase.has_witness_commitment);
        let job = JobFactory::new(3, Arc::new(AtomicU64::new(0)), BIP320_MASK).next_job(&w);
        let (version, nonce) = (job.version | 0x0002_0000, 0xDEAD_BEEF);
        let expected = Block {
            header: job.header(version, nonce),
            txdata: std::iter::once(w.coinbase.transaction(&job.extranonce).unwrap())
                .chain(
                    w.template
                        .transactions
                        .iter()
                        .map(|t| bitcoin::consensus::deserialize(&t.bytes()).unwrap()),
                )
                .collect(),
        };
        assert_eq!(
            job.block_bytes(version, nonce),
            bitcoin::consensus::serialize(&expected)
        );
        assert_eq!(job.block(version, nonce).unwrap(), expected);
    }

    #[test]
    fn the_templates_bits_inside_the_mask_are_kept_and_never_rolled() {
        // testdummy signalling on bit 28, as regtest's -vbparams=testdummy:0:9999999999 gives.
        let w = work_with(|t| t["version"] = serde_json::json!(0x3000_0000u32));
        let job = job_of(&w);
        assert_eq!(job.version, 0x3000_0000, "the template's version is kept");
        assert_eq!(job.version_mask, 0x0FFF_E000, "bit 28 is not rollable");
        // Every version a device can produce keeps bit 28: rolled as the chips do it.
        for bits in [0, 0x0FFF_E000, 0x1FFF_E000, 0x0000_2000] {
            let rolled = bm13xx::job::roll_version(job.version as u32, bits, job.version_mask);
            assert_eq!(
                rolled & 0x1000_0000,
                0x1000_0000,
                "{bits:#x} -> {rolled:#x}"
            );
            assert!(job.version_allowed(rolled as i32));
        }
        // A result with the template's bit cleared is outside the mask.
        assert!(!job.version_allowed(0x2000_0000));
        // The header and block carry the rolled version with bit 28.
        let header = job.header(0x3000_6000, 0);
        assert_eq!(header.version.to_consensus(), 0x3000_6000);
    }

    #[test]
    fn required_and_available_deployment_bits_are_not_rolled() {
        let w = work_with(|t| {
            t["vbrequired"] = serde_json::json!(0x0000_4000u32); // bit 14
            t["vbavailable"] = serde_json::json!({"future": 15}); // bit 15 (0x8000)
        });
        let job = job_of(&w);
        assert_eq!(job.version, 0x2000_4000, "a required bit is set in the job");
        assert_eq!(job.version_mask, BIP320_MASK & !0x0000_C000);
        assert!(!job.version_allowed(0x2000_0000), "clearing a required bit");
        assert!(
            !job.version_allowed(0x2000_C000),
            "signalling an available deployment"
        );
        assert!(job.version_allowed(0x2000_6000));
    }

    #[test]
    fn ntime_follows_the_clock_from_curtime() {
        let w = work();
        let t = &w.template;
        assert!(t.mintime < t.curtime);
        assert_eq!(w.ntime_after(Duration::ZERO), t.curtime);
        assert_eq!(w.ntime_after(Duration::from_millis(59_999)), t.curtime + 59);
        assert_eq!(w.ntime_after(Duration::from_secs(600)), t.curtime + 600);
        let now = w.ntime_now();
        assert!(now >= t.curtime && now <= t.curtime + MAX_NTIME_AHEAD_SECS);
    }

    #[test]
    fn ntime_is_capped_at_curtime_plus_7000() {
        let w = work();
        let cap = w.template.curtime + MAX_NTIME_AHEAD_SECS;
        assert_eq!(w.ntime_after(Duration::from_secs(6999)), cap - 1);
        assert_eq!(w.ntime_after(Duration::from_secs(7000)), cap);
        assert_eq!(w.ntime_after(Duration::from_secs(7001)), cap);
        assert_eq!(w.ntime_after(Duration::from_secs(30 * 86_400)), cap);
        // Beyond u32 seconds as well.
        assert_eq!(w.ntime_after(Duration::from_secs(u64::MAX)), cap);
    }

    #[test]
    fn testnet_ntime_does_not_cross_the_20_minute_rule() {
        use bitcoin::Network;
        let with_bits = |bits: &'static str, target: &'static str| {
            work_with(move |t| {
                t["bits"] = serde_json::json!(bits);
                t["target"] = serde_json::json!(target);
            })
        };
        let normal = with_bits(
            "1c0ffff0",
            "000000000ffff000000000000000000000000000000000000000000000000000",
        );
        let minimum = with_bits(
            "1d00ffff",
            "00000000ffff0000000000000000000000000000000000000000000000000000",
        );
        for net in [Network::Testnet, Network::Testnet4] {
            assert!(!ntime_may_roll(net, &normal.template), "{net}");
            assert!(ntime_may_roll(net, &minimum.template), "{net}");
        }
        for net in [Network::Bitcoin, Network::Signet, Network::Regtest] {
            assert!(ntime_may_roll(net, &normal.template), "{net}");
        }
        let mut frozen = Arc::try_unwrap(normal).unwrap();
        frozen.max_ntime_ahead = 0;
        assert_eq!(
            frozen.ntime_after(Duration::from_secs(3600)),
            frozen.template.curtime
        );
    }

    #[test]
    fn ntime_never_goes_below_mintime() {
        // A node clock behind the median time past: curtime < mintime.
        let w = work_with(|t| {
            t["curtime"] = serde_json::json!(1_700_000_000u32);
            t["mintime"] = serde_json::json!(1_700_000_500u32);
        });
        assert_eq!(w.ntime_after(Duration::ZERO), 1_700_000_500);
        assert_eq!(w.ntime_after(Duration::from_secs(499)), 1_700_000_500);
        assert_eq!(w.ntime_after(Duration::from_secs(501)), 1_700_000_501);
        // mintime wins over the cap (the parser refuses mintime > curtime + 2 h).
        let w = work_with(|t| {
            t["curtime"] = serde_json::json!(1_700_000_000u32);
            t["mintime"] = serde_json::json!(1_700_007_100u32);
        });
        assert_eq!(w.ntime_after(Duration::from_secs(86_400)), 1_700_007_100);
    }

    #[test]
    fn merkle_root_of_real_mainnet_work() {
        // Bitaxe Gamma share for mainnet height 901,936 (docs/bm13xx-vectors.md §5.3, from
        // mujina test_data.rs): coinbase = coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2, folded with
        // twelve branches, gives the merkle root the chip hashed.
        use crate::template::tests::bitaxe;
        let coinbase = hex::decode(format!(
            "{}4128064f17000000{}",
            bitaxe::COINB1,
            bitaxe::COINB2
        ))
        .unwrap();
        let branch = bitaxe::branch();
        let txid = Txid::from_raw_hash(sha256d::Hash::hash(&coinbase));
        let root = merkle_root(txid, &branch);
        assert_eq!(
            hex::encode(root.to_byte_array()),
            "06ddf5f08c36414b95ea54db71a0c28761a98bcf6355919e044f88725519a7cb"
        );
        // The header the chip hashed, with the rolled version and nonce it returned, hashes to
        // 46 leading zero bits (difficulty 29,588).
        let header = bitcoin::block::Header {
            version: bitcoin::block::Version::from_consensus(0x20B4_4000),
            prev_blockhash: "000000000000000000015296bc96391d0d67f4a301f2d4fc6db962c16b6455fd"
                .parse()
                .unwrap(),
            merkle_root: root,
            time: 0x6854_68D7,
            bits: bitcoin::CompactTarget::from_consensus(0x1702_3A04),
            nonce: 0x7552_034C,
        };
        assert_eq!(
            header.block_hash().to_string(),
            "0000000000023704cface997bcf7388694ea43dae96c51d80658687a7d8827fe"
        );
        assert!(crate::share::target_for_zero_bits(46).is_met_by(header.block_hash()));
        assert!(!crate::share::target_for_zero_bits(47).is_met_by(header.block_hash()));
    }
}
