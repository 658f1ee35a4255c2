//! Property tests for the MQTT wire contract: payloads round-trip through `encode` and `decode`,
//! `decode` never panics on arbitrary or damaged bytes, and topic names parse back to what built
//! them.

use glasswatch_common::messages::{
    decode, encode, ClockHealth, ClockPing, ClockPong, FrameRecord, FramesBatch, Message,
    MessageError, Stats, Status, StreamInfo, SCHEMA_STATS, SCHEMA_STATUS,
};
use glasswatch_common::topics::{valid_id, Topic, Topics};
use proptest::prelude::*;

fn any_id() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,64}"
}

fn any_hex16() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|v| format!("{v:016x}"))
}

/// Figures with one decimal, as the agent reports them; serde_json reads these back exactly.
fn any_figure() -> impl Strategy<Value = f64> {
    (0u32..10_000_000).prop_map(|n| f64::from(n) / 10.0)
}

fn any_record() -> impl Strategy<Value = FrameRecord> {
    (
        any_hex16(),
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        any::<bool>(),
        any_hex16(),
    )
        .prop_map(
            |(session, seq, capture_us, encoded_us, sent_us, bytes, keyframe, fingerprint)| {
                FrameRecord {
                    session,
                    seq,
                    capture_us,
                    encoded_us,
                    sent_us,
                    bytes,
                    keyframe,
                    fingerprint,
                }
            },
        )
}

fn any_stream_info() -> impl Strategy<Value = StreamInfo> {
    (
        any_id(),
        ".{0,40}",
        ".{0,40}",
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        "[a-z0-9]{1,16}",
        any::<bool>(),
    )
        .prop_map(
            |(id, rtsp_url, hls_url, width, height, fps, encoder, hardware)| StreamInfo {
                id,
                rtsp_url,
                hls_url,
                width,
                height,
                fps,
                encoder,
                hardware,
            },
        )
}

fn any_status() -> impl Strategy<Value = Status> {
    let clock = proptest::option::of(
        (
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
            ".{0,12}",
        )
            .prop_map(
                |(synchronized, est_error_us, max_error_us, source)| ClockHealth {
                    synchronized,
                    est_error_us,
                    max_error_us,
                    source,
                },
            ),
    );
    (
        (any_id(), any::<bool>(), any::<i64>()),
        proptest::collection::vec(proptest::option::of(".{0,20}"), 4),
        proptest::collection::vec(any_stream_info(), 0..3),
        clock,
        proptest::option::of(".{0,30}"),
    )
        .prop_map(
            |((device, online, ts_us), mut texts, streams, clock, reason)| Status {
                schema: SCHEMA_STATUS.to_owned(),
                device,
                online,
                ts_us,
                arch: texts.pop().flatten(),
                host: texts.pop().flatten(),
                gstreamer_version: texts.pop().flatten(),
                agent_version: texts.pop().flatten(),
                streams,
                clock,
                reason,
            },
        )
}

fn any_stats() -> impl Strategy<Value = Stats> {
    (
        (any_id(), any_id(), any::<i64>()),
        proptest::collection::vec(any_figure(), 4),
        proptest::collection::vec(any::<u64>(), 5),
        ("[a-z0-9]{1,16}", any::<bool>()),
        proptest::option::of((-400i32..1500).prop_map(|t| f64::from(t) / 10.0)),
    )
        .prop_map(
            |((device, stream, ts_us), f, n, (encoder, hardware), temperature_c)| Stats {
                schema: SCHEMA_STATS.to_owned(),
                device,
                stream,
                ts_us,
                interval_ms: f[0],
                publisher_fps: f[1],
                bitrate_kbps: f[2],
                cpu_percent: f[3],
                frames_dropped_capture: n[0],
                frames_dropped_encode: n[1],
                rss_bytes: n[2],
                report_backlog: n[3],
                records_dropped: n[4],
                encoder,
                hardware,
                temperature_c,
            },
        )
}

fn round_trips<T: Message + PartialEq + std::fmt::Debug>(msg: &T) -> Result<(), TestCaseError> {
    let bytes = encode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, msg);
    Ok(())
}

/// Decodes `bytes` as every payload type; only the result matters, not which.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<Status>(bytes);
    let _ = decode::<FramesBatch>(bytes);
    let _ = decode::<Stats>(bytes);
    let _ = decode::<ClockPing>(bytes);
    let _ = decode::<ClockPong>(bytes);
}

proptest! {
    #[test]
    fn status_round_trips(s in any_status()) {
        round_trips(&s)?;
    }

    #[test]
    fn frames_round_trip(
        device in any_id(),
        stream in any_id(),
        frames in proptest::collection::vec(any_record(), 0..12),
    ) {
        round_trips(&FramesBatch::new(&device, &stream, frames))?;
    }

    #[test]
    fn stats_round_trip(s in any_stats()) {
        round_trips(&s)?;
    }

    #[test]
    fn clock_round_trips(nonce in any::<u64>(), t1 in any::<i64>(), t2 in any::<i64>(), t3 in any::<i64>()) {
        let ping = ClockPing::new(nonce, t1);
        round_trips(&ping)?;
        round_trips(&ClockPong::answer(&ping, t2, t3))?;
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
    }

    #[test]
    fn decode_never_panics_on_damaged_payloads(
        s in any_status(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&s).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        decode_all(&bytes);
        bytes.truncate(cut.index(bytes.len()));
        decode_all(&bytes);
    }

    #[test]
    fn a_payload_decodes_only_as_its_own_type(s in any_status()) {
        let bytes = encode(&s).unwrap();
        let is_wrong_schema = |r: Result<FramesBatch, MessageError>| {
            matches!(r, Err(MessageError::WrongSchema { .. }))
        };
        prop_assert!(is_wrong_schema(decode::<FramesBatch>(&bytes)));
    }

    #[test]
    fn topics_parse_what_they_build(
        root in "[a-zA-Z0-9 ._-]{1,12}(/[a-zA-Z0-9 ._-]{1,12}){0,3}",
        device in any_id(),
        stream in any_id(),
        kind in 0usize..6,
    ) {
        prop_assume!(!root.starts_with('$'));
        let topics = Topics::new(&root).unwrap();
        let topic = match kind {
            0 => Topic::Status { device },
            1 => Topic::Frames { device, stream },
            2 => Topic::Stats { device, stream },
            3 => Topic::Latency { device, stream },
            4 => Topic::ClockPing { device },
            _ => Topic::ClockPong { device },
        };
        let name = topics.name(&topic);
        prop_assert_eq!(topics.parse(&name), Some(topic));
    }

    #[test]
    fn topic_parse_never_panics_and_returns_valid_ids(topic in "glasswatch/v1/devices/[a-z0-9_+#A-]{0,4}(/(status|clock|ping|pong|streams|frames|stats|latency|[a-z0-9]{0,3})){0,4}|.{0,80}") {
        let topics = Topics::default();
        if let Some(t) = topics.parse(&topic) {
            prop_assert!(valid_id(t.device()));
            prop_assert!(t.stream().is_none_or(valid_id));
            let name = topics.name(&t);
            prop_assert_eq!(name.as_str(), topic.as_str());
        }
        let _ = Topics::new(&topic);
    }
}
