//! Chip models: identity, geometry, response format, nonce decoding, PLL limits and baud settings.
//!
//! Facts per model are from docs/bm13xx-protocol.md (§2.1 chip ids, §4 PLL ranges, §6 nonce
//! layout, §8.1 geometry), which cites ESP-Miner, mujina, bm13xx-rs, cgminer and factory captures.

use crate::pll::{PllLimits, PostDividerEncoding};
use crate::response::RawNonce;

/// A supported BM13xx chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChipModel {
    /// BM1366 (Antminer S19 XP / S19k Pro, Bitaxe Ultra): 112 cores × 8 small cores.
    Bm1366,
    /// BM1368 (Antminer S21, Bitaxe Supra): 80 cores × 16 small cores.
    Bm1368,
    /// BM1370 (Antminer S21 Pro, Bitaxe Gamma): 128 cores × 16 small cores.
    Bm1370,
    /// BM1397 (Antminer S17/T17, Bitaxe Max): 168 cores × 4 small cores, midstate jobs.
    Bm1397,
}

/// How a model receives work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFormat {
    /// The whole header; the chip rolls version bits itself.
    FullHeader,
    /// SHA-256 midstates computed by the host (BM1397).
    Midstate,
}

/// UART speed for mining after init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainBaud {
    /// Stay at the power-on 115,200 baud (the chip runs at 115,741).
    PowerOn,
    /// 25 MHz / (8 · 3) = 1,041,667 baud (ESP-Miner's "max baud", S19 XP factory).
    Fast1M,
    /// 25 MHz / 8 = 3,125,000 baud (S21 / S21 Pro factory).
    Fast3M,
}

impl ChainBaud {
    /// The values configuration files may name, as a phrase for error messages.
    pub const ACCEPTED: &'static str = "115200, 1000000 or 3125000";

    /// Baud the chips run at.
    pub const fn chip_baud(self) -> u32 {
        match self {
            ChainBaud::PowerOn => 115_200,
            ChainBaud::Fast1M => 1_041_667,
            ChainBaud::Fast3M => 3_125_000,
        }
    }

    /// The round figure configuration files use for it (board TOMLs, `hearth.toml`).
    pub const fn nominal(self) -> u32 {
        match self {
            ChainBaud::PowerOn => 115_200,
            ChainBaud::Fast1M => 1_000_000,
            ChainBaud::Fast3M => 3_125_000,
        }
    }

    /// The mining baud a configuration names: its nominal figure or the chips' exact rate.
    pub const fn from_nominal(baud: u32) -> Option<ChainBaud> {
        match baud {
            115_200 => Some(ChainBaud::PowerOn),
            1_000_000 | 1_041_667 => Some(ChainBaud::Fast1M),
            3_125_000 => Some(ChainBaud::Fast3M),
            _ => None,
        }
    }
}

/// A baud a chain cannot run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedBaud(pub u32);

impl core::fmt::Display for UnsupportedBaud {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "baud {} is not one a BM13xx chain runs at: use {}",
            self.0,
            ChainBaud::ACCEPTED
        )
    }
}

impl TryFrom<u32> for ChainBaud {
    type Error = UnsupportedBaud;
    fn try_from(baud: u32) -> Result<Self, UnsupportedBaud> {
        ChainBaud::from_nominal(baud).ok_or(UnsupportedBaud(baud))
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ChainBaud {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let baud = u32::deserialize(deserializer)?;
        ChainBaud::try_from(baud).map_err(serde::de::Error::custom)
    }
}

/// Written as the nominal baud, the same number the configuration gives.
#[cfg(feature = "serde")]
impl serde::Serialize for ChainBaud {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.nominal())
    }
}

/// A nonce reply decoded for a specific model (docs §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceReply {
    /// Job id the nonce belongs to (index into the job table).
    pub job_id: u8,
    /// Header nonce: the little-endian reading of the four nonce bytes.
    pub nonce: u32,
    /// Rolled version bits, already shifted into place (`V << 13`); 0 on BM1397.
    pub version_bits: u32,
    /// BM1397: which of the job's midstates (0..4) produced the nonce.
    pub midstate_index: u8,
    /// Core that found it (`N >> 25`, N = nonce bytes read big-endian). Diagnostic.
    pub core: u8,
    /// Small core (sub-core) inside the core. Diagnostic.
    pub small_core: u8,
    /// Leading zero bits of the hash beyond the ticket-mask threshold (whole bits).
    pub excess_zero_bits: u8,
    /// `N` bits 24..17: the chip address on BM1366 chains (address-split nonce space).
    pub chip_address_bits: u8,
}

impl ChipModel {
    /// Every supported model.
    pub const ALL: [ChipModel; 4] = [
        ChipModel::Bm1366,
        ChipModel::Bm1368,
        ChipModel::Bm1370,
        ChipModel::Bm1397,
    ];

    /// The 16-bit id in register 0x00 bits 31..16.
    pub const fn chip_id(self) -> u16 {
        match self {
            ChipModel::Bm1366 => 0x1366,
            ChipModel::Bm1368 => 0x1368,
            ChipModel::Bm1370 => 0x1370,
            ChipModel::Bm1397 => 0x1397,
        }
    }

    /// The model with this chip id.
    pub const fn from_chip_id(id: u16) -> Option<ChipModel> {
        match id {
            0x1366 => Some(ChipModel::Bm1366),
            0x1368 => Some(ChipModel::Bm1368),
            0x1370 => Some(ChipModel::Bm1370),
            0x1397 => Some(ChipModel::Bm1397),
            _ => None,
        }
    }

    /// Name as printed on the chip.
    pub const fn name(self) -> &'static str {
        match self {
            ChipModel::Bm1366 => "BM1366",
            ChipModel::Bm1368 => "BM1368",
            ChipModel::Bm1370 => "BM1370",
            ChipModel::Bm1397 => "BM1397",
        }
    }

    /// Parse a name such as `"BM1370"` or `"bm1370"`.
    pub fn from_name(name: &str) -> Option<ChipModel> {
        ChipModel::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Hashing cores.
    pub const fn cores(self) -> u16 {
        match self {
            ChipModel::Bm1366 => 112,
            ChipModel::Bm1368 => 80,
            ChipModel::Bm1370 => 128,
            ChipModel::Bm1397 => 168,
        }
    }

    /// Small cores (sub-cores) per core; each hashes its own rolled version (or midstate).
    pub const fn small_cores_per_core(self) -> u16 {
        match self {
            ChipModel::Bm1366 => 8,
            ChipModel::Bm1368 | ChipModel::Bm1370 => 16,
            ChipModel::Bm1397 => 4,
        }
    }

    /// Small cores ESP-Miner uses to estimate the hash rate (empirical: 894/1276/2040, docs §8.1).
    pub const fn effective_small_cores(self) -> u32 {
        match self {
            ChipModel::Bm1366 => 894,
            ChipModel::Bm1368 => 1276,
            ChipModel::Bm1370 => 2040,
            ChipModel::Bm1397 => 672,
        }
    }

    /// Expected hash rate of one chip at `frequency_khz`, hashes per second.
    pub const fn expected_hashrate(self, frequency_khz: u32) -> u64 {
        frequency_khz as u64 * 1000 * self.effective_small_cores() as u64
    }

    /// Work format.
    pub const fn job_format(self) -> JobFormat {
        match self {
            ChipModel::Bm1397 => JobFormat::Midstate,
            _ => JobFormat::FullHeader,
        }
    }

    /// Response length once configured: 11 bytes with hardware version rolling, 9 on BM1397.
    pub const fn response_len(self) -> usize {
        match self {
            ChipModel::Bm1397 => 9,
            _ => 11,
        }
    }

    /// How often a chain gets a fresh job when the tip does not change: before the chips run
    /// out of search space, not much more often. ESP-Miner's cadence: BM1366 2 s, BM1368/BM1370
    /// 500 ms; a BM1397 exhausts its 4 midstates in about 40 ms at 425 MHz.
    pub const fn job_interval(self) -> core::time::Duration {
        core::time::Duration::from_millis(match self {
            ChipModel::Bm1366 => 2000,
            ChipModel::Bm1368 | ChipModel::Bm1370 => 500,
            ChipModel::Bm1397 => 40,
        })
    }

    /// Default frequency (ESP-Miner defaults, docs §8.1), kHz.
    pub const fn default_frequency_khz(self) -> u32 {
        match self {
            ChipModel::Bm1366 => 485_000,
            ChipModel::Bm1368 => 490_000,
            ChipModel::Bm1370 => 525_000,
            ChipModel::Bm1397 => 425_000,
        }
    }

    /// PLL divider limits (ESP-Miner solver ranges, docs §4).
    pub const fn pll_limits(self) -> PllLimits {
        match self {
            ChipModel::Bm1366 | ChipModel::Bm1368 => PllLimits {
                fbdiv_min: 144,
                fbdiv_max: 235,
                encoding: PostDividerEncoding::MinusOne,
                high_vco_flag: true,
            },
            ChipModel::Bm1370 => PllLimits {
                fbdiv_min: 160,
                fbdiv_max: 239,
                encoding: PostDividerEncoding::MinusOne,
                high_vco_flag: true,
            },
            ChipModel::Bm1397 => PllLimits {
                fbdiv_min: 60,
                fbdiv_max: 200,
                encoding: PostDividerEncoding::Direct,
                high_vco_flag: false,
            },
        }
    }

    /// Ticks ESP-Miner subtracts from HASH_COUNTING_NUMBER ("HW errata", BM1370 only).
    pub const fn hcn_errata_ticks(self) -> u32 {
        match self {
            ChipModel::Bm1370 => 268,
            _ => 0,
        }
    }

    /// Whether chips of this model split a chain's nonce space with register 0x0C offsets
    /// (factory S21 / S21 Pro practice) rather than by address bits in the nonce (BM1366).
    pub const fn uses_chip_nonce_offset(self) -> bool {
        matches!(self, ChipModel::Bm1368 | ChipModel::Bm1370)
    }

    /// `(register, value)` that sets the chips' UART to `baud`.
    ///
    /// BM1366/68/70: register 0x28, BT8D in bits 15..8 (0x11300200 = 1 Mbaud as ESP-Miner and the
    /// S19 XP factory write it; 0x01300000 = 3.125 Mbaud as the S21 factory writes it).
    /// BM1397: register 0x18 with BT8D split over bits 12..8 and 27..24 (skot/BM1397
    /// registers.md); 0x00007A31 is the power-on divider ESP-Miner writes, 0x00006031 its
    /// 3.125 Mbaud value, and 0x00006231 (BT8D = 2) follows from the same layout.
    pub const fn baud_register(self, baud: ChainBaud) -> (u8, u32) {
        match (self, baud) {
            (ChipModel::Bm1397, ChainBaud::PowerOn) => (0x18, 0x0000_7A31),
            (ChipModel::Bm1397, ChainBaud::Fast1M) => (0x18, 0x0000_6231),
            (ChipModel::Bm1397, ChainBaud::Fast3M) => (0x18, 0x0000_6031),
            (_, ChainBaud::PowerOn) => (0x28, 0x0130_1A00),
            (_, ChainBaud::Fast1M) => (0x28, 0x1130_0200),
            (_, ChainBaud::Fast3M) => (0x28, 0x0130_0000),
        }
    }

    /// Job ids in use. 32 where the 5-bit echo is proven by factory captures (BM1366, BM1368:
    /// about 4,000 S21 replies validate only with job-id bit 4 in bit 0 of byte 6) and on BM1397;
    /// 16 on BM1370, where bit 4 is not proven (docs/bm13xx-protocol.md §6.2, §10; mujina reads
    /// that bit as half a bit of excess difficulty), so that bit is never needed to find a job.
    pub const fn job_id_count(self) -> u8 {
        match self {
            ChipModel::Bm1370 => 16,
            _ => 32,
        }
    }

    /// Job byte sent for `job_id`: `id << 3` on full-header chips, `id << 2` on BM1397.
    pub const fn job_byte(self, job_id: u8) -> u8 {
        match self {
            ChipModel::Bm1397 => (job_id & 0x1F) << 2,
            _ => (job_id & 0x1F) << 3,
        }
    }

    /// Decode a nonce reply (docs §6.1, §6.2).
    ///
    /// ```
    /// use bm13xx::model::ChipModel;
    /// use bm13xx::response::{parse_response, Response};
    /// // BM1368 S21 reply for job 16: job-id bit 4 travels in bit 0 of byte 6.
    /// let frame = [0xAA, 0x55, 0x13, 0xBB, 0xE3, 0x13, 0x05, 0x0B, 0x00, 0xFB, 0x9A];
    /// let Ok(Response::Nonce(raw)) = parse_response(&frame) else { panic!() };
    /// let n = ChipModel::Bm1368.decode_nonce(&raw);
    /// assert_eq!((n.job_id, n.nonce, n.version_bits, n.excess_zero_bits), (16, 0x13E3BB13, 0x001F6000, 2));
    /// ```
    pub const fn decode_nonce(self, raw: &RawNonce) -> NonceReply {
        let n = raw.nonce_bytes;
        let big = u32::from_be_bytes(n);
        let version_field = match raw.version_field {
            Some(v) => v as u32,
            None => 0,
        };
        let (job_id, small_core, excess, midstate_index, version_bits) = match self {
            ChipModel::Bm1366 => (raw.b7 >> 3, raw.b7 & 0x07, raw.b6, 0, version_field << 13),
            ChipModel::Bm1368 => (
                ((raw.b6 & 1) << 4) | (raw.b7 >> 4),
                raw.b7 & 0x0F,
                raw.b6 >> 1,
                0,
                version_field << 13,
            ),
            // 16 job ids only (see `job_id_count`): byte 6 bit 0 is not part of the id.
            ChipModel::Bm1370 => (
                raw.b7 >> 4,
                raw.b7 & 0x0F,
                raw.b6 >> 1,
                0,
                version_field << 13,
            ),
            // b7 bits 7..2 = job byte >> 2, bits 1..0 = midstate index (ESP-Miner, cgminer).
            ChipModel::Bm1397 => (raw.b7 >> 2, 0, 0, raw.b7 & 0x03, 0),
        };
        NonceReply {
            job_id,
            nonce: u32::from_le_bytes(n),
            version_bits,
            midstate_index,
            core: (big >> 25) as u8,
            small_core,
            excess_zero_bits: excess,
            chip_address_bits: ((big >> 17) & 0xFF) as u8,
        }
    }
}

impl NonceReply {
    /// Which chip of a chain of `chip_count` found this nonce, from where it lies in the nonce
    /// space: the `CHIP_NONCE_OFFSET` slice on BM1368/BM1370 (chip = offset field · count / 2^16,
    /// bm13xx-rs `nonce2chip_id`), the address field divided by the address interval elsewhere.
    pub fn chip_index(&self, model: ChipModel, chip_count: u16) -> u16 {
        if chip_count <= 1 {
            return 0;
        }
        let n = self.nonce.swap_bytes();
        let index = if model.uses_chip_nonce_offset() {
            (((n >> 9) & 0xFFFF) * u32::from(chip_count)) >> 16
        } else {
            ((n >> 17) & 0xFF) / u32::from(crate::sequence::address_interval(chip_count))
        };
        index.min(u32::from(chip_count) - 1) as u16
    }
}

impl core::fmt::Display for ChipModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
