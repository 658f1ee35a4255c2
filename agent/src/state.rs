//! What the agent's stages share, beneath all of them: the wall clock, a
//! stream's state and counters (written by its pipeline's probes and its
//! supervisor, read by the reporter and the main loop), and the capped
//! backoff every reconnecting loop uses.
//!
//! It depends on nothing else in the agent but `config`, so that
//! `pipeline`, `mqtt`, `report` and `supervisor` can all stand above it
//! without importing one another in a circle.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use glasswatch_common::messages::StreamInfo;

use crate::config::Retry;

/// The wall clock in µs since the Unix epoch.
pub fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a stream is doing, for logs and `systemctl status`.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Starting,
    WaitingForCamera(PathBuf),
    Publishing { encoder: String, url: String },
    Retrying { reason: String, in_ms: u64 },
    Stopped,
}

/// Shared view of one stream's supervisor.
#[derive(Debug)]
pub struct StreamState {
    pub id: String,
    pub phase: Mutex<Phase>,
    pub counters: Arc<StreamCounters>,
    /// Wall µs of the supervisor loop's last turn (for the watchdog).
    pub heartbeat_us: AtomicU64,
    /// Set once the first start attempt has finished, either way.
    pub attempted: AtomicBool,
    /// What the current pipeline publishes, for the status message.
    info: Mutex<Option<StreamInfo>>,
    /// Bumped whenever `info` changes, so the status is published again.
    pub info_gen: AtomicU64,
}

impl StreamState {
    pub fn new(id: &str) -> Arc<StreamState> {
        Arc::new(StreamState {
            id: id.to_owned(),
            phase: Mutex::new(Phase::Starting),
            counters: Arc::new(StreamCounters::default()),
            heartbeat_us: AtomicU64::new(now_u64()),
            attempted: AtomicBool::new(false),
            info: Mutex::new(None),
            info_gen: AtomicU64::new(0),
        })
    }

    /// What the stream publishes, once a pipeline has been planned.
    pub fn info(&self) -> Option<StreamInfo> {
        self.info.lock().ok().and_then(|i| i.clone())
    }

    pub(crate) fn set_info(&self, info: StreamInfo) {
        if let Ok(mut i) = self.info.lock() {
            if i.as_ref() != Some(&info) {
                *i = Some(info);
                self.info_gen.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn set(&self, phase: Phase) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
            .lock()
            .map(|p| p.clone())
            .unwrap_or(Phase::Starting)
    }

    pub(crate) fn beat(&self) {
        self.heartbeat_us.store(now_u64(), Ordering::Relaxed);
    }
}

fn now_u64() -> u64 {
    u64::try_from(wall_us()).unwrap_or(0)
}

/// Counters of one stream, shared between the probes and the supervisor.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Access units stamped since the process started.
    pub stamped: AtomicU64,
    /// Access units that reached the RTSP sink.
    pub sent: AtomicU64,
    /// Access units that carried no slice and went out unstamped.
    pub unstamped: AtomicU64,
    /// Stamped access units the leaky queue dropped before the RTSP sink.
    pub dropped_before_send: AtomicU64,
    /// Frame records the reporter could not take.
    pub records_lost: AtomicU64,
    /// Bytes of access units that reached the RTSP sink.
    pub sent_bytes: AtomicU64,
    /// Frames the source skipped (gaps in its frame counter, the buffer offset).
    pub dropped_capture: AtomicU64,
    /// Frames that went into the encoder and never came out.
    pub dropped_encode: AtomicU64,
    /// Wall-clock µs when the last access unit reached the RTSP sink.
    pub last_sent_us: AtomicU64,
    /// Buffers a probe passed on untouched because another thread held its
    /// state: not expected, as a pad lets one streaming thread through at a
    /// time; counted rather than waited for.
    pub probe_busy: AtomicU64,
    /// Time spent in the stamp probe, in ns, summed over `stamped`
    /// (parse, SEI insertion, fingerprint, the stamped buffer): the latency it adds.
    pub stamp_ns: AtomicU64,
}

impl StreamCounters {
    /// Mean time the stamper adds per frame, in µs.
    pub fn mean_stamp_us(&self) -> f64 {
        let n = self.stamped.load(Ordering::Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.stamp_ns.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
    }
}

/// Capped exponential backoff.
#[derive(Debug)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    next_ms: u64,
}

impl Backoff {
    pub fn new(retry: &Retry) -> Backoff {
        Backoff::with_ms(
            u64::from(retry.initial_ms.get()),
            u64::from(retry.max_ms.get()),
        )
    }

    /// From `initial_ms`, doubling up to `max_ms`.
    pub fn with_ms(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            initial_ms,
            max_ms: max_ms.max(initial_ms),
            next_ms: initial_ms,
        }
    }

    /// The wait before the next attempt; doubles each time up to the cap.
    pub fn next_wait(&mut self) -> u64 {
        let now = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(self.max_ms);
        now
    }

    pub fn reset(&mut self) {
        self.next_ms = self.initial_ms;
    }
}
