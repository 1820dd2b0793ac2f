//! Record a large `getblocktemplate` reply for the template benchmark: a regtest node with a
//! mempool of N signed transactions (default 3,000), the reply written as JSON.
//!
//!     cargo run --release -p hearth --example record_template -- host/benches/data/gbt-3000.json 3000
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bitcoin::key::Secp256k1;
use bitcoin::secp256k1::SecretKey;
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, OutPoint, PrivateKey, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Witness, absolute, transaction,
};
use serde_json::{Value, json};

fn sign(
    secp: &Secp256k1<bitcoin::secp256k1::All>,
    secret: &SecretKey,
    public: &CompressedPublicKey,
    tx: &mut Transaction,
    values: &[Amount],
) {
    let spent = Address::p2wpkh(public, Network::Regtest).script_pubkey();
    for (i, value) in values.iter().enumerate() {
        let sighash = SighashCache::new(&*tx)
            .p2wpkh_signature_hash(i, &spent, *value, EcdsaSighashType::All)
            .unwrap();
        let sig = secp.sign_ecdsa(&bitcoin::secp256k1::Message::from(sighash), secret);
        let sig = bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        };
        tx.input[i].witness = Witness::p2wpkh(&sig, &public.0);
    }
}

/// An unsigned version-2 transaction spending `outpoint` to `output`.
fn spending(outpoint: OutPoint, output: Vec<TxOut>) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "gbt.json".into());
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let binary = hearth::regtest::find_bitcoind().unwrap();
    let mut node = hearth::regtest::RegtestNode::start(
        &binary,
        &[
            "-maxmempool=300",
            "-limitancestorcount=10000",
            "-limitdescendantcount=10000",
        ],
    )
    .unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let rpc = node.rpc().unwrap();
    let secp = Secp256k1::new();
    let secret = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let public =
        CompressedPublicKey::from_private_key(&secp, &PrivateKey::new(secret, Network::Regtest))
            .unwrap();
    let ours = Address::p2wpkh(&public, Network::Regtest);
    let call = |m: &'static str, p: Value| {
        let rpc = rpc.clone();
        async move {
            rpc.call::<Value>(m, p)
                .await
                .unwrap_or_else(|e| panic!("{m}: {e}"))
        }
    };
    // Enough mature coinbases to fan out into `count` outputs, 1,000 per splitting transaction
    // (coinbases at regtest heights below 150 are worth 50 BTC).
    let splits = count.div_ceil(1000);
    let hashes = call("generatetoaddress", json!([100 + splits, ours.to_string()])).await;
    let mut utxos = Vec::new();
    for hash in hashes.as_array().unwrap().iter().take(splits) {
        let block = call("getblock", json!([hash, 2])).await;
        let cb = &block["tx"][0];
        let value = Amount::from_btc(cb["vout"][0]["value"].as_f64().unwrap()).unwrap();
        let outpoint = OutPoint {
            txid: cb["txid"].as_str().unwrap().parse().unwrap(),
            vout: 0,
        };
        let per = (value - Amount::from_sat(200_000)) / 1000;
        let mut tx = spending(
            outpoint,
            (0..1000)
                .map(|_| TxOut {
                    value: per,
                    script_pubkey: ours.script_pubkey(),
                })
                .collect(),
        );
        sign(&secp, &secret, &public, &mut tx, &[value]);
        let txid = tx.compute_txid();
        call(
            "sendrawtransaction",
            json!([bitcoin::consensus::encode::serialize_hex(&tx)]),
        )
        .await;
        utxos.extend((0..1000u32).map(|vout| (OutPoint { txid, vout }, per)));
    }
    call("generatetoaddress", json!([1, ours.to_string()])).await;
    // One spend per output, each paying a slightly different fee so the template has an order.
    for (i, (outpoint, value)) in utxos.into_iter().take(count).enumerate() {
        let fee = Amount::from_sat(1_000 + i as u64);
        let mut tx = spending(
            outpoint,
            vec![
                TxOut {
                    value: (value - fee) / 2,
                    script_pubkey: ours.script_pubkey(),
                },
                TxOut {
                    value: (value - fee) / 2,
                    script_pubkey: ours.script_pubkey(),
                },
            ],
        );
        sign(&secp, &secret, &public, &mut tx, &[value]);
        call(
            "sendrawtransaction",
            json!([bitcoin::consensus::encode::serialize_hex(&tx)]),
        )
        .await;
    }
    let body = rpc
        .call_bytes(
            "getblocktemplate",
            json!([{"rules": ["segwit"]}]),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    let result = &reply["result"];
    std::fs::write(&out, serde_json::to_vec(result).unwrap()).unwrap();
    println!(
        "{out}: {} transactions, {} bytes",
        result["transactions"].as_array().unwrap().len(),
        std::fs::metadata(&out).unwrap().len()
    );
    node.stop().await;
}
