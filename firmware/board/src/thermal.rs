//! Thermal policy as pure functions: fan duty toward a set point, throttling and hard stop with
//! hysteresis. The controller feeds them measurements; nothing here touches hardware.

/// Limits in milli-°C, from the board definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThermalLimits {
    /// Fan control set point for the chip.
    pub target_mc: i32,
    /// Frequency steps down above this.
    pub throttle_mc: i32,
    /// Hashing stops above this.
    pub shutdown_mc: i32,
    /// A limit clears this far below it.
    pub hysteresis_mc: i32,
    /// Regulator throttle point.
    pub vr_throttle_mc: i32,
    /// Regulator shutdown point.
    pub vr_shutdown_mc: i32,
    /// Lowest fan duty the loop uses, percent.
    pub min_fan_percent: u8,
}

/// Fan duty for a chip temperature: the minimum up to 5 °C below the set point, full at the
/// throttle point, linear in between. A proportional band rather than a PID: no state, no
/// windup, and the same answer for the same temperature (which makes it testable).
pub fn fan_percent(limits: &ThermalLimits, asic_mc: i32) -> u8 {
    let start = limits.target_mc - 5_000;
    let full = limits.throttle_mc;
    if asic_mc <= start || full <= start {
        return limits.min_fan_percent;
    }
    if asic_mc >= full {
        return 100;
    }
    let min = i64::from(limits.min_fan_percent);
    let span = i64::from(full - start);
    let above = i64::from(asic_mc - start);
    (min + (100 - min) * above / span).clamp(min, 100) as u8
}

/// Where the chip temperature puts the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThermalZone {
    /// Below the throttle point (or back below it by the hysteresis).
    Normal,
    /// Above the throttle point: step the frequency down.
    Throttle,
    /// Above the shutdown point: stop hashing, core off, fan full.
    Shutdown,
}

/// Next zone from the current one and a temperature, with hysteresis on the way down so the
/// board does not oscillate around a limit.
pub fn next_zone(
    limits: &ThermalLimits,
    current: ThermalZone,
    asic_mc: i32,
    vr_mc: Option<i32>,
) -> ThermalZone {
    let vr = vr_mc.unwrap_or(i32::MIN);
    if asic_mc >= limits.shutdown_mc || vr >= limits.vr_shutdown_mc {
        return ThermalZone::Shutdown;
    }
    let hot = asic_mc >= limits.throttle_mc || vr >= limits.vr_throttle_mc;
    match current {
        ThermalZone::Shutdown => {
            if asic_mc < limits.shutdown_mc - limits.hysteresis_mc
                && vr < limits.vr_shutdown_mc - limits.hysteresis_mc
            {
                if hot {
                    ThermalZone::Throttle
                } else {
                    ThermalZone::Normal
                }
            } else {
                ThermalZone::Shutdown
            }
        }
        ThermalZone::Throttle => {
            if asic_mc < limits.throttle_mc - limits.hysteresis_mc
                && vr < limits.vr_throttle_mc - limits.hysteresis_mc
            {
                ThermalZone::Normal
            } else {
                ThermalZone::Throttle
            }
        }
        ThermalZone::Normal => {
            if hot {
                ThermalZone::Throttle
            } else {
                ThermalZone::Normal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: ThermalLimits = ThermalLimits {
        target_mc: 60_000,
        throttle_mc: 75_000,
        shutdown_mc: 85_000,
        hysteresis_mc: 10_000,
        vr_throttle_mc: 105_000,
        vr_shutdown_mc: 115_000,
        min_fan_percent: 25,
    };

    #[test]
    fn fan_follows_the_band() {
        assert_eq!(fan_percent(&L, 20_000), 25);
        assert_eq!(fan_percent(&L, 55_000), 25);
        assert_eq!(fan_percent(&L, 65_000), 62);
        assert_eq!(fan_percent(&L, 75_000), 100);
        assert_eq!(fan_percent(&L, 120_000), 100);
        let mut last = 0;
        for t in (0..100_000).step_by(500) {
            let f = fan_percent(&L, t);
            assert!(f >= last, "monotonic");
            last = f;
        }
    }

    #[test]
    fn zones_have_hysteresis() {
        use ThermalZone::*;
        assert_eq!(next_zone(&L, Normal, 70_000, None), Normal);
        assert_eq!(next_zone(&L, Normal, 75_000, None), Throttle);
        assert_eq!(
            next_zone(&L, Throttle, 70_000, None),
            Throttle,
            "not 10 °C below yet"
        );
        assert_eq!(next_zone(&L, Throttle, 64_000, None), Normal);
        assert_eq!(next_zone(&L, Throttle, 85_000, None), Shutdown);
        assert_eq!(next_zone(&L, Shutdown, 80_000, None), Shutdown);
        assert_eq!(next_zone(&L, Shutdown, 74_000, None), Normal);
        assert_eq!(next_zone(&L, Normal, 50_000, Some(110_000)), Throttle);
        assert_eq!(next_zone(&L, Normal, 50_000, Some(116_000)), Shutdown);
    }
}
