//! A Stratum V1 miner for tests, written from the client's side and independently of the
//! server's code: it assembles the coinbase from coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2,
//! folds the merkle branch, builds the 80-byte header byte by byte, and compares difficulties
//! as floating-point numbers, the way the firmware of real miners does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256d};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A `mining.notify`, parsed as a miner parses it.
#[derive(Debug, Clone)]
pub struct Notify {
    pub job_id: String,
    /// Internal byte order (the words of the Stratum form swapped back).
    pub prev: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean: bool,
}

impl Notify {
    fn parse(params: &[Value]) -> Notify {
        assert_eq!(params.len(), 9, "mining.notify has 9 params: {params:?}");
        let text = |i: usize| params[i].as_str().unwrap().to_string();
        let word = |i: usize| {
            let t = text(i);
            assert_eq!(t.len(), 8, "param {i} must be 8 hex digits: {t}");
            u32::from_str_radix(&t, 16).unwrap()
        };
        let stratum_prev = hex::decode(text(1)).unwrap();
        assert_eq!(stratum_prev.len(), 32);
        let mut prev = [0u8; 32];
        for (i, chunk) in stratum_prev.chunks(4).enumerate() {
            for (j, b) in chunk.iter().rev().enumerate() {
                prev[i * 4 + j] = *b;
            }
        }
        Notify {
            job_id: text(0),
            prev,
            coinb1: hex::decode(text(2)).unwrap(),
            coinb2: hex::decode(text(3)).unwrap(),
            branch: params[4]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    hex::decode(b.as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap()
                })
                .collect(),
            version: word(5),
            nbits: word(6),
            ntime: word(7),
            clean: params[8].as_bool().expect("clean_jobs is a JSON bool"),
        }
    }

    /// The block hash (display order reversed: internal byte order) of a header.
    pub fn header(&self, coinbase: &[u8], version: u32, ntime: u32, nonce: u32) -> [u8; 80] {
        let mut root = sha256d::Hash::hash(coinbase).to_byte_array();
        for sibling in &self.branch {
            let mut data = [0u8; 64];
            data[..32].copy_from_slice(&root);
            data[32..].copy_from_slice(sibling);
            root = sha256d::Hash::hash(&data).to_byte_array();
        }
        let mut header = [0u8; 80];
        header[..4].copy_from_slice(&version.to_le_bytes());
        header[4..36].copy_from_slice(&self.prev);
        header[36..68].copy_from_slice(&root);
        header[68..72].copy_from_slice(&ntime.to_le_bytes());
        header[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        header
    }
}

/// Difficulty of a hash as miners compute it: difficulty-1 target over the hash, in doubles.
pub fn hash_difficulty(hash: &[u8; 32]) -> f64 {
    let value = hash
        .iter()
        .rev()
        .fold(0f64, |acc, b| acc * 256.0 + f64::from(*b));
    65535.0 * 2f64.powi(208) / value.max(1.0)
}

/// A share found by [`Miner::solve`].
#[derive(Debug, Clone)]
pub struct Solved {
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
    /// Full rolled header version.
    pub version: u32,
    pub hash: [u8; 32],
    pub difficulty: f64,
}

/// One miner connection.
pub struct Miner {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    pub difficulty: f64,
    pub version_mask: u32,
    pub jobs: Vec<Notify>,
    /// Difficulty in force when each job arrived (as the miner applies it).
    pub job_difficulty: Vec<f64>,
    pub inbox: VecDeque<Value>,
    pub lines: Vec<String>,
}

const WAIT: Duration = Duration::from_secs(30);

impl Miner {
    pub async fn connect(addr: std::net::SocketAddr) -> Miner {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, write) = stream.into_split();
        Miner {
            reader: BufReader::new(read),
            writer: write,
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            difficulty: 0.0,
            version_mask: 0,
            jobs: Vec::new(),
            job_difficulty: Vec::new(),
            inbox: VecDeque::new(),
            lines: Vec::new(),
        }
    }

    /// Send a raw line (a newline is added).
    pub async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// Write raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Whether the server closes the connection (EOF or reset) within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut line = String::new();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Read one message, applying notifications to the miner's state as it goes.
    pub async fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("no line from the server within 30 s")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        assert!(line.ends_with('\n'));
        self.lines.push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap();
        match v["method"].as_str() {
            Some("mining.set_difficulty") => {
                self.difficulty = v["params"][0].as_f64().unwrap();
            }
            Some("mining.notify") => {
                let n = Notify::parse(v["params"].as_array().unwrap());
                self.jobs.push(n);
                self.job_difficulty.push(self.difficulty);
            }
            Some("mining.set_version_mask") => {
                self.version_mask =
                    u32::from_str_radix(v["params"][0].as_str().unwrap(), 16).unwrap();
            }
            _ => {}
        }
        v
    }

    /// The reply to request `id` (notifications before it are applied and kept).
    pub async fn reply(&mut self, id: Value) -> Value {
        if let Some(i) = self
            .inbox
            .iter()
            .position(|m| m["id"] == id && m.get("method").is_none())
        {
            return self.inbox.remove(i).unwrap();
        }
        loop {
            let m = self.read().await;
            if m.get("method").is_none() && m["id"] == id {
                return m;
            }
            if m.get("method").is_none() {
                self.inbox.push_back(m);
            }
        }
    }

    /// The next line, which must be the reply to `id` (clients that read exactly one line).
    pub async fn next_is_reply(&mut self, id: Value) -> Value {
        let m = self.read().await;
        assert!(
            m.get("method").is_none() && m["id"] == id,
            "expected the reply to {id} first, got {m}"
        );
        m
    }

    /// Take a subscribe reply: `[[subscriptions...], extranonce1, extranonce2_size]`.
    pub fn take_subscribe(&mut self, reply: &Value) {
        assert_eq!(reply["error"], Value::Null, "{reply}");
        let r = reply["result"].as_array().unwrap();
        assert!(r[0].is_array());
        self.extranonce1 = hex::decode(r[1].as_str().unwrap()).unwrap();
        self.extranonce2_size = r[2].as_u64().unwrap() as usize;
    }

    /// Take a configure reply granting version rolling.
    pub fn take_configure(&mut self, reply: &Value) {
        assert_eq!(reply["result"]["version-rolling"], json!(true), "{reply}");
        self.version_mask = u32::from_str_radix(
            reply["result"]["version-rolling.mask"].as_str().unwrap(),
            16,
        )
        .unwrap();
    }

    /// Wait until at least `n` jobs have arrived.
    pub async fn jobs_at_least(&mut self, n: usize) {
        while self.jobs.len() < n {
            let m = self.read().await;
            if m.get("method").is_none() {
                self.inbox.push_back(m);
            }
        }
    }

    /// Find a share on the latest job with `extranonce2` and rolled `version_bits` (inside the
    /// mask), at the difficulty in force for that job, above `min_difficulty` too.
    pub fn solve(&self, extranonce2: &[u8], version_bits: u32, start_nonce: u32) -> Solved {
        let job = self.jobs.last().unwrap();
        let difficulty = *self.job_difficulty.last().unwrap();
        let mut coinbase = job.coinb1.clone();
        coinbase.extend_from_slice(&self.extranonce1);
        coinbase.extend_from_slice(extranonce2);
        coinbase.extend_from_slice(&job.coinb2);
        let version = (job.version & !self.version_mask) | (version_bits & self.version_mask);
        for nonce in start_nonce.. {
            let header = job.header(&coinbase, version, job.ntime, nonce);
            let hash = sha256d::Hash::hash(&header).to_byte_array();
            // A margin above the difficulty keeps float rounding out of the test.
            let d = hash_difficulty(&hash);
            if d >= difficulty * 1.001 {
                return Solved {
                    job_id: job.job_id.clone(),
                    extranonce2: extranonce2.to_vec(),
                    ntime: job.ntime,
                    nonce,
                    version,
                    hash,
                    difficulty: d,
                };
            }
        }
        unreachable!()
    }

    /// Find a nonce on the latest job whose hash is below `max_difficulty` (a bad share).
    pub fn miss(&self, extranonce2: &[u8], max_difficulty: f64) -> Solved {
        let job = self.jobs.last().unwrap();
        let mut coinbase = job.coinb1.clone();
        coinbase.extend_from_slice(&self.extranonce1);
        coinbase.extend_from_slice(extranonce2);
        coinbase.extend_from_slice(&job.coinb2);
        for nonce in 0u32.. {
            let header = job.header(&coinbase, job.version, job.ntime, nonce);
            let hash = sha256d::Hash::hash(&header).to_byte_array();
            let d = hash_difficulty(&hash);
            if d < max_difficulty {
                return Solved {
                    job_id: job.job_id.clone(),
                    extranonce2: extranonce2.to_vec(),
                    ntime: job.ntime,
                    nonce,
                    version: job.version,
                    hash,
                    difficulty: d,
                };
            }
        }
        unreachable!()
    }
}

/// Work from a mainnet-difficulty template (`bits` 0x1d00ffff) built here, no node needed:
/// shares at tiny difficulties are easy, blocks impossible. `tip` picks the previous block.
pub fn synthetic_work(
    generation: u64,
    tip: u8,
    new_tip: bool,
) -> std::sync::Arc<hearth::work::TemplateWork> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let template = json!({
        "version": 0x2000_0000,
        "rules": ["csv", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": format!("{:02x}", tip).repeat(32),
        "transactions": [],
        "coinbasevalue": 312_500_000u64,
        "target": "00000000ffff0000000000000000000000000000000000000000000000000000",
        "mintime": now - 3600,
        "curtime": now,
        "bits": "1d00ffff",
        "height": 900_000 + u32::from(tip),
        "sigoplimit": 80000,
        "weightlimit": 4000000,
        "sizelimit": 4000000,
    });
    let template = hearth::template::parse_template(template.to_string().as_bytes()).unwrap();
    let payout =
        bitcoin::ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
    std::sync::Arc::new(
        hearth::work::TemplateWork::new(generation, template, &payout, b"/test/", new_tip).unwrap(),
    )
}
