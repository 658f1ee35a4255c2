//! Arbitrary bytes as an MPEG-TS segment: the reader never panics.
#![no_main]

use glasswatch_collector::hls::ts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ts::frames(data);
});
