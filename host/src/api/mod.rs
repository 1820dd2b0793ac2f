//! The HTTP side of the daemon (axum): a REST API documented by OpenAPI
//! (`/api/openapi.json`), live updates as server-sent events (`/api/events`), Prometheus
//! metrics (`/metrics`), and the dashboard (`/`), embedded in the binary so it works on a LAN
//! with no internet.
//!
//! Reading is open to whoever can reach the address (loopback by default); control (pause,
//! resume, frequency, voltage, fan) needs `Authorization: Bearer <token>`, the token being the
//! contents of `[api] token_file`, generated on first start.

pub mod metrics;
pub mod status;
mod views;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::device::link::BoardSettings;
use crate::events::Stats;
use crate::submit::Journal;
pub use status::StatusBoard;
pub use views::*;

/// Everything the handlers read and drive.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Device counters.
    pub stats: Stats,
    /// Node and work status, and the log (events, warnings and errors).
    pub status: StatusBoard,
    /// The block journal.
    pub journal: Journal,
    /// The configuration, secrets redacted.
    pub config: Arc<serde_json::Value>,
    /// Bearer token for control.
    pub token: Arc<String>,
    /// Operator pause (true = the devices get no work).
    pub pause: Arc<watch::Sender<bool>>,
    /// Per-board settings, by device name (link devices only).
    pub boards: Arc<HashMap<String, watch::Sender<BoardSettings>>>,
    /// Network name.
    pub network: String,
    /// This daemon as a pool member (`[pool.member]`).
    pub pool_member: Option<Arc<std::sync::Mutex<crate::pool::member::MemberStatus>>>,
    /// This daemon as a pool coordinator (`[pool.coordinator]`).
    pub pool_coordinator: Option<crate::pool::coordinator::CoordinatorHandle>,
    /// When the daemon started.
    pub started: Instant,
    /// The daemon's end: live streams close with it, so the server can stop gracefully.
    pub cancel: CancellationToken,
}

/// The API's bound socket, before it serves.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
}

impl ApiServer {
    /// Bind `addr` (at start-up, so that a port in use stops the start instead of running
    /// without the API). A non-loopback address is allowed, loudly.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<ApiServer> {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} for the API and dashboard: is another hearth (or \
                 something else) using it? Set [api] listen to another address, or \"off\""
            )
        })?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the API and dashboard listen beyond this machine: anyone who can reach \
                it sees the miner's state (control still needs the token); put it behind a firewall \
                or use 127.0.0.1");
        }
        Ok(ApiServer { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until cancelled.
    pub async fn run(self, state: ApiState, cancel: CancellationToken) {
        let app = router(state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the API server stopped");
        }
    }
}

/// The token for control endpoints: read from `path`, or generated (32 random bytes, hex) and
/// written there readable by the owner only.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 16 {
                anyhow::bail!(
                    "{}: the API token must be at least 16 characters; delete the file to get a new one",
                    path.display()
                );
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 32] = rand::random();
            let token = hex::encode(bytes);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            write_private(path, &token)
                .with_context(|| format!("writing the API token to {}", path.display()))?;
            tracing::info!(file = %path.display(), "generated the API token for control endpoints");
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("reading the API token {}", path.display())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

/// The default token file when `[api] token_file` is not set.
pub fn default_token_file(journal_dir: &Path) -> PathBuf {
    journal_dir.join("api-token")
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/openapi.json", get(openapi))
        .route("/api/status", get(get_status))
        .route("/api/devices", get(get_devices))
        .route("/api/devices/{name}", get(get_device))
        .route("/api/shares", get(get_shares))
        .route("/api/blocks", get(get_blocks))
        .route("/api/config", get(get_config))
        .route("/api/log", get(get_log))
        .route("/api/pool", get(get_pool))
        .route("/api/events", get(events))
        .route("/api/control/pause", post(pause))
        .route("/api/control/resume", post(resume))
        .route("/api/devices/{name}/frequency", post(set_frequency))
        .route("/api/devices/{name}/voltage", post(set_voltage))
        .route("/api/devices/{name}/fan", post(set_fan))
        .route("/metrics", get(get_metrics))
        .with_state(state)
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hearth API",
        description = "A solo Bitcoin miner's state and controls. Reading is open to whoever can \
            reach the address; control endpoints need `Authorization: Bearer <token>` \
            ([api] token_file)."
    ),
    paths(
        get_status, get_devices, get_device, get_shares, get_blocks, get_config, get_log, get_pool,
        events, pause, resume, set_frequency, set_voltage, set_fan, get_metrics
    ),
    components(schemas(
        StatusView, status::NodeStatus, DeviceView, ChipView, crate::events::BoardReadings, SharesView, BestShare,
        BlocksView, BlockView, status::LogLine, ErrorView, FrequencyRequest, VoltageRequest,
        FanRequest, ControlView, PoolView, crate::pool::member::MemberStatus,
        crate::pool::coordinator::CoordinatorView, crate::pool::coordinator::MemberCounters
    )),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorView {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Checks the bearer token (constant-time comparison).
fn authorised(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "control needs Authorization: Bearer <token>, the token being in [api] token_file",
        )));
    };
    let expected = state.token.as_bytes();
    let ok = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(Box::new(error(StatusCode::UNAUTHORIZED, "wrong token")))
    }
}

/// Node, tip, template age, network difficulty, work source, totals.
#[utoipa::path(get, path = "/api/status", responses((status = 200, body = StatusView)))]
async fn get_status(State(state): State<ApiState>) -> Json<StatusView> {
    Json(status_view(&state))
}

/// Every device, Stratum miners included, with per-chip statistics.
#[utoipa::path(get, path = "/api/devices", responses((status = 200, body = Vec<DeviceView>)))]
async fn get_devices(State(state): State<ApiState>) -> Json<Vec<DeviceView>> {
    let now = Instant::now();
    Json(
        state
            .stats
            .snapshot()
            .iter()
            .map(|d| DeviceView::new(d, now))
            .collect(),
    )
}

/// One device.
#[utoipa::path(get, path = "/api/devices/{name}",
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorView)))]
async fn get_device(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Response {
    let now = Instant::now();
    match state.stats.snapshot().iter().find(|d| d.name == name) {
        Some(d) => Json(DeviceView::new(d, now)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no device named {name:?}")),
    }
}

/// Share totals and the best share.
#[utoipa::path(get, path = "/api/shares", responses((status = 200, body = SharesView)))]
async fn get_shares(State(state): State<ApiState>) -> Json<SharesView> {
    Json(SharesView::new(&state.stats.snapshot()))
}

/// The Hearth pool, as this daemon takes part in it: as a member (connection, round, shares
/// accepted and refused by reason, solo or not) and as a coordinator (ledger, round, members).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PoolView {
    /// `[pool.member]`: this daemon's membership; null without.
    pub member: Option<crate::pool::member::MemberStatus>,
    /// `[pool.coordinator]`: the pool this daemon runs; null without.
    pub coordinator: Option<crate::pool::coordinator::CoordinatorView>,
}

/// The pool (docs/pool.md).
#[utoipa::path(get, path = "/api/pool", responses((status = 200, body = PoolView)))]
async fn get_pool(State(state): State<ApiState>) -> Json<PoolView> {
    Json(pool_view(&state))
}

/// The pool now.
pub fn pool_view(state: &ApiState) -> PoolView {
    PoolView {
        member: state
            .pool_member
            .as_ref()
            .and_then(|m| m.lock().ok().map(|s| s.clone())),
        coordinator: state.pool_coordinator.as_ref().map(|c| c.view()),
    }
}

/// Block candidates and where they ended, from the journal (newest first).
#[utoipa::path(get, path = "/api/blocks", responses((status = 200, body = BlocksView)))]
async fn get_blocks(State(state): State<ApiState>) -> Json<BlocksView> {
    let journal = state.journal.clone();
    let view = tokio::task::spawn_blocking(move || BlocksView::read(&journal, 100))
        .await
        .unwrap_or_default();
    Json(view)
}

/// The configuration in effect, with secrets (passwords, webhook credentials) redacted.
#[utoipa::path(get, path = "/api/config", responses((status = 200, body = Object)))]
async fn get_config(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json((*state.config).clone())
}

/// The recent log lines, oldest first: the daemon's events (blocks, node, devices, faults, work
/// source) and every warning and error logged.
#[utoipa::path(get, path = "/api/log", responses((status = 200, body = Vec<status::LogLine>)))]
async fn get_log(State(state): State<ApiState>) -> Json<Vec<status::LogLine>> {
    Json(state.status.log())
}

/// Devices in each live snapshot (all of them are at `/api/devices`).
pub const SNAPSHOT_DEVICES: usize = 100;

/// Live updates (Server-Sent Events): a `snapshot` every 2 s (`status`, the busiest
/// `SNAPSHOT_DEVICES` devices, `devices_total`, and `shares` over all devices) and a `log`
/// event for each line of `/api/log` as it happens.
#[utoipa::path(get, path = "/api/events", responses(
    (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String)
))]
async fn events(
    State(state): State<ApiState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(2))).map({
        let state = state.clone();
        move |_| {
            let now = Instant::now();
            let snapshot = state.stats.snapshot();
            let mut devices: Vec<(usize, DeviceView)> = snapshot
                .iter()
                .map(|d| DeviceView::new(d, now))
                .enumerate()
                .collect();
            // A server with thousands of Stratum miners would otherwise push megabytes every
            // two seconds to each open dashboard: the busiest devices, in their usual order,
            // and the count.
            let shares = SharesView::new(&snapshot);
            let total = devices.len();
            devices.sort_by(|a, b| b.1.hashrate_10m.total_cmp(&a.1.hashrate_10m));
            devices.truncate(SNAPSHOT_DEVICES);
            devices.sort_by_key(|(i, _)| *i);
            let devices: Vec<DeviceView> = devices.into_iter().map(|(_, d)| d).collect();
            let body = serde_json::json!({
                "status": status_view(&state),
                "devices": devices,
                "devices_total": total,
                // Over every device, not only those in this snapshot.
                "shares": shares,
            });
            Ok(SseEvent::default().event("snapshot").data(body.to_string()))
        }
    });
    let happenings = BroadcastStream::new(state.status.follow_log()).filter_map(|line| {
        let body = serde_json::to_string(&line.ok()?).ok()?;
        Some(Ok(SseEvent::default().event("log").data(body)))
    });
    let until = state.cancel.clone().cancelled_owned();
    Sse::new(futures_util::StreamExt::take_until(
        ticks.merge(happenings),
        until,
    ))
    .keep_alive(KeepAlive::default())
}

/// Prometheus text exposition (format 0.0.4); the metrics are listed in docs/api.md.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)
))]
async fn get_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let text = metrics::render(&state, Instant::now());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

fn status_view(state: &ApiState) -> StatusView {
    let devices = state.stats.snapshot();
    let now = Instant::now();
    StatusView {
        network: state.network.clone(),
        uptime_secs: state.started.elapsed().as_secs(),
        operator_paused: *state.pause.borrow(),
        node: state.status.status(),
        template_age_secs: state
            .status
            .status()
            .template_time
            .map(|t| status::unix_now().saturating_sub(t)),
        hashrate_1m: devices
            .iter()
            .map(|d| d.rate.per_second(now, Duration::from_secs(60)))
            .sum(),
        hashrate_10m: devices
            .iter()
            .map(|d| d.rate.per_second(now, Duration::from_secs(600)))
            .sum(),
        hashrate_1h: devices
            .iter()
            .map(|d| d.rate.per_second(now, Duration::from_secs(3600)))
            .sum(),
        devices: devices.len(),
        block_candidates: devices.iter().map(|d| d.block_candidates).sum(),
        blocks_accepted: devices.iter().map(|d| d.blocks_accepted).sum(),
    }
}

/// Stop hashing on every device (Stratum miners keep their last job).
#[utoipa::path(post, path = "/api/control/pause", security(("token" = [])),
    responses((status = 200, body = ControlView), (status = 401, body = ErrorView)))]
async fn pause(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorised(&state, &headers) {
        return *r;
    }
    state.pause.send_replace(true);
    state.status.set_operator_pause(true);
    tracing::warn!("devices paused through the API");
    Json(ControlView {
        ok: true,
        detail: "paused: devices stop hashing; resume with POST /api/control/resume".into(),
    })
    .into_response()
}

/// Resume hashing after a pause.
#[utoipa::path(post, path = "/api/control/resume", security(("token" = [])),
    responses((status = 200, body = ControlView), (status = 401, body = ErrorView)))]
async fn resume(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorised(&state, &headers) {
        return *r;
    }
    state.pause.send_replace(false);
    state.status.set_operator_pause(false);
    tracing::info!("devices resumed through the API");
    Json(ControlView {
        ok: true,
        detail: "resumed".into(),
    })
    .into_response()
}

fn board_control(
    state: &ApiState,
    headers: &HeaderMap,
    name: &str,
) -> Result<watch::Sender<BoardSettings>, Box<Response>> {
    authorised(state, headers)?;
    match state.boards.get(name) {
        Some(tx) => Ok(tx.clone()),
        None if state.stats.snapshot().iter().any(|d| d.name == name) => Err(Box::new(error(
            StatusCode::CONFLICT,
            format!(
                "{name} is not a Hearth board (kind = \"link\"): it has no frequency, voltage or fan to set"
            ),
        ))),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no device named {name:?}"),
        ))),
    }
}

/// Set a board's hash clock (the board ramps to it).
#[utoipa::path(post, path = "/api/devices/{name}/frequency", security(("token" = [])),
    params(("name" = String, Path, description = "Board name")), request_body = FrequencyRequest,
    responses((status = 200, body = ControlView), (status = 400, body = ErrorView),
        (status = 401, body = ErrorView), (status = 404, body = ErrorView), (status = 409, body = ErrorView)))]
async fn set_frequency(
    State(state): State<ApiState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<FrequencyRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let tx = match board_control(&state, &headers, &name) {
        Ok(tx) => tx,
        Err(r) => return *r,
    };
    let Ok(Json(req)) = body else {
        return error(StatusCode::BAD_REQUEST, "give {\"mhz\": <number>}");
    };
    if !(50.0..=1000.0).contains(&req.mhz) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "mhz = {}: between 50 and 1000 (the board keeps to its chip's envelope)",
                req.mhz
            ),
        );
    }
    tx.send_modify(|s| s.frequency_khz = Some((req.mhz * 1000.0) as u32));
    tracing::info!(board = %name, mhz = req.mhz, "frequency set through the API");
    Json(ControlView {
        ok: true,
        detail: format!("{name}: frequency {} MHz", req.mhz),
    })
    .into_response()
}

/// Set a board's core voltage (the board clamps it to its limits).
#[utoipa::path(post, path = "/api/devices/{name}/voltage", security(("token" = [])),
    params(("name" = String, Path, description = "Board name")), request_body = VoltageRequest,
    responses((status = 200, body = ControlView), (status = 400, body = ErrorView),
        (status = 401, body = ErrorView), (status = 404, body = ErrorView), (status = 409, body = ErrorView)))]
async fn set_voltage(
    State(state): State<ApiState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<VoltageRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let tx = match board_control(&state, &headers, &name) {
        Ok(tx) => tx,
        Err(r) => return *r,
    };
    let Ok(Json(req)) = body else {
        return error(StatusCode::BAD_REQUEST, "give {\"mv\": <millivolts>}");
    };
    if !(300..=2000).contains(&req.mv) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "mv = {}: between 300 and 2000 (the board clamps to its chip's envelope)",
                req.mv
            ),
        );
    }
    tx.send_modify(|s| s.voltage_mv = Some(req.mv));
    tracing::info!(board = %name, mv = req.mv, "core voltage set through the API");
    Json(ControlView {
        ok: true,
        detail: format!("{name}: core voltage {} mV", req.mv),
    })
    .into_response()
}

/// Fix a board's fan duty, or give it back to the board's own control (`percent: null`).
#[utoipa::path(post, path = "/api/devices/{name}/fan", security(("token" = [])),
    params(("name" = String, Path, description = "Board name")), request_body = FanRequest,
    responses((status = 200, body = ControlView), (status = 400, body = ErrorView),
        (status = 401, body = ErrorView), (status = 404, body = ErrorView), (status = 409, body = ErrorView)))]
async fn set_fan(
    State(state): State<ApiState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<FanRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let tx = match board_control(&state, &headers, &name) {
        Ok(tx) => tx,
        Err(r) => return *r,
    };
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "give {\"percent\": 0..100} or {\"percent\": null} for automatic",
        );
    };
    if req.percent.is_some_and(|p| p > 100) {
        return error(
            StatusCode::BAD_REQUEST,
            "percent: 0..=100, or null for automatic",
        );
    }
    tx.send_modify(|s| s.fan_percent = Some(req.percent));
    Json(ControlView {
        ok: true,
        detail: match req.percent {
            Some(p) => format!("{name}: fan fixed at {p} %"),
            None => format!("{name}: fan under the board's control"),
        },
    })
    .into_response()
}

/// Settings a control request carries.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FrequencyRequest {
    /// Hash clock, MHz.
    pub mhz: f64,
}

/// Core voltage request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VoltageRequest {
    /// Core voltage, mV.
    pub mv: u16,
}

/// Fan request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FanRequest {
    /// Duty, percent; null = the board's own control loop.
    pub percent: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route [`router`] serves is in the OpenAPI document, except the page and the
    /// document itself: a route added without its `#[utoipa::path]` fails here.
    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        let source = include_str!("mod.rs");
        let routes: Vec<&str> = source
            .split(".route(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|path| !matches!(*path, "/" | "/api/openapi.json"))
            .collect();
        assert!(routes.len() >= 15, "{routes:?}");
        for route in routes {
            assert!(
                doc.paths.paths.contains_key(route),
                "{route} is served but not in /api/openapi.json"
            );
        }
    }
}
