//! A Stratum V1 client for an upstream pool: Hearth takes the pool's work for its devices and
//! its own Stratum miners, and sends their shares up. Reaches the pool directly or through a
//! SOCKS5 proxy (Tor: the proxy resolves `.onion` names). Reconnects with backoff and jitter,
//! and says whether the pool is fit to mine on (connected, authorized, sending work, taking
//! shares), which decides failover between work sources.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Target, TxMerkleNode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::difficulty::target_for_difficulty;
use super::lines::{LineReader, ReadEnd};
use super::protocol::{self, difficulty_value};
use crate::events::Event;
use crate::template::{BlockTemplate, CoinbaseTemplate, EXTRANONCE_SIZE};
use crate::work::{BIP320_MASK, TemplateWork, UpstreamShare, UpstreamWork};

/// Checked `[[pool]]` settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Name in logs, stats and `work.order`.
    pub name: String,
    /// Pool host name, address or `.onion` name.
    pub host: String,
    /// Pool port.
    pub port: u16,
    /// Worker name.
    pub user: String,
    /// Password.
    pub password: String,
    /// SOCKS5 proxy (`host:port`), e.g. Tor's `127.0.0.1:9050`.
    pub socks5: Option<String>,
    /// No `mining.notify` for this long while connected: unfit to mine on.
    pub silent_after: Duration,
    /// This many rejected shares in a row: unfit, reconnect.
    pub reject_limit: u32,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

/// Whether a pool is fit to mine on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolHealth {
    /// Connected, authorized, sending work and taking shares.
    Up,
    /// Not, and why.
    Down(String),
}

/// Longest line a pool may send (a notify with a large coinbase and branch fits easily).
const MAX_POOL_LINE: usize = 256 * 1024;
/// Longest a connection attempt (through Tor: circuit building included) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Time the pool has to answer subscribe and authorize.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Shares waiting to go up.
pub const UPSTREAM_QUEUE: usize = 1024;

/// A pool client: run it with [`PoolClient::run`].
#[derive(Debug)]
pub struct PoolClient {
    /// Settings.
    pub settings: PoolSettings,
    /// The pool's current work (`None` while it has none to give).
    pub work: watch::Sender<Option<Arc<TemplateWork>>>,
    /// Fitness.
    pub health: watch::Sender<PoolHealth>,
    /// Shares to submit (from the share checker, through each work's [`UpstreamWork`]).
    pub shares: mpsc::Receiver<UpstreamShare>,
    /// A sender for `shares`, given to each work published.
    pub shares_tx: mpsc::Sender<UpstreamShare>,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

/// Where a pool session is.
#[derive(Debug, Default)]
struct PoolState {
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    version_mask: u32,
    difficulty: f64,
    authorized: bool,
    last_notify: Option<Value>,
    last_prev: Option<BlockHash>,
    generation: u64,
    accepted: u64,
    rejected: u64,
    rejected_in_a_row: u32,
    next_id: u64,
}

impl PoolClient {
    /// Connect and mine until cancelled, reconnecting after every failure.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        let mut generation = 0;
        loop {
            let started = Instant::now();
            let reason = match self.session(&mut generation).await {
                Ok(()) => return,
                Err(reason) => reason,
            };
            self.work.send_replace(None);
            self.health.send_replace(PoolHealth::Down(reason.clone()));
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            // Jitter: half to one and a half times the backoff, so that many miners behind
            // one pool do not come back in step.
            let wait = backoff.mul_f64(0.5 + rand::random::<f64>());
            tracing::warn!(pool = %self.settings.name, reason = %reason, retry_in = ?wait, "pool connection lost");
            let _ = self.events.send(Event::DeviceError {
                device: format!("pool:{}", self.settings.name),
                error: reason,
            });
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(self.settings.max_backoff);
        }
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let s = &self.settings;
        crate::node::socks::connect(&s.host, s.port, s.socks5.as_deref(), CONNECT_TIMEOUT).await
    }

    /// One connection, until it fails (`Err` with the reason) or the daemon stops (`Ok`).
    async fn session(&mut self, generation: &mut u64) -> Result<(), String> {
        let stream = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(()),
            s = self.connect() => s?,
        };
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut lines = LineReader::new(read, MAX_POOL_LINE);
        tracing::info!(pool = %self.settings.name, host = %self.settings.host, port = self.settings.port,
            socks5 = self.settings.socks5.as_deref().unwrap_or("none"), "connected to pool");
        // Configure, subscribe and authorize back to back, as ESP-Miner does; every pool
        // answers them in order.
        let hello = [
            protocol_request(
                1,
                "mining.configure",
                json!([["version-rolling"], {"version-rolling.mask": format!("{BIP320_MASK:08x}"), "version-rolling.min-bit-count": 2}]),
            ),
            protocol_request(
                2,
                "mining.subscribe",
                json!([concat!("hearth/", env!("CARGO_PKG_VERSION"))]),
            ),
            protocol_request(
                3,
                "mining.authorize",
                json!([self.settings.user, self.settings.password]),
            ),
        ]
        .concat();
        write_all(&mut write, hello.as_bytes()).await?;
        let mut state = PoolState {
            generation: *generation,
            next_id: 100,
            ..PoolState::default()
        };
        let connected = tokio::time::Instant::now();
        let mut silence = tokio::time::interval(Duration::from_secs(1));
        silence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_notify_at = tokio::time::Instant::now();
        let result = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break Ok(()),
                line = lines.next_line() => {
                    let line = match line {
                        Ok(l) => l,
                        Err(ReadEnd::Closed) => break Err("the pool closed the connection".into()),
                        Err(ReadEnd::TooLong) => break Err(format!("the pool sent a line over {MAX_POOL_LINE} bytes")),
                        Err(ReadEnd::NotUtf8) => break Err("the pool sent a line that is not UTF-8".into()),
                        Err(ReadEnd::Io(e)) => break Err(format!("read error: {e}")),
                    };
                    match self.handle(&line, &mut state, &mut write).await {
                        Ok(notified) => if notified { last_notify_at = tokio::time::Instant::now(); },
                        Err(e) => break Err(e),
                    }
                }
                share = self.shares.recv() => {
                    let Some(share) = share else { break Ok(()) };
                    if let Err(e) = self.submit(&share, &mut state, &mut write).await {
                        break Err(e);
                    }
                }
                _ = silence.tick() => {
                    if !state.authorized && connected.elapsed() > HANDSHAKE_TIMEOUT {
                        break Err(format!("no authorization within {HANDSHAKE_TIMEOUT:?}"));
                    }
                    let silent = last_notify_at.elapsed() > self.settings.silent_after;
                    let up = *self.health.borrow() == PoolHealth::Up;
                    if silent && up {
                        let reason = format!("no work from the pool for {:?}", self.settings.silent_after);
                        tracing::warn!(pool = %self.settings.name, "{reason}");
                        self.health.send_replace(PoolHealth::Down(reason));
                    }
                }
            }
        };
        *generation = state.generation;
        result
    }

    /// Handle one line; `Ok(true)` when it was new work.
    async fn handle(
        &mut self,
        line: &str,
        state: &mut PoolState,
        write: &mut tokio::net::tcp::OwnedWriteHalf,
    ) -> Result<bool, String> {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            tracing::warn!(pool = %self.settings.name, line = %line.chars().take(200).collect::<String>(), "unreadable line from the pool; ignored");
            return Ok(false);
        };
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            let params = message["params"].as_array().cloned().unwrap_or_default();
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            match method {
                "mining.notify" => {
                    state.last_notify = Some(Value::Array(params));
                    self.publish(state)?;
                    return Ok(true);
                }
                "mining.set_difficulty" => {
                    if let Some(d) = params.first().and_then(difficulty_value) {
                        state.difficulty = d;
                        // Applies to the current job too: republish it with the new target.
                        if state.last_notify.is_some() {
                            self.publish(state)?;
                        }
                    }
                }
                "mining.set_extranonce" => {
                    if let (Some(en1), Some(size)) = (
                        params.first().and_then(Value::as_str),
                        params.get(1).and_then(Value::as_u64),
                    ) {
                        state.extranonce1 = hex::decode(en1)
                            .map_err(|_| "the pool sent a non-hex extranonce1".to_string())?;
                        state.extranonce2_size = size as usize;
                    }
                }
                "mining.set_version_mask" => {
                    if let Some(mask) = params
                        .first()
                        .and_then(Value::as_str)
                        .and_then(|m| u32::from_str_radix(m, 16).ok())
                    {
                        state.version_mask = mask & BIP320_MASK;
                    }
                }
                "client.reconnect" => return Err("the pool asked us to reconnect".into()),
                "mining.ping" => {
                    write_all(write, protocol::reply(&id, json!("pong")).as_bytes()).await?;
                }
                "client.get_version" => {
                    let version = concat!("hearth/", env!("CARGO_PKG_VERSION"));
                    write_all(write, protocol::reply(&id, json!(version)).as_bytes()).await?;
                }
                _ => {}
            }
            return Ok(false);
        }
        let id = message["id"].as_u64().unwrap_or(0);
        let ok = !message["result"].is_null()
            && message["result"] != json!(false)
            && message["error"].is_null();
        match id {
            1 => {
                if let Some(mask) = message["result"]["version-rolling.mask"]
                    .as_str()
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                    && message["result"]["version-rolling"] == json!(true)
                {
                    state.version_mask = mask & BIP320_MASK;
                }
            }
            2 => {
                let result = &message["result"];
                let en1 = result[1].as_str().and_then(|e| hex::decode(e).ok());
                let size = result[2].as_u64();
                match (en1, size) {
                    (Some(en1), Some(size)) if (4..=32).contains(&size) => {
                        state.extranonce1 = en1;
                        state.extranonce2_size = size as usize;
                    }
                    (_, Some(size)) => {
                        return Err(format!(
                            "the pool's extranonce2 size {size} is below the 4 bytes Hearth needs to split work between its devices"
                        ));
                    }
                    _ => return Err(format!("unreadable subscribe answer: {message}")),
                }
            }
            3 => {
                if !ok {
                    return Err(format!(
                        "the pool refused worker {:?}: {}",
                        self.settings.user, message["error"]
                    ));
                }
                state.authorized = true;
                tracing::info!(pool = %self.settings.name, user = %self.settings.user, "authorized by the pool");
                if state.last_notify.is_some() {
                    self.publish(state)?;
                }
            }
            _ if id >= 100 => {
                if ok {
                    state.accepted += 1;
                    state.rejected_in_a_row = 0;
                } else {
                    state.rejected += 1;
                    state.rejected_in_a_row += 1;
                    tracing::warn!(pool = %self.settings.name, error = %message["error"], "share rejected by the pool");
                    if state.rejected_in_a_row >= self.settings.reject_limit {
                        return Err(format!(
                            "the pool rejected {} shares in a row",
                            state.rejected_in_a_row
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// Publish the latest notify as work.
    fn publish(&mut self, state: &mut PoolState) -> Result<(), String> {
        let (Some(notify), true) = (&state.last_notify, state.authorized) else {
            return Ok(());
        };
        if state.extranonce1.is_empty() && state.extranonce2_size == 0 {
            return Ok(());
        }
        state.generation += 1;
        let work = pool_work(
            notify,
            &state.extranonce1,
            state.extranonce2_size,
            state.version_mask,
            state.difficulty,
            state.generation,
            state.last_prev,
            &self.settings.name,
            self.shares_tx.clone(),
        )?;
        state.last_prev = Some(work.prev_blockhash());
        self.work.send_replace(Some(Arc::new(work)));
        if *self.health.borrow() != PoolHealth::Up {
            tracing::info!(pool = %self.settings.name, difficulty = state.difficulty, "pool work");
            self.health.send_replace(PoolHealth::Up);
        }
        Ok(())
    }

    async fn submit(
        &mut self,
        share: &UpstreamShare,
        state: &mut PoolState,
        write: &mut tokio::net::tcp::OwnedWriteHalf,
    ) -> Result<(), String> {
        if share.block {
            tracing::info!(pool = %self.settings.name, job = %share.job_id,
                "a hash on the pool's work meets the network target: a block for the pool, which submits it to its node");
        }
        let mut params = vec![
            json!(self.settings.user),
            json!(share.job_id),
            json!(hex::encode(&share.extranonce2)),
            json!(format!("{:08x}", share.ntime)),
            json!(format!("{:08x}", share.nonce)),
        ];
        if let Some(bits) = share.version_bits {
            params.push(json!(format!("{bits:08x}")));
        }
        state.next_id += 1;
        let line = protocol_request(state.next_id, "mining.submit", Value::Array(params));
        write_all(write, line.as_bytes()).await
    }
}

fn protocol_request(id: u64, method: &str, params: Value) -> String {
    let mut line = json!({"id": id, "method": method, "params": params}).to_string();
    line.push('\n');
    line
}

async fn write_all(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(30), write.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write error: {e}")),
        Err(_) => Err("the pool took nothing for 30 s".into()),
    }
}

/// The BIP34 height at the start of a coinbase's scriptSig (coinb1 holds it), if readable.
fn coinbase_height(coinb1: &[u8]) -> Option<u32> {
    // version (4), input count (1), prevout (36), scriptSig length (1 for short ones).
    let script = coinb1.get(42..)?;
    let push = *script.first()?;
    match push {
        0x51..=0x60 => Some(u32::from(push - 0x50)),
        1..=4 => {
            let bytes = script.get(1..1 + usize::from(push))?;
            let mut le = [0u8; 4];
            le[..bytes.len()].copy_from_slice(bytes);
            Some(u32::from_le_bytes(le))
        }
        _ => None,
    }
}

/// Work from a pool's `mining.notify` params. Pure.
#[allow(clippy::too_many_arguments)]
pub fn pool_work(
    notify: &Value,
    extranonce1: &[u8],
    extranonce2_size: usize,
    version_mask: u32,
    difficulty: f64,
    generation: u64,
    last_prev: Option<BlockHash>,
    pool: &str,
    shares: mpsc::Sender<UpstreamShare>,
) -> Result<TemplateWork, String> {
    let bad = |what: &str| format!("the pool's mining.notify has a bad {what}");
    let p = notify.as_array().ok_or_else(|| bad("params list"))?;
    if p.len() < 9 {
        return Err(bad("params list (fewer than 9)"));
    }
    let text = |i: usize, what: &str| p[i].as_str().ok_or_else(|| bad(what));
    let hex_bytes = |i: usize, what: &str| hex::decode(text(i, what)?).map_err(|_| bad(what));
    let word =
        |i: usize, what: &str| u32::from_str_radix(text(i, what)?, 16).map_err(|_| bad(what));
    let job_id = text(0, "job id")?.to_string();
    let stratum_prev: [u8; 32] = hex_bytes(1, "prevhash")?
        .try_into()
        .map_err(|_| bad("prevhash"))?;
    let prev = BlockHash::from_byte_array(super::job::swap_words(stratum_prev));
    let coinb1 = hex_bytes(2, "coinb1")?;
    let coinb2 = hex_bytes(3, "coinb2")?;
    let branch = p[4]
        .as_array()
        .ok_or_else(|| bad("merkle branch"))?
        .iter()
        .map(|b| {
            b.as_str()
                .and_then(|b| hex::decode(b).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(TxMerkleNode::from_byte_array)
                .ok_or_else(|| bad("merkle branch"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let version = word(5, "version")?;
    let bits = CompactTarget::from_consensus(word(6, "nbits")?);
    let ntime = word(7, "ntime")?;
    let clean = p[8].as_bool().unwrap_or(false);
    let share_target = target_for_difficulty(difficulty.max(f64::MIN_POSITIVE))
        .ok_or_else(|| "the pool's difficulty is not usable".to_string())?;
    // Ours of the pool's extranonce2: at most 8 bytes, at its end; zeros before.
    let extranonce_len = extranonce2_size.min(EXTRANONCE_SIZE);
    let padding = extranonce2_size - extranonce_len;
    let mut prefix = coinb1.clone();
    prefix.extend_from_slice(extranonce1);
    prefix.extend(std::iter::repeat_n(0u8, padding));
    let template = BlockTemplate {
        height: coinbase_height(&coinb1).unwrap_or(0),
        version: version as i32,
        prev_blockhash: prev,
        bits,
        target: Target::from_compact(bits),
        curtime: ntime,
        mintime: ntime,
        coinbase_value: bitcoin::Amount::ZERO,
        transactions: Vec::new(),
        default_witness_commitment: None,
        weight_limit: 4_000_000,
        sigop_limit: 80_000,
        longpoll_id: None,
        rules: Vec::new(),
        vb_required: 0,
        // Bits the pool did not grant are not ours to roll.
        vb_available: BIP320_MASK & !version_mask,
    };
    Ok(TemplateWork {
        generation,
        template,
        coinbase: CoinbaseTemplate {
            prefix,
            suffix: coinb2,
            has_witness_commitment: false,
            weight: 0,
        },
        branch,
        received_at: Instant::now(),
        new_tip: clean || last_prev.is_some_and(|p| p != prev),
        // Pools take ntime from theirs up to well past it (ckpool: 7000 s); stay within 10 min.
        max_ntime_ahead: 600,
        extranonce_len,
        upstream: Some(Arc::new(UpstreamWork {
            pool: pool.to_string(),
            job_id,
            extranonce2_padding: padding,
            share_target,
            difficulty,
            version_mask,
            shares,
        })),
        pool: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitaxe_vectors_notify_becomes_the_same_work() {
        // docs/bm13xx-vectors.md §5.3: a public pool's notify; with the miner's extranonce2
        // the job's merkle root is the one the chip hashed.
        use crate::template::tests::bitaxe;
        let notify = json!([
            "875b4b7",
            "6b6455fd6db962c101f2d4fc0d67f4a3bc96391d000152960000000000000000",
            bitaxe::COINB1,
            bitaxe::COINB2,
            bitaxe::BRANCH,
            "20000000",
            "17023a04",
            "685468d7",
            false
        ]);
        let (tx, _rx) = mpsc::channel(1);
        let work = pool_work(
            &notify,
            &[0x41, 0x28, 0x06, 0x4f],
            4,
            0x1fff_e000,
            8192.0,
            1,
            None,
            "test",
            tx,
        )
        .unwrap();
        assert_eq!(work.extranonce_len, 4);
        assert_eq!(work.template.height, 901_936);
        assert_eq!(
            work.prev_blockhash().to_string(),
            "000000000000000000015296bc96391d0d67f4a301f2d4fc6db962c16b6455fd"
        );
        assert_eq!(work.rollable_version_bits(), 0x1fff_e000);
        let root = crate::template::merkle_root(work.coinbase.txid(&[0x17, 0, 0, 0]), &work.branch);
        assert_eq!(
            hex::encode(root.to_byte_array()),
            "06ddf5f08c36414b95ea54db71a0c28761a98bcf6355919e044f88725519a7cb"
        );
        // A job cut from it carries the share back with the pool's job id and extranonce2.
        let job = crate::work::Job {
            id: 1,
            work: Arc::new(work),
            extranonce: [0x17, 0, 0, 0, 0, 0, 0, 0],
            merkle_root: root,
            version: 0x2000_0000,
            version_mask: 0x1fff_e000,
            ntime: 0x6854_68d7,
            created: Instant::now(),
        };
        assert_eq!(
            job.header(0x20b4_4000, 0x7552_034c)
                .block_hash()
                .to_string(),
            "0000000000023704cface997bcf7388694ea43dae96c51d80658687a7d8827fe"
        );
        let share = job.upstream_share(0x20b4_4000, 0x7552_034c, false).unwrap();
        assert_eq!(share.job_id, "875b4b7");
        assert_eq!(share.extranonce2, [0x17, 0, 0, 0]);
        assert_eq!(share.version_bits, Some(0x00b4_4000));
    }

    #[test]
    fn bad_notifies_are_refused_with_the_field() {
        let (tx, _rx) = mpsc::channel(1);
        let e = pool_work(
            &json!(["1", "zz"]),
            &[1],
            4,
            0,
            1.0,
            1,
            None,
            "p",
            tx.clone(),
        )
        .unwrap_err();
        assert!(e.contains("fewer than 9"), "{e}");
        let e = pool_work(
            &json!([
                "1",
                "zz",
                "",
                "",
                [],
                "20000000",
                "1d00ffff",
                "00000000",
                true
            ]),
            &[1],
            4,
            0,
            1.0,
            1,
            None,
            "p",
            tx,
        )
        .unwrap_err();
        assert!(e.contains("prevhash"), "{e}");
    }
}
