//! The chain driver against the emulated chain: enumeration, full init, mining with every nonce
//! validating against its job and no nonce twice, recovery from a corrupted line, and clear
//! errors for a dead chip, a wrong chip id, and a host left at the wrong baud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Duration;

use bm13xx::chain::{Chain, ChainError, ChainEvent, ChainOptions, FixedBaud, HostBaud};
use bm13xx::job::{FullHeaderJob, MidstateJob, midstate_version};
use bm13xx::model::{ChainBaud, ChipModel};
use bm13xx::register::{DEFAULT_VERSION_MASK, addr};
use bm13xx::sim::{LineFaults, SimConfig, SimHandle, TokioDelay, spawn};
use bm13xx::verify::{NonceVerdict, NonceVerifier, leading_zero_bits, midstate};
use embedded_io_adapters::tokio_1::FromTokio;
use sha2::{Digest, Sha256};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

type SimChain<B> =
    Chain<FromTokio<WriteHalf<DuplexStream>>, FromTokio<ReadHalf<DuplexStream>>, TokioDelay, B>;

const FLOOR_BITS: u32 = 12;
const TICKET_DIFFICULTY: u32 = 16; // + 4 bits: one nonce per 65,536 hashes

fn options(model: ChipModel, chips: u16) -> ChainOptions {
    let mut options = ChainOptions::new(model, Some(chips));
    options.enumeration_timeout_ms = 100;
    options.init.ramp_step_delay_ms = 0;
    options.init.per_chip_delay_ms = 0;
    options.init.ticket_difficulty = TICKET_DIFFICULTY;
    options
}

fn emulated(
    config: SimConfig,
    options: ChainOptions,
) -> (SimChain<bm13xx::sim::SimBaud>, SimHandle) {
    let port = spawn(config.clone());
    let (rx, tx) = tokio::io::split(port.stream);
    let chain = Chain::new(
        config.model,
        FromTokio::new(tx),
        FromTokio::new(rx),
        TokioDelay,
        port.baud,
        options,
    );
    (chain, port.handle)
}

/// A job with recognisable, per-`seed` contents.
fn job(seed: u32) -> FullHeaderJob {
    let mut merkle = [0u8; 32];
    let mut prev = [0u8; 32];
    for i in 0..32 {
        merkle[i] = (seed as u8).wrapping_mul(17).wrapping_add(i as u8);
        prev[i] = (seed as u8).wrapping_add((i * 3) as u8);
    }
    FullHeaderJob {
        job_id: 0,
        starting_nonce: 0,
        nbits: 0x1703_4219,
        ntime: 0x6622_1BDF + seed,
        merkle_root: merkle,
        prev_block_hash: prev,
        version: 0x2000_0000,
    }
}

/// Independent re-hash with the `sha2` digest API (not the code under test).
fn independent_zero_bits(header: &[u8; 80]) -> u32 {
    let hash: [u8; 32] = Sha256::digest(Sha256::digest(header)).into();
    leading_zero_bits(&hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enumerates_and_initialises_1_4_12_and_65_chips() {
    for chips in [1u16, 4, 12, 65] {
        let (mut chain, sim) = emulated(
            SimConfig::new(ChipModel::Bm1370, chips),
            options(ChipModel::Bm1370, chips),
        );
        let info = chain
            .init()
            .await
            .unwrap_or_else(|e| panic!("{chips} chips: {e}"));
        assert_eq!(info.chip_count, chips);
        assert_eq!(info.baud, 1_041_667);
        let stats = sim.stats();
        assert_eq!(stats.chip_baud, 1_041_667, "chips switched baud");
        let interval = if chips == 1 {
            0
        } else {
            256 / u32::from(chips)
        };
        let expected: Vec<u8> = (0..u32::from(chips))
            .map(|i| (i * interval) as u8)
            .collect();
        assert_eq!(stats.addresses, expected, "{chips} chips: addresses");
        // The chain still answers at the new baud: read the last chip's id by address.
        let last = chain.chip_address(chips - 1);
        let id = chain.read_register(last, addr::CHIP_ID, 200).await.unwrap();
        assert_eq!(id >> 16, 0x1370);
        assert_eq!(id & 0xFF, u32::from(last));
        sim.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_initialises() {
    for (model, chips) in [
        (ChipModel::Bm1366, 6),
        (ChipModel::Bm1368, 3),
        (ChipModel::Bm1397, 2),
    ] {
        let (mut chain, sim) = emulated(SimConfig::new(model, chips), options(model, chips));
        let info = chain
            .init()
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!((info.model, info.chip_count), (model, chips));
        assert_eq!(
            sim.stats().chip_baud,
            ChainBaud::Fast1M.chip_baud(),
            "{model}"
        );
        sim.stop();
    }
}

/// The BM1397 form of a job: four midstates for four versions stepped inside the mask.
fn midstate_job(booked: &FullHeaderJob) -> MidstateJob {
    let midstates = core::array::from_fn(|i| {
        let header = booked.header(
            midstate_version(booked.version, DEFAULT_VERSION_MASK, i as u8),
            0,
        );
        let mut first = [0u8; 64];
        first.copy_from_slice(&header[..64]);
        midstate(&first)
    });
    let header = booked.header(booked.version, 0);
    let mut tail = [0u8; 4];
    tail.copy_from_slice(&header[64..68]);
    MidstateJob {
        job_id: booked.job_id,
        starting_nonce: 0,
        nbits: booked.nbits,
        ntime: booked.ntime,
        merkle_root_tail: tail,
        midstate_count: 4,
        midstates,
    }
}

/// Counts from a mining run.
#[derive(Debug, Default)]
struct Mined {
    valid: u64,
    hardware_errors: u64,
    unknown_job: u64,
    job_ids: HashSet<u8>,
}

/// Mine on a chain: send `jobs` jobs (cycling through the model's job ids) `per_job` apart and
/// check every reply: the verifier's verdict, an independent re-hash of each valid one, and that
/// no header (job, version, nonce) comes back twice from any chip.
async fn mine<B: HostBaud>(
    chain: SimChain<B>,
    model: ChipModel,
    jobs: u32,
    per_job: Duration,
    mut between_jobs: impl FnMut(u32),
) -> Mined {
    let (mut tx, mut rx, _, _) = chain.split();
    let threshold = FLOOR_BITS + TICKET_DIFFICULTY.trailing_zeros();
    let mut verifier: NonceVerifier = NonceVerifier::new(model, DEFAULT_VERSION_MASK, threshold);
    let mut by_id = std::collections::HashMap::new();
    let mut seen = std::collections::HashMap::new();
    let mut mined = Mined::default();
    for n in 0..jobs {
        between_jobs(n);
        let booked = verifier.add_job(job(n));
        by_id.insert(booked.job_id, booked);
        if model == ChipModel::Bm1397 {
            tx.send_midstate_job(&midstate_job(&booked)).await.unwrap();
        } else {
            tx.send_job(&booked).await.unwrap();
        }
        tx.flush().await.unwrap();
        let deadline = tokio::time::Instant::now() + per_job;
        while let Ok(event) = tokio::time::timeout_at(deadline, rx.next_event()).await {
            let ChainEvent::Nonce(reply) = event.unwrap() else {
                continue;
            };
            match verifier.check(&reply) {
                NonceVerdict::Valid(checked) => {
                    let header = by_id[&reply.job_id].header(checked.version, checked.nonce);
                    assert!(
                        independent_zero_bits(&header) >= threshold,
                        "{model}: a false nonce got through"
                    );
                    // Keyed by the whole header: with 16 ids on BM1370 the same (id, version,
                    // nonce) can honestly win for two different jobs at this low difficulty.
                    if let Some(first) = seen.insert(header, n) {
                        panic!("{model}: nonce twice: job {n} (first in job {first}) {reply:?}");
                    }
                    mined.job_ids.insert(reply.job_id);
                    mined.valid += 1;
                }
                NonceVerdict::UnknownJob => mined.unknown_job += 1,
                NonceVerdict::Duplicate(_) => panic!("{model}: duplicate nonce {reply:?}"),
                NonceVerdict::HardwareError(_) => mined.hardware_errors += 1,
            }
        }
    }
    mined
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mining_returns_only_valid_unique_nonces_for_every_model() {
    for (model, chips) in [
        (ChipModel::Bm1370, 4),
        (ChipModel::Bm1368, 3),
        (ChipModel::Bm1366, 4),
        (ChipModel::Bm1397, 2),
    ] {
        let mut config = SimConfig::new(model, chips);
        config.floor_bits = FLOOR_BITS;
        let (mut chain, sim) = emulated(config, options(model, chips));
        chain.init().await.unwrap();
        let mined = mine(chain, model, 40, Duration::from_millis(60), |_| ()).await;
        assert_eq!(
            (mined.hardware_errors, mined.unknown_job),
            (0, 0),
            "{model}: {mined:?}"
        );
        assert!(mined.valid > 40, "{model}: only {} nonces", mined.valid);
        // Every id the model uses round-trips, including the top one (on BM1368 bit 4 of the
        // id travels in byte 6; BM1370 uses 16 ids in the top nibble).
        let top = model.job_id_count() - 1;
        assert!(
            mined
                .job_ids
                .iter()
                .any(|id| *id >= model.job_id_count() / 2),
            "{model}: no nonce for a job id in the upper half: {:?}",
            mined.job_ids
        );
        assert!(
            mined.job_ids.iter().all(|id| *id <= top),
            "{model}: {:?}",
            mined.job_ids
        );
        let stats = sim.stats();
        assert!(
            stats.nonces.iter().all(|n| *n > 0),
            "{model}: a chip found nothing: {:?}",
            stats.nonces
        );
        sim.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_line_yields_no_false_nonce_and_the_driver_recovers() {
    let model = ChipModel::Bm1370;
    let mut config = SimConfig::new(model, 4);
    config.floor_bits = FLOOR_BITS;
    let (mut chain, sim) = emulated(config, options(model, 4));
    chain.init().await.unwrap();
    // Jobs 0..40 on a line with one byte in a thousand corrupted (both directions), then 20 on a
    // clean line.
    let control = sim.clone();
    let mined = mine(chain, model, 60, Duration::from_millis(60), move |n| {
        let rate = if n < 40 { 1e-3 } else { 0.0 };
        control.set_faults(LineFaults {
            byte_error_rate: rate,
            byte_drop_rate: rate / 4.0,
        });
    })
    .await;
    let stats = sim.stats();
    assert!(
        stats.bad_frames > 0 || mined.hardware_errors > 0,
        "the faults never hit: {stats:?}"
    );
    assert!(mined.valid > 100, "{mined:?}");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_chip_is_reported_clearly() {
    let mut config = SimConfig::new(ChipModel::Bm1370, 4);
    config.dead_chips = vec![2];
    let (mut chain, sim) = emulated(config, options(ChipModel::Bm1370, 4));
    let err = chain.init().await.unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::ChipCount {
                expected: 4,
                found: 3
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("3 chips answered but the board has 4"),
        "{text}"
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_chip_id_is_reported_clearly() {
    let mut config = SimConfig::new(ChipModel::Bm1370, 4);
    config.wrong_chip_ids = vec![(1, 0x1368)];
    let (mut chain, sim) = emulated(config, options(ChipModel::Bm1370, 4));
    let err = chain.init().await.unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::UnexpectedChip {
                index: 1,
                expected: ChipModel::Bm1370,
                found_id: 0x1368
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("chip 1 reports id 0x1368 (BM1368)"),
        "{err}"
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_chip_at_all_is_reported_clearly() {
    let mut config = SimConfig::new(ChipModel::Bm1366, 1);
    config.dead_chips = vec![0];
    let (mut chain, sim) = emulated(config, options(ChipModel::Bm1366, 1));
    let err = chain.init().await.unwrap_err();
    assert!(matches!(err, ChainError::NoChips), "{err:?}");
    assert!(err.to_string().contains("check core power"), "{err}");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_left_at_the_old_baud_hears_nothing() {
    // The chips switch to 1 Mbaud; a host that cannot follow must not see valid frames.
    let model = ChipModel::Bm1370;
    let port = spawn(SimConfig::new(model, 2));
    let (rx, tx) = tokio::io::split(port.stream);
    let mut chain = Chain::new(
        model,
        FromTokio::new(tx),
        FromTokio::new(rx),
        TokioDelay,
        FixedBaud,
        options(model, 2),
    );
    // The sim still thinks the host runs at 115,200: FixedBaud does not tell it otherwise.
    chain.init().await.unwrap();
    let err = chain
        .read_register(0, addr::CHIP_ID, 200)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::Timeout { register: 0 }),
        "{err:?}"
    );
    port.handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_left_at_the_mining_baud_is_initialised_again() {
    // A host restarted with the chips still powered (no reset pulse): they run at 1 Mbaud and
    // ignore a chip-id read at 115,200. Init must call them back and enumerate again.
    let model = ChipModel::Bm1370;
    let (mut chain, sim) = emulated(SimConfig::new(model, 4), options(model, 4));
    chain.init().await.unwrap();
    assert_eq!(sim.stats().chip_baud, 1_041_667);
    let (tx, rx, delay, mut baud) = chain.split();
    // A new host process opens the port at the power-on baud.
    baud.set_host_baud(115_200).unwrap();
    let mut again = Chain::new(
        model,
        tx.into_inner(),
        rx.into_inner(),
        delay,
        baud,
        options(model, 4),
    );
    let info = again.init().await.unwrap();
    assert_eq!((info.chip_count, info.baud), (4, 1_041_667));
    let id = again
        .read_register(again.chip_address(3), addr::CHIP_ID, 200)
        .await
        .unwrap();
    assert_eq!(id >> 16, 0x1370);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_hashing_stops_every_chip_and_resume_starts_them_again() {
    for (model, chips) in [(ChipModel::Bm1370, 4), (ChipModel::Bm1397, 2)] {
        let mut config = SimConfig::new(model, chips);
        config.floor_bits = FLOOR_BITS;
        let options = options(model, chips);
        let (mut chain, sim) = emulated(config, options);
        chain.init().await.unwrap();
        let (mut tx, _rx, mut delay, _) = chain.split();
        let booked = job(1);
        if model == ChipModel::Bm1397 {
            tx.send_midstate_job(&midstate_job(&booked)).await.unwrap();
        } else {
            tx.send_job(&booked).await.unwrap();
        }
        tx.flush().await.unwrap();
        let hashes = || sim.stats().hashes;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(hashes().iter().all(|h| *h > 0), "{model}: {:?}", hashes());

        // The hash clock is off: no chip hashes the job on.
        tx.stop_hashing(options.init).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stopped = hashes();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(hashes(), stopped, "{model}: chips kept hashing");

        tx.resume_hashing(options.init, chips, &mut delay)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resumed = hashes();
        assert!(
            resumed.iter().zip(&stopped).all(|(now, then)| now > then),
            "{model}: {stopped:?} -> {resumed:?}"
        );
        sim.stop();
    }
}
