//! Builds the SEI NAL unit of an arbitrary stamp, parses it back and requires the same stamp, both
//! alone and inside an Annex B access unit behind an access unit delimiter.

#![no_main]

use glasswatch_common::sei::{build_sei_nal, find_stamp_annexb, parse_sei_nal, FrameStamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|fields: (bool, u32, u64, i64)| {
    let (keyframe, stream_tag, seq, capture_us) = fields;
    let stamp = FrameStamp {
        keyframe,
        stream_tag,
        seq,
        capture_us,
    };
    let mut nal = Vec::new();
    build_sei_nal(&stamp, &mut nal);
    assert_eq!(parse_sei_nal(&nal), Ok(Some(stamp)));

    let mut au = vec![0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1];
    au.extend_from_slice(&nal);
    au.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
    assert_eq!(find_stamp_annexb(&au), Ok(Some(stamp)));
});
