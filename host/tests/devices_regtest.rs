//! The other device drivers against a real bitcoind: a BM13xx chain on a serial port (here a PTY
//! wired by socat to `hearth sim-chain`, standing in for a USB-UART adapter), which survives
//! being unplugged and plugged back, and whose loss reaches the webhook once; and the CPU miner. Plus the ZMQ hashblock watcher against a
//! ZMQ publisher of our own (the cached bitcoind has no ZMQ).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{pty, sim_chain};
use std::time::Duration;

use hearth::daemon::Daemon;
use hearth::events::Event;

/// A webhook receiver that records every JSON body; its URL.
async fn webhook_receiver(bodies: Arc<Mutex<Vec<serde_json::Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| async move {
            bodies
                .lock()
                .unwrap()
                .push(serde_json::from_str(&body).unwrap());
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_on_a_serial_port_mines_and_survives_unplug_and_replug() {
    let node = common::node(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let tty = dir.path().join("ttyHEARTH");
    // The emulated chain behind the port reports hashes with 12 + 4 (ticket mask) zero bits; on
    // regtest every one of them is a block.
    let (_sim, addr) = sim_chain(&[
        "--model",
        "BM1366",
        "--chips",
        "2",
        "--floor-bits",
        "12",
        "--hashrate",
        "0",
    ]);
    let socat = pty(&tty, &addr);
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let hook = webhook_receiver(bodies.clone()).await;
    let devices = format!(
        "[notify]\nwebhook_url = \"{hook}\"\ndevice_lost_grace_secs = 0.5\n\
         [[device]]\nkind = \"serial\"\nname = \"usb0\"\npath = \"{}\"\nmodel = \"BM1366\"\nchips = 2\nticket_difficulty = 16\nbaud = 1000000\n",
        tty.display()
    );
    let config = common::config_for(&node, &address.to_string(), dir.path(), &devices);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    common::wait_event(&mut events, Duration::from_secs(60), "device up", |e| {
        matches!(e, Event::DeviceUp { .. })
    })
    .await;
    common::accepted_blocks(&mut events, 2, Duration::from_secs(120)).await;

    // Unplug: the port vanishes. The daemon reports it and keeps running.
    drop(socat);
    common::wait_event(
        &mut events,
        Duration::from_secs(30),
        "device lost",
        |e| matches!(e, Event::DeviceLost { device, .. } if device == "usb0"),
    )
    .await;
    // Retried while it is gone (1 s, 2 s, ...): each failure is an error, not another loss.
    let mut errors = 0;
    while errors < 2 {
        match common::wait_event(&mut events, Duration::from_secs(30), "retries", |e| {
            matches!(e, Event::DeviceError { .. } | Event::DeviceLost { .. })
        })
        .await
        {
            Event::DeviceLost { .. } => panic!("a second loss announced during one outage"),
            _ => errors += 1,
        }
    }
    // Plug back in (a fresh chain, as after a power cycle): the device comes back and mines.
    let (_sim2, addr2) = sim_chain(&[
        "--model",
        "BM1366",
        "--chips",
        "2",
        "--floor-bits",
        "12",
        "--hashrate",
        "0",
    ]);
    let _socat2 = pty(&tty, &addr2);
    common::wait_event(&mut events, Duration::from_secs(90), "device back", |e| {
        matches!(e, Event::DeviceUp { .. })
    })
    .await;
    common::accepted_blocks(&mut events, 2, Duration::from_secs(120)).await;
    let stats = daemon.stats.snapshot();
    assert_eq!(stats[0].hardware_errors, 0, "{:?}", stats[0]);
    daemon.shutdown().await;
    // The webhook heard of the loss once, naming the board, and of its blocks.
    let bodies = bodies.lock().unwrap().clone();
    let lost: Vec<_> = bodies
        .iter()
        .filter(|b| b["event"] == "device_lost")
        .collect();
    assert_eq!(lost.len(), 1, "{bodies:#?}");
    assert_eq!(lost[0]["device"], "usb0");
    assert!(
        bodies
            .iter()
            .filter(|b| b["event"] == "block_found")
            .count()
            >= 4,
        "{bodies:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cpu_miner_finds_accepted_blocks() {
    let node = common::node(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, address, _) = common::addresses().into_iter().next().unwrap();
    let devices = "[[device]]\nkind = \"cpu\"\nthreads = 1\nshare_bits = 8\n";
    let config = common::config_for(&node, &address.to_string(), dir.path(), devices);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 5, Duration::from_secs(60)).await;
    let stats = daemon.stats.snapshot();
    assert_eq!(stats[0].hardware_errors, 0);
    assert!(stats[0].blocks_accepted >= 5);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_hashblock_notifications_are_delivered() {
    use zeromq::{PubSocket, Socket, SocketSend, ZmqMessage};
    let port = hearth::regtest::free_port().unwrap();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut publisher = PubSocket::new();
    publisher.bind(&endpoint).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let cancel = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(hearth::node::zmq::watch_hashblock(
        endpoint.clone(),
        tx,
        cancel.clone(),
    ));
    // Subscriptions take a moment to propagate (ZMQ's slow-joiner); publish until one arrives.
    let mut got = 0;
    for _ in 0..100 {
        let mut message = ZmqMessage::from("hashblock");
        message.push_back(vec![0u8; 32].into());
        message.push_back(1u32.to_le_bytes().to_vec().into());
        publisher.send(message).await.unwrap();
        // Other topics are ignored.
        publisher.send(ZmqMessage::from("rawtx")).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(50), rx.recv())
            .await
            .is_ok()
        {
            got += 1;
            if got == 3 {
                break;
            }
        }
    }
    assert_eq!(got, 3, "hashblock notifications not delivered");
    cancel.cancel();
    watcher.await.unwrap();
}
