//! The whole stack: bitcoind (regtest) + the hearth daemon + the real firmware image running in
//! rp2040js (firmware/emu) + the emulated chip chain (`hearth sim-chain`). The daemon talks to
//! the firmware over its (emulated) USB port with the link protocol; blocks found by the
//! emulated chip travel chip → firmware (verified) → daemon (verified again) → bitcoind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use hearth::daemon::Daemon;
use hearth::events::Event;

use common::{Killed, first_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firmware_in_the_emulator_mines_regtest_blocks_for_the_daemon() {
    let root = common::repo_root();
    let image = hearth::regtest::firmware_from_scripts(&root).unwrap_or_else(|e| panic!("{e:#}"));
    let emu = root.join("firmware/emu");
    assert!(
        emu.join("node_modules/rp2040js").is_dir(),
        "firmware/emu needs its npm packages: run `npm ci` in firmware/emu (scripts/test.sh does)"
    );
    let node = common::node(&[]).await;

    let (_chain, chain_addr) =
        common::sim_chain(&["--model", "BM1370", "--chips", "1", "--floor-bits", "12"]);

    // The emulated board's USB port on a fixed port, so that it can be "plugged in" again.
    let usb_port = hearth::regtest::free_port().unwrap();
    let plug_in = || {
        let mut board = Command::new("node")
            .current_dir(&emu)
            .arg("bin/serve.mjs")
            .arg(&image)
            .args([
                "--chain",
                &chain_addr,
                "--usb-listen",
                &usb_port.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs node (Node.js 20): {e}"));
        let line = first_line(&mut board);
        assert_eq!(line, format!("usb listening on 127.0.0.1:{usb_port}"));
        Killed(board)
    };
    let board = plug_in();
    let usb = format!("127.0.0.1:{usb_port}");

    let journal = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let devices = format!(
        "[[device]]\nkind = \"link\"\nname = \"board\"\ntcp = \"{usb}\"\nshare_floor_bits = 12\n"
    );
    let config = common::config_for(&node, &address.to_string(), journal.path(), &devices);
    let daemon = Daemon::start(config).await.unwrap();
    let mut events = daemon.events.subscribe();
    let up = common::wait_event(
        &mut events,
        Duration::from_secs(60),
        "board connected",
        |e| matches!(e, Event::DeviceUp { .. }),
    )
    .await;
    assert!(
        matches!(&up, Event::DeviceUp { detail, .. } if detail.contains("BM1370") && detail.contains("hearth-bm1370-r1")),
        "{up:?}"
    );

    let blocks = common::accepted_blocks(&mut events, 10, Duration::from_secs(240)).await;
    let rpc = node.rpc().unwrap();
    assert!(common::height(&rpc).await >= 10);
    for (height, hash) in &blocks {
        let on_chain = common::call(&rpc, "getblockhash", serde_json::json!([height])).await;
        assert_eq!(on_chain.as_str().unwrap(), hash.to_string());
    }
    // Every nonce the board sent re-hashed correctly here too.
    let stats = daemon.stats.snapshot();
    assert_eq!(stats[0].hardware_errors, 0, "{:?}", stats[0]);
    assert!(stats[0].blocks_accepted >= 10);
    // Telemetry from the firmware reaches the daemon (once a second: let it catch up).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while daemon
        .telemetry(0)
        .is_none_or(|t| t.chips.first().is_none_or(|c| c.nonces < 10))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "telemetry never counted the nonces: {:?}",
            daemon.telemetry(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let telemetry = daemon.telemetry(0).expect("no telemetry from the board");
    assert_eq!(
        telemetry.state,
        hearth_link::BoardState::Hashing,
        "{telemetry:?}"
    );
    assert!(
        telemetry.asic_temp_mc.is_some()
            && telemetry.vcore_mv.is_some()
            && telemetry.input_mw.is_some(),
        "{telemetry:?}"
    );
    assert_eq!(telemetry.frequency_khz, 525_000);
    assert!(
        telemetry.chips[0].nonces >= 10 && telemetry.chips[0].errors == 0,
        "{telemetry:?}"
    );
    // What the API, dashboard and metrics show: the board's readings and its efficiency.
    let api = daemon.api_addr.expect("the API listens");
    let devices: serde_json::Value = reqwest::get(format!("http://{api}/api/devices"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = &devices[0];
    assert_eq!(shown["kind"], "board", "{shown}");
    assert!(shown["board"]["asic_temp_c"].as_f64().is_some(), "{shown}");
    assert!(shown["board"]["vcore_v"].as_f64().unwrap() > 1.0, "{shown}");
    assert!(shown["board"]["input_w"].as_f64().is_some(), "{shown}");
    assert_eq!(shown["board"]["frequency_mhz"], 525.0);
    let metrics = reqwest::get(format!("http://{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hearth_board_temperature_celsius{device=")
            && metrics.contains("sensor=\"asic\""),
        "{metrics}"
    );

    // Unplug: the daemon reports the device gone and keeps running. Plug in again (a fresh
    // boot): it reconnects and the board mines again.
    drop(board);
    common::wait_event(
        &mut events,
        Duration::from_secs(30),
        "device error on unplug",
        |e| matches!(e, Event::DeviceError { .. }),
    )
    .await;
    let _board = plug_in();
    common::wait_event(
        &mut events,
        Duration::from_secs(60),
        "board reconnected",
        |e| matches!(e, Event::DeviceUp { .. }),
    )
    .await;
    let more = common::accepted_blocks(&mut events, 3, Duration::from_secs(240)).await;
    assert!(more.iter().all(|(h, _)| *h > blocks.last().unwrap().0));
    assert_eq!(daemon.stats.snapshot()[0].hardware_errors, 0);
    daemon.shutdown().await;
}
