//! Per-stream, per-window summaries of the per-frame figures: frames seen,
//! glass-to-HLS percentiles, receiver fps and the mean breakdown (DESIGN.md,
//! "Latency figures"). Drops are the hub's: they need the records too. Plain state fed with
//! [`FrameLatency`] values; [`Window::summary`] closes a window.

use crate::matcher::FrameLatency;

/// What one window of one stream comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub frames: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub receiver_fps: f64,
    pub mean_encode_ms: f64,
    pub mean_publish_ms: f64,
    pub mean_origin_delivery_ms: f64,
    /// The largest uncertainty of a figure in the window.
    pub uncertainty_ms: f64,
}

/// Collects one stream's frames until the window is closed.
#[derive(Debug, Default)]
pub struct Window {
    frames: Vec<FrameLatency>,
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Window {
    pub fn new() -> Window {
        Window::default()
    }

    /// Adds a matched frame.
    pub fn add(&mut self, f: FrameLatency) {
        self.frames.push(f);
    }

    /// Closes the window that lasted `seconds` and starts the next one.
    pub fn summary(&mut self, seconds: f64) -> Summary {
        self.close(seconds).0
    }

    /// Closes the window like [`Window::summary`], and hands back its frames
    /// (for storage: per-frame rows and the window's histogram).
    pub fn close(&mut self, seconds: f64) -> (Summary, Vec<FrameLatency>) {
        let frames = std::mem::take(&mut self.frames);
        let mut g2h: Vec<f64> = frames.iter().map(|f| f.glass_to_hls_ms).collect();
        g2h.sort_by(f64::total_cmp);
        let n = frames.len() as f64;
        let mean = |v: fn(&FrameLatency) -> f64| {
            if frames.is_empty() {
                0.0
            } else {
                frames.iter().map(v).sum::<f64>() / n
            }
        };
        let summary = Summary {
            frames: frames.len() as u64,
            p50_ms: percentile(&g2h, 50.0),
            p95_ms: percentile(&g2h, 95.0),
            p99_ms: percentile(&g2h, 99.0),
            max_ms: g2h.last().copied().unwrap_or(0.0),
            receiver_fps: if seconds > 0.0 { n / seconds } else { 0.0 },
            mean_encode_ms: mean(|f| f.encode_ms),
            mean_publish_ms: mean(|f| f.publish_ms),
            mean_origin_delivery_ms: mean(|f| f.origin_delivery_ms),
            uncertainty_ms: frames.iter().map(|f| f.uncertainty_ms).fold(0.0, f64::max),
        };
        (summary, frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::MatchedBy;

    fn frame(seq: u64, g2h: f64) -> FrameLatency {
        FrameLatency {
            session: 1,
            seq,
            capture_us: seq as i64 * 33_333,
            available_us: seq as i64 * 33_333 + (g2h * 1000.0) as i64,
            encode_ms: 4.0,
            publish_ms: 1.0,
            origin_delivery_ms: g2h - 5.0,
            glass_to_hls_ms: g2h,
            uncertainty_ms: 0.5,
            matched_by: MatchedBy::Stamp,
            corrected: true,
        }
    }

    #[test]
    fn percentiles_and_means() {
        let mut w = Window::new();
        for seq in 0..30u64 {
            if seq == 10 || seq == 11 {
                continue;
            }
            w.add(frame(seq, 40.0 + seq as f64));
        }
        let s = w.summary(1.0);
        assert_eq!(s.frames, 28);
        assert_eq!(s.max_ms, 69.0);
        assert_eq!(
            s.p50_ms,
            percentile(
                &(0..30)
                    .filter(|s| *s != 10 && *s != 11)
                    .map(|s| 40.0 + s as f64)
                    .collect::<Vec<_>>(),
                50.0
            )
        );
        assert!((s.receiver_fps - 28.0).abs() < 1e-9);
        assert!((s.mean_encode_ms - 4.0).abs() < 1e-9);
        // An empty window is all zeros, not NaN.
        let e = w.summary(1.0);
        assert_eq!((e.frames, e.p99_ms, e.mean_publish_ms), (0, 0.0, 0.0));
    }

    #[test]
    fn nearest_rank_percentile() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 95.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
