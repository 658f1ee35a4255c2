//! The fMP4 reader against real MediaMTX v1.16.2 LL-HLS output (`testdata/fmp4/`, see its
//! README): every frame's stamp and fingerprint must equal what the publisher produced, and
//! damaged input must give an error or fewer frames, never a panic.

mod support;
use support::{check_frame, parse_truth, Truth};

use glasswatch_collector::hls::fmp4::{self, InitSegment, Mp4Error};
use proptest::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

const INIT: &[u8] = include_bytes!("../testdata/fmp4/mediamtx-1.16.2-llhls-init.mp4");
/// An IDR part: SPS, PPS, stamp SEI and two IDR slices, then a P frame.
const PART_IDR: &[u8] =
    include_bytes!("../testdata/fmp4/mediamtx-1.16.2-llhls-parts/video1_part40.mp4");
/// A part of two P frames.
const PART_P: &[u8] =
    include_bytes!("../testdata/fmp4/mediamtx-1.16.2-llhls-parts/video1_part41.mp4");
const TAG: u32 = 0x6a62_e076;

#[derive(serde::Deserialize)]
struct PartIndex {
    file: String,
    seq_first: u64,
    seq_last: u64,
    frames: usize,
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/fmp4")
}

fn truth() -> HashMap<u64, Truth> {
    let text =
        std::fs::read_to_string(testdata().join("mediamtx-1.16.2-llhls-truth.jsonl")).unwrap();
    parse_truth(&text)
}

fn init() -> InitSegment {
    fmp4::parse_init(INIT).unwrap()
}

#[test]
fn init_section_matches_mediamtx() {
    let init = init();
    assert_eq!(init.track_id, 1);
    assert_eq!(init.timescale, 90_000);
    assert_eq!(init.nal_length_size, 4);
    assert_eq!(init.sps.len(), 1);
    assert_eq!(init.pps.len(), 1);
    assert_eq!(init.sps[0].first().map(|h| h & 0x1f), Some(7));
    assert_eq!(init.pps[0].first().map(|h| h & 0x1f), Some(8));
    // avc1.42c01e: Constrained Baseline, level 3.0.
    assert_eq!(&init.sps[0][1..4], &[0x42, 0xc0, 0x1e]);
}

#[test]
fn every_part_matches_the_truth() {
    let init = init();
    let truth = truth();
    let index: Vec<PartIndex> = serde_json::from_str(
        &std::fs::read_to_string(testdata().join("mediamtx-1.16.2-llhls-parts.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(index.len(), 30);
    let mut total = 0;
    let mut last_pts = None;
    for part in &index {
        let data = std::fs::read(
            testdata()
                .join("mediamtx-1.16.2-llhls-parts")
                .join(&part.file),
        )
        .unwrap();
        let samples = fmp4::parse_fragments(&init, &data).unwrap();
        let frames = fmp4::frames(&init, &data).unwrap();
        assert_eq!(frames.len(), part.frames, "{}", part.file);
        assert_eq!(samples.len(), frames.len());
        for (i, (frame, sample)) in frames.iter().zip(&samples).enumerate() {
            let stamp = frame
                .stamp
                .unwrap_or_else(|| panic!("{} frame {i} has no stamp", part.file));
            assert_eq!(frame.stamp_error, None);
            assert_eq!(stamp.seq, part.seq_first + i as u64, "{}", part.file);
            assert_eq!(stamp.stream_tag, TAG);
            check_frame(&truth, &stamp, frame.keyframe, frame.fingerprint);
            // 30 fps at 90 kHz, no B-frames.
            assert_eq!(sample.duration, 3000);
            assert_eq!(sample.pts_offset, 0);
            if let Some(prev) = last_pts {
                assert_eq!(frame.pts - prev, 3000, "seq {}", stamp.seq);
            }
            last_pts = Some(frame.pts);
        }
        assert_eq!(
            frames.last().and_then(|f| f.stamp).map(|s| s.seq),
            Some(part.seq_last)
        );
        total += frames.len();
    }
    assert_eq!(total, 57);
}

#[test]
fn several_pairs_in_one_buffer_are_all_read() {
    // A segment is parts concatenated; each pair's trun is relative to its own moof.
    let init = init();
    let joined = [PART_IDR, PART_P].concat();
    let frames = fmp4::frames(&init, &joined).unwrap();
    let seqs: Vec<u64> = frames.iter().map(|f| f.stamp.unwrap().seq).collect();
    assert_eq!(seqs, [75, 76, 77, 78]);
    assert!(frames[0].keyframe && !frames[1].keyframe);
}

#[test]
fn every_truncation_errors_or_yields_fewer_frames() {
    let init = init();
    let full = fmp4::frames(&init, PART_P).unwrap();
    for len in 0..PART_P.len() {
        match fmp4::frames(&init, &PART_P[..len]) {
            Ok(frames) => assert!(frames.len() < full.len(), "len {len}"),
            Err(Mp4Error::Truncated { offset, needed }) => {
                assert!(offset < len.max(1) && needed > 0, "len {len}");
            }
            Err(e) => panic!("len {len}: unexpected {e}"),
        }
    }
    for len in 0..INIT.len() {
        assert!(fmp4::parse_init(&INIT[..len]).is_err(), "len {len}");
    }
}

/// Offsets of the fields in the real parts (one moof of 112 bytes, then the mdat).
const MOOF_SIZE: usize = 112;
const TRUN_AT: usize = 68;
const TRUN_DATA_OFFSET_AT: usize = TRUN_AT + 16;
const TRUN_FIRST_SIZE_AT: usize = TRUN_AT + 24;

#[test]
fn absurd_box_sizes_are_rejected() {
    let init = init();
    let mut data = PART_P.to_vec();
    data[0..4].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::Truncated { offset: 0, .. })
    ));

    // 64-bit size: the moof header grows by 8 bytes and claims 2^64 - 1.
    let mut data = 1u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"moof");
    data.extend_from_slice(&u64::MAX.to_be_bytes());
    data.extend_from_slice(&PART_P[8..]);
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::Truncated { offset: 0, .. })
    ));
    // A child of the moof claiming more than the moof holds.
    let mut data = PART_P.to_vec();
    data[24..28].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::Invalid { offset: 24, .. })
    ));
    // A box smaller than its own header.
    let mut data = PART_P.to_vec();
    data[MOOF_SIZE..MOOF_SIZE + 4].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::Invalid {
            offset: MOOF_SIZE,
            ..
        })
    ));
}

#[test]
fn trun_pointing_outside_mdat_is_rejected() {
    let init = init();
    assert_eq!(&PART_P[TRUN_AT + 4..TRUN_AT + 8], b"trun");
    for bad_offset in [0i32, -200, 8, 100] {
        let mut data = PART_P.to_vec();
        data[TRUN_DATA_OFFSET_AT..TRUN_DATA_OFFSET_AT + 4]
            .copy_from_slice(&bad_offset.to_be_bytes());
        let err = fmp4::frames(&init, &data).unwrap_err();
        assert!(
            matches!(
                err,
                Mp4Error::Invalid {
                    offset: TRUN_AT,
                    ..
                } | Mp4Error::Invalid {
                    offset: TRUN_DATA_OFFSET_AT,
                    ..
                }
            ),
            "{bad_offset}: {err}"
        );
    }
    // Past the end of the buffer reads as a cut buffer.
    let mut data = PART_P.to_vec();
    data[TRUN_DATA_OFFSET_AT..TRUN_DATA_OFFSET_AT + 4]
        .copy_from_slice(&0x7FFF_FFFFi32.to_be_bytes());
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::Truncated {
            offset: TRUN_AT,
            ..
        })
    ));
    // A sample size running past its mdat into the next moof.
    let mut data = [PART_P, PART_IDR].concat();
    data[TRUN_FIRST_SIZE_AT..TRUN_FIRST_SIZE_AT + 4].copy_from_slice(&3000u32.to_be_bytes());
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::Invalid {
            offset: TRUN_AT,
            ..
        })
    ));
}

#[test]
fn huge_sample_count_is_refused_before_reading() {
    let init = init();
    let mut data = PART_P.to_vec();
    data[TRUN_AT + 12..TRUN_AT + 16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        fmp4::frames(&init, &data),
        Err(Mp4Error::TooLarge { offset: 80, .. })
    ));
}

#[test]
fn malformed_stamp_costs_only_its_frame() {
    let init = init();
    let samples = fmp4::parse_fragments(&init, PART_P).unwrap();
    let mut data = PART_P.to_vec();
    // The first sample starts with the stamp SEI NAL: length, 0x06, payloadType 5, size 38.
    let first = samples[0].data.start;
    assert_eq!(&data[first + 4..first + 7], &[0x06, 0x05, 0x26]);
    data[first + 6] = 0xF0; // payloadSize now runs past the NAL
    let frames = fmp4::frames(&init, &data).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].stamp, None);
    assert!(frames[0].stamp_error.is_some());
    assert!(frames[0].fingerprint.is_some());
    assert_eq!(frames[1].stamp.map(|s| s.seq), Some(78));
}

#[test]
fn init_without_video_track_is_missing() {
    assert!(matches!(
        fmp4::parse_init(b""),
        Err(Mp4Error::Missing { .. })
    ));
    // Rename the handler type from 'vide' to 'soun'.
    let mut data = INIT.to_vec();
    let at = data.windows(4).position(|w| w == b"vide").unwrap();
    data[at..at + 4].copy_from_slice(b"soun");
    assert!(matches!(
        fmp4::parse_init(&data),
        Err(Mp4Error::Missing { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let init = init();
        let _ = fmp4::parse_init(&data);
        let _ = fmp4::frames(&init, &data);
    }

    #[test]
    fn flipped_bytes_in_a_real_part_never_panic(
        flips in proptest::collection::vec((0usize..3121, any::<u8>()), 1..8)
    ) {
        let init = init();
        let mut data = PART_P.to_vec();
        for (at, value) in flips {
            if let Some(b) = data.get_mut(at) {
                *b = value;
            }
        }
        let _ = fmp4::frames(&init, &data);
        let mut init_bytes = INIT.to_vec();
        for (i, b) in data.iter().take(8).enumerate() {
            let at = (usize::from(*b) * 3 + i * 85) % init_bytes.len();
            init_bytes[at] ^= 0x5a;
        }
        let _ = fmp4::parse_init(&init_bytes);
    }
}
