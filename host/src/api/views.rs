//! What the API answers: plain data built from the daemon's counters, status and journal.

use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::status::NodeStatus;
use crate::events::{BoardReadings, ChipStats, DeviceStats};
use crate::submit::{Journal, Outcome};

const MINUTE: Duration = Duration::from_secs(60);
const TEN_MINUTES: Duration = Duration::from_secs(600);
const HOUR: Duration = Duration::from_secs(3600);

/// An error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorView {
    /// What was wrong and what to do.
    pub error: String,
}

/// A control request's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlView {
    /// Done.
    pub ok: bool,
    /// What was done.
    pub detail: String,
}

/// `/api/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Paused through the API.
    pub operator_paused: bool,
    /// The node and the work.
    pub node: NodeStatus,
    /// Seconds since the current template arrived.
    pub template_age_secs: Option<u64>,
    /// All devices, hashes per second, last minute.
    pub hashrate_1m: f64,
    /// Last 10 minutes.
    pub hashrate_10m: f64,
    /// Last hour.
    pub hashrate_1h: f64,
    /// Devices, Stratum miners included.
    pub devices: usize,
    /// Block candidates (hashes that met the network target).
    pub block_candidates: u64,
    /// Blocks the node has on its active chain.
    pub blocks_accepted: u64,
}

/// One chip of a board.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChipView {
    /// Position on the chain (0 = nearest the controller).
    pub index: usize,
    /// Hashes per second, last minute.
    pub hashrate_1m: f64,
    /// Last 10 minutes.
    pub hashrate_10m: f64,
    /// Last hour.
    pub hashrate_1h: f64,
    /// Accepted shares.
    pub shares: u64,
    /// Accepted work, expected hashes.
    pub work_hashes: f64,
    /// Results for replaced work.
    pub stale: u64,
    /// Results seen before.
    pub duplicates: u64,
    /// Results that did not hash to the chip's threshold.
    pub hardware_errors: u64,
    /// Stale results per result.
    pub stale_rate: f64,
    /// Duplicates per result.
    pub duplicate_rate: f64,
    /// Hardware errors per result.
    pub hardware_error_rate: f64,
}

impl ChipView {
    fn new(index: usize, c: &ChipStats, now: Instant) -> Self {
        let results = c.shares + c.stale + c.duplicates + c.hardware_errors;
        ChipView {
            index,
            hashrate_1m: c.rate.per_second(now, MINUTE),
            hashrate_10m: c.rate.per_second(now, TEN_MINUTES),
            hashrate_1h: c.rate.per_second(now, HOUR),
            shares: c.shares,
            work_hashes: c.work_hashes,
            stale: c.stale,
            duplicates: c.duplicates,
            hardware_errors: c.hardware_errors,
            stale_rate: ratio(c.stale, results),
            duplicate_rate: ratio(c.duplicates, results),
            hardware_error_rate: ratio(c.hardware_errors, results),
        }
    }
}

/// One device: a board, an emulated chain, the CPU, or a Stratum miner (`stratum:<worker>`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Name.
    pub name: String,
    /// `board` (a Hearth board with telemetry), `stratum` (a miner on the Stratum port) or
    /// `device` (an emulated or serial chain, the CPU).
    pub kind: String,
    /// Hashes per second, last minute.
    pub hashrate_1m: f64,
    /// Last 10 minutes.
    pub hashrate_10m: f64,
    /// Last hour.
    pub hashrate_1h: f64,
    /// Results handed to the share checker.
    pub results: u64,
    /// Accepted shares.
    pub shares: u64,
    /// Accepted work, expected hashes.
    pub work_hashes: f64,
    /// Results for replaced work.
    pub stale: u64,
    /// Results seen before.
    pub duplicates: u64,
    /// Stratum submissions refused for another reason.
    pub rejected: u64,
    /// Results that do not hash to the device's threshold.
    pub hardware_errors: u64,
    /// Stale results per result.
    pub stale_rate: f64,
    /// Duplicates per result.
    pub duplicate_rate: f64,
    /// Hardware errors per result.
    pub hardware_error_rate: f64,
    /// Block candidates.
    pub block_candidates: u64,
    /// Blocks on the node's active chain.
    pub blocks_accepted: u64,
    /// Best share difficulty.
    pub best_difficulty: f64,
    /// Unix time of the best share.
    pub best_at: Option<u64>,
    /// Stopped hashing.
    pub paused: bool,
    /// Board measurements (Hearth boards).
    pub board: Option<BoardReadings>,
    /// Efficiency: input power over the last 10 minutes' hash rate, joules per terahash.
    pub joules_per_terahash: Option<f64>,
    /// Per chip.
    pub chips: Vec<ChipView>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl DeviceView {
    /// The view of one device's counters at `now`.
    pub fn new(d: &DeviceStats, now: Instant) -> Self {
        let hashrate_10m = d.rate.per_second(now, TEN_MINUTES);
        let kind = if d.name.starts_with("stratum:") {
            "stratum"
        } else if d.board.is_some() {
            "board"
        } else {
            "device"
        };
        let watts = d.board.as_ref().and_then(|b| b.input_w);
        DeviceView {
            name: d.name.clone(),
            kind: kind.into(),
            hashrate_1m: d.rate.per_second(now, MINUTE),
            hashrate_10m,
            hashrate_1h: d.rate.per_second(now, HOUR),
            results: d.results,
            shares: d.shares,
            work_hashes: d.work_hashes,
            stale: d.stale,
            duplicates: d.duplicates,
            rejected: d.rejected,
            hardware_errors: d.hardware_errors,
            stale_rate: ratio(d.stale, d.results),
            duplicate_rate: ratio(d.duplicates, d.results),
            hardware_error_rate: ratio(d.hardware_errors, d.results),
            block_candidates: d.block_candidates,
            blocks_accepted: d.blocks_accepted,
            best_difficulty: d.best_difficulty,
            best_at: d.best_at,
            paused: d.paused,
            board: d.board.clone(),
            joules_per_terahash: joules_per_terahash(watts, hashrate_10m),
            chips: d
                .chips
                .iter()
                .enumerate()
                .map(|(i, c)| ChipView::new(i, c, now))
                .collect(),
        }
    }
}

/// W / (TH/s) = J/TH; none without a power reading or a hash rate.
pub fn joules_per_terahash(watts: Option<f64>, hashes_per_second: f64) -> Option<f64> {
    let watts = watts?;
    (hashes_per_second > 0.0).then(|| watts / (hashes_per_second / 1e12))
}

/// The best share so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct BestShare {
    /// Difficulty.
    pub difficulty: f64,
    /// Device that found it.
    pub device: String,
    /// Unix time.
    pub time: Option<u64>,
}

/// `/api/shares`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharesView {
    /// Accepted shares, all devices.
    pub shares: u64,
    /// Accepted work, expected hashes.
    pub work_hashes: f64,
    /// Stale results.
    pub stale: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Refused Stratum submissions.
    pub rejected: u64,
    /// Hardware errors.
    pub hardware_errors: u64,
    /// The best share.
    pub best: Option<BestShare>,
}

impl SharesView {
    /// Totals over every device.
    pub fn new(devices: &[DeviceStats]) -> Self {
        let best = devices
            .iter()
            .filter(|d| d.best_difficulty > 0.0)
            .max_by(|a, b| a.best_difficulty.total_cmp(&b.best_difficulty))
            .map(|d| BestShare {
                difficulty: d.best_difficulty,
                device: d.name.clone(),
                time: d.best_at,
            });
        SharesView {
            shares: devices.iter().map(|d| d.shares).sum(),
            work_hashes: devices.iter().map(|d| d.work_hashes).sum(),
            stale: devices.iter().map(|d| d.stale).sum(),
            duplicates: devices.iter().map(|d| d.duplicates).sum(),
            rejected: devices.iter().map(|d| d.rejected).sum(),
            hardware_errors: devices.iter().map(|d| d.hardware_errors).sum(),
            best,
        }
    }
}

/// One journalled block.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockView {
    /// Height.
    pub height: u32,
    /// Block hash.
    pub hash: String,
    /// Device that found it.
    pub device: String,
    /// Unix time it was found.
    pub found_at: u64,
    /// `accepted` (on the node's active chain), `pending` (submitted or being submitted,
    /// not confirmed yet), `stale` (valid, another block took the height) or `rejected`.
    pub outcome: String,
}

/// `/api/blocks`: from the journal, newest first.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BlocksView {
    /// Blocks the node has on its active chain.
    pub accepted: Vec<BlockView>,
    /// Candidates waiting for the node's verdict.
    pub pending: Vec<BlockView>,
    /// Valid blocks another block beat.
    pub stale: Vec<BlockView>,
    /// Blocks the node refused.
    pub rejected: Vec<BlockView>,
}

impl BlocksView {
    /// The newest `limit` entries of each kind (blocking: reads files).
    pub fn read(journal: &Journal, limit: usize) -> Self {
        let list = |outcome: Outcome, name: &str| {
            journal
                .list(outcome, limit)
                .into_iter()
                .map(|e| BlockView {
                    height: e.height,
                    hash: e.hash,
                    device: e.device,
                    found_at: e.found_at,
                    outcome: name.to_string(),
                })
                .collect()
        };
        BlocksView {
            accepted: list(Outcome::Accepted, "accepted"),
            pending: list(Outcome::Unknown, "pending"),
            stale: list(Outcome::Stale, "stale"),
            rejected: list(Outcome::Rejected, "rejected"),
        }
    }
}

/// The configuration as JSON, with every secret replaced by `"<redacted>"`: the node's
/// password, pool passwords, credentials and queries in URLs.
pub fn redacted_config(config: &crate::config::Config) -> serde_json::Value {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    const REDACTED: &str = "<redacted>";
    if let Some(node) = value.get_mut("node") {
        if node.get("password").is_some_and(|p| !p.is_null()) {
            node["password"] = REDACTED.into();
        }
        if let Some(url) = node.get("url").and_then(|u| u.as_str()) {
            node["url"] = redact_url(url).into();
        }
    }
    if let Some(pools) = value
        .get_mut("pool")
        .and_then(|p| p.get_mut("upstream"))
        .and_then(|p| p.as_array_mut())
    {
        for pool in pools {
            pool["password"] = REDACTED.into();
            if let Some(url) = pool.get("url").and_then(|u| u.as_str()) {
                pool["url"] = redact_url(url).into();
            }
        }
    }
    if let Some(url) = value
        .get("notify")
        .and_then(|n| n.get("webhook_url"))
        .and_then(|u| u.as_str())
    {
        value["notify"]["webhook_url"] = redact_url(url).into();
    }
    value
}

/// A URL without its user:password, query and fragment (webhook tokens often ride in any of
/// them). The authority ends at the first `/`, `?` or `#` (RFC 3986 §3.2), so
/// `http://h:9000?token=x` loses its token too.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_string(),
    };
    let tail = match tail.find(['?', '#']) {
        Some(i) => format!("{}{}<redacted>", &tail[..i], &tail[i..=i]),
        None => tail.to_string(),
    };
    if scheme.is_empty() {
        format!("{host}{tail}")
    } else {
        format!("{scheme}://{host}{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            redact_url("https://user:secret@hooks.example/x/y?token=abc"),
            "https://<redacted>@hooks.example/x/y?<redacted>"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9000/hearth"),
            "http://127.0.0.1:9000/hearth"
        );
        assert_eq!(
            redact_url("stratum+tcp://pool:3333"),
            "stratum+tcp://pool:3333"
        );
        // A query or fragment straight after the authority, and a user with no password.
        assert_eq!(
            redact_url("http://h:9000?token=x"),
            "http://h:9000?<redacted>"
        );
        assert_eq!(redact_url("http://h:9000#t=x"), "http://h:9000#<redacted>");
        assert_eq!(
            redact_url("http://key@h/hook#t"),
            "http://<redacted>@h/hook#<redacted>"
        );
        assert_eq!(redact_url("h:1/a?b@c"), "h:1/a?<redacted>");
    }

    #[test]
    fn efficiency_needs_power_and_hashes() {
        assert_eq!(joules_per_terahash(None, 1e12), None);
        assert_eq!(joules_per_terahash(Some(15.0), 0.0), None);
        let jth = joules_per_terahash(Some(15.0), 1e12).unwrap_or_default();
        assert!((jth - 15.0).abs() < 1e-9);
    }
}
