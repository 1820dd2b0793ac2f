//! `hearth board selftest` against the real firmware image in rp2040js (firmware/emu) with the
//! emulated chip chain (`hearth sim-chain`): a healthy board passes, and boards with a part
//! missing, a part at another address or a reading out of range fail, each naming what to look
//! at. The emulator's I2C bus NACKs every address nothing is attached to, as a real bus does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Killed;

/// One emulated board at a time: each keeps a core busy, and the machine may have two.
static ONE_BOARD: Mutex<()> = Mutex::new(());

struct Run {
    /// Exit status of the self-test.
    passed: bool,
    stdout: String,
    took: Duration,
}

impl Run {
    /// The check line named `name` (e.g. "i2c 0x40 INA260").
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.get(6..)
                    .is_some_and(|rest| rest.starts_with(&format!("{name} ")))
            })
            .unwrap_or_else(|| panic!("no line for {name:?} in:\n{}", self.stdout))
    }

    fn failed(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("FAIL  "))
            .map(|rest| rest.split("  ").next().unwrap_or(rest).trim_end())
            .collect()
    }
}

/// The chain the r1 board expects: one BM1370.
const R1_CHAIN: &[&str] = &["--model", "BM1370", "--chips", "1"];

/// Boots the firmware in the emulator with `emu_args` (serve.mjs options) and the emulated chain
/// `chain` (sim-chain options), sends it the control commands `controls` (JSON lines), and runs
/// the self-test against it.
fn selftest(chain: &[&str], emu_args: &[&str], controls: &[&str]) -> Run {
    let _one = ONE_BOARD.lock().unwrap_or_else(|e| e.into_inner());
    let root = common::repo_root();
    let image = hearth::regtest::firmware_from_scripts(&root).unwrap_or_else(|e| panic!("{e:#}"));
    let emu = root.join("firmware/emu");
    assert!(
        emu.join("node_modules/rp2040js").is_dir(),
        "firmware/emu needs its npm packages: run `npm ci` in firmware/emu (scripts/test.sh does)"
    );
    let (_chain, chain_addr) = common::sim_chain(chain);
    let mut board = Command::new("node")
        .current_dir(&emu)
        .arg("bin/serve.mjs")
        .arg(&image)
        .args(["--chain", &chain_addr, "--usb-listen", "0"])
        .args(emu_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs node (Node.js 20): {e}"));
    // The first line names the USB port; the answers to the control commands follow, and are
    // drained so that serve.mjs never writes into a closed pipe.
    let mut out = BufReader::new(board.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let usb = line
        .trim()
        .strip_prefix("usb listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from serve.mjs: {line:?}"))
        .to_string();
    let mut stdin = board.stdin.take().unwrap();
    for c in controls {
        writeln!(stdin, "{c}").unwrap();
    }
    let _board = Killed(board);

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["board", "selftest", "--tcp", &usb, "--timeout", "60"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let run = Run {
        passed: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        took: started.elapsed(),
    };
    eprintln!("selftest took {:?}:\n{}", run.took, run.stdout);
    drop(stdin);
    run
}

#[test]
fn a_healthy_emulated_board_passes_every_check() {
    let run = selftest(R1_CHAIN, &[], &[]);
    assert!(run.passed, "{}", run.stdout);
    assert!(run.failed().is_empty(), "{}", run.stdout);
    for name in [
        "i2c 0x4C EMC2101",
        "i2c 0x24 TPS546D24A",
        "i2c 0x40 INA260",
        "i2c other addresses",
        "chain chips",
        "chain chip model",
        "chip temperature",
        "board temperature",
        "regulator temperature",
        "core voltage",
        "input voltage",
    ] {
        assert!(run.line(name).starts_with("PASS"), "{name}: {}", run.stdout);
    }
    assert!(
        run.line("chain chips")
            .contains("seen 1 answer; expected 1")
    );
    assert!(
        run.line("chain chip model")
            .contains("seen 0x1370 (BM1370)")
    );
    assert!(
        run.stdout.contains("all 13 checks passed"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_missing_part_and_a_stray_address_are_named() {
    // The INA260 answers at 0x41 (its straps wrong), and something nobody listed at 0x50.
    let run = selftest(
        R1_CHAIN,
        &["--i2c-address", "ina260=0x41", "--i2c-extra", "0x50"],
        &[],
    );
    assert!(!run.passed, "{}", run.stdout);
    assert!(
        run.line("i2c 0x40 INA260")
            .starts_with("FAIL  i2c 0x40 INA260          seen no answer"),
        "{}",
        run.stdout
    );
    assert!(
        run.line("i2c other addresses")
            .contains("seen 0x41, 0x50 answer; expected only 0x24, 0x40, 0x4C"),
        "{}",
        run.stdout
    );
    // The parts that are where they belong still pass.
    assert!(run.line("i2c 0x4C EMC2101").starts_with("PASS"));
    assert!(run.line("i2c 0x24 TPS546D24A").starts_with("PASS"));
    assert!(
        run.stdout
            .contains("no answer at 0x40 (INA260): check its solder joints and A0/A1 straps"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("0x41 answers where boards/hearth-bm1370-r1.toml lists nothing: probably the INA260 meant for 0x40"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("0x50 answers"), "{}", run.stdout);
}

#[test]
fn a_dead_part_fails_its_address_and_its_readings() {
    // The regulator does not answer at all: no core, no regulator temperature.
    let run = selftest(R1_CHAIN, &["--i2c-absent", "tps546"], &[]);
    assert!(!run.passed, "{}", run.stdout);
    let failed = run.failed();
    assert!(failed.contains(&"i2c 0x24 TPS546D24A"), "{}", run.stdout);
    assert!(failed.contains(&"regulator temperature"), "{}", run.stdout);
    assert!(failed.contains(&"core voltage"), "{}", run.stdout);
    assert!(!failed.contains(&"i2c other addresses"), "{}", run.stdout);
    assert!(
        run.stdout.contains("no answer at 0x24 (TPS546D24A)"),
        "{}",
        run.stdout
    );
}

#[test]
fn readings_out_of_range_fail_with_seen_and_expected() {
    // The chip idles at 80 °C (above the 75 °C throttle point, below shutdown: the board still
    // comes up, throttled) and the supply sags to 4.3 V.
    let run = selftest(
        R1_CHAIN,
        &[],
        &[
            r#"{"cmd":"setExternalTemp","value":80}"#,
            r#"{"cmd":"setInputVolts","value":4.3}"#,
        ],
    );
    assert!(!run.passed, "{}", run.stdout);
    assert!(
        run.line("chip temperature")
            .contains("seen 80.0 °C; expected -20..125 °C, below throttle 75 °C"),
        "{}",
        run.stdout
    );
    assert!(run.line("chip temperature").starts_with("FAIL"));
    assert!(
        run.line("input voltage")
            .starts_with("FAIL  input voltage            seen 4300 mV; expected 4500..=5500 mV"),
        "{}",
        run.stdout
    );
    // The rest of the board is fine, and says so.
    assert!(run.line("i2c 0x40 INA260").starts_with("PASS"));
    assert!(run.line("board temperature").starts_with("PASS"));
    assert!(
        run.stdout
            .contains("the input reads 4300 mV, outside 4500..=5500 mV"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_chain_that_does_not_enumerate_as_defined_fails_with_what_answered() {
    // Two chips where the board has one (a definition that is out of date, or the wrong board).
    let run = selftest(&["--model", "BM1370", "--chips", "2"], &[], &[]);
    assert!(!run.passed, "{}", run.stdout);
    assert!(
        run.line("chain chips").starts_with("FAIL")
            && run.line("chain chips").contains("seen 2 answer")
            && run.line("chain chips").contains("expected 1"),
        "{}",
        run.stdout
    );
    assert!(run.line("chain chip model").starts_with("PASS"));

    // A chip of another model: enumeration stops at it and names its id.
    let run = selftest(&["--model", "BM1368", "--chips", "1"], &[], &[]);
    assert!(!run.passed, "{}", run.stdout);
    assert!(
        run.line("chain chip model")
            .contains("seen 0x1368 (BM1368); expected 0x1370 (BM1370)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the chips are not BM1370"),
        "{}",
        run.stdout
    );
}
