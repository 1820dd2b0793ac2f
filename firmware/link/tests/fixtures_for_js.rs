//! Frames for the JavaScript codec in firmware/emu (the emulator tests speak the link protocol
//! in JS): this test writes `tests/fixtures/frames.json` — messages in serde_json form with their
//! frames in hex — and fails if the committed file differs, so the two codecs cannot drift.
//! Regenerate with `HEARTH_WRITE_FIXTURES=1 cargo test -p hearth-link --test fixtures_for_js`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hearth_link::*;

fn frame<M: serde::Serialize>(m: &M) -> String {
    let mut out = [0u8; MAX_FRAME];
    encode(m, &mut out)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn s<const N: usize>(text: &str) -> heapless::String<N> {
    heapless::String::try_from(text).unwrap()
}

#[test]
fn frames_for_the_javascript_codec_are_current() {
    let host = vec![
        HostToBoard::Hello,
        HostToBoard::Work(WorkItem {
            id: 300,
            version: 0x2000_0000,
            version_mask: 0x1FFF_E000,
            prev_block_hash: core::array::from_fn(|i| i as u8),
            merkle_root: core::array::from_fn(|i| 255 - i as u8),
            ntime: 0x6854_68D7,
            nbits: 0x1702_3A04,
        }),
        HostToBoard::ClearWork,
        HostToBoard::SetFrequency { khz: 525_000 },
        HostToBoard::SetVoltage { mv: 1150 },
        HostToBoard::SetFan { percent: Some(40) },
        HostToBoard::SetFan { percent: None },
        HostToBoard::Pause,
        HostToBoard::Resume,
        HostToBoard::Reset,
        HostToBoard::Ping { seq: 70_000 },
        HostToBoard::SetShareFloor { bits: 12 },
        HostToBoard::ScanI2c,
        HostToBoard::GetEnumeration,
    ];
    let board = vec![
        BoardToHost::Hello(Capabilities {
            protocol: 1,
            firmware: [0, 1, 0],
            board: s("hearth-bm1370-r1"),
            serial: s("NOROM0000001"),
            chip_id: 0x1370,
            chip_count: 1,
            queue_depth: 16,
            share_bits: 40,
        }),
        BoardToHost::Nonce(NonceReport {
            work_id: 300,
            version: 0x20B4_4000,
            nonce: 0x7552_034C,
            chip: 0,
            zero_bits: 46,
        }),
        BoardToHost::Telemetry(Telemetry {
            uptime_ms: 123_456,
            state: BoardState::Throttled,
            asic_temp_mc: Some(-1500),
            board_temp_mc: Some(41_000),
            vr_temp_mc: None,
            fan_percent: 100,
            fan_rpm: Some(5400),
            vcore_mv: Some(1150),
            vcore_ma: Some(12_000),
            input_mv: Some(5000),
            input_ma: None,
            input_mw: Some(17_500),
            frequency_khz: 472_500,
            queued: 3,
            chips: heapless::Vec::from_slice(&[ChipCounters {
                nonces: 5,
                errors: 1,
                hash_counter: 4_000_000_000,
                error_counter: 2,
            }])
            .unwrap(),
        }),
        BoardToHost::Fault(Fault::OverTemperature {
            temp_mc: 86_000,
            limit_mc: 85_000,
        }),
        BoardToHost::Fault(Fault::Throttling {
            temp_mc: 76_000,
            frequency_khz: 472_500,
        }),
        BoardToHost::Fault(Fault::SensorFailure {
            sensor: Sensor::AsicTemperature,
        }),
        BoardToHost::Fault(Fault::RegulatorFault {
            status_word: 0x0804,
        }),
        BoardToHost::Fault(Fault::HostSilent { silent_ms: 10_050 }),
        BoardToHost::Fault(Fault::ChainInit {
            reason: s("no chip answered"),
        }),
        BoardToHost::Fault(Fault::Cleared),
        BoardToHost::WorkLow {
            queued: 0,
            wanted: 16,
        },
        BoardToHost::Log {
            level: LogLevel::Info,
            text: s("chain up, hashing"),
        },
        BoardToHost::Pong { seq: 70_000 },
        BoardToHost::I2cScan(I2cScan {
            acked: heapless::Vec::from_slice(&[0x24, 0x40, 0x4C]).unwrap(),
            stopped_at: None,
        }),
        BoardToHost::I2cScan(I2cScan {
            acked: heapless::Vec::new(),
            stopped_at: Some(0x08),
        }),
        BoardToHost::Enumeration(Enumeration {
            attempts: 3,
            chips_found: 1,
            chip_id: Some(0x1370),
            up: true,
            error: s(""),
        }),
        BoardToHost::Enumeration(Enumeration {
            attempts: 1,
            chips_found: 0,
            chip_id: None,
            up: false,
            error: s("no chip answered the chip-id read"),
        }),
    ];
    let mut doc = serde_json::json!({ "host": [], "board": [] });
    for m in &host {
        doc["host"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "message": m, "frame": frame(m) }));
    }
    for m in &board {
        doc["board"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "message": m, "frame": frame(m) }));
    }
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frames.json");
    if std::env::var_os("HEARTH_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date: run HEARTH_WRITE_FIXTURES=1 cargo test -p hearth-link --test fixtures_for_js",
        path.display()
    );
}
