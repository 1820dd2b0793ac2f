//! The coinbase transaction: BIP34 height, an extranonce slot, a tag, the payout output worth the
//! whole `coinbasevalue`, and the segwit commitment (recomputed and checked against the node's).
//!
//! The coinbase is kept as the bytes before and after the extranonce (legacy serialisation, the
//! one its txid hashes), so a new extranonce costs one sha256d and no re-encoding; Stratum's
//! coinb1/coinb2 are exactly these two halves.

use bitcoin::blockdata::opcodes::all::OP_RETURN;
use bitcoin::blockdata::script::{Builder, PushBytesBuf};
use bitcoin::consensus::encode::{VarInt, serialize};
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
    WitnessMerkleNode, Wtxid, absolute, transaction,
};

use super::gbt::BlockTemplate;

/// Bytes of extranonce space in the coinbase scriptSig.
pub const EXTRANONCE_SIZE: usize = 8;
/// Consensus maximum scriptSig size of a coinbase.
pub const MAX_COINBASE_SCRIPT_SIG: usize = 100;

/// Why a coinbase could not be built for a template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoinbaseError {
    /// Height push + extranonce + tag would exceed 100 bytes.
    #[error(
        "coinbase scriptSig would be {len} bytes (limit 100): shorten the tag ({tag_len} bytes)"
    )]
    ScriptSigTooLong {
        /// Resulting length.
        len: usize,
        /// Tag length.
        tag_len: usize,
    },
    /// Our recomputation of the witness commitment differs from the node's.
    #[error(
        "witness commitment mismatch: node says {node}, recomputed {ours}; refusing the template"
    )]
    WitnessCommitmentMismatch {
        /// The node's commitment script, hex.
        node: String,
        /// Ours, hex.
        ours: String,
    },
    /// The block would break the weight or sigop limit.
    #[error("block would exceed the {what} limit: {value} > {limit}")]
    OverLimit {
        /// "weight" or "sigop".
        what: &'static str,
        /// Value.
        value: u64,
        /// Limit.
        limit: u64,
    },
}

/// A coinbase with a hole for the extranonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseTemplate {
    /// Legacy serialisation up to the extranonce (Stratum coinb1).
    pub prefix: Vec<u8>,
    /// Legacy serialisation after the extranonce (Stratum coinb2).
    pub suffix: Vec<u8>,
    /// Whether the coinbase carries the 32-byte witness reserved value (block has a commitment).
    pub has_witness_commitment: bool,
    /// Coinbase weight with witness.
    pub weight: u64,
}

impl CoinbaseTemplate {
    /// Serialised coinbase (legacy form) for an extranonce.
    pub fn legacy_bytes(&self, extranonce: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + extranonce.len() + self.suffix.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(extranonce);
        out.extend_from_slice(&self.suffix);
        out
    }

    /// Coinbase txid for an extranonce.
    pub fn txid(&self, extranonce: &[u8]) -> Txid {
        let mut engine = sha256d::Hash::engine();
        bitcoin::hashes::HashEngine::input(&mut engine, &self.prefix);
        bitcoin::hashes::HashEngine::input(&mut engine, extranonce);
        bitcoin::hashes::HashEngine::input(&mut engine, &self.suffix);
        Txid::from_raw_hash(sha256d::Hash::from_engine(engine))
    }

    /// The coinbase transaction for an extranonce, with the witness reserved value when the
    /// block commits to witnesses.
    pub fn transaction(
        &self,
        extranonce: &[u8],
    ) -> Result<Transaction, bitcoin::consensus::encode::Error> {
        let mut tx: Transaction = bitcoin::consensus::deserialize(&self.legacy_bytes(extranonce))?;
        if self.has_witness_commitment {
            tx.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
        }
        Ok(tx)
    }
}

/// The witness commitment output script for a template: OP_RETURN, 0xaa21a9ed, then
/// sha256d(witness merkle root ‖ 32 zero bytes), with the coinbase's wtxid taken as zero (BIP141).
pub fn witness_commitment_script(template: &BlockTemplate) -> ScriptBuf {
    let leaves =
        std::iter::once(Wtxid::all_zeros()).chain(template.transactions.iter().map(|t| t.wtxid));
    let root = bitcoin::merkle_tree::calculate_root(leaves.map(|w| w.to_raw_hash()))
        .map(WitnessMerkleNode::from_raw_hash)
        .unwrap_or_else(WitnessMerkleNode::all_zeros);
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(root.as_byte_array());
    let commitment = sha256d::Hash::hash(&data);
    let mut payload = [0u8; 36];
    payload[..4].copy_from_slice(&[0xaa, 0x21, 0xa9, 0xed]);
    payload[4..].copy_from_slice(commitment.as_byte_array());
    Builder::new()
        .push_opcode(OP_RETURN)
        .push_slice(payload)
        .into_script()
}

/// Build the coinbase for `template` paying `payout` the whole reward, tagged with `tag`.
pub fn build_coinbase(
    template: &BlockTemplate,
    payout: &ScriptBuf,
    tag: &[u8],
) -> Result<CoinbaseTemplate, CoinbaseError> {
    build_coinbase_paying(
        template,
        &[TxOut {
            value: template.coinbase_value,
            script_pubkey: payout.clone(),
        }],
        None,
        tag,
    )
}

/// Build the coinbase for `template` with `payouts` (whose values the caller made add up to
/// `coinbase_value`) before the witness commitment, and, for a pool member, the 20-byte
/// commitment to the member right after the extranonce (see `crate::pool::identity`).
pub fn build_coinbase_paying(
    template: &BlockTemplate,
    payouts: &[TxOut],
    member: Option<&[u8; 20]>,
    tag: &[u8],
) -> Result<CoinbaseTemplate, CoinbaseError> {
    // scriptSig: <height> <8-byte extranonce> [<member>] [<tag>]. BIP34: CScript() << height,
    // which is OP_1..OP_16 for heights 1..16 and a minimal little-endian push above (push_int
    // does both).
    let mut tag_push = PushBytesBuf::new();
    // Tags longer than a push are cut by the length check below, not here.
    let tag_ok = tag_push.extend_from_slice(tag).is_ok();
    let placeholder = [0u8; EXTRANONCE_SIZE];
    let mut builder = Builder::new()
        .push_int(i64::from(template.height))
        .push_slice(placeholder);
    if let Some(member) = member {
        builder = builder.push_slice(member);
    }
    if !tag.is_empty() {
        builder = builder.push_slice(&tag_push);
    }
    let script_sig = builder.into_script();
    if script_sig.len() > MAX_COINBASE_SCRIPT_SIG || !tag_ok {
        return Err(CoinbaseError::ScriptSigTooLong {
            len: script_sig.len(),
            tag_len: tag.len(),
        });
    }

    let mut outputs = payouts.to_vec();
    // A signet block without a witness commitment is invalid even with no transactions: the
    // signet solution lives in it (signet.cpp `SignetTxs::Create`). Core's templates always
    // carry one; should one not, commit ourselves (the same script Core would compute).
    let has_witness_commitment =
        template.default_witness_commitment.is_some() || template.is_signet();
    if has_witness_commitment {
        let ours = witness_commitment_script(template);
        if let Some(node_commitment) = &template.default_witness_commitment
            && &ours != node_commitment
        {
            return Err(CoinbaseError::WitnessCommitmentMismatch {
                node: hex::encode(node_commitment.as_bytes()),
                ours: hex::encode(ours.as_bytes()),
            });
        }
        outputs.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ours,
        });
    }
    let tx = Transaction {
        version: transaction::Version::TWO,
        // Core sets nLockTime to height - 1 with the final-sequence exception not applying
        // (BIP34 coinbase); a plain 0 is equally valid and what most pools use.
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: script_sig.clone(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: outputs,
    };
    let legacy = serialize(&tx);
    // Offset of the extranonce: version (4) + input count (1) + prevout (36) + scriptSig length
    // varint + height push + the extranonce's push opcode (1).
    let height_push_len = Builder::new()
        .push_int(i64::from(template.height))
        .into_script()
        .len();
    let offset = 4 + 1 + 36 + VarInt(script_sig.len() as u64).size() + height_push_len + 1;
    debug_assert_eq!(&legacy[offset..offset + EXTRANONCE_SIZE], &placeholder);
    let mut with_witness = tx;
    if has_witness_commitment {
        with_witness.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
    }
    let weight = with_witness.weight().to_wu();

    // Limits: header + tx count + coinbase + template transactions (BIP141 weight; sigop cost).
    let tx_count = template.transactions.len() as u64 + 1;
    let block_weight = template
        .transactions
        .iter()
        .try_fold(
            80 * 4 + VarInt(tx_count).size() as u64 * 4 + weight,
            |acc, t| acc.checked_add(t.weight),
        )
        .unwrap_or(u64::MAX);
    if block_weight > template.weight_limit {
        return Err(CoinbaseError::OverLimit {
            what: "weight",
            value: block_weight,
            limit: template.weight_limit,
        });
    }
    let coinbase_sigops: u64 = with_witness
        .output
        .iter()
        .map(|o| o.script_pubkey.count_sigops_legacy() as u64 * 4)
        .sum();
    let sigops = template
        .transactions
        .iter()
        .try_fold(coinbase_sigops, |acc, t| acc.checked_add(t.sigops))
        .unwrap_or(u64::MAX);
    if sigops > template.sigop_limit {
        return Err(CoinbaseError::OverLimit {
            what: "sigop",
            value: sigops,
            limit: template.sigop_limit,
        });
    }

    Ok(CoinbaseTemplate {
        prefix: legacy[..offset].to_vec(),
        suffix: legacy[offset + EXTRANONCE_SIZE..].to_vec(),
        has_witness_commitment,
        weight,
    })
}

/// The longest coinbase (legacy serialisation, the bytes a Stratum miner assembles from coinb1,
/// its extranonces and coinb2) that `payout` and `tag` can give on any template: the highest
/// BIP34 height push (a u32 height), the full 8-byte extranonce and the witness commitment.
/// Miners with fixed coinbase buffers cut longer ones silently (NerdMiner at 255 bytes,
/// ESP-Miner at 384), and every share they send is then wrong.
pub fn longest_coinbase_len(payout: &ScriptBuf, tag: &[u8]) -> Result<usize, CoinbaseError> {
    let payout = TxOut {
        // The most a coinbase output can hold (8 bytes whatever the value).
        value: Amount::MAX_MONEY,
        script_pubkey: payout.clone(),
    };
    longest_coinbase_len_paying(&[payout], None, tag)
}

/// [`longest_coinbase_len`] for a coinbase with `payouts` and, for a pool member, its
/// commitment. With no payouts it is the fixed part that a pool's payout outputs add to.
pub fn longest_coinbase_len_paying(
    payouts: &[TxOut],
    member: Option<&[u8; 20]>,
    tag: &[u8],
) -> Result<usize, CoinbaseError> {
    let mut template = BlockTemplate {
        height: u32::MAX,
        version: 0x2000_0000,
        prev_blockhash: bitcoin::BlockHash::all_zeros(),
        bits: bitcoin::CompactTarget::from_consensus(0x1d00_ffff),
        target: bitcoin::Target::MAX_ATTAINABLE_MAINNET,
        curtime: 0,
        mintime: 0,
        // The most a coinbase output can hold (8 bytes whatever the value).
        coinbase_value: Amount::MAX_MONEY,
        transactions: Vec::new(),
        default_witness_commitment: None,
        weight_limit: 4_000_000,
        sigop_limit: 80_000,
        longpoll_id: None,
        rules: vec!["segwit".into()],
        vb_required: 0,
        vb_available: 0,
    };
    template.default_witness_commitment = Some(witness_commitment_script(&template));
    let coinbase = build_coinbase_paying(&template, payouts, member, tag)?;
    Ok(coinbase.prefix.len() + EXTRANONCE_SIZE + coinbase.suffix.len())
}

/// Merkle branch of the coinbase (leaf 0): the sibling hashes from the bottom up. The root for a
/// coinbase txid `c` is `fold(c, |h, s| sha256d(h ‖ s))`.
pub fn coinbase_merkle_branch(txids: &[Txid]) -> Vec<TxMerkleNode> {
    let mut level: Vec<sha256d::Hash> = txids.iter().map(|t| t.to_raw_hash()).collect();
    let mut branch = Vec::new();
    while !level.is_empty() {
        branch.push(TxMerkleNode::from_raw_hash(level[0]));
        // The coinbase's running hash sits in front of `level`; with it the level's length is
        // odd when `level` is even, so the last hash is paired with itself.
        if level.len().is_multiple_of(2)
            && let Some(last) = level.last().copied()
        {
            level.push(last);
        }
        level = level[1..]
            .chunks(2)
            .map(|pair| {
                let mut data = [0u8; 64];
                data[..32].copy_from_slice(pair[0].as_byte_array());
                data[32..].copy_from_slice(pair[1].as_byte_array());
                sha256d::Hash::hash(&data)
            })
            .collect();
    }
    branch
}

/// Merkle root from a coinbase txid and its branch.
pub fn merkle_root(coinbase_txid: Txid, branch: &[TxMerkleNode]) -> TxMerkleNode {
    let mut h = coinbase_txid.to_raw_hash();
    for sibling in branch {
        let mut data = [0u8; 64];
        data[..32].copy_from_slice(h.as_byte_array());
        data[32..].copy_from_slice(sibling.as_byte_array());
        h = sha256d::Hash::hash(&data);
    }
    TxMerkleNode::from_raw_hash(h)
}
