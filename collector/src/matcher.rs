//! Matching frames seen over HLS to the agent's frame records, and the
//! per-frame latency figures (DESIGN.md, "Latency figures").
//!
//! A [`RecordStore`] keeps one stream's recent frame records (bounded in
//! time and count), keyed by `(seq, capture_us)` — how DESIGN.md identifies
//! a frame — and by fingerprint, for origins that strip SEI. Duplicates
//! (QoS 1 redelivery) are recognised and ignored. Plain state: no I/O, no
//! clock of its own; every call is given the time.

use std::collections::{HashMap, VecDeque};

use glasswatch_common::fingerprint;
use glasswatch_common::messages::FrameRecord;

use crate::clock::ClockOffset;

/// A frame record as stored, with its fingerprint parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub record: FrameRecord,
    pub fingerprint: Option<u64>,
    /// A frame over HLS was matched to this record.
    pub seen: bool,
}

/// What happened to an inserted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    New,
    Duplicate,
}

/// How a frame was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    Stamp,
    Fingerprint,
}

/// One stream's recent frame records.
#[derive(Debug)]
pub struct RecordStore {
    retention_us: i64,
    max_records: usize,
    by_id: HashMap<(u64, i64), Stored>,
    by_fingerprint: HashMap<u64, (u64, i64)>,
    /// The latest record of each `seq` (any session).
    by_seq: HashMap<u64, i64>,
    /// Insertion order with capture time, for eviction.
    order: VecDeque<(i64, (u64, i64))>,
    /// Records not yet handed out by [`RecordStore::settle`], in insertion order.
    unsettled: VecDeque<(i64, (u64, i64))>,
    duplicates: u64,
}

impl RecordStore {
    /// Keeps records whose capture time is within `retention_us` of now, at
    /// most `max_records` of them (the oldest go first).
    pub fn new(retention_us: i64, max_records: usize) -> RecordStore {
        RecordStore {
            retention_us,
            max_records: max_records.max(1),
            by_id: HashMap::new(),
            by_fingerprint: HashMap::new(),
            by_seq: HashMap::new(),
            order: VecDeque::new(),
            unsettled: VecDeque::new(),
            duplicates: 0,
        }
    }

    /// Stores a record received at `now_us` (collector clock). Retention
    /// counts from arrival: the record's own times are on the device clock,
    /// which may be far off until clock sync has measured it.
    pub fn insert(&mut self, record: FrameRecord, now_us: i64) -> Insert {
        self.evict(now_us);
        let key = (record.seq, record.capture_us);
        if self.by_id.contains_key(&key) {
            self.duplicates += 1;
            return Insert::Duplicate;
        }
        if self.by_id.len() == self.max_records {
            self.evict_oldest();
        }
        let fp = fingerprint::from_hex(&record.fingerprint);
        if let Some(fp) = fp {
            self.by_fingerprint.insert(fp, key);
        }
        self.order.push_back((now_us, key));
        self.unsettled.push_back((now_us, key));
        self.by_seq.insert(key.0, key.1);
        self.by_id.insert(
            key,
            Stored {
                record,
                fingerprint: fp,
                seen: false,
            },
        );
        Insert::New
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            if let Some(s) = self.by_id.remove(&key) {
                if let Some(fp) = s.fingerprint {
                    if self.by_fingerprint.get(&fp) == Some(&key) {
                        self.by_fingerprint.remove(&fp);
                    }
                }
                if self.by_seq.get(&key.0) == Some(&key.1) {
                    self.by_seq.remove(&key.0);
                }
            }
        }
    }

    /// Drops records stored more than the retention ago.
    pub fn evict(&mut self, now_us: i64) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now_us.saturating_sub(*at) > self.retention_us)
        {
            self.evict_oldest();
        }
    }

    /// The record of a frame whose stamp was read, else the one with its fingerprint.
    pub fn find(
        &self,
        stamp: Option<(u64, i64)>,
        fingerprint: Option<u64>,
    ) -> Option<(&Stored, MatchedBy)> {
        if let Some(s) = stamp.and_then(|k| self.by_id.get(&k)) {
            return Some((s, MatchedBy::Stamp));
        }
        fingerprint
            .and_then(|fp| self.by_fingerprint.get(&fp))
            .and_then(|k| self.by_id.get(k))
            .map(|s| (s, MatchedBy::Fingerprint))
    }

    /// Like [`RecordStore::find`], and marks the record as seen over HLS.
    pub fn take_match(
        &mut self,
        stamp: Option<(u64, i64)>,
        fingerprint: Option<u64>,
    ) -> Option<(&Stored, MatchedBy)> {
        let (key, by) = match stamp.filter(|k| self.by_id.contains_key(k)) {
            Some(k) => (k, MatchedBy::Stamp),
            None => (
                *fingerprint.and_then(|fp| self.by_fingerprint.get(&fp))?,
                MatchedBy::Fingerprint,
            ),
        };
        let stored = self.by_id.get_mut(&key)?;
        stored.seen = true;
        Some((stored, by))
    }

    /// Whether a record with this `seq` is held (of any session).
    pub fn has_seq(&self, seq: u64) -> bool {
        self.by_seq.contains_key(&seq)
    }

    /// The records stored before `cutoff_us` that were not handed out yet,
    /// each once, with whether HLS delivered their frame: a record that was
    /// not seen by then is a frame that never reached HLS. Records evicted
    /// before they settle are not returned.
    pub fn settle(&mut self, cutoff_us: i64) -> Vec<&Stored> {
        let mut keys = Vec::new();
        while self
            .unsettled
            .front()
            .is_some_and(|(at, _)| *at <= cutoff_us)
        {
            if let Some((_, key)) = self.unsettled.pop_front() {
                keys.push(key);
            }
        }
        keys.iter().filter_map(|k| self.by_id.get(k)).collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Duplicate records ignored so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// One frame's latency figures, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameLatency {
    pub seq: u64,
    pub capture_us: i64,
    /// encoded − capture (device clock).
    pub encode_ms: f64,
    /// sent − encoded (device clock).
    pub publish_ms: f64,
    /// available − sent, across clocks (offset-corrected when known).
    pub origin_delivery_ms: f64,
    /// available − capture, across clocks: the headline figure.
    pub glass_to_hls_ms: f64,
    /// ± of the cross-clock figures: the clock offset's uncertainty plus
    /// what the reader adds (half a classic-HLS reload interval).
    pub uncertainty_ms: f64,
    pub matched_by: MatchedBy,
    /// Whether a clock offset was applied.
    pub corrected: bool,
}

/// The figures of a matched frame that was fully available at
/// `available_us` (collector clock).
pub fn latency(
    stored: &Stored,
    matched_by: MatchedBy,
    available_us: i64,
    offset: Option<ClockOffset>,
    reader_uncertainty_us: i64,
) -> FrameLatency {
    let r = &stored.record;
    let ms = |us: i64| us as f64 / 1000.0;
    let to_collector = |t: i64| offset.map(|o| o.to_collector(t)).unwrap_or(t);
    FrameLatency {
        seq: r.seq,
        capture_us: r.capture_us,
        encode_ms: ms(r.encoded_us.saturating_sub(r.capture_us)),
        publish_ms: ms(r.sent_us.saturating_sub(r.encoded_us)),
        origin_delivery_ms: ms(available_us.saturating_sub(to_collector(r.sent_us))),
        glass_to_hls_ms: ms(available_us.saturating_sub(to_collector(r.capture_us))),
        uncertainty_ms: ms(offset.map(|o| o.uncertainty_us).unwrap_or(0) + reader_uncertainty_us),
        matched_by,
        corrected: offset.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, capture_us: i64, fp: u64) -> FrameRecord {
        FrameRecord {
            session: "0011223344556677".into(),
            seq,
            capture_us,
            encoded_us: capture_us + 5_000,
            sent_us: capture_us + 6_000,
            bytes: 1000,
            keyframe: seq % 15 == 0,
            fingerprint: fingerprint::to_hex(fp),
        }
    }

    #[test]
    fn matches_by_stamp_then_by_fingerprint_and_ignores_duplicates() {
        let mut s = RecordStore::new(30_000_000, 10_000);
        assert_eq!(s.insert(record(1, 1_000, 0xaa), 2_000), Insert::New);
        assert_eq!(s.insert(record(1, 1_000, 0xaa), 2_500), Insert::Duplicate);
        assert_eq!(s.duplicates(), 1);
        let (_, by) = s.find(Some((1, 1_000)), None).unwrap();
        assert_eq!(by, MatchedBy::Stamp);
        // SEI stripped: the fingerprint still finds it.
        let (got, by) = s.find(None, Some(0xaa)).unwrap();
        assert_eq!((got.record.seq, by), (1, MatchedBy::Fingerprint));
        // A stamp from another session (same seq, other capture time) does not match.
        assert!(s.find(Some((1, 9_999)), None).is_none());
    }

    #[test]
    fn retention_and_capacity_bound_the_store() {
        let mut s = RecordStore::new(1_000_000, 3);
        for i in 0..5u64 {
            s.insert(record(i, i as i64 * 1000, i), i as i64 * 1000);
        }
        assert_eq!(s.len(), 3);
        assert!(s.find(Some((0, 0)), None).is_none());
        assert!(s.find(None, Some(0)).is_none());
        s.evict(10_000_000);
        assert!(s.is_empty());
        // Retention is by arrival, whatever the device clock says (a device
        // without NTP may be days off until clock sync measures it).
        assert_eq!(s.insert(record(9, 0, 9), 10_000_000), Insert::New);
    }

    #[test]
    fn settle_reports_each_record_once_with_whether_it_was_seen() {
        let mut s = RecordStore::new(30_000_000, 100);
        for i in 0..4u64 {
            s.insert(record(i, i as i64 * 1000, 100 + i), i as i64 * 1000);
        }
        assert!(s.take_match(Some((1, 1000)), None).is_some());
        assert!(s.take_match(None, Some(102)).is_some());
        assert!(s.has_seq(3) && !s.has_seq(4));
        let settled: Vec<_> = s
            .settle(2_000)
            .iter()
            .map(|r| (r.record.seq, r.seen))
            .collect();
        assert_eq!(settled, vec![(0, false), (1, true), (2, true)]);
        assert!(s.settle(2_000).is_empty());
        let settled: Vec<_> = s
            .settle(9_000)
            .iter()
            .map(|r| (r.record.seq, r.seen))
            .collect();
        assert_eq!(settled, vec![(3, false)]);
    }

    #[test]
    fn latency_applies_the_clock_offset_and_its_uncertainty() {
        let mut s = RecordStore::new(30_000_000, 100);
        // Device clock 2 s ahead of the collector's.
        let capture_dev = 10_002_000_000i64;
        s.insert(record(7, capture_dev, 1), 10_000_100_000);
        let (st, by) = s.find(Some((7, capture_dev)), None).unwrap();
        let off = ClockOffset {
            offset_us: 2_000_000_000 / 1000,
            uncertainty_us: 300,
        };
        // Available 45 ms after capture on the collector's clock.
        let l = latency(st, by, 10_000_045_000, Some(off), 50_000);
        assert!((l.glass_to_hls_ms - 45.0).abs() < 1e-9, "{l:?}");
        assert!((l.encode_ms - 5.0).abs() < 1e-9 && (l.publish_ms - 1.0).abs() < 1e-9);
        assert!((l.origin_delivery_ms - 39.0).abs() < 1e-9);
        assert!((l.uncertainty_ms - 50.3).abs() < 1e-9);
        assert!(l.corrected);
    }
}
