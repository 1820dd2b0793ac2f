//! `hearth board selftest`: the bring-up check for a freshly assembled board.
//!
//! The board is asked over the link (docs/link-protocol.md) who answers on its I²C bus
//! (`ScanI2c`) and what its last chain bring-up found (`GetEnumeration`), and its telemetry is
//! read once the chain has come up (or plainly will not). Those observations are then judged
//! against the board's definition (`boards/<id>.toml`) by [`judge`], a pure function, so every
//! verdict is unit-tested without hardware. One line per check, then a summary that says what
//! to look at; the process exits non-zero unless every check passed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bm13xx::ChipModel;
use hearth_boards::Board;
use hearth_link::{
    BoardState, BoardToHost, Capabilities, Enumeration, Fault, FrameDecoder, HostToBoard, I2cScan,
    MAX_FRAME, Telemetry, encode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Temperatures outside this range (°C) are not physical for a board on a bench: a sensor, its
/// wiring or its conversion is wrong, whatever the limits say.
pub const PLAUSIBLE_C: (i32, i32) = (-20, 125);
/// How far the measured core voltage may be from the board's `core_voltage_mv`, per mille. The
/// chips idle during the test (no work is sent), so there is no load droop to allow for; the
/// firmware's own power-on bound (90..105 %) is for refusing to run, this is for finding a
/// wrong feedback divider or a sagging rail before it costs hash rate.
pub const CORE_TOLERANCE_PERMILLE: u32 = 50;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The board stops on a silent host after `host_timeout_ms` (10 s on r1): ping well within it.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Telemetry frames (one a second) to see after the scan before the readings count as fresh.
const FRESH_TELEMETRY: u32 = 2;
/// Telemetry frames in the safe state before the test stops waiting for a bring-up.
const SAFE_TELEMETRY: u32 = 3;

/// `hearth board selftest` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SelftestArgs {
    /// The board's serial port (default: the one Hearth board on USB).
    #[arg(long, conflicts_with = "tcp")]
    pub port: Option<PathBuf>,
    /// Choose the board on USB with this serial number (when several are plugged in).
    #[arg(long, conflicts_with = "port")]
    pub serial: Option<String>,
    /// An emulated board's USB over TCP (firmware/emu/bin/serve.mjs --usb-listen).
    #[arg(long)]
    pub tcp: Option<String>,
    /// Board definition to check against, instead of boards/<id>.toml for the id the board
    /// reports.
    #[arg(long)]
    pub board: Option<PathBuf>,
    /// Longest wait, in seconds, for the chain to come up and the sensors to settle.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// What the board said during the test.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Its `Hello`.
    pub caps: Capabilities,
    /// The I²C scan; `None` when the board did not answer the request (older firmware).
    pub scan: Option<I2cScan>,
    /// The last chain bring-up; `None` when the board did not answer the request.
    pub enumeration: Option<Enumeration>,
    /// The latest telemetry.
    pub telemetry: Option<Telemetry>,
    /// Faults the board reported while the test ran.
    pub faults: Vec<Fault>,
}

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. "i2c 0x40 INA260".
    pub name: String,
    /// Whether it passed.
    pub pass: bool,
    /// What the board showed.
    pub seen: String,
    /// What the board definition (or physics) wants.
    pub expected: String,
    /// On a failure: what to look at.
    pub advice: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, pass: bool, seen: String, expected: String) -> Check {
        Check {
            name: name.into(),
            pass,
            seen,
            expected,
            advice: None,
        }
    }

    fn advise(mut self, advice: impl Into<String>) -> Check {
        if !self.pass {
            self.advice = Some(advice.into());
        }
        self
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  {:<24} seen {}; expected {}",
            if self.pass { "PASS" } else { "FAIL" },
            self.name,
            self.seen,
            self.expected
        )
    }
}

/// Where a part's address comes from, for the advice on a part that does not answer.
fn address_hint(part: &str) -> &'static str {
    match part {
        "INA260" => "its solder joints and A0/A1 straps",
        "TPS546D24A" => "its solder joints, its ADRSEL resistor and its VDD5/BP1V5 supply",
        "EMC2101" => "its solder joints and its 3.3 V supply (its address is fixed)",
        _ => "its solder joints and address straps",
    }
}

/// What sets a part's address.
fn strap_name(part: &str) -> &'static str {
    match part {
        "INA260" => "its A0/A1 straps",
        "TPS546D24A" => "its ADRSEL resistor",
        _ => "its address straps",
    }
}

fn hex_list(addresses: &[u8]) -> String {
    if addresses.is_empty() {
        return "none".to_string();
    }
    addresses
        .iter()
        .map(|a| format!("0x{a:02X}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn celsius(mc: i32) -> String {
    format!("{:.1} °C", f64::from(mc) / 1000.0)
}

fn chip_name(id: u16) -> String {
    ChipModel::from_chip_id(id).map_or_else(|| format!("0x{id:04X} (unknown)"), |m| m.to_string())
}

/// Every check of `board` against what the board showed, in the order they are printed.
pub fn judge(board: &Board, obs: &Observation) -> Vec<Check> {
    let mut checks = Vec::new();
    let id = &board.board.id;
    let model = ChipModel::from_name(&board.asic.model);
    let expected_chip_id = model.map(ChipModel::chip_id);

    // The firmware must be built for this definition: it enumerates and limits by its own copy.
    let firmware_model = ChipModel::from_chip_id(obs.caps.chip_id);
    checks.push(
        Check::new(
            "firmware",
            obs.caps.board == id.as_str()
                && obs.caps.chip_count == board.asic.count
                && Some(obs.caps.chip_id) == expected_chip_id,
            format!(
                "built for {}, {} × {}",
                obs.caps.board,
                obs.caps.chip_count,
                firmware_model.map_or_else(|| chip_name(obs.caps.chip_id), |m| m.to_string())
            ),
            format!("{id}, {} × {}", board.asic.count, board.asic.model),
        )
        .advise(format!(
            "the board runs firmware built for another definition: build it for this one \
             (HEARTH_BOARD={id} scripts/firmware.sh) and flash it, or pass --board with the \
             definition the firmware was built from"
        )),
    );

    checks.extend(judge_i2c(board, obs.scan.as_ref()));
    checks.extend(judge_chain(board, obs, expected_chip_id));
    checks.extend(judge_sensors(board, obs));
    checks
}

fn judge_i2c(board: &Board, scan: Option<&I2cScan>) -> Vec<Check> {
    let file = format!("boards/{}.toml", board.board.id);
    let Some(scan) = scan else {
        return vec![
            Check::new(
                "i2c scan",
                false,
                "no answer to the scan request".to_string(),
                "a list of addresses".to_string(),
            )
            .advise(
                "the firmware predates the I2C scan: flash the current image (scripts/firmware.sh)",
            ),
        ];
    };
    let mut checks = Vec::new();
    let expected: Vec<u8> = board.i2c.devices.iter().map(|d| d.address).collect();
    checks.push(match scan.stopped_at {
        None => Check::new(
            "i2c scan",
            true,
            format!("0x08..=0x77 probed, {} answer", scan.acked.len()),
            "every address probed".to_string(),
        ),
        Some(at) => Check::new(
            "i2c scan",
            false,
            format!("stopped at 0x{at:02X}: the bus did not complete a transaction"),
            "every address probed".to_string(),
        )
        .advise(format!(
            "the I2C bus hangs at 0x{at:02X}: a device (or a short) holds SCL or SDA low; \
                 check SDA/SCL for shorts to ground and their pull-up resistors"
        )),
    });
    let probed = |a: u8| scan.stopped_at.is_none_or(|at| a < at);
    let missing: Vec<&hearth_boards::I2cDevice> = board
        .i2c
        .devices
        .iter()
        .filter(|d| !scan.acked.contains(&d.address))
        .collect();
    for d in &board.i2c.devices {
        let answered = scan.acked.contains(&d.address);
        let seen = if answered {
            "answers".to_string()
        } else if probed(d.address) {
            "no answer".to_string()
        } else {
            "not probed (the scan stopped before it)".to_string()
        };
        checks.push(
            Check::new(
                format!("i2c 0x{:02X} {}", d.address, d.part),
                answered,
                seen,
                format!("{} ({})", d.part, d.role),
            )
            .advise(format!(
                "no answer at 0x{:02X} ({}): check {}",
                d.address,
                d.part,
                address_hint(&d.part)
            )),
        );
    }
    let unexpected: Vec<u8> = scan
        .acked
        .iter()
        .copied()
        .filter(|a| !expected.contains(a))
        .collect();
    let mut advice = Vec::new();
    for &a in &unexpected {
        // A missing part whose straps allow this address is most likely what answers here.
        let strayed = missing.iter().find(|d| {
            hearth_boards::strap_addresses(&d.part).is_some_and(|allowed| allowed.contains(&a))
        });
        advice.push(match strayed {
            Some(d) => format!(
                "0x{a:02X} answers where {file} lists nothing: probably the {} meant for \
                 0x{:02X}, with {} set wrong, or {file} has the wrong address",
                d.part,
                d.address,
                strap_name(&d.part)
            ),
            None => format!(
                "0x{a:02X} answers where {file} lists nothing: a part the definition does not \
                 list, or a solder bridge on an address strap"
            ),
        });
    }
    let mut sorted = expected.clone();
    sorted.sort_unstable();
    checks.push(Check {
        name: "i2c other addresses".to_string(),
        pass: unexpected.is_empty(),
        seen: if unexpected.is_empty() {
            "none answer".to_string()
        } else {
            format!("{} answer", hex_list(&unexpected))
        },
        expected: format!("only {}", hex_list(&sorted)),
        advice: (!advice.is_empty()).then(|| advice.join("; ")),
    });
    checks
}

fn judge_chain(board: &Board, obs: &Observation, expected_id: Option<u16>) -> Vec<Check> {
    let count = board.asic.count;
    let state = obs
        .telemetry
        .as_ref()
        .map_or("unknown".to_string(), |t| format!("{:?}", t.state));
    let Some(e) = obs.enumeration.as_ref() else {
        return vec![
            Check::new(
                "chain chips",
                false,
                "no answer to the enumeration request".to_string(),
                format!("{count}"),
            )
            .advise("the firmware predates the enumeration report: flash the current image (scripts/firmware.sh)"),
        ];
    };
    if e.attempts == 0 {
        let why = if state == "Safe" {
            format!(
                "the board did not power the chips: it is in its safe state ({})",
                fault_list(&obs.faults)
            )
        } else {
            format!("the board did not power the chips (state {state})")
        };
        return vec![
            Check::new(
                "chain chips",
                false,
                "no bring-up tried".to_string(),
                format!("{count}"),
            )
            .advise(format!(
                "{why}: the other failures say why; the chain is checked once they are fixed"
            )),
        ];
    }
    let error = if e.error.is_empty() {
        String::new()
    } else {
        format!(": {}", e.error)
    };
    let count_advice = if e.chips_found == 0 {
        "no chip answered the chip-id read: check core power, the reset line, the 25 MHz clock \
         and the UART wiring (TX/RX swapped?)"
            .to_string()
    } else if e.chips_found < count {
        format!(
            "{} of {count} chips answered: chip {} (counting from 1 at the MCU) or the link into \
             it is at fault: check its core power, solder joints and the CI/RO and BI/BO lines \
             between chips {} and {}",
            e.chips_found,
            e.chips_found + 1,
            e.chips_found,
            e.chips_found + 1
        )
    } else {
        format!(
            "{} chips answered but {} lists {count}: fix [asic] count",
            e.chips_found,
            format_args!("boards/{}.toml", board.board.id)
        )
    };
    let mut checks = vec![
        Check::new(
            "chain chips",
            e.chips_found == count,
            format!("{} answer{error}", e.chips_found),
            format!("{count}"),
        )
        .advise(count_advice),
    ];
    let model_ok = e.chip_id.is_some() && e.chip_id == expected_id;
    checks.push(
        Check::new(
            "chain chip model",
            model_ok,
            e.chip_id.map_or("no chip answered".to_string(), |id| {
                format!("0x{id:04X} ({})", chip_name(id))
            }),
            expected_id.map_or_else(
                || format!("{} (unknown model)", board.asic.model),
                |id| format!("0x{id:04X} ({})", board.asic.model),
            ),
        )
        .advise(match e.chip_id {
            None => "no chip answered: see the chip count".to_string(),
            Some(_) => format!(
                "the chips are not {}: fit the right chips or fix [asic] model",
                board.asic.model
            ),
        }),
    );
    if e.chips_found == count && model_ok && !e.up {
        checks.push(
            Check::new(
                "chain bring-up",
                false,
                format!("failed{error}"),
                "the chain configured and ready to hash".to_string(),
            )
            .advise("the chips enumerate but did not take their configuration: check the UART at the mining baud (signal integrity) and the 25 MHz clock"),
        );
    }
    checks
}

fn fault_list(faults: &[Fault]) -> String {
    if faults.is_empty() {
        "no fault reported while the test ran".to_string()
    } else {
        faults
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A temperature against physics and a limit.
fn temperature(
    name: &str,
    reading: Option<i32>,
    limit_c: u32,
    limit_name: &str,
    missing: &str,
    hot: &str,
) -> Check {
    let expected = format!(
        "{}..{} °C, below {limit_name} {limit_c} °C",
        PLAUSIBLE_C.0, PLAUSIBLE_C.1
    );
    let Some(mc) = reading else {
        return Check::new(name, false, "no reading".to_string(), expected).advise(missing);
    };
    let c = mc / 1000;
    if c < PLAUSIBLE_C.0 || c > PLAUSIBLE_C.1 {
        return Check::new(name, false, celsius(mc), expected).advise(format!(
            "{name} reads {}, which is not physical here: check the sensor's wiring",
            celsius(mc)
        ));
    }
    let limit_mc = i64::from(limit_c) * 1000;
    Check::new(name, i64::from(mc) < limit_mc, celsius(mc), expected).advise(format!(
        "{name} is {} with the chips idle: {hot}",
        celsius(mc)
    ))
}

fn judge_sensors(board: &Board, obs: &Observation) -> Vec<Check> {
    let t = obs.telemetry.as_ref();
    let th = &board.thermal;
    let emc = board
        .i2c
        .devices
        .iter()
        .find(|d| d.part == "EMC2101")
        .map_or("the EMC2101".to_string(), |d| {
            format!("the EMC2101 at 0x{:02X}", d.address)
        });
    let mut checks = vec![
        temperature(
            "chip temperature",
            t.and_then(|t| t.asic_temp_mc),
            th.throttle_asic_c,
            "throttle",
            &format!(
                "no chip temperature: {emc} does not answer, or the chip's thermal diode reads \
                 open or shorted (check the DP/DN traces)"
            ),
            "check the heatsink, its thermal paste and the fan",
        ),
        temperature(
            "board temperature",
            t.and_then(|t| t.board_temp_mc),
            th.throttle_asic_c,
            "the chip's throttle",
            &format!("no board temperature: {emc} does not answer"),
            "something near the EMC2101 is overheating (the regulator? a short?)",
        ),
        temperature(
            "regulator temperature",
            t.and_then(|t| t.vr_temp_mc),
            th.throttle_vr_c,
            "throttle",
            "no regulator temperature: the TPS546D24A does not answer",
            "check the regulator's thermal pad, its inductor and the core rail for a short",
        ),
    ];

    let want = board.asic.core_voltage_mv;
    let tolerance = want * CORE_TOLERANCE_PERMILLE / 1000;
    let expected = format!("{want} ± {tolerance} mV");
    let powered = t.is_some_and(|t| {
        matches!(
            t.state,
            BoardState::Idle | BoardState::Hashing | BoardState::Throttled
        )
    });
    checks.push(match (t, t.and_then(|t| t.vcore_mv)) {
        (Some(t), _) if !powered => Check::new(
            "core voltage",
            false,
            format!("core off (board {:?})", t.state),
            expected,
        )
        .advise(format!(
            "the core rail is off, so it was not measured: {}",
            if t.state == BoardState::Safe {
                format!(
                    "the board is in its safe state ({})",
                    fault_list(&obs.faults)
                )
            } else {
                "the chain did not come up (see above)".to_string()
            }
        )),
        (_, None) => Check::new("core voltage", false, "no reading".to_string(), expected)
            .advise("no core voltage: the TPS546D24A does not answer"),
        (_, Some(mv)) => {
            let mv = u32::from(mv);
            Check::new(
                "core voltage",
                mv.abs_diff(want) <= tolerance,
                format!("{mv} mV"),
                expected,
            )
            .advise(format!(
                "the core rail reads {mv} mV where the board asks for {want}: check the \
                 regulator's output (feedback, VOUT_SCALE_LOOP) and the rail for shorts or a \
                 bad joint under the chips"
            ))
        }
    });

    // Only boards with an input monitor measure their input.
    if board.i2c.devices.iter().any(|d| d.part == "INA260") {
        let range = board.power.input_voltage_mv;
        let expected = format!("{}..={} mV", range.min, range.max);
        checks.push(match t.and_then(|t| t.input_mv) {
            None => Check::new("input voltage", false, "no reading".to_string(), expected)
                .advise("no input voltage: the INA260 does not answer"),
            Some(mv) => Check::new(
                "input voltage",
                (range.min..=range.max).contains(&mv),
                format!("{mv} mV"),
                expected,
            )
            .advise(format!(
                "the input reads {mv} mV, outside {}..={} mV: check the supply, its cable and \
                 the input connector",
                range.min, range.max
            )),
        });
    }
    checks
}

/// The summary after the check lines: a count, and what to look at.
pub fn summary(checks: &[Check]) -> String {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.pass).collect();
    if failed.is_empty() {
        return format!("all {} checks passed", checks.len());
    }
    let mut s = format!(
        "{} of {} checks failed; look at:",
        failed.len(),
        checks.len()
    );
    for c in failed {
        if let Some(advice) = &c.advice {
            s.push_str(&format!("\n  - {advice}"));
        }
    }
    s
}

/// The board definition to judge against: `path` if given, else `boards/<id>.toml` of this
/// repository, else the built-in copy. Validated against `asics.toml` when one is at hand.
pub fn board_definition(id: &str, path: Option<&Path>) -> anyhow::Result<(Board, String)> {
    let load = |file: &Path| -> anyhow::Result<Board> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let asics_file = [
            dir.join("asics.toml"),
            hearth_boards::boards_dir().join("asics.toml"),
        ]
        .into_iter()
        .find(|p| p.is_file());
        match asics_file {
            Some(a) => {
                let asics = hearth_boards::load_asics(&a)?;
                Ok(Board::load(file, &asics)?)
            }
            None => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))
            }
        }
    };
    if let Some(p) = path {
        return Ok((load(p)?, p.display().to_string()));
    }
    // The id comes from the board: only a plain name may become a file name.
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "the board reports the id {id:?}, which names no board definition: pass --board PATH"
        );
    }
    let file = hearth_boards::boards_dir().join(format!("{id}.toml"));
    if file.is_file() {
        return Ok((load(&file)?, file.display().to_string()));
    }
    match hearth_boards::BUILTIN_BOARDS.iter().find(|(b, _)| *b == id) {
        Some((_, text)) => Ok((
            toml::from_str(text).with_context(|| format!("the built-in definition of {id}"))?,
            format!("built-in {id}"),
        )),
        None => bail!(
            "the board reports the id {id:?}, but there is no boards/{id}.toml here and no \
             built-in definition of it: pass --board PATH"
        ),
    }
}

/// The board end of the link: frames out, messages in.
struct Link<R, W> {
    reader: R,
    writer: W,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<BoardToHost>,
    name: String,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Link<R, W> {
    async fn send(&mut self, message: &HostToBoard) -> anyhow::Result<()> {
        let mut frame = [0u8; MAX_FRAME];
        let bytes =
            encode(message, &mut frame).map_err(|e| anyhow::anyhow!("encoding a frame: {e}"))?;
        tokio::time::timeout(Duration::from_secs(5), self.writer.write_all(bytes))
            .await
            .with_context(|| format!("{}: the board stopped taking data", self.name))?
            .with_context(|| format!("writing to {}", self.name))
    }

    /// The next message, or `None` at `deadline`.
    async fn next(&mut self, deadline: Instant) -> anyhow::Result<Option<BoardToHost>> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            let n = match tokio::time::timeout_at(deadline, self.reader.read(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(read) => read.with_context(|| format!("reading {} (unplugged?)", self.name))?,
            };
            if n == 0 {
                bail!("{} closed (unplugged?)", self.name);
            }
            let pending = &mut self.pending;
            let name = &self.name;
            self.decoder
                .feed(&self.buf[..n], |r: Result<BoardToHost, _>| match r {
                    Ok(m) => pending.push_back(m),
                    Err(e) => tracing::debug!(board = %name, error = %e, "dropped a bad frame"),
                });
        }
    }
}

/// What arrives while waiting for one answer, kept for the verdicts.
#[derive(Default)]
struct Seen {
    caps: Option<Capabilities>,
    scan: Option<I2cScan>,
    enumeration: Option<Enumeration>,
    telemetry: Option<Telemetry>,
    telemetry_since_scan: u32,
    safe_in_a_row: u32,
    faults: Vec<Fault>,
}

impl Seen {
    fn take(&mut self, message: BoardToHost) {
        match message {
            BoardToHost::Hello(c) => self.caps = Some(c),
            BoardToHost::I2cScan(s) => self.scan = Some(s),
            BoardToHost::Enumeration(e) => self.enumeration = Some(e),
            BoardToHost::Telemetry(t) => {
                self.telemetry_since_scan += 1;
                self.safe_in_a_row = if t.state == BoardState::Safe {
                    self.safe_in_a_row + 1
                } else {
                    0
                };
                self.telemetry = Some(t);
            }
            // The latest of each kind: a sensor that keeps failing reports every round, and
            // throttling every step.
            BoardToHost::Fault(f) => {
                self.faults
                    .retain(|seen| std::mem::discriminant(seen) != std::mem::discriminant(&f));
                if f != Fault::Cleared {
                    self.faults.push(f);
                }
            }
            BoardToHost::Log { level, text } => tracing::debug!(?level, "board: {text}"),
            BoardToHost::Nonce(_) | BoardToHost::WorkLow { .. } | BoardToHost::Pong { .. } => {}
        }
    }

    /// Whether waiting longer would tell more: the chain is up with fresh readings, or has
    /// failed, or the board stays in its safe state.
    fn settled(&self) -> bool {
        let Some(t) = &self.telemetry else {
            return false;
        };
        if self.telemetry_since_scan < FRESH_TELEMETRY {
            return false;
        }
        // A board that stays in its safe state will not power the chips for the test.
        if self.safe_in_a_row >= SAFE_TELEMETRY {
            return true;
        }
        let up = matches!(
            t.state,
            BoardState::Idle | BoardState::Hashing | BoardState::Throttled
        );
        match self.enumeration.as_ref().filter(|e| e.attempts > 0) {
            Some(e) if e.up => up,
            // A failed bring-up is retried every 10 s with the same outcome.
            Some(_) => true,
            None => false,
        }
    }
}

/// Talk to the board, then print and judge. `Ok(true)` when every check passed.
async fn test_board<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    name: &str,
    args: &SelftestArgs,
) -> anyhow::Result<bool> {
    let (reader, writer) = tokio::io::split(stream);
    let mut link = Link {
        reader,
        writer,
        decoder: FrameDecoder::new(),
        buf: vec![0; 4096],
        pending: Default::default(),
        name: name.to_string(),
    };
    let started = Instant::now();
    // A lone delimiter ends whatever the board's decoder held from an earlier session.
    link.writer
        .write_all(&[0])
        .await
        .with_context(|| format!("writing to {name}"))?;
    link.send(&HostToBoard::Hello).await?;
    let mut seen = Seen::default();
    let deadline = Instant::now() + HELLO_TIMEOUT;
    while seen.caps.is_none() {
        match link.next(deadline).await? {
            Some(m) => seen.take(m),
            None => bail!(
                "{name}: no answer to Hello within {HELLO_TIMEOUT:?}: not a Hearth board, or its firmware is stuck"
            ),
        }
    }
    let caps = seen.caps.clone().context("no Hello")?;
    if caps.protocol != hearth_link::PROTOCOL_VERSION {
        bail!(
            "{name} speaks link protocol {}, this hearth {}: update one of them",
            caps.protocol,
            hearth_link::PROTOCOL_VERSION
        );
    }
    let (board, source) = board_definition(&caps.board, args.board.as_deref())?;
    println!(
        "board {} (serial {}, firmware {}.{}.{}) on {name}, checked against {source}",
        caps.board, caps.serial, caps.firmware[0], caps.firmware[1], caps.firmware[2]
    );

    // Each request is answered in order; an older firmware drops it and the wait ends empty.
    link.send(&HostToBoard::ScanI2c).await?;
    seen.telemetry_since_scan = 0;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while seen.scan.is_none() {
        match link.next(deadline).await? {
            Some(m) => seen.take(m),
            None => break,
        }
    }
    link.send(&HostToBoard::GetEnumeration).await?;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut asked = None;
    while asked.is_none() {
        match link.next(deadline).await? {
            Some(BoardToHost::Enumeration(e)) => asked = Some(e),
            Some(m) => seen.take(m),
            None => break,
        }
    }
    if seen.enumeration.is_none() {
        seen.enumeration = asked;
    }

    // Wait for the chain to come up (or plainly not) with fresh readings, pinging so that the
    // board does not stop for a silent host.
    let settle_by = Instant::now() + Duration::from_secs(args.timeout);
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut seq = 0u32;
    while !seen.settled() && Instant::now() < settle_by {
        tokio::select! {
            _ = ping.tick() => {
                seq = seq.wrapping_add(1);
                link.send(&HostToBoard::Ping { seq }).await?;
            }
            m = link.next(settle_by) => match m? {
                Some(m) => seen.take(m),
                None => break,
            },
        }
    }
    if !seen.settled() {
        println!(
            "(the board had not settled after {} s: judging what it showed)",
            args.timeout
        );
    }

    let observation = Observation {
        caps,
        scan: seen.scan,
        enumeration: seen.enumeration,
        telemetry: seen.telemetry,
        faults: seen.faults,
    };
    let checks = judge(&board, &observation);
    for c in &checks {
        println!("{c}");
    }
    println!("{}", summary(&checks));
    tracing::debug!(
        took_ms = started.elapsed().as_millis() as u64,
        "self-test done"
    );
    Ok(checks.iter().all(|c| c.pass))
}

/// Run `hearth board selftest`: `Ok` only when every check passed.
pub async fn run(args: SelftestArgs) -> anyhow::Result<()> {
    let passed = if let Some(addr) = &args.tcp {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach the emulated board's USB at {addr}"))?;
        let _ = stream.set_nodelay(true);
        test_board(stream, addr, &args).await?
    } else {
        let (port, name) =
            crate::device::link::open_port(args.port.as_deref(), args.serial.as_deref())?;
        test_board(port, &name, &args).await?
    };
    if passed {
        Ok(())
    } else {
        bail!("the board failed its self-test (the lines above say what to look at)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn board() -> Board {
        let (_, text) = hearth_boards::BUILTIN_BOARDS
            .iter()
            .find(|(id, _)| *id == "hearth-bm1370-r1")
            .unwrap();
        toml::from_str(text).unwrap()
    }

    fn caps() -> Capabilities {
        Capabilities {
            protocol: hearth_link::PROTOCOL_VERSION,
            firmware: [0, 1, 0],
            board: "hearth-bm1370-r1".try_into().unwrap(),
            serial: "NOROM0000001".try_into().unwrap(),
            chip_id: 0x1370,
            chip_count: 1,
            queue_depth: 16,
            share_bits: 40,
        }
    }

    fn telemetry() -> Telemetry {
        Telemetry {
            uptime_ms: 5000,
            state: BoardState::Idle,
            asic_temp_mc: Some(40_000),
            board_temp_mc: Some(30_000),
            vr_temp_mc: Some(35_000),
            fan_percent: 25,
            fan_rpm: Some(1500),
            vcore_mv: Some(1150),
            vcore_ma: Some(0),
            input_mv: Some(5000),
            input_ma: Some(2000),
            input_mw: Some(10_000),
            frequency_khz: 525_000,
            queued: 0,
            chips: Default::default(),
        }
    }

    /// A healthy r1 board.
    fn good() -> Observation {
        Observation {
            caps: caps(),
            scan: Some(I2cScan {
                acked: [0x24, 0x40, 0x4C].into_iter().collect(),
                stopped_at: None,
            }),
            enumeration: Some(Enumeration {
                attempts: 1,
                chips_found: 1,
                chip_id: Some(0x1370),
                up: true,
                error: Default::default(),
            }),
            telemetry: Some(telemetry()),
            faults: Vec::new(),
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name.as_str())
            .collect()
    }

    fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
    }

    #[test]
    fn a_healthy_board_passes_every_check() {
        let checks = judge(&board(), &good());
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "firmware",
                "i2c scan",
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
            ]
        );
        assert_eq!(summary(&checks), "all 13 checks passed");
        assert!(checks[0].to_string().starts_with("PASS  firmware "));
    }

    #[test]
    fn a_missing_part_is_named_with_its_address_and_straps() {
        let mut obs = good();
        obs.scan.as_mut().unwrap().acked = [0x24, 0x4C].into_iter().collect();
        let checks = judge(&board(), &obs);
        assert_eq!(failed(&checks), ["i2c 0x40 INA260"]);
        let c = check(&checks, "i2c 0x40 INA260");
        assert_eq!(c.seen, "no answer");
        assert!(
            summary(&checks)
                .contains("no answer at 0x40 (INA260): check its solder joints and A0/A1 straps"),
            "{}",
            summary(&checks)
        );
    }

    #[test]
    fn a_part_at_another_address_is_both_missing_and_unexpected_and_the_advice_links_them() {
        let mut obs = good();
        obs.scan.as_mut().unwrap().acked = [0x24, 0x41, 0x4C].into_iter().collect();
        let checks = judge(&board(), &obs);
        assert_eq!(failed(&checks), ["i2c 0x40 INA260", "i2c other addresses"]);
        let other = check(&checks, "i2c other addresses");
        assert_eq!(other.seen, "0x41 answer");
        assert_eq!(other.expected, "only 0x24, 0x40, 0x4C");
        let advice = other.advice.as_deref().unwrap();
        assert!(
            advice.contains("probably the INA260 meant for 0x40"),
            "{advice}"
        );
        // Something no listed part could be: not blamed on one.
        obs.scan.as_mut().unwrap().acked = [0x24, 0x40, 0x4C, 0x50].into_iter().collect();
        let checks = judge(&board(), &obs);
        assert_eq!(failed(&checks), ["i2c other addresses"]);
        let advice = check(&checks, "i2c other addresses")
            .advice
            .clone()
            .unwrap();
        assert!(advice.contains("0x50 answers") && advice.contains("solder bridge"));
    }

    #[test]
    fn a_hung_bus_fails_the_scan_and_says_which_parts_were_not_probed() {
        let mut obs = good();
        obs.scan = Some(I2cScan {
            acked: [0x24].into_iter().collect(),
            stopped_at: Some(0x30),
        });
        let checks = judge(&board(), &obs);
        assert_eq!(
            failed(&checks),
            ["i2c scan", "i2c 0x4C EMC2101", "i2c 0x40 INA260"]
        );
        assert_eq!(
            check(&checks, "i2c 0x40 INA260").seen,
            "not probed (the scan stopped before it)"
        );
        assert!(
            check(&checks, "i2c scan")
                .advice
                .as_deref()
                .unwrap()
                .contains("holds SCL or SDA low")
        );
    }

    #[test]
    fn older_firmware_that_ignores_the_requests_fails_with_what_to_flash() {
        let mut obs = good();
        obs.scan = None;
        obs.enumeration = None;
        let checks = judge(&board(), &obs);
        assert_eq!(failed(&checks), ["i2c scan", "chain chips"]);
        assert!(summary(&checks).contains("scripts/firmware.sh"));
    }

    #[test]
    fn the_chain_count_and_model_are_judged_from_what_answered() {
        let mut b = board();
        b.asic.count = 4;
        let mut obs = good();
        obs.caps.chip_count = 4;
        obs.enumeration = Some(Enumeration {
            attempts: 2,
            chips_found: 2,
            chip_id: Some(0x1370),
            up: false,
            error: "2 chips answered but the board has 4".try_into().unwrap(),
        });
        obs.telemetry.as_mut().unwrap().state = BoardState::Starting;
        let checks = judge(&b, &obs);
        let chips = check(&checks, "chain chips");
        assert!(!chips.pass);
        assert_eq!(chips.seen, "2 answer: 2 chips answered but the board has 4");
        assert_eq!(chips.expected, "4");
        assert!(chips.advice.as_deref().unwrap().contains("chip 3"));
        assert!(check(&checks, "chain chip model").pass);
        // The core is off after a failed bring-up: not measured, and said so.
        let core = check(&checks, "core voltage");
        assert!(!core.pass && core.seen.starts_with("core off"), "{core:?}");

        // A chip of another model.
        let mut obs = good();
        obs.enumeration.as_mut().unwrap().chip_id = Some(0x1368);
        obs.enumeration.as_mut().unwrap().up = false;
        let checks = judge(&board(), &obs);
        let model = check(&checks, "chain chip model");
        assert!(!model.pass);
        assert_eq!(model.seen, "0x1368 (BM1368)");
        assert_eq!(model.expected, "0x1370 (BM1370)");

        // No chip at all.
        let mut obs = good();
        obs.enumeration = Some(Enumeration {
            attempts: 1,
            ..Enumeration::default()
        });
        let checks = judge(&board(), &obs);
        assert!(
            check(&checks, "chain chips")
                .advice
                .as_deref()
                .unwrap()
                .contains("TX/RX swapped")
        );
        assert_eq!(check(&checks, "chain chip model").seen, "no chip answered");
    }

    #[test]
    fn a_board_that_never_powered_the_chips_says_why() {
        let mut obs = good();
        obs.enumeration = Some(Enumeration::default());
        obs.telemetry.as_mut().unwrap().state = BoardState::Safe;
        obs.telemetry.as_mut().unwrap().input_mv = Some(4000);
        obs.faults.push(Fault::InputPower {
            input_mv: 4000,
            input_mw: 8000,
        });
        let checks = judge(&board(), &obs);
        assert_eq!(
            failed(&checks),
            ["chain chips", "core voltage", "input voltage"]
        );
        let chips = check(&checks, "chain chips");
        assert_eq!(chips.seen, "no bring-up tried");
        assert!(chips.advice.as_deref().unwrap().contains("InputPower"));
        let input = check(&checks, "input voltage");
        assert_eq!(input.seen, "4000 mV");
        assert_eq!(input.expected, "4500..=5500 mV");
    }

    #[test]
    fn readings_are_judged_against_the_limits_and_physics() {
        let b = board();
        let judge_with = |edit: &dyn Fn(&mut Telemetry)| {
            let mut obs = good();
            edit(obs.telemetry.as_mut().unwrap());
            judge(&b, &obs)
        };
        // At the limit fails; just below passes.
        let checks = judge_with(&|t| t.asic_temp_mc = Some(75_000));
        assert_eq!(failed(&checks), ["chip temperature"]);
        assert_eq!(check(&checks, "chip temperature").seen, "75.0 °C");
        assert!(failed(&judge_with(&|t| t.asic_temp_mc = Some(74_900))).is_empty());
        // Not physical, even though below the limit.
        let checks = judge_with(&|t| t.board_temp_mc = Some(-40_000));
        assert_eq!(failed(&checks), ["board temperature"]);
        assert!(
            check(&checks, "board temperature")
                .advice
                .as_deref()
                .unwrap()
                .contains("not physical")
        );
        // No reading (an open diode).
        let checks = judge_with(&|t| t.asic_temp_mc = None);
        assert_eq!(check(&checks, "chip temperature").seen, "no reading");
        assert!(summary(&checks).contains("DP/DN"));
        let checks = judge_with(&|t| t.vr_temp_mc = Some(106_000));
        assert_eq!(failed(&checks), ["regulator temperature"]);
        // Core: 1150 ± 57 mV.
        assert!(failed(&judge_with(&|t| t.vcore_mv = Some(1207))).is_empty());
        assert!(failed(&judge_with(&|t| t.vcore_mv = Some(1093))).is_empty());
        assert_eq!(
            failed(&judge_with(&|t| t.vcore_mv = Some(1208))),
            ["core voltage"]
        );
        assert_eq!(
            failed(&judge_with(&|t| t.vcore_mv = Some(1000))),
            ["core voltage"]
        );
        // Input: the board's range, inclusive.
        assert!(failed(&judge_with(&|t| t.input_mv = Some(5500))).is_empty());
        assert_eq!(
            failed(&judge_with(&|t| t.input_mv = Some(5501))),
            ["input voltage"]
        );
        // No telemetry at all: every reading fails.
        let mut obs = good();
        obs.telemetry = None;
        assert_eq!(
            failed(&judge(&b, &obs)),
            [
                "chip temperature",
                "board temperature",
                "regulator temperature",
                "core voltage",
                "input voltage"
            ]
        );
    }

    #[test]
    fn firmware_built_for_another_definition_is_caught() {
        let mut obs = good();
        obs.caps.chip_count = 4;
        let checks = judge(&board(), &obs);
        assert_eq!(failed(&checks), ["firmware"]);
        assert!(summary(&checks).contains("HEARTH_BOARD=hearth-bm1370-r1 scripts/firmware.sh"));
    }

    #[test]
    fn a_board_without_an_input_monitor_has_no_input_check() {
        let mut b = board();
        b.i2c.devices.retain(|d| d.part != "INA260");
        let mut obs = good();
        obs.scan.as_mut().unwrap().acked = [0x24, 0x4C].into_iter().collect();
        obs.telemetry.as_mut().unwrap().input_mv = None;
        let checks = judge(&b, &obs);
        assert!(failed(&checks).is_empty(), "{checks:#?}");
        assert!(checks.iter().all(|c| c.name != "input voltage"));
    }

    #[test]
    fn settling_waits_for_fresh_readings_and_a_finished_bring_up() {
        let mut seen = Seen {
            enumeration: Some(Enumeration::default()),
            ..Seen::default()
        };
        let mut t = telemetry();
        t.state = BoardState::Starting;
        seen.take(BoardToHost::Telemetry(t.clone()));
        seen.take(BoardToHost::Telemetry(t.clone()));
        assert!(!seen.settled(), "no bring-up yet");
        seen.take(BoardToHost::Enumeration(good().enumeration.unwrap()));
        assert!(!seen.settled(), "up, but the core is not yet reported on");
        t.state = BoardState::Idle;
        seen.take(BoardToHost::Telemetry(t.clone()));
        assert!(seen.settled());

        // Up, then a fault: the safe state settles it too.
        t.state = BoardState::Safe;
        let mut seen = Seen {
            enumeration: good().enumeration,
            ..Seen::default()
        };
        for _ in 0..SAFE_TELEMETRY {
            assert!(!seen.settled());
            seen.take(BoardToHost::Telemetry(t.clone()));
        }
        assert!(seen.settled());
        seen.take(BoardToHost::Fault(Fault::Throttling {
            temp_mc: 80_000,
            frequency_khz: 472_500,
        }));
        seen.take(BoardToHost::Fault(Fault::Throttling {
            temp_mc: 80_000,
            frequency_khz: 420_000,
        }));
        assert_eq!(seen.faults.len(), 1, "one of each kind: {:?}", seen.faults);

        // A board stuck in its safe state: three frames are enough.
        let mut seen = Seen {
            enumeration: Some(Enumeration::default()),
            ..Seen::default()
        };
        t.state = BoardState::Safe;
        for _ in 0..SAFE_TELEMETRY {
            assert!(!seen.settled());
            seen.take(BoardToHost::Telemetry(t.clone()));
        }
        assert!(seen.settled());
    }

    #[test]
    fn the_board_id_must_be_a_plain_name() {
        let err = board_definition("../../etc/passwd", None).unwrap_err();
        assert!(err.to_string().contains("pass --board PATH"), "{err}");
        let (b, _) = board_definition("hearth-bm1370-r1", None).unwrap();
        assert_eq!(b.asic.model, "BM1370");
    }
}
