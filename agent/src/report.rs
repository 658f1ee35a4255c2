//! Frame records: what the stamper learnt about each frame, on its way out.
//!
//! The pipeline's probes hand each completed [`FrameRecord`] to a
//! [`RecordSink`] without ever blocking the streaming thread; the reporter
//! task drains it. Today the reporter appends records to the optional
//! `frame_log` (JSON lines); the MQTT reporter takes the same records.

use std::io::Write;
use std::path::PathBuf;

use glasswatch_common::messages::FrameRecord;
use serde::Serialize;
use tokio::sync::mpsc;

/// A frame record tagged with its stream, as the reporter receives it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamRecord {
    pub stream: String,
    #[serde(flatten)]
    pub record: FrameRecord,
}

/// The non-blocking sending side, one per stream.
#[derive(Debug, Clone)]
pub struct RecordSink {
    stream: String,
    tx: mpsc::Sender<StreamRecord>,
}

impl RecordSink {
    /// Hands a record on; `false` when the reporter is gone or full.
    pub fn send(&self, record: FrameRecord) -> bool {
        self.tx
            .try_send(StreamRecord {
                stream: self.stream.clone(),
                record,
            })
            .is_ok()
    }
}

/// Creates the channel: sinks for the streams, the receiver for the reporter.
pub fn channel(capacity: usize) -> (mpsc::Sender<StreamRecord>, mpsc::Receiver<StreamRecord>) {
    mpsc::channel(capacity)
}

/// A sink for `stream` on the channel `tx`.
pub fn sink(tx: &mpsc::Sender<StreamRecord>, stream: &str) -> RecordSink {
    RecordSink {
        stream: stream.to_owned(),
        tx: tx.clone(),
    }
}

/// Drains records until every sink is dropped, appending them to `frame_log`
/// when set. A write error is logged once per kind and never stops the agent.
pub async fn run(mut rx: mpsc::Receiver<StreamRecord>, frame_log: Option<PathBuf>) {
    let mut file = match &frame_log {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                tracing::error!(path = %path.display(), "cannot open frame_log, records are not written: {e}");
                None
            }
        },
        None => None,
    };
    let mut warned = false;
    while let Some(first) = rx.recv().await {
        let Some(f) = file.as_mut() else {
            continue;
        };
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        let result = batch.iter().try_for_each(|r| {
            serde_json::to_writer(&mut *f, r).map_err(std::io::Error::from)?;
            f.write_all(b"\n")
        });
        if let Err(e) = result.and_then(|_| f.flush()) {
            if !warned {
                tracing::error!("writing frame_log failed: {e}");
                warned = true;
            }
        }
    }
}
