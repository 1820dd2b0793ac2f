//! Issue 7, item 5: the submitter's "the node answered for our block on this parent" notice must
//! reach the template source whatever else is queued for it. Before, it went with `try_send`
//! into the mpsc(16) it shared with ZMQ `hashblock` refreshes, and a burst of those dropped it:
//! the source then stayed paused on that parent until the tip moved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bitcoin::BlockHash;
use bitcoin::hashes::Hash;
use hearth::events::Stats;
use hearth::node::{Auth, RpcClient};
use hearth::share::Candidate;
use hearth::submit::{Journal, JournalEntry, Submitter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// A JSON-RPC "node" that refuses every block with `high-hash`, which is a final answer.
async fn refusing_node() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = headers
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap_or(0));
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    let request: serde_json::Value =
                        serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                    buf.drain(..end + 4 + len);
                    let body = serde_json::json!({"result": "high-hash", "error": null, "id": request["id"]})
                        .to_string();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_flood_of_zmq_refreshes_does_not_lose_the_submitted_notice() {
    let url = refusing_node().await;
    let rpc = RpcClient::new(
        url,
        Auth::UserPass("u".into(), "p".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let (candidate_tx, candidate_rx) = mpsc::channel(4);
    // The template source's ZMQ path: a burst of hashblock notices fills it.
    let (refresh_tx, mut refresh_rx) = mpsc::channel(16);
    while refresh_tx
        .try_send(hearth::node::source::Refresh::NewBlock)
        .is_ok()
    {}
    let (submitted_tx, mut submitted_rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let submitter = Submitter {
        rpc,
        journal: journal.clone(),
        candidates: candidate_rx,
        submitted: submitted_tx,
        stats: Stats::default(),
        events: broadcast::channel(16).0,
        cancel: cancel.clone(),
    };
    let task = tokio::spawn(submitter.run());

    let parent = BlockHash::from_byte_array([7; 32]);
    let entry = JournalEntry {
        height: 1,
        hash: BlockHash::from_byte_array([9; 32]).to_string(),
        device: "test".into(),
        found_at: 0,
        block: String::new(),
    };
    journal.record(&entry).unwrap();
    candidate_tx
        .send(Candidate {
            entry,
            hash: BlockHash::from_byte_array([9; 32]),
            parent,
            device_index: 0,
            stale_work: false,
        })
        .await
        .unwrap();

    let notice = tokio::time::timeout(Duration::from_secs(10), submitted_rx.recv())
        .await
        .expect("the Submitted notice never arrived");
    assert_eq!(notice, Some(parent));
    // The ZMQ path is untouched: still exactly the 16 hashblock refreshes.
    let mut zmq = 0;
    while refresh_rx.try_recv().is_ok() {
        zmq += 1;
    }
    assert_eq!(zmq, 16);
    cancel.cancel();
    task.await.unwrap();
}
