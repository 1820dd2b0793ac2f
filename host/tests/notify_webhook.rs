//! Webhook notifications against a real HTTP receiver in the test: the body of each kind, what
//! is never announced, retries when the receiver fails or is down, a lagging event receiver,
//! shutdown with a dead receiver, and (with a real regtest bitcoind) exactly one "block found"
//! per block the node accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use bitcoin::BlockHash;
use bitcoin::hashes::Hash;
use hearth::events::Event;
use hearth::notify::{Notifier, Origin, Policy};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// An HTTP receiver that records every body and answers the planned statuses (then 200).
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn serve(self, listener: TcpListener) {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        self.serve(listener).await;
        url
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// The bodies answered 2xx, once `n` requests have come (or panic after `timeout`).
    async fn wait(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.bodies.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {:?} within {timeout:?}",
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.bodies()
    }
}

async fn record(State(r): State<Receiver>, body: String) -> StatusCode {
    let status = r.statuses.lock().unwrap().pop_front().unwrap_or(200);
    let mut json: Value = serde_json::from_str(&body).unwrap();
    json["answered"] = status.into();
    r.bodies.lock().unwrap().push(json);
    StatusCode::from_u16(status).unwrap()
}

fn origin() -> Origin {
    Origin {
        network: "regtest".into(),
        instance: "test-box".into(),
    }
}

/// Milliseconds instead of seconds, so that retries show within a test.
fn quick() -> Policy {
    Policy {
        timeout: Duration::from_secs(2),
        backoff_start: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        give_up_after: Duration::from_secs(30),
        block_give_up_after: Duration::from_secs(30),
        queue: 16,
        flush: Duration::from_secs(1),
        lost_grace: Duration::ZERO,
    }
}

fn start(
    url: &str,
    events: &broadcast::Sender<Event>,
    policy: Policy,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let notifier =
        Notifier::with_policy(url, origin(), events.subscribe(), cancel.clone(), policy).unwrap();
    (cancel, tokio::spawn(notifier.run()))
}

fn hash(n: u8) -> BlockHash {
    BlockHash::from_byte_array([n; 32])
}

fn accepted(height: u32) -> Event {
    Event::BlockAccepted {
        height,
        hash: hash(height as u8),
        device: "board0".into(),
    }
}

#[tokio::test]
async fn each_kind_has_its_body_and_only_an_accepted_block_is_a_found_block() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let (events, _) = broadcast::channel(64);
    let (cancel, task) = start(&url, &events, quick());
    for event in [
        Event::BlockCandidate {
            height: 9,
            hash: hash(9),
            device: "board0".into(),
        },
        Event::BlockRejected {
            height: 9,
            hash: hash(9),
            reason: "high-hash".into(),
        },
        Event::BlockStale {
            height: 9,
            hash: hash(9),
        },
        Event::BoardFault {
            device: "board0".into(),
            fault: "OverTemperature".into(),
        },
        Event::NodeDown {
            error: "connection refused".into(),
        },
        Event::NodeUp,
        Event::DeviceLost {
            device: "stratum:bitaxe".into(),
            reason: "nothing received for 300s".into(),
        },
        accepted(10),
    ] {
        events.send(event).unwrap();
    }
    let bodies = receiver.wait(5, Duration::from_secs(10)).await;
    // Nothing for the candidate, the rejection or the stale block: give it time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.bodies().len(), 5, "{:#?}", receiver.bodies());
    let kinds: Vec<&str> = bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "board_fault",
            "node_down",
            "node_up",
            "device_lost",
            "block_found"
        ]
    );
    for b in &bodies {
        assert_eq!(b["network"], "regtest");
        assert_eq!(b["instance"], "test-box");
        assert!(b["unix_time"].as_u64().unwrap() > 1_700_000_000, "{b}");
        let time = b["time"].as_str().unwrap();
        assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .starts_with("hearth on test-box"),
            "{b}"
        );
    }
    assert_eq!(bodies[0]["device"], "board0");
    assert_eq!(bodies[0]["reason"], "OverTemperature");
    assert_eq!(bodies[1]["reason"], "connection refused");
    assert!(bodies[2].get("reason").is_none());
    assert_eq!(bodies[3]["device"], "stratum:bitaxe");
    assert_eq!(bodies[4]["height"], 10);
    assert_eq!(bodies[4]["hash"], hash(10).to_string());
    assert_eq!(bodies[4]["device"], "board0");
    cancel.cancel();
    task.await.unwrap();
}

fn lost(device: &str) -> Event {
    Event::DeviceLost {
        device: device.into(),
        reason: "disconnected".into(),
    }
}

fn up(device: &str) -> Event {
    Event::DeviceUp {
        device: device.into(),
        detail: "back".into(),
    }
}

#[tokio::test]
async fn a_device_back_within_the_grace_is_not_announced_as_lost() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let (events, _) = broadcast::channel(64);
    let grace = Duration::from_millis(400);
    let policy = Policy {
        lost_grace: grace,
        ..quick()
    };
    let (cancel, task) = start(&url, &events, policy);
    let sent = std::time::Instant::now();
    // A Wi-Fi miner that reconnects at once, and a board that stays gone.
    events.send(lost("stratum:nerd")).unwrap();
    events.send(lost("board0")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    events.send(up("stratum:nerd")).unwrap();
    let bodies = receiver.wait(1, Duration::from_secs(10)).await;
    assert!(
        sent.elapsed() >= grace,
        "announced before the grace: {:?}",
        sent.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies_now = receiver.bodies();
    assert_eq!(bodies_now.len(), 1, "{bodies_now:#?}");
    assert_eq!(bodies[0]["event"], "device_lost");
    assert_eq!(bodies[0]["device"], "board0");
    // Lost at shutdown and not back: announced in the final flush, not dropped.
    events.send(lost("stratum:gone")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    task.await.unwrap();
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[1]["device"], "stratum:gone");
}

#[tokio::test]
async fn config_check_sends_a_test_notification_and_says_what_the_receiver_answered() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let said = hearth::preflight::test_webhook(&url, bitcoin::Network::Regtest)
        .await
        .unwrap();
    assert!(said.contains("took a test notification"), "{said}");
    let bodies = receiver.wait(1, Duration::from_secs(5)).await;
    assert_eq!(bodies[0]["event"], "test");
    assert_eq!(bodies[0]["network"], "regtest");
    // A receiver that refuses it: the error names the key, what it answered and what to do.
    receiver.statuses.lock().unwrap().push_back(404);
    let err =
        hearth::preflight::test_webhook(&format!("{url}?token=secret"), bitcoin::Network::Regtest)
            .await
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("notify.webhook_url") && err.contains("404"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "the token in the URL is not shown: {err}"
    );
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_until_the_receiver_takes_it() {
    let receiver = Receiver::default();
    receiver.statuses.lock().unwrap().extend([500, 503, 500]);
    let url = receiver.clone().start().await;
    let (events, _) = broadcast::channel(64);
    let (cancel, task) = start(&url, &events, quick());
    let sent = std::time::Instant::now();
    events.send(accepted(3)).unwrap();
    events
        .send(Event::NodeDown {
            error: "timeout".into(),
        })
        .unwrap();
    let bodies = receiver.wait(5, Duration::from_secs(10)).await;
    let answered: Vec<u64> = bodies
        .iter()
        .map(|b| b["answered"].as_u64().unwrap())
        .collect();
    assert_eq!(answered, [500, 503, 500, 200, 200]);
    // The block first, the same body each time; then the next one, in order.
    assert!(bodies[..4].iter().all(|b| b["hash"] == hash(3).to_string()));
    assert_eq!(bodies[0]["time"], bodies[3]["time"]);
    assert_eq!(bodies[4]["event"], "node_down");
    // 50 + 100 + 200 ms of backoff.
    assert!(
        sent.elapsed() >= Duration::from_millis(350),
        "{:?}",
        sent.elapsed()
    );
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_them_in_order_when_it_comes_back() {
    // A port nothing listens on, for now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hook");
    let (events, _) = broadcast::channel(64);
    let (cancel, task) = start(&url, &events, quick());
    events
        .send(Event::NodeDown {
            error: "gone".into(),
        })
        .unwrap();
    events.send(accepted(4)).unwrap();
    events.send(Event::NodeUp).unwrap();
    // Several refused attempts go by.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let receiver = Receiver::default();
    receiver
        .clone()
        .serve(TcpListener::bind(addr).await.unwrap())
        .await;
    let bodies = receiver.wait(3, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["node_down", "block_found", "node_up"]);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_lagging_event_receiver_keeps_going() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    // A tiny broadcast, overrun before the notifier reads anything.
    let (events, _) = broadcast::channel(4);
    let cancel = CancellationToken::new();
    let notifier =
        Notifier::with_policy(&url, origin(), events.subscribe(), cancel.clone(), quick()).unwrap();
    for i in 0..20 {
        events
            .send(Event::DeviceLost {
                device: format!("m{i}"),
                reason: "x".into(),
            })
            .unwrap();
    }
    events.send(accepted(5)).unwrap();
    let task = tokio::spawn(notifier.run());
    let bodies = receiver.wait(4, Duration::from_secs(10)).await;
    let devices: Vec<&str> = bodies
        .iter()
        .map(|b| b["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["m17", "m18", "m19", "board0"]);
    // Still listening after the lag.
    events.send(accepted(6)).unwrap();
    let bodies = receiver.wait(5, Duration::from_secs(10)).await;
    assert_eq!(bodies[4]["height"], 6);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_with_a_receiver_that_never_answers_ends_within_the_flush_budget() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (events, _) = broadcast::channel(64);
    let policy = Policy {
        timeout: Duration::from_secs(30),
        ..quick()
    };
    let (cancel, task) = start(&url, &events, policy);
    events.send(accepted(7)).unwrap();
    events.send(Event::NodeUp).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stop = std::time::Instant::now();
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the notifier ends after its flush budget")
        .unwrap();
    let took = stop.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_404_is_given_up_at_once_and_the_next_one_goes_out() {
    let receiver = Receiver::default();
    receiver.statuses.lock().unwrap().push_back(404);
    let url = receiver.clone().start().await;
    let (events, _) = broadcast::channel(64);
    let (cancel, task) = start(&url, &events, quick());
    events.send(Event::NodeUp).unwrap();
    events.send(accepted(8)).unwrap();
    let bodies = receiver.wait(2, Duration::from_secs(10)).await;
    assert_eq!(bodies[0]["answered"], 404);
    assert_eq!(bodies[1]["event"], "block_found");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.bodies().len(), 2, "no retry of the 404");
    cancel.cancel();
    task.await.unwrap();
}

/// The daemon on a real regtest node: exactly one block-found POST per block the node accepted,
/// none for anything else, all delivered by the end of the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_posts_one_block_found_per_accepted_block() {
    let receiver = Receiver::default();
    let url = receiver.clone().start().await;
    let node = common::node(&[]).await;
    let journal = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let mut config = common::config_for(
        &node,
        &address.to_string(),
        journal.path(),
        common::SIM_4_BM1370,
    );
    config.webhook_url = Some(url);
    let daemon = hearth::daemon::Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 5, Duration::from_secs(120)).await;
    daemon.shutdown().await;
    // The node is the judge: every block on its chain is ours (a fresh regtest chain).
    let rpc = node.rpc().unwrap();
    let height = common::height(&rpc).await;
    let mut chain = Vec::new();
    for h in 1..=height {
        let hash = common::call(&rpc, "getblockhash", serde_json::json!([h])).await;
        chain.push(hash.as_str().unwrap().to_string());
    }
    let bodies = receiver.bodies();
    let found: Vec<String> = bodies
        .iter()
        .filter(|b| b["event"] == "block_found")
        .map(|b| b["hash"].as_str().unwrap().to_string())
        .collect();
    assert!(chain.len() >= 5, "{chain:?}");
    assert_eq!(found, chain, "one POST per block on the chain, in order");
    for (b, h) in bodies.iter().zip(1..) {
        assert_eq!(b["height"], h, "{b}");
        assert_eq!(b["answered"], 200);
    }
    assert!(
        bodies.iter().all(|b| b["event"] == "block_found"),
        "nothing else happened: {bodies:#?}"
    );
    // Candidates were announced on the broadcast, and never POSTed.
    let mut candidates = 0;
    while let Ok(e) = events.try_recv() {
        candidates += usize::from(matches!(e, Event::BlockCandidate { .. }));
    }
    eprintln!(
        "{} blocks on the chain, {} POSTs, {candidates} candidate events after the first 5",
        chain.len(),
        bodies.len()
    );
}
