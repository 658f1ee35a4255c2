//! Helpers shared by the collector's tests: the fixtures' truth, and the
//! router served in process (`server`). Each test crate uses some of them.
#![allow(dead_code)]

pub mod server;

use std::collections::HashMap;

use glasswatch_common::fingerprint::to_hex;
use glasswatch_common::sei::FrameStamp;

/// A blocking client for the collector's HTTP API: no redirects followed
/// (tests look at them), 20 s per request.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap_or_else(|e| panic!("building the test HTTP client: {e}"))
}

/// One line of a fixture's truth.jsonl: what the publisher put in a frame.
#[derive(Debug, serde::Deserialize)]
pub struct Truth {
    pub seq: u64,
    pub capture_us: i64,
    pub keyframe: bool,
    pub fingerprint: String,
}

/// The truth lines of `text`, by seq.
pub fn parse_truth(text: &str) -> HashMap<u64, Truth> {
    text.lines()
        .map(|l| serde_json::from_str::<Truth>(l).unwrap())
        .map(|t| (t.seq, t))
        .collect()
}

/// Checks a frame read back against the publisher's truth for its seq.
pub fn check_frame(
    truth: &HashMap<u64, Truth>,
    stamp: &FrameStamp,
    keyframe: bool,
    fingerprint: Option<u64>,
) {
    let t = &truth[&stamp.seq];
    assert_eq!(stamp.capture_us, t.capture_us, "seq {}", t.seq);
    assert_eq!(stamp.keyframe, t.keyframe, "seq {}", t.seq);
    assert_eq!(keyframe, t.keyframe, "seq {}", t.seq);
    assert_eq!(
        fingerprint.map(to_hex).as_deref(),
        Some(t.fingerprint.as_str())
    );
}
