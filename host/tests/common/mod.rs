//! Shared test helpers: a real regtest bitcoind from the project's own script, keys and
//! addresses of every payout type, and small RPC conveniences.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use bitcoin::key::{Keypair, Secp256k1};
use bitcoin::secp256k1::{SecretKey, rand};
use bitcoin::{Address, CompressedPublicKey, Network, PrivateKey, ScriptBuf};
use hearth::node::RpcClient;
use hearth::regtest::{RegtestNode, bitcoind_from_scripts};

pub mod pool;
pub mod socks;
pub mod stratum;
pub mod tor;
use serde_json::{Value, json};

/// A child process killed (and reaped) when the test lets go of it.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process stopped with SIGTERM when the test lets go of it, given time to stop what
/// it started (the demo's own bitcoind, which SIGKILL would leave running), then killed.
pub struct Terminated(pub Child);

impl Drop for Terminated {
    fn drop(&mut self) {
        hearth::regtest::terminate_within(&mut self.0, Duration::from_secs(20));
    }
}

/// A PTY at `link` bridged to TCP `addr`, as a USB-UART adapter would appear.
pub fn pty(link: &Path, addr: &str) -> Killed {
    let child = Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", link.display()))
        .arg(format!("tcp:{addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs socat (scripts/test.sh installs it: apt-get install socat): {e}"
            )
        });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !link.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "socat did not create {}",
            link.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

/// The first line the child prints on stdout, trimmed.
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

/// `hearth sim-chain ARGS` running (on a free loopback port unless ARGS name one), and the
/// address it listens on.
pub fn sim_chain(args: &[&str]) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("sim-chain")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Killed(child), addr)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A started regtest node, or a panic that says how to get bitcoind.
pub async fn node(extra_args: &[&str]) -> RegtestNode {
    let binary = bitcoind_from_scripts(&repo_root()).unwrap_or_else(|e| {
        panic!("this test needs bitcoind: {e:#}\nget it with scripts/bitcoind.sh")
    });
    let mut node = RegtestNode::start(&binary, extra_args).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    node
}

/// A started custom signet node whose block challenge is `challenge` (hex).
pub async fn signet_node(challenge: &str, extra_args: &[&str]) -> RegtestNode {
    let binary = bitcoind_from_scripts(&repo_root()).unwrap_or_else(|e| {
        panic!("this test needs bitcoind: {e:#}\nget it with scripts/bitcoind.sh")
    });
    let mut node = RegtestNode::start_signet(&binary, challenge, extra_args).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    node
}

pub async fn call(rpc: &RpcClient, method: &str, params: Value) -> Value {
    rpc.call::<Value>(method, params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

pub async fn height(rpc: &RpcClient) -> u64 {
    call(rpc, "getblockcount", json!([]))
        .await
        .as_u64()
        .unwrap()
}

/// A key the test controls.
pub struct TestKey {
    pub secret: SecretKey,
    pub private: PrivateKey,
    pub public: CompressedPublicKey,
}

pub fn key() -> TestKey {
    let secp = Secp256k1::new();
    let (secret, _) = secp.generate_keypair(&mut rand::thread_rng());
    let private = PrivateKey::new(secret, Network::Regtest);
    let public = CompressedPublicKey::from_private_key(&secp, &private).unwrap();
    TestKey {
        secret,
        private,
        public,
    }
}

/// One address of each payout type, with the script the coinbase must pay.
pub fn addresses() -> Vec<(&'static str, Address, ScriptBuf)> {
    let k = key();
    let secp = Secp256k1::new();
    let p2pkh = Address::p2pkh(k.public, Network::Regtest);
    let p2wpkh = Address::p2wpkh(&k.public, Network::Regtest);
    let p2sh = Address::p2shwpkh(&k.public, Network::Regtest);
    let witness_script = bitcoin::blockdata::script::Builder::new()
        .push_key(&bitcoin::PublicKey::new(k.public.0))
        .push_opcode(bitcoin::opcodes::all::OP_CHECKSIG)
        .into_script();
    let p2wsh = Address::p2wsh(&witness_script, Network::Regtest);
    let keypair = Keypair::from_secret_key(&secp, &k.secret);
    let (xonly, _) = keypair.x_only_public_key();
    let p2tr = Address::p2tr(&secp, xonly, None, Network::Regtest);
    [
        ("P2PKH", p2pkh),
        ("P2SH", p2sh),
        ("P2WPKH", p2wpkh),
        ("P2WSH", p2wsh),
        ("P2TR", p2tr),
    ]
    .into_iter()
    .map(|(name, a)| {
        let script = a.script_pubkey();
        (
            name,
            Address::from_str(&a.to_string()).unwrap().assume_checked(),
            script,
        )
    })
    .collect()
}

/// The test key's address of one payout type (`"P2WPKH"`, `"P2TR"`, … as in [`addresses`]) and
/// its script.
pub fn address(kind: &str) -> (Address, ScriptBuf) {
    addresses()
        .into_iter()
        .find(|(n, _, _)| *n == kind)
        .map(|(_, address, script)| (address, script))
        .unwrap_or_else(|| panic!("no {kind} test address"))
}

/// A daemon configuration for `node`, paying `address`, with the given `[[device]]` TOML.
pub fn config_for(
    node: &RegtestNode,
    address: &str,
    journal: &Path,
    devices: &str,
) -> hearth::config::Validated {
    hearth::config::Config::parse(&config_text(node, address, journal, devices))
        .unwrap()
        .validate()
        .unwrap()
}

/// The `hearth.toml` text behind [`config_for`], for tests that run the binary.
pub fn config_text(node: &RegtestNode, address: &str, journal: &Path, devices: &str) -> String {
    format!(
        r#"
        [node]
        network = "{chain}"
        url = "{url}"
        cookie = "{cookie}"
        poll_interval_secs = 0.5
        node_loss_grace_secs = 30
        rpc_timeout_secs = 5
        [payout]
        address = "{address}"
        tag = "/hearth test/"
        [journal]
        dir = "{journal}"
        [api]
        listen = "127.0.0.1:0"
        {devices}
        "#,
        chain = node.chain(),
        url = node.rpc_url(),
        cookie = node.cookie_path().display(),
        journal = journal.display(),
    )
}

pub const SIM_4_BM1370: &str = r#"
    [[device]]
    kind = "sim"
    model = "BM1370"
    chips = 4
    floor_bits = 16
"#;

/// Wait for `n` accepted blocks, panicking on a rejection or after `timeout`.
pub async fn accepted_blocks(
    events: &mut tokio::sync::broadcast::Receiver<hearth::events::Event>,
    n: usize,
    timeout: Duration,
) -> Vec<(u32, bitcoin::BlockHash)> {
    use hearth::events::Event;
    let mut blocks = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while blocks.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::BlockAccepted { height, hash, .. })) => blocks.push((height, hash)),
            Ok(Ok(Event::BlockRejected { height, reason, .. })) => {
                panic!("block at {height} rejected: {reason}")
            }
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel: {e}"),
            Err(_) => panic!(
                "only {} of {n} blocks accepted within {timeout:?}",
                blocks.len()
            ),
        }
    }
    blocks
}

/// Wait for the first event matching `pred`.
pub async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<hearth::events::Event>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&hearth::events::Event) -> bool,
) -> hearth::events::Event {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} within {timeout:?}"),
        }
    }
}

/// A sim device block with a given hash rate per chip.
pub fn sim_device(name: &str, chips: u16, hashrate: f64, latency_ms: u64) -> String {
    format!(
        "[[device]]\nkind = \"sim\"\nname = \"{name}\"\nmodel = \"BM1370\"\nchips = {chips}\nfloor_bits = 16\nhashrate = {hashrate}\nlatency_ms = {latency_ms}\n"
    )
}

/// A P2WPKH spend of `outpoint` (worth `value`) to `to`, signed with rust-bitcoin.
pub fn spend_p2wpkh(
    key: &TestKey,
    outpoint: bitcoin::OutPoint,
    value: bitcoin::Amount,
    to: &ScriptBuf,
    fee: bitcoin::Amount,
) -> bitcoin::Transaction {
    use bitcoin::sighash::{EcdsaSighashType, SighashCache};
    use bitcoin::{Sequence, Transaction, TxIn, TxOut, Witness, absolute, transaction};
    let secp = Secp256k1::new();
    let mut tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: value - fee,
            script_pubkey: to.clone(),
        }],
    };
    let spent = Address::p2wpkh(&key.public, Network::Regtest).script_pubkey();
    let sighash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(0, &spent, value, EcdsaSighashType::All)
        .unwrap();
    let message = bitcoin::secp256k1::Message::from(sighash);
    let signature = bitcoin::ecdsa::Signature {
        signature: secp.sign_ecdsa(&message, &key.secret),
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].witness = Witness::p2wpkh(&signature, &key.public.0);
    tx
}

/// Work from the node's own template, paying our P2WPKH test address with coinbase `tag`.
pub async fn regtest_work(
    rpc: &RpcClient,
    tag: &[u8],
) -> std::sync::Arc<hearth::work::TemplateWork> {
    let template = hearth::node::source::fetch_template(
        rpc,
        bitcoin::Network::Regtest,
        None,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let (_, payout) = address("P2WPKH");
    std::sync::Arc::new(hearth::work::TemplateWork::new(1, template, &payout, tag, true).unwrap())
}

/// The nonces, in order, whose header hash meets the job's (regtest: easy) network target.
pub fn block_nonces(job: &hearth::work::Job) -> impl Iterator<Item = u32> + '_ {
    (0u32..).filter(|n| {
        job.work
            .template
            .target
            .is_met_by(job.header(job.version, *n).block_hash())
    })
}

/// A block solved here (on the CPU; regtest targets are easy) from the node's own template,
/// not submitted: its consensus hex, height and hash.
pub async fn solved_block(rpc: &RpcClient) -> (String, u32, bitcoin::BlockHash) {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use hearth::work::{BIP320_MASK, JobFactory};
    let work = regtest_work(rpc, b"/solved here/").await;
    let job = JobFactory::new(9, Arc::new(AtomicU64::new(0)), BIP320_MASK).next_job(&work);
    let nonce = block_nonces(&job).next().unwrap();
    let hash = job.header(job.version, nonce).block_hash();
    (
        hex::encode(job.block_bytes(job.version, nonce)),
        work.template.height,
        hash,
    )
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `[stratum]` section on loopback `port`, with regtest-sized difficulties (test miners find
/// shares in milliseconds; real firmwares' suggestions are held to the maximum).
pub fn stratum_section(port: u16) -> String {
    format!(
        "[stratum]\nlisten = \"127.0.0.1:{port}\"\nstart_difficulty = 0.0000001\nmax_difficulty = 0.000001\n"
    )
}

/// The address a block's coinbase pays.
pub async fn coinbase_address(rpc: &RpcClient, hash: &bitcoin::BlockHash) -> String {
    let block = call(rpc, "getblock", json!([hash.to_string(), 2])).await;
    block["tx"][0]["vout"][0]["scriptPubKey"]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The next block the node accepted from `device` (within `timeout`), and the address it pays.
pub async fn accepted_from(
    events: &mut tokio::sync::broadcast::Receiver<hearth::events::Event>,
    device: &str,
    rpc: &RpcClient,
    timeout: Duration,
) -> String {
    use hearth::events::Event;
    let e = wait_event(
        events,
        timeout,
        &format!("a block from {device}"),
        |e| matches!(e, Event::BlockAccepted { device: d, .. } if d == device),
    )
    .await;
    let Event::BlockAccepted { hash, .. } = e else {
        unreachable!()
    };
    coinbase_address(rpc, &hash).await
}

/// Two daemons on one regtest node: A serves Stratum on a fixed loopback port (so that it can
/// be restarted there) and pays `address_a`; B, configured by each test, pays `address_b`.
pub struct TwoHearths {
    pub node: RegtestNode,
    pub rpc: RpcClient,
    pub address_a: Address,
    pub address_b: Address,
    pub port: u16,
    journal_a: tempfile::TempDir,
    journal_b: tempfile::TempDir,
}

impl TwoHearths {
    pub async fn new(kind_a: &str, kind_b: &str) -> TwoHearths {
        let node = node(&[]).await;
        TwoHearths {
            rpc: node.rpc().unwrap(),
            node,
            address_a: address(kind_a).0,
            address_b: address(kind_b).0,
            port: free_port(),
            journal_a: tempfile::tempdir().unwrap(),
            journal_b: tempfile::tempdir().unwrap(),
        }
    }

    /// Start A (again).
    pub async fn start_a(&self) -> hearth::daemon::Daemon {
        hearth::daemon::Daemon::start(config_for(
            &self.node,
            &self.address_a.to_string(),
            self.journal_a.path(),
            &stratum_section(self.port),
        ))
        .await
        .unwrap()
    }

    /// Start B with these sections (devices, pools, work order, proxy...).
    pub async fn start_b(&self, sections: &str) -> hearth::daemon::Daemon {
        hearth::daemon::Daemon::start(config_for(
            &self.node,
            &self.address_b.to_string(),
            self.journal_b.path(),
            sections,
        ))
        .await
        .unwrap()
    }
}
