//! Issue 8: a pool of home miners on a custom signet (`-signetchallenge=51`): a coordinator and
//! two members, each `hearth` with its own node (the three nodes peered on loopback), the
//! members with emulated boards and one with a Stratum miner too. Shares are credited to the
//! members who found them, found blocks pay the members as the ledger says and the nodes accept
//! them, `hearth pool audit` passes, and a tampered ledger or a coinbase paying the wrong list
//! is caught. The same over a private Tor network, and the faults: the coordinator restarted,
//! a member mining solo and rejoining, and bad shares refused and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitcoin::{Address, Network, ScriptBuf};
use common::pool::{RawMember, job_paying};
use hearth::daemon::Daemon;
use hearth::pool::audit::{AuditReport, Auditor};
use hearth::pool::identity::{MemberId, MemberKey};
use hearth::pool::ledger::Entry;
use hearth::pool::payout::Payee;
use hearth::regtest::RegtestNode;
use serde_json::{Value, json};

/// 2^-12: shares of about 2^20 hashes, the emulated chips' floor (signet blocks need about
/// 2^22.2, so a block is about 4.6 shares).
const SHARE_DIFFICULTY: f64 = 0.000244140625;

struct Member {
    key_file: PathBuf,
    id: MemberId,
    address: Address,
    script: ScriptBuf,
}

fn member(dir: &Path, name: &str) -> Member {
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&key_file, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    let id = MemberKey::load_or_create(&key_file).unwrap().id();
    let key = common::key();
    let address = Address::p2wpkh(&key.public, Network::Signet);
    let script = address.script_pubkey();
    Member {
        key_file,
        id,
        address,
        script,
    }
}

/// Emulated BM1370 chips at 0.5 MH/s each: a block every few seconds, so that a Stratum miner
/// hashing in this test's process finishes its shares before the tip moves on.
fn sim(chips: u16) -> String {
    format!(
        "[[device]]\nkind = \"sim\"\nmodel = \"BM1370\"\nchips = {chips}\nfloor_bits = 20\nhashrate = 500000.0\n"
    )
}

/// Connect `node` to `with` now (and keep reconnecting), and wait for the connection.
async fn peer(node: &RegtestNode, with: &RegtestNode) {
    let rpc = node.rpc().unwrap();
    let address = format!("127.0.0.1:{}", with.p2p_port);
    common::call(&rpc, "addnode", json!([address, "add"])).await;
    common::call(&rpc, "addnode", json!([address, "onetry"])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = common::call(&rpc, "getpeerinfo", json!([])).await;
        if peers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["addr"] == json!(address))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{address} did not connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn coordinator_section(members: &[(&str, &Member)], grace_secs: f64) -> String {
    let list: Vec<String> = members
        .iter()
        .map(|(name, m)| format!("{{ name = \"{name}\", key = \"{}\" }}", m.id))
        .collect();
    format!(
        r#"
        [pool.coordinator]
        listen = "127.0.0.1:0"
        members = [{}]
        start_difficulty = {SHARE_DIFFICULTY}
        max_difficulty = {max}
        shares_per_minute = 120
        window_blocks = 4
        round_secs = 3
        grace_secs = {grace_secs}
        "#,
        list.join(", "),
        max = SHARE_DIFFICULTY * 4.0,
    )
}

fn member_section(coordinator: &str, m: &Member, extra: &str) -> String {
    format!(
        "[pool.member]\ncoordinator = \"{coordinator}\"\nkey_file = \"{}\"\nsolo_after_secs = 4\n{extra}\n",
        m.key_file.display()
    )
}

async fn start(node: &RegtestNode, address: &Address, journal: &Path, sections: &str) -> Daemon {
    let config = common::config_for(node, &address.to_string(), journal, sections);
    tokio::time::timeout(Duration::from_secs(60), Daemon::start(config))
        .await
        .expect("daemon start-up took over 60 s")
        .unwrap()
}

async fn ledger(coordinator: &str, socks5: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    hearth::pool::cli::fetch(coordinator, socks5, |l| lines.push(l.to_string()))
        .await
        .unwrap();
    lines
}

fn audit(lines: &[String]) -> AuditReport {
    let mut auditor = Auditor::default();
    for l in lines {
        auditor.line(l);
    }
    auditor.finish()
}

fn entries(lines: &[String]) -> Vec<Entry> {
    let mut check = hearth::pool::ledger::ChainCheck::default();
    lines.iter().map(|l| check.next(l).unwrap().1).collect()
}

/// The rounds' lists, by round.
fn rounds(entries: &[Entry]) -> std::collections::HashMap<u64, Vec<Payee>> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Round { round, payees, .. } => Some((*round, payees.clone())),
            _ => None,
        })
        .collect()
}

async fn status(coordinator: &str) -> Value {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(coordinator).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"id\":9,\"method\":\"status\"}\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = lines.next_line().await.unwrap().unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 9 {
            return v["result"].clone();
        }
    }
}

/// Wait until the ledger holds a block whose round paid both members; returns the lines.
async fn until_a_shared_block(
    coordinator: &str,
    socks5: Option<&str>,
    within: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let lines = ledger(coordinator, socks5).await;
        let all = entries(&lines);
        let lists = rounds(&all);
        let shared = all.iter().any(|e| {
            matches!(e, Entry::Share { block: true, round, .. }
                if lists.get(round).is_some_and(|p| p.len() == 2))
        });
        if shared {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no block paying both members within {within:?}: {} entries",
            lines.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What every run checks once the members have found blocks together.
async fn check_the_pool(lines: &[String], coordinator_node: &RegtestNode, a: &Member, b: &Member) {
    let report = audit(lines);
    assert!(report.passed(), "audit: {:#?}", report.failures);
    let all = entries(lines);
    let lists = rounds(&all);
    // Shares are credited to the member whose coinbase commits to it (the audit checked the
    // commitment); both members have shares.
    let count = |id: &MemberId| {
        all.iter()
            .filter(|e| matches!(e, Entry::Share { member, .. } if member == id))
            .count()
    };
    assert!(
        count(&a.id) > 0 && count(&b.id) > 0,
        "shares: a {} b {}",
        count(&a.id),
        count(&b.id)
    );
    // Every block on the coordinator's node's active chain is a block share in the ledger,
    // with the very coinbase the ledger recorded, paying its round's list.
    let rpc = coordinator_node.rpc().unwrap();
    let blocks: std::collections::HashMap<String, (&u64, &MemberId, &String)> = all
        .iter()
        .filter_map(|e| match e {
            Entry::Share {
                block: true,
                round,
                member,
                header,
                coinbase,
                ..
            } => Some((
                hearth::pool::ledger::share_hash(header)
                    .unwrap()
                    .to_string(),
                (round, member, coinbase),
            )),
            _ => None,
        })
        .collect();
    let height = common::height(&rpc).await;
    assert!(height > 0);
    for h in 1..=height {
        let hash = common::call(&rpc, "getblockhash", json!([h])).await;
        let hash = hash.as_str().unwrap();
        let raw = common::call(&rpc, "getblock", json!([hash, 0])).await;
        let block: bitcoin::Block =
            bitcoin::consensus::deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap();
        let Some((round, member, coinbase)) = blocks.get(hash) else {
            // Found after the ledger was read: it must still commit to a member.
            assert!(
                h + 3 > height,
                "block {h} ({hash}) is not in the pool's ledger"
            );
            continue;
        };
        let mut legacy = block.txdata[0].clone();
        for input in &mut legacy.input {
            input.witness.clear();
        }
        assert_eq!(
            hex::encode(bitcoin::consensus::serialize(&legacy)),
            **coinbase,
            "block {h}"
        );
        let finder = if **member == a.id {
            &a.script
        } else {
            &b.script
        };
        hearth::pool::payout::check_outputs(&block.txdata[0].output, &lists[*round], finder)
            .unwrap_or_else(|e| panic!("block {h}: {e}"));
    }
}

/// A ledger whose entry `index` is edited, or re-chained after the edit by a dishonest
/// coordinator that rewrote it.
fn tampered(lines: &[String], edit: impl Fn(&mut Entry) -> bool, rechain: bool) -> Vec<String> {
    let mut all = entries(lines);
    let index = all
        .iter_mut()
        .position(edit)
        .expect("an entry to tamper with");
    if rechain {
        let mut check = hearth::pool::ledger::ChainCheck::default();
        return all
            .iter()
            .map(|e| {
                hearth::pool::ledger::encode_line(&mut check, e)
                    .unwrap()
                    .trim_end()
                    .to_string()
            })
            .collect();
    }
    let mut out = lines.to_vec();
    let mut line: Value = serde_json::from_str(&out[index]).unwrap();
    line["body"] = serde_json::to_value(&all[index]).unwrap();
    out[index] = serde_json::to_string(&line).unwrap();
    out
}

async fn pool_of_three(through_tor: bool) {
    let dir = tempfile::tempdir().unwrap();
    // Listening (the test nodes do not by default) so that they can peer on loopback.
    let c_node = common::signet_node("51", &["-listen=1", "-discover=0"]).await;
    let a_node = common::signet_node("51", &["-listen=1", "-discover=0"]).await;
    let b_node = common::signet_node("51", &["-listen=1", "-discover=0"]).await;
    peer(&a_node, &c_node).await;
    peer(&b_node, &c_node).await;
    peer(&a_node, &b_node).await;
    let alice = member(dir.path(), "alice");
    let bob = member(dir.path(), "bob");
    let coordinator_payout = member(dir.path(), "coordinator");

    let coordinator = start(
        &c_node,
        &coordinator_payout.address,
        &dir.path().join("c-journal"),
        &coordinator_section(&[("alice", &alice), ("bob", &bob)], 30.0),
    )
    .await;
    let local = coordinator.pool_addr.unwrap().to_string();
    let tor = if through_tor {
        let port = coordinator.pool_addr.unwrap().port();
        Some(
            tokio::task::spawn_blocking(move || common::tor::tor_net(port))
                .await
                .unwrap(),
        )
    } else {
        None
    };
    let (reach, socks) = match &tor {
        Some(t) => (t.onion.clone(), Some(t.socks.clone())),
        None => (local.clone(), None),
    };
    let socks_line = socks
        .as_ref()
        .map(|s| format!("socks5 = \"{s}\""))
        .unwrap_or_default();
    let a = start(
        &a_node,
        &alice.address,
        &dir.path().join("a-journal"),
        &format!("{}{}", sim(2), member_section(&reach, &alice, &socks_line)),
    )
    .await;
    let b = start(
        &b_node,
        &bob.address,
        &dir.path().join("b-journal"),
        &format!(
            "{}{}\n[stratum]\nlisten = \"127.0.0.1:0\"\nstart_difficulty = {SHARE_DIFFICULTY}\nvardiff = false\nmax_coinbase_bytes = 384\n",
            sim(1),
            member_section(&reach, &bob, &socks_line)
        ),
    )
    .await;

    // A Stratum miner on bob's daemon (cgminer's session shape): its shares are bob's.
    let mut miner = common::stratum::Miner::connect(b.stratum_addr.unwrap()).await;
    miner
        .send(r#"{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.12.0"]}"#)
        .await;
    let r = miner.reply(json!(1)).await;
    miner.take_subscribe(&r);
    miner
        .send(r#"{"id": 2, "method": "mining.authorize", "params": ["tb1qbob.cgminer", "x"]}"#)
        .await;
    assert_eq!(miner.reply(json!(2)).await["result"], json!(true));
    // Mine until bob's daemon has joined the pool (its jobs pay the pool's list), then submit.
    let joined = Instant::now();
    while b
        .pool_member
        .as_ref()
        .unwrap()
        .lock()
        .unwrap()
        .round
        .is_none()
    {
        assert!(
            joined.elapsed() < Duration::from_secs(120),
            "bob never joined the pool"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut stratum_hashes = Vec::new();
    for n in 0..3u32 {
        miner.jobs.clear();
        miner.job_difficulty.clear();
        miner.jobs_at_least(1).await;
        let job = miner.jobs.last().unwrap().clone();
        let en2 = vec![n as u8; miner.extranonce2_size];
        let solved = miner.solve(&en2, 0, 0);
        miner
            .send(&format!(
                r#"{{"params": ["tb1qbob.cgminer", "{}", "{}", "{:08x}", "{:08x}"], "id": {}, "method": "mining.submit"}}"#,
                job.job_id,
                hex::encode(&en2),
                solved.ntime,
                solved.nonce,
                10 + n
            ))
            .await;
        let reply = miner.reply(json!(10 + n)).await;
        eprintln!("stratum share {n}: {reply}");
        if reply["result"] == json!(true) {
            let mut display = solved.hash;
            display.reverse();
            stratum_hashes.push(hex::encode(display));
        }
    }
    assert!(
        !stratum_hashes.is_empty(),
        "the Stratum miner's shares were all refused"
    );

    let lines = until_a_shared_block(&reach, socks.as_deref(), Duration::from_secs(240)).await;
    // The Stratum miner's shares reached the ledger, credited to bob.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines_now = ledger(&reach, socks.as_deref()).await;
    for hash in &stratum_hashes {
        let credited = entries(&lines_now).into_iter().find_map(|e| match e {
            Entry::Share { member, header, .. }
                if hearth::pool::ledger::share_hash(&header)
                    .map(|h| h.to_string())
                    .as_deref()
                    == Some(hash.as_str()) =>
            {
                Some(member)
            }
            _ => None,
        });
        assert_eq!(credited, Some(bob.id), "stratum share {hash}");
    }
    for (name, daemon) in [("alice", &a), ("bob", &b)] {
        let s = daemon.pool_member.as_ref().unwrap().lock().unwrap().clone();
        eprintln!(
            "pool{}: {} ledger entries; {name}: {} shares accepted ({} blocks), refused {:?}, difficulty {}; share round trip p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} shares",
            if through_tor { " over Tor" } else { "" },
            lines.len(),
            s.accepted,
            s.blocks,
            s.rejected,
            s.difficulty,
            s.round_trip_percentile(50.0).unwrap_or(f64::NAN),
            s.round_trip_percentile(99.0).unwrap_or(f64::NAN),
            s.round_trip_percentile(100.0).unwrap_or(f64::NAN),
            s.round_trips_ms.len(),
        );
    }
    check_the_pool(&lines, &c_node, &alice, &bob).await;

    // The API and /metrics show the pool from both sides.
    let get = |addr: std::net::SocketAddr, path: &'static str| async move {
        reqwest::get(format!("http://{addr}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let seen: Value =
        serde_json::from_str(&get(coordinator.api_addr.unwrap(), "/api/pool").await).unwrap();
    let members = seen["coordinator"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{seen}");
    assert!(
        members
            .iter()
            .all(|m| m["connected"] == json!(1) && m["accepted"].as_u64().unwrap() > 0),
        "{seen}"
    );
    assert!(seen["member"].is_null());
    let seen: Value = serde_json::from_str(&get(a.api_addr.unwrap(), "/api/pool").await).unwrap();
    assert_eq!(seen["member"]["name"], json!("alice"), "{seen}");
    assert_eq!(seen["member"]["connected"], json!(true), "{seen}");
    let metrics = get(coordinator.api_addr.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("hearth_pool_shares_total{member=\"alice\",result=\"accepted\"}"),
        "{metrics}"
    );
    let metrics = get(b.api_addr.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("hearth_pool_member_connected 1"),
        "{metrics}"
    );

    // The CLI agrees (exit status 0), over the same route.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args(["pool", "audit", "--coordinator", &reach]);
    if let Some(s) = &socks {
        cmd.args(["--socks5", s]);
    }
    let saved = dir.path().join("ledger-copy.jsonl");
    cmd.arg("--save").arg(&saved);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("audit passed"), "{text}");

    // Tampering is caught: an edited share (its chain hash no longer matches) ...
    let copy: Vec<String> = std::fs::read_to_string(&saved)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let edited = tampered(
        &copy,
        |e| match e {
            Entry::Share { member, .. } if *member == bob.id => {
                *member = alice.id;
                true
            }
            _ => false,
        },
        false,
    );
    let report = audit(&edited);
    assert!(
        !report.passed() && report.chain_broken_at.is_some(),
        "{report:#?}"
    );
    // ... and a coordinator that rewrites a round's list and re-chains the whole ledger is
    // caught by the recomputation and by the coinbases that paid the real list.
    let rewritten = tampered(
        &copy,
        |e| match e {
            Entry::Round { payees, .. } if payees.len() == 2 => {
                let w = payees[0].weight;
                payees[0].weight = payees[1].weight;
                payees[1].weight = w;
                payees[0].weight != w
            }
            _ => false,
        },
        true,
    );
    let report = audit(&rewritten);
    assert!(report.chain_broken_at.is_none());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.contains("announced payout list")),
        "{report:#?}"
    );
    std::fs::write(&saved, rewritten.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["pool", "audit", "--ledger"])
        .arg(&saved)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    drop(miner);
    a.shutdown().await;
    b.shutdown().await;
    coordinator.shutdown().await;
    drop(tor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_three_signet_nodes_pays_as_its_ledger_says() {
    pool_of_three(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reaches_the_coordinator_by_its_onion_address() {
    pool_of_three(true).await;
}

/// A share sent, and what came of it.
struct Sent {
    reply: Value,
    job: hearth::work::Job,
    nonce: u32,
    round: u64,
    /// Times the round had moved on before the share reached the coordinator (each is counted
    /// there as a `stale_round` refusal).
    stale_rounds: u64,
}

/// A share on the round `m` knows of now: its coinbase pays what `outputs` makes of the
/// round's list and commits to `member`; its nonce meets the share target when `work`. Sent
/// again on the newer round when the round moved on meanwhile: here every block (one every few
/// seconds) starts a round, and the test's grace is 2 s.
async fn share_on_the_current_round(
    m: &mut RawMember,
    node: &RegtestNode,
    outputs: impl Fn(&[Payee], bitcoin::Amount) -> Vec<bitcoin::TxOut>,
    member: &MemberId,
    work: bool,
) -> Sent {
    let mut stale_rounds = 0;
    loop {
        let (round, payees) = (m.round, m.payees.clone());
        let job = job_paying(node, |value| outputs(&payees, value), member).await;
        let nonce = if work { meets_share_target(&job) } else { 0 };
        let reply = m.share(&job, nonce, round).await;
        if reply["error"]["kind"] == json!("stale_round") && stale_rounds < 10 {
            stale_rounds += 1;
            continue;
        }
        return Sent {
            reply,
            job,
            nonce,
            round,
            stale_rounds,
        };
    }
}

/// A nonce for `job` whose header is a share at [`SHARE_DIFFICULTY`], not a block.
fn meets_share_target(job: &hearth::work::Job) -> u32 {
    common::pool::share_nonces(job, SHARE_DIFFICULTY, 0, 1)[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shares_are_refused_and_the_pool_survives_its_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let c_node = common::signet_node("51", &["-listen=1", "-discover=0"]).await;
    let a_node = common::signet_node("51", &["-listen=1", "-discover=0"]).await;
    peer(&a_node, &c_node).await;
    let alice = member(dir.path(), "alice");
    let mallory = member(dir.path(), "mallory");
    let mallory_key = MemberKey::load_or_create(&mallory.key_file).unwrap();
    let port = common::free_port();
    let section = coordinator_section(&[("alice", &alice), ("mallory", &mallory)], 2.0)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let c_journal = dir.path().join("c-journal");
    // The coordinator is a `hearth mine` process, so that it can be killed outright.
    let c_config = dir.path().join("coordinator.toml");
    std::fs::write(
        &c_config,
        common::config_text(&c_node, &mallory.address.to_string(), &c_journal, &section),
    )
    .unwrap();
    let reach = format!("127.0.0.1:{port}");
    let mut coordinator = coordinator_process(&c_config, &reach, &dir.path().join("c.log")).await;
    let a = start(
        &a_node,
        &alice.address,
        &dir.path().join("a-journal"),
        &format!("{}{}", sim(2), member_section(&reach, &alice, "")),
    )
    .await;
    let alice_status = a.pool_member.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while alice_status.lock().unwrap().accepted < 3 {
        assert!(Instant::now() < deadline, "alice's shares are not accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Mallory, a listed member, sends every kind of bad share; each is refused and counted.
    let mut m = RawMember::login(&reach, &mallory_key, &mallory.script).await;
    let fair = |payees: &[Payee], value| {
        hearth::pool::payout::payout_outputs(payees, &mallory.script, value)
    };
    let greedy = |_: &[Payee], value| {
        vec![bitcoin::TxOut {
            value,
            script_pubkey: mallory.script.clone(),
        }]
    };
    let mut refused = std::collections::BTreeMap::new();
    // `kind` of refusal expected (or none), after `stale_rounds` refusals as stale_round.
    let mut expect = |reply: &Value, stale_rounds: u64, kind: Option<&str>| {
        assert_eq!(reply["error"]["kind"], json!(kind), "{reply}");
        if let Some(kind) = kind {
            *refused.entry(kind.to_string()).or_insert(0u64) += 1;
        }
        if stale_rounds > 0 {
            *refused.entry("stale_round".to_string()).or_insert(0u64) += stale_rounds;
        }
    };
    if !m.payees.is_empty() {
        let sent = share_on_the_current_round(&mut m, &c_node, greedy, &mallory.id, false).await;
        expect(&sent.reply, sent.stale_rounds, Some("wrong_payouts"));
    }
    let sent = share_on_the_current_round(&mut m, &c_node, fair, &alice.id, false).await;
    expect(&sent.reply, sent.stale_rounds, Some("wrong_member"));
    let accepted = share_on_the_current_round(&mut m, &c_node, fair, &mallory.id, true).await;
    expect(&accepted.reply, accepted.stale_rounds, None);
    let (job, nonce) = (&accepted.job, accepted.nonce);
    let again = m.share(job, nonce, accepted.round).await;
    expect(&again, 0, Some("duplicate"));
    // A block on another tip: the old one is stale once the grace period (2 s) is over.
    let rpc = c_node.rpc().unwrap();
    common::call(
        &rpc,
        "generatetoaddress",
        json!([1, mallory.address.to_string(), 100_000_000]),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let round_now = m.round;
    let stale = m.share(job, nonce.wrapping_add(1), round_now).await;
    expect(&stale, 0, Some("stale_tip"));
    // The same key logs in from a second rig with another payout script: the first session's
    // shares no longer count (an empty list would pay the finder, whose script the ledger
    // now says is the second one).
    let other_script = member(dir.path(), "mallory-rig-2").script;
    let _second = RawMember::login(&reach, &mallory_key, &other_script).await;
    let sent = share_on_the_current_round(&mut m, &c_node, fair, &mallory.id, true).await;
    expect(&sent.reply, sent.stale_rounds, Some("wrong_payouts"));
    let counted = status(&reach).await;
    let mallory_counts = &counted["members"][mallory.id.to_string()];
    assert_eq!(mallory_counts["accepted"], json!(1), "{counted}");
    assert_eq!(
        mallory_counts["rejected"],
        serde_json::to_value(&refused).unwrap(),
        "{counted}"
    );
    drop(m);
    // Logins that must fail: a key not in the member list, a signature over another challenge.
    let stranger = MemberKey::generate().unwrap();
    let refused = RawMember::try_login(&reach, None, &stranger, &mallory.script, false)
        .await
        .err()
        .expect("a stranger logged in");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in this pool's member list"),
        "{refused}"
    );
    let refused = RawMember::try_login(&reach, None, &mallory_key, &mallory.script, true)
        .await
        .err()
        .expect("a forged login was taken");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{refused}"
    );

    // The coordinator is killed (SIGKILL): every share alice had acknowledged is in its ledger.
    let before = std::fs::read_to_string(c_journal.join("pool-ledger.jsonl")).unwrap();
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let acknowledged = alice_status.lock().unwrap().accepted;
    let ledger_file = std::fs::read_to_string(c_journal.join("pool-ledger.jsonl")).unwrap();
    let lines: Vec<String> = ledger_file.lines().map(str::to_string).collect();
    let alice_shares = entries(&lines)
        .iter()
        .filter(|e| matches!(e, Entry::Share { member, .. } if *member == alice.id))
        .count() as u64;
    assert!(
        alice_shares >= acknowledged,
        "ledger {alice_shares} < acknowledged {acknowledged}"
    );
    assert!(ledger_file.starts_with(&before));

    // Alice mines solo, to her own address, after solo_after_secs (4 s) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let solo = alice_status.lock().unwrap().solo;
        let work = a.work.borrow().clone();
        let pays_alice = work.as_ref().is_some_and(|w| {
            w.pool.is_none()
                && w.coinbase.transaction(&[0; 8]).unwrap().output[0].script_pubkey == alice.script
        });
        if solo && pays_alice {
            break;
        }
        assert!(Instant::now() < deadline, "alice did not go solo");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ... and rejoins when the coordinator is back, whose ledger lost nothing.
    let mut coordinator = coordinator_process(&c_config, &reach, &dir.path().join("c2.log")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = alice_status.lock().unwrap().clone();
        let work = a.work.borrow().clone();
        if s.logins >= 2 && !s.solo && s.connected && work.is_some_and(|w| w.pool.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "alice did not rejoin: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let accepted_before = alice_status.lock().unwrap().accepted;
    let deadline = Instant::now() + Duration::from_secs(60);
    while alice_status.lock().unwrap().accepted < accepted_before + 2 {
        assert!(
            Instant::now() < deadline,
            "no shares accepted after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = ledger(&reach, None).await;
    assert!(after.len() > lines.len());
    assert_eq!(
        &after[..lines.len()],
        &lines[..],
        "entries before the restart changed"
    );
    let report = audit(&after);
    assert!(report.passed(), "{:#?}", report.failures);
    a.shutdown().await;
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
}

/// `hearth mine` with `config`, once its pool port answers.
async fn coordinator_process(config: &Path, reach: &str, log: &Path) -> std::process::Child {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["mine", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(reach).await.is_err() {
        if let Some(exit) = child.try_wait().unwrap() {
            panic!(
                "the coordinator exited ({exit}): {}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator does not listen on {reach}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}
