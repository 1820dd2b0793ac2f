//! Hash-clock PLL (register 0x08) and the frequency ramp.
//!
//! f_hash = 25 MHz · FBDIV / (REFDIV · POSTDIV1 · POSTDIV2). Register layout, flag byte and the
//! post-divider encodings per generation are from docs/bm13xx-protocol.md §4 (skot/BM1397 register
//! JSON, mujina, bm13xx-rs, ESP-Miner). The solver follows ESP-Miner's constraints: REFDIV 2 then 1,
//! POSTDIV1 > POSTDIV2, both 1..=7, FBDIV within the model's range; best = closest frequency, then
//! lowest VCO, then lowest POSTDIV1·POSTDIV2. Any valid divider set gives the same clock, so tests
//! compare frequencies, not bytes (ESP's older solver picked other bytes for the same 525 MHz).

/// Reference clock on CLKI, kHz.
pub const REFERENCE_CLOCK_KHZ: u32 = 25_000;
/// Power-on hash clock (PLL0 reset value 0xC0540165 = 50 MHz, bm13xx-rs).
pub const POWER_ON_FREQUENCY_KHZ: u32 = 50_000;
/// Ramp step used by ESP-Miner and the factory firmware.
pub const RAMP_STEP_KHZ: u32 = 6_250;

/// How a model encodes the post dividers in byte 3 of register 0x08.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostDividerEncoding {
    /// BM1366/68/70: `((PD1 − 1) << 4) | (PD2 − 1)`.
    MinusOne,
    /// BM1397: `(PD1 << 4) | PD2`.
    Direct,
}

/// Divider limits of one chip model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PllLimits {
    /// Smallest FBDIV the solver may use.
    pub fbdiv_min: u16,
    /// Largest FBDIV the solver may use.
    pub fbdiv_max: u16,
    /// Post-divider byte encoding.
    pub encoding: PostDividerEncoding,
    /// Whether byte 0 becomes 0x50 when the VCO is at or above 2.4 GHz (BM1366/68/70).
    pub high_vco_flag: bool,
}

/// A PLL divider set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PllParams {
    /// Feedback divider.
    pub fbdiv: u16,
    /// Reference divider.
    pub refdiv: u8,
    /// First post divider.
    pub postdiv1: u8,
    /// Second post divider.
    pub postdiv2: u8,
}

impl PllParams {
    /// VCO frequency in kHz.
    pub const fn vco_khz(&self) -> u32 {
        REFERENCE_CLOCK_KHZ * self.fbdiv as u32 / self.refdiv as u32
    }

    /// Output (hash) frequency in kHz, rounded down.
    pub const fn frequency_khz(&self) -> u32 {
        self.vco_khz() / (self.postdiv1 as u32 * self.postdiv2 as u32)
    }

    /// Register 0x08 value: `<flags> <fbdiv> <refdiv> <postdivs>`.
    pub const fn register_value(&self, limits: &PllLimits) -> u32 {
        let flags: u32 = if limits.high_vco_flag && self.vco_khz() >= 2_400_000 {
            0x50
        } else {
            0x40
        };
        let post = match limits.encoding {
            PostDividerEncoding::MinusOne => ((self.postdiv1 - 1) << 4) | (self.postdiv2 - 1),
            PostDividerEncoding::Direct => (self.postdiv1 << 4) | self.postdiv2,
        };
        // FBDIV bits 11..8 land in the flag byte's low nibble when it exceeds 255 (BM1397 ranges
        // never need it).
        (flags << 24) | ((self.fbdiv as u32) << 16) | ((self.refdiv as u32) << 8) | post as u32
    }

    /// Decode a register 0x08 value.
    pub const fn from_register(value: u32, encoding: PostDividerEncoding) -> Option<PllParams> {
        let fbdiv = ((value >> 16) & 0x0FFF) as u16;
        let refdiv = ((value >> 8) & 0x3F) as u8;
        let post = (value & 0xFF) as u8;
        let (postdiv1, postdiv2) = match encoding {
            PostDividerEncoding::MinusOne => (((post >> 4) & 0x7) + 1, (post & 0x7) + 1),
            PostDividerEncoding::Direct => ((post >> 4) & 0x7, post & 0x7),
        };
        if fbdiv == 0 || refdiv == 0 || postdiv1 == 0 || postdiv2 == 0 {
            return None;
        }
        Some(PllParams {
            fbdiv,
            refdiv,
            postdiv1,
            postdiv2,
        })
    }
}

/// Best divider set for `target_khz` within `limits`, or `None` if no FBDIV in range reaches
/// anywhere near it.
///
/// ```
/// use bm13xx::model::ChipModel;
/// let limits = ChipModel::Bm1366.pll_limits();
/// let p = bm13xx::pll::solve(485_000, &limits).unwrap();
/// assert_eq!(p.register_value(&limits), 0x50C2_0240); // = the S19 XP factory write
/// ```
pub fn solve(target_khz: u32, limits: &PllLimits) -> Option<PllParams> {
    let mut best: Option<(u32, u32, u32, PllParams)> = None; // (|Δf|, vco, pd product, params)
    for refdiv in [2u8, 1] {
        for postdiv1 in 1u8..=7 {
            for postdiv2 in 1u8..postdiv1 {
                let divisor = u64::from(refdiv) * u64::from(postdiv1) * u64::from(postdiv2);
                // Nearest integer FBDIV for the target.
                let fb = (u64::from(target_khz) * divisor + u64::from(REFERENCE_CLOCK_KHZ) / 2)
                    / u64::from(REFERENCE_CLOCK_KHZ);
                if fb < u64::from(limits.fbdiv_min) || fb > u64::from(limits.fbdiv_max) {
                    continue;
                }
                let params = PllParams {
                    fbdiv: fb as u16,
                    refdiv,
                    postdiv1,
                    postdiv2,
                };
                // Compare exact frequencies scaled by the divisor to avoid rounding ties.
                let f_scaled = u64::from(REFERENCE_CLOCK_KHZ) * fb * 1000 / divisor;
                let diff = (f_scaled as i64 - i64::from(target_khz) * 1000).unsigned_abs() as u32;
                let key = (
                    diff,
                    params.vco_khz(),
                    u32::from(postdiv1) * u32::from(postdiv2),
                );
                let better = match &best {
                    None => true,
                    Some((d, v, p, _)) => key < (*d, *v, *p),
                };
                if better {
                    best = Some((key.0, key.1, key.2, params));
                }
            }
        }
    }
    best.map(|(_, _, _, p)| p)
}

/// Frequencies to step through from `from_khz` to `to_khz` in [`RAMP_STEP_KHZ`] increments, ending
/// exactly on `to_khz` (ESP-Miner `frequency_transition`: one step every 100 ms).
#[derive(Debug, Clone)]
pub struct FrequencyRamp {
    current: u32,
    target: u32,
    done: bool,
}

impl FrequencyRamp {
    /// Ramp from `from_khz` (exclusive) to `to_khz` (inclusive).
    pub const fn new(from_khz: u32, to_khz: u32) -> Self {
        FrequencyRamp {
            current: from_khz,
            target: to_khz,
            done: from_khz == to_khz,
        }
    }
}

impl Iterator for FrequencyRamp {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.done {
            return None;
        }
        let next = if self.target > self.current {
            self.current.saturating_add(RAMP_STEP_KHZ).min(self.target)
        } else {
            self.current.saturating_sub(RAMP_STEP_KHZ).max(self.target)
        };
        self.current = next;
        self.done = next == self.target;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChipModel;

    fn value(model: ChipModel, mhz: u32) -> u32 {
        let limits = model.pll_limits();
        solve(mhz * 1000, &limits)
            .map(|p| p.register_value(&limits))
            .unwrap_or(0)
    }

    #[test]
    fn a_ramp_to_the_top_of_the_range_ends_there() {
        let ramp: Vec<u32> = FrequencyRamp::new(u32::MAX - 10_000, u32::MAX).collect();
        assert_eq!(ramp, [u32::MAX - 3_750, u32::MAX]);
    }

    #[test]
    fn solver_matches_the_worked_examples() {
        assert_eq!(value(ChipModel::Bm1366, 485), 0x50C2_0240);
        assert_eq!(value(ChipModel::Bm1370, 525), 0x40A8_0230);
        assert_eq!(value(ChipModel::Bm1370, 600), 0x50C0_0230);
        assert_eq!(value(ChipModel::Bm1368, 600), 0x4090_0220);
        assert_eq!(value(ChipModel::Bm1397, 485), 0x40C2_0251);
        assert_eq!(value(ChipModel::Bm1397, 525), 0x4054_0221);
        let p = solve(450_000, &ChipModel::Bm1397.pll_limits());
        assert_eq!(
            p,
            Some(PllParams {
                fbdiv: 72,
                refdiv: 2,
                postdiv1: 2,
                postdiv2: 1
            })
        );
    }

    #[test]
    fn register_values_decode_back() {
        // Older ESP-Miner's 525 MHz bytes differ but give the same clock.
        let old = PllParams::from_register(0x50D2_0240, PostDividerEncoding::MinusOne);
        assert_eq!(old.map(|p| p.frequency_khz()), Some(525_000));
        let reset = PllParams::from_register(0xC054_0165, PostDividerEncoding::MinusOne);
        assert_eq!(
            reset.map(|p| p.frequency_khz()),
            Some(POWER_ON_FREQUENCY_KHZ)
        );
    }

    #[test]
    fn ramp_ends_exactly_on_target() {
        let steps: heapless::Vec<u32, 128> = FrequencyRamp::new(50_000, 525_000).collect();
        assert_eq!(steps.first(), Some(&56_250));
        assert_eq!(steps.last(), Some(&525_000));
        assert_eq!(steps.len(), 76);
        assert!(steps.windows(2).all(|w| w[1] - w[0] <= RAMP_STEP_KHZ));
    }
}
