//! `hearth demo`: the whole stack with nothing configured. A throwaway regtest bitcoind (built
//! once by `scripts/bitcoind.sh`), an emulated BM13xx board driven through the real driver, and
//! the daemon mining real blocks that the node accepts.

use std::time::{Duration, Instant};

use anyhow::Context;
use bitcoin::key::Secp256k1;
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Address, CompressedPublicKey, Network, PrivateKey};
use clap::Args;

use crate::daemon::Daemon;
use crate::events::Event;
use crate::regtest::{RegtestNode, find_bitcoind};

/// Arguments of `hearth demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Stop after this many accepted blocks (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 20)]
    pub blocks: u32,
    /// Chip model of the emulated board.
    #[arg(long, default_value = "BM1370")]
    pub model: String,
    /// Chips on the emulated board.
    #[arg(long, default_value_t = 4)]
    pub chips: u16,
    /// Hashes per second per emulated chip (0 = as fast as the CPU allows). The default finds
    /// about two blocks a second on regtest.
    #[arg(long, default_value_t = 32768.0)]
    pub hashrate: f64,
    /// Where the dashboard and API listen; when 127.0.0.1:8080 is taken the demo picks a free
    /// port and says which.
    #[arg(long)]
    pub api: Option<String>,
}

/// The demo's API address: the one asked for, else 8080 on loopback when it is free, else any
/// free port (another hearth may be running).
fn demo_api_listen(asked: Option<&str>) -> String {
    if let Some(a) = asked {
        return a.to_string();
    }
    match std::net::TcpListener::bind("127.0.0.1:8080") {
        Ok(_) => "127.0.0.1:8080".into(),
        Err(_) => "127.0.0.1:0".into(),
    }
}

fn fresh_address() -> anyhow::Result<Address> {
    let secp = Secp256k1::new();
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = SecretKey::from_slice(&bytes).context("random key")?;
    let public =
        CompressedPublicKey::from_private_key(&secp, &PrivateKey::new(secret, Network::Regtest))
            .context("public key")?;
    Ok(Address::p2wpkh(&public, Network::Regtest))
}

/// Run the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let binary = find_bitcoind()?;
    println!("starting a throwaway regtest node ({})", binary.display());
    let mut node = RegtestNode::start(&binary, &[])?;
    node.wait_ready(Duration::from_secs(60)).await?;
    let journal = tempfile::Builder::new()
        .prefix("hearth-demo-journal-")
        .tempdir()?;
    let address = fresh_address()?;
    let text = format!(
        r#"
        [node]
        network = "regtest"
        url = "{url}"
        cookie = "{cookie}"
        poll_interval_secs = 1
        [payout]
        address = "{address}"
        tag = "/hearth demo/"
        [journal]
        dir = "{journal}"
        [api]
        listen = "{api}"
        [[device]]
        kind = "sim"
        name = "board0"
        model = "{model}"
        chips = {chips}
        floor_bits = 16
        hashrate = {hashrate}
        "#,
        url = node.rpc_url(),
        cookie = node.cookie_path().display(),
        journal = journal.path().display(),
        model = args.model,
        chips = args.chips,
        hashrate = args.hashrate,
        api = demo_api_listen(args.api.as_deref()),
    );
    let config = crate::config::Config::parse(&text)?.validate()?;
    println!("paying {address}");
    let daemon = Daemon::start(config).await?;
    if let Some(addr) = daemon.api_addr {
        println!(
            "dashboard: http://{addr}/  (API: http://{addr}/api/status, metrics: http://{addr}/metrics)"
        );
    }
    let mut events = daemon.events.subscribe();
    let started = Instant::now();
    let mut accepted = 0u32;
    // Ctrl-C or `kill`: either way the demo stops its throwaway bitcoind on the way out.
    let stop = crate::daemon::wait_for_signal();
    tokio::pin!(stop);
    let result = loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = &mut stop => break Ok(()),
        };
        match event {
            Ok(Event::DeviceUp { device, detail }) => println!("{device}: {detail} ready"),
            Ok(Event::BlockAccepted {
                height,
                hash,
                device,
            }) => {
                accepted += 1;
                println!("block {height:>4} accepted by bitcoind  {hash}  found by {device}");
                if args.blocks > 0 && accepted >= args.blocks {
                    break Ok(());
                }
            }
            Ok(Event::BlockRejected { height, reason, .. }) => {
                break Err(anyhow::anyhow!(
                    "block {height} rejected by the node: {reason}"
                ));
            }
            Ok(Event::DeviceError { device, error }) => println!("{device}: {error}"),
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => break Err(e.into()),
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    for d in daemon.stats.snapshot() {
        println!(
            "{}: {} blocks accepted in {elapsed:.1} s, {} shares, {} stale, {} hardware errors, {} chips",
            d.name,
            d.blocks_accepted,
            d.shares,
            d.stale,
            d.hardware_errors,
            d.chips.len()
        );
    }
    daemon.shutdown().await;
    node.stop().await;
    result
}
