//! The collector's HTTP API responses (`docs/api.md`), shared by the
//! collector that serves them and any Rust client that reads them.

use serde::{Deserialize, Serialize};

use crate::messages::{Latency, Status};

/// `GET /api/v1/streams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamsResponse {
    pub streams: Vec<StreamView>,
    pub counters: Counters,
}

/// One stream the collector knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamView {
    pub device: String,
    pub stream: String,
    /// The device's last status said online.
    pub online: bool,
    /// Where the stream is read (advertised or overridden).
    pub hls_url: Option<String>,
    /// The media playlist being read, if any.
    pub reading: Option<String>,
    /// Frame records held for matching.
    pub records: usize,
    /// Frames seen over HLS since the stream was first seen.
    pub frames_seen_total: u64,
    /// Bad playlists, parts or segments and failed requests since then.
    pub hls_errors_total: u64,
    /// The last per-second summary.
    pub last: Option<Latency>,
}

/// What the collector skipped, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// MQTT payloads that did not decode or named another device or stream.
    pub malformed_messages: u64,
    /// Frame records received twice (QoS 1 redelivery).
    pub duplicate_records: u64,
    /// Clock pongs that answered no outstanding ping.
    pub stale_pongs: u64,
    /// Pongs with inconsistent timestamps or too long a round trip.
    pub rejected_clock_samples: u64,
    /// Advertised `hls_url`s outside `[hls] allow`, not read.
    #[serde(default)]
    pub refused_hls_urls: u64,
}

/// `GET /api/v1/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicesResponse {
    pub devices: Vec<DeviceView>,
}

/// One device with its last status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub device: String,
    pub online: bool,
    pub status: Option<Status>,
}

/// How finely a series is resolved, chosen from its range: seconds up to
/// 15 minutes, minutes up to 2 days, hours beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Seconds,
    Minutes,
    Hours,
}

impl Resolution {
    /// The resolution for a range of `range_us`.
    pub fn for_range(range_us: i64) -> Resolution {
        const MIN: i64 = 60_000_000;
        if range_us <= 15 * MIN {
            Resolution::Seconds
        } else if range_us <= 2 * 24 * 60 * MIN {
            Resolution::Minutes
        } else {
            Resolution::Hours
        }
    }

    /// One point's width, µs.
    pub fn step_us(self) -> i64 {
        match self {
            Resolution::Seconds => 1_000_000,
            Resolution::Minutes => 60_000_000,
            Resolution::Hours => 3_600_000_000,
        }
    }
}

/// One point of a stream's history: a second, or a roll-up of a minute or
/// an hour (percentiles from a merged histogram, fps and breakdown averaged
/// over the seconds, frames and dropped summed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Start of the second, minute or hour (µs since the epoch).
    pub t_us: i64,
    pub frames: u64,
    pub dropped: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub receiver_fps: Option<f64>,
    pub publisher_fps: Option<f64>,
    pub encode_ms: Option<f64>,
    pub publish_ms: Option<f64>,
    pub origin_delivery_ms: Option<f64>,
}

/// `GET /api/v1/streams/{device}/{stream}/series`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesResponse {
    pub device: String,
    pub stream: String,
    pub from_us: i64,
    pub to_us: i64,
    pub resolution: Resolution,
    pub points: Vec<SeriesPoint>,
}

/// One point of a stream's viewer-latency history: what the dashboard's
/// players reported (`viewer_seconds`), over a second, a minute or an hour.
/// A player reports each second's median and p95, not its frames, so a
/// wider point cannot merge them into exact percentiles: `p50_ms` is the
/// mean of the per-second medians weighted by their frames, `p95_ms` the
/// highest per-second p95 (the worst second), `buffer_ms` the mean player
/// buffer, `stalls` their sum, `uncertainty_ms` the widest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerPoint {
    /// Start of the second, minute or hour (µs since the epoch).
    pub t_us: i64,
    /// Distinct viewers (player pages) that reported in it.
    pub viewers: u64,
    pub frames: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub buffer_ms: Option<f64>,
    pub stalls: u64,
    pub uncertainty_ms: Option<f64>,
}

/// `GET /api/v1/streams/{device}/{stream}/viewer/series`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewerSeriesResponse {
    pub device: String,
    pub stream: String,
    pub from_us: i64,
    pub to_us: i64,
    pub resolution: Resolution,
    pub points: Vec<ViewerPoint>,
}

/// A device event: `online`, `offline` or `restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub device: String,
    pub at_us: i64,
    pub kind: String,
    /// The reason an agent gave (`shutdown`, the Last Will's text), if any.
    pub detail: String,
}

/// `GET /api/v1/devices/{device}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsResponse {
    pub device: String,
    pub events: Vec<DeviceEvent>,
}

/// One stored frame (`GET …/frames`): the raw data behind a percentile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFrame {
    /// The agent's pipeline session (16 hex digits).
    pub session: String,
    pub seq: u64,
    pub capture_us: i64,
    pub available_us: i64,
    pub glass_to_hls_ms: f64,
    pub encode_ms: f64,
    pub publish_ms: f64,
    pub origin_delivery_ms: f64,
    pub uncertainty_ms: f64,
    pub matched_by_fingerprint: bool,
}

/// `GET /api/v1/streams/{device}/{stream}/frames?format=json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FramesResponse {
    pub device: String,
    pub stream: String,
    pub from_us: i64,
    pub to_us: i64,
    /// More frames lie in the range than one answer holds: ask again from
    /// the last frame's `capture_us` + 1.
    pub truncated: bool,
    pub frames: Vec<StoredFrame>,
}

/// Storage's own counters (`GET /api/v1/storage`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// `sqlite`, `postgres` or `none`.
    pub kind: String,
    /// The schema version of the database.
    pub schema_version: Option<i64>,
    /// Seconds of data waiting to be written (including those being
    /// written now), and the most that may wait.
    pub queued_batches: u64,
    pub queue_capacity: u64,
    /// Rows written since start.
    pub written_seconds: u64,
    pub written_frames: u64,
    /// Rows lost because the queue overflowed while the database was away
    /// (the oldest go first).
    pub dropped_seconds: u64,
    pub dropped_frames: u64,
    pub dropped_other: u64,
    /// Summaries refused as absurd, by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Figures stored as NULL because they were NaN, infinite or absurd.
    pub nulled_values: u64,
    /// Failed writes (each retried).
    pub write_failures: u64,
    /// The database accepted the last write.
    pub writable: bool,
    pub last_error: Option<String>,
    /// Roll-ups written and rows deleted by retention since start.
    pub rollups_written: u64,
    pub retention_deleted: u64,
}
