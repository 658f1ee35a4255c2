//! The publish stage over the real pipeline: the agent's own pipeline (test
//! pattern → x264 → h264parse → stamp probe → leaky queue → rtspclientsink
//! over TCP) publishing to the testkit origin, its frame records read
//! straight from the record hand-off.
//!
//! What must hold, whatever the machine's load:
//! - the per-frame times come in order: `capture_us ≤ encoded_us ≤ sent_us`,
//!   capture times and `seq` rising;
//! - `publish` (`sent_us − encoded_us`) is not a wait tied to the latency
//!   the pipeline reports. The same pipeline runs twice, the second time with
//!   its source reporting 400 ms more latency (the answer to the LATENCY
//!   query is changed on its way back from the source). A sink that waits
//!   for `running time + latency` (rtspclientsink's own RTP sink did, issue
//!   12) moves `publish` by those 400 ms; the agent's must not move by half
//!   of it. The figure itself (well under a millisecond) belongs to
//!   `bench/collector_latency.sh`, not to an assertion here.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use glasswatch_agent::config::Config;
use glasswatch_agent::pipeline;
use glasswatch_agent::record::{self, FrameInfo};
use glasswatch_agent::state::StreamCounters;
use glasswatch_agent::{probe, supervisor};
use glasswatch_testkit::{require_origin_stack, RtspOrigin};

/// The latency added to the source's answer in the second run.
const EXTRA_LATENCY: Duration = Duration::from_millis(400);
/// Frames collected per run (3 s at 30 fps).
const FRAMES: usize = 90;

/// Runs the agent's pipeline for one stream until `FRAMES` records arrived;
/// returns them with the latency reported to the send queue.
fn publish(url: &str, extra_latency: Option<Duration>) -> (Vec<FrameInfo>, gst::ClockTime) {
    let toml = format!(
        "device_id = \"pub\"\n[mqtt]\nenabled = false\n[[stream]]\nid = \"cam0\"\nsource = \"test\"\n\
         width = 640\nheight = 360\nfps = 30\ngop = 15\nbitrate_kbps = 800\nencoder = \"x264\"\n\
         publish_url = \"{url}\"\n"
    );
    let config = Config::parse(&toml, std::path::Path::new("publish_path.toml")).unwrap();
    let stream = config.streams().next().unwrap();
    let plan = supervisor::plan(
        config.device_id.as_str(),
        stream,
        &probe::encoder_availability(),
    )
    .unwrap();
    let (sink, mut source) = record::hand_off(1);
    let counters = std::sync::Arc::new(StreamCounters::default());
    let pipe = pipeline::build(&plan, 1, sink.for_stream(0), counters).unwrap();
    if let Some(extra) = extra_latency {
        add_source_latency(&pipe, extra);
    }
    pipe.set_state(gst::State::Playing).unwrap();
    let bus = pipe.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < FRAMES {
        assert!(
            Instant::now() < deadline,
            "only {} frame records in 60 s",
            records.len()
        );
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(20),
            &[gst::MessageType::Error],
        ) {
            panic!("pipeline error: {msg:?}");
        }
        source.drain(|info| records.push(info));
    }
    // The latency reported upstream of the send queue: what the sinks inside
    // rtspclientsink add their own to.
    let mut query = gst::query::Latency::new();
    let queue_sink = pipe
        .by_name("send_queue")
        .and_then(|q| q.static_pad("sink"))
        .unwrap();
    assert!(
        queue_sink.peer_query(&mut query),
        "upstream answers LATENCY"
    );
    let (live, min, _) = query.result();
    assert!(live, "the test pattern is a live source");
    pipe.set_state(gst::State::Null).unwrap();
    (records, min)
}

/// Adds `extra` to the latency the source reports: a probe on the source's
/// caps filter changes the LATENCY query's answer on its way back downstream.
fn add_source_latency(pipe: &gst::Pipeline, extra: Duration) {
    let src_caps = pipe
        .by_name("src_caps")
        .expect("the pipeline names src_caps");
    let pad = src_caps.static_pad("src").unwrap();
    let extra = gst::ClockTime::from_nseconds(extra.as_nanos() as u64);
    pad.add_probe(
        gst::PadProbeType::QUERY_UPSTREAM | gst::PadProbeType::PULL,
        move |_, info| {
            if let Some(gst::PadProbeData::Query(query)) = &mut info.data {
                if let gst::QueryViewMut::Latency(q) = query.view_mut() {
                    let (live, min, max) = q.result();
                    q.set(live, min + extra, max.map(|m| m + extra));
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Checks the order of the per-frame times; returns the median publish in µs.
fn check_order(records: &[FrameInfo], run: &str) -> i64 {
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.capture_us <= r.encoded_us && r.encoded_us <= r.sent_us,
            "{run}, record {i}: times out of order: capture {} encoded {} sent {}",
            r.capture_us,
            r.encoded_us,
            r.sent_us
        );
        if i > 0 {
            let prev = &records[i - 1];
            assert!(r.seq > prev.seq, "{run}, record {i}: seq must rise");
            assert!(
                r.capture_us > prev.capture_us,
                "{run}, record {i}: capture times must rise"
            );
        }
    }
    median(records.iter().map(|r| r.sent_us - r.encoded_us).collect())
}

#[test]
fn publish_is_not_a_wait_tied_to_the_reported_latency() {
    if !require_origin_stack() {
        return;
    }
    gst::init().unwrap();
    let origin = RtspOrigin::start(&["pub-plain", "pub-late"]).unwrap();

    let (plain, plain_latency) = publish(&origin.rtsp_url("pub-plain"), None);
    let (late, late_latency) = publish(&origin.rtsp_url("pub-late"), Some(EXTRA_LATENCY));
    let extra = gst::ClockTime::from_nseconds(EXTRA_LATENCY.as_nanos() as u64);
    assert!(
        late_latency >= plain_latency + extra,
        "the injected latency must reach the pipeline: {plain_latency} without, {late_latency} with"
    );

    let plain_publish = check_order(&plain, "reported latency as is");
    let late_publish = check_order(&late, "source reports 400 ms more");
    let moved = (late_publish - plain_publish).abs();
    assert!(
        moved < EXTRA_LATENCY.as_micros() as i64 / 2,
        "publish moved with the reported latency: median {plain_publish} µs with {plain_latency}, \
         {late_publish} µs with {late_latency}"
    );
}
