//! Work restart latency and daemon memory, against a real regtest bitcoind.
//!
//! Restart: 100 times, a block is mined outside the daemon (`generatetoaddress`), and we time
//! until every one of 4 emulated boards has a job on the new tip on its UART. Reported apart:
//! the node's part (block accepted → longpoll reply in the daemon) and the daemon's own part
//! (template in hand → job frame on every chain).
//!
//! Memory: the real `hearth mine` binary with 4 emulated boards, RSS after 20 s of mining.
//!
//!     cargo bench -p hearth --bench restart
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use hearth::daemon::Daemon;
use hearth::regtest::{RegtestNode, find_bitcoind};
use serde_json::json;

const BURN: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<48} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  (n={})",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1],
        v.len()
    );
}

fn config_text(node: &RegtestNode, journal: &std::path::Path) -> String {
    let mut text = format!(
        "[node]\nnetwork = \"regtest\"\nurl = \"{}\"\ncookie = \"{}\"\npoll_interval_secs = 5\n[payout]\naddress = \"{BURN}\"\n[journal]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
        node.rpc_url(),
        node.cookie_path().display(),
        journal.display()
    );
    for i in 0..4 {
        // Slow emulated hashing: the boards must not find blocks of their own during the run.
        text += &format!(
            "[[device]]\nkind = \"sim\"\nname = \"board{i}\"\nmodel = \"BM1370\"\nchips = 4\nhashrate = 1\n"
        );
    }
    text
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary = find_bitcoind().unwrap();
    let mut node = RegtestNode::start(&binary, &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let rpc = node.rpc().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let config = hearth::config::Config::parse(&config_text(&node, journal.path()))
        .unwrap()
        .validate()
        .unwrap();
    let daemon = Daemon::start(config).await.unwrap();
    let mut work = daemon.work.clone();
    // Wait until every board is up and has work.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut end_to_end, mut from_return, mut node_part, mut daemon_part) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..100 {
        let t_call = Instant::now();
        let hashes = rpc
            .call::<serde_json::Value>("generatetoaddress", json!([1, BURN]))
            .await
            .unwrap();
        let t_return = Instant::now();
        let tip: bitcoin::BlockHash = hashes[0].as_str().unwrap().parse().unwrap();
        // The daemon's template for the new tip.
        let received = loop {
            let current = work.borrow_and_update().clone();
            if let Some(w) = current.filter(|w| w.prev_blockhash() == tip) {
                break w.received_at;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), work.changed()).await;
        };
        // Every chain's UART has a job on the new tip.
        let mut last_frame = received;
        for board in 0..4 {
            loop {
                let job = daemon.sim(board).and_then(|s| s.stats().last_job);
                if let Some((at, prev)) = job
                    && prev == tip.to_byte_array()
                {
                    last_frame = last_frame.max(at);
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        end_to_end.push(ms(last_frame.saturating_duration_since(t_call)));
        from_return.push(ms(last_frame.saturating_duration_since(t_return)));
        node_part.push(ms(received.saturating_duration_since(t_call)));
        daemon_part.push(ms(last_frame.saturating_duration_since(received)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("work restart over 100 tip changes, 4 emulated boards:");
    report(
        "end to end: generatetoaddress call -> all UARTs",
        end_to_end,
    );
    report(
        "end to end: generatetoaddress return -> all UARTs",
        from_return,
    );
    report("node + RPC: call -> longpoll template parsed", node_part);
    report("daemon: template parsed -> job on every UART", daemon_part);
    daemon.shutdown().await;

    // Memory of the real binary.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.toml");
    std::fs::write(
        &path,
        config_text(&node, journal.path()).replace("hashrate = 1", "hashrate = 0"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["mine", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut peak = 0u64;
    let mut last = 0u64;
    while start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let kb = |key: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        };
        last = kb("VmRSS:").unwrap_or(0);
        peak = kb("VmHWM:").unwrap_or(peak);
    }
    let height = rpc.call::<u64>("getblockcount", json!([])).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "memory: `hearth mine` with 4 emulated boards (16 chips, hashing flat out), after 20 s: RSS {:.1} MB, peak {:.1} MB (node height {height})",
        last as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    node.stop().await;
}
