//! Over a real Tor: a private Tor network on loopback (scripts/tor-net.sh, Debian's `tor`)
//! publishes one `hearth`'s Stratum port as an onion service, and another `hearth` mines
//! through it by its `.onion` address, through the network's SOCKS port. The blocks land on the
//! first one's node and pay its address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::tor::tor_net;

#[tokio::test]
async fn hearth_mines_through_another_hearth_by_its_onion_address() {
    let h = common::TwoHearths::new("P2WPKH", "P2TR").await;
    let a = h.start_a().await;
    let mut events_a = a.events.subscribe();
    let port = h.port;
    let tor = tokio::task::spawn_blocking(move || tor_net(port))
        .await
        .unwrap();
    assert!(tor.onion.contains(".onion:"), "{}", tor.onion);
    let b = h
        .start_b(&format!(
            r#"
            [[device]]
            kind = "cpu"
            threads = 1
            share_bits = 20
            [[pool]]
            name = "a-onion"
            url = "stratum+tcp://{onion}"
            user = "hearth-b"
            [proxy]
            socks5 = "{socks}"
            [work]
            order = ["a-onion"]
            "#,
            onion = tor.onion,
            socks = tor.socks,
        ))
        .await;
    let paid = common::accepted_from(
        &mut events_a,
        "stratum:hearth-b",
        &h.rpc,
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(paid, h.address_a.to_string());
    b.shutdown().await;
    a.shutdown().await;
    drop(tor);
}
