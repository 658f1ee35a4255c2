//! The collector's state and its rules, without I/O: the registry of devices
//! and streams (from status and the Last Will), each stream's recent frame
//! records, matching what the HLS receivers saw to those records, the clock
//! offset of each device, and the per-second summaries.
//!
//! The runtime (`run.rs`) feeds it MQTT messages, receiver reports and the
//! time, and carries out what it answers: start or stop a receiver, send a
//! clock ping, hand a summary to the sink. Every method is given `now_us`
//! (collector clock), so the rules are tested without sleeping.

use std::collections::{BTreeMap, HashMap, VecDeque};

use glasswatch_common::api::{Counters, DeviceView, StreamView};
use glasswatch_common::messages::{
    Breakdown, ClockEstimate, ClockPing, ClockPong, FramesBatch, HlsReading, Latency, Stats,
    Status, Viewer, SCHEMA_LATENCY,
};

use crate::aggregate::Window;
use crate::clock::{ClockEstimator, ClockOffset};
use crate::matcher::{latency, FrameLatency, MatchedBy, RecordStore};
use crate::receiver::{Event, Reading, SeenFrame, StreamKey};

/// The hub's tunables (from the config).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub retention_us: i64,
    /// How long a frame waits for its record, and a record for its frame.
    pub wait_us: i64,
    pub clock_window_us: i64,
    pub max_rtt_us: i64,
    pub ping_interval_us: i64,
    /// Most records kept per stream.
    pub max_records: usize,
    /// The dashboard's latency colour bands, ms (`[dashboard] bands_ms`).
    pub bands_ms: [f64; 3],
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retention_us: 30_000_000,
            wait_us: 3_000_000,
            clock_window_us: 60_000_000,
            max_rtt_us: 2_000_000,
            ping_interval_us: 3_000_000,
            max_records: 30 * 240,
            bands_ms: crate::dashboard::BANDS_MS,
        }
    }
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    StartReceiver { key: StreamKey, url: String },
    StopReceiver { key: StreamKey },
}

/// One stream's closed window: the summary, its matched frames and the
/// agent's last stats received during it.
#[derive(Debug, Clone)]
pub struct Closed {
    pub latency: Latency,
    pub frames: Vec<FrameLatency>,
    pub stats: Option<Stats>,
}

/// A frame seen over HLS that waits for its record.
#[derive(Debug, Clone, Copy)]
struct Pending {
    frame: SeenFrame,
    available_us: i64,
    deadline_us: i64,
}

/// One stream's state.
#[derive(Debug)]
struct StreamState {
    records: RecordStore,
    pending: VecDeque<Pending>,
    window: Window,
    window_start_us: i64,
    /// Frames seen over HLS in the window, matched or not.
    seen: u64,
    matched_by_fingerprint: u64,
    unmatched: u64,
    dropped: u64,
    errors: u64,
    playlist_requests: u64,
    media_requests: u64,
    /// Since the stream was first seen.
    seen_total: u64,
    errors_total: u64,
    dropped_total: u64,
    /// The last settle counted drops: a loss that goes on (HLS away while
    /// records arrive) logs its start at warn and the rest at debug.
    dropping: bool,
    /// Every matched frame's glass-to-HLS, for Prometheus.
    g2h_hist: crate::metrics::PromHist,
    /// Viewer latency of the frames dashboard viewers were shown.
    viewer_hist: crate::metrics::PromHist,
    /// The last seq HLS delivered, and seqs it skipped, to settle after the wait.
    last_hls_seq: Option<u64>,
    gaps: VecDeque<(i64, u64)>,
    /// The first frame HLS delivered in the current session: records
    /// before it were not looked for, so they do not count as dropped.
    first_seen: Option<(u64, u64)>,
    publisher_fps: Option<f64>,
    /// The agent's last stats, taken by the next closed window.
    stats: Option<Stats>,
    /// The agent's last stats, kept for the dashboard.
    last_stats: Option<Stats>,
    /// Glass-to-HLS p50 of the last [`HISTORY`] windows, oldest first (sparklines).
    history: VecDeque<Option<f32>>,
    /// The last viewer report, and when it arrived.
    viewer: Option<(i64, Viewer)>,
    reading: Option<Reading>,
    /// The URL a receiver runs for, if one does.
    receiving: Option<String>,
    /// The agent lists the stream in its current status.
    advertised: Option<String>,
    last: Option<Latency>,
}

impl StreamState {
    fn new(s: &Settings, now_us: i64) -> StreamState {
        StreamState {
            records: RecordStore::new(s.retention_us, s.max_records),
            pending: VecDeque::new(),
            window: Window::new(),
            window_start_us: now_us,
            seen: 0,
            matched_by_fingerprint: 0,
            unmatched: 0,
            dropped: 0,
            errors: 0,
            playlist_requests: 0,
            media_requests: 0,
            seen_total: 0,
            errors_total: 0,
            dropped_total: 0,
            dropping: false,
            g2h_hist: crate::metrics::PromHist::default(),
            viewer_hist: crate::metrics::PromHist::default(),
            last_hls_seq: None,
            gaps: VecDeque::new(),
            first_seen: None,
            publisher_fps: None,
            stats: None,
            last_stats: None,
            history: VecDeque::new(),
            viewer: None,
            reading: None,
            receiving: None,
            advertised: None,
            last: None,
        }
    }
}

/// One device's state.
#[derive(Debug)]
struct Device {
    online: bool,
    status: Option<Status>,
    /// When the last status arrived (collector clock).
    status_at_us: i64,
    /// When `online` last changed (collector clock).
    since_us: i64,
    clock: ClockEstimator,
    next_ping_us: i64,
}

/// Most frames waiting for their records per stream.
const MAX_PENDING: usize = 2_000;
/// Most pings awaiting their pong.
const MAX_OUTSTANDING: usize = 4_096;
/// Windows of glass-to-HLS p50 kept per stream for the dashboard's sparklines.
pub const HISTORY: usize = 60;
/// A viewer report older than this is no longer shown as current.
const VIEWER_FRESH_US: i64 = 5_000_000;
/// Viewer reports one (viewer, stream) may send: a burst, then one per interval.
const VIEWER_BURST: u32 = 4;
const VIEWER_INTERVAL_US: i64 = 500_000;
/// Most (viewer, stream) pairs rate-limited at once; more are refused.
const MAX_VIEWER_LIMITS: usize = 10_000;
/// Most viewer reports waiting for the next tick.
const MAX_VIEWER_PENDING: usize = 10_000;

/// Why a viewer report was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ViewerRefused {
    #[error("the collector knows no such stream")]
    UnknownStream,
    #[error("too many reports: at most one per 500 ms for a viewer and stream")]
    TooFrequent,
    #[error("too many viewers at once")]
    TooManyViewers,
}

/// Viewer reports accepted and refused since start, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ViewerCounters {
    pub accepted: u64,
    pub malformed: u64,
    pub too_large: u64,
    pub too_frequent: u64,
    pub unknown_stream: u64,
    pub too_many_viewers: u64,
}

/// One stream as the fleet dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRow {
    pub device: String,
    pub stream: String,
    pub online: bool,
    /// When the device went online or offline (collector clock), if known.
    pub since_us: Option<i64>,
    /// The last window's summary.
    pub last: Option<Latency>,
    /// The agent's last stats.
    pub stats: Option<Stats>,
    /// Encoder and whether it is hardware, from stats or the status.
    pub encoder: Option<(String, bool)>,
    /// Glass-to-HLS p50 per window, oldest first.
    pub history: Vec<Option<f32>>,
    /// The last viewer report, while fresh.
    pub viewer: Option<Viewer>,
}

/// The whole state.
#[derive(Debug)]
pub struct Hub {
    settings: Settings,
    overrides: HashMap<StreamKey, String>,
    devices: BTreeMap<String, Device>,
    streams: BTreeMap<StreamKey, StreamState>,
    outstanding: HashMap<u64, (String, i64)>,
    next_nonce: u64,
    counters: Counters,
    /// Which advertised URLs may be read (`None`: any, for tests of the rules).
    allow: Option<std::sync::Arc<crate::allow::AllowList>>,
    /// Viewer reports: their rate limits (tokens, last refill), those
    /// waiting for the next tick, and the counts.
    viewer_limits: HashMap<(String, StreamKey), (u32, i64)>,
    viewer_pending: Vec<Viewer>,
    viewer_counters: ViewerCounters,
}

impl Hub {
    /// The dashboard's latency colour bands, ms.
    pub fn bands_ms(&self) -> [f64; 3] {
        self.settings.bands_ms
    }

    /// `overrides`: where to read a stream instead of its advertised URL.
    pub fn new(settings: Settings, overrides: HashMap<StreamKey, String>) -> Hub {
        Hub {
            settings,
            overrides,
            devices: BTreeMap::new(),
            streams: BTreeMap::new(),
            outstanding: HashMap::new(),
            next_nonce: nonce_seed(),
            counters: Counters::default(),
            allow: None,
            viewer_limits: HashMap::new(),
            viewer_pending: Vec::new(),
            viewer_counters: ViewerCounters::default(),
        }
    }

    /// Reads only advertised URLs that `allow` permits (overrides from the
    /// config were checked when it was loaded).
    pub fn set_allow(&mut self, allow: std::sync::Arc<crate::allow::AllowList>) {
        self.allow = Some(allow);
    }

    /// The allow-list in use, if one was set.
    pub fn allow(&self) -> Option<std::sync::Arc<crate::allow::AllowList>> {
        self.allow.clone()
    }

    /// Where a known stream is read (its override or permitted advertised
    /// URL), for the dashboard's HLS proxy.
    pub fn stream_url(&self, device: &str, stream: &str) -> Option<String> {
        let st = self.streams.get(&(device.to_owned(), stream.to_owned()))?;
        st.receiving
            .clone()
            .or_else(|| st.advertised.clone())
            .filter(|u| !u.is_empty())
    }

    /// Whether the hub knows `device`/`stream`.
    pub fn knows(&self, device: &str, stream: &str) -> bool {
        self.streams
            .contains_key(&(device.to_owned(), stream.to_owned()))
    }

    /// Adds a viewer report's bucket counts to the stream's viewer-latency
    /// histogram (for `/metrics`).
    pub fn observe_viewer(&mut self, key: &StreamKey, counts: &[u64], sum_ms: f64) {
        if let Some(st) = self.streams.get_mut(key) {
            st.viewer_hist.add_counts(counts, sum_ms);
        }
    }

    /// A viewer report from the dashboard (already validated as input):
    /// kept for the next tick unless the stream is unknown or `viewer`
    /// reports too often for it.
    pub fn on_viewer(&mut self, v: Viewer, now_us: i64) -> Result<(), ViewerRefused> {
        let key = (v.device.clone(), v.stream.clone());
        if !self.streams.contains_key(&key) {
            self.viewer_counters.unknown_stream += 1;
            return Err(ViewerRefused::UnknownStream);
        }
        if self.viewer_limits.len() >= MAX_VIEWER_LIMITS {
            self.viewer_limits
                .retain(|_, (_, at)| now_us.saturating_sub(*at) < 60_000_000);
        }
        let limit_key = (v.viewer.clone(), key.clone());
        if !self.viewer_limits.contains_key(&limit_key)
            && self.viewer_limits.len() >= MAX_VIEWER_LIMITS
        {
            self.viewer_counters.too_many_viewers += 1;
            return Err(ViewerRefused::TooManyViewers);
        }
        let (tokens, at) = self
            .viewer_limits
            .entry(limit_key)
            .or_insert((VIEWER_BURST, now_us));
        let earned = now_us.saturating_sub(*at) / VIEWER_INTERVAL_US;
        if earned > 0 {
            *tokens = (*tokens)
                .saturating_add(u32::try_from(earned).unwrap_or(u32::MAX))
                .min(VIEWER_BURST);
            *at = at.saturating_add(earned.saturating_mul(VIEWER_INTERVAL_US));
        }
        if *tokens == 0 {
            self.viewer_counters.too_frequent += 1;
            return Err(ViewerRefused::TooFrequent);
        }
        *tokens -= 1;
        self.viewer_counters.accepted += 1;
        if let Some(st) = self.streams.get_mut(&key) {
            st.viewer = Some((now_us, v.clone()));
        }
        if self.viewer_pending.len() < MAX_VIEWER_PENDING {
            self.viewer_pending.push(v);
        }
        Ok(())
    }

    /// A viewer report refused before it reached the hub (malformed or too large).
    pub fn viewer_refused_input(&mut self, too_large: bool) {
        if too_large {
            self.viewer_counters.too_large += 1;
        } else {
            self.viewer_counters.malformed += 1;
        }
    }

    /// The viewer reports since the last call (for MQTT and storage).
    pub fn take_viewers(&mut self) -> Vec<Viewer> {
        std::mem::take(&mut self.viewer_pending)
    }

    pub fn viewer_counters(&self) -> ViewerCounters {
        self.viewer_counters
    }

    /// Every stream as the fleet dashboard shows it, at `now_us`.
    pub fn fleet(&self, now_us: i64) -> Vec<FleetRow> {
        self.streams
            .iter()
            .map(|(key, st)| self.fleet_row(key, st, now_us))
            .collect()
    }

    /// One stream as the dashboard shows it, if the hub knows it.
    pub fn fleet_one(&self, device: &str, stream: &str, now_us: i64) -> Option<FleetRow> {
        let key = (device.to_owned(), stream.to_owned());
        self.streams
            .get(&key)
            .map(|st| self.fleet_row(&key, st, now_us))
    }

    fn fleet_row(&self, key: &StreamKey, st: &StreamState, now_us: i64) -> FleetRow {
        let device = self.devices.get(&key.0);
        let info = device
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.streams.iter().find(|i| i.id == key.1));
        let encoder = st
            .last_stats
            .as_ref()
            .map(|s| (s.encoder.clone(), s.hardware))
            .or_else(|| info.map(|i| (i.encoder.clone(), i.hardware)))
            .filter(|(e, _)| !e.is_empty());
        FleetRow {
            device: key.0.clone(),
            stream: key.1.clone(),
            online: device.is_some_and(|d| d.online),
            since_us: device.filter(|d| d.status.is_some()).map(|d| d.since_us),
            last: st.last.clone(),
            stats: st.last_stats.clone(),
            encoder,
            history: st.history.iter().copied().collect(),
            viewer: st
                .viewer
                .as_ref()
                .filter(|(at, _)| now_us.saturating_sub(*at) < VIEWER_FRESH_US)
                .map(|(_, v)| v.clone()),
        }
    }

    pub fn counters(&self) -> Counters {
        Counters {
            duplicate_records: self.streams.values().map(|s| s.records.duplicates()).sum(),
            ..self.counters
        }
    }

    /// A malformed MQTT payload was skipped.
    pub fn malformed(&mut self) {
        self.counters.malformed_messages += 1;
    }

    fn device(&mut self, id: &str, now_us: i64) -> &mut Device {
        let s = self.settings;
        self.devices.entry(id.to_owned()).or_insert_with(|| Device {
            online: false,
            status: None,
            status_at_us: now_us,
            since_us: now_us,
            clock: ClockEstimator::new(s.clock_window_us, s.max_rtt_us),
            next_ping_us: now_us,
        })
    }

    fn stream(&mut self, key: &StreamKey, now_us: i64) -> &mut StreamState {
        let s = self.settings;
        self.streams
            .entry(key.clone())
            .or_insert_with(|| StreamState::new(&s, now_us))
    }

    /// What the hub knows of a device: online, and the time of its last status.
    pub fn device_state(&self, device: &str) -> Option<(bool, i64)> {
        self.devices
            .get(device)
            .map(|d| (d.online, d.status.as_ref().map_or(0, |s| s.ts_us)))
    }

    /// A device's status (birth, goodbye or Last Will): starts and stops receivers.
    pub fn on_status(&mut self, status: Status, now_us: i64) -> Vec<Action> {
        let device_id = status.device.clone();
        let online = status.online;
        let listed: Vec<(String, String)> = if online {
            status
                .streams
                .iter()
                .map(|s| (s.id.clone(), s.hls_url.clone()))
                .collect()
        } else {
            Vec::new()
        };
        {
            let d = self.device(&device_id, now_us);
            if online && !d.online {
                d.next_ping_us = now_us;
            }
            if online != d.online || d.status.is_none() {
                d.since_us = now_us;
            }
            d.online = online;
            d.status = Some(status);
            d.status_at_us = now_us;
        }
        let mut actions = Vec::new();
        for (stream_id, advertised) in &listed {
            let key = (device_id.clone(), stream_id.clone());
            let url = match self.overrides.get(&key) {
                Some(o) => o.clone(),
                None => match self.allow.as_ref().map(|a| a.check(advertised)) {
                    Some(Err(e)) if !advertised.is_empty() => {
                        self.counters.refused_hls_urls += 1;
                        let n = self.counters.refused_hls_urls;
                        if n <= 10 || n.is_power_of_two() {
                            tracing::warn!(
                                device = device_id,
                                stream = stream_id,
                                "advertised hls_url refused ({n} so far): {e}"
                            );
                        }
                        String::new()
                    }
                    _ => advertised.clone(),
                },
            };
            let st = self.stream(&key, now_us);
            st.advertised = Some(url.clone());
            if url.is_empty() {
                // Nothing (or nothing permitted) to read.
                if st.receiving.take().is_some() {
                    st.reading = None;
                    actions.push(Action::StopReceiver { key: key.clone() });
                }
                continue;
            }
            if st.receiving.as_deref() != Some(url.as_str()) {
                if st.receiving.is_some() {
                    actions.push(Action::StopReceiver { key: key.clone() });
                }
                st.receiving = Some(url.clone());
                actions.push(Action::StartReceiver { key, url });
            }
        }
        for (key, st) in self.streams.iter_mut() {
            let gone = key.0 == device_id && !listed.iter().any(|(id, _)| *id == key.1);
            if gone {
                st.advertised = None;
                if st.receiving.take().is_some() {
                    st.reading = None;
                    actions.push(Action::StopReceiver { key: key.clone() });
                }
            }
        }
        actions
    }

    /// A batch of frame records.
    pub fn on_frames(&mut self, device: &str, stream: &str, batch: FramesBatch, now_us: i64) {
        let key = (device.to_owned(), stream.to_owned());
        let offset = self.offset(device, now_us);
        let st = self.stream(&key, now_us);
        for record in batch.frames {
            st.records.insert(record, now_us);
        }
        // Frames that arrived over HLS before their records.
        let waiting = std::mem::take(&mut st.pending);
        for p in waiting {
            if !match_frame(st, p.frame, p.available_us, offset) {
                st.pending.push_back(p);
            }
        }
    }

    /// A publisher's stats.
    pub fn on_stats(&mut self, device: &str, stream: &str, stats: &Stats, now_us: i64) {
        let key = (device.to_owned(), stream.to_owned());
        let st = self.stream(&key, now_us);
        st.publisher_fps = Some(stats.publisher_fps);
        st.stats = Some(stats.clone());
        st.last_stats = Some(stats.clone());
    }

    /// A clock pong, received at `now_us`.
    pub fn on_pong(&mut self, device: &str, pong: &ClockPong, now_us: i64) {
        match self.outstanding.remove(&pong.nonce) {
            Some((d, t1)) if d == device && t1 == pong.t1_us => {
                let dev = self.device(device, now_us);
                match dev.clock.add(pong.t1_us, pong.t2_us, pong.t3_us, now_us) {
                    Ok(s) => tracing::debug!(
                        device,
                        offset_us = s.offset_us,
                        rtt_us = s.rtt_us,
                        "clock sample"
                    ),
                    Err(e) => {
                        self.counters.rejected_clock_samples += 1;
                        tracing::debug!(device, "clock sample rejected: {e}");
                    }
                }
            }
            _ => self.counters.stale_pongs += 1,
        }
    }

    /// The clock pings due at `now_us`, one per online device every interval.
    pub fn pings_due(&mut self, now_us: i64) -> Vec<(String, ClockPing)> {
        let interval = self.settings.ping_interval_us;
        self.outstanding
            .retain(|_, (_, t1)| now_us.saturating_sub(*t1) < 30_000_000);
        let mut out = Vec::new();
        for (id, d) in self.devices.iter_mut() {
            if d.online && now_us >= d.next_ping_us {
                d.next_ping_us = now_us.saturating_add(interval);
                self.next_nonce = self.next_nonce.wrapping_add(1);
                out.push((id.clone(), ClockPing::new(self.next_nonce, now_us)));
            }
        }
        for (id, ping) in &out {
            if self.outstanding.len() < MAX_OUTSTANDING {
                self.outstanding
                    .insert(ping.nonce, (id.clone(), ping.t1_us));
            }
        }
        out
    }

    fn offset(&mut self, device: &str, now_us: i64) -> Option<ClockOffset> {
        self.devices
            .get_mut(device)
            .and_then(|d| d.clock.estimate(now_us))
    }

    /// What a receiver reported.
    pub fn on_receiver(&mut self, key: &StreamKey, event: Event, now_us: i64) {
        let offset = self.offset(&key.0, now_us);
        let wait = self.settings.wait_us;
        let Some(st) = self.streams.get_mut(key) else {
            return;
        };
        if st.receiving.is_none() {
            // A report from a receiver that was just stopped.
            return;
        }
        match event {
            Event::Reading(r) => {
                tracing::info!(
                    device = key.0,
                    stream = key.1,
                    mode = r.mode,
                    container = r.container,
                    url = r.url,
                    "reading"
                );
                st.reading = Some(r);
                st.last_hls_seq = None;
            }
            Event::Error(_) => {
                st.errors += 1;
                st.errors_total += 1;
            }
            Event::Frames {
                frames,
                available_us,
                playlist_requests,
                media_requests,
            } => {
                st.playlist_requests += playlist_requests;
                st.media_requests += media_requests;
                st.seen_total += frames.len() as u64;
                for frame in frames {
                    st.seen += 1;
                    if let Some(stamp) = frame.stamp {
                        note_seq(st, stamp.seq, now_us);
                    }
                    if !match_frame(st, frame, available_us, offset) {
                        if st.pending.len() >= MAX_PENDING {
                            st.pending.pop_front();
                            st.unmatched += 1;
                        }
                        st.pending.push_back(Pending {
                            frame,
                            available_us,
                            deadline_us: now_us.saturating_add(wait),
                        });
                    }
                }
            }
        }
    }

    /// Closes every stream's window at `now_us` and returns the summaries
    /// of the streams being read.
    pub fn tick(&mut self, now_us: i64) -> Vec<Latency> {
        self.close(now_us).into_iter().map(|c| c.latency).collect()
    }

    /// Like [`Hub::tick`], with each window's matched frames and the agent's
    /// stats received during it, for storage.
    pub fn close(&mut self, now_us: i64) -> Vec<Closed> {
        let wait = self.settings.wait_us;
        let keys: Vec<StreamKey> = self.streams.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            let offset = self.offset(&key.0, now_us);
            let Some(st) = self.streams.get_mut(&key) else {
                continue;
            };
            settle(&key, st, now_us, wait);
            st.records.evict(now_us);
            if st.receiving.is_none() {
                st.window_start_us = now_us;
                continue;
            }
            let seconds = (now_us - st.window_start_us) as f64 / 1e6;
            let (s, frames) = st.window.close(seconds);
            let reader_uncertainty_us = st.reading.as_ref().map_or(0, |r| r.uncertainty_us);
            let some = |v: f64| (s.frames > 0).then_some(v);
            let latency = Latency {
                schema: SCHEMA_LATENCY.to_owned(),
                device: key.0.clone(),
                stream: key.1.clone(),
                window_start_us: st.window_start_us,
                window_end_us: now_us,
                frames: s.frames,
                matched_by_fingerprint: st.matched_by_fingerprint,
                unmatched: st.unmatched,
                p50_ms: some(s.p50_ms),
                p95_ms: some(s.p95_ms),
                p99_ms: some(s.p99_ms),
                max_ms: some(s.max_ms),
                receiver_fps: if seconds > 0.0 {
                    st.seen as f64 / seconds
                } else {
                    0.0
                },
                publisher_fps: st.publisher_fps,
                dropped: st.dropped,
                breakdown: Breakdown {
                    encode_ms: some(s.mean_encode_ms),
                    publish_ms: some(s.mean_publish_ms),
                    origin_delivery_ms: some(s.mean_origin_delivery_ms),
                },
                clock: ClockEstimate {
                    synced: offset.is_some(),
                    offset_ms: offset.map(|o| o.offset_us as f64 / 1000.0),
                    uncertainty_ms: (offset.map_or(0, |o| o.uncertainty_us) + reader_uncertainty_us)
                        as f64
                        / 1000.0,
                },
                hls: HlsReading {
                    mode: st.reading.as_ref().map_or("", |r| r.mode).to_owned(),
                    container: st.reading.as_ref().map_or("", |r| r.container).to_owned(),
                    url: st
                        .reading
                        .as_ref()
                        .map(|r| r.url.clone())
                        .or_else(|| st.receiving.clone())
                        .unwrap_or_default(),
                    errors: st.errors,
                    playlist_requests: st.playlist_requests,
                    media_requests: st.media_requests,
                },
            };
            st.window_start_us = now_us;
            st.seen = 0;
            st.matched_by_fingerprint = 0;
            st.unmatched = 0;
            st.dropped = 0;
            st.errors = 0;
            st.playlist_requests = 0;
            st.media_requests = 0;
            if st.history.len() >= HISTORY {
                st.history.pop_front();
            }
            st.history.push_back(latency.p50_ms.map(|v| v as f32));
            st.last = Some(latency.clone());
            out.push(Closed {
                latency,
                frames,
                stats: st.stats.take(),
            });
        }
        out
    }

    /// The streams, for the API.
    pub fn streams(&self) -> Vec<StreamView> {
        self.streams
            .iter()
            .map(|(key, st)| StreamView {
                device: key.0.clone(),
                stream: key.1.clone(),
                online: self.devices.get(&key.0).is_some_and(|d| d.online),
                hls_url: st.receiving.clone().or_else(|| st.advertised.clone()),
                reading: st.reading.as_ref().map(|r| r.url.clone()),
                records: st.records.len(),
                frames_seen_total: st.seen_total,
                hls_errors_total: st.errors_total,
                last: st.last.clone(),
            })
            .collect()
    }

    /// What Prometheus is shown, at `now_us`.
    pub fn metrics(&self, now_us: i64) -> crate::metrics::Snapshot {
        use crate::metrics::{DeviceMetrics, Snapshot, StreamMetrics};
        let counters = self.counters();
        Snapshot {
            streams: self
                .streams
                .iter()
                .map(|(key, st)| StreamMetrics {
                    device: key.0.clone(),
                    stream: key.1.clone(),
                    glass_to_hls: st.g2h_hist.clone(),
                    viewer: st.viewer_hist.clone(),
                    frames_seen_total: st.seen_total,
                    dropped_total: st.dropped_total,
                    hls_errors_total: st.errors_total,
                    reading: st.reading.is_some(),
                    receiver_fps: st.last.as_ref().map(|l| l.receiver_fps),
                    publisher_fps: st.publisher_fps,
                    clock_synced: st.last.as_ref().is_some_and(|l| l.clock.synced),
                    clock_uncertainty_ms: st.last.as_ref().map(|l| l.clock.uncertainty_ms),
                })
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|(id, d)| DeviceMetrics {
                    device: id.clone(),
                    online: d.online,
                    last_status_age_s: d
                        .status
                        .as_ref()
                        .map(|_| (now_us - d.status_at_us) as f64 / 1e6),
                })
                .collect(),
            malformed_messages: counters.malformed_messages,
            refused_hls_urls: counters.refused_hls_urls,
        }
    }

    /// The statuses last received, for the API.
    pub fn devices(&self) -> Vec<DeviceView> {
        self.devices
            .iter()
            .map(|(id, d)| DeviceView {
                device: id.clone(),
                online: d.online,
                status: d.status.clone(),
            })
            .collect()
    }
}

/// Notes a seq HLS delivered; skipped seqs are checked after the wait.
fn note_seq(st: &mut StreamState, seq: u64, now_us: i64) {
    if let Some(last) = st.last_hls_seq {
        if seq > last + 1 {
            // At most a minute of frames at 240 fps is tracked per jump.
            let missing = (seq - last - 1).min(14_400);
            st.gaps
                .extend((last + 1..last + 1 + missing).map(|s| (now_us, s)));
        }
    }
    if st
        .last_hls_seq
        .is_none_or(|last| seq > last || seq + 1_000 < last)
    {
        st.last_hls_seq = Some(seq);
    }
}

/// Matches one frame and adds its figures to the window; false when no
/// record matches (yet).
fn match_frame(
    st: &mut StreamState,
    frame: SeenFrame,
    available_us: i64,
    offset: Option<ClockOffset>,
) -> bool {
    let reader_us = st.reading.as_ref().map_or(0, |r| r.uncertainty_us);
    let stamp = frame.stamp.map(|s| (s.seq, s.capture_us));
    let Some((stored, by)) = st.records.take_match(stamp, frame.fingerprint) else {
        return false;
    };
    let fl = latency(&stored, by, available_us, offset, reader_us);
    let (session, seq) = (stored.session, stored.seq);
    if frame.stamp.is_none() {
        // Without a stamp the seq comes from the record.
        note_seq(st, seq, available_us);
    }
    if st.first_seen.is_none_or(|(s, _)| s != session) {
        st.first_seen = Some((session, seq));
    }
    if by == MatchedBy::Fingerprint {
        st.matched_by_fingerprint += 1;
    }
    st.g2h_hist.observe_ms(fl.glass_to_hls_ms);
    st.window.add(fl);
    true
}

/// Counts what the wait has settled: frames no record matched, records no
/// frame matched, seq gaps no record explains.
fn settle(key: &StreamKey, st: &mut StreamState, now_us: i64, wait_us: i64) {
    while st.pending.front().is_some_and(|p| p.deadline_us <= now_us) {
        st.pending.pop_front();
        st.unmatched += 1;
    }
    let cutoff = now_us.saturating_sub(wait_us);
    let first = st.first_seen;
    let (mut unseen, mut gaps) = (0u64, 0u64);
    let mut seqs: Option<(u64, u64)> = None;
    let mut note = |seq: u64| {
        seqs = Some(seqs.map_or((seq, seq), |(lo, hi)| (lo.min(seq), hi.max(seq))));
    };
    for r in st.records.settle(cutoff) {
        let looked_for = first.is_some_and(|(session, seq)| r.session == session && r.seq > seq);
        if !r.seen() && looked_for {
            unseen += 1;
            note(r.seq);
        }
    }
    while st.gaps.front().is_some_and(|(at, _)| *at <= cutoff) {
        if let Some((_, seq)) = st.gaps.pop_front() {
            // A gap with a record is counted by the record; without one, here.
            if !st.records.has_seq(seq) {
                gaps += 1;
                note(seq);
            }
        }
    }
    let dropped = unseen + gaps;
    if let Some((lo, hi)) = seqs {
        // Rare and worth reading later: which frames, and which kind of loss
        // (a record HLS never delivered, or a seq HLS skipped with no record).
        // The first second of a loss at warn, the seconds it goes on at debug.
        macro_rules! log_drop {
            ($level:ident) => {
                tracing::$level!(
                    device = key.0,
                    stream = key.1,
                    first_seq = lo,
                    last_seq = hi,
                    reported_not_seen = unseen,
                    seq_gaps = gaps,
                    "frames dropped"
                )
            };
        }
        if st.dropping {
            log_drop!(debug);
        } else {
            log_drop!(warn);
        }
    }
    st.dropping = dropped > 0;
    st.dropped += dropped;
    st.dropped_total += dropped;
}

fn nonce_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 1;
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glasswatch_common::fingerprint;
    use glasswatch_common::messages::{FrameRecord, StreamInfo};
    use glasswatch_common::sei::FrameStamp;

    fn status(device: &str, online: bool, streams: &[(&str, &str)]) -> Status {
        let mut s = Status::offline(device, 0, "test");
        s.online = online;
        s.streams = streams
            .iter()
            .map(|(id, url)| StreamInfo {
                id: (*id).into(),
                hls_url: (*url).into(),
                ..StreamInfo::default()
            })
            .collect();
        s
    }

    #[test]
    fn advertised_urls_outside_the_allow_list_are_refused_and_counted() {
        let mut hub = Hub::new(Settings::default(), HashMap::new());
        let allow = crate::allow::AllowList::new(None, vec![]).unwrap();
        hub.set_allow(std::sync::Arc::new(allow));
        let a = hub.on_status(
            status(
                "d",
                true,
                &[
                    ("ok", "http://10.0.0.5:8888/x/index.m3u8"),
                    ("meta", "http://169.254.169.254/latest/"),
                ],
            ),
            1,
        );
        assert_eq!(
            a,
            vec![Action::StartReceiver {
                key: ("d".into(), "ok".into()),
                url: "http://10.0.0.5:8888/x/index.m3u8".into()
            }]
        );
        assert_eq!(hub.counters().refused_hls_urls, 1);
        // A stream that moves to a refused URL stops being read.
        let a = hub.on_status(status("d", true, &[("ok", "http://8.8.8.8/x")]), 2);
        assert_eq!(
            a,
            vec![Action::StopReceiver {
                key: ("d".into(), "ok".into())
            }]
        );
        assert_eq!(hub.counters().refused_hls_urls, 2);
    }

    fn record(seq: u64, capture_us: i64) -> FrameRecord {
        FrameRecord {
            session: "00112233aabbccdd".into(),
            seq,
            capture_us,
            encoded_us: capture_us + 4_000,
            sent_us: capture_us + 5_000,
            bytes: 100,
            keyframe: false,
            fingerprint: fingerprint::to_hex(1_000 + seq),
        }
    }

    fn seen(seq: u64, capture_us: i64, stamped: bool) -> SeenFrame {
        SeenFrame {
            stamp: stamped.then_some(FrameStamp {
                keyframe: false,
                stream_tag: 0,
                seq,
                capture_us,
            }),
            fingerprint: Some(1_000 + seq),
            keyframe: false,
        }
    }

    fn frames_event(frames: Vec<SeenFrame>, available_us: i64) -> Event {
        Event::Frames {
            frames,
            available_us,
            playlist_requests: 1,
            media_requests: 1,
        }
    }

    fn key() -> StreamKey {
        ("pi".into(), "cam0".into())
    }

    #[test]
    fn status_starts_and_stops_receivers_with_overrides() {
        let mut overrides = HashMap::new();
        overrides.insert(
            ("pi".to_owned(), "cam1".to_owned()),
            "http://o/x".to_owned(),
        );
        let mut hub = Hub::new(Settings::default(), overrides);
        let a = hub.on_status(
            status(
                "pi",
                true,
                &[("cam0", "http://a/cam0"), ("cam1", "http://a/cam1")],
            ),
            0,
        );
        assert_eq!(
            a,
            vec![
                Action::StartReceiver {
                    key: key(),
                    url: "http://a/cam0".into()
                },
                Action::StartReceiver {
                    key: ("pi".into(), "cam1".into()),
                    url: "http://o/x".into()
                },
            ]
        );
        // The same status again (agent restart): nothing to do.
        assert!(hub
            .on_status(
                status(
                    "pi",
                    true,
                    &[("cam0", "http://a/cam0"), ("cam1", "http://a/cam1")]
                ),
                1
            )
            .is_empty());
        // Last Will: everything stops.
        let a = hub.on_status(status("pi", false, &[]), 2);
        assert_eq!(a.len(), 2);
        assert!(a.iter().all(|a| matches!(a, Action::StopReceiver { .. })));
        assert!(hub.pings_due(3).is_empty(), "no ping to an offline device");
    }

    #[test]
    fn frames_match_by_stamp_or_fingerprint_in_any_order_and_summaries_count() {
        let mut hub = Hub::new(Settings::default(), HashMap::new());
        hub.on_status(status("pi", true, &[("cam0", "http://a/cam0")]), 0);
        let t0 = 1_000_000_000i64;
        // Record first, then the frame (stamped).
        hub.on_frames(
            "pi",
            "cam0",
            FramesBatch::new("pi", "cam0", vec![record(0, t0)]),
            t0 + 60_000,
        );
        hub.on_receiver(
            &key(),
            frames_event(vec![seen(0, t0, true)], t0 + 45_000),
            t0 + 45_000,
        );
        // Frame first (SEI stripped), then its record.
        hub.on_receiver(
            &key(),
            frames_event(vec![seen(1, t0 + 33_333, false)], t0 + 80_000),
            t0 + 80_000,
        );
        hub.on_frames(
            "pi",
            "cam0",
            FramesBatch::new(
                "pi",
                "cam0",
                vec![record(1, t0 + 33_333), record(1, t0 + 33_333)],
            ),
            t0 + 120_000,
        );
        // An unknown frame.
        hub.on_receiver(
            &key(),
            frames_event(vec![seen(99, t0 + 5, true)], t0 + 90_000),
            t0 + 90_000,
        );
        let s = hub.tick(t0 + 1_000_000);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!((s.frames, s.matched_by_fingerprint, s.unmatched), (2, 1, 0));
        assert_eq!(s.p50_ms, Some(45.0));
        assert!((s.max_ms.unwrap() - 46.667).abs() < 1e-9);
        assert!(!s.clock.synced);
        // The unknown frame counts as unmatched once the wait is over.
        let s = hub.tick(t0 + 5_000_000);
        assert_eq!((s[0].frames, s[0].unmatched), (0, 1));
        assert_eq!(s[0].p50_ms, None);
        assert_eq!(hub.counters().duplicate_records, 1);
    }

    #[test]
    fn dropped_counts_gaps_and_unseen_records_once() {
        let mut hub = Hub::new(Settings::default(), HashMap::new());
        hub.on_status(status("pi", true, &[("cam0", "http://a/cam0")]), 0);
        let t0 = 1_000_000_000i64;
        // Records 0..10 except 7 (the agent dropped its record); HLS delivers
        // 0..10 except 4 (lost with its record) and 7 (lost without one).
        let records = (0..10u64)
            .filter(|s| *s != 7)
            .map(|s| record(s, t0 + s as i64 * 33_333))
            .collect();
        hub.on_frames("pi", "cam0", FramesBatch::new("pi", "cam0", records), t0);
        let frames = (0..10u64)
            .filter(|s| *s != 4 && *s != 7)
            .map(|s| seen(s, t0 + s as i64 * 33_333, true))
            .collect();
        hub.on_receiver(&key(), frames_event(frames, t0 + 400_000), t0 + 400_000);
        hub.tick(t0 + 1_000_000);
        let s = hub.tick(t0 + 4_000_000);
        assert_eq!(s[0].dropped, 2, "{s:?}");
    }

    #[test]
    fn clock_offset_is_applied_from_pongs() {
        let mut hub = Hub::new(Settings::default(), HashMap::new());
        hub.on_status(status("pi", true, &[("cam0", "http://a/cam0")]), 0);
        let t0 = 1_000_000_000i64;
        let pings = hub.pings_due(t0);
        assert_eq!(pings.len(), 1);
        assert!(hub.pings_due(t0 + 1).is_empty(), "one ping per interval");
        let ping = &pings[0].1;
        // Device clock 2 s ahead, 1 ms each way.
        let pong = ClockPong::answer(ping, t0 + 2_001_000, t0 + 2_001_100);
        hub.on_pong("pi", &pong, t0 + 2_100);
        // A replayed pong is ignored.
        hub.on_pong("pi", &pong, t0 + 3_000);
        assert_eq!(hub.counters().stale_pongs, 1);
        let capture_dev = t0 + 2_000_000 + 500_000;
        hub.on_frames(
            "pi",
            "cam0",
            FramesBatch::new("pi", "cam0", vec![record(0, capture_dev)]),
            t0 + 500_100,
        );
        hub.on_receiver(
            &key(),
            frames_event(vec![seen(0, capture_dev, true)], t0 + 540_000),
            t0 + 540_000,
        );
        let s = hub.tick(t0 + 1_000_000);
        assert!(s[0].clock.synced);
        assert!((s[0].p50_ms.unwrap() - 40.0).abs() <= 1.0, "{s:?}");
        assert!(s[0].clock.uncertainty_ms <= 1.0);
    }
}
