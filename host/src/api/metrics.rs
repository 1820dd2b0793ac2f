//! `/metrics` in Prometheus' text exposition format (version 0.0.4): one family per quantity,
//! `# HELP` and `# TYPE` first, label values escaped. Written out directly from the same
//! snapshots the API serves, so the two never disagree.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::ApiState;
use super::views::joules_per_terahash;
use crate::submit::Outcome;

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// Label values: backslash, double quote and newline escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A metric family read off a device: name, help, value.
type DeviceMetric = (
    &'static str,
    &'static str,
    fn(&crate::events::DeviceStats) -> f64,
);
/// A metric family read off a board's measurements.
type BoardMetric = (
    &'static str,
    &'static str,
    fn(&crate::events::BoardReadings) -> Option<f64>,
);

const WINDOWS: [(&str, Duration); 3] = [
    ("1m", Duration::from_secs(60)),
    ("10m", Duration::from_secs(600)),
    ("1h", Duration::from_secs(3600)),
];

/// The whole exposition.
pub fn render(state: &ApiState, now: Instant) -> String {
    let mut text = String::new();
    let mut f = Family { out: &mut text };
    let status = state.status.status();
    let devices = state.stats.snapshot();

    f.head("hearth_up", "gauge", "1 while the daemon runs.");
    f.sample("hearth_up", &[("network", &state.network)], 1.0);
    f.head(
        "hearth_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    f.sample(
        "hearth_uptime_seconds",
        &[],
        state.started.elapsed().as_secs_f64(),
    );
    f.head("hearth_node_up", "gauge", "1 when the node answers.");
    f.sample("hearth_node_up", &[], f64::from(u8::from(status.node_up)));
    f.head(
        "hearth_paused",
        "gauge",
        "1 when the devices are paused (no work, or the operator).",
    );
    f.sample(
        "hearth_paused",
        &[],
        f64::from(u8::from(status.paused.is_some())),
    );
    if let Some(h) = status.height {
        f.head("hearth_block_height", "gauge", "Height being mined.");
        f.sample("hearth_block_height", &[], f64::from(h));
    }
    if let Some(t) = status.template_time {
        f.head(
            "hearth_template_age_seconds",
            "gauge",
            "Seconds since the current template arrived.",
        );
        f.sample(
            "hearth_template_age_seconds",
            &[],
            super::status::unix_now().saturating_sub(t) as f64,
        );
    }
    if let Some(d) = status.network_difficulty {
        f.head(
            "hearth_network_difficulty",
            "gauge",
            "Difficulty of the block being mined.",
        );
        f.sample("hearth_network_difficulty", &[], d);
    }

    f.head(
        "hearth_device_hashrate",
        "gauge",
        "Hashes per second from accepted shares, by window.",
    );
    for d in &devices {
        for (w, dur) in WINDOWS {
            f.sample(
                "hearth_device_hashrate",
                &[("device", &d.name), ("window", w)],
                d.rate.per_second(now, dur),
            );
        }
    }
    let counters: [DeviceMetric; 8] = [
        ("hearth_device_shares_total", "Accepted shares.", |d| {
            d.shares as f64
        }),
        (
            "hearth_device_work_hashes_total",
            "Accepted work in expected hashes.",
            |d| d.work_hashes,
        ),
        (
            "hearth_device_stale_total",
            "Results for replaced work.",
            |d| d.stale as f64,
        ),
        (
            "hearth_device_duplicates_total",
            "Results seen before.",
            |d| d.duplicates as f64,
        ),
        (
            "hearth_device_rejected_total",
            "Refused Stratum submissions.",
            |d| d.rejected as f64,
        ),
        (
            "hearth_device_hardware_errors_total",
            "Results that do not hash to the device's threshold.",
            |d| d.hardware_errors as f64,
        ),
        (
            "hearth_device_block_candidates_total",
            "Block candidates (hashes that met the network target).",
            |d| d.block_candidates as f64,
        ),
        (
            "hearth_device_blocks_accepted_total",
            "Blocks the node put on its active chain.",
            |d| d.blocks_accepted as f64,
        ),
    ];
    for (name, help, value) in counters {
        f.head(name, "counter", help);
        for d in &devices {
            f.sample(name, &[("device", &d.name)], value(d));
        }
    }
    f.head(
        "hearth_device_best_share_difficulty",
        "gauge",
        "Best share difficulty.",
    );
    for d in &devices {
        f.sample(
            "hearth_device_best_share_difficulty",
            &[("device", &d.name)],
            d.best_difficulty,
        );
    }

    f.head(
        "hearth_chip_hashrate",
        "gauge",
        "Hashes per second of one chip, by window.",
    );
    for d in &devices {
        for (i, c) in d.chips.iter().enumerate() {
            let chip = i.to_string();
            for (w, dur) in WINDOWS {
                f.sample(
                    "hearth_chip_hashrate",
                    &[("device", &d.name), ("chip", &chip), ("window", w)],
                    c.rate.per_second(now, dur),
                );
            }
        }
    }
    f.head(
        "hearth_chip_shares_total",
        "counter",
        "Accepted shares of one chip.",
    );
    for d in &devices {
        for (i, c) in d.chips.iter().enumerate() {
            f.sample(
                "hearth_chip_shares_total",
                &[("device", &d.name), ("chip", &i.to_string())],
                c.shares as f64,
            );
        }
    }
    f.head(
        "hearth_chip_hardware_errors_total",
        "counter",
        "Hardware errors of one chip.",
    );
    for d in &devices {
        for (i, c) in d.chips.iter().enumerate() {
            f.sample(
                "hearth_chip_hardware_errors_total",
                &[("device", &d.name), ("chip", &i.to_string())],
                c.hardware_errors as f64,
            );
        }
    }

    let boards: Vec<_> = devices
        .iter()
        .filter_map(|d| d.board.as_ref().map(|b| (d, b)))
        .collect();
    if !boards.is_empty() {
        f.head(
            "hearth_board_temperature_celsius",
            "gauge",
            "Board temperatures by sensor.",
        );
        for (d, b) in &boards {
            for (sensor, v) in [
                ("asic", b.asic_temp_c),
                ("board", b.board_temp_c),
                ("regulator", b.vr_temp_c),
            ] {
                if let Some(v) = v {
                    f.sample(
                        "hearth_board_temperature_celsius",
                        &[("device", &d.name), ("sensor", sensor)],
                        v,
                    );
                }
            }
        }
        let gauges: [BoardMetric; 7] = [
            ("hearth_board_fan_percent", "Fan duty, percent.", |b| {
                Some(f64::from(b.fan_percent))
            }),
            ("hearth_board_fan_rpm", "Fan speed.", |b| {
                b.fan_rpm.map(f64::from)
            }),
            ("hearth_board_core_volts", "Core voltage.", |b| b.vcore_v),
            ("hearth_board_core_amperes", "Core current.", |b| b.vcore_a),
            ("hearth_board_input_volts", "Input voltage.", |b| b.input_v),
            ("hearth_board_input_watts", "Input power.", |b| b.input_w),
            ("hearth_board_frequency_mhz", "Hash clock.", |b| {
                Some(b.frequency_mhz)
            }),
        ];
        for (name, help, value) in gauges {
            f.head(name, "gauge", help);
            for (d, b) in &boards {
                if let Some(v) = value(b) {
                    f.sample(name, &[("device", &d.name)], v);
                }
            }
        }
        f.head(
            "hearth_board_joules_per_terahash",
            "gauge",
            "Input power over the last 10 minutes' hash rate.",
        );
        for (d, b) in &boards {
            if let Some(v) =
                joules_per_terahash(b.input_w, d.rate.per_second(now, Duration::from_secs(600)))
            {
                f.sample(
                    "hearth_board_joules_per_terahash",
                    &[("device", &d.name)],
                    v,
                );
            }
        }
    }

    let pool = super::pool_view(state);
    if let Some(m) = &pool.member {
        f.head(
            "hearth_pool_member_connected",
            "gauge",
            "1 while logged in to the pool's coordinator.",
        );
        f.sample(
            "hearth_pool_member_connected",
            &[],
            f64::from(u8::from(m.connected)),
        );
        f.head(
            "hearth_pool_member_solo",
            "gauge",
            "1 while mining solo because the coordinator is away.",
        );
        f.sample("hearth_pool_member_solo", &[], f64::from(u8::from(m.solo)));
        f.head(
            "hearth_pool_member_shares_total",
            "counter",
            "Shares sent to the coordinator, by its answer.",
        );
        f.sample(
            "hearth_pool_member_shares_total",
            &[("result", "accepted")],
            m.accepted as f64,
        );
        for (kind, n) in &m.rejected {
            f.sample(
                "hearth_pool_member_shares_total",
                &[("result", kind)],
                *n as f64,
            );
        }
        f.sample(
            "hearth_pool_member_shares_total",
            &[("result", "unsent")],
            m.unsent as f64,
        );
        f.head(
            "hearth_pool_member_difficulty",
            "gauge",
            "The coordinator's share difficulty for this member.",
        );
        f.sample("hearth_pool_member_difficulty", &[], m.difficulty);
    }
    if let Some(c) = &pool.coordinator {
        f.head(
            "hearth_pool_ledger_entries",
            "gauge",
            "Entries in the pool's ledger.",
        );
        f.sample("hearth_pool_ledger_entries", &[], c.ledger_entries as f64);
        f.head(
            "hearth_pool_shares_total",
            "counter",
            "Shares members sent, by member and result.",
        );
        for m in &c.members {
            f.sample(
                "hearth_pool_shares_total",
                &[("member", &m.name), ("result", "accepted")],
                m.accepted as f64,
            );
            for (kind, n) in &m.rejected {
                f.sample(
                    "hearth_pool_shares_total",
                    &[("member", &m.name), ("result", kind)],
                    *n as f64,
                );
            }
        }
        f.head(
            "hearth_pool_member_connections",
            "gauge",
            "Connections per member.",
        );
        for m in &c.members {
            f.sample(
                "hearth_pool_member_connections",
                &[("member", &m.name)],
                f64::from(m.connected),
            );
        }
    }

    f.head(
        "hearth_journal_blocks",
        "gauge",
        "Blocks in the journal by outcome.",
    );
    for (outcome, name) in [
        (Outcome::Accepted, "accepted"),
        (Outcome::Unknown, "pending"),
        (Outcome::Stale, "stale"),
        (Outcome::Rejected, "rejected"),
    ] {
        f.sample(
            "hearth_journal_blocks",
            &[("outcome", name)],
            state.journal.entries(outcome) as f64,
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_grafana_dashboard_uses_only_metrics_that_exist() {
        let dashboard = include_str!("../../../docs/grafana/hearth-dashboard.json");
        let source = include_str!("metrics.rs");
        let mut checked = 0;
        for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("hearth_") && word != "hearth_" {
                assert!(
                    source.contains(&format!("\"{word}\"")),
                    "docs/grafana/hearth-dashboard.json uses {word}, which /metrics does not export"
                );
                checked += 1;
            }
        }
        assert!(checked > 10, "{checked} metric references");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn numbers_use_prometheus_spellings() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(3.0), "3");
    }
}
