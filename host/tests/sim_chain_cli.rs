//! `hearth sim-chain --listen` serves the emulated chain over TCP: the real driver enumerates,
//! initialises and mines through it, as the firmware emulator harness will.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use bm13xx::chain::{Chain, ChainEvent, ChainOptions, FixedBaud};
use bm13xx::job::FullHeaderJob;
use bm13xx::model::ChipModel;
use bm13xx::register::DEFAULT_VERSION_MASK;
use bm13xx::sim::TokioDelay;
use bm13xx::verify::{NonceVerdict, NonceVerifier};
use embedded_io_adapters::tokio_1::FromTokio;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_mines_through_the_tcp_emulator() {
    let (_child, addr) = common::sim_chain(&[
        "--listen",
        "127.0.0.1:0",
        "--model",
        "BM1368",
        "--chips",
        "3",
        "--floor-bits",
        "12",
    ]);
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (rx, tx) = tokio::io::split(stream);
    let mut options = ChainOptions::new(ChipModel::Bm1368, Some(3));
    options.init.ramp_step_delay_ms = 0;
    options.init.per_chip_delay_ms = 0;
    options.init.ticket_difficulty = 16;
    let mut chain = Chain::new(
        ChipModel::Bm1368,
        FromTokio::new(tx),
        FromTokio::new(rx),
        TokioDelay,
        FixedBaud,
        options,
    );
    let info = chain.init().await.unwrap();
    assert_eq!(info.chip_count, 3);
    let (mut tx, mut rx, _, _) = chain.split();
    let mut verifier: NonceVerifier =
        NonceVerifier::new(ChipModel::Bm1368, DEFAULT_VERSION_MASK, 16);
    let job = verifier.add_job(FullHeaderJob {
        job_id: 0,
        starting_nonce: 0,
        nbits: 0x1703_4219,
        ntime: 0x6622_1BDF,
        merkle_root: [7; 32],
        prev_block_hash: [9; 32],
        version: 0x2000_0000,
    });
    tx.send_job(&job).await.unwrap();
    tx.flush().await.unwrap();
    let mut valid = 0;
    while valid < 10 {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.next_event())
            .await
            .unwrap()
            .unwrap();
        if let ChainEvent::Nonce(reply) = event {
            assert!(
                matches!(verifier.check(&reply), NonceVerdict::Valid(_)),
                "{reply:?}"
            );
            valid += 1;
        }
    }
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["sim-chain", "--model", "BM9999"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown chip model \"BM9999\""), "{err}");
}
