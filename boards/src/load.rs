use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A range with a default.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Smallest allowed.
    pub min: u32,
    /// Largest allowed.
    pub max: u32,
    /// Default.
    pub default: u32,
}

/// One entry of `asics.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Asic {
    /// Chip id in register 0x00.
    pub chip_id: u16,
    /// Hash clock range, MHz.
    pub frequency_mhz: Envelope,
    /// Core voltage range, mV.
    pub core_voltage_mv: Envelope,
    /// Absolute maximum chip temperature, °C.
    pub max_temperature_c: u32,
}

/// `[board]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BoardInfo {
    /// Identifier, equal to the file name without `.toml`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// PCB revision.
    pub revision: u32,
    /// Microcontroller (only "RP2040" for now).
    pub mcu: String,
}

/// `[usb]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Usb {
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Manufacturer string.
    pub manufacturer: String,
    /// Product string.
    pub product: String,
}

/// `[asic]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AsicChain {
    /// Chip model (a key of `asics.toml`).
    pub model: String,
    /// Chips on the chain.
    pub count: u16,
    /// MCU UART instance (0 or 1).
    pub uart: u8,
    /// UART TX GPIO.
    pub tx_pin: u8,
    /// UART RX GPIO.
    pub rx_pin: u8,
    /// Active-low chip reset GPIO.
    pub reset_pin: u8,
    /// Mining baud (115200, 1000000 or 3125000).
    pub baud: u32,
    /// Hash clock, MHz.
    pub frequency_mhz: u32,
    /// Core voltage, mV.
    pub core_voltage_mv: u32,
    /// Chip difficulty (power of two).
    pub ticket_difficulty: u32,
}

/// One I2C device.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct I2cDevice {
    /// Part number.
    pub part: String,
    /// 7-bit address.
    pub address: u8,
    /// What it does on this board.
    pub role: String,
}

/// `[i2c]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct I2c {
    /// MCU I2C instance (0 or 1).
    pub bus: u8,
    /// SDA GPIO.
    pub sda_pin: u8,
    /// SCL GPIO.
    pub scl_pin: u8,
    /// Bus clock, kHz.
    pub frequency_khz: u32,
    /// Devices on the bus.
    pub devices: Vec<I2cDevice>,
}

/// A min/max pair.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Minimum.
    pub min: u32,
    /// Maximum.
    pub max: u32,
}

/// `[power]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Power {
    /// Regulator enable GPIO (high = on).
    pub enable_pin: u8,
    /// Accepted input voltage, mV.
    pub input_voltage_mv: Range,
    /// Input power limit, mW.
    pub max_input_power_mw: u32,
    /// The core regulator's VOUT_SCALE_LOOP, in thousandths (125, 250, 500 or 1000): the
    /// TPS546's internal feedback divider. The hashboard senses the core rail with no divider
    /// of its own (checked against the schematic); the firmware writes this before enabling.
    pub vout_scale_loop_permille: u32,
}

/// `[fan]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fan {
    /// PWM GPIO.
    pub pwm_pin: u8,
    /// PWM frequency, Hz.
    pub pwm_frequency_hz: u32,
    /// Lowest duty the control loop uses, percent.
    pub min_percent: u8,
}

/// `[thermal]`, all in °C except the timeout.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Thermal {
    /// Fan control set point for the chip.
    pub target_asic_c: u32,
    /// Frequency is reduced above this.
    pub throttle_asic_c: u32,
    /// Hashing stops above this.
    pub shutdown_asic_c: u32,
    /// A limit clears this far below it.
    pub hysteresis_c: u32,
    /// Regulator throttle point.
    pub throttle_vr_c: u32,
    /// Regulator shutdown point.
    pub shutdown_vr_c: u32,
    /// Safe state after this long without a message from the host, ms.
    pub host_timeout_ms: u32,
}

/// `[status]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Status LED GPIO.
    pub led_pin: u8,
}

/// `[schematic]`: the KiCad designs a board is built from (`schematics/<design>/`). A test
/// (`boards/tests/schematics.rs`) checks the definition against their committed netlists.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Schematic {
    /// Design names; each has `schematics/<name>/<name>.netlist.xml`.
    pub designs: Vec<String>,
    /// The microcontroller, as `"<design>:<reference>"`.
    pub mcu: String,
    /// Board-to-board connectors mated pin for pin, as `["<design>:<ref>", "<design>:<ref>"]`.
    #[serde(default)]
    pub joins: Vec<[String; 2]>,
}

/// A board definition file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// `[board]`.
    pub board: BoardInfo,
    /// `[usb]`.
    pub usb: Usb,
    /// `[asic]`.
    pub asic: AsicChain,
    /// `[i2c]`.
    pub i2c: I2c,
    /// `[power]`.
    pub power: Power,
    /// `[fan]`.
    pub fan: Fan,
    /// `[thermal]`.
    pub thermal: Thermal,
    /// `[status]`.
    pub status: Status,
    /// `[schematic]`, for boards drawn in this repository.
    #[serde(default)]
    pub schematic: Option<Schematic>,
}

/// Why a board definition was refused; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardError {
    /// File.
    pub file: PathBuf,
    /// Problems found (all of them, not just the first).
    pub problems: Vec<String>,
}

impl std::fmt::Display for BoardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.file.display())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BoardError {}

/// The chip envelopes, from `asics.toml`.
pub fn load_asics(path: &Path) -> Result<BTreeMap<String, Asic>, BoardError> {
    let text = std::fs::read_to_string(path).map_err(|e| BoardError {
        file: path.to_path_buf(),
        problems: vec![e.to_string()],
    })?;
    toml::from_str(&text).map_err(|e| BoardError {
        file: path.to_path_buf(),
        problems: vec![e.to_string()],
    })
}

/// RP2040 UART pin functions (RP2040 datasheet §2.19.2, GPIO function table, F2): UART0 on
/// GPIO 0-3, 12-19, 28-29; UART1 on 4-11, 20-27; TX on n % 4 == 0, RX on n % 4 == 1.
fn rp2040_uart(pin: u8) -> Option<(u8, bool)> {
    if pin > 29 {
        return None;
    }
    let instance = ((pin + 4) / 8) % 2;
    match pin % 4 {
        0 => Some((instance, true)),
        1 => Some((instance, false)),
        _ => None,
    }
}

/// RP2040 I2C pin functions (same table, F3): I2C0 on GPIO 0/1, 4/5, 8/9 ...; I2C1 on 2/3,
/// 6/7, 10/11 ...; even = SDA, odd = SCL.
fn rp2040_i2c(pin: u8) -> Option<(u8, bool)> {
    if pin > 29 {
        return None;
    }
    let instance = (pin / 2) % 2;
    Some((instance, pin.is_multiple_of(2)))
}

/// The output range the TPS546D24A's internal divider allows for each VOUT_SCALE_LOOP
/// setting, mV: VOUT = VREF / VOUT_SCALE_LOOP, with the reference DAC at 0.25-0.75 V, capped at
/// the device's 5.5 V maximum output. Sources (TI): the TPS546D24S datasheet (SLUSF26, built on
/// the TPS546D24A, same control loop), Features: "PMBus VOUT_COMMAND range 0.25 V to 5.5 V";
/// its VOUT_MAX (24h) description: VOUT "limited by reference DAC range of 0.75 V /
/// VOUT_SCALE_LOOP"; TPS546C25/E25 (SLVSH95) §"Set the Output Voltage": the reference DAC input
/// "can be in the range of 0.25V to 0.75V", dividers 1, 0.5, 0.25, 0.125. So 1 → 0.25-0.75 V,
/// 0.5 → 0.5-1.5 V, 0.25 → 1-3 V, 0.125 → 2-5.5 V (VREF/0.125 would reach 6 V; the device
/// stops at 5.5 V).
fn vout_scale_loop_range_mv(permille: u32) -> Option<(u32, u32)> {
    /// Reference DAC range, mV.
    const VREF_MV: (u32, u32) = (250, 750);
    /// The TPS546D24A's highest output voltage, mV.
    const VOUT_MAX_MV: u32 = 5500;
    if !matches!(permille, 125 | 250 | 500 | 1000) {
        return None;
    }
    let lo = VREF_MV.0 * 1000 / permille;
    let hi = (VREF_MV.1 * 1000 / permille).min(VOUT_MAX_MV);
    Some((lo, hi))
}

/// The input voltage below which the TPS546D24A stops converting (VIN_OFF, written by
/// `hearth_board::tps546::Config::single_chip`, ESP-Miner's single-chip value, as in
/// docs/bm13xx-protocol.md §9.3), mV. It starts again only above VIN_ON (4.8 V, applied in
/// 0.25 V steps as 4.75 V: SLUSF26, VIN_ON (35h)). A board whose input minimum were lower would
/// see its core cut out with no "input low" from the firmware, whose limit lies below.
pub const TPS546_VIN_OFF_MV: u32 = 4500;

/// Parts the firmware has drivers for, with the addresses their strap options allow.
const KNOWN_PARTS: &[(&str, &[u8])] = &[
    // Fixed (EMC2101 datasheet: SMBus address 0x4C for the -R variant).
    ("EMC2101", &[0x4C]),
    // ADRSEL (TPS546D24S datasheet SLUSF26 §7.5.2.4, the TPS546D24A's pin strapping): shorted
    // to AGND 0x7F; open, the address in NVM (0x24 from the factory); a resistor to AGND
    // (codes 0-15) gives 0x10-0x1F or, with the divider codes of the 32-47 range, 0x20-0x2F,
    // except code 8 there, which gives 0x48 (72d) instead of 0x28.
    (
        "TPS546D24A",
        &[
            0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D,
            0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x29, 0x2A, 0x2B, 0x2C,
            0x2D, 0x2E, 0x2F, 0x48, 0x7F,
        ],
    ),
    // INA260 datasheet table 2: A1 and A0 each to GND, VS, SDA or SCL: 0x40 + 4·A1 + A0.
    (
        "INA260",
        &[
            0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F,
        ],
    ),
];

/// The 7-bit addresses a part's strap options allow; `None` for a part without a driver.
pub fn strap_addresses(part: &str) -> Option<&'static [u8]> {
    KNOWN_PARTS
        .iter()
        .find(|(known, _)| *known == part)
        .map(|(_, addresses)| *addresses)
}

impl Board {
    /// Parse and validate `path` against the envelopes in `asics`.
    pub fn load(path: &Path, asics: &BTreeMap<String, Asic>) -> Result<Board, BoardError> {
        let fail = |p: String| BoardError {
            file: path.to_path_buf(),
            problems: vec![p],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let board: Board =
            toml::from_str(&text).map_err(|e| fail(e.to_string().trim_end().to_string()))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let mut problems = board.problems(asics);
        if board.board.id != stem {
            problems.push(format!(
                "board.id {:?} must equal the file name {stem:?}",
                board.board.id
            ));
        }
        if problems.is_empty() {
            Ok(board)
        } else {
            Err(BoardError {
                file: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Everything wrong with this definition (empty = valid).
    pub fn problems(&self, asics: &BTreeMap<String, Asic>) -> Vec<String> {
        let mut p = Vec::new();
        if self.board.mcu != "RP2040" {
            p.push(format!(
                "board.mcu {:?}: only RP2040 is supported",
                self.board.mcu
            ));
        }
        // Pins: each used once, each able to do its job.
        let mut pins: HashMap<u8, &str> = HashMap::new();
        let mut claim = |pin: u8, what: &'static str, p: &mut Vec<String>| {
            if pin > 29 {
                p.push(format!("{what} = {pin}: the RP2040 has GPIO 0..=29"));
            }
            if let Some(other) = pins.insert(pin, what) {
                p.push(format!("GPIO {pin} is used twice: {other} and {what}"));
            }
        };
        let a = &self.asic;
        claim(a.tx_pin, "asic.tx_pin", &mut p);
        claim(a.rx_pin, "asic.rx_pin", &mut p);
        claim(a.reset_pin, "asic.reset_pin", &mut p);
        claim(self.i2c.sda_pin, "i2c.sda_pin", &mut p);
        claim(self.i2c.scl_pin, "i2c.scl_pin", &mut p);
        claim(self.power.enable_pin, "power.enable_pin", &mut p);
        claim(self.fan.pwm_pin, "fan.pwm_pin", &mut p);
        claim(self.status.led_pin, "status.led_pin", &mut p);
        if rp2040_uart(a.tx_pin) != Some((a.uart, true)) {
            p.push(format!(
                "asic.tx_pin = {}: not a TX pin of UART{}",
                a.tx_pin, a.uart
            ));
        }
        if rp2040_uart(a.rx_pin) != Some((a.uart, false)) {
            p.push(format!(
                "asic.rx_pin = {}: not an RX pin of UART{}",
                a.rx_pin, a.uart
            ));
        }
        let i = &self.i2c;
        if rp2040_i2c(i.sda_pin) != Some((i.bus, true)) {
            p.push(format!(
                "i2c.sda_pin = {}: not an SDA pin of I2C{}",
                i.sda_pin, i.bus
            ));
        }
        if rp2040_i2c(i.scl_pin) != Some((i.bus, false)) {
            p.push(format!(
                "i2c.scl_pin = {}: not an SCL pin of I2C{}",
                i.scl_pin, i.bus
            ));
        }
        if !(10..=1000).contains(&i.frequency_khz) {
            p.push(format!(
                "i2c.frequency_khz = {}: 10..=1000",
                i.frequency_khz
            ));
        }
        // I2C addresses: unique, 7-bit, and possible for the part.
        let mut addresses: HashMap<u8, &str> = HashMap::new();
        for d in &i.devices {
            if d.address > 0x77 || d.address < 0x08 {
                // I2C-bus specification (NXP UM10204) table 4: 0000xxx and 1111xxx are
                // reserved; the self-test's scan does not probe them either.
                p.push(format!(
                    "i2c device {} at 0x{:02X}: not a usable 7-bit address (0x00-0x07 and \
                     0x78-0x7F are reserved)",
                    d.part, d.address
                ));
            }
            if let Some(other) = addresses.insert(d.address, &d.part) {
                p.push(format!(
                    "i2c address 0x{:02X} is used by both {other} and {}",
                    d.address, d.part
                ));
            }
            match KNOWN_PARTS.iter().find(|(part, _)| *part == d.part) {
                None => p.push(format!(
                    "i2c device part {:?} has no driver (EMC2101, TPS546D24A, INA260)",
                    d.part
                )),
                Some((_, allowed)) if !allowed.contains(&d.address) => p.push(format!(
                    "{} cannot be at 0x{:02X} (its straps allow {allowed:02X?})",
                    d.part, d.address
                )),
                _ => {}
            }
        }
        for required in ["EMC2101", "TPS546D24A"] {
            if !i.devices.iter().any(|d| d.part == required) {
                p.push(format!(
                    "the firmware needs a {required} on the I2C bus for temperature and core power"
                ));
            }
        }
        // The regulator's internal divider must put the chip's whole envelope in range.
        if let Some((min, max)) = vout_scale_loop_range_mv(self.power.vout_scale_loop_permille) {
            if let Some(env) = asics.get(&a.model) {
                let v = env.core_voltage_mv;
                if v.min < min || v.max > max {
                    p.push(format!(
                        "power.vout_scale_loop_permille = {}: the TPS546 regulates {min}..={max} mV \
                         with it, but {} needs {}..={} mV",
                        self.power.vout_scale_loop_permille, a.model, v.min, v.max
                    ));
                }
            }
        } else {
            p.push(format!(
                "power.vout_scale_loop_permille = {}: one of 125, 250, 500, 1000",
                self.power.vout_scale_loop_permille
            ));
        }
        // The chain and its envelope.
        if a.model == "BM1397" {
            // The board firmware sends full-header jobs only (no midstates on the RP2040).
            p.push(
                "asic.model BM1397 needs midstate jobs, which the board firmware does not build: \
                 use BM1366, BM1368 or BM1370, or drive a BM1397 chain from the host through a \
                 USB-UART adapter ([[device]] kind = \"serial\")"
                    .to_string(),
            );
        }
        match asics.get(&a.model) {
            None => p.push(format!("asic.model {:?} is not in asics.toml", a.model)),
            Some(env) => {
                let f = env.frequency_mhz;
                if !(f.min..=f.max).contains(&a.frequency_mhz) {
                    p.push(format!(
                        "asic.frequency_mhz = {} outside the {} envelope {}..={}",
                        a.frequency_mhz, a.model, f.min, f.max
                    ));
                }
                let v = env.core_voltage_mv;
                if !(v.min..=v.max).contains(&a.core_voltage_mv) {
                    p.push(format!(
                        "asic.core_voltage_mv = {} outside the {} envelope {}..={}",
                        a.core_voltage_mv, a.model, v.min, v.max
                    ));
                }
                let t = &self.thermal;
                if t.shutdown_asic_c > env.max_temperature_c {
                    p.push(format!(
                        "thermal.shutdown_asic_c = {} above the {} maximum {}",
                        t.shutdown_asic_c, a.model, env.max_temperature_c
                    ));
                }
            }
        }
        if a.count == 0 || a.count > 256 {
            p.push(format!("asic.count = {}: 1..=256", a.count));
        }
        if bm13xx::model::ChainBaud::from_nominal(a.baud).is_none() {
            p.push(format!(
                "asic.baud = {}: {}",
                a.baud,
                bm13xx::model::ChainBaud::ACCEPTED
            ));
        }
        if !a.ticket_difficulty.is_power_of_two() {
            p.push(format!(
                "asic.ticket_difficulty = {}: a power of two",
                a.ticket_difficulty
            ));
        }
        let t = &self.thermal;
        if !(t.target_asic_c < t.throttle_asic_c && t.throttle_asic_c < t.shutdown_asic_c) {
            p.push("thermal: need target_asic_c < throttle_asic_c < shutdown_asic_c".into());
        }
        if t.throttle_vr_c >= t.shutdown_vr_c {
            p.push("thermal: need throttle_vr_c < shutdown_vr_c".into());
        }
        if t.hysteresis_c == 0 || t.hysteresis_c >= t.throttle_asic_c {
            p.push(format!(
                "thermal.hysteresis_c = {}: must be positive and below the throttle point",
                t.hysteresis_c
            ));
        }
        if t.host_timeout_ms < 1000 {
            p.push(format!(
                "thermal.host_timeout_ms = {}: at least 1000",
                t.host_timeout_ms
            ));
        }
        if self.fan.min_percent > 100 {
            p.push(format!(
                "fan.min_percent = {}: 0..=100",
                self.fan.min_percent
            ));
        }
        let input = self.power.input_voltage_mv;
        if input.min >= input.max {
            p.push("power.input_voltage_mv: min must be below max".into());
        }
        if i.devices.iter().any(|d| d.part == "TPS546D24A") && input.min < TPS546_VIN_OFF_MV {
            p.push(format!(
                "power.input_voltage_mv.min = {}: below {TPS546_VIN_OFF_MV} mV, the input at \
                 which the TPS546D24A stops (VIN_OFF); the core would cut out with no \
                 \"input low\" from the firmware",
                input.min
            ));
        }
        p
    }

    /// Rust source with every value as a `pub const` (for the firmware's `build.rs`).
    pub fn to_rust_consts(&self, asic: &Asic) -> String {
        let mut s =
            String::from("// Generated from the board definition by hearth-boards; do not edit.\n");
        let mut c = |name: &str, ty: &str, value: String| {
            let _ = writeln!(s, "pub const {name}: {ty} = {value};");
        };
        c("BOARD_ID", "&str", format!("{:?}", self.board.id));
        c("BOARD_NAME", "&str", format!("{:?}", self.board.name));
        c("USB_VID", "u16", format!("0x{:04X}", self.usb.vid));
        c("USB_PID", "u16", format!("0x{:04X}", self.usb.pid));
        c(
            "USB_MANUFACTURER",
            "&str",
            format!("{:?}", self.usb.manufacturer),
        );
        c("USB_PRODUCT", "&str", format!("{:?}", self.usb.product));
        c("ASIC_CHIP_ID", "u16", format!("0x{:04X}", asic.chip_id));
        c("ASIC_COUNT", "u16", self.asic.count.to_string());
        c("ASIC_UART", "u8", self.asic.uart.to_string());
        c("ASIC_TX_PIN", "u8", self.asic.tx_pin.to_string());
        c("ASIC_RX_PIN", "u8", self.asic.rx_pin.to_string());
        c("ASIC_RESET_PIN", "u8", self.asic.reset_pin.to_string());
        c("ASIC_BAUD", "u32", self.asic.baud.to_string());
        c(
            "ASIC_FREQUENCY_KHZ",
            "u32",
            (self.asic.frequency_mhz * 1000).to_string(),
        );
        c(
            "ASIC_MIN_FREQUENCY_KHZ",
            "u32",
            (asic.frequency_mhz.min * 1000).to_string(),
        );
        c(
            "ASIC_MAX_FREQUENCY_KHZ",
            "u32",
            (asic.frequency_mhz.max * 1000).to_string(),
        );
        c(
            "CORE_VOLTAGE_MV",
            "u32",
            self.asic.core_voltage_mv.to_string(),
        );
        c(
            "CORE_VOLTAGE_MIN_MV",
            "u32",
            asic.core_voltage_mv.min.to_string(),
        );
        c(
            "CORE_VOLTAGE_MAX_MV",
            "u32",
            asic.core_voltage_mv.max.to_string(),
        );
        c(
            "TICKET_DIFFICULTY",
            "u32",
            self.asic.ticket_difficulty.to_string(),
        );
        c("I2C_BUS", "u8", self.i2c.bus.to_string());
        c("I2C_SDA_PIN", "u8", self.i2c.sda_pin.to_string());
        c("I2C_SCL_PIN", "u8", self.i2c.scl_pin.to_string());
        c(
            "I2C_FREQUENCY_HZ",
            "u32",
            (self.i2c.frequency_khz * 1000).to_string(),
        );
        for part in ["EMC2101", "TPS546D24A", "INA260"] {
            let address = self
                .i2c
                .devices
                .iter()
                .find(|d| d.part == part)
                .map(|d| d.address);
            let value = address.map_or("None".to_string(), |a| format!("Some(0x{a:02X})"));
            c(&format!("{part}_ADDRESS"), "Option<u8>", value);
        }
        c("POWER_ENABLE_PIN", "u8", self.power.enable_pin.to_string());
        c(
            "VOUT_SCALE_LOOP_PERMILLE",
            "u32",
            self.power.vout_scale_loop_permille.to_string(),
        );
        c(
            "INPUT_MIN_MV",
            "u32",
            self.power.input_voltage_mv.min.to_string(),
        );
        c(
            "INPUT_MAX_MV",
            "u32",
            self.power.input_voltage_mv.max.to_string(),
        );
        c(
            "MAX_INPUT_POWER_MW",
            "u32",
            self.power.max_input_power_mw.to_string(),
        );
        c("FAN_PWM_PIN", "u8", self.fan.pwm_pin.to_string());
        c(
            "FAN_PWM_FREQUENCY_HZ",
            "u32",
            self.fan.pwm_frequency_hz.to_string(),
        );
        c("FAN_MIN_PERCENT", "u8", self.fan.min_percent.to_string());
        let t = &self.thermal;
        c(
            "TARGET_ASIC_MC",
            "i32",
            (t.target_asic_c * 1000).to_string(),
        );
        c(
            "THROTTLE_ASIC_MC",
            "i32",
            (t.throttle_asic_c * 1000).to_string(),
        );
        c(
            "SHUTDOWN_ASIC_MC",
            "i32",
            (t.shutdown_asic_c * 1000).to_string(),
        );
        c("HYSTERESIS_MC", "i32", (t.hysteresis_c * 1000).to_string());
        c(
            "THROTTLE_VR_MC",
            "i32",
            (t.throttle_vr_c * 1000).to_string(),
        );
        c(
            "SHUTDOWN_VR_MC",
            "i32",
            (t.shutdown_vr_c * 1000).to_string(),
        );
        c("HOST_TIMEOUT_MS", "u32", t.host_timeout_ms.to_string());
        c("LED_PIN", "u8", self.status.led_pin.to_string());
        s
    }
}

/// Board definitions compiled into this crate (so a deployed daemon knows every board's USB
/// identity without the repository at hand).
pub const BUILTIN_BOARDS: &[(&str, &str)] =
    &[("hearth-bm1370-r1", include_str!("../hearth-bm1370-r1.toml"))];

/// USB identities (VID, PID, board id) of the built-in boards.
pub fn builtin_usb_ids() -> Vec<(u16, u16, String)> {
    BUILTIN_BOARDS
        .iter()
        .filter_map(|(id, text)| {
            toml::from_str::<Board>(text)
                .ok()
                .map(|b| (b.usb.vid, b.usb.pid, id.to_string()))
        })
        .collect()
}

/// The directory holding the board files of this repository.
pub fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every `*.toml` board definition in `dir` (all but `asics.toml`), validated.
pub fn load_all(dir: &Path) -> Result<Vec<Board>, BoardError> {
    let asics = load_asics(&dir.join("asics.toml"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| BoardError {
            file: dir.to_path_buf(),
            problems: vec![e.to_string()],
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .is_some_and(|n| n != "asics.toml" && n != "Cargo.toml")
        })
        .collect();
    files.sort();
    files.iter().map(|f| Board::load(f, &asics)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asics() -> BTreeMap<String, Asic> {
        load_asics(&boards_dir().join("asics.toml")).unwrap()
    }

    #[test]
    fn every_board_in_the_repository_is_valid() {
        let boards = load_all(&boards_dir()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!boards.is_empty());
    }

    fn with(edit: impl FnOnce(&mut Board)) -> Vec<String> {
        let mut board = Board::load(&boards_dir().join("hearth-bm1370-r1.toml"), &asics()).unwrap();
        edit(&mut board);
        board.problems(&asics())
    }

    #[test]
    fn mistakes_are_named() {
        let p = with(|b| b.fan.pwm_pin = 8);
        assert!(
            p.iter()
                .any(|p| p.contains("GPIO 8 is used twice: asic.tx_pin and fan.pwm_pin")),
            "{p:?}"
        );
        let p = with(|b| b.asic.tx_pin = 6);
        assert!(
            p.iter().any(|p| p.contains("not a TX pin of UART1")),
            "{p:?}"
        );
        let p = with(|b| b.i2c.devices[2].address = 0x4C);
        assert!(
            p.iter()
                .any(|p| p.contains("0x4C is used by both EMC2101 and INA260")),
            "{p:?}"
        );
        let p = with(|b| b.asic.model = "BM1397".to_string());
        assert!(
            p.iter().any(|p| p.contains("BM1397 needs midstate jobs")),
            "{p:?}"
        );
        let p = with(|b| b.asic.frequency_mhz = 900);
        assert!(
            p.iter().any(|p| p.contains("outside the BM1370 envelope")),
            "{p:?}"
        );
        let p = with(|b| b.asic.core_voltage_mv = 1500);
        assert!(p.iter().any(|p| p.contains("core_voltage_mv")), "{p:?}");
        let p = with(|b| b.thermal.throttle_asic_c = 90);
        assert!(
            p.iter()
                .any(|p| p.contains("target_asic_c < throttle_asic_c < shutdown_asic_c")),
            "{p:?}"
        );
        let p = with(|b| b.thermal.shutdown_asic_c = 95);
        assert!(
            p.iter().any(|p| p.contains("above the BM1370 maximum")),
            "{p:?}"
        );
        let p = with(|b| b.asic.model = "BM9999".into());
        assert!(p.iter().any(|p| p.contains("not in asics.toml")), "{p:?}");
        let p = with(|b| b.i2c.devices.retain(|d| d.part != "TPS546D24A"));
        assert!(p.iter().any(|p| p.contains("needs a TPS546D24A")), "{p:?}");
        let p = with(|b| b.power.vout_scale_loop_permille = 300);
        assert!(
            p.iter().any(|p| p.contains("one of 125, 250, 500, 1000")),
            "{p:?}"
        );
        // 0.5 regulates 0.5-1.5 V: the BM1370's 1.0-1.3 V fits; 1.0 (0.25-0.75 V) does not.
        assert!(with(|b| b.power.vout_scale_loop_permille = 500).is_empty());
        let p = with(|b| b.power.vout_scale_loop_permille = 1000);
        assert!(
            p.iter().any(|p| p.contains(
                "the TPS546 regulates 250..=750 mV with it, but BM1370 needs 1000..=1300 mV"
            )),
            "{p:?}"
        );
        let p = with(|b| b.power.input_voltage_mv.min = 4400);
        assert!(
            p.iter().any(|p| p
                .contains("power.input_voltage_mv.min = 4400: below 4500 mV, the input at which")),
            "{p:?}"
        );
        // A board without the TPS546 is not held to its cut-out.
        let p = with(|b| {
            b.power.input_voltage_mv.min = 4400;
            b.i2c.devices.retain(|d| d.part != "TPS546D24A");
        });
        assert!(!p.iter().any(|p| p.contains("VIN_OFF")), "{p:?}");
        let p = with(|b| b.i2c.devices[1].address = 0x7F);
        assert!(
            p.iter().any(|p| p.contains(
                "i2c device TPS546D24A at 0x7F: not a usable 7-bit address (0x00-0x07 and \
                 0x78-0x7F are reserved)"
            )),
            "{p:?}"
        );
        assert!(!p.iter().any(|p| p.contains("cannot be at")), "{p:?}");
        let p = with(|b| b.i2c.devices[1].address = 0x28);
        assert!(
            p.iter()
                .any(|p| p.contains("TPS546D24A cannot be at 0x28 (its straps allow")),
            "{p:?}"
        );
    }

    #[test]
    fn vout_scale_loop_ranges_follow_the_reference_dac() {
        // VREF 0.25-0.75 V divided by the setting, capped at the device's 5.5 V.
        assert_eq!(vout_scale_loop_range_mv(1000), Some((250, 750)));
        assert_eq!(vout_scale_loop_range_mv(500), Some((500, 1500)));
        assert_eq!(vout_scale_loop_range_mv(250), Some((1000, 3000)));
        assert_eq!(vout_scale_loop_range_mv(125), Some((2000, 5500)));
        assert_eq!(vout_scale_loop_range_mv(0), None);
        assert_eq!(vout_scale_loop_range_mv(300), None);
    }

    #[test]
    fn strap_addresses_are_those_of_the_datasheets() {
        let tps: Vec<u8> = (0x10..=0x27)
            .chain(0x29..=0x2F)
            .chain([0x48, 0x7F])
            .collect();
        assert_eq!(strap_addresses("TPS546D24A"), Some(tps.as_slice()));
        let ina: Vec<u8> = (0x40..=0x4F).collect();
        assert_eq!(strap_addresses("INA260"), Some(ina.as_slice()));
        assert_eq!(strap_addresses("EMC2101"), Some([0x4C].as_slice()));
        assert_eq!(strap_addresses("LM75"), None);
    }

    #[test]
    fn rp2040_pin_functions() {
        assert_eq!(rp2040_uart(0), Some((0, true)));
        assert_eq!(rp2040_uart(5), Some((1, false)));
        assert_eq!(rp2040_uart(8), Some((1, true)));
        assert_eq!(rp2040_uart(13), Some((0, false)));
        assert_eq!(rp2040_uart(20), Some((1, true)));
        assert_eq!(rp2040_uart(28), Some((0, true)));
        assert_eq!(rp2040_uart(10), None);
        assert_eq!(rp2040_i2c(14), Some((1, true)));
        assert_eq!(rp2040_i2c(15), Some((1, false)));
        assert_eq!(rp2040_i2c(4), Some((0, true)));
    }

    #[test]
    fn builtin_boards_match_the_files() {
        let files = load_all(&boards_dir()).unwrap();
        assert_eq!(
            files.len(),
            BUILTIN_BOARDS.len(),
            "add new boards to BUILTIN_BOARDS"
        );
        assert_eq!(
            builtin_usb_ids(),
            vec![(0x1209, 0x0001, "hearth-bm1370-r1".to_string())]
        );
    }

    #[test]
    fn consts_are_generated() {
        let board = Board::load(&boards_dir().join("hearth-bm1370-r1.toml"), &asics()).unwrap();
        let code = board.to_rust_consts(&asics()["BM1370"]);
        assert!(code.contains("pub const ASIC_TX_PIN: u8 = 8;"));
        assert!(code.contains("pub const EMC2101_ADDRESS: Option<u8> = Some(0x4C);"));
        assert!(code.contains("pub const USB_VID: u16 = 0x1209;"));
    }
}
