//! The coordinator (`[pool.coordinator]`): authenticates members, checks their shares against
//! its own node, keeps the ledger, starts rounds, and submits the blocks members find to its own
//! node as well.
//!
//! ```text
//! tips (its node) ──> sessions (one per member: login, vardiff, validate) ──> writer ──> ledger file
//!                          ^                                                    |  (batched, fsync)
//!                          +---------------- rounds (watch) <-------------------+──> blocks: journal + submitter
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network, ScriptBuf, Target, TxMerkleNode};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::identity::{MemberId, verify_auth};
use super::ledger::{Entry, Ledger};
use super::payout::{Accounts, RoundRules, subsidy, target_work};
use super::protocol::{self, Request};
use super::validate::{Reject, RoundView, ShareBytes, ShareContext, Tip, header_hash, validate};
use crate::node::RpcClient;
use crate::share::Candidate;
use crate::stratum::difficulty::{Vardiff, VardiffConfig, target_for_difficulty};
use crate::submit::{Journal, JournalEntry};

/// `[pool.coordinator]`, validated.
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// `host:port` to listen on.
    pub listen: String,
    /// The chain.
    pub network: Network,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Who may log in: name and key.
    pub members: Vec<(String, MemberId)>,
    /// Per-member share difficulty.
    pub vardiff: VardiffConfig,
    /// The PPLNS window, in blocks' worth of work at the network's difficulty.
    pub window_blocks: u32,
    /// A new round (payout list) at most this often while shares come in.
    pub round_interval: Duration,
    /// Shares on a replaced tip or round still count this long.
    pub grace: Duration,
    /// Most payees in a list.
    pub max_payees: u32,
    /// Bytes of payout outputs when no member reports a limit of its own.
    pub default_output_bytes: u64,
}

/// What the coordinator counts per member (the `status` method, the API).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct MemberCounters {
    /// Its name.
    pub name: String,
    /// Connected now.
    pub connected: u32,
    /// Accepted shares.
    pub accepted: u64,
    /// Accepted shares that were blocks.
    pub blocks: u64,
    /// Refused shares by reason ([`Reject::kind`]).
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Current share difficulty.
    pub difficulty: f64,
}

#[derive(Debug, Default)]
struct Shared {
    tips: Vec<Tip>,
    rounds: Vec<RoundView>,
    /// Output-byte limit per connected session (`None`: no limit of its own).
    budgets: HashMap<u64, Option<u64>>,
    counters: HashMap<MemberId, MemberCounters>,
}

enum Command {
    Login {
        member: MemberId,
        name: String,
        script: ScriptBuf,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    Share {
        member: MemberId,
        /// The payout script the share was checked against (its session's login).
        script: ScriptBuf,
        share: Box<ShareBytes>,
        target: Target,
        hash: BlockHash,
        block: Option<(u32, String)>,
        reply: oneshot::Sender<Result<u64, (String, String)>>,
    },
    Ledger {
        from: u64,
        max: usize,
        reply: oneshot::Sender<anyhow::Result<protocol::LedgerPage>>,
    },
    /// Membership changed (a limit to take into account): start a round soon.
    Budget,
}

/// A bound coordinator with its ledger open.
#[derive(Debug)]
pub struct Coordinator {
    listener: TcpListener,
    settings: CoordinatorSettings,
    ledger: Ledger,
    accounts: Accounts,
    last_round: Option<u64>,
    seen: SeenHashes,
    handle: CoordinatorHandle,
    round_tx: watch::Sender<Option<Arc<protocol::Round>>>,
}

/// A read-only view of a running coordinator (the API, metrics).
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    shared: Arc<Mutex<Shared>>,
    rounds: watch::Receiver<Option<Arc<protocol::Round>>>,
    ledger_entries: Arc<std::sync::atomic::AtomicU64>,
}

/// What the API shows of a coordinator.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CoordinatorView {
    /// Entries in the ledger.
    pub ledger_entries: u64,
    /// The current round, if one has started.
    pub round: Option<u64>,
    /// Payees in its list.
    pub payees: usize,
    /// Height of the coordinator's node's next block.
    pub next_height: Option<u32>,
    /// Per member, by name.
    pub members: Vec<MemberCounters>,
}

impl CoordinatorHandle {
    /// The coordinator now.
    pub fn view(&self) -> CoordinatorView {
        let round = self.rounds.borrow().clone();
        let (mut members, next_height) = match self.shared.lock() {
            Ok(s) => (
                s.counters.values().cloned().collect::<Vec<_>>(),
                s.tips.first().map(|t| t.next_height),
            ),
            Err(_) => (Vec::new(), None),
        };
        members.sort_by(|a, b| a.name.cmp(&b.name));
        CoordinatorView {
            ledger_entries: self
                .ledger_entries
                .load(std::sync::atomic::Ordering::Relaxed),
            round: round.as_ref().map(|r| r.round),
            payees: round.as_ref().map_or(0, |r| r.payees.len()),
            next_height,
            members,
        }
    }
}

/// Share hashes already in the ledger (the newest million: older ones are on long-replaced
/// tips and are refused as stale anyway).
#[derive(Debug, Default)]
struct SeenHashes {
    set: HashSet<BlockHash>,
    order: VecDeque<BlockHash>,
}

impl SeenHashes {
    const KEEP: usize = 1 << 20;

    fn insert(&mut self, hash: BlockHash) -> bool {
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Apply one ledger entry to the accounts (start-up replay; the audit does the same).
pub fn apply(accounts: &mut Accounts, entry: &Entry) -> Result<(), String> {
    match entry {
        Entry::Member { member, script, .. } => accounts.set_member(*member, script.clone()),
        Entry::Round { round, rules, .. } => {
            accounts.start_round(*round, rules);
        }
        Entry::Share {
            round,
            member,
            target,
            block,
            ..
        } => {
            let target = parse_target(target)?;
            if !accounts.credit(member, target_work(&target)) {
                return Err(format!("share by {member}, who never logged in"));
            }
            if *block {
                accounts.block_found(*round);
            }
        }
    }
    Ok(())
}

/// A target from 64 hex digits (big-endian).
pub fn parse_target(text: &str) -> Result<Target, String> {
    let bytes: [u8; 32] = super::ledger::hex_field(text, "target")?;
    Ok(Target::from_be_bytes(bytes))
}

impl Coordinator {
    /// Open the ledger (replaying it) and bind the port.
    pub async fn bind(settings: CoordinatorSettings) -> anyhow::Result<Coordinator> {
        let mut accounts = Accounts::default();
        let mut last_round = None;
        let mut seen = SeenHashes::default();
        let mut replay_error = None;
        let ledger = Ledger::open(&settings.ledger, |seq, entry| {
            if let Entry::Round { round, .. } = entry {
                last_round = Some(*round);
            }
            if let Entry::Share { header, .. } = entry
                && let Some(hash) = super::ledger::share_hash(header)
            {
                seen.insert(hash);
            }
            if let Err(e) = apply(&mut accounts, entry)
                && replay_error.is_none()
            {
                replay_error = Some(format!("entry {seq}: {e}"));
            }
        })?;
        if let Some(e) = replay_error {
            anyhow::bail!("{}: {e}", settings.ledger.display());
        }
        tracing::info!(ledger = %settings.ledger.display(), entries = ledger.len(),
            shares = accounts.share_count(), "pool ledger replayed");
        let mut shared = Shared::default();
        for (name, id) in &settings.members {
            shared.counters.insert(
                *id,
                MemberCounters {
                    name: name.clone(),
                    ..MemberCounters::default()
                },
            );
        }
        let (round_tx, rounds) = watch::channel(None);
        let handle = CoordinatorHandle {
            shared: Arc::new(Mutex::new(shared)),
            rounds,
            ledger_entries: Arc::new(std::sync::atomic::AtomicU64::new(ledger.len())),
        };
        let listener = TcpListener::bind(&settings.listen).await.with_context(|| {
            format!(
                "pool.coordinator.listen = {:?}: cannot listen there (in use, or not an address of this machine)",
                settings.listen
            )
        })?;
        Ok(Coordinator {
            listener,
            settings,
            ledger,
            accounts,
            last_round,
            seen,
            handle,
            round_tx,
        })
    }

    /// A view for the API.
    pub fn handle(&self) -> CoordinatorHandle {
        self.handle.clone()
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `cancel`. Blocks members find go to `candidates` (journalled first).
    pub async fn run(self, node: CoordinatorNode, cancel: CancellationToken) {
        let Coordinator {
            listener,
            settings,
            ledger,
            accounts,
            last_round,
            seen,
            handle,
            round_tx,
        } = self;
        let settings = Arc::new(settings);
        let shared = handle.shared.clone();
        let round_rx = handle.rounds.clone();
        let (commands, command_rx) = mpsc::channel(4096);
        let writer = Writer {
            ledger_entries: handle.ledger_entries.clone(),
            settings: settings.clone(),
            ledger,
            accounts,
            next_round: last_round.map_or(1, |r| r + 1),
            seen,
            shared: shared.clone(),
            rounds: round_tx,
            node: node.clone(),
            dirty: true,
        };
        let tasks = tokio_util::task::TaskTracker::new();
        tasks.spawn(track_tips(
            node.rpc.clone(),
            settings.clone(),
            shared.clone(),
            cancel.clone(),
        ));
        tasks.spawn(writer.run(command_rx, cancel.clone()));
        let ctx = Arc::new(SessionContext {
            settings: settings.clone(),
            shared,
            commands,
            rounds: round_rx,
            rpc: node.rpc.clone(),
        });
        let mut session_id = 0u64;
        // Anyone who reaches the port gets a session until it logs in (or not, within 30 s): a
        // bound on them bounds what strangers can make the coordinator hold.
        let sessions = Arc::new(tokio::sync::Semaphore::new(
            settings.members.len().saturating_mul(2) + SPARE_SESSIONS,
        ));
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "pool: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = sessions.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "pool: too many connections open; this one is closed");
                drop(stream);
                continue;
            };
            session_id += 1;
            let ctx = ctx.clone();
            let cancel = cancel.clone();
            let id = session_id;
            tasks.spawn(async move {
                let _permit = permit;
                if let Err(e) = session(stream, id, &ctx, cancel).await {
                    tracing::info!(%peer, reason = %e, "pool member connection closed");
                }
                if let Ok(mut s) = ctx.shared.lock() {
                    s.budgets.remove(&id);
                }
                let _ = ctx.commands.try_send(Command::Budget);
            });
        }
        tasks.close();
        tasks.wait().await;
    }
}

/// What the coordinator needs of its daemon: its node, and the block path.
#[derive(Debug, Clone)]
pub struct CoordinatorNode {
    /// The coordinator's own node.
    pub rpc: RpcClient,
    /// Its journal (blocks are written there before submission).
    pub journal: Journal,
    /// Its submitter.
    pub candidates: mpsc::Sender<Candidate>,
    /// The stats row blocks are counted on.
    pub stats_index: usize,
}

/// Follow the coordinator's node's tip: the tips shares may build on.
async fn track_tips(
    rpc: RpcClient,
    settings: Arc<CoordinatorSettings>,
    shared: Arc<Mutex<Shared>>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = refresh_tips(&rpc, settings.network, &shared, settings.grace).await {
            tracing::debug!(error = %e, "pool: cannot read the node's tip");
        }
    }
}

/// Ask the node for its tip and record it when it is new.
async fn refresh_tips(
    rpc: &RpcClient,
    network: Network,
    shared: &Mutex<Shared>,
    grace: Duration,
) -> anyhow::Result<()> {
    let best: String = rpc.call("getbestblockhash", json!([])).await?;
    let known = shared
        .lock()
        .ok()
        .and_then(|s| s.tips.first().map(|t| t.hash.to_string()));
    if known.as_deref() == Some(best.as_str()) {
        return Ok(());
    }
    let template = crate::node::source::fetch_template(rpc, network, None, rpc.timeout()).await?;
    let tip = Tip {
        hash: template.prev_blockhash,
        next_height: template.height,
        bits: template.bits,
        mintime: template.mintime,
        replaced_at: None,
    };
    if let Ok(mut s) = shared.lock() {
        if s.tips.first().is_some_and(|t| t.hash == tip.hash) {
            return Ok(());
        }
        let now = Instant::now();
        for t in s.tips.iter_mut() {
            t.replaced_at.get_or_insert(now);
        }
        // Keep replaced tips a while past the grace (a "stale" answer is clearer than "unknown").
        s.tips.retain(|t| {
            t.replaced_at
                .is_none_or(|at| now.duration_since(at) < grace * 10)
        });
        s.tips.truncate(16);
        tracing::info!(height = tip.next_height, tip = %tip.hash, "pool: new tip");
        s.tips.insert(0, tip);
    }
    Ok(())
}

struct Writer {
    ledger_entries: Arc<std::sync::atomic::AtomicU64>,
    settings: Arc<CoordinatorSettings>,
    ledger: Ledger,
    accounts: Accounts,
    next_round: u64,
    seen: SeenHashes,
    shared: Arc<Mutex<Shared>>,
    rounds: watch::Sender<Option<Arc<protocol::Round>>>,
    node: CoordinatorNode,
    /// Something changed since the last round.
    dirty: bool,
}

/// Most commands written with one fsync.
const BATCH: usize = 1024;

impl Writer {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.round_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first round as soon as the node's tip is known.
        let mut soon = tokio::time::interval(Duration::from_millis(250));
        let mut have_round = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    self.maybe_round();
                }
                _ = soon.tick(), if !have_round => {
                    have_round = self.maybe_round();
                }
                first = commands.recv() => {
                    let Some(first) = first else { return };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match commands.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    self.handle(batch).await;
                    if !have_round {
                        have_round = self.maybe_round();
                    }
                }
            }
        }
    }

    async fn handle(&mut self, batch: Vec<Command>) {
        let mut entries = Vec::new();
        enum Pending {
            Login(MemberId, ScriptBuf, oneshot::Sender<anyhow::Result<()>>),
            Share {
                member: MemberId,
                target: Target,
                round: u64,
                block: Option<(u32, String, BlockHash)>,
                reply: oneshot::Sender<Result<u64, (String, String)>>,
                index: usize,
                hash: BlockHash,
            },
        }
        let mut pending = Vec::new();
        let mut budget_changed = false;
        // Scripts registered in this batch, ahead of the accounts (which follow the write).
        let mut registered: HashMap<MemberId, ScriptBuf> = HashMap::new();
        for command in batch {
            match command {
                Command::Ledger { from, max, reply } => {
                    let ledger = &self.ledger;
                    let page = blocking(|| {
                        ledger.read_lines(
                            from,
                            max.min(protocol::LEDGER_PAGE),
                            protocol::LEDGER_PAGE_BYTES,
                        )
                    })
                    .map(|lines| protocol::LedgerPage {
                        lines,
                        total: self.ledger.len(),
                    });
                    let _ = reply.send(page);
                }
                Command::Budget => budget_changed = true,
                Command::Login {
                    member,
                    name,
                    script,
                    reply,
                } => {
                    let current = registered
                        .get(&member)
                        .or_else(|| self.accounts.script_of(&member));
                    if current != Some(&script) {
                        entries.push(Entry::Member {
                            member,
                            name,
                            script: script.clone(),
                        });
                        registered.insert(member, script.clone());
                    }
                    budget_changed = true;
                    pending.push(Pending::Login(member, script, reply));
                }
                Command::Share {
                    member,
                    script,
                    share,
                    target,
                    hash,
                    block,
                    reply,
                } => {
                    // The same key logged in since with another payout script: an empty list
                    // pays the finder, and the ledger (and so the audit) knows the newer one.
                    let current = registered
                        .get(&member)
                        .or_else(|| self.accounts.script_of(&member));
                    if current != Some(&script) {
                        let _ = reply.send(Err((
                            "wrong_payouts".into(),
                            "this member logged in again with another payout script; log in again"
                                .into(),
                        )));
                        continue;
                    }
                    if !self.seen.insert(hash) {
                        let _ = reply.send(Err((
                            Reject::Duplicate.kind().into(),
                            Reject::Duplicate.to_string(),
                        )));
                        continue;
                    }
                    let index = entries.len();
                    entries.push(Entry::share(&share, member, target, block.is_some()));
                    pending.push(Pending::Share {
                        member,
                        target,
                        round: share.round,
                        block: block.map(|(h, b)| (h, b, hash)),
                        reply,
                        index,
                        hash,
                    });
                }
            }
        }
        if budget_changed {
            self.dirty = true;
        }
        let first = if entries.is_empty() {
            Ok(self.ledger.len())
        } else {
            // One write and one fsync for the whole batch, off the async workers' hands.
            let ledger = &mut self.ledger;
            blocking(|| ledger.append(&entries))
        };
        self.ledger_entries
            .store(self.ledger.len(), std::sync::atomic::Ordering::Relaxed);
        let first = match first {
            Ok(first) => first,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "pool: cannot write the ledger; shares are not acknowledged");
                for p in pending {
                    match p {
                        Pending::Login(_, _, reply) => {
                            let _ = reply.send(Err(anyhow::anyhow!(
                                "the coordinator cannot write its ledger"
                            )));
                        }
                        Pending::Share {
                            reply,
                            hash,
                            member,
                            block,
                            ..
                        } => {
                            // Not recorded: the member may send it again. A block goes to the
                            // node all the same (the journal is another file, and a block is
                            // worth more than its ledger line).
                            self.seen.set.remove(&hash);
                            if let Some((height, block, hash)) = block {
                                self.submit_block(member, height, block, hash).await;
                            }
                            let _ = reply.send(Err((
                                "ledger_write".into(),
                                "the coordinator could not record the share".into(),
                            )));
                        }
                    }
                }
                return;
            }
        };
        let mut found_block = false;
        for p in pending {
            match p {
                Pending::Login(member, script, reply) => {
                    if self.accounts.script_of(&member) != Some(&script) {
                        self.accounts.set_member(member, script);
                    }
                    let _ = reply.send(Ok(()));
                }
                Pending::Share {
                    member,
                    target,
                    round,
                    block,
                    reply,
                    index,
                    ..
                } => {
                    self.accounts.credit(&member, target_work(&target));
                    self.dirty = true;
                    if let Some((height, block, hash)) = block {
                        self.accounts.block_found(round);
                        self.submit_block(member, height, block, hash).await;
                        found_block = true;
                    }
                    let _ = reply.send(Ok(first + index as u64));
                }
            }
        }
        if found_block {
            // Who is owed changed (rule 5), and the next block is a new race: a new list now
            // rather than at the next tick.
            self.maybe_round();
        }
    }

    async fn submit_block(&self, member: MemberId, height: u32, block: String, hash: BlockHash) {
        let name = self
            .shared
            .lock()
            .ok()
            .and_then(|s| s.counters.get(&member).map(|c| c.name.clone()))
            .unwrap_or_else(|| member.to_string());
        let parent = block
            .get(8..72)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| BlockHash::from_slice(&b).ok())
            .unwrap_or_else(BlockHash::all_zeros);
        let entry = JournalEntry {
            height,
            hash: hash.to_string(),
            device: format!("pool member {name}"),
            found_at: crate::work::unix_now(),
            block,
        };
        tracing::info!(%hash, height, member = %name, "pool: a member found a block; submitting it to our node too");
        if let Err(e) = self.node.journal.record(&entry) {
            tracing::error!(error = %e, %hash, "could not journal a member's block; submitting anyway");
        }
        let candidate = Candidate {
            entry,
            hash,
            parent,
            device_index: self.node.stats_index,
            stale_work: false,
        };
        if self.node.candidates.send(candidate).await.is_err() {
            tracing::error!(%hash, "submitter gone; the member's block stays in the journal");
        }
    }

    /// Start a round if something changed and the node's tip is known. Returns whether a
    /// round is current.
    fn maybe_round(&mut self) -> bool {
        if !self.dirty {
            return true;
        }
        let (tip, budget) = match self.shared.lock() {
            Ok(s) => (
                s.tips.first().cloned(),
                s.budgets.values().flatten().copied().min(),
            ),
            Err(_) => return false,
        };
        let Some(tip) = tip else { return false };
        let block_work = target_work(&Target::from_compact(tip.bits));
        let rules = RoundRules {
            window_work: block_work.saturating_mul(u128::from(self.settings.window_blocks)),
            subsidy: subsidy(self.settings.network, tip.next_height),
            max_output_bytes: budget.unwrap_or(self.settings.default_output_bytes),
            max_payees: self.settings.max_payees,
        };
        let round = self.next_round;
        let payees = self.accounts.start_round(round, &rules);
        let entry = Entry::Round {
            round,
            height: tip.next_height,
            rules: rules.clone(),
            payees: payees.clone(),
        };
        let ledger = &mut self.ledger;
        if let Err(e) = blocking(|| ledger.append(&[entry])) {
            tracing::error!(error = %format!("{e:#}"), "pool: cannot write the ledger; keeping the current round");
            self.accounts.forget_round(round);
            return false;
        }
        self.ledger_entries
            .store(self.ledger.len(), std::sync::atomic::Ordering::Relaxed);
        self.next_round += 1;
        self.dirty = false;
        let now = Instant::now();
        if let Ok(mut s) = self.shared.lock() {
            for r in s.rounds.iter_mut() {
                r.replaced_at.get_or_insert(now);
            }
            let grace = self.settings.grace;
            s.rounds.retain(|r| {
                r.replaced_at
                    .is_none_or(|at| now.duration_since(at) <= grace)
            });
            s.rounds.push(RoundView {
                id: round,
                payees: payees.clone(),
                replaced_at: None,
            });
        }
        tracing::info!(
            round,
            payees = payees.len(),
            height = tip.next_height,
            "pool: new round"
        );
        self.rounds.send_replace(Some(Arc::new(protocol::Round {
            round,
            height: tip.next_height,
            rules,
            payees,
        })));
        true
    }
}

/// Run a short blocking write (the ledger's fsync) without stalling other tasks on this
/// worker, where the runtime allows it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

struct SessionContext {
    settings: Arc<CoordinatorSettings>,
    shared: Arc<Mutex<Shared>>,
    commands: mpsc::Sender<Command>,
    rounds: watch::Receiver<Option<Arc<protocol::Round>>>,
    rpc: RpcClient,
}

struct LoggedIn {
    member: MemberId,
    script: ScriptBuf,
    difficulty: f64,
    /// The difficulty before the last change, and when it changed (shares in flight).
    previous: Option<(f64, Instant)>,
    vardiff: Vardiff,
}

struct ConnectedGuard {
    shared: Arc<Mutex<Shared>>,
    member: MemberId,
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.lock()
            && let Some(c) = s.counters.get_mut(&self.member)
        {
            c.connected = c.connected.saturating_sub(1);
        }
    }
}

/// How long a connection may take to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest standard payout output, in a coinbase: value, script length, 34-byte script.
const ONE_OUTPUT_BYTES: u64 = 8 + 1 + 34;
/// Sessions allowed beyond two per listed member (auditors, members reconnecting).
const SPARE_SESSIONS: usize = 256;

async fn session(
    stream: TcpStream,
    session_id: u64,
    ctx: &SessionContext,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let challenge: [u8; 32] = rand::random();
    write
        .write_all(
            protocol::notification(
                "hello",
                &protocol::Hello {
                    version: protocol::VERSION,
                    network: ctx.settings.network.to_core_arg().to_string(),
                    challenge: hex::encode(challenge),
                },
            )
            .as_bytes(),
        )
        .await?;
    let mut rounds = ctx.rounds.clone();
    let mut login: Option<LoggedIn> = None;
    // Counts the member as connected from its login until this session ends, however it ends.
    let mut _connected: Option<ConnectedGuard> = None;
    let mut buf = Vec::new();
    // A stranger may stay while it keeps asking (an auditor fetching a long ledger); one that
    // neither logs in nor asks anything for LOGIN_TIMEOUT is dropped.
    let mut last_request = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = rounds.changed(), if login.is_some() => {
                if changed.is_err() { return Ok(()) }
                let round = rounds.borrow_and_update().clone();
                if let Some(round) = round {
                    write.write_all(protocol::notification("round", &*round).as_bytes()).await?;
                }
                continue;
            }
            _ = tick.tick() => {
                if login.is_none() && last_request.elapsed() > LOGIN_TIMEOUT {
                    anyhow::bail!("no login or request within {LOGIN_TIMEOUT:?}");
                }
                if let Some(l) = login.as_mut()
                    && let Some(d) = l.vardiff.on_tick(l.difficulty, Instant::now())
                {
                    set_difficulty(l, d, ctx, &mut write).await?;
                }
                continue;
            }
            line = protocol::read_line(&mut reader, &mut buf, if login.is_some() {
                protocol::MAX_LINE
            } else {
                protocol::MAX_LINE_BEFORE_LOGIN
            }) => match line? {
                Some(line) => line,
                None => return Ok(()),
            },
        };
        if line.is_empty() {
            continue;
        }
        last_request = Instant::now();
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => anyhow::bail!("not a pool request: {e}"),
        };
        let out = match request.method.as_str() {
            "login" => match do_login(&request, &challenge, session_id, ctx).await {
                Ok(l) => {
                    let ok = protocol::LoginOk {
                        name: name_of(ctx, &l.member),
                        difficulty: l.difficulty,
                    };
                    let mut text = protocol::reply(request.id, &ok);
                    text.push_str(&protocol::notification(
                        "difficulty",
                        &protocol::Difficulty {
                            difficulty: l.difficulty,
                        },
                    ));
                    if let Some(round) = rounds.borrow_and_update().clone() {
                        text.push_str(&protocol::notification("round", &*round));
                    }
                    tracing::info!(member = %ok.name, "pool member logged in");
                    if let Ok(mut s) = ctx.shared.lock()
                        && let Some(c) = s.counters.get_mut(&l.member)
                    {
                        c.connected += 1;
                        c.difficulty = l.difficulty;
                    }
                    _connected = Some(ConnectedGuard {
                        shared: ctx.shared.clone(),
                        member: l.member,
                    });
                    login = Some(l);
                    text
                }
                Err(e) => {
                    let text = protocol::error(request.id, "login", format!("{e:#}"));
                    write.write_all(text.as_bytes()).await?;
                    anyhow::bail!("login refused: {e:#}");
                }
            },
            "share" => match login.as_mut() {
                None => protocol::error(request.id, "not_logged_in", "log in first"),
                Some(l) => {
                    let result = do_share(&request, l, ctx).await;
                    let text = match &result {
                        Ok(ok) => protocol::reply(request.id, ok),
                        Err(e) => protocol::error(request.id, &e.0, e.1.clone()),
                    };
                    if let Ok(mut s) = ctx.shared.lock()
                        && let Some(c) = s.counters.get_mut(&l.member)
                    {
                        match &result {
                            Ok(ok) => {
                                c.accepted += 1;
                                c.blocks += u64::from(ok.block);
                            }
                            Err((kind, _)) => *c.rejected.entry(kind.clone()).or_default() += 1,
                        }
                    }
                    if result.is_ok()
                        && let Some(d) = l.vardiff.on_share(l.difficulty, Instant::now())
                    {
                        write.write_all(text.as_bytes()).await?;
                        set_difficulty(l, d, ctx, &mut write).await?;
                        continue;
                    }
                    text
                }
            },
            "ledger" => {
                let query: protocol::LedgerQuery = serde_json::from_value(request.params.clone())
                    .unwrap_or(protocol::LedgerQuery {
                        from: 0,
                        max: protocol::LEDGER_PAGE,
                    });
                let (reply, answer) = oneshot::channel();
                let sent = ctx
                    .commands
                    .send(Command::Ledger {
                        from: query.from,
                        max: query.max,
                        reply,
                    })
                    .await;
                match (sent, answer.await) {
                    (Ok(()), Ok(Ok(page))) => protocol::reply(request.id, &page),
                    (_, Ok(Err(e))) => protocol::error(request.id, "ledger", format!("{e:#}")),
                    _ => protocol::error(request.id, "ledger", "the coordinator is stopping"),
                }
            }
            "status" => protocol::reply(request.id, &status(ctx)),
            other => protocol::error(request.id, "unknown_method", format!("no method {other:?}")),
        };
        write.write_all(out.as_bytes()).await?;
    }
}

fn name_of(ctx: &SessionContext, member: &MemberId) -> String {
    ctx.settings
        .members
        .iter()
        .find(|(_, id)| id == member)
        .map(|(n, _)| n.clone())
        .unwrap_or_default()
}

/// The coordinator's counters and round, for `status`.
fn status(ctx: &SessionContext) -> Value {
    let round = ctx.rounds.borrow().clone();
    let (members, tip) = match ctx.shared.lock() {
        Ok(s) => (
            s.counters
                .iter()
                .map(|(id, c)| {
                    (
                        id.to_string(),
                        serde_json::to_value(c).unwrap_or(Value::Null),
                    )
                })
                .collect::<serde_json::Map<_, _>>(),
            s.tips.first().map(|t| (t.hash.to_string(), t.next_height)),
        ),
        Err(_) => (serde_json::Map::new(), None),
    };
    json!({
        "round": round.as_deref(),
        "members": members,
        "tip": tip.as_ref().map(|t| &t.0),
        "next_height": tip.map(|t| t.1),
    })
}

async fn set_difficulty(
    login: &mut LoggedIn,
    difficulty: f64,
    ctx: &SessionContext,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    if difficulty == login.difficulty {
        return Ok(());
    }
    login.previous = Some((login.difficulty, Instant::now()));
    login.difficulty = difficulty;
    if let Ok(mut s) = ctx.shared.lock()
        && let Some(c) = s.counters.get_mut(&login.member)
    {
        c.difficulty = difficulty;
    }
    write
        .write_all(
            protocol::notification("difficulty", &protocol::Difficulty { difficulty }).as_bytes(),
        )
        .await
}

async fn do_login(
    request: &Request,
    challenge: &[u8; 32],
    session_id: u64,
    ctx: &SessionContext,
) -> anyhow::Result<LoggedIn> {
    let login: protocol::Login =
        serde_json::from_value(request.params.clone()).context("malformed login")?;
    let member: MemberId = login
        .member
        .parse()
        .context("member: not an x-only public key")?;
    let name = ctx
        .settings
        .members
        .iter()
        .find(|(_, id)| *id == member)
        .map(|(n, _)| n.clone())
        .with_context(|| {
            format!("{member} is not in this pool's member list (pool.coordinator.members)")
        })?;
    let script = ScriptBuf::from_hex(&login.payout).context("payout: not a script in hex")?;
    let signature: bitcoin::secp256k1::schnorr::Signature = login
        .signature
        .parse()
        .context("signature: not a BIP340 signature")?;
    if !verify_auth(challenge, &member, script.as_bytes(), &signature) {
        anyhow::bail!("the login signature does not verify for {name}");
    }
    let (reply, answer) = oneshot::channel();
    ctx.commands
        .send(Command::Login {
            member,
            name,
            script: script.clone(),
            reply,
        })
        .await
        .map_err(|_| anyhow::anyhow!("the coordinator is stopping"))?;
    answer
        .await
        .map_err(|_| anyhow::anyhow!("the coordinator is stopping"))??;
    if let Ok(mut s) = ctx.shared.lock() {
        // The pool's lists fit the smallest room any member has, but always room for one
        // payout (a P2TR or P2WSH output: 8 + 1 + 34 bytes): one member claiming none must not
        // empty every list, which would pay each block to its finder alone.
        s.budgets.insert(
            session_id,
            login.output_bytes.map(|b| b.max(ONE_OUTPUT_BYTES)),
        );
    }
    let difficulty = ctx.settings.vardiff.start;
    Ok(LoggedIn {
        member,
        script,
        difficulty,
        previous: None,
        vardiff: Vardiff::new(ctx.settings.vardiff, Instant::now()),
    })
}

async fn do_share(
    request: &Request,
    login: &LoggedIn,
    ctx: &SessionContext,
) -> Result<protocol::ShareOk, (String, String)> {
    let malformed = |e: String| (Reject::Malformed(e.clone()).kind().to_string(), e);
    let params: protocol::Share =
        serde_json::from_value(request.params.clone()).map_err(|e| malformed(e.to_string()))?;
    let header: [u8; 80] = super::ledger::hex_field(&params.header, "header").map_err(malformed)?;
    let coinbase =
        hex::decode(&params.coinbase).map_err(|e| malformed(format!("coinbase: {e}")))?;
    let branch = params
        .branch
        .iter()
        .map(|b| super::ledger::hex_field::<32>(b, "branch").map(TxMerkleNode::from_byte_array))
        .collect::<Result<Vec<_>, _>>()
        .map_err(malformed)?;
    let share = ShareBytes {
        round: params.round,
        header,
        coinbase,
        branch,
    };
    // The easiest target the member may meet now: the current difficulty's, or the one before
    // for shares sent before it heard of the change.
    let now = Instant::now();
    let mut difficulty = login.difficulty;
    if let Some((before, at)) = login.previous
        && now.duration_since(at) <= ctx.settings.grace
    {
        difficulty = difficulty.min(before);
    }
    let share_target = target_for_difficulty(difficulty).unwrap_or(Target::MAX);
    let mut checked = check(&share, login, ctx, share_target, now);
    if let Err(Reject::UnknownTip(_)) = checked {
        // The member's node may have the new block a moment before ours: ask ours now.
        let _ = refresh_tips(
            &ctx.rpc,
            ctx.settings.network,
            &ctx.shared,
            ctx.settings.grace,
        )
        .await;
        checked = check(&share, login, ctx, share_target, Instant::now());
    }
    let accepted = checked.map_err(|r| (r.kind().to_string(), r.to_string()))?;
    let block = if accepted.block {
        let block = params.block.clone().ok_or_else(|| {
            malformed("a share that meets the network target must carry its block".into())
        })?;
        if block.get(..160) != Some(params.header.as_str()) {
            return Err(malformed("the block's header is not the share's".into()));
        }
        Some((accepted.height, block))
    } else {
        None
    };
    let (reply, answer) = oneshot::channel();
    // The credit is the target the share was held to (the easier one in a change-over).
    ctx.commands
        .send(Command::Share {
            member: login.member,
            script: login.script.clone(),
            share: Box::new(share),
            target: share_target,
            hash: header_hash(&header),
            block,
            reply,
        })
        .await
        .map_err(|_| {
            (
                "stopping".to_string(),
                "the coordinator is stopping".to_string(),
            )
        })?;
    let seq = answer.await.map_err(|_| {
        (
            "stopping".to_string(),
            "the coordinator is stopping".to_string(),
        )
    })??;
    Ok(protocol::ShareOk {
        hash: accepted.hash.to_string(),
        block: accepted.block,
        seq,
    })
}

fn check(
    share: &ShareBytes,
    login: &LoggedIn,
    ctx: &SessionContext,
    share_target: Target,
    now: Instant,
) -> Result<super::validate::Accepted, Reject> {
    let (tips, rounds) = match ctx.shared.lock() {
        Ok(s) => (s.tips.clone(), s.rounds.clone()),
        Err(_) => (Vec::new(), Vec::new()),
    };
    validate(
        share,
        &ShareContext {
            tips: &tips,
            rounds: &rounds,
            grace: ctx.settings.grace,
            now,
            unix_now: crate::work::unix_now() as u32,
            member: login.member,
            member_script: &login.script,
            share_target,
        },
    )
}
