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
