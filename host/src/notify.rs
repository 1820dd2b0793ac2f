//! Webhook notifications (`[notify] webhook_url`): a JSON POST when a block is found, a board
//! reports a fault, the node goes down (and comes back), or a device is lost. The body is
//! described in docs/notifications.md.
//!
//! "Block found" is sent only for [`Event::BlockAccepted`], once the node has the block on its
//! active chain: a candidate, a rejected or a stale block is not a found block (ESP-Miner users
//! got false "block found" banners from candidates).
//!
//! Nothing the receiver does can slow mining: the daemon's broadcast never waits for this task,
//! and this task keeps reading it while a request is in flight. Notifications go out one at a
//! time and in order, each retried with exponential backoff for a bounded time, from a bounded
//! queue: when a dead receiver lets it fill up, the oldest notification that is not a block is
//! dropped (and logged). Block notifications are never dropped from the queue; one that is
//! finally given up is logged at error level with its height and hash.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::Event;

/// What a notification is about (the body's `event` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The node accepted a block of ours and has it on its active chain.
    BlockFound,
    /// A board reported a fault.
    BoardFault,
    /// The node stopped answering.
    NodeDown,
    /// The node answers again.
    NodeUp,
    /// A device went away (a Stratum miner disconnected or was dropped, a board failed) and
    /// did not come back within [`Policy::lost_grace`].
    DeviceLost,
    /// `hearth config check` testing the webhook.
    Test,
}

/// The JSON body of a notification (docs/notifications.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    /// What happened.
    pub event: Kind,
    /// When the daemon saw it, RFC 3339 in UTC (`2025-01-31T12:00:00Z`).
    pub time: String,
    /// The same, in seconds since the Unix epoch.
    pub unix_time: u64,
    /// The daemon's network, as in the configuration (`main`, `test`, `testnet4`, `signet`,
    /// `regtest`).
    pub network: String,
    /// This machine's host name, to tell several daemons apart.
    pub instance: String,
    /// One line for people; the field Slack and Mattermost incoming webhooks display.
    pub text: String,
    /// Block height (`block_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Block hash, as block explorers show it (`block_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Device name (`block_found`, `board_fault`, `device_lost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The fault, the node's error or why the device went away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Who is speaking: fields every notification carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// Host name.
    pub instance: String,
}

impl Origin {
    /// The daemon on this machine, mining `network`.
    pub fn new(network: bitcoin::Network) -> Origin {
        Origin {
            network: network.to_core_arg().to_string(),
            instance: hostname(),
        }
    }

    fn payload(&self, event: Kind, now: SystemTime, text: String) -> Payload {
        let unix_time = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Payload {
            event,
            time: rfc3339(unix_time),
            unix_time,
            network: self.network.clone(),
            instance: self.instance.clone(),
            text: format!("hearth on {} ({}): {text}", self.instance, self.network),
            height: None,
            hash: None,
            device: None,
            reason: None,
        }
    }

    /// The notification for `event`, if it is one the operator is told about.
    pub fn notification(&self, event: &Event, now: SystemTime) -> Option<Payload> {
        let payload = match event {
            Event::BlockAccepted {
                height,
                hash,
                device,
            } => Payload {
                height: Some(*height),
                hash: Some(hash.to_string()),
                device: Some(device.clone()),
                ..self.payload(
                    Kind::BlockFound,
                    now,
                    format!("block {height} found by {device}, on the node's active chain: {hash}"),
                )
            },
            Event::BoardFault { device, fault } => Payload {
                device: Some(device.clone()),
                reason: Some(fault.clone()),
                ..self.payload(
                    Kind::BoardFault,
                    now,
                    format!("board {device} reports a fault: {fault}"),
                )
            },
            Event::NodeDown { error } => Payload {
                reason: Some(error.clone()),
                ..self.payload(
                    Kind::NodeDown,
                    now,
                    format!(
                        "the node stopped answering ({error}); mining pauses after the grace period"
                    ),
                )
            },
            Event::NodeUp => self.payload(
                Kind::NodeUp,
                now,
                "the node answers again; mining resumes".to_string(),
            ),
            Event::DeviceLost { device, reason } => Payload {
                device: Some(device.clone()),
                reason: Some(reason.clone()),
                ..self.payload(
                    Kind::DeviceLost,
                    now,
                    format!("device {device} lost: {reason}"),
                )
            },
            // Candidates, rejected, stale and unconfirmed blocks are not found blocks; the rest
            // is routine.
            _ => return None,
        };
        Some(payload)
    }

    /// The body `hearth config check` sends.
    pub fn test(&self, now: SystemTime) -> Payload {
        self.payload(
            Kind::Test,
            now,
            "test notification from `hearth config check`".to_string(),
        )
    }
}

/// Delivery timing and limits.
#[derive(Debug, Clone)]
pub struct Policy {
    /// One request, connection included.
    pub timeout: Duration,
    /// Wait before the first retry; doubled after each failure...
    pub backoff_start: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// A notification still failing this long after its first attempt is given up.
    pub give_up_after: Duration,
    /// The same for a found block, which is worth trying longer.
    pub block_give_up_after: Duration,
    /// Notifications waiting behind the one being sent.
    pub queue: usize,
    /// At shutdown, how long to keep sending what is queued.
    pub flush: Duration,
    /// A device lost is announced only if it is not back (its [`Event::DeviceUp`]) within this:
    /// a miner whose Wi-Fi drops for a moment, or a board that restarts after a glitch, is not
    /// worth a message. Zero announces at once.
    pub lost_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            timeout: Duration::from_secs(10),
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(10 * 60),
            block_give_up_after: Duration::from_secs(60 * 60),
            queue: 64,
            // Within the daemon's 10 s for its tasks to stop.
            flush: Duration::from_secs(5),
            lost_grace: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// Wait after the `failures`-th failure in a row (1, 2, ...).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.backoff_start
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// A notification waiting to be delivered.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The body.
    pub payload: Payload,
    failures: u32,
    first_attempt: Option<Instant>,
    next_attempt: Option<Instant>,
}

impl Pending {
    /// A notification not tried yet.
    pub fn new(payload: Payload) -> Pending {
        Pending {
            payload,
            failures: 0,
            first_attempt: None,
            next_attempt: None,
        }
    }

    fn is_block(&self) -> bool {
        self.payload.event == Kind::BlockFound
    }
}

/// Queue `item` behind `queue`, at most `cap` long. When full, the oldest notification that is
/// not a block makes room (or `item` itself, when only blocks are queued and it is not one);
/// blocks always get in. Returns the one dropped.
pub fn enqueue(queue: &mut VecDeque<Pending>, item: Pending, cap: usize) -> Option<Pending> {
    let mut dropped = None;
    if queue.len() >= cap {
        match queue.iter().position(|p| !p.is_block()) {
            Some(i) => dropped = queue.remove(i),
            None if !item.is_block() => return Some(item),
            // Only blocks queued and another block: blocks are rare, keep them all.
            None => {}
        }
    }
    queue.push_back(item);
    dropped
}

/// How one request went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The receiver answered 2xx.
    Delivered,
    /// Worth trying again: no connection, a timeout, 5xx, 408 or 429.
    Retry(String),
    /// Trying again would not help: another 4xx, or a URL the client cannot use.
    Final(String),
}

/// The HTTP client for webhooks.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// POST `payload` to `url` once.
pub async fn post(client: &reqwest::Client, url: &str, payload: &Payload) -> Delivery {
    let body = match serde_json::to_vec(payload) {
        Ok(body) => body,
        Err(e) => return Delivery::Final(format!("cannot encode the notification: {e}")),
    };
    let reply = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match reply {
        Ok(r) if r.status().is_success() => Delivery::Delivered,
        Ok(r) => {
            let status = r.status();
            let what = format!("the webhook answered HTTP {status}");
            if status.is_server_error()
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                Delivery::Retry(what)
            } else {
                Delivery::Final(what)
            }
        }
        // Without the URL: a token in it would reach the logs.
        Err(e) if e.is_builder() => Delivery::Final(error_chain(&e.without_url())),
        Err(e) => Delivery::Retry(error_chain(&e.without_url())),
    }
}

/// reqwest's top-level message ("error sending request") hides the cause; say all of it.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Refuse a webhook this build cannot reach.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    // reqwest is built without TLS (no new TLS stack for one optional POST).
    let shown = crate::api::redact_url(url);
    if url.trim().starts_with("https://") {
        bail!(
            "notify.webhook_url = {shown:?}: this build of hearth has no TLS, so it cannot POST to https:// URLs; give an http:// URL (a receiver or relay on this machine or your LAN)"
        );
    }
    reqwest::Url::parse(url.trim())
        .map_err(|e| anyhow::anyhow!("notify.webhook_url = {shown:?} is not a URL: {e}"))?;
    Ok(())
}

type InFlight = Pin<Box<dyn Future<Output = Delivery> + Send>>;

/// The notification task: events in, POSTs out.
#[derive(Debug)]
pub struct Notifier {
    /// The webhook.
    pub url: String,
    /// Network and host name for every body.
    pub origin: Origin,
    /// The daemon's events.
    pub events: broadcast::Receiver<Event>,
    /// Timing and limits.
    pub policy: Policy,
    /// The daemon's stop: flush for [`Policy::flush`], then end.
    pub cancel: CancellationToken,
    client: reqwest::Client,
}

impl Notifier {
    /// A notifier for `url` (checked: an error names what is wrong with it).
    pub fn new(
        url: &str,
        network: bitcoin::Network,
        events: broadcast::Receiver<Event>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Notifier> {
        Notifier::with_policy(url, Origin::new(network), events, cancel, Policy::default())
    }

    /// [`Notifier::new`] with other timing (tests).
    pub fn with_policy(
        url: &str,
        origin: Origin,
        events: broadcast::Receiver<Event>,
        cancel: CancellationToken,
        policy: Policy,
    ) -> anyhow::Result<Notifier> {
        check_url(url)?;
        Ok(Notifier {
            url: url.trim().to_string(),
            origin,
            client: client(policy.timeout)?,
            events,
            policy,
            cancel,
        })
    }

    /// Deliver until the daemon stops (then flush) or its events end and the queue is empty.
    pub async fn run(mut self) {
        tracing::info!(url = %crate::api::redact_url(&self.url), "webhook notifications on");
        let mut queue: VecDeque<Pending> = VecDeque::new();
        // Devices lost, waiting out the grace (see [`Policy::lost_grace`]).
        let mut held = Held::default();
        // The notification being delivered, and its request while one is out.
        let mut current: Option<Pending> = None;
        let mut in_flight: Option<InFlight> = None;
        let mut open = true;
        loop {
            if current.is_none() {
                current = queue.pop_front();
            }
            if !open && current.is_none() {
                break;
            }
            let due = current
                .as_ref()
                .and_then(|p| p.next_attempt)
                .unwrap_or_else(Instant::now);
            let ready = in_flight.is_none() && current.is_some();
            let held_due = held.next_due();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    self.flush(queue, held, current, in_flight).await;
                    return;
                }
                _ = tokio::time::sleep_until(held_due.unwrap_or_else(Instant::now)), if held_due.is_some() => {
                    for p in held.take_due(Instant::now()) {
                        self.enqueue(&mut queue, p);
                    }
                }
                outcome = wait(&mut in_flight) => {
                    in_flight = None;
                    if let Some(mut p) = current.take()
                        && !self.settle(&mut p, outcome)
                    {
                        current = Some(p);
                    }
                }
                _ = tokio::time::sleep_until(due), if ready => {
                    if let Some(p) = current.as_mut() {
                        p.first_attempt.get_or_insert_with(Instant::now);
                        in_flight = Some(self.request(&p.payload));
                    }
                }
                received = self.events.recv(), if open => match received {
                    Ok(event) => self.accept(&mut queue, &mut held, &event),
                    Err(RecvError::Lagged(missed)) => tracing::warn!(missed,
                        "webhook notifier fell behind the daemon's events; notifications among them are lost (blocks are in the journal's accepted/)"),
                    Err(RecvError::Closed) => open = false,
                },
            }
        }
    }

    fn request(&self, payload: &Payload) -> InFlight {
        let (client, url, payload) = (self.client.clone(), self.url.clone(), payload.clone());
        Box::pin(async move { post(&client, &url, &payload).await })
    }

    fn accept(&self, queue: &mut VecDeque<Pending>, held: &mut Held, event: &Event) {
        if let Event::DeviceUp { device, .. } = event
            && held.back(device)
        {
            tracing::debug!(%device, "device back within the grace: its loss is not announced");
            return;
        }
        let Some(payload) = self.origin.notification(event, SystemTime::now()) else {
            return;
        };
        if let (Event::DeviceLost { device, .. }, false) = (event, self.policy.lost_grace.is_zero())
        {
            held.hold(device, payload, Instant::now() + self.policy.lost_grace);
            return;
        }
        self.enqueue(queue, payload);
    }

    fn enqueue(&self, queue: &mut VecDeque<Pending>, payload: Payload) {
        tracing::debug!(event = ?payload.event, "webhook notification queued");
        if let Some(dropped) = enqueue(queue, Pending::new(payload), self.policy.queue) {
            tracing::warn!(dropped = ?dropped.payload.event, text = %dropped.payload.text, queued = self.policy.queue,
                "webhook notification queue full (the receiver is not taking them); dropped the oldest that is not a block");
        }
    }

    /// Record how an attempt went; true when `p` is done with (delivered or given up).
    fn settle(&self, p: &mut Pending, outcome: Delivery) -> bool {
        let error = match outcome {
            Delivery::Delivered => {
                tracing::debug!(event = ?p.payload.event, failures = p.failures, "webhook notification delivered");
                return true;
            }
            Delivery::Final(e) => {
                give_up(p, &e);
                return true;
            }
            Delivery::Retry(e) => e,
        };
        p.failures += 1;
        let now = Instant::now();
        let limit = if p.is_block() {
            self.policy.block_give_up_after
        } else {
            self.policy.give_up_after
        };
        if now.duration_since(p.first_attempt.unwrap_or(now)) >= limit {
            give_up(p, &format!("{error}, still after {limit:?}"));
            return true;
        }
        let wait = self.policy.backoff(p.failures);
        tracing::debug!(event = ?p.payload.event, %error, retry_in = ?wait, "webhook notification failed");
        p.next_attempt = Some(now + wait);
        false
    }

    /// At shutdown: take the events published up to now (the blocks the last drain confirmed),
    /// announce the devices lost and not back by then, send what is queued while the receiver
    /// takes it and time remains, log what is left.
    async fn flush(
        &mut self,
        mut queue: VecDeque<Pending>,
        mut held: Held,
        current: Option<Pending>,
        in_flight: Option<InFlight>,
    ) {
        loop {
            match self.events.try_recv() {
                Ok(event) => self.accept(&mut queue, &mut held, &event),
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        for p in held.take_all() {
            self.enqueue(&mut queue, p);
        }
        let deadline = Instant::now() + self.policy.flush;
        let mut left: VecDeque<Pending> = current.into_iter().chain(queue).collect();
        // The request already out is for the first one: let it finish rather than send twice.
        let mut outcome = match in_flight {
            Some(request) => tokio::time::timeout_at(deadline, request).await.ok(),
            None => None,
        };
        let mut stopped_by = String::new();
        while let Some(p) = left.front() {
            let result = match outcome.take() {
                Some(result) => result,
                None if Instant::now() >= deadline => {
                    stopped_by = format!("no time left ({:?})", self.policy.flush);
                    break;
                }
                None => match tokio::time::timeout_at(
                    deadline,
                    post(&self.client, &self.url, &p.payload),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Delivery::Retry(format!("no answer within {:?}", self.policy.flush)),
                },
            };
            match result {
                Delivery::Delivered => {}
                Delivery::Final(e) => give_up(p, &e),
                // The receiver is down or slow: no time to wait for it.
                Delivery::Retry(e) => {
                    stopped_by = e;
                    break;
                }
            }
            left.pop_front();
        }
        if !left.is_empty() {
            for p in left.iter().filter(|p| p.is_block()) {
                give_up(p, &format!("shutting down: {stopped_by}"));
            }
            tracing::warn!(abandoned = left.len(), reason = %stopped_by,
                "shutting down with webhook notifications undelivered");
        }
    }
}

/// Devices lost and not announced yet. The grace is one constant, so entries fall due in the
/// order they came: a queue in that order, and by name the newest entry of each device (a
/// device lost again replaces its entry; one that is back cancels it). Every step is O(1)
/// amortised, for the moment thousands of Stratum miners drop at once.
#[derive(Debug, Default)]
struct Held {
    queue: VecDeque<(u64, Instant, Payload)>,
    live: std::collections::HashMap<String, u64>,
    next: u64,
}

impl Held {
    fn hold(&mut self, device: &str, payload: Payload, due: Instant) {
        self.next += 1;
        self.live.insert(device.to_string(), self.next);
        self.queue.push_back((self.next, due, payload));
    }

    /// The device is back; true when its loss was waiting.
    fn back(&mut self, device: &str) -> bool {
        self.live.remove(device).is_some()
    }

    fn is_live(&self, id: u64, payload: &Payload) -> bool {
        payload
            .device
            .as_ref()
            .and_then(|d| self.live.get(d))
            .is_some_and(|&newest| newest == id)
    }

    fn next_due(&mut self) -> Option<Instant> {
        while let Some((id, _, payload)) = self.queue.front() {
            if self.is_live(*id, payload) {
                break;
            }
            self.queue.pop_front();
        }
        self.queue.front().map(|(_, due, _)| *due)
    }

    fn take_due(&mut self, now: Instant) -> Vec<Payload> {
        self.take_while(|at| at <= now)
    }

    /// Everything still waiting (at shutdown: not back by now, so lost).
    fn take_all(&mut self) -> Vec<Payload> {
        self.take_while(|_| true)
    }

    fn take_while(&mut self, due: impl Fn(Instant) -> bool) -> Vec<Payload> {
        let mut taken = Vec::new();
        while self.queue.front().is_some_and(|(_, at, _)| due(*at)) {
            if let Some((id, _, payload)) = self.queue.pop_front()
                && self.is_live(id, &payload)
            {
                if let Some(device) = &payload.device {
                    self.live.remove(device);
                }
                taken.push(payload);
            }
        }
        taken
    }
}

fn give_up(p: &Pending, error: &str) {
    if p.is_block() {
        tracing::error!(height = p.payload.height, hash = p.payload.hash.as_deref().unwrap_or_default(),
            %error, "gave up notifying the webhook of a found block (the block itself is safe: it is on the node's chain)");
    } else {
        tracing::warn!(event = ?p.payload.event, %error, text = %p.payload.text,
            "gave up a webhook notification");
    }
}

async fn wait(request: &mut Option<InFlight>) -> Delivery {
    match request {
        Some(request) => request.await,
        None => std::future::pending().await,
    }
}

/// This machine's name, or `hearth` when it has none we can read.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "hearth".to_string())
}

/// `unix` seconds as RFC 3339 in UTC (no date crate for one timestamp).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn held_losses_fall_due_in_order_and_a_return_cancels_one() {
        let origin = Origin {
            network: "regtest".into(),
            instance: "box".into(),
        };
        let lost = |d: &str| {
            origin
                .notification(
                    &Event::DeviceLost {
                        device: d.into(),
                        reason: "gone".into(),
                    },
                    SystemTime::now(),
                )
                .unwrap_or_else(|| panic!("a loss is a notification"))
        };
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut held = Held::default();
        held.hold("a", lost("a"), t0 + s);
        held.hold("b", lost("b"), t0 + 2 * s);
        // a is lost again: one notice, when its newer entry falls due.
        held.hold("a", lost("a"), t0 + 3 * s);
        held.hold("c", lost("c"), t0 + 4 * s);
        assert!(held.back("c"));
        assert!(!held.back("nobody"));
        assert_eq!(held.next_due(), Some(t0 + 2 * s));
        let names =
            |v: Vec<Payload>| -> Vec<String> { v.into_iter().filter_map(|p| p.device).collect() };
        assert!(held.take_due(t0 + s).is_empty());
        assert_eq!(names(held.take_due(t0 + 2 * s)), ["b"]);
        assert_eq!(names(held.take_all()), ["a"]);
        assert_eq!(held.next_due(), None);
    }
    use bitcoin::hashes::Hash;

    use super::*;

    fn origin() -> Origin {
        Origin {
            network: "regtest".into(),
            instance: "box".into(),
        }
    }

    fn pending(event: &Event) -> Pending {
        Pending::new(
            origin()
                .notification(event, UNIX_EPOCH)
                .unwrap_or_else(|| origin().test(UNIX_EPOCH)),
        )
    }

    fn block(height: u32) -> Event {
        Event::BlockAccepted {
            height,
            hash: bitcoin::BlockHash::from_byte_array([height as u8; 32]),
            device: "sim0".into(),
        }
    }

    fn lost(device: &str) -> Event {
        Event::DeviceLost {
            device: device.into(),
            reason: "gone".into(),
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_231_006_505), "2009-01-03T18:15:05Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn only_accepted_blocks_are_found_blocks() {
        let hash = bitcoin::BlockHash::from_byte_array([1; 32]);
        let o = origin();
        for quiet in [
            Event::BlockCandidate {
                height: 5,
                hash,
                device: "sim0".into(),
            },
            Event::BlockRejected {
                height: 5,
                hash,
                reason: "bad".into(),
            },
            Event::BlockStale { height: 5, hash },
            Event::BlockUnconfirmed {
                height: 5,
                hash,
                reason: "x".into(),
            },
            Event::Paused { reason: "x".into() },
        ] {
            assert_eq!(o.notification(&quiet, UNIX_EPOCH), None, "{quiet:?}");
        }
        let found = o
            .notification(&block(7), UNIX_EPOCH)
            .unwrap_or_else(|| o.test(UNIX_EPOCH));
        assert_eq!(found.event, Kind::BlockFound);
        assert_eq!(found.height, Some(7));
        assert_eq!(found.device.as_deref(), Some("sim0"));
        let json = serde_json::to_value(&found).unwrap_or_default();
        assert_eq!(json["event"], "block_found");
        assert_eq!(json["time"], "1970-01-01T00:00:00Z");
        assert_eq!(json["network"], "regtest");
        assert!(json.get("reason").is_none(), "{json}");
    }

    #[test]
    fn a_full_queue_drops_the_oldest_that_is_not_a_block() {
        let mut q = VecDeque::new();
        assert!(enqueue(&mut q, pending(&block(1)), 3).is_none());
        assert!(enqueue(&mut q, pending(&lost("a")), 3).is_none());
        assert!(enqueue(&mut q, pending(&lost("b")), 3).is_none());
        let dropped = enqueue(&mut q, pending(&block(2)), 3);
        assert_eq!(dropped.and_then(|p| p.payload.device), Some("a".into()));
        let dropped = enqueue(&mut q, pending(&block(3)), 3);
        assert_eq!(dropped.and_then(|p| p.payload.device), Some("b".into()));
        // Only blocks left: another block still gets in, anything else does not.
        assert!(enqueue(&mut q, pending(&block(4)), 3).is_none());
        let dropped = enqueue(&mut q, pending(&lost("c")), 3);
        assert_eq!(dropped.and_then(|p| p.payload.device), Some("c".into()));
        let heights: Vec<_> = q.iter().map(|p| p.payload.height).collect();
        assert_eq!(heights, [Some(1), Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy::default();
        let waits: Vec<u64> = (1..=9).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn https_is_refused_with_the_reason() {
        let e = check_url("https://ntfy.sh/x").map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("no TLS"), "{e}");
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
    }
}
