//! Template to work for a mainnet-size template (3,000 transactions, 1.96 MB of JSON recorded
//! from bitcoind by `examples/record_template.rs`): parse, coinbase, merkle branch, first job.
//! Baseline in the same run: the straightforward way (generic JSON value, every transaction
//! deserialised and hashed, the whole merkle tree rebuilt per job).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bitcoin::hashes::Hash;
use bitcoin::{ScriptBuf, Transaction};
use criterion::{Criterion, criterion_group, criterion_main};
use hearth::template::parse_template;
use hearth::work::{BIP320_MASK, JobFactory, TemplateWork};

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/gbt-3000.json"
    ))
    .unwrap()
}

fn template_to_work(c: &mut Criterion) {
    let json = fixture();
    let payout = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
    let mut g = c.benchmark_group("template to work (3,000 tx)");
    g.sample_size(30);
    g.bench_function("hearth: parse + coinbase + branch + first job", |b| {
        let ids = Arc::new(AtomicU64::new(0));
        let mut factory = JobFactory::new(0, ids, BIP320_MASK);
        b.iter(|| {
            let template = parse_template(black_box(&json)).unwrap();
            let work =
                Arc::new(TemplateWork::new(1, template, &payout, b"/hearth/", true).unwrap());
            black_box(factory.next_job(&work).merkle_root)
        })
    });
    g.bench_function("hearth: next job on existing work", |b| {
        let template = parse_template(&json).unwrap();
        let work = Arc::new(TemplateWork::new(1, template, &payout, b"/hearth/", true).unwrap());
        let mut factory = JobFactory::new(0, Arc::new(AtomicU64::new(0)), BIP320_MASK);
        b.iter(|| black_box(factory.next_job(&work).merkle_root))
    });
    g.bench_function(
        "baseline: serde Value + deserialise every tx + full merkle root",
        |b| {
            b.iter(|| {
                let v: serde_json::Value = serde_json::from_slice(black_box(&json)).unwrap();
                let txs: Vec<Transaction> = v["transactions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        bitcoin::consensus::encode::deserialize_hex(t["data"].as_str().unwrap())
                            .unwrap()
                    })
                    .collect();
                let leaves = std::iter::once(bitcoin::Txid::all_zeros())
                    .chain(txs.iter().map(|t| t.compute_txid()));
                black_box(bitcoin::merkle_tree::calculate_root(
                    leaves.map(|t| t.to_raw_hash()),
                ))
            })
        },
    );
    g.finish();
}

criterion_group!(benches, template_to_work);
criterion_main!(benches);
