//! The agent's MQTT side: status (retained, with a Last Will), frame-record
//! batches (QoS 1), stats (QoS 0, every second) and clock-sync answers.
//!
//! Topics and payloads are `glasswatch_common::{topics, messages}`; see
//! docs/mqtt.md. **Nothing accepted is lost while the broker is away**: each
//! stream's records wait in a [`FrameQueue`] (fixed capacity from
//! `buffer_seconds` × fps, allocated once), a batch leaves the queue only
//! when it is published, and stays "in flight" until the broker's PUBACK.
//! When the connection drops, every batch not acknowledged goes back to the
//! front of its queue, in order, and is sent again after the reconnect
//! (duplicates are possible under QoS 1, gaps are not). Only a full queue
//! drops records, the oldest first, and counts them for stats.
//!
//! rumqttc's event loop runs in its own task (a connect or TLS handshake is
//! never cancelled by our timers) and forwards its events here; this module
//! only uses the client's non-blocking `try_*` calls, so the reporter task
//! never waits on the broker.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use glasswatch_common::messages::{
    self, ClockPing, ClockPong, FramesBatch, Stats, Status, SCHEMA_STATUS,
};
use glasswatch_common::mqtt_client;
use glasswatch_common::topics::Topics;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, Outgoing, Packet,
    QoS,
};
use tokio::sync::mpsc;

use crate::config;
use crate::record::FrameInfo;
use crate::state::{wall_us, Backoff, StreamState};
use crate::sysinfo;

/// Most records in one frames message (a backlog goes out in several).
const MAX_BATCH: usize = 500;
/// Frames batches in flight (published, not yet acknowledged) per stream.
const MAX_INFLIGHT_BATCHES: usize = 8;

/// A stream's frame records waiting for the broker: a ring of fixed capacity.
///
/// `heapless::Deque` would fix the capacity at compile time; here it comes
/// from the config (`buffer_seconds` × fps), so the queue is a `VecDeque`
/// allocated once with that capacity and never allowed to grow past it.
#[derive(Debug)]
pub struct FrameQueue {
    items: VecDeque<FrameInfo>,
    cap: usize,
    dropped: u64,
}

impl FrameQueue {
    pub fn with_capacity(cap: usize) -> FrameQueue {
        let cap = cap.max(1);
        FrameQueue {
            items: VecDeque::with_capacity(cap),
            cap,
            dropped: 0,
        }
    }

    /// Appends a record, dropping (and counting) the oldest when full.
    pub fn push(&mut self, f: FrameInfo) {
        if self.items.len() == self.cap {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(f);
    }

    /// Puts an unacknowledged batch back in front, keeping the order; the
    /// oldest records go if that overfills the queue.
    pub fn requeue_front(&mut self, batch: Vec<FrameInfo>) {
        for f in batch.into_iter().rev() {
            if self.items.len() == self.cap {
                // The front is the oldest: the record being requeued now.
                self.dropped += 1;
                continue;
            }
            self.items.push_front(f);
        }
    }

    /// Takes up to `n` of the oldest records.
    pub fn take(&mut self, n: usize) -> Vec<FrameInfo> {
        let n = n.min(self.items.len());
        self.items.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The allocation's capacity, for tests that check it never grows.
    pub fn allocated(&self) -> usize {
        self.items.capacity()
    }
}

/// A published batch waiting for its PUBACK.
#[derive(Debug)]
struct Inflight {
    /// Order of publication, to requeue in order.
    issue: u64,
    stream: usize,
    frames: Vec<FrameInfo>,
}

/// An event from the event loop task, with the wall clock when it arrived.
type Forwarded = (Result<Event, ConnectionError>, i64);

/// Previous counter values, to turn totals into per-second figures.
#[derive(Debug, Default, Clone, Copy)]
struct StatsPrev {
    at_us: i64,
    sent: u64,
    sent_bytes: u64,
}

/// The MQTT reporter state, owned by the reporter task.
pub struct MqttReporter {
    client: AsyncClient,
    events: mpsc::Receiver<Forwarded>,
    topics: Topics,
    device: String,
    url: String,
    connected: bool,
    failures_in_a_row: u32,
    queues: Vec<FrameQueue>,
    ids: Vec<String>,
    /// QoS 1 publishes issued but not yet given a packet id, in order
    /// (`None` for status messages).
    awaiting_pkid: VecDeque<Option<Inflight>>,
    inflight: HashMap<u16, Inflight>,
    issued: u64,
    status_gen: u64,
    stats_prev: Vec<StatsPrev>,
    cpu: sysinfo::CpuMeter,
    malformed: u64,
}

impl MqttReporter {
    /// Connects (in the background) with the config's broker, credentials and
    /// TLS, the retained offline status as Last Will, and one queue per stream.
    pub fn start(
        cfg: &config::Mqtt,
        device: &str,
        streams: &[(String, u32)],
    ) -> anyhow::Result<MqttReporter> {
        let topics = Topics::new(&cfg.topic_root).context("mqtt.topic_root")?;
        let mut opts = mqtt_client::options(
            &mqtt_client::ClientSettings {
                url: &cfg.url,
                username: cfg.username.as_deref(),
                password: cfg.password.as_deref(),
                password_file: cfg.password_file.as_deref(),
                ca_file: cfg.ca_file.as_deref(),
                keep_alive_s: cfg.keep_alive_s.get(),
            },
            device,
        )?;
        opts.set_clean_session(true);
        opts.set_inflight(64);
        let will = Status::offline(device, wall_us(), "connection lost (last will)");
        opts.set_last_will(LastWill::new(
            topics.status(device),
            messages::encode(&will).context("encoding the last will")?,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, eventloop) = AsyncClient::new(opts, 256);
        let (tx, events) = mpsc::channel(1024);
        tokio::spawn(drive(eventloop, tx));
        let queues = streams
            .iter()
            .map(|(_, fps)| {
                FrameQueue::with_capacity(cfg.buffer_seconds.get() as usize * *fps as usize)
            })
            .collect();
        Ok(MqttReporter {
            client,
            events,
            topics,
            device: device.to_owned(),
            url: cfg.url.to_string(),
            connected: false,
            failures_in_a_row: 0,
            queues,
            ids: streams.iter().map(|(id, _)| id.clone()).collect(),
            awaiting_pkid: VecDeque::new(),
            inflight: HashMap::new(),
            issued: 0,
            status_gen: u64::MAX,
            stats_prev: vec![StatsPrev::default(); streams.len()],
            cpu: sysinfo::CpuMeter::new(),
            malformed: 0,
        })
    }

    /// The next event from the event loop task (pending forever once it is gone).
    pub async fn next_event(&mut self) -> Forwarded {
        match self.events.recv().await {
            Some(ev) => ev,
            None => std::future::pending().await,
        }
    }

    /// Queues a record for its stream.
    pub fn queue(&mut self, info: FrameInfo) {
        if let Some(q) = self.queues.get_mut(info.stream) {
            q.push(info);
        }
    }

    /// Publishes one batch per stream with what is queued (several for a backlog).
    pub fn publish_batches(&mut self) {
        if !self.connected {
            return;
        }
        for stream in 0..self.queues.len() {
            loop {
                let in_flight = self
                    .inflight
                    .values()
                    .chain(self.awaiting_pkid.iter().flatten())
                    .filter(|b| b.stream == stream)
                    .count();
                if self.queues[stream].is_empty() || in_flight >= MAX_INFLIGHT_BATCHES {
                    break;
                }
                let frames = self.queues[stream].take(MAX_BATCH);
                let batch = FramesBatch::new(
                    &self.device,
                    &self.ids[stream],
                    frames.iter().map(FrameInfo::to_record).collect(),
                );
                let topic = self.topics.frames(&self.device, &self.ids[stream]);
                let sent = messages::encode(&batch).ok().map(|payload| {
                    self.client
                        .try_publish(topic, QoS::AtLeastOnce, false, payload)
                });
                match sent {
                    Some(Ok(())) => {
                        self.issued += 1;
                        self.awaiting_pkid.push_back(Some(Inflight {
                            issue: self.issued,
                            stream,
                            frames,
                        }));
                    }
                    _ => {
                        // The client's request channel is full: try again next tick.
                        self.queues[stream].requeue_front(frames);
                        break;
                    }
                }
            }
        }
    }

    /// Handles one event from the event loop task.
    pub fn handle(&mut self, (event, at_us): Forwarded, states: &[Arc<StreamState>]) {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                self.connected = true;
                self.failures_in_a_row = 0;
                tracing::info!(broker = %self.url, "connected to the MQTT broker");
                self.status_gen = u64::MAX;
                self.publish_status_if_changed(states);
                let _ = self
                    .client
                    .try_subscribe(self.topics.clock_ping(&self.device), QoS::AtMostOnce);
                self.publish_batches();
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic == self.topics.clock_ping(&self.device) {
                    self.answer_ping(&p.payload, at_us);
                } else {
                    self.count_malformed(&format!("unexpected message on {}", p.topic));
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                self.inflight.remove(&ack.pkid);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                if let Some(Some(batch)) = self.awaiting_pkid.pop_front() {
                    self.inflight.insert(pkid, batch);
                }
            }
            Ok(_) => {}
            Err(e) => self.connection_failed(&e),
        }
    }

    fn connection_failed(&mut self, e: &ConnectionError) {
        let why = match e {
            ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword) => {
                "the broker refused the connection: bad user name or password (check mqtt.username and mqtt.password_file)".to_owned()
            }
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized) => {
                "the broker refused the connection: not authorized (wrong user name or password, or no access; check mqtt.username and mqtt.password_file)".to_owned()
            }
            other => other.to_string(),
        };
        if self.connected {
            tracing::warn!(broker = %self.url, "lost the MQTT connection: {why}; frame records are kept and sent after reconnecting");
        } else if self.failures_in_a_row == 0 || self.failures_in_a_row.is_power_of_two() {
            tracing::warn!(broker = %self.url, attempts = self.failures_in_a_row + 1, "cannot connect to the MQTT broker: {why}; retrying");
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.connected = false;
        // Every batch not acknowledged goes back, oldest first.
        let mut back: Vec<Inflight> = self
            .inflight
            .drain()
            .map(|(_, b)| b)
            .chain(self.awaiting_pkid.drain(..).flatten())
            .collect();
        back.sort_by_key(|b| std::cmp::Reverse(b.issue));
        for b in back {
            if let Some(q) = self.queues.get_mut(b.stream) {
                q.requeue_front(b.frames);
            }
        }
    }

    fn answer_ping(&mut self, payload: &[u8], t2_us: i64) {
        match messages::decode::<ClockPing>(payload) {
            Ok(ping) => {
                let t3 = wall_us();
                let pong = ClockPong::answer(&ping, t2_us, t3);
                if let Ok(json) = messages::encode(&pong) {
                    let _ = self.client.try_publish(
                        self.topics.clock_pong(&self.device),
                        QoS::AtMostOnce,
                        false,
                        json,
                    );
                }
            }
            Err(e) => self.count_malformed(&format!("malformed clock ping: {e}")),
        }
    }

    fn count_malformed(&mut self, what: &str) {
        self.malformed += 1;
        if self.malformed <= 10 || self.malformed.is_power_of_two() {
            tracing::warn!(malformed = self.malformed, "ignored: {what}");
        }
    }

    fn status(&self, states: &[Arc<StreamState>]) -> Status {
        Status {
            schema: SCHEMA_STATUS.to_owned(),
            device: self.device.clone(),
            online: true,
            ts_us: wall_us(),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            gstreamer_version: Some(gstreamer::version_string().to_string()),
            host: Some(sysinfo::hostname()),
            arch: Some(std::env::consts::ARCH.to_owned()),
            streams: states.iter().filter_map(|s| s.info()).collect(),
            clock: Some(sysinfo::clock_health()),
            reason: None,
        }
    }

    /// Publishes the birth status when connected and something changed.
    pub fn publish_status_if_changed(&mut self, states: &[Arc<StreamState>]) {
        let gen: u64 = states
            .iter()
            .map(|s| s.info_gen.load(Ordering::Relaxed))
            .sum();
        if !self.connected || gen == self.status_gen {
            return;
        }
        if let Ok(json) = messages::encode(&self.status(states)) {
            let topic = self.topics.status(&self.device);
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, json)
                .is_ok()
            {
                self.awaiting_pkid.push_back(None);
                self.status_gen = gen;
            }
        }
    }

    /// Publishes each stream's stats for the last interval.
    pub fn publish_stats(&mut self, states: &[Arc<StreamState>]) {
        let now = wall_us();
        let cpu = self.cpu.percent();
        let rss = sysinfo::rss_bytes();
        let temperature = sysinfo::temperature_c();
        for (i, s) in states.iter().enumerate() {
            let c = &s.counters;
            let sent = c.sent.load(Ordering::Relaxed);
            let sent_bytes = c.sent_bytes.load(Ordering::Relaxed);
            let prev = self.stats_prev.get(i).copied().unwrap_or_default();
            if let Some(p) = self.stats_prev.get_mut(i) {
                *p = StatsPrev {
                    at_us: now,
                    sent,
                    sent_bytes,
                };
            }
            if prev.at_us == 0 || !self.connected {
                continue;
            }
            let secs = ((now - prev.at_us) as f64 / 1e6).max(1e-3);
            let (encoder, hardware) = s
                .info()
                .map(|i| (i.encoder, i.hardware))
                .unwrap_or_default();
            let in_flight: usize = self
                .inflight
                .values()
                .chain(self.awaiting_pkid.iter().flatten())
                .filter(|b| b.stream == i)
                .map(|b| b.frames.len())
                .sum();
            let queue = &self.queues[i];
            let stats = Stats {
                schema: messages::SCHEMA_STATS.to_owned(),
                device: self.device.clone(),
                stream: s.id.clone(),
                ts_us: now,
                interval_ms: secs * 1000.0,
                publisher_fps: sent.saturating_sub(prev.sent) as f64 / secs,
                bitrate_kbps: sent_bytes.saturating_sub(prev.sent_bytes) as f64 * 8.0
                    / 1000.0
                    / secs,
                frames_dropped_capture: c.dropped_capture.load(Ordering::Relaxed),
                frames_dropped_encode: c.dropped_encode.load(Ordering::Relaxed)
                    + c.dropped_before_send.load(Ordering::Relaxed),
                encoder,
                hardware,
                cpu_percent: cpu,
                rss_bytes: rss,
                temperature_c: temperature,
                report_backlog: (queue.len() + in_flight) as u64,
                records_dropped: queue.dropped() + c.records_lost.load(Ordering::Relaxed),
            };
            if let Ok(json) = messages::encode(&stats) {
                let _ = self.client.try_publish(
                    self.topics.stats(&self.device, &s.id),
                    QoS::AtMostOnce,
                    false,
                    json,
                );
            }
        }
    }

    /// On shutdown: send what is queued, the retained offline status, and
    /// disconnect, waiting at most `budget` for the broker to take it.
    pub async fn goodbye(&mut self, states: &[Arc<StreamState>], budget: Duration) {
        let deadline = tokio::time::Instant::now() + budget;
        self.publish_batches();
        let offline = Status::offline(&self.device, wall_us(), "shutdown");
        if let Ok(json) = messages::encode(&offline) {
            let _ = self.client.try_publish(
                self.topics.status(&self.device),
                QoS::AtLeastOnce,
                true,
                json,
            );
        }
        let _ = self.client.try_disconnect();
        while let Ok(ev) = tokio::time::timeout_at(deadline, self.next_event()).await {
            match ev.0 {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                _ => self.handle(ev, states),
            }
        }
        let backlog: usize = self.queues.iter().map(FrameQueue::len).sum::<usize>()
            + self
                .inflight
                .values()
                .map(|b| b.frames.len())
                .sum::<usize>();
        if backlog > 0 {
            tracing::warn!(
                backlog,
                "frame records not delivered to the broker at shutdown"
            );
        }
    }
}

/// Polls rumqttc's event loop forever, forwarding events; waits with capped
/// backoff after each failure so a refused broker is not hammered.
async fn drive(mut eventloop: EventLoop, tx: mpsc::Sender<Forwarded>) {
    let mut backoff = Backoff::with_ms(250, 5_000);
    loop {
        let ev = eventloop.poll().await;
        let at = wall_us();
        let failed = ev.is_err();
        if matches!(ev, Ok(Event::Incoming(Packet::ConnAck(_)))) {
            backoff.reset();
        }
        if tx.send((ev, at)).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(Duration::from_millis(backoff.next_wait())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> FrameInfo {
        FrameInfo {
            stream: 0,
            session: 1,
            seq,
            capture_us: seq as i64,
            encoded_us: 0,
            sent_us: 0,
            bytes: 0,
            keyframe: false,
            fingerprint: 0,
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_without_growing() {
        let mut q = FrameQueue::with_capacity(30);
        let allocated = q.allocated();
        for s in 0..100 {
            q.push(frame(s));
        }
        assert_eq!(q.len(), 30);
        assert_eq!(q.dropped(), 70);
        assert_eq!(q.allocated(), allocated, "allocated once");
        let seqs: Vec<u64> = q.take(100).iter().map(|f| f.seq).collect();
        assert_eq!(seqs, (70..100).collect::<Vec<_>>());
    }

    #[test]
    fn requeue_keeps_order_and_drops_oldest_when_full() {
        let mut q = FrameQueue::with_capacity(5);
        for s in 0..5 {
            q.push(frame(s));
        }
        let batch = q.take(3);
        q.push(frame(5));
        q.push(frame(6));
        q.requeue_front(batch);
        // 0 and 1 no longer fit: they are the oldest.
        let seqs: Vec<u64> = q.take(10).iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
        assert_eq!(q.dropped(), 2);
    }
}
