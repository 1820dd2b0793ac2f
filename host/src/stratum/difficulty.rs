//! Stratum difficulty: the 256-bit share target it stands for, and vardiff.
//!
//! Stratum V1 difficulty `d` means the target `0xFFFF · 2^208 / d` (the "bdiff" difficulty-1
//! target of Bitcoin's compact `0x1d00ffff`, as cgminer, ckpool and public-pool use it). Shares
//! are judged by comparing the 256-bit hash with that 256-bit target, never by comparing two
//! floating-point difficulties; `d` may be fractional (regtest needs about 0.0001).

use std::time::{Duration, Instant};

use bitcoin::Target;

/// The share target for a Stratum difficulty: `floor(0xFFFF · 2^208 / d)`, computed exactly
/// from the binary value of `d`. Difficulties too small to have a target below 2^256 give the
/// largest target; non-positive or non-finite ones are refused.
pub fn target_for_difficulty(difficulty: f64) -> Option<Target> {
    if !difficulty.is_finite() || difficulty <= 0.0 {
        return None;
    }
    // difficulty = mantissa · 2^exponent with an integer mantissa of at most 53 bits.
    let bits = difficulty.to_bits();
    let raw_exponent = ((bits >> 52) & 0x7FF) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mantissa, exponent) = if raw_exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), raw_exponent - 1075)
    };
    // The numerator 0xFFFF · 2^(208 - exponent), as six 64-bit limbs (little-endian), so that
    // a fractional difficulty's left shift fits; its right shift loses only bits that the
    // integer division would drop anyway.
    let mut numerator = [0u64; 6];
    let shift = 208 - exponent;
    if shift >= 0 {
        let shift = shift as usize;
        if shift + 16 > 64 * 6 {
            return Some(Target::from_be_bytes([0xFF; 32]));
        }
        let (limb, offset) = (shift / 64, shift % 64);
        let wide = 0xFFFFu128 << offset;
        numerator[limb] = wide as u64;
        if limb + 1 < 6 {
            numerator[limb + 1] = (wide >> 64) as u64;
        }
    } else {
        let right = (-shift) as u32;
        if right >= 16 {
            return Some(Target::ZERO);
        }
        numerator[0] = 0xFFFF >> right;
    }
    // Long division by the mantissa, most significant limb first.
    let mut quotient = [0u64; 6];
    let mut remainder = 0u128;
    for i in (0..6).rev() {
        let current = (remainder << 64) | u128::from(numerator[i]);
        quotient[i] = (current / u128::from(mantissa)) as u64;
        remainder = current % u128::from(mantissa);
    }
    if quotient[4] != 0 || quotient[5] != 0 {
        return Some(Target::from_be_bytes([0xFF; 32]));
    }
    let mut le = [0u8; 32];
    for (i, limb) in quotient[..4].iter().enumerate() {
        le[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
    }
    Some(Target::from_le_bytes(le))
}

/// Expected hashes for one share at `difficulty`: 2^256 over the target, which is
/// `d · 2^48 / 0xFFFF` (about `d · 2^32`).
pub fn hashes_for_difficulty(difficulty: f64) -> f64 {
    difficulty * 2f64.powi(48) / 65535.0
}

/// Vardiff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VardiffConfig {
    /// Difficulty given to a new session.
    pub start: f64,
    /// Lowest difficulty vardiff or a suggestion may set.
    pub min: f64,
    /// Highest difficulty vardiff or a suggestion may set.
    pub max: f64,
    /// Shares per minute to aim for.
    pub shares_per_minute: f64,
    /// Whether difficulty follows the share rate at all.
    pub enabled: bool,
}

impl VardiffConfig {
    /// `difficulty` within `[min, max]`.
    pub fn clamp(&self, difficulty: f64) -> f64 {
        difficulty.clamp(self.min, self.max)
    }

    fn target_interval(&self) -> Duration {
        Duration::from_secs_f64(60.0 / self.shares_per_minute)
    }
}

/// Shares counted after this many arrive in one window, whatever its age.
const RETARGET_SHARES: u32 = 16;
/// Or after this many target intervals.
const RETARGET_INTERVALS: u32 = 6;
/// Most one retarget changes the difficulty by, either way.
const MAX_STEP: f64 = 16.0;
/// A rate within this factor of the aim leaves the difficulty alone.
const DEAD_BAND: f64 = 2.0;

/// One session's vardiff: counts shares in a window and, when the window is full or old
/// enough, moves the difficulty toward the aimed share rate. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct Vardiff {
    config: VardiffConfig,
    window_start: Instant,
    shares: u32,
}

impl Vardiff {
    /// A vardiff whose first window starts `now`.
    pub fn new(config: VardiffConfig, now: Instant) -> Vardiff {
        Vardiff {
            config,
            window_start: now,
            shares: 0,
        }
    }

    /// Start counting afresh (after the difficulty was set from outside).
    pub fn restart(&mut self, now: Instant) {
        self.window_start = now;
        self.shares = 0;
    }

    /// An accepted share at `now`; returns a new difficulty when the window says so.
    pub fn on_share(&mut self, current: f64, now: Instant) -> Option<f64> {
        self.shares = self.shares.saturating_add(1);
        if self.shares >= RETARGET_SHARES {
            return self.retarget(current, now);
        }
        self.on_tick(current, now)
    }

    /// A periodic check at `now` (shares may have stopped coming altogether).
    pub fn on_tick(&mut self, current: f64, now: Instant) -> Option<f64> {
        let interval = self.config.target_interval();
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= interval * RETARGET_INTERVALS {
            return self.retarget(current, now);
        }
        None
    }

    fn retarget(&mut self, current: f64, now: Instant) -> Option<f64> {
        let elapsed = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64()
            .max(0.001);
        let shares = self.shares;
        self.restart(now);
        if !self.config.enabled {
            return None;
        }
        let aimed = elapsed / self.config.target_interval().as_secs_f64();
        // No share in the window: at least halve, more the longer it was quiet.
        let ratio = if shares == 0 {
            (1.0 / aimed).min(0.5)
        } else {
            f64::from(shares) / aimed
        };
        if (1.0 / DEAD_BAND..=DEAD_BAND).contains(&ratio) {
            return None;
        }
        let next = nice(
            self.config
                .clamp(current * ratio.clamp(1.0 / MAX_STEP, MAX_STEP)),
        );
        (next != current).then_some(next)
    }
}

/// A difficulty as miners display it: whole numbers from 1 up, three significant digits below.
fn nice(difficulty: f64) -> f64 {
    if difficulty >= 1.0 {
        difficulty.round()
    } else {
        let scale = 10f64.powi(2 - difficulty.log10().floor() as i32);
        (difficulty * scale).round() / scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(target: Target) -> String {
        hex::encode(target.to_be_bytes())
    }

    #[test]
    fn difficulty_one_is_the_bdiff_target() {
        assert_eq!(
            hex(target_for_difficulty(1.0).unwrap()),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            hex(target_for_difficulty(1024.0).unwrap()),
            "00000000003fffc0000000000000000000000000000000000000000000000000"
        );
        // 8192, the Bitaxe vector's pool difficulty.
        assert_eq!(
            hex(target_for_difficulty(8192.0).unwrap()),
            "000000000007fff8000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn fractional_difficulties_are_exact() {
        // 0.5 doubles the target; 2^-16 multiplies it by 65536.
        assert_eq!(
            hex(target_for_difficulty(0.5).unwrap()),
            "00000001fffe0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            hex(target_for_difficulty(1.0 / 65536.0).unwrap()),
            "0000ffff00000000000000000000000000000000000000000000000000000000"
        );
        // 0.0001 (regtest): 0xFFFF·2^208 / 0.0001, about 2^237.3.
        let t = target_for_difficulty(0.0001).unwrap().to_be_bytes();
        assert_eq!(&t[..4], &[0x00, 0x00, 0x27, 0x0f]);
        // Tiny difficulties saturate instead of wrapping.
        assert_eq!(
            target_for_difficulty(1e-30).unwrap().to_be_bytes(),
            [0xFF; 32]
        );
        assert_eq!(target_for_difficulty(0.0), None);
        assert_eq!(target_for_difficulty(-1.0), None);
        assert_eq!(target_for_difficulty(f64::NAN), None);
        // A monotone map: more difficulty, smaller target.
        let mut last = target_for_difficulty(1e-12).unwrap();
        for d in [1e-6, 0.001, 0.3, 1.0, 3.0, 1e3, 1e9, 1e15] {
            let t = target_for_difficulty(d).unwrap();
            assert!(t < last, "{d}");
            last = t;
        }
    }

    #[test]
    fn a_share_at_difficulty_d_is_worth_about_d_times_2_pow_32_hashes() {
        let ratio = hashes_for_difficulty(1.0) / 2f64.powi(32);
        assert!((ratio - 1.0).abs() < 1e-4);
    }

    fn config() -> VardiffConfig {
        VardiffConfig {
            start: 1.0,
            min: 0.001,
            max: 1e6,
            shares_per_minute: 6.0,
            enabled: true,
        }
    }

    #[test]
    fn vardiff_raises_a_flood_and_lowers_a_trickle() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(config(), t0);
        // 16 shares in 1 s against one per 10 s: up by the maximum step.
        let mut next = None;
        for i in 1..=16 {
            next = v.on_share(1.0, t0 + Duration::from_millis(60 * i));
        }
        assert_eq!(next, Some(16.0));
        // Nothing for six intervals: down by six (at least halved).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(v.on_tick(16.0, t1 + Duration::from_secs(59)), None);
        assert_eq!(v.on_tick(16.0, t1 + Duration::from_secs(60)), Some(3.0));
        // On target: left alone.
        let t2 = t1 + Duration::from_secs(60);
        for i in 1..=6 {
            assert_eq!(v.on_share(3.0, t2 + Duration::from_secs(10 * i)), None);
        }
    }

    #[test]
    fn vardiff_stays_within_its_bounds_and_can_be_off() {
        let t0 = Instant::now();
        let mut v = Vardiff::new(config(), t0);
        assert_eq!(v.on_tick(0.001, t0 + Duration::from_secs(600)), None);
        let mut off = Vardiff::new(
            VardiffConfig {
                enabled: false,
                ..config()
            },
            t0,
        );
        for i in 1..=40 {
            assert_eq!(off.on_share(1.0, t0 + Duration::from_millis(i)), None);
        }
    }
}
