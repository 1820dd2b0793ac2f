//! What the HTTP API and dashboard cost the daemon: its memory and CPU while idle-mining with
//! the API on and a dashboard's live stream open, against the same daemon with `[api] listen =
//! "off"`; then the API's latency under a steady mixed load.
//!
//! The daemon is the real `hearth mine` binary against a throwaway regtest bitcoind (from
//! `scripts/bitcoind.sh`, or `HEARTH_BITCOIND`), with 4 boards of 4 BM1370 chips (slow: idle
//! mining) and 100 Stratum miners connected (subscribed, authorized, reading their jobs). This
//! process is the miners, the dashboard (`/api/events`) and the load.
//!
//! The boards are, by default, what real ones are to the daemon: a BM13xx chain on a serial
//! port (`kind = "serial"`), each a PTY that socat wires to a `hearth sim-chain` process, so the
//! chips' emulation is not counted as the daemon's. `--chains in-process` uses `kind = "sim"`
//! instead, with the emulator inside the daemon's process (as `hearth demo` does).
//!
//! ```text
//! cargo bench -p hearth --bench api_load                    # 60 s per stage, about 5 minutes
//! cargo bench -p hearth --bench api_load -- --secs 10       # a quick look
//! ```
//!
//! Options: `--secs S` (length of each measured stage, default 60), `--rate R` (requests per
//! second in the latency stage, default 100), `--miners M` (Stratum miners, default 100),
//! `--boards B` (boards, default 4), `--hashrate H` (hashes per second per emulated chip,
//! default 100: a regtest block every minute or two), `--chains external|in-process`. Stages:
//! baseline (API off), API on with no client, API on with one dashboard stream open, and API
//! under load (the stream still open), round-robin over the endpoints a dashboard and a
//! Prometheus scraper use. Memory is VmRSS from
//! `/proc/<pid>/status` sampled every second (mean and max); CPU is utime + stime over the
//! stage. Figures and their reading: docs/api-benchmark.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bitcoin::key::Secp256k1;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Address, CompressedPublicKey, Network, PrivateKey};
use common::Killed;
use hearth::regtest::{RegtestNode, bitcoind_from_scripts, free_port};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

// Aims.
const RSS_AIM_MB: f64 = 30.0;
const CPU_AIM_PERCENT: f64 = 1.0;

struct Options {
    secs: u64,
    rate: u64,
    miners: usize,
    boards: usize,
    hashrate: f64,
    /// Chains behind serial ports, emulated in processes of their own (true), or `sim` devices.
    external_chains: bool,
}

fn parse_options() -> Options {
    let mut o = Options {
        secs: 60,
        rate: 100,
        miners: 100,
        boards: 4,
        hashrate: 100.0,
        external_chains: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
                .clone()
        };
        match args[i].as_str() {
            "--secs" => o.secs = value().parse().expect("--secs S"),
            "--rate" => o.rate = value().parse().expect("--rate R"),
            "--miners" => o.miners = value().parse().expect("--miners M"),
            "--boards" => o.boards = value().parse().expect("--boards B"),
            "--hashrate" => o.hashrate = value().parse().expect("--hashrate H"),
            "--chains" => {
                o.external_chains = match value().as_str() {
                    "external" => true,
                    "in-process" => false,
                    other => panic!("--chains external|in-process, not {other:?}"),
                }
            }
            // `cargo bench` passes --bench; a filter word may follow.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn payout_address() -> Address {
    let secp = Secp256k1::new();
    let secret = SecretKey::from_slice(&[7u8; 32]).unwrap();
    let public =
        CompressedPublicKey::from_private_key(&secp, &PrivateKey::new(secret, Network::Regtest))
            .unwrap();
    Address::p2wpkh(&public, Network::Regtest)
}

/// User + system CPU time of a process (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indices 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` field in MB (VmRSS, VmHWM).
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A board as the daemon sees real hardware: `hearth sim-chain` (the chips, in their own
/// process) behind a PTY at `tty` that socat bridges to it, as a USB-UART adapter appears.
fn external_chain(tty: &Path, hashrate: f64) -> [Killed; 2] {
    let hashrate = hashrate.to_string();
    let (sim, addr) = common::sim_chain(&[
        "--model",
        "BM1370",
        "--chips",
        "4",
        "--floor-bits",
        "12",
        "--hashrate",
        &hashrate,
    ]);
    [sim, common::pty(tty, &addr)]
}

/// The daemon under test.
struct DaemonProcess {
    child: Child,
    api: Option<String>,
    stratum: String,
    // Dropped after the daemon (fields drop in order): its ports vanish after it stopped.
    _chains: Vec<[Killed; 2]>,
    _journal: tempfile::TempDir,
}

impl DaemonProcess {
    async fn start(node: &RegtestNode, o: &Options, api: bool) -> DaemonProcess {
        let journal = tempfile::tempdir().unwrap();
        let stratum = format!("127.0.0.1:{}", free_port().unwrap());
        let api_addr = api.then(|| format!("127.0.0.1:{}", free_port().unwrap()));
        let mut devices = String::new();
        let mut chains = Vec::new();
        for b in 0..o.boards {
            if o.external_chains {
                let tty = journal.path().join(format!("ttyBOARD{b}"));
                chains.push(external_chain(&tty, o.hashrate));
                // 12 zero bits from the chips' floor and 4 from the ticket mask: the same 16
                // as the in-process boards.
                devices.push_str(&format!(
                    "[[device]]\nkind = \"serial\"\nname = \"board{b}\"\npath = \"{}\"\n\
                     model = \"BM1370\"\nchips = 4\nticket_difficulty = 16\nbaud = 1000000\n",
                    tty.display()
                ));
            } else {
                devices.push_str(&format!(
                    "[[device]]\nkind = \"sim\"\nname = \"board{b}\"\nmodel = \"BM1370\"\n\
                     chips = 4\nfloor_bits = 16\nhashrate = {}\n",
                    o.hashrate
                ));
            }
        }
        let text = format!(
            r#"
            [node]
            network = "regtest"
            url = "{url}"
            cookie = "{cookie}"
            [payout]
            address = "{address}"
            [journal]
            dir = "{journal}"
            [api]
            listen = "{api}"
            [stratum]
            listen = "{stratum}"
            start_difficulty = 0.0001
            max_connections_per_ip = {per_ip}
            idle_timeout_secs = 3600
            {devices}
            "#,
            url = node.rpc_url(),
            cookie = node.cookie_path().display(),
            address = payout_address(),
            journal = journal.path().display(),
            api = api_addr.as_deref().unwrap_or("off"),
            per_ip = o.miners + 10,
        );
        let config = journal.path().join("hearth.toml");
        std::fs::write(&config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("mine")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = DaemonProcess {
            child,
            api: api_addr,
            stratum,
            _chains: chains,
            _journal: journal,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&d.stratum).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the daemon's Stratum port never opened"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Stratum miner that subscribes, authorizes and reads its jobs; counts `mining.notify`.
async fn miner(addr: String, index: usize, notifies: Arc<AtomicU64>) {
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let hello = format!(
        "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"api_load/1.0\"]}}\n\
         {{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"bench{index}\",\"x\"]}}\n"
    );
    stream.write_all(hello.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("mining.notify") {
            notifies.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A dashboard's live stream: counts the snapshots.
async fn dashboard_stream(base: String, snapshots: Arc<AtomicU64>) {
    let mut r = reqwest::get(format!("{base}/api/events")).await.unwrap();
    while let Ok(Some(chunk)) = r.chunk().await {
        let n = String::from_utf8_lossy(&chunk)
            .matches("event: snapshot")
            .count();
        snapshots.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Memory and CPU of the daemon over one stage.
struct Usage {
    rss_mean: f64,
    rss_max: f64,
    hwm: f64,
    cpu_percent: f64,
}

async fn measure(pid: u32, secs: u64) -> Usage {
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..secs {
        tick.tick().await;
        samples.push(status_mb(pid, "VmRSS"));
    }
    tick.tick().await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    Usage {
        rss_mean: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        rss_max: samples.iter().copied().fold(0.0, f64::max),
        hwm: status_mb(pid, "VmHWM"),
        cpu_percent: 100.0 * cpu / wall,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

const ENDPOINTS: [&str; 5] = [
    "/api/status",
    "/api/devices",
    "/metrics",
    "/api/blocks",
    "/api/log",
];

/// Open-loop load: `rate` requests per second for `secs`, round-robin over [`ENDPOINTS`].
/// Latency runs from the request's scheduled time, so a slow answer delays nobody's clock.
async fn load(base: &str, rate: u64, secs: u64) -> (Vec<Vec<f64>>, Vec<u64>, u64) {
    let http = reqwest::Client::new();
    let results: Arc<Mutex<Vec<Vec<f64>>>> =
        Arc::new(Mutex::new(vec![Vec::new(); ENDPOINTS.len()]));
    let bytes: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; ENDPOINTS.len()]));
    let failures = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..rate * secs {
        let at = start + period * n as u32;
        tokio::time::sleep_until(at).await;
        let which = n as usize % ENDPOINTS.len();
        let (http, results, bytes, failures) = (
            http.clone(),
            results.clone(),
            bytes.clone(),
            failures.clone(),
        );
        let url = format!("{base}{}", ENDPOINTS[which]);
        tasks.push(tokio::spawn(async move {
            let body = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                _ => None,
            };
            let ms = at.elapsed().as_secs_f64() * 1000.0;
            match body {
                Some(b) => {
                    results.lock().await[which].push(ms);
                    bytes.lock().await[which] = b.len() as u64;
                }
                None => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let results = results.lock().await.clone();
    let bytes = bytes.lock().await.clone();
    (results, bytes, failures.load(Ordering::Relaxed))
}

fn main() {
    let o = parse_options();
    // One thread for the miners, the stream and the load: the daemon keeps the other core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(o));
}

async fn run(o: Options) {
    let bitcoind = bitcoind_from_scripts(&common::repo_root()).unwrap_or_else(|e| {
        panic!("this benchmark needs bitcoind: {e:#}\nget it with scripts/bitcoind.sh")
    });
    let mut node = RegtestNode::start(&bitcoind, &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let warmup = Duration::from_secs(10);
    println!(
        "api_load: {} boards x 4 emulated chips at {} H/s each ({}), {} Stratum miners, {} s per stage",
        o.boards,
        o.hashrate,
        if o.external_chains {
            "serial ports to hearth sim-chain processes"
        } else {
            "emulated inside the daemon"
        },
        o.miners,
        o.secs
    );

    // Stage 1: baseline, API off.
    let baseline = {
        let daemon = DaemonProcess::start(&node, &o, false).await;
        let notifies = Arc::new(AtomicU64::new(0));
        let miners: Vec<_> = (0..o.miners)
            .map(|i| tokio::spawn(miner(daemon.stratum.clone(), i, notifies.clone())))
            .collect();
        tokio::time::sleep(warmup).await;
        let n0 = notifies.load(Ordering::Relaxed);
        let usage = measure(daemon.pid(), o.secs).await;
        let n = notifies.load(Ordering::Relaxed) - n0;
        miners.iter().for_each(|m| m.abort());
        if n == 0 {
            println!("note: no new template reached the miners in this stage (no block found)");
        }
        println!(
            "baseline (API off): VmRSS mean {:.1} MB, max {:.1} MB, VmHWM {:.1} MB; CPU {:.2} % of a core; {n} notifies to the miners",
            usage.rss_mean, usage.rss_max, usage.hwm, usage.cpu_percent
        );
        usage
    };

    // Stage 2 and 3: the API on, a dashboard's stream open, then the load.
    let daemon = DaemonProcess::start(&node, &o, true).await;
    let base = format!("http://{}", daemon.api.clone().unwrap());
    let notifies = Arc::new(AtomicU64::new(0));
    let miners: Vec<_> = (0..o.miners)
        .map(|i| tokio::spawn(miner(daemon.stratum.clone(), i, notifies.clone())))
        .collect();
    tokio::time::sleep(warmup).await;
    let n0 = notifies.load(Ordering::Relaxed);
    let api_only = measure(daemon.pid(), o.secs).await;
    println!(
        "API on, no client: VmRSS mean {:.1} MB, max {:.1} MB, VmHWM {:.1} MB; CPU {:.2} % of a core; {} notifies to the miners",
        api_only.rss_mean,
        api_only.rss_max,
        api_only.hwm,
        api_only.cpu_percent,
        notifies.load(Ordering::Relaxed) - n0
    );
    let snapshots = Arc::new(AtomicU64::new(0));
    let stream = tokio::spawn(dashboard_stream(base.clone(), snapshots.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let devices: serde_json::Value = reqwest::get(format!("{base}/api/devices"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_count = devices.as_array().map_or(0, Vec::len);
    let s0 = snapshots.load(Ordering::Relaxed);
    let n0 = notifies.load(Ordering::Relaxed);
    let with_api = measure(daemon.pid(), o.secs).await;
    let streamed = snapshots.load(Ordering::Relaxed) - s0;
    let n = notifies.load(Ordering::Relaxed) - n0;
    println!(
        "API on, dashboard stream open: VmRSS mean {:.1} MB, max {:.1} MB, VmHWM {:.1} MB; CPU {:.2} % of a core; {streamed} snapshots streamed; {device_count} devices in /api/devices; {n} notifies to the miners",
        with_api.rss_mean, with_api.rss_max, with_api.hwm, with_api.cpu_percent
    );
    assert!(streamed > 0, "the stream sends snapshots");

    let pid = daemon.pid();
    let usage = tokio::spawn(measure(pid, o.secs));
    let own0 = cpu_seconds(std::process::id());
    let (latencies, bytes, failures) = load(&base, o.rate, o.secs).await;
    let own = cpu_seconds(std::process::id()) - own0;
    let under_load = usage.await.unwrap();
    stream.abort();
    miners.iter().for_each(|m| m.abort());
    println!(
        "API under {} req/s: VmRSS mean {:.1} MB, max {:.1} MB, VmHWM {:.1} MB; CPU {:.2} % of a core (load generator: {:.2} %)",
        o.rate,
        under_load.rss_mean,
        under_load.rss_max,
        under_load.hwm,
        under_load.cpu_percent,
        100.0 * own / o.secs as f64
    );
    let mut all = Vec::new();
    println!("| endpoint | requests | body | p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, path) in ENDPOINTS.iter().enumerate() {
        let mut l = latencies[i].clone();
        l.sort_by(f64::total_cmp);
        println!(
            "| {path} | {} | {:.1} KB | {:.2} ms | {:.2} ms | {:.2} ms |",
            l.len(),
            bytes[i] as f64 / 1024.0,
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or(f64::NAN)
        );
        all.extend(l);
    }
    all.sort_by(f64::total_cmp);
    println!(
        "| all | {} | | {:.2} ms | {:.2} ms | {:.2} ms |",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(f64::NAN)
    );
    drop(daemon);
    node.stop().await;

    println!();
    println!(
        "aims: RSS <= {RSS_AIM_MB} MB with the API and dashboard: {} ({:.1} MB max; API on, no client {:.1} MB; API off {:.1} MB)",
        if with_api.rss_max <= RSS_AIM_MB {
            "met"
        } else {
            "MISSED"
        },
        with_api.rss_max,
        api_only.rss_max,
        baseline.rss_max
    );
    println!(
        "      CPU < {CPU_AIM_PERCENT} % idle-mining with the dashboard open: {} ({:.2} %; API on, no client {:.2} %; API off {:.2} %)",
        if with_api.cpu_percent < CPU_AIM_PERCENT {
            "met"
        } else {
            "MISSED"
        },
        with_api.cpu_percent,
        api_only.cpu_percent,
        baseline.cpu_percent
    );
    if failures > 0 {
        println!("{failures} requests failed");
        std::process::exit(1);
    }
}
