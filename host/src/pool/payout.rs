//! The pool's accounting, pure and replayable: shares credit work to members, a round's payout
//! list is a deterministic function of the ledger before it, and a coinbase turns the list into
//! amounts by one documented rule. The coordinator and `hearth pool audit` run this same code
//! over the same ledger, so any member can recompute every list the coordinator announced.
//!
//! The rules (docs/pool.md has them with examples):
//! 1. **Credit.** A share is worth the work its target stands for (2^256 / (target + 1)
//!    hashes), whatever its hash.
//! 2. **Window (PPLNS by work).** At a round's start, walk back from the newest share and take
//!    work until the round's `window_work` is reached (the oldest share taken may count only in
//!    part). A member's credit is its work in the window plus what it is owed (rule 5).
//! 3. **Selection.** Members with credit, by credit (highest first; equal credit by key), are
//!    taken while the output count stays within `max_payees` and the outputs' bytes within
//!    `max_output_bytes` (what the smallest coinbase buffer among the members' miners leaves);
//!    the first that does not fit ends the list. A payee whose amount on the round's `subsidy`
//!    would be dust for its script is dropped (lowest credit first) and the rest renormalised.
//! 4. **Weights.** The credits taken become weights adding up to exactly 10^9, by the largest
//!    remainder method (ties: list order).
//! 5. **Left out.** When a block is found in a round, every member with credit that round but
//!    not in its list is owed that credit, on top of its window, until a found block pays it.
//!    A member in the list of a found block is owed nothing more.
//! 6. **Amounts.** In a coinbase of total value `V`, payee `i` gets `floor(V · w_i / 10^9)`;
//!    the `R < n` satoshis left over go one each to the first `R` payees in list order. The
//!    outputs are the payees in list order, then zero-value `OP_RETURN` outputs (the witness
//!    commitment) only. An empty list (no shares yet) pays the whole value to the finder.

use std::collections::{BTreeMap, HashMap};

use bitcoin::consensus::encode::VarInt;
use bitcoin::{Amount, ScriptBuf, TxOut};
use serde::{Deserialize, Serialize};

use super::identity::MemberId;

/// What a round's weights add up to.
pub const WEIGHT_TOTAL: u64 = 1_000_000_000;

/// One line of a round's payout list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payee {
    /// The member.
    pub member: MemberId,
    /// Its payout script (hex).
    pub script: ScriptBuf,
    /// Its share of every coinbase of the round, in parts of [`WEIGHT_TOTAL`].
    pub weight: u64,
}

/// The parameters a round was computed with (recorded in the ledger with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundRules {
    /// Work the PPLNS window holds (decimal: it can exceed 2^64).
    #[serde(with = "u128_decimal")]
    pub window_work: u128,
    /// The block subsidy at the round's height (for the dust rule; fees only add to it).
    pub subsidy: Amount,
    /// Bytes the payout outputs may take in a coinbase.
    pub max_output_bytes: u64,
    /// Most payees in one list.
    pub max_payees: u32,
}

/// The bytes one output adds to a coinbase.
pub fn output_bytes(script: &ScriptBuf) -> u64 {
    8 + VarInt(script.len() as u64).size() as u64 + script.len() as u64
}

/// Rule 6: the amounts of a coinbase of total `value` for `payees` (in list order).
pub fn amounts(payees: &[Payee], value: Amount) -> Vec<Amount> {
    let v = u128::from(value.to_sat());
    let total = u128::from(WEIGHT_TOTAL);
    let mut out: Vec<u64> = payees
        .iter()
        .map(|p| (v * u128::from(p.weight) / total) as u64)
        .collect();
    let paid: u64 = out.iter().sum();
    let left = value.to_sat().saturating_sub(paid);
    for a in out.iter_mut().take(left as usize) {
        *a += 1;
    }
    out.into_iter().map(Amount::from_sat).collect()
}

/// The payout outputs of a coinbase of total `value` in a round with `payees`; an empty list
/// pays `finder` the whole value.
pub fn payout_outputs(payees: &[Payee], finder: &ScriptBuf, value: Amount) -> Vec<TxOut> {
    if payees.is_empty() {
        return vec![TxOut {
            value,
            script_pubkey: finder.clone(),
        }];
    }
    payees
        .iter()
        .zip(amounts(payees, value))
        .map(|(p, value)| TxOut {
            value,
            script_pubkey: p.script.clone(),
        })
        .collect()
}

/// Why a coinbase does not pay a round's list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutMismatch {
    /// Too few or too many outputs.
    #[error("the coinbase has {found} payout outputs; the round's list has {expected}")]
    Count {
        /// Outputs before the zero-value OP_RETURNs.
        found: usize,
        /// Payees (1 for an empty list).
        expected: usize,
    },
    /// An output differs.
    #[error("payout output {index} pays {found}; the round's list says {expected}")]
    Output {
        /// Its index.
        index: usize,
        /// What it pays (amount and script).
        found: String,
        /// What it should.
        expected: String,
    },
}

/// Check that `outputs` (a whole coinbase's) pay exactly the round's list by rule 6: the
/// payouts in list order, then only zero-value `OP_RETURN`s. `finder` is the share's member's
/// script, paid by an empty list.
pub fn check_outputs(
    outputs: &[TxOut],
    payees: &[Payee],
    finder: &ScriptBuf,
) -> Result<(), PayoutMismatch> {
    let payouts = outputs
        .iter()
        .position(|o| o.value == Amount::ZERO && o.script_pubkey.is_op_return())
        .unwrap_or(outputs.len());
    let trailing_ok = outputs[payouts..]
        .iter()
        .all(|o| o.value == Amount::ZERO && o.script_pubkey.is_op_return());
    let expected_count = payees.len().max(1);
    if payouts != expected_count || !trailing_ok {
        return Err(PayoutMismatch::Count {
            found: payouts,
            expected: expected_count,
        });
    }
    let value = outputs[..payouts]
        .iter()
        .try_fold(Amount::ZERO, |acc, o| acc.checked_add(o.value))
        .unwrap_or(Amount::MAX_MONEY);
    let expected = payout_outputs(payees, finder, value);
    for (index, (found, want)) in outputs.iter().zip(&expected).enumerate() {
        if found != want {
            return Err(PayoutMismatch::Output {
                index,
                found: format!("{} to {}", found.value, found.script_pubkey.to_hex_string()),
                expected: format!("{} to {}", want.value, want.script_pubkey.to_hex_string()),
            });
        }
    }
    Ok(())
}

/// Rule 4: credits to weights adding up to [`WEIGHT_TOTAL`] (largest remainder; ties by order).
pub fn normalise(credits: &[u128]) -> Vec<u64> {
    // Keep `credit · 10^9` inside u128: scale every credit down alike when one is huge.
    let largest = credits.iter().copied().max().unwrap_or(0);
    let shift = (128 - largest.leading_zeros()).saturating_sub(96);
    let scaled: Vec<u128> = credits.iter().map(|c| c >> shift).collect();
    let sum: u128 = scaled.iter().sum();
    if sum == 0 {
        return vec![0; credits.len()];
    }
    let total = u128::from(WEIGHT_TOTAL);
    let mut weights: Vec<u64> = scaled.iter().map(|c| (c * total / sum) as u64).collect();
    let given: u64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..scaled.len()).collect();
    // Largest remainder first; a stable sort keeps list order among equal remainders.
    order.sort_by(|&a, &b| ((scaled[b] * total) % sum).cmp(&((scaled[a] * total) % sum)));
    for &i in order.iter().take((WEIGHT_TOTAL - given) as usize) {
        weights[i] += 1;
    }
    weights
}

/// A member as the accounts know it.
#[derive(Debug, Clone)]
struct MemberState {
    id: MemberId,
    script: ScriptBuf,
}

/// The credit each member had in a round, and whether the round's list took it.
#[derive(Debug, Clone, Default)]
struct RoundCredit {
    credits: Vec<(u32, u128, bool)>,
}

/// The replayable state of the pool's accounting.
#[derive(Debug, Default)]
pub struct Accounts {
    members: Vec<MemberState>,
    index: HashMap<MemberId, u32>,
    /// Every credited share, oldest first: (member index, work).
    shares: Vec<(u32, u128)>,
    /// Each member's work over all its shares, and everyone's: while the window holds the
    /// whole history (a small pool on a hard chain), a round needs no walk through it.
    totals: Vec<u128>,
    total: u128,
    owed: Vec<u128>,
    rounds: BTreeMap<u64, RoundCredit>,
}

/// Rounds remembered for rule 5 (a block names its round; blocks come within a few rounds).
const ROUNDS_KEPT: usize = 1024;

impl Accounts {
    /// A member's payout script (a `member` ledger entry; a later one replaces it).
    pub fn set_member(&mut self, id: MemberId, script: ScriptBuf) {
        match self.index.get(&id) {
            Some(&i) => self.members[i as usize].script = script,
            None => {
                self.index.insert(id, self.members.len() as u32);
                self.members.push(MemberState { id, script });
                self.owed.push(0);
                self.totals.push(0);
            }
        }
    }

    /// The payout script a member registered.
    pub fn script_of(&self, id: &MemberId) -> Option<&ScriptBuf> {
        self.index
            .get(id)
            .map(|&i| &self.members[i as usize].script)
    }

    /// Credit a share. `false` if the member never registered (the share is not credited).
    pub fn credit(&mut self, id: &MemberId, work: u128) -> bool {
        match self.index.get(id) {
            Some(&i) => {
                self.shares.push((i, work));
                self.totals[i as usize] = self.totals[i as usize].saturating_add(work);
                self.total = self.total.saturating_add(work);
                true
            }
            None => false,
        }
    }

    /// Shares credited so far.
    pub fn share_count(&self) -> usize {
        self.shares.len()
    }

    /// Rules 2 to 4: the list a round starting now gets under `rules`.
    pub fn round_list(&self, rules: &RoundRules) -> Vec<Payee> {
        self.compute(rules).1
    }

    fn compute(&self, rules: &RoundRules) -> (Vec<(u32, u128)>, Vec<Payee>) {
        let credit = if self.total <= rules.window_work {
            // The window takes every share: the same sums, without the walk.
            self.totals.clone()
        } else {
            let mut credit = vec![0u128; self.members.len()];
            let mut left = rules.window_work;
            for &(member, work) in self.shares.iter().rev() {
                if left == 0 {
                    break;
                }
                let taken = work.min(left);
                credit[member as usize] = credit[member as usize].saturating_add(taken);
                left -= taken;
            }
            credit
        };
        let mut ranked: Vec<(u32, u128)> = credit
            .iter()
            .zip(&self.owed)
            .enumerate()
            .map(|(i, (c, o))| (i as u32, c.saturating_add(*o)))
            .filter(|(_, c)| *c > 0)
            .collect();
        ranked.sort_by(|a, b| {
            b.1.cmp(&a.1).then_with(|| {
                self.members[a.0 as usize]
                    .id
                    .serialize()
                    .cmp(&self.members[b.0 as usize].id.serialize())
            })
        });
        let mut taken = Vec::new();
        let mut bytes = 0u64;
        for &(member, c) in &ranked {
            let size = output_bytes(&self.members[member as usize].script);
            if taken.len() as u32 >= rules.max_payees || bytes + size > rules.max_output_bytes {
                break;
            }
            bytes += size;
            taken.push((member, c));
        }
        // Dust: drop the lowest credit while anyone's amount on the bare subsidy is dust.
        loop {
            let weights = normalise(&taken.iter().map(|t| t.1).collect::<Vec<_>>());
            let payees: Vec<Payee> = taken
                .iter()
                .zip(&weights)
                .map(|(&(member, _), &weight)| Payee {
                    member: self.members[member as usize].id,
                    script: self.members[member as usize].script.clone(),
                    weight,
                })
                .collect();
            let dust = amounts(&payees, rules.subsidy)
                .iter()
                .zip(&payees)
                .any(|(a, p)| *a < p.script.minimal_non_dust());
            if dust && !taken.is_empty() {
                taken.pop();
                continue;
            }
            return (ranked, payees);
        }
    }

    /// Record a round's credits (for rule 5) and return its list.
    pub fn start_round(&mut self, round: u64, rules: &RoundRules) -> Vec<Payee> {
        let (ranked, payees) = self.compute(rules);
        let included: std::collections::HashSet<MemberId> =
            payees.iter().map(|p| p.member).collect();
        let credits = ranked
            .into_iter()
            .map(|(m, c)| (m, c, included.contains(&self.members[m as usize].id)))
            .collect();
        self.rounds.insert(round, RoundCredit { credits });
        while self.rounds.len() > ROUNDS_KEPT {
            self.rounds.pop_first();
        }
        payees
    }

    /// Undo [`Accounts::start_round`] for a round that could not be recorded.
    pub fn forget_round(&mut self, round: u64) {
        self.rounds.remove(&round);
    }

    /// Rule 5: a block was found in `round`.
    pub fn block_found(&mut self, round: u64) {
        if let Some(r) = self.rounds.get(&round) {
            for &(member, credit, included) in &r.credits {
                self.owed[member as usize] = if included { 0 } else { credit };
            }
        }
    }

    /// What each member is owed now (rule 5), for reports.
    pub fn owed(&self) -> Vec<(MemberId, u128)> {
        self.members
            .iter()
            .zip(&self.owed)
            .filter(|(_, o)| **o > 0)
            .map(|(m, o)| (m.id, *o))
            .collect()
    }
}

/// A target's work: 2^256 / (target + 1), saturated to u128.
pub fn target_work(target: &bitcoin::Target) -> u128 {
    let work = target.to_work().to_be_bytes();
    if work[..16].iter().any(|b| *b != 0) {
        return u128::MAX;
    }
    let mut low = [0u8; 16];
    low.copy_from_slice(&work[16..]);
    u128::from_be_bytes(low)
}

/// The block subsidy at `height` on `network` (the dust rule's reference value).
pub fn subsidy(network: bitcoin::Network, height: u32) -> Amount {
    let interval = match network {
        bitcoin::Network::Regtest => 150,
        _ => 210_000,
    };
    let halvings = height / interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000) >> halvings)
}

mod u128_decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::identity::MemberKey;

    fn member(n: u8) -> (MemberId, ScriptBuf) {
        let id = MemberKey::from_secret(&[n; 32]).unwrap().id();
        let script = ScriptBuf::from_hex(&format!("0014{}", hex::encode([n; 20]))).unwrap();
        (id, script)
    }

    fn rules(window_work: u128) -> RoundRules {
        RoundRules {
            window_work,
            subsidy: Amount::from_btc(50.0).unwrap(),
            max_output_bytes: 10_000,
            max_payees: 100,
        }
    }

    #[test]
    fn weights_add_up_and_amounts_add_up_to_the_value() {
        for credits in [vec![1u128, 1, 1], vec![7, 3], vec![u128::MAX, 1], vec![5]] {
            let w = normalise(&credits);
            assert_eq!(w.iter().sum::<u64>(), WEIGHT_TOTAL, "{credits:?}");
        }
        assert_eq!(
            normalise(&[1, 1, 1]),
            vec![333_333_334, 333_333_333, 333_333_333]
        );
        let (a, sa) = member(1);
        let (b, sb) = member(2);
        let (c, sc) = member(3);
        let payees = vec![
            Payee {
                member: a,
                script: sa,
                weight: 333_333_334,
            },
            Payee {
                member: b,
                script: sb,
                weight: 333_333_333,
            },
            Payee {
                member: c,
                script: sc,
                weight: 333_333_333,
            },
        ];
        for value in [0u64, 1, 2, 100, 5_000_000_000, 5_000_012_345] {
            let out = amounts(&payees, Amount::from_sat(value));
            assert_eq!(
                out.iter().map(|a| a.to_sat()).sum::<u64>(),
                value,
                "{value}"
            );
        }
        // 100 sat: 33.3333334 → 33 each, one left over, to the first payee in list order.
        assert_eq!(
            amounts(&payees, Amount::from_sat(100)),
            [34, 33, 33].map(Amount::from_sat).to_vec()
        );
    }

    #[test]
    fn the_window_takes_the_newest_work_and_owed_credit_is_kept() {
        let (a, sa) = member(1);
        let (b, sb) = member(2);
        let mut acc = Accounts::default();
        acc.set_member(a, sa);
        acc.set_member(b, sb);
        for _ in 0..10 {
            acc.credit(&a, 100);
        }
        acc.credit(&b, 100);
        // A window of 300: b's 100 and the newest 200 of a's.
        let list = acc.start_round(1, &rules(300));
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].member, list[0].weight), (a, 666_666_667));
        assert_eq!((list[1].member, list[1].weight), (b, 333_333_333));
        // A coinbase with room for one output: b is left out of round 2's list...
        let mut narrow = rules(300);
        narrow.max_output_bytes = 31;
        let list = acc.start_round(2, &narrow);
        assert_eq!(list.iter().map(|p| p.member).collect::<Vec<_>>(), vec![a]);
        // ... a block is found in it, so b is owed its 100 on top of its window from now on.
        acc.block_found(2);
        assert_eq!(acc.owed(), vec![(b, 100)]);
        let list = acc.start_round(3, &rules(300));
        assert_eq!(list[1].member, b);
        assert_eq!(
            list[1].weight, 500_000_000,
            "b: 100 window + 100 owed of 400"
        );
        // A found block that pays b settles it.
        acc.block_found(3);
        assert!(acc.owed().is_empty());
    }

    #[test]
    fn dust_payees_are_dropped_and_the_rest_renormalised() {
        let (a, sa) = member(1);
        let (b, sb) = member(2);
        let mut acc = Accounts::default();
        acc.set_member(a, sa);
        acc.set_member(b, sb);
        acc.credit(&a, 1_000_000_000_000);
        acc.credit(&b, 1);
        let mut r = rules(u128::MAX);
        r.subsidy = Amount::from_sat(100_000);
        let list = acc.round_list(&r);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].weight, WEIGHT_TOTAL);
    }

    #[test]
    fn a_coinbase_must_pay_exactly_the_list() {
        let (a, sa) = member(1);
        let (b, sb) = member(2);
        let payees = vec![
            Payee {
                member: a,
                script: sa.clone(),
                weight: 600_000_000,
            },
            Payee {
                member: b,
                script: sb.clone(),
                weight: 400_000_000,
            },
        ];
        let value = Amount::from_sat(5_000_000_001);
        let mut outputs = payout_outputs(&payees, &sa, value);
        outputs.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::from_hex("6a24aa21a9ed").unwrap(),
        });
        assert_eq!(check_outputs(&outputs, &payees, &sa), Ok(()));
        let mut swapped = outputs.clone();
        swapped.swap(0, 1);
        assert!(check_outputs(&swapped, &payees, &sa).is_err());
        let mut skimmed = outputs.clone();
        skimmed[0].value -= Amount::from_sat(1000);
        skimmed[1].value += Amount::from_sat(1000);
        assert!(matches!(
            check_outputs(&skimmed, &payees, &sa),
            Err(PayoutMismatch::Output { index: 0, .. })
        ));
        let solo = payout_outputs(&[], &sb, value);
        assert!(check_outputs(&solo, &payees, &sb).is_err());
        // An empty list pays the finder.
        assert_eq!(check_outputs(&solo, &[], &sb), Ok(()));
        assert!(check_outputs(&solo, &[], &sa).is_err());
    }
}
