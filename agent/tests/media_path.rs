//! The agent's media path with real parts: the agent binary (test pattern,
//! x264) → RTSP (TCP) → the testkit origin (GStreamer RTSP server in RECORD
//! mode → hlssink2) → classic HLS read back by ffmpeg (an independent
//! demuxer) → the `common` parser. Every access unit must carry a valid stamp
//! whose `seq`, `capture_us` and fingerprint agree with what the stamper
//! recorded.

use std::path::Path;
use std::time::Duration;

use glasswatch_common::{fingerprint, sei};
use glasswatch_testkit::agent::{now_us, AgentProcess, FrameLine, TestStream};
use glasswatch_testkit::stamps::stamped_frames;
use glasswatch_testkit::{ffmpeg_read_hls_h264, require_origin_stack, RtspOrigin};

/// A 640x360 test-pattern stream `id` publishing to `url`.
fn stream_config(id: &str, url: &str) -> String {
    TestStream {
        id,
        publish_url: url,
        width: 640,
        height: 360,
        bitrate_kbps: 800,
        ..TestStream::default()
    }
    .toml()
}

/// Reads `seconds` of `path` over HLS with ffmpeg and checks every access
/// unit against the agent's frame records. Returns the stamps seen.
fn check_hls(
    origin: &RtspOrigin,
    agent: &AgentProcess,
    device: &str,
    stream: &str,
    path: &str,
    not_before_us: i64,
    out_dir: &Path,
) -> Vec<sei::FrameStamp> {
    let es = ffmpeg_read_hls_h264(
        &origin.hls_url(path),
        2.0,
        &out_dir.join(format!("{path}.h264")),
    )
    .unwrap();
    let read_at = now_us();
    let records: Vec<FrameLine> = agent
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.stream == stream)
        .collect();
    let tag = sei::stream_tag(device, stream);
    let frames = stamped_frames(&es).unwrap();
    assert!(
        frames.len() >= 45,
        "expected about 2 s of frames at 30 fps, got {} access units",
        frames.len()
    );
    let mut stamps: Vec<sei::FrameStamp> = Vec::new();
    for (i, seen) in frames.iter().enumerate() {
        let stamp = seen.stamp;
        assert_eq!(stamp.stream_tag, tag, "AU {i}: stream tag");
        if let Some(prev) = stamps.last() {
            assert_eq!(stamp.seq, prev.seq + 1, "AU {i}: seq must increase by one");
        }
        assert!(
            stamp.capture_us >= not_before_us - 1_000_000 && stamp.capture_us <= read_at,
            "AU {i}: capture_us {} outside the test's wall-clock window [{not_before_us}, {read_at}]",
            stamp.capture_us
        );
        let record = records
            .iter()
            .find(|r| r.seq == stamp.seq && r.capture_us == stamp.capture_us)
            .unwrap_or_else(|| {
                panic!(
                    "AU {i}: no frame record for seq {} capture_us {}",
                    stamp.seq, stamp.capture_us
                )
            });
        assert_eq!(
            record.fingerprint,
            fingerprint::to_hex(seen.fingerprint),
            "AU {i}: fingerprint"
        );
        assert_eq!(record.keyframe, stamp.keyframe, "AU {i}: keyframe flag");
        let lag = record.sent_us - stamp.capture_us;
        assert!(
            (0..1_000_000).contains(&lag),
            "AU {i}: capture_us must be within a second of the wall clock at sending, was {lag} µs before"
        );
        assert!(
            record.encoded_us <= record.sent_us,
            "AU {i}: encoded after sent"
        );
        stamps.push(stamp);
    }
    assert!(
        stamps.iter().any(|s| s.keyframe),
        "no keyframe in 2 s with GOP 15"
    );
    stamps
}

#[test]
fn every_access_unit_reaches_hls_stamped() {
    if !require_origin_stack() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let origin = RtspOrigin::start(&["dev1-cam0"]).unwrap();
    let t0 = now_us();
    let agent = AgentProcess::start(&format!(
        "device_id = \"dev1\"\n{}",
        stream_config("cam0", &origin.rtsp_url("dev1-cam0"))
    ))
    .unwrap();
    origin
        .wait_for_playlist("dev1-cam0", Duration::from_secs(40), |p| {
            p.segments.len() >= 3
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", agent.log_tail()));
    check_hls(&origin, &agent, "dev1", "cam0", "dev1-cam0", t0, dir.path());
}

#[test]
fn two_streams_side_by_side() {
    if !require_origin_stack() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let origin = RtspOrigin::start(&["dev2-cam0", "dev2-cam1"]).unwrap();
    let t0 = now_us();
    let agent = AgentProcess::start(&format!(
        "device_id = \"dev2\"\n{}\n{}",
        stream_config("cam0", &origin.rtsp_url("dev2-cam0")),
        stream_config("cam1", &origin.rtsp_url("dev2-cam1"))
    ))
    .unwrap();
    for path in ["dev2-cam0", "dev2-cam1"] {
        origin
            .wait_for_playlist(path, Duration::from_secs(40), |p| p.segments.len() >= 3)
            .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", agent.log_tail()));
    }
    let a = check_hls(&origin, &agent, "dev2", "cam0", "dev2-cam0", t0, dir.path());
    let b = check_hls(&origin, &agent, "dev2", "cam1", "dev2-cam1", t0, dir.path());
    // Two streams, two tags: a reader can tell them apart in-band.
    assert_ne!(a[0].stream_tag, b[0].stream_tag);
}

#[test]
fn publishing_resumes_after_the_origin_restarts() {
    if !require_origin_stack() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut origin = RtspOrigin::start(&["dev3-cam0"]).unwrap();
    let agent = AgentProcess::start(&format!(
        "device_id = \"dev3\"\n[retry]\ninitial_ms = 200\nmax_ms = 2000\n{}",
        stream_config("cam0", &origin.rtsp_url("dev3-cam0"))
    ))
    .unwrap();
    origin
        .wait_for_playlist("dev3-cam0", Duration::from_secs(40), |p| {
            p.segments.len() >= 2
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", agent.log_tail()));
    let first_session = agent.records().unwrap()[0].session.clone();

    // The origin goes away for 5 s.
    origin.stop().unwrap();
    // Pacing: the outage lasts 5 s.
    std::thread::sleep(Duration::from_secs(5));
    let back_at = now_us();
    origin.restart().unwrap();

    // The agent notices on its own and publishes again, in a new session.
    let records = agent
        .wait_for_records(Duration::from_secs(40), |rs| {
            rs.iter().filter(|r| r.sent_us > back_at).count() >= 60
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", agent.log_tail()));
    let new: Vec<&FrameLine> = records.iter().filter(|r| r.sent_us > back_at).collect();
    assert_ne!(
        new[0].session, first_session,
        "a new pipeline start is a new session"
    );
    origin
        .wait_for_playlist("dev3-cam0", Duration::from_secs(30), |p| {
            p.segments.len() >= 3
        })
        .unwrap();
    let stamps = check_hls(
        &origin,
        &agent,
        "dev3",
        "cam0",
        "dev3-cam0",
        back_at,
        dir.path(),
    );
    assert!(stamps.iter().all(|s| s.capture_us > back_at - 1_000_000));
    assert!(
        agent.log_tail().contains("retry"),
        "the outage should be logged:\n{}",
        agent.log_tail()
    );
}
