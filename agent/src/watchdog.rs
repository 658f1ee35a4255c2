//! When the agent feeds systemd's watchdog (`WATCHDOG=1`).
//!
//! Under `WatchdogSec=` systemd kills and restarts the agent when no ping
//! arrives in time. The main loop pings only while [`Watchdog::check`] says
//! every stream is in one of two good states:
//!
//! - **publishing**, with a frame reaching the RTSP sink within the stall
//!   limit (`[retry] stall_ms`) plus one watchdog interval: the supervisor's
//!   own stall check ends such a pipeline at the stall limit, so a stream
//!   that still claims to publish after that has a supervisor that no longer
//!   acts;
//! - **correctly retrying** (starting, waiting for the camera, backing off
//!   after a failure): the supervisor's loop turns, which it shows by its
//!   heartbeat (at least every 0.5 s in every phase), younger than one
//!   watchdog interval. Retrying for hours is correct (the camera may be
//!   unplugged, MediaMTX down): that is the supervisor's job, not systemd's.
//!
//! What stops the pings: a GStreamer call that never returns (a state change
//! stuck in a driver, a blocked RTSP handshake) holds the supervisor's task
//! or a runtime worker, so its heartbeat ages; a stopped or hung process
//! (`SIGSTOP`, a deadlock in the main loop) sends nothing at all. Either way
//! systemd restarts the agent within two watchdog intervals.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::state::{Phase, StreamState};

/// What the watchdog needs to know about one stream at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHealth {
    pub id: String,
    /// True while the stream's phase is [`Phase::Publishing`].
    pub publishing: bool,
    /// Time since the supervisor's loop last turned.
    pub heartbeat_age: Duration,
    /// Time since a frame last reached the RTSP sink (`None`: never).
    pub since_last_frame: Option<Duration>,
}

impl StreamHealth {
    /// Reads one stream's shared state at wall time `now_us`.
    pub fn of(state: &StreamState, now_us: i64) -> StreamHealth {
        let age = |then_us: u64| {
            let now = u64::try_from(now_us).unwrap_or(0);
            Duration::from_micros(now.saturating_sub(then_us))
        };
        let last_sent = state.counters.last_sent_us.load(Ordering::Relaxed);
        StreamHealth {
            id: state.id.clone(),
            publishing: matches!(state.phase(), Phase::Publishing { .. }),
            heartbeat_age: age(state.heartbeat_us.load(Ordering::Relaxed)),
            since_last_frame: (last_sent > 0).then(|| age(last_sent)),
        }
    }
}

/// The decision, with the last verdict kept so a change is logged once.
#[derive(Debug)]
pub struct Watchdog {
    interval: Duration,
    stall: Duration,
    failing: Option<String>,
}

impl Watchdog {
    /// `interval`: systemd's `WatchdogSec`; `stall`: `[retry] stall_ms`.
    pub fn new(interval: Duration, stall: Duration) -> Watchdog {
        Watchdog {
            interval,
            stall,
            failing: None,
        }
    }

    /// `Ok` when every stream is publishing or correctly retrying, else why not.
    pub fn check(&self, streams: &[StreamHealth]) -> Result<(), String> {
        for s in streams {
            if s.heartbeat_age >= self.interval {
                return Err(format!(
                    "stream {}: its supervisor has not turned for {:.1} s (a GStreamer call that does not return?)",
                    s.id,
                    s.heartbeat_age.as_secs_f64()
                ));
            }
            if s.publishing {
                let limit = self.stall + self.interval;
                match s.since_last_frame {
                    Some(age) if age < limit => {}
                    Some(age) => {
                        return Err(format!(
                            "stream {}: publishing but no frame reached the RTSP sink for {:.1} s (stall limit {:.1} s not acted on)",
                            s.id,
                            age.as_secs_f64(),
                            self.stall.as_secs_f64()
                        ))
                    }
                    None => {
                        return Err(format!(
                            "stream {}: publishing but no frame was ever sent",
                            s.id
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// The main loop's hook: true when the ping is due now. Logs when the
    /// verdict changes (an error when pings stop, so the reason precedes
    /// systemd's restart in the journal).
    pub fn tick(&mut self, states: &[Arc<StreamState>]) -> bool {
        let now = crate::state::wall_us();
        let health: Vec<StreamHealth> = states.iter().map(|s| StreamHealth::of(s, now)).collect();
        match self.check(&health) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    tracing::info!("watchdog: healthy again; pinging systemd");
                }
                true
            }
            Err(why) => {
                if self.failing.as_deref() != Some(why.as_str()) {
                    tracing::error!("watchdog: not pinging systemd: {why}");
                    self.failing = Some(why);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);
    const STALL: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn publishing(id: &str, heartbeat: u64, frame: u64) -> StreamHealth {
        StreamHealth {
            id: id.into(),
            publishing: true,
            heartbeat_age: ms(heartbeat),
            since_last_frame: Some(ms(frame)),
        }
    }

    fn retrying(id: &str, heartbeat: u64, frame: Option<u64>) -> StreamHealth {
        StreamHealth {
            id: id.into(),
            publishing: false,
            heartbeat_age: ms(heartbeat),
            since_last_frame: frame.map(ms),
        }
    }

    fn dog() -> Watchdog {
        Watchdog::new(INTERVAL, STALL)
    }

    #[test]
    fn publishing_streams_with_fresh_frames_are_fed() {
        assert_eq!(
            dog().check(&[publishing("a", 400, 33), publishing("b", 10, 70)]),
            Ok(())
        );
    }

    #[test]
    fn retrying_for_ever_is_correct_and_fed() {
        // MediaMTX away for an hour, or the camera unplugged: the supervisor
        // keeps turning, no frame for a long time.
        assert_eq!(dog().check(&[retrying("a", 300, Some(3_600_000))]), Ok(()));
        assert_eq!(dog().check(&[retrying("a", 300, None)]), Ok(()));
    }

    #[test]
    fn a_supervisor_that_stopped_turning_starves_the_watchdog() {
        // A GStreamer state change that never returns: the heartbeat ages.
        let why = dog()
            .check(&[publishing("a", 100, 20), retrying("b", 10_000, None)])
            .unwrap_err();
        assert!(
            why.contains("stream b") && why.contains("not turned"),
            "{why}"
        );
        // Just under the interval still feeds.
        assert_eq!(dog().check(&[retrying("b", 9_999, None)]), Ok(()));
    }

    #[test]
    fn publishing_without_frames_past_the_stall_limit_starves_the_watchdog() {
        // The supervisor ends a pipeline at 5 s without frames; 15 s means
        // its check no longer acts (a streaming thread stuck with it).
        assert_eq!(dog().check(&[publishing("a", 100, 14_999)]), Ok(()));
        let why = dog().check(&[publishing("a", 100, 15_000)]).unwrap_err();
        assert!(why.contains("no frame reached"), "{why}");
        let never = StreamHealth {
            since_last_frame: None,
            ..publishing("a", 100, 0)
        };
        assert!(dog().check(&[never]).is_err());
    }

    #[test]
    fn no_streams_is_healthy() {
        assert_eq!(dog().check(&[]), Ok(()));
    }

    #[test]
    fn tick_reads_the_shared_state() {
        let fresh = StreamState::new("cam0");
        let mut d = dog();
        assert!(
            d.tick(std::slice::from_ref(&fresh)),
            "a new stream is starting: fed"
        );
        // Its supervisor last turned 11 s ago.
        let old = crate::state::wall_us() - 11_000_000;
        fresh
            .heartbeat_us
            .store(u64::try_from(old).unwrap_or(0), Ordering::Relaxed);
        assert!(!d.tick(std::slice::from_ref(&fresh)));
        fresh.heartbeat_us.store(
            u64::try_from(crate::state::wall_us()).unwrap_or(0),
            Ordering::Relaxed,
        );
        assert!(d.tick(&[fresh]), "fed again once it turns");
    }
}
