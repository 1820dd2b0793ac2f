//! Every message survives encode → decode, in any chunking, with garbage between frames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_link::*;
use proptest::prelude::*;

fn work_item() -> impl Strategy<Value = WorkItem> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(id, version, version_mask, prev_block_hash, merkle_root, ntime, nbits)| WorkItem {
                id,
                version,
                version_mask,
                prev_block_hash,
                merkle_root,
                ntime,
                nbits,
            },
        )
}

fn host_message() -> impl Strategy<Value = HostToBoard> {
    prop_oneof![
        Just(HostToBoard::Hello),
        work_item().prop_map(HostToBoard::Work),
        Just(HostToBoard::ClearWork),
        any::<u32>().prop_map(|khz| HostToBoard::SetFrequency { khz }),
        any::<u16>().prop_map(|mv| HostToBoard::SetVoltage { mv }),
        any::<Option<u8>>().prop_map(|percent| HostToBoard::SetFan { percent }),
        Just(HostToBoard::Pause),
        Just(HostToBoard::Resume),
        Just(HostToBoard::Reset),
        any::<u32>().prop_map(|seq| HostToBoard::Ping { seq }),
        any::<u8>().prop_map(|bits| HostToBoard::SetShareFloor { bits }),
        Just(HostToBoard::ScanI2c),
        Just(HostToBoard::GetEnumeration),
    ]
}

fn text() -> impl Strategy<Value = heapless::String<96>> {
    "[a-zA-Z0-9 °µ]{0,40}".prop_map(|s| heapless::String::try_from(s.as_str()).unwrap())
}

fn board_message() -> impl Strategy<Value = BoardToHost> {
    let telemetry = (
        any::<u32>(),
        any::<Option<i32>>(),
        any::<u8>(),
        any::<Option<u32>>(),
        prop::collection::vec((any::<u32>(), any::<u32>()), 0..16),
    )
        .prop_map(
            |(uptime_ms, asic_temp_mc, fan_percent, input_mw, chips)| Telemetry {
                uptime_ms,
                state: BoardState::Hashing,
                asic_temp_mc,
                board_temp_mc: asic_temp_mc,
                vr_temp_mc: None,
                fan_percent,
                fan_rpm: input_mw,
                vcore_mv: Some(1150),
                vcore_ma: input_mw,
                input_mv: input_mw,
                input_ma: None,
                input_mw,
                frequency_khz: uptime_ms,
                queued: fan_percent,
                chips: chips
                    .into_iter()
                    .map(|(nonces, errors)| ChipCounters {
                        nonces,
                        errors,
                        hash_counter: nonces ^ errors,
                        error_counter: errors,
                    })
                    .collect(),
            },
        );
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>()
        )
            .prop_map(|(work_id, version, nonce, chip, zero_bits)| {
                BoardToHost::Nonce(NonceReport {
                    work_id,
                    version,
                    nonce,
                    chip,
                    zero_bits,
                })
            }),
        telemetry.prop_map(BoardToHost::Telemetry),
        (any::<i32>(), any::<i32>()).prop_map(|(temp_mc, limit_mc)| BoardToHost::Fault(
            Fault::OverTemperature { temp_mc, limit_mc }
        )),
        text().prop_map(|reason| BoardToHost::Fault(Fault::ChainInit { reason })),
        (any::<u8>(), any::<u8>())
            .prop_map(|(queued, wanted)| BoardToHost::WorkLow { queued, wanted }),
        text().prop_map(|text| BoardToHost::Log {
            level: LogLevel::Info,
            text
        }),
        any::<u32>().prop_map(|seq| BoardToHost::Pong { seq }),
        // Every address answering is the largest scan there is.
        (
            prop::collection::btree_set(0x08u8..=0x77, 0..=112),
            any::<Option<u8>>()
        )
            .prop_map(|(acked, stopped_at)| BoardToHost::I2cScan(I2cScan {
                acked: acked.into_iter().collect(),
                stopped_at,
            })),
        (
            any::<u32>(),
            any::<u16>(),
            any::<Option<u16>>(),
            any::<bool>(),
            text()
        )
            .prop_map(|(attempts, chips_found, chip_id, up, error)| {
                BoardToHost::Enumeration(Enumeration {
                    attempts,
                    chips_found,
                    chip_id,
                    up,
                    error,
                })
            }),
    ]
}

proptest! {
    #[test]
    fn host_messages_round_trip_through_any_chunking(
        messages in prop::collection::vec(host_message(), 1..20),
        chunk in 1usize..100,
        garbage in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut stream = garbage.clone();
        // Garbage ends with a delimiter so it costs exactly one (dropped) frame.
        stream.push(0);
        let mut out = [0u8; MAX_FRAME];
        for m in &messages {
            stream.extend_from_slice(encode(m, &mut out).unwrap());
        }
        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            decoder.feed(piece, |r: Result<HostToBoard, _>| if let Ok(m) = r { got.push(m) });
        }
        prop_assert_eq!(got, messages);
    }

    #[test]
    fn board_messages_round_trip(message in board_message()) {
        let mut out = [0u8; MAX_FRAME];
        let frame = encode(&message, &mut out).unwrap().to_vec();
        prop_assert!(frame.len() <= MAX_FRAME);
        let mut got = None;
        FrameDecoder::new().feed(&frame, |r: Result<BoardToHost, _>| got = Some(r));
        prop_assert_eq!(got, Some(Ok(message)));
    }

    #[test]
    fn corruption_is_detected(message in host_message(), flip in any::<usize>(), bit in 0u8..8) {
        let mut out = [0u8; MAX_FRAME];
        let mut frame = encode(&message, &mut out).unwrap().to_vec();
        let at = flip % (frame.len() - 1);
        frame[at] ^= 1 << bit;
        let mut results = Vec::new();
        FrameDecoder::new().feed(&frame, |r: Result<HostToBoard, _>| results.push(r));
        // Either the frame is rejected (CRC, COBS, or split by a new zero) or, never, accepted
        // with different contents.
        for m in results.into_iter().flatten() {
            prop_assert_eq!(m, message.clone());
        }
    }
}

#[test]
fn a_frame_from_another_protocol_version_is_refused_by_name() {
    let mut out = [0u8; MAX_FRAME];
    let frame = encode(&HostToBoard::Hello, &mut out).unwrap().to_vec();
    // Decode, bump the version byte, fix the CRC, re-encode: a well-formed frame of protocol 2.
    let mut raw = [0u8; MAX_FRAME];
    let n = cobs::decode(&frame[..frame.len() - 1], &mut raw)
        .unwrap()
        .frame_size();
    raw[0] = PROTOCOL_VERSION + 1;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&raw[..n - 4]);
    raw[n - 4..n].copy_from_slice(&crc.to_le_bytes());
    let mut enc = vec![0u8; MAX_FRAME];
    let m = cobs::encode(&raw[..n], &mut enc);
    enc.truncate(m);
    enc.push(0);
    let mut got = None;
    FrameDecoder::new().feed(&enc, |r: Result<HostToBoard, _>| got = Some(r));
    let err = got.unwrap().unwrap_err();
    assert_eq!(
        err,
        DecodeError::Version {
            found: PROTOCOL_VERSION + 1
        }
    );
    assert!(
        err.to_string()
            .contains("update the firmware or the daemon")
    );
}
