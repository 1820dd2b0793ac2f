//! No found block is lost: not in a shutdown, not in an equal-work race, not when several
//! blocks are found on one parent. Against real regtest nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bitcoin::BlockHash;
use hearth::daemon::{Daemon, drain_pipeline};
use hearth::events::Stats;
use hearth::share::{Found, ShareChecker};
use hearth::submit::{Journal, Outcome, Submitter};
use hearth::work::{BIP320_MASK, JobFactory};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Wait until `rpc`'s node reports `hash` as its best block.
async fn wait_tip(rpc: &hearth::node::RpcClient, hash: &str) {
    for _ in 0..300 {
        if common::call(rpc, "getbestblockhash", json!([]))
            .await
            .as_str()
            == Some(hash)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node never reached tip {hash}");
}

async fn connect(from: &hearth::node::RpcClient, to: &hearth::regtest::RegtestNode) {
    common::call(from, "setnetworkactive", json!([true])).await;
    common::call(
        from,
        "addnode",
        json!([format!("127.0.0.1:{}", to.p2p_port), "onetry"]),
    )
    .await;
}

async fn best(rpc: &hearth::node::RpcClient) -> String {
    common::call(rpc, "getbestblockhash", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_ties_with_another_is_made_the_preferred_tip() {
    // Two nodes. Ours (A) sees the other's block X at height h first; then our block Y, of equal
    // work, arrives: the node keeps X ("inconclusive"). As ckpool does, Hearth then asks the
    // node to prefer its own block with preciousblock, and confirms it on the active chain.
    let a = common::node(&["-listen=1"]).await;
    let b = common::node(&[]).await;
    let (rpc_a, rpc_b) = (a.rpc().unwrap(), b.rpc().unwrap());
    let (address, _) = common::address("P2WPKH");
    let cancel = CancellationToken::new();
    connect(&rpc_b, &a).await;
    common::call(&rpc_a, "generatetoaddress", json!([1, address.to_string()])).await;
    wait_tip(&rpc_b, &best(&rpc_a).await).await;

    for round in ["inconclusive", "duplicate"] {
        // Apart, each finds a block on the same parent.
        common::call(&rpc_a, "setnetworkactive", json!([false])).await;
        common::call(&rpc_b, "setnetworkactive", json!([false])).await;
        let (ours, height, ours_hash) = common::solved_block(&rpc_a).await;
        let theirs = common::call(&rpc_b, "generatetoaddress", json!([1, address.to_string()]))
            .await[0]
            .as_str()
            .unwrap()
            .to_string();
        // Theirs reaches our node first.
        common::call(&rpc_a, "setnetworkactive", json!([true])).await;
        connect(&rpc_b, &a).await;
        wait_tip(&rpc_a, &theirs).await;
        if round == "duplicate" {
            // Our node got our block too, but after theirs (e.g. submitted before a restart):
            // the next submission is answered "duplicate" while theirs holds the height.
            let reply = common::call(&rpc_a, "submitblock", json!([ours])).await;
            assert_eq!(reply.as_str(), Some("inconclusive"));
        }
        let (outcome, reason) = hearth::submit::submit_and_confirm(
            &rpc_a,
            &ours,
            height,
            ours_hash,
            Duration::from_secs(30),
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::Accepted, "{round}: {reason}");
        assert!(reason.contains("preciousblock"), "{reason}");
        assert_eq!(best(&rpc_a).await, ours_hash.to_string(), "{round}");
        // Bring both nodes onto one chain again for the next round: a block on top of ours.
        common::call(&rpc_a, "generatetoaddress", json!([1, address.to_string()])).await;
        wait_tip(&rpc_b, &best(&rpc_a).await).await;
    }
}

/// A fast emulated board: on regtest nearly every one of its results is a block.
const BURST_BOARD: &str = "[[device]]\nkind = \"sim\"\nname = \"burst\"\nmodel = \"BM1370\"\nchips = 8\nfloor_bits = 12\nhashrate = 400000.0\n";

/// Every block in the journal directory `accepted` is on the active chain at its height.
async fn assert_accepted_are_on_chain(rpc: &hearth::node::RpcClient, accepted: &std::path::Path) {
    for file in std::fs::read_dir(accepted).unwrap() {
        let entry: hearth::submit::JournalEntry =
            serde_json::from_slice(&std::fs::read(file.unwrap().path()).unwrap()).unwrap();
        let on_chain = common::call(rpc, "getblockhash", json!([entry.height])).await;
        assert_eq!(on_chain.as_str(), Some(entry.hash.as_str()));
    }
}

/// `n` results on one job whose hashes all meet the (regtest) network target.
fn block_results(job: &Arc<hearth::work::Job>, n: usize) -> Vec<Found> {
    common::block_nonces(job)
        .take(n)
        .map(|nonce| Found {
            device: 0,
            device_name: "burst".into(),
            chip: None,
            job: job.clone(),
            version: job.version,
            nonce,
            threshold: hearth::share::Threshold::zero_bits(1),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_journals_every_queued_result_and_submits_the_candidates() {
    // Devices have stopped with 40 results still queued before the share checker, all of
    // them blocks on one parent. The shutdown drain must check and journal every one and
    // submit before it returns; cancelling everything at once dropped them.
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let work = common::regtest_work(&rpc, b"/burst/").await;
    let parent = work.prev_blockhash();
    let job =
        Arc::new(JobFactory::new(0, Arc::new(AtomicU64::new(1)), BIP320_MASK).next_job(&work));

    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let stats = Stats::default();
    stats.add_device("burst");
    let (events, _) = broadcast::channel(1024);
    let (found_tx, found_rx) = mpsc::channel(1024);
    let (candidate_tx, candidate_rx) = mpsc::channel(256);
    let (found_block_tx, _found_block_rx) = mpsc::channel(16);
    let (submitted_tx, _submitted_rx) = mpsc::unbounded_channel();
    let (_tip_tx, tip_rx) = watch::channel::<Option<BlockHash>>(Some(parent));
    let (drain, hard_stop, pipeline) = (
        CancellationToken::new(),
        CancellationToken::new(),
        TaskTracker::new(),
    );
    let results = block_results(&job, 40);
    for found in &results {
        found_tx.send(found.clone()).await.unwrap();
    }
    // A device that did not stop still holds its sender: the drain must not wait for it.
    let _stuck_device = found_tx.clone();
    drop(found_tx);
    pipeline.spawn(
        Submitter {
            rpc: rpc.clone(),
            journal: journal.clone(),
            candidates: candidate_rx,
            submitted: submitted_tx,
            stats: stats.clone(),
            events: events.clone(),
            cancel: hard_stop.clone(),
        }
        .run(),
    );
    pipeline.spawn(
        ShareChecker {
            found: found_rx,
            tip: tip_rx,
            candidates: candidate_tx,
            journal: journal.clone(),
            found_block: found_block_tx,
            stats: stats.clone(),
            events: events.clone(),
            drain: drain.clone(),
            cancel: hard_stop.clone(),
        }
        .run(),
    );
    pipeline.close();
    drain_pipeline(&drain, &hard_stop, &pipeline, Duration::from_secs(60)).await;
    assert!(
        pipeline.is_empty(),
        "the pipeline did not finish within its budget"
    );

    // Every result was checked, every block journalled; one holds the height, the others are
    // its siblings (filed, not sent: they could only tie with it); none is lost or pending.
    let device = &stats.snapshot()[0];
    assert_eq!(device.shares + device.stale, 40, "{device:?}");
    assert_eq!(device.block_candidates, 40);
    assert_eq!(journal.entries(Outcome::Accepted), 1);
    assert_eq!(journal.entries(Outcome::Stale), 39);
    assert_eq!(journal.pending().unwrap().len(), 0);
    assert_eq!(journal.entries(Outcome::Rejected), 0);
    let on_chain = common::call(&rpc, "getblockhash", json!([work.template.height])).await;
    let ours: Vec<String> = results
        .iter()
        .map(|f| f.job.header(f.version, f.nonce).block_hash().to_string())
        .collect();
    assert!(ours.contains(&on_chain.as_str().unwrap().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_burst_of_finds_loses_nothing() {
    // A fast emulated board on regtest (where nearly every result is a block), stopped in the
    // middle of mining, as Ctrl-C or SIGTERM does. Afterwards every result the board handed
    // over was checked, every block is journalled, and every journalled block is on the chain,
    // a sibling of one of ours that is, or still pending for the next start.
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let journal_dir = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let config = common::config_for(&node, &address.to_string(), journal_dir.path(), BURST_BOARD);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 5, Duration::from_secs(120)).await;
    let stats = daemon.stats.clone();
    let journal = daemon.journal.clone();
    daemon.shutdown().await;

    let device = &stats.snapshot()[0];
    assert_eq!(
        device.results,
        device.shares + device.stale + device.duplicates + device.hardware_errors,
        "a result was never checked: {device:?}"
    );
    let accepted = journal.entries(Outcome::Accepted);
    let stale = journal.entries(Outcome::Stale);
    let pending = journal.pending().unwrap().len();
    assert_eq!(journal.entries(Outcome::Rejected), 0);
    assert_eq!(
        accepted + stale + pending,
        device.block_candidates as usize,
        "a block was never journalled: {device:?}"
    );
    let dir = journal_dir.path().join("accepted");
    assert_accepted_are_on_chain(&rpc, &dir).await;
}

/// `key=value` from a tracing line (ANSI colours stripped).
fn field(line: &str, key: &str) -> u64 {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {plain:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_of_finds_exits_promptly_and_loses_nothing() {
    // The real binary, as systemd stops it: SIGTERM while a fast board finds block after block.
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hearth.toml");
    let log_path = dir.path().join("hearth.log");
    std::fs::write(
        &config_path,
        common::config_text(&node, &address.to_string(), journal.path(), BURST_BOARD),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["mine", "--config"])
        .arg(&config_path)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while common::height(&rpc).await < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon mined nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(40),
            "no exit within 40 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit}");

    let log = std::fs::read_to_string(&log_path).unwrap();
    let stats = log
        .lines()
        .find(|l| l.contains("final device stats"))
        .unwrap_or_else(|| panic!("no final stats in the log:\n{log}"));
    let results = field(stats, "results");
    let checked = field(stats, "shares")
        + field(stats, "stale")
        + field(stats, "duplicates")
        + field(stats, "hw_errors");
    assert_eq!(results, checked, "a result was never checked: {stats}");
    let count = |sub: &str| {
        std::fs::read_dir(journal.path().join(sub))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count() as u64
    };
    assert_eq!(count("rejected"), 0);
    assert_eq!(
        count("accepted") + count("stale") + count("pending"),
        field(stats, "candidates"),
        "a block was never journalled: {stats}"
    );
    assert_accepted_are_on_chain(&rpc, &journal.path().join("accepted")).await;
    eprintln!("SIGTERM to exit: {took:?}; {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_sibling_of_our_own_accepted_block_is_not_resubmitted_at_start_up() {
    // A hard stop left a sibling of our accepted block pending. Submitting it at the next start
    // would tie with our own block and preciousblock would reorg the node from one of our blocks
    // to the other; it is filed as a sibling instead.
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let work = common::regtest_work(&rpc, b"/sib/").await;
    let job =
        Arc::new(JobFactory::new(0, Arc::new(AtomicU64::new(1)), BIP320_MASK).next_job(&work));
    let results = block_results(&job, 2);
    let entry = |f: &Found| hearth::submit::JournalEntry {
        height: work.template.height,
        hash: f.job.header(f.version, f.nonce).block_hash().to_string(),
        device: "d".into(),
        found_at: 0,
        block: hex::encode(f.job.block_bytes(f.version, f.nonce)),
    };
    let (ours, sibling) = (entry(&results[0]), entry(&results[1]));
    assert_eq!(
        common::call(&rpc, "submitblock", json!([ours.block])).await,
        json!(null)
    );
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.record(&ours).unwrap();
    journal.finish(&ours, Outcome::Accepted).unwrap();
    journal.record(&sibling).unwrap();

    let stats = Stats::default();
    let submitter = Submitter {
        rpc: rpc.clone(),
        journal: journal.clone(),
        candidates: mpsc::channel(1).1,
        submitted: mpsc::unbounded_channel().0,
        stats,
        events: broadcast::channel(16).0,
        cancel: CancellationToken::new(),
    };
    submitter.resubmit_pending().await.unwrap();
    assert_eq!(best(&rpc).await, ours.hash, "the node left our first block");
    assert!(journal.has(Outcome::Stale, sibling.height, &sibling.hash));
    assert!(journal.pending().unwrap().is_empty());
}
