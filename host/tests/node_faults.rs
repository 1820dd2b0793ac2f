//! A slow, broken, lying or absent node never crashes the daemon and always gets a clear error.
//! The node is a real bitcoind; faults are injected by an HTTP proxy in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use hearth::daemon::Daemon;
use hearth::events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: u8 = 0;
const TRUNCATED_GBT: u8 = 1;
const BAD_FIELD_GBT: u8 = 2;
const STALL: u8 = 3;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_stalled_replies_never_stop_the_daemon() {
    let node = common::node(&[]).await;
    let mode = Arc::new(AtomicU8::new(PASS));
    let url = proxy(format!("127.0.0.1:{}", node.rpc_port), mode.clone()).await;
    let journal = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config_via(&node, &url, journal.path()))
        .await
        .unwrap();
    let mut events = daemon.events.subscribe();
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
