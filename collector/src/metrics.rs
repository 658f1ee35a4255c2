//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4): per
//! stream, glass-to-HLS as a classic histogram (buckets 10 ms to 10 s),
//! fps, drops, clock uncertainty; per device, online and the age of its
//! last status; and the collector's own health (MQTT, HLS readers, storage).
//! Names start with `glasswatch_` and carry their unit.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use glasswatch_common::api::StorageStatus;

/// The upper bounds of the latency buckets, seconds.
pub const BUCKETS_S: [f64; 16] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// A cumulative classic histogram (counts per bucket, sum, count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromHist {
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: [u64; BUCKETS_S.len() + 1],
    sum_s: f64,
    count: u64,
}

impl PromHist {
    /// Adds one latency in milliseconds (NaN is ignored).
    pub fn observe_ms(&mut self, ms: f64) {
        if ms.is_nan() {
            return;
        }
        let s = ms / 1000.0;
        let i = BUCKETS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS_S.len());
        self.counts[i] += 1;
        if s.is_finite() {
            self.sum_s += s;
        }
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds counts per bucket (as [`BUCKETS_S`], then +Inf) and their sum
    /// in ms, as a viewer report carries them.
    pub fn add_counts(&mut self, counts: &[u64], sum_ms: f64) {
        for (c, add) in self.counts.iter_mut().zip(counts) {
            *c = c.saturating_add(*add);
        }
        let n: u64 = counts.iter().take(self.counts.len()).sum();
        self.count = self.count.saturating_add(n);
        if sum_ms.is_finite() {
            self.sum_s += sum_ms / 1000.0;
        }
    }

    /// `(le, cumulative count)` per bucket, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(String, u64)> {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            let le = BUCKETS_S
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
            out.push((le, acc));
        }
        out
    }
}

/// The collector's own health, counted where it happens.
#[derive(Debug, Default)]
pub struct Health {
    /// The embedded broker, when it runs.
    pub broker: std::sync::OnceLock<crate::broker::Broker>,
    pub mqtt_connected: AtomicBool,
    pub mqtt_received: AtomicU64,
    pub mqtt_published: AtomicU64,
    pub mqtt_publish_failures: AtomicU64,
}

/// One stream's figures for the exposition.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub device: String,
    pub stream: String,
    pub glass_to_hls: PromHist,
    /// Viewer latency from the dashboard's players (empty while nobody watches).
    pub viewer: PromHist,
    pub frames_seen_total: u64,
    pub dropped_total: u64,
    pub hls_errors_total: u64,
    pub reading: bool,
    pub receiver_fps: Option<f64>,
    pub publisher_fps: Option<f64>,
    pub clock_synced: bool,
    pub clock_uncertainty_ms: Option<f64>,
}

/// One device's figures.
#[derive(Debug, Clone)]
pub struct DeviceMetrics {
    pub device: String,
    pub online: bool,
    /// Seconds since its last status (collector clock).
    pub last_status_age_s: Option<f64>,
}

/// Everything the exposition shows, gathered under the hub's lock.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub streams: Vec<StreamMetrics>,
    pub devices: Vec<DeviceMetrics>,
    pub malformed_messages: u64,
    pub refused_hls_urls: u64,
}

/// A per-stream histogram family: name, help, and which histogram.
type Histogram = (&'static str, &'static str, fn(&StreamMetrics) -> &PromHist);

/// A per-stream family: name, type, help, and how to read its value.
type PerStream = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StreamMetrics) -> Option<f64>,
);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// Label values are ids (`[a-z0-9_-]`) here; escape anyway.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text exposition.
pub fn render(snap: &Snapshot, health: &Health, storage: &StorageStatus) -> String {
    let mut out = String::with_capacity(1024 + snap.streams.len() * 2048);
    let ids = |s: &StreamMetrics| {
        format!(
            "device=\"{}\",stream=\"{}\"",
            label(&s.device),
            label(&s.stream)
        )
    };
    let histograms: [Histogram; 2] = [
        (
            "glasswatch_glass_to_hls_seconds",
            "Capture to fully received over HLS, per frame, clock-corrected.",
            |s| &s.glass_to_hls,
        ),
        (
            "glasswatch_viewer_latency_seconds",
            "Capture to shown in a dashboard viewer's player, per frame (from viewer reports).",
            |s| &s.viewer,
        ),
    ];
    for (name, help, get) in histograms {
        family(&mut out, name, "histogram", help);
        for s in &snap.streams {
            let h = get(s);
            // Nobody watched this stream: no viewer series.
            if name == "glasswatch_viewer_latency_seconds" && h.count == 0 {
                continue;
            }
            let id = ids(s);
            for (le, c) in h.cumulative() {
                let _ = writeln!(out, "{name}_bucket{{{id},le=\"{le}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_sum{{{id}}} {}", num(h.sum_s));
            let _ = writeln!(out, "{name}_count{{{id}}} {}", h.count);
        }
    }
    let gauges: [PerStream; 7] = [
        (
            "glasswatch_receiver_fps",
            "gauge",
            "Frames seen over HLS per second, last window.",
            |s| s.receiver_fps,
        ),
        (
            "glasswatch_publisher_fps",
            "gauge",
            "Frames the agent published per second, last stats.",
            |s| s.publisher_fps,
        ),
        (
            "glasswatch_clock_synced",
            "gauge",
            "1 when the device's clock offset is measured.",
            |s| Some(f64::from(u8::from(s.clock_synced))),
        ),
        (
            "glasswatch_clock_uncertainty_seconds",
            "gauge",
            "The clock offset's uncertainty (plus the reader's), last window.",
            |s| s.clock_uncertainty_ms.map(|v| v / 1000.0),
        ),
        (
            "glasswatch_hls_reading",
            "gauge",
            "1 while an HLS reader reads the stream.",
            |s| Some(f64::from(u8::from(s.reading))),
        ),
        (
            "glasswatch_frames_seen_total",
            "counter",
            "Frames found over HLS.",
            |s| Some(s.frames_seen_total as f64),
        ),
        (
            "glasswatch_frames_dropped_total",
            "counter",
            "Frames reported over MQTT that never reached HLS, or seq gaps.",
            |s| Some(s.dropped_total as f64),
        ),
    ];
    for (name, kind, help, get) in gauges {
        family(&mut out, name, kind, help);
        for s in &snap.streams {
            if let Some(v) = get(s) {
                let _ = writeln!(out, "{name}{{{}}} {}", ids(s), num(v));
            }
        }
    }
    family(
        &mut out,
        "glasswatch_hls_errors_total",
        "counter",
        "Bad playlists, parts or segments and failed requests.",
    );
    for s in &snap.streams {
        let _ = writeln!(
            out,
            "glasswatch_hls_errors_total{{{}}} {}",
            ids(s),
            s.hls_errors_total
        );
    }
    family(
        &mut out,
        "glasswatch_device_online",
        "gauge",
        "1 when the device's last status said online.",
    );
    for d in &snap.devices {
        let _ = writeln!(
            out,
            "glasswatch_device_online{{device=\"{}\"}} {}",
            label(&d.device),
            u8::from(d.online)
        );
    }
    family(
        &mut out,
        "glasswatch_device_last_status_age_seconds",
        "gauge",
        "Seconds since the device's last status message.",
    );
    for d in &snap.devices {
        if let Some(age) = d.last_status_age_s {
            let _ = writeln!(
                out,
                "glasswatch_device_last_status_age_seconds{{device=\"{}\"}} {}",
                label(&d.device),
                num(age)
            );
        }
    }
    let plain: [(&str, &str, &str, f64); 12] = [
        (
            "glasswatch_mqtt_connected",
            "gauge",
            "1 while connected to the MQTT broker.",
            f64::from(u8::from(health.mqtt_connected.load(Ordering::Relaxed))),
        ),
        (
            "glasswatch_mqtt_messages_received_total",
            "counter",
            "MQTT messages received.",
            health.mqtt_received.load(Ordering::Relaxed) as f64,
        ),
        (
            "glasswatch_mqtt_messages_malformed_total",
            "counter",
            "MQTT payloads skipped as malformed.",
            snap.malformed_messages as f64,
        ),
        (
            "glasswatch_mqtt_messages_published_total",
            "counter",
            "MQTT messages published (latency, clock pings).",
            health.mqtt_published.load(Ordering::Relaxed) as f64,
        ),
        (
            "glasswatch_mqtt_publish_failures_total",
            "counter",
            "MQTT messages that could not be queued for publishing.",
            health.mqtt_publish_failures.load(Ordering::Relaxed) as f64,
        ),
        (
            "glasswatch_hls_refused_urls_total",
            "counter",
            "Advertised hls_urls outside [hls] allow.",
            snap.refused_hls_urls as f64,
        ),
        (
            "glasswatch_storage_queue_batches",
            "gauge",
            "Seconds of data waiting for the database.",
            storage.queued_batches as f64,
        ),
        (
            "glasswatch_storage_writable",
            "gauge",
            "1 when the database took the last write.",
            f64::from(u8::from(storage.writable)),
        ),
        (
            "glasswatch_storage_write_failures_total",
            "counter",
            "Failed database writes (retried).",
            storage.write_failures as f64,
        ),
        (
            "glasswatch_storage_dropped_seconds_total",
            "counter",
            "Per-second rows lost to queue overflow.",
            storage.dropped_seconds as f64,
        ),
        (
            "glasswatch_storage_dropped_frames_total",
            "counter",
            "Per-frame rows lost to queue overflow.",
            storage.dropped_frames as f64,
        ),
        (
            "glasswatch_storage_written_seconds_total",
            "counter",
            "Per-second rows written.",
            storage.written_seconds as f64,
        ),
    ];
    for (name, kind, help, v) in plain {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {}", num(v));
    }
    if let Some(heap) = crate::memory::heap() {
        let figures: [(&str, &str, u64); 2] = [
            (
                "glasswatch_heap_in_use_bytes",
                "Heap the collector holds (glibc mallinfo2: in chunks and mmapped).",
                heap.in_use,
            ),
            (
                "glasswatch_heap_free_held_bytes",
                "Free heap the allocator keeps instead of returning it (fragmentation).",
                heap.free_held,
            ),
        ];
        for (name, help, v) in figures {
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    let name = "glasswatch_sqlite_memory_bytes";
    family(
        &mut out,
        name,
        "gauge",
        "Memory SQLite holds (page caches, statements; bounded by storage.sqlite_cache_kib, all connections together).",
    );
    let _ = writeln!(out, "{name} {}", crate::store::sqlite::memory_used());
    if let Some(b) = health.broker.get() {
        let st = b.stats();
        let broker: [(&str, &str, &str, f64); 4] = [
            (
                "glasswatch_broker_connections",
                "gauge",
                "Connections to the embedded MQTT broker.",
                st.connections as f64,
            ),
            (
                "glasswatch_broker_unauthorized_total",
                "counter",
                "Publishes and subscriptions a device made outside its own topics, dropped.",
                st.unauthorized as f64,
            ),
            (
                "glasswatch_broker_refused_logins_total",
                "counter",
                "Logins the embedded broker refused.",
                st.bad_logins as f64,
            ),
            (
                "glasswatch_broker_dropped_total",
                "counter",
                "Messages not queued for a subscriber whose queue was full.",
                st.dropped as f64,
            ),
        ];
        for (name, kind, help, v) in broker {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", num(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let mut h = PromHist::default();
        for ms in [5.0, 10.0, 10.1, 95.0, 20_000.0, f64::NAN] {
            h.observe_ms(ms);
        }
        let c = h.cumulative();
        assert_eq!(c[0], ("0.01".to_owned(), 2), "le is inclusive");
        assert_eq!(c[1].1, 3);
        assert_eq!(c.last().unwrap(), &("+Inf".to_owned(), 5));
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn renders_every_family_once() {
        let snap = Snapshot {
            streams: vec![StreamMetrics {
                device: "d".into(),
                stream: "s".into(),
                glass_to_hls: PromHist::default(),
                viewer: PromHist::default(),
                frames_seen_total: 3,
                dropped_total: 0,
                hls_errors_total: 1,
                reading: true,
                receiver_fps: Some(30.0),
                publisher_fps: None,
                clock_synced: true,
                clock_uncertainty_ms: Some(0.5),
            }],
            devices: vec![],
            malformed_messages: 0,
            refused_hls_urls: 0,
        };
        let text = render(&snap, &Health::default(), &StorageStatus::default());
        assert!(text.contains(
            "glasswatch_glass_to_hls_seconds_bucket{device=\"d\",stream=\"s\",le=\"+Inf\"} 0"
        ));
        assert!(
            text.contains("glasswatch_clock_uncertainty_seconds{device=\"d\",stream=\"s\"} 0.0005")
        );
        assert!(
            !text.contains("glasswatch_publisher_fps{"),
            "absent figures are left out"
        );
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE glasswatch_hls_errors_total"))
            .count();
        assert_eq!(types, 1);
    }
}
