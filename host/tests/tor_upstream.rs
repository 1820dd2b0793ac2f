//! Over a real Tor: a private Tor network on loopback (scripts/tor-net.sh, Debian's `tor`)
//! publishes one `hearth`'s Stratum port as an onion service, and another `hearth` mines
//! through it by its `.onion` address, through the network's SOCKS port. The blocks land on the
//! first one's node and pay its address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The launcher, running until dropped (its stdin closes and it stops every tor).
struct TorNet {
    child: std::process::Child,
    onion: String,
    socks: String,
}

impl Drop for TorNet {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tor_net(target_port: u16) -> TorNet {
    let script = common::repo_root().join("scripts/tor-net.sh");
    let mut child = Command::new(&script)
        .args([
            "--target",
            &format!("127.0.0.1:{target_port}"),
            "--exit-on-stdin-eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut onion, mut socks) = (None, None);
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("onion=") {
            onion = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("socks=") {
            socks = Some(v.to_string());
        } else if line == "ready" {
            break;
        }
    }
    match (onion, socks) {
        (Some(onion), Some(socks)) => TorNet {
            child,
            onion,
            socks,
        },
        _ => {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            panic!(
                "the private Tor network did not come up:\n{err}\nThis test needs Debian's `tor` package; scripts/tor-net.sh installs it (apt-get install tor)."
            );
        }
    }
}

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
