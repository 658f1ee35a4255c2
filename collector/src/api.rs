//! The collector's HTTP API (JSON, read-only): what the registry holds and
//! the last summary per stream. The dashboard builds on it.
//!
//! - `GET /api/v1/streams`: every stream known, with its last per-second summary.
//! - `GET /api/v1/devices`: every device with its last status.
//! - `GET /healthz`: `ok` while the collector runs.
//! - `GET /`: a plain status page (one row per stream, refreshed every
//!   second) until the dashboard replaces it.

use std::sync::{Arc, Mutex, PoisonError};

use axum::{extract::State, response::Html, routing::get, Json, Router};
use glasswatch_common::api::{DevicesResponse, StreamsResponse};

use crate::hub::Hub;

type Shared = Arc<Mutex<Hub>>;

/// The API's routes over the shared hub.
pub fn router(hub: Shared) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/streams", get(streams))
        .route("/api/v1/devices", get(devices))
        .with_state(hub)
}

/// Serves the API on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, hub: Shared) {
    if let Err(e) = axum::serve(listener, router(hub)).await {
        tracing::error!("HTTP API stopped: {e}");
    }
}

async fn streams(State(hub): State<Shared>) -> Json<StreamsResponse> {
    let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
    Json(StreamsResponse {
        streams: hub.streams(),
        counters: hub.counters(),
    })
}

async fn devices(State(hub): State<Shared>) -> Json<DevicesResponse> {
    let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
    Json(DevicesResponse {
        devices: hub.devices(),
    })
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn status_page(State(hub): State<Shared>) -> Html<String> {
    let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"));
    let mut rows = String::new();
    for s in hub.streams() {
        let (frames, p50, p95, fps, dropped, mode, clock) = match &s.last {
            Some(l) => (
                l.frames.to_string(),
                ms(l.p50_ms),
                ms(l.p95_ms),
                format!("{:.1}", l.receiver_fps),
                l.dropped.to_string(),
                format!("{} {}", l.hls.mode, l.hls.container),
                if l.clock.synced {
                    format!("±{:.1} ms", l.clock.uncertainty_ms)
                } else {
                    "not synced".to_owned()
                },
            ),
            None => Default::default(),
        };
        rows.push_str(&format!(
            "<tr><td>{}/{}</td><td>{}</td><td>{frames}</td><td>{p50}</td><td>{p95}</td><td>{fps}</td><td>{dropped}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&s.device),
            esc(&s.stream),
            if s.online { "online" } else { "offline" },
            esc(&mode),
            esc(&clock),
        ));
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=1>\
         <title>Glasswatch collector</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:right}}td:first-child{{text-align:left}}</style>\
         <h1>Glasswatch collector</h1><p>Glass-to-HLS latency per stream over the last second \
         (<a href=/api/v1/streams>JSON</a>). The full dashboard comes later.</p>\
         <table><tr><th>stream</th><th>device</th><th>frames</th><th>p50 ms</th><th>p95 ms</th>\
         <th>fps</th><th>dropped</th><th>HLS</th><th>clock</th></tr>\n{rows}</table>"
    ))
}
