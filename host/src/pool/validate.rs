//! The coordinator's check of one share, pure: everything a share claims is recomputed from
//! its bytes against what the coordinator's own node says about the chain.

use std::time::{Duration, Instant};

use bitcoin::block::Header;
use bitcoin::blockdata::opcodes::all::{OP_PUSHNUM_1, OP_PUSHNUM_16};
use bitcoin::blockdata::script::Instruction;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, ScriptBuf, Target, Transaction, TxMerkleNode};

use super::identity::{MemberId, commitment};
use super::payout::{Payee, PayoutMismatch, check_outputs};
use crate::template::merkle_root;

/// What a member sends for one share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBytes {
    /// The round whose payout list the coinbase pays.
    pub round: u64,
    /// The 80-byte header.
    pub header: [u8; 80],
    /// The coinbase, legacy serialisation (what its txid hashes).
    pub coinbase: Vec<u8>,
    /// The coinbase's merkle branch.
    pub branch: Vec<TxMerkleNode>,
}

/// A block the next block may build on, as the coordinator's node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// The block (the share's `prev_blockhash`).
    pub hash: BlockHash,
    /// Height of the block built on it (its BIP34 height).
    pub next_height: u32,
    /// `bits` a block on it must carry.
    pub bits: CompactTarget,
    /// Lowest ntime a block on it may have (median time past + 1).
    pub mintime: u32,
    /// When a newer tip replaced it (`None`: it is the current tip).
    pub replaced_at: Option<Instant>,
}

/// A round as the coordinator keeps it for checking shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundView {
    /// Its number.
    pub id: u64,
    /// Its payout list.
    pub payees: Vec<Payee>,
    /// When the next round replaced it.
    pub replaced_at: Option<Instant>,
}

/// What a share is checked against.
#[derive(Debug, Clone)]
pub struct ShareContext<'a> {
    /// Tips a share may build on: the current one and recently replaced ones.
    pub tips: &'a [Tip],
    /// Rounds a share may pay: the current one and recently replaced ones.
    pub rounds: &'a [RoundView],
    /// How long after a tip or round is replaced shares on it still count.
    pub grace: Duration,
    /// Now.
    pub now: Instant,
    /// Now, as a Unix time (for the two-hour rule on ntime).
    pub unix_now: u32,
    /// The member that sent it (authenticated by its connection).
    pub member: MemberId,
    /// Its payout script (an empty list pays the finder).
    pub member_script: &'a ScriptBuf,
    /// The easiest target the member's shares may meet now (vardiff).
    pub share_target: Target,
}

/// A share that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its hash.
    pub hash: BlockHash,
    /// It meets the network target: a block.
    pub block: bool,
    /// Its height.
    pub height: u32,
}

/// Why a share is refused. Each is counted per member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Bytes that do not decode.
    #[error("malformed share: {0}")]
    Malformed(String),
    /// Builds on a block the coordinator's node does not have as a recent tip.
    #[error("builds on {0}, which is not a tip the coordinator's node knows")]
    UnknownTip(BlockHash),
    /// Builds on a tip replaced longer ago than the grace period.
    #[error("stale: builds on {0}, replaced by a newer tip")]
    StaleTip(BlockHash),
    /// Names a round that is unknown or over.
    #[error("round {0} is not current")]
    StaleRound(u64),
    /// The coinbase does not pay the round's list.
    #[error("wrong payout list: {0}")]
    WrongPayouts(PayoutMismatch),
    /// The coinbase commits to another member (or to none).
    #[error("the coinbase does not commit to this member")]
    WrongMember,
    /// The merkle root is not the coinbase's with the branch.
    #[error("merkle root does not match the coinbase and branch")]
    BadMerkleRoot,
    /// BIP34 height wrong or missing.
    #[error("coinbase height {found:?}, expected {expected}")]
    BadHeight {
        /// What the scriptSig says.
        found: Option<i64>,
        /// The tip's next height.
        expected: u32,
    },
    /// Not a BIP9 version.
    #[error("version {0:#010x} is not a BIP9 version")]
    BadVersion(i32),
    /// ntime outside what a block on this tip may have.
    #[error("ntime {found} outside {min}..={max}")]
    BadTime {
        /// The header's.
        found: u32,
        /// Lowest allowed.
        min: u32,
        /// Highest allowed.
        max: u32,
    },
    /// `bits` not the network's for this tip.
    #[error("bits {found:#010x}, the network needs {expected:#010x}")]
    BadBits {
        /// The header's.
        found: u32,
        /// The tip's.
        expected: u32,
    },
    /// The hash does not meet the share target.
    #[error("hash above the share target")]
    LowWork,
    /// Sent before.
    #[error("duplicate share")]
    Duplicate,
}

impl Reject {
    /// A short name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::Malformed(_) => "malformed",
            Reject::UnknownTip(_) => "unknown_tip",
            Reject::StaleTip(_) => "stale_tip",
            Reject::StaleRound(_) => "stale_round",
            Reject::WrongPayouts(_) => "wrong_payouts",
            Reject::WrongMember => "wrong_member",
            Reject::BadMerkleRoot => "bad_merkle_root",
            Reject::BadHeight { .. } => "bad_height",
            Reject::BadVersion(_) => "bad_version",
            Reject::BadTime { .. } => "bad_time",
            Reject::BadBits { .. } => "bad_bits",
            Reject::LowWork => "low_work",
            Reject::Duplicate => "duplicate",
        }
    }
}

/// Most ntime may be ahead of the coordinator's clock (consensus allows two hours).
pub const MAX_FUTURE_SECS: u32 = 7200;

/// Check one share (all but duplicates, which need the ledger's memory).
pub fn validate(share: &ShareBytes, ctx: &ShareContext<'_>) -> Result<Accepted, Reject> {
    let header: Header = bitcoin::consensus::deserialize(&share.header)
        .map_err(|e| Reject::Malformed(format!("header: {e}")))?;
    let tip = ctx
        .tips
        .iter()
        .find(|t| t.hash == header.prev_blockhash)
        .ok_or(Reject::UnknownTip(header.prev_blockhash))?;
    if tip
        .replaced_at
        .is_some_and(|at| ctx.now.saturating_duration_since(at) > ctx.grace)
    {
        return Err(Reject::StaleTip(tip.hash));
    }
    let round = ctx
        .rounds
        .iter()
        .find(|r| r.id == share.round)
        .filter(|r| {
            r.replaced_at
                .is_none_or(|at| ctx.now.saturating_duration_since(at) <= ctx.grace)
        })
        .ok_or(Reject::StaleRound(share.round))?;
    let coinbase: Transaction = bitcoin::consensus::deserialize(&share.coinbase)
        .map_err(|e| Reject::Malformed(format!("coinbase: {e}")))?;
    if !coinbase.is_coinbase() || coinbase.input.len() != 1 {
        return Err(Reject::Malformed(
            "coinbase: not a coinbase transaction".into(),
        ));
    }
    let (height, member) = scriptsig_fields(&coinbase.input[0].script_sig);
    if height != Some(i64::from(tip.next_height)) {
        return Err(Reject::BadHeight {
            found: height,
            expected: tip.next_height,
        });
    }
    if member != Some(commitment(&ctx.member)) {
        return Err(Reject::WrongMember);
    }
    check_outputs(&coinbase.output, &round.payees, ctx.member_script)
        .map_err(Reject::WrongPayouts)?;
    if merkle_root(coinbase.compute_txid(), &share.branch) != header.merkle_root {
        return Err(Reject::BadMerkleRoot);
    }
    // BIP9: the top three bits 001 (BIP320 rolls bits inside, deployments signal inside).
    if (header.version.to_consensus() as u32) & 0xE000_0000 != 0x2000_0000 {
        return Err(Reject::BadVersion(header.version.to_consensus()));
    }
    if header.bits != tip.bits {
        return Err(Reject::BadBits {
            found: header.bits.to_consensus(),
            expected: tip.bits.to_consensus(),
        });
    }
    let max_time = ctx.unix_now.saturating_add(MAX_FUTURE_SECS);
    if header.time < tip.mintime || header.time > max_time {
        return Err(Reject::BadTime {
            found: header.time,
            min: tip.mintime,
            max: max_time,
        });
    }
    let hash = header.block_hash();
    if !ctx.share_target.is_met_by(hash) {
        return Err(Reject::LowWork);
    }
    Ok(Accepted {
        hash,
        block: Target::from_compact(header.bits).is_met_by(hash),
        height: tip.next_height,
    })
}

/// The BIP34 height and the member commitment from a Hearth pool coinbase scriptSig
/// (`<height> <extranonce> <member> [<tag>]`).
pub fn scriptsig_fields(script_sig: &ScriptBuf) -> (Option<i64>, Option<[u8; 20]>) {
    let mut instructions = script_sig.instructions();
    let height = match instructions.next() {
        Some(Ok(Instruction::Op(op)))
            if (OP_PUSHNUM_1.to_u8()..=OP_PUSHNUM_16.to_u8()).contains(&op.to_u8()) =>
        {
            Some(i64::from(op.to_u8() - OP_PUSHNUM_1.to_u8() + 1))
        }
        Some(Ok(Instruction::PushBytes(bytes))) => {
            bitcoin::script::read_scriptint(bytes.as_bytes()).ok()
        }
        _ => None,
    };
    let _extranonce = instructions.next();
    let member = match instructions.next() {
        Some(Ok(Instruction::PushBytes(bytes))) => bytes.as_bytes().try_into().ok(),
        _ => None,
    };
    (height, member)
}

/// The header's hash, for duplicate detection before the full check.
pub fn header_hash(header: &[u8; 80]) -> BlockHash {
    BlockHash::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(header))
}
