//! `hearth.toml`: one typed configuration, validated once at start-up.
//!
//! Every mistake is reported with the key that holds it and what to write instead; nothing here
//! is discovered later, at block time.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use bitcoin::{Address, Network, ScriptBuf};
use bm13xx::ChipModel;
use bm13xx::model::ChainBaud;
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Bitcoin Core node.
    pub node: NodeConfig,
    /// Where the reward goes.
    pub payout: PayoutConfig,
    /// The block journal.
    #[serde(default)]
    pub journal: JournalConfig,
    /// Mining devices.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// The Stratum V1 server for miners on the network (none without the section).
    pub stratum: Option<StratumConfig>,
    /// `[[pool]]`: upstream pools (Stratum V1), as work sources besides the node; or
    /// `[pool.coordinator]` / `[pool.member]`: a Hearth pool over Tor (then upstream pools,
    /// if any, are `[[pool.upstream]]`).
    #[serde(default)]
    pub pool: PoolSection,
    /// The order of work sources and failover timing.
    #[serde(default)]
    pub work: WorkConfig,
    /// A SOCKS5 proxy (Tor) for pools and, on request, the node.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// `[api]`: the HTTP API, dashboard and metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[notify]`: where to tell the operator about blocks and trouble.
    #[serde(default)]
    pub notify: NotifyConfig,
}

/// The `pool` key. TOML cannot make one key both an array of tables (`[[pool]]`, the upstream
/// Stratum pools, which came first) and a table (`[pool.coordinator]`), so both spellings are
/// read: `[[pool]]` alone, or the table form with `[[pool.upstream]]` beside the Hearth pool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolSection {
    /// Upstream Stratum V1 pools.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<PoolConfig>,
    /// `[pool.coordinator]`: this daemon runs a Hearth pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<CoordinatorConfig>,
    /// `[pool.member]`: this daemon mines in a Hearth pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolTable {
    #[serde(default)]
    upstream: Vec<PoolConfig>,
    coordinator: Option<CoordinatorConfig>,
    member: Option<MemberConfig>,
}

impl<'de> Deserialize<'de> for PoolSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = toml::Value::deserialize(d)?;
        match value {
            toml::Value::Array(_) => value
                .try_into::<Vec<PoolConfig>>()
                .map(|upstream| PoolSection {
                    upstream,
                    ..PoolSection::default()
                })
                .map_err(|e| D::Error::custom(format!("[[pool]]: {}", e.message()))),
            toml::Value::Table(_) => value
                .try_into::<PoolTable>()
                .map(|t| PoolSection {
                    upstream: t.upstream,
                    coordinator: t.coordinator,
                    member: t.member,
                })
                .map_err(|e| D::Error::custom(format!("[pool]: {}", e.message()))),
            _ => Err(D::Error::custom(
                "pool: write [[pool]] sections (upstream Stratum pools), or [pool.coordinator] / [pool.member] (a Hearth pool)",
            )),
        }
    }
}

/// `[pool.coordinator]`: run a Hearth pool whose members build their own blocks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// `host:port` members connect to (publish it as an onion service: docs/pool.md).
    pub listen: String,
    /// The share ledger (default `<journal.dir>/pool-ledger.jsonl`).
    pub ledger: Option<PathBuf>,
    /// Who may mine in the pool: `{ name = "alice", key = "<64 hex: the member's public key>" }`.
    #[serde(default)]
    pub members: Vec<PoolMemberEntry>,
    /// A member's first share difficulty.
    #[serde(default = "defaults::pool_start_difficulty")]
    pub start_difficulty: f64,
    /// Lowest share difficulty vardiff may set (default: the start difficulty).
    pub min_difficulty: Option<f64>,
    /// Highest share difficulty vardiff may set.
    pub max_difficulty: Option<f64>,
    /// Shares per minute vardiff aims for, per member.
    #[serde(default = "defaults::pool_shares_per_minute")]
    pub shares_per_minute: f64,
    /// The PPLNS window, in blocks' worth of work at the network's difficulty.
    #[serde(default = "defaults::window_blocks")]
    pub window_blocks: u32,
    /// Seconds between payout lists while shares come in.
    #[serde(default = "defaults::round_secs")]
    pub round_secs: f64,
    /// Seconds shares on a replaced tip, round or difficulty still count.
    #[serde(default = "defaults::pool_grace_secs")]
    pub grace_secs: f64,
    /// Most payees in one coinbase.
    #[serde(default = "defaults::max_payees")]
    pub max_payees: u32,
    /// Bytes of payout outputs when no member's miners need less (members with Stratum miners
    /// report what their coinbase buffers leave).
    #[serde(default = "defaults::pool_output_bytes")]
    pub output_bytes: u64,
}

/// One member in `[pool.coordinator] members`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolMemberEntry {
    /// Its name (logs, status).
    pub name: String,
    /// Its public key (`hearth pool key` on the member prints it).
    pub key: String,
}

/// `[pool.member]`: mine in a Hearth pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// The coordinator: `host:port`, or `<name>.onion:port` through `socks5`.
    pub coordinator: String,
    /// This member's secret key (made on first start; default `<journal.dir>/pool-member.key`).
    pub key_file: Option<PathBuf>,
    /// SOCKS5 proxy to reach the coordinator (default `proxy.socks5`; needed for .onion).
    pub socks5: Option<String>,
    /// Seconds without the coordinator after which this member mines solo, to its own address.
    #[serde(default = "defaults::solo_after_secs")]
    pub solo_after_secs: f64,
}

/// `[[pool]]`: an upstream Stratum V1 pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Name in logs and in `work.order` (default `pool0`, `pool1`, ...).
    pub name: Option<String>,
    /// `stratum+tcp://host:port` or `host:port`; the host may be a `.onion` name (with a
    /// SOCKS5 proxy).
    pub url: String,
    /// Worker name (often `<address>.<worker>`).
    pub user: String,
    /// Password.
    #[serde(default = "defaults::pool_password")]
    pub password: String,
    /// SOCKS5 proxy for this pool (default: `proxy.socks5`).
    pub socks5: Option<String>,
    /// Seconds without new work after which the pool counts as silent (unfit).
    #[serde(default = "defaults::pool_silent_secs")]
    pub silent_secs: f64,
    /// Rejected shares in a row after which the pool counts as unfit (and is reconnected).
    #[serde(default = "defaults::pool_reject_limit")]
    pub reject_limit: u32,
}

/// `[work]`: which source to mine on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkConfig {
    /// Sources in order of preference: `node` and pool names (default: the node, then the pools
    /// in file order).
    pub order: Option<Vec<String>>,
    /// Seconds the node may be without work (after `node.node_loss_grace_secs`) before the next
    /// source takes over.
    #[serde(default = "defaults::failover_secs")]
    pub failover_secs: f64,
    /// Seconds a source earlier in the order must be fit again before mining returns to it.
    #[serde(default = "defaults::switch_back_secs")]
    pub switch_back_secs: f64,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig {
            order: None,
            failover_secs: defaults::failover_secs(),
            switch_back_secs: defaults::switch_back_secs(),
        }
    }
}

/// `[proxy]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// SOCKS5 proxy `host:port`, e.g. Tor's `127.0.0.1:9050`. Names (`.onion` too) are
    /// resolved by the proxy.
    pub socks5: Option<String>,
    /// Reach the node's RPC through the proxy as well (a remote node, an onion node).
    #[serde(default)]
    pub node: bool,
}

/// `[stratum]`: Bitaxes, NerdMiners, cgminer devices and Antminers mine through Hearth.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StratumConfig {
    /// `host:port` to listen on, e.g. `0.0.0.0:3333`.
    pub listen: String,
    /// Difficulty a new miner starts at; may be fractional (regtest needs about 0.0001).
    #[serde(default = "defaults::start_difficulty")]
    pub start_difficulty: f64,
    /// Lowest difficulty vardiff or a miner's suggestion may set (default: the smaller of the
    /// start difficulty and 0.0001).
    pub min_difficulty: Option<f64>,
    /// Highest difficulty vardiff or a miner's suggestion may set.
    pub max_difficulty: Option<f64>,
    /// Shares per minute vardiff aims for, per miner.
    #[serde(default = "defaults::shares_per_minute")]
    pub shares_per_minute: f64,
    /// Whether difficulty follows each miner's share rate.
    #[serde(default = "defaults::yes")]
    pub vardiff: bool,
    /// Connections held at once, in total.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections held at once from one IP address.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Seconds a new connection has to subscribe and authorize.
    #[serde(default = "defaults::handshake_timeout_secs")]
    pub handshake_timeout_secs: f64,
    /// Seconds of silence after which a miner is dropped.
    #[serde(default = "defaults::idle_timeout_secs")]
    pub idle_timeout_secs: f64,
    /// Longest coinbase miners may be sent. 255 fits NerdMiner's buffer; ESP-Miner takes 384.
    #[serde(default = "defaults::max_coinbase_bytes")]
    pub max_coinbase_bytes: usize,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// RPC URL; default `http://127.0.0.1:<network default port>`.
    pub url: Option<String>,
    /// Network the node must be on: `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// Bitcoin Core data dir: the cookie is read from `<datadir>/<network dir>/.cookie`.
    pub datadir: Option<PathBuf>,
    /// Explicit cookie file.
    pub cookie: Option<PathBuf>,
    /// `rpcuser` (with `password`), instead of the cookie.
    pub user: Option<String>,
    /// `rpcpassword`.
    pub password: Option<String>,
    /// Optional ZMQ `hashblock` endpoint (`zmqpubhashblock` on the node), e.g. `tcp://127.0.0.1:28332`.
    pub zmq_hashblock: Option<String>,
    /// Seconds between `getbestblockhash` polls (backstop for longpoll and ZMQ).
    #[serde(default = "defaults::poll_secs")]
    pub poll_interval_secs: f64,
    /// Seconds between template refreshes for fees (same tip).
    #[serde(default = "defaults::fee_refresh_secs")]
    pub fee_refresh_secs: f64,
    /// Per-call RPC timeout, seconds.
    #[serde(default = "defaults::rpc_timeout_secs")]
    pub rpc_timeout_secs: f64,
    /// How long mining continues on the last template after the node stops answering.
    #[serde(default = "defaults::node_loss_grace_secs")]
    pub node_loss_grace_secs: f64,
    /// How long start-up waits for an unreachable or warming-up node before giving up.
    #[serde(default = "defaults::startup_timeout_secs")]
    pub startup_timeout_secs: f64,
}

/// `[payout]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutConfig {
    /// Address paid the whole block reward (P2PKH, P2SH, P2WPKH, P2WSH or P2TR).
    pub address: String,
    /// Text put in the coinbase scriptSig (at most 60 bytes).
    #[serde(default = "defaults::tag")]
    pub tag: String,
}

/// `[api]`: the HTTP API, the dashboard and `/metrics`, served by the daemon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `host:port`, or `"off"`. A non-loopback address is served, with a warning: anyone who
    /// can reach it sees the miner's state (control needs the token).
    #[serde(default = "defaults::api_listen")]
    pub listen: String,
    /// File holding the bearer token for the control endpoints; generated on first start when
    /// absent (default: `api-token` in the journal directory).
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: defaults::api_listen(),
            token_file: None,
        }
    }
}

/// `[notify]`: JSON POSTs to a webhook on a found block (once the node has it on its active
/// chain), a board fault, the node going down and a device lost.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://` URL (this build has no TLS).
    pub webhook_url: Option<String>,
    /// A device that is back within this many seconds is not announced as lost (default 60).
    pub device_lost_grace_secs: Option<f64>,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Directory where every block candidate is written before it is submitted.
    #[serde(default = "defaults::journal_dir")]
    pub dir: PathBuf,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            dir: defaults::journal_dir(),
        }
    }
}

/// `[[device]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DeviceConfig {
    /// An emulated BM13xx chain driven through the real driver.
    Sim {
        /// Name in logs and stats.
        name: Option<String>,
        /// Chip model.
        #[serde(default = "defaults::model")]
        model: String,
        /// Chips on the chain.
        #[serde(default = "defaults::sim_chips")]
        chips: u16,
        /// Leading zero bits the emulated chips require before the ticket mask (32 = silicon).
        #[serde(default = "defaults::floor_bits")]
        floor_bits: u32,
        /// sha256d per second per chip; 0 = as fast as the CPU allows.
        #[serde(default)]
        hashrate: f64,
        /// Delay before each reply from the chips, milliseconds.
        #[serde(default)]
        latency_ms: u64,
    },
    /// A BM13xx chain on a serial port (USB-UART adapter), driven by the host.
    Serial {
        /// Name in logs and stats.
        name: Option<String>,
        /// Serial device, e.g. `/dev/ttyUSB0`.
        path: PathBuf,
        /// Chip model.
        model: String,
        /// Chips on the chain.
        chips: u16,
        /// Hash clock, MHz (default: the model's ESP-Miner default).
        frequency_mhz: Option<f64>,
        /// Chip difficulty (power of two; default 256).
        #[serde(default = "defaults::ticket_difficulty")]
        ticket_difficulty: u32,
        /// Mining baud: 1000000 (chips at 1,041,667) or 3125000; 115200 stays at power-on speed.
        #[serde(default = "defaults::serial_baud")]
        baud: ChainBaud,
        /// Host baud when the adapter cannot hit the chips' exact rate (ESP-Miner runs its
        /// UART at 1,000,000 against the chips' 1,041,667).
        host_baud: Option<u32>,
    },
    /// A Hearth board (RP2040 firmware) on USB, speaking the link protocol.
    Link {
        /// Name in logs and stats.
        name: Option<String>,
        /// Serial device (`/dev/ttyACM0`); default: find the board by its USB VID/PID.
        port: Option<PathBuf>,
        /// Only the board with this USB serial number (when several are plugged in).
        serial_number: Option<String>,
        /// `host:port` of an emulated board's USB port (firmware/emu `serve.mjs`), instead of a
        /// serial device.
        tcp: Option<String>,
        /// Emulated chains only: the chips report from this many zero bits instead of 32.
        share_floor_bits: Option<u8>,
    },
    /// SHA-256 on this computer's CPU (SHA-NI when present): useful on regtest.
    Cpu {
        /// Name in logs and stats.
        name: Option<String>,
        /// Hashing threads.
        #[serde(default = "defaults::threads")]
        threads: usize,
        /// Shares reported have at least this many leading zero bits.
        #[serde(default = "defaults::cpu_share_bits")]
        share_bits: u32,
    },
}

mod defaults {
    use std::path::PathBuf;

    pub fn api_listen() -> String {
        "127.0.0.1:8080".to_string()
    }

    use bm13xx::model::ChainBaud;
    pub fn poll_secs() -> f64 {
        2.0
    }
    pub fn fee_refresh_secs() -> f64 {
        30.0
    }
    pub fn rpc_timeout_secs() -> f64 {
        30.0
    }
    pub fn node_loss_grace_secs() -> f64 {
        60.0
    }
    pub fn startup_timeout_secs() -> f64 {
        30.0
    }
    pub fn tag() -> String {
        "/hearth/".into()
    }
    pub fn journal_dir() -> PathBuf {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".local/share/hearth/journal"))
            .unwrap_or_else(|| PathBuf::from("hearth-journal"))
    }
    pub fn model() -> String {
        "BM1370".into()
    }
    pub fn sim_chips() -> u16 {
        4
    }
    pub fn floor_bits() -> u32 {
        16
    }
    pub fn ticket_difficulty() -> u32 {
        256
    }
    pub fn serial_baud() -> ChainBaud {
        ChainBaud::Fast1M
    }
    pub fn threads() -> usize {
        1
    }
    pub fn cpu_share_bits() -> u32 {
        16
    }
    pub fn start_difficulty() -> f64 {
        1024.0
    }
    pub fn shares_per_minute() -> f64 {
        10.0
    }
    pub fn yes() -> bool {
        true
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn max_connections_per_ip() -> usize {
        64
    }
    pub fn handshake_timeout_secs() -> f64 {
        15.0
    }
    pub fn idle_timeout_secs() -> f64 {
        600.0
    }
    pub fn max_coinbase_bytes() -> usize {
        255
    }
    pub fn pool_start_difficulty() -> f64 {
        1.0
    }
    pub fn pool_shares_per_minute() -> f64 {
        12.0
    }
    pub fn window_blocks() -> u32 {
        4
    }
    pub fn round_secs() -> f64 {
        30.0
    }
    pub fn pool_grace_secs() -> f64 {
        30.0
    }
    pub fn max_payees() -> u32 {
        100
    }
    pub fn pool_output_bytes() -> u64 {
        4300
    }
    pub fn solo_after_secs() -> f64 {
        60.0
    }
    pub fn pool_password() -> String {
        "x".into()
    }
    pub fn pool_silent_secs() -> f64 {
        120.0
    }
    pub fn pool_reject_limit() -> u32 {
        20
    }
    pub fn failover_secs() -> f64 {
        10.0
    }
    pub fn switch_back_secs() -> f64 {
        30.0
    }
}

/// Longest tag accepted: 100-byte scriptSig minus height (≤ 5), extranonce (9) and push bytes.
pub const MAX_TAG_LEN: usize = 60;

/// A parsed network name.
pub fn parse_network(name: &str) -> anyhow::Result<Network> {
    Ok(match name {
        "main" | "mainnet" | "bitcoin" => Network::Bitcoin,
        "test" | "testnet" | "testnet3" => Network::Testnet,
        "testnet4" => Network::Testnet4,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        other => bail!("node.network = {other:?}: use main, test, testnet4, signet or regtest"),
    })
}

/// The name Bitcoin Core's `getblockchaininfo` reports for a network.
pub fn core_chain_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}

fn default_rpc_port(network: Network) -> u16 {
    match network {
        Network::Bitcoin => 8332,
        Network::Testnet => 18332,
        Network::Testnet4 => 48332,
        Network::Signet => 38332,
        _ => 18443,
    }
}

fn network_subdir(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "",
        Network::Testnet => "testnet3",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}

/// Parse and check a payout address for `network`: only the five standard types are accepted;
/// anything else is an error here, never a guessed script at block time.
pub fn payout_script(address: &str, network: Network) -> anyhow::Result<(Address, ScriptBuf)> {
    let unchecked = Address::from_str(address.trim())
        .with_context(|| format!("payout.address {address:?} is not a Bitcoin address"))?;
    let address = unchecked.require_network(network).map_err(|_| {
        anyhow::anyhow!("payout.address {address:?} is not an address for {network}: use one from the node's network")
    })?;
    match address.address_type() {
        Some(
            bitcoin::AddressType::P2pkh
            | bitcoin::AddressType::P2sh
            | bitcoin::AddressType::P2wpkh
            | bitcoin::AddressType::P2wsh
            | bitcoin::AddressType::P2tr,
        ) => {}
        other => bail!(
            "payout.address {address} has type {other:?}; use P2PKH, P2SH, P2WPKH, P2WSH or P2TR"
        ),
    }
    let script = address.script_pubkey();
    Ok((address, script))
}

/// Everything derived from the file, checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The file as written.
    pub config: Config,
    /// Network.
    pub network: Network,
    /// RPC URL.
    pub rpc_url: String,
    /// Auth.
    pub auth: crate::node::Auth,
    /// Payout address.
    pub address: Address,
    /// Payout script.
    pub payout: ScriptBuf,
    /// Durations.
    pub poll_interval: Duration,
    /// Fee refresh period.
    pub fee_refresh: Duration,
    /// RPC timeout.
    pub rpc_timeout: Duration,
    /// Grace on node loss.
    pub node_loss_grace: Duration,
    /// Start-up wait for the node.
    pub startup_timeout: Duration,
    /// The Stratum server's settings, when `[stratum]` is there.
    pub stratum: Option<crate::stratum::StratumSettings>,
    /// Upstream pools, in file order.
    pub pools: Vec<crate::stratum::client::PoolSettings>,
    /// Work sources in order of preference: `None` is the node, `Some(i)` pool `i`.
    pub sources: Vec<Option<usize>>,
    /// Failover timing.
    pub source_timing: crate::sources::SourceTiming,
    /// SOCKS5 proxy for the node's RPC.
    pub node_proxy: Option<String>,
    /// Where the API listens; `None` when `[api] listen = "off"`.
    pub api_listen: Option<std::net::SocketAddr>,
    /// The API token's file.
    pub api_token_file: PathBuf,
    /// The webhook, when configured.
    pub webhook_url: Option<String>,
    /// `[notify] device_lost_grace_secs`.
    pub device_lost_grace: Duration,
    /// `[pool.coordinator]`, when this daemon runs a Hearth pool.
    pub pool_coordinator: Option<crate::pool::coordinator::CoordinatorSettings>,
    /// `[pool.member]`, when this daemon mines in one.
    pub pool_member: Option<crate::pool::member::MemberSettings>,
}

fn seconds(key: &str, value: f64, min: f64, max: f64) -> anyhow::Result<Duration> {
    if !(min..=max).contains(&value) {
        bail!("{key} = {value}: must be between {min} and {max} seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

impl Config {
    /// Read and parse a file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
    }

    /// Check everything that can be checked without the node.
    pub fn validate(mut self) -> anyhow::Result<Validated> {
        // `~/...` as in the example configuration; everything below sees the expanded path.
        self.journal.dir = expand_home(&self.journal.dir);
        let network = parse_network(&self.node.network)?;
        let (address, payout) = payout_script(&self.payout.address, network)?;
        if self.payout.tag.len() > MAX_TAG_LEN {
            bail!(
                "payout.tag is {} bytes; at most {MAX_TAG_LEN} fit in the coinbase",
                self.payout.tag.len()
            );
        }
        let rpc_url = match &self.node.url {
            Some(url) if url.starts_with("http://") => url.trim_end_matches('/').to_string(),
            Some(url) => {
                bail!("node.url = {url:?}: must start with http:// (Bitcoin Core's RPC has no TLS)")
            }
            None => format!("http://127.0.0.1:{}", default_rpc_port(network)),
        };
        let auth = match (
            &self.node.user,
            &self.node.password,
            &self.node.cookie,
            &self.node.datadir,
        ) {
            (Some(user), Some(password), None, _) => {
                crate::node::Auth::UserPass(user.clone(), password.clone())
            }
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                bail!("node.user and node.password go together")
            }
            (Some(_), Some(_), Some(_), _) => {
                bail!("give either node.cookie or node.user/password, not both")
            }
            (None, None, Some(cookie), _) => crate::node::Auth::Cookie(expand_home(cookie)),
            (None, None, None, Some(datadir)) => crate::node::Auth::Cookie(
                expand_home(datadir)
                    .join(network_subdir(network))
                    .join(".cookie"),
            ),
            (None, None, None, None) => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                crate::node::Auth::Cookie(
                    home.join(".bitcoin")
                        .join(network_subdir(network))
                        .join(".cookie"),
                )
            }
        };
        if let Some(zmq) = &self.node.zmq_hashblock
            && !zmq.starts_with("tcp://")
        {
            bail!("node.zmq_hashblock = {zmq:?}: must be a tcp:// endpoint");
        }
        if self.devices.is_empty() && self.stratum.is_none() && self.pool.coordinator.is_none() {
            bail!(
                "no [[device]] and no [stratum] configured: add a device (kind = \"serial\", \"sim\" or \"cpu\") or a [stratum] server for miners on the network"
            );
        }
        let stratum = match &self.stratum {
            Some(s) => Some(validate_stratum(s, &payout, self.payout.tag.as_bytes())?),
            None => None,
        };
        let proxy = match &self.proxy.socks5 {
            Some(p) => Some(socks_address("proxy.socks5", p)?),
            None => None,
        };
        if self.proxy.node && proxy.is_none() {
            bail!("proxy.node = true needs proxy.socks5 (e.g. \"127.0.0.1:9050\" for Tor)");
        }
        let mut pools = Vec::new();
        for (i, pool) in self.pool.upstream.iter().enumerate() {
            pools.push(validate_pool(i, pool, proxy.as_deref())?);
        }
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        for (i, name) in names.iter().enumerate() {
            if *name == "node" || names[..i].contains(name) {
                bail!("pool[{i}].name = {name:?}: names must be unique and not \"node\"");
            }
        }
        let sources = match &self.work.order {
            None => std::iter::once(None)
                .chain((0..pools.len()).map(Some))
                .collect(),
            Some(order) => {
                let mut sources = Vec::new();
                for name in order {
                    let source = if name == "node" {
                        None
                    } else {
                        Some(names.iter().position(|n| n == name).ok_or_else(|| {
                            anyhow::anyhow!(
                                "work.order names {name:?}, which is neither \"node\" nor a [[pool]] name ({})",
                                names.join(", ")
                            )
                        })?)
                    };
                    if sources.contains(&source) {
                        bail!("work.order names {name:?} twice");
                    }
                    sources.push(source);
                }
                if sources.is_empty() {
                    bail!("work.order is empty: name \"node\" and/or pools");
                }
                sources
            }
        };
        let source_timing = crate::sources::SourceTiming {
            failover_after: seconds("work.failover_secs", self.work.failover_secs, 0.0, 3600.0)?,
            switch_back_after: seconds(
                "work.switch_back_secs",
                self.work.switch_back_secs,
                0.0,
                86_400.0,
            )?,
        };
        for (i, device) in self.devices.iter().enumerate() {
            validate_device(i, device)?;
        }
        check_device_names(&self.devices)?;
        let pool_coordinator = match &self.pool.coordinator {
            Some(c) => Some(validate_coordinator(c, network, &self.journal.dir)?),
            None => None,
        };
        let pool_member = match &self.pool.member {
            Some(m) => Some(validate_member(
                m,
                network,
                proxy.as_deref(),
                &self.journal.dir,
                self.stratum.as_ref(),
                self.payout.tag.as_bytes(),
            )?),
            None => None,
        };
        let node = &self.node;
        Ok(Validated {
            pool_coordinator,
            pool_member,
            network,
            rpc_url,
            auth,
            address,
            payout,
            poll_interval: seconds(
                "node.poll_interval_secs",
                node.poll_interval_secs,
                0.05,
                600.0,
            )?,
            fee_refresh: seconds("node.fee_refresh_secs", node.fee_refresh_secs, 1.0, 3600.0)?,
            rpc_timeout: seconds("node.rpc_timeout_secs", node.rpc_timeout_secs, 0.5, 600.0)?,
            node_loss_grace: seconds(
                "node.node_loss_grace_secs",
                node.node_loss_grace_secs,
                0.0,
                86_400.0,
            )?,
            startup_timeout: seconds(
                "node.startup_timeout_secs",
                node.startup_timeout_secs,
                0.0,
                86_400.0,
            )?,
            stratum,
            pools,
            sources,
            source_timing,
            node_proxy: if self.proxy.node { proxy } else { None },
            api_listen: api_listen(&self.api.listen)?,
            api_token_file: self
                .api
                .token_file
                .as_deref()
                .map(expand_home)
                .unwrap_or_else(|| self.journal.dir.join("api-token")),
            webhook_url: webhook_url(self.notify.webhook_url.as_deref())?,
            device_lost_grace: seconds(
                "notify.device_lost_grace_secs",
                self.notify.device_lost_grace_secs.unwrap_or(60.0),
                0.0,
                86_400.0,
            )?,
            config: self,
        })
    }
}

/// `[api] listen`: an address to bind, or "off".
fn api_listen(value: &str) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.trim().parse().map(Some).map_err(|_| {
        anyhow::anyhow!(
            "api.listen = {value:?}: give ip:port (\"127.0.0.1:8080\", \"0.0.0.0:8080\" for the LAN) or \"off\""
        )
    })
}

/// `[notify] webhook_url`: http:// only: the daemon's HTTP client carries no TLS (docs/notifications.md: use a
/// receiver or relay on this machine or the LAN).
fn webhook_url(value: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(value) = value else { return Ok(None) };
    let url = value.trim();
    if url.starts_with("https://") {
        bail!(
            "notify.webhook_url = {:?}: this build of hearth has no TLS, so it cannot POST to \
             https:// URLs; give an http:// URL (a receiver or relay on this machine or your LAN, \
             see docs/notifications.md)",
            crate::api::redact_url(value)
        );
    }
    match url.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(Some(url.to_string())),
        _ => bail!(
            "notify.webhook_url = {:?}: give an http:// URL, e.g. \"http://127.0.0.1:9000/hearth\"",
            crate::api::redact_url(value)
        ),
    }
}

/// A SOCKS5 proxy address: `host:port`.
fn socks_address(key: &str, value: &str) -> anyhow::Result<String> {
    let value = value
        .trim()
        .trim_start_matches("socks5://")
        .trim_start_matches("socks5h://");
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(value.to_string())
        }
        _ => bail!("{key} = {value:?}: give host:port, e.g. \"127.0.0.1:9050\" for Tor"),
    }
}

fn validate_coordinator(
    c: &CoordinatorConfig,
    network: Network,
    journal_dir: &Path,
) -> anyhow::Result<crate::pool::coordinator::CoordinatorSettings> {
    let key = |k: &str| format!("pool.coordinator.{k}");
    if c.listen
        .trim()
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        bail!(
            "{} = {:?}: give host:port, e.g. \"127.0.0.1:4444\"",
            key("listen"),
            c.listen
        );
    }
    if c.members.is_empty() {
        bail!(
            "{}: no members, so nobody can mine in this pool; add {{ name = \"alice\", key = \"<her public key>\" }} (each member prints its key with `hearth pool key`)",
            key("members")
        );
    }
    let mut members: Vec<(String, crate::pool::identity::MemberId)> = Vec::new();
    for (i, m) in c.members.iter().enumerate() {
        let id = m.key.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{}[{i}].key = {:?}: not a member public key (64 hex digits, as `hearth pool key` prints it)",
                key("members"),
                m.key
            )
        })?;
        if members.iter().any(|(n, k)| *n == m.name || *k == id) {
            bail!(
                "{}[{i}]: name {:?} or its key is listed twice",
                key("members"),
                m.name
            );
        }
        members.push((m.name.clone(), id));
    }
    let positive = |k: &str, v: f64| -> anyhow::Result<f64> {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            bail!("{} = {v}: must be a positive number", key(k))
        }
    };
    let start = positive("start_difficulty", c.start_difficulty)?;
    let min = positive("min_difficulty", c.min_difficulty.unwrap_or(start))?;
    let max = positive("max_difficulty", c.max_difficulty.unwrap_or(f64::MAX))?;
    if !(min <= start && start <= max) {
        bail!(
            "{}: need min_difficulty <= start_difficulty <= max_difficulty ({min} <= {start} <= {max})",
            key("*_difficulty")
        );
    }
    if c.window_blocks == 0 {
        bail!(
            "{} = 0: the PPLNS window needs at least one block of work",
            key("window_blocks")
        );
    }
    if !(1..=250).contains(&c.max_payees) {
        bail!(
            "{} = {}: between 1 and 250",
            key("max_payees"),
            c.max_payees
        );
    }
    Ok(crate::pool::coordinator::CoordinatorSettings {
        listen: c.listen.trim().to_string(),
        network,
        ledger: c
            .ledger
            .clone()
            .map(|p| expand_home(&p))
            .unwrap_or_else(|| journal_dir.join("pool-ledger.jsonl")),
        members,
        vardiff: crate::stratum::difficulty::VardiffConfig {
            start,
            min,
            max,
            shares_per_minute: positive("shares_per_minute", c.shares_per_minute)?,
            enabled: true,
        },
        window_blocks: c.window_blocks,
        round_interval: seconds(&key("round_secs"), c.round_secs, 0.1, 86_400.0)?,
        grace: seconds(&key("grace_secs"), c.grace_secs, 0.0, 3600.0)?,
        max_payees: c.max_payees,
        default_output_bytes: c.output_bytes,
    })
}

fn validate_member(
    m: &MemberConfig,
    network: Network,
    proxy: Option<&str>,
    journal_dir: &Path,
    stratum: Option<&StratumConfig>,
    tag: &[u8],
) -> anyhow::Result<crate::pool::member::MemberSettings> {
    let key = |k: &str| format!("pool.member.{k}");
    let (host, port) = m
        .coordinator
        .trim()
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .filter(|(h, p)| !h.is_empty() && *p > 0)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} = {:?}: give host:port, e.g. \"127.0.0.1:4444\" or \"<name>.onion:4444\"",
                key("coordinator"),
                m.coordinator
            )
        })?;
    let socks5 = match &m.socks5 {
        Some(p) => Some(socks_address(&key("socks5"), p)?),
        None => proxy.map(str::to_string),
    };
    if host.ends_with(".onion") && socks5.is_none() {
        bail!(
            "{} = {:?} is an onion address: set pool.member.socks5 or proxy.socks5 to Tor's SOCKS port (e.g. \"127.0.0.1:9050\")",
            key("coordinator"),
            m.coordinator
        );
    }
    // The payout outputs must leave every Stratum miner's coinbase within its buffer.
    let output_bytes = match stratum {
        Some(s) => {
            let fixed =
                crate::template::coinbase::longest_coinbase_len_paying(&[], Some(&[0; 20]), tag)
                    .map_err(|e| anyhow::anyhow!("payout.tag: {e}"))?;
            let room = (s.max_coinbase_bytes as u64).saturating_sub(fixed as u64);
            if room < 43 {
                bail!(
                    "stratum.max_coinbase_bytes = {}: a pool member's coinbase needs {fixed} bytes before any payout, which leaves no room for one payout output (43 bytes); raise it or shorten payout.tag",
                    s.max_coinbase_bytes
                );
            }
            Some(room)
        }
        None => None,
    };
    Ok(crate::pool::member::MemberSettings {
        host,
        port,
        socks5,
        network,
        key_file: m
            .key_file
            .clone()
            .map(|p| expand_home(&p))
            .unwrap_or_else(|| journal_dir.join("pool-member.key")),
        output_bytes,
        solo_after: seconds(&key("solo_after_secs"), m.solo_after_secs, 0.0, 86_400.0)?,
    })
}

fn validate_pool(
    i: usize,
    pool: &PoolConfig,
    proxy: Option<&str>,
) -> anyhow::Result<crate::stratum::client::PoolSettings> {
    let key = |k: &str| format!("pool[{i}].{k}");
    let address = pool
        .url
        .trim()
        .trim_start_matches("stratum+tcp://")
        .trim_end_matches('/');
    if address.contains("://") {
        bail!(
            "{} = {:?}: only stratum+tcp:// (Stratum V1 over TCP) is supported",
            key("url"),
            pool.url
        );
    }
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .filter(|(h, p)| !h.is_empty() && *p > 0)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} = {:?}: give stratum+tcp://host:port",
                key("url"),
                pool.url
            )
        })?;
    let socks5 = match &pool.socks5 {
        Some(p) => Some(socks_address(&key("socks5"), p)?),
        None => proxy.map(str::to_string),
    };
    if host.ends_with(".onion") && socks5.is_none() {
        bail!(
            "{} = {:?}: an onion address needs a SOCKS5 proxy (Tor): set proxy.socks5 or {}",
            key("url"),
            pool.url,
            key("socks5")
        );
    }
    if pool.user.is_empty() {
        bail!("{}: the pool needs a worker name", key("user"));
    }
    if pool.reject_limit == 0 {
        bail!("{} must be at least 1", key("reject_limit"));
    }
    Ok(crate::stratum::client::PoolSettings {
        name: pool.name.clone().unwrap_or_else(|| format!("pool{i}")),
        host: host.to_string(),
        port,
        user: pool.user.clone(),
        password: pool.password.clone(),
        socks5,
        silent_after: seconds(&key("silent_secs"), pool.silent_secs, 1.0, 86_400.0)?,
        reject_limit: pool.reject_limit,
        max_backoff: Duration::from_secs(60),
    })
}

fn validate_stratum(
    s: &StratumConfig,
    payout: &ScriptBuf,
    tag: &[u8],
) -> anyhow::Result<crate::stratum::StratumSettings> {
    let listen: std::net::SocketAddr = s.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "stratum.listen = {:?}: give an address and port, e.g. \"0.0.0.0:3333\"",
            s.listen
        )
    })?;
    let difficulty = |key: &str, value: f64| -> anyhow::Result<f64> {
        if !value.is_finite() || value <= 0.0 || value > 1e15 {
            bail!("stratum.{key} = {value}: a difficulty above 0 and at most 1e15");
        }
        Ok(value)
    };
    let start = difficulty("start_difficulty", s.start_difficulty)?;
    let min = difficulty(
        "min_difficulty",
        s.min_difficulty.unwrap_or(start.min(0.0001)),
    )?;
    let max = difficulty("max_difficulty", s.max_difficulty.unwrap_or(1e15))?;
    if !(min <= start && start <= max) {
        bail!(
            "stratum.start_difficulty = {start} must lie between stratum.min_difficulty ({min}) and stratum.max_difficulty ({max})"
        );
    }
    if !(0.1..=600.0).contains(&s.shares_per_minute) {
        bail!(
            "stratum.shares_per_minute = {}: 0.1 to 600",
            s.shares_per_minute
        );
    }
    if s.max_connections == 0 || s.max_connections_per_ip == 0 {
        bail!("stratum.max_connections and stratum.max_connections_per_ip must be at least 1");
    }
    if !(150..=100_000).contains(&s.max_coinbase_bytes) {
        bail!(
            "stratum.max_coinbase_bytes = {}: 255 fits every common miner (NerdMiner), 384 fits ESP-Miner",
            s.max_coinbase_bytes
        );
    }
    let longest = crate::template::coinbase::longest_coinbase_len(payout, tag)
        .map_err(|e| anyhow::anyhow!("payout.tag: {e}"))?;
    if longest > s.max_coinbase_bytes {
        bail!(
            "payout.tag ({} bytes) with this payout address gives coinbases of up to {longest} bytes, over stratum.max_coinbase_bytes = {}; miners with smaller buffers would send only wrong shares. Shorten payout.tag by {} bytes",
            tag.len(),
            s.max_coinbase_bytes,
            longest - s.max_coinbase_bytes
        );
    }
    Ok(crate::stratum::StratumSettings {
        listen,
        vardiff: crate::stratum::difficulty::VardiffConfig {
            start,
            min,
            max,
            shares_per_minute: s.shares_per_minute,
            enabled: s.vardiff,
        },
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        handshake_timeout: seconds(
            "stratum.handshake_timeout_secs",
            s.handshake_timeout_secs,
            0.1,
            3600.0,
        )?,
        idle_timeout: seconds(
            "stratum.idle_timeout_secs",
            s.idle_timeout_secs,
            1.0,
            86_400.0,
        )?,
        write_timeout: Duration::from_secs(10),
    })
}

fn model(key: &str, name: &str) -> anyhow::Result<ChipModel> {
    ChipModel::from_name(name)
        .ok_or_else(|| anyhow::anyhow!("{key} = {name:?}: use BM1366, BM1368, BM1370 or BM1397"))
}

fn validate_device(i: usize, device: &DeviceConfig) -> anyhow::Result<()> {
    let key = |k: &str| format!("device[{i}].{k}");
    match device {
        DeviceConfig::Sim {
            model: m,
            chips,
            floor_bits,
            hashrate,
            ..
        } => {
            model(&key("model"), m)?;
            if *chips == 0 || *chips > 256 {
                bail!("{} = {chips}: 1 to 256 chips", key("chips"));
            }
            if !(1..=48).contains(floor_bits) {
                bail!(
                    "{} = {floor_bits}: 1 to 48 (32 is real silicon)",
                    key("floor_bits")
                );
            }
            if !hashrate.is_finite() || *hashrate < 0.0 {
                bail!(
                    "{} = {hashrate}: hashes per second, 0 for unlimited",
                    key("hashrate")
                );
            }
        }
        DeviceConfig::Serial {
            model: m,
            chips,
            frequency_mhz,
            ticket_difficulty,
            ..
        } => {
            let m = model(&key("model"), m)?;
            if *chips == 0 || *chips > 256 {
                bail!("{} = {chips}: 1 to 256 chips", key("chips"));
            }
            if let Some(f) = frequency_mhz {
                let khz = (f * 1000.0) as u32;
                if bm13xx::pll::solve(khz, &m.pll_limits()).is_none() {
                    bail!(
                        "{} = {f}: no PLL setting of the {m} reaches it",
                        key("frequency_mhz")
                    );
                }
            }
            if !ticket_difficulty.is_power_of_two() {
                bail!(
                    "{} = {ticket_difficulty}: must be a power of two (1, 2, 4, ... 65536)",
                    key("ticket_difficulty")
                );
            }
        }
        DeviceConfig::Link {
            port,
            tcp,
            share_floor_bits,
            ..
        } => {
            if port.is_some() && tcp.is_some() {
                bail!("{}: give port or tcp, not both", key("port"));
            }
            if let Some(bits) = share_floor_bits
                && !(1..=32).contains(bits)
            {
                bail!(
                    "{} = {bits}: 1 to 32 (32 is real silicon)",
                    key("share_floor_bits")
                );
            }
        }
        DeviceConfig::Cpu {
            threads,
            share_bits,
            ..
        } => {
            if *threads == 0 || *threads > 256 {
                bail!("{} = {threads}: 1 to 256", key("threads"));
            }
            if !(1..=64).contains(share_bits) {
                bail!("{} = {share_bits}: 1 to 64", key("share_bits"));
            }
        }
    }
    Ok(())
}

impl DeviceConfig {
    /// The device's name (its `name`, or its kind and position: `sim0`, `link1`) and kind.
    pub fn name_and_kind(&self, index: usize) -> (String, &'static str) {
        let (name, kind) = match self {
            DeviceConfig::Sim { name, .. } => (name, "sim"),
            DeviceConfig::Serial { name, .. } => (name, "serial"),
            DeviceConfig::Cpu { name, .. } => (name, "cpu"),
            DeviceConfig::Link { name, .. } => (name, "link"),
        };
        (
            name.clone().unwrap_or_else(|| format!("{kind}{index}")),
            kind,
        )
    }
}

/// Device names key the API, the board controls and the metrics' labels: two devices with one
/// name would share counters and a Prometheus series (a scrape Prometheus refuses), and one
/// named like a Stratum miner would be counted with it.
fn check_device_names(devices: &[DeviceConfig]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, device) in devices.iter().enumerate() {
        let (name, _) = device.name_and_kind(i);
        if name.trim().is_empty() {
            bail!("device[{i}].name is empty: give each device a name, or leave name out");
        }
        if name.starts_with("stratum:") {
            bail!(
                "device[{i}].name = {name:?}: names starting with \"stratum:\" are the Stratum miners'; choose another"
            );
        }
        if !seen.insert(name.clone()) {
            bail!(
                "device[{i}]: the name {name:?} is already taken by another device; give each device its own name"
            );
        }
    }
    Ok(())
}

fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [node]
        network = "regtest"
        datadir = "/tmp/x"
        [payout]
        address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
        [[device]]
        kind = "sim"
    "#;

    #[test]
    fn the_example_config_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../hearth.example.toml"
        ))
        .unwrap();
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.devices.len(), 2);
        // The placeholder address is (deliberately) not valid.
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("payout.address")
        );
    }

    #[test]
    fn pool_reads_upstream_pools_in_either_form_beside_a_hearth_pool() {
        let key = crate::pool::identity::MemberKey::from_secret(&[3; 32])
            .unwrap()
            .id();
        let upstream = "url = \"pool.example.org:3333\"\nuser = \"w\"\n";
        let old = format!("{GOOD}\n[[pool]]\n{upstream}");
        let v = Config::parse(&old).unwrap().validate().unwrap();
        assert_eq!(v.pools.len(), 1);
        assert!(v.pool_member.is_none() && v.pool_coordinator.is_none());
        let both = format!(
            "{GOOD}\n[[pool.upstream]]\n{upstream}\n[pool.coordinator]\nlisten = \"127.0.0.1:4444\"\nmembers = [{{ name = \"a\", key = \"{key}\" }}]\n[pool.member]\ncoordinator = \"127.0.0.1:4444\"\n"
        );
        let v = Config::parse(&both).unwrap().validate().unwrap();
        assert_eq!(v.pools.len(), 1);
        let c = v.pool_coordinator.unwrap();
        assert_eq!((c.members.len(), c.window_blocks), (1, 4));
        assert_eq!(v.pool_member.unwrap().port, 4444);
        // What is wrong is named.
        let cases = [
            (
                "[pool.coordinator]\nlisten = \"127.0.0.1:4444\"\n",
                "no members",
            ),
            (
                "[pool.coordinator]\nlisten = \"127.0.0.1:4444\"\nmembers = [{ name = \"a\", key = \"zz\" }]\n",
                "members[0].key",
            ),
            (
                "[pool.member]\ncoordinator = \"abc.onion:4444\"\n",
                "onion address",
            ),
            (
                "[pool.member]\ncoordinator = \"nowhere\"\n",
                "pool.member.coordinator",
            ),
            (
                "[pool.member]\ncoordinator = \"a:1\"\nsurprise = 1\n",
                "surprise",
            ),
        ];
        for (section, named) in cases {
            let text = format!("{GOOD}\n{section}");
            let e = match Config::parse(&text) {
                Ok(c) => c.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(named), "{section}: {e}");
        }
    }

    #[test]
    fn the_api_listens_on_loopback_by_default_and_can_be_turned_off() {
        let v = Config::parse(GOOD).unwrap().validate().unwrap();
        assert_eq!(v.api_listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(v.api_token_file, defaults::journal_dir().join("api-token"));
        let off = format!("{GOOD}\n[api]\nlisten = \"off\"\n");
        assert_eq!(
            Config::parse(&off).unwrap().validate().unwrap().api_listen,
            None
        );
        let bad = format!("{GOOD}\n[api]\nlisten = \"localhost\"\n");
        let e = Config::parse(&bad)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.listen") && e.contains("ip:port"), "{e}");
    }

    #[test]
    fn the_webhook_must_be_plain_http() {
        let with = |url: &str| {
            Config::parse(&format!("{GOOD}\n[notify]\nwebhook_url = \"{url}\"\n"))
                .unwrap()
                .validate()
        };
        assert_eq!(
            with("http://127.0.0.1:9000/hearth")
                .unwrap()
                .webhook_url
                .as_deref(),
            Some("http://127.0.0.1:9000/hearth")
        );
        let e = with("https://ntfy.sh/mine").unwrap_err().to_string();
        assert!(e.contains("no TLS") && e.contains("http://"), "{e}");
        let e = with("ntfy.sh/mine").unwrap_err().to_string();
        assert!(e.contains("notify.webhook_url"), "{e}");
    }

    #[test]
    fn a_good_config_validates() {
        let v = Config::parse(GOOD).unwrap().validate().unwrap();
        assert_eq!(v.network, Network::Regtest);
        assert_eq!(v.rpc_url, "http://127.0.0.1:18443");
        assert!(
            matches!(v.auth, crate::node::Auth::Cookie(ref p) if p.ends_with("regtest/.cookie"))
        );
    }

    fn error(text: &str) -> String {
        match Config::parse(text).and_then(Config::validate) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn device_names_are_unique_and_not_a_stratum_miners() {
        let two = |a: &str, b: &str| {
            GOOD.replace(
                "[[device]]\n        kind = \"sim\"",
                &format!("[[device]]\nkind = \"sim\"\n{a}\n[[device]]\nkind = \"cpu\"\n{b}"),
            )
        };
        // Default names differ by position; explicit ones must differ too.
        let v = Config::parse(&two("", "")).unwrap().validate().unwrap();
        let names: Vec<String> = (v.config.devices.iter().enumerate())
            .map(|(i, d)| d.name_and_kind(i).0)
            .collect();
        assert_eq!(names, ["sim0", "cpu1"]);
        let text = error(&two("name = \"rig\"", "name = \"rig\""));
        assert!(
            text.contains("device[1]") && text.contains("already taken"),
            "{text}"
        );
        // An explicit name equal to another device's default one.
        let text = error(&two("", "name = \"sim0\""));
        assert!(text.contains("\"sim0\" is already taken"), "{text}");
        let text = error(&two("name = \"stratum:bitaxe\"", ""));
        assert!(
            text.contains("device[0].name") && text.contains("stratum:"),
            "{text}"
        );
    }

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
            return; // nothing to expand to (the tilde then stays a relative path)
        };
        let text = GOOD.replace(
            "[payout]",
            "[journal]\ndir = \"~/hearth-journal\"\n[api]\ntoken_file = \"~/tok\"\n[payout]",
        );
        let v = Config::parse(&text).unwrap().validate().unwrap();
        assert_eq!(v.config.journal.dir, home.join("hearth-journal"));
        assert_eq!(v.api_token_file, home.join("tok"));
        // The default token file sits in the expanded journal directory.
        let text = GOOD.replace("[payout]", "[journal]\ndir = \"~/j\"\n[payout]");
        let v = Config::parse(&text).unwrap().validate().unwrap();
        assert_eq!(v.api_token_file, home.join("j").join("api-token"));
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let wrong_net = GOOD.replace(
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        );
        assert!(
            error(&wrong_net).contains("not an address for regtest"),
            "{}",
            error(&wrong_net)
        );
        let garbage = GOOD.replace("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "hello");
        assert!(error(&garbage).contains("not a Bitcoin address"));
        assert!(error(&GOOD.replace("regtest", "moonnet")).contains("use main, test"));
        assert!(
            error(&GOOD.replace("kind = \"sim\"", "kind = \"gpu\"")).contains("unknown variant")
        );
        assert!(
            error(&GOOD.replace("kind = \"sim\"", "kind = \"sim\"\nchips = 0"))
                .contains("device[0].chips")
        );
        let serial = GOOD.replace(
            "kind = \"sim\"",
            "kind = \"serial\"\npath = \"/dev/ttyUSB0\"\nmodel = \"BM1366\"\nchips = 1\nbaud = 9600",
        );
        let text = error(&serial);
        assert!(
            text.contains("baud 9600") && text.contains("115200, 1000000 or 3125000"),
            "{text}"
        );
        assert!(error(&GOOD.replace("[node]", "[node]\nurl = \"https://x\"")).contains("http://"));
        assert!(error(&GOOD.replace("[node]", "[node]\ncolour = 1")).contains("unknown field"));
        let no_devices = GOOD.replace("[[device]]\n        kind = \"sim\"", "");
        assert!(error(&no_devices).contains("no [[device]]"));
        let long_tag = GOOD.replace(
            "[payout]",
            &format!("[payout]\ntag = \"{}\"", "x".repeat(61)),
        );
        assert!(error(&long_tag).contains("payout.tag"));
    }

    #[test]
    fn stratum_settings_are_checked_and_the_coinbase_bound_names_the_key() {
        let with = |section: &str| format!("{GOOD}\n[stratum]\n{section}");
        let v = Config::parse(&with(
            "listen = \"127.0.0.1:3333\"\nstart_difficulty = 0.0001",
        ))
        .unwrap()
        .validate()
        .unwrap();
        let s = v.stratum.unwrap();
        assert_eq!(s.vardiff.start, 0.0001);
        assert_eq!(s.vardiff.min, 0.0001);
        assert_eq!(s.listen.port(), 3333);
        // Integers are difficulties too.
        let v = Config::parse(&with("listen = \"0.0.0.0:3333\"\nstart_difficulty = 1024"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.stratum.unwrap().vardiff.start, 1024.0);
        assert!(error(&with("listen = \"3333\"")).contains("stratum.listen"));
        assert!(
            error(&with("listen = \"0.0.0.0:3333\"\nstart_difficulty = 0"))
                .contains("stratum.start_difficulty")
        );
        assert!(
            error(&with(
                "listen = \"0.0.0.0:3333\"\nstart_difficulty = 1\nmin_difficulty = 2"
            ))
            .contains("stratum.min_difficulty")
        );
        // A 60-byte tag fits 255 bytes (217) but not a 200-byte buffer: the error names the key.
        let long_tag = with("listen = \"0.0.0.0:3333\"\nmax_coinbase_bytes = 200").replace(
            "[payout]",
            &format!("[payout]\ntag = \"{}\"", "x".repeat(60)),
        );
        let text = error(&long_tag);
        assert!(
            text.contains("payout.tag") && text.contains("stratum.max_coinbase_bytes = 200"),
            "{text}"
        );
        // No devices is fine when miners come over Stratum.
        let stratum_only = GOOD.replace("[[device]]\n        kind = \"sim\"", "")
            + "\n[stratum]\nlisten = \"127.0.0.1:3333\"\n";
        Config::parse(&stratum_only).unwrap().validate().unwrap();
    }
}
