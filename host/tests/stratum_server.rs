//! The Stratum server on its own, fed with work built here (mainnet difficulty, so no share is
//! a block): every rejection and its reason, difficulty changes, tip changes, the orders real
//! clients send requests in, and misbehaving clients (who are dropped while the others are
//! unaffected).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bitcoin::hashes::Hash;
use common::stratum::{Miner, synthetic_work};
use hearth::device::ResultSender;
use hearth::events::Stats;
use hearth::share::Found;
use hearth::stratum::difficulty::VardiffConfig;
use hearth::stratum::{StratumServer, StratumSettings};
use hearth::work::TemplateWork;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

struct Server {
    addr: SocketAddr,
    work: watch::Sender<Option<Arc<TemplateWork>>>,
    found: mpsc::Receiver<Found>,
    stats: Stats,
    cancel: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn settings() -> StratumSettings {
    StratumSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        vardiff: VardiffConfig {
            start: 0.000_01,
            min: 0.000_001,
            max: 0.01,
            shares_per_minute: 10.0,
            enabled: false,
        },
        max_connections: 200,
        max_connections_per_ip: 50,
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        write_timeout: Duration::from_secs(5),
    }
}

async fn server(settings: StratumSettings) -> Server {
    let bound = StratumServer::bind(settings).await.unwrap();
    let addr = bound.local_addr().unwrap();
    let (work, work_rx) = watch::channel(Some(synthetic_work(1, 0xaa, true)));
    let (found_tx, found) = mpsc::channel(4096);
    let stats = Stats::default();
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let cancel = CancellationToken::new();
    tokio::spawn(bound.run(
        work_rx,
        ResultSender::new(found_tx, stats.clone()),
        stats.clone(),
        events,
        Arc::new(AtomicU64::new(1)),
        cancel.clone(),
    ));
    Server {
        addr,
        work,
        found,
        stats,
        cancel,
    }
}

/// Subscribe, configure version rolling and authorize, waiting for each reply; then the
/// first job.
async fn ready_miner(addr: SocketAddr, worker: &str) -> Miner {
    let mut m = Miner::connect(addr).await;
    m.send(r#"{"id":1,"method":"mining.subscribe","params":["test/1.0"]}"#)
        .await;
    let r = m.next_is_reply(json!(1)).await;
    m.take_subscribe(&r);
    m.send(r#"{"id":2,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":2}]}"#).await;
    let r = m.next_is_reply(json!(2)).await;
    m.take_configure(&r);
    m.send(&format!(
        r#"{{"id":3,"method":"mining.authorize","params":["{worker}","x"]}}"#
    ))
    .await;
    assert_eq!(m.next_is_reply(json!(3)).await["result"], json!(true));
    m.jobs_at_least(1).await;
    m
}

fn submit_line(id: u64, s: &common::stratum::Solved, version_bits: Option<u32>) -> String {
    let mut params = vec![
        json!("w"),
        json!(s.job_id),
        json!(hex::encode(&s.extranonce2)),
        json!(format!("{:08x}", s.ntime)),
        json!(format!("{:08x}", s.nonce)),
    ];
    if let Some(bits) = version_bits {
        params.push(json!(format!("{bits:08x}")));
    }
    json!({"id": id, "method": "mining.submit", "params": params}).to_string()
}

fn error_code(reply: &Value) -> i64 {
    reply["error"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {reply}"))
}

#[tokio::test]
async fn every_rejection_says_why_and_good_shares_reach_the_checker() {
    let mut s = server(settings()).await;
    let mut m = ready_miner(s.addr, "alice").await;
    assert_eq!(m.extranonce2_size, 4);
    assert_eq!(m.extranonce1.len(), 4);
    assert_eq!(m.version_mask, 0x1fff_e000);
    assert_eq!(m.difficulty, 0.000_01);
    assert!(m.jobs[0].clean, "a miner's first job is clean");

    // A good share with rolled version bits.
    let good = m.solve(&[0, 0, 0, 1], 0x0012_4000, 0);
    m.send(&submit_line(10, &good, Some(0x0012_4000))).await;
    let r = m.reply(json!(10)).await;
    assert_eq!(r["result"], json!(true), "{r}");
    let found = tokio::time::timeout(Duration::from_secs(5), s.found.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.device_name, "stratum:alice");
    assert_eq!(found.nonce, good.nonce);
    assert_eq!(found.version as u32, good.version);
    assert_eq!(
        found
            .job
            .header(found.version, found.nonce)
            .block_hash()
            .to_byte_array(),
        good.hash,
        "the server hashed the header the miner hashed"
    );

    // The same share again.
    m.send(&submit_line(11, &good, Some(0x0012_4000))).await;
    assert_eq!(error_code(&m.reply(json!(11)).await), 22);
    // A hash below the share target.
    let bad = m.miss(&[0, 0, 0, 2], 0.000_01);
    m.send(&submit_line(12, &bad, None)).await;
    assert_eq!(error_code(&m.reply(json!(12)).await), 23);
    // An unknown job.
    let mut unknown = good.clone();
    unknown.job_id = "deadbeef".into();
    m.send(&submit_line(13, &unknown, None)).await;
    assert_eq!(error_code(&m.reply(json!(13)).await), 21);
    // extranonce2 of the wrong size.
    let mut short = m.solve(&[0, 3], 0, 0);
    short.extranonce2 = vec![0, 3];
    m.send(&submit_line(14, &short, None)).await;
    let r = m.reply(json!(14)).await;
    assert_eq!(error_code(&r), 20);
    assert!(
        r["error"][1].as_str().unwrap().contains("extranonce2"),
        "{r}"
    );
    // ntime more than two hours ahead.
    let mut late = m.solve(&[0, 0, 0, 4], 0, 0);
    late.ntime += 3 * 3600;
    m.send(&submit_line(15, &late, None)).await;
    let r = m.reply(json!(15)).await;
    assert!(r["error"][1].as_str().unwrap().contains("ntime"), "{r}");
    // Version bits outside the granted mask.
    let outside = m.solve(&[0, 0, 0, 5], 0, 0);
    m.send(&submit_line(16, &outside, Some(0x0000_1000))).await;
    let r = m.reply(json!(16)).await;
    assert!(r["error"][1].as_str().unwrap().contains("mask"), "{r}");
    // Four params.
    m.send(r#"{"id":17,"method":"mining.submit","params":["w","1","00000000","00000000"]}"#)
        .await;
    assert_eq!(error_code(&m.reply(json!(17)).await), 20);

    // Before subscribe, before authorize.
    let mut fresh = Miner::connect(s.addr).await;
    fresh.send(&submit_line(1, &good, None)).await;
    assert_eq!(error_code(&fresh.reply(json!(1)).await), 25);
    fresh
        .send(r#"{"id":2,"method":"mining.subscribe","params":[]}"#)
        .await;
    fresh.reply(json!(2)).await;
    fresh.send(&submit_line(3, &good, None)).await;
    assert_eq!(error_code(&fresh.reply(json!(3)).await), 24);

    let stats = s.stats.snapshot();
    let alice = stats.iter().find(|d| d.name == "stratum:alice").unwrap();
    assert_eq!(alice.results, 1);
    assert_eq!(alice.duplicates, 1);
    assert_eq!(alice.rejected, 6);
    drop(s);
}

#[tokio::test]
async fn configure_subscribe_and_authorize_back_to_back_are_answered_in_order() {
    // ESP-Miner's shape: three requests without waiting, then suggest_difficulty and
    // extranonce.subscribe.
    let s = server(settings()).await;
    let mut m = Miner::connect(s.addr).await;
    m.send(r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#).await;
    m.send(r#"{"id":2,"method":"mining.subscribe","params":["bitaxe/BM1370/v2.9.0"]}"#)
        .await;
    m.send(r#"{"id":3,"method":"mining.authorize","params":["bc1qexample.bitaxe","x"]}"#)
        .await;
    let r = m.next_is_reply(json!(1)).await;
    m.take_configure(&r);
    let r = m.next_is_reply(json!(2)).await;
    m.take_subscribe(&r);
    assert_eq!(m.next_is_reply(json!(3)).await["result"], json!(true));
    // Then the difficulty before the first job.
    let d = m.read().await;
    assert_eq!(d["method"], "mining.set_difficulty");
    let n = m.read().await;
    assert_eq!(n["method"], "mining.notify");
    m.send(r#"{"id":4,"method":"mining.suggest_difficulty","params":[0.001]}"#)
        .await;
    assert_eq!(m.reply(json!(4)).await["result"], json!(true));
    // The new difficulty comes with the job again, under a new id (ESP-Miner ignores a
    // repeated id; cgminer, cpuminer and NerdQAxe apply a difficulty at the next notify).
    m.jobs_at_least(2).await;
    assert_eq!(m.difficulty, 0.001);
    assert_ne!(m.jobs[0].job_id, m.jobs[1].job_id);
    assert!(!m.jobs[1].clean);
    assert_eq!(m.jobs[0].prev, m.jobs[1].prev);
    m.send(r#"{"id":5,"method":"mining.extranonce.subscribe","params":[]}"#)
        .await;
    assert_eq!(m.reply(json!(5)).await["result"], json!(true));
}

#[tokio::test]
async fn a_repeated_suggestion_is_a_keepalive_and_old_jobs_keep_their_difficulty() {
    let s = server(settings()).await;
    let mut m = ready_miner(s.addr, "nerd").await;
    m.send(r#"{"id":7,"method":"mining.suggest_difficulty","params":[0.0001]}"#)
        .await;
    m.reply(json!(7)).await;
    m.jobs_at_least(2).await;
    assert_eq!(m.difficulty, 0.0001);
    // NerdMiner repeats its suggestion every 30 s: nothing changes, nothing is sent.
    m.send(r#"{"id":8,"method":"mining.suggest_difficulty","params":[0.0001]}"#)
        .await;
    m.reply(json!(8)).await;
    m.send(r#"{"id":9,"method":"mining.extranonce.subscribe","params":[]}"#)
        .await;
    m.reply(json!(9)).await;
    assert_eq!(m.jobs.len(), 2, "a repeated suggestion sent work again");
    // A share at the first job's (lower) difficulty is still good on that job: shares in
    // flight are not refused for a change the miner had not seen.
    let first = m.jobs[0].clone();
    let mut at_first = Miner::connect(s.addr).await; // for solving only
    at_first.extranonce1 = m.extranonce1.clone();
    at_first.version_mask = m.version_mask;
    at_first.jobs = vec![first];
    at_first.job_difficulty = vec![0.000_01];
    let mut share = at_first.solve(&[0, 0, 0, 9], 0, 0);
    // Make sure it is below the new difficulty, so the old one is what accepts it.
    let mut start = 0;
    while share.difficulty >= 0.0001 {
        start = share.nonce + 1;
        share = at_first.solve(&[0, 0, 0, 9], 0, start);
    }
    m.send(&submit_line(10, &share, Some(0))).await;
    assert_eq!(m.reply(json!(10)).await["result"], json!(true));
    // The same hash on the new job id is low difficulty there.
    let mut on_new = share.clone();
    on_new.job_id = m.jobs[1].job_id.clone();
    m.send(&submit_line(11, &on_new, Some(0))).await;
    assert_eq!(error_code(&m.reply(json!(11)).await), 23);
    let _ = start;
}

#[tokio::test]
async fn a_new_tip_sends_clean_jobs_and_shares_on_the_old_one_are_stale() {
    let s = server(settings()).await;
    let mut m = ready_miner(s.addr, "tipper").await;
    // A fee refresh: same tip, not clean; shares on the earlier job stay good.
    s.work.send_replace(Some(synthetic_work(2, 0xaa, false)));
    m.jobs_at_least(2).await;
    assert!(!m.jobs[1].clean);
    let old_job = m.jobs[0].clone();
    // A new tip: clean.
    s.work.send_replace(Some(synthetic_work(3, 0xbb, true)));
    m.jobs_at_least(3).await;
    assert!(m.jobs[2].clean);
    assert_ne!(m.jobs[2].prev, old_job.prev);
    let mut solver = Miner::connect(s.addr).await;
    solver.extranonce1 = m.extranonce1.clone();
    solver.jobs = vec![old_job];
    solver.job_difficulty = vec![m.difficulty];
    let stale = solver.solve(&[0, 0, 1, 0], 0, 0);
    m.send(&submit_line(20, &stale, None)).await;
    let r = m.reply(json!(20)).await;
    assert_eq!(error_code(&r), 21);
    assert!(r["error"][1].as_str().unwrap().contains("Stale"), "{r}");
    // The new job takes shares.
    let fresh = m.solve(&[0, 0, 1, 1], 0, 0);
    m.send(&submit_line(21, &fresh, None)).await;
    assert_eq!(m.reply(json!(21)).await["result"], json!(true));
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A healthy miner still gets answers.
async fn still_served(m: &mut Miner, id: u64) {
    m.send(&format!(
        r#"{{"id":{id},"method":"mining.suggest_difficulty","params":[0.00001]}}"#
    ))
    .await;
    assert_eq!(m.reply(json!(id)).await["result"], json!(true));
}

#[tokio::test]
async fn malformed_json_gets_an_error_and_the_session_goes_on() {
    let s = server(settings()).await;
    let mut m = ready_miner(s.addr, "typo").await;
    m.send(r#"{"id":5,"method":"mining.subscribe","params":["#)
        .await;
    let r = m.read().await;
    assert_eq!(error_code(&r), 20);
    m.send("\u{1}\u{2}garbage").await;
    assert_eq!(error_code(&m.read().await), 20);
    still_served(&mut m, 6).await;
}

#[tokio::test]
async fn a_one_mebibyte_line_drops_only_its_sender() {
    let s = server(settings()).await;
    let mut good = ready_miner(s.addr, "good").await;
    let mut bad = TcpStream::connect(s.addr).await.unwrap();
    let line = vec![b'x'; 1 << 20];
    // The server may close before taking it all.
    let _ = bad.write_all(&line).await;
    assert!(closed_within(&mut bad, Duration::from_secs(5)).await);
    still_served(&mut good, 7).await;
}

#[tokio::test]
async fn slowloris_is_dropped_at_the_handshake_timeout() {
    let s = server(settings()).await;
    let mut good = ready_miner(s.addr, "good").await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let started = std::time::Instant::now();
    // One byte every 200 ms, never a newline.
    let dropped = loop {
        if slow.write_all(b"{").await.is_err() {
            break true;
        }
        if closed_within(&mut slow, Duration::from_millis(200)).await {
            break true;
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(dropped, "a slowloris client is still connected after 10 s");
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(1900) && held < Duration::from_secs(5),
        "{held:?}"
    );
    still_served(&mut good, 8).await;
}

#[tokio::test]
async fn a_thousand_connections_from_one_address_get_only_their_share() {
    let s = server(settings()).await;
    let mut good = ready_miner(s.addr, "good").await;
    let mut streams = Vec::new();
    for _ in 0..1000 {
        if let Ok(stream) = TcpStream::connect(s.addr).await {
            streams.push(stream);
        }
    }
    // Every connection over the per-address cap (50, the healthy miner holding one) is
    // closed at once; the rest are held until their handshake times out.
    let mut closed = 0;
    for stream in &mut streams {
        if closed_within(stream, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1000 - 49, "only {closed} of 1000 refused");
    still_served(&mut good, 9).await;
}

#[tokio::test]
async fn a_flood_of_invalid_shares_is_dropped() {
    let s = server(settings()).await;
    let mut good = ready_miner(s.addr, "good").await;
    let mut flood = ready_miner(s.addr, "flood").await;
    let bad = flood.miss(&[0, 0, 0, 1], 0.000_01);
    let mut dropped_after = None;
    for i in 0..1000u32 {
        let mut line = submit_line(u64::from(i) + 100, &bad, None);
        line.push('\n');
        // A new nonce each time: no duplicate, all low difficulty.
        let line = line.replace(&format!("{:08x}", bad.nonce), &format!("{:08x}", i));
        if flood.write_raw(line.as_bytes()).await.is_err() {
            dropped_after = Some(i);
            break;
        }
    }
    let closed = flood.closed_within(Duration::from_secs(5)).await;
    assert!(
        closed || dropped_after.is_some(),
        "a flood of 1000 invalid shares was not dropped"
    );
    still_served(&mut good, 10).await;
    let stats = s.stats.snapshot();
    let flood_stats = stats.iter().find(|d| d.name == "stratum:flood").unwrap();
    assert!(
        flood_stats.rejected <= 110,
        "{} invalid shares were judged",
        flood_stats.rejected
    );
}

#[tokio::test]
async fn connections_over_the_total_cap_are_refused() {
    let mut settings = settings();
    settings.max_connections = 3;
    let s = server(settings).await;
    let _a = ready_miner(s.addr, "a").await;
    let _b = ready_miner(s.addr, "b").await;
    let mut c = ready_miner(s.addr, "c").await;
    let mut d = TcpStream::connect(s.addr).await.unwrap();
    assert!(closed_within(&mut d, Duration::from_secs(2)).await);
    still_served(&mut c, 11).await;
}
