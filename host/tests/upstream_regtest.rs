//! Hearth as a miner of a pool: one `hearth` (B) takes work from another's Stratum server (A),
//! directly or through a SOCKS5 proxy, its devices' shares go up, and A's node accepts the
//! blocks, which pay A's address. When A dies, B mines on its own node; when A is back, B
//! returns to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use hearth::daemon::Daemon;
use hearth::events::Event;
use serde_json::json;

/// B: one CPU thread, pool A first, then its own node.
fn client_sections(pool_url: &str, extra: &str) -> String {
    format!(
        r#"
        [[device]]
        kind = "cpu"
        threads = 1
        share_bits = 20
        [[pool]]
        name = "a"
        url = "{pool_url}"
        user = "hearth-b"
        {extra}
        [work]
        order = ["a", "node"]
        failover_secs = 1
        switch_back_secs = 1
        "#
    )
}

async fn work_source(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    source: &str,
    within: Duration,
) {
    common::wait_event(
        events,
        within,
        &format!("mining on {source}"),
        |e| matches!(e, Event::WorkSource { source: s, .. } if s == source),
    )
    .await;
}

/// A block accepted from `device`, within a minute, and the address it pays.
async fn accepted_from(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    device: &str,
    rpc: &hearth::node::RpcClient,
) -> String {
    common::accepted_from(events, device, rpc, Duration::from_secs(60)).await
}

#[tokio::test]
async fn hearth_mines_through_another_hearth_fails_over_to_its_node_and_returns() {
    let h = common::TwoHearths::new("P2WPKH", "P2TR").await;
    let a = h.start_a().await;
    let mut events_a = a.events.subscribe();
    let b = h
        .start_b(&client_sections(
            &format!("stratum+tcp://127.0.0.1:{}", h.port),
            "",
        ))
        .await;
    let mut events_b = b.events.subscribe();

    // B mines on A's work: A's node takes the blocks, and they pay A.
    work_source(&mut events_b, "a", Duration::from_secs(30)).await;
    let paid = accepted_from(&mut events_a, "stratum:hearth-b", &h.rpc).await;
    assert_eq!(paid, h.address_a.to_string());

    // A dies: B goes to its own node at once, and its blocks pay B.
    a.shutdown().await;
    work_source(&mut events_b, "node", Duration::from_secs(30)).await;
    let paid = accepted_from(&mut events_b, "cpu0", &h.rpc).await;
    assert_eq!(paid, h.address_b.to_string());

    // A is back on the same port: B returns to it (reconnect backoff, then 1 s fit).
    let a = h.start_a().await;
    let mut events_a = a.events.subscribe();
    work_source(&mut events_b, "a", Duration::from_secs(60)).await;
    let paid = accepted_from(&mut events_a, "stratum:hearth-b", &h.rpc).await;
    assert_eq!(paid, h.address_a.to_string());
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_pool_is_reached_through_a_socks5_proxy_that_resolves_its_name() {
    let h = common::TwoHearths::new("P2WSH", "P2WPKH").await;
    let a = h.start_a().await;
    let mut events_a = a.events.subscribe();
    let proxy = common::socks::start().await;
    // A name only the proxy can resolve, as Tor resolves .onion names; the node's RPC goes
    // through the proxy too ([proxy] node = true).
    let url = format!("stratum+tcp://hearth-a.test:{}", h.port);
    let b = h
        .start_b(
            &(client_sections(&url, "")
                + &format!("[proxy]\nsocks5 = \"{}\"\nnode = true\n", proxy.addr)),
        )
        .await;
    let paid = accepted_from(&mut events_a, "stratum:hearth-b", &h.rpc).await;
    assert_eq!(paid, h.address_a.to_string());
    let requests = proxy.requests.lock().unwrap().clone();
    assert!(
        requests.contains(&format!("hearth-a.test:{}", h.port)),
        "{requests:?}"
    );
    let node_port = h.node.rpc_url().rsplit(':').next().unwrap().to_string();
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with(&format!(":{node_port}"))),
        "the node's RPC did not go through the proxy: {requests:?}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn miners_on_hearths_port_mine_the_pools_work_and_their_shares_go_up() {
    let h = common::TwoHearths::new("P2WPKH", "P2SH").await;
    let a = h.start_a().await;
    let mut events_a = a.events.subscribe();
    // B: no devices of its own, a Stratum port, and A as its only source.
    let b = h
        .start_b(&format!(
            r#"
            [stratum]
            listen = "127.0.0.1:0"
            start_difficulty = 0.0000001
            max_difficulty = 0.000001
            [[pool]]
            name = "a"
            url = "127.0.0.1:{port}"
            user = "hearth-b"
            [work]
            order = ["a"]
            "#,
            port = h.port
        ))
        .await;
    let mut events_b = b.events.subscribe();
    work_source(&mut events_b, "a", Duration::from_secs(30)).await;
    // A miner on B's port gets A's work: A's 4-byte extranonce2 slot leaves it 2 + 2 bytes.
    let mut m = common::stratum::Miner::connect(b.stratum_addr.unwrap()).await;
    m.send(r#"{"id":1,"method":"mining.subscribe","params":["cpuminer/2.5.1"]}"#)
        .await;
    let r = m.next_is_reply(json!(1)).await;
    m.take_subscribe(&r);
    assert_eq!((m.extranonce1.len(), m.extranonce2_size), (2, 2));
    m.send(r#"{"id":2,"method":"mining.authorize","params":["downstream","x"]}"#)
        .await;
    m.reply(json!(2)).await;
    m.jobs_at_least(1).await;
    let solved = m.solve(&[0x12, 0x34], 0, 0);
    let submit = json!({"id": 4, "method": "mining.submit", "params": [
        "downstream", solved.job_id, "1234",
        format!("{:08x}", solved.ntime), format!("{:08x}", solved.nonce)]});
    m.send(&submit.to_string()).await;
    assert_eq!(m.reply(json!(4)).await["result"], json!(true));
    // The share went up to A, where it is a block of A's, paying A.
    let paid = accepted_from(&mut events_a, "stratum:hearth-b", &h.rpc).await;
    assert_eq!(paid, h.address_a.to_string());
    b.shutdown().await;
    a.shutdown().await;
}

/// How a stand-in pool misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Stub {
    /// One job, then nothing (shares accepted).
    Silent,
    /// Every share refused.
    Rejecting,
}

/// A pool that handshakes like any other and then misbehaves; counts the shares it refused.
async fn stub_pool(
    behaviour: Stub,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = refused.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let notify = json!({"id": null, "method": "mining.notify", "params": [
                    "1", "11".repeat(32),
                    "02000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0d03a0860108",
                    "0000000001000000000000000016001400000000000000000000000000000000000000000000000000",
                    [], "20000000", "207fffff", format!("{now:08x}"), true]});
                while let Ok(Some(line)) = lines.next_line().await {
                    let request: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let id = request["id"].clone();
                    let reply = match request["method"].as_str().unwrap_or("") {
                        "mining.configure" => {
                            json!({"id": id, "result": {"version-rolling": true, "version-rolling.mask": "1fffe000"}, "error": null})
                        }
                        "mining.subscribe" => {
                            json!({"id": id, "result": [[["mining.notify", "1"]], "01020304", 4], "error": null})
                        }
                        "mining.authorize" => json!({"id": id, "result": true, "error": null}),
                        "mining.submit" if behaviour == Stub::Rejecting => {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            json!({"id": id, "result": null, "error": [23, "Low difficulty share", null]})
                        }
                        _ => json!({"id": id, "result": true, "error": null}),
                    };
                    let mut out = format!("{reply}\n");
                    if request["method"] == "mining.authorize" {
                        out += &format!(
                            "{}\n{notify}\n",
                            json!({"id": null, "method": "mining.set_difficulty", "params": [0.0000001]})
                        );
                    }
                    if write.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, refused)
}

async fn a_pool_that(behaviour: Stub, extra: &str) {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let (address, _) = common::address("P2WPKH");
    let journal = tempfile::tempdir().unwrap();
    let (pool, refused) = stub_pool(behaviour).await;
    let b = Daemon::start(common::config_for(
        &node,
        &address.to_string(),
        journal.path(),
        &format!(
            r#"
            [[device]]
            kind = "cpu"
            threads = 1
            share_bits = 16
            [[pool]]
            name = "bad"
            url = "{pool}"
            user = "hearth-b"
            {extra}
            [work]
            order = ["bad", "node"]
            failover_secs = 1
            switch_back_secs = 3600
            "#
        ),
    ))
    .await
    .unwrap();
    let mut events = b.events.subscribe();
    // It starts on the node (the pool is not up yet), moves to the pool, then leaves it.
    work_source(&mut events, "bad", Duration::from_secs(30)).await;
    work_source(&mut events, "node", Duration::from_secs(30)).await;
    let paid = accepted_from(&mut events, "cpu0", &rpc).await;
    assert_eq!(paid, address.to_string());
    if behaviour == Stub::Rejecting {
        assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    }
    b.shutdown().await;
}

#[tokio::test]
async fn a_silent_pool_is_left_for_the_node() {
    a_pool_that(Stub::Silent, "silent_secs = 2").await;
}

#[tokio::test]
async fn a_pool_that_rejects_every_share_is_left_for_the_node() {
    a_pool_that(Stub::Rejecting, "reject_limit = 3\nsilent_secs = 3600").await;
}
