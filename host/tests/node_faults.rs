//! A slow, broken, lying or absent node never crashes the daemon and always gets a clear error.
//! The node is a real bitcoind; faults are injected by an HTTP proxy in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use hearth::daemon::Daemon;
use hearth::events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: u8 = 0;
const TRUNCATED_GBT: u8 = 1;
const BAD_FIELD_GBT: u8 = 2;
const STALL: u8 = 3;
/// `submitblock` answered as a restarting node does: -28 "Loading block index…".
const WARMUP_SUBMIT: u8 = 4;
/// `getblockhash` answered as an overloaded node does: HTTP 503, plain text.
const BUSY_CONFIRM: u8 = 5;

/// How many `submitblock` calls the proxy answered with -28.
static WARMUP_ANSWERS: AtomicUsize = AtomicUsize::new(0);

fn canned(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Read one HTTP/1.1 message (headers + Content-Length body).
async fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let headers = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    buf.extend_from_slice(&body);
    Some(buf)
}

fn replace_body(response: &[u8], body: &[u8]) -> Vec<u8> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let headers = String::from_utf8_lossy(&response[..split]);
    let mut out: Vec<u8> = headers
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length") && !l.is_empty())
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A proxy to `upstream` whose behaviour follows `mode`.
async fn proxy(upstream: String, mode: Arc<AtomicU8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut down, _)) = listener.accept().await else {
                return;
            };
            let (upstream, mode) = (upstream.clone(), mode.clone());
            tokio::spawn(async move {
                let Ok(mut up) = TcpStream::connect(&upstream).await else {
                    return;
                };
                while let Some(request) = read_message(&mut down).await {
                    if mode.load(Ordering::SeqCst) == STALL {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    let text = String::from_utf8_lossy(&request).to_string();
                    let canned_reply = match mode.load(Ordering::SeqCst) {
                        // Bitcoin Core answers an RPC error with HTTP 500 and a JSON body.
                        WARMUP_SUBMIT if text.contains("\"submitblock\"") => {
                            WARMUP_ANSWERS.fetch_add(1, Ordering::SeqCst);
                            Some(canned(
                                "500 Internal Server Error",
                                r#"{"result":null,"error":{"code":-28,"message":"Loading block index…"},"id":1}"#,
                            ))
                        }
                        BUSY_CONFIRM if text.contains("\"getblockhash\"") => Some(canned(
                            "503 Service Unavailable",
                            "Work queue depth exceeded",
                        )),
                        _ => None,
                    };
                    if let Some(reply) = canned_reply {
                        if down.write_all(&reply).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if up.write_all(&request).await.is_err() {
                        return;
                    }
                    let Some(response) = read_message(&mut up).await else {
                        return;
                    };
                    let is_gbt = String::from_utf8_lossy(&request).contains("getblocktemplate");
                    let response = match mode.load(Ordering::SeqCst) {
                        TRUNCATED_GBT if is_gbt => {
                            let split =
                                response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                            let body = &response[split..];
                            replace_body(&response, &body[..body.len() / 2])
                        }
                        BAD_FIELD_GBT if is_gbt => {
                            let text = String::from_utf8_lossy(&response).to_string();
                            let split = text.find("\r\n\r\n").unwrap() + 4;
                            let body = text[split..]
                                .replace("\"bits\":\"207fffff\"", "\"bits\":\"zz7fffff\"");
                            replace_body(&response, body.as_bytes())
                        }
                        _ => response,
                    };
                    if down.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn config_via(
    node: &hearth::regtest::RegtestNode,
    url: &str,
    journal: &std::path::Path,
) -> hearth::config::Validated {
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let mut config = common::config_for(
        node,
        &address.to_string(),
        journal,
        &common::sim_device("board", 2, 20_000.0, 0),
    );
    config.rpc_url = url.to_string();
    config.node_loss_grace = Duration::from_secs(1);
    config
}

/// A daemon mining a real regtest node through the fault proxy; `mode` picks the fault.
struct Proxied {
    daemon: Daemon,
    events: tokio::sync::broadcast::Receiver<Event>,
    mode: Arc<AtomicU8>,
    _node: hearth::regtest::RegtestNode,
    _journal: tempfile::TempDir,
}

async fn daemon_behind_proxy() -> Proxied {
    let node = common::node(&[]).await;
    let mode = Arc::new(AtomicU8::new(PASS));
    let url = proxy(format!("127.0.0.1:{}", node.rpc_port), mode.clone()).await;
    let journal = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config_via(&node, &url, journal.path()))
        .await
        .unwrap();
    let events = daemon.events.subscribe();
    Proxied {
        daemon,
        events,
        mode,
        _node: node,
        _journal: journal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_stalled_replies_never_stop_the_daemon() {
    let Proxied {
        daemon,
        mut events,
        mode,
        _node,
        _journal,
    } = daemon_behind_proxy().await;
    common::accepted_blocks(&mut events, 2, Duration::from_secs(60)).await;

    for fault in [TRUNCATED_GBT, BAD_FIELD_GBT] {
        mode.store(fault, Ordering::SeqCst);
        // Templates are refused; the daemon keeps the last one and keeps running.
        tokio::time::sleep(Duration::from_secs(2)).await;
        mode.store(PASS, Ordering::SeqCst);
        common::accepted_blocks(&mut events, 2, Duration::from_secs(60)).await;
    }

    // A node that stops answering: calls time out, the daemon says the node is down, pauses
    // after the grace period, and resumes when answers come back.
    mode.store(STALL, Ordering::SeqCst);
    let (mut down, mut paused) = (false, false);
    common::wait_event(
        &mut events,
        Duration::from_secs(30),
        "node down and paused",
        |e| {
            down |= matches!(e, Event::NodeDown { .. });
            paused |= matches!(e, Event::Paused { .. });
            down && paused
        },
    )
    .await;
    mode.store(PASS, Ordering::SeqCst);
    common::wait_event(&mut events, Duration::from_secs(60), "node up", |e| {
        matches!(e, Event::NodeUp)
    })
    .await;
    common::accepted_blocks(&mut events, 2, Duration::from_secs(60)).await;
    assert_eq!(daemon.journal.entries(hearth::submit::Outcome::Rejected), 0);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_start_up_with_a_clear_error() {
    let node = common::node(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "__cookie__:not-the-password").unwrap();
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let mut config = common::config_for(
        &node,
        &address.to_string(),
        dir.path(),
        common::SIM_4_BM1370,
    );
    config.auth = hearth::node::Auth::Cookie(cookie);
    let err = Daemon::start(config).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(text.contains("cookie"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_fails_at_start_up_with_a_clear_error() {
    let node = common::node(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let mut config = common::config_for(
        &node,
        &address.to_string(),
        dir.path(),
        common::SIM_4_BM1370,
    );
    config.rpc_url = format!("http://127.0.0.1:{}", hearth::regtest::free_port().unwrap());
    config.startup_timeout = Duration::from_secs(2);
    let err = Daemon::start(config).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("node unreachable") && text.contains("Is bitcoind running"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_network_and_a_still_starting_node_are_handled() {
    // Start the daemon the moment bitcoind is launched: it waits out the warm-up (-28).
    let binary = hearth::regtest::bitcoind_from_scripts(&common::repo_root()).unwrap();
    let node = hearth::regtest::RegtestNode::start(&binary, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let config = common::config_for(
        &node,
        &address.to_string(),
        dir.path(),
        common::SIM_4_BM1370,
    );
    let daemon = Daemon::start(config).await.unwrap();
    daemon.shutdown().await;
    // The node is on regtest; a configuration for signet is refused with both names.
    let rpc = node.rpc().unwrap();
    let err =
        hearth::node::ready::wait_ready(&rpc, bitcoin::Network::Signet, Duration::from_secs(5))
            .await
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("on \"regtest\" but node.network says \"signet\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_is_refused_clearly_when_the_node_has_none() {
    // This bitcoind is built without ZMQ (docs/design.md); the start-up check must say so.
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let err = hearth::node::ready::check_zmq(&rpc, "tcp://127.0.0.1:28332")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("built without ZMQ"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_answered_with_warm_up_is_retried_until_the_node_takes_it() {
    // A node restarting answers -28 "Loading block index…" to submitblock. That is no verdict:
    // the block stays pending and is sent again until the node answers (it was filed as
    // rejected, never to be sent again).
    let Proxied {
        daemon,
        mut events,
        mode,
        _node,
        _journal,
    } = daemon_behind_proxy().await;
    common::accepted_blocks(&mut events, 1, Duration::from_secs(60)).await;

    mode.store(WARMUP_SUBMIT, Ordering::SeqCst);
    let mut warmed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while WARMUP_ANSWERS.load(Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no submitblock reached the proxy"
        );
        if let Ok(Ok(Event::BlockCandidate { hash, .. })) =
            tokio::time::timeout(Duration::from_millis(200), events.recv()).await
        {
            warmed.push(hash);
        }
    }
    assert!(
        !warmed.is_empty(),
        "the candidate answered with -28 was not seen"
    );
    mode.store(PASS, Ordering::SeqCst);
    // Every block that was answered -28 ends on the chain (accepted_blocks panics on a
    // rejection).
    let accepted =
        common::accepted_blocks(&mut events, warmed.len(), Duration::from_secs(60)).await;
    for hash in &warmed {
        assert!(
            accepted.iter().any(|(_, h)| h == hash),
            "{hash} not accepted"
        );
    }
    assert_eq!(daemon.journal.entries(hearth::submit::Outcome::Rejected), 0);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_whose_confirmation_keeps_failing_is_unknown_not_stale() {
    let node = common::node(&[]).await;
    let mode = Arc::new(AtomicU8::new(BUSY_CONFIRM));
    let url = proxy(format!("127.0.0.1:{}", node.rpc_port), mode.clone()).await;
    let via_proxy = hearth::node::RpcClient::new(
        url,
        hearth::node::Auth::Cookie(node.cookie_path()),
        Duration::from_secs(5),
    )
    .unwrap();
    let (block, height, hash) = common::solved_block(&node.rpc().unwrap()).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let (outcome, reason) = hearth::submit::submit_and_confirm(
        &via_proxy,
        &block,
        height,
        hash,
        Duration::from_secs(3),
        &cancel,
    )
    .await
    .unwrap();
    // The node has it on its active chain: "stale" would have been a lie.
    assert_eq!(outcome, hearth::submit::Outcome::Unknown, "{reason}");
    assert!(reason.contains("could not confirm"), "{reason}");
    let at_height = common::call(
        &node.rpc().unwrap(),
        "getblockhash",
        serde_json::json!([height]),
    )
    .await;
    assert_eq!(at_height.as_str(), Some(hash.to_string().as_str()));
    // Once the node answers again, the same block confirms as accepted.
    mode.store(PASS, Ordering::SeqCst);
    let (outcome, _) = hearth::submit::submit_and_confirm(
        &via_proxy,
        &block,
        height,
        hash,
        Duration::from_secs(30),
        &cancel,
    )
    .await
    .unwrap();
    assert_eq!(outcome, hearth::submit::Outcome::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_chain_really_stops_hashing_and_resumes() {
    // The node goes silent; after the grace period the daemon pauses. A chain driven by the
    // host (sim here, serial on hardware) must stop hashing, not go on with its last job.
    let Proxied {
        daemon,
        mut events,
        mode,
        _node,
        _journal,
    } = daemon_behind_proxy().await;
    common::accepted_blocks(&mut events, 1, Duration::from_secs(60)).await;
    let sim = daemon.sim(0).unwrap();
    let hashes = || sim.stats().hashes.iter().sum::<u64>();

    mode.store(STALL, Ordering::SeqCst);
    common::wait_event(&mut events, Duration::from_secs(30), "pause", |e| {
        matches!(e, Event::Paused { .. })
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !daemon.stats.snapshot()[0].paused {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the device never said it paused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Said paused: the chips hash nothing from here on.
    let at_pause = hashes();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hashes(), at_pause, "chips kept hashing while paused");

    // The node answers again: new work, the hash clock ramps up, blocks follow.
    mode.store(PASS, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hashes() == at_pause || daemon.stats.snapshot()[0].paused {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the chips never resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::accepted_blocks(&mut events, 1, Duration::from_secs(60)).await;
    daemon.shutdown().await;
}
