//! Found blocks: journal first, then `submitblock`, then confirmation. Nothing is lost.
//!
//! Every candidate is written (and fsynced) to `journal/pending/` before the first RPC. It moves
//! to `accepted/`, `stale/` or `rejected/` only once the node has answered and the outcome is
//! confirmed with `getblockhash`. Anything left in `pending/` (node down, daemon killed) is
//! submitted again at start-up. "Block found" is reported only after the node accepted it.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{Block, BlockHash};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Stats};
use crate::node::{RpcClient, RpcError};
use crate::share::Candidate;

/// One journalled block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Height.
    pub height: u32,
    /// Block hash (display hex).
    pub hash: String,
    /// Device that found it.
    pub device: String,
    /// Unix time it was found.
    pub found_at: u64,
    /// The whole block, consensus hex.
    pub block: String,
}

/// A journalled block without its bytes (for listings).
#[derive(Debug, Clone, Deserialize)]
pub struct JournalSummary {
    /// Height.
    pub height: u32,
    /// Block hash (display hex).
    pub hash: String,
    /// Device that found it.
    pub device: String,
    /// Unix time it was found.
    pub found_at: u64,
}

/// Where a journalled block ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On the active chain.
    Accepted,
    /// Valid but another block holds the height.
    Stale,
    /// The node refused it.
    Rejected,
    /// The node took it but never confirmed where it ended up (the confirmation kept failing).
    /// The entry stays in `pending/`: the next start submits it again and asks once more.
    Unknown,
}

impl Outcome {
    fn dir(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Stale => "stale",
            Outcome::Rejected => "rejected",
            Outcome::Unknown => "pending",
        }
    }
}

/// Bitcoin Core RPC errors that are the node's verdict on the block itself, not on the node's
/// state (src/rpc/protocol.h): the block does not decode (`submitblock` since 0.x), or (Core
/// before 0.21) "Block does not start with a coinbase". Every other error leaves it pending.
const FINAL_SUBMIT_ERRORS: [i64; 2] = [-22, -25];

/// What one `submitblock` answer means for the block. Pure: pinned by unit tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitReply {
    /// The node has the block: `null` (connected), `"duplicate"` (had it already),
    /// `"inconclusive"` / `"duplicate-inconclusive"` (stored, not connected: a side branch).
    /// Where it ended up is confirmed against the active chain.
    Taken {
        /// The node's word for it ("accepted" for `null`).
        reason: String,
        /// Stored but not connected: it may have tied with another block of equal work.
        inconclusive: bool,
    },
    /// The node's final refusal (a BIP22 reason, or an error about the block's encoding).
    Rejected(String),
    /// No verdict: the node is down, warming up (-28), busy, refusing credentials, or answered
    /// something we cannot read. The block stays pending and is sent again.
    Retry(String),
}

/// Map a `submitblock` result to what it means (BIP22; Core's `submitblock` in rpc/mining.cpp).
pub fn classify_submit_reply(reply: Result<serde_json::Value, RpcError>) -> SubmitReply {
    use serde_json::Value;
    match reply {
        Ok(Value::Null) => SubmitReply::Taken {
            reason: "accepted".into(),
            inconclusive: false,
        },
        Ok(Value::String(s)) if s == "duplicate" => SubmitReply::Taken {
            reason: s,
            inconclusive: false,
        },
        Ok(Value::String(s)) if s == "inconclusive" || s == "duplicate-inconclusive" => {
            SubmitReply::Taken {
                reason: s,
                inconclusive: true,
            }
        }
        Ok(Value::String(s)) => SubmitReply::Rejected(s),
        Ok(other) => SubmitReply::Retry(format!("unexpected submitblock reply {other}")),
        Err(RpcError::Rpc { code, message, .. }) if FINAL_SUBMIT_ERRORS.contains(&code) => {
            SubmitReply::Rejected(format!("error {code}: {message}"))
        }
        Err(e) => SubmitReply::Retry(e.to_string()),
    }
}

/// The on-disk journal.
#[derive(Debug, Clone)]
pub struct Journal {
    root: PathBuf,
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Journal {
    /// Open (and create) the journal directory.
    pub fn open(root: &Path) -> anyhow::Result<Journal> {
        for sub in ["pending", "accepted", "stale", "rejected"] {
            fs::create_dir_all(root.join(sub)).with_context(|| {
                format!(
                    "cannot create journal directory {}",
                    root.join(sub).display()
                )
            })?;
        }
        // Make sure we can write before the first block depends on it.
        let probe = root.join("pending/.write-test");
        fs::write(&probe, b"ok")
            .with_context(|| format!("journal {} is not writable", root.display()))?;
        let _ = fs::remove_file(probe);
        Ok(Journal {
            root: root.to_path_buf(),
        })
    }

    fn file_name(height: u32, hash: &str) -> String {
        format!("{height:08}-{hash}.json")
    }

    /// Write a candidate durably (temp file, fsync, rename, fsync dir).
    pub fn record(&self, entry: &JournalEntry) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("pending");
        let path = dir.join(Self::file_name(entry.height, &entry.hash));
        let tmp = dir.join(format!(".{}.tmp", entry.hash));
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&serde_json::to_vec_pretty(entry)?)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&dir);
        Ok(path)
    }

    /// Move a journalled block to its outcome directory.
    pub fn finish(&self, entry: &JournalEntry, outcome: Outcome) -> anyhow::Result<()> {
        let name = Self::file_name(entry.height, &entry.hash);
        let to = self.root.join(outcome.dir()).join(&name);
        fs::rename(self.root.join("pending").join(&name), &to)?;
        sync_dir(&self.root.join(outcome.dir()));
        Ok(())
    }

    /// Blocks still waiting for an answer, oldest first.
    pub fn pending(&self) -> anyhow::Result<Vec<JournalEntry>> {
        let mut entries = Vec::new();
        let mut names: Vec<_> = fs::read_dir(self.root.join("pending"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for path in names {
            match fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice(&b)?))
            {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "unreadable journal entry left in place")
                }
            }
        }
        Ok(entries)
    }

    /// Whether the block `hash` at `height` is filed under `outcome`.
    pub fn has(&self, outcome: Outcome, height: u32, hash: &str) -> bool {
        self.root
            .join(outcome.dir())
            .join(Self::file_name(height, hash))
            .exists()
    }

    /// The newest `limit` blocks filed under `outcome` (highest first), without their bytes.
    /// Unreadable files are skipped: a listing never fails the caller.
    pub fn list(&self, outcome: Outcome, limit: usize) -> Vec<JournalSummary> {
        let Ok(dir) = fs::read_dir(self.root.join(outcome.dir())) else {
            return Vec::new();
        };
        let mut names: Vec<_> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        // File names start with the zero-padded height: newest last.
        names.sort();
        names
            .iter()
            .rev()
            .take(limit)
            .filter_map(|p| serde_json::from_slice(&fs::read(p).ok()?).ok())
            .collect()
    }

    /// Entries in an outcome directory (tests, status).
    pub fn entries(&self, outcome: Outcome) -> usize {
        fs::read_dir(self.root.join(outcome.dir()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// How long the confirmation of a block the node took may keep failing before its outcome is
/// called unknown (the block is still journalled and asked about again at the next start).
pub const CONFIRM_DEADLINE: Duration = Duration::from_secs(120);

/// Sleep `backoff` (then double it, up to 10 s), unless `cancel` fires first (`false`).
async fn back_off(backoff: &mut Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = cancel.cancelled() => return false,
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(10));
    true
}

/// Submit one block until the node gives a verdict; everything that is not one (unreachable,
/// timeout, warm-up -28, HTTP 503, a cookie rotated by a restart) is retried with backoff
/// (250 ms doubling to 10 s) until `cancel`. Returns `None` if cancelled first: the block
/// stays pending in the journal. The confirmation that follows is retried for
/// `confirm_deadline` ([`CONFIRM_DEADLINE`] in the daemon).
pub async fn submit_and_confirm(
    rpc: &RpcClient,
    block_hex: &str,
    height: u32,
    hash: BlockHash,
    confirm_deadline: Duration,
    cancel: &CancellationToken,
) -> Option<(Outcome, String)> {
    let mut backoff = Duration::from_millis(250);
    let mut warned_at: Option<tokio::time::Instant> = None;
    let (reason, inconclusive) = loop {
        let reply = rpc
            .call::<serde_json::Value>("submitblock", json!([block_hex]))
            .await;
        match classify_submit_reply(reply) {
            SubmitReply::Taken {
                reason,
                inconclusive,
            } => break (reason, inconclusive),
            SubmitReply::Rejected(reason) => return Some((Outcome::Rejected, reason)),
            SubmitReply::Retry(error) => {
                if warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(%hash, height, %error, "the node gave no verdict on a block yet; it is journalled, retrying until it does");
                    warned_at = Some(tokio::time::Instant::now());
                }
                if !back_off(&mut backoff, cancel).await {
                    return None;
                }
            }
        }
    };
    confirm(
        rpc,
        height,
        hash,
        reason,
        inconclusive,
        confirm_deadline,
        cancel,
    )
    .await
}

/// Where a block the node took ended up: on the active chain at its height (accepted), or not.
/// A block that lost a tie with another of equal work (`inconclusive`, or beaten to the height
/// by a block that arrived first) is made the node's preferred tip with `preciousblock`, as
/// ckpool does, and checked again. Errors are retried for [`CONFIRM_DEADLINE`]; after that the
/// outcome is [`Outcome::Unknown`], never "stale" on a guess.
async fn confirm(
    rpc: &RpcClient,
    height: u32,
    hash: BlockHash,
    reason: String,
    inconclusive: bool,
    confirm_deadline: Duration,
    cancel: &CancellationToken,
) -> Option<(Outcome, String)> {
    let deadline = tokio::time::Instant::now() + confirm_deadline;
    let mut backoff = Duration::from_millis(100);
    let mut precious_sent = false;
    let mut last_error = String::new();
    while tokio::time::Instant::now() < deadline {
        if inconclusive && !precious_sent {
            match precious(rpc, hash).await {
                Ok(()) => precious_sent = true,
                Err(e) if e.is_transient() => {
                    last_error = e.to_string();
                    if !back_off(&mut backoff, cancel).await {
                        return None;
                    }
                    continue;
                }
                // The node refuses the call (an rpcwhitelist, say): confirm without it.
                Err(e) => {
                    tracing::warn!(%hash, error = %e, "preciousblock refused; confirming without it");
                    precious_sent = true;
                }
            }
        }
        let at_height = match rpc.call::<String>("getblockhash", json!([height])).await {
            Ok(h) => Some(h),
            // -8: the active chain is shorter than our height; our block is not on it.
            Err(RpcError::Rpc { code: -8, .. }) => None,
            Err(e) => {
                last_error = e.to_string();
                if !back_off(&mut backoff, cancel).await {
                    return None;
                }
                continue;
            }
        };
        if at_height.as_deref() == Some(hash.to_string().as_str()) {
            let reason = if precious_sent {
                format!("{reason}; made the preferred tip with preciousblock")
            } else {
                reason
            };
            return Some((Outcome::Accepted, reason));
        }
        if precious_sent {
            return Some((Outcome::Stale, reason));
        }
        match tie_with_tip(rpc, hash).await {
            Ok(true) => match precious(rpc, hash).await {
                Ok(()) => precious_sent = true,
                Err(e) if e.is_transient() => last_error = e.to_string(),
                Err(e) => {
                    tracing::warn!(%hash, error = %e, "preciousblock refused; our block stays behind the one that arrived first");
                    return Some((Outcome::Stale, reason));
                }
            },
            Ok(false) => return Some((Outcome::Stale, reason)),
            Err(e) => last_error = e.to_string(),
        }
        if !precious_sent && !back_off(&mut backoff, cancel).await {
            return None;
        }
    }
    Some((
        Outcome::Unknown,
        format!(
            "{reason}; could not confirm within {}s: {last_error}",
            confirm_deadline.as_secs()
        ),
    ))
}

/// Whether our block has exactly the chain work of the node's active tip: it tied, and only
/// the order of arrival decided against it.
async fn tie_with_tip(rpc: &RpcClient, hash: BlockHash) -> Result<bool, RpcError> {
    #[derive(serde::Deserialize)]
    struct HeaderInfo {
        chainwork: String,
    }
    let ours: HeaderInfo = rpc
        .call("getblockheader", json!([hash.to_string()]))
        .await?;
    let best: String = rpc.call("getbestblockhash", json!([])).await?;
    let tip: HeaderInfo = rpc.call("getblockheader", json!([best])).await?;
    Ok(ours.chainwork == tip.chainwork)
}

async fn precious(rpc: &RpcClient, hash: BlockHash) -> Result<(), RpcError> {
    tracing::info!(%hash, "our block tied with another of equal work; asking the node to prefer it (preciousblock)");
    rpc.call::<serde_json::Value>("preciousblock", json!([hash.to_string()]))
        .await
        .map(|_| ())
}

/// The submitter actor.
#[derive(Debug)]
pub struct Submitter {
    /// RPC client.
    pub rpc: RpcClient,
    /// Journal.
    pub journal: Journal,
    /// Candidates from the share checker.
    pub candidates: mpsc::Receiver<Candidate>,
    /// Tells the template source that the node has answered for a block (its parent). Unbounded
    /// so the notice can never be dropped: one message per found block bounds it.
    pub submitted: mpsc::UnboundedSender<BlockHash>,
    /// Counters.
    pub stats: Stats,
    /// Events.
    pub events: broadcast::Sender<Event>,
    /// Shutdown.
    pub cancel: CancellationToken,
}

impl Submitter {
    /// Submit everything left in the journal by an earlier run.
    pub async fn resubmit_pending(&self) -> anyhow::Result<()> {
        for entry in self.journal.pending()? {
            tracing::warn!(height = entry.height, hash = %entry.hash, "resubmitting a journalled block from an earlier run");
            let hash: BlockHash = match entry.hash.parse() {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(hash = %entry.hash, error = %e, "journal entry with a bad hash left in place");
                    continue;
                }
            };
            if deserialize_hex::<Block>(&entry.block).is_err() {
                // Ours to decode badly is no reason to withhold it: the node decides.
                tracing::error!(%hash, "journalled block does not decode here; submitting it for the node's verdict");
            }
            // A sibling of a block of ours that holds the height could only tie with it (and a
            // tie would make the node reorg from one of our blocks to the other).
            if let Ok(holder) = self
                .rpc
                .call::<String>("getblockhash", json!([entry.height]))
                .await
                && holder != entry.hash
                && self.journal.has(Outcome::Accepted, entry.height, &holder)
            {
                tracing::info!(height = entry.height, %hash, ours = %holder,
                    "journalled block is a sibling of our own block at this height; not submitted");
                let reason = format!(
                    "sibling of our own block {holder}, already on the active chain at this height"
                );
                self.report(&entry, hash, usize::MAX, Outcome::Stale, &reason);
                continue;
            }
            match submit_and_confirm(
                &self.rpc,
                &entry.block,
                entry.height,
                hash,
                CONFIRM_DEADLINE,
                &self.cancel,
            )
            .await
            {
                Some((outcome, reason)) => self.report(&entry, hash, usize::MAX, outcome, &reason),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Submit candidates until the share checker is gone and every candidate it handed over
    /// is answered (the graceful end of a shutdown), or until `cancel` (the hard stop: a block
    /// in flight stays pending in the journal for the next start).
    pub async fn run(mut self) {
        // Parents on which a block of ours is on the active chain. Another block of ours on the
        // same parent could only tie with it, so submitting it is provably pointless.
        let mut won: HashMap<BlockHash, BlockHash> = HashMap::new();
        loop {
            let candidate = tokio::select! {
                c = self.candidates.recv() => match c { Some(c) => c, None => break },
                _ = self.cancel.cancelled() => break,
            };
            let entry = &candidate.entry;
            if let Some(ours) = won.get(&candidate.parent) {
                let reason = format!(
                    "sibling of our own block {ours}, already on the active chain at this height"
                );
                tracing::info!(height = entry.height, hash = %candidate.hash, device = %entry.device,
                    "another block on a parent we already extended; not submitted: it could only tie with our own block");
                self.report(
                    entry,
                    candidate.hash,
                    candidate.device_index,
                    Outcome::Stale,
                    &reason,
                );
                continue;
            }
            tracing::info!(height = entry.height, hash = %entry.hash, device = %entry.device,
                stale_work = candidate.stale_work, "block candidate found; submitting");
            let _ = self.events.send(Event::BlockCandidate {
                height: entry.height,
                hash: candidate.hash,
                device: entry.device.clone(),
            });
            match submit_and_confirm(
                &self.rpc,
                &entry.block,
                entry.height,
                candidate.hash,
                CONFIRM_DEADLINE,
                &self.cancel,
            )
            .await
            {
                Some((outcome, reason)) => {
                    if outcome == Outcome::Accepted {
                        if won.len() >= 1000 {
                            won.clear();
                        }
                        won.insert(candidate.parent, candidate.hash);
                    }
                    self.report(
                        entry,
                        candidate.hash,
                        candidate.device_index,
                        outcome,
                        &reason,
                    )
                }
                None => break, // hard stop: stays in pending/ for the next start
            }
            // Fails only when the template source is gone (shutdown).
            let _ = self.submitted.send(candidate.parent);
        }
    }

    fn report(
        &self,
        entry: &JournalEntry,
        hash: BlockHash,
        device: usize,
        outcome: Outcome,
        reason: &str,
    ) {
        if outcome != Outcome::Unknown
            && let Err(e) = self.journal.finish(entry, outcome)
        {
            tracing::warn!(error = %e, hash = %entry.hash, "could not move the journal entry");
        }
        match outcome {
            Outcome::Accepted => {
                tracing::info!(height = entry.height, %hash, device = %entry.device, "BLOCK FOUND: accepted by the node");
                self.stats.update(device, |d| d.blocks_accepted += 1);
                let _ = self.events.send(Event::BlockAccepted {
                    height: entry.height,
                    hash,
                    device: entry.device.clone(),
                });
            }
            Outcome::Stale => {
                tracing::warn!(height = entry.height, %hash, node = reason, "block valid but not on the active chain (stale)");
                let _ = self.events.send(Event::BlockStale {
                    height: entry.height,
                    hash,
                });
            }
            Outcome::Unknown => {
                tracing::warn!(height = entry.height, %hash, reason,
                    "the node took the block but its place on the chain could not be confirmed; it stays pending and is checked again at the next start");
                let _ = self.events.send(Event::BlockUnconfirmed {
                    height: entry.height,
                    hash,
                    reason: reason.to_string(),
                });
            }
            Outcome::Rejected => {
                tracing::error!(height = entry.height, %hash, reason, "BLOCK REJECTED by the node");
                let _ = self.events.send(Event::BlockRejected {
                    height: entry.height,
                    hash,
                    reason: reason.to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rpc_error(code: i64, message: &str) -> RpcError {
        RpcError::Rpc {
            method: "submitblock".into(),
            code,
            message: message.into(),
        }
    }

    #[test]
    fn the_nodes_answers_to_submitblock_map_to_what_they_mean() {
        let taken = |reason: &str, inconclusive| SubmitReply::Taken {
            reason: reason.into(),
            inconclusive,
        };
        assert_eq!(
            classify_submit_reply(Ok(json!(null))),
            taken("accepted", false)
        );
        assert_eq!(
            classify_submit_reply(Ok(json!("duplicate"))),
            taken("duplicate", false)
        );
        assert_eq!(
            classify_submit_reply(Ok(json!("inconclusive"))),
            taken("inconclusive", true)
        );
        assert_eq!(
            classify_submit_reply(Ok(json!("duplicate-inconclusive"))),
            taken("duplicate-inconclusive", true)
        );
        // BIP22 rejection reasons are final.
        for reason in [
            "high-hash",
            "bad-txnmrklroot",
            "duplicate-invalid",
            "rejected",
        ] {
            assert_eq!(
                classify_submit_reply(Ok(json!(reason))),
                SubmitReply::Rejected(reason.into())
            );
        }
        // So is a block the node cannot decode.
        assert!(matches!(
            classify_submit_reply(Err(rpc_error(-22, "Block decode failed"))),
            SubmitReply::Rejected(_)
        ));
    }

    #[test]
    fn a_node_that_gives_no_verdict_leaves_the_block_pending() {
        let retry = |reply| matches!(classify_submit_reply(reply), SubmitReply::Retry(_));
        // Warming up after a restart (the case that filed blocks as rejected).
        assert!(retry(Err(rpc_error(-28, "Loading block index…"))));
        assert!(retry(Err(rpc_error(-28, "Verifying blocks…"))));
        // Shutting down, misc errors, a method hidden by an rpcwhitelist: not about the block.
        assert!(retry(Err(rpc_error(-9, "Shutting down"))));
        assert!(retry(Err(rpc_error(-1, "something"))));
        assert!(retry(Err(rpc_error(-32601, "Method not found"))));
        assert!(retry(Err(RpcError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        })));
        assert!(retry(Err(RpcError::Timeout {
            method: "submitblock".into(),
            timeout: Duration::from_secs(30),
        })));
        assert!(retry(Err(RpcError::Auth {
            detail: "cookie".into()
        })));
        assert!(retry(Err(RpcError::Malformed {
            method: "submitblock".into(),
            reason: "Service Unavailable".into(),
        })));
        // An answer that is neither null nor a string is not a verdict either.
        assert!(retry(Ok(json!({"weird": true}))));
    }
}
