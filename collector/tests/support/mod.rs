//! Helpers shared by the collector's fixture tests.

use std::collections::HashMap;

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
