//! The collector's router served in process on 127.0.0.1, for tests that
//! ask the HTTP side directly (dashboard, proxy, viewer reports).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glasswatch_collector::allow::AllowList;
use glasswatch_collector::api::{routes, AppState};
use glasswatch_collector::auth::{Auth, Settings};
use glasswatch_collector::hub::{self, Hub};
use glasswatch_collector::store::rollup::Ages;
use glasswatch_collector::store::Storage;
use glasswatch_common::messages::{Status, StreamInfo};

/// A served router; its runtime (and so the server) stops when dropped.
pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

/// Login off, as `auth = "none"` on loopback.
pub fn open_auth() -> Arc<Auth> {
    Arc::new(Auth::new(Settings {
        enabled: false,
        users: HashMap::new(),
        session_ttl: Duration::from_secs(60),
        tokens_file: None,
        max_failures: 3,
        window: Duration::from_secs(3),
        trusted_proxies: Vec::new(),
        tls: false,
    }))
}

/// The state of a collector with login off and nothing stored.
pub fn open_state(hub: Arc<Mutex<Hub>>) -> AppState {
    AppState {
        hub,
        storage: Storage::with_store(None, 10, Ages::default(), Duration::from_secs(1)),
        auth: open_auth(),
        health: Arc::default(),
    }
}

/// A hub that knows `dev/cam0` at `hls_url`, with the default allow-list.
pub fn hub_knowing_dev_cam0(hls_url: &str) -> Hub {
    let mut hub = Hub::new(hub::Settings::default(), HashMap::new());
    hub.set_allow(Arc::new(AllowList::new(None, Vec::new()).unwrap()));
    let mut status = Status::offline("dev", 1, "test");
    status.online = true;
    status.streams = vec![StreamInfo {
        id: "cam0".into(),
        hls_url: hls_url.into(),
        ..StreamInfo::default()
    }];
    hub.on_status(status, 1);
    hub
}

/// Serves `state`'s router on a free port of 127.0.0.1.
pub fn serve_state(state: AppState) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (router, _) = routes(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(glasswatch_collector::web::serve(listener, router, None));
    Server {
        base: format!("http://{addr}"),
        addr,
        _rt: rt,
    }
}

/// The router (login off) knowing `dev/cam0` at `hls_url`.
pub fn serve(hls_url: &str) -> Server {
    serve_state(open_state(Arc::new(Mutex::new(hub_knowing_dev_cam0(
        hls_url,
    )))))
}
