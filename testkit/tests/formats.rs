//! The test origin's output formats with real parts: a stamped test pattern
//! (`glasswatch-test-publisher`, RECORD over TCP) pushed into
//! `glasswatch-test-origin --format ts|fmp4|llhls [--strip-sei]`, read back
//! with real `ffmpeg`, and the stamps checked with `stamps::stamped_frames`.
//!
//! Each test needs the components of `require_origin_stack`; without them
//! it is skipped, or fails under `CI=true`. Publishers are killed by PID.

use std::time::{Duration, Instant};

use glasswatch_common::{
    h264::{self, nal_type, NAL_SEI},
    sei,
};
use glasswatch_testkit::{
    ffmpeg_read_hls_h264, ffprobe_packet_count, require_origin_stack,
    stamps::{stamped_frames, PATTERN_IDS},
    HlsFormat, OriginOptions, Peer, RtspOrigin, TestPattern,
};

const SEGMENTS_TIMEOUT: Duration = Duration::from_secs(20);

fn stamped() -> TestPattern {
    TestPattern {
        stamp: true,
        ..TestPattern::default()
    }
}

/// For ts and fmp4 (playlist on disk): publish until `segments` are listed,
/// kill the publisher, wait for the ended playlist, read it all with ffmpeg.
fn read_back_classic(origin: &RtspOrigin, segments: usize) -> Vec<u8> {
    let publisher = stamped().publish(&origin.rtsp_url("cam")).unwrap();
    origin
        .wait_for_playlist("cam", SEGMENTS_TIMEOUT, |p| {
            !p.ended && p.segments.len() >= segments
        })
        .unwrap();
    end(publisher);
    origin
        .wait_for_playlist("cam", Duration::from_secs(10), |p| p.ended)
        .unwrap();
    let out = origin.dir().join("got.h264");
    ffmpeg_read_hls_h264(&origin.hls_url("cam"), 30.0, &out).unwrap()
}

fn end(mut publisher: Peer) {
    publisher.kill().unwrap();
}

fn sei_count(es: &[u8]) -> usize {
    h264::annexb_nals(es)
        .filter(|(_, n)| nal_type(n) == Some(NAL_SEI))
        .count()
}

/// Every access unit carries our stamp, in order, from one stream.
fn assert_stamps_survive(es: &[u8], at_least: usize) {
    let frames = stamped_frames(es).unwrap();
    assert!(
        frames.len() >= at_least,
        "only {} stamped frames",
        frames.len()
    );
    let tag = sei::stream_tag(PATTERN_IDS.0, PATTERN_IDS.1);
    for pair in frames.windows(2) {
        assert_eq!(pair[1].stamp.seq, pair[0].stamp.seq + 1, "seq gap");
        assert!(pair[1].stamp.capture_us > pair[0].stamp.capture_us);
    }
    assert!(frames.iter().all(|f| f.stamp.stream_tag == tag));
}

fn assert_no_sei(es: &[u8], at_least: usize) {
    assert_eq!(sei_count(es), 0, "an SEI NAL unit came through --strip-sei");
    let n = glasswatch_testkit::stamps::picture_count(es);
    assert!(n >= at_least, "only {n} pictures");
}

fn options(format: HlsFormat, strip_sei: bool) -> OriginOptions {
    OriginOptions {
        format,
        strip_sei,
        ..OriginOptions::default()
    }
}

#[test]
fn ts_keeps_stamps_and_strip_sei_removes_them() {
    if !require_origin_stack() {
        return;
    }
    let origin = RtspOrigin::start_with(&["cam"], options(HlsFormat::Ts, false)).unwrap();
    assert_stamps_survive(&read_back_classic(&origin, 2), 45);
    let origin = RtspOrigin::start_with(&["cam"], options(HlsFormat::Ts, true)).unwrap();
    assert_no_sei(&read_back_classic(&origin, 2), 45);
}

#[test]
fn fmp4_keeps_stamps_and_strip_sei_removes_them() {
    if !require_origin_stack() {
        return;
    }
    let origin = RtspOrigin::start_with(&["cam"], options(HlsFormat::Fmp4, false)).unwrap();
    let es = read_back_classic(&origin, 2);
    assert_stamps_survive(&es, 45);
    // The segments really are fMP4.
    let playlist = origin.playlist("cam").unwrap().unwrap();
    assert!(playlist.segments.iter().all(|s| s.uri.ends_with(".m4s")));
    assert!(origin.hls_dir("cam").join("init.mp4").is_file());
    let text = std::fs::read_to_string(origin.hls_dir("cam").join("index.m3u8")).unwrap();
    assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{text}");
    assert!(!origin.hls_dir("cam").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));

    let origin = RtspOrigin::start_with(&["cam"], options(HlsFormat::Fmp4, true)).unwrap();
    assert_no_sei(&read_back_classic(&origin, 2), 45);
}

/// LL-HLS has no end: read while the publisher runs.
fn read_back_llhls(origin: &RtspOrigin) -> Vec<u8> {
    let publisher = stamped().publish(&origin.rtsp_url("cam")).unwrap();
    let out = origin.dir().join("got.h264");
    // The path exists once the publisher's RECORD session is up (a busy
    // machine takes a while); the multivariant playlist is then held until
    // the first segment exists.
    origin
        .wait_for_hls("cam", std::time::Duration::from_secs(30))
        .unwrap();
    let es = ffmpeg_read_hls_h264(&origin.hls_url("cam"), 1.5, &out).unwrap();
    assert!(ffprobe_packet_count(&out.to_string_lossy()).unwrap() >= 30);
    end(publisher);
    es
}

#[test]
fn llhls_keeps_stamps_and_strip_sei_removes_them() {
    if !require_origin_stack() {
        return;
    }
    let started = Instant::now();
    let origin = RtspOrigin::start_with(&["cam"], OriginOptions::llhls_like_fixture()).unwrap();
    assert_stamps_survive(&read_back_llhls(&origin), 30);
    let origin = RtspOrigin::start_with(
        &["cam"],
        OriginOptions {
            strip_sei: true,
            ..OriginOptions::llhls_like_fixture()
        },
    )
    .unwrap();
    assert_no_sei(&read_back_llhls(&origin), 30);
    eprintln!("llhls read-backs took {:?}", started.elapsed());
}
