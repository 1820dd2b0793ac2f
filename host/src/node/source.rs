//! The template source: keeps the freshest template from the node published to every device.
//!
//! Tip changes are caught three ways, because each can miss: a GBT longpoll always outstanding,
//! ZMQ `hashblock` when configured, and a `getbestblockhash` poll as the backstop. Fees are
//! refreshed on a timer without a clean restart. When the node stops answering, devices keep the
//! last template for a grace period and are then paused; when we find a block, devices pause on
//! that tip until the node hands out the next template.

use std::sync::Arc;
use std::time::Duration;

use bitcoin::{BlockHash, ScriptBuf};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::rpc::{RpcClient, RpcError};
use crate::events::Event;
use crate::template::{BlockTemplate, parse_template_reply};
use crate::work::TemplateWork;

/// Why the template source should fetch a template now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The submitter has the node's answer for our block on this parent: stop waiting on it,
    /// whatever the answer was.
    Submitted(BlockHash),
    /// The node announced a new block (ZMQ `hashblock`).
    NewBlock,
}

/// How long a longpoll may stay open before we reopen it.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings.
#[derive(Debug, Clone)]
pub struct SourceConfig {
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
    /// "Fetch a template now" (after a submission, on ZMQ hashblock).
    pub refresh: mpsc::Receiver<Refresh>,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

/// Fetch and parse a template (a few milliseconds even for a full mainnet template, so it is
/// parsed in place rather than on a blocking thread).
pub async fn fetch_template(
    rpc: &RpcClient,
    longpoll_id: Option<&str>,
    timeout: Duration,
) -> Result<BlockTemplate, RpcError> {
    let mut request = json!({"rules": ["segwit"]});
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

struct State {
    generation: u64,
    current: Option<Arc<TemplateWork>>,
    longpoll_id: Option<String>,
    node_down_since: Option<Instant>,
    paused: Option<String>,
    /// Parent we found a block on and are waiting to see replaced.
    waiting_on: Option<BlockHash>,
    /// Parent whose submission the submitter already answered (it can overtake `found_block`).
    answered: Option<BlockHash>,
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
            waiting_on: None,
            answered: None,
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
            let longpoll = async move {
                match id {
                    Some(id) => fetch_template(&rpc, Some(&id), LONGPOLL_TIMEOUT).await,
                    // No template yet: wait a moment before asking again.
                    None => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let timeout = rpc.timeout();
                        fetch_template(&rpc, None, timeout).await
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
                        let current = state.current.as_ref().is_some_and(|w| w.prev_blockhash() == parent);
                        if current && state.answered != Some(parent) {
                            state.waiting_on = Some(parent);
                            self.pause(&mut state, "block found on this tip; waiting for the node's next template");
                        }
                    }
                    Some(refresh) = self.refresh.recv() => {
                        if let Refresh::Submitted(parent) = refresh {
                            // The answer arrived: stop waiting even if the fetch below fails; the
                            // next template that does arrive resumes mining.
                            state.answered = Some(parent);
                            if state.waiting_on == Some(parent) {
                                state.waiting_on = None;
                            }
                        }
                        self.fetch_and_publish(&mut state, false).await;
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
        match fetch_template(&self.rpc, None, self.rpc.timeout()).await {
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
            if state.waiting_on.is_some() {
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

    fn publish(&mut self, state: &mut State, template: BlockTemplate) {
        if state.node_down_since.take().is_some() {
            tracing::info!("node is back");
            let _ = self.events.send(Event::NodeUp);
        }
        state.longpoll_id = template.longpoll_id.clone();
        self.tip.send_replace(Some(template.prev_blockhash));
        if state.waiting_on == Some(template.prev_blockhash) {
            // The node has not taken our block yet; more work on this parent only makes
            // siblings of it. Stay paused until the submitter answers (Refresh::Submitted).
            return;
        }
        state.waiting_on = None;
        let new_tip = state
            .current
            .as_ref()
            .is_none_or(|w| w.prev_blockhash() != template.prev_blockhash);
        let same_as_current = state.current.as_ref().is_some_and(|w| {
            !new_tip
                && w.template.coinbase_value == template.coinbase_value
                && w.template.transactions.len() == template.transactions.len()
                && w.template
                    .transactions
                    .iter()
                    .zip(&template.transactions)
                    .all(|(a, b)| a.txid == b.txid)
        });
        if same_as_current && state.paused.is_none() {
            return;
        }
        state.generation += 1;
        let (height, prev, transactions) = (
            template.height,
            template.prev_blockhash,
            template.transactions.len(),
        );
        match TemplateWork::new(
            state.generation,
            template,
            &self.config.payout,
            &self.config.tag,
            new_tip,
        ) {
            Ok(work) => {
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
