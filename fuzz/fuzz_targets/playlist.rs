//! Arbitrary text into the HLS playlist parser and the URL helpers: never panics.
#![no_main]

use glasswatch_collector::hls::playlist;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(playlist::Playlist::Media(p)) = playlist::parse(&text) {
        let _ = p.next_part();
        let _ = p.next_msn();
    }
    let (base, uri) = text.split_at(text.len() / 2);
    let _ = playlist::resolve(base, uri);
    let _ = playlist::blocking_url(base, 1, Some(2));
});
