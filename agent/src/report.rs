//! The reporter task ([`run`]): one `select!` loop that drains the frame
//! records the pipelines' probes handed on (see `record`) into the optional
//! `frame_log` (JSON lines) and into the MQTT reporter's queues (see
//! `mqtt`), and drives the MQTT reporter's timers and events.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::mqtt::MqttReporter;
use crate::record::{FrameInfo, RecordSource};
use crate::state::StreamState;

/// A frame-log line: the stream id and its record.
#[derive(Debug, Serialize)]
struct LogLine<'a> {
    stream: &'a str,
    #[serde(flatten)]
    record: glasswatch_common::messages::FrameRecord,
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
    mut records: RecordSource,
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
            // Every 100 ms: take the records the probes handed on (log them, queue
            // them for MQTT), flush the log, publish a batch per stream (<= 200 ms old).
            _ = batch_tick.tick() => {
                records.drain(|info| accept(&info, &ids, &mut log, mqtt.as_mut()));
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
    // The pipelines are stopping; take their last records until every sink is
    // gone (or 300 ms have passed), then leave cleanly.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    loop {
        let gone = records.senders_gone();
        records.drain(|info| accept(&info, &ids, &mut log, mqtt.as_mut()));
        if gone || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
