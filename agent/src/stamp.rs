//! The stamper: puts the Glasswatch SEI frame stamp into every access unit.
//!
//! This is the pure half, over bytes: given one Annex B access unit (as
//! `h264parse` emits with `alignment=au`), it inserts the stamp's SEI NAL
//! directly before the first VCL NAL unit (so after any AUD/SPS/PPS, inside
//! the access unit, where MediaMTX keeps it), and returns what the frame
//! record needs. The GStreamer half (the pad probe) lives in `pipeline`.
//! It does not decode anything and never changes the slices, so the
//! fingerprint computed here is what a reader computes from the same bytes.

use glasswatch_common::{fingerprint, h264, sei};

/// What the stamper learnt about one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub seq: u64,
    pub capture_us: i64,
    pub keyframe: bool,
    pub fingerprint: u64,
    /// Size of the access unit as sent, stamp included.
    pub bytes: usize,
}

/// Why an access unit was passed on unstamped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("access unit of {0} bytes holds no VCL NAL unit (no slice); passed on unstamped")]
    NoSlice(usize),
}

/// Stamps one stream's access units, counting `seq` from 0.
#[derive(Debug)]
pub struct Stamper {
    stream_tag: u32,
    next_seq: u64,
    /// The last stamp's NAL unit, start code included: what goes into the
    /// access unit. Its capacity covers every stamp, so it never grows.
    sei: Vec<u8>,
}

/// Where the stamp goes in one access unit, and what the record needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insertion {
    /// Byte offset in the access unit: the start code of its first slice.
    pub at: usize,
    pub stamped: Stamped,
}

impl Stamper {
    pub fn new(device_id: &str, stream_id: &str) -> Stamper {
        Stamper {
            stream_tag: sei::stream_tag(device_id, stream_id),
            next_seq: 0,
            sei: Vec::with_capacity(64),
        }
    }

    /// Makes the stamp of `au` without copying it: the bytes to insert are
    /// [`Stamper::stamp_nal`] (until the next call), their place `at`.
    /// The pipeline writes `au` with them inserted there.
    /// `seq` advances only for stamped access units.
    pub fn insertion(&mut self, au: &[u8], capture_us: i64) -> Result<Insertion, StampError> {
        let mut first_vcl = None;
        let mut keyframe = false;
        for (offset, nal) in h264::annexb_nals(au) {
            let Some(t) = h264::nal_type(nal) else {
                continue;
            };
            if h264::is_vcl(t) {
                first_vcl.get_or_insert(offset);
                keyframe |= t == h264::NAL_IDR;
            }
        }
        let Some(nal_start) = first_vcl else {
            return Err(StampError::NoSlice(au.len()));
        };
        // Insert at the start code of the first slice: back up over it.
        let at = start_code_start(au, nal_start);
        let fp = fingerprint::fingerprint_annexb(au).unwrap_or(0);
        let stamp = sei::FrameStamp {
            keyframe,
            stream_tag: self.stream_tag,
            seq: self.next_seq,
            capture_us,
        };
        self.sei.clear();
        self.sei.extend_from_slice(&[0, 0, 0, 1]);
        sei::build_sei_nal(&stamp, &mut self.sei);
        self.next_seq += 1;
        Ok(Insertion {
            at,
            stamped: Stamped {
                seq: stamp.seq,
                capture_us,
                keyframe,
                fingerprint: fp,
                bytes: au.len() + self.sei.len(),
            },
        })
    }

    /// The last stamp made by [`Stamper::insertion`]: a 4-byte start code
    /// and the SEI NAL unit.
    pub fn stamp_nal(&self) -> &[u8] {
        &self.sei
    }
}

/// The offset of the start code (3 or 4 bytes) in front of the NAL unit at `nal_start`.
fn start_code_start(data: &[u8], nal_start: usize) -> usize {
    let before = &data[..nal_start.min(data.len())];
    if before.ends_with(&[0, 0, 0, 1]) {
        nal_start - 4
    } else if before.ends_with(&[0, 0, 1]) {
        nal_start - 3
    } else {
        nal_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `au` with the stamp inserted, written into `out` (cleared first), as
    /// the pipeline's `with_inserted` writes it into a GStreamer buffer.
    impl Stamper {
        fn stamp(
            &mut self,
            au: &[u8],
            capture_us: i64,
            out: &mut Vec<u8>,
        ) -> Result<Stamped, StampError> {
            let Insertion { at, stamped } = self.insertion(au, capture_us)?;
            out.clear();
            out.extend_from_slice(&au[..at]);
            out.extend_from_slice(&self.sei);
            out.extend_from_slice(&au[at..]);
            Ok(stamped)
        }
    }

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn stamp_goes_after_aud_sps_pps_and_before_the_slice() {
        let aud: &[u8] = &[0x09, 0xf0];
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
        let input = au(&[aud, sps, pps, idr]);
        let mut s = Stamper::new("dev", "cam0");
        let mut out = Vec::new();
        let r = s.stamp(&input, 1_700_000_000_000_000, &mut out).unwrap();
        assert!(r.keyframe);
        assert_eq!(r.seq, 0);
        assert_eq!(r.bytes, out.len());
        let types: Vec<u8> = h264::annexb_nals(&out)
            .filter_map(|(_, n)| h264::nal_type(n))
            .collect();
        assert_eq!(types, vec![9, 7, 8, 6, 5]);
        let stamp = sei::find_stamp_annexb(&out).unwrap().unwrap();
        assert_eq!(stamp.seq, 0);
        assert_eq!(stamp.capture_us, 1_700_000_000_000_000);
        assert_eq!(stamp.stream_tag, sei::stream_tag("dev", "cam0"));
        // The fingerprint covers the slices only, so stamping does not change it.
        assert_eq!(fingerprint::fingerprint_annexb(&out), Some(r.fingerprint));
        assert_eq!(fingerprint::fingerprint_annexb(&input), Some(r.fingerprint));
    }

    #[test]
    fn seq_counts_and_keyframe_flag_follows_idr() {
        let mut s = Stamper::new("dev", "cam0");
        let mut out = Vec::new();
        let p = au(&[&[0x41, 0x9a, 0x01]]);
        let r0 = s.stamp(&p, 5, &mut out).unwrap();
        let r1 = s.stamp(&p, 6, &mut out).unwrap();
        assert_eq!((r0.seq, r1.seq), (0, 1));
        assert!(!r1.keyframe);
        let stamp = sei::find_stamp_annexb(&out).unwrap().unwrap();
        assert!(!stamp.keyframe);
    }

    #[test]
    fn access_unit_without_slice_is_refused_and_seq_kept() {
        let mut s = Stamper::new("dev", "cam0");
        let mut out = Vec::new();
        let e = s.stamp(&au(&[&[0x67, 0x42]]), 1, &mut out).unwrap_err();
        assert_eq!(e, StampError::NoSlice(6));
        let r = s.stamp(&au(&[&[0x41, 0x9a]]), 2, &mut out).unwrap();
        assert_eq!(r.seq, 0);
        assert!(s.stamp(&[], 3, &mut out).is_err());
    }

    #[test]
    fn three_byte_start_codes_are_respected() {
        let input = [0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x22];
        let mut s = Stamper::new("d", "s");
        let mut out = Vec::new();
        s.stamp(&input, 9, &mut out).unwrap();
        assert!(out.starts_with(&[0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x06]));
        assert!(out.ends_with(&[0, 0, 1, 0x41, 0x9a, 0x22]));
    }

    #[test]
    fn insertion_is_what_stamp_writes_and_fits_the_reserved_capacity() {
        let input = au(&[
            &[0x09, 0xf0],
            &[0x67, 0x42, 0xc0, 0x1e],
            &[0x65, 0x88, 0x84],
        ]);
        let (mut a, mut b) = (Stamper::new("d", "s"), Stamper::new("d", "s"));
        let mut out = Vec::new();
        // Extreme capture times and seq bytes exercise emulation prevention.
        for capture_us in [0, 1, i64::MAX, i64::MIN, 0x0000_0300_0003_0000] {
            let written = a.stamp(&input, capture_us, &mut out).unwrap();
            let ins = b.insertion(&input, capture_us).unwrap();
            assert_eq!(ins.stamped, written);
            assert_eq!(ins.at, 14, "before the slice's start code");
            let nal = b.stamp_nal();
            assert!(nal.starts_with(&[0, 0, 0, 1, 0x06]));
            assert!(nal.len() <= 64, "the stamp never grows its buffer");
            let mut joined = input[..ins.at].to_vec();
            joined.extend_from_slice(nal);
            joined.extend_from_slice(&input[ins.at..]);
            assert_eq!(joined, out);
        }
    }
}
