//! Chain bring-up as pure data: each model's init is a list of operations that expand into steps
//! (send a command, wait, switch the host UART). The chain driver ([`crate::chain`]) executes
//! steps; nothing here does I/O, so the exact bytes of an init are testable on their own.
//!
//! Orders and values follow ESP-Miner's drivers, checked against factory captures
//! (docs/bm13xx-protocol.md §3.2–3.5). Where the factory firmware does more for multi-chip chains
//! (per-chip nonce offsets on BM1368/BM1370), we do that too, because Hearth chains are longer
//! than a Bitaxe's.

use crate::command::{Command, Destination};
use crate::model::{ChainBaud, ChipModel};
use crate::pll::{self, FrequencyRamp, POWER_ON_FREQUENCY_KHZ};
use crate::register::{self, addr};

/// One thing for the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write this command frame.
    Send(Command),
    /// Wait this many milliseconds.
    Delay(u32),
    /// Flush the UART, wait for the line to drain, then switch the host side to this baud.
    SetHostBaud(u32),
}

/// Settings for chain bring-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitConfig {
    /// Target hash clock, kHz.
    pub frequency_khz: u32,
    /// Chip difficulty (rounded down to a power of two by the ticket mask).
    pub ticket_difficulty: u32,
    /// BIP320 version-rolling mask the chips may roll (bits 28..13).
    pub version_mask: u32,
    /// UART speed after init.
    pub baud: ChainBaud,
    /// Pause between frequency steps (ESP-Miner: 100 ms).
    pub ramp_step_delay_ms: u32,
    /// Pause after each chip's core configuration (ESP-Miner: 500 ms on BM1368, none elsewhere).
    pub per_chip_delay_ms: u32,
}

impl InitConfig {
    /// ESP-Miner's defaults for `model`: default frequency, difficulty 256, full BIP320 mask,
    /// 1 Mbaud, 100 ms ramp steps.
    pub const fn for_model(model: ChipModel) -> Self {
        InitConfig {
            frequency_khz: model.default_frequency_khz(),
            ticket_difficulty: 256,
            version_mask: register::DEFAULT_VERSION_MASK,
            baud: ChainBaud::Fast1M,
            ramp_step_delay_ms: 100,
            per_chip_delay_ms: if matches!(model, ChipModel::Bm1368) {
                500
            } else {
                0
            },
        }
    }
}

/// Address spacing for `chip_count` chips: `256 / count`, as ESP-Miner, bm13xx-rs and cgminer do.
/// Spreading addresses over the whole byte matters on BM1366, whose chips split the nonce space
/// by address bits.
pub const fn address_interval(chip_count: u16) -> u16 {
    if chip_count <= 1 {
        256
    } else if chip_count >= 256 {
        1
    } else {
        256 / chip_count
    }
}

/// Address of chip `index` (0 = nearest the host).
pub const fn chip_address(index: u16, chip_count: u16) -> u8 {
    ((index as u32 * address_interval(chip_count) as u32) & 0xFF) as u8
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Broadcast register write.
    Write(u8, u32),
    /// Register write to the first chip only.
    WriteFirstChip(u8, u32),
    /// These writes to every chip in turn, then the per-chip delay.
    PerChip(&'static [(u8, u32)]),
    ChainInactive,
    AssignAddresses,
    TicketMask,
    VersionRolling,
    /// BM1368/70 chains of more than one chip: per-chip 0x0C offsets.
    ChipNonceOffsets,
    FrequencyRamp,
    /// BM1397: PLL0 divider then PLL0, each written twice, 10 ms apart (ESP-Miner, cgminer).
    FrequencyRampBm1397,
    /// PLL0 at the configured frequency with its enable bit clear: the hash clock stops.
    HashClockOff,
    HashCountingNumber,
    Baud,
    Delay(u32),
}

/// Writes before the chip-id read: enable version rolling (so replies are 11 bytes) three times,
/// as every firmware does.
const PRE_ENUMERATION_FULL_HEADER: &[Op] =
    &[Op::VersionRolling, Op::VersionRolling, Op::VersionRolling];
const PRE_ENUMERATION_BM1397: &[Op] = &[];

const BM1366: &[Op] = &[
    Op::Write(addr::SOFT_RESET_CONTROL, 0x0007_0000),
    Op::Write(addr::MISC_CONTROL, 0xFF0F_C100),
    Op::ChainInactive,
    Op::AssignAddresses,
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8540),
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8020),
    Op::TicketMask,
    Op::Write(addr::ANALOG_MUX, 0x0000_0003),
    Op::Write(addr::IO_DRIVER_STRENGTH, 0x0211_1111),
    Op::WriteFirstChip(addr::UART_RELAY, 0x007C_0003),
    Op::PerChip(&[
        (addr::SOFT_RESET_CONTROL, 0x0007_01F0),
        (addr::MISC_CONTROL, 0xF000_C100),
        (addr::CORE_REGISTER_CONTROL, 0x8000_8540),
        (addr::CORE_REGISTER_CONTROL, 0x8000_8020),
        (addr::CORE_REGISTER_CONTROL, 0x8000_82AA),
    ]),
    Op::FrequencyRamp,
    Op::HashCountingNumber,
    Op::VersionRolling,
    Op::Baud,
];

const BM1368: &[Op] = &[
    Op::ChainInactive,
    Op::Write(addr::SOFT_RESET_CONTROL, 0x0007_0000),
    Op::Write(addr::MISC_CONTROL, 0xFF0F_C100),
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8B00),
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8018),
    Op::TicketMask,
    Op::Write(addr::ANALOG_MUX, 0x0000_0003),
    Op::Write(addr::IO_DRIVER_STRENGTH, 0x0211_1111),
    Op::AssignAddresses,
    Op::PerChip(&[
        (addr::SOFT_RESET_CONTROL, 0x0007_01F0),
        (addr::MISC_CONTROL, 0xF000_C100),
        (addr::CORE_REGISTER_CONTROL, 0x8000_8B00),
        (addr::CORE_REGISTER_CONTROL, 0x8000_8018),
        (addr::CORE_REGISTER_CONTROL, 0x8000_82AA),
    ]),
    Op::TicketMask,
    Op::FrequencyRamp,
    Op::ChipNonceOffsets,
    Op::HashCountingNumber,
    Op::VersionRolling,
    Op::Baud,
];

const BM1370: &[Op] = &[
    Op::VersionRolling,
    Op::Write(addr::SOFT_RESET_CONTROL, 0x0007_0000),
    Op::Write(addr::MISC_CONTROL, 0xF000_C100),
    Op::ChainInactive,
    Op::AssignAddresses,
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8B00),
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_800C),
    Op::TicketMask,
    Op::Write(addr::IO_DRIVER_STRENGTH, 0x0001_1111),
    Op::PerChip(&[
        (addr::SOFT_RESET_CONTROL, 0x0007_01F0),
        (addr::MISC_CONTROL, 0xF000_C100),
        (addr::CORE_REGISTER_CONTROL, 0x8000_8B00),
        (addr::CORE_REGISTER_CONTROL, 0x8000_800C),
        (addr::CORE_REGISTER_CONTROL, 0x8000_82AA),
    ]),
    Op::Write(addr::ADC_CONTROL, 0x0000_4480),
    Op::Write(addr::ANALOG_MUX, 0x0000_0002),
    Op::Write(addr::ADC_CONTROL, 0x0000_4480),
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8DEE),
    Op::FrequencyRamp,
    Op::ChipNonceOffsets,
    Op::HashCountingNumber,
    Op::VersionRolling,
    Op::Baud,
];

const BM1397: &[Op] = &[
    Op::Delay(20),
    Op::ChainInactive,
    Op::AssignAddresses,
    Op::Write(addr::CLOCK_ORDER_CONTROL0, 0x0000_0000),
    Op::Write(addr::CLOCK_ORDER_CONTROL1, 0x0000_0000),
    Op::Write(addr::ORDERED_CLOCK_ENABLE, 0x0000_0001),
    Op::Write(addr::CORE_REGISTER_CONTROL, 0x8000_8074),
    Op::TicketMask,
    Op::Write(addr::PLL3_PARAMETER, 0xC070_0111),
    Op::Write(addr::FAST_UART_CONFIGURATION, 0x0600_000F),
    Op::Write(addr::MISC_CONTROL, 0x0000_7A31),
    Op::FrequencyRampBm1397,
    Op::Baud,
];

/// Stop hashing on a running chain without a reset line or power control: only the UART.
const HASH_CLOCK_OFF: &[Op] = &[Op::HashClockOff];
/// Start it again the way bring-up does: a ramp from the power-on frequency.
const HASH_CLOCK_ON: &[Op] = &[Op::FrequencyRamp];
const HASH_CLOCK_ON_BM1397: &[Op] = &[Op::FrequencyRampBm1397];

/// PLL0 parameter bit 30, PLLEN: the PLL (and with it the hash clock) runs only while it is set
/// (bm13xx-rs `bm13xx-asic/src/pll.rs`: LOCKED bit 31, PLLEN bit 30; every firmware writes the
/// flag byte as 0x40 or 0x50, i.e. with PLLEN set).
pub const PLL_ENABLE_BIT: u32 = 1 << 30;

/// Which part of bring-up a [`Sequence`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the chip-id read.
    PreEnumeration,
    /// After enumeration, once the chip count is known.
    Configure,
    /// Pause a configured chain: the hash clock is switched off (the chips stop hashing and
    /// stop drawing hashing power, but keep their configuration and keep answering).
    HashClockOff,
    /// Resume after [`Phase::HashClockOff`]: ramp the hash clock up to the configured frequency.
    HashClockOn,
}

/// Iterator over the steps of one bring-up phase.
#[derive(Debug, Clone)]
pub struct Sequence {
    model: ChipModel,
    config: InitConfig,
    chip_count: u16,
    ops: &'static [Op],
    op: usize,
    /// Progress inside the current op.
    sub: u32,
    ramp: Option<FrequencyRamp>,
    ramp_frequency: u32,
}

impl Sequence {
    /// Steps for `phase` on a chain of `chip_count` chips of `model`.
    pub fn new(model: ChipModel, config: InitConfig, chip_count: u16, phase: Phase) -> Self {
        let ops = match (phase, model) {
            (Phase::PreEnumeration, ChipModel::Bm1397) => PRE_ENUMERATION_BM1397,
            (Phase::PreEnumeration, _) => PRE_ENUMERATION_FULL_HEADER,
            (Phase::Configure, ChipModel::Bm1366) => BM1366,
            (Phase::Configure, ChipModel::Bm1368) => BM1368,
            (Phase::Configure, ChipModel::Bm1370) => BM1370,
            (Phase::Configure, ChipModel::Bm1397) => BM1397,
            (Phase::HashClockOff, _) => HASH_CLOCK_OFF,
            (Phase::HashClockOn, ChipModel::Bm1397) => HASH_CLOCK_ON_BM1397,
            (Phase::HashClockOn, _) => HASH_CLOCK_ON,
        };
        Sequence {
            model,
            config,
            chip_count,
            ops,
            op: 0,
            sub: 0,
            ramp: None,
            ramp_frequency: 0,
        }
    }

    fn advance(&mut self) {
        self.op += 1;
        self.sub = 0;
        self.ramp = None;
    }

    fn write(to: Destination, register: u8, value: u32) -> Step {
        Step::Send(Command::WriteRegister {
            to,
            register,
            value,
        })
    }

    fn pll_write(&self, frequency_khz: u32) -> Option<Step> {
        let limits = self.model.pll_limits();
        let params = pll::solve(frequency_khz, &limits)?;
        Some(Self::write(
            Destination::All,
            addr::PLL0_PARAMETER,
            params.register_value(&limits),
        ))
    }
}

impl Iterator for Sequence {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        loop {
            let op = *self.ops.get(self.op)?;
            let sub = self.sub;
            self.sub += 1;
            let chips = u32::from(self.chip_count.max(1));
            let step = match op {
                Op::Write(register, value) => {
                    (sub == 0).then(|| Self::write(Destination::All, register, value))
                }
                Op::WriteFirstChip(register, value) => {
                    (sub == 0).then(|| Self::write(Destination::Chip(0), register, value))
                }
                Op::PerChip(writes) => {
                    let per_chip =
                        writes.len() as u32 + u32::from(self.config.per_chip_delay_ms > 0);
                    let chip = sub / per_chip;
                    let i = (sub % per_chip) as usize;
                    if chip >= chips {
                        None
                    } else if let Some(&(register, value)) = writes.get(i) {
                        let address = chip_address(chip as u16, self.chip_count);
                        Some(Self::write(Destination::Chip(address), register, value))
                    } else {
                        Some(Step::Delay(self.config.per_chip_delay_ms))
                    }
                }
                Op::ChainInactive => (sub == 0).then_some(Step::Send(Command::ChainInactive)),
                Op::AssignAddresses => (sub < chips).then(|| {
                    Step::Send(Command::SetChipAddress(chip_address(
                        sub as u16,
                        self.chip_count,
                    )))
                }),
                Op::TicketMask => (sub == 0).then(|| {
                    let (value, _) = register::ticket_mask(self.config.ticket_difficulty);
                    Self::write(Destination::All, addr::TICKET_MASK, value)
                }),
                Op::VersionRolling => (sub == 0).then(|| {
                    Self::write(
                        Destination::All,
                        addr::VERSION_ROLLING,
                        register::version_rolling(self.config.version_mask),
                    )
                }),
                Op::ChipNonceOffsets => {
                    (self.model.uses_chip_nonce_offset() && chips > 1 && sub < chips).then(|| {
                        let address = chip_address(sub as u16, self.chip_count);
                        let value = register::chip_nonce_offset(sub as u16, self.chip_count);
                        Self::write(Destination::Chip(address), addr::CHIP_NONCE_OFFSET, value)
                    })
                }
                Op::FrequencyRamp => {
                    // Alternate: PLL write, delay.
                    if sub == 0 {
                        self.ramp = Some(FrequencyRamp::new(
                            POWER_ON_FREQUENCY_KHZ,
                            self.config.frequency_khz,
                        ));
                    }
                    if sub.is_multiple_of(2) {
                        match self.ramp.as_mut().and_then(Iterator::next) {
                            Some(f) => self.pll_write(f).or(Some(Step::Delay(0))),
                            None => None,
                        }
                    } else {
                        Some(Step::Delay(self.config.ramp_step_delay_ms))
                    }
                }
                Op::FrequencyRampBm1397 => {
                    // Per step: 0x70 twice, 0x08 twice, 10 ms after each write.
                    if sub == 0 {
                        self.ramp = Some(FrequencyRamp::new(
                            POWER_ON_FREQUENCY_KHZ,
                            self.config.frequency_khz,
                        ));
                    }
                    let phase = sub % 8;
                    if phase == 0 {
                        match self.ramp.as_mut().and_then(Iterator::next) {
                            Some(f) => {
                                self.ramp_frequency = f;
                                Some(Self::write(
                                    Destination::All,
                                    addr::PLL0_DIVIDER,
                                    0x0F0F_0F00,
                                ))
                            }
                            None => None,
                        }
                    } else if phase == 2 {
                        Some(Self::write(
                            Destination::All,
                            addr::PLL0_DIVIDER,
                            0x0F0F_0F00,
                        ))
                    } else if phase == 4 || phase == 6 {
                        self.pll_write(self.ramp_frequency).or(Some(Step::Delay(0)))
                    } else {
                        Some(Step::Delay(10))
                    }
                }
                Op::HashCountingNumber => (sub == 0).then(|| {
                    let hcn = register::hash_counting_number(
                        self.model.cores(),
                        self.chip_count,
                        self.config.frequency_khz,
                        self.model.hcn_errata_ticks(),
                    );
                    Self::write(Destination::All, addr::HASH_COUNTING_NUMBER, hcn)
                }),
                Op::Baud => match (self.config.baud, sub) {
                    (ChainBaud::PowerOn, _) => None,
                    (baud, 0) => {
                        let (register, value) = self.model.baud_register(baud);
                        Some(Self::write(Destination::All, register, value))
                    }
                    (baud, 1) => Some(Step::SetHostBaud(baud.chip_baud())),
                    _ => None,
                },
                Op::Delay(ms) => (sub == 0).then_some(Step::Delay(ms)),
                Op::HashClockOff => (sub == 0).then(|| {
                    let limits = self.model.pll_limits();
                    let value = pll::solve(self.config.frequency_khz, &limits)
                        .map_or(0, |p| p.register_value(&limits));
                    Self::write(
                        Destination::All,
                        addr::PLL0_PARAMETER,
                        value & !PLL_ENABLE_BIT,
                    )
                }),
            };
            match step {
                Some(Step::Delay(0)) => continue,
                Some(step) => return Some(step),
                None => self.advance(),
            }
        }
    }
}
