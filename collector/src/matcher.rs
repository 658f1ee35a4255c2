//! Matching frames seen over HLS to the agent's frame records, and the
//! per-frame latency figures (DESIGN.md, "Latency figures").
//!
//! A [`RecordStore`] keeps one stream's recent frame records (bounded in
//! time and count), found by `(seq, capture_us)` — how DESIGN.md identifies
//! a frame — and by fingerprint, for origins that strip SEI. Duplicates
//! (QoS 1 redelivery) are recognised and ignored. Plain state: no I/O, no
//! clock of its own; every call is given the time.
//!
//! Memory is what bounds how many streams one collector watches (30 s at
//! 30 fps is about 900 records per stream), so records are kept compact
//! ([`Stored`], 64 bytes) in one ring in arrival order, and the two indexes
//! map a `seq` and a fingerprint to a position in it (8 bytes an entry).

use std::collections::{HashMap, VecDeque};

use glasswatch_common::fingerprint;
use glasswatch_common::messages::FrameRecord;

use crate::clock::ClockOffset;

/// A frame record as kept: the identity and times of the frame, compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The record's `session`, as a number (0 when it was not 16 hex digits).
    pub session: u64,
    pub seq: u64,
    pub capture_us: i64,
    pub encoded_us: i64,
    pub sent_us: i64,
    /// The fingerprint (see [`Stored::fingerprint`]).
    fp: u64,
    /// When the record arrived (collector clock).
    arrived_us: i64,
    /// The record's fingerprint was 16 hex digits.
    has_fp: bool,
    /// A frame over HLS was matched to this record.
    pub seen: bool,
}

impl Stored {
    /// The fingerprint, when the record's was 16 hex digits.
    pub fn fingerprint(&self) -> Option<u64> {
        self.has_fp.then_some(self.fp)
    }
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
    /// The records in arrival order; `ring[i]` has the position `base + i`.
    ring: VecDeque<Stored>,
    /// Position of `ring[0]`; positions only grow (wrapping u32 arithmetic).
    base: u32,
    /// Position of the first record [`RecordStore::settle`] has not handed out.
    settled: u32,
    /// The latest record of each `seq` (any session), by the seq's low 32
    /// bits (a found record's full seq is always checked).
    by_seq: HashMap<u32, u32>,
    /// The latest record of each fingerprint, by its low 32 bits (checked
    /// likewise).
    by_fingerprint: HashMap<u32, u32>,
    duplicates: u64,
}

/// The low 32 bits, the index key (the whole value is checked on a hit).
fn low(v: u64) -> u32 {
    v as u32
}

impl RecordStore {
    /// Keeps records that arrived within `retention_us` of now, at most
    /// `max_records` of them (the oldest go first).
    pub fn new(retention_us: i64, max_records: usize) -> RecordStore {
        RecordStore {
            retention_us,
            max_records: max_records.max(1),
            ring: VecDeque::new(),
            base: 0,
            settled: 0,
            by_seq: HashMap::new(),
            by_fingerprint: HashMap::new(),
            duplicates: 0,
        }
    }

    fn get(&self, position: u32) -> Option<&Stored> {
        self.ring.get(position.wrapping_sub(self.base) as usize)
    }

    /// The position of the record `(seq, capture_us)`, if held.
    fn position(&self, seq: u64, capture_us: i64) -> Option<u32> {
        let pos = *self.by_seq.get(&low(seq))?;
        if self
            .get(pos)
            .is_some_and(|r| r.seq == seq && r.capture_us == capture_us)
        {
            return Some(pos);
        }
        // The seq was reused by a later session (an agent restart): look
        // through the ring, newest first.
        self.ring
            .iter()
            .rposition(|r| r.seq == seq && r.capture_us == capture_us)
            .map(|i| self.base.wrapping_add(i as u32))
    }

    /// Stores a record received at `now_us` (collector clock). Retention
    /// counts from arrival: the record's own times are on the device clock,
    /// which may be far off until clock sync has measured it.
    pub fn insert(&mut self, record: FrameRecord, now_us: i64) -> Insert {
        self.evict(now_us);
        if self.position(record.seq, record.capture_us).is_some() {
            self.duplicates += 1;
            return Insert::Duplicate;
        }
        if self.ring.len() >= self.max_records {
            self.pop_oldest();
        }
        let fp = fingerprint::from_hex(&record.fingerprint);
        let stored = Stored {
            session: fingerprint::from_hex(&record.session).unwrap_or(0),
            seq: record.seq,
            capture_us: record.capture_us,
            encoded_us: record.encoded_us,
            sent_us: record.sent_us,
            fp: fp.unwrap_or(0),
            has_fp: fp.is_some(),
            arrived_us: now_us,
            seen: false,
        };
        let pos = self.base.wrapping_add(self.ring.len() as u32);
        self.by_seq.insert(low(stored.seq), pos);
        if let Some(fp) = stored.fingerprint() {
            self.by_fingerprint.insert(low(fp), pos);
        }
        self.ring.push_back(stored);
        Insert::New
    }

    fn pop_oldest(&mut self) {
        let pos = self.base;
        if let Some(r) = self.ring.pop_front() {
            if self.by_seq.get(&low(r.seq)) == Some(&pos) {
                self.by_seq.remove(&low(r.seq));
            }
            if let Some(fp) = r.fingerprint() {
                if self.by_fingerprint.get(&low(fp)) == Some(&pos) {
                    self.by_fingerprint.remove(&low(fp));
                }
            }
            if self.settled == pos {
                self.settled = pos.wrapping_add(1);
            }
            self.base = pos.wrapping_add(1);
        }
        if self.ring.is_empty() {
            // Give back what a burst grew.
            self.ring.shrink_to(64);
        }
    }

    /// Drops records that arrived more than the retention ago.
    pub fn evict(&mut self, now_us: i64) {
        while self
            .ring
            .front()
            .is_some_and(|r| now_us.saturating_sub(r.arrived_us) > self.retention_us)
        {
            self.pop_oldest();
        }
    }

    fn find_position(
        &self,
        stamp: Option<(u64, i64)>,
        fingerprint: Option<u64>,
    ) -> Option<(u32, MatchedBy)> {
        if let Some(pos) = stamp.and_then(|(seq, capture)| self.position(seq, capture)) {
            return Some((pos, MatchedBy::Stamp));
        }
        let fp = fingerprint?;
        let pos = *self.by_fingerprint.get(&low(fp))?;
        self.get(pos)
            .filter(|r| r.fingerprint() == Some(fp))
            .map(|_| (pos, MatchedBy::Fingerprint))
    }

    /// The record of a frame whose stamp was read, else the one with its fingerprint.
    pub fn find(
        &self,
        stamp: Option<(u64, i64)>,
        fingerprint: Option<u64>,
    ) -> Option<(&Stored, MatchedBy)> {
        let (pos, by) = self.find_position(stamp, fingerprint)?;
        self.get(pos).map(|r| (r, by))
    }

    /// Like [`RecordStore::find`], and marks the record as seen over HLS.
    pub fn take_match(
        &mut self,
        stamp: Option<(u64, i64)>,
        fingerprint: Option<u64>,
    ) -> Option<(Stored, MatchedBy)> {
        let (pos, by) = self.find_position(stamp, fingerprint)?;
        let index = pos.wrapping_sub(self.base) as usize;
        let r = self.ring.get_mut(index)?;
        r.seen = true;
        Some((*r, by))
    }

    /// Whether a record with this `seq` is held (of any session).
    pub fn has_seq(&self, seq: u64) -> bool {
        self.by_seq
            .get(&low(seq))
            .and_then(|pos| self.get(*pos))
            .is_some_and(|r| r.seq == seq)
    }

    /// The records that arrived before `cutoff_us` and were not handed out
    /// yet, each once, with whether HLS delivered their frame: a record that
    /// was not seen by then is a frame that never reached HLS. Records
    /// evicted before they settle are not returned.
    pub fn settle(&mut self, cutoff_us: i64) -> Vec<Stored> {
        let mut out = Vec::new();
        while let Some(r) = self.get(self.settled).filter(|r| r.arrived_us <= cutoff_us) {
            out.push(*r);
            self.settled = self.settled.wrapping_add(1);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Duplicate records ignored so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// One frame's latency figures, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameLatency {
    /// The record's session (as in [`Stored::session`]).
    pub session: u64,
    pub seq: u64,
    pub capture_us: i64,
    /// When the frame's part or segment was fully received (collector clock).
    pub available_us: i64,
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
    let r = stored;
    let ms = |us: i64| us as f64 / 1000.0;
    let to_collector = |t: i64| offset.map(|o| o.to_collector(t)).unwrap_or(t);
    FrameLatency {
        session: r.session,
        seq: r.seq,
        capture_us: r.capture_us,
        available_us,
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
        assert_eq!((got.seq, by), (1, MatchedBy::Fingerprint));
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
        let settled: Vec<_> = s.settle(2_000).iter().map(|r| (r.seq, r.seen)).collect();
        assert_eq!(settled, vec![(0, false), (1, true), (2, true)]);
        assert!(s.settle(2_000).is_empty());
        let settled: Vec<_> = s.settle(9_000).iter().map(|r| (r.seq, r.seen)).collect();
        assert_eq!(settled, vec![(3, false)]);
    }

    #[test]
    fn a_seq_reused_by_a_new_session_keeps_both_findable() {
        let mut s = RecordStore::new(30_000_000, 100);
        s.insert(record(5, 1_000, 1), 1_000);
        // The agent restarted: seq 5 again, another capture time.
        s.insert(record(5, 9_000, 2), 9_000);
        assert_eq!(
            s.find(Some((5, 1_000)), None).unwrap().0.fingerprint(),
            Some(1)
        );
        assert_eq!(
            s.find(Some((5, 9_000)), None).unwrap().0.fingerprint(),
            Some(2)
        );
        assert_eq!(s.insert(record(5, 1_000, 1), 9_500), Insert::Duplicate);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn positions_wrap_without_losing_records() {
        let mut s = RecordStore::new(i64::MAX, 8);
        s.base = u32::MAX - 3;
        s.settled = s.base;
        for i in 0..20u64 {
            s.insert(record(i, i as i64, 1_000 + i), i as i64);
            assert!(s.find(Some((i, i as i64)), None).is_some(), "{i}");
            assert!(s.find(None, Some(1_000 + i)).is_some(), "{i}");
        }
        assert_eq!(s.len(), 8);
        assert!(s.find(Some((11, 11)), None).is_none());
        let settled: Vec<u64> = s.settle(i64::MAX).iter().map(|r| r.seq).collect();
        assert_eq!(settled, (12..20).collect::<Vec<_>>());
    }

    #[test]
    fn index_keys_that_collide_never_match_the_wrong_record() {
        let mut s = RecordStore::new(30_000_000, 100);
        s.insert(record(1, 1_000, 0x1_0000_00aa), 1_000);
        s.insert(record(1 + (1 << 32), 2_000, 0x2_0000_00aa), 2_000);
        assert!(s.find(None, Some(0x1_0000_00aa)).is_none());
        assert_eq!(
            s.find(None, Some(0x2_0000_00aa)).unwrap().0.seq,
            1 + (1 << 32)
        );
        assert_eq!(s.find(Some((1, 1_000)), None).unwrap().0.seq, 1);
        assert!(s.has_seq(1 + (1 << 32)) && !s.has_seq(1));
    }

    #[test]
    fn a_stored_record_is_compact() {
        assert!(std::mem::size_of::<Stored>() <= 64);
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
