//! The MPEG-TS reader against real MediaMTX v1.16.2 HLS segments (`testdata/ts/`, see its
//! README): every frame's stamp and fingerprint must equal what the publisher produced, lost
//! sync and lost packets must be survived and counted, and no input may panic.

mod support;
use support::{check_frame, parse_truth, Truth};

use glasswatch_collector::hls::ts::{self, TsError, PACKET_LEN};
use glasswatch_common::fingerprint::to_hex;
use proptest::prelude::*;
use std::collections::HashMap;

const SEG1: &[u8] = include_bytes!("../testdata/ts/mediamtx-1.16.2-mpegts-main_seg1.ts");
const SEG2: &[u8] = include_bytes!("../testdata/ts/mediamtx-1.16.2-mpegts-main_seg2.ts");
const SEG3: &[u8] = include_bytes!("../testdata/ts/mediamtx-1.16.2-mpegts-main_seg3.ts");
const TRUTH: &str = include_str!("../testdata/ts/mediamtx-1.16.2-mpegts-truth.jsonl");
const TAG: u32 = 0x6a62_e076;

fn truth() -> HashMap<u64, Truth> {
    parse_truth(TRUTH)
}

const SEGMENTS: [&[u8]; 3] = [SEG1, SEG2, SEG3];
/// Which seqs each segment carries, per the capture's verification.json.
const INDEX: &str = include_str!("../testdata/ts/mediamtx-1.16.2-mpegts-segments.json");

#[derive(serde::Deserialize)]
struct SegmentIndex {
    seq_first: u64,
    seq_last: u64,
    frames: usize,
}

#[test]
fn every_segment_matches_the_truth() {
    let truth = truth();
    let index: Vec<SegmentIndex> = serde_json::from_str(INDEX).unwrap();
    assert_eq!(index.len(), SEGMENTS.len());
    let mut last_pts: Option<u64> = None;
    for (data, expected) in SEGMENTS.into_iter().zip(&index) {
        let first_seq = expected.seq_first;
        let report = ts::frames(data).unwrap();
        assert_eq!(report.video_pid, 0x100);
        assert_eq!(report.packets, data.len() / PACKET_LEN);
        assert_eq!(
            (
                report.resync_skipped_bytes,
                report.trailing_bytes,
                report.cc_errors
            ),
            (0, 0, 0)
        );
        assert_eq!(
            (report.bad_packets, report.psi_errors, report.pes_errors),
            (0, 0, 0)
        );
        assert_eq!(report.frames.len(), expected.frames);
        let last_seq = report.frames.last().and_then(|f| f.stamp).map(|s| s.seq);
        assert_eq!(last_seq, Some(expected.seq_last));
        let keyframes = report.frames.iter().filter(|f| f.keyframe).count();
        assert_eq!(keyframes, 2, "GOP 15 at 30 fps: two IDRs per 1 s segment");
        for (i, frame) in report.frames.iter().enumerate() {
            let stamp = frame.stamp.unwrap();
            assert_eq!(frame.stamp_error, None);
            assert!(!frame.damaged);
            assert_eq!(stamp.seq, first_seq + i as u64);
            assert_eq!(stamp.stream_tag, TAG);
            check_frame(&truth, &stamp, frame.keyframe, frame.fingerprint);
            // One PES per access unit, each with a PTS, 3000 ticks apart at 90 kHz.
            let pts = frame.pts.unwrap();
            if let Some(prev) = last_pts {
                assert_eq!(pts - prev, 3000, "seq {}", stamp.seq);
            }
            last_pts = Some(pts);
        }
    }
}

#[test]
fn lost_sync_in_the_middle_is_recovered() {
    let mut data = SEG2.to_vec();
    // Corrupt the sync byte of packets 100 to 102 and insert 7 stray bytes before packet 200.
    for p in 100..103 {
        data[p * PACKET_LEN] = 0x00;
    }
    data.splice(
        200 * PACKET_LEN..200 * PACKET_LEN,
        [0x47, 1, 2, 3, 0x47, 5, 6],
    );
    let report = ts::frames(&data).unwrap();
    // Packets 100 to 102 are skipped. The stray bytes start with a sync byte where packet 200
    // should start, so they and the first 181 bytes of packet 200 read as one (garbage) packet,
    // then the 7 bytes left of packet 200 are skipped.
    assert_eq!(report.resync_skipped_bytes, 3 * PACKET_LEN + 7);
    assert_eq!(report.packets, SEG2.len() / PACKET_LEN - 3);
    assert!(report.cc_errors >= 1);
    // The frames after the damage are all there and intact.
    let seqs: Vec<u64> = report
        .frames
        .iter()
        .filter_map(|f| f.stamp)
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs.last(), Some(&89));
    let intact = report.frames.iter().filter(|f| !f.damaged).count();
    assert!(intact >= 27, "{intact} intact frames");
    let truth = truth();
    for frame in report.frames.iter().filter(|f| !f.damaged) {
        let t = &truth[&frame.stamp.unwrap().seq];
        assert_eq!(
            frame.fingerprint.map(to_hex).as_deref(),
            Some(t.fingerprint.as_str())
        );
    }
    assert!(report.frames.iter().any(|f| f.damaged));
}

#[test]
fn lost_packet_is_counted_and_marks_its_frame() {
    let mut data = SEG1.to_vec();
    // Packet 50 is a middle packet of some PES (not its first).
    data.drain(50 * PACKET_LEN..51 * PACKET_LEN);
    let report = ts::frames(&data).unwrap();
    assert_eq!(report.cc_errors, 1);
    assert_eq!(report.frames.len(), 30);
    assert_eq!(report.frames.iter().filter(|f| f.damaged).count(), 1);
}

#[test]
fn truncation_never_panics_and_keeps_the_frames_before() {
    for len in (0..SEG1.len()).step_by(397) {
        match ts::frames(&SEG1[..len]) {
            Ok(report) => {
                assert!(report.frames.len() <= 30);
                assert_eq!(report.trailing_bytes, len % PACKET_LEN, "len {len}");
                // Every frame but a cut last one is intact.
                let n = report.frames.len();
                assert!(report
                    .frames
                    .iter()
                    .take(n.saturating_sub(1))
                    .all(|f| !f.damaged));
            }
            Err(TsError::NoSync { .. } | TsError::NoVideoStream { .. }) => {
                assert!(len < 3 * PACKET_LEN)
            }
        }
    }
}

#[test]
fn not_ts_is_an_error() {
    assert_eq!(ts::frames(b""), Err(TsError::NoSync { len: 0 }));
    assert!(matches!(
        ts::frames(&[0u8; 1000]),
        Err(TsError::NoSync { .. })
    ));
    // Valid packets but only the video PID, no PAT/PMT.
    let video_only = &SEG1[2 * PACKET_LEN..20 * PACKET_LEN];
    assert!(matches!(
        ts::frames(video_only),
        Err(TsError::NoVideoStream { packets: 18 })
    ));
}

#[test]
fn several_access_units_in_one_pes_are_split() {
    // Rewrite segment 1 so that the second PES is continued by the third's packets: clear the
    // payload_unit_start_indicator of the third PES's first packet, and fix that packet's
    // payload to start with the elementary stream (drop the PES header bytes).
    let mut data = SEG1.to_vec();
    let starts: Vec<usize> = (0..data.len() / PACKET_LEN)
        .filter(|p| {
            let h = &data[p * PACKET_LEN..];
            h[1] & 0x40 != 0 && ((u16::from(h[1] & 0x1f) << 8) | u16::from(h[2])) == 0x100
        })
        .collect();
    let p = starts[2] * PACKET_LEN;
    data[p + 1] &= !0x40;
    // Packet layout: 4-byte header, adaptation field (length at byte 4), then the PES header.
    let af = if data[p + 3] & 0x20 != 0 {
        1 + usize::from(data[p + 4])
    } else {
        0
    };
    let pes = p + 4 + af;
    assert_eq!(&data[pes..pes + 3], &[0, 0, 1]);
    let header = 9 + usize::from(data[pes + 8]);
    // Turn the PES header into adaptation-field stuffing so the payload starts at the ES.
    let mut packet = data[p..p + PACKET_LEN].to_vec();
    let es: Vec<u8> = packet[4 + af + header..].to_vec();
    // Adaptation field: length byte, a flags byte of 0, then 0xFF stuffing up to the ES bytes.
    let new_af_len = PACKET_LEN - 4 - 1 - es.len();
    assert!(new_af_len >= 1);
    packet[3] |= 0x20;
    packet[4] = new_af_len as u8;
    packet[5] = 0;
    packet[6..5 + new_af_len].fill(0xff);
    packet[5 + new_af_len..].copy_from_slice(&es);
    data[p..p + PACKET_LEN].copy_from_slice(&packet);
    let report = ts::frames(&data).unwrap();
    assert_eq!(report.frames.len(), 30);
    let seqs: Vec<u64> = report.frames.iter().map(|f| f.stamp.unwrap().seq).collect();
    assert_eq!(seqs, (30..60).collect::<Vec<_>>());
    assert!(report.frames[1].pts.is_some());
    assert_eq!(
        report.frames[2].pts, None,
        "second AU of a PES has no PTS of its own"
    );
    assert_eq!(report.frames[2].pes_offset, report.frames[1].pes_offset);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = ts::frames(&data);
    }

    #[test]
    fn random_packets_never_panic(packets in proptest::collection::vec(
        (any::<u16>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 184)), 0..24)
    ) {
        // Well-synced packets with random headers and payloads reach the PSI and PES code.
        let mut data = SEG1[..2 * PACKET_LEN].to_vec();
        for (pid_flags, b3, payload) in packets {
            data.push(0x47);
            data.extend_from_slice(&pid_flags.to_be_bytes());
            data.push(b3);
            data.extend_from_slice(&payload);
        }
        let _ = ts::frames(&data);
    }

}

proptest! {
    // Each case parses a whole 60 kB segment; fewer cases keep the suite fast.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn flipped_bytes_in_a_real_segment_never_panic(
        flips in proptest::collection::vec((0usize..59_596, any::<u8>()), 1..16)
    ) {
        let mut data = SEG1.to_vec();
        for (at, value) in flips {
            data[at] = value;
        }
        let _ = ts::frames(&data);
    }
}
