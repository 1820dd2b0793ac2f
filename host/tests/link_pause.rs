//! A Hearth board (`link` device) is told to stop its chips when the daemon has no work, and
//! counts as paused only once the board says it is idle. The board here is a stand-in on TCP
//! that speaks the link protocol; the firmware's side of Pause is tested in firmware/emu.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth::device::link::LinkDevice;
use hearth::device::{Device, DeviceContext, ResultSender};
use hearth::events::Stats;
use hearth::work::{BIP320_MASK, JobFactory};
use hearth_link::{
    BoardState, BoardToHost, Capabilities, FrameDecoder, HostToBoard, MAX_FRAME, Telemetry, encode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

fn telemetry(state: BoardState) -> BoardToHost {
    BoardToHost::Telemetry(Telemetry {
        uptime_ms: 1,
        state,
        asic_temp_mc: None,
        board_temp_mc: None,
        vr_temp_mc: None,
        fan_percent: 30,
        fan_rpm: None,
        vcore_mv: None,
        vcore_ma: None,
        input_mv: None,
        input_ma: None,
        input_mw: None,
        frequency_khz: 0,
        queued: 0,
        chips: Default::default(),
    })
}

/// A board that answers Hello, records what the host sends, and reports Idle once paused.
async fn stand_in_board(listener: TcpListener, seen: Arc<Mutex<Vec<HostToBoard>>>) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    let mut frame = [0u8; MAX_FRAME];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut messages = Vec::new();
        decoder.feed(&buf[..n], |m: Result<HostToBoard, _>| {
            if let Ok(m) = m {
                messages.push(m);
            }
        });
        for message in messages {
            let reply = match &message {
                HostToBoard::Hello => Some(BoardToHost::Hello(Capabilities {
                    protocol: hearth_link::PROTOCOL_VERSION,
                    firmware: [0, 1, 0],
                    board: "stand-in".try_into().unwrap(),
                    serial: "0001".try_into().unwrap(),
                    chip_id: 0x1370,
                    chip_count: 1,
                    queue_depth: 4,
                    share_bits: 32,
                })),
                HostToBoard::Pause => Some(telemetry(BoardState::Idle)),
                HostToBoard::Resume => Some(telemetry(BoardState::Hashing)),
                _ => None,
            };
            seen.lock().unwrap().push(message);
            if let Some(reply) = reply {
                let bytes = encode(&reply, &mut frame).unwrap();
                stream.write_all(bytes).await.unwrap();
            }
        }
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_work_pauses_the_board_and_work_resumes_it() {
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let work = common::regtest_work(&rpc, b"/link/").await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(stand_in_board(listener, seen.clone()));

    let stats = Stats::default();
    let index = stats.add_device("board");
    let (work_tx, work_rx) = watch::channel(Some(work.clone()));
    let (found_tx, _found_rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let mut ctx = DeviceContext {
        index,
        name: "board".into(),
        work: work_rx,
        found: ResultSender::new(found_tx, stats.clone()),
        factory: JobFactory::new(0, Arc::new(AtomicU64::new(1)), BIP320_MASK),
        stats: stats.clone(),
        events: broadcast::channel(64).0,
        cancel: cancel.clone(),
    };
    let mut device = LinkDevice {
        port: None,
        serial_number: None,
        tcp: Some(addr),
        share_floor_bits: None,
        telemetry: Arc::new(Mutex::new(None)),
        settings: None,
    };
    let running = tokio::spawn(async move { device.run(&mut ctx).await });
    let count = |f: fn(&HostToBoard) -> bool| seen.lock().unwrap().iter().filter(|m| f(m)).count();
    wait_for("work sent", || {
        count(|m| matches!(m, HostToBoard::Work(_))) >= 4
    })
    .await;

    // The node went away (or we found a block): no work. The chips must stop, not go on with
    // the last job.
    work_tx.send_replace(None);
    wait_for("Pause sent", || {
        count(|m| matches!(m, HostToBoard::Pause)) == 1
    })
    .await;
    wait_for("paused once the board is idle", || {
        stats.snapshot()[0].paused
    })
    .await;

    let works_before = count(|m| matches!(m, HostToBoard::Work(_)));
    work_tx.send_replace(Some(work));
    wait_for("Resume and new work", || {
        count(|m| matches!(m, HostToBoard::Work(_))) > works_before
    })
    .await;
    assert!(!stats.snapshot()[0].paused);
    {
        let seen = seen.lock().unwrap();
        let pause = seen
            .iter()
            .rposition(|m| matches!(m, HostToBoard::Pause))
            .unwrap();
        let resume = seen
            .iter()
            .rposition(|m| matches!(m, HostToBoard::Resume))
            .unwrap();
        let first_new_work = seen
            .iter()
            .enumerate()
            .skip(pause)
            .find(|(_, m)| matches!(m, HostToBoard::Work(_)))
            .unwrap()
            .0;
        assert!(pause < resume && resume < first_new_work, "{seen:?}");
    }

    // Shutdown: the board is told to stop its chips at once.
    let pauses = count(|m| matches!(m, HostToBoard::Pause));
    cancel.cancel();
    running.await.unwrap().unwrap();
    wait_for("Pause at shutdown", || {
        count(|m| matches!(m, HostToBoard::Pause)) == pauses + 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_settings_reach_the_board_at_once_and_again_after_a_reconnect() {
    use hearth::device::link::BoardSettings;
    let node = common::node(&[]).await;
    let rpc = node.rpc().unwrap();
    let work = common::regtest_work(&rpc, b"/link/").await;
    let stats = Stats::default();
    let index = stats.add_device("board");
    let (_work_tx, work_rx) = watch::channel(Some(work));
    let (found_tx, _found_rx) = mpsc::channel(64);
    let (settings_tx, settings_rx) = watch::channel(BoardSettings::default());

    // Two sessions, one after the other, as after an unplug and replug.
    for session in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(stand_in_board(listener, seen.clone()));
        let cancel = CancellationToken::new();
        let mut ctx = DeviceContext {
            index,
            name: "board".into(),
            work: work_rx.clone(),
            found: ResultSender::new(found_tx.clone(), stats.clone()),
            factory: JobFactory::new(0, Arc::new(AtomicU64::new(1)), BIP320_MASK),
            stats: stats.clone(),
            events: broadcast::channel(64).0,
            cancel: cancel.clone(),
        };
        let mut device = LinkDevice {
            port: None,
            serial_number: None,
            tcp: Some(addr),
            share_floor_bits: None,
            telemetry: Arc::new(Mutex::new(None)),
            settings: Some(settings_rx.clone()),
        };
        let running = tokio::spawn(async move { device.run(&mut ctx).await });
        let has = |m: HostToBoard| {
            let seen = seen.clone();
            move || seen.lock().unwrap().contains(&m)
        };
        if session == 0 {
            wait_for("work sent", || !seen.lock().unwrap().is_empty()).await;
            settings_tx.send_modify(|s| s.frequency_khz = Some(500_000));
            wait_for(
                "SetFrequency",
                has(HostToBoard::SetFrequency { khz: 500_000 }),
            )
            .await;
            settings_tx.send_modify(|s| s.voltage_mv = Some(1_200));
            wait_for("SetVoltage", has(HostToBoard::SetVoltage { mv: 1_200 })).await;
            settings_tx.send_modify(|s| s.fan_percent = Some(Some(80)));
            wait_for("SetFan", has(HostToBoard::SetFan { percent: Some(80) })).await;
        } else {
            // A fresh connection gets every setting again, before any work.
            wait_for("settings replayed", || {
                let seen = seen.lock().unwrap();
                let first_work = seen.iter().position(|m| matches!(m, HostToBoard::Work(_)));
                let set = |m: &HostToBoard| seen.iter().position(|x| x == m);
                match (
                    first_work,
                    set(&HostToBoard::SetFrequency { khz: 500_000 }),
                    set(&HostToBoard::SetVoltage { mv: 1_200 }),
                    set(&HostToBoard::SetFan { percent: Some(80) }),
                ) {
                    (Some(w), Some(f), Some(v), Some(p)) => f < w && v < w && p < w,
                    _ => false,
                }
            })
            .await;
        }
        cancel.cancel();
        running.await.unwrap().unwrap();
    }
}
