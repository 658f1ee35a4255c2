//! Frame records: what the stamper learnt about each frame, on its way out.
//!
//! The pipeline's probes hand each completed [`FrameInfo`] (a small `Copy`
//! value, no allocation) to a [`RecordSink`] without ever blocking the
//! streaming thread. The reporter task ([`run`]) drains them: into the
//! optional `frame_log` (JSON lines) and into the MQTT reporter's
//! fixed-capacity queues (see `mqtt`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use glasswatch_common::fingerprint;
use glasswatch_common::messages::FrameRecord;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::mqtt::MqttReporter;
use crate::supervisor::StreamState;

/// One frame as the agent produced it, in fixed-size form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Index of the stream in the config.
    pub stream: usize,
    pub session: u64,
    pub seq: u64,
    pub capture_us: i64,
    pub encoded_us: i64,
    pub sent_us: i64,
    pub bytes: u64,
    pub keyframe: bool,
    pub fingerprint: u64,
}

impl FrameInfo {
    /// The wire form (DESIGN.md frame record).
    pub fn to_record(&self) -> FrameRecord {
        FrameRecord {
            session: session_hex(self.session),
            seq: self.seq,
            capture_us: self.capture_us,
            encoded_us: self.encoded_us,
            sent_us: self.sent_us,
            bytes: self.bytes,
            keyframe: self.keyframe,
            fingerprint: fingerprint::to_hex(self.fingerprint),
        }
    }
}

/// A session id as it appears on the wire: 16 lowercase hex chars.
pub fn session_hex(session: u64) -> String {
    format!("{session:016x}")
}

/// A frame-log line: the stream id and its record.
#[derive(Debug, Serialize)]
struct LogLine<'a> {
    stream: &'a str,
    #[serde(flatten)]
    record: FrameRecord,
}

/// The non-blocking sending side, one per stream.
#[derive(Debug, Clone)]
pub struct RecordSink {
    stream: usize,
    tx: mpsc::Sender<FrameInfo>,
}

impl RecordSink {
    /// Hands a record on; `false` when the reporter is gone or full.
    pub fn send(&self, mut info: FrameInfo) -> bool {
        info.stream = self.stream;
        self.tx.try_send(info).is_ok()
    }
}

/// Creates the channel: sinks for the streams, the receiver for the reporter.
pub fn channel(capacity: usize) -> (mpsc::Sender<FrameInfo>, mpsc::Receiver<FrameInfo>) {
    mpsc::channel(capacity)
}

/// A sink for the stream at `index` on the channel `tx`.
pub fn sink(tx: &mpsc::Sender<FrameInfo>, index: usize) -> RecordSink {
    RecordSink {
        stream: index,
        tx: tx.clone(),
    }
}

/// Appends frame records to a JSON-lines file; a write error is logged once.
struct FrameLog {
    file: Option<std::io::BufWriter<std::fs::File>>,
    warned: bool,
}

impl FrameLog {
    fn open(path: Option<&PathBuf>) -> FrameLog {
        let file = path.and_then(|path| {
            match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    tracing::error!(path = %path.display(), "cannot open frame_log, records are not written: {e}");
                    None
                }
            }
        });
        FrameLog {
            file,
            warned: false,
        }
    }

    fn write(&mut self, stream: &str, info: &FrameInfo) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let line = LogLine {
            stream,
            record: info.to_record(),
        };
        let result = serde_json::to_writer(&mut *f, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| f.write_all(b"\n"));
        self.check(result);
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let r = f.flush();
            self.check(r);
        }
    }

    fn check(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            if !self.warned {
                tracing::error!("writing frame_log failed: {e}");
                self.warned = true;
            }
        }
    }
}

/// The reporter task: drains records into the frame log and MQTT until
/// shutdown, then flushes what it can within `grace` and says goodbye.
pub async fn run(
    mut rx: mpsc::Receiver<FrameInfo>,
    frame_log: Option<PathBuf>,
    states: Vec<Arc<StreamState>>,
    mut mqtt: Option<MqttReporter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ids: Vec<String> = states.iter().map(|s| s.id.clone()).collect();
    let mut log = FrameLog::open(frame_log.as_ref());
    let mut batch_tick = tokio::time::interval(Duration::from_millis(100));
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut running = true;
    while running {
        tokio::select! {
            // Shutdown requested (or the sender is gone).
            _ = shutdown.changed() => running = false,
            // A frame record from a pipeline: log it and queue it for MQTT.
            info = rx.recv() => match info {
                Some(info) => accept(&info, &ids, &mut log, mqtt.as_mut()),
                None => running = false,
            },
            // Every 100 ms: flush the log, publish a batch per stream (<= 200 ms old).
            _ = batch_tick.tick() => {
                log.flush();
                if let Some(m) = mqtt.as_mut() {
                    m.publish_batches();
                }
            }
            // Every second: stats per stream; status again if a stream changed.
            _ = stats_tick.tick() => {
                if let Some(m) = mqtt.as_mut() {
                    m.publish_stats(&states);
                    m.publish_status_if_changed(&states);
                }
            }
            // The MQTT connection's events; the guard keeps a refused broker from busy-looping.
            event = async {
                match mqtt.as_mut() {
                    Some(m) => m.next_event().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(m) = mqtt.as_mut() {
                    m.handle(event, &states);
                }
            }
        }
    }
    // The pipelines are stopping; take their last records, then leave cleanly.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(info)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        accept(&info, &ids, &mut log, mqtt.as_mut());
    }
    log.flush();
    if let Some(m) = mqtt.as_mut() {
        m.goodbye(&states, Duration::from_millis(700)).await;
    }
}

fn accept(info: &FrameInfo, ids: &[String], log: &mut FrameLog, mqtt: Option<&mut MqttReporter>) {
    let stream = ids.get(info.stream).map(String::as_str).unwrap_or("?");
    log.write(stream, info);
    if let Some(m) = mqtt {
        m.queue(*info);
    }
}
