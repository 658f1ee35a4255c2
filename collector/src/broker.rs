//! The embedded MQTT broker, run when `mqtt.url` is absent so that one
//! collector binary is enough on a single machine.
//!
//! A small MQTT 3.1.1 broker of our own (packets are parsed and written with
//! rumqttc's `mqttbytes`): QoS 0, 1 and 2, retained messages, Last Will,
//! `+` and `#` filters, keep-alive, client takeover. It replaced rumqttd 0.20,
//! whose memory grew for hours under a steady load: its per-filter commit
//! logs kept payloads that were slices of the connections' read buffers, so a
//! few hundred bytes kept kilobytes alive (docs/design/broker.md has the
//! measurements and the alternatives).
//!
//! What it holds, and so its memory, is bounded:
//!
//! - a message is copied out of the read buffer once (exactly its bytes) and
//!   shared by the queues of the connections subscribed to it; nothing else
//!   keeps it once they have written it;
//! - each connection has one queue of at most [`Limits::max_queued_messages`]
//!   and [`Limits::max_queued_bytes`]: a subscriber that does not keep up
//!   loses the newest messages beyond that (counted and logged), and never
//!   slows a publisher or another subscriber;
//! - retained messages, at most [`Limits::max_retained_bytes`] in all;
//! - [`Limits::max_connections`] connections, and each packet at most
//!   [`Limits::max_packet`] bytes.
//!
//! Sessions are not kept across connections: every session is clean (a
//! CONNECT with CleanSession = 0 gets "session present" = 0, as for a new
//! session, and its subscriptions end with the connection). Glasswatch's
//! agents and collector use clean sessions; subscribers that need stored
//! sessions or offline queues use an external broker (`mqtt.url`). There is
//! no login and no TLS: the embedded broker listens where `mqtt.listen` says,
//! which should be loopback or a private network.
//!
//! It runs on a thread of its own (a single-threaded tokio runtime), so the
//! collector's own load never delays it, and lives as long as the process.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, PubRel, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// Most bytes of one MQTT packet the embedded broker accepts (a frames batch
/// of 200 ms at 240 fps is about 12 KiB; status with many streams a few KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Most MQTT connections the embedded broker accepts.
pub const MAX_CONNECTIONS: usize = 2_048;

/// How much the broker may hold; [`Limits::default`] is what the collector
/// runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections at once; more are closed as they come.
    pub max_connections: usize,
    /// Most bytes of one packet (its remaining length); a larger one closes
    /// the connection that sent it.
    pub max_packet: usize,
    /// Most messages waiting to be written to one connection.
    pub max_queued_messages: usize,
    /// Most bytes (topics and payloads) waiting to be written to one
    /// connection; one message is always accepted into an empty queue.
    pub max_queued_bytes: usize,
    /// Most bytes (topics and payloads) of retained messages in all; a new
    /// retained topic beyond that is forwarded but not retained.
    pub max_retained_bytes: usize,
}

impl Default for Limits {
    /// At 1,000 streams the collector's subscription gets about 5,000 frames
    /// batches (6.5 MB) a second: its queue covers a stall of about 2 s.
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_packet: MAX_PAYLOAD,
            max_queued_messages: 10_000,
            max_queued_bytes: 16 << 20,
            max_retained_bytes: 16 << 20,
        }
    }
}

/// Acknowledgements and other replies waiting for one connection; a client
/// that sends faster than it reads is not read until they drain.
const CONTROL_QUEUE: usize = 256;
/// A new connection must send CONNECT within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffers start at this size, and one grown beyond
/// [`BIG_BUFFER`] is given back once empty.
const READ_CHUNK: usize = 8 * 1024;
const BIG_BUFFER: usize = 64 * 1024;
/// A connection writes at most about this much in one go.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a reply may wait for room in a stuck connection's queue before
/// the connection is closed, when it has no keep-alive of its own.
const STUCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The embedded broker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now (CONNECT received or not).
    pub connections: usize,
    /// Messages not queued for a subscriber because its queue was full.
    pub dropped: u64,
    /// Connections closed at once because [`Limits::max_connections`] were open.
    pub refused: u64,
    /// Publishes and subscriptions a device made outside its own topics.
    pub unauthorized: u64,
    /// Logins refused (unknown user or wrong password).
    pub bad_logins: u64,
    /// Retained messages held, and their bytes.
    pub retained: usize,
    pub retained_bytes: usize,
    /// Bytes queued for all connections (a message queued for two counts twice).
    pub queued_bytes: usize,
}

/// A running embedded broker. It has no stop: it lives as long as the process.
#[derive(Debug, Clone)]
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Broker {
    /// Binds `listen` (a taken port is an error here, not later) and runs the
    /// broker on a thread of its own. Clients can connect once this returns.
    pub fn spawn(listen: SocketAddr, limits: Limits) -> anyhow::Result<Broker> {
        Broker::spawn_with(listen, limits, None)
    }

    /// Like [`Broker::spawn`], requiring the logins of `auth` when given.
    pub fn spawn_with(
        listen: SocketAddr,
        limits: Limits,
        auth: Option<Logins>,
    ) -> anyhow::Result<Broker> {
        let listener = std::net::TcpListener::bind(listen).with_context(|| {
            format!("the embedded MQTT broker cannot listen on {listen} (set mqtt.listen, or mqtt.url to use another broker)")
        })?;
        let addr = listener
            .local_addr()
            .context("reading the embedded broker's address")?;
        listener
            .set_nonblocking(true)
            .context("setting the embedded broker's listener non-blocking")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the embedded broker's runtime")?;
        let shared = Arc::new(Shared {
            limits,
            auth: auth.map(Arc::new),
            state: Mutex::new(State::default()),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            unauthorized: AtomicU64::new(0),
            bad_logins: AtomicU64::new(0),
        });
        let serving = shared.clone();
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || runtime.block_on(serve(listener, serving)))
            .context("spawning the embedded MQTT broker")?;
        Ok(Broker { shared, addr })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters now.
    pub fn stats(&self) -> Stats {
        let state = self.shared.lock();
        Stats {
            connections: self.shared.open.load(Ordering::Relaxed),
            dropped: state.dropped,
            refused: self.shared.refused.load(Ordering::Relaxed),
            unauthorized: self.shared.unauthorized.load(Ordering::Relaxed),
            bad_logins: self.shared.bad_logins.load(Ordering::Relaxed),
            retained: state.retained.len(),
            retained_bytes: state.retained_bytes,
            queued_bytes: state
                .clients
                .values()
                .map(|c| c.conn.queued_bytes.load(Ordering::Relaxed))
                .sum(),
        }
    }
}

/// Starts the broker on `listen` in the background with the default
/// [`Limits`]; fails if the address cannot be bound.
pub fn start(listen: SocketAddr, auth: Option<Logins>) -> anyhow::Result<Broker> {
    let logins = auth.is_some();
    let broker = Broker::spawn_with(listen, Limits::default(), auth)?;
    tracing::info!(listen = %broker.local_addr(), logins, "embedded MQTT broker started");
    Ok(broker)
}

/// Checks a CONNECT's login; `Some(device)` for a device, `None` for the
/// collector itself.
async fn login(
    auth: &Arc<Logins>,
    login: Option<&mqttbytes::v4::Login>,
) -> Result<Option<String>, ()> {
    let Some(login) = login else {
        return Err(());
    };
    let (name, password) = (login.username.clone(), login.password.clone());
    if name == auth.collector.0 {
        let ok = name.len() == auth.collector.0.len()
            && password.len() == auth.collector.1.len()
            && password
                .bytes()
                .zip(auth.collector.1.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        return if ok { Ok(None) } else { Err(()) };
    }
    let Some(hash) = auth.devices.get(&name).cloned() else {
        return Err(());
    };
    // argon2 takes tens of milliseconds: off the broker's thread.
    let ok = tokio::task::spawn_blocking(move || crate::auth::verify(&password, &hash))
        .await
        .unwrap_or(false);
    if ok {
        Ok(Some(name))
    } else {
        Err(())
    }
}

/// One published message as its subscribers get it: topic and payload are
/// copies of exactly their bytes, shared by every queue it is in.
#[derive(Debug)]
struct Message {
    topic: String,
    payload: Bytes,
    qos: QoS,
}

impl Message {
    /// What it counts for in queue and retained limits.
    fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// A message waiting to be written to one connection.
#[derive(Debug)]
struct Delivery {
    message: Arc<Message>,
    qos: QoS,
    retain: bool,
}

/// What a connection's task shares with the router.
#[derive(Debug, Default)]
struct Conn {
    /// Bytes in its queue.
    queued_bytes: AtomicUsize,
    /// Told when another connection takes its client id over.
    close: Notify,
}

/// A connected client as the router knows it.
#[derive(Debug)]
struct Client {
    client_id: String,
    data: mpsc::Sender<Delivery>,
    conn: Arc<Conn>,
    will: Option<Arc<Message>>,
    will_retain: bool,
    filters: HashSet<String>,
    dropped: u64,
}

/// Subscriptions, retained messages and connected clients. Held under one
/// mutex, never across an await.
#[derive(Debug, Default)]
struct State {
    clients: HashMap<u64, Client>,
    by_client_id: HashMap<String, u64>,
    /// Filters without wildcards, by topic.
    exact: HashMap<String, Vec<(u64, QoS)>>,
    /// Filters with wildcards (few: the collector's and other subscribers').
    wildcard: Vec<(String, u64, QoS)>,
    retained: HashMap<String, Arc<Message>>,
    retained_bytes: usize,
    /// Retained topics not kept because of the limit.
    retained_refused: u64,
    dropped: u64,
    /// Reused by `route`.
    targets: Vec<(u64, QoS)>,
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    auth: Option<Arc<Logins>>,
    state: Mutex<State>,
    open: AtomicUsize,
    refused: AtomicU64,
    next_id: AtomicU64,
    /// Publishes and subscriptions refused by the topic rules, and logins refused.
    unauthorized: AtomicU64,
    bad_logins: AtomicU64,
}

/// Who may connect, and under which topics each device may publish.
///
/// With logins, every client names itself: a device with its device id and
/// its password (argon2id hashes in `mqtt.users_file`), the collector with
/// an internal name and a password made at each start. A device may
/// publish only under `{root}/v1/devices/{device}/` (its status, frames,
/// stats and clock pongs, not the collector's latency, viewer or pings) and
/// subscribe only there; anything else it sends is dropped and counted. The
/// collector may do everything.
#[derive(Debug, Clone)]
pub struct Logins {
    /// Device id to argon2id hash.
    pub devices: HashMap<String, String>,
    /// The collector's own login.
    pub collector: (String, String),
    /// The topic root (`glasswatch`).
    pub root: String,
}

impl Logins {
    /// Reads `name:hash` lines (`#` comments and blank lines ignored);
    /// names must be device ids and hashes argon2id.
    pub fn read_users(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading mqtt.users_file {}", path.display()))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash) = line
                .split_once(':')
                .with_context(|| format!("{}:{}: expected device:hash", path.display(), i + 1))?;
            if !glasswatch_common::topics::valid_id(name) {
                anyhow::bail!(
                    "{}:{}: `{name}` is not a device id ([a-z0-9_-]{{1,64}})",
                    path.display(),
                    i + 1
                );
            }
            crate::auth::check_hash(hash)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
            users.insert(name.to_owned(), hash.to_owned());
        }
        Ok(users)
    }

    /// The device a topic belongs to may publish it: `status`, `clock/pong`,
    /// and `streams/{stream}/frames|stats`.
    fn may_publish(&self, device: &str, topic: &str) -> bool {
        let Some(rest) = topic
            .strip_prefix(self.root.as_str())
            .and_then(|t| t.strip_prefix("/v1/devices/"))
            .and_then(|t| t.strip_prefix(device))
            .and_then(|t| t.strip_prefix('/'))
        else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        matches!(
            parts.as_slice(),
            ["status"] | ["clock", "pong"] | ["streams", _, "frames" | "stats"]
        )
    }

    /// A device may subscribe only under its own topics (its clock pings).
    fn may_subscribe(&self, device: &str, filter: &str) -> bool {
        filter
            .strip_prefix(self.root.as_str())
            .and_then(|t| t.strip_prefix("/v1/devices/"))
            .and_then(|t| t.strip_prefix(device))
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Does `topic` match `filter`? Wildcards at the first level do not match
/// topics starting with `$` (MQTT 3.1.1, 4.7.2).
fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

impl State {
    /// Queues `message` for one connection, or counts it dropped.
    fn deliver(
        &mut self,
        limits: &Limits,
        id: u64,
        message: &Arc<Message>,
        qos: QoS,
        retain: bool,
    ) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let size = message.size();
        let queued = client.conn.queued_bytes.fetch_add(size, Ordering::Relaxed);
        let fits = queued == 0 || queued + size <= limits.max_queued_bytes;
        let sent = fits
            && match client.data.try_send(Delivery {
                message: message.clone(),
                qos,
                retain,
            }) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => false,
                // The connection is ending; what it misses is no loss.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    client.conn.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    return;
                }
            };
        if !sent {
            client.conn.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            client.dropped += 1;
            self.dropped += 1;
            if client.dropped.is_power_of_two() {
                tracing::warn!(
                    client = client.client_id,
                    "embedded MQTT broker: a subscriber does not keep up; {} messages not delivered to it so far (its queue was full)",
                    client.dropped
                );
            }
        }
    }

    /// Forwards a message to every matching subscription (once per
    /// connection, at the highest QoS it asked for, capped by the message's),
    /// and keeps it when it is retained.
    fn route(&mut self, limits: &Limits, message: Arc<Message>, retain: bool) {
        if retain {
            self.retain(limits, &message);
        }
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        if let Some(subs) = self.exact.get(&message.topic) {
            targets.extend_from_slice(subs);
        }
        for (filter, id, qos) in &self.wildcard {
            if matches(filter, &message.topic) {
                targets.push((*id, *qos));
            }
        }
        if targets.len() > 1 {
            // Highest QoS first for each connection, then one per connection.
            targets.sort_unstable_by_key(|&(id, qos)| (id, std::cmp::Reverse(qos as u8)));
            targets.dedup_by_key(|t| t.0);
        }
        for &(id, qos) in &targets {
            self.deliver(limits, id, &message, min_qos(qos, message.qos), false);
        }
        self.targets = targets;
    }

    fn retain(&mut self, limits: &Limits, message: &Arc<Message>) {
        let old = self.retained.get(&message.topic).map_or(0, |m| m.size());
        if message.payload.is_empty() {
            if self.retained.remove(&message.topic).is_some() {
                self.retained_bytes -= old;
            }
            return;
        }
        if self.retained_bytes - old + message.size() > limits.max_retained_bytes {
            self.retained_refused += 1;
            if self.retained_refused.is_power_of_two() {
                tracing::warn!(
                    topic = message.topic,
                    "embedded MQTT broker: retained messages are at their limit ({} bytes); {} not retained so far",
                    limits.max_retained_bytes,
                    self.retained_refused
                );
            }
            return;
        }
        self.retained_bytes = self.retained_bytes - old + message.size();
        self.retained.insert(message.topic.clone(), message.clone());
    }

    fn subscribe(&mut self, limits: &Limits, id: u64, filter: &str, qos: QoS) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.filters.insert(filter.to_owned());
        if mqttbytes::has_wildcards(filter) {
            match self
                .wildcard
                .iter_mut()
                .find(|(f, i, _)| *i == id && f == filter)
            {
                Some(existing) => existing.2 = qos,
                None => self.wildcard.push((filter.to_owned(), id, qos)),
            }
        } else {
            let subs = self.exact.entry(filter.to_owned()).or_default();
            match subs.iter_mut().find(|(i, _)| *i == id) {
                Some(existing) => existing.1 = qos,
                None => subs.push((id, qos)),
            }
        }
        // Retained messages on (re)subscribing, with the retain flag set.
        let retained: Vec<Arc<Message>> = self
            .retained
            .values()
            .filter(|m| matches(filter, &m.topic))
            .cloned()
            .collect();
        for m in retained {
            let q = min_qos(qos, m.qos);
            self.deliver(limits, id, &m, q, true);
        }
    }

    fn unsubscribe(&mut self, id: u64, filter: &str) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.filters.remove(filter);
        }
        if mqttbytes::has_wildcards(filter) {
            self.wildcard.retain(|(f, i, _)| !(*i == id && f == filter));
        } else if let Some(subs) = self.exact.get_mut(filter) {
            subs.retain(|(i, _)| *i != id);
            if subs.is_empty() {
                self.exact.remove(filter);
            }
        }
    }

    /// Forgets a connection and its subscriptions; returns its will.
    fn remove(&mut self, id: u64) -> Option<(Arc<Message>, bool)> {
        let client = self.clients.remove(&id)?;
        if self.by_client_id.get(&client.client_id) == Some(&id) {
            self.by_client_id.remove(&client.client_id);
        }
        for filter in &client.filters {
            self.unsubscribe(id, filter);
        }
        client.will.map(|w| (w, client.will_retain))
    }
}

/// Accepts connections forever.
async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("embedded MQTT broker: cannot use its listener: {e}");
            return;
        }
    };
    let mut accept_errors = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                accept_errors += 1;
                if accept_errors.is_power_of_two() {
                    tracing::warn!("embedded MQTT broker: accepting a connection failed ({accept_errors} so far): {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.open.load(Ordering::Relaxed) >= shared.limits.max_connections {
            let n = shared.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    %peer,
                    "embedded MQTT broker: {} connections open, the most it takes; {n} refused so far (use an external broker, mqtt.url, for more)",
                    shared.limits.max_connections
                );
            }
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(stream, peer, &shared).await;
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client sent DISCONNECT: its will is discarded.
    Disconnect,
    /// Another connection took its client id: the will went out then.
    TakenOver,
    /// Anything else (network, keep-alive, protocol): the will goes out.
    Lost(String),
}

/// Reads one packet from a stream that has not sent CONNECT yet.
async fn first_packet(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Packet, String> {
    loop {
        match Packet::read(buf, max_packet) {
            Ok(p) => return Ok(p),
            Err(mqttbytes::Error::InsufficientBytes(n)) => buf.reserve(n),
            Err(e) => return Err(format!("malformed packet: {e}")),
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err("closed before CONNECT".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Writes one reply to a stream (before its writer runs).
async fn write_now(stream: &mut TcpStream, packet: Packet) {
    let mut out = BytesMut::new();
    if packet.write(&mut out, MAX_PAYLOAD).is_ok() {
        let _ = stream.write_all(&out).await;
    }
}

/// One client connection, from CONNECT to close.
async fn connection(mut stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let limits = shared.limits;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let connect = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        first_packet(&mut stream, &mut buf, limits.max_packet),
    )
    .await
    {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(other)) => {
            tracing::debug!(%peer, "embedded MQTT broker: first packet is not CONNECT: {other:?}");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, "embedded MQTT broker: connection closed before CONNECT: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "embedded MQTT broker: no CONNECT within {CONNECT_TIMEOUT:?}");
            return;
        }
    };
    if connect.protocol != mqttbytes::Protocol::V4 {
        write_now(
            &mut stream,
            Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::RefusedProtocolVersion,
                false,
            )),
        )
        .await;
        return;
    }
    let device = match &shared.auth {
        None => None,
        Some(auth) => match login(auth, connect.login.as_ref()).await {
            Ok(device) => device,
            Err(()) => {
                let n = shared.bad_logins.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::warn!(
                        %peer,
                        user = connect.login.as_ref().map_or("", |l| l.username.as_str()),
                        "embedded MQTT broker: login refused ({n} so far)"
                    );
                }
                write_now(
                    &mut stream,
                    Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false)),
                )
                .await;
                return;
            }
        },
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let client_id = if connect.client_id.is_empty() {
        if !connect.clean_session {
            write_now(
                &mut stream,
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadClientId, false)),
            )
            .await;
            return;
        }
        format!("glasswatch-broker-{id}")
    } else {
        connect.client_id
    };
    let will = connect.last_will.map(|w| {
        (
            Arc::new(Message {
                topic: w.topic,
                payload: Bytes::copy_from_slice(&w.message),
                qos: w.qos,
            }),
            w.retain,
        )
    });
    if let Some((w, _)) = &will {
        if !mqttbytes::valid_topic(&w.topic) || w.topic.is_empty() {
            tracing::debug!(%peer, client = client_id, "embedded MQTT broker: invalid will topic {:?}", w.topic);
            return;
        }
    }
    // A device's Last Will may only be its own status.
    let will = match (&shared.auth, &device, will) {
        (Some(auth), Some(d), Some((w, r))) if !auth.may_publish(d, &w.topic) => {
            shared.unauthorized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                device = d,
                topic = w.topic,
                "embedded MQTT broker: Last Will outside the device's topics dropped"
            );
            let _ = r;
            None
        }
        (_, _, will) => will,
    };

    let (data_tx, data_rx) = mpsc::channel(limits.max_queued_messages.max(1));
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let conn = Arc::new(Conn::default());
    {
        let mut state = shared.lock();
        // A client id already connected: that connection is closed, and its
        // will published (it did not disconnect cleanly).
        if let Some(old) = state.by_client_id.get(&client_id).copied() {
            if let Some(old_conn) = state.clients.get(&old).map(|c| c.conn.clone()) {
                tracing::debug!(
                    client = client_id,
                    "embedded MQTT broker: client id taken over by a new connection"
                );
                if let Some((w, retain)) = state.remove(old) {
                    state.route(&limits, w, retain);
                }
                old_conn.close.notify_one();
            }
        }
        state.by_client_id.insert(client_id.clone(), id);
        state.clients.insert(
            id,
            Client {
                client_id: client_id.clone(),
                data: data_tx,
                conn: conn.clone(),
                will: will.as_ref().map(|w| w.0.clone()),
                will_retain: will.as_ref().is_some_and(|w| w.1),
                filters: HashSet::new(),
                dropped: 0,
            },
        );
    }
    tracing::debug!(%peer, client = client_id, "embedded MQTT broker: client connected");

    let (reader, writer) = stream.into_split();
    // CONNACK first: nothing else is queued yet.
    let _ = control_tx.try_send(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )));
    let mut writer = tokio::spawn(write_loop(writer, control_rx, data_rx, conn.clone()));
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1_500));
    let mut session = Session {
        id,
        shared,
        device,
        control: control_tx,
        keep_alive,
        awaiting_release: HashSet::new(),
    };
    let end = tokio::select! {
        end = session.read_loop(reader, buf) => end,
        _ = &mut writer => End::Lost("writing failed".into()),
        () = conn.close.notified() => End::TakenOver,
    };
    writer.abort();
    let will = shared.lock().remove(id);
    match &end {
        End::Disconnect => {
            tracing::debug!(
                client = client_id,
                "embedded MQTT broker: client disconnected"
            );
        }
        End::TakenOver => {}
        End::Lost(why) => {
            tracing::debug!(
                client = client_id,
                "embedded MQTT broker: connection lost: {why}"
            );
            if let Some((w, retain)) = will {
                shared.lock().route(&limits, w, retain);
            }
        }
    }
}

/// The reading side of one connected client.
struct Session<'a> {
    id: u64,
    shared: &'a Arc<Shared>,
    /// The device this connection logged in as (`None`: no logins, or the
    /// collector itself).
    device: Option<String>,
    control: mpsc::Sender<Packet>,
    /// 1.5 times the client's keep-alive, when it has one.
    keep_alive: Option<Duration>,
    /// QoS 2 packet ids forwarded and waiting for PUBREL, so a resent
    /// PUBLISH is not forwarded twice.
    awaiting_release: HashSet<u16>,
}

impl Session<'_> {
    /// Whether this connection may publish to (or subscribe to) `topic`;
    /// a refusal is counted and logged.
    fn allowed(&self, topic: &str, rule: fn(&Logins, &str, &str) -> bool) -> bool {
        let (Some(auth), Some(device)) = (&self.shared.auth, &self.device) else {
            return true;
        };
        if rule(auth, device, topic) {
            return true;
        }
        let n = self.shared.unauthorized.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(
                device,
                topic,
                "embedded MQTT broker: outside the device's own topics, dropped ({n} so far)"
            );
        }
        false
    }

    async fn read_loop(&mut self, mut reader: OwnedReadHalf, mut buf: BytesMut) -> End {
        let max_packet = self.shared.limits.max_packet;
        loop {
            loop {
                match Packet::read(&mut buf, max_packet) {
                    Ok(packet) => match self.handle(packet).await {
                        Ok(true) => {}
                        Ok(false) => return End::Disconnect,
                        Err(e) => return End::Lost(e),
                    },
                    Err(mqttbytes::Error::InsufficientBytes(n)) => {
                        buf.reserve(n);
                        break;
                    }
                    Err(e) => return End::Lost(format!("malformed packet: {e}")),
                }
            }
            if buf.is_empty() && buf.capacity() > BIG_BUFFER {
                buf = BytesMut::with_capacity(READ_CHUNK);
            } else if buf.capacity() - buf.len() < READ_CHUNK / 8 {
                buf.reserve(READ_CHUNK);
            }
            let read = match self.keep_alive {
                Some(limit) => match tokio::time::timeout(limit, reader.read_buf(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => return End::Lost("no packet within 1.5 times its keep-alive".into()),
                },
                None => reader.read_buf(&mut buf).await,
            };
            match read {
                Ok(0) => return End::Lost("closed without DISCONNECT".into()),
                Ok(_) => {}
                Err(e) => return End::Lost(e.to_string()),
            }
        }
    }

    /// Queues a reply; waits while the client's replies are not being
    /// written, up to its keep-alive.
    async fn reply(&self, packet: Packet) -> Result<(), String> {
        let limit = self.keep_alive.unwrap_or(STUCK_TIMEOUT);
        match tokio::time::timeout(limit, self.control.send(packet)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("writer gone".into()),
            Err(_) => Err("its replies are not being read".into()),
        }
    }

    /// Handles one packet; `Ok(false)` on DISCONNECT.
    async fn handle(&mut self, packet: Packet) -> Result<bool, String> {
        let limits = self.shared.limits;
        match packet {
            Packet::Publish(p) => {
                if p.topic.is_empty() || !mqttbytes::valid_topic(&p.topic) {
                    return Err(format!("invalid topic {:?}", p.topic));
                }
                let (qos, pkid, retain) = (p.qos, p.pkid, p.retain);
                let allowed = self.allowed(&p.topic, Logins::may_publish);
                let forward =
                    allowed && (qos != QoS::ExactlyOnce || self.awaiting_release.insert(pkid));
                if forward {
                    // A copy of exactly the payload: a slice would keep the
                    // whole read buffer alive as long as the message.
                    let message = Arc::new(Message {
                        topic: p.topic,
                        payload: Bytes::copy_from_slice(&p.payload),
                        qos,
                    });
                    self.shared.lock().route(&limits, message, retain);
                }
                match qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => self.reply(Packet::PubAck(PubAck::new(pkid))).await?,
                    QoS::ExactlyOnce => self.reply(Packet::PubRec(PubRec::new(pkid))).await?,
                }
            }
            Packet::PubRel(r) => {
                self.awaiting_release.remove(&r.pkid);
                self.reply(Packet::PubComp(PubComp::new(r.pkid))).await?;
            }
            // QoS 2 towards the client: it received, we release.
            Packet::PubRec(r) => self.reply(Packet::PubRel(PubRel::new(r.pkid))).await?,
            // Nothing is kept for redelivery (clean sessions), so the end of
            // a QoS 1 or 2 delivery needs no bookkeeping.
            Packet::PubAck(_) | Packet::PubComp(_) => {}
            Packet::Subscribe(s) => {
                let permitted: Vec<bool> = s
                    .filters
                    .iter()
                    .map(|f| {
                        mqttbytes::valid_filter(&f.path)
                            && self.allowed(&f.path, Logins::may_subscribe)
                    })
                    .collect();
                let codes = s
                    .filters
                    .iter()
                    .zip(&permitted)
                    .map(|(f, ok)| {
                        if *ok {
                            SubscribeReasonCode::Success(f.qos)
                        } else {
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                // SUBACK before the retained messages the subscription brings.
                self.reply(Packet::SubAck(SubAck::new(s.pkid, codes)))
                    .await?;
                let mut state = self.shared.lock();
                for (f, ok) in s.filters.iter().zip(&permitted) {
                    if *ok {
                        state.subscribe(&limits, self.id, &f.path, f.qos);
                    }
                }
            }
            Packet::Unsubscribe(u) => {
                {
                    let mut state = self.shared.lock();
                    for filter in &u.topics {
                        state.unsubscribe(self.id, filter);
                    }
                }
                self.reply(Packet::UnsubAck(UnsubAck::new(u.pkid))).await?;
            }
            Packet::PingReq => self.reply(Packet::PingResp).await?,
            Packet::Disconnect => return Ok(false),
            other => return Err(format!("unexpected packet from a client: {other:?}")),
        }
        Ok(true)
    }
}

/// Writes a connection's replies (first) and messages, in batches.
async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut control: mpsc::Receiver<Packet>,
    mut data: mpsc::Receiver<Delivery>,
    conn: Arc<Conn>,
) {
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut pkid: u16 = 0;
    let mut next_pkid = move || {
        pkid = pkid.checked_add(1).unwrap_or(1);
        pkid
    };
    loop {
        // Wait for something, replies first.
        tokio::select! {
            biased;
            packet = control.recv() => match packet {
                Some(p) => encode_control(&mut out, &p),
                None => return,
            },
            delivery = data.recv() => match delivery {
                Some(d) => encode_delivery(&mut out, &d, &conn, &mut next_pkid),
                None => return,
            },
        }
        // Then whatever else is ready, up to a batch.
        while out.len() < WRITE_BATCH {
            if let Ok(p) = control.try_recv() {
                encode_control(&mut out, &p);
            } else if let Ok(d) = data.try_recv() {
                encode_delivery(&mut out, &d, &conn, &mut next_pkid);
            } else {
                break;
            }
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        if out.capacity() > BIG_BUFFER {
            out = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

fn encode_control(out: &mut BytesMut, packet: &Packet) {
    // Replies are a few bytes: they always fit.
    let _ = packet.write(out, MAX_PAYLOAD);
}

/// PUBLISH, written straight from the shared message.
fn encode_delivery(
    out: &mut BytesMut,
    d: &Delivery,
    conn: &Conn,
    next_pkid: &mut impl FnMut() -> u16,
) {
    let m = &d.message;
    conn.queued_bytes.fetch_sub(m.size(), Ordering::Relaxed);
    let with_id = d.qos != QoS::AtMostOnce;
    let mut remaining = 2 + m.topic.len() + m.payload.len();
    if with_id {
        remaining += 2;
    }
    out.reserve(remaining + 5);
    out.put_u8(0x30 | ((d.qos as u8) << 1) | u8::from(d.retain));
    let mut len = remaining;
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            out.put_u8(byte | 0x80);
        } else {
            out.put_u8(byte);
            break;
        }
    }
    // Topics come from parsed packets, so they are under 64 KiB.
    out.put_u16(u16::try_from(m.topic.len()).unwrap_or(u16::MAX));
    out.put_slice(m.topic.as_bytes());
    if with_id {
        out.put_u16(next_pkid());
    }
    out.put_slice(&m.payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions};

    fn broker(limits: Limits) -> Broker {
        Broker::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), limits).expect("broker starts")
    }

    fn client(broker: &Broker, id: &str) -> (AsyncClient, EventLoop) {
        let mut opts = MqttOptions::new(id, "127.0.0.1", broker.local_addr().port());
        opts.set_keep_alive(Duration::from_secs(5));
        AsyncClient::new(opts, 100)
    }

    /// Polls until a publish arrives (or `within` passes).
    async fn next_publish(ev: &mut EventLoop, within: Duration) -> Option<rumqttc::Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, ev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => return Some(p),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("client failed: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// Polls until SUBACK.
    async fn until_suback(ev: &mut EventLoop) {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return,
                Ok(Ok(_)) => {}
                other => panic!("no SUBACK: {other:?}"),
            }
        }
    }

    /// Drives a client's event loop in the background.
    fn drive(mut ev: EventLoop) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { while ev.poll().await.is_ok() {} })
    }

    #[test]
    fn devices_may_use_only_their_own_topics() {
        let l = Logins {
            devices: HashMap::new(),
            collector: ("c".into(), "p".into()),
            root: "glasswatch".into(),
        };
        for ok in [
            "glasswatch/v1/devices/dev-a/status",
            "glasswatch/v1/devices/dev-a/clock/pong",
            "glasswatch/v1/devices/dev-a/streams/cam0/frames",
            "glasswatch/v1/devices/dev-a/streams/cam0/stats",
        ] {
            assert!(l.may_publish("dev-a", ok), "{ok}");
        }
        for no in [
            "glasswatch/v1/devices/dev-b/status",
            "glasswatch/v1/devices/dev-ab/status",
            "glasswatch/v1/devices/dev-a/streams/cam0/latency",
            "glasswatch/v1/devices/dev-a/streams/cam0/viewer",
            "glasswatch/v1/devices/dev-a/clock/ping",
            "glasswatch/v1/devices/dev-a/status/x",
            "other/v1/devices/dev-a/status",
            "glasswatch/v1/devices/dev-a",
        ] {
            assert!(!l.may_publish("dev-a", no), "{no}");
        }
        assert!(l.may_subscribe("dev-a", "glasswatch/v1/devices/dev-a/clock/ping"));
        assert!(!l.may_subscribe("dev-a", "glasswatch/v1/devices/+/clock/ping"));
        assert!(!l.may_subscribe("dev-a", "glasswatch/#"));
        assert!(!l.may_subscribe("dev-a", "glasswatch/v1/devices/dev-ab/clock/ping"));
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        assert!(matches("a/b/c", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("#", "a/b"));
        assert!(matches("+/+", "a/"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }

    #[tokio::test]
    async fn routes_once_per_subscriber_at_the_granted_qos() {
        let b = broker(Limits::default());
        let (sub, mut sub_ev) = client(&b, "sub");
        sub.subscribe("a/+/c", QoS::AtLeastOnce).await.unwrap();
        sub.subscribe("a/#", QoS::AtMostOnce).await.unwrap();
        until_suback(&mut sub_ev).await;
        until_suback(&mut sub_ev).await;
        let (publ, publ_ev) = client(&b, "pub");
        let _p = drive(publ_ev);
        publ.publish("a/b/c", QoS::AtLeastOnce, false, "one")
            .await
            .unwrap();
        publ.publish("b/c", QoS::AtLeastOnce, false, "none")
            .await
            .unwrap();
        publ.publish("a/x", QoS::AtLeastOnce, false, "two")
            .await
            .unwrap();
        let first = next_publish(&mut sub_ev, Duration::from_secs(5))
            .await
            .expect("a/b/c");
        assert_eq!(
            (first.topic.as_str(), &first.payload[..]),
            ("a/b/c", &b"one"[..])
        );
        assert_eq!(
            first.qos,
            QoS::AtLeastOnce,
            "the higher of two matching subscriptions"
        );
        assert!(!first.retain);
        let second = next_publish(&mut sub_ev, Duration::from_secs(5))
            .await
            .expect("a/x");
        assert_eq!(
            (second.topic.as_str(), second.qos),
            ("a/x", QoS::AtMostOnce)
        );
        assert!(
            next_publish(&mut sub_ev, Duration::from_millis(300))
                .await
                .is_none(),
            "a/b/c once, b/c never"
        );
    }

    #[tokio::test]
    async fn exactly_once_both_ways() {
        let b = broker(Limits::default());
        let (sub, mut sub_ev) = client(&b, "sub2");
        sub.subscribe("q/2", QoS::ExactlyOnce).await.unwrap();
        until_suback(&mut sub_ev).await;
        let (publ, publ_ev) = client(&b, "pub2");
        let _p = drive(publ_ev);
        for k in 0..3 {
            publ.publish("q/2", QoS::ExactlyOnce, false, format!("m{k}"))
                .await
                .unwrap();
        }
        for k in 0..3 {
            let p = next_publish(&mut sub_ev, Duration::from_secs(5))
                .await
                .expect("delivered");
            assert_eq!(p.qos, QoS::ExactlyOnce);
            assert_eq!(&p.payload[..], format!("m{k}").as_bytes());
        }
        assert!(next_publish(&mut sub_ev, Duration::from_millis(300))
            .await
            .is_none());
    }

    #[tokio::test]
    async fn retained_messages_and_last_will() {
        let b = broker(Limits::default());
        let mut opts = MqttOptions::new("device", "127.0.0.1", b.local_addr().port());
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_last_will(LastWill::new("s/device", "offline", QoS::AtLeastOnce, true));
        let (dev, dev_ev) = AsyncClient::new(opts, 10);
        let dev_task = drive(dev_ev);
        dev.publish("s/device", QoS::AtLeastOnce, true, "online")
            .await
            .unwrap();
        dev.publish("s/other", QoS::AtLeastOnce, true, "x")
            .await
            .unwrap();
        dev.publish("s/other", QoS::AtLeastOnce, true, "")
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while b.stats().retained != 1 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", b.stats());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let (sub, mut sub_ev) = client(&b, "watcher");
        sub.subscribe("s/+", QoS::AtLeastOnce).await.unwrap();
        let p = next_publish(&mut sub_ev, Duration::from_secs(5))
            .await
            .expect("retained");
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.retain),
            ("s/device", &b"online"[..], true)
        );
        assert!(
            next_publish(&mut sub_ev, Duration::from_millis(200))
                .await
                .is_none(),
            "s/other was cleared"
        );

        // The device's connection dies without DISCONNECT: its will goes out,
        // live (retain 0) and as the new retained status.
        dev_task.abort();
        drop(dev);
        let p = next_publish(&mut sub_ev, Duration::from_secs(5))
            .await
            .expect("will");
        assert_eq!((&p.payload[..], p.retain), (&b"offline"[..], false));
        let (late, mut late_ev) = client(&b, "late");
        late.subscribe("s/device", QoS::AtMostOnce).await.unwrap();
        let p = next_publish(&mut late_ev, Duration::from_secs(5))
            .await
            .expect("retained will");
        assert_eq!(&p.payload[..], b"offline");
    }

    #[tokio::test]
    async fn a_clean_disconnect_discards_the_will_and_a_new_connection_takes_the_id_over() {
        let b = broker(Limits::default());
        let (sub, mut sub_ev) = client(&b, "w");
        sub.subscribe("will/#", QoS::AtMostOnce).await.unwrap();
        until_suback(&mut sub_ev).await;

        let with_will = |id: &str| {
            let mut opts = MqttOptions::new(id, "127.0.0.1", b.local_addr().port());
            opts.set_last_will(LastWill::new(
                format!("will/{id}"),
                "gone",
                QoS::AtMostOnce,
                false,
            ));
            AsyncClient::new(opts, 10)
        };
        let (clean, mut clean_ev) = with_will("clean");
        clean.disconnect().await.unwrap();
        while !matches!(
            clean_ev.poll().await,
            Err(_) | Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
        ) {}
        drop(clean_ev);
        assert!(next_publish(&mut sub_ev, Duration::from_millis(500))
            .await
            .is_none());

        // Two connections with one client id: the first is closed (and its
        // will published, as for any connection closed by the broker).
        let (_first, mut first_ev) = with_will("twin");
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = first_ev.poll().await.unwrap() {
                break;
            }
        }
        let (_second, second_ev) = with_will("twin");
        let _s = drive(second_ev);
        let p = next_publish(&mut sub_ev, Duration::from_secs(5))
            .await
            .expect("will");
        assert_eq!(p.topic, "will/twin");
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if first_ev.poll().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the first connection was closed");
    }

    #[tokio::test]
    async fn a_silent_client_is_closed_after_its_keep_alive() {
        let b = broker(Limits::default());
        let (sub, mut sub_ev) = client(&b, "ka-watch");
        sub.subscribe("ka/#", QoS::AtMostOnce).await.unwrap();
        until_suback(&mut sub_ev).await;
        // A raw CONNECT: keep-alive 1 s, will on ka/x, then silence.
        let mut raw = TcpStream::connect(b.local_addr()).await.unwrap();
        let mut connect = rumqttc::mqttbytes::v4::Connect::new("silent");
        connect.keep_alive = 1;
        connect.last_will = Some(LastWill::new("ka/x", "lost", QoS::AtMostOnce, false));
        let mut out = BytesMut::new();
        Packet::Connect(connect)
            .write(&mut out, MAX_PAYLOAD)
            .unwrap();
        raw.write_all(&out).await.unwrap();
        let started = tokio::time::Instant::now();
        let p = next_publish(&mut sub_ev, Duration::from_secs(5))
            .await
            .expect("will");
        assert_eq!(&p.payload[..], b"lost");
        assert!(
            started.elapsed() >= Duration::from_millis(1_400),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn malformed_input_closes_only_that_connection() {
        let b = broker(Limits::default());
        let mut raw = TcpStream::connect(b.local_addr()).await.unwrap();
        raw.write_all(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01])
            .await
            .unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // A packet over the limit, after a good CONNECT.
        let small = broker(Limits {
            max_packet: 1024,
            ..Limits::default()
        });
        let (c, mut ev) = client(&small, "big");
        c.publish("t", QoS::AtMostOnce, false, vec![0u8; 4096])
            .await
            .unwrap();
        let failed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if ev.poll().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            failed.is_ok(),
            "a packet over max_packet closes the connection"
        );
        // The broker still serves others.
        let (s, mut s_ev) = client(&b, "still");
        s.subscribe("ok", QoS::AtMostOnce).await.unwrap();
        until_suback(&mut s_ev).await;
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_costs_at_most_its_queue() {
        let limits = Limits {
            max_queued_messages: 100,
            max_queued_bytes: 64 * 1024,
            ..Limits::default()
        };
        let b = broker(limits);
        // Subscribes, then never reads its socket again (no keep-alive).
        let mut raw = TcpStream::connect(b.local_addr()).await.unwrap();
        let mut out = BytesMut::new();
        let mut connect = rumqttc::mqttbytes::v4::Connect::new("stuck");
        connect.keep_alive = 0;
        Packet::Connect(connect)
            .write(&mut out, MAX_PAYLOAD)
            .unwrap();
        Packet::Subscribe(rumqttc::mqttbytes::v4::Subscribe::new(
            "flood",
            QoS::AtLeastOnce,
        ))
        .write(&mut out, MAX_PAYLOAD)
        .unwrap();
        raw.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        // 64 MiB published at QoS 1 (more than the socket buffers take):
        // the publisher is never held back.
        const COUNT: usize = 8_192;
        let (publ, mut publ_ev) = client(&b, "flooder");
        let payload = vec![7u8; 8 * 1024];
        let sender = tokio::spawn(async move {
            for _ in 0..COUNT {
                publ.publish("flood", QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .unwrap();
            }
        });
        let mut acked = 0;
        while acked < COUNT {
            match tokio::time::timeout(Duration::from_secs(20), publ_ev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                other => panic!("publisher held back after {acked} PUBACKs: {other:?}"),
            }
        }
        sender.await.unwrap();
        let stats = b.stats();
        assert!(stats.dropped > 4_000, "{stats:?}");
        // What the stuck subscriber holds: its queue, at most 64 KiB plus one message.
        assert!(stats.queued_bytes <= 64 * 1024 + 8 * 1024 + 16, "{stats:?}");
        drop(raw);
    }
}
