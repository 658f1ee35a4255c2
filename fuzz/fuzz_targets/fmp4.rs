//! Arbitrary bytes as an init section and as a part: parsing never panics.
#![no_main]

use glasswatch_collector::hls::fmp4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (init, part) = data.split_at(data.len() / 2);
    let _ = fmp4::parse_init(data);
    if let Ok(init) = fmp4::parse_init(init) {
        let _ = fmp4::frames(&init, part);
    }
});
