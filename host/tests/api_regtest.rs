//! The HTTP API, dashboard and metrics of a daemon mining real regtest blocks with an emulated
//! board: every endpoint, the token on control, secrets redacted, /metrics as Prometheus
//! parses it, and the live stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use hearth::daemon::Daemon;
use serde_json::Value;

struct Api {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Api {
    /// Runs `hearth status` against this API.
    async fn status_command(&self) -> std::process::Output {
        let base = self.base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
                .args(["status", "--api", &base])
                .output()
        })
        .await
        .unwrap()
        .unwrap()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn start(extra: &str) -> (common_node::Guard, Daemon, Api) {
    let node = common::node(&[]).await;
    let journal = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let text = common::config_text(
        &node,
        &address.to_string(),
        journal.path(),
        &format!("{}\n{extra}", common::sim_device("board0", 2, 0.0, 0)),
    );
    let config = hearth::config::Config::parse(&text)
        .unwrap()
        .validate()
        .unwrap();
    let token_file = config.api_token_file.clone();
    let daemon = Daemon::start(config).await.unwrap();
    let addr = daemon.api_addr.expect("the API listens");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
    }
    let api = Api {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        token,
    };
    (common_node::Guard(node, journal), daemon, api)
}

mod common_node {
    /// Keeps the node and the journal alive for the test (dropping them stops the node and
    /// removes the journal).
    #[allow(dead_code)]
    pub struct Guard(pub hearth::regtest::RegtestNode, pub tempfile::TempDir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_while_mining() {
    let (_guard, daemon, api) =
        start("[notify]\nwebhook_url = \"http://user:pw@127.0.0.1:9/hook?token=sekret\"\n").await;
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 2, Duration::from_secs(120)).await;
    // Let the hash-rate windows fill a little.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (code, status) = api.get("/api/status").await;
    assert_eq!(code, 200);
    assert_eq!(status["network"], "regtest");
    assert_eq!(status["node"]["node_up"], true);
    assert!(status["node"]["height"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["node"]["work_source"], "node");
    assert!(status["node"]["network_difficulty"].as_f64().unwrap() > 0.0);
    assert!(status["template_age_secs"].is_u64());
    assert!(status["hashrate_1m"].as_f64().unwrap() > 0.0, "{status}");
    assert!(status["blocks_accepted"].as_u64().unwrap() >= 2);

    let (code, devices) = api.get("/api/devices").await;
    assert_eq!(code, 200);
    let board = &devices[0];
    assert_eq!(board["name"], "board0");
    assert_eq!(board["chips"].as_array().unwrap().len(), 2, "{board}");
    for key in [
        "hashrate_1m",
        "hashrate_10m",
        "hashrate_1h",
        "stale_rate",
        "duplicate_rate",
        "hardware_error_rate",
    ] {
        assert!(board[key].is_number(), "{key} in {board}");
    }
    assert!(
        board["chips"][0]["hashrate_10m"].as_f64().unwrap() > 0.0,
        "{board}"
    );
    let (code, one) = api.get("/api/devices/board0").await;
    assert_eq!((code, &one["name"]), (200, &Value::from("board0")));
    let (code, missing) = api.get("/api/devices/nope").await;
    assert_eq!(code, 404);
    assert!(missing["error"].as_str().unwrap().contains("nope"));

    let (code, shares) = api.get("/api/shares").await;
    assert_eq!(code, 200);
    assert!(shares["shares"].as_u64().unwrap() > 0);
    assert_eq!(shares["best"]["device"], "board0");
    assert!(shares["best"]["difficulty"].as_f64().unwrap() > 0.0);

    let (code, blocks) = api.get("/api/blocks").await;
    assert_eq!(code, 200);
    let accepted = blocks["accepted"].as_array().unwrap();
    assert!(accepted.len() >= 2, "{blocks}");
    assert_eq!(accepted[0]["outcome"], "accepted");
    assert_eq!(accepted[0]["device"], "board0");
    assert!(
        accepted[0]["height"].as_u64() > accepted[1]["height"].as_u64(),
        "newest first: {blocks}"
    );

    let (code, config) = api.get("/api/config").await;
    assert_eq!(code, 200);
    let text = config.to_string();
    assert!(!text.contains("sekret") && !text.contains("pw@"), "{text}");
    assert_eq!(
        config["notify"]["webhook_url"],
        "http://<redacted>@127.0.0.1:9/hook?<redacted>"
    );
    assert!(config["payout"]["address"].as_str().is_some());

    let (code, log) = api.get("/api/log").await;
    assert_eq!(code, 200);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("BLOCK FOUND")),
        "{log}"
    );

    let (code, doc) = api.get("/api/openapi.json").await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/status",
        "/api/devices",
        "/api/devices/{name}",
        "/api/shares",
        "/api/blocks",
        "/api/config",
        "/api/log",
        "/api/pool",
        "/api/events",
        "/metrics",
        "/api/control/pause",
        "/api/control/resume",
        "/api/devices/{name}/frequency",
        "/api/devices/{name}/voltage",
        "/api/devices/{name}/fan",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());

    let page = api
        .http
        .get(format!("{}/", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<title>Hearth</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN, no outside links"
    );

    // `hearth status` reads the same API for a terminal.
    let out = api.status_command().await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("hearth on regtest"), "{text}");
    assert!(text.contains("node        up"), "{text}");
    assert!(text.contains("on the node's active chain"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("board0")), "{text}");

    daemon.shutdown().await;

    // With the daemon gone, it says where it looked and what to check.
    let out = api.status_command().await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no hearth daemon answers at") && err.contains(&api.base),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_needs_the_token_and_pauses_and_resumes_the_devices() {
    let (_guard, daemon, api) = start("").await;
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 1, Duration::from_secs(120)).await;

    for path in [
        "/api/control/pause",
        "/api/control/resume",
        "/api/devices/board0/frequency",
        "/api/devices/board0/voltage",
        "/api/devices/board0/fan",
    ] {
        let (code, body) = api.post(path, None, serde_json::json!({})).await;
        assert_eq!(code, 401, "{path}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        let (code, _) = api
            .post(path, Some("wrong-token-0123456789"), serde_json::json!({}))
            .await;
        assert_eq!(code, 401, "{path} with a wrong token");
    }

    let (code, _) = api
        .post("/api/control/pause", Some(&api.token), Value::Null)
        .await;
    assert_eq!(code, 200);
    let (_, status) = api.get("/api/status").await;
    assert_eq!(status["operator_paused"], true);
    // The board stops: its result count stops moving.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = daemon.stats.snapshot()[0].results;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        daemon.stats.snapshot()[0].results,
        before,
        "no results while paused"
    );

    let (code, _) = api
        .post("/api/control/resume", Some(&api.token), Value::Null)
        .await;
    assert_eq!(code, 200);
    let mut fresh = daemon.events.subscribe();
    common::accepted_blocks(&mut fresh, 1, Duration::from_secs(60)).await;
    assert!(daemon.stats.snapshot()[0].results > before, "hashing again");
    let (_, status) = api.get("/api/status").await;
    assert_eq!(status["operator_paused"], false);

    // An emulated chain has no frequency, voltage or fan to set; bad requests say why.
    let (code, body) = api
        .post(
            "/api/devices/board0/frequency",
            Some(&api.token),
            serde_json::json!({"mhz": 500}),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    let (code, _) = api
        .post(
            "/api/devices/ghost/voltage",
            Some(&api.token),
            serde_json::json!({"mv": 1200}),
        )
        .await;
    assert_eq!(code, 404);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_the_stream_sends_snapshots() {
    let (_guard, daemon, api) = start("").await;
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 1, Duration::from_secs(120)).await;

    let r = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let find = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?} missing in:\n{text}"))
            .value
            .clone()
    };
    assert_eq!(find("hearth_up", None), prometheus_parse::Value::Gauge(1.0));
    assert_eq!(
        find("hearth_node_up", None),
        prometheus_parse::Value::Gauge(1.0)
    );
    match find("hearth_device_shares_total", Some(("device", "board0"))) {
        prometheus_parse::Value::Counter(v) => assert!(v > 0.0),
        other => panic!("shares are a counter: {other:?}"),
    }
    match find(
        "hearth_device_blocks_accepted_total",
        Some(("device", "board0")),
    ) {
        prometheus_parse::Value::Counter(v) => assert!(v >= 1.0),
        other => panic!("{other:?}"),
    }
    find("hearth_device_hashrate", Some(("window", "1h")));
    find("hearth_chip_hashrate", Some(("chip", "1")));
    find("hearth_journal_blocks", Some(("outcome", "accepted")));
    assert!(
        scrape.docs.contains_key("hearth_device_hashrate"),
        "HELP lines"
    );

    // The live stream: a snapshot within a few seconds.
    let mut r = api
        .http
        .get(format!("{}/api/events", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: snapshot") {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("a snapshot within 10 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = seen
        .lines()
        .skip_while(|l| *l != "event: snapshot")
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let snapshot: Value = serde_json::from_str(data).unwrap();
    assert_eq!(snapshot["devices"][0]["name"], "board0");
    // A shutdown closes the stream rather than hanging on it.
    tokio::time::timeout(Duration::from_secs(30), daemon.shutdown())
        .await
        .expect("shutdown with a live stream open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_off_the_devices_still_mine() {
    let node = common::node(&[]).await;
    let journal = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let text = common::config_text(
        &node,
        &address.to_string(),
        journal.path(),
        &common::sim_device("board0", 2, 0.0, 0),
    )
    .replace("listen = \"127.0.0.1:0\"", "listen = \"off\"");
    let config = hearth::config::Config::parse(&text)
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(config.api_listen, None);
    let daemon = Daemon::start(config).await.unwrap();
    assert_eq!(daemon.api_addr, None);
    let mut events = daemon.events.subscribe();
    common::accepted_blocks(&mut events, 2, Duration::from_secs(120)).await;
    assert!(
        !journal.path().join("api-token").exists(),
        "no token without an API"
    );
    daemon.shutdown().await;
}

/// The dashboard's log shows what the daemon logs as warnings, not only its events: the real
/// binary, as a user runs it, bound beyond loopback (a start-up warning logged before the log
/// is followed) and then paused through the API (a warning while it runs, seen live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_log_shows_the_daemons_warnings() {
    use std::io::BufRead as _;
    let node = common::node(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (address, _) = common::address("P2WPKH");
    let token_file = dir.path().join("api-token");
    let text = common::config_text(
        &node,
        &address.to_string(),
        &dir.path().join("journal"),
        &common::sim_device("board0", 2, 0.0, 0),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!(
            "listen = \"0.0.0.0:0\"\ntoken_file = \"{}\"",
            token_file.display()
        ),
    );
    let config_path = dir.path().join("hearth.toml");
    std::fs::write(&config_path, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["mine", "--log-format", "human", "--config"])
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = common::Killed(child);
    // The dashboard's address, from the daemon's own log line; the rest of stderr is drained.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(at) = line.find("dashboard=http://") {
                let url: String = line[at + "dashboard=".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = url_tx.send(url);
            }
        }
    });
    let url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the daemon logs its dashboard address");
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let log = |http: reqwest::Client, base: String| async move {
        http.get(format!("{base}/api/log"))
            .send()
            .await
            .unwrap()
            .json::<Vec<Value>>()
            .await
            .unwrap()
    };
    let lines = log(http.clone(), base.clone()).await;
    assert!(
        lines.iter().any(|l| l["level"] == "warn"
            && l["message"]
                .as_str()
                .unwrap()
                .contains("listen beyond this machine")),
        "the start-up warning about the listen address is not in /api/log: {lines:?}"
    );

    // Live: the stream carries a warning logged after it opened.
    let mut stream = http.get(format!("{base}/api/events")).send().await.unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let paused = http
        .post(format!("{base}/api/control/pause"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status().as_u16(), 200);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen
                .lines()
                .any(|l| l.starts_with("data:") && l.contains("devices paused through the API"))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no live log line for the pause's warning");
    let lines = log(http.clone(), base.clone()).await;
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "warn" && l["message"] == "devices paused through the API"),
        "{lines:?}"
    );
}
