//! The pure template path against a real node: a getblocktemplate reply becomes a coinbase,
//! a merkle root and a header; the CPU finds a nonce (regtest target) and bitcoind accepts the
//! block. Small heights exercise the BIP34 OP_1..OP_16 encoding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bitcoin::consensus::encode::serialize_hex;
use hearth::template::parse_template;
use hearth::work::{BIP320_MASK, JobFactory, TemplateWork};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_built_from_templates_are_accepted_at_heights_1_to_20() {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let (_, payout) = common::address("P2WPKH");
    let ids = Arc::new(AtomicU64::new(0));
    let mut factory = JobFactory::new(7, ids, BIP320_MASK);
    for expected_height in 1..=20u32 {
        let gbt = common::call(&rpc, "getblocktemplate", json!([{"rules": ["segwit"]}])).await;
        let template = parse_template(gbt.to_string().as_bytes()).unwrap();
        assert_eq!(template.height, expected_height);
        let work = Arc::new(
            TemplateWork::new(
                expected_height.into(),
                template,
                &payout,
                b"/hearth test/",
                true,
            )
            .unwrap(),
        );
        let job = factory.next_job(&work);
        let target = work.template.target;
        let nonce = (0u32..)
            .find(|n| target.is_met_by(job.header(job.version, *n).block_hash()))
            .unwrap();
        let block = job.block(job.version, nonce).unwrap();
        assert!(block.check_merkle_root());
        assert!(block.check_witness_commitment());
        let reply = common::call(&rpc, "submitblock", json!([serialize_hex(&block)])).await;
        assert!(
            reply.is_null(),
            "height {expected_height}: node rejected the block: {reply}"
        );
        assert_eq!(common::height(&rpc).await, u64::from(expected_height));
    }
}
