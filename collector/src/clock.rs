//! Clock offset between a device and the collector, NTP style.
//!
//! The collector sends `clock/ping {nonce, t1_us}` (its clock), the agent
//! answers `clock/pong {t1, t2 = receipt, t3 = send}` (device clock), and the
//! collector notes `t4` on receipt. Each exchange gives
//!
//! ```text
//! offset = ((t2 − t1) + (t3 − t4)) / 2      device clock − collector clock
//! rtt    = (t4 − t1) − (t3 − t2)
//! ```
//!
//! and the true offset lies within `offset ± rtt/2`. The estimator keeps the
//! samples of a sliding window and uses the one with the smallest round
//! trip (DESIGN.md, "Clock sync"). Pure state, no I/O, no clock of its own:
//! every call is given the time.

use std::collections::VecDeque;

/// Why an exchange was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("pong arrived before its ping was sent (t4 {t4} < t1 {t1})")]
    Backwards { t1: i64, t4: i64 },
    #[error("device answered before it received (t3 {t3} < t2 {t2})")]
    DeviceBackwards { t2: i64, t3: i64 },
    #[error("negative round trip ({rtt} µs): timestamps are inconsistent")]
    NegativeRtt { rtt: i64 },
    #[error("round trip of {rtt} µs is longer than the {max} µs accepted")]
    TooSlow { rtt: i64, max: i64 },
}

/// One exchange's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// When the pong arrived (collector clock), for the window.
    pub at_us: i64,
    /// Device clock minus collector clock.
    pub offset_us: i64,
    pub rtt_us: i64,
}

impl ClockSample {
    /// Computes a sample from the four timestamps.
    pub fn from_exchange(t1: i64, t2: i64, t3: i64, t4: i64) -> Result<ClockSample, ClockError> {
        if t4 < t1 {
            return Err(ClockError::Backwards { t1, t4 });
        }
        if t3 < t2 {
            return Err(ClockError::DeviceBackwards { t2, t3 });
        }
        let (t1w, t2w, t3w, t4w) = (
            i128::from(t1),
            i128::from(t2),
            i128::from(t3),
            i128::from(t4),
        );
        let rtt = (t4w - t1w) - (t3w - t2w);
        let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        if rtt < 0 {
            return Err(ClockError::NegativeRtt { rtt: clamp(rtt) });
        }
        let offset = ((t2w - t1w) + (t3w - t4w)) / 2;
        Ok(ClockSample {
            at_us: t4,
            offset_us: clamp(offset),
            rtt_us: clamp(rtt),
        })
    }
}

/// The estimate in use: the offset and its uncertainty (`rtt / 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset {
    /// Device clock minus collector clock, µs.
    pub offset_us: i64,
    /// Half the round trip of the sample used, µs.
    pub uncertainty_us: i64,
}

impl ClockOffset {
    /// A device-clock time on the collector's clock.
    pub fn to_collector(&self, device_us: i64) -> i64 {
        device_us.saturating_sub(self.offset_us)
    }
}

/// Minimum-RTT estimator over a sliding window.
#[derive(Debug, Clone)]
pub struct ClockEstimator {
    window_us: i64,
    max_rtt_us: i64,
    samples: VecDeque<ClockSample>,
}

/// Most samples kept, whatever the window (a ping every few seconds needs few).
const MAX_SAMPLES: usize = 256;

impl ClockEstimator {
    /// Keeps samples for `window_us`; rejects round trips over `max_rtt_us`.
    pub fn new(window_us: i64, max_rtt_us: i64) -> ClockEstimator {
        ClockEstimator {
            window_us: window_us.max(1),
            max_rtt_us: max_rtt_us.max(1),
            samples: VecDeque::new(),
        }
    }

    /// Adds one exchange.
    pub fn add(&mut self, t1: i64, t2: i64, t3: i64, t4: i64) -> Result<ClockSample, ClockError> {
        let s = ClockSample::from_exchange(t1, t2, t3, t4)?;
        if s.rtt_us > self.max_rtt_us {
            return Err(ClockError::TooSlow {
                rtt: s.rtt_us,
                max: self.max_rtt_us,
            });
        }
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        Ok(s)
    }

    /// The minimum-RTT sample of the window ending at `now_us`, if any.
    pub fn estimate(&mut self, now_us: i64) -> Option<ClockOffset> {
        while self
            .samples
            .front()
            .is_some_and(|s| now_us.saturating_sub(s.at_us) > self.window_us)
        {
            self.samples.pop_front();
        }
        self.samples
            .iter()
            .min_by_key(|s| s.rtt_us)
            .map(|s| ClockOffset {
                offset_us: s.offset_us,
                uncertainty_us: s.rtt_us.div_euclid(2) + s.rtt_us.rem_euclid(2),
            })
    }

    /// Samples currently in the window.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_exchange_recovers_the_offset() {
        // Device 2 s ahead, 10 ms each way, 1 ms on the device.
        let (t1, off) = (1_000_000i64, 2_000_000i64);
        let t2 = t1 + 10_000 + off;
        let t3 = t2 + 1_000;
        let t4 = t3 - off + 10_000;
        let s = ClockSample::from_exchange(t1, t2, t3, t4).unwrap();
        assert_eq!(s.offset_us, off);
        assert_eq!(s.rtt_us, 20_000);
    }

    #[test]
    fn asymmetry_stays_within_half_the_round_trip() {
        // 2 ms out, 30 ms back: the estimate errs by 14 ms, inside ± 16 ms.
        let (t1, off) = (0i64, -500_000i64);
        let t2 = t1 + 2_000 + off;
        let t3 = t2;
        let t4 = t3 - off + 30_000;
        let mut e = ClockEstimator::new(60_000_000, 1_000_000);
        e.add(t1, t2, t3, t4).unwrap();
        let est = e.estimate(t4).unwrap();
        assert!((est.offset_us - off).abs() <= est.uncertainty_us);
        assert_eq!(est.uncertainty_us, 16_000);
    }

    #[test]
    fn minimum_rtt_wins_and_old_samples_leave_the_window() {
        let mut e = ClockEstimator::new(10_000_000, 1_000_000);
        // rtt 40 ms at t=0, rtt 4 ms at t=1 s, rtt 20 ms at t=12 s.
        e.add(0, 100_020, 100_020, 40_000).unwrap();
        e.add(1_000_000, 1_100_002, 1_100_002, 1_004_000).unwrap();
        assert_eq!(e.estimate(2_000_000).unwrap().uncertainty_us, 2_000);
        e.add(12_000_000, 12_110_000, 12_110_000, 12_020_000)
            .unwrap();
        // At 12 s the 4 ms sample (taken at ~1 s) is out of the 10 s window.
        let est = e.estimate(12_020_000).unwrap();
        assert_eq!(est.uncertainty_us, 10_000);
        assert_eq!(est.offset_us, 100_000);
        assert_eq!(est.to_collector(1_100_000), 1_000_000);
    }

    #[test]
    fn inconsistent_exchanges_are_rejected() {
        assert!(matches!(
            ClockSample::from_exchange(10, 0, 0, 5),
            Err(ClockError::Backwards { .. })
        ));
        assert!(matches!(
            ClockSample::from_exchange(0, 10, 5, 20),
            Err(ClockError::DeviceBackwards { .. })
        ));
        assert!(matches!(
            ClockSample::from_exchange(0, 0, 100, 50),
            Err(ClockError::NegativeRtt { .. })
        ));
        let mut e = ClockEstimator::new(1, 1000);
        assert!(matches!(
            e.add(0, 0, 0, 5000),
            Err(ClockError::TooSlow { .. })
        ));
        assert!(e.estimate(0).is_none());
        // Extreme values do not overflow.
        let _ = ClockSample::from_exchange(i64::MIN, i64::MAX, i64::MAX, i64::MAX);
    }
}
