//! Start-up checks against the node: reachable, warmed up, on the configured network, out of
//! initial block download, agrees with our payout script, and publishes ZMQ if asked to.

use std::time::Duration;

use anyhow::{Context, bail};
use bitcoin::{Address, Network, ScriptBuf};
use serde::Deserialize;
use serde_json::json;

use super::rpc::{RpcClient, RpcError, code};
use crate::config::core_chain_name;

/// What `getblockchaininfo` told us.
#[derive(Debug, Clone, Deserialize)]
pub struct ChainInfo {
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub chain: String,
    /// Height of the tip.
    pub blocks: u64,
    /// Headers known.
    pub headers: u64,
    /// Tip hash.
    pub bestblockhash: String,
    /// Still syncing.
    #[serde(rename = "initialblockdownload")]
    pub initial_block_download: bool,
    /// Estimated share of the chain verified, 0 to 1.
    #[serde(rename = "verificationprogress", default)]
    pub verification_progress: f64,
    /// The signet's block challenge, hex (only on signet).
    #[serde(default)]
    pub signet_challenge: Option<String>,
}

/// Whether to mine although the node reports initial block download. Mainnet and testnet: never.
/// Regtest: always (a fresh chain stays "in IBD" until its first block). Signet: when the node
/// knows no header beyond its tip, as on a fresh custom signet at height 0, where only mining
/// ends IBD. Core serves templates on test chains in IBD (rpc/mining.cpp `isTestChain`).
pub fn mine_during_ibd(network: Network, info: &ChainInfo) -> bool {
    match network {
        Network::Regtest => true,
        Network::Signet => info.headers <= info.blocks,
        _ => false,
    }
}

/// Wait for the node to answer (up to `connect_timeout` while it is unreachable or warming up),
/// check its network, and wait out initial block download (see [`mine_during_ibd`] for the test
/// chains where waiting would be forever).
pub async fn wait_ready(
    rpc: &RpcClient,
    network: Network,
    connect_timeout: Duration,
) -> anyhow::Result<ChainInfo> {
    // No "last logged" time yet: `Instant::now() - 60 s` is not representable on every platform
    // (it panics where the monotonic clock starts at boot), so the first retry logs via `None`.
    let mut last_log: Option<tokio::time::Instant> = None;
    let info: ChainInfo = rpc
        .call_retrying("getblockchaininfo", json!([]), connect_timeout, |e| {
            let now = tokio::time::Instant::now();
            if log_due(last_log, now, Duration::from_secs(10)) {
                last_log = Some(now);
                match e {
                    RpcError::Rpc { code: code::IN_WARMUP, message, .. } => {
                        tracing::info!(%message, "node is warming up; waiting")
                    }
                    other => tracing::warn!(error = %other, "node not answering yet; retrying"),
                }
            }
        })
        .await
        .map_err(|e| match e {
            RpcError::Unreachable { .. } | RpcError::Timeout { .. } | RpcError::Cookie { .. } => anyhow::anyhow!(
                "{e}\nIs bitcoind running with server=1, on {network}, and is node.url / the cookie path right?"
            ),
            other => anyhow::Error::new(other),
        })?;
    let expected = core_chain_name(network);
    if info.chain != expected {
        bail!(
            "the node at {} is on {:?} but node.network says {expected:?}",
            rpc.url(),
            info.chain
        );
    }
    if !info.initial_block_download || mine_during_ibd(network, &info) {
        return Ok(info);
    }
    // A sync takes hours to days: one line a minute, with an ETA from the rate so far.
    let first = (tokio::time::Instant::now(), info.verification_progress);
    tracing::info!(
        "node is in initial block download; mining starts when it ends. {}",
        ibd_progress(&info, None)
    );
    let mut last_log = first.0;
    loop {
        tokio::time::sleep(Duration::from_secs(15)).await;
        let info: ChainInfo = rpc
            .call("getblockchaininfo", json!([]))
            .await
            .context("waiting out initial block download")?;
        if !info.initial_block_download || mine_during_ibd(network, &info) {
            tracing::info!(blocks = info.blocks, "node finished initial block download");
            return Ok(info);
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(last_log) >= Duration::from_secs(60) {
            last_log = now;
            let rate =
                (info.verification_progress - first.1) / now.duration_since(first.0).as_secs_f64();
            tracing::info!("node syncing: {}", ibd_progress(&info, Some(rate)));
        }
    }
}

/// One line on a sync: blocks of headers, verification progress, and the time left at `rate`
/// (progress per second) when there is one.
pub fn ibd_progress(info: &ChainInfo, rate: Option<f64>) -> String {
    let done = info.verification_progress.clamp(0.0, 1.0);
    let mut line = format!(
        "block {} of {} headers, {:.2}% verified",
        info.blocks,
        info.headers,
        done * 100.0
    );
    match rate {
        Some(rate) if rate > 0.0 => {
            let secs = ((1.0 - done) / rate).min(1e9) as u64;
            line.push_str(&format!(", about {} left", human_duration(secs)));
        }
        Some(_) => line.push_str(", no progress measured yet"),
        None => {}
    }
    line
}

fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs / 60 % 60),
        _ => format!("{} d {} h", secs / 86_400, secs / 3600 % 24),
    }
}

/// Refuse a signet whose blocks Hearth cannot make valid. A signet block must satisfy the
/// chain's challenge script with a solution carried in the coinbase's witness commitment
/// (signet.cpp `CheckSignetBlockSolution`); Hearth has no keys, so it can only mine a signet whose
/// challenge an empty solution satisfies, and then the block carries no solution at all (Core
/// accepts a missing solution: "allow this to support OP_TRUE as trivial block challenge").
pub fn check_signet_challenge(info: &ChainInfo) -> anyhow::Result<()> {
    let Some(hex_challenge) = &info.signet_challenge else {
        bail!(
            "the node is on signet but getblockchaininfo has no signet_challenge; is this Bitcoin Core 0.21 or later?"
        );
    };
    let challenge = ScriptBuf::from_hex(hex_challenge)
        .with_context(|| format!("the node's signet_challenge {hex_challenge:?} is not hex"))?;
    if empty_solution_satisfies(&challenge) {
        return Ok(());
    }
    bail!(
        "this signet's block challenge is {hex_challenge} ({}): its blocks must be signed, and Hearth cannot sign signet blocks. Hearth mines only a custom signet whose challenge needs no signature, such as OP_TRUE (bitcoind -signet -signetchallenge=51).",
        challenge.to_asm_string()
    )
}

/// Whether an empty scriptSig and an empty witness satisfy `challenge` under Core's signet flags
/// (P2SH, WITNESS, DERSIG, NULLDUMMY; no CLEANSTACK, no MINIMALDATA). Deliberately narrow: only
/// scripts made of pushes, whose last push is true. P2SH (needs a redeem script) and every
/// witness program (v0 needs a witness; later versions depend on flags Core may add) are refused,
/// so Hearth never accepts a challenge its blocks could fail.
pub fn empty_solution_satisfies(challenge: &bitcoin::Script) -> bool {
    use bitcoin::opcodes::all::{OP_PUSHNUM_1, OP_PUSHNUM_16, OP_PUSHNUM_NEG1};
    use bitcoin::script::Instruction;
    if challenge.is_p2sh() || challenge.is_witness_program() {
        return false;
    }
    let mut top: Option<Vec<u8>> = None;
    for instruction in challenge.instructions() {
        match instruction {
            Ok(Instruction::PushBytes(bytes)) => top = Some(bytes.as_bytes().to_vec()),
            Ok(Instruction::Op(op)) if op == OP_PUSHNUM_NEG1 => top = Some(vec![0x81]),
            Ok(Instruction::Op(op))
                if (OP_PUSHNUM_1.to_u8()..=OP_PUSHNUM_16.to_u8()).contains(&op.to_u8()) =>
            {
                top = Some(vec![op.to_u8() - OP_PUSHNUM_1.to_u8() + 1])
            }
            // Any other opcode (a signature check, a hash lock...) or a malformed push.
            _ => return false,
        }
    }
    // Script's CastToBool: any non-zero byte, except a lone sign bit at the end (negative zero).
    top.is_some_and(|v| {
        v.iter()
            .enumerate()
            .any(|(i, &b)| b != 0 && !(i == v.len() - 1 && b == 0x80))
    })
}

/// Whether a rate-limited log line is due at `now`: always the first time, then once `every`
/// has passed. Never subtracts from an `Instant`, so it cannot underflow.
pub(crate) fn log_due(
    last: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    every: Duration,
) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) > every)
}

/// Cross-check the payout with the node: it must call the address valid for its chain and derive
/// the very script we will pay.
pub async fn check_payout(
    rpc: &RpcClient,
    address: &Address,
    script: &ScriptBuf,
) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Validation {
        isvalid: bool,
        #[serde(rename = "scriptPubKey", default)]
        script_pubkey: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let v: Validation = rpc
        .call("validateaddress", json!([address.to_string()]))
        .await
        .context("validateaddress")?;
    if !v.isvalid {
        bail!(
            "the node says payout address {address} is invalid: {}",
            v.error.unwrap_or_default()
        );
    }
    let ours = hex::encode(script.as_bytes());
    match v.script_pubkey {
        Some(theirs) if theirs == ours => Ok(()),
        theirs => bail!(
            "payout script mismatch for {address}: node derives {theirs:?}, Hearth derives {ours}"
        ),
    }
}

/// Check that the node publishes `hashblock` on `endpoint`.
pub async fn check_zmq(rpc: &RpcClient, endpoint: &str) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Notification {
        #[serde(rename = "type")]
        kind: String,
        address: String,
    }
    let list: Vec<Notification> = match rpc.call("getzmqnotifications", json!([])).await {
        Ok(list) => list,
        Err(RpcError::Rpc {
            code: code::METHOD_NOT_FOUND,
            ..
        }) => {
            bail!(
                "node.zmq_hashblock is set but this bitcoind was built without ZMQ; remove the key or rebuild with ZMQ"
            )
        }
        Err(e) => return Err(e).context("getzmqnotifications"),
    };
    if list
        .iter()
        .any(|n| n.kind == "pubhashblock" && same_endpoint(&n.address, endpoint))
    {
        return Ok(());
    }
    let have: Vec<String> = list
        .iter()
        .map(|n| format!("{} {}", n.kind, n.address))
        .collect();
    bail!(
        "the node does not publish hashblock on {endpoint} (it has: {have:?}); add zmqpubhashblock={endpoint} to bitcoin.conf"
    )
}

fn same_endpoint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.replace("0.0.0.0", "127.0.0.1")
            .replace("localhost", "127.0.0.1")
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(chain: &str, blocks: u64, headers: u64, challenge: Option<&str>) -> ChainInfo {
        ChainInfo {
            chain: chain.into(),
            blocks,
            headers,
            bestblockhash: String::new(),
            initial_block_download: true,
            verification_progress: 0.5,
            signet_challenge: challenge.map(str::to_string),
        }
    }

    #[test]
    fn sync_progress_in_one_line() {
        let i = info("main", 812_000, 850_000, None);
        assert_eq!(
            ibd_progress(&i, None),
            "block 812000 of 850000 headers, 50.00% verified"
        );
        // 1% in 10 minutes: the other 50% in 500 minutes.
        assert_eq!(
            ibd_progress(&i, Some(0.01 / 600.0)),
            "block 812000 of 850000 headers, 50.00% verified, about 8 h 20 min left"
        );
        assert_eq!(
            ibd_progress(&i, Some(0.0)),
            "block 812000 of 850000 headers, 50.00% verified, no progress measured yet"
        );
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(3 * 86_400 + 7200), "3 d 2 h");
    }

    #[test]
    fn the_first_retry_is_logged_and_then_every_10_s() {
        // The earliest instant this process can make: nothing is subtracted from it.
        let now = tokio::time::Instant::now();
        let every = Duration::from_secs(10);
        assert!(log_due(None, now, every));
        assert!(!log_due(Some(now), now, every));
        assert!(!log_due(Some(now), now + every, every));
        assert!(log_due(
            Some(now),
            now + every + Duration::from_millis(1),
            every
        ));
        // A "last" in the future (never happens, but must not panic either).
        assert!(!log_due(Some(now + every), now, every));
    }

    #[test]
    fn ibd_is_waited_out_except_where_only_mining_ends_it() {
        assert!(mine_during_ibd(
            Network::Regtest,
            &info("regtest", 0, 0, None)
        ));
        // A fresh custom signet: height 0, no headers beyond it.
        assert!(mine_during_ibd(
            Network::Signet,
            &info("signet", 0, 0, Some("51"))
        ));
        // A signet node still syncing from peers.
        assert!(!mine_during_ibd(
            Network::Signet,
            &info("signet", 10, 20_000, Some("51"))
        ));
        for n in [Network::Bitcoin, Network::Testnet, Network::Testnet4] {
            assert!(!mine_during_ibd(n, &info("main", 0, 0, None)), "{n}");
        }
    }

    #[test]
    fn only_challenges_an_empty_solution_satisfies_are_mined() {
        let ok = ["51", "60", "4f", "0101", "020100", "0051"];
        for hex in ok {
            let script = ScriptBuf::from_hex(hex).unwrap();
            assert!(
                empty_solution_satisfies(&script),
                "{hex} should be accepted"
            );
            assert!(check_signet_challenge(&info("signet", 0, 0, Some(hex))).is_ok());
        }
        let refused = [
            // The default public signet: 1-of-2 multisig.
            "512103ad5e0edad18cb1f0fc0d28a3d4f1f3e445640337489abb10404f2d1e086be430210359ef5021964fe22d6f8e05b2463c9540ce96883fe3b278760f048f5189f2e6c452ae",
            "00",                                             // OP_0: false
            "5100",                                           // OP_TRUE OP_0: false on top
            "",                                               // empty: nothing on the stack
            "0180",                                           // negative zero
            "5175",                                           // OP_TRUE OP_DROP: not push-only
            "a914000000000000000000000000000000000000000087", // P2SH
            "0014751e76e8199196d454941c45d1b3a323f1433bd6",   // P2WPKH
            "5120000000000000000000000000000000000000000000000000000000000000000a", // P2TR-shaped
            "4c",                                             // truncated push
        ];
        for hex in refused {
            let script = ScriptBuf::from_hex(hex).unwrap();
            assert!(
                !empty_solution_satisfies(&script),
                "{hex:?} should be refused"
            );
        }
        let err = check_signet_challenge(&info("signet", 0, 0, Some(refused[0])))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(refused[0])
                && err.contains("cannot sign")
                && err.contains("OP_CHECKMULTISIG"),
            "{err}"
        );
        let err = check_signet_challenge(&info("signet", 0, 0, None)).unwrap_err();
        assert!(err.to_string().contains("signet_challenge"), "{err}");
        assert!(check_signet_challenge(&info("signet", 0, 0, Some("zz"))).is_err());
    }
}
