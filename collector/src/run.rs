//! The collector's runtime: wires the MQTT client (and the embedded broker),
//! the HLS receivers, the hub, the summary sink and the HTTP API together.
//!
//! ```text
//!  MQTT event loop task ──Incoming──▶ ┐
//!  receiver tasks (1 per stream) ──Report──▶ main loop ── owns ──▶ Hub (Arc<Mutex>, read by the API)
//!  1 s tick, 250 ms ping check ─────▶ ┘      │
//!                                            ├─ StartReceiver / StopReceiver: spawn / abort tasks
//!                                            ├─ clock pings ──▶ MQTT
//!                                            └─ summaries ──▶ Summaries (broadcast) ──▶ MQTT latency
//!                                                                                   ──▶ live lines, storage, dashboard
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use glasswatch_common::config::BrokerUrl;
use glasswatch_common::messages::{self, ClockPong, FramesBatch, Latency, Stats, Status};
use glasswatch_common::mqtt_client;
use glasswatch_common::topics::{Topic, Topics};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Packet, QoS};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::hub::{self, Action, Hub};
use crate::receiver::{self, wall_us, Report, StreamKey};
use crate::store::{rows, Batch, Storage};

/// The one internal interface summaries leave the collector through: every
/// per-stream, per-second [`Latency`] is broadcast to whoever subscribed
/// (the MQTT publisher, the live lines, storage and the dashboard).
#[derive(Debug, Clone)]
pub struct Summaries {
    tx: broadcast::Sender<Arc<Latency>>,
}

impl Summaries {
    fn new() -> Summaries {
        Summaries {
            tx: broadcast::channel(1024).0,
        }
    }

    /// Receives every summary from now on. A subscriber that falls more
    /// than 1024 summaries behind loses the oldest (and is told so by
    /// `RecvError::Lagged`); the collector never waits for one.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Latency>> {
        self.tx.subscribe()
    }

    fn send(&self, s: Latency) {
        // No subscriber is fine.
        let _ = self.tx.send(Arc::new(s));
    }
}

/// How the binary wants the collector run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print one line per stream and second on stdout.
    pub live: bool,
}

/// A running collector's handles, given to `on_ready`.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The broker in use (the embedded one's address when it runs).
    pub mqtt_url: String,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    pub summaries: Summaries,
    pub storage: Storage,
}

type Shared = Arc<Mutex<Hub>>;

fn lock(hub: &Shared) -> MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the collector until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    opts: Options,
    on_ready: impl FnOnce(&Ready),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // reqwest and rumqttc use rustls without a built-in provider: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let topics = Topics::new(&cfg.mqtt.topic_root).context("mqtt.topic_root")?;

    let mut internal_login: Option<(String, String)> = None;
    let mut broker: Option<crate::broker::Broker> = None;
    let broker_url = match &cfg.mqtt.url {
        Some(url) => url.clone(),
        None => {
            let logins = match &cfg.mqtt.users_file {
                Some(file) => {
                    let path = crate::config::state_path(file, cfg.dir.as_deref());
                    let devices = crate::broker::Logins::read_users(&path)?;
                    // The collector's own login, made anew at each start.
                    let own = (
                        "glasswatch-collector-internal".to_owned(),
                        crate::auth::random_hex(),
                    );
                    internal_login = Some(own.clone());
                    Some(crate::broker::Logins {
                        devices,
                        collector: own,
                        root: cfg.mqtt.topic_root.clone(),
                    })
                }
                None => None,
            };
            broker = Some(crate::broker::start(cfg.mqtt.listen, logins)?);
            let host = if cfg.mqtt.listen.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                cfg.mqtt.listen.ip().to_string()
            };
            BrokerUrl {
                tls: false,
                host,
                port: cfg.mqtt.listen.port(),
            }
        }
    };
    let mut mqtt_opts = mqtt_client::options(
        &mqtt_client::ClientSettings {
            url: &broker_url,
            username: internal_login
                .as_ref()
                .map(|l| l.0.as_str())
                .or(cfg.mqtt.username.as_deref()),
            password: internal_login
                .as_ref()
                .map(|l| l.1.as_str())
                .or(cfg.mqtt.password.as_deref()),
            password_file: cfg.mqtt.password_file.as_deref(),
            ca_file: cfg.mqtt.ca_file.as_deref(),
            keep_alive_s: cfg.mqtt.keep_alive_s.get(),
        },
        cfg.mqtt.client_id.as_str(),
    )?;
    mqtt_opts.set_clean_session(true);
    mqtt_opts.set_inflight(256);
    let (client, eventloop) = AsyncClient::new(mqtt_opts, 4096);
    let (mqtt_tx, mut mqtt_rx) = mpsc::channel(4096);
    let mqtt_task = tokio::spawn(drive(eventloop, mqtt_tx));

    let overrides = cfg
        .streams
        .iter()
        .map(|s| s.get_ref())
        .map(|o| ((o.device.to_string(), o.id.to_string()), o.hls_url.clone()))
        .collect();
    let settings = hub::Settings {
        retention_us: i64::from(cfg.matching.retention_s.get()) * 1_000_000,
        wait_us: i64::from(cfg.matching.wait_ms.get()) * 1_000,
        clock_window_us: i64::from(cfg.clock.window_s.get()) * 1_000_000,
        max_rtt_us: i64::from(cfg.clock.max_rtt_ms.get()) * 1_000,
        ping_interval_us: i64::from(cfg.clock.ping_interval_s.get()) * 1_000_000,
        max_records: cfg.matching.retention_s.get() as usize * 240,
        bands_ms: cfg.dashboard.bands_ms,
    };
    let hub: Shared = Arc::new(Mutex::new(Hub::new(settings, overrides)));

    let storage = Storage::open(&cfg.storage, cfg.dir.as_deref()).await?;
    let storage_tasks = storage.spawn();

    let tls = match (&cfg.http.tls_cert, &cfg.http.tls_key) {
        (Some(cert), Some(key)) => Some(crate::web::tls_config(cert, key)?),
        _ => None,
    };
    let auth = Arc::new(crate::web::auth(&cfg));
    if auth.enabled() && cfg.users.is_empty() && auth.tokens().is_empty() {
        tracing::warn!(
            "no [[user]] in the config and no API token: nobody can log in \
             (add one with `glasswatch-collector hash-password`)"
        );
    }
    let listener = std::net::TcpListener::bind(cfg.http.listen).with_context(|| {
        format!(
            "the HTTP API cannot listen on {} (set http.listen)",
            cfg.http.listen
        )
    })?;
    listener
        .set_nonblocking(true)
        .context("setting the HTTP listener non-blocking")?;
    let http = listener.local_addr().context("reading the HTTP address")?;
    let health = Arc::new(crate::metrics::Health::default());
    if let Some(b) = broker.take() {
        let _ = health.broker.set(b);
    }
    let app = crate::api::router(crate::api::AppState {
        hub: hub.clone(),
        storage: storage.clone(),
        auth,
        health: health.clone(),
    });
    let api_task = tokio::spawn(crate::web::serve(listener, app, tls));
    // Free heap pages back to the kernel now and then (memory.rs says why).
    let trim_task = tokio::spawn(async {
        let mut every = tokio::time::interval(crate::memory::TRIM_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            crate::memory::trim();
        }
    });

    let summaries = Summaries::new();
    let ready = Ready {
        mqtt_url: broker_url.to_string(),
        http,
        summaries: summaries.clone(),
        storage: storage.clone(),
    };
    tracing::info!(mqtt = ready.mqtt_url, %http, "collector running");
    on_ready(&ready);

    let allow = Arc::new(cfg.allow_list().map_err(anyhow::Error::msg)?);
    lock(&hub).set_allow(allow.clone());
    let http_client = reqwest::Client::builder()
        // A name never resolves to an address the collector must not fetch,
        // and a redirect never leads outside [hls] allow.
        .dns_resolver(Arc::new(crate::allow::GuardedResolver))
        .redirect(crate::allow::redirect_policy(allow.clone()))
        .connect_timeout(Duration::from_secs(5))
        // Idle connections are kept per host without a count bound (many
        // streams often share one origin): a bound of 4 made 51 streams on
        // one origin open 385 connections a second (heaptrack: 84,106 in
        // 218 s), each a handshake and fresh buffers. Unused ones close
        // after the idle timeout, so the pool follows what the streams use
        // at once (one per LL-HLS stream while it is chained, see receiver::Chain;
        // more for a far origin). Measured
        // (bench/collector_memory.sh 50, same session): VmRSS per stream
        // 251 KiB bounded, 259 unbounded (more heap held, less of it left
        // fragmented); CPU per stream 0.40 % of a core bounded, 0.28 %
        // unbounded.
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let rx_settings = receiver::Settings {
        reload: Duration::from_millis(u64::from(cfg.hls.reload_ms.get())),
        timeout: Duration::from_millis(u64::from(cfg.hls.request_timeout_ms.get())),
        retry_min: Duration::from_millis(u64::from(cfg.hls.retry_min_ms.get())),
        retry_max: Duration::from_millis(u64::from(cfg.hls.retry_max_ms.get())),
    };
    let (report_tx, mut report_rx) = mpsc::channel::<Report>(4096);
    let mut receivers: HashMap<StreamKey, JoinHandle<()>> = HashMap::new();

    let mut main = MainLoop {
        client,
        topics,
        hub: hub.clone(),
        summaries,
        publish_latency: cfg.output.publish_latency,
        live: opts.live,
        publish_failures: 0,
        storage: storage.clone(),
        pending: Batch::default(),
        health,
    };

    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + until_next_second(),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_check = tokio::time::interval(Duration::from_millis(250));
    tokio::pin!(shutdown);
    loop {
        let actions = tokio::select! {
            _ = &mut shutdown => break,
            Some(incoming) = mqtt_rx.recv() => main.incoming(incoming).await,
            Some(report) = report_rx.recv() => {
                lock(&hub).on_receiver(&report.key, report.event, wall_us());
                Vec::new()
            }
            _ = tick.tick() => {
                main.tick();
                Vec::new()
            }
            _ = ping_check.tick() => {
                main.pings();
                Vec::new()
            }
        };
        for action in actions {
            match action {
                Action::StartReceiver { key, url } => {
                    tracing::info!(device = key.0, stream = key.1, url, "starting HLS receiver");
                    let task = tokio::spawn(receiver::run(
                        key.clone(),
                        url,
                        http_client.clone(),
                        rx_settings,
                        allow.clone(),
                        report_tx.clone(),
                    ));
                    if let Some(old) = receivers.insert(key, task) {
                        old.abort();
                    }
                }
                Action::StopReceiver { key } => {
                    tracing::info!(device = key.0, stream = key.1, "stopping HLS receiver");
                    if let Some(task) = receivers.remove(&key) {
                        task.abort();
                    }
                }
            }
        }
    }
    tracing::info!("collector stopping");
    for (_, task) in receivers {
        task.abort();
    }
    // What was received since the last tick (statuses, events) is kept too.
    main.storage.push(std::mem::take(&mut main.pending));
    let _ = tokio::time::timeout(Duration::from_millis(500), main.client.disconnect()).await;
    mqtt_task.abort();
    api_task.abort();
    trim_task.abort();
    storage.shutdown(storage_tasks).await;
    Ok(())
}

/// What the MQTT event loop task hands over.
#[derive(Debug)]
enum Incoming {
    Connected,
    Publish {
        topic: String,
        payload: Vec<u8>,
        /// A retained message (delivered on subscribing, not live).
        retain: bool,
        at_us: i64,
    },
    Failed(String),
}

/// Polls rumqttc forever, forwarding what matters; waits after each failure
/// (capped backoff) so an absent broker is not hammered.
async fn drive(mut eventloop: EventLoop, tx: mpsc::Sender<Incoming>) {
    let mut wait_ms = 250u64;
    loop {
        let incoming = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                wait_ms = 250;
                Incoming::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Incoming::Publish {
                topic: p.topic,
                payload: p.payload.to_vec(),
                retain: p.retain,
                at_us: wall_us(),
            },
            Ok(_) => continue,
            Err(e) => Incoming::Failed(connection_error(&e)),
        };
        let failed = matches!(incoming, Incoming::Failed(_));
        if tx.send(incoming).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            wait_ms = (wait_ms * 2).min(5_000);
        }
    }
}

fn connection_error(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("broker refused the connection: {code:?}")
        }
        other => other.to_string(),
    }
}

fn until_next_second() -> Duration {
    let us = wall_us().rem_euclid(1_000_000);
    Duration::from_micros(u64::try_from(1_000_000 - us).unwrap_or(1_000_000))
}

struct MainLoop {
    client: AsyncClient,
    topics: Topics,
    hub: Shared,
    summaries: Summaries,
    publish_latency: bool,
    live: bool,
    publish_failures: u64,
    storage: Storage,
    /// What storage gets at the next tick besides the closed windows.
    pending: Batch,
    health: Arc<crate::metrics::Health>,
}

impl MainLoop {
    async fn incoming(&mut self, incoming: Incoming) -> Vec<Action> {
        match incoming {
            Incoming::Connected => {
                tracing::info!("connected to the MQTT broker");
                self.health.mqtt_connected.store(true, Ordering::Relaxed);
                let filters = [
                    self.topics.status("+"),
                    self.topics.frames("+", "+"),
                    self.topics.stats("+", "+"),
                    self.topics.clock_pong("+"),
                ];
                for f in filters {
                    if let Err(e) = self.client.subscribe(f.clone(), QoS::AtLeastOnce).await {
                        tracing::error!("cannot subscribe to {f}: {e}");
                    }
                }
                Vec::new()
            }
            Incoming::Failed(e) => {
                tracing::warn!("MQTT: {e}; reconnecting");
                self.health.mqtt_connected.store(false, Ordering::Relaxed);
                Vec::new()
            }
            Incoming::Publish {
                topic,
                payload,
                retain,
                at_us,
            } => {
                self.health.mqtt_received.fetch_add(1, Ordering::Relaxed);
                self.publish(&topic, &payload, retain, at_us)
            }
        }
    }

    fn malformed(&self, hub: &mut Hub, topic: &str, error: &dyn std::fmt::Display) {
        hub.malformed();
        let n = hub.counters().malformed_messages;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(topic, "malformed payload skipped ({n} so far): {error}");
        }
    }

    fn publish(&mut self, topic: &str, payload: &[u8], retain: bool, at_us: i64) -> Vec<Action> {
        let mut hub = lock(&self.hub);
        let Some(parsed) = self.topics.parse(topic) else {
            return Vec::new();
        };
        match parsed {
            Topic::Status { device } => match messages::decode::<Status>(payload) {
                Ok(s) if s.device == device => {
                    if self.storage.enabled() {
                        let previous = hub.device_state(&device);
                        rows::status_rows(&s, previous, retain, at_us, &mut self.pending);
                    }
                    return hub.on_status(s, at_us);
                }
                Ok(s) => self.malformed(
                    &mut hub,
                    topic,
                    &format!("status names device {:?}", s.device),
                ),
                Err(e) => self.malformed(&mut hub, topic, &e),
            },
            Topic::Frames { device, stream } => match messages::decode::<FramesBatch>(payload) {
                Ok(b) if b.device == device && b.stream == stream => {
                    hub.on_frames(&device, &stream, b, at_us)
                }
                Ok(_) => self.malformed(&mut hub, topic, &"batch names another stream"),
                Err(e) => self.malformed(&mut hub, topic, &e),
            },
            Topic::Stats { device, stream } => match messages::decode::<Stats>(payload) {
                Ok(s) => hub.on_stats(&device, &stream, &s, at_us),
                Err(e) => self.malformed(&mut hub, topic, &e),
            },
            Topic::ClockPong { device } => match messages::decode::<ClockPong>(payload) {
                Ok(p) => hub.on_pong(&device, &p, at_us),
                Err(e) => self.malformed(&mut hub, topic, &e),
            },
            Topic::Latency { .. } | Topic::Viewer { .. } | Topic::ClockPing { .. } => {}
        }
        Vec::new()
    }

    fn pings(&mut self) {
        let due = lock(&self.hub).pings_due(wall_us());
        for (device, ping) in due {
            let Ok(payload) = messages::encode(&ping) else {
                continue;
            };
            match self.client.try_publish(
                self.topics.clock_ping(&device),
                QoS::AtMostOnce,
                false,
                payload,
            ) {
                Ok(()) => {
                    self.health.mqtt_published.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.health
                        .mqtt_publish_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(device, "clock ping not sent: {e}");
                }
            }
        }
    }

    fn tick(&mut self) {
        let (closed, viewers) = {
            let mut hub = lock(&self.hub);
            (hub.close(wall_us()), hub.take_viewers())
        };
        self.viewers(viewers);
        for s in closed.iter().map(|c| &c.latency) {
            if self.live {
                println!("{}", live_line(s));
            }
            if self.publish_latency {
                match messages::encode(s) {
                    Ok(payload) => {
                        self.health.mqtt_published.fetch_add(1, Ordering::Relaxed);
                        let topic = self.topics.latency(&s.device, &s.stream);
                        if let Err(e) =
                            self.client
                                .try_publish(topic, QoS::AtMostOnce, true, payload)
                        {
                            self.health
                                .mqtt_publish_failures
                                .fetch_add(1, Ordering::Relaxed);
                            self.publish_failures += 1;
                            if self.publish_failures.is_power_of_two() {
                                tracing::warn!(
                                    "latency not published ({} so far): {e}",
                                    self.publish_failures
                                );
                            }
                        }
                    }
                    Err(e) => tracing::error!("cannot encode a summary: {e}"),
                }
            }
            self.summaries.send(s.clone());
        }
        self.storage
            .push_closed(&closed, std::mem::take(&mut self.pending));
    }
}

impl MainLoop {
    /// Viewer reports from the dashboard's players: published on MQTT
    /// (QoS 0, not retained) and stored with the next batch.
    fn viewers(&mut self, viewers: Vec<messages::Viewer>) {
        for v in viewers {
            if self.publish_latency {
                if let Ok(payload) = messages::encode(&v) {
                    let topic = self.topics.viewer(&v.device, &v.stream);
                    match self
                        .client
                        .try_publish(topic, QoS::AtMostOnce, false, payload)
                    {
                        Ok(()) => self.health.mqtt_published.fetch_add(1, Ordering::Relaxed),
                        Err(_) => self
                            .health
                            .mqtt_publish_failures
                            .fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
            if self.storage.enabled() {
                self.pending.viewers.push(crate::store::ViewerRow {
                    device: v.device,
                    stream: v.stream,
                    viewer: v.viewer,
                    start_us: v.window_start_us,
                    frames: i64::try_from(v.frames).unwrap_or(i64::MAX),
                    p50_ms: v.p50_ms,
                    p95_ms: v.p95_ms,
                    buffer_ms: v.buffer_ms,
                    stalls: i64::try_from(v.stalls).unwrap_or(i64::MAX),
                    uncertainty_ms: Some(v.uncertainty_ms),
                });
            }
        }
    }
}

/// One human line per stream and second.
pub fn live_line(s: &Latency) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let clock = match s.clock.offset_ms {
        Some(o) if s.clock.synced => format!("clock {o:+.1} ±{:.1} ms", s.clock.uncertainty_ms),
        _ => "clock not synced".to_owned(),
    };
    format!(
        "{}/{}: {} frames, glass-to-HLS p50 {} ms p95 {} ms, fps {:.1} (publisher {}), dropped {}, {} {}, {}",
        s.device,
        s.stream,
        s.frames,
        ms(s.p50_ms),
        ms(s.p95_ms),
        s.receiver_fps,
        s.publisher_fps.map_or_else(|| "-".to_owned(), |f| format!("{f:.1}")),
        s.dropped,
        if s.hls.mode.is_empty() { "waiting for HLS" } else { &s.hls.mode },
        s.hls.container,
        clock
    )
}
