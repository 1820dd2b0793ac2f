//! What the Hearth pool's coordinator costs: share validation per second, the ledger writer's
//! throughput (an fsync per batch), and for a ledger of a million shares its size, the time
//! `hearth pool audit` takes to re-check it and the coordinator's start-up replay.
//!
//! Everything is in-process and real: the template is the recorded one of
//! `benches/data/gbt-3000.json` cut to 600 transactions (a 10-entry merkle branch, as in the
//! Stratum benchmark) with mainnet difficulty bits and a mainnet height; the coinbases are built
//! by [`TemplateWork::paying`] and pay a round's list by the amount rule and commit to their
//! member; jobs come from a [`JobFactory`]. The share target is the largest there is (every
//! hash is a share, credited 1 hash of work) so that the figures are validation, not grinding;
//! no hash meets the network target, so no share is a block.
//!
//! ```text
//! cargo bench -p hearth --bench pool                              # 1,000,000 ledger shares
//! POOL_BENCH_SHARES=100000 cargo bench -p hearth --bench pool     # a quick look
//! ```
//!
//! Environment: `POOL_BENCH_SHARES` (shares in the audited ledger, default 1,000,000),
//! `POOL_BENCH_DIR` (where the ledgers are written, default a temporary directory under the
//! system's; the fsync figures are this file system's), and to exercise the audit rather than
//! measure: `POOL_BENCH_BITS` (the ledger's network bits, hex: `207fffff` makes half the shares
//! blocks and the window 8 shares) and `POOL_BENCH_MAX_PAYEES` (default 100; fewer leaves
//! members out of lists, so blocks make them owed credit). The ledger is written in batches of
//! 10,000 entries, a round every 1,000 shares, 10 members of unequal hash rate, a new tip every
//! 20 rounds; rounds use `[pool.coordinator]`'s defaults (a window of 4 blocks' work, at most
//! 100 payees, 4,300 output bytes). The audit reads the file just written, so it comes from the
//! page cache. Peak memory is VmHWM, reset before each stage where the kernel allows it
//! (`/proc/self/clear_refs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::{Hash, sha256d};
use bitcoin::{Amount, BlockHash, CompactTarget, Network, ScriptBuf, Target};
use hearth::pool::audit::Auditor;
use hearth::pool::coordinator::apply;
use hearth::pool::identity::{MemberId, MemberKey, commitment};
use hearth::pool::ledger::{ChainCheck, Entry, Ledger, encode_line, share_hash};
use hearth::pool::payout::{
    Accounts, Payee, RoundRules, normalise, payout_outputs, subsidy, target_work,
};
use hearth::pool::validate::{RoundView, ShareBytes, ShareContext, Tip, validate};
use hearth::template::coinbase::witness_commitment_script;
use hearth::template::{BlockTemplate, parse_template};
use hearth::work::{BIP320_MASK, Job, JobFactory, TemplateWork, unix_now};

/// Mainnet difficulty bits of height 901,936: no share is ever a block.
const MAINNET_BITS: u32 = 0x1702_3a04;
const MAINNET_HEIGHT: u32 = 901_936;
/// 3.125 BTC and 0.02 BTC of fees.
const COINBASE_VALUE: u64 = 312_500_000 + 2_000_000;
/// Transactions kept from the recorded template: a 10-entry merkle branch.
const TRANSACTIONS: usize = 600;
const TAG: &[u8] = b"/hearth-pool/";

/// Shares timed through `validate`, cycling over [`DISTINCT_SHARES`] prepared ones.
const VALIDATE_SHARES: usize = 200_000;
const DISTINCT_SHARES: usize = 4096;
/// Members whose shares the validation stage sends (of the list's payees).
const SENDERS: usize = 10;
/// The round the validation stage's shares pay.
const VALIDATE_ROUND: u64 = 7;

/// Append stage: at most this many entries, or this long, per batch size.
const APPEND_MAX_ENTRIES: usize = 50_000;
const APPEND_MAX_SECS: f64 = 8.0;
const APPEND_BATCHES: [usize; 3] = [1, 256, 1024];

/// The audited ledger.
const DEFAULT_SHARES: u64 = 1_000_000;
const MEMBERS: usize = 10;
const ROUND_EVERY: u64 = 1000;
const TIP_EVERY_ROUNDS: u64 = 20;
const WRITE_BATCH: usize = 10_000;
/// `[pool.coordinator]` defaults.
const WINDOW_BLOCKS: u32 = 4;
const MAX_PAYEES: u32 = 100;
const OUTPUT_BYTES: u64 = 4300;

/// The largest target there is: every hash meets it (what vardiff's tiniest difficulty gives).
fn easy_target() -> Target {
    Target::from_be_bytes([0xFF; 32])
}

/// A `/proc/self/status` field in MB (VmRSS, VmHWM).
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Reset VmHWM to the current RSS (Linux 4.0+); `false` where the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Cheap deterministic randomness (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Member {
    id: MemberId,
    script: ScriptBuf,
    name: String,
}

/// Member `n`: its own key, and a P2WPKH or a P2TR payout script (alternately).
fn member(n: usize) -> Member {
    let mut secret = [0x11u8; 32];
    secret[24..].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    let id = MemberKey::from_secret(&secret).unwrap().id();
    let digest = sha256d::Hash::hash(&secret).to_byte_array();
    let script = if n.is_multiple_of(2) {
        let mut s = vec![0x00, 0x14];
        s.extend_from_slice(&digest[..20]);
        ScriptBuf::from_bytes(s)
    } else {
        let mut s = vec![0x51, 0x20];
        s.extend_from_slice(&digest);
        ScriptBuf::from_bytes(s)
    };
    Member {
        id,
        script,
        name: format!("member{n}"),
    }
}

fn bench_template(bits: u32) -> BlockTemplate {
    let json = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/gbt-3000.json"
    ))
    .expect("benches/data/gbt-3000.json");
    let mut t = parse_template(&json).expect("recorded template");
    t.transactions.truncate(TRANSACTIONS);
    t.height = MAINNET_HEIGHT;
    t.coinbase_value = Amount::from_sat(COINBASE_VALUE);
    t.bits = CompactTarget::from_consensus(bits);
    t.target = Target::from_compact(t.bits);
    if t.default_witness_commitment.is_some() {
        t.default_witness_commitment = Some(witness_commitment_script(&t));
    }
    let now = unix_now() as u32;
    t.curtime = now;
    t.mintime = now - 3600;
    t
}

/// A member's work for a round: its coinbase pays `payees` (the finder, for an empty list) and
/// commits to it.
fn work_for(
    template: &BlockTemplate,
    payees: &[Payee],
    m: &Member,
    generation: u64,
) -> Arc<TemplateWork> {
    let outputs = payout_outputs(payees, &m.script, template.coinbase_value);
    Arc::new(
        TemplateWork::paying(
            generation,
            template.clone(),
            &outputs,
            Some(&commitment(&m.id)),
            TAG,
            true,
        )
        .unwrap(),
    )
}

fn share_bytes(job: &Job, nonce: u32, round: u64) -> ShareBytes {
    let header: [u8; 80] = serialize(&job.header(job.version, nonce))
        .try_into()
        .unwrap();
    ShareBytes {
        round,
        header,
        coinbase: job.work.coinbase.legacy_bytes(job.extranonce()),
        branch: job.work.branch.clone(),
    }
}

// ------------------------------------------------------------------------------------------
// Stage 1: validation and the writer
// ------------------------------------------------------------------------------------------

/// A round's list of `n` payees of unequal credit, in list order.
fn payees(members: &[Member]) -> Vec<Payee> {
    let credits: Vec<u128> = (0..members.len())
        .map(|i| (members.len() - i) as u128 * 1000)
        .collect();
    members
        .iter()
        .zip(normalise(&credits))
        .map(|(m, weight)| Payee {
            member: m.id,
            script: m.script.clone(),
            weight,
        })
        .collect()
}

struct Prepared {
    members: Vec<Member>,
    payees: Vec<Payee>,
    /// (sender index, share).
    shares: Vec<(usize, ShareBytes)>,
}

fn prepare(template: &BlockTemplate, n: usize) -> Prepared {
    let members: Vec<Member> = (0..n).map(member).collect();
    let payees = payees(&members);
    let senders = n.min(SENDERS);
    let works: Vec<_> = members[..senders]
        .iter()
        .map(|m| work_for(template, &payees, m, 1))
        .collect();
    let ids = Arc::new(AtomicU64::new(0));
    let mut factories: Vec<_> = (0..senders)
        .map(|i| JobFactory::new(i as u16, ids.clone(), BIP320_MASK))
        .collect();
    let shares = (0..DISTINCT_SHARES)
        .map(|i| {
            let s = i % senders;
            let job = factories[s].next_job(&works[s]);
            (s, share_bytes(&job, i as u32, VALIDATE_ROUND))
        })
        .collect();
    Prepared {
        members,
        payees,
        shares,
    }
}

struct ValidationRow {
    payees: usize,
    coinbase_bytes: usize,
    shares: usize,
    secs: f64,
}

fn time_validation(template: &BlockTemplate, n: usize) -> ValidationRow {
    let p = prepare(template, n);
    let tips = [Tip {
        hash: template.prev_blockhash,
        next_height: template.height,
        bits: template.bits,
        mintime: template.mintime,
        replaced_at: None,
    }];
    let rounds = [RoundView {
        id: VALIDATE_ROUND,
        payees: p.payees.clone(),
        replaced_at: None,
    }];
    let share_target = easy_target();
    let unix_now = unix_now() as u32;
    let grace = Duration::from_secs(30);
    let check = |i: usize, now: Instant| {
        let (s, share) = &p.shares[i % p.shares.len()];
        let m = &p.members[*s];
        validate(
            black_box(share),
            &ShareContext {
                tips: &tips,
                rounds: &rounds,
                grace,
                now,
                unix_now,
                member: m.id,
                member_script: &m.script,
                share_target,
            },
        )
    };
    // Every prepared share passes, and none is a block.
    for i in 0..p.shares.len() {
        match check(i, Instant::now()) {
            Ok(a) => assert!(!a.block, "a share met the network target"),
            Err(e) => panic!("a prepared share was refused: {e}"),
        }
    }
    let now = Instant::now();
    let start = Instant::now();
    let mut accepted = 0usize;
    for i in 0..VALIDATE_SHARES {
        accepted += usize::from(black_box(check(i, now)).is_ok());
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(accepted, VALIDATE_SHARES);
    ValidationRow {
        payees: n,
        coinbase_bytes: p
            .shares
            .iter()
            .map(|(_, s)| s.coinbase.len())
            .sum::<usize>()
            / p.shares.len(),
        shares: VALIDATE_SHARES,
        secs,
    }
}

/// Share entries as the writer makes them (3-payee coinbases).
fn writer_entries(template: &BlockTemplate) -> Vec<Entry> {
    let p = prepare(template, 3);
    let target = easy_target();
    p.shares
        .iter()
        .map(|(s, share)| Entry::share(share, p.members[*s].id, target, false))
        .collect()
}

struct AppendRow {
    batch: usize,
    entries: usize,
    secs: f64,
    bytes: u64,
}

fn time_append(dir: &Path, entries: &[Entry], batch: usize) -> AppendRow {
    let path = dir.join(format!("append-{batch}.jsonl"));
    let mut ledger = Ledger::open(&path, |_, _| {}).unwrap();
    let mut done = 0usize;
    let mut spent = Duration::ZERO;
    while done < APPEND_MAX_ENTRIES && spent.as_secs_f64() < APPEND_MAX_SECS {
        let chunk: Vec<Entry> = (0..batch)
            .map(|k| entries[(done + k) % entries.len()].clone())
            .collect();
        let start = Instant::now();
        ledger.append(&chunk).unwrap();
        spent += start.elapsed();
        done += batch;
    }
    drop(ledger);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(&path).ok();
    AppendRow {
        batch,
        entries: done,
        secs: spent.as_secs_f64(),
        bytes,
    }
}

/// Encoding alone (JSON and the chained hash), no write: the writer's CPU floor.
fn time_encode(entries: &[Entry]) -> AppendRow {
    let mut check = ChainCheck::default();
    let mut bytes = 0u64;
    let n = APPEND_MAX_ENTRIES;
    let start = Instant::now();
    for i in 0..n {
        bytes += encode_line(&mut check, &entries[i % entries.len()])
            .unwrap()
            .len() as u64;
    }
    AppendRow {
        batch: 0,
        entries: n,
        secs: start.elapsed().as_secs_f64(),
        bytes,
    }
}

// ------------------------------------------------------------------------------------------
// Stage 2: a big ledger, its audit and its replay
// ------------------------------------------------------------------------------------------

fn round_rules(template: &BlockTemplate, max_payees: u32) -> RoundRules {
    // As the coordinator's writer computes them (`Writer::maybe_round`).
    let block_work = target_work(&Target::from_compact(template.bits));
    RoundRules {
        window_work: block_work.saturating_mul(u128::from(WINDOW_BLOCKS)),
        subsidy: subsidy(Network::Bitcoin, template.height),
        max_output_bytes: OUTPUT_BYTES,
        max_payees,
    }
}

struct Written {
    entries: u64,
    rounds: u64,
    secs: f64,
    /// Time in `round_list` + `start_round`, and the last round's.
    round_secs: f64,
    last_round_secs: f64,
    last_payees: usize,
    blocks: u64,
}

/// Write a ledger of `shares` shares as an honest coordinator would.
fn write_ledger(path: &Path, template: &BlockTemplate, o: &Options) -> Written {
    let shares = o.shares;
    let start = Instant::now();
    let mut template = template.clone();
    let members: Vec<Member> = (0..MEMBERS).map(|i| member(100 + i)).collect();
    // Member i finds shares at (i + 1) parts of 55: unequal hash rates.
    let rate_total: u64 = (1..=MEMBERS as u64).sum();
    let mut ledger = Ledger::open(path, |_, _| {}).unwrap();
    let mut accounts = Accounts::default();
    let mut pending: Vec<Entry> = Vec::with_capacity(WRITE_BATCH + 1);
    for m in &members {
        pending.push(Entry::Member {
            member: m.id,
            name: m.name.clone(),
            script: m.script.clone(),
        });
        accounts.set_member(m.id, m.script.clone());
    }
    let share_target = easy_target();

    let share_work = target_work(&share_target);
    let ids = Arc::new(AtomicU64::new(0));
    let mut factories: Vec<_> = (0..MEMBERS)
        .map(|i| JobFactory::new(i as u16, ids.clone(), BIP320_MASK))
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut round = 0u64;
    let mut works: Vec<Arc<TemplateWork>> = Vec::new();
    let mut round_time = Duration::ZERO;
    let mut last_round_time = Duration::ZERO;
    let mut last_payees = 0;
    let mut blocks = 0u64;
    let mut entries = MEMBERS as u64;
    for n in 0..shares {
        if n.is_multiple_of(ROUND_EVERY) {
            round += 1;
            if round > 1 && round % TIP_EVERY_ROUNDS == 1 {
                // A new block on the network.
                template.prev_blockhash = BlockHash::from_byte_array(
                    sha256d::Hash::hash(&round.to_le_bytes()).to_byte_array(),
                );
                template.height += 1;
            }
            let rules = round_rules(&template, o.max_payees);
            let t0 = Instant::now();
            let payees = accounts.round_list(&rules);
            accounts.start_round(round, &rules);
            last_round_time = t0.elapsed();
            round_time += last_round_time;
            last_payees = payees.len();
            works = members
                .iter()
                .map(|m| work_for(&template, &payees, m, round))
                .collect();
            pending.push(Entry::Round {
                round,
                height: template.height,
                rules,
                payees,
            });
            entries += 1;
        }
        let mut pick = rng.next() % rate_total;
        let mut i = 0;
        while pick > i as u64 {
            pick -= i as u64 + 1;
            i += 1;
        }
        let job = factories[i].next_job(&works[i]);
        let share = share_bytes(&job, n as u32, round);
        let hash = job.header(job.version, n as u32).block_hash();
        assert!(share_target.is_met_by(hash));
        let block = template.target.is_met_by(hash);
        pending.push(Entry::share(&share, members[i].id, share_target, block));
        accounts.credit(&members[i].id, share_work);
        if block {
            accounts.block_found(round);
            blocks += 1;
        }
        entries += 1;
        if pending.len() >= WRITE_BATCH {
            ledger.append(&pending).unwrap();
            pending.clear();
        }
    }
    if !pending.is_empty() {
        ledger.append(&pending).unwrap();
    }
    assert_eq!(ledger.len(), entries);
    Written {
        entries,
        rounds: round,
        secs: start.elapsed().as_secs_f64(),
        round_secs: round_time.as_secs_f64(),
        last_round_secs: last_round_time.as_secs_f64(),
        last_payees,
        blocks,
    }
}

struct Audited {
    secs: f64,
    share_bytes: u64,
    shares: u64,
}

fn audit(path: &Path, blocks: u64) -> Audited {
    let start = Instant::now();
    let mut auditor = Auditor::default();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).unwrap());
    let mut line = String::new();
    let mut share_bytes = 0u64;
    let mut shares = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        if n == 0 {
            break;
        }
        // `{"seq":N,"hash":"<64>","body":{"kind":"share",...`: the kind is near the start.
        if line
            .get(..line.len().min(140))
            .is_some_and(|head| head.contains("\"kind\":\"share\""))
        {
            share_bytes += n as u64;
            shares += 1;
        }
        auditor.line(line.trim_end_matches('\n'));
    }
    let report = auditor.finish();
    let secs = start.elapsed().as_secs_f64();
    if !report.passed() {
        eprintln!("the audit of an honestly written ledger FAILED:");
        for f in &report.failures {
            eprintln!("  {f}");
        }
        panic!("audit failed ({} failures listed)", report.failures.len());
    }
    assert_eq!(report.shares, shares);
    assert_eq!(report.blocks, blocks);
    Audited {
        secs,
        share_bytes,
        shares,
    }
}

/// The coordinator's start-up (`Coordinator::bind`): open the ledger, replay every entry into
/// the accounts with `apply`, remember share hashes for duplicates.
fn replay(path: &Path) -> (f64, usize) {
    let start = Instant::now();
    let mut accounts = Accounts::default();
    let mut last_round = None;
    let mut seen: HashSet<BlockHash> = HashSet::new();
    let mut order: VecDeque<BlockHash> = VecDeque::new();
    let mut error = None;
    let ledger = Ledger::open(path, |seq, entry| {
        if let Entry::Round { round, .. } = entry {
            last_round = Some(*round);
        }
        if let Entry::Share { header, .. } = entry
            && let Some(hash) = share_hash(header)
            && seen.insert(hash)
        {
            // The coordinator keeps the newest 2^20.
            order.push_back(hash);
            if order.len() > 1 << 20
                && let Some(old) = order.pop_front()
            {
                seen.remove(&old);
            }
        }
        if let Err(e) = apply(&mut accounts, entry)
            && error.is_none()
        {
            error = Some(format!("entry {seq}: {e}"));
        }
    })
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(error.is_none(), "replay: {error:?}");
    assert!(last_round.is_some());
    black_box(&ledger);
    (secs, accounts.share_count())
}

/// The knobs, from the environment.
struct Options {
    shares: u64,
    /// Network bits of the big ledger's template.
    bits: u32,
    max_payees: u32,
}

fn env_number(name: &str, radix: u32) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let digits = v.trim().trim_start_matches("0x").replace('_', "");
    Some(
        u64::from_str_radix(&digits, radix)
            .unwrap_or_else(|e| panic!("{name}={v:?}: not a number ({e})")),
    )
}

fn main() {
    let o = Options {
        shares: env_number("POOL_BENCH_SHARES", 10).unwrap_or(DEFAULT_SHARES),
        bits: env_number("POOL_BENCH_BITS", 16).map_or(MAINNET_BITS, |b| b as u32),
        max_payees: env_number("POOL_BENCH_MAX_PAYEES", 10).map_or(MAX_PAYEES, |m| m as u32),
    };
    let shares = o.shares;
    let dir = match std::env::var_os("POOL_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let template = bench_template(MAINNET_BITS);
    let resettable = reset_peak();
    println!(
        "pool: template of {} transactions ({}-entry merkle branch), share target 2^256 - 1, \
         network bits {MAINNET_BITS:#010x} (the ledger's {:#010x}); files in {}",
        template.transactions.len() + 1,
        work_for(&template, &[], &member(0), 0).branch.len(),
        o.bits,
        dir.path().display()
    );

    // Stage 1a: validation.
    println!();
    println!(
        "share validation (`pool::validate::validate`, one thread, {VALIDATE_SHARES} shares \
         over {DISTINCT_SHARES} distinct ones from up to {SENDERS} members)"
    );
    println!("| payees | coinbase | shares/s | µs/share |");
    println!("| --- | --- | --- | --- |");
    for n in [3, 50] {
        let r = time_validation(&template, n);
        println!(
            "| {} | {} B | {:.0} | {:.2} |",
            r.payees,
            r.coinbase_bytes,
            r.shares as f64 / r.secs,
            1e6 * r.secs / r.shares as f64
        );
    }

    // Stage 1b: the writer.
    let entries = writer_entries(&template);
    println!();
    println!(
        "ledger writer (`Ledger::append`, share entries of 3-payee coinbases, one fsync per \
         batch; at most {APPEND_MAX_ENTRIES} entries or {APPEND_MAX_SECS} s each)"
    );
    println!("| batch | entries | entries/s | ms/batch | bytes/entry |");
    println!("| --- | --- | --- | --- | --- |");
    let e = time_encode(&entries);
    println!(
        "| encode only, no write | {} | {:.0} | | {:.0} |",
        e.entries,
        e.entries as f64 / e.secs,
        e.bytes as f64 / e.entries as f64
    );
    for batch in APPEND_BATCHES {
        let r = time_append(dir.path(), &entries, batch);
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.0} |",
            r.batch,
            r.entries,
            r.entries as f64 / r.secs,
            1e3 * r.secs / (r.entries / r.batch) as f64,
            r.bytes as f64 / r.entries as f64
        );
    }
    drop(entries);
    let stage1_hwm = status_mb("VmHWM");

    // Stage 2: a big ledger.
    let path = dir.path().join("pool-ledger.jsonl");
    println!();
    println!(
        "ledger of {shares} shares: {MEMBERS} members, a round every {ROUND_EVERY} shares, \
         written in batches of {WRITE_BATCH}"
    );
    reset_peak();
    let w = write_ledger(&path, &bench_template(o.bits), &o);
    let write_hwm = status_mb("VmHWM");
    let size = std::fs::metadata(&path).unwrap().len();
    reset_peak();
    let a = audit(&path, w.blocks);
    let audit_hwm = status_mb("VmHWM");
    reset_peak();
    let (replay_secs, replayed) = replay(&path);
    let replay_hwm = status_mb("VmHWM");
    assert_eq!(replayed as u64, shares);
    println!("| | |");
    println!("| --- | --- |");
    println!(
        "| entries | {} ({} members, {} rounds, {} shares of which {} blocks) |",
        w.entries, MEMBERS, w.rounds, a.shares, w.blocks
    );
    println!(
        "| file size | {size} B ({:.1} MB); {:.0} B/share overall, share lines {:.0} B |",
        size as f64 / 1e6,
        size as f64 / shares as f64,
        a.share_bytes as f64 / a.shares as f64
    );
    println!(
        "| write (build + append) | {:.2} s ({:.0} shares/s); rounds computed in {:.2} s, the last ({} payees) in {:.2} ms |",
        w.secs,
        shares as f64 / w.secs,
        w.round_secs,
        w.last_payees,
        1e3 * w.last_round_secs
    );
    println!(
        "| audit (`Auditor`, line by line) | {:.2} s: {:.0} shares/s, {:.0} MB/s; passed |",
        a.secs,
        a.shares as f64 / a.secs,
        size as f64 / 1e6 / a.secs
    );
    println!(
        "| coordinator start-up replay (`Ledger::open` + `apply`) | {:.2} s: {:.0} entries/s |",
        replay_secs,
        w.entries as f64 / replay_secs
    );
    println!();
    if resettable {
        println!(
            "peak RSS (VmHWM): {:.1} MB overall; stage 1 {stage1_hwm:.1} MB, writing the ledger \
             {write_hwm:.1} MB, audit {audit_hwm:.1} MB, replay {replay_hwm:.1} MB",
            status_mb("VmHWM").max(stage1_hwm.max(write_hwm).max(audit_hwm).max(replay_hwm))
        );
    } else {
        println!(
            "peak RSS (VmHWM): {:.1} MB (the kernel does not reset it per stage)",
            status_mb("VmHWM")
        );
    }
}
