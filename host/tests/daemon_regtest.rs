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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payout_type_gets_the_whole_reward() {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    for (kind, address, script) in common::addresses() {
        let journal = tempfile::tempdir().unwrap();
        let config = common::config_for(&node, &address.to_string(), journal.path(), common::SIM_4_BM1370);
        let daemon = Daemon::start(config).await.unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        let mut events = daemon.events.subscribe();
        let blocks = common::accepted_blocks(&mut events, 2, Duration::from_secs(60)).await;
        daemon.shutdown().await;
        for (height, hash) in blocks {
            let block = common::call(&rpc, "getblock", json!([hash.to_string(), 2])).await;
            let coinbase = &block["tx"][0];
            let stats = common::call(&rpc, "getblockstats", json!([height, ["subsidy", "totalfee"]])).await;
            let reward = stats["subsidy"].as_u64().unwrap() + stats["totalfee"].as_u64().unwrap();
            let outputs = coinbase["vout"].as_array().unwrap();
            let paying: Vec<_> = outputs.iter().filter(|o| o["value"].as_f64().unwrap() > 0.0).collect();
            assert_eq!(paying.len(), 1, "{kind}: one paying output");
            assert_eq!(paying[0]["scriptPubKey"]["hex"].as_str().unwrap(), hex::encode(script.as_bytes()), "{kind}");
            assert_eq!((paying[0]["value"].as_f64().unwrap() * 1e8).round() as u64, reward, "{kind}: full reward");
            assert_eq!(paying[0]["scriptPubKey"]["address"].as_str().unwrap(), address.to_string(), "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_version_with_bits_inside_the_rolling_mask_still_gives_accepted_blocks() {
    // testdummy (bit 28, inside the BIP320 mask) is STARTED after the first 144-block period, so
    // the node's templates carry version 0x30000000.
    let node = common::node(&["-vbparams=testdummy:0:9999999999"]).await;
    let rpc = node.rpc().unwrap();
    let burn = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    common::call(&rpc, "generatetoaddress", json!([144, burn])).await;
    let gbt = common::call(&rpc, "getblocktemplate", json!([{"rules": ["segwit"]}])).await;
    let version = gbt["version"].as_u64().unwrap() as u32;
    assert_ne!(version & 0x1FFF_E000, 0, "template version {version:#x} has no bit inside the mask");
    let journal = tempfile::tempdir().unwrap();
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let config = common::config_for(&node, &address.to_string(), journal.path(), common::SIM_4_BM1370);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    let blocks = common::accepted_blocks(&mut events, 10, Duration::from_secs(60)).await;
    // The chips rolled bits 28..13; the accepted headers' versions keep everything outside the
    // mask from the template.
    for (_, hash) in blocks {
        let header = common::call(&rpc, "getblockheader", json!([hash.to_string()])).await;
        let v = header["version"].as_u64().unwrap() as u32;
        assert_eq!(v & !0x1FFF_E000, version & !0x1FFF_E000, "{v:#x}");
    }
    assert_eq!(daemon.stats.snapshot()[0].hardware_errors, 0);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tip_change_from_outside_replaces_work_on_every_device() {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    // Two boards finding about four results a second between them, with 400 ms of reply latency so that
    // results for replaced work come back after the change.
    let devices = common::sim_device("a", 2, 30000.0, 400) + &common::sim_device("b", 2, 30000.0, 400);
    let config = common::config_for(&node, &address.to_string(), journal.path(), &devices);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    common::wait_event(&mut events, Duration::from_secs(30), "first work", |e| matches!(e, hearth::events::Event::NewWork { .. })).await;
    let burn = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    let mut external = Vec::new();
    for round in 0..5 {
        let hashes = common::call(&rpc, "generatetoaddress", json!([1, burn])).await;
        let tip: bitcoin::BlockHash = hashes[0].as_str().unwrap().parse().unwrap();
        external.push(tip);
        let changed = tokio::time::Instant::now();
        // Every board's chain receives a job on the new tip.
        for index in 0..2 {
            loop {
                let stats = daemon.sim(index).map(|s| s.stats());
                let on_tip = stats.and_then(|s| s.last_job).is_some_and(|(_, prev)| prev == tip.to_byte_array());
                if on_tip {
                    break;
                }
                if changed.elapsed() > Duration::from_secs(10) {
                    let last = daemon.sim(index).map(|s| s.stats()).and_then(|s| s.last_job);
                    let prev = last.map(|(_, p)| bitcoin::BlockHash::from_byte_array(p));
                    panic!("round {round}: board {index} never got work on {tip}; last job prev {prev:?}, height {}, sim {:?}", common::height(&rpc).await, daemon.sim(index).map(|s| s.stats()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let stats = daemon.stats.snapshot();
    let stale: u64 = stats.iter().map(|d| d.stale).sum();
    assert!(stale > 0, "late results for replaced work were not counted stale: {stats:?}");
    // Blocks our boards found on replaced tips never displaced the node's blocks.
    daemon.shutdown().await;
    for tip in &external {
        let header = common::call(&rpc, "getblockheader", json!([tip.to_string()])).await;
        assert!(header["confirmations"].as_i64().unwrap() > 0, "external block {tip} left the active chain");
    }
    assert!(stats.iter().all(|d| d.hardware_errors == 0));
}

use bitcoin::hashes::Hash as _;
