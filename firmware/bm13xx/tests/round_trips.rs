//! Property tests: every frame type survives encode → decode unchanged, and the response decoder
//! finds exactly the frames hidden in a stream of arbitrary garbage cut into arbitrary chunks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bm13xx::command::{Command, Destination};
use bm13xx::job::{FullHeaderJob, MidstateJob};
use bm13xx::model::ChipModel;
use bm13xx::response::{Response, ResponseDecoder, parse_response};
use bm13xx::sim::chain::encode_nonce_reply;
use proptest::prelude::*;

fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        Just(Destination::All),
        any::<u8>().prop_map(Destination::Chip)
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<u8>().prop_map(Command::SetChipAddress),
        (destination(), any::<u8>(), any::<u32>()).prop_map(|(to, register, value)| {
            Command::WriteRegister {
                to,
                register,
                value,
            }
        }),
        (destination(), any::<u8>())
            .prop_map(|(to, register)| Command::ReadRegister { to, register }),
        Just(Command::ChainInactive),
    ]
}

fn full_header_job() -> impl Strategy<Value = FullHeaderJob> {
    (
        0u8..32,
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u32>(),
    )
        .prop_map(
            |(job_id, nbits, ntime, merkle_root, prev_block_hash, version)| FullHeaderJob {
                job_id,
                starting_nonce: 0,
                nbits,
                ntime,
                merkle_root,
                prev_block_hash,
                version,
            },
        )
}

fn model() -> impl Strategy<Value = ChipModel> {
    prop::sample::select(ChipModel::ALL.to_vec())
}

proptest! {
    #[test]
    fn commands_round_trip(c in command()) {
        let frame = c.encode();
        let decoded = Command::decode(frame.as_bytes()).unwrap();
        // Set-address and chain-inactive have no destination; everything else must match exactly.
        prop_assert_eq!(decoded, c);
    }

    #[test]
    fn full_header_jobs_round_trip(job in full_header_job(), len_byte in prop::sample::select(vec![0x36u8, 0x56])) {
        prop_assert_eq!(FullHeaderJob::decode(&job.encode_with_len_byte(len_byte)).unwrap(), job);
    }

    #[test]
    fn midstate_jobs_round_trip(
        job_id in 0u8..32,
        nbits in any::<u32>(),
        ntime in any::<u32>(),
        tail in any::<[u8; 4]>(),
        four in any::<bool>(),
        states in any::<[[u32; 8]; 4]>(),
    ) {
        let count = if four { 4 } else { 1 };
        let mut midstates = [[0u32; 8]; 4];
        midstates[..count].copy_from_slice(&states[..count]);
        let job = MidstateJob { job_id, starting_nonce: 0, nbits, ntime, merkle_root_tail: tail, midstate_count: count as u8, midstates };
        let mut buf = [0u8; 152];
        let frame = job.encode(&mut buf).to_vec();
        prop_assert_eq!(frame.len(), job.frame_len());
        prop_assert_eq!(MidstateJob::decode(&frame).unwrap(), job);
    }

    #[test]
    fn nonce_replies_round_trip(
        model in model(),
        n in any::<u32>(),
        job_id in 0u8..32,
        small_core in 0u8..16,
        excess in 0u32..100,
        version_field in any::<u16>(),
        midstate_index in 0u8..4,
    ) {
        let small_core = small_core % model.small_cores_per_core().min(16) as u8;
        let job_id = job_id % model.job_id_count();
        let frame = encode_nonce_reply(model, n, job_id, small_core, excess, version_field, midstate_index);
        prop_assert_eq!(frame.len(), model.response_len());
        let Ok(Response::Nonce(raw)) = parse_response(&frame) else { panic!("not a nonce") };
        let reply = model.decode_nonce(&raw);
        prop_assert_eq!(reply.job_id, job_id);
        prop_assert_eq!(reply.nonce, n.swap_bytes());
        prop_assert_eq!(reply.core, (n >> 25) as u8);
        if model == ChipModel::Bm1397 {
            prop_assert_eq!(reply.midstate_index, midstate_index);
        } else {
            prop_assert_eq!(reply.small_core, small_core);
            prop_assert_eq!(reply.excess_zero_bits as u32, excess);
            prop_assert_eq!(reply.version_bits, u32::from(version_field) << 13);
        }
    }

    #[test]
    fn decoder_finds_every_frame_in_garbage(
        frames in prop::collection::vec((any::<u32>(), 0u8..32, any::<u16>()), 1..20),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..30), 20),
        chunk in 1usize..40,
    ) {
        // Garbage without 0xAA cannot start a preamble, so exactly the real frames must come out,
        // in order. (Garbage with `AA 55` can pass CRC5 and type checks by chance, 1 in 128, and
        // swallow the start of a real frame; the nonce check upstream catches that.)
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, (n, job, v)) in frames.iter().enumerate() {
            let junk: Vec<u8> = garbage[i].iter().map(|b| if *b == 0xAA { 0xAB } else { *b }).collect();
            stream.extend_from_slice(&junk);
            let frame = encode_nonce_reply(ChipModel::Bm1370, *n, *job, 1, 0, *v, 0);
            expected.push(parse_response(&frame).unwrap());
            stream.extend_from_slice(&frame);
        }
        let mut decoder = ResponseDecoder::new(11);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            decoder.feed(piece, |r| got.push(r));
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn decoder_never_panics_and_only_yields_crc_valid_frames(bytes in prop::collection::vec(any::<u8>(), 0..512), len in prop::sample::select(vec![9usize, 11])) {
        let mut decoder = ResponseDecoder::new(len);
        let mut count = 0u64;
        decoder.feed(&bytes, |_| count += 1);
        let stats = decoder.stats();
        prop_assert_eq!(stats.frames, count);
        prop_assert!(stats.bytes_skipped <= bytes.len() as u64);
    }
}
