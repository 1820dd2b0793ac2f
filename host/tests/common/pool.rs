//! A pool member of the test's own making, speaking the pool protocol by hand (directly or
//! through a SOCKS5 proxy), and jobs whose coinbase pays a chosen list: for the pool tests and
//! the share round-trip benchmark.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bitcoin::{Network, ScriptBuf};
use hearth::pool::identity::{MemberId, MemberKey};
use hearth::pool::payout::Payee;
use hearth::regtest::RegtestNode;
use hearth::work::Job;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub struct RawMember {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    /// The current round's list and number (from the last `round` notice).
    pub payees: Vec<Payee>,
    pub round: u64,
    next_id: u64,
}

impl RawMember {
    pub async fn login(coordinator: &str, key: &MemberKey, script: &ScriptBuf) -> RawMember {
        Self::try_login(coordinator, None, key, script, false)
            .await
            .unwrap_or_else(|e| panic!("login refused: {e}"))
    }

    /// Log in at `coordinator` (through `socks5` when given), signing the challenge (or, with
    /// `forge`, some other challenge), and wait for the first round; the refusal otherwise.
    pub async fn try_login(
        coordinator: &str,
        socks5: Option<&str>,
        key: &MemberKey,
        script: &ScriptBuf,
        forge: bool,
    ) -> Result<RawMember, Value> {
        let (host, port) = coordinator.rsplit_once(':').unwrap();
        let stream = hearth::node::socks::connect(
            host,
            port.parse().unwrap(),
            socks5,
            Duration::from_secs(120),
        )
        .await
        .unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let hello: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let mut challenge: [u8; 32] = hex::decode(hello["params"]["challenge"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        if forge {
            challenge[0] ^= 1;
        }
        let login = json!({"id": 1, "method": "login", "params": {
            "member": key.id().to_string(),
            "payout": script.to_hex_string(),
            "signature": key.sign_auth(&challenge, script.as_bytes()).to_string(),
        }});
        write
            .write_all(format!("{login}\n").as_bytes())
            .await
            .unwrap();
        let mut m = RawMember {
            lines,
            write,
            payees: Vec::new(),
            round: 0,
            next_id: 2,
        };
        while m.round == 0 {
            let v = m.next().await;
            if !v["error"].is_null() {
                return Err(v);
            }
        }
        Ok(m)
    }

    pub async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("nothing from the coordinator in 30 s")
            .unwrap()
            .expect("the coordinator closed the connection");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["method"] == "round" {
            self.round = v["params"]["round"].as_u64().unwrap();
            self.payees = serde_json::from_value(v["params"]["payees"].clone()).unwrap();
        }
        v
    }

    /// Send a share for `job`'s header with `nonce`; the coordinator's answer.
    pub async fn share(&mut self, job: &Job, nonce: u32, round: u64) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let header = bitcoin::consensus::serialize(&job.header(job.version, nonce));
        let request = json!({"id": id, "method": "share", "params": {
            "round": round,
            "header": hex::encode(header),
            "coinbase": hex::encode(job.work.coinbase.legacy_bytes(job.extranonce())),
            "branch": job.work.branch.iter().map(|b| hex::encode(bitcoin::hashes::Hash::to_byte_array(*b))).collect::<Vec<_>>(),
        }});
        self.write
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let v = self.next().await;
            if v["id"] == json!(id) {
                return v;
            }
        }
    }
}

/// A job on `node`'s current template whose coinbase pays `payouts` and commits to `member`.
pub async fn job_paying(
    node: &RegtestNode,
    payouts: impl FnOnce(bitcoin::Amount) -> Vec<bitcoin::TxOut>,
    member: &MemberId,
) -> Job {
    let rpc = node.rpc().unwrap();
    let template =
        hearth::node::source::fetch_template(&rpc, Network::Signet, None, Duration::from_secs(10))
            .await
            .unwrap();
    let outputs = payouts(template.coinbase_value);
    let commitment = hearth::pool::identity::commitment(member);
    let work =
        hearth::work::TemplateWork::paying(1, template, &outputs, Some(&commitment), b"", true)
            .unwrap();
    hearth::work::JobFactory::new(
        7,
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
        hearth::work::BIP320_MASK,
    )
    .next_job(&std::sync::Arc::new(work))
}

/// The first `count` nonces from `from` on whose header meets `difficulty` but is not a block
/// (a block would have to carry its transactions).
pub fn share_nonces(job: &Job, difficulty: f64, from: u32, count: usize) -> Vec<u32> {
    let target = hearth::stratum::difficulty::target_for_difficulty(difficulty).unwrap();
    (from..)
        .filter(|n| {
            let hash = job.header(job.version, *n).block_hash();
            target.is_met_by(hash) && !job.work.template.target.is_met_by(hash)
        })
        .take(count)
        .collect()
}
