//! The collector end to end with real parts on 127.0.0.1: the agent (test
//! pattern) pushes to the testkit origin, the collector reads the stream back
//! over HLS and publishes a latency summary per second, over mosquitto and
//! over its embedded broker; a clock offset injected on the agent's side
//! (libfaketime) is removed by clock sync; garbage MQTT payloads and broken
//! HLS responses are counted and skipped.

use std::time::Duration;

use glasswatch_common::messages::{self, Latency};
use glasswatch_testkit::agent::{test_pattern_config, AgentProcess};
use glasswatch_testkit::collector::CollectorProcess;
use glasswatch_testkit::mosquitto::{Mosquitto, Subscriber};
use glasswatch_testkit::require::{require, require_mqtt_stack};
use glasswatch_testkit::stats::median;
use glasswatch_testkit::RtspOrigin;

/// Checks summaries of a healthy 30 fps stream read over classic HLS: frames
/// ≈ fps on average (segments arrive in bursts), plausible glass-to-HLS,
/// clock synced, nothing dropped.
fn check_classic(summaries: &[Latency], container: &str) {
    let with_frames: Vec<&Latency> = summaries.iter().filter(|s| s.frames > 0).collect();
    assert!(with_frames.len() >= 3, "{summaries:#?}");
    // From the first window with frames on, the average is the frame rate.
    let first = summaries.iter().position(|s| s.frames > 0).unwrap_or(0);
    let tail = &summaries[first..];
    let frames: u64 = tail.iter().map(|s| s.frames).sum();
    let fps = frames as f64 / tail.len() as f64;
    assert!((20.0..=40.0).contains(&fps), "{fps} frames/s: {tail:#?}");
    for s in &with_frames {
        let p50 = s.p50_ms.unwrap_or(f64::NAN);
        // A 1 s segment: frames wait for their segment to close and be polled.
        assert!(
            (20.0..4_000.0).contains(&p50),
            "implausible p50 {p50}: {s:#?}"
        );
        assert!(s.p95_ms >= s.p50_ms && s.max_ms >= s.p95_ms, "{s:#?}");
        assert_eq!(s.hls.mode, "hls");
        assert_eq!(s.hls.container, container);
        assert_eq!(s.matched_by_fingerprint, 0, "stamps are intact");
    }
    let last = summaries.last().expect("summaries");
    assert!(last.clock.synced, "{last:#?}");
    // Product: the offset is right within its reported uncertainty (the
    // agent runs on this machine's clock: the true offset is 0).
    assert!(
        last.clock
            .offset_ms
            .is_some_and(|o| o.abs() <= last.clock.uncertainty_ms),
        "{last:#?}"
    );
    // Product: half the 100 ms reload interval plus the clock sample's
    // rtt/2, and no sample over max_rtt_ms (2 s) is used. (How small rtt/2
    // is, a few ms on an idle loopback, is the machine's.)
    assert!(
        (50.0..=50.0 + 1_000.0).contains(&last.clock.uncertainty_ms),
        "{last:#?}"
    );
    assert!(
        last.publisher_fps
            .is_some_and(|f| (25.0..35.0).contains(&f)),
        "{last:#?}"
    );
    let dropped: u64 = summaries.iter().map(|s| s.dropped).sum();
    assert_eq!(dropped, 0, "{summaries:#?}");
}

/// Summaries received on MQTT for `device/cam0`.
fn mqtt_summaries(sub: &Subscriber, device: &str) -> Vec<Latency> {
    sub.messages(&format!(
        "glasswatch/v1/devices/{device}/streams/cam0/latency"
    ))
    .iter()
    .filter_map(|(_, p)| messages::decode::<Latency>(p.as_bytes()).ok())
    .collect()
}

#[test]
fn classic_ts_over_mosquitto() {
    if !require_mqtt_stack() {
        return;
    }
    let broker = Mosquitto::start().unwrap();
    let origin = RtspOrigin::start(&["e2e1-cam0"]).unwrap();
    let sub = Subscriber::start(
        &broker,
        "glasswatch/v1/devices/+/streams/+/latency",
        None,
        None,
    )
    .unwrap();
    let collector =
        CollectorProcess::start(&format!("[mqtt]\nurl = \"{}\"\n", broker.url())).unwrap();
    let _agent = AgentProcess::start(&test_pattern_config(
        "e2e1",
        &origin.rtsp_url("e2e1-cam0"),
        &origin.hls_url("e2e1-cam0"),
        &format!("url = \"{}\"", broker.url()),
    ))
    .unwrap();
    let summaries = collector
        .collect_summaries("e2e1", "cam0", Duration::from_secs(40), |s| {
            s.iter().filter(|s| s.frames > 0).count() >= 6
        })
        .unwrap();
    check_classic(&summaries, "mpegts");
    // The same summaries went out on MQTT, one per second.
    let on_mqtt = sub
        .wait_for("glasswatch/v1/devices/e2e1/", Duration::from_secs(5), |m| {
            m.len() >= 6
        })
        .unwrap();
    assert!(on_mqtt.len() >= 6);
    let decoded = mqtt_summaries(&sub, "e2e1");
    assert_eq!(decoded.len(), on_mqtt.len(), "every payload decodes");
    for w in decoded.windows(2) {
        // Product: windows follow each other without gap or overlap.
        assert_eq!(
            w[1].window_start_us, w[0].window_end_us,
            "contiguous windows: {w:#?}"
        );
        // Product: one summary a second, never two (a tick is not caught
        // up); how late a tick may run is the machine's: up to 0.5 s on a
        // busy one.
        let step = w[1].window_end_us - w[0].window_end_us;
        assert!(
            (900_000..=1_500_000).contains(&step),
            "one summary per second: {step} µs"
        );
    }
}

#[test]
fn classic_ts_over_the_embedded_broker() {
    if !require_mqtt_stack() {
        return;
    }
    let origin = RtspOrigin::start(&["e2e2-cam0"]).unwrap();
    let (config, port) = CollectorProcess::embedded_broker_config();
    let collector = CollectorProcess::start(&config).unwrap();
    assert_eq!(collector.mqtt_url(), format!("mqtt://127.0.0.1:{port}"));
    let sub = Subscriber::start_at(port, "glasswatch/v1/devices/+/streams/+/latency").unwrap();
    let _agent = AgentProcess::start(&test_pattern_config(
        "e2e2",
        &origin.rtsp_url("e2e2-cam0"),
        &origin.hls_url("e2e2-cam0"),
        &format!("url = \"{}\"", collector.mqtt_url()),
    ))
    .unwrap();
    let summaries = collector
        .collect_summaries("e2e2", "cam0", Duration::from_secs(40), |s| {
            s.iter().filter(|s| s.frames > 0).count() >= 5
        })
        .unwrap();
    check_classic(&summaries, "mpegts");
    // The API lists the stream as read over MPEG-TS HLS.
    let (streams, _) = collector.streams().unwrap();
    let s = streams.iter().find(|s| s.device == "e2e2").unwrap();
    let last = s.last.as_ref().unwrap();
    assert_eq!(
        (last.hls.mode.as_str(), last.hls.container.as_str()),
        ("hls", "mpegts")
    );
    sub.wait_for("glasswatch/v1/devices/e2e2/", Duration::from_secs(5), |m| {
        m.len() >= 5
    })
    .unwrap();
    assert!(mqtt_summaries(&sub, "e2e2").iter().any(|s| s.frames > 0));
}

/// libfaketime's preload library, from Debian's `faketime` package.
fn libfaketime() -> Option<std::path::PathBuf> {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/arm-linux-gnueabihf/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn clock_offset_on_the_agent_is_removed_by_clock_sync() {
    if !require_mqtt_stack()
        || !require("libfaketime (apt: faketime)", || {
            libfaketime()
                .map(|_| ())
                .ok_or_else(|| "libfaketime.so.1 not found".to_owned())
        })
    {
        return;
    }
    let lib = libfaketime().expect("checked above");
    // LL-HLS: its figures are steady (classic HLS medians wander by
    // hundreds of ms with the segment phase), so the comparison is sharp.
    let origin = RtspOrigin::start_with(
        &["ref-cam0", "fake-cam0"],
        glasswatch_testkit::origin::OriginOptions::llhls_like_fixture(),
    )
    .unwrap();
    let (config, _) = CollectorProcess::embedded_broker_config();
    let collector = CollectorProcess::start(&config).unwrap();
    let mqtt = format!("url = \"{}\"", collector.mqtt_url());
    // Two agents side by side on the same origin: one on the true clock, one
    // 2 s ahead (wall clock only: GStreamer's monotonic clock stays true).
    let _reference = AgentProcess::start(&test_pattern_config(
        "ref",
        &origin.rtsp_url("ref-cam0"),
        &origin.hls_url("ref-cam0"),
        &mqtt,
    ))
    .unwrap();
    let lib = lib.to_string_lossy().into_owned();
    let faked = AgentProcess::start_with_env(
        &test_pattern_config(
            "fake",
            &origin.rtsp_url("fake-cam0"),
            &origin.hls_url("fake-cam0"),
            &mqtt,
        ),
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", "+2s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("FAKETIME_NO_CACHE", "1"),
        ],
    )
    .unwrap();
    let done = |s: &[Latency]| s.iter().filter(|s| s.frames > 0 && s.clock.synced).count() >= 6;
    let fake = collector
        .collect_summaries("fake", "cam0", Duration::from_secs(45), done)
        .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", faked.log_tail()));
    let reference = collector
        .collect_summaries("ref", "cam0", Duration::from_secs(20), done)
        .unwrap();
    let last = fake.last().expect("summaries");
    let offset = last.clock.offset_ms.expect("synced");
    let uncertainty = last.clock.uncertainty_ms;
    // The +2 s is measured within the reported uncertainty (rtt/2, plus the
    // reader's 50 ms, which this offset does not depend on: allow both).
    assert!(
        (offset - 2_000.0).abs() <= uncertainty,
        "offset {offset} ms ± {uncertainty} ms, expected +2000: {last:#?}"
    );
    // Corrected, the faked stream's figures equal the true one's.
    let p50 = |s: &[Latency]| {
        median(
            s.iter()
                .filter(|s| s.frames > 0 && s.clock.synced)
                .filter_map(|s| s.p50_ms)
                .collect(),
        )
    };
    let (f, r) = (p50(&fake), p50(&reference));
    assert!(
        (f - r).abs() < 100.0,
        "median glass-to-HLS {f} ms (faked clock) vs {r} ms (true clock)"
    );
    assert!(f > 0.0 && f < 500.0, "{f}");
}

#[test]
fn garbage_mqtt_payloads_are_counted_and_skipped() {
    if !require_mqtt_stack() {
        return;
    }
    let origin = RtspOrigin::start(&["bad1-cam0"]).unwrap();
    let (config, port) = CollectorProcess::embedded_broker_config();
    let mut collector = CollectorProcess::start(&config).unwrap();
    let _agent = AgentProcess::start(&test_pattern_config(
        "bad1",
        &origin.rtsp_url("bad1-cam0"),
        &origin.hls_url("bad1-cam0"),
        &format!("url = \"{}\"", collector.mqtt_url()),
    ))
    .unwrap();
    collector
        .collect_summaries("bad1", "cam0", Duration::from_secs(40), |s| {
            s.iter().any(|s| s.frames > 0)
        })
        .unwrap();
    let garbage: [(&str, &[u8]); 7] = [
        ("glasswatch/v1/devices/bad1/status", b"not json"),
        (
            "glasswatch/v1/devices/bad1/status",
            b"{\"schema\":\"glasswatch.status/1\"}",
        ),
        (
            "glasswatch/v1/devices/bad1/streams/cam0/frames",
            b"\xff\xfe\x00",
        ),
        (
            "glasswatch/v1/devices/bad1/streams/cam0/frames",
            b"{\"schema\":\"glasswatch.frames/9\",\"frames\":[]}",
        ),
        ("glasswatch/v1/devices/bad1/streams/cam0/stats", b"[1,2,3]"),
        ("glasswatch/v1/devices/bad1/clock/pong", b"{}"),
        (
            "glasswatch/v1/devices/other/status",
            b"{\"schema\":\"glasswatch.status/1\",\"device\":\"bad1\"}",
        ),
    ];
    for (topic, payload) in garbage {
        glasswatch_testkit::mosquitto::publish(port, topic, payload, false)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    // Counted, and the stream goes on being measured.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, counters) = collector.streams().unwrap();
        if counters.malformed_messages >= 7 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "malformed payloads counted: {counters:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = collector
        .collect_summaries("bad1", "cam0", Duration::from_secs(15), |s| {
            s.iter().filter(|s| s.frames > 0).count() >= 2
        })
        .unwrap();
    assert!(after.iter().any(|s| s.frames > 0));
    assert!(collector.peer().is_running(), "{}", collector.log_tail());
}

#[test]
fn classic_fmp4_segments_from_ffmpeg() {
    if !require_mqtt_stack() {
        return;
    }
    let options = glasswatch_testkit::origin::OriginOptions {
        format: glasswatch_testkit::origin::HlsFormat::Fmp4,
        ..Default::default()
    };
    let origin = RtspOrigin::start_with(&["e2e3-cam0"], options).unwrap();
    let (config, _) = CollectorProcess::embedded_broker_config();
    let collector = CollectorProcess::start(&config).unwrap();
    let _agent = AgentProcess::start(&test_pattern_config(
        "e2e3",
        &origin.rtsp_url("e2e3-cam0"),
        &origin.hls_url("e2e3-cam0"),
        &format!("url = \"{}\"", collector.mqtt_url()),
    ))
    .unwrap();
    let summaries = collector
        .collect_summaries("e2e3", "cam0", Duration::from_secs(40), |s| {
            s.iter().filter(|s| s.frames > 0).count() >= 5
        })
        .unwrap();
    check_classic(&summaries, "fmp4");
}

/// Every 4th playlist and every 4th part or segment arrives damaged (cut
/// short, garbage tags, TS out of sync, absurd box sizes): counted and
/// skipped, the collector keeps measuring, and recovers fully once the
/// damage stops.
fn bad_hls_is_counted_and_skipped(device: &str, format: glasswatch_testkit::origin::HlsFormat) {
    use glasswatch_testkit::origin::OriginOptions;
    use glasswatch_testkit::proxy::DelayProxy;
    let path = format!("{device}-cam0");
    let options = if format == glasswatch_testkit::origin::HlsFormat::Llhls {
        OriginOptions::llhls_like_fixture()
    } else {
        OriginOptions {
            format,
            ..Default::default()
        }
    };
    let origin = RtspOrigin::start_with(&[&path], options).unwrap();
    let proxy = DelayProxy::start(
        &format!("http://127.0.0.1:{}", origin.http_port()),
        Duration::ZERO,
    )
    .unwrap();
    proxy.set_fault_every(4);
    let (config, _) = CollectorProcess::embedded_broker_config();
    let mut collector = CollectorProcess::start(&format!(
        "{config}[[stream]]\ndevice = \"{device}\"\nid = \"cam0\"\nhls_url = \"{}\"\n",
        proxy.proxied(&origin.hls_url(&path)).unwrap()
    ))
    .unwrap();
    let _agent = AgentProcess::start(&test_pattern_config(
        device,
        &origin.rtsp_url(&path),
        &origin.hls_url(&path),
        &format!("url = \"{}\"", collector.mqtt_url()),
    ))
    .unwrap();
    // Damaged, yet measuring.
    collector
        .collect_summaries(device, "cam0", Duration::from_secs(40), |s| {
            s.iter().filter(|s| s.frames > 0).count() >= 4
                && s.iter().map(|s| s.hls.errors).sum::<u64>() >= 3
        })
        .unwrap();
    assert!(collector.peer().is_running(), "{}", collector.log_tail());
    // Healthy again: full windows.
    proxy.set_fault_every(0);
    let s = collector
        .collect_summaries(device, "cam0", Duration::from_secs(30), |s| {
            s.iter()
                .rev()
                .take(3)
                .all(|s| s.hls.errors == 0 && s.frames > 0)
                && s.len() >= 3
        })
        .unwrap();
    let (streams, _) = collector.streams().unwrap();
    assert!(streams[0].hls_errors_total >= 3, "{streams:#?}");
    assert!(s.last().is_some_and(|l| l.frames > 0));
    assert!(collector.peer().is_running(), "{}", collector.log_tail());
}

#[test]
fn bad_mpegts_hls_is_counted_and_skipped() {
    if require_mqtt_stack() {
        bad_hls_is_counted_and_skipped("bad2", glasswatch_testkit::origin::HlsFormat::Ts);
    }
}

#[test]
fn bad_llhls_is_counted_and_skipped() {
    if require_mqtt_stack() {
        bad_hls_is_counted_and_skipped("bad3", glasswatch_testkit::origin::HlsFormat::Llhls);
    }
}
