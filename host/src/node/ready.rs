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
}

/// Wait for the node to answer (up to `connect_timeout` while it is unreachable or warming up),
/// check its network, and wait out initial block download (not on regtest, where a fresh chain
/// stays "in IBD" until its first block and `getblocktemplate` works regardless).
pub async fn wait_ready(
    rpc: &RpcClient,
    network: Network,
    connect_timeout: Duration,
) -> anyhow::Result<ChainInfo> {
    let mut last_log = tokio::time::Instant::now() - Duration::from_secs(60);
    let info: ChainInfo = rpc
        .call_retrying("getblockchaininfo", json!([]), connect_timeout, |e| {
            if last_log.elapsed() > Duration::from_secs(10) {
                last_log = tokio::time::Instant::now();
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
    if network == Network::Regtest || !info.initial_block_download {
        return Ok(info);
    }
    tracing::info!(
        blocks = info.blocks,
        headers = info.headers,
        "node is in initial block download; waiting"
    );
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let info: ChainInfo = rpc
            .call("getblockchaininfo", json!([]))
            .await
            .context("waiting out initial block download")?;
        if !info.initial_block_download {
            return Ok(info);
        }
        tracing::info!(
            blocks = info.blocks,
            headers = info.headers,
            "still in initial block download"
        );
    }
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
