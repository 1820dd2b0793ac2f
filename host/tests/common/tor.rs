//! A private Tor network on loopback for tests (scripts/tor-net.sh, Debian's `tor`): one onion
//! service in front of a local port, and a SOCKS port to reach it by its `.onion` name.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The launcher, running until dropped (its stdin closes and it stops every tor).
pub struct TorNet {
    child: std::process::Child,
    /// `<name>.onion:PORT`.
    pub onion: String,
    /// The SOCKS5 port, `127.0.0.1:PORT`.
    pub socks: String,
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

/// Start the network with an onion service in front of `127.0.0.1:target_port` (blocking:
/// call it from `spawn_blocking`).
pub fn tor_net(target_port: u16) -> TorNet {
    let script = super::repo_root().join("scripts/tor-net.sh");
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
