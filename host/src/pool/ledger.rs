//! The share ledger: append-only, hash-chained, one JSON line per entry.
//!
//! ```text
//! {"seq":0,"hash":"<64 hex>","body":{"kind":"member",...}}
//! ```
//! `hash = sha256(previous hash ‖ seq as 8 bytes little-endian ‖ the body's bytes as written)`,
//! with 32 zero bytes before the first entry. Changing, dropping or reordering any entry changes
//! every hash after it, so a member that has seen the ledger's last hash can tell. Entries are
//! on disk (fsync) before the coordinator acknowledges the share they record: a restart loses
//! nothing that was acknowledged. A torn last line (a crash mid-write, never acknowledged) is
//! cut off at start-up, with a warning; damage anywhere else stops the start.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bitcoin::BlockHash;
use bitcoin::hashes::{Hash, sha256};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::identity::MemberId;
use super::payout::{Payee, RoundRules};

/// One ledger entry's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// A member logged in with this payout script (first time, or a new script).
    Member {
        /// Its key.
        member: MemberId,
        /// Its name in the coordinator's member list.
        name: String,
        /// Where it is paid.
        script: bitcoin::ScriptBuf,
    },
    /// A round starts: its payout list, and what it was computed with.
    Round {
        /// Its number (increasing).
        round: u64,
        /// Height of the coordinator's next block when it started.
        height: u32,
        /// The parameters.
        rules: RoundRules,
        /// The list.
        payees: Vec<Payee>,
    },
    /// An accepted share.
    Share {
        /// The round whose list its coinbase pays.
        round: u64,
        /// Who found it.
        member: MemberId,
        /// The share target it met (64 hex digits, big-endian); its credit is this target's work.
        target: String,
        /// The header, hex.
        header: String,
        /// The coinbase, hex (legacy serialisation).
        coinbase: String,
        /// The merkle branch, hex (internal byte order).
        branch: Vec<String>,
        /// It meets the network target: a block.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        block: bool,
    },
}

impl Entry {
    /// The entry for a share that `member` found, accepted at `target`.
    pub fn share(
        share: &super::validate::ShareBytes,
        member: MemberId,
        target: bitcoin::Target,
        block: bool,
    ) -> Entry {
        Entry::Share {
            round: share.round,
            member,
            target: hex::encode(target.to_be_bytes()),
            header: hex::encode(share.header),
            coinbase: hex::encode(&share.coinbase),
            branch: share
                .branch
                .iter()
                .map(|b| hex::encode(b.to_byte_array()))
                .collect(),
            block,
        }
    }
}

/// One line as written.
#[derive(Debug, Serialize)]
struct LineOut<'a> {
    seq: u64,
    hash: String,
    body: &'a RawValue,
}

/// One line as read, the body left as written (its bytes are what the hash covers).
#[derive(Debug, Deserialize)]
pub struct LineIn<'a> {
    /// Position.
    pub seq: u64,
    /// The chained hash.
    pub hash: String,
    /// The entry, as written.
    #[serde(borrow)]
    pub body: &'a RawValue,
}

/// The chained hash of an entry.
pub fn chain_hash(previous: &[u8; 32], seq: u64, body: &[u8]) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    bitcoin::hashes::HashEngine::input(&mut engine, previous);
    bitcoin::hashes::HashEngine::input(&mut engine, &seq.to_le_bytes());
    bitcoin::hashes::HashEngine::input(&mut engine, body);
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// Follows the chain line by line (the coordinator at start-up, the audit).
#[derive(Debug, Clone, Default)]
pub struct ChainCheck {
    /// Next expected sequence number.
    pub next_seq: u64,
    /// Hash of the last entry (zeros before the first).
    pub last_hash: [u8; 32],
}

impl ChainCheck {
    /// Check one line and decode its entry.
    pub fn next(&mut self, line: &str) -> Result<(u64, Entry), String> {
        let parsed: LineIn<'_> =
            serde_json::from_str(line).map_err(|e| format!("not a ledger line: {e}"))?;
        if parsed.seq != self.next_seq {
            return Err(format!(
                "sequence {} where {} was due (an entry was dropped or moved)",
                parsed.seq, self.next_seq
            ));
        }
        let hash = chain_hash(&self.last_hash, parsed.seq, parsed.body.get().as_bytes());
        if hex::encode(hash) != parsed.hash {
            return Err(format!(
                "entry {} does not hash to its recorded hash (it was changed, or an entry before it was)",
                parsed.seq
            ));
        }
        let entry: Entry = serde_json::from_str(parsed.body.get())
            .map_err(|e| format!("entry {}: {e}", parsed.seq))?;
        self.next_seq += 1;
        self.last_hash = hash;
        Ok((parsed.seq, entry))
    }
}

/// Serialise one entry as its line (with the newline) after `check`'s position, and advance.
pub fn encode_line(check: &mut ChainCheck, entry: &Entry) -> anyhow::Result<String> {
    let body = serde_json::to_string(entry).context("cannot encode a ledger entry")?;
    let raw = RawValue::from_string(body).context("cannot encode a ledger entry")?;
    let hash = chain_hash(&check.last_hash, check.next_seq, raw.get().as_bytes());
    let line = serde_json::to_string(&LineOut {
        seq: check.next_seq,
        hash: hex::encode(hash),
        body: &raw,
    })
    .context("cannot encode a ledger line")?;
    check.next_seq += 1;
    check.last_hash = hash;
    Ok(line + "\n")
}

/// The ledger file, owned by the coordinator.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: File,
    check: ChainCheck,
    /// Byte offset of every line (for serving ranges).
    offsets: Vec<u64>,
    end: u64,
}

impl Ledger {
    /// Open (or create) the ledger at `path`, replaying every entry into `replay` in order.
    pub fn open(path: &Path, mut replay: impl FnMut(u64, &Entry)) -> anyhow::Result<Ledger> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open the pool ledger {}", path.display()))?;
        let mut check = ChainCheck::default();
        let mut offsets = Vec::new();
        let mut end = 0u64;
        {
            let mut reader = BufReader::with_capacity(1 << 20, &mut file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                if !line.ends_with('\n') {
                    // Written in part when the process died: never acknowledged.
                    tracing::warn!(ledger = %path.display(), bytes = n,
                        "the ledger's last line was cut short (a crash while writing it); dropping it");
                    break;
                }
                let (seq, entry) = check.next(line.trim_end()).map_err(|e| {
                    anyhow::anyhow!(
                        "{} line {}: {e}. The ledger is damaged: restore it from a backup, or move it aside to start a new one",
                        path.display(),
                        offsets.len() + 1
                    )
                })?;
                offsets.push(end);
                end += n as u64;
                replay(seq, &entry);
            }
        }
        let len = file.metadata().map(|m| m.len()).unwrap_or(end);
        if len != end {
            file.set_len(end)
                .with_context(|| format!("cannot cut the torn line off {}", path.display()))?;
            file.sync_all().ok();
        }
        Ok(Ledger {
            path: path.to_path_buf(),
            file,
            check,
            offsets,
            end,
        })
    }

    /// Entries so far.
    pub fn len(&self) -> u64 {
        self.check.next_seq
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.check.next_seq == 0
    }

    /// Hash of the last entry.
    pub fn last_hash(&self) -> [u8; 32] {
        self.check.last_hash
    }

    /// Append entries and make them durable (one fsync for all). Returns the first one's seq.
    pub fn append(&mut self, entries: &[Entry]) -> anyhow::Result<u64> {
        let first = self.check.next_seq;
        let mut check = self.check.clone();
        let mut text = String::new();
        let mut offsets = Vec::with_capacity(entries.len());
        let mut end = self.end;
        for entry in entries {
            let line = encode_line(&mut check, entry)?;
            offsets.push(end);
            end += line.len() as u64;
            text.push_str(&line);
        }
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave the file as it was, so that the next append does not follow a torn line.
            let _ = self.file.set_len(self.end);
            return Err(e)
                .with_context(|| format!("cannot write the pool ledger {}", self.path.display()));
        }
        self.check = check;
        self.offsets.extend(offsets);
        self.end = end;
        Ok(first)
    }

    /// Up to `max` lines from `from` (without newlines), read from the file, and no more than
    /// `max_bytes` of them (but always one, when there is one).
    pub fn read_lines(
        &self,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> anyhow::Result<Vec<String>> {
        let Some(&start) = self.offsets.get(from as usize) else {
            return Ok(Vec::new());
        };
        let end_of = |i: usize| self.offsets.get(i).copied().unwrap_or(self.end);
        let mut last = (from as usize)
            .saturating_add(max.max(1))
            .min(self.offsets.len());
        // The offsets are increasing: the longest run within the byte budget, by bisection.
        if end_of(last) - start > max_bytes as u64 {
            let (mut fits, mut over) = (from as usize + 1, last);
            while fits + 1 < over {
                let mid = fits + (over - fits) / 2;
                if end_of(mid) - start > max_bytes as u64 {
                    over = mid;
                } else {
                    fits = mid;
                }
            }
            last = fits;
        }
        let stop = end_of(last);
        let mut file = File::open(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = vec![0u8; (stop - start) as usize];
        file.read_exact(&mut bytes)?;
        let text = String::from_utf8(bytes).context("the ledger is not UTF-8")?;
        Ok(text.lines().map(str::to_owned).collect())
    }
}

/// Decode a hex field of an entry.
pub fn hex_field<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{what}: not {N} bytes of hex"))
}

/// A block hash from a share's header.
pub fn share_hash(header_hex: &str) -> Option<BlockHash> {
    let header: [u8; 80] = hex_field(header_hex, "header").ok()?;
    Some(super::validate::header_hash(&header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::identity::MemberKey;

    fn member_entry(n: u8) -> Entry {
        Entry::Member {
            member: MemberKey::from_secret(&[n; 32]).unwrap().id(),
            name: format!("m{n}"),
            script: bitcoin::ScriptBuf::from_hex("0014aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
                .unwrap(),
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path, |_, _| {}).unwrap();
        ledger.append(&[member_entry(1), member_entry(2)]).unwrap();
        ledger.append(&[member_entry(3)]).unwrap();
        let hash = ledger.last_hash();
        drop(ledger);
        // A crash in the middle of the next line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":3,\"hash\":\"ab").unwrap();
        drop(f);
        let mut seen = Vec::new();
        let ledger = Ledger::open(&path, |seq, e| seen.push((seq, e.clone()))).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].1, member_entry(3));
        assert_eq!(ledger.last_hash(), hash);
        assert_eq!(ledger.read_lines(1, 10, usize::MAX).unwrap().len(), 2);
        // The byte budget cuts the page, but never below one line.
        assert_eq!(ledger.read_lines(0, 10, 1).unwrap().len(), 1);
        let two = ledger.read_lines(0, 2, usize::MAX).unwrap();
        let budget = two.iter().map(|l| l.len() + 1).sum::<usize>();
        assert_eq!(ledger.read_lines(0, 10, budget).unwrap(), two);
        assert_eq!(ledger.read_lines(0, 10, budget - 1).unwrap().len(), 1);
        let mut ledger = ledger;
        ledger.append(&[member_entry(4)]).unwrap();
        assert_eq!(Ledger::open(&path, |_, _| {}).unwrap().len(), 4);
    }

    #[test]
    fn a_changed_entry_breaks_the_chain_at_that_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path, |_, _| {}).unwrap();
        ledger
            .append(&[member_entry(1), member_entry(2), member_entry(3)])
            .unwrap();
        drop(ledger);
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replacen("\"m2\"", "\"mX\"", 1);
        std::fs::write(&path, tampered).unwrap();
        let err = Ledger::open(&path, |_, _| {}).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("does not hash"),
            "{err}"
        );
        // Dropping a line is caught too.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let err = Ledger::open(&path, |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("sequence 2 where 1"), "{err}");
    }
}
