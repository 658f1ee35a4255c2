//! The collector's HTTP API (JSON, read-only): what the registry holds and
//! the last summary per stream. The dashboard builds on it.
//!
//! - `GET /api/v1/streams`: every stream known, with its last per-second summary.
//! - `GET /api/v1/devices`: every device with its last status.
//! - `GET /api/v1/streams/{device}/{stream}/series?from=&to=`: history from
//!   storage, at a resolution chosen from the range.
//! - `GET /api/v1/streams/{device}/{stream}/viewer/series?from=&to=`: the
//!   dashboard players' viewer-latency reports from storage, the same points.
//! - `GET /api/v1/streams/{device}/{stream}/frames?from=&to=&format=csv|json`:
//!   the stored frames of a range (the raw data behind a percentile).
//! - `GET /api/v1/devices/{device}/events?from=&to=`: online, offline, restarts.
//! - `GET /api/v1/fleet`: every stored stream with its latest second.
//! - `GET /api/v1/storage`: storage's counters (queue, drops, failures).
//! - `GET /healthz`: `ok` while the collector runs.
//! - `GET /`, `/streams/…`, `/hls/…` and the live and viewer routes: the
//!   dashboard (`dashboard.rs`).
//! - `GET|POST /login`, `POST /logout`, `GET /api/v1/whoami`, and the
//!   admin's `GET|POST /api/v1/tokens`, `DELETE /api/v1/tokens/{name}`
//!   (`login.rs`).
//!
//! Every route is added through [`Routes::add`] with the access it needs
//! ([`Access`]), and [`routes`] returns the table of them, so a test can
//! ask every route anonymously and no route can be added without saying
//! who may use it.

use std::sync::{Arc, Mutex, PoisonError};

use axum::{
    extract::{Path, Query, State},
    http::{header, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post, MethodRouter},
    Json, Router,
};
use glasswatch_common::api::{
    DevicesResponse, EventsResponse, FramesResponse, Resolution, SeriesResponse, StorageStatus,
    StreamsResponse, ViewerSeriesResponse,
};
use glasswatch_common::topics::valid_id;
use serde::Deserialize;

use crate::auth::Auth;
use crate::hub::Hub;
use crate::login;
pub use crate::login::Access;
use crate::store::{Storage, Store, StoreError};

type Shared = Arc<Mutex<Hub>>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub hub: Shared,
    pub storage: Storage,
    pub auth: Arc<Auth>,
    pub health: Arc<crate::metrics::Health>,
}

/// The longest range one series or events answer covers (two years and a day).
const MAX_RANGE_US: i64 = 731 * 86_400_000_000;
/// The default range: the last 15 minutes.
const DEFAULT_RANGE_US: i64 = 15 * 60_000_000;
/// Most frames in one answer (ask again from the last one for more).
pub const MAX_FRAMES: u32 = 100_000;
/// Most events in one answer.
const MAX_EVENTS: u32 = 10_000;

/// One route: its method, path pattern and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// The router being built, and the table of what it serves.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
    state: AppState,
}

impl Routes {
    /// Adds `handler` for `method` on `path`, behind the guard unless `access`
    /// is [`Access::Open`].
    pub fn add(
        mut self,
        method: Method,
        path: &'static str,
        handler: MethodRouter<AppState>,
        access: Access,
    ) -> Self {
        let handler = match access {
            Access::Open => handler,
            _ => handler.route_layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                move |st, req, next| login::guard(st, access, req, next),
            )),
        };
        self.router = self.router.route(path, handler);
        self.table.push(RouteInfo {
            method,
            path,
            access,
        });
        self
    }
}

/// Every route and the table of them.
pub fn routes(state: AppState) -> (Router, Vec<RouteInfo>) {
    use Access::{Admin, Open, Viewer};
    let r = Routes {
        router: Router::new(),
        table: Vec::new(),
        state: state.clone(),
    }
    .add(Method::GET, "/healthz", get(|| async { "ok" }), Open)
    .add(Method::GET, "/readyz", get(readyz), Open)
    .add(Method::GET, "/metrics", get(metrics), Viewer)
    .add(Method::GET, "/login", get(login::login_page), Open)
    .add(Method::POST, "/login", post(login::login), Open)
    // Checks its session and CSRF token itself (a plain form post).
    .add(Method::POST, "/logout", post(login::logout), Open)
    .add(Method::GET, "/api/v1/whoami", get(login::whoami), Viewer)
    .add(Method::GET, "/api/v1/streams", get(streams), Viewer)
    .add(Method::GET, "/api/v1/devices", get(devices), Viewer)
    .add(Method::GET, "/api/v1/fleet", get(fleet), Viewer)
    .add(Method::GET, "/api/v1/storage", get(storage_status), Viewer)
    .add(
        Method::GET,
        "/api/v1/streams/{device}/{stream}/series",
        get(series),
        Viewer,
    )
    .add(
        Method::GET,
        "/api/v1/streams/{device}/{stream}/viewer/series",
        get(viewer_series),
        Viewer,
    )
    .add(
        Method::GET,
        "/api/v1/streams/{device}/{stream}/frames",
        get(frames),
        Viewer,
    )
    .add(
        Method::GET,
        "/api/v1/devices/{device}/events",
        get(events),
        Viewer,
    )
    .add(
        Method::GET,
        "/api/v1/tokens",
        get(login::list_tokens),
        Admin,
    )
    .add(
        Method::POST,
        "/api/v1/tokens",
        post(login::create_token),
        Admin,
    )
    .add(
        Method::DELETE,
        "/api/v1/tokens/{name}",
        delete(login::revoke_token),
        Admin,
    );
    let r = crate::dashboard::routes(r);
    (r.router.with_state(state), r.table)
}

/// The API's routes over the shared state.
pub fn router(state: AppState) -> Router {
    routes(state).0
}

/// An API error: a status and a message, as JSON `{"error": …}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!("storage query failed: {e}");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage is not available: {e}"),
        )
    }
}

pub fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn store(state: &AppState) -> Result<&Store, ApiError> {
    state.storage.store().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "storage is off ([storage] kind = \"none\"): no history is kept".into(),
        )
    })
}

fn check_ids(ids: &[&str]) -> Result<(), ApiError> {
    match ids.iter().find(|id| !valid_id(id)) {
        Some(id) => Err(bad(format!(
            "`{}` is not a device or stream id ([a-z0-9_-]{{1,64}})",
            id.chars().take(80).collect::<String>()
        ))),
        None => Ok(()),
    }
}

/// `?from=&to=` (µs since the epoch; `to` defaults to now, `from` to 15
/// minutes before `to`).
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<u32>,
    format: Option<String>,
}

impl RangeQuery {
    fn range(&self) -> Result<(i64, i64), ApiError> {
        self.range_within(MAX_RANGE_US)
    }

    fn range_within(&self, max_range_us: i64) -> Result<(i64, i64), ApiError> {
        let to = self.to.unwrap_or_else(|| crate::receiver::wall_us() + 1);
        let from = self.from.unwrap_or(to.saturating_sub(DEFAULT_RANGE_US));
        if from >= to {
            return Err(bad("`from` must be before `to` (both µs since the epoch)"));
        }
        if to.saturating_sub(from) > max_range_us {
            return Err(bad("the range may cover at most 731 days"));
        }
        Ok((from, to))
    }
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| bad(format!("bad query: {}", e.body_text())))
}

/// A series request's checked ids, its range and the resolution it gets.
fn series_request(
    device: &str,
    stream: &str,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(i64, i64, Resolution), ApiError> {
    check_ids(&[device, stream])?;
    let (from_us, to_us) = query(q)?.range()?;
    Ok((from_us, to_us, Resolution::for_range(to_us - from_us)))
}

async fn series(
    State(state): State<AppState>,
    Path((device, stream)): Path<(String, String)>,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let (from_us, to_us, resolution) = series_request(&device, &stream, q)?;
    let points = store(&state)?
        .series(resolution, &device, &stream, from_us, to_us)
        .await?;
    Ok(Json(SeriesResponse {
        device,
        stream,
        from_us,
        to_us,
        resolution,
        points,
    }))
}

async fn viewer_series(
    State(state): State<AppState>,
    Path((device, stream)): Path<(String, String)>,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ViewerSeriesResponse>, ApiError> {
    let (from_us, to_us, resolution) = series_request(&device, &stream, q)?;
    let points = store(&state)?
        .viewer_series(resolution, &device, &stream, from_us, to_us)
        .await?;
    Ok(Json(ViewerSeriesResponse {
        device,
        stream,
        from_us,
        to_us,
        resolution,
        points,
    }))
}

async fn frames(
    State(state): State<AppState>,
    Path((device, stream)): Path<(String, String)>,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    check_ids(&[&device, &stream])?;
    let q = query(q)?;
    // Any range: `limit` bounds the answer.
    let (from_us, to_us) = q.range_within(i64::MAX)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(bad(format!(
                "format `{}` is not csv or json",
                other.chars().take(16).collect::<String>()
            )))
        }
    };
    let limit = q.limit.unwrap_or(MAX_FRAMES).clamp(1, MAX_FRAMES);
    let mut frames = store(&state)?
        .frames(&device, &stream, from_us, to_us, limit + 1)
        .await?;
    let truncated = frames.len() > limit as usize;
    frames.truncate(limit as usize);
    if csv {
        let mut out = String::from(
            "session,seq,capture_us,available_us,glass_to_hls_ms,encode_ms,publish_ms,origin_delivery_ms,uncertainty_ms,matched_by_fingerprint\n",
        );
        for f in &frames {
            out.push_str(&format!(
                "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{}\n",
                f.session,
                f.seq,
                f.capture_us,
                f.available_us,
                f.glass_to_hls_ms,
                f.encode_ms,
                f.publish_ms,
                f.origin_delivery_ms,
                f.uncertainty_ms,
                f.matched_by_fingerprint
            ));
        }
        let name = format!("attachment; filename=\"{device}-{stream}-{from_us}.csv\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, name),
                (
                    header::HeaderName::from_static("x-glasswatch-truncated"),
                    truncated.to_string(),
                ),
            ],
            out,
        )
            .into_response());
    }
    Ok(Json(FramesResponse {
        device,
        stream,
        from_us,
        to_us,
        truncated,
        frames,
    })
    .into_response())
}

async fn events(
    State(state): State<AppState>,
    Path(device): Path<String>,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsResponse>, ApiError> {
    check_ids(&[&device])?;
    let q = query(q)?;
    let to = q.to.unwrap_or_else(|| crate::receiver::wall_us() + 1);
    // Events default to the last 7 days.
    let from = q.from.unwrap_or(to.saturating_sub(7 * 86_400_000_000));
    let (from_us, to_us) = RangeQuery {
        from: Some(from),
        to: Some(to),
        limit: None,
        format: None,
    }
    .range()?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, MAX_EVENTS);
    let events = store(&state)?
        .events(&device, from_us, to_us, limit)
        .await?;
    Ok(Json(EventsResponse { device, events }))
}

/// `GET /api/v1/fleet`: every stored stream with its device's state and
/// latest stored second.
async fn fleet(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = store(&state)?.fleet().await?;
    let streams: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "device": e.device,
                "stream": e.stream,
                "online": e.online,
                "encoder": e.encoder,
                "hardware": e.hardware,
                "last": e.last,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "streams": streams })))
}

/// `GET /readyz`: 200 when connected to the MQTT broker and the database
/// takes writes (or nothing is stored), else 503 saying which is not.
async fn readyz(State(state): State<AppState>) -> Response {
    let mqtt = state
        .health
        .mqtt_connected
        .load(std::sync::atomic::Ordering::Relaxed);
    let st = state.storage.status();
    let storage = !state.storage.enabled() || st.writable;
    let body = serde_json::json!({ "mqtt_connected": mqtt, "storage_writable": storage });
    let code = if mqtt && storage {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /metrics`: the Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> Response {
    let snap = state
        .hub
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .metrics(crate::receiver::wall_us());
    let text = crate::metrics::render(&snap, &state.health, &state.storage.status());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn storage_status(State(state): State<AppState>) -> Json<StorageStatus> {
    Json(state.storage.status())
}

async fn streams(State(state): State<AppState>) -> Json<StreamsResponse> {
    let hub = state.hub.lock().unwrap_or_else(PoisonError::into_inner);
    Json(StreamsResponse {
        streams: hub.streams(),
        counters: hub.counters(),
    })
}

async fn devices(State(state): State<AppState>) -> Json<DevicesResponse> {
    let hub = state.hub.lock().unwrap_or_else(PoisonError::into_inner);
    Json(DevicesResponse {
        devices: hub.devices(),
    })
}
