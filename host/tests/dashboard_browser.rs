//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/chromium.sh`) loads it from `hearth demo` mining real regtest blocks, driven over
//! the DevTools protocol. The hash rate, the board's row, its chips (after a real click on the
//! row) and the found blocks must show, and must move between two readings seconds apart; the
//! page must throw no script error; at a phone's width the panels stack and nothing scrolls
//! sideways. Screenshots are saved to `target/dashboard-screenshot.png` and
//! `target/dashboard-phone-screenshot.png`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Chips on the demo's emulated board.
const CHIPS: usize = 4;

/// Chromium: `HEARTH_CHROMIUM`, else `chromium` on the PATH, else what `scripts/chromium.sh`
/// installs; a panic that says how to get it otherwise.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("HEARTH_CHROMIUM").map(PathBuf::from) {
        assert!(
            path.is_file(),
            "HEARTH_CHROMIUM={} is not a file; unset it, or install Chromium with \
             scripts/chromium.sh",
            path.display()
        );
        return path;
    }
    let script = common::repo_root().join("scripts/chromium.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.is_file() {
        panic!(
            "this test needs headless Chromium: {} failed. Install it with scripts/chromium.sh \
             (Debian's `chromium` package: apt-get install chromium) or set HEARTH_CHROMIUM",
            script.display()
        );
    }
    path
}

/// A DevTools protocol client over one WebSocket, talking to one page (flat session).
struct Cdp {
    socket: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    session: Option<String>,
    /// Script errors and `console.error` lines the page produced.
    errors: Vec<String>,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").unwrap();
        let host = rest.split('/').next().unwrap();
        let stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (socket, _) = tungstenite::client(ws_url, stream).unwrap();
        Cdp {
            socket,
            next_id: 0,
            session: None,
            errors: Vec::new(),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = s.clone().into();
        }
        self.socket
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let frame = self.socket.read().unwrap();
            let tungstenite::Message::Text(text) = frame else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            match v["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    let d = &v["params"]["exceptionDetails"];
                    self.errors.push(format!(
                        "{} {}",
                        d["text"].as_str().unwrap_or(""),
                        d["exception"]["description"].as_str().unwrap_or("")
                    ));
                }
                Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                    self.errors.push(v["params"]["args"].to_string());
                }
                _ => {}
            }
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A real mouse click at the middle of the first element matching `selector`.
    fn click(&mut self, selector: &str) {
        let rect = self.eval(&format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }
}

/// What the test reads off the page (`{error}` while the page is not there yet).
const READ: &str = r##"(() => { try {
  const t = (id) => document.getElementById(id).textContent.trim();
  const row = document.querySelector('#devices tr.device[data-name="board0"]');
  const chips = [...document.querySelectorAll('#devices table.chip-table tbody tr')]
    .map((r) => [...r.cells].map((c) => c.textContent.trim()));
  return {
    hashrate: t("hashrate"),
    updated: t("updated"),
    height: t("height"),
    netdiff: t("netdiff"),
    best: t("best"),
    bestBy: t("best-by"),
    shares: t("shares"),
    blocksCount: t("blocks-count"),
    blocks: [...document.querySelectorAll("#blocks .found")].map((e) => e.textContent.trim()),
    device: row ? [...row.cells].map((c) => c.textContent.trim()) : null,
    chips,
    log: document.getElementById("log").childElementCount,
  };
} catch (e) { return { error: String(e) }; } })()"##;

fn is_rate(text: &str) -> bool {
    // "116 kH/s", "1.05 MH/s", "12.3 H/s" (and not "0.00 H/s", not "–").
    let Some((number, unit)) = text.split_once(' ') else {
        return false;
    };
    number.parse::<f64>().is_ok_and(|v| v > 0.0)
        && unit.ends_with("H/s")
        && unit.len() <= 4
        && unit.chars().next().is_some_and(|c| "HkMGTPE".contains(c))
}

/// `#<height> by board0, …` → the height.
fn block_height(line: &str) -> Option<u64> {
    let rest = line.strip_prefix('#')?;
    let (height, rest) = rest.split_once(' ')?;
    rest.starts_with("by board0").then_some(())?;
    height.parse().ok()
}

fn wait_for(cdp: &mut Cdp, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let page = cdp.eval(READ);
        if ok(&page) {
            return page;
        }
        if Instant::now() > deadline {
            panic!("{what} within {timeout:?}; the page shows: {page:#}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn screenshot_path() -> PathBuf {
    // target/tmp → target/dashboard-screenshot.png
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshot.png")
}

#[test]
fn the_dashboard_shows_live_mining_in_a_real_browser() {
    let browser = chromium();
    let bitcoind =
        hearth::regtest::bitcoind_from_scripts(&common::repo_root()).unwrap_or_else(|e| {
            panic!("this test needs bitcoind: {e:#}\nget it with scripts/bitcoind.sh")
        });

    let port = hearth::regtest::free_port().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "demo",
            "--blocks",
            "0",
            "--api",
            &format!("127.0.0.1:{port}"),
        ])
        .env("HEARTH_BITCOIND", &bitcoind)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let _demo = common::Terminated(demo);
    let url = loop {
        let line = lines
            .next()
            .expect("the demo prints its dashboard address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep reading the demo's output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let profile = tempfile::tempdir().unwrap();
    let mut chrome = Command::new(&browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut errors = BufReader::new(chrome.stderr.take().unwrap()).lines();
    let _chrome = common::Killed(chrome);
    let browser_ws = loop {
        let line = errors
            .next()
            .expect("Chromium prints its DevTools address")
            .unwrap();
        if let Some(ws) = line.strip_prefix("DevTools listening on ") {
            break ws.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in errors {});

    let mut cdp = Cdp::connect(&browser_ws);
    let targets = cdp.call("Target.getTargets", json!({}));
    let page = targets["targetInfos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page")["targetId"]
        .clone();
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({ "targetId": page, "flatten": true }),
    );
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_string());
    cdp.call("Runtime.enable", json!({}));
    cdp.call("Page.enable", json!({}));
    cdp.call("Page.navigate", json!({ "url": url }));

    // First reading: a hash rate, the board's row, a found block.
    let first = wait_for(
        &mut cdp,
        "a hash rate, the board0 row and a block by board0",
        Duration::from_secs(90),
        |p| {
            is_rate(p["hashrate"].as_str().unwrap_or(""))
                && p["device"].is_array()
                && p["blocks"]
                    .as_array()
                    .and_then(|b| b.first())
                    .and_then(|b| block_height(b.as_str()?))
                    .is_some()
        },
    );
    let device = first["device"].as_array().unwrap();
    assert_eq!(device[0], "board0", "{first:#}");
    assert!(is_rate(device[1].as_str().unwrap()), "1 m rate: {first:#}");
    let shares_before: u64 = device[4].as_str().unwrap().parse().unwrap();

    // A real click on the board's row opens its chip table, which must survive the live
    // updates that re-render the table.
    cdp.click(r#"#devices tr.device[data-name="board0"]"#);
    let opened = wait_for(
        &mut cdp,
        "the chip table after a click on board0",
        Duration::from_secs(10),
        |p| p["chips"].as_array().is_some_and(|c| c.len() == CHIPS),
    );
    std::thread::sleep(Duration::from_secs(6));

    // Second reading, seconds later: everything moved.
    let second = cdp.eval(READ);
    println!("dashboard, first reading: {first}");
    println!("dashboard, second reading: {second}");
    let chips = second["chips"].as_array().unwrap();
    assert_eq!(chips.len(), CHIPS, "the chip table stays open: {second:#}");
    for (i, chip) in chips.iter().enumerate() {
        assert_eq!(chip[0], format!("chip {i}"), "{second:#}");
        assert!(
            chip[1].as_str().unwrap().ends_with("H/s"),
            "chip {i}: {second:#}"
        );
    }
    assert!(
        chips.iter().any(|c| is_rate(c[1].as_str().unwrap())),
        "some chip hashes: {second:#}"
    );
    assert_ne!(second["updated"], first["updated"], "live updates");
    assert!(is_rate(second["hashrate"].as_str().unwrap()), "{second:#}");
    let shares_after: u64 = second["device"][4].as_str().unwrap().parse().unwrap();
    assert!(
        shares_after > shares_before,
        "board0's shares move: {shares_before} then {shares_after}"
    );
    let newest = |p: &Value| block_height(p["blocks"][0].as_str().unwrap()).unwrap();
    assert!(
        newest(&second) > newest(&first),
        "new blocks show: #{} then #{}",
        newest(&first),
        newest(&second)
    );
    assert_ne!(second["height"], first["height"], "the height moves");
    let chip_shares = |p: &Value| -> u64 {
        p["chips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[4].as_str().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert!(
        chip_shares(&second) > chip_shares(&opened),
        "the chips' shares move: {opened:#} then {second:#}"
    );
    // The best share and the share count follow the live updates too, and small numbers
    // (regtest's difficulty, the demo's share difficulties) are not shown as zero.
    for key in ["best", "netdiff"] {
        let v = second[key].as_str().unwrap();
        assert!(
            v.parse::<f64>().is_ok_and(|v| v > 0.0),
            "{key} is a positive number: {second:#}"
        );
    }
    assert!(
        second["bestBy"].as_str().unwrap().starts_with("by board0"),
        "{second:#}"
    );
    assert_eq!(
        second["shares"], second["device"][4],
        "the share total is the board's: {second:#}"
    );
    // The count of blocks found agrees with the newest height once every block is the demo's
    // (regtest starts at height 0 and only board0 mines).
    let count: u64 = second["blocksCount"].as_str().unwrap().parse().unwrap();
    assert!(count >= newest(&first), "blocks found: {second:#}");

    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = decode_base64(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_path();
    std::fs::write(&path, png).unwrap();
    println!("dashboard screenshot: {}", path.display());

    // On a phone (375 CSS pixels wide): the panels stack in one column and the page does not
    // scroll sideways (the device table scrolls inside its own box).
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": true }),
    );
    std::thread::sleep(Duration::from_millis(500));
    let phone = cdp.eval(
        "(() => { const s = [...document.querySelectorAll('main > section')].map((e) => e.getBoundingClientRect()); \
         return { pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth, \
         lefts: [...new Set(s.map((r) => Math.round(r.left)))].length, \
         widest: Math.max(...s.map((r) => r.right)) }; })()",
    );
    let viewport = phone["viewport"].as_f64().unwrap();
    assert_eq!(viewport, 375.0, "{phone:#}");
    assert!(
        phone["pageWidth"].as_f64().unwrap() <= viewport,
        "the page scrolls sideways on a phone: {phone:#}"
    );
    assert_eq!(
        phone["lefts"], 1,
        "one column of panels on a phone: {phone:#}"
    );
    assert!(phone["widest"].as_f64().unwrap() <= viewport, "{phone:#}");
    let shot = cdp.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = decode_base64(shot["data"].as_str().unwrap());
    let phone_path = path.with_file_name("dashboard-phone-screenshot.png");
    std::fs::write(&phone_path, png).unwrap();
    println!("phone screenshot: {}", phone_path.display());

    assert!(
        cdp.errors.is_empty(),
        "the page threw script errors: {:#?}",
        cdp.errors
    );
}
