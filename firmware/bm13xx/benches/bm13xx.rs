//! Criterion benches: the emulator's sha256d (two-lane SHA-NI against the `sha2` digest API as
//! the baseline) and the driver's per-frame costs (job encode, nonce decode).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use bm13xx::job::FullHeaderJob;
use bm13xx::model::ChipModel;
use bm13xx::response::{Response, ResponseDecoder, parse_response};
use bm13xx::sim::sha256d::sha256d_lanes;
use bm13xx::verify::midstate;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest, Sha256};

const BATCH: u32 = 4096;

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256d");
    g.throughput(Throughput::Elements(u64::from(BATCH)));
    let header = [0x5Au8; 80];
    g.bench_function("baseline sha2 digest of 80-byte header", |b| {
        b.iter(|| {
            let mut h = header;
            let mut acc = 0u8;
            for n in 0..BATCH {
                h[76..].copy_from_slice(&n.to_le_bytes());
                acc ^= Sha256::digest(Sha256::digest(h))[31];
            }
            black_box(acc)
        })
    });
    let mut first = [0u8; 64];
    first.copy_from_slice(&header[..64]);
    let ms = midstate(&first);
    let tail = [0x5A5A_5A5A; 3];
    g.bench_function("emulator midstate + two lanes", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for n in (0..BATCH).step_by(2) {
                let s = sha256d_lanes(&ms, &tail, [n, n + 1]);
                acc ^= s[0][7] ^ s[1][7];
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn driver(c: &mut Criterion) {
    let job = FullHeaderJob {
        job_id: 13,
        starting_nonce: 0,
        nbits: 0x1702_3A04,
        ntime: 0x6854_68D7,
        merkle_root: [0x11; 32],
        prev_block_hash: [0x22; 32],
        version: 0x2000_0000,
    };
    c.bench_function("encode full-header job frame", |b| {
        b.iter(|| black_box(black_box(&job).encode()))
    });
    let reply = [
        0xAA, 0x55, 0x4C, 0x03, 0x52, 0x75, 0x0C, 0xD2, 0x05, 0xA2, 0x9C,
    ];
    c.bench_function("parse + decode nonce reply", |b| {
        b.iter(|| {
            let Ok(Response::Nonce(raw)) = parse_response(black_box(&reply)) else {
                unreachable!()
            };
            black_box(ChipModel::Bm1370.decode_nonce(&raw))
        })
    });
    let stream: Vec<u8> = reply.iter().copied().cycle().take(11 * 64).collect();
    let mut g = c.benchmark_group("stream decoder");
    g.throughput(Throughput::Elements(64));
    g.bench_function("64 nonce frames through ResponseDecoder", |b| {
        b.iter(|| {
            let mut d = ResponseDecoder::new(11);
            let mut n = 0;
            d.feed(black_box(&stream), |_| n += 1);
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, hashing, driver);
criterion_main!(benches);
