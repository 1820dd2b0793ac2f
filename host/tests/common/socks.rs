//! A minimal SOCKS5 proxy for tests (RFC 1928: no authentication, CONNECT only). Names are
//! resolved here, as Tor does for `.onion` names: `*.test` names go to 127.0.0.1. It records
//! every target it was asked for.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
pub struct Socks5 {
    pub addr: SocketAddr,
    /// `host:port` of every CONNECT, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> Socks5 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let _ = serve(client, seen).await;
            });
        }
    });
    Socks5 {
        addr,
        requests,
        task,
    }
}

async fn serve(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    assert_eq!(head[0], 5, "not SOCKS5");
    assert!(
        methods.contains(&0),
        "client offers no 'no authentication' method"
    );
    client.write_all(&[5, 0]).await?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    assert_eq!(&request[..3], &[5, 1, 0], "only CONNECT");
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            String::from_utf8(name).unwrap()
        }
        other => panic!("address type {other} not supported here"),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    seen.lock().unwrap().push(format!("{host}:{port}"));
    let target = if host.ends_with(".test") {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let upstream = match TcpStream::connect((target.as_str(), port)).await {
        Ok(u) => u,
        Err(_) => {
            // Connection refused.
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            return Ok(());
        }
    };
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    let (mut a, mut b) = (client, upstream);
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    Ok(())
}
