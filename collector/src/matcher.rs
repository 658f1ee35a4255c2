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
//! ([`Stored`], 48 bytes) in one ring in arrival order, and found without
//! an index in the usual case: an agent's records come with consecutive
//! seqs and rising capture times, so a record's place is computed from the
//! newest one, else found by binary search on the capture time (a linear
//! scan only while the ring holds records out of that order, e.g. after a
//! device's clock stepped back). Frames without a stamp (an origin that
//! strips SEI) are found by fingerprint from where the last one was: HLS
//! delivers frames in order, so the next one's record is almost always the
//! next record (a scan of the whole ring otherwise). The two hash indexes
//! this replaced cost 37 KiB per stream, and a fingerprint index built on
//! demand still 18 KiB (heaptrack, 51 streams).

use std::collections::VecDeque;

use glasswatch_common::fingerprint;
use glasswatch_common::messages::FrameRecord;

use crate::clock::ClockOffset;

/// A frame record as kept: the identity and times of the frame, compact
/// (48 bytes: 900 of them are most of a stream's memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The record's `session`, as a number (0 when it was not 16 hex digits).
    pub session: u64,
    pub seq: u64,
    pub capture_us: i64,
    /// The fingerprint; 0 when the record's was not 16 hex digits (a real
    /// one is 0 once in 2^64 frames, which then match by stamp only).
    fp: u64,
    /// When the record arrived (collector clock, µs, low 63 bits) and, in
    /// the top bit, whether a frame over HLS was matched to it.
    arrived_seen: u64,
    /// encoded − capture and sent − encoded, µs, saturated at ±35 minutes
    /// (a real one is milliseconds; beyond that the record is nonsense).
    encode_us: i32,
    publish_us: i32,
}

const SEEN: u64 = 1 << 63;

fn saturate(us: i64) -> i32 {
    us.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl Stored {
    fn new(record: &FrameRecord, arrived_us: i64) -> Stored {
        Stored {
            session: fingerprint::from_hex(&record.session).unwrap_or(0),
            seq: record.seq,
            capture_us: record.capture_us,
            fp: fingerprint::from_hex(&record.fingerprint).unwrap_or(0),
            arrived_seen: arrived_us.max(0) as u64 & !SEEN,
            encode_us: saturate(record.encoded_us.saturating_sub(record.capture_us)),
            publish_us: saturate(record.sent_us.saturating_sub(record.encoded_us)),
        }
    }

    /// The fingerprint, when the record's was 16 hex digits.
    pub fn fingerprint(&self) -> Option<u64> {
        (self.fp != 0).then_some(self.fp)
    }

    /// When the frame was encoded (device clock).
    pub fn encoded_us(&self) -> i64 {
        self.capture_us.saturating_add(i64::from(self.encode_us))
    }

    /// When the frame was sent to the origin (device clock).
    pub fn sent_us(&self) -> i64 {
        self.encoded_us().saturating_add(i64::from(self.publish_us))
    }

    /// When the record arrived (collector clock).
    fn arrived_us(&self) -> i64 {
        (self.arrived_seen & !SEEN) as i64
    }

    /// A frame over HLS was matched to this record.
    pub fn seen(&self) -> bool {
        self.arrived_seen & SEEN != 0
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
    /// Position of the last record inserted out of capture-time order (a
    /// lower capture time than the record before it): from there on the
    /// ring is sorted by capture time. `None` while everything held is.
    unsorted_until: Option<u32>,
    /// Position of the last record matched by fingerprint: the next frame
    /// without a stamp is looked for after it first.
    fingerprint_hint: Option<u32>,
    duplicates: u64,
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
            unsorted_until: None,
            fingerprint_hint: None,
            duplicates: 0,
        }
    }

    fn get(&self, position: u32) -> Option<&Stored> {
        self.ring.get(position.wrapping_sub(self.base) as usize)
    }

    /// Where `seq` is if every seq since it was recorded: counted back
    /// from the newest record (any seq from outside, wrapping included).
    fn guess(&self, seq: u64) -> Option<usize> {
        let back = self.ring.back()?.seq.checked_sub(seq)?;
        (self.ring.len() as u64)
            .checked_sub(back)?
            .checked_sub(1)
            .map(|i| i as usize)
    }

    /// The position of the record `(seq, capture_us)`, if held.
    fn position(&self, seq: u64, capture_us: i64) -> Option<u32> {
        let is = |r: &Stored| r.seq == seq && r.capture_us == capture_us;
        let at = |i: usize| self.base.wrapping_add(i as u32);
        if let Some(i) = self
            .guess(seq)
            .filter(|&i| self.ring.get(i).is_some_and(is))
        {
            return Some(at(i));
        }
        // The sorted part (all of it, unless something came out of order):
        // binary search on the capture time.
        let from = self
            .unsorted_until
            .map_or(0, |u| u.wrapping_sub(self.base) as usize)
            .min(self.ring.len());
        let first = from + self.partition(from, capture_us);
        let mut i = first;
        while let Some(r) = self.ring.get(i).filter(|r| r.capture_us == capture_us) {
            if r.seq == seq {
                return Some(at(i));
            }
            i += 1;
        }
        // Records before that point are in no order: look at each.
        (0..from)
            .rev()
            .find(|&i| self.ring.get(i).is_some_and(is))
            .map(at)
    }

    /// How many records of `ring[from..]` (sorted by capture time) have a
    /// capture time below `capture_us`.
    fn partition(&self, from: usize, capture_us: i64) -> usize {
        let (mut lo, mut hi) = (from, self.ring.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.ring[mid].capture_us < capture_us {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - from
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
        let stored = Stored::new(&record, now_us);
        let pos = self.base.wrapping_add(self.ring.len() as u32);
        if self
            .ring
            .back()
            .is_some_and(|r| stored.capture_us < r.capture_us)
        {
            self.unsorted_until = Some(pos);
        }
        self.ring.push_back(stored);
        Insert::New
    }

    fn pop_oldest(&mut self) {
        let pos = self.base;
        if self.ring.pop_front().is_some() {
            if self.unsorted_until == Some(pos) {
                // What remains was inserted in capture-time order.
                self.unsorted_until = None;
            }
            if self.settled == pos {
                self.settled = pos.wrapping_add(1);
            }
            self.base = pos.wrapping_add(1);
        }
        if self.ring.is_empty() {
            // Give back what a burst grew.
            self.ring.shrink_to(64);
            self.unsorted_until = None;
        }
    }

    /// Drops records that arrived more than the retention ago.
    pub fn evict(&mut self, now_us: i64) {
        while self
            .ring
            .front()
            .is_some_and(|r| now_us.saturating_sub(r.arrived_us()) > self.retention_us)
        {
            self.pop_oldest();
        }
    }

    /// A frame with a stamp is found by it alone (its record carries the
    /// same fingerprint, so the fingerprint could only find another frame's
    /// record); one without is found by its fingerprint: the first record
    /// with it after the last frame matched that way, else the newest.
    fn find_position(
        &self,
        stamp: Option<(u64, i64)>,
        fingerprint: Option<u64>,
    ) -> Option<(u32, MatchedBy)> {
        if let Some((seq, capture)) = stamp {
            return self
                .position(seq, capture)
                .map(|pos| (pos, MatchedBy::Stamp));
        }
        let fp = fingerprint?;
        let has = |r: &Stored| r.fingerprint() == Some(fp);
        let after = self.fingerprint_hint.map_or(self.ring.len(), |h| {
            (h.wrapping_sub(self.base) as usize)
                .saturating_add(1)
                .min(self.ring.len())
        });
        let i = self
            .ring
            .range(after..)
            .position(has)
            .map(|i| after + i)
            .or_else(|| self.ring.range(..after).rposition(has))?;
        Some((self.base.wrapping_add(i as u32), MatchedBy::Fingerprint))
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
        if by == MatchedBy::Fingerprint {
            self.fingerprint_hint = Some(pos);
        }
        let index = pos.wrapping_sub(self.base) as usize;
        let r = self.ring.get_mut(index)?;
        r.arrived_seen |= SEEN;
        Some((*r, by))
    }

    /// Whether a record with this `seq` is held (of any session).
    pub fn has_seq(&self, seq: u64) -> bool {
        self.guess(seq)
            .is_some_and(|i| self.ring.get(i).is_some_and(|r| r.seq == seq))
            || self.ring.iter().rev().any(|r| r.seq == seq)
    }

    /// The records that arrived before `cutoff_us` and were not handed out
    /// yet, each once, with whether HLS delivered their frame: a record that
    /// was not seen by then is a frame that never reached HLS. Records
    /// evicted before they settle are not returned.
    pub fn settle(&mut self, cutoff_us: i64) -> Vec<Stored> {
        let mut out = Vec::new();
        while let Some(r) = self
            .get(self.settled)
            .filter(|r| r.arrived_us() <= cutoff_us)
        {
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
        encode_ms: ms(i64::from(r.encode_us)),
        publish_ms: ms(i64::from(r.publish_us)),
        origin_delivery_ms: ms(available_us.saturating_sub(to_collector(r.sent_us()))),
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
        let settled: Vec<_> = s.settle(2_000).iter().map(|r| (r.seq, r.seen())).collect();
        assert_eq!(settled, vec![(0, false), (1, true), (2, true)]);
        assert!(s.settle(2_000).is_empty());
        let settled: Vec<_> = s.settle(9_000).iter().map(|r| (r.seq, r.seen())).collect();
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
    fn fingerprints_that_share_low_bits_match_their_own_records() {
        let mut s = RecordStore::new(30_000_000, 100);
        s.insert(record(1, 1_000, 0x1_0000_00aa), 1_000);
        s.insert(record(1 + (1 << 32), 2_000, 0x2_0000_00aa), 2_000);
        assert_eq!(s.find(None, Some(0x1_0000_00aa)).unwrap().0.seq, 1);
        assert!(s.take_match(None, Some(0x2_0000_00aa)).is_some());
        assert_eq!(s.find(None, Some(0x1_0000_00aa)).unwrap().0.seq, 1);
        assert_eq!(
            s.find(None, Some(0x2_0000_00aa)).unwrap().0.seq,
            1 + (1 << 32)
        );
        assert!(s.find(None, Some(0x3_0000_00aa)).is_none());
        assert_eq!(s.find(Some((1, 1_000)), None).unwrap().0.seq, 1);
        assert!(s.has_seq(1 + (1 << 32)) && s.has_seq(1) && !s.has_seq(2));
    }

    #[test]
    fn repeated_fingerprints_match_in_delivery_order() {
        // A still scene can encode to identical frames: without stamps,
        // frames delivered in order take the records in order.
        let mut s = RecordStore::new(30_000_000, 100);
        for i in 0..6u64 {
            s.insert(
                record(i, 1_000 * i as i64, if i % 2 == 1 { 7 } else { 100 + i }),
                0,
            );
        }
        // The first frame without a stamp: the newest record with its
        // fingerprint; from then on, the next one after the last match.
        assert_eq!(s.take_match(None, Some(7)).unwrap().0.seq, 5);
        let seqs: Vec<u64> = [100, 7, 102, 7, 104, 7]
            .iter()
            .map(|&fp| s.take_match(None, Some(fp)).unwrap().0.seq)
            .collect();
        assert_eq!(seqs, (0..6).collect::<Vec<_>>());
        // Read again (a frame delivered twice): the same record.
        assert_eq!(s.take_match(None, Some(7)).unwrap().0.seq, 5);
        // After the remembered one was evicted, the newest too.
        let mut s = RecordStore::new(30_000_000, 3);
        for i in 0..3u64 {
            s.insert(record(i, i as i64, 9), 0);
        }
        assert_eq!(s.take_match(None, Some(9)).unwrap().0.seq, 2);
        for i in 3..6u64 {
            s.insert(record(i, i as i64, 9), 0);
        }
        assert_eq!(s.take_match(None, Some(9)).unwrap().0.seq, 5);
    }

    #[test]
    fn extreme_seqs_from_outside_are_looked_up_safely() {
        let mut s = RecordStore::new(30_000_000, 100);
        s.insert(record(u64::MAX, 1_000, 1), 1_000);
        assert!(s.find(Some((0, 1_000)), None).is_none());
        assert!(!s.has_seq(0) && s.has_seq(u64::MAX));
        s.insert(record(0, 2_000, 2), 2_000);
        assert!(s.find(Some((u64::MAX, 1_000)), None).is_some());
        assert!(s.find(Some((0, 2_000)), None).is_some());
    }

    #[test]
    fn stamped_frames_match_by_stamp_alone() {
        let mut s = RecordStore::new(30_000_000, 100);
        for i in 0..50u64 {
            s.insert(record(i, 1_000 * i as i64, 500 + i), 1_000 * i as i64);
        }
        for i in (0..50u64).rev() {
            assert!(s
                .take_match(Some((i, 1_000 * i as i64)), Some(500 + i))
                .is_some());
        }
        // Not found by stamp: no fallback to the fingerprint, whose record
        // would be another frame's.
        assert!(s.take_match(Some((7, 1)), Some(507)).is_none());
        // Frames without one by fingerprint, among later and evicted records.
        let (r, by) = s.take_match(None, Some(510)).unwrap();
        assert_eq!((r.seq, by), (10, MatchedBy::Fingerprint));
        s.insert(record(50, 50_000, 550), 50_000);
        assert_eq!(s.take_match(None, Some(550)).unwrap().0.seq, 50);
        s.evict(30_000_000 + 5_500);
        assert!(s.take_match(None, Some(505)).is_none());
        assert_eq!(s.take_match(None, Some(506)).unwrap().0.seq, 6);
    }

    #[test]
    fn records_out_of_capture_order_stay_findable() {
        let mut s = RecordStore::new(30_000_000, 100);
        // Seqs with gaps (records dropped on the device), then the device's
        // clock steps back a second, then a new session restarts the seqs.
        let mut held = Vec::new();
        for (i, (seq, capture)) in [
            (1, 10_000),
            (2, 10_033),
            (5, 10_133),
            (6, 9_100),
            (7, 9_133),
        ]
        .into_iter()
        .chain((0..4).map(|k| (k, 20_000 + k as i64 * 33)))
        .enumerate()
        {
            assert_eq!(
                s.insert(record(seq, capture, i as u64), i as i64),
                Insert::New
            );
            held.push((seq, capture));
        }
        for &(seq, capture) in &held {
            assert_eq!(
                s.find(Some((seq, capture)), None).unwrap().0.capture_us,
                capture
            );
            assert_eq!(s.insert(record(seq, capture, 0), 10), Insert::Duplicate);
        }
        assert!(s.find(Some((3, 10_066)), None).is_none());
        assert!(s.find(Some((6, 10_166)), None).is_none());
        // Once the record that came out of order is evicted, what is left
        // is in order again.
        s.evict(30_000_000 + 3);
        assert_eq!(s.unsorted_until, Some(3));
        s.evict(30_000_000 + 4);
        assert_eq!(s.unsorted_until, None);
        assert!(s.find(Some((7, 9_133)), None).is_some());
        assert!(s.find(Some((6, 9_100)), None).is_none());
    }

    #[test]
    fn a_stored_record_is_compact() {
        assert!(std::mem::size_of::<Stored>() <= 48);
        let mut r = record(7, 1_000_000, 0xab);
        r.encoded_us = 1_004_000;
        r.sent_us = 1_004_500;
        let s = Stored::new(&r, 5_000_000);
        assert_eq!(
            (s.encoded_us(), s.sent_us(), s.arrived_us()),
            (1_004_000, 1_004_500, 5_000_000)
        );
        assert!(!s.seen() && s.fingerprint() == Some(0xab));
        // Nonsense times saturate instead of wrapping.
        r.encoded_us = i64::MAX;
        assert_eq!(
            Stored::new(&r, 0).encoded_us(),
            1_000_000 + i64::from(i32::MAX)
        );
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
