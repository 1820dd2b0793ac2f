//! `hearth config check` for the HTTP API and the webhook: what can be known before the daemon
//! starts (the port can be bound, the token file is private, the webhook answers), said in
//! words that tell the operator what to do.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::bail;

use crate::notify::{Delivery, Origin};

/// What a check found: lines to print, and warnings to print loudly.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    /// All is well.
    pub ok: Vec<String>,
    /// Works, but the operator should know.
    pub warnings: Vec<String>,
}

/// `[api] listen`: can it be bound, and who can reach it.
pub fn check_api_listen(addr: SocketAddr) -> anyhow::Result<Findings> {
    let mut found = Findings::default();
    if !addr.ip().is_loopback() {
        found.warnings.push(format!(
            "api.listen = {addr} is not a loopback address: anyone who can reach this machine on port {} sees the miner's state (control needs the token). Use 127.0.0.1:{} unless the LAN must see it, and firewall it.",
            addr.port(),
            addr.port()
        ));
    }
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            found.ok.push(format!("api      {addr} can be bound"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let holder = port_holder(addr.port());
            match holder {
                // `hearth config check` next to the running daemon: expected.
                Some((pid, name)) if name == "hearth" => found.warnings.push(format!(
                    "api.listen = {addr} is held by a running hearth (pid {pid}): fine if that is this daemon; a second one could not start"
                )),
                Some((pid, name)) => bail!(
                    "api.listen = {addr} is in use by {name} (pid {pid}): stop it, or give [api] listen another port (or \"off\")"
                ),
                None => bail!(
                    "api.listen = {addr} is in use by another program (run as root to see which: `ss -ltnp 'sport = :{}'`): stop it, or give [api] listen another port (or \"off\")",
                    addr.port()
                ),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => bail!(
            "api.listen = {addr}: no network interface of this machine has the address {}; use 127.0.0.1, 0.0.0.0 or one of this machine's addresses (`ip -br addr`)",
            addr.ip()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "api.listen = {addr}: not allowed to bind port {} (ports below 1024 need root); use a port above 1024, e.g. 8080",
            addr.port()
        ),
        Err(e) => bail!("api.listen = {addr}: cannot bind: {e}"),
    }
    Ok(found)
}

/// The API token file: readable and private, or creatable at first start.
pub fn check_token_file(path: &Path) -> anyhow::Result<Findings> {
    let mut found = Findings::default();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if text.trim().len() < 16 {
                bail!(
                    "api.token_file {}: the token must be at least 16 characters; delete the file and the daemon writes a new one at its next start",
                    path.display()
                );
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o004 != 0 {
                    bail!(
                        "api.token_file {} is readable by every user of this machine (mode {:o}): anyone here could control the miner. Run `chmod 600 {}`",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    );
                }
            }
            found
                .ok
                .push(format!("api      token in {} (private)", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The daemon creates the directories and the file: the nearest existing directory
            // must let it.
            let mut dir = path.parent().unwrap_or(Path::new("."));
            if dir.as_os_str().is_empty() {
                dir = Path::new(".");
            }
            let existing = dir
                .ancestors()
                .find(|d| d.is_dir())
                .unwrap_or(Path::new("."));
            if let Err(e) = tempfile::NamedTempFile::new_in(existing) {
                bail!(
                    "api.token_file {} does not exist and cannot be created: {} is not writable ({e}). Give [api] token_file a path this user can write, or create the file (chmod 600)",
                    path.display(),
                    existing.display()
                );
            }
            found.ok.push(format!(
                "api      token file {} will be created at the first start",
                path.display()
            ));
        }
        Err(e) => bail!(
            "api.token_file {}: cannot read it ({e}); the daemon runs as this user, so it needs to read it",
            path.display()
        ),
    }
    Ok(found)
}

/// POST a `{"event":"test",...}` body to the webhook; Ok with what it answered when 2xx.
pub async fn test_webhook(url: &str, network: bitcoin::Network) -> anyhow::Result<String> {
    crate::notify::check_url(url)?;
    let timeout = Duration::from_secs(10);
    let client = crate::notify::client(timeout)?;
    let payload = Origin::new(network).test(SystemTime::now());
    let shown = crate::api::redact_url(url);
    match crate::notify::post(&client, url, &payload).await {
        Delivery::Delivered => Ok(format!(
            "notify   {shown} took a test notification (\"event\": \"test\")"
        )),
        Delivery::Retry(e) | Delivery::Final(e) => bail!(
            "notify.webhook_url {shown}: the test notification was not taken: {e}. Check that the receiver runs and accepts POSTs of JSON at that path (--offline skips this)"
        ),
    }
}

/// The process listening on TCP `port`, as (pid, command name), when /proc lets us see it.
pub fn port_holder(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Other users' descriptors are not readable without root: skipped.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if inodes.iter().any(|i| link == format!("socket:[{i}]")) {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Some((pid, name));
            }
        }
    }
    None
}

/// Socket inodes listening on `port` in a /proc/net/tcp{,6} table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let (_, hex_port) = local.rsplit_once(':')?;
            // 0A: TCP_LISTEN.
            (u16::from_str_radix(hex_port, 16).ok()? == port && *state == "0A").then_some(inode)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0D05 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(table, 8080), [12345]);
        assert_eq!(listening_inodes(table, 3333), [34567]);
        assert!(listening_inodes(table, 9).is_empty());
    }

    #[test]
    fn a_port_in_use_names_its_holder_and_a_lan_address_warns() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        // Held by this very process, whose /proc entries are always readable.
        let e = check_api_listen(addr).unwrap_err().to_string();
        assert!(e.contains(&format!("(pid {})", std::process::id())), "{e}");
        let free = {
            let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
            l.local_addr().unwrap()
        };
        let found = check_api_listen(free).unwrap();
        assert_eq!(found.warnings.len(), 1, "{found:?}");
        assert!(found.warnings[0].contains("not a loopback"));
    }

    #[tokio::test]
    async fn a_webhook_nobody_answers_says_what_happened() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = test_webhook(&format!("http://{addr}/hook"), bitcoin::Network::Regtest)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("was not taken") && e.contains("refused"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_token_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        std::fs::write(&path, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_token_file(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_token_file(&path).is_ok());
        let later = dir.path().join("sub/dir/api-token");
        let found = check_token_file(&later).unwrap();
        assert!(found.ok[0].contains("will be created"), "{found:?}");
    }
}
