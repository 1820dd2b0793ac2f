//! Work: one [`TemplateWork`] per template, and [`Job`]s cut from it with disjoint extranonces.
//!
//! Search space, from the top down (none of it ever overlaps):
//! * every device gets its own 16-bit extranonce prefix (its index), and every job a new 48-bit
//!   counter under it, so no two jobs share a merkle root;
//! * inside a job, a BM13xx chain splits versions and nonces between chips and cores in hardware
//!   (chip addresses / nonce offsets, see `bm13xx::sequence`), and the CPU device splits nonces
//!   between its threads;
//! * version bits move only inside the BIP320 mask, ntime never below the template's `mintime`
//!   nor more than two hours past the node's time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::{VarInt, serialize};
use bitcoin::{Block, BlockHash, ScriptBuf, TxMerkleNode};

use crate::template::{
    BlockTemplate, CoinbaseTemplate, EXTRANONCE_SIZE, build_coinbase, coinbase::CoinbaseError, coinbase_merkle_branch,
    merkle_root,
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
        let coinbase = build_coinbase(&template, payout, tag)?;
        let txids: Vec<_> = template.transactions.iter().map(|t| t.txid).collect();
        let branch = coinbase_merkle_branch(&txids);
        Ok(TemplateWork { generation, template, coinbase, branch, received_at: Instant::now(), new_tip })
    }

    /// Tip this work builds on.
    pub fn prev_blockhash(&self) -> BlockHash {
        self.template.prev_blockhash
    }

    /// ntime for a job cut now: the node's `curtime` advanced by the time since the template
    /// arrived, at least `mintime`, at most `curtime + MAX_NTIME_AHEAD_SECS`.
    pub fn ntime_now(&self) -> u32 {
        let elapsed = u32::try_from(self.received_at.elapsed().as_secs()).unwrap_or(u32::MAX);
        let t = &self.template;
        t.curtime
            .saturating_add(elapsed)
            .max(t.mintime)
            .min(t.curtime.saturating_add(MAX_NTIME_AHEAD_SECS))
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
    /// Version sent to the device: the template's, with the BIP320 bits cleared so that a chip
    /// that ORs its rolled bits in and one that replaces them hash the same header.
    pub version: i32,
    /// Bits the device may roll.
    pub version_mask: u32,
    /// Header time.
    pub ntime: u32,
    /// When it was cut.
    pub created: Instant,
}

impl Job {
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

    /// The full block for a rolled version and nonce.
    pub fn block(&self, version: i32, nonce: u32) -> Result<Block, bitcoin::consensus::encode::Error> {
        let mut bytes = serialize(&self.header(version, nonce));
        let txs = &self.work.template.transactions;
        bytes.extend_from_slice(&serialize(&VarInt(txs.len() as u64 + 1)));
        bytes.extend_from_slice(&serialize(&self.work.coinbase.transaction(&self.extranonce)?));
        for tx in txs {
            bytes.extend_from_slice(&tx.data);
        }
        bitcoin::consensus::deserialize(&bytes)
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

/// Cuts jobs for one device: extranonce = device prefix (2 bytes) ‖ counter (6 bytes).
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
        JobFactory { prefix, counter: 0, ids, version_mask: version_mask & BIP320_MASK }
    }

    /// The next job from `work`.
    pub fn next_job(&mut self, work: &Arc<TemplateWork>) -> Job {
        self.counter = (self.counter + 1) & 0xFFFF_FFFF_FFFF;
        let mut extranonce = [0u8; EXTRANONCE_SIZE];
        extranonce[..2].copy_from_slice(&self.prefix.to_be_bytes());
        extranonce[2..].copy_from_slice(&self.counter.to_be_bytes()[2..]);
        let txid = work.coinbase.txid(&extranonce);
        Job {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            work: work.clone(),
            extranonce,
            merkle_root: merkle_root(txid, &work.branch),
            version: ((work.template.version as u32) & !self.version_mask) as i32,
            version_mask: self.version_mask,
            ntime: work.ntime_now(),
            created: Instant::now(),
        }
    }
}

/// Seconds since the Unix epoch (for logs).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
