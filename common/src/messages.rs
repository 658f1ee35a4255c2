//! MQTT payloads the parts exchange, as Rust types with their JSON form (serde) and JSON Schema
//! (schemars).
//!
//! The topics and the payload on each are fixed by DESIGN.md ("MQTT topics"); `docs/mqtt.md`
//! describes them for people writing their own subscribers, and `docs/schemas/` holds the JSON
//! Schemas [`json_schemas`] generates (a test keeps them current).
//!
//! Every payload is a JSON object with a `"schema"` field naming its type and version
//! ([`SCHEMA_STATUS`] and so on). Times are integer µs since the Unix epoch, UTC (`*_us`, i64);
//! durations are float milliseconds (`*_ms`). Readers ignore unknown fields, so adding a field is
//! not a breaking change; a breaking change bumps the `v1` topic level and the schema names.
//!
//! [`decode`] checks the size limit and the `"schema"` field before deserializing, so that a
//! payload on the wrong topic gives a clear error; it checks nothing else (no id syntax, no
//! ranges: the JSON Schemas state those for validators). [`encode`] guarantees that what it
//! produces [`decode`]s. The latency payload the collector publishes is not defined here yet.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `"schema"` of a [`Status`].
pub const SCHEMA_STATUS: &str = "glasswatch.status/1";
/// `"schema"` of a [`FramesBatch`].
pub const SCHEMA_FRAMES: &str = "glasswatch.frames/1";
/// `"schema"` of a [`Stats`].
pub const SCHEMA_STATS: &str = "glasswatch.stats/1";
/// `"schema"` of a [`ClockPing`].
pub const SCHEMA_CLOCK_PING: &str = "glasswatch.clock_ping/1";
/// `"schema"` of a [`ClockPong`].
pub const SCHEMA_CLOCK_PONG: &str = "glasswatch.clock_pong/1";
/// Schema id of [`Latency`].
pub const SCHEMA_LATENCY: &str = "glasswatch.latency/1";
/// Schema id of [`Viewer`].
pub const SCHEMA_VIEWER: &str = "glasswatch.viewer/1";

/// [`Status::reason`] of the offline status an agent publishes when it shuts down cleanly.
pub const REASON_SHUTDOWN: &str = "shutdown";
/// [`Status::reason`] of the offline status an agent registers as its Last Will, which the broker
/// publishes when the connection is lost.
pub const REASON_LAST_WILL: &str = "connection lost (last will)";

/// Largest payload [`decode`] accepts (1 MiB). Real payloads are a few kB at most.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

/// Longest rendering of a wrong `"schema"` value kept in [`MessageError::WrongSchema`].
const MAX_FOUND_LEN: usize = 64;

const ID_PATTERN: &str = "^[a-z0-9_-]{1,64}$";
const HEX16_PATTERN: &str = "^[0-9a-f]{16}$";

/// A payload type: its `"schema"` value and its short name.
pub trait Message: Serialize + DeserializeOwned + JsonSchema {
    /// The value of the payload's `"schema"` field, e.g. `"glasswatch.status/1"`.
    const SCHEMA: &'static str;
    /// A short name for errors and file names, e.g. `"status"`.
    const NAME: &'static str;
}

/// Why a payload could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    #[error("{name} payload is {len} bytes, more than the {max} allowed")]
    TooLarge {
        name: &'static str,
        len: usize,
        max: usize,
    },
    /// The payload is not a JSON object (it does not start with `{`, or is not JSON at all).
    #[error("{name} payload is not a JSON object: {source}")]
    NotAnObject {
        name: &'static str,
        source: serde_json::Error,
    },
    /// The payload has no `"schema"` field, or it is `null`.
    #[error("{name} payload has no \"schema\" field, expected \"{expected}\"")]
    MissingSchema {
        name: &'static str,
        expected: &'static str,
    },
    /// The payload's `"schema"` is not the expected one: it is another payload type, another
    /// version, or not a string. `found` is its JSON text, cut to 64 characters.
    #[error("{name} payload has \"schema\": {found}, expected \"{expected}\"")]
    WrongSchema {
        name: &'static str,
        expected: &'static str,
        found: String,
    },
    /// The payload has the right `"schema"` but does not deserialize (a missing field, a wrong
    /// type); the source names the field and position.
    #[error("invalid {name} payload ({expected}): {source}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        source: serde_json::Error,
    },
    /// [`encode`] produced a payload [`decode`] rejects (the inner error says why): most likely
    /// a `"schema"` field left wrong, or a NaN or infinite float, which JSON cannot carry and
    /// serde_json writes as `null`.
    #[error(
        "{name} payload does not decode once encoded (NaN and infinity become null): {source}"
    )]
    Unencodable {
        name: &'static str,
        source: Box<MessageError>,
    },
}

/// Decodes a payload of type `T`: rejects payloads over [`MAX_PAYLOAD_LEN`], then checks that the
/// `"schema"` field is `T::SCHEMA`, then deserializes (ignoring unknown fields).
pub fn decode<T: Message>(payload: &[u8]) -> Result<T, MessageError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(MessageError::TooLarge {
            name: T::NAME,
            len: payload.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    // Serde would also accept a JSON array for a struct (fields by position); a payload is an
    // object, so say so before anything else.
    let first = payload
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        let source =
            match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload) {
                Err(e) => e,
                // Unreachable: a JSON object starts with '{'. Report it as a type error anyway.
                Ok(_) => <serde_json::Error as serde::de::Error>::custom("expected a JSON object"),
            };
        return Err(MessageError::NotAnObject {
            name: T::NAME,
            source,
        });
    }

    /// Reads only `"schema"`, skipping everything else.
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        schema: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(payload).map_err(|source| match source.classify() {
            serde_json::error::Category::Data => MessageError::WrongSchema {
                name: T::NAME,
                expected: T::SCHEMA,
                found: format!("unreadable ({source})"),
            },
            _ => MessageError::NotAnObject {
                name: T::NAME,
                source,
            },
        })?;
    match probe.schema {
        None => {
            return Err(MessageError::MissingSchema {
                name: T::NAME,
                expected: T::SCHEMA,
            })
        }
        Some(serde_json::Value::String(s)) if s == T::SCHEMA => {}
        Some(other) => {
            return Err(MessageError::WrongSchema {
                name: T::NAME,
                expected: T::SCHEMA,
                found: cut(other.to_string(), MAX_FOUND_LEN),
            })
        }
    }
    serde_json::from_slice(payload).map_err(|source| MessageError::Invalid {
        name: T::NAME,
        expected: T::SCHEMA,
        source,
    })
}

/// Encodes a payload as compact JSON, and checks that it [`decode`]s: this catches a `"schema"`
/// field left wrong and non-finite floats (which JSON cannot carry; serde_json writes `null`).
pub fn encode<T: Message>(msg: &T) -> Result<Vec<u8>, MessageError> {
    let unencodable = |source| MessageError::Unencodable {
        name: T::NAME,
        source: Box::new(source),
    };
    let bytes = serde_json::to_vec(msg).map_err(|source| {
        unencodable(MessageError::Invalid {
            name: T::NAME,
            expected: T::SCHEMA,
            source,
        })
    })?;
    decode::<T>(&bytes).map_err(unencodable)?;
    Ok(bytes)
}

/// `s` cut to at most `max` characters, with `…` when cut.
fn cut(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// One frame as the agent produced it. `seq` and `capture_us` are exactly those in the frame's
/// SEI stamp; all times are on the device clock, in µs since the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FrameRecord {
    /// Random id of the pipeline start this frame belongs to (16 lowercase hex chars); `seq`
    /// restarts at 0 with each session.
    #[schemars(pattern(HEX16_PATTERN))]
    pub session: String,
    /// Frame counter of the stream within the session, from 0.
    pub seq: u64,
    /// When the frame was captured, µs since the Unix epoch (device clock).
    pub capture_us: i64,
    /// When the encoder emitted the access unit, µs since the Unix epoch (device clock).
    pub encoded_us: i64,
    /// When the access unit was handed to the RTSP sink, µs since the Unix epoch (device clock).
    pub sent_us: i64,
    /// Size of the access unit as sent, stamp included, in bytes.
    pub bytes: u64,
    /// Whether the access unit is an IDR.
    pub keyframe: bool,
    /// XXH3-64 (seed 0) of the access unit's VCL NAL unit payloads, 16 lowercase hex chars.
    #[schemars(pattern(HEX16_PATTERN))]
    pub fingerprint: String,
}

/// A device's presence and description, on `{root}/v1/devices/{device}/status`, QoS 1, retained.
/// The agent publishes it with online true when it connects (the birth message) and with online
/// false when it shuts down; it registers an online false status as its Last Will, which the
/// broker publishes when the connection is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// Always "glasswatch.status/1".
    #[schemars(extend("const" = SCHEMA_STATUS))]
    pub schema: String,
    /// Device id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub device: String,
    /// Whether the agent is connected and running.
    pub online: bool,
    /// When this status was produced, µs since the Unix epoch (device clock). For the Last Will,
    /// when the agent started (the will is registered in advance).
    pub ts_us: i64,
    /// Version of glasswatch-agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Version of the GStreamer library the agent runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gstreamer_version: Option<String>,
    /// Host name of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// CPU architecture of the device, e.g. "aarch64" or "x86_64".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The streams the agent publishes; empty when offline.
    #[serde(default)]
    pub streams: Vec<StreamInfo>,
    /// The device's kernel clock state, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockHealth>,
    /// Why the device is offline: "shutdown" (clean exit) or "connection lost (last will)"
    /// (published by the broker). Absent when online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Status {
    /// An offline status (no description, no streams), for a clean shutdown
    /// ([`REASON_SHUTDOWN`]) or the Last Will ([`REASON_LAST_WILL`]).
    pub fn offline(device: &str, ts_us: i64, reason: &str) -> Status {
        Status {
            schema: SCHEMA_STATUS.to_owned(),
            device: device.to_owned(),
            online: false,
            ts_us,
            agent_version: None,
            gstreamer_version: None,
            host: None,
            arch: None,
            streams: Vec::new(),
            clock: None,
            reason: Some(reason.to_owned()),
        }
    }
}

impl Message for Status {
    const SCHEMA: &'static str = SCHEMA_STATUS;
    const NAME: &'static str = "status";
}

/// One stream a device publishes, as described in its status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamInfo {
    /// Stream id, as in the stream topics.
    #[schemars(pattern(ID_PATTERN))]
    pub id: String,
    /// RTSP URL the agent publishes the stream to.
    pub rtsp_url: String,
    /// LL-HLS playlist URL viewers and the collector read the stream from.
    pub hls_url: String,
    /// Encoded width in pixels.
    pub width: u32,
    /// Encoded height in pixels.
    pub height: u32,
    /// Nominal frame rate, frames per second.
    pub fps: u32,
    /// GStreamer element that encodes the stream, e.g. "x264enc" or "v4l2h264enc".
    pub encoder: String,
    /// Whether the encoder is a hardware one.
    pub hardware: bool,
}

/// The device's kernel clock state, as the agent last read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClockHealth {
    /// Whether the kernel considers the clock synchronized (e.g. by NTP or PTP).
    pub synchronized: bool,
    /// The kernel's estimated error of the clock, µs, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_error_us: Option<i64>,
    /// The kernel's maximum error of the clock, µs, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_us: Option<i64>,
    /// Where the figures come from, e.g. "adjtimex".
    pub source: String,
}

/// A batch of frame records of one stream, on
/// `{root}/v1/devices/{device}/streams/{stream}/frames`, QoS 1, not retained. A batch covers at
/// most 200 ms of frames, in the order they were produced. QoS 1 may deliver a batch twice:
/// deduplicate records by session and seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FramesBatch {
    /// Always "glasswatch.frames/1".
    #[schemars(extend("const" = SCHEMA_FRAMES))]
    pub schema: String,
    /// Device id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub device: String,
    /// Stream id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub stream: String,
    /// The frame records, oldest first.
    pub frames: Vec<FrameRecord>,
}

impl FramesBatch {
    /// A batch of `frames` of `device`/`stream`.
    pub fn new(device: &str, stream: &str, frames: Vec<FrameRecord>) -> FramesBatch {
        FramesBatch {
            schema: SCHEMA_FRAMES.to_owned(),
            device: device.to_owned(),
            stream: stream.to_owned(),
            frames,
        }
    }
}

impl Message for FramesBatch {
    const SCHEMA: &'static str = SCHEMA_FRAMES;
    const NAME: &'static str = "frames";
}

/// The agent's figures for one stream over the last interval, on
/// `{root}/v1/devices/{device}/streams/{stream}/stats`, QoS 0, every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// Always "glasswatch.stats/1".
    #[schemars(extend("const" = SCHEMA_STATS))]
    pub schema: String,
    /// Device id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub device: String,
    /// Stream id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub stream: String,
    /// End of the interval, µs since the Unix epoch (device clock).
    pub ts_us: i64,
    /// Length of the interval these figures cover, ms.
    #[schemars(range(min = 0.0))]
    pub interval_ms: f64,
    /// Frames per second handed to the RTSP sink over the interval.
    #[schemars(range(min = 0.0))]
    pub publisher_fps: f64,
    /// Encoded bitrate over the interval, kbit/s (1000 bit/s).
    #[schemars(range(min = 0.0))]
    pub bitrate_kbps: f64,
    /// Frames lost before encoding (capture or conversion), cumulative since the agent started.
    pub frames_dropped_capture: u64,
    /// Frames lost in or after the encoder, cumulative since the agent started.
    pub frames_dropped_encode: u64,
    /// GStreamer element that encodes the stream.
    pub encoder: String,
    /// Whether the encoder is a hardware one.
    pub hardware: bool,
    /// CPU time of the agent process over the interval, % of one core (may exceed 100).
    #[schemars(range(min = 0.0))]
    pub cpu_percent: f64,
    /// Resident memory of the agent process, bytes.
    pub rss_bytes: u64,
    /// SoC temperature, °C, where the device reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    /// Frame records waiting to be published to the broker.
    pub report_backlog: u64,
    /// Frame records dropped because the queue to the broker was full, cumulative since the agent
    /// started.
    pub records_dropped: u64,
}

impl Message for Stats {
    const SCHEMA: &'static str = SCHEMA_STATS;
    const NAME: &'static str = "stats";
}

/// A clock probe from the collector, on `{root}/v1/devices/{device}/clock/ping`, QoS 0. The agent
/// answers each on `clock/pong` (`glasswatch.clock_pong/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClockPing {
    /// Always "glasswatch.clock_ping/1".
    #[schemars(extend("const" = SCHEMA_CLOCK_PING))]
    pub schema: String,
    /// Number the answer echoes, to pair it with this probe.
    pub nonce: u64,
    /// When the collector sent the probe, µs since the Unix epoch (collector clock).
    pub t1_us: i64,
}

impl ClockPing {
    /// A probe sent at `t1_us`.
    pub fn new(nonce: u64, t1_us: i64) -> ClockPing {
        ClockPing {
            schema: SCHEMA_CLOCK_PING.to_owned(),
            nonce,
            t1_us,
        }
    }
}

impl Message for ClockPing {
    const SCHEMA: &'static str = SCHEMA_CLOCK_PING;
    const NAME: &'static str = "clock_ping";
}

/// The agent's answer to a clock probe, on `{root}/v1/devices/{device}/clock/pong`, QoS 0.
/// With t4, when the collector received it, the device clock's offset is
/// ((t2 − t1) + (t3 − t4)) / 2 and the round trip (t4 − t1) − (t3 − t2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClockPong {
    /// Always "glasswatch.clock_pong/1".
    #[schemars(extend("const" = SCHEMA_CLOCK_PONG))]
    pub schema: String,
    /// The probe's nonce.
    pub nonce: u64,
    /// The probe's t1_us, echoed (collector clock).
    pub t1_us: i64,
    /// When the agent received the probe, µs since the Unix epoch (device clock).
    pub t2_us: i64,
    /// When the agent sent this answer, µs since the Unix epoch (device clock).
    pub t3_us: i64,
}

impl ClockPong {
    /// The answer to `ping`, received at `t2_us` and sent at `t3_us`.
    pub fn answer(ping: &ClockPing, t2_us: i64, t3_us: i64) -> ClockPong {
        ClockPong {
            schema: SCHEMA_CLOCK_PONG.to_owned(),
            nonce: ping.nonce,
            t1_us: ping.t1_us,
            t2_us,
            t3_us,
        }
    }
}

impl Message for ClockPong {
    const SCHEMA: &'static str = SCHEMA_CLOCK_PONG;
    const NAME: &'static str = "clock_pong";
}

/// The collector's measurement of one stream over one window (normally one second), on
/// `{root}/v1/devices/{device}/streams/{stream}/latency`, QoS 0, retained. Wall-clock times are on
/// the collector's clock; the cross-clock figures (glass-to-HLS, origin+delivery) are corrected by
/// the measured clock offset of the device and carry `uncertainty_ms`. Figures are null when the
/// window saw no matched frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    /// Always "glasswatch.latency/1".
    #[schemars(extend("const" = SCHEMA_LATENCY))]
    pub schema: String,
    /// Device id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub device: String,
    /// Stream id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub stream: String,
    /// Start of the window, µs since the Unix epoch (collector clock).
    pub window_start_us: i64,
    /// End of the window, µs since the Unix epoch (collector clock).
    pub window_end_us: i64,
    /// Frames seen over HLS and matched to their records in the window.
    pub frames: u64,
    /// Of those, frames matched by fingerprint because their SEI stamp was missing.
    pub matched_by_fingerprint: u64,
    /// Frames seen over HLS that no record matched within the wait (their stamp or fingerprint
    /// was unknown).
    pub unmatched: u64,
    /// Glass-to-HLS (available − capture) median, ms.
    pub p50_ms: Option<f64>,
    /// Glass-to-HLS 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// Glass-to-HLS 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Glass-to-HLS maximum, ms.
    pub max_ms: Option<f64>,
    /// Frames seen over HLS per second in the window.
    #[schemars(range(min = 0.0))]
    pub receiver_fps: f64,
    /// Frames per second the agent reported sending (its latest stats), if any arrived.
    pub publisher_fps: Option<f64>,
    /// Frames lost between the agent and the reader in the window: seq gaps in what HLS delivered
    /// plus frames reported over MQTT that never reached HLS, each frame counted once.
    pub dropped: u64,
    /// Mean time per stage of the matched frames.
    pub breakdown: Breakdown,
    /// The device clock as the collector measured it.
    pub clock: ClockEstimate,
    /// How the stream was read.
    pub hls: HlsReading,
}

/// Mean per-stage times of a window's frames, ms. Their sum is the mean glass-to-HLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Breakdown {
    /// encoded − capture (device clock).
    pub encode_ms: Option<f64>,
    /// sent − encoded (device clock).
    pub publish_ms: Option<f64>,
    /// available − sent (across clocks, offset-corrected): the origin's muxing and the delivery.
    pub origin_delivery_ms: Option<f64>,
}

/// The clock offset in use for a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClockEstimate {
    /// Whether an offset was measured and applied; without one, device times are taken as they
    /// are and the uncertainty does not cover the clocks' difference.
    pub synced: bool,
    /// Device clock minus collector clock, ms.
    pub offset_ms: Option<f64>,
    /// ± of every cross-clock figure, ms: half the round trip of the clock sample in use plus
    /// what the reader adds (half the reload interval for classic HLS).
    #[schemars(range(min = 0.0))]
    pub uncertainty_ms: f64,
}

/// How the collector read the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HlsReading {
    /// "ll-hls" (blocking playlist reload, parts) or "hls" (polled playlist, segments).
    pub mode: String,
    /// "fmp4" or "mpegts".
    pub container: String,
    /// The media playlist URL being read (session query included).
    pub url: String,
    /// Malformed playlists, parts or segments skipped, and failed requests, in the window.
    pub errors: u64,
    /// Playlist requests made in the window (blocking reloads for LL-HLS).
    pub playlist_requests: u64,
    /// Part, segment and init requests made in the window.
    pub media_requests: u64,
}

impl Message for Latency {
    const SCHEMA: &'static str = SCHEMA_LATENCY;
    const NAME: &'static str = "latency";
}

/// What one dashboard viewer saw of one stream over one window (normally one second), on
/// `{root}/v1/devices/{device}/streams/{stream}/viewer`, QoS 0, not retained, published by the
/// collector for every report a browser's player sends it. Viewer latency is shown − capture:
/// `shown` is when the browser presented the frame (`requestVideoFrameCallback`, or `timeupdate`
/// where that is missing), moved onto the collector's clock by the browser's measured offset;
/// `capture` is the SEI stamp's, moved by the device's offset. Figures are null when the window
/// showed no stamped frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Viewer {
    /// Always "glasswatch.viewer/1".
    #[schemars(extend("const" = SCHEMA_VIEWER))]
    pub schema: String,
    /// Device id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub device: String,
    /// Stream id, as in the topic.
    #[schemars(pattern(ID_PATTERN))]
    pub stream: String,
    /// Who watched: the logged-in user (or "anonymous") and a random id of the page.
    pub viewer: String,
    /// Start of the window, µs since the Unix epoch (collector clock).
    pub window_start_us: i64,
    /// End of the window, µs since the Unix epoch (collector clock).
    pub window_end_us: i64,
    /// Stamped frames the player presented in the window.
    pub frames: u64,
    /// Viewer latency (shown − capture) median, ms.
    pub p50_ms: Option<f64>,
    /// Viewer latency 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// Viewer latency maximum, ms.
    pub max_ms: Option<f64>,
    /// Media the player held ahead of the playhead at the end of the window, ms.
    pub buffer_ms: Option<f64>,
    /// Times playback stalled (waiting for data) in the window.
    pub stalls: u64,
    /// ± of the figures, ms: half the round trip of the browser's clock sample, the device's
    /// clock uncertainty and, with `timeupdate`, the spacing of its events.
    #[schemars(range(min = 0.0))]
    pub uncertainty_ms: f64,
    /// How frames were seen shown: "rvfc" (`requestVideoFrameCallback`) or "timeupdate".
    pub method: String,
}

impl Message for Viewer {
    const SCHEMA: &'static str = SCHEMA_VIEWER;
    const NAME: &'static str = "viewer";
}

/// The JSON Schemas (draft 2020-12) of every payload and of a frame record, with the file name
/// each has in `docs/schemas/`. Descriptions are the types' doc comments, unwrapped.
pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn schema<T: JsonSchema>() -> serde_json::Value {
        let mut value = schemars::schema_for!(T).into();
        unwrap_descriptions(&mut value);
        value
    }
    vec![
        ("status.schema.json", schema::<Status>()),
        ("frames.schema.json", schema::<FramesBatch>()),
        ("stats.schema.json", schema::<Stats>()),
        ("clock_ping.schema.json", schema::<ClockPing>()),
        ("clock_pong.schema.json", schema::<ClockPong>()),
        ("latency.schema.json", schema::<Latency>()),
        ("viewer.schema.json", schema::<Viewer>()),
        ("frame_record.schema.json", schema::<FrameRecord>()),
    ]
}

/// Joins the lines of each paragraph of every `"description"` in `value`: doc comments are
/// wrapped at 100 columns, which means nothing in a JSON Schema.
fn unwrap_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(s) if key == "description" => {
                        *s = s
                            .split("\n\n")
                            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> FrameRecord {
        let capture_us = 1_795_500_025_165_523 + seq as i64 * 33_333;
        FrameRecord {
            session: "9f3c2a7be1d04c58".into(),
            seq,
            capture_us,
            encoded_us: capture_us + 6_812,
            sent_us: capture_us + 7_305,
            bytes: 3670,
            keyframe: seq % 15 == 0,
            fingerprint: "692adb679ee977a5".into(),
        }
    }

    #[test]
    fn frame_record_json_round_trip_ignores_unknown_fields() {
        let r = record(7);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<FrameRecord>(&json).unwrap(), r);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["future_field"] = serde_json::json!(1);
        assert_eq!(serde_json::from_value::<FrameRecord>(v).unwrap(), r);
    }

    #[test]
    fn decode_checks_the_schema_first() {
        let batch = FramesBatch::new("pi-kitchen", "cam0", vec![record(0), record(1)]);
        let bytes = encode(&batch).unwrap();
        assert_eq!(decode::<FramesBatch>(&bytes).unwrap(), batch);

        let e = decode::<Status>(&bytes).unwrap_err();
        assert!(matches!(e, MessageError::WrongSchema { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "status payload has \"schema\": \"glasswatch.frames/1\", expected \"glasswatch.status/1\""
        );

        let e = decode::<Status>(br#"{"device":"pi","online":true}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status payload has no \"schema\" field, expected \"glasswatch.status/1\""
        );
        let e = decode::<Status>(br#"{"schema":null}"#).unwrap_err();
        assert!(matches!(e, MessageError::MissingSchema { .. }), "{e:?}");
        let e = decode::<Status>(br#"{"schema":7}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "status payload has \"schema\": 7, expected \"glasswatch.status/1\""
        );
        let long = format!(r#"{{"schema":"{}"}}"#, "x".repeat(500));
        match decode::<Status>(long.as_bytes()).unwrap_err() {
            MessageError::WrongSchema { found, .. } => assert_eq!(found.chars().count(), 65),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn decode_rejects_non_objects_and_bad_payloads() {
        for bad in [
            &b""[..],
            b"   ",
            b"[\"glasswatch.status/1\"]",
            b"\"glasswatch.status/1\"",
            b"null",
            b"{",
            b"{\"schema\":\"glasswatch.status/1\"",
            b"\xff",
        ] {
            let e = decode::<Status>(bad).unwrap_err();
            assert!(
                matches!(e, MessageError::NotAnObject { .. }),
                "{bad:?}: {e:?}"
            );
        }
        let e = decode::<Status>(br#"{"schema":"glasswatch.status/1","device":"pi"}"#).unwrap_err();
        assert!(matches!(e, MessageError::Invalid { .. }), "{e:?}");
        assert!(e.to_string().contains("missing field `online`"), "{e}");
        let e =
            decode::<ClockPing>(br#"{"schema":"glasswatch.clock_ping/1","nonce":-1,"t1_us":0}"#)
                .unwrap_err();
        assert!(matches!(e, MessageError::Invalid { .. }), "{e:?}");
    }

    #[test]
    fn decode_limits_the_size() {
        let mut big =
            br#"{"schema":"glasswatch.clock_ping/1","nonce":1,"t1_us":2,"pad":""#.to_vec();
        big.resize(MAX_PAYLOAD_LEN - 2, b'a');
        big.extend_from_slice(b"\"}");
        assert_eq!(big.len(), MAX_PAYLOAD_LEN);
        assert_eq!(decode::<ClockPing>(&big).unwrap(), ClockPing::new(1, 2));
        big.insert(1, b' ');
        let e = decode::<ClockPing>(&big).unwrap_err();
        assert!(matches!(e, MessageError::TooLarge { len, .. } if len == MAX_PAYLOAD_LEN + 1));
    }

    #[test]
    fn encode_refuses_what_would_not_decode() {
        let mut ping = ClockPing::new(1, 2);
        ping.schema = "glasswatch.clock_ping/2".into();
        let e = encode(&ping).unwrap_err();
        assert!(
            matches!(&e, MessageError::Unencodable { source, .. }
                if matches!(**source, MessageError::WrongSchema { .. })),
            "{e:?}"
        );

        let mut stats = Stats {
            schema: SCHEMA_STATS.into(),
            device: "pi-kitchen".into(),
            stream: "cam0".into(),
            ts_us: 1_795_500_026_000_000,
            interval_ms: 0.0,
            publisher_fps: f64::NAN,
            bitrate_kbps: 0.0,
            frames_dropped_capture: 0,
            frames_dropped_encode: 0,
            encoder: "x264enc".into(),
            hardware: false,
            cpu_percent: 0.0,
            rss_bytes: 0,
            temperature_c: None,
            report_backlog: 0,
            records_dropped: 0,
        };
        let e = encode(&stats).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("stats payload does not decode once encoded")
                && text.contains("invalid type: null, expected f64 at line 1"),
            "{text}"
        );
        stats.publisher_fps = 30.0;
        assert!(encode(&stats).is_ok());
    }

    #[test]
    fn offline_status_and_pong_helpers() {
        let s = Status::offline("pi-kitchen", 1_795_500_000_000_000, REASON_LAST_WILL);
        let json: serde_json::Value = serde_json::from_slice(&encode(&s).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schema": "glasswatch.status/1",
                "device": "pi-kitchen",
                "online": false,
                "ts_us": 1_795_500_000_000_000_i64,
                "streams": [],
                "reason": "connection lost (last will)",
            })
        );
        let ping = ClockPing::new(42, 10);
        let pong = ClockPong::answer(&ping, 20, 21);
        assert_eq!(
            (pong.nonce, pong.t1_us, pong.t2_us, pong.t3_us),
            (42, 10, 20, 21)
        );
        assert_eq!(pong.schema, SCHEMA_CLOCK_PONG);
    }
}
