//! Feeds arbitrary bytes to the MQTT payload decoder (as every payload type) and, as text, to the
//! topic parser. None may panic; whatever decodes must encode and decode to the same value, and
//! whatever parses as a topic must name that topic again.

#![no_main]

use glasswatch_common::messages::{
    decode, encode, ClockPing, ClockPong, FramesBatch, Message, Stats, Status,
};
use glasswatch_common::topics::Topics;
use libfuzzer_sys::fuzz_target;

fn check<T: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(msg) = decode::<T>(data) {
        // A decoded payload re-encodes: its schema is right and its floats are finite.
        let bytes = encode(&msg).expect("a decoded payload encodes");
        assert_eq!(decode::<T>(&bytes).expect("an encoded payload decodes"), msg);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<Status>(data);
    check::<FramesBatch>(data);
    // Stats holds floats, which serde_json may read back 1 ULP off: only decode.
    let _ = decode::<Stats>(data);
    check::<ClockPing>(data);
    check::<ClockPong>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let topics = Topics::default();
        if let Some(topic) = topics.parse(text) {
            assert_eq!(topics.name(&topic), text);
        }
        let _ = Topics::new(text);
    }
});
