//! The composition root: creates every channel, spawns every actor, and owns shutdown. Actors
//! never call each other; they hold channel ends. Shutdown follows the data: devices stop
//! first, the share checker drains and journals what they sent, the submitter submits what the
//! checker handed it (within a budget), and only then does everything else stop.
//!
//! ```text
//! TemplateSource --watch work--> devices --mpsc Found--> ShareChecker --mpsc Candidate--> Submitter
//!      ^   ^                                                  |                             |
//!      |   +----------------- found_block (pause) ------------+                             |
//!      +--------------------- submitted (unbounded: never dropped) -------------------------+
//! ```

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bitcoin::BlockHash;
use bm13xx::ChipModel;
use bm13xx::sim::{SimConfig, SimHandle};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DeviceConfig, Validated};
use crate::device::chain::{SerialDevice, SimDevice};
use crate::device::cpu::CpuDevice;
use crate::device::{DeviceContext, supervise};
use crate::events::{Event, Stats};
use crate::node::source::{SourceConfig, TemplateSource};
use crate::node::{RpcClient, ready};
use crate::share::ShareChecker;
use crate::stratum::StratumServer;
use crate::submit::{Journal, Submitter};
use crate::work::{BIP320_MASK, JobFactory, TemplateWork};

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// Events (subscribe for your own receiver).
    pub events: broadcast::Sender<Event>,
    /// Counters.
    pub stats: Stats,
    /// Current work.
    pub work: watch::Receiver<Option<Arc<TemplateWork>>>,
    /// Emulator handles of `sim` devices, by device index (tests, benchmarks).
    pub sims: Vec<Arc<Mutex<Option<SimHandle>>>>,
    /// Latest telemetry of `link` devices, by device index.
    pub boards: Vec<Arc<Mutex<Option<hearth_link::Telemetry>>>>,
    /// Journal.
    pub journal: Journal,
    /// Where the Stratum server listens, when there is one.
    pub stratum_addr: Option<std::net::SocketAddr>,
    /// Where the API and dashboard listen, unless `[api] listen = "off"`.
    pub api_addr: Option<std::net::SocketAddr>,
    /// Where the pool coordinator listens (`[pool.coordinator]`).
    pub pool_addr: Option<std::net::SocketAddr>,
    /// The pool member's status (`[pool.member]`).
    pub pool_member: Option<Arc<Mutex<crate::pool::member::MemberStatus>>>,
    /// Stops the devices (the first step of a shutdown).
    stop_devices: CancellationToken,
    devices: TaskTracker,
    /// Tells the share checker that no result will come any more: drain and end.
    drain: CancellationToken,
    /// The share checker and the submitter: they end on their own once drained.
    pipeline: TaskTracker,
    /// Stops everything else at once (template source, ZMQ, reports), and is the hard stop of
    /// the pipeline when its time is up.
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// How long devices get to stop and hand over their last results.
const DEVICE_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for queued candidates to be submitted before leaving them pending
/// in the journal for the next start.
pub const SHUTDOWN_SUBMIT_BUDGET: Duration = Duration::from_secs(15);

impl Daemon {
    /// Check the node and the configuration, replay the journal, and start mining.
    pub async fn start(config: Validated) -> anyhow::Result<Daemon> {
        // Stops the helpers that live as long as the daemon (the node's SOCKS route).
        let cancel = CancellationToken::new();
        let rpc = rpc_client(&config, &cancel).await?;
        let info = ready::wait_ready(&rpc, config.network, config.startup_timeout).await?;
        tracing::info!(chain = %info.chain, height = info.blocks, node = %crate::api::redact_url(&config.rpc_url), "node ready");
        if config.network == bitcoin::Network::Signet {
            ready::check_signet_challenge(&info)?;
            tracing::info!(
                challenge = info.signet_challenge.as_deref().unwrap_or_default(),
                "signet challenge needs no signature; blocks carry no signet solution"
            );
        }
        ready::check_payout(&rpc, &config.address, &config.payout).await?;
        tracing::info!(address = %config.address, "payout address confirmed by the node");
        if let Some(endpoint) = &config.config.node.zmq_hashblock {
            ready::check_zmq(&rpc, endpoint).await?;
        }
        let journal = Journal::open(&config.config.journal.dir)?;
        // Bound now, so that a port in use stops the start-up instead of mining without it.
        let stratum = match &config.stratum {
            Some(settings) => Some(StratumServer::bind(settings.clone()).await?),
            None => None,
        };
        let stratum_addr = stratum.as_ref().and_then(|s| s.local_addr().ok());
        let api = match config.api_listen {
            Some(addr) => Some((
                crate::api::ApiServer::bind(addr).await?,
                crate::api::load_or_create_token(&config.api_token_file)?,
            )),
            None => None,
        };
        let api_addr = api.as_ref().and_then(|(s, _)| s.local_addr().ok());
        let coordinator = match &config.pool_coordinator {
            Some(settings) => {
                Some(crate::pool::coordinator::Coordinator::bind(settings.clone()).await?)
            }
            None => None,
        };
        let pool_addr = coordinator.as_ref().and_then(|c| c.local_addr().ok());
        let coordinator_handle = coordinator.as_ref().map(|c| c.handle());

        let tracker = TaskTracker::new();
        let stop_devices = CancellationToken::new();
        let devices = TaskTracker::new();
        let drain = CancellationToken::new();
        let pipeline = TaskTracker::new();
        let stats = Stats::default();
        let (events, _) = broadcast::channel(4096);
        // Subscribed before anything publishes, so that a block the journal replay gets
        // confirmed is announced too; flushed (or abandoned, logged) within 5 s of `cancel`.
        if let Some(url) = &config.webhook_url {
            let notifier = crate::notify::Notifier::with_policy(
                url,
                crate::notify::Origin::new(config.network),
                events.subscribe(),
                cancel.clone(),
                crate::notify::Policy {
                    lost_grace: config.device_lost_grace,
                    ..Default::default()
                },
            )?;
            tracker.spawn(notifier.run());
        }
        let (work_tx, work_rx) = watch::channel(None);
        // What the devices mine: the work, unless the operator paused them through the API.
        let (pause_tx, pause_rx) = watch::channel(false);
        let (device_work_tx, device_work_rx) = watch::channel(None);
        tracker.spawn(gate_work(
            work_rx.clone(),
            pause_rx,
            device_work_tx,
            cancel.clone(),
        ));
        let status = crate::api::StatusBoard::default();
        tracker.spawn(crate::api::status::track(
            status.clone(),
            events.subscribe(),
            work_rx.clone(),
            crate::logging::Tail::global().follow(),
            cancel.clone(),
        ));
        let (tip_tx, tip_rx) = watch::channel::<Option<BlockHash>>(None);
        // With pools, the node is one work source of several and a selector forwards the
        // chosen one's work; without, the node's work goes to the devices directly.
        let with_pools = config.sources != [None];
        let (node_work_tx, node_work_rx) = watch::channel(None);
        let (node_tip_tx, node_tip_rx) = watch::channel::<Option<BlockHash>>(None);
        let (source_work, source_tip, forward) = if with_pools {
            (node_work_tx, node_tip_tx, Some((work_tx, tip_tx)))
        } else {
            (work_tx, tip_tx, None)
        };
        let (found_tx, found_rx) = mpsc::channel(1024);
        let (candidate_tx, candidate_rx) = mpsc::channel(256);
        let (found_block_tx, found_block_rx) = mpsc::channel(16);
        let (refresh_tx, refresh_rx) = mpsc::channel(16);
        let (submitted_tx, submitted_rx) = mpsc::unbounded_channel();

        let submitter = Submitter {
            rpc: rpc.clone(),
            journal: journal.clone(),
            candidates: candidate_rx,
            submitted: submitted_tx,
            stats: stats.clone(),
            events: events.clone(),
            cancel: cancel.clone(),
        };
        // Blocks left from an earlier run go first, before new work can find more.
        submitter.resubmit_pending().await?;
        pipeline.spawn(submitter.run());

        if let Some(endpoint) = config.config.node.zmq_hashblock.clone() {
            let (zmq_tx, mut zmq_rx) = mpsc::channel(16);
            tracker.spawn(crate::node::zmq::watch_hashblock(
                endpoint,
                zmq_tx,
                cancel.clone(),
            ));
            let refresh = refresh_tx.clone();
            let c = cancel.clone();
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        n = zmq_rx.recv() => match n {
                            Some(()) => { let _ = refresh.try_send(crate::node::source::Refresh::NewBlock); }
                            None => break,
                        },
                        _ = c.cancelled() => break,
                    }
                }
            });
        }

        let (pool_state, pool_member) = match &config.pool_member {
            Some(settings) => {
                let (client, state) = crate::pool::member::MemberClient::new(
                    settings.clone(),
                    config.payout.clone(),
                    events.clone(),
                    cancel.clone(),
                )?;
                let status = client.status();
                tracker.spawn(client.run());
                (Some(state), Some(status))
            }
            None => (None, None),
        };
        if let Some(coordinator) = coordinator {
            let node = crate::pool::coordinator::CoordinatorNode {
                rpc: rpc.clone(),
                journal: journal.clone(),
                candidates: candidate_tx.clone(),
                stats_index: stats.add_device("pool members"),
            };
            // Stops with the devices: it holds a sender of the submitter's queue, which must close
            // for the pipeline to drain.
            tracker.spawn(coordinator.run(node, drain.clone()));
        }
        let source = TemplateSource {
            pool: pool_state,
            rpc: rpc.clone(),
            config: SourceConfig {
                network: config.network,
                payout: config.payout.clone(),
                tag: config.config.payout.tag.as_bytes().to_vec(),
                poll_interval: config.poll_interval,
                fee_refresh: config.fee_refresh,
                node_loss_grace: config.node_loss_grace,
            },
            work: source_work,
            tip: source_tip,
            found_block: found_block_rx,
            refresh: refresh_rx,
            submitted: submitted_rx,
            events: events.clone(),
            cancel: cancel.clone(),
        };
        tracker.spawn(source.run());
        if let Some((work_tx, tip_tx)) = forward {
            let mut pools = Vec::new();
            for settings in &config.pools {
                let (work, work_rx) = watch::channel(None);
                let (health, health_rx) = watch::channel(crate::stratum::client::PoolHealth::Down(
                    "not connected yet".into(),
                ));
                let (shares_tx, shares) = mpsc::channel(crate::stratum::client::UPSTREAM_QUEUE);
                tracker.spawn(
                    crate::stratum::client::PoolClient {
                        settings: settings.clone(),
                        work,
                        health,
                        shares,
                        shares_tx,
                        events: events.clone(),
                        cancel: cancel.clone(),
                    }
                    .run(),
                );
                pools.push((settings.name.clone(), work_rx, health_rx));
            }
            let inputs = config
                .sources
                .iter()
                .map(|source| match source {
                    None => crate::sources::SourceInput {
                        name: "node".into(),
                        work: node_work_rx.clone(),
                        health: None,
                        tip: Some(node_tip_rx.clone()),
                    },
                    Some(i) => crate::sources::SourceInput {
                        name: pools[*i].0.clone(),
                        work: pools[*i].1.clone(),
                        health: Some(pools[*i].2.clone()),
                        tip: None,
                    },
                })
                .collect();
            tracker.spawn(crate::sources::select(
                inputs,
                work_tx,
                tip_tx,
                config.source_timing,
                events.clone(),
                cancel.clone(),
            ));
        }

        pipeline.spawn(
            ShareChecker {
                found: found_rx,
                tip: tip_rx,
                candidates: candidate_tx,
                found_block: found_block_tx,
                journal: journal.clone(),
                stats: stats.clone(),
                events: events.clone(),
                drain: drain.clone(),
                cancel: cancel.clone(),
            }
            .run(),
        );

        let ids = Arc::new(AtomicU64::new(1));
        let mut sims = Vec::new();
        let mut boards = Vec::new();
        let mut board_settings = std::collections::HashMap::new();
        for (index, device) in config.config.devices.iter().enumerate() {
            let (name, kind) = device.name_and_kind(index);
            let stats_index = stats.add_device(&name);
            let ctx = DeviceContext {
                index: stats_index,
                name: name.clone(),
                work: device_work_rx.clone(),
                found: crate::device::ResultSender::new(found_tx.clone(), stats.clone()),
                factory: JobFactory::new(index as u16, ids.clone(), BIP320_MASK),
                stats: stats.clone(),
                events: events.clone(),
                cancel: stop_devices.clone(),
            };
            let handle = Arc::new(Mutex::new(None));
            sims.push(handle.clone());
            let handle_telemetry = Arc::new(Mutex::new(None));
            boards.push(handle_telemetry.clone());
            tracing::info!(device = %name, kind, "starting device");
            match device {
                DeviceConfig::Sim {
                    model,
                    chips,
                    floor_bits,
                    hashrate,
                    latency_ms,
                    ..
                } => {
                    let model = ChipModel::from_name(model).context("device model")?;
                    let mut sim = SimConfig::new(model, *chips);
                    sim.floor_bits = *floor_bits;
                    sim.hashrate_per_chip = *hashrate;
                    sim.latency = Duration::from_millis(*latency_ms);
                    devices.spawn(supervise(
                        SimDevice {
                            config: sim,
                            handle,
                        },
                        ctx,
                    ));
                }
                DeviceConfig::Serial {
                    path,
                    model,
                    chips,
                    frequency_mhz,
                    ticket_difficulty,
                    baud,
                    host_baud,
                    ..
                } => {
                    let model = ChipModel::from_name(model).context("device model")?;
                    let device = SerialDevice {
                        path: path.clone(),
                        model,
                        chips: *chips,
                        frequency_khz: frequency_mhz
                            .map_or(model.default_frequency_khz(), |f| (f * 1000.0) as u32),
                        ticket_difficulty: *ticket_difficulty,
                        baud: *baud,
                        host_baud: *host_baud,
                    };
                    devices.spawn(supervise(device, ctx));
                }
                DeviceConfig::Link {
                    port,
                    serial_number,
                    tcp,
                    share_floor_bits,
                    ..
                } => {
                    let (settings_tx, settings_rx) = watch::channel(Default::default());
                    board_settings.insert(name.clone(), settings_tx);
                    let device = crate::device::link::LinkDevice {
                        port: port.clone(),
                        serial_number: serial_number.clone(),
                        tcp: tcp.clone(),
                        share_floor_bits: *share_floor_bits,
                        telemetry: handle_telemetry.clone(),
                        settings: Some(settings_rx),
                    };
                    devices.spawn(supervise(device, ctx));
                }
                DeviceConfig::Cpu {
                    threads,
                    share_bits,
                    ..
                } => {
                    devices.spawn(supervise(
                        CpuDevice {
                            threads: *threads,
                            share_bits: *share_bits,
                        },
                        ctx,
                    ));
                }
            }
        }
        if let Some(server) = stratum {
            // A device like the others: stopped first at shutdown, its last shares queued.
            devices.spawn(server.run(
                device_work_rx.clone(),
                crate::device::ResultSender::new(found_tx.clone(), stats.clone()),
                stats.clone(),
                events.clone(),
                ids.clone(),
                stop_devices.clone(),
            ));
        }
        drop(found_tx);
        if let Some((server, token)) = api {
            let state = crate::api::ApiState {
                stats: stats.clone(),
                status,
                journal: journal.clone(),
                config: Arc::new(crate::api::redacted_config(&config.config)),
                token: Arc::new(token),
                pause: Arc::new(pause_tx),
                boards: Arc::new(board_settings),
                network: config.config.node.network.clone(),
                pool_member: pool_member.clone(),
                pool_coordinator: coordinator_handle,
                started: std::time::Instant::now(),
                cancel: cancel.clone(),
            };
            if let Some(addr) = api_addr {
                tracing::info!(dashboard = %format!("http://{addr}/"), "API, dashboard and /metrics");
            }
            tracker.spawn(server.run(state, cancel.clone()));
        }
        tracker.spawn(report_periodically(stats.clone(), cancel.clone()));
        tracker.close();
        devices.close();
        pipeline.close();
        Ok(Daemon {
            events,
            stats,
            work: work_rx,
            sims,
            boards,
            journal,
            stratum_addr,
            api_addr,
            pool_addr,
            pool_member,
            stop_devices,
            devices,
            drain,
            pipeline,
            cancel,
            tracker,
        })
    }

    /// Latest telemetry from the `link` device at `index`.
    pub fn telemetry(&self, index: usize) -> Option<hearth_link::Telemetry> {
        self.boards
            .get(index)
            .and_then(|h| h.lock().ok().and_then(|t| t.clone()))
    }

    /// Emulator handle of the `sim` device at `index`, once it is running.
    pub fn sim(&self, index: usize) -> Option<SimHandle> {
        self.sims
            .get(index)
            .and_then(|h| h.lock().ok().and_then(|h| h.clone()))
    }

    /// Stop in the order that loses nothing: the devices first (their last results are
    /// queued), then the share checker drains and journals every queued result, then the
    /// submitter submits every candidate it was handed, within [`SHUTDOWN_SUBMIT_BUDGET`];
    /// anything still unanswered then stays pending in the journal for the next start.
    pub async fn shutdown(self) {
        self.stop_devices.cancel();
        if tokio::time::timeout(DEVICE_STOP_TIMEOUT, self.devices.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "some devices did not stop within {DEVICE_STOP_TIMEOUT:?}; draining without them"
            );
        }
        drain_pipeline(
            &self.drain,
            &self.cancel,
            &self.pipeline,
            SHUTDOWN_SUBMIT_BUDGET,
        )
        .await;
        self.cancel.cancel();
        if tokio::time::timeout(Duration::from_secs(10), async {
            self.pipeline.wait().await;
            self.tracker.wait().await;
        })
        .await
        .is_err()
        {
            tracing::warn!("some tasks did not stop within 10 s");
        }
        for sim in self
            .sims
            .iter()
            .filter_map(|h| h.lock().ok().and_then(|h| h.clone()))
        {
            sim.stop();
        }
    }

    /// Run until SIGINT/SIGTERM, then shut down.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}

/// The node's RPC client: direct, or through the SOCKS5 proxy (`proxy.node`) by way of a
/// loopback forwarder that lives until `cancel`.
pub async fn rpc_client(
    config: &Validated,
    cancel: &CancellationToken,
) -> anyhow::Result<RpcClient> {
    let url = match &config.node_proxy {
        Some(proxy) => {
            let (host, port, path) = crate::node::socks::split_url(&config.rpc_url)
                .with_context(|| format!("node.url {:?} has no host:port", config.rpc_url))?;
            let local =
                crate::node::socks::forward(proxy.clone(), host.clone(), port, cancel.clone())
                    .await
                    .context("cannot open the loopback port for the node's SOCKS5 route")?;
            tracing::info!(node = %format!("{host}:{port}"), %proxy, "reaching the node through the SOCKS5 proxy");
            format!("http://{local}{path}")
        }
        None => config.rpc_url.clone(),
    };
    Ok(RpcClient::new(
        &url,
        config.auth.clone(),
        config.rpc_timeout,
    )?)
}

/// Finish the result pipeline once the devices have stopped: the share checker (started with
/// `drain`) checks and journals every queued result and ends, the submitter submits every
/// candidate it was handed and ends. After `budget`, `hard_stop` ends them both: a candidate
/// still unanswered stays pending in the journal for the next start.
pub async fn drain_pipeline(
    drain: &CancellationToken,
    hard_stop: &CancellationToken,
    pipeline: &TaskTracker,
    budget: Duration,
) {
    drain.cancel();
    if tokio::time::timeout(budget, pipeline.wait()).await.is_err() {
        tracing::warn!(
            "block candidates still unanswered after {budget:?}; they stay pending in the journal and are submitted at the next start"
        );
        hard_stop.cancel();
    }
}

/// SIGINT (Ctrl-C) or SIGTERM (`kill`, a service manager).
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Forwards the work to the devices, or nothing while the operator has them paused.
async fn gate_work(
    mut work: watch::Receiver<Option<Arc<TemplateWork>>>,
    mut paused: watch::Receiver<bool>,
    devices: watch::Sender<Option<Arc<TemplateWork>>>,
    cancel: CancellationToken,
) {
    // Without the API nobody holds the pause switch: then it is simply never paused.
    let mut switch_open = true;
    loop {
        let next = if switch_open && *paused.borrow_and_update() {
            None
        } else {
            work.borrow_and_update().clone()
        };
        devices.send_replace(next);
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = work.changed() => if changed.is_err() { return },
            changed = paused.changed(), if switch_open => if changed.is_err() { switch_open = false },
        }
    }
}

async fn report_periodically(stats: Stats, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break,
        }
        for d in stats.snapshot() {
            tracing::info!(device = %d.name, hashrate_mhs = format_args!("{:.2}", d.hashrate() / 1e6), shares = d.shares,
                stale = d.stale, hw_errors = d.hardware_errors, duplicates = d.duplicates,
                blocks = d.blocks_accepted, best = format_args!("{:.0}", d.best_difficulty), "device stats");
        }
    }
    for d in stats.snapshot() {
        tracing::info!(device = %d.name, results = d.results, shares = d.shares, stale = d.stale,
            duplicates = d.duplicates, hw_errors = d.hardware_errors, candidates = d.block_candidates,
            blocks = d.blocks_accepted, "final device stats");
    }
}
