//! Payloads the parts exchange, as Rust types with their JSON form (serde).
//!
//! Times are integer µs since the Unix epoch, UTC (`*_us`); see DESIGN.md.
//! Readers ignore unknown fields, so adding a field is not a breaking change.

use serde::{Deserialize, Serialize};

/// One frame as the agent produced it. `seq` and `capture_us` are exactly
/// those in the frame's SEI stamp; all times are on the device clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRecord {
    /// Random id of the pipeline start this frame belongs to (16 hex chars);
    /// `seq` restarts at 0 with each session.
    pub session: String,
    /// Frame counter of the stream within the session.
    pub seq: u64,
    /// When the frame was captured.
    pub capture_us: i64,
    /// When the encoder emitted the access unit.
    pub encoded_us: i64,
    /// When the access unit was handed to the RTSP sink.
    pub sent_us: i64,
    /// Size of the access unit as sent, stamp included.
    pub bytes: u64,
    /// Whether the access unit is an IDR.
    pub keyframe: bool,
    /// XXH3-64 of the access unit's VCL NAL units, 16 lowercase hex chars.
    pub fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_record_json_round_trip_ignores_unknown_fields() {
        let r = FrameRecord {
            session: "00112233aabbccdd".into(),
            seq: 7,
            capture_us: 1_795_500_025_165_523,
            encoded_us: 1_795_500_025_170_000,
            sent_us: 1_795_500_025_171_000,
            bytes: 3670,
            keyframe: true,
            fingerprint: "692adb679ee977a5".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<FrameRecord>(&json).unwrap(), r);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["future_field"] = serde_json::json!(1);
        assert_eq!(serde_json::from_value::<FrameRecord>(v).unwrap(), r);
    }
}
