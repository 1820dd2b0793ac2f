//! The node's RPC through a SOCKS5 proxy (Tor, for a remote or onion node): a loopback port
//! whose every connection is carried through the proxy to the node, so that the RPC client
//! needs no proxy support of its own. (reqwest's SOCKS support needs one of its TLS features
//! to connect at all; Bitcoin Core's RPC has no TLS, and none is built in here.)

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Start forwarding; returns the loopback address that reaches `host:port` through `proxy`.
pub async fn forward(
    proxy: String,
    host: String,
    port: u16,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let client = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((client, _)) => client,
                    Err(_) => continue,
                },
            };
            let (proxy, host) = (proxy.clone(), host.clone());
            tokio::spawn(async move {
                if let Err(e) = carry(client, &proxy, &host, port).await {
                    tracing::warn!(%proxy, node = %format!("{host}:{port}"), error = %e,
                        "cannot reach the node through the SOCKS5 proxy");
                }
            });
        }
    });
    Ok(local)
}

async fn carry(mut client: TcpStream, proxy: &str, host: &str, port: u16) -> anyhow::Result<()> {
    // The proxy resolves the name (ATYP 3): .onion nodes work, and no DNS leaks around Tor.
    let upstream = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio_socks::tcp::Socks5Stream::connect(proxy, (host, port)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after 60 s"))??;
    let mut upstream = upstream.into_inner();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}

/// Connect to `host:port`, through the SOCKS5 `proxy` when there is one, within `timeout`.
/// The proxy resolves the name (ATYP 3): `.onion` names work, and no DNS leaks around Tor.
/// The error names the route.
pub async fn connect(
    host: &str,
    port: u16,
    proxy: Option<&str>,
    timeout: std::time::Duration,
) -> Result<TcpStream, String> {
    let attempt = async {
        match proxy {
            Some(proxy) => tokio_socks::tcp::Socks5Stream::connect(proxy, (host, port))
                .await
                .map(|s| s.into_inner())
                .map_err(|e| format!("through SOCKS5 proxy {proxy}: {e}")),
            None => TcpStream::connect((host, port))
                .await
                .map_err(|e| e.to_string()),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to {host}:{port}: timed out after {timeout:?}"
        )),
    }
}

/// Split `http://host:port/path` into host, port and the rest (for the forwarder).
pub fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
        path.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_split() {
        assert_eq!(
            split_url("http://abc.onion:8332"),
            Some(("abc.onion".into(), 8332, String::new()))
        );
        assert_eq!(
            split_url("http://10.0.0.2:8332/wallet/x"),
            Some(("10.0.0.2".into(), 8332, "/wallet/x".into()))
        );
        assert_eq!(split_url("http://nohost"), None);
    }
}
