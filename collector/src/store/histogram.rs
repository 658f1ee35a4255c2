//! A fixed log-bucket, mergeable latency histogram, kept per second in the
//! database and merged into per-minute and per-hour roll-ups.
//!
//! Values are latencies in milliseconds. The range from [`MIN_MS`] (0.1 ms)
//! to [`MAX_MS`] (1 000 000 ms, about 16.7 minutes) is cut into
//! [`LOG_BUCKETS`] buckets whose edges grow by the factor [`GAMMA`] (1.02):
//! log bucket `i` holds the values in `[0.1 * 1.02^i, 0.1 * 1.02^(i + 1))`.
//! Values below 0.1 ms, zero and negative ones included (clock errors can
//! make a latency slightly negative), go to one underflow bucket, and values
//! above 1 000 000 ms go to one overflow bucket. NaN and infinities are
//! rejected and not counted. Besides the bucket counts, the histogram keeps
//! the exact count, minimum, maximum and sum of the values it was given.
//!
//! A quantile uses the same nearest-rank definition as the exact percentile
//! of the aggregates (`aggregate::percentile`): for `n` values the rank is
//! `ceil(q * n)`, clamped to `[1, n]`, and the answer is the representative
//! of the bucket holding the value of that rank. The representative of a
//! log bucket is its geometric midpoint, clamped into `[min, max]`; the
//! underflow bucket is represented by the minimum and the overflow bucket by
//! the maximum. The first rank answers the minimum and the last rank the
//! maximum, both kept exactly, so `quantile(0.0)` is the minimum,
//! `quantile(1.0)` is the maximum, and histograms of one or two values answer
//! exactly.
//!
//! Error bound: the value of the chosen rank lies in the chosen bucket, and
//! the geometric midpoint of a bucket is within a factor `sqrt(1.02)` of
//! every value in it, so for values between 0.1 ms and 1 000 000 ms a
//! quantile agrees with the exact nearest-rank percentile of the same values
//! within ±0.995 % relative, which is documented and tested as ±1 %
//! ([`MAX_RELATIVE_ERROR`]). Clamping into `[min, max]` only moves the answer
//! towards the exact value. When the value of any other rank than the first
//! and the last is below 0.1 ms, the answer is the minimum of all the
//! values; when it is above 1 000 000 ms, the answer is the maximum.
//!
//! Merging is exact: bucket counts add, and the count, minimum and maximum
//! combine exactly, so the quantiles of a minute made by merging its 60
//! per-second histograms equal those of one histogram of all the minute's
//! frames, and the same holds for hours. Percentiles must therefore never be
//! averaged; merge the histograms and ask the merged one. Only the sum, and
//! so the mean, may differ in the last bits, as floating-point additions are
//! done in another order. The sum saturates at `±f64::MAX` instead of
//! becoming infinite.
//!
//! Memory is sparse: only non-empty buckets are kept, as a vector of
//! `(bucket index, count)` sorted by index. A second of about 30 frames
//! holds at most 30 entries, and no histogram holds more than [`BUCKETS`].
//!
//! Encoding ([`Histogram::to_bytes`], [`Histogram::from_bytes`]), for a BLOB
//! or bytea column, all integers as unsigned LEB128 varints and all floats
//! as 8 little-endian bytes:
//!
//! 1. the version byte, [`ENCODING_VERSION`] (1);
//! 2. the count, a varint;
//! 3. the minimum, the maximum and the sum, floats (all zero when empty);
//! 4. the number of pairs, a varint, at most [`BUCKETS`];
//! 5. that many pairs of a bucket index and a count, both varints, with
//!    indexes strictly ascending (0 is the underflow bucket, 1 to
//!    [`LOG_BUCKETS`] the log buckets and `LOG_BUCKETS + 1` the overflow
//!    bucket) and counts above zero.
//!
//! Decoding treats its input as untrusted: it never panics, and it rejects
//! truncated input, other versions, malformed or overlong varints, too many
//! pairs, bucket indexes out of range or out of order, zero counts, bucket
//! counts that do not add up to the count, a minimum, maximum or sum that is
//! not finite, a minimum above the maximum or outside the first bucket, a
//! maximum outside the last bucket, an empty histogram with a non-zero
//! minimum, maximum or sum, and trailing bytes. Each error says at which byte offset the failing field starts and
//! what it was.

use std::sync::OnceLock;

use thiserror::Error;

/// The ratio between the upper and lower edge of a log bucket.
pub const GAMMA: f64 = 1.02;

/// The lower edge of the first log bucket; smaller values are underflow.
pub const MIN_MS: f64 = 0.1;

/// The largest value kept in a log bucket; larger values are overflow.
pub const MAX_MS: f64 = 1_000_000.0;

/// The number of log buckets: the smallest `k` with `MIN_MS * GAMMA^k`
/// above `MAX_MS` (a test checks it).
pub const LOG_BUCKETS: usize = 814;

/// The number of all buckets: underflow, the log buckets and overflow.
pub const BUCKETS: usize = LOG_BUCKETS + 2;

/// The documented bound on the relative difference between a quantile and
/// the exact nearest-rank percentile, for values between `MIN_MS` and
/// `MAX_MS` (the bucket scheme gives `sqrt(GAMMA) - 1`, about 0.995 %).
pub const MAX_RELATIVE_ERROR: f64 = 0.01;

/// The version byte that starts every encoding.
pub const ENCODING_VERSION: u8 = 1;

/// The index of the underflow bucket.
const UNDERFLOW: u16 = 0;

/// The index of the overflow bucket.
const OVERFLOW: u16 = LOG_BUCKETS as u16 + 1;

/// The longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// The edges of the log buckets: log bucket `i` (index `i + 1`) holds the
/// values from `edges()[i]` up to, but not including, `edges()[i + 1]`.
///
/// The edges are made by repeated multiplication, whose rounding IEEE 754
/// defines exactly, so every platform puts a value in the same bucket and a stored
/// histogram decodes the same everywhere.
fn edges() -> &'static [f64; LOG_BUCKETS + 1] {
    static EDGES: OnceLock<[f64; LOG_BUCKETS + 1]> = OnceLock::new();
    EDGES.get_or_init(|| {
        let mut edges = [0.0; LOG_BUCKETS + 1];
        let mut edge = MIN_MS;
        for slot in edges.iter_mut() {
            *slot = edge;
            edge *= GAMMA;
        }
        edges
    })
}

/// The index of the bucket of a finite value.
fn bucket_of(ms: f64) -> u16 {
    if ms < MIN_MS {
        UNDERFLOW
    } else if ms > MAX_MS {
        OVERFLOW
    } else {
        // The number of edges at or below the value is at least 1 (the first
        // edge is MIN_MS) and at most LOG_BUCKETS (the last edge is above
        // MAX_MS), and it is the index of the value's log bucket.
        let below = edges().partition_point(|&edge| edge <= ms);
        u16::try_from(below).unwrap_or(OVERFLOW)
    }
}

/// The geometric midpoint of a log bucket, or `None` for the underflow and
/// overflow buckets and for indexes out of range.
fn midpoint(index: u16) -> Option<f64> {
    let i = usize::from(index);
    let edges = edges();
    let lower = edges.get(i.checked_sub(1)?)?;
    let upper = edges.get(i)?;
    Some((lower * upper).sqrt())
}

/// Adds to a sum, saturating at `±f64::MAX` so that it stays finite.
fn saturating_sum(a: f64, b: f64) -> f64 {
    (a + b).clamp(-f64::MAX, f64::MAX)
}

/// A fixed log-bucket latency histogram of millisecond values (see the
/// module documentation for the buckets, the error bound and the encoding).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// The number of values added.
    count: u64,
    /// The smallest value added (0 while empty).
    min: f64,
    /// The largest value added (0 while empty).
    max: f64,
    /// The sum of the values added, saturating at `±f64::MAX`.
    sum: f64,
    /// The non-empty buckets as `(index, count)`, sorted by index; the
    /// counts add up to `count`.
    buckets: Vec<(u16, u64)>,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value in milliseconds. NaN and infinities are rejected: they
    /// are not counted and the answer is `false`.
    pub fn add(&mut self, ms: f64) -> bool {
        if !ms.is_finite() {
            return false;
        }
        let index = bucket_of(ms);
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(pos) => {
                if let Some(entry) = self.buckets.get_mut(pos) {
                    entry.1 = entry.1.saturating_add(1);
                }
            }
            Err(pos) => self.buckets.insert(pos, (index, 1)),
        }
        if self.count == 0 {
            self.min = ms;
            self.max = ms;
        } else {
            self.min = self.min.min(ms);
            self.max = self.max.max(ms);
        }
        self.count = self.count.saturating_add(1);
        self.sum = saturating_sum(self.sum, ms);
        true
    }

    /// Adds all the values of another histogram. The result is the
    /// histogram of both sets of values (the sum up to rounding).
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let mut ours = self.buckets.iter().copied().peekable();
        let mut theirs = other.buckets.iter().copied().peekable();
        loop {
            let next = match (ours.peek().copied(), theirs.peek().copied()) {
                (Some(a), Some(b)) if a.0 == b.0 => {
                    ours.next();
                    theirs.next();
                    (a.0, a.1.saturating_add(b.1))
                }
                (Some(a), Some(b)) if a.0 < b.0 => {
                    ours.next();
                    a
                }
                (_, Some(b)) => {
                    theirs.next();
                    b
                }
                (Some(a), None) => {
                    ours.next();
                    a
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.buckets = merged;
        self.count = self.count.saturating_add(other.count);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum = saturating_sum(self.sum, other.sum);
    }

    /// The number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest value added, exactly.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value added, exactly.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The mean of the values added.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The nearest-rank quantile `q` (in `[0, 1]`) of the values added,
    /// within the documented error of the exact one. `None` when the
    /// histogram is empty or `q` is not in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let n = self.count;
        // The same rank as the exact percentile: ceil(q * n), in [1, n].
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        // The first and the last rank are the minimum and the maximum, which
        // are kept exactly.
        if rank == 1 {
            return Some(self.min);
        }
        if rank == n {
            return Some(self.max);
        }
        let mut seen: u64 = 0;
        for &(index, count) in &self.buckets {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(self.representative(index));
            }
        }
        // The bucket counts add up to the count, so the loop has answered.
        Some(self.max)
    }

    /// The value that stands for a bucket: its geometric midpoint clamped
    /// into `[min, max]`, the minimum for underflow, the maximum for overflow.
    fn representative(&self, index: u16) -> f64 {
        match index {
            UNDERFLOW => self.min,
            OVERFLOW => self.max,
            // Written with max and min, which never panic, rather than clamp.
            _ => midpoint(index).map_or(self.max, |mid| mid.max(self.min).min(self.max)),
        }
    }

    /// The encoding described in the module documentation.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + MAX_VARINT_LEN + 24 + 2 + 4 * self.buckets.len());
        out.push(ENCODING_VERSION);
        put_varint(&mut out, self.count);
        let (min, max, sum) = if self.count == 0 {
            (0.0, 0.0, 0.0)
        } else {
            (self.min, self.max, self.sum)
        };
        for value in [min, max, sum] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        put_varint(&mut out, self.buckets.len() as u64);
        for &(index, count) in &self.buckets {
            put_varint(&mut out, u64::from(index));
            put_varint(&mut out, count);
        }
        out
    }

    /// Decodes and checks an encoding made by [`Histogram::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Histogram, HistogramError> {
        let mut reader = Reader { bytes, pos: 0 };

        let version_at = reader.pos;
        let version = reader.byte("version")?;
        if version != ENCODING_VERSION {
            return Err(HistogramError::UnsupportedVersion {
                offset: version_at,
                version,
            });
        }

        let count = reader.varint("count")?;
        let min_at = reader.pos;
        let min = reader.float("minimum")?;
        let max_at = reader.pos;
        let max = reader.float("maximum")?;
        let sum_at = reader.pos;
        let sum = reader.float("sum")?;
        if count == 0 {
            for (value, offset, what) in [
                (min, min_at, "minimum"),
                (max, max_at, "maximum"),
                (sum, sum_at, "sum"),
            ] {
                if value != 0.0 {
                    return Err(HistogramError::EmptyNotZero { offset, what });
                }
            }
        } else if min > max {
            return Err(HistogramError::MinAboveMax {
                offset: min_at,
                min,
                max,
            });
        }

        let pairs_at = reader.pos;
        let pairs = reader.varint("number of pairs")?;
        if pairs > BUCKETS as u64 {
            return Err(HistogramError::TooManyPairs {
                offset: pairs_at,
                pairs,
                limit: BUCKETS,
            });
        }
        // The check above bounds the allocation to BUCKETS entries.
        let mut buckets: Vec<(u16, u64)> = Vec::with_capacity(pairs as usize);
        let mut total: u128 = 0;
        for _ in 0..pairs {
            let index_at = reader.pos;
            let raw_index = reader.varint("bucket index")?;
            let index = match u16::try_from(raw_index) {
                Ok(index) if index <= OVERFLOW => index,
                _ => {
                    return Err(HistogramError::BucketOutOfRange {
                        offset: index_at,
                        index: raw_index,
                        limit: BUCKETS,
                    })
                }
            };
            if let Some(&(previous, _)) = buckets.last() {
                if index <= previous {
                    return Err(HistogramError::BucketOrder {
                        offset: index_at,
                        index,
                        previous,
                    });
                }
            }
            let count_at = reader.pos;
            let bucket_count = reader.varint("bucket count")?;
            if bucket_count == 0 {
                return Err(HistogramError::ZeroCount {
                    offset: count_at,
                    index,
                });
            }
            total += u128::from(bucket_count);
            buckets.push((index, bucket_count));
        }

        if reader.pos < bytes.len() {
            return Err(HistogramError::TrailingBytes {
                offset: reader.pos,
                remaining: bytes.len() - reader.pos,
            });
        }
        if total != u128::from(count) {
            return Err(HistogramError::CountMismatch {
                offset: pairs_at,
                count,
                buckets: total,
            });
        }
        if let (Some(&(first, _)), Some(&(last, _))) = (buckets.first(), buckets.last()) {
            if bucket_of(min) != first {
                return Err(HistogramError::ExtremeOutsideBucket {
                    offset: min_at,
                    what: "minimum",
                    value: min,
                    index: first,
                });
            }
            if bucket_of(max) != last {
                return Err(HistogramError::ExtremeOutsideBucket {
                    offset: max_at,
                    what: "maximum",
                    value: max,
                    index: last,
                });
            }
        }

        Ok(Histogram {
            count,
            min: if count == 0 { 0.0 } else { min },
            max: if count == 0 { 0.0 } else { max },
            sum: if count == 0 { 0.0 } else { sum },
            buckets,
        })
    }
}

impl FromIterator<f64> for Histogram {
    /// The histogram of the values; NaN and infinities are left out.
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> Self {
        let mut histogram = Histogram::new();
        for value in values {
            histogram.add(value);
        }
        histogram
    }
}

/// Why bytes are not a histogram encoding. Every error carries the byte
/// offset at which the failing field starts.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HistogramError {
    #[error("histogram encoding ends inside the {what} starting at byte {offset}")]
    Truncated { offset: usize, what: &'static str },
    #[error("histogram encoding version {version} at byte {offset} is not supported")]
    UnsupportedVersion { offset: usize, version: u8 },
    #[error(
        "histogram encoding has a malformed or overlong varint for the {what} at byte {offset}"
    )]
    BadVarint { offset: usize, what: &'static str },
    #[error("histogram encoding has a {what} at byte {offset} that is not finite")]
    NotFinite { offset: usize, what: &'static str },
    #[error("histogram encoding of an empty histogram has a non-zero {what} at byte {offset}")]
    EmptyNotZero { offset: usize, what: &'static str },
    #[error("histogram encoding has a minimum {min} above the maximum {max} at byte {offset}")]
    MinAboveMax { offset: usize, min: f64, max: f64 },
    #[error("histogram encoding has {pairs} bucket pairs at byte {offset}, more than the {limit} buckets")]
    TooManyPairs {
        offset: usize,
        pairs: u64,
        limit: usize,
    },
    #[error("histogram encoding has a bucket index {index} at byte {offset}, not below {limit}")]
    BucketOutOfRange {
        offset: usize,
        index: u64,
        limit: usize,
    },
    #[error("histogram encoding has a bucket index {index} at byte {offset} that does not follow {previous}")]
    BucketOrder {
        offset: usize,
        index: u16,
        previous: u16,
    },
    #[error("histogram encoding has a zero count for bucket {index} at byte {offset}")]
    ZeroCount { offset: usize, index: u16 },
    #[error("histogram encoding has bucket counts adding up to {buckets}, not the count {count}, in the pairs at byte {offset}")]
    CountMismatch {
        offset: usize,
        count: u64,
        buckets: u128,
    },
    #[error("histogram encoding has a {what} {value} at byte {offset} outside its bucket {index}")]
    ExtremeOutsideBucket {
        offset: usize,
        what: &'static str,
        value: f64,
        index: u16,
    },
    #[error("histogram encoding has {remaining} bytes left over at byte {offset}")]
    TrailingBytes { offset: usize, remaining: usize },
}

/// Appends an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads the fields of an encoding in order, never past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self, what: &'static str) -> Result<u8, HistogramError> {
        let byte = *self.bytes.get(self.pos).ok_or(HistogramError::Truncated {
            offset: self.pos,
            what,
        })?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads 8 little-endian bytes as a float, which must be finite.
    fn float(&mut self, what: &'static str) -> Result<f64, HistogramError> {
        let start = self.pos;
        let truncated = HistogramError::Truncated {
            offset: start,
            what,
        };
        let end = start.checked_add(8).ok_or(truncated.clone())?;
        let raw: [u8; 8] = self
            .bytes
            .get(start..end)
            .and_then(|slice| slice.try_into().ok())
            .ok_or(truncated)?;
        let value = f64::from_le_bytes(raw);
        if !value.is_finite() {
            return Err(HistogramError::NotFinite {
                offset: start,
                what,
            });
        }
        self.pos = end;
        Ok(value)
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes, rejecting values
    /// above `u64::MAX` and overlong encodings (a last byte of zero).
    fn varint(&mut self, what: &'static str) -> Result<u64, HistogramError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let byte = *self.bytes.get(self.pos).ok_or(HistogramError::Truncated {
                offset: start,
                what,
            })?;
            self.pos += 1;
            let last = byte & 0x80 == 0;
            let bad_top = i == MAX_VARINT_LEN - 1 && byte > 1;
            let overlong = last && byte == 0 && i > 0;
            if bad_top || overlong {
                return Err(HistogramError::BadVarint {
                    offset: start,
                    what,
                });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if last {
                return Ok(value);
            }
        }
        Err(HistogramError::BadVarint {
            offset: start,
            what,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact percentile of the aggregates (`aggregate::percentile`),
    /// copied so that the histogram is checked against the same definition.
    fn exact_percentile(sorted: &[f64], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn sorted(values: &[f64]) -> Vec<f64> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// The relative difference of an estimate from the exact value.
    fn relative_error(estimate: f64, exact: f64) -> f64 {
        ((estimate - exact) / exact).abs()
    }

    /// The percentiles compared everywhere: the three reported ones and
    /// the extremes, plus a fine grid.
    fn percentiles() -> Vec<f64> {
        let mut ps = vec![0.0, 50.0, 95.0, 99.0, 100.0];
        ps.extend((1..200).map(|i| f64::from(i) * 0.5));
        ps
    }

    /// The worst relative error of the histogram's quantiles against the
    /// exact percentiles of in-range values, asserting the documented bound.
    fn worst_error(values: &[f64]) -> f64 {
        let histogram: Histogram = values.iter().copied().collect();
        let sorted = sorted(values);
        let mut worst: f64 = 0.0;
        for p in percentiles() {
            let exact = exact_percentile(&sorted, p);
            let estimate = histogram.quantile(p / 100.0).unwrap();
            let error = relative_error(estimate, exact);
            assert!(
                error <= MAX_RELATIVE_ERROR,
                "p{p}: estimate {estimate}, exact {exact}, error {error}"
            );
            worst = worst.max(error);
        }
        worst
    }

    /// A deterministic linear congruential generator (Knuth's MMIX constants).
    struct Lcg(u64);

    impl Lcg {
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0
        }

        /// A uniform value in `(0, 1)`.
        fn unit(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// A standard normal value (Box-Muller).
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.unit(), self.unit());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    fn uniform(seed: u64, n: usize, low: f64, high: f64) -> Vec<f64> {
        let mut rng = Lcg(seed);
        (0..n).map(|_| low + (high - low) * rng.unit()).collect()
    }

    /// Glass-to-HLS-like latencies: lognormal around `median` ms.
    fn lognormal(seed: u64, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        let mut rng = Lcg(seed);
        (0..n)
            .map(|_| {
                (median.ln() + sigma * rng.normal())
                    .exp()
                    .clamp(MIN_MS, MAX_MS)
            })
            .collect()
    }

    /// Quantiles of two histograms on the grid, for equality checks.
    fn quantiles(histogram: &Histogram) -> Vec<Option<f64>> {
        percentiles()
            .into_iter()
            .map(|p| histogram.quantile(p / 100.0))
            .collect()
    }

    #[test]
    fn log_buckets_just_cover_the_range() {
        let edges = edges();
        assert_eq!(edges[0], MIN_MS);
        assert!(edges[LOG_BUCKETS - 1] <= MAX_MS);
        assert!(edges[LOG_BUCKETS] > MAX_MS);
        let computed = ((MAX_MS / MIN_MS).ln() / GAMMA.ln()).floor() as usize + 1;
        assert_eq!(computed, LOG_BUCKETS);
        assert_eq!(usize::from(OVERFLOW) + 1, BUCKETS);
        for pair in edges.windows(2) {
            assert!((pair[1] / pair[0] - GAMMA).abs() < 1e-12);
        }
    }

    #[test]
    fn every_bucket_edge_is_within_the_bound_of_its_midpoint() {
        let edges = edges();
        let mut worst: f64 = 0.0;
        for i in 0..LOG_BUCKETS {
            let index = u16::try_from(i + 1).unwrap();
            let lower = edges[i];
            // The largest float below the upper edge (positive, so one bit less).
            let top = f64::from_bits(edges[i + 1].to_bits() - 1);
            assert_eq!(bucket_of(lower), index);
            if top <= MAX_MS {
                assert_eq!(bucket_of(top), index);
            }
            let mid = midpoint(index).unwrap();
            for value in [lower, top] {
                worst = worst.max(relative_error(mid, value));
            }
        }
        assert!(worst <= GAMMA.sqrt() - 1.0 + 1e-12, "worst {worst}");
        assert!(worst <= MAX_RELATIVE_ERROR);
        assert_eq!(bucket_of(MAX_MS), LOG_BUCKETS as u16);
        assert_eq!(bucket_of(f64::from_bits(MAX_MS.to_bits() + 1)), OVERFLOW);
        assert_eq!(bucket_of(f64::from_bits(MIN_MS.to_bits() - 1)), UNDERFLOW);
        assert_eq!(midpoint(UNDERFLOW), None);
        assert_eq!(midpoint(OVERFLOW), None);
    }

    #[test]
    fn uniform_percentiles_are_within_one_percent() {
        for (seed, n) in [(1, 30), (2, 1800), (3, 108_000)] {
            let values = uniform(seed, n, 0.1, 1000.0);
            let worst = worst_error(&values);
            println!("uniform n={n}: worst relative error {worst:.5}");
        }
    }

    #[test]
    fn lognormal_percentiles_are_within_one_percent() {
        for (seed, n, median, sigma) in [
            (4, 30, 80.0, 0.3),
            (5, 1800, 800.0, 0.5),
            (6, 108_000, 2500.0, 1.0),
            (7, 1800, 3.0, 2.5),
        ] {
            let values = lognormal(seed, n, median, sigma);
            let worst = worst_error(&values);
            println!(
                "lognormal n={n} median={median} sigma={sigma}: worst relative error {worst:.5}"
            );
        }
    }

    #[test]
    fn merged_seconds_equal_the_whole_minute() {
        let values = lognormal(8, 1800, 600.0, 0.4);
        let whole: Histogram = values.iter().copied().collect();
        let mut minute = Histogram::new();
        for second in values.chunks(30) {
            let second: Histogram = second.iter().copied().collect();
            // Through the encoding, as the roll-ups read them from the database.
            let stored = Histogram::from_bytes(&second.to_bytes()).unwrap();
            minute.merge(&stored);
        }
        assert_eq!(minute.count(), whole.count());
        assert_eq!(minute.min(), whole.min());
        assert_eq!(minute.max(), whole.max());
        assert_eq!(minute.buckets, whole.buckets);
        assert_eq!(quantiles(&minute), quantiles(&whole));
        let (a, b) = (minute.mean().unwrap(), whole.mean().unwrap());
        assert!(relative_error(a, b) < 1e-12);

        // An hour of minutes, merged in another grouping, is the same again.
        let mut hour = Histogram::new();
        let mut whole_hour = Histogram::new();
        for m in 0..60 {
            let values = lognormal(100 + m, 1800, 600.0, 0.4);
            let minute: Histogram = values.iter().copied().collect();
            hour.merge(&minute);
            values.iter().for_each(|&v| {
                whole_hour.add(v);
            });
        }
        assert_eq!(hour.buckets, whole_hour.buckets);
        assert_eq!(quantiles(&hour), quantiles(&whole_hour));
    }

    #[test]
    fn merge_with_empty_is_identity() {
        let values = uniform(9, 100, 1.0, 50.0);
        let histogram: Histogram = values.iter().copied().collect();
        let mut left = Histogram::new();
        left.merge(&histogram);
        assert_eq!(left, histogram);
        let mut right = histogram.clone();
        right.merge(&Histogram::new());
        assert_eq!(right, histogram);
    }

    #[test]
    fn encoding_round_trips() {
        let cases: Vec<Histogram> = vec![
            Histogram::new(),
            [42.5].into_iter().collect(),
            [
                -3.0,
                0.0,
                0.05,
                0.1,
                1.0,
                999_999.0,
                1_000_000.0,
                2e6,
                1e300,
            ]
            .into_iter()
            .collect(),
            lognormal(10, 1800, 700.0, 0.5).into_iter().collect(),
            uniform(11, 5000, -1.0, 2e6).into_iter().collect(),
        ];
        for histogram in cases {
            let bytes = histogram.to_bytes();
            let decoded = Histogram::from_bytes(&bytes).unwrap();
            assert_eq!(decoded, histogram);
            assert_eq!(decoded.to_bytes(), bytes);
        }
    }

    #[test]
    fn a_second_encodes_compactly() {
        let second: Histogram = lognormal(12, 30, 900.0, 0.2).into_iter().collect();
        let bytes = second.to_bytes();
        // Version, count, three floats, pair count, and at most 30 pairs of
        // a two-byte index and a one-byte count.
        assert!(
            bytes.len() <= 1 + 1 + 24 + 1 + 30 * 3,
            "{} bytes",
            bytes.len()
        );
    }

    #[test]
    fn truncated_encodings_are_errors_at_every_length() {
        let histogram: Histogram = lognormal(13, 300, 700.0, 1.0)
            .into_iter()
            .chain([-1.0, 5e6])
            .collect();
        let bytes = histogram.to_bytes();
        for len in 0..bytes.len() {
            match Histogram::from_bytes(&bytes[..len]) {
                Err(HistogramError::Truncated { offset, .. }) => assert!(offset <= len),
                other => panic!("length {len}: {other:?}"),
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Histogram::from_bytes(&longer),
            Err(HistogramError::TrailingBytes {
                offset: bytes.len(),
                remaining: 1
            })
        );
    }

    #[test]
    fn garbage_and_corrupted_encodings_never_panic() {
        let mut rng = Lcg(14);
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if !bytes.is_empty() && rng.next_u64() % 2 == 0 {
                bytes[0] = ENCODING_VERSION;
            }
            check_decoded(&bytes);
        }
        let histogram: Histogram = uniform(15, 200, -1.0, 2e6).into_iter().collect();
        let bytes = histogram.to_bytes();
        for i in 0..bytes.len() {
            for replacement in [0x00, 0x01, 0x7f, 0x80, 0xff, bytes[i] ^ 0x01] {
                let mut corrupted = bytes.clone();
                corrupted[i] = replacement;
                check_decoded(&corrupted);
            }
        }
    }

    /// Decodes bytes; whatever decodes must behave and re-encode.
    fn check_decoded(bytes: &[u8]) {
        if let Ok(histogram) = Histogram::from_bytes(bytes) {
            let _ = quantiles(&histogram);
            let _ = histogram.mean();
            let again = Histogram::from_bytes(&histogram.to_bytes()).unwrap();
            assert_eq!(again, histogram);
        }
    }

    /// Builds an encoding by hand from its fields.
    fn encode(count: u64, min: f64, max: f64, sum: f64, pairs: &[(u64, u64)]) -> Vec<u8> {
        let mut out = vec![ENCODING_VERSION];
        put_varint(&mut out, count);
        for value in [min, max, sum] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        put_varint(&mut out, pairs.len() as u64);
        for &(index, count) in pairs {
            put_varint(&mut out, index);
            put_varint(&mut out, count);
        }
        out
    }

    #[test]
    fn invalid_encodings_are_rejected_with_offsets() {
        let b10 = u64::from(bucket_of(10.0));
        let b20 = u64::from(bucket_of(20.0));
        assert!(Histogram::from_bytes(&encode(2, 10.0, 20.0, 30.0, &[(b10, 1), (b20, 1)])).is_ok());

        let mut v2 = encode(0, 0.0, 0.0, 0.0, &[]);
        v2[0] = 2;
        assert_eq!(
            Histogram::from_bytes(&v2),
            Err(HistogramError::UnsupportedVersion {
                offset: 0,
                version: 2
            })
        );
        assert_eq!(
            Histogram::from_bytes(&encode(2, f64::NAN, 20.0, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::NotFinite {
                offset: 2,
                what: "minimum"
            })
        );
        assert_eq!(
            Histogram::from_bytes(&encode(2, 10.0, f64::NAN, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::NotFinite {
                offset: 10,
                what: "maximum"
            })
        );
        assert_eq!(
            Histogram::from_bytes(&encode(2, 10.0, f64::INFINITY, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::NotFinite {
                offset: 10,
                what: "maximum"
            })
        );
        assert_eq!(
            Histogram::from_bytes(&encode(2, 10.0, 20.0, f64::NAN, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::NotFinite {
                offset: 18,
                what: "sum"
            })
        );
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 20.0, 10.0, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::MinAboveMax { offset: 2, .. })
        ));
        assert_eq!(
            Histogram::from_bytes(&encode(0, 1.0, 0.0, 0.0, &[])),
            Err(HistogramError::EmptyNotZero {
                offset: 2,
                what: "minimum"
            })
        );
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 10.0, 20.0, 30.0, &[(BUCKETS as u64, 2)])),
            Err(HistogramError::BucketOutOfRange { offset: 27, index, .. }) if index == BUCKETS as u64
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 10.0, 20.0, 30.0, &[(u64::MAX, 2)])),
            Err(HistogramError::BucketOutOfRange { offset: 27, .. })
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 10.0, 20.0, 30.0, &[(b20, 1), (b10, 1)])),
            Err(HistogramError::BucketOrder { .. })
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 10.0, 20.0, 30.0, &[(b10, 1), (b10, 1)])),
            Err(HistogramError::BucketOrder { .. })
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 10.0, 20.0, 30.0, &[(b10, 2), (b20, 0)])),
            Err(HistogramError::ZeroCount { .. })
        ));
        assert_eq!(
            Histogram::from_bytes(&encode(3, 10.0, 20.0, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::CountMismatch {
                offset: 26,
                count: 3,
                buckets: 2
            })
        );
        assert!(matches!(
            Histogram::from_bytes(&encode(
                1,
                10.0,
                20.0,
                30.0,
                &[(b10, u64::MAX), (b20, u64::MAX)]
            )),
            Err(HistogramError::CountMismatch { .. })
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(1, 10.0, 10.0, 10.0, &[])),
            Err(HistogramError::CountMismatch { .. })
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 5.0, 20.0, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::ExtremeOutsideBucket {
                offset: 2,
                what: "minimum",
                ..
            })
        ));
        assert!(matches!(
            Histogram::from_bytes(&encode(2, 10.0, 40.0, 30.0, &[(b10, 1), (b20, 1)])),
            Err(HistogramError::ExtremeOutsideBucket {
                offset: 10,
                what: "maximum",
                ..
            })
        ));

        // More pairs than buckets is refused before anything is allocated.
        let mut many = vec![ENCODING_VERSION, 1];
        many.extend_from_slice(&[0; 24]);
        put_varint(&mut many, u64::MAX);
        assert!(matches!(
            Histogram::from_bytes(&many),
            Err(HistogramError::TooManyPairs {
                offset: 26,
                pairs: u64::MAX,
                ..
            })
        ));

        // Varints: eleven continuation bytes, a tenth byte above 1, overlong.
        let mut long = vec![ENCODING_VERSION];
        long.extend_from_slice(&[0xff; 11]);
        assert_eq!(
            Histogram::from_bytes(&long),
            Err(HistogramError::BadVarint {
                offset: 1,
                what: "count"
            })
        );
        let mut top = vec![ENCODING_VERSION];
        top.extend_from_slice(&[0xff; 9]);
        top.push(0x02);
        assert_eq!(
            Histogram::from_bytes(&top),
            Err(HistogramError::BadVarint {
                offset: 1,
                what: "count"
            })
        );
        assert_eq!(
            Histogram::from_bytes(&[ENCODING_VERSION, 0x80, 0x00]),
            Err(HistogramError::BadVarint {
                offset: 1,
                what: "count"
            })
        );
        let mut max = vec![ENCODING_VERSION];
        put_varint(&mut max, u64::MAX);
        assert_eq!(max.len(), 1 + MAX_VARINT_LEN);
        assert!(matches!(
            Histogram::from_bytes(&max),
            Err(HistogramError::Truncated {
                offset: 11,
                what: "minimum"
            })
        ));

        // The messages name the offset and the field.
        let message = HistogramError::Truncated {
            offset: 7,
            what: "sum",
        }
        .to_string();
        assert!(
            message.contains("byte 7") && message.contains("sum"),
            "{message}"
        );
    }

    #[test]
    fn negative_zero_and_huge_values() {
        let mut histogram = Histogram::new();
        for value in [-3.0, -0.0, 0.0, 0.05, 5e6, 1e300] {
            assert!(histogram.add(value));
        }
        assert_eq!(histogram.count(), 6);
        assert_eq!(histogram.min(), Some(-3.0));
        assert_eq!(histogram.max(), Some(1e300));
        // Underflow answers the minimum, overflow the maximum.
        assert_eq!(histogram.quantile(0.0), Some(-3.0));
        assert_eq!(histogram.quantile(0.5), Some(-3.0));
        assert_eq!(histogram.quantile(0.7), Some(1e300));
        assert_eq!(histogram.quantile(1.0), Some(1e300));
        assert_eq!(histogram.buckets, vec![(UNDERFLOW, 4), (OVERFLOW, 2)]);

        // The sum saturates rather than becoming infinite, and still encodes.
        let mut huge = Histogram::new();
        assert!(huge.add(f64::MAX));
        assert!(huge.add(f64::MAX));
        assert_eq!(huge.mean(), Some(f64::MAX / 2.0));
        let mut merged = huge.clone();
        merged.merge(&huge);
        assert_eq!(merged.mean(), Some(f64::MAX / 4.0));
        assert_eq!(Histogram::from_bytes(&merged.to_bytes()), Ok(merged));

        // Values at the edges of the range.
        let edges: Histogram = [MIN_MS, MAX_MS].into_iter().collect();
        assert_eq!(edges.buckets, vec![(1, 1), (LOG_BUCKETS as u16, 1)]);
        assert_eq!(edges.quantile(0.0), Some(MIN_MS));
        assert_eq!(edges.quantile(1.0), Some(MAX_MS));
    }

    #[test]
    fn nan_and_infinities_are_rejected() {
        let mut histogram: Histogram = [1.0, 2.0].into_iter().collect();
        let before = histogram.clone();
        for value in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(!histogram.add(value));
        }
        assert_eq!(histogram, before);
        assert_eq!(histogram.count(), 2);
    }

    #[test]
    fn empty_histogram_has_no_figures() {
        let empty = Histogram::new();
        assert!(empty.is_empty());
        assert_eq!(empty.count(), 0);
        assert_eq!(empty.quantile(0.5), None);
        assert_eq!(empty.quantile(0.0), None);
        assert_eq!(empty.quantile(1.0), None);
        assert_eq!(empty.min(), None);
        assert_eq!(empty.max(), None);
        assert_eq!(empty.mean(), None);
    }

    #[test]
    fn quantile_outside_zero_to_one_is_none() {
        let histogram: Histogram = [1.0, 2.0, 3.0].into_iter().collect();
        for q in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(histogram.quantile(q), None);
        }
    }

    #[test]
    fn small_counts_are_exact_at_the_extremes() {
        let one: Histogram = [12.345].into_iter().collect();
        for q in [0.0, 0.25, 0.5, 0.99, 1.0] {
            assert_eq!(one.quantile(q), Some(12.345));
        }
        assert_eq!(one.mean(), Some(12.345));
        let two: Histogram = [12.345, 678.9].into_iter().collect();
        assert_eq!(two.quantile(0.0), Some(12.345));
        assert_eq!(two.quantile(0.5), Some(12.345));
        assert_eq!(two.quantile(0.51), Some(678.9));
        assert_eq!(two.quantile(1.0), Some(678.9));
    }

    /// A latency in range, spread evenly on a log scale.
    fn in_range() -> impl Strategy<Value = f64> {
        (-1.0f64..6.0).prop_map(|e| 10f64.powf(e).clamp(MIN_MS, MAX_MS))
    }

    /// Any finite latency, out-of-range ones included.
    fn any_latency() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => in_range(),
            1 => -10.0f64..MIN_MS,
            1 => MAX_MS..1e9,
        ]
    }

    proptest! {
        #[test]
        fn merge_equals_the_histogram_of_the_union(
            a in prop::collection::vec(any_latency(), 0..300),
            b in prop::collection::vec(any_latency(), 0..300),
        ) {
            let mut merged: Histogram = a.iter().copied().collect();
            merged.merge(&b.iter().copied().collect());
            let whole: Histogram = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(merged.count(), whole.count());
            prop_assert_eq!(merged.min(), whole.min());
            prop_assert_eq!(merged.max(), whole.max());
            prop_assert_eq!(&merged.buckets, &whole.buckets);
            prop_assert_eq!(quantiles(&merged), quantiles(&whole));
        }

        #[test]
        fn quantiles_are_within_one_percent_of_exact(
            values in prop::collection::vec(in_range(), 1..500),
        ) {
            let histogram: Histogram = values.iter().copied().collect();
            let sorted = sorted(&values);
            for p in percentiles() {
                let exact = exact_percentile(&sorted, p);
                let estimate = histogram.quantile(p / 100.0).unwrap();
                prop_assert!(
                    relative_error(estimate, exact) <= MAX_RELATIVE_ERROR,
                    "p{}: estimate {}, exact {}", p, estimate, exact
                );
            }
        }

        #[test]
        fn out_of_range_quantiles_are_the_extremes(
            values in prop::collection::vec(any_latency(), 1..300),
        ) {
            let histogram: Histogram = values.iter().copied().collect();
            let sorted = sorted(&values);
            let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
            let n = sorted.len();
            for p in percentiles() {
                let exact = exact_percentile(&sorted, p);
                let estimate = histogram.quantile(p / 100.0).unwrap();
                // The first and the last rank are the exact extremes, which
                // comes before the underflow and overflow rules: of
                // [-2.4, 0.0], p50 is -2.4 and p99 is 0.0, both exact.
                let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
                if rank == 1 {
                    prop_assert_eq!(estimate, min);
                } else if rank == n {
                    prop_assert_eq!(estimate, max);
                } else if exact < MIN_MS {
                    prop_assert_eq!(estimate, min);
                } else if exact > MAX_MS {
                    prop_assert_eq!(estimate, max);
                } else {
                    prop_assert!(relative_error(estimate, exact) <= MAX_RELATIVE_ERROR);
                }
            }
        }

        #[test]
        fn encoding_round_trips_any_histogram(
            values in prop::collection::vec(any_latency(), 0..300),
        ) {
            let histogram: Histogram = values.iter().copied().collect();
            let bytes = histogram.to_bytes();
            prop_assert_eq!(Histogram::from_bytes(&bytes), Ok(histogram));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            check_decoded(&bytes);
            let mut versioned = vec![ENCODING_VERSION];
            versioned.extend_from_slice(&bytes);
            check_decoded(&versioned);
        }
    }
}
