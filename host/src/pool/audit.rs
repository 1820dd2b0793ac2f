//! `hearth pool audit`: re-check a pool's ledger from its first entry. Pure over the lines; the
//! CLI fetches them from the coordinator (or reads a file) and prints the report.
//!
//! Checked: the hash chain; every share's proof of work against the target it was credited at,
//! its merkle root, its commitment to the member credited, and that its coinbase pays its
//! round's announced list by the amount rule; that every share marked a block meets the
//! network target and every share that meets it is marked; no share twice; and every round's
//! list against the list recomputed from the ledger before it.

use std::collections::{HashMap, HashSet};

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Transaction, TxMerkleNode};

use super::coordinator::parse_target;
use super::identity::commitment;
use super::ledger::{ChainCheck, Entry, hex_field};
use super::payout::{Accounts, Payee, check_outputs};
use super::validate::scriptsig_fields;
use crate::template::merkle_root;

/// What the audit found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AuditReport {
    /// Entries read.
    pub entries: u64,
    /// Members registered.
    pub members: u64,
    /// Rounds announced.
    pub rounds: u64,
    /// Shares.
    pub shares: u64,
    /// Shares that are blocks.
    pub blocks: u64,
    /// Hash of the last entry.
    pub last_hash: String,
    /// Every difference found, as a sentence naming the entry.
    pub failures: Vec<String>,
    /// The chain broke at this entry: nothing after it was checked.
    pub chain_broken_at: Option<u64>,
}

impl AuditReport {
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Most failures listed (the count goes on).
const MAX_LISTED: usize = 200;

/// Replays a ledger line by line.
#[derive(Debug, Default)]
pub struct Auditor {
    chain: ChainCheck,
    accounts: Accounts,
    rounds: HashMap<u64, Vec<Payee>>,
    seen: HashSet<BlockHash>,
    report: AuditReport,
    failures: u64,
}

impl Auditor {
    fn fail(&mut self, text: String) {
        self.failures += 1;
        if self.report.failures.len() < MAX_LISTED {
            self.report.failures.push(text);
        }
    }

    /// Check one line. After a break in the chain, later lines are not checked.
    pub fn line(&mut self, line: &str) {
        if self.report.chain_broken_at.is_some() {
            return;
        }
        let (seq, entry) = match self.chain.next(line) {
            Ok(x) => x,
            Err(e) => {
                self.report.chain_broken_at = Some(self.chain.next_seq);
                self.fail(format!("chain: {e}"));
                return;
            }
        };
        self.report.entries += 1;
        match entry {
            Entry::Member { member, script, .. } => {
                self.report.members += 1;
                self.accounts.set_member(member, script);
            }
            Entry::Round {
                round,
                rules,
                payees,
                ..
            } => {
                self.report.rounds += 1;
                let recomputed = self.accounts.start_round(round, &rules);
                if recomputed != payees {
                    self.fail(format!(
                        "round {round} (entry {seq}): the announced payout list is not the one the ledger gives: announced {}, recomputed {}",
                        describe(&payees),
                        describe(&recomputed)
                    ));
                }
                self.rounds.insert(round, payees);
                if self.rounds.len() > 4096
                    && let Some(oldest) = self.rounds.keys().min().copied()
                {
                    self.rounds.remove(&oldest);
                }
            }
            Entry::Share {
                round,
                member,
                target,
                header,
                coinbase,
                branch,
                block,
            } => {
                self.report.shares += 1;
                if let Err(e) =
                    self.share(round, &member, &target, &header, &coinbase, &branch, block)
                {
                    self.fail(format!("share (entry {seq}) by {member}: {e}"));
                }
                if let Ok(t) = parse_target(&target) {
                    self.accounts
                        .credit(&member, super::payout::target_work(&t));
                }
                if block {
                    self.report.blocks += 1;
                    self.accounts.block_found(round);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn share(
        &mut self,
        round: u64,
        member: &super::identity::MemberId,
        target: &str,
        header: &str,
        coinbase: &str,
        branch: &[String],
        block: bool,
    ) -> Result<(), String> {
        let target = parse_target(target)?;
        let header_bytes: [u8; 80] = hex_field(header, "header")?;
        let header: Header =
            bitcoin::consensus::deserialize(&header_bytes).map_err(|e| format!("header: {e}"))?;
        let hash = header.block_hash();
        if !self.seen.insert(hash) {
            return Err(format!("{hash} is credited twice"));
        }
        if !target.is_met_by(hash) {
            return Err(format!(
                "{hash} does not meet the target it was credited at"
            ));
        }
        let meets_network = bitcoin::Target::from_compact(header.bits).is_met_by(hash);
        if meets_network != block {
            return Err(if block {
                format!("marked a block, but {hash} does not meet the network target")
            } else {
                format!("{hash} meets the network target but is not marked a block")
            });
        }
        let coinbase = hex::decode(coinbase).map_err(|e| format!("coinbase: {e}"))?;
        let tx: Transaction =
            bitcoin::consensus::deserialize(&coinbase).map_err(|e| format!("coinbase: {e}"))?;
        let branch = branch
            .iter()
            .map(|b| hex_field::<32>(b, "branch").map(TxMerkleNode::from_byte_array))
            .collect::<Result<Vec<_>, _>>()?;
        if merkle_root(tx.compute_txid(), &branch) != header.merkle_root {
            return Err("the merkle root is not the coinbase's".into());
        }
        let Some(input) = tx.input.first() else {
            return Err("the coinbase has no input".into());
        };
        if scriptsig_fields(&input.script_sig).1 != Some(commitment(member)) {
            return Err("the coinbase does not commit to the member it is credited to".into());
        }
        let payees = self
            .rounds
            .get(&round)
            .ok_or_else(|| format!("names round {round}, which the ledger never announced"))?;
        let finder = self
            .accounts
            .script_of(member)
            .cloned()
            .ok_or("credited to a member the ledger never registered")?;
        check_outputs(&tx.output, payees, &finder).map_err(|e| {
            format!(
                "{}coinbase does not pay round {round}'s list: {e}",
                if block { "BLOCK " } else { "" }
            )
        })
    }

    /// The report.
    pub fn finish(mut self) -> AuditReport {
        self.report.last_hash = hex::encode(self.chain.last_hash);
        if self.failures > self.report.failures.len() as u64 {
            let more = self.failures - self.report.failures.len() as u64;
            self.report.failures.push(format!("... and {more} more"));
        }
        self.report
    }
}

fn describe(payees: &[Payee]) -> String {
    if payees.is_empty() {
        return "[] (the finder)".into();
    }
    let parts: Vec<String> = payees
        .iter()
        .map(|p| {
            let key = p.member.to_string();
            format!("{}…:{}", &key[..8.min(key.len())], p.weight)
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
