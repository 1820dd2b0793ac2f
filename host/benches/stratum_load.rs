//! Load generator for the Stratum V1 server: connections held, `mining.notify` latency after a
//! tip change, share-validation throughput, and the server's memory.
//!
//! One binary, two processes. The main process ("load") spawns itself with `--serve` as the
//! server: a real [`StratumServer`] on 127.0.0.1 fed synthetic template work (a mainnet-like
//! template of 600 transactions, so the merkle branch has 10 entries), whose accepted shares go
//! through a real [`ShareChecker`] exactly as in the daemon. The server prints its port, then
//! takes commands on stdin (`tip`: publish work on a new tip and print the instant; `stats`:
//! the checker's counters; `quit`). The load process is the miners: one task per connection,
//! a small read buffer, pre-built request lines.
//!
//! ```text
//! cargo bench -p hearth --bench stratum_load                 # 2,000 / 8,000 / 10,000 miners
//! cargo bench -p hearth --bench stratum_load -- --quick      # 200 miners, < 20 s (CI smoke)
//! cargo bench -p hearth --bench stratum_load -- --clients 4000 --submit-secs 5
//! ```
//!
//! Options: `--clients N[,N...]` (notify-latency stages, default 2000,8000), `--hold N`
//! (connections held at the end, default 10,000, at least the largest `--clients`), `--rounds R`
//! (tip changes per stage, default 5), `--submitters K` (connections that submit, default
//! 1,000), `--submit-secs S` (default 10), `--ramp N` (connections opened at once, default
//! 500), `--client-threads T` (the load process's runtime threads, default 2), `--quick`.
//! `STRATUM_LOAD_WRAP="heaptrack -o /tmp/srv"` runs the server under a profiler. Figures and
//! their reading: docs/stratum-benchmark.md.
//!
//! Latency is wall clock: the server reads `CLOCK_REALTIME` just before it hands the new work
//! to the Stratum server's watch channel, each miner reads it when it has the whole
//! `mining.notify` line in hand. Both processes share the machine's 2 cores, so the figures
//! include the load generator's own reading.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, ScriptBuf, Target};
use hearth::device::ResultSender;
use hearth::events::Stats;
use hearth::share::ShareChecker;
use hearth::stratum::difficulty::{VardiffConfig, target_for_difficulty};
use hearth::stratum::job::stratum_prevhash;
use hearth::stratum::{StratumServer, StratumSettings};
use hearth::submit::Journal;
use hearth::template::{BlockTemplate, parse_template};
use hearth::work::TemplateWork;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Mainnet difficulty bits of height 901,936: no share is ever a block.
const MAINNET_BITS: u32 = 0x1702_3a04;
/// Small enough that the share target is the largest there is (every hash is a share):
/// 0xFFFF · 2^208 / 1e-12 is past 2^256. (1e-9 would still refuse about 3 hashes in 4.)
const SHARE_DIFFICULTY: f64 = 1e-12;
/// Transactions kept from the recorded template: a 10-entry merkle branch.
const TRANSACTIONS: usize = 600;
/// Request id of every submission (cpuminer's habit: ids need not be unique).
const SUBMIT_ID: u32 = 4;
/// The answer to an accepted submission, as the server writes it (keys sorted).
const ACCEPTED: &[u8] = br#"{"error":null,"id":4,"result":true}"#;

// Aims.
const AIM_NOTIFY_P99_MS: f64 = 100.0;
const AIM_RSS_MB: f64 = 100.0;
const AIM_HELD: usize = 10_000;
const AIM_SUBMITS_PER_SEC: f64 = 20_000.0;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Raise the soft open-file limit to the hard one, and say clearly when even that is too low.
fn raise_nofile(needed: u64, role: &str) {
    let raised = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    if let Err(e) = raised {
        eprintln!("{role}: could not raise the open-file limit ({e}); soft {soft}, hard {hard}");
    }
    if soft < needed {
        eprintln!(
            "{role}: the open-file limit is {soft} (hard {hard}) but this run needs about {needed} \
             descriptors in this process; raise the hard limit (limits.conf, systemd LimitNOFILE, \
             docker --ulimit nofile) or run fewer clients"
        );
        std::process::exit(2);
    }
}

// ------------------------------------------------------------------------------------------
// Server role
// ------------------------------------------------------------------------------------------

fn random_hash() -> BlockHash {
    BlockHash::from_byte_array(rand::random())
}

fn bench_template() -> BlockTemplate {
    let json = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/data/gbt-3000.json"
    ))
    .expect("benches/data/gbt-3000.json");
    let mut t = parse_template(&json).expect("recorded template");
    t.transactions.truncate(TRANSACTIONS);
    t.bits = CompactTarget::from_consensus(MAINNET_BITS);
    t.target = Target::from_compact(t.bits);
    if t.default_witness_commitment.is_some() {
        t.default_witness_commitment =
            Some(hearth::template::coinbase::witness_commitment_script(&t));
    }
    let now = (now_ns() / 1_000_000_000) as u32;
    t.curtime = now;
    t.mintime = now - 3600;
    t.prev_blockhash = random_hash();
    t
}

fn work_on(template: &BlockTemplate, generation: u64, tip: BlockHash) -> Arc<TemplateWork> {
    let payout = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
    let mut t = template.clone();
    t.prev_blockhash = tip;
    Arc::new(TemplateWork::new(generation, t, &payout, b"/hearth-bench/", true).unwrap())
}

fn serve() {
    raise_nofile(20_000, "server");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(serve_async());
}

async fn serve_async() {
    assert_eq!(
        target_for_difficulty(SHARE_DIFFICULTY).unwrap(),
        Target::from_be_bytes([0xFF; 32]),
        "the share difficulty must make every hash a share"
    );
    let template = bench_template();
    let mut generation = 1;
    let first = work_on(&template, generation, template.prev_blockhash);
    let settings = StratumSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        vardiff: VardiffConfig {
            start: SHARE_DIFFICULTY,
            min: SHARE_DIFFICULTY,
            max: 1e15,
            shares_per_minute: 6.0,
            enabled: false,
        },
        max_connections: 20_000,
        max_connections_per_ip: 20_000,
        handshake_timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(3600),
        write_timeout: Duration::from_secs(30),
    };
    let server = StratumServer::bind(settings).await.unwrap();
    let port = server.local_addr().unwrap().port();

    // The pipeline as the daemon wires it (daemon.rs): devices → ResultSender → ShareChecker.
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(journal_dir.path()).unwrap();
    let stats = Stats::default();
    let (events, _) = broadcast::channel(4096);
    let (work_tx, work_rx) = watch::channel(Some(first.clone()));
    let (tip_tx, tip_rx) = watch::channel(Some(first.prev_blockhash()));
    let (found_tx, found_rx) = mpsc::channel(1024);
    let (candidate_tx, mut candidate_rx) = mpsc::channel(256);
    let (found_block_tx, mut found_block_rx) = mpsc::channel(16);
    let drain = CancellationToken::new();
    let cancel = CancellationToken::new();
    let checker = tokio::spawn(
        ShareChecker {
            found: found_rx,
            tip: tip_rx,
            candidates: candidate_tx,
            journal,
            found_block: found_block_tx,
            stats: stats.clone(),
            events: events.clone(),
            drain: drain.clone(),
            cancel: cancel.clone(),
        }
        .run(),
    );
    let blocks = Arc::new(AtomicU64::new(0));
    let b = blocks.clone();
    tokio::spawn(async move {
        while candidate_rx.recv().await.is_some() {
            b.fetch_add(1, Ordering::Relaxed);
        }
    });
    tokio::spawn(async move { while found_block_rx.recv().await.is_some() {} });
    let stop = CancellationToken::new();
    let ids = Arc::new(AtomicU64::new(1));
    let stratum = tokio::spawn(server.run(
        work_rx,
        ResultSender::new(found_tx, stats.clone()),
        stats.clone(),
        events.clone(),
        ids,
        stop.clone(),
    ));

    // Commands from the load process, one a line.
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line).is_err() {
                break;
            }
        }
    });
    println!("port {port} {}", std::process::id());
    while let Some(cmd) = cmd_rx.recv().await {
        match cmd.trim() {
            "tip" => {
                generation += 1;
                let tip = random_hash();
                let work = work_on(&template, generation, tip);
                tip_tx.send_replace(Some(tip));
                let published = now_ns();
                work_tx.send_replace(Some(work));
                println!("published {published} {}", stratum_prevhash(&tip));
            }
            "stats" => {
                let (mut results, mut shares, mut stale, mut dups, mut rejected, mut hw) =
                    (0, 0, 0, 0, 0, 0);
                for d in stats.snapshot() {
                    results += d.results;
                    shares += d.shares;
                    stale += d.stale;
                    dups += d.duplicates;
                    rejected += d.rejected;
                    hw += d.hardware_errors;
                }
                println!(
                    "stats {results} {shares} {stale} {dups} {rejected} {hw} {}",
                    blocks.load(Ordering::Relaxed)
                );
            }
            "quit" | "" => break,
            other => eprintln!("server: unknown command {other:?}"),
        }
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), stratum).await;
    drain.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), checker).await;
    cancel.cancel();
    println!("bye");
}

// ------------------------------------------------------------------------------------------
// Load role
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    clients: Vec<usize>,
    hold: usize,
    rounds: usize,
    submitters: usize,
    submit_secs: f64,
    client_threads: usize,
    /// Connections opened at once while ramping up.
    ramp: usize,
    quick: bool,
}

fn parse_options(args: &[String]) -> Options {
    // `--quick` sets other defaults; options given with it still apply, in any order.
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = if quick {
        Options {
            clients: vec![200],
            hold: 200,
            rounds: 3,
            submitters: 200,
            submit_secs: 2.0,
            client_threads: 2,
            ramp: 500,
            quick,
        }
    } else {
        Options {
            clients: vec![2_000, 8_000],
            hold: AIM_HELD,
            rounds: 5,
            submitters: 1_000,
            submit_secs: 10.0,
            client_threads: 2,
            ramp: 500,
            quick,
        }
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |name: &str| -> String {
            rest.next()
                .map(|v| v.replace('_', ""))
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--clients" => {
                o.clients = value("--clients")
                    .split(',')
                    .map(|n| n.trim().parse().expect("--clients N[,N...]"))
                    .collect();
            }
            "--hold" => o.hold = value("--hold").parse().expect("--hold N"),
            "--rounds" => o.rounds = value("--rounds").parse().expect("--rounds R"),
            "--submitters" => {
                o.submitters = value("--submitters").parse().expect("--submitters K");
            }
            "--submit-secs" => {
                o.submit_secs = value("--submit-secs").parse().expect("--submit-secs S");
            }
            "--ramp" => o.ramp = value("--ramp").parse().expect("--ramp N"),
            "--client-threads" => {
                o.client_threads = value("--client-threads")
                    .parse()
                    .expect("--client-threads T");
            }
            // cargo bench passes --bench to harness = false targets.
            "--quick" | "--bench" => {}
            other => eprintln!("stratum_load: ignoring argument {other:?}"),
        }
    }
    o.clients.sort_unstable();
    o.clients.dedup();
    o.clients.retain(|n| *n > 0);
    assert!(
        !o.clients.is_empty(),
        "--clients needs at least one positive count"
    );
    assert!(o.rounds > 0, "--rounds must be at least 1");
    o.hold = o.hold.max(*o.clients.last().unwrap());
    o.submitters = o.submitters.min(o.hold);
    o
}

/// What every miner task shares with the controller, one slot per connection.
#[derive(Debug, Default)]
struct Slot {
    /// 0 connecting, 1 working (first notify in hand), 2 gone.
    state: AtomicU8,
    /// When the last `mining.notify` was read in full (ns since the epoch).
    notify_ns: AtomicU64,
    /// The first 8 hex digits of that notify's prevhash, as a number.
    tip: AtomicU32,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    slots: Vec<Slot>,
    /// Connections with an index below this submit in [`Mode::Submit`].
    submitters: AtomicUsize,
    accepted: AtomicU64,
    rejected: AtomicU64,
    /// The first reject lines, for the report.
    rejects: std::sync::Mutex<Vec<String>>,
    failures: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Hold,
    Submit,
}

fn tip_tag(prevhash_hex: &[u8]) -> u32 {
    std::str::from_utf8(&prevhash_hex[..8])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .unwrap_or(0)
}

/// `mining.submit` with the job id, extranonce2, ntime and nonce at known offsets, rewritten
/// in place for each submission.
struct SubmitLine {
    bytes: Vec<u8>,
    en2_at: usize,
    nonce_at: usize,
}

impl SubmitLine {
    fn new(worker: &str, job_id: &[u8], ntime: &[u8]) -> SubmitLine {
        let mut bytes = Vec::with_capacity(160);
        bytes.extend_from_slice(
            format!(
                "{{\"id\":{SUBMIT_ID},\"method\":\"mining.submit\",\"params\":[\"{worker}\",\""
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(job_id);
        bytes.extend_from_slice(b"\",\"");
        let en2_at = bytes.len();
        bytes.extend_from_slice(b"00000000\",\"");
        bytes.extend_from_slice(ntime);
        bytes.extend_from_slice(b"\",\"");
        let nonce_at = bytes.len();
        bytes.extend_from_slice(b"00000000\"]}\n");
        SubmitLine {
            bytes,
            en2_at,
            nonce_at,
        }
    }

    fn set(&mut self, en2: u32, nonce: u32) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (at, value) in [(self.en2_at, en2), (self.nonce_at, nonce)] {
            for i in 0..8 {
                self.bytes[at + i] = HEX[((value >> (28 - 4 * i)) & 0xF) as usize];
            }
        }
    }
}

const NOTIFY_HEAD: &[u8] = br#"{"id":null,"method":"mining.notify","params":[""#;

async fn miner(index: usize, shared: Arc<Shared>, mut mode: watch::Receiver<Mode>) {
    let slot = &shared.slots[index];
    let fail = |what: String| {
        slot.state.store(2, Ordering::Relaxed);
        let mut f = shared.failures.lock().unwrap();
        if f.len() < 10 {
            f.push(format!("miner {index}: {what}"));
        }
    };
    let stream = match TcpStream::connect(shared.addr).await {
        Ok(s) => s,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(2048, read);
    let worker = format!("w{index}");
    let hello = format!(
        "{{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"stratum_load/1\"]}}\n\
         {{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"{worker}\",\"x\"]}}\n"
    );
    if let Err(e) = write.write_all(hello.as_bytes()).await {
        return fail(format!("write: {e}"));
    }
    let mut line = Vec::with_capacity(1536);
    let mut submit: Option<SubmitLine> = None;
    let mut outstanding = false;
    let mut counter: u32 = 0;
    loop {
        tokio::select! {
            read = reader.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) => return fail("server closed the connection".into()),
                    Err(e) => return fail(format!("read: {e}")),
                    Ok(_) => {}
                }
                if line.starts_with(NOTIFY_HEAD) {
                    let at = now_ns();
                    // params: ["job id","prevhash",...,"ntime",clean]
                    let rest = &line[NOTIFY_HEAD.len()..];
                    let id_len = rest.iter().position(|b| *b == b'"').unwrap_or(0);
                    let job_id = &rest[..id_len];
                    let prevhash = &rest[id_len + 3..];
                    let last_quote = line.iter().rposition(|b| *b == b'"').unwrap_or(8);
                    let ntime = &line[last_quote - 8..last_quote];
                    submit = Some(SubmitLine::new(&worker, job_id, ntime));
                    slot.tip.store(tip_tag(prevhash), Ordering::Relaxed);
                    slot.notify_ns.store(at, Ordering::Release);
                    slot.state.store(1, Ordering::Release);
                } else if outstanding && line.starts_with(br#"{"error":"#) {
                    outstanding = false;
                    if line.starts_with(ACCEPTED) {
                        shared.accepted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.rejected.fetch_add(1, Ordering::Relaxed);
                        let mut r = shared.rejects.lock().unwrap();
                        if r.len() < 5 {
                            r.push(String::from_utf8_lossy(&line).trim().to_string());
                        }
                    }
                }
                line.clear();
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if !outstanding
            && *mode.borrow_and_update() == Mode::Submit
            && index < shared.submitters.load(Ordering::Relaxed)
            && let Some(s) = submit.as_mut()
        {
            counter = counter.wrapping_add(1);
            // Unique per submission on this connection: no duplicates.
            s.set(counter, counter.wrapping_mul(0x9E37_79B9));
            if let Err(e) = write.write_all(&s.bytes).await {
                return fail(format!("write: {e}"));
            }
            outstanding = true;
        }
    }
}

/// The server child process and its stdout, line by line.
struct ServerProcess {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    pid: u32,
}

impl ServerProcess {
    fn start() -> (ServerProcess, u16) {
        let exe = std::env::current_exe().unwrap();
        // A profiler to run the server under, e.g. STRATUM_LOAD_WRAP="perf record -g -o s.data".
        let wrap: Vec<String> = std::env::var("STRATUM_LOAD_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the server process");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            stdin,
            lines,
            pid: 0,
        };
        let said = server.wait_for("port");
        let (port, pid) = said.split_once(' ').expect("port and pid");
        // The server's own pid (not a profiler's wrapped around it).
        server.pid = pid.parse().expect("the server's pid");
        (server, port.parse().expect("the server's port number"))
    }

    /// The next line that starts with `word`; returns the rest.
    fn wait_for(&mut self, word: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the server said no {word:?} line"));
            if let Some(rest) = line.strip_prefix(word) {
                return rest.trim().to_string();
            }
            eprintln!("server: {line}");
        }
    }

    fn command(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// (VmRSS, VmHWM) in MB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    fn stop(mut self) {
        self.command("quit");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the server did not stop within 30 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of a process (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indices 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The kernel's count of connections dropped because a listener's accept queue was full
/// (`TcpExt: ListenOverflows`, for the whole network namespace).
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        if let Some(i) = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")
        {
            return values
                .split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// CPU time the whole machine spent busy (all processes, all cores), seconds.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (ticks.iter().take(8).sum::<f64>() - idle) / 100.0
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// What the processes other than these two took of the machine over `wall` seconds, as a
/// percentage of all its cores: the benchmark's noise floor.
fn others_percent(busy: f64, ours: f64, wall: f64) -> f64 {
    ((busy - ours) / (wall * cores()) * 100.0).max(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// What the run measured, for the summary.
#[derive(Debug, Default)]
struct Report {
    /// Per notify stage: miners, p50, p99, max (ms).
    notify: Vec<(usize, f64, f64, f64)>,
    /// Connections held, of those opened.
    held: Option<(usize, usize)>,
    /// Submissions: accepted per second, rejected, connections submitting.
    shares: Option<(f64, u64, usize)>,
    /// Server memory: stage, VmRSS, VmHWM (MB).
    memory: Vec<(String, f64, f64)>,
    /// Things that are wrong whatever the figures (lost miners, rejected shares).
    failed: Vec<String>,
}

impl Report {
    /// The summary table, and the aims missed.
    fn summary(&self) -> (String, Vec<String>) {
        let mut table = String::new();
        let mut misses = Vec::new();
        let mut row = |figure: String, measured: String, aim: &str, met: Option<bool>, c: &str| {
            let verdict = match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            table += &format!("  {figure:<38} {measured:<30} {aim:<14} {verdict:<7} {c}\n");
        };
        row(
            "figure".into(),
            "measured".into(),
            "aim",
            None,
            "C pool server, same machine",
        );
        if let Some((held, opened)) = self.held {
            // The aim applies to runs that try it (not to --quick).
            let aimed = opened >= AIM_HELD;
            let met = held >= AIM_HELD;
            row(
                "connections held".into(),
                format!("{held} of {opened}"),
                if aimed { "10,000" } else { "" },
                aimed.then_some(met),
                "",
            );
            if aimed && !met {
                misses.push(format!("{held} connections held (aim: {AIM_HELD})"));
            }
        }
        for &(n, p50, p99, max) in &self.notify {
            let c = match n {
                2_000 => "p50 177 / p99 213 ms",
                8_000 => "p50 406 / p99 645 ms",
                _ => "",
            };
            let aimed = n >= 8_000;
            let met = p99 <= AIM_NOTIFY_P99_MS;
            row(
                format!("notify after a new tip, {n} miners"),
                format!("p50 {p50:.0} / p99 {p99:.0} / max {max:.0} ms"),
                if aimed { "p99 <= 100 ms" } else { "" },
                aimed.then_some(met),
                c,
            );
            if aimed && !met {
                misses.push(format!(
                    "notify p99 {p99:.1} ms at {n} miners (aim: within {AIM_NOTIFY_P99_MS} ms)"
                ));
            }
        }
        if let Some((rate, rejected, submitters)) = self.shares {
            let met = rate >= AIM_SUBMITS_PER_SEC;
            row(
                format!("shares validated/s, {submitters} submitting"),
                format!("{rate:.0} ({rejected} rejected)"),
                "20,000",
                Some(met),
                "",
            );
            if !met {
                misses.push(format!(
                    "{rate:.0} shares validated per second (aim: {AIM_SUBMITS_PER_SEC:.0})"
                ));
            }
        }
        for (stage, rss, _) in &self.memory {
            if stage.starts_with("holding") {
                row(
                    format!("server VmRSS {stage}"),
                    format!("{rss:.1} MB"),
                    "< 100 MB",
                    Some(*rss < AIM_RSS_MB),
                    "60 MB RSS, 8,000 clients",
                );
            }
        }
        if let Some((stage, _, hwm)) = self.memory.last() {
            let met = *hwm < AIM_RSS_MB;
            row(
                "server VmHWM (peak) at the end".into(),
                format!("{hwm:.1} MB ({stage})"),
                "< 100 MB",
                Some(met),
                "",
            );
            if !met {
                misses.push(format!(
                    "server peak RSS {hwm:.1} MB (aim: under {AIM_RSS_MB} MB)"
                ));
            }
        }
        (table, misses)
    }
}

struct Load {
    shared: Arc<Shared>,
    mode: watch::Sender<Mode>,
    started: usize,
    server: ServerProcess,
    report: Report,
}

impl Load {
    fn working(&self, n: usize) -> (usize, usize) {
        let (mut ok, mut gone) = (0, 0);
        for s in &self.shared.slots[..n] {
            match s.state.load(Ordering::Acquire) {
                1 => ok += 1,
                2 => gone += 1,
                _ => {}
            }
        }
        (ok, gone)
    }

    /// Open connections up to `n`, `batch` at a time, each subscribed, authorized and holding
    /// its first job before the next batch starts.
    async fn ramp_to(&mut self, n: usize, batch: usize) -> (Duration, u64) {
        let t0 = Instant::now();
        let overflows0 = listen_overflows();
        while self.started < n {
            let batch_end = (self.started + batch.max(1)).min(n);
            for i in self.started..batch_end {
                tokio::spawn(miner(i, self.shared.clone(), self.mode.subscribe()));
            }
            self.started = batch_end;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (ok, gone) = self.working(batch_end);
                if ok + gone == batch_end {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "ramp: only {ok} of {batch_end} miners working after 60 s ({gone} gone)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (t0.elapsed(), listen_overflows().saturating_sub(overflows0))
    }

    fn memory_row(&mut self, stage: &str) {
        let (rss, hwm) = self.server.memory();
        println!("  server memory {stage:<34} VmRSS {rss:>7.1} MB   VmHWM {hwm:>7.1} MB");
        self.report.memory.push((stage.to_string(), rss, hwm));
    }

    /// Publish `rounds` tip changes to `n` connected miners; per miner, the time from the
    /// publication to the whole `mining.notify` line read.
    async fn notify_latency(&mut self, n: usize, rounds: usize) {
        let mut all = Vec::with_capacity(n * rounds);
        let mut missed_total = 0;
        let mut worst_round_p99: f64 = 0.0;
        let cpu0 = self.server.cpu_seconds();
        let (busy0, mine0, wall0) = (
            machine_busy_seconds(),
            cpu_seconds(std::process::id()),
            Instant::now(),
        );
        let mut my_cpu = 0.0;
        let mut per_round = Vec::new();
        for round in 0..rounds {
            // Let the previous round's writes and the ramp settle.
            tokio::time::sleep(Duration::from_millis(if round == 0 { 1000 } else { 300 })).await;
            let my0 = cpu_seconds(std::process::id());
            self.server.command("tip");
            let reply = self.server.wait_for("published");
            let mut parts = reply.split_whitespace();
            let published: u64 = parts.next().unwrap().parse().unwrap();
            let tag = tip_tag(parts.next().unwrap().as_bytes());
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let done = self.shared.slots[..n]
                    .iter()
                    .filter(|s| {
                        s.state.load(Ordering::Relaxed) == 2 || s.tip.load(Ordering::Relaxed) == tag
                    })
                    .count();
                if done == n || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            my_cpu += cpu_seconds(std::process::id()) - my0;
            let mut this: Vec<f64> = Vec::with_capacity(n);
            let mut missed = 0;
            for s in &self.shared.slots[..n] {
                if s.tip.load(Ordering::Acquire) == tag {
                    let at = s.notify_ns.load(Ordering::Acquire);
                    this.push(at.saturating_sub(published) as f64 / 1e6);
                } else {
                    missed += 1;
                }
            }
            this.sort_by(f64::total_cmp);
            worst_round_p99 = worst_round_p99.max(percentile(&this, 0.99));
            per_round.push(format!(
                "{:.0}/{:.0}",
                percentile(&this, 0.5),
                percentile(&this, 0.99)
            ));
            missed_total += missed;
            all.extend(this);
        }
        let cpu = self.server.cpu_seconds() - cpu0;
        let others = others_percent(
            machine_busy_seconds() - busy0,
            cpu + cpu_seconds(std::process::id()) - mine0,
            wall0.elapsed().as_secs_f64(),
        );
        all.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or(f64::NAN),
        );
        println!(
            "  notify latency, {n:>6} miners x {rounds} tips: p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  \
             max {max:>7.1} ms  (worst round p99 {worst_round_p99:.1} ms, missed {missed_total}, \
             CPU per tip: server {:.0} ms, load generator {:.0} ms; other processes {others:.0}% \
             of the machine)",
            cpu * 1000.0 / rounds as f64,
            my_cpu * 1000.0 / rounds as f64
        );
        self.report.notify.push((n, p50, p99, max));
        if rounds > 1 {
            println!("    per tip, p50/p99 ms: {}", per_round.join("  "));
        }
        if missed_total > 0 {
            self.report.failed.push(format!(
                "{missed_total} notifies never arrived ({n} miners, {rounds} tips)"
            ));
        }
    }

    async fn submit_throughput(&mut self, submitters: usize, secs: f64) {
        // The first `submitters` connections submit; the others hold.
        self.shared.submitters.store(submitters, Ordering::Relaxed);
        let me = std::process::id();
        let acc0 = self.shared.accepted.load(Ordering::Relaxed);
        self.mode.send_replace(Mode::Submit);
        // Warm-up: let every submitter get its first answers.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let a0 = self.shared.accepted.load(Ordering::Relaxed);
        let r0 = self.shared.rejected.load(Ordering::Relaxed);
        let (cpu0, my0, busy0) = (
            self.server.cpu_seconds(),
            cpu_seconds(me),
            machine_busy_seconds(),
        );
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let a1 = self.shared.accepted.load(Ordering::Relaxed);
        let r1 = self.shared.rejected.load(Ordering::Relaxed);
        let elapsed = t0.elapsed().as_secs_f64();
        let (cpu1, my1, busy1) = (
            self.server.cpu_seconds(),
            cpu_seconds(me),
            machine_busy_seconds(),
        );
        self.mode.send_replace(Mode::Hold);
        // Let the last answers in, then ask the checker what it counted.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let accepted_total = self.shared.accepted.load(Ordering::Relaxed) - acc0;
        let rejected_total = self.shared.rejected.load(Ordering::Relaxed);
        let rate = (a1 - a0) as f64 / elapsed;
        let server_cpu = cpu1 - cpu0;
        let client_cpu = my1 - my0;
        let others = others_percent(busy1 - busy0, server_cpu + client_cpu, elapsed);
        println!(
            "  share validation, {submitters:>6} submitting of {} held: {rate:>9.0} accepted/s over \
             {elapsed:.1} s  (rejected {}, server CPU {:.0}% = {:.1} us per share, load \
             generator CPU {:.0}%, other processes {others:.0}% of the machine)",
            self.started,
            r1 - r0,
            server_cpu / elapsed * 100.0,
            server_cpu / (a1 - a0).max(1) as f64 * 1e6,
            client_cpu / elapsed * 100.0,
        );
        self.report.shares = Some((rate, rejected_total, submitters));
        // Before `stats`, whose snapshot of every miner's counters is a copy of its own.
        self.memory_row("after submissions");
        self.server.command("stats");
        let stats = self.server.wait_for("stats");
        let v: Vec<u64> = stats
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        let (results, shares, stale, dups, rejected, hw, blocks) =
            (v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
        println!(
            "  share checker: {results} results, {shares} shares, {stale} stale, {dups} duplicates, \
             {rejected} rejected by the server, {hw} hardware errors, {blocks} blocks \
             (miners saw {accepted_total} accepted, {rejected_total} rejected)"
        );
        if rejected_total > 0 || rejected > 0 || hw > 0 || dups > 0 || stale > 0 {
            let rejects = self.shared.rejects.lock().unwrap().clone();
            self.report.failed.push(format!(
                "submissions refused: miners saw {rejected_total} rejects, checker counted \
                 {rejected} rejected / {hw} hardware errors / {dups} duplicates / {stale} stale; \
                 first rejects: {rejects:?}"
            ));
        }
        if accepted_total == 0 {
            self.report
                .failed
                .push("no submission was accepted".to_string());
        }
        if shares < accepted_total {
            self.report.failed.push(format!(
                "the share checker counted {shares} shares for {accepted_total} accepted"
            ));
        }
    }
}

fn load(options: Options) -> bool {
    println!("stratum_load: {options:?}");
    // Connections, the runtime's own descriptors, and the server's pipes.
    raise_nofile(options.hold as u64 + 64, "load");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads)
        .enable_all()
        .build()
        .unwrap();
    let (server, port) = ServerProcess::start();
    let shared = Arc::new(Shared {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        slots: (0..options.hold).map(|_| Slot::default()).collect(),
        accepted: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        submitters: AtomicUsize::new(0),
        rejects: std::sync::Mutex::new(Vec::new()),
        failures: std::sync::Mutex::new(Vec::new()),
    });
    let (mode, _) = watch::channel(Mode::Hold);
    let mut l = Load {
        shared,
        mode,
        started: 0,
        server,
        report: Report::default(),
    };
    let t_start = Instant::now();
    println!(
        "Stratum server on 127.0.0.1:{port}: {TRANSACTIONS} template transactions, share \
         difficulty {SHARE_DIFFICULTY:e}, vardiff off; {} cores shared with the load generator",
        cores()
    );
    runtime.block_on(async {
        l.memory_row("at start, no miners");
        for &n in &options.clients {
            let (took, overflows) = l.ramp_to(n, options.ramp).await;
            let (ok, gone) = l.working(n);
            println!(
                "  connected {ok:>6} miners (subscribed, authorized, first job in hand) in {:.1} s, \
                 {gone} failed; {overflows} connection attempts dropped on a full accept queue \
                 (ramp {} at a time)",
                took.as_secs_f64(),
                options.ramp
            );
            l.memory_row(&format!("with {n} miners"));
            l.notify_latency(n, options.rounds).await;
            l.memory_row(&format!("after {n}-miner tips"));
        }
        if options.hold > l.started {
            let (took, overflows) = l.ramp_to(options.hold, options.ramp).await;
            println!(
                "  connected up to {} miners in {:.1} s; {overflows} connection attempts dropped \
                 on a full accept queue",
                options.hold,
                took.as_secs_f64()
            );
        }
        // Hold them a while, then check that every one is still there and still gets work.
        tokio::time::sleep(Duration::from_secs(if options.quick { 1 } else { 5 })).await;
        let (held, gone) = l.working(options.hold);
        println!("  connections held: {held} of {} ({gone} lost)", options.hold);
        l.report.held = Some((held, options.hold));
        l.memory_row(&format!("holding {held} miners"));
        if !options.clients.contains(&options.hold) {
            l.notify_latency(options.hold, 1).await;
        }
        l.submit_throughput(options.submitters, options.submit_secs)
            .await;
    });
    let elapsed = t_start.elapsed();
    let (held, gone) = l.working(options.hold);
    if held < options.hold {
        let f = l.shared.failures.lock().unwrap().clone();
        l.report.failed.push(format!(
            "{held} of {} connections held, {gone} gone: {f:?}",
            options.hold
        ));
    }
    l.server.stop();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (table, misses) = l.report.summary();
    println!("\nsummary ({:.0} s):\n{table}", elapsed.as_secs_f64());
    if misses.is_empty() {
        println!("aims: all met");
    } else {
        println!("aims missed:");
        for m in &misses {
            println!("  - {m}");
        }
    }
    if l.report.failed.is_empty() {
        return true;
    }
    println!("FAILED:");
    for f in &l.report.failed {
        println!("  - {f}");
    }
    false
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--serve") {
        serve();
        return;
    }
    let options = parse_options(&args);
    if !load(options) {
        std::process::exit(1);
    }
}
