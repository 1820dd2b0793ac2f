//! A share's round trip from a member to the pool's coordinator and back: over the private Tor
//! network of the tests (a member reaching the coordinator's onion service through Tor's SOCKS
//! port), with the same member on loopback as the baseline, in the same run.
//!
//! Everything is real: a custom signet node (`-signetchallenge=51`, from scripts/bitcoind.sh),
//! a `hearth` coordinator in this process with a fixed share difficulty, a private Tor network
//! on loopback (scripts/tor-net.sh, Debian's `tor`) with an onion service in front of the
//! coordinator's port. The member is the tests' hand-made one: it logs in (BIP340 over the
//! challenge), then sends shares one at a time, each waiting for its answer, so that a round
//! trip is the member's write, the relays, the coordinator's checks and its ledger's fsync, and
//! the answer's way back. The shares are found before timing starts; every one must be
//! accepted. Loopback Tor has no network latency: the Tor figures are the relays' own cost (six
//! hops each way through a rendezvous circuit), the floor a real onion service adds to. The
//! launcher's probe has already built that circuit, so the login figure is a warm circuit's.
//!
//! ```text
//! cargo bench -p hearth --bench pool_tor                          # 300 shares each way
//! POOL_TOR_SHARES=50 cargo bench -p hearth --bench pool_tor       # a quick look
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bitcoin::{Address, Network};
use common::pool::{RawMember, job_paying, share_nonces};
use hearth::daemon::Daemon;
use hearth::pool::identity::MemberKey;
use hearth::pool::payout::payout_outputs;

/// 2^-20: about 4,096 hashes a share, found in a moment before the timing; a signet block
/// needs about 2^22 hashes, so about one hash in a thousand that is a share is also a block
/// (those are skipped: a block would have to carry its transactions).
const DIFFICULTY: f64 = 1.0 / 1_048_576.0;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Run {
    login: Duration,
    trips: Vec<Duration>,
}

/// Log in through `socks5` (or directly) and send `nonces` one at a time.
async fn run(
    reach: &str,
    socks5: Option<&str>,
    key: &MemberKey,
    script: &bitcoin::ScriptBuf,
    job: &hearth::work::Job,
    round: u64,
    nonces: &[u32],
) -> Run {
    let started = Instant::now();
    let mut member = RawMember::try_login(reach, socks5, key, script, false)
        .await
        .unwrap_or_else(|e| panic!("login refused: {e}"));
    let login = started.elapsed();
    let mut trips = Vec::with_capacity(nonces.len());
    for nonce in nonces {
        let sent = Instant::now();
        let reply = member.share(job, *nonce, round).await;
        trips.push(sent.elapsed());
        assert!(reply["error"].is_null(), "share refused: {reply}");
    }
    assert_eq!(member.round, round, "the round changed during the run");
    Run { login, trips }
}

fn report(route: &str, run: &mut Run) {
    run.trips.sort();
    let t = &run.trips;
    let mean = t.iter().sum::<Duration>() / t.len() as u32;
    println!(
        "{route:<8} {:>6} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10.1}",
        t.len(),
        ms(mean),
        ms(percentile(t, 50.0)),
        ms(percentile(t, 90.0)),
        ms(percentile(t, 99.0)),
        ms(t[0]),
        ms(t[t.len() - 1]),
        ms(run.login),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shares: usize = std::env::var("POOL_TOR_SHARES")
        .ok()
        .map(|v| v.parse().expect("POOL_TOR_SHARES: a number of shares"))
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let node = common::signet_node("51", &[]).await;
    let key_file = dir.path().join("member.key");
    let key = MemberKey::load_or_create(&key_file).unwrap();
    let address = Address::p2wpkh(&common::key().public, Network::Signet);
    let script = address.script_pubkey();
    // A fixed difficulty and a round that outlasts the run, so that every share stands.
    let section = format!(
        r#"
        [pool.coordinator]
        listen = "127.0.0.1:0"
        members = [{{ name = "bench", key = "{id}" }}]
        start_difficulty = {DIFFICULTY}
        min_difficulty = {DIFFICULTY}
        max_difficulty = {DIFFICULTY}
        round_secs = 3600
        "#,
        id = key.id()
    );
    let config = common::config_for(
        &node,
        &address.to_string(),
        &dir.path().join("journal"),
        &section,
    );
    let coordinator = Daemon::start(config).await.unwrap();
    let pool_addr = coordinator.pool_addr.unwrap();
    let started = Instant::now();
    let tor = tokio::task::spawn_blocking(move || common::tor::tor_net(pool_addr.port()))
        .await
        .unwrap();
    let tor_up = started.elapsed();

    let first = RawMember::login(&pool_addr.to_string(), &key, &script).await;
    let (round, payees) = (first.round, first.payees.clone());
    drop(first);
    let job = job_paying(
        &node,
        |value| payout_outputs(&payees, &script, value),
        &key.id(),
    )
    .await;
    let nonces = share_nonces(&job, DIFFICULTY, 0, 3 * shares);
    let (direct_a, rest) = nonces.split_at(shares);
    let (onion, direct_b) = rest.split_at(shares);

    let local = pool_addr.to_string();
    let socks = Some(tor.socks.as_str());
    let mut loopback = run(&local, None, &key, &script, &job, round, direct_a).await;
    let mut through_tor = run(&tor.onion, socks, &key, &script, &job, round, onion).await;
    let mut loopback_after = run(&local, None, &key, &script, &job, round, direct_b).await;

    println!(
        "share round trip, member -> coordinator -> member ({shares} shares each, sequential, \
         difficulty 2^-20, an fsync per share); the private Tor network came up in {:.1} s",
        tor_up.as_secs_f64()
    );
    println!(
        "{:<8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "route", "shares", "mean ms", "p50", "p90", "p99", "min", "max", "login ms"
    );
    report("loopback", &mut loopback);
    report("tor", &mut through_tor);
    report("loopback", &mut loopback_after);
    let baseline = percentile(&loopback.trips, 50.0).min(percentile(&loopback_after.trips, 50.0));
    println!(
        "Tor adds {:.2} ms at the median, {:.2} ms at p99",
        ms(percentile(&through_tor.trips, 50.0).saturating_sub(baseline)),
        ms(percentile(&through_tor.trips, 99.0).saturating_sub(
            percentile(&loopback.trips, 99.0).max(percentile(&loopback_after.trips, 99.0))
        )),
    );
    drop(tor);
    coordinator.shutdown().await;
}
