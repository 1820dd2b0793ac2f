//! Found blocks: journal first, then `submitblock`, then confirmation. Nothing is lost.
//!
//! Every candidate is written (and fsynced) to `journal/pending/` before the first RPC. It moves
//! to `accepted/`, `stale/` or `rejected/` only once the node has answered and the outcome is
//! confirmed with `getblockhash`. Anything left in `pending/` (node down, daemon killed) is
//! submitted again at start-up. "Block found" is reported only after the node accepted it.

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

/// Where a journalled block ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// On the active chain.
    Accepted,
    /// Valid but another block holds the height.
    Stale,
    /// The node refused it.
    Rejected,
}

impl Outcome {
    fn dir(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Stale => "stale",
            Outcome::Rejected => "rejected",
        }
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

    /// Entries in an outcome directory (tests, status).
    pub fn entries(&self, outcome: Outcome) -> usize {
        fs::read_dir(self.root.join(outcome.dir()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Submit one block until the node gives an answer; transient errors are retried with backoff
/// (250 ms doubling to 10 s) until `cancel`. Returns `None` if cancelled first.
pub async fn submit_and_confirm(
    rpc: &RpcClient,
    block_hex: &str,
    height: u32,
    hash: BlockHash,
    cancel: &CancellationToken,
) -> Option<(Outcome, String)> {
    let mut backoff = Duration::from_millis(250);
    let mut warned_at: Option<tokio::time::Instant> = None;
    let reply = loop {
        match rpc
            .call::<serde_json::Value>("submitblock", json!([block_hex]))
            .await
        {
            Ok(reply) => break Ok(reply),
            // Only the node's own verdict (an RPC error object or a BIP22 string) decides a
            // block's fate. Anything else (unreachable, timeout, a cookie rotated by a restart,
            // a busy node answering HTTP 503 in plain text) is retried: the block stays pending.
            Err(e @ RpcError::Rpc { .. }) => break Err(e),
            Err(e) => {
                if warned_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(%hash, height, error = %e, "cannot submit a block yet; it is journalled, retrying until the node answers");
                    warned_at = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    let reason = match reply {
        // null is acceptance; "duplicate" means the node already has it; "inconclusive" (and
        // "duplicate-inconclusive") means it was stored but not connected, e.g. on a side
        // branch. Confirm all of them against the active chain. Any other string is a rejection.
        Ok(serde_json::Value::Null) => "accepted".to_string(),
        Ok(serde_json::Value::String(s))
            if s == "duplicate" || s == "inconclusive" || s == "duplicate-inconclusive" =>
        {
            s
        }
        Ok(serde_json::Value::String(s)) => return Some((Outcome::Rejected, s)),
        Ok(other) => {
            return Some((
                Outcome::Rejected,
                format!("unexpected submitblock reply {other}"),
            ));
        }
        Err(e) => return Some((Outcome::Rejected, e.to_string())),
    };
    // Confirm: the active chain has our hash at our height.
    let mut backoff = Duration::from_millis(100);
    loop {
        match rpc.call::<String>("getblockhash", json!([height])).await {
            Ok(h) if h == hash.to_string() => return Some((Outcome::Accepted, reason)),
            Ok(_) => return Some((Outcome::Stale, reason)),
            Err(RpcError::Rpc { code: -8, .. }) => return Some((Outcome::Stale, reason)), // height not on chain
            Err(e) if e.is_transient() => {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Some((Outcome::Stale, format!("{reason}; could not confirm: {e}"))),
        }
    }
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
    /// Tells the share checker about refused blocks (their parent).
    pub refused: mpsc::Sender<BlockHash>,
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
                tracing::error!(%hash, "journal entry with an undecodable block left in place");
                continue;
            }
            match submit_and_confirm(&self.rpc, &entry.block, entry.height, hash, &self.cancel)
                .await
            {
                Some((outcome, reason)) => self.report(&entry, hash, usize::MAX, outcome, &reason),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Run until cancelled.
    pub async fn run(mut self) {
        loop {
            let candidate = tokio::select! {
                c = self.candidates.recv() => match c { Some(c) => c, None => break },
                _ = self.cancel.cancelled() => break,
            };
            let entry = candidate.entry;
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
                &self.cancel,
            )
            .await
            {
                Some((outcome, reason)) => {
                    if outcome == Outcome::Rejected {
                        let _ = self.refused.try_send(candidate.parent);
                    }
                    self.report(
                        &entry,
                        candidate.hash,
                        candidate.device_index,
                        outcome,
                        &reason,
                    )
                }
                None => break, // stays in pending/ for the next start
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
        if let Err(e) = self.journal.finish(entry, outcome) {
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
