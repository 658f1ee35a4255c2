//! The test origin with real parts: a `gst-launch-1.0` publisher
//! (`rtspclientsink`, RECORD over TCP) pushes x264 into
//! `glasswatch-test-origin`, and real `ffmpeg`/`ffprobe` read the HLS back.
//!
//! Publishers run unbounded and are killed once the origin has the segments
//! a test needs (see `glasswatch_testkit::publisher` for why). Each test needs
//! gst-launch, ffmpeg and the GStreamer elements in `require_origin_stack`;
//! without them it is skipped, or fails under `CI=true`.

use std::time::Duration;

use glasswatch_common::h264::{self, nal_type, NAL_IDR, NAL_SEI};
use glasswatch_testkit::{
    ffmpeg_read_hls_h264, ffprobe_packet_count, http,
    ports::{is_listening, loopback},
    process::run_with_timeout,
    require_origin_stack,
    stamps::{is_first_slice, picture_count},
    HlsPlaylist, Peer, RtspOrigin, TestPattern,
};

/// Segments appear within this once a publisher starts (1 s each).
const SEGMENTS_TIMEOUT: Duration = Duration::from_secs(20);
/// The playlist is ended within this once the publisher is gone.
const END_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `pattern` on `path` and waits until the playlist lists `segments`.
fn publish_until(origin: &RtspOrigin, path: &str, pattern: &TestPattern, segments: usize) -> Peer {
    let publisher = pattern.publish(&origin.rtsp_url(path)).unwrap();
    origin
        .wait_for_playlist(path, SEGMENTS_TIMEOUT, |p| {
            !p.ended && p.segments.len() >= segments
        })
        .unwrap();
    publisher
}

/// Kills the publisher, as a crash would, and waits for the ended playlist.
fn end_publisher(origin: &RtspOrigin, path: &str, mut publisher: Peer) -> HlsPlaylist {
    publisher.kill().unwrap();
    origin
        .wait_for_playlist(path, END_TIMEOUT, |p| p.ended)
        .unwrap()
}

/// The NAL units a publisher writes and an origin must keep byte for byte:
/// SEI and slices (AUD, SPS and PPS may be dropped or re-inserted).
fn sei_and_slices(stream: &[u8]) -> Vec<&[u8]> {
    annexb_nal_units(stream)
        .into_iter()
        .filter(|u| is_vcl(u) || nal_type(u) == Some(NAL_SEI))
        .collect()
}

#[test]
fn pushed_h264_is_served_over_hls_unchanged() {
    if !require_origin_stack() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let sent_path = work.path().join("sent.h264");
    let origin = RtspOrigin::start(&["cam"]).unwrap();
    let pattern = TestPattern {
        copy_to: Some(sent_path.clone()),
        ..TestPattern::default()
    };

    // Three 1 s segments fit the playlist window (5), so the whole session
    // from its first frame is served.
    let publisher = publish_until(&origin, "cam", &pattern, 3);
    let playlist = end_publisher(&origin, "cam", publisher);
    assert_eq!(playlist.media_sequence, 0, "{playlist:?}");
    assert_eq!(playlist.target_duration, Some(1));
    for segment in &playlist.segments {
        assert!(segment.duration <= 1.5, "{playlist:?}");
        assert!(origin.hls_dir("cam").join(&segment.uri).is_file());
    }

    let got_path = work.path().join("got.h264");
    let got = ffmpeg_read_hls_h264(&origin.hls_url("cam"), 30.0, &got_path).unwrap();
    let units = annexb_nal_units(&got);
    let pictures = picture_count(&got);
    let idrs = units
        .iter()
        .filter(|u| nal_type(u) == Some(NAL_IDR) && is_first_slice(u))
        .count();
    assert!(pictures >= 85, "only {pictures} pictures came back");
    assert!(
        idrs * 15 >= pictures,
        "{idrs} IDR pictures for {pictures} (GOP 15)"
    );
    assert_eq!(
        ffprobe_packet_count(&got_path.to_string_lossy()).unwrap(),
        pictures,
        "ffprobe and the first-slice count disagree"
    );

    // What came back is what was sent, byte for byte, from the first frame
    // (x264's own user-data SEI rides on it). The copy may end a little
    // before or after the origin's last frame: the publisher was killed.
    let sent_bytes = std::fs::read(&sent_path).unwrap();
    let sent = sei_and_slices(&sent_bytes);
    let got = sei_and_slices(&got);
    assert_eq!(
        nal_type(got[0]),
        Some(NAL_SEI),
        "x264's SEI did not come back"
    );
    let common = sent.len().min(got.len());
    assert!(
        common >= 85 * 2,
        "only {common} units to compare ({} bytes sent, {} units)",
        sent_bytes.len(),
        sent.len()
    );
    let first_difference = (0..common).find(|&i| sent[i] != got[i]);
    assert_eq!(
        first_difference,
        None,
        "served units differ from sent units ({} sent, {} served)",
        sent.len(),
        got.len()
    );
}

#[test]
fn http_serves_playlists_uncached_with_hls_types() {
    if !require_origin_stack() {
        return;
    }
    let origin = RtspOrigin::start(&["a", "b"]).unwrap();
    let publisher = publish_until(&origin, "b", &TestPattern::default(), 2);
    let playlist = end_publisher(&origin, "b", publisher);
    // The other mount stays empty.
    assert!(origin.playlist("a").unwrap().is_none());

    let segment_url = format!(
        "http://127.0.0.1:{}/b/{}",
        origin.http_port(),
        playlist.segments[0].uri
    );
    let format = run_with_timeout(
        std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=format_name"])
            .args(["-of", "csv=p=0"])
            .arg(&segment_url),
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(
        format.status.success(),
        "{}",
        String::from_utf8_lossy(&format.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&format.stdout).trim(), "mpegts");
    assert!(ffprobe_packet_count(&origin.hls_url("b")).unwrap() >= 45);

    let base = format!("http://127.0.0.1:{}", origin.http_port());
    let get = |path: &str| http::get(&format!("{base}{path}"), Duration::from_secs(10)).unwrap();
    let response = get("/b/index.m3u8");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("cache-control"),
        Some("no-cache"),
        "{response:?}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.apple.mpegurl"),
        "{response:?}"
    );
    assert!(response.text().contains("#EXT-X-ENDLIST"), "{response:?}");
    let segment = get(&format!("/b/{}", playlist.segments[0].uri));
    assert_eq!(
        segment.header("content-type"),
        Some("video/mp2t"),
        "{:?}",
        segment.headers
    );
    assert_eq!(get("/a/index.m3u8").status, 404);
}

#[test]
fn publishers_reconnect_and_origin_restarts_on_same_ports() {
    if !require_origin_stack() {
        return;
    }
    let mut origin = RtspOrigin::start(&["cam"]).unwrap();
    let (rtsp_port, http_port) = (origin.rtsp_port(), origin.http_port());
    let pattern = TestPattern::default();

    // A first session, then a second one on the same origin process.
    let publisher = publish_until(&origin, "cam", &pattern, 1);
    end_publisher(&origin, "cam", publisher);
    let publisher = publish_until(&origin, "cam", &pattern, 1);
    end_publisher(&origin, "cam", publisher);

    // The origin crashes: its ports close.
    let old_pid = origin.pid();
    origin.stop().unwrap();
    assert!(!is_listening(loopback(rtsp_port)));
    assert!(!is_listening(loopback(http_port)));

    // Back on the same ports, it accepts a new publisher and serves it.
    origin.restart().unwrap();
    assert_ne!(origin.pid(), old_pid);
    assert_eq!(
        (origin.rtsp_port(), origin.http_port()),
        (rtsp_port, http_port)
    );
    // The restarted origin serves nothing of the previous process.
    assert!(origin.playlist("cam").unwrap().is_none());
    let publisher = publish_until(&origin, "cam", &pattern, 2);
    let playlist = end_publisher(&origin, "cam", publisher);
    let got = ffmpeg_read_hls_h264(
        &origin.hls_url("cam"),
        30.0,
        &origin.dir().join("after-restart.h264"),
    )
    .unwrap();
    let pictures = picture_count(&got);
    assert!(
        pictures >= 50,
        "{pictures} pictures after restart; {playlist:?}"
    );

    origin.terminate(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_second_publisher_is_refused_while_one_records() {
    if !require_origin_stack() {
        return;
    }
    let origin = RtspOrigin::start(&["cam"]).unwrap();
    let mut first = publish_until(&origin, "cam", &TestPattern::default(), 1);

    let mut second = TestPattern::default()
        .publish(&origin.rtsp_url("cam"))
        .unwrap();
    let status = second.wait_timeout(Duration::from_secs(15)).unwrap();
    assert!(!status.success());
    assert!(second.log_tail().contains("503"), "{}", second.log_tail());
    assert!(first.is_running(), "the first publisher was disturbed");

    // Once the first is gone, the mount takes a publisher again.
    end_publisher(&origin, "cam", first);
    let third = publish_until(&origin, "cam", &TestPattern::default(), 1);
    end_publisher(&origin, "cam", third);
}

/// The NAL units of an Annex B stream, without start codes.
fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    h264::annexb_nals(data).map(|(_, nal)| nal).collect()
}

fn is_vcl(nal: &[u8]) -> bool {
    nal_type(nal).is_some_and(h264::is_vcl)
}
