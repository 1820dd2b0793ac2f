//! The daemon end to end against a real bitcoind on regtest, with emulated BM13xx chains driven
//! through the real driver: blocks are found, journalled, submitted and confirmed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use hearth::daemon::Daemon;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mines_100_blocks_with_a_simulated_4_chip_board() {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let (_, address, script) = common::addresses().into_iter().find(|(n, _, _)| *n == "P2WPKH").unwrap();
    let config = common::config_for(&node, &address.to_string(), journal.path(), common::SIM_4_BM1370);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    let blocks = common::accepted_blocks(&mut events, 100, Duration::from_secs(240)).await;
    let height = common::height(&rpc).await;
    assert!(height >= 100, "node height {height}");
    // Every accepted block is on the chain at its height and pays our script the full reward.
    for (h, hash) in &blocks {
        let on_chain = common::call(&rpc, "getblockhash", json!([h])).await;
        assert_eq!(on_chain.as_str().unwrap(), hash.to_string(), "height {h}");
        let block = common::call(&rpc, "getblock", json!([hash.to_string(), 2])).await;
        let coinbase = &block["tx"][0];
        let stats = common::call(&rpc, "getblockstats", json!([h, ["subsidy", "totalfee"]])).await;
        let reward = stats["subsidy"].as_u64().unwrap() + stats["totalfee"].as_u64().unwrap();
        let out0 = &coinbase["vout"][0];
        assert_eq!(out0["scriptPubKey"]["hex"].as_str().unwrap(), hex::encode(script.as_bytes()));
        let paid = (out0["value"].as_f64().unwrap() * 1e8).round() as u64;
        assert_eq!(paid, reward, "height {h}: coinbase pays {paid}, reward is {reward}");
    }
    let heights: Vec<u32> = blocks.iter().map(|b| b.0).collect();
    assert!((1..=16).all(|h| heights.contains(&h)), "heights 1..16 (BIP34 OP_N) mined: {heights:?}");
    let stats = daemon.stats.snapshot();
    assert_eq!(stats[0].hardware_errors, 0, "{:?}", stats[0]);
    assert_eq!(stats[0].duplicates, 0);
    assert_eq!(stats[0].chips.len(), 4);
    assert!(stats[0].chips.iter().all(|c| c.shares > 0), "every chip contributed: {:?}", stats[0].chips);
    // Every accepted block went through the journal.
    assert!(daemon.journal.entries(hearth::submit::Outcome::Accepted) >= blocks.len());
    assert_eq!(daemon.journal.entries(hearth::submit::Outcome::Rejected), 0);
    daemon.shutdown().await;
}
