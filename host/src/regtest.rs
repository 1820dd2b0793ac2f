//! A throwaway regtest bitcoind: temporary data dir, free loopback ports, cookie auth, clean stop.
//! Used by `hearth demo` and by the tests; the binary comes from `scripts/bitcoind.sh`, which
//! builds Bitcoin Core once per machine and caches it outside the work tree.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::node::{Auth, RpcClient};

/// Where bitcoind is: `HEARTH_BITCOIND`, else the cache `scripts/bitcoind.sh` fills.
pub fn find_bitcoind() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("HEARTH_BITCOIND") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("HEARTH_BITCOIND={} is not a file", path.display());
    }
    let cache = std::env::var_os("HEARTH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hearth")))
        .unwrap_or_else(|| PathBuf::from(".cache/hearth"));
    let path = cache.join("bitcoind-kernel-sys-0.4.1/bin/bitcoind");
    if path.is_file() {
        return Ok(path);
    }
    bail!(
        "bitcoind not found at {}: run scripts/bitcoind.sh once (it builds Bitcoin Core from crates.io \
         sources, about 13 minutes on 2 cores) or set HEARTH_BITCOIND",
        path.display()
    )
}

/// Get bitcoind the way CI does: use the cache, or run `scripts/bitcoind.sh` (from the repo root)
/// to build it. For tests.
pub fn bitcoind_from_scripts(repo_root: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(path) = find_bitcoind() {
        return Ok(path);
    }
    let script = repo_root.join("scripts/bitcoind.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed; run it by hand to see why", script.display());
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    if !path.is_file() {
        bail!(
            "{} printed {:?}, which is not a file",
            script.display(),
            path
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (bound and released; tiny race accepted for tests).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running test node: regtest, or a custom signet ([`RegtestNode::start_signet`]). Stopped
/// (and killed if need be) on drop.
#[derive(Debug)]
pub struct RegtestNode {
    child: Option<Child>,
    binary: PathBuf,
    /// Core's chain name (`regtest`, `signet`); also the data dir's subdirectory.
    chain: &'static str,
    /// Data directory (temporary unless given).
    pub datadir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// RPC port.
    pub rpc_port: u16,
    /// P2P port.
    pub p2p_port: u16,
    extra_args: Vec<String>,
    /// Not yet ready once: its ports may still be chosen again.
    fresh: bool,
}

/// Times a fresh node gets new ports when one it was given was taken before it could bind.
const BIND_RETRIES: u32 = 5;

impl RegtestNode {
    /// Start bitcoind on regtest in a fresh temporary directory.
    pub fn start(binary: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_chain(binary, "regtest", extra_args)
    }

    /// Start bitcoind on a fresh custom signet whose block challenge is `challenge` (hex, e.g.
    /// `51` for OP_TRUE, which Hearth can mine: its blocks need about 2^22 hashes).
    pub fn start_signet(
        binary: &Path,
        challenge: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![format!("-signetchallenge={challenge}")];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_chain(binary, "signet", &args)
    }

    fn start_chain(
        binary: &Path,
        chain: &'static str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("hearth-{chain}-"))
            .tempdir()?;
        let datadir = tmp.path().to_path_buf();
        let mut node = RegtestNode {
            child: None,
            binary: binary.to_path_buf(),
            chain,
            datadir,
            _tmp: Some(tmp),
            rpc_port: free_port()?,
            p2p_port: free_port()?,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            fresh: true,
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.binary)
            .arg(format!("-chain={}", self.chain))
            .arg(format!("-datadir={}", self.datadir.display()))
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg(format!("-port={}", self.p2p_port))
            .args([
                "-server=1",
                "-listen=0",
                "-dnsseed=0",
                "-fixedseeds=0",
                "-printtoconsole=0",
            ])
            .args(["-rpcthreads=16", "-rpcworkqueue=64", "-fallbackfee=0.0001"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// RPC URL.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// Core's chain name: `regtest` or `signet`.
    pub fn chain(&self) -> &'static str {
        self.chain
    }

    /// Cookie file the node writes (in the chain's subdirectory: `regtest/`, `signet/`).
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir.join(self.chain).join(".cookie")
    }

    /// An RPC client using the cookie.
    pub fn rpc(&self) -> anyhow::Result<RpcClient> {
        Ok(RpcClient::new(
            self.rpc_url(),
            Auth::Cookie(self.cookie_path()),
            Duration::from_secs(30),
        )?)
    }

    /// Wait until the node answers RPC (cookie written, warm-up over).
    ///
    /// A free port can be taken between choosing it and bitcoind binding it (by another node,
    /// or as the local end of an outgoing connection: both come from the same ephemeral
    /// range). A fresh node whose bind fails is started again on new ports.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut rpc = self.rpc()?;
        let deadline = Instant::now() + timeout;
        let mut rebinds = 0;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = stderr.read_to_string(&mut err);
                }
                if self.fresh && rebinds < BIND_RETRIES && err.contains("Unable to bind") {
                    rebinds += 1;
                    self.rpc_port = free_port()?;
                    self.p2p_port = free_port()?;
                    self.spawn()?;
                    rpc = self.rpc()?;
                    continue;
                }
                bail!("bitcoind exited during start-up ({status}): {}", err.trim());
            }
            match rpc
                .call::<serde_json::Value>("getblockchaininfo", json!([]))
                .await
            {
                Ok(_) => {
                    self.fresh = false;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("bitcoind not ready after {timeout:?}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Kill the process with SIGTERM, as `kill` or a service manager would, and wait for it to
    /// exit. bitcoind flushes its chain state on SIGTERM; SIGKILL can roll the tip back.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_within(&mut child, Duration::from_secs(30));
        }
    }

    /// Kill the process hard (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop cleanly via RPC, waiting for the process to exit (kill after 30 s).
    pub async fn stop(&mut self) {
        if let Ok(rpc) = self.rpc() {
            let _ = rpc.call::<serde_json::Value>("stop", json!([])).await;
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same data dir and ports (after [`RegtestNode::stop`] or
    /// [`RegtestNode::kill`]).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop().await;
        }
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60)).await
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RegtestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_within(&mut child, Duration::from_secs(10));
        }
    }
}

/// SIGTERM first so the process can stop cleanly (bitcoind flushes; `hearth demo` stops its own
/// bitcoind); SIGKILL if it has not exited within `grace`.
pub fn terminate_within(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The firmware image for the emulator: `HEARTH_FIRMWARE_IMAGE`, or the one `scripts/firmware.sh`
/// builds (run here if missing). For tests.
pub fn firmware_from_scripts(repo_root: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("HEARTH_FIRMWARE_IMAGE") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("HEARTH_FIRMWARE_IMAGE={} is not a file", path.display());
    }
    let built = repo_root.join("target/firmware/hearth-bm1370-r1.elf");
    if built.is_file() {
        return Ok(built);
    }
    let script = repo_root.join("scripts/firmware.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() || !built.is_file() {
        bail!("{} failed; run it by hand to see why", script.display());
    }
    Ok(built)
}
