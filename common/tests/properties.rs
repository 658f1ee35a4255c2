//! Property tests: stamps round-trip through synthetic access units, and no parser panics on
//! arbitrary bytes.

use glasswatch_common::fingerprint::{fingerprint_annexb, fingerprint_avcc, from_hex, to_hex};
use glasswatch_common::h264::{
    add_emulation_prevention, annexb_nals, avcc_nals, first_mb_in_slice,
    remove_emulation_prevention, split_access_units,
};
use glasswatch_common::sei::{
    build_sei_nal, find_stamp_annexb, find_stamp_avcc, parse_sei_nal, FrameStamp,
};
use proptest::prelude::*;

fn any_stamp() -> impl Strategy<Value = FrameStamp> {
    (any::<bool>(), any::<u32>(), any::<u64>(), any::<i64>()).prop_map(
        |(keyframe, stream_tag, seq, capture_us)| FrameStamp {
            keyframe,
            stream_tag,
            seq,
            capture_us,
        },
    )
}

/// A slice NAL unit: a VCL header byte, then arbitrary escaped slice data ending in a stop bit.
fn any_slice() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0x65u8), Just(0x41), Just(0x01)],
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(header, data)| {
            let mut rbsp = data;
            rbsp.push(0x80);
            let mut nal = vec![header];
            add_emulation_prevention(&rbsp, &mut nal);
            nal
        })
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Bias towards the bytes that matter to start codes, escapes and SEI numbers.
    proptest::collection::vec(
        prop_oneof![
            3 => Just(0u8),
            1 => Just(1u8),
            1 => Just(3u8),
            1 => Just(6u8),
            1 => Just(0xFFu8),
            4 => any::<u8>(),
        ],
        0..512,
    )
}

proptest! {
    #[test]
    fn stamp_round_trips_through_an_access_unit(
        stamp in any_stamp(),
        slices in proptest::collection::vec(any_slice(), 1..4),
        four_byte_codes in any::<bool>(),
    ) {
        let mut sei = Vec::new();
        build_sei_nal(&stamp, &mut sei);
        prop_assert_eq!(parse_sei_nal(&sei), Ok(Some(stamp)));

        let mut nals: Vec<&[u8]> = vec![&[0x09, 0xF0], &[0x67, 0x42, 0xC0, 0x1E], &[0x68, 0xCE, 0x3C, 0x80], &sei];
        nals.extend(slices.iter().map(Vec::as_slice));
        let start_code: &[u8] = if four_byte_codes { &[0, 0, 0, 1] } else { &[0, 0, 1] };
        let mut au = Vec::new();
        let mut sample = Vec::new();
        for nal in &nals {
            au.extend_from_slice(start_code);
            au.extend_from_slice(nal);
            sample.extend_from_slice(&u32::try_from(nal.len()).unwrap().to_be_bytes());
            sample.extend_from_slice(nal);
        }
        prop_assert_eq!(find_stamp_annexb(&au), Ok(Some(stamp)));
        prop_assert_eq!(find_stamp_avcc(&sample, 4), Ok(Some(stamp)));
        let yielded: Vec<&[u8]> = annexb_nals(&au).map(|(_, nal)| nal).collect();
        prop_assert_eq!(&yielded, &nals);
        prop_assert_eq!(fingerprint_annexb(&au).is_some(), true);
        prop_assert_eq!(fingerprint_avcc(&sample, 4), Ok(fingerprint_annexb(&au)));
    }

    #[test]
    fn emulation_prevention_round_trips(rbsp in any_bytes()) {
        let mut ebsp = Vec::new();
        add_emulation_prevention(&rbsp, &mut ebsp);
        prop_assert!(!ebsp.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
        let unescaped = remove_emulation_prevention(&ebsp);
        prop_assert_eq!(unescaped.as_ref(), &rbsp[..]);
    }

    #[test]
    fn hex_round_trips(fp in any::<u64>()) {
        prop_assert_eq!(from_hex(&to_hex(fp)), Some(fp));
    }

    #[test]
    fn parsers_never_panic(data in any_bytes(), length_size in 0usize..6) {
        let _ = find_stamp_annexb(&data);
        let _ = find_stamp_avcc(&data, length_size);
        let _ = parse_sei_nal(&data);
        let mut sei = vec![0x06];
        sei.extend_from_slice(&data);
        let _ = parse_sei_nal(&sei);
        let _ = first_mb_in_slice(&data);
        let _ = fingerprint_annexb(&data);
        let _ = fingerprint_avcc(&data, length_size);
        let _ = remove_emulation_prevention(&data);
        for nal in avcc_nals(&data, length_size) {
            let _ = nal;
        }
        // Access units tile the stream from their first start code to its end.
        let units = split_access_units(&data);
        for pair in units.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
        for unit in &units {
            prop_assert!(unit.start < unit.end && unit.end <= data.len());
        }
        if let Some(last) = units.last() {
            prop_assert_eq!(last.end, data.len());
        }
        for (offset, nal) in annexb_nals(&data) {
            prop_assert_eq!(data.get(offset..offset + nal.len()), Some(nal));
            prop_assert!(!nal.is_empty() && nal.last() != Some(&0));
        }
    }
}
