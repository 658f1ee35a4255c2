//! The agent as a process: config errors, a camera that is not there,
//! SIGTERM, and systemd notification (READY, STATUS, WATCHDOG) over a real
//! notify socket.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use glasswatch_testkit::agent::{AgentProcess, TestStream};
use glasswatch_testkit::{require_origin_stack, RtspOrigin};

const AGENT: &str = env!("CARGO_BIN_EXE_glasswatch-agent");

/// Runs `glasswatch-agent --config FILE [args]` on `config` and returns (exit code, stderr, file path).
fn run_with_config(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn bad_configs_name_file_line_and_key_and_start_nothing() {
    let cases: &[(&str, &str, u32, &str)] = &[
        (
            "unknown key",
            "device_id = \"d\"\n[[stream]]\nid = \"cam0\"\nframerate = 30\n",
            4,
            "stream[0].framerate",
        ),
        (
            "wrong type",
            "device_id = \"d\"\n[[stream]]\nid = \"cam0\"\nwidth = \"wide\"\n",
            4,
            "stream[0].width",
        ),
        (
            "missing device_id",
            "[[stream]]\nid = \"cam0\"\n",
            1,
            "device_id",
        ),
        (
            "id outside the grammar",
            "device_id = \"Kitchen Pi\"\n",
            1,
            "device_id",
        ),
        (
            "two streams with one id",
            "device_id = \"d\"\n[[stream]]\nid = \"cam0\"\n[[stream]]\nid = \"cam0\"\n",
            4,
            "stream[1].id",
        ),
    ];
    for (what, config, line, key) in cases {
        for args in [&["--check-config"][..], &[][..]] {
            let (code, stderr, file) = run_with_config(config, args);
            assert_eq!(code, 2, "{what} {args:?}: exit code; stderr: {stderr}");
            assert!(
                stderr.contains(&format!("{file}:{line}:")),
                "{what} {args:?}: stderr should name {file}:{line}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("`{key}`")),
                "{what} {args:?}: stderr should name key {key}: {stderr}"
            );
            assert!(
                !stderr.contains("starting pipeline"),
                "{what}: nothing may start: {stderr}"
            );
        }
    }
    let (code, stderr, _) = run_with_config("device_id = \"d\"\n", &["--check-config"]);
    assert_eq!(code, 0, "a minimal config is valid: {stderr}");
}

#[test]
fn printed_default_config_is_valid() {
    let out = Command::new(AGENT)
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "device_id",
        "[[stream]]",
        "source",
        "width",
        "height",
        "fps",
        "gop",
        "bitrate_kbps",
        "encoder",
        "overlay",
        "publish_url",
        "hls_url",
    ] {
        assert!(text.contains(key), "default config lacks {key}");
    }
    let (code, stderr, _) = run_with_config(&text, &["--check-config"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn absent_camera_is_waited_for_and_sigterm_stops_quickly() {
    let mut agent = AgentProcess::start(
        "device_id = \"d\"\n[[stream]]\nid = \"cam0\"\nsource = \"/dev/video-glasswatch-absent\"\npublish_url = \"rtsp://127.0.0.1:9/none\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.log_tail().contains("camera not present") {
        assert!(
            Instant::now() < deadline,
            "no wait message:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An observation, not synchronisation: the agent is still there 1.5 s
    // after it started waiting (it logs the wait once, not each retry).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        agent.peer().is_running(),
        "an absent camera must not end the agent"
    );
    // Product: systemd/glasswatch-agent.service promises a stop within 2 s
    // of SIGTERM (TimeoutStopSec=5 is the hard limit); measured 0.18–0.20 s
    // with both cores loaded, so the promise itself is the bound.
    let started = Instant::now();
    let status = agent.peer().terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    eprintln!(
        "SIGTERM (waiting for a camera) took {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn systemd_notifications_and_clean_sigterm_while_publishing() {
    if !require_origin_stack() {
        return;
    }
    let origin = RtspOrigin::start(&["dev4-cam0"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut agent = AgentProcess::start_with_env(
        &format!(
            "device_id = \"dev4\"\n{}",
            TestStream {
                publish_url: &origin.rtsp_url("dev4-cam0"),
                ..TestStream::default()
            }
            .toml()
        ),
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    )
    .unwrap();

    let (mut ready, mut watchdog, mut publishing) = (false, false, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !(ready && watchdog && publishing) && Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            ready |= msg.lines().any(|l| l == "READY=1");
            watchdog |= msg.lines().any(|l| l == "WATCHDOG=1");
            publishing |= msg
                .lines()
                .any(|l| l.starts_with("STATUS=cam0: publishing"));
            seen.push(msg);
        }
    }
    assert!(
        ready && watchdog && publishing,
        "ready {ready} watchdog {watchdog} publishing status {publishing}; got {seen:?}\n{}",
        agent.log_tail()
    );

    // Product: the unit's promise, a stop within 2 s of SIGTERM (see above).
    let started = Instant::now();
    let status = agent.peer().terminate(Duration::from_secs(5)).unwrap();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        agent.log_tail()
    );
    eprintln!("SIGTERM (publishing) took {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "SIGTERM took {:?}",
        started.elapsed()
    );
}

#[test]
fn probe_lists_encoders_and_explains_each_streams_choice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "device_id = \"d\"\n[[stream]]\nid = \"pattern\"\nsource = \"test\"\n\
         [[stream]]\nid = \"cam\"\nsource = \"/dev/video-glasswatch-absent\"\nencoder = \"x264\"\n",
    )
    .unwrap();
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(&path)
        .arg("probe")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "H.264 encoders offered by GStreamer",
        "x264enc (software):               yes",
        "V4L2 capture devices:",
        "pattern (source test):",
        "capture: test pattern 1280x720@30 (videotestsrc)",
        "encoder: x264enc — x264 in software",
        "/dev/video-glasswatch-absent not found now; the agent will wait for it",
    ] {
        assert!(
            text.contains(expected),
            "probe output lacks {expected:?}:\n{text}"
        );
    }
}
