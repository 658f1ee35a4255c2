//! Frame records and their hand-off from the streaming threads to the reporter.
//!
//! ```text
//!  stream 0's sent probe ──enqueue──▶ [FrameInfo; 128] lock-free ─┐
//!  stream 1's sent probe ──enqueue──▶ [FrameInfo; 128] lock-free ─┼─ drain every 100 ms ──▶ reporter (report.rs)
//!  …                                                              ┘
//! ```
//!
//! A [`FrameInfo`] is a small `Copy` value of fixed size. Each stream has
//! its own bounded queue (`heapless::mpmc::MpMcQueue`, capacity fixed when
//! building: [`RECORD_QUEUE`]), allocated once when the agent starts, so
//! handing a record on neither allocates nor takes a lock, and never waits:
//! a full queue refuses the record and the probe counts it
//! (`records_lost`). The reporter drains every queue right before it
//! publishes its MQTT batches (every 100 ms), so records wait no longer than
//! they waited for the batch before.
//!
//! Why the multi-producer queue of `heapless` and not its `spsc::Queue`:
//! GStreamer pad probes are `Fn + Send + Sync` closures, and when a pipeline
//! is rebuilt the old one's streaming thread may still run its probe while
//! the new one's starts, so one producer per queue holds in practice but not
//! by construction; `MpMcQueue` takes `&self` on both ends and stays correct
//! either way, with the same lock-free, allocation-free enqueue.

use std::sync::Arc;

use glasswatch_common::fingerprint;
use glasswatch_common::messages::FrameRecord;
use heapless::mpmc::MpMcQueue;

/// Records each stream's queue holds: four seconds at 30 fps, a second at
/// 120 fps; the reporter drains it ten times a second.
pub const RECORD_QUEUE: usize = 128;

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

type Queue = MpMcQueue<FrameInfo, RECORD_QUEUE>;

/// Creates the queues for `streams` streams: the side the pipelines take
/// their sinks from, and the side the reporter drains.
pub fn hand_off(streams: usize) -> (HandOff, RecordSource) {
    let queues: Arc<[Queue]> = (0..streams).map(|_| Queue::new()).collect();
    (
        HandOff {
            queues: queues.clone(),
        },
        RecordSource { queues },
    )
}

/// Gives each stream its sink.
#[derive(Clone)]
pub struct HandOff {
    queues: Arc<[Queue]>,
}

impl HandOff {
    /// The sink of the stream at `index` (a stream beyond those created
    /// gets a sink that refuses every record, counted as lost).
    pub fn for_stream(&self, index: usize) -> RecordSink {
        RecordSink {
            stream: index,
            queues: self.queues.clone(),
        }
    }
}

/// The non-blocking sending side of one stream, held by its sent probe.
#[derive(Clone)]
pub struct RecordSink {
    stream: usize,
    queues: Arc<[Queue]>,
}

impl std::fmt::Debug for RecordSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSink")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RecordSink {
    /// Hands a record on; `false` when the stream's queue is full.
    pub fn send(&self, mut info: FrameInfo) -> bool {
        info.stream = self.stream;
        self.queues
            .get(self.stream)
            .is_some_and(|q| q.enqueue(info).is_ok())
    }
}

/// The reporter's side: every stream's queue.
pub struct RecordSource {
    queues: Arc<[Queue]>,
}

impl RecordSource {
    /// Takes every record waiting, stream by stream, each stream's in order.
    /// Returns how many were taken.
    pub fn drain(&mut self, mut each: impl FnMut(FrameInfo)) -> usize {
        let mut n = 0;
        for q in self.queues.iter() {
            while let Some(info) = q.dequeue() {
                each(info);
                n += 1;
            }
        }
        n
    }

    /// True once every [`HandOff`] and [`RecordSink`] is gone: no record can come any more.
    pub fn senders_gone(&self) -> bool {
        Arc::strong_count(&self.queues) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> FrameInfo {
        FrameInfo {
            stream: 99,
            session: 1,
            seq,
            capture_us: 0,
            encoded_us: 0,
            sent_us: 0,
            bytes: 0,
            keyframe: false,
            fingerprint: 0,
        }
    }

    #[test]
    fn records_keep_their_stream_and_order_and_a_full_queue_refuses() {
        let (hand, mut source) = hand_off(2);
        let (a, b) = (hand.for_stream(0), hand.for_stream(1));
        for seq in 0..RECORD_QUEUE as u64 {
            assert!(a.send(frame(seq)));
        }
        assert!(!a.send(frame(999)), "a full queue refuses");
        assert!(b.send(frame(7)), "another stream's queue is its own");
        assert!(!hand.for_stream(2).send(frame(0)), "no queue, no record");
        let mut seen = Vec::new();
        assert_eq!(
            source.drain(|f| seen.push((f.stream, f.seq))),
            RECORD_QUEUE + 1
        );
        let a_seqs: Vec<u64> = seen.iter().filter(|s| s.0 == 0).map(|s| s.1).collect();
        assert_eq!(a_seqs, (0..RECORD_QUEUE as u64).collect::<Vec<_>>());
        assert!(seen.contains(&(1, 7)));
        assert_eq!(source.drain(|_| {}), 0);
        assert!(!source.senders_gone());
        drop((hand, a, b));
        assert!(source.senders_gone());
    }
}
