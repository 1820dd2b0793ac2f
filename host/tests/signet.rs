//! Issue 7, item 10: Hearth mines a real custom signet (`-signetchallenge=51`, OP_TRUE) and
//! refuses, at start-up and with a clear message, a signet whose blocks need a signature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bitcoin::{Address, Network};
use hearth::daemon::Daemon;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hearth_mines_blocks_a_custom_op_true_signet_accepts() {
    let node = common::signet_node("51", &[]).await;
    let rpc = node.rpc().unwrap();
    let info = common::call(&rpc, "getblockchaininfo", json!([])).await;
    assert_eq!(info["chain"], "signet");
    assert_eq!(info["blocks"], 0);
    assert_eq!(
        info["initialblockdownload"], true,
        "a fresh signet is in IBD until block 1: the daemon must not wait for it to end"
    );
    let key = common::key();
    let address = Address::p2wpkh(&key.public, Network::Signet);
    let journal = tempfile::tempdir().unwrap();
    // An emulated BM1370 chain through the real chip driver (it hashes for real, with SHA-NI
    // where the CPU has it): signet blocks need about 2^22 hashes (bits 1e0377ae), and shares
    // at 20 bits are 4 times easier than a block.
    let devices = "[[device]]\nkind = \"sim\"\nmodel = \"BM1370\"\nchips = 2\nfloor_bits = 20\n";
    let config = common::config_for(&node, &address.to_string(), journal.path(), devices);
    let started = Instant::now();
    // Start-up must not wait for an IBD that only mining can end.
    let daemon = tokio::time::timeout(Duration::from_secs(60), Daemon::start(config))
        .await
        .expect("start-up still waiting after 60 s (initial block download?)")
        .unwrap();
    let mut events = daemon.events.subscribe();
    let blocks = common::accepted_blocks(&mut events, 10, Duration::from_secs(180)).await;
    let elapsed = started.elapsed();
    eprintln!(
        "signet: {} blocks in {:.1} s ({:.1} s per block)",
        blocks.len(),
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / blocks.len() as f64
    );
    let stats = daemon.stats.snapshot();
    daemon.shutdown().await;
    assert_eq!(stats[0].hardware_errors, 0, "{:?}", stats[0]);
    // Shares (20 bits) are easier than signet blocks (about 22.2 bits).
    assert!(stats[0].shares > 10, "{:?}", stats[0]);

    // The node's own verdict: our blocks are its chain, paying our script the whole reward.
    let heights: Vec<u32> = blocks.iter().map(|b| b.0).collect();
    assert_eq!(heights, (1..=10).collect::<Vec<u32>>());
    for (height, hash) in &blocks {
        let on_chain = common::call(&rpc, "getblockhash", json!([height])).await;
        assert_eq!(on_chain.as_str().unwrap(), hash.to_string());
        let block = common::call(&rpc, "getblock", json!([hash.to_string(), 2])).await;
        assert_eq!(block["bits"], "1e0377ae", "real signet difficulty");
        let coinbase = &block["tx"][0];
        assert_eq!(
            coinbase["vout"][0]["scriptPubKey"]["address"],
            address.to_string()
        );
        assert_eq!(coinbase["vout"][0]["value"].as_f64().unwrap(), 50.0);
        // No signet solution is needed for OP_TRUE, but the witness commitment is required.
        let commitment = coinbase["vout"].as_array().unwrap().last().unwrap();
        assert!(
            commitment["scriptPubKey"]["hex"]
                .as_str()
                .unwrap()
                .starts_with("6a24aa21a9ed"),
            "{commitment}"
        );
    }
    let info = common::call(&rpc, "getblockchaininfo", json!([])).await;
    assert_eq!(info["blocks"], 10);
    assert_eq!(info["initialblockdownload"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signet_whose_blocks_need_a_signature_is_refused_at_start_up() {
    // A 1-of-1 challenge: <pubkey> OP_CHECKSIG.
    let key = common::key();
    let challenge = format!("21{}ac", key.public);
    let node = common::signet_node(&challenge, &[]).await;
    let address = Address::p2wpkh(&key.public, Network::Signet);
    let journal = tempfile::tempdir().unwrap();
    let devices = "[[device]]\nkind = \"cpu\"\nthreads = 1\n";
    let config = common::config_for(&node, &address.to_string(), journal.path(), devices);
    let err = tokio::time::timeout(Duration::from_secs(30), Daemon::start(config))
        .await
        .expect("start-up must fail at once, not wait")
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&challenge) && text.contains("cannot sign") && text.contains("OP_CHECKSIG"),
        "{text}"
    );
}
