//! Feeds arbitrary bytes to the stamp finders, the access-unit splitter and the fingerprint, as an
//! Annex B access unit and as a sample with 4-byte length prefixes. None may panic.

#![no_main]

use glasswatch_common::fingerprint::fingerprint_annexb;
use glasswatch_common::h264::split_access_units;
use glasswatch_common::sei::{find_stamp_annexb, find_stamp_avcc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = find_stamp_annexb(data);
    let _ = find_stamp_avcc(data, 4);
    let _ = fingerprint_annexb(data);
    let units = split_access_units(data);
    // The access units tile the stream from the first start code to the end.
    for pair in units.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    for unit in &units {
        assert!(unit.start < unit.end && unit.end <= data.len());
        let _ = find_stamp_annexb(&data[unit.clone()]);
    }
});
