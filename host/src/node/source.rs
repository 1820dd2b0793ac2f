//! The template source: keeps the freshest template from the node published to every device.
//!
//! Tip changes are caught three ways, because each can miss: a GBT longpoll always outstanding,
//! ZMQ `hashblock` when configured, and a `getbestblockhash` poll as the backstop. Fees are
//! refreshed on a timer without a clean restart. When the node stops answering, devices keep the
//! last template for a grace period and are then paused; when we find a block, devices pause on
//! that tip until the node hands out the next template.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::{BlockHash, Network, ScriptBuf};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::rpc::{RpcClient, RpcError};
use crate::events::Event;
use crate::pool::member::PoolState;
use crate::template::{BlockTemplate, parse_template_reply};
use crate::work::{TemplateWork, ntime_may_roll};

/// Why the template source should fetch a template now. (The submitter's answers have their own
/// unbounded channel, [`TemplateSource::submitted`], so a burst of these can never drop one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The node announced a new block (ZMQ `hashblock`).
    NewBlock,
}

/// How long a longpoll may stay open before we reopen it.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The node's network (the rules sent with `getblocktemplate` depend on it).
    pub network: Network,
    /// Payout script.
    pub payout: ScriptBuf,
    /// Coinbase tag.
    pub tag: Vec<u8>,
    /// Backstop poll period.
    pub poll_interval: Duration,
    /// Fee refresh period.
    pub fee_refresh: Duration,
    /// Mining continues this long on the last template after the node goes away.
    pub node_loss_grace: Duration,
}

/// The template source actor.
#[derive(Debug)]
pub struct TemplateSource {
    /// RPC client.
    pub rpc: RpcClient,
    /// Settings.
    pub config: SourceConfig,
    /// Work for devices; `None` pauses them.
    pub work: watch::Sender<Option<Arc<TemplateWork>>>,
    /// Latest tip known (even while paused), for stale classification.
    pub tip: watch::Sender<Option<BlockHash>>,
    /// "We found a block on this parent": pause until the node moves on.
    pub found_block: mpsc::Receiver<BlockHash>,
    /// "Fetch a template now" (ZMQ hashblock).
    pub refresh: mpsc::Receiver<Refresh>,
    /// "The node has answered for our block on this parent" (from the submitter): stop waiting
    /// on it, whatever the answer was. Unbounded so it is never dropped; one per found block.
    pub submitted: mpsc::UnboundedReceiver<BlockHash>,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
    /// A pool member's state (`[pool.member]`): whose payout list the coinbase pays.
    pub pool: Option<watch::Receiver<PoolState>>,
}

/// Resolves when the pool state changes (`true`) or its sender is gone (`false`); never
/// without a pool.
async fn pool_changed(pool: &mut Option<watch::Receiver<PoolState>>) -> bool {
    match pool {
        Some(p) => p.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The rules Hearth tells `getblocktemplate` it supports on `network`. Core refuses the call
/// without `segwit`, and on a signet without `signet` (rpc/mining.cpp); Hearth handles both.
pub fn gbt_rules(network: Network) -> Vec<&'static str> {
    if network == Network::Signet {
        vec!["segwit", "signet"]
    } else {
        vec!["segwit"]
    }
}

/// Fetch and parse a template (a few milliseconds even for a full mainnet template, so it is
/// parsed in place rather than on a blocking thread).
pub async fn fetch_template(
    rpc: &RpcClient,
    network: Network,
    longpoll_id: Option<&str>,
    timeout: Duration,
) -> Result<BlockTemplate, RpcError> {
    let mut request = json!({"rules": gbt_rules(network)});
    if let Some(id) = longpoll_id {
        request["longpollid"] = json!(id);
    }
    let body = rpc
        .call_bytes("getblocktemplate", json!([request]), timeout)
        .await?;
    // An RPC error comes back as {"result": null, "error": {...}}: surface it as such.
    super::rpc::parse_reply_error_only("getblocktemplate", &body)?;
    parse_template_reply(body).map_err(|e| RpcError::Malformed {
        method: "getblocktemplate".into(),
        reason: e.to_string(),
    })
}

/// Whether two templates give the same work, so the newer one need not replace the current
/// work. Every field a job or block is built from counts except `curtime` (it moves on every
/// call and ntime rolls forward from it anyway) and the longpoll id. `bits`, `target` and
/// `version` count: on testnet3/testnet4 the 20-minute rule changes `bits` on the same tip, and
/// a block with the old bits past that point is invalid.
pub(crate) fn same_work(a: &BlockTemplate, b: &BlockTemplate) -> bool {
    a.prev_blockhash == b.prev_blockhash
        && a.height == b.height
        && a.bits == b.bits
        && a.target == b.target
        && a.version == b.version
        && a.vb_required == b.vb_required
        && a.vb_available == b.vb_available
        && a.mintime == b.mintime
        && a.coinbase_value == b.coinbase_value
        && a.default_witness_commitment == b.default_witness_commitment
        && a.weight_limit == b.weight_limit
        && a.sigop_limit == b.sigop_limit
        && a.transactions.len() == b.transactions.len()
        && a.transactions
            .iter()
            .zip(&b.transactions)
            .all(|(x, y)| x.txid == y.txid && x.wtxid == y.wtxid)
}

/// What to do with a template that just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// It builds on the parent of our own block, which the node has not answered for yet: more
    /// work there only makes siblings of our block. Stay paused.
    Hold,
    /// Same work as the current template: keep mining what the devices have.
    Keep,
    /// Replace the work; `new_tip` says whether the old work is now stale.
    Publish {
        /// The template builds on a different block than the current work.
        new_tip: bool,
    },
}

/// The source's decisions about found blocks and arriving templates, without I/O, so that they
/// can be tested on their own.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Parent we found a block on and are waiting to see replaced.
    waiting_on: Option<BlockHash>,
    /// Parent whose submission the submitter already answered (it can overtake `found_block`).
    answered: Option<BlockHash>,
}

impl Gate {
    /// A device found a block on `parent`; `current` is the parent of the work now published.
    /// Returns whether to pause: only when the block is on the current work and the submitter
    /// has not already answered for it.
    pub(crate) fn found_block(&mut self, parent: BlockHash, current: Option<BlockHash>) -> bool {
        if current == Some(parent) && self.answered != Some(parent) {
            self.waiting_on = Some(parent);
            true
        } else {
            false
        }
    }

    /// The submitter has the node's answer for our block on `parent`: stop waiting, even if the
    /// next fetch fails; the next template that does arrive resumes mining.
    pub(crate) fn submitted(&mut self, parent: BlockHash) {
        self.answered = Some(parent);
        if self.waiting_on == Some(parent) {
            self.waiting_on = None;
        }
    }

    /// Whether we are paused waiting for the node's answer about our block.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting_on.is_some()
    }

    /// Decide about `template`, given the current one and whether mining is paused.
    pub(crate) fn template(
        &mut self,
        current: Option<&BlockTemplate>,
        paused: bool,
        template: &BlockTemplate,
    ) -> Next {
        if self.waiting_on == Some(template.prev_blockhash) {
            return Next::Hold;
        }
        self.waiting_on = None;
        let new_tip = current.is_none_or(|c| c.prev_blockhash != template.prev_blockhash);
        if !new_tip && !paused && current.is_some_and(|c| same_work(c, template)) {
            return Next::Keep;
        }
        Next::Publish { new_tip }
    }
}

struct State {
    generation: u64,
    current: Option<Arc<TemplateWork>>,
    longpoll_id: Option<String>,
    node_down_since: Option<Instant>,
    paused: Option<String>,
    gate: Gate,
    /// The newest template while a pool member waits for its coordinator's first round.
    waiting_template: Option<BlockTemplate>,
}

impl TemplateSource {
    /// Run until cancelled.
    pub async fn run(mut self) {
        let mut state = State {
            generation: 0,
            current: None,
            longpoll_id: None,
            node_down_since: None,
            paused: None,
            gate: Gate::default(),
            waiting_template: None,
        };
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut fees = tokio::time::interval(self.config.fee_refresh);
        fees.set_missed_tick_behavior(MissedTickBehavior::Skip);
        fees.tick().await;
        // The first template, before anything else.
        self.fetch_and_publish(&mut state, false).await;
        loop {
            let rpc = self.rpc.clone();
            let id = state.longpoll_id.clone();
            let network = self.config.network;
            let longpoll = async move {
                match id {
                    Some(id) => fetch_template(&rpc, network, Some(&id), LONGPOLL_TIMEOUT).await,
                    // No template yet: wait a moment before asking again.
                    None => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let timeout = rpc.timeout();
                        fetch_template(&rpc, network, None, timeout).await
                    }
                }
            };
            tokio::pin!(longpoll);
            loop {
                tokio::select! {
                    // Pause-on-find before anything else, so a later refresh finds it recorded.
                    biased;
                    _ = self.cancel.cancelled() => return,
                    Some(parent) = self.found_block.recv() => {
                        let current = state.current.as_ref().map(|w| w.prev_blockhash());
                        if state.gate.found_block(parent, current) {
                            self.pause(&mut state, "block found on this tip; waiting for the node's next template");
                        }
                    }
                    Some(parent) = self.submitted.recv() => {
                        state.gate.submitted(parent);
                        self.fetch_and_publish(&mut state, false).await;
                    }
                    Some(Refresh::NewBlock) = self.refresh.recv() => {
                        self.fetch_and_publish(&mut state, false).await;
                    }
                    changed = pool_changed(&mut self.pool) => {
                        if changed {
                            self.pool_state_changed(&mut state);
                        } else {
                            self.pool = None;
                        }
                    }
                    result = &mut longpoll => {
                        match result {
                            Ok(template) => self.publish(&mut state, template),
                            Err(RpcError::Timeout { .. }) => {} // reopen
                            Err(e) => {
                                self.node_error(&mut state, &e);
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                    _ = self.cancel.cancelled() => return,
                                }
                            }
                        }
                        break;
                    }
                    _ = poll.tick() => {
                        match self.rpc.call::<String>("getbestblockhash", json!([])).await {
                            Ok(best) => {
                                let known = state.current.as_ref().map(|w| w.prev_blockhash().to_string());
                                if state.node_down_since.is_some() || known.as_deref() != Some(best.as_str()) {
                                    self.fetch_and_publish(&mut state, false).await;
                                }
                            }
                            Err(e) => self.node_error(&mut state, &e),
                        }
                        self.check_grace(&mut state);
                    }
                    _ = fees.tick() => self.fetch_and_publish(&mut state, true).await,
                }
            }
        }
    }

    async fn fetch_and_publish(&mut self, state: &mut State, fee_refresh: bool) {
        match fetch_template(&self.rpc, self.config.network, None, self.rpc.timeout()).await {
            Ok(template) => {
                if fee_refresh {
                    tracing::debug!("fee refresh");
                }
                self.publish(state, template)
            }
            Err(e) => self.node_error(state, &e),
        }
    }

    fn node_error(&mut self, state: &mut State, e: &RpcError) {
        // Unreachable, timing out, refusing credentials or sending nonsense: either way there is
        // no fresh template. Mining continues on the last one for the grace period, then pauses.
        if state.node_down_since.is_none() {
            state.node_down_since = Some(Instant::now());
            if e.is_transient() {
                tracing::warn!(error = %e, grace = ?self.config.node_loss_grace,
                    "node unreachable; mining continues on the last template for the grace period, then pauses");
            } else {
                tracing::error!(error = %e, grace = ?self.config.node_loss_grace,
                    "bad answer from the node; keeping the previous template for the grace period");
            }
            let _ = self.events.send(Event::NodeDown {
                error: e.to_string(),
            });
        }
        self.check_grace(state);
    }

    fn check_grace(&mut self, state: &mut State) {
        if let Some(since) = state.node_down_since
            && since.elapsed() >= self.config.node_loss_grace
            && state.paused.is_none()
        {
            self.pause(state, "node unreachable");
        }
    }

    fn pause(&mut self, state: &mut State, reason: &str) {
        if state.paused.is_none() {
            if state.gate.waiting() {
                tracing::debug!(reason, "mining paused");
            } else {
                tracing::warn!(reason, "mining paused");
            }
            let _ = self.events.send(Event::Paused {
                reason: reason.to_string(),
            });
        }
        state.paused = Some(reason.to_string());
        self.work.send_replace(None);
    }

    /// The pool's round (or solo) changed: the same template, paying the new list.
    fn pool_state_changed(&mut self, state: &mut State) {
        let waiting = matches!(
            self.pool.as_ref().map(|p| p.borrow().clone()),
            Some(PoolState::Waiting)
        );
        if waiting {
            self.pause(state, "waiting for the pool coordinator");
            return;
        }
        let Some(current) = state
            .waiting_template
            .take()
            .or_else(|| state.current.as_ref().map(|w| w.template.clone()))
        else {
            return;
        };
        if state.gate.waiting() || state.node_down_since.is_some() {
            // Paused for a found block or a lost node: the next template picks the list up.
            return;
        }
        let new_tip = state
            .current
            .as_ref()
            .is_none_or(|w| w.prev_blockhash() != current.prev_blockhash);
        self.build_and_send(state, current, new_tip);
    }

    fn publish(&mut self, state: &mut State, template: BlockTemplate) {
        if state.node_down_since.take().is_some() {
            tracing::info!("node is back");
            let _ = self.events.send(Event::NodeUp);
        }
        state.longpoll_id = template.longpoll_id.clone();
        self.tip.send_replace(Some(template.prev_blockhash));
        let current = state.current.as_ref().map(|w| &w.template);
        let new_tip = match state
            .gate
            .template(current, state.paused.is_some(), &template)
        {
            // Stay paused until the submitter answers (`submitted`).
            Next::Hold | Next::Keep => return,
            Next::Publish { new_tip } => new_tip,
        };
        self.build_and_send(state, template, new_tip);
    }

    /// Build the work for `template` (paying the pool's list when a member) and send it out.
    fn build_and_send(&mut self, state: &mut State, template: BlockTemplate, new_tip: bool) {
        let pool = self.pool.as_ref().map(|p| p.borrow().clone());
        if let Some(PoolState::Waiting) = pool {
            state.waiting_template = Some(template);
            self.pause(state, "waiting for the pool coordinator");
            return;
        }
        state.waiting_template = None;
        state.generation += 1;
        let (height, prev, transactions) = (
            template.height,
            template.prev_blockhash,
            template.transactions.len(),
        );
        let round = match pool {
            Some(PoolState::Round(round)) => Some(round),
            _ => None,
        };
        let built = match &round {
            Some(round) => {
                let payouts = crate::pool::payout::payout_outputs(
                    &round.payees,
                    &self.config.payout,
                    template.coinbase_value,
                );
                TemplateWork::paying(
                    state.generation,
                    template,
                    &payouts,
                    Some(&round.commitment),
                    &self.config.tag,
                    new_tip,
                )
                .map(|mut w| {
                    w.pool = Some(round.work.clone());
                    w
                })
            }
            None => TemplateWork::new(
                state.generation,
                template,
                &self.config.payout,
                &self.config.tag,
                new_tip,
            ),
        };
        match built {
            Ok(mut work) => {
                if !ntime_may_roll(self.config.network, &work.template) {
                    work.max_ntime_ahead = 0;
                }
                let work = Arc::new(work);
                state.current = Some(work.clone());
                if state.paused.take().is_some() {
                    tracing::debug!(height, "mining resumed");
                }
                self.work.send_replace(Some(work));
                if new_tip {
                    tracing::info!(height, %prev, transactions, "new block template");
                } else {
                    tracing::debug!(height, transactions, "template refreshed");
                }
                let _ = self.events.send(Event::NewWork {
                    height,
                    prev,
                    transactions,
                    new_tip,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, height, "refusing the node's template");
                if new_tip {
                    // The old work builds on a replaced tip: better idle than mine stale.
                    self.pause(state, "the node's template for the new tip was refused");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::hashes::Hash;

    use super::*;
    use crate::template::parse_template;

    fn template(edit: impl FnOnce(&mut serde_json::Value)) -> BlockTemplate {
        let mut gbt = crate::template::tests::sample_gbt(100);
        edit(&mut gbt);
        parse_template(gbt.to_string().as_bytes()).unwrap()
    }

    fn on(parent: u8) -> impl FnOnce(&mut serde_json::Value) {
        move |t| {
            t["previousblockhash"] = json!(BlockHash::from_byte_array([parent; 32]).to_string())
        }
    }

    fn hash(parent: u8) -> BlockHash {
        BlockHash::from_byte_array([parent; 32])
    }

    #[test]
    fn a_new_time_alone_is_the_same_work() {
        let a = template(|_| {});
        let b = template(|t| {
            t["curtime"] = json!(1_700_000_160u32);
            t["longpollid"] = json!("other");
        });
        assert!(same_work(&a, &b));
        let mut gate = Gate::default();
        assert_eq!(gate.template(Some(&a), false, &b), Next::Keep);
        // Paused (node came back, or after a find): the same work is published again.
        assert_eq!(
            gate.template(Some(&a), true, &b),
            Next::Publish { new_tip: false }
        );
    }

    #[test]
    fn new_bits_on_the_same_tip_replace_the_work() {
        // testnet's 20-minute rule: same tip, same transactions, minimum-difficulty bits.
        let a = template(|t| {
            t["bits"] = json!("1d00ffff");
            t["target"] = json!("00000000ffff0000000000000000000000000000000000000000000000000000");
        });
        let b = template(|t| {
            t["bits"] = json!("1c0ffff0");
            t["target"] = json!("000000000ffff000000000000000000000000000000000000000000000000000");
        });
        assert!(!same_work(&a, &b));
        let mut gate = Gate::default();
        assert_eq!(
            gate.template(Some(&b), false, &a),
            Next::Publish { new_tip: false }
        );
    }

    #[test]
    fn every_field_a_block_is_built_from_counts() {
        let base = template(|_| {});
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "version",
                Box::new(|t| t["version"] = json!(0x3000_0000u32)),
            ),
            ("vbrequired", Box::new(|t| t["vbrequired"] = json!(0x4000))),
            (
                "vbavailable",
                Box::new(|t| t["vbavailable"] = json!({"x": 14})),
            ),
            (
                "mintime",
                Box::new(|t| t["mintime"] = json!(1_700_000_001u32)),
            ),
            (
                "coinbasevalue",
                Box::new(|t| t["coinbasevalue"] = json!(5_000_002_000u64)),
            ),
            (
                "txid",
                Box::new(|t| {
                    t["transactions"][0]["txid"] = json!("33".repeat(32));
                }),
            ),
            ("sigoplimit", Box::new(|t| t["sigoplimit"] = json!(40_000))),
            (
                "weightlimit",
                Box::new(|t| t["weightlimit"] = json!(3_000_000)),
            ),
        ];
        for (field, edit) in edits {
            let mut gbt = crate::template::tests::sample_gbt(100);
            edit(&mut gbt);
            let other = parse_template(gbt.to_string().as_bytes()).unwrap();
            assert!(!same_work(&base, &other), "{field} is ignored");
        }
        let other_tip = template(on(9));
        assert!(!same_work(&base, &other_tip));
        let mut gate = Gate::default();
        assert_eq!(
            gate.template(Some(&base), false, &other_tip),
            Next::Publish { new_tip: true }
        );
        assert_eq!(
            gate.template(None, false, &base),
            Next::Publish { new_tip: true }
        );
    }

    #[test]
    fn a_find_pauses_until_the_submitter_answers() {
        let mut gate = Gate::default();
        let current = template(on(1));
        // A find on older work does not pause.
        assert!(!gate.found_block(hash(0), Some(hash(1))));
        assert!(!gate.waiting());
        // A find on the current work pauses; templates for that parent are held.
        assert!(gate.found_block(hash(1), Some(hash(1))));
        assert!(gate.waiting());
        let refreshed = template(|t| {
            on(1)(t);
            t["coinbasevalue"] = json!(5_000_009_000u64);
        });
        assert_eq!(gate.template(Some(&current), true, &refreshed), Next::Hold);
        assert_eq!(gate.template(Some(&current), true, &current), Next::Hold);
        // The node answered (accepted or refused): the same parent may be mined again.
        gate.submitted(hash(1));
        assert!(!gate.waiting());
        assert_eq!(
            gate.template(Some(&current), true, &current),
            Next::Publish { new_tip: false }
        );
    }

    #[test]
    fn the_node_moving_on_ends_the_wait() {
        let mut gate = Gate::default();
        let current = template(on(1));
        assert!(gate.found_block(hash(1), Some(hash(1))));
        // Our block was connected: the next template builds on it.
        assert_eq!(
            gate.template(Some(&current), true, &template(on(2))),
            Next::Publish { new_tip: true }
        );
        assert!(!gate.waiting());
    }

    #[test]
    fn an_answer_that_overtakes_the_find_does_not_pause() {
        // The submitter can answer before the find notice reaches the source.
        let mut gate = Gate::default();
        gate.submitted(hash(1));
        assert!(!gate.found_block(hash(1), Some(hash(1))));
        assert!(!gate.waiting());
        // An answer for another parent does not end a wait.
        assert!(gate.found_block(hash(2), Some(hash(2))));
        gate.submitted(hash(1));
        assert!(gate.waiting());
    }

    #[test]
    fn signet_templates_are_asked_for_with_the_signet_rule() {
        assert_eq!(gbt_rules(Network::Signet), ["segwit", "signet"]);
        for n in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Testnet4,
            Network::Regtest,
        ] {
            assert_eq!(gbt_rules(n), ["segwit"], "{n}");
        }
    }
}
