//! A pool member (`[pool.member]`): keeps a connection to the coordinator (directly, or through
//! SOCKS5 to an onion service), logs in with its key, and hands the template source the round's
//! payout list and the share checker the share target. Shares go up as they come; when the
//! coordinator stays away for `solo_after`, the member mines solo to its own address until it
//! is back.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bitcoin::hashes::Hash;
use bitcoin::{Network, ScriptBuf, Target, TxMerkleNode};
use serde_json::json;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::identity::{MemberKey, commitment};
use super::payout::Payee;
use super::protocol::{self, Message};
use crate::events::Event;
use crate::stratum::difficulty::target_for_difficulty;

/// `[pool.member]`, validated.
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// The coordinator's host (a `.onion` name through `socks5`).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// SOCKS5 proxy, when the coordinator is reached through Tor.
    pub socks5: Option<String>,
    /// Our chain (the coordinator's must be the same).
    pub network: Network,
    /// This member's key.
    pub key_file: PathBuf,
    /// Bytes of payout outputs our Stratum miners' coinbase buffers leave (none: no limit).
    pub output_bytes: Option<u64>,
    /// Mine solo after this long without the coordinator.
    pub solo_after: Duration,
}

/// What the template source builds coinbases for.
#[derive(Debug, Clone)]
pub enum PoolState {
    /// Not yet connected, and `solo_after` not over: no work.
    Waiting,
    /// Pay this round's list.
    Round(Arc<MemberRound>),
    /// The coordinator is away: pay ourselves.
    Solo,
}

/// A round as the member mines it.
#[derive(Debug)]
pub struct MemberRound {
    /// Its payout list.
    pub payees: Vec<Payee>,
    /// Our commitment (goes in the scriptSig).
    pub commitment: [u8; 20],
    /// What the work carries for its shares.
    pub work: Arc<PoolWork>,
}

/// Carried by [`crate::work::TemplateWork`] on pool work: where its shares go.
#[derive(Debug)]
pub struct PoolWork {
    /// The round the coinbase pays.
    pub round: u64,
    /// The share target now (vardiff at the coordinator).
    pub target: watch::Receiver<Target>,
    /// Shares to the coordinator.
    pub shares: mpsc::Sender<PoolShare>,
}

/// One share for the coordinator.
#[derive(Debug, Clone)]
pub struct PoolShare {
    /// The round its coinbase pays.
    pub round: u64,
    /// Header.
    pub header: [u8; 80],
    /// Coinbase (legacy serialisation).
    pub coinbase: Vec<u8>,
    /// Merkle branch.
    pub branch: Vec<TxMerkleNode>,
    /// The block, hex, when the share is one.
    pub block: Option<String>,
}

/// What the member reports (API, tests).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct MemberStatus {
    /// Our key.
    pub member: String,
    /// Logged in now.
    pub connected: bool,
    /// Our name at the coordinator.
    pub name: Option<String>,
    /// The round mined now.
    pub round: Option<u64>,
    /// Mining solo (the coordinator is away).
    pub solo: bool,
    /// Share difficulty.
    pub difficulty: f64,
    /// Shares accepted.
    pub accepted: u64,
    /// Of which blocks.
    pub blocks: u64,
    /// Shares refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Shares that could not be sent (no connection).
    pub unsent: u64,
    /// Logins so far.
    pub logins: u64,
    /// Round trip of the last accepted share, milliseconds.
    pub last_round_trip_ms: Option<f64>,
    /// Round trips of the last accepted shares (up to [`ROUND_TRIPS_KEPT`]), milliseconds.
    #[serde(skip)]
    #[schema(ignore)]
    pub round_trips_ms: std::collections::VecDeque<f64>,
}

/// Round trips kept for [`MemberStatus::round_trip_percentile`].
pub const ROUND_TRIPS_KEPT: usize = 1000;

impl MemberStatus {
    /// The `p`th percentile (0 to 100) of the kept share round trips, milliseconds.
    pub fn round_trip_percentile(&self, p: f64) -> Option<f64> {
        let mut sorted: Vec<f64> = self.round_trips_ms.iter().copied().collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted.get(rank.min(sorted.len() - 1)).copied()
    }
}

/// Queue of shares waiting for the connection.
pub const SHARE_QUEUE: usize = 4096;

/// The member client actor.
#[derive(Debug)]
pub struct MemberClient {
    /// Settings.
    pub settings: MemberSettings,
    /// Our key.
    pub key: MemberKey,
    /// Our payout script.
    pub payout: ScriptBuf,
    /// To the template source.
    pub state: watch::Sender<PoolState>,
    /// Status.
    pub status: Arc<Mutex<MemberStatus>>,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

/// Longest wait for a connection (Tor circuits to an onion service take seconds).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the coordinator may leave a login or a share unanswered (or a share unread)
/// before the member drops the connection. Replies take milliseconds, over Tor a second or so.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

impl MemberClient {
    /// Channels for a member: the state the template source watches, and the client.
    pub fn new(
        settings: MemberSettings,
        payout: ScriptBuf,
        events: broadcast::Sender<Event>,
        cancel: CancellationToken,
    ) -> anyhow::Result<(MemberClient, watch::Receiver<PoolState>)> {
        let key = MemberKey::load_or_create(&settings.key_file)?;
        let (state, state_rx) = watch::channel(PoolState::Waiting);
        let status = Arc::new(Mutex::new(MemberStatus {
            member: key.id().to_string(),
            ..MemberStatus::default()
        }));
        Ok((
            MemberClient {
                settings,
                key,
                payout,
                state,
                status,
                events,
                cancel,
            },
            state_rx,
        ))
    }

    /// Run until cancelled.
    pub async fn run(self) {
        tracing::info!(coordinator = %format!("{}:{}", self.settings.host, self.settings.port),
            member = %self.key.id(), "pool member starting");
        let (target_tx, target_rx) = watch::channel(Target::MAX);
        let (shares_tx, mut shares_rx) = mpsc::channel::<PoolShare>(SHARE_QUEUE);
        let mut away_since = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            match self.connect().await {
                Ok(stream) => {
                    backoff = Duration::from_millis(500);
                    let result = self
                        .session(stream, &target_tx, &target_rx, &shares_tx, &mut shares_rx)
                        .await;
                    self.update(|s| s.connected = false);
                    match result {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(reason = %format!("{e:#}"), "pool: lost the coordinator; reconnecting");
                            let _ = self.events.send(Event::PoolDown {
                                reason: format!("{e:#}"),
                            });
                        }
                    }
                    away_since = Instant::now();
                }
                Err(e) => {
                    tracing::warn!(reason = %format!("{e:#}"), "pool: cannot reach the coordinator")
                }
            }
            // Away: keep the last round until `solo_after`, then mine solo. Shares made
            // meanwhile cannot be sent.
            let wake = tokio::time::sleep(backoff);
            tokio::pin!(wake);
            loop {
                let solo_in = self
                    .settings
                    .solo_after
                    .saturating_sub(away_since.elapsed());
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = &mut wake => break,
                    _ = tokio::time::sleep(solo_in), if !matches!(*self.state.borrow(), PoolState::Solo) => {
                        tracing::warn!(after = ?self.settings.solo_after, "pool: coordinator away; mining solo to our own address until it is back");
                        self.state.send_replace(PoolState::Solo);
                        self.update(|s| { s.solo = true; s.round = None; });
                    }
                    Some(_) = shares_rx.recv() => self.update(|s| s.unsent += 1),
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    fn update(&self, f: impl FnOnce(&mut MemberStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// The status, shared.
    pub fn status(&self) -> Arc<Mutex<MemberStatus>> {
        self.status.clone()
    }

    async fn connect(&self) -> anyhow::Result<TcpStream> {
        let s = &self.settings;
        tokio::select! {
            _ = self.cancel.cancelled() => anyhow::bail!("stopping"),
            r = crate::node::socks::connect(&s.host, s.port, s.socks5.as_deref(), CONNECT_TIMEOUT) => {
                r.map_err(|e| anyhow::anyhow!(e))
            }
        }
    }

    /// One connection, until it fails (`Err`) or we stop (`Ok`).
    async fn session(
        &self,
        stream: TcpStream,
        target_tx: &watch::Sender<Target>,
        target_rx: &watch::Receiver<Target>,
        shares_tx: &mpsc::Sender<PoolShare>,
        shares_rx: &mut mpsc::Receiver<PoolShare>,
    ) -> anyhow::Result<()> {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut buf = Vec::new();
        let hello: Message = tokio::time::timeout(
            CONNECT_TIMEOUT,
            protocol::read_line(&mut reader, &mut buf, protocol::MAX_LINE),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no hello from the coordinator"))??
        .map(|l| serde_json::from_str(&l))
        .transpose()?
        .context("the coordinator closed the connection")?;
        let hello: protocol::Hello = serde_json::from_value(hello.params)
            .context("the coordinator's hello is malformed (is this a Hearth pool port?)")?;
        if hello.network != self.settings.network.to_core_arg() {
            anyhow::bail!(
                "the coordinator mines {}, this node is on {}",
                hello.network,
                self.settings.network.to_core_arg()
            );
        }
        let challenge: [u8; 32] = super::ledger::hex_field(&hello.challenge, "challenge")
            .map_err(|e| anyhow::anyhow!(e))?;
        let login = protocol::Login {
            member: self.key.id().to_string(),
            payout: self.payout.to_hex_string(),
            signature: self
                .key
                .sign_auth(&challenge, self.payout.as_bytes())
                .to_string(),
            output_bytes: self.settings.output_bytes,
        };
        write
            .write_all(
                protocol::line(&json!({"id": 1, "method": "login", "params": login})).as_bytes(),
            )
            .await?;
        let commitment = commitment(&self.key.id());
        let mut next_id = 2u64;
        let mut in_flight: HashMap<u64, Instant> = HashMap::new();
        let mut logged_in = false;
        let login_sent = Instant::now();
        // A coordinator that holds the connection but answers nothing is as good as gone: the
        // member leaves it (and mines solo after solo_after) rather than wait on it forever.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    if !logged_in && login_sent.elapsed() > REPLY_TIMEOUT {
                        anyhow::bail!("the coordinator did not answer the login in {REPLY_TIMEOUT:?}");
                    }
                    if in_flight.values().any(|sent| sent.elapsed() > REPLY_TIMEOUT) {
                        anyhow::bail!("the coordinator did not answer a share in {REPLY_TIMEOUT:?}");
                    }
                }
                line = protocol::read_line(&mut reader, &mut buf, protocol::MAX_LINE) => {
                    let Some(line) = line? else { anyhow::bail!("the coordinator closed the connection") };
                    let message: Message = serde_json::from_str(&line).context("malformed message from the coordinator")?;
                    match (message.id, message.method.as_deref()) {
                        (Some(1), _) => {
                            if let Some(e) = message.error {
                                anyhow::bail!("login refused: {}", e.message);
                            }
                            let ok: protocol::LoginOk = serde_json::from_value(message.result).context("login reply")?;
                            tracing::info!(name = %ok.name, "pool: logged in to the coordinator");
                            logged_in = true;
                            self.update(|s| { s.connected = true; s.name = Some(ok.name.clone()); s.logins += 1; });
                            let _ = self.events.send(Event::PoolUp { name: ok.name });
                        }
                        (Some(id), _) => {
                            let sent = in_flight.remove(&id);
                            match message.error {
                                None => {
                                    let ok: Option<protocol::ShareOk> = serde_json::from_value(message.result).ok();
                                    let block = ok.as_ref().is_some_and(|o| o.block);
                                    self.update(|s| {
                                        s.accepted += 1;
                                        s.blocks += u64::from(block);
                                        s.last_round_trip_ms = sent.map(|t| t.elapsed().as_secs_f64() * 1000.0);
                                        if let Some(ms) = s.last_round_trip_ms {
                                            if s.round_trips_ms.len() >= ROUND_TRIPS_KEPT {
                                                s.round_trips_ms.pop_front();
                                            }
                                            s.round_trips_ms.push_back(ms);
                                        }
                                    });
                                }
                                Some(e) => {
                                    tracing::warn!(reason = %e.kind, message = %e.message, "pool: share refused");
                                    self.update(|s| {
                                        let kind = refusal_label(&e.kind, &s.rejected);
                                        *s.rejected.entry(kind).or_default() += 1;
                                    });
                                }
                            }
                        }
                        (None, Some("difficulty")) => {
                            let d: protocol::Difficulty = serde_json::from_value(message.params).context("difficulty")?;
                            let target = target_for_difficulty(d.difficulty)
                                .with_context(|| format!("difficulty {} is not a difficulty", d.difficulty))?;
                            target_tx.send_replace(target);
                            self.update(|s| s.difficulty = d.difficulty);
                        }
                        (None, Some("round")) => {
                            let round: protocol::Round = serde_json::from_value(message.params).context("round")?;
                            tracing::debug!(round = round.round, payees = round.payees.len(), "pool: new round");
                            self.update(|s| { s.round = Some(round.round); s.solo = false; });
                            self.state.send_replace(PoolState::Round(Arc::new(MemberRound {
                                payees: round.payees,
                                commitment,
                                work: Arc::new(PoolWork {
                                    round: round.round,
                                    target: target_rx.clone(),
                                    shares: shares_tx.clone(),
                                }),
                            })));
                        }
                        _ => {}
                    }
                }
                Some(share) = shares_rx.recv(), if logged_in => {
                    let id = next_id;
                    next_id += 1;
                    let params = protocol::Share {
                        round: share.round,
                        header: hex::encode(share.header),
                        coinbase: hex::encode(&share.coinbase),
                        branch: share.branch.iter().map(|b| hex::encode(b.to_byte_array())).collect(),
                        block: share.block,
                    };
                    in_flight.insert(id, Instant::now());
                    if in_flight.len() > 10_000 {
                        in_flight.clear();
                    }
                    let line = protocol::line(&json!({"id": id, "method": "share", "params": params}));
                    tokio::time::timeout(REPLY_TIMEOUT, write.write_all(line.as_bytes()))
                        .await
                        .map_err(|_| anyhow::anyhow!("the coordinator took no share in {REPLY_TIMEOUT:?}"))??;
                }
            }
        }
    }
}

/// Distinct refusal kinds kept per member: the coordinator names them, and they become metric
/// labels, so a coordinator cannot grow them without end.
const REFUSAL_KINDS_KEPT: usize = 32;

/// The label a refusal is counted under: the coordinator's kind when it is a plain short name
/// (a-z and _) that is not one of our own results and there is room, else `other`.
fn refusal_label(kind: &str, seen: &BTreeMap<String, u64>) -> String {
    let plain = !kind.is_empty()
        && kind.len() <= 32
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && !matches!(kind, "accepted" | "unsent");
    if plain && (seen.contains_key(kind) || seen.len() < REFUSAL_KINDS_KEPT) {
        kind.to_string()
    } else {
        "other".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_labels_are_bounded_plain_names() {
        let mut seen = BTreeMap::new();
        assert_eq!(refusal_label("stale_round", &seen), "stale_round");
        let long = "x".repeat(33);
        for odd in ["", "accepted", "unsent", "Bad\"Label", long.as_str()] {
            assert_eq!(refusal_label(odd, &seen), "other", "{odd:?}");
        }
        for i in 0..REFUSAL_KINDS_KEPT {
            seen.insert(format!("k{}", "a".repeat(i)), 1);
        }
        assert_eq!(refusal_label("new_kind", &seen), "other");
        assert_eq!(refusal_label("ka", &seen), "ka");
    }
}
