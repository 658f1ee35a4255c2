//! The rows Glasswatch keeps, built from what the collector measured and
//! received, with the checks that keep bad figures out of the store.
//!
//! A figure that is NaN, infinite or absurd (outside what any camera link
//! can produce) is stored as NULL and counted; a summary whose identity or
//! window is absurd is refused with a counted reason. Nothing here panics
//! on what came from outside.

use std::collections::BTreeMap;

use glasswatch_common::messages::{Latency, Stats, Status};
use glasswatch_common::topics::valid_id as is_valid_id;

use super::histogram::Histogram;
use crate::hub::Closed;
use crate::matcher::{FrameLatency, MatchedBy};

/// Latency figures beyond ±1 day are absurd (a clock off by years, a bug).
const MAX_MS: f64 = 86_400_000.0;
/// Window starts before 2000-01-01 or after 2200-01-01 are absurd.
const MIN_TIME_US: i64 = 946_684_800_000_000;
const MAX_TIME_US: i64 = 7_258_118_400_000_000;

/// Everything the main loop hands to storage at one tick.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub devices: Vec<DeviceRow>,
    pub streams: Vec<StreamRow>,
    pub events: Vec<EventRow>,
    pub seconds: Vec<SecondRow>,
    pub frames: Vec<FrameRow>,
    pub viewers: Vec<ViewerRow>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.streams.is_empty()
            && self.events.is_empty()
            && self.seconds.is_empty()
            && self.frames.is_empty()
            && self.viewers.is_empty()
    }

    /// Rows that are neither seconds nor frames.
    pub fn other_rows(&self) -> usize {
        self.devices.len() + self.streams.len() + self.events.len() + self.viewers.len()
    }
}

/// A device's last status.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub device: String,
    pub online: bool,
    /// When `online` last changed (collector clock); the upsert keeps the
    /// stored value while `online` stays the same.
    pub since_us: i64,
    pub updated_us: i64,
    pub host: Option<String>,
    pub arch: Option<String>,
    pub agent_version: Option<String>,
    pub gstreamer_version: Option<String>,
    pub clock_synchronized: Option<bool>,
    pub clock_est_error_us: Option<i64>,
    /// The status as JSON.
    pub status: String,
}

/// A stream's last description.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRow {
    pub device: String,
    pub stream: String,
    pub encoder: String,
    pub hardware: bool,
    pub width: i64,
    pub height: i64,
    pub fps: i64,
    pub rtsp_url: String,
    pub hls_url: String,
    pub updated_us: i64,
}

/// An online/offline transition or a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub device: String,
    pub at_us: i64,
    pub kind: &'static str,
    pub detail: String,
}

/// One stream's second: the published summary and the agent's stats.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondRow {
    pub device: String,
    pub stream: String,
    pub start_us: i64,
    pub end_us: i64,
    pub frames: i64,
    pub matched_by_fingerprint: i64,
    pub unmatched: i64,
    pub dropped: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub receiver_fps: Option<f64>,
    pub publisher_fps: Option<f64>,
    pub encode_ms: Option<f64>,
    pub publish_ms: Option<f64>,
    pub origin_delivery_ms: Option<f64>,
    pub clock_synced: bool,
    pub clock_offset_ms: Option<f64>,
    pub clock_uncertainty_ms: Option<f64>,
    pub hls_mode: String,
    pub hls_container: String,
    pub hls_errors: i64,
    pub playlist_requests: i64,
    pub media_requests: i64,
    pub bitrate_kbps: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<i64>,
    pub temperature_c: Option<f64>,
    pub report_backlog: Option<i64>,
    pub frames_dropped_capture: Option<i64>,
    pub frames_dropped_encode: Option<i64>,
    pub records_dropped: Option<i64>,
    /// The window's glass-to-HLS histogram ([`Histogram::to_bytes`]).
    pub hist: Option<Vec<u8>>,
}

/// One matched frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRow {
    pub device: String,
    pub stream: String,
    pub session: i64,
    pub seq: i64,
    pub capture_us: i64,
    pub available_us: i64,
    pub glass_to_hls_ms: f64,
    pub encode_ms: f64,
    pub publish_ms: f64,
    pub origin_delivery_ms: f64,
    pub uncertainty_ms: f64,
    pub by_fingerprint: bool,
}

/// One viewer's second of one stream (the dashboard's players report them).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerRow {
    pub device: String,
    pub stream: String,
    pub viewer: String,
    pub start_us: i64,
    pub frames: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub buffer_ms: Option<f64>,
    pub stalls: i64,
    pub uncertainty_ms: Option<f64>,
}

/// A minute or an hour of one stream, or a second read back as the input
/// of a roll-up.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub device: String,
    pub stream: String,
    pub start_us: i64,
    /// How many seconds it covers (1 for a second).
    pub seconds: i64,
    pub frames: i64,
    pub dropped: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub receiver_fps: Option<f64>,
    pub publisher_fps: Option<f64>,
    pub encode_ms: Option<f64>,
    pub publish_ms: Option<f64>,
    pub origin_delivery_ms: Option<f64>,
    pub hist: Option<Vec<u8>>,
}

/// What the checks refused or emptied, to be counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Figures made NULL.
    pub nulled: u64,
    /// Rows refused, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Checked {
    fn reject(&mut self, why: &'static str) {
        *self.rejected.entry(why).or_insert(0) += 1;
    }

    /// A figure fit to store: finite and within `±limit`, else NULL (counted).
    fn figure(&mut self, v: Option<f64>, limit: f64) -> Option<f64> {
        match v {
            Some(x) if x.is_finite() && x.abs() <= limit => Some(x),
            Some(_) => {
                self.nulled += 1;
                None
            }
            None => None,
        }
    }

    fn ms(&mut self, v: Option<f64>) -> Option<f64> {
        self.figure(v, MAX_MS)
    }

    /// A count fit to store (u64 from the wire can exceed i64).
    fn count(&mut self, v: u64) -> i64 {
        match i64::try_from(v) {
            Ok(n) => n,
            Err(_) => {
                self.nulled += 1;
                i64::MAX
            }
        }
    }
}

fn time_ok(us: i64) -> bool {
    (MIN_TIME_US..=MAX_TIME_US).contains(&us)
}

/// The second row of a closed window, or why it is refused.
pub fn second_row(
    l: &Latency,
    stats: Option<&Stats>,
    hist: Option<&Histogram>,
    c: &mut Checked,
) -> Option<SecondRow> {
    if !is_valid_id(&l.device) || !is_valid_id(&l.stream) {
        c.reject("invalid device or stream id");
        return None;
    }
    if !time_ok(l.window_start_us) || l.window_end_us < l.window_start_us {
        c.reject("absurd window");
        return None;
    }
    let fps = |c: &mut Checked, v: Option<f64>| c.figure(v.filter(|f| *f >= 0.0), 10_000.0);
    let st = stats.filter(|s| s.device == l.device && s.stream == l.stream);
    let whole = |c: &mut Checked, v: u64| Some(c.count(v));
    Some(SecondRow {
        device: l.device.clone(),
        stream: l.stream.clone(),
        start_us: l.window_start_us,
        end_us: l.window_end_us,
        frames: c.count(l.frames),
        matched_by_fingerprint: c.count(l.matched_by_fingerprint),
        unmatched: c.count(l.unmatched),
        dropped: c.count(l.dropped),
        p50_ms: c.ms(l.p50_ms),
        p95_ms: c.ms(l.p95_ms),
        p99_ms: c.ms(l.p99_ms),
        max_ms: c.ms(l.max_ms),
        receiver_fps: fps(c, Some(l.receiver_fps)),
        publisher_fps: fps(c, l.publisher_fps),
        encode_ms: c.ms(l.breakdown.encode_ms),
        publish_ms: c.ms(l.breakdown.publish_ms),
        origin_delivery_ms: c.ms(l.breakdown.origin_delivery_ms),
        clock_synced: l.clock.synced,
        clock_offset_ms: c.figure(l.clock.offset_ms, 1e12),
        clock_uncertainty_ms: c.ms(Some(l.clock.uncertainty_ms)),
        hls_mode: l.hls.mode.chars().take(32).collect(),
        hls_container: l.hls.container.chars().take(32).collect(),
        hls_errors: c.count(l.hls.errors),
        playlist_requests: c.count(l.hls.playlist_requests),
        media_requests: c.count(l.hls.media_requests),
        bitrate_kbps: st.and_then(|s| c.figure(Some(s.bitrate_kbps).filter(|v| *v >= 0.0), 1e9)),
        cpu_percent: st.and_then(|s| c.figure(Some(s.cpu_percent).filter(|v| *v >= 0.0), 1e5)),
        rss_bytes: st.and_then(|s| whole(c, s.rss_bytes)),
        temperature_c: st.and_then(|s| c.figure(s.temperature_c, 1_000.0)),
        report_backlog: st.and_then(|s| whole(c, s.report_backlog)),
        frames_dropped_capture: st.and_then(|s| whole(c, s.frames_dropped_capture)),
        frames_dropped_encode: st.and_then(|s| whole(c, s.frames_dropped_encode)),
        records_dropped: st.and_then(|s| whole(c, s.records_dropped)),
        hist: hist.filter(|h| h.count() > 0).map(Histogram::to_bytes),
    })
}

/// A matched frame's row, or `None` when its figures are absurd (counted).
pub fn frame_row(
    device: &str,
    stream: &str,
    f: &FrameLatency,
    c: &mut Checked,
) -> Option<FrameRow> {
    let figures = [
        f.glass_to_hls_ms,
        f.encode_ms,
        f.publish_ms,
        f.origin_delivery_ms,
        f.uncertainty_ms,
    ];
    if figures.iter().any(|v| !v.is_finite() || v.abs() > MAX_MS) || !time_ok(f.capture_us) {
        c.reject("absurd frame");
        return None;
    }
    Some(FrameRow {
        device: device.to_owned(),
        stream: stream.to_owned(),
        session: super::session_to_db(f.session),
        seq: c.count(f.seq),
        capture_us: f.capture_us,
        available_us: f.available_us,
        glass_to_hls_ms: f.glass_to_hls_ms,
        encode_ms: f.encode_ms,
        publish_ms: f.publish_ms,
        origin_delivery_ms: f.origin_delivery_ms,
        uncertainty_ms: f.uncertainty_ms,
        by_fingerprint: f.matched_by == MatchedBy::Fingerprint,
    })
}

/// The rows of the windows closed at one tick: a second per stream, its
/// frames when `keep_frames`. The histogram is built from the same frames
/// as the published percentiles.
pub fn closed_rows(closed: &[Closed], keep_frames: bool, c: &mut Checked, batch: &mut Batch) {
    for w in closed {
        let mut hist = Histogram::new();
        for f in &w.frames {
            hist.add(f.glass_to_hls_ms);
        }
        let Some(row) = second_row(&w.latency, w.stats.as_ref(), Some(&hist), c) else {
            continue;
        };
        if keep_frames {
            batch.frames.extend(
                w.frames
                    .iter()
                    .filter_map(|f| frame_row(&row.device, &row.stream, f, c)),
            );
        }
        batch.seconds.push(row);
    }
}

/// What a status changes in storage: the device row, its streams, and an
/// event when `previous` (online, birth time) says the state changed.
///
/// An event's time is the agent's birth time for `online` and `restart`
/// (the same birth re-delivered as a retained message is the same event, so
/// it is stored once), and for `offline` the time the collector learnt it
/// unless the message was retained (then the goodbye's own time).
pub fn status_rows(
    status: &Status,
    previous: Option<(bool, i64)>,
    retained: bool,
    now_us: i64,
    batch: &mut Batch,
) {
    if !is_valid_id(&status.device) {
        return;
    }
    let kind = match (previous, status.online) {
        (None | Some((false, _)), true) => Some("online"),
        (Some((true, birth)), true) if birth != status.ts_us => Some("restart"),
        (None | Some((true, _)), false) => Some("offline"),
        _ => None,
    };
    let event_time = if status.online || retained {
        status.ts_us
    } else {
        now_us
    };
    if let Some(kind) = kind {
        if time_ok(event_time) {
            batch.events.push(EventRow {
                device: status.device.clone(),
                at_us: event_time,
                kind,
                detail: status.reason.clone().unwrap_or_default(),
            });
        }
    }
    batch.devices.push(DeviceRow {
        device: status.device.clone(),
        online: status.online,
        // The upsert keeps the stored value while `online` is unchanged.
        since_us: now_us,
        updated_us: now_us,
        host: status.host.clone(),
        arch: status.arch.clone(),
        agent_version: status.agent_version.clone(),
        gstreamer_version: status.gstreamer_version.clone(),
        clock_synchronized: status.clock.as_ref().map(|c| c.synchronized),
        clock_est_error_us: status.clock.as_ref().and_then(|c| c.est_error_us),
        status: serde_json::to_string(status).unwrap_or_default(),
    });
    for s in &status.streams {
        if !is_valid_id(&s.id) {
            continue;
        }
        batch.streams.push(StreamRow {
            device: status.device.clone(),
            stream: s.id.clone(),
            encoder: s.encoder.chars().take(64).collect(),
            hardware: s.hardware,
            width: i64::from(s.width),
            height: i64::from(s.height),
            fps: i64::from(s.fps),
            rtsp_url: s.rtsp_url.chars().take(2048).collect(),
            hls_url: s.hls_url.chars().take(2048).collect(),
            updated_us: now_us,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glasswatch_common::messages::{Breakdown, ClockEstimate, HlsReading, SCHEMA_LATENCY};

    pub(crate) fn latency(device: &str, start_us: i64) -> Latency {
        Latency {
            schema: SCHEMA_LATENCY.to_owned(),
            device: device.to_owned(),
            stream: "cam0".to_owned(),
            window_start_us: start_us,
            window_end_us: start_us + 1_000_000,
            frames: 30,
            matched_by_fingerprint: 0,
            unmatched: 0,
            p50_ms: Some(90.0),
            p95_ms: Some(120.0),
            p99_ms: Some(130.0),
            max_ms: Some(131.0),
            receiver_fps: 30.0,
            publisher_fps: Some(30.0),
            dropped: 0,
            breakdown: Breakdown {
                encode_ms: Some(3.0),
                publish_ms: Some(1.0),
                origin_delivery_ms: Some(80.0),
            },
            clock: ClockEstimate {
                synced: true,
                offset_ms: Some(0.5),
                uncertainty_ms: 0.3,
            },
            hls: HlsReading {
                mode: "ll-hls".into(),
                container: "fmp4".into(),
                url: String::new(),
                errors: 0,
                playlist_requests: 0,
                media_requests: 0,
            },
        }
    }

    const T: i64 = 1_800_000_000_000_000;

    #[test]
    fn bad_figures_become_null_and_absurd_rows_are_refused() {
        let mut c = Checked::default();
        let mut l = latency("dev", T);
        l.p50_ms = Some(f64::NAN);
        l.p95_ms = Some(f64::INFINITY);
        l.max_ms = Some(1e300);
        l.receiver_fps = -3.0;
        l.frames = u64::MAX;
        let row = second_row(&l, None, None, &mut c).unwrap();
        assert_eq!((row.p50_ms, row.p95_ms, row.max_ms), (None, None, None));
        assert_eq!(row.p99_ms, Some(130.0));
        assert_eq!(row.receiver_fps, None);
        assert_eq!(row.frames, i64::MAX);
        assert_eq!(c.nulled, 4);

        assert!(second_row(&latency("Bad Id", T), None, None, &mut c).is_none());
        assert!(second_row(&latency("dev", 5), None, None, &mut c).is_none());
        let mut back = latency("dev", T);
        back.window_end_us = T - 1;
        assert!(second_row(&back, None, None, &mut c).is_none());
        assert_eq!(c.rejected.get("invalid device or stream id"), Some(&1));
        assert_eq!(c.rejected.get("absurd window"), Some(&2));
    }

    #[test]
    fn events_follow_transitions_and_retained_births_repeat_the_same_key() {
        let mut s = Status::offline("dev", T, "connection lost (last will)");
        let mut b = Batch::default();
        status_rows(&s, Some((true, T - 5)), false, T + 9, &mut b);
        assert_eq!(b.events[0].kind, "offline");
        assert_eq!(b.events[0].at_us, T + 9);
        s.online = true;
        s.ts_us = T + 100;
        status_rows(&s, Some((false, T - 5)), false, T + 200, &mut b);
        assert_eq!((b.events[1].kind, b.events[1].at_us), ("online", T + 100));
        // The same birth again (a reconnect's retained copy): no event.
        status_rows(&s, Some((true, T + 100)), true, T + 300, &mut b);
        assert_eq!(b.events.len(), 2);
        // A new birth while online: the agent restarted.
        s.ts_us = T + 400;
        status_rows(&s, Some((true, T + 100)), false, T + 500, &mut b);
        assert_eq!(b.events[2].kind, "restart");
        assert_eq!(b.devices.len(), 4);
    }
}
