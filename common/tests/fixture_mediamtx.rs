//! Real data: one MPEG-TS segment of MediaMTX 1.16.2's HLS output, as an Annex B elementary
//! stream, checked against what the publisher stamped (see testdata/README.md).

use glasswatch_common::fingerprint::{fingerprint_annexb, fingerprint_avcc, from_hex, to_hex};
use glasswatch_common::h264::{annexb_nals, nal_type, split_access_units, NAL_SEI};
use glasswatch_common::sei::{build_sei_nal, find_stamp_annexb, find_stamp_avcc, FrameStamp};

const STREAM: &[u8] = include_bytes!("../testdata/mediamtx-1.16.2_ts-seg2_640x360_x264.h264");
const TRUTH: &str = include_str!("../testdata/mediamtx-1.16.2_ts-seg2_truth.jsonl");

struct Truth {
    stamp: FrameStamp,
    fingerprint: u64,
}

fn truth() -> Vec<Truth> {
    TRUTH
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Truth {
                stamp: FrameStamp {
                    keyframe: v["keyframe"].as_bool().unwrap(),
                    stream_tag: 0x6a62e076,
                    seq: v["seq"].as_u64().unwrap(),
                    capture_us: v["capture_us"].as_i64().unwrap(),
                },
                fingerprint: from_hex(v["fingerprint"].as_str().unwrap()).unwrap(),
            }
        })
        .collect()
}

#[test]
fn every_access_unit_matches_the_truth() {
    let truth = truth();
    let units = split_access_units(STREAM);
    assert_eq!(truth.len(), 30);
    assert_eq!(units.len(), 30);
    assert_eq!(units.first().map(|r| r.start), Some(0));
    assert_eq!(units.last().map(|r| r.end), Some(STREAM.len()));

    for (range, want) in units.iter().zip(&truth) {
        let au = &STREAM[range.clone()];
        let seq = want.stamp.seq;
        assert_eq!(find_stamp_annexb(au), Ok(Some(want.stamp)), "seq {seq}");
        let fp = fingerprint_annexb(au);
        assert_eq!(fp.map(to_hex), Some(to_hex(want.fingerprint)), "seq {seq}");

        // MediaMTX keeps an AUD first, SPS and PPS before each IDR, and our SEI byte for byte
        // right before the two slices.
        let types: Vec<u8> = annexb_nals(au).filter_map(|(_, n)| nal_type(n)).collect();
        let expected_types: &[u8] = if want.stamp.keyframe {
            &[9, 7, 8, 6, 5, 5]
        } else {
            &[9, 6, 1, 1]
        };
        assert_eq!(types, expected_types, "seq {seq}");
        let sei = annexb_nals(au)
            .map(|(_, n)| n)
            .find(|n| nal_type(n) == Some(NAL_SEI));
        let mut rebuilt = Vec::new();
        build_sei_nal(&want.stamp, &mut rebuilt);
        assert_eq!(sei, Some(&rebuilt[..]), "seq {seq}");

        // The same access unit as an fMP4 sample gives the same stamp and fingerprint.
        let mut sample = Vec::new();
        for (_, nal) in annexb_nals(au) {
            sample.extend_from_slice(&u32::try_from(nal.len()).unwrap().to_be_bytes());
            sample.extend_from_slice(nal);
        }
        assert_eq!(find_stamp_avcc(&sample, 4), Ok(Some(want.stamp)));
        assert_eq!(fingerprint_avcc(&sample, 4), Ok(fp));
    }
}
