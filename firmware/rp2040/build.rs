//! Bake the board definition into the image: `boards/$HEARTH_BOARD.toml`, validated against
//! `boards/asics.toml`, becomes constants and pin-selection macros in `$OUT_DIR/board.rs`.
//! A board file with a pin used twice or a limit outside the chip's envelope fails the build
//! with the list of problems.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let boards = manifest.join("../../boards");
    let board_id = std::env::var("HEARTH_BOARD").unwrap_or_else(|_| "hearth-bm1370-r1".into());
    let path = boards.join(format!("{board_id}.toml"));
    println!("cargo:rerun-if-env-changed=HEARTH_BOARD");
    println!("cargo:rerun-if-env-changed=HEARTH_SERIAL");
    println!("cargo:rerun-if-changed={}", path.display());
    println!(
        "cargo:rerun-if-changed={}",
        boards.join("asics.toml").display()
    );
    println!("cargo:rerun-if-changed=memory.x");

    let asics = match hearth_boards::load_asics(&boards.join("asics.toml")) {
        Ok(a) => a,
        Err(e) => fail(&e.to_string()),
    };
    let board = match hearth_boards::Board::load(&path, &asics) {
        Ok(b) => b,
        Err(e) => fail(&e.to_string()),
    };
    let Some(asic) = asics.get(&board.asic.model) else {
        fail("asic model missing from asics.toml")
    };
    let mut code = board.to_rust_consts(asic);
    // Typed pins and peripheral instances for embassy-rp, chosen by macro.
    let mut m = |name: &str, body: String| {
        let _ = writeln!(
            code,
            "macro_rules! {name} {{ ($p:ident) => {{ $p.{body} }} }}"
        );
    };
    m("asic_uart", format!("UART{}", board.asic.uart));
    m("asic_tx_pin", format!("PIN_{}", board.asic.tx_pin));
    m("asic_rx_pin", format!("PIN_{}", board.asic.rx_pin));
    m("asic_reset_pin", format!("PIN_{}", board.asic.reset_pin));
    m("i2c_bus", format!("I2C{}", board.i2c.bus));
    m("i2c_sda_pin", format!("PIN_{}", board.i2c.sda_pin));
    m("i2c_scl_pin", format!("PIN_{}", board.i2c.scl_pin));
    m(
        "power_enable_pin",
        format!("PIN_{}", board.power.enable_pin),
    );
    m("fan_pwm_pin", format!("PIN_{}", board.fan.pwm_pin));
    // RP2040: GPIO n drives PWM slice (n / 2) % 8, channel A on even pins.
    m(
        "fan_pwm_slice",
        format!("PWM_SLICE{}", (board.fan.pwm_pin / 2) % 8),
    );
    m("led_pin", format!("PIN_{}", board.status.led_pin));
    let _ = writeln!(
        code,
        "pub const FAN_PWM_CHANNEL_A: bool = {};",
        board.fan.pwm_pin % 2 == 0
    );
    let _ = writeln!(
        code,
        "macro_rules! asic_uart_irq {{ () => {{ embassy_rp::interrupt::typelevel::UART{}_IRQ }} }}",
        board.asic.uart
    );
    let _ = writeln!(
        code,
        "macro_rules! i2c_irq {{ () => {{ embassy_rp::interrupt::typelevel::I2C{}_IRQ }} }}",
        board.i2c.bus
    );
    let _ = writeln!(
        code,
        "pub type AsicUart = embassy_rp::peripherals::UART{};",
        board.asic.uart
    );
    let _ = writeln!(
        code,
        "pub type I2cBus = embassy_rp::peripherals::I2C{};",
        board.i2c.bus
    );
    let _ = writeln!(code, "pub const ASIC_MODEL: &str = {:?};", board.asic.model);
    let serial = std::env::var("HEARTH_SERIAL").unwrap_or_default();
    let _ = writeln!(code, "pub const BUILD_SERIAL: &str = {serial:?};");
    if let Err(e) = std::fs::write(out.join("board.rs"), code) {
        fail(&format!("writing board.rs: {e}"));
    }
    if let Err(e) = std::fs::copy(manifest.join("memory.x"), out.join("memory.x")) {
        fail(&format!("copying memory.x: {e}"));
    }
    println!("cargo:rustc-link-search={}", out.display());
}

fn fail(message: &str) -> ! {
    eprintln!("error: invalid board definition: {message}");
    std::process::exit(1);
}
