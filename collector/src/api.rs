//! The collector's HTTP API (JSON, read-only): what the registry holds and
//! the last summary per stream. The dashboard builds on it.
//!
//! - `GET /api/v1/streams`: every stream known, with its last per-second summary.
//! - `GET /api/v1/devices`: every device with its last status.
//! - `GET /healthz`: `ok` while the collector runs.

use std::sync::{Arc, Mutex, PoisonError};

use axum::{extract::State, routing::get, Json, Router};
use serde_json::{json, Value};

use crate::hub::Hub;

type Shared = Arc<Mutex<Hub>>;

/// The API's routes over the shared hub.
pub fn router(hub: Shared) -> Router {
    Router::new()
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

async fn streams(State(hub): State<Shared>) -> Json<Value> {
    let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
    let c = hub.counters();
    Json(json!({
        "streams": hub.streams(),
        "counters": {
            "malformed_messages": c.malformed_messages,
            "duplicate_records": c.duplicate_records,
            "stale_pongs": c.stale_pongs,
            "rejected_clock_samples": c.rejected_clock_samples,
        },
    }))
}

async fn devices(State(hub): State<Shared>) -> Json<Value> {
    let hub = hub.lock().unwrap_or_else(PoisonError::into_inner);
    let devices: Vec<Value> = hub
        .devices()
        .into_iter()
        .map(|(id, online, status)| json!({"device": id, "online": online, "status": status}))
        .collect();
    Json(json!({ "devices": devices }))
}
