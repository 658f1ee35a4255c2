//! What login costs: argon2id verification time, API requests per second
//! with sessions on against `auth = "none"` (same router, same machine,
//! same run), and the size and render time of `/metrics` with 1,000 streams.
//!
//! `cargo bench -p glasswatch-collector --bench auth -- [seconds]` (default
//! 10 s per load step); bench/http_auth.sh runs it. Loopback only, bounded
//! in time and in concurrency (16 connections).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glasswatch_collector::api::{routes, AppState};
use glasswatch_collector::auth::{self, Auth, Role, Settings, User};
use glasswatch_collector::hub::{self, Hub};
use glasswatch_collector::metrics::{self, PromHist, Snapshot, StreamMetrics};
use glasswatch_collector::store::rollup::Ages;
use glasswatch_collector::store::Storage;

const CONNECTIONS: usize = 16;

fn settings(enabled: bool) -> Settings {
    Settings {
        enabled,
        users: HashMap::from([(
            "bench".to_owned(),
            User {
                role: Role::Viewer,
                password_hash: auth::hash_password("bench-pw").expect("hash"),
            },
        )]),
        session_ttl: Duration::from_secs(3600),
        tokens_file: None,
        max_failures: 1000,
        window: Duration::from_secs(1),
        trusted_proxies: Vec::new(),
        tls: false,
    }
}

/// Serves the collector's router on 127.0.0.1 and returns its address.
async fn serve(enabled: bool) -> (SocketAddr, Arc<Auth>) {
    let auth = Arc::new(Auth::new(settings(enabled)));
    let state = AppState {
        hub: Arc::new(Mutex::new(Hub::new(
            hub::Settings::default(),
            HashMap::new(),
        ))),
        storage: Storage::with_store(None, 10, Ages::default(), Duration::from_secs(1)),
        auth: auth.clone(),
        health: Arc::default(),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(glasswatch_collector::web::serve(
        listener,
        routes(state).0,
        None,
    ));
    (addr, auth)
}

/// GET `/api/v1/streams` from 16 keep-alive connections for `secs`;
/// requests per second.
async fn load(addr: SocketAddr, cookie: Option<String>, secs: u64) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("client");
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let url = format!("http://{addr}/api/v1/streams");
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut req = client.get(&url);
                if let Some(c) = &cookie {
                    req = req.header("cookie", c);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed");
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let _ = rustls::crypto::ring::default_provider().install_default();

    // argon2id verification, the cost of one login.
    let hash = auth::hash_password("bench-pw").expect("hash");
    let a = Auth::new(Settings {
        users: HashMap::from([(
            "u".to_owned(),
            User {
                role: Role::Viewer,
                password_hash: hash.clone(),
            },
        )]),
        ..settings(true)
    });
    let mut times = Vec::new();
    for i in 0..20 {
        let ip = std::net::IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
        let t = Instant::now();
        a.login(ip, "u", "bench-pw").expect("login");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "argon2id ({}): login p50 {:.1} ms, max {:.1} ms over 20",
        hash.split('$').nth(3).unwrap_or("?"),
        times[10],
        times[19]
    );

    // Requests per second, sessions on vs auth = "none", same run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (open, _) = serve(false).await;
        let (guarded, auth) = serve(true).await;
        let (token, _) = auth
            .login(std::net::IpAddr::from([127, 0, 0, 1]), "bench", "bench-pw")
            .expect("login");
        let cookie = format!("{}={token}", auth::SESSION_COOKIE);
        let none = load(open, None, secs).await;
        let with = load(guarded, Some(cookie), secs).await;
        println!(
            "GET /api/v1/streams, {CONNECTIONS} connections, {secs} s each: sessions {with:.0} req/s, \
             auth = \"none\" {none:.0} req/s (ratio {:.3})",
            with / none
        );
    });

    // /metrics with 1,000 streams.
    let mut hist = PromHist::default();
    for i in 0..900 {
        hist.observe_ms(60.0 + f64::from(i % 120));
    }
    let snap = Snapshot {
        streams: (0..1000)
            .map(|i| StreamMetrics {
                device: format!("device-{:04}", i / 2),
                stream: format!("cam{}", i % 2),
                glass_to_hls: hist.clone(),
                viewer: PromHist::default(),
                frames_seen_total: 1_000_000,
                dropped_total: 3,
                hls_errors_total: 0,
                reading: true,
                receiver_fps: Some(30.0),
                publisher_fps: Some(30.0),
                clock_synced: true,
                clock_uncertainty_ms: Some(0.4),
            })
            .collect(),
        devices: (0..500)
            .map(|i| metrics::DeviceMetrics {
                device: format!("device-{i:04}"),
                online: true,
                last_status_age_s: Some(12.0),
            })
            .collect(),
        malformed_messages: 0,
        refused_hls_urls: 0,
    };
    let t = Instant::now();
    let text = metrics::render(&snap, &metrics::Health::default(), &Default::default());
    let took = t.elapsed();
    println!(
        "/metrics with 1,000 streams: {} bytes ({:.0} KiB), {} lines, rendered in {:.1} ms",
        text.len(),
        text.len() as f64 / 1024.0,
        text.lines().count(),
        took.as_secs_f64() * 1000.0
    );
}
