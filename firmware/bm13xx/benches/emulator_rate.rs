//! The emulator end to end: one hashing thread, one chip, mining a real job through the driver;
//! prints the sha256d rate the chip achieved (MH/s per core).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use bm13xx::chain::{Chain, ChainEvent, ChainOptions};
use bm13xx::job::FullHeaderJob;
use bm13xx::model::ChipModel;
use bm13xx::sim::{SimConfig, TokioDelay, spawn};
use embedded_io_adapters::tokio_1::FromTokio;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut config = SimConfig::new(ChipModel::Bm1370, 1);
    config.floor_bits = 16;
    let port = spawn(config);
    let handle = port.handle.clone();
    let (rx, tx) = tokio::io::split(port.stream);
    let mut options = ChainOptions::new(ChipModel::Bm1370, Some(1));
    options.init.ramp_step_delay_ms = 0;
    options.init.ticket_difficulty = 256;
    let mut chain = Chain::new(
        ChipModel::Bm1370,
        FromTokio::new(tx),
        FromTokio::new(rx),
        TokioDelay,
        port.baud,
        options,
    );
    chain.init().await.unwrap();
    let (mut tx, mut rx, _, _) = chain.split();
    tx.send_job(&FullHeaderJob {
        job_id: 1,
        starting_nonce: 0,
        nbits: 0x1703_4219,
        ntime: 0x6622_1BDF,
        merkle_root: [3; 32],
        prev_block_hash: [4; 32],
        version: 0x2000_0000,
    })
    .await
    .unwrap();
    tx.flush().await.unwrap();
    let start_hashes = handle.stats().hashes[0];
    let start = Instant::now();
    let mut nonces = 0u64;
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while let Ok(Ok(event)) = tokio::time::timeout_at(end, rx.next_event()).await {
        if matches!(event, ChainEvent::Nonce(_)) {
            nonces += 1;
        }
    }
    let hashes = handle.stats().hashes[0] - start_hashes;
    let rate = hashes as f64 / start.elapsed().as_secs_f64() / 1e6;
    println!(
        "emulator: {rate:.2} MH/s on one hashing thread ({hashes} sha256d, {nonces} nonces at 24 zero bits)"
    );
    handle.stop();
}
