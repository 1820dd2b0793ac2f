//! One miner's connection. Requests are handled in whatever order the miner sends them
//! (ESP-Miner sends configure, subscribe and authorize back to back without waiting); work goes
//! out once the miner has both subscribed and authorized. Every submission is judged here, so
//! that the miner gets its answer, and what is worth it goes on to the share checker.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::difficulty::{Vardiff, hashes_for_difficulty, target_for_difficulty};
use super::job::{Judgement, StratumJob, Submission, extranonce1, judge, layout};
use super::lines::{LineReader, ReadEnd};
use super::protocol::{
    self, Request, StratumError, configure_result, difficulty_value, error_reply, parse_configure,
    parse_request, parse_submit, reply,
};
use super::server::{MAX_LINE, Shared};
use crate::events::Event;
use crate::share::{Found, Threshold};
use crate::template::EXTRANONCE_SIZE;
use crate::work::BIP320_MASK;

/// Jobs a session keeps for submissions (older ones answer "job not found").
const JOBS_KEPT: usize = 8;
/// Submissions remembered per job for duplicate detection (vardiff keeps a miner near 10 a
/// minute; a job lives 30 s to a few minutes).
const SUBMISSIONS_KEPT_PER_JOB: usize = 4096;
/// Invalid lines and submissions a session may send in a burst before it is dropped...
const INVALID_BURST: f64 = 100.0;
/// ...and how many per second it earns back.
const INVALID_PER_SECOND: f64 = 1.0;
/// Longest worker name or user agent kept.
const MAX_NAME: usize = 64;

/// A job as this session got it, with the difficulty its shares are judged at.
struct SentJob {
    /// This session's id for it (sent as 8 hex digits).
    id: u32,
    job: Arc<StratumJob>,
    difficulty: f64,
    submissions: HashSet<(u64, u32, u32, u32)>,
}

pub(super) struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Session number (extranonce1 is derived from it).
    number: u32,
    /// The work's extranonce slot this session's layout is for.
    extranonce_len: usize,
    extranonce1: Vec<u8>,
    extranonce2_len: usize,
    /// `mining.extranonce.subscribe` received: the layout may change with `set_extranonce`.
    extranonce_subscribed: bool,
    subscribed: bool,
    agent: String,
    /// Stats device index and name, once authorized.
    device: Option<(usize, String)>,
    /// Version bits granted by `mining.configure` (0 without it).
    version_mask: u32,
    difficulty: f64,
    suggested: Option<f64>,
    vardiff: Vardiff,
    jobs: VecDeque<SentJob>,
    /// Whether the first job went out.
    started: bool,
    /// Job ids sent so far.
    jobs_sent: u32,
    invalid_budget: f64,
    invalid_at: Instant,
    out: Vec<u8>,
}

/// Why a session ended.
type Ending = String;

impl Session {
    pub(super) fn new(shared: Arc<Shared>, peer: SocketAddr) -> Session {
        let n = shared.sessions.fetch_add(1, Ordering::Relaxed);
        let vardiff = shared.settings.vardiff;
        Session {
            number: n,
            extranonce_len: 0,
            extranonce1: Vec::new(),
            extranonce2_len: 0,
            extranonce_subscribed: false,
            subscribed: false,
            agent: String::new(),
            device: None,
            version_mask: 0,
            difficulty: vardiff.clamp(vardiff.start),
            suggested: None,
            vardiff: Vardiff::new(vardiff, Instant::now()),
            jobs: VecDeque::new(),
            started: false,
            jobs_sent: 0,
            invalid_budget: INVALID_BURST,
            invalid_at: Instant::now(),
            out: Vec::new(),
            shared,
            peer,
        }
    }

    pub(super) async fn run(mut self, stream: TcpStream, cancel: CancellationToken) {
        let (read, mut write) = stream.into_split();
        let mut reader = LineReader::new(read, MAX_LINE);
        let mut jobs = self.shared.jobs.clone();
        let settings = self.shared.settings.clone();
        let connected = tokio::time::Instant::now();
        let mut last_line = connected;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Made once, not on every pass: at a tip change 8,000 sessions wake at once, and
        // registering a fresh timer and cancellation waiter each time was measurable.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let timeout = tokio::time::sleep_until(connected + settings.handshake_timeout);
        tokio::pin!(timeout);
        let ending: Ending = loop {
            let ready = self.subscribed && self.device.is_some();
            let deadline = if ready {
                last_line + settings.idle_timeout
            } else {
                connected + settings.handshake_timeout
            };
            if timeout.deadline() != deadline {
                timeout.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => break "server stopping".into(),
                line = reader.next_line() => match line {
                    Ok(line) => {
                        last_line = tokio::time::Instant::now();
                        // Boxed: handling a submission keeps a lot of state alive across its
                        // awaits, and unboxed that would be in every idle session's task.
                        if let Err(ending) = Box::pin(self.handle_line(&line, &mut jobs)).await {
                            let _ = self.flush(&mut write).await;
                            break ending;
                        }
                    }
                    Err(ReadEnd::Closed) => break "disconnected".into(),
                    Err(ReadEnd::TooLong) => break format!("line longer than {MAX_LINE} bytes"),
                    Err(ReadEnd::NotUtf8) => break "line is not UTF-8".into(),
                    Err(ReadEnd::Io(e)) => break format!("read error: {e}"),
                },
                // Work that comes after the handshake (the node had none yet) starts the miner
                // as well as work that replaces its job.
                changed = jobs.changed(), if ready => {
                    if changed.is_err() {
                        break "server stopping".into();
                    }
                    let job = jobs.borrow_and_update().clone();
                    if let Some(job) = job {
                        let first = !self.started;
                        self.started = true;
                        if first {
                            self.vardiff.restart(Instant::now());
                        }
                        if let Err(ending) = self.announce(job, first) {
                            let _ = self.flush(&mut write).await;
                            break ending;
                        }
                    }
                }
                _ = tick.tick() => {
                    if self.started
                        && let Some(next) = self.vardiff.on_tick(self.difficulty, Instant::now())
                    {
                        self.set_difficulty(next);
                    }
                }
                _ = &mut timeout => {
                    break if ready {
                        format!("nothing received for {:?}", settings.idle_timeout)
                    } else {
                        format!("no subscribe and authorize within {:?}", settings.handshake_timeout)
                    };
                }
            }
            if let Err(e) = self.flush(&mut write).await {
                break e;
            }
        };
        let _ = write.shutdown().await;
        if let Some((_, name)) = &self.device
            && cancel.is_cancelled()
        {
            // The daemon is stopping: every miner leaves now, and that is not news.
            tracing::debug!(device = %name, peer = %self.peer, "stratum miner disconnected: server stopping");
        } else if let Some((_, name)) = &self.device {
            tracing::info!(device = %name, peer = %self.peer, reason = %ending, "stratum miner left");
            let _ = self.shared.events.send(Event::DeviceLost {
                device: name.clone(),
                reason: ending,
            });
        } else {
            tracing::debug!(peer = %self.peer, reason = %ending, "stratum connection closed");
        }
    }

    async fn flush(&mut self, write: &mut tokio::net::tcp::OwnedWriteHalf) -> Result<(), Ending> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Almost always the socket takes it all at once: no timer for that.
        let mut written = 0;
        while written < self.out.len() {
            match write.try_write(&self.out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("write error: {e}")),
            }
        }
        let result = if written < self.out.len() {
            let timeout = self.shared.settings.write_timeout;
            match tokio::time::timeout(timeout, write.write_all(&self.out[written..])).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("write error: {e}")),
                Err(_) => Err(format!("miner took nothing for {timeout:?}")),
            }
        } else {
            Ok(())
        };
        // Keep a small buffer for the next message; give a large one back.
        if self.out.capacity() > 8192 {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        result
    }

    fn send(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
    }

    /// Spend from the invalid-input budget; `Err` when it is gone (the session is dropped).
    fn invalid(&mut self, what: &str) -> Result<(), Ending> {
        let now = Instant::now();
        let earned = now.duration_since(self.invalid_at).as_secs_f64() * INVALID_PER_SECOND;
        self.invalid_at = now;
        self.invalid_budget = (self.invalid_budget + earned).min(INVALID_BURST) - 1.0;
        if self.invalid_budget < 0.0 {
            return Err(format!("too many invalid messages (last: {what})"));
        }
        Ok(())
    }

    async fn handle_line(
        &mut self,
        line: &str,
        jobs: &mut tokio::sync::watch::Receiver<Option<Arc<StratumJob>>>,
    ) -> Result<(), Ending> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let request = match parse_request(line) {
            Ok(r) => r,
            Err(protocol::LineError::NoMethod) if line.contains("\"result\"") => {
                // A reply to something we never asked: harmless.
                return Ok(());
            }
            Err(e) => {
                self.send(&error_reply(
                    &Value::Null,
                    StratumError::Other(format!("malformed request: {e}")),
                ));
                return self.invalid("malformed JSON");
            }
        };
        let Request { id, method, params } = request;
        match method.as_str() {
            "mining.subscribe" => {
                if let Some(agent) = params.first().and_then(Value::as_str) {
                    self.agent = printable(agent);
                }
                self.subscribed = true;
                let slot = jobs
                    .borrow()
                    .as_ref()
                    .map_or(EXTRANONCE_SIZE, |j| j.work.extranonce_len);
                self.set_layout(slot);
                let en1 = hex::encode(&self.extranonce1);
                self.send(&reply(
                    &id,
                    json!([
                        [["mining.set_difficulty", en1], ["mining.notify", en1]],
                        en1,
                        self.extranonce2_len
                    ]),
                ));
            }
            "mining.authorize" => {
                let Some(user) = params.first().and_then(Value::as_str) else {
                    self.send(&error_reply(
                        &id,
                        StratumError::Other("mining.authorize needs a user name".into()),
                    ));
                    return self.invalid("authorize without a user");
                };
                // A `d=<difficulty>` password asks for a difficulty (cgminer users' habit).
                if let Some(d) = params
                    .get(1)
                    .and_then(Value::as_str)
                    .and_then(|p| p.split(',').find_map(|kv| kv.trim().strip_prefix("d=")))
                    .and_then(|d| difficulty_value(&Value::String(d.into())))
                {
                    self.suggest(d);
                }
                if self.device.is_none() {
                    // Counters per worker name, but not without end: a flood of connections
                    // under ever new names is counted together.
                    let limit = self.shared.settings.max_connections.saturating_mul(2);
                    let (index, name) = self.shared.stats.device_named_within(
                        &format!("stratum:{}", printable(user)),
                        limit,
                        "stratum:(too many worker names)",
                    );
                    tracing::info!(device = %name, peer = %self.peer, agent = %self.agent, "stratum miner authorized");
                    let _ = self.shared.events.send(Event::DeviceUp {
                        device: name.clone(),
                        detail: format!(
                            "stratum miner at {} ({})",
                            self.peer,
                            if self.agent.is_empty() {
                                "no user agent"
                            } else {
                                &self.agent
                            }
                        ),
                    });
                    self.device = Some((index, name));
                }
                self.send(&reply(&id, Value::Bool(true)));
            }
            "mining.configure" => {
                let configure = parse_configure(&params);
                let granted = configure.version_rolling_mask.map(|asked| {
                    let safe = jobs
                        .borrow()
                        .as_ref()
                        .map_or(BIP320_MASK, |j| BIP320_MASK & j.rollable);
                    asked & safe
                });
                if let Some(mask) = granted {
                    self.version_mask = mask;
                }
                self.send(&reply(&id, configure_result(&configure, granted)));
            }
            "mining.extranonce.subscribe" => {
                // The extranonce changes only when the work source does (node to pool and
                // back); subscribers then get mining.set_extranonce, the others reconnect.
                self.extranonce_subscribed = true;
                if !id.is_null() {
                    self.send(&reply(&id, Value::Bool(true)));
                }
            }
            "mining.suggest_difficulty" => {
                if let Some(d) = params.first().and_then(difficulty_value) {
                    self.suggest(d);
                }
                if !id.is_null() {
                    self.send(&reply(&id, Value::Bool(true)));
                }
            }
            // ESP-Miner answers a server's ping with a request named "pong".
            "pong" => {}
            "mining.multi_version" => {
                if !id.is_null() {
                    self.send(&reply(&id, Value::Bool(true)));
                }
            }
            "mining.submit" => self.submit(&id, &params, jobs).await?,
            _ => {
                if !id.is_null() {
                    self.send(&error_reply(
                        &id,
                        StratumError::Other(format!("unknown method {method:?}")),
                    ));
                }
                self.invalid("unknown method")?;
            }
        }
        if !self.started && self.subscribed && self.device.is_some() {
            let job = jobs.borrow_and_update().clone();
            if let Some(job) = job {
                self.started = true;
                self.vardiff.restart(Instant::now());
                self.announce(job, true)?;
            }
        }
        Ok(())
    }

    /// `mining.suggest_difficulty` (or a `d=` password). A repeat of the same value (NerdMiner
    /// sends its suggestion every 30 s as a keepalive) changes nothing.
    fn suggest(&mut self, difficulty: f64) {
        if self.suggested == Some(difficulty) {
            return;
        }
        self.suggested = Some(difficulty);
        let d = self.shared.settings.vardiff.clamp(difficulty);
        if self.started {
            self.set_difficulty(d);
        } else {
            self.difficulty = d;
        }
        self.vardiff.restart(Instant::now());
    }

    /// Send a new difficulty, then the current job again: some miners (NerdQAxe) apply a
    /// difficulty only at the next notify. Jobs already out keep the lower of their difficulty
    /// and the new one, so shares in flight are not refused for a change they had not seen.
    fn set_difficulty(&mut self, difficulty: f64) {
        if difficulty == self.difficulty {
            return;
        }
        self.difficulty = difficulty;
        for sent in &mut self.jobs {
            sent.difficulty = sent.difficulty.min(difficulty);
        }
        if self.started {
            self.send(&protocol::notification(
                "mining.set_difficulty",
                json!([difficulty]),
            ));
            if let Some(latest) = self.jobs.back() {
                let job = latest.job.clone();
                self.send_job(job, false);
            }
        }
    }

    fn set_layout(&mut self, extranonce_len: usize) {
        let (one, two) = layout(extranonce_len);
        self.extranonce_len = extranonce_len;
        self.extranonce1 = extranonce1(self.number, one);
        self.extranonce2_len = two;
    }

    /// Send a new job (and, on the first one, the difficulty before it).
    fn announce(&mut self, job: Arc<StratumJob>, first: bool) -> Result<(), Ending> {
        if self.jobs.back().is_some_and(|s| s.job.number == job.number) {
            return Ok(());
        }
        let mut first = first;
        if job.work.extranonce_len != self.extranonce_len {
            // The work source changed (node to pool or back) and with it the extranonce slot.
            if !self.extranonce_subscribed {
                return Err(
                    "the work source changed its extranonce size; the miner reconnects".into(),
                );
            }
            self.set_layout(job.work.extranonce_len);
            self.send(&protocol::notification(
                "mining.set_extranonce",
                json!([hex::encode(&self.extranonce1), self.extranonce2_len]),
            ));
            self.jobs.clear();
            first = true;
        }
        if first {
            self.send(&protocol::notification(
                "mining.set_difficulty",
                json!([self.difficulty]),
            ));
        }
        // The template may now reserve bits that were granted (a deployment started): narrow
        // the miner's mask before it rolls them.
        if self.version_mask & !job.rollable != 0 {
            self.version_mask &= job.rollable;
            self.send(&protocol::notification(
                "mining.set_version_mask",
                json!([format!("{:08x}", self.version_mask)]),
            ));
        }
        // A miner's first job always tells it to start clean.
        let clean = first || job.clean;
        self.send_job(job, clean);
        Ok(())
    }

    /// Send `job` under a new id of this session's, judged at the current difficulty.
    fn send_job(&mut self, job: Arc<StratumJob>, clean: bool) {
        self.jobs_sent = self.jobs_sent.wrapping_add(1);
        let id = self.jobs_sent;
        job.write_notify(&mut self.out, id, clean);
        if self.jobs.len() >= JOBS_KEPT {
            self.jobs.pop_front();
        }
        self.jobs.push_back(SentJob {
            id,
            job,
            difficulty: self.difficulty,
            submissions: HashSet::new(),
        });
    }

    async fn submit(
        &mut self,
        id: &Value,
        params: &[Value],
        jobs: &tokio::sync::watch::Receiver<Option<Arc<StratumJob>>>,
    ) -> Result<(), Ending> {
        match self.judge_submit(params, jobs).await {
            Ok(()) => {
                self.send(&reply(id, Value::Bool(true)));
                Ok(())
            }
            Err(error) => {
                let counts_as_invalid = !matches!(error, StratumError::Stale);
                if let Some((index, _)) = &self.device {
                    self.shared.stats.update(*index, |d| match error {
                        StratumError::Stale => d.stale += 1,
                        StratumError::Duplicate => d.duplicates += 1,
                        _ => d.rejected += 1,
                    });
                }
                let (code, message) = error.code_and_message();
                tracing::debug!(peer = %self.peer, code, message, "share rejected");
                self.send(&error_reply(id, error));
                if counts_as_invalid {
                    self.invalid("rejected share")?;
                }
                Ok(())
            }
        }
    }

    async fn judge_submit(
        &mut self,
        params: &[Value],
        jobs: &tokio::sync::watch::Receiver<Option<Arc<StratumJob>>>,
    ) -> Result<(), StratumError> {
        if !self.subscribed {
            return Err(StratumError::NotSubscribed);
        }
        let Some((device, device_name)) = self.device.clone() else {
            return Err(StratumError::Unauthorized);
        };
        let submit = parse_submit(params)?;
        if submit.extranonce2.len() != self.extranonce2_len {
            return Err(StratumError::Other(format!(
                "extranonce2 must be {} bytes ({} hex digits), got {}",
                self.extranonce2_len,
                self.extranonce2_len * 2,
                submit.extranonce2.len()
            )));
        }
        let tip = jobs.borrow().as_ref().map(|j| j.work.prev_blockhash());
        let mask = self.version_mask;
        let submitted_job = u32::from_str_radix(&submit.job_id, 16).ok();
        let Some(sent) = self.jobs.iter_mut().find(|s| Some(s.id) == submitted_job) else {
            return Err(StratumError::JobNotFound);
        };
        let mut extranonce = [0u8; EXTRANONCE_SIZE];
        let one = self.extranonce1.len();
        extranonce[..one].copy_from_slice(&self.extranonce1);
        extranonce[one..one + submit.extranonce2.len()].copy_from_slice(&submit.extranonce2);
        let key = (
            u64::from_be_bytes(extranonce),
            submit.ntime,
            submit.nonce,
            submit.version_bits.unwrap_or(0),
        );
        if sent.submissions.contains(&key) {
            return Err(StratumError::Duplicate);
        }
        if sent.submissions.len() >= SUBMISSIONS_KEPT_PER_JOB {
            return Err(StratumError::Other(
                "too many shares on one job; wait for the next one".into(),
            ));
        }
        let difficulty = sent.difficulty;
        let target = target_for_difficulty(difficulty)
            .ok_or_else(|| StratumError::Other("no share target".into()))?;
        let current = tip.is_none_or(|tip| tip == sent.job.work.prev_blockhash());
        let submission = Submission {
            extranonce,
            ntime: submit.ntime,
            nonce: submit.nonce,
            version_bits: submit.version_bits,
        };
        let id = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        let judged = judge(&sent.job, &submission, mask, &target, current, id);
        // Remembered only when it counted: a refused share sent again is refused again, and
        // costs the sender its invalid-input budget each time.
        if matches!(
            judged.judgement,
            Judgement::Block { .. } | Judgement::Share { .. } | Judgement::Stale
        ) {
            sent.submissions.insert(key);
        }
        let forward = |job| Found {
            device,
            device_name: device_name.clone(),
            chip: None,
            job: Arc::new(job),
            version: judged.version,
            nonce: submit.nonce,
            threshold: Threshold {
                target,
                hashes: hashes_for_difficulty(difficulty),
            },
        };
        match judged.judgement {
            Judgement::Block { hash } => {
                tracing::info!(%hash, device = %device_name, "stratum miner found a block candidate");
                let found = forward(judged.job);
                if self.shared.found.send(found).await.is_err() {
                    return Err(StratumError::Other("server stopping".into()));
                }
            }
            Judgement::Share { .. } => {
                let found = forward(judged.job);
                if self.shared.found.send(found).await.is_err() {
                    return Err(StratumError::Other("server stopping".into()));
                }
            }
            Judgement::Stale => return Err(StratumError::Stale),
            Judgement::LowDifficulty => return Err(StratumError::LowDifficulty),
            Judgement::NtimeOutOfRange => {
                return Err(StratumError::Other(
                    "ntime out of range (before the template's mintime or too far ahead)".into(),
                ));
            }
            Judgement::VersionOutsideMask => {
                return Err(StratumError::Other(format!(
                    "version bits outside the granted mask {mask:08x}"
                )));
            }
        }
        if let Some(next) = self.vardiff.on_share(self.difficulty, Instant::now()) {
            self.set_difficulty(next);
        }
        Ok(())
    }
}

/// A name from the network, cut to a printable, bounded form for logs and stats.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect()
}
