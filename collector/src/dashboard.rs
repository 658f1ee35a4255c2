//! The fleet dashboard: its pages, the assets they load (embedded in the
//! binary at build time), live updates over server-sent events, the
//! browser's clock endpoint, viewer-latency reports from the players, and
//! the HLS proxy's route ([`crate::hls_proxy`]). Added to the router by
//! [`crate::api::routes`].
//!
//! - `GET /`: the fleet page; `GET /streams/{device}/{stream}`: one stream
//!   with its player. Both are static HTML shells whose ES modules
//!   (`collector/web/*.js`) read the API; no inline script or style, so the
//!   Content-Security-Policy allows only this origin.
//! - `GET /assets/{name}`: the modules, the style sheet, and the pinned
//!   third-party libraries from `collector/web/node_modules` (hls.js,
//!   uPlot; `build.rs` checks they are installed).
//! - `GET /api/v1/fleet/live`: `text/event-stream`, one `snapshot` then a
//!   `delta` every second carrying only the cells that changed.
//! - `GET /api/v1/time`: the collector's clock, for the browser's
//!   NTP-style offset.
//! - `GET /api/v1/streams/{device}/{stream}`: one stream's latest figures.
//! - `GET|POST /api/v1/streams/{device}/{stream}/viewer`: the last viewer
//!   report; a player's per-second report (validated, rate-limited,
//!   refusals counted at `GET /api/v1/viewers`).
//! - `GET /api/metrics`: the seed's figures (`publisher_fps`,
//!   `receiver_fps`, `latency_ms`) for whoever read its endpoint.
//!
//! The colour bands are DESIGN.md's by default (green < 100 ms, yellow
//! < 500 ms, orange < 2 s, red beyond: [`BANDS_MS`]), set by `[dashboard]
//! bands_ms`, and sent to the pages with the fleet's snapshot and each
//! stream's latest figures.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{OnceLock, PoisonError};
use std::time::Duration;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, DefaultBodyLimit, Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Extension, Json,
};
use glasswatch_common::messages::{Latency, Stats, Viewer, SCHEMA_VIEWER};
use glasswatch_common::topics::valid_id;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{bad, Access, ApiError, AppState, Routes};
use crate::auth::Identity;
use crate::hub::{FleetRow, ViewerCounters, ViewerRefused};
use crate::receiver::wall_us;

/// DESIGN.md's bands, the default of `[dashboard] bands_ms`: below the
/// first is green, then yellow, orange, red.
pub const BANDS_MS: [f64; 3] = [100.0, 500.0, 2_000.0];
/// The largest viewer report accepted, bytes.
pub const MAX_REPORT: usize = 2_048;
/// How often the fleet's live stream sends a delta.
const FLEET_PERIOD: Duration = Duration::from_secs(1);

/// Adds the dashboard's routes, each with the access it needs.
pub fn routes(r: Routes) -> Routes {
    use Access::Viewer as V;
    r.add(Method::GET, "/", get(fleet_page), V)
        .add(
            Method::GET,
            "/streams/{device}/{stream}",
            get(stream_page),
            V,
        )
        .add(Method::GET, "/assets/{name}", get(asset), V)
        .add(Method::GET, "/api/v1/time", get(time), V)
        .add(Method::GET, "/api/v1/fleet/live", get(fleet_live), V)
        .add(Method::GET, "/api/v1/viewers", get(viewer_counters), V)
        .add(Method::GET, "/api/metrics", get(seed_metrics), V)
        .add(
            Method::GET,
            "/api/v1/streams/{device}/{stream}",
            get(stream_latest),
            V,
        )
        .add(
            Method::GET,
            "/api/v1/streams/{device}/{stream}/viewer",
            get(viewer_latest),
            V,
        )
        .add(
            Method::POST,
            "/api/v1/streams/{device}/{stream}/viewer",
            post(viewer_report).layer(DefaultBodyLimit::max(MAX_REPORT)),
            V,
        )
        .add(
            Method::GET,
            "/hls/{device}/{stream}/{*rest}",
            get(crate::hls_proxy::proxy),
            V,
        )
}

fn lock(state: &AppState) -> std::sync::MutexGuard<'_, crate::hub::Hub> {
    state.hub.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_ids(device: &str, stream: &str) -> Result<(), ApiError> {
    if valid_id(device) && valid_id(stream) {
        Ok(())
    } else {
        Err(bad("device and stream ids are [a-z0-9_-]{1,64}"))
    }
}

// ---------------------------------------------------------------- pages

/// Only this origin's scripts, styles, media (MSE blob URLs) and requests.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

const HEAD: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<link rel=stylesheet href=/assets/app.css>";

async fn fleet_page() -> Response {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| {
        format!(
            "{HEAD}<title>Glasswatch fleet</title>\
<script type=module src=/assets/fleet.js></script>\
<header><h1>Glasswatch</h1><span id=summary>connecting…</span><span id=who></span></header>\
<main><div class=controls>\
<input id=filter type=search placeholder=\"filter by device or stream\" aria-label=filter>\
<select id=state aria-label=state><option value=all>all</option><option value=online>online</option>\
<option value=offline>offline</option></select><span id=count></span></div>\
<div class=scroll><table id=fleet><thead><tr></tr></thead><tbody></tbody></table></div>\
<p class=note>Glass-to-HLS: capture on the device to the last byte of the part at the collector. \
Viewer: capture to shown in a dashboard viewer's browser. <span id=bands></span> \
<a href=/api/v1/streams>JSON</a></p></main>"
        )
    });
    page(body.as_str())
}

async fn stream_page(Path((device, stream)): Path<(String, String)>) -> Response {
    if let Err(e) = check_ids(&device, &stream) {
        return e.into_response();
    }
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| {
        format!(
            "{HEAD}<link rel=stylesheet href=/assets/uplot.css><title>Glasswatch stream</title>\
<script type=module src=/assets/stream.js></script>\
<header><h1><a href=/>Glasswatch</a></h1><span id=title></span><span id=who></span></header>\
<main class=stream><section class=player>\
<div class=video><video id=video muted playsinline></video>\
<div id=rec class=rec hidden>REC <span id=rectime>--:--:--.---</span></div></div>\
<p id=support class=note></p><div id=figures class=figures></div>\
<div class=bar id=breakdown></div></section>\
<section class=charts><div class=ranges id=ranges></div>\
<div id=chart-latency class=chart></div><div id=chart-fps class=chart></div>\
<h2>Last minute</h2><div id=histogram class=chart></div>\
<h2>Events</h2><ul id=events class=events></ul></section></main>"
        )
    });
    page(body.as_str())
}

// ---------------------------------------------------------------- assets

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Everything the pages load. The third-party files come from
/// `collector/web/node_modules` at the versions `package-lock.json` pins.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: CSS,
        body: include_bytes!("../web/app.css"),
    },
    Asset {
        name: "common.js",
        content_type: JS,
        body: include_bytes!("../web/common.js"),
    },
    Asset {
        name: "fleet.js",
        content_type: JS,
        body: include_bytes!("../web/fleet.js"),
    },
    Asset {
        name: "stream.js",
        content_type: JS,
        body: include_bytes!("../web/stream.js"),
    },
    Asset {
        name: "viewer.js",
        content_type: JS,
        body: include_bytes!("../web/viewer.js"),
    },
    Asset {
        name: "hls.mjs",
        content_type: JS,
        body: include_bytes!("../web/node_modules/hls.js/dist/hls.min.mjs"),
    },
    Asset {
        name: "uplot.mjs",
        content_type: JS,
        body: include_bytes!("../web/node_modules/uplot/dist/uPlot.esm.js"),
    },
    Asset {
        name: "uplot.css",
        content_type: CSS,
        body: include_bytes!("../web/node_modules/uplot/dist/uPlot.min.css"),
    },
];

/// FNV-1a 64 of each asset, as its ETag (computed once).
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{h:016x}\"")
            })
            .collect()
    })
}

/// `GET /assets/{name}`: revalidated on every load (`no-cache` with an
/// ETag), so a new collector's files are picked up at once and an
/// unchanged one costs a 304.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((i, a)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = &etags()[i];
    let common = [
        (header::CACHE_CONTROL, "private, no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            common,
            [(header::ETAG, etag.clone())],
        )
            .into_response();
    }
    (
        common,
        [
            (header::CONTENT_TYPE, a.content_type.to_owned()),
            (header::ETAG, etag.clone()),
        ],
        a.body,
    )
        .into_response()
}

// ---------------------------------------------------------------- clock

/// `GET /api/v1/time`: `{"now_us": …}`, the collector's clock when the
/// answer was made.
async fn time() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "now_us": wall_us() })),
    )
        .into_response()
}

// ---------------------------------------------------------------- fleet

/// The columns of a fleet row, in the order the live stream sends them
/// (after the row's id, `device/stream`).
pub const COLUMNS: &[&str] = &[
    "online",
    "since_us",
    "p50_ms",
    "p95_ms",
    "viewer_p50_ms",
    "viewer_p95_ms",
    "receiver_fps",
    "publisher_fps",
    "dropped",
    "encoder",
    "hardware",
    "clock_offset_ms",
    "clock_uncertainty_ms",
    "clock_synced",
    "cpu_percent",
    "temperature_c",
    "window_end_us",
];

/// A figure rounded to 0.1 (less churn in the deltas, shorter JSON).
fn num(v: Option<f64>) -> Value {
    match v {
        Some(v) if v.is_finite() => json!((v * 10.0).round() / 10.0),
        _ => Value::Null,
    }
}

/// One row's cells, in [`COLUMNS`] order.
pub fn cells(r: &FleetRow) -> Vec<Value> {
    let l = r.last.as_ref();
    let s = r.stats.as_ref();
    let v = r.viewer.as_ref();
    vec![
        json!(r.online),
        json!(r.since_us),
        num(l.and_then(|l| l.p50_ms)),
        num(l.and_then(|l| l.p95_ms)),
        num(v.and_then(|v| v.p50_ms)),
        num(v.and_then(|v| v.p95_ms)),
        num(l.map(|l| l.receiver_fps)),
        num(l
            .and_then(|l| l.publisher_fps)
            .or(s.map(|s| s.publisher_fps))),
        json!(l.map(|l| l.dropped)),
        json!(r.encoder.as_ref().map(|e| e.0.as_str())),
        json!(r.encoder.as_ref().map(|e| e.1)),
        num(l.and_then(|l| l.clock.offset_ms)),
        num(l.map(|l| l.clock.uncertainty_ms)),
        json!(l.map(|l| l.clock.synced)),
        num(s.map(|s| s.cpu_percent)),
        num(s.and_then(|s| s.temperature_c)),
        json!(l.map(|l| l.window_end_us)),
    ]
}

/// The live fleet's state on one connection: each row's cells as last sent.
#[derive(Debug)]
pub struct FleetDiff {
    sent: HashMap<String, Vec<Value>>,
    started: bool,
    bands_ms: [f64; 3],
}

impl Default for FleetDiff {
    fn default() -> Self {
        FleetDiff::new(BANDS_MS)
    }
}

impl FleetDiff {
    /// A connection's state, its snapshot carrying these colour bands.
    pub fn new(bands_ms: [f64; 3]) -> FleetDiff {
        FleetDiff {
            sent: HashMap::new(),
            started: false,
            bands_ms,
        }
    }

    /// The next event's data: a snapshot the first time (every row, with
    /// its sparkline history), then only what changed: `u` holds
    /// `[id, column, value, column, value, …]` per changed row (every
    /// column for a new one), `gone` the ids that disappeared.
    pub fn next(&mut self, rows: &[FleetRow]) -> (&'static str, Value) {
        let mut now: HashMap<String, Vec<Value>> = HashMap::with_capacity(rows.len());
        if !self.started {
            self.started = true;
            let mut out = Vec::with_capacity(rows.len());
            let mut hist = serde_json::Map::new();
            for r in rows {
                let id = format!("{}/{}", r.device, r.stream);
                let c = cells(r);
                let mut row = vec![json!(id)];
                row.extend(c.iter().cloned());
                out.push(Value::Array(row));
                hist.insert(
                    id.clone(),
                    json!(r
                        .history
                        .iter()
                        .map(|h| num(h.map(f64::from)))
                        .collect::<Vec<_>>()),
                );
                now.insert(id, c);
            }
            self.sent = now;
            let data = json!({
                "now_us": wall_us(),
                "columns": COLUMNS,
                "bands_ms": self.bands_ms,
                "rows": out,
                "history": hist,
            });
            return ("snapshot", data);
        }
        let mut updates = Vec::new();
        for r in rows {
            let id = format!("{}/{}", r.device, r.stream);
            let c = cells(r);
            let before = self.sent.remove(&id);
            let mut u = vec![json!(id)];
            for (i, v) in c.iter().enumerate() {
                if before.as_ref().and_then(|b| b.get(i)) != Some(v) {
                    u.push(json!(i));
                    u.push(v.clone());
                }
            }
            if u.len() > 1 {
                updates.push(Value::Array(u));
            }
            now.insert(id, c);
        }
        let gone: Vec<String> = self.sent.keys().cloned().collect();
        self.sent = now;
        (
            "delta",
            json!({ "now_us": wall_us(), "u": updates, "gone": gone }),
        )
    }
}

/// `GET /api/v1/fleet/live`: server-sent events, a `snapshot` at once and
/// a `delta` every second (see [`FleetDiff`]).
async fn fleet_live(State(state): State<AppState>) -> impl IntoResponse {
    let mut tick = tokio::time::interval(FLEET_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let diff = FleetDiff::new(lock(&state).bands_ms());
    let events = futures_util::stream::unfold(
        (state, diff, tick),
        |(state, mut diff, mut tick)| async move {
            tick.tick().await;
            let rows = lock(&state).fleet(wall_us());
            let (name, data) = diff.next(&rows);
            let event = Event::default().event(name).data(data.to_string());
            Some((Ok::<_, Infallible>(event), (state, diff, tick)))
        },
    );
    (
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

// ---------------------------------------------------------------- stream

/// `GET /api/v1/streams/{device}/{stream}`: one stream's latest figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamLatest {
    pub device: String,
    pub stream: String,
    pub online: bool,
    /// When the device went online or offline (collector clock).
    pub since_us: Option<i64>,
    pub encoder: Option<String>,
    pub hardware: Option<bool>,
    /// The last per-second summary.
    pub last: Option<Latency>,
    /// The agent's last stats.
    pub stats: Option<Stats>,
    /// Glass-to-HLS p50 of the last minute's windows, oldest first (ms, to 0.1).
    pub history: Vec<Option<f64>>,
    /// The last viewer report, if one arrived in the last 5 s.
    pub viewer: Option<Viewer>,
    /// The colour bands, ms (`[dashboard] bands_ms`).
    pub bands_ms: [f64; 3],
}

async fn stream_latest(
    State(state): State<AppState>,
    Path((device, stream)): Path<(String, String)>,
) -> Result<Json<StreamLatest>, ApiError> {
    check_ids(&device, &stream)?;
    let (r, bands_ms) = {
        let hub = lock(&state);
        let r = hub
            .fleet_one(&device, &stream, wall_us())
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such stream"))?;
        (r, hub.bands_ms())
    };
    Ok(Json(StreamLatest {
        device: r.device,
        stream: r.stream,
        online: r.online,
        since_us: r.since_us,
        encoder: r.encoder.as_ref().map(|e| e.0.clone()),
        hardware: r.encoder.as_ref().map(|e| e.1),
        last: r.last,
        stats: r.stats,
        history: r
            .history
            .iter()
            .map(|h| h.map(|v| (f64::from(v) * 10.0).round() / 10.0))
            .collect(),
        viewer: r.viewer,
        bands_ms,
    }))
}

/// `GET /api/metrics`: the seed's shape, one entry per stream
/// (`latency_ms` is glass-to-HLS p50 of the last second), and the first
/// stream's figures at the top level as the seed's single stream had them.
async fn seed_metrics(State(state): State<AppState>) -> Json<Value> {
    let rows = lock(&state).fleet(wall_us());
    let streams: Vec<Value> = rows
        .iter()
        .map(|r| {
            let l = r.last.as_ref();
            json!({
                "device": r.device,
                "stream": r.stream,
                "publisher_fps": num(l.and_then(|l| l.publisher_fps).or(r.stats.as_ref().map(|s| s.publisher_fps))),
                "receiver_fps": num(l.map(|l| l.receiver_fps)),
                "latency_ms": num(l.and_then(|l| l.p50_ms)),
            })
        })
        .collect();
    let first = streams.first().cloned().unwrap_or(json!({}));
    Json(json!({
        "publisher_fps": first.get("publisher_fps").cloned().unwrap_or(Value::Null),
        "receiver_fps": first.get("receiver_fps").cloned().unwrap_or(Value::Null),
        "latency_ms": first.get("latency_ms").cloned().unwrap_or(Value::Null),
        "streams": streams,
    }))
}

// ---------------------------------------------------------------- viewers

/// What a player POSTs once a second (`viewer.js`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportIn {
    /// A random id of the page (8 to 32 lowercase hex digits).
    pub page: String,
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub frames: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub buffer_ms: Option<f64>,
    pub stalls: u64,
    pub uncertainty_ms: f64,
    /// `rvfc` or `timeupdate`.
    pub method: String,
    /// How many of the window's frames fell in each Prometheus bucket
    /// ([`crate::metrics::BUCKETS_S`], then +Inf; not cumulative), and
    /// their sum in ms: the viewer-latency histogram of `/metrics`.
    #[serde(default)]
    pub buckets: Option<Vec<u64>>,
    #[serde(default)]
    pub sum_ms: Option<f64>,
}

/// Viewer latency outside −10 s … 10 min is absurd (a wrong clock, a bug).
const MIN_VIEWER_MS: f64 = -10_000.0;
const MAX_VIEWER_MS: f64 = 600_000.0;

impl ReportIn {
    /// Checks every field; the error says which.
    pub fn validate(&self, now_us: i64) -> Result<(), String> {
        let hex = |s: &str| {
            (8..=32).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(&self.page) {
            return Err("page must be 8 to 32 lowercase hex digits".into());
        }
        let span = self.window_end_us.saturating_sub(self.window_start_us);
        if !(1..=10_000_000).contains(&span) {
            return Err("the window must last more than 0 and at most 10 s".into());
        }
        if self.window_end_us.saturating_sub(now_us).abs() > 120_000_000 {
            return Err("the window must end within 2 minutes of the collector's clock".into());
        }
        if self.frames > 10_000 || self.stalls > 10_000 {
            return Err("frames and stalls are at most 10000".into());
        }
        for (name, v) in [
            ("p50_ms", self.p50_ms),
            ("p95_ms", self.p95_ms),
            ("max_ms", self.max_ms),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || !(MIN_VIEWER_MS..=MAX_VIEWER_MS).contains(&v) {
                    return Err(format!("{name} must be finite, within -10 s … 10 min"));
                }
            }
        }
        if let Some(b) = self.buffer_ms {
            if !b.is_finite() || !(0.0..=MAX_VIEWER_MS).contains(&b) {
                return Err("buffer_ms must be finite, within 0 … 10 min".into());
            }
        }
        if !self.uncertainty_ms.is_finite() || !(0.0..=60_000.0).contains(&self.uncertainty_ms) {
            return Err("uncertainty_ms must be finite, within 0 … 60 s".into());
        }
        if !matches!(self.method.as_str(), "rvfc" | "timeupdate") {
            return Err("method must be rvfc or timeupdate".into());
        }
        if let Some(b) = &self.buckets {
            if b.len() != crate::metrics::BUCKETS_S.len() + 1 {
                return Err(format!(
                    "buckets must hold {} counts",
                    crate::metrics::BUCKETS_S.len() + 1
                ));
            }
            if b.iter().sum::<u64>() != self.frames {
                return Err("buckets must add up to frames".into());
            }
            let limit = self.frames as f64 * MAX_VIEWER_MS;
            if !self
                .sum_ms
                .is_some_and(|s| s.is_finite() && s.abs() <= limit)
            {
                return Err(
                    "sum_ms must come with buckets, finite and within frames × 10 min".into(),
                );
            }
        }
        Ok(())
    }
}

/// `POST /api/v1/streams/{device}/{stream}/viewer`: 204, or a 4xx saying
/// why (400 malformed, 404 unknown stream, 413 too large, 429 too often,
/// 503 too many viewers), each refusal counted.
async fn viewer_report(
    State(state): State<AppState>,
    Path((device, stream)): Path<(String, String)>,
    identity: Option<Extension<Identity>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let refuse = |too_large: bool, e: ApiError| {
        lock(&state).viewer_refused_input(too_large);
        e.into_response()
    };
    let body = match body {
        Ok(b) if b.len() <= MAX_REPORT => b,
        Ok(_) => {
            return refuse(
                true,
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "a report is at most 2 KiB"),
            )
        }
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(
                true,
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "a report is at most 2 KiB"),
            )
        }
        Err(e) => return refuse(false, bad(e.body_text())),
    };
    if let Err(e) = check_ids(&device, &stream) {
        return refuse(false, e);
    }
    let r: ReportIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(false, bad(format!("bad viewer report: {e}"))),
    };
    let now = wall_us();
    if let Err(e) = r.validate(now) {
        return refuse(false, bad(format!("bad viewer report: {e}")));
    }
    let who = identity.map_or_else(|| "anonymous".to_owned(), |Extension(i)| i.name);
    let histogram = r.buckets.clone().zip(r.sum_ms);
    let v = Viewer {
        schema: SCHEMA_VIEWER.to_owned(),
        device,
        stream,
        viewer: format!("{}/{}", who.chars().take(64).collect::<String>(), r.page),
        window_start_us: r.window_start_us,
        window_end_us: r.window_end_us,
        frames: r.frames,
        p50_ms: r.p50_ms,
        p95_ms: r.p95_ms,
        max_ms: r.max_ms,
        buffer_ms: r.buffer_ms,
        stalls: r.stalls,
        uncertainty_ms: r.uncertainty_ms,
        method: r.method,
    };
    let key = (v.device.clone(), v.stream.clone());
    let result = {
        let mut hub = lock(&state);
        let result = hub.on_viewer(v, now);
        if let (Ok(()), Some((counts, sum_ms))) = (&result, histogram) {
            hub.observe_viewer(&key, &counts, sum_ms);
        }
        result
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ ViewerRefused::UnknownStream) => {
            ApiError::new(StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e @ ViewerRefused::TooFrequent) => {
            let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(e @ ViewerRefused::TooManyViewers) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}

/// `GET /api/v1/streams/{device}/{stream}/viewer`: the last viewer report
/// (404 when none arrived in the last 5 s).
async fn viewer_latest(
    State(state): State<AppState>,
    Path((device, stream)): Path<(String, String)>,
) -> Result<Json<Viewer>, ApiError> {
    check_ids(&device, &stream)?;
    lock(&state)
        .fleet_one(&device, &stream, wall_us())
        .and_then(|r| r.viewer)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no viewer report in the last 5 s"))
}

/// `GET /api/v1/viewers`: viewer reports accepted and refused since start.
async fn viewer_counters(State(state): State<AppState>) -> Json<ViewerCounters> {
    Json(lock(&state).viewer_counters())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ReportIn {
        ReportIn {
            page: "0123456789abcdef".into(),
            window_start_us: 1_000_000,
            window_end_us: 2_000_000,
            frames: 30,
            p50_ms: Some(420.0),
            p95_ms: Some(480.0),
            max_ms: Some(510.0),
            buffer_ms: Some(120.0),
            stalls: 0,
            uncertainty_ms: 1.5,
            method: "rvfc".into(),
            buckets: None,
            sum_ms: None,
        }
    }

    #[test]
    fn reports_are_checked_field_by_field() {
        assert_eq!(report().validate(2_000_000), Ok(()));
        let bad: Vec<fn(&mut ReportIn)> = vec![
            |r| r.page = "XYZ".into(),
            |r| r.window_end_us = r.window_start_us,
            |r| r.window_start_us -= 20_000_000,
            |r| r.p50_ms = Some(f64::NAN),
            |r| r.buckets = Some(vec![30]),
            |r| {
                r.buckets = Some(vec![2; 17]);
                r.sum_ms = Some(1.0);
            },
            |r| r.buckets = Some([[0u64; 16].as_slice(), &[30]].concat()),
            |r| r.p95_ms = Some(1e9),
            |r| r.buffer_ms = Some(-1.0),
            |r| r.uncertainty_ms = f64::INFINITY,
            |r| r.method = "guess".into(),
            |r| r.frames = 1 << 40,
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut r = report();
            f(&mut r);
            assert!(r.validate(2_000_000).is_err(), "case {i}");
        }
        // A window far from the collector's clock.
        assert!(report().validate(1_000_000_000).is_err());
    }

    #[test]
    fn deltas_carry_only_what_changed() {
        let row = |p50: Option<f64>| {
            FleetRow {
            device: "d".into(),
            stream: "s".into(),
            online: true,
            since_us: Some(5),
            last: p50.map(|p| {
                let mut l: Latency = serde_json::from_value(json!({
                    "schema": "glasswatch.latency/1", "device": "d", "stream": "s",
                    "window_start_us": 0, "window_end_us": 1, "frames": 1,
                    "matched_by_fingerprint": 0, "unmatched": 0, "p50_ms": null,
                    "p95_ms": null, "p99_ms": null, "max_ms": null, "receiver_fps": 30.0,
                    "publisher_fps": null, "dropped": 0,
                    "breakdown": {"encode_ms": null, "publish_ms": null, "origin_delivery_ms": null},
                    "clock": {"synced": false, "offset_ms": null, "uncertainty_ms": 0.0},
                    "hls": {"mode": "", "container": "", "url": "", "errors": 0,
                            "playlist_requests": 0, "media_requests": 0}
                }))
                .unwrap();
                l.p50_ms = Some(p);
                l
            }),
            stats: None,
            encoder: None,
            history: vec![Some(1.0)],
            viewer: None,
        }
        };
        let mut d = FleetDiff::default();
        let (name, snap) = d.next(&[row(Some(100.0))]);
        assert_eq!(name, "snapshot");
        assert_eq!(snap["rows"][0][0], "d/s");
        assert_eq!(snap["rows"][0].as_array().unwrap().len(), COLUMNS.len() + 1);
        let (name, delta) = d.next(&[row(Some(100.04))]);
        assert_eq!(name, "delta");
        assert_eq!(delta["u"], json!([]), "a change below 0.1 ms is not sent");
        let (_, delta) = d.next(&[row(Some(150.0))]);
        assert_eq!(delta["u"], json!([["d/s", 2, 150.0]]));
        let (_, delta) = d.next(&[]);
        assert_eq!(delta["gone"], json!(["d/s"]));
    }
}
