//! `hearth status`: the running daemon's state, from its API, readable in a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// `hearth status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's API, e.g. http://127.0.0.1:8080 (default: [api] listen from --config).
    #[arg(long)]
    pub api: Option<String>,
    /// Configuration file to find the API address in.
    #[arg(long, default_value = "hearth.toml")]
    pub config: PathBuf,
    /// Print the raw JSON of /api/status and /api/devices.
    #[arg(long)]
    pub json: bool,
}

/// Where the API is: `--api`, else `[api] listen` of the config file, else the default.
fn api_base(args: &StatusArgs) -> anyhow::Result<String> {
    if let Some(api) = &args.api {
        let api = api.trim_end_matches('/');
        return Ok(
            if api.starts_with("http://") || api.starts_with("https://") {
                api.to_string()
            } else {
                format!("http://{api}")
            },
        );
    }
    let listen = match crate::config::Config::load(&args.config) {
        Ok(c) => c.api.listen,
        Err(_) if !args.config.exists() => "127.0.0.1:8080".to_string(),
        Err(e) => return Err(e),
    };
    if listen.eq_ignore_ascii_case("off") {
        anyhow::bail!(
            "{}: [api] listen = \"off\": the daemon serves no API to ask",
            args.config.display()
        );
    }
    // A wildcard listen address is reached on loopback.
    let listen = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    Ok(format!("http://{listen}"))
}

/// Run `hearth status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let base = api_base(&args)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(&url).send().await.with_context(|| {
                format!("no hearth daemon answers at {url}: is it running (systemctl status hearth)? Is [api] listen elsewhere (--api)?")
            })?;
            let r = r
                .error_for_status()
                .with_context(|| format!("{url} answered with an error"))?;
            r.json::<Value>()
                .await
                .with_context(|| format!("{url} did not answer JSON"))
        }
    };
    let status = get("/api/status").await?;
    let devices = get("/api/devices").await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"status": status, "devices": devices})
            )?
        );
        return Ok(());
    }
    print!("{}", render(&status, &devices));
    Ok(())
}

/// Hashes per second with an SI prefix.
pub fn hashrate(h: f64) -> String {
    let units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
    let mut v = h;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.2} {}", units[i])
}

fn opt(v: &Value, suffix: &str, digits: usize) -> String {
    v.as_f64()
        .map_or("-".to_string(), |x| format!("{x:.digits$}{suffix}"))
}

/// The terminal view (pure, for tests).
pub fn render(status: &Value, devices: &Value) -> String {
    let mut out = String::new();
    let node = &status["node"];
    let node_line = if node["node_up"].as_bool() == Some(true) {
        "up".to_string()
    } else {
        format!(
            "DOWN ({})",
            node["node_error"].as_str().unwrap_or("no answer yet")
        )
    };
    out.push_str(&format!(
        "hearth on {}, up {}\n",
        status["network"].as_str().unwrap_or("?"),
        uptime(status["uptime_secs"].as_u64().unwrap_or(0))
    ));
    out.push_str(&format!("node        {node_line}\n"));
    out.push_str(&format!(
        "mining      height {} on {} (template {} s old, {} transactions, difficulty {})\n",
        node["height"]
            .as_u64()
            .map_or("-".into(), |h| h.to_string()),
        node["tip"].as_str().unwrap_or("-"),
        status["template_age_secs"]
            .as_u64()
            .map_or("-".into(), |a| a.to_string()),
        node["transactions"].as_u64().unwrap_or(0),
        opt(&node["network_difficulty"], "", 0),
    ));
    out.push_str(&format!(
        "work from   {}\n",
        node["work_source"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("node")
    ));
    if status["operator_paused"].as_bool() == Some(true) {
        out.push_str("PAUSED      by the operator (POST /api/control/resume)\n");
    } else if let Some(reason) = node["paused"].as_str() {
        out.push_str(&format!("PAUSED      {reason}\n"));
    }
    out.push_str(&format!(
        "hash rate   {} (1 m)  {} (10 m)  {} (1 h)\n",
        hashrate(status["hashrate_1m"].as_f64().unwrap_or(0.0)),
        hashrate(status["hashrate_10m"].as_f64().unwrap_or(0.0)),
        hashrate(status["hashrate_1h"].as_f64().unwrap_or(0.0)),
    ));
    // Found means on the node's active chain; a candidate is only a hash that met the target.
    let candidates = status["block_candidates"].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "blocks      {} found (on the node's active chain), from {candidates} candidate{}\n",
        status["blocks_accepted"].as_u64().unwrap_or(0),
        if candidates == 1 { "" } else { "s" },
    ));
    let list = devices.as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "\n{:<24} {:>12} {:>8} {:>7} {:>7} {:>8} {:>8} {:>7}\n",
        "device", "10 m", "shares", "stale%", "hwerr%", "chip °C", "power", "J/TH"
    ));
    for d in &list {
        let b = &d["board"];
        out.push_str(&format!(
            "{:<24} {:>12} {:>8} {:>7.2} {:>7.2} {:>8} {:>8} {:>7}{}\n",
            d["name"].as_str().unwrap_or("?"),
            hashrate(d["hashrate_10m"].as_f64().unwrap_or(0.0)),
            d["shares"].as_u64().unwrap_or(0),
            d["stale_rate"].as_f64().unwrap_or(0.0) * 100.0,
            d["hardware_error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            opt(&b["asic_temp_c"], "", 1),
            opt(&b["input_w"], " W", 1),
            opt(&d["joules_per_terahash"], "", 1),
            if d["paused"].as_bool() == Some(true) {
                "  paused"
            } else {
                ""
            },
        ));
    }
    if list.is_empty() {
        out.push_str("(no devices)\n");
    }
    out
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_view_says_what_matters() {
        let status = serde_json::json!({
            "network": "main", "uptime_secs": 7300, "operator_paused": false,
            "node": {"node_up": false, "node_error": "connection refused", "height": 900000,
                     "tip": "00000000000000000001", "transactions": 3000, "network_difficulty": 1.2e14,
                     "work_source": "node", "paused": "the node is not answering"},
            "template_age_secs": 12, "hashrate_1m": 1.2e12, "hashrate_10m": 1.1e12,
            "hashrate_1h": 1.0e12, "devices": 1, "block_candidates": 1, "blocks_accepted": 1
        });
        let devices = serde_json::json!([{"name": "board0", "hashrate_10m": 1.1e12, "shares": 42,
            "stale_rate": 0.01, "hardware_error_rate": 0.0, "paused": true,
            "board": {"asic_temp_c": 61.5, "input_w": 18.2}, "joules_per_terahash": 16.5}]);
        let text = render(&status, &devices);
        assert!(
            text.contains("node        DOWN (connection refused)"),
            "{text}"
        );
        assert!(
            text.contains("PAUSED      the node is not answering"),
            "{text}"
        );
        assert!(text.contains("1.20 TH/s (1 m)"), "{text}");
        assert!(
            text.contains("1 found (on the node's active chain), from 1 candidate\n"),
            "{text}"
        );
        assert!(
            text.contains("board0") && text.contains("61.5") && text.contains("18.2 W"),
            "{text}"
        );
        assert!(text.contains("up 2 h"), "{text}");
    }

    #[test]
    fn the_api_address_comes_from_the_flag_or_the_config() {
        let args = StatusArgs {
            api: Some("127.0.0.1:9999/".into()),
            config: "missing.toml".into(),
            json: false,
        };
        assert_eq!(
            api_base(&args).ok().as_deref(),
            Some("http://127.0.0.1:9999")
        );
        let args = StatusArgs {
            api: None,
            config: "/nonexistent/hearth.toml".into(),
            json: false,
        };
        assert_eq!(
            api_base(&args).ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }
}
